"""``alice-acceptance``: the suite for people, a thin layer over pytest for the three moments and the report.

It builds the pytest command line of each moment, runs the installed package (from any directory), shows a
progress bar while a provisioning run waits, and ends with where the report is. Anything it does not know is
passed to pytest (``-k``, ``-x``, ``--nodes``, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

EXIT = """exit status:
  0  healthy / go / converged     1  something failed / no-go / did not converge
  2  interrupted                  3  internal error
  4  bad input (inventory, options), one line saying what to fix
  5  no check selected              6  a remediation needs a human (it escalated)"""

DESCRIPTION = """The ALICE build cluster's acceptance suite: the runbook's checks on every node, for three moments.

  check      every check (or a selection) on every node, now
  nightly    the nightly health report: every check on every node, side by side; HTML (a node x check
             matrix), JUnit, JSON and Prometheus metrics, and what changed since the last night
  provision  after ai-bs / ai-rebuild-vm: wait, check by check, until the node converges (a rebuild can take
             an hour); with --remediate=safe|all it fixes what it may on the way (puppet, image, reboot)
  gate       before a rebuild, reboot or deletion: go or no-go, with every reason; --prepare drains the agent
             or moves the leadership off the master first
  merge      one report from the shards of a nightly run (--shard I/N on several runners)
  lock       show or break the cluster-wide remediation lock
  stop       stop remediation cluster-wide (every runner, every machine) until resume: stop --reason TEXT
  resume     lift that stop
  release    end the hold that gate --prepare keeps on the remediation lock while a human works

