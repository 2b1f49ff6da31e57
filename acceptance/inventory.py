"""The inventory: one YAML file describing the cluster, validated on load.

Every problem is ONE line, ``FILE:LINE: KEY: PROBLEM; fix: FIX`` (:class:`InventoryError`), which the plugin turns
into a pytest usage error (exit status 4). A value is quoted at most ~60 characters long, and never a credential.

Keys. Relative paths are relative to the inventory file; numbers must be finite and within the bounds given
(``true``/``false`` are not numbers); strings are non-empty and on one line; unknown keys get a "did you mean".

``cluster``      the cluster's name (default: the file's name without its extension)
``ssh``          ``user`` (root; ``[a-z_][a-z0-9_.-]{0,31}``), ``config``, ``known_hosts``, ``identity`` (existing
                 files), ``connect_timeout_s`` (10; 1..3600), ``command_timeout_s`` (120; 1..3600),
                 ``control_persist_s`` (600; 1..86400), ``target`` (``address`` or ``name``: what ssh connects to)
``apis``         ``tls: {ca, cert, key}`` (existing files); ``nomad``, ``vault``, ``prometheus``: ``{address}``;
                 ``consul: {address, dns}``. An address is an http(s) URL with a host, an optional port (1..65535)
                 and no credentials (they come from the environment); ``dns`` is HOST:PORT.
                 ``openstack: {cloud, cloud_metal, clouds_yaml, timeout_s (30; 1..3600)}``.
                 ``timeout_s`` (10; (0, 600]: read timeout of one call), ``retry_s`` (20; (0, 600]: how long the
                 snapshot of one API retries), ``deadline_s`` (45; (0, 600]: one deadline for a whole API snapshot)
``nodes``        ``masters`` and ``agents``: lists of ``{name, address, az, flavor, project}``, agents also
                 ``kind`` (vm or metal; default vm). A name is a host name: letters, digits, '-' and '.', labels of
                 1..63 characters not starting with '-', 253 characters at most, not ``cluster``
                 (:func:`valid_node_name`); an address is an IPv4/IPv6 address or such a host name
                 (:func:`valid_address`).
``discovery``    ``openstack``: a list of ``{project, role: master|agent, kind, pattern}`` (pattern: a glob)
``expect``       what a healthy node looks like (:class:`Expectations`; every key defaults to the ALICE value):
                 ``build_min_free_gib`` (0, 1e6], ``puppet_max_age_h`` and ``backup_max_age_h`` (0, 8760],
                 ``remote_write_max_lag_s`` (0, 86400]; lists of strings; strings
``maintenance``  a list of ``{node, reason, until: YYYY-MM-DD}``: the node's checks are waived through that day
                 (``node: cluster`` waives the cluster-wide checks; a reason may span lines)
``checks``       a list of directories of the site's own checks (existing, each once) -> ``Inventory.check_dirs``
``remediation``  -> ``Inventory.remediation`` (:class:`RemediationSettings`): ``enabled`` (true; false is the
                 inventory's kill switch: no remediation at all), ``kill_switch_file`` (a path that stops remediation
                 while it exists; need not exist), ``max_failing_masters`` (1; 0..1000) and ``max_failing_agents``
                 (3; 0..100000): the circuit breaker, ``drain_deadline_s`` (21600; (0, 7 days]), ``settle_timeout_s``
                 (300; (0, 3600]), ``lock_key`` (``alice-acceptance/remediation-lock``: a Consul KV key),
                 ``lock_ttl_s`` (900; 10..86400), ``attempts`` (3; 1..100: the retry budget per check and node),
                 ``budget_window_h`` (24; (0, 8760]), ``state_file`` (need not exist)

Bounds of the input, so that any file is refused in well under a second: 1 MiB, 32 levels of nesting, 10,000
items in one list or mapping, 50,000 values once YAML aliases are expanded (an "alias bomb" is refused).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import functools
import ipaddress
import math
import re
import reprlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Role = Literal["master", "agent", "cluster"]  # "cluster": the pseudo-node of cluster-wide checks
Kind = Literal["vm", "metal"]
ROLES: tuple[Role, ...] = ("master", "agent")  # the roles an inventory node can have
CLUSTER = "cluster"  # name and role of the pseudo-node that carries the cluster-wide (API) checks
KINDS: tuple[Kind, ...] = ("vm", "metal")

MAX_BYTES = 1 << 20  # bounds of the input (see the module's docstring)
MAX_DEPTH = 32
MAX_ITEMS = 10_000
MAX_VALUES = 50_000

# user:password@ in a URL, with or without a scheme; linear (a match starts only where a word starts)
_CREDENTIALS = re.compile(r"(?<![^\s/@'\"])[^\s/@'\":]*+:[^\s/@'\"]*+@")


def _redact(text: str) -> str:
    return _CREDENTIALS.sub("***@", text) if "@" in text else text


def _clean(text: str, limit: int) -> str:
    """One line of at most `limit` characters, credentials blanked out."""
    text = _redact(text[: 4 * limit])
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InventoryError(Exception):
    """A bad inventory: one line with the file, the key, the problem and the fix."""

    def __init__(self, path: Path | str, key: str, problem: str, fix: str, line: int | None = None) -> None:
        self.path = str(path)
        self.key = _clean(key, 120)
        self.problem = _clean(problem, 300)
        self.fix = _clean(fix, 500)
        self.line = line
        shown = "".join(c if c.isprintable() else "?" for c in self.path)
        where = f"{shown}:{line}" if line else shown
        head = f"{where}: {self.key}: " if self.key else f"{where}: "
        super().__init__(f"{head}{self.problem}; fix: {self.fix}")


# --------------------------------------------------------------------------- values in messages, validators


class _Short(reprlib.Repr):
    """repr() of at most a few items and levels: a message never walks a whole (possibly aliased) structure."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 2, 50, 50, 50
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 4
        self.maxdict = 3

    def repr_str(self, x: str, level: int) -> str:
        return super().repr_str(_redact(x), level)  # before it is shortened, which could cut the '@' off

    def repr__Map(self, x: dict[Any, Any], level: int) -> str:  # the loader's classes
        return self.repr_dict(x, level)

    def repr__List(self, x: list[Any], level: int) -> str:
        return self.repr_list(x, level)


