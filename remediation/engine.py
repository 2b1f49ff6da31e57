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
import inspect
import json
import time
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
from remediation import blast, budget, gates
from remediation.audit import AuditLog
from remediation.clients import Http, Nomad, drain_until_idle, move_leadership_off, write_config
from remediation.fixtures import escalation_action
from remediation.lock import ConsulLock, describe, holder_of
from remediation.model import Action, ActionFailed, Interrupted, Mode, NeedsHuman, Progress, Refused
from remediation.state import ClusterState, StateUnavailable

ARGS_KEY = pytest.StashKey[dict[str, Any]]()  # the check function's arguments, for its re-check
ACTION_KEY = pytest.StashKey[object]()  # what its remediation fixture gave
NOT_FIXED = (AssertionError, CheckError, pytest.fail.Exception, pytest.skip.Exception)  # blocked: not fixed
REBOOTS = ("hard_reboot", "reboot_node", "reboot_for_cmdline")
PASSED = ("passed", "remediated")


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
    acted: bool = False  # the action ran: the re-check is the check's final report
    final: BaseException | None = field(default=None, repr=False)  # what the re-check raised (None: it passed)


class Stop(Exception):
    """A guardrail said no: (verdict, guardrail, reason)."""

    def __init__(self, verdict: str, guardrail: str, reason: str) -> None:
        super().__init__(reason)
        self.verdict, self.guardrail, self.reason = verdict, guardrail, reason


