"""Building the run from the command line and the inventory: load and validate the inventory, discover nodes,
select the targets (``--role``, ``--nodes``), resolve the maintenance waivers. Every bad input is one line
and a usage error (exit status 4)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from acceptance.discovery import DiscoveryError, discover
from acceptance.inventory import CLUSTER, Inventory, InventoryError, Maintenance, Node, load_inventory
from acceptance.printable import escape_controls, shown
from acceptance.run import WORKERINPUT_KEY, Connections, Run, RunInfo, Scope, new_run_id
from acceptance.targeting import Gate, TargetError, gate_targets, select, split_patterns, wants_cluster
from acceptance.transport.ssh import ControlDirError, private_dir
from alice_acceptance.moments import MomentError, parse_gate, parse_run_id, parse_shard
from reports.summary import Moment

CLUSTER_NODE = Node(name=CLUSTER, role="cluster", source=CLUSTER)


def usage(message: str) -> NoReturn:
    raise pytest.UsageError(escape_controls(message))  # it may quote an API's words


def maintenance(inventory: Inventory, targets: list[Node], today: dt.date) -> tuple[dict[str, Maintenance], list[str]]:
    waivers: dict[str, Maintenance] = {}
    warnings: list[str] = []
    known = {n.name for n in targets} | {n.name for n in inventory.nodes}
    for entry in inventory.maintenance:
        if entry.expired(today):
            warnings.append(f"maintenance entry for {entry.node} expired on {entry.until.isoformat()} "
                            f"({entry.reason}): ignored, its checks run")
        elif entry.node not in known and not inventory.discovery:
            warnings.append(f"maintenance entry for {entry.node}: no such node in the inventory: ignored")
        else:
            waivers[entry.node] = entry
    return waivers, warnings


def _path(config: pytest.Config, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else config.invocation_params.dir / path


def build_run(config: pytest.Config, inventory_path: str) -> Run:
    try:
        inventory = load_inventory(_path(config, inventory_path))
    except InventoryError as e:
        usage(str(e))
    report_dir = _path(config, config.getoption("report_dir") or "reports/out")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and WORKERINPUT_KEY in workerinput:
        run = Run.from_workerinput(inventory, report_dir, workerinput[WORKERINPUT_KEY])
        try:
            private_dir(run.connections.control_dir)
        except (OSError, ControlDirError) as e:
            usage(str(e))
        return run
    nodes = list(inventory.nodes)
    found: list[str] = []
    if inventory.discovery and not config.getoption("no_discovery"):
        try:
            nodes = discover(inventory, warnings=found)
        except DiscoveryError as e:
            usage(f"{inventory.path}: {e}")
        except KeyboardInterrupt:  # --run-timeout or a signal: before the session, so no report can say it
            print("alice-acceptance: interrupted during discovery (--run-timeout, SIGTERM or Ctrl-C); no check ran",
                  file=sys.stderr)
            raise
    roles, patterns = split_patterns(config.getoption("role")), split_patterns(config.getoption("nodes"))
    try:
        gate = shard = None
        if config.getoption("gate"):
            gate = parse_gate(config.getoption("gate"), nodes, bool(config.getoption("prepare")),
                              split_patterns(config.getoption("allow_allocations")))
            targets = gate_targets(gate, nodes)
        else:
            targets = select(nodes, roles, patterns)
            if wants_cluster(roles, patterns):
                targets.append(CLUSTER_NODE)  # the cluster-wide (API) checks' pseudo-node
        if config.getoption("shard"):
            shard = parse_shard(config.getoption("shard"))
            targets = [n for n in targets if shard.holds(n)]
        run_id = parse_run_id(config.getoption("run_id")) if config.getoption("run_id") else None
    except (TargetError, MomentError) as e:
        usage(f"{inventory.path}: {e}")
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = run_id or new_run_id(started)
    if shard is not None:
        run_id = f"{run_id}-s{shard.index}of{shard.count}"  # the shards share the prefix their merge keeps
    waivers, warnings = maintenance(inventory, targets, dt.date.today())
    shown_warnings = [shown(w, 1000) for w in found + warnings]  # they quote what OpenStack and the inventory said
    scope = Scope(inventory=inventory, targets=targets, all_nodes=nodes, waivers=waivers, warnings=shown_warnings,
                  moment=moment_of(config, gate), gate=gate, shard=shard)
    info = RunInfo(run_id=run_id, started=started, report_dir=report_dir, is_worker=False)
    return Run(info=info, scope=scope, connections=Connections(private_dir()))


def moment_of(config: pytest.Config, gate: Gate | None) -> Moment:
    if gate is not None:
        return "gate"
    if config.getoption("converge_timeout") is not None:
        return "provision"
    chosen: Moment = config.getoption("moment") or "check"
    return chosen
