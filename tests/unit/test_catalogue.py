"""The built-in node checks end to end on the fake ssh (answers recorded from the lab's nodes): ids, root cause
and blocked, waived, failed with a message that says what is wrong, error (never passed) on malformed output,
summary, JUnit, xdist."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from .conftest import EXAMPLE, ROOT
from .fakessh import ANSWERS, FakeNodes, replace_property

SUMMARY = "cat -- /opt/puppetlabs/puppet/public/last_run_summary.yaml"
DATE = "date '+%s %z'"
DF = "df -B1 --output=avail,size -- /build"
IMAGES = "docker images --format '{{.Repository}}:{{.Tag}}' -- registry.cern.ch/alisw/slc9-builder"
TSM_LOG = "tail -n 400 -- /var/log/tsm/dsmsched.log"
LAB_EXPECT = EXAMPLE + "expect:\n  build_min_free_gib: 0.5\n"  # the lab's small /build volumes


def summary(tmp_path: Any) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "out" / "latest" / "summary.json").read_text()))


def outcomes(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['check']}[{r['node']}]": r for r in data["records"]}


def now(role: str) -> int:
    return int(ANSWERS[role][DATE][1].split()[0])


def unit(role: str, name: str, **props: str) -> list[Any]:
    return [0, replace_property(ANSWERS[role][f"systemctl show {name}"][1], **props), ""]


def puppet(role: str, last_run: int | None = None, **changes: Any) -> list[Any]:
    """The recorded summary with text replaced, and ``last_run`` (seconds before the node's clock) set."""
    text = ANSWERS[role][SUMMARY][1]
    for old, new in changes.items():
        text = text.replace(old, new)
    if last_run is not None:
        text = re.sub(r"last_run: \d+", f"last_run: {now(role) - last_run}", text)
    return [0, text, ""]


def test_ids_read_well_and_cover_the_catalogue(write_inventory, run_suite):
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", "--collect-only")
    assert result.ret == 0
    ids = {line.split("::", 1)[1] for line in result.out.splitlines() if "::" in line}
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
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", "--collect-only", "--role=agent", "--nodes=ali*01")
    nodes = {line.rsplit("[", 1)[1].rstrip("]") for line in result.out.splitlines() if "::" in line}
    assert nodes == {"alibuild01", "alimetal01"}


def test_healthy_cluster_passes_waivers_reported(write_inventory, run_suite, tmp_path):
    plugin = FakeNodes({})
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", plugin=plugin)
    assert result.ret == 0, result.out
    data = summary(tmp_path)
    assert data["totals"]["failed"] == data["totals"]["blocked"] == data["totals"]["error"] == 0
    waived = [r for r in data["records"] if r["outcome"] == "waived"]
    assert waived and {r["node"] for r in waived} == {"alibuild02"}
    assert all("disk swap INC0123" in r["message"] for r in waived)
    assert "alibuild02: WAIVED" in result.out
    assert {node for node, _ in plugin.ssh.batches} == {"alibuild01", "alimesos01", "alimetal01"}  # not the waived
    # every command of a node's checks came in its batches: nothing ran live
    assert all(c.live_commands == 0 for c in plugin.ssh.counters.values())
    assert max(c.round_trips for c in plugin.ssh.counters.values()) <= 3


def test_root_cause_first(write_inventory, run_suite, tmp_path):
    spec = {"alibuild01": {"ssh_error": "ssh: connect to host 172.30.1.1 port 22: Connection timed out"},
            "alimetal01": {"ping": False}}
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", spec=spec)
    assert result.ret == 1
    data = summary(tmp_path)
    recs = outcomes(data)
    assert recs["node.ssh[alibuild01]"]["outcome"] == "failed"
    assert recs["node.ssh[alibuild01]"]["message"] == (
        "ssh root@172.30.1.1: ssh: connect to host 172.30.1.1 port 22: Connection timed out")
    assert recs["node.ssh[alibuild01]"]["remediation"] == "hard_reboot"
    assert recs["node.ping[alibuild01]"]["outcome"] == "passed"
    assert recs["agent.units.docker[alibuild01]"]["outcome"] == "blocked"
    assert recs["agent.units.docker[alibuild01]"]["blocked_by"] == "node.ssh"
    assert recs["node.ping[alimetal01]"]["outcome"] == "failed"
    assert recs["node.ssh[alimetal01]"]["blocked_by"] == "node.ping"
    failed = sorted(k for k, r in recs.items() if r["outcome"] == "failed")
    assert failed == ["node.ping[alimetal01]", "node.ssh[alibuild01]"]
    behind_ssh = [k for k in recs if k.endswith("[alibuild01]") and not k.startswith(("node.ping", "node.ssh"))]
    behind_ping = [k for k in recs if k.endswith("[alimetal01]") and not k.startswith("node.ping")]
    assert data["blocked_by"] == {"node.ssh[alibuild01]": len(behind_ssh), "node.ping[alimetal01]": len(behind_ping)}
    assert data["totals"]["blocked"] == len(behind_ssh) + len(behind_ping)
    assert f"BLOCKED {len(behind_ssh)} checks by node.ssh" in result.out


@pytest.mark.parametrize("stderr, fix", [
    ("Host key verification failed.", "ssh.known_hosts"),
    ("root@172.30.1.1: Permission denied (publickey).", "ssh.identity"),
    ("/etc/x/ssh_config: line 3: Bad configuration option: hots", "ssh.config"),
])
def test_ssh_configuration_problems_are_errors_not_node_failures(write_inventory, run_suite, tmp_path, stderr, fix):
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", "--nodes=alibuild01",
                       spec={"alibuild01": {"ssh_error": stderr}})
    assert result.ret == 1
    rec = outcomes(summary(tmp_path))["node.ssh[alibuild01]"]
    assert rec["outcome"] == "error" and fix in rec["message"] and stderr.rstrip(".") in rec["message"]


