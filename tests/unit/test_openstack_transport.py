"""OpenStack on the suite's one hardened keystoneauth session, for the snapshot, discovery and remediation alike:
no redirect followed on either side (a second local server receives nothing: no password, no token), a
trickling Keystone ended at the deadline, a listing larger than the cap cut while it streams, and
``verify: false`` refused for remediation as for reads. Real local HTTP servers (Keystone v3 and Nova as far as
openstacksdk asks them), real keystoneauth and openstacksdk."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from acceptance.clients import openstack_api, openstack_cloud, transport
from acceptance.clients.errors import ApiError
from acceptance.discovery import DiscoveryError, openstack_lister
from acceptance.inventory import OpenStackSettings
from remediation.cloud import OpenStack
from remediation.model import ActionFailed

from .test_api_support import CLOUD_PASSWORD, CLOUD_PROJECT, apis, clouds_yaml, inventory

PASSWORD = CLOUD_PASSWORD
TOKEN = "gAAAAAB-fake-keystone-token-0123456789"
PROJECT = CLOUD_PROJECT


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"")
        self.server.seen.append(seen)
        self.server.route(self, seen)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


Route = Callable[[Handler, Seen], None]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, route: Route | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.route: Route = route or (lambda h, s: h.reply(404, {"error": "nothing here"}))
        self.seen: list[Seen] = []
        self.sent = 0  # bytes a streaming route got out
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(route: Route | None = None) -> Server:
        made.append(Server(route))
        return made[-1]

    yield make
    for s in made:
        s.close()


def keystone(nova_url: Callable[[], str], tokens: Route | None = None) -> Route:
    """Keystone v3: its version document, and ``POST /v3/auth/tokens`` (``tokens``, else a project-scoped token
    whose catalog puts compute at ``nova_url()``)."""
    def route(h: Handler, seen: Seen) -> None:
        base = f"http://{h.headers['Host']}"
        if seen.path.rstrip("/") == "/v3" and seen.method == "GET":
            h.reply(200, {"version": {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                                      "links": [{"rel": "self", "href": f"{base}/v3/"}],
                                      "media-types": [{"base": "application/json",
                                                       "type": "application/vnd.openstack.identity-v3+json"}]}})
        elif seen.path == "/v3/auth/tokens" and seen.method == "POST":
            if tokens is not None:
                return tokens(h, seen)
            endpoints = [{"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne",
                          "url": f"{nova_url()}/v2.1"}]
            h.reply(201, {"token": {
                "methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
                "issued_at": "2020-01-01T00:00:00.000000Z",
                "user": {"id": "u1", "name": "alibuild", "domain": {"id": "default", "name": "Default"}},
                "project": {"id": "p1", "name": PROJECT, "domain": {"id": "default", "name": "Default"}},
                "roles": [{"id": "r1", "name": "reader"}],
                "catalog": [{"id": "s1", "type": "compute", "name": "nova", "endpoints": endpoints}]}},
                {"X-Subject-Token": TOKEN})
        else:
            h.reply(404, {"error": {"code": 404, "message": "not found"}})
    return route


def nova(servers: Route) -> Route:
    """Nova: its version documents, and ``servers`` for everything under /v2.1."""
    def route(h: Handler, seen: Seen) -> None:
        base = f"http://{h.headers['Host']}"
        version = {"id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1",
                   "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": f"{base}/v2.1/"}]}
        if seen.path.rstrip("/") == "":
            h.reply(200, {"versions": [version]})
        elif seen.path.rstrip("/") == "/v2.1":
            h.reply(200, {"version": version})
        else:
            servers(h, seen)
    return route


SERVER = {"id": "9f3a", "name": "alibuild07", "status": "ACTIVE", "OS-EXT-AZ:availability_zone": "cern-geneva-b",
          "flavor": {"original_name": "m2.2xlarge"},
          "addresses": {"net": [{"addr": "fe80::1", "version": 6}, {"addr": "10.0.1.7", "version": 4}]}}


def cloud_of(servers: Callable[..., Server], tmp_path: Path, nova_route: Route | None = None,
             tokens: Route | None = None, *, deadline_s: float = 20, timeout_s: int = 10,
             extra: str = "") -> tuple[Any, Server, Server]:
    """An inventory whose clouds.yaml cloud is a local Keystone (its catalog: a local Nova), and both servers."""
    compute = servers(nova(nova_route or (lambda h, s: h.reply(200, {"servers": [SERVER]}))))
    ks = servers(keystone(lambda: compute.url, tokens))
    path = clouds_yaml(tmp_path, f"{ks.url}/v3", extra)
    inv = inventory(apis(openstack=OpenStackSettings(cloud="test", clouds_yaml=path, timeout_s=timeout_s),
                         deadline_s=deadline_s))
    return inv, ks, compute


def vm_node(inv: Any) -> Any:
    return next(n for n in inv.nodes if n.role == "agent" and n.kind == "vm")


def test_a_healthy_cloud_is_listed_through_the_hardened_session(servers, tmp_path):
    inv, ks, compute = cloud_of(servers, tmp_path)
    found = openstack_lister(inv, PROJECT)
    assert [(s.name, s.address, s.az, s.flavor) for s in found] == [
        ("alibuild07", "10.0.1.7", "cern-geneva-b", "m2.2xlarge")]
    auth = [s for s in ks.seen if s.method == "POST"]
    assert len(auth) == 1 and PASSWORD.encode() in auth[0].body  # the password went to Keystone, once
    assert all(s.headers.get("x-auth-token") == TOKEN for s in compute.seen if "servers" in s.path)
    assert transport.requests_made().get("openstack", 0) >= 3  # counted under the API's name


# --------------------------------------------------------------------------- the three entry points, one session


def snapshot_message(inv: Any) -> str:
    snap = openstack_api.fetch(inv, inv.nodes)
    assert snap.root is not None
    return f"{snap.root.kind}: {snap.root}"


def discovery_message(inv: Any) -> str:
    with pytest.raises(DiscoveryError) as e:
        openstack_lister(inv, PROJECT)
    return str(e.value)


def remediation_message(inv: Any) -> str:
    with pytest.raises(ActionFailed) as e:
        OpenStack(inv).state(vm_node(inv))
    return str(e.value)


ENTRIES: dict[str, Callable[[Any], str]] = {"snapshot": snapshot_message, "discovery": discovery_message,
                                            "remediation": remediation_message}


def one_clean_line(message: str) -> None:
    assert "\n" not in message and PASSWORD not in message and TOKEN not in message, message


@pytest.mark.parametrize("entry", ENTRIES)
def test_keystone_redirecting_the_password_post_sends_it_nowhere(servers, tmp_path, entry):
    """A 307 keeps the method and the body: followed, it would post the clouds.yaml password to the other origin."""
    elsewhere = servers(lambda h, s: h.reply(201, {"token": {}}, {"X-Subject-Token": TOKEN}))
    inv, ks, _ = cloud_of(servers, tmp_path, tokens=lambda h, s: h.reply(
        307, b"", {"Location": f"{elsewhere.url}/v3/auth/tokens"}))
    message = ENTRIES[entry](inv)
    assert elsewhere.seen == []
    posts = [s.method for s in ks.seen if s.path == "/v3/auth/tokens"]  # once per project, not again
    assert posts == ["POST"] * (2 if entry == "snapshot" else 1), posts
    assert f"POST /v3/auth/tokens answered 307, a redirect to '{elsewhere.url}/v3/auth/tokens'" in message, message
    assert entry != "snapshot" or message.startswith("redirect: ")
    one_clean_line(message)


@pytest.mark.parametrize("entry", ENTRIES)
def test_compute_redirect_sends_no_token_anywhere(servers, tmp_path, entry):
    elsewhere = servers(lambda h, s: h.reply(200, {"servers": []}))
    inv, _, compute = cloud_of(servers, tmp_path, lambda h, s: h.reply(
        302, b"", {"Location": f"{elsewhere.url}{s.path}"}))
    message = ENTRIES[entry](inv)
    assert elsewhere.seen == []
    assert any(s.headers.get("x-auth-token") == TOKEN for s in compute.seen)  # Nova itself was asked
    assert "answered 302, a redirect to" in message and elsewhere.url in message, message
    one_clean_line(message)


def trickle(h: Handler, seen: Seen) -> None:
    """Headers at once, then one byte a second (a read timeout per socket read never fires)."""
    h.send_response(201)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "100000")
    h.send_header("X-Subject-Token", TOKEN)
    h.end_headers()
    for _ in range(60):
        try:
            h.wfile.write(b" ")
            h.wfile.flush()
        except OSError:
            return
        time.sleep(1)


def within(seconds: float, fn: Callable[[], str]) -> tuple[str, float]:
    """``fn()``'s message and how long it took; a failure (not a hung test run) when it does not end in time."""
    out: list[str] = []
    start = time.monotonic()
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert out, f"still running after {seconds:g} s"
    return out[0], time.monotonic() - start


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_trickling_keystone_ends_at_the_deadline(servers, tmp_path, entry):
    # the snapshot and discovery: apis.deadline_s (3 s) under a 30 s request timeout; remediation: its request
    # timeout (apis.openstack.timeout_s, 3 s), the whole request's time and not one socket read's
    slow = {"deadline_s": 30, "timeout_s": 3} if entry == "remediation" else {"deadline_s": 3, "timeout_s": 30}
    inv, _, _ = cloud_of(servers, tmp_path, tokens=trickle, **slow)
    message, elapsed = within(20, lambda: ENTRIES[entry](inv))
    assert elapsed < 3 + 3, (elapsed, message)
    assert any(w in message for w in ("no complete answer within", "did not finish answering within",
                                      "did not answer within the deadline of 3 s")), message
    one_clean_line(message)


