"""What the lab's Nomad and Consul emulators cost when nothing happens: 3 Nomad servers, 3 Consul servers
and N Nomad clients (each also its node's Consul agent) as local processes on 127.0.x.y, no Docker. Once
every client is a ready Nomad node and the cluster has settled, it samples the processes' CPU time from
/proc/<pid>/stat over a window and prints the figures (no assertion: a benchmark).

    .venv/bin/python -m tests.bench.emulators_idle [--clients 30] [--seconds 30] [--emulators DIR]

--emulators points at another copy of the emulators (a directory holding the `emulators` package, e.g.
a worktree of an older commit's tests/lab) to compare before/after with the same measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.lab.configs import JOBS, SECRET_KEYS, acl_config
from tests.lab.pki import make_ca_and_certs
from tests.polling import wait_until

LAB = Path(__file__).resolve().parents[1] / "lab"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
MASTER_IPS = ["127.0.5.11", "127.0.5.12", "127.0.5.13"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait(what: str, ok: Callable[[], bool], timeout: float) -> None:
    """wait_until, once a second, ending the benchmark with a one-line message at the deadline."""
    wait_until(ok, timeout=timeout, interval=1, what=what, ignore=(requests.RequestException, ValueError, KeyError),
               error=lambda message: SystemExit(f"emulators_idle: {message}"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=30)
    p.add_argument("--seconds", type=float, default=30.0, help="the measured idle window")
    p.add_argument("--settle", type=float, default=20.0, help="idle time before the window, once all are ready")
    p.add_argument("--emulators", type=Path, default=LAB, help="directory holding the `emulators` package")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="emulators-idle-"))
    masters = [f"alimesos0{i + 1}" for i in range(3)]
    clients = [f"alibuild{i + 1:02d}" for i in range(args.clients)]
    ips = dict(zip(masters, MASTER_IPS, strict=True)) | {c: f"127.0.6.{i + 1}" for i, c in enumerate(clients)}
    pki = make_ca_and_certs(root / "tls", {**ips, "bench": "127.0.0.1"})
    secrets = {k: str(uuid.uuid4()) for k in SECRET_KEYS}
    master_list = [{"name": m, "ip": ips[m], "nomad_id": str(uuid.uuid4()), "consul_id": str(uuid.uuid4())}
                   for m in masters]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOMAD_", "CONSUL_", "PYTHON"))}
    env["PYTHONPATH"] = str(args.emulators)

    def start(kind: str, name: str) -> None:
        cfg = {"name": name, "role": "master" if name in masters else "agent", "ip": ips[name],
               "kind": None if name in masters else "vm", "region": "global", "datacenter": "cern",
               "masters": master_list, "nomad_node_id": str(uuid.uuid4()),
               "tokens": {"nomad": secrets["nomad"], "consul": secrets["consul"]}, "acl": acl_config(secrets),
               "tls": pki["nodes"][name], "build_dir": str(root / "build" / name),
               "fault_dir": str(root / "faults" / name), "jobs": JOBS if name in masters else []}
        (root / "build" / name).mkdir(parents=True, exist_ok=True)
        path = root / f"{kind}-{name}.json"
        path.write_text(json.dumps(cfg))
        log = (root / f"{kind}-{name}.log").open("ab")
        procs[f"{kind}-{name}"] = subprocess.Popen([PYTHON, "-S", "-m", f"emulators.{kind}", str(path)], env=env,
                                                   stdout=log, stderr=subprocess.STDOUT, cwd=root)
        log.close()

    session = requests.Session()
    cert = (pki["nodes"]["bench"]["cert"], pki["nodes"]["bench"]["key"])

    def get(url: str, token: str) -> Any:
        r = session.get(url, headers={"X-Nomad-Token": token, "X-Consul-Token": token}, verify=pki["ca"],
                        cert=cert, timeout=10)
        r.raise_for_status()
        return r.json()

    try:
        started = time.monotonic()
        for m in masters:
            start("consul", m)
            start("nomad", m)
        for c in clients:
            start("nomad", c)
        nomad = f"https://{MASTER_IPS[0]}:4646"
        consul = f"https://{MASTER_IPS[0]}:8500"
        wait("a Consul leader", lambda: bool(get(f"{consul}/v1/status/leader", secrets["consul"])), 120)
        wait(f"{len(clients)} ready Nomad nodes", lambda: sum(
            n["Status"] == "ready" for n in get(f"{nomad}/v1/nodes", secrets["nomad"])) == len(clients), 300)
        ready = time.monotonic() - started
        print(f"{len(procs)} processes ({len(masters)} Nomad + {len(masters)} Consul servers, {len(clients)} "
              f"Nomad clients), emulators from {args.emulators}; all ready in {ready:.0f} s")
        time.sleep(args.settle)
        before = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        after = {k: cpu_seconds(p.pid) for k, p in procs.items()}
        window = time.monotonic() - t0
        load = os.getloadavg()
        nodes = get(f"{nomad}/v1/nodes", secrets["nomad"])
        critical = get(f"{consul}/v1/health/state/critical", secrets["consul"])
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def group(prefix: str, members: list[str]) -> float:
        return sum(after[f"{prefix}-{m}"] - before[f"{prefix}-{m}"] for m in members)

    rows = [("Nomad servers", group("nomad", masters)), ("Consul servers", group("consul", masters)),
            ("Nomad clients", group("nomad", clients))]
    total = sum(cpu for _, cpu in rows)
    print(f"CPU over {window:.1f} s idle (after {args.settle:.0f} s settling):")
    for label, cpu in rows:
        print(f"  {label:15} {cpu:7.2f} s  = {100 * cpu / window:6.1f} % of one core")
    print(f"  {'total':15} {total:7.2f} s  = {100 * total / window:6.1f} % of one core")
    busiest = max(procs, key=lambda k: after[k] - before[k])
    print(f"  busiest process: {busiest} {100 * (after[busiest] - before[busiest]) / window:.1f} % of one core")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"(the whole machine, {os.cpu_count()} CPUs)")
    print(f"at the end: {sum(n['Status'] == 'ready' for n in nodes)} ready Nomad nodes, "
          f"{len(critical)} critical Consul checks")


if __name__ == "__main__":
    main()