def test_node_failures_say_what_is_wrong(write_inventory, run_suite, tmp_path):
    master_now = now("master")
    spec = {
        "alibuild01": {"answers": {
            "cat -- /proc/cmdline": [0, "BOOT_IMAGE=/vmlinuz ro quiet\n", ""],
            "systemctl show nomad": unit("agent-vm", "nomad", ActiveState="inactive", SubState="dead"),
            IMAGES: [0, "", ""],
            "cat /proc/mounts": [0, "overlay / overlay rw 0 0\n", ""],
            DF: [0, "     Avail       Size\n429496729 1073741824\n", ""],
            SUMMARY: puppet("agent-vm", last_run=5 * 3600, **{"  failed: 0\n": "  failed: 1\n"}),
        }},
        "alimesos01": {"answers": {
            "dsmc query filespace": [0, ANSWERS["master"]["dsmc query filespace"][1].replace(
                ANSWERS["master"]["dsmc query filespace"][1].split("\n")[5][:25], "  1   11/28/2026 03:00:02"), ""],
            TSM_LOG: [0, "11/30/2026 03:00:05 ANS1512E Scheduled event 'DAILY_INCR' failed.  Return code = 12.\n", ""],
            "systemctl show dsmcad": unit("master", "dsmcad", ActiveState="failed", SubState="failed"),
        }},
        "alimetal01": {"answers": {
            "test -e /opt/puppetlabs/puppet/public/last_run_summary.yaml": [1, "", ""]}},
    }
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", spec=spec)
    assert result.ret == 1
    recs = outcomes(summary(tmp_path))
    bad = {k: r["message"] for k, r in recs.items() if r["outcome"] not in ("passed", "waived")}
    assert bad["agent.cmdline.cgroup-v1[alibuild01]"].startswith(
        "/proc/cmdline lacks systemd.unified_cgroup_hierarchy=0")
    assert bad["agent.units.nomad[alibuild01]"] == (
        "nomad.service is inactive/dead, enabled (expected active and enabled)")
    assert "slc9-builder is not present" in bad["agent.image.builder[alibuild01]"]
    assert bad["agent.build.mounted[alibuild01]"].startswith("/build is not a mount point")
    assert bad["agent.build.free[alibuild01]"].startswith("/build has 0.4 GiB free of 1.0 GiB, less than 0.5 GiB")
    assert bad["node.puppet.clean[alibuild01]"].startswith("puppet's last run had failures: 1 resources failed")
    assert bad["node.puppet.recent[alibuild01]"].startswith("puppet last ran 5.0 h ago")
    assert bad["master.backup.dsmcad[alimesos01]"].startswith("dsmcad.service is failed/failed")
    age_h = (master_now - dt.datetime(2026, 11, 28, 3, 0, 2, tzinfo=dt.UTC).timestamp()) / 3600  # node in UTC
    assert bad["master.backup.recent[alimesos01]"].startswith(
        f"last incremental of /build/consul was {age_h:.1f} h ago")
    assert bad["master.backup.success[alimesos01]"].startswith(
        "last scheduled backup failed: 11/30/2026 03:00:05 ANS1512E")
    assert bad["node.puppet.clean[alimetal01]"].startswith("no puppet run summary at /opt/puppetlabs/")
    assert bad["node.puppet.recent[alimetal01]"].startswith("no puppet run summary at /opt/puppetlabs/")
    assert len(bad) == 12, bad
    assert all(recs[k]["outcome"] == "failed" for k in bad)


PUPPET_GARBAGE = {  # what puppet never writes: the checks cannot tell, so error (never passed)
    "failed counter removed": {"  failed: 0\n": ""},
    "failed counter a string": {"  failed: 0\n": "  failed: '3'\n"},
    "failed counter a list": {"  failed: 0\n": "  failed: [1]\n"},
    "resources empty": {"resources:\n": "resources: {}\nx:\n"},
    "last_run infinite": {"last_run: ": "last_run: .inf\n  was: "},
    "last_run a string": {"last_run: ": "last_run: 'yesterday'\n  was: "},
    "not yaml": {"---\n": "{{{\n"},
}