_SHORT = _Short()


def _show(value: Any) -> str:
    """A value as quoted in a message: at most 60 characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: Any) -> str:
    kind = {"_Map": "mapping", "_List": "list", "dict": "mapping", "NoneType": "null"}.get(type(value).__name__)
    return f"{_show(value)} ({kind or type(value).__name__})"


_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # of an IPv6 address, as in fe80::1%eth0
_LOCK_KEY = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")


def _host_problem(host: str) -> str | None:
    if not host:
        return "empty"
    if len(host) > 253:
        return f"{len(host)} characters, more than 253"
    if host[0] in "-.":
        return f"starts with {host[0]!r}" + (" (ssh would read it as an option)" if host[0] == "-" else "")
    if _HOST.fullmatch(host):
        return None
    bad = next((c for c in host if not (c.isascii() and (c.isalnum() or c in "-."))), None)
    if bad is not None:
        return f"contains {bad!r}: only letters, digits, '-' and '.'"
    if any(len(label) > 63 for label in host.split(".")):
        return "a label (between dots) longer than 63 characters"
    return "an empty label, or a label starting with '-'"


def valid_node_name(name: str) -> str | None:
    """None when `name` can be a node's name, else the problem (one line): a host name, and not 'cluster'.

    For the names of discovered servers too, so that every node name obeys the same rules.
    """
    if not isinstance(cast(object, name), str):  # from a discovery: anything
        return f"expected a string, got {_describe(name)}"
    if name == CLUSTER:
        return f"{name!r} is reserved for the cluster-wide checks"
    problem = _host_problem(name)
    return None if problem is None else f"{_show(name)} is not a host name: {problem}"


def valid_address(address: str) -> str | None:
    """None when `address` can be a node's address (an IPv4/IPv6 address or a host name), else the problem."""
    if not isinstance(cast(object, address), str):
        return f"expected a string, got {_describe(address)}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        problem = _host_problem(address)
        if problem is None and address.rsplit(".", 1)[-1].isdigit():
            problem = "its last label is all digits, but it is not an IPv4 address"
        return None if problem is None else f"{_show(address)} is not an IP address or a host name: {problem}"
    scope = getattr(ip, "scope_id", None)
    if scope is not None and not _SCOPE.fullmatch(scope):
        return f"{_show(address)}: the IPv6 scope after '%' is not an interface name"
    return None


def _user_problem(user: str) -> str | None:
    if _USER.fullmatch(user):
        return None
    return f"{_show(user)} is not a user name: [a-z_] then up to 31 of [a-z0-9_.-]"


_Check = Callable[[str], "tuple[str, str] | None"]  # a string's (problem, fix), or None


