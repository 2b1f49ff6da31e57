"""Vault (or OpenBao): ``/v1/sys/health`` and ``/v1/sys/leader`` on every master (no token needed), and
``/v1/sys/ha-status`` through VAULT_ADDR (a token that may read ``sys/ha-status``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import shapes
from acceptance.clients.call import Caller, master_part, parse_answer
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, check_status, classify
from acceptance.clients.libraries import LibClient
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode, attempt
from acceptance.inventory import Node

# /v1/sys/health status codes (vault/sys_health_*.json; OpenBao has no 472/473)
HEALTH_CODES = {200: "active", 429: "standby", 472: "dr-secondary", 473: "performance-standby",
                501: "not initialised", 503: "sealed"}


@dataclass(frozen=True)
class Health:
    status: int
    initialized: bool
    sealed: bool
    standby: bool


@dataclass(frozen=True)
class Leader:
    ha_enabled: bool
    leader_address: str


@dataclass(frozen=True)
class HaNode:
    hostname: str
    active: bool


@dataclass(frozen=True)
class MasterVault:
    health: Health
    leader: Leader | ApiError


class VaultSnapshot(ApiSnapshot):
    api = "vault"
    masters = Part[PerNode[MasterVault]]()
    ha_status = Part[list[HaNode]]()

    TOKEN_PARTS = ("ha_status",)


def parse_health(status: int) -> Callable[[Any], Health]:
    def parse(data: Any) -> Health:
        body = shapes.obj(data, "the body")
        shapes.numbers(body, "the body", ("server_time_utc", "echo_duration_ms", "clock_skew_ms"))
        health = Health(status=status, initialized=shapes.boolean(body, "initialized", "the body"),
                        sealed=shapes.boolean(body, "sealed", "the body"),
                        standby=shapes.boolean(body, "standby", "the body", default=False))
        if status == 200 and (health.sealed or not health.initialized):
            raise shapes.ShapeError(f"status 200 (active) contradicts the body (initialized={health.initialized}, "
                                    f"sealed={health.sealed})")
        return health
    return parse


def parse_leader(data: Any) -> Leader:
    body = shapes.obj(data, "the body")
    shapes.numbers(body, "the body", ("raft_committed_index", "raft_applied_index"))
    return Leader(ha_enabled=shapes.boolean(body, "ha_enabled", "the body"),
                  leader_address=shapes.string(body, "leader_address", "the body", default=""))


def parse_ha_status(data: Any) -> list[HaNode]:
    """``Nodes`` (as documented), ``nodes`` or ``data.nodes`` (as OpenBao also answers)."""
    body = shapes.obj(data, "the body")
    key = next((k for k in ("Nodes", "nodes") if k in body), None)
    nodes = body[key] if key else shapes.key(shapes.obj(shapes.key(body, "data", "the body"), "data"), "nodes", "data")
    return shapes.records(nodes, lambda n, w: HaNode(hostname=shapes.string(n, "hostname", w),
                                                     active=shapes.boolean(n, "active_node", w)), numeric=())


def _probe(cfg: ApiConfig, client: LibClient, timeout: Callable[[], float]) -> MasterVault:
    answer = client.get("/v1/sys/health", timeout(), ok=tuple(HEALTH_CODES),
                        call=lambda v: v.sys.read_health_status(method="GET"))
    check_status(cfg, answer, tuple(HEALTH_CODES))
    health = parse_answer(cfg, answer, parse_health(answer.status))
    try:
        answer = client.get("/v1/sys/leader", timeout(), call=lambda v: v.sys.read_leader_status())
        check_status(cfg, answer)
        leader: Leader | ApiError = parse_answer(cfg, answer, parse_leader)
    except Exception as e:  # classify() makes one line of it (an ApiError as it is)
        leader = classify(cfg, client.url, "/v1/sys/leader", e, cfg.timeout_s)
    return MasterVault(health, leader)


def fetch(cfg: ApiConfig, masters: Sequence[Node], caller: Caller | None = None) -> VaultSnapshot:
    if cfg.problem:
        return VaultSnapshot.unusable(ApiError("config", cfg.problem))
    snap = VaultSnapshot()
    caller = caller or Caller(cfg)
    masters_part = master_part(cfg, masters, caller.deadline, _probe)
    snap.masters = masters_part
    # hvac has no ha-status method: its adapter's generic get
    snap.ha_status = attempt(lambda: caller.read("/v1/sys/ha-status", parse_ha_status,
                                                 right='read on path "sys/ha-status"',
                                                 call=lambda v: v.adapter.get("/v1/sys/ha-status")))
    snap.url = caller.url
    errors = [v for v in masters_part.values.values() if isinstance(v, ApiError)]
    if masters and len(errors) == len(masters) and all(e.unreachable for e in errors):
        snap.root = errors[0]  # no master's Vault answers
    snap.decide_root(VaultSnapshot.TOKEN_PARTS)
    return snap
