"""The API clients: configuration from the inventory and the CLIs' variables, retries of what is safe to retry
(a leader election within the window passes), fail-over, one clear line for a wrong CA or a wrong token (against
a real local HTTPS server with throwaway certificates), least privilege (a right the token lacks is named, not a
block of the whole API), Consul's ACL filtering, and the Nomad namespace."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from acceptance.clients import nomad_api, prometheus_api
from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig, api_config
from acceptance.clients.errors import ApiError
from acceptance.clients.transport import Answer
from acceptance.inventory import Apis, Endpoint, TlsSettings
from acceptance.judging import raft as judge_raft

from .test_api_support import (
    SECRET,
    Reply,
    answer_every_name,
    fake_cluster,
    inventory,
    nomad_routes,
    run_checks,
    snapshots_of,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FakeClient:
    """A Client whose ``reply(url, path)`` gives an Answer or raises."""

    def __init__(self, url: str, reply: Any) -> None:
        self.url = url
        self.reply = reply

    def get(self, path: str, timeout_s: float, params: Mapping[str, str] | None = None, **_: Any) -> Answer:
        result: Answer = self.reply(self.url, path)
        return result


def answer(url: str, path: str, body: Any, status: int = 200) -> Answer:
    return Answer(url, path, status, {"content-type": "application/json"}, json.dumps(body).encode())


def cfg(retry_s: float = 20, urls: tuple[str, ...] = ("https://a:4646",), deadline_s: float = 45) -> ApiConfig:
    return ApiConfig(name="nomad", urls=urls, token_var="NOMAD_TOKEN", retry_s=retry_s, deadline_s=deadline_s)


def flapping(flaps: int) -> tuple[Any, list[int]]:
    """No leader for ``flaps`` calls (500 No cluster leader, then ""), then one."""
    calls = [0]

    def reply(url: str, path: str) -> Answer:
        calls[0] += 1
        if calls[0] <= flaps:
            if calls[0] % 2:
                return Answer(url, path, 500, {}, b"No cluster leader")
            return answer(url, path, "")
        return answer(url, path, "172.30.0.12:4647")

    return reply, calls


def test_leader_flap_within_the_window_passes():
    clock = Clock()
    reply, calls = flapping(4)
    caller = Caller(cfg(), lambda url: FakeClient(url, reply), clock=clock, sleep=clock.sleep)
    got = caller.read("/v1/status/leader", lambda d: d, accept=nomad_api._leader_elected)
    assert got == "172.30.0.12:4647" and calls[0] == 5 and clock.now < 20


def test_no_leader_for_the_whole_window_is_reported_then_later_calls_do_not_wait_again():
    clock = Clock()
    reply, calls = flapping(10**6)
    caller = Caller(cfg(retry_s=5), lambda url: FakeClient(url, reply), clock=clock, sleep=clock.sleep)
    with pytest.raises(ApiError) as e:
        caller.read("/v1/status/leader", lambda d: d, accept=nomad_api._leader_elected)
    assert e.value.kind == "no-leader" and 5 <= clock.now < 8
    before = calls[0]
    with pytest.raises(ApiError) as again:
        caller.read("/v1/nodes", lambda d: d)
    # not asked: a leaderless server holds such a read (Nomad 5 s, Consul 7 s) to say the same
    assert calls[0] == before and again.value.kind == "no-leader"
    with pytest.raises(ApiError):
        caller.read("/v1/status/peers", lambda d: d)
    assert calls[0] == before + 1  # what a server answers from its own state is still asked, once


def test_the_retry_window_ends_at_the_deadline():
    clock = Clock()
    reply, _ = flapping(10**6)
    caller = Caller(cfg(retry_s=60, deadline_s=10), lambda url: FakeClient(url, reply), clock=clock, sleep=clock.sleep)
    with pytest.raises(ApiError):
        caller.read("/v1/status/leader", lambda d: d, accept=nomad_api._leader_elected)
    assert 10 <= clock.now < 11
    with pytest.raises(ApiError) as e:
        caller.read("/v1/nodes", lambda d: d)
    assert e.value.kind == "deadline" and "apis.deadline_s" in str(e.value)


def test_a_leaderless_server_is_reported_over_refused_connections():
    """Two servers down, one up without a leader: the API is reachable and says "no leader"."""
    clock = Clock()

    def reply(url: str, path: str) -> Answer:
        if url == "https://b:8500":
            return Answer(url, path, 500, {}, b"No cluster leader")
        raise requests.exceptions.ConnectionError("Connection refused")

    urls = ("https://a:8500", "https://b:8500", "https://c:8500")
    caller = Caller(cfg(retry_s=3, urls=urls), lambda url: FakeClient(url, reply), clock=clock, sleep=clock.sleep)
    with pytest.raises(ApiError) as e:
        caller.read("/v1/status/leader", lambda d: d)
    assert e.value.kind == "no-leader" and caller.dead is None


def test_not_retried_403_and_failover_on_connection_refused():
    clock = Clock()
    calls: list[str] = []

    def reply(url: str, path: str) -> Answer:
        calls.append(url)
        if url == "https://a:4646":
            raise requests.exceptions.ConnectionError("Connection refused")
        if path == "/v1/forbidden":
            return Answer(url, path, 403, {}, b"Permission denied")
        return answer(url, path, "ok")

    caller = Caller(cfg(urls=("https://a:4646", "https://b:4646")), lambda url: FakeClient(url, reply), clock=clock,
                    sleep=clock.sleep)
    assert caller.read("/v1/nodes", lambda d: d) == "ok" and caller.url == "https://b:4646"
    assert caller.read("/v1/jobs", lambda d: d) == "ok" and calls == ["https://a:4646", "https://b:4646",
                                                                      "https://b:4646"]
    calls.clear()
    with pytest.raises(ApiError) as e:
        caller.read("/v1/forbidden", lambda d: d, right="operator:read")
    assert calls == ["https://b:4646"] and e.value.kind == "auth"  # no token configured: "set NOMAD_TOKEN"


def test_config_from_env_and_inventory(tmp_path):
    files = {n: tmp_path / f"{n}.pem" for n in ("ca", "cert", "key", "other")}
    for f in files.values():
        f.write_text("")
    inv = inventory(Apis(tls=TlsSettings(files["ca"], files["cert"], files["key"]),
                         nomad=Endpoint("https://172.30.0.11:4646")), path=tmp_path / "inv.yaml")
    c = api_config("nomad", inv, {"NOMAD_CACERT": str(files["other"]), "NOMAD_TOKEN": SECRET})
    assert c.urls[0] == "https://172.30.0.11:4646" and c.ca == files["other"] and c.ca_source == "NOMAD_CACERT"
    assert c.token == SECRET and SECRET not in repr(c) and c.headers == {"X-Nomad-Token": SECRET}
    assert c.cert == files["cert"] and c.verify == str(files["other"])  # TLS files: env first, then apis.tls
    assert c.namespace == "default" and c.deadline_s == 45
    assert api_config("nomad", inv, {"NOMAD_NAMESPACE": "ci"}).namespace == "ci"
    consul = api_config("consul", inv, {"CONSUL_HTTP_ADDR": "10.0.0.1:8500", "CONSUL_HTTP_SSL": "true"})
    assert consul.urls[0] == "https://10.0.0.1:8500" and consul.ca_source.startswith("apis.tls.ca")
    assert "set NOMAD_ADDR" in (api_config("nomad", inventory(Apis()), {}).problem or "")
    missing = api_config("vault", inv, {"VAULT_ADDR": "https://v:8200", "VAULT_CACERT": str(tmp_path / "nope.pem")})
    assert "VAULT_CACERT" in (missing.problem or "") and "file not found" in (missing.problem or "")


@pytest.mark.parametrize("api", ["prometheus", "nomad", "consul"])
def test_credentials_in_an_address_are_refused_without_echo(api):
    inv = inventory(Apis(**{api: Endpoint("https://scraper:Pa55w0rd-xyz@prom.example:9090")}))
    c = api_config(api, inv, {})
    assert c.problem is not None and "credentials" in c.problem and "Pa55w0rd-xyz" not in c.problem
    assert "scraper" not in c.problem
    env_var = {"nomad": "NOMAD_ADDR", "consul": "CONSUL_HTTP_ADDR"}.get(api)
    if env_var:
        c = api_config(api, inventory(Apis()), {env_var: "http://u:Pa55w0rd-xyz@h:1"})
        assert c.problem is not None and "Pa55w0rd-xyz" not in c.problem and env_var in c.problem


# --------------------------------------------------------------------------- least privilege, against fake servers


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    answer_every_name(monkeypatch)


def test_nomad_without_operator_read_errors_the_server_checks_only(monkeypatch):
    """A token with node:read and read-job but not operator:read: the server checks say which right is missing;
    everything else runs. The management-only raft configuration is never asked for."""
    monkeypatch.setenv("NOMAD_TOKEN", SECRET)
    with fake_cluster() as fakes:
        fakes.nomad.set("/v1/operator/autopilot/health", Reply(403, b"Permission denied"))
        snaps, inv = snapshots_of(fakes)
        asked = [p for p, _ in fakes.nomad.requests()]
        tokens = {h.get("x-nomad-token") for p, h in fakes.nomad.requests() if not p.startswith("/v1/status")}
    assert not any(p.startswith("/v1/operator/raft") for p in asked) and tokens == {SECRET}
    assert snaps["nomad"].root is None
    results = run_checks(snaps, inv, through_fixtures=True)
    for check in ("cluster.nomad.peers", "cluster.nomad.failure-tolerance", "cluster.nomad.versions"):
        r = results[f"{check}[cluster]"]
        assert r.outcome == "error" and r.message.startswith(
            "NOMAD_TOKEN lacks operator:read (GET /v1/operator/autopilot/health answered 403"), r
        assert SECRET not in r.message
    for check in ("api.nomad.reachable[cluster]", "cluster.nomad.leader[cluster]", "agent.nomad.ready[alibuild01]",
                  "cluster.nomad.jobs-running[cluster]"):
        assert results[check].outcome == "passed", (check, results[check])


def test_a_token_refused_everywhere_makes_the_root_check_error(monkeypatch):
    monkeypatch.setenv("NOMAD_TOKEN", SECRET)
    with fake_cluster() as fakes:
        for path in ("/v1/operator/autopilot/health", "/v1/nodes", "/v1/jobs", "/v1/allocations"):
            fakes.nomad.set(path, Reply(403, f"ACL token not found ({SECRET})".encode()))
        snaps, inv = snapshots_of(fakes)
    results = run_checks(snaps, inv, through_fixtures=True)
    root = results["api.nomad.reachable[cluster]"]
    assert root.outcome == "error" and "rejected the token (403)" in root.message and "set NOMAD_TOKEN" in root.message
    assert SECRET not in root.message
    assert results["cluster.nomad.leader[cluster]"].outcome == "blocked"


@pytest.mark.parametrize("service", ["nomad", "consul"])
def test_an_unknown_token_is_named_as_such_not_as_a_missing_right(monkeypatch, service):
    """Nomad 1.9 answers an unknown or expired secret with the same 403 "Permission denied" as a missing right;
    asked whether it knows the token at all, it refuses that too: the variable is named as not a known token."""
    var = {"nomad": "NOMAD_TOKEN", "consul": "CONSUL_HTTP_TOKEN"}[service]
    monkeypatch.setenv(var, SECRET)
    with fake_cluster() as fakes:
        fake = getattr(fakes, service)
        for path in [p for p in fake.routes if not p.startswith("/v1/status")]:
            fake.set(path, Reply(403, b"Permission denied"))
        snaps, inv = snapshots_of(fakes)
        asked = [p for p, _ in fake.requests()]
    assert asked.count("/v1/acl/token/self") == 1
    root = snaps[service].root
    assert root is not None and str(root).startswith(f"{var} is not a token {service.title()} knows (unknown or "
                                                     "expired: GET /v1/acl/token/self answered 403)"), root
    results = run_checks(snaps, inv, through_fixtures=True)
    assert results[f"api.{service}.reachable[cluster]"].outcome == "error"
    assert SECRET not in str(root)


def test_an_expired_nomad_token_is_named_as_such(monkeypatch):
    """Nomad still shows an expired token on /v1/acl/token/self until its garbage collection: its ExpirationTime
    in the past says why every endpoint refuses it."""
    from .test_api_support import sample

    monkeypatch.setenv("NOMAD_TOKEN", SECRET)
    with fake_cluster() as fakes:
        for path in ("/v1/operator/autopilot/health", "/v1/nodes", "/v1/jobs", "/v1/allocations"):
            fakes.nomad.set(path, Reply(403, b"Permission denied"))
        token = dict(sample("nomad/acl_token_self"), SecretID=SECRET, ExpirationTime="2026-01-02T03:04:05.123456789Z")
        fakes.nomad.set("/v1/acl/token/self", Reply.json(token))
        snaps, _ = snapshots_of(fakes)
    root = str(snaps["nomad"].root)
    assert root.startswith("NOMAD_TOKEN expired at 2026-01-02T03:04:05.123456789Z"), root
    assert SECRET not in root


def test_rate_limits_and_a_just_elected_autopilot_are_retried(monkeypatch):
    """429 from a rate limit (not JSON) and 429 with "Servers": null (autopilot has not run on a new leader) are
    retried within the snapshot's deadline; the autopilot answer that follows is read."""
    with fake_cluster() as fakes:
        healthy = fakes.consul.routes["/v1/operator/autopilot/health"]
        answers = iter([Reply.text("rate limit exceeded", 429), Reply.json({"Healthy": False, "FailureTolerance": 0,
                                                                           "Servers": None}, 429)])
        fakes.consul.set("/v1/operator/autopilot/health", lambda *_: next(answers, healthy))  # type: ignore[arg-type]
        limited = iter([Reply.text("rate limit exceeded", 429)])
        nodes = fakes.nomad.routes["/v1/nodes"]
        fakes.nomad.set("/v1/nodes", lambda *_: next(limited, nodes))  # type: ignore[arg-type]
        snaps, inv = snapshots_of(fakes)
        asked = [p for p, _ in fakes.consul.requests()]
    assert asked.count("/v1/operator/autopilot/health") == 3
    results = run_checks(snaps, inv)
    for check in ("cluster.consul.voters[cluster]", "agent.nomad.ready[alibuild01]"):
        assert results[check].outcome == "passed", results[check]


