"""The fixtures checks use (``host``, ``node``, ``param``, ``inventory``, ``expect``, ``all_nodes``,
``ping_result``, ``ssh_result``), the blocking of a check whose root check failed, and the same values for the
dry pass that learns a node's commands before its checks run."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest

from acceptance.checkspec import CheckItem, Need
from acceptance.inventory import CLUSTER, Expectations, Inventory, Node
from acceptance.moments import Gate
from acceptance.outcomes import PING_CHECK, SSH_CHECK, Blocked
from acceptance.run import ITEM_KEY, Run, need_run
from acceptance.transport.nodes import Nodes
from acceptance.transport.ping import ProbeResult
from acceptance.transport.session import NodeSession
from acceptance.transport.ssh import SshResult


def item_info(request: pytest.FixtureRequest) -> CheckItem:
    info: CheckItem | None = request.node.stash.get(ITEM_KEY, None)
    if info is None:
        raise pytest.UsageError(f"{request.node.nodeid}: fixture '{request.fixturename}' is only for @check tests")
    return info


def nodes_of(run: Run) -> Nodes:
    if run.nodes is None:
        raise RuntimeError("the run's transport is not set up")
    return run.nodes


def require(run: Run, node: Node, needs: Sequence[Need]) -> NodeSession | None:
    """Raise :class:`Blocked` when what the check needs of the node is not there (its root check fails)."""
    if not needs:
        return None
    nodes = nodes_of(run)
    pinged = nodes.ping(node)
    if not pinged.ok and not pinged.error:
        raise Blocked(PING_CHECK, pinged.message)
    session = nodes.ready(node)
    if "ssh" in needs:
        connection = session.connect()
        if not connection.ok:
            raise Blocked(SSH_CHECK, connection.message)
    return session


@pytest.fixture(scope="session")
def inventory(request: pytest.FixtureRequest) -> Inventory:
    return need_run(request.config).inventory


@pytest.fixture(scope="session")
def expect(inventory: Inventory) -> Expectations:
    return inventory.expect


@pytest.fixture(scope="session")
def all_nodes(request: pytest.FixtureRequest) -> list[Node]:
    """Every node of the inventory (static and discovered), targeted or not; for the cluster-wide checks."""
    return [n for n in need_run(request.config).all_nodes if n.role != CLUSTER]


@pytest.fixture
def node(request: pytest.FixtureRequest) -> Node:
    """The node this check runs on."""
    return item_info(request).node


@pytest.fixture
def param(request: pytest.FixtureRequest) -> str:
    """The ``each`` value of this check (e.g. the unit of master.units.<unit>)."""
    value = item_info(request).param
    if value is None:
        raise pytest.UsageError(f"{request.node.nodeid}: fixture 'param' needs @check(each=...)")
    return value


@pytest.fixture
def gate(request: pytest.FixtureRequest) -> Gate:
    """The gate of a --gate run (its action, node and the allocations the operator accepts)."""
    chosen = need_run(request.config).gate
    if chosen is None:
        raise pytest.UsageError(f"{request.node.nodeid}: fixture 'gate' is only for --gate runs")
    return chosen


@pytest.fixture
def ping_result(request: pytest.FixtureRequest) -> ProbeResult:
    """The node's answer to ping from here (node.ping's verdict)."""
    return nodes_of(need_run(request.config)).ping(item_info(request).node)


@pytest.fixture
def ssh_result(request: pytest.FixtureRequest) -> SshResult:
    """Whether ssh got into the node (node.ssh's verdict); blocked by node.ping when it does not answer."""
    info = item_info(request)
    session = require(need_run(request.config), info.node, info.spec.needs or ("reachable",))
    assert session is not None
    return session.connect()


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Any:
    """testinfra's host for the node, answered from the node's batched round trips (blocked when the node
    cannot be reached or logged into)."""
    info = item_info(request)
    session = require(need_run(request.config), info.node, info.spec.needs or ("ssh",))
    assert session is not None
    return session.host


def pytest_acceptance_refresh(item: pytest.Item, name: str, value: Any) -> Any:
    """Before a re-check (run through pytest again, remediation/recheck.py): the node's answers, ping and
    connection are read again when the fixture is next set up (the host stays the same object)."""
    info = item.stash.get(ITEM_KEY, None)
    run = need_run(item.config)
    if info is None or run.nodes is None:
        return None
    if name == "host":
        run.nodes.session(info.node).invalidate()
        return run.nodes.session(info.node).host
    if name == "ping_result":
        return run.nodes.ping(info.node, fresh=True)
    if name == "ssh_result":
        run.nodes.reset(info.node)
        return run.nodes.session(info.node).connect()
    return None


@pytest.fixture
def live_host(request: pytest.FixtureRequest) -> Any:
    """testinfra's host for the node, every command run now on its connection (never from a cache): what
    remediation actions act through."""
    info = item_info(request)
    session = require(need_run(request.config), info.node, info.spec.needs or ("ssh",))
    assert session is not None
    return session.live_host


# --------------------------------------------------------------------------- the dry pass's values


def _dry_values(run: Run, info: CheckItem, session: NodeSession) -> dict[str, Callable[[], Any]]:
    return {
        "host": lambda: session.host,
        "node": lambda: info.node,
        "param": lambda: info.param,
        "inventory": lambda: run.inventory,
        "expect": lambda: run.inventory.expect,
        "all_nodes": lambda: [n for n in run.all_nodes if n.role != CLUSTER],
        "ssh_result": lambda: session.connection or SshResult(True),
        "ping_result": lambda: ProbeResult(True),
    }


def dry_probes(run: Run, session: NodeSession) -> list[Callable[[], object]]:
    """The node's checks that use ``host`` and only fixtures the dry pass can give, bound to its session."""
    probes: list[Callable[[], object]] = []
    for item in run.items.get(session.node.name, []):
        info = item.stash.get(ITEM_KEY, None)
        function = getattr(item, "obj", None)
        if info is None or function is None:
            continue
        names = list(inspect.signature(function).parameters)
        values = _dry_values(run, info, session)
        if "host" not in names or not all(n in values for n in names):
            continue  # a site check with fixtures of its own: its commands run live (and are learned for next time)
        probes.append(partial(_call, function, {n: values[n] for n in names}))
    return probes


def _call(function: Callable[..., object], values: dict[str, Callable[[], Any]]) -> object:
    return function(**{name: get() for name, get in values.items()})
