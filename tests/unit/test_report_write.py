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
                     "latest": tmp_path / "latest", "index": tmp_path / "index.html"}
    for name in ("summary.json", "report.html", "metrics.prom"):
        assert (run / name).read_bytes() == (tmp_path / "latest" / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20261126T030000Z-3f9a1c", "index.html", "latest"]
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


def test_a_corrupt_previous_summary_never_stops_the_runs_reports(tmp_path, caplog):
    """Point 5: every later run still writes its folder, latest/ and its metrics, with one warning per bad file."""
    from .test_report_trend import CORRUPT

    for i, text in enumerate(CORRUPT.values()):
        folder = tmp_path / f"20261120T0{i:02d}000Z-bad"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(text(), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        paths = write_all(build_summary(), tmp_path)
    for name in ("summary.json", "report.html", "metrics.prom"):
        assert (paths["summary"].parent / name).is_file() and (tmp_path / "latest" / name).is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == len(CORRUPT), warnings
    for i in range(len(CORRUPT)):
        assert sum(f"20261120T0{i:02d}000Z-bad" in w for w in warnings) == 1


def _victim(tmp_path):
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep")
    return victim


def test_a_latest_symlink_is_replaced_by_a_real_folder(tmp_path):
    """Point 6: latest/ is the suite's own copy; a symlink there is replaced, its target is left alone."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = tmp_path / "report"
    report.mkdir()
    (report / "latest").symlink_to(elsewhere, target_is_directory=True)
    paths = write_all(build_summary(), report)
    assert list(elsewhere.iterdir()) == []
    latest = report / "latest"
    assert not latest.is_symlink() and latest.is_dir()
    assert sorted(p.name for p in latest.iterdir()) == ["metrics.prom", "report.html", "summary.json"]
    assert (latest / "summary.json").read_bytes() == paths["summary"].read_bytes()


def test_a_run_folder_that_is_a_symlink_is_refused(tmp_path):
    """Point 6: the run's folder is new; a symlink under its name is refused, nothing is written through it."""
    from reports.write import ReportPathError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = tmp_path / "report"
    report.mkdir()
    (report / "20261126T030000Z-3f9a1c").symlink_to(elsewhere, target_is_directory=True)
    try:
        write_all(build_summary(), report)
    except ReportPathError as exc:
        message = str(exc)
    else:
        message = ""
    assert "20261126T030000Z-3f9a1c" in message and "symlink" in message and "\n" not in message
    assert list(elsewhere.iterdir()) == []


def test_report_files_replace_symlinks_never_write_through_them(tmp_path):
    """Point 6: a symlink at a report's path (or at the temporary name the metrics used) is replaced, not followed."""
    import os
    import threading

    victim = _victim(tmp_path)
    report = tmp_path / "report"
    run = report / "20261126T030000Z-3f9a1c"
    run.mkdir(parents=True)
    for name in ("summary.json", "report.html", "metrics.prom"):
        (run / name).symlink_to(victim)
    # prometheus_client's write_to_textfile wrote <path>.<pid>.<thread id> first: a name anyone could guess
    (run / f"metrics.prom.{os.getpid()}.{threading.get_ident()}").symlink_to(victim)
    write_all(build_summary(), report)
    assert victim.read_text() == "keep"
    for name in ("summary.json", "report.html", "metrics.prom"):
        assert not (run / name).is_symlink() and (run / name).stat().st_size > 100, name


def test_report_modes_follow_the_umask(tmp_path):
    """Point 6: files are created 0o666 & ~umask (never forced to 0644)."""
    import os
    import stat

    for umask, mode in ((0o077, 0o600), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            report = tmp_path / f"u{umask:o}"
            paths = write_all(build_summary(), report)
        finally:
            os.umask(old)
        for folder in (paths["summary"].parent, report / "latest"):
            for name in ("summary.json", "report.html", "metrics.prom"):
                assert stat.S_IMODE((folder / name).stat().st_mode) == mode, (umask, folder, name)


def test_the_audit_log_refuses_a_symlink(tmp_path):
    """Point 6: audit.jsonl is opened O_NOFOLLOW|O_APPEND|O_CREAT; a symlink there is refused with one clear line."""
    import pytest

    from remediation.audit import AuditError, AuditLog

    victim = _victim(tmp_path)
    report = tmp_path / "report"
    report.mkdir()
    (report / "audit.jsonl").symlink_to(victim)
    log = AuditLog(report, "20261126T030000Z-3f9a1c", "safe")
    with pytest.raises(AuditError, match=r"audit.jsonl.*symlink") as info:
        log.record(node="alibuild01", check="agent.units.docker", action="unit.restart", verdict="started")
    assert "\n" not in str(info.value) and "fix:" in str(info.value)
    assert victim.read_text() == "keep"
    (report / "audit.jsonl").unlink()
    run = report / "20261126T030000Z-3f9a1c"
    run.mkdir()
    (run / "audit.jsonl").symlink_to(victim)
    with pytest.raises(AuditError, match="symlink"):
        log.record(node="alibuild01", check="agent.units.docker", action="unit.restart", verdict="started")
    assert victim.read_text() == "keep"
    (run / "audit.jsonl").unlink()
    entry = log.record(node="alibuild01", check="agent.units.docker", action="unit.restart", verdict="started")
    for path in (report / "audit.jsonl", run / "audit.jsonl"):
        assert [json.loads(line) for line in path.read_text().splitlines()][-1] == entry
