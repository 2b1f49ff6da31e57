"""The one client factory: each API's library (python-nomad, py-consul, hvac; plain requests for Prometheus) on
a :func:`~acceptance.clients.transport.new_session` session. A status the caller expects (``ok``: autopilot's
429) is an answer even where the library raises on it; any other failure is the library's exception."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import requests

from acceptance.clients.config import ApiConfig
from acceptance.clients.transport import Answer, deadline, new_session

LibCall = Callable[[Any], Any]  # one named method of the library's client, e.g. ``lambda n: n.nodes.get_nodes()``


class LibClient:
    def __init__(self, cfg: ApiConfig, url: str | None = None, *, json_api: bool = True) -> None:
        self.cfg = cfg
        self.url = (url or cfg.url).rstrip("/")
        self.session = new_session(verify=cfg.verify, cert=cfg.client_cert, api=cfg.name, json_api=json_api)
        self.session.hooks["response"].append(self._keep)
        # the token on every request, whatever the library does with it: py-consul's agent.members() sends none,
        # and Consul then answers an ACL-filtered (empty) list with 200
        self.session.headers.update(cfg.headers)
        self.last: requests.Response | None = None
        self.lib: Any = self._make()

    def _keep(self, response: requests.Response | None, *args: Any, **kwargs: Any) -> None:
        self.last = response  # what the library was answered, headers included, whatever it made of it

    def _make(self) -> Any:
        return self.session

    def get(self, path: str, timeout_s: float, params: Mapping[str, str] | None = None, *,
            call: LibCall | None = None, ok: tuple[int, ...] = (200,)) -> Answer:
        """``call(lib)`` (without one: ``GET path`` on the session) within ``timeout_s``."""
        self._keep(None)
        data: Any = None
        with deadline(max(0.05, timeout_s)):
            try:
                if call is None:
                    self.session.get(self.url + path, params=dict(params or {}), headers=self.cfg.headers,
                                     timeout=self.cfg.timeout, allow_redirects=False)
                else:
                    data = call(self.lib)
            except Exception:
                if self.last is None or self.last.status_code not in ok or self.last.status_code < 300:
                    raise  # a status the caller expects is an answer, whatever the library made of it
                data = None
        r = self.last
        if r is None:
            raise requests.ConnectionError(f"{self.cfg.title}: no answer to {path}")
        if isinstance(data, requests.Response):
            data = None  # hvac gives back the response of a status it does not decode
        return Answer(self.url, path, r.status_code, {k.lower(): v for k, v in r.headers.items()},
                      bytes(r.content or b""), data)

    def close(self) -> None:
        self.session.close()


class NomadClient(LibClient):
    def _make(self) -> Any:
        import nomad  # python-nomad
        from nomad.api.base import Requester  # type: ignore[import-untyped]

        client = nomad.Nomad(address=self.url, token=self.cfg.token, timeout=self.cfg.timeout,
                             verify=self.cfg.verify, cert=self.cfg.client_cert or (), session=self.session)
        # python-nomad takes NOMAD_TOKEN/NOMAD_REGION/NOMAD_NAMESPACE for a value it was not given: a remediation
        # client without its write token would send the checks' token. Each endpoint keeps its own copy; the
        # namespace is passed by the calls that need one (jobs, allocations).
        todo, seen = list(vars(client).values()), set()
        while todo:  # endpoints hold endpoints (status.leader, status.peers)
            endpoint = todo.pop()
            if type(endpoint).__module__.startswith("nomad.api.") and id(endpoint) not in seen:
                seen.add(id(endpoint))
                if isinstance(endpoint, Requester):
                    endpoint.token, endpoint.region, endpoint.namespace = self.cfg.token, None, None
                todo.extend(vars(endpoint).values())
        return client


class ConsulClient(LibClient):
    def _make(self) -> Any:
        import consul  # py-consul

        parts = urllib.parse.urlsplit(self.url)
        client = consul.Consul(host=parts.hostname, port=parts.port or 8500, scheme=parts.scheme,
                               token=self.cfg.token, verify=self.cfg.verify, cert=self.cfg.client_cert,
                               connections_timeout=self.cfg.timeout_s)
        client.token = self.cfg.token  # py-consul prefers CONSUL_HTTP_TOKEN over its argument
        client.http.session = self.session
        return client


class VaultClient(LibClient):
    def _make(self) -> Any:
        import hvac

        # "" rather than None: hvac would take VAULT_TOKEN or ~/.vault-token for a missing token
        return hvac.Client(url=self.url, token=self.cfg.token or "", cert=self.cfg.client_cert, verify=self.cfg.verify,
                           timeout=self.cfg.timeout, session=self.session, allow_redirects=False)


CLIENTS: dict[str, type[LibClient]] = {"nomad": NomadClient, "consul": ConsulClient, "vault": VaultClient}


def client_for(cfg: ApiConfig, url: str | None = None, *, json_api: bool | None = None) -> LibClient:
    """JSON APIs' sessions refuse a 3xx and a non-JSON 2xx body (Prometheus' text probes are not JSON)."""
    return CLIENTS.get(cfg.name, LibClient)(cfg, url, json_api=cfg.name in CLIENTS if json_api is None else json_api)
