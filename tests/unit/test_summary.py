from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from reports.read import load_summary  # the reader of summaries other runs wrote
from reports.summary import (
    OUTCOMES,
    SCHEMA_VERSION,
    Record,
    Records,
    Summary,
    SummaryError,
    as_outcome,
    atomic_write,
    blocked_by_root,
    is_healthy,
    totals,
    write_summary,
)

SCHEMA_MD = Path(__file__).resolve().parents[2] / "reports" / "SCHEMA.md"


def rec(check, node, outcome, **kw):
    return Record(check=check, node=node, outcome=outcome, severity="major", test_id=f"{check}[{node}]", **kw)


def summary(records, **kw):
    defaults = dict(run_id="20261126T030000Z-abcdef", cluster="alicelab", inventory="/x/inv.yaml",
                    started="2026-11-26T03:00:00+00:00", duration_s=1.23456, records=records, exit_status=1,
                    warnings=["w"], nodes=[{"name": "a1", "role": "agent"}])
    return Summary(**{**defaults, **kw})


def test_records_merge_phases_keeping_the_worst():
    records = Records()
    records.add(rec("agent.units.docker", "a1", "passed", duration_s=0.1))   # setup
    records.add(rec("agent.units.docker", "a1", "failed", message="down", duration_s=0.2))  # call
    records.add(rec("agent.units.docker", "a1", "passed", duration_s=0.1))   # teardown
    (only,) = list(records)
    assert (only.outcome, only.message, only.duration_s) == ("failed", "down", 0.4)


def test_totals_and_blocked_counts():
    records = [rec("node.ssh", "a1", "failed"), rec("node.puppet.clean", "a1", "blocked", blocked_by="node.ssh"),
               rec("agent.units.docker", "a1", "blocked", blocked_by="node.ssh"),
               rec("node.ping", "a2", "failed"), rec("node.ssh", "a2", "blocked", blocked_by="node.ping"),
               rec("node.ping", "m1", "waived"), rec("node.ping", "m2", "passed"), rec("x", "m2", "error"),
               rec("y", "m2", "not_run"), rec("cluster.nomad.leader", "cluster", "blocked",
                                              blocked_by="api.nomad.reachable")]
    assert totals(records) == {"passed": 1, "failed": 2, "blocked": 4, "error": 1, "waived": 1, "remediated": 0,
                               "not_run": 1}
    assert blocked_by_root(records) == {"node.ssh[a1]": 2, "node.ping[a2]": 1, "api.nomad.reachable[cluster]": 1}
    # the same from the JSON form
    assert totals([r.to_json() for r in records]) == totals(records)


def test_an_unknown_outcome_is_refused_not_dropped():
    assert as_outcome("not_run") == "not_run"
    with pytest.raises(ValueError, match="unknown outcome 'skipped'"):
        rec("node.ping", "a1", "skipped")


def test_write_summary_run_folder_and_latest(tmp_path):
    path = write_summary(summary([rec("node.ssh", "a1", "failed", message="timeout")]), tmp_path)
    assert path == tmp_path / "20261126T030000Z-abcdef" / "summary.json"
    data = json.loads(path.read_text())
    assert data == json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert data["schema"] == SCHEMA_VERSION == 2
    assert data["duration_s"] == 1.235
    assert data["finished"] == "2026-11-26T03:00:01.234560+00:00"
    assert (data["moment"], data["interrupted"], data["shard"], data["trend"]) == ("check", False, None, None)
    assert data["transport"] == {"nodes": {}, "api_requests": {}} and data["remediations"] == []
    assert set(data["records"][0]) == {"check", "node", "outcome", "severity", "message", "duration_s", "blocked_by",
                                       "role", "kind", "runbook", "remediation", "first_message",
                                       "remediation_detail", "test_id"}
    assert not list(tmp_path.glob("*/.*")), "no temporary file left behind"


