"""The ACL policies the lab's tokens are made from: the very files the README shows (deploy/policies/), parsed
with python-hcl2 into the JSON rule syntax the emulators take (emulators/acl.py); OpenBao takes the text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

from .topology import REPO

POLICY_DIR = REPO / "deploy" / "policies"
_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def path(name: str) -> Path:
    return POLICY_DIR / f"{name}.hcl"


def text(name: str) -> str:
    return path(name).read_text()


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def _block(body: Any) -> Any:
    """A block's body, its attributes unquoted (labels keep their own unquoting in `rules`)."""
    return {_unquote(k): v for k, v in body.items()} if isinstance(body, dict) else body


def rules(name: str) -> dict[str, Any]:
    """deploy/policies/<name>.hcl as JSON rules: `node { policy = "read" }` -> {"node": {"policy": "read"}},
    `node_prefix "" { ... }` -> {"node_prefix": {"": {...}}}, `operator = "read"` -> {"operator": "read"}."""
    out: dict[str, Any] = {}
    for key, value in hcl2.loads(text(name), serialization_options=_OPTIONS).items():
        if not isinstance(value, list):  # an attribute
            out[key] = value
            continue
        merged: dict[str, Any] = {}
        for block in value:
            labelled = len(block) == 1 and isinstance(next(iter(block.values())), dict)
            if labelled:
                label, body = next(iter(block.items()))
                merged[_unquote(label)] = _block(body)
            else:
                merged.update(_block(block))
        out[key] = merged
    return out
