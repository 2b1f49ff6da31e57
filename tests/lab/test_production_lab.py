"""The lab as unforgiving as production, and what the suite makes of it: nodes and APIs named by host name,
tokens made from the README's policy files, OpenStack roles, a server that lags, rate limits, a leaderless
Consul that holds its reads, an unknown token; and the gate and --prepare on the master that leads."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..polling import wait_until
from . import faults, labapi, policies
from .cluster import current
from .cluster import env as lab_env
from .configs import node_dir
from .observe import LAB_ERRORS
from .test_moments import cli, leaders
from .test_remediation import inventory
from .topology import DOMAIN, REPO, STATE, stable_id

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]

CLUSTER_CHECKS = [str(REPO / "checks" / f"cluster_{m}.py") for m in ("apis", "nomad", "consul")]


def checks(tmp: Path, *modules: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """The suite's checks against the lab as an operator runs them; the summary and the run's wall time."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", *modules, f"--inventory={inventory(tmp)}",
                           f"--report-dir={tmp / 'out'}", "-p", "no:cacheprovider", "-q", "-n", "0"],
                          cwd=REPO, env=env or lab_env(), capture_output=True, text=True, timeout=300, check=False)
    took = time.monotonic() - started
    path = tmp / "out" / "latest" / "summary.json"
    assert path.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    return dict(json.loads(path.read_text())), took


def outcome(summary: dict[str, Any], check: str, node: str = "cluster") -> tuple[str, str]:
    r = next(r for r in summary["records"] if r["check"] == check and r["node"] == node)
    return r["outcome"], r.get("message") or ""


def not_passed(summary: dict[str, Any]) -> set[str]:
    return {f"{r['check']}[{r['node']}]" for r in summary["records"] if r["outcome"] != "passed"}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def test_the_lab_is_reached_by_host_name() -> None:
    inv = yaml.safe_load((STATE / "inventory.yaml").read_text())
    topo = current()
    for n in inv["nodes"]["masters"] + inv["nodes"]["agents"]:
        assert n["address"] == f"{n['name']}.{DOMAIN}", n
        assert socket.gethostbyname(n["address"]) == topo.get(n["name"]).ip
    hosts = [urllib.parse.urlsplit(inv["apis"][api]["address"]).hostname for api in
             ("nomad", "consul", "vault", "prometheus")]
    hosts.append(inv["apis"]["consul"]["dns"].rsplit(":", 1)[0])
    env = lab_env()
    hosts += [urllib.parse.urlsplit(env[v]).hostname for v in ("NOMAD_ADDR", "CONSUL_HTTP_ADDR", "VAULT_ADDR")]
    clouds = yaml.safe_load((STATE / "clouds.yaml").read_text())["clouds"]
    hosts += [urllib.parse.urlsplit(c["auth"]["auth_url"]).hostname for c in clouds.values()]
    assert hosts and not [h for h in hosts if not h or _is_ip(h)], hosts
    # the servers still say who leads by IP, as production's do: that is what the suite has to match
    _, leader = labapi.nomad("GET", topo.masters[0].ip, "/v1/status/leader")
    assert _is_ip(str(leader).rsplit(":", 1)[0]), leader


def test_every_token_is_made_from_the_readme_policy_files() -> None:
    acl = json.loads((node_dir(current().masters[0]) / "node.json").read_text())["acl"]
    assert acl["nomad"]["policies"] == {"alice-acceptance-read": policies.rules("nomad-read")}
    assert acl["consul"]["policies"] == {"alice-acceptance-read": policies.rules("consul-read"),
                                         "alice-acceptance-remediation": policies.rules("consul-remediation"),
                                         "alice-acceptance-dns": policies.rules("consul-dns")}
    root = json.loads((STATE / "vault-init.json").read_text())["root_token"]
    for name, source in (("acceptance-read", "vault-read"), ("acceptance-remediation", "vault-remediation")):
        status, body = labapi.vault("GET", current().masters[0].ip, f"/v1/sys/policies/acl/{name}", token=root)
        assert status == 200 and body["data"]["policy"] == policies.text(source), (name, status)
    readme = (REPO / "README.md").read_text()
    for path in sorted((REPO / "deploy" / "policies").glob("*.hcl")):
        assert f"```hcl\n{path.read_text()}```\n" in readme, path.name


