"""Nomad's HTTP API: the snapshot (leader, peers, autopilot health, nodes, jobs, allocations), parsed and
shape-checked, and the pure functions the checks apply to it (fed with reference/api/nomad samples in tests).

Least privilege: nothing here needs a management token. ``/v1/operator/raft/configuration`` does (403
"Permission denied" with operator:read), so server health comes from ``/v1/operator/autopilot/health``
(operator:read) and ``/v1/status/peers`` (no ACL). A 403 on one endpoint is an error of the checks that need
it, naming the right the token lacks (:data:`RIGHTS`); only a token refused everywhere blocks the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import raft, shapes
from acceptance.clients.call import Caller, refuse_unknown_token
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.hosts import same_host
from acceptance.clients.raft import Autopilot
from acceptance.clients.snapshot import ApiSnapshot, Part, attempt
from acceptance.clients.transport import Answer

TITLE = "Nomad"


def rights(namespace: str = "default") -> dict[str, str | None]:
    """What each endpoint the suite reads needs of NOMAD_TOKEN (None: no ACL)."""
    return {
        "/v1/status/leader": None,
        "/v1/status/peers": None,
        "/v1/operator/autopilot/health": "operator:read",
        "/v1/nodes": "node:read",
        "/v1/jobs": f"namespace:list-jobs on namespace {namespace!r}",
        "/v1/allocations": f"namespace:read-job on namespace {namespace!r}",
    }


RIGHTS = rights()


@dataclass(frozen=True)
class NomadNode:
    id: str
    name: str
    address: str
    status: str
    status_description: str
    drain: bool
    eligibility: str


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    stop: bool
    queued: int


@dataclass(frozen=True)
class Allocation:
    job_id: str
    desired: str
    client_status: str
    node_name: str


class NomadSnapshot(ApiSnapshot):
    api = "nomad"
    leader = Part[str]()  # "" when none is elected (or the error of kind "no-leader")
    peers = Part[list[str]]()
    autopilot = Part[Autopilot]()
    nodes = Part[list[NomadNode]]()
    jobs = Part[list[Job]]()
    allocations = Part[list[Allocation]]()
    namespace = "default"

    TOKEN_PARTS = ("autopilot", "nodes", "jobs", "allocations")


# --------------------------------------------------------------------------- parsers


def parse_nodes(data: Any) -> list[NomadNode]:
    out = []
    for i, n in enumerate(shapes.items(data, None, "the body")):
        where = f"[{i}]"
        shapes.numbers(n, where)
        out.append(NomadNode(
            id=shapes.string(n, "ID", where), name=shapes.node_name(n, "Name", where),
            address=shapes.string(n, "Address", where, default=""), status=shapes.string(n, "Status", where),
            status_description=shapes.string(n, "StatusDescription", where, default=""),
            drain=shapes.boolean(n, "Drain", where, default=False),
            eligibility=shapes.string(n, "SchedulingEligibility", where, default="eligible")))
    return out


def parse_jobs(data: Any) -> list[Job]:
    out = []
    for i, j in enumerate(shapes.items(data, None, "the body")):
        where = f"[{i}]"
        shapes.numbers(j, where, ("CreateIndex", "ModifyIndex", "JobModifyIndex", "Priority"))
        queued = 0
        summary = j.get("JobSummary")
        if summary is not None:
            groups = shapes.obj(shapes.obj(summary, f"{where}.JobSummary").get("Summary") or {},
                                f"{where}.JobSummary.Summary")
            for name, group in groups.items():
                queued += shapes.integer(shapes.obj(group, f"{where}.JobSummary.Summary.{name}"), "Queued",
                                         f"{where}.JobSummary.Summary.{name}", default=0)
        out.append(Job(id=shapes.string(j, "ID", where, empty=False), status=shapes.string(j, "Status", where),
                       stop=shapes.boolean(j, "Stop", where, default=False), queued=queued))
    return out


def parse_allocations(data: Any) -> list[Allocation]:
    out = []
    for i, a in enumerate(shapes.items(data, None, "the body")):
        where = f"[{i}]"
        shapes.numbers(a, where, ("CreateIndex", "ModifyIndex", "CreateTime", "ModifyTime", "JobVersion"))
        out.append(Allocation(job_id=shapes.string(a, "JobID", where, empty=False),
                              desired=shapes.string(a, "DesiredStatus", where),
                              client_status=shapes.string(a, "ClientStatus", where),
                              node_name=shapes.string(a, "NodeName", where, default="")))
    return out


def _leader_elected(answer: Answer) -> ApiError | None:
    if answer.status == 200 and answer.body.strip() == b'""':
        return ApiError("no-leader", f"{TITLE} at {answer.url} answers that no leader is elected "
                                     "(empty /v1/status/leader)", retryable=True)
    return None


def fetch(cfg: ApiConfig, caller: Caller | None = None) -> NomadSnapshot:
    if cfg.problem:
        return NomadSnapshot.unusable(ApiError("config", cfg.problem))
    snap = NomadSnapshot()
    caller = caller or Caller(cfg)
    ns = {"namespace": cfg.namespace}
    need = rights(cfg.namespace)
    snap.namespace = cfg.namespace
    snap.leader = attempt(lambda: caller.read("/v1/status/leader", raft.parse_leader, accept=_leader_elected))
    snap.peers = attempt(lambda: caller.read("/v1/status/peers", raft.parse_peers))
    snap.autopilot = attempt(lambda: caller.read("/v1/operator/autopilot/health", raft.parse_autopilot,
                                                 ok=(200, 429), right=need["/v1/operator/autopilot/health"],
                                                 accept=raft.autopilot_settled))
    snap.nodes = attempt(lambda: caller.read("/v1/nodes", parse_nodes, right=need["/v1/nodes"]))
    snap.jobs = attempt(lambda: caller.read("/v1/jobs", parse_jobs, ns, right=need["/v1/jobs"]))
    snap.allocations = attempt(lambda: caller.read("/v1/allocations", parse_allocations,
                                                   {**ns, "task_states": "false"}, right=need["/v1/allocations"]))
    snap.url = caller.url
    refuse_unknown_token(snap, caller, NomadSnapshot.TOKEN_PARTS)
    snap.decide_root(NomadSnapshot.TOKEN_PARTS, probe="leader")
    return snap


# --------------------------------------------------------------------------- clients (agents)


def find_node(nodes: Iterable[NomadNode], name: str, address: str | None) -> NomadNode | None:
    """The Nomad node of an inventory node: same name (or FQDN starting with it), else same address."""
    nodes = list(nodes)
    for n in nodes:
        if raft.is_named(n.name, name):
            return n
    if address:
        for n in nodes:
            if same_host(n.address, address):  # Nomad reports an IP, the inventory may name the host
                return n
    return None


def node_problems(nodes: Iterable[NomadNode], name: str, address: str | None, drain_allowed: bool = False) -> list[str]:
    node = find_node(nodes, name, address)
    if node is None:
        return [f"{name} is not a Nomad node (not registered)"]
    problems = []
    if node.status != "ready":
        desc = f" ({node.status_description})" if node.status_description else ""
        problems.append(f"Nomad node {node.name} is {node.status}{desc}, expected ready")
    if node.drain and not drain_allowed:
        problems.append(f"Nomad node {node.name} is draining and is not in the inventory's maintenance list")
    elif node.eligibility != "eligible" and not drain_allowed:
        problems.append(f"Nomad node {node.name} is {node.eligibility} for scheduling")
    return problems


# --------------------------------------------------------------------------- jobs


def jobs_problems(jobs: Iterable[Job], allocations: Iterable[Allocation], expected: Sequence[str],
                  namespace: str = "default") -> list[str]:
    """Every expected job exists, is not stopped, and has its allocations running: at least one, none it wants
    running failed or lost, none left queued."""
    by_id = {j.id: j for j in jobs}
    allocs: dict[str, list[Allocation]] = {}
    for a in allocations:
        allocs.setdefault(a.job_id, []).append(a)
    problems = []
    for job_id in expected:
        job = by_id.get(job_id)
        if job is None:
            problems.append(f"{job_id}: no such job in namespace {namespace!r}")
            continue
        if job.stop or job.status == "dead":
            problems.append(f"{job_id}: job is {'stopped' if job.stop else 'dead'}")
            continue
        wanted = [a for a in allocs.get(job_id, []) if a.desired == "run"]
        running = [a for a in wanted if a.client_status == "running"]
        broken = [a for a in wanted if a.client_status in ("failed", "lost", "unknown")]
        if not running:
            extra = f", {job.queued} queued" if job.queued else ""
            problems.append(f"{job_id}: no allocation running ({len(wanted)} wanted{extra})")
        elif broken:
            problems.append(f"{job_id}: {len(broken)} allocation(s) "
                            f"{', '.join(sorted({a.client_status for a in broken}))} on "
                            f"{', '.join(sorted({a.node_name for a in broken}))}")
        elif job.queued:  # some running is not all: the scheduler could not place the rest
            problems.append(f"{job_id}: only {len(running)} allocation(s) running, {job.queued} queued "
                            "(not placed: no eligible node has room)")
    return problems