def test_the_leader_is_told_by_identity_not_by_address_text():
    """Servers report IPs, the inventory names hosts: autopilot's Leader by its name, else the address resolved."""
    from acceptance.clients import raft

    ap = raft.parse_autopilot(json.loads(nomad_routes()["/v1/operator/autopilot/health"].body))  # type: ignore[union-attr]
    masters = [("alimesos01", "localhost"), ("alimesos02", "127.0.0.2"), ("alimesos03", "127.0.0.3")]
    leader = next(s for s in ap.servers if s.leader)
    assert judge_raft.leading_master("", ap, masters) == leader.name.split(".")[0]
    assert judge_raft.leading_master("127.0.0.1:4647", None, masters) == "alimesos01"  # localhost resolves to it
    assert judge_raft.leading_master("10.9.9.9:4647", None, masters[1:]) is None  # nobody: the gate cannot tell


def test_no_token_at_all_says_to_set_it(monkeypatch):
    monkeypatch.delenv("NOMAD_TOKEN", raising=False)
    with fake_cluster() as fakes:
        for path in ("/v1/operator/autopilot/health", "/v1/nodes", "/v1/jobs", "/v1/allocations"):
            fakes.nomad.set(path, Reply(403, b"Permission denied"))
        snaps, _ = snapshots_of(fakes)
    assert snaps["nomad"].root is not None and "no token sent — set NOMAD_TOKEN" in str(snaps["nomad"].root)


