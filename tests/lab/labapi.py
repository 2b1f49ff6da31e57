"""The lab's own HTTP calls to its nodes (readiness, Vault init and unseal, Nomad drains for faults),
with the lab CA, the suite's client certificate and a timeout on every call."""

from __future__ import annotations

import json
from typing import Any

import requests

from .configs import lab_secrets
from .topology import STATE

_S: requests.Session | None = None


def http(method: str, url: str, body: Any = None, token: str = "", timeout: float = 5.0) -> tuple[int, Any]:
    """(status, parsed body); (0, None) when the server cannot be reached."""
    global _S
    _S = _S or requests.Session()
    headers = {"X-Nomad-Token": token, "X-Consul-Token": token, "X-Vault-Token": token} if token else {}
    try:
        # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE from the environment
        r = _S.request(
            method,
            url,
            json=body,
            headers=headers,
            timeout=timeout,
            verify=str(STATE / "ca.pem"),
            cert=(str(STATE / "client.pem"), str(STATE / "client-key.pem")),
        )
    except requests.RequestException:
        return 0, None
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def nomad(method: str, ip: str, path: str, body: Any = None) -> tuple[int, Any]:
    return http(method, f"https://{ip}:4646{path}", body, lab_secrets()["nomad"])


def consul(method: str, ip: str, path: str, body: Any = None) -> tuple[int, Any]:
    return http(method, f"https://{ip}:8500{path}", body, lab_secrets()["consul"])


def vault(method: str, ip: str, path: str, body: Any = None, token: str = "", timeout: float = 5.0) -> tuple[int, Any]:
    return http(method, f"https://{ip}:8200{path}", body, token, timeout)


def vault_init() -> dict[str, Any] | None:
    path = STATE / "vault-init.json"
    return dict(json.loads(path.read_text())) if path.exists() else None


def openstack_token(project: str) -> str:
    from .topology import OPENSTACK_IP  # noqa: PLC0415

    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "alibuild-lab",
                        "domain": {"name": "Default"},
                        "password": lab_secrets()["openstack_password"],
                    }
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    r = requests.post(
        f"https://{OPENSTACK_IP}:5000/v3/auth/tokens", json=body, timeout=10, verify=str(STATE / "ca.pem")
    )
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def nova(method: str, project: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A Nova call as the lab's OpenStack user, in `project`."""
    from .topology import OPENSTACK_IP  # noqa: PLC0415

    r = requests.request(
        method,
        f"https://{OPENSTACK_IP}:8774/v2.1{path}",
        json=body,
        timeout=30,
        verify=str(STATE / "ca.pem"),
        headers={"X-Auth-Token": openstack_token(project)},
    )
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def lab_override(method: str, path: str, body: Any = None) -> int:
    """The OpenStack emulator's lab-only endpoints (fault injection)."""
    from .topology import OPENSTACK_IP  # noqa: PLC0415

    r = requests.request(
        method,
        f"https://{OPENSTACK_IP}:8774{path}",
        json=body,
        timeout=10,
        verify=str(STATE / "ca.pem"),
        headers={"X-Lab-Admin": lab_secrets()["lab_admin"]},
    )
    return r.status_code
