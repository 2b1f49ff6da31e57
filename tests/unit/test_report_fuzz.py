"""Fuzz campaign on what the reports read that others wrote: shard summaries (merge) and the trend's history.

(a) Whatever a shard's file holds, merge's main() returns 0 with the three reports written, or 4 with ONE line on
stderr (``alice-acceptance merge: ...; fix: ...``) and nothing written; never an exception, and never a merged
report when an input record has an outcome outside the vocabulary (it used to drop out of the totals: HEALTHY).
(b) Whatever a previous run's summary.json holds, trend_for returns and write_all writes the run's own reports,
with at most one warning line (naming the file). Plus a hand-written corpus of hostile shards: each exit 4, one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reports.merge import main
from reports.outcomes import HEALTHY, OUTCOMES
from reports.read import load_summary
from reports.summary import Record, Summary
from reports.trend import trend_for
from reports.write import write_all

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROG = "alice-acceptance merge: "
RUN = "20261126T030000Z-3f9a1c"


def night(index: int | None = None, count: int = 2, *, run_id: str = RUN, day: int = 26) -> dict[str, Any]:
    """A small summary: a whole run (``index`` None) or shard ``index``/``count`` of one, with every kind of field
    (a remediation and its detail, transport, a waived node) so that mutations reach all of them."""
    node = f"alibuild{index or 1:02d}"
    records = [Record(check=check, node=node, outcome="passed", severity="critical", role="agent", kind="vm",
                      runbook="Creating a agent", duration_s=0.2, test_id=f"checks/agent.py::{check}[{node}]")
               for check in ("node.ping", "node.ssh", "agent.image.builder")]
    records[2].outcome, records[2].first_message = "remediated", "image missing"
    records[2].remediation_detail = {"action": "image.pull", "mode": "safe", "verdict": "taken", "guardrail": None,
                                     "before": "absent", "after": {"present": True}, "duration_s": 4.5}
    records.append(Record(check="node.ping", node="alibuild40", outcome="waived", severity="critical",
                          message="disk swap", role="agent", kind="metal"))
    started = f"2026-11-{day:02d}T03:00:00+00:00"
    return Summary(
        run_id=run_id if index is None else f"{run_id}-s{index}of{count}", cluster="alice-prod",
        inventory="/etc/alice/prod.yaml", started=started, duration_s=10.0, records=records, exit_status=0,
        warnings=["a warning"], moment="nightly", shard=None if index is None else {"index": index, "count": count},
        nodes=[{"name": node, "role": "agent", "kind": "vm", "address": f"{node}.cern.ch", "maintenance": None},
               {"name": "alibuild40", "role": "agent", "kind": "metal",
                "maintenance": {"reason": "disk swap", "until": "2099-01-01"}}],
        remediations=[{"run_id": RUN, "time": started, "user": "ops", "host": "runner", "node": node,
                       "check": "agent.image.builder", "action": "image.pull", "mode": "safe", "verdict": "taken",
                       "guardrail": None, "reason": "image missing", "before": "absent", "after": "present",
                       "duration_s": 4.5}],
        transport={"nodes": {node: {"connections": 1, "round_trips": 2, "commands": 9, "live_commands": 0}},
                   "api_requests": {"nomad": 3}},
    ).to_json()


def dump(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity as Python writes them: what a careless writer leaves


def run_merge(out: Path, *paths: Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([str(out), *map(str, paths)])
    return code, stdout.getvalue(), stderr.getvalue()


def lenient(raw: bytes) -> Any:
    """The file as a lenient reader sees it (NaN allowed, duplicates last-wins), None when not JSON at all."""
    try:
        return json.loads(raw.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None


def has_bad_outcome(value: Any) -> bool:
    records = value.get("records") if isinstance(value, dict) else None
    return isinstance(records, list) and any(
        not isinstance(r, dict) or not isinstance(r.get("outcome"), str) or r["outcome"] not in OUTCOMES
        for r in records)


def check_merge(out: Path, shards: list[bytes], base: Path) -> int:
    """The properties of one merge of ``shards`` (file contents)."""
    paths = []
    for i, raw in enumerate(shards):
        paths.append(base / f"shard{i}.json")
        paths[-1].write_bytes(raw)
    code, stdout, stderr = run_merge(out, *paths)
    if code == 4:
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(PROG) and "; fix: " in lines[0], stderr
        assert stdout == "" and not out.exists()
        return code
    assert code == 0 and stderr == "", (code, stderr)
    assert not any(has_bad_outcome(lenient(raw)) for raw in shards), "merged a record of no known outcome"
    merged = load_summary(out / "summary.json")  # what merge writes, merge (and the trend) can read back
    assert sum(merged["totals"].values()) == len(merged["records"])
    if merged["healthy"]:
        assert all(r["outcome"] in HEALTHY for r in merged["records"]) and merged["exit_status"] == 0
    assert (out / "report.html").is_file() and (out / "metrics.prom").is_file()
    return code


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[str]]:
    """The warning lines the reports log (a handler of our own: hypothesis runs many examples per test)."""
    handler, logger = Collect(), logging.getLogger("reports")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


# --------------------------------------------------------------------------- strategies

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from([*OUTCOMES, "skipped", "PASSED", "", "\udc80", "x" * 300, "a\nb", "../x"]))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), kids, max_size=3)),
                      max_leaves=12)


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from paths_in(item, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any] | list[Any] | Any:
    """``base`` with one place replaced by any JSON value, removed, or wrapped in a list."""
    data = json.loads(json.dumps(base))
    path = draw(st.sampled_from(list(paths_in(data))))
    action = draw(st.sampled_from(["replace", "remove", "wrap"]))
    new = draw(values)
    if not path:
        return new if action == "replace" else [data]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if action == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = new if action == "replace" else [parent[path[-1]]]
    return data


def spliced(raw: bytes) -> st.SearchStrategy[bytes]:
    """``raw`` with a slice cut out and random bytes put in its place."""
    return st.tuples(st.integers(0, len(raw)), st.integers(0, 40), st.binary(max_size=12)).map(
        lambda t: raw[: t[0]] + t[2] + raw[t[0] + t[1]:])


GOOD1, GOOD2 = night(1), night(2)
shard_files = st.one_of(mutated(GOOD2).map(dump), values.map(dump), st.binary(max_size=64), spliced(dump(GOOD2)))


# --------------------------------------------------------------------------- (a) merge inputs


@FAST
@given(second=shard_files)
def test_any_shard_is_merged_or_refused_in_one_line(tmp_path_factory: pytest.TempPathFactory, second: bytes) -> None:
    base = tmp_path_factory.mktemp("merge")
    check_merge(base / "out", [dump(GOOD1), second], base)


@FAST
@given(data=values)
def test_any_json_value_as_the_only_summary(tmp_path_factory: pytest.TempPathFactory, data: Any) -> None:
    base = tmp_path_factory.mktemp("merge")
    assert check_merge(base / "out", [dump(data)], base) == 4


def test_the_valid_shards_merge(tmp_path: Path) -> None:
    """The oracle's other side: the unmutated shards (and a lone whole run) do merge."""
    assert check_merge(tmp_path / "out", [dump(GOOD1), dump(GOOD2)], tmp_path) == 0
    assert check_merge(tmp_path / "one", [dump(night())], tmp_path) == 0


