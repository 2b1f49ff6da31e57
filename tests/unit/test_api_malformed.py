"""Faults and bad input: every API answers ONE malformed thing on every endpoint (truncated JSON, an SSO login
page with 200, {}, null, a bare string, [], numbers as strings, NaN, wrong types everywhere, an empty body, a
body over the cap, a redirect). Against the resulting snapshots every cluster check runs (directly, and through
the fixtures that block on an unusable API): none may pass on a part whose endpoint answered malformed, none may
end in a bare Python exception, and each error says which endpoint answered what."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from acceptance.clients import consul_api

from .test_api_support import Reply, Route, answer_every_name, fake_cluster, run_checks, snapshots_of

SSO = (b"<!DOCTYPE html><html><head><title>CERN Single Sign-On</title></head><body><form action=\"/auth\">"
       b"</form></body></html>")
HUGE = b"[" + b"0," * (9 * 1024 * 1024) + b"0]"  # 18 MiB: over the 16 MiB cap

# the endpoints each part of each snapshot is read from
PART_PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "nomad": {"leader": ("/v1/status/leader",), "peers": ("/v1/status/peers",),
              "autopilot": ("/v1/operator/autopilot/health",), "nodes": ("/v1/nodes",), "jobs": ("/v1/jobs",),
              "allocations": ("/v1/allocations",)},
    "consul": {"leader": ("/v1/status/leader",), "peers": ("/v1/status/peers",),
               "autopilot": ("/v1/operator/autopilot/health",), "members": ("/v1/agent/members",),
               "critical": ("/v1/health/state/critical",),
               "job_services": ("/v1/catalog/services", "/v1/health/service/repo"),
               "dns": ("/v1/catalog/services", "/v1/health/service/repo")},
    "vault": {"masters": ("/v1/sys/health",), "ha_status": ("/v1/sys/ha-status",)},
    "prometheus": {"masters": ("/-/healthy", "/-/ready"), "targets": ("/api/v1/targets",),
                   "rw_failed": ("/api/v1/query",), "rw_retried": ("/api/v1/query",),
                   "rw_highest": ("/api/v1/query",), "rw_sent": ("/api/v1/query",)},
    "openstack": {},
}


def _numbers(data: Any, f: Any) -> Any:
    if isinstance(data, bool) or data is None:
        return data
    if isinstance(data, int | float):
        return f(data)
    if isinstance(data, list):
        return [_numbers(x, f) for x in data]
    if isinstance(data, dict):
        return {k: _numbers(v, f) for k, v in data.items()}
    return data


def _wrong(data: Any) -> Any:
    if isinstance(data, bool):
        return "true"
    if isinstance(data, str):
        return 12345
    if isinstance(data, int | float):
        return "1"
    if data is None:
        return "x"
    if isinstance(data, list):
        return [_wrong(x) for x in data] if data else {}
    if isinstance(data, dict):
        return {k: _wrong(v) for k, v in data.items()} if data else []
    return data


def _json_of(reply: Reply) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError:
        return None


def malformed(kind: str, reply: Reply) -> Reply:
    ct = {"Content-Type": "application/json"}
    data = _json_of(reply)
    if kind == "truncated":
        return Reply(reply.status, reply.body[: max(1, len(reply.body) // 2)], ct)
    if kind == "html":
        return Reply(200, SSO, {"Content-Type": "text/html; charset=utf-8"})
    if kind == "empty-object":
        return Reply(reply.status, b"{}", ct)
    if kind == "null":
        return Reply(reply.status, b"null", ct)
    if kind == "bare-string":
        return Reply(reply.status, b'"garbage"', ct)
    if kind == "empty-list":
        return Reply(reply.status, b"[]", ct)
    if kind == "numbers-as-strings" and data is not None:
        return Reply(reply.status, json.dumps(_numbers(data, str)).encode(), ct)
    if kind == "nan" and data is not None:
        return Reply(reply.status, json.dumps(_numbers(data, lambda x: math.nan)).encode(), ct)
    if kind == "infinity" and data is not None:
        return Reply(reply.status, json.dumps(_numbers(data, lambda x: math.inf)).encode(), ct)
    if kind == "wrong-types" and data is not None:
        return Reply(reply.status, json.dumps(_wrong(data)).encode(), ct)
    if kind == "empty-body":
        return Reply(reply.status, b"", ct)
    if kind == "huge":
        return Reply(reply.status, HUGE, ct)
    if kind == "redirect":
        return Reply(302, b"", {"Location": "http://127.0.0.1:9/login?next=/"})
    return reply


KINDS = ("truncated", "html", "empty-object", "null", "bare-string", "empty-list", "numbers-as-strings", "nan",
         "infinity", "wrong-types", "empty-body", "huge", "redirect")


def _same(a: Reply, b: Reply) -> bool:
    return (a.status, a.body, a.headers) == (b.status, b.body, b.headers)


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    answer_every_name(monkeypatch)


@pytest.mark.parametrize("kind", KINDS)
def test_no_check_passes_on_a_malformed_answer(kind):
    changed: dict[str, set[str]] = {api: set() for api in PART_PATHS}
    with fake_cluster() as fakes:
        for api, fake in fakes.all().items():
            for server in fake.servers:
                for path, route in list(server.routes.items()):
                    server.routes[path] = _transform(kind, api, path, route, changed)
        snaps, inv = snapshots_of(fakes)

    def involved(accessed: frozenset[str]) -> list[str]:
        out = []
        for item in accessed:
            api, part = item.split(".", 1)
            out += [f"{api} {p}" for p in PART_PATHS[api].get(part, ()) if p in changed[api]]
        return out

    for through_fixtures in (False, True):
        results = run_checks(snaps, inv, through_fixtures=through_fixtures)
        bare = {k: r.message for k, r in results.items() if r.outcome == "bare"}
        assert not bare, bare
        false_passes = {k: involved(r.accessed) for k, r in results.items()
                        if r.outcome == "passed" and involved(r.accessed)}
        assert not false_passes, false_passes
        for api in ("nomad", "consul", "vault", "prometheus"):
            every = {p for paths in PART_PATHS[api].values() for p in paths}
            if every <= changed[api]:  # every endpoint malformed: the API is not usable
                assert results[f"api.{api}.reachable[cluster]"].outcome == "error", (api, results[
                    f"api.{api}.reachable[cluster]"])
    # every error names the endpoint that answered
    for api, snap in snaps.items():
        for part, err in snap.errors().items():
            if err.kind == "protocol":
                assert "GET /" in str(err) and "\n" not in str(err), (api, part, str(err))
                assert len(str(err)) < 600


def _transform(kind: str, api: str, path: str, route: Route, changed: dict[str, set[str]]) -> Route:
    if isinstance(route, Reply):
        new = malformed(kind, route)
        if not _same(new, route):
            changed[api].add(path)
        return new

    def wrapped(p: str, params: Any, headers: Any) -> Reply:
        return malformed(kind, route(p, params, headers))  # type: ignore[operator]

    sample_reply = route(path, {"query": ["up"]}, {})
    if not _same(malformed(kind, sample_reply), sample_reply):
        changed[api].add(path)
    return wrapped


def test_known_false_passes_are_errors():
    """The cases the audit found: each is an error naming the endpoint, not a pass."""
    from acceptance.clients import prometheus_api, raft, vault_api
    from acceptance.clients.call import parse_answer
    from acceptance.clients.config import ApiConfig
    from acceptance.clients.errors import ApiError
    from acceptance.clients.transport import Answer

    cfg = ApiConfig(name="nomad", urls=("http://x:4646",))

    def read(body: bytes, parse: Any, path: str = "/v1/x") -> Any:
        return parse_answer(cfg, Answer("http://x:4646", path, 200, {}, body), parse)

    for body, parse in ((b'"garbage"', raft.parse_leader), (b"{}", raft.parse_autopilot),
                        (b"null", vault_api.parse_health(200)), (b"{}", vault_api.parse_health(200)),
                        (b"{}", consul_api.parse_checks),
                        (json.dumps(prometheus_api_vector("NaN")).encode(), prometheus_api.parse_vector)):
        with pytest.raises(ApiError) as e:
            read(body, parse)
        assert e.value.kind == "protocol" and "GET /v1/x" in str(e.value)


def prometheus_api_vector(value: str) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, value]}]}}
