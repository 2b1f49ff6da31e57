"""The nightly history of a report folder: ``<report_dir>/index.html`` and the retention of nightly run folders.

:func:`update` runs after each nightly run and each merge (:func:`reports.write.write_all`, moment ``nightly``):

- Retention: the run folders of the last ``keep`` nights of the cluster stay, older nightly ones are removed. A
  night is a whole run and its shards (``<id>`` and ``<id>-s<i>of<n>``), as new as its newest start. Only what the
  suite wrote is removed: a real folder (a symlink is never removed nor followed) named as a run id (never
  ``latest`` or ``latest-<moment>``) whose summary.json reads as a valid summary (:func:`reports.read.load_summary`)
  of moment ``nightly``, of this cluster, with that folder's name as its run id. Anything else stays: other moments,
  other clusters, a night without a readable start, an unreadable summary, a folder without one, a file. The current
  run's night is never removed.
- ``index.html`` (not after a shard: its night's index is the merge's): the last ``keep`` whole nights (shards are
  skipped, their merged summary stands for the night), newest first; a check x night grid of every check[node]
  that did not pass in at least one of them (one colour and letter per outcome, as report.html's matrix; each cell
  links to the night's row, ``<run id>/report.html#r-<sha1>``, :func:`reports.htmlview.anchor`), how many of those
  nights it did not pass and how often its outcome changed (flapping), and a line per night linking to its report.

A summary that cannot be read is skipped, logged at INFO only (the trend already warned once about it): it is never
removed and never shown.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reports.html import with_csp
from reports.htmlview import (
    GLYPH,
    LABEL,
    LEGEND_ORDER,
    NO_ROW,
    STYLE,
    anchor,
    check_key,
    fmt_duration,
    fmt_time,
    outcome_class,
    status,
    template,
)
from reports.outcomes import RANK
from reports.read import load_summary
from reports.summary import SummaryError, is_healthy, is_run_id, natural_key, open_folder, totals, write_at
from reports.trend import DEFAULT_FLIPS, count_changes

DEFAULT_KEEP = 30  # nights kept and shown
INDEX = "index.html"
NIGHTLY = "nightly"
_SHARD = re.compile(r"-s\d+of\d+$")  # the suffix a shard's run id gets (--shard i/n)

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (check, node)


def _when(iso: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None  # naive and aware times cannot be ordered together


@dataclass
class Night:
    """One nightly run folder, as much of its summary as the history needs (a night's summary is megabytes)."""

    run_id: str
    started: datetime | None
    shard: bool
    head: dict[str, Any]  # started, duration_s, exit_status, interrupted, healthy, totals
    outcomes: dict[Key, str] = field(default_factory=dict)
    messages: dict[Key, str] = field(default_factory=dict)  # of the records that did not pass

    @property
    def night(self) -> str:
        """The night it belongs to: a shard's run id without its ``-s<i>of<n>``."""
        return _SHARD.sub("", self.run_id) if self.shard else self.run_id


def night_of(summary: Mapping[str, Any]) -> Night:
    records = [r for r in summary.get("records") or () if isinstance(r, Mapping)]
    counts = totals(records)
    head = {k: summary.get(k) for k in ("started", "duration_s", "exit_status", "interrupted")}
    head.update(totals=counts, healthy=is_healthy({**head, "totals": counts, "records": records}))
    n = Night(run_id=str(summary.get("run_id")), started=_when(summary.get("started")),
              shard=bool(summary.get("shard")), head=head)
    for r in records:
        key, outcome = (str(r.get("check")), str(r.get("node"))), str(r.get("outcome"))
        if RANK.get(outcome, 7) >= RANK.get(n.outcomes.get(key, "passed"), 7):  # one per key: the worst
            n.outcomes[key] = outcome
            if outcome != "passed":
                n.messages[key] = str(r.get("message") or "")
    return n


def scan(report_dir: Path, current: Mapping[str, Any]) -> list[Night]:
    """The nightly runs of ``current``'s cluster in ``report_dir``, shards included, ``current`` itself from
    memory (its summary.json may not be written yet); in no particular order."""
    nights = [night_of(current)]
    try:
        entries = sorted(os.scandir(report_dir), key=lambda e: e.name)
    except OSError as exc:
        log.warning("history: %s cannot be listed (%s)", report_dir, exc.strerror)
        return nights
    for entry in entries:
        if entry.name == current.get("run_id") or not is_run_id(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        path = report_dir / entry.name / "summary.json"
        if not os.path.lexists(path):
            continue  # not a run's folder, or a run killed before its summary: not ours to judge
        try:
            data = load_summary(path, follow=False)
        except SummaryError as exc:
            log.info("history: skipped %s", exc)
            continue
        if data.get("moment") == NIGHTLY and data.get("cluster") == current.get("cluster") and \
                data.get("run_id") == entry.name:
            nights.append(night_of(data))
    return nights


def prune(report_dir: Path, nights: Sequence[Night], current: Mapping[str, Any], keep: int) -> list[str]:
    """Remove the run folders of the nights older than the ``keep`` newest; the names removed."""
    groups: dict[str, list[Night]] = defaultdict(list)
    for n in nights:
        groups[n.night].append(n)
    dated = []
    for key, members in groups.items():
        times = [m.started for m in members]
        if all(t is not None for t in times):
            dated.append((max(t for t in times if t is not None), key))
    dated.sort(reverse=True)
    own = night_of(current).night
    old = [key for _, key in dated[keep:] if key != own]
    removed: list[str] = []
    if not old:
        return removed
    fd = open_folder(report_dir)
    try:
        for key in old:
            for m in sorted(groups[key], key=lambda m: m.run_id):
                try:  # by its name in the open report folder: rmtree refuses a symlink there, follows none below
                    shutil.rmtree(m.run_id, dir_fd=fd)
                except FileNotFoundError:
                    continue  # another shard of the night pruned it first
                except OSError as exc:
                    log.warning("history: %s not removed (%s)", report_dir / m.run_id, exc)
                else:
                    removed.append(m.run_id)
    finally:
        os.close(fd)
    if removed:
        log.info("history: removed %d run folder(s) older than the last %d nights: %s", len(removed), keep,
                 ", ".join(removed))
    return removed


def _newest_first(nights: Sequence[Night]) -> list[Night]:
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(nights, key=lambda n: (n.started or oldest, n.run_id), reverse=True)


def index_context(nights: Sequence[Night], cluster: str, keep: int) -> dict[str, Any]:
    """What index.html shows of the last ``keep`` whole nights among ``nights``."""
    shown = _newest_first([n for n in nights if not n.shard])[:keep]
    keys = {k for n in shown for k, o in n.outcomes.items() if o != "passed"}
    rows = []
    for check, node in sorted(keys, key=lambda k: (k[1] != "cluster", natural_key(k[1]), check_key(k[0]))):
        cells, history = [], []
        for n in shown:
            outcome = n.outcomes.get((check, node))
            history.append(outcome)
            title = f"{check} on {node}, {fmt_time(n.head.get('started'))}: " \
                    f"{LABEL.get(outcome, outcome) if outcome else 'no record'}"
            if n.messages.get((check, node)):
                title += f" — {n.messages[(check, node)]}"
            cells.append({"cls": outcome_class(outcome) if outcome else "na", "title": title,
                          "glyph": GLYPH.get(outcome, "!") if outcome else "",
                          "href": f"{n.run_id}/report.html#{anchor(check, node)}"
                          if outcome and outcome not in NO_ROW else ""})
        changes = count_changes(history)
        rows.append({"check": check, "node": node, "cells": cells, "changes": changes,
                     "flapping": changes >= DEFAULT_FLIPS,
                     "not_passing": sum(1 for o in history if o is not None and o != "passed")})
    columns = [{"run_id": n.run_id, "href": f"{n.run_id}/report.html",
                "date": n.started.strftime("%Y-%m-%d") if n.started else n.run_id[:10],
                "started": fmt_time(n.head.get("started")), "status": status(n.head),
                "duration": fmt_duration(n.head.get("duration_s")), "exit_status": n.head.get("exit_status"),
                "totals": n.head["totals"]} for n in shown]
    return {"cluster": cluster, "keep": keep, "nights": columns, "rows": rows, "flips": DEFAULT_FLIPS,
            "legend": [(outcome_class(o), GLYPH[o], LABEL[o]) for o in LEGEND_ORDER],
            "counted": ("failed", "error", "blocked", "not_run", "waived", "remediated"), "label": LABEL,
            "css": STYLE.read_text(encoding="utf-8")}  # the suite's own style sheet (|safe in the template), not data


def index_page(nights: Sequence[Night], cluster: str, keep: int = DEFAULT_KEEP) -> str:
    """index.html of ``nights`` (with its Content-Security-Policy: no script, inline style only)."""
    return with_csp(template("index.jinja2").render(index_context(nights, cluster, keep)))


def update(report_dir: Path, current: Mapping[str, Any], *, keep: int = DEFAULT_KEEP) -> dict[str, Path]:
    """After a nightly run or merge (``current``, JSON form): retention, then index.html unless ``current`` is a
    shard; the index's path by kind (``index``)."""
    nights = scan(report_dir, current)
    removed = set(prune(report_dir, nights, current, keep))
    if current.get("shard"):
        return {}
    page = index_page([n for n in nights if n.run_id not in removed], str(current.get("cluster")), keep)
    fd = open_folder(report_dir)
    try:
        write_at(fd, INDEX, page)
    finally:
        os.close(fd)
    return {"index": report_dir / INDEX}
