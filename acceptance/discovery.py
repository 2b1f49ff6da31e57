"""Nodes found in OpenStack, by server-name pattern per project and role, merged with the static ones.

``discover(inventory)`` is called only when the inventory has a ``discovery`` section. The OpenStack
listing is behind a small function type (:data:`Lister`) so that the merge is testable without a cloud.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acceptance.inventory import Inventory, Node, valid_address, valid_node_name
from acceptance.redaction import redact


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


def discover(inventory: Inventory, lister: Lister | None = None, warnings: list[str] | None = None) -> list[Node]:
    """Static nodes plus discovered ones; a static entry wins over a discovered node of the same name."""
    if not inventory.discovery:
        return list(inventory.nodes)
    lister = lister or openstack_lister
    listings: dict[str, Sequence[Server]] = {}
    for rule in inventory.discovery:
        if rule.project not in listings:
            listings[rule.project] = lister(inventory, rule.project)
    return merge(inventory, listings, warnings)


def merge(inventory: Inventory, listings: dict[str, Sequence[Server]], warnings: list[str] | None = None) -> list[Node]:
    """Static nodes, then the servers matching a rule. A server whose name or address would not pass the
    inventory's own rules (an ssh option, shell syntax, a newline) is left out with a warning: discovery is input
    too, and it never reaches ssh."""
    nodes = list(inventory.nodes)
    known = {n.name for n in nodes}
    for rule in inventory.discovery:
        for server in sorted(listings.get(rule.project, ()), key=lambda s: s.name):
            if server.name in known or not fnmatch.fnmatchcase(server.name, rule.pattern):
                continue
            problem = valid_node_name(server.name) or (valid_address(server.address) if server.address else None)
            if problem:
                if warnings is not None:
                    warnings.append(f"discovery.openstack: project {rule.project!r}: a server was left out: "
                                    f"{problem} (rename it, or narrow the pattern {rule.pattern!r})")
                continue
            known.add(server.name)
            nodes.append(Node(name=server.name, role=rule.role, kind=rule.kind, address=server.address,
                              az=server.az, flavor=server.flavor, project=rule.project, source="openstack"))
    return nodes


def openstack_lister(inventory: Inventory, project: str) -> list[Server]:
    """List a project's servers with openstacksdk (clouds.yaml / OS_CLOUD), with a timeout."""
    import os

    import openstack.connection  # imported here: slow to import and only needed with discovery

    from acceptance.clients.openstack_api import cloud_region

    settings = inventory.apis.openstack
    cloud = (settings.cloud if settings else None) or os.environ.get("OS_CLOUD")
    try:
        region = cloud_region(inventory, cloud, project)  # timeouts, no retries, TLS verification kept on
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
            f"{type(e).__name__}: {redact(str(e).splitlines()[0]) if str(e) else ''}; "
            "fix: check apis.openstack / OS_CLOUD and clouds.yaml, or run with --no-discovery"
        ) from None


def _first_address(addresses: dict[str, list[dict[str, object]]]) -> str | None:
    for entries in addresses.values():
        for entry in entries:
            if entry.get("version") == 4 and isinstance(entry.get("addr"), str):
                return str(entry["addr"])
    return None
