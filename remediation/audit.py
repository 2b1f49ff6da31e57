"""The append-only audit log of remediation decisions (taken or refused): JSON lines in
``<report dir>/audit.jsonl`` across runs, and this run's part in ``<report dir>/<run id>/audit.jsonl``.
Appends are whole lines under an exclusive lock, so concurrent runs never interleave a line. An action writes a
``started`` line before it acts and its verdict after, so that a run killed mid-reboot still left a line; every
line says who ran it from where (user, runner host), the run id and the mode.

Never through a symlink: both files are opened ``O_NOFOLLOW|O_APPEND|O_CREAT`` (mode 0o640 less the umask), and the
run's folder without following one either; a symlink (or anything but a regular file) there is refused with
:class:`AuditError` before either file gets the line, so no decision is taken unaudited and no other file is
appended to. The report dir itself is the operator's and may be a symlink."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from acceptance.redaction import redact

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # FIFO: no hang


class AuditError(OSError):
    """The audit log cannot be appended to safely (a symlink, not a regular file)."""


class AuditLog:
    def __init__(self, report_dir: Path, run_id: str, mode: str) -> None:
        self.paths = [report_dir / "audit.jsonl", report_dir / run_id / "audit.jsonl"]
        self.report_dir = report_dir
        self.run_id = run_id
        self.mode = mode
        self.who = {"user": _user(), "host": socket.gethostname()}
        self.entries: list[dict[str, Any]] = []

    def record(self, **entry: Any) -> dict[str, Any]:
        line = {"run_id": self.run_id, "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "mode": self.mode, **self.who, **entry}
        line = dict(json.loads(redact(json.dumps(line, default=str))))
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        fds: list[int] = []
        try:  # both opened (or refused) before either is written
            top = _open_folder(self.report_dir)
            fds.append(top)
            fds.append(_open(top, "audit.jsonl", self.paths[0]))
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.run_id, dir_fd=top)
            try:
                fds.append(os.open(self.run_id, _DIR | os.O_NOFOLLOW, dir_fd=top))
            except OSError as exc:
                raise _refused(self.paths[1].parent, exc) from exc
            fds.append(_open(fds[-1], "audit.jsonl", self.paths[1]))
            for fd in (fds[1], fds[3]):
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
        finally:
            for fd in fds:
                os.close(fd)
        self.entries.append(line)
        return line


def _open_folder(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return os.open(path, _DIR)


def _refused(path: Path, exc: OSError) -> AuditError:
    what = "is a symlink" if path.is_symlink() else f"cannot be opened ({exc.strerror})"
    return AuditError(f"audit log {path} {what}: refused, the audit log is appended only to real files in real "
                      f"folders; fix: remove or move {path} (a symlink's target is kept) and run again")


def _open(folder: int, name: str, path: Path) -> int:
    try:
        fd = os.open(name, _APPEND, 0o640, dir_fd=folder)
    except OSError as exc:
        raise _refused(path, exc) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refused(path, OSError(errno.EINVAL, "not a regular file"))
    return fd


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (a container)
        return str(os.getuid())