def test_consul_filtered_by_acl_is_an_error_never_a_pass(monkeypatch):
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", SECRET)
    with fake_cluster() as fakes:
        fakes.consul.set("/v1/health/state/critical",
                         Reply.json([], headers={"X-Consul-Results-Filtered-By-ACLs": "true"}))
        snaps, inv = snapshots_of(fakes)
    results = run_checks(snaps, inv, through_fixtures=True)
    r = results["cluster.consul.critical-checks[cluster]"]
    assert r.outcome == "error", r
    assert r.message == ("the token cannot see everything: Consul filtered /v1/health/state/critical by ACL; give "
                         "CONSUL_HTTP_TOKEN node:read and service:read (on every node and service) on everything")
    assert results["cluster.consul.leader[cluster]"].outcome == "passed"


def test_consul_filtered_member_list_and_catalog(monkeypatch):
    with fake_cluster() as fakes:
        members = json.loads(fakes.consul.routes["/v1/agent/members"].body)  # type: ignore[union-attr]
        fakes.consul.set("/v1/agent/members",
                         Reply.json(members[:1], headers={"X-Consul-Results-Filtered-By-ACLs": "true"}))
        fakes.consul.set("/v1/catalog/services", Reply.json({"consul": []},
                                                            headers={"X-Consul-Results-Filtered-By-ACLs": "true"}))
        snaps, inv = snapshots_of(fakes)
    results = run_checks(snaps, inv)
    for check in ("cluster.consul.members", "cluster.consul.dns"):
        assert results[f"{check}[cluster]"].outcome == "error" and "filtered" in results[f"{check}[cluster]"].message


