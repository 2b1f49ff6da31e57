"""How a problem of the inventory is said: :class:`InventoryError` (one line, ``FILE:LINE: KEY: PROBLEM; fix:
FIX``), and values as quoted in it: short, on one line, credentials blanked out."""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

# user:password@ in a URL, with or without a scheme; linear (a match starts only where a word starts)
_CREDENTIALS = re.compile(r"(?<![^\s/@'\"])[^\s/@'\":]*+:[^\s/@'\"]*+@")


def _redact(text: str) -> str:
    return _CREDENTIALS.sub("***@", text) if "@" in text else text


def _clean(text: str, limit: int) -> str:
    """One line of at most `limit` characters, credentials blanked out."""
    text = _redact(text[: 4 * limit])
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InventoryError(Exception):
    """A bad inventory: one line with the file, the key, the problem and the fix."""

    def __init__(self, path: Path | str, key: str, problem: str, fix: str, line: int | None = None) -> None:
        self.path = str(path)
        self.key = _clean(key, 120)
        self.problem = _clean(problem, 300)
        self.fix = _clean(fix, 500)
        self.line = line
        shown = "".join(c if c.isprintable() else "?" for c in self.path)
        where = f"{shown}:{line}" if line else shown
        head = f"{where}: {self.key}: " if self.key else f"{where}: "
        super().__init__(f"{head}{self.problem}; fix: {self.fix}")


class _Short(reprlib.Repr):
    """repr() of at most a few items and levels: a message never walks a whole (possibly aliased) structure."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 2, 50, 50, 50
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 4
        self.maxdict = 3

    def repr_str(self, x: str, level: int) -> str:
        return super().repr_str(_redact(x), level)  # before it is shortened, which could cut the '@' off

    # the mapping and list classes of acceptance.inventory.loading, by their names (reprlib dispatches on them)
    def repr__Map(self, x: dict[Any, Any], level: int) -> str:
        return self.repr_dict(x, level)

    def repr__List(self, x: list[Any], level: int) -> str:
        return self.repr_list(x, level)


_SHORT = _Short()


def show(value: Any) -> str:
    """A value as quoted in a message: at most 60 characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(value: Any) -> str:
    """A value and what it is: ``'x' (str)``, ``{...} (mapping)``."""
    kind = {"_Map": "mapping", "_List": "list", "dict": "mapping", "NoneType": "null"}.get(type(value).__name__)
    return f"{show(value)} ({kind or type(value).__name__})"


def tail(path: Path) -> str:
    """A path as quoted in a message: its last 160 characters at most."""
    text = str(path)
    return text if len(text) <= 160 else "..." + text[-157:]
