"""One disruptive action at a time in the whole cluster: a Consul session lock shared by every runner (the
nightly CI, an operator's shell), with its owner in the key and a TTL that a killed run cannot outlive.

The session's TTL is half the configured one (Consul invalidates a session up to twice its TTL after the
last renewal), its behaviour ``delete`` (the key goes with it), and it has no health check: with Consul's
default (the answering agent's serfHealth), rebooting that master would free the lock in the middle of an
action. A thread renews it while a run holds the lock, and the run verifies the key right before each
disruptive step. When the lock cannot be taken or checked (Consul without a leader, a refused token) the answer
is a refusal: disruptive actions never run unlocked.

A hold (``gate --prepare``) is the same lock for a human: nobody renews it, it lasts the configured TTL or until
``alice-acceptance release``.

Show or break it (break: after checking that its owner is really gone)::

    python -m remediation.lock status  --inventory=prod.yaml
    python -m remediation.lock break   --inventory=prod.yaml
    python -m remediation.lock release --inventory=prod.yaml   # a hold only
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import socket
import sys
import threading
import time
from typing import Any, NoReturn

from acceptance.inventory import InventoryError
from acceptance.printable import escape_controls, show
from remediation.clients import Api, consul_of
from remediation.model import ActionFailed
from remediation.state import StateUnavailable, kv_entry, kv_json, put


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class ConsulLock:
    def __init__(self, http: Api, key: str, ttl_s: float, run_id: str) -> None:
        self.http = http
        self.key = key.strip("/")
        self.ttl_s = min(86400.0, max(20.0, float(ttl_s)))  # the session's TTL (half) within Consul's 10s-24h
        self.owner: dict[str, Any] = {"run_id": run_id, "host": socket.gethostname(), "user": getpass.getuser(),
                                      "pid": os.getpid(), "since": _utc(time.time()), "ttl_s": self.ttl_s}
        self.session: str | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> str | None:
        """Take the lock and keep it renewed; None when held, else why not (held by whom, or cannot be checked)."""
        refusal = self._take()
        if refusal is None:
            self._renewer = threading.Thread(target=self._renew, name="remediation-lock", daemon=True)
            self._renewer.start()
        return refusal

    def hold(self, purpose: str) -> str | None:
        """Take the lock for a human: nobody renews it, the process may exit, it ends with its TTL or with
        ``release_hold``; None when held, else why not."""
        now = time.time()
        self.owner = {**self.owner, "hold": purpose, "until": _utc(now + self.ttl_s)}
        return self._take()

    def _take(self) -> str | None:
        try:
            # no NodeChecks: the lock must not end with the agent that answered (a master being rebooted)
            created = self.http.lib("PUT /v1/session/create", lambda c: create_session(c, self.ttl_s))
            if not isinstance(created, str) or not created:
                raise ActionFailed("Consul's answer to creating a session has no ID")
            self.session = created
            taken = put(self.http, self.key, self.owner, params={"acquire": self.session})
        except (ActionFailed, StateUnavailable) as e:
            self._destroy()
            return f"the remediation lock cannot be taken or checked ({e}): disruptive actions refused"
        if not taken:
            self._destroy()
            try:
                holder = holder_of(self.http, self.key)
            except StateUnavailable as e:
                return f"the remediation lock is held, by whom cannot be read ({e})"
            return f"the remediation lock is held by {describe(holder)}" if holder else "the remediation lock is held"
        return None

    def verify(self) -> str | None:
        """Right before a disruptive step: None only when the key is still held by our session, else why not."""
        if self.session is None:
            return "not held"
        if self.lost.is_set():
            return "its session could not be renewed"
        try:
            entry = kv_entry(self.http, self.key)
        except StateUnavailable as e:
            return f"it cannot be read ({e})"
        if entry is None:
            return "its key is gone (the session expired or was destroyed)"
        if entry.get("Session") == self.session:
            return None
        if not entry.get("Session"):
            return "its key is no longer held"
        try:
            holder: dict[str, Any] = {**_owner(entry, self.key), "session": entry["Session"]}
        except StateUnavailable:
            holder = {"session": entry["Session"]}
        return f"now held by {describe(holder)}"

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 6):
            try:
                self.http.lib("PUT /v1/session/renew", lambda c: c.session.renew(self.session))
            except ActionFailed:
                self.lost.set()  # the action in progress finishes; nothing disruptive starts after it
                return

    def _destroy(self) -> None:
        if self.session:
            with contextlib.suppress(ActionFailed):  # else the TTL ends it
                self.http.lib("PUT /v1/session/destroy", lambda c: c.session.destroy(self.session))
        self.session = None

    def release(self) -> None:
        self._stop.set()
        if self.session:
            with contextlib.suppress(ActionFailed, StateUnavailable):
                put(self.http, self.key, self.owner, params={"release": str(self.session)})
        self._destroy()


def create_session(consul: Any, ttl_s: float) -> Any:
    """A session with no health check (the lock must not end with the agent that answered: a master being
    rebooted). py-consul's ``session.create`` cannot leave out the service checks: its HTTP client's own put."""
    from consul.callback import CB  # type: ignore[import-untyped]

    body = {"Name": "alice-acceptance remediation", "TTL": f"{int(ttl_s / 2)}s", "Behavior": "delete",
            "LockDelay": "0s", "NodeChecks": [], "ServiceChecks": []}
    return consul.http.put(CB.json(is_id=True), "/v1/session/create", data=json.dumps(body),
                           headers=consul.prepare_headers())


def _owner(entry: dict[str, Any], key: str) -> dict[str, Any]:
    try:
        owner = kv_json(entry, key)
    except StateUnavailable:
        return {}  # held all the same, by an owner this suite did not write
    return owner if isinstance(owner, dict) else {}


def holder_of(http: Api, key: str) -> dict[str, Any] | None:
    """The lock's owner and ``session`` (None: free); StateUnavailable when Consul cannot tell."""
    entry = kv_entry(http, key.strip("/"))
    if entry is None or not entry.get("Session"):
        return None
    return {**_owner(entry, key), "session": entry["Session"]}