def _fixing(problem: Callable[[str], str | None], fix: str) -> _Check:
    def check(value: str) -> tuple[str, str] | None:
        found = problem(value)
        return None if found is None else (found, fix)

    return check


def _url_problem(url: str) -> tuple[str, str] | None:
    fix = "write it as https://host:port"
    if "@" in url:  # the URL itself is never shown: it may hold a password
        return "credentials in the URL", "remove them, credentials come from the environment"
    if "?" in url or "#" in url:
        return "a query or fragment in the URL", f"{fix}; tokens come from the environment"
    if any(not c.isprintable() or c.isspace() for c in url):
        return "a space or control character in the URL", fix
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{_show(url)} is not an http(s) URL (malformed host)", fix
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{_show(url)} is not an http(s) URL", fix
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return f"{_show(url)}: the port must be a number in 1..65535", fix
    host_problem = valid_address(parts.hostname or "")
    if host_problem:
        return f"the URL's host: {host_problem}", fix
    if not re.fullmatch(r"[A-Za-z0-9/._~%-]*", parts.path):
        return f"{_show(url)}: unexpected characters in the path", fix
    return None


def _hostport_problem(value: str) -> tuple[str, str] | None:
    fix = "write it as host:port, e.g. 172.30.0.11:8600"
    match = re.fullmatch(r"\[([^\]]*)\]:([0-9]{1,5})|([^:\[\]]*):([0-9]{1,5})", value)
    if not match:
        return f"{_show(value)} is not host:port", fix
    host, port = (match[1], match[2]) if match[2] else (match[3], match[4])
    if match[2] and ":" not in host:
        return f"{_show(value)}: brackets are for IPv6 addresses only", fix
    if not 1 <= int(port) <= 65535:
        return f"port {int(port)} is out of range 1..65535", fix
    problem = valid_address(host)
    return None if problem is None else (problem, fix)


def _lock_key_problem(key: str) -> str | None:
    if len(key) <= 256 and _LOCK_KEY.fullmatch(key):
        return None
    return f"{_show(key)} is not a Consul KV key: words of [A-Za-z0-9_.-] between '/', 256 characters at most"


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class _Rule:
    """How the loader reads one field (its `metadata["rule"]`); the type comes from the annotation."""

    lo: float | None = None  # numbers: the lowest allowed ...
    above: bool = False  # ... excluded (the value must be > lo)
    hi: float | None = None  # numbers: the highest allowed
    check: _Check | None = None  # strings: (problem, fix) or None
    exists: Literal["file", "dir", "maybe"] = "file"  # paths: an existing file / directory; need not exist
    choices: tuple[str, ...] = ()  # strings: restricts a Literal
    keys: tuple[str, ...] = ()  # nested sections: the keys allowed (default: every field)
    multiline: bool = False  # strings: line breaks and tabs allowed


def _rule(**kwargs: Any) -> dict[str, _Rule]:
    return {"rule": _Rule(**kwargs)}


def _num(lo: float, hi: float, above: bool = False) -> dict[str, _Rule]:
    return _rule(lo=lo, hi=hi, above=above)


_NAME_FIX = "use a host name: letters, digits, '-' and '.', not starting with '-' or '.'"
_ENDPOINT = _rule(keys=("address",))


@dataclass(frozen=True)
class Node:
    """One machine the suite checks."""

    name: str = field(metadata=_rule(check=_fixing(valid_node_name, _NAME_FIX)))
    role: Role
    address: str | None = field(default=None, metadata=_rule(check=_fixing(
        valid_address, "write an IPv4 or IPv6 address or a host name")))
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
    user: str = field(default="root", metadata=_rule(check=_fixing(_user_problem, "write a user name such as root")))
    config: Path | None = None
    known_hosts: Path | None = None
    identity: Path | None = None
    connect_timeout_s: int = field(default=10, metadata=_num(1, 3600))
    command_timeout_s: int = field(default=120, metadata=_num(1, 3600))
    control_persist_s: int = field(default=600, metadata=_num(1, 86400))
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
    address: str = field(metadata=_rule(check=_url_problem))
    dns: str | None = field(default=None, metadata=_rule(check=_hostport_problem))  # consul only: Consul DNS


@dataclass(frozen=True)
class OpenStackSettings:
    cloud: str | None = None  # clouds.yaml cloud of the VMs' project (masters and VM agents)
    cloud_metal: str | None = None  # clouds.yaml cloud of the physical nodes' project (metal agents)
    clouds_yaml: Path | None = None
    timeout_s: int = field(default=30, metadata=_num(1, 3600))


