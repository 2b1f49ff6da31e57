"""The one client factory: each API's official library (python-nomad, py-consul, hvac; plain requests for the
rest) on a session from :func:`acceptance.clients.transport.new_session`, so every request, read or write, is
bounded in time and size, follows no redirect and reads no environment.

:class:`LibClient` is one address of one API. :meth:`LibClient.request` goes through the library's own request
path (python-nomad ``Requester._request``, py-consul ``HTTPClient.get/put/...``, hvac ``Adapter.request``) and
gives back the raw answer whatever its status, so the snapshots (:mod:`acceptance.clients.call`) classify every
status the same way for every API; :meth:`LibClient.get` is that answer as an :class:`Answer` within a timeout.
Named library methods are used where the caller wants the library's own parsing (``client.lib``).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import requests

from acceptance.clients.config import ApiConfig
from acceptance.clients.transport import Answer, deadline, new_session


class LibClient:
    """One address of one API through its library; ``lib`` is the library's client object."""

    def __init__(self, cfg: ApiConfig, url: str | None = None, *, json_api: bool = False) -> None:
        self.cfg = cfg
        self.url = (url or cfg.url).rstrip("/")
        self.session = new_session(verify=cfg.verify, cert=cfg.client_cert, api=cfg.name, json_api=json_api)
        self.lib: Any = self._make()

    def _make(self) -> Any:
        return None

    def _send(self, method: str, path: str, params: Mapping[str, str], body: Any) -> requests.Response | Any:
        return self.session.request(method, self.url + path, params=dict(params), json=body,
                                    headers=self.cfg.headers, timeout=self.cfg.timeout, allow_redirects=False)

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None, body: Any = None
                ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of ``method path``, whatever the status."""
        r = self._send(method.upper(), path, params or {}, body)
        content = r.content if isinstance(r, requests.Response) else r.body
        code = r.status_code if isinstance(r, requests.Response) else r.code
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        return int(code), {k.lower(): v for k, v in r.headers.items()}, data

    def get(self, path: str, timeout_s: float, params: Mapping[str, str] | None = None) -> Answer:
        start = time.monotonic()
        with deadline(max(0.05, timeout_s)):
            status, headers, body = self.request("GET", path, params)
        return Answer(self.url, path, status, headers, body, time.monotonic() - start)

    def json(self, method: str, path: str, params: Mapping[str, str] | None = None, body: Any = None) -> Any:
        """The answer's JSON (None when empty), for a ``json_api`` client whose transport checked it already."""
        _, _, data = self.request(method, path, params, body)
        return json.loads(data) if data.strip() else None

    def close(self) -> None:
        self.session.close()


class NomadClient(LibClient):
    def _make(self) -> Any:
        import nomad  # python-nomad

        return nomad.Nomad(address=self.url, token=self.cfg.token, timeout=self.cfg.timeout, verify=self.cfg.verify,
                           cert=self.cfg.client_cert or (), session=self.session)

    def _send(self, method: str, path: str, params: Mapping[str, str], body: Any) -> Any:
        import nomad.api.exceptions as nx  # type: ignore[import-untyped]

        try:  # the library's own request path: its token header, its namespace and region rules
            return self.lib.nodes._request(method=method.lower(), endpoint=path.lstrip("/"), params=dict(params),
                                           json=body, allow_redirects=False, timeout=self.cfg.timeout)
        except nx.BaseNomadException as e:
            if isinstance(e.nomad_resp, requests.Response):
                return e.nomad_resp  # a non-2xx: classified by status like every API's
            if isinstance(e.nomad_resp, BaseException):
                raise e.nomad_resp from None
            raise


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

    def _send(self, method: str, path: str, params: Mapping[str, str], body: Any) -> Any:
        http, headers, query = self.lib.http, self.lib.prepare_headers(), list(params.items())
        if method == "GET":
            return http.get(lambda r: r, path, params=query, headers=headers, raw=True)
        data = json.dumps(body) if body is not None else ""
        return getattr(http, method.lower())(lambda r: r, path, params=query, data=data, headers=headers)


class VaultClient(LibClient):
    def _make(self) -> Any:
        import hvac
        import hvac.adapters  # type: ignore[import-untyped]

        return hvac.Client(url=self.url, token=self.cfg.token, cert=self.cfg.client_cert, verify=self.cfg.verify,
                           timeout=self.cfg.timeout, session=self.session, allow_redirects=False,
                           adapter=hvac.adapters.RawAdapter)

    def _send(self, method: str, path: str, params: Mapping[str, str], body: Any) -> Any:
        return self.lib.adapter.request(method, path, params=dict(params), json=body, raise_exception=False)


CLIENTS: dict[str, type[LibClient]] = {"nomad": NomadClient, "consul": ConsulClient, "vault": VaultClient}


def client_for(cfg: ApiConfig, url: str | None = None, *, json_api: bool = False) -> LibClient:
    """The API's client on one address (its library, else plain requests), on a hardened session."""
    return CLIENTS.get(cfg.name, LibClient)(cfg, url, json_api=json_api)
