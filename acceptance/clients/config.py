"""How the suite reaches each cluster API: from the inventory's ``apis`` section and the variables the
official CLIs read (``NOMAD_ADDR``, ``NOMAD_CACERT``, ... ``CONSUL_HTTP_TOKEN``, ``VAULT_TOKEN``).

Precedence: the address comes from the inventory (``apis.<name>.address``), else from ``<NAME>_ADDR``;
TLS files and tokens come from the environment, else (TLS files only) from ``apis.tls``. Tokens never
come from the inventory and never appear in a message: messages name the variable instead.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from acceptance.inventory import Inventory, Node, valid_address
from acceptance.redaction import remember

CONNECT_TIMEOUT_S = 3.05
DEADLINE_S = 45.0  # default of apis.deadline_s: the whole snapshot of one API


@dataclass(frozen=True)
class EnvNames:
    """The variables a service's official CLI reads."""

    addr: str | None
    ca: str | None
    cert: str | None
    key: str | None
    token: str | None
    header: str | None = None  # the HTTP header that carries the token


ENV: dict[str, EnvNames] = {
    "nomad": EnvNames("NOMAD_ADDR", "NOMAD_CACERT", "NOMAD_CLIENT_CERT", "NOMAD_CLIENT_KEY", "NOMAD_TOKEN",
                      "X-Nomad-Token"),
    "consul": EnvNames("CONSUL_HTTP_ADDR", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY",
                       "CONSUL_HTTP_TOKEN", "X-Consul-Token"),
    "vault": EnvNames("VAULT_ADDR", "VAULT_CACERT", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_TOKEN",
                      "X-Vault-Token"),
    "prometheus": EnvNames(None, None, None, None, None, None),
}
TITLES = {"nomad": "Nomad", "consul": "Consul", "vault": "Vault", "prometheus": "Prometheus",
          "openstack": "OpenStack"}
DEFAULT_PORTS = {"nomad": 4646, "consul": 8500, "vault": 8200, "prometheus": 9090}


@dataclass(frozen=True)
class ApiConfig:
    """One HTTP API: where (the configured address first, then the same port on every master), with which CA,
    client certificate and token, and the variables or keys to name when one of them is wrong."""

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
        """What requests' ``verify=`` gets: the CA file, else True (the system bundle); never False."""
        return str(self.ca) if self.ca else True

    @property
    def client_cert(self) -> tuple[str, str] | None:
        return (str(self.cert), str(self.key)) if self.cert and self.key else None

    @property
    def timeout(self) -> tuple[float, float]:
        return (min(CONNECT_TIMEOUT_S, self.timeout_s), self.timeout_s)

    def for_url(self, url: str) -> ApiConfig:
        """The same settings aimed at one address only (e.g. one master's Vault)."""
        return dataclasses.replace(self, urls=(url,))


def credentials_problem(url: str, where: str) -> str | None:
    """A URL with ``user:password@`` is refused (the suite takes credentials from the environment only); the
    message does not repeat them."""
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        return (f"{where} holds credentials (user:password@); fix: remove them from the address "
                "(credentials come from the environment, never from an address)")
    return None


def _normalise(raw: str, default_scheme: str) -> str:
    raw = raw.strip().rstrip("/")
    return raw if "://" in raw else f"{default_scheme}://{raw}"


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or ""


def master_urls(url: str, masters: list[Node], default_port: int) -> list[str]:
    """``url``'s scheme and port on every master's address (a master whose address is not a host is left out)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    out = []
    for m in masters:
        host = m.address or m.name
        if valid_address(host) is None:
            out.append(f"{parts.scheme}://{'[' + host + ']' if ':' in host and not host.startswith('[') else host}"
                       f":{port}")
    return out


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
        default_scheme = "http"
        if name == "consul" and env.get("CONSUL_HTTP_SSL", "").lower() == "true":
            default_scheme = "https"
        base = _normalise(env[names.addr], default_scheme)
        where = names.addr
    deadline = float(apis.deadline_s)
    common = ApiConfig(name=name, timeout_s=float(apis.timeout_s), retry_s=min(float(apis.retry_s), deadline),
                       deadline_s=deadline, token_var=names.token, token_header=names.header,
                       namespace=(env.get("NOMAD_NAMESPACE") or "default") if name == "nomad" else "default")
    if base is None:
        hint = f"set {names.addr} or " if names.addr else ""
        return dataclasses.replace(common, problem=f"{TITLES[name]} is not configured; fix: {hint}add "
                                                   f"apis.{name}.address to {inventory.path}")
    creds = credentials_problem(base, where)
    if creds is not None:
        return dataclasses.replace(common, problem=creds)
    parts = urllib.parse.urlsplit(base)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
        bad_port = False
    except ValueError:
        bad_port = True
    if parts.scheme not in ("http", "https") or not parts.hostname or bad_port or parts.query or parts.fragment:
        return dataclasses.replace(common, problem=f"{where}={base!r} is not an http(s) URL; fix: write it as "
                                                   f"https://host:{DEFAULT_PORTS[name]}")
    masters = [n for n in inventory.nodes if n.role == "master"] if masters is None else masters
    # every master runs each service (Prometheus too, with the same scrape configuration): when the address
    # given does not answer, the same port on the other masters does
    urls = [base.rstrip("/")]
    urls += [u for u in master_urls(base, masters, DEFAULT_PORTS[name]) if u not in urls]
    tls = apis.tls

    def pick(var: str | None, fallback: Path | None, key: str) -> tuple[Path | None, str]:
        if var and env.get(var):
            return Path(env[var]).expanduser(), var
        return fallback, (f"apis.tls.{key} in {inventory.path}" if fallback else (var or f"apis.tls.{key}"))

    ca, ca_source = pick(names.ca, tls.ca if tls else None, "ca")
    cert, cert_source = pick(names.cert, tls.cert if tls else None, "cert")
    key, _ = pick(names.key, tls.key if tls else None, "key")
    token = env.get(names.token) if names.token else None
    problem = None
    for path, source in ((ca, ca_source), (cert, cert_source), (key, names.key or "apis.tls.key")):
        if path is not None and not path.is_file():
            problem = f"{source}={path}: file not found; fix: point {source} at the file"
            break
    return dataclasses.replace(common, urls=tuple(urls), ca=ca, ca_source=ca_source, cert=cert, key=key,
                               cert_source=cert_source, token=token or None, problem=problem)
