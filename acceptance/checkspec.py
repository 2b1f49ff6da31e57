"""Check metadata: the ``@check`` decorator and what the plugin derives from it.

A check is a pytest test function decorated with :func:`check`, written with testinfra's ``host``::

    @check("agent.image.builder", runbook="Creating a agent", severity="major", remediation=pull_builder_image,
           roles=["agent"])
    def test_builder_image(host, expect):
        ...

The plugin collects it once per targeted node of its roles (and, with ``each``, once per value, e.g. per
unit) as an item whose id reads ``<check id>[<node>]``, e.g. ``agent.cmdline.cgroup-v1[alibuild01]``. The id
may hold ``{role}`` and the ``each`` placeholder: ``{role}.units.{unit}`` gives ``master.units.docker``.
Fixtures for checks: ``host`` (testinfra), ``node``, ``param`` (the ``each`` value), ``inventory``,
``expect``, ``all_nodes``, ``ssh_result`` and ``ping_result`` (the root checks'), the API snapshots.

``needs`` says what the check needs of the node: ``()`` nothing (node.ping), ``("reachable",)`` an answer to
ping (node.ssh), ``("ssh",)`` (the default) a working ssh connection. When a need is not met the check is
reported ``blocked`` by the root check (node.ping or node.ssh) instead of failing.

``remediation`` names the fix: a remediation fixture (the function object, so that a typo fails at import)
or its name; operators may override the fixture in their conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import pytest

from acceptance.inventory import Inventory, Node

Severity = Literal["critical", "major", "minor"]
Need = Literal["reachable", "ssh"]
EachSource = Callable[[Inventory, Node], Sequence[str]]
F = TypeVar("F", bound=Callable[..., Any])

CHECK_ATTR = "__acceptance_check__"


def fixture_name(remediation: object) -> str | None:
    """The fixture name of a remediation given as a fixture function or as a name."""
    if remediation is None or isinstance(remediation, str):
        return remediation
    name = getattr(remediation, "name", None) or getattr(remediation, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"remediation {remediation!r} is neither a fixture nor a fixture name")
    return name


@dataclass(frozen=True)
class CheckSpec:
    id: str  # may hold "{role}" and the "each" placeholder
    runbook: str | Mapping[str, str]  # a section title, or one per role
    severity: Severity
    remediation: str | None  # the remediation fixture's name
    roles: tuple[str, ...]
    kinds: tuple[str, ...] | None
    needs: tuple[Need, ...]
    each: tuple[str, EachSource] | None
    gate: bool = False  # a reason to say no before a rebuild: collected only by --gate, on the gated node

    def applies_to(self, node: Node) -> bool:
        return node.role in self.roles and (self.kinds is None or node.kind in self.kinds)

    def params(self, inventory: Inventory, node: Node) -> list[str | None]:
        if self.each is None:
            return [None]
        return list(self.each[1](inventory, node))

    def check_id(self, node: Node, param: str | None) -> str:
        text = self.id.replace("{role}", node.role)
        if self.each is not None and param is not None:
            text = text.replace("{" + self.each[0] + "}", param)
        return text

    def runbook_for(self, node: Node) -> str:
        return self.runbook if isinstance(self.runbook, str) else self.runbook.get(node.role, "")


def check(
    id: str,
    *,
    runbook: str | Mapping[str, str],
    severity: Severity = "major",
    remediation: object = None,
    roles: Sequence[str] = ("master", "agent"),
    kinds: Sequence[str] | None = None,
    needs: Sequence[Need] = ("ssh",),
    each: tuple[str, EachSource] | None = None,
    gate: bool = False,
) -> Callable[[F], F]:
    """Declare a check: its stable id, runbook section, severity, remediation, roles and needs."""
    if each is not None and "{" + each[0] + "}" not in id:
        raise ValueError(f"check {id!r}: 'each' names {each[0]!r} but the id has no {{{each[0]}}} placeholder")
    spec = CheckSpec(id=id, runbook=runbook, severity=severity, remediation=fixture_name(remediation),
                     roles=tuple(roles), kinds=tuple(kinds) if kinds else None, needs=tuple(needs), each=each,
                     gate=gate)

    def decorate(fn: F) -> F:
        setattr(fn, CHECK_ATTR, spec)
        if spec.remediation:  # requested at setup (a factory: nothing runs unless the check fails and the run asks)
            marks = list(getattr(fn, "pytestmark", []))
            setattr(fn, "pytestmark", [*marks, pytest.mark.usefixtures(spec.remediation)])  # noqa: B010
        return fn

    return decorate


def spec_of(obj: object) -> CheckSpec | None:
    spec = getattr(obj, CHECK_ATTR, None)
    return spec if isinstance(spec, CheckSpec) else None


@dataclass(frozen=True)
class CheckItem:
    """One check on one node: what the plugin stores on each collected item."""

    spec: CheckSpec
    check_id: str
    node: Node
    param: str | None

    @property
    def test_id(self) -> str:
        return f"{self.check_id}[{self.node.name}]"

    def properties(self) -> list[tuple[str, str]]:
        """The item's static user_properties (JUnit, pytest-html, and the summary via xdist)."""
        return [
            ("check", self.check_id),
            ("node", self.node.name),
            ("role", self.node.role),
            ("kind", self.node.kind or ""),
            ("severity", self.spec.severity),
            ("runbook", self.spec.runbook_for(self.node)),
            ("remediation", self.spec.remediation or ""),
        ]
