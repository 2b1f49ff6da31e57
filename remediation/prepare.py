"""``--gate ACTION:NODE --prepare``: the runbook's preparation before a rebuild, reboot or deletion, before the
gate decides: an agent is drained (deadline ``drain_deadline_s``, system jobs left alone) and waited for until no
allocation runs (other than the allowed jobs); a master's Nomad and Consul leadership move to another master and
its Vault steps down, only when the two others are healthy. The remediation lock is then kept as a hold for the
human who rebuilds, until ``alice-acceptance release`` or its TTL: no remediation acts meanwhile. The drain is the
human's (its Meta names them), never re-enabled by remediation. Every step is audited."""

from __future__ import annotations

import time
from collections.abc import Callable

from remediation import gates
from remediation.audit import AuditLog
from remediation.clients import Api, write_config
from remediation.context import RemediationRun
from remediation.drains import Nomad, drain_until_idle
from remediation.leadership import move_leadership_off
from remediation.lock import ConsulLock
from remediation.model import ActionFailed, NeedsHuman, Progress
from remediation.state import StateUnavailable


def prepare(run: RemediationRun, say: Callable[[str], None]) -> None:
    gate = run.scope.gate
    assert gate is not None
    audit = AuditLog(run.info.report_dir, run.info.run_id, "prepare")
    start = time.monotonic()
    try:
        verdict, reason, guardrail = _prepare(run, audit, say)
    except (ActionFailed, NeedsHuman, StateUnavailable) as e:
        verdict, reason, guardrail = "failed", str(e), None
    entry = audit.record(node=gate.node.name, check=f"gate:{gate.action}", action="prepare", verdict=verdict,
                         guardrail=guardrail, reason=reason, before="", after="",
                         duration_s=round(time.monotonic() - start, 3))
    run.audit.append(entry)  # type: ignore[arg-type]
    say(f"prepare {gate.title}: {verdict}: {reason}")


def _prepare(run: RemediationRun, audit: AuditLog, say: Callable[[str], None]) -> tuple[str, str, str | None]:
    """(verdict, reason, the guardrail that refused)."""
    gate = run.scope.gate
    assert gate is not None
    settings = run.scope.inventory.remediation
    masters = [n for n in run.scope.all_nodes if n.role == "master"]
    progress = Progress(say=say)
    consul = Api(write_config("consul", run.scope.inventory, masters))
    stop = gates.kill_switch(run.scope.inventory, consul)
    if stop:
        return "refused", stop, "kill-switch"
    lock = ConsulLock(consul, settings.lock_key, settings.lock_ttl_s, run.info.run_id)
    refusal = lock.hold(f"{gate.title}: held for {audit.who['user']}@{audit.who['host']} until "
                        "`alice-acceptance release`")
    if refusal:
        return "refused", refusal, "lock"
    held = f"the remediation lock is held for the human until `alice-acceptance release` (or {settings.lock_ttl_s} s)"
    if gate.node.role == "master":
        stop = gates.quorum(run.scope.inventory, gate.node, masters)
        if stop:
            lock.release()
            return "refused", stop, "quorum"
        return "taken", f"{move_leadership_off(run.scope.inventory, gate.node, masters, progress)}; {held}", None
    nomad = Nomad(Api(write_config("nomad", run.scope.inventory, masters)))
    owner = {"drained_by": f"{audit.who['user']} (alice-acceptance gate --prepare)", "run_id": run.info.run_id,
             "host": audit.who["host"], "for": gate.title}
    running = drain_until_idle(nomad, gate.node, settings.drain_deadline_s, settings.drain_deadline_s + 60,
                               progress, owner, gate.allowed_jobs, for_human=True)
    if running:
        return "failed", f"{gate.node.name} still runs {', '.join(running[:3])} after draining; {held}", "workload"
    return "taken", f"{gate.node.name} drained: no allocation runs; {held}", None
