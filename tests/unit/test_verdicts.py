"""The typed verdict: its JSON round trip (the xdist wire format) and how a report carries it."""

from __future__ import annotations

import pytest

from reports.outcomes import ATTRIBUTE, CheckVerdict, attach, verdict_of

FULL = CheckVerdict(outcome="remediated", message="dsmcad active again", check="master.backup", node="alimesos01",
                    severity="major", root=None, remediation="restart_backup", role="master", kind="vm",
                    runbook="Masters: backups", first_message="dsmcad inactive",
                    remediation_detail={"action": "unit.restart", "mode": "safe", "verdict": "taken", "guardrail": None,
                                        "before": "inactive", "after": "active", "duration_s": 1.5})


def test_a_verdict_survives_its_json_form():
    assert CheckVerdict.from_json(FULL.to_json()) == FULL
    blocked = CheckVerdict("blocked", "blocked by node.ssh: refused", "agent.docker", "alibuild01", "critical",
                           root="node.ssh")
    assert CheckVerdict.from_json(blocked.to_json()) == blocked


def test_an_unknown_outcome_is_refused_and_unknown_keys_ignored():
    data = FULL.to_json()
    assert CheckVerdict.from_json({**data, "added_by_a_newer_worker": 1}) == FULL
    with pytest.raises(ValueError, match="unknown outcome 'green'"):
        CheckVerdict.from_json({**data, "outcome": "green"})


def test_a_report_carries_the_verdict_as_an_object_or_its_json():
    report = pytest.TestReport("x::y", ("x", 1, "y"), {}, "passed", None, "call")
    assert verdict_of(report) is None
    attach(report, FULL)
    assert verdict_of(report) is FULL
    setattr(report, ATTRIBUTE, FULL.to_json())  # as a report log or an unhooked deserialization leaves it
    assert verdict_of(report) == FULL
    attach(report, None)
    assert verdict_of(report) is None and not hasattr(report, ATTRIBUTE)


def test_only_the_run_keeping_outcomes_pass():
    assert FULL.passing
    assert not CheckVerdict("waived", "maintenance", "node.ping", "alibuild02", "critical").passing
    assert not CheckVerdict("error", "HTML page", "api.nomad.reachable", "cluster", "critical").passing
