"""Post-provisioning (``--converge-timeout``): after ``ai-bs`` or ``ai-rebuild-vm``, which can take an hour, the
checks run again and again (the failing ones each round, every one to confirm) until every check of the nodes
passes or the time is up; each round says per node what it still waits for and since when. With ``--remediate``
the fixes run on the way (puppet reruns, the image pull, the reboot for kernel arguments), under the guardrails.
Only the last round's reports are logged, so the reports say how the nodes ended."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from _pytest.runner import runtestprotocol

from acceptance.run import ITEM_KEY, Connections, Scope
from remediation.phase import apply_decision, engine_of, log_reports
from reports.outcomes import HEALTHY, verdict_of

Say = Callable[[str], None]


def _settled(reports: list[pytest.TestReport]) -> bool:
    verdicts = [v for v in map(verdict_of, reports) if v is not None]
    return all(v.outcome in HEALTHY for v in verdicts) and not any(r.failed for r in reports)


def _waiting(items: list[pytest.Item], last: dict[str, list[pytest.TestReport]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for item in items:
        info = item.stash[ITEM_KEY]
        reports = last[item.nodeid]
        if not _settled(reports):
            verdict = next((v for v in map(verdict_of, reversed(reports)) if v is not None), None)
            why = f" (blocked by {verdict.root})" if verdict is not None and verdict.root else ""
            out[info.node.name].append(f"{info.check_id}{why}")
    return out


def run_until_converged(session: pytest.Session, scope: Scope, connections: Connections, timeout_s: float,
                        interval_s: float, say: Say) -> None:
    items = [i for i in session.items if i.stash.get(ITEM_KEY, None) is not None]
    engine = engine_of(session.config)
    start = time.monotonic()
    since: dict[str, float] = {}
    last: dict[str, list[pytest.TestReport]] = {}
    pending, confirming, rounds = items, False, 0
    while True:
        rounds += 1
        for i, item in enumerate(pending):
            last[item.nodeid] = runtestprotocol(item, nextitem=pending[i + 1] if i + 1 < len(pending) else None,
                                                log=False)
        bad = [item for item in pending if not _settled(last[item.nodeid])]
        now = time.monotonic()
        for node, checks in sorted(_waiting(bad, last).items()):
            since.setdefault(node, now)
            say(f"{node}: waiting for {', '.join(checks)} (since {now - since[node]:.0f} s, "
                f"{max(0.0, start + timeout_s - now):.0f} s left)")
        if engine is not None and bad:
            engine.failures = []
            for item in bad:
                engine.defer(item, last[item.nodeid])
            decisions = engine.remediate()
            for f in engine.failures:
                if f.key in decisions:
                    apply_decision(f.item, f.reports, decisions[f.key], engine.mode)
            engine.failures = []
            bad = [item for item in bad if not _settled(last[item.nodeid])]
        if not bad and (confirming or pending is items):
            say(f"converged after {rounds} round(s) in {time.monotonic() - start:.0f} s: every check passes")
            break
        if not bad:
            pending, confirming = items, True  # every check once more: a fix may have undone another
            continue
        confirming = False
        waiting = _waiting(bad, last)
        now = time.monotonic()
        session.config.hook.pytest_acceptance_converge_progress(
            elapsed_s=now - start, timeout_s=timeout_s, waiting=dict(waiting))
        if now - start + interval_s > timeout_s:
            say(f"did not converge within {timeout_s:.0f} s: {sum(len(c) for c in waiting.values())} check(s) "
                "still failing")
            break
        time.sleep(interval_s)
        _refresh(session, scope, connections, {item.stash[ITEM_KEY].node.name for item in bad})
        pending = bad
    for item in items:
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        log_reports(item, last[item.nodeid])


def _refresh(session: pytest.Session, scope: Scope, connections: Connections, names: set[str]) -> None:
    """The next round reads the nodes and the APIs again."""
    if connections.nodes is not None:
        for node in scope.targets:
            if node.name in names and node.role in ("master", "agent"):
                connections.nodes.reset(node, again=True)
    session.config.hook.pytest_acceptance_forget_snapshots(config=session.config)


class ConvergeLoop:
    """Registered by the plugin with --converge-timeout: this loop instead of pytest's."""

    def __init__(self, scope: Scope, connections: Connections) -> None:
        self.scope, self.connections = scope, connections

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if session.config.option.collectonly:
            return None
        from remediation.phase import say

        run_until_converged(session, self.scope, self.connections, session.config.getoption("converge_timeout"),
                            session.config.getoption("converge_interval"), say(session.config))
        return True
