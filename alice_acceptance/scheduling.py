"""xdist scheduling: every check of a node goes to the same worker, which then owns the node's ssh
connection and facts. Check item ids end with ``[<node>]``; that is the unit of work distribution.

Every check of a ``checks/cluster_*.py`` module (the API checks, per node ones included) goes to one worker,
the ``cluster`` group, so that each API's snapshot is fetched once per run."""

from __future__ import annotations

import re
from typing import Any

from xdist.scheduler import LoadScopeScheduling

from acceptance.inventory import CLUSTER

_NODE_RE = re.compile(r"\[([^\[\]]+)\]$")
_CLUSTER_MODULE_RE = re.compile(r"(^|/)cluster_[^/]*\.py::")


def node_of(nodeid: str) -> str | None:
    match = _NODE_RE.search(nodeid)
    return match.group(1) if match else None


def scope_of(nodeid: str) -> str | None:
    """The scheduling group of a check item: ``cluster`` for the API checks, else its node."""
    if _CLUSTER_MODULE_RE.search(nodeid):
        return CLUSTER
    return node_of(nodeid)


class NodeScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """Like ``--dist loadscope``, with the node (or the cluster group) as the scope."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid) or str(super()._split_scope(nodeid))
