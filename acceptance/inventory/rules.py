"""What a value of the inventory may be: the :class:`Rule` a field of the model carries (bounds, a check, a
path that must exist...), and the checks of names, addresses, users, URLs, keys and of the values that reach a
node's commands (units, paths, images). A check gives the problem (one line, the value shown short and never a
credential), or None."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from acceptance.inventory.messages import describe, show
from acceptance.inventory.roles import CLUSTER

Check = Callable[[str], "tuple[str, str] | None"]  # a string's (problem, fix), or None


@dataclass(frozen=True)
class Rule:
    """How the reader reads one field (its `metadata["rule"]`); the type comes from the annotation."""

    lo: float | None = None  # numbers: the lowest allowed ...
    above: bool = False  # ... excluded (the value must be > lo)
    hi: float | None = None  # numbers: the highest allowed
    check: Check | None = None  # strings: (problem, fix) or None
    exists: Literal["file", "dir", "maybe"] = "file"  # paths: an existing file / directory; need not exist
    choices: tuple[str, ...] = ()  # strings: restricts a Literal
    keys: tuple[str, ...] = ()  # nested sections: the keys allowed (default: every field)
    multiline: bool = False  # strings: line breaks and tabs allowed
    nonempty: bool = False  # lists: at least one item (a list that defines checks: empty would drop them silently)


NO_RULE = Rule()


def rule(**kwargs: Any) -> dict[str, Rule]:
    """A field's metadata: ``field(metadata=rule(...))``."""
    return {"rule": Rule(**kwargs)}


def num(lo: float, hi: float, above: bool = False) -> dict[str, Rule]:
    """A number's metadata: within [lo, hi], or (lo, hi] when `above`."""
    return rule(lo=lo, hi=hi, above=above)


def fixing(problem: Callable[[str], str | None], fix: str) -> Check:
    """A check from a function giving the problem, and the fix to say with it."""

    def check(value: str) -> tuple[str, str] | None:
        found = problem(value)
        return None if found is None else (found, fix)

    return check


# --------------------------------------------------------------------------- names and addresses

_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]{0,62}"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # of an IPv6 address, as in fe80::1%eth0
_LOCK_KEY = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")


def _host_problem(host: str) -> str | None:
    if not host:
        return "empty"
    if len(host) > 253:
        return f"{len(host)} characters, more than 253"
    if host[0] in "-.":
        return f"starts with {host[0]!r}" + (" (ssh would read it as an option)" if host[0] == "-" else "")
    if _HOST.fullmatch(host):
        return None
    bad = next((c for c in host if not (c.isascii() and (c.isalnum() or c in "-."))), None)
    if bad is not None:
        return f"contains {bad!r}: only letters, digits, '-' and '.'"
    if any(len(label) > 63 for label in host.split(".")):
        return "a label (between dots) longer than 63 characters"
    return "an empty label, or a label starting with '-'"


def valid_node_name(name: str) -> str | None:
    """None when `name` can be a node's name, else the problem (one line): a host name, and not 'cluster'.

    For the names of discovered servers too, so that every node name obeys the same rules.
    """
    if not isinstance(cast(object, name), str):  # from a discovery: anything
        return f"expected a string, got {describe(name)}"
    if name == CLUSTER:
        return f"{name!r} is reserved for the cluster-wide checks"
    problem = _host_problem(name)
    return None if problem is None else f"{show(name)} is not a host name: {problem}"


def valid_address(address: str) -> str | None:
    """None when `address` can be a node's address (an IPv4/IPv6 address or a host name), else the problem."""
    if not isinstance(cast(object, address), str):
        return f"expected a string, got {describe(address)}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        problem = _host_problem(address)
        if problem is None and address.rsplit(".", 1)[-1].isdigit():
            problem = "its last label is all digits, but it is not an IPv4 address"
        return None if problem is None else f"{show(address)} is not an IP address or a host name: {problem}"
    scope = getattr(ip, "scope_id", None)
    if scope is not None and not _SCOPE.fullmatch(scope):
        return f"{show(address)}: the IPv6 scope after '%' is not an interface name"
    return None


