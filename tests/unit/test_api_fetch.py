"""The cluster snapshots against real local HTTP servers that answer as the APIs document (healthy), and the
cluster checks on them: every check passes on a healthy cluster (except where the test says otherwise)."""

from __future__ import annotations

from typing import Any

import pytest

from acceptance.clients import consul_api, registry
from acceptance.clients.consul_api import DnsAnswer

from .test_api_support import MASTERS, apis, cluster, fake_cluster, inventory, openstack_snapshot, run_checks


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consul DNS answers every name (no DNS server in unit tests)."""
    def resolve(names: Any, server: Any, timeout_s: float = 4.0, deadline: Any = None) -> dict[str, DnsAnswer]:
        return {n: DnsAnswer(n, ("127.0.0.1",)) for n in names}

    monkeypatch.setattr(consul_api, "resolve", resolve)


def snapshots_of(fakes: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
    inv = inventory(apis(nomad=fakes.nomad.url(), consul=fakes.consul.url(), vault=fakes.vault.url(),
                         prometheus=fakes.prometheus.url(), **kw))
    c = cluster(inv)
    snaps = {spec.name: spec.fetch(c) for spec in registry.APIS if spec.name != "openstack"}
    snaps["openstack"] = openstack_snapshot()
    return snaps, inv


def test_healthy_cluster_every_check_passes():
    with fake_cluster() as fakes:
        snaps, inv = snapshots_of(fakes)
    assert all(s.root is None for s in snaps.values()), {k: s.root for k, s in snaps.items()}
    results = run_checks(snaps, inv)
    not_passed = {k: r for k, r in results.items() if r.outcome != "passed"}
    assert not not_passed, not_passed
    assert "cluster.nomad.peers[cluster]" in results and "master.vault.unsealed[alimesos02]" in results
    assert "api.nomad.reachable[cluster]" in results and len(MASTERS) == 3


def test_nomad_namespace_is_sent(monkeypatch):
    monkeypatch.setenv("NOMAD_NAMESPACE", "ci")
    with fake_cluster() as fakes:
        snaps, _ = snapshots_of(fakes)
        sent = [p for p, _ in fakes.nomad.requests() if p.startswith(("/v1/jobs", "/v1/allocations"))]
    assert sent and all("namespace=ci" in p for p in sent)
    assert snaps["nomad"].namespace == "ci"


def test_default_namespace_is_default(monkeypatch):
    monkeypatch.delenv("NOMAD_NAMESPACE", raising=False)
    with fake_cluster() as fakes:
        snapshots_of(fakes)
        sent = [p for p, _ in fakes.nomad.requests() if p.startswith(("/v1/jobs", "/v1/allocations"))]
    assert sent and all("namespace=default" in p for p in sent)
