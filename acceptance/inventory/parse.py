"""The inventory's top level: its sections read into an :class:`Inventory` (:func:`parse_inventory`), from a
file (:func:`load_inventory`). Nodes are unique across masters and agents; agents default to ``vm``."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from acceptance.inventory.loading import line_of, read_text, read_yaml
from acceptance.inventory.messages import tail
from acceptance.inventory.model import (
    Apis,
    DiscoveryRule,
    Expectations,
    Inventory,
    Maintenance,
    Node,
    NotifySettings,
    RemediationSettings,
    SshSettings,
)
from acceptance.inventory.reader import Reader
from acceptance.inventory.rules import NO_RULE, Rule

_TOP = ("cluster", "ssh", "apis", "nodes", "discovery", "expect", "maintenance", "checks", "remediation", "notify")
_NODE_KEYS = ("name", "address", "kind", "az", "flavor", "project")

_Kinded = TypeVar("_Kinded", Node, DiscoveryRule)


def _with_kind(r: Reader, item: _Kinded, where: str, line: int | None, what: str) -> _Kinded:
    """Agents default to vm; masters have no kind."""
    if item.role == "master" and item.kind is not None:
        r.fail(f"{where}.kind", "kind applies to agents only", f"remove it from the {what}", line)
    return dataclasses.replace(item, kind="vm") if item.role == "agent" and item.kind is None else item


def _nodes(r: Reader, top: dict[Any, Any]) -> tuple[Node, ...]:
    if top.get("nodes") is None:
        return ()
    m = r.mapping(top["nodes"], "nodes", ("masters", "agents"), line=line_of(top, "nodes"))
    seen: dict[str, tuple[str, int | None]] = {}
    nodes: list[Node] = []
    for group, role in (("masters", "master"), ("agents", "agent")):
        for where, line, entry in r.entries(m, group, "nodes", "a list of nodes: [{name: ..., address: ...}]"):
            node = _with_kind(r, r.section(Node, entry, where, line, _NODE_KEYS, role=role), where, line, role)
            if node.name in seen:
                other_group, other_line = seen[node.name]
                if other_group == group:
                    r.fail(f"{where}.name", f"duplicate node {node.name!r} (first at line {other_line})",
                           "remove one of the two entries", line)
                r.fail(f"{where}.name", f"{node.name!r} is both in nodes.{other_group} (line {other_line}) and in "
                       f"nodes.{group}", "a node has one role: remove it from one of the lists", line)
            seen[node.name] = (group, line)
            nodes.append(node)
    return tuple(nodes)


def _discovery(r: Reader, top: dict[Any, Any]) -> tuple[DiscoveryRule, ...]:
    if top.get("discovery") is None:
        return ()
    m = r.mapping(top["discovery"], "discovery", ("openstack",), line=line_of(top, "discovery"))
    return tuple(_with_kind(r, r.section(DiscoveryRule, entry, where, line), where, line, "rule")
                 for where, line, entry in r.entries(m, "openstack", "discovery",
                                                     "a list of {project, role, kind, pattern}"))


def _check_dirs(r: Reader, top: dict[Any, Any]) -> tuple[Path, ...]:
    if top.get("checks") is None:
        return ()
    dirs: tuple[Path, ...] = r.value(top["checks"], "checks", line_of(top, "checks"), tuple[Path, ...],
                                     Rule(exists="dir"))
    for i, path in enumerate(dirs):
        if path in dirs[:i]:
            r.fail(f"checks[{i}]", f"{tail(path)} is listed twice", "remove one", line_of(top["checks"], i))
    return dirs


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raise :class:`InventoryError` on the first problem."""
    path = Path(path)
    with contextlib.suppress(RuntimeError):  # ~user of no known user: taken literally, not found below
        path = path.expanduser()
    return parse_inventory(read_yaml(read_text(path), path), path)


def parse_inventory(raw: Any, path: Path) -> Inventory:
    """Validate an inventory already parsed (`raw`, e.g. a dict); `path` is its file, for messages and paths."""
    r = Reader(path.resolve())
    if raw is None:
        r.fail("", "the file is empty", "write at least 'nodes:' or 'discovery:' (see README.md)")
    m = r.mapping(raw, "", _TOP)
    cluster = r.value(m["cluster"], "cluster", line_of(m, "cluster"), str, NO_RULE) \
        if m.get("cluster") is not None else path.stem
    nodes = _nodes(r, m)
    discovery = _discovery(r, m)
    apis = r.optional(Apis, m, "apis")
    if not nodes and not discovery:
        r.fail("nodes", "no nodes", "list nodes under nodes.masters / nodes.agents, or add discovery.openstack",
               line_of(m, "nodes") if "nodes" in m else None)
    maintenance = tuple(r.section(Maintenance, entry, where, line)
                        for where, line, entry in r.entries(m, "maintenance", "", "a list of {node, reason, until}"))
    return Inventory(
        path=r.path, cluster=cluster, ssh=r.optional(SshSettings, m, "ssh"), apis=apis, nodes=nodes,
        discovery=discovery, expect=r.optional(Expectations, m, "expect"), maintenance=maintenance,
        check_dirs=_check_dirs(r, m), remediation=r.optional(RemediationSettings, m, "remediation"),
        notify=r.optional(NotifySettings, m, "notify"),
    )
