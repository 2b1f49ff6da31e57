"""The remediation fixtures: a check names its fix (``@check(..., remediation=restart_unit)``), the plugin
requests the fixture when the check is set up, and the engine runs the action only after the check failed and
only under the guardrails. Each is a factory: it returns the :class:`~remediation.model.Action`, it never acts.

Operators may override any of them in their own ``conftest.py`` (a fixture of the same name), or call them in
their own tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from acceptance.fixtures import item_info
from acceptance.inventory import Expectations, Node
from remediation import actions, confirm
from remediation.clients import Api, write_config
from remediation.cloud import OpenStack
from remediation.context import RemediationRun, remediation_of
from remediation.drains import Nomad
from remediation.model import Action, Progress

CONFIRM_SOURCES = ("ping", "ssh", "nomad", "openstack")
# what must agree per failing check: a node whose ping answers but whose sshd hangs is down for ssh only; a
# server in ERROR is OpenStack's to say
CONFIRM_FOR = {"node.ssh": ("ssh", "nomad", "openstack"), "node.openstack.active": ("openstack",)}
ESCALATION = ("reboot_node", "hard_reboot")  # restart -> reboot -> hard reboot -> a human (agents only)


def wait_node(run: RemediationRun) -> actions.WaitNode:
    """After a reboot: the node answers ping and ssh again (a fresh connection)."""

    def wait(node: Node, progress: Progress) -> str:
        assert run.connections.nodes is not None
        nodes = run.connections.nodes

        def ssh_again() -> bool:
            nodes.reset(node)  # a new master connection each try: the old one died with the node
            return nodes.session(node).connect().ok

        progress.wait(f"{node.name} to answer ping", lambda: nodes.ping(node, fresh=True).ok, 300, 3)
        progress.wait(f"{node.name} to accept ssh", ssh_again, 300, 3)
        return f"{node.name} answers ping and ssh"

    return wait


def cloud(run: RemediationRun) -> OpenStack:
    return OpenStack(run.scope.inventory)


def confirm_down(run: RemediationRun, node: Node, need: tuple[str, ...] = CONFIRM_SOURCES) -> Callable[[], str | None]:
    """Before a reboot for an unreachable node, as FBAR does: several pings and a fresh ssh from here, Nomad's
    view of the node and OpenStack's state must agree (every source in ``need``) that it is down."""

    def ask() -> str | None:
        if run.connections.nodes is None:
            return "cannot probe the node again (no transport in this process)"
        masters = [n for n in run.scope.all_nodes if n.role == "master"]
        nomad = Nomad(Api(write_config("nomad", run.scope.inventory, masters)))
        evidence = [*confirm.reprobe(node, run.connections.nodes), confirm.nomad_view(node, nomad.node),
                    confirm.cloud_view(node, cloud(run))]
        return confirm.confirmed(evidence, need=need)

    return ask


@pytest.fixture
def restart_unit(live_host: Any, node: Node, param: str) -> Action:
    action = actions.restart_unit(node, live_host, param)
    action.escalation = ESCALATION if node.role == "agent" else ()  # a master is never rebooted automatically
    return action


@pytest.fixture
def restart_prometheus(live_host: Any, node: Node) -> Action:
    return actions.restart_unit(node, live_host, "prometheus")


@pytest.fixture
def restart_backup(live_host: Any, node: Node, expect: Expectations) -> Action:
    return actions.restart_backup(node, live_host, expect)


@pytest.fixture
def pull_builder_image(live_host: Any, node: Node, expect: Expectations) -> Action:
    return actions.pull_image(node, live_host, expect.builder_image)


@pytest.fixture
def rerun_puppet(live_host: Any, node: Node, expect: Expectations) -> Action:
    return actions.rerun_puppet(node, live_host, expect)


@pytest.fixture
def reboot_for_cmdline(request: pytest.FixtureRequest, live_host: Any, node: Node, expect: Expectations) -> Action:
    return actions.reboot_for_cmdline(node, live_host, expect, *_reboots(request))


@pytest.fixture
def hard_reboot(request: pytest.FixtureRequest, node: Node) -> Action:
    run = remediation_of(request.config)
    need = CONFIRM_FOR.get(item_info(request).check_id, CONFIRM_SOURCES)
    return actions.hard_reboot(node, *_reboots(request), confirm=confirm_down(run, node, need))


@pytest.fixture
def reenable_node(request: pytest.FixtureRequest, node: Node) -> Action:
    run = remediation_of(request.config)
    masters = [n for n in run.scope.all_nodes if n.role == "master"]
    return actions.reenable_node(node, Nomad(Api(write_config("nomad", run.scope.inventory, masters))))


@pytest.fixture
def unseal_vault(node: Node) -> Action:
    return actions.needs_human("unseal_vault", node, f"Vault on {node.name} is sealed: unsealing needs the key "
                                                     "holders (vault operator unseal), the suite never holds keys")


def _reboots(request: pytest.FixtureRequest) -> tuple[OpenStack, actions.WaitNode]:
    run = remediation_of(request.config)
    return cloud(run), wait_node(run)


def escalation_action(rung: str, run: RemediationRun, node: Node) -> Action:
    """The engine's rungs above an action whose budget is spent."""
    if rung == "reboot_node":
        return actions.reboot_node(node, cloud(run), wait_node(run))
    if rung == "hard_reboot":
        return actions.hard_reboot(node, cloud(run), wait_node(run))  # the engine re-checks the failure first
    raise ValueError(f"unknown escalation rung {rung!r}")