@dataclass(frozen=True)
class Apis:
    tls: TlsSettings | None = None
    nomad: Endpoint | None = field(default=None, metadata=_ENDPOINT)
    consul: Endpoint | None = None
    vault: Endpoint | None = field(default=None, metadata=_ENDPOINT)
    prometheus: Endpoint | None = field(default=None, metadata=_ENDPOINT)
    openstack: OpenStackSettings | None = None
    # read timeout of every API call (connect: at most 3 s)
    timeout_s: float = field(default=10, metadata=_num(0, 600, above=True))
    # how long the snapshot of one API retries what is safe to retry (leader elections)
    retry_s: float = field(default=20, metadata=_num(0, 600, above=True))
    # one deadline for a whole API snapshot
    deadline_s: float = field(default=45, metadata=_num(0, 600, above=True))


@dataclass(frozen=True)
class DiscoveryRule:
    project: str
    role: Role = field(metadata=_rule(choices=ROLES))
    pattern: str
    kind: Kind | None = None


_HOURS = _num(0, 8760, above=True)  # up to a year


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
    build_min_free_gib: float = field(default=240, metadata=_num(0, 1_000_000, above=True))
    puppet_summary: str = "/opt/puppetlabs/puppet/public/last_run_summary.yaml"
    puppet_max_age_h: float = field(default=2, metadata=_HOURS)
    backup_path: str = "/build/consul"
    backup_sched_log: str = "/var/log/tsm/dsmsched.log"
    backup_max_age_h: float = field(default=26, metadata=_HOURS)
    backup_unit: str = "dsmcad"
    ci_jobs: tuple[str, ...] = ("ci-mesosci-slc9", "ci-mesosdaq-slc9", "repo", "publish-alien")
    metal_flavor_pattern: str = "p1.*"  # glob for bare-metal flavors when the node has no 'flavor'
    prometheus_jobs: tuple[str, ...] = ("nomad", "consul", "vault")
    remote_write_max_lag_s: float = field(default=60, metadata=_num(0, 86400, above=True))


def _maintained_problem(node: str) -> str | None:
    return None if node == CLUSTER else valid_node_name(node)  # 'cluster': the cluster-wide checks


@dataclass(frozen=True)
class Maintenance:
    node: str = field(metadata=_rule(check=_fixing(_maintained_problem, "write the node's name")))
    reason: str = field(metadata=_rule(multiline=True))
    until: dt.date

    def expired(self, today: dt.date | None = None) -> bool:
        """An entry holds through the whole of its ``until`` day."""
        return self.until < (today or dt.date.today())


@dataclass(frozen=True)
class RemediationSettings:
    """The guardrails of remediation (section ``remediation``); --remediate chooses whether anything runs."""

    enabled: bool = True  # false: the inventory's kill switch, no remediation at all
    kill_switch_file: Path | None = field(default=None, metadata=_rule(exists="maybe"))  # while it exists: none
    max_failing_masters: int = field(default=1, metadata=_num(0, 1000))  # circuit breaker: more failing, stop
    max_failing_agents: int = field(default=3, metadata=_num(0, 100_000))
    drain_deadline_s: float = field(default=21600, metadata=_num(0, 7 * 86400, above=True))
    settle_timeout_s: float = field(default=300, metadata=_num(0, 3600, above=True))
    lock_key: str = field(default="alice-acceptance/remediation-lock", metadata=_rule(
        check=_fixing(_lock_key_problem, "write a key such as alice-acceptance/remediation-lock")))
    lock_ttl_s: int = field(default=900, metadata=_num(10, 86400))
    attempts: int = field(default=3, metadata=_num(1, 100))  # retry budget per check and node
    budget_window_h: float = field(default=24, metadata=_HOURS)
    state_file: Path | None = field(default=None, metadata=_rule(exists="maybe"))


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
    check_dirs: tuple[Path, ...] = ()  # directories of the site's own checks
    remediation: RemediationSettings = field(default_factory=RemediationSettings)

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


# --------------------------------------------------------------------------- YAML with line numbers, bounded


