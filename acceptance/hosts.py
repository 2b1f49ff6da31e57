"""Servers report themselves by IP while the inventory names hosts: the two are compared by what the name
resolves to (once per process, with a deadline), never as strings."""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

RESOLVE_TIMEOUT_S = 5.0
# getaddrinfo has no timeout of its own: it runs in a thread the caller stops waiting for.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")


def host_of(address: str) -> str:
    """The host of ``ip:port``, ``[v6]:port``, ``name``, or a URL."""
    if "://" in address:
        return urllib.parse.urlsplit(address).hostname or ""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def _literal(host: str) -> str | None:
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    return None


@functools.cache
def addresses(host: str) -> frozenset[str]:
    """The IP addresses ``host`` resolves to (itself for an IP); empty when it does not resolve in time."""
    literal = _literal(host)
    if literal is not None:
        return frozenset({literal})
    if not host:
        return frozenset()
    future = _POOL.submit(socket.getaddrinfo, host, None, type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=RESOLVE_TIMEOUT_S)
    except (OSError, FutureTimeout, UnicodeError):
        return frozenset()
    found = {_literal(str(info[4][0]).split("%", 1)[0]) for info in infos}
    return frozenset(a for a in found if a)


def same_host(a: str, b: str) -> bool:
    """Two hosts (names or IPs) are the same machine: equal, or resolving to a common address."""
    a, b = host_of(a).lower(), host_of(b).lower()
    if not a or not b:
        return False
    return a == b or bool(addresses(a) & addresses(b))


def first_address(host: str) -> str | None:
    """One IP of ``host`` (the same each time), for clients that only take IPs (DNS resolvers)."""
    found = sorted(addresses(host_of(host)))
    return found[0] if found else None
