"""Per-node and per-service configuration files, written into the state folder and bind-mounted
read-only at /etc/alicelab in each container."""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any

from . import certs, policies
from .topology import (
    AZS,
    CLUSTER,
    IMAGE_NAME,
    MASTER_FLAVOR,
    METAL_FLAVOR,
    MONIT_HOST,
    OPENSTACK_HOST,
    OPENSTACK_IP,
    PROJECT_METAL,
    PROJECT_VMS,
    REGISTRY_IP,
    STATE,
    VM_FLAVOR,
    Node,
    Topology,
    stable_id,
)

# The CI jobs the Nomad servers place (public names from alice-facts.md; specs are private).
_LINUX = [
    {"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="},
    {"LTarget": "${meta.allow_compilation}", "RTarget": "true", "Operand": "="},
]
# Reschedule and disconnect settings are the lab's own (short delays, so that faults settle quickly):
# ci-mesosci-slc9 reschedules without limit and outlives a client's disconnection for 5 minutes;
# ci-mesosdaq-slc9 has one reschedule attempt an hour (the fault `exhaust-reschedule` uses it up).
JOBS: list[dict[str, Any]] = [
    {"ID": "ci-mesosci-slc9", "Type": "service", "Count": 2, "Constraints": _LINUX,
     "Reschedule": {"Delay": "5s", "DelayFunction": "constant", "Unlimited": True},
     "Disconnect": {"LostAfter": "5m", "Replace": True}},
    {"ID": "ci-mesosdaq-slc9", "Type": "service", "Count": 1, "Constraints": _LINUX,
     "Reschedule": {"Attempts": 1, "Interval": "1h", "Delay": "5s", "DelayFunction": "constant", "Unlimited": False}},
    {"ID": "repo", "Type": "service", "Count": 1, "Constraints": _LINUX[:1]},
    {"ID": "publish-alien", "Type": "service", "Count": 1, "Constraints": _LINUX[:1]},
]
JOB_IDS = [j["ID"] for j in JOBS]
EXHAUSTIBLE_JOB = "ci-mesosdaq-slc9"

# ACL policies: the files the README shows (deploy/policies/), parsed into each emulator's JSON rule syntax.
NOMAD_POLICIES: dict[str, Any] = {"alice-acceptance-read": policies.rules("nomad-read")}
CONSUL_POLICIES: dict[str, Any] = {
    "alice-acceptance-read": policies.rules("consul-read"),
    "alice-acceptance-remediation": policies.rules("consul-remediation"),
    "alice-acceptance-dns": policies.rules("consul-dns"),
}


def acl_config(sec: dict[str, str]) -> dict[str, Any]:
    """node.json's `acl`: the suite's read-only and remediation tokens of each service. The internal
    tokens (`tokens` in node.json: the emulators' own traffic, Prometheus, the lab's calls) are
    management tokens; so is Nomad's remediation token, because a leadership transfer needs one
    (Operator.TransferLeadershipToPeer: IsManagement)."""
    return {
        "nomad": {
            "policies": copy.deepcopy(NOMAD_POLICIES),  # callers (tests) may add their own
            "tokens": [
                {"AccessorID": stable_id("nomad-token", "read"), "SecretID": sec["nomad_read"],
                 "Name": "alice-acceptance read", "Type": "client", "Policies": ["alice-acceptance-read"]},
                {"AccessorID": stable_id("nomad-token", "remediation"), "SecretID": sec["nomad_remediation"],
                 "Name": "alice-acceptance remediation", "Type": "management", "Policies": []},
            ],
        },
        "consul": {
            "policies": copy.deepcopy(CONSUL_POLICIES),
            "tokens": [
                {"AccessorID": stable_id("consul-token", "read"), "SecretID": sec["consul_read"],
                 "Description": "alice-acceptance read", "Policies": ["alice-acceptance-read"]},
                {"AccessorID": stable_id("consul-token", "remediation"), "SecretID": sec["consul_remediation"],
                 "Description": "alice-acceptance remediation", "Policies": ["alice-acceptance-remediation"]},
                {"AccessorID": stable_id("consul-token", "dns"), "SecretID": sec["consul_dns"],
                 "Description": "agent default token (DNS)", "Policies": ["alice-acceptance-dns"]},
            ],
            "dns_token": sec["consul_dns"],  # acl.tokens.default: what Consul DNS answers with
        },
    }


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


SECRET_KEYS = {
    # Nomad issues UUID secrets (and tries any other as a workload identity JWT)
    "nomad": lambda: str(uuid.uuid4()),  # internal, management
    "consul": lambda: secrets.token_hex(16),  # internal, management
    "nomad_read": lambda: str(uuid.uuid4()),
    "nomad_remediation": lambda: str(uuid.uuid4()),
    "consul_read": lambda: secrets.token_hex(16),
    "consul_remediation": lambda: secrets.token_hex(16),
    "consul_dns": lambda: secrets.token_hex(16),
    "openstack_password": lambda: secrets.token_urlsafe(18),
    "openstack_reader_password": lambda: secrets.token_urlsafe(18),
    "lab_admin": lambda: secrets.token_urlsafe(18),
}


