"""The Docker engine, through its CLI: every call with a timeout and a readable error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..polling import wait_until


class LabError(RuntimeError):
    """Something the lab could not do; the message says what and what to try."""


def docker(*args: str, timeout: float = 120, check: bool = True, input: bytes | None = None) -> str:  # noqa: A002
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, timeout=timeout, check=False, input=input)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"docker {args[0]} timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise LabError(f"docker {' '.join(args[:3])}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


def inspect(name: str) -> dict[str, Any] | None:
    out = docker("inspect", "--type", "container", name, check=False, timeout=30)
    data = json.loads(out or "[]")
    return data[0] if data else None


def image_exists(tag: str) -> bool:
    return bool(docker("images", "-q", tag, timeout=30).strip())


def node_exec(name: str, script: str, timeout: float = 60, check: bool = True) -> str:
    """Runs a shell script inside a node (lab-side actions only: faults and provisioning)."""
    return docker("exec", name, "sh", "-c", script, timeout=timeout, check=check)


def ensure_engine() -> None:
    """Starts dockerd (Debian's docker.io) when no engine answers."""
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0:
        return
    if not shutil.which("dockerd"):
        raise LabError("no Docker engine: install Debian's docker.io (apt-get install docker.io)")
    log = open("/var/log/alicelab-dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True, env=os.environ.copy())
    wait_until(lambda: subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0,
               timeout=60, interval=1, what="dockerd to start (see /var/log/alicelab-dockerd.log)", error=LabError)


def _cgroup_memory(cid: str) -> float | None:
    """Bytes in use by a container, page cache left out (as `docker stats` counts): cgroup v1, then v2."""
    for folder, usage, stat, inactive in (
        (Path("/sys/fs/cgroup/memory/docker") / cid, "memory.usage_in_bytes", "memory.stat", "total_inactive_file"),
        (Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope"), "memory.current", "memory.stat", "inactive_file"),
    ):
        try:
            used = int((folder / usage).read_text())
            stats = dict(line.split() for line in (folder / stat).read_text().splitlines())
        except OSError:
            continue
        return used - int(stats.get(inactive, 0))
    return None


def memory_mib() -> dict[str, float]:
    """Memory in use per running container, read from its cgroup."""
    usage = {}
    for row in docker("ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}", timeout=60).splitlines():
        cid, name = row.split()
        used = _cgroup_memory(cid)
        if used is not None:
            usage[name] = used / 2**20
    return usage
