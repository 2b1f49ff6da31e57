from __future__ import annotations

import json

from reports.summary import Record, Records, Summary, blocked_by_root, totals, write_summary


def rec(check, node, outcome, **kw):
    return Record(check=check, node=node, outcome=outcome, severity="major", test_id=f"{check}[{node}]", **kw)


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
               rec("node.ping", "m1", "waived"), rec("node.ping", "m2", "passed"), rec("x", "m2", "error")]
    assert totals(records) == {"passed": 1, "failed": 2, "blocked": 3, "error": 1, "waived": 1, "remediated": 0,
                              "not_run": 0}
    assert blocked_by_root(records) == {"node.ssh[a1]": 2, "node.ping[a2]": 1}


def test_write_summary_run_folder_and_latest(tmp_path):
    summary = Summary(run_id="20261126T030000Z-abcdef", cluster="alicelab", inventory="/x/inv.yaml",
                      started="2026-11-26T03:00:00+00:00", duration_s=1.23456,
                      records=[rec("node.ssh", "a1", "failed", message="timeout")], exit_status=1,
                      warnings=["w"], nodes=[{"name": "a1"}])
    path = write_summary(summary, tmp_path)
    assert path == tmp_path / "20261126T030000Z-abcdef" / "summary.json"
    data = json.loads(path.read_text())
    assert data == json.loads((tmp_path / "latest" / "summary.json").read_text())
    assert data["schema"] == 1
    assert set(data) >= {"schema", "run_id", "started", "duration_s", "inventory", "records", "totals", "warnings"}
    assert data["duration_s"] == 1.235
    assert set(data["records"][0]) >= {"check", "node", "outcome", "severity", "message", "duration_s", "blocked_by"}
