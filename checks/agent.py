"""Agents (alibuildNN VMs, alimetalNN bare metal): kernel command line, builder image, /build."""

from __future__ import annotations

from typing import Any

from acceptance.checkspec import check
from acceptance.inventory import Expectations
from acceptance.outcomes import CheckError
from acceptance.parsers import image_repository, parse_df
from acceptance.redaction import clip
from remediation.fixtures import pull_builder_image, reboot_for_cmdline

RUNBOOK = "Creating a agent"
GIB = 1024**3


@check("agent.cmdline.cgroup-v1", runbook=RUNBOOK, severity="critical", remediation=reboot_for_cmdline,
       roles=["agent"])
def test_cmdline(host: Any, expect: Expectations) -> None:
    tokens = host.file("/proc/cmdline").content_string.split()
    missing = [arg for arg in expect.kernel_args if arg not in tokens]
    assert not missing, f"/proc/cmdline lacks {' '.join(missing)} (reboot to apply the boot configuration)"


@check("agent.image.builder", runbook=RUNBOOK, severity="major", remediation=pull_builder_image, roles=["agent"])
def test_builder_image(host: Any, expect: Expectations) -> None:
    repo = image_repository(expect.builder_image)
    listed = host.run("docker images --format %s -- %s", "{{.Repository}}:{{.Tag}}", repo)
    if listed.rc != 0:  # docker does not answer: its unit check says so; this one cannot tell
        raise CheckError(f"cannot list docker images: {clip((listed.stderr or listed.stdout).strip(), 200)}")
    tags = [line.strip() for line in listed.stdout.splitlines() if line.strip().startswith(repo + ":")]
    assert tags, f"{repo} is not present (docker pull {expect.builder_image})"


@check("agent.build.mounted", runbook=RUNBOOK, severity="critical", roles=["agent"], kinds=["vm"])
def test_build_mounted(host: Any, expect: Expectations) -> None:
    assert host.mount_point(expect.build_mount).exists, (
        f"{expect.build_mount} is not a mount point (the vdb volume is not mounted there)"
    )


def _digits(gib: float) -> int:
    return 0 if gib >= 10 else 1


@check("agent.build.free", runbook=RUNBOOK, severity="major", roles=["agent"])
def test_build_free(host: Any, expect: Expectations) -> None:
    df = host.run("df -B1 --output=avail,size -- %s", expect.build_mount)
    assert df.rc == 0, f"cannot stat {expect.build_mount}: {clip(df.stderr.strip(), 200)}"
    space = parse_df(df.stdout)
    free_gib = space.avail / GIB
    assert free_gib >= expect.build_min_free_gib, (
        f"{expect.build_mount} has {free_gib:.{_digits(free_gib)}f} GiB free of "
        f"{space.size / GIB:.{_digits(space.size / GIB)}f} GiB, "
        f"less than {expect.build_min_free_gib:g} GiB"
    )
