"""Nodes found in OpenStack, by server-name pattern per project and role, merged with the static ones.

``discover(inventory)`` is called only when the inventory has a ``discovery`` section. The OpenStack
listing is behind a small function type (:data:`Lister`) so that the merge is testable without a cloud.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acceptance.inventory import Inventory, Node


@dataclass(frozen=True)
class Server:
    """What discovery needs of an OpenStack server."""

    name: str
    address: str | None = None
    az: str | None = None
    flavor: str | None = None
    status: str | None = None


Lister = Callable[[Inventory, str], Sequence[Server]]
"""(inventory, project name) -> the project's servers."""


class DiscoveryError(RuntimeError):
    """OpenStack could not be listed; one line naming the project and the fix."""


def discover(inventory: Inventory, lister: Lister | None = None) -> list[Node]:
    """Static nodes plus discovered ones; a static entry wins over a discovered node of the same name."""
    if not inventory.discovery:
        return list(inventory.nodes)
    lister = lister or openstack_lister
    listings: dict[str, Sequence[Server]] = {}
    for rule in inventory.discovery:
        if rule.project not in listings:
            listings[rule.project] = lister(inventory, rule.project)
    return merge(inventory, listings)


def merge(inventory: Inventory, listings: dict[str, Sequence[Server]]) -> list[Node]:
    nodes = list(inventory.nodes)
    known = {n.name for n in nodes}
    for rule in inventory.discovery:
        for server in sorted(listings.get(rule.project, ()), key=lambda s: s.name):
            if server.name in known or not fnmatch.fnmatchcase(server.name, rule.pattern):
                continue
            known.add(server.name)
            nodes.append(Node(name=server.name, role=rule.role, kind=rule.kind, address=server.address,
                              az=server.az, flavor=server.flavor, project=rule.project, source="openstack"))
    return nodes


def openstack_lister(inventory: Inventory, project: str) -> list[Server]:
    """List a project's servers with openstacksdk (clouds.yaml / OS_CLOUD), with a timeout."""
    import os

    import openstack  # imported here: slow to import and only needed with discovery
    import openstack.config
    import openstack.connection

    settings = inventory.apis.openstack
    cloud = (settings.cloud if settings else None) or os.environ.get("OS_CLOUD")
    timeout = settings.timeout_s if settings else 30
    try:
        files = [str(settings.clouds_yaml)] if settings and settings.clouds_yaml else None
        region = openstack.config.OpenStackConfig(config_files=files).get_one(
            cloud=cloud, project_name=project, api_timeout=timeout
        )
        conn = openstack.connection.Connection(config=region)
        servers = []
        for s in conn.compute.servers(details=True):
            servers.append(Server(name=s.name, address=_first_address(s.addresses or {}),
                                  az=getattr(s, "availability_zone", None),
                                  flavor=(s.flavor or {}).get("original_name") or (s.flavor or {}).get("name"),
                                  status=s.status))
        return servers
    except Exception as e:  # openstacksdk raises many types; report one line
        raise DiscoveryError(
            f"discovery.openstack: cannot list servers of project {project!r} (cloud {cloud!r}): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; "
            "fix: check apis.openstack / OS_CLOUD and clouds.yaml, or run with --no-discovery"
        ) from None


def _first_address(addresses: dict[str, list[dict[str, object]]]) -> str | None:
    for entries in addresses.values():
        for entry in entries:
            if entry.get("version") == 4 and isinstance(entry.get("addr"), str):
                return str(entry["addr"])
    return None
