"""Looking at the lab from outside, as the suite and an operator do: ssh with the lab's ssh_config
and known_hosts, ping, and the real HTTP APIs with the CLIs' variables from .lab/env."""

from __future__ import annotations

import subprocess
from typing import Any

import requests
import yaml

from . import labapi
from .cluster import env as lab_env
from .topology import PROJECT_METAL, PROJECT_VMS, STATE, Topology, stable_id, topology

# What a look at the lab shrugs off while it polls (tests.polling.wait_until's `ignore`): a node or service
# restarting, a connection refused or timed out, half an answer.
LAB_ERRORS = (OSError, ValueError, KeyError, requests.RequestException, subprocess.SubprocessError)


def lab() -> Topology:
    inv = yaml.safe_load((STATE / "inventory.yaml").read_text())
    vms = sum(1 for a in inv["nodes"]["agents"] if a["kind"] == "vm")
    return topology(vms)


def ssh(node: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(STATE / "ssh_config"), "-o", "BatchMode=yes", node, command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ssh_ok(node: str) -> bool:
    return ssh(node, "true", timeout=20).returncode == 0


def pings(ip: str) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", "2", ip], capture_output=True, timeout=10).returncode == 0


def _env() -> dict[str, str]:
    return lab_env()


# The variables of each API's CLI in .lab/env: address, CA, client certificate and key, token; and its header.
_API_ENV = {
    "nomad": ("NOMAD_ADDR", "NOMAD_CACERT", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "NOMAD_TOKEN", "X-Nomad-Token"),
    "consul": ("CONSUL_HTTP_ADDR", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_HTTP_TOKEN",
               "X-Consul-Token"),
}


def api_get(service: str, path: str, addr: str | None = None, token_var: str | None = None) -> Any:
    """GET on Nomad or Consul as the suite does it, from .lab/env (the suite's read-only token unless
    `token_var` names another variable, e.g. NOMAD_REMEDIATION_TOKEN)."""
    addr_var, ca, cert, key, token, header = _API_ENV[service]
    e = _env()
    r = requests.get(
        f"{addr or e[addr_var]}{path}",
        headers={header: e[token_var or token]},
        verify=e[ca],
        cert=(e[cert], e[key]),
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


def nomad_get(path: str, addr: str | None = None) -> Any:
    return api_get("nomad", path, addr)


def consul_get(path: str, addr: str | None = None) -> Any:
    return api_get("consul", path, addr)


def vault_health(ip: str) -> int:
    """/v1/sys/health's status code on one master: 200 active, 429 standby, 503 sealed, 0 unreachable."""
    e = _env()
    try:
        r = requests.get(
            f"https://{ip}:8200/v1/sys/health",
            verify=e["VAULT_CACERT"],
            cert=(e["VAULT_CLIENT_CERT"], e["VAULT_CLIENT_KEY"]),
            timeout=5,
        )
    except requests.RequestException:
        return 0
    return r.status_code


def prometheus(query: str, ip: str = "172.30.0.11") -> list[dict[str, Any]]:
    r = requests.get(f"http://{ip}:9090/api/v1/query", params={"query": query}, timeout=5)
    r.raise_for_status()
    return list(r.json()["data"]["result"])


def target_health(instance: str, ip: str = "172.30.0.11") -> set[str]:
    r = requests.get(f"http://{ip}:9090/api/v1/targets", params={"state": "active"}, timeout=5)
    r.raise_for_status()
    return {t["health"] for t in r.json()["data"]["activeTargets"] if t["labels"]["instance"] == instance}


def nomad_node(name: str) -> dict[str, Any]:
    return dict(nomad_get(f"/v1/node/{stable_id('nomad-node', name)}"))


def nova_servers(project: str = PROJECT_VMS) -> dict[str, dict[str, Any]]:
    status, body = labapi.nova("GET", project, "/servers/detail")
    assert status == 200, body
    return {s["name"]: s for s in body["servers"]}


def nova_server(name: str) -> dict[str, Any]:
    servers = nova_servers(PROJECT_VMS)
    servers.update(nova_servers(PROJECT_METAL))
    return servers[name]


def puppet_summary(node: str) -> dict[str, Any]:
    out = ssh(node, "cat /opt/puppetlabs/puppet/public/last_run_summary.yaml").stdout
    return dict(yaml.safe_load(out))
