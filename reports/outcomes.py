"""The one outcome vocabulary, and a check's verdict as a typed value carried by its pytest reports.

``reports`` never imports ``acceptance`` (the reports are rendered from a summary on disk too); the plugin imports
this module, so the plugin, the terminal, the remediation and the reports all speak the same words:

``passed``      the check ran and found nothing wrong
``failed``      the check ran and found the node (or the cluster) wrong: the only outcome a remediation acts on
``error``       the check could not tell (configuration, a malformed answer, a probe that could not run)
``blocked``     not run because a root check it needs failed (node.ping, node.ssh, api.<name>.reachable)
``waived``      not run: the node is in the inventory's maintenance list
``remediated``  failed, then fixed by its remediation and passed on the re-check
``not_run``     collected but never run (an interrupted run): counted so that it never reads as healthy
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypedDict, cast, get_args

Outcome = Literal["passed", "failed", "blocked", "error", "waived", "remediated", "not_run"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
# From best to worst. When two reports of one test disagree (setup/call/teardown) the worse one stays;
# the metrics' acceptance_check_status uses the same order as its value (0 passed ... 6 error).
RANK: dict[str, int] = {"passed": 0, "remediated": 1, "waived": 2, "not_run": 3, "blocked": 4, "failed": 5,
                        "error": 6}
FAILING: frozenset[str] = frozenset({"failed", "error"})
# Two different questions, so two names:
# - a run is healthy when every record is one of HEALTHY (a waived node is declared maintenance, not a fault);
# - a check *passes* (trend, convergence, remediation re-check) only when it ran and passed: a waived check says
#   nothing about the check, so the trend does not count it as good.
HEALTHY: frozenset[str] = frozenset({"passed", "waived", "remediated"})
PASSING: frozenset[str] = frozenset({"passed", "remediated"})

# what the remediation decided for a check (the audit log's verdict)
RemediationVerdict = Literal["started", "planned", "taken", "refused", "failed", "escalated"]
REMEDIATION_VERDICTS: tuple[RemediationVerdict, ...] = get_args(RemediationVerdict)


class RemediationDetail(TypedDict):
    """What a remediation did for one record (the record's audit-log decision, summarised)."""

    action: str  # e.g. "unit.restart"
    mode: str  # "dry-run", "safe" or "all" (--remediate)
    verdict: RemediationVerdict
    guardrail: str | None  # the guardrail that decided (refused/escalated), else null
    before: Any  # state read before acting (JSON value, usually a short string)
    after: Any  # state read after acting (re-check), null when not acted
    duration_s: float


def as_outcome(value: str) -> Outcome:
    """``value`` as an :data:`Outcome`; ValueError for anything else (an unknown outcome must not vanish)."""
    for outcome in OUTCOMES:
        if value == outcome:
            return outcome
    raise ValueError(f"unknown outcome {value!r}: expected one of {', '.join(OUTCOMES)}")


@dataclass(frozen=True)
class CheckVerdict:
    """One check on one node, as it ended: what every phase report of the check carries (see :func:`attach`)."""

    outcome: Outcome
    message: str
    check: str
    node: str
    severity: str
    root: str | None = None  # the root check that blocked it (outcome blocked), e.g. "node.ssh"
    remediation: str | None = None  # the remediation's name, when the check has one
    role: str = ""
    kind: str | None = None  # "vm" or "metal" when known
    runbook: str = ""
    first_message: str | None = None  # remediated or not: what the check said before the remediation
    remediation_detail: RemediationDetail | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckVerdict:
        """The inverse of :meth:`to_json`; unknown keys are ignored (a newer worker), the outcome is checked."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["outcome"] = as_outcome(str(values.get("outcome")))
        detail = values.get("remediation_detail")
        values["remediation_detail"] = cast(RemediationDetail, dict(detail)) if isinstance(detail, Mapping) else None
        return cls(**values)

    @property
    def passing(self) -> bool:
        return self.outcome in PASSING


# the TestReport attribute; pytest serializes a report's __dict__, so the name is part of the xdist wire format
ATTRIBUTE = "acceptance_verdict"


def verdict_of(report: object) -> CheckVerdict | None:
    """The verdict a (phase) report carries, or None (collection reports, tests that are not checks, a
    remediation's own step)."""
    value = getattr(report, ATTRIBUTE, None)
    if isinstance(value, CheckVerdict):
        return value
    if isinstance(value, Mapping):  # a report deserialized without the plugin's hook (e.g. a report log)
        return CheckVerdict.from_json(value)
    return None


def attach(report: object, verdict: CheckVerdict | None) -> None:
    """Set (or, with None, remove) the verdict ``report`` carries."""
    if verdict is None:
        if hasattr(report, ATTRIBUTE):
            delattr(report, ATTRIBUTE)
        return
    setattr(report, ATTRIBUTE, verdict)
