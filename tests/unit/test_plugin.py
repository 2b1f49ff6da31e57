"""The plugin itself, with small synthetic checks in a temporary directory (pytester), as pytest-xdist tests
itself: collection of site checks, ids, every outcome and its message, blocking, waivers, interruption, exit
statuses. Nothing here depends on the built-in catalogue."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from acceptance.transport.batch import Answer

from .conftest import make_site
from .fakessh import FakeNodes

pytest_plugins = ["pytester"]

SITE_CHECKS = '''
from acceptance.checkspec import check
from acceptance.outcomes import CheckError


def each_file(inventory, node):
    return ["/etc/nomad.d/nomad.hcl", "/etc/hosts"]


@check("site.cvmfs.enabled", runbook="Creating a agent", roles=["agent"])
def test_cvmfs(host):
    assert host.service("cvmfs").is_enabled, "cvmfs is not enabled"


@check("site.file.{path}", runbook="Creating a agent", each=("path", each_file))
def test_file(host, param):
    assert host.file(param).exists, f"{param} is missing"


@check("site.broken", runbook="x", roles=["master"])
def test_broken(host):
    raise CheckError("cannot tell: the probe failed")


@check("site.bug", runbook="x", roles=["master"])
def test_bug(host):
    return {}["missing"]
'''


def answers(command: str) -> Answer | None:
    table = {
        "uname -s": Answer(0, b"Linux\n", b""),
        "test -d /run/systemd/system/": Answer(0, b"", b""),
        "systemctl is-enabled cvmfs": Answer(1, b"disabled\n", b""),
        "test -e /etc/nomad.d/nomad.hcl": Answer(1, b"", b""),
        "test -e /etc/hosts": Answer(0, b"", b""),
    }
    return table.get(command, Answer(0, b"", b""))


@pytest.fixture
def site(pytester: pytest.Pytester) -> dict[str, Any]:
    return make_site(pytester, {"cvmfs.py": SITE_CHECKS})


def run(pytester: pytest.Pytester, site: dict[str, Any], *args: str, spec: dict[str, Any] | None = None,
        plugin: FakeNodes | None = None) -> tuple[pytest.RunResult, dict[str, Any]]:
    plugin = plugin or FakeNodes(spec or {}, default=answers)
    result = pytester.runpytest(f"--inventory={site['inventory']}", f"--report-dir={site['out']}", "-p",
                                "no:cacheprovider", str(site["checks"]), *args, plugins=[plugin])
    path = site["out"] / "latest" / "summary.json"
    return result, (json.loads(path.read_text()) if path.exists() else {})


def by_id(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['check']}[{r['node']}]": r for r in summary["records"]}


def test_site_checks_are_collected_per_node_and_value(pytester, site):
    result = pytester.runpytest(f"--inventory={site['inventory']}", "--collect-only", "-q", str(site["checks"]))
    ids = sorted(line.split("::")[1] for line in result.outlines if "::" in line)
    assert "site.cvmfs.enabled[alibuild01]" in ids and "site.cvmfs.enabled[alimesos01]" not in ids
    assert "site.file./etc/nomad.d/nomad.hcl[alimesos01]" in ids
    agents = ("alibuild01", "alibuild02", "alimetal01")
    assert len(ids) == 3 * 1 + 4 * 2 + 1 + 1  # cvmfs on agents, two files everywhere, two master checks
    assert all(i.endswith(tuple(f"[{n}]" for n in (*agents, "alimesos01"))) for i in ids)


def test_every_outcome_with_its_message(pytester, site):
    result, summary = run(pytester, site)
    assert result.ret == 1
    recs = by_id(summary)
    assert recs["site.cvmfs.enabled[alibuild01]"]["outcome"] == "failed"
    assert recs["site.cvmfs.enabled[alibuild01]"]["message"] == "cvmfs is not enabled"
    assert recs["site.file./etc/nomad.d/nomad.hcl[alimetal01]"]["message"] == "/etc/nomad.d/nomad.hcl is missing"
    assert recs["site.file./etc/hosts[alimetal01]"]["outcome"] == "passed"
    assert recs["site.broken[alimesos01]"] == {**recs["site.broken[alimesos01]"], "outcome": "error",
                                               "message": "cannot tell: the probe failed"}
    assert recs["site.bug[alimesos01]"]["outcome"] == "error"
    assert recs["site.bug[alimesos01]"]["message"] == "KeyError: 'missing'"
    assert {r["outcome"] for r in summary["records"] if r["node"] == "alibuild02"} == {"waived"}
    collected = len(summary["records"])
    assert sum(summary["totals"].values()) == collected
    result.stdout.fnmatch_lines(["*alibuild02: WAIVED 3 checks: disk swap INC0123*"])


def test_a_node_that_does_not_answer_blocks_its_checks(pytester, site):
    result, summary = run(pytester, site, spec={"alimesos01": {"ping": False},
                                                "alibuild01": {"ssh_error": "Connection refused"}})
    recs = by_id(summary)
    on_master = [r for r in summary["records"] if r["node"] == "alimesos01"]
    assert on_master and all(r["outcome"] == "blocked" and r["blocked_by"] == "node.ping" for r in on_master)
    on_agent = [r for r in summary["records"] if r["node"] == "alibuild01"]
    assert all(r["outcome"] == "blocked" and r["blocked_by"] == "node.ssh" for r in on_agent)
    assert recs["site.cvmfs.enabled[alibuild01]"]["message"].startswith("blocked by node.ssh: ssh root@")
    assert summary["blocked_by"] == {"node.ping[alimesos01]": len(on_master), "node.ssh[alibuild01]": len(on_agent)}


def test_an_interrupted_run_reports_what_did_not_run(pytester, site, monkeypatch):
    (site["checks"] / "zz_stop.py").write_text(textwrap.dedent('''
        from acceptance.checkspec import check

        @check("site.stop", runbook="x", roles=["master"])
        def test_stop(host):
            raise KeyboardInterrupt
    '''))
    spec = site["out"].parent / "spec.json"
    spec.write_text("{}")
    monkeypatch.setenv("ACCEPTANCE_FAKE_SPEC", str(spec))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    pytester.syspathinsert(Path(__file__).resolve().parents[2])
    result = pytester.runpytest_subprocess(f"--inventory={site['inventory']}", f"--report-dir={site['out']}", "-p",
                                           "no:cacheprovider", "-p", "tests.unit.fakessh", str(site["checks"]))
    summary = json.loads((site["out"] / "latest" / "summary.json").read_text())
    assert result.ret == 2
    assert summary["exit_status"] == 2
    assert summary["totals"]["not_run"] >= 1
    not_run = [r for r in summary["records"] if r["outcome"] == "not_run"]
    assert all(r["message"].startswith("not run") for r in not_run)


def test_checks_without_an_inventory_are_a_usage_error(pytester, site):
    result = pytester.runpytest(str(site["checks"]))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*these checks need an inventory; fix: pass --inventory FILE*"])


def test_secrets_never_reach_a_report(pytester, site, monkeypatch):
    monkeypatch.setenv("NOMAD_TOKEN", "s3cr3t-token-value")
    (site["checks"] / "echo.py").write_text(textwrap.dedent('''
        import os
        from acceptance.checkspec import check

        @check("site.echo", runbook="x", roles=["master"])
        def test_echo(host):
            assert False, "server said: token " + os.environ["NOMAD_TOKEN"] + " at https://u:pw@example:1/"
    '''))
    junit = site["out"] / "junit.xml"
    result, summary = run(pytester, site, f"--junitxml={junit}")
    assert "s3cr3t-token-value" not in result.stdout.str() + junit.read_text() + json.dumps(summary)
    assert ":pw@" not in json.dumps(summary)
    assert "<redacted>" in by_id(summary)["site.echo[alimesos01]"]["message"]


def test_one_file_adds_a_check(pytester, site):
    """What an operator does to add a runbook line: one function in one file of their site checks."""
    (site["checks"] / "extra.py").write_text(textwrap.dedent('''
        from acceptance.checkspec import check

        @check("site.consul-config", runbook="Checklist to verify the status of a master", roles=["master"])
        def test_consul_config(host):
            assert host.file("/etc/consul.d/consul.hcl").exists, "/etc/consul.d/consul.hcl is missing"
    '''))
    _, summary = run(pytester, site)
    assert by_id(summary)["site.consul-config[alimesos01]"]["outcome"] == "passed"
    assert Path(site["checks"] / "extra.py").exists()


def test_only_checks_are_collected_from_a_module_not_named_test(pytester, site):
    """A helper module beside the checks (a benchmark's plain testinfra tests, say) is not run as tests: in a
    module pytest would not collect by its name, only ``@check`` functions become items."""
    (site["checks"] / "helpers.py").write_text("def test_plain(host):\n    raise AssertionError('helper-ran')\n")
    result = pytester.runpytest("--collect-only", "-q", str(site["checks"]))
    assert "test_plain" not in result.stdout.str()
    result, summary = run(pytester, site)
    assert not any(r["check"] == "test_plain" for r in summary["records"])
    assert "helper-ran" not in result.stdout.str()


SLOW = '''
import time
from acceptance.checkspec import check


@check("site.slow", runbook="x", roles=["master"], needs=())
def test_slow(node):
    time.sleep(60)
'''


def _subprocess_run(pytester, site, monkeypatch, *args: str) -> Any:
    spec = site["out"].parent / "spec.json"
    spec.write_text("{}")
    monkeypatch.setenv("ACCEPTANCE_FAKE_SPEC", str(spec))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    return subprocess.Popen([sys.executable, "-m", "pytest", f"--inventory={site['inventory']}",
                             f"--report-dir={site['out']}", "-p", "no:cacheprovider", "-p", "tests.unit.fakessh",
                             str(site["checks"]), *args], cwd=pytester.path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_the_watchdog_ends_a_run_that_hangs_with_its_reports(pytester, site, monkeypatch):
    (site["checks"] / "zz_slow.py").write_text(SLOW)
    started = time.monotonic()
    proc = _subprocess_run(pytester, site, monkeypatch, "--run-timeout=4")
    proc.communicate(timeout=60)
    assert proc.returncode == 2 and time.monotonic() - started < 30
    summary = json.loads((site["out"] / "latest" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["healthy"] is False
    assert summary["totals"]["not_run"] >= 1


def test_sigterm_ends_the_run_like_ctrl_c_with_its_reports(pytester, site, monkeypatch):
    (site["checks"] / "zz_slow.py").write_text(SLOW)
    proc = _subprocess_run(pytester, site, monkeypatch)
    time.sleep(6)  # well inside the slow check (start-up and the other checks take about 2 s)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 2
    summary = json.loads((site["out"] / "latest" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["totals"]["not_run"] >= 1
    assert not list(Path(tempfile.gettempdir()).glob(f"alice-acc-*/{'alimesos01'}"))


def test_without_pytest_html_the_run_still_writes_its_reports(pytester, site):
    """``-p no:html``: the report hooks are pytest-html's, so they are not registered; the page is rendered from
    the summary instead."""
    result, summary = run(pytester, site, "-p", "no:html")
    assert result.ret == 1, result.stdout.str()[-2000:]
    assert summary["records"] and (site["out"] / "latest" / "report.html").is_file()