def describe(holder: dict[str, Any]) -> str:
    text = (f"run {holder.get('run_id', '?')} of {holder.get('user', '?')}@{holder.get('host', '?')} "
            f"(pid {holder.get('pid', '?')}, since {holder.get('since', '?')}, session {holder.get('session')})")
    if holder.get("hold"):
        text += f", a hold until {holder.get('until', '?')}: {holder['hold']}"
    return text


def release_hold(http: Api, key: str) -> str:
    """``alice-acceptance release``: end a hold (what was released); ActionFailed when the lock is a running
    run's (or it cannot be read or released)."""
    try:
        holder = holder_of(http, key)
    except StateUnavailable as e:
        raise ActionFailed(f"the remediation lock cannot be read ({e})") from None
    if holder is None:
        return f"{key}: free, no hold to release"
    if not holder.get("hold"):
        raise ActionFailed(f"{key} is held by {describe(holder)}, a remediation run's lock, not a hold: not "
                           "released; if its owner is gone (check its host and pid), use `alice-acceptance lock break`")
    http.lib("PUT /v1/session/destroy", lambda c: c.session.destroy(holder["session"]))
    return f"released the hold of {describe(holder)}"


class UsageParser(argparse.ArgumentParser):
    """argparse with the suite's usage errors (remediation.lock's and remediation.switch's): exit 4, argparse's 2
    meaning "interrupted" here, and one line ``<prog>: <problem>; fix: <what to do>``."""

    def error(self, message: str) -> NoReturn:
        self.exit(4, escape_controls(f"{self.prog}: {' '.join(message.split())}; fix: see {self.prog} --help") + "\n")


def main(argv: list[str] | None = None) -> int:
    """0: done (status: free or held), 1: Consul cannot be read or written, 4: bad input."""
    p = UsageParser(prog="python -m remediation.lock",
                    description="Show, break or release the cluster-wide remediation lock (a Consul session).")
    p.add_argument("command", choices=("status", "break", "release"))
    p.add_argument("--inventory", metavar="FILE", required=True, help="the cluster's inventory")
    args = p.parse_args(argv)
    try:
        inventory, http = consul_of(args.inventory)
    except InventoryError as e:
        show(e, file=sys.stderr)
        return 4
    key = inventory.remediation.lock_key
    if args.command == "release":
        try:
            show(release_hold(http, key))
        except ActionFailed as e:
            show(f"cannot release it: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        holder = holder_of(http, key)
    except StateUnavailable as e:
        show(f"{key}: unknown: {e}")
        return 1
    if holder is None:
        show(f"{key}: free")
        return 0
    show(f"{key}: held by {describe(holder)}")
    if args.command == "break":
        try:
            http.lib("PUT /v1/session/destroy", lambda c: c.session.destroy(holder["session"]))
        except ActionFailed as e:
            show(f"cannot break it: {e}", file=sys.stderr)
            return 1
        show("broken: the session is destroyed, the key released")
    return 0


if __name__ == "__main__":
    sys.exit(main())
