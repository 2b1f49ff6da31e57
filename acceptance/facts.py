"""Node facts in ONE round trip: a POSIX shell script sent once over ssh prints delimited sections,
parsed here, locally, into a typed :class:`NodeFacts` (no python needed on the node).

Output format, one block per section::

    @@facts:begin:<name>
    <combined stdout and stderr of the section's command>
    @@facts:end:<name>:<exit status>

A section missing from the output (script cut short, old script) is ``None`` in the facts, and the
checks that need it report ``error``, never ``passed``.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from acceptance.checkspec import CheckError
from acceptance.inventory import Expectations, Node

SCRIPT_VERSION = 1
_BEGIN = "@@facts:begin:"
_END = "@@facts:end:"
_END_RE = re.compile(r"^@@facts:end:([a-z_]+):(-?\d+)$")


# --------------------------------------------------------------------------- the script


def unit_name(unit: str) -> str:
    return unit if "." in unit else f"{unit}.service"


def node_units(node: Node, expect: Expectations) -> list[str]:
    units = list(expect.master_units if node.role == "master" else expect.agent_units)
    if node.role == "master" and expect.backup_unit not in units:
        units.append(expect.backup_unit)
    return units


def image_repository(image: str) -> str:
    """'registry.cern.ch/alisw/slc9-builder:latest' -> 'registry.cern.ch/alisw/slc9-builder'."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return image.split("@", 1)[0]
    if ":" in last:
        return image[: image.rfind(":")]
    return image


