"""Shape checks of the answers the suite reads: every key a check relies on is there, of the documented type,
numbers finite. A violation is a :class:`ShapeError` saying what was expected where (``Servers[1].Voter is "yes"
(str), expected true or false``), which the caller makes a ``protocol`` error quoting the endpoint."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from acceptance.inventory import valid_node_name

T = TypeVar("T")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}))$")
INDEXES = ("CreateIndex", "ModifyIndex")


class ShapeError(ValueError):
    pass


def describe(value: object) -> str:
    """``"yes" (str)``: a short rendering of an unexpected value."""
    text = repr(value)
    return f"{text[:37] + '...' if len(text) > 40 else text} ({type(value).__name__})"


def _typed(value: object, kind: type[T], where: str, expected: str) -> T:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):  # true is no number
        raise ShapeError(f"{where} is {describe(value)}, expected {expected}")
    return value


def _field(data: Mapping[str, Any], name: str, where: str, kind: type[T], expected: str, default: T | None) -> T:
    """``data[name]`` as a ``kind``; ``default`` when absent or null (else it is required)."""
    value = data.get(name)
    if value is None:
        if default is None:
            raise ShapeError(f"{where} has no {name!r}")
        return default
    return _typed(value, kind, f"{where}.{name}", expected)


def obj(value: object, where: str) -> Mapping[str, Any]:
    return _typed(value, dict, where, "an object")


def arr(value: object, where: str) -> list[Any]:
    return _typed(value, list, where, "a list")


def text(value: object, where: str) -> str:
    return _typed(value, str, where, "a string")


def key(data: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in data:
        raise ShapeError(f"{where} has no {name!r}")
    return data[name]


def string(data: Mapping[str, Any], name: str, where: str, *, default: str | None = None,
           empty: bool = True) -> str:
    """``empty=False`` refuses '' (a default is given back as it is)."""
    value = _field(data, name, where, str, "a string", default)
    if not empty and not value and data.get(name) is not None:
        raise ShapeError(f"{where}.{name} is empty")
    return value


def node_name(data: Mapping[str, Any], key_name: str, where: str) -> str:
    """A node name by the inventory's rule (control characters, markup, a sentence are not carried into a verdict)."""
    value = string(data, key_name, where, empty=False)
    problem = valid_node_name(value)
    if problem:
        raise ShapeError(f"{where}.{key_name} is {describe(value)}: {problem}")
    return value


def boolean(data: Mapping[str, Any], name: str, where: str, *, default: bool | None = None) -> bool:
    return _field(data, name, where, bool, "true or false", default)


def integer(data: Mapping[str, Any], name: str, where: str, *, default: int | None = None) -> int:
    return _field(data, name, where, int, "a whole number", default)


def finite(value: object, where: str, *, numeric_string: bool = False) -> float:
    """A finite JSON number (with ``numeric_string``, also a string holding one: Prometheus' sample values)."""
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif numeric_string and isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not math.isfinite(number):
        raise ShapeError(f"{where} is {describe(value)}, expected a finite number")
    return number


def numbers(data: Mapping[str, Any], where: str, names: tuple[str, ...] = INDEXES) -> None:
    """The documented numeric fields the suite does not use are numbers too when present (an answer with numbers
    as strings, or NaN, is not the API's, whatever else it holds)."""
    for name in names:
        if data.get(name) is not None:
            finite(data[name], f"{where}.{name}")


def host_port(value: object, where: str) -> str:
    """``host:port`` (IPv4, a name, or ``[IPv6]``), as Nomad and Consul give raft addresses."""
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not _HOST.match(host):
        raise ShapeError(f"{where} is {describe(value)}, expected host:port")
    return str(value)


def str_map(value: object, where: str) -> dict[str, str]:
    """An object of string values (labels, tags)."""
    return {str(k): text(v, f"{where}.{k}") for k, v in obj(value, where).items()}


def items(data: Mapping[str, Any] | list[Any], name: str | None, where: str) -> list[Mapping[str, Any]]:
    """A list of objects: ``data`` itself (name None) or ``data[name]``; null as the list is refused."""
    value = data if name is None else key(obj(data, where), name, where)
    label = where if name is None else f"{where}.{name}"
    return [obj(v, f"{label}[{i}]") for i, v in enumerate(arr(value, label))]


def records(data: Any, make: Callable[[Mapping[str, Any], str], T], name: str | None = None,
            numeric: tuple[str, ...] = INDEXES) -> list[T]:
    """``make(item, its label)`` of each object of the list ``data`` (or ``data[name]``), its ``numeric``
    fields checked."""
    out = []
    for i, item in enumerate(items(data, name, "the body")):
        where = f"{name or ''}[{i}]"
        numbers(item, where, numeric)
        out.append(make(item, where))
    return out
