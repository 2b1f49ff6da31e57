"""Every node of one pytest process: its ping, its ssh session, and their preparation before the checks run.

``prepare_all`` opens the nodes' connections concurrently at the start of the run and fills their caches
(pinging first: a node that does not answer is not sshed) with what the node's group (its role and kind) asked
last time (``seeds``, kept by the plugin in pytest's cache): one round trip per node, in a thread pool, nothing
else.

A group nobody learned from yet (a cold cache) is learned first, by :meth:`Nodes.learn`, in the main thread: a
``DryPass`` runs the checks of the group's first node through pytest with its host in dry mode (they record
the commands they ask), the recorded commands are fetched in one round trip per node (in the pool, the nodes in
parallel), and again until nothing new is asked. The group's other nodes then start from what it learned (one
round trip, no dry pass: a command of theirs that the first node did not ask runs live). What was learned is
kept (``seeds``) for the next run: a warm run has no dry pass at all.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path

from acceptance.inventory import Inventory, Node
from acceptance.transport import ping as pinging
from acceptance.transport.ping import ProbeResult
from acceptance.transport.session import NodeSession
from acceptance.transport.ssh import Ssh

MAX_PARALLEL = 32
MAX_ROUNDS = 8
# What testinfra asks every Linux host first (its system_info, behind every module's choice of class), one
# command after the other: asked together in the first round trip of a node nobody learned from yet. Only a
# hint: if testinfra asks something else, the dry pass learns it.
TESTINFRA_PRELUDE = ("uname -s", "cat /etc/os-release", "uname -m")


# Runs the checks of these sessions' nodes, the sessions in dry mode: what the checks ask is recorded by the
# sessions (acceptance.learning: through pytest itself, in the main thread).
DryPass = Callable[[Sequence[NodeSession]], None]


def group_of(node: Node) -> str:
    """Nodes that run the same checks, so ask the same commands: those of one role and kind."""
    return f"{node.role}/{node.kind}" if node.kind else node.role


class Nodes:
    def __init__(self, inventory: Inventory, control_dir: Path, *, seeds: dict[str, list[str]] | None = None,
                 ping: Callable[[str], ProbeResult] = pinging.ping, ssh: Ssh | None = None) -> None:
        self.inventory = inventory
        self.ssh = ssh or Ssh(inventory.ssh, control_dir)
        self.seeds: dict[str, list[str]] = dict(seeds or {})
        self._ping = ping
        self._pings: dict[str, ProbeResult] = {}
        self._sessions: dict[str, NodeSession] = {}
        self._ready: dict[str, Future[None]] = {}  # done once the node's checks may run
        self._learning: list[tuple[Node, Future[None], Future[None]]] = []  # (node, first fetch, ready): to learn
        self._followers: dict[str, list[tuple[Node, Future[None]]]] = defaultdict(list)  # wait for their group
        self._leading: set[str] = set()  # groups whose first node is being learned
        self._in_learn = False
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def session(self, node: Node) -> NodeSession:
        with self._lock:
            if node.name not in self._sessions:
                self._sessions[node.name] = NodeSession(node, self.ssh)
            return self._sessions[node.name]

    def ping(self, node: Node, fresh: bool = False) -> ProbeResult:
        with self._lock:
            known = None if fresh else self._pings.get(node.name)
        if known is None:
            known = self._ping(node.address or node.name)
            with self._lock:
                self._pings[node.name] = known
        return known

    def reset(self, node: Node, again: bool = False) -> None:
        """Forget everything about ``node`` (after a reboot): its next commands open a new connection; ``again``:
        its next use prepares it again (one seeded round trip) instead of asking live."""
        with self._lock:
            self._pings.pop(node.name, None)
            self._sessions.pop(node.name, None)
            if again:
                self._ready.pop(node.name, None)
        self.ssh.forget(node)

    # ------------------------------------------------------------------ preparing (the pool)

    def _first_fetch(self, node: Node) -> None:
        """Ping, then one round trip with what the node's group asked so far (or testinfra's prelude)."""
        answered = self.ping(node)
        if not answered.ok and not answered.error:
            return  # no answer to ping: node.ping fails and blocks the rest; ssh would only time out
        with self._lock:
            seed = list(self.seeds.get(group_of(node), ())) or list(TESTINFRA_PRELUDE)
        self.session(node).fetch(seed)

    def _run(self, node: Node, future: Future[None]) -> None:
        try:
            self._first_fetch(node)
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the node
            future.set_exception(e)
        else:
            future.set_result(None)

    def _submit(self, node: Node, future: Future[None]) -> None:
        try:
            self._executor().submit(self._run, node, future)
        except RuntimeError:  # the run ended (closed)
            future.cancel()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="prepare")
            return self._pool

    def started(self, node: Node) -> bool:
        return node.name in self._ready

    def prepare_all(self, nodes: Iterable[Node]) -> None:
        """Start preparing ``nodes`` in the background, concurrently. A node of a group nobody learned from yet
        waits for :meth:`learn` (the group's first node) or for its group's first node to be learned."""
        todo: list[tuple[Node, Future[None]]] = []
        first: list[tuple[Node, Future[None]]] = []
        with self._lock:
            for node in nodes:
                if node.name in self._ready:
                    continue
                ready = self._ready[node.name] = Future()
                group = group_of(node)
                if self.seeds.get(group):
                    todo.append((node, ready))
                elif group in self._leading:
                    self._followers[group].append((node, ready))
                else:
                    self._leading.add(group)
                    fetched: Future[None] = Future()
                    self._learning.append((node, fetched, ready))
                    first.append((node, fetched))
        for node, future in [*first, *todo]:
            self._submit(node, future)

    def ready(self, node: Node) -> NodeSession:
        """The node's session once prepared (preparing it here if nobody did). Asked while its group waits for
        :meth:`learn` that nobody runs (not from pytest's run loop): the group goes on without a dry pass (its
        commands not learned run live)."""
        with self._lock:
            future = self._ready.get(node.name)
            mine = future is None
            if future is None:
                future = self._ready[node.name] = Future()
            group = group_of(node)
            unlearned = [] if mine or self._in_learn else [e for e in self._learning if group_of(e[0]) == group]
            for entry in unlearned:
                self._learning.remove(entry)
        if mine:
            self._run(node, future)
        for member, fetched, member_ready in unlearned:
            wait([fetched])
            self._finish(member, fetched, member_ready, None)
        future.result()
        return self.session(node)

    # ------------------------------------------------------------------ learning (the main thread)

    def pending(self) -> bool:
        """Whether some nodes wait for :meth:`learn`."""
        return bool(self._learning)

    def learn(self, dry_pass: DryPass, max_rounds: int = MAX_ROUNDS) -> None:
        """In the main thread (where pytest runs the checks): learn the commands of the nodes waiting for it (the
        first node of each new group; all its nodes when the first could not be reached), all in lockstep: one dry
        pass over all of them, one round trip per node (in parallel), until nothing new is asked."""
        self._in_learn = True
        try:
            self._learn(dry_pass, max_rounds)
        finally:
            self._in_learn = False

    def _learn(self, dry_pass: DryPass, max_rounds: int) -> None:
        while True:
            with self._lock:
                batch, self._learning = self._learning, []
            if not batch:
                return
            try:
                wait([fetched for _, fetched, _ in batch])
                sessions = [self.session(node) for node, fetched, _ in batch
                            if not fetched.cancelled() and fetched.exception() is None and self.session(node).connected]
                self._rounds(sessions, dry_pass, max_rounds)
            finally:
                for node, fetched, ready in batch:
                    self._finish(node, fetched, ready, dry_pass)

    def _rounds(self, sessions: Sequence[NodeSession], dry_pass: DryPass, max_rounds: int) -> None:
        for _ in range(max_rounds):
            with ExitStack() as stack:
                asked = {s: stack.enter_context(s.dry()) for s in sessions}
                dry_pass(sessions)
            todo = {s: s.wanted(commands) for s, commands in asked.items()}
            sessions = [s for s in sessions if todo[s]]
            if not sessions:
                return
            if len(sessions) == 1:
                sessions[0].fetch(todo[sessions[0]])
            else:
                pool = self._executor()
                wait([pool.submit(s.fetch, todo[s]) for s in sessions])
            sessions = [s for s in sessions if s.connected]

    def _finish(self, node: Node, fetched: Future[None], ready: Future[None], dry_pass: DryPass | None) -> None:
        """The node is ready; what it learned is its group's seed, and the rest of its group can start."""
        session = self.session(node)
        group = group_of(node)
        start: list[tuple[Node, Future[None]]] = []
        with self._lock:
            if session.connected:
                known = self.seeds.setdefault(group, [])
                have = set(known)
                known.extend(c for c in session.learned() if c not in have)
            self._leading.discard(group)
            # nothing learned (the first node could not be reached): each of the others learns on its own
            learned = bool(self.seeds.get(group))
            for member, member_ready in self._followers.pop(group, []):
                if dry_pass is not None and not learned:
                    member_fetched: Future[None] = Future()
                    self._learning.append((member, member_fetched, member_ready))
                    start.append((member, member_fetched))
                else:
                    start.append((member, member_ready))
        for member, future in start:
            self._submit(member, future)
        if ready.done():
            return
        if fetched.cancelled():
            ready.cancel()
        elif fetched.exception() is not None:
            ready.set_exception(fetched.exception())
        else:
            ready.set_result(None)

    def learned(self) -> dict[str, list[str]]:
        """Per group, every command its nodes were asked this run (prefetched or live): the next run's seeds."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for session in self._sessions.values():
                if session.connected:
                    known = out.setdefault(group_of(session.node), [])
                    have = set(known)
                    known.extend(c for c in session.learned() if c not in have)
        return out

    def counters(self) -> dict[str, dict[str, int]]:
        return {name: c.as_dict() for name, c in self.ssh.counters.items()}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self.ssh.close()
