"""Waiting until a condition holds, or failing at a deadline: the one polling loop of the tests, the lab
tooling and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str,
    ignore: type[BaseException] | tuple[type[BaseException], ...] = (),
    error: Callable[[str], BaseException] = AssertionError,
) -> T:
    """Calls `predicate` every `interval` seconds until it returns something truthy, and returns that.

    An exception of a type in `ignore` counts as "not yet" (a service restarting, a file half written);
    any other exception propagates at once. The predicate is tried once more at the deadline and never
    slept past it (only a predicate that is slow itself can overrun). At the deadline raises
    `error(message)` (AssertionError unless told otherwise), the message naming `what` and the last value
    or exception seen.
    """
    if timeout < 0 or interval <= 0:
        raise ValueError(f"wait_until: timeout must be >= 0 and interval > 0 (got {timeout}, {interval})")
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last: object = exc
        else:
            if value:
                return value
            last = value
        left = deadline - time.monotonic()
        if left <= 0:
            cause = last if isinstance(last, BaseException) else None
            raise error(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})") from cause
        time.sleep(min(interval, left))
