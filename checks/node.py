"""Checks every node gets, masters and agents: ping, ssh, puppet."""

from __future__ import annotations

import time

from acceptance.checkspec import CheckError, check
from acceptance.facts import FactMissing, NodeFacts, PuppetSummary, parse_puppet_summary
from acceptance.inventory import Expectations, Inventory
from acceptance.plugin import NodeProbe

RUNBOOK_STATUS = {"master": "Checklist to verify the status of a master", "agent": "Creating a agent"}


@check("node.ping", runbook=RUNBOOK_STATUS, severity="critical", remediation="node.hard-reboot", needs=())
def test_ping(probe: NodeProbe) -> None:
    result = probe.ping()
    if result.error:
        raise CheckError(result.message)  # could not try: error, not a verdict on the node
    assert result.ok, result.message


@check("node.ssh", runbook=RUNBOOK_STATUS, severity="critical", remediation="node.hard-reboot", needs=("reachable",))
def test_ssh(probe: NodeProbe, inventory: Inventory) -> None:
    result = probe.connect()
    assert result.connection.ok, result.connection.message
    assert result.facts is not None
    who = result.facts.whoami
    if who is None:
        raise FactMissing("facts section 'whoami' is missing: the facts script did not run")
    assert who == inventory.ssh.user, f"logged in as {who!r}, expected {inventory.ssh.user!r}"


RUNBOOK_PUPPET = {"master": "Checklist to verify the status of a master", "agent": "Creating a agent"}


def _puppet(facts: NodeFacts, expect: Expectations) -> PuppetSummary:
    section = facts.section("puppet")
    assert section.ok, f"no puppet run summary at {expect.puppet_summary}: {section.first_line()}"
    try:
        return parse_puppet_summary(section.text)
    except ValueError as e:
        raise AssertionError(f"{expect.puppet_summary} is not a puppet run summary: {e}") from None


@check("node.puppet.clean", runbook=RUNBOOK_PUPPET, severity="major", remediation="puppet.rerun")
def test_puppet_clean(facts: NodeFacts, expect: Expectations) -> None:
    s = _puppet(facts, expect)
    assert s.clean, (f"puppet's last run had failures: {s.failed} resources failed, {s.failed_to_restart} failed "
                     f"to restart, {s.event_failures} events failed")


@check("node.puppet.recent", runbook=RUNBOOK_PUPPET, severity="major", remediation="puppet.rerun")
def test_puppet_recent(facts: NodeFacts, expect: Expectations) -> None:
    s = _puppet(facts, expect)
    assert s.last_run is not None, f"{expect.puppet_summary} has no time.last_run"
    age_h = (facts.need_now() - s.last_run) / 3600
    assert age_h <= expect.puppet_max_age_h, (
        f"puppet last ran {age_h:.1f} h ago ({time.strftime('%Y-%m-%d %H:%M', time.gmtime(s.last_run))} UTC), "
        f"more than {expect.puppet_max_age_h:g} h"
    )
