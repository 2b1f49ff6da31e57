"""The Nomad emulator against its documented samples and an unmodified client (python-nomad).

Local, no containers: three servers on 127.0.0.11-13 and two clients on 127.0.0.21-22 (another loopback
/24 with ALICELAB_NOMAD_TEST_NET, e.g. 127.0.7, so that two runs do not collide), each a subprocess
running `python -S -m emulators.nomad node.json` (no site-packages: the lab's nodes have only the standard
library), with a throwaway CA. The tests share one cluster and run in file order: the ones that break it
(failing allocations, disconnecting and stopping clients, then servers) come last.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nomad
import pytest
import requests

from tests.lab.configs import acl_config
from tests.lab.emulators import base
from tests.lab.emulators.nomad import (
    ALLOC_RECONNECTED,
    ALLOC_RESCHEDULED,
    ALLOC_UNKNOWN,
    DISCONNECT_FLAG,
    FAIL_FLAG,
    MISSING_SECRET,
    NOT_A_JWT,
    RATE_LIMIT_FLAG,
    RESOLVE_FAILED,
    TOKEN_EXPIRED,
    TOKEN_NOT_FOUND,
    TOO_MANY_CONNS,
    RateLimit,
    empty_state,
    job_spec,
)
from tests.lab.emulators.nomad import (
    Cluster as Rules,
)
from tests.lab.pki import make_ca_and_certs
from tests.lab.shapes import assert_same_shape
from tests.polling import wait_until
from tests.reference import API

pytestmark = pytest.mark.emulator

LAB = Path(__file__).resolve().parent
SAMPLES = API / "nomad"

# The lab's nodes run Debian's python3: use it when this machine has it, without site-packages either way.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
NET = os.environ.get("ALICELAB_NOMAD_TEST_NET", "127.0.0")
SERVERS = {"alimesos01": f"{NET}.11", "alimesos02": f"{NET}.12", "alimesos03": f"{NET}.13"}
CLIENTS = {"alibuild01": f"{NET}.21", "alimetal01": f"{NET}.22"}
# A client started by one test only (a new node: initializing, then ready), in a datacenter no job uses.
EXTRA = {"alibuild02": f"{NET}.23"}
BATCH_RUN_S = 15
AUTOPILOT_S = 2  # the emulators' autopilot interval and stabilization time in this test (10 s by default)
CI_CONSTRAINTS = [
    {"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="},
    {"LTarget": "${meta.allow_compilation}", "RTarget": "true", "Operand": "="},
]
FAST_RESCHEDULE = {"Delay": "1s", "DelayFunction": "constant", "Unlimited": True}
ONE_ATTEMPT = {"Attempts": 1, "Interval": "1h", "Delay": "1s", "DelayFunction": "constant", "Unlimited": False}
DISCONNECT_JOB, EXHAUSTIBLE_JOB = "ci-longbuild", "ci-mesosdaq-slc9"
JOBS: list[dict[str, Any]] = [
    {"ID": "ci-mesosci-slc9", "Type": "service", "Count": 2, "Constraints": CI_CONSTRAINTS,
     "Reschedule": FAST_RESCHEDULE},
    {"ID": "repo", "Type": "service", "Count": 1, "Constraints": CI_CONSTRAINTS[:1]},
    {"ID": "publish-alien", "Type": "batch", "Count": 1, "RunSeconds": BATCH_RUN_S, "Constraints": CI_CONSTRAINTS[:1]},
    # No node has this meta: the job stays queued.
    {"ID": "ci-mesosci-slc9-gpu", "Type": "service", "Count": 1,
     "Constraints": [{"LTarget": "${meta.gpu}", "RTarget": "true", "Operand": "="}]},
    # One reschedule attempt an hour: its allocations' failures use it up.
    {"ID": EXHAUSTIBLE_JOB, "Type": "service", "Count": 1, "Constraints": CI_CONSTRAINTS, "Reschedule": ONE_ATTEMPT},
    # A group with a disconnect block: unknown (not lost) for a minute while its node is disconnected.
    {"ID": DISCONNECT_JOB, "Type": "service", "Count": 1, "Constraints": CI_CONSTRAINTS,
     "Reschedule": FAST_RESCHEDULE, "Disconnect": {"LostAfter": "60s", "Replace": True}},
    # Another namespace: lists of "default" never show it.
    {"ID": "infra-monitor", "Namespace": "infra", "Type": "service", "Count": 1, "Constraints": CI_CONSTRAINTS[:1]},
]
DEFAULT_JOBS = {j["ID"] for j in JOBS if "Namespace" not in j}
SERVICE_COUNTS = {"ci-mesosci-slc9": 2, "repo": 1, EXHAUSTIBLE_JOB: 1, DISCONNECT_JOB: 1}
# Tokens: the lab's own policies (configs.acl_config) plus one restricted to the namespace "infra".
SECRETS = {k: str(uuid.uuid4()) for k in ("nomad", "nomad_read", "nomad_remediation", "consul", "consul_read",
                                          "consul_remediation", "consul_dns")}
MANAGEMENT, READ, REMEDIATION = SECRETS["nomad"], SECRETS["nomad_read"], SECRETS["nomad_remediation"]
INFRA = str(uuid.uuid4())
ACL = acl_config(SECRETS)
ACL["nomad"]["policies"]["infra-only"] = {"namespace": {"infra": {"policy": "read"}}, "node": {"policy": "read"}}
ACL["nomad"]["tokens"].append({"AccessorID": str(uuid.uuid4()), "SecretID": INFRA, "Name": "infra",
                               "Type": "client", "Policies": ["infra-only"]})
# A known token without node:read; one that expired a minute ago (still in the state: the garbage collector
# takes expired tokens an hour after their creation); one long expired (collected).
NO_NODE, EXPIRED, LONG_EXPIRED = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


def _ago(seconds: float) -> str:
    t = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


ACL["nomad"]["policies"]["jobs-only"] = {"namespace": {"default": {"policy": "read"}}}
ACL["nomad"]["tokens"] += [
    {"AccessorID": str(uuid.uuid4()), "SecretID": NO_NODE, "Name": "jobs only", "Type": "client",
     "Policies": ["jobs-only"]},
    {"AccessorID": str(uuid.uuid4()), "SecretID": EXPIRED, "Name": "expired", "Type": "client",
     "Policies": ["alice-acceptance-read"], "CreateTime": _ago(600), "ExpirationTime": _ago(60)},
    {"AccessorID": str(uuid.uuid4()), "SecretID": LONG_EXPIRED, "Name": "long expired", "Type": "client",
     "Policies": ["alice-acceptance-read"], "CreateTime": _ago(3 * 3600), "ExpirationTTL": "1h"},
]
TOKEN_FIELDS = {"AccessorID", "SecretID", "Name", "Type", "Policies", "Roles", "Global", "Hash", "CreateTime",
                "ExpirationTime", "ExpirationTTL", "CreateIndex", "ModifyIndex"}
REQUEST_TIMEOUT_S = 15  # above the servers' 5 s hold without a leader


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return data


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.2) -> Any:
    """wait_until with this module's defaults; an emulator restarting or answering half a body is "not yet"."""
    return wait_until(fn, timeout=timeout, interval=interval, what=what,
                      ignore=(requests.RequestException, KeyError, ValueError))


