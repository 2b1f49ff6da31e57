"""The cluster-wide kill switch: while ``remediation.stop_key`` exists in Consul KV, no runner remediates
anything (``alice-acceptance stop --reason TEXT`` / ``alice-acceptance resume``).

Whatever is at the key stops remediation, even a value that is not this module's JSON (``consul kv put
alice-acceptance/stop "disk swap"`` works too): a switch meant to stop must not be ignored for its format.

    python -m remediation.switch stop --reason "INC0123: hands off" --inventory=prod.yaml
    python -m remediation.switch resume --inventory=prod.yaml
"""

from __future__ import annotations

import getpass
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from acceptance.inventory import InventoryError
from acceptance.printable import show
from remediation.clients import Api, consul_of
from remediation.lock import UsageParser
from remediation.model import ActionFailed
from remediation.state import ATTEMPTS, StateUnavailable, kv_entry, kv_json, kv_value, put


def stop(http: Api, key: str, reason: str, run_id: str | None = None) -> dict[str, Any]:
    """Stop remediation cluster-wide (a stop already there is replaced); what was stored."""
    entry: dict[str, Any] = {"reason": reason, "user": getpass.getuser(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if run_id:
        entry["run_id"] = run_id
    if not put(http, key.strip("/"), entry):
        raise StateUnavailable(f"{key}: Consul did not store the stop")
    return entry


def stopped(http: Api, key: str) -> dict[str, Any] | None:
    """The stop in force (None: remediation may run); StateUnavailable when Consul cannot tell."""
    key = key.strip("/")
    entry = kv_entry(http, key)
    return None if entry is None else _parse(entry, key)


def resume(http: Api, key: str) -> dict[str, Any] | None:
    """Lift the stop; what it was (None: there was none). Check-and-set: a stop set meanwhile is not lifted
    unseen, it is read again and lifted as the one returned."""
    key = key.strip("/")
    for _ in range(ATTEMPTS):
        entry = kv_entry(http, key)
        if entry is None:
            return None
        try:
            deleted = http.lib(f"DELETE /v1/kv/{key}", _delete(key, int(entry["ModifyIndex"])))
        except ActionFailed as e:
            raise StateUnavailable(f"{key}: {e}") from None
        if deleted is True:
            return _parse(entry, key)
    raise StateUnavailable(f"{key}: changed by someone else during each of {ATTEMPTS} attempts to resume")


def _delete(key: str, index: int) -> Callable[[Any], Any]:
    return lambda c: c.kv.delete(key, cas=index)  # py-consul kv.delete, check-and-set


def describe_stop(entry: dict[str, Any]) -> str:
    return (f"stopped by {entry.get('user', '?')}@{entry.get('host', '?')} since {entry.get('since', '?')}: "
            f"{entry.get('reason') or 'no reason given'}")


def _parse(entry: dict[str, Any], key: str) -> dict[str, Any]:
    try:
        data = kv_json(entry, key)
    except StateUnavailable:
        data = None
    if isinstance(data, dict):
        return data
    text = kv_value(entry, key).decode("utf-8", "replace").strip()[:300]  # someone's own words: the reason
    return {"reason": text or f"{key} exists (set outside alice-acceptance)"}


def main(argv: list[str] | None = None) -> int:
    """0: done, 1: Consul cannot be read or written, 4: bad input."""
    p = UsageParser(prog="python -m remediation.switch",
                    description="Stop or resume remediation cluster-wide (a key in Consul KV).")
    p.add_argument("command", choices=("stop", "resume"))
    p.add_argument("--reason", default="", help="why (stop: required), shown to every runner that refuses")
    p.add_argument("--inventory", metavar="FILE", required=True, help="the cluster's inventory")
    args = p.parse_args(argv)
    reason = " ".join(args.reason.split())
    if args.command == "stop" and not reason:
        show(f"{p.prog}: stop: no reason; fix: pass --reason TEXT (who stops it and why, shown to every runner)",
             file=sys.stderr)
        return 4
    try:
        inventory, http = consul_of(args.inventory)
    except InventoryError as e:
        show(e, file=sys.stderr)
        return 4
    key = inventory.remediation.stop_key
    try:
        if args.command == "stop":
            show(f"{key}: {describe_stop(stop(http, key, reason))}; no runner remediates until "
                  "`alice-acceptance resume`")
        else:
            was = resume(http, key)
            show(f"{key}: resumed (it was {describe_stop(was)})" if was else f"{key}: was not stopped")
    except StateUnavailable as e:
        show(f"cannot {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
