"""The remediation phase, after every check ran (so that the circuit breaker sees the whole cluster):

for each failed check that names a remediation, in node order, non-disruptive actions first:
kill switch -> mode -> circuit breaker -> retry budget (escalation) -> [disruptive: the lock -> quorum gate and
leadership moved away (masters) | drain and no running allocation (agents)] -> read the state -> act -> re-check
the same check until it passes or the settle time ends (tenacity) -> read the state again. Every decision,
taken or refused, goes to the audit log; the check's record ends ``remediated`` (both messages kept) or stays
``failed`` with why the remediation did not fix it. A node this suite drained is re-enabled only once all its
checks pass, by this run or by the next one (the state file remembers it).
"""

from __future__ import annotations

import inspect
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import tenacity

from acceptance.checkspec import CheckItem
from acceptance.fixtures import check_arguments
from acceptance.inventory import Node
from acceptance.outcomes import CheckError
from acceptance.redaction import redact
from acceptance.run import ITEM_KEY, Run, get_run
from remediation import gates
from remediation.audit import AuditLog
from remediation.clients import Http, Nomad, drain_until_idle, move_leadership_off, write_config
from remediation.fixtures import escalation_action
from remediation.lock import ConsulLock
from remediation.model import Action, ActionFailed, Interrupted, Mode, NeedsHuman, Progress
from remediation.state import StateFile

ARGS_KEY = pytest.StashKey[dict[str, Any]]()  # the check function's arguments, for its re-check
ACTION_KEY = pytest.StashKey[object]()  # what its remediation fixture gave
NOT_FIXED = (AssertionError, CheckError, pytest.fail.Exception, pytest.skip.Exception)  # blocked: not fixed


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
    verdict: str  # planned, taken, refused, failed, escalated
    action: str
    reason: str
    guardrail: str | None = None
    before: str = ""
    after: str = ""
    duration_s: float = 0.0
    fixed: bool = False
    message: str = ""  # the check's message after the re-check


