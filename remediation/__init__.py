"""Remediation: guarded, idempotent actions that fix what a failed check found (not implemented yet).

Checks name the action that can fix them by id (``unit.restart``, ``puppet.rerun``,
``node.reboot-for-cmdline``, ``image.pull``, ``tsm.restart-and-incremental``, ``node.hard-reboot``);
this package will hold those actions, their guardrails (lock, circuit breaker, quorum and workload
gates, retry budget) and the audit log.
"""
