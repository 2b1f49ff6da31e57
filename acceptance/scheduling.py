"""xdist scheduling: every check of a node goes to the same worker, which then owns the node's ssh
connection and facts. Check item ids end with ``[<node>]``; that is the unit of work distribution."""

from __future__ import annotations

import re
from typing import Any

from xdist.scheduler import LoadScopeScheduling

_NODE_RE = re.compile(r"\[([^\[\]]+)\]$")


def node_of(nodeid: str) -> str | None:
    match = _NODE_RE.search(nodeid)
    return match.group(1) if match else None


class NodeScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """Like ``--dist loadscope``, with the node as the scope."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        return node_of(nodeid) or str(super()._split_scope(nodeid))
