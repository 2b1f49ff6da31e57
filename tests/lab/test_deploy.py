"""The nightly Nomad job (deploy/nightly.nomad.json): its JSON form parses as a periodic, sharded batch job,
and its own command lines, run locally as its allocations would run them against the lab, give shards whose
merge is the report of one whole run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .cluster import env as lab_env
from .test_remediation import inventory
from .topology import REPO

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("lab_up")]
JOB = REPO / "deploy" / "nightly.nomad.json"


def job() -> dict[str, Any]:
    return dict(json.loads(JOB.read_text())["Job"])


def test_the_job_is_a_periodic_sharded_batch_job() -> None:
    spec = job()
    assert spec["Type"] == "batch" and spec["Periodic"]["Enabled"] and spec["Periodic"]["ProhibitOverlap"]
    group = spec["TaskGroups"][0]
    task = group["Tasks"][0]
    assert int(task["Env"]["SHARDS"]) == group["Count"] > 1
    assert {"Operand": "distinct_hosts", "RTarget": "true"} in group["Constraints"]
    script = next(t for t in task["Templates"] if t["DestPath"] == "local/nightly-shard.sh")
    assert script["EmbeddedTmpl"] == (REPO / "deploy" / "nightly-shard.sh").read_text()
    assert task["Config"]["args"] == ["${NOMAD_TASK_DIR}/nightly-shard.sh"]
    assert all("token" not in json.dumps(v).lower() or "secret" in json.dumps(v) for v in task["Env"].values())


def test_shards_run_as_the_job_runs_them_merge_into_one_run(tmp_path: Path) -> None:
    spec = job()
    task = spec["TaskGroups"][0]["Tasks"][0]
    shards = 2
    script = tmp_path / "nightly-shard.sh"
    script.write_text(next(t for t in task["Templates"] if t["DestPath"] == "local/nightly-shard.sh")["EmbeddedTmpl"])
    inv = inventory(tmp_path)
    venv_bin = Path(sys.executable).parent  # where the suite's alice-acceptance is installed
    env = {**lab_env(), **{k: v for k, v in task["Env"].items() if k in ("MERGE_WAIT_S",)}, "SHARDS": str(shards),
           "INVENTORY": str(inv), "REPORT_DIR": str(tmp_path / "reports"),
           "NOMAD_JOB_ID": "alice-acceptance-nightly/periodic-1796000000", "PATH": f"{venv_bin}:/usr/bin:/bin"}
    procs = [subprocess.Popen(["/bin/sh", str(script)], env={**env, "NOMAD_ALLOC_INDEX": str(i)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(shards)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * shards, "\n".join(o[-2000:] for o in outputs)
    run_id = "alice-acceptance-nightly-periodic-1796000000"
    merged = json.loads((tmp_path / "reports" / run_id / "summary.json").read_text())
    single = subprocess.run(["alice-acceptance", "nightly", f"--inventory={inv}",
                             f"--report-dir={tmp_path / 'single'}", "-q", "-p", "no:cacheprovider"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert single.returncode == 0, single.stdout[-3000:]
    whole = json.loads((tmp_path / "single" / "latest" / "summary.json").read_text())

    def content(s: dict[str, Any]) -> Any:
        return ({(r["check"], r["node"], r["outcome"]) for r in s["records"]}, s["totals"], s["blocked_by"],
                [n["name"] for n in s["nodes"]], s["exit_status"], s["interrupted"], s["shard"])

    assert merged["run_id"] == run_id and content(merged) == content(whole)
    shard_ids = sorted(p.name for p in (tmp_path / "reports" / "shards").iterdir() if p.name != "latest")
    assert shard_ids == [f"{run_id}-s1of2", f"{run_id}-s2of2"]
    assert (tmp_path / "reports" / run_id / "report.html").exists()
