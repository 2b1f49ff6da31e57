"""Masters (alimesosNN): units and the TSM backup of /build/consul."""

from __future__ import annotations

import datetime as dt

from acceptance.checkspec import check
from acceptance.facts import NodeFacts, filespace_for, parse_filespaces, parse_sched_log
from acceptance.inventory import Expectations, Inventory, Node

RUNBOOK = "Checklist to verify the status of a master"
RUNBOOK_BACKUP = "Backup master"


def master_units(inventory: Inventory, node: Node) -> list[str]:
    return list(inventory.expect.master_units)


@check("master.units.{unit}", runbook=RUNBOOK, severity="critical", remediation="unit.restart", roles=["master"],
       each=("unit", master_units))
def test_unit(facts: NodeFacts, param: str) -> None:
    unit = facts.unit(param)
    assert unit.exists and unit.active and unit.enabled, f"{unit.describe()} (expected active and enabled)"


@check("master.backup.dsmcad", runbook=RUNBOOK_BACKUP, severity="major", remediation="tsm.restart-and-incremental",
       roles=["master"])
def test_dsmcad(facts: NodeFacts, expect: Expectations) -> None:
    unit = facts.unit(expect.backup_unit)
    assert unit.exists and unit.active, f"{unit.describe()} (expected active)"


def _age_h(facts: NodeFacts, local: dt.datetime) -> float:
    return (facts.need_now() - facts.local_epoch(local)) / 3600


@check("master.backup.recent", runbook=RUNBOOK_BACKUP, severity="major", remediation="tsm.restart-and-incremental",
       roles=["master"])
def test_backup_recent(facts: NodeFacts, expect: Expectations) -> None:
    section = facts.section("filespaces")
    assert section.ok, f"'dsmc query filespace' failed: {section.first_line()}"
    filespace = filespace_for(parse_filespaces(section.text), expect.backup_path)
    assert filespace is not None, f"no TSM filespace holds {expect.backup_path}"
    assert filespace.last_incr is not None, f"filespace {filespace.name} has never had an incremental backup"
    age = _age_h(facts, filespace.last_incr)
    assert age <= expect.backup_max_age_h, (
        f"last incremental of {filespace.name} was {age:.1f} h ago ({filespace.last_incr:%Y-%m-%d %H:%M} node time), "
        f"more than {expect.backup_max_age_h:g} h"
    )


@check("master.backup.success", runbook=RUNBOOK_BACKUP, severity="major", remediation="tsm.restart-and-incremental",
       roles=["master"])
def test_backup_success(facts: NodeFacts, expect: Expectations) -> None:
    section = facts.section("schedlog")
    assert section.ok, f"cannot read {expect.backup_sched_log}: {section.first_line()}"
    event = parse_sched_log(section.text)
    assert event is not None, f"no scheduled event status in {expect.backup_sched_log}"
    assert event.success, f"last scheduled backup failed: {event.line}"
    assert event.objects_failed is not None, (
        f"no 'Total number of objects failed' in the summary of event {event.name!r} ({event.time:%Y-%m-%d %H:%M})"
    )
    assert event.objects_failed == 0, f"event {event.name!r}: {event.objects_failed} objects failed"
