"""``--gate ACTION:NODE --prepare``: the runbook's preparation before a rebuild, reboot or deletion, under the
remediation lock and gates, before the gate decides: an agent is drained (deadline ``drain_deadline_s``) and
waited for until no allocation runs (other than the allowed jobs); a master's Nomad and Consul leadership move
to another master and its Vault steps down, only when the two others are healthy. Every step is audited."""

from __future__ import annotations

import time
from collections.abc import Callable

from acceptance.run import Run
from remediation import gates
from remediation.audit import AuditLog
from remediation.clients import Http, Nomad, drain_until_idle, move_leadership_off, write_config
from remediation.lock import ConsulLock
from remediation.model import ActionFailed, Progress


def prepare(run: Run, say: Callable[[str], None]) -> None:
    gate = run.gate
    assert gate is not None
    audit = AuditLog(run.report_dir, run.run_id)
    start = time.monotonic()
    try:
        verdict, reason, guardrail = _prepare(run, say)
    except ActionFailed as e:
        verdict, reason, guardrail = "failed", str(e), None
    entry = audit.record(node=gate.node.name, check=f"gate:{gate.action}", action="prepare", mode="prepare",
                         verdict=verdict, guardrail=guardrail, reason=reason, before="", after="",
                         duration_s=round(time.monotonic() - start, 3))
    run.audit.append(entry)  # type: ignore[arg-type]
    say(f"prepare {gate.title}: {verdict}: {reason}")


def _prepare(run: Run, say: Callable[[str], None]) -> tuple[str, str, str | None]:
    """(verdict, reason, the guardrail that refused)."""
    gate = run.gate
    assert gate is not None
    settings = run.inventory.remediation
    masters = [n for n in run.all_nodes if n.role == "master"]
    progress = Progress(say=say)
    stop = gates.kill_switch(run.inventory)
    if stop:
        return "refused", stop, "kill-switch"
    lock = ConsulLock(Http(write_config("consul", run.inventory, masters)), settings.lock_key, settings.lock_ttl_s,
                      run.run_id)
    refusal = lock.acquire()
    if refusal:
        return "refused", refusal, "lock"
    try:
        if gate.node.role == "master":
            stop = gates.quorum(run.inventory, gate.node, masters)
            if stop:
                return "refused", stop, "quorum"
            return "taken", move_leadership_off(run.inventory, gate.node, masters, progress), None
        nomad = Nomad(Http(write_config("nomad", run.inventory, masters)))
        running = drain_until_idle(nomad, gate.node, settings.drain_deadline_s, settings.drain_deadline_s + 60,
                                   progress, gate.allowed_jobs)
        if running:
            return "failed", f"{gate.node.name} still runs {', '.join(running[:3])} after draining", "workload"
        return "taken", f"{gate.node.name} drained: no allocation runs", None
    finally:
        lock.release()