@dataclass
class Engine:
    run: Run
    mode: Mode
    say: Callable[[str], None] = print
    failures: list[Failure] = field(default_factory=list)
    audit: AuditLog = field(init=False)
    state: StateFile = field(init=False)
    lock: ConsulLock | None = None
    lock_refusal: str | None = None

    def __post_init__(self) -> None:
        settings = self.run.inventory.remediation
        self.audit = AuditLog(self.run.report_dir, self.run.run_id)
        self.state = StateFile(settings.state_file or self.run.report_dir / "remediation-state.json",
                               settings.budget_window_h)
        self.masters = [n for n in self.run.all_nodes if n.role == "master"]

    # --------------------------------------------------------------------------- collecting failures

    def defer(self, item: pytest.Item, reports: list[pytest.TestReport]) -> bool:
        """Keep ``item``'s reports for the remediation phase when it failed and names a remediation."""
        info = item.stash.get(ITEM_KEY, None)
        call = next((r for r in reports if r.when == "call"), None)
        if info is None or not info.spec.remediation or call is None or not call.failed:
            return False
        if dict(call.user_properties).get("outcome") != "failed":
            return False  # error, blocked, waived never trigger a remediation
        self.failures.append(Failure(item, info, reports, str(dict(call.user_properties).get("message", ""))))
        return True

    # --------------------------------------------------------------------------- the phase

    def remediate(self) -> dict[str, Decision]:
        """Decide and act for every deferred failure; the decision per failure key."""
        decisions: dict[str, Decision] = {}
        failing: dict[str, list[Node]] = defaultdict(list)
        for r in self.run.records:
            if r.outcome == "failed":
                failing[r.check].append(_node(self.run, r.node))
        for f in self.failures:
            failing[f.info.check_id].append(f.info.node)
        try:
            done: dict[tuple[str, str], Decision] = {}
            for f in sorted(self.failures, key=self._order):
                action = self._action(f)
                same = (action.name, f.info.node.name) if isinstance(action, Action) else None
                if same in done:  # one action fixes several checks of the node (puppet, backups): re-check only
                    decisions[f.key] = self._recheck_only(f, done[same])
                    continue
                decision = self._decide(f, action, failing)
                decisions[f.key] = decision
                if same is not None:
                    done[same] = decision
            self._reenable_drained()
        finally:
            if self.lock is not None:
                self.lock.release()
        return decisions

    def _order(self, f: Failure) -> tuple[int, int, str]:
        spec_name = f.info.spec.remediation or ""
        disruptive = spec_name in ("hard_reboot", "reboot_for_cmdline")
        return (int(disruptive), 0 if f.info.node.role == "master" else 1, f.info.node.name)

    def _action(self, f: Failure) -> Action | str:
        value = f.item.stash.get(ACTION_KEY, None)
        if not isinstance(value, Action):
            return f"the remediation fixture {f.info.spec.remediation!r} gave no action ({type(value).__name__})"
        return value

    def _record(self, f: Failure, action: str, d: Decision) -> Decision:
        self.audit.record(node=f.info.node.name, check=f.info.check_id, action=action, mode=self.mode,
                          verdict=d.verdict, guardrail=d.guardrail, reason=d.reason, before=d.before, after=d.after,
                          duration_s=round(d.duration_s, 3))
        self.run.audit.append(self.audit.entries[-1])  # type: ignore[arg-type]
        self.say(f"remediation {d.verdict}: {action} for {f.info.check_id}[{f.info.node.name}]: {d.reason}")
        return d

    def _refuse(self, f: Failure, action: str, guardrail: str, reason: str, verdict: str = "refused") -> Decision:
        return self._record(f, action, Decision(verdict, action, reason, guardrail))

    def _decide(self, f: Failure, action: Action | str, failing: dict[str, list[Node]]) -> Decision:
        name = action.name if isinstance(action, Action) else str(f.info.spec.remediation)
        if isinstance(action, str):
            return self._refuse(f, name, "fixture", action, "failed")
        inventory = self.run.inventory
        stop = gates.kill_switch(inventory)
        if stop:
            return self._refuse(f, name, "kill-switch", stop)
        stop = gates.breaker(f.info.check_id, failing, inventory, [n for n in self.run.all_nodes
                                                                   if n.role in ("master", "agent")])
        if stop:
            return self._refuse(f, name, "circuit-breaker", stop)
        action, stop = self._budget(f, action)
        if stop:
            return self._refuse(f, name, "budget", stop, "escalated")
        if self.mode == "dry-run":
            would = gates.mode_allows("all" if action.disruptive else "safe", action.disruptive) or (
                self._peek_lock() if action.disruptive else None)
            reason = f"would {action.summary}" + (f"; but {would}" if would else "")
            return self._record(f, action.name, Decision("planned", action.name, reason, "dry-run"))
        stop = gates.mode_allows(self.mode, action.disruptive)
        if stop:
            return self._refuse(f, action.name, "mode", stop)
        return self._act(f, action)

    def _budget(self, f: Failure, action: Action) -> tuple[Action, str | None]:
        """The rung of the escalation ladder this failure is on: the action, or a reboot, or a human."""
        settings = self.run.inventory.remediation
        rungs = [action.name, *action.escalation]
        with self.state.edit() as data:
            for rung in rungs:
                if self.state.attempts(data, f.key, rung) < settings.attempts:
                    self.state.spend(data, f.key, rung)
                    if rung == action.name:
                        return action, None
                    return escalation_action(rung, self.run, f.info.node), None
        return action, (f"the retry budget is spent ({settings.attempts} attempts of {' -> '.join(rungs)} within "
                        f"{settings.budget_window_h:g} h): needs a human")

    def _peek_lock(self) -> str | None:
        from remediation.lock import describe, holder_of

        http = Http(write_config("consul", self.run.inventory, self.masters))
        holder = holder_of(http, self.run.inventory.remediation.lock_key)
        return f"the lock is held by {describe(holder)}" if holder else None

    def _take_lock(self) -> str | None:
        if self.lock is None and self.lock_refusal is None:
            settings = self.run.inventory.remediation
            lock = ConsulLock(Http(write_config("consul", self.run.inventory, self.masters)), settings.lock_key,
                              settings.lock_ttl_s, self.run.run_id)
            self.lock_refusal = lock.acquire()
            self.lock = None if self.lock_refusal else lock
        if self.lock is not None and self.lock.lost.is_set():
            return "the remediation lock was lost (Consul did not renew it): nothing disruptive starts"
        return self.lock_refusal

    def _act(self, f: Failure, action: Action) -> Decision:
        progress = Progress(say=self.say)
        start = time.monotonic()
        before = ""
        try:
            if action.disruptive:
                stop = self._take_lock()
                if stop:
                    return self._refuse(f, action.name, "lock", stop)
                gate = self._prepare(f, action, progress)
                if gate:
                    return self._refuse(f, action.name, *gate)
            self._fresh(f)
            before = _safe(action.state)
            did = action.do(progress)
            message = self._recheck(f, action.settle_s or self.run.inventory.remediation.settle_timeout_s)
            after = _safe(action.state)
            if message is None:
                with self.state.edit() as data:
                    self.state.reset(data, f.key)
                return self._record(f, action.name, Decision("taken", action.name, did, None, before, after,
                                                             time.monotonic() - start, fixed=True))
            return self._record(f, action.name, Decision("failed", action.name, f"{did}; the check still fails: "
                                                         f"{message}", None, before, after, time.monotonic() - start,
                                                         message=message))
        except NeedsHuman as e:
            return self._record(f, action.name, Decision("escalated", action.name, f"needs a human: {e}", "unfixable",
                                                         before, "", time.monotonic() - start))
        except (ActionFailed, CheckError) as e:
            return self._record(f, action.name, Decision("failed", action.name, str(e), None, before, "",
                                                         time.monotonic() - start))
        except (Interrupted, KeyboardInterrupt):
            self._record(f, action.name, Decision("failed", action.name, "interrupted: the run was stopped during "
                                                  "the action (the next run resumes or undoes it)", "interrupted",
                                                  before, "", time.monotonic() - start))
            raise KeyboardInterrupt from None

    def _prepare(self, f: Failure, action: Action, progress: Progress) -> tuple[str, str] | None:
        """The gates of a disruptive action: a master's quorum (then leadership moved away), an agent's
        workload (drained, no allocation running). Returns (guardrail, reason) to refuse."""
        node = f.info.node
        inventory = self.run.inventory
        if "quorum" in action.gates:
            stop = gates.quorum(inventory, node, self.masters)
            if stop:
                return "quorum", stop
            progress.say(move_leadership_off(inventory, node, self.masters, progress))
        if "workload" in action.gates:
            settings = inventory.remediation
            nomad = Nomad(Http(write_config("nomad", inventory, self.masters)))
            with self.state.edit() as data:  # remembered before draining: a killed run's drain is not forgotten
                data["drained"].setdefault(node.name, {
                    "by": self.run.run_id, "since": time.time(), "for": f.info.check_id,
                    "was_eligible": nomad.node(node.name).get("SchedulingEligibility") == "eligible"})
            running = drain_until_idle(nomad, node, settings.drain_deadline_s,
                                       min(settings.drain_deadline_s + 60, settings.settle_timeout_s * 4), progress)
            if running:
                return "workload", (f"{node.name} still runs {len(running)} allocation(s) ({', '.join(running[:3])}) "
                                    "after draining: left drained, the next run continues")
        return None

    def _fresh(self, f: Failure) -> None:
        if self.run.nodes is not None and f.info.node.role in ("master", "agent"):
            self.run.nodes.session(f.info.node).invalidate()

    def _recheck(self, f: Failure, settle_s: float) -> str | None:
        """None once the check passes (within ``settle_s``), else its last message."""
        try:
            for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(settle_s),
                                             wait=tenacity.wait_fixed(min(5.0, max(1.0, settle_s / 20))),
                                             retry=tenacity.retry_if_exception_type(NOT_FIXED), reraise=True):
                with attempt:
                    self._fresh(f)
                    recheck(f.item)
        except NOT_FIXED as e:
            return redact(str(getattr(e, "msg", None) or e).splitlines()[0] if str(e) else type(e).__name__)
        return None

    def _recheck_only(self, f: Failure, first: Decision) -> Decision:
        if first.verdict != "taken":
            return self._record(f, first.action, Decision(first.verdict, first.action, first.reason, first.guardrail))
        message = self._recheck(f, self.run.inventory.remediation.settle_timeout_s)
        verdict = "taken" if message is None else "failed"
        reason = first.reason if message is None else f"{first.reason}; the check still fails: {message}"
        return self._record(f, first.action, Decision(verdict, first.action, reason, None, fixed=message is None,
                                                      message=message or ""))

    def _reenable_drained(self) -> None:
        """Nodes this suite drained (this run or an earlier one): eligible again once every check of the node
        itself passes (its testinfra checks: the Nomad node's own readiness is what the drain changed)."""
        if self.mode in ("off", "dry-run"):
            return
        with self.state.edit() as data:
            drained = dict(data["drained"])
        for name, entry in drained.items():
            items = [i for i in self.run.items.get(name, []) if _on_the_node(i)]
            still = []  # every check of the node, now (what the run recorded may predate the fix)
            for item in items:
                try:
                    recheck(item)
                except NOT_FIXED as e:
                    still.append(f"{item.stash[ITEM_KEY].check_id}: {str(e).splitlines()[0] if str(e) else ''}")
            if still:
                self.say(f"{name} stays drained: {'; '.join(still)}")
                continue
            nomad = Nomad(Http(write_config("nomad", self.run.inventory, self.masters)))
            try:
                n = nomad.node(name)
                if entry.get("was_eligible", True):
                    nomad.enable(str(n["ID"]))
                verdict, reason = "taken", f"{name} re-enabled in Nomad: every check of the node passes"
            except ActionFailed as e:
                verdict, reason = "failed", f"re-enabling {name}: {e}"
            self.audit.record(node=name, check="(drained by remediation)", action="reenable_node", mode=self.mode,
                              verdict=verdict, guardrail="workload", reason=reason, before="drained", after="",
                              duration_s=0.0)
            self.run.audit.append(self.audit.entries[-1])  # type: ignore[arg-type]
            self.say(reason)
            if verdict == "taken":
                with self.state.edit() as data:
                    data["drained"].pop(name, None)


