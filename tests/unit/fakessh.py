"""A fake ssh for the suite's own tests: every node answers what the lab's nodes really answered
(tests/unit/data/answers.json, recorded by `python -m tests.lab.record_answers`), with per-node changes.

In-process: ``plugins=[FakeNodes(spec)]``. In a subprocess (xdist workers too): ``-p tests.unit.fakessh`` with
``ACCEPTANCE_FAKE_SPEC`` naming a JSON file of the same spec::

    {node: {"ping": true | false | null,        # null: ping cannot be tried (error)
            "ssh_error": "ssh's last stderr line",  # the connection fails with it
            "answers": {command: [rc, stdout, stderr]},  # replaces the recorded answer
            "drop": [command, ...]}}               # no answer (output cut short)

A command nobody recorded answers ``default`` (a function of the command) or exit status 127.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acceptance.inventory import Node, SshSettings
from acceptance.transport.batch import Answer
from acceptance.transport.nodes import Nodes
from acceptance.transport.ping import ProbeResult
from acceptance.transport.ssh import BatchResult, Counters, SshResult, classify_failure

ANSWERS: dict[str, dict[str, list[Any]]] = json.loads((Path(__file__).parent / "data" / "answers.json").read_text())
Default = Callable[[str], Answer | None]


def recorded(node: Node) -> dict[str, list[Any]]:
    key = "master" if node.role == "master" else f"agent-{node.kind or 'vm'}"
    return ANSWERS.get(key, {})


def replace_property(command_output: str, **props: str) -> str:
    """A recorded `systemctl show` output with some properties changed."""
    lines = command_output.splitlines()
    for key, value in props.items():
        lines = [f"{key}={value}" if line.startswith(f"{key}=") else line for line in lines]
    return "\n".join(lines) + "\n"


class FakeSsh:
    """The interface of acceptance.transport.ssh.Ssh, answered from the spec."""

    def __init__(self, spec: dict[str, dict[str, Any]], default: Default | None = None) -> None:
        self.spec = spec
        self.default = default
        self.settings = SshSettings()
        self.counters: dict[str, Counters] = {}
        self.batches: list[tuple[str, list[str]]] = []

    def run(self, node: Node, commands: list[str], live: bool = False) -> BatchResult:
        entry = self.spec.get(node.name, {})
        counters = self.counters.setdefault(node.name, Counters())
        counters.connections = 1
        counters.round_trips += 1
        self.batches.append((node.name, list(commands)))
        if entry.get("ssh_error"):
            return BatchResult(classify_failure(f"ssh root@{node.address}", entry["ssh_error"]))
        answers: dict[int, Answer] = {}
        for i, command in enumerate(commands):
            if command in entry.get("drop", ()):
                continue
            raw = entry.get("answers", {}).get(command) or recorded(node).get(command)
            answer = Answer(int(raw[0]), raw[1].encode(), raw[2].encode()) if raw else None
            if answer is None and self.default is not None:
                answer = self.default(command)
            answers[i] = answer or Answer(127, b"", f"sh: {command}: not recorded\n".encode())
        counters.commands += len(answers)
        counters.live_commands += len(answers) if live else 0
        missing = len(commands) - len(answers)
        return BatchResult(SshResult(True, "ok"), answers, f"{missing} answers missing" if missing else None)

    def close(self) -> None:
        pass


def fake_ping(spec: dict[str, dict[str, Any]], nodes: list[Node]) -> Callable[[str], ProbeResult]:
    by_address = {n.address or n.name: n.name for n in nodes}

    def ping(address: str) -> ProbeResult:
        ok = spec.get(by_address.get(address, address), {}).get("ping", True)
        if ok is None:
            return ProbeResult(ok=False, error=True, message="ping: no 'ping' command")
        return ProbeResult(ok=bool(ok), message=f"ping {address}: {'ok' if ok else 'no answer within 2s'}")

    return ping


class FakeNodes:
    """A pytest plugin giving the run a Nodes on the fake ssh; ``snapshots``: the API snapshots the cluster
    checks see (without them, the cluster checks are not collected, so no test reaches a network)."""

    def __init__(self, spec: dict[str, dict[str, Any]] | None = None, default: Default | None = None,
                 snapshots: dict[str, Any] | None = None) -> None:
        self.ssh = FakeSsh(spec or {}, default)
        self.snapshots = snapshots

    def pytest_acceptance_make_nodes(self, config: Any, run: Any) -> Nodes:
        return Nodes(run.scope.inventory, run.connections.control_dir,
                     ping=fake_ping(self.ssh.spec, run.scope.all_nodes), ssh=self.ssh)  # type: ignore[arg-type]

    def pytest_acceptance_make_snapshots(self, config: Any, run: Any) -> Any:
        from acceptance.apiregistry import Snapshots

        snaps = self.snapshots or {}
        return Snapshots({name: (lambda s=snap: s) for name, snap in snaps.items()})

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        if self.snapshots is None:
            items[:] = [i for i in items if not Path(str(i.path)).name.startswith("cluster_")]


_plugin: FakeNodes | None = None


def _from_env() -> FakeNodes | None:
    global _plugin
    path = os.environ.get("ACCEPTANCE_FAKE_SPEC")
    if path and _plugin is None:
        _plugin = FakeNodes(json.loads(Path(path).read_text()), default=lambda c: Answer(0, f"{c}\n".encode(), b""))
    return _plugin


def pytest_acceptance_make_nodes(config: Any, run: Any) -> Nodes | None:
    plugin = _from_env()
    return plugin.pytest_acceptance_make_nodes(config, run) if plugin else None


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    """As a -p module (subprocess runs): no cluster checks, no network."""
    if _from_env() is not None:
        items[:] = [i for i in items if not Path(str(i.path)).name.startswith("cluster_")]
