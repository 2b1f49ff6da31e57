"""The one entry point the plugin calls at the end of a run: every report of the run, in its folder and in its
``latest`` folder; after a nightly, the report folder's history.

``<report_dir>/<run id>/`` gets ``report.html``, ``metrics.prom`` and ``summary.json`` (and ``junit.xml`` generated
from the records when asked: a merged night, which has no pytest session to write one), every file written
atomically (a temporary file and a rename). ``summary.json`` is written last, so that a reader that sees a new
summary also finds its page and metrics. The same files are copied to the run's ``latest`` folder:

- a nightly (moment ``nightly``, a whole run or merged shards): ``latest/``;
- a shard (its summary's ``shard`` set): none; its reports are only in its own run folder, so that the shards of
  a night, which share a report folder, never replace each other's (the merged night gets ``latest/``);
- another moment (``check``, ``provision``, ``gate``: ad-hoc runs): ``latest-<moment>/`` once a nightly has
  written ``latest/`` (an ad-hoc run never replaces the nightly's); in a folder no nightly has written ``latest/``
  of, ``latest/`` as before (the last run, whatever its moment).

After a nightly (shards included) :func:`reports.history.update` keeps the last ``keep`` nights' run folders and
(not after a shard) rewrites ``<report_dir>/index.html``, the nights' grid; a failure there is logged, never fatal.

Symlinks (see :func:`reports.summary.open_folder`): ``report_dir`` itself is the operator's and may be one; below it
nothing is written through one. A ``latest`` folder that is a symlink is replaced by a real folder (the link goes,
its target is untouched); a run folder that is a symlink is refused (:class:`ReportPathError`); a symlink at a
file's path is replaced by the new file. Files are created 0o666 less the umask (folders 0o777 less the umask).

report.html is pytest-html's page. Outside a pytest run (``alice-acceptance merge``, a summary read back) it
is rendered from the summary (:func:`reports.html.render_page`). In a run, pytest-html renders it after the
plugin has written the reports (its ``pytest_sessionfinish`` is trylast): :class:`reports.pytest_html_hooks.
HtmlReport` holds the pages back (:func:`hold_pages`) while pytest-html renders, with the summary written here,
trend included, for its summary section; then :func:`release` writes the page and the summaries, in that order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports import history as _history  # write_all's ``history`` is the trend's window
from reports.history import DEFAULT_KEEP, NIGHTLY
from reports.html import render_page
from reports.junit import junit_xml
from reports.metrics import metrics_text
from reports.read import load_summary
from reports.summary import (
    Links,
    ReportPathError,
    Summary,
    SummaryError,
    as_json,
    dumps,
    open_folder,
    run_dir,
    write_at,
)
from reports.trend import DEFAULT_FLIPS, DEFAULT_RUNS, trend_for

__all__ = ["DEFAULT_KEEP", "FILES", "Held", "ReportPathError", "hold_pages", "latest_name", "release", "write_all",
           "write_reports"]

log = logging.getLogger(__name__)

FILES = {"html": "report.html", "metrics": "metrics.prom", "summary": "summary.json"}
JUNIT = "junit.xml"


@dataclass
class Held:
    """The folders whose page and summary wait for pytest-html, and the summary they get."""

    summary: dict[str, Any] | None = None
    folders: list[Path] = field(default_factory=list)
    links: list[Links] = field(default_factory=list)  # each folder's symlink policy, for when it is opened again


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
    for name, data in ((FILES["html"], page), (FILES["summary"], text)):
        for folder, links in zip(held.folders, held.links, strict=True):
            _write_files(folder, links, {name: data})


def _write_files(folder: Path, links: Links, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` (name -> content, in that order) into ``folder``, opened once by its symlink policy."""
    fd = open_folder(folder, links)
    try:
        for name, data in files.items():
            write_at(fd, name, data)
    finally:
        os.close(fd)


def write_reports(summary: Summary | Mapping[str, Any], out_dir: Path, page: str | None = None, *,
                  links: Links = "follow", junit: bool = False) -> dict[str, Path]:
    """Write report.html (``page``, or rendered from the summary), metrics.prom and summary.json of ``summary``
    (as it is: no trend computed) into ``out_dir``, and junit.xml from its records when ``junit``; their paths by
    kind (``summary``, ``html``, ``metrics``, ``junit``). ``links``: what a symlink at ``out_dir`` gets
    (:func:`reports.summary.open_folder`; ``follow`` for a folder the operator named)."""
    data = as_json(summary)
    held = _HELD.get()
    paths = {kind: out_dir / name for kind, name in FILES.items()}
    now: dict[str, str | bytes] = {FILES["metrics"]: metrics_text(data)}
    if junit:
        now[JUNIT] = junit_xml(data)
        paths["junit"] = out_dir / JUNIT
    if held is not None:
        _write_files(out_dir, links, now)
        held.summary = data
        held.folders.append(out_dir)
        held.links.append(links)
        return paths
    _write_files(out_dir, links, {FILES["html"]: page if page is not None else render_page(data), **now,
                                  FILES["summary"]: dumps(data)})
    return paths


def _holds_nightly(folder: Path) -> bool:
    """Whether ``folder`` (a real folder, not followed) holds a nightly's summary."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        return load_summary(folder / FILES["summary"], follow=False).get("moment") == NIGHTLY
    except SummaryError:
        return False


def latest_name(report_dir: Path, summary: Mapping[str, Any]) -> str | None:
    """The name of the folder that gets a copy of the run's reports (see the module): ``latest``,
    ``latest-<moment>``, or None for a shard."""
    if summary.get("shard"):
        return None
    moment = str(summary.get("moment"))
    if moment == NIGHTLY or not _holds_nightly(report_dir / "latest"):
        return "latest"
    return f"latest-{moment}"


def write_all(summary: Summary | Mapping[str, Any], report_dir: Path, *, history: int = DEFAULT_RUNS,
              flips: int = DEFAULT_FLIPS, keep: int = DEFAULT_KEEP, junit: bool = False) -> dict[str, Path]:
    """Compute the trend against the previous runs in ``report_dir`` (window ``history``, the current run
    included; ``flips`` changes make a check flapping; ``history=0`` leaves the trend out), then write the
    run's reports under ``<report_dir>/<run id>/`` and its ``latest`` folder (:func:`latest_name`), junit.xml too
    when ``junit``; after a nightly, the history (``keep`` nights; 0 leaves run folders and index.html alone).

    Returns the run folder's paths: ``summary``, ``html``, ``metrics`` (``junit``), ``latest`` (the folder; absent
    for a shard) and ``index`` (after a whole nightly)."""
    data = as_json(summary)
    folder = run_dir(report_dir, str(data["run_id"]))
    if history > 0:
        try:  # skipped files were logged by the trend, once each
            data["trend"], _ = trend_for(data, report_dir, runs=history, flips=flips)
        except Exception as exc:  # the run's own reports matter more than its comparison with others
            log.warning("trend: not computed (%s: %s)", type(exc).__name__, exc)
            data["trend"] = None
    latest = latest_name(report_dir, data)
    page = None if _HELD.get() is not None else render_page(data)  # one page for both folders
    paths = write_reports(data, folder, page, links="refuse", junit=junit)
    if latest is not None:
        write_reports(data, report_dir / latest, page, links="replace", junit=junit)
        paths["latest"] = report_dir / latest
    if data.get("moment") == NIGHTLY and keep > 0:
        try:  # the night's own reports are written: old nights and the index must not undo that
            paths.update(_history.update(report_dir, data, keep=keep))
        except Exception as exc:
            log.warning("history: not updated (%s: %s)", type(exc).__name__, exc)
    return paths
