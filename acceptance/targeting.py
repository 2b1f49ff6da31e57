"""Which nodes a run checks: the inventory's nodes (static and discovered), filtered by --role and --nodes, or
the node of a ``--gate``, or a ``--shard`` of them (the options are parsed in alice_acceptance/moments.py)."""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from acceptance.inventory import CLUSTER, ROLES, Node


class TargetError(ValueError):
    """A bad --role / --nodes value: one line with the option, the problem and the fix."""


def split_patterns(value: str | Sequence[str] | None) -> list[str]:
    """'alibuild0*, alimesos01' -> ['alibuild0*', 'alimesos01'] (repeatable option values are joined)."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def select(nodes: Iterable[Node], roles: Sequence[str] = (), patterns: Sequence[str] = ()) -> list[Node]:
    """Nodes with one of ``roles`` (all if empty) whose name matches one of ``patterns`` (globs; all if empty).

    Every pattern must match at least one node of the inventory, else :class:`TargetError`.
    Order: masters first, then agents, each in inventory order.
    """
    nodes = list(nodes)
    for role in roles:
        if role not in (*ROLES, CLUSTER):
            raise TargetError(f"--role: unknown role {role!r}; fix: use one of {', '.join((*ROLES, CLUSTER))}")
    names = [n.name for n in nodes]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern) and not fnmatch.fnmatchcase(CLUSTER, pattern):
            close = difflib.get_close_matches(pattern, names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "check the node names in the inventory"
            raise TargetError(f"--nodes: no node in the inventory matches {pattern!r}; fix: {hint}")
    chosen = [
        n for n in nodes
        if (not roles or n.role in roles) and (not patterns or any(fnmatch.fnmatchcase(n.name, p) for p in patterns))
    ]
    return sorted(chosen, key=lambda n: 0 if n.role == "master" else 1)


def wants_cluster(roles: Sequence[str] = (), patterns: Sequence[str] = ()) -> bool:
    """Whether the cluster-wide checks (pseudo-node ``cluster``) run: always without filters, else only when
    ``--role`` names ``cluster`` or a ``--nodes`` glob matches ``cluster``."""
    if roles and CLUSTER not in roles:
        return False
    return not patterns or any(fnmatch.fnmatchcase(CLUSTER, p) for p in patterns)


@dataclass(frozen=True)
class Gate:
    """``--gate ACTION:NODE``: may NODE be taken out now (its action, node and the allocations accepted)."""

    action: str
    node: Node
    prepare: bool = False
    allowed_jobs: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"{self.action} {self.node.name}"


def gate_targets(gate: Gate, nodes: Sequence[Node]) -> list[Node]:
    """A master's gate also checks the two other masters fully; an agent's only the agent (its gate checks)."""
    if gate.node.role == "master":
        return [*(n for n in nodes if n.role == "master" and n.name != gate.node.name), gate.node]
    return [gate.node]


@dataclass(frozen=True)
class Shard:
    """``--shard I/N``: a stable slice of the targets, for a nightly run spread over runners."""

    index: int  # 1..count
    count: int

    def holds(self, node: Node) -> bool:
        """Stable whatever the other nodes: by a hash of the name (the cluster checks go to shard 1). SHA-256,
        not CRC-32: the CRC of names that differ in a digit or two share their low bits (all in one shard)."""
        if node.role == CLUSTER:
            return self.index == 1
        digest = hashlib.sha256(node.name.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1
