"""The node transport: the batch script run by a real local sh answers exactly what each command printed and
returned, frames cannot be forged, nothing reaches a local shell, the control directory is private, and the
dry pass learns a node's commands in a few round trips."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acceptance.inventory import Node, SshSettings
from acceptance.outcomes import CheckError
from acceptance.transport import batch
from acceptance.transport.batch import Answer
from acceptance.transport.nodes import Nodes
from acceptance.transport.ping import ProbeResult
from acceptance.transport.session import NodeSession, learn
from acceptance.transport.ssh import ControlDirError, Ssh, classify_failure, private_dir

from .fakessh import FakeSsh


def run_locally(commands: list[str], timeout_s: int = 30) -> dict[int, Answer]:
    """What the script answers when a real sh runs it (as sshd would, with the script on stdin)."""
    nonce = batch.new_nonce()
    proc = subprocess.run(["sh", "-s"], input=batch.script(commands, nonce, timeout_s).encode(), capture_output=True,
                          timeout=60, check=False, env={**os.environ, "SHELL": "/bin/sh"})
    assert proc.returncode == 0, proc.stderr
    return batch.parse(proc.stdout, nonce, len(commands))


def test_each_command_answers_exactly_its_status_stdout_and_stderr():
    commands = [
        "echo out; echo err >&2; exit 3",
        "printf 'no newline'",
        "printf '\\000\\377binary\\n'",
        "cat",  # stdin is /dev/null, not the script
        "echo '@@0123456789abcdef 0 0 5 0'; echo forged",  # looks like a frame
        "exit 0",
        "true | head -c 0; seq 1 20000",
    ]
    answers = run_locally(commands)
    assert answers[0] == Answer(3, b"out\n", b"err\n")
    assert answers[1] == Answer(0, b"no newline", b"")
    assert answers[2] == Answer(0, b"\x00\xffbinary\n", b"")
    assert answers[3] == Answer(0, b"", b"")
    assert answers[4] == Answer(0, b"@@0123456789abcdef 0 0 5 0\nforged\n", b"")
    assert answers[5] == Answer(0, b"", b"")
    assert answers[6].stdout == "".join(f"{i}\n" for i in range(1, 20001)).encode()


def test_a_hung_command_is_stopped_and_has_no_answer():
    answers = run_locally(["sleep 30", "echo after"], timeout_s=1)
    assert answers[0].rc == batch.TIMED_OUT
    assert answers[1] == Answer(0, b"after\n", b"")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outputs=st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=100), st.integers(0, 255)),
                        min_size=1, max_size=5))
def test_any_bytes_round_trip_exactly(tmp_path_factory, outputs):
    folder = tmp_path_factory.mktemp("bytes")
    commands = []
    for i, (out, err, rc) in enumerate(outputs):
        (folder / f"{i}.o").write_bytes(out)
        (folder / f"{i}.e").write_bytes(err)
        commands.append(f"cat {folder}/{i}.o; cat {folder}/{i}.e >&2; exit {rc}")
    answers = run_locally(commands)
    assert [answers[i] for i in range(len(outputs))] == [Answer(rc, out, err) for out, err, rc in outputs]


@given(junk=st.binary(max_size=200), cut=st.integers(min_value=0, max_value=400))
def test_parse_never_invents_an_answer(junk, cut):
    nonce = "0123456789abcdef"
    good = f"@@{nonce} 0 0 3 0\n".encode() + b"abc" + f"@@{nonce} 1 2 0 4\n".encode() + b"oops"
    output = (junk + good)[: len(junk) + cut]
    answers = batch.parse(output, nonce, 2)
    assert set(answers) <= {0, 1}
    if 0 in answers:
        assert answers[0] == Answer(0, b"abc", b"")
    if 1 in answers:
        assert answers[1] == Answer(2, b"", b"oops")
    assert batch.parse(output, "fedcba9876543210", 2) == {} or junk.find(b"@@fedcba9876543210") >= 0


HOSTILE = ["alibuild99;touch pwned;", "$(touch pwned)", "`touch pwned`", "a b", "-oProxyCommand=touch pwned"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_never_reach_a_local_shell(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    known = tmp_path / "known;touch pwned;"
    known.write_text("")
    control = tmp_path / "ctl"
    control.mkdir(mode=0o700)
    ssh = Ssh(SshSettings(known_hosts=known, connect_timeout_s=2, command_timeout_s=5), private_dir(control))
    node = Node(name="alibuild99", role="agent", address=value, kind="vm")
    try:
        result = ssh.run(node, ["touch pwned-remote"])
        assert not result.connection.ok
    except ValueError as e:  # refused before ssh runs: option-like or not a single word
        assert "ssh destination" in str(e)
    assert not list(tmp_path.glob("pwned*"))


def test_destination_follows_double_dash_and_paths_are_quoted(tmp_path):
    settings = SshSettings(user="root", config=tmp_path / "ssh config", known_hosts=tmp_path / "known %h hosts",
                           identity=tmp_path / "id")
    ssh = Ssh(settings, tmp_path)
    node = Node(name="alibuild01", role="agent", address="172.30.1.1", kind="vm")
    opts = ssh.options(node)
    assert opts[:2] == ["-F", str(tmp_path / "ssh config")]
    assert f'UserKnownHostsFile="{tmp_path}/known %%h hosts"' in opts
    assert f'IdentityFile="{tmp_path}/id"' in opts
    for expected in ("StrictHostKeyChecking=yes", "BatchMode=yes", "ControlMaster=auto", "ServerAliveCountMax=3",
                     "User=root", f'ControlPath="{tmp_path}/alibuild01"'):
        assert expected in opts


def test_control_directory_is_private(tmp_path):
    made = private_dir()
    try:
        assert made.stat().st_mode & 0o777 == 0o700 and made.stat().st_uid == os.getuid()
        assert private_dir(made) == made
    finally:
        made.rmdir()
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(ControlDirError, match="mode 0700"):
        private_dir(loose)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(ControlDirError):
        private_dir(link)


@pytest.mark.parametrize("stderr, config_error", [
    ("ssh: connect to host 172.30.1.1 port 22: Connection refused", False),
    ("ssh: connect to host 172.30.1.1 port 22: No route to host", False),
    ("Connection closed by 172.30.1.1 port 22", False),
    ("Host key verification failed.", True),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@", True),
    ("root@172.30.1.1: Permission denied (publickey).", True),
    ("/x/ssh_config line 2: Bad configuration option: hots", True),
])
def test_ssh_failures_say_whose_problem_it_is(stderr, config_error):
    result = classify_failure("ssh root@172.30.1.1", stderr)
    assert not result.ok and result.config_error is config_error


# --------------------------------------------------------------------------- the dry pass


def agents(n: int) -> list[Node]:
    return [Node(name=f"alibuild{i:02}", role="agent", address=f"172.30.1.{i}", kind="vm") for i in range(1, n + 1)]


def chain_probe(session: NodeSession) -> list[object]:
    """A check whose second command depends on the first one's answer (like testinfra's module detection)."""
    def probe() -> object:
        kind = session.host.check_output("uname -s")
        return session.host.run("systemctl show %s", kind.lower()).stdout
    return [probe, lambda: session.host.check_output("hostname")]


def test_first_node_learns_the_others_follow_in_one_round_trip(write_inventory):
    from acceptance.inventory import load_inventory

    inventory = load_inventory(write_inventory())
    fake = FakeSsh({}, default=lambda c: Answer(0, b"Linux\n" if c == "uname -s" else f"{c}\n".encode(), b""))
    nodes = Nodes(inventory, Path("/nonexistent"), chain_probe, ping=lambda a: ProbeResult(True), ssh=fake)  # type: ignore[arg-type]
    members = agents(5)
    nodes.prepare_all(members)
    sessions = [nodes.ready(n) for n in members]
    assert all(s.cache["systemctl show linux"].stdout == b"systemctl show linux\n" for s in sessions)
    rounds = {name: c.round_trips for name, c in fake.counters.items()}
    assert rounds["alibuild01"] <= 3 and all(rounds[n.name] == 1 for n in members[1:])
    # the checks now read from the cache: nothing live
    before = dict(rounds)
    for probe in chain_probe(sessions[2]):
        probe()
    assert fake.counters["alibuild03"].round_trips == before["alibuild03"]
    assert nodes.learned()["agent"][:1] == ["uname -s"]


def test_a_command_nobody_learned_runs_live_and_a_missing_answer_is_an_error(write_inventory):
    from acceptance.inventory import load_inventory

    inventory = load_inventory(write_inventory())
    fake = FakeSsh({"alibuild01": {"drop": ["cat /gone"]}}, default=lambda c: Answer(0, b"x\n", b""))
    session = NodeSession(agents(1)[0], fake)  # type: ignore[arg-type]
    learn(session, [lambda: session.host.check_output("hostname")])
    assert fake.counters["alibuild01"].live_commands == 0
    assert session.host.check_output("uptime") == "x"
    assert fake.counters["alibuild01"].live_commands == 1
    with pytest.raises(CheckError, match="no answer to 'cat /gone'"):
        session.host.run("cat /gone")
    del inventory


def test_a_connection_that_fails_makes_every_command_an_error():
    fake = FakeSsh({"alibuild01": {"ssh_error": "Connection timed out"}})
    session = NodeSession(agents(1)[0], fake)  # type: ignore[arg-type]
    learn(session, [lambda: session.host.check_output("hostname")])
    assert session.connection is not None and not session.connection.ok
    with pytest.raises(CheckError, match="Connection timed out"):
        session.host.run("hostname")
    assert fake.counters["alibuild01"].round_trips == 1  # not retried for every command


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SshSettings().user = "x"  # type: ignore[misc]
