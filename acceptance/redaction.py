"""Secrets never reach a report, a log or a message: every secret value the suite knows (API tokens, the
clouds.yaml passwords) is remembered here, and :func:`redact` replaces them, and any credentials written in a
URL (``https://user:password@host``) or a header, before text leaves the suite.

A server that echoes a secret back rarely echoes it as it was sent: Keystone's JSON escapes ``"``, ``\\`` and
non-ASCII (``\\"``, ``\\u00e4``), a URL percent-encodes it, an HTML page uses entities, a Basic header or a
token blob carries it in base64, and a message quoted inside a message escapes it twice. So each secret is
matched character by character in any of those spellings, and its base64 forms (alone, as ``user:password``,
and inside any longer base64 text) as literals.

Redact the whole text before cutting it (:func:`clip`): a secret cut in two matches neither half, and the half
kept would leak all but its last characters."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MASK = "<redacted>"
MIN_LENGTH = 6  # shorter values would mask ordinary words; no real secret is that short
TOKEN_VARIABLES = ("NOMAD_TOKEN", "CONSUL_HTTP_TOKEN", "VAULT_TOKEN", "NOMAD_REMEDIATION_TOKEN",
                   "CONSUL_REMEDIATION_TOKEN", "VAULT_REMEDIATION_TOKEN", "OS_PASSWORD",
                   "OS_APPLICATION_CREDENTIAL_SECRET", "OS_TOKEN")
SECRET_KEYS = ("password", "token", "secret", "application_credential_secret")
USER_KEYS = ("username", "user_name", "user", "user_id", "application_credential_id")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]*(?::[^/\s@]*)?@")
_HEADER_TOKENS = re.compile(r"(?i)(x-(?:nomad|consul|vault)-token|authorization|x-auth-token|x-subject-token)"
                            r"(['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|token)\s+)?[^\s'\",}]+")
_ANCHOR = re.compile(r"[A-Za-z0-9]{3,}")
_ENTITIES = {'"': ("&quot;",), "&": ("&amp;",), "<": ("&lt;",), ">": ("&gt;",), "'": ("&apos;", "&#x27;")}
_ESCAPES = {"\n": "n", "\t": "t", "\r": "r", "\b": "b", "\f": "f"}


def _spellings(c: str) -> list[str]:
    """Regular expressions for one character of a secret as servers write it back."""
    if c.isascii() and c.isalnum():
        return [re.escape(c)]
    code = ord(c)
    out = [re.escape(c)]
    if c in '"\\/\'':
        out.append(r"\\+" + re.escape(c) if c != "\\" else r"\\+")  # \" \\ \/, any number of layers
    if c in _ESCAPES:
        out.append(r"\\+" + _ESCAPES[c])
    utf16 = json.dumps(c)[1:-1]  # \u00e4, or a surrogate pair beyond the BMP
    if utf16.startswith("\\u"):
        out.append("".join(r"\\+u" + part for part in utf16.split("\\u")[1:]))
    out.append(rf"\\+u{code:04x}" if code <= 0xFFFF else rf"\\+U{code:08x}")
    if code <= 0xFF:
        out.append(rf"\\+x{code:02x}")
    out.append("".join(f"%{b:02x}" for b in c.encode()))  # percent-encoding (case folded below)
    if c == " ":
        out.append(r"\+")
    out += [re.escape(e) for e in (*_ENTITIES.get(c, ()), f"&#{code};", f"&#x{code:x};", html.escape(c))]
    return list(dict.fromkeys(out))


def _base64_forms(data: bytes) -> set[str]:
    """``data`` in base64, alone and as it shows inside any longer base64 text (the characters that do not
    depend on the bytes around it, at each of the three alignments), standard and URL-safe."""
    forms = set()
    for shift, skip in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        middle = encoded[skip: (shift + len(data)) * 8 // 6]
        if len(middle) >= MIN_LENGTH:
            forms.add(middle)
    forms.add(base64.b64encode(data).decode().rstrip("="))
    return forms | {f.replace("+", "-").replace("/", "_") for f in forms}


@dataclass(frozen=True)
class _Secret:
    anchor: str  # a lowercase run of letters and digits every character-wise spelling contains ('' if none)
    spelled: re.Pattern[str]
    literals: frozenset[str]


def _compile(secret: str, users: Iterable[str] = ()) -> _Secret:
    spelled = re.compile("".join("(?:" + "|".join(_spellings(c)) + ")" for c in secret), re.IGNORECASE)
    anchors = _ANCHOR.findall(secret)
    literals = _base64_forms(secret.encode())
    for user in users:
        literals |= _base64_forms(f"{user}:{secret}".encode())
    return _Secret(max(anchors, key=len).lower() if anchors else "", spelled, frozenset(literals))


_lock = threading.Lock()
_known: dict[str, set[str]] = {}  # secret -> the user names it goes with (for base64 of user:secret)
_compiled: list[_Secret] = []


def remember(*values: object, user: object = None) -> None:
    """Add secret values (None and short values are ignored); ``user``: the name a password goes with."""
    with _lock:
        before, new_user = len(_known), False
        for v in values:
            if isinstance(v, str) and len(v) >= MIN_LENGTH:
                users = _known.setdefault(v, set())
                if isinstance(user, str) and user and user not in users:
                    users.add(user)
                    new_user = True
        if new_user or len(_known) != before:
            # longest first: a secret containing another is masked whole
            _compiled[:] = [_compile(s, sorted(_known[s])) for s in sorted(_known, key=len, reverse=True)]


def remember_environment(env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    remember(*(env.get(name) for name in TOKEN_VARIABLES if name != "OS_PASSWORD"))
    remember(env.get("OS_PASSWORD"), user=env.get("OS_USERNAME"))


def remember_mapping(data: object) -> None:
    """Every value under a secret-looking key of a nested mapping (e.g. a parsed clouds.yaml), with the user
    name beside it."""
    if isinstance(data, Mapping):
        user = next((data[k] for k in USER_KEYS if isinstance(data.get(k), str)), None)
        for key, value in data.items():
            if isinstance(key, str) and any(s in key.lower() for s in SECRET_KEYS) and isinstance(value, str):
                remember(value, user=user)
            else:
                remember_mapping(value)
    elif isinstance(data, list | tuple):
        for value in data:
            remember_mapping(value)


def known() -> Iterable[str]:
    with _lock:
        return sorted(_known, key=len, reverse=True)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        secrets = list(_compiled)
    folded = text.lower()
    for secret in secrets:
        if not secret.anchor or secret.anchor in folded:
            text, n = secret.spelled.subn(MASK, text)
            if n:
                folded = text.lower()
        for literal in secret.literals:
            if literal in text:
                text = text.replace(literal, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _HEADER_TOKENS.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters of ``text``, redacted before the cut (see the module's docstring). Only a
    window is redacted, long enough for any secret that starts in what is kept, in any spelling."""
    with _lock:
        longest = max(map(len, _known), default=0)
    text = redact(text[: limit + 64 * longest + 256])
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
