"""Remediation against the lab, as an operator runs it (`pytest --inventory ... --remediate=...`): for every
action, the fault injected, the check ends `remediated`, a second plain run is green and the audit log holds the
decision; and each guardrail refuses what it must (blast radius, quorum gate, lock, kill switches, dry run,
budget, confirmation, a human's drain), a killed run's lock expires and its drained node is not forgotten.
Each test has its own cluster-wide state and stop keys in the lab's Consul (the lock is the real, shared one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..polling import wait_until
from . import faults, labapi
from .cluster import current
from .cluster import env as lab_env
from .observe import LAB_ERRORS, ssh
from .topology import REPO, STATE, stable_id

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]

LOCK_TTL_S = 20


_KEYS: dict[Path, str] = {}  # one test's keys (tmp names repeat across sessions, the lab's Consul remembers)


def inventory(tmp: Path, **remediation: Any) -> Path:
    """The lab's inventory with absolute paths and this test's remediation settings (short lock TTL and
    drain deadline, its own state file)."""
    inv = yaml.safe_load((STATE / "inventory.yaml").read_text())
    for key in ("config", "known_hosts", "identity"):
        inv["ssh"][key] = str(STATE / inv["ssh"][key])
    inv["apis"]["tls"] = {k: str(STATE / v) for k, v in inv["apis"]["tls"].items()}
    inv["apis"]["openstack"]["clouds_yaml"] = str(STATE / inv["apis"]["openstack"]["clouds_yaml"])
    keys = _KEYS.setdefault(tmp, f"alice-acceptance/lab-tests/{tmp.name}-{uuid.uuid4().hex[:8]}")
    inv["remediation"] = {"lock_ttl_s": LOCK_TTL_S, "drain_deadline_s": 30, "settle_timeout_s": 90,
                          "state_key": f"{keys}/state", "stop_key": f"{keys}/stop", **remediation}
    path = tmp / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    return path


def command(tmp: Path, inv: Path, *args: str, out: str = "out") -> list[str]:
    return [sys.executable, "-m", "pytest", f"--inventory={inv}", f"--report-dir={tmp / out}", "-p",
            "no:cacheprovider", "-q", "-n", "0", *args]


def run(tmp: Path, inv: Path, *args: str, out: str = "out", timeout: float = 900) -> dict[str, Any]:
    proc = subprocess.run(command(tmp, inv, *args, out=out), cwd=REPO, env=lab_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)
    path = tmp / out / "latest" / "summary.json"
    assert path.exists(), f"no summary.json; pytest said:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    summary = dict(json.loads(path.read_text()))
    summary["_stdout"] = proc.stdout
    return summary


STATE_SCRIPT = """
import json, sys
from acceptance.inventory import load_inventory
from remediation.clients import Api, write_config
from remediation.state import ClusterState
inv = load_inventory(sys.argv[1])
http = Api(write_config("consul", inv, [n for n in inv.nodes if n.role == "master"]))
print(json.dumps(ClusterState(http, inv.remediation.state_key).read()))
"""


def cluster_state(inv: Path) -> dict[str, Any]:
    """The remediation state the runs share, as the product reads it from the lab's Consul."""
    proc = subprocess.run([sys.executable, "-c", STATE_SCRIPT, str(inv)], cwd=REPO, env=lab_env(), capture_output=True,
                          text=True, timeout=60, check=True)
    return dict(json.loads(proc.stdout))


def cli(inv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alice_acceptance.cli", *args, f"--inventory={inv}"], cwd=REPO,
                          env=lab_env(), capture_output=True, text=True, timeout=120, check=False)


def record(summary: dict[str, Any], check: str, node: str) -> dict[str, Any]:
    return next(r for r in summary["records"] if r["check"] == check and r["node"] == node)


