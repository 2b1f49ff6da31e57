"""OpenStack through openstacksdk (clouds.yaml / OS_CLOUD): the servers of the VM project and of the physical
nodes' project, the flavors, and the volume attachments of the VM agents; parsed as Nova documents them
(reference/api/openstack), whatever the microversion."""

from __future__ import annotations

import fnmatch
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, classify, http_error
from acceptance.clients.snapshot import Snapshot
from acceptance.inventory import Expectations, Inventory, Node

PHYSICAL_PROJECT = "ALICE Release Testing - physical nodes"
PROJECTS = ("vm", "metal")  # vm: masters and VM agents; metal: bare-metal agents


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str
    az: str | None
    flavor: str | None  # the flavor's name
    addresses: tuple[str, ...]


def parse_servers(body: Mapping[str, Any], flavors: Mapping[str, str] | None = None) -> list[Server]:
    """Servers of a ``GET /servers/detail`` body: flavor by ``original_name`` (2.47+) or by id (2.1)."""
    out = []
    for s in body.get("servers") or []:
        flavor = s.get("flavor") or {}
        name = flavor.get("original_name") or flavor.get("name") or (flavors or {}).get(str(flavor.get("id")))
        addresses = tuple(str(a.get("addr")) for net in (s.get("addresses") or {}).values() for a in net or []
                          if a.get("addr"))
        out.append(Server(id=str(s.get("id")), name=str(s.get("name")), status=str(s.get("status")),
                          az=s.get("OS-EXT-AZ:availability_zone"), flavor=name, addresses=addresses))
    return out


def parse_flavors(body: Mapping[str, Any]) -> dict[str, str]:
    return {str(f.get("id")): str(f.get("name")) for f in body.get("flavors") or []}


def attached_devices(body: Mapping[str, Any]) -> list[str]:
    return [str(a.get("device")) for a in body.get("volumeAttachments") or []]


# --------------------------------------------------------------------------- configuration and fetch


@dataclass(frozen=True)
class CloudChoice:
    cloud: str | None
    project: str | None  # a project_name override of the cloud's (when no cloud_metal is given)
    source: str  # for messages


def clouds(inventory: Inventory, env: Mapping[str, str] | None = None) -> dict[str, CloudChoice]:
    env = os.environ if env is None else env
    settings = inventory.apis.openstack
    cloud = (settings.cloud if settings else None) or env.get("OS_CLOUD")
    source = "apis.openstack.cloud" if settings and settings.cloud else "OS_CLOUD"
    out = {"vm": CloudChoice(cloud, None, source)}
    if settings and settings.cloud_metal:
        out["metal"] = CloudChoice(settings.cloud_metal, None, "apis.openstack.cloud_metal")
    else:
        rule = next((r.project for r in inventory.discovery if r.role == "agent" and r.kind == "metal"), None)
        node = next((n.project for n in inventory.nodes if n.kind == "metal" and n.project), None)
        out["metal"] = CloudChoice(cloud, rule or node or PHYSICAL_PROJECT,
                                   f"{source} with project {rule or node or PHYSICAL_PROJECT!r}")
    return out


def _connect(inventory: Inventory, choice: CloudChoice) -> Any:
    import openstack.config
    import openstack.connection

    settings = inventory.apis.openstack
    files = [str(settings.clouds_yaml)] if settings and settings.clouds_yaml else None
    timeout = settings.timeout_s if settings else 30
    extra: dict[str, Any] = {"project_name": choice.project} if choice.project else {}
    region = openstack.config.OpenStackConfig(config_files=files).get_one(cloud=choice.cloud, api_timeout=timeout,
                                                                           **extra)
    return openstack.connection.Connection(config=region)


def _cfg(choice: CloudChoice) -> ApiConfig:
    return ApiConfig(name="openstack", urls=(f"cloud {choice.cloud!r}",), ca_source="the cloud's cacert in "
                     "clouds.yaml (OS_CLIENT_CONFIG_FILE)", token_var="the cloud's credentials in clouds.yaml "
                     f"(OS_CLOUD / {choice.source})")


def _get(conn: Any, cfg: ApiConfig, path: str) -> Any:
    response = conn.compute.get(path, raise_exc=False)
    if response.status_code != 200:
        raise http_error(cfg, cfg.url, path, response.status_code, response.text)
    return response.json()


def _fetch_project(inventory: Inventory, choice: CloudChoice, vm_agents: Sequence[str]) -> dict[str, Any]:
    with warnings.catch_warnings():  # openstacksdk's deprecation notices are not the operator's business
        warnings.simplefilter("ignore")
        return _fetch_project_quietly(inventory, choice, vm_agents)


def _fetch_project_quietly(inventory: Inventory, choice: CloudChoice, vm_agents: Sequence[str]) -> dict[str, Any]:
    cfg = _cfg(choice)
    path = "/servers/detail"
    try:
        conn = _connect(inventory, choice)
        servers_body = _get(conn, cfg, path)
        path = "/flavors/detail"
        flavors = parse_flavors(_get(conn, cfg, path))
        servers = parse_servers(servers_body, flavors)
        attachments: dict[str, Any] = {}
        for s in servers:
            if s.name in vm_agents:
                path = f"/servers/{s.id}/os-volume_attachments"
                try:
                    attachments[s.name] = attached_devices(_get(conn, cfg, path))
                except Exception as e:  # one server's attachments: that check only
                    attachments[s.name] = classify(cfg, cfg.url, path, e)
        return {"servers": servers, "attachments": attachments}
    except Exception as e:  # openstacksdk and keystoneauth raise many types: one line
        if type(e).__name__ in ("ConfigException", "OpenStackCloudException") and "cloud" in str(e).lower():
            return {"error": ApiError("config", f"OpenStack: {e}; fix: set {choice.source} to a cloud of clouds.yaml "
                                                "(OS_CLIENT_CONFIG_FILE or apis.openstack.clouds_yaml)")}
        return {"error": classify(cfg, cfg.url, path, e)}


