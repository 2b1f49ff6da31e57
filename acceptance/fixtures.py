"""The fixtures checks use (``host``, ``node``, ``param``, ``inventory``, ``expect``, ``all_nodes``,
``ping_result``, ``ssh_result``) and the blocking of a check whose root check failed.

The same fixtures serve the dry pass that learns a node's commands before its checks run (acceptance.learning
runs the checks through pytest): the node's session is then in dry mode, and ``host`` records what it is asked
instead of waiting for the node to be ready."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from acceptance.checkspec import CheckItem, Need
from acceptance.inventory import CLUSTER, Expectations, Inventory, Node
from acceptance.outcomes import PING_CHECK, SSH_CHECK, Blocked
from acceptance.run import ITEM_KEY, Run, need_run
from acceptance.targeting import Gate
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
    if run.connections.nodes is None:
        raise RuntimeError("the run's transport is not set up")
    return run.connections.nodes


def require(run: Run, node: Node, needs: Sequence[Need]) -> NodeSession | None:
    """Raise :class:`Blocked` when what the check needs of the node is not there (its root check fails). In the
    dry pass (the node's session learning), the session as it is: the node is ready only once it is learned."""
    if not needs:
        return None
    nodes = nodes_of(run)
    pinged = nodes.ping(node)
    if not pinged.ok and not pinged.error:
        raise Blocked(PING_CHECK, pinged.message)
    session = nodes.session(node)
    if not session.learning:
        session = nodes.ready(node)
    if "ssh" in needs:
        connection = session.connect()
        if not connection.ok:
            raise Blocked(SSH_CHECK, connection.message)
    return session


@pytest.fixture(scope="session")
def inventory(request: pytest.FixtureRequest) -> Inventory:
    return need_run(request.config).scope.inventory


@pytest.fixture(scope="session")
def expect(inventory: Inventory) -> Expectations:
    return inventory.expect


@pytest.fixture(scope="session")
def all_nodes(request: pytest.FixtureRequest) -> list[Node]:
    """Every node of the inventory (static and discovered), targeted or not; for the cluster-wide checks."""
    return [n for n in need_run(request.config).scope.all_nodes if n.role != CLUSTER]


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
    chosen = need_run(request.config).scope.gate
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


def pytest_acceptance_refresh(item: pytest.Item, name: str, value: Any) -> None:
    """Before a re-check (run through pytest again, remediation/recheck.py): the node's answers, ping and
    connection are read again when the fixture is next set up (the host stays the same object)."""
    info = item.stash.get(ITEM_KEY, None)
    run = need_run(item.config)
    if info is None or run.connections.nodes is None:
        return
    if name == "host":
        run.connections.nodes.session(info.node).invalidate()
    elif name == "ping_result":
        run.connections.nodes.ping(info.node, fresh=True)
    elif name == "ssh_result":
        run.connections.nodes.reset(info.node)


@pytest.fixture
def live_host(request: pytest.FixtureRequest) -> Any:
    """testinfra's host for the node, every command run now on its connection (never from a cache): what
    remediation actions act through."""
    info = item_info(request)
    session = require(need_run(request.config), info.node, info.spec.needs or ("ssh",))
    assert session is not None
    return session.live_host
