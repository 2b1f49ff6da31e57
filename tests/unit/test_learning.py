"""The dry pass that learns a node's commands runs the checks through pytest itself: a site check whose command
comes from its own conftest.py fixture is learned with the rest (in the node's batches, nothing live), the real run
then judges it, and nothing of the dry pass is reported."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from acceptance.transport.batch import Answer

from .conftest import make_site
from .fakessh import FakeNodes

pytest_plugins = ["pytester"]

BANNER = "cat /etc/site-banner"

CONFTEST = f'''
import pytest


@pytest.fixture
def site_banner(host):
    """The site's own fixture: the check's command is asked here, not in the check."""
    return host.check_output({BANNER!r})
'''

CHECKS = '''
from acceptance.checkspec import check


@check("site.banner", runbook="x", roles=["agent"])
def test_banner(site_banner):
    assert "welcome" in site_banner, f"the banner says {site_banner!r}"


@check("site.plain", runbook="x", roles=["agent"])
def test_plain(host):
    assert host.check_output("hostname")
'''


def answers(command: str) -> Answer | None:
    if command == BANNER:
        return Answer(0, b"welcome\n", b"")
    return Answer(0, b"Linux\n" if command == "uname -s" else b"x\n", b"")


@pytest.fixture
def site(pytester: pytest.Pytester) -> dict[str, Any]:
    return make_site(pytester, {"conftest.py": CONFTEST, "banner.py": CHECKS})


def test_a_site_fixtures_command_is_learned_in_the_dry_pass_and_judged_in_the_real_run(pytester, site):
    plugin = FakeNodes({"alimetal01": {"answers": {BANNER: [0, "go away\n", ""]}}}, default=answers)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--inventory={site['inventory']}", f"--report-dir={site['out']}", "-p",
                                "no:cacheprovider", f"--junitxml={junit}", str(site["checks"]), plugins=[plugin])
    summary = json.loads((site["out"] / "latest" / "summary.json").read_text())
    records = {f"{r['check']}[{r['node']}]": r for r in summary["records"]}

    # the real run judges the check from the fixture's answer
    assert records["site.banner[alibuild01]"]["outcome"] == "passed"
    assert records["site.banner[alimetal01]"]["outcome"] == "failed"
    assert records["site.banner[alimetal01]"]["message"] == "the banner says 'go away'"
    assert records["site.plain[alimetal01]"]["outcome"] == "passed"
    assert result.ret == 1

    # learned in the dry pass: asked in each node's prefetch batches, with testinfra's commands, never live
    for name in ("alibuild01", "alimetal01"):
        batched = [commands for node, commands in plugin.ssh.batches if node == name]
        assert any(BANNER in commands and "hostname" in commands for commands in batched), batched
        assert plugin.ssh.counters[name].live_commands == 0
        assert plugin.ssh.counters[name].round_trips <= 3
    assert "alibuild02" not in {node for node, _ in plugin.ssh.batches}  # waived: never sshed

    # nothing of the dry pass reported: one record, one JUnit case, one terminal outcome per check and node
    assert len(summary["records"]) == 6  # 2 checks x 3 agents (alibuild02 waived)
    cases = ET.parse(junit).getroot().iter("testcase")
    assert len(list(cases)) == 6
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1 and outcomes.get("passed") == 3 and outcomes.get("waived") == 2
    assert "NeedCommand" not in result.stdout.str()


def test_the_dry_pass_leaves_the_item_as_it_was(pytester, site):
    """The verdict, the JUnit properties and the captured output are those of the real run alone."""
    (site["checks"] / "banner.py").write_text(CHECKS + textwrap.dedent('''
        @check("site.chatty", runbook="x", roles=["master"])
        def test_chatty(site_banner):
            print("CHATTY-OUTPUT")
            assert False, "chatty fails"
    '''))
    junit = pytester.path / "junit.xml"
    pytester.runpytest(f"--inventory={site['inventory']}", f"--report-dir={site['out']}", "-p", "no:cacheprovider",
                       f"--junitxml={junit}", "-o", "junit_logging=system-out", str(site["checks"]),
                       plugins=[FakeNodes({}, default=answers)])
    case = next(c for c in ET.parse(junit).getroot().iter("testcase") if "site.chatty" in c.get("name", ""))
    properties = [p.get("name") for p in case.iter("property")]
    assert properties.count("outcome") == 1
    assert case.findtext("system-out", "").count("CHATTY-OUTPUT") == 1