def build_script(node: Node, expect: Expectations, command_timeout_s: int = 60) -> str:
    """The facts script for one node (its sections depend on the node's role)."""
    q = shlex.quote
    t = max(5, command_timeout_s // 3)  # per slow command (docker, dsmc) so one hung daemon cannot eat the budget
    units = " ".join(q(unit_name(u)) for u in node_units(node, expect))
    lines = [
        f"# alice-acceptance facts script v{SCRIPT_VERSION}",
        "LC_ALL=C; export LC_ALL; PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH",
        '_t() { if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi; }',
        f'_s() {{ _n=$1; shift; echo "{_BEGIN}$_n"; "$@" </dev/null 2>&1; _r=$?; echo; echo "{_END}$_n:$_r"; }}',
        "_s whoami id -un",
        "_s hostname hostname",
        "_s clock date '+%s %z'",
        "_s cmdline cat /proc/cmdline",
        f"_s units systemctl show -p Id,LoadState,ActiveState,SubState,UnitFileState {units}",
        f"_s puppet cat {q(expect.puppet_summary)}",
    ]
    if node.role == "agent":
        repo = image_repository(expect.builder_image)
        lines += [
            f"_s images _t {t} docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' {q(repo)}",
            f"_s findmnt findmnt -n -o SOURCE,FSTYPE,TARGET {q(expect.build_mount)}",
            f"_s df df -B1 --output=avail,size {q(expect.build_mount)}",
        ]
    else:
        lines += [
            f"_s filespaces _t {t} dsmc query filespace",
            f"_s schedlog tail -n 400 {q(expect.backup_sched_log)}",
        ]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    rc: int
    text: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def first_line(self) -> str:
        return next((line.strip() for line in self.text.splitlines() if line.strip()), f"exit status {self.rc}")


def parse_sections(output: str) -> dict[str, Section]:
    """Split the script's output into sections; a section without its end line is dropped."""
    sections: dict[str, Section] = {}
    name: str | None = None
    body: list[str] = []
    for line in output.splitlines():
        if line.startswith(_BEGIN):
            name, body = line[len(_BEGIN):].strip(), []
            continue
        match = _END_RE.match(line)
        if match and name is not None and match.group(1) == name:
            if body and body[-1] == "":
                body.pop()  # the newline the script adds before the end line
            sections[name] = Section(rc=int(match.group(2)), text="\n".join(body))
            name = None
            continue
        if name is not None:
            body.append(line)
    return sections


# --------------------------------------------------------------------------- typed facts

_ENABLED_STATES = {"enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "transient"}


@dataclass(frozen=True)
class UnitState:
    name: str
    load_state: str = ""
    active_state: str = ""
    sub_state: str = ""
    unit_file_state: str = ""

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


def parse_units(text: str) -> dict[str, UnitState]:
    """``systemctl show -p Id,...`` output (blank-line separated blocks) -> {unit: state}."""
    units: dict[str, UnitState] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" not in props:
            continue
        units[props["Id"]] = UnitState(
            name=props["Id"], load_state=props.get("LoadState", ""), active_state=props.get("ActiveState", ""),
            sub_state=props.get("SubState", ""), unit_file_state=props.get("UnitFileState", ""),
        )
    return units


@dataclass(frozen=True)
class PuppetSummary:
    """The parts of ``last_run_summary.yaml`` the checks read."""

    last_run: float | None
    failed: int
    failed_to_restart: int
    event_failures: int
    changed: int
    config_version: str | None

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.failed_to_restart == 0 and self.event_failures == 0


def parse_puppet_summary(text: str) -> PuppetSummary:
    """Raise ValueError when the text is not a puppet run summary."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"not YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError("not a mapping")

    def num(path: str) -> float | None:
        cur: Any = data
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return float(cur) if isinstance(cur, int | float) and not isinstance(cur, bool) else None

    resources, events, time_ = data.get("resources"), data.get("events"), data.get("time")
    if not isinstance(resources, dict) and not isinstance(time_, dict):
        raise ValueError("neither 'resources' nor 'time' in it")
    version = data.get("version", {})
    return PuppetSummary(
        last_run=num("time.last_run"),
        failed=int(num("resources.failed") or 0),
        failed_to_restart=int(num("resources.failed_to_restart") or 0),
        event_failures=int(num("events.failure") or 0) if isinstance(events, dict) else 0,
        changed=int(num("resources.changed") or 0),
        config_version=str(version.get("config")) if isinstance(version, dict) and "config" in version else None,
    )


@dataclass(frozen=True)
class Mount:
    source: str
    fstype: str
    target: str


def parse_findmnt(text: str) -> Mount | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            return Mount(source=parts[0], fstype=parts[1], target=" ".join(parts[2:]))
    return None


@dataclass(frozen=True)
class DiskSpace:
    avail: int
    size: int


def parse_df(text: str) -> DiskSpace | None:
    """``df -B1 --output=avail,size PATH``: a header line then two numbers."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return DiskSpace(avail=int(parts[0]), size=int(parts[1]))
    return None


_TSM_TIME = r"\d{1,2}/\d{1,2}/\d{4}\s+\d{1,2}:\d{2}:\d{2}"
_FILESPACE_RE = re.compile(rf"^\s*(\d+)\s+(?:({_TSM_TIME})\s+)?.*?\s(/\S.*?|/)\s*$")


@dataclass(frozen=True)
class Filespace:
    name: str
    last_incr: dt.datetime | None  # node-local time, naive


def parse_tsm_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(" ".join(text.split()), "%m/%d/%Y %H:%M:%S")


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
            out.append(Filespace(name=match.group(3), last_incr=parse_tsm_time(match.group(2)) if match.group(2)
                                 else None))
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


class FactMissing(CheckError):
    """A section the check needs is not in the node's output: the check cannot run (outcome error)."""


@dataclass(frozen=True)
class NodeFacts:
    """Everything the node checks read, gathered in one round trip."""

    sections: Mapping[str, Section] = field(default_factory=dict)
    whoami: str | None = None
    hostname: str | None = None
    now: float | None = None  # node clock, epoch seconds
    utc_offset: dt.timedelta | None = None  # node's local time zone offset
    cmdline: tuple[str, ...] | None = None
    units: Mapping[str, UnitState] | None = None

    def section(self, name: str) -> Section:
        if name not in self.sections:
            raise FactMissing(f"facts section '{name}' is missing from the node's output")
        return self.sections[name]

    def need_now(self) -> float:
        if self.now is None:
            raise FactMissing("the node's clock (facts section 'clock') is missing or unreadable")
        return self.now

    def unit(self, unit: str) -> UnitState:
        if self.units is None:
            raise FactMissing("facts section 'units' is missing from the node's output")
        name = unit_name(unit)
        return self.units.get(name, UnitState(name=name, load_state="not-found"))

    def local_epoch(self, local: dt.datetime) -> float:
        """A node-local naive time (TSM logs) as epoch seconds, with the node's UTC offset."""
        offset = self.utc_offset or dt.timedelta(0)
        return local.replace(tzinfo=dt.timezone(offset)).timestamp()

    @classmethod
    def parse(cls, output: str) -> NodeFacts:
        sections = parse_sections(output)
        now = offset = None
        clock = sections.get("clock")
        if clock and clock.ok:
            m = re.match(r"^\s*(\d+)\s+([+-])(\d{2})(\d{2})", clock.text)
            if m:
                now = float(m.group(1))
                sign = -1 if m.group(2) == "-" else 1
                offset = sign * dt.timedelta(hours=int(m.group(3)), minutes=int(m.group(4)))
        who = sections.get("whoami")
        host = sections.get("hostname")
        cmdline = sections.get("cmdline")
        units = sections.get("units")
        return cls(
            sections=sections,
            whoami=who.text.strip() if who and who.ok else None,
            hostname=host.text.strip() if host and host.ok else None,
            now=now, utc_offset=offset,
            cmdline=tuple(cmdline.text.split()) if cmdline and cmdline.ok else None,
            units=parse_units(units.text) if units is not None and units.text.strip() else None,
        )
