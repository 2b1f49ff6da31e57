"""OpenStack through openstacksdk (clouds.yaml / OS_CLOUD): the servers of the VM project and of the physical
nodes' project, the flavors, and the volume attachments of the VM agents; parsed as Nova documents them
(reference/api/openstack), whatever the microversion."""

from __future__ import annotations

import fnmatch
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from acceptance.clients import shapes
from acceptance.clients.call import Deadline, parse_answer
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ROOT_KINDS, ApiError, check_status, classify, one_line, protocol_error
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode
from acceptance.clients.transport import MAX_BODY, Answer, count_request
from acceptance.inventory import Expectations, Inventory, Node
from acceptance.redaction import remember_mapping

T = TypeVar("T")
PHYSICAL_PROJECT = "ALICE Release Testing - physical nodes"
PROJECTS = ("vm", "metal")  # vm: masters and VM agents; metal: bare-metal agents
INSECURE_VAR = "ALICE_ACCEPTANCE_OPENSTACK_INSECURE"
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


def insecure_allowed(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(INSECURE_VAR, "").strip().lower() in ("1", "true", "yes")


def cloud_region(inventory: Inventory, cloud: str | None, project: str | None = None, *,
                 timeout_s: float | None = None, env: Mapping[str, str] | None = None) -> Any:
    """The clouds.yaml cloud's settings (openstacksdk's CloudRegion) with bounded calls (timeouts, no
    retries); its secrets remembered for redaction; ``verify: false`` / ``insecure: true`` refused (an
    ``ApiError`` of kind config) unless ALICE_ACCEPTANCE_OPENSTACK_INSECURE=1. Discovery may use it too."""
    import openstack.config

    settings = inventory.apis.openstack
    files = [str(settings.clouds_yaml)] if settings and settings.clouds_yaml else None
    timeout = timeout_s if timeout_s is not None else float(settings.timeout_s if settings else 30)
    extra: dict[str, Any] = {"project_name": project} if project else {}
    try:
        region = openstack.config.OpenStackConfig(config_files=files).get_one(
            cloud=cloud, api_timeout=timeout, connect_retries=0, status_code_retries=0, **extra)
    except Exception as e:  # openstacksdk raises its own types for a missing cloud or file
        raise ApiError("config", f"OpenStack: cloud {cloud!r}: {type(e).__name__}: {one_line(e, 160)}; fix: set "
                                 "OS_CLOUD or apis.openstack.cloud to a cloud of clouds.yaml (OS_CLIENT_CONFIG_FILE "
                                 "or apis.openstack.clouds_yaml)") from None
    remember_mapping(region.config)
    verify, _ = region.get_requests_verify_args()
    if verify is False and not insecure_allowed(env):
        raise ApiError("config", f"OpenStack: cloud {cloud!r} in clouds.yaml turns TLS verification off (verify: "
                                 "false / insecure: true), which would send its password unchecked; fix: give it "
                                 f"cacert: <the CA file> (or set {INSECURE_VAR}=1 to allow it knowingly)")
    return region


def _connect(inventory: Inventory, choice: CloudChoice, timeout_s: float) -> Any:
    import openstack.connection

    region = cloud_region(inventory, choice.cloud, choice.project, timeout_s=timeout_s)
    return openstack.connection.Connection(config=region)


def _cfg(choice: CloudChoice) -> ApiConfig:
    return ApiConfig(name="openstack", urls=(f"cloud {choice.cloud!r}",), ca_source="the cloud's cacert in "
                     "clouds.yaml (OS_CLIENT_CONFIG_FILE)", token_var="the cloud's credentials in clouds.yaml "
                     f"(OS_CLOUD / {choice.source})")


def _answer(conn: Any, cfg: ApiConfig, path: str) -> Answer:
    count_request("openstack")
    response = conn.compute.get(path, raise_exc=False)
    body = bytes(response.content or b"")
    if len(body) > MAX_BODY:
        raise protocol_error(cfg, None, cfg.url, path, f"larger than the suite reads ({len(body)} bytes)")
    answer = Answer(cfg.url, path, int(response.status_code), {k.lower(): v for k, v in response.headers.items()},
                    body)
    check_status(cfg, answer, right=RIGHTS["os-volume_attachments"] if "volume" in path else RIGHTS.get(path))
    return answer


def _get(conn: Any, cfg: ApiConfig, path: str, parse: Callable[[Any], T]) -> T:
    return parse_answer(cfg, _answer(conn, cfg, path), parse)


def _fetch_project(inventory: Inventory, choice: CloudChoice, vm_agents: Sequence[str],
                   deadline: Deadline) -> tuple[Project | ApiError, dict[str, list[str] | ApiError]]:
    with warnings.catch_warnings():  # openstacksdk's deprecation notices are not the operator's business
        warnings.simplefilter("ignore")
        cfg = _cfg(choice)
        path = "/servers/detail"
        attachments: dict[str, list[str] | ApiError] = {}
        try:
            conn = _connect(inventory, choice, max(1.0, min(deadline.left(), _timeout(inventory))))
            listed = _answer(conn, cfg, path)
            path = "/flavors/detail"
            flavors = _get(conn, cfg, path, parse_flavors)
            path = "/servers/detail"
            servers = parse_answer(cfg, listed, lambda b: parse_servers(b, flavors))
            for s in servers:
                if s.name in vm_agents:
                    path = f"/servers/{s.id}/os-volume_attachments"
                    if deadline.passed():
                        attachments[s.name] = deadline.error(cfg, path)
                        continue
                    try:
                        attachments[s.name] = _get(conn, cfg, path, attached_devices)
                    except Exception as e:  # one server's attachments: that check only
                        attachments[s.name] = classify(cfg, cfg.url, path, e)
            return Project(servers, f"{choice.source} (cloud {choice.cloud!r})"), attachments
        except Exception as e:  # openstacksdk and keystoneauth raise many types: one line
            return classify(cfg, cfg.url, path, e), attachments


def _timeout(inventory: Inventory) -> float:
    settings = inventory.apis.openstack
    return float(settings.timeout_s if settings else 30)


def fetch(inventory: Inventory, nodes: Sequence[Node], deadline_s: float | None = None) -> OpenStackSnapshot:
    """Both projects at once, in daemon threads the snapshot stops waiting for at its deadline (keystoneauth
    cannot be interrupted: a Keystone that never finishes answering costs the deadline, not more)."""
    snap = OpenStackSnapshot()
    choices = clouds(inventory)
    if choices["vm"].cloud is None:
        snap.root = ApiError("config", "OpenStack is not configured; fix: set OS_CLOUD (and OS_CLIENT_CONFIG_FILE) or "
                                       f"apis.openstack.cloud in {inventory.path}")
        return snap
    seconds = deadline_s if deadline_s is not None else float(inventory.apis.deadline_s)
    deadline = Deadline(seconds)
    vm_agents = [n.name for n in nodes if n.role == "agent" and n.kind != "metal"]
    results: dict[str, tuple[Project | ApiError, dict[str, list[str] | ApiError]]] = {}
    threads = []
    for project in PROJECTS:
        def run(p: str = project) -> None:
            results[p] = _fetch_project(inventory, choices[p], vm_agents, deadline)

        thread = threading.Thread(target=run, name=f"openstack-{project}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline.left()))
    attachments: dict[str, list[str] | ApiError] = {}
    for project in PROJECTS:
        got = results.get(project)
        if got is None:
            err = ApiError("unreachable", f"OpenStack ({choices[project].source}, cloud {choices[project].cloud!r}) "
                                          f"did not answer within the deadline of {seconds:g} s (apis.deadline_s)")
            snap.set_part(project, err)
            continue
        snap.set_part(project, got[0])
        attachments.update(got[1])
    snap.attachments = PerNode("OpenStack", attachments)
    snap.url = str(choices["vm"].cloud)
    vm = snap.raw("vm")
    if isinstance(vm, ApiError) and (vm.kind in ROOT_KINDS or vm.kind == "protocol"):
        snap.root = vm
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
