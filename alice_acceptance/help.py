"""The help of ``alice-acceptance``: what each command is for, examples, the pytest options it honours, and the
exit-status table. Text only, apart from the parser (``alice_acceptance.cli``), so that the help reads as a whole.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from dataclasses import dataclass

PROG = "alice-acceptance"
DISTRIBUTION = "alice-acceptance"  # pyproject.toml's [project] name: where --version is read

EXIT = """exit status:
  0  healthy / go / converged     1  something failed / no-go / did not converge
  2  interrupted                  3  internal error
  4  bad input (inventory, options), one line saying what to fix
  5  no check selected            6  a remediation needs a human (it escalated)"""

DESCRIPTION = """The ALICE build cluster's acceptance suite: the runbook's checks on every node, for three moments
(after provisioning, nightly, before a rebuild), and the tools operators need around them. `alice-acceptance
COMMAND --help` says what a command is for, with examples.

Every command but merge needs the inventory: --inventory FILE or ALICE_ACCEPTANCE_INVENTORY. Credentials come
from the variables the official CLIs read (NOMAD_TOKEN, CONSUL_HTTP_TOKEN, VAULT_TOKEN, OS_CLOUD, ...):
README.md; lock, stop, resume and release write with CONSUL_REMEDIATION_TOKEN. The options check, nightly,
provision and gate do not know go to pytest (-k, -x, -m critical, --nodes, ...): see their --help."""

PYTEST_OPTIONS = "pytest options it honours (passed on to pytest)"

# the pytest options (alice_acceptance/plugin.py, pytest's -m and -k, pytest-xdist's -n) the commands honour
NODES = ("--nodes GLOBS", "only nodes whose name matches, e.g. --nodes='alibuild0*,alimesos01' (repeatable)")
ROLE = ("--role ROLE", "only nodes of these roles: master, agent, cluster (the cluster-wide checks)")
MARKERS = ("-m EXPR", "only checks with these markers: -m critical, -m 'agent and not minor' (severity: critical, "
                      "major, minor; role: master, agent, cluster)")
KEYWORD = ("-k EXPR", "only checks whose id matches, e.g. -k dsmc")
CHECKS_DIR = ("--checks-dir DIR", "a directory of site checks, collected with the built-in ones (repeatable)")
NO_DISCOVERY = ("--no-discovery", "static nodes only: ignore the inventory's discovery section")
RUN_TIMEOUT = ("--run-timeout SECONDS", "a watchdog: interrupt the run after this long (exit 2; the reports are "
                                        "still written, what did not run counted as not_run)")
WORKERS = ("-n N", "pytest-xdist: N workers, each node's checks on one (not with --remediate)")


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # its line in `alice-acceptance --help`
    description: str  # what it is for, one or two sentences
    examples: tuple[str, ...]
    passed_on: tuple[tuple[str, str], ...] = ()  # (option, what) it hands to pytest (or to the merge)
    passed_on_title: str = PYTEST_OPTIONS
    usage: str | None = None  # argparse's, unless the arguments are not the parser's

    def epilog(self) -> str:
        parts = ["examples:\n" + "\n".join(f"  {e}" for e in self.examples)]
        if self.passed_on:
            width = max(len(option) for option, _ in self.passed_on) + 2
            lines = [textwrap.fill(what, 116, initial_indent=f"  {option:<{width}}",
                                   subsequent_indent=" " * (width + 2)) for option, what in self.passed_on]
            parts.append(f"{self.passed_on_title}:\n" + "\n".join(lines))
        return "\n\n".join([*parts, EXIT])

    def first_example(self) -> str:
        return self.examples[0].split("  #")[0].rstrip()


def wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), 116)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """The texts above as written, argparse's own lines as wide as them: argparse wraps at 80 columns when it
    has no terminal (``| less``), which would cut them in the middle."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=min(shutil.get_terminal_size((120, 24)).columns, 120) - 2)


