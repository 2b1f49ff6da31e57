"""Confirming a failure before a disruptive action: ping's deadline mode, whose side an ssh failure is on, the
OpenStack state guardrail, and the agreement of independent sources (no network, no cloud: fakes)."""

from __future__ import annotations

import json
import shutil
import stat
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from acceptance.inventory import Node, SshSettings
from acceptance.redaction import remember
from acceptance.transport import ping as pinging
from acceptance.transport.ping import ProbeResult
from acceptance.transport.ssh import Ssh, SshResult, classify_failure
from remediation import cloud as cloud_module
from remediation import confirm
from remediation.cloud import OpenStack, ServerState, classify
from remediation.model import ActionFailed, Progress, Refused

from .conftest import EXAMPLE

NODE = Node(name="alibuild01", role="agent", address="172.30.1.1", kind="vm")

# --------------------------------------------------------------------------- ping: deadline mode


def fake_ping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, rc: int = 0, stderr: str = "") -> Path:
    """A ``ping`` first on PATH that prints ``stdout`` and exits ``rc``; returns the file its argv lands in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "out").write_text(stdout)
    (tmp_path / "err").write_text(stderr)
    args = tmp_path / "argv"
    script = bin_dir / "ping"
    script.write_text(f'#!/bin/sh\necho "$@" > "{args}"\ncat "{tmp_path / "out"}"\ncat "{tmp_path / "err"}" >&2\n'
                      f"exit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return args


def stats(sent: int, received: int, errors: int = 0) -> str:
    loss = 100 * (sent - received) // sent
    extra = f", +{errors} errors" if errors else ""
    return (f"\n--- 172.30.1.1 ping statistics ---\n{sent} packets transmitted, {received} received{extra}, "
            f"{loss}% packet loss, time {500 * (sent - 1)}ms\n")


def test_ping_sends_until_one_reply_or_the_deadline(tmp_path, monkeypatch):
    argv = fake_ping(tmp_path, monkeypatch, "64 bytes from 172.30.1.1: icmp_seq=1 ttl=64 time=0.3 ms\n" + stats(1, 1))
    result = pinging.ping("172.30.1.1")
    assert argv.read_text().split() == ["-c", "1", "-i", "0.5", "-w", "3", "--", "172.30.1.1"]
    assert result.ok and not result.error and result.message == "ping 172.30.1.1: answered (1 echo sent)"


def test_a_lost_echo_is_retried_not_judged(tmp_path, monkeypatch):
    fake_ping(tmp_path, monkeypatch, "64 bytes from 172.30.1.1: icmp_seq=2 ttl=64 time=0.3 ms\n" + stats(2, 1))
    result = pinging.ping("172.30.1.1")
    assert result.ok and "2 echoes sent" in result.message


def test_no_reply_within_the_deadline_is_a_verdict_saying_how_many_were_sent(tmp_path, monkeypatch):
    fake_ping(tmp_path, monkeypatch, stats(6, 0), rc=1)
    result = pinging.ping("172.30.1.1")
    assert not result.ok and not result.error
    assert result.message == "ping 172.30.1.1: no answer within 3s (6 echoes sent)"


def test_the_networks_icmp_error_is_said(tmp_path, monkeypatch):
    out = "From gw.cern.ch (172.30.1.254) icmp_seq=1 Destination Host Unreachable\n" + stats(1, 0, errors=1)
    fake_ping(tmp_path, monkeypatch, out, rc=1)
    result = pinging.ping("172.30.1.1")
    assert not result.ok and not result.error
    assert result.message == ("ping 172.30.1.1: unreachable, Destination Host Unreachable from gw.cern.ch "
                              "(172.30.1.254) (1 echo sent)")


def test_deadline_is_whole_seconds_and_other_exits_are_errors(tmp_path, monkeypatch):
    argv = fake_ping(tmp_path, monkeypatch, "", rc=2, stderr="ping: nosuch: Name or service not known\n")
    result = pinging.ping("nosuch", deadline_s=1.2)
    assert "-w 2" in argv.read_text()
    assert result.error and not result.ok and result.message == "ping nosuch: ping: nosuch: Name or service not known"


def test_without_ping_it_falls_back_to_tcp(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    called: list[tuple[str, int, float]] = []
    monkeypatch.setattr(pinging, "tcp_probe", lambda a, p, t: called.append((a, p, t)) or ProbeResult(True))
    assert pinging.ping("172.30.1.1").ok and called == [("172.30.1.1", 22, 3.0)]


# --------------------------------------------------------------------------- ssh: whose side


PROXY_TARGET_DOWN = ("channel 0: open failed: connect failed: No route to host\nstdio forwarding failed\n"
                     "kex_exchange_identification: Connection closed by remote host\n"
                     "Connection closed by UNKNOWN port 65535")
PROXY_BASTION_REFUSED = ("ssh: connect to host 127.0.0.1 port 22: Connection refused\n"  # as OpenSSH 9.2 says it
                         "kex_exchange_identification: Connection closed by remote host\n"
                         "Connection closed by UNKNOWN port 65535")


@pytest.mark.parametrize("stderr", [
    "kex_exchange_identification: read: Connection reset by peer",
    "kex_exchange_identification: Connection closed by remote host",
    "Connection closed by UNKNOWN port 65535",
    "Connection to UNKNOWN port 65535 timed out",
    "ssh_exchange_identification: read: Connection reset by peer",
    "ssh_exchange_identification: Connection closed by remote host",
    "channel 0: open failed: administratively prohibited: open failed",
    "channel 0: open failed: connect failed: Connection timed out",
    "stdio forwarding failed",
    "Connection timed out during banner exchange\nConnection to 172.30.1.1 port 22 timed out",
    "mux_client_request_session: session request failed: Session open refused by peer",
    "ControlSocket /tmp/alice-acc-x/alibuild01 already exists, disabling multiplexing",
    "muxclient: master hello exchange failed",
    PROXY_TARGET_DOWN,
    PROXY_BASTION_REFUSED,
])
def test_runner_side_ssh_failures_are_no_verdict_on_the_node(stderr):
    result = classify_failure("ssh root@172.30.1.1", stderr)
    assert not result.ok and result.runner_error and not result.config_error
    assert "the runner's or the bastion's side, not a verdict on the node" in result.message


def test_an_unreachable_bastion_is_not_the_node():
    stderr = "ssh: connect to host bastion.cern.ch port 22: Connection timed out"
    assert classify_failure("ssh root@172.30.1.1", stderr, jump_hosts=("bastion", "bastion.cern.ch")).runner_error
    assert not classify_failure("ssh root@172.30.1.1", stderr).runner_error  # no bastion: it is the node


@pytest.mark.parametrize("stderr", [
    "ssh: connect to host 172.30.1.1 port 22: Connection timed out",
    "ssh: connect to host 172.30.1.1 port 22: No route to host",
    "ssh: connect to host 172.30.1.1 port 22: Connection refused",
    # a warning about the master connection, then the node's own failure
    "ControlSocket /tmp/x/alibuild01 already exists, disabling multiplexing\n"
    "ssh: connect to host 172.30.1.1 port 22: Connection timed out",
])
def test_node_side_ssh_failures_stay_a_verdict(stderr):
    result = classify_failure("ssh root@172.30.1.1", stderr, jump_hosts=("bastion.cern.ch",))
    assert not result.ok and not result.runner_error and not result.config_error
    assert result.message == f"ssh root@172.30.1.1: {stderr.splitlines()[-1]}"


def test_config_errors_stay_config_errors():
    result = classify_failure("ssh root@172.30.1.1", "Host key verification failed.\nConnection closed by "
                                                     "UNKNOWN port 65535")
    assert result.config_error and not result.runner_error


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client here")
def test_jump_hosts_come_from_the_ssh_config(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host 172.30.1.*\n  ProxyJump admin@bastion:2222,[fd00::1]:22\nHost bastion\n"
                      "  HostName bastion.cern.ch\n")
    ssh = Ssh(SshSettings(config=config), tmp_path)
    assert ssh.jump_hosts(NODE) == ("bastion", "bastion.cern.ch", "fd00::1")
    assert ssh.jump_hosts(Node(name="alimesos01", role="master", address="10.0.0.1")) == ()


def test_node_ssh_is_an_error_when_the_runner_side_failed(write_inventory, run_suite, tmp_path):
    stderr = "kex_exchange_identification: read: Connection reset by peer"
    result = run_suite(f"--inventory={write_inventory(EXAMPLE)}", "--nodes=alibuild01",
                       spec={"alibuild01": {"ssh_error": stderr}})
    assert result.ret == 1
    records = json.loads((tmp_path / "out" / "latest" / "summary.json").read_text())["records"]
    recs = {f"{r['check']}[{r['node']}]": r for r in records}
    rec = recs["node.ssh[alibuild01]"]
    assert rec["outcome"] == "error" and "not a verdict on the node" in rec["message"] and stderr in rec["message"]
    assert not [k for k, r in recs.items() if r["outcome"] == "failed"]


# --------------------------------------------------------------------------- OpenStack: the state guardrail


@pytest.mark.parametrize("status, task_state, kind", [
    ("ERROR", None, "broken"),
    ("ACTIVE", None, "running"),
    *[(s, None, "human") for s in ("SHUTOFF", "PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED", "RESCUE",
                                   "SOFT_DELETED", "DELETED")],
    *[(s, None, "busy") for s in ("BUILD", "REBUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "VERIFY_RESIZE",
                                  "MIGRATING", "PASSWORD", "REVERT_RESIZE")],
    ("ACTIVE", "rebooting_hard", "busy"),
    ("ACTIVE", "powering-off", "busy"),
    ("SHUTOFF", "powering-on", "busy"),
    ("ERROR", "rebooting_hard", "busy"),  # Nova's status for a hard reboot of a server in ERROR
    ("UNKNOWN", None, "unknown"),
    ("MAINTENANCE", None, "unknown"),
])
def test_classify_every_state(status, task_state, kind):
    assert classify(ServerState(status, task_state)) == kind


def server(status: str, task_state: str | None = None, updated: str = "2025-01-01T00:00:00Z") -> dict[str, Any]:
    vm = {"ACTIVE": "active", "ERROR": "error", "SHUTOFF": "stopped", "PAUSED": "paused",
          "SUSPENDED": "suspended"}.get(status, "active")
    return {"id": "0b1e", "name": "alibuild01", "status": status, "task_state": task_state, "vm_state": vm,
            "power_state": 1 if status == "ACTIVE" else 4, "updated_at": updated}


class FakeCompute:
    """openstacksdk's compute proxy: get_server answers ``states`` in turn (the last one stays)."""

    def __init__(self, *states: dict[str, Any], fail: Exception | None = None) -> None:
        self.states = list(states)
        self.fail = fail
        self.reboots: list[str] = []

    def find_server(self, name: str, ignore_missing: bool = True) -> Any:
        return SimpleNamespace(id="0b1e", name=name)

    def get_server(self, server_id: str) -> Any:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return SimpleNamespace(**state)

    def reboot_server(self, server_id: str, reboot_type: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.reboots.append(reboot_type)


def cloud_of(compute: FakeCompute) -> OpenStack:
    return OpenStack(None, connect=lambda node: SimpleNamespace(compute=compute))  # type: ignore[arg-type]


@pytest.fixture
def no_sleep(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)


def test_state_is_read_fresh_each_time():
    compute = FakeCompute(server("ACTIVE"), server("HARD_REBOOT", "rebooting_hard"))
    cloud = cloud_of(compute)
    assert cloud.state(NODE) == ServerState("ACTIVE", None, "active", 1, "2025-01-01T00:00:00Z")
    assert cloud.state(NODE).task_state == "rebooting_hard"


@pytest.mark.parametrize("state", [server("SHUTOFF"), server("PAUSED"), server("SUSPENDED"),
                                   server("ACTIVE", "rebooting_hard"), server("ERROR", "rebuilding"),
                                   server("REBUILD", "rebuilding"), server("UNKNOWN")])
@pytest.mark.parametrize("hard", [True, False])
def test_reboot_refuses_what_it_must_not_touch(state, hard):
    compute = FakeCompute(state)
    with pytest.raises(Refused) as refused:
        cloud_of(compute).reboot(NODE, hard=hard, progress=Progress())
    assert refused.value.guardrail == "openstack-state" and "alibuild01" in refused.value.reason
    assert compute.reboots == []  # and never start_server: the fake has none


def test_a_server_in_error_gets_a_hard_reboot_only(no_sleep):
    with pytest.raises(Refused, match="only a hard reboot"):
        cloud_of(FakeCompute(server("ERROR"))).reboot(NODE, hard=False, progress=Progress())
    compute = FakeCompute(server("ERROR"), server("ERROR"), server("ERROR", "rebooting_hard"),
                          server("ACTIVE", updated="2025-01-01T00:01:00Z"))
    assert "hard rebooted" in cloud_of(compute).reboot(NODE, hard=True, progress=Progress())
    assert compute.reboots == ["HARD"]


def test_reboot_waits_for_nova_to_take_it_then_for_active(no_sleep):
    said: list[str] = []
    compute = FakeCompute(server("ACTIVE"), server("ACTIVE"), server("ACTIVE"),  # Nova has not flipped yet
                          server("HARD_REBOOT", "reboot_started_hard"), server("HARD_REBOOT", "reboot_started_hard"),
                          server("ACTIVE", updated="2025-01-01T00:01:00Z"))
    did = cloud_of(compute).reboot(NODE, hard=True, progress=Progress(say=said.append))
    assert did.startswith("alibuild01 hard rebooted through OpenStack") and compute.reboots == ["HARD"]
    assert compute.states == [server("ACTIVE", updated="2025-01-01T00:01:00Z")]  # every state was read
    assert len(said) == 2


def test_a_reboot_too_quick_to_be_seen_is_waited_for_a_bounded_time(no_sleep, monkeypatch):
    monkeypatch.setattr(cloud_module, "START_S", 0.0)
    did = cloud_of(FakeCompute(server("ACTIVE"))).reboot(NODE, hard=True, progress=Progress())
    assert did.endswith("Nova accepted it but never showed it in progress, ping and ssh will tell)")


def test_a_reboot_that_ends_in_error_fails(no_sleep):
    compute = FakeCompute(server("ACTIVE"), server("ACTIVE"), server("REBOOT", "reboot_started"), server("ERROR"))
    with pytest.raises(ActionFailed, match="ended with the server ERROR"):
        cloud_of(compute).reboot(NODE, hard=False, progress=Progress())


def test_sdk_errors_become_one_line_action_failures():
    import keystoneauth1.exceptions
    import openstack.exceptions
    import requests

    remember("s3cr3t-member-password")
    conflict = openstack.exceptions.ConflictException(  # as openstacksdk makes it of Nova's answer
        "ConflictException: 409: Client Error for url: https://nova.cern.ch/v2.1/servers/0b1e/action", http_status=409,
        details="Cannot 'reboot' instance 0b1e while it is in task_state rebuilding\n(s3cr3t-member-password)")
    with pytest.raises(ActionFailed) as failed:
        cloud_of(FakeCompute(server("ACTIVE"), fail=conflict)).reboot(NODE, hard=True, progress=Progress())
    message = str(failed.value)
    assert message.startswith("OpenStack: hard reboot of alibuild01: ConflictException: HTTP 409: Cannot 'reboot' "
                              "instance 0b1e while it is in task_state rebuilding")
    assert "\n" not in message and "s3cr3t" not in message and failed.value.__suppress_context__

    class Unauthorized(FakeCompute):
        def find_server(self, name: str, ignore_missing: bool = True) -> Any:
            raise keystoneauth1.exceptions.Unauthorized("The request you have made requires authentication.")

    with pytest.raises(ActionFailed, match="Unauthorized"):
        cloud_of(Unauthorized(server("ACTIVE"))).state(NODE)

    def no_cloud(node: Node) -> Any:
        raise openstack.exceptions.ConfigException("Cloud alicelab-remediation was not found.")

    with pytest.raises(ActionFailed, match="ConfigException"):
        OpenStack(None, connect=no_cloud).status(NODE)  # type: ignore[arg-type]

    class Down(FakeCompute):
        def get_server(self, server_id: str) -> Any:
            raise requests.ConnectionError("Max retries exceeded with url: /v2.1/servers/0b1e")

    with pytest.raises(ActionFailed, match="ConnectionError"):
        cloud_of(Down(server("ACTIVE"))).reboot(NODE, hard=True, progress=Progress())


# --------------------------------------------------------------------------- the sources agree, or not


class FakeNodes:
    def __init__(self, pings: list[bool | None], ssh: str | None) -> None:
        self.pings = [ProbeResult(ok=bool(p), error=p is None, message=f"ping {i}: {p}") for i, p in enumerate(pings)]
        self.asked = 0
        self.resets = 0
        self.ssh = SshResult(True, "ok") if ssh is None else classify_failure("ssh root@172.30.1.1", ssh)

    def ping(self, node: Node, fresh: bool = False) -> ProbeResult:
        assert fresh
        self.asked += 1
        return self.pings[min(self.asked, len(self.pings)) - 1]

    def reset(self, node: Node, again: bool = False) -> None:
        self.resets += 1

    def session(self, node: Node) -> Any:
        assert self.resets, "ssh must be a fresh connection"
        return SimpleNamespace(connect=lambda: self.ssh)


NODE_DOWN = "ssh: connect to host 172.30.1.1 port 22: Connection timed out"
NEED = ("ping", "ssh", "nomad", "openstack")


def nomad(status: str) -> Any:
    return lambda name: {"Name": name, "Status": status}


def evidence(pings: list[bool | None], ssh: str | None, nomad_status: str, cloud: dict[str, Any]
             ) -> list[confirm.Evidence]:
    nodes = FakeNodes(pings, ssh)
    return [*confirm.reprobe(NODE, nodes, spread_s=0.0),  # type: ignore[arg-type]
            confirm.nomad_view(NODE, nomad(nomad_status)), confirm.cloud_view(NODE, cloud_of(FakeCompute(cloud)))]


def test_reprobe_spreads_the_pings_and_stops_at_an_answer():
    nodes = FakeNodes([False, True, False], NODE_DOWN)
    start = time.monotonic()
    said = confirm.reprobe(NODE, nodes, spread_s=0.2)  # type: ignore[arg-type]
    assert time.monotonic() - start >= 0.1 and nodes.asked == 2 and nodes.resets == 1
    assert said[0] == confirm.Evidence("ping", False, "ping 2 of 2 answered: ping 1: True")
    assert said[1].source == "ssh" and said[1].broken is True
    dead = FakeNodes([False], NODE_DOWN)
    assert confirm.reprobe(NODE, dead, spread_s=0.0)[0].broken is True and dead.asked == 3  # type: ignore[arg-type]


@pytest.mark.parametrize("cloud", [server("ACTIVE"), server("ERROR")])
def test_all_sources_agree_confirmed(cloud):
    assert confirm.confirmed(evidence([False, False, False], NODE_DOWN, "down", cloud), NEED) is None
    assert confirm.confirmed(evidence([False], NODE_DOWN, "disconnected", cloud), NEED) is None


def test_one_lost_ping_then_an_answer_is_not_confirmed():
    why = confirm.confirmed(evidence([False, True], NODE_DOWN, "down", server("ACTIVE")), NEED)
    assert why is not None and why.startswith("ping says not broken: ping 2 of 2 answered")


def test_a_runner_side_ssh_failure_is_not_confirmed():
    why = confirm.confirmed(evidence([False], "kex_exchange_identification: read: Connection reset by peer", "down",
                                     server("ACTIVE")), NEED)
    assert why is not None and why.startswith("ssh cannot tell: ") and "not a verdict on the node" in why


@pytest.mark.parametrize("status", ["ready", "initializing"])
def test_nomad_ready_is_not_confirmed(status):
    why = confirm.confirmed(evidence([False], NODE_DOWN, status, server("ACTIVE")), NEED)
    assert why is not None and why.startswith(f"nomad says not broken: Nomad sees alibuild01 {status}")


@pytest.mark.parametrize("cloud, word", [(server("SHUTOFF"), "a state a human set"),
                                         (server("ACTIVE", "rebooting_hard"), "something is in progress"),
                                         (server("UNKNOWN"), "does not know")])
def test_openstack_human_or_busy_is_not_confirmed(cloud, word):
    why = confirm.confirmed(evidence([False], NODE_DOWN, "down", cloud), NEED)
    assert why is not None and why.startswith("openstack says not broken: OpenStack shows alibuild01") and word in why


def test_a_source_that_cannot_tell_or_is_missing_is_not_a_yes():
    def broken_nomad(name: str) -> dict[str, Any]:
        raise ActionFailed("Nomad: no address answered")

    said = [*confirm.reprobe(NODE, FakeNodes([False], NODE_DOWN), spread_s=0.0),  # type: ignore[arg-type]
            confirm.nomad_view(NODE, broken_nomad)]
    assert said[-1] == confirm.Evidence("nomad", None, "Nomad cannot be read: Nomad: no address answered")
    why = confirm.confirmed(said, NEED)
    assert why is not None and "nomad cannot tell" in why and "openstack: no evidence" in why
    assert "while ping: no answer to 3 pings" in why  # what the others said is kept
    assert confirm.confirmed(evidence([None], NODE_DOWN, "down", server("ACTIVE")), NEED) is not None
    assert confirm.confirmed(evidence([False], "Host key verification failed.", "down", server("ERROR")),
                             NEED) is not None
    running_only = [confirm.Evidence("openstack", None, "it runs", blind=True)]
    assert confirm.confirmed(running_only, ("openstack",)) == "no source saw the node broken (while openstack: " \
                                                              "it runs)"


def test_openstack_unreadable_is_not_confirmed():
    class Down(FakeCompute):
        def get_server(self, server_id: str) -> Any:
            import openstack.exceptions

            raise openstack.exceptions.HttpException("Service Unavailable")

    said = confirm.cloud_view(NODE, cloud_of(Down(server("ACTIVE"))))
    assert said.broken is None and not said.blind and "cannot be read" in said.detail