def maintained_problem(node: str) -> str | None:
    """A maintenance entry's node: a node's name, or 'cluster' (the cluster-wide checks)."""
    return None if node == CLUSTER else valid_node_name(node)


def user_problem(user: str) -> str | None:
    if _USER.fullmatch(user):
        return None
    return f"{show(user)} is not a user name: [a-z_] then up to 31 of [a-z0-9_.-]"


def lock_key_problem(key: str) -> str | None:
    if len(key) <= 256 and _LOCK_KEY.fullmatch(key):
        return None
    return f"{show(key)} is not a Consul KV key: words of [A-Za-z0-9_.-] between '/', 256 characters at most"


# --------------------------------------------------------------------------- URLs and host:port


def url_problem(url: str) -> tuple[str, str] | None:
    fix = "write it as https://host:port"
    if "@" in url:  # the URL itself is never shown: it may hold a password
        return "credentials in the URL", "remove them, credentials come from the environment"
    if "?" in url or "#" in url:
        return "a query or fragment in the URL", f"{fix}; tokens come from the environment"
    if any(not c.isprintable() or c.isspace() for c in url):
        return "a space or control character in the URL", fix
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{show(url)} is not an http(s) URL (malformed host)", fix
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{show(url)} is not an http(s) URL", fix
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return f"{show(url)}: the port must be a number in 1..65535", fix
    host_problem = valid_address(parts.hostname or "")
    if host_problem:
        return f"the URL's host: {host_problem}", fix
    if not re.fullmatch(r"[A-Za-z0-9/._~%-]*", parts.path):
        return f"{show(url)}: unexpected characters in the path", fix
    return None


def hostport_problem(value: str) -> tuple[str, str] | None:
    fix = "write it as host:port, e.g. 172.30.0.11:8600"
    match = re.fullmatch(r"\[([^\]]*)\]:([0-9]{1,5})|([^:\[\]]*):([0-9]{1,5})", value)
    if not match:
        return f"{show(value)} is not host:port", fix
    host, port = (match[1], match[2]) if match[2] else (match[3], match[4])
    if match[2] and ":" not in host:
        return f"{show(value)}: brackets are for IPv6 addresses only", fix
    if not 1 <= int(port) <= 65535:
        return f"port {int(port)} is out of range 1..65535", fix
    problem = valid_address(host)
    return None if problem is None else (problem, fix)


# --------------------------------------------------------------------------- notifications

_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}|@[a-z0-9._-]{1,64}")
_SENDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def env_name_problem(name: str) -> tuple[str, str] | None:
    """The name of the variable holding a secret URL. The value is never shown: it may be the secret itself,
    pasted where its variable's name belongs (a webhook's key is a valid lower-case word; names are upper-case)."""
    if _ENV_NAME.fullmatch(name):
        return None
    fix = "name the environment variable that holds the URL, e.g. ALICE_ACCEPTANCE_MATTERMOST_URL"
    if "/" in name or ":" in name:
        return "a URL where the name of an environment variable belongs", f"the URL is a secret: {fix}"
    return "not an environment variable name (upper-case letters, digits and '_', not starting with a digit)", fix


def channel_problem(channel: str) -> str | None:
    if _CHANNEL.fullmatch(channel):
        return None
    return f"{show(channel)} is not a Mattermost channel name ([a-z0-9_-], 64 at most) or @user"


def sender_problem(name: str) -> str | None:
    if _SENDER.fullmatch(name):
        return None
    return f"{show(name)} is not a user name: letters, digits, '.', '_' and '-', 64 at most"


def report_url_problem(url: str) -> tuple[str, str] | None:
    """A report's address, as an API's (:func:`url_problem`), where ``{run_id}`` stands for the run's id."""
    found = url_problem(url.replace("{run_id}", "run-id"))
    fix = "write it as https://host/path/report.html ({run_id} is replaced by the run's id)"
    return None if found is None else (found[0], fix)


# --------------------------------------------------------------------------- values that reach a node's commands
# Quoted for the node's shell (shlex.quote, by testinfra) and after `--` wherever the command takes it; these rules
# are the guard where it does not (testinfra's `systemctl show UNIT`, `dsmc`, `test -e PATH`).

UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice", "scope")
_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.\\")
_TSM_SPECIAL = "*?[]{}"  # dsmc's wildcards and filespace braces
_PC = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"  # an image's path component (distribution/reference)
_DC = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"  # a registry's domain component
_IMAGE = re.compile(rf"((?:{_DC}(?:\.{_DC})*(?::[0-9]{{1,5}})?/)?{_PC}(?:/{_PC})*)"
                    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
                    r":[0-9a-fA-F]{32,})?")


def unit_base(name: str) -> str:
    """The unit as systemctl names it without its default suffix: 'nomad.service' -> 'nomad'."""
    return name[: -len(".service")] if name.endswith(".service") else name


def valid_unit_name(name: str) -> str | None:
    """None when `name` is a systemd unit name (systemd.unit(5)): a prefix of [A-Za-z0-9:_.-\\], an optional
    '@instance', and a known type suffix, or none (systemctl then adds '.service'); 255 characters at most with
    the suffix; never starting with '-', which systemctl would read as an option."""
    if not isinstance(cast(object, name), str) or not name:
        return f"expected a unit name, got {describe(name)}"
    if name[0] == "-":
        return f"{show(name)} starts with '-' (systemctl would read it as an option)"
    bad = next((c for c in name if c not in _UNIT_CHARS and c != "@"), None)
    if bad is not None:
        return f"{show(name)} contains {bad!r}: a unit name has letters, digits and ':', '-', '_', '.', '\\', '@'"
    stem, dot, suffix = name.rpartition(".")
    if not dot or suffix not in UNIT_TYPES:
        stem, suffix = name, "service"  # systemctl adds .service to a name without a unit type
    prefix, at, instance = stem.partition("@")
    if not prefix:
        return f"{show(name)} has no name before " + ("'@'" if at else "its suffix")
    if at and not instance:
        return f"{show(name)} is a template: name an instance, e.g. getty@tty1.service"
    if "@" in instance:
        return f"{show(name)} has more than one '@'"
    if len(stem) + 1 + len(suffix) > 255:
        return f"{show(name)}: {len(stem) + 1 + len(suffix)} characters with its suffix, more than 255"
    return None


def valid_node_path(path: str) -> str | None:
    """None when `path` can name a file on a node: absolute (a relative path, or one starting with '-', would be
    read as an option by the commands that take no '--'), 4096 characters at most."""
    if not isinstance(cast(object, path), str) or not path.startswith("/"):
        return f"{show(path)} is not an absolute path" + (" (a command would read it as an option)"
                                                          if str(path).startswith("-") else "")
    if len(path) > 4096:
        return f"{len(path)} characters, more than 4096"
    return None


def valid_backup_path(path: str) -> str | None:
    """A node path dsmc can take as one file specification: no wildcard or filespace brace."""
    problem = valid_node_path(path)
    bad = next((c for c in path if c in _TSM_SPECIAL), None) if problem is None else None
    return problem if bad is None else f"{show(path)} contains {bad!r}, which dsmc reads as a wildcard or brace"


def valid_image(image: str) -> str | None:
    """None when `image` is a container image reference ([registry[:port]/]path[:tag][@digest], lower-case path
    components, a name of 255 characters at most), which never starts with '-'."""
    if not isinstance(cast(object, image), str) or not image:
        return f"expected an image reference, got {describe(image)}"
    match = _IMAGE.fullmatch(image) if len(image) <= 512 else None
    if match is None:
        return (f"{show(image)} is not an image reference [registry/]path[:tag][@digest]"
                + (" (docker would read it as an option)" if image[0] == "-" else ""))
    if len(match[1]) > 255:
        return f"the image's name is {len(match[1])} characters, more than 255"
    return None


def kernel_arg_problem(arg: str) -> str | None:
    """/proc/cmdline is split on spaces: an argument with a space could never be found there."""
    bad = next((c for c in arg if c.isspace()), None)
    return None if bad is None else f"{show(arg)} contains a space: it could never match one word of /proc/cmdline"


def ssh_path_problem(path: str) -> str | None:
    """ssh takes these paths quoted in an option value ('-o UserKnownHostsFile="..."'): no double quote."""
    return None if '"' not in path else f"{show(path)} contains '\"', which ssh cannot take in an option value"