def lab_secrets() -> dict[str, str]:
    """ACL tokens and passwords, made once and kept in .lab/secrets.json (mode 0600); keys that an older
    file lacks are added."""
    path = STATE / "secrets.json"
    data: dict[str, str] = dict(json.loads(path.read_text())) if path.exists() else {}
    missing = [k for k in SECRET_KEYS if k not in data]
    if missing:
        data.update({k: SECRET_KEYS[k]() for k in missing})
        write(path, json.dumps(data, indent=1), 0o600)
    return data


def ca() -> tuple[Path, Path]:
    return certs.ensure_ca(STATE / "pki")


def ssh_keys() -> Path:
    """The lab's ssh key pair for root on every node."""
    key = STATE / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alicelab", "-f", str(key)], check=True, timeout=30
        )
    return key


def host_key(node_dir: Path) -> Path:
    key = node_dir / "ssh" / "ssh_host_ed25519_key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True, timeout=30
        )
    return key


def node_dir(node: Node) -> Path:
    return STATE / "nodes" / node.name


def write_node(node: Node, topo: Topology) -> Path:
    """Everything /etc/alicelab holds for one node."""
    d = node_dir(node)
    tls = d / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    cert, key = certs.ensure_cert(
        tls, ca(), "node", [node.name, node.fqdn, f"{node.name}.cern.ch", "localhost"], [node.ip, "127.0.0.1"]
    )
    key.chmod(0o644)  # read inside the node by services running as their own users (prometheus)
    write(tls / "ca.pem", ca()[0].read_text())
    sec = lab_secrets()
    cfg: dict[str, Any] = {
        "name": node.name,
        "role": node.role,
        "kind": node.kind,
        "ip": node.ip,
        "region": "global",
        "datacenter": "cern",
        "masters": [
            {
                "name": m.name,
                "ip": m.ip,
                "nomad_id": stable_id("nomad", m.name),
                "consul_id": stable_id("consul", m.name),
            }
            for m in topo.masters
        ],
        "nomad_node_id": stable_id("nomad-node", node.name),
        "tokens": {"nomad": sec["nomad"], "consul": sec["consul"]},  # internal, management
        "acl": acl_config(sec),
        "tls": {
            "ca": "/etc/alicelab/tls/ca.pem",
            "cert": "/etc/alicelab/tls/node.pem",
            "key": "/etc/alicelab/tls/node-key.pem",
        },
        "build_dir": "/build",
        "jobs": JOBS if node.role == "master" else [],
    }
    write(d / "node.json", json.dumps(cfg, indent=1), 0o644)
    host_key(d)
    if node.role == "master":
        write(d / "vault.hcl", vault_hcl(node, topo))
        write(d / "prometheus.yml", prometheus_yml(node, topo))
        write(d / "nomad-token", sec["nomad"], 0o644)
        write(d / "consul-token", sec["consul"], 0o644)
    return d


def vault_hcl(node: Node, topo: Topology) -> str:
    joins = "\n".join(
        f"""  retry_join {{
    leader_api_addr         = "https://{m.ip}:8200"
    leader_ca_cert_file     = "/etc/alicelab/tls/ca.pem"
    leader_client_cert_file = "/etc/alicelab/tls/node.pem"
    leader_client_key_file  = "/etc/alicelab/tls/node-key.pem"
  }}"""
        for m in topo.masters
        if m.name != node.name
    )
    return f"""# OpenBao as the cluster's Vault: three-node raft HA, TLS with client certificates.
ui            = false
disable_mlock = true
api_addr      = "https://{node.fqdn}:8200"
cluster_addr  = "https://{node.ip}:8201"

storage "raft" {{
  path    = "/var/lib/vault"
  node_id = "{node.name}"
{joins}
}}

listener "tcp" {{
  address                            = "{node.ip}:8200"
  cluster_address                    = "{node.ip}:8201"
  tls_cert_file                      = "/etc/alicelab/tls/node.pem"
  tls_key_file                       = "/etc/alicelab/tls/node-key.pem"
  tls_client_ca_file                 = "/etc/alicelab/tls/ca.pem"
  tls_require_and_verify_client_cert = true
  telemetry {{
    unauthenticated_metrics_access = true
  }}
}}

telemetry {{
  prometheus_retention_time = "60s"
  disable_hostname          = true
}}
"""


def _static(nodes: list[Node], port: int) -> list[dict[str, Any]]:
    return [{"targets": [f"{n.fqdn}:{port}"], "labels": {"node": n.name, "role": n.role}} for n in nodes]


