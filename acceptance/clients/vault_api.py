"""Vault (or OpenBao) through hvac: /v1/sys/health and /v1/sys/leader on every master, /v1/sys/ha-status
through VAULT_ADDR; and the pure functions the checks apply to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from acceptance.clients.call import Caller
from acceptance.clients.config import ApiConfig, master_urls
from acceptance.clients.errors import ApiError, check_response, classify
from acceptance.clients.snapshot import Snapshot
from acceptance.inventory import Node

# /v1/sys/health status codes (vault/sys_health_*.json; OpenBao has no 472/473)
HEALTH_CODES = {200: "active", 429: "standby", 472: "dr-secondary", 473: "performance-standby",
                501: "not initialised", 503: "sealed"}


def make_client(cfg: ApiConfig, url: str) -> Any:
    import hvac
    import hvac.adapters  # type: ignore[import-untyped]

    # hvac passes verify, cert and timeout to every request; RawAdapter: every answer as a Response
    return hvac.Client(url=url, token=cfg.token, cert=cfg.client_cert, verify=cfg.verify, timeout=cfg.timeout,
                       adapter=hvac.adapters.RawAdapter)


def _get(cfg: ApiConfig, client: Any, url: str, path: str, ok: tuple[int, ...] = (200,)) -> Any:
    response = client.adapter.get(path, raise_exception=False)
    check_response(cfg, url, path, response, ok)
    try:
        return {"status": response.status_code, "body": response.json()}
    except ValueError:
        raise ApiError("protocol", f"Vault at {url}: GET {path}: HTTP {response.status_code}, not JSON") from None


def _per_master(cfg: ApiConfig, master: Node, url: str) -> dict[str, Any]:
    """Health and leader of one master's Vault: one attempt each (a node's answer, not the cluster's)."""
    one = cfg.for_url(url)
    out: dict[str, Any] = {"url": url}
    client = make_client(one, url)
    for part, path, ok in (("health", "/v1/sys/health", tuple(HEALTH_CODES)), ("leader", "/v1/sys/leader", (200,))):
        try:
            got = _get(one, client, url, path, ok)
            out[part] = got if part == "health" else got["body"]
        except Exception as e:  # classify() makes one line of whatever the library raised
            out[f"{part}_error"] = classify(one, url, path, e)
            if part == "health":
                break
    return out


def fetch(cfg: ApiConfig, masters: Sequence[Node], caller: Caller[Any] | None = None) -> Snapshot:
    snap = Snapshot(api="vault")
    if cfg.problem:
        snap.root = ApiError("config", cfg.problem)
        return snap
    urls = master_urls(cfg.url, list(masters), 8200)
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        results = list(pool.map(lambda mu: _per_master(cfg, *mu), zip(masters, urls, strict=True)))
    for master, result in zip(masters, results, strict=True):
        snap.parts[f"url:{master.name}"] = result["url"]
        for part in ("health", "leader"):
            if part in result:
                snap.parts[f"{part}:{master.name}"] = result[part]
            if f"{part}_error" in result:
                snap.errors[f"{part}:{master.name}"] = result[f"{part}_error"]
    caller = caller or Caller(cfg, lambda url: make_client(cfg, url))
    snap.fetch("ha_status", lambda: caller.get("/v1/sys/ha-status", lambda c: _get(cfg, c, c.url, "/v1/sys/ha-status")
                                               ["body"]))
    snap.url = caller.url
    errors = [snap.errors.get(f"health:{m.name}") for m in masters]
    if masters and all(e is not None for e in errors):
        snap.root = next(e for e in errors if e is not None)  # no master's Vault answers
    for e in errors:
        if e is not None and e.kind in ("tls", "client-cert", "config"):
            snap.root = e  # the suite's TLS settings are wrong
    if snap.root is None:
        snap.set_root_from("ha_status")
    return snap


# --------------------------------------------------------------------------- pure functions


def state(health: Mapping[str, Any]) -> str:
    """active, standby, sealed, not initialised, ... from a /v1/sys/health answer {status, body}."""
    body = health.get("body") or {}
    if body.get("initialized") is False:
        return "not initialised"
    if body.get("sealed") is True:
        return "sealed"
    status = int(health.get("status", 0))
    if status in HEALTH_CODES:
        return HEALTH_CODES[status]
    return "standby" if body.get("standby") else "active"


def initialised_problem(health: Mapping[str, Any]) -> str | None:
    body = health.get("body") or {}
    return None if body.get("initialized") is True else "Vault is not initialised"


def unsealed_problem(health: Mapping[str, Any]) -> str | None:
    body = health.get("body") or {}
    if body.get("sealed") is False:
        return None
    return "Vault is sealed (unsealing needs the key holders)"


def one_active_problems(states: Mapping[str, str]) -> list[str]:
    """Exactly one master active, every other one a standby."""
    active = sorted(m for m, s in states.items() if s == "active")
    others = sorted(f"{m} ({s})" for m, s in states.items() if s not in ("active", "standby"))
    problems = []
    if len(active) != 1:
        problems.append(f"{len(active)} active Vault nodes, expected exactly 1"
                        + (f": {', '.join(active)}" if active else ""))
    if others:
        problems.append(f"not a standby: {', '.join(others)}")
    return problems


def ha_nodes(ha_status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``Nodes`` (as documented), ``nodes`` or ``data.nodes`` (as OpenBao also answers)."""
    nodes = ha_status.get("Nodes") or ha_status.get("nodes") or (ha_status.get("data") or {}).get("nodes") or []
    return [n for n in nodes if isinstance(n, dict)]


def ha_problems(leaders: Mapping[str, Mapping[str, Any]], ha_status: Mapping[str, Any] | None,
                expected: int) -> list[str]:
    """HA enabled everywhere, every master agreeing on the active node, ha-status listing every node."""
    problems = []
    disabled = sorted(m for m, body in leaders.items() if not body.get("ha_enabled"))
    if disabled:
        problems.append(f"HA is not enabled on {', '.join(disabled)}")
    addresses = {str(body.get("leader_address", "")).rstrip("/") for body in leaders.values() if body.get("ha_enabled")}
    if len(addresses) > 1:
        problems.append(f"masters disagree on the active node: {', '.join(sorted(a or '(none)' for a in addresses))}")
    if ha_status is not None:
        nodes = ha_nodes(ha_status)
        actives = [str(n.get("hostname")) for n in nodes if n.get("active_node")]
        if len(nodes) != expected:
            problems.append(f"ha-status lists {len(nodes)} nodes, expected {expected}: "
                            f"{', '.join(str(n.get('hostname')) for n in nodes) or 'none'}")
        if len(actives) != 1:
            names = f": {', '.join(actives)}" if actives else ""
            problems.append(f"ha-status shows {len(actives)} active nodes{names}")
    return problems
