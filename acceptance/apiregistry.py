"""The cluster APIs of a run. ONE list (:data:`APIS`): the snapshots, the ``<name>_snapshot`` fixtures and the root
checks ``api.<name>.reachable`` are all made from it; :class:`Snapshots` fetches every API once per process, all in
parallel on first use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from acceptance.checkspec import Severity
from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, vault_api
from acceptance.clients.config import ApiConfig, api_config
from acceptance.clients.consul_api import ConsulSnapshot
from acceptance.clients.errors import ApiError
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.clients.openstack_api import OpenStackSnapshot
from acceptance.clients.prometheus_api import PrometheusSnapshot
from acceptance.clients.snapshot import ApiSnapshot
from acceptance.clients.vault_api import VaultSnapshot
from acceptance.inventory import CLUSTER, Inventory, Node

RUNBOOK = "Cluster architecture description"


@dataclass(frozen=True)
class Cluster:
    inventory: Inventory
    nodes: tuple[Node, ...]

    @property
    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "master"]

    def config(self, name: str) -> ApiConfig:
        return api_config(name, self.inventory, masters=self.masters)


@dataclass(frozen=True)
class ApiSpec:
    name: str  # nomad, consul, ...: the fixture is <name>_snapshot, the root check api.<name>.reachable
    title: str
    snapshot: type[ApiSnapshot]
    fetch: Callable[[Cluster], ApiSnapshot]
    severity: Severity
    runbook: str

    @property
    def root_check(self) -> str:
        return f"api.{self.name}.reachable"

    @property
    def fixture(self) -> str:
        return f"{self.name}_snapshot"


APIS: tuple[ApiSpec, ...] = (
    ApiSpec("nomad", "Nomad", NomadSnapshot, lambda c: nomad_api.fetch(c.config("nomad")), "critical", RUNBOOK),
    ApiSpec("consul", "Consul", ConsulSnapshot, lambda c: consul_api.fetch(
        c.config("consul"), dns=c.inventory.apis.consul.dns if c.inventory.apis.consul else None), "critical", RUNBOOK),
    ApiSpec("vault", "Vault", VaultSnapshot, lambda c: vault_api.fetch(c.config("vault"), c.masters), "critical",
            RUNBOOK),
    ApiSpec("prometheus", "Prometheus", PrometheusSnapshot,
            lambda c: prometheus_api.fetch(c.config("prometheus"), c.masters), "major", RUNBOOK),
    ApiSpec("openstack", "OpenStack", OpenStackSnapshot,
            lambda c: openstack_api.fetch(c.inventory, list(c.nodes)), "major", "Creating a master"),
)
BY_NAME = {spec.name: spec for spec in APIS}


def make_snapshots(inventory: Inventory, nodes: Sequence[Node]) -> Snapshots:
    cluster = Cluster(inventory, tuple(n for n in nodes if n.role != CLUSTER))
    deadline = float(inventory.apis.deadline_s)
    def fetcher(spec: ApiSpec) -> Callable[[], ApiSnapshot]:
        return lambda: spec.fetch(cluster)

    return Snapshots({spec.name: fetcher(spec) for spec in APIS},
                     kinds={spec.name: spec.snapshot for spec in APIS}, wait_s=deadline + 15)


Fetcher = Callable[[], ApiSnapshot]


class Snapshots:
    """Fetch-once registry: the first ``get`` starts every fetch in parallel (the run pays for the slowest API,
    not their sum); ``wait_s`` bounds the wait for one (an overrun is the API's root error)."""

    def __init__(self, fetchers: Mapping[str, Fetcher], kinds: Mapping[str, type[ApiSnapshot]] | None = None,
                 wait_s: float | None = None) -> None:
        self._fetchers, self._kinds, self._wait_s = dict(fetchers), dict(kinds or {}), wait_s
        self._lock = threading.Lock()
        self._futures: dict[str, Future[ApiSnapshot]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def names(self) -> list[str]:
        return list(self._fetchers)

    def _start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._fetchers)), thread_name_prefix="snapshot")
            for name in self._fetchers:
                self._futures[name] = self._pool.submit(self._timed, name)

    def get(self, name: str) -> ApiSnapshot:
        with self._lock:
            self._start()
            future = self._futures[name]
        try:
            return future.result(timeout=self._wait_s)
        except FutureTimeout:
            return self._kinds.get(name, ApiSnapshot).unusable(ApiError(
                "deadline", f"{name}: the snapshot did not finish within {self._wait_s:g} s (apis.deadline_s)"))

    def refetch(self, name: str) -> ApiSnapshot:
        """``name``'s snapshot fetched again, now (a re-check after a remediation reads the API anew)."""
        future: Future[ApiSnapshot] = Future()
        future.set_result(self._timed(name))
        with self._lock:
            self._start()
            self._futures[name] = future
        return future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _timed(self, name: str) -> ApiSnapshot:
        start = time.monotonic()
        kind = self._kinds.get(name, ApiSnapshot)
        try:
            snap = self._fetchers[name]()
        except ApiError as e:
            snap = kind.unusable(e)
        except Exception as e:  # a bug or an unexpected library error: every check of this API reports it
            snap = kind.unusable(ApiError("protocol", f"{name}: snapshot failed: {type(e).__name__}: {e}"))
        snap.duration_s = time.monotonic() - start
        return snap
