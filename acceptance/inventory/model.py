"""The inventory as the suite uses it: frozen dataclasses, one per section. Each field's annotation and rule
(:mod:`acceptance.inventory.rules`) say how it is read; :mod:`acceptance.inventory.reader` reads them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from acceptance.inventory.roles import ROLES, Kind, Role
from acceptance.inventory.rules import (
    channel_problem,
    env_name_problem,
    fixing,
    hostport_problem,
    kernel_arg_problem,
    lock_key_problem,
    maintained_problem,
    num,
    report_url_problem,
    rule,
    sender_problem,
    ssh_path_problem,
    url_problem,
    user_problem,
    valid_address,
    valid_backup_path,
    valid_image,
    valid_node_name,
    valid_node_path,
    valid_unit_name,
)

_NAME_FIX = "use a host name: letters, digits, '-' and '.', not starting with '-' or '.'"
_ENDPOINT = rule(keys=("address",))
_HOURS = num(0, 8760, above=True)  # up to a year
_SSH_PATH = rule(check=fixing(ssh_path_problem, "rename the file, or name it by a path without '\"'"))
# values that reach a node's commands (acceptance.inventory.rules); lists of them define checks: never empty
_UNITS = rule(nonempty=True, check=fixing(valid_unit_name, "write a systemd unit name such as nomad or "
                                                           "nomad.service (systemd.unit(5))"))
_UNIT = rule(check=fixing(valid_unit_name, "write a systemd unit name such as dsmcad or dsmcad.service"))
_NODE_PATH = rule(check=fixing(valid_node_path, "write the absolute path on the node, e.g. /build"))


@dataclass(frozen=True)
class Node:
    """One machine the suite checks."""

    name: str = field(metadata=rule(check=fixing(valid_node_name, _NAME_FIX)))
    role: Role
    address: str | None = field(default=None, metadata=rule(check=fixing(
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
    user: str = field(default="root", metadata=rule(check=fixing(user_problem, "write a user name such as root")))
    config: Path | None = None
    known_hosts: Path | None = field(default=None, metadata=_SSH_PATH)
    identity: Path | None = field(default=None, metadata=_SSH_PATH)
    connect_timeout_s: int = field(default=10, metadata=num(1, 3600))
    command_timeout_s: int = field(default=120, metadata=num(1, 3600))
    control_persist_s: int = field(default=600, metadata=num(1, 86400))
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
    address: str = field(metadata=rule(check=url_problem))
    dns: str | None = field(default=None, metadata=rule(check=hostport_problem))  # consul only: Consul DNS


@dataclass(frozen=True)
class OpenStackSettings:
    cloud: str | None = None  # clouds.yaml cloud of the VMs' project (masters and VM agents)
    cloud_metal: str | None = None  # clouds.yaml cloud of the physical nodes' project (metal agents)
    # the clouds remediation acts with (the member role); else OS_REMEDIATION_CLOUD, else the checks' own
    remediation_cloud: str | None = None
    remediation_cloud_metal: str | None = None
    clouds_yaml: Path | None = None
    timeout_s: int = field(default=30, metadata=num(1, 3600))


@dataclass(frozen=True)
class Apis:
    tls: TlsSettings | None = None
    nomad: Endpoint | None = field(default=None, metadata=_ENDPOINT)
    consul: Endpoint | None = None
    vault: Endpoint | None = field(default=None, metadata=_ENDPOINT)
    prometheus: Endpoint | None = field(default=None, metadata=_ENDPOINT)
    openstack: OpenStackSettings | None = None
    # read timeout of every API call (connect: at most 3 s)
    timeout_s: float = field(default=10, metadata=num(0, 600, above=True))
    # how long the snapshot of one API retries what is safe to retry (leader elections)
    retry_s: float = field(default=20, metadata=num(0, 600, above=True))
    # one deadline for a whole API snapshot
    deadline_s: float = field(default=45, metadata=num(0, 600, above=True))


@dataclass(frozen=True)
class DiscoveryRule:
    project: str
    role: Role = field(metadata=rule(choices=ROLES))
    pattern: str
    kind: Kind | None = None


@dataclass(frozen=True)
class Expectations:
    """What a healthy node looks like; ALICE defaults (reference/alice-facts.md), all overridable."""

    builder_image: str = field(default="registry.cern.ch/alisw/slc9-builder", metadata=rule(check=fixing(
        valid_image, "write an image such as registry.cern.ch/alisw/slc9-builder or ...:tag")))
    kernel_args: tuple[str, ...] = field(default=("systemd.unified_cgroup_hierarchy=0",), metadata=rule(
        nonempty=True, check=fixing(kernel_arg_problem, "write one argument per item")))
    master_units: tuple[str, ...] = field(default=("docker", "nomad", "consul", "vault"), metadata=_UNITS)
    agent_units: tuple[str, ...] = field(default=("docker", "nomad"), metadata=_UNITS)
    master_flavor: str = "m2.large"
    vm_flavor: str = "m2.2xlarge"
    # may be empty: the masters are then checked for distinct zones only
    availability_zones: tuple[str, ...] = ("cern-geneva-a", "cern-geneva-b", "cern-geneva-c")
    build_mount: str = field(default="/build", metadata=_NODE_PATH)
    build_min_free_gib: float = field(default=240, metadata=num(0, 1_000_000, above=True))
    puppet_summary: str = field(default="/opt/puppetlabs/puppet/public/last_run_summary.yaml", metadata=_NODE_PATH)
    puppet_max_age_h: float = field(default=2, metadata=_HOURS)
    backup_path: str = field(default="/build/consul", metadata=rule(check=fixing(
        valid_backup_path, "write the absolute path dsmc backs up, e.g. /build/consul")))
    backup_sched_log: str = field(default="/var/log/tsm/dsmsched.log", metadata=_NODE_PATH)
    backup_max_age_h: float = field(default=26, metadata=_HOURS)
    backup_unit: str = field(default="dsmcad", metadata=_UNIT)
    ci_jobs: tuple[str, ...] = field(default=("ci-mesosci-slc9", "ci-mesosdaq-slc9", "repo", "publish-alien"),
                                     metadata=rule(nonempty=True))
    metal_flavor_pattern: str = "p1.*"  # glob for bare-metal flavors when the node has no 'flavor'
    prometheus_jobs: tuple[str, ...] = field(default=("nomad", "consul", "vault"), metadata=rule(nonempty=True))
    remote_write_max_lag_s: float = field(default=60, metadata=num(0, 86400, above=True))


@dataclass(frozen=True)
class Maintenance:
    node: str = field(metadata=rule(check=fixing(maintained_problem, "write the node's name")))
    reason: str = field(metadata=rule(multiline=True))
    until: dt.date

    def expired(self, today: dt.date | None = None) -> bool:
        """An entry holds through the whole of its ``until`` day."""
        return self.until < (today or dt.date.today())


@dataclass(frozen=True)
class RemediationSettings:
    """The guardrails of remediation (section ``remediation``); --remediate chooses whether anything runs."""

    enabled: bool = True  # false: the inventory's kill switch, no remediation at all
    # while it exists, nothing is remediated (default: STOP-REMEDIATION beside the inventory)
    kill_switch_file: Path | None = field(default=None, metadata=rule(exists="maybe"))
    # blast radius, cluster-wide from the APIs' view and this run's failures: past either, act on nothing
    max_unhealthy_masters: int = field(default=1, metadata=num(0, 1000))
    max_unhealthy_agents: int = field(default=4, metadata=num(0, 100_000))
    # disruptive actions (reboots, drains, a master's service) per run and per window, cluster-wide
    max_disruptive_masters: int = field(default=1, metadata=num(0, 1000))
    max_disruptive_agents: int = field(default=2, metadata=num(0, 100_000))
    disruptive_window_h: float = field(default=24, metadata=_HOURS)
    # a drain's deadline: the longest build (Nomad kills what still runs then); system jobs are left alone
    drain_deadline_s: float = field(default=21600, metadata=num(0, 7 * 86400, above=True))
    settle_timeout_s: float = field(default=300, metadata=num(0, 3600, above=True))
    lock_key: str = field(default="alice-acceptance/remediation-lock", metadata=rule(
        check=fixing(lock_key_problem, "write a key such as alice-acceptance/remediation-lock")))
    lock_ttl_s: int = field(default=900, metadata=num(10, 86400))
    # the budget, flap history, disruptive actions and the nodes this suite drained, shared by every runner
    state_key: str = field(default="alice-acceptance/remediation-state", metadata=rule(
        check=fixing(lock_key_problem, "write a key such as alice-acceptance/remediation-state")))
    # the cluster-wide kill switch (alice-acceptance stop / resume)
    stop_key: str = field(default="alice-acceptance/stop", metadata=rule(
        check=fixing(lock_key_problem, "write a key such as alice-acceptance/stop")))
    attempts: int = field(default=3, metadata=num(1, 100))  # retry budget per check and node and rung
    budget_window_h: float = field(default=24, metadata=_HOURS)


MATTERMOST_URL_ENV = "ALICE_ACCEPTANCE_MATTERMOST_URL"


@dataclass(frozen=True)
class MattermostSettings:
    """A Mattermost incoming webhook (``notify.mattermost``). Its URL embeds the webhook's key, a secret: it comes
    from the environment variable ``url_env``, never from this file."""

    url_env: str = field(default=MATTERMOST_URL_ENV, metadata=rule(check=env_name_problem))
    # the webhook's own channel when absent (Mattermost may lock a webhook to its channel)
    channel: str | None = field(default=None, metadata=rule(check=fixing(
        channel_problem, "write the channel's name as in its URL (e.g. alice-build-infra), or @user")))
    username: str = field(default="alice-acceptance", metadata=rule(check=fixing(
        sender_problem, "write a name such as alice-acceptance")))
    icon_url: str | None = field(default=None, metadata=rule(check=url_problem))
    report_url: str | None = field(default=None, metadata=rule(check=report_url_problem))  # each item links there
    timeout_s: float = field(default=5, metadata=num(0, 30, above=True))  # the whole sending, its one retry included
    ca: Path | None = None  # the CA bundle the server's certificate is verified with (default: certifi's)


@dataclass(frozen=True)
class NotifySettings:
    """Who hears of what a nightly run changed (section ``notify``); nothing is sent when it is absent."""

    mattermost: MattermostSettings | None = None


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
    notify: NotifySettings = field(default_factory=NotifySettings)

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)


def describe_nodes(nodes: Iterable[Node]) -> str:
    """'3 masters, 40 agents (38 vm, 2 metal)'."""
    nodes = list(nodes)
    masters = sum(1 for n in nodes if n.role == "master")
    agents = [n for n in nodes if n.role == "agent"]
    kinds: Callable[[str], int] = lambda k: sum(1 for n in agents if n.kind == k)  # noqa: E731
    return f"{masters} masters, {len(agents)} agents ({kinds('vm')} vm, {kinds('metal')} metal)"