def test_the_checks_cloud_reads_and_cannot_act() -> None:
    """The checks' clouds.yaml entry holds a reader: Nova lists its servers and refuses it any action; the
    remediation entry holds a member, whom Nova lets act (here: start an ACTIVE server, refused only by state)."""
    import openstack.config
    import openstack.connection
    import openstack.exceptions

    node = current().get("alibuild01")
    config = str(STATE / "clouds.yaml")

    def connect(cloud: str) -> Any:
        region = openstack.config.OpenStackConfig(config_files=[config]).get_one(cloud=cloud)
        return openstack.connection.Connection(config=region)

    reader = connect("alicelab")
    assert node.name in {s.name for s in reader.compute.servers()}
    with pytest.raises(openstack.exceptions.ForbiddenException, match="os_compute_api:servers:reboot"):
        reader.compute.reboot_server(node.server_id, "HARD")
    member = connect("alicelab-remediation")
    with pytest.raises(openstack.exceptions.ConflictException):
        member.compute.start_server(node.server_id)  # allowed, but the server is ACTIVE already


def test_a_random_nomad_token_is_reported_as_unknown(tmp_path: Path) -> None:
    env = {**lab_env(), "NOMAD_TOKEN": str(uuid.uuid4())}
    summary, _ = checks(tmp_path, str(REPO / "checks" / "cluster_apis.py"),
                        str(REPO / "checks" / "cluster_nomad.py"), env=env)
    state, message = outcome(summary, "api.nomad.reachable")
    assert state == "error" and message.startswith("NOMAD_TOKEN is not a token Nomad knows (unknown or expired"), (
        state, message)
    assert env["NOMAD_TOKEN"] not in json.dumps(summary)
    assert outcome(summary, "agent.nomad.ready", "alibuild01")[0] == "blocked"


def test_gate_prepare_moves_every_leadership_off_the_master_that_holds_them(tmp_path: Path) -> None:
    """Nomad's and Consul's leader and the active Vault on one master, named by host name in the inventory
    while the servers report IPs: the gate says NO-GO for each, --prepare moves them all, then GO."""
    topo = current()
    m = topo.masters[0].ip
    target = leaders()["nomad"]
    labapi.consul("POST", m, f"/v1/operator/raft/transfer-leader?id={stable_id('consul', target)}")
    wait_until(lambda: leaders()["consul"] == target, timeout=60, interval=1,
               what=f"Consul leadership to reach {target}", ignore=LAB_ERRORS)
    root = json.loads((STATE / "vault-init.json").read_text())["root_token"]
    for _ in range(8):  # step the active Vault down until the target's OpenBao takes over
        held = leaders().get("vault")
        if held == target:
            break
        labapi.vault("PUT", topo.get(str(held)).ip, "/v1/sys/step-down", token=root)
        with contextlib.suppress(AssertionError):  # not moved yet: the loop steps it down again
            wait_until(functools.partial(_moved_off, str(held)), timeout=30, interval=1,
                       what=f"the active OpenBao to move off {held}", ignore=LAB_ERRORS)
    before = leaders()
    assert before["nomad"] == before["consul"] == target, before
    inv = inventory(tmp_path)
    no = cli(tmp_path, "gate", f"rebuild:{target}", f"--inventory={inv}", f"--report-dir={tmp_path / 'no'}",
             "-p", "no:cacheprovider")
    assert no.returncode == 1 and f"NO-GO: rebuild {target}" in no.stdout, no.stdout[-3000:]
    assert f"gate.nomad.leader[{target}] failed" in no.stdout and f"gate.consul.leader[{target}] failed" in no.stdout
    if before.get("vault") == target:
        assert f"gate.vault.active[{target}] failed" in no.stdout
    try:
        go = cli(tmp_path, "gate", f"rebuild:{target}", "--prepare", f"--inventory={inv}",
                 f"--report-dir={tmp_path / 'go'}", "-p", "no:cacheprovider")
    finally:  # the rebuild is the human's: the hold on the remediation lock ends when they say so
        cli(tmp_path, "release", f"--inventory={inv}")
    assert go.returncode == 0 and f"GO: rebuild {target}" in go.stdout, go.stdout[-3000:]
    for title in ("Nomad", "Consul"):
        assert f"{title} leadership moved from {target}" in go.stdout, go.stdout[-3000:]
    after = leaders()
    assert target not in (after["nomad"], after["consul"], after.get("vault")), (before, after)
    print(f"before: {before}; after --prepare: {after}")


