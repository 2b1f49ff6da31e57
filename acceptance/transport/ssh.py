"""The system ``ssh``, one master connection per node per run, never through a local shell.

Every inventory value reaches ``ssh`` as one argv element: the destination comes after ``--`` (it can never
be read as an option), option values that ssh itself tokenises (paths) are quoted for ssh and their ``%``
escaped. One place builds the options, for the batches and for closing the master connections.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acceptance.inventory import Node, SshSettings
from acceptance.transport import batch
from acceptance.transport.batch import Answer

_UNSAFE = re.compile(r"[\s\"'\\]|^-")
# ssh's own messages for what the operator must fix (never the node's health, never a reason to reboot)
_CONFIG_ERRORS = (
    ("Host key verification failed", "the node's host key is unknown or changed; fix: check it and update "
                                     "ssh.known_hosts (never accept a key blindly)"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "the node's host key changed; fix: verify it, then update "
                                               "ssh.known_hosts"),
    ("No ED25519 host key is known", "no known host key for the node; fix: add it to ssh.known_hosts"),
    ("host key is known", "no known host key for the node; fix: add it to ssh.known_hosts"),
    ("Permission denied", "the login was refused; fix: check ssh.user, ssh.identity and the node's "
                          "authorized keys"),
    ("Bad configuration option", "ssh.config has a bad line; fix: correct it"),
    ("Unsupported option", "ssh.config has an unsupported option; fix: correct it"),
    ("no argument after keyword", "ssh.config has a bad line; fix: correct it"),
    ("Could not resolve hostname", "the node's address does not resolve; fix: check its address in the inventory"),
    ("Too many authentication failures", "the login was refused; fix: check ssh.identity (IdentitiesOnly)"),
    ("Load key", "the ssh identity cannot be read; fix: check ssh.identity and its mode"),
)
# Failures on the runner's side of the connection: a bastion (ProxyJump/ProxyCommand), the node's sshd turning
# new connections away (MaxStartups), the runner's own master connection. The node may be fine: never a verdict
# on it (``error``, never ``failed``, never a reboot). Matched on any line of ssh's stderr: they only appear when
# the connection failed that way (checked with OpenSSH 9.2: a dead ProxyJump host or a target the bastion cannot
# reach both end with "Connection closed by UNKNOWN port 65535", the proxy's pipe having no address).
_SSHD_CLOSED = "the ssh server (the node's throttling new connections, MaxStartups, or a bastion) closed it"
_RUNNER_ERRORS = (
    (re.compile(r"channel \d+: open failed"), "the bastion could not open the forwarding to the node"),
    (re.compile(r"stdio forwarding failed"), "the bastion could not forward the connection to the node"),
    (re.compile(r"UNKNOWN port 65535"), "through a ProxyJump/ProxyCommand, whose connection ended"),
    (re.compile(r"kex_exchange_identification"), _SSHD_CLOSED),
    (re.compile(r"ssh_exchange_identification"), _SSHD_CLOSED),  # OpenSSH before 8.2
    (re.compile(r"during banner exchange"), "connected, but no ssh banner came (a bastion, or a throttled sshd)"),
)  # the most specific first: its reason is the one given
# The runner's master connection (ControlMaster): only when it is what ended ssh (the last line), since ssh
# warns "ControlSocket ... already exists, disabling multiplexing" and goes on with a connection of its own.
_MUX_ERRORS = ("mux_client", "muxclient", "ControlSocket", "Control socket", "unix_listener")
_CONNECT = re.compile(r"ssh: connect to host (\S+) port \d+")


class ControlDirError(RuntimeError):
    """The master connections' directory is not private to this user."""


