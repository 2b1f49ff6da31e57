"""The state of one run in one pytest process (the controller or an xdist worker), split by its owner, and its
hand-over from the xdist controller to the workers (so that discovery runs once and every process agrees on the
targets).

- :class:`RunInfo`: what the run is (its id, start, report folder, process): set once at configure;
- :class:`Scope`: what it checks (inventory, targets, every node, waivers, moment, gate, shard): set once at
  configure (alice_acceptance/configure.py), read by collection, the fixtures, remediation and the reports;
- :class:`Connections`: the nodes' transport (ssh control folder, the :class:`Nodes`, the ssh counters): the
  plugin makes the Nodes at session start and hands the counters over at the end;
- :class:`Results`: the collected items per node and the records (one per check and node): the plugin fills the
  items at collection, the recorder the records; remediation's guardrails read both.

The application keeps its own parts (API request counts, the report files) and remediation its own (mode,
audit: remediation/context.py). :class:`Run` only holds the core's four together under one stash key, for the
checks' fixtures (acceptance/fixtures.py, acceptance/apifixtures.py) and the plugin's hooks.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from acceptance.checkspec import CheckItem
from acceptance.inventory import Inventory, Maintenance, Node
from acceptance.targeting import Gate, Shard
from acceptance.transport.nodes import Nodes
from reports.summary import Moment, Records

RUN_KEY = pytest.StashKey["Run"]()
ITEM_KEY = pytest.StashKey[CheckItem]()
WORKERINPUT_KEY = "acceptance"


def new_run_id(now: dt.datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started: dt.datetime
    report_dir: Path
    is_worker: bool
    t0: float = field(default_factory=time.monotonic)


@dataclass
class Scope:
    inventory: Inventory
    targets: list[Node]
    all_nodes: list[Node] = field(default_factory=list)  # the inventory's nodes (static and discovered)
    waivers: dict[str, Maintenance] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    moment: Moment = "check"  # check, nightly, provision, gate
    gate: Gate | None = None  # --gate
    shard: Shard | None = None  # --shard


@dataclass
class Connections:
    control_dir: Path  # the ssh control sockets' private folder
    nodes: Nodes | None = None  # made at session start
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # ssh counters per node (all processes)


@dataclass
class Results:
    records: Records = field(default_factory=Records)
    items: dict[str, list[pytest.Item]] = field(default_factory=lambda: defaultdict(list))  # by node name


@dataclass(frozen=True)
class Run:
    """The core's parts of one run, each with its owner (above)."""

    info: RunInfo
    scope: Scope
    connections: Connections
    results: Results = field(default_factory=Results)

    def to_workerinput(self) -> dict[str, Any]:
        scope = self.scope
        return {
            "targets": [n.to_dict() for n in scope.targets],
            "all_nodes": [n.to_dict() for n in scope.all_nodes],
            "run_id": self.info.run_id,
            "started": self.info.started.isoformat(),
            "control_dir": str(self.connections.control_dir),
            "waivers": {k: {"node": m.node, "reason": m.reason, "until": m.until.isoformat()}
                        for k, m in scope.waivers.items()},
            "warnings": scope.warnings,
            "moment": scope.moment,
        }

    @classmethod
    def from_workerinput(cls, inventory: Inventory, report_dir: Path, data: dict[str, Any]) -> Run:
        scope = Scope(
            inventory=inventory, targets=[Node.from_dict(d) for d in data["targets"]],
            all_nodes=[Node.from_dict(d) for d in data["all_nodes"]],
            waivers={k: Maintenance(node=v["node"], reason=v["reason"], until=dt.date.fromisoformat(v["until"]))
                     for k, v in data["waivers"].items()},
            warnings=list(data["warnings"]), moment=data["moment"],
        )
        info = RunInfo(run_id=data["run_id"], started=dt.datetime.fromisoformat(data["started"]),
                       report_dir=report_dir, is_worker=True)
        return cls(info=info, scope=scope, connections=Connections(Path(data["control_dir"])))


def get_run(config: pytest.Config) -> Run | None:
    return config.stash.get(RUN_KEY, None)


def need_run(config: pytest.Config) -> Run:
    run = get_run(config)
    if run is None:
        raise pytest.UsageError("no inventory; fix: pass --inventory FILE")
    return run
