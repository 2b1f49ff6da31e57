"""Prometheus: ``/-/healthy`` and ``/-/ready`` on every master (their text too: an SSO page answering 200 is not
a healthy Prometheus), the active targets and the remote_write queue metrics (as 2.42 exposes them)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import shapes
from acceptance.clients.call import Caller, master_part
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, check_status, protocol_error
from acceptance.clients.libraries import LibClient
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode, attempt
from acceptance.clients.transport import excerpt
from acceptance.inventory import Node

Q_FAILED = "rate(prometheus_remote_storage_samples_failed_total[2m])"
Q_RETRIED = "rate(prometheus_remote_storage_samples_retried_total[2m])"
Q_HIGHEST = "prometheus_remote_storage_highest_timestamp_in_seconds"
Q_SENT = "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"
# what Prometheus answers (reference/api/prometheus: "Prometheus Server is Healthy." since 2.55, before
# "Prometheus is Healthy."); the same for Ready
_TEXT = {"healthy": re.compile(r"^Prometheus (Server )?is Healthy\.$"),
         "ready": re.compile(r"^Prometheus (Server )?is Ready\.$")}


@dataclass(frozen=True)
class Probe:
    status: int
    text: str  # escaped, bounded excerpt


@dataclass(frozen=True)
class MasterHealth:
    healthy: Probe
    ready: Probe


@dataclass(frozen=True)
class Target:
    labels: dict[str, str]
    health: str
    last_error: str


Vector = list[tuple[dict[str, str], float]]


class PrometheusSnapshot(ApiSnapshot):
    api = "prometheus"
    masters = Part[PerNode[MasterHealth]]()
    targets = Part[list[Target]]()
    rw_failed = Part[Vector]()
    rw_retried = Part[Vector]()
    rw_highest = Part[Vector]()
    rw_sent = Part[Vector]()


def _data(data: Any) -> Mapping[str, Any]:
    body = shapes.obj(data, "the body")
    status = shapes.string(body, "status", "the body")
    if status != "success":
        raise shapes.ShapeError(f"status is {status!r}: {shapes.describe(body.get('error'))}")
    return shapes.obj(shapes.key(body, "data", "the body"), "data")


def parse_targets(data: Any) -> list[Target]:
    return shapes.records(_data(data), lambda t, w: Target(
        labels=shapes.str_map(shapes.key(t, "labels", w), f"{w}.labels"),
        health=shapes.string(t, "health", w, empty=False), last_error=shapes.string(t, "lastError", w, default="")),
        "activeTargets", ("lastScrapeDuration",))


def _sample(r: Mapping[str, Any], where: str) -> tuple[dict[str, str], float]:
    value = shapes.arr(shapes.key(r, "value", where), f"{where}.value")
    if len(value) != 2:
        raise shapes.ShapeError(f"{where}.value has {len(value)} items, expected [time, value]")
    shapes.finite(value[0], f"{where}.value[0]")
    return (shapes.str_map(shapes.key(r, "metric", where), f"{where}.metric"),
            shapes.finite(value[1], f"{where}.value[1]", numeric_string=True))


def parse_vector(data: Any) -> Vector:
    body = _data(data)
    kind = shapes.string(body, "resultType", "data")
    if kind != "vector":
        raise shapes.ShapeError(f"data.resultType is {kind!r}, expected 'vector'")
    return shapes.records(body, _sample, "result", ())


def _probe(cfg: ApiConfig, client: LibClient, timeout: Callable[[], float]) -> MasterHealth:
    """A status that is not 200 is a finding (kept); a 200 whose text is not Prometheus' own is an error."""
    probes = {}
    for part in ("healthy", "ready"):
        answer = client.get(f"/-/{part}", timeout())
        if 300 <= answer.status < 400:
            check_status(cfg, answer)
        text = answer.text().strip()
        if answer.status == 200 and not _TEXT[part].match(text):
            raise protocol_error(cfg, answer, "is not Prometheus' own text")
        probes[part] = Probe(answer.status, excerpt(text) if text else "''")
    return MasterHealth(probes["healthy"], probes["ready"])


def fetch(cfg: ApiConfig, masters: Sequence[Node], caller: Caller | None = None) -> PrometheusSnapshot:
    if cfg.problem:
        return PrometheusSnapshot.unusable(ApiError("config", cfg.problem))
    snap = PrometheusSnapshot()
    caller = caller or Caller(cfg)
    snap.masters = master_part(cfg, masters, caller.deadline, _probe)
    snap.targets = attempt(lambda: caller.read("/api/v1/targets", parse_targets, {"state": "active"}))
    for part, promql in (("rw_failed", Q_FAILED), ("rw_retried", Q_RETRIED), ("rw_highest", Q_HIGHEST),
                         ("rw_sent", Q_SENT)):
        snap.set_part(part, attempt(lambda q=promql: caller.read("/api/v1/query", parse_vector,  # type: ignore[misc]
                                                                 {"query": q})))
    snap.url = caller.url
    snap.decide_root()
    return snap