def fetch(inventory: Inventory, nodes: Sequence[Node]) -> Snapshot:
    snap = Snapshot(api="openstack")
    choices = clouds(inventory)
    if choices["vm"].cloud is None:
        snap.root = ApiError("config", "OpenStack is not configured; fix: set OS_CLOUD (and OS_CLIENT_CONFIG_FILE) or "
                                       f"apis.openstack.cloud in {inventory.path}")
        return snap
    vm_agents = [n.name for n in nodes if n.role == "agent" and n.kind != "metal"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(PROJECTS, pool.map(lambda p: _fetch_project(inventory, choices[p], vm_agents), PROJECTS),
                           strict=True))
    for project, result in results.items():
        snap.parts[f"cloud:{project}"] = choices[project].source
        if "error" in result:
            snap.errors[f"servers:{project}"] = result["error"]
            continue
        snap.parts[f"servers:{project}"] = result["servers"]
        for name, got in result["attachments"].items():
            if isinstance(got, ApiError):
                snap.errors[f"attachments:{name}"] = got
            else:
                snap.parts[f"attachments:{name}"] = got
    snap.url = str(choices["vm"].cloud)
    snap.set_root_from("servers:vm")
    return snap


# --------------------------------------------------------------------------- pure functions


def project_of(node: Node) -> str:
    return "metal" if node.role == "agent" and node.kind == "metal" else "vm"


def find(servers: Iterable[Server], name: str) -> list[Server]:
    return [s for s in servers if s.name == name or s.name.startswith(name + ".")]


def active_problem(servers: Sequence[Server], node: Node, project_label: str) -> str | None:
    found = find(servers, node.name)
    if not found:
        return f"no server {node.name} in {project_label}"
    if len(found) > 1:
        return f"{len(found)} servers named {node.name} in {project_label}"
    if found[0].status != "ACTIVE":
        return f"server {node.name} is {found[0].status}, expected ACTIVE"
    return None


def expected_flavor(node: Node, expect: Expectations) -> str:
    """A glob: the node's own ``flavor``, else the ALICE default for its role and kind."""
    if node.flavor:
        return node.flavor
    if node.role == "master":
        return expect.master_flavor
    return expect.metal_flavor_pattern if node.kind == "metal" else expect.vm_flavor


def flavor_problem(server: Server, node: Node, expect: Expectations) -> str | None:
    want = expected_flavor(node, expect)
    if server.flavor is None:
        return f"cannot tell the flavor of {node.name}"
    if not fnmatch.fnmatchcase(server.flavor, want):
        return f"{node.name} has flavor {server.flavor}, expected {want}"
    return None


def master_az_problems(servers: Sequence[Server], masters: Sequence[Node], zones: Sequence[str]) -> list[str]:
    """The masters in as many distinct availability zones as there are masters; each in an expected zone and,
    when the inventory says which, in that one."""
    problems = []
    seen: dict[str, list[str]] = {}
    for m in masters:
        found = find(servers, m.name)
        if not found:
            problems.append(f"{m.name}: no such server")
            continue
        az = found[0].az or "(none)"
        seen.setdefault(az, []).append(m.name)
        if zones and az not in zones:
            problems.append(f"{m.name} is in {az}, not one of {', '.join(zones)}")
        elif m.az and az != m.az:
            problems.append(f"{m.name} is in {az}, the inventory says {m.az}")
    shared = [f"{', '.join(names)} share {az}" for az, names in sorted(seen.items()) if len(names) > 1]
    if shared:
        problems.append(f"masters not in distinct availability zones: {'; '.join(shared)}")
    return problems


def agent_patterns(inventory: Inventory, nodes: Sequence[Node]) -> list[str]:
    """What a build node's server name looks like: the agent discovery patterns, else the agents' name prefixes
    (``alibuild01`` -> ``alibuild*``)."""
    patterns = [r.pattern for r in inventory.discovery if r.role == "agent"]
    if not patterns:
        patterns = sorted({re.sub(r"\d+$", "", n.name) + "*" for n in nodes if n.role == "agent"})
    return patterns


def drift_problems(servers: Sequence[Server], nomad_nodes: Iterable[str], inventory_agents: Iterable[str],
                   patterns: Sequence[str]) -> list[str]:
    """Every build server in OpenStack is a Nomad node and in the inventory, and the reverse."""
    def ours(names: Iterable[str]) -> set[str]:
        short = {n.split(".")[0] for n in names}
        return {n for n in short if any(fnmatch.fnmatchcase(n, p) for p in patterns)}

    build = ours(s.name for s in servers)
    nomad = ours(nomad_nodes)
    inv = ours(inventory_agents)
    problems = []
    for what, names in (("in OpenStack but not a Nomad node", build - nomad),
                        ("in OpenStack but not in the inventory", build - inv),
                        ("a Nomad node but not in OpenStack", nomad - build),
                        ("in the inventory but not in OpenStack", inv - build)):
        if names:
            problems.append(f"{what}: {', '.join(sorted(names))}")
    return problems
