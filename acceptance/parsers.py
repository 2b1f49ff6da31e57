"""Parsers of what the nodes answer (puppet's run summary, TSM's tables and logs, ``df``), strict on purpose:
output that is not what the tool writes raises :class:`Malformed` (outcome ``error``), never reads as healthy."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from acceptance.outcomes import CheckError
from acceptance.redaction import clip


class Malformed(CheckError):
    """The node answered something that is not what the tool writes: the check cannot tell."""


def _int(data: dict[str, Any], section: str, key: str) -> int:
    value = data[section].get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Malformed(f"{section}.{key} is {'missing' if value is None else clip(repr(value), 40)}, "
                        "expected a count")
    return value


def image_repository(image: str) -> str:
    """'registry.cern.ch/alisw/slc9-builder:latest' -> 'registry.cern.ch/alisw/slc9-builder'."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return image.split("@", 1)[0]
    if ":" in last:
        return image[: image.rfind(":")]
    return image


# --------------------------------------------------------------------------- puppet


@dataclass(frozen=True)
class PuppetSummary:
    """The parts of ``last_run_summary.yaml`` the checks read; ``applied`` is False when the run applied no
    catalog (puppet then writes only ``version`` and ``time``)."""

    last_run: float
    applied: bool
    failed: int = 0
    failed_to_restart: int = 0
    event_failures: int = 0

    @property
    def clean(self) -> bool:
        return self.applied and self.failed == 0 and self.failed_to_restart == 0 and self.event_failures == 0


