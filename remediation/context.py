"""What remediation reads of the run and what it owns of it.

The application gives it the core's parts it reads (:class:`~acceptance.run.RunInfo`, :class:`~acceptance.run.Scope`,
:class:`~acceptance.run.Connections`, :class:`~acceptance.run.Results`) when it starts remediation
(:func:`remediation.phase.start`); remediation owns the mode and the audit of this run's decisions, which the
application reads back for the summary and the exit status. Kept under remediation's own stash key, for the
remediation fixtures (set up with the checks in every process, whatever the mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from acceptance.run import Connections, Results, RunInfo, Scope
from remediation.model import Mode
from reports.summary import RemediationEntry

REMEDIATION_KEY = pytest.StashKey["RemediationRun"]()


@dataclass
class RemediationRun:
    info: RunInfo  # run_id (lock owner, audit, drain owner), report_dir (the audit log)
    scope: Scope  # inventory, every node (masters, agents), the gate of --gate --prepare
    connections: Connections  # the nodes, probed again before and after an action
    results: Results  # the records and items of this run (blast radius, node-healthy)
    mode: Mode = "off"  # --remediate
    audit: list[RemediationEntry] = field(default_factory=list)  # this run's remediation decisions


def remediation_of(config: pytest.Config) -> RemediationRun:
    found = config.stash.get(REMEDIATION_KEY, None)
    if found is None:
        raise pytest.UsageError("no inventory; fix: pass --inventory FILE")
    return found
