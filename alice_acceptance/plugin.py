"""The pytest plugin: options and hooks only; the machinery lives beside it (configure, collection, records,
terminal) and below it (the core's fixtures, outcomes and transport; remediation).

Inert unless ``--inventory`` is given (collecting checks without it is a usage error). Registered as the
``alice_acceptance.plugin`` pytest11 entry point, so the installed package brings it wherever pytest runs.

The run's state is kept by its owners: the core's parts (acceptance.run.Run), remediation's
(remediation.context.RemediationRun, given the core's parts it reads) and this layer's (alice_acceptance.state).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from acceptance import fixtures, hookspecs, learning, verdicts
from acceptance.clients.transport import requests_made
from acceptance.inventory import CLUSTER
from acceptance.outcomes import Verdict, classify
from acceptance.printable import escape_controls
from acceptance.redaction import redact, remember_environment
from acceptance.run import ITEM_KEY, RUN_KEY, WORKERINPUT_KEY, Connections, Run, Scope, get_run
from acceptance.transport.nodes import Nodes
from alice_acceptance import collection, notify, terminal, watchdog
from alice_acceptance.configure import build_run, usage
from alice_acceptance.converge import ConvergeLoop
from alice_acceptance.records import Recorder, summary_of
from alice_acceptance.state import APP_KEY, AppState, app_state
from remediation import fixtures as remediation_fixtures
from remediation import phase
from remediation.context import RemediationRun, remediation_of
from remediation.model import MODES
from remediation.prepare import prepare
from reports import write_all
from reports.pytest_html_hooks import HtmlReport
from reports.summary import atomic_write, is_healthy

RECORDER = "acceptance-recorder"
SEEDS_CACHE_KEY = "alice-acceptance/commands"
MARKERS = {
    "master": "a check that runs on masters",
    "agent": "a check that runs on agents",
    "cluster": "a cluster-wide check (node 'cluster'): the cluster APIs, drift",
    "critical": "severity critical: the node cannot do its job",
    "major": "severity major: the node works, degraded or at risk",
    "minor": "severity minor",
}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("acceptance", "ALICE build-cluster acceptance")
    group.addoption("--inventory", metavar="FILE", help="inventory YAML of the cluster to check")
    group.addoption("--role", action="append", metavar="ROLE",
                    help="only nodes with this role: master, agent, cluster (repeatable or comma-separated)")
    group.addoption("--nodes", action="append", metavar="GLOBS",
                    help="only nodes whose name matches one of these globs, e.g. 'alibuild0*,alimesos01'")
    group.addoption("--report-dir", metavar="DIR", help="where the reports go (default: reports/out)")
    group.addoption("--no-discovery", action="store_true", help="ignore the inventory's discovery section")
    group.addoption("--checks-dir", action="append", metavar="DIR",
                    help="a directory of site checks, collected with the built-in ones (repeatable)")
    group.addoption("--remediate", choices=MODES, default="off",
                    help="fix failed checks with their remediation: off (default), dry-run (plan and record only), "
                         "safe (non-disruptive actions), all (reboots and drains too, under the guardrails)")
    moments = parser.getgroup("acceptance-moments", "ALICE acceptance: the three moments")
    moments.addoption("--moment", choices=("check", "nightly", "provision", "gate"),
                      help="what this run is for (set by --gate and --converge-timeout; the nightly report sets "
                           "nightly): recorded in the reports, compared with runs of the same moment")
    moments.addoption("--gate", metavar="ACTION:NODE",
                      help="before a rebuild, reboot or deletion (rebuild:alimesos02): go (exit 0) or no-go (exit 1) "
                           "with every reason")
    moments.addoption("--prepare", action="store_true",
                      help="with --gate: drain the agent / move the leadership off the master first (under the "
                           "remediation lock), then decide")
    moments.addoption("--allow-allocations", action="append", metavar="JOBS",
                      help="with --gate: allocations of these jobs may still run on the agent (comma-separated)")
    moments.addoption("--converge-timeout", type=float, metavar="SECONDS",
                      help="after provisioning: rerun the failing checks until every check passes or the time is up")
    moments.addoption("--converge-interval", type=float, default=15, metavar="SECONDS",
                      help="with --converge-timeout: pause between rounds (default 15)")
    moments.addoption("--shard", metavar="I/N", help="check only the I-th of N stable slices of the nodes")
    moments.addoption("--run-id", metavar="ID", help="this run's id (shards of one nightly run share it)")
    group.addoption("--run-timeout", type=float, metavar="SECONDS",
                    help="a watchdog: interrupt the run after this long (it still writes its reports, the checks "
                         "that did not run counted as not_run)")
    moments.addoption("--metrics-textfile", metavar="PATH",
                      help="also write the Prometheus metrics there (node exporter's textfile collector)")
    parser.addini("acceptance_checks", type="paths", default=[],
                  help="directories of site checks (relative to the ini file)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    # openstacksdk warns about its own future API changes on every call; they say nothing about the cluster
    config.addinivalue_line("filterwarnings", "ignore::Warning:openstack.*")
    if not config.pluginmanager.has_plugin("acceptance.verdicts"):  # the xdist controller needs it too
        config.pluginmanager.register(verdicts, "acceptance.verdicts")
    path = config.getoption("inventory", None)
    if not path:
        return
    if getattr(config.option, "tbstyle", None) == "auto":
        config.option.tbstyle = "short"  # an operator wants the reason, not the suite's internals
    remember_environment()
    if not hasattr(config, "workerinput"):  # before discovery: nothing touches the network unwatched
        config.add_cleanup(watchdog.install(config.getoption("run_timeout")))
    run = build_run(config, path)
    if not run.info.is_worker:  # the run's ssh control sockets go with it, whatever ends the run
        config.add_cleanup(lambda: shutil.rmtree(run.connections.control_dir, ignore_errors=True))
    config.stash[RUN_KEY] = run
    if config.pluginmanager.hasplugin("html"):  # its hooks are pytest-html's: unknown to pluggy under -p no:html
        config.pluginmanager.register(HtmlReport(config, run.info.report_dir, run.info.run_id), HtmlReport.NAME)
    config.stash[APP_KEY] = AppState(api_baseline=requests_made())
    args = collection.collection_args(config, run.scope)
    if args is not None:
        config.args = args
    # the checks' `host` is this suite's (per node, batched); testinfra's own fixture would shadow it
    testinfra_plugin = config.pluginmanager.get_plugin("testinfra")
    if testinfra_plugin is not None:
        config.pluginmanager.unregister(testinfra_plugin)
    config.pluginmanager.register(Recorder(run.results), RECORDER)
    config.pluginmanager.register(fixtures, "acceptance.fixtures")
    config.pluginmanager.register(learning.Learning(run), learning.NAME)
    config.pluginmanager.import_plugin("acceptance.apifixtures")
    config.pluginmanager.register(remediation_fixtures, "remediation.fixtures")
    phase.start(config, RemediationRun(run.info, run.scope, run.connections, run.results))
    if config.getoption("converge_timeout") is not None:
        config.pluginmanager.register(ConvergeLoop(run.scope, run.connections), "acceptance-converge")


def pytest_sessionstart(session: pytest.Session) -> None:
    run = get_run(session.config)
    if run is not None:  # here, not at configure: pytest's cache (the learned commands) is set up by then
        run.connections.nodes = session.config.hook.pytest_acceptance_make_nodes(config=session.config, run=run)


def _cache(config: pytest.Config) -> Any:
    return getattr(config, "cache", None)  # absent with -p no:cacheprovider


@pytest.hookimpl(trylast=True)
def pytest_acceptance_make_nodes(config: pytest.Config, run: Run) -> Nodes:
    seeds = _cache(config).get(SEEDS_CACHE_KEY, {}) if _cache(config) is not None else {}
    return Nodes(run.scope.inventory, run.connections.control_dir, seeds=seeds if isinstance(seeds, dict) else {})


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): hand the resolved run to each worker, so discovery runs once."""
    run = get_run(node.config)
    if run is not None:
        node.workerinput[WORKERINPUT_KEY] = run.to_workerinput()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With --inventory, the load-balancing modes give each node's checks to one worker (one connection)."""
    if get_run(config) is None or config.getoption("dist") not in ("load", "loadscope", "loadgroup"):
        return None
    from alice_acceptance.scheduling import NodeScheduling

    return NodeScheduling(config, log)


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = get_run(config)
    if run is None:
        return []
    from acceptance.inventory import describe_nodes

    scope = run.scope
    lines = [f"inventory: {scope.inventory.path} (cluster {scope.inventory.cluster}), run {run.info.run_id}",
             f"targets: {describe_nodes(scope.targets)}"]
    lines += [f"waived: {m.node}: {m.reason} (until {m.until.isoformat()})" for m in scope.waivers.values()
              if any(n.name == m.node for n in scope.targets)]
    lines += [f"WARNING: {w}" for w in scope.warnings]
    return lines


