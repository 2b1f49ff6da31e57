"""How the suite reaches each cluster API: the address from the inventory (``apis.<name>.address``), else from the
official CLI's variable (``NOMAD_ADDR``, ...); TLS files from the environment, else ``apis.tls``; tokens from the
environment only, never in a message (messages name the variable)."""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from acceptance.inventory import Inventory, Node, valid_address
from acceptance.redaction import remember

CONNECT_TIMEOUT_S = 3.05
DEADLINE_S = 45.0  # default of apis.deadline_s: the whole snapshot of one API


class EnvNames(NamedTuple):
    """The variables a service's official CLI reads, and the header that carries its token."""

    addr: str | None
    ca: str | None
    cert: str | None
    key: str | None
    token: str | None
    header: str | None


def _env(cli: str, addr: str, token: str) -> EnvNames:
    return EnvNames(addr, f"{cli}_CACERT", f"{cli}_CLIENT_CERT", f"{cli}_CLIENT_KEY", token,
                    f"X-{cli.title()}-Token")


ENV: dict[str, EnvNames] = {"nomad": _env("NOMAD", "NOMAD_ADDR", "NOMAD_TOKEN"),
                            "consul": _env("CONSUL", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_TOKEN"),
                            "vault": _env("VAULT", "VAULT_ADDR", "VAULT_TOKEN"),
                            "prometheus": EnvNames(None, None, None, None, None, None)}
TITLES = {"nomad": "Nomad", "consul": "Consul", "vault": "Vault", "prometheus": "Prometheus",
          "openstack": "OpenStack"}
DEFAULT_PORTS = {"nomad": 4646, "consul": 8500, "vault": 8200, "prometheus": 9090}


@dataclass(frozen=True)
class ApiConfig:
    """One HTTP API: its addresses (the configured one first, then the same port on every master), CA, client
    certificate and token, and the variables or keys to name when one of them is wrong."""

    name: str
    urls: tuple[str, ...] = ()
    ca: Path | None = None
    ca_source: str = ""  # e.g. "NOMAD_CACERT" or "apis.tls.ca"
    cert: Path | None = None
    key: Path | None = None
    cert_source: str = ""
    token: str | None = field(default=None, repr=False)
    token_var: str | None = None
    token_header: str | None = None
    timeout_s: float = 10
    retry_s: float = 20
    deadline_s: float = DEADLINE_S
    namespace: str = "default"  # Nomad: NOMAD_NAMESPACE
    problem: str | None = None  # why the API cannot be used at all (not configured, bad address)

    def __post_init__(self) -> None:
        remember(self.token)  # whatever a server echoes, the token never reaches a message

    @property
    def headers(self) -> dict[str, str]:
        return {self.token_header: self.token} if self.token and self.token_header else {}

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    @property
    def url(self) -> str:
        return self.urls[0] if self.urls else ""

    @property
    def verify(self) -> str | bool:
        """The CA file, else True (the system bundle); never False."""
        return str(self.ca) if self.ca else True

    @property
    def client_cert(self) -> tuple[str, str] | None:
        return (str(self.cert), str(self.key)) if self.cert and self.key else None

    @property
    def timeout(self) -> tuple[float, float]:
        return (min(CONNECT_TIMEOUT_S, self.timeout_s), self.timeout_s)

    def for_url(self, url: str) -> ApiConfig:
        return dataclasses.replace(self, urls=(url,))


def _port(parts: urllib.parse.SplitResult, default: int | None) -> int | None:
    try:
        return parts.port or default
    except ValueError:  # not a number
        return None


def master_urls(url: str, masters: list[Node], default_port: int) -> list[str]:
    """``url``'s scheme and port on every master's address (a master whose address is not a host is left out)."""
    parts = urllib.parse.urlsplit(url)
    port = _port(parts, default_port) or default_port
    hosts = [m.address or m.name for m in masters]
    return [f"{parts.scheme}://{'[' + h + ']' if ':' in h and not h.startswith('[') else h}:{port}"
            for h in hosts if valid_address(h) is None]


def api_config(name: str, inventory: Inventory, env: Mapping[str, str] | None = None,
               masters: list[Node] | None = None) -> ApiConfig:
    """The configuration of API ``name`` (nomad, consul, vault, prometheus)."""
    env = os.environ if env is None else env
    names = ENV[name]
    apis = inventory.apis
    endpoint = getattr(apis, name)
    where = f"{inventory.path}: apis.{name}.address"
    base = endpoint.address if endpoint is not None else None
    if base is None and names.addr and env.get(names.addr):
        ssl = name == "consul" and env.get("CONSUL_HTTP_SSL", "").lower() == "true"
        raw = env[names.addr].strip().rstrip("/")
        base, where = raw if "://" in raw else f"{'https' if ssl else 'http'}://{raw}", names.addr
    deadline = float(apis.deadline_s)
    common = ApiConfig(name=name, timeout_s=float(apis.timeout_s), retry_s=min(float(apis.retry_s), deadline),
                       deadline_s=deadline, token_var=names.token, token_header=names.header,
                       namespace=(env.get("NOMAD_NAMESPACE") or "default") if name == "nomad" else "default")
    if base is None:
        hint = f"set {names.addr} or " if names.addr else ""
        return dataclasses.replace(common, problem=f"{TITLES[name]} is not configured; fix: {hint}add "
                                                   f"apis.{name}.address to {inventory.path}")
    parts = urllib.parse.urlsplit(base)
    if "@" in parts.netloc:  # credentials come from the environment only; the message does not repeat them
        return dataclasses.replace(common, problem=f"{where} holds credentials (user:password@); fix: remove them "
                                                   "from the address (credentials come from the environment, never "
                                                   "from an address)")
    if parts.scheme not in ("http", "https") or not parts.hostname or _port(parts, 0) is None or parts.query \
            or parts.fragment:
        return dataclasses.replace(common, problem=f"{where}={base!r} is not an http(s) URL; fix: write it as "
                                                   f"https://host:{DEFAULT_PORTS[name]}")
    masters = [n for n in inventory.nodes if n.role == "master"] if masters is None else masters
    # every master runs each service (Prometheus too): when the address given does not answer, they do
    urls = [base.rstrip("/")]
    urls += [u for u in master_urls(base, masters, DEFAULT_PORTS[name]) if u not in urls]
    tls = apis.tls

    def pick(var: str | None, key: str) -> tuple[Path | None, str]:
        if var and env.get(var):
            return Path(env[var]).expanduser(), var
        fallback: Path | None = getattr(tls, key) if tls else None
        return fallback, (f"apis.tls.{key} in {inventory.path}" if fallback else (var or f"apis.tls.{key}"))

    ca, ca_source = pick(names.ca, "ca")
    cert, cert_source = pick(names.cert, "cert")
    key, _ = pick(names.key, "key")
    problem = next((f"{source}={path}: file not found; fix: point {source} at the file"
                    for path, source in ((ca, ca_source), (cert, cert_source), (key, names.key or "apis.tls.key"))
                    if path is not None and not path.is_file()), None)
    token = env.get(names.token) if names.token else None
    return dataclasses.replace(common, urls=tuple(urls), ca=ca, ca_source=ca_source, cert=cert, key=key,
                               cert_source=cert_source, token=token or None, problem=problem)
