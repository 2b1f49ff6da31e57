"""Check metadata: the ``@check`` decorator and what the plugin derives from it.

A check is a pytest test function decorated with :func:`check`. The plugin collects it once per
targeted node of its roles (and, with ``each``, once per value, e.g. per unit) as an item whose id reads
``<check id>[<node>]``, e.g. ``agent.cmdline.cgroup-v1[alibuild01]``. Fixtures available to checks:
``node``, ``param`` (the ``each`` value), ``facts``, ``probe``, ``host``, ``inventory``, ``expect``.

``needs`` says what the check needs of the node: ``()`` nothing (node.ping), ``("reachable",)`` an
answer to ping (node.ssh), ``("ssh",)`` (the default) the facts over ssh. When a need is not met the
check is reported ``blocked`` by the root check (node.ping or node.ssh) instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from acceptance.inventory import Inventory, Node

Severity = Literal["critical", "major", "minor"]
Need = Literal["reachable", "ssh"]
EachSource = Callable[[Inventory, Node], Sequence[str]]
F = TypeVar("F", bound=Callable[..., Any])

CHECK_ATTR = "__acceptance_check__"


class CheckError(Exception):
    """The check could not run (missing facts, a probe that could not be tried): outcome ``error``, never a pass."""

PING_CHECK = "node.ping"
SSH_CHECK = "node.ssh"


@dataclass(frozen=True)
class CheckSpec:
    id: str  # may hold one "{name}" placeholder filled from ``each``
    runbook: str | Mapping[str, str]  # a section title, or one per role
    severity: Severity
    remediation: str | None
    roles: tuple[str, ...]
    kinds: tuple[str, ...] | None
    needs: tuple[Need, ...]
    each: tuple[str, EachSource] | None

    def applies_to(self, node: Node) -> bool:
        return node.role in self.roles and (self.kinds is None or node.kind in self.kinds)

    def params(self, inventory: Inventory, node: Node) -> list[str | None]:
        if self.each is None:
            return [None]
        return list(self.each[1](inventory, node))

    def check_id(self, param: str | None) -> str:
        if self.each is None or param is None:
            return self.id
        return self.id.replace("{" + self.each[0] + "}", param)

    def runbook_for(self, node: Node) -> str:
        return self.runbook if isinstance(self.runbook, str) else self.runbook.get(node.role, "")


def check(
    id: str,
    *,
    runbook: str | Mapping[str, str],
    severity: Severity = "major",
    remediation: str | None = None,
    roles: Sequence[str] = ("master", "agent"),
    kinds: Sequence[str] | None = None,
    needs: Sequence[Need] = ("ssh",),
    each: tuple[str, EachSource] | None = None,
) -> Callable[[F], F]:
    """Declare a check: its stable id, runbook section, severity, remediation id, roles and needs."""
    if each is not None and "{" + each[0] + "}" not in id:
        raise ValueError(f"check {id!r}: 'each' names {each[0]!r} but the id has no {{{each[0]}}} placeholder")

    def decorate(fn: F) -> F:
        setattr(fn, CHECK_ATTR, CheckSpec(id=id, runbook=runbook, severity=severity, remediation=remediation,
                                          roles=tuple(roles), kinds=tuple(kinds) if kinds else None,
                                          needs=tuple(needs), each=each))
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
            ("severity", self.spec.severity),
            ("runbook", self.spec.runbook_for(self.node)),
            ("remediation", self.spec.remediation or ""),
        ]