def test_records_and_nodes_are_sorted_deterministically():
    records = [rec("b", "alibuild10", "passed"), rec("a", "alibuild2", "passed"), rec("a", "cluster", "passed"),
               rec("b", "alibuild2", "passed")]
    nodes = [{"name": "alibuild10", "role": "agent"}, {"name": "alimesos01", "role": "master"},
             {"name": "alibuild2", "role": "agent"}, {"name": "cluster", "role": "cluster"}]
    data = summary(records, nodes=nodes).to_json()
    assert [(r["node"], r["check"]) for r in data["records"]] == [
        ("alibuild2", "a"), ("alibuild2", "b"), ("alibuild10", "b"), ("cluster", "a")]
    assert [n["name"] for n in data["nodes"]] == ["cluster", "alimesos01", "alibuild2", "alibuild10"]


@pytest.mark.parametrize(("kw", "outcome", "healthy"), [
    ({"exit_status": 0}, "passed", True),
    ({"exit_status": 0}, "waived", True),
    ({"exit_status": 0}, "remediated", True),
    ({"exit_status": 0, "interrupted": True}, "passed", False),   # an interrupted run never reads as healthy
    ({"exit_status": 2}, "not_run", False),
    ({"exit_status": 0}, "not_run", False),
    ({"exit_status": 1}, "failed", False),
    ({"exit_status": 0}, "blocked", False),
    ({"exit_status": None}, "passed", False),
])
def test_healthy(kw, outcome, healthy):
    data = summary([rec("node.ping", "a1", "passed"), rec("node.ssh", "a1", outcome)], **kw).to_json()
    assert data["healthy"] is healthy is is_healthy(data)


def test_a_run_that_checked_nothing_is_not_healthy():
    assert summary([], exit_status=0).to_json()["healthy"] is False


def test_load_summary_refuses_other_schemas_and_garbage(tmp_path):
    good = write_summary(summary([rec("node.ping", "a1", "passed")]), tmp_path)
    assert load_summary(good)["run_id"] == "20261126T030000Z-abcdef"
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": 1, "run_id": "x", "records": []}))
    with pytest.raises(SummaryError, match="schema 1"):
        load_summary(old)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SummaryError, match="bad.json: cannot be read"):
        load_summary(bad)


@pytest.mark.parametrize("run_id", ["../etc", "latest", "latest-check", "", "a/b", ".hidden"])
def test_a_run_id_that_is_no_folder_name_is_refused(tmp_path, run_id):
    with pytest.raises(SummaryError, match="cannot name a report folder"):
        write_summary(summary([], run_id=run_id), tmp_path)


def test_atomic_write_replaces_and_leaves_nothing(tmp_path):
    path = tmp_path / "d" / "f.txt"
    atomic_write(path, "one")
    atomic_write(path, b"two")
    assert path.read_text() == "two" and os.listdir(path.parent) == ["f.txt"]


def test_schema_md_documents_every_key():
    """SCHEMA.md says what every key means: the summary's, a record's and the nested objects'."""
    text = SCHEMA_MD.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)`", text, flags=re.M))
    documented |= {k for cell in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)+) \|", text, flags=re.M)
                   for k in re.findall(r"`([a-z_]+)`", cell)}
    data = summary([rec("node.ping", "a1", "passed")]).to_json()
    nested = {"action", "mode", "verdict", "guardrail", "before", "after", "time", "reason", "index", "count",
              "connections", "round_trips", "commands", "live_commands", "api_requests", "new_failures", "fixed",
              "still_failing", "flapping", "previous_run", "compared_runs", "runs", "flap_threshold"}
    missing = (set(data) | set(data["records"][0]) | nested) - documented
    assert not missing, f"SCHEMA.md does not document {sorted(missing)}"
    assert f'"schema": {SCHEMA_VERSION}' in text
    for outcome in OUTCOMES:
        assert f"`{outcome}`" in text


def test_moment_and_shard_are_checked():
    with pytest.raises(ValueError, match="unknown moment 'daily'"):
        summary([], moment="daily")
    with pytest.raises(ValueError, match="shard 3/2"):
        summary([], shard={"index": 3, "count": 2})
    data = summary([], moment="gate", shard={"index": 2, "count": 2}).to_json()
    assert (data["moment"], data["shard"]) == ("gate", {"index": 2, "count": 2})
