"""The table-driven reader: a dataclass of :mod:`acceptance.inventory.model` read from a parsed mapping, each
field by its annotation (section, Literal, tuple, bool, number, date, string, path) and its
:class:`~acceptance.inventory.rules.Rule`. The first problem is an :class:`InventoryError` naming the key and
its line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, cast

from acceptance.inventory.loading import line_of
from acceptance.inventory.messages import InventoryError, describe, show, tail
from acceptance.inventory.rules import NO_RULE, Rule

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")


@functools.cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,60}", key) else show(key)


def _number_text(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


class Reader:
    """Walks the parsed YAML with the file path at hand for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, key: str, problem: str, fix: str, line: int | None = None) -> NoReturn:
        raise InventoryError(self.path, key, problem, fix, line)

    def mapping(self, value: Any, where: str, allowed: Iterable[str], required: Iterable[str] = (),
                line: int | None = None) -> dict[Any, Any]:
        if not isinstance(value, dict):
            self.fail(where or "(top level)", f"expected a mapping, got {describe(value)}",
                      f"write {where or 'the file'} as 'key: value' lines", line)
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) if isinstance(key, str) and \
                    len(key) <= 60 else []
                fix = f"did you mean '{close[0]}'?" if close else f"remove it (known keys: {', '.join(allowed)})"
                self.fail(_join(where, _key_text(key)), "unknown key", fix, line_of(value, key) or line)
        for key in required:
            if value.get(key) is None:
                self.fail(_join(where, key), "missing", f"add '{key}:' to {where or 'the file'}",
                          line_of(value) or line)
        return value

    def section(self, cls: type[_D], raw: Any, where: str, line: int | None = None, keys: Iterable[str] = (),
                **fixed: Any) -> _D:
        """A dataclass from a mapping: each field read by its annotation and its rule; `fixed` ones are given."""
        keys = tuple(keys)
        fields = [f for f in dataclasses.fields(cls) if f.name not in fixed and (not keys or f.name in keys)]
        required = [f.name for f in fields if f.default is f.default_factory is dataclasses.MISSING]
        m = self.mapping(raw, where, [f.name for f in fields], required, line)
        hints = _hints(cls)
        values = {f.name: self.value(m[f.name], _join(where, f.name), line_of(m, f.name), hints[f.name],
                                     f.metadata.get("rule", NO_RULE), f.default)
                  for f in fields if m.get(f.name) is not None}
        factory: Callable[..., _D] = cls
        return factory(**values, **fixed)

    def optional(self, cls: type[_D], m: dict[Any, Any], key: str) -> _D:
        """The section `key` of the top level, defaults when absent."""
        return self.section(cls, m[key], key, line_of(m, key)) if m.get(key) is not None else cls()

    def entries(self, m: dict[Any, Any], key: str, where: str, what: str) -> list[tuple[str, int | None, Any]]:
        """(where, line, entry) of each entry of the list `key`."""
        value = m.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(_join(where, key), f"expected a list, got {describe(value)}", f"write {key} as {what}",
                      line_of(m, key))
        return [(f"{_join(where, key)}[{i}]", line_of(value, i), entry) for i, entry in enumerate(value)]

    def value(self, value: Any, at: str, line: int | None, hint: Any, rule: Rule, default: Any = None) -> Any:
        """`value` read as the annotation `hint` says, within `rule`; `at` names it in messages."""
        key = at.rsplit(".", 1)[-1]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        if dataclasses.is_dataclass(hint):
            return self.section(cast("type[DataclassInstance]", hint), value, at, line, rule.keys)
        if typing.get_origin(hint) is Literal:
            choices = rule.choices or typing.get_args(hint)
            if not isinstance(value, str) or value not in choices:
                self.fail(at, f"{show(value)} is not one of {', '.join(choices)}", f"use one of {', '.join(choices)}",
                          line)
            return value
        if typing.get_origin(hint) is tuple:
            if not isinstance(value, list):
                self.fail(at, f"expected a list, got {describe(value)}", f"write {key} as a list: [a, b]", line)
            if rule.nonempty and not value:
                self.fail(at, "an empty list: it would drop the checks it defines",
                          f"list at least one, or remove {key} to use the default", line)
            item = typing.get_args(hint)[0]
            return tuple(self.value(v, f"{at}[{i}]", line_of(value, i) or line, item, rule)
                         for i, v in enumerate(value))
        if hint is bool:
            if not isinstance(value, bool):
                self.fail(at, f"expected true or false, got {describe(value)}", f"write {key}: true or false", line)
            return value
        if hint in (int, float):
            return self.number(value, at, key, line, hint is int, rule, default)
        if hint is dt.date:
            return self.date(value, at, line)
        text = self.text(value, at, key, line, rule)
        return self.file_path(text, at, line, rule) if hint is Path else text

    def number(self, value: Any, at: str, key: str, line: int | None, whole: bool, rule: Rule,
               default: Any) -> float:
        what = "a whole number" if whole else "a number"
        example = f", e.g. {default}" if isinstance(default, int | float) else ""
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            self.fail(at, f"expected {'an integer' if whole else 'a number'}, got {describe(value)}",
                      f"write {key} as {what}{example}", line)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(at, f"{value} is not a finite number", f"write {key} as {what}{example}", line)
        lo, hi = rule.lo, rule.hi
        if (lo is not None and (value < lo or (rule.above and value == lo))) or (hi is not None and value > hi):
            bounds = " and ".join(b for b in (
                "" if lo is None else f"{'>' if rule.above else '>='} {_number_text(lo)}",
                "" if hi is None else f"<= {_number_text(hi)}") if b)
            self.fail(at, f"must be {bounds}, got {show(value)}", f"write {what} {bounds}{example}", line)
        return value if whole else float(value)

    def date(self, value: Any, at: str, line: int | None) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                self.fail(at, f"{value} is not a day of the calendar", "write a real date as YYYY-MM-DD", line)
        self.fail(at, f"expected a date, got {describe(value)}", "write it as YYYY-MM-DD", line)

    def text(self, value: Any, at: str, key: str, line: int | None, rule: Rule) -> str:
        if not isinstance(value, str):
            self.fail(at, f"expected a string, got {describe(value)}", f"write {key} as a string (quote it)", line)
        if rule.check is not None and (problem := rule.check(value)) is not None:
            self.fail(at, *problem, line)  # first: a check may refuse a value that must not be shown (a password)
        if not value.strip():
            self.fail(at, "empty", f"write a value for {key}, or remove the key", line)
        if not all(c.isprintable() or (rule.multiline and c in "\n\t") for c in value):
            self.fail(at, f"{show(value)} has a line break or a control character", "write it on one line", line)
        return value

    def file_path(self, text: str, at: str, line: int | None, rule: Rule) -> Path:
        try:
            path = Path(text).expanduser()
            if not path.is_absolute():
                path = (self.base / path).resolve()
            exists, is_dir, regular = path.exists(), path.is_dir(), path.is_file()
        except (OSError, RuntimeError, ValueError) as e:
            self.fail(at, f"cannot use the path {show(text)} ({type(e).__name__})", "fix the path", line)
        fix = "fix the path (relative paths are relative to the inventory file)"
        if rule.exists == "dir" and not is_dir:
            self.fail(at, f"not a directory: {tail(path)}" if exists else f"directory not found: {tail(path)}",
                      fix, line)
        if rule.exists == "file" and not exists:
            self.fail(at, f"file not found: {tail(path)}", fix, line)
        if rule.exists != "dir" and is_dir:
            self.fail(at, f"{tail(path)} is a directory", "name a file", line)
        if rule.exists == "file" and not regular:  # /dev/zero, a FIFO: read without end, or never
            self.fail(at, f"{tail(path)} is not a regular file (a device, a FIFO or a socket)", "name a regular file",
                      line)
        return path
