"""Hooks the plugin adds to pytest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_acceptance_make_prober(config: pytest.Config, inventory: Any, control_dir: Path) -> Any:
    """Return the object that pings nodes and gathers their facts (see acceptance.probe.ProberProtocol).

    The plugin's own implementation (ssh, one connection per node) runs last; a conftest or plugin may
    return another one (tests use a fake).
    """


@pytest.hookspec(firstresult=True)
def pytest_acceptance_make_snapshots(config: pytest.Config, run: Any) -> Any:
    """Return the registry of API snapshots (see acceptance.clients.snapshot.Snapshots) of this process.

    The plugin's own implementation (the real APIs, from the inventory and the environment) runs last; a
    conftest or plugin may return another one (tests use fakes).
    """
