"""The official libraries, as acceptance.clients.libraries configures them, follow no redirect: the token never
reaches the place a 3xx points to."""

from __future__ import annotations

import pytest

from acceptance.clients import libraries
from acceptance.clients.config import ApiConfig

from .test_api_support import SECRET, FakeServer, Reply


@pytest.mark.parametrize("name", ["nomad", "consul", "vault"])
def test_libraries_do_not_follow_redirects(name):
    elsewhere = FakeServer("127.0.0.1", 0, {"/": Reply.json({})})
    redirect = Reply(302, b"", {"Location": f"http://127.0.0.1:{elsewhere.port}/v1/steal"})
    server = FakeServer("127.0.0.1", 0, {"/": redirect})
    cfg = ApiConfig(name=name, urls=(f"http://127.0.0.1:{server.port}",), token=SECRET, timeout_s=3)
    try:
        if name == "nomad":
            client = libraries.nomad_client(cfg)
            with pytest.raises(Exception):  # noqa: B017 - python-nomad raises its own type on a non-2xx
                client.nodes.get_nodes()
        elif name == "consul":
            client = libraries.consul_client(cfg)
            with pytest.raises(Exception):  # noqa: B017 - py-consul raises its own type on a non-2xx
                client.agent.members()
        else:
            client = libraries.vault_client(cfg)
            assert client.adapter.get("/v1/sys/health", raise_exception=False).status_code == 302
        assert server.requests and elsewhere.requests == []
    finally:
        server.close()
        elsewhere.close()
