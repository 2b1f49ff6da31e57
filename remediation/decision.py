"""What the remediation phase works on (a deferred :class:`Failure`) and what it decides for it (a
:class:`Decision`), with the helpers that put a decision in the audit log and in the check's verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from acceptance.checkspec import CheckItem
from acceptance.outcomes import CheckError
from acceptance.redaction import clip, redact
from remediation.model import ActionFailed
from reports.outcomes import RemediationDetail, RemediationVerdict


@dataclass
class Failure:
    item: pytest.Item
    info: CheckItem
    reports: list[pytest.TestReport]
    message: str

    @property
    def key(self) -> str:
        return f"{self.info.check_id}|{self.info.node.name}"


@dataclass
class Decision:
    verdict: RemediationVerdict  # planned, taken, refused, failed, escalated
    action: str
    reason: str
    guardrail: str | None = None
    before: str = ""
    after: str = ""
    duration_s: float = 0.0
    fixed: bool = False
    acted: bool = False  # the action ran: the re-check is the check's final report
    # the re-check's decisive report (pytest's own): the check's final report when the action ran
    final: pytest.TestReport | None = field(default=None, repr=False)


class Stop(Exception):
    """A guardrail said no: (verdict, guardrail, reason)."""

    def __init__(self, verdict: RemediationVerdict, guardrail: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict, self.guardrail, self.reason = verdict, guardrail, reason


def one_line(e: BaseException) -> str:
    text = redact(str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text and not isinstance(e, ActionFailed | CheckError) \
        else (text[0][:300] if text else type(e).__name__)


def safe(read: Callable[[], str]) -> str:
    try:
        return clip(str(read()), 300)
    except Exception as e:  # reading the state must not stop the action from being decided
        return f"(cannot read: {type(e).__name__})"


def detail(d: Decision, mode: str) -> RemediationDetail:
    return {"action": d.action, "mode": mode, "verdict": d.verdict, "guardrail": d.guardrail, "before": d.before,
            "after": d.after, "duration_s": round(d.duration_s, 3)}
