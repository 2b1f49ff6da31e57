"""What changed since the previous runs: new failures, fixed, still failing, flapping (the summary's ``trend``).

History is read from the report folder (``<report_dir>/<run id>/summary.json``, newest first): runs of the
same cluster and the same moment (a nightly is compared with nightlies, not with a one-node provision
check), whole runs only (a shard's summary is skipped: its merged summary stands for the run), started
before the current run. A file that is not such a summary (unreadable, not JSON, another schema, wrong types, an
unknown outcome, a symlink) is skipped with ONE warning naming it and what is wrong: a corrupt previous run never
stops this run's reports.

Outcomes fall in three classes: failing (``failed``, ``error``), passing (``passed``, ``remediated``) and
unknown (``blocked``, ``waived``, ``not_run``, or no record at all).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports.outcomes import FAILING, PASSING
from reports.read import load_summary
from reports.summary import SummaryError, is_run_id, natural_key

DEFAULT_RUNS = 7  # N: the window, the current run included
DEFAULT_FLIPS = 3  # K: changes of outcome within the window that make a check flapping

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (check, node)


@dataclass
class History:
    """Previous summaries, newest first, and one line per file that was skipped."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _when(summary: Mapping[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(summary.get("started")))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def load_history(report_dir: Path, current: Mapping[str, Any], *, runs: int = DEFAULT_RUNS) -> History:
    """Up to ``runs - 1`` previous whole runs of ``current``'s cluster and moment, newest first.

    Folders are visited newest first by name (run ids begin with their UTC start), at most ``10 * runs``
    summaries are opened, so that a report folder of years of runs stays cheap."""
    history = History()
    if not report_dir.is_dir():
        return history
    want = max(runs - 1, 0)
    now = _when(current)
    try:  # run folders only (never latest, a dot file or a symlink: a link's target is not this folder's run)
        names = sorted((e.name for e in os.scandir(report_dir) if is_run_id(e.name) and e.name != current.get("run_id")
                        and e.is_dir(follow_symlinks=False)), reverse=True)
    except OSError as exc:
        names = []
        history.skipped.append(f"trend: no history ({report_dir}: {exc.strerror})")
        log.warning("%s", history.skipped[-1])
    opened = 0
    for name in names:
        if len(history.summaries) >= want or opened >= 10 * max(runs, 1):
            break
        path = report_dir / name / "summary.json"
        if not os.path.lexists(path):
            continue  # a run that wrote no summary (killed): nothing to compare with, nothing wrong
        opened += 1
        try:
            data = load_summary(path, follow=False)
        except SummaryError as exc:
            history.skipped.append(f"trend: skipped {exc}")
            log.warning("%s", history.skipped[-1])  # the one warning; callers print history.skipped, not log it
            continue
        if data.get("cluster") != current.get("cluster") or data.get("moment") != current.get("moment"):
            continue
        if data.get("shard"):
            continue
        then = _when(data)
        if now is not None and (then is None or then >= now):
            continue  # not before the current run (re-rendering an old run must not compare with later ones)
        history.summaries.append(data)
    history.summaries.sort(key=lambda s: (_when(s) or datetime.min.replace(tzinfo=UTC), str(s.get("run_id"))),
                           reverse=True)
    return history


def outcomes_by_key(summary: Mapping[str, Any]) -> dict[Key, str]:
    return {(str(r["check"]), str(r["node"])): str(r["outcome"]) for r in summary.get("records", ())}


def _class(outcome: str | None) -> str | None:
    if outcome in FAILING:
        return "failing"
    if outcome in PASSING:
        return outcome  # passed and remediated differ: a check remediated every other night flaps
    return None


def count_changes(outcomes: Iterable[str | None]) -> int:
    """Changes of outcome class between consecutive known outcomes (unknown ones are skipped)."""
    known = [c for c in (_class(o) for o in outcomes) if c is not None]
    return sum(1 for a, b in zip(known, known[1:], strict=False) if a != b)


def _entry(key: Key, **extra: Any) -> dict[str, Any]:
    return {"check": key[0], "node": key[1], **extra}


def _sorted(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: (natural_key(e["node"]), e["check"]))


def compute_trend(current: Mapping[str, Any], history: Sequence[Mapping[str, Any]], *, runs: int = DEFAULT_RUNS,
                  flips: int = DEFAULT_FLIPS) -> dict[str, Any]:
    """The ``trend`` of ``current`` against ``history`` (previous summaries, newest first).

    - ``new_failures``: failing now, not failing in the previous run (or not there);
    - ``fixed``: failing in the previous run, healthy now;
    - ``still_failing``: failing in both, with how many runs in a row (``failing_runs``) and since when;
    - ``flapping``: ``changes >= flips`` changes of outcome over the last ``runs`` runs (this one included),
      with the outcomes newest first (``null`` where the check has no record).
    Every list holds ``{check, node, ...}`` entries sorted by node, then check."""
    window = [dict(h) for h in history[: max(runs - 1, 0)]]
    now = outcomes_by_key(current)
    past = [outcomes_by_key(h) for h in window]
    trend: dict[str, Any] = {
        "runs": runs,
        "flap_threshold": flips,
        "previous_run": window[0].get("run_id") if window else None,
        "compared_runs": [h.get("run_id") for h in window],
        "new_failures": [],
        "fixed": [],
        "still_failing": [],
        "flapping": [],
    }
    if not window:
        return trend
    previous = past[0]
    for key, outcome in now.items():
        before = previous.get(key)
        if outcome in FAILING and before not in FAILING:
            trend["new_failures"].append(_entry(key, outcome=outcome, previous=before))
        elif outcome in PASSING and before in FAILING:
            trend["fixed"].append(_entry(key, outcome=outcome, previous=before))
        elif outcome in FAILING and before in FAILING:
            streak = 1
            for outcomes in past:
                if outcomes.get(key) not in FAILING:
                    break
                streak += 1
            oldest = window[streak - 2]
            trend["still_failing"].append(_entry(key, outcome=outcome, previous=before, failing_runs=streak,
                                                 since_run=oldest.get("run_id"), since=oldest.get("started")))
        sequence = [outcome, *(outcomes.get(key) for outcomes in past)]
        changes = count_changes(sequence)
        if changes >= flips:
            trend["flapping"].append(_entry(key, changes=changes, history=sequence))
    for name in ("new_failures", "fixed", "still_failing"):
        trend[name] = _sorted(trend[name])
    trend["flapping"] = sorted(_sorted(trend["flapping"]), key=lambda e: -int(e["changes"]))
    return trend


def trend_for(current: Mapping[str, Any], report_dir: Path, *, runs: int = DEFAULT_RUNS,
              flips: int = DEFAULT_FLIPS) -> tuple[dict[str, Any], list[str]]:
    """Load the history from ``report_dir`` and compute the trend; also the lines of skipped files."""
    history = load_history(report_dir, current, runs=runs)
    return compute_trend(current, history.summaries, runs=runs, flips=flips), history.skipped
