"""The suite's node checks against the lab: all pass on a healthy lab; each lab fault makes exactly
its check fail on exactly its node (the node's other checks blocked when it is unreachable), and after
the heal everything passes again. The suite runs as an operator runs it: `pytest checks --inventory`."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..polling import wait_until
from . import faults
from .cluster import env as lab_env
from .observe import LAB_ERRORS, ssh
from .topology import REPO, STATE

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]

NODE_CHECKS = ["checks/node.py", "checks/master.py", "checks/agent.py"]


def run_suite(
    report_dir: Path, inventory: Path = STATE / "inventory.yaml", modules: list[str] = NODE_CHECKS
) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *modules,
            f"--inventory={inventory}",
            f"--report-dir={report_dir}",
            "-p",
            "no:cacheprovider",
            "-q",
            "-n",
            "0",  # at the lab's size one process is faster than xdist's start-up
        ],
        cwd=REPO,
        env=lab_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    path = report_dir / "latest" / "summary.json"
    assert path.exists(), f"no summary.json; pytest said:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return dict(json.loads(path.read_text()))


def not_passed(summary: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["check"], r["node"]): r for r in summary["records"] if r["outcome"] != "passed"}


@dataclass
class Case:
    fault: str
    node: str
    check: str
    blocks_node: bool = False  # the node is unreachable: every other check on it is blocked by `check`
    reboot: bool = False  # the fault takes effect at the next boot
    also: tuple[tuple[str, str], ...] = ()  # (check, outcome) that follow from the fault on the same node

    @property
    def id(self) -> str:
        return f"{self.check}<-{self.fault}[{self.node}]"


CASES = [
    Case("partition", "alibuild02", "node.ping", blocks_node=True),
    Case("stop-unit:ssh", "alimesos03", "node.ssh", blocks_node=True),
    Case("stop-unit:docker", "alimesos01", "master.units.docker"),
    Case("stop-unit:nomad", "alimesos02", "master.units.nomad"),
    Case("stop-unit:consul", "alimesos03", "master.units.consul"),
    Case("stop-unit:vault", "alimesos01", "master.units.vault"),
    Case("stop-unit:nomad", "alimetal01", "agent.units.nomad"),
    Case("stop-unit:docker", "alibuild02", "agent.units.docker", also=(("agent.image.builder", "error"),)),
    Case("break-puppet", "alimesos02", "node.puppet.clean"),
    Case("stale-puppet", "alibuild01", "node.puppet.recent"),
    Case("drop-cgroup-arg", "alibuild01", "agent.cmdline.cgroup-v1", reboot=True),
    Case("remove-builder-image", "alimetal01", "agent.image.builder"),
    Case("unmount-build", "alibuild02", "agent.build.mounted"),
    Case("fill-build", "alibuild01", "agent.build.free"),
    Case("stop-unit:dsmcad", "alimesos03", "master.backup.dsmcad"),
    Case("stale-backup", "alimesos01", "master.backup.recent"),
    Case("fail-backup", "alimesos02", "master.backup.success"),
]


def test_healthy_lab_passes_every_node_check(tmp_path: Path) -> None:
    summary = run_suite(tmp_path)
    assert not_passed(summary) == {}
    assert summary["totals"]["passed"] == len(summary["records"]) > 0
    # no node check ships without the fault that makes it fail
    assert {r["check"] for r in summary["records"]} == {c.check for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_fails_exactly_its_check(case: Case, tmp_path: Path) -> None:
    faults.inject(case.fault, case.node)
    try:
        if case.reboot:
            faults.reboot(case.node)
        summary = run_suite(tmp_path / "broken")
    finally:
        faults.heal(case.fault, case.node)
    bad = not_passed(summary)
    root = bad.pop((case.check, case.node), None)
    assert root is not None and root["outcome"] == "failed", f"{case.check} on {case.node} did not fail: {root}"
    if case.blocks_node:
        upstream = {"node.ping"} if case.check == "node.ssh" else set()  # what the root itself needs
        on_node = [
            r for r in summary["records"] if r["node"] == case.node and r["check"] not in {case.check, *upstream}
        ]
        assert on_node and all(r["outcome"] == "blocked" and r["blocked_by"] == case.check for r in on_node)
        for r in on_node:
            bad.pop((r["check"], case.node))
        assert summary["totals"]["blocked"] == len(on_node)
    for check, outcome in case.also:
        consequence = bad.pop((check, case.node), None)
        assert consequence is not None and consequence["outcome"] == outcome, (check, consequence)
    assert bad == {}, f"other checks did not pass under {case.fault}: {sorted(bad)}"
    wait_until(lambda: not_passed(run_suite(tmp_path / "healed")) == {}, timeout=180, interval=5,
               what="the heal to restore every check", ignore=LAB_ERRORS)
    assert ssh(case.node, "true").returncode == 0


def test_maintenance_waives_a_broken_node(tmp_path: Path) -> None:
    inv = yaml.safe_load((STATE / "inventory.yaml").read_text())
    for key in ("config", "known_hosts", "identity"):
        inv["ssh"][key] = str(STATE / inv["ssh"][key])
    inv["apis"]["tls"] = {k: str(STATE / v) for k, v in inv["apis"]["tls"].items()}
    inv["apis"]["openstack"]["clouds_yaml"] = str(STATE / inv["apis"]["openstack"]["clouds_yaml"])
    inv["maintenance"] = [{"node": "alibuild01", "reason": "lab: disk swap INC0001", "until": "2099-12-31"}]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    faults.inject("stop-unit:nomad", "alibuild01")
    try:
        summary = run_suite(tmp_path / "out", path)
    finally:
        faults.heal("stop-unit:nomad", "alibuild01")
    on_node = [r for r in summary["records"] if r["node"] == "alibuild01"]
    assert on_node and all(r["outcome"] == "waived" and "INC0001" in r["message"] for r in on_node)
    assert not_passed(summary).keys() == {(r["check"], "alibuild01") for r in on_node}
    assert summary["exit_status"] == 0
