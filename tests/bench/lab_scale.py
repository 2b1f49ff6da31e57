"""How many agents the lab holds on this machine, and what they cost: brings the lab up with N VM
agents and prints the time it took, the memory of every container and the agents' Nomad status.

    .venv/bin/python -m tests.bench.lab_scale --agents 30     (then `python -m tests.lab up --agents 2`)
"""

from __future__ import annotations

import argparse
import time

from tests.lab import cluster
from tests.lab.dockerctl import memory_mib
from tests.lab.observe import nomad_get


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=30)
    args = p.parse_args()
    started = time.monotonic()
    topo = cluster.up(args.agents)
    took = time.monotonic() - started
    mem = memory_mib()
    agents = [mem[a.name] for a in topo.agents if a.name in mem]
    masters = [mem[m.name] for m in topo.masters if m.name in mem]
    ready = sum(1 for n in nomad_get("/v1/nodes") if n["Status"] == "ready")
    print(f"agents up: {len(topo.agents)} ({args.agents} VMs + alimetal01), Nomad nodes ready: {ready}")
    print(f"lab up in {took:.0f} s")
    print(
        f"memory: all containers {sum(mem.values()):.0f} MiB; masters {sum(masters):.0f} MiB "
        f"({sum(masters) / len(masters):.0f} each); agents {sum(agents):.0f} MiB "
        f"({sum(agents) / len(agents):.0f} each, max {max(agents):.0f})"
    )


if __name__ == "__main__":
    main()
