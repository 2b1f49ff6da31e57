"""A check's :class:`~reports.outcomes.CheckVerdict`: made once per phase report, kept on the item's stash (the
decisive phase's), carried by every phase report, and across xdist by the two serialization hooks below.

Registered by the plugin as a pytest plugin of its own (``acceptance.verdicts``), with or without --inventory:
the xdist controller must turn a worker's verdict back into a CheckVerdict whatever it was started with.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import replace
from typing import Any

import pytest

from acceptance.outcomes import Verdict
from acceptance.run import ITEM_KEY
from reports.outcomes import ATTRIBUTE, CheckVerdict, attach, verdict_of

VERDICT_KEY = pytest.StashKey[CheckVerdict]()
# what JUnit shows of the verdict (it reads the item's user_properties); nothing reads them back
JUNIT_KEYS = ("outcome", "message", "blocked_by")


def make(item: pytest.Item, phase: Verdict) -> CheckVerdict | None:
    """The verdict of one phase of ``item`` (None for a test that is not a check)."""
    info = item.stash.get(ITEM_KEY, None)
    if info is None:
        return None
    return CheckVerdict(outcome=phase.outcome, message=phase.message, check=info.check_id, node=info.node.name,
                        severity=info.spec.severity, root=phase.blocked_by, remediation=info.spec.remediation or None,
                        role=info.node.role, kind=info.node.kind or None, runbook=info.spec.runbook_for(info.node))


def of_item(item: pytest.Item) -> CheckVerdict | None:
    """The item's decisive verdict so far (the call's, or the phase that did not pass)."""
    return item.stash.get(VERDICT_KEY, None)


def settle(item: pytest.Item, report: pytest.TestReport, verdict: CheckVerdict) -> None:
    """``report``'s verdict; the item's too when this phase decides (the call, or any phase that did not pass).
    A passing teardown carries the item's verdict: JUnit and the recorder read the last report of a test."""
    if report.when == "teardown" and report.passed:
        verdict = of_item(item) or verdict
    elif report.when == "call" or not report.passed:
        item.stash[VERDICT_KEY] = verdict
        _junit(item, verdict)
    attach(report, verdict)


def change(item: pytest.Item, reports: Iterable[pytest.TestReport], base: CheckVerdict, **changes: Any
           ) -> CheckVerdict:
    """``base`` with ``changes`` (a remediation's outcome and message): the item's verdict from now on, and that of
    those of ``reports`` that carry one."""
    verdict = replace(base, **changes)
    item.stash[VERDICT_KEY] = verdict
    _junit(item, verdict)
    for report in reports:
        if verdict_of(report) is not None:
            attach(report, verdict)
    return verdict


def _junit(item: pytest.Item, verdict: CheckVerdict) -> None:
    values = {"outcome": verdict.outcome, "message": verdict.message, "blocked_by": verdict.root or ""}
    item.user_properties[:] = [*((k, v) for k, v in item.user_properties if k not in JUNIT_KEYS), *values.items()]


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: Any) -> Generator[None, Any, Any]:
    """A worker's report: its verdict as plain JSON (pytest copies the report's attributes as they are)."""
    data = yield
    if isinstance(data, dict) and isinstance(data.get(ATTRIBUTE), CheckVerdict):
        data[ATTRIBUTE] = data[ATTRIBUTE].to_json()
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(config: pytest.Config, data: Any) -> Generator[None, Any, Any]:
    """The controller's copy: the verdict a CheckVerdict again."""
    report = yield
    if report is not None and isinstance(getattr(report, ATTRIBUTE, None), dict):
        attach(report, verdict_of(report))
    return report