# --------------------------------------------------------------------------- (b) history files

CURRENT = night()
PREVIOUS = night(run_id="20261125T030000Z-aaaaaa", day=25)
history_files = st.one_of(mutated(PREVIOUS).map(dump), values.map(dump), st.binary(max_size=64),
                          spliced(dump(PREVIOUS)))


def with_history(base: Path, raw: bytes) -> Path:
    folder = base / "report" / PREVIOUS["run_id"]
    folder.mkdir(parents=True)
    (folder / "summary.json").write_bytes(raw)
    return folder / "summary.json"


def check_trend(report: Path, path: Path) -> None:
    with warnings_logged() as logged:
        trend, skipped = trend_for(CURRENT, report)
    assert len(skipped) <= 1 and logged == skipped, (skipped, logged)
    for line in skipped:
        assert str(path) in line and "\n" not in line
    assert trend["previous_run"] in (None, PREVIOUS["run_id"])
    if skipped:
        assert trend["previous_run"] is None


@settings(FAST, max_examples=150)
@given(raw=history_files)
def test_any_history_file_gives_a_trend_and_at_most_one_warning(tmp_path_factory: pytest.TempPathFactory,
                                                                raw: bytes) -> None:
    base = tmp_path_factory.mktemp("history")
    check_trend(base / "report", with_history(base, raw))


