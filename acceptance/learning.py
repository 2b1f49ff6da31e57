"""The dry pass that learns which commands a node's checks ask, run by pytest itself.

Registered by the plugin as a pytest plugin of its own (:class:`Learning`). Before the first check of a node that
waits to be learned runs (acceptance.transport.nodes: a group nobody learned from yet, i.e. a cold cache), the
checks of the nodes waiting are run through pytest's own protocol (``runtestprotocol(item, log=False)``: their
fixtures, the site's conftest fixtures included, set up and torn down by pytest) in the main thread, with the
nodes' sessions in dry mode: ``host`` records what it is asked. The recorded commands are then fetched in one round
trip per node (in parallel), and again until nothing new is asked; the real run follows, every fixture set up anew.

Nothing of the dry pass is reported: no report is logged (so neither the terminal, JUnit, the records nor the
reports see one), :data:`DRY_KEY` marks the item while it runs (for any hook that must ignore it), and what its
hooks left on the item (stash, user properties, captured output) is put back as it was. A warm run (every group
learned before) has no dry pass: the per-item cost is a look-up.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from acceptance.inventory import CLUSTER
from acceptance.run import ITEM_KEY, Run
from acceptance.transport.session import NodeSession

DRY_KEY = pytest.StashKey[bool]()
NAME = "acceptance-learning"


def is_dry(item: pytest.Item) -> bool:
    """Whether ``item`` is being run by the dry pass (its reports are never logged)."""
    return item.stash.get(DRY_KEY, False)


def asks_the_node(item: pytest.Item) -> bool:
    """A check that asks its node's commands: ``host`` among its fixtures (directly or through another one)."""
    return "host" in getattr(item, "fixturenames", ())


class DryPass:
    """Runs the checks of nodes whose sessions are in dry mode through pytest (``Nodes.learn`` calls it)."""

    def __init__(self, session: pytest.Session) -> None:
        self.session = session

    def __call__(self, sessions: Sequence[NodeSession]) -> None:
        by_name = {s.node.name: s for s in sessions}
        items = [i for i in self.session.items if self._node(i) in by_name and asks_the_node(i)]
        if not items:
            return
        index: dict[str, int] = {}
        setupstate = self.session._setupstate
        setupstate.teardown_exact(items[0])  # from pytest's run loop: nothing the first dry check does not need
        for n, item in enumerate(items):
            name = self._node(item)
            assert name is not None
            by_name[name].probe(index.setdefault(name, 0))  # the order of its commands: the checks' order
            index[name] += 1
            run_dry(item, items[n + 1] if n + 1 < len(items) else None)

    @staticmethod
    def _node(item: pytest.Item) -> str | None:
        info = item.stash.get(ITEM_KEY, None)
        return None if info is None else info.node.name


def run_dry(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """``item`` through pytest's protocol, not logged, the item as it was afterwards (``nextitem``: as in pytest's
    run loop; None tears every fixture down)."""
    stash = dict(item.stash._storage)
    properties = list(item.user_properties)
    sections = list(item._report_sections)
    item.stash[DRY_KEY] = True
    try:
        runtestprotocol(item, log=False, nextitem=nextitem)
    finally:
        item.stash._storage.clear()
        item.stash._storage.update(stash)
        item.user_properties[:] = properties
        item._report_sections[:] = sections
        forget_fixture_values(item)


def forget_fixture_values(item: pytest.Item) -> None:
    """pytest-rerunfailures' idiom: no function-scope value of an earlier run of ``item`` (a dry pass, a first
    attempt) survives into the next one."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            if fixturedef.scope == "function" and getattr(fixturedef, "cached_result", None) is not None:
                fixturedef.cached_result = None


class Learning:
    """The plugin object (``config.pluginmanager.register(Learning(run), learning.NAME)``)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, Any, Any]:
        """Before the checks run (pytest's loop or a converging run's; inside the plugin's wrapper, which starts
        preparing the targets): the nodes waiting to be learned, every target group of a cold run at once."""
        option = session.config.option
        if not option.collectonly and not (session.testsfailed and not option.continue_on_collection_errors):
            self._learn(session)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        """Before a check runs, its node prepared if nobody did (an xdist worker's nodes come with their checks)
        and learned if it must be (a look-up when not)."""
        nodes = self.run.connections.nodes
        info = item.stash.get(ITEM_KEY, None)
        if nodes is not None and info is not None and not nodes.started(info.node) and not is_dry(item):
            node = info.node
            if node.role != CLUSTER and node.name not in self.run.scope.waivers:
                nodes.prepare_all([node])
                self._learn(item.session)
        return (yield)

    def _learn(self, session: pytest.Session) -> None:
        nodes = self.run.connections.nodes
        if nodes is not None and nodes.pending():
            nodes.learn(DryPass(session))

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """A dry check that fails (it asked what is not known yet) is no failure to debug: ``--pdb`` stays
        closed (pytest never hands an xfail-marked report to ``pytest_exception_interact``)."""
        report = yield
        if is_dry(item):
            report.wasxfail = "acceptance: the dry pass that learns the node's commands"
        return report