@pytest.mark.parametrize("entry", ["snapshot", "discovery"])
def test_a_listing_larger_than_the_cap_is_cut_while_it_streams(servers, tmp_path, entry):
    sent: list[int] = []  # bytes each listing got out before the suite hung up

    def flood(h: Handler, seen: Seen) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()  # no Content-Length: the body ends when the connection closes
        count, chunk = 0, b" " * (1 << 20)
        try:
            h.wfile.write(b'{"servers": [')
            for _ in range(256):  # 256 MiB, 16 times the cap
                h.wfile.write(chunk)
                count += len(chunk)
        except OSError:
            pass
        sent.append(count)
        h.close_connection = True

    inv, _, _ = cloud_of(servers, tmp_path, flood)
    message, _ = within(60, lambda: ENTRIES[entry](inv))
    assert "larger than the suite reads" in message, message
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sent and max(sent) < 4 * transport.MAX_BODY, sent  # the cap and the sockets' buffers, not 256 MiB


@pytest.mark.parametrize("setting", ["verify: false", "insecure: true"])
def test_remediation_refuses_a_cloud_without_tls_verification_as_reads_do(tmp_path, monkeypatch, setting):
    monkeypatch.delenv(openstack_cloud.INSECURE_VAR, raising=False)
    path = clouds_yaml(tmp_path, "https://127.0.0.1:9/v3", setting)
    inv = inventory(apis(openstack=OpenStackSettings(cloud="test", remediation_cloud="test", clouds_yaml=path)))
    with pytest.raises(ApiError) as read:
        openstack_cloud.select_cloud(inv)
    assert read.value.kind == "config" and "turns TLS verification off" in str(read.value)
    acted = remediation_message(inv)
    assert str(read.value) in acted and openstack_cloud.INSECURE_VAR in acted, acted
    assert str(read.value) in snapshot_message(inv) and str(read.value) in discovery_message(inv)
    one_clean_line(acted)