def _moved_off(held: str) -> bool:
    return leaders().get("vault") not in (held, None)


def _follower_of_both() -> str:
    held = leaders()
    return next(n.name for n in current().masters if n.name not in (held["nomad"], held["consul"]))


def test_a_lagging_master_fails_the_server_checks_on_that_master(tmp_path: Path) -> None:
    lagging = _follower_of_both()
    faults.inject("lag-server", lagging)
    try:
        def flagged() -> bool:
            for service in ("nomad", "consul"):
                _, health = getattr(labapi, service)("GET", current().masters[0].ip, "/v1/operator/autopilot/health")
                mine = [s for s in health["Servers"] if s["Name"].split(".")[0] == lagging]
                if not mine or mine[0]["Healthy"]:
                    return False
            return True

        wait_until(flagged, timeout=60, interval=1, what=f"autopilot to judge {lagging} unhealthy", ignore=LAB_ERRORS)
        summary, _ = checks(tmp_path, *CLUSTER_CHECKS)
    finally:
        faults.heal("lag-server", lagging)
    for check in ("cluster.nomad.peers", "cluster.consul.voters"):
        state, message = outcome(summary, check)
        assert state == "failed" and f"{lagging} (" in message and "unhealthy" in message, (check, state, message)
        others = [m.name for m in current().masters if m.name != lagging]
        assert not any(f"{o} (" in message for o in others), message
    assert outcome(summary, "cluster.nomad.leader")[0] == "passed"
    assert outcome(summary, "cluster.consul.leader")[0] == "passed"
    wait_until(lambda: not flagged(), timeout=60, interval=1, what=f"{lagging} to catch up", ignore=LAB_ERRORS)


@pytest.mark.parametrize("service", ["nomad", "consul"])
def test_rate_limited_servers_are_retried_not_failed(tmp_path: Path, service: str) -> None:
    faults.inject(f"rate-limit:{service}")
    try:
        call = getattr(labapi, service)
        path = {"nomad": "/v1/nodes", "consul": "/v1/catalog/nodes"}[service]

        def refused() -> bool:  # seen from outside: the server refuses what exceeds its rate (flag read each 1 s)
            with ThreadPoolExecutor(8) as pool:
                burst = list(pool.map(lambda _: call("GET", current().masters[1].ip, path)[0], range(8)))
            return 429 in burst

        wait_until(refused, timeout=20, interval=1, what=f"{service} to answer 429 to a burst", ignore=LAB_ERRORS)
        summary, took = checks(tmp_path, *CLUSTER_CHECKS)
    finally:
        faults.heal(f"rate-limit:{service}")
    assert not_passed(summary) == set(), not_passed(summary)
    print(f"{service} rate-limited to {faults.RATE_PER_S}/s: cluster checks passed in {took:.1f} s")


def test_a_leaderless_consul_is_reported_as_without_leader_not_unreachable(tmp_path: Path) -> None:
    """Two Consul servers stopped: the third holds every consistent read for 7 s (rpc_hold_timeout) and answers
    500 "No cluster leader"; the suite says so, within its deadline, and never calls Consul unreachable."""
    topo = current()
    stopped = [m.name for m in topo.masters[:2]]
    for name in stopped:
        faults.inject("stop-unit:consul", name)
    try:
        wait_until(lambda: labapi.consul("GET", topo.masters[2].ip, "/v1/status/leader")[1] == "", timeout=60,
                   interval=1, what="Consul without a leader", ignore=LAB_ERRORS)
        summary, took = checks(tmp_path, str(REPO / "checks" / "cluster_apis.py"),
                               str(REPO / "checks" / "cluster_consul.py"))
    finally:
        for name in stopped:
            faults.heal("stop-unit:consul", name)
        with contextlib.suppress(AssertionError):  # best effort: the verdict is the outcome below
            wait_until(lambda: bool(labapi.consul("GET", topo.masters[0].ip, "/v1/status/leader")[1]), timeout=90,
                       interval=2, what="a Consul leader again", ignore=LAB_ERRORS)
    state, message = outcome(summary, "cluster.consul.leader")
    assert state == "failed" and "no Consul leader" in message, (state, message)
    messages = " ".join(r.get("message") or "" for r in summary["records"] if r["check"].startswith(
        ("cluster.consul", "api.consul")))
    assert "unreachable" not in messages and "no answer" not in messages, messages
    print(f"leaderless Consul: its checks answered in {took:.1f} s")
