"""``alice-acceptance``: the suite for people, a thin layer over pytest for the three moments and the report.

It builds the pytest command line of each moment, runs the installed package (from any directory), shows a
progress bar while a provisioning run waits, and ends with where the report is. Anything it does not know is
passed to pytest (``-k``, ``-x``, ``--nodes``, ...). Its exit status is the table of ``--help`` whatever goes wrong:
a usage error (argparse's too) is 4 and one line with the fix, a bug 3, Ctrl-C 2. The help texts: help.py.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

from acceptance.printable import escape_controls
from alice_acceptance.help import BY_NAME, COMMANDS, DESCRIPTION, DISTRIBUTION, EXIT, PROG, Formatter, wrap


class Parser(argparse.ArgumentParser):
    """argparse with this suite's usage errors: exit 4 (argparse's 2 means "interrupted" here) and one line
    ``alice-acceptance <cmd>: <problem>; fix: <what to do>``."""

    def __init__(self, *args: Any, example: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.example = example  # a command line that works: the fix for a missing argument

    def error(self, message: str) -> NoReturn:
        if message.startswith("the following arguments are required") and self.example:
            fix = f"e.g. {self.example}"
        else:  # argparse's message names the choices or the expected type
            fix = f"see {self.prog} --help"
        self.exit(4, usage_line(self.prog, message, fix) + "\n")


def usage_line(prog: str, problem: str, fix: str) -> str:
    return escape_controls(f"{prog}: {' '.join(problem.split())}; fix: {fix}")  # one line, whatever it quotes


def _refuse(prog: str, problem: str, fix: str) -> int:
    print(usage_line(prog, problem, fix), file=sys.stderr)
    return 4


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _inventory(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inventory", metavar="FILE", default=os.environ.get("ALICE_ACCEPTANCE_INVENTORY"),
                   help="the cluster's inventory (default: $ALICE_ACCEPTANCE_INVENTORY)")


def _common(p: argparse.ArgumentParser, remediate: str | None = "off") -> None:
    _inventory(p)
    p.add_argument("--report-dir", default="reports/out", help="where the reports go (default: reports/out)")
    if remediate is not None:
        p.add_argument("--remediate", choices=("off", "dry-run", "safe", "all"), default=remediate,
                       help=f"fix failed checks under the guardrails (default: {remediate})")


def parser() -> Parser:
    top = Parser(prog=PROG, description=DESCRIPTION, epilog=EXIT, example=BY_NAME["check"].first_example(),
                 formatter_class=Formatter)
    top.add_argument("-V", "--version", action="version", version=f"{PROG} {_version()}",
                     help=f"print {PROG} VERSION and exit")
    sub = top.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND",
                             parser_class=Parser)
    # merge's arguments are reports/merge.py's: it reads them itself (options between the shards), this only helps
    cmd = {c.name: sub.add_parser(c.name, help=c.summary, description=wrap(c.description), epilog=c.epilog(),
                                  usage=c.usage, example=c.first_example(), formatter_class=Formatter)
           for c in COMMANDS}
    _common(cmd["check"])
    nightly = cmd["nightly"]
    _common(nightly)
    nightly.add_argument("--shard", metavar="I/N", help="only the I-th of N stable slices of the nodes")
    nightly.add_argument("--run-id", help="the run's id (the shards of one night share it)")
    nightly.add_argument("--metrics-textfile", metavar="PATH",
                         help="also write the metrics there, for node exporter's textfile collector")
    provision = cmd["provision"]
    _common(provision)
    provision.add_argument("nodes", nargs="+", metavar="NODE", help="the node(s) just provisioned (globs allowed)")
    provision.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds (3600)")
    provision.add_argument("--interval", type=float, default=15, help="seconds between rounds (15)")
    gate = cmd["gate"]
    _common(gate, remediate=None)
    gate.add_argument("gate", metavar="ACTION:NODE", help="rebuild:alimesos02, reboot:alibuild07, delete:alibuild12")
    gate.add_argument("--prepare", action="store_true", help="drain / move the leadership first, then decide")
    gate.add_argument("--allow-allocations", metavar="JOBS", help="jobs whose allocations may still run there")
    cmd["lock"].add_argument("action", choices=("status", "break"), help="status: who holds it; break: free it")
    cmd["stop"].add_argument("--reason", required=True,
                             help="who stops it and why, shown to every runner that refuses (required)")
    for name in ("lock", "stop", "resume", "release"):
        _inventory(cmd[name])
    return top


def pytest_args(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    out = [f"--inventory={args.inventory}", f"--report-dir={args.report_dir}"]
    if getattr(args, "remediate", None):
        out.append(f"--remediate={args.remediate}")
    if args.command == "nightly":
        out.append("--moment=nightly")
        if not args.shard:  # a shard writes its own folder only; the merge writes the night's JUnit
            out.append(f"--junitxml={Path(args.report_dir) / 'latest' / 'junit.xml'}")
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
    """The exit status of the table in ``--help`` (alice_acceptance/help.py EXIT), never an argparse 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser().parse_known_args(argv)
    except SystemExit as e:  # --help, --version (0); a usage error (4, its line printed): a status like any other
        return e.code if isinstance(e.code, int) else 4
    try:
        if args.command == "merge":  # its arguments as given, in their order: merge parses them
            before, after = argv[:argv.index("merge")], argv[argv.index("merge") + 1:]
            return _refuse(PROG, f"unknown {' '.join(before)}", f"see {PROG} --help") if before else _merge(after)
        return _run(args, extra)
    except KeyboardInterrupt:  # Ctrl-C or the watchdog outside a pytest session (pytest itself says 2)
        return 2
    except Exception:  # a bug: its traceback for the report, and 3, never 1 ("checks failed")
        traceback.print_exc()
        print(f"{PROG} {args.command}: internal error (the traceback above); fix: report it with that traceback",
              file=sys.stderr)
        return 3


def _merge(argv: list[str]) -> int:
    from alice_acceptance import notify
    from reports.merge import main as merge_main

    return merge_main(argv, notify=notify.after_merge)  # its usage errors are 4 and one line too


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    prog = f"{PROG} {args.command}"
    pytest_run = args.command in ("check", "nightly", "provision", "gate")
    if extra and not pytest_run:  # nothing here goes to pytest: an unknown option is a typo, not to be ignored
        return _refuse(prog, f"unknown {' '.join(extra)}", f"see {prog} --help")
    if args.command == "stop" and not args.reason.split():
        return _refuse(prog, "--reason is blank", "say who stops it and why, e.g. --reason 'INC0123: hands off'")
    if not args.inventory:
        return _refuse(prog, "no inventory", "pass --inventory FILE or set ALICE_ACCEPTANCE_INVENTORY")
    if not pytest_run:
        from remediation.lock import main as lock_main
        from remediation.switch import main as switch_main

        if args.command in ("lock", "release"):
            action = args.action if args.command == "lock" else "release"
            return lock_main([action, f"--inventory={args.inventory}"])
        reason = [f"--reason={args.reason}"] if args.command == "stop" else []
        return switch_main([args.command, *reason, f"--inventory={args.inventory}"])
    reporting = Reporting()
    start = time.monotonic()
    code = int(pytest.main(pytest_args(args, extra), plugins=[reporting]))
    if "html" in reporting.outputs:
        print(f"\nreport: {reporting.outputs['html']} ({time.monotonic() - start:.0f} s, exit status {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
