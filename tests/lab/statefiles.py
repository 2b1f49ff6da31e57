"""What the lab leaves in .lab/ for the suite: the same kinds of files an operator has for
production (inventory, ssh config, known_hosts, clouds.yaml, CLI environment variables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from . import certs, labapi, policies
from .configs import ca, lab_secrets, node_dir, ssh_keys, write
from .dockerctl import LabError
from .topology import (
    BUILD_MIN_FREE_GIB,
    BUILDER_IMAGE,
    CLUSTER,
    OPENSTACK_HOST,
    PROJECT_METAL,
    PROJECT_VMS,
    STATE,
    Topology,
)


def client_cert() -> tuple[Path, Path]:
    return certs.ensure_cert(STATE, ca(), "client", ["alice-acceptance"], [])


# what the checks read (cluster.vault.ha), and what remediation does (step down before a disruption): the
# README's files, as OpenBao takes them
VAULT_POLICIES = {"acceptance-read": "vault-read", "acceptance-remediation": "vault-remediation"}


def vault_tokens(ip: str, vault_up: bool) -> dict[str, str]:
    """The suite's Vault tokens, least privilege (never the root token): made with the root token at `up`,
    kept in .lab/vault-tokens.json (0600), made again when OpenBao no longer knows them (a new init). Before
    OpenBao runs (`vault_up` false: a lab booted again) the kept ones are written as they are."""
    init_path, path = STATE / "vault-init.json", STATE / "vault-tokens.json"
    empty = {"read": "", "remediation": ""}
    if not init_path.exists():
        return empty
    tokens: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if not vault_up:
        return tokens or empty
    if tokens and all(labapi.vault("GET", ip, "/v1/auth/token/lookup-self", token=t)[0] == 200
                      for t in tokens.values()):
        return tokens
    root = str(json.loads(init_path.read_text())["root_token"])
    for name, source in VAULT_POLICIES.items():
        status, _ = labapi.vault("PUT", ip, f"/v1/sys/policies/acl/{name}", {"policy": policies.text(source)},
                                 token=root)
        if status not in (200, 204):
            raise LabError(f"OpenBao refused the policy {name} (HTTP {status})")
    for key, policy in (("read", "acceptance-read"), ("remediation", "acceptance-remediation")):
        status, body = labapi.vault("POST", ip, "/v1/auth/token/create", {
            "policies": [policy], "no_default_policy": True, "ttl": "8760h", "display_name": f"acceptance-{key}"},
            token=root)
        if status != 200:
            raise LabError(f"OpenBao refused to create the {key} token (HTTP {status})")
        tokens[key] = body["auth"]["client_token"]
    write(path, json.dumps(tokens), 0o600)
    return tokens


def write_all(topo: Topology, maintenance: list[dict[str, Any]] | None = None, vault_up: bool = True) -> None:
    key = ssh_keys()
    cert, ckey = client_cert()
    cacert = STATE / "ca.pem"
    write(cacert, ca()[0].read_text())
    m1 = topo.masters[0]
    vault = vault_tokens(m1.ip, vault_up)

    lines = []
    for n in topo.nodes:
        pub = (node_dir(n) / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        lines.append(f"{n.fqdn},{n.ip} {pub[0]} {pub[1]}")
    write(STATE / "known_hosts", "\n".join(lines) + "\n")

    ssh = [
        "# Written by `python -m tests.lab up`.",
        "Host *",
        f"  IdentityFile {key}",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {STATE / 'known_hosts'}",
        "  StrictHostKeyChecking yes",
        "  User root",
        "  ConnectTimeout 10",
        "  LogLevel ERROR",
        "",
    ]
    for n in topo.nodes:
        ssh += [f"Host {n.name}", f"  HostName {n.fqdn}", ""]  # for people: the suite uses the inventory's names
    write(STATE / "ssh_config", "\n".join(ssh))

    sec = lab_secrets()
    # The checks' clouds hold a reader's credentials, remediation's a member's (Nova's server actions).
    users = {"reader": ("acceptance-reader", sec["openstack_reader_password"]),
             "member": ("alibuild-lab", sec["openstack_password"])}
    clouds = {
        "clouds": {
            name: {
                "auth": {"auth_url": f"https://{OPENSTACK_HOST}:5000/v3", "username": users[role][0],
                         "password": users[role][1], "user_domain_name": "Default",
                         "project_domain_name": "Default", "project_name": project},
                "region_name": "cern",
                "identity_api_version": 3,
                "cacert": str(cacert),
                "api_timeout": 30,
            }
            for name, project, role in (("alicelab", PROJECT_VMS, "reader"),
                                        ("alicelab-physical", PROJECT_METAL, "reader"),
                                        ("alicelab-remediation", PROJECT_VMS, "member"),
                                        ("alicelab-physical-remediation", PROJECT_METAL, "member"))
        }
    }
    write(STATE / "clouds.yaml", yaml.safe_dump(clouds, sort_keys=False), 0o600)

    env = {
        "NOMAD_ADDR": f"https://{m1.fqdn}:4646",
        "NOMAD_CACERT": str(cacert),
        "NOMAD_CLIENT_CERT": str(cert),
        "NOMAD_CLIENT_KEY": str(ckey),
        # The suite's tokens, least privilege (configs.acl_config): read-only for checks, and the
        # remediation's own for drains, leader transfers and its Consul lock.
        "NOMAD_TOKEN": sec["nomad_read"],
        "NOMAD_REMEDIATION_TOKEN": sec["nomad_remediation"],
        "CONSUL_HTTP_ADDR": f"https://{m1.fqdn}:8500",
        "CONSUL_CACERT": str(cacert),
        "CONSUL_CLIENT_CERT": str(cert),
        "CONSUL_CLIENT_KEY": str(ckey),
        "CONSUL_HTTP_TOKEN": sec["consul_read"],
        "CONSUL_REMEDIATION_TOKEN": sec["consul_remediation"],
        "VAULT_ADDR": f"https://{m1.fqdn}:8200",
        "VAULT_CACERT": str(cacert),
        "VAULT_CLIENT_CERT": str(cert),
        "VAULT_CLIENT_KEY": str(ckey),
        "VAULT_TOKEN": vault["read"],
        "VAULT_REMEDIATION_TOKEN": vault["remediation"],
        "OS_CLOUD": "alicelab",
        "OS_CLIENT_CONFIG_FILE": str(STATE / "clouds.yaml"),
    }
    write(STATE / "env", "".join(f"export {k}='{v}'\n" for k, v in env.items()), 0o600)

    inventory: dict[str, Any] = {
        "cluster": CLUSTER,
        "ssh": {
            "user": "root",
            "config": "ssh_config",
            "known_hosts": "known_hosts",
            "identity": "id_ed25519",
            "connect_timeout_s": 10,
        },
        "apis": {
            "tls": {"ca": "ca.pem", "cert": cert.name, "key": ckey.name},
            "nomad": {"address": f"https://{m1.fqdn}:4646"},
            "consul": {"address": f"https://{m1.fqdn}:8500", "dns": f"{m1.fqdn}:8600"},
            "vault": {"address": f"https://{m1.fqdn}:8200"},
            "prometheus": {"address": f"http://{m1.fqdn}:9090"},
            "openstack": {"cloud": "alicelab", "cloud_metal": "alicelab-physical",
                          "remediation_cloud": "alicelab-remediation",
                          "remediation_cloud_metal": "alicelab-physical-remediation", "clouds_yaml": "clouds.yaml"},
        },
        "nodes": {
            "masters": [{"name": n.name, "address": n.fqdn, "az": n.az} for n in topo.masters],
            "agents": [{"name": n.name, "address": n.fqdn, "kind": n.kind} for n in topo.agents],
        },
        "expect": {
            "builder_image": BUILDER_IMAGE,
            "build_min_free_gib": BUILD_MIN_FREE_GIB,
            "puppet_summary": "/opt/puppetlabs/puppet/public/last_run_summary.yaml",
        },
        "maintenance": maintenance or [],
    }
    header = "# The lab's inventory, written by `python -m tests.lab up`; production uses the same keys.\n"
    write(STATE / "inventory.yaml", header + yaml.safe_dump(inventory, sort_keys=False))