def test_consul_master_gone_from_autopilot_and_members():
    with fake_cluster() as fakes:
        ap = json.loads(fakes.consul.routes["/v1/operator/autopilot/health"].body)  # type: ignore[union-attr]
        ap["Servers"] = ap["Servers"][:2]
        ap["FailureTolerance"] = 0
        fakes.consul.set("/v1/operator/autopilot/health", Reply.json(ap))
        members = json.loads(fakes.consul.routes["/v1/agent/members"].body)  # type: ignore[union-attr]
        members[2]["Status"] = 3  # left
        fakes.consul.set("/v1/agent/members", Reply.json(members))
        snaps, inv = snapshots_of(fakes)
    results = run_checks(snaps, inv)
    assert results["cluster.consul.voters[cluster]"].outcome == "failed"
    assert "alimesos03 is not a Consul server" in results["cluster.consul.voters[cluster]"].message
    assert results["cluster.consul.members[cluster]"].message == "master alimesos03 is left"
    assert results["cluster.consul.failure-tolerance[cluster]"].outcome == "failed"


def test_autopilot_unhealthy_429_is_read():
    with fake_cluster() as fakes:
        ap = json.loads(fakes.nomad.routes["/v1/operator/autopilot/health"].body)  # type: ignore[union-attr]
        ap["Healthy"] = False
        ap["Servers"][1].update(Healthy=False, SerfStatus="failed")
        fakes.nomad.set("/v1/operator/autopilot/health", Reply.json(ap, 429))
        snaps, inv = snapshots_of(fakes)
    results = run_checks(snaps, inv)
    assert results["cluster.nomad.peers[cluster]"].message == "alimesos02 (alimesos02.global): failed, unhealthy"
    assert results["cluster.nomad.failure-tolerance[cluster]"].outcome == "failed"


