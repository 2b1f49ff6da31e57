"""The pre-rebuild gate (``--gate rebuild:NODE``, also ``reboot:`` and ``delete:``): may NODE be taken out now?
Collected only in a gate run, on the gated node; every check that does not pass is a reason to say no. For a
master the run also checks the two other masters fully (the runbook's "Make sure that the other two masters are
properly functioning")."""

from __future__ import annotations

from collections.abc import Sequence

from acceptance.checkspec import check
from acceptance.clients.consul_api import ConsulSnapshot
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.clients.raft import Autopilot
from acceptance.clients.vault_api import VaultSnapshot
from acceptance.inventory import Node
from acceptance.judging.raft import is_named, leading_master
from acceptance.targeting import Gate

MASTER = "Rebuilding a master"
AGENT = "Rebuilding an agent"


def _others(node: Node, all_nodes: Sequence[Node]) -> list[Node]:
    return [n for n in all_nodes if n.role == "master" and n.name != node.name]


def _survives_without(title: str, autopilot: Autopilot, node: Node, others: Sequence[Node]) -> list[str]:
    problems = []
    for other in others:
        found = [s for s in autopilot.servers if is_named(s.name, other.name)]
        if not found or not (found[0].voter and found[0].healthy):
            state = "missing" if not found else f"voter={found[0].voter}, healthy={found[0].healthy}"
            problems.append(f"{title} server on {other.name} is not a healthy voter ({state})")
    if problems:
        problems.append(f"without {node.name} the {title} quorum would not hold")
    return problems


def _leader_on(title: str, snapshot: NomadSnapshot | ConsulSnapshot, node: Node, all_nodes: Sequence[Node]) -> None:
    """NO-GO while ``node`` leads, and while no master can be told to lead (the leader's identity, never its
    address as a string: servers report IPs, the inventory names hosts)."""
    leader = snapshot.leader
    autopilot = snapshot.autopilot if snapshot.error_of("autopilot") is None else None
    masters = [(n.name, n.address) for n in all_nodes if n.role == "master"]
    leading = leading_master(leader, autopilot, masters)
    assert leading is not None or not leader, (
        f"cannot tell which master is the {title} leader ({leader} is none of the masters' addresses and autopilot "
        f"names no leader): not safe to take {node.name} out")
    assert leading != node.name, (
        f"{node.name} is the {title} leader: move the leadership first (--prepare does it)")


@check("gate.nomad.quorum", runbook=MASTER, severity="critical", roles=["master"], needs=(), gate=True)
def test_nomad_quorum(nomad_snapshot: NomadSnapshot, node: Node, all_nodes: list[Node]) -> None:
    problems = _survives_without("Nomad", nomad_snapshot.autopilot, node, _others(node, all_nodes))
    assert not problems, "; ".join(problems)


@check("gate.consul.quorum", runbook=MASTER, severity="critical", roles=["master"], needs=(), gate=True)
def test_consul_quorum(consul_snapshot: ConsulSnapshot, node: Node, all_nodes: list[Node]) -> None:
    problems = _survives_without("Consul", consul_snapshot.autopilot, node, _others(node, all_nodes))
    assert not problems, "; ".join(problems)


@check("gate.vault.quorum", runbook=MASTER, severity="critical", roles=["master"], needs=(), gate=True)
def test_vault_quorum(vault_snapshot: VaultSnapshot, node: Node, all_nodes: list[Node]) -> None:
    problems = []
    for other in _others(node, all_nodes):
        health = vault_snapshot.masters.of(other.name).health
        if not health.initialized or health.sealed:
            problems.append(f"Vault on {other.name} is {'sealed' if health.sealed else 'not initialised'}")
    assert not problems, "; ".join(problems) + f": Vault would not survive without {node.name}"


@check("gate.nomad.leader", runbook=MASTER, severity="major", roles=["master"], needs=(), gate=True)
def test_nomad_leader(nomad_snapshot: NomadSnapshot, node: Node, all_nodes: list[Node]) -> None:
    _leader_on("Nomad", nomad_snapshot, node, all_nodes)


@check("gate.consul.leader", runbook=MASTER, severity="major", roles=["master"], needs=(), gate=True)
def test_consul_leader(consul_snapshot: ConsulSnapshot, node: Node, all_nodes: list[Node]) -> None:
    _leader_on("Consul", consul_snapshot, node, all_nodes)


@check("gate.vault.active", runbook=MASTER, severity="major", roles=["master"], needs=(), gate=True)
def test_vault_active(vault_snapshot: VaultSnapshot, node: Node) -> None:
    health = vault_snapshot.masters.of(node.name).health
    assert health.standby or health.sealed, (
        f"Vault on {node.name} is the active node: step it down first (--prepare does it)")


@check("gate.agent.allocations", runbook=AGENT, severity="critical", roles=["agent"], needs=(), gate=True)
def test_allocations(nomad_snapshot: NomadSnapshot, node: Node, gate: Gate) -> None:
    running = [a for a in nomad_snapshot.allocations
               if is_named(a.node_name, node.name) and a.client_status == "running" and a.desired == "run"]
    blocking = sorted({a.job_id for a in running if a.job_id not in gate.allowed_jobs})
    assert not blocking, (f"{node.name} runs {len(running)} allocation(s) of {', '.join(blocking)}: drain it "
                          "(--prepare) or name the jobs you accept to stop with --allow-allocations")


@check("gate.agent.drainable", runbook=AGENT, severity="major", roles=["agent"], needs=(), gate=True)
def test_drainable(nomad_snapshot: NomadSnapshot, node: Node) -> None:
    found = [n for n in nomad_snapshot.nodes if is_named(n.name, node.name)]
    if not found:
        return  # not a Nomad node: nothing to drain
    status = found[0].status
    assert status in ("ready", "down"), (
        f"Nomad node {found[0].name} is {status}: its allocations cannot be drained now (wait until it is ready)")