def private_dir(path: Path | None = None) -> Path:
    """A directory for the control sockets: created 0700 by ``mkdtemp``, or checked to be ours and 0700."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix="alice-acc-"))
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ControlDirError(f"{path}: the ssh control directory must be a directory owned by uid {os.getuid()} "
                              f"with mode 0700 (it is {oct(st.st_mode & 0o777)}, uid {st.st_uid})")
    return path


def _ssh_path(path: Path) -> str:
    """A path as an ssh option value: quoted (ssh splits on spaces) and with ``%`` escaped (ssh expands it)."""
    text = str(path)
    if any(c in text for c in "\"\n\r\0"):
        raise ValueError(f"{text!r}: a path with quotes or control characters cannot be passed to ssh")
    return '"' + text.replace("%", "%%") + '"'


def safe_destination(value: str) -> str:
    if not value or _UNSAFE.search(value):
        raise ValueError(f"{value!r} cannot be an ssh destination (option-like or contains spaces/quotes)")
    return value


@dataclass(frozen=True)
class SshResult:
    """Whether ssh reached the node. Not ok: the node's failure (a verdict on it), unless ``config_error`` (the
    operator's to fix) or ``runner_error`` (the runner's or the bastion's side): neither says anything of the node."""

    ok: bool
    message: str = ""
    config_error: bool = False
    duration_s: float = 0.0
    runner_error: bool = False


@dataclass
class Counters:
    connections: int = 0  # master connections opened
    round_trips: int = 0  # ssh invocations
    commands: int = 0  # commands answered
    live_commands: int = 0  # of which outside a prefetch batch

    def as_dict(self) -> dict[str, int]:
        return {"connections": self.connections, "round_trips": self.round_trips, "commands": self.commands,
                "live_commands": self.live_commands}


@dataclass
class BatchResult:
    connection: SshResult
    answers: dict[int, Answer] = field(default_factory=dict)
    problem: str | None = None  # why answers are missing although ssh got in (e.g. no temporary directory)


def _runner_side(lines: Sequence[str], jump_hosts: Sequence[str]) -> str | None:
    """Why the failure is on the runner's or the bastion's side, or None (then it is the node's)."""
    for line in lines:
        bastion = _CONNECT.search(line)
        if bastion and bastion.group(1) in jump_hosts:
            return f"the bastion {bastion.group(1)} (ProxyJump) did not take the connection"
    for pattern, why in _RUNNER_ERRORS:
        if any(pattern.search(line) for line in lines):
            return why
    if lines and any(needle in lines[-1] for needle in _MUX_ERRORS):
        return "the runner's ssh master connection (ControlMaster) failed"
    return None


