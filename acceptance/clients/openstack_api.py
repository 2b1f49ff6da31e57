"""OpenStack through openstacksdk (clouds.yaml / OS_CLOUD): the servers of the VM project and of the physical
nodes' project, the flavors, and the volume attachments of the VM agents; parsed as Nova documents them
(reference/api/openstack), whatever the microversion."""

from __future__ import annotations

import fnmatch
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from acceptance.clients import shapes, transport
from acceptance.clients.call import Deadline, parse_answer
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ROOT_KINDS, ApiError, check_status
from acceptance.clients.openstack_cloud import GRACE_S, Cloud, Side, api_error, connect, select_cloud, unwrap
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode
from acceptance.clients.transport import Answer
from acceptance.inventory import Expectations, Inventory, Node

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
    """One project's servers, and which cloud (and clouds.yaml setting) they were listed with."""

    servers: list[Server]
    label: str


class OpenStackSnapshot(ApiSnapshot):
    api = "openstack"
    vm = Part[Project]()  # masters and VM agents
    metal = Part[Project]()  # bare-metal agents
    attachments = Part[PerNode[list[str]]]()  # devices attached to each VM agent's server

    TOKEN_PARTS = ("vm", "metal")


# --------------------------------------------------------------------------- parsers


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


# --------------------------------------------------------------------------- fetch


def _cfg(cloud: Cloud) -> ApiConfig:
    return ApiConfig(name="openstack", urls=(f"cloud {cloud.name!r}",), ca_source="the cloud's cacert in "
                     "clouds.yaml (OS_CLIENT_CONFIG_FILE)", token_var="the cloud's credentials in clouds.yaml "
                     f"(OS_CLOUD / {cloud.source})")


def _answer(conn: Any, cfg: ApiConfig, path: str) -> Answer:
    """``GET path`` on the compute endpoint; the body was capped by the transport while it streamed."""
    response = conn.compute.get(path, raise_exc=False)
    answer = Answer(cfg.url, path, int(response.status_code), {k.lower(): v for k, v in response.headers.items()},
                    bytes(response.content or b""))
    check_status(cfg, answer, right=RIGHTS["os-volume_attachments"] if "volume" in path else RIGHTS.get(path))
    return answer


def _get(conn: Any, cfg: ApiConfig, path: str, parse: Callable[[Any], T]) -> T:
    return parse_answer(cfg, _answer(conn, cfg, path), parse)


def list_servers(cloud: Cloud) -> list[Server]:
    """The project's servers (one ``GET /servers/detail``, flavors by name where Nova gives them), for discovery;
    call it inside ``transport.deadline``. An :class:`ApiError` for any failure."""
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
        late = deadline.passed() and isinstance(unwrap(e), transport.Aborted)
        return _late(cloud, deadline) if late else api_error(cfg, path, e), attachments


def _late(cloud: Cloud, deadline: Deadline) -> ApiError:
    return ApiError("unreachable", f"OpenStack ({cloud.label}) did not answer within the deadline of "
                                   f"{deadline.seconds:g} s (apis.deadline_s)")


def _timeout(inventory: Inventory) -> float:
    settings = inventory.apis.openstack
    return float(settings.timeout_s if settings else 30)


def fetch(inventory: Inventory, nodes: Sequence[Node], deadline_s: float | None = None) -> OpenStackSnapshot:
    """Both projects at once, each within the snapshot's deadline (``transport.deadline``: every request of
    keystoneauth and openstacksdk ends by then), in daemon threads the snapshot stops waiting for at the deadline
    all the same (see :func:`openstack_cloud.bounded`)."""
    snap = OpenStackSnapshot()
    seconds = deadline_s if deadline_s is not None else float(inventory.apis.deadline_s)
    deadline = Deadline(seconds)
    chosen: dict[str, Cloud | ApiError] = {}
    with warnings.catch_warnings():  # openstacksdk's deprecation notices are not the operator's business
        warnings.simplefilter("ignore")
        for project in PROJECTS:
            try:
                chosen[project] = select_cloud(inventory, project, timeout_s=min(seconds, _timeout(inventory)))
            except ApiError as e:
                chosen[project] = e
    vm_agents = [n.name for n in nodes if n.role == "agent" and n.kind != "metal"]
    results: dict[str, tuple[Project | ApiError, dict[str, list[str] | ApiError]]] = {}
    threads = []
    for side, cloud in chosen.items():
        if isinstance(cloud, ApiError):
            results[side] = cloud, {}
            continue

        def run(p: str = side, c: Cloud = cloud) -> None:
            with warnings.catch_warnings(), transport.deadline(max(0.0, deadline.left())):
                warnings.simplefilter("ignore")
                results[p] = _fetch_project(c, vm_agents, deadline)

        thread = threading.Thread(target=run, name=f"openstack-{side}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline.left() + GRACE_S))
    attachments: dict[str, list[str] | ApiError] = {}
    for side, cloud in chosen.items():
        got = results.get(side)
        if got is None:
            assert isinstance(cloud, Cloud)  # an error is a result
            got = _late(cloud, deadline), {}
        snap.set_part(side, got[0])
        attachments.update(got[1])
    snap.attachments = PerNode("OpenStack", attachments)
    vm = chosen["vm"]
    snap.url = str(vm.name) if isinstance(vm, Cloud) else ""
    err = snap.raw("vm")
    if isinstance(err, ApiError) and (err.kind in ROOT_KINDS or err.kind in ("protocol", "redirect")):
        snap.root = err
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
