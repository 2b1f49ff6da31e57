"""Helpers for the suite's unit tests: inventories in tmp_path, the suite run in-process on a fake ssh."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .fakessh import FakeNodes

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = """\
cluster: alicelab
ssh:
  user: root
  config: ssh_config
  known_hosts: known_hosts
  identity: id_ed25519
  connect_timeout_s: 10
apis:
  tls: {ca: ca.pem, cert: client.pem, key: client-key.pem}
  nomad: {address: "https://172.30.0.11:4646"}
  consul: {address: "https://172.30.0.11:8500", dns: "172.30.0.11:8600"}
  vault: {address: "https://172.30.0.11:8200"}
  prometheus: {address: "http://172.30.0.11:9090"}
  openstack: {cloud: alicelab, clouds_yaml: clouds.yaml}
nodes:
  masters:
    - {name: alimesos01, address: 172.30.0.11, az: cern-geneva-a}
  agents:
    - {name: alibuild01, address: 172.30.1.1, kind: vm}
    - {name: alibuild02, address: 172.30.1.2, kind: vm}
    - {name: alimetal01, address: 172.30.1.3, kind: metal}
maintenance:
  - {node: alibuild02, reason: "disk swap INC0123", until: 2099-12-31}
"""

FILES = ("ssh_config", "known_hosts", "id_ed25519", "ca.pem", "client.pem", "client-key.pem", "clouds.yaml")


def make_site(pytester: pytest.Pytester, checks: dict[str, str]) -> dict[str, Any]:
    """A site for a pytester run: the example inventory and the files it names, and a directory of the site's own
    checks (``checks``: file name -> source)."""
    for name in FILES:
        pytester.path.joinpath(name).write_text("")
    inventory = pytester.path / "inventory.yaml"
    inventory.write_text(textwrap.dedent(EXAMPLE))
    folder = pytester.mkdir("site-checks")
    for name, source in checks.items():
        (folder / name).write_text(source)
    return {"inventory": inventory, "checks": folder, "out": pytester.path / "out"}


@pytest.fixture
def write_inventory(tmp_path: Path) -> Callable[..., Path]:
    """Write an inventory (default: the lab's example) and the files it names; return its path."""

    def write(text: str = EXAMPLE, name: str = "inventory.yaml") -> Path:
        for f in FILES:
            (tmp_path / f).write_text("")
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@dataclass
class Result:
    ret: int
    out: str
    err: str

    def error_lines(self) -> list[str]:
        return [line for line in (self.out + self.err).splitlines() if line.startswith("ERROR")]


@pytest.fixture
def run_suite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Callable[..., Result]:
    """Run the checks in-process against an inventory, on the fake ssh (no network)."""

    def run(*args: str, spec: dict[str, Any] | None = None, plugin: FakeNodes | None = None) -> Result:
        plugin = plugin or FakeNodes(spec or {})
        argv = ["-p", "no:cacheprovider", "-q", f"--report-dir={tmp_path / 'out'}", *args]
        if not any(a.startswith(str(ROOT)) for a in args):
            argv.append(str(ROOT / "checks"))
        ret = pytest.main(argv, plugins=[plugin])
        out, err = capsys.readouterr()
        return Result(int(ret), out, err)

    return run
