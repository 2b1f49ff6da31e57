"""The node transport: the batch script run by a real local sh answers exactly what each command printed and
returned, frames cannot be forged, nothing reaches a local shell, the control directory is private, and the
dry pass learns a node's commands in a few round trips."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable, Sequence
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
from acceptance.transport.session import NodeSession
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


def chain_probe(session: NodeSession) -> list[Callable[[], object]]:
    """A check whose second command depends on the first one's answer (like testinfra's module detection)."""
    def probe() -> object:
        kind = session.host.check_output("uname -s")
        return session.host.run("systemctl show %s", kind.lower()).stdout
    return [probe, lambda: session.host.check_output("hostname")]


def dry_pass(probes_of: Callable[[NodeSession], list[Callable[[], object]]]) -> Callable[[Sequence[NodeSession]], None]:
    """What acceptance.learning does through pytest, with plain functions: every probe of every session, in order."""
    def run(sessions: Sequence[NodeSession]) -> None:
        for session in sessions:
            for index, probe in enumerate(probes_of(session)):
                session.probe(index)
                try:
                    probe()
                except Exception:  # noqa: S112 - only the commands matter
                    continue
    return run


def hostname(session: NodeSession) -> list[Callable[[], object]]:
    return [lambda: session.host.check_output("hostname")]


def prepared(fake: FakeSsh, node: Node, probes_of: Callable[[NodeSession], list[Callable[[], object]]]) -> NodeSession:
    nodes = Nodes(None, Path("/nonexistent"), ping=lambda a: ProbeResult(True), ssh=fake)  # type: ignore[arg-type]
    nodes.prepare_all([node])
    nodes.learn(dry_pass(probes_of))
    return nodes.ready(node)


def test_first_node_learns_the_others_follow_in_one_round_trip():
    fake = FakeSsh({}, default=lambda c: Answer(0, b"Linux\n" if c == "uname -s" else f"{c}\n".encode(), b""))
    nodes = Nodes(None, Path("/nonexistent"), ping=lambda a: ProbeResult(True), ssh=fake)  # type: ignore[arg-type]
    members = agents(5)
    nodes.prepare_all(members)
    assert nodes.pending()
    nodes.learn(dry_pass(chain_probe))
    assert not nodes.pending()
    sessions = [nodes.ready(n) for n in members]
    assert all(s.cache["systemctl show linux"].stdout == b"systemctl show linux\n" for s in sessions)
    rounds = {name: c.round_trips for name, c in fake.counters.items()}
    assert rounds["alibuild01"] <= 3 and all(rounds[n.name] == 1 for n in members[1:])
    # the checks now read from the cache: nothing live
    before = dict(rounds)
    for probe in chain_probe(sessions[2]):
        probe()
    assert fake.counters["alibuild03"].round_trips == before["alibuild03"]
    assert nodes.learned()["agent/vm"][:1] == ["uname -s"]


def test_a_warm_run_has_no_dry_pass_and_a_cold_one_without_it_asks_live():
    fake = FakeSsh({}, default=lambda c: Answer(0, f"{c}\n".encode(), b""))
    warm = Nodes(None, Path("/nonexistent"), seeds={"agent/vm": ["hostname"]}, ping=lambda a: ProbeResult(True),
                 ssh=fake)  # type: ignore[arg-type]
    warm.prepare_all(agents(2))
    assert not warm.pending()  # nothing to learn: nobody runs the checks twice
    assert all(warm.ready(n).host.check_output("hostname") == "hostname" for n in agents(2))
    assert all(c.round_trips == 1 and c.live_commands == 0 for c in fake.counters.values())
    cold = Nodes(None, Path("/nonexistent"), ping=lambda a: ProbeResult(True), ssh=FakeSsh({}))  # type: ignore[arg-type]
    cold.prepare_all(agents(2))
    assert cold.ready(agents(2)[1]).connected  # nobody learns (outside pytest's loop): no wait, no dry pass
    assert cold.ready(agents(2)[0]).connected and not cold.pending()


def test_a_command_nobody_learned_runs_live_and_a_missing_answer_is_an_error():
    fake = FakeSsh({"alibuild01": {"drop": ["cat /gone"]}}, default=lambda c: Answer(0, b"x\n", b""))
    session = prepared(fake, agents(1)[0], hostname)
    assert fake.counters["alibuild01"].live_commands == 0 and "hostname" in session.cache
    assert session.host.check_output("uptime") == "x"
    assert fake.counters["alibuild01"].live_commands == 1
    with pytest.raises(CheckError, match="no answer to 'cat /gone'"):
        session.host.run("cat /gone")


def test_an_action_is_never_learned_nor_batched():
    fake = FakeSsh({}, default=lambda c: Answer(0, b"x\n", b""))
    prepared(fake, agents(1)[0], lambda s: [lambda: s.live_host.run("systemctl restart nomad")])
    assert all("systemctl restart nomad" not in commands for _, commands in fake.batches)


def test_a_connection_that_fails_makes_every_command_an_error():
    fake = FakeSsh({"alibuild01": {"ssh_error": "Connection timed out"}})
    session = prepared(fake, agents(1)[0], hostname)
    assert session.connection is not None and not session.connection.ok
    with pytest.raises(CheckError, match="Connection timed out"):
        session.host.run("hostname")
    assert fake.counters["alibuild01"].round_trips == 1  # not retried for every command


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SshSettings().user = "x"  # type: ignore[misc]