def test_one_cloud_selection_for_reads_discovery_and_remediation(tmp_path):
    settings = OpenStackSettings(cloud="reader", remediation_cloud="member", clouds_yaml=tmp_path / "none.yaml")
    inv = inventory(apis(openstack=settings))
    choose = openstack_cloud._choose
    assert choose(inv, "vm", False, None, {}) == ("reader", None, "apis.openstack.cloud")
    assert choose(inv, "vm", True, None, {}) == ("member", None, "apis.openstack.remediation_cloud")
    assert choose(inv, "metal", True, "Racks", {})[:2] == ("member", "Racks")
    assert choose(inv, "metal", False, None, {})[:2] == ("reader", openstack_cloud.PHYSICAL_PROJECT)
    assert choose(inventory(apis()), "vm", True, None, {"OS_CLOUD": "env"})[:2] == ("env", None)
    metal = inventory(apis(openstack=OpenStackSettings(cloud="reader", cloud_metal="racks")))
    assert choose(metal, "metal", True, "Racks", {})[:2] == ("racks", None)


def test_a_keystone_refusing_its_version_document_cannot_hang_discovery(servers, tmp_path):
    """A 401 to ``GET /v3`` makes keystoneauth ask for a token while it holds its plugin's lock: it waits on itself
    for ever, which no socket deadline ends; discovery stops waiting at its deadline."""
    ks = servers(lambda h, s: h.reply(401, {"error": {"code": 401, "message": "The request you have made requires "
                                                      "authentication."}}))
    inv = inventory(apis(openstack=OpenStackSettings(cloud="test", clouds_yaml=clouds_yaml(tmp_path, f"{ks.url}/v3"),
                                                     timeout_s=30), deadline_s=3))
    message, elapsed = within(20, lambda: discovery_message(inv))
    assert elapsed < 3 + 3 and "did not answer within the deadline of 3 s" in message, (elapsed, message)
    one_clean_line(message)


