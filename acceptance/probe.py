"""Reaching nodes: ping from here, one ssh connection per node per run, facts in one round trip.

One :class:`Prober` lives in each pytest process (the controller or an xdist worker); it caches per
node the ping result, the facts and the testinfra host, so that whatever the number of checks a node
costs one ping, one ssh master connection (ControlMaster, ControlPath per run) and one facts script.
The plugin obtains it through the ``pytest_acceptance_make_prober`` hook, so that tests (and later
transports) can provide another implementation.
"""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from acceptance.facts import NodeFacts, build_script
from acceptance.inventory import Inventory, Node


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of reaching a node: ``ok``; or not ok with a message; ``error`` when it could not be tried."""

    ok: bool
    message: str = ""
    error: bool = False
    duration_s: float = 0.0


@dataclass(frozen=True)
class FactsResult:
    connection: ProbeResult
    facts: NodeFacts | None = None


class ProberProtocol(Protocol):
    def ping(self, node: Node) -> ProbeResult: ...

    def facts(self, node: Node) -> FactsResult: ...

    def host(self, node: Node) -> Any: ...

    def close(self) -> None: ...


def ping(address: str, timeout_s: float = 2.0) -> ProbeResult:
    """One ICMP echo with the system's ``ping``, from the machine running pytest."""
    exe = shutil.which("ping")
    if exe is None:
        return tcp_probe(address, 22, timeout_s)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [exe, "-c", "1", "-W", str(max(1, int(timeout_s))), address],
            capture_output=True, text=True, timeout=timeout_s + 3, check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(ok=False, message=f"ping {address}: no answer within {timeout_s:g}s",
                           duration_s=time.monotonic() - start)
    duration = time.monotonic() - start
    if proc.returncode == 0:
        return ProbeResult(ok=True, message=f"ping {address}: ok", duration_s=duration)
    if proc.returncode == 1:
        return ProbeResult(ok=False, message=f"ping {address}: no answer within {timeout_s:g}s", duration_s=duration)
    detail = (proc.stderr or proc.stdout).strip().splitlines()
    return ProbeResult(ok=False, error=True, duration_s=duration,
                       message=f"ping {address}: {detail[-1] if detail else f'exit status {proc.returncode}'}")


def tcp_probe(address: str, port: int = 22, timeout_s: float = 2.0) -> ProbeResult:
    """Reachability without ICMP (no ``ping`` command here): a TCP connection attempt; a refusal is an answer."""
    start = time.monotonic()
    what = f"tcp {address}:{port} (no ping command here)"
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            pass
    except ConnectionRefusedError:
        return ProbeResult(ok=True, message=f"{what}: refused, host up", duration_s=time.monotonic() - start)
    except TimeoutError:
        return ProbeResult(ok=False, message=f"{what}: no answer within {timeout_s:g}s",
                           duration_s=time.monotonic() - start)
    except OSError as e:
        error = e.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN)
        return ProbeResult(ok=False, error=error, message=f"{what}: {e.strerror or e}",
                           duration_s=time.monotonic() - start)
    return ProbeResult(ok=True, message=f"{what}: ok", duration_s=time.monotonic() - start)