COMMANDS = (
    Command("check", "every check (or a selection) on every node, now",
            "Every check, or a selection (--nodes, --role, -m, -k), on every node now: per node what is wrong and "
            "what to do. With --remediate=safe|all it also fixes what it may, under the guardrails.",
            ("alice-acceptance check --inventory=prod.yaml",
             "alice-acceptance check --inventory=prod.yaml --nodes='alibuild0*' -m critical",
             "alice-acceptance check --inventory=prod.yaml --role=master --remediate=dry-run  # what it would fix"),
            (NODES, ROLE, MARKERS, KEYWORD, CHECKS_DIR, NO_DISCOVERY, RUN_TIMEOUT, WORKERS)),
    Command("nightly", "the nightly health report: HTML, JUnit, JSON, Prometheus metrics, the trend",
            "The nightly health report: every check on every node, side by side, as HTML (a node x check matrix), "
            "JUnit, JSON and Prometheus metrics, with what changed since the last night. --shard spreads one "
            "night over several runners (then `alice-acceptance merge`).",
            ("alice-acceptance nightly --inventory=prod.yaml",
             "alice-acceptance nightly --inventory=prod.yaml "
             "--metrics-textfile=/var/lib/prometheus/node-exporter/alice-acceptance.prom",
             "alice-acceptance nightly --inventory=prod.yaml --shard=1/4 --run-id=nightly-20261201"),
            (NODES, ROLE, MARKERS, KEYWORD, CHECKS_DIR, NO_DISCOVERY, RUN_TIMEOUT, WORKERS)),
    Command("provision", "after ai-bs / ai-rebuild-vm: wait until the new nodes converge",
            "After ai-bs / ai-rebuild-vm: rerun the failing checks of the new nodes round after round until every "
            "check passes (exit 0) or --timeout is up (exit 1); a rebuild can take an hour. With "
            "--remediate=safe|all it fixes what it may on the way (puppet reruns, the image pull, the reboot for "
            "kernel arguments).",
            ("alice-acceptance provision alibuild07 --inventory=prod.yaml",
             "alice-acceptance provision alibuild07 alibuild08 --inventory=prod.yaml --remediate=safe --timeout=3600",
             "alice-acceptance provision 'alibuild1*' --inventory=prod.yaml -m critical  # the nodes before -m"),
            (MARKERS, KEYWORD, CHECKS_DIR, NO_DISCOVERY, RUN_TIMEOUT)),
    Command("gate", "before a rebuild, reboot or deletion: go or no-go, with every reason",
            "Before a rebuild, reboot or deletion of NODE: GO (exit 0) or NO-GO (exit 1) with every reason (the "
            "quorum survives, the leadership is elsewhere, no build runs there). --prepare first drains the agent "
            "or moves the leadership off the master, and holds the remediation lock until `alice-acceptance "
            "release`.",
            ("alice-acceptance gate rebuild:alimesos02 --inventory=prod.yaml",
             "alice-acceptance gate reboot:alibuild07 --inventory=prod.yaml --prepare",
             "alice-acceptance gate delete:alibuild12 --inventory=prod.yaml --allow-allocations=ci-mesosci-slc9"),
            (CHECKS_DIR, NO_DISCOVERY, RUN_TIMEOUT)),
    Command("merge", "one report from the shards of a nightly run",
            "One report from the shards of a nightly run (nightly --shard I/N on several runners), written into a "
            "report folder as a run writes its own (--report-dir) or into OUT_DIR. It reads only the shards' "
            "summaries (no inventory); exit 0 once the reports are written, the night's own status is in them.",
            ("alice-acceptance merge --report-dir=reports/out shards/*/summary.json  # the night, as one run",
             "alice-acceptance merge reports/out/merged runner1/summary.json runner2/summary.json "
             "--history-dir=reports/out --runs=14"),
            (("--report-dir DIR", "the report folder to write the merged run into, as a run does: its run folder, "
                                  "latest, the trend against the runs there, the index"),
             ("OUT_DIR", "without --report-dir: a folder for the merged run's files only (no latest, no index)"),
             ("SUMMARY", "the shards' summary.json, in any order (options may come between them)"),
             ("--runs N", "the trend's window, this run included (1 to 1000, default 7)"),
             ("--keep N", "with --report-dir: the nights kept (default 30)"),
             ("--history-dir DIR", "with OUT_DIR: a report folder of previous runs, for the trend")),
            "arguments (read by the merge itself)",
            f"{PROG} merge [-h] (--report-dir DIR | OUT_DIR) SUMMARY [SUMMARY ...]\n"
            f"{' ' * len(PROG)}        [--runs N] [--keep N] [--history-dir DIR]"),
    Command("lock", "show or break the cluster-wide remediation lock",
            "Show or break the cluster-wide remediation lock (a Consul session): status says free, held by whom, or "
            "unknown (exit 1); break destroys the holder's session, once you made sure its owner is gone (its host "
            "and pid).",
            ("alice-acceptance lock status --inventory=prod.yaml",
             "alice-acceptance lock break --inventory=prod.yaml")),
    Command("stop", "stop remediation cluster-wide (every runner) until resume",
            "Stop remediation cluster-wide, on every runner and machine, until `alice-acceptance resume`: the checks "
            "still run, nothing is fixed. The reason is shown to every runner that refuses.",
            ("alice-acceptance stop --reason 'INC0123: network work, hands off' --inventory=prod.yaml",
             "alice-acceptance stop --reason 'jdoe: rebuilding alimesos02'  # with $ALICE_ACCEPTANCE_INVENTORY")),
    Command("resume", "lift the cluster-wide stop",
            "Lift the cluster-wide stop of `alice-acceptance stop`: the runners remediate again. It says which stop "
            "it lifted.",
            ("alice-acceptance resume --inventory=prod.yaml",
             "alice-acceptance resume  # with $ALICE_ACCEPTANCE_INVENTORY")),
    Command("release", "end the hold that gate --prepare keeps on the remediation lock",
            "End the hold that `gate --prepare` keeps on the remediation lock while a human works on the node. A "
            "remediation run's own lock is never released here (see `alice-acceptance lock break`).",
            ("alice-acceptance release --inventory=prod.yaml",
             "alice-acceptance release  # with $ALICE_ACCEPTANCE_INVENTORY")),
)
BY_NAME = {c.name: c for c in COMMANDS}
