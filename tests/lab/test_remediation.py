"""Remediation against the lab, as an operator runs it (`pytest --inventory ... --remediate=...`): for every
action, the fault injected, the check ends `remediated`, a second plain run is green and the audit log holds the
decision; and each guardrail refuses what it must (circuit breaker, quorum gate, lock, kill switch, dry run,
budget), a killed run's lock expires and its drained node is not forgotten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import faults, labapi
from .cluster import current
from .cluster import env as lab_env
from .observe import eventually, ssh
from .topology import REPO, STATE, stable_id

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]

LOCK_TTL_S = 20


def inventory(tmp: Path, **remediation: Any) -> Path:
    """The lab's inventory with absolute paths and this test's remediation settings (short lock TTL and
    drain deadline, its own state file)."""
    inv = yaml.safe_load((STATE / "inventory.yaml").read_text())
    for key in ("config", "known_hosts", "identity"):
        inv["ssh"][key] = str(STATE / inv["ssh"][key])
    inv["apis"]["tls"] = {k: str(STATE / v) for k, v in inv["apis"]["tls"].items()}
    inv["apis"]["openstack"]["clouds_yaml"] = str(STATE / inv["apis"]["openstack"]["clouds_yaml"])
    inv["remediation"] = {"lock_ttl_s": LOCK_TTL_S, "drain_deadline_s": 30, "settle_timeout_s": 90,
                          "state_file": str(tmp / "remediation-state.json"), **remediation}
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


def record(summary: dict[str, Any], check: str, node: str) -> dict[str, Any]:
    return next(r for r in summary["records"] if r["check"] == check and r["node"] == node)


def audit(tmp: Path, out: str = "out") -> list[dict[str, Any]]:
    path = tmp / out / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def not_passed(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((r["check"], r["node"], r["outcome"]) for r in summary["records"]
                  if r["outcome"] not in ("passed", "waived"))


def healthy(tmp: Path, inv: Path) -> None:
    assert eventually(lambda: not not_passed(run(tmp, inv, out="after")), 180, 5), "the lab did not come back green"


NODE_CHECKS = ["checks/node.py", "checks/master.py", "checks/agent.py"]

ACTIONS = [  # (fault, node, check, mode, action)
    ("stop-unit:nomad", "alibuild01", "agent.units.nomad", "safe", "restart_unit"),
    ("stop-unit:consul", "alimesos02", "master.units.consul", "safe", "restart_unit"),
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
    assert eventually(same_content, 60, 2), "after the registration was renewed the store lacks files"
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
    assert [e["verdict"] for e in audit(tmp_path) if e["check"] == "node.puppet.clean"] == ["escalated"]


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
    assert node["LastDrain"] and node["LastDrain"]["Meta"].get("message") == "alice-acceptance remediation"
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
    assert {e["verdict"] for e in planned} == {"planned"} and len(planned) >= 3
    assert all(r["outcome"] != "remediated" for r in summary["records"])


def test_circuit_breaker_stops_a_systemic_fault(tmp_path: Path) -> None:
    inv = inventory(tmp_path, max_failing_agents=1)  # the lab has 3 agents: 2 failing is "more than 1"
    for node in ("alibuild01", "alibuild02"):
        faults.inject("remove-builder-image", node)
    try:
        summary = run(tmp_path, inv, "--remediate=safe", "--role=agent", "-k", "image", "checks/agent.py")
    finally:
        for node in ("alibuild01", "alibuild02"):
            faults.heal("remove-builder-image", node)
    assert [r["outcome"] for r in summary["records"] if r["node"] in ("alibuild01", "alibuild02")] == ["failed"] * 2
    refused = audit(tmp_path)
    assert len(refused) == 2 and all(e["guardrail"] == "circuit-breaker" for e in refused)
    assert "systemic" in refused[0]["reason"]


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


def test_quorum_gate_refuses_to_disrupt_a_master_while_another_is_down(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    faults.inject("stop-unit:nomad", "alimesos03")  # Consul keeps its quorum (the lock), Nomad's is at risk
    faults.inject("hang", "alimesos01")
    try:
        summary = run(tmp_path, inv, "--remediate=all", "--nodes=alimesos01", "-k", "ping", "checks/node.py")
    finally:
        faults.heal("stop-unit:nomad", "alimesos03")
        faults.heal("hang", "alimesos01")
    assert record(summary, "node.ping", "alimesos01")["outcome"] == "failed"
    gate = [e for e in audit(tmp_path) if e["node"] == "alimesos01"]
    assert gate and gate[-1]["guardrail"] == "quorum" and "nomad" in gate[-1]["reason"].lower()
    healthy(tmp_path, inv)


def _holder(inv: Path) -> str:
    return subprocess.run([sys.executable, "-m", "remediation.lock", "status", f"--inventory={inv}"], cwd=REPO,
                          env=lab_env(), capture_output=True, text=True, timeout=60, check=False).stdout


# Another runner (an operator's shell, say) holding the cluster-wide lock, until the test closes its stdin.
HOLD_LOCK = """
import sys
from acceptance.inventory import load_inventory
from remediation.clients import Http, write_config
from remediation.lock import ConsulLock
inv = load_inventory(sys.argv[1])
http = Http(write_config("consul", inv, [n for n in inv.nodes if n.role == "master"]))
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
        state = tmp_path / "remediation-state.json"
        assert eventually(lambda: state.exists() and "alibuild02" in json.loads(state.read_text())["drained"], 180,
                          1), "the run never drained the node"
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(30)
        killed_at = time.monotonic()
        assert "held by" in _holder(inv)
        assert eventually(lambda: "free" in _holder(inv), LOCK_TTL_S + 30, 1), "the lock outlived its TTL"
        assert time.monotonic() - killed_at <= LOCK_TTL_S + 15
        summary = run(tmp_path, inventory(tmp_path, drain_deadline_s=20), "--remediate=all", "--nodes=alibuild02",
                      "checks/agent.py", "checks/cluster_nomad.py", out="next")
    finally:
        faults.heal("stale-cmdline", "alibuild02")
    # the killed run may have rebooted the agent before the kill (no allocation had to move): the next run then
    # finds the argument applied; either way it must re-enable the node the killed run left drained
    assert record(summary, "agent.cmdline.cgroup-v1", "alibuild02")["outcome"] in ("remediated", "passed")
    assert "alibuild02" not in json.loads((tmp_path / "remediation-state.json").read_text())["drained"]
    reenabled = [e for e in audit(tmp_path, "next") if e["action"] == "reenable_node"]
    assert reenabled and reenabled[-1]["verdict"] == "taken"
    healthy(tmp_path, inv)
