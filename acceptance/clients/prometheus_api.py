"""Prometheus' HTTP API: ``/-/healthy`` and ``/-/ready`` on every master (their text is checked, not only the
status: an SSO page answering 200 is not a healthy Prometheus), the active targets and the remote_write queue
metrics (as Prometheus 2.42 exposes them) through ``apis.prometheus``; parsed and shape-checked."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients import shapes
from acceptance.clients.call import Caller, Client, master_part
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, protocol_error, redirect_error
from acceptance.clients.hosts import same_host
from acceptance.clients.snapshot import ApiSnapshot, Part, PerNode, attempt
from acceptance.clients.transport import excerpt
from acceptance.inventory import Node

TITLE = "Prometheus"
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
    """One of /-/healthy, /-/ready: its status and whether the text is Prometheus' own."""

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


# --------------------------------------------------------------------------- parsers


def _data(data: Any) -> Mapping[str, Any]:
    body = shapes.obj(data, "the body")
    status = shapes.string(body, "status", "the body")
    if status != "success":
        raise shapes.ShapeError(f"status is {status!r}: {shapes.describe(body.get('error'))}")
    return shapes.obj(shapes.key(body, "data", "the body"), "data")


def parse_targets(data: Any) -> list[Target]:
    out = []
    for i, t in enumerate(shapes.items(_data(data), "activeTargets", "data")):
        where = f"activeTargets[{i}]"
        shapes.numbers(t, where, ("lastScrapeDuration",))
        out.append(Target(labels=shapes.str_map(shapes.key(t, "labels", where), f"{where}.labels"),
                          health=shapes.string(t, "health", where, empty=False),
                          last_error=shapes.string(t, "lastError", where, default="")))
    return out


def parse_vector(data: Any) -> Vector:
    body = _data(data)
    kind = shapes.string(body, "resultType", "data")
    if kind != "vector":
        raise shapes.ShapeError(f"data.resultType is {kind!r}, expected 'vector'")
    out = []
    for i, r in enumerate(shapes.items(body, "result", "data")):
        where = f"result[{i}]"
        value = shapes.arr(shapes.key(r, "value", where), f"{where}.value")
        if len(value) != 2:
            raise shapes.ShapeError(f"{where}.value has {len(value)} items, expected [time, value]")
        shapes.finite(value[0], f"{where}.value[0]")
        out.append((shapes.str_map(shapes.key(r, "metric", where), f"{where}.metric"),
                    shapes.finite(value[1], f"{where}.value[1]", numeric_string=True)))
    return out


# --------------------------------------------------------------------------- fetch


def _probe(cfg: ApiConfig, client: Client, timeout: Callable[[], float]) -> MasterHealth:
    """/-/healthy and /-/ready of one Prometheus: a status that is not 200 is a finding (kept), a 200 whose
    text is not Prometheus' own is not an answer of Prometheus (protocol error)."""
    probes = {}
    for part in ("healthy", "ready"):
        answer = client.get(f"/-/{part}", timeout())
        if 300 <= answer.status < 400:
            raise redirect_error(cfg, answer)
        text = answer.text().strip()
        if answer.status == 200 and not _TEXT[part].match(text):
            raise protocol_error(cfg, answer, client.url, f"/-/{part}", "is not Prometheus' own text")
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


# --------------------------------------------------------------------------- pure functions


def health_problems(health: MasterHealth) -> list[str]:
    problems = []
    for part, probe in (("healthy", health.healthy), ("ready", health.ready)):
        if probe.status != 200:
            problems.append(f"/-/{part} answered {probe.status} {probe.text}".strip())
    return problems


def _host(instance: str) -> str:
    if "://" in instance:
        return urllib.parse.urlsplit(instance).hostname or instance
    host = instance.rsplit(":", 1)[0] if instance.count(":") == 1 or instance.endswith("]") else instance
    return host.strip("[]")


def targets_of(targets: Iterable[Target], node: Node) -> list[Target]:
    """The targets of an inventory node: label ``node`` equal to its name, else the instance's host is its
    address, its name or its name's FQDN."""
    out = []
    for t in targets:
        if "node" in t.labels:
            if t.labels["node"] == node.name:
                out.append(t)
            continue
        host = _host(t.labels.get("instance", ""))
        if host and (host == node.name or host.startswith(node.name + ".")
                     or same_host(host, node.address or node.name)):
            out.append(t)
    return out


def _describe(t: Target) -> str:
    error = t.last_error.strip()
    return (f"{t.labels.get('job')}/{t.labels.get('instance')} {t.health}"
            + (f" ({excerpt(error, 80)[1:-1]})" if error else ""))


def targets_problems(targets: Sequence[Target], jobs: Sequence[str], nodes: Sequence[Node]) -> list[str]:
    problems = []
    for job in jobs:
        mine = [t for t in targets if t.labels.get("job") == job]
        if not mine:
            problems.append(f"no target of job {job!r}")
        problems += [_describe(t) for t in mine if t.health != "up"]
    seen = set(problems)
    for node in nodes:
        mine = targets_of(targets, node)
        if not mine:
            problems.append(f"{node.name}: not scraped (no target with node={node.name} or its address)")
        for t in mine:
            text = _describe(t)
            if t.health != "up" and text not in seen:
                seen.add(text)
                problems.append(text)
    return problems


def remote_write_problems(failed: Vector, highest: Vector, sent: Vector, max_lag_s: float,
                          retried: Vector | None = None) -> list[str]:
    """Per remote_write queue: no sample failed over 2 m, and the newest sample sent is at most ``max_lag_s``
    behind the newest sample ingested (Prometheus 2.42: ``highest_timestamp_in_seconds`` has no queue labels)."""
    if not sent:
        return ["no remote_write queue reports prometheus_remote_storage_queue_highest_sent_timestamp_seconds "
                "(remote_write not configured, or Prometheus does not scrape itself)"]
    newest = max((v for _, v in highest), default=None)
    failing = {(m.get("remote_name"), m.get("url")): v for m, v in failed}
    retrying = {(m.get("remote_name"), m.get("url")): v for m, v in retried or []}
    problems = []
    for labels, sent_ts in sent:
        key = (labels.get("remote_name"), labels.get("url"))
        name = labels.get("url") or labels.get("remote_name") or "?"
        if failing.get(key, 0) > 0:
            problems.append(f"{name}: {failing[key]:.2f} samples/s failing")
        if newest is not None:
            lag = newest - sent_ts
            if lag > max_lag_s:
                retry = f", {retrying[key]:.1f} samples/s retried" if retrying.get(key, 0) > 0 else ""
                problems.append(f"{name}: {lag:.0f} s behind (limit {max_lag_s:g} s{retry})")
    if newest is None:
        problems.append(f"no {Q_HIGHEST} sample: cannot tell the remote_write lag")
    return problems
