"""Hooks the plugin adds to pytest."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_acceptance_make_nodes(config: pytest.Config, run: Any) -> Any:
    """Return the object that pings the nodes and answers their testinfra commands
    (acceptance.transport.nodes.Nodes) for this process.

    The plugin's own implementation (the system ping and ssh) runs last; a conftest or plugin may return
    another one (the plugin's own tests give Nodes a fake ssh).
    """


@pytest.hookspec(firstresult=True)
def pytest_acceptance_make_snapshots(config: pytest.Config, run: Any) -> Any:
    """Return the registry of API snapshots (see acceptance.apiregistry.Snapshots) of this process.

    The plugin's own implementation (the real APIs, from the inventory and the environment) runs last; a
    conftest or plugin may return another one (tests use fakes).
    """


@pytest.hookspec
def pytest_acceptance_refresh(item: pytest.Item, name: str, value: Any) -> None:
    """Before ``item`` is checked again after a remediation (remediation/recheck.py, through pytest itself, its
    fixtures set up anew): clear what fixture ``name`` would answer from this run's caches (the node's answers,
    ping and connection, an API snapshot), so that its next setup reads again. ``value`` is always None; every
    implementation is called, and what they return is ignored."""


@pytest.hookspec
def pytest_acceptance_forget_snapshots(config: pytest.Config) -> None:
    """Forget this process's API snapshots: the next use fetches them again (a converging run's next round)."""


@pytest.hookspec
def pytest_acceptance_converge_progress(elapsed_s: float, timeout_s: float, waiting: dict[str, list[str]]) -> None:
    """After each round of a converging run (--converge-timeout): per node, the checks still waited for."""
