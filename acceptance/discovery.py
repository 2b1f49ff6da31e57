"""Nodes found in OpenStack, by server-name pattern per project and role, merged with the static ones.

``discover(inventory)`` is called only when the inventory has a ``discovery`` section. The OpenStack
listing is behind a small function type (:data:`Lister`) so that the merge is testable without a cloud.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from acceptance.inventory import Inventory, Node, valid_address, valid_node_name


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
    """A project's servers (``GET /servers/detail`` with the checks' cloud scoped to the project), on the suite's
    one OpenStack session (no redirect, the body capped while it streams), all within ``apis.deadline_s``: a
    Keystone or Nova that trickles its answer cannot hold the run past it."""
    import warnings

    from acceptance.clients import openstack_api
    from acceptance.clients.errors import ApiError
    from acceptance.clients.openstack_cloud import bounded, select_cloud

    settings, seconds = inventory.apis.openstack, float(inventory.apis.deadline_s)
    timeout = min(seconds, float(settings.timeout_s if settings else 30))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openstacksdk's deprecation notices are not the operator's business
            cloud = select_cloud(inventory, "vm", project=project, timeout_s=timeout)
            listed = bounded(seconds, cloud.label, lambda: openstack_api.list_servers(cloud))
    except ApiError as e:  # one line, redacted, naming the fix
        raise DiscoveryError(f"discovery.openstack: cannot list servers of project {project!r}: {e}; "
                             "or run with --no-discovery") from None
    return [Server(name=s.name, address=_first_ipv4(s.addresses), az=s.az, flavor=s.flavor, status=s.status)
            for s in listed]


def _first_ipv4(addresses: Sequence[str]) -> str | None:
    for address in addresses:
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv4Address(address))
    return None
