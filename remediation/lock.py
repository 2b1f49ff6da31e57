"""One disruptive action at a time in the whole cluster: a Consul session lock shared by every runner (the
nightly CI, an operator's shell), with its owner in the key and a TTL that a killed run cannot outlive.

The session's TTL is half the configured one (Consul invalidates a session up to twice its TTL after the
last renewal), its behaviour ``delete`` (the key goes with it); a thread renews it while the lock is held.
When the lock cannot be taken or checked (Consul without a leader, a refused token) the answer is a refusal:
disruptive actions never run unlocked.

Break it (after checking that its owner is really gone)::

    python -m remediation.lock status --inventory=prod.yaml
    python -m remediation.lock break  --inventory=prod.yaml
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from acceptance.inventory import InventoryError, load_inventory
from remediation.clients import Http, write_config
from remediation.model import ActionFailed


class ConsulLock:
    def __init__(self, http: Http, key: str, ttl_s: float, run_id: str) -> None:
        self.http = http
        self.key = key.strip("/")
        self.ttl_s = max(20.0, float(ttl_s))
        self.owner = {"run_id": run_id, "host": socket.gethostname(), "user": getpass.getuser(), "pid": os.getpid(),
                      "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ttl_s": self.ttl_s}
        self.session: str | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> str | None:
        """Take the lock; None when held, else why not (held by whom, or cannot be checked)."""
        try:
            created = self.http.call("PUT", "/v1/session/create", {
                "Name": "alice-acceptance remediation", "TTL": f"{int(self.ttl_s / 2)}s", "Behavior": "delete",
                "LockDelay": "0s"})
            self.session = str(created["ID"])
            taken = self.http.call("PUT", f"/v1/kv/{self.key}", self.owner, params={"acquire": self.session})
        except (ActionFailed, KeyError, TypeError) as e:
            self._destroy()
            return f"the remediation lock cannot be taken or checked ({e}): disruptive actions refused"
        if taken is not True:
            self._destroy()
            holder = holder_of(self.http, self.key)
            return f"the remediation lock is held by {describe(holder)}" if holder else "the remediation lock is held"
        self._renewer = threading.Thread(target=self._renew, name="remediation-lock", daemon=True)
        self._renewer.start()
        return None

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 6):
            try:
                self.http.call("PUT", f"/v1/session/renew/{self.session}")
            except ActionFailed:
                self.lost.set()  # the action in progress finishes; nothing disruptive starts after it
                return

    def _destroy(self) -> None:
        if self.session:
            with contextlib.suppress(ActionFailed):  # else the TTL ends it
                self.http.call("PUT", f"/v1/session/destroy/{self.session}")
        self.session = None

    def release(self) -> None:
        self._stop.set()
        if self.session:
            with contextlib.suppress(ActionFailed):
                self.http.call("PUT", f"/v1/kv/{self.key}", self.owner, params={"release": self.session})
        self._destroy()


def holder_of(http: Http, key: str) -> dict[str, Any] | None:
    try:
        entries = http.call("GET", f"/v1/kv/{key.strip('/')}", ok=(200, 404))
    except ActionFailed:
        return None
    if not isinstance(entries, list) or not entries or not entries[0].get("Session"):
        return None
    entry = entries[0]
    try:
        owner = json.loads(base64.b64decode(entry.get("Value") or b"").decode() or "{}")
    except ValueError:
        owner = {}
    return {**(owner if isinstance(owner, dict) else {}), "session": entry["Session"]}


def describe(holder: dict[str, Any]) -> str:
    return (f"run {holder.get('run_id', '?')} of {holder.get('user', '?')}@{holder.get('host', '?')} "
            f"(pid {holder.get('pid', '?')}, since {holder.get('since', '?')}, session {holder.get('session')})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m remediation.lock",
                                description="Show or break the cluster-wide remediation lock (a Consul session).")
    p.add_argument("command", choices=("status", "break"))
    p.add_argument("--inventory", required=True)
    args = p.parse_args(argv)
    try:
        inventory = load_inventory(args.inventory)
    except InventoryError as e:
        print(e, file=sys.stderr)
        return 4
    settings = inventory.remediation
    http = Http(write_config("consul", inventory, [n for n in inventory.nodes if n.role == "master"]))
    holder = holder_of(http, settings.lock_key)
    if holder is None:
        print(f"{settings.lock_key}: free")
        return 0
    print(f"{settings.lock_key}: held by {describe(holder)}")
    if args.command == "break":
        try:
            http.call("PUT", f"/v1/session/destroy/{holder['session']}")
        except ActionFailed as e:
            print(f"cannot break it: {e}", file=sys.stderr)
            return 1
        print("broken: the session is destroyed, the key released")
    return 0


if __name__ == "__main__":
    sys.exit(main())
