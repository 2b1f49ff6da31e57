"""The guardrails of the remediation phase, in the order the engine asks them (see remediation/engine.py): each
raises :class:`~remediation.decision.Stop` when it says no. A mixin of :class:`~remediation.engine.Engine`, whose
state it reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from acceptance.inventory import Node, RemediationSettings
from acceptance.redaction import clip
from acceptance.run import ITEM_KEY
from remediation import blast, budget, gates
from remediation.audit import AuditLog
from remediation.clients import Api
from remediation.context import RemediationRun
from remediation.decision import Decision, Failure, Stop
from remediation.drains import Nomad, drain_until_idle
from remediation.fixtures import escalation_action
from remediation.leadership import move_leadership_off
from remediation.lock import ConsulLock, describe, holder_of
from remediation.model import Action, Mode, Progress
from remediation.recheck import on_the_node, passes_now, recheck_until
from remediation.state import ClusterState, StateUnavailable
from reports.outcomes import PASSING


class Guardrails:
    run: RemediationRun
    mode: Mode
    say: Callable[[str], None]
    failures: list[Failure]
    settings: RemediationSettings
    audit: AuditLog
    masters: list[Node]
    agents: list[Node]
    consul: Api
    state: ClusterState
    nomad: Nomad
    lock: ConsulLock | None
    lock_refusal: str | None
    decisions: dict[str, Decision]

    def _fresh(self, f: Failure) -> None:
        """The node's cached answers are forgotten: a re-check reads the node again."""
        if self.run.connections.nodes is not None and f.info.node.role in ("master", "agent"):
            self.run.connections.nodes.session(f.info.node).invalidate()

    def _stopped(self) -> str | None:
        return gates.kill_switch(self.run.scope.inventory, self.consul)

    def _blast_radius(self) -> str | None:
        failing_masters = {r.node for r in self.run.results.records if r.outcome == "failed" and r.role == "master"}
        failing_agents = {r.node for r in self.run.results.records if r.outcome == "failed" and r.role == "agent"}
        for f in self.failures:
            (failing_masters if f.info.node.role == "master" else failing_agents).add(f.info.node.name)
        try:
            seen = blast.count_unhealthy(self.run.scope.inventory, self.masters, self.agents)
        except Exception as e:  # counting must never let an action through
            return f"cannot count the unhealthy nodes ({type(e).__name__}: {clip(str(e), 200)}): act on nothing"
        return blast.past_limit(seen, self.settings, failing_masters & {m.name for m in self.masters},
                                failing_agents & {a.name for a in self.agents})

    def _every_node(self, f: Failure) -> str | None:
        role = f.info.node.role
        everyone = {n.name for n in self.run.scope.all_nodes if n.role == role}
        failing = {g.info.node.name for g in self.failures if g.info.check_id == f.info.check_id}
        failing |= {r.node for r in self.run.results.records if r.check == f.info.check_id and r.outcome == "failed"}
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
        if (action.disruptive or "lock" in action.gates) and recheck_until(f.item, 0.0, lambda: self._fresh(f))[0]:
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
            lock = ConsulLock(self.consul, self.settings.lock_key, self.settings.lock_ttl_s, self.run.info.run_id)
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
        items = [i for i in self.run.results.items.get(node, []) if on_the_node(i)]
        if not items:
            return f"no check of {node} itself ran in this run"
        bad = []
        for item in items:
            info = item.stash[ITEM_KEY]
            key = f"{info.check_id}|{node}"
            if key in self.decisions:
                ok = self.decisions[key].fixed
            else:
                record = next((r for r in self.run.results.records if r.test_id == item.nodeid), None)
                deferred = any(g.item is item for g in self.failures)
                ok = record is not None and record.outcome in PASSING and not deferred
                if not ok and again and record is not None and not deferred:
                    ok = passes_now(item)
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
            stop = gates.quorum(self.run.scope.inventory, node, self.masters)
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
            prepared.append(move_leadership_off(self.run.scope.inventory, node, self.masters, Progress(say=self.say)))
        return "; ".join(prepared)

    def _drain(self, f: Failure, node: Node) -> str:
        """Drained with its owner in the drain's Meta, remembered before draining (a killed run's drain is not
        forgotten); not idle by the settle time: left drained for the next run, never rebooted now."""
        self._verify_lock()
        owner = {"run_id": self.run.info.run_id, "user": self.audit.who["user"], "host": self.audit.who["host"],
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

