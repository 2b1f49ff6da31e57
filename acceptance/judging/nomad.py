"""What the Nomad checks judge: a node's state, the expected jobs and their allocations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from acceptance.clients.nomad_api import Allocation, Job, NomadNode
from acceptance.hosts import same_host
from acceptance.judging.raft import is_named


def find_node(nodes: Iterable[NomadNode], name: str, address: str | None) -> NomadNode | None:
    """The Nomad node of an inventory node: same name (or FQDN starting with it), else same address."""
    nodes = list(nodes)
    for n in nodes:
        if is_named(n.name, name):
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

