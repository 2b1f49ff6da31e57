"""The facts script and its parser, on realistic outputs (and missing sections)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess

import pytest

from acceptance.facts import (
    FactMissing,
    NodeFacts,
    build_script,
    filespace_for,
    image_repository,
    parse_df,
    parse_filespaces,
    parse_findmnt,
    parse_puppet_summary,
    parse_sched_log,
    parse_sections,
)
from acceptance.inventory import Expectations, Node

from . import samples

MASTER = Node("alimesos01", "master", address="172.30.0.11")
AGENT = Node("alibuild01", "agent", address="172.30.1.1", kind="vm")


def test_script_has_the_role_sections_and_is_valid_sh():
    master = build_script(MASTER, Expectations())
    agent = build_script(AGENT, Expectations())
    for name in ("whoami", "clock", "cmdline", "units", "puppet"):
        assert f"_s {name} " in master and f"_s {name} " in agent
    assert "dsmcad.service" in master and "vault.service" in master and "dsmc query filespace" in master
    assert "docker images" in agent and "findmnt" in agent and "df -B1 --output=avail,size /build" in agent
    assert "dsmc" not in agent and "vault" not in agent
    if shutil.which("sh"):
        for script in (master, agent):
            assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0


def test_script_runs_locally_and_parses():
    """Run the agent script with sh here: whatever the machine lacks, every section comes back."""
    if not shutil.which("sh"):
        pytest.skip("no sh")
    out = subprocess.run(["sh", "-s"], input=build_script(AGENT, Expectations(), 10), capture_output=True,
                         text=True, timeout=30, check=False).stdout
    facts = NodeFacts.parse(out)
    assert set(facts.sections) == {"whoami", "hostname", "clock", "cmdline", "units", "puppet", "images", "findmnt",
                                   "df"}
    assert facts.now is not None and abs(facts.now - dt.datetime.now().timestamp()) < 60


def test_sections_with_rc_and_truncated_output():
    out = samples.render({"whoami": ("root\n", 0), "puppet": ("cat: /opt/x: No such file or directory", 1)})
    out += "@@facts:begin:units\nId=docker.service\n"  # cut short: no end line
    sections = parse_sections(out)
    assert sections["whoami"].text == "root" and sections["whoami"].ok
    assert sections["puppet"].rc == 1 and sections["puppet"].first_line().startswith("cat: /opt/x")
    assert "units" not in sections


def test_master_facts():
    facts = NodeFacts.parse(samples.master_output())
    assert facts.whoami == "root"
    assert facts.now == samples.NOW
    assert facts.utc_offset == dt.timedelta(hours=1)
    assert facts.unit("vault").active and facts.unit("vault.service").enabled
    assert not facts.unit("nosuch").exists


def test_missing_sections_raise_fact_missing():
    facts = NodeFacts.parse(samples.agent_output(units=None, clock=None, images=None))
    assert facts.units is None and facts.now is None
    with pytest.raises(FactMissing, match="'units'"):
        facts.unit("docker")
    with pytest.raises(FactMissing, match="clock"):
        facts.need_now()
    with pytest.raises(FactMissing, match="'images'"):
        facts.section("images")


def test_units_states():
    text = samples.units(samples.unit_block("docker"),
                         samples.unit_block("nomad", active="failed", sub="failed", file_state="disabled"),
                         "Id=vault.service\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\n",
                         samples.unit_block("dsmcad", file_state="generated"))
    facts = NodeFacts.parse(samples.render({"units": (text, 0)}))
    assert facts.unit("docker").active and facts.unit("docker").enabled
    nomad = facts.unit("nomad")
    assert not nomad.active and not nomad.enabled
    assert nomad.describe() == "nomad.service is failed/failed, disabled"
    assert not facts.unit("vault").exists
    assert "not installed" in facts.unit("vault").describe()
    assert facts.unit("dsmcad").enabled  # SysV-generated units count as enabled, like systemctl is-enabled


def test_puppet_summary():
    s = parse_puppet_summary(samples.puppet_summary(last_run=123, failed=2, event_failures=3))
    assert (s.last_run, s.failed, s.event_failures, s.clean) == (123.0, 2, 3, False)
    assert parse_puppet_summary(samples.puppet_summary()).clean
    with pytest.raises(ValueError, match="not a mapping"):
        parse_puppet_summary("just text")


def test_df_and_findmnt():
    assert parse_df("       Avail         Size\n900000000000 1073741824000\n").avail == 900000000000
    assert parse_df("df: /build: No such file or directory") is None
    mount = parse_findmnt("/dev/vdb xfs    /build\n")
    assert mount is not None and (mount.source, mount.fstype, mount.target) == ("/dev/vdb", "xfs", "/build")
    assert parse_findmnt("") is None


def test_image_repository():
    assert image_repository("registry.cern.ch/alisw/slc9-builder") == "registry.cern.ch/alisw/slc9-builder"
    assert image_repository("registry.cern.ch/alisw/slc9-builder:latest") == "registry.cern.ch/alisw/slc9-builder"
    assert image_repository("localhost:5000/x/y@sha256:ab") == "localhost:5000/x/y"
    assert image_repository("localhost:5000/x/y") == "localhost:5000/x/y"


def test_tsm_filespaces():
    spaces = parse_filespaces(samples.DSMC_FILESPACES.format(last_incr="11/26/2026 03:00:02"))
    assert [s.name for s in spaces] == ["/", "/build"]
    fs = filespace_for(spaces, "/build/consul")
    assert fs is not None and fs.name == "/build" and fs.last_incr == dt.datetime(2026, 11, 26, 3, 0, 2)
    assert filespace_for(spaces[:1], "/build/consul").name == "/"
    assert filespace_for([], "/build/consul") is None
    facts = NodeFacts.parse(samples.master_output())
    assert facts.local_epoch(fs.last_incr) == samples.NOW - 30 * 60 + 2  # 03:00:02 +0100 vs 03:30:00 +0100


def test_tsm_filespace_never_backed_up():
    text = samples.DSMC_FILESPACES.format(last_incr="11/26/2026 03:00:02").replace(
        "  2   11/26/2026 03:00:02       XFS", "  2                             XFS")
    spaces = parse_filespaces(text)
    assert spaces[1].name == "/build" and spaces[1].last_incr is None


def test_sched_log_success_and_failure():
    ok = parse_sched_log(samples.sched_log())
    assert ok is not None and ok.success and ok.objects_failed == 0 and ok.name == "DAILY_INCR"
    assert ok.time == dt.datetime(2026, 11, 26, 3, 0, 5)
    failed = parse_sched_log(samples.sched_log(
        status_line="11/26/2026 03:00:05 ANS1512E Scheduled event 'DAILY_INCR' failed.  Return code = 12.",
        failed_objects="3"))
    assert failed is not None and not failed.success
    assert (failed.message_id, failed.return_code, failed.objects_failed) == ("ANS1512E", 12, 3)
    assert parse_sched_log("nothing here\n") is None
