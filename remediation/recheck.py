"""A check run again after (or before) its remediation, through pytest itself: setup, call and teardown of the
item with its fixtures set up anew, the site's conftest fixtures included, as pytest-rerunfailures reruns a test.

Before each re-check the ``pytest_acceptance_refresh`` hook is called for every fixture of the item, so that
what would answer from this run's caches reads again (the node's commands, pings, API snapshots). Only called
outside pytest's run loop (the remediation phase, between the rounds of a converging run): nothing else is set
up then, so ``nextitem=None`` tears down exactly what the re-check set up.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import cast

import pytest
import tenacity
from _pytest.runner import runtestprotocol

from acceptance.learning import forget_fixture_values


class _NotFixed(Exception):  # noqa: N818 - a signal for tenacity, not an error
    def __init__(self, report: pytest.TestReport) -> None:
        super().__init__(report.nodeid)
        self.report = report


def recheck(item: pytest.Item) -> list[pytest.TestReport]:
    """The check again, now: its setup, call and teardown reports (not logged; the verdict is on each)."""
    for name in getattr(item, "fixturenames", ()):
        item.config.hook.pytest_acceptance_refresh(item=item, name=name, value=None)
    forget_fixture_values(item)
    return runtestprotocol(item, log=False, nextitem=None)


def decisive(reports: list[pytest.TestReport]) -> tuple[bool, pytest.TestReport]:
    """(passed, the report that decides): the first phase that did not pass, else the call."""
    bad = next((r for r in reports if not r.passed), None)
    if bad is not None:
        return False, bad
    return True, next(r for r in reports if r.when == "call")


def passes_now(item: pytest.Item) -> bool:
    return decisive(recheck(item))[0]


def recheck_until(item: pytest.Item, settle_s: float, fresh: Callable[[], None]) -> tuple[bool, pytest.TestReport]:
    """Re-check until the check passes or ``settle_s`` is over: (passed, the last re-check's decisive report)."""
    try:
        for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(settle_s),
                                         wait=tenacity.wait_fixed(min(5.0, max(1.0, settle_s / 20))),
                                         retry=tenacity.retry_if_exception_type(_NotFixed), reraise=True):
            with attempt:
                fresh()
                passed, report = decisive(recheck(item))
                if not passed:
                    raise _NotFixed(report)
                return True, report
    except _NotFixed as e:
        return False, e.report
    raise AssertionError("unreachable: tenacity either returns or reraises")


def on_the_node(item: pytest.Item) -> bool:
    """A check of the node itself (through ssh or ping), not of how the cluster sees it."""
    names = set(inspect.signature(cast(pytest.Function, item).obj).parameters)
    return bool(names & {"host", "ping_result", "ssh_result"})
