"""Merge the summaries of the shards of one run (``--shard i/N``) into the summary of the whole run.

Each shard checked a disjoint slice of the nodes; their run ids share a prefix (the merged run's id). The
merged summary has the content one unsharded run would have had: records sorted (node, check), totals and
blocked_by recomputed, nodes and transport merged, started the earliest, finished the latest, duration the
longest shard's (they run side by side), exit status the worst, ``shard`` null. A record present in several
shards (a cluster-wide check run by each) is kept once, its worst outcome. A missing shard is not hidden:
the merged run is marked interrupted, with a warning naming the shard.

CLI, two forms::

    python -m reports.merge --report-dir DIR SUMMARY.json... [--runs N] [--keep N]
    python -m reports.merge OUT_DIR SUMMARY.json... [--history-dir DIR] [--runs N]

``--report-dir DIR`` (the form for a night: ``alice-acceptance merge --report-dir DIR ...``) writes the merged night
into a report folder exactly as a run does (:func:`reports.write.write_all`): ``DIR/<run id>/`` and the run's
``latest`` folder (``DIR/latest/`` for a nightly) get summary.json, report.html, metrics.prom and junit.xml, the
trend is computed against the previous runs in DIR (window ``--runs``), and, for a nightly, the run folders of the
last ``--keep`` nights (default 30) are kept and ``DIR/index.html`` rewritten (:mod:`reports.history`). The shards
may be in DIR themselves (their summaries are skipped by the trend and the index) or anywhere else.

``OUT_DIR`` (the first positional, without ``--report-dir``; the form of earlier versions) writes the same four
files into OUT_DIR only; no ``latest``, no index, no retention, and a trend only with ``--history-dir`` (a report
folder of previous runs). ``--keep`` needs ``--report-dir``; ``--history-dir`` goes with OUT_DIR only (with
``--report-dir`` the history is DIR).

report.html is the same pytest-html page a run writes, rendered from the merged records (there is no pytest session
here: :func:`reports.html.render_page` replays them through pytest-html's own classes); junit.xml is generated from
the merged records as pytest writes a run's (:mod:`reports.junit`).

Every input is checked before anything is written (:func:`reports.read.load_summary`: a regular file of at most
64 MiB, strict JSON, the schema, every field the merge reads with its type, records of a known outcome): a shard a
crash, a disk or a person spoiled is bad input, exit 4 with one line ``alice-acceptance merge: <file>: <what is
wrong>; fix: ...``, never a traceback, never a merged report that counts what it could not read as healthy. A bad
option is exit 4 too (not argparse's 2). Exit 0 once the reports are written (the merged run's own status is in
them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from reports.history import DEFAULT_KEEP
from reports.outcomes import RANK
from reports.read import check_summary, load_summary
from reports.summary import SCHEMA_VERSION, SummaryError, as_json, node_sort_key, record_sort_key
from reports.trend import DEFAULT_RUNS, trend_for
from reports.write import write_all, write_reports

PROG = "alice-acceptance merge"

# best to worst: 5 (no test collected: an empty shard) < 0 < 1 (checks failed) < 2 (interrupted)
# < 4 (bad input) < 3 (internal error); any other code is worse still
EXIT_ORDER = {5: 0, 0: 1, 1: 2, 2: 3, 4: 4, 3: 5}


class MergeError(ValueError):
    """Summaries that are not the shards of one run."""


def worst_exit(statuses: Sequence[int | None]) -> int | None:
    known = [s for s in statuses if s is not None]
    if not known:
        return None
    return max(known, key=lambda s: (EXIT_ORDER.get(s, len(EXIT_ORDER)), s))


SEPARATORS = "-._+"


def common_run_id(run_ids: Sequence[str]) -> str:
    """The shared prefix of the shards' run ids, up to a separator (``…-3f9a1c-s1of2`` and ``…-3f9a1c-s2of2``
    give ``…-3f9a1c``)."""
    prefix = os.path.commonprefix(list(run_ids))
    if any(len(r) > len(prefix) and r[len(prefix)] not in SEPARATORS for r in run_ids):
        prefix = prefix[: max(prefix.rfind(c) for c in SEPARATORS) + 1]
    prefix = prefix.rstrip(SEPARATORS)
    if not prefix:
        raise MergeError(f"the shards' run ids share no prefix: {', '.join(run_ids)}")
    return prefix


def _when(iso: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(iso))
    except ValueError:
        return None


def _finished(s: Mapping[str, Any]) -> str:
    if s.get("finished"):
        return str(s["finished"])
    start = _when(s.get("started"))
    return (start + timedelta(seconds=float(s.get("duration_s") or 0))).isoformat() if start else ""


def _one(values: Sequence[Any], what: str) -> Any:
    distinct = sorted({str(v) for v in values})
    if len(distinct) > 1:
        raise MergeError(f"the shards disagree on {what}: {', '.join(distinct)}")
    return values[0]


def _lone(summary: Mapping[str, Any]) -> str:
    """The run id of a merge of one summary: a lone shard's without its ``-s<i>of<n>`` (the merged run must not
    take the shard's folder), else its own."""
    run_id, shard = str(summary["run_id"]), summary.get("shard")
    suffix = f"-s{shard['index']}of{shard['count']}" if shard else ""
    return run_id[: -len(suffix)] if suffix and run_id.endswith(suffix) and len(run_id) > len(suffix) else run_id


