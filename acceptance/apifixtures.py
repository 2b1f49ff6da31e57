"""Fixtures of the cluster checks, made from the API registry (acceptance.apiregistry.APIS): one snapshot
of each API per process (``snapshots``, session scope) and, per API, ``<name>_snapshot``: the API's typed
snapshot, or the check reported ``blocked`` by ``api.<name>.reachable`` when the API cannot be used at all.

Loaded by the plugin (``config.pluginmanager.import_plugin("acceptance.apifixtures")``); the snapshots come
from the ``pytest_acceptance_make_snapshots(config, run)`` hook, whose last implementation is here.
"""

from __future__ import annotations

from typing import Any

import pytest

from acceptance.apiregistry import APIS, BY_NAME, ApiSpec, Snapshots, make_snapshots
from acceptance.clients.snapshot import ApiSnapshot
from acceptance.outcomes import Blocked, judge
from acceptance.run import Run, need_run

SNAPSHOTS_KEY = pytest.StashKey[Snapshots]()


def root_check(api: str) -> str:
    return BY_NAME[api].root_check if api in BY_NAME else f"api.{api}.reachable"


@pytest.hookimpl(trylast=True)
def pytest_acceptance_make_snapshots(config: pytest.Config, run: Run) -> Snapshots:
    """The real APIs, for every node of the inventory (not only the targets)."""
    return make_snapshots(run.scope.inventory, run.scope.all_nodes)


@pytest.fixture(scope="session")
def snapshots(request: pytest.FixtureRequest) -> Snapshots:
    """Every API's snapshot, fetched once per process (all in parallel on first use)."""
    config = request.config
    if SNAPSHOTS_KEY not in config.stash:
        run = need_run(config)
        config.stash[SNAPSHOTS_KEY] = config.hook.pytest_acceptance_make_snapshots(config=config, run=run)
    return config.stash[SNAPSHOTS_KEY]


def usable(snapshots: Snapshots, api: str) -> ApiSnapshot:
    """The API's snapshot; :class:`Blocked` by its root check when the API as a whole cannot be used."""
    snap = snapshots.get(api)
    if snap.root is not None:
        raise Blocked(root_check(api), str(snap.root))
    return snap


def assert_reachable(snap: ApiSnapshot) -> None:
    """The body of the api.<name>.reachable root checks: ``failed`` when the service does not answer (it is
    down), ``error`` when the suite cannot use it (configuration, TLS, token): :func:`judge`."""
    if snap.root is not None:
        judge(snap.root.unreachable, str(snap.root))


def _snapshot_fixture(spec: ApiSpec) -> Any:
    def fixture(snapshots: Snapshots) -> ApiSnapshot:
        return usable(snapshots, spec.name)

    fixture.__name__ = spec.fixture
    fixture.__doc__ = (f"{spec.title}'s snapshot ({spec.snapshot.__name__}); blocked by {spec.root_check} when "
                       f"{spec.title} cannot be used.")
    return pytest.fixture(name=spec.fixture)(fixture)


for _spec in APIS:
    globals()[_spec.fixture] = _snapshot_fixture(_spec)


def pytest_acceptance_refresh(item: pytest.Item, name: str, value: Any) -> None:
    """A re-check after a remediation reads the API again (the fixture, set up anew, returns the new snapshot;
    its setup raises Blocked, if it must, as a report)."""
    spec = next((s for s in APIS if s.fixture == name), None)
    snaps = item.config.stash.get(SNAPSHOTS_KEY, None)
    if spec is not None and snaps is not None:
        snaps.refetch(spec.name)


def pytest_acceptance_forget_snapshots(config: pytest.Config) -> None:
    """The next use fetches every API again (a new round of a converging run)."""
    snaps = config.stash.get(SNAPSHOTS_KEY, None)
    if snaps is not None:
        snaps.close()
        del config.stash[SNAPSHOTS_KEY]


def pytest_sessionfinish(session: pytest.Session) -> None:
    snaps = session.config.stash.get(SNAPSHOTS_KEY, None)
    if snaps is not None:
        snaps.close()
