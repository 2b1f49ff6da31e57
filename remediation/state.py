"""What remediation remembers across runs, in one JSON document in Consul KV (``remediation.state_key``) that
every runner shares (the nightly CI, an operator's shell): the retry budget, the flap history, the disruptive
actions of the window, the nodes this suite drained (so that a run that died mid-action is finished or undone by
the next one, wherever it runs) and the holds.

Writes are check-and-set on the key's ModifyIndex: two runners never lose each other's changes. When the
document cannot be read or written the answer is :class:`StateUnavailable`, never an empty state: acting on an
empty budget would forget what earlier runs did.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from remediation.clients import Api
from remediation.model import ActionFailed

T = TypeVar("T")
DEFAULTS: dict[str, type] = {"budget": dict, "flaps": dict, "drained": dict, "disruptive": list, "holds": dict}
ATTEMPTS = 5  # check-and-set writes before giving up on a key that keeps changing underneath


class StateUnavailable(Exception):
    """The cluster-wide state cannot be read or written: which key and why (never a token)."""


def kv_entry(http: Api, key: str) -> dict[str, Any] | None:
    """The KV entry at ``key`` (Key, Value, Session, ModifyIndex, ...); None when the key does not exist.

    py-consul ``kv.get``: None for Consul's 404, else the one entry, its Value decoded; anything else (no answer,
    a refusal, an HTML page) is StateUnavailable."""
    try:
        entry = http.lib(f"GET /v1/kv/{key}", lambda c: c.kv.get(key)[1])
    except ActionFailed as e:
        raise StateUnavailable(f"{key}: {e}") from None
    if entry is None:
        return None
    if not isinstance(entry, dict) or type(entry.get("ModifyIndex")) is not int:
        raise StateUnavailable(f"{key}: Consul's answer is not a KV entry ({type(entry).__name__})")
    return entry


def kv_value(entry: dict[str, Any], key: str) -> bytes:
    value = entry.get("Value")  # py-consul decoded Consul's base64
    if value is None:
        return b""
    if not isinstance(value, bytes):
        raise StateUnavailable(f"{key}: the value is not base64 as Consul sends it")
    return value


def kv_json(entry: dict[str, Any], key: str) -> Any:
    """The entry's value parsed as JSON (never its text in a message: it is whatever someone wrote there)."""
    try:
        return json.loads(kv_value(entry, key).decode())
    except ValueError:
        raise StateUnavailable(f"{key}: the value is not JSON") from None


def put(http: Api, key: str, body: Any, params: dict[str, str] | None = None) -> bool:
    """Write ``body`` as JSON (py-consul ``kv.put``, ``params``: cas, acquire, release); Consul's true/false
    (false: a check-and-set or lock that did not match)."""
    try:
        answer = http.lib(f"PUT /v1/kv/{key}", lambda c: c.kv.put(key, json.dumps(body), **(params or {})))
    except ActionFailed as e:
        raise StateUnavailable(f"{key}: {e}") from None
    if not isinstance(answer, bool):
        raise StateUnavailable(f"{key}: Consul's answer to a write is not true or false")
    return answer


class ClusterState:
    def __init__(self, http: Api, key: str) -> None:
        self.http = http
        self.key = key.strip("/")

    def read(self) -> dict[str, Any]:
        return self._read()[0]

    def update(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Apply ``change`` to the document and write it back, check-and-set; when another runner wrote in
        between, read again and re-apply (so ``change`` must depend on nothing but the document it gets)."""
        for attempt in range(ATTEMPTS):
            data, index = self._read()
            result = change(data)
            if put(self.http, self.key, data, params={"cas": str(index)}):
                return result
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))  # jitter: two runners do not collide again
        raise StateUnavailable(f"{self.key}: changed by another runner during each of {ATTEMPTS} writes")

    def _read(self) -> tuple[dict[str, Any], int]:
        """The document with its defaults, and the ModifyIndex to write it back with (0: create)."""
        entry = kv_entry(self.http, self.key)
        if entry is None:
            return {name: kind() for name, kind in DEFAULTS.items()}, 0
        data = kv_json(entry, self.key)
        if not isinstance(data, dict):
            raise StateUnavailable(f"{self.key}: the value is not a JSON object ({type(data).__name__})")
        for name, kind in DEFAULTS.items():
            data.setdefault(name, kind())
            if not isinstance(data[name], kind):
                raise StateUnavailable(f"{self.key}: {name!r} is a {type(data[name]).__name__}, expected a "
                                       f"{kind.__name__}")
        return data, int(entry["ModifyIndex"])
