"""The API clients: configuration from the inventory and the CLIs' variables, retries of what is safe to retry
(a leader election within the window passes), fail-over, and one clear line for a wrong CA or a wrong token
(against a real local HTTPS server with throwaway certificates)."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from acceptance.clients import nomad_api, prometheus_api
from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig, api_config
from acceptance.clients.errors import ApiError
from acceptance.inventory import load_inventory

from .conftest import EXAMPLE

SECRET = "s3cr3t-token-value"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FlappingNomad:
    """A fake python-nomad whose leader is gone for ``flaps`` calls (500 No cluster leader, then "")."""

    def __init__(self, flaps: int) -> None:
        self.flaps = flaps
        self.calls = 0

    def leader(self) -> str:
        self.calls += 1
        if self.calls <= self.flaps:
            if self.calls % 2:
                raise ApiError("no-leader", "500 No cluster leader", status=500, retryable=True)
            return ""
        return "172.30.0.12:4647"


def cfg(retry_s: float = 20, urls: tuple[str, ...] = ("https://a:4646",)) -> ApiConfig:
    return ApiConfig(name="nomad", urls=urls, token_var="NOMAD_TOKEN", retry_s=retry_s)


def test_leader_flap_within_the_window_passes():
    clock, fake = Clock(), FlappingNomad(flaps=4)
    caller: Caller[FlappingNomad] = Caller(cfg(), lambda url: fake, clock=clock, sleep=clock.sleep)
    got = caller.get("/v1/status/leader", lambda c: c.leader(), accept=nomad_api._leader_elected)
    assert got == "172.30.0.12:4647" and fake.calls == 5 and clock.now < 20


def test_no_leader_for_the_whole_window_is_reported_then_later_calls_do_not_wait_again():
    clock, fake = Clock(), FlappingNomad(flaps=10**6)
    caller: Caller[FlappingNomad] = Caller(cfg(retry_s=5), lambda url: fake, clock=clock, sleep=clock.sleep)
    with pytest.raises(ApiError) as e:
        caller.get("/v1/status/leader", lambda c: c.leader(), accept=nomad_api._leader_elected)
    assert e.value.kind == "no-leader" and 5 <= clock.now < 8
    before = fake.calls
    with pytest.raises(ApiError):
        caller.get("/v1/status/leader", lambda c: c.leader())
    assert fake.calls == before + 1  # the window is shared by the snapshot: one more attempt only


def test_a_leaderless_server_is_reported_over_refused_connections():
    """Two servers down, one up without a leader: the API is reachable and says "no leader"."""
    clock = Clock()

    def fn(url: str) -> str:
        if url == "https://b:8500":
            raise ApiError("no-leader", "500 No cluster leader", status=500, retryable=True)
        raise requests.exceptions.ConnectionError("Connection refused")

    urls = ("https://a:8500", "https://b:8500", "https://c:8500")
    caller: Caller[str] = Caller(cfg(retry_s=3, urls=urls), lambda url: url, clock=clock, sleep=clock.sleep)
    with pytest.raises(ApiError) as e:
        caller.get("/v1/status/leader", fn)
    assert e.value.kind == "no-leader" and caller.dead is None


def test_not_retried_403_and_failover_on_connection_refused():
    clock = Clock()
    calls: list[str] = []

    def fn(url: str) -> str:
        calls.append(url)
        if url == "https://a:4646":
            raise requests.exceptions.ConnectionError("Connection refused")
        return "ok"

    caller: Caller[str] = Caller(cfg(urls=("https://a:4646", "https://b:4646")), lambda url: url, clock=clock,
                                 sleep=clock.sleep)
    assert caller.get("/v1/nodes", fn) == "ok" and caller.url == "https://b:4646"
    assert caller.get("/v1/jobs", fn) == "ok" and calls == ["https://a:4646", "https://b:4646", "https://b:4646"]

    def forbidden(url: str) -> str:
        calls.append(url)
        raise ApiError("auth", "rejected", status=403)

    calls.clear()
    with pytest.raises(ApiError):
        caller.get("/v1/nodes", forbidden)
    assert calls == ["https://b:4646"]


def test_config_from_env_and_inventory(write_inventory, tmp_path):
    inv = load_inventory(write_inventory(EXAMPLE))
    ca = tmp_path / "other-ca.pem"
    ca.write_text("")
    env = {"NOMAD_CACERT": str(ca), "NOMAD_TOKEN": SECRET}
    c = api_config("nomad", inv, env)
    assert c.urls[0] == "https://172.30.0.11:4646" and c.ca == ca and c.ca_source == "NOMAD_CACERT"
    assert c.token == SECRET and SECRET not in repr(c)
    assert c.cert == tmp_path / "client.pem" and c.verify == str(ca)  # TLS files: env first, then apis.tls
    consul = api_config("consul", inv, {})
    assert consul.ca_source.startswith("apis.tls.ca") and consul.token is None
    bare = write_inventory(EXAMPLE.replace('  nomad: {address: "https://172.30.0.11:4646"}\n', ""), "bare.yaml")
    from_env = api_config("nomad", load_inventory(bare), {"NOMAD_ADDR": "https://10.0.0.1:4646"})
    assert from_env.urls[0] == "https://10.0.0.1:4646"
    assert "set NOMAD_ADDR" in (api_config("nomad", load_inventory(bare), {}).problem or "")
    missing = api_config("vault", inv, {"VAULT_CACERT": str(tmp_path / "nope.pem")})
    assert "VAULT_CACERT" in (missing.problem or "") and "file not found" in (missing.problem or "")


# --------------------------------------------------------------------------- a real TLS server


def _ca(tmp: Path, name: str) -> tuple[Any, Any, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def _server_cert(tmp: Path, ca_key: Any, ca_cert: Any) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp / "server.pem", tmp / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        token = self.headers.get("X-Nomad-Token")
        if self.path.startswith("/v1/status/leader"):
            status, body = 200, json.dumps("127.0.0.1:4647")
        elif token != SECRET:
            status, body = 403, "ACL token not found" if token else "Permission denied"
        else:
            status, body = 200, "[]"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    pytest.importorskip("cryptography")
    tmp = tmp_path_factory.mktemp("tls")
    key, cert, ca = _ca(tmp, "cluster-ca")
    _, _, wrong = _ca(tmp, "wrong-ca")
    server_cert, server_key = _server_cert(tmp, key, cert)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert, server_key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"https://127.0.0.1:{httpd.server_address[1]}", "ca": ca, "wrong": wrong}
    httpd.shutdown()


def nomad_cfg(server: dict[str, Any], ca: Path, token: str | None) -> ApiConfig:
    return ApiConfig(name="nomad", urls=(server["url"],), ca=ca, ca_source="NOMAD_CACERT", token=token,
                     token_var="NOMAD_TOKEN", timeout_s=5, retry_s=1)


def test_python_nomad_against_tls_with_the_right_ca_and_token(tls_server):
    snap = nomad_api.fetch(nomad_cfg(tls_server, tls_server["ca"], SECRET))
    assert snap.root is None and snap.get("leader") == "127.0.0.1:4647" and snap.get("nodes") == []


def test_wrong_ca_is_one_line_naming_the_variable(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server["ca"]))  # verify= per request must win over it
    snap = nomad_api.fetch(nomad_cfg(tls_server, tls_server["wrong"], SECRET))
    assert snap.root is not None and snap.root.kind == "tls"
    message = str(snap.root)
    assert message.startswith(f"Nomad at {tls_server['url']}: TLS verification failed")
    assert f"NOMAD_CACERT={tls_server['wrong']}" in message and "set NOMAD_CACERT to the cluster CA" in message
    assert "\n" not in message and SECRET not in message


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_wrong_or_missing_token_is_one_line_naming_the_variable(tls_server, token):
    snap = nomad_api.fetch(nomad_cfg(tls_server, tls_server["ca"], token))
    assert snap.root is not None and snap.root.kind == "auth"
    message = str(snap.root)
    assert "rejected the token (403)" in message and "set NOMAD_TOKEN" in message
    assert "\n" not in message and (token or SECRET) not in message


def test_prometheus_client_wrong_ca(tls_server):
    c = ApiConfig(name="prometheus", urls=(tls_server["url"],), ca=tls_server["wrong"], ca_source="apis.tls.ca",
                  timeout_s=5, retry_s=1)
    snap = prometheus_api.fetch(c, [])
    assert snap.root is not None and "TLS verification failed" in str(snap.root)
    assert f"with apis.tls.ca={tls_server['wrong']} — set apis.tls.ca to the cluster CA" in str(snap.root)
