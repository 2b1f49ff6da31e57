"""Merging the shards of one run gives the summary the unsharded run would have written."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from reports.merge import MergeError, common_run_id, main, merge_summaries, worst_exit
from reports.summary import write_summary

from .test_report_synthetic import build_summary

ROOT = Path(__file__).resolve().parents[2]


def split(full: dict, count: int) -> list[dict]:
    """The summaries ``count`` shards of ``full``'s run would write: each a disjoint slice of the nodes (the
    pseudo-node ``cluster`` with shard 1), its own run id, start and duration (the longest is the run's)."""
    nodes = [n for n in full["nodes"] if n["name"] != "cluster"]
    slices = [nodes[i::count] for i in range(count)]
    slices[0].insert(0, next(n for n in full["nodes"] if n["name"] == "cluster"))
    started = datetime.fromisoformat(full["started"])
    shards = []
    for i, part in enumerate(slices, start=1):
        names = {n["name"] for n in part}
        records = [r for r in full["records"] if r["node"] in names]
        interrupted = any(r["outcome"] == "not_run" for r in records)
        duration = full["duration_s"] - (0 if i == count else 7.5 * i)
        start = started + timedelta(seconds=0 if i == 1 else 0.5 * i)
        if i == count:  # the longest shard also ends last
            start = started
        api_requests = {k: v // count + (v % count if i == 1 else 0)
                        for k, v in full["transport"]["api_requests"].items()}
        shard = copy.deepcopy(full)
        shard.update(
            run_id=f"{full['run_id']}-s{i}of{count}", shard={"index": i, "count": count},
            started=start.isoformat(), finished=(start + timedelta(seconds=duration)).isoformat(), duration_s=duration,
            nodes=part, records=records, interrupted=interrupted,
            exit_status=2 if interrupted else (1 if any(r["outcome"] == "failed" for r in records) else 0),
            remediations=[e for e in full["remediations"] if e["node"] in names],
            transport={"nodes": {k: v for k, v in full["transport"]["nodes"].items() if k in names},
                       "api_requests": api_requests},
        )
        shards.append(shard)
    return shards


@pytest.fixture
def full():
    data = build_summary().to_json()
    data["finished"] = (datetime.fromisoformat(data["started"]) + timedelta(seconds=data["duration_s"])).isoformat()
    return data


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_merged_shards_equal_the_single_run(full, count):
    shards = split(full, count)
    assert sum(len(s["records"]) for s in shards) == len(full["records"])
    merged = merge_summaries(list(reversed(shards)))  # any order
    if count == 1:  # one shard of one: the summary as it is, minus the shard
        merged["run_id"], merged["shard"] = full["run_id"], None
    assert merged == full


def test_merged_summary_is_the_same_bytes_whatever_the_order(full):
    shards = split(full, 3)
    a = json.dumps(merge_summaries(shards))
    b = json.dumps(merge_summaries([shards[2], shards[0], shards[1]]))
    assert a == b


def test_a_check_reported_by_several_shards_keeps_its_worst_outcome(full):
    shards = split(full, 2)
    cluster = [r for r in shards[0]["records"] if r["node"] == "cluster"]
    worse = copy.deepcopy(cluster)
    for r in worse:
        if r["check"] == "cluster.nomad.leader":
            r.update(outcome="error", message="Nomad API timed out")
    shards[1]["records"] += worse
    merged = merge_summaries(shards)
    leader = [r for r in merged["records"] if (r["check"], r["node"]) == ("cluster.nomad.leader", "cluster")]
    assert [r["outcome"] for r in leader] == ["error"]
    assert len(merged["records"]) == len(full["records"])
    assert merged["totals"]["error"] == full["totals"]["error"] + 1


def test_a_missing_shard_makes_the_run_interrupted(full):
    full = build_summary(interrupted=False).to_json()
    shards = split(full, 3)
    assert all(s["exit_status"] in (0, 1) for s in shards)
    merged = merge_summaries([shards[0], shards[2]])
    assert merged["interrupted"] and merged["exit_status"] == 2 and not merged["healthy"]
    assert "shard 2/3 missing: the nodes of that shard were not checked" in merged["warnings"]


@pytest.mark.parametrize(("change", "error"), [
    (lambda s: s[1].update(cluster="alice-test"), "disagree on the cluster"),
    (lambda s: s[1].update(moment="provision"), "disagree on the moment"),
    (lambda s: s[1].update(shard={"index": 1, "count": 2}), "shard 1 given twice"),
    (lambda s: s[1].update(shard={"index": 2, "count": 3}), "disagree on their count"),
    (lambda s: s[1].update(shard=None), "is not a shard"),
    (lambda s: s[1].update(schema=1), "schema 1"),
    (lambda s: s[1].update(run_id="x"), "share no prefix"),
])
def test_summaries_that_are_not_shards_of_one_run_are_refused(full, change, error):
    shards = split(full, 2)
    change(shards)
    with pytest.raises(MergeError, match=error):
        merge_summaries(shards)
    with pytest.raises(MergeError, match="no summary"):
        merge_summaries([])


def test_worst_exit_status_and_common_prefix():
    assert worst_exit([0, 5]) == 0 and worst_exit([5, 5]) == 5 and worst_exit([0, 1]) == 1
    assert worst_exit([1, 2, 0]) == 2 and worst_exit([2, 4]) == 4 and worst_exit([4, 3]) == 3
    assert worst_exit([None, 0]) == 0 and worst_exit([None]) is None and worst_exit([0, 77]) == 77
    assert common_run_id(["20261126T030000Z-3f9a1c-s1of2", "20261126T030000Z-3f9a1c-s2of2"]) == \
        "20261126T030000Z-3f9a1c"


def write_shards(full: dict, tmp_path: Path, count: int = 2) -> list[Path]:
    return [write_summary(s, tmp_path / "shards" / str(i)) for i, s in enumerate(split(full, count))]


def test_cli_writes_the_reports_into_out_dir(full, tmp_path, capsys):
    paths = write_shards(full, tmp_path)
    history = tmp_path / "history"
    before = build_summary(run_id="20261125T030000Z-aaaaaa", started="2026-11-25T03:00:00+00:00",
                           overrides={("agent.build.free", "alibuild29"): "passed"}).to_json()
    write_summary(before, history)
    out = tmp_path / "out"
    assert main([str(out), *map(str, paths), "--history-dir", str(history)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "metrics.prom", "report.html", "summary.json"]
    merged = json.loads((out / "summary.json").read_text())
    assert merged["run_id"] == full["run_id"] and merged["records"] == full["records"]
    assert merged["trend"]["previous_run"] == "20261125T030000Z-aaaaaa"
    assert {"check": "agent.build.free", "node": "alibuild29", "outcome": "failed", "previous": "passed"} in \
        merged["trend"]["new_failures"]
    assert full["run_id"] in (out / "report.html").read_text()
    assert 'acceptance_checks{cluster="alice-prod"' in (out / "metrics.prom").read_text()
    assert str(out / "summary.json") in capsys.readouterr().out


def test_cli_says_what_is_wrong_in_one_line(full, tmp_path):
    paths = write_shards(full, tmp_path)
    (tmp_path / "bad.json").write_text("[]")
    proc = subprocess.run([sys.executable, "-m", "reports.merge", str(tmp_path / "out"), str(paths[0]),
                           str(tmp_path / "bad.json")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 4
    line = one_line(proc.stderr)
    assert line.startswith(f"alice-acceptance merge: {tmp_path / 'bad.json'}: not a summary (a JSON object is "
                           "expected, not a list); fix: ")
    assert not (tmp_path / "out").exists()


PROG = "alice-acceptance merge: "


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PROG) and "; fix: " in lines[0], err
    return lines[0]


def test_an_unknown_outcome_is_bad_input_never_healthy(tmp_path, capsys):
    """Point 7: a record whose outcome is not one of the vocabulary used to drop out of the totals (HEALTHY)."""
    clean = build_summary(scenario={}, unreachable=(), waived=(), interrupted=False).to_json()
    shards = split(clean, 2)
    assert merge_summaries(shards)["healthy"]
    shards[1]["records"][0]["outcome"] = "skipped"
    paths = [write_summary(s, tmp_path / "shards" / str(i)) for i, s in enumerate(shards)]
    out = tmp_path / "out"
    assert main([str(out), *map(str, paths)]) == 4
    line = one_line(capsys.readouterr().err)
    assert f"{paths[1]}: records[0].outcome: unknown outcome 'skipped'" in line
    assert not out.exists()
    with pytest.raises(MergeError, match="unknown outcome 'skipped'"):
        merge_summaries(shards)


def _record(shard: dict, **change) -> None:
    shard["records"][0].update(change)


@pytest.mark.parametrize(("change", "what"), [
    (lambda s: s.update(records=[1]), "records[0]: int, expected an object"),
    (lambda s: _record(s, node=7), "records[0].node: int, expected a string"),
    (lambda s: s.update(duration_s=float("nan")), "NaN"),
    (lambda s: s.update(records={}), "records: object, expected a list"),
    (lambda s: s.update(transport={"nodes": {}, "api_requests": {"nomad": "many"}}),
     "transport.api_requests['nomad']: string, expected a whole number"),
], ids=["record-not-object", "node-not-string", "nan", "records-not-list", "count-not-number"])
def test_a_hostile_shard_is_exit_4_with_one_line(full, tmp_path, capsys, change, what):
    """Point 7: no traceback, no exit 1 (checks failed): exit 4 (bad input) and one line naming the file."""
    shards = split(full, 2)
    change(shards[1])
    good = write_summary(shards[0], tmp_path / "good")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(shards[1]))
    assert main([str(tmp_path / "out"), str(good), str(bad)]) == 4
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"{PROG}{bad}: ") and what in line
    assert not (tmp_path / "out").exists()


def test_files_that_cannot_be_summaries_are_exit_4(full, tmp_path, capsys):
    """Point 7: missing, a folder, too big (the cap is 64 MiB), not UTF-8: exit 4 and one line each."""
    good = write_shards(full, tmp_path)[0]
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"cluster": "\xe9"}')
    for path, what in ((tmp_path / "missing.json", "No such file"), (tmp_path, "a folder"),
                       (big, "more than the 64 MiB"), (latin, "not UTF-8")):
        assert main([str(tmp_path / "out"), str(good), str(path)]) == 4, path
        assert what in one_line(capsys.readouterr().err), path
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--bogus"], ["--runs", "many"], ["--runs", "0"], []])
def test_bad_options_are_exit_4_with_one_line(full, tmp_path, capsys, argv):
    """Point 7: argparse exited 2 on a bad option; the suite's code for bad input is 4, with one line."""
    paths = [str(p) for p in write_shards(full, tmp_path)] if argv else []
    assert main([str(tmp_path / "out"), *paths, *argv] if argv else []) == 4
    one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_valid_usage_with_history_dir_and_runs(full, tmp_path, capsys):
    paths = write_shards(full, tmp_path)
    history = tmp_path / "history"
    for day in (23, 24, 25):
        write_summary(build_summary(run_id=f"202611{day}T030000Z-aaaaaa", started=f"2026-11-{day}T03:00:00+00:00")
                      .to_json(), history)
    out = tmp_path / "out"
    assert main([str(out), str(paths[0]), "--runs", "3", str(paths[1]), "--history-dir", str(history)]) == 0
    merged = json.loads((out / "summary.json").read_text())
    assert merged["trend"]["runs"] == 3 and merged["trend"]["compared_runs"] == [
        "20261125T030000Z-aaaaaa", "20261124T030000Z-aaaaaa"]
    assert capsys.readouterr().err == ""