def _on_the_node(item: pytest.Item) -> bool:
    """A check of the node itself (through ssh or ping), not of how the cluster sees it."""
    names = set(inspect.signature(cast(pytest.Function, item).obj).parameters)
    return bool(names & {"host", "ping_result", "ssh_result"})


def recheck(item: pytest.Item) -> None:
    """Run the check again with its fixtures' values, refreshed where a fixture says how (the node's host
    answers live, API snapshots are fetched again)."""
    args = item.stash.get(ARGS_KEY, None)
    run = get_run(item.config)
    info = item.stash.get(ITEM_KEY, None)
    if args is None and run is not None and run.nodes is not None and info is not None:
        args = check_arguments(run, item, run.nodes.ready(info.node))  # it never ran: blocked at its setup
    if args is None:
        raise CheckError(f"{item.nodeid}: no arguments kept for a re-check")
    fresh = {}
    for name, value in args.items():
        refreshed = item.config.hook.pytest_acceptance_refresh(item=item, name=name, value=value)
        fresh[name] = value if refreshed is None else refreshed
    cast(pytest.Function, item).obj(**fresh)


def _node(run: Run, name: str) -> Node:
    return next((n for n in (*run.targets, *run.all_nodes) if n.name == name), Node(name=name, role="cluster"))


def _safe(read: Callable[[], str]) -> str:
    try:
        return redact(str(read()))[:300]
    except Exception as e:  # reading the state must not stop the action from being decided
        return f"(cannot read: {type(e).__name__})"


def detail(d: Decision, mode: str) -> str:
    return json.dumps({"action": d.action, "mode": mode, "verdict": d.verdict, "guardrail": d.guardrail,
                       "before": d.before, "after": d.after, "duration_s": round(d.duration_s, 3)})
