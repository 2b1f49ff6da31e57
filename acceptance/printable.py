"""Text from elsewhere (an API, a node, a file) as a person is shown it: its control characters escaped.

A Consul check name, a Nomad event or a server's error page can hold ANSI escapes, carriage returns and
newlines; written raw to a terminal they can recolour, overwrite or fake a line (a green ``GO:``). They are
shown as Python writes them (``\\x1b``, ``\\n``), and stay so in the summary's human fields, so a report read
back prints the same. Bidirectional overrides (which reorder what is displayed) are escaped too."""

from __future__ import annotations

import re
import sys
from typing import TextIO

from acceptance.redaction import clip

# C0 and C1 controls, DEL, line and paragraph separators, bidi marks, embeddings, overrides and isolates
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LAYOUT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character escaped; ``lines``: newlines and tabs kept (a traceback)."""
    return (_LAYOUT if lines else _CONTROLS).sub(_escape, text)


def shown(text: str, limit: int = 500) -> str:
    """Remote text for a message: redacted, then cut to ``limit``, then its controls escaped."""
    return escape_controls(clip(text, limit))


def show(text: object, file: TextIO | None = None) -> None:
    """print() of one message that may quote remote text (a lock holder's name, an API's answer)."""
    print(escape_controls(str(text)), file=file if file is not None else sys.stdout)
