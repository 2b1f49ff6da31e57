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


def test_cli_writes_the_three_reports(full, tmp_path, capsys):
    paths = write_shards(full, tmp_path)
    history = tmp_path / "history"
    before = build_summary(run_id="20261125T030000Z-aaaaaa", started="2026-11-25T03:00:00+00:00",
                           overrides={("agent.build.free", "alibuild29"): "passed"}).to_json()
    write_summary(before, history)
    out = tmp_path / "out"
    assert main([str(out), *map(str, paths), "--history-dir", str(history)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.prom", "report.html", "summary.json"]
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
    assert proc.stderr.strip().splitlines() == [f"reports.merge: {tmp_path / 'bad.json'}: not a summary "
                                                "(a JSON object is expected)"]
    assert not (tmp_path / "out").exists()
