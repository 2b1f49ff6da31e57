"""What a remediation is: an action on one node, read-then-act and idempotent, and what can come of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from acceptance.inventory import Node

Mode = Literal["off", "dry-run", "safe", "all"]
MODES: tuple[Mode, ...] = ("off", "dry-run", "safe", "all")
Gate = Literal["quorum", "workload"]  # a master's raft quorum; an agent's running allocations


class ActionFailed(Exception):
    """The action could not do its work: the check stays failed, ``remediation failed`` with this reason."""


class NeedsHuman(Exception):
    """Not fixable by the suite (an expired TSM registration, a sealed Vault): say so and escalate."""


class Interrupted(Exception):
    """The run was asked to stop while the action waited."""


@dataclass
class Progress:
    """How an action reports what it is doing and waits without blocking an interruption."""

    say: Callable[[str], None] = lambda message: None
    stopped: Callable[[], bool] = lambda: False

    def wait(self, what: str, done: Callable[[], bool], timeout_s: float, every_s: float = 2.0) -> None:
        import time

        self.say(f"waiting for {what} (up to {timeout_s:.0f} s)")
        end = time.monotonic() + timeout_s
        while not done():
            if self.stopped():
                raise Interrupted(f"interrupted while waiting for {what}")
            if time.monotonic() >= end:
                raise ActionFailed(f"{what}: not within {timeout_s:.0f} s")
            time.sleep(every_s)


@dataclass
class Action:
    """One remediation of one node. ``do`` reads the state first and does nothing when there is nothing to do;
    it returns what it did. ``gates``: what must hold before a disruptive action (and what it prepares)."""

    name: str
    node: Node
    summary: str
    do: Callable[[Progress], str]
    state: Callable[[], str] = lambda: ""
    disruptive: bool = False
    gates: tuple[Gate, ...] = ()
    settle_s: float | None = None  # how long the re-check may take to pass (default: the inventory's)
    escalation: tuple[str, ...] = field(default_factory=tuple)  # what comes when this action's budget is spent
