"""Fixtures of the cluster checks: one snapshot of each API per process (session scope), and per check a
fixture that reports the check ``blocked`` by ``api.<name>.reachable`` when the API cannot be used at all.

Registered by the plugin (``acceptance.plugin``) at configure time.
"""

from __future__ import annotations

import pytest

from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, vault_api
from acceptance.clients.config import api_config
from acceptance.clients.snapshot import Snapshot, Snapshots
from acceptance.inventory import CLUSTER, Node
from acceptance.outcomes import Blocked, CheckError
from acceptance.run import Run, need_run

SNAPSHOTS_KEY = pytest.StashKey[Snapshots]()
API_NAMES = ("nomad", "consul", "vault", "prometheus", "openstack")


def root_check(api: str) -> str:
    return f"api.{api}.reachable"


def make_snapshots(run: Run) -> Snapshots:
    """The fetchers of one run: every node of the inventory, not only targets."""
    inv = run.inventory
    nodes: list[Node] = [n for n in run.all_nodes if n.role != CLUSTER]
    masters = [n for n in nodes if n.role == "master"]
    dns = inv.apis.consul.dns if inv.apis.consul else None
    return Snapshots({
        "nomad": lambda: nomad_api.fetch(api_config("nomad", inv, masters=masters)),
        "consul": lambda: consul_api.fetch(api_config("consul", inv, masters=masters), dns=dns),
        "vault": lambda: vault_api.fetch(api_config("vault", inv, masters=masters), masters),
        "prometheus": lambda: prometheus_api.fetch(api_config("prometheus", inv, masters=masters), masters),
        "openstack": lambda: openstack_api.fetch(inv, nodes),
    })


@pytest.hookimpl(trylast=True)
def pytest_acceptance_make_snapshots(config: pytest.Config, run: Run) -> Snapshots:
    return make_snapshots(run)


@pytest.fixture(scope="session")
def snapshots(request: pytest.FixtureRequest) -> Snapshots:
    """Every API's snapshot, fetched once per process (all in parallel on first use)."""
    config = request.config
    if SNAPSHOTS_KEY not in config.stash:
        run = need_run(config)
        config.stash[SNAPSHOTS_KEY] = config.hook.pytest_acceptance_make_snapshots(config=config, run=run)
    return config.stash[SNAPSHOTS_KEY]


def _usable(request: pytest.FixtureRequest, snapshots: Snapshots, api: str) -> Snapshot:
    snap = snapshots.get(api)
    if snap.root is not None:
        raise Blocked(root_check(api), str(snap.root))
    return snap


@pytest.fixture
def nomad_snapshot(request: pytest.FixtureRequest, snapshots: Snapshots) -> Snapshot:
    return _usable(request, snapshots, "nomad")


@pytest.fixture
def consul_snapshot(request: pytest.FixtureRequest, snapshots: Snapshots) -> Snapshot:
    return _usable(request, snapshots, "consul")


@pytest.fixture
def vault_snapshot(request: pytest.FixtureRequest, snapshots: Snapshots) -> Snapshot:
    return _usable(request, snapshots, "vault")


@pytest.fixture
def prometheus_snapshot(request: pytest.FixtureRequest, snapshots: Snapshots) -> Snapshot:
    return _usable(request, snapshots, "prometheus")


@pytest.fixture
def openstack_snapshot(request: pytest.FixtureRequest, snapshots: Snapshots) -> Snapshot:
    return _usable(request, snapshots, "openstack")


def assert_reachable(snap: Snapshot) -> None:
    """The body of the api.<name>.reachable root checks: ``failed`` when the service does not answer (it is
    down), ``error`` when the suite cannot use it (configuration, TLS, token)."""
    if snap.root is None:
        return
    if snap.root.kind in ("unreachable",):
        raise AssertionError(str(snap.root))
    raise CheckError(str(snap.root))


def pytest_sessionfinish(session: pytest.Session) -> None:
    snaps = session.config.stash.get(SNAPSHOTS_KEY, None)
    if snaps is not None:
        snaps.close()
