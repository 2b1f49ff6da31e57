"""Which nodes a run checks: the inventory's nodes (static and discovered), filtered by --role and --nodes."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Sequence

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
