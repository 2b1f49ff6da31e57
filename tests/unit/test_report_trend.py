"""The trend over a sequence of runs: new failures, fixed, still failing, flapping; history from the report folder."""

from __future__ import annotations

import json
import logging

from reports.summary import write_summary
from reports.trend import compute_trend, count_changes, load_history, trend_for

from .test_report_synthetic import build_summary

DOCKER = ("agent.units.docker", "alibuild09")
PUPPET = ("node.puppet.clean", "alibuild05")
FREE = ("agent.build.free", "alibuild29")


def night(day: int, overrides=None, **kw):
    """The summary of the night of 2026-11-<day> (default scenario: the same failures every night)."""
    return build_summary(run_id=f"202611{day:02d}T030000Z-{day:06x}", started=f"2026-11-{day:02d}T03:00:00+00:00",
                         overrides=overrides, interrupted=False, seed=day, **kw).to_json()


def keys(entries):
    return [(e["check"], e["node"]) for e in entries]


# DOCKER flaps: failed, passed, failed, passed, failed (oldest to newest); PUPPET fails on nights 1 and 2 only;
# FREE fails only tonight (the default scenario).
SEQUENCE = [
    {DOCKER: "failed", PUPPET: "failed", FREE: "passed"},
    {DOCKER: "passed", PUPPET: "failed", FREE: "passed"},
    {DOCKER: "failed", FREE: "passed"},
    {DOCKER: "passed", FREE: "passed"},
    {DOCKER: "failed"},
]


def runs():
    summaries = [night(20 + i, ov) for i, ov in enumerate(SEQUENCE)]
    return summaries[-1], list(reversed(summaries[:-1]))  # current, history newest first


def test_new_fixed_still_failing_and_flapping():
    current, history = runs()
    trend = compute_trend(current, history)
    assert trend["previous_run"] == history[0]["run_id"]
    assert trend["compared_runs"] == [h["run_id"] for h in history]
    assert keys(trend["new_failures"]) == [DOCKER, FREE]
    assert trend["new_failures"][0] == {"check": DOCKER[0], "node": DOCKER[1], "outcome": "failed",
                                        "previous": "passed"}
    assert trend["fixed"] == []
    still = {(e["check"], e["node"]): e for e in trend["still_failing"]}
    assert ("master.backup.recent", "alimesos02") in still and DOCKER not in still
    backup = still[("master.backup.recent", "alimesos02")]
    assert backup["failing_runs"] == 5 and backup["since_run"] == history[-1]["run_id"]
    assert backup["since"] == "2026-11-20T03:00:00+00:00"
    assert keys(trend["flapping"]) == [DOCKER]
    assert trend["flapping"][0]["changes"] == 4
    assert trend["flapping"][0]["history"] == ["failed", "passed", "failed", "passed", "failed"]


def test_fixed_and_streak_length():
    current, history = runs()
    tonight = night(25, {PUPPET: "passed"})  # the puppet failure of the first nights is long gone
    yesterday = night(24, {PUPPET: "failed"})
    trend = compute_trend(tonight, [yesterday, current, *history])
    assert keys(trend["fixed"]) == [PUPPET]
    assert trend["fixed"][0]["previous"] == "failed" and trend["fixed"][0]["outcome"] == "passed"


def test_the_window_bounds_flapping_and_streaks():
    current, history = runs()
    trend = compute_trend(current, history, runs=3, flips=2)
    assert trend["compared_runs"] == [h["run_id"] for h in history[:2]]
    assert keys(trend["flapping"]) == [DOCKER] and trend["flapping"][0]["history"] == ["failed", "passed", "failed"]
    backup = next(e for e in trend["still_failing"] if e["node"] == "alimesos02")
    assert backup["failing_runs"] == 3


def test_unknown_outcomes_neither_fix_nor_flap():
    history = [night(21, {DOCKER: "failed"})]
    for outcome in ("blocked", "waived", "not_run"):
        trend = compute_trend(night(22, {DOCKER: outcome}), history)
        assert DOCKER not in keys(trend["fixed"]) + keys(trend["still_failing"]) + keys(trend["new_failures"])
    assert count_changes(["failed", None, "blocked", "failed", "passed"]) == 1
    assert count_changes(["passed", "remediated", "passed"]) == 2
    assert count_changes(["failed", "error", "failed"]) == 0


