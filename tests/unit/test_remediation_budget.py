"""The retry budget and flap history (remediation/budget.py): spent only when an action runs, climbing only
after failed tries, stopped by "needs a human", and a fix that works is a flap, never a reset (issue 17, 6)."""

from __future__ import annotations

from typing import Any

from remediation import budget

WINDOW = 24 * 3600.0
RUNGS = ("restart_unit", "reboot_node", "hard_reboot")


def fresh() -> dict[str, Any]:
    return {"budget": {}, "flaps": {}, "drained": {}, "disruptive": [], "holds": {}}


def test_an_unspent_budget_starts_at_the_first_rung() -> None:
    assert budget.choose(fresh(), "k", RUNGS, 3, WINDOW, 1000.0) == ("restart_unit", None)


def test_choosing_spends_nothing_so_dry_runs_cannot_exhaust_it() -> None:
    state = fresh()
    for _ in range(10):
        budget.choose(state, "k", RUNGS, 3, WINDOW, 1000.0)
    assert state["budget"] == {}


def test_the_ladder_climbs_only_after_the_rung_below_was_spent() -> None:
    state = fresh()
    for t in range(3):
        budget.spend(state, "k", "restart_unit", WINDOW, 1000.0 + t)
    assert budget.choose(state, "k", RUNGS, 3, WINDOW, 1010.0) == ("reboot_node", None)
    for rung in RUNGS[1:]:
        for t in range(3):
            budget.spend(state, "k", rung, WINDOW, 1000.0 + t)
    rung, why = budget.choose(state, "k", RUNGS, 3, WINDOW, 1010.0)
    assert rung is None and why is not None and "budget is spent" in why and "needs a human" in why


def test_old_attempts_leave_the_window() -> None:
    state = fresh()
    for t in range(3):
        budget.spend(state, "k", "restart_unit", WINDOW, 1000.0 + t)
    assert budget.choose(state, "k", RUNGS, 3, WINDOW, 1000.0 + WINDOW + 10) == ("restart_unit", None)


def test_needs_a_human_stops_the_ladder() -> None:
    state = fresh()
    budget.needs_human(state, "k", "docker is not installed", 1000.0)
    rung, why = budget.choose(state, "k", RUNGS, 3, WINDOW, 1001.0)
    assert rung is None and why == "needs a human: docker is not installed"
    assert budget.choose(state, "k", RUNGS, 3, WINDOW, 1000.0 + WINDOW + 1)[0] == "restart_unit"


def test_a_failure_fixed_again_and_again_is_flapping() -> None:
    state = fresh()
    for t in range(3):
        budget.spend(state, "k", "restart_unit", WINDOW, 1000.0 + t)
        budget.fixed(state, "k", WINDOW, 1000.0 + t)
    assert state["budget"]["k"]["restart_unit"], "a fix must not reset the budget"
    rung, why = budget.choose(state, "k", RUNGS, 3, WINDOW, 1010.0)
    assert rung is None and why is not None and why.startswith("flapping: fixed 3 times")


def test_disruptive_actions_are_counted_per_role_within_the_window() -> None:
    state = fresh()
    budget.record_disruptive(state, {"node": "alibuild01", "role": "agent"}, WINDOW, 1000.0)
    budget.record_disruptive(state, {"node": "alimesos01", "role": "master"}, WINDOW, 1001.0)
    assert budget.disruptive_count(state, "agent", WINDOW, 1002.0) == 1
    assert budget.disruptive_count(state, "master", WINDOW, 1002.0) == 1
    assert budget.disruptive_count(state, "agent", WINDOW, 1000.0 + WINDOW + 1) == 0