# libyaml's loader when PyYAML has it: the pure-Python one made the puppet summary the costliest part of a check
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=64)  # two checks of a node read the same summary
def parse_puppet_summary(text: str) -> PuppetSummary:
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise Malformed(f"not YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise Malformed(f"not a mapping but {type(data).__name__}")
    time_ = data.get("time")
    last_run = time_.get("last_run") if isinstance(time_, dict) else None
    if isinstance(last_run, bool) or not isinstance(last_run, int | float) or not math.isfinite(last_run):
        shown = "missing" if last_run is None else clip(repr(last_run), 40)
        raise Malformed(f"time.last_run is {shown}, expected epoch seconds")
    if "resources" not in data and "events" not in data:
        return PuppetSummary(last_run=float(last_run), applied=False)
    for section in ("resources", "events"):
        if not isinstance(data.get(section), dict):
            raise Malformed(f"'{section}' is {clip(repr(data.get(section)), 40)}, expected a mapping of counts")
    return PuppetSummary(last_run=float(last_run), applied=True, failed=_int(data, "resources", "failed"),
                         failed_to_restart=_int(data, "resources", "failed_to_restart"),
                         event_failures=_int(data, "events", "failure"))


# --------------------------------------------------------------------------- df


@dataclass(frozen=True)
class DiskSpace:
    avail: int
    size: int


def parse_df(text: str) -> DiskSpace:
    """``df -B1 --output=avail,size PATH``: a header line, then two numbers."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or len(lines[1]) != 2 or not all(p.isdigit() for p in lines[1]):
        raise Malformed(f"unexpected df output: {clip(text.strip(), 80)!r}")
    return DiskSpace(avail=int(lines[1][0]), size=int(lines[1][1]))


# --------------------------------------------------------------------------- TSM

_TSM_TIME = r"\d{1,2}/\d{1,2}/\d{4}\s+\d{1,2}:\d{2}:\d{2}"
_FILESPACE_RE = re.compile(rf"^\s*(\d+)\s+(?:({_TSM_TIME})\s+)?.*?\s(/\S.*?|/)\s*$")


@dataclass(frozen=True)
class Filespace:
    name: str
    last_incr: dt.datetime | None  # node-local time, naive


def parse_tsm_time(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(" ".join(text.split()), "%m/%d/%Y %H:%M:%S")
    except ValueError:
        raise Malformed(f"not a TSM date/time: {clip(text, 40)!r}") from None


def parse_filespaces(text: str) -> list[Filespace]:
    """Rows of ``dsmc query filespace`` (after the dashes line under the header)."""
    out: list[Filespace] = []
    in_table = False
    for line in text.splitlines():
        if re.match(r"^\s*-{3,}", line):
            in_table = True
            continue
        if not in_table:
            continue
        match = _FILESPACE_RE.match(line)
        if match:
            out.append(Filespace(name=match.group(3),
                                 last_incr=parse_tsm_time(match.group(2)) if match.group(2) else None))
    if not in_table:
        raise Malformed("no filespace table in the output of 'dsmc query filespace'")
    return out


def filespace_for(filespaces: list[Filespace], path: str) -> Filespace | None:
    """The filespace that contains ``path`` (the longest matching name)."""
    def contains(fs: Filespace) -> bool:
        name = fs.name.rstrip("/")
        return path == fs.name or path.startswith(name + "/") or fs.name == "/"
    matches = [fs for fs in filespaces if contains(fs)]
    return max(matches, key=lambda fs: len(fs.name)) if matches else None


_EVENT_RE = re.compile(
    rf"^({_TSM_TIME})\s+(?:(ANS\d+[EWI])\s+)?Scheduled event '([^']*)' (completed successfully|failed)\."
    r"(?:\s+Return code = (-?\d+)\.)?"
)
_FAILED_OBJECTS_RE = re.compile(r"Total number of objects failed:\s+([\d,]+)")


@dataclass(frozen=True)
class ScheduledEvent:
    """The last scheduled event's status line in dsmsched.log, and its summary block."""

    time: dt.datetime  # node-local, naive
    name: str
    success: bool
    message_id: str | None
    return_code: int | None
    objects_failed: int | None
    line: str


def parse_sched_log(text: str) -> ScheduledEvent | None:
    lines = text.splitlines()
    status_idx = [i for i, line in enumerate(lines) if _EVENT_RE.match(line)]
    if not status_idx:
        return None
    last = status_idx[-1]
    prev = status_idx[-2] if len(status_idx) > 1 else -1
    match = _EVENT_RE.match(lines[last])
    assert match is not None
    failed = None
    for line in lines[prev + 1:]:  # the event's summary block: after the previous status line
        m = _FAILED_OBJECTS_RE.search(line)
        if m:
            failed = int(m.group(1).replace(",", ""))
    return ScheduledEvent(
        time=parse_tsm_time(match.group(1)), name=match.group(3), success=match.group(4) == "completed successfully",
        message_id=match.group(2), return_code=int(match.group(5)) if match.group(5) else None,
        objects_failed=failed, line=lines[last].strip(),
    )


def node_clock(text: str) -> tuple[float, dt.timedelta]:
    """``date '+%s %z'`` -> (epoch seconds, the node's UTC offset)."""
    m = re.fullmatch(r"\s*(\d+)\s+([+-])(\d{2})(\d{2})\s*", text)
    if not m:
        raise Malformed(f"unexpected output of date: {clip(text.strip(), 40)!r}")
    sign = -1 if m.group(2) == "-" else 1
    return float(m.group(1)), sign * dt.timedelta(hours=int(m.group(3)), minutes=int(m.group(4)))


# --------------------------------------------------------------------------- systemd

_ENABLED_STATES = {"enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "transient"}


@dataclass(frozen=True)
class UnitState:
    name: str
    load_state: str
    active_state: str
    sub_state: str
    unit_file_state: str

    @property
    def exists(self) -> bool:
        return self.load_state not in ("not-found", "")

    @property
    def active(self) -> bool:
        return self.active_state == "active"

    @property
    def enabled(self) -> bool:
        return self.unit_file_state in _ENABLED_STATES

    def describe(self) -> str:
        if not self.exists:
            return f"{self.name} is not installed (LoadState={self.load_state or '?'})"
        return f"{self.name} is {self.active_state}/{self.sub_state}, {self.unit_file_state or 'no unit file state'}"


def unit_state(unit: str, properties: dict[str, str]) -> UnitState:
    """A unit from ``systemctl show`` (testinfra's ``host.service(unit).systemd_properties``)."""
    if "LoadState" not in properties or "ActiveState" not in properties:
        raise Malformed(f"'systemctl show {unit}' gave no LoadState/ActiveState")
    return UnitState(name=properties.get("Id") or unit, load_state=properties["LoadState"],
                     active_state=properties["ActiveState"], sub_state=properties.get("SubState", ""),
                     unit_file_state=properties.get("UnitFileState", ""))
