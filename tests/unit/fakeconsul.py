"""An in-process fake Consul for unit tests: the KV store and sessions as the remediation lock, state and kill
switch use them, with Consul's semantics (check-and-set, acquire/release, session behaviour and TTL), on
127.0.0.1 (port 0), in daemon threads.

Use the ``fake_consul`` fixture (it also sets CONSUL_REMEDIATION_TOKEN to the fake's token); import its function
(named apart from the fixture, so that a test's argument does not redefine an import)::

    from .fakeconsul import FakeConsul, consul_inventory, fake_consul_fixture  # noqa: F401 - the fixture

    def test_x(fake_consul, write_inventory):
        inv = write_inventory(consul_inventory(fake_consul))
        fake_consul.kv["alice-acceptance/stop"] = b'{"reason": "x"}'   # a write: its ModifyIndex moves
        fake_consul.broken = "500"                                      # or "html"; None: healthy again

It works the same from a pytester test run in-process (the server lives in the outer test's process).
Attributes: ``url``, ``token`` (None: no ACLs), ``kv`` (key -> bytes, a mapping tests read and write),
``sessions`` (id -> session as /v1/session/info shows it), ``requests`` (every request seen), ``broken``;
``entry(key)`` is a key's full KV entry, ``expire(session_id)`` ends a session as its TTL would.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from .conftest import EXAMPLE

NODE = "fake-consul"
TTL_MULTIPLIER = 2  # Consul invalidates a TTL session only after twice its TTL without renewal
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
HTML = b"<html><head><title>Sign in</title></head><body>Proxy login required</body></html>"


def duration(text: str) -> float | None:
    """A Go duration ("10s", "1m30s") in seconds; None when it is not one."""
    if text in ("", "0"):
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class KV(MutableMapping[str, bytes]):
    """Key -> value bytes; a test's write is a Consul write (new ModifyIndex, the session kept)."""

    def __init__(self, consul: FakeConsul) -> None:
        self._consul = consul

    def __getitem__(self, key: str) -> bytes:
        with self._consul.lock:
            return bytes(self._consul.entries[key]["value"])

    def __setitem__(self, key: str, value: bytes | str) -> None:
        with self._consul.lock:
            self._consul.write(key, value.encode() if isinstance(value, str) else bytes(value))

    def __delitem__(self, key: str) -> None:
        with self._consul.lock:
            del self._consul.entries[key]
            self._consul.bump()

    def __iter__(self) -> Iterator[str]:
        with self._consul.lock:
            return iter(sorted(self._consul.entries))

    def __len__(self) -> int:
        return len(self._consul.entries)


@dataclass
class Reply:
    status: int
    body: bytes = b""
    kind: str = "application/json"

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(data).encode())

    @classmethod
    def text(cls, text: str, status: int) -> Reply:
        return cls(status, text.encode(), "text/plain; charset=utf-8")


