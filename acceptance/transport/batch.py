"""Many commands in one ssh round trip: the POSIX script that runs them on the node, and the parser of its
framed answers.

Each command runs as testinfra's ssh backend would run it (the login shell's ``-c``, stdin from /dev/null),
its stdout and stderr kept apart in files, and is answered as one frame::

    @@<nonce> <index> <exit status> <stdout bytes> <stderr bytes>\\n<stdout><stderr>

The parser reads exactly the announced byte counts, so output that prints something resembling a frame
cannot replace another command's answer; the nonce is random per batch. A command whose frame is missing
(output cut short) has no answer: the caller runs it again or reports ``error``, never ``passed``.
"""

from __future__ import annotations

import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

TIMED_OUT = 124  # `timeout`'s status when it had to stop the command
_HEADER = re.compile(rb"@@([0-9a-f]{16}) (\d+) (-?\d+) +(\d+) +(\d+)\n")


@dataclass(frozen=True)
class Answer:
    """Exactly what testinfra would have got: the exit status, stdout and stderr (bytes)."""

    rc: int
    stdout: bytes
    stderr: bytes


def new_nonce() -> str:
    return secrets.token_hex(8)


def script(commands: Sequence[str], nonce: str, timeout_s: int) -> str:
    """The script (fed to ``sh -s`` on the node) that answers ``commands`` in order."""
    q = shlex.quote
    lines = [
        "_d=$(mktemp -d 2>/dev/null) || { echo 'alice-acceptance: cannot create a temporary directory' >&2; exit 97; }",
        "trap 'rm -rf \"$_d\"' EXIT",
        "_sh=${SHELL:-/bin/sh}",
        f"_to={int(timeout_s)}",
        "command -v timeout >/dev/null 2>&1 || _to=",
        "_r() {",
        '  if [ -n "$_to" ]; then timeout -k 5 "$_to" "$_sh" -c "$2" </dev/null >"$_d/o" 2>"$_d/e"',
        '  else "$_sh" -c "$2" </dev/null >"$_d/o" 2>"$_d/e"; fi',
        "  _s=$?",
        f"  printf '@@{nonce} %s %s %s %s\\n' \"$1\" \"$_s\" \"$(wc -c <\"$_d/o\")\" \"$(wc -c <\"$_d/e\")\"",
        '  cat "$_d/o" "$_d/e"',
        "}",
    ]
    lines += [f"_r {i} {q(command)}" for i, command in enumerate(commands)]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def parse(output: bytes, nonce: str, count: int) -> dict[int, Answer]:
    """The answers found in ``output`` by command index; frames of another nonce or index are ignored."""
    answers: dict[int, Answer] = {}
    marker = f"@@{nonce} ".encode()
    pos = output.find(marker)
    while pos >= 0:
        match = _HEADER.match(output, pos)
        if match is None or match.group(1).decode() != nonce:
            pos = output.find(marker, pos + 1)
            continue
        index, rc, n_out, n_err = (int(match.group(i)) for i in range(2, 6))
        start = match.end()
        end = start + n_out + n_err
        if end > len(output):
            break  # cut short: this answer is incomplete, and nothing after it can be trusted
        if 0 <= index < count and index not in answers:
            answers[index] = Answer(rc, output[start:start + n_out], output[start + n_out:end])
        pos = output.find(marker, end)
    return answers
