"""What remediation remembers across runs, in one state file (mode 0600, written atomically under a lock):
the retry budget per check and node (attempts per rung of the escalation ladder, within a window), and the
nodes this suite drained, so that a run that died mid-action is finished or undone by the next one."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StateFile:
    def __init__(self, path: Path, window_h: float) -> None:
        self.path = path
        self.window_s = window_h * 3600

    @contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """The state, locked against other runs; written back (0600, atomically) when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(f"{self.path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        finally:
            os.close(lock)

    def read(self) -> dict[str, Any]:
        with self.edit() as data:
            copy: dict[str, Any] = json.loads(json.dumps(data))
            return copy

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("budget", {})
        data.setdefault("drained", {})
        return data if isinstance(data, dict) else {"budget": {}, "drained": {}}

    # --- the retry budget

    def attempts(self, data: dict[str, Any], key: str, rung: str) -> int:
        now = time.time()
        tries = [t for t in data["budget"].get(key, {}).get(rung, []) if now - t < self.window_s]
        return len(tries)

    def spend(self, data: dict[str, Any], key: str, rung: str) -> None:
        now = time.time()
        rungs = data["budget"].setdefault(key, {})
        rungs[rung] = [t for t in rungs.get(rung, []) if now - t < self.window_s] + [now]

    def reset(self, data: dict[str, Any], key: str) -> None:
        data["budget"].pop(key, None)
