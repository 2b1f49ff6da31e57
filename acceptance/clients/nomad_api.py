"""Nomad through python-nomad: the snapshot (leader, peers, raft configuration, members, nodes, jobs,
allocations) and the pure functions the checks apply to it (fed with reference/api/nomad samples in tests)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.snapshot import Snapshot


def make_client(cfg: ApiConfig, url: str) -> Any:
    import nomad  # python-nomad

    # python-nomad passes verify, cert and timeout to every request (REQUESTS_CA_BUNDLE cannot override them)
    return nomad.Nomad(address=url, token=cfg.token, timeout=cfg.timeout, verify=cfg.verify,
                       cert=cfg.client_cert or ())


def _leader_elected(value: Any) -> ApiError | None:
    if isinstance(value, str) and value:
        return None
    return ApiError("no-leader", "Nomad answers that no leader is elected (empty /v1/status/leader)",
                    retryable=True)


def fetch(cfg: ApiConfig, caller: Caller[Any] | None = None) -> Snapshot:
    caller = caller or Caller(cfg, lambda url: make_client(cfg, url))
    snap = Snapshot(api="nomad")
    if cfg.problem:
        snap.root = ApiError("config", cfg.problem)
        return snap
    snap.fetch("leader", lambda: caller.get("/v1/status/leader", lambda c: c.status.leader.get_leader(),
                                            accept=_leader_elected))
    snap.fetch("members", lambda: caller.get("/v1/agent/members", lambda c: c.agent.get_members()))
    snap.fetch("peers", lambda: caller.get("/v1/status/peers", lambda c: c.status.peers.get_peers()))
    snap.fetch("raft", lambda: caller.get("/v1/operator/raft/configuration", lambda c: c.operator.get_configuration()))
    snap.fetch("nodes", lambda: caller.get("/v1/nodes", lambda c: c.nodes.get_nodes()))
    snap.fetch("jobs", lambda: caller.get("/v1/jobs", lambda c: c.jobs.get_jobs()))
    snap.fetch("allocations", lambda: caller.get("/v1/allocations",
                                                 lambda c: c.allocations.get_allocations(task_states=False)))
    snap.url = caller.url
    snap.set_root_from()
    return snap


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    name: str  # "<node>.<region>" as raft and serf say it
    address: str  # raft "ip:4647"
    voter: bool
    leader: bool
    status: str  # serf status of the matching member: alive, failed, left, or "missing"
    version: str


def servers(raft: dict[str, Any], members: dict[str, Any]) -> list[Server]:
    """The raft servers joined with their serf member (by name, else by RPC address)."""
    by_name: dict[str, dict[str, Any]] = {}
    by_rpc: dict[str, dict[str, Any]] = {}
    for m in members.get("Members") or []:
        tags = m.get("Tags") or {}
        if tags.get("role", "nomad") != "nomad":
            continue
        by_name[str(m.get("Name"))] = m
        by_rpc[f"{m.get('Addr')}:{tags.get('port', '4647')}"] = m
    out = []
    for s in raft.get("Servers") or []:
        member = by_name.get(str(s.get("Node"))) or by_rpc.get(str(s.get("Address")))
        out.append(Server(name=str(s.get("Node")), address=str(s.get("Address")), voter=bool(s.get("Voter")),
                          leader=bool(s.get("Leader")), status=str(member.get("Status")) if member else "missing",
                          version=str((member.get("Tags") or {}).get("build", "?")) if member else "?"))
    return out


def server_members(members: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in members.get("Members") or [] if (m.get("Tags") or {}).get("role", "nomad") == "nomad"]


def leader_problems(leader: str, peers: Sequence[str]) -> list[str]:
    if not leader:
        return ["no Nomad leader elected"]
    if peers and leader not in peers:
        return [f"the leader {leader} is not one of the raft peers {', '.join(peers)}"]
    return []


def peers_problems(raft: dict[str, Any], members: dict[str, Any], expected: int) -> list[str]:
    """``expected`` servers in the raft configuration, each alive in serf."""
    found = servers(raft, members)
    problems = []
    if len(found) != expected:
        problems.append(f"{len(found)} servers in the raft configuration, expected {expected}: "
                        f"{', '.join(s.name for s in found) or 'none'}")
    bad = [f"{s.name} ({s.status})" for s in found if s.status != "alive"]
    if bad:
        problems.append(f"server not alive: {', '.join(bad)}")
    return problems


def failure_tolerance(raft: dict[str, Any], members: dict[str, Any]) -> tuple[int, str]:
    """How many more voters may fail with a quorum left: alive voters - quorum of all voters."""
    voters = [s for s in servers(raft, members) if s.voter]
    alive = [s for s in voters if s.status == "alive"]
    quorum = len(voters) // 2 + 1
    detail = (f"{len(alive)} of {len(voters)} voters alive, quorum {quorum}"
              + (f"; not alive: {', '.join(f'{s.name} ({s.status})' for s in voters if s.status != 'alive')}"
                 if len(alive) < len(voters) else ""))
    return len(alive) - quorum, detail


def version_problems(members: dict[str, Any]) -> list[str]:
    versions: dict[str, list[str]] = {}
    for m in server_members(members):
        if m.get("Status") in ("left",):
            continue
        versions.setdefault(str((m.get("Tags") or {}).get("build", "?")), []).append(str(m.get("Name")))
    if len(versions) <= 1:
        return []
    return ["Nomad servers run different versions: " + "; ".join(
        f"{v} on {', '.join(sorted(names))}" for v, names in sorted(versions.items()))]


# --------------------------------------------------------------------------- clients (agents)


def find_node(nodes: Iterable[dict[str, Any]], name: str, address: str | None) -> dict[str, Any] | None:
    """The Nomad node of an inventory node: same name (or FQDN starting with it), else same address."""
    nodes = list(nodes)
    for n in nodes:
        if n.get("Name") == name or str(n.get("Name", "")).startswith(name + "."):
            return n
    if address:
        for n in nodes:
            if n.get("Address") == address:
                return n
    return None


def node_problems(nodes: Iterable[dict[str, Any]], name: str, address: str | None,
                  drain_allowed: bool = False) -> list[str]:
    node = find_node(nodes, name, address)
    if node is None:
        return [f"{name} is not a Nomad node (not registered)"]
    problems = []
    if node.get("Status") != "ready":
        desc = f" ({node.get('StatusDescription')})" if node.get("StatusDescription") else ""
        problems.append(f"Nomad node {node.get('Name')} is {node.get('Status')}{desc}, expected ready")
    if node.get("Drain") and not drain_allowed:
        problems.append(f"Nomad node {node.get('Name')} is draining and is not in the inventory's maintenance list")
    elif node.get("SchedulingEligibility", "eligible") != "eligible" and not drain_allowed:
        problems.append(f"Nomad node {node.get('Name')} is {node.get('SchedulingEligibility')} for scheduling")
    return problems


# --------------------------------------------------------------------------- jobs


def jobs_problems(jobs: Iterable[dict[str, Any]], allocations: Iterable[dict[str, Any]],
                  expected: Sequence[str]) -> list[str]:
    """Every expected job exists, is not stopped, and has at least one allocation running; no allocation it
    wants running has failed or been lost."""
    by_id = {str(j.get("ID")): j for j in jobs}
    allocs: dict[str, list[dict[str, Any]]] = {}
    for a in allocations:
        allocs.setdefault(str(a.get("JobID")), []).append(a)
    problems = []
    for job_id in expected:
        job = by_id.get(job_id)
        if job is None:
            problems.append(f"{job_id}: no such job")
            continue
        if job.get("Stop") or job.get("Status") == "dead":
            problems.append(f"{job_id}: job is {'stopped' if job.get('Stop') else 'dead'}")
            continue
        wanted = [a for a in allocs.get(job_id, []) if a.get("DesiredStatus") == "run"]
        running = [a for a in wanted if a.get("ClientStatus") == "running"]
        broken = [a for a in wanted if a.get("ClientStatus") in ("failed", "lost", "unknown")]
        queued = sum(int((g or {}).get("Queued", 0) or 0)
                     for g in ((job.get("JobSummary") or {}).get("Summary") or {}).values())
        if not running:
            extra = f", {queued} queued" if queued else ""
            problems.append(f"{job_id}: no allocation running ({len(wanted)} wanted{extra})")
        elif broken:
            problems.append(f"{job_id}: {len(broken)} allocation(s) "
                            f"{', '.join(sorted({str(a.get('ClientStatus')) for a in broken}))} on "
                            f"{', '.join(sorted({str(a.get('NodeName')) for a in broken}))}")
    return problems
