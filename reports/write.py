"""The one entry point the plugin calls at the end of a run: every report of the run, in its folder and in
``latest/``.

``<report_dir>/<run id>/`` and ``<report_dir>/latest/`` each get ``report.html``, ``metrics.prom`` and
``summary.json``, every file written atomically (a temporary file and a rename). ``summary.json`` is written
last, so that a reader that sees a new summary also finds its page and metrics.

report.html is pytest-html's page. Outside a pytest run (``alice-acceptance merge``, a summary read back) it
is rendered from the summary (:func:`reports.html.render_page`). In a run, pytest-html renders it after the
plugin has written the reports (its ``pytest_sessionfinish`` is trylast): :class:`reports.pytest_html_hooks.
HtmlReport` holds the pages back (:func:`hold_pages`) while pytest-html renders, with the summary written here,
trend included, for its summary section; then :func:`release` writes the page and the summaries, in that order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.html import render_page
from reports.metrics import write_metrics
from reports.summary import Summary, as_json, atomic_write, dumps, run_dir
from reports.trend import DEFAULT_FLIPS, DEFAULT_RUNS, trend_for

log = logging.getLogger(__name__)

FILES = {"html": "report.html", "metrics": "metrics.prom", "summary": "summary.json"}


@dataclass
class Held:
    """The folders whose page and summary wait for pytest-html, and the summary they get."""

    summary: dict[str, Any] | None = None
    folders: list[Path] = field(default_factory=list)


_HELD: ContextVar[Held | None] = ContextVar("reports_held_pages", default=None)


@contextmanager
def hold_pages() -> Iterator[Held]:
    """Within: :func:`write_reports` writes the metrics and holds the page and the summary back (see
    :func:`release`)."""
    held = Held()
    token = _HELD.set(held)
    try:
        yield held
    finally:
        _HELD.reset(token)


def release(held: Held, page: str | None) -> None:
    """Write the held folders' report.html (``page``, or the summary's own rendering when pytest-html made none),
    then their summary.json."""
    if held.summary is None:
        return
    page = page if page is not None else render_page(held.summary)
    text = dumps(held.summary)
    for folder in held.folders:
        atomic_write(folder / FILES["html"], page)
    for folder in held.folders:
        atomic_write(folder / FILES["summary"], text)


def write_reports(summary: Summary | Mapping[str, Any], out_dir: Path, page: str | None = None) -> dict[str, Path]:
    """Write report.html (``page``, or rendered from the summary), metrics.prom and summary.json of ``summary``
    (as it is: no trend computed) into ``out_dir``; their paths by kind (``summary``, ``html``, ``metrics``)."""
    data = as_json(summary)
    held = _HELD.get()
    paths = {"html": out_dir / FILES["html"], "metrics": out_dir / FILES["metrics"],
             "summary": out_dir / FILES["summary"]}
    if held is not None:
        write_metrics(data, paths["metrics"])
        held.summary = data
        held.folders.append(out_dir)
        return paths
    atomic_write(paths["html"], page if page is not None else render_page(data))
    write_metrics(data, paths["metrics"])
    atomic_write(paths["summary"], dumps(data))
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
    page = None if _HELD.get() is not None else render_page(data)  # one page for both folders
    paths = write_reports(data, folder, page)
    write_reports(data, report_dir / "latest", page)
    return {**paths, "latest": report_dir / "latest"}
