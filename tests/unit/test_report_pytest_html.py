"""report.html of a real run is pytest-html's report, with this suite's columns, failure details and summary
section (pytester, the plugin on the fake ssh)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from .test_plugin import run, site  # noqa: F401  (the fixture)

pytest_plugins = ["pytester"]


def blob(page: str) -> dict[str, Any]:
    """pytest-html's test data (the JSON its script renders the results table from)."""
    match = re.search(r'data-jsonblob="([^"]*)"', page)
    assert match, "no pytest-html data in the page"
    data: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return data


def rows(page: str) -> list[dict[str, Any]]:
    return [row for runs in blob(page)["tests"].values() for row in runs]


def test_a_run_writes_pytest_htmls_report_with_the_suites_columns(pytester, site):  # noqa: F811
    result, summary = run(pytester, site, spec={"alimesos01": {"ping": False}})
    assert summary, result.stdout.str()
    folder = site["out"] / summary["run_id"]
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page == (site["out"] / "latest" / "report.html").read_text(encoding="utf-8")
    assert "pytest-html" in page and "Content-Security-Policy" in page
    head = re.findall(r"<th[^>]*>([^<]*)</th>", page.split('id="results-table-head"')[1].split("</thead>")[0])
    assert head == ["Result", "Test", "Node", "Outcome", "Severity", "Duration", "Remediation", "Runbook", "Links"]
    table = rows(page)
    assert all(len(r["resultsTableRow"]) == len(head) for r in table)
    by_outcome: dict[str, list[dict[str, Any]]] = {}
    for r in table:
        outcome = re.sub(r"<[^>]+>", "", r["outcome"])
        by_outcome.setdefault(outcome, []).append(r)
    assert {"blocked", "waived", "failed", "passed"} <= set(by_outcome), set(by_outcome)
    waived = by_outcome["waived"][0]
    assert waived["result"] == "Skipped" and waived["node"] == "alibuild02"
    assert any("disk swap INC0123" in e["content"] for e in waived["extras"])
    blocked = by_outcome["blocked"][0]
    assert blocked["node"] == "alimesos01"
    assert any("blocked by" in e["content"] and "node.ping" in e["content"] for e in blocked["extras"])
    failed = next(r for r in by_outcome["failed"] if "site.cvmfs.enabled" in r["testId"])
    assert "Creating a agent" in "".join(failed["resultsTableRow"])
    assert any("cvmfs is not enabled" in e["content"] for e in failed["extras"])
    # the summary section: the run's header and the matrix, with the summary written at the end of the run
    assert summary["run_id"] in page and 'table class="matrix"' in page and 'id="trend"' in page
    assert f"{summary['cluster']} acceptance {summary['run_id']}" in page.split("</title>")[0]
    assert json.loads((folder / "summary.json").read_text()) == summary


def test_held_pages_are_written_page_first_and_from_the_summary_without_pytest_html(tmp_path):
    from reports.write import hold_pages, release, write_all

    from .test_report_synthetic import build_summary

    data = build_summary().to_json()
    data["records"] = data["records"][:6]
    with hold_pages() as held:
        paths = write_all(data, tmp_path, history=0)
        assert paths["metrics"].is_file()  # at once: the plugin copies it to --metrics-textfile
        assert not paths["summary"].exists() and not paths["html"].exists()
    assert held.summary is not None and held.folders == [paths["summary"].parent, tmp_path / "latest"]
    release(held, None)  # pytest-html rendered nothing: the summary's own page
    for folder in held.folders:
        page, summary = folder / "report.html", folder / "summary.json"
        assert data["run_id"] in page.read_text() and "Content-Security-Policy" in page.read_text()
        assert page.stat().st_mtime_ns <= summary.stat().st_mtime_ns