class _Map(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class _List(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Refused(yaml.MarkedYAMLError):
    """Input the loader will not read (a bound exceeded, a list as a key...), with its own fix."""

    def __init__(self, problem: str, fix: str, mark: Any) -> None:  # a yaml.Mark, from libyaml or Python
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


_Parser: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present


def _check_bounds(text: str) -> None:
    """Refuse, from the parser's events and before anything is built, what would take long to load."""
    total = aliases = 0  # values so far, every alias counted as the values of its anchor
    sizes: dict[str, int] = {}  # anchor -> number of values of its node
    stack: list[list[Any]] = []  # open collections: [anchor, total before it, items, is a mapping]
    for event in yaml.parse(text, Loader=_Parser):
        if isinstance(event, yaml.NodeEvent) and stack:
            stack[-1][2] += 1
            if stack[-1][2] > MAX_ITEMS * (2 if stack[-1][3] else 1):
                raise _Refused(f"more than {MAX_ITEMS} items in one list or mapping",
                               "an inventory is small: is this the right file?", event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            if any(entry[0] == event.anchor for entry in stack):
                raise _Refused("an alias inside its own anchor (a recursive structure)", "remove the alias",
                               event.start_mark)
            total += sizes.get(event.anchor or "", 1)  # an undefined alias: the loader says so
            aliases += 1
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, total, 0, isinstance(event, yaml.MappingStartEvent)])
            total += 1
            if len(stack) > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", "check the brackets and the indentation",
                               event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before, _, _ = stack.pop()
            if anchor:
                sizes[anchor] = total - before
        if total > MAX_VALUES:
            if aliases:
                raise _Refused(f"more than {MAX_VALUES} values, every alias expanded (an alias bomb?)",
                               "an inventory is small: write it without aliases of aliases", event.start_mark)
            raise _Refused(f"more than {MAX_VALUES} values", "an inventory is small: is this the right file?",
                           event.start_mark)


class _Loader(_Parser):  # type: ignore[valid-type,misc]
    """SafeLoader that remembers line numbers and refuses duplicate keys; run after :func:`_check_bounds`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.merged: dict[int, int] = {}  # id(mapping node) -> number of its pairs that come from merge keys

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        super().flatten_mapping(node)
        if len(node.value) > own:  # flatten_mapping puts the merged pairs first
            self.merged[id(node)] = len(node.value) - own

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as e:  # a tagged value its constructor cannot read: !!int with 5000 digits, empty !!int
            value = _show(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise _Refused(f"cannot read {value} as {node.tag.rsplit(':', 1)[-1]} ({type(e).__name__})",
                           "quote it, or fix its tag", node.start_mark) from None


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    mapping = _Map()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    loader.flatten_mapping(node)
    merged = loader.merged.get(id(node), 0)
    own: dict[Any, int] = {}  # a key written here may override a merged one (<<), not another one written here
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _Refused(f"a {'mapping' if isinstance(key, dict) else 'list'} as a key",
                           "write keys as words ('name: value'; '?' starts a complex key)",
                           key_node.start_mark) from None
        if i >= merged:
            if key in own:
                raise _Refused(f"duplicate key {_show(key)} (first at line {own[key]})",
                               "remove one of the two", key_node.start_mark)
            own[key] = line
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _List:
    seq = _List(loader.construct_object(child, deep=True) for child in node.value)
    seq.line = node.start_mark.line + 1
    seq.item_lines = [child.start_mark.line + 1 for child in node.value]
    return seq


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError):  # 2026-02-30: a string, refused (with its key) where a date is expected
        return loader.construct_scalar(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _read_yaml(text: str, path: Path) -> Any:
    try:
        _check_bounds(text)
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except _Refused as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise InventoryError(path, "", str(e.problem), e.fix, line) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        parts = [e.context, e.problem]
        if e.context and e.context_mark and mark and e.context_mark.line != mark.line:
            parts[0] = f"{e.context} (line {e.context_mark.line + 1})"  # "found duplicate anchor; first occurrence"
        problem = " ".join(str(p) for p in parts if p)
        raise InventoryError(path, "", f"YAML error: {problem}", "check indentation, colons and quoting on that line",
                             mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise InventoryError(path, "", f"YAML error: character {char} is not allowed",
                             "remove it (control characters have no place in YAML)", line) from None
    except (yaml.YAMLError, RecursionError) as e:
        raise InventoryError(path, "", f"YAML error: {type(e).__name__}", "check the file's syntax") from None


# --------------------------------------------------------------------------- reading the sections

_D = TypeVar("_D", bound="DataclassInstance")
_NO_RULE = _Rule()


@functools.cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,60}", key) else _show(key)


def _number_text(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def _tail(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 160 else "..." + text[-157:]


class _Reader:
    """Walks the parsed YAML with the file path at hand for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def fail(self, key: str, problem: str, fix: str, line: int | None = None) -> NoReturn:
        raise InventoryError(self.path, key, problem, fix, line)

    @staticmethod
    def line_of(container: Any, key: Any = None) -> int | None:
        key_lines = getattr(container, "key_lines", {})
        if isinstance(container, dict) and key is not None and key in key_lines:
            return cast(int, key_lines[key])
        item_lines = getattr(container, "item_lines", [])
        if isinstance(container, list) and isinstance(key, int) and key < len(item_lines):
            return cast(int, item_lines[key])
        return getattr(container, "line", None) or None

    def mapping(self, value: Any, where: str, allowed: Iterable[str], required: Iterable[str] = (),
                line: int | None = None) -> dict[Any, Any]:
        if not isinstance(value, dict):
            self.fail(where or "(top level)", f"expected a mapping, got {_describe(value)}",
                      f"write {where or 'the file'} as 'key: value' lines", line)
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6) if isinstance(key, str) and \
                    len(key) <= 60 else []
                fix = f"did you mean '{close[0]}'?" if close else f"remove it (known keys: {', '.join(allowed)})"
                self.fail(_join(where, _key_text(key)), "unknown key", fix, self.line_of(value, key) or line)
        for key in required:
            if value.get(key) is None:
                self.fail(_join(where, key), "missing", f"add '{key}:' to {where or 'the file'}",
                          self.line_of(value) or line)
        return value

    def section(self, cls: type[_D], raw: Any, where: str, line: int | None = None, keys: Iterable[str] = (),
                **fixed: Any) -> _D:
        """A dataclass from a mapping: each field read by its annotation and its rule; `fixed` ones are given."""
        keys = tuple(keys)
        fields = [f for f in dataclasses.fields(cls) if f.name not in fixed and (not keys or f.name in keys)]
        required = [f.name for f in fields if f.default is f.default_factory is dataclasses.MISSING]
        m = self.mapping(raw, where, [f.name for f in fields], required, line)
        hints = _hints(cls)
        values = {f.name: self.value(m[f.name], _join(where, f.name), self.line_of(m, f.name), hints[f.name],
                                     f.metadata.get("rule", _NO_RULE), f.default)
                  for f in fields if m.get(f.name) is not None}
        factory: Callable[..., _D] = cls
        return factory(**values, **fixed)

    def optional(self, cls: type[_D], m: dict[Any, Any], key: str) -> _D:
        """The section `key` of the top level, defaults when absent."""
        return self.section(cls, m[key], key, self.line_of(m, key)) if m.get(key) is not None else cls()

    def entries(self, m: dict[Any, Any], key: str, where: str, what: str) -> list[tuple[str, int | None, Any]]:
        """(where, line, entry) of each entry of the list `key`."""
        value = m.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(_join(where, key), f"expected a list, got {_describe(value)}", f"write {key} as {what}",
                      self.line_of(m, key))
        return [(f"{_join(where, key)}[{i}]", self.line_of(value, i), entry) for i, entry in enumerate(value)]

    def value(self, value: Any, at: str, line: int | None, hint: Any, rule: _Rule, default: Any = None) -> Any:
        """`value` read as the annotation `hint` says, within `rule`; `at` names it in messages."""
        key = at.rsplit(".", 1)[-1]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        if dataclasses.is_dataclass(hint):
            return self.section(cast("type[DataclassInstance]", hint), value, at, line, rule.keys)
        if typing.get_origin(hint) is Literal:
            choices = rule.choices or typing.get_args(hint)
            if not isinstance(value, str) or value not in choices:
                self.fail(at, f"{_show(value)} is not one of {', '.join(choices)}", f"use one of {', '.join(choices)}",
                          line)
            return value
        if typing.get_origin(hint) is tuple:
            if not isinstance(value, list):
                self.fail(at, f"expected a list, got {_describe(value)}", f"write {key} as a list: [a, b]", line)
            item = typing.get_args(hint)[0]
            return tuple(self.value(v, f"{at}[{i}]", self.line_of(value, i) or line, item, rule)
                         for i, v in enumerate(value))
        if hint is bool:
            if not isinstance(value, bool):
                self.fail(at, f"expected true or false, got {_describe(value)}", f"write {key}: true or false", line)
            return value
        if hint in (int, float):
            return self.number(value, at, key, line, hint is int, rule, default)
        if hint is dt.date:
            return self.date(value, at, line)
        text = self.text(value, at, key, line, rule)
        return self.file_path(text, at, line, rule) if hint is Path else text

    def number(self, value: Any, at: str, key: str, line: int | None, whole: bool, rule: _Rule,
               default: Any) -> float:
        what = "a whole number" if whole else "a number"
        example = f", e.g. {default}" if isinstance(default, int | float) else ""
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            self.fail(at, f"expected {'an integer' if whole else 'a number'}, got {_describe(value)}",
                      f"write {key} as {what}{example}", line)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(at, f"{value} is not a finite number", f"write {key} as {what}{example}", line)
        lo, hi = rule.lo, rule.hi
        if (lo is not None and (value < lo or (rule.above and value == lo))) or (hi is not None and value > hi):
            bounds = " and ".join(b for b in (
                "" if lo is None else f"{'>' if rule.above else '>='} {_number_text(lo)}",
                "" if hi is None else f"<= {_number_text(hi)}") if b)
            self.fail(at, f"must be {bounds}, got {_show(value)}", f"write {what} {bounds}{example}", line)
        return value if whole else float(value)

    def date(self, value: Any, at: str, line: int | None) -> dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                self.fail(at, f"{value} is not a day of the calendar", "write a real date as YYYY-MM-DD", line)
        self.fail(at, f"expected a date, got {_describe(value)}", "write it as YYYY-MM-DD", line)

    def text(self, value: Any, at: str, key: str, line: int | None, rule: _Rule) -> str:
        if not isinstance(value, str):
            self.fail(at, f"expected a string, got {_describe(value)}", f"write {key} as a string (quote it)", line)
        if rule.check is not None and (problem := rule.check(value)) is not None:
            self.fail(at, *problem, line)  # first: a check may refuse a value that must not be shown (a password)
        if not value.strip():
            self.fail(at, "empty", f"write a value for {key}, or remove the key", line)
        if not all(c.isprintable() or (rule.multiline and c in "\n\t") for c in value):
            self.fail(at, f"{_show(value)} has a line break or a control character", "write it on one line", line)
        return value

    def file_path(self, text: str, at: str, line: int | None, rule: _Rule) -> Path:
        try:
            path = Path(text).expanduser()
            if not path.is_absolute():
                path = (self.base / path).resolve()
            exists, is_dir = path.exists(), path.is_dir()
        except (OSError, RuntimeError, ValueError) as e:
            self.fail(at, f"cannot use the path {_show(text)} ({type(e).__name__})", "fix the path", line)
        fix = "fix the path (relative paths are relative to the inventory file)"
        if rule.exists == "dir" and not is_dir:
            self.fail(at, f"not a directory: {_tail(path)}" if exists else f"directory not found: {_tail(path)}",
                      fix, line)
        if rule.exists == "file" and not exists:
            self.fail(at, f"file not found: {_tail(path)}", fix, line)
        if rule.exists != "dir" and is_dir:
            self.fail(at, f"{_tail(path)} is a directory", "name a file", line)
        return path


