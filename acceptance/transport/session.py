"""One node's testinfra host, answered from a cache that batches fill, and the dry pass that learns what to
batch.

The checks use testinfra's own ``host`` (``host.service(...)``, ``host.file(...)``, ``host.run(...)``); its
backend here is :class:`SessionBackend`, which answers each command from the node's cache. Before the checks
run, :func:`learn` calls the node's checks against the same host in *dry* mode: a command that is not in the
cache is not run but recorded (:class:`NeedCommand` stops that check), then every recorded command is fetched
in ONE round trip, and again until the checks ask for nothing new (testinfra's module detection makes a few
rounds on the first node; nodes of the same role start from what it learned and need one). The answers are
real: a check run afterwards reads exactly what testinfra would have got. A command not learned runs live on
the master connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
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

    @contextmanager
    def dry(self) -> Iterator[list[str]]:
        with self._lock:
            self._dry, self._wanted = True, []
            try:
                yield self._wanted
            finally:
                self._dry = False

    def dry_run(self, probes: Sequence[Callable[[], object]]) -> list[str]:
        """Run ``probes`` (the node's checks bound to this host) without running anything new on the node;
        return the commands they asked for, in order. Their verdicts do not matter here."""
        with self.dry() as wanted:
            for index, probe in enumerate(probes):
                self._position = (index, 0)
                try:
                    probe()
                except (Exception, pytest.fail.Exception, pytest.skip.Exception):  # noqa: S112 - only commands matter
                    continue
            return sorted(dict.fromkeys(wanted), key=self.position)

    def position(self, command: str) -> tuple[int, int]:
        """Where the checks ask ``command`` (their order, as a plain testinfra run would send them)."""
        return self.order.get(command, (1 << 30, 0))

    def learned(self) -> list[str]:
        """The commands answered, in the order the checks ask them."""
        return sorted(self.cache, key=self.position)


def learn(session: NodeSession, probes: Sequence[Callable[[], object]], seed: Sequence[str] = (),
          max_rounds: int = 8) -> None:
    """Fill ``session``'s cache with what ``probes`` will ask: ``seed`` first, then dry passes and round trips
    until nothing new is asked (or the connection fails, or ``max_rounds``)."""
    pending = list(seed)
    for _ in range(max_rounds + 1):
        if pending:
            session.fetch(pending)
            if not session.connected:
                return
        pending = [c for c in session.dry_run(probes) if c not in session.cache and c not in session.missing]
        if not pending:
            return


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
