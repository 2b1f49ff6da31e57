"""Nomad's HTTP API: leader, peers, autopilot health, nodes, jobs, allocations. Least privilege: server health
comes from ``/v1/operator/autopilot/health`` (operator:read) and ``/v1/status/peers`` (no ACL), never from
``/v1/operator/raft/configuration`` (management only); a 403 names the right the token lacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from acceptance.clients import raft, shapes
from acceptance.clients.call import Caller, refuse_unknown_token
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.raft import Autopilot
from acceptance.clients.snapshot import ApiSnapshot, Part, attempt


def rights(namespace: str = "default") -> dict[str, str | None]:
    """What each endpoint the suite reads needs of NOMAD_TOKEN (None: no ACL)."""
    return {"/v1/status/leader": None, "/v1/status/peers": None, "/v1/operator/autopilot/health": "operator:read",
            "/v1/nodes": "node:read", "/v1/jobs": f"namespace:list-jobs on namespace {namespace!r}",
            "/v1/allocations": f"namespace:read-job on namespace {namespace!r}"}



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


def parse_nodes(data: Any) -> list[NomadNode]:
    return shapes.records(data, lambda n, w: NomadNode(
        id=shapes.string(n, "ID", w), name=shapes.node_name(n, "Name", w),
        address=shapes.string(n, "Address", w, default=""), status=shapes.string(n, "Status", w),
        status_description=shapes.string(n, "StatusDescription", w, default=""),
        drain=shapes.boolean(n, "Drain", w, default=False),
        eligibility=shapes.string(n, "SchedulingEligibility", w, default="eligible")))


def _queued(job: Any, where: str) -> int:
    summary = job.get("JobSummary")
    if summary is None:
        return 0
    groups = shapes.obj(shapes.obj(summary, f"{where}.JobSummary").get("Summary") or {}, f"{where}.JobSummary.Summary")
    return sum(shapes.integer(shapes.obj(g, f"{where}.Summary.{name}"), "Queued", f"{where}.Summary.{name}", default=0)
               for name, g in groups.items())


def parse_jobs(data: Any) -> list[Job]:
    return shapes.records(data, lambda j, w: Job(
        id=shapes.string(j, "ID", w, empty=False), status=shapes.string(j, "Status", w),
        stop=shapes.boolean(j, "Stop", w, default=False), queued=_queued(j, w)),
        numeric=(*shapes.INDEXES, "JobModifyIndex", "Priority"))


def parse_allocations(data: Any) -> list[Allocation]:
    return shapes.records(data, lambda a, w: Allocation(
        job_id=shapes.string(a, "JobID", w, empty=False), desired=shapes.string(a, "DesiredStatus", w),
        client_status=shapes.string(a, "ClientStatus", w), node_name=shapes.string(a, "NodeName", w, default="")),
        numeric=(*shapes.INDEXES, "CreateTime", "ModifyTime", "JobVersion"))


_leader_elected = raft.leader_elected("Nomad")


def fetch(cfg: ApiConfig, caller: Caller | None = None) -> NomadSnapshot:
    if cfg.problem:
        return NomadSnapshot.unusable(ApiError("config", cfg.problem))
    snap = NomadSnapshot()
    caller = caller or Caller(cfg)
    need = rights(cfg.namespace)
    snap.namespace = cfg.namespace

    def read(path: str, parse: Any, call: Any, **kw: Any) -> Any:
        return attempt(lambda: caller.read(path, parse, right=need[path], call=call, **kw))

    snap.leader = read("/v1/status/leader", raft.parse_leader, lambda n: n.status.leader.get_leader(),
                       accept=_leader_elected)
    snap.peers = read("/v1/status/peers", raft.parse_peers, lambda n: n.status.peers.get_peers())
    # python-nomad has no autopilot method: its generic Requester.request on the operator endpoint
    snap.autopilot = read("/v1/operator/autopilot/health", raft.parse_autopilot,
                          lambda n: n.operator.request("autopilot", "health", method="get").json(), ok=(200, 429),
                          accept=raft.autopilot_settled)
    snap.nodes = read("/v1/nodes", parse_nodes, lambda n: n.nodes.get_nodes())
    snap.jobs = read("/v1/jobs", parse_jobs, lambda n: n.jobs.get_jobs(namespace=cfg.namespace))
    snap.allocations = read("/v1/allocations", parse_allocations,
                            lambda n: n.allocations.get_allocations(namespace=cfg.namespace, task_states=False))
    snap.url = caller.url
    refuse_unknown_token(snap, caller, NomadSnapshot.TOKEN_PARTS, lambda n: n.acl.get_self_token())
    snap.decide_root(NomadSnapshot.TOKEN_PARTS, probe="leader")
    return snap