# --------------------------------------------------------------------------- collection


def _scope(config: pytest.Config) -> Scope | None:
    run = get_run(config)
    return run.scope if run is not None else None


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    return collection.collect_file(file_path, parent, collection.cached_dirs(parent.config, _scope(parent.config)))


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list[pytest.Item] | None:
    return collection.make_items(collector, name, obj, _scope(collector.config))


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = collection.missing_inventory(config) or collection.unknown_remediation(items)
    if problem is not None:
        usage(problem)


def pytest_collection_finish(session: pytest.Session) -> None:
    run = get_run(session.config)
    if run is None:
        return
    for item in session.items:
        info = item.stash.get(ITEM_KEY, None)
        if info is not None:
            run.results.items[info.node.name].append(item)
    recorder = session.config.pluginmanager.get_plugin(RECORDER)
    if recorder is not None:
        recorder.expect(session.items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    recorder = node.config.pluginmanager.get_plugin(RECORDER)
    if recorder is not None:
        recorder.expect_ids(ids)


# --------------------------------------------------------------------------- running


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    run = get_run(session.config)
    gate = run.scope.gate if run is not None else None
    if gate is not None and gate.prepare and not session.config.option.collectonly:
        prepare(remediation_of(session.config), phase.say(session.config))  # the checks decide on the prepared state
    _prepare_nodes(session)
    return (yield)


def _prepare_nodes(session: pytest.Session) -> None:
    """In one process (no xdist), open every node's connection and fetch its answers concurrently up front."""
    run = get_run(session.config)
    if run is None or run.connections.nodes is None or run.info.is_worker or session.config.option.collectonly:
        return
    if session.config.pluginmanager.hasplugin("dsession"):
        return  # the xdist controller runs no check; each worker prepares its nodes as they come
    scope, items = run.scope, run.results.items
    run.connections.nodes.prepare_all(n for n in scope.targets
                                      if items.get(n.name) and n.role != CLUSTER and n.name not in scope.waivers)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    run = get_run(item.config)
    info = item.stash.get(ITEM_KEY, None)
    if info is None or run is None:
        return
    waiver = run.scope.waivers.get(info.node.name)
    if waiver is not None:
        from acceptance.outcomes import Waived

        raise Waived(f"waived: {waiver.reason} (maintenance until {waiver.until.isoformat()})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    if item.stash.get(ITEM_KEY, None) is None:
        return report
    phase = classify(call.when, call.excinfo, report)
    verdict = verdicts.make(item, Verdict(phase.outcome, redact(phase.message), phase.blocked_by))
    _redact_longrepr(report)
    if verdict is not None:
        verdicts.settle(item, report, verdict)
    return report


def _redact_longrepr(report: pytest.TestReport) -> None:
    """No secret and no control character in what JUnit, pytest-html and the terminal show (a server may echo a
    token in an error; an API's text may carry ANSI escapes)."""
    if report.longrepr is None:
        return
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, line, reason = report.longrepr
        report.longrepr = (path, line, escape_controls(redact(str(reason))))
        return
    text = report.longreprtext
    clean = escape_controls(redact(text), lines=True)
    if clean != text:
        report.longrepr = clean


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    return terminal.teststatus(report)


# --------------------------------------------------------------------------- end of the run


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run, app = get_run(session.config), app_state(session.config)
    if run is None or app is None:
        return
    if run.connections.nodes is not None:
        _close_nodes(session.config, run.connections, run.connections.nodes)
    for api, count in requests_made().items():  # this run's, in a process that may have run others before
        app.api_requests[api] = count - app.api_baseline.get(api, 0)
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["acceptance_api_requests"] = dict(app.api_requests)
    if run.info.is_worker or session.config.option.collectonly:
        return
    recorder = session.config.pluginmanager.get_plugin(RECORDER)
    assert isinstance(recorder, Recorder)
    remediation = remediation_of(session.config)
    summary = summary_of(run, recorder, exitstatus, remediation.audit, app.api_requests)
    if exitstatus == pytest.ExitCode.OK and not is_healthy(summary.to_json()):
        session.exitstatus = summary.exit_status = pytest.ExitCode.TESTS_FAILED  # a gate blocked: no go
    session.exitstatus = summary.exit_status = phase.exit_status(remediation, int(session.exitstatus))
    app.outputs.update(write_all(summary, run.info.report_dir))
    textfile = session.config.getoption("metrics_textfile")
    if textfile:
        app.outputs["textfile"] = copy_atomically(app.outputs["metrics"], Path(textfile))
    # last: the message links to the reports; it is bounded in time and never changes the exit status
    notify.after_run(session.config, run.scope.inventory.notify.mattermost, app.outputs)


def _close_nodes(config: pytest.Config, connections: Connections, nodes: Nodes) -> None:
    """Keep what this run learned (next run's one round trip), hand the ssh counters to the summary."""
    cache = _cache(config)
    if cache is not None and nodes.learned():
        known = cache.get(SEEDS_CACHE_KEY, {})
        cache.set(SEEDS_CACHE_KEY, {**(known if isinstance(known, dict) else {}), **nodes.learned()})
    counters = nodes.counters()
    if hasattr(config, "workeroutput"):
        config.workeroutput["acceptance_transport"] = counters
    connections.counters.update(counters)
    nodes.close()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    run, app = get_run(node.config), app_state(node.config)
    if run is not None and app is not None:
        output = getattr(node, "workeroutput", {})
        run.connections.counters.update(output.get("acceptance_transport", {}))
        for api, count in output.get("acceptance_api_requests", {}).items():
            app.api_requests[api] = app.api_requests.get(api, 0) + count


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run, app = get_run(config), app_state(config)
    if run is None or app is None or run.info.is_worker:
        return
    terminal.per_node(terminalreporter, run.scope, run.results)
    for line in (terminal.transport_line(run.connections.counters), terminal.api_line(app.api_requests)):
        if line:
            terminalreporter.write_line(line)
    if run.scope.gate is not None:
        terminal.gate_verdict(terminalreporter, run.scope, run.results)
    for kind in ("html", "summary", "metrics", "textfile", "index"):
        if kind in app.outputs:
            terminalreporter.write_line(f"{kind}: {app.outputs[kind]}")


def copy_atomically(source: Path, target: Path) -> Path:
    """node exporter's textfile collector must never read half a file."""
    return atomic_write(target, source.read_bytes())


def pytest_unconfigure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin(RECORDER)
    if recorder is not None:
        config.pluginmanager.unregister(recorder)