class SshTransport:
    """The system ``ssh`` with a shared master connection per node; also builds the testinfra hosts."""

    def __init__(self, inventory: Inventory, control_dir: Path) -> None:
        self.inventory = inventory
        self.settings = inventory.ssh
        self.control_dir = control_dir
        self._used: dict[str, Node] = {}

    def control_path(self, node: Node) -> Path:
        return self.control_dir / node.name

    def options(self, node: Node) -> list[str]:
        s = self.settings
        opts = [
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={s.connect_timeout_s}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPersist={s.control_persist_s}s",
            "-o", f"ControlPath={self.control_path(node)}",
            "-o", f"User={s.user}",
        ]
        if s.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={s.known_hosts}"]
        if s.identity:
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(s.identity)]
        if s.config:
            opts = ["-F", str(s.config), *opts]
        return opts

    def run_script(self, node: Node, script: str) -> tuple[int, str, str]:
        """Run ``script`` with ``sh -s`` on the node; rc 255 means ssh itself failed."""
        self.control_dir.mkdir(parents=True, exist_ok=True)
        self._used[node.name] = node
        cmd = ["ssh", *self.options(node), self.settings.destination(node), "sh", "-s"]
        proc = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False,
                              timeout=self.settings.connect_timeout_s + self.settings.command_timeout_s)
        return proc.returncode, proc.stdout, proc.stderr

    def host(self, node: Node) -> Any:
        """A testinfra host on the same master connection as the facts."""
        import testinfra

        s = self.settings
        self.control_dir.mkdir(parents=True, exist_ok=True)
        self._used[node.name] = node
        extra = ["-o BatchMode=yes", "-o StrictHostKeyChecking=yes", "-o ServerAliveInterval=15"]
        if s.known_hosts:
            extra.append(f"-o UserKnownHostsFile={s.known_hosts}")
        if s.identity:
            extra.append("-o IdentitiesOnly=yes")
        return testinfra.get_host(
            f"ssh://{s.user}@{s.destination(node)}",
            ssh_config=str(s.config) if s.config else None,
            ssh_identity_file=str(s.identity) if s.identity else None,
            timeout=s.connect_timeout_s,
            controlpath=str(self.control_path(node)),
            controlpersist=s.control_persist_s,
            ssh_extra_args=" ".join(extra),
        )

    def close(self) -> None:
        """Stop the master connections this process opened."""
        for node in self._used.values():
            if self.control_path(node).exists():
                subprocess.run(["ssh", *self.options(node), "-O", "exit", self.settings.destination(node)],
                               capture_output=True, timeout=10, check=False)
        self._used.clear()


class Prober:
    """Cached per-node probes for one pytest process."""

    def __init__(self, inventory: Inventory, control_dir: Path) -> None:
        self.inventory = inventory
        self.transport = SshTransport(inventory, control_dir)
        self._ping: dict[str, ProbeResult] = {}
        self._facts: dict[str, FactsResult] = {}
        self._hosts: dict[str, Any] = {}

    def ping(self, node: Node) -> ProbeResult:
        if node.name not in self._ping:
            self._ping[node.name] = ping(node.address or node.name)
        return self._ping[node.name]

    def facts(self, node: Node) -> FactsResult:
        if node.name not in self._facts:
            self._facts[node.name] = self._gather(node)
        return self._facts[node.name]

    def _gather(self, node: Node) -> FactsResult:
        s = self.inventory.ssh
        where = f"ssh {s.user}@{s.destination(node)}"
        script = build_script(node, self.inventory.expect, s.command_timeout_s)
        start = time.monotonic()
        try:
            rc, out, err = self.transport.run_script(node, script)
        except subprocess.TimeoutExpired:
            return FactsResult(ProbeResult(ok=False, duration_s=time.monotonic() - start,
                                           message=f"{where}: no answer within "
                                                   f"{s.connect_timeout_s + s.command_timeout_s}s"))
        except OSError as e:
            return FactsResult(ProbeResult(ok=False, error=True, message=f"{where}: cannot run ssh: {e}"))
        duration = time.monotonic() - start
        if rc == 255:
            lines = [line for line in err.strip().splitlines() if line.strip()]
            return FactsResult(ProbeResult(ok=False, duration_s=duration,
                                           message=f"{where}: {lines[-1] if lines else 'connection failed'}"))
        return FactsResult(ProbeResult(ok=True, message=f"{where}: ok", duration_s=duration), NodeFacts.parse(out))

    def host(self, node: Node) -> Any:
        if node.name not in self._hosts:
            self._hosts[node.name] = self.transport.host(node)
        return self._hosts[node.name]

    def close(self) -> None:
        self.transport.close()
