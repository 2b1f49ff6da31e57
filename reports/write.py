"""The one entry point the plugin calls at the end of a run: every report of the run, in its folder and in
``latest/``.

``<report_dir>/<run id>/`` and ``<report_dir>/latest/`` each get ``summary.json``, ``report.html`` and
``metrics.prom``, every file written atomically (a temporary file and a rename). ``summary.json`` is written
last, so that a reader that sees a new summary also finds its page and metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reports.html import write_html
from reports.metrics import write_metrics
from reports.summary import Summary, as_json, atomic_write, dumps, run_dir
from reports.trend import DEFAULT_FLIPS, DEFAULT_RUNS, trend_for

log = logging.getLogger(__name__)

FILES = {"html": "report.html", "metrics": "metrics.prom", "summary": "summary.json"}


def write_reports(summary: Summary | Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write summary.json, report.html and metrics.prom of ``summary`` (as it is: no trend computed) into
    ``out_dir``; their paths by kind (``summary``, ``html``, ``metrics``)."""
    data = as_json(summary)
    paths = {
        "html": write_html(data, out_dir / FILES["html"]),
        "metrics": write_metrics(data, out_dir / FILES["metrics"]),
        "summary": atomic_write(out_dir / FILES["summary"], dumps(data)),
    }
    return paths


def write_all(summary: Summary | Mapping[str, Any], report_dir: Path, *, history: int = DEFAULT_RUNS,
              flips: int = DEFAULT_FLIPS) -> dict[str, Path]:
    """Compute the trend against the previous runs in ``report_dir`` (window ``history``, the current run
    included; ``flips`` changes make a check flapping; ``history=0`` leaves the trend out), then write the
    run's reports under ``<report_dir>/<run id>/`` and ``<report_dir>/latest/``.

    Returns the run folder's paths: ``summary``, ``html``, ``metrics``, and ``latest`` (the folder)."""
    data = as_json(summary)
    folder = run_dir(report_dir, str(data["run_id"]))
    if history > 0:
        data["trend"], skipped = trend_for(data, report_dir, runs=history, flips=flips)
        for line in skipped:
            log.warning("%s", line)
    paths = write_reports(data, folder)
    write_reports(data, report_dir / "latest")
    return {**paths, "latest": report_dir / "latest"}