# --------------------------------------------------------------------------- a real TLS server


def _ca(tmp: Path, name: str) -> tuple[Any, Any, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def _server_cert(tmp: Path, ca_key: Any, ca_cert: Any) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp / "server.pem", tmp / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        token = self.headers.get("X-Nomad-Token")
        if self.path.startswith("/v1/status/leader"):
            status, body = 200, json.dumps("127.0.0.1:4647")
        elif self.path.startswith("/v1/status/peers"):
            status, body = 200, json.dumps(["127.0.0.1:4647"])
        elif token != SECRET:
            status, body = 403, f"ACL token not found: {token}" if token else "Permission denied"
        elif self.path.startswith("/v1/operator/autopilot/health"):
            status, body = 200, json.dumps({"Healthy": True, "FailureTolerance": 0, "Servers": []})
        else:
            status, body = 200, "[]"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("tls")
    key, cert, ca = _ca(tmp, "cluster-ca")
    _, _, wrong = _ca(tmp, "wrong-ca")
    server_cert, server_key = _server_cert(tmp, key, cert)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert, server_key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"https://127.0.0.1:{httpd.server_address[1]}", "ca": ca, "wrong": wrong}
    httpd.shutdown()


def nomad_cfg(server: dict[str, Any], ca: Path, token: str | None) -> ApiConfig:
    return ApiConfig(name="nomad", urls=(server["url"],), ca=ca, ca_source="NOMAD_CACERT", token=token,
                     token_var="NOMAD_TOKEN", token_header="X-Nomad-Token", timeout_s=5, retry_s=1)


