"""summary.json: one record per check and node, written once per run by the pytest controller.

Schema: reports/SCHEMA.md (``"schema": 2``). The plugin builds :class:`Record` objects and one
:class:`Summary`; everything else in ``reports`` reads the summary's JSON form (a plain dict), so that a
summary read back from disk, a merged one and a freshly built one go through the same writers. A summary someone
else wrote (a previous run, a shard) is read with :func:`reports.read.load_summary`, which checks it first.

Files are written through :func:`write_at` (a temporary file and a rename, never through a symlink, 0o666 less the
umask) into folders opened by :func:`open_folder` (which says what a symlink there gets).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict, get_args

# re-exported (``X as X``): the vocabulary lives in reports.outcomes, older imports name this module
from reports.outcomes import HEALTHY as HEALTHY
from reports.outcomes import OUTCOMES as OUTCOMES
from reports.outcomes import RANK as RANK
from reports.outcomes import REMEDIATION_VERDICTS as REMEDIATION_VERDICTS
from reports.outcomes import Outcome as Outcome
from reports.outcomes import RemediationDetail as RemediationDetail
from reports.outcomes import RemediationVerdict as RemediationVerdict
from reports.outcomes import as_outcome as as_outcome

SCHEMA_VERSION = 2

_RANK = RANK  # the name schema 1 used

Moment = Literal["check", "nightly", "provision", "gate"]
MOMENTS: tuple[Moment, ...] = get_args(Moment)
Verdict = RemediationVerdict  # this module's names before reports.outcomes
VERDICTS = REMEDIATION_VERDICTS
Kind = Literal["vm", "metal"]
ROLE_ORDER: dict[str, int] = {"cluster": 0, "master": 1, "agent": 2}


class SummaryError(ValueError):
    """A summary file that cannot be used: unreadable, not JSON, or another schema."""


class RemediationEntry(TypedDict):
    """One decision of the remediation audit log (JSON lines) of this run."""

    run_id: str
    time: str  # ISO 8601, UTC
    user: str  # who ran it
    host: str  # the runner's host name
    node: str
    check: str
    action: str
    mode: str
    verdict: Verdict
    guardrail: str | None
    reason: str
    before: Any
    after: Any
    duration_s: float


class Shard(TypedDict):
    index: int  # 1 <= index <= count
    count: int


class NodeTransport(TypedDict):
    connections: int  # ssh connections opened (1 when the ControlMaster held)
    round_trips: int  # ssh round trips (batched commands count once)
    commands: int  # commands answered (from batches included)
    live_commands: int  # commands that needed their own round trip


class Transport(TypedDict):
    nodes: dict[str, NodeTransport]
    api_requests: dict[str, int]  # API name (nomad, consul, vault, prometheus, openstack) -> HTTP requests


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """'alibuild2' < 'alibuild10'."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part)


def record_sort_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """Records are sorted by node, then check (then test id): the same order for one run and merged shards."""
    return (natural_key(str(record.get("node", ""))), str(record.get("check", "")), str(record.get("test_id", "")))