# --------------------------------------------------------------------------- the inventory

_TOP = ("cluster", "ssh", "apis", "nodes", "discovery", "expect", "maintenance", "checks", "remediation")
_NODE_KEYS = ("name", "address", "kind", "az", "flavor", "project")

_Kinded = TypeVar("_Kinded", Node, DiscoveryRule)


def _with_kind(r: _Reader, item: _Kinded, where: str, line: int | None, what: str) -> _Kinded:
    """Agents default to vm; masters have no kind."""
    if item.role == "master" and item.kind is not None:
        r.fail(f"{where}.kind", "kind applies to agents only", f"remove it from the {what}", line)
    return dataclasses.replace(item, kind="vm") if item.role == "agent" and item.kind is None else item


def _nodes(r: _Reader, top: dict[Any, Any]) -> tuple[Node, ...]:
    if top.get("nodes") is None:
        return ()
    m = r.mapping(top["nodes"], "nodes", ("masters", "agents"), line=r.line_of(top, "nodes"))
    seen: dict[str, tuple[str, int | None]] = {}
    nodes: list[Node] = []
    for group, role in (("masters", "master"), ("agents", "agent")):
        for where, line, entry in r.entries(m, group, "nodes", "a list of nodes: [{name: ..., address: ...}]"):
            node = _with_kind(r, r.section(Node, entry, where, line, _NODE_KEYS, role=role), where, line, role)
            if node.name in seen:
                other_group, other_line = seen[node.name]
                if other_group == group:
                    r.fail(f"{where}.name", f"duplicate node {node.name!r} (first at line {other_line})",
                           "remove one of the two entries", line)
                r.fail(f"{where}.name", f"{node.name!r} is both in nodes.{other_group} (line {other_line}) and in "
                       f"nodes.{group}", "a node has one role: remove it from one of the lists", line)
            seen[node.name] = (group, line)
            nodes.append(node)
    return tuple(nodes)


