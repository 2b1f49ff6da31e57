"""Support of the API tests (no test here): real local HTTP servers that answer as the cluster APIs do (from
the documented samples, tests/reference/api), one per master address (127.0.0.1-3, one port), whose answers a
test can replace per path: a status, a body, headers, a hold before answering, one byte per second.

Independent of tests/unit/conftest.py (these tests run with or without it).
"""

from __future__ import annotations

import copy
import dataclasses
import http.server
import json
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from acceptance import apiregistry
from acceptance.apiregistry import Cluster
from acceptance.clients import consul_api
from acceptance.clients.consul_api import ConsulSnapshot, DnsAnswer
from acceptance.clients.errors import ApiError
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.clients.prometheus_api import PrometheusSnapshot
from acceptance.clients.vault_api import VaultSnapshot
from acceptance.inventory import Apis, Endpoint, Expectations, Inventory, Maintenance, Node, SshSettings
from tests.reference import API

MASTERS = ("alimesos01", "alimesos02", "alimesos03")
MASTER_IPS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
AGENTS = (("alibuild01", "vm", "127.0.1.1"), ("alibuild02", "vm", "127.0.1.2"), ("alimetal01", "metal", "127.0.1.3"))
CI_JOBS = ("ci-mesosci-slc9", "repo")
SECRET = "s3cr3t-token-value-0123"
CLOUD_PASSWORD = "Keyst0ne-Pa55word-42"
CLOUD_PROJECT = "ALICE Release Testing"


def sample(name: str) -> Any:
    return copy.deepcopy(json.loads((API / f"{name}.json").read_text())["body"])


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0  # sleep before answering
    drip_s: float = 0.0  # seconds between two bytes of the body
    chunked_mib: int = 0  # stream this many MiB (chunked, no Content-Length) instead of the body

    @classmethod
    def json(cls, data: Any, status: int = 200, **kw: Any) -> Reply:
        return cls(status, json.dumps(data).encode(), {"Content-Type": "application/json", **kw.pop("headers", {})},
                   **kw)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})


Route = Reply | Callable[[str, Mapping[str, list[str]], Mapping[str, str]], Reply]