def classify_failure(where: str, stderr: str, timed_out: bool = False, jump_hosts: Sequence[str] = ()) -> SshResult:
    """Whose failure it is, from ssh's stderr: the operator's (config), the runner's or the bastion's, or the
    node's. ``jump_hosts``: the ProxyJump hosts (as ssh names them), so that a bastion's silence is not the node's."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("Warning:")]
    last = lines[-1] if lines else ("no answer" if timed_out else "connection failed")
    for needle, fix in _CONFIG_ERRORS:
        if any(needle in line for line in lines):
            return SshResult(False, f"{where}: {last} ({fix})", config_error=True)
    why = _runner_side(lines, jump_hosts)
    if why is not None:
        said = "; ".join(dict.fromkeys(lines[-4:]))  # a bastion's first line says more than the proxy's last
        return SshResult(False, f"{where}: {said} (the runner's or the bastion's side, not a verdict on the node: "
                                f"{why})", runner_error=True)
    return SshResult(False, f"{where}: {last}")


def _hop_host(hop: str) -> str:
    """``[ssh://][user@]host[:port]`` (host may be ``[v6]``) -> host."""
    hop = hop.removeprefix("ssh://").rsplit("@", 1)[-1]
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop


class Ssh:
    """Runs batches on nodes through their master connection and counts what it costs."""

    def __init__(self, settings: SshSettings, control_dir: Path) -> None:
        self.settings = settings
        self.control_dir = control_dir
        self.counters: dict[str, Counters] = {}
        self._jumps: dict[str, tuple[str, ...]] = {}

    def control_path(self, node: Node) -> Path:
        return self.control_dir / node.name

    def options(self, node: Node) -> list[str]:
        s = self.settings
        opts = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={int(s.connect_timeout_s)}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPersist={int(s.control_persist_s)}s",
            "-o", f"ControlPath={_ssh_path(self.control_path(node))}",
            "-o", f"User={safe_destination(s.user)}",
        ]
        if s.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={_ssh_path(s.known_hosts)}"]
        if s.identity:
            opts += ["-o", "IdentitiesOnly=yes", "-o", f"IdentityFile={_ssh_path(s.identity)}"]
        if s.config:
            opts = ["-F", str(s.config), *opts]
        return opts

    def where(self, node: Node) -> str:
        return f"ssh {self.settings.user}@{self.settings.destination(node)}"

    def _effective(self, host: str) -> dict[str, str]:
        """ssh's configuration for ``host`` (``ssh -G``: read locally, no connection); empty if unreadable."""
        argv = ["ssh", "-G", *(["-F", str(self.settings.config)] if self.settings.config else []), "--", host]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        pairs = (line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
        return {key: value for key, value in pairs} if proc.returncode == 0 else {}

    def jump_hosts(self, node: Node) -> tuple[str, ...]:
        """The node's ProxyJump hosts by every name ssh's errors may give them (alias and HostName); after a
        failure only, once per destination."""
        dest = safe_destination(self.settings.destination(node))
        if dest not in self._jumps:
            jumps = self._effective(dest).get("proxyjump", "none")
            names: list[str] = []
            for hop in ([] if jumps == "none" else [_hop_host(h) for h in jumps.split(",") if h]):
                names += [hop, self._effective(hop).get("hostname", hop)]
            self._jumps[dest] = tuple(dict.fromkeys(names))
        return self._jumps[dest]

    def run(self, node: Node, commands: Sequence[str], live: bool = False) -> BatchResult:
        """One round trip answering ``commands`` (``live``: outside the prefetch, for the counters)."""
        counters = self.counters.setdefault(node.name, Counters())
        if not self.control_path(node).exists():
            counters.connections += 1
        counters.round_trips += 1
        nonce = batch.new_nonce()
        timeout = int(self.settings.command_timeout_s)
        argv = ["ssh", *self.options(node), "--", safe_destination(self.settings.destination(node)), "sh -s"]
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, input=batch.script(commands, nonce, timeout).encode(), capture_output=True,
                                  timeout=self.settings.connect_timeout_s + timeout + 10, check=False)
        except subprocess.TimeoutExpired as e:
            return BatchResult(classify_failure(self.where(node), (e.stderr or b"").decode(errors="replace"), True,
                                                self.jump_hosts(node)))
        except OSError as e:
            return BatchResult(SshResult(False, f"{self.where(node)}: cannot run ssh: {e}", config_error=True))
        duration = time.monotonic() - start
        answers = batch.parse(proc.stdout, nonce, len(commands))
        if proc.returncode == 255 and not answers:
            result = classify_failure(self.where(node), proc.stderr.decode(errors="replace"),
                                      jump_hosts=self.jump_hosts(node))
            return BatchResult(dataclasses.replace(result, duration_s=duration))
        counters.commands += len(answers)
        if live:
            counters.live_commands += len(answers)
        problem = None
        if len(answers) < len(commands):
            err = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
            problem = (f"{self.where(node)}: {len(commands) - len(answers)} of {len(commands)} answers missing "
                       f"(exit status {proc.returncode}{': ' + err[-1].strip() if err else ''})")
        return BatchResult(SshResult(True, f"{self.where(node)}: ok", duration_s=duration), answers, problem)

    def forget(self, node: Node) -> None:
        """Stop the node's master connection (it may be dead after a reboot): the next call opens a new one."""
        path = self.control_path(node)
        if path.exists():
            subprocess.run(["ssh", "-o", f"ControlPath={_ssh_path(path)}", "-O", "exit", "--", "unused"],
                           capture_output=True, timeout=10, check=False)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the master connections this process opened."""
        for name in list(self.counters):
            self.forget(Node(name=name, role="agent"))