def audit(tmp: Path, out: str = "out") -> list[dict[str, Any]]:
    path = tmp / out / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def not_passed(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((r["check"], r["node"], r["outcome"]) for r in summary["records"]
                  if r["outcome"] not in ("passed", "waived"))


def healthy(tmp: Path, inv: Path) -> None:
    wait_until(lambda: not not_passed(run(tmp, inv, out="after")), timeout=180, interval=5,
               what="the lab to come back green", ignore=LAB_ERRORS)


NODE_CHECKS = ["checks/node.py", "checks/master.py", "checks/agent.py"]

ACTIONS = [  # (fault, node, check, mode, action)
    ("stop-unit:nomad", "alibuild01", "agent.units.nomad", "safe", "start_unit"),
    ("stop-unit:consul", "alimesos02", "master.units.consul", "safe", "start_unit"),  # lock and quorum gate
    ("remove-builder-image", "alimetal01", "agent.image.builder", "safe", "pull_builder_image"),
    ("stale-puppet", "alibuild02", "node.puppet.recent", "safe", "rerun_puppet"),
    ("stop-unit:dsmcad", "alimesos01", "master.backup.dsmcad", "safe", "restart_backup"),
    ("stale-backup", "alimesos03", "master.backup.recent", "safe", "restart_backup"),
    ("hang", "alibuild02", "node.ping", "all", "hard_reboot"),
]


@pytest.mark.parametrize("fault, node, check, mode, action", ACTIONS, ids=[f"{a[4]}<-{a[0]}" for a in ACTIONS])
def test_each_action_fixes_its_check(tmp_path: Path, fault: str, node: str, check: str, mode: str,
                                     action: str) -> None:
    inv = inventory(tmp_path)
    faults.inject(fault, node)
    try:
        if fault == "hang":  # the confirmation asks Nomad too: it must have seen the node go down
            nid = stable_id("nomad-node", node)
            wait_until(lambda: labapi.nomad("GET", current().masters[0].ip, f"/v1/node/{nid}")[1]
                       .get("Status") in ("down", "disconnected"), timeout=60, interval=1,
                       what="Nomad to see the hung node down", ignore=LAB_ERRORS)
        summary = run(tmp_path, inv, f"--remediate={mode}", f"--nodes={node}", *NODE_CHECKS)
    finally:
        faults.heal(fault, node)
    fixed = record(summary, check, node)
    assert fixed["outcome"] == "remediated", (fixed, summary["_stdout"][-3000:])
    assert fixed["first_message"] and fixed["remediation_detail"]["action"] == action
    decisions = [e for e in audit(tmp_path) if e["check"] == check and e["node"] == node]
    assert decisions and decisions[-1]["verdict"] == "taken" and decisions[-1]["action"] == action
    assert (tmp_path / "out" / summary["run_id"] / "audit.jsonl").exists()
    healthy(tmp_path, inv)


def test_backups_after_failures_hold_what_the_master_holds(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    listing = "find . -type f -printf '%s %p\\n' | sort"

    def same_content() -> bool:
        master = ssh("alimesos02", f"cd /build/consul && {listing}").stdout
        store = ssh("alimesos02", f"cd /var/lib/tsm-lab/data/build/consul && {listing}").stdout
        return bool(master) and master == store

    faults.inject("fail-backup", "alimesos02")
    ssh("alimesos02", "echo lab > /build/consul/lab-file-$(date +%s)")  # written while backups fail
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--nodes=alimesos02", "checks/master.py")
        stuck = record(summary, "master.backup.success", "alimesos02")
        assert stuck["outcome"] == "failed" and "needs a human" in stuck["message"]
        assert "registration" in stuck["message"]
        assert any(e["verdict"] == "escalated" for e in audit(tmp_path))
    finally:
        faults.heal("fail-backup", "alimesos02")
    wait_until(same_content, timeout=60, interval=2, what="the store to hold every file after the renewal",
               ignore=LAB_ERRORS)
    faults.inject("stale-backup", "alimesos02")
    ssh("alimesos02", "echo lab > /build/consul/lab-file-stale-$(date +%s)")
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--nodes=alimesos02", "checks/master.py", out="again")
    finally:
        faults.heal("stale-backup", "alimesos02")
    assert record(summary, "master.backup.recent", "alimesos02")["outcome"] == "remediated"
    assert same_content(), "the remediated backup does not hold what the master holds"


def test_puppet_that_keeps_failing_is_rerun_three_times_then_needs_a_human(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    faults.inject("break-puppet", "alimesos03")
    try:
        before = int(ssh("alimesos03", "wc -l < /var/log/puppetlabs/agent-runs.log").stdout)
        summary = run(tmp_path, inv, "--remediate=safe", "--nodes=alimesos03", "-k", "puppet", "checks/node.py")
        after = int(ssh("alimesos03", "wc -l < /var/log/puppetlabs/agent-runs.log").stdout)
    finally:
        faults.heal("break-puppet", "alimesos03")
    clean = record(summary, "node.puppet.clean", "alimesos03")
    assert clean["outcome"] == "failed" and "needs a human" in clean["message"]
    assert after - before == 3, f"{after - before} puppet runs"
    assert [e["verdict"] for e in audit(tmp_path) if e["check"] == "node.puppet.clean"] == ["started", "escalated"]


def test_reboot_for_kernel_arguments_drains_the_agent_first(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    node_id = stable_id("nomad-node", "alibuild01")
    m = current().masters[0].ip
    faults.inject("stale-cmdline", "alibuild01")
    try:
        summary = run(tmp_path, inv, "--remediate=all", "--nodes=alibuild01", *NODE_CHECKS, "checks/cluster_nomad.py")
    finally:
        faults.heal("stale-cmdline", "alibuild01")
    fixed = record(summary, "agent.cmdline.cgroup-v1", "alibuild01")
    assert fixed["outcome"] == "remediated", summary["_stdout"][-3000:]
    _, node = labapi.nomad("GET", m, f"/v1/node/{node_id}")
    assert node["LastDrain"] and node["LastDrain"]["Meta"].get("drained_by") == "alice-acceptance"
    assert node["LastDrain"]["Meta"].get("check") == "agent.cmdline.cgroup-v1"
    assert node["SchedulingEligibility"] == "eligible"  # re-enabled once the node's checks passed
    said = summary["_stdout"]
    assert said.index("draining in Nomad") < said.index("rebooted through OpenStack") < said.index("re-enabled")
    healthy(tmp_path, inv)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    cases = [("stop-unit:nomad", "alibuild01"), ("remove-builder-image", "alibuild02"),
             ("stale-cmdline", "alimetal01")]

    def state() -> dict[str, str]:
        out = {}
        for node in ("alibuild01", "alibuild02", "alimetal01"):
            out[node] = ssh(node, "systemctl is-active nomad docker; docker images -q | sort; cat /proc/cmdline; "
                                  "wc -l < /var/log/puppetlabs/agent-runs.log; "
                                  "cut -d' ' -f22 /proc/1/stat").stdout
        _, nodes = labapi.nomad("GET", current().masters[0].ip, "/v1/nodes")
        out["nomad"] = json.dumps(sorted((n["Name"], n["SchedulingEligibility"], n["Drain"]) for n in nodes))
        return out

    for fault, node in cases:
        faults.inject(fault, node)
    try:
        before = state()
        summary = run(tmp_path, inv, "--remediate=dry-run", "--role=agent", *NODE_CHECKS)
        after = state()
    finally:
        for fault, node in cases:
            faults.heal(fault, node)
    assert before == after
    planned = audit(tmp_path)
    assert {e["verdict"] for e in planned} <= {"planned", "refused"} and len(planned) >= 3
    # the same gates as a real run, read-only: the reboot would need --remediate=all
    assert any(e["verdict"] == "planned" for e in planned)
    assert any(e["guardrail"] == "mode" and e["reason"].startswith("would ") for e in planned)
    assert all(r["outcome"] != "remediated" for r in summary["records"])


def test_every_agent_failing_one_check_is_a_systemic_fault(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    agents = ("alibuild01", "alibuild02", "alimetal01")
    for node in agents:
        faults.inject("remove-builder-image", node)
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--role=agent", "-k", "image", "checks/agent.py")
    finally:
        for node in agents:
            faults.heal("remove-builder-image", node)
    assert [r["outcome"] for r in summary["records"] if r["node"] in agents] == ["failed"] * 3
    refused = audit(tmp_path)
    assert len(refused) == 3 and all(e["guardrail"] == "circuit-breaker" for e in refused)
    assert "systemic" in refused[0]["reason"] and not any(e["verdict"] == "started" for e in refused)


def test_kill_switch_refuses_everything(tmp_path: Path) -> None:
    switch = tmp_path / "STOP"
    switch.write_text("maintenance window\n")
    inv = inventory(tmp_path, kill_switch_file=str(switch))
    faults.inject("remove-builder-image", "alimetal01")
    try:
        summary = run(tmp_path, inv, "--remediate=all", "--nodes=alimetal01", "checks/agent.py")
    finally:
        faults.heal("remove-builder-image", "alimetal01")
    assert record(summary, "agent.image.builder", "alimetal01")["outcome"] == "failed"
    assert [e["guardrail"] for e in audit(tmp_path)] == ["kill-switch"]


def test_quorum_gate_refuses_to_start_a_masters_consul_while_another_master_is_unhealthy(tmp_path: Path) -> None:
    inv = inventory(tmp_path, max_unhealthy_masters=2)  # past the blast radius, the quorum gate decides
    faults.inject("stop-unit:nomad", "alimesos03")  # Consul keeps its quorum (the lock), Nomad's is at risk
    faults.inject("stop-unit:consul", "alimesos02")
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--nodes=alimesos02", "-k", "units", "checks/node.py")
        still = ssh("alimesos02", "systemctl is-active consul").stdout.strip()
    finally:
        faults.heal("stop-unit:consul", "alimesos02")
        faults.heal("stop-unit:nomad", "alimesos03")
    assert record(summary, "master.units.consul", "alimesos02")["outcome"] == "failed"
    gate = [e for e in audit(tmp_path) if e["node"] == "alimesos02"]
    assert gate and gate[-1]["guardrail"] == "quorum" and "alimesos03" in gate[-1]["reason"], gate
    assert still != "active"
    healthy(tmp_path, inv)


def test_failures_on_two_of_three_masters_lead_to_no_action_and_an_escalation(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    masters = ("alimesos01", "alimesos02")
    for node in masters:
        faults.inject("stop-unit:dsmcad", node)
    try:
        proc = subprocess.run(command(tmp_path, inv, "--remediate=all", "--role=master", "-k", "dsmcad",
                                      "checks/master.py"), cwd=REPO, env=lab_env(), capture_output=True, text=True,
                              timeout=600, check=False)
        still = [ssh(n, "systemctl is-active dsmcad").stdout.strip() for n in masters]
    finally:
        for node in masters:
            faults.heal("stop-unit:dsmcad", node)
    assert proc.returncode == 6, proc.stdout[-3000:]  # needs a human, not a plain failure
    decided = [e for e in audit(tmp_path) if e["node"] in masters]
    assert decided and {e["verdict"] for e in decided} == {"escalated"}
    assert {e["guardrail"] for e in decided} == {"blast-radius"} and "2 masters" in decided[0]["reason"]
    assert still == ["inactive", "inactive"], "a master's dsmcad was started past the blast radius"


def _holder(inv: Path) -> str:
    return subprocess.run([sys.executable, "-m", "remediation.lock", "status", f"--inventory={inv}"], cwd=REPO,
                          env=lab_env(), capture_output=True, text=True, timeout=60, check=False).stdout


# Another runner (an operator's shell, say) holding the cluster-wide lock, until the test closes its stdin.
HOLD_LOCK = """
import sys
from acceptance.inventory import load_inventory
from remediation.clients import Api, write_config
from remediation.lock import ConsulLock
inv = load_inventory(sys.argv[1])
http = Api(write_config("consul", inv, [n for n in inv.nodes if n.role == "master"]))
lock = ConsulLock(http, inv.remediation.lock_key, inv.remediation.lock_ttl_s, "operator-shell")
print(lock.acquire() or "held", flush=True)
sys.stdin.read()
lock.release()
"""


def test_two_runs_at_once_one_holds_the_lock(tmp_path: Path) -> None:
    """While another runner holds the lock, a run refuses its disruptive action and says who holds it; once
    the lock is released, the same run takes it and acts. (The holder is held by the test, not raced against
    another run's remediation, which may end before the second run gets to its own.)"""
    inv = inventory(tmp_path)
    faults.inject("stale-cmdline", "alimetal01")
    try:
        other = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(inv)], cwd=REPO, env=lab_env(),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline().strip() == "held", "could not take the lock"
            assert "held by run operator-shell" in _holder(inv)
            second = run(tmp_path, inv, "--remediate=all", "--nodes=alimetal01", "checks/agent.py", out="second")
        finally:
            other.communicate(timeout=60)  # closing its stdin releases the lock
        assert "free" in _holder(inv)
        first = run(tmp_path, inv, "--remediate=all", "--nodes=alimetal01", "checks/agent.py", out="first")
    finally:
        faults.heal("stale-cmdline", "alimetal01")
    refusals = [e for e in audit(tmp_path, "second") if e["guardrail"] == "lock"]
    assert refusals and "held by run operator-shell" in refusals[0]["reason"]
    assert record(second, "agent.cmdline.cgroup-v1", "alimetal01")["outcome"] == "failed"
    taken = [e for e in audit(tmp_path, "first") if e["verdict"] == "taken"]
    assert taken, "the run did not act once the lock was free"
    assert record(first, "agent.cmdline.cgroup-v1", "alimetal01")["outcome"] == "remediated"


def test_killed_run_lock_expires_and_the_drained_node_is_not_forgotten(tmp_path: Path) -> None:
    inv = inventory(tmp_path, drain_deadline_s=600)  # the allocations would move only at the deadline
    faults.inject("stale-cmdline", "alibuild02")
    try:
        victim = subprocess.Popen(command(tmp_path, inv, "--remediate=all", "--nodes=alibuild02", "checks/agent.py",
                                          out="killed"), cwd=REPO, env=lab_env(), stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        wait_until(lambda: "alibuild02" in cluster_state(inv)["drained"], timeout=180, interval=1,
                   what="the run to drain the node", ignore=LAB_ERRORS)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        killed_at = time.monotonic()
        assert "held by" in _holder(inv)
        wait_until(lambda: "free" in _holder(inv), timeout=LOCK_TTL_S + 30, interval=1,
                   what="the lock to be free after its TTL", ignore=LAB_ERRORS)
        assert time.monotonic() - killed_at <= LOCK_TTL_S + 15
        summary = run(tmp_path, inventory(tmp_path, drain_deadline_s=20), "--remediate=all", "--nodes=alibuild02",
                      "checks/agent.py", "checks/cluster_nomad.py", out="next")
    finally:
        faults.heal("stale-cmdline", "alibuild02")
    # the killed run may have rebooted the agent before the kill (no allocation had to move): the next run then
    # finds the argument applied; either way it must re-enable the node the killed run left drained
    assert record(summary, "agent.cmdline.cgroup-v1", "alibuild02")["outcome"] in ("remediated", "passed")
    assert "alibuild02" not in cluster_state(inv)["drained"]
    reenabled = [e for e in audit(tmp_path, "next") if e["action"] == "reenable_node"]
    assert reenabled and reenabled[-1]["verdict"] == "taken"
    healthy(tmp_path, inv)


def test_a_humans_drain_and_ineligibility_survive_safe_remediation(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    m = current().masters[0].ip
    drained, ineligible = stable_id("nomad-node", "alibuild01"), stable_id("nomad-node", "alibuild02")
    faults.inject("unexpected-drain", "alibuild01")  # a human's drain, with their own Meta
    labapi.nomad("POST", m, f"/v1/node/{ineligible}/eligibility", {"Eligibility": "ineligible"})
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--role=agent", *NODE_CHECKS, "checks/cluster_nomad.py")
        _, one = labapi.nomad("GET", m, f"/v1/node/{drained}")
        _, two = labapi.nomad("GET", m, f"/v1/node/{ineligible}")
    finally:
        faults.heal("unexpected-drain", "alibuild01")
        labapi.nomad("POST", m, f"/v1/node/{ineligible}/eligibility", {"Eligibility": "eligible"})
    assert one["SchedulingEligibility"] == "ineligible" and one["LastDrain"]["Meta"] == {"message": "lab fault"}
    assert two["SchedulingEligibility"] == "ineligible"
    for node in ("alibuild01", "alibuild02"):
        assert record(summary, "agent.nomad.ready", node)["outcome"] == "failed"
        decided = [e for e in audit(tmp_path) if e["node"] == node and e["check"] == "agent.nomad.ready"]
        assert decided and decided[-1]["verdict"] in ("escalated", "refused"), decided
        assert not any(e["verdict"] in ("started", "taken") for e in decided)


def test_alice_acceptance_stop_stops_a_second_runner(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    stopped = cli(inv, "stop", "--reason", "lab test: hands off")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    faults.inject("remove-builder-image", "alimetal01")
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--nodes=alimetal01", "-k", "image", "checks/agent.py")
        assert record(summary, "agent.image.builder", "alimetal01")["outcome"] == "failed"
        refused = audit(tmp_path)
        assert [e["guardrail"] for e in refused] == ["kill-switch"]
        assert "hands off" in refused[0]["reason"]
        assert cli(inv, "resume").returncode == 0
        again = run(tmp_path, inv, "--remediate=safe", "--nodes=alimetal01", "-k", "image", "checks/agent.py",
                    out="resumed")
    finally:
        cli(inv, "resume")
        faults.heal("remove-builder-image", "alimetal01")
    assert record(again, "agent.image.builder", "alimetal01")["outcome"] == "remediated"


def test_a_masters_consul_running_but_disabled_is_enabled_never_restarted(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    pid = ssh("alimesos02", "systemctl show -p MainPID --value consul").stdout.strip()
    ssh("alimesos02", "systemctl disable consul")
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--nodes=alimesos02", "-k", "units", "checks/node.py")
    finally:
        ssh("alimesos02", "systemctl enable consul")
    fixed = record(summary, "master.units.consul", "alimesos02")
    assert fixed["outcome"] == "remediated", summary["_stdout"][-3000:]
    assert fixed["remediation_detail"]["action"] == "enable_unit"
    assert ssh("alimesos02", "systemctl show -p MainPID --value consul").stdout.strip() == pid
    assert ssh("alimesos02", "systemctl is-enabled consul").stdout.strip() == "enabled"
    lines = [e["verdict"] for e in audit(tmp_path) if e["check"] == "master.units.consul"]
    assert lines == ["started", "taken"]
    assert all(e["user"] and e["host"] and e["mode"] == "safe" for e in audit(tmp_path))


SLOW_CHECK = """
import pathlib, time
from acceptance.checkspec import check

@check("site.slow", runbook="x", roles=["agent"], needs=())
def test_slow(node):
    pathlib.Path({marker!r}).write_text("running")
    time.sleep(120)
"""


def test_sigterm_during_the_checks_means_no_remediation(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "slow-check-started"
    (site / "slow.py").write_text(SLOW_CHECK.format(marker=str(marker)))
    faults.inject("remove-builder-image", "alimetal01")
    try:
        proc = subprocess.Popen(command(tmp_path, inv, "--remediate=safe", "--nodes=alimetal01", "-k",
                                        "image or slow", "checks/agent.py", f"--checks-dir={site}"),
                                cwd=REPO, env=lab_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(marker.exists, timeout=120, interval=0.5, what="the slow check to start", ignore=LAB_ERRORS)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        image = ssh("alimetal01", "docker images -q registry.cern.ch/alisw/slc9-builder").stdout.strip()
    finally:
        faults.heal("remove-builder-image", "alimetal01")
    assert proc.returncode == 2, out[-3000:]
    summary = json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())
    assert record(summary, "agent.image.builder", "alimetal01")["outcome"] == "failed"
    assert not image, "the image was pulled by an interrupted run"
    decided = audit(tmp_path)
    assert decided and {e["guardrail"] for e in decided} == {"interrupted"}
    assert not any(e["verdict"] in ("started", "taken") for e in decided)


BOOTED = "cut -d' ' -f22 /proc/1/stat"  # when the node's PID 1 started: a reboot changes it
# ICMP only (a policy-routing rule by protocol): the node's echo replies go to a blackhole, ssh still works
DROP_ICMP = "ip rule add ipproto icmp lookup 100 priority 100 && ip route add blackhole default table 100"
UNDROP_ICMP = "ip rule del priority 100; ip route flush table 100"


def test_a_single_lost_ping_does_not_reboot(tmp_path: Path) -> None:
    """The node's echo replies are lost for a while (the check fails), but it answers ssh and Nomad sees it
    ready: the confirmation refuses the hard reboot."""
    inv = inventory(tmp_path)
    booted = ssh("alibuild01", BOOTED).stdout.strip()
    ssh("alibuild01", DROP_ICMP)
    try:
        summary = run(tmp_path, inv, "--remediate=all", "--nodes=alibuild01", "-k", "ping", "checks/node.py")
    finally:
        ssh("alibuild01", UNDROP_ICMP)
    assert record(summary, "node.ping", "alibuild01")["outcome"] == "failed", summary["_stdout"][-3000:]
    decided = [e for e in audit(tmp_path) if e["node"] == "alibuild01"]
    assert decided and decided[-1]["guardrail"] == "unconfirmed", decided
    assert not any(e["verdict"] in ("started", "taken") for e in decided)
    assert ssh("alibuild01", BOOTED).stdout.strip() == booted
