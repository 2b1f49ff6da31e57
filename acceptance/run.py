"""The state of one run in one pytest process (the controller or an xdist worker), and its hand-over from the
xdist controller to the workers (so that discovery runs once and every process agrees on the targets)."""

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
from acceptance.moments import Gate, Shard
from acceptance.transport.nodes import Nodes
from reports.summary import Moment, Records, RemediationEntry

RUN_KEY = pytest.StashKey["Run"]()
ITEM_KEY = pytest.StashKey[CheckItem]()
WORKERINPUT_KEY = "acceptance"


def new_run_id(now: dt.datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass
class Run:
    config: pytest.Config
    inventory: Inventory
    targets: list[Node]
    run_id: str
    started: dt.datetime
    report_dir: Path
    control_dir: Path
    waivers: dict[str, Maintenance]
    warnings: list[str]
    is_worker: bool
    all_nodes: list[Node] = field(default_factory=list)  # the inventory's nodes (static and discovered)
    records: Records = field(default_factory=Records)
    items: dict[str, list[pytest.Item]] = field(default_factory=lambda: defaultdict(list))  # by node name
    outputs: dict[str, Path] = field(default_factory=dict)  # the report files written at the end
    nodes: Nodes | None = None
    transport: dict[str, dict[str, int]] = field(default_factory=dict)  # ssh counters per node (all processes)
    api_requests: dict[str, int] = field(default_factory=dict)  # per API
    api_baseline: dict[str, int] = field(default_factory=dict)  # the process's count when the run began
    audit: list[RemediationEntry] = field(default_factory=list)  # this run's remediation decisions
    moment: Moment = "check"  # check, nightly, provision, gate
    remediate: str = "off"  # --remediate
    gate: Gate | None = None  # --gate
    shard: Shard | None = None  # --shard
    t0: float = field(default_factory=time.monotonic)

    def item_info(self, item: pytest.Item) -> CheckItem | None:
        return item.stash.get(ITEM_KEY, None)

    def to_workerinput(self) -> dict[str, Any]:
        return {
            "targets": [n.to_dict() for n in self.targets],
            "all_nodes": [n.to_dict() for n in self.all_nodes],
            "run_id": self.run_id,
            "started": self.started.isoformat(),
            "control_dir": str(self.control_dir),
            "waivers": {k: {"node": m.node, "reason": m.reason, "until": m.until.isoformat()}
                        for k, m in self.waivers.items()},
            "warnings": self.warnings,
            "moment": self.moment,
        }

    @classmethod
    def from_workerinput(cls, config: pytest.Config, inventory: Inventory, report_dir: Path,
                         data: dict[str, Any]) -> Run:
        return cls(
            config=config, inventory=inventory, targets=[Node.from_dict(d) for d in data["targets"]],
            run_id=data["run_id"], started=dt.datetime.fromisoformat(data["started"]), report_dir=report_dir,
            control_dir=Path(data["control_dir"]),
            waivers={k: Maintenance(node=v["node"], reason=v["reason"], until=dt.date.fromisoformat(v["until"]))
                     for k, v in data["waivers"].items()},
            warnings=list(data["warnings"]), is_worker=True, all_nodes=[Node.from_dict(d) for d in data["all_nodes"]],
            moment=data["moment"],
        )


def get_run(config: pytest.Config) -> Run | None:
    return config.stash.get(RUN_KEY, None)


def need_run(config: pytest.Config) -> Run:
    run = get_run(config)
    if run is None:
        raise pytest.UsageError("no inventory; fix: pass --inventory FILE")
    return run