Every command needs the inventory: --inventory FILE or ALICE_ACCEPTANCE_INVENTORY. Credentials come from the
variables the official CLIs read (NOMAD_TOKEN, CONSUL_HTTP_TOKEN, VAULT_TOKEN, OS_CLOUD, ...): README.md;
lock, stop, resume and release write with CONSUL_REMEDIATION_TOKEN."""


def _common(p: argparse.ArgumentParser, remediate: str | None = "off") -> None:
    p.add_argument("--inventory", default=os.environ.get("ALICE_ACCEPTANCE_INVENTORY"),
                   help="the cluster's inventory (default: $ALICE_ACCEPTANCE_INVENTORY)")
    p.add_argument("--report-dir", default="reports/out", help="where the reports go (default: reports/out)")
    if remediate is not None:
        p.add_argument("--remediate", choices=("off", "dry-run", "safe", "all"), default=remediate,
                       help=f"fix failed checks under the guardrails (default: {remediate})")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="alice-acceptance", description=DESCRIPTION, epilog=EXIT,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="every check on every node, now", epilog=EXIT,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(check)
    nightly = sub.add_parser("nightly", help="the nightly health report", epilog=EXIT,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(nightly)
    nightly.add_argument("--shard", metavar="I/N", help="only the I-th of N stable slices of the nodes")
    nightly.add_argument("--run-id", help="the run's id (the shards of one night share it)")
    nightly.add_argument("--metrics-textfile", metavar="PATH",
                         help="also write the metrics there, for node exporter's textfile collector")
    provision = sub.add_parser("provision", help="wait until freshly provisioned nodes converge", epilog=EXIT,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(provision)
    provision.add_argument("nodes", nargs="+", metavar="NODE", help="the node(s) just provisioned (globs allowed)")
    provision.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (3600)")
    provision.add_argument("--interval", type=float, default=15, help="seconds between rounds (15)")
    gate = sub.add_parser("gate", help="go / no-go before a rebuild, reboot or deletion", epilog=EXIT,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(gate, remediate=None)
    gate.add_argument("gate", metavar="ACTION:NODE", help="rebuild:alimesos02, reboot:alibuild07, delete:alibuild12")
    gate.add_argument("--prepare", action="store_true", help="drain / move the leadership first, then decide")
    gate.add_argument("--allow-allocations", metavar="JOBS", help="jobs whose allocations may still run there")
    merge = sub.add_parser("merge", help="one report from the shards of a nightly run")
    merge.add_argument("out", help="the merged run's folder")
    merge.add_argument("summaries", nargs="+", help="the shards' summary.json")
    lock = sub.add_parser("lock", help="show or break the remediation lock")
    lock.add_argument("action", choices=("status", "break"))
    lock.add_argument("--inventory", default=os.environ.get("ALICE_ACCEPTANCE_INVENTORY"))
    stop = sub.add_parser("stop", help="stop remediation cluster-wide until resume")
    stop.add_argument("--reason", default="", help="why, shown to every runner that refuses (required)")
    resume = sub.add_parser("resume", help="lift the cluster-wide stop")
    release = sub.add_parser("release", help="end the hold of gate --prepare on the remediation lock")
    for p in (stop, resume, release):
        p.add_argument("--inventory", default=os.environ.get("ALICE_ACCEPTANCE_INVENTORY"))
    return top


def pytest_args(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    out = [f"--inventory={args.inventory}", f"--report-dir={args.report_dir}"]
    if getattr(args, "remediate", None):
        out.append(f"--remediate={args.remediate}")
    if args.command == "nightly":
        out += ["--moment=nightly", f"--junitxml={Path(args.report_dir) / 'latest' / 'junit.xml'}"]
        out += [f"--shard={args.shard}"] if args.shard else []
        out += [f"--run-id={args.run_id}"] if args.run_id else []
        out += [f"--metrics-textfile={args.metrics_textfile}"] if args.metrics_textfile else []
    elif args.command == "provision":
        out += [f"--nodes={','.join(args.nodes)}", f"--converge-timeout={args.timeout}",
                f"--converge-interval={args.interval}"]
    elif args.command == "gate":
        out += [f"--gate={args.gate}"]
        out += ["--prepare"] if args.prepare else []
        out += [f"--allow-allocations={args.allow_allocations}"] if args.allow_allocations else []
    return [*out, *extra]


class Reporting:
    """What the CLI shows besides pytest's own output: a progress bar while a provisioning run waits, and at
    the end where the report is."""

    def __init__(self) -> None:
        self.outputs: dict[str, Path] = {}
        self.bar: Any = None
        self.task: Any = None

    def pytest_acceptance_converge_progress(self, elapsed_s: float, timeout_s: float,
                                            waiting: dict[str, list[str]]) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self.bar is None:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("converging", total=timeout_s)
        what = "; ".join(f"{node}: {len(checks)} check(s)" for node, checks in sorted(waiting.items()))
        self.bar.update(self.task, completed=elapsed_s, description=f"waiting ({what})")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from alice_acceptance.state import app_state

        if self.bar is not None:
            self.bar.stop()
        app = app_state(session.config)
        if app is not None:
            self.outputs = dict(app.outputs)


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    if args.command == "merge":
        from reports.merge import main as merge_main

        return merge_main([args.out, *args.summaries, *extra])  # merge refuses what it does not know (exit 4)
    if not args.inventory:
        print("alice-acceptance: no inventory; fix: pass --inventory FILE or set ALICE_ACCEPTANCE_INVENTORY",
              file=sys.stderr)
        return 4
    if args.command == "lock":
        from remediation.lock import main as lock_main

        return lock_main([args.action, f"--inventory={args.inventory}"])
    if args.command in ("stop", "resume", "release"):
        if extra:  # nothing here goes to pytest: an unknown option is a typo, not something to ignore
            print(f"alice-acceptance {args.command}: unknown {' '.join(extra)}; fix: see alice-acceptance "
                  f"{args.command} --help", file=sys.stderr)
            return 4
        if args.command == "release":
            from remediation.lock import main as lock_main

            return lock_main(["release", f"--inventory={args.inventory}"])
        from remediation.switch import main as switch_main

        return switch_main([args.command, f"--reason={getattr(args, 'reason', '')}", f"--inventory={args.inventory}"])
    reporting = Reporting()
    start = time.monotonic()
    code = int(pytest.main(pytest_args(args, extra), plugins=[reporting]))
    if "html" in reporting.outputs:
        print(f"\nreport: {reporting.outputs['html']} ({time.monotonic() - start:.0f} s, exit status {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