def node_sort_key(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """Nodes: the pseudo-node ``cluster``, then masters, then agents (then other roles), each by name."""
    return (ROLE_ORDER.get(str(node.get("role", "")), len(ROLE_ORDER)), natural_key(str(node.get("name", ""))))


@dataclass
class Record:
    check: str
    node: str
    outcome: Outcome
    severity: str
    message: str = ""
    duration_s: float = 0.0
    blocked_by: str | None = None
    role: str = ""
    runbook: str = ""
    remediation: str | None = None
    test_id: str = ""
    kind: str | None = None
    first_message: str | None = None
    remediation_detail: RemediationDetail | None = None

    def __post_init__(self) -> None:
        self.outcome = as_outcome(self.outcome)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Records:
    """Records in arrival order, one per test id; later reports of the same test merge into it."""

    def __init__(self) -> None:
        self._by_id: dict[str, Record] = {}

    def add(self, record: Record) -> None:
        key = record.test_id or f"{record.check}[{record.node}]"
        old = self._by_id.get(key)
        if old is None:
            self._by_id[key] = record
            return
        old.duration_s = round(old.duration_s + record.duration_s, 3)
        if RANK[record.outcome] > RANK[old.outcome]:
            old.outcome, old.message, old.blocked_by = record.outcome, record.message, record.blocked_by

    def __iter__(self) -> Iterator[Record]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def _outcome_of(r: Record | Mapping[str, Any]) -> str:
    return r.outcome if isinstance(r, Record) else str(r["outcome"])


def totals(records: Iterable[Record | Mapping[str, Any]]) -> dict[str, int]:
    """Number of records per outcome, every outcome present (``not_run`` included)."""
    counts = Counter(_outcome_of(r) for r in records)
    return {o: counts.get(o, 0) for o in OUTCOMES}


def blocked_by_root(records: Iterable[Record | Mapping[str, Any]]) -> dict[str, int]:
    """'node.ssh[alibuild03]' -> how many checks it blocked."""
    counts: Counter[str] = Counter()
    for r in records:
        data = r.to_json() if isinstance(r, Record) else r
        if data["outcome"] == "blocked" and data.get("blocked_by"):
            # an API's root check (api.<name>.reachable) lives on the pseudo-node "cluster"
            root = str(data["blocked_by"])
            node = "cluster" if root.startswith("api.") else str(data["node"])
            counts[f"{root}[{node}]"] += 1
    return dict(sorted(counts.items()))


def remediation_counts(remediations: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Audit-log decisions per verdict, every verdict present."""
    counts = Counter(str(e.get("verdict")) for e in remediations)
    return {v: counts.get(v, 0) for v in VERDICTS}


def is_healthy(summary: Mapping[str, Any]) -> bool:
    """Healthy: the run finished (not interrupted), exit status 0, and nothing failed, errored, was blocked
    or was left unrun. A run that checked nothing is not healthy either."""
    t = summary.get("totals") or {}
    records = summary.get("records")
    if isinstance(records, list) and sum(t.values()) != len(records):
        return False  # a record of no known outcome is not counted in the totals: it must not vanish into HEALTHY
    return (not summary.get("interrupted") and summary.get("exit_status") == 0 and sum(t.values()) > 0
            and all(o in HEALTHY for o, n in t.items() if n))


def empty_transport() -> Transport:
    return {"nodes": {}, "api_requests": {}}


def _finished(started: str, duration_s: float) -> str:
    try:
        return (datetime.fromisoformat(started) + timedelta(seconds=duration_s)).isoformat()
    except ValueError:
        return started


@dataclass
class Summary:
    run_id: str
    cluster: str
    inventory: str
    started: str  # ISO 8601, UTC
    duration_s: float
    records: Sequence[Record]
    exit_status: int | None = None
    warnings: Sequence[str] = ()
    nodes: Sequence[Mapping[str, Any]] = field(default_factory=list)
    moment: Moment = "check"
    finished: str | None = None  # default: started + duration_s
    interrupted: bool = False
    shard: Shard | None = None
    remediations: Sequence[RemediationEntry] = ()
    transport: Transport = field(default_factory=empty_transport)
    trend: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.moment not in MOMENTS:
            raise ValueError(f"unknown moment {self.moment!r}: expected one of {', '.join(MOMENTS)}")
        if self.shard is not None and not 1 <= int(self.shard["index"]) <= int(self.shard["count"]):
            raise ValueError(f"shard {self.shard['index']}/{self.shard['count']}: expected 1 <= index <= count")

    def to_json(self) -> dict[str, Any]:
        records = sorted((r.to_json() for r in self.records), key=record_sort_key)
        data: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "run_id": self.run_id,
            "cluster": self.cluster,
            "inventory": self.inventory,
            "moment": self.moment,
            "started": self.started,
            "finished": self.finished or _finished(self.started, self.duration_s),
            "duration_s": round(self.duration_s, 3),
            "exit_status": self.exit_status,
            "interrupted": self.interrupted,
            "shard": dict(self.shard) if self.shard else None,
            "warnings": list(self.warnings),
            "totals": totals(records),
            "healthy": False,
            "blocked_by": blocked_by_root(records),
            "nodes": sorted((dict(n) for n in self.nodes), key=node_sort_key),
            "remediations": [dict(e) for e in self.remediations],
            "transport": {"nodes": {k: dict(v) for k, v in sorted(self.transport.get("nodes", {}).items())},
                          "api_requests": dict(sorted(self.transport.get("api_requests", {}).items()))},
            "trend": dict(self.trend) if self.trend is not None else None,
            "records": records,
        }
        data["healthy"] = is_healthy(data)
        return data


def as_json(summary: Summary | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form of a summary: a :class:`Summary`'s, or a copy of a dict already in that form with its
    derived keys (``totals``, ``blocked_by``, ``healthy``) computed again from its records."""
    if isinstance(summary, Summary):
        return summary.to_json()
    data: dict[str, Any] = json.loads(json.dumps(summary))  # a deep copy
    records = data.get("records") or []
    data["totals"] = totals(records)
    data["blocked_by"] = blocked_by_root(records)
    data["healthy"] = is_healthy(data)
    return data


def dumps(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


class ReportPathError(OSError):
    """A report folder the writer refuses: a symlink where a real folder must be, or not a folder at all."""


Links = Literal["follow", "refuse", "replace"]
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def open_folder(path: Path, links: Links = "follow") -> int:
    """A descriptor of the folder ``path``, created if missing (0o777 less the umask).

    ``follow``: the folder the operator named (``--report-dir``, merge's OUT_DIR), a symlink there is theirs.
    Otherwise the last part is opened without following a symlink (the parent is followed, as the operator's):
    ``replace`` removes a symlink there (the link, never its target) and makes a real folder (``latest``, which the
    suite rewrites every run); ``refuse`` raises :class:`ReportPathError` (a run's folder: its name is new, a link
    there was put by someone else, and removing it could lose what it points at)."""
    if links == "follow":
        path.mkdir(parents=True, exist_ok=True)
        return os.open(path, _DIR)
    parent = open_folder(path.parent)
    try:
        for _ in range(3):  # another writer racing us: try again, then give up
            with contextlib.suppress(FileExistsError):
                os.mkdir(path.name, dir_fd=parent)
            try:
                return os.open(path.name, _DIR | os.O_NOFOLLOW, dir_fd=parent)
            except FileNotFoundError:
                continue
            except OSError as exc:  # ELOOP or ENOTDIR, as the kernel likes: ask what is there
                if not stat.S_ISLNK(os.lstat(path.name, dir_fd=parent).st_mode):
                    raise ReportPathError(f"{path}: not a folder ({exc.strerror}); fix: move it away") from exc
                if links == "refuse":
                    raise ReportPathError(f"{path} is a symlink: refused, reports are never written through one; "
                                          "fix: remove the link (its target is kept) and run again") from exc
                os.unlink(path.name, dir_fd=parent)
        raise ReportPathError(f"{path}: keeps changing while the reports are written; fix: run again")
    finally:
        os.close(parent)


def write_at(folder: int, name: str, data: str | bytes) -> None:
    """Write ``name`` in the open ``folder`` through a new temporary file there and os.replace: readers never see half
    a file, a symlink at ``name`` is replaced (never written through), and the mode is 0o666 less the umask. The
    temporary name is random and opened O_EXCL|O_NOFOLLOW (a guessable one could be a planted link), starts with a
    dot and ends in ``.tmp`` (node exporter reads only ``*.prom``)."""
    tmp = f".{name}-{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise


def atomic_write(path: Path, data: str | bytes) -> Path:
    """:func:`write_at` ``path`` (its folder is created if missing, and followed: the caller named it)."""
    folder = open_folder(path.parent)
    try:
        write_at(folder, path.name, data)
    finally:
        os.close(folder)
    return path


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RUN_ID = RUN_ID


def is_run_id(value: Any) -> bool:
    """A run's folder name: never ``latest`` nor ``latest-<moment>`` (the copies of the last runs, not runs)."""
    return (isinstance(value, str) and RUN_ID.fullmatch(value) is not None and value != "latest"
            and not value.startswith("latest-"))


def run_dir(report_dir: Path, run_id: str) -> Path:
    """``<report_dir>/<run id>``; a run id that is not one plain folder name is refused."""
    if not is_run_id(run_id):
        raise SummaryError(f"run id {run_id!r} cannot name a report folder (letters, digits, '.', '_', '-'; "
                           "not latest nor latest-*)")
    return report_dir / run_id


def write_summary(summary: Summary | Mapping[str, Any], report_dir: Path) -> Path:
    """Write ``<report_dir>/<run id>/summary.json`` and a copy at ``<report_dir>/latest/summary.json``.

    Only the JSON; :func:`reports.write_all` writes the HTML report, the metrics and the trend too."""
    data = as_json(summary)
    text = dumps(data)
    run = run_dir(report_dir, str(data["run_id"]))
    folders: tuple[tuple[Path, Links], ...] = ((run, "refuse"), (report_dir / "latest", "replace"))
    for folder, links in folders:
        fd = open_folder(folder, links)
        try:
            write_at(fd, "summary.json", text)
        finally:
            os.close(fd)
    return run / "summary.json"
