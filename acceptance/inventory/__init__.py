"""The inventory: one YAML file describing the cluster, validated on load.

Every problem is ONE line, ``FILE:LINE: KEY: PROBLEM; fix: FIX`` (:class:`InventoryError`), which the plugin turns
into a pytest usage error (exit status 4). A value is quoted at most ~60 characters long, and never a credential.

Keys. Relative paths are relative to the inventory file; numbers must be finite and within the bounds given
(``true``/``false`` are not numbers); strings are non-empty and on one line; unknown keys get a "did you mean".

``cluster``      the cluster's name (default: the file's name without its extension)
``ssh``          ``user`` (root; ``[a-z_][a-z0-9_.-]{0,31}``), ``config``, ``known_hosts``, ``identity`` (existing
                 regular files, as every file named here; no '"' in the last two), ``connect_timeout_s`` (10;
                 1..3600), ``command_timeout_s`` (120; 1..3600), ``control_persist_s`` (600; 1..86400), ``target``
                 (``address`` or ``name``: what ssh connects to)
``apis``         ``tls: {ca, cert, key}`` (existing files); ``nomad``, ``vault``, ``prometheus``: ``{address}``;
                 ``consul: {address, dns}``. An address is an http(s) URL with a host, an optional port (1..65535)
                 and no credentials (they come from the environment); ``dns`` is HOST:PORT.
                 ``openstack: {cloud, cloud_metal, remediation_cloud, remediation_cloud_metal, clouds_yaml,
                 timeout_s (30; 1..3600)}``.
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
                 ``remote_write_max_lag_s`` (0, 86400]; lists of strings; strings. What reaches a node's commands
                 is checked (:mod:`~acceptance.inventory.rules`): ``master_units``, ``agent_units``,
                 ``backup_unit`` are systemd unit names (:func:`valid_unit_name`; ``nomad`` is ``nomad.service``);
                 ``build_mount``, ``puppet_summary``, ``backup_sched_log``, ``backup_path`` absolute paths
                 (``backup_path`` without dsmc's ``*?[]{}``); ``builder_image`` an image reference;
                 ``kernel_args`` words without spaces. Lists that define checks (``master_units``, ``agent_units``,
                 ``kernel_args``, ``ci_jobs``, ``prometheus_jobs``) are not empty; ``availability_zones`` may be.
``maintenance``  a list of ``{node, reason, until: YYYY-MM-DD}``: the node's checks are waived through that day
                 (``node: cluster`` waives the cluster-wide checks; a reason may span lines)
``checks``       a list of directories of the site's own checks (existing, each once) -> ``Inventory.check_dirs``
``remediation``  -> ``Inventory.remediation`` (:class:`RemediationSettings`): ``enabled`` (true; false is the
                 inventory's kill switch: no remediation at all), ``kill_switch_file`` (a path that stops remediation
                 while it exists; default ``STOP-REMEDIATION`` beside the inventory), ``max_unhealthy_masters`` (1)
                 and ``max_unhealthy_agents`` (4): the blast radius, counted cluster-wide; ``max_disruptive_masters``
                 (1) and ``max_disruptive_agents`` (2) per run and per ``disruptive_window_h`` (24),
                 ``drain_deadline_s`` (21600; (0, 7 days]), ``settle_timeout_s`` (300; (0, 3600]), ``lock_key``,
                 ``state_key``, ``stop_key`` (Consul KV keys under ``alice-acceptance/``), ``lock_ttl_s`` (900;
                 10..86400), ``attempts`` (3; 1..100: the retry budget per check, node and rung),
                 ``budget_window_h`` (24; (0, 8760])
``notify``       -> ``Inventory.notify`` (:class:`NotifySettings`): ``mattermost`` (absent: no message), an incoming
                 webhook told what a nightly run changed: ``url_env`` (the environment variable holding the webhook's
                 URL, a secret: ``ALICE_ACCEPTANCE_MATTERMOST_URL``; upper-case letters, digits and '_'), ``channel``
                 (a channel's name as in its URL, or ``@user``; default: the webhook's), ``username``
                 (``alice-acceptance``), ``icon_url``, ``report_url`` (an http(s) URL as an API's, ``{run_id}``
                 standing for the run's id), ``timeout_s`` (5; (0, 30]: the whole sending, its retry included),
                 ``ca`` (an existing CA bundle file; default: certifi's); ``mattermost: {}`` takes every default

Bounds of the input, so that any file is refused in well under a second: 1 MiB, 32 levels of nesting, 10,000
items in one list or mapping, 50,000 values once YAML aliases are expanded (an "alias bomb" is refused).

The modules, in the order data flows through them: :mod:`~acceptance.inventory.loading` (the file, as bounded
YAML marked with lines) -> :mod:`~acceptance.inventory.parse` (the top level) and
:mod:`~acceptance.inventory.reader` (each section, table-driven) -> :mod:`~acceptance.inventory.model` (the
dataclasses). Under them: :mod:`~acceptance.inventory.rules` (what a value may be),
:mod:`~acceptance.inventory.messages` (:class:`InventoryError`, values as quoted) and
:mod:`~acceptance.inventory.roles`.
"""

from __future__ import annotations

from acceptance.inventory.loading import MAX_BYTES, MAX_DEPTH, MAX_ITEMS, MAX_VALUES
from acceptance.inventory.messages import InventoryError
from acceptance.inventory.model import (
    Apis,
    DiscoveryRule,
    Endpoint,
    Expectations,
    Inventory,
    Maintenance,
    MattermostSettings,
    Node,
    NotifySettings,
    OpenStackSettings,
    RemediationSettings,
    SshSettings,
    TlsSettings,
    describe_nodes,
)
from acceptance.inventory.parse import load_inventory, parse_inventory
from acceptance.inventory.roles import CLUSTER, KINDS, ROLES, Kind, Role
from acceptance.inventory.rules import (
    UNIT_TYPES,
    unit_base,
    valid_address,
    valid_backup_path,
    valid_image,
    valid_node_name,
    valid_node_path,
    valid_unit_name,
)

__all__ = [
    "CLUSTER",
    "KINDS",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_VALUES",
    "ROLES",
    "UNIT_TYPES",
    "Apis",
    "DiscoveryRule",
    "Endpoint",
    "Expectations",
    "Inventory",
    "InventoryError",
    "Kind",
    "Maintenance",
    "MattermostSettings",
    "Node",
    "NotifySettings",
    "OpenStackSettings",
    "RemediationSettings",
    "Role",
    "SshSettings",
    "TlsSettings",
    "describe_nodes",
    "load_inventory",
    "parse_inventory",
    "unit_base",
    "valid_address",
    "valid_backup_path",
    "valid_image",
    "valid_node_name",
    "valid_node_path",
    "valid_unit_name",
]
