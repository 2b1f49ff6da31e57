"""The cluster snapshots against real local HTTP servers that answer as the APIs document (healthy), and the
cluster checks on them: every check passes on a healthy cluster (except where the test says otherwise)."""

from __future__ import annotations

import pytest

from .test_api_support import MASTERS, answer_every_name, fake_cluster, run_checks, snapshots_of


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    answer_every_name(monkeypatch)


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
