"""The registry of cluster APIs: ONE list (:data:`APIS`) from which the snapshots, the ``<name>_snapshot``
fixtures (acceptance.apifixtures) and the root checks ``api.<name>.reachable`` (checks/cluster_apis.py) are
all made. Adding an API is one :class:`ApiSpec` here, a client module, and its checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acceptance.checkspec import Severity
from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, vault_api
from acceptance.clients.config import api_config
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
    """What a fetch needs: the inventory and its nodes (static and discovered, targeted or not)."""

    inventory: Inventory
    nodes: tuple[Node, ...]

    @property
    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "master"]


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


def _consul(c: Cluster) -> ApiSnapshot:
    dns = c.inventory.apis.consul.dns if c.inventory.apis.consul else None
    return consul_api.fetch(api_config("consul", c.inventory, masters=c.masters), dns=dns)


APIS: tuple[ApiSpec, ...] = (
    ApiSpec("nomad", "Nomad", NomadSnapshot,
            lambda c: nomad_api.fetch(api_config("nomad", c.inventory, masters=c.masters)), "critical", RUNBOOK),
    ApiSpec("consul", "Consul", ConsulSnapshot, _consul, "critical", RUNBOOK),
    ApiSpec("vault", "Vault", VaultSnapshot,
            lambda c: vault_api.fetch(api_config("vault", c.inventory, masters=c.masters), c.masters),
            "critical", RUNBOOK),
    ApiSpec("prometheus", "Prometheus", PrometheusSnapshot,
            lambda c: prometheus_api.fetch(api_config("prometheus", c.inventory, masters=c.masters), c.masters),
            "major", RUNBOOK),
    ApiSpec("openstack", "OpenStack", OpenStackSnapshot,
            lambda c: openstack_api.fetch(c.inventory, list(c.nodes)), "major", "Creating a master"),
)
BY_NAME = {spec.name: spec for spec in APIS}


def make_snapshots(inventory: Inventory, nodes: Sequence[Node]) -> Snapshots:
    """The fetch-once snapshots of one process: every API of :data:`APIS`, for every node of the inventory."""
    cluster = Cluster(inventory, tuple(n for n in nodes if n.role != CLUSTER))
    deadline = float(inventory.apis.deadline_s)
    def fetcher(spec: ApiSpec) -> Callable[[], ApiSnapshot]:
        return lambda: spec.fetch(cluster)

    return Snapshots({spec.name: fetcher(spec) for spec in APIS},
                     kinds={spec.name: spec.snapshot for spec in APIS}, wait_s=deadline + 15)