def prometheus_yml(node: Node, topo: Topology) -> str:
    tls = {
        "ca_file": "/etc/alicelab/tls/ca.pem",
        "cert_file": "/etc/alicelab/tls/node.pem",
        "key_file": "/etc/alicelab/tls/node-key.pem",
    }

    def api_job(name: str, nodes: list[Node], port: int, path: str, token: str | None) -> dict[str, Any]:
        job: dict[str, Any] = {
            "job_name": name,
            "scheme": "https",
            "metrics_path": path,
            "params": {"format": ["prometheus"]},
            "tls_config": tls,
            "static_configs": _static(nodes, port),
        }
        if token:
            job["authorization"] = {"type": "Bearer", "credentials_file": f"/etc/alicelab/{token}"}
        return job

    cfg = {
        "global": {
            "scrape_interval": "10s",
            "scrape_timeout": "5s",
            "evaluation_interval": "10s",
            "external_labels": {"cluster": CLUSTER, "replica": node.name},
        },
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
            {"job_name": "node", "static_configs": _static(topo.nodes, 9100)},
            api_job("nomad", topo.masters, 4646, "/v1/metrics", "nomad-token"),
            api_job("nomad-client", topo.agents, 4646, "/v1/metrics", "nomad-token"),
            api_job("consul", topo.masters, 8500, "/v1/agent/metrics", "consul-token"),
            api_job("vault", topo.masters, 8200, "/v1/sys/metrics", None),
        ],
        "remote_write": [
            {
                "url": f"http://{MONIT_HOST}:9090/api/v1/write",
                "remote_timeout": "5s",
                "queue_config": {
                    "max_shards": 2,
                    "batch_send_deadline": "5s",
                    "min_backoff": "1s",
                    "max_backoff": "5s",
                },
            }
        ],
    }
    return json.dumps(cfg, indent=1)  # YAML is a superset of JSON


def registry_yml() -> str:
    return """version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :443
  tls:
    certificate: /etc/alicelab/tls/node.pem
    key: /etc/alicelab/tls/node-key.pem
"""


def write_services(topo: Topology) -> dict[str, Path]:
    """Config folders of the registry, the OpenStack emulator and the MONIT stand-in."""
    sec = lab_secrets()
    dirs = {name: STATE / "services" / name for name in ("registry", "openstack", "monit")}
    reg_tls = dirs["registry"] / "tls"
    certs.ensure_cert(reg_tls, ca(), "node", ["registry.cern.ch", "localhost"], [REGISTRY_IP, "127.0.0.1"])
    write(dirs["registry"] / "registry.yml", registry_yml())
    os_tls = dirs["openstack"] / "tls"
    certs.ensure_cert(os_tls, ca(), "node", [OPENSTACK_HOST, "openstack.cern.ch"], [OPENSTACK_IP])
    projects = [{"id": stable_id("project", p).replace("-", ""), "name": p} for p in (PROJECT_VMS, PROJECT_METAL)]
    flavors = [
        {"id": "1a6b4b2e-0001-4c1e-9b1a-000000000001", "name": MASTER_FLAVOR, "vcpus": 4, "ram": 7500, "disk": 40},
        {"id": "1a6b4b2e-0002-4c1e-9b1a-000000000002", "name": VM_FLAVOR, "vcpus": 16, "ram": 30000, "disk": 160},
        {"id": "1a6b4b2e-0003-4c1e-9b1a-000000000003", "name": METAL_FLAVOR, "vcpus": 64, "ram": 515000, "disk": 3600},
    ]
    openstack = {
        "bind": OPENSTACK_IP,
        "public_host": OPENSTACK_HOST,
        "network": "alicelab",
        "tls": {"cert": "/etc/alicelab/tls/node.pem", "key": "/etc/alicelab/tls/node-key.pem"},
        "users": [
            # member of both projects: remediation's clouds (server actions) and the lab's own calls
            {
                "name": "alibuild-lab",
                "password": sec["openstack_password"],
                "domain": "Default",
                "projects": [PROJECT_VMS, PROJECT_METAL],
            },
            # the checks' clouds: reader only (Nova refuses it every server action)
            {
                "name": "acceptance-reader",
                "password": sec["openstack_reader_password"],
                "domain": "Default",
                "roles": [{"project": p, "role": "reader"} for p in (PROJECT_VMS, PROJECT_METAL)],
            },
        ],
        "projects": projects,
        "flavors": flavors,
        "availability_zones": AZS,
        "lab_admin_secret": sec["lab_admin"],
        "label": "alicelab.server",
    }
    write(dirs["openstack"] / "openstack.json", json.dumps(openstack, indent=1), 0o600)
    monit = {"global": {"scrape_interval": "1m"}, "scrape_configs": []}
    write(dirs["monit"] / "monit.yml", json.dumps(monit))
    return dirs


def server_label(node: Node) -> str:
    """The OpenStack server a node container stands for (read by the OpenStack emulator)."""
    return json.dumps(
        {
            "id": node.server_id,
            "name": node.name,
            "project": node.project,
            "flavor": node.flavor,
            "az": node.az,
            "image": IMAGE_NAME,
            "created": "2026-11-01T09:00:00Z",
            "metadata": {
                "landb-mainuser": "alice-agile-admin",
                "landb-responsible": "alice-agile-admin",
                "cern-services": "false",
            },
            "volumes": [{"id": stable_id("volume", node.name), "device": "/dev/vdb", "size_gb": 1000}]
            if node.has_vdb
            else [],
        }
    )
