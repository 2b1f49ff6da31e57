"""Remote text (an API's words, a node's output) cannot drive the terminal: its control characters are shown
escaped on the terminal and stay escaped in the summary's human fields (hypothesis over arbitrary text, and a
real run whose check quotes a hostile node's output)."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acceptance.outcomes import first_line
from acceptance.printable import escape_controls
from acceptance.transport.batch import Answer
from alice_acceptance.terminal import say

from .conftest import make_site
from .fakessh import FakeNodes

pytest_plugins = ["pytester"]

# a cursor up, the line erased, a green GO over it; then a newline and a second fake line
FAKE_GO = "ok\x1b[1A\x1b[2K\x1b[32mGO: rebuild:alimesos02 (every check passed)\x1b[0m\r\nGO: really\u202e"
SITE_CHECK = '''
from acceptance.checkspec import check


@check("site.motd", runbook="x", roles=["master"])
def test_motd(host):
    said = host.run("cat /etc/motd").stdout
    assert not said, f"motd says {said}"
'''


def unsafe(text: str) -> list[str]:
    """Characters a terminal acts on or reorders by (controls, formats such as bidi overrides, separators)."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c not in "\u00ad\u200b"
            and not ("\u2060" <= c <= "\u2064" or "\ufe00" <= c <= "\ufeff")]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_no_control_character_survives(text: str) -> None:
    assert unsafe(escape_controls(text)) == []
    assert unsafe(first_line(text)) == []
    shown = escape_controls(text, lines=True)
    assert unsafe(shown.replace("\n", "").replace("\t", "")) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_a_terminal_line_is_one_line_without_escapes(text: str) -> None:
    written: list[str] = []

    class Terminal:
        def write_line(self, line: str, **markup: bool) -> None:
            written.append(line)

    say(Terminal(), f"  site.motd[alimesos01] failed: {text}", red=True)
    assert len(written) == 1 and "\n" not in written[0] and "\x1b" not in written[0] and unsafe(written[0]) == []


def test_a_hostile_node_output_prints_no_fake_line(pytester: pytest.Pytester) -> None:
    site = make_site(pytester, {"motd.py": SITE_CHECK})

    def answers(command: str) -> Answer | None:
        return Answer(0, FAKE_GO.encode(), b"") if command == "cat /etc/motd" else None

    out = site["out"]
    result = pytester.runpytest(f"--inventory={site['inventory']}", f"--report-dir={out}", "-p", "no:cacheprovider",
                                str(site["checks"]), plugins=[FakeNodes({}, default=answers)])
    text = result.stdout.str() + result.stderr.str()
    assert result.ret == 1, text
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert not [line for line in text.splitlines() if line.lstrip().startswith("GO:")], text
    assert "motd says ok\\x1b[1A\\x1b[2K\\x1b[32mGO: rebuild:alimesos02" in text  # shown, escaped
    summary: dict[str, Any] = json.loads((out / "latest" / "summary.json").read_text())
    message = next(r["message"] for r in summary["records"] if r["check"] == "site.motd")
    assert message.startswith("motd says ok\\x1b[1A") and unsafe(message) == []
    html = next(out.glob("*/report.html")).read_text()
    assert "\x1b" not in html
