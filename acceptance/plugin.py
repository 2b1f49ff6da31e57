"""The pytest plugin: options, inventory and targets, check collection, outcomes, summary.

Inert unless ``--inventory`` is given (collecting checks without it is a usage error).
Registered as the ``acceptance.plugin`` pytest11 entry point and loaded by the root conftest.py.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import inspect
import secrets
import shutil
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

import checks
from acceptance import hookspecs
from acceptance.checkspec import PING_CHECK, SSH_CHECK, CheckError, CheckItem, Need, spec_of
from acceptance.discovery import DiscoveryError, discover
from acceptance.facts import FactMissing, NodeFacts
from acceptance.inventory import (
    CLUSTER,
    Expectations,
    Inventory,
    InventoryError,
    Maintenance,
    Node,
    describe_nodes,
)
from acceptance.inventory import load_inventory as _load_inventory
from acceptance.probe import FactsResult, Prober, ProbeResult, ProberProtocol
from acceptance.targeting import TargetError, select, split_patterns, wants_cluster
from reports.summary import Record, Records, Summary, write_summary

RUN_KEY = pytest.StashKey["Run"]()
NO_INVENTORY_KEY = pytest.StashKey[str]()
ITEM_KEY = pytest.StashKey[CheckItem]()
STATUS_KEY = pytest.StashKey[tuple[str, str | None, str]]()  # (outcome, blocked_by, message) set before a skip
_WORKERINPUT_KEY = "acceptance"
CLUSTER_NODE = Node(name=CLUSTER, role="cluster", source=CLUSTER)
_RECORDER_NAME = "acceptance-recorder"
_MARKERS = {
    "master": "a check that runs on masters",
    "agent": "a check that runs on agents",
    "cluster": "a cluster-wide check (node 'cluster'): the cluster APIs, drift",
    "critical": "severity critical: the node cannot do its job",
    "major": "severity major: the node works, degraded or at risk",
    "minor": "severity minor",
}


@dataclass
class Run:
    """Everything about the current run, one per pytest process (controller and xdist workers)."""

    config: pytest.Config
    inventory: Inventory
    targets: list[Node]
    run_id: str
    started: dt.datetime
    report_dir: Path
    waivers: dict[str, Maintenance]
    warnings: list[str]
    is_worker: bool
    all_nodes: list[Node] = field(default_factory=list)  # the inventory's nodes (static and discovered), untargeted too
    records: Records = field(default_factory=Records)
    summary_path: Path | None = None
    _prober: ProberProtocol | None = None
    _t0: float = field(default_factory=time.monotonic)

    @property
    def control_dir(self) -> Path:
        # short (unix socket paths are limited to ~100 bytes) and shared by the run's workers
        return Path(tempfile.gettempdir()) / f"alice-acc-{self.run_id.rsplit('-', 1)[-1]}"

    @property
    def prober(self) -> ProberProtocol:
        if self._prober is None:
            self._prober = self.config.hook.pytest_acceptance_make_prober(
                config=self.config, inventory=self.inventory, control_dir=self.control_dir)
        assert self._prober is not None
        return self._prober

    def to_workerinput(self) -> dict[str, Any]:
        return {
            "targets": [n.to_dict() for n in self.targets],
            "all_nodes": [n.to_dict() for n in self.all_nodes],
            "run_id": self.run_id,
            "started": self.started.isoformat(),
            "waivers": {k: {"node": m.node, "reason": m.reason, "until": m.until.isoformat()}
                        for k, m in self.waivers.items()},
            "warnings": self.warnings,
        }


def get_run(config: pytest.Config) -> Run | None:
    return config.stash.get(RUN_KEY, None)


def _usage(message: str) -> NoReturn:
    raise pytest.UsageError(message)


# --------------------------------------------------------------------------- options and configuration


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("acceptance", "ALICE build-cluster acceptance")
    group.addoption("--inventory", metavar="FILE", help="inventory YAML of the cluster to check")
    group.addoption("--role", action="append", metavar="ROLE",
                    help="only nodes with this role: master, agent (repeatable or comma-separated)")
    group.addoption("--nodes", action="append", metavar="GLOBS",
                    help="only nodes whose name matches one of these globs, e.g. 'alibuild0*,alimesos01'")
    group.addoption("--report-dir", metavar="DIR", help="where summary.json goes (default: reports/out)")
    group.addoption("--no-discovery", action="store_true", help="ignore the inventory's discovery section")


def _new_run_id(now: dt.datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _maintenance(inventory: Inventory, targets: list[Node], today: dt.date) -> tuple[dict[str, Maintenance], list[str]]:
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, doc in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    path = config.getoption("inventory", None)
    if not path:
        return
    if getattr(config.option, "tbstyle", None) == "auto":
        config.option.tbstyle = "short"  # an operator wants the reason, not the suite's internals
    inv_path = Path(path)
    if not inv_path.is_absolute():
        inv_path = config.invocation_params.dir / inv_path
    try:
        inventory = _load_inventory(inv_path)
    except InventoryError as e:
        _usage(str(e))
    report_dir = Path(config.getoption("report_dir") or config.rootpath / "reports" / "out")
    if not report_dir.is_absolute():
        report_dir = config.invocation_params.dir / report_dir
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKERINPUT_KEY in workerinput:
        data = workerinput[_WORKERINPUT_KEY]
        run = Run(
            config=config, inventory=inventory, targets=[Node.from_dict(d) for d in data["targets"]],
            run_id=data["run_id"], started=dt.datetime.fromisoformat(data["started"]), report_dir=report_dir,
            waivers={k: Maintenance(node=v["node"], reason=v["reason"], until=dt.date.fromisoformat(v["until"]))
                     for k, v in data["waivers"].items()},
            warnings=list(data["warnings"]), is_worker=True, all_nodes=[Node.from_dict(d) for d in data["all_nodes"]],
        )
    else:
        nodes = list(inventory.nodes)
        if inventory.discovery and not config.getoption("no_discovery"):
            try:
                nodes = discover(inventory)
            except DiscoveryError as e:
                _usage(f"{inventory.path}: {e}")
        roles, patterns = split_patterns(config.getoption("role")), split_patterns(config.getoption("nodes"))
        try:
            targets = select(nodes, roles, patterns)
        except TargetError as e:
            _usage(f"{inventory.path}: {e}")
        if wants_cluster(roles, patterns):
            targets.append(CLUSTER_NODE)  # the cluster-wide (API) checks' pseudo-node
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        waivers, warnings = _maintenance(inventory, targets, dt.date.today())
        run = Run(config=config, inventory=inventory, targets=targets, run_id=_new_run_id(started),
                  started=started, report_dir=report_dir, waivers=waivers, warnings=warnings, is_worker=False,
                  all_nodes=nodes)
    config.stash[RUN_KEY] = run
    config.pluginmanager.register(_Recorder(run), _RECORDER_NAME)
    config.pluginmanager.import_plugin("acceptance.apifixtures")  # the API snapshot fixtures


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): hand the resolved targets to each worker, so discovery runs once."""
    run = get_run(node.config)
    if run is not None:
        node.workerinput[_WORKERINPUT_KEY] = run.to_workerinput()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With --inventory, the load-balancing modes give each node's checks to one worker (one connection)."""
    if get_run(config) is None or config.getoption("dist") not in ("load", "loadscope", "loadgroup"):
        return None
    from acceptance.scheduling import NodeScheduling

    return NodeScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_acceptance_make_prober(config: pytest.Config, inventory: Inventory, control_dir: Path) -> ProberProtocol:
    return Prober(inventory, control_dir)


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = get_run(config)
    if run is None:
        return []
    lines = [f"inventory: {run.inventory.path} (cluster {run.inventory.cluster}), run {run.run_id}",
             f"targets: {describe_nodes(run.targets)}"]
    lines += [f"waived: {m.node}: {m.reason} (until {m.until.isoformat()})" for m in run.waivers.values()
              if any(n.name == m.node for n in run.targets)]
    lines += [f"WARNING: {w}" for w in run.warnings]
    return lines


