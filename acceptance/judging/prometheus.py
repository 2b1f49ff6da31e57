"""What the Prometheus checks judge: health probes, scrape targets, the remote_write queues."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence

from acceptance.clients.prometheus_api import Q_HIGHEST, MasterHealth, Target, Vector
from acceptance.clients.transport import excerpt
from acceptance.hosts import same_host
from acceptance.inventory import Node


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

