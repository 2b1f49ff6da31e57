"""The suite end to end with a fake prober: test ids, root cause and blocked, waived, error, summary, xdist."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from . import samples
from .conftest import EXAMPLE, ROOT
from .fakeprober import FakeProberPlugin


def summary(tmp_path):
    return json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())


def outcomes(data):
    return {f"{r['check']}[{r['node']}]": r for r in data["records"]}


def test_ids_read_well_and_cover_the_catalogue(write_inventory, run_suite):
    result = run_suite(f"--inventory={write_inventory()}", "--collect-only")
    assert result.ret == 0
    ids = {line.split("::", 1)[1] for line in result.out.splitlines() if "::" in line}
    assert "agent.cmdline.cgroup-v1[alibuild01]" in ids
    for check in ("node.ping", "node.ssh", "node.puppet.clean", "node.puppet.recent", "master.units.docker",
                  "master.units.nomad", "master.units.consul", "master.units.vault", "master.backup.dsmcad",
                  "master.backup.recent", "master.backup.success"):
        assert f"{check}[alimesos01]" in ids
    for check in ("agent.units.docker", "agent.units.nomad", "agent.image.builder", "agent.build.mounted",
                  "agent.build.free", "agent.cmdline.cgroup-v1"):
        assert f"{check}[alibuild01]" in ids
    assert "agent.build.mounted[alimetal01]" not in ids  # vm only
    assert "agent.build.free[alimetal01]" in ids
    assert not any(i.startswith("master.") and "alibuild" in i for i in ids)
    assert "checks/agent.py::agent.cmdline.cgroup-v1[alibuild01]" in result.out


def test_targeting_options_select_items(write_inventory, run_suite):
    result = run_suite(f"--inventory={write_inventory()}", "--collect-only", "--role=agent", "--nodes=ali*01")
    nodes = {line.rsplit("[", 1)[1].rstrip("]") for line in result.out.splitlines() if "::" in line}
    assert nodes == {"alibuild01", "alimetal01"}


def test_healthy_cluster_passes_waivers_reported(write_inventory, run_suite, tmp_path):
    plugin = FakeProberPlugin({})
    result = run_suite(f"--inventory={write_inventory()}", plugin=plugin)
    assert result.ret == 0, result.out
    data = summary(tmp_path)
    assert data["totals"]["failed"] == data["totals"]["blocked"] == data["totals"]["error"] == 0
    waived = [r for r in data["records"] if r["outcome"] == "waived"]
    assert waived and {r["node"] for r in waived} == {"alibuild02"}
    assert all("disk swap INC0123" in r["message"] for r in waived)
    assert "waived" in result.out and "alibuild02: WAIVED" in result.out
    # the waived node is not contacted at all
    assert {n for _, n in plugin.prober.calls} == {"alibuild01", "alimesos01", "alimetal01"}


def test_root_cause_first(write_inventory, run_suite, tmp_path):
    spec = {"alibuild01": {"ssh_error": "Connection timed out"}, "alimetal01": {"ping": False}}
    result = run_suite(f"--inventory={write_inventory()}", spec=spec)
    assert result.ret == 1
    data = summary(tmp_path)
    recs = outcomes(data)
    assert recs["node.ssh[alibuild01]"]["outcome"] == "failed"
    assert recs["node.ssh[alibuild01]"]["message"] == "ssh root@172.30.1.1: Connection timed out"
    assert recs["node.ssh[alibuild01]"]["remediation"] == "node.hard-reboot"
    assert recs["node.ping[alibuild01]"]["outcome"] == "passed"
    assert recs["agent.units.docker[alibuild01]"]["outcome"] == "blocked"
    assert recs["agent.units.docker[alibuild01]"]["blocked_by"] == "node.ssh"
    assert recs["node.ping[alimetal01]"]["outcome"] == "failed"
    assert recs["node.ssh[alimetal01]"]["blocked_by"] == "node.ping"
    failed = [k for k, r in recs.items() if r["outcome"] == "failed"]
    assert sorted(failed) == ["node.ping[alimetal01]", "node.ssh[alibuild01]"]
    assert data["blocked_by"] == {"node.ssh[alibuild01]": 8, "node.ping[alimetal01]": 8}
    assert data["totals"]["blocked"] == 16
    assert "2 failed" in result.out and "16 blocked" in result.out
    assert "BLOCKED 8 checks by node.ssh" in result.out


def test_node_failures_messages(write_inventory, run_suite, tmp_path):
    spec = {
        "alibuild01": {"output": samples.agent_output(
            cmdline=("ro quiet\n", 0),
            units=(samples.units(samples.unit_block("docker"),
                                 samples.unit_block("nomad", active="inactive", sub="dead", file_state="enabled")), 0),
            images=("", 0), findmnt=("", 1),
            df=("       Avail         Size\n100000000000 1073741824000\n", 0),
            puppet=(samples.puppet_summary(last_run=samples.NOW - 5 * 3600, failed=1), 0))},
        "alimesos01": {"output": samples.master_output(
            filespaces=(samples.DSMC_FILESPACES.format(last_incr="11/24/2026 03:00:02"), 0),
            schedlog=(samples.sched_log(
                "11/26/2026 03:00:05 ANS1512E Scheduled event 'DAILY_INCR' failed.  Return code = 12."), 0),
            units=(samples.units(*(samples.unit_block(u) for u in ("docker", "nomad", "consul", "vault")),
                                 samples.unit_block("dsmcad", active="failed", sub="failed")), 0))},
        "alimetal01": {"output": samples.agent_output(puppet=("cat: /opt/x: No such file or directory", 1))},
    }
    result = run_suite(f"--inventory={write_inventory()}", spec=spec)
    assert result.ret == 1
    recs = outcomes(summary(tmp_path))
    bad = {k: r["message"] for k, r in recs.items() if r["outcome"] != "passed" and r["outcome"] != "waived"}
    assert bad["agent.cmdline.cgroup-v1[alibuild01]"].startswith(
        "/proc/cmdline lacks systemd.unified_cgroup_hierarchy=0")
    assert bad["agent.units.nomad[alibuild01]"] == (
        "nomad.service is inactive/dead, enabled (expected active and enabled)")
    assert "slc9-builder is not present" in bad["agent.image.builder[alibuild01]"]
    assert bad["agent.build.mounted[alibuild01]"].startswith("/build is not a mount point")
    assert bad["agent.build.free[alibuild01]"].startswith("/build has 93 GiB free of 1000 GiB, less than 240 GiB")
    assert bad["node.puppet.clean[alibuild01]"].startswith("puppet's last run had failures: 1 resources failed")
    assert bad["node.puppet.recent[alibuild01]"].startswith("puppet last ran 5.0 h ago")
    assert bad["master.backup.dsmcad[alimesos01]"].startswith("dsmcad.service is failed/failed")
    assert bad["master.backup.recent[alimesos01]"].startswith("last incremental of /build was 48.5 h ago")
    assert bad["master.backup.success[alimesos01]"].startswith(
        "last scheduled backup failed: 11/26/2026 03:00:05 ANS1512E")
    assert bad["node.puppet.clean[alimetal01]"].startswith("no puppet run summary at /opt/puppetlabs/")
    assert len(bad) == 12, bad
    assert all(r["outcome"] == "failed" for k, r in recs.items() if k in bad)


def test_missing_facts_are_errors_not_passes(write_inventory, run_suite, tmp_path):
    spec = {"alibuild01": {"output": samples.agent_output(units=None, df=("garbage", 0))}}
    result = run_suite(f"--inventory={write_inventory()}", "--nodes=alibuild01", spec=spec)
    assert result.ret == 1
    recs = outcomes(summary(tmp_path))
    assert recs["agent.units.docker[alibuild01]"]["outcome"] == "error"
    assert "facts section 'units' is missing" in recs["agent.units.docker[alibuild01]"]["message"]
    assert recs["agent.build.free[alibuild01]"]["outcome"] == "error"
    assert recs["agent.cmdline.cgroup-v1[alibuild01]"]["outcome"] == "passed"


def test_expired_maintenance_is_a_warning_and_checks_run(write_inventory, run_suite, tmp_path):
    path = write_inventory(EXAMPLE.replace("until: 2099-12-31", "until: 2020-01-31"))
    result = run_suite(f"--inventory={path}")
    assert result.ret == 0
    assert "WARNING: maintenance entry for alibuild02 expired on 2020-01-31" in result.out
    data = summary(tmp_path)
    assert data["totals"]["waived"] == 0
    assert data["warnings"] == ["maintenance entry for alibuild02 expired on 2020-01-31 (disk swap INC0123): "
                                "ignored, its checks run"]


def test_junit_carries_check_properties(write_inventory, run_suite, tmp_path):
    junit = tmp_path / "junit.xml"
    run_suite(f"--inventory={write_inventory()}", f"--junitxml={junit}", "--nodes=alibuild01",
              spec={"alibuild01": {"ssh_error": "boom"}})
    xml = junit.read_text()
    assert 'name="agent.cmdline.cgroup-v1[alibuild01]"' in xml
    assert '<property name="check" value="agent.cmdline.cgroup-v1" />' in xml
    assert '<property name="runbook" value="Creating a agent" />' in xml
    assert '<property name="blocked_by" value="node.ssh" />' in xml


def test_xdist_controller_merges_workers(write_inventory, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"alibuild01": {"ssh_error": "Connection refused"}}))
    env = {**os.environ, "ACCEPTANCE_FAKE_SPEC": str(spec), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.unit.fakeprober", "-p", "no:cacheprovider", "-q", "-n", "2",
         f"--inventory={write_inventory()}", f"--report-dir={tmp_path / 'out'}", str(ROOT / "checks")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = summary(tmp_path)
    assert len(data["records"]) == 40  # master 11, vm agents 10 each, metal 9
    assert data["totals"]["failed"] == 1 and data["totals"]["blocked"] == 8 and data["totals"]["waived"] == 10
    assert len(list((tmp_path / "out").iterdir())) == 2  # <run id>/ and latest/
