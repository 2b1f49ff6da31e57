"""The three moments against the lab, through the `alice-acceptance` command as operators run it:
post-provisioning convergence after a rebuild through OpenStack, the pre-rebuild gate (every reason to say no,
and a go), and the nightly report whose metrics reach MONIT through the lab's node exporter and Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ..polling import wait_until
from . import faults, labapi
from .cluster import current
from .cluster import env as lab_env
from .observe import LAB_ERRORS, ssh
from .test_remediation import inventory
from .topology import MONIT_IP, REPO, STATE, stable_id

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]


def cli(tmp: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alice_acceptance.cli", *args], cwd=tmp, env=lab_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def summary(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "latest" / "summary.json").read_text()))


def leaders() -> dict[str, str]:
    """Which master leads Nomad and Consul and holds the active Vault (by name)."""
    topo = current()
    by_ip = {m.ip: m.name for m in topo.masters}
    m = topo.masters[0].ip
    out = {}
    for service in ("nomad", "consul"):
        _, leader = getattr(labapi, service)("GET", m, "/v1/status/leader")
        out[service] = by_ip.get(str(leader).rsplit(":", 1)[0], "")
    for master in topo.masters:
        status, _ = labapi.vault("GET", master.ip, "/v1/sys/health")
        if status == 200:
            out["vault"] = master.name
    return out


def test_provisioning_converges_a_rebuilt_agent(tmp_path: Path) -> None:
    node = current().get("alibuild02")
    status, _ = labapi.nova("POST", node.project, f"/servers/{node.server_id}/action",
                            {"rebuild": {"imageRef": "alma9"}})
    assert status == 202
    wait_until(lambda: ssh("alibuild02", "true").returncode == 0, timeout=240, interval=3,
               what="the rebuilt node to come up", ignore=LAB_ERRORS)
    clean = ssh("alibuild02", "test -e /opt/puppetlabs/puppet/public/last_run_summary.yaml; echo summary=$?; "
                              "docker images -q | wc -l; grep -c cgroup_hierarchy /proc/cmdline").stdout.split()
    assert clean == ["summary=1", "0", "0"], f"not clean after the rebuild: {clean}"
    inv = inventory(tmp_path)
    done = cli(tmp_path, "provision", "alibuild02", f"--inventory={inv}", f"--report-dir={tmp_path / 'out'}",
               "--remediate=all", "--timeout=900", "--interval=5", str(REPO / "checks" / "node.py"),
               str(REPO / "checks" / "agent.py"), "-p", "no:cacheprovider")
    said = done.stdout
    assert done.returncode == 0, said[-4000:] + done.stderr[-2000:]
    assert "converged after" in said
    for action in ("rerun_puppet", "pull_builder_image", "reboot_for_cmdline"):
        assert f"remediation taken: {action}" in said, action
    assert "alibuild02: waiting for" in said
    result = summary(tmp_path / "out")
    assert result["moment"] == "provision" and result["exit_status"] == 0
    assert {r["outcome"] for r in result["records"]} <= {"passed", "remediated"}


def test_gate_says_go_for_a_master_that_leads_nothing(tmp_path: Path) -> None:
    held = set(leaders().values())
    free = next(m.name for m in current().masters if m.name not in held)
    done = cli(tmp_path, "gate", f"rebuild:{free}", f"--inventory={inventory(tmp_path)}",
               f"--report-dir={tmp_path / 'out'}", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"GO: rebuild {free}" in done.stdout
    assert summary(tmp_path / "out")["moment"] == "gate"


def test_gate_says_no_for_the_leader_then_prepare_moves_it(tmp_path: Path) -> None:
    leader = leaders()["consul"]
    inv = inventory(tmp_path)
    done = cli(tmp_path, "gate", f"reboot:{leader}", f"--inventory={inv}", f"--report-dir={tmp_path / 'a'}",
               "-p", "no:cacheprovider")
    assert done.returncode == 1 and f"NO-GO: reboot {leader}" in done.stdout
    assert f"gate.consul.leader[{leader}] failed" in done.stdout
    prepared = cli(tmp_path, "gate", f"reboot:{leader}", "--prepare", f"--inventory={inv}",
                   f"--report-dir={tmp_path / 'b'}", "-p", "no:cacheprovider")
    try:
        assert prepared.returncode == 0, prepared.stdout[-3000:]
        assert f"Consul leadership moved from {leader}" in prepared.stdout
        assert "held for the human" in prepared.stdout
        assert leaders()["consul"] != leader
    finally:  # the human is done: the hold on the remediation lock ends
        released = cli(tmp_path, "release", f"--inventory={inv}")
    assert released.returncode == 0, released.stdout + released.stderr


def test_gate_says_no_while_another_master_is_down(tmp_path: Path) -> None:
    faults.inject("stop-unit:consul", "alimesos03")
    try:
        def noticed() -> bool:  # serf needs a few seconds to call the server failed
            _, health = labapi.consul("GET", current().masters[0].ip, "/v1/operator/autopilot/health")
            return any(s["Name"] == "alimesos03" and not s["Healthy"] for s in health["Servers"])

        wait_until(noticed, timeout=60, interval=2, what="Consul to notice its server on alimesos03 stopped",
                   ignore=LAB_ERRORS)
        done = cli(tmp_path, "gate", "rebuild:alimesos02", f"--inventory={inventory(tmp_path)}",
                   f"--report-dir={tmp_path / 'out'}", "-p", "no:cacheprovider")
    finally:
        faults.heal("stop-unit:consul", "alimesos03")
    assert done.returncode == 1
    reasons = {(r["check"], r["node"]) for r in summary(tmp_path / "out")["records"] if r["outcome"] != "passed"}
    assert ("master.units.consul", "alimesos03") in reasons and ("gate.consul.quorum", "alimesos02") in reasons


def test_gate_for_an_agent_running_builds(tmp_path: Path) -> None:
    m = current().masters[0].ip
    _, allocs = labapi.nomad("GET", m, "/v1/allocations")
    busy = next(a["NodeName"] for a in allocs if a["ClientStatus"] == "running" and a["JobID"].startswith("ci-"))
    jobs = sorted({a["JobID"] for a in allocs if a["NodeName"] == busy and a["ClientStatus"] == "running"})
    inv = inventory(tmp_path)
    no = cli(tmp_path, "gate", f"rebuild:{busy}", f"--inventory={inv}", f"--report-dir={tmp_path / 'no'}",
             "-p", "no:cacheprovider")
    assert no.returncode == 1 and f"gate.agent.allocations[{busy}] failed" in no.stdout
    allowed = cli(tmp_path, "gate", f"rebuild:{busy}", f"--allow-allocations={','.join(jobs)}",
                  f"--inventory={inv}", f"--report-dir={tmp_path / 'allowed'}", "-p", "no:cacheprovider")
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    node_id = stable_id("nomad-node", busy)
    try:
        prepared = cli(tmp_path, "gate", f"rebuild:{busy}", "--prepare", f"--inventory={inv}",
                       f"--report-dir={tmp_path / 'prepared'}", "-p", "no:cacheprovider")
        assert prepared.returncode == 0, prepared.stdout[-3000:]
        assert "drained: no allocation runs" in prepared.stdout
    finally:
        cli(tmp_path, "release", f"--inventory={inv}")
        labapi.nomad("POST", m, f"/v1/node/{node_id}/drain", {"DrainSpec": None, "MarkEligible": True})
        labapi.nomad("POST", m, f"/v1/node/{node_id}/eligibility", {"Eligibility": "eligible"})


@pytest.mark.parametrize("value", ["explode:alimesos02", "rebuild:nosuchnode", "rebuild:"])
def test_gate_usage_errors(tmp_path: Path, value: str) -> None:
    done = cli(tmp_path, "gate", value, f"--inventory={inventory(tmp_path)}", "-p", "no:cacheprovider")
    assert done.returncode == 4 and "--gate" in done.stderr and "fix:" in done.stderr


def test_nightly_report_and_its_metrics_reach_monit(tmp_path: Path) -> None:
    textfile = tmp_path / "alice-acceptance.prom"
    done = cli(tmp_path, "nightly", f"--inventory={inventory(tmp_path)}", f"--report-dir={tmp_path / 'out'}",
               f"--metrics-textfile={textfile}", "-p", "no:cacheprovider")
    assert done.returncode == 0, done.stdout[-3000:]
    out = tmp_path / "out"
    result = summary(out)
    run_dir = out / result["run_id"]
    for name in ("summary.json", "report.html", "metrics.prom"):
        assert (run_dir / name).exists() and (out / "latest" / name).exists(), name
    assert (out / "latest" / "junit.xml").exists()
    assert f"report: {run_dir / 'report.html'}" in done.stdout
    assert result["moment"] == "nightly" and result["healthy"] is True
    # as a cron job on a master would: the file into node exporter's textfile directory
    copied = subprocess.run(["scp", "-F", str(STATE / "ssh_config"),
                             str(textfile), "alimesos01:/var/lib/prometheus/node-exporter/alice-acceptance.prom"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert copied.returncode == 0, copied.stderr

    def in_monit() -> bool:
        status, body = labapi.http("GET", f"http://{MONIT_IP}:9090/api/v1/query?query="
                                          "acceptance_check_status%7Bcheck%3D%22node.ssh%22%7D")
        return status == 200 and len(body["data"]["result"]) >= 6

    wait_until(in_monit, timeout=120, interval=5, what="the verdicts to reach the MONIT stand-in", ignore=LAB_ERRORS)
    ssh("alimesos01", "rm -f /var/lib/prometheus/node-exporter/alice-acceptance.prom")
