"""What Nomad and Consul share: raft servers as ``/v1/operator/autopilot/health`` lists them (operator:read),
and the leader and peers of ``/v1/status/*`` (no ACL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from acceptance.clients import shapes
from acceptance.clients.errors import ApiError
from acceptance.clients.transport import Answer, excerpt


@dataclass(frozen=True)
class RaftServer:
    name: str  # Nomad: "<node>.<region>"; Consul: the node name
    address: str
    voter: bool
    healthy: bool
    leader: bool
    status: str  # serf status: alive, failed, left, ...
    version: str
    id: str = ""


@dataclass(frozen=True)
class Autopilot:
    healthy: bool
    failure_tolerance: int
    servers: tuple[RaftServer, ...]


def parse_autopilot(data: Any) -> Autopilot:
    """``GET /v1/operator/autopilot/health`` (Nomad and Consul document the same body)."""
    body = shapes.obj(data, "the body")
    servers = shapes.records(body, lambda s, w: RaftServer(
        name=shapes.node_name(s, "Name", w), address=shapes.string(s, "Address", w),
        voter=shapes.boolean(s, "Voter", w), healthy=shapes.boolean(s, "Healthy", w),
        leader=shapes.boolean(s, "Leader", w), status=shapes.string(s, "SerfStatus", w, default="?"),
        version=shapes.string(s, "Version", w, default="?"), id=shapes.string(s, "ID", w, default="")),
        "Servers", ("LastTerm", "LastIndex"))
    return Autopilot(healthy=shapes.boolean(body, "Healthy", "the body"),
                     failure_tolerance=shapes.integer(body, "FailureTolerance", "the body"), servers=tuple(servers))


def autopilot_settled(answer: Answer) -> ApiError | None:
    """429 is autopilot's "some server is unhealthy", an answer listing the servers; a 429 listing none (just
    elected: ``"Servers": null``) or not JSON (a rate limit) is retried within the snapshot's deadline."""
    if answer.status != 429:
        return None
    try:
        body = json.loads(answer.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("Servers"), list):
        return None
    why = "lists no servers yet (just elected)" if isinstance(body, dict) else f"{excerpt(answer.text(), 80)}"
    return ApiError("http", f"{answer.url}: GET {answer.path} answered 429, {why}: retried until apis.retry_s",
                    status=429, retryable=True)


def leader_elected(title: str) -> Callable[[Answer], ApiError | None]:
    """An empty ``/v1/status/leader`` (no leader elected) is retried."""
    def accept(answer: Answer) -> ApiError | None:
        if answer.status == 200 and answer.body.strip() == b'""':
            return ApiError("no-leader", f"{title} at {answer.url} answers that no leader is elected "
                                         "(empty /v1/status/leader)", retryable=True)
        return None
    return accept


def parse_leader(data: Any) -> str:
    """``"ip:port"``, or ``""`` when no leader is elected."""
    leader = shapes.text(data, "the body")
    return leader if leader == "" else shapes.host_port(leader, "the leader")


def parse_peers(data: Any) -> list[str]:
    return [shapes.host_port(p, f"peers[{i}]") for i, p in enumerate(shapes.arr(data, "the body"))]
