"""One snapshot of each cluster API per process, fetched once (all APIs in parallel, on first use) and shared
by every check of the process. The xdist scheduler gives every check of ``checks/cluster_*.py`` to one worker,
so a run fetches each API once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from acceptance.clients.errors import ROOT_KINDS, ApiError
from acceptance.outcomes import CheckError


@dataclass
class Snapshot:
    """What one API said, part by part (raw JSON as the API documents it), or why a part is missing."""

    api: str
    url: str = ""
    parts: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, ApiError] = field(default_factory=dict)
    root: ApiError | None = None  # set when the API as a whole could not be used (see api.<name>.reachable)
    duration_s: float = 0.0

    def get(self, part: str) -> Any:
        """The part, or :class:`CheckError` (outcome ``error``) with the one-line reason it is missing."""
        if part in self.errors:
            raise CheckError(str(self.errors[part]))
        if part not in self.parts:
            raise CheckError(f"{self.api}: nothing fetched for {part!r}")
        return self.parts[part]

    def error(self, part: str) -> ApiError | None:
        return self.errors.get(part)

    def fetch(self, part: str, fn: Callable[[], Any]) -> Any:
        """Store ``fn()`` as ``part`` or its :class:`ApiError`; return the value (None on error)."""
        try:
            self.parts[part] = fn()
            return self.parts[part]
        except ApiError as e:
            self.errors[part] = e
            return None

    def set_root_from(self, *parts: str) -> None:
        """The API is unusable when one of ``parts`` (default: all) failed in a way no check can get past."""
        for part in parts or tuple(self.errors):
            err = self.errors.get(part)
            if err is not None and err.kind in ROOT_KINDS:
                self.root = err
                return


Fetcher = Callable[[], Snapshot]


class Snapshots:
    """Fetch-once registry: ``get(name)`` blocks until that API's snapshot is there. The first ``get`` starts
    every registered fetch in parallel, so the run pays for the slowest API, not for their sum."""

    def __init__(self, fetchers: dict[str, Fetcher]) -> None:
        self._fetchers = fetchers
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Snapshot]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._fetchers)), thread_name_prefix="snapshot")
            for name, fetch in self._fetchers.items():
                self._futures[name] = self._pool.submit(_timed, name, fetch)

    def get(self, name: str) -> Snapshot:
        with self._lock:
            if name not in self._fetchers:
                raise KeyError(name)
            self._start()
            future = self._futures[name]
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _timed(name: str, fetch: Fetcher) -> Snapshot:
    start = time.monotonic()
    try:
        snap = fetch()
    except ApiError as e:
        snap = Snapshot(api=name, root=e)
    except Exception as e:  # a bug or an unexpected library error: every check of this API reports it
        snap = Snapshot(api=name, root=ApiError("protocol", f"{name}: snapshot failed: {type(e).__name__}: {e}"))
    snap.duration_s = time.monotonic() - start
    return snap