def merge_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One summary (JSON form, schema 2) from the shards' summaries (any order)."""
    if not summaries:
        raise MergeError("no summary to merge")
    for i, s in enumerate(summaries, start=1):
        try:  # again here: a caller may hand dicts that never were a file
            check_summary(s, str(s.get("run_id") if isinstance(s, Mapping) else f"summary {i}"))
        except SummaryError as exc:
            raise MergeError(str(exc)) from exc
    shards = [as_json(s) for s in summaries]
    cluster = _one([s.get("cluster") for s in shards], "the cluster")
    moment = _one([s.get("moment") for s in shards], "the moment")
    warnings: list[str] = []
    indices: dict[int, str] = {}
    counts = {int(s["shard"]["count"]) for s in shards if s.get("shard")}
    if len(counts) > 1:
        raise MergeError(f"the shards disagree on their count: {', '.join(map(str, sorted(counts)))}")
    for s in shards:
        if not s.get("shard"):
            if len(shards) > 1:
                raise MergeError(f"{s.get('run_id')} is not a shard (its summary has no shard)")
            continue
        index = int(s["shard"]["index"])
        if index in indices:
            raise MergeError(f"shard {index} given twice: {indices[index]} and {s.get('run_id')}")
        indices[index] = str(s.get("run_id"))
    interrupted = any(bool(s.get("interrupted")) for s in shards)
    if counts:
        (count,) = counts
        base = 0 if 0 in indices else 1
        missing = [i for i in range(base, base + count) if i not in indices]
        if missing:
            interrupted = True
            warnings.append(f"shard {', '.join(f'{i}/{count}' for i in missing)} missing: the nodes of "
                            f"{'that shard were' if len(missing) == 1 else 'those shards were'} not checked")

    records: dict[tuple[str, str], dict[str, Any]] = {}
    for s in shards:
        for r in s.get("records") or ():
            key = (str(r.get("check")), str(r.get("node")))
            old = records.get(key)
            if old is None or RANK.get(str(r.get("outcome")), 7) > RANK.get(str(old.get("outcome")), 7):
                records[key] = dict(r)
    nodes: dict[str, dict[str, Any]] = {}
    for s in shards:
        for n in s.get("nodes") or ():
            nodes.setdefault(str(n.get("name")), dict(n))
    transport_nodes: dict[str, dict[str, int]] = {}
    api_requests: dict[str, int] = {}
    for s in shards:
        t = s.get("transport") or {}
        for name, figures in (t.get("nodes") or {}).items():
            into = transport_nodes.setdefault(str(name), {})
            for k, v in figures.items():
                into[k] = into.get(k, 0) + int(v)
        for api, n in (t.get("api_requests") or {}).items():
            api_requests[str(api)] = api_requests.get(str(api), 0) + int(n)
    for s in shards:
        for w in s.get("warnings") or ():
            if w not in warnings:
                warnings.append(str(w))
    remediations = [dict(e) for s in shards for e in s.get("remediations") or ()]
    remediations.sort(key=lambda e: (str(e.get("time")), str(e.get("node")), str(e.get("check"))))
    starts = [(w, str(s.get("started"))) for s in shards if (w := _when(s.get("started"))) is not None]
    ends = [(w, f) for s in shards if (w := _when(f := _finished(s))) is not None]

    merged: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run_id": common_run_id([str(s.get("run_id")) for s in shards]) if len(shards) > 1 else _lone(shards[0]),
        "cluster": cluster,
        "inventory": shards[0].get("inventory"),
        "moment": moment,
        "started": min(starts)[1] if starts else shards[0].get("started"),
        "finished": max(ends)[1] if ends else shards[0].get("finished"),
        "duration_s": max(float(s.get("duration_s") or 0.0) for s in shards),
        "exit_status": worst_exit([s.get("exit_status") for s in shards]),
        "interrupted": interrupted,
        "shard": None,
        "warnings": warnings,
        "totals": {},
        "healthy": False,
        "blocked_by": {},
        "nodes": sorted(nodes.values(), key=node_sort_key),
        "remediations": remediations,
        "transport": {"nodes": dict(sorted(transport_nodes.items())),
                      "api_requests": dict(sorted(api_requests.items()))},
        "trend": None,
        "records": sorted(records.values(), key=record_sort_key),
    }
    if interrupted and merged["exit_status"] in (None, 0, 1, 5):
        merged["exit_status"] = 2
    return as_json(merged)  # totals, blocked_by, healthy


