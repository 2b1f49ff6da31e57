"""Prometheus' HTTP API (requests): /-/healthy and /-/ready on every master, the active targets and the
remote_write queue metrics (as Prometheus 2.42 exposes them) through ``apis.prometheus``."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig, master_urls
from acceptance.clients.errors import ApiError, check_response, classify
from acceptance.clients.snapshot import Snapshot
from acceptance.inventory import Node

Q_FAILED = "rate(prometheus_remote_storage_samples_failed_total[2m])"
Q_RETRIED = "rate(prometheus_remote_storage_samples_retried_total[2m])"
Q_HIGHEST = "prometheus_remote_storage_highest_timestamp_in_seconds"
Q_SENT = "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"


@dataclass
class Http:
    """A requests session aimed at one base URL; verify, cert and timeout are passed on every request."""

    cfg: ApiConfig
    url: str
    session: requests.Session

    def get(self, path: str, params: Mapping[str, str] | None = None) -> requests.Response:
        return self.session.get(self.url + path, params=params, verify=self.cfg.verify, cert=self.cfg.client_cert,
                                timeout=self.cfg.timeout, allow_redirects=False)

    def json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        response = self.get(path, params)
        check_response(self.cfg, self.url, path, response)
        try:
            data = response.json()
        except ValueError:
            raise ApiError("protocol", f"Prometheus at {self.url}: GET {path}: not JSON") from None
        if not isinstance(data, dict) or data.get("status") != "success":
            raise ApiError("protocol", f"Prometheus at {self.url}: GET {path}: "
                                       f"{(data or {}).get('error', 'status is not success')}")
        return data.get("data")


def make_client(cfg: ApiConfig, url: str) -> Http:
    return Http(cfg, url.rstrip("/"), requests.Session())


def _probe(cfg: ApiConfig, url: str) -> dict[str, Any]:
    """/-/healthy and /-/ready of one Prometheus: status and text, or the error."""
    one = cfg.for_url(url)
    http = make_client(one, url)
    out: dict[str, Any] = {"url": url}
    for part in ("healthy", "ready"):
        try:
            response = http.get(f"/-/{part}")
            out[part] = {"status": response.status_code, "text": response.text.strip()[:200]}
        except Exception as e:  # classify() makes one line of it
            out["error"] = classify(one, url, f"/-/{part}", e)
            break
    return out


def query(path_params: str) -> tuple[str, dict[str, str]]:
    return "/api/v1/query", {"query": path_params}


def fetch(cfg: ApiConfig, masters: Sequence[Node], caller: Caller[Http] | None = None) -> Snapshot:
    snap = Snapshot(api="prometheus")
    if cfg.problem:
        snap.root = ApiError("config", cfg.problem)
        return snap
    urls = master_urls(cfg.url, list(masters), 9090)
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        probes = list(pool.map(lambda u: _probe(cfg, u), urls))
    for master, probe in zip(masters, probes, strict=True):
        snap.parts[f"url:{master.name}"] = probe["url"]
        if "error" in probe:
            snap.errors[f"health:{master.name}"] = probe["error"]
        else:
            snap.parts[f"health:{master.name}"] = {"healthy": probe["healthy"], "ready": probe["ready"]}
    caller = caller or Caller(cfg, lambda url: make_client(cfg, url))
    snap.fetch("targets", lambda: caller.get("/api/v1/targets", lambda c: c.json("/api/v1/targets",
                                                                                 {"state": "active"})))
    for part, promql in (("rw_failed", Q_FAILED), ("rw_retried", Q_RETRIED), ("rw_highest", Q_HIGHEST),
                         ("rw_sent", Q_SENT)):
        snap.fetch(part, lambda q=promql: caller.get("/api/v1/query", lambda c: c.json(*query(q))))  # type: ignore[misc]
    snap.url = caller.url
    snap.set_root_from("targets")
    return snap


# --------------------------------------------------------------------------- pure functions


def health_problems(health: Mapping[str, Any]) -> list[str]:
    problems = []
    for part in ("healthy", "ready"):
        got = health.get(part) or {}
        if got.get("status") != 200:
            problems.append(f"/-/{part} answered {got.get('status')} {got.get('text', '')}".strip())
    return problems


def _host(instance: str) -> str:
    if "://" in instance:
        return urllib.parse.urlsplit(instance).hostname or instance
    host = instance.rsplit(":", 1)[0] if instance.count(":") == 1 or instance.endswith("]") else instance
    return host.strip("[]")


def targets_of(targets: Iterable[Mapping[str, Any]], node: Node) -> list[Mapping[str, Any]]:
    """The targets of an inventory node: label ``node`` equal to its name, else the instance's host is its
    address, its name or its name's FQDN."""
    out = []
    for t in targets:
        labels = t.get("labels") or {}
        if "node" in labels:
            if labels["node"] == node.name:
                out.append(t)
            continue
        host = _host(str(labels.get("instance", "")))
        if host and (host == node.address or host == node.name or host.startswith(node.name + ".")):
            out.append(t)
    return out


def _describe(t: Mapping[str, Any]) -> str:
    labels = t.get("labels") or {}
    error = str(t.get("lastError") or "").strip()
    return f"{labels.get('job')}/{labels.get('instance')} {t.get('health')}" + (f" ({error[:80]})" if error else "")


def targets_problems(data: Mapping[str, Any], jobs: Sequence[str], nodes: Sequence[Node]) -> list[str]:
    targets = list(data.get("activeTargets") or [])
    problems = []
    for job in jobs:
        mine = [t for t in targets if (t.get("labels") or {}).get("job") == job]
        if not mine:
            problems.append(f"no target of job {job!r}")
        problems += [_describe(t) for t in mine if t.get("health") != "up"]
    seen = {p for p in problems}
    for node in nodes:
        mine = targets_of(targets, node)
        if not mine:
            problems.append(f"{node.name}: not scraped (no target with node={node.name} or its address)")
        for t in mine:
            text = _describe(t)
            if t.get("health") != "up" and text not in seen:
                seen.add(text)
                problems.append(text)
    return problems


def _vector(data: Mapping[str, Any] | None) -> list[tuple[dict[str, str], float]]:
    out = []
    for r in (data or {}).get("result") or []:
        try:
            out.append((dict(r.get("metric") or {}), float(r["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return out


def remote_write_problems(failed: Mapping[str, Any] | None, highest: Mapping[str, Any] | None,
                          sent: Mapping[str, Any] | None, max_lag_s: float,
                          retried: Mapping[str, Any] | None = None) -> list[str]:
    """Per remote_write queue: no sample failed over 2 m, and the newest sample sent is at most ``max_lag_s``
    behind the newest sample ingested (Prometheus 2.42: ``highest_timestamp_in_seconds`` has no queue labels)."""
    queues = _vector(sent)
    if not queues:
        return ["no remote_write queue reports prometheus_remote_storage_queue_highest_sent_timestamp_seconds "
                "(remote_write not configured, or Prometheus does not scrape itself)"]
    newest = max((v for _, v in _vector(highest)), default=None)
    failing = {(m.get("remote_name"), m.get("url")): v for m, v in _vector(failed)}
    retrying = {(m.get("remote_name"), m.get("url")): v for m, v in _vector(retried)}
    problems = []
    for labels, sent_ts in queues:
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
