"""OpenStack through openstacksdk (clouds.yaml / OS_CLOUD): the servers of the VM project and of the physical
nodes' project, the flavors, and the VM agents' volume attachments, as Nova documents them at any microversion."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from acceptance.clients import shapes, transport
from acceptance.clients.call import Deadline, bounded_all, parse_answer
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ROOT_KINDS, ApiError, check_status
from acceptance.clients.openstack_cloud import Cloud, Side, api_error, connect, late, quietly, select_cloud, unwrap
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode
from acceptance.clients.transport import Answer
from acceptance.inventory import Inventory, Node

T = TypeVar("T")
PROJECTS: tuple[Side, ...] = ("vm", "metal")  # vm: masters and VM agents; metal: bare-metal agents
# what the cloud's user needs in each project (Nova's default policies: the project reader role)
RIGHTS: dict[str, str | None] = {
    "/servers/detail": "the reader (or member) role on the project (os_compute_api:servers:detail)",
    "/flavors/detail": "any role on the project (os_compute_api:flavors)",
    "os-volume_attachments": "the reader (or member) role on the project (os_compute_api:os-volumes-attachments:index)",
}


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str
    az: str | None
    flavor: str | None  # the flavor's name
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    servers: list[Server]
    label: str


class OpenStackSnapshot(ApiSnapshot):
    api = "openstack"
    vm = Part[Project]()  # masters and VM agents
    metal = Part[Project]()  # bare-metal agents
    attachments = Part[PerNode[list[str]]]()  # devices attached to each VM agent's server

    TOKEN_PARTS = ("vm", "metal")


def parse_servers(body: Any, flavors: Mapping[str, str] | None = None) -> list[Server]:
    """Servers of a ``GET /servers/detail`` body: flavor by ``original_name`` (2.47+) or by id (2.1)."""
    out = []
    for i, s in enumerate(shapes.items(shapes.obj(body, "the body"), "servers", "the body")):
        where = f"servers[{i}]"
        flavor = shapes.obj(s.get("flavor") or {}, f"{where}.flavor")
        name = flavor.get("original_name") or flavor.get("name") or (flavors or {}).get(str(flavor.get("id")))
        if name is not None and not isinstance(name, str):
            raise shapes.ShapeError(f"{where}.flavor's name is {shapes.describe(name)}, expected a string")
        addresses = []
        for net, entries in shapes.obj(s.get("addresses") or {}, f"{where}.addresses").items():
            for j, a in enumerate(shapes.items(entries or [], None, f"{where}.addresses.{net}")):
                addr = a.get("addr")
                if addr is not None:
                    addresses.append(shapes.text(addr, f"{where}.addresses.{net}[{j}].addr"))
        az = s.get("OS-EXT-AZ:availability_zone")
        out.append(Server(id=shapes.string(s, "id", where, empty=False), name=shapes.string(s, "name", where),
                          status=shapes.string(s, "status", where, empty=False),
                          az=None if az is None else shapes.text(az, f"{where}.OS-EXT-AZ:availability_zone"),
                          flavor=name, addresses=tuple(addresses)))
    return out


def parse_flavors(body: Any) -> dict[str, str]:
    return {shapes.string(f, "id", f"flavors[{i}]"): shapes.string(f, "name", f"flavors[{i}]")
            for i, f in enumerate(shapes.items(shapes.obj(body, "the body"), "flavors", "the body"))}


def attached_devices(body: Any) -> list[str]:
    return [shapes.string(a, "device", f"volumeAttachments[{i}]", default="")
            for i, a in enumerate(shapes.items(shapes.obj(body, "the body"), "volumeAttachments", "the body"))]


def _cfg(cloud: Cloud) -> ApiConfig:
    return ApiConfig(name="openstack", urls=(f"cloud {cloud.name!r}",), ca_source="the cloud's cacert in "
                     "clouds.yaml (OS_CLIENT_CONFIG_FILE)", token_var="the cloud's credentials in clouds.yaml "
                     f"(OS_CLOUD / {cloud.source})")


def _answer(conn: Any, cfg: ApiConfig, path: str) -> Answer:
    response = conn.compute.get(path, raise_exc=False)
    answer = Answer(cfg.url, path, int(response.status_code), {k.lower(): v for k, v in response.headers.items()},
                    bytes(response.content or b""))
    check_status(cfg, answer, right=RIGHTS["os-volume_attachments"] if "volume" in path else RIGHTS.get(path))
    return answer


def _get(conn: Any, cfg: ApiConfig, path: str, parse: Callable[[Any], T]) -> T:
    return parse_answer(cfg, _answer(conn, cfg, path), parse)


def list_servers(cloud: Cloud) -> list[Server]:
    """The project's servers (flavors by name where Nova gives them), for discovery; an ApiError for any failure."""
    cfg = _cfg(cloud)
    try:
        return _get(connect(cloud), cfg, "/servers/detail", parse_servers)
    except Exception as e:  # openstacksdk and keystoneauth raise many types: one line
        raise api_error(cfg, "/servers/detail", e) from None


