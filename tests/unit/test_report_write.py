"""reports.write_all: the one call at the end of a run: trend, then summary.json, report.html, metrics.prom in the
run's folder and in latest/."""

from __future__ import annotations

import json
import logging

import reports
from reports import write_all
from reports.summary import Record, Records, Summary, blocked_by_root, totals, write_summary  # the plugin's API

from .test_report_synthetic import build_summary


def test_write_all_writes_the_run_folder_and_latest(tmp_path):
    paths = write_all(build_summary(), tmp_path)
    run = tmp_path / "20261126T030000Z-3f9a1c"
    assert paths == {"summary": run / "summary.json", "html": run / "report.html", "metrics": run / "metrics.prom",
                     "latest": tmp_path / "latest"}
    for name in ("summary.json", "report.html", "metrics.prom"):
        assert (run / name).read_bytes() == (tmp_path / "latest" / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261126T030000Z-3f9a1c", "latest"]
    assert sorted(p.name for p in run.iterdir()) == ["metrics.prom", "report.html", "summary.json"]
    data = json.loads(paths["summary"].read_text())
    assert data["trend"]["previous_run"] is None


def test_the_second_night_is_compared_with_the_first(tmp_path):
    write_all(build_summary(run_id="20261125T030000Z-aaaaaa", started="2026-11-25T03:00:00+00:00",
                            overrides={("agent.build.free", "alibuild29"): "passed"}), tmp_path)
    paths = write_all(build_summary(), tmp_path, history=7)
    data = json.loads(paths["summary"].read_text())
    assert data["trend"]["previous_run"] == "20261125T030000Z-aaaaaa"
    assert [(e["check"], e["node"]) for e in data["trend"]["new_failures"]] == [("agent.build.free", "alibuild29")]
    assert "alibuild29" in paths["html"].read_text().split('id="trend-new_failures"')[1]
    latest = json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert latest == data


def test_history_zero_leaves_the_trend_out_and_a_dict_works_too(tmp_path):
    paths = write_all(build_summary().to_json(), tmp_path, history=0)
    assert json.loads(paths["summary"].read_text())["trend"] is None


def test_unreadable_history_is_logged_not_fatal(tmp_path, caplog):
    (tmp_path / "20261120T030000Z-broken").mkdir(parents=True)
    (tmp_path / "20261120T030000Z-broken" / "summary.json").write_text("not json")
    with caplog.at_level(logging.WARNING):
        paths = write_all(build_summary(), tmp_path)
    assert paths["summary"].is_file()
    assert any("20261120T030000Z-broken" in r.getMessage() for r in caplog.records)


def test_the_plugin_api_stays_importable():
    assert callable(reports.write_all) and callable(write_summary) and callable(totals) and callable(blocked_by_root)
    records = Records()
    records.add(Record(check="node.ping", node="a1", outcome="passed", severity="critical"))
    summary = Summary(run_id="r1", cluster="c", inventory="/i", started="2026-11-26T03:00:00+00:00", duration_s=1.0,
                      records=list(records), exit_status=0)
    assert summary.to_json()["healthy"] is True


def test_reports_never_imports_acceptance():
    import ast
    from pathlib import Path

    for path in Path(reports.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "acceptance" or n.startswith("acceptance.") for n in names), path
