"""The official client libraries (python-nomad, py-consul, hvac), for code that acts on the cluster (remediation)
rather than reading it: configured like the suite's own reads, on a session that follows no redirect (a 3xx is
returned as it is, never re-sent with the token to wherever it points) and reads no environment (no proxy, no
``.netrc``, no ``REQUESTS_CA_BUNDLE`` behind the configured CA). The snapshots do not use them: their reads go
through :mod:`acceptance.clients.transport`, which also bounds time and size."""

from __future__ import annotations

import urllib.parse
from typing import Any

from acceptance.clients.config import ApiConfig
from acceptance.clients.transport import new_session


def nomad_client(cfg: ApiConfig, url: str | None = None) -> Any:
    import nomad  # python-nomad

    session, _ = new_session()
    return nomad.Nomad(address=url or cfg.url, token=cfg.token, timeout=cfg.timeout, verify=cfg.verify,
                       cert=cfg.client_cert or (), session=session, namespace=cfg.namespace)


def consul_client(cfg: ApiConfig, url: str | None = None) -> Any:
    import consul  # py-consul

    parts = urllib.parse.urlsplit(url or cfg.url)
    client = consul.Consul(host=parts.hostname, port=parts.port or 8500, scheme=parts.scheme, token=cfg.token,
                           verify=cfg.verify, cert=cfg.client_cert, connections_timeout=cfg.timeout)
    client.token = cfg.token  # py-consul prefers CONSUL_HTTP_TOKEN over its argument; be explicit
    client.http.session, _ = new_session()
    return client


def vault_client(cfg: ApiConfig, url: str | None = None) -> Any:
    import hvac
    import hvac.adapters  # type: ignore[import-untyped]

    session, _ = new_session()
    return hvac.Client(url=url or cfg.url, token=cfg.token, cert=cfg.client_cert, verify=cfg.verify,
                       timeout=cfg.timeout, session=session, adapter=hvac.adapters.RawAdapter)