def test_a_check_with_no_previous_record_is_a_new_failure():
    trend = compute_trend(night(22, {("node.ping", "alibuild36"): "failed"}), [night(21)])
    assert {"check": "node.ping", "node": "alibuild36", "outcome": "failed", "previous": "passed"} in \
        trend["new_failures"]
    history = [night(21)]
    history[0]["records"] = [r for r in history[0]["records"] if r["node"] != "alibuild29"]
    trend = compute_trend(night(22), history)
    assert {"check": FREE[0], "node": FREE[1], "outcome": "failed", "previous": None} in trend["new_failures"]


def test_no_history_no_trend():
    trend = compute_trend(night(22), [])
    assert trend["previous_run"] is None
    assert trend["new_failures"] == trend["fixed"] == trend["still_failing"] == trend["flapping"] == []


def test_history_from_the_report_folder(tmp_path, caplog):
    for i, ov in enumerate(SEQUENCE[:-1]):
        write_summary(night(20 + i, ov), tmp_path)
    current = night(24, SEQUENCE[-1])
    # noise that must be skipped: another cluster, another moment, a shard, a later run, schema 1, garbage
    other = night(23, cluster="alice-test")
    other["run_id"] = "20261123T040000Z-bbbbbb"
    write_summary(other, tmp_path)
    provision = night(23)
    provision.update(run_id="20261123T120000Z-aaaaaa", moment="provision")
    write_summary(provision, tmp_path)
    shard = night(23)
    shard.update(run_id="20261123T030000Z-000017-s1of2", shard={"index": 1, "count": 2})
    write_summary(shard, tmp_path)
    write_summary(night(25), tmp_path)
    (tmp_path / "20261119T030000Z-old").mkdir()
    (tmp_path / "20261119T030000Z-old" / "summary.json").write_text(json.dumps({"schema": 1, "records": []}))
    (tmp_path / "20261118T030000Z-bad").mkdir()
    (tmp_path / "20261118T030000Z-bad" / "summary.json").write_text("{")
    with caplog.at_level(logging.WARNING, logger="reports.trend"):
        history = load_history(tmp_path, current)
    assert [h["run_id"] for h in history.summaries] == [night(d)["run_id"] for d in (23, 22, 21, 20)]
    assert len(history.skipped) == 2 and any("schema 1" in s for s in history.skipped)
    assert any("cannot be read" in s for s in history.skipped)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    trend, skipped = trend_for(current, tmp_path)
    assert trend == compute_trend(current, history.summaries) and skipped == history.skipped


def test_history_stops_at_the_window(tmp_path):
    for day in range(1, 16):
        write_summary(night(day), tmp_path)
    history = load_history(tmp_path, night(16), runs=4)
    assert [h["run_id"] for h in history.summaries] == [night(d)["run_id"] for d in (15, 14, 13)]
    assert load_history(tmp_path / "missing", night(16)).summaries == []


# A corrupt previous summary, as bytes: each used to end every later run in a traceback (or to pass unnoticed).
CORRUPT = {
    "a record that is not an object": lambda: json.dumps({**night(22), "records": [1]}),
    "a record without its outcome": lambda: json.dumps(
        {**night(22), "records": [{"check": "node.ping", "node": "alibuild01"}]}),
    "a summary that is a list": lambda: "[]",
    "NaN in a number": lambda: json.dumps({**night(22), "duration_s": float("nan")}),
    "truncated JSON": lambda: json.dumps(night(22))[:500],
    "records that are an object": lambda: json.dumps({**night(22), "records": {"a": 1}}),
    "a node that is a list": lambda: json.dumps(
        {**night(22), "records": [{**night(22)["records"][0], "node": ["x"]}]}),
    "an unknown outcome": lambda: json.dumps(
        {**night(22), "records": [{**night(22)["records"][0], "outcome": "skipped"}]}),
}


def test_a_corrupt_history_entry_is_skipped_with_one_warning(tmp_path, caplog):
    """Point 5: each corrupt summary is skipped with ONE warning naming the file; the trend compares with the rest."""
    write_summary(night(21), tmp_path)
    current = night(23)
    expected = compute_trend(current, [night(21)])
    for i, (what, text) in enumerate(CORRUPT.items()):
        folder = tmp_path / f"20261122T0{i:02d}000Z-bad"
        folder.mkdir()
        (folder / "summary.json").write_text(text(), encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            trend, skipped = trend_for(current, tmp_path)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and str(folder / "summary.json") in warnings[0], (what, warnings)
        assert "\n" not in warnings[0] and skipped == warnings, what
        assert trend == expected, what
        (folder / "summary.json").unlink()
        folder.rmdir()
