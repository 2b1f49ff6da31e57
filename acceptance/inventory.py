"""The inventory: one YAML file describing the cluster, validated on load.

Every problem is reported as ONE line naming the file (and line), the key and the fix
(:class:`InventoryError`); the plugin turns it into a pytest usage error (exit status 4).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, cast

import yaml

Role = Literal["master", "agent", "cluster"]  # "cluster": the pseudo-node of cluster-wide checks
Kind = Literal["vm", "metal"]
ROLES: tuple[Role, ...] = ("master", "agent")  # the roles an inventory node can have
CLUSTER = "cluster"  # name and role of the pseudo-node that carries the cluster-wide (API) checks
KINDS: tuple[Kind, ...] = ("vm", "metal")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


class InventoryError(Exception):
    """A bad inventory: one line with the file, the key, the problem and the fix."""

    def __init__(self, path: Path | str, key: str, problem: str, fix: str, line: int | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        self.fix = fix
        self.line = line
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {key}: {problem}; fix: {fix}" if key else f"{where}: {problem}; fix: {fix}")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Node:
    """One machine the suite checks."""

    name: str
    role: Role
    address: str | None = None
    kind: Kind | None = None  # agents only: vm or metal
    az: str | None = None
    flavor: str | None = None
    project: str | None = None
    source: str = "static"  # "static" or "openstack"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Node:
        return cls(**dict(data))


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    config: Path | None = None
    known_hosts: Path | None = None
    identity: Path | None = None
    connect_timeout_s: int = 10
    command_timeout_s: int = 120
    control_persist_s: int = 600
    target: Literal["address", "name"] = "address"  # what ssh connects to: the node's address or its name

    def destination(self, node: Node) -> str:
        if self.target == "address" and node.address:
            return node.address
        return node.name


@dataclass(frozen=True)
class TlsSettings:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Endpoint:
    address: str
    dns: str | None = None  # consul only: host:port of Consul DNS


@dataclass(frozen=True)
class OpenStackSettings:
    cloud: str | None = None  # clouds.yaml cloud of the VMs' project (masters and VM agents)
    cloud_metal: str | None = None  # clouds.yaml cloud of the physical nodes' project (metal agents)
    clouds_yaml: Path | None = None
    timeout_s: int = 30


@dataclass(frozen=True)
class Apis:
    tls: TlsSettings | None = None
    nomad: Endpoint | None = None
    consul: Endpoint | None = None
    vault: Endpoint | None = None
    prometheus: Endpoint | None = None
    openstack: OpenStackSettings | None = None
    timeout_s: float = 10  # read timeout of every API call (connect: at most 3 s)
    retry_s: float = 20  # how long the snapshot of one API retries what is safe to retry (leader elections)


@dataclass(frozen=True)
class DiscoveryRule:
    project: str
    role: Role
    pattern: str
    kind: Kind | None = None


@dataclass(frozen=True)
class Expectations:
    """What a healthy node looks like; ALICE defaults (reference/alice-facts.md), all overridable."""

    builder_image: str = "registry.cern.ch/alisw/slc9-builder"
    kernel_args: tuple[str, ...] = ("systemd.unified_cgroup_hierarchy=0",)
    master_units: tuple[str, ...] = ("docker", "nomad", "consul", "vault")
    agent_units: tuple[str, ...] = ("docker", "nomad")
    master_flavor: str = "m2.large"
    vm_flavor: str = "m2.2xlarge"
    availability_zones: tuple[str, ...] = ("cern-geneva-a", "cern-geneva-b", "cern-geneva-c")
    build_mount: str = "/build"
    build_min_free_gib: float = 240
    puppet_summary: str = "/opt/puppetlabs/puppet/public/last_run_summary.yaml"
    puppet_max_age_h: float = 2
    backup_path: str = "/build/consul"
    backup_sched_log: str = "/var/log/tsm/dsmsched.log"
    backup_max_age_h: float = 26
    backup_unit: str = "dsmcad"
    ci_jobs: tuple[str, ...] = ("ci-mesosci-slc9", "ci-mesosdaq-slc9", "repo", "publish-alien")
    metal_flavor_pattern: str = "p1.*"  # glob for bare-metal flavors when the node has no 'flavor'
    prometheus_jobs: tuple[str, ...] = ("nomad", "consul", "vault")
    remote_write_max_lag_s: float = 60


@dataclass(frozen=True)
class Maintenance:
    node: str
    reason: str
    until: dt.date

    def expired(self, today: dt.date | None = None) -> bool:
        """An entry holds through the whole of its ``until`` day."""
        return self.until < (today or dt.date.today())


@dataclass(frozen=True)
class Inventory:
    path: Path
    cluster: str
    ssh: SshSettings
    apis: Apis
    nodes: tuple[Node, ...]  # the static nodes
    discovery: tuple[DiscoveryRule, ...] = ()
    expect: Expectations = field(default_factory=Expectations)
    maintenance: tuple[Maintenance, ...] = ()

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


# --------------------------------------------------------------------------- YAML with line numbers


class _Map(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class _List(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader that remembers line numbers and refuses duplicate keys."""


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    mapping = _Map()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {mapping.key_lines[key]})", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _List:
    seq = _List(loader.construct_object(child, deep=True) for child in node.value)
    seq.line = node.start_mark.line + 1
    seq.item_lines = [child.start_mark.line + 1 for child in node.value]
    return seq


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