# --------------------------------------------------------------------------- collection

CHECKS_DIR = Path(checks.__file__).resolve().parent


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect the check modules (checks/*.py), whose names do not follow python_files."""
    if file_path.suffix != ".py" or file_path.name.startswith("_") or file_path.resolve().parent != CHECKS_DIR:
        return None
    if parent.session.isinitpath(file_path) or any(
        fnmatch.fnmatch(file_path.name, pattern) for pattern in parent.config.getini("python_files")
    ):
        return None  # pytest's python plugin collects it already
    module: pytest.Collector = pytest.Module.from_parent(parent, path=file_path)
    return module



@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list[pytest.Item] | None:
    spec = spec_of(obj)
    if spec is None or not inspect.isfunction(obj):
        return None
    run = get_run(collector.config)
    if run is None:
        collector.config.stash[NO_INVENTORY_KEY] = str(collector.path)
        return []
    items: list[pytest.Item] = []
    for node in run.targets:
        if not spec.applies_to(node):
            continue
        for param in spec.params(run.inventory, node):
            info = CheckItem(spec=spec, check_id=spec.check_id(param), node=node, param=param)
            item = pytest.Function.from_parent(collector, name=info.test_id, callobj=obj)
            item.stash[ITEM_KEY] = info
            item.user_properties.extend(info.properties())
            item.add_marker(node.role)
            item.add_marker(spec.severity)
            items.append(item)
    return items


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    where = config.stash.get(NO_INVENTORY_KEY, None)
    if where is not None:
        _usage(f"{where}: these checks need an inventory; fix: pass --inventory FILE "
               "(or run the suite's own tests: pytest tests/unit)")


# --------------------------------------------------------------------------- fixtures


def _item_info(request: pytest.FixtureRequest) -> CheckItem:
    info: CheckItem | None = request.node.stash.get(ITEM_KEY, None)
    if info is None:
        raise pytest.UsageError(f"{request.node.nodeid}: fixture '{request.fixturename}' is only for @check tests")
    return info


def _block(item: pytest.Item, by: str, message: str) -> NoReturn:
    text = f"blocked by {by}: {message}"
    item.stash[STATUS_KEY] = ("blocked", by, text)
    pytest.skip(text)


def block(item: pytest.Item, by: str, message: str) -> NoReturn:
    """Report ``item`` as ``blocked`` by the root check ``by`` (e.g. ``api.nomad.reachable``), with why."""
    _block(item, by, message)


def _require(request: pytest.FixtureRequest, needs: tuple[Need, ...]) -> None:
    """Block the check when what it needs of the node is not there (the root check fails instead)."""
    run = _need_run(request.config)
    info = _item_info(request)
    if "reachable" in needs or "ssh" in needs:
        pinged = run.prober.ping(info.node)
        if not pinged.ok and not pinged.error:
            _block(request.node, PING_CHECK, pinged.message)
    if "ssh" in needs:
        connected = run.prober.facts(info.node).connection
        if not connected.ok:
            _block(request.node, SSH_CHECK, connected.message)


def _need_run(config: pytest.Config) -> Run:
    run = get_run(config)
    if run is None:
        raise pytest.UsageError("no inventory; fix: pass --inventory FILE")
    return run


@dataclass(frozen=True)
class NodeProbe:
    """The root probes of one node, for node.ping and node.ssh."""

    node: Node
    prober: ProberProtocol

    def ping(self) -> ProbeResult:
        return self.prober.ping(self.node)

    def connect(self) -> FactsResult:
        return self.prober.facts(self.node)


@pytest.fixture(scope="session")
def inventory(request: pytest.FixtureRequest) -> Inventory:
    return _need_run(request.config).inventory


@pytest.fixture(scope="session")
def expect(inventory: Inventory) -> Expectations:
    return inventory.expect


@pytest.fixture(scope="session")
def all_nodes(request: pytest.FixtureRequest) -> list[Node]:
    """Every node of the inventory (static and discovered), targeted or not; for the cluster-wide checks."""
    return [n for n in _need_run(request.config).all_nodes if n.role != CLUSTER]


@pytest.fixture
def node(request: pytest.FixtureRequest) -> Node:
    """The node this check runs on."""
    return _item_info(request).node


@pytest.fixture
def param(request: pytest.FixtureRequest) -> str:
    """The ``each`` value of this check (e.g. the unit of agent.units.<unit>)."""
    value = _item_info(request).param
    if value is None:
        raise pytest.UsageError(f"{request.node.nodeid}: fixture 'param' needs @check(each=...)")
    return value


@pytest.fixture
def probe(request: pytest.FixtureRequest) -> NodeProbe:
    """Ping and connection results of the node (for the root checks; honours the check's ``needs``)."""
    info = _item_info(request)
    _require(request, info.spec.needs)
    return NodeProbe(info.node, _need_run(request.config).prober)


@pytest.fixture
def facts(request: pytest.FixtureRequest) -> NodeFacts:
    """The node's facts, gathered once per node and run in one ssh round trip."""
    info = _item_info(request)
    _require(request, ("ssh",))
    gathered = _need_run(request.config).prober.facts(info.node).facts
    if gathered is None:
        raise FactMissing("no facts gathered from the node")
    return gathered


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Any:
    """A testinfra host for the node, on the run's ssh master connection (for checks that need more)."""
    info = _item_info(request)
    _require(request, ("ssh",))
    return _need_run(request.config).prober.host(info.node)


# --------------------------------------------------------------------------- outcomes


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    info = item.stash.get(ITEM_KEY, None)
    run = get_run(item.config)
    if info is None or run is None:
        return
    waiver = run.waivers.get(info.node.name)
    if waiver is not None:
        text = f"waived: {waiver.reason} (maintenance until {waiver.until.isoformat()})"
        item.stash[STATUS_KEY] = ("waived", None, text)
        pytest.skip(text)


def _first_line(text: str, limit: int = 500) -> str:
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def classify(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> tuple[str, str, str | None]:
    """(outcome, message, blocked_by) of one phase's report."""
    if report.passed:
        return "passed", "", None
    if report.skipped:
        status = item.stash.get(STATUS_KEY, None)
        if status is not None:
            return status[0], status[2], status[1]
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return "error", f"the check did not run: {_first_line(reason)}", None
    excinfo = call.excinfo
    if excinfo is None:
        return "error", _first_line(str(report.longrepr)), None
    if call.when == "call" and excinfo.errisinstance((AssertionError, pytest.fail.Exception)):
        message = getattr(excinfo.value, "msg", None) or str(excinfo.value)
        return "failed", _first_line(message) or "check failed", None
    if excinfo.errisinstance(CheckError):
        return "error", _first_line(str(excinfo.value)), None
    return "error", _first_line(f"{excinfo.typename}: {excinfo.value}"), None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    if item.stash.get(ITEM_KEY, None) is None:
        return report
    outcome, message, blocked_by = classify(item, call, report)
    if report.when == "teardown" and report.passed:
        return report  # carries the decisive phase's outcome through item.user_properties
    props = [("outcome", outcome), ("message", message), ("blocked_by", blocked_by or "")]
    report.user_properties.extend(props)
    if report.when == "call" or not report.passed:
        item.user_properties.extend(props)  # so that JUnit (which reads the teardown report) shows them
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    # collection reports come through here too, and they carry no user_properties
    if not getattr(report, "user_properties", None) or (report.when == "teardown" and not report.failed):
        return None
    outcome = dict(report.user_properties).get("outcome")
    if report.skipped and outcome == "blocked":
        return "blocked", "b", ("BLOCKED", {"yellow": True})
    if report.skipped and outcome == "waived":
        return "waived", "w", ("WAIVED", {"cyan": True})
    if report.failed and outcome == "error" and report.when == "call":
        return "error", "E", ("ERROR", {"red": True})
    return None


def record_of(report: pytest.TestReport) -> Record | None:
    props = dict(report.user_properties)
    if "check" not in props or "outcome" not in props:
        return None
    return Record(
        check=str(props["check"]), node=str(props["node"]), outcome=str(props["outcome"]),
        severity=str(props["severity"]), message=str(props.get("message", "")),
        duration_s=round(report.duration, 3), blocked_by=str(props.get("blocked_by") or "") or None,
        role=str(props.get("role", "")), runbook=str(props.get("runbook", "")),
        remediation=str(props.get("remediation") or "") or None, test_id=report.nodeid,
    )


class _Recorder:
    """Registered per run: collects one record per check and node. With xdist, the controller receives
    every worker's reports (user_properties included) through this hook, so its records are complete."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = record_of(report)
        if record is not None:
            self.run.records.add(record)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = get_run(session.config)
    if run is None:
        return
    if run._prober is not None:
        run._prober.close()
    if run.is_worker:
        return
    nodes = []
    for n in run.targets:
        waiver = run.waivers.get(n.name)
        nodes.append({"name": n.name, "role": n.role, "kind": n.kind, "address": n.address, "source": n.source,
                      "maintenance": {"reason": waiver.reason, "until": waiver.until.isoformat()} if waiver else None})
    summary = Summary(run_id=run.run_id, cluster=run.inventory.cluster, inventory=str(run.inventory.path),
                      started=run.started.isoformat(), duration_s=time.monotonic() - run._t0,
                      records=list(run.records), exit_status=int(exitstatus), warnings=run.warnings, nodes=nodes)
    run.summary_path = write_summary(summary, run.report_dir)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = get_run(config)
    if run is None or run.is_worker:
        return
    tr = terminalreporter
    by_node: dict[str, list[Record]] = defaultdict(list)
    for r in run.records:
        by_node[r.node].append(r)
    tr.section(f"{run.inventory.cluster}: per node", sep="=")
    healthy: list[str] = []
    silent: list[str] = []
    for n in run.targets:
        records = by_node.get(n.name, [])
        waiver = run.waivers.get(n.name)
        if waiver is not None and records:
            tr.write_line(f"{n.name}: WAIVED {len(records)} checks: {waiver.reason} (until {waiver.until})",
                          cyan=True)
            continue
        bad = [r for r in records if r.outcome in ("failed", "error")]
        blocked = [r for r in records if r.outcome == "blocked"]
        if not records:
            silent.append(n.name)
            continue
        if not bad and not blocked:
            healthy.append(n.name)
            continue
        tr.write_line(f"{n.name} ({n.role}{', ' + n.kind if n.kind else ''}):", bold=True)
        for r in bad:
            fix = f" [remediation: {r.remediation}]" if r.remediation and r.outcome == "failed" else ""
            tr.write_line(f"    {r.outcome.upper():7} {r.check}: {r.message}{fix}", red=True)
        if blocked:
            roots = sorted({r.blocked_by or "?" for r in blocked})
            tr.write_line(f"    BLOCKED {len(blocked)} checks by {', '.join(roots)}", yellow=True)
    if healthy:
        tr.write_line(f"all checks passed on {len(healthy)} nodes: {', '.join(healthy)}", green=True)
    if silent:
        tr.write_line(f"no check ran on {len(silent)} nodes: {', '.join(silent)}", yellow=True)
    for w in run.warnings:
        tr.write_line(f"WARNING: {w}", yellow=True)
    if run.summary_path is not None:
        tr.write_line(f"summary: {run.summary_path}")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = get_run(config)
    if run is not None and not run.is_worker:
        shutil.rmtree(run.control_dir, ignore_errors=True)
    recorder = config.pluginmanager.get_plugin(_RECORDER_NAME)
    if recorder is not None:
        config.pluginmanager.unregister(recorder)


# --------------------------------------------------------------------------- pytest-html columns


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells: list[str]) -> None:
    cells.insert(1, "<th>Node</th>")
    cells.insert(2, "<th>Outcome</th>")


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report: pytest.TestReport, cells: list[str]) -> None:
    props = dict(report.user_properties)
    cells.insert(1, f"<td>{props.get('node', '')}</td>")
    cells.insert(2, f"<td>{props.get('outcome', '')}</td>")

