"""Server actions through openstacksdk with the remediation cloud (a member's credentials): the state of a
node's server, read fresh each time, what that state allows, and a reboot that reads it again right before acting.

What a state allows (:func:`classify`):

``busy``     a task in progress (any ``task_state``, or BUILD, REBUILD, REBOOT, HARD_REBOOT, RESIZE, ...): never act
``broken``   ERROR: a hard reboot may bring it back
``running``  ACTIVE, no task: the VM runs; a reboot may be asked when other evidence says the guest is dead
``human``    SHUTOFF, PAUSED, SUSPENDED, SHELVED, RESCUE, (SOFT_)DELETED: a human set it; report, never act
``unknown``  anything else (Nova's UNKNOWN when it lost the compute host): never act

Every openstacksdk, keystoneauth or requests error becomes :class:`ActionFailed` with one line (no credentials).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from acceptance.clients.errors import ApiError, one_line
from acceptance.clients.openstack_cloud import Side, connect, select_cloud, unwrap
from acceptance.inventory import Inventory, Node
from remediation.model import ActionFailed, Progress, Refused

Kind = Literal["broken", "running", "human", "busy", "unknown"]
GUARDRAIL = "openstack-state"
HUMAN = frozenset({"SHUTOFF", "PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED", "RESCUE", "SOFT_DELETED",
                   "DELETED"})
BUSY = frozenset({"BUILD", "REBUILD", "REBOOT", "HARD_REBOOT", "RESIZE", "VERIFY_RESIZE", "MIGRATING", "PASSWORD",
                  "REVERT_RESIZE"})
START_S = 20.0  # Nova sets the task state before it answers 202: seen at the first poll, bar a lost update


@dataclass(frozen=True)
class ServerState:
    """Nova's view of a server (``OS-EXT-STS:*``); ``updated``: its last change (a reboot that ran moves it)."""

    status: str
    task_state: str | None = None
    vm_state: str | None = None
    power_state: int | None = None
    updated: str | None = None

    def describe(self) -> str:
        extra = [f"task {self.task_state}"] if self.task_state else []
        extra += [f"vm_state {self.vm_state}"] if self.vm_state else []
        extra += [f"power_state {self.power_state}"] if self.power_state is not None else []
        return f"{self.status} ({', '.join(extra)})" if extra else self.status


def classify(state: ServerState) -> Kind:
    """What the state allows (see the module's docstring). A task comes first: Nova shows a hard reboot of a
    server in ERROR as ERROR with task ``rebooting_hard``, which is in progress, not broken."""
    if state.task_state or state.status in BUSY:
        return "busy"
    if state.status == "ERROR":
        return "broken"
    if state.status == "ACTIVE":
        return "running"
    if state.status in HUMAN:
        return "human"
    return "unknown"


def refusal(node: Node, state: ServerState, hard: bool) -> str | None:
    """Why a reboot must not be asked in this state, or None."""
    kind, shows = classify(state), f"OpenStack shows {node.name} {state.describe()}"
    if kind == "running" or (kind == "broken" and hard):
        return None
    return {
        "broken": f"{shows}: only a hard reboot can bring it back, a soft one is not tried",
        "human": f"{shows}: a state a human set, reported and never acted on (start it by hand if it should run)",
        "busy": f"{shows}: something is in progress, never acted on while it lasts",
    }.get(kind, f"{shows}: a state the suite does not know, never acted on")


def _api_errors() -> tuple[type[BaseException], ...]:
    import keystoneauth1.exceptions
    import openstack.exceptions
    import requests

    return (ApiError, openstack.exceptions.SDKException, keystoneauth1.exceptions.ClientException,
            requests.RequestException)


@contextmanager
def _api(what: str) -> Iterator[None]:
    """An API error as ActionFailed, one line, redacted; ``from None``: no chained traceback to leak either."""
    try:
        yield
    except ActionFailed:
        raise
    except Exception as e:
        if not isinstance(e, _api_errors()):
            raise
        raise ActionFailed(f"OpenStack: {what}: {_said(e)}") from None


