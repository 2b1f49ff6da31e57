"""ONE list of cluster APIs (:data:`APIS`): the snapshots, the ``<name>_snapshot`` fixtures and the root checks
``api.<name>.reachable`` are all made from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acceptance.checkspec import Severity
from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, vault_api
from acceptance.clients.config import ApiConfig, api_config
from acceptance.clients.consul_api import ConsulSnapshot
from acceptance.clients.nomad_api import NomadSnapshot
from acceptance.clients.openstack_api import OpenStackSnapshot
from acceptance.clients.prometheus_api import PrometheusSnapshot
from acceptance.clients.snapshot import ApiSnapshot, Snapshots
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
