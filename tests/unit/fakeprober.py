"""A fake prober (no network): canned ping results and facts-script outputs per node.

In-process: ``plugins=[FakeProberPlugin(spec)]``. In a subprocess (xdist workers too):
``-p <this module>`` with ``ACCEPTANCE_FAKE_SPEC`` naming a JSON file of the same spec:
``{node: {"ping": true|false|null, "ssh_error": str|null, "output": str|null}}``; a node not in
the spec is healthy (output built from samples for its role).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from acceptance.facts import NodeFacts
from acceptance.probe import FactsResult, ProbeResult

try:
    from . import samples
except ImportError:  # loaded with -p as a top-level module
    import samples  # type: ignore[no-redef]


class FakeProber:
    def __init__(self, spec: dict[str, dict[str, Any]]) -> None:
        self.spec = spec
        self.calls: list[tuple[str, str]] = []

    def _entry(self, node: Any) -> dict[str, Any]:
        return self.spec.get(node.name, {})

    def ping(self, node: Any) -> ProbeResult:
        self.calls.append(("ping", node.name))
        ok = self._entry(node).get("ping", True)
        if ok is None:
            return ProbeResult(ok=False, error=True, message="no 'ping' command")
        return ProbeResult(ok=bool(ok), message=f"ping {node.address}: {'ok' if ok else 'no answer within 2s'}")

    def facts(self, node: Any) -> FactsResult:
        self.calls.append(("facts", node.name))
        entry = self._entry(node)
        if entry.get("ssh_error"):
            return FactsResult(ProbeResult(ok=False, message=f"ssh root@{node.address}: {entry['ssh_error']}"))
        output = entry.get("output")
        if output is None:
            output = samples.master_output() if node.role == "master" else samples.agent_output()
        return FactsResult(ProbeResult(ok=True, message="ok"), NodeFacts.parse(output))

    def host(self, node: Any) -> Any:
        raise RuntimeError("no testinfra host in unit tests")

    def close(self) -> None:
        pass


class FakeProberPlugin:
    """``snapshots``: the API snapshots (name -> Snapshot) the cluster checks see; without it, the cluster
    checks (checks/cluster_*.py) are not collected, so that no test reaches a network."""

    def __init__(self, spec: dict[str, dict[str, Any]], snapshots: dict[str, Any] | None = None) -> None:
        self.prober = FakeProber(spec)
        self.snapshots = snapshots

    def pytest_acceptance_make_prober(self, config: Any, inventory: Any, control_dir: Path) -> FakeProber:
        return self.prober

    def pytest_acceptance_make_snapshots(self, config: Any, run: Any) -> Any:
        from acceptance.clients.snapshot import Snapshots

        snaps = self.snapshots or {}
        return Snapshots({name: (lambda s=snap: s) for name, snap in snaps.items()})

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        if self.snapshots is None:
            items[:] = [i for i in items if not Path(str(i.path)).name.startswith("cluster_")]


def pytest_acceptance_make_prober(config: Any, inventory: Any, control_dir: Path) -> FakeProber | None:
    path = os.environ.get("ACCEPTANCE_FAKE_SPEC")
    if not path:
        return None
    return FakeProber(json.loads(Path(path).read_text()))


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """As a -p module (subprocess runs): no cluster checks, no network."""
    if os.environ.get("ACCEPTANCE_FAKE_SPEC"):
        items[:] = [i for i in items if not Path(str(i.path)).name.startswith("cluster_")]