def test_tls_with_the_right_ca_and_token(tls_server):
    snap = nomad_api.fetch(nomad_cfg(tls_server, tls_server["ca"], SECRET))
    assert snap.root is None and snap.leader == "127.0.0.1:4647" and snap.nodes == []


def test_wrong_ca_is_one_line_naming_the_variable(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server["ca"]))  # the configured CA must win over it
    snap = nomad_api.fetch(nomad_cfg(tls_server, tls_server["wrong"], SECRET))
    assert snap.root is not None and snap.root.kind == "tls"
    message = str(snap.root)
    assert message.startswith(f"Nomad at {tls_server['url']}: TLS verification failed")
    assert f"NOMAD_CACERT={tls_server['wrong']}" in message and "set NOMAD_CACERT to the cluster CA" in message
    assert "\n" not in message and SECRET not in message


@pytest.mark.parametrize("token", [None, "wrong-token-123456"])
def test_wrong_or_missing_token_is_one_line_naming_the_variable(tls_server, token):
    snap = nomad_api.fetch(nomad_cfg(tls_server, tls_server["ca"], token))
    assert snap.root is not None and snap.root.kind == "auth"
    message = str(snap.root)
    assert "rejected the token (403)" in message and "set NOMAD_TOKEN" in message
    assert "\n" not in message and (token or SECRET) not in message


def test_prometheus_client_wrong_ca(tls_server):
    c = ApiConfig(name="prometheus", urls=(tls_server["url"],), ca=tls_server["wrong"], ca_source="apis.tls.ca",
                  timeout_s=5, retry_s=1)
    snap = prometheus_api.fetch(c, [])
    assert snap.root is not None and "TLS verification failed" in str(snap.root)
    assert f"with apis.tls.ca={tls_server['wrong']} — set apis.tls.ca to the cluster CA" in str(snap.root)


def test_a_leader_that_is_none_of_the_masters_fails_the_leader_check():
    """A leader whose identity matches no master of the inventory (autopilot's Leader a stranger, its address
    none of theirs) is reported, never taken for one of them."""
    with fake_cluster() as fakes:
        ap = json.loads(fakes.nomad.routes["/v1/operator/autopilot/health"].body)  # type: ignore[union-attr]
        ap["Servers"][0].update(Name="stranger.global", Address="10.1.2.3:4647")
        ap["Servers"][0]["Leader"] = True
        fakes.nomad.set("/v1/operator/autopilot/health", Reply.json(ap))
        fakes.nomad.set("/v1/status/leader", Reply.json("10.1.2.3:4647"))
        peers = json.loads(fakes.nomad.routes["/v1/status/peers"].body)  # type: ignore[union-attr]
        fakes.nomad.set("/v1/status/peers", Reply.json(["10.1.2.3:4647", *peers[1:]]))
        snaps, inv = snapshots_of(fakes)
    results = run_checks(snaps, inv)
    leader = results["cluster.nomad.leader[cluster]"]
    assert leader.outcome == "failed" and "the Nomad leader 10.1.2.3:4647 is none of the inventory's masters" in (
        leader.message), leader
