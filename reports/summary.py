"""summary.json: one record per check and node, written once per run by the pytest controller.

Schema: reports/SCHEMA.md (``"schema": 1``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1
Outcome = Literal["passed", "failed", "blocked", "error", "waived", "remediated", "not_run"]
OUTCOMES: tuple[str, ...] = ("passed", "failed", "blocked", "error", "waived", "remediated", "not_run")
# when two reports of one test disagree (setup/call/teardown), the worse one stays
_RANK = {"passed": 0, "remediated": 1, "waived": 2, "blocked": 3, "not_run": 3, "failed": 4, "error": 5}


@dataclass
class Record:
    check: str
    node: str
    outcome: str
    severity: str
    message: str = ""
    duration_s: float = 0.0
    blocked_by: str | None = None
    role: str = ""
    runbook: str = ""
    remediation: str | None = None
    test_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Records:
    """Records in arrival order, one per test id; later reports of the same test merge into it."""

    def __init__(self) -> None:
        self._by_id: dict[str, Record] = {}

    def add(self, record: Record) -> None:
        key = record.test_id or f"{record.check}[{record.node}]"
        old = self._by_id.get(key)
        if old is None:
            self._by_id[key] = record
            return
        old.duration_s = round(old.duration_s + record.duration_s, 3)
        if _RANK.get(record.outcome, 5) > _RANK.get(old.outcome, 5):
            old.outcome, old.message, old.blocked_by = record.outcome, record.message, record.blocked_by

    def __iter__(self) -> Any:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def totals(records: Iterable[Record]) -> dict[str, int]:
    counts = Counter(r.outcome for r in records)
    return {o: counts.get(o, 0) for o in OUTCOMES}


def blocked_by_root(records: Iterable[Record]) -> dict[str, int]:
    """'node.ssh[alibuild03]' -> how many checks it blocked."""
    counts: Counter[str] = Counter()
    for r in records:
        if r.outcome == "blocked" and r.blocked_by:
            # an API's root check (api.<name>.reachable) lives on the pseudo-node "cluster"
            node = "cluster" if r.blocked_by.startswith("api.") else r.node
            counts[f"{r.blocked_by}[{node}]"] += 1
    return dict(counts)


@dataclass
class Summary:
    run_id: str
    cluster: str
    inventory: str
    started: str  # ISO 8601, UTC
    duration_s: float
    records: Sequence[Record]
    exit_status: int | None = None
    warnings: Sequence[str] = ()
    nodes: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        records = list(self.records)
        return {
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id,
            "cluster": self.cluster,
            "inventory": self.inventory,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "exit_status": self.exit_status,
            "warnings": list(self.warnings),
            "totals": totals(records),
            "blocked_by": blocked_by_root(records),
            "nodes": list(self.nodes),
            "records": [r.to_json() for r in records],
        }


def write_summary(summary: Summary, report_dir: Path) -> Path:
    """Write ``<report_dir>/<run id>/summary.json`` and a copy at ``<report_dir>/latest/summary.json``."""
    data = json.dumps(summary.to_json(), indent=2, sort_keys=False) + "\n"
    run_path = report_dir / summary.run_id / "summary.json"
    for path in (run_path, report_dir / "latest" / "summary.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".summary-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, path)  # readers never see half a file
    return run_path
