"""A unit's fix by its class (issue 17, 3): a running unit is never restarted; a master's nomad and consul start
only under the lock and the quorum gate, an agent's docker only after a drain, a master's vault never; the
class is re-read right before acting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from acceptance.inventory import Node
from remediation.actions import restart_unit
from remediation.model import NeedsHuman, Progress, Refused

MASTER = Node("alimesos01", "master", address="127.0.0.1")
AGENT = Node("alibuild01", "agent", address="127.0.1.1", kind="vm")


@dataclass
class Result:
    rc: int = 0
    stdout: str = ""
    stderr: str = ""


@dataclass
class FakeHost:
    """A node's systemd as testinfra's host shows it: ``units`` name -> (ActiveState, UnitFileState)."""

    units: dict[str, tuple[str, str]]
    ran: list[str] = field(default_factory=list)

    def service(self, name: str) -> Any:
        host = self

        class Service:
            @property
            def systemd_properties(self) -> dict[str, str]:
                if name not in host.units:
                    return {"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"}
                active, enabled = host.units[name]
                return {"LoadState": "loaded", "ActiveState": active, "SubState": "running" if active == "active"
                        else "dead", "UnitFileState": enabled}

        return Service()

    def run(self, command: str, *args: str) -> Result:
        line = command % args
        self.ran.append(line)
        verb, dashes, unit = line.split()[1:4]
        assert dashes == "--", line  # the unit after '--': never where systemctl reads an option
        active, enabled = self.units[unit]
        self.units[unit] = ("active" if verb == "start" else active, "enabled" if verb == "enable" else enabled)
        return Result()


def chosen(node: Node, host: FakeHost, unit: str) -> Any:
    action = restart_unit(node, host, unit)
    assert action.resolve is not None
    return action.resolve()


def test_a_running_but_disabled_unit_is_enabled_never_restarted() -> None:
    host = FakeHost({"consul": ("active", "disabled")})
    action = chosen(MASTER, host, "consul")
    assert action.name == "enable_unit" and not action.gates and not action.disruptive
    action.do(Progress())
    assert host.ran == ["systemctl enable -- consul"]


def test_a_running_and_enabled_unit_is_left_alone() -> None:
    host = FakeHost({"docker": ("active", "enabled")})
    assert "nothing to do" in chosen(AGENT, host, "docker").do(Progress()) and host.ran == []


@pytest.mark.parametrize(("node", "unit", "gates", "disruptive"), [
    (MASTER, "consul", ("lock", "quorum"), False),
    (MASTER, "nomad", ("lock", "quorum"), False),
    (AGENT, "docker", ("lock", "workload"), True),
    (AGENT, "nomad", (), False),
    (MASTER, "dsmcad", (), False),
])
def test_a_stopped_unit_is_started_under_its_class_gates(node: Node, unit: str, gates: tuple[str, ...],
                                                         disruptive: bool) -> None:
    host = FakeHost({unit: ("failed", "enabled")})
    action = chosen(node, host, unit)
    assert (action.name, action.gates, action.disruptive) == ("start_unit", gates, disruptive)
    action.do(Progress())
    assert host.ran == [f"systemctl start -- {unit}"]


def test_a_masters_vault_goes_to_a_human() -> None:
    host = FakeHost({"vault": ("inactive", "enabled")})
    with pytest.raises(NeedsHuman, match="sealed"):
        chosen(MASTER, host, "vault").do(Progress())
    assert host.ran == []


def test_a_unit_that_is_not_installed_goes_to_a_human() -> None:
    with pytest.raises(NeedsHuman, match="not installed"):
        chosen(AGENT, FakeHost({}), "docker").do(Progress())


def test_the_class_is_read_again_right_before_acting() -> None:
    host = FakeHost({"consul": ("inactive", "enabled")})
    action = chosen(MASTER, host, "consul")
    host.units["consul"] = ("active", "enabled")  # someone started it meanwhile
    with pytest.raises(Refused, match="runs again"):
        action.do(Progress())
    host.units["consul"] = ("active", "disabled")
    enable = chosen(MASTER, host, "consul")
    host.units["consul"] = ("inactive", "disabled")  # it stopped meanwhile: enabling is no longer the fix
    with pytest.raises(Refused, match="stopped since the check"):
        enable.do(Progress())
    assert host.ran == []


@pytest.mark.parametrize(("node", "unit", "gates"), [
    (MASTER, "nomad.service", ("lock", "quorum")), (MASTER, "consul.service", ("lock", "quorum")),
    (AGENT, "docker.service", ("lock", "workload"))])
def test_a_unit_named_with_its_suffix_keeps_its_class(node: Node, unit: str, gates: tuple[str, ...]) -> None:
    """'nomad.service' is nomad: the inventory accepts both spellings, the gates must not depend on which."""
    action = chosen(node, FakeHost({unit: ("failed", "enabled")}), unit)
    assert (action.name, action.gates) == ("start_unit", gates)


def test_a_masters_vault_named_with_its_suffix_goes_to_a_human() -> None:
    host = FakeHost({"vault.service": ("inactive", "enabled")})
    with pytest.raises(NeedsHuman, match="sealed"):
        chosen(MASTER, host, "vault.service").do(Progress())
    assert host.ran == []


@pytest.mark.parametrize("unit", ["--host=evil", "-H", "a;reboot", "getty@.service", "docker*", ""])
def test_a_unit_the_inventory_would_refuse_never_reaches_the_node(unit: str) -> None:
    """An Expectations or a param built in Python (a site's conftest): refused before even 'systemctl show'."""
    host = FakeHost({unit: ("failed", "enabled")})
    host.service = lambda name: pytest.fail(f"systemctl show {name!r} ran")  # type: ignore[method-assign]
    action = restart_unit(MASTER, host, unit)
    assert action.state() == ""
    with pytest.raises(Refused, match="not passed to systemctl"):
        (action.resolve() if action.resolve else action).do(Progress())
    assert host.ran == []