@dataclass
class Engine:
    run: Run
    mode: Mode
    say: Callable[[str], None] = print
    failures: list[Failure] = field(default_factory=list)

    def __post_init__(self) -> None:
        inventory = self.run.inventory
        self.settings = inventory.remediation
        self.audit = AuditLog(self.run.report_dir, self.run.run_id, self.mode)
        self.masters = [n for n in self.run.all_nodes if n.role == "master"]
        self.agents = [n for n in self.run.all_nodes if n.role == "agent"]
        self.consul = Http(write_config("consul", inventory, self.masters))
        self.state = ClusterState(self.consul, self.settings.state_key)
        self.nomad = Nomad(Http(write_config("nomad", inventory, self.masters)))
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
        if dict(call.user_properties).get("outcome") != "failed":
            return False  # error, blocked, waived never trigger a remediation
        self.failures.append(Failure(item, info, reports, str(dict(call.user_properties).get("message", ""))))
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

    # --------------------------------------------------------------------------- the guardrails

    def _stopped(self) -> str | None:
        return gates.kill_switch(self.run.inventory, self.consul)

    def _blast_radius(self) -> str | None:
        failing_masters = {r.node for r in self.run.records if r.outcome == "failed" and r.role == "master"}
        failing_agents = {r.node for r in self.run.records if r.outcome == "failed" and r.role == "agent"}
        for f in self.failures:
            (failing_masters if f.info.node.role == "master" else failing_agents).add(f.info.node.name)
        try:
            seen = blast.count_unhealthy(self.run.inventory, self.masters, self.agents)
        except Exception as e:  # counting must never let an action through
            return f"cannot count the unhealthy nodes ({type(e).__name__}: {redact(str(e))[:200]}): act on nothing"
        return blast.past_limit(seen, self.settings, failing_masters & {m.name for m in self.masters},
                                failing_agents & {a.name for a in self.agents})

    def _every_node(self, f: Failure) -> str | None:
        role = f.info.node.role
        everyone = {n.name for n in self.run.all_nodes if n.role == role}
        failing = {g.info.node.name for g in self.failures if g.info.check_id == f.info.check_id}
        failing |= {r.node for r in self.run.records if r.check == f.info.check_id and r.outcome == "failed"}
        if len(everyone) > 1 and everyone <= failing:
            return f"every {role} fails {f.info.check_id}: a systemic fault, never all nodes at once; page a human"
        return None

    def _read_state(self) -> dict[str, Any]:
        try:
            return self.state.read()
        except StateUnavailable as e:
            raise Stop("refused", "state", f"the remediation state cannot be read ({e}): act on nothing") from None

    def _rung(self, f: Failure, action: Action, state: dict[str, Any]) -> tuple[str, Action]:
        """The rung of the escalation ladder this failure is on, and its action (not spent yet)."""
        rungs = [action.name, *action.escalation]
        rung, why = budget.choose(state, f.key, rungs, self.settings.attempts, self.settings.budget_window_h * 3600,
                                  time.time())
        if rung is None:
            raise Stop("escalated", "budget", str(why))
        if rung == action.name:
            return rung, action
        if f.info.node.role == "master":
            raise Stop("escalated", "master", f"{action.name} did not fix it; a master is never rebooted "
                                              "automatically: needs a human")
        return rung, escalation_action(rung, self.run, f.info.node)

    def _cap(self, action: Action, state: dict[str, Any]) -> None:
        if not (action.disruptive or "lock" in action.gates):
            return
        role = action.node.role
        limit = self.settings.max_disruptive_masters if role == "master" else self.settings.max_disruptive_agents
        done = budget.disruptive_count(state, role, self.settings.disruptive_window_h * 3600, time.time())
        if done >= limit:
            raise Stop("refused", "cap", f"{done} disruptive action(s) on {role}s within "
                                         f"{self.settings.disruptive_window_h:g} h already (limit {limit})")

    def _confirm(self, f: Failure, action: Action) -> None:
        """The failure again, now: the check itself, then the action's own independent sources."""
        if (action.disruptive or "lock" in action.gates) and self._recheck(f, 0.0)[0] is None:
            raise Stop("refused", "unconfirmed", "the check passes again: the failure did not persist")
        if action.confirm is not None:
            why = action.confirm()
            if why:
                raise Stop("refused", "unconfirmed", f"not confirmed: {why}")

    def _lock(self, dry: bool) -> None:
        if dry:
            try:
                holder = holder_of(self.consul, self.settings.lock_key)
            except StateUnavailable as e:
                raise Stop("refused", "lock", f"the lock cannot be read ({e})") from None
            if holder and (self.lock is None or holder.get("session") != self.lock.session):
                raise Stop("refused", "lock", f"the lock is held by {describe(holder)}")
            return
        if self.lock is None and self.lock_refusal is None:
            lock = ConsulLock(self.consul, self.settings.lock_key, self.settings.lock_ttl_s, self.run.run_id)
            self.lock_refusal = lock.acquire()
            self.lock = None if self.lock_refusal else lock
        if self.lock_refusal:
            raise Stop("refused", "lock", self.lock_refusal)
        self._verify_lock()

    def _verify_lock(self) -> None:
        why = self.lock.verify() if self.lock is not None else "not held"
        if why:
            raise Stop("refused", "lock", f"the remediation lock is no longer ours ({why}): nothing disruptive "
                                          "starts")

    def _node_healthy(self, node: str, again: bool = False) -> str | None:
        """None when every check of the node itself ran in this run and passed (or was fixed); ``again``: a check
        that did not pass (blocked while the node was down, say) is run once more now, after the fixes."""
        items = [i for i in self.run.items.get(node, []) if _on_the_node(i)]
        if not items:
            return f"no check of {node} itself ran in this run"
        bad = []
        for item in items:
            info = item.stash[ITEM_KEY]
            key = f"{info.check_id}|{node}"
            if key in self.decisions:
                ok = self.decisions[key].fixed
            else:
                record = next((r for r in self.run.records if r.test_id == item.nodeid), None)
                deferred = any(g.item is item for g in self.failures)
                ok = record is not None and record.outcome in PASSED and not deferred
                if not ok and again and record is not None and not deferred:
                    ok = _passes_now(item)
            if not ok:
                bad.append(info.check_id)
        return f"{node} still fails {', '.join(bad[:5])}" if bad else None

    def _gates(self, f: Failure, action: Action, dry: bool, state: dict[str, Any]) -> str:
        """Every guardrail before acting; what a dry run would do (read-only), else what was prepared."""
        node = action.node
        if action.disruptive and self.mode != "all":
            raise Stop("refused", "mode", "disruptive: needs --remediate=all")
        self._cap(action, state)
        self._confirm(f, action)
        if "lock" in action.gates:
            self._lock(dry)
        if "quorum" in action.gates:
            stop = gates.quorum(self.run.inventory, node, self.masters)
            if stop:
                raise Stop("refused", "quorum", stop)
        if "node-healthy" in action.gates:
            stop = self._node_healthy(node.name)
            if stop:
                raise Stop("refused", "node-healthy", stop)
        if dry:
            return ""
        prepared = []
        if "workload" in action.gates:
            prepared.append(self._drain(f, node))
        if "leadership" in action.gates:
            self._verify_lock()
            prepared.append(move_leadership_off(self.run.inventory, node, self.masters, Progress(say=self.say)))
        return "; ".join(prepared)

    def _drain(self, f: Failure, node: Node) -> str:
        """Drained with its owner in the drain's Meta, remembered before draining (a killed run's drain is not
        forgotten); not idle by the settle time: left drained for the next run, never rebooted now."""
        self._verify_lock()
        owner = {"run_id": self.run.run_id, "user": self.audit.who["user"], "host": self.audit.who["host"],
                 "check": f.info.check_id}
        self._update(lambda s: s["drained"].setdefault(node.name, {**owner, "since": time.time()}))
        deadline = self.settings.drain_deadline_s
        running = drain_until_idle(self.nomad, node, deadline, self.settings.settle_timeout_s, Progress(say=self.say),
                                   owner)
        if running:
            raise Stop("refused", "workload", f"{node.name} still runs {len(running)} allocation(s) "
                                              f"({', '.join(running[:3])}) after {self.settings.settle_timeout_s:g} s "
                                              f"of draining (deadline {deadline:g} s, the longest build): left "
                                              "drained by this suite, not rebooted; the next run continues")
        return f"{node.name} drained (deadline {deadline:g} s) and idle"

    def _update(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        try:
            return self.state.update(change)
        except StateUnavailable as e:
            raise Stop("refused", "state", f"the remediation state cannot be written ({e}): nothing done") from None

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
            return self._record(f, Decision("failed", action.name, _one_line(e), None,
                                            duration_s=time.monotonic() - start))

    def _act(self, f: Failure, action: Action, rung: str, prepared: str, start: float) -> Decision:
        now = time.time()
        window_b, window_d = self.settings.budget_window_h * 3600, self.settings.disruptive_window_h * 3600
        counted = action.disruptive or "lock" in action.gates

        def spend(s: dict[str, Any]) -> None:
            budget.spend(s, f.key, rung, window_b, now)
            if counted:
                budget.record_disruptive(s, {"node": action.node.name, "role": action.node.role,
                                             "action": action.name, "run_id": self.run.run_id}, window_d, now)

        self._update(spend)
        if "lock" in action.gates:
            self._verify_lock()
        before = _safe(action.state)
        self._record(f, Decision("started", action.name, action.summary + (f" ({prepared})" if prepared else ""),
                                 before=before))
        self._fresh(f)
        try:
            did = action.do(Progress(say=self.say))
        except (ActionFailed, CheckError) as e:
            return self._record(f, Decision("failed", action.name, _one_line(e), None, before, "",
                                            time.monotonic() - start, acted=True,
                                            final=AssertionError(f.message or "the check still fails")))
        message, final = self._recheck(f, action.settle_s or self.settings.settle_timeout_s)
        after = _safe(action.state)
        if message is None:
            self._update(lambda s: budget.fixed(s, f.key, window_b, time.time()))
            return self._record(f, Decision("taken", action.name, did, None, before, after, time.monotonic() - start,
                                            fixed=True, acted=True))
        return self._record(f, Decision("failed", action.name, f"{did}; the check still fails: {message}", None,
                                        before, after, time.monotonic() - start, acted=True, final=final))

    def _human(self, f: Failure, why: str) -> None:
        with contextlib.suppress(StateUnavailable):  # the escalation is in the audit log; the next run asks again
            self.state.update(lambda s: budget.needs_human(s, f.key, why, time.time()))

    def _fresh(self, f: Failure) -> None:
        if self.run.nodes is not None and f.info.node.role in ("master", "agent"):
            self.run.nodes.session(f.info.node).invalidate()

    def _recheck(self, f: Failure, settle_s: float) -> tuple[str | None, BaseException | None]:
        """(None, None) once the check passes (within ``settle_s``), else its last message and exception."""
        last: BaseException | None = None
        try:
            for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(settle_s),
                                             wait=tenacity.wait_fixed(min(5.0, max(1.0, settle_s / 20))),
                                             retry=tenacity.retry_if_exception_type(NOT_FIXED), reraise=True):
                with attempt:
                    self._fresh(f)
                    recheck(f.item)
        except NOT_FIXED as e:
            last = e
            text = str(getattr(e, "msg", None) or e)
            return redact(text.splitlines()[0] if text else type(e).__name__), last
        return None, None

    def _recheck_only(self, f: Failure, first: Decision) -> Decision:
        if not first.acted:
            return self._record(f, Decision(first.verdict, first.action, first.reason, first.guardrail))
        message, final = self._recheck(f, self.settings.settle_timeout_s)
        verdict = "taken" if message is None else "failed"
        reason = first.reason if message is None else f"{first.reason}; the check still fails: {message}"
        return self._record(f, Decision(verdict, first.action, reason, None, fixed=message is None, acted=True,
                                        final=final))

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
        maintenance = {m.node for m in self.run.inventory.maintenance if not m.expired()}
        for name in sorted(drained):
            if name in maintenance:
                self.say(f"{name} stays drained: it is in maintenance")
                continue
            stop = self._node_healthy(name, again=True)
            if stop:
                self.say(f"{name} stays drained: {stop}")
                continue
            verdict, reason, forget = "failed", "", False
            try:
                n = self.nomad.node(name)
                reason, verdict, forget = self.nomad.reenable(str(n["ID"]), n), "taken", True
            except NeedsHuman as e:  # a human drained it again or made it ineligible: theirs now
                verdict, reason, forget = "refused", f"not re-enabled: {e}", True
            except Exception as e:
                reason = f"re-enabling {name}: {_one_line(e)}"
            self._record(None, Decision(verdict, "reenable_node", reason, "workload"), node=name,
                         check="(drained by remediation)")
            if forget:
                self._forget(name)

    def _forget(self, name: str) -> None:
        with contextlib.suppress(StateUnavailable):  # still listed: the next run looks again
            self.state.update(lambda s: s["drained"].pop(name, None))


def _on_the_node(item: pytest.Item) -> bool:
    """A check of the node itself (through ssh or ping), not of how the cluster sees it."""
    names = set(inspect.signature(cast(pytest.Function, item).obj).parameters)
    return bool(names & {"host", "ping_result", "ssh_result"})


def _passes_now(item: pytest.Item) -> bool:
    try:
        recheck(item)
    except NOT_FIXED:
        return False
    return True


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


def _one_line(e: BaseException) -> str:
    text = redact(str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text and not isinstance(e, ActionFailed | CheckError) \
        else (text[0][:300] if text else type(e).__name__)


def _safe(read: Callable[[], str]) -> str:
    try:
        return redact(str(read()))[:300]
    except Exception as e:  # reading the state must not stop the action from being decided
        return f"(cannot read: {type(e).__name__})"


def detail(d: Decision, mode: str) -> str:
    return json.dumps({"action": d.action, "mode": mode, "verdict": d.verdict, "guardrail": d.guardrail,
                       "before": d.before, "after": d.after, "duration_s": round(d.duration_s, 3)})