@pytest.mark.parametrize("case", PUPPET_GARBAGE, ids=list(PUPPET_GARBAGE))
def test_malformed_puppet_summary_is_an_error(write_inventory, run_suite, tmp_path, case):
    spec = {"alibuild01": {"answers": {SUMMARY: puppet("agent-vm", **PUPPET_GARBAGE[case])}}}
    run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", "--nodes=alibuild01", "-k", "puppet", spec=spec)
    recs = outcomes(summary(tmp_path))
    verdicts = {recs[f"node.puppet.{c}[alibuild01]"]["outcome"] for c in ("clean", "recent")}
    assert "passed" not in verdicts and "error" in verdicts


def test_puppet_run_without_catalog_fails_and_future_runs_are_errors(write_inventory, run_suite, tmp_path):
    text = ANSWERS["agent-vm"][SUMMARY][1]
    only_time = "---\nversion:\n  puppet: 7.23.0\ntime:\n  last_run: " + str(now("agent-vm") - 60) + "\n"
    future = text.replace(f"last_run: {text.split('last_run: ')[1].split()[0]}", f"last_run: {now('agent-vm') + 86400}")
    spec = {"alibuild01": {"answers": {SUMMARY: [0, only_time, ""]}},
            "alimetal01": {"answers": {SUMMARY: [0, future, ""]}}}
    run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", "--nodes=alibuild01,alimetal01", "-k", "puppet", spec=spec)
    recs = outcomes(summary(tmp_path))
    assert recs["node.puppet.clean[alibuild01]"]["outcome"] == "failed"
    assert "applied no catalog" in recs["node.puppet.clean[alibuild01]"]["message"]
    assert recs["node.puppet.recent[alimetal01]"]["outcome"] == "error"
    assert "in the future" in recs["node.puppet.recent[alimetal01]"]["message"]


def test_missing_or_malformed_answers_are_errors_not_passes(write_inventory, run_suite, tmp_path):
    spec = {"alibuild01": {"drop": ["systemctl show docker"], "answers": {DF: [0, "garbage\n", ""],
                                                                          "systemctl show nomad": [0, "Id=x\n", ""]}}}
    result = run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", "--nodes=alibuild01", spec=spec)
    assert result.ret == 1
    recs = outcomes(summary(tmp_path))
    assert recs["agent.units.docker[alibuild01]"]["outcome"] == "error"
    assert "no answer to 'systemctl show docker'" in recs["agent.units.docker[alibuild01]"]["message"]
    assert recs["agent.units.nomad[alibuild01]"]["outcome"] == "error"
    assert recs["agent.build.free[alibuild01]"]["outcome"] == "error"
    assert recs["agent.cmdline.cgroup-v1[alibuild01]"]["outcome"] == "passed"


def test_expired_maintenance_is_a_warning_and_checks_run(write_inventory, run_suite, tmp_path):
    path = write_inventory(LAB_EXPECT.replace("until: 2099-12-31", "until: 2020-01-31"))
    result = run_suite(f"--inventory={path}")
    assert result.ret == 0
    assert "WARNING: maintenance entry for alibuild02 expired on 2020-01-31" in result.out
    data = summary(tmp_path)
    assert data["totals"]["waived"] == 0
    assert data["warnings"] == ["maintenance entry for alibuild02 expired on 2020-01-31 (disk swap INC0123): "
                                "ignored, its checks run"]


def test_junit_carries_check_properties(write_inventory, run_suite, tmp_path):
    junit = tmp_path / "junit.xml"
    run_suite(f"--inventory={write_inventory(LAB_EXPECT)}", f"--junitxml={junit}", "--nodes=alibuild01",
              spec={"alibuild01": {"ssh_error": "Connection reset by peer"}})
    xml = junit.read_text()
    assert 'name="agent.cmdline.cgroup-v1[alibuild01]"' in xml
    assert '<property name="check" value="agent.cmdline.cgroup-v1" />' in xml
    assert '<property name="node" value="alibuild01" />' in xml
    assert '<property name="runbook" value="Creating a agent" />' in xml
    assert '<property name="blocked_by" value="node.ssh" />' in xml


def test_xdist_controller_merges_workers(write_inventory, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"alibuild01": {"ssh_error": "Connection refused"}}))
    env = {**os.environ, "ACCEPTANCE_FAKE_SPEC": str(spec), "PYTHONPATH": str(ROOT)}
    inventory = write_inventory(LAB_EXPECT)
    base = [sys.executable, "-m", "pytest", "-p", "tests.unit.fakessh", "-p", "no:cacheprovider", "-q",
            f"--inventory={inventory}", str(ROOT / "checks")]
    collected = subprocess.run([*base, "--collect-only"], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=120, check=False)
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    proc = subprocess.run([*base, "-n", "2", f"--report-dir={tmp_path / 'out'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = summary(tmp_path)
    assert len(data["records"]) == len(ids) > 0
    on = {n: [i for i in ids if i.endswith(f"[{n}]")] for n in ("alibuild01", "alibuild02")}
    assert data["totals"]["failed"] == 1
    assert data["totals"]["blocked"] == len(on["alibuild01"]) - 2  # all but node.ping and node.ssh
    assert data["totals"]["waived"] == len(on["alibuild02"])
    assert len(list((tmp_path / "out").iterdir())) == 2  # <run id>/ and latest/
