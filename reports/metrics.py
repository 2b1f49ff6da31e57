"""metrics.prom: the run in Prometheus text format, for node exporter's textfile collector.

Rendered with prometheus_client (a CollectorRegistry and ``generate_latest``) and written by
:func:`reports.summary.atomic_write` (a temporary file beside the target, then a rename: the collector never reads
half a file). Not with ``write_to_textfile``: its temporary name (``<path>.<pid>.<thread>``) can be guessed, and it
opens it following a symlink planted there. Every sample carries the
labels ``cluster`` and ``moment``, so that the files of a nightly and of a provisioning check can sit in the
same textfile folder without clashing. Metric names and the status encoding: reports/SCHEMA.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from reports.outcomes import OUTCOMES, RANK
from reports.summary import as_json, atomic_write, remediation_counts, totals

# acceptance_check_status: the outcome's rank, best (0) to worst (6), the order summary.json uses to merge
# the reports of one test. Higher is worse, so `max by (node) (acceptance_check_status)` is a node's worst
# state and `acceptance_check_status >= 4` selects what needs a look (blocked, failed, error).
STATUS_VALUES: dict[str, int] = dict(RANK)
STATUS_HELP = ("Outcome of one check on one node in the last run: "
               + ", ".join(f"{v} {o}" for o, v in sorted(STATUS_VALUES.items(), key=lambda kv: kv[1]))
               + " (higher is worse; >= 4 needs a look)")


def _epoch(iso: Any) -> float | None:
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def registry_for(summary: Mapping[str, Any]) -> CollectorRegistry:
    """A registry holding the run's metrics (see the module doc and SCHEMA.md)."""
    base = {"cluster": str(summary.get("cluster", "")), "moment": str(summary.get("moment", ""))}
    names = list(base)
    registry = CollectorRegistry(auto_describe=True)
    status = Gauge("acceptance_check_status", STATUS_HELP, [*names, "check", "node", "severity"],
                   registry=registry)
    for r in summary.get("records", ()):
        value = STATUS_VALUES.get(str(r.get("outcome")), STATUS_VALUES["error"])
        status.labels(**base, check=str(r.get("check", "")), node=str(r.get("node", "")),
                      severity=str(r.get("severity", ""))).set(value)

    checks = Gauge("acceptance_checks", "Checks of the last run per outcome (every outcome present)",
                   [*names, "outcome"], registry=registry)
    counts = totals(summary.get("records", ()))
    for outcome in OUTCOMES:
        checks.labels(**base, outcome=outcome).set(counts[outcome])

    remediations = Gauge("acceptance_remediations",
                         "Remediation decisions of the last run per verdict (every verdict present)",
                         [*names, "verdict"], registry=registry)
    for verdict, n in remediation_counts(summary.get("remediations", ())).items():
        remediations.labels(**base, verdict=verdict).set(n)

    def run_gauge(name: str, help_: str, value: float | None) -> None:
        gauge = Gauge(name, help_, names, registry=registry)
        if value is not None:
            gauge.labels(**base).set(value)

    run_gauge("acceptance_run_duration_seconds", "Wall-clock duration of the last run",
              float(summary.get("duration_s") or 0.0))
    finished = _epoch(summary.get("finished"))
    if finished is None:
        started = _epoch(summary.get("started"))
        finished = None if started is None else started + float(summary.get("duration_s") or 0.0)
    run_gauge("acceptance_run_timestamp_seconds",
              "Unix time at which the last run finished (alert when it gets old)", finished)
    exit_status = summary.get("exit_status")
    run_gauge("acceptance_run_exit_status",
              "pytest exit status of the last run: 0 all passed or waived, 1 some check failed or could not run, "
              "2 interrupted, 3 internal error, 4 bad input, 5 no check collected",
              float(exit_status) if isinstance(exit_status, int) else None)
    run_gauge("acceptance_run_interrupted", "1 when the last run was interrupted (some checks did not run)",
              1.0 if summary.get("interrupted") else 0.0)
    healthy = summary.get("healthy")
    run_gauge("acceptance_run_healthy",
              "1 when the last run finished and nothing failed, errored, was blocked or was left unrun",
              1.0 if healthy else 0.0)
    info = Gauge("acceptance_run_info", "The last run's id and summary schema (value 1)",
                 [*names, "run_id", "schema"], registry=registry)
    info.labels(**base, run_id=str(summary.get("run_id", "")), schema=str(summary.get("schema", ""))).set(1)
    return registry


def metrics_text(summary: Mapping[str, Any]) -> bytes:
    """The run's metrics in the text format."""
    return generate_latest(registry_for(as_json(summary)))


def write_metrics(summary: Mapping[str, Any], path: Path) -> Path:
    """Write the run's metrics to ``path`` (it should end in ``.prom``) atomically."""
    return atomic_write(path, metrics_text(summary))
