"""Secrets never reach a report, a log or a message: every secret value the suite knows (API tokens, the
clouds.yaml passwords) is remembered here, and :func:`redact` replaces them, and any credentials written in a
URL (``https://user:password@host``), before text leaves the suite. Servers that echo a token back in an error
body are covered the same way."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping

MASK = "<redacted>"
MIN_LENGTH = 6  # shorter values would mask ordinary words; no real secret is that short
TOKEN_VARIABLES = ("NOMAD_TOKEN", "CONSUL_HTTP_TOKEN", "VAULT_TOKEN", "NOMAD_REMEDIATION_TOKEN",
                   "CONSUL_REMEDIATION_TOKEN", "VAULT_REMEDIATION_TOKEN", "OS_PASSWORD",
                   "OS_APPLICATION_CREDENTIAL_SECRET", "OS_TOKEN")
SECRET_KEYS = ("password", "token", "secret", "application_credential_secret")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*(?::[^/\s@]*)?@")
_HEADER_TOKENS = re.compile(r"(?i)(x-(?:nomad|consul|vault)-token|authorization|x-auth-token)(['\"]?\s*[:=]\s*['\"]?)"
                            r"(?:bearer\s+)?[^\s'\",}]+")

_lock = threading.Lock()
_known: set[str] = set()


def remember(*values: object) -> None:
    """Add secret values (None and short values are ignored)."""
    with _lock:
        _known.update(v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH)


def remember_environment(env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    remember(*(env.get(name) for name in TOKEN_VARIABLES))


def remember_mapping(data: object) -> None:
    """Every value under a secret-looking key of a nested mapping (e.g. a parsed clouds.yaml)."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(key, str) and any(s in key.lower() for s in SECRET_KEYS) and isinstance(value, str):
                remember(value)
            else:
                remember_mapping(value)
    elif isinstance(data, list | tuple):
        for value in data:
            remember_mapping(value)


def known() -> Iterable[str]:
    with _lock:
        return sorted(_known, key=len, reverse=True)  # longest first: a secret containing another


def redact(text: str) -> str:
    if not text:
        return text
    for secret in known():
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _HEADER_TOKENS.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
