"""Masters (alimesosNN): the TSM backup of /build/consul."""

from __future__ import annotations

import datetime as dt
from typing import Any

from acceptance.checkspec import check
from acceptance.inventory import Expectations
from acceptance.parsers import filespace_for, node_clock, parse_filespaces, parse_sched_log, unit_state
from acceptance.redaction import clip
from remediation.fixtures import restart_backup

RUNBOOK_BACKUP = "Backup master"


@check("master.backup.dsmcad", runbook=RUNBOOK_BACKUP, severity="major", remediation=restart_backup,
       roles=["master"])
def test_dsmcad(host: Any, expect: Expectations) -> None:
    unit = unit_state(expect.backup_unit, host.service(expect.backup_unit).systemd_properties)
    assert unit.exists and unit.active, f"{unit.describe()} (expected active)"


@check("master.backup.recent", runbook=RUNBOOK_BACKUP, severity="major", remediation=restart_backup,
       roles=["master"])
def test_backup_recent(host: Any, expect: Expectations) -> None:
    query = host.run("dsmc query filespace")
    assert query.rc == 0, f"'dsmc query filespace' failed: {clip((query.stdout + query.stderr).strip(), 200)}"
    filespace = filespace_for(parse_filespaces(query.stdout), expect.backup_path)
    assert filespace is not None, f"no TSM filespace holds {expect.backup_path}"
    assert filespace.last_incr is not None, f"filespace {filespace.name} has never had an incremental backup"
    now, offset = node_clock(host.check_output("date '+%s %z'"))
    age = (now - filespace.last_incr.replace(tzinfo=dt.timezone(offset)).timestamp()) / 3600
    assert age <= expect.backup_max_age_h, (
        f"last incremental of {filespace.name} was {age:.1f} h ago ({filespace.last_incr:%Y-%m-%d %H:%M} node time), "
        f"more than {expect.backup_max_age_h:g} h"
    )


@check("master.backup.success", runbook=RUNBOOK_BACKUP, severity="major", remediation=restart_backup,
       roles=["master"])
def test_backup_success(host: Any, expect: Expectations) -> None:
    log = host.run("tail -n 400 -- %s", expect.backup_sched_log)
    assert log.rc == 0, f"cannot read {expect.backup_sched_log}: {clip(log.stderr.strip(), 200)}"
    event = parse_sched_log(log.stdout)
    assert event is not None, f"no scheduled event status in {expect.backup_sched_log}"
    assert event.success, f"last scheduled backup failed: {event.line}"
    assert event.objects_failed is not None, (
        f"no 'Total number of objects failed' in the summary of event {event.name!r} ({event.time:%Y-%m-%d %H:%M})"
    )
    assert event.objects_failed == 0, f"event {event.name!r}: {event.objects_failed} objects failed"
