"""Where remediation meets pytest's run loop: a failed check that names a remediation keeps its reports until
the end of the loop (so that the circuit breaker sees every node first), then the engine decides, and the
reports are logged as they ended: ``remediated`` (the check passed on its re-check, both messages kept) or
``failed`` with what the remediation said. Only a serial run remediates: its guardrails count failures across
the whole cluster in one process."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, cast

import pytest
from _pytest.runner import runtestprotocol

from acceptance.records import set_properties
from acceptance.run import ITEM_KEY, Run
from remediation.engine import ACTION_KEY, ARGS_KEY, Decision, Engine, detail
from remediation.model import MODES, Mode

ENGINE_KEY = pytest.StashKey[Engine]()


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
            reporter.write_line(message, cyan=True)

    return write


def start(config: pytest.Config, run: Run) -> None:
    mode = mode_of(config)
    if mode == "off":
        return
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        raise pytest.UsageError(f"--remediate={mode} runs in one process (its guardrails count failures across the "
                                "cluster): drop -n / --dist")
    config.stash[ENGINE_KEY] = Engine(run, mode, say=say(config))
    run.remediate = mode


def keep_arguments(item: pytest.Item) -> None:
    """The check function's arguments, for a re-check after its remediation."""
    if ENGINE_KEY in item.config.stash and item.stash.get(ITEM_KEY, None) is not None:
        function = cast(pytest.Function, item)
        item.stash[ARGS_KEY] = {n: function.funcargs[n] for n in inspect.signature(function.obj).parameters}
        name = item.stash[ITEM_KEY].spec.remediation
        if name and name in function.funcargs:  # pytest forgets funcargs at teardown
            item.stash[ACTION_KEY] = function.funcargs[name]


def protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    engine = item.config.stash.get(ENGINE_KEY, None)
    info = item.stash.get(ITEM_KEY, None)
    if engine is None or info is None or not info.spec.remediation:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    if not engine.defer(item, reports):
        log_reports(item, reports)
    return True


def finish(config: pytest.Config) -> None:
    """After the loop (even an interrupted one): remediate, then log the kept reports as they ended."""
    engine = config.stash.get(ENGINE_KEY, None)
    if engine is None or not engine.failures:
        return
    decisions: dict[str, Decision] = {}
    try:
        decisions = engine.remediate()
    finally:
        for f in engine.failures:
            decision = decisions.get(f.key)
            if decision is not None:
                apply_decision(f.item, f.reports, decision, engine.mode)
            log_reports(f.item, f.reports)


def apply_decision(item: pytest.Item, reports: list[pytest.TestReport], d: Decision, mode: str) -> None:
    call = next(r for r in reports if r.when == "call")
    props = dict(call.user_properties)
    first = str(props.get("message", ""))
    if d.fixed:
        call.outcome = "passed"
        call.longrepr = None
        changes = {"outcome": "remediated", "message": f"remediated ({d.action}: {d.reason}); was: {first}",
                   "first_message": first}
    else:
        changes = {"message": f"{first} [remediation {d.verdict}: {d.reason}]"}
    changes["remediation_detail"] = detail(d, mode)
    # every phase's report carries the verdict (the teardown report too: JUnit and the records read it)
    for target in (*(r.user_properties for r in reports if dict(r.user_properties).get("outcome")),
                   item.user_properties):
        set_properties(target, changes)


def log_reports(item: pytest.Item, reports: list[pytest.TestReport]) -> None:
    for report in reports:
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def parse_detail(value: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(str(value))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
