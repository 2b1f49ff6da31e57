"""The wiring through the real plugin: ``--inventory`` loads acceptance.apifixtures, whose fixtures and whose
``pytest_acceptance_make_snapshots`` come from the API registry, and checks/cluster_apis.py's root checks; an
unusable API blocks its checks in summary.json, a healthy one lets them pass. (No network: the snapshots and the
nodes' transport are given by a plugin of this test.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from acceptance.apiregistry import Snapshots
from acceptance.transport.ping import ProbeResult

from .test_api_support import unusable_snapshots

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = """\
cluster: test
apis:
  nomad: {address: "https://127.0.0.1:4646"}
nodes:
  masters:
    - {name: alimesos01, address: 127.0.0.1}
    - {name: alimesos02, address: 127.0.0.2}
    - {name: alimesos03, address: 127.0.0.3}
  agents:
    - {name: alibuild01, address: 127.0.1.1, kind: vm}
    - {name: alibuild02, address: 127.0.1.2, kind: vm}
    - {name: alimetal01, address: 127.0.1.3, kind: metal}
"""


class FakeNodes:
    def ping(self, node: Any) -> ProbeResult:
        return ProbeResult(True, "ok")

    def ready(self, node: Any) -> Any:
        return object()

    def prepare_all(self, nodes: Any) -> None:
        pass

    def started(self, node: Any) -> bool:
        return True

    def pending(self) -> bool:
        return False

    def learned(self) -> dict[str, list[str]]:
        return {}

    def counters(self) -> dict[str, dict[str, int]]:
        return {}

    def close(self) -> None:
        pass


class ApiOnly:
    def __init__(self, snaps: dict[str, Any]) -> None:
        self.snaps = snaps

    def pytest_acceptance_make_snapshots(self, config: Any, run: Any) -> Snapshots:
        return Snapshots({name: (lambda s=s: s) for name, s in self.snaps.items()})

    def pytest_acceptance_make_nodes(self, config: Any, run: Any) -> FakeNodes:
        return FakeNodes()

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        items[:] = [i for i in items if Path(str(i.path)).name.startswith("cluster_")]


def run(tmp_path: Path, snaps: dict[str, Any]) -> dict[str, dict[str, Any]]:
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    ret = pytest.main(["-p", "no:cacheprovider", "-q", f"--inventory={inv}", f"--report-dir={tmp_path / 'out'}",
                       str(ROOT / "checks")], plugins=[ApiOnly(snaps)])
    assert ret in (0, 1)
    data = json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())
    return {f"{r['check']}[{r['node']}]": r for r in data["records"]}


def test_unusable_apis_are_blocked_through_the_plugin(tmp_path):
    rec = run(tmp_path, unusable_snapshots("127.0.0.1"))
    assert rec["api.nomad.reachable[cluster]"]["outcome"] == "failed"
    assert rec["api.consul.reachable[cluster]"]["outcome"] == "error"
    assert "set CONSUL_CACERT" in rec["api.consul.reachable[cluster]"]["message"]
    assert rec["cluster.nomad.leader[cluster]"]["outcome"] == "blocked"
    assert rec["cluster.nomad.leader[cluster]"]["blocked_by"] == "api.nomad.reachable"
    assert rec["agent.nomad.ready[alibuild01]"]["outcome"] == "blocked"
    assert rec["master.vault.unsealed[alimesos01]"]["outcome"] == "blocked"
    assert rec["api.openstack.reachable[cluster]"]["outcome"] == "passed"
    assert rec["node.openstack.active[alimesos01]"]["outcome"] == "passed"
    not_openstack = [r for k, r in rec.items() if "openstack" not in k]
    assert not_openstack and not [r for r in not_openstack if r["outcome"] == "passed"]