class FakeServer:
    """One address of one API: routes by path (query ignored unless the route is a function)."""

    def __init__(self, host: str, port: int, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent = 0  # bytes of bodies written
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.path, headers))
                route = server.routes.get(parts.path)
                if route is None:
                    prefix = next((p for p in server.routes if p.endswith("/") and parts.path.startswith(p)), None)
                    route = server.routes.get(prefix) if prefix else None
                if route is None:
                    reply = Reply(404, b"not found")
                elif isinstance(route, Reply):
                    reply = route
                else:
                    reply = route(parts.path, parse_qs(parts.query), headers)
                with suppress(BrokenPipeError, ConnectionResetError, OSError):
                    self._answer(reply)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.headers["X-Test-Body"] = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                self.do_GET()

            def _answer(self, reply: Reply) -> None:
                if reply.hold_s:
                    time.sleep(reply.hold_s)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                if self.path.startswith(("/v1/health/", "/v1/catalog/", "/v1/kv/")):
                    self.send_header("X-Consul-Index", "7")  # as Consul's blocking endpoints answer
                if reply.chunked_mib:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * 65536
                    for _ in range(reply.chunked_mib * 16):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        server.sent += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.drip_s:
                    for i in range(len(reply.body)):
                        self.wfile.write(reply.body[i:i + 1])
                        self.wfile.flush()
                        server.sent += 1
                        time.sleep(reply.drip_s)
                else:
                    self.wfile.write(reply.body)
                    server.sent += len(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeApi:
    """One API on the three master addresses (same port): ``routes`` shared, ``per_master`` overrides."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        first = FakeServer(MASTER_IPS[0], 0, dict(routes))
        self.servers = [first] + [FakeServer(ip, first.port, dict(routes)) for ip in MASTER_IPS[1:]]

    @property
    def port(self) -> int:
        return self.servers[0].port

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{MASTER_IPS[0]}:{self.port}"

    def set(self, path: str, route: Route, master: int | None = None) -> None:
        for i, s in enumerate(self.servers):
            if master is None or i == master:
                s.routes[path] = route

    def set_all(self, route_of: Callable[[str, Route], Route]) -> None:
        for s in self.servers:
            for path in list(s.routes):
                s.routes[path] = route_of(path, s.routes[path])

    def requests(self) -> list[tuple[str, dict[str, str]]]:
        return [r for s in self.servers for r in s.requests]

    def close(self) -> None:
        for s in self.servers:
            s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- healthy answers


def nomad_routes() -> dict[str, Route]:
    autopilot = sample("nomad/operator_autopilot_health")
    base = autopilot["Servers"][0]
    autopilot["Servers"] = [dict(base, Name=f"{m}.global", Address=f"{ip}:4647", Leader=i == 0, Voter=True,
                                 Healthy=True, Version="1.9.7") for i, (m, ip) in enumerate(zip(MASTERS, MASTER_IPS,
                                                                                                   strict=True))]
    autopilot["FailureTolerance"] = 1
    node = sample("nomad/nodes_list")[0]
    nodes = [dict(node, ID=f"id-{name}", Name=name, Address=ip, Status="ready", Drain=False,
                  SchedulingEligibility="eligible") for name, _, ip in AGENTS]
    job = sample("nomad/jobs_list")[0]
    placed = {group: dict(counts, Queued=0) for group, counts in job["JobSummary"]["Summary"].items()}
    jobs = [dict(job, ID=j, Name=j, Status="running", JobSummary=dict(job["JobSummary"], Summary=placed))
            for j in CI_JOBS]
    alloc = sample("nomad/allocations_list")[0]
    allocs = [dict(alloc, JobID=j, ClientStatus="running", DesiredStatus="run", NodeName="alibuild01")
              for j in CI_JOBS]
    return {
        "/v1/status/leader": Reply.json(f"{MASTER_IPS[0]}:4647"),
        "/v1/status/peers": Reply.json([f"{ip}:4647" for ip in MASTER_IPS]),
        "/v1/operator/autopilot/health": Reply.json(autopilot),
        "/v1/nodes": Reply.json(nodes),
        "/v1/jobs": Reply.json(jobs),
        "/v1/allocations": Reply.json(allocs),
        "/v1/acl/token/self": Reply.json(sample("nomad/acl_token_self")),
    }


def consul_routes() -> dict[str, Route]:
    autopilot = sample("consul/operator_autopilot_health")
    base = autopilot["Servers"][0]
    autopilot["Servers"] = [dict(base, Name=m, Address=f"{ip}:8300", Leader=i == 0, Voter=True, Healthy=True)
                            for i, (m, ip) in enumerate(zip(MASTERS, MASTER_IPS, strict=True))]
    autopilot["FailureTolerance"] = 1
    member = sample("consul/agent_members")[0]
    members = [dict(member, Name=m, Addr=ip, Status=1) for m, ip in zip(MASTERS, MASTER_IPS, strict=True)]
    members += [dict(member, Name=name, Addr=ip, Status=1, Tags=dict(member["Tags"], role="node"))
                for name, _, ip in AGENTS]
    service = sample("consul/health_service")[0]
    service["Service"]["ID"] = "_nomad-task-5457f16d-repo"
    return {
        "/v1/status/leader": Reply.json(f"{MASTER_IPS[0]}:8300"),
        "/v1/status/peers": Reply.json([f"{ip}:8300" for ip in MASTER_IPS]),
        "/v1/operator/autopilot/health": Reply.json(autopilot),
        "/v1/agent/members": Reply.json(members),
        "/v1/health/state/critical": Reply.json([]),
        "/v1/catalog/services": Reply.json({"consul": [], "repo": ["primary"]}),
        "/v1/health/service/repo": Reply.json([service]),
        "/v1/acl/token/self": Reply.json(sample("consul/acl_token_self")),
    }


def vault_routes(active: int = 0) -> list[dict[str, Route]]:
    """Per master (the active one first by default): health and leader; ha-status on every one."""
    out = []
    ha = sample("openbao/sys_ha_status")
    for i, node in enumerate(ha["Nodes"]):
        node.update(hostname=MASTERS[i], active_node=i == active)
    for i in range(3):
        name = "sys_health_200_active" if i == active else "sys_health_429_standby"
        status = 200 if i == active else 429
        leader = sample("openbao/sys_leader_ha_raft")
        leader["leader_address"] = f"https://{MASTER_IPS[active]}:8200/"
        out.append({"/v1/sys/health": Reply.json(sample(f"openbao/{name}"), status),
                    "/v1/sys/leader": Reply.json(leader), "/v1/sys/ha-status": Reply.json(ha)})
    return out


def vector(value: float | str, **labels: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": labels, "value": [1435781451.781, str(value)]}]}}


def prometheus_routes() -> dict[str, Route]:
    targets = sample("prometheus/targets")
    base = targets["data"]["activeTargets"][0]
    active = [dict(base, labels={"job": job, "instance": f"{MASTER_IPS[0]}:1"}, health="up", lastError="")
              for job in ("nomad", "consul", "vault")]
    active += [dict(base, labels={"job": "node", "instance": f"{n}:9100", "node": n}, health="up", lastError="")
               for n in [*MASTERS, *(a[0] for a in AGENTS)]]
    targets["data"]["activeTargets"] = active
    q = {"remote_name": "monit", "url": "https://monit.example/api/v1/write"}

    def query(path: str, params: Mapping[str, list[str]], headers: Mapping[str, str]) -> Reply:
        promql = params.get("query", [""])[0]
        if "failed" in promql or "retried" in promql:
            return Reply.json(vector(0, **q))
        if "highest_sent" in promql:
            return Reply.json(vector(995, **q))
        return Reply.json(vector(1000))

    return {"/-/healthy": Reply.text(sample("prometheus/healthy")), "/-/ready": Reply.text(sample("prometheus/ready")),
            "/api/v1/targets": Reply.json(targets), "/api/v1/query": query}


# --------------------------------------------------------------------------- inventory and cluster


def inventory(apis: Apis, *, maintenance: tuple[Maintenance, ...] = (), expect: Expectations | None = None,
              path: Path = Path("/nonexistent/inventory.yaml")) -> Inventory:
    masters = tuple(Node(m, "master", address=ip) for m, ip in zip(MASTERS, MASTER_IPS, strict=True))
    agents = tuple(Node(name, "agent", address=ip, kind=kind) for name, kind, ip in AGENTS)  # type: ignore[arg-type]
    return Inventory(path=path, cluster="test", ssh=SshSettings(), apis=apis, nodes=masters + agents,
                     expect=expect or Expectations(ci_jobs=CI_JOBS), maintenance=maintenance)


def apis(**kw: Any) -> Apis:
    """Apis with short timeouts for tests; ``nomad=url`` etc."""
    fields = {f.name for f in dataclasses.fields(Apis)}
    values: dict[str, Any] = {"timeout_s": 5.0, "retry_s": 2.0}
    for k, v in kw.items():
        if k in ("nomad", "consul", "vault", "prometheus") and isinstance(v, str):
            values[k] = Endpoint(v)
        elif k in fields:
            values[k] = v
    return Apis(**values)


def cluster(inv: Inventory) -> Cluster:
    return Cluster(inv, inv.nodes)


@dataclass
class Fakes:
    nomad: FakeApi
    consul: FakeApi
    vault: FakeApi
    prometheus: FakeApi

    def all(self) -> dict[str, FakeApi]:
        return {"nomad": self.nomad, "consul": self.consul, "vault": self.vault, "prometheus": self.prometheus}


def answer_every_name(monkeypatch: Any) -> None:
    """Consul DNS answers every name with 127.0.0.1 (no DNS server in unit tests)."""

    def resolve(names: Any, server: Any, timeout_s: float = 4.0, deadline: Any = None) -> dict[str, DnsAnswer]:
        return {n: DnsAnswer(n, ("127.0.0.1",)) for n in names}

    monkeypatch.setattr(consul_api, "resolve", resolve)


def snapshots_of(fakes: Fakes, **kw: Any) -> tuple[dict[str, Any], Inventory]:
    """Every API's snapshot of the fake cluster (OpenStack's: a healthy one) and the inventory naming it; ``kw``
    go to :func:`apis`."""
    inv = inventory(apis(nomad=fakes.nomad.url(), consul=fakes.consul.url(), vault=fakes.vault.url(),
                         prometheus=fakes.prometheus.url(), **kw))
    c = cluster(inv)
    snaps: dict[str, Any] = {spec.name: spec.fetch(c) for spec in apiregistry.APIS if spec.name != "openstack"}
    snaps["openstack"] = openstack_snapshot()
    return snaps, inv


def unusable_snapshots(host: str) -> dict[str, Any]:
    """Nomad, Vault and Prometheus at ``host`` not answering, Consul's CA wrong, OpenStack healthy."""
    down = ApiError("unreachable", f"Nomad at https://{host}:4646 does not answer: connection refused")
    badca = ApiError("tls", f"Consul at https://{host}:8500: TLS verification failed with CONSUL_CACERT=/x "
                            "— set CONSUL_CACERT to the cluster CA")
    return {"nomad": NomadSnapshot(root=down), "consul": ConsulSnapshot(root=badca),
            "vault": VaultSnapshot(root=down), "prometheus": PrometheusSnapshot(root=down),
            "openstack": openstack_snapshot()}


