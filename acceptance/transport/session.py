"""One node's testinfra host, answered from a cache that batches fill, and its *dry* mode, in which the checks
tell what to batch.

The checks use testinfra's own ``host`` (``host.service(...)``, ``host.file(...)``, ``host.run(...)``); its
backend here is :class:`SessionBackend`, which answers each command from the node's cache. While the node's
commands are learned (:meth:`NodeSession.dry`, driven by acceptance.transport.nodes and acceptance.learning,
which run the node's checks through pytest), a command that is not in the cache is not run but recorded
(:class:`NeedCommand` stops that check); the recorded commands are then fetched in ONE round trip, and the
checks run dry again until they ask for nothing new. The answers are real: a check run afterwards reads exactly
what testinfra would have got. A command not learned runs live on the master connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend

from acceptance.inventory import Node
from acceptance.outcomes import CheckError
from acceptance.transport.batch import TIMED_OUT, Answer
from acceptance.transport.ssh import Ssh, SshResult


class NeedCommand(Exception):  # noqa: N818 - a signal, not an error
    """Dry mode: the check wants a command whose answer is not cached yet."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command


class TransportError(CheckError):
    """A command could not be answered (ssh failed, answer missing): the check reports ``error``."""


class NodeSession:
    """The cache of one node's answers, its connection result and its testinfra host."""

    def __init__(self, node: Node, ssh: Ssh) -> None:
        self.node = node
        self.ssh = ssh
        self.cache: dict[str, Answer] = {}
        self.missing: dict[str, str] = {}  # command -> why it has no answer
        self.connection: SshResult | None = None  # the first round trip's result
        self.rounds = 0
        self.order: dict[str, tuple[int, int]] = {}  # command -> (check, step) where the checks first ask it
        self._dry = False
        self._wanted: list[str] = []
        self._position = (0, 0)
        self._lock = threading.RLock()
        self.host = _host(SessionBackend(self))
        self.live_host = _host(SessionBackend(self, live=True))  # for remediation: every command runs, now

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.ok

    def fetch(self, commands: Sequence[str], live: bool = False) -> None:
        """One round trip answering those of ``commands`` not cached yet."""
        with self._lock:
            todo = [c for c in dict.fromkeys(commands) if c not in self.cache]
            if not todo or (self.connection is not None and not self.connection.ok):
                return
            result = self.ssh.run(self.node, todo, live=live)
            self.rounds += 1
            if self.connection is None or not result.connection.ok:
                self.connection = result.connection
            for i, command in enumerate(todo):
                answer = result.answers.get(i)
                if answer is not None and answer.rc != TIMED_OUT:
                    self.cache[command] = answer
                    self.missing.pop(command, None)
                elif answer is not None:
                    self.missing[command] = f"stopped after {self.ssh.settings.command_timeout_s} s without an answer"
                else:
                    self.missing[command] = result.problem or result.connection.message

    def connect(self) -> SshResult:
        """The connection's result, opening it (with a trivial command) if nothing was fetched yet."""
        if self.connection is None:
            self.fetch(["true"])
        assert self.connection is not None
        return self.connection

    def answer(self, command: str) -> Answer:
        with self._lock:
            if self._dry:
                probe, step = self._position
                self.order.setdefault(command, (probe, step))
                self._position = (probe, step + 1)
            if command in self.cache:
                return self.cache[command]
            if self._dry:
                self._wanted.append(command)
                raise NeedCommand(command)
            self.fetch([command], live=True)
            if command in self.cache:
                return self.cache[command]
            reason = self.missing.get(command) or (self.connection.message if self.connection else "no answer")
            raise TransportError(f"{self.node.name}: no answer to {command!r}: {reason}")

    def run_live(self, command: str) -> Answer:
        """Run ``command`` now, whatever is cached (an action: the same command twice runs twice)."""
        with self._lock:
            if self._dry:
                raise NeedCommand(command)  # never learned, never batched: an action runs only when asked for real
            self.cache.pop(command, None)
            self.missing.pop(command, None)
            answer = self.answer(command)
            self.cache.pop(command, None)  # an action's answer says nothing about later reads
            return answer

    def invalidate(self) -> None:
        """Forget every answer (after a remediation changed the node): the next reads are live."""
        with self._lock:
            self.cache.clear()
            self.missing.clear()

    @property
    def learning(self) -> bool:
        """In dry mode: its commands are being learned (the checks running now only record what they ask)."""
        return self._dry

    @contextmanager
    def dry(self) -> Iterator[list[str]]:
        """Dry mode: a command not cached is recorded (in the list given) and stops the check that asked it."""
        with self._lock:
            self._dry, self._wanted, self._position = True, [], (0, 0)
            try:
                yield self._wanted
            finally:
                self._dry = False

    def probe(self, index: int) -> None:
        """In dry mode: the commands asked from now on are the ``index``-th check's (their order in a batch)."""
        self._position = (index, 0)

    def wanted(self, asked: Sequence[str]) -> list[str]:
        """Those of ``asked`` (in dry mode) neither answered nor known to have no answer, in the checks' order."""
        return sorted((c for c in dict.fromkeys(asked) if c not in self.cache and c not in self.missing),
                      key=self.position)

    def position(self, command: str) -> tuple[int, int]:
        """Where the checks ask ``command`` (their order, as a plain testinfra run would send them)."""
        return self.order.get(command, (1 << 30, 0))

    def learned(self) -> list[str]:
        """The commands answered, in the order the checks ask them."""
        return sorted(self.cache, key=self.position)


def _host(backend: SessionBackend) -> Any:
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


class SessionBackend(BaseBackend):  # type: ignore[misc]
    """testinfra's backend interface, answered by a :class:`NodeSession` (no local shell anywhere): from its
    cache for the checks, or ``live`` for remediation actions."""

    NAME = "alice-ssh"

    def __init__(self, session: NodeSession, live: bool = False) -> None:
        super().__init__(session.node.name)
        self.session = session
        self.live = live

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd = self.get_command(command, *args)
        answer = self.session.run_live(cmd) if self.live else self.session.answer(cmd)
        return self.result(answer.rc, self.encode(cmd), answer.stdout, answer.stderr)

    def get_encoding(self) -> str:
        return "utf-8"  # the nodes run UTF-8 locales; asking costs a round trip per node

    def decode(self, data: bytes) -> str:
        # a stray Latin-1 byte must not make every check of the node an exception
        return data.decode("utf-8", errors="replace")
