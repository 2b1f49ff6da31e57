"""Checks every node gets, masters and agents: ping, ssh, the expected units, puppet."""

from __future__ import annotations

import time
from typing import Any

from acceptance.checkspec import check
from acceptance.inventory import Expectations, Inventory, Node
from acceptance.outcomes import CheckError, judge
from acceptance.parsers import Malformed, PuppetSummary, node_clock, parse_puppet_summary, unit_state
from acceptance.transport.ping import ProbeResult
from acceptance.transport.ssh import SshResult
from remediation.fixtures import hard_reboot, rerun_puppet, restart_unit

RUNBOOK_STATUS = {"master": "Checklist to verify the status of a master", "agent": "Creating a agent"}
FUTURE_TOLERANCE_S = 600  # a clock a little ahead is not a reason to distrust a summary


@check("node.ping", runbook=RUNBOOK_STATUS, severity="critical", remediation=hard_reboot, needs=())
def test_ping(ping_result: ProbeResult) -> None:
    if ping_result.error:
        raise CheckError(ping_result.message)  # could not try: error, not a verdict on the node
    assert ping_result.ok, ping_result.message


@check("node.ssh", runbook=RUNBOOK_STATUS, severity="critical", remediation=hard_reboot,
       needs=("reachable",))
def test_ssh(ssh_result: SshResult, host: Any, inventory: Inventory) -> None:
    if not ssh_result.ok:
        if ssh_result.runner_error:  # a bastion or a throttled sshd: never a verdict on the node (nor a reboot)
            raise CheckError(ssh_result.message)
        judge(not ssh_result.config_error, ssh_result.message)  # a host key or login problem is the operator's
    who = host.user().name
    assert who == inventory.ssh.user, f"logged in as {who!r}, expected {inventory.ssh.user!r}"


def node_units(inventory: Inventory, node: Node) -> list[str]:
    return list(inventory.expect.master_units if node.role == "master" else inventory.expect.agent_units)


@check("{role}.units.{unit}", runbook=RUNBOOK_STATUS, severity="critical", remediation=restart_unit,
       each=("unit", node_units))
def test_unit(host: Any, param: str) -> None:
    unit = unit_state(param, host.service(param).systemd_properties)
    assert unit.exists and unit.active and unit.enabled, f"{unit.describe()} (expected active and enabled)"


def _puppet(host: Any, expect: Expectations) -> PuppetSummary:
    summary = host.file(expect.puppet_summary)
    assert summary.exists, f"no puppet run summary at {expect.puppet_summary} (puppet never ran)"
    try:
        return parse_puppet_summary(summary.content_string)
    except Malformed as e:
        raise Malformed(f"{expect.puppet_summary} is not a puppet run summary: {e}") from None


@check("node.puppet.clean", runbook=RUNBOOK_STATUS, severity="major", remediation=rerun_puppet)
def test_puppet_clean(host: Any, expect: Expectations) -> None:
    s = _puppet(host, expect)
    assert s.applied, "puppet's last run applied no catalog (the summary has no resources or events)"
    assert s.clean, (f"puppet's last run had failures: {s.failed} resources failed, {s.failed_to_restart} failed "
                     f"to restart, {s.event_failures} events failed")


@check("node.puppet.recent", runbook=RUNBOOK_STATUS, severity="major", remediation=rerun_puppet)
def test_puppet_recent(host: Any, expect: Expectations) -> None:
    now, _ = node_clock(host.check_output("date '+%s %z'"))
    s = _puppet(host, expect)
    if s.last_run - now > FUTURE_TOLERANCE_S:
        raise Malformed(f"{expect.puppet_summary}: time.last_run is {s.last_run - now:.0f} s in the future "
                        "(the node's clock or the summary is wrong)")
    age_h = (now - s.last_run) / 3600
    assert age_h <= expect.puppet_max_age_h, (
        f"puppet last ran {age_h:.1f} h ago ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(s.last_run))} UTC), "
        f"more than {expect.puppet_max_age_h:g} h"
    )