@contextmanager
def fake_cluster() -> Iterator[Fakes]:
    vault = FakeApi({})
    for server, routes in zip(vault.servers, vault_routes(), strict=True):
        server.routes.update(routes)
    fakes = Fakes(FakeApi(nomad_routes()), FakeApi(consul_routes()), vault, FakeApi(prometheus_routes()))
    try:
        yield fakes
    finally:
        for f in fakes.all().values():
            f.close()


# --------------------------------------------------------------------------- running the cluster checks


@dataclass(frozen=True)
class Outcome:
    outcome: str  # passed, failed, error, blocked, or "bare" (an exception that is not a verdict)
    message: str
    accessed: frozenset[str]  # the snapshot parts the check read ("nomad.nodes", ...)


def cluster_checks() -> list[Any]:
    """Every @check function of checks/cluster_*.py."""
    import importlib
    import pkgutil

    import checks
    from acceptance.checkspec import spec_of

    found = []
    for info in pkgutil.iter_modules(checks.__path__):
        if info.name.startswith("cluster_"):
            module = importlib.import_module(f"checks.{info.name}")
            found += [obj for obj in vars(module).values() if callable(obj) and spec_of(obj) is not None]
    return found


def run_checks(snaps: Mapping[str, Any], inv: Inventory, *, through_fixtures: bool = False) -> dict[str, Outcome]:
    """Every cluster check on every node it applies to, called as pytest would (``through_fixtures``: a snapshot
    whose API is unusable blocks the check, as the ``<name>_snapshot`` fixtures do; else the check gets the
    snapshot whatever its root)."""
    import inspect

    from acceptance.apifixtures import usable
    from acceptance.apiregistry import Snapshots
    from acceptance.checkspec import spec_of
    from acceptance.clients.snapshot import PerNode
    from acceptance.outcomes import Blocked, CheckError, first_line

    registry = Snapshots({name: (lambda s=s: s) for name, s in snaps.items()})
    cluster_node = Node("cluster", "cluster")
    results: dict[str, Outcome] = {}
    for fn in cluster_checks():
        spec = spec_of(fn)
        assert spec is not None
        for node in [cluster_node, *inv.nodes]:
            if not spec.applies_to(node):
                continue
            for snap in snaps.values():
                snap.accessed = set()
                for value in snap.fetched().values():
                    if isinstance(value, PerNode):
                        value.accessed = set()
            kwargs: dict[str, Any] = {}
            outcome, message = "passed", ""
            try:
                for name in inspect.signature(fn).parameters:
                    if name.endswith("_snapshot"):
                        api = name[: -len("_snapshot")]
                        kwargs[name] = usable(registry, api) if through_fixtures else snaps[api]
                    else:
                        kwargs[name] = {"inventory": inv, "expect": inv.expect, "all_nodes": list(inv.nodes),
                                        "node": node, "snapshots": registry}[name]
                fn(**kwargs)
            except Blocked as e:
                outcome, message = "blocked", str(e.msg)
            except AssertionError as e:  # its first line, as the product reports it (pytest may add more)
                outcome, message = "failed", first_line(str(e))
            except CheckError as e:
                outcome, message = "error", str(e)
            except Exception as e:  # noqa: BLE001 - what the test looks for
                outcome, message = "bare", f"{type(e).__name__}: {e}"
            accessed = {f"{api}.{p}" for api, s in snaps.items() for p in s.accessed}
            results[f"{spec.check_id(node, None)}[{node.name}]"] = Outcome(outcome, message, frozenset(accessed))
    return results


