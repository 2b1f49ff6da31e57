"""The retry budget and the flap history, as pure functions of the cluster-wide state (remediation/state.py):

- a rung of the escalation ladder (restart -> reboot -> hard reboot) is spent only when its action really ran;
- the ladder climbs only after the rung below was tried ``attempts`` times and failed; an action that said
  "needs a human" stops the ladder for the window (a reboot cannot install a missing unit);
- a fix that worked is a flap, not a reset: fixed ``attempts`` times within the window, the failure goes to a
  human instead of being fixed forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _recent(times: Any, window_s: float, now: float) -> list[float]:
    return [float(t) for t in times if isinstance(t, int | float) and now - float(t) < window_s] \
        if isinstance(times, list) else []


def choose(state: dict[str, Any], key: str, rungs: Sequence[str], attempts: int, window_s: float,
           now: float) -> tuple[str | None, str | None]:
    """(the rung to act with, None) or (None, why a human is needed)."""
    entry = state["budget"].get(key, {})
    human = entry.get("human") if isinstance(entry, dict) else None
    if isinstance(human, dict) and now - float(human.get("time", 0)) < window_s:
        return None, f"needs a human: {human.get('why', 'an earlier attempt said so')}"
    fixes = _recent(state["flaps"].get(key, []), window_s, now)
    if len(fixes) >= attempts:
        return None, (f"flapping: fixed {len(fixes)} times within {window_s / 3600:g} h and failing again: "
                      "needs a human")
    for rung in rungs:
        if len(_recent(entry.get(rung, []) if isinstance(entry, dict) else [], window_s, now)) < attempts:
            return rung, None
    return None, (f"the retry budget is spent ({attempts} attempts of {' -> '.join(rungs)} within "
                  f"{window_s / 3600:g} h): needs a human")


def spend(state: dict[str, Any], key: str, rung: str, window_s: float, now: float) -> None:
    entry = state["budget"].setdefault(key, {})
    entry[rung] = [*_recent(entry.get(rung, []), window_s, now), now]


def fixed(state: dict[str, Any], key: str, window_s: float, now: float) -> None:
    state["flaps"][key] = [*_recent(state["flaps"].get(key, []), window_s, now), now]


def needs_human(state: dict[str, Any], key: str, why: str, now: float) -> None:
    state["budget"].setdefault(key, {})["human"] = {"time": now, "why": why[:300]}


def disruptive_count(state: dict[str, Any], role: str, window_s: float, now: float) -> int:
    return sum(1 for a in state["disruptive"] if isinstance(a, dict) and a.get("role") == role
               and now - float(a.get("time", 0)) < window_s)


def record_disruptive(state: dict[str, Any], entry: dict[str, Any], window_s: float, now: float) -> None:
    state["disruptive"] = [a for a in state["disruptive"] if isinstance(a, dict)
                           and now - float(a.get("time", 0)) < window_s] + [{**entry, "time": now}]
