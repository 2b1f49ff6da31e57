"""The suite's speed against naive testinfra and against the floor, on the lab (prints figures, asserts none).

    python -m tests.bench.speed [--agents 5,15,30] [--runs 3] [--png speed.png]

For each lab size (`tests.lab up --agents N`; default: the lab as it is), the same node checks of the nightly
report (no remediation), each several times:
- the suite as shipped, serially (`-n 0`) and with xdist (`-n 4`), its learned commands kept between runs (the
  first, cold run is reported apart);
- the naive baseline: tests/bench/naive_checks.py, plain testinfra with its default ssh backend, `-n 0` and
  `-n 4`;
- the floor: every node's commands (those the suite runs) in ONE ssh round trip per node on a fresh connection,
  all nodes in parallel: nothing over ssh can be faster.
Per size: wall time (median, min, max), pytest's start-up and collection apart (`--collect-only`), ssh
connections (sshd's own log on every node) and round trips per node, API requests per run, the peak RSS of the
largest process of the run, and the ratios suite/floor and baseline/suite; with several sizes, a PNG of wall
time against agents.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from acceptance.transport import batch
from tests.lab import cluster
from tests.lab.cluster import env as lab_env
from tests.lab.dockerctl import node_exec
from tests.lab.topology import REPO, STATE

NODE_CHECKS = ["checks/node.py", "checks/master.py", "checks/agent.py"]
PY = sys.executable


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB of the largest process of the tree, stdout) of one command."""
    wrapper = ("import resource, subprocess, sys, time; t = time.monotonic(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps([time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "p.stdout[-4000:]]))")
    proc = subprocess.run([PY, "-c", "import json; " + wrapper, *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3600, check=False)
    wall, rss_kib, out = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(wall), int(rss_kib) // 1024, str(out)


def sshd_accepted(names: list[str]) -> dict[str, int]:
    """How many ssh logins each node's sshd has accepted so far (read without ssh)."""
    def count(name: str) -> int:
        out = node_exec(name, "journalctl -q -o cat _COMM=sshd-session _COMM=sshd | grep -c 'Accepted publickey' "
                              "|| true", timeout=60)
        return int(out.strip() or 0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(names, pool.map(count, names), strict=True))


# pytest in the measured process itself, so that its own CPU (every thread) and its children's (ssh clients,
# xdist workers) can be told apart: printed as the last line, `CPU [self, children]`
CPU_WRAPPER = ("import json, resource, sys, pytest; rc = pytest.main(sys.argv[1:]); "
               "s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print('\\nCPU ' + json.dumps([s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime])); sys.exit(rc)")
# The product as users run it: hypothesis is a dev extra whose pytest plugin imports (and assertion-rewrites)
# hypothesis at the end of every session, about 1 s of CPU that no installed suite pays.
AS_INSTALLED = ["-p", "no:hypothesispytest"]


def cpu_of(stdout: str) -> tuple[float, float]:
    """(the pytest process's CPU seconds, its children's) from CPU_WRAPPER's last line."""
    line = next(x for x in reversed(stdout.splitlines()) if x.startswith("CPU "))
    own, children = json.loads(line[4:])
    return float(own), float(children)


def suite_argv(cache: Path, report: Path, workers: int, collect_only: bool = False) -> list[str]:
    return [PY, "-c", CPU_WRAPPER, *AS_INSTALLED, *NODE_CHECKS, f"--inventory={STATE / 'inventory.yaml'}",
            f"--report-dir={report}", "-q", "-o", f"cache_dir={cache}", "-n", str(workers),
            *(["--collect-only"] if collect_only else [])]


def naive_argv(hosts: list[str], workers: int, collect_only: bool = False) -> list[str]:
    return [PY, "-m", "pytest", "tests/bench/naive_checks.py", "-p", "no:cacheprovider", "-q",
            f"--hosts={','.join(f'ssh://{h}' for h in hosts)}", f"--ssh-config={STATE / 'ssh_config'}",
            "-n", str(workers), *(["--collect-only"] if collect_only else [])]


def floor(names: list[str], commands: dict[str, list[str]], roles: dict[str, str]) -> float:
    """One fresh ssh connection and one round trip per node, all nodes at once."""
    def one(name: str) -> None:
        nonce = batch.new_nonce()
        script = batch.script(commands.get(roles[name], []), nonce, 60)
        subprocess.run(["ssh", "-F", str(STATE / "ssh_config"), "-o", "ControlMaster=no", "-o", "ControlPath=none",
                        name, "sh -s"], input=script.encode(), capture_output=True, timeout=120, check=True)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(one, names))
    return time.monotonic() - start


def stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def measure(runs: int) -> dict[str, Any]:
    topo = cluster.current()
    names = [n.name for n in topo.nodes]
    roles = {n.name: n.role for n in topo.nodes}
    env = lab_env()
    # an installed suite keeps its compiled (and assertion-rewritten) modules; without that every run recompiles
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out: dict[str, Any] = {"agents": len(topo.agents), "nodes": len(names)}
    with tempfile.TemporaryDirectory() as tmp:
        cache, reports = Path(tmp) / "cache", Path(tmp) / "reports"
        collected = [timed(suite_argv(cache, reports, 0, collect_only=True), env) for _ in range(runs)]
        out["suite start-up + collection"] = stats([c[0] for c in collected])
        startup_cpu = statistics.median(cpu_of(c[2])[0] for c in collected)
        before = sshd_accepted(names)
        cold, rss, _ = timed(suite_argv(cache, reports, 0), env)
        after = sshd_accepted(names)
        summary = json.loads((reports / "latest" / "summary.json").read_text())
        out["suite cold (first run, learning the commands)"] = {"wall": round(cold, 2), "rss_mib": rss}
        out["suite cold: round trips per node (max)"] = max(v["round_trips"]
                                                           for v in summary["transport"]["nodes"].values())
        for workers in (0, 4):
            walls, peaks, trips, conns, apis, cpus = [], [], [], [], [], []
            for _ in range(runs):
                before = sshd_accepted(names)
                wall, rss, stdout = timed(suite_argv(cache, reports, workers), env)
                cpus.append(cpu_of(stdout))
                after = sshd_accepted(names)
                s = json.loads((reports / "latest" / "summary.json").read_text())
                walls.append(wall)
                peaks.append(rss)
                trips.append(max(v["round_trips"] for v in s["transport"]["nodes"].values()))
                conns.append(max(after[n] - before[n] for n in names))
                apis.append(sum(s["transport"]["api_requests"].values()))
            items = len(s["records"])
            own = statistics.median(c[0] for c in cpus)
            children = statistics.median(c[1] for c in cpus)
            out[f"suite -n {workers}"] = {**stats(walls), "ssh connections per node (max)": max(conns),
                                         "round trips per node (max)": max(trips), "rss_mib (max)": max(peaks),
                                         "API requests (node checks only)": max(apis), "items": items,
                                         # the runner's CPU: pytest's own process, then what each item adds to
                                         # start-up and collection, then its children (ssh clients, workers)
                                         "runner CPU per item (ms)": round(1000 * own / items, 1),
                                         "runner CPU per item, start-up apart (ms)":
                                             round(1000 * max(0.0, own - startup_cpu) / items, 1),
                                         "children CPU per item (ms)": round(1000 * children / items, 1)}
        seeds = json.loads((cache / "v" / "alice-acceptance" / "commands").read_text())
        floors = [floor(names, seeds, roles) for _ in range(runs)]
        out["floor"] = stats(floors)
        naive_startup = [timed(naive_argv(names, 0, collect_only=True), env)[0] for _ in range(runs)]
        out["naive start-up + collection"] = stats(naive_startup)
        for workers in (0, 4):
            walls, conns = [], []
            for _ in range(runs):
                before = sshd_accepted(names)
                wall, rss, _ = timed(naive_argv(names, workers), env)
                after = sshd_accepted(names)
                walls.append(wall)
                conns.append(max(after[n] - before[n] for n in names))
            out[f"naive testinfra -n {workers}"] = {**stats(walls), "ssh connections per node (max)": max(conns),
                                                    "rss_mib": rss}
        suite_net = out["suite -n 0"]["median"] - out["suite start-up + collection"]["median"]
        out["ratios"] = {
            "suite (-n 0, start-up apart) / floor": round(suite_net / out["floor"]["median"], 2),
            "naive -n 0 / suite -n 0": round(out["naive testinfra -n 0"]["median"] / out["suite -n 0"]["median"], 1),
            "naive -n 4 / suite -n 0": round(out["naive testinfra -n 4"]["median"] / out["suite -n 0"]["median"], 1),
        }
    return out


def _container_cpu_seconds(cid: str) -> float | None:
    """CPU time of one container from its cgroup: v2 (systemd or cgroupfs driver) or v1's cpuacct."""
    for path in (Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat"),
                 Path(f"/sys/fs/cgroup/docker/{cid}/cpu.stat")):
        if path.exists():
            line = next(x for x in path.read_text().splitlines() if x.startswith("usage_usec"))
            return int(line.split()[1]) / 1e6
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage")
    return int(v1.read_text()) / 1e9 if v1.exists() else None


def idle_cpu(seconds: float = 30) -> float | str:
    """The lab's own CPU use while nothing runs, in cores (from the cgroups of its containers)."""
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc"], capture_output=True, text=True, timeout=30,
                         check=True).stdout.split()

    def usage() -> float | None:
        found = [_container_cpu_seconds(cid) for cid in ids]
        return None if None in found else sum(x for x in found if x is not None)

    first = usage()
    time.sleep(seconds)
    last = usage()
    if first is None or last is None:
        return "unknown (no cgroup accounting found for the lab's containers)"
    return round((last - first) / seconds, 2)


def draw(results: list[dict[str, Any]], png: Path) -> None:
    """Wall time against agents for the suite, the naive baseline and the floor (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = [r["agents"] for r in results]
    for key, label in (("suite -n 0", "suite (serial)"), ("suite -n 4", "suite (-n 4)"),
                       ("naive testinfra -n 0", "naive testinfra"), ("naive testinfra -n 4", "naive (-n 4)"),
                       ("floor", "floor")):
        plt.plot(agents, [r[key]["median"] for r in results], marker="o", label=label)
    plt.xlabel("agents")
    plt.ylabel("wall time of the node checks (s)")
    plt.yscale("log")
    plt.legend()
    plt.grid(True, which="both", alpha=0.3)
    plt.savefig(png, dpi=120, bbox_inches="tight")
    print(f"curve: {png}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.speed", description=__doc__.split("\n")[0])
    p.add_argument("--agents", default="", help="lab sizes (VM agents), comma-separated; default: the lab as it is")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--png", type=Path, default=None, help="draw wall time against agents here")
    args = p.parse_args(argv)
    results = []
    sizes: list[int | None] = [int(s) for s in args.agents.split(",") if s] or [None]
    before = cluster.saved_agents()
    try:
        for size in sizes:
            if size is not None:
                cluster.up(size)
            result = measure(args.runs)
            result["lab idle CPU (cores)"] = idle_cpu()
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
    finally:
        if sizes != [None]:
            cluster.up(before)  # the lab back at the size it had
    if args.png and len(results) > 1:
        draw(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
