"""The remediation phase, after every check ran to the end (an interrupted run remediates nothing: it would act
on a partial picture).

For each failed check that names a remediation, in node order, non-disruptive actions first, every guardrail in
this order (the first that says no decides, and a dry run goes through the same ones, read-only):

kill switch (inventory, local file, the cluster's ``alice-acceptance stop``) -> blast radius (unhealthy nodes
counted cluster-wide from the APIs) -> every node of a role failing the check -> the cluster-wide state ->
budget and flaps (a rung is spent only when it runs) -> the action's class (``resolve``) -> masters are never
rebooted -> mode -> caps on disruptive actions per window -> the failure confirmed (the check again, and the
action's own sources) -> lock -> quorum gate -> node-healthy gate -> [drain and wait idle] -> [leadership moved
away] -> lock verified -> audit ``started`` -> act -> re-check (tenacity) -> audit verdict.

Nodes this suite drained are re-enabled at the end only when they are still ours in Nomad, not in maintenance,
and every check of the node itself ran and passed in this run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from acceptance.outcomes import CheckError
from acceptance.run import ITEM_KEY
from remediation import budget
from remediation.audit import AuditLog
from remediation.clients import Api, write_config
from remediation.context import RemediationRun
from remediation.decision import Decision, Failure, Stop, one_line, safe
from remediation.drains import Nomad
from remediation.guardrails import Guardrails
from remediation.lock import ConsulLock
from remediation.model import Action, ActionFailed, Interrupted, Mode, NeedsHuman, Progress, Refused
from remediation.recheck import recheck_until
from remediation.state import ClusterState, StateUnavailable
from reports.outcomes import RemediationVerdict, verdict_of

ACTION_KEY = pytest.StashKey[object]()  # what its remediation fixture gave (pytest forgets funcargs at teardown)
REBOOTS = ("hard_reboot", "reboot_node", "reboot_for_cmdline")


@dataclass
class Engine(Guardrails):
    run: RemediationRun
    mode: Mode
    say: Callable[[str], None] = print
    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        inventory = self.run.scope.inventory
        self.settings = inventory.remediation
        self.audit = AuditLog(self.run.info.report_dir, self.run.info.run_id, self.mode)
        self.masters = [n for n in self.run.scope.all_nodes if n.role == "master"]
        self.agents = [n for n in self.run.scope.all_nodes if n.role == "agent"]
        self.consul = Api(write_config("consul", inventory, self.masters))
        self.state = ClusterState(self.consul, self.settings.state_key)
        self.nomad = Nomad(Api(write_config("nomad", inventory, self.masters)))
        self.lock: ConsulLock | None = None
        self.lock_refusal: str | None = None
        self.blast: str | None = None
        self.decisions: dict[str, Decision] = {}

    # --------------------------------------------------------------------------- collecting failures

    def defer(self, item: pytest.Item, reports: list[pytest.TestReport]) -> bool:
        """Keep ``item``'s reports for the remediation phase when it failed and names a remediation."""
        info = item.stash.get(ITEM_KEY, None)
        call = next((r for r in reports if r.when == "call"), None)
        if info is None or not info.spec.remediation or call is None or not call.failed:
            return False
        verdict = verdict_of(call)
        if verdict is None or verdict.outcome != "failed":
            return False  # error, blocked, waived never trigger a remediation
        self.failures.append(Failure(item, info, reports, verdict.message))
        return True

    # --------------------------------------------------------------------------- the phase

    def remediate(self) -> dict[str, Decision]:
        """Decide and act for every deferred failure; the decision per failure key."""
        try:
            self.blast = self._blast_radius() if self.failures else None
            done: dict[tuple[str, str], Decision] = {}
            for f in sorted(self.failures, key=self._order):
                action = self._action(f)
                same = (action.name, f.info.node.name) if isinstance(action, Action) else None
                if same in done:  # one action fixes several checks of the node (puppet, backups): re-check only
                    self.decisions[f.key] = self._recheck_only(f, done[same])
                    continue
                self.decisions[f.key] = self._decide(f, action)
                if same is not None:
                    done[same] = self.decisions[f.key]
            self._reenable_drained()
        finally:
            if self.lock is not None:
                self.lock.release()
            self.lock, self.lock_refusal = None, None  # a provisioning run decides again next round
        return self.decisions

    def interrupted(self, why: str) -> None:
        """The run was stopped before the checks ended: nothing is remediated, each failure says so."""
        for f in self.failures:
            name = f.info.spec.remediation or "?"
            self.decisions[f.key] = self._record(f, Decision("refused", name, f"{why}: nothing remediated on a "
                                                             "partial picture", "interrupted"))

    def _order(self, f: Failure) -> tuple[int, int, str]:
        action = f.item.stash.get(ACTION_KEY, None)
        disruptive = isinstance(action, Action) and (action.disruptive or bool(action.gates))
        return (int(disruptive), 0 if f.info.node.role == "master" else 1, f.info.node.name)

    def _action(self, f: Failure) -> Action | str:
        value = f.item.stash.get(ACTION_KEY, None)
        if not isinstance(value, Action):
            return f"the remediation fixture {f.info.spec.remediation!r} gave no action ({type(value).__name__})"
        return value

    def _record(self, f: Failure | None, d: Decision, node: str | None = None, check: str | None = None
                ) -> Decision:
        entry = self.audit.record(node=node or (f.info.node.name if f else "?"),
                                  check=check or (f.info.check_id if f else "?"), action=d.action,
                                  verdict=d.verdict, guardrail=d.guardrail, reason=d.reason, before=d.before,
                                  after=d.after, duration_s=round(d.duration_s, 3))
        self.run.audit.append(entry)  # type: ignore[arg-type]
        where = f"{check or (f.info.check_id if f else '?')}[{node or (f.info.node.name if f else '?')}]"
        self.say(f"remediation {d.verdict}: {d.action} for {where}: {d.reason}")
        return d

    # --------------------------------------------------------------------------- deciding and acting

    def _decide(self, f: Failure, found: Action | str) -> Decision:
        name = found.name if isinstance(found, Action) else str(f.info.spec.remediation)
        if isinstance(found, str):
            return self._record(f, Decision("failed", name, found, "fixture"))
        dry = self.mode == "dry-run"
        start = time.monotonic()
        action = found
        try:
            stop = self._stopped()
            if stop:
                raise Stop("refused", "kill-switch", stop)
            if self.blast:
                raise Stop("escalated", "blast-radius", self.blast)
            stop = self._every_node(f)
            if stop:
                raise Stop("escalated", "circuit-breaker", stop)
            state = self._read_state()
            rung, action = self._rung(f, found, state)
            if action.resolve is not None:
                action = action.resolve()
            if f.info.node.role == "master" and action.name in REBOOTS:
                raise Stop("escalated", "master", f"a master is never rebooted automatically ({action.summary}): "
                                                  "needs a human")
            prepared = self._gates(f, action, dry, state)
            if dry:
                return self._record(f, Decision("planned", action.name, f"would {action.summary}", "dry-run"))
            return self._act(f, action, rung, prepared, start)
        except Stop as s:
            reason = f"would {action.summary}, but {s.reason}" if dry else s.reason
            return self._record(f, Decision(s.verdict, action.name, reason, s.guardrail,
                                            duration_s=time.monotonic() - start))
        except Refused as r:
            return self._record(f, Decision("refused", action.name, r.reason, r.guardrail,
                                            duration_s=time.monotonic() - start))
        except NeedsHuman as e:
            self._human(f, str(e))
            return self._record(f, Decision("escalated", action.name, f"needs a human: {e}", "unfixable",
                                            duration_s=time.monotonic() - start))
        except (Interrupted, KeyboardInterrupt):
            self._record(f, Decision("failed", action.name, "interrupted: the run was stopped during the action "
                                     "(the next run resumes or undoes it)", "interrupted",
                                     duration_s=time.monotonic() - start))
            raise KeyboardInterrupt from None
        except Exception as e:  # an API's error (openstacksdk, hvac, requests) must not end the phase
            return self._record(f, Decision("failed", action.name, one_line(e), None,
                                            duration_s=time.monotonic() - start))

    def _act(self, f: Failure, action: Action, rung: str, prepared: str, start: float) -> Decision:
        now = time.time()
        window_b, window_d = self.settings.budget_window_h * 3600, self.settings.disruptive_window_h * 3600
        counted = action.disruptive or "lock" in action.gates

        def spend(s: dict[str, Any]) -> None:
            budget.spend(s, f.key, rung, window_b, now)
            if counted:
                budget.record_disruptive(s, {"node": action.node.name, "role": action.node.role,
                                             "action": action.name, "run_id": self.run.info.run_id}, window_d, now)

        self._update(spend)
        if "lock" in action.gates:
            self._verify_lock()
        before = safe(action.state)
        self._record(f, Decision("started", action.name, action.summary + (f" ({prepared})" if prepared else ""),
                                 before=before))
        self._fresh(f)
        try:
            did = action.do(Progress(say=self.say))
        except (ActionFailed, CheckError) as e:
            # no re-check: the failing call stays the check's final report
            return self._record(f, Decision("failed", action.name, one_line(e), None, before, "",
                                            time.monotonic() - start, acted=True))
        passed, final = recheck_until(f.item, action.settle_s or self.settings.settle_timeout_s, lambda: self._fresh(f))
        after = safe(action.state)
        if passed:
            self._update(lambda s: budget.fixed(s, f.key, window_b, time.time()))
            return self._record(f, Decision("taken", action.name, did, None, before, after, time.monotonic() - start,
                                            fixed=True, acted=True, final=final))
        return self._record(f, Decision("failed", action.name, f"{did}; the check still fails: {_said(final)}", None,
                                        before, after, time.monotonic() - start, acted=True, final=final))

    def _human(self, f: Failure, why: str) -> None:
        with contextlib.suppress(StateUnavailable):  # the escalation is in the audit log; the next run asks again
            self.state.update(lambda s: budget.needs_human(s, f.key, why, time.time()))

    def _recheck_only(self, f: Failure, first: Decision) -> Decision:
        if not first.acted:
            return self._record(f, Decision(first.verdict, first.action, first.reason, first.guardrail))
        passed, final = recheck_until(f.item, self.settings.settle_timeout_s, lambda: self._fresh(f))
        reason = first.reason if passed else f"{first.reason}; the check still fails: {_said(final)}"
        return self._record(f, Decision("taken" if passed else "failed", first.action, reason, None, fixed=passed,
                                        acted=True, final=final))

    # --------------------------------------------------------------------------- giving drained nodes back

    def _reenable_drained(self) -> None:
        """Nodes this suite drained (this run or an earlier one): eligible again only when Nomad still shows our
        drain, the node is not in maintenance, and every check of the node itself ran and passed in this run."""
        if self.mode in ("off", "dry-run") or self._stopped():
            return
        try:
            drained = self.state.read()["drained"]
        except StateUnavailable:
            return
        maintenance = {m.node for m in self.run.scope.inventory.maintenance if not m.expired()}
        for name in sorted(drained):
            if name in maintenance:
                self.say(f"{name} stays drained: it is in maintenance")
                continue
            stop = self._node_healthy(name, again=True)
            if stop:
                self.say(f"{name} stays drained: {stop}")
                continue
            verdict: RemediationVerdict = "failed"
            reason, forget = "", False
            try:
                n = self.nomad.node(name)
                reason, verdict, forget = self.nomad.reenable(str(n["ID"]), n), "taken", True
            except NeedsHuman as e:  # a human drained it again or made it ineligible: theirs now
                verdict, reason, forget = "refused", f"not re-enabled: {e}", True
            except Exception as e:
                reason = f"re-enabling {name}: {one_line(e)}"
            self._record(None, Decision(verdict, "reenable_node", reason, "workload"), node=name,
                         check="(drained by remediation)")
            if forget:
                self._forget(name)

    def _forget(self, name: str) -> None:
        with contextlib.suppress(StateUnavailable):  # still listed: the next run looks again
            self.state.update(lambda s: s["drained"].pop(name, None))


def _said(report: pytest.TestReport) -> str:
    """What a re-check said (its verdict's message, redacted when it was made)."""
    verdict = verdict_of(report)
    return verdict.message if verdict is not None and verdict.message else "the check still fails"