# --------------------------------------------------------------------------- validation helpers

T = TypeVar("T")
_MISSING: Any = object()


class _Reader:
    """Walks the parsed YAML with the file path at hand for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, key: str, problem: str, fix: str, line: int | None = None) -> NoReturn:
        raise InventoryError(self.path, key, problem, fix, line)

    @staticmethod
    def line_of(container: Any, key: Any = None) -> int | None:
        if isinstance(container, _Map) and key is not None and key in container.key_lines:
            return container.key_lines[key]
        if isinstance(container, _List) and isinstance(key, int) and key < len(container.item_lines):
            return container.item_lines[key]
        return getattr(container, "line", None) or None

    def mapping(
        self, value: Any, where: str, allowed: Sequence[str], required: Iterable[str] = (), line: int | None = None
    ) -> _Map:
        if not isinstance(value, dict):
            self.fail(where or "(top level)", f"expected a mapping, got {_describe(value)}",
                      f"write {where or 'the file'} as 'key: value' lines", line)
        mapping = value if isinstance(value, _Map) else _Map(value)
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                fix = f"did you mean '{close[0]}'?" if close else f"remove it (known keys: {', '.join(allowed)})"
                self.fail(_join(where, str(key)), "unknown key", fix, self.line_of(mapping, key))
        for key in required:
            if key not in mapping or mapping[key] is None:
                self.fail(_join(where, key), "missing", f"add '{key}:' to {where or 'the file'}", self.line_of(mapping))
        return mapping

    def get(
        self, mapping: _Map, key: str, where: str, kind: type[T], default: Any = _MISSING, what: str = ""
    ) -> T:
        if key not in mapping or mapping[key] is None:
            if default is _MISSING:
                self.fail(_join(where, key), "missing", f"add '{key}:' ({what or kind.__name__})",
                          self.line_of(mapping))
            return cast(T, default)
        value = mapping[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(_join(where, key), f"expected {what or _TYPE_NAMES.get(kind, kind.__name__)}, "
                      f"got {_describe(value)}", f"write {key} as {_EXAMPLES.get(kind, kind.__name__)}",
                      self.line_of(mapping, key))
        return value

    def opt(self, mapping: _Map, key: str, where: str, kind: type[T], what: str = "") -> T | None:
        """Like get, None when absent."""
        return cast("T | None", self.get(mapping, key, where, kind, None, what))

    def positive(self, mapping: _Map, key: str, where: str, kind: type[T], default: T) -> T:
        value = self.get(mapping, key, where, kind, default)
        if cast(float, value) <= 0:
            self.fail(_join(where, key), f"must be > 0, got {value}", "write a positive number",
                      self.line_of(mapping, key))
        return value

    def str_list(self, mapping: _Map, key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.opt(mapping, key, where, list, "a list of strings")
        if value is None:
            return default
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.fail(f"{_join(where, key)}[{i}]", f"expected a non-empty string, got {_describe(item)}",
                          "quote the value", self.line_of(value, i))
        return tuple(value)

    def choice(self, mapping: _Map, key: str, where: str, choices: Sequence[str], default: Any = _MISSING) -> Any:
        value = self.get(mapping, key, where, str, default, f"one of {', '.join(choices)}")
        if value is not None and value not in choices:
            self.fail(_join(where, key), f"{value!r} is not one of {', '.join(choices)}",
                      f"use one of {', '.join(choices)}", self.line_of(mapping, key))
        return value

    def local_path(self, mapping: _Map, key: str, where: str, must_exist: bool = True) -> Path | None:
        value = self.opt(mapping, key, where, str, "a file path")
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (self.base / path).resolve()
        if must_exist and not path.exists():
            self.fail(_join(where, key), f"file not found: {path}",
                      "fix the path (relative paths are relative to the inventory file)", self.line_of(mapping, key))
        return path

    def url(self, mapping: _Map, key: str, where: str) -> str:
        value = self.get(mapping, key, where, str, what="a URL")
        if not re.match(r"^https?://[^/\s]+", value):
            self.fail(_join(where, key), f"{value!r} is not an http(s) URL",
                      "write it as https://host:port", self.line_of(mapping, key))
        return value


_TYPE_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                                list: "a list", dict: "a mapping"}
_EXAMPLES: dict[type, str] = {str: "a string (quote it)", int: "a whole number, e.g. 10", float: "a number, e.g. 2",
                              bool: "true or false", list: "a list: [a, b]", dict: "a mapping: {key: value}"}


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# --------------------------------------------------------------------------- sections

_TOP = ("cluster", "ssh", "apis", "nodes", "discovery", "expect", "maintenance")
_SSH = ("user", "config", "known_hosts", "identity", "connect_timeout_s", "command_timeout_s", "control_persist_s",
        "target")
_APIS = ("tls", "nomad", "consul", "vault", "prometheus", "openstack", "timeout_s", "retry_s")
_NODE = ("name", "address", "kind", "az", "flavor", "project")
_RULE = ("project", "role", "kind", "pattern")
_MAINT = ("node", "reason", "until")


def _ssh(r: _Reader, raw: Any) -> SshSettings:
    if raw is None:
        return SshSettings()
    m = r.mapping(raw, "ssh", _SSH)
    d = SshSettings()
    return SshSettings(
        user=r.get(m, "user", "ssh", str, d.user),
        config=r.local_path(m, "config", "ssh"),
        known_hosts=r.local_path(m, "known_hosts", "ssh"),
        identity=r.local_path(m, "identity", "ssh"),
        connect_timeout_s=r.positive(m, "connect_timeout_s", "ssh", int, d.connect_timeout_s),
        command_timeout_s=r.positive(m, "command_timeout_s", "ssh", int, d.command_timeout_s),
        control_persist_s=r.positive(m, "control_persist_s", "ssh", int, d.control_persist_s),
        target=r.choice(m, "target", "ssh", ("address", "name"), d.target),
    )


def _apis(r: _Reader, raw: Any) -> Apis:
    if raw is None:
        return Apis()
    m = r.mapping(raw, "apis", _APIS)
    tls = None
    if m.get("tls") is not None:
        t = r.mapping(m["tls"], "apis.tls", ("ca", "cert", "key"), line=r.line_of(m, "tls"))
        tls = TlsSettings(*(r.local_path(t, k, "apis.tls") for k in ("ca", "cert", "key")))

    def endpoint(name: str, extra: tuple[str, ...] = ()) -> Endpoint | None:
        if m.get(name) is None:
            return None
        e = r.mapping(m[name], f"apis.{name}", ("address", *extra), required=("address",), line=r.line_of(m, name))
        dns = r.opt(e, "dns", f"apis.{name}", str, "host:port") if "dns" in extra else None
        if dns is not None and not re.match(r"^[^:\s]+:\d+$", dns):
            r.fail(f"apis.{name}.dns", f"{dns!r} is not host:port", "write it as 172.30.0.11:8600",
                   r.line_of(e, "dns"))
        return Endpoint(address=r.url(e, "address", f"apis.{name}"), dns=dns)

    openstack = None
    if m.get("openstack") is not None:
        o = r.mapping(m["openstack"], "apis.openstack", ("cloud", "cloud_metal", "clouds_yaml", "timeout_s"),
                      line=r.line_of(m, "openstack"))
        openstack = OpenStackSettings(
            cloud=r.opt(o, "cloud", "apis.openstack", str),
            cloud_metal=r.opt(o, "cloud_metal", "apis.openstack", str),
            clouds_yaml=r.local_path(o, "clouds_yaml", "apis.openstack"),
            timeout_s=r.positive(o, "timeout_s", "apis.openstack", int, 30),
        )
    return Apis(tls=tls, nomad=endpoint("nomad"), consul=endpoint("consul", ("dns",)), vault=endpoint("vault"),
                prometheus=endpoint("prometheus"), openstack=openstack,
                timeout_s=r.positive(m, "timeout_s", "apis", float, 10.0),
                retry_s=r.positive(m, "retry_s", "apis", float, 20.0))


def _nodes(r: _Reader, raw: Any) -> tuple[Node, ...]:
    if raw is None:
        return ()
    m = r.mapping(raw, "nodes", ("masters", "agents"))
    seen: dict[str, tuple[str, int | None]] = {}
    nodes: list[Node] = []
    for group, role in (("masters", "master"), ("agents", "agent")):
        entries = r.get(m, group, "nodes", list, [], "a list of nodes")
        for i, entry in enumerate(entries):
            where = f"nodes.{group}[{i}]"
            line = r.line_of(entries, i)
            e = r.mapping(entry, where, _NODE, required=("name",), line=line)
            name = r.get(e, "name", where, str)
            if not _NAME_RE.match(name):
                r.fail(f"{where}.name", f"{name!r} is not a host name", "use letters, digits, '-' and '.'", line)
            if name in seen:
                other_group, other_line = seen[name]
                if other_group == group:
                    r.fail(f"{where}.name", f"duplicate node {name!r} (first at line {other_line})",
                           "remove one of the two entries", line)
                r.fail(f"{where}.name", f"{name!r} is both in nodes.{other_group} (line {other_line}) and in "
                       f"nodes.{group}", "a node has one role: remove it from one of the lists", line)
            seen[name] = (group, line)
            kind = r.choice(e, "kind", where, KINDS, "vm" if role == "agent" else None)
            if role == "master" and kind is not None:
                r.fail(f"{where}.kind", "kind applies to agents only", "remove it from the master", line)
            nodes.append(Node(
                name=name, role=cast(Role, role), kind=kind,
                address=r.opt(e, "address", where, str, "an IP address or host name"),
                az=r.opt(e, "az", where, str), flavor=r.opt(e, "flavor", where, str),
                project=r.opt(e, "project", where, str),
            ))
    return tuple(nodes)


def _discovery(r: _Reader, raw: Any) -> tuple[DiscoveryRule, ...]:
    if raw is None:
        return ()
    m = r.mapping(raw, "discovery", ("openstack",))
    rules = r.get(m, "openstack", "discovery", list, [], "a list of {project, role, kind, pattern}")
    out: list[DiscoveryRule] = []
    for i, entry in enumerate(rules):
        where = f"discovery.openstack[{i}]"
        e = r.mapping(entry, where, _RULE, required=("project", "role", "pattern"), line=r.line_of(rules, i))
        role = r.choice(e, "role", where, ROLES)
        kind = r.choice(e, "kind", where, KINDS, "vm" if role == "agent" else None)
        if role == "master" and kind is not None:
            r.fail(f"{where}.kind", "kind applies to agents only", "remove it from the rule", r.line_of(e, "kind"))
        out.append(DiscoveryRule(project=r.get(e, "project", where, str), role=role, kind=kind,
                                 pattern=r.get(e, "pattern", where, str, what="a glob such as 'alibuild*'")))
    return tuple(out)


def _expect(r: _Reader, raw: Any) -> Expectations:
    d = Expectations()
    if raw is None:
        return d
    names = [f.name for f in dataclasses.fields(Expectations)]
    m = r.mapping(raw, "expect", names)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Expectations):
        default = getattr(d, f.name)
        if isinstance(default, tuple):
            values[f.name] = r.str_list(m, f.name, "expect", default)
        elif isinstance(default, float | int):
            values[f.name] = r.positive(m, f.name, "expect", float, float(default))
        else:
            values[f.name] = r.get(m, f.name, "expect", str, default)
    return Expectations(**values)


def _maintenance(r: _Reader, raw: Any) -> tuple[Maintenance, ...]:
    if raw is None:
        return ()
    entries = raw
    if not isinstance(entries, list):
        r.fail("maintenance", f"expected a list, got {_describe(raw)}",
               "write it as a list of {node, reason, until}")
    out: list[Maintenance] = []
    for i, entry in enumerate(entries):
        where = f"maintenance[{i}]"
        e = r.mapping(entry, where, _MAINT, required=("node", "reason", "until"), line=r.line_of(entries, i))
        until = e["until"]
        if isinstance(until, dt.datetime):
            until = until.date()
        elif isinstance(until, str):
            try:
                until = dt.date.fromisoformat(until)
            except ValueError:
                until = None
        if not isinstance(until, dt.date):
            r.fail(f"{where}.until", f"expected a date, got {_describe(e['until'])}", "write it as YYYY-MM-DD",
                   r.line_of(e, "until"))
        out.append(Maintenance(node=r.get(e, "node", where, str), reason=r.get(e, "reason", where, str), until=until))
    return tuple(out)


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raise :class:`InventoryError` on the first problem."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InventoryError(path, "--inventory", "file not found" if not path.exists() else "not a file",
                             "pass the path of an inventory YAML file (see README.md)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(path, "--inventory", f"cannot read: {e}",
                             "check the file's permissions and encoding") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise InventoryError(path, "", f"YAML error: {problem}",
                             "check indentation, colons and quoting on that line", line) from None
    except yaml.YAMLError as e:
        raise InventoryError(path, "", f"YAML error: {e}", "check the file's syntax") from None
    return parse_inventory(raw, path)


def parse_inventory(raw: Any, path: Path) -> Inventory:
    r = _Reader(path.resolve())
    if raw is None:
        r.fail("", "the file is empty", "write at least 'nodes:' or 'discovery:' (see README.md)")
    m = r.mapping(raw, "", _TOP)
    cluster = r.get(m, "cluster", "", str, path.stem)
    nodes = _nodes(r, m.get("nodes"))
    discovery = _discovery(r, m.get("discovery"))
    apis = _apis(r, m.get("apis"))
    if not nodes and not discovery:
        r.fail("nodes", "no nodes", "list nodes under nodes.masters / nodes.agents, or add discovery.openstack",
               r.line_of(m, "nodes") if "nodes" in m else None)
    return Inventory(
        path=r.path, cluster=cluster, ssh=_ssh(r, m.get("ssh")), apis=apis, nodes=nodes, discovery=discovery,
        expect=_expect(r, m.get("expect")), maintenance=_maintenance(r, m.get("maintenance")),
    )


def describe_nodes(nodes: Iterable[Node]) -> str:
    """'3 masters, 40 agents (38 vm, 2 metal)'."""
    nodes = list(nodes)
    masters = sum(1 for n in nodes if n.role == "master")
    agents = [n for n in nodes if n.role == "agent"]
    kinds: Callable[[str], int] = lambda k: sum(1 for n in agents if n.kind == k)  # noqa: E731
    return f"{masters} masters, {len(agents)} agents ({kinds('vm')} vm, {kinds('metal')} metal)"
