"""`python -m tests.lab up|down|status|faults|fault NAME NODE|heal NAME NODE|notifications` (see README.md)."""

from __future__ import annotations

import argparse
import sys
import time

from .dockerctl import LabError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["notifications"]:  # its own options: notifications.py also runs alone, in the lab's container
        from . import notifications  # noqa: PLC0415

        return notifications.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m tests.lab", description="The ALICE lab cluster on this machine.")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="create or start the lab (idempotent); writes .lab/")
    up.add_argument(
        "--agents", type=int, default=None, help="number of VM agents alibuildNN (default 2, or as last up)"
    )
    sub.add_parser("down", help="remove the lab's containers, volumes and network")
    sub.add_parser("status", help="containers, leaders, Vault seal state and memory")
    sub.add_parser("faults", help="list the faults")
    sub.add_parser("notifications", help="print what the stand-in Mattermost received (`notifications serve`: run it)")
    for verb in ("fault", "heal"):
        f = sub.add_parser(verb, help=f"{verb} NAME NODE")
        f.add_argument("name")
        f.add_argument("node", nargs="?", default="")
    args = p.parse_args(argv)
    from . import cluster, faults  # noqa: PLC0415 - keeps `--help` free of the heavier imports

    started = time.monotonic()
    try:
        if args.cmd == "up":
            topo = cluster.up(args.agents)
            print(
                f"lab up: {len(topo.masters)} masters, {len(topo.agents)} agents in "
                f"{time.monotonic() - started:.0f}s; inventory in .lab/inventory.yaml"
            )
        elif args.cmd == "down":
            cluster.down()
            print("lab down")
        elif args.cmd == "status":
            print("\n".join(cluster.status()))
        elif args.cmd == "faults":
            for name, fault in faults.FAULTS.items():
                print(f"{name:28} {fault.doc}")
        else:
            action = faults.inject if args.cmd == "fault" else faults.heal
            print(action(args.name, args.node))
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