class FakeConsul:
    """Stands in for the Consul catalog on a master's 8500: records what the Nomad clients register."""

    def __init__(self, ip: str, tls: base.Tls) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        router = base.Router()

        @router.route("PUT", "/v1/catalog/register", acl=False)
        def register(req: base.Request) -> base.Response:
            body = req.json()
            with self.lock:
                self.tokens.add(req.headers.get("x-consul-token", ""))
                self.services[body["Service"]["ID"]] = body
            return base.Response(body=True)

        @router.route("PUT", "/v1/catalog/deregister", acl=False)
        def deregister(req: base.Request) -> base.Response:
            with self.lock:
                self.services.pop(req.json().get("ServiceID", ""), None)
            return base.Response(body=True)

        @router.route("GET", "/v1/catalog/node/{name}", acl=False)
        def node(req: base.Request) -> base.Response:
            with self.lock:
                mine = {k: v["Service"] for k, v in self.services.items() if v["Node"] == req.params["name"]}
            return base.Response(body={"Node": {"Node": req.params["name"]}, "Services": mine})

        self.server: ThreadingHTTPServer = base.serve(ip, 8500, router, tls, name="fake-consul")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return dict(self.services)


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = MANAGEMENT
        self.consul_token = SECRETS["consul"]
        names = {**SERVERS, **CLIENTS, **EXTRA, "operator": "127.0.0.1"}
        self.pki = make_ca_and_certs(root / "tls", names)
        self.ca = self.pki["ca"]
        op = self.pki["nodes"]["operator"]
        self.cert = (op["cert"], op["key"])
        self.ids = {name: str(uuid.uuid4()) for name in SERVERS}
        self.node_ids = {name: str(uuid.uuid4()) for name in {**CLIENTS, **EXTRA}}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.fake_consul: FakeConsul | None = None
        self.session = requests.Session()
        self.session.cert = self.cert
        masters = [{"name": n, "ip": ip, "nomad_id": self.ids[n], "consul_id": str(uuid.uuid4())}
                   for n, ip in SERVERS.items()]
        for name, ip in names.items():
            if name == "operator":
                continue
            build = root / "build" / name
            build.mkdir(parents=True)
            cfg = {
                "name": name, "role": "master" if name in SERVERS else "agent",
                "kind": None if name in SERVERS else ("metal" if "metal" in name else "vm"), "ip": ip,
                "region": "global", "datacenter": "lab-extra" if name in EXTRA else "cern", "masters": masters,
                "nomad_node_id": self.node_ids.get(name, str(uuid.uuid4())),
                "tokens": {"nomad": self.token, "consul": self.consul_token}, "acl": ACL,
                "tls": self.pki["nodes"][name], "build_dir": str(build), "fault_dir": str(self.fault_dir(name)),
                "jobs": JOBS if name in SERVERS else [],
            }
            (root / f"{name}.json").write_text(json.dumps(cfg))

    # --- processes
    def start(self, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOMAD_", "PYTHON"))}
        env["PYTHONPATH"] = str(LAB)
        env["ALICELAB_AUTOPILOT_INTERVAL_S"] = env["ALICELAB_AUTOPILOT_STABILIZATION_S"] = str(AUTOPILOT_S)
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [PYTHON, "-S", "-m", "emulators.nomad", str(self.root / f"{name}.json")],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
        )
        log.close()

    def stop(self, name: str) -> float:
        """SIGTERM; returns how long the process took to exit."""
        proc = self.procs.pop(name)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return time.monotonic() - started

    # --- lab faults: the flags a client watches
    def fault_dir(self, name: str) -> Path:
        return self.root / "faults" / name

    def flag(self, name: str, flag: str, text: str = "") -> None:
        self.fault_dir(name).mkdir(parents=True, exist_ok=True)
        (self.fault_dir(name) / flag).write_text(text)

    def unflag(self, name: str, flag: str) -> None:
        (self.fault_dir(name) / flag).unlink(missing_ok=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.root.glob("*.log")))

    # --- HTTP
    def url(self, who: str, path: str) -> str:
        ip = SERVERS.get(who) or CLIENTS.get(who) or EXTRA.get(who) or who
        return f"https://{ip}:4646{path}"

    def request(self, method: str, who: str, path: str, token: str | None = "", **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["X-Nomad-Token"] = token or self.token
        # verify given per request: REQUESTS_CA_BUNDLE in the environment would override the session's
        return self.session.request(method, self.url(who, path), headers=headers, timeout=REQUEST_TIMEOUT_S,
                                    verify=self.ca, **kw)

    def get(self, who: str, path: str, **kw: Any) -> Any:
        resp = self.request("GET", who, path, **kw)
        assert resp.status_code == 200, f"GET {path} on {who}: {resp.status_code} {resp.text}"
        return resp.json()

    def leader_of(self, who: str) -> str:
        """The leader `who` knows of, from its own state (a stale read: without a leader a consistent one
        is held for 5 s and fails)."""
        leader: str = self.request("GET", who, "/v1/status/leader", token=None, params={"stale": ""}).json()
        return leader

    def agreed_leader(self, among: list[str]) -> str:
        """The leader all of `among` report, or "" while they disagree or have none."""
        try:
            seen = {self.leader_of(s) for s in among}
        except requests.RequestException:
            return ""
        return seen.pop() if len(seen) == 1 else ""

    def allocs(self, who: str = "alimesos01") -> list[dict[str, Any]]:
        allocs: list[dict[str, Any]] = self.get(who, "/v1/allocations", params={"stale": ""})
        return allocs

    def running(self, job: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.allocs(self.any_server()) if a["ClientStatus"] == "running"
                and a["DesiredStatus"] == "run" and (job is None or a["JobID"] == job)]

    def any_server(self) -> str:
        return next(n for n in SERVERS if n in self.procs)

    def node(self, name: str) -> dict[str, Any]:
        node: dict[str, Any] = self.get(self.any_server(), f"/v1/node/{self.node_ids[name]}", params={"stale": ""})
        return node

    def alloc(self, aid: str) -> dict[str, Any]:
        alloc: dict[str, Any] = self.get(self.any_server(), f"/v1/allocation/{aid}", params={"stale": ""})
        return alloc

    def members(self, who: str) -> dict[str, str]:
        return {m["Name"].split(".")[0]: m["Status"] for m in self.get(who, "/v1/agent/members")["Members"]}

    def placed(self) -> bool:
        run = self.running()
        jobs = [a["JobID"] for a in run]
        return all(jobs.count(j) == n for j, n in SERVICE_COUNTS.items())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cl = Cluster(tmp_path_factory.mktemp("nomadlab"))
    fake: FakeConsul | None = None
    try:
        fake = FakeConsul(SERVERS["alimesos01"], base.Tls.from_config(cl.pki["nodes"]["alimesos01"]))
    except OSError:
        fake = None  # the port is taken (another test run): the Consul test is skipped
    cl.fake_consul = fake
    try:
        for name in [*SERVERS, *CLIENTS]:
            cl.start(name)
        wait_for("a leader", lambda: cl.agreed_leader(list(SERVERS)), 15)
        wait_for("both nodes ready", lambda: sum(
            n["Status"] == "ready" for n in cl.get("alimesos01", "/v1/nodes")) == 2, 10)
        wait_for("the jobs placed", cl.placed, 10)
        wait_for("the batch job running", lambda: cl.running("publish-alien"), 5)
        yield cl
    except BaseException:
        print(cl.logs())
        raise
    finally:
        for name in list(cl.procs):
            cl.stop(name)
        if fake is not None:
            fake.server.shutdown()
            fake.server.server_close()


def test_every_endpoint_answers_like_its_sample(cluster: Cluster) -> None:
    cl = cluster
    leader = cl.agreed_leader(list(SERVERS))
    assert leader in {f"{ip}:4647" for ip in SERVERS.values()}
    assert_same_shape(sample("status_leader")["body"], cl.leader_of("alimesos02"))
    peers = cl.get("alimesos03", "/v1/status/peers", token=None)
    assert_same_shape(sample("status_peers")["body"], peers)
    assert sorted(peers) == sorted(f"{ip}:4647" for ip in SERVERS.values())

    # liveness comes from the last election round: on a busy machine a reply can be late once
    wait_for("every server alive", lambda: {m["Status"] for m in cl.get("alimesos01", "/v1/agent/members")[
        "Members"]} == {"alive"}, 10)
    members = cl.get("alimesos01", "/v1/agent/members")
    assert_same_shape(sample("agent_members")["body"], members)
    assert {m["Name"] for m in members["Members"]} == {f"{n}.global" for n in SERVERS}
    assert {m["Status"] for m in members["Members"]} == {"alive"}
    assert {m["Tags"]["id"] for m in members["Members"]} == set(cl.ids.values())
    assert cl.get("alibuild01", "/v1/agent/members")["Members"]  # a client forwards to a server

    self_sample = sample("agent_self")["body"]
    server_self = cl.get("alimesos02", "/v1/agent/self")
    assert set(self_sample) <= set(server_self)
    assert_same_shape(self_sample["member"], server_self["member"], "$.member")
    for part in ("runtime", "nomad", "raft", "serf"):
        assert_same_shape(self_sample["stats"][part], server_self["stats"][part], f"$.stats.{part}")
    client_self = cl.get("alibuild01", "/v1/agent/self")
    assert {"config", "stats"} <= set(client_self)
    assert_same_shape(self_sample["stats"]["client"], client_self["stats"]["client"], "$.stats.client")
    assert client_self["stats"]["client"]["node_id"] == cl.node_ids["alibuild01"]

    health = sample("agent_health")["body"]
    server_health = cl.get("alimesos01", "/v1/agent/health", token=None)
    assert_same_shape(health["server"], server_health["server"])
    client_health = cl.get("alimetal01", "/v1/agent/health", token=None)
    assert_same_shape(health["client"], client_health["client"])

    resp = cl.request("GET", "alimesos03", "/v1/nodes", params={"os": "true"})
    assert resp.status_code == 200
    assert int(resp.headers["X-Nomad-Index"]) > 0
    assert resp.headers["X-Nomad-KnownLeader"] == "true"
    assert "X-Nomad-LastContact" in resp.headers
    nodes = resp.json()
    assert_same_shape(sample("nodes_list")["body"], nodes)
    assert {n["Name"] for n in nodes} == set(CLIENTS)
    prefix = cl.node_ids["alibuild01"][:8]
    assert [n["Name"] for n in cl.get("alimesos01", "/v1/nodes", params={"prefix": prefix})] == ["alibuild01"]

    node_id = cl.node_ids["alibuild01"]
    node = cl.get("alimesos01", f"/v1/node/{node_id}")
    assert_same_shape(sample("node_read")["body"], node)
    attrs = node["Attributes"]
    assert attrs["kernel.name"] == os.uname().sysname.lower()
    assert attrs["nomad.version"] == "1.9.7"
    assert attrs["unique.hostname"] == "alibuild01"
    assert int(attrs["unique.storage.bytestotal"]) >= int(attrs["unique.storage.bytesfree"]) > 0
    assert attrs["unique.storage.volume"]
    assert node["Meta"]["allow_compilation"] == "true"
    assert (node["Datacenter"], node["NodeClass"], node["HTTPAddr"]) == ("cern", "", f"{CLIENTS['alibuild01']}:4646")
    missing = cl.request("GET", "alimesos01", f"/v1/node/{uuid.uuid4()}")
    assert (missing.status_code, missing.text.strip()) == (404, "node not found")

    allocs = cl.get("alimesos01", "/v1/allocations")
    assert_same_shape(sample("allocations_list")["body"], allocs)
    one = allocs[0]
    full = cl.get("alimesos02", f"/v1/allocation/{one['ID']}")
    assert_same_shape(sample("node_allocations")["body"][0], full)
    on_node = cl.get("alimesos01", f"/v1/node/{one['NodeID']}/allocations")
    assert_same_shape(sample("node_allocations")["body"], on_node)
    assert one["ID"] in {a["ID"] for a in on_node}
    job_allocs = cl.get("alimesos01", "/v1/job/ci-mesosci-slc9/allocations")
    assert_same_shape(sample("allocations_list")["body"], job_allocs)
    assert len([a for a in job_allocs if a["ClientStatus"] == "running"]) == 2

    jobs = cl.get("alimesos03", "/v1/jobs")
    assert_same_shape(sample("jobs_list")["body"], jobs)
    by_id = {j["ID"]: j for j in jobs}
    assert set(by_id) == DEFAULT_JOBS
    assert by_id["ci-mesosci-slc9"]["Status"] == "running"
    assert by_id["ci-mesosci-slc9"]["JobSummary"]["Summary"]["ci"]["Running"] == 2
    assert by_id["ci-mesosci-slc9-gpu"]["Status"] == "pending"
    assert by_id["ci-mesosci-slc9-gpu"]["JobSummary"]["Summary"]["ci"]["Queued"] == 1
    job = cl.get("alimesos01", "/v1/job/ci-mesosci-slc9")
    assert_same_shape(sample("node_allocations")["body"][0]["Job"], job)
    assert cl.request("GET", "alimesos01", "/v1/job/nope").status_code == 404

    raft = cl.get("alimesos02", "/v1/operator/raft/configuration")
    assert_same_shape(sample("operator_raft_configuration")["body"], raft)
    assert [s["Address"] for s in raft["Servers"] if s["Leader"]] == [leader]
    assert {s["ID"] for s in raft["Servers"]} == set(cl.ids.values())

    # operator:read is enough for autopilot's view (the read-only token), answered by the leader
    health = wait_for("autopilot to see three healthy servers", lambda: (h := cl.request(
        "GET", "alimesos03", "/v1/operator/autopilot/health", token=READ)).status_code == 200 and h.json(), 10)
    assert_same_shape(sample("operator_autopilot_health")["body"], health)
    assert (health["Healthy"], health["FailureTolerance"]) == (True, 1)
    assert {s["ID"] for s in health["Servers"]} == set(health["Voters"]) == set(cl.ids.values())
    assert [s["Address"] for s in health["Servers"] if s["Leader"]] == [leader]
    assert health["Leader"] == next(s["ID"] for s in health["Servers"] if s["Leader"])

    text = cl.request("GET", leader.replace(":4647", ""), "/v1/metrics", params={"format": "prometheus"}).text
    assert "nomad_raft_state_leader{" in text and 'host="' in text
    assert "nomad_nomad_heartbeat_active{" in text
    assert 'nomad_nomad_job_summary_running{host="' in text and 'job="ci-mesosci-slc9"' in text
    client_text = cl.request("GET", "alibuild01", "/v1/metrics", params={"format": "prometheus"}).text
    assert "nomad_client_allocations_running{" in client_text
    assert cl.get("alibuild01", "/v1/metrics")["Gauges"]


def test_acl_rights_per_endpoint(cluster: Cluster) -> None:
    """The read-only token of the lab (deploy/policies/nomad-read.hcl: node:read, namespace default
    list-jobs and read-job, operator:read; agent:read if it gives it) and what real Nomad requires of each
    endpoint; a management token (the remediation's) for the rest."""
    cl = cluster
    node_id = cl.node_ids["alibuild01"]
    leader = cl.agreed_leader(list(SERVERS))
    leader_id = next(cl.ids[n] for n, ip in SERVERS.items() if f"{ip}:4647" == leader)
    alloc = cl.running()[0]["ID"]
    allowed = ["/v1/nodes", f"/v1/node/{node_id}", f"/v1/node/{node_id}/allocations", "/v1/agent/members",
               "/v1/jobs", "/v1/job/repo", "/v1/job/repo/summary",
               "/v1/job/repo/allocations", "/v1/allocations", f"/v1/allocation/{alloc}", "/v1/regions"]
    agent_paths = ["/v1/agent/self", "/v1/agent/servers"]
    agent_read = "agent" in ACL["nomad"]["policies"]["alice-acceptance-read"]
    allowed += agent_paths if agent_read else []
    for who in ("alimesos02", "alibuild01"):  # a server, and a client that forwards
        for path in allowed:
            r = cl.request("GET", who, path, token=READ)
            assert r.status_code == 200, (who, path, r.text)
        health = cl.request("GET", who, "/v1/operator/autopilot/health", token=READ)
        assert health.status_code in (200, 429), health.text  # 429: some server unhealthy, same body
        denied = [("GET", "/v1/operator/raft/configuration", None),  # management only, not operator:read
                  ("PUT", "/v1/operator/raft/transfer-leadership", {"id": leader_id}),
                  ("POST", f"/v1/node/{node_id}/drain", None), ("POST", f"/v1/node/{node_id}/eligibility", None),
                  ("PUT", "/v1/system/gc", None), ("POST", "/v1/job/repo/evaluate", None)]
        denied += [] if agent_read else [("GET", p, None) for p in agent_paths]
        for method, path, params in denied:
            r = cl.request(method, who, path, token=READ, params=params, json={"Eligibility": "eligible"})
            assert (r.status_code, r.text.strip()) == (403, "Permission denied"), (who, method, path)
        assert cl.request("GET", who, "/v1/operator/raft/configuration", token=MANAGEMENT).status_code == 200
        # nomad/auth/auth.go Authenticate: an unknown secret is refused as a missing right is
        unknown = cl.request("GET", who, "/v1/nodes", token=str(uuid.uuid4()))
        assert (unknown.status_code, unknown.text) == (403, "Permission denied")
        anonymous = cl.request("GET", who, "/v1/nodes", token=None)
        assert (anonymous.status_code, anonymous.text.strip()) == (403, "Permission denied")
        for open_path in ("/v1/status/leader", "/v1/status/peers", "/v1/agent/health", "/v1/metrics"):
            assert cl.request("GET", who, open_path, token=None).status_code == 200, open_path
    # The remediation token (management, as a leadership transfer needs): the transfer (to the current
    # leader: a no-op) and node writes.
    r = cl.request("PUT", "alimesos01", "/v1/operator/raft/transfer-leadership", token=REMEDIATION,
                   params={"id": leader_id})
    assert r.status_code == 200 and r.json()["Noop"] is True, r.text
    r = cl.request("POST", "alimesos01", f"/v1/node/{node_id}/eligibility", token=REMEDIATION,
                   json={"Eligibility": "eligible"})
    assert r.status_code == 200, r.text


def test_unknown_and_expired_tokens_and_token_self(cluster: Cluster) -> None:
    """Nomad 1.9 refuses an unknown, malformed or expired secret as it refuses a token lacking the right:
    403 "Permission denied" on every RPC endpoint; GET /v1/acl/token/self tells them apart (200 and the
    token for a token the state holds, 404 "ACL token not found" for an unknown secret). The agent
    endpoints resolve the token themselves and word it otherwise."""
    cl = cluster
    unknown, malformed = str(uuid.uuid4()), "not-a-uuid"
    read_accessor = next(t["AccessorID"] for t in ACL["nomad"]["tokens"] if t["SecretID"] == READ)
    for who in ("alimesos02", "alibuild01"):  # a server, and a client that forwards
        for secret in (unknown, malformed, EXPIRED, NO_NODE):
            r = cl.request("GET", who, "/v1/nodes", token=secret)
            assert (r.status_code, r.text) == (403, "Permission denied"), (who, secret)
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        mine = cl.request("GET", who, "/v1/acl/token/self", token=READ)
        assert mine.status_code == 200, mine.text
        token = mine.json()
        assert set(token) == TOKEN_FIELDS
        assert (token["AccessorID"], token["SecretID"], token["Name"], token["Type"], token["Policies"]) == (
            read_accessor, READ, "alice-acceptance read", "client", ["alice-acceptance-read"])
        assert (token["Roles"], token["Global"], token["ExpirationTime"], token["ExpirationTTL"]) == (
            None, False, None, 0)
        assert token["CreateTime"].endswith("Z") and token["CreateIndex"] == token["ModifyIndex"] > 0
        assert int(mine.headers["X-Nomad-Index"]) == token["ModifyIndex"]
        assert cl.get(who, "/v1/acl/token/self", token=NO_NODE)["Name"] == "jobs only"  # known, lacks node:read
        assert cl.get(who, "/v1/acl/token/self", token=REMEDIATION)["Type"] == "management"
        for secret in (unknown, malformed, LONG_EXPIRED):
            r = cl.request("GET", who, "/v1/acl/token/self", token=secret)
            assert (r.status_code, r.text) == (404, TOKEN_NOT_FOUND), (who, secret)
        r = cl.request("GET", who, "/v1/acl/token/self", token=None)
        assert (r.status_code, r.text) == (500, MISSING_SECRET)
        bearer = cl.request("GET", who, "/v1/acl/token/self", token=None, headers={"Authorization": f"Bearer {READ}"})
        assert bearer.status_code == 200 and bearer.json()["SecretID"] == READ
        expired = cl.get(who, "/v1/acl/token/self", token=EXPIRED)  # still stored: created 10 minutes ago
        assert expired["ExpirationTime"] and expired["ExpirationTime"] < _ago(0)
    assert cl.get("alimesos03", "/v1/acl/token/self", token=READ, params={"stale": ""})["SecretID"] == READ
    assert cl.request("PUT", "alimesos02", "/v1/acl/token/self", token=READ).status_code == 405

    # agent/self: the agent resolves the token itself (command/agent/http.go ResolveToken)
    for secret, status, text in ((unknown, 403, TOKEN_NOT_FOUND), (malformed, 403, TOKEN_NOT_FOUND),
                                 (EXPIRED, 500, RESOLVE_FAILED + TOKEN_EXPIRED), (NO_NODE, 403, "Permission denied")):
        r = cl.request("GET", "alimesos01", "/v1/agent/self", token=secret)
        assert (r.status_code, r.text) == (status, text), ("server", secret)
    for secret, status, text in ((unknown, 403, "Permission denied"), (malformed, 500, RESOLVE_FAILED + NOT_A_JWT),
                                 (EXPIRED, 500, RESOLVE_FAILED + TOKEN_EXPIRED), (NO_NODE, 403, "Permission denied")):
        r = cl.request("GET", "alimetal01", "/v1/agent/self", token=secret)
        assert (r.status_code, r.text) == (status, text), ("client", secret)

    # `nomad system gc` takes the expired tokens at once
    assert cl.request("PUT", "alimesos01", "/v1/system/gc", token=REMEDIATION).status_code == 200
    gone = wait_for("the expired token collected", lambda: (r := cl.request(
        "GET", "alimesos03", "/v1/acl/token/self", token=EXPIRED)).status_code == 404 and (r,), 5)[0]
    assert gone.text == TOKEN_NOT_FOUND
    assert cl.get("alimesos03", "/v1/acl/token/self", token=READ)["SecretID"] == READ


def test_new_node_is_initializing_until_its_first_heartbeat(cluster: Cluster) -> None:
    """client/client.go: a client registers its node `initializing`; its first heartbeat, a stagger later,
    makes it ready (here 1 to 2 s)."""
    cl = cluster
    name = next(iter(EXTRA))
    nid = cl.node_ids[name]
    seen: list[tuple[str, str, float]] = []  # (status in /v1/node/<id>, in /v1/nodes, when)
    cl.start(name)

    def ready() -> bool:
        """Records the node's status, as /v1/node/<id> and /v1/nodes say, until both say ready."""
        one = cl.request("GET", "alimesos02", f"/v1/node/{nid}")
        listed = {n["ID"]: n["Status"] for n in cl.get("alimesos02", "/v1/nodes")}
        if one.status_code == 200 and nid in listed:
            seen.append((one.json()["Status"], listed[nid], time.monotonic()))
        return bool(seen) and seen[-1][:2] == ("ready", "ready")

    try:
        wait_until(ready, timeout=15, interval=0.05, what=f"{name} ready in /v1/node/<id> and /v1/nodes")
        statuses = [s for s, _, _ in seen]
        assert statuses and statuses[0] == "initializing" and statuses[-1] == "ready", statuses
        assert statuses == sorted(statuses, key=lambda s: s == "ready"), "initializing, then ready, no way back"
        assert "initializing" in {stub for _, stub, _ in seen}
        first_ready = next(t for s, _, t in seen if s == "ready")
        assert first_ready - seen[0][2] <= 3.0
        node = cl.get("alimesos02", f"/v1/node/{nid}")
        assert [e["Message"] for e in node["Events"]] == ["Node registered"]
    finally:
        cl.stop(name)
        r = cl.request("PUT", "alimesos01", f"/v1/node/{nid}/purge", token=REMEDIATION)
        assert r.status_code == 200, r.text
    assert nid not in {n["ID"] for n in cl.get("alimesos01", "/v1/nodes")}


def test_rate_limit_flag_answers_429_beyond_the_rate(cluster: Cluster) -> None:
    """The lab fault rate-limit:nomad: a server with `rate-limit-nomad` (here 2 a second) answers what it
    may and 429 beyond, as Nomad's connection limiter words it; without the flag it serves again."""
    cl = cluster
    who, rate = "alimesos03", 2.0
    path, params = "/v1/status/leader", {"stale": ""}
    cl.flag(who, RATE_LIMIT_FLAG, f"{rate:g}\n")
    try:
        first = wait_for("the server to rate-limit", lambda: (r := cl.request(  # (r,): a 429 Response is falsy
            "GET", who, path, token=None, params=params)).status_code == 429 and (r,), 5, 0.05)[0]
        assert first.text == TOO_MANY_CONNS
        assert first.headers["Content-Type"] == "text/plain" and first.headers["Connection"].lower() == "close"
        time.sleep(1.2)  # the bucket is full again: a burst of max(1, rate)
        started = time.monotonic()
        statuses = [cl.request("GET", who, "/v1/nodes", params={"stale": ""}).status_code for _ in range(8)]
        refilled = math.ceil((time.monotonic() - started) * rate)
        assert statuses[:2] == [200, 200], statuses
        assert set(statuses) <= {200, 429} and statuses.count(429) >= 8 - 2 - refilled, statuses
        # the other servers, and a client (which forwards over the RPC port), are not limited
        for other in ("alimesos01", "alibuild01"):
            assert [cl.request("GET", other, "/v1/nodes").status_code for _ in range(5)] == [200] * 5
    finally:
        cl.unflag(who, RATE_LIMIT_FLAG)
    wait_for("the server to serve again", lambda: [cl.request(
        "GET", who, "/v1/nodes", params={"stale": ""}).status_code for _ in range(6)] == [200] * 6, 5)


def test_namespaces(cluster: Cluster) -> None:
    cl = cluster
    wait_for("the infra job placed", lambda: cl.get("alimesos01", "/v1/allocations", params={
        "namespace": "infra", "stale": ""}), 10)

    def ids(path: str, token: str = MANAGEMENT, **params: str) -> set[str]:
        return {x["JobID"] if "JobID" in x else x["ID"] for x in cl.get("alimesos02", path, token=token, params=params)}

    assert ids("/v1/jobs") == DEFAULT_JOBS  # namespace "default" when none is given
    assert ids("/v1/jobs", namespace="default") == DEFAULT_JOBS
    assert ids("/v1/jobs", namespace="infra") == {"infra-monitor"}
    assert ids("/v1/jobs", namespace="other") == set()
    assert ids("/v1/jobs", namespace="*") == DEFAULT_JOBS | {"infra-monitor"}
    assert "infra-monitor" not in ids("/v1/allocations")
    assert ids("/v1/allocations", namespace="infra") == {"infra-monitor"}
    assert ids("/v1/allocations", namespace="other") == set()
    assert "infra-monitor" in ids("/v1/allocations", namespace="*")
    assert cl.request("GET", "alimesos02", "/v1/job/infra-monitor").status_code == 404
    job = cl.get("alimesos02", "/v1/job/infra-monitor", params={"namespace": "infra"})
    assert job["Namespace"] == "infra"
    assert cl.request("GET", "alimesos02", "/v1/job/repo", params={"namespace": "infra"}).status_code == 404
    # ACLs per namespace: the read token covers "default" only, the infra token "infra" only.
    for path in ("/v1/jobs", "/v1/allocations", "/v1/job/infra-monitor"):
        assert cl.request("GET", "alimesos02", path, token=READ, params={"namespace": "infra"}).status_code == 403
        assert cl.request("GET", "alimesos02", path, token=INFRA).status_code == 403
    assert ids("/v1/jobs", token=READ, namespace="*") == DEFAULT_JOBS
    assert ids("/v1/jobs", token=INFRA, namespace="*") == {"infra-monitor"}
    assert ids("/v1/allocations", token=INFRA, namespace="infra") == {"infra-monitor"}
    node = next(a["NodeID"] for a in cl.get("alimesos02", "/v1/allocations", params={"namespace": "infra"}))
    assert {a["Namespace"] for a in cl.get("alimesos02", f"/v1/node/{node}/allocations", token=INFRA)} == {"infra"}
    assert "infra" not in {a["Namespace"] for a in cl.get("alimesos02", f"/v1/node/{node}/allocations", token=READ)}


def test_drain_with_deadline_moves_services_and_lets_batch_finish(cluster: Cluster) -> None:
    cl = cluster
    batch = cl.running("publish-alien")
    assert batch, "the batch allocation finished before the drain test: is the machine very slow?"
    node_name = batch[0]["NodeName"]
    node_id = cl.node_ids[node_name]
    other = next(n for n in CLIENTS if n != node_name)
    services_here = [a["ID"] for a in cl.running() if a["NodeID"] == node_id and a["JobType"] == "service"]

    resp = cl.request("POST", "alimesos02", f"/v1/node/{node_id}/drain", json={
        "DrainSpec": {"Deadline": 60_000_000_000, "IgnoreSystemJobs": True}, "Meta": {"message": "lab test"}})
    assert resp.status_code == 200, resp.text
    assert_same_shape(sample("node_drain")["body"], resp.json())

    node = wait_for("the drain to start", lambda: (n := cl.node(node_name))["Drain"] and n, 3)
    assert node["SchedulingEligibility"] == "ineligible"
    assert {"Deadline", "IgnoreSystemJobs", "ForceDeadline", "StartedAt"} <= set(node["DrainStrategy"])
    assert node["DrainStrategy"]["Deadline"] == 60_000_000_000
    assert node["LastDrain"]["Status"] == "draining"

    def services_moved() -> bool:
        allocs = {a["ID"]: a for a in cl.allocs()}
        stopped = all(allocs[i]["DesiredStatus"] == "stop" and allocs[i]["ClientStatus"] == "complete"
                      for i in services_here)
        running = [a for a in allocs.values() if a["ClientStatus"] == "running" and a["JobType"] == "service"]
        elsewhere = all(a["NodeName"] == other for a in running)
        counts = all(sum(a["JobID"] == j for a in running) == n for j, n in SERVICE_COUNTS.items())
        return stopped and elsewhere and counts

    wait_for("the service allocations to move", services_moved, 5)
    assert cl.running("publish-alien"), "the batch allocation must keep running until it ends"
    refused = cl.request("POST", "alimesos01", f"/v1/node/{node_id}/eligibility", json={"Eligibility": "eligible"})
    assert refused.status_code == 500 and "draining" in refused.text

    node = wait_for("the drain to complete", lambda: not (n := cl.node(node_name))["Drain"] and n, BATCH_RUN_S + 10)
    assert node["DrainStrategy"] is None
    assert node["SchedulingEligibility"] == "ineligible"
    assert node["LastDrain"]["Status"] == "complete"
    assert node["LastDrain"]["Meta"] == {"message": "lab test"}
    assert "Node drain complete" in [e["Message"] for e in node["Events"]]
    batch_allocs = cl.get("alimesos01", "/v1/job/publish-alien/allocations")
    assert [a["ClientStatus"] for a in batch_allocs] == ["complete"], "a finished batch job is not run again"
    job = wait_for("the batch job dead", lambda: (j := cl.get("alimesos01", "/v1/job/publish-alien"))[
        "Status"] == "dead" and j, 3)
    assert job["Type"] == "batch"

    resp = cl.request("PUT", "alimesos03", f"/v1/node/{node_id}/eligibility", json={"Eligibility": "eligible"})
    assert resp.status_code == 200, resp.text
    assert_same_shape(sample("node_eligibility")["body"], resp.json())
    wait_for("the node eligible", lambda: cl.node(node_name)["SchedulingEligibility"] == "eligible", 3)
    bad = cl.request("POST", "alimesos01", f"/v1/node/{node_id}/eligibility", json={"Eligibility": "maybe"})
    assert bad.status_code == 400


def test_python_nomad_unmodified(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    cl = cluster
    for var in ("NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_NAMESPACE", "NOMAD_REGION", "NOMAD_CACERT"):
        monkeypatch.delenv(var, raising=False)
    for host in (SERVERS["alimesos02"], CLIENTS["alibuild01"]):  # a server, and a client that forwards
        n = nomad.Nomad(host=host, port=4646, secure=True, verify=cl.ca, cert=cl.cert, token=cl.token, timeout=5)
        nodes = n.nodes.get_nodes()
        assert {x["Name"] for x in nodes} == set(CLIENTS)
        node_id = cl.node_ids["alimetal01"]
        assert n.node.get_node(node_id)["Name"] == "alimetal01"
        assert n.status.leader.get_leader() in {f"{ip}:4647" for ip in SERVERS.values()}
        assert len(n.operator.get_configuration()["Servers"]) == 3
        assert {j["ID"] for j in n.jobs.get_jobs()} == DEFAULT_JOBS
        assert n.allocations.get_allocations()

    n = nomad.Nomad(host=SERVERS["alimesos03"], port=4646, secure=True, verify=cl.ca, cert=cl.cert, token=cl.token,
                    timeout=5)
    node_id = cl.node_ids["alimetal01"]
    reply = n.node.drain_node_with_spec(node_id, {"Deadline": 30_000_000_000, "IgnoreSystemJobs": False})
    assert reply["NodeModifyIndex"] > 0
    wait_for("the node draining or drained", lambda: n.node.get_node(node_id)["LastDrain"], 3)
    n.node.drain_node_with_spec(node_id, None, mark_eligible=True)  # cancels the drain, if still on
    wait_for("the node eligible again", lambda: n.node.get_node(node_id)["SchedulingEligibility"] == "eligible", 3)
    n.node.eligible_node(node_id, ineligible=True)
    wait_for("ineligible", lambda: n.node.get_node(node_id)["SchedulingEligibility"] == "ineligible", 3)
    n.node.eligible_node(node_id, eligible=True)
    wait_for("eligible", lambda: n.node.get_node(node_id)["SchedulingEligibility"] == "eligible", 3)
    assert not n.node.get_node(node_id)["Drain"]

    wrong = nomad.Nomad(host=SERVERS["alimesos02"], port=4646, secure=True, verify=cl.ca, cert=cl.cert, token="nope",
                        timeout=5)
    with pytest.raises(nomad.api.exceptions.URLNotAuthorizedNomadException):
        wrong.nodes.get_nodes()


def test_clients_sync_to_consul(cluster: Cluster) -> None:
    cl = cluster
    fake = cl.fake_consul
    if fake is None:
        pytest.skip(f"{SERVERS['alimesos01']}:8500 is taken: cannot stand in for Consul")

    def synced() -> bool:
        services = fake.snapshot()
        clients = {f"_nomad-client-{cl.node_ids[n][:8]}" for n in CLIENTS}
        tasks = {s for s in services if s.startswith("_nomad-task-")}
        everywhere = cl.get("alimesos01", "/v1/allocations", params={"namespace": "*", "stale": ""})
        expected = {f"_nomad-task-{a['ID']}" for a in everywhere
                    if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"}
        return clients <= set(services) and tasks == expected

    wait_for("Consul to hold the clients and exactly the running allocations", synced, 13)
    services = fake.snapshot()
    reg = services[f"_nomad-client-{cl.node_ids['alibuild01'][:8]}"]
    assert reg["Node"] == "alibuild01" and reg["Address"] == CLIENTS["alibuild01"] and reg["Datacenter"] == "cern"
    assert reg["Service"] == {"ID": f"_nomad-client-{cl.node_ids['alibuild01'][:8]}", "Service": "nomad-client",
                              "Port": 4646, "Tags": ["http"]}
    assert reg["Check"]["Status"] == "passing" and reg["Check"]["CheckID"] == "nomad-client-health"
    task = next(v for k, v in services.items() if k.startswith("_nomad-task-"))
    assert task["Service"]["Service"] in SERVICE_COUNTS and task["Service"]["Port"] >= 8000
    assert task["Check"]["Status"] == "passing" and task["Check"]["ServiceID"] == task["Service"]["ID"]
    assert fake.tokens == {cl.consul_token}


def test_acl_and_tls(cluster: Cluster) -> None:
    cl = cluster
    for who in ("alimesos01", "alibuild01"):
        assert cl.request("GET", who, "/v1/nodes", token=None).status_code == 403
        assert cl.request("GET", who, "/v1/nodes", token=None).text.strip() == "Permission denied"
        assert cl.request("GET", who, "/v1/nodes", token="not-the-token").status_code == 403
        assert cl.request("GET", who, "/v1/jobs", token=None,
                          headers={"Authorization": f"Bearer {cl.token}"}).status_code == 200
        assert cl.request("GET", who, "/v1/status/leader", token=None).status_code == 200
        assert cl.request("GET", who, "/v1/agent/health", token=None).status_code == 200
        assert cl.request("POST", who, f"/v1/node/{cl.node_ids['alibuild01']}/eligibility", token=None,
                          json={"Eligibility": "ineligible"}).status_code == 403
    with pytest.raises(requests.exceptions.ConnectionError):  # SSLError is a ConnectionError
        requests.get(cl.url("alimesos01", "/v1/status/leader"), verify=cl.ca, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://{SERVERS['alimesos01']}:4647/internal/state", verify=cl.ca, timeout=5)


def test_failed_allocation_is_rescheduled_elsewhere(cluster: Cluster) -> None:
    """The fault `fail-allocation`: the client reports its CI allocations failed; the job's reschedule
    policy (here 1 s, unlimited) replaces them on another node, with a reschedule tracker."""
    cl = cluster
    wait_for("the jobs placed", cl.placed, 10)
    target = cl.running("ci-mesosci-slc9")[0]
    node = target["NodeName"]
    other = next(n for n in CLIENTS if n != node)
    cl.flag(node, FAIL_FLAG)
    failed = wait_for("the allocation failed", lambda: (a := cl.alloc(target["ID"]))["ClientStatus"] == "failed"
                      and a, 8)
    task = failed["TaskStates"]["ci"]
    assert task["Failed"] is True and task["State"] == "dead"
    assert [e["Type"] for e in task["Events"]][-2:] == ["Terminated", "Not Restarting"]
    assert failed["ClientDescription"] == "Failed tasks"
    wait_for("the flag consumed", lambda: not (cl.fault_dir(node) / FAIL_FLAG).exists(), 5)
    failed = wait_for("the allocation rescheduled", lambda: (a := cl.alloc(target["ID"]))["NextAllocation"] and a, 10)
    assert (failed["DesiredStatus"], failed["DesiredDescription"]) == ("stop", ALLOC_RESCHEDULED)
    replacement = cl.alloc(failed["NextAllocation"])
    assert replacement["PreviousAllocation"] == target["ID"]
    assert replacement["NodeName"] == other, "a reschedule avoids the node where the allocation failed"
    event = replacement["RescheduleTracker"]["Events"][-1]
    assert (event["PrevAllocID"], event["PrevNodeID"]) == (target["ID"], cl.node_ids[node])
    assert event["Delay"] == 1_000_000_000
    assert replacement["ClientStatus"] == "running"
    assert cl.get("alimesos01", "/v1/job/ci-mesosci-slc9/summary")["Summary"]["ci"]["Failed"] >= 1
    wait_for("the jobs placed again", cl.placed, 10)


def test_allocation_with_no_reschedule_attempt_left_stays_failed(cluster: Cluster) -> None:
    """The fault `exhaust-reschedule`: a job whose allocations fail on every node uses up its one
    attempt an hour; its last allocation stays failed with no replacement and the job is dead. An
    operator's `nomad job eval -force-reschedule` brings it back, `nomad system gc` clears the failures."""
    cl = cluster
    job = EXHAUSTIBLE_JOB
    wait_for(f"{job} running", lambda: cl.running(job), 10)
    for name in CLIENTS:
        cl.flag(name, FAIL_FLAG, f"job:{job}")
    try:
        def exhausted() -> list[dict[str, Any]]:
            allocs = cl.get("alimesos02", f"/v1/job/{job}/allocations", params={"stale": ""})
            final = [a for a in allocs if a["ClientStatus"] == "failed" and a["DesiredStatus"] == "run"
                     and not a["NextAllocation"]]
            busy = [a for a in allocs if a["ClientStatus"] in ("pending", "running")]
            return final if final and not busy else []

        final = wait_for("the reschedule attempts used up", exhausted, 30)[0]
        events = cl.alloc(final["ID"])["RescheduleTracker"]["Events"]
        assert len(events) == 1, "one attempt an hour: the failed replacement is not replaced again"
        time.sleep(2)  # past its reschedule delay: still no replacement
        assert cl.get("alimesos02", f"/v1/allocation/{final['ID']}")["NextAllocation"] == ""
        assert cl.get("alimesos02", f"/v1/job/{job}")["Status"] == "dead"
        summary = cl.get("alimesos02", f"/v1/job/{job}/summary")["Summary"]["ci"]
        assert (summary["Running"], summary["Queued"]) == (0, 0) and summary["Failed"] >= 1
    finally:
        for name in CLIENTS:
            cl.unflag(name, FAIL_FLAG)
    body = {"JobID": job, "EvalOptions": {"ForceReschedule": True}}
    assert cl.request("POST", "alimesos01", f"/v1/job/{job}/evaluate", token=READ, json=body).status_code == 403
    r = cl.request("POST", "alimesos01", f"/v1/job/{job}/evaluate", token=REMEDIATION, json=body)
    assert r.status_code == 200, r.text
    assert set(r.json()) >= {"EvalID", "EvalCreateIndex", "JobModifyIndex"}
    wait_for(f"{job} running again", lambda: cl.running(job), 10)
    assert cl.request("PUT", "alimesos01", "/v1/system/gc", token=READ).status_code == 403
    assert cl.request("PUT", "alimesos01", "/v1/system/gc", token=REMEDIATION).status_code == 200
    wait_for("the failed allocations collected", lambda: not [
        a for a in cl.get("alimesos02", f"/v1/job/{job}/allocations", params={"stale": ""})
        if a["ClientStatus"] == "failed"], 5)


def test_disconnected_client_keeps_allocations_unknown_until_it_reconnects(cluster: Cluster) -> None:
    """The fault `disconnect-agent`: the client stops heartbeating while its node is up. Its node is
    `disconnected` (not down) because an allocation's group has a disconnect block: that one is `unknown`
    and replaced elsewhere, the others are lost; when the client is back, the unknown allocation runs on
    and its replacement is stopped."""
    cl = cluster
    wait_for("the jobs placed", cl.placed, 10)
    kept = cl.running(DISCONNECT_JOB)[0]
    node = kept["NodeName"]
    other = next(n for n in CLIENTS if n != node)
    lost = [a["ID"] for a in cl.running() if a["NodeName"] == node and a["JobID"] != DISCONNECT_JOB]
    cl.flag(node, DISCONNECT_FLAG)
    try:
        wait_for(f"{node} disconnected", lambda: cl.node(node)["Status"] == "disconnected", 12)
        assert cl.node(other)["Status"] == "ready"
        assert "Node heartbeat missed" in [e["Message"] for e in cl.node(node)["Events"]]
        unknown = cl.alloc(kept["ID"])
        assert (unknown["ClientStatus"], unknown["DesiredStatus"]) == ("unknown", "run")
        assert unknown["ClientDescription"] == ALLOC_UNKNOWN
        assert all(cl.alloc(i)["ClientStatus"] == "lost" for i in lost)
        replacement = wait_for("a replacement on the other node", lambda: next(
            (a for a in cl.allocs() if a["PreviousAllocation"] == kept["ID"] and a["ClientStatus"] == "running"),
            None), 5)
        assert replacement["NodeName"] == other
        assert cl.get("alimesos01", f"/v1/job/{DISCONNECT_JOB}/summary")["Summary"]["ci"]["Unknown"] == 1
        assert cl.get("alimesos01", f"/v1/job/{DISCONNECT_JOB}")["Status"] == "running"
        # The node itself is up: its client answers, and says it lost its servers.
        wait_for("the client unhealthy", lambda: cl.request("GET", node, "/v1/agent/health", token=None)
                 .status_code == 500, 10)
    finally:
        cl.unflag(node, DISCONNECT_FLAG)
    wait_for(f"{node} ready again", lambda: cl.node(node)["Status"] == "ready", 8)
    back = cl.alloc(kept["ID"])
    assert (back["ClientStatus"], back["DesiredStatus"]) == ("running", "run")
    stopped = cl.alloc(replacement["ID"])
    assert (stopped["DesiredStatus"], stopped["DesiredDescription"]) == ("stop", ALLOC_RECONNECTED)
    wait_for("the jobs placed again", cl.placed, 10)


def test_stopped_client_goes_down_and_its_allocations_are_replaced(cluster: Cluster) -> None:
    cl = cluster
    wait_for("the jobs placed", cl.placed, 10)
    running = cl.running()
    # The client whose allocations have no disconnect block goes down; the other would be disconnected.
    hosts_disconnectable = {a["NodeName"] for a in running if a["JobID"] == DISCONNECT_JOB}
    victim = max(CLIENTS, key=lambda n: (n not in hosts_disconnectable, sum(a["NodeName"] == n for a in running)))
    assert victim not in hosts_disconnectable
    survivor = next(n for n in CLIENTS if n != victim)
    lost = [a["ID"] for a in running if a["NodeName"] == victim]
    assert lost, f"nothing runs on {victim}"

    assert cl.stop(victim) < 1.0, "SIGTERM must end the client within a second"
    started = time.monotonic()
    wait_for(f"{victim} down", lambda: cl.node(victim)["Status"] == "down", 10)
    assert time.monotonic() - started <= 8.5
    assert cl.node(survivor)["Status"] == "ready"

    def replaced() -> bool:
        allocs = {a["ID"]: a for a in cl.allocs()}
        was_lost = all(allocs[i]["ClientStatus"] == "lost" for i in lost)
        return was_lost and cl.placed() and all(a["NodeName"] == survivor for a in cl.running())

    wait_for("the lost allocations replaced on the other client", replaced, 3)
    replacement = next(a for a in cl.allocs() if a["PreviousAllocation"] in lost)
    assert replacement["NodeName"] == survivor
    leader = cl.agreed_leader(list(SERVERS)).replace(":4647", "")
    text = cl.request("GET", leader, "/v1/metrics", params={"format": "prometheus"}).text
    assert 'nomad_nomad_heartbeat_active{host="' in text and "} 1\n" in text

    cl.start(victim)
    wait_for(f"{victim} ready again", lambda: cl.node(victim)["Status"] == "ready", 6)
    assert "Node heartbeat missed" in [e["Message"] for e in cl.node(victim)["Events"]]


def test_dead_server_cleanup_leaderless_hold_rejoin_and_transfer(cluster: Cluster) -> None:
    cl = cluster
    by_addr = {f"{ip}:4647": name for name, ip in SERVERS.items()}
    first = by_addr[cl.agreed_leader(list(SERVERS))]

    assert cl.stop(first) < 1.0, "SIGTERM must end a server within a second"
    rest = [n for n in SERVERS if n != first]
    first_addr = f"{SERVERS[first]}:4647"
    second = by_addr[wait_for("a new leader among the other two",
                              lambda: (a := cl.agreed_leader(rest)) != first_addr and a, 10)]
    assert cl.members(second)[second] == "alive"
    # Autopilot (cleanup_dead_servers): the dead server is failed, then removed from the raft configuration
    # at the next reconcile (every 2 s here, 10 s by default) and its serf status is `left`.
    wait_for(f"{first} left", lambda: cl.members(second)[first] == "left", 15)
    raft = cl.get(second, "/v1/operator/raft/configuration")
    assert sorted(s["Node"] for s in raft["Servers"]) == sorted(f"{n}.global" for n in rest)
    assert sorted(cl.get(second, "/v1/status/peers", token=None)) == sorted(f"{SERVERS[n]}:4647" for n in rest)
    health = cl.get(second, "/v1/operator/autopilot/health", token=READ)
    assert len(health["Servers"]) == 2 and health["FailureTolerance"] == 0 and health["Healthy"] is True

    # Without a quorum, no leader: a request that needs one is held for 5 s (RPCHoldTimeout) and then fails;
    # ?stale reads answer at once from the server's own state.
    cl.stop(second)
    last = next(n for n in rest if n != second)
    wait_for("no leader without a quorum", lambda: cl.leader_of(last) == "", 10)
    node_id = cl.node_ids["alibuild01"]
    held: dict[str, tuple[str, str, dict[str, str] | None, str]] = {
        "nodes": ("GET", "/v1/nodes", None, ""),
        "leader": ("GET", "/v1/status/leader", None, ""),
        "health": ("GET", "/v1/agent/health", None, ""),
        "autopilot": ("GET", "/v1/operator/autopilot/health", {"stale": ""}, ""),  # never stale: the leader's
        "write": ("POST", f"/v1/node/{node_id}/eligibility", None, ""),
        # an RPC forwards to the leader before it looks at the token: the refusal waits for one too
        "unknown-token": ("GET", "/v1/nodes", None, str(uuid.uuid4())),
        "lacking-right": ("GET", "/v1/operator/raft/configuration", None, READ),
        "token-self": ("GET", "/v1/acl/token/self", None, READ),
    }

    def timed(method: str, path: str, params: dict[str, str] | None, token: str) -> tuple[float, requests.Response]:
        t0 = time.monotonic()
        r = cl.request(method, last, path, token=token, params=params, json={"Eligibility": "eligible"})
        return time.monotonic() - t0, r

    with ThreadPoolExecutor(max_workers=len(held)) as pool:
        futures = {k: pool.submit(timed, *v) for k, v in held.items()}
        results = {k: f.result() for k, f in futures.items()}
    for what, (took, r) in results.items():
        assert 4.5 <= took <= 10, (what, took)
        assert r.status_code == 500, (what, r.text)
    for what in ("nodes", "leader", "autopilot", "write", "unknown-token", "lacking-right", "token-self"):
        assert results[what][1].text.strip() == "No cluster leader", what
    health_body = results["health"][1].json()
    assert_same_shape(sample("agent_health_500_unhealthy")["body"], health_body)
    assert health_body["server"] == {"ok": False, "message": "No cluster leader"}
    t0 = time.monotonic()
    stale = cl.request("GET", last, "/v1/nodes", params={"stale": "true"})
    assert stale.status_code == 200 and len(stale.json()) == 2
    assert stale.headers["X-Nomad-KnownLeader"] == "false"
    assert cl.request("GET", last, "/v1/status/leader", params={"stale": ""}).json() == ""
    quick = cl.request("GET", last, "/v1/agent/health", token=None, params={"stale": ""})
    assert quick.status_code == 500 and quick.json()["server"]["message"] == "no leader"
    unknown = cl.request("GET", last, "/v1/nodes", token=str(uuid.uuid4()), params={"stale": ""})
    assert (unknown.status_code, unknown.text) == (403, "Permission denied")
    assert cl.request("GET", last, "/v1/acl/token/self", token=READ, params={"stale": ""}).status_code == 200
    members = cl.request("GET", last, "/v1/agent/members", token=str(uuid.uuid4()))  # Status.Members: no forward
    assert (members.status_code, members.text) == (403, "Permission denied")
    assert time.monotonic() - t0 < 3, "stale reads are not held"

    # A voter comes back: a leader again; then the removed server rejoins, as a non-voter promoted once stable.
    cl.start(second)
    wait_for("a leader again with two servers", lambda: cl.agreed_leader([second, last]), 15)
    cl.start(first)
    leader = by_addr[wait_for("all three agree", lambda: cl.agreed_leader(list(SERVERS)), 15)]
    wait_for(f"{first} alive again", lambda: cl.members(leader)[first] == "alive", 10)
    wait_for(f"{first} back in the raft configuration", lambda: f"{first}.global" in {
        s["Node"] for s in cl.get(leader, "/v1/operator/raft/configuration")["Servers"]}, 10)
    health = wait_for("three healthy voters", lambda: (h := cl.request(
        "GET", leader, "/v1/operator/autopilot/health", token=READ)).status_code == 200 and len(
        h.json()["Voters"]) == 3 and h.json(), 15)
    assert health["FailureTolerance"] == 1
    # The state survived: the jobs and nodes are still known, nothing was marked down meanwhile.
    nodes = cl.get(leader, "/v1/nodes")
    assert sorted(n["Status"] for n in nodes) == ["ready", "ready"]
    wait_for("the jobs placed", cl.placed, 5)

    target = next(n for n in SERVERS if n != leader)
    follower = next(n for n in SERVERS if n not in (leader, target))
    resp = cl.request("PUT", follower, "/v1/operator/raft/transfer-leadership", params={"id": cl.ids[target]})
    assert resp.status_code == 200, resp.text
    assert_same_shape({"From": {"Address": "", "ID": ""}, "To": {"Address": "", "ID": ""}, "Noop": False},
                      resp.json())
    assert resp.json()["To"]["ID"] == cl.ids[target]
    wait_for(f"{target} leading", lambda: cl.agreed_leader(list(SERVERS)) == f"{SERVERS[target]}:4647", 5)

    resp = cl.request("POST", target, "/v1/operator/raft/transfer-leadership",
                      params={"address": f"{SERVERS[leader]}:4647"})
    assert resp.status_code == 200, resp.text
    wait_for(f"{leader} leading again", lambda: cl.agreed_leader(list(SERVERS)) == f"{SERVERS[leader]}:4647", 5)

    assert cl.request("PUT", leader, "/v1/operator/raft/transfer-leadership",
                      params={"id": str(uuid.uuid4())}).status_code == 400
    assert cl.request("PUT", leader, "/v1/operator/raft/transfer-leadership").status_code == 400
    raft = cl.get(follower, "/v1/operator/raft/configuration")
    assert [s["Node"] for s in raft["Servers"] if s["Leader"]] == [f"{leader}.global"]


def test_disconnect_window_closes_then_the_node_is_down() -> None:
    """The scheduler's rules alone (no processes): past the group's LostAfter, an unknown allocation is lost
    and, with none left unknown, the disconnected node is down."""
    spec = job_spec({"ID": "ci-x", "Count": 1, "Disconnect": {"LostAfter": "30s"}}, "cern")
    cl = Rules(empty_state(), [spec], "global")
    nid = str(uuid.uuid4())
    node, _ = cl.upsert_node({"ID": nid, "Name": "alibuild01", "Datacenter": "cern", "NodeClass": "",
                              "NodePool": "default", "HTTPAddr": "", "Meta": {}, "Drivers": {}, "Attributes": {}})
    cl.heartbeat(node)  # its first heartbeat: ready
    heartbeats = {nid: time.monotonic()}
    cl.reconcile(heartbeats)
    alloc = next(iter(cl.state["allocs"].values()))
    assert (alloc["NodeID"], alloc["ClientStatus"]) == (nid, "running")
    heartbeats[nid] -= 60  # missed heartbeats
    cl.reconcile(heartbeats)
    assert cl.state["nodes"][nid]["Status"] == "disconnected"
    assert (alloc["ClientStatus"], alloc["DesiredStatus"]) == ("unknown", "run")
    cl.reconcile(heartbeats)
    assert cl.state["nodes"][nid]["Status"] == "disconnected", "within its window the node stays disconnected"
    alloc["UnknownSince"] -= 31 * 10**9  # the window has passed
    cl.reconcile(heartbeats)
    assert (alloc["ClientStatus"], alloc["DesiredStatus"], alloc["DesiredDescription"]) == (
        "lost", "stop", "alloc is lost since its node is down")
    assert cl.state["nodes"][nid]["Status"] == "down"
    assert [e["Message"] for e in cl.state["nodes"][nid]["Events"]][-1] == "Node heartbeat missed"


def test_initializing_node_gets_nothing_until_ready() -> None:
    """The rules alone: a registered node is `initializing` and nothing is placed on it; its first heartbeat
    makes it ready (no event) and the job is placed; a disconnected node that heartbeats again is
    `initializing` (its allocations run on) until its next heartbeat (nomad/node_endpoint.go UpdateStatus)."""
    spec = job_spec({"ID": "ci-x", "Count": 1, "Disconnect": {"LostAfter": "30s"}}, "cern")
    cl = Rules(empty_state(), [spec], "global")
    nid = str(uuid.uuid4())
    node, _ = cl.upsert_node({"ID": nid, "Name": "alibuild01", "Datacenter": "cern", "NodeClass": "",
                              "NodePool": "default", "HTTPAddr": "", "Meta": {}, "Drivers": {}, "Attributes": {}})
    assert node["Status"] == "initializing"
    heartbeats = {nid: time.monotonic()}
    cl.reconcile(heartbeats)
    assert not cl.state["allocs"], "nothing is placed on an initializing node"
    cl.heartbeat(node)
    assert node["Status"] == "ready"
    assert [e["Message"] for e in node["Events"]] == ["Node registered"]
    cl.reconcile(heartbeats)
    alloc = next(iter(cl.state["allocs"].values()))
    assert (alloc["NodeID"], alloc["ClientStatus"]) == (nid, "running")
    heartbeats[nid] -= 60
    cl.reconcile(heartbeats)
    assert (node["Status"], alloc["ClientStatus"]) == ("disconnected", "unknown")
    cl.heartbeat(node)
    assert (node["Status"], alloc["ClientStatus"]) == ("initializing", "running")
    cl.heartbeat(node)
    assert node["Status"] == "ready"
    # an initializing node that stops heartbeating is given up like a ready one
    other, _ = cl.upsert_node({"ID": str(uuid.uuid4()), "Name": "alibuild02", "Datacenter": "cern", "NodeClass": "",
                               "NodePool": "default", "HTTPAddr": "", "Meta": {}, "Drivers": {}, "Attributes": {}})
    heartbeats[nid] = time.monotonic()
    heartbeats[other["ID"]] = time.monotonic() - 60
    cl.reconcile(heartbeats)
    assert other["Status"] == "down"


def test_rate_limit_token_bucket(tmp_path: Path) -> None:
    """RateLimit alone, on a clock of its own: the flag's rate (a float; empty or unreadable: 1), a burst of
    max(1, rate), re-read at most once a second; beyond 100 429s at once (10 a second), no answer."""
    now = [1000.0]
    flag = tmp_path / RATE_LIMIT_FLAG
    limit = RateLimit(str(flag), clock=lambda: now[0])
    assert [limit.admit() for _ in range(50)] == ["ok"] * 50  # no flag: no limit
    assert [RateLimit.parse(t) for t in ("2", " 0.5\n", "", "fast", "0", "-3", "nan", "inf")] == [
        2.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    flag.write_text("2.5")
    assert limit.admit() == "ok", "the flag is looked at again only a second later"
    now[0] += 1.0
    assert [limit.admit() for _ in range(4)] == ["ok", "ok", "429", "429"]  # burst 2.5: two whole tokens
    now[0] += 0.4  # +1 token
    assert [limit.admit() for _ in range(2)] == ["ok", "429"]
    flag.write_text("0.5 ")  # burst max(1, 0.5)
    now[0] += 1.0
    assert [limit.admit() for _ in range(2)] == ["ok", "429"]
    now[0] += 1.0
    assert limit.admit() == "429"  # half a token
    now[0] += 1.0
    assert limit.admit() == "ok"
    answers = [limit.admit() for _ in range(200)]
    assert answers.count("429") + answers.count("drop") == 200 and answers.count("429") <= 100
    assert answers[-1] == "drop", "Nomad writes at most 10 429s a second (a burst of 100), then just closes"
    flag.unlink()
    now[0] += 1.0
    assert [limit.admit() for _ in range(20)] == ["ok"] * 20
