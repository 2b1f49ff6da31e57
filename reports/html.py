"""report.html is pytest-html's report, extended through its hooks; this module holds those hooks and renders the
same page from a summary alone.

:class:`Hooks` is the suite's part of pytest-html's page: the results table's columns (node, outcome with
blocked, waived, remediated..., severity, remediation, runbook; the test cell carries the row's anchor), a
row's failure detail (an html extra), the title, and the summary section (the run's header; the node x check
matrix, remediations, waived nodes, trend and transport) from the run's summary. A pytest run registers them
through :class:`reports.pytest_html_hooks.HtmlReport`; :func:`render_page` replays a summary's records through
pytest-html's own classes, for what has no pytest session: ``alice-acceptance merge`` (shards), and a run whose
pytest-html did not render.

Why the replay drives pytest-html's classes instead of an in-process pytest run: ``write_reports`` may be called
inside a running pytest session (a nested pytest.main would share its capture, warnings, plugins, rootdir and
conftests), and a subprocess pays a pytest start-up with every plugin of the environment for each merge. The
classes (ReportData, SelfContainedReport, the template) see what they see in a run: the hook calls and one
TestReport per phase, each carrying the record's verdict, so the rows come out of the same code.

Self-contained (pytest-html's ``--self-contained-html``): style and script inline, no external resource; a
Content-Security-Policy allows only that script (by its hash), inline style, and data: images.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_html  # type: ignore[import-untyped]
from pytest_html import extras
from pytest_html.report_data import ReportData  # type: ignore[import-untyped]
from pytest_html.selfcontained_report import SelfContainedReport  # type: ignore[import-untyped]
from pytest_html.util import _process_css, _read_template  # type: ignore[import-untyped]

from reports.htmlview import (
    LABEL,
    STYLE,
    anchor,
    macro,
    macro_lines,
    one_line,
    outcome_class,
    remediation_text,
    root_anchor,
    summary_parts,
    title,
    verdict_of_record,
)
from reports.outcomes import CheckVerdict, attach, verdict_of
from reports.summary import as_json, atomic_write

RESOURCES = Path(pytest_html.__file__).parent / "resources"
SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
# the columns pytest-html makes (result, test, duration, links) and where this suite's go
COLUMNS = (("Node", "node", True), ("Outcome", "outcome", True), ("Severity", "severity", True))
AFTER_DURATION = (("Remediation", "remediation", False), ("Runbook", "runbook", False))


def _find(cells: list[str], marker: str, default: str) -> str:
    return next((c for c in cells if marker in c), default)


def table_header(cells: list[str]) -> None:
    """The table's header: result, test, node, outcome, severity, duration, remediation, runbook, links. The
    whole row is set here (and in :func:`table_row`), so that the cells always match the header."""
    result = _find(cells, 'data-column-type="result"', macro("table.jinja2", "th", "Result", "result", True))
    duration = _find(cells, 'data-column-type="duration"', macro("table.jinja2", "th", "Duration", "duration", True))
    links = _find(cells, ">Links<", "<th>Links</th>")
    cells[:] = [result, macro("table.jinja2", "th", "Test", "testId", True),
                *(macro("table.jinja2", "th", *c) for c in COLUMNS), duration,
                *(macro("table.jinja2", "th", *c) for c in AFTER_DURATION), links]


def table_row(report: pytest.TestReport, cells: list[str]) -> None:
    """A row: pytest-html's result, duration and links; the test id escaped (pytest-html does not), with the
    anchor the matrix links to on the row that decided the check; the verdict's node, outcome, severity,
    remediation and runbook."""
    v = verdict_of(report)
    test_id = report.nodeid if report.when == "call" else f"{report.nodeid}::{report.when}"
    decisive = v is not None and str(report.outcome) != "rerun"
    result = _find(cells, 'class="col-result"', "<td class=\"col-result\"></td>")
    duration = _find(cells, 'class="col-duration"', "<td class=\"col-duration\"></td>")
    links = _find(cells, 'class="col-links"', "<td class=\"col-links\"></td>")
    cells[:] = macro_lines(
        "table.jinja2", "row", one_line(result), one_line(test_id),
        anchor(v.check, v.node) if v is not None and decisive else "", one_line(v.node if v else ""),
        outcome_class(v.outcome) if v else "", LABEL.get(v.outcome, v.outcome) if v else "",
        one_line(v.severity if v else ""), one_line(duration), one_line((v.remediation or "") if v else ""),
        one_line(v.runbook if v else ""), one_line(links))


def detail_extra(v: CheckVerdict) -> dict[str, Any]:
    """The failure detail of a check that did not pass, as a pytest-html html extra."""
    html = macro("table.jinja2", "detail", v, outcome_class(v.outcome), LABEL.get(v.outcome, v.outcome),
                 f"#{root_anchor(v)}" if root_anchor(v) else "", remediation_text(v.remediation_detail))
    extra: dict[str, Any] = extras.html(html)
    return extra


def add_detail(report: pytest.TestReport) -> None:
    """Put the failure detail on the last report of a check (its teardown: pytest-html reads every phase's
    extras then, and the verdict is final)."""
    v = verdict_of(report)
    if v is None or v.outcome == "passed" or report.when != "teardown" or str(report.outcome) == "rerun":
        return
    report.extras = [*getattr(report, "extras", []), detail_extra(v)]  # type: ignore[attr-defined]


class Hooks:
    """pytest-html's hooks for this suite, the same for a run and for a replay; ``summary_data`` is the run's
    summary (JSON form) once it is written."""

    def __init__(self, summary: Mapping[str, Any] | None = None) -> None:
        self._summary = dict(summary) if summary is not None else None
        self._report_data: Any = None

    def summary_data(self) -> Mapping[str, Any] | None:
        return self._summary

    def pytest_html_report_title(self, report: Any) -> None:
        self._report_data = report  # the title is the run's: set with the summary, at the end
        report.title = "acceptance report"

    @pytest.hookimpl(trylast=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        table_header(cells)

    @pytest.hookimpl(trylast=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        table_row(report, cells)

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: Any) -> None:
        data = self.summary_data()
        if data is None:
            return
        if self._report_data is not None:
            self._report_data.title = title(data)
        head, sections = summary_parts(data)
        prefix.append(head)
        summary.append(sections)


def with_csp(page: str) -> str:
    """``page`` with a Content-Security-Policy that lets its own inline script run (by hash) and nothing else."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in SCRIPT.findall(page))
    scripts = hashes or "'none'"
    policy = (f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:; "
              "media-src data:; base-uri 'none'; form-action 'none'")
    return page.replace("<head>", "<head>\n    " + macro("table.jinja2", "csp", policy), 1)