def test_the_run_timeout_watches_discovery_too(servers, tmp_path):
    """Discovery runs before the checks: a trickling Keystone under a long apis.deadline_s is still ended by
    --run-timeout (exit 2, interrupted), the watchdog being installed before anything touches the network."""
    import os
    import subprocess
    import sys

    _, ks, _ = cloud_of(servers, tmp_path, tokens=trickle)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(f"""\
        cluster: t
        nodes:
          masters: [{{name: alimesos01, address: 127.0.0.1}}]
        discovery:
          openstack: [{{project: "{PROJECT}", role: agent, kind: vm, pattern: "alibuild*"}}]
        apis:
          openstack: {{cloud: test, clouds_yaml: {tmp_path / 'clouds.yaml'}, timeout_s: 120}}
          deadline_s: 120
        """))
    root = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--inventory={inventory}", "--run-timeout=3",
                           f"--report-dir={tmp_path / 'out'}", "-p", "no:cacheprovider", str(root / "checks")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(root)})
    took = time.monotonic() - started
    assert any(s.path == "/v3/auth/tokens" for s in ks.seen)  # discovery was under way
    assert proc.returncode == 2 and took < 20, (proc.returncode, took, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "interrupted during discovery" in proc.stderr and PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize("entry", ENTRIES)
def test_a_link_to_another_origin_gets_no_token(servers, tmp_path, entry):
    """Nova's paging ``next`` (a full URL) pointing elsewhere: the token is not sent there; the answer is an error
    naming the link."""
    elsewhere = servers(lambda h, s: h.reply(200, {"servers": []}))

    def paging(h: Handler, seen: Seen) -> None:
        if seen.path.startswith("/v2.1/servers/") and "detail" not in seen.path:
            h.reply(404, {"itemNotFound": {"code": 404, "message": "not found"}})  # find_server by id first
            return
        page = {**SERVER, "name": "alibuild08", "id": "9f3b"}  # not the one asked for: the next page is read
        h.reply(200, {"servers": [page], "servers_links": [
            {"rel": "next", "href": f"{elsewhere.url}/v2.1/servers/detail?marker=9f3b"}]})

    inv, _, compute = cloud_of(servers, tmp_path, paging)
    try:
        message = ENTRIES[entry](inv)
    except BaseException as e:  # discovery and the snapshot read one page: no error is also right for them
        message = str(e)
    assert elsewhere.seen == [], [(s.method, s.path) for s in elsewhere.seen]
    if entry == "remediation":
        assert "neither Keystone's nor its catalog's" in message and elsewhere.url in message, message
        one_clean_line(message)
