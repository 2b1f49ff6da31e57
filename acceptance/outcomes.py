"""How a pytest report becomes one of the outcomes (``reports.outcomes``, where the vocabulary is defined and
explained), and the exceptions a check or a fixture raises to say which.

Imported by the checks, the API clients and the plugin alike (it imports none of them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from acceptance.printable import shown
from reports.outcomes import Outcome  # the one vocabulary, shared with the reports

PING_CHECK = "node.ping"
SSH_CHECK = "node.ssh"


class CheckError(Exception):
    """The check could not run or could not tell (outcome ``error``): never a pass, never remediated."""


class Blocked(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """Raised by a fixture: the check needs a root check that failed (outcome ``blocked``)."""

    def __init__(self, by: str, message: str) -> None:
        super().__init__(f"blocked by {by}: {message}")
        self.by = by


class Waived(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """Raised at setup: the node is under maintenance (outcome ``waived``)."""


def judge(unreachable: bool, message: str) -> NoReturn:
    """The one rule for a probe that did not get an answer: no answer from the service is a verdict on it
    (``failed``); anything else (configuration, TLS, a token, a malformed answer) is ``error``."""
    if unreachable:
        raise AssertionError(message)
    raise CheckError(message)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str
    blocked_by: str | None = None


def first_line(text: str, limit: int = 500) -> str:
    """The first line that says something, as shown to people (redacted before it is cut, controls escaped)."""
    return shown(next((x.strip() for x in text.splitlines() if x.strip()), ""), limit)


def classify(when: str, excinfo: Any, report: pytest.TestReport) -> Verdict:
    """The outcome of one phase's report (``excinfo``: the phase's ExceptionInfo or None)."""
    if report.passed:
        return Verdict("passed", "")
    if excinfo is not None and excinfo.errisinstance(Blocked):
        return Verdict("blocked", first_line(str(excinfo.value.msg)), excinfo.value.by)
    if excinfo is not None and excinfo.errisinstance(Waived):
        return Verdict("waived", first_line(str(excinfo.value.msg)))
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return Verdict("error", f"the check did not run: {first_line(reason)}")
    if excinfo is None:
        return Verdict("error", first_line(str(report.longrepr)))
    if when == "call" and excinfo.errisinstance((AssertionError, pytest.fail.Exception)):
        message = getattr(excinfo.value, "msg", None) or str(excinfo.value)
        return Verdict("failed", first_line(message) or "check failed")
    if excinfo.errisinstance(CheckError):
        return Verdict("error", first_line(str(excinfo.value)))
    return Verdict("error", first_line(f"{excinfo.typename}: {excinfo.value}"))
