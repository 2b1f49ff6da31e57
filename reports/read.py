"""The one reader of summaries other runs wrote (a previous run for the trend, the shards ``reports.merge``
reads): a regular file of bounded size, strict JSON (UTF-8, no NaN, no duplicate key, bounded depth), then
:func:`check_summary` (the schema, every field that is read with its type, known outcomes), so that every
writer downstream can trust what it gets. A problem is a :class:`SummaryError` with one line."""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from reports.summary import MOMENTS, OUTCOMES, SCHEMA_VERSION, VERDICTS, SummaryError, is_run_id

MAX_BYTES = 64 * 1024 * 1024  # a night of ALICE is a few MB: far more is not a summary, and not worth the memory
NAME_MAX, TEXT_MAX, MAX_DEPTH = 256, 65536, 32


def read_file(path: Path, *, follow: bool = True, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``); :class:`SummaryError`, one line, otherwise.
    Opened non-blocking, so that a FIFO cannot hang the run; ``follow=False`` refuses a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        why = "a symlink, not followed in a report folder" if not follow and path.is_symlink() else exc.strerror
        raise SummaryError(f"{path}: cannot be read ({why})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise SummaryError(f"{path}: {kind}, not a summary")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1) if info.st_size <= limit else b""  # +1: a file that grew is caught too
        if info.st_size > limit or len(data) > limit:
            raise SummaryError(f"{path}: {max(info.st_size, len(data))} bytes, more than the {limit >> 20} MiB a "
                               "summary may have")
        return data
    except OSError as exc:
        raise SummaryError(f"{path}: cannot be read ({exc.strerror})") from exc
    finally:
        os.close(fd)


def _show(value: Any) -> str:
    text = repr(value)  # quoted, control characters escaped: a message stays one line
    return text if len(text) <= 60 else text[:56] + "...'"


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:  # json keeps the last one silently: which one a reader sees must not be a guess
            raise ValueError(f"duplicate key {_show(key)}")
        data[key] = value
    return data


def _finite(text: str) -> float:
    if not math.isfinite(value := float(text)):
        raise ValueError(f"number {text[:30]} out of range")
    return value


def _integer(text: str) -> int:
    if len(text) > 20:
        raise ValueError(f"a whole number of {len(text)} digits")
    return int(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_summary(raw: bytes, name: str) -> dict[str, Any]:
    """A summary of this schema from the bytes of the file ``name``: :func:`check_summary`, after strict JSON (UTF-8
    without BOM, no NaN or infinity, no duplicate key)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise SummaryError(f"{name}: starts with a byte order mark (a summary is UTF-8 without one)")
    if not raw.strip():
        raise SummaryError(f"{name}: empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SummaryError(f"{name}: not UTF-8 (byte {exc.start})") from exc
    try:
        data = json.loads(text, object_pairs_hook=_unique, parse_float=_finite, parse_int=_integer,
                          parse_constant=_constant)
    except RecursionError as exc:
        raise SummaryError(f"{name}: nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise SummaryError(f"{name}: cannot be read as JSON ({exc})") from exc
    return check_summary(data, name)


def load_summary(path: Path, *, follow: bool = True) -> dict[str, Any]:
    """Read a summary.json of schema 2 (:func:`parse_summary`); :class:`SummaryError` (one line naming the file)
    otherwise."""
    return parse_summary(read_file(path, follow=follow), str(path))


# kind -> (what it should be, the JSON types it comes in, the test); enumerations in _CHOICES; objects in _FIELDS
_SCALARS: dict[str, tuple[str, tuple[type, ...], Callable[[Any], bool]]] = {
    "id": (f"a string of 1 to {NAME_MAX} printable characters", (str,),
           lambda v: 0 < len(v) <= NAME_MAX and v.isprintable()),
    "text": (f"a string of at most {TEXT_MAX} characters", (str,), lambda v: len(v) <= TEXT_MAX),
    "count": ("a whole number >= 0", (int,), lambda v: 0 <= v < 2**53),
    "seconds": ("a number of seconds >= 0", (int, float), lambda v: 0 <= v <= 1e12),  # NaN fails every comparison
    "status": ("an exit status 0-255", (int,), lambda v: 0 <= v <= 255),
    "bool": ("true or false", (bool,), lambda v: True),
    "run_id": ("a folder name (letters, digits, '.', '_', '-'; not 'latest' nor 'latest-*')", (str,), is_run_id),
}
_CHOICES: dict[str, tuple[str, ...]] = {"outcome": OUTCOMES, "verdict": VERDICTS, "moment": MOMENTS}
# field -> kind; "!": required, "?": may be null, list[...] / map[...] of a kind (map keys are ids)
_FIELDS: dict[str, dict[str, str]] = {
    "summary": {"run_id": "!run_id", "cluster": "!id", "moment": "!moment", "records": "!list[record]",
                "inventory": "text?", "started": "text?", "finished": "text?", "duration_s": "seconds?",
                "exit_status": "status?", "interrupted": "bool?", "shard": "shard?", "warnings": "list[text]?",
                "nodes": "list[node]?", "remediations": "list[remediation]?", "transport": "transport?"},
    "record": {"check": "!id", "node": "!id", "outcome": "!outcome", "severity": "!text", "message": "!text",
               "duration_s": "seconds?", "blocked_by": "id?", "role": "text?", "kind": "text?", "runbook": "text?",
               "remediation": "text?", "test_id": "text?", "first_message": "text?", "remediation_detail": "detail?"},
    "detail": {"action": "!text", "mode": "!text", "verdict": "!verdict", "guardrail": "text?",
               "duration_s": "seconds?"},
    "remediation": {"verdict": "!verdict", "run_id": "text?", "time": "text?", "node": "text?", "check": "text?",
                    "action": "text?", "mode": "text?", "guardrail": "text?", "reason": "text?",
                    "duration_s": "seconds?"},
    "node": {"name": "!id", "role": "text?", "kind": "text?", "maintenance": "maintenance?"},
    "maintenance": {"reason": "text?", "until": "text?"},
    "shard": {"index": "!count", "count": "!count"},
    "transport": {"nodes": "map[map[count]]?", "api_requests": "map[count]?"},
}
_JSON_TYPE = {dict: "object", list: "list", str: "string", int: "int", float: "number", bool: "bool"}


def _type(value: Any) -> str:
    return _JSON_TYPE.get(type(value), "null" if value is None else type(value).__name__)


def _problem(value: Any, kind: str, where: str) -> str | None:
    """What is wrong with ``value`` as a ``kind`` (None: nothing), the first thing found, ``where`` it is."""
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    outer, _, inner = kind.partition("[")
    if inner:
        if not isinstance(value, list if outer == "list" else dict):
            return f"{where}: {_type(value)}, expected {'a list' if outer == 'list' else 'an object'}"
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            here = f"{where}[{key if isinstance(key, int) else _show(key)}]"
            if isinstance(key, str) and (problem := _problem(key, "id", f"{here} (the name)")):
                return problem
            if problem := _problem(item, inner[:-1], here):
                return problem
        return None
    if kind in _FIELDS:
        if not isinstance(value, dict):
            return f"{where or 'the summary'}: {_type(value)}, expected an object"
        for name, sub in _FIELDS[kind].items():
            here = f"{where}.{name}" if where else name
            if name in value:
                if problem := _problem(value[name], sub.lstrip("!"), here):
                    return problem
            elif sub.startswith("!"):
                return f"{here}: missing"
        if kind == "shard" and not 1 <= value["index"] <= value["count"] <= 1000:
            return f"{where}: {value['index']}/{value['count']}, expected 1 <= index <= count <= 1000"
        return None
    if kind in _CHOICES:
        if isinstance(value, str) and value in _CHOICES[kind]:
            return None
        shown = f"unknown {kind} {_show(value)}" if isinstance(value, str) else _type(value)
        return f"{where}: {shown} (expected one of {', '.join(_CHOICES[kind])})"
    what, types, test = _SCALARS[kind]
    if type(value) not in types:
        return f"{where}: {_type(value)}, expected {what}"
    return None if test(value) else f"{where}: {_show(value)}, expected {what}"


def _deep(data: Any) -> str | None:
    """Nesting beyond MAX_DEPTH, or a string UTF-8 cannot hold (a lone surrogate, from a \\udXXX escape)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((x, depth + 1) for pair in items for x in pair)
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"a string that is not Unicode text ({_show(value)})"
    return None


def check_summary(data: Any, name: str) -> dict[str, Any]:
    """``data`` if it is a summary of this schema that the writers can use: an object, every field they read of
    the right type, records of known outcomes, numbers finite and in range; :class:`SummaryError` otherwise (one
    line: ``<name>: <what is wrong>``). Unknown keys are kept: a newer writer may add some."""
    if not isinstance(data, dict):
        raise SummaryError(f"{name}: not a summary (a JSON object is expected, not a {_type(data)})")
    schema = data.get("schema")
    if type(schema) is not int or schema != SCHEMA_VERSION:
        raise SummaryError(f"{name}: schema {_show(schema)}, this version reads schema {SCHEMA_VERSION}")
    if problem := _deep(data) or _problem(data, "summary", ""):
        raise SummaryError(f"{name}: {problem}")
    return data
