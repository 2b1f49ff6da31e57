"""The cluster's write side, with the remediation tokens (never the checks' read tokens): NOMAD_REMEDIATION_TOKEN
(node:write, node:read, namespace:read-job, management for raft transfer-leadership), CONSUL_REMEDIATION_TOKEN
(session:write, key:write on the lock prefix, operator:write), VAULT_REMEDIATION_TOKEN (update and sudo on
sys/step-down), OS_CLOUD (server actions). Addresses, CA and certificates are the checks'. What is done with them
lives beside the policy it serves: drains in remediation/drains.py, leadership in remediation/leadership.py."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import requests

from acceptance.clients.call import over_urls
from acceptance.clients.config import ApiConfig, api_config
from acceptance.clients.errors import ApiError
from acceptance.clients.libraries import LibClient, client_for
from acceptance.clients.transport import deadline
from acceptance.inventory import Inventory, Node
from acceptance.redaction import remember
from remediation.model import ActionFailed

T = TypeVar("T")

WRITE_TOKENS = {"nomad": "NOMAD_REMEDIATION_TOKEN", "consul": "CONSUL_REMEDIATION_TOKEN",
                "vault": "VAULT_REMEDIATION_TOKEN"}


def write_config(name: str, inventory: Inventory, masters: Sequence[Node], env: Mapping[str, str] | None = None
                 ) -> ApiConfig:
    env = os.environ if env is None else env
    token = env.get(WRITE_TOKENS[name]) or None
    remember(token)
    return dataclasses.replace(api_config(name, inventory, env=env, masters=list(masters)), token=token,
                               token_var=WRITE_TOKENS[name])


def consul_of(inventory_path: str) -> tuple[Inventory, Api]:
    """The commands' inventory and Consul with the remediation token; raises InventoryError on bad input."""
    from acceptance.inventory import load_inventory

    inventory = load_inventory(inventory_path)
    return inventory, Api(write_config("consul", inventory, [n for n in inventory.nodes if n.role == "master"]))


class Api:
    """One API with its write token, through the snapshots' fail-over; a refusal, a redirect or an answer that is
    not the API's is one line, and never acted on."""

    def __init__(self, cfg: ApiConfig) -> None:
        self.cfg = cfg
        self.clients: dict[str, LibClient] = {}

    def lib(self, what: str, use: Callable[[Any], T]) -> T:
        """``use(the library's client)``, ``what`` naming the call in messages."""
        if self.cfg.problem:
            raise ActionFailed(self.cfg.problem)

        def attempt(url: str, timeout: float) -> T:
            client = self.clients.get(url) or self.clients.setdefault(url, client_for(self.cfg, url))
            with deadline(timeout):
                return use(client.lib)

        try:
            return over_urls(self.cfg, self.cfg.urls, what, attempt, lambda: self.cfg.timeout_s)[1]
        except ApiError as e:
            if e.kind in ("auth", "forbidden"):
                raise ActionFailed(f"{self.cfg.title} refused {what} ({e.status}): set {self.cfg.token_var} to a "
                                   "token with the rights README.md lists") from None
            kept = " (not acted on)" if e.kind in ("redirect", "protocol") else ""
            raise ActionFailed(f"{self.cfg.title}: {e}{kept}") from None


def vault_health(vault: Api) -> Any:
    """The body whatever the status (hvac hands back a 429/472/473/501/503 response undecoded)."""
    def read(v: Any) -> Any:
        h = v.sys.read_health_status(method="GET", standby_ok=True)
        return h.json() if isinstance(h, requests.Response) else h
    return vault.lib("GET /v1/sys/health", read)
