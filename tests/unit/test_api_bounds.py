"""Always bounded, never leaking, never redirected: a leaderless Nomad that holds every read 5 s then answers
500, a server that sends one byte per second, a 100 MiB body, redirects to another port, servers that echo the
token, a Keystone that answers 401 and echoes the password, and clouds.yaml with TLS verification off. Each with
a real local server and the elapsed time, the bytes read, or the message checked."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from acceptance import apiregistry
from acceptance.clients import consul_api, nomad_api, openstack_api, openstack_cloud, vault_api
from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig, api_config
from acceptance.clients.errors import ApiError
from acceptance.clients.libraries import client_for
from acceptance.clients.transport import Aborted, TooLarge
from acceptance.inventory import Apis, OpenStackSettings
from acceptance.redaction import MASK

from .test_api_support import (
    CLOUD_PASSWORD,
    SECRET,
    FakeApi,
    FakeServer,
    Reply,
    Route,
    answer_every_name,
    apis,
    clouds_yaml,
    fake_cluster,
    inventory,
    run_checks,
)

PASSWORD = CLOUD_PASSWORD


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    answer_every_name(monkeypatch)


def test_leaderless_nomad_is_reported_within_the_deadline():
    """Without a leader Nomad holds each consistent read 5 s, then answers 500 "No cluster leader": the whole
    snapshot ends at its deadline (every master tried per part would take minutes)."""
    hold = Reply(500, b"No cluster leader", hold_s=5)
    fake = FakeApi({p: hold for p in ("/v1/status/leader", "/v1/status/peers", "/v1/operator/autopilot/health",
                                      "/v1/nodes", "/v1/jobs", "/v1/allocations")})
    try:
        inv = inventory(apis(nomad=fake.url(), timeout_s=10.0, retry_s=20.0, deadline_s=12.0))
        cfg = api_config("nomad", inv, {})
        assert cfg.deadline_s == 12 and cfg.retry_s == 12  # the retry window is bounded by the deadline too
        start = time.monotonic()
        snap = nomad_api.fetch(cfg)
        elapsed = time.monotonic() - start
    finally:
        fake.close()
    assert elapsed < 14, elapsed
    assert snap.root is None  # the API answers: it has no leader
    err = snap.error_of("leader")
    assert err is not None and err.kind == "no-leader"
    assert {e.kind for n, e in snap.errors().items() if n != "leader"} <= {"deadline", "no-leader"}
    results = {k: r for k, r in run_checks({"nomad": snap}, inv).items() if ".nomad." in k}
    assert results["cluster.nomad.leader[cluster]"].outcome == "failed"
    assert "no Nomad leader elected" in results["cluster.nomad.leader[cluster]"].message
    assert not [k for k, r in results.items() if r.outcome == "passed" and not k.startswith("api.")]
    assert results["api.nomad.reachable[cluster]"].outcome == "passed"  # it answers: without a leader


def test_one_byte_per_second_is_cut_at_the_request_deadline():
    server = FakeServer("127.0.0.1", 0, {"/v1/nodes": Reply(200, b"[" + b" " * 40 + b"]", drip_s=1.0)})
    try:
        client = client_for(ApiConfig(name="nomad", urls=(f"http://127.0.0.1:{server.port}",)))  # python-nomad
        start = time.monotonic()
        with pytest.raises(Aborted):
            client.get("/v1/nodes", 2.0)
        assert time.monotonic() - start < 3.0
        cfg = ApiConfig(name="nomad", urls=(f"http://127.0.0.1:{server.port}",), timeout_s=2, retry_s=0.1,
                        deadline_s=10)
        start = time.monotonic()
        with pytest.raises(ApiError) as e:
            Caller(cfg).read("/v1/nodes", nomad_api.parse_nodes)
        assert time.monotonic() - start < 5.5  # one try, maybe one retry: each cut at 2 s
        assert "did not finish answering GET /v1/nodes within 2 s" in str(e.value)
    finally:
        server.close()


def test_a_100_mib_body_is_not_read_whole():
    server = FakeServer("127.0.0.1", 0, {"/api/v1/targets": Reply(200, chunked_mib=100)})
    try:
        client = client_for(ApiConfig(name="prometheus", urls=(f"http://127.0.0.1:{server.port}",)))
        tracemalloc.start()
        with pytest.raises(TooLarge):
            client.get("/api/v1/targets", 20.0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        client.close()
        time.sleep(0.2)
        assert peak < 48 * 1024 * 1024, peak
        assert server.sent < 40 * 1024 * 1024, server.sent  # the client stopped reading early
    finally:
        server.close()


def test_redirects_are_not_followed_and_carry_no_token(monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", SECRET)
    monkeypatch.setenv("VAULT_TOKEN", SECRET)
    elsewhere = FakeServer("127.0.0.1", 0, {"/": Reply.json({"stolen": True})})
    where = f"http://127.0.0.1:{elsewhere.port}/v1/steal"
    try:
        with fake_cluster() as fakes:
            fakes.consul.set("/v1/agent/members", Reply(302, b"", {"Location": where}))
            fakes.vault.set("/v1/sys/ha-status", Reply(307, b"", {"Location": where}))
            fakes.vault.set("/v1/sys/health", Reply(302, b"", {"Location": where}), master=1)
            inv = inventory(apis(consul=fakes.consul.url(), vault=fakes.vault.url()))
            consul = consul_api.fetch(api_config("consul", inv, masters=list(inv.nodes[:3])))
            vault = vault_api.fetch(api_config("vault", inv, masters=list(inv.nodes[:3])), inv.nodes[:3])
    finally:
        elsewhere.close()
    assert elsewhere.requests == []
    for err in (consul.error_of("members"), vault.error_of("ha_status"), vault.masters.error_of("alimesos02")):
        assert err is not None and err.kind == "redirect" and f"to '{where}'" in str(err), err
        assert "not followed" in str(err) and SECRET not in str(err)


def test_a_server_echoing_the_token_never_puts_it_in_a_message(monkeypatch):
    monkeypatch.setenv("NOMAD_TOKEN", SECRET)
    with fake_cluster() as fakes:
        fakes.nomad.set("/v1/nodes", Reply(500, f"rpc error: token {SECRET} caused a panic".encode()))
        fakes.nomad.set("/v1/jobs", Reply(403, f"Permission denied for X-Nomad-Token: {SECRET}".encode()))
        fakes.nomad.set("/v1/allocations", Reply(200, f'"{SECRET}"'.encode()))
        inv = inventory(apis(nomad=fakes.nomad.url(), retry_s=0.5))
        snap = nomad_api.fetch(api_config("nomad", inv, masters=list(inv.nodes[:3])))
    messages = [str(e) for e in snap.errors().values()]
    assert len(messages) == 3 and all(SECRET not in m for m in messages), messages
    assert any(MASK in m for m in messages)


# --------------------------------------------------------------------------- OpenStack


def openstack_inventory(path: Path, deadline_s: float = 45.0) -> Any:
    return inventory(apis(openstack=OpenStackSettings(cloud="test", clouds_yaml=path, timeout_s=3),
                          deadline_s=deadline_s))


def fetch_from_keystone(tmp_path: Path, route: Route, deadline_s: float) -> tuple[Any, float, Any]:
    """OpenStack's snapshot from a local Keystone answering every path with ``route``, the seconds it took, and
    the inventory."""
    keystone = FakeServer("127.0.0.1", 0, {"/": route})
    try:
        inv = openstack_inventory(clouds_yaml(tmp_path, f"http://127.0.0.1:{keystone.port}/v3"), deadline_s=deadline_s)
        start = time.monotonic()
        snap = openstack_api.fetch(inv, inv.nodes)
        return snap, time.monotonic() - start, inv
    finally:
        keystone.close()


@pytest.mark.parametrize("setting", ["verify: false", "insecure: true"])
def test_clouds_yaml_without_tls_verification_is_refused(tmp_path, monkeypatch, setting):
    monkeypatch.delenv(openstack_cloud.INSECURE_VAR, raising=False)
    inv = openstack_inventory(clouds_yaml(tmp_path, "https://127.0.0.1:9/v3", setting))
    start = time.monotonic()
    snap = openstack_api.fetch(inv, inv.nodes)
    assert time.monotonic() - start < 5
    assert snap.root is not None and snap.root.kind == "config"
    message = str(snap.root)
    assert "turns TLS verification off" in message and openstack_cloud.INSECURE_VAR in message
    assert "\n" not in message and PASSWORD not in message
    results = run_checks({"openstack": snap}, inv, through_fixtures=True)
    assert results["api.openstack.reachable[cluster]"].outcome == "error"
    with pytest.raises(ApiError) as e:  # the same refusal for discovery (acceptance/discovery.py may call it)
        openstack_cloud.select_cloud(inv, "metal")
    assert e.value.kind == "config"


def test_the_insecure_opt_in_lets_it_through(tmp_path, monkeypatch):
    monkeypatch.setenv(openstack_cloud.INSECURE_VAR, "1")
    inv = openstack_inventory(clouds_yaml(tmp_path, "https://127.0.0.1:9/v3", "verify: false"))
    region = openstack_cloud.select_cloud(inv).region
    assert region.get_requests_verify_args()[0] is False


def test_keystone_answering_401_and_echoing_the_password_is_bounded(tmp_path, monkeypatch):
    monkeypatch.delenv(openstack_cloud.INSECURE_VAR, raising=False)

    def echo(path: str, params: Any, headers: Any) -> Reply:
        return Reply(401, f'{{"error": {{"message": "bad request {headers.get("x-test-body", "")}"}}}}'.encode(),
                     {"Content-Type": "application/json"})

    snap, elapsed, inv = fetch_from_keystone(tmp_path, echo, deadline_s=8)
    assert elapsed < 10, elapsed
    assert snap.root is not None
    message = str(snap.root)
    assert PASSWORD not in message and "\n" not in message, message
    results = run_checks({"openstack": snap}, inv, through_fixtures=True)
    assert not [k for k, r in results.items() if ".openstack." in k and r.outcome == "passed"]
    assert all(PASSWORD not in r.message for r in results.values())


def test_a_keystone_that_never_answers_costs_the_deadline_not_more(tmp_path):
    snap, elapsed, _ = fetch_from_keystone(tmp_path, Reply(200, b"{}", hold_s=30), deadline_s=3)
    assert elapsed < 5, elapsed
    assert snap.root is not None and "did not answer within the deadline of 3 s" in str(snap.root)


def test_registry_builds_every_api_from_one_list():
    assert [s.name for s in apiregistry.APIS] == ["nomad", "consul", "vault", "prometheus", "openstack"]
    from acceptance import apifixtures
    from checks import cluster_apis

    for spec in apiregistry.APIS:
        assert hasattr(apifixtures, spec.fixture) and hasattr(cluster_apis, f"test_{spec.name}_reachable")
    with fake_cluster():
        snaps = apiregistry.make_snapshots(inventory(Apis()), inventory(Apis()).nodes)
        for spec in apiregistry.APIS:
            snap = snaps.get(spec.name)
            assert isinstance(snap, spec.snapshot) and snap.root is not None and snap.root.kind == "config"
        snaps.close()
    assert os.environ.get("NOMAD_TOKEN") != SECRET