def _discovery(r: _Reader, top: dict[Any, Any]) -> tuple[DiscoveryRule, ...]:
    if top.get("discovery") is None:
        return ()
    m = r.mapping(top["discovery"], "discovery", ("openstack",), line=r.line_of(top, "discovery"))
    return tuple(_with_kind(r, r.section(DiscoveryRule, entry, where, line), where, line, "rule")
                 for where, line, entry in r.entries(m, "openstack", "discovery",
                                                     "a list of {project, role, kind, pattern}"))


def _check_dirs(r: _Reader, top: dict[Any, Any]) -> tuple[Path, ...]:
    if top.get("checks") is None:
        return ()
    dirs: tuple[Path, ...] = r.value(top["checks"], "checks", r.line_of(top, "checks"), tuple[Path, ...],
                                     _Rule(exists="dir"))
    for i, path in enumerate(dirs):
        if path in dirs[:i]:
            r.fail(f"checks[{i}]", f"{_tail(path)} is listed twice", "remove one", r.line_of(top["checks"], i))
    return dirs


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; raise :class:`InventoryError` on the first problem."""
    path = Path(path)
    with contextlib.suppress(RuntimeError):  # ~user of no known user: taken literally, not found below
        path = path.expanduser()
    if not path.is_file():
        raise InventoryError(path, "--inventory", "file not found" if not path.exists() else "not a file",
                             "pass the path of an inventory YAML file (see README.md)")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise InventoryError(path, "--inventory", f"cannot read: {e.strerror or type(e).__name__}",
                             "check the file's permissions") from None
    if len(data) > MAX_BYTES:
        raise InventoryError(path, "", f"larger than {MAX_BYTES >> 10} KiB",
                             "an inventory is a few KiB: is this the right file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InventoryError(path, "", f"not UTF-8 (byte {e.start})", "save the file as UTF-8",
                             data.count(b"\n", 0, e.start) + 1) from None
    return parse_inventory(_read_yaml(text, path), path)


def parse_inventory(raw: Any, path: Path) -> Inventory:
    """Validate an inventory already parsed (`raw`, e.g. a dict); `path` is its file, for messages and paths."""
    r = _Reader(path.resolve())
    if raw is None:
        r.fail("", "the file is empty", "write at least 'nodes:' or 'discovery:' (see README.md)")
    m = r.mapping(raw, "", _TOP)
    cluster = r.value(m["cluster"], "cluster", r.line_of(m, "cluster"), str, _NO_RULE) \
        if m.get("cluster") is not None else path.stem
    nodes = _nodes(r, m)
    discovery = _discovery(r, m)
    apis = r.optional(Apis, m, "apis")
    if not nodes and not discovery:
        r.fail("nodes", "no nodes", "list nodes under nodes.masters / nodes.agents, or add discovery.openstack",
               r.line_of(m, "nodes") if "nodes" in m else None)
    maintenance = tuple(r.section(Maintenance, entry, where, line)
                        for where, line, entry in r.entries(m, "maintenance", "", "a list of {node, reason, until}"))
    return Inventory(
        path=r.path, cluster=cluster, ssh=r.optional(SshSettings, m, "ssh"), apis=apis, nodes=nodes,
        discovery=discovery, expect=r.optional(Expectations, m, "expect"), maintenance=maintenance,
        check_dirs=_check_dirs(r, m), remediation=r.optional(RemediationSettings, m, "remediation"),
    )


def describe_nodes(nodes: Iterable[Node]) -> str:
    """'3 masters, 40 agents (38 vm, 2 metal)'."""
    nodes = list(nodes)
    masters = sum(1 for n in nodes if n.role == "master")
    agents = [n for n in nodes if n.role == "agent"]
    kinds: Callable[[str], int] = lambda k: sum(1 for n in agents if n.kind == k)  # noqa: E731
    return f"{masters} masters, {len(agents)} agents ({kinds('vm')} vm, {kinds('metal')} metal)"