@settings(FAST, max_examples=25)
@given(raw=history_files)
def test_any_history_file_never_stops_the_runs_reports(tmp_path_factory: pytest.TempPathFactory,
                                                       raw: bytes) -> None:
    base = tmp_path_factory.mktemp("history")
    with_history(base, raw)
    with warnings_logged() as logged:
        paths = write_all(CURRENT, base / "report")
    assert len(logged) <= 1, logged
    for folder in (paths["summary"].parent, base / "report" / "latest"):
        assert sorted(p.name for p in folder.iterdir()) == ["metrics.prom", "report.html", "summary.json"]


# --------------------------------------------------------------------------- the hand-written corpus


def edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[], bytes]:
    def make() -> bytes:
        data = json.loads(json.dumps(GOOD2))
        change(data)
        return dump(data)
    return make


def record(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda s: s["records"][0].update(fields)


def text(replace: str, by: str) -> Callable[[], bytes]:
    return lambda: dump(GOOD2).replace(replace.encode(), by.encode(), 1)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


CORPUS: dict[str, Callable[[], bytes]] = {
    "empty file": lambda: b"",
    "only whitespace": lambda: b" \n\t\n",
    "a JSON string": lambda: b'"summary"',
    "a list": lambda: b"[]",
    "null": lambda: b"null",
    "a number": lambda: b"42",
    "truncated JSON": lambda: dump(GOOD2)[: len(dump(GOOD2)) // 2],
    "trailing garbage": lambda: dump(GOOD2) + b" x",
    "a comment": lambda: b"// merged\n" + dump(GOOD2),
    "invalid UTF-8": lambda: dump(GOOD2).replace(b"a warning", b"a warning \xff\xfe", 1),
    "UTF-8 byte order mark": lambda: b"\xef\xbb\xbf" + dump(GOOD2),
    "UTF-16": lambda: json.dumps(GOOD2).encode("utf-16"),
    "a raw control character in a string": lambda: dump(GOOD2).replace(b"a warning", b"a\x01warning", 1),
    "NaN": edit(lambda s: s.update(duration_s=float("nan"))),
    "Infinity": edit(lambda s: s["transport"]["api_requests"].update(nomad=float("inf"))),
    "-Infinity": edit(lambda s: s.update(duration_s=float("-inf"))),
    "1e400 (infinite once read)": text('"duration_s": 10.0', '"duration_s": 1e400'),
    "a 5000-digit number": text('"exit_status": 0', '"exit_status": ' + "9" * 5000),
    "records not a list": edit(lambda s: s.update(records={"0": s["records"][0]})),
    "records missing": edit(lambda s: s.pop("records")),
    "a record that is not an object": edit(lambda s: s["records"].append("node.ping failed")),
    "node not a string": edit(record(node=7)),
    "check missing": edit(lambda s: s["records"][0].pop("check")),
    "unknown outcome": edit(record(outcome="skipped")),
    "outcome in capitals": edit(record(outcome="PASSED")),
    "outcome null": edit(record(outcome=None)),
    "a huge message (8 MiB)": edit(record(message="x" * (8 << 20))),
    "a huge check name": edit(record(check="c" * 10_000)),
    "a newline in a node name": edit(record(node="alibuild02\nalibuild03")),
    "a depth bomb (the whole file)": lambda: b"[" * 100_000 + b"]" * 100_000,
    "a depth bomb in a remediation's state": edit(
        lambda s: next(r for r in s["records"] if r["remediation_detail"])["remediation_detail"].update(
            before=nested(500))),
    "schema 1": edit(lambda s: s.update(schema=1)),
    "schema as a string": edit(lambda s: s.update(schema="2")),
    "schema missing": edit(lambda s: s.pop("schema")),
    "duplicate keys (records twice)": lambda: dump(GOOD2)[:-1] + b', "records": []}',
    "a lone surrogate": edit(record(message="\udc80")),
    "run_id not a string": edit(lambda s: s.update(run_id=None)),
    "run_id a path": edit(lambda s: s.update(run_id="../../etc/cron.d/x")),
    "unknown moment": edit(lambda s: s.update(moment="daily")),
    "shard index above count": edit(lambda s: s.update(shard={"index": 3, "count": 2})),
    "shard index a string": edit(lambda s: s.update(shard={"index": "2", "count": 2})),
    "shard count huge": edit(lambda s: s.update(shard={"index": 2, "count": 10**15})),
    "exit status true": edit(lambda s: s.update(exit_status=True)),
    "exit status 300": edit(lambda s: s.update(exit_status=300)),
    "interrupted a string": edit(lambda s: s.update(interrupted="no")),
    "warnings a string": edit(lambda s: s.update(warnings="disk full")),
    "a node without a name": edit(lambda s: s["nodes"][0].pop("name")),
    "maintenance a list": edit(lambda s: s["nodes"][1].update(maintenance=["disk swap"])),
    "a remediation that is not an object": edit(lambda s: s["remediations"].append(None)),
    "an unknown remediation verdict": edit(lambda s: s["remediations"][0].update(verdict="done")),
    "a request count as text": edit(lambda s: s["transport"]["api_requests"].update(nomad="many")),
    "a negative duration": edit(lambda s: s.update(duration_s=-5)),
    "a duration as text": edit(record(duration_s="nan")),
}
FILES: dict[str, Callable[[Path], Path]] = {
    "missing file": lambda d: d / "missing.json",
    "a folder": lambda d: d,
    "a FIFO (must not hang)": lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1],
    "a device": lambda d: Path("/dev/zero"),
    "too big (sparse, 64 MiB + 1)": lambda d: big(d / "big.json"),
}


def big(path: Path) -> Path:
    with path.open("wb") as f:
        f.truncate((64 << 20) + 1)  # sparse: nothing written, the size is what counts
    return path


@pytest.mark.parametrize("name", list(CORPUS))
def test_each_hostile_shard_is_exit_4_with_one_line(tmp_path: Path, name: str) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(dump(GOOD1))
    bad = tmp_path / "bad.json"
    bad.write_bytes(CORPUS[name]())
    refused_in_one_line(tmp_path, good, bad)


def refused_in_one_line(tmp_path: Path, good: Path, bad: Path) -> None:
    code, stdout, stderr = run_merge(tmp_path / "out", good, bad)
    assert (code, stdout) == (4, ""), (bad, code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}{bad}: ") and "; fix: " in lines[0], stderr
    assert len(lines[0]) < 600 and not (tmp_path / "out").exists(), stderr


@pytest.mark.parametrize("name", list(FILES))
def test_each_file_that_is_no_summary_is_exit_4_with_one_line(tmp_path: Path, name: str) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(dump(GOOD1))
    folder = tmp_path / "in"
    folder.mkdir()
    refused_in_one_line(tmp_path, good, FILES[name](folder))


def test_the_corpus_is_the_audits_size_at_least() -> None:
    assert len(CORPUS) + len(FILES) >= 22


@pytest.mark.parametrize("name", list(CORPUS))
def test_each_hostile_history_file_is_one_warning(tmp_path: Path, name: str) -> None:
    path = with_history(tmp_path, CORPUS[name]())
    with warnings_logged() as logged:
        trend, skipped = trend_for(CURRENT, tmp_path / "report")
    assert len(logged) == 1 and logged == skipped and str(path) in logged[0] and "\n" not in logged[0], name
    assert trend["previous_run"] is None


def test_a_history_of_hostile_files_still_writes_the_runs_reports(tmp_path: Path) -> None:
    report = tmp_path / "report"
    for i, make in enumerate(CORPUS.values()):
        folder = report / f"20261120T{i:06d}Z-bad"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_bytes(make())
    with warnings_logged() as logged:
        paths = write_all(CURRENT, report, history=len(CORPUS) + 2)
    assert len(logged) == len(CORPUS), logged
    assert json.loads(paths["summary"].read_text())["trend"]["previous_run"] is None
    for folder in (paths["summary"].parent, report / "latest"):
        assert sorted(p.name for p in folder.iterdir()) == ["metrics.prom", "report.html", "summary.json"]
