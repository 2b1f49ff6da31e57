"""Certificates for the emulators' local tests: the lab's own CA (certs.py) in a throwaway folder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import certs


def make_ca_and_certs(
    directory: str | Path, names_ips: Mapping[str, str] | Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """Creates `ca.pem`/`ca-key.pem` and `<name>.pem`/`<name>-key.pem` for every (name, ip) in `directory`.

    Returns {"ca": path, "ca_key": path, "nodes": {name: {"ca": path, "cert": path, "key": path}}}; each
    `nodes` entry has the shape of node.json's `tls` object.
    """
    out = Path(directory)
    pairs = list(names_ips.items()) if isinstance(names_ips, Mapping) else list(names_ips)
    ca = certs.ensure_ca(out)
    nodes: dict[str, dict[str, str]] = {}
    for name, ip in pairs:
        cert, key = certs.ensure_cert(out, ca, name, [name, "localhost"], [ip] if ip else [])
        nodes[name] = {"ca": str(ca[0]), "cert": str(cert), "key": str(key)}
    return {"ca": str(ca[0]), "ca_key": str(ca[1]), "nodes": nodes}
