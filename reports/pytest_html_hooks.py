"""pytest-html in a run of the suite: the plugin that makes its report the run's report.html.

Registered by ``alice_acceptance.plugin`` at configure (``--inventory`` runs), before pytest-html's own configure:

- pytest-html is switched on, self-contained, its page at ``<report_dir>/<run id>/report.html`` (unless
  ``--html`` names another file), this suite's style sheet appended (pytest-html's ``--css``);
- its hooks (:class:`reports.html.Hooks`) add the table's columns, and the summary section from the run's
  summary;
- every check that did not pass gets its failure detail as an html extra, on its last (teardown) report;
- at the end, pytest-html renders after the plugin has written the reports (its sessionfinish is trylast): this
  plugin's sessionfinish wrapper holds the run's page and summary back (:func:`reports.write.hold_pages`), so
  that the summary section shows the summary just computed, trend included; once pytest-html has written its
  page, the page (with its Content-Security-Policy) goes to the run's folder and its ``latest`` folder (none for a
  shard: :func:`reports.write.latest_name`), and summary.json after it, each atomically. Should pytest-html render
  nothing, the page is rendered from the summary.

On an xdist worker, and with ``--collect-only``, it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reports.html import Hooks, add_detail, with_csp
from reports.htmlview import STYLE
from reports.summary import run_dir
from reports.write import Held, hold_pages, release


class HtmlReport(Hooks):
    NAME = "reports.pytest_html_hooks"

    def __init__(self, config: pytest.Config, report_dir: Path, run_id: str) -> None:
        super().__init__()
        self.config = config
        option = config.option
        self.active = (config.pluginmanager.hasplugin("html") and hasattr(option, "htmlpath")
                       and not hasattr(config, "workerinput") and not getattr(option, "collectonly", False))
        self.page_path: Path | None = None
        self._held: Held | None = None
        self._rendered = False
        if not self.active:
            return
        if not option.htmlpath:
            option.htmlpath = str(run_dir(report_dir, run_id) / "report.html")
        option.self_contained_html = True
        if str(STYLE) not in option.css:
            option.css = [*option.css, str(STYLE)]
        # where pytest-html writes (its BaseReport resolves the path so)
        self.page_path = Path.cwd() / Path(os.path.expandvars(option.htmlpath)).expanduser()

    def summary_data(self) -> Mapping[str, Any] | None:
        return self._held.summary if self._held is not None else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.active:  # before pytest-html (trylast) reads the extras of the check's reports
            add_detail(report)

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str],
                                    session: Any) -> None:
        super().pytest_html_results_summary(prefix, summary, postfix, session)
        self._rendered = self.summary_data() is not None  # pytest-html writes its page right after

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> Generator[None, Any, Any]:
        if not self.active:
            return (yield)
        with hold_pages() as held:
            self._held = held
            try:
                return (yield)
            finally:
                self._held = None
                release(held, self._page())

    def _page(self) -> str | None:
        """pytest-html's page of this run, if it wrote one with the summary; with its CSP."""
        if not self._rendered or self.page_path is None or not self.page_path.is_file():
            return None
        return with_csp(self.page_path.read_text(encoding="utf-8"))
