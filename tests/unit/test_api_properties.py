"""Property tests (hypothesis) over every parser and shape check of the API clients: whatever JSON (or bytes) a
server answers, a parser returns a typed value or a one-line ``protocol`` error naming the endpoint, never
another exception; numbers are finite; messages are bounded, escaped and never hold a known secret."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acceptance.clients import consul_api, nomad_api, openstack_api, prometheus_api, raft, shapes, vault_api
from acceptance.clients.call import parse_answer
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError
from acceptance.clients.transport import BodyError, excerpt, parse_json
from acceptance.judging import raft as judge_raft
from acceptance.redaction import remember

CFG = ApiConfig(name="nomad", urls=("http://x:4646",))
SECRET = "hyp0thesis-secret-token"
remember(SECRET)

PARSERS: dict[str, Callable[[Any], Any]] = {
    "nomad.leader": raft.parse_leader, "nomad.peers": raft.parse_peers, "autopilot": raft.parse_autopilot,
    "nomad.nodes": nomad_api.parse_nodes, "nomad.jobs": nomad_api.parse_jobs,
    "nomad.allocations": nomad_api.parse_allocations, "consul.members": consul_api.parse_members,
    "consul.checks": consul_api.parse_checks, "consul.services": consul_api.parse_services,
    "consul.service": consul_api.parse_service_ids, "vault.health": vault_api.parse_health(200),
    "vault.standby": vault_api.parse_health(429), "vault.leader": vault_api.parse_leader,
    "vault.ha": vault_api.parse_ha_status, "prometheus.targets": prometheus_api.parse_targets,
    "prometheus.vector": prometheus_api.parse_vector, "openstack.servers": openstack_api.parse_servers,
    "openstack.flavors": openstack_api.parse_flavors, "openstack.attachments": openstack_api.attached_devices,
}
KEYS = ["Servers", "Name", "Address", "Voter", "Healthy", "Leader", "SerfStatus", "FailureTolerance", "ID",
        "Status", "Drain", "SchedulingEligibility", "JobID", "DesiredStatus", "ClientStatus", "Tags", "role",
        "Node", "ServiceName", "Service", "consul", "initialized", "sealed", "standby", "ha_enabled", "Nodes",
        "hostname", "active_node", "status", "data", "activeTargets", "labels", "health", "resultType", "result",
        "metric", "value", "servers", "flavors", "flavor", "id", "name", "volumeAttachments", "device", "Addr",
        "addresses", "addr", "JobSummary", "Summary", "Queued", "CreateIndex", "Port", "vector", "success"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.floats(allow_nan=True),
                    st.sampled_from(["", "alive", "ready", "127.0.0.1:4647", "NaN", "1", "success", "vector",
                                     "consul", SECRET]), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)),
    max_leaves=30)


def _bytes_of(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(PARSERS)), value=json_values)
def test_every_parser_returns_a_value_or_a_protocol_error(name, value):
    from acceptance.clients.transport import Answer

    answer = Answer("http://x:4646", "/v1/endpoint", 200, {}, _bytes_of(value))
    try:
        parse_answer(CFG, answer, PARSERS[name])
    except ApiError as e:
        assert e.kind == "protocol"
        text = str(e)
        assert "GET /v1/endpoint" in text and "\n" not in text and len(text) < 800 and SECRET not in text


@given(st.binary(max_size=200))
def test_parse_json_returns_or_says_why(data):
    try:
        value = parse_json(data)
    except BodyError as e:
        assert str(e)
        return
    assert _finite_everywhere(value)


@given(st.text(max_size=300), st.integers(10, 200))
def test_excerpt_is_one_bounded_escaped_line_without_secrets(text, limit):
    out = excerpt((text + SECRET + text).encode(), limit)
    assert out.startswith("'") and out.endswith("'") and len(out) <= limit + 2
    assert SECRET not in out and out.isprintable() and "\n" not in out


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=12),
                 st.booleans(), st.none()))
def test_finite_is_finite_or_refused(value):
    try:
        number = shapes.finite(value, "x", numeric_string=True)
    except shapes.ShapeError:
        return
    assert math.isfinite(number) and not isinstance(value, bool)


@given(st.text(max_size=40))
def test_host_port_accepts_only_host_and_port(text):
    try:
        got = shapes.host_port(text, "leader")
    except shapes.ShapeError:
        return
    host, _, port = got.rpartition(":")
    assert host and port.isdigit() and 0 < int(port) < 65536 and " " not in host and "/" not in host and "@" not in host


servers = st.lists(st.fixed_dictionaries({
    "Name": st.from_regex(r"\Aalimesos0[1-9](\.global)?\Z"), "Address": st.just("10.0.0.1:4647"),
    "Voter": st.booleans(), "Healthy": st.booleans(), "Leader": st.booleans(),
    "SerfStatus": st.sampled_from(["alive", "failed", "left"]), "Version": st.sampled_from(["1.9.7", "1.9.8"])}),
    max_size=5)


@given(servers, st.integers(-1, 3), st.booleans())
def test_autopilot_round_trip_and_tolerance_never_above_autopilot(body_servers, tolerance, healthy):
    parsed = raft.parse_autopilot({"Healthy": healthy, "FailureTolerance": tolerance, "Servers": body_servers})
    assert [s.name for s in parsed.servers] == [s["Name"] for s in body_servers]
    masters = ["alimesos01", "alimesos02", "alimesos03"]
    got, detail = judge_raft.failure_tolerance(parsed, masters)
    assert got <= tolerance and got <= 1 and "quorum 2" in detail
    if not judge_raft.server_problems("Nomad", parsed, masters):  # no problem: every master a healthy voter
        for m in masters:
            assert any(judge_raft.is_named(s.name, m) and s.voter and s.healthy and s.status == "alive"
                       for s in parsed.servers)
        assert got == min(1, tolerance)


def _finite_everywhere(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite_everywhere(v) for v in value)
    if isinstance(value, dict):
        return all(_finite_everywhere(v) for v in value.values())
    return True


@given(st.text(max_size=30))
def test_names_from_an_api_are_host_names_or_refused(text):
    try:
        name = shapes.node_name({"Name": text}, "Name", "[0]")
    except shapes.ShapeError as e:
        assert "\n" not in str(e).replace("\\n", "")
        return
    assert name == text and name.isprintable() and " " not in name and "<" not in name and "\n" not in name