# --------------------------------------------------------------------------- the replay


class _Environment:
    """The config's stash as pytest-html reads it: pytest-metadata's environment, under pytest-metadata's key."""

    def __init__(self, environment: dict[str, Any]) -> None:
        self.environment = environment

    def __getitem__(self, key: object) -> dict[str, Any]:
        return self.environment


class _Replay:
    """What pytest-html's classes read of a pytest Config: ini values, the hooks, pytest-metadata's stash."""

    INI: dict[str, Any] = {"max_asset_filename_length": 255, "render_collapsed": "passed", "initial_sort": "result",
                           "environment_table_redact_list": [], "generate_report_on_test": False}

    def __init__(self, hooks: Hooks, environment: dict[str, Any]) -> None:
        self.hook = self
        self.stash = _Environment(environment)
        self._hooks = hooks

    def getini(self, name: str) -> Any:
        return self.INI[name]

    def pytest_html_report_title(self, report: Any) -> None:
        self._hooks.pytest_html_report_title(report)

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        self._hooks.pytest_html_results_table_header(cells)

    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        self._hooks.pytest_html_results_table_row(report, cells)

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        return None

    def pytest_html_duration_format(self, duration: float) -> list[str]:
        return []  # pytest-html's own format

    def pytest_html_results_summary(self, **kwargs: Any) -> None:
        self._hooks.pytest_html_results_summary(**kwargs)


def replayed(record: Mapping[str, Any], nodeid: str) -> list[pytest.TestReport]:
    """The phase reports a run made for ``record`` (none for a check that never ran, nor for an outcome that is
    not one: the matrix shows it), carrying its verdict."""
    try:
        v = verdict_of_record(record)
    except ValueError:
        return []
    if v.outcome == "not_run":
        return []
    path, _, name = nodeid.rpartition("::")
    location = (path or nodeid, None, name)
    duration = float(record.get("duration_s") or 0.0)
    phases: list[tuple[Any, Any, Any, float]] = []
    if v.outcome in ("blocked", "waived"):
        phases.append(("setup", "skipped", (path or nodeid, 0, f"Skipped: {v.message}"), duration))
    else:
        failed = v.outcome in ("failed", "error")
        phases += [("setup", "passed", None, 0.0),
                   ("call", "failed" if failed else "passed", (v.message or v.outcome) if failed else None, duration)]
    phases.append(("teardown", "passed", None, 0.0))
    reports = [pytest.TestReport(nodeid, location, {}, outcome, longrepr, when, duration=d)
               for when, outcome, longrepr, d in phases]
    for report in reports:
        attach(report, v)
    add_detail(reports[-1])
    return reports


def render_page(summary: Mapping[str, Any]) -> str:
    """The report page of a summary (its JSON form, schema 2), rendered by pytest-html from the records."""
    data = as_json(summary)
    hooks = Hooks(data)
    config = _Replay(hooks, {"Cluster": data.get("cluster"), "Run": data.get("run_id"),
                             "Moment": data.get("moment"), "Inventory": data.get("inventory"),
                             "Rendered from": f"summary.json, schema {data.get('schema')}"})
    session = SimpleNamespace(config=config)
    css = _process_css(RESOURCES / "style.css", [STYLE])
    report = SelfContainedReport(Path(tempfile.gettempdir()) / "report.html", config, ReportData(config),
                                 _read_template([RESOURCES]), css)
    pages: list[str] = []
    report._write_report = pages.append  # the page, not a file: the caller writes it atomically
    report._suite_start_time = time.time() - float(data.get("duration_s") or 0.0)
    report.pytest_sessionstart(session)
    records = list(data.get("records") or ())
    report.pytest_collection_finish(SimpleNamespace(items=records))
    seen: set[str] = set()
    for record in records:
        nodeid = str(record.get("test_id") or f"{record.get('check')}[{record.get('node')}]")
        while nodeid in seen:
            nodeid += "'"
        seen.add(nodeid)
        for phase in replayed(record, nodeid):
            report.pytest_runtest_logreport(phase)
    report.pytest_sessionfinish(session)
    return with_csp(pages[-1])


def write_html(summary: Mapping[str, Any], path: Path) -> Path:
    """Write the report page of ``summary`` to ``path`` atomically."""
    return atomic_write(path, render_page(summary))
