"""Realistic outputs of the facts script, healthy by default; override or drop (None) sections."""

from __future__ import annotations

# node clock: 2026-11-26 03:30:00 +0100
NOW = 1795660200
TZ = "+0100"

UNITS_HEADER = "Id,LoadState,ActiveState,SubState,UnitFileState"


def unit_block(name: str, active: str = "active", sub: str = "running", file_state: str = "enabled",
               load: str = "loaded") -> str:
    return f"Id={name}.service\nLoadState={load}\nActiveState={active}\nSubState={sub}\nUnitFileState={file_state}\n"


def units(*blocks: str) -> str:
    return "\n".join(blocks)


def puppet_summary(last_run: int = NOW - 1800, failed: int = 0, failed_to_restart: int = 0,
                   event_failures: int = 0) -> str:
    return f"""---
version:
  config: 1732590000
  puppet: 8.10.0
resources:
  changed: 0
  corrective_change: 0
  failed: {failed}
  failed_to_restart: {failed_to_restart}
  out_of_sync: 0
  restarted: 0
  scheduled: 0
  skipped: 0
  total: 412
time:
  catalog_application: 3.52
  config_retrieval: 2.01
  total: 7.43
  last_run: {last_run}
changes:
  total: 0
events:
  failure: {event_failures}
  success: 0
  total: {event_failures}
"""


DSMC_FILESPACES = """IBM Storage Protect
Command Line Backup-Archive Client Interface
  Client Version 8, Release 1, Level 23.0
  Client date/time: 11/26/2026 03:30:01
(c) Copyright by IBM Corporation and other(s) 1990, 2024. All Rights Reserved.

Node Name: ALIMESOS01
Session established with server TSM41: Linux/x86_64
  Server Version 8, Release 1, Level 22.000
  Server date/time: 11/26/2026 03:30:01  Last access: 11/26/2026 03:00:02

  #     Last Incr Date          Type    fsID    Unicode     Replication    File Space Name
---     --------------          ----    ----    -------     -----------    ---------------
  1   {last_incr}       EXT4       1       No          Current    /
  2   {last_incr}       XFS        2       No          Current    /build
"""


def sched_log(status_line: str = "11/26/2026 03:00:05 Scheduled event 'DAILY_INCR' completed successfully.",
              failed_objects: str = "0") -> str:
    return f"""11/25/2026 03:00:01 --- SCHEDULEREC QUERY BEGIN
11/25/2026 03:00:01 Scheduled event 'DAILY_INCR' completed successfully.
11/26/2026 03:00:00 --- SCHEDULEREC OBJECT BEGIN DAILY_INCR 11/26/2026 03:00:00
11/26/2026 03:00:01 Incremental backup of volume '/build/consul'
11/26/2026 03:00:04 --- SCHEDULEREC STATUS BEGIN
11/26/2026 03:00:04 Total number of objects inspected:       1,204
11/26/2026 03:00:04 Total number of objects backed up:          37
11/26/2026 03:00:04 Total number of objects failed:              {failed_objects}
11/26/2026 03:00:04 Elapsed processing time:               00:00:03
11/26/2026 03:00:04 --- SCHEDULEREC STATUS END
11/26/2026 03:00:04 --- SCHEDULEREC OBJECT END DAILY_INCR 11/26/2026 03:00:00
{status_line}
11/26/2026 03:00:05 Sending results for scheduled event 'DAILY_INCR'.
11/26/2026 03:00:05 Results sent to server for scheduled event 'DAILY_INCR'.
"""


def render(sections: dict[str, tuple[str, int] | None]) -> str:
    out = []
    for name, value in sections.items():
        if value is None:
            continue
        text, rc = value
        out.append(f"@@facts:begin:{name}\n{text}{'' if text.endswith(chr(10)) or not text else chr(10)}\n"
                   f"@@facts:end:{name}:{rc}\n")
    return "".join(out)


def _common(user: str = "root") -> dict[str, tuple[str, int] | None]:
    return {
        "whoami": (f"{user}\n", 0),
        "hostname": ("node.cern.ch\n", 0),
        "clock": (f"{NOW} {TZ}\n", 0),
    }


def master_sections(**overrides: tuple[str, int] | None) -> dict[str, tuple[str, int] | None]:
    s = _common()
    s.update({
        "cmdline": ("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0 root=UUID=1b2c ro console=ttyS0\n", 0),
        "units": (units(*(unit_block(u) for u in ("docker", "nomad", "consul", "vault", "dsmcad"))), 0),
        "puppet": (puppet_summary(), 0),
        "filespaces": (DSMC_FILESPACES.format(last_incr="11/26/2026 03:00:02"), 0),
        "schedlog": (sched_log(), 0),
    })
    s.update(overrides)
    return s


def agent_sections(**overrides: tuple[str, int] | None) -> dict[str, tuple[str, int] | None]:
    s = _common()
    s.update({
        "cmdline": ("BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0 root=UUID=1b2c ro systemd.unified_cgroup_hierarchy=0\n", 0),
        "units": (units(unit_block("docker"), unit_block("nomad")), 0),
        "puppet": (puppet_summary(), 0),
        "images": ("registry.cern.ch/alisw/slc9-builder:latest\n", 0),
        "findmnt": ("/dev/vdb xfs    /build\n", 0),
        "df": ("       Avail         Size\n900000000000 1073741824000\n", 0),
    })
    s.update(overrides)
    return s


def master_output(**overrides: tuple[str, int] | None) -> str:
    return render(master_sections(**overrides))


def agent_output(**overrides: tuple[str, int] | None) -> str:
    return render(agent_sections(**overrides))