def _said(e: BaseException) -> str:
    """One line: Nova's own words for an HTTP error (its body, not the request's URL), else the exception's (the
    session's own under keystoneauth's wrapping: a refused redirect, the deadline, the body cap)."""
    e = unwrap(e)
    if isinstance(e, ApiError):  # already one line, naming the fix
        return one_line(e, 400)
    status, details = getattr(e, "status_code", None), getattr(e, "details", None)
    text = f"HTTP {status}: {details}" if status and details else str(e)
    name = type(e).__name__
    return one_line(text if text.startswith(name) else f"{name}: {text}", 240)


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class OpenStack:
    """Server actions through openstacksdk, in the node's project (VMs and masters, or physical nodes).
    ``connect``: the node's openstacksdk Connection (a seam for tests; default: from clouds.yaml)."""

    def __init__(self, inventory: Inventory, connect: Callable[[Node], Any] | None = None) -> None:
        self.inventory = inventory
        self._connect = connect or self._from_clouds_yaml
        self._connections: dict[str, Any] = {}

    def _from_clouds_yaml(self, node: Node) -> Any:
        # the read side's cloud selection (its own remediation cloud, a member's credentials, as the other APIs
        # have remediation tokens of their own) and its one hardened session
        side: Side = "metal" if node.role == "agent" and node.kind == "metal" else "vm"
        return connect(select_cloud(self.inventory, side, remediation=True, project=node.project))

    def _connection(self, node: Node) -> Any:
        if node.name not in self._connections:  # one login per node's cloud; openstacksdk renews the token
            with _api(f"cannot connect for {node.name}"):
                self._connections[node.name] = self._connect(node)
        return self._connections[node.name]

    def server(self, node: Node) -> tuple[Any, str]:
        """The connection and the server's id."""
        conn = self._connection(node)
        with _api(f"cannot look up the server {node.name}"):
            server = conn.compute.find_server(node.name, ignore_missing=True)
        if server is None:
            raise ActionFailed(f"no OpenStack server {node.name}")
        return conn, str(server.id)

    @staticmethod
    def _read(conn: Any, server_id: str, node: Node) -> ServerState:
        with _api(f"cannot read the server {node.name}"):
            s = conn.compute.get_server(server_id)
            return ServerState(status=str(s.status or "UNKNOWN"), task_state=getattr(s, "task_state", None) or None,
                               vm_state=getattr(s, "vm_state", None) or None,
                               power_state=_int(getattr(s, "power_state", None)),
                               updated=getattr(s, "updated_at", None) or None)

    def state(self, node: Node) -> ServerState:
        """The server's state now (never a cached one)."""
        conn, server_id = self.server(node)
        return self._read(conn, server_id, node)

    def status(self, node: Node) -> str:
        return self.state(node).status

    def reboot(self, node: Node, hard: bool, progress: Progress, timeout_s: float = 600) -> str:
        """Reboot through Nova, only from a state that allows it (read again right here, else :class:`Refused`),
        then wait for Nova to take it and for the server to be ACTIVE with no task."""
        how = "hard" if hard else "soft"
        conn, server_id = self.server(node)
        before = self._read(conn, server_id, node)
        why = refusal(node, before, hard)
        if why is not None:
            raise Refused(GUARDRAIL, why)
        with _api(f"{how} reboot of {node.name}"):
            conn.compute.reboot_server(server_id, "HARD" if hard else "SOFT")

        deadline = time.monotonic() + min(START_S, timeout_s)
        unseen: list[ServerState] = []

        def started() -> bool:  # Nova flips the status / task state asynchronously
            now = self._read(conn, server_id, node)
            if now.task_state or now.status != before.status or now.updated != before.updated:
                return True
            if time.monotonic() >= deadline:  # a reboot quicker than a poll and than `updated`'s whole seconds
                unseen.append(now)
                return True
            return False

        def settled() -> bool:
            now = self._read(conn, server_id, node)
            if now.task_state or now.status in BUSY:
                return False
            if now.status != "ACTIVE":
                raise ActionFailed(f"the {how} reboot of {node.name} ended with the server {now.describe()}")
            return True

        progress.wait(f"Nova to take the {how} reboot of {node.name}", started, min(START_S, timeout_s) + 30, 1.0)
        progress.wait(f"{node.name} ACTIVE with no task", settled, timeout_s)
        seen = "; Nova accepted it but never showed it in progress, ping and ssh will tell" if unseen else ""
        return f"{node.name} {how} rebooted through OpenStack (it was {before.describe()}{seen})"
