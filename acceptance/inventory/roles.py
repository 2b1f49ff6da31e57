"""The roles and kinds of a node, and the pseudo-node of the cluster-wide checks."""

from __future__ import annotations

from typing import Literal

Role = Literal["master", "agent", "cluster"]  # "cluster": the pseudo-node of cluster-wide checks
Kind = Literal["vm", "metal"]
ROLES: tuple[Role, ...] = ("master", "agent")  # the roles an inventory node can have
CLUSTER = "cluster"  # name and role of the pseudo-node that carries the cluster-wide (API) checks
KINDS: tuple[Kind, ...] = ("vm", "metal")
