"""What the Nomad and Consul server checks share: leader, servers (the inventory's masters, by name) and
failure tolerance, from /v1/status/* and /v1/operator/autopilot/health (see acceptance.clients.raft)."""

from __future__ import annotations

from acceptance.clients.consul_api import ConsulSnapshot
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.inventory import Inventory
from acceptance.judging import raft as judge_raft
from acceptance.outcomes import CheckError

RaftSnapshot = NomadSnapshot | ConsulSnapshot


def masters(inventory: Inventory) -> list[str]:
    names = [n.name for n in inventory.nodes if n.role == "master"]
    if not names:
        raise CheckError("no master in the inventory: the expected servers are the masters")
    return names


def assert_leader(title: str, snap: RaftSnapshot, inventory: Inventory) -> None:
    """A leader elected, one of the raft peers, and one of the inventory's masters: told by its identity
    (autopilot's Leader, else the ip:port it reports resolved against the masters' names)."""
    err = snap.error_of("leader")
    if err is not None and err.kind == "no-leader":
        raise AssertionError(f"no {title} leader elected: {err}")
    peers = snap.peers if snap.error_of("peers") is None else []
    problems = judge_raft.leader_problems(title, snap.leader, peers)
    autopilot = snap.autopilot if snap.error_of("autopilot") is None else None
    nodes = [(n.name, n.address) for n in inventory.nodes if n.role == "master"]
    if not problems and judge_raft.leading_master(snap.leader, autopilot, nodes) is None:
        problems.append(f"the {title} leader {snap.leader} is none of the inventory's masters "
                        f"({', '.join(name for name, _ in nodes)})")
    assert not problems, "; ".join(problems)


def assert_servers(title: str, snap: RaftSnapshot, inventory: Inventory) -> None:
    problems = judge_raft.server_problems(title, snap.autopilot, masters(inventory))
    assert not problems, "; ".join(problems)


def assert_failure_tolerance(title: str, snap: RaftSnapshot, inventory: Inventory) -> None:
    tolerance, detail = judge_raft.failure_tolerance(snap.autopilot, masters(inventory))
    assert tolerance >= 1, f"{title} failure tolerance {max(tolerance, 0)}, expected >= 1 ({detail})"
