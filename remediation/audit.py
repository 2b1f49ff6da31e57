"""The append-only audit log of remediation decisions (taken or refused): JSON lines in
``<report dir>/audit.jsonl`` across runs, and this run's part in ``<report dir>/<run id>/audit.jsonl``.
Appends are whole lines under an exclusive lock, so concurrent runs never interleave a line. An action writes a
``started`` line before it acts and its verdict after, so that a run killed mid-reboot still left a line; every
line says who ran it from where (user, runner host), the run id and the mode."""

from __future__ import annotations

import datetime as dt
import fcntl
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

from acceptance.redaction import redact


class AuditLog:
    def __init__(self, report_dir: Path, run_id: str, mode: str) -> None:
        self.paths = [report_dir / "audit.jsonl", report_dir / run_id / "audit.jsonl"]
        self.run_id = run_id
        self.mode = mode
        self.who = {"user": _user(), "host": socket.gethostname()}
        self.entries: list[dict[str, Any]] = []

    def record(self, **entry: Any) -> dict[str, Any]:
        line = {"run_id": self.run_id, "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "mode": self.mode, **self.who, **entry}
        line = dict(json.loads(redact(json.dumps(line, default=str))))
        self.entries.append(line)
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
            finally:
                os.close(fd)
        return line


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (a container)
        return str(os.getuid())
