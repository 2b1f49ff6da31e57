"""Remediation: guarded, idempotent actions that fix what a failed check found.

Checks name the fixture that can fix them (``restart_unit``, ``rerun_puppet``, ``reboot_for_cmdline``,
``pull_builder_image``, ``restart_backup``, ``hard_reboot``, ...); the fixtures (fixtures.py) build the actions
(actions.py); the engine (engine.py) decides under the guardrails: kill switches (gates.py, switch.py), blast
radius (blast.py), the cluster-wide state and budget (state.py, budget.py), confirmation (confirm.py), the lock
(lock.py), quorum and workload gates (leadership moved off a master: leadership.py; drains: drains.py); phase.py
is where it meets pytest's run loop; audit.py the audit log; clients.py the APIs with the remediation tokens.
"""
