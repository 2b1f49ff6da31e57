"""Every node of one pytest process: its ping, its ssh session, and their preparation before the checks run.

``prepare_all`` opens the nodes' connections concurrently at the start of the run and fills their caches
(pinging first: a node that does not answer is not sshed). Nodes are grouped by role and kind: the first
node of a group learns which commands its checks run, the others start from that list, so they cost one
round trip. What was learned is kept (``seeds``) for the next run.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from acceptance.inventory import Inventory, Node
from acceptance.transport import ping as pinging
from acceptance.transport.ping import ProbeResult
from acceptance.transport.session import NodeSession, learn
from acceptance.transport.ssh import Ssh

ProbesFor = Callable[[NodeSession], Sequence[Callable[[], object]]]
MAX_PARALLEL = 32
# What testinfra asks every Linux host first (its system_info, behind every module's choice of class), one
# command after the other: asked together in the first round trip of a node nobody learned from yet. Only a
# hint: if testinfra asks something else, the dry pass learns it.
TESTINFRA_PRELUDE = ("uname -s", "cat /etc/os-release", "uname -m")


def group_of(node: Node) -> str:
    return node.role


class Nodes:
    def __init__(self, inventory: Inventory, control_dir: Path, probes_for: ProbesFor,
                 seeds: dict[str, list[str]] | None = None,
                 ping: Callable[[str], ProbeResult] = pinging.ping, ssh: Ssh | None = None) -> None:
        self.inventory = inventory
        self.ssh = ssh or Ssh(inventory.ssh, control_dir)
        self.probes_for = probes_for
        self.seeds: dict[str, list[str]] = dict(seeds or {})
        self._ping = ping
        self._pings: dict[str, ProbeResult] = {}
        self._sessions: dict[str, NodeSession] = {}
        self._ready: dict[str, Future[None]] = {}
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

    def _prepare(self, node: Node) -> None:
        answered = self.ping(node)
        if not answered.ok and not answered.error:
            return  # no answer to ping: node.ping fails and blocks the rest; ssh would only time out
        session = self.session(node)
        group = group_of(node)
        with self._lock:
            seed = list(self.seeds.get(group, ())) or list(TESTINFRA_PRELUDE)
        learn(session, self.probes_for(session), seed)
        if session.connected:
            with self._lock:
                known = self.seeds.setdefault(group, [])
                have = set(known)
                known.extend(c for c in session.learned() if c not in have)

    def _future(self, node: Node) -> tuple[Future[None], bool]:
        with self._lock:
            future = self._ready.get(node.name)
            if future is not None:
                return future, False
            future = self._ready[node.name] = Future()
            return future, True

    def _run(self, node: Node, future: Future[None]) -> None:
        try:
            self._prepare(node)
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the node
            future.set_exception(e)
        else:
            future.set_result(None)

    def ready(self, node: Node) -> NodeSession:
        """The node's session once prepared (preparing it here if nobody started it)."""
        future, mine = self._future(node)
        if mine:
            self._run(node, future)
        future.result()
        return self.session(node)

    def prepare_all(self, nodes: Iterable[Node]) -> None:
        """Start preparing ``nodes`` in the background, concurrently (group leaders first)."""
        groups: dict[str, list[tuple[Node, Future[None]]]] = defaultdict(list)
        for node in nodes:
            future, mine = self._future(node)
            if mine:
                groups[group_of(node)].append((node, future))
        if not groups:
            return
        size = min(MAX_PARALLEL, sum(len(m) for m in groups.values()))
        pool = self._pool = self._pool or ThreadPoolExecutor(max_workers=size, thread_name_prefix="prepare")
        for group, members in groups.items():
            if self.seeds.get(group):
                for node, future in members:
                    pool.submit(self._run, node, future)
                continue
            (leader, leader_future), rest = members[0], members[1:]

            def followers(_: Future[None], rest: list[tuple[Node, Future[None]]] = rest) -> None:
                for node, future in rest:
                    try:
                        pool.submit(self._run, node, future)
                    except RuntimeError:  # the run ended (closed) before the leader was done
                        future.cancel()

            pool.submit(self._run, leader, leader_future)
            leader_future.add_done_callback(followers)

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
