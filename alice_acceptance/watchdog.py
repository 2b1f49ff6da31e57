"""A run that ends badly still reports: SIGTERM (a CI job cancelled, a node drained) is handled like Ctrl-C,
and ``--run-timeout`` interrupts a run that takes too long the same way. pytest then finishes the session:
the summary, JUnit and HTML are written, the checks that did not run counted as ``not_run``."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install(timeout_s: float | None) -> Callable[[], None]:
    """Handle SIGTERM as SIGINT and start the watchdog (main thread only); returns what undoes both."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    # a real SIGINT, not _thread.interrupt_main(): it also ends a blocking call (a sleep, a read)
    timer = threading.Timer(timeout_s, os.kill, (os.getpid(), signal.SIGINT)) if timeout_s else None
    if timer is not None:
        timer.daemon = True
        timer.start()

    def undo() -> None:
        if timer is not None:
            timer.cancel()
        signal.signal(signal.SIGTERM, previous)

    return undo
