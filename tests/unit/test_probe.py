"""The real prober: one ping and one facts round trip per node, ssh options, failure mapping."""

from __future__ import annotations

import subprocess

from acceptance import probe as probe_mod
from acceptance.inventory import load_inventory
from acceptance.probe import Prober, ProbeResult

from . import samples


def test_one_round_trip_per_node_and_ssh_options(write_inventory, tmp_path, monkeypatch):
    inv = load_inventory(write_inventory())
    prober = Prober(inv, tmp_path / "ctl")
    scripts: list[tuple[str, str]] = []
    pings: list[str] = []

    def run_script(node, script):
        scripts.append((node.name, script))
        return 0, samples.agent_output(), ""

    monkeypatch.setattr(prober.transport, "run_script", run_script)
    monkeypatch.setattr(probe_mod, "ping", lambda address: pings.append(address) or ProbeResult(ok=True))
    node = inv.node("alibuild01")
    for _ in range(5):
        assert prober.ping(node).ok
        assert prober.facts(node).facts.whoami == "root"
    assert pings == ["172.30.1.1"]
    assert [n for n, _ in scripts] == ["alibuild01"]
    opts = prober.transport.options(node)
    assert opts[:2] == ["-F", str(inv.ssh.config)]
    joined = " ".join(opts)
    for expected in ("StrictHostKeyChecking=yes", f"UserKnownHostsFile={inv.ssh.known_hosts}", "ControlMaster=auto",
                     f"ControlPath={tmp_path / 'ctl' / 'alibuild01'}", "ConnectTimeout=10", "BatchMode=yes",
                     f"-i {inv.ssh.identity}", "User=root"):
        assert expected in joined


def test_ssh_failure_and_timeout_are_connection_failures(write_inventory, tmp_path, monkeypatch):
    inv = load_inventory(write_inventory())
    prober = Prober(inv, tmp_path / "ctl")
    monkeypatch.setattr(prober.transport, "run_script",
                        lambda node, script: (255, "", "ssh: connect to host 172.30.1.1 port 22: Connection refused\n"))
    result = prober.facts(inv.node("alibuild01"))
    assert not result.connection.ok and result.facts is None
    assert result.connection.message == ("ssh root@172.30.1.1: ssh: connect to host 172.30.1.1 port 22: "
                                         "Connection refused")

    def hang(node, script):
        raise subprocess.TimeoutExpired("ssh", 130)

    monkeypatch.setattr(prober.transport, "run_script", hang)
    result = prober.facts(inv.node("alimetal01"))
    assert not result.connection.ok and "no answer within 130s" in result.connection.message