class UsageError(Exception):
    """A command line argparse refused."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print the usage and exit 2
        raise UsageError(message)


def _fail(what: str, fix: str) -> int:
    line = f"{PROG}: {what}; fix: {fix}"
    print("".join(c if c.isprintable() else repr(c)[1:-1] for c in line), file=sys.stderr)  # one line, always
    return 4


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog=PROG, description="Merge the summaries of the shards of one run and write its reports: "
                                            "into a report folder as a run does (--report-dir), or into OUT_DIR.")
    parser.add_argument("paths", metavar="[OUT_DIR] SUMMARY", type=Path, nargs="+",
                        help="OUT_DIR (without --report-dir), then the shards' summary.json")
    parser.add_argument("--report-dir", type=Path, help="report folder to write the merged run into, as a run does")
    parser.add_argument("--history-dir", type=Path, help="with OUT_DIR: report folder of previous runs, for the trend")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"trend window N (default {DEFAULT_RUNS})")
    parser.add_argument("--keep", type=int, help=f"with --report-dir: nights kept (default {DEFAULT_KEEP})")
    args = parser.parse_intermixed_args(argv)  # options may come between the shards
    if not 1 <= args.runs <= 1000:
        raise UsageError(f"--runs {args.runs}: expected 1 to 1000")
    if args.report_dir is None:
        if len(args.paths) < 2:
            raise UsageError("expected OUT_DIR and at least one SUMMARY (or --report-dir DIR and the summaries)")
        if args.keep is not None:
            raise UsageError("--keep needs --report-dir (OUT_DIR holds one run, not nights)")
        args.out_dir, args.summaries = args.paths[0], args.paths[1:]
    else:
        if args.history_dir is not None:
            raise UsageError("--history-dir goes with OUT_DIR; with --report-dir the history is that folder")
        if args.keep is None:
            args.keep = DEFAULT_KEEP
        if not 1 <= args.keep <= 100000:
            raise UsageError(f"--keep {args.keep}: expected 1 to 100000")
        args.out_dir, args.summaries = None, args.paths
    return args


def main(argv: Sequence[str] | None = None, *, notify: Callable[[Path], object] | None = None) -> int:
    """``notify``: called with the written summary (the CLI passes the night's message sender; reports imports
    nothing of the suite)."""
    try:
        args = _parse(argv)
    except UsageError as exc:
        return _fail(str(exc), f"see {PROG} --help")
    try:
        merged = merge_summaries([load_summary(p) for p in args.summaries])
    except SummaryError as exc:
        return _fail(str(exc), "give the summary.json each shard's run wrote, unchanged (schema "
                               f"{SCHEMA_VERSION}); a shard whose summary is lost must be run again")
    except MergeError as exc:
        return _fail(str(exc), "give the summaries of the shards of one run: same cluster and moment, each shard once")
    target = args.report_dir if args.report_dir is not None else args.out_dir
    try:
        if args.report_dir is not None:  # a bad previous run is skipped with a warning (logged), never fatal
            paths = write_all(merged, args.report_dir, history=args.runs, keep=args.keep, junit=True)
        else:
            if args.history_dir is not None:
                merged["trend"], _ = trend_for(merged, args.history_dir, runs=args.runs)
            paths = write_reports(merged, args.out_dir, junit=True)
    except (OSError, SummaryError) as exc:  # ReportPathError included: a symlink where a folder must be
        return _fail(f"{target}: cannot write the reports ({exc})", "give a report folder you can write")
    for path in paths.values():
        print(path)
    if notify is not None:
        notify(paths["summary"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
