"""The hardened transport under each official library (python-nomad, py-consul, hvac), reads and writes alike,
against real local servers: a redirect reaches nothing (no request, no token), a server that sends one byte per
second is cut at the deadline, an endless body is cut at the cap."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, classify
from acceptance.clients.libraries import client_for
from acceptance.clients.transport import MAX_BODY, Aborted, TooLarge, deadline, new_session
from remediation.clients import Api
from remediation.drains import Nomad
from remediation.lock import create_session
from remediation.model import ActionFailed

TOKEN = "s.Tr4nsp0rtT0ken-do-not-leak-42"
HEADERS = {"nomad": "x-nomad-token", "consul": "x-consul-token", "vault": "x-vault-token"}


class Server:
    """Answers every request with ``answer(handler)``; records (method, path, headers)."""

    def __init__(self, answer: Callable[[http.server.BaseHTTPRequestHandler], None]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.sent = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                outer.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with contextlib.suppress(OSError):  # the client hung up: what the test wants
                    answer(self)

            do_GET = do_PUT = do_POST = do_DELETE = handle_any  # noqa: N815

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def redirecting(status: int, to: str) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Location", to + h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()
    return answer


def ok_json(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "2")
    h.end_headers()
    h.wfile.write(b"{}")


def dripping(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "60")
    h.end_headers()
    for _ in range(60):
        h.wfile.write(b" ")
        h.wfile.flush()
        time.sleep(1)


def endless(server_ref: list[Server]) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        chunk = b"[" + b" " * 65535
        for _ in range(4096):  # 256 MiB at most, should the client never stop
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            server_ref[0].sent += len(chunk)
    return answer


def cfg_of(name: str, url: str, **kw: Any) -> ApiConfig:
    return ApiConfig(name=name, urls=(url,), token_var=f"{name.upper()}_TOKEN", token_header=HEADERS[name],
                     **{"token": TOKEN, "timeout_s": 3, "retry_s": 0.1, "deadline_s": 8, **kw})


# python-nomad, py-consul and hvac named methods, each a write (or a read remediation acts on)
WRITES: dict[str, Callable[[Api], Any]] = {
    "nomad": lambda api: Nomad(api).node("alibuild01"),  # python-nomad nodes.get_nodes()
    "consul": lambda api: api.lib("PUT /v1/session/create", lambda c: create_session(c, 60)),  # py-consul http.put
    "vault": lambda api: api.lib("PUT /v1/sys/step-down", lambda c: c.sys.step_down()),  # hvac sys.step_down
}
READS = {"nomad": "/v1/status/leader", "consul": "/v1/status/leader", "vault": "/v1/sys/health"}


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("name", ["nomad", "consul", "vault"])
def test_a_redirect_reaches_nothing(name: str, status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token-must-not-win")
    elsewhere = Server(ok_json)
    origin = Server(redirecting(status, elsewhere.url))
    try:
        cfg = cfg_of(name, origin.url)
        with pytest.raises(ApiError) as read:
            Caller(cfg).get(READS[name])  # the snapshots' read path
        assert read.value.kind == "redirect" and elsewhere.url in str(read.value)
        with pytest.raises(ActionFailed) as write:
            WRITES[name](Api(cfg))
        assert elsewhere.url in str(write.value) and "redirect" in str(write.value).lower() or str(status) in str(
            write.value)
        assert TOKEN not in str(read.value) + str(write.value)
        time.sleep(0.2)
        assert elsewhere.requests == []  # no request, so no token, ever reached the place pointed to
        assert len(origin.requests) >= 2
        assert all(headers.get(HEADERS[name]) == TOKEN for _, _, headers in origin.requests)
    finally:
        origin.close()
        elsewhere.close()


LIB_READS: dict[str, Callable[[Any], Any]] = {
    "nomad": lambda lib: lib.nodes.get_nodes(),
    "consul": lambda lib: lib.status.leader(),
    "vault": lambda lib: lib.sys.read_health_status(method="GET"),
}


@pytest.mark.parametrize("name", ["nomad", "consul", "vault"])
def test_one_byte_per_second_is_cut_at_the_deadline(name: str) -> None:
    server = Server(dripping)
    try:
        client = client_for(cfg_of(name, server.url, timeout_s=30))
        start = time.monotonic()
        with pytest.raises(Aborted):
            client.get(READS[name], 1.5)  # the library's request path, 1.5 s in all, 60 s of body offered
        assert 1.3 < time.monotonic() - start < 3.0
        start = time.monotonic()
        with deadline(1.5), pytest.raises(Exception) as e:  # noqa: PT012,B017 - each library wraps its own way
            LIB_READS[name](client.lib)
        assert 1.3 < time.monotonic() - start < 3.0
        assert classify(client.cfg, server.url, READS[name], e.value).kind == "unreachable"
    finally:
        server.close()


@pytest.mark.parametrize("name", ["nomad", "consul", "vault"])
def test_an_endless_body_is_cut_at_the_cap(name: str) -> None:
    ref: list[Server] = []
    server = Server(endless(ref))
    ref.append(server)
    try:
        client = client_for(cfg_of(name, server.url, timeout_s=30))
        with pytest.raises(TooLarge):
            client.get(READS[name], 30)
        with pytest.raises(Exception) as e:  # noqa: B017 - each library wraps its own way
            LIB_READS[name](client.lib)
        err = classify(client.cfg, server.url, READS[name], e.value)
        assert err.kind == "protocol" and "larger than" in str(err)
        time.sleep(0.3)
        assert server.sent < 2 * (MAX_BODY + 8 * 1024 * 1024), server.sent  # two reads, each stopped at the cap
    finally:
        server.close()


def test_a_session_reads_no_environment_and_pins_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent")
    server = Server(ok_json)
    try:
        session = new_session(verify="/etc/ssl/certs/ca-certificates.crt", api="nomad")
        assert session.trust_env is False and session.max_redirects == 0
        assert session.verify == "/etc/ssl/certs/ca-certificates.crt"
        assert session.get(server.url + "/v1/x", timeout=2).json() == {}  # no proxy in between
    finally:
        server.close()


@pytest.mark.parametrize("name", ["nomad", "consul", "vault"])
def test_a_client_without_a_token_sends_none_from_the_environment(name: str, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Any) -> None:
    # each library falls back to its CLI's variables (and hvac to ~/.vault-token) for a token it was not given:
    # a remediation client without its write token would then send the checks' read token
    for var in ("NOMAD_TOKEN", "CONSUL_HTTP_TOKEN", "VAULT_TOKEN"):
        monkeypatch.setenv(var, TOKEN)
    monkeypatch.setenv("NOMAD_REGION", "elsewhere")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".vault-token").write_text(TOKEN)
    server = Server(ok_json)
    try:
        client = client_for(cfg_of(name, server.url, token=None))
        with contextlib.suppress(Exception):  # only what was sent matters
            client.get(READS[name], 3, call={"nomad": lambda n: n.status.leader.get_leader(),
                                             "consul": lambda c: c.status.leader(),
                                             "vault": lambda v: v.sys.read_health_status(method="GET")}[name])
        assert server.requests, "the client sent nothing"
        for _, path, headers in server.requests:
            assert TOKEN not in str(headers) and "elsewhere" not in path
    finally:
        server.close()


def test_every_library_call_carries_the_token() -> None:
    # py-consul's agent.members() passes no token of its own; Consul answers it with an ACL-filtered empty list
    server = Server(ok_json)
    try:
        client = client_for(cfg_of("consul", server.url))
        with contextlib.suppress(Exception):
            client.get("/v1/agent/members", 3, call=lambda c: c.agent.members())
        assert [h.get("x-consul-token") for _, _, h in server.requests] == [TOKEN]
    finally:
        server.close()


def test_lock_status_against_a_one_byte_per_second_consul_ends(write_inventory: Callable[..., Any],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``alice-acceptance lock status`` reads with the remediation client: bounded as a whole, not per read."""
    import re

    from remediation.lock import main as lock_main

    from .conftest import EXAMPLE

    server = Server(dripping)
    monkeypatch.setenv("CONSUL_REMEDIATION_TOKEN", "remediation-token-0123456789")
    text = re.sub(r"apis:\n(  .*\n)+", "", EXAMPLE).replace(
        "nodes:\n", f'apis:\n  consul: {{address: "{server.url}"}}\n  timeout_s: 2\n  retry_s: 1\nnodes:\n', 1)
    inv = write_inventory(text)
    try:
        start = time.monotonic()
        code = lock_main(["status", f"--inventory={inv}"])
        took = time.monotonic() - start
    finally:
        server.close()
    out, err = capsys.readouterr()
    assert server.requests and took < 15, (took, out, err)  # 60 s of body offered, 2 s per request
    assert code != 0 or "unknown" in out, (code, out, err)
    assert "remediation-token-0123456789" not in out + err
