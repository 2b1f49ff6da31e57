"""Agents (alibuildNN VMs, alimetalNN bare metal): units, kernel command line, builder image, /build."""

from __future__ import annotations

from acceptance.checkspec import check
from acceptance.facts import Mount, NodeFacts, image_repository, parse_df, parse_findmnt
from acceptance.inventory import Expectations, Inventory, Node

RUNBOOK = "Creating a agent"
GIB = 1024**3


def agent_units(inventory: Inventory, node: Node) -> list[str]:
    return list(inventory.expect.agent_units)


@check("agent.units.{unit}", runbook=RUNBOOK, severity="critical", remediation="unit.restart", roles=["agent"],
       each=("unit", agent_units))
def test_unit(facts: NodeFacts, param: str) -> None:
    unit = facts.unit(param)
    assert unit.exists and unit.active and unit.enabled, f"{unit.describe()} (expected active and enabled)"


@check("agent.cmdline.cgroup-v1", runbook=RUNBOOK, severity="critical", remediation="node.reboot-for-cmdline",
       roles=["agent"])
def test_cmdline(facts: NodeFacts, expect: Expectations) -> None:
    section = facts.section("cmdline")
    assert section.ok, f"cannot read /proc/cmdline: {section.first_line()}"
    tokens = section.text.split()
    missing = [arg for arg in expect.kernel_args if arg not in tokens]
    assert not missing, f"/proc/cmdline lacks {' '.join(missing)} (reboot to apply the boot configuration)"


@check("agent.image.builder", runbook=RUNBOOK, severity="major", remediation="image.pull", roles=["agent"])
def test_builder_image(facts: NodeFacts, expect: Expectations) -> None:
    section = facts.section("images")
    assert section.ok, f"cannot list docker images: {section.first_line()}"
    repo = image_repository(expect.builder_image)
    tags = [line.strip() for line in section.text.splitlines() if line.strip().startswith(repo + ":")]
    assert tags, f"{repo} is not present (docker pull {expect.builder_image})"


def _mount(facts: NodeFacts) -> Mount | None:
    section = facts.section("findmnt")
    return parse_findmnt(section.text) if section.ok else None


@check("agent.build.mounted", runbook=RUNBOOK, severity="critical", roles=["agent"], kinds=["vm"])
def test_build_mounted(facts: NodeFacts, expect: Expectations) -> None:
    mount = _mount(facts)
    assert mount is not None and mount.target == expect.build_mount, (
        f"{expect.build_mount} is not a mount point (the vdb volume is not mounted there)"
    )


@check("agent.build.free", runbook=RUNBOOK, severity="major", roles=["agent"])
def test_build_free(facts: NodeFacts, expect: Expectations) -> None:
    section = facts.section("df")
    assert section.ok, f"cannot stat {expect.build_mount}: {section.first_line()}"
    space = parse_df(section.text)
    if space is None:
        raise ValueError(f"unexpected df output: {section.first_line()}")
    free_gib = space.avail / GIB
    assert free_gib >= expect.build_min_free_gib, (
        f"{expect.build_mount} has {free_gib:.0f} GiB free of {space.size / GIB:.0f} GiB, "
        f"less than {expect.build_min_free_gib:g} GiB"
    )