def openstack_snapshot() -> Any:
    """A healthy OpenStack snapshot (parsed from the documented Nova sample, renamed to the inventory)."""
    from acceptance.clients import openstack_api
    from acceptance.clients.openstack_api import OpenStackSnapshot, Project
    from acceptance.clients.snapshot import PerNode

    base = sample("openstack/nova_servers_detail_v2.100")["servers"][0]
    zones = ("cern-geneva-a", "cern-geneva-b", "cern-geneva-c")

    def server(name: str, flavor: str, az: str) -> dict[str, Any]:
        return dict(base, id=f"id-{name}", name=name, status="ACTIVE", flavor={"original_name": flavor},
                    **{"OS-EXT-AZ:availability_zone": az})

    vm = [server(m, "m2.large", z) for m, z in zip(MASTERS, zones, strict=True)]
    vm += [server(name, "m2.2xlarge", zones[0]) for name, kind, _ in AGENTS if kind == "vm"]
    metal = [server(name, "p1.dl7426795.S513-V-IP52", zones[0]) for name, kind, _ in AGENTS if kind == "metal"]
    snap = OpenStackSnapshot()
    snap.vm = Project(openstack_api.parse_servers({"servers": vm}), "apis.openstack.cloud (cloud 'test')")
    snap.metal = Project(openstack_api.parse_servers({"servers": metal}), "apis.openstack.cloud_metal")
    snap.attachments = PerNode("OpenStack", {name: ["/dev/vda", "/dev/vdb"] for name, kind, _ in AGENTS
                                             if kind == "vm"})
    return snap


def clouds_yaml(tmp_path: Path, auth_url: str, extra: str = "") -> Path:
    """A clouds.yaml with one cloud, ``test``, at ``auth_url`` (``extra``: more lines of the cloud's)."""
    path = tmp_path / "clouds.yaml"
    path.write_text(textwrap.dedent(f"""\
        clouds:
          test:
            auth:
              auth_url: {auth_url}
              username: alibuild
              password: {CLOUD_PASSWORD}
              project_name: {CLOUD_PROJECT}
              user_domain_name: Default
              project_domain_name: Default
            region_name: RegionOne
            identity_api_version: 3
        """) + "".join(f"    {line}\n" for line in extra.splitlines()))
    return path
