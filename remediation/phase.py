"""Where remediation meets pytest's run loop, as a plugin object registered only when ``--remediate`` is not
``off`` (as xdist registers its DSession).

A failed check that names a remediation keeps its reports until the loop ends, so that the guardrails see every
node first; a loop that did not end (Ctrl-C, SIGTERM, ``--run-timeout``, ``-x``) remediates nothing. Then, in
pytest-rerunfailures' idiom, each check whose remediation ran is logged as three steps: the failing attempt
(outcome ``rerun``), the fix (outcome ``rerun``, what the action did), and the re-check, the final report
(``remediated`` or ``failed``). A check whose remediation did not run is logged once, failed, with why not. Only
a serial run remediates: its guardrails count failures across the whole cluster in one process.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator

import pytest
from _pytest.runner import runtestprotocol

from acceptance import verdicts
from acceptance.printable import escape_controls
from acceptance.run import ITEM_KEY
from remediation.context import REMEDIATION_KEY, RemediationRun
from remediation.decision import Decision, Failure, detail
from remediation.engine import ACTION_KEY, Engine
from remediation.model import MODES, Mode
from reports.outcomes import verdict_of

PLUGIN_NAME = "acceptance-remediation"
NEEDS_HUMAN = 6  # the exit status when a remediation escalated to a human (documented in the CLI and README)


def mode_of(config: pytest.Config) -> Mode:
    value = config.getoption("remediate", "off") or "off"
    if value not in MODES:
        raise pytest.UsageError(f"--remediate={value}: use one of {', '.join(MODES)}")
    return value


def say(config: pytest.Config) -> Callable[[str], None]:
    """A line on the terminal, as the run goes (remediation and preparation say what they do)."""
    def write(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")  # registered after this plugin's configure
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(escape_controls(message), cyan=True)  # it may quote a human's or an API's words

    return write


def start(config: pytest.Config, run: RemediationRun) -> None:
    """Keep what remediation reads of the run (its fixtures are set up in every process, whatever the mode);
    with a mode other than ``off``, register the remediation phase."""
    config.stash[REMEDIATION_KEY] = run
    mode = mode_of(config)
    if mode == "off":
        return
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(f"--remediate={mode} runs in one process (its guardrails count failures across the "
                                "cluster): drop -n / --dist")
    config.pluginmanager.register(RemediationPlugin(Engine(run, mode, say=say(config))), PLUGIN_NAME)
    run.mode = mode


def exit_status(run: RemediationRun, status: int) -> int:
    """A failed run whose remediation escalated to a human exits ``NEEDS_HUMAN``, not 1."""
    if status == pytest.ExitCode.TESTS_FAILED and any(e.get("verdict") == "escalated" for e in run.audit):
        return NEEDS_HUMAN
    return status


class RemediationPlugin:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @pytest.hookimpl(wrapper=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> Generator[None, object, object]:
        """The action the check's remediation fixture gave, kept for the remediation phase."""
        if pyfuncitem.stash.get(ITEM_KEY, None) is not None:
            name = pyfuncitem.stash[ITEM_KEY].spec.remediation
            if name and name in pyfuncitem.funcargs:  # pytest forgets funcargs at teardown
                pyfuncitem.stash[ACTION_KEY] = pyfuncitem.funcargs[name]
        return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        info = item.stash.get(ITEM_KEY, None)
        if info is None or not info.spec.remediation:
            return None
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        if not self.engine.defer(item, reports):
            log_reports(item, reports)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        ended = False
        try:
            result = yield
            ended = not (session.shouldstop or session.shouldfail)
            return result
        finally:
            self.finish(session, ended)

    def finish(self, session: pytest.Session, ended: bool) -> None:
        """Remediate (only after a loop that ran to its end), then log the kept reports as they ended."""
        engine = self.engine
        if not ended and not engine.failures:
            return
        try:  # with no failure too: nodes this suite drained earlier may be given back
            if ended:
                engine.remediate()
            else:
                why = session.shouldstop or session.shouldfail
                engine.interrupted(f"the run was stopped before its checks ended ({why})" if why
                                   else "the run was interrupted before its checks ended")
        finally:
            for f in engine.failures:
                log_failure(f, engine.decisions.get(f.key), engine.mode)


def log_failure(f: Failure, d: Decision | None, mode: str) -> None:
    """The failure's reports, in pytest-rerunfailures' idiom when its remediation ran."""
    item, reports = f.item, f.reports
    call = next(r for r in reports if r.when == "call")
    was = verdict_of(call)
    first = was.message if was is not None else f.message
    if d is None or not d.acted:
        if d is not None and was is not None:
            verdicts.change(item, reports, was, message=f"{first} [remediation {d.verdict}: {d.reason}]",
                            remediation_detail=detail(d, mode))
        log_reports(item, reports)
        return
    setup = [r for r in reports if r.when == "setup"]
    teardown = [r for r in reports if r.when == "teardown"]
    # the re-check's own report (made by pytest's hooks, as any check's); the failing call when none ran
    final = d.final if d.final is not None else copy.copy(call)
    final.duration = d.duration_s
    for r in setup:
        item.ihook.pytest_runtest_logreport(report=r)
    call.outcome = "rerun"  # type: ignore[assignment]  # the failing attempt, as pytest-rerunfailures reports it
    item.ihook.pytest_runtest_logreport(report=call)
    item.ihook.pytest_runtest_logreport(report=fix_report(item, d))
    base = verdict_of(final) or was
    if base is not None:
        if d.fixed:
            verdicts.change(item, [final, *teardown], base, outcome="remediated", first_message=first,
                            message=f"remediated ({d.action}: {d.reason}); was: {first}",
                            remediation_detail=detail(d, mode))
        else:
            verdicts.change(item, [final, *teardown], base, first_message=first,
                            message=f"{base.message or first} [remediation {d.verdict}: {d.reason}]",
                            remediation_detail=detail(d, mode))
    item.ihook.pytest_runtest_logreport(report=final)
    for r in teardown:
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def apply_decision(item: pytest.Item, reports: list[pytest.TestReport], d: Decision, mode: str) -> None:
    """A provisioning round's reports (not logged yet: only the last round is) as the remediation left them."""
    call = next(r for r in reports if r.when == "call")
    was = verdict_of(call)
    if was is None:
        return
    if d.fixed:
        call.outcome, call.longrepr = "passed", None
        verdicts.change(item, reports, was, outcome="remediated", first_message=was.message,
                        message=f"remediated ({d.action}: {d.reason}); was: {was.message}",
                        remediation_detail=detail(d, mode))
    else:
        verdicts.change(item, reports, was, message=f"{was.message} [remediation {d.verdict}: {d.reason}]",
                        remediation_detail=detail(d, mode))


def engine_of(config: pytest.Config) -> Engine | None:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    return plugin.engine if isinstance(plugin, RemediationPlugin) else None


def fix_report(item: pytest.Item, d: Decision) -> pytest.TestReport:
    """The remediation as its own step: outcome ``rerun`` (not a verdict, so it carries none), what the action did
    in its text."""
    return pytest.TestReport(item.nodeid, item.location, {}, "rerun", f"remediation {d.action}: {d.reason}",  # type: ignore[arg-type]
                             "call", [("remediation", f"{d.action}: {d.verdict}: {d.reason}")], d.duration_s)


def log_reports(item: pytest.Item, reports: list[pytest.TestReport]) -> None:
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
