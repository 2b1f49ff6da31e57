"""The remediation engine with synthetic checks and remediation fixtures overridden in a site conftest.py (as an
operator would): only a failed check is remediated, then re-checked; dry-run changes nothing; the kill switch,
the circuit breaker, the mode, the retry budget and the lock refuse what they must; every decision is audited."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .conftest import EXAMPLE, FILES
from .fakessh import FakeNodes

pytest_plugins = ["pytester"]

NO_APIS = re.sub(r"apis:\n(  .*\n)+", "", EXAMPLE)  # no API: nothing here can reach a network

CONFTEST = '''
import pytest
from remediation.model import Action, ActionFailed

FLAGS = {flags!r}


@pytest.fixture
def create_flag(node):
    """Overrides nothing: a site remediation of the site check below."""
    def do(progress):
        import pathlib
        pathlib.Path(FLAGS, node.name).write_text("fixed")
        return f"flag of {{node.name}} created"
    return Action("create_flag", node, f"create the flag of {{node.name}}", do, lambda: "absent")


@pytest.fixture
def broken_fix(node):
    def do(progress):
        raise ActionFailed("the fix itself fails")
    return Action("broken_fix", node, "a fix that fails", do)


@pytest.fixture
def reboot_it(node):
    return Action("reboot_it", node, f"reboot {{node.name}}", lambda progress: "rebooted", disruptive=True,
                  gates=("workload",))
'''

CHECKS = '''
import pathlib
from acceptance.checkspec import check
from acceptance.outcomes import CheckError

FLAGS = {flags!r}


@check("site.flag", runbook="x", remediation="create_flag", roles=["agent"], needs=())
def test_flag(node):
    assert pathlib.Path(FLAGS, node.name).exists(), f"no flag on {{node.name}}"


@check("site.cannot-tell", runbook="x", remediation="create_flag", roles=["master"], needs=())
def test_cannot_tell(node):
    raise CheckError("the probe could not run")
'''


@pytest.fixture
def site(pytester: pytest.Pytester) -> dict[str, Any]:
    for name in FILES:
        pytester.path.joinpath(name).write_text("")
    flags = pytester.mkdir("flags")
    checks = pytester.mkdir("site-checks")
    (checks / "conftest.py").write_text(CONFTEST.format(flags=str(flags)))
    (checks / "flags.py").write_text(CHECKS.format(flags=str(flags)))
    return {"checks": checks, "flags": flags, "out": pytester.path / "out", "state": pytester.path / "state.json",
            "path": pytester.path}


def write_inventory(site: dict[str, Any], maintenance: bool = True, **remediation: Any) -> Path:
    settings = {"state_file": str(site["state"]), **remediation}
    base = NO_APIS if maintenance else NO_APIS.split("maintenance:")[0]
    text = textwrap.dedent(base) + "remediation:\n" + "".join(f"  {k}: {json.dumps(v)}\n"
                                                                 for k, v in settings.items())
    path = site["path"] / "inventory.yaml"
    path.write_text(text)
    return path


def run(pytester: pytest.Pytester, site: dict[str, Any], mode: str, *args: str, maintenance: bool = True,
        **remediation: Any) -> tuple[pytest.RunResult, dict[str, Any], list[dict[str, Any]]]:
    inventory = write_inventory(site, maintenance, **remediation)
    result = pytester.runpytest(f"--inventory={inventory}", f"--report-dir={site['out']}", "-p", "no:cacheprovider",
                                f"--remediate={mode}", str(site["checks"]), *args, plugins=[FakeNodes()])
    summary_path = site["out"] / "latest" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    audit_path = site["out"] / "audit.jsonl"
    audit = [json.loads(line) for line in audit_path.read_text().splitlines()] if audit_path.exists() else []
    return result, summary, audit


def rec(summary: dict[str, Any], check: str, node: str) -> dict[str, Any]:
    return next(r for r in summary["records"] if r["check"] == check and r["node"] == node)


def test_a_failed_check_is_remediated_and_rechecked(pytester, site):
    result, summary, audit = run(pytester, site, "safe")
    assert result.ret == 1  # site.cannot-tell stays an error
    fixed = rec(summary, "site.flag", "alibuild01")
    assert fixed["outcome"] == "remediated"
    assert fixed["first_message"] == "no flag on alibuild01"
    assert fixed["remediation_detail"]["action"] == "create_flag" and fixed["remediation_detail"]["verdict"] == "taken"
    assert (site["flags"] / "alibuild01").read_text() == "fixed"
    assert {(e["node"], e["verdict"]) for e in audit} == {("alibuild01", "taken"), ("alimetal01", "taken")}
    assert not (site["flags"] / "alibuild02").exists()  # waived: never remediated
    # error never triggers a remediation
    assert rec(summary, "site.cannot-tell", "alimesos01")["outcome"] == "error"
    assert not any(e["check"] == "site.cannot-tell" for e in audit)
    assert summary["remediations"] == audit
    result.stdout.fnmatch_lines(["*remediation taken: create_flag for site.flag*"])
    again, summary, _ = run(pytester, site, "off", "-k", "not cannot")
    assert again.ret == 0 and rec(summary, "site.flag", "alibuild01")["outcome"] == "passed"


def test_dry_run_plans_and_changes_nothing(pytester, site):
    _, summary, audit = run(pytester, site, "dry-run")
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed"
    assert not list(site["flags"].iterdir())
    assert {e["verdict"] for e in audit} == {"planned"}
    assert all("would create the flag" in e["reason"] for e in audit)


def test_off_does_nothing_and_records_nothing(pytester, site):
    _, summary, audit = run(pytester, site, "off")
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed" and audit == []


def test_kill_switch_in_the_inventory(pytester, site):
    _, summary, audit = run(pytester, site, "all", enabled=False)
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed"
    assert {e["guardrail"] for e in audit} == {"kill-switch"} and not list(site["flags"].iterdir())


def test_kill_switch_file(pytester, site):
    stop = site["path"] / "STOP"
    stop.write_text("")
    _, _, audit = run(pytester, site, "all", kill_switch_file=str(stop))
    assert {e["guardrail"] for e in audit} == {"kill-switch"}


def test_circuit_breaker_counts_every_node_failing_the_check(pytester, site):
    _, summary, audit = run(pytester, site, "safe", max_failing_agents=1)
    assert {e["guardrail"] for e in audit} == {"circuit-breaker"}
    assert "2 agents fail site.flag" in audit[0]["reason"]
    assert not list(site["flags"].iterdir())


def test_every_node_of_a_role_at_once_is_refused(pytester, site):
    _, _, audit = run(pytester, site, "safe", maintenance=False)  # every agent fails, none is waived
    assert {e["guardrail"] for e in audit} == {"circuit-breaker"}
    assert "every agent fails" in audit[0]["reason"]


def test_budget_spent_needs_a_human(pytester, site):
    checks = site["checks"] / "flags.py"
    checks.write_text(checks.read_text().replace('remediation="create_flag", roles=["agent"]',
                                                 'remediation="broken_fix", roles=["agent"]'))
    _, summary, audit = run(pytester, site, "safe", "--nodes=alibuild01", attempts=2)
    assert audit[-1]["verdict"] == "failed" and "the fix itself fails" in audit[-1]["reason"]
    assert "[remediation failed: the fix itself fails]" in rec(summary, "site.flag", "alibuild01")["message"]
    run(pytester, site, "safe", "--nodes=alibuild01", attempts=2)
    _, summary, audit = run(pytester, site, "safe", "--nodes=alibuild01", attempts=2)
    assert audit[-1]["verdict"] == "escalated" and audit[-1]["guardrail"] == "budget"
    assert "needs a human" in audit[-1]["reason"]
    assert json.loads(site["state"].read_text())["budget"]["site.flag|alibuild01"]["broken_fix"]
    assert oct(site["state"].stat().st_mode & 0o777) == "0o600"


def test_disruptive_actions_need_all_and_the_lock(pytester, site):
    checks = site["checks"] / "flags.py"
    checks.write_text(checks.read_text().replace('remediation="create_flag", roles=["agent"]',
                                                 'remediation="reboot_it", roles=["agent"]'))
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert audit[-1]["guardrail"] == "mode" and "--remediate=all" in audit[-1]["reason"]
    _, _, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert audit[-1]["guardrail"] == "lock" and "cannot be taken or checked" in audit[-1]["reason"]


def test_a_remediation_that_is_no_fixture_fails_the_collection(pytester, site):
    checks = site["checks"] / "flags.py"
    checks.write_text(checks.read_text().replace('remediation="create_flag", roles=["agent"]',
                                                 'remediation="create_flga", roles=["agent"]'))
    result, _, _ = run(pytester, site, "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*remediation 'create_flga' is not a fixture*"])


def test_remediation_runs_in_one_process(pytester, site):
    inventory = write_inventory(site)
    result = pytester.runpytest(f"--inventory={inventory}", "--remediate=safe", "-n", "2", str(site["checks"]))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--remediate=safe runs in one process*"])
