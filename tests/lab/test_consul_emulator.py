"""The Consul emulator against its documented samples and real clients (py-consul, dnspython).

Three emulated servers run as subprocesses on 127.0.0.11-13 (127.0.3.11-13 when those ports are taken)
with a throwaway CA; no containers.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import consul
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import requests

from tests.lab.configs import acl_config
from tests.lab.emulators import consul as emulator
from tests.lab.pki import make_ca_and_certs
from tests.lab.shapes import FREE_MAPS, assert_same_shape
from tests.polling import wait_until
from tests.reference import API

pytestmark = pytest.mark.emulator

LAB = Path(__file__).resolve().parent
SAMPLES = API / "consul"
# Tokens: the lab's (configs.acl_config: management for the emulators' own traffic, the suite's read-only
# and remediation tokens, the agents' default token that DNS answers with) plus one that sees only the servers'
# nodes and the "consul" service.
SECRETS = {k: "consul-secret-" + uuid.uuid4().hex for k in ("nomad", "nomad_read", "nomad_remediation", "consul",
                                                             "consul_read", "consul_remediation", "consul_dns")}
TOKEN, READ, REMEDIATION = SECRETS["consul"], SECRETS["consul_read"], SECRETS["consul_remediation"]
RESTRICTED, RESTRICTED_ACCESSOR = "consul-secret-" + uuid.uuid4().hex, str(uuid.uuid4())
ACL = acl_config(SECRETS)
ACL["consul"]["policies"]["servers-only"] = {"node_prefix": {"alimesos": {"policy": "read"}},
                                             "service": {"consul": {"policy": "read"}}}
ACL["consul"]["tokens"].append({"AccessorID": RESTRICTED_ACCESSOR, "SecretID": RESTRICTED,
                                "Description": "servers only", "Policies": ["servers-only"]})
AUTOPILOT_S = 2  # the emulators' autopilot interval and stabilization time in this test (10 s by default)
RPC_HOLD_S = 4.0  # how long a server holds a request that needs a leader while there is none (7 s by default)
AUTOPILOT_WARMUP_S = 1.5  # how long a new leader has no autopilot state (2 s by default)
# DNS answers with each server's default token: the lab's DNS token on alimesos01 (MASTERS[0], which the DNS
# tests query unless told otherwise), the servers-only one on alimesos02, none (anonymous) on alimesos03.
DNS_TOKENS: list[str | None] = [SECRETS["consul_dns"], RESTRICTED, None]


def _free(ips: list[str]) -> bool:
    """Whether Consul's ports are free on these addresses (the Nomad tests put a fake Consul on
    127.0.0.11:8500; under xdist both modules may run at once)."""
    for ip in ips:
        for kind, port in ((socket.SOCK_STREAM, 8500), (socket.SOCK_STREAM, 8300), (socket.SOCK_STREAM, 8600),
                           (socket.SOCK_DGRAM, 8600)):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
                try:
                    sock.bind((ip, port))
                except OSError:
                    return False
    return True


def _choose_masters() -> None:
    """Fills MASTERS (chosen when the cluster starts, so that the choice is as fresh as possible)."""
    ips = next((ips for ips in ([f"127.0.{n}.1{i}" for i in (1, 2, 3)] for n in (0, 3, 4)) if _free(ips)), None)
    if ips is None:
        pytest.fail("Consul's ports (8300, 8500, 8600) are taken on 127.0.0.11-13, 127.0.3.11-13 and 127.0.4.11-13")
    MASTERS[:] = [
        {"name": f"alimesos0{i + 1}", "ip": ip, "nomad_id": str(uuid.uuid4()), "consul_id": str(uuid.uuid4())}
        for i, ip in enumerate(ips)
    ]


MASTERS: list[dict[str, str]] = []  # filled by the `cluster` fixture
REFRESH_TIMEOUT_S = 3  # the emulator's 15 s, shortened for the test
# Keys the samples show that OSS Consul does not return (Enterprise namespaces) or that depend on how
# the cluster was bootstrapped (`bootstrap` tag: single-server bootstrap mode; ours uses bootstrap_expect).
ENTERPRISE_ONLY = frozenset({"Namespace"})
CONSUL_FREE_MAPS = FREE_MAPS | {"NodeMeta", "ServiceMeta"}


NOT_YET = (requests.RequestException, OSError, ValueError, KeyError, IndexError)  # what a poll here shrugs off


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.2) -> Any:
    """wait_until with this module's defaults; an emulator restarting or answering half a body is "not yet"."""
    return wait_until(fn, timeout=timeout, interval=interval, what=what, ignore=NOT_YET)


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        names_ips = {m["name"]: m["ip"] for m in MASTERS} | {"suite": "127.0.0.1"}
        self.pki = make_ca_and_certs(tmp / "tls", names_ips)
        self.ca: str = self.pki["ca"]
        self.client_cert = (self.pki["nodes"]["suite"]["cert"], self.pki["nodes"]["suite"]["key"])
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.configs: dict[str, Path] = {}
        self.fault_dirs: dict[str, Path] = {}
        for m, dns_token in zip(MASTERS, DNS_TOKENS, strict=True):
            acl = copy.deepcopy(ACL)
            acl["consul"].pop("dns_token", None)
            if dns_token:
                acl["consul"]["dns_token"] = dns_token
            self.fault_dirs[m["name"]] = tmp / "faults" / m["name"]
            self.fault_dirs[m["name"]].mkdir(parents=True)
            cfg = {
                "name": m["name"], "role": "master", "kind": None, "ip": m["ip"], "region": "global",
                "datacenter": "cern", "masters": MASTERS, "nomad_node_id": str(uuid.uuid4()),
                "tokens": {"nomad": "unused", "consul": TOKEN}, "acl": acl, "tls": self.pki["nodes"][m["name"]],
                "build_dir": "/build", "fault_dir": str(self.fault_dirs[m["name"]]), "jobs": [],
            }
            path = tmp / f"{m['name']}.json"
            path.write_text(json.dumps(cfg))
            self.configs[m["name"]] = path
        self.session = requests.Session()  # the main thread's (other threads make their own connections)

    # --- processes
    def start(self, name: str) -> None:
        self.spawn(name)
        self.wait_listening(name)

    def spawn(self, name: str) -> None:
        """Starts a server without waiting for it to listen."""
        env = {**os.environ, "PYTHONPATH": str(LAB), "ALICELAB_CONSUL_REFRESH_TIMEOUT_S": str(REFRESH_TIMEOUT_S),
               "ALICELAB_CONSUL_SESSION_TTL_MULTIPLIER": "1", "ALICELAB_AUTOPILOT_INTERVAL_S": str(AUTOPILOT_S),
               "ALICELAB_AUTOPILOT_STABILIZATION_S": str(AUTOPILOT_S), "ALICELAB_CONSUL_RPC_HOLD_S": str(RPC_HOLD_S),
               "ALICELAB_CONSUL_AUTOPILOT_WARMUP_S": str(AUTOPILOT_WARMUP_S)}
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - handed to the subprocess
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "emulators.consul", str(self.configs[name])], env=env, stdout=log, stderr=log
        )

    def wait_listening(self, name: str) -> None:
        ip, proc = self.ip(name), self.procs[name]

        def listening() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}: {(self.tmp / f'{name}.log').read_text()[-2000:]}")
            return self.get(ip, "/v1/status/peers", token=None).status_code == 200

        wait_for(f"{name} to listen", listening)

    def stop(self, name: str) -> float:
        """SIGTERM; returns how long the process took to exit."""
        proc = self.procs.pop(name)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        return time.monotonic() - t0

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            proc.kill()
            proc.wait(timeout=5)

    # --- HTTP
    @staticmethod
    def ip(name: str) -> str:
        return next(m["ip"] for m in MASTERS if m["name"] == name)

    def request(self, method: str, ip: str, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        headers = {"X-Consul-Token": token} if token else {}
        headers.update(kw.pop("headers", {}))
        # verify= per request: a session-level value loses to REQUESTS_CA_BUNDLE from the environment.
        kw.setdefault("verify", self.ca)
        kw.setdefault("cert", self.client_cert)
        kw.setdefault("timeout", RPC_HOLD_S + 5)  # a request may be held RPC_HOLD_S
        send = self.session.request if threading.current_thread() is threading.main_thread() else requests.request
        return send(method, f"https://{ip}:8500{path}", headers=headers, **kw)

    def get(self, ip: str, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        return self.request("GET", ip, path, token, **kw)

    def put(self, ip: str, path: str, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        return self.request("PUT", ip, path, token, **kw)

    def running(self) -> list[str]:
        return [n for n in self.procs if self.procs[n].poll() is None]

    def leader(self, via: str | None = None) -> str:
        """The leader's "ip:8300" as seen by `via` (or by every running server, when they agree)."""
        names = [via] if via else self.running()
        values = {self.get(self.ip(n), "/v1/status/leader", token=None).json() for n in names}
        return values.pop() if len(values) == 1 else ""

    def leader_name(self, not_: str = "") -> str:
        """The name of the leader all running servers agree on (other than `not_`, a server just stopped)."""
        avoid = f"{self.ip(not_)}:8300" if not_ else ""
        try:
            addr = wait_for("a leader", lambda: (lambda a: a if a != avoid else "")(self.leader()))
        except BaseException:
            print("election state:", self.views())
            raise
        return next(m["name"] for m in MASTERS if f"{m['ip']}:8300" == addr)

    def views(self) -> dict[str, Any]:
        """Each running server's raft state, term and leader (for failure messages)."""
        out: dict[str, Any] = {}
        for n in self.running():
            try:
                st = self.get(self.ip(n), "/v1/agent/self").json()["Stats"]
                out[n] = (st["raft"]["state"], st["raft"]["term"], st["consul"]["leader_addr"])
            except (requests.RequestException, ValueError, KeyError) as exc:
                out[n] = repr(exc)
        return out

    def client(self, name: str) -> consul.Consul:
        return consul.Consul(host=self.ip(name), port=8500, scheme="https", verify=self.ca, cert=self.client_cert,
                             token=TOKEN)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _choose_masters()
    c = Cluster(tmp_path_factory.mktemp("consul"))
    try:
        for m in MASTERS:
            c.start(m["name"])
        c.leader_name()
        # The leader registers the servers in the catalog with a passing serfHealth.
        ip = MASTERS[0]["ip"]
        wait_for("the servers' serfHealth", lambda: len(c.get(ip, "/v1/health/state/passing").json()) == 3)
        yield c
    finally:
        c.stop_all()
        for m in MASTERS:
            log = c.tmp / f"{m['name']}.log"
            if log.exists() and log.stat().st_size:
                sys.stderr.write(f"--- {log.name}\n{log.read_text()[-3000:]}\n")


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def schema(body: Any) -> Any:
    """A sample body without the keys OSS Consul never returns."""
    if isinstance(body, dict):
        return {k: schema(v) for k, v in body.items() if k not in ENTERPRISE_ONLY and k != "bootstrap"}
    if isinstance(body, list):
        return [schema(v) for v in body]
    return body


def register(c: Cluster, ip: str, node: str, addr: str, service: str, tags: list[str], status: str = "passing") -> None:
    body = {
        "Node": node, "Address": addr, "Datacenter": "cern", "NodeMeta": {"kind": "vm"},
        "Service": {"ID": f"{service}-1", "Service": service, "Address": addr, "Port": 8080, "Tags": tags},
        "Check": {"CheckID": f"service:{service}-1", "Name": f"{service} alive", "Status": status,
                  "ServiceID": f"{service}-1"},
    }
    r = c.put(ip, "/v1/catalog/register", json=body)
    assert r.status_code == 200, r.text
    assert r.json() is True


def dns_query(name: str, rdtype: str, tcp: bool = False, ip: str = "") -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    ip = ip or MASTERS[0]["ip"]
    if tcp:
        return dns.query.tcp(q, ip, port=8600, timeout=3)
    return dns.query.udp(q, ip, port=8600, timeout=3)


def dns_a(name: str, tcp: bool) -> set[str]:
    return a_records(dns_query(name, "A", tcp))


def a_records(msg: dns.message.Message) -> set[str]:
    return {r.address for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A for r in rrset}


def timed(fn: Callable[..., requests.Response], *args: Any, **kw: Any) -> tuple[requests.Response, float]:
    """A request and how long it took to answer."""
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


# ------------------------------------------------------------------------------------------------


def test_endpoints_match_samples(cluster: Cluster) -> None:
    c, ip = cluster, MASTERS[1]["ip"]
    register(c, ip, "alibuild01", "127.0.1.1", "redis", ["primary"])
    sid = c.put(ip, "/v1/session/create", json={"Name": "shape", "TTL": "30s"}).json()["ID"]
    assert c.put(ip, f"/v1/kv/zip?acquire={sid}", data=b"test").json() is True

    checks: list[tuple[str, str, str]] = [
        ("status_leader", "GET", "/v1/status/leader"),
        ("status_peers", "GET", "/v1/status/peers"),
        ("agent_members", "GET", "/v1/agent/members"),
        ("agent_self", "GET", "/v1/agent/self"),
        ("catalog_nodes", "GET", "/v1/catalog/nodes"),
        ("health_service", "GET", "/v1/health/service/redis"),
        ("health_state_critical", "GET", "/v1/health/state/passing"),  # the sample is a passing one
        ("kv_get_metadata", "GET", "/v1/kv/zip"),
        ("operator_raft_configuration", "GET", "/v1/operator/raft/configuration"),
    ]
    for name, method, path in checks:
        r = c.request(method, ip, path)
        assert r.status_code == sample(name)["status"], (path, r.text)
        assert_same_shape(schema(sample(name)["body"]), r.json(), f"{path} $", free_maps=CONSUL_FREE_MAPS)
    # catalog services: a map keyed by service name; "consul" is always there.
    services = c.get(ip, "/v1/catalog/services").json()
    assert services["consul"] == []
    assert services["redis"] == ["primary"]
    assert_same_shape({"consul": []}, services, "/v1/catalog/services")
    assert c.get(ip, "/v1/health/state/critical").json() == []
    # Writes: bare booleans, session ID object.
    other = c.put(ip, "/v1/session/create", json={"Name": "other"}).json()
    assert_same_shape(sample("session_create")["body"], other, "/v1/session/create")
    held = c.put(ip, f"/v1/kv/zip?acquire={other['ID']}", data=b"x")
    assert held.status_code == 200
    assert held.json() is sample("kv_put_acquire_lock_held")["body"]
    # Raft configuration: GUID IDs, ProtocolVersion, exactly one leader.
    servers = c.get(ip, "/v1/operator/raft/configuration").json()["Servers"]
    assert {s["ID"] for s in servers} == {m["consul_id"] for m in MASTERS}
    assert sum(s["Leader"] for s in servers) == 1
    assert all(s["Voter"] and s["ProtocolVersion"] == "3" for s in servers)
    # Members: alive servers with role=consul.
    members = c.get(ip, "/v1/agent/members").json()
    assert {(m["Name"], m["Status"], m["Tags"]["role"], m["Tags"]["dc"]) for m in members} == {
        (m["name"], 1, "consul", "cern") for m in MASTERS
    }
    # Read headers.
    r = c.get(ip, "/v1/catalog/nodes")
    assert int(r.headers["X-Consul-Index"]) > 0
    assert r.headers["X-Consul-Knownleader"] == "true"
    assert "X-Consul-Lastcontact" in r.headers
    # KV variants.
    assert c.get(ip, "/v1/kv/zip?raw").content == b"test"
    assert c.get(ip, "/v1/kv/?keys").json() == ["zip"]
    assert c.get(ip, "/v1/kv/nope").status_code == 404
    assert c.put(ip, "/v1/kv/dir/a", data=b"1").json() is True
    assert [e["Key"] for e in c.get(ip, "/v1/kv/dir?recurse").json()] == ["dir/a"]
    idx = c.get(ip, "/v1/kv/dir/a").json()[0]["ModifyIndex"]
    assert c.put(ip, f"/v1/kv/dir/a?cas={idx - 1}", data=b"2").json() is False
    assert c.put(ip, f"/v1/kv/dir/a?cas={idx}", data=b"2").json() is True
    assert c.request("DELETE", ip, "/v1/kv/dir?recurse").json() is True
    assert c.get(ip, "/v1/kv/dir/a").status_code == 404
    # Sessions: info, list, renew, destroy releases the lock.
    info = c.get(ip, f"/v1/session/info/{sid}").json()
    assert info[0]["ID"] == sid
    assert info[0]["Node"] == MASTERS[1]["name"]
    assert info[0]["LockDelay"] == 15 * 10**9
    assert sid in {s["ID"] for s in c.get(ip, "/v1/session/list").json()}
    assert c.put(ip, f"/v1/session/renew/{sid}").json()[0]["ID"] == sid
    assert c.put(ip, f"/v1/session/destroy/{sid}").json() is True
    assert "Session" not in c.get(ip, "/v1/kv/zip").json()[0]
    assert c.put(ip, f"/v1/session/renew/{sid}").status_code == 404
    # Health views.
    assert {ch["CheckID"] for ch in c.get(ip, "/v1/health/node/alibuild01").json()} == {"service:redis-1"}
    assert [ch["ServiceName"] for ch in c.get(ip, "/v1/health/checks/redis").json()] == ["redis"]
    assert c.get(ip, "/v1/health/state/bogus").status_code == 400
    entry = c.get(ip, "/v1/catalog/service/redis").json()[0]
    assert (entry["Node"], entry["ServiceAddress"], entry["ServicePort"]) == ("alibuild01", "127.0.1.1", 8080)
    # Metrics for Prometheus.
    text = c.get(ip, "/v1/agent/metrics?format=prometheus").text
    for metric in ("consul_autopilot_healthy 1.0", "consul_raft_leader 1.0", "consul_catalog_services 2.0"):
        assert metric in text, text
    assert c.put(ip, "/v1/catalog/deregister", json={"Node": "alibuild01"}).json() is True
    c.request("DELETE", ip, "/v1/kv/zip")


def test_py_consul_client(cluster: Cluster) -> None:
    cl = cluster.client("alimesos03")
    assert cl.status.leader() in {f"{m['ip']}:8300" for m in MASTERS}
    _, nodes = cl.catalog.nodes()
    assert {m["name"] for m in MASTERS} <= {n["Node"] for n in nodes}
    _, critical = cl.health.state("critical")
    assert critical == []
    s1 = cl.session.create(name="suite-lock", lock_delay=0, ttl=30)
    s2 = cluster.client("alimesos01").session.create(name="other", lock_delay=0)
    assert cl.kv.put("locks/remediation", "owner=me", acquire=s1) is True
    assert cl.kv.put("locks/remediation", "owner=them", acquire=s2) is False
    _, entry = cl.kv.get("locks/remediation")
    assert entry["Value"] == b"owner=me"
    assert entry["Session"] == s1
    assert entry["LockIndex"] == 1
    assert cl.kv.put("locks/remediation", "", release=s1) is True
    assert cl.kv.put("locks/remediation", "owner=them", acquire=s2) is True
    _, entry = cl.kv.get("locks/remediation")
    assert entry["Session"] == s2
    assert entry["LockIndex"] == 2
    cl.session.destroy(s1)
    cl.session.destroy(s2)
    cl.kv.delete("locks/remediation")
    # The agent API as py-consul speaks it (lower/snake_case keys, as Consul's decoder accepts).
    assert cl.agent.service.register("vault", service_id="vault-3", port=8200, check=consul.Check.ttl("10s"))
    assert cl.agent.checks()["service:vault-3"]["Status"] == "critical"
    assert cl.agent.check.ttl_pass("service:vault-3", notes="unsealed")
    _, entries = cl.health.service("vault", passing=True)
    assert [e["Node"]["Node"] for e in entries] == ["alimesos03"]
    assert cl.agent.service.deregister("vault-3")
    assert cl.agent.services() == {}


def test_leader_election_quorum_and_transfer(cluster: Cluster) -> None:
    c = cluster
    first = c.leader_name()
    assert c.stop(first) < 1.0  # SIGTERM exits promptly
    second = c.leader_name(not_=first)
    assert second != first
    follower = next(n for n in c.running() if n != second)
    assert c.stop(follower) < 1.0
    last = second
    wait_for("no leader without quorum", lambda: c.leader(via=last) == "", timeout=12)
    ip = c.ip(last)
    # Without a leader, writes and consistent reads (autopilot health too) are held rpc_hold_timeout (RPC_HOLD_S
    # here), then 500 "No cluster leader"; stale reads, /v1/status/leader and the agent's own endpoints answer
    # at once.
    with ThreadPoolExecutor(3) as pool:
        held = {path: pool.submit(timed, c.request, method, ip, path, token=READ if "operator" in path else TOKEN,
                                  data=b"1" if method == "PUT" else None)
                for method, path in (("PUT", "/v1/kv/x"), ("GET", "/v1/catalog/nodes"),
                                     ("GET", "/v1/operator/autopilot/health"))}
        for path in ("/v1/catalog/nodes?stale", "/v1/status/leader", "/v1/agent/members"):
            r, took = timed(c.get, ip, path)
            assert r.status_code == 200 and took < 1.0, (path, r.status_code, took)
        assert c.get(ip, "/v1/status/leader").json() == ""
        for path, future in held.items():
            r, took = future.result()
            assert (r.status_code, r.text.strip()) == (500, "No cluster leader"), path
            assert RPC_HOLD_S - 0.1 <= took < RPC_HOLD_S + 1.5, (path, took)
    members = {m["Name"]: m["Status"] for m in c.get(ip, "/v1/agent/members").json()}
    # failed (4); the first one may already be `left` (3): autopilot removes a dead server while a quorum remains
    assert (members[first] in (3, 4), members[follower], members[last]) == (True, 4, 1)
    # A request held while a server comes back is answered as soon as the election gives a leader.
    c.spawn(first)
    r, took = timed(c.get, ip, "/v1/catalog/nodes")
    assert r.status_code == 200, r.text
    assert r.headers["X-Consul-Knownleader"] == "true"
    assert 0.05 < took < RPC_HOLD_S, took
    c.wait_listening(first)
    c.start(follower)
    leader = c.leader_name()
    wait_for("all three alive", lambda: len(c.get(c.ip(leader), "/v1/health/state/critical").json()) == 0)
    # A server back after autopilot removed it is a non-voter until it is stable; only voters can lead.
    wait_for("three voters", lambda: [s["Voter"] for s in c.get(
        c.ip(leader), "/v1/operator/raft/configuration").json()["Servers"]] == [True] * 3, 15)
    # Transfer leadership to a chosen server, asked through a follower (forwarded to the leader).
    target = next(m for m in MASTERS if m["name"] != leader)
    via = next(m["ip"] for m in MASTERS if m["name"] not in (leader, target["name"]))
    r = c.request("POST", via, f"/v1/operator/raft/transfer-leader?id={target['consul_id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"Success": True}
    wait_for("the transferred leader", lambda: c.leader() == f"{target['ip']}:8300")
    assert c.request("POST", via, "/v1/operator/raft/transfer-leader?id=nope").status_code == 500


def test_kv_and_sessions_survive_leader_change_and_ttl_expiry(cluster: Cluster) -> None:
    c = cluster
    leader = c.leader_name()
    keeper = next(m for m in MASTERS if m["name"] != leader)  # its node's sessions stay valid
    ip = keeper["ip"]
    sid = c.put(ip, "/v1/session/create", json={"Name": "held", "LockDelay": "0s"}).json()["ID"]
    assert c.put(ip, f"/v1/kv/locks/held?acquire={sid}", data=b"v1").json() is True
    c.stop(leader)
    new = c.leader_name(not_=leader)
    assert new != leader
    entry = c.get(c.ip(new), "/v1/kv/locks/held").json()[0]
    assert (entry["Session"], base64.b64decode(entry["Value"])) == (sid, b"v1")
    assert c.get(c.ip(new), f"/v1/session/info/{sid}").json()[0]["ID"] == sid
    c.start(leader)
    wait_for("the restarted server to catch up",
             lambda: c.get(c.ip(leader), "/v1/kv/locks/held?stale").status_code == 200)
    # A TTL session that is not renewed is invalidated and its lock released (TTL x1 in this test).
    ttl_sid = c.put(ip, "/v1/session/create", json={"Name": "ttl", "TTL": "10s", "LockDelay": "0s"}).json()["ID"]
    assert c.put(ip, f"/v1/kv/locks/ttl?acquire={ttl_sid}", data=b"x").json() is True
    assert c.put(ip, f"/v1/kv/locks/ttl?acquire={sid}", data=b"y").json() is False
    t0 = time.monotonic()
    wait_for("the TTL session to expire", lambda: "Session" not in c.get(ip, "/v1/kv/locks/ttl").json()[0],
             timeout=20, interval=0.5)
    assert time.monotonic() - t0 > 8
    assert c.get(ip, f"/v1/session/info/{ttl_sid}").json() == []
    assert c.put(ip, f"/v1/kv/locks/ttl?acquire={sid}", data=b"y").json() is True
    c.put(ip, f"/v1/session/destroy/{sid}")


def test_catalog_dns_and_agent_ttl_checks(cluster: Cluster) -> None:
    c = cluster
    ip = MASTERS[0]["ip"]
    register(c, ip, "alibuild07", "127.0.1.7", "ci-mesosci-slc9", ["mesosci"])
    for tcp in (False, True):
        wait_for("DNS to answer", partial(dns_a, "ci-mesosci-slc9.service.consul", tcp))
        msg = dns_query("ci-mesosci-slc9.service.consul", "A", tcp)
        assert a_records(msg) == {"127.0.1.7"}
        assert all(rr.ttl == 0 for rr in msg.answer)
    assert a_records(dns_query("mesosci.ci-mesosci-slc9.service.consul", "A")) == {"127.0.1.7"}
    assert dns_query("nomesos.ci-mesosci-slc9.service.consul", "A").rcode() == dns.rcode.NXDOMAIN
    srv = dns_query("_ci-mesosci-slc9._tcp.service.consul", "SRV")
    assert [(r.port, str(r.target)) for rr in srv.answer for r in rr] == [(8080, "alibuild07.node.cern.consul.")]
    assert a_records(srv) == set()
    assert {r.address for rr in srv.additional for r in rr} == {"127.0.1.7"}
    assert a_records(dns_query("alibuild07.node.consul", "A", tcp=True)) == {"127.0.1.7"}
    consul_srv = dns_query("consul.service.consul", "SRV")
    assert {r.port for rr in consul_srv.answer for r in rr} == {8300}
    assert len(consul_srv.answer[0]) == 3
    missing = dns_query("nosuch.service.consul", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority
    assert missing.authority[0].rdtype == dns.rdatatype.SOA
    assert str(missing.authority[0].name) == "consul."
    assert str(missing.authority[0][0].mname) == "ns.consul."
    # No refresh: the check turns critical after the (shortened) timeout and DNS drops the instance.
    wait_for("the check to go critical",
             lambda: [ch["Node"] for ch in c.get(ip, "/v1/health/state/critical").json()] == ["alibuild07"],
             timeout=REFRESH_TIMEOUT_S + 5)
    assert dns_query("ci-mesosci-slc9.service.consul", "A").rcode() == dns.rcode.NXDOMAIN
    assert c.get(ip, "/v1/health/service/ci-mesosci-slc9?passing").json() == []
    register(c, ip, "alibuild07", "127.0.1.7", "ci-mesosci-slc9", ["mesosci"])  # refreshed: back
    assert c.get(ip, "/v1/health/service/ci-mesosci-slc9?passing").json()[0]["Node"]["Node"] == "alibuild07"
    c.put(ip, "/v1/catalog/deregister", json={"Node": "alibuild07"})

    # Agent API (OpenBao's service registration), on alimesos02: a TTL check, passed, then expired.
    ip2 = MASTERS[1]["ip"]
    body = {"Name": "vault", "ID": "vault:127.0.0.12:8200", "Port": 8200, "Address": "127.0.0.12",
            "Tags": ["active"], "Check": {"CheckID": "vault:127.0.0.12:8200:vault-sealed-check", "TTL": "2s",
                                          "Name": "Vault Sealed Status", "Notes": "Vault service is healthy when "
                                          "Vault is in an unsealed status and can become an active Vault server"}}
    assert c.put(ip2, "/v1/agent/service/register", json=body).status_code == 200
    cid = body["Check"]["CheckID"]  # type: ignore[index]
    assert c.get(ip2, "/v1/agent/checks").json()[cid]["Status"] == "critical"  # new checks start critical
    assert c.get(ip, "/v1/agent/services").json() == {}  # belongs to alimesos02 only
    assert c.put(ip2, f"/v1/agent/check/pass/{cid}?note=ok").status_code == 200
    assert c.get(ip2, "/v1/agent/checks").json()[cid]["Status"] == "passing"
    assert c.get(ip2, "/v1/agent/services").json()["vault:127.0.0.12:8200"]["Port"] == 8200
    assert a_records(dns_query("vault.service.consul", "A")) == {"127.0.0.12"}
    assert a_records(dns_query("active.vault.service.consul", "A", tcp=True)) == {"127.0.0.12"}
    assert c.put(ip, f"/v1/agent/check/pass/{cid}").status_code == 404  # not alimesos01's check
    wait_for("the TTL to expire", lambda: c.get(ip2, "/v1/agent/checks").json()[cid]["Status"] == "critical",
             timeout=6)
    assert c.get(ip2, "/v1/agent/checks").json()[cid]["Output"] == "TTL expired"
    assert dns_query("vault.service.consul", "A").rcode() == dns.rcode.NXDOMAIN
    r = c.put(ip2, "/v1/agent/check/update/" + cid, json={"Status": "warning", "Output": "standby"})
    assert r.status_code == 200
    assert c.get(ip2, "/v1/health/checks/vault").json()[0]["Status"] == "warning"
    assert c.put(ip2, "/v1/agent/service/deregister/vault:127.0.0.12:8200").status_code == 200
    assert c.get(ip2, "/v1/agent/services").json() == {}


def test_acl_and_client_certificates(cluster: Cluster) -> None:
    c, ip = cluster, MASTERS[0]["ip"]
    # Lists are filtered, not refused: the anonymous token sees nothing (and is not told that anything was hidden).
    r = c.get(ip, "/v1/catalog/nodes", token=None)
    assert (r.status_code, r.json()) == (200, [])
    assert "X-Consul-Results-Filtered-By-ACLs" not in r.headers
    r = c.get(ip, "/v1/operator/raft/configuration", token=None)
    assert (r.status_code, r.text.strip()) == (403, "Permission denied: token with AccessorID "
                                                    "'00000000-0000-0000-0000-000000000002' lacks permission "
                                                    "'operator:read'")
    r = c.get(ip, "/v1/kv/x", token="wrong")
    assert (r.status_code, r.text.strip()) == (403, "ACL not found")
    assert c.put(ip, "/v1/kv/x", token=None, data=b"1").status_code == 403
    assert c.get(ip, "/v1/agent/metrics?format=prometheus", token=None).status_code == 403
    # The other ways of passing a token work too.
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get(ip, "/v1/agent/self", token=None, headers=bearer).status_code == 200
    assert c.get(ip, f"/v1/agent/self?token={TOKEN}", token=None).status_code == 200
    assert c.get(ip, "/v1/status/leader", token=None).status_code == 200
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"https://{ip}:8500/v1/status/leader", verify=c.ca, timeout=5)


def member_says(c: Cluster, via: str, name: str, addr: str, status: str = "alive") -> Any:
    """What a client agent tells the servers (the lab's Nomad clients do it for their node's Consul agent)."""
    body = {"Node": name, "Address": addr, "ID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), "Status": status,
            "Tags": {"role": "node", "dc": "cern", "segment": "", "build": "1.20.5:74efe419", "vsn": "2"}}
    r = requests.post(f"https://{via}:8300/internal/member", json=body, verify=c.ca, cert=c.client_cert, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


FILTERED = "X-Consul-Results-Filtered-By-ACLs"


def test_acl_rights_and_filtering(cluster: Cluster) -> None:
    c, ip = cluster, MASTERS[0]["ip"]
    servers = {m["name"] for m in MASTERS}
    register(c, ip, "alibuild05", "127.0.1.5", "ci-x", ["t"])
    member_says(c, ip, "alibuild05", "127.0.1.5")
    try:
        # The suite's read token sees everything: full lists, no header.
        for path in ("/v1/catalog/nodes", "/v1/agent/members", "/v1/health/state/any", "/v1/catalog/services",
                     "/v1/health/service/ci-x", "/v1/catalog/service/ci-x", "/v1/catalog/node/alibuild05"):
            r = c.get(ip, path, token=READ)
            assert r.status_code == 200 and FILTERED not in r.headers, (path, r.text)
        assert {n["Node"] for n in c.get(ip, "/v1/catalog/nodes", token=READ).json()} == servers | {"alibuild05"}
        assert {m["Name"] for m in c.get(ip, "/v1/agent/members", token=READ).json()} == servers | {"alibuild05"}
        # A token that reads only the servers' nodes and the consul service: filtered lists, with the header.
        r = c.get(ip, "/v1/catalog/nodes", token=RESTRICTED)
        assert {n["Node"] for n in r.json()} == servers and r.headers[FILTERED] == "true"
        r = c.get(ip, "/v1/agent/members", token=RESTRICTED)
        assert {m["Name"] for m in r.json()} == servers and r.headers[FILTERED] == "true"
        r = c.get(ip, "/v1/catalog/services", token=RESTRICTED)
        assert r.json() == {"consul": []} and r.headers[FILTERED] == "true"
        r = c.get(ip, "/v1/health/state/any", token=RESTRICTED)
        assert {ch["Node"] for ch in r.json()} == servers and r.headers[FILTERED] == "true"
        assert {ch["ServiceName"] for ch in r.json()} <= {"", "consul"}
        r = c.get(ip, "/v1/health/service/ci-x", token=RESTRICTED)
        assert r.json() == [] and r.headers[FILTERED] == "true"
        r = c.get(ip, "/v1/catalog/node/alibuild05", token=RESTRICTED)
        assert r.json() is None and r.headers[FILTERED] == "true"
        r = c.get(ip, "/v1/health/service/consul", token=RESTRICTED)
        assert len(r.json()) == 3 and FILTERED not in r.headers
        # operator: read for the configuration and autopilot, write for a leader transfer
        assert c.get(ip, "/v1/operator/raft/configuration", token=READ).status_code == 200
        health = wait_for("autopilot healthy", lambda: (h := c.get(ip, "/v1/operator/autopilot/health",
                                                                   token=READ)).status_code == 200 and h.json())
        assert_same_shape(sample("operator_autopilot_health")["body"], health)
        assert (health["Healthy"], health["FailureTolerance"], len(health["Servers"])) == (True, 1, 3)
        assert sum(s["Leader"] for s in health["Servers"]) == 1 and all(s["Voter"] for s in health["Servers"])
        read_accessor = next(t["AccessorID"] for t in ACL["consul"]["tokens"] if t["SecretID"] == READ)
        r = c.request("POST", ip, "/v1/operator/raft/transfer-leader", token=READ)
        assert (r.status_code, r.text.strip()) == (403, f"Permission denied: token with AccessorID '{read_accessor}' "
                                                        "lacks permission 'operator:write'")
        r = c.get(ip, "/v1/agent/self", token=RESTRICTED)
        assert r.status_code == 403
        assert r.text.strip().endswith(f"lacks permission 'agent:read' on \"{MASTERS[0]['name']}\"")
        # The read token (deploy/policies/consul-read.hcl) has no agent rule: agent:read is refused too.
        r = c.get(ip, "/v1/agent/self", token=READ)
        assert r.status_code == 403 and r.text.strip().endswith(f"'agent:read' on \"{MASTERS[0]['name']}\"")
        assert c.get(ip, "/v1/agent/metrics", token=READ).status_code == 403
        assert c.get(ip, "/v1/agent/self", token=TOKEN).status_code == 200
        # The read token writes nothing.
        assert c.put(ip, "/v1/kv/alice-acceptance/lock", token=READ, data=b"x").status_code == 403
        r = c.put(ip, "/v1/session/create", token=READ, json={"Name": "x"})
        assert r.status_code == 403 and f"lacks permission 'session:write' on \"{MASTERS[0]['name']}\"" in r.text
        # The remediation token: its lock (a session, keys under alice-acceptance/) and nothing else in KV.
        sid = c.put(ip, "/v1/session/create", token=REMEDIATION, json={"Name": "remediation"}).json()["ID"]
        assert c.put(ip, f"/v1/kv/alice-acceptance/lock?acquire={sid}", token=REMEDIATION, data=b"me").json() is True
        assert c.get(ip, "/v1/kv/alice-acceptance/lock", token=REMEDIATION).json()[0]["Session"] == sid
        r = c.put(ip, "/v1/kv/other/key", token=REMEDIATION, data=b"x")
        assert r.status_code == 403 and "lacks permission 'key:write' on \"other/key\"" in r.text
        assert c.request("DELETE", ip, "/v1/kv/?recurse", token=REMEDIATION).status_code == 403
        assert c.put(ip, f"/v1/session/destroy/{sid}", token=REMEDIATION).json() is True
        assert c.request("DELETE", ip, "/v1/kv/alice-acceptance/?recurse", token=REMEDIATION).json() is True
        assert c.get(ip, "/v1/catalog/nodes", token="unknown").text.strip() == "ACL not found"
    finally:
        member_says(c, ip, "alibuild05", "127.0.1.5", "leaving")  # a member that left is deregistered
    wait_for("alibuild05 gone", lambda: "alibuild05" not in {n["Node"] for n in c.get(ip, "/v1/catalog/nodes").json()})


def test_dead_server_cleanup_and_rejoin(cluster: Cluster) -> None:
    """Autopilot's cleanup_dead_servers: a failed server is removed from the raft configuration (a quorum
    remains) and leaves the LAN pool, so the catalog forgets its node; back, it rejoins. No live server is
    ever seen critical meanwhile (the serfHealth regression)."""
    c = cluster
    leader = c.leader_name()
    victim = next(m["name"] for m in MASTERS if m["name"] != leader)
    ip = c.ip(leader)
    live = {m["name"] for m in MASTERS} - {victim}
    c.stop(victim)

    def left() -> bool:
        critical = {ch["Node"] for ch in c.get(ip, "/v1/health/state/critical").json()}
        assert not critical & live, f"a live server is critical: {critical}"
        members = {m["Name"]: m["Status"] for m in c.get(ip, "/v1/agent/members").json()}
        return bool(members[victim] == 3)

    wait_for(f"{victim} left", left, 20)
    servers = c.get(ip, "/v1/operator/raft/configuration", token=READ).json()["Servers"]
    assert {s["Node"] for s in servers} == live
    assert len(c.get(ip, "/v1/status/peers", token=None).json()) == 2
    wait_for("the node deregistered", lambda: victim not in {n["Node"] for n in c.get(ip, "/v1/catalog/nodes").json()})
    assert c.get(ip, "/v1/health/state/critical").json() == []
    health = c.get(ip, "/v1/operator/autopilot/health", token=READ).json()
    assert (len(health["Servers"]), health["FailureTolerance"], health["Healthy"]) == (2, 0, True)

    c.start(victim)
    wait_for(f"{victim} alive", lambda: {m["Name"]: m["Status"] for m in c.get(ip, "/v1/agent/members").json()}[
        victim] == 1)
    wait_for("its node back, serfHealth passing", lambda: [ch["Status"] for ch in c.get(
        ip, f"/v1/health/node/{victim}").json() if ch["CheckID"] == "serfHealth"] == ["passing"])
    health = wait_for("three healthy voters", lambda: (h := c.get(ip, "/v1/operator/autopilot/health", token=READ)
                                                        ).status_code == 200 and all(
        s["Voter"] for s in h.json()["Servers"]) and len(h.json()["Servers"]) == 3 and h.json(), 15)
    assert health["FailureTolerance"] == 1


def test_client_agents_are_lan_members(cluster: Cluster) -> None:
    """A node's Consul agent (in the lab: its Nomad client emulator) is a LAN member: alive while it
    gossips, `failed` (serfHealth critical) when it stops answering, `leaving` then `left` (and out of the
    catalog) when it leaves; back, it rejoins and registers its services again."""
    c = cluster
    ip = MASTERS[0]["ip"]
    client_ip = ip.rsplit(".", 1)[0] + ".41"
    name = "alibuild41"
    pki = make_ca_and_certs(c.tmp / "tls", {name: client_ip})
    cfg = {"name": name, "role": "agent", "kind": "vm", "ip": client_ip, "region": "global", "datacenter": "cern",
           "masters": MASTERS, "nomad_node_id": str(uuid.uuid4()), "tokens": {"nomad": "unused", "consul": TOKEN},
           "tls": pki["nodes"][name], "build_dir": str(c.tmp), "fault_dir": str(c.tmp / "faults"), "jobs": [],
           "consul_leave_on_terminate": True}
    path = c.tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))

    def start() -> subprocess.Popen[bytes]:
        log = open(c.tmp / f"{name}.log", "ab")  # noqa: SIM115 - handed to the subprocess
        return subprocess.Popen([sys.executable, "-m", "emulators.nomad", str(path)],
                                env={**os.environ, "PYTHONPATH": str(LAB)}, stdout=log, stderr=log)

    def status() -> int | None:
        return {m["Name"]: m["Status"] for m in c.get(ip, "/v1/agent/members").json()}.get(name)

    def serf() -> list[tuple[str, str]]:
        return [(ch["Status"], ch["Output"]) for ch in c.get(ip, f"/v1/health/node/{name}").json()
                if ch["CheckID"] == "serfHealth"]

    proc = start()
    try:
        wait_for(f"{name} alive", lambda: status() == 1)
        member = next(m for m in c.get(ip, "/v1/agent/members").json() if m["Name"] == name)
        assert_same_shape(schema(sample("agent_members")["body"][0]), member, free_maps=CONSUL_FREE_MAPS)
        assert (member["Addr"], member["Port"], member["Tags"]["role"]) == (client_ip, 8301, "node")
        wait_for("its serfHealth passing", lambda: serf() == [("passing", "Agent alive and reachable")])
        wait_for("its nomad-client service", lambda: [e["Node"]["Node"] for e in c.get(
            ip, "/v1/health/service/nomad-client?passing").json()] == [name])
        # A crash: no leave; failed once the agent is silent for the failure timeout.
        proc.kill()
        proc.wait(5)
        wait_for(f"{name} failed", lambda: status() == 4, REFRESH_TIMEOUT_S + 8)
        assert serf() == [("critical", "Agent not live or unreachable")]
        assert c.get(ip, "/v1/health/service/nomad-client?passing").json() == []
        # Back: alive again.
        proc = start()
        wait_for(f"{name} alive again", lambda: status() == 1 and serf() == [("passing", "Agent alive and reachable")])
        # A graceful stop (SIGTERM during a shutdown: leave_on_terminate): leaving, then left and deregistered.
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)
        seen: list[int | None] = []

        def gone() -> bool:
            seen.append(status())
            return seen[-1] == 3

        wait_for(f"{name} left", gone, 10, interval=0.1)
        assert 2 in seen, f"never seen leaving: {seen}"
        wait_for(f"{name} out of the catalog", lambda: name not in {
            n["Node"] for n in c.get(ip, "/v1/catalog/nodes").json()})
        assert c.get(ip, "/v1/health/state/critical").json() == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_autopilot_health_right_after_an_election(cluster: Cluster) -> None:
    """A new leader has no autopilot state until its first round (raft-autopilot's empty State): autopilot
    health answers 429 with Healthy false and Servers null for AUTOPILOT_WARMUP_S, then 200; a follower asked
    with ?stale answers its own (never running) autopilot's empty state."""
    c = cluster
    leader = c.leader_name()
    ip = c.ip(leader)

    def healthy() -> Any:
        h = c.get(ip, "/v1/operator/autopilot/health", token=READ)
        return h.status_code == 200 and len(h.json()["Servers"]) == 3 and all(
            s["Voter"] for s in h.json()["Servers"]) and h.json()

    wait_for("three healthy voters", healthy, 20)
    target = next(m for m in MASTERS if m["name"] != leader)
    r = c.request("POST", ip, f"/v1/operator/raft/transfer-leader?id={target['consul_id']}")
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    for via in (target["ip"], ip):  # the new leader itself, and the old one (now a follower, which forwards)
        r = c.get(via, "/v1/operator/autopilot/health", token=READ)
        assert (r.status_code, r.json()) == (429, emulator.EMPTY_AUTOPILOT), via
    r = c.get(ip, "/v1/operator/autopilot/health?stale", token=READ)
    assert (r.status_code, r.json()) == (429, emulator.EMPTY_AUTOPILOT)
    health = wait_for("the new leader's first autopilot round", lambda: (
        h := c.get(target["ip"], "/v1/operator/autopilot/health", token=READ)).status_code == 200 and h.json(), 10,
        interval=0.1)
    assert time.monotonic() - t0 >= AUTOPILOT_WARMUP_S - 0.3
    assert next(s["Name"] for s in health["Servers"] if s["Leader"]) == target["name"]
    assert_same_shape(sample("operator_autopilot_health")["body"], health)
    # A follower's own autopilot never runs: ?stale there stays empty.
    r = c.get(ip, "/v1/operator/autopilot/health?stale", token=READ)
    assert (r.status_code, r.json()) == (429, emulator.EMPTY_AUTOPILOT)


def test_rate_limit_fault(cluster: Cluster) -> None:
    """Lab fault rate-limit:consul: while <fault_dir>/rate-limit-consul holds a rate, the server answers that
    many catalog/health/KV/session reads a second (and as many writes), then 429 (a write on the leader: 503);
    status, operator and agent endpoints are not limited, nor are the other servers. Removed: no limit."""
    c = cluster
    name, ip = MASTERS[0]["name"], MASTERS[0]["ip"]
    flag = c.fault_dirs[name] / emulator.RATE_LIMIT_FLAG
    flag.write_text("2\n")  # 2 requests a second, burst 2
    try:
        # The flag is read at most once a second.
        wait_for("the limit", lambda: c.get(ip, "/v1/catalog/nodes").status_code == 429, timeout=5, interval=0.05)
        r = c.get(ip, "/v1/catalog/nodes")
        assert (r.status_code, r.text.strip()) == (429, emulator.RETRY_ELSEWHERE)
        # The limit comes before the token is even looked at (Consul's limiter stands before the RPC handler).
        assert c.get(ip, "/v1/catalog/nodes", token="unknown").status_code == 429
        for path, token in (("/v1/status/leader", None), ("/v1/status/peers", None), ("/v1/agent/self", TOKEN),
                            ("/v1/agent/members", TOKEN), ("/v1/operator/raft/configuration", READ),
                            ("/v1/agent/metrics?format=prometheus", TOKEN)):
            assert c.get(ip, path, token=token).status_code == 200, path
        assert c.get(MASTERS[1]["ip"], "/v1/catalog/nodes").status_code == 200
        assert len(dns_a("consul.service.consul", False)) == 3  # nor is DNS
        # A full bucket after a second: two reads, then 429.
        time.sleep(1.1)
        codes = [c.get(ip, "/v1/catalog/services").status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429, codes
        # Writes have a bucket of their own.
        leader = c.leader_name()
        writes = [c.put(ip, "/v1/kv/limited", data=b"x") for _ in range(5)]
        assert [w.status_code for w in writes[:2]] == [200, 200], [w.text for w in writes]
        expected = (503, emulator.RETRY_LATER) if leader == name else (429, emulator.RETRY_ELSEWHERE)
        assert expected in [(w.status_code, w.text.strip()) for w in writes[2:]], [w.text for w in writes]
    finally:
        flag.unlink(missing_ok=True)
    wait_for("the limit lifted", lambda: all(c.get(ip, "/v1/catalog/services").status_code == 200 for _ in range(6)),
             timeout=5)
    assert c.request("DELETE", ip, "/v1/kv/limited").status_code == 200


def test_dns_answers_with_the_agents_default_token(cluster: Cluster) -> None:
    """Consul DNS reads with the agent's default token: the lab's DNS token (read on every node and service)
    sees everything; the servers-only token sees the servers and the consul service; without one (the anonymous
    token, default deny) every name is NXDOMAIN, with the SOA."""
    c = cluster
    ip = MASTERS[0]["ip"]
    register(c, ip, "alibuild09", "127.0.1.9", "ci-dns", ["x"])
    try:

        def registered(server_ip: str) -> Any:
            return c.get(server_ip, "/v1/catalog/node/alibuild09?stale").json()

        for m in MASTERS:  # DNS answers from each server's own copy
            wait_for(f"alibuild09 on {m['name']}", partial(registered, m["ip"]))
        # alimesos01: the lab's DNS token.
        assert a_records(dns_query("ci-dns.service.consul", "A")) == {"127.0.1.9"}
        assert a_records(dns_query("alibuild09.node.consul", "A", tcp=True)) == {"127.0.1.9"}
        assert a_records(dns_query("consul.service.consul", "A")) == {m["ip"] for m in MASTERS}
        # alimesos03: no default token.
        anonymous = MASTERS[2]["ip"]
        for qname in ("ci-dns.service.consul", "alibuild09.node.consul", "consul.service.consul",
                      "alimesos01.node.consul", "_ci-dns._tcp.service.consul"):
            for tcp in (False, True):
                msg = dns_query(qname, "SRV" if qname.startswith("_") else "A", tcp, ip=anonymous)
                assert (msg.rcode(), msg.answer) == (dns.rcode.NXDOMAIN, []), (qname, tcp)
                assert [rr.rdtype for rr in msg.authority] == [dns.rdatatype.SOA], (qname, tcp)
        ns = dns_query("consul", "NS", ip=anonymous)
        assert (ns.rcode(), ns.answer) == (dns.rcode.NOERROR, [])
        # alimesos02: the servers-only token (node_prefix "alimesos", service "consul").
        restricted = MASTERS[1]["ip"]
        assert a_records(dns_query("alimesos01.node.consul", "A", ip=restricted)) == {MASTERS[0]["ip"]}
        srv = dns_query("consul.service.consul", "SRV", ip=restricted)
        assert {r.port for rr in srv.answer for r in rr} == {8300} and len(srv.answer[0]) == 3
        for qname in ("ci-dns.service.consul", "alibuild09.node.consul"):
            msg = dns_query(qname, "A", ip=restricted)
            assert (msg.rcode(), msg.answer) == (dns.rcode.NXDOMAIN, []), qname
        ns = dns_query("consul", "NS", ip=restricted)
        assert {str(r.target) for rr in ns.answer for r in rr} == {f"{m['name']}.node.cern.consul." for m in MASTERS}
        assert {r.address for rr in ns.additional for r in rr} == {m["ip"] for m in MASTERS}
    finally:
        c.put(ip, "/v1/catalog/deregister", json={"Node": "alibuild09"})


def _resolver(acl: dict[str, Any] | None) -> emulator.DnsServer:
    """An emulated server's DNS resolver, in this process (nothing listens), its catalog holding the node
    alibuild09 with the service "web"."""
    me = {"name": "alimesos01", "ip": "127.0.0.1", "nomad_id": str(uuid.uuid4()), "consul_id": str(uuid.uuid4())}
    cfg: dict[str, Any] = {"name": me["name"], "ip": me["ip"], "datacenter": "cern", "masters": [me],
                           "tokens": {"nomad": "unused", "consul": TOKEN}, "tls": {"ca": "", "cert": "", "key": ""}}
    if acl is not None:
        cfg["acl"] = acl
    server = emulator.ConsulServer(cfg)
    server.store.apply({"op": "catalog_register", "now": time.time(), "body": {
        "Node": "alibuild09", "Address": "127.0.1.9",
        "Service": {"ID": "web-1", "Service": "web", "Port": 80},
        "Check": {"CheckID": "service:web-1", "Status": "passing", "ServiceID": "web-1"}}})
    return emulator.DnsServer(server)


def test_dns_acl_resolution() -> None:
    """Without `acl` in node.json DNS filters nothing; with it, the default token decides; a default token
    that does not exist makes every lookup fail (SERVFAIL, the RPC's "ACL not found")."""
    names = ("web.service.consul.", "alibuild09.node.consul.")
    for acl, rcode in ((None, emulator.RCODE_OK), (ACL, emulator.RCODE_OK),
                       ({"consul": {**ACL["consul"], "dns_token": ""}}, emulator.RCODE_NXDOMAIN),
                       ({"consul": {**ACL["consul"], "dns_token": "no-such-token"}}, emulator.RCODE_SERVFAIL),
                       ({}, emulator.RCODE_NXDOMAIN)):  # ACLs on, no token at all: anonymous
        resolver = _resolver(acl)
        for qname in names:
            got, answers, _, authority = resolver.resolve(qname, emulator.T_A)
            assert got == rcode, (acl, qname)
            assert bool(answers) == (rcode == emulator.RCODE_OK), (acl, qname)
            assert [t for _, t, _ in authority] == ([emulator.T_SOA] if rcode == emulator.RCODE_NXDOMAIN else [])


def test_force_leave_prunes_a_failed_client_agent(cluster: Cluster) -> None:
    """An agent gone for good stays a failed member (serfHealth critical) until an operator force-leaves it:
    operator:write; an alive member is left alone; -prune takes it out of the member list and the catalog."""
    c, ip = cluster, MASTERS[0]["ip"]
    name, addr = "alibuild43", ip.rsplit(".", 1)[0] + ".43"

    def status() -> int | None:
        return {m["Name"]: m["Status"] for m in c.get(ip, "/v1/agent/members").json()}.get(name)

    member_says(c, ip, name, addr)
    wait_for(f"{name} alive", lambda: status() == 1)
    assert c.put(ip, f"/v1/agent/force-leave/{name}?prune=1").json() is False  # alive: it would rejoin at once
    wait_for(f"{name} failed", lambda: status() == 4, REFRESH_TIMEOUT_S + 8)
    refused = c.put(ip, f"/v1/agent/force-leave/{name}?prune=1", token=READ)
    assert refused.status_code == 403 and "operator:write" in refused.text
    assert c.put(ip, f"/v1/agent/force-leave/{name}?prune=1").status_code == 200
    wait_for(f"{name} out of the members", lambda: status() is None)
    wait_for(f"{name} out of the catalog", lambda: name not in {
        n["Node"] for n in c.get(ip, "/v1/catalog/nodes").json()})
    assert c.get(ip, "/v1/health/state/critical").json() == []
    assert c.put(ip, "/v1/agent/force-leave/nosuchnode").status_code == 500
