"""What a remediation is: an action on one node, read-then-act and idempotent, and what can come of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from acceptance.inventory import Node

Mode = Literal["off", "dry-run", "safe", "all"]
MODES: tuple[Mode, ...] = ("off", "dry-run", "safe", "all")
# lock: the cluster-wide remediation lock; quorum: the two other masters healthy; leadership: moved off the
# master first; workload: the agent drained and idle; node-healthy: every check of the node itself passed in this run
Gate = Literal["lock", "quorum", "leadership", "workload", "node-healthy"]


class ActionFailed(Exception):
    """The action could not do its work: the check stays failed, ``remediation failed`` with this reason."""


class NeedsHuman(Exception):
    """Not fixable by the suite (an expired TSM registration, a sealed Vault): say so and escalate."""


class Refused(Exception):
    """A guardrail inside an action said no after reading the state (e.g. OpenStack shows a human's SHUTOFF)."""

    def __init__(self, guardrail: str, reason: str) -> None:
        super().__init__(reason)
        self.guardrail = guardrail
        self.reason = reason


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
    it returns what it did. ``disruptive``: needs ``--remediate=all`` and counts against the caps. ``gates``: what
    must hold before it runs (and what it prepares). ``confirm``: asks independent sources whether the failure is
    real, right before acting (None: confirmed, else why not). ``resolve``: an action whose class depends on the
    state (a unit that runs but is disabled is enabled, never restarted) is chosen when the engine decides."""

    name: str
    node: Node
    summary: str
    do: Callable[[Progress], str]
    state: Callable[[], str] = lambda: ""
    disruptive: bool = False
    gates: tuple[Gate, ...] = ()
    settle_s: float | None = None  # how long the re-check may take to pass (default: the inventory's)
    escalation: tuple[str, ...] = field(default_factory=tuple)  # what comes when this action's budget is spent
    confirm: Callable[[], str | None] | None = None
    resolve: Callable[[], Action] | None = None  # reads the state now and returns the action its class calls for
