"""Record what the lab's nodes answer to the node checks' commands, for the unit tests' fake ssh
(tests/unit/data/answers.json): `python -m tests.lab.record_answers` with the lab up. One master, one VM
agent and the metal agent; the answers are real, their clock (`date`) is recorded with them, so ages stay
consistent whenever the tests run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .cluster import env as lab_env
from .topology import REPO, STATE

OUT = REPO / "tests" / "unit" / "data" / "answers.json"
NODES = {"alimesos01": "master", "alibuild01": "agent-vm", "alimetal01": "agent-metal"}


class Dump:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from acceptance.run import get_run

        run = get_run(session.config)
        assert run is not None and run.connections.nodes is not None
        for name, key in NODES.items():
            cache = run.connections.nodes.session(next(n for n in run.scope.targets if n.name == name)).cache
            self.data[key] = {cmd: [a.rc, a.stdout.decode(), a.stderr.decode()] for cmd, a in sorted(cache.items())}


def main() -> int:
    if "--in-process" not in sys.argv:
        return subprocess.run([sys.executable, "-m", "tests.lab.record_answers", "--in-process"], cwd=REPO,
                              env=lab_env(), check=False).returncode
    dump = Dump()
    ret = pytest.main(["-q", "-p", "no:cacheprovider", f"--inventory={STATE / 'inventory.yaml'}", "--role=master,agent",
                       f"--report-dir={STATE / 'record-out'}", "checks/node.py", "checks/master.py", "checks/agent.py"],
                      plugins=[dump])
    if ret != 0:
        print("the lab is not healthy: not recorded", file=sys.stderr)
        return 1
    OUT.write_text(json.dumps(dump.data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {sum(len(v) for v in dump.data.values())} answers in {OUT.relative_to(Path.cwd())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
