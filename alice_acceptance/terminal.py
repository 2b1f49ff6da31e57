"""What people read at the end of a run in the terminal (one block per node)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import pytest

from acceptance.printable import escape_controls
from acceptance.run import Results, Scope
from reports.outcomes import FAILING, HEALTHY, verdict_of
from reports.summary import Record

TEST_STATUS = {
    "blocked": ("blocked", "b", ("BLOCKED", {"yellow": True})),
    "waived": ("waived", "w", ("WAIVED", {"cyan": True})),
    "remediated": ("remediated", "R", ("REMEDIATED", {"green": True})),
}


def teststatus(report: pytest.TestReport) -> Any:
    verdict = verdict_of(report)
    if str(report.outcome) == "rerun":  # pytest-rerunfailures' idiom: not a verdict, the re-check comes after
        if verdict is None:  # the remediation's own step carries no verdict
            return "remediation", "+", ("REMEDIATION", {"cyan": True})
        return "rerun", "r", ("FAILED, REMEDIATING", {"yellow": True})
    # collection reports and tests that are not checks carry no verdict
    if verdict is None or (report.when == "teardown" and not report.failed):
        return None
    outcome = verdict.outcome
    if report.skipped and outcome in ("blocked", "waived"):
        return TEST_STATUS[outcome]
    if report.passed and outcome == "remediated" and report.when == "call":
        return TEST_STATUS[outcome]
    if report.failed and outcome == "error" and report.when == "call":
        return "error", "E", ("ERROR", {"red": True})
    return None


def say(tr: Any, text: str, **markup: bool) -> None:
    """One line to the terminal; what it quotes (an API's words, a node's output) cannot colour or add lines."""
    tr.write_line(escape_controls(text), **markup)


def per_node(tr: Any, scope: Scope, results: Results) -> None:
    by_node: dict[str, list[Record]] = defaultdict(list)
    for r in results.records:
        by_node[r.node].append(r)
    tr.section(f"{scope.inventory.cluster}: per node", sep="=")
    healthy: list[str] = []
    silent: list[str] = []
    for n in scope.targets:
        records = by_node.get(n.name, [])
        waiver = scope.waivers.get(n.name)
        if waiver is not None and records:
            say(tr, f"{n.name}: WAIVED {len(records)} checks: {waiver.reason} (until {waiver.until})", cyan=True)
            continue
        bad = [r for r in records if r.outcome in FAILING or r.outcome == "not_run"]
        blocked = [r for r in records if r.outcome == "blocked"]
        fixed = [r for r in records if r.outcome == "remediated"]
        if not records:
            silent.append(n.name)
            continue
        if not bad and not blocked and not fixed:
            healthy.append(n.name)
            continue
        say(tr, f"{n.name} ({n.role}{', ' + n.kind if n.kind else ''}):", bold=True)
        for r in fixed:
            say(tr, f"    REMEDIATED {r.check}: {r.message}", green=True)
        for r in bad:
            fix = f" [remediation: {r.remediation}]" if r.remediation and r.outcome == "failed" else ""
            say(tr, f"    {r.outcome.upper():7} {r.check}: {r.message}{fix}", red=True)
        if blocked:
            roots = sorted({r.blocked_by or "?" for r in blocked})
            say(tr, f"    BLOCKED {len(blocked)} checks by {', '.join(roots)}", yellow=True)
    if healthy:
        say(tr, f"all checks passed on {len(healthy)} nodes: {', '.join(healthy)}", green=True)
    if silent:
        say(tr, f"no check ran on {len(silent)} nodes: {', '.join(silent)}", yellow=True)
    for w in scope.warnings:
        say(tr, f"WARNING: {w}", yellow=True)


def transport_line(counters: Mapping[str, Mapping[str, int]]) -> str | None:
    """'ssh: 6 nodes, at most 1 connection and 2 round trips per node, 183 commands (0 live)'."""
    if not counters:
        return None
    values = list(counters.values())
    return (f"ssh: {len(values)} nodes, at most {max(v['connections'] for v in values)} connection(s) and "
            f"{max(v['round_trips'] for v in values)} round trip(s) per node, "
            f"{sum(v['commands'] for v in values)} commands ({sum(v['live_commands'] for v in values)} live)")


def api_line(requests: Mapping[str, int]) -> str | None:
    """'API requests: consul 12, nomad 7, ...'."""
    if not requests:
        return None
    return "API requests: " + ", ".join(f"{api} {n}" for api, n in sorted(requests.items()))


def gate_verdict(tr: Any, scope: Scope, results: Results) -> None:
    """GO or NO-GO, with every reason (what did not pass, on which node)."""
    gate = scope.gate
    assert gate is not None
    reasons = [r for r in results.records if r.outcome not in HEALTHY]
    tr.section(f"gate: {gate.title}", sep="=")
    if not reasons:
        say(tr, f"GO: {gate.title} (every check passed)", green=True, bold=True)
        return
    say(tr, f"NO-GO: {gate.title}: {len(reasons)} reason(s)", red=True, bold=True)
    for r in reasons:
        say(tr, f"  {r.check}[{r.node}] {r.outcome}: {r.message}", red=True)