def _fetch_project(cloud: Cloud, vm_agents: Sequence[str],
                   deadline: Deadline) -> tuple[Project | ApiError, dict[str, list[str] | ApiError]]:
    cfg = _cfg(cloud)
    path = "/servers/detail"
    attachments: dict[str, list[str] | ApiError] = {}
    try:
        conn = connect(cloud)
        listed = _answer(conn, cfg, path)
        path = "/flavors/detail"
        flavors = _get(conn, cfg, path, parse_flavors)
        path = "/servers/detail"
        servers = parse_answer(cfg, listed, lambda b: parse_servers(b, flavors))
        for s in (s for s in servers if s.name in vm_agents):
            path = f"/servers/{s.id}/os-volume_attachments"
            if deadline.passed():
                attachments[s.name] = deadline.error(cfg, path)
                continue
            try:
                attachments[s.name] = _get(conn, cfg, path, attached_devices)
            except Exception as e:  # one server's attachments: that check only
                attachments[s.name] = api_error(cfg, path, e)
        return Project(servers, cloud.label), attachments
    except Exception as e:  # openstacksdk and keystoneauth raise many types: one line
        if deadline.passed() and isinstance(unwrap(e), transport.Aborted):
            return late(cloud.label, deadline.seconds), attachments
        return api_error(cfg, path, e), attachments


def fetch(inventory: Inventory, nodes: Sequence[Node], deadline_s: float | None = None) -> OpenStackSnapshot:
    """Both projects at once, within the snapshot's deadline (see :func:`call.bounded_all`)."""
    snap = OpenStackSnapshot()
    seconds = deadline_s if deadline_s is not None else float(inventory.apis.deadline_s)
    deadline = Deadline(seconds)
    settings = inventory.apis.openstack
    timeout_s = min(seconds, float(settings.timeout_s if settings else 30))
    chosen: dict[str, Cloud | ApiError] = {}
    with warnings.catch_warnings():  # openstacksdk's deprecation notices are not the operator's business
        warnings.simplefilter("ignore")
        for project in PROJECTS:
            try:
                chosen[project] = select_cloud(inventory, project, timeout_s=timeout_s)
            except ApiError as e:
                chosen[project] = e
    vm_agents = [n.name for n in nodes if n.role == "agent" and n.kind != "metal"]
    clouds = {side: c for side, c in chosen.items() if isinstance(c, Cloud)}
    results = bounded_all(max(0.0, deadline.left()), {
        side: quietly(functools.partial(_fetch_project, c, vm_agents, deadline)) for side, c in clouds.items()})
    attachments: dict[str, list[str] | ApiError] = {}
    for side, cloud in chosen.items():
        got = results.get(side, (late(cloud.label, seconds) if isinstance(cloud, Cloud) else cloud, {}))
        if isinstance(got, Exception):  # _fetch_project makes one line of every failure
            got = (api_error(_cfg(clouds[side]), "/servers/detail", got), {})
        snap.set_part(side, got[0])
        attachments.update(got[1])
    snap.attachments = PerNode("OpenStack", attachments)
    vm = chosen["vm"]
    snap.url = str(vm.name) if isinstance(vm, Cloud) else ""
    err = snap.raw("vm")
    if isinstance(err, ApiError) and (err.kind in ROOT_KINDS or err.kind in ("protocol", "redirect")):
        snap.root = err
    return snap