@dataclass
class FakeConsul:
    token: str | None = None
    broken: str | None = None  # "500": every request answers 500 (no leader); "html": a proxy's HTML page
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> value, Session, indexes, Flags
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    index: int = 10
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.kv = KV(self)
        self.expiry: dict[str, float] = {}  # session id -> when its TTL ends it (monotonic)
        consul = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(self.command, unquote(parts.path), dict(parse_qsl(parts.query, keep_blank_values=True)),
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                reply = consul.handle(req)
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.kind)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.send_header("X-Consul-Index", str(consul.index))
                    self.end_headers()
                    self.wfile.write(reply.body)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --------------------------------------------------------------------------- what tests use

    def entry(self, key: str) -> dict[str, Any] | None:
        """The key's KV entry as Consul shows it (Value base64), None when absent."""
        with self.lock:
            self._expire_due()
            ent = self.entries.get(key)
            return self._public(key, ent) if ent else None

    def expire(self, session_id: str) -> None:
        """As if the session's TTL had run out: invalidated, its keys released or deleted."""
        with self.lock:
            self._invalidate(session_id)

    def value_json(self, key: str) -> Any:
        return json.loads(self.kv[key])

    # --------------------------------------------------------------------------- the store

    def bump(self) -> int:
        self.index += 1
        return self.index

    def write(self, key: str, value: bytes, session: str | None = None, flags: int | None = None) -> None:
        old = self.entries.get(key)
        idx = self.bump()
        self.entries[key] = {
            "value": value,
            "Session": (old or {}).get("Session", "") if session is None else session,
            "LockIndex": (old or {}).get("LockIndex", 0),
            "Flags": (old or {}).get("Flags", 0) if flags is None else flags,
            "CreateIndex": (old or {}).get("CreateIndex", idx),
            "ModifyIndex": idx,
        }

    def _public(self, key: str, ent: dict[str, Any]) -> dict[str, Any]:
        out = {"Key": key, "Value": base64.b64encode(ent["value"]).decode() if ent["value"] else None,
               "Flags": ent["Flags"], "LockIndex": ent["LockIndex"], "CreateIndex": ent["CreateIndex"],
               "ModifyIndex": ent["ModifyIndex"]}
        if ent["Session"]:
            out["Session"] = ent["Session"]
        return out

    def _invalidate(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        self.expiry.pop(sid, None)
        if session is None:
            return
        idx = self.bump()
        for key, ent in list(self.entries.items()):
            if ent["Session"] != sid:
                continue
            if session["Behavior"] == "delete":
                del self.entries[key]
            else:
                ent["Session"], ent["ModifyIndex"] = "", idx

    def _expire_due(self) -> None:
        now = time.monotonic()
        for sid in [s for s, t in self.expiry.items() if t <= now]:
            self._invalidate(sid)

    # --------------------------------------------------------------------------- the HTTP API

    def handle(self, req: Request) -> Reply:
        with self.lock:
            self.requests.append(req)
            if self.broken == "html":
                return Reply(200, HTML, "text/html")
            if self.broken:
                return Reply.text("rpc error making call: No cluster leader", 500)
            if self.token and req.headers.get("x-consul-token") != self.token:
                return Reply.text("Permission denied", 403)
            self._expire_due()
            try:
                return self._route(req)
            except (ValueError, TypeError, KeyError) as e:
                return Reply.text(f"Request decode failed: {type(e).__name__}", 400)

    def _route(self, req: Request) -> Reply:
        method, path = req.method, req.path
        if path.startswith("/v1/kv/"):
            key = path[len("/v1/kv/"):]
            handler = {"GET": self._kv_get, "PUT": self._kv_put, "DELETE": self._kv_delete}.get(method)
            return handler(key, req) if handler and key else Reply.text("Missing key name", 400)
        if path == "/v1/session/create" and method == "PUT":
            return self._session_create(req)
        for verb, action in (("PUT", "renew"), ("PUT", "destroy"), ("GET", "info")):
            prefix = f"/v1/session/{action}/"
            if path.startswith(prefix) and method == verb:
                return getattr(self, f"_session_{action}")(path[len(prefix):])
        if path == "/v1/status/leader" and method == "GET":
            return Reply.json("127.0.0.1:8300")
        return Reply.text("404 page not found", 404) if method == "GET" else Reply.text("method not allowed", 405)

    def _kv_get(self, key: str, req: Request) -> Reply:
        ent = self.entries.get(key)
        if ent is None:
            return Reply(404, b"", "text/plain")  # Consul: 404 with an empty body
        if "raw" in req.query:
            return Reply(200, ent["value"], "text/plain")
        return Reply.json([self._public(key, ent)])

    def _kv_put(self, key: str, req: Request) -> Reply:
        q = req.query
        acquire, release = q.get("acquire"), q.get("release")
        if acquire is not None and release is not None:
            return Reply.text("Conflicting flags: acquire=&release=", 400)
        ent = self.entries.get(key)
        flags = int(q["flags"]) if q.get("flags") else None
        if acquire is not None:  # as in Consul, acquire (and release) take the place of cas
            if acquire not in self.sessions:
                return Reply.text(f'invalid session "{acquire}"', 500)
            if ent and ent["Session"] and ent["Session"] != acquire:
                return Reply.json(False)
            newly = not (ent and ent["Session"] == acquire)
            self.write(key, req.body, session=acquire, flags=flags)
            self.entries[key]["LockIndex"] += 1 if newly else 0
            return Reply.json(True)
        if release is not None:
            if not ent or ent["Session"] != release:
                return Reply.json(False)
            self.write(key, req.body, session="", flags=flags)
            return Reply.json(True)
        if "cas" in q:
            cas = int(q["cas"])
            if (cas == 0 and ent is not None) or (cas != 0 and (ent is None or ent["ModifyIndex"] != cas)):
                return Reply.json(False)
        self.write(key, req.body, flags=flags)
        return Reply.json(True)

    def _kv_delete(self, key: str, req: Request) -> Reply:
        ent = self.entries.get(key)
        if "cas" in req.query and (ent is None or ent["ModifyIndex"] != int(req.query["cas"])):
            return Reply.json(False)
        if ent is not None:
            del self.entries[key]
        self.bump()
        return Reply.json(True)

    def _session_create(self, req: Request) -> Reply:
        body = req.json() or {}
        behavior = body.get("Behavior") or "release"
        if behavior not in ("release", "delete"):
            return Reply.text(f"Invalid Behavior setting '{behavior}'", 400)
        ttl_text = str(body.get("TTL") or "")
        ttl = duration(ttl_text)
        if ttl is None or (ttl and not 10 <= ttl <= 86400):
            return Reply.text(f"Invalid Session TTL '{ttl_text}', must be between [10s=24h0m0s]", 400)
        # Consul's default is the answering agent's serfHealth check, unless the request says which checks
        node_checks = body.get("NodeChecks", body.get("Checks"))
        if node_checks is None:
            node_checks = ["serfHealth"]
        idx = self.bump()
        sid = str(uuid.uuid4())
        self.sessions[sid] = {"ID": sid, "Name": body.get("Name") or "", "Node": NODE,
                              "LockDelay": body.get("LockDelay", "15s"), "Behavior": behavior, "TTL": ttl_text,
                              "NodeChecks": list(node_checks), "ServiceChecks": body.get("ServiceChecks"),
                              "CreateIndex": idx, "ModifyIndex": idx}
        if ttl:
            self.expiry[sid] = time.monotonic() + ttl * TTL_MULTIPLIER
        return Reply.json({"ID": sid})

    def _session_renew(self, sid: str) -> Reply:
        session = self.sessions.get(sid)
        if session is None:
            return Reply.text(f"Session id '{sid}' not found", 404)
        ttl = duration(session["TTL"]) or 0
        if ttl:
            self.expiry[sid] = time.monotonic() + ttl * TTL_MULTIPLIER
        return Reply.json([session])

    def _session_destroy(self, sid: str) -> Reply:
        self._invalidate(sid)
        return Reply.json(True)

    def _session_info(self, sid: str) -> Reply:
        return Reply.json([self.sessions[sid]] if sid in self.sessions else [])


def consul_apis(fake: FakeConsul) -> str:
    """The inventory's ``apis`` section with only Consul, at the fake."""
    return f'apis:\n  consul: {{address: "{fake.url}"}}\n'


def consul_inventory(fake: FakeConsul, text: str = EXAMPLE, local_masters: bool = True) -> str:
    """``text`` (default: the example inventory) with its ``apis`` section replaced by the fake Consul only;
    ``local_masters``: the masters' addresses become 127.0.0.1, .2, ... (the first is the fake), so that a failing
    fake is not retried on the masters' real addresses (each a connect timeout) but refused at once."""
    text = re.sub(r"apis:\n(  .*\n)+", "", text)
    text = text.replace("nodes:\n", consul_apis(fake) + "nodes:\n", 1)
    if local_masters:
        count = iter(range(1, 255))
        text = re.sub(r"(?m)^(\s*- \{name: alimesos\d+, address: )[^,}]+",
                      lambda m: f"{m.group(1)}127.0.0.{next(count)}", text)
    return text


@pytest.fixture(name="fake_consul")
def fake_consul_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsul]:
    """A fake Consul with ACLs on; CONSUL_REMEDIATION_TOKEN is its token for the test's duration."""
    fake = FakeConsul(token=f"fake-consul-token-{uuid.uuid4().hex}")
    monkeypatch.setenv("CONSUL_REMEDIATION_TOKEN", str(fake.token))
    try:
        yield fake
    finally:
        fake.close()
