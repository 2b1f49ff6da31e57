"""The remediation engine with synthetic checks and remediation fixtures overridden in a site conftest.py (as an
operator would), run in-process with pytester against a fake Consul (the cluster-wide state, kill switch and
lock). The blast-radius count and the drain are replaced at their seams (their own tests are
test_remediation_blast.py): only a failed check is remediated, in pytest-rerunfailures' idiom; an interrupted
run acts on nothing; dry-run goes through the gates; every guardrail refuses what it must (issue 17's points)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from remediation import blast, engine, guardrails, phase

from .conftest import EXAMPLE, FILES
from .fakeconsul import FakeConsul, consul_inventory, fake_consul_fixture  # noqa: F401 - the fixture
from .fakessh import FakeNodes

pytest_plugins = ["pytester"]
STATE = "alice-acceptance/remediation-state"
LOCK = "alice-acceptance/remediation-lock"
STOP = "alice-acceptance/stop"

CONFTEST = '''
import os, pathlib, urllib.request
import pytest
from remediation.model import Action, ActionFailed, NeedsHuman

FLAGS = {flags!r}


@pytest.fixture
def create_flag(node):
    def do(progress):
        pathlib.Path(FLAGS, node.name).write_text("fixed")
        return f"flag of {{node.name}} created"
    return Action("create_flag", node, f"create the flag of {{node.name}}", do, lambda: "absent")


@pytest.fixture
def broken_fix(node):
    def do(progress):
        raise ActionFailed("the fix itself fails")
    return Action("broken_fix", node, "a fix that fails", do)


@pytest.fixture
def boom(node):
    def do(progress):
        raise RuntimeError("HTTP 409 Conflict: server is being rebuilt")
    return Action("boom", node, "an API error", do)


@pytest.fixture
def human_fix(node):
    def do(progress):
        raise NeedsHuman("the unit is not installed")
    return Action("human_fix", node, "needs a human", do, escalation=("reboot_node", "hard_reboot"))


@pytest.fixture
def reboot_it(node):
    def do(progress):
        pathlib.Path(FLAGS, node.name).write_text("rebooted")
        return f"{{node.name}} rebooted"
    return Action("reboot_it", node, f"reboot {{node.name}}", do, disruptive=True, gates=("lock", "workload"))


@pytest.fixture
def unconfirmed_reboot(node):
    return Action("hard_reboot", node, f"hard reboot {{node.name}}", lambda p: "rebooted", disruptive=True,
                  gates=("lock", "workload"), confirm=lambda: "nomad: alibuild01 is ready")


@pytest.fixture
def steal_lock(node):
    """Someone breaks the lock while this action runs (its session destroyed)."""
    def do(progress):
        url = os.environ["FAKE_CONSUL_URL"]
        token = os.environ["CONSUL_REMEDIATION_TOKEN"]
        request = urllib.request.Request(f"{{url}}/v1/kv/{LOCK}", method="DELETE",
                                         headers={{"X-Consul-Token": token}})
        urllib.request.urlopen(request, timeout=5).read()
        pathlib.Path(FLAGS, node.name).write_text("stole")
        return "the lock was broken by someone"
    return Action("steal_lock", node, "break the lock", do, gates=("lock",))
'''.replace("{LOCK}", LOCK)

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

INTERRUPT = '''

@check("site.zz-interrupt", runbook="x", roles=["agent"], needs=())
def test_interrupt(node):
    raise KeyboardInterrupt  # as SIGTERM or --run-timeout end a run: during the checks
'''


@pytest.fixture
def site(pytester: pytest.Pytester, fake_consul: FakeConsul, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name in FILES:
        pytester.path.joinpath(name).write_text("")
    flags = pytester.mkdir("flags")
    checks = pytester.mkdir("site-checks")
    (checks / "conftest.py").write_text(CONFTEST.format(flags=str(flags)))
    (checks / "flags.py").write_text(CHECKS.format(flags=str(flags)))
    monkeypatch.setenv("FAKE_CONSUL_URL", fake_consul.url)
    unhealthy = blast.Unhealthy()
    monkeypatch.setattr(blast, "count_unhealthy", lambda *a, **k: unhealthy)
    drains: list[str] = []

    def drain(nomad: Any, node: Any, *args: Any, **kw: Any) -> list[str]:
        drains.append(node.name)
        return list(site_data["still_running"])

    monkeypatch.setattr(guardrails, "drain_until_idle", drain)  # the drain's seam
    site_data = {"checks": checks, "flags": flags, "out": pytester.path / "out", "path": pytester.path,
                 "consul": fake_consul, "unhealthy": unhealthy, "drains": drains, "still_running": []}
    return site_data


def write_inventory(site: dict[str, Any], maintenance: bool = True, **remediation: Any) -> Path:
    base = EXAMPLE if maintenance else EXAMPLE.split("maintenance:")[0]
    text = consul_inventory(site["consul"], textwrap.dedent(base))
    if remediation:
        text += "remediation:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in remediation.items())
    path = site["path"] / "inventory.yaml"
    path.write_text(text)
    return path


def run(pytester: pytest.Pytester, site: dict[str, Any], mode: str, *args: str, maintenance: bool = True,
        **remediation: Any) -> tuple[pytest.RunResult, dict[str, Any], list[dict[str, Any]]]:
    inventory = write_inventory(site, maintenance, **remediation)
    result = pytester.runpytest(f"--inventory={inventory}", f"--report-dir={site['out']}", "-p", "no:cacheprovider",
                                f"--remediate={mode}", str(site["checks"]), *args, plugins=[FakeNodes()],
                                no_reraise_ctrlc=True)
    summary_path = site["out"] / "latest" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    audit_path = site["out"] / "audit.jsonl"
    audit = [json.loads(line) for line in audit_path.read_text().splitlines()] if audit_path.exists() else []
    return result, summary, audit


def rec(summary: dict[str, Any], check: str, node: str) -> dict[str, Any]:
    return next(r for r in summary["records"] if r["check"] == check and r["node"] == node)


def use(site: dict[str, Any], remediation: str, node: str | None = None) -> None:
    """site.flag remediated by ``remediation`` (only on ``node`` when given)."""
    checks = site["checks"] / "flags.py"
    text = checks.read_text().replace('remediation="create_flag", roles=["agent"]',
                                      f'remediation="{remediation}", roles=["agent"]')
    checks.write_text(text)


def verdicts(audit: list[dict[str, Any]], node: str | None = None) -> list[tuple[str, str | None]]:
    return [(e["verdict"], e["guardrail"]) for e in audit if node is None or e["node"] == node]


# --------------------------------------------------------------------------- a remediation, as pytest reports it


def test_a_failed_check_is_remediated_and_rechecked_in_three_steps(pytester, site):
    result, summary, audit = run(pytester, site, "safe")
    assert result.ret == 1  # site.cannot-tell stays an error
    fixed = rec(summary, "site.flag", "alibuild01")
    assert fixed["outcome"] == "remediated" and fixed["first_message"] == "no flag on alibuild01"
    assert fixed["remediation_detail"]["action"] == "create_flag" and fixed["remediation_detail"]["verdict"] == "taken"
    assert (site["flags"] / "alibuild01").read_text() == "fixed"
    assert not (site["flags"] / "alibuild02").exists()  # waived: never remediated
    assert verdicts(audit, "alibuild01") == [("started", None), ("taken", None)]
    assert all(e["user"] and e["host"] and e["mode"] == "safe" and e["run_id"] for e in audit)
    assert rec(summary, "site.cannot-tell", "alimesos01")["outcome"] == "error"  # error: never remediated
    assert not any(e["check"] == "site.cannot-tell" for e in audit)
    assert summary["remediations"] == audit
    # pytest-rerunfailures' idiom: the failing attempt and the fix are `rerun` steps, the re-check is final
    outcomes = result.parseoutcomes()
    assert outcomes.get("rerun") == 2 and outcomes.get("remediation") == 2 and outcomes.get("remediated") == 2
    result.stdout.fnmatch_lines(["*remediation taken: create_flag for site.flag*"])
    again, summary, _ = run(pytester, site, "off", "-k", "not cannot")
    assert again.ret == 0 and rec(summary, "site.flag", "alibuild01")["outcome"] == "passed"


def test_the_machinery_is_a_plugin_registered_only_when_remediating(pytester, site):
    inventory = write_inventory(site)
    for mode, registered in (("off", False), ("safe", True)):
        config = pytester.parseconfigure(f"--inventory={inventory}", f"--remediate={mode}", "-p", "no:cacheprovider")
        assert (config.pluginmanager.get_plugin(phase.PLUGIN_NAME) is not None) is registered
        config._ensure_unconfigure()


def test_off_does_nothing_and_records_nothing(pytester, site):
    _, summary, audit = run(pytester, site, "off")
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed" and audit == []


# --------------------------------------------------------------------------- 1. interrupted runs


def test_an_interrupted_run_remediates_nothing(pytester, site):
    (site["checks"] / "flags.py").write_text((site["checks"] / "flags.py").read_text() + INTERRUPT)
    result, summary, audit = run(pytester, site, "all")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not list(site["flags"].iterdir())
    assert audit and {g for _, g in verdicts(audit)} == {"interrupted"}
    assert not any(v in ("started", "taken") for v, _ in verdicts(audit))
    assert "nothing remediated on a partial picture" in audit[0]["reason"]
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed"


# --------------------------------------------------------------------------- 2. confirmation, masters


def test_a_disruptive_action_not_confirmed_is_refused(pytester, site):
    use(site, "unconfirmed_reboot")
    _, _, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert verdicts(audit) == [("refused", "unconfirmed")]
    assert "nomad: alibuild01 is ready" in audit[0]["reason"] and site["drains"] == []


def test_a_failure_that_does_not_persist_is_not_acted_on(pytester, site):
    use(site, "reboot_it")
    checks = site["checks"] / "flags.py"  # the check fails once, then passes (a lost packet)
    checks.write_text(checks.read_text().replace(
        'assert pathlib.Path(FLAGS, node.name).exists(), f"no flag on {node.name}"',
        'seen = pathlib.Path(FLAGS, "seen-" + node.name)\n'
        '    first = not seen.exists()\n'
        '    seen.write_text("x")\n'
        '    assert not first, "lost one packet"'))
    _, _, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert verdicts(audit) == [("refused", "unconfirmed")]
    assert "did not persist" in audit[0]["reason"] and site["drains"] == []


def test_a_master_is_never_rebooted_automatically(pytester, site):
    checks = site["checks"] / "flags.py"
    checks.write_text(checks.read_text().replace(
        '@check("site.cannot-tell", runbook="x", remediation="create_flag", roles=["master"], needs=())\n'
        'def test_cannot_tell(node):\n    raise CheckError("the probe could not run")',
        '@check("site.master", runbook="x", remediation="human_fix", roles=["master"], needs=())\n'
        'def test_master(node):\n    assert False, "down"'))
    conftest = site["checks"] / "conftest.py"
    conftest.write_text(conftest.read_text().replace(
        'return Action("human_fix", node, "needs a human", do, escalation=("reboot_node", "hard_reboot"))',
        'return Action("human_fix", node, "needs a human", lambda p: "done", escalation=("reboot_node",))'))
    now = time.time()  # the restart's budget is spent: the next rung would be a reboot
    site["consul"].kv[STATE] = json.dumps({"budget": {"site.master|alimesos01": {"human_fix": [now] * 3}}})
    result, _, audit = run(pytester, site, "all", "--nodes=alimesos01")
    assert verdicts(audit) == [("escalated", "master")] and "never rebooted automatically" in audit[0]["reason"]
    assert result.ret == phase.NEEDS_HUMAN


# --------------------------------------------------------------------------- 4. kill switches


def test_kill_switch_in_the_inventory(pytester, site):
    _, summary, audit = run(pytester, site, "all", enabled=False)
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed"
    assert {g for _, g in verdicts(audit)} == {"kill-switch"} and not list(site["flags"].iterdir())


def test_the_default_kill_switch_file_is_beside_the_inventory(pytester, site):
    (site["path"] / "STOP-REMEDIATION").write_text("")
    _, _, audit = run(pytester, site, "all")
    assert {g for _, g in verdicts(audit)} == {"kill-switch"}
    assert "STOP-REMEDIATION exists" in audit[0]["reason"]


def test_the_cluster_wide_kill_switch_stops_every_runner(pytester, site):
    site["consul"].kv[STOP] = json.dumps({"reason": "maintenance INC42", "user": "alice", "host": "lxplus"})
    _, _, audit = run(pytester, site, "safe")
    assert {g for _, g in verdicts(audit)} == {"kill-switch"} and "maintenance INC42" in audit[0]["reason"]
    assert not list(site["flags"].iterdir())


def test_a_kill_switch_that_cannot_be_read_stops_everything(pytester, site):
    site["consul"].broken = "html"
    _, _, audit = run(pytester, site, "safe")
    assert {g for _, g in verdicts(audit)} == {"kill-switch"} and "act on nothing" in audit[0]["reason"]


# --------------------------------------------------------------------------- 5. blast radius and caps


def test_past_the_blast_radius_nothing_is_done_and_a_human_is_asked(pytester, site):
    site["unhealthy"].masters.update({"alimesos02": "consul server unhealthy", "alimesos03": "vault sealed"})
    result, _, audit = run(pytester, site, "safe")
    assert {v for v, _ in verdicts(audit)} == {"escalated"} and {g for _, g in verdicts(audit)} == {"blast-radius"}
    assert not list(site["flags"].iterdir()) and result.ret == phase.NEEDS_HUMAN


def test_this_runs_failures_count_with_the_apis_view(pytester, site):
    """A shard sees one failing agent; the APIs say three more are drained: past the limit of 4 together."""
    site["unhealthy"].agents.update({f"alibuild1{i}": "draining" for i in range(4)})
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert verdicts(audit) == [("escalated", "blast-radius")]


def test_an_unknown_count_acts_on_nothing(pytester, site):
    site["unhealthy"].unknown.append("Nomad: no answer")
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert verdicts(audit) == [("escalated", "blast-radius")] and "cannot count" in audit[0]["reason"]


def test_every_node_of_a_role_at_once_is_refused(pytester, site):
    _, _, audit = run(pytester, site, "safe", maintenance=False, max_unhealthy_agents=10)
    assert {g for _, g in verdicts(audit)} == {"circuit-breaker"} and "every agent fails" in audit[0]["reason"]


def test_disruptive_actions_are_capped_per_window_across_runners(pytester, site):
    use(site, "reboot_it")
    site["consul"].kv[STATE] = json.dumps({"disruptive": [
        {"node": "alibuild07", "role": "agent", "time": time.time()},
        {"node": "alibuild08", "role": "agent", "time": time.time()}]})
    _, _, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert verdicts(audit) == [("refused", "cap")] and "limit 2" in audit[0]["reason"]


# --------------------------------------------------------------------------- 6. budget and state


def test_dry_runs_spend_no_budget(pytester, site):
    use(site, "broken_fix")
    for _ in range(4):
        run(pytester, site, "dry-run", "--nodes=alibuild01", attempts=1)
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01", attempts=1)
    assert verdicts(audit)[-2:] == [("started", None), ("failed", None)]


def test_budget_spent_needs_a_human(pytester, site):
    use(site, "broken_fix")
    _, summary, audit = run(pytester, site, "safe", "--nodes=alibuild01", attempts=2)
    assert audit[-1]["verdict"] == "failed" and "the fix itself fails" in audit[-1]["reason"]
    assert "[remediation failed: the fix itself fails]" in rec(summary, "site.flag", "alibuild01")["message"]
    run(pytester, site, "safe", "--nodes=alibuild01", attempts=2)
    result, summary, audit = run(pytester, site, "safe", "--nodes=alibuild01", attempts=2)
    assert verdicts(audit)[-1] == ("escalated", "budget") and "needs a human" in audit[-1]["reason"]
    assert len(site["consul"].value_json(STATE)["budget"]["site.flag|alibuild01"]["broken_fix"]) == 2
    assert result.ret == phase.NEEDS_HUMAN


def test_needs_a_human_does_not_climb_to_a_reboot(pytester, site):
    use(site, "human_fix")
    run(pytester, site, "all", "--nodes=alibuild01")
    _, _, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert verdicts(audit)[-1] == ("escalated", "budget") and "the unit is not installed" in audit[-1]["reason"]
    assert not any(e["action"] in ("reboot_node", "hard_reboot") for e in audit)


def test_a_flapping_failure_goes_to_a_human(pytester, site):
    site["consul"].kv[STATE] = json.dumps({"flaps": {"site.flag|alibuild01": [time.time()] * 3}})
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert verdicts(audit) == [("escalated", "budget")] and audit[0]["reason"].startswith("flapping")


def test_a_fix_records_a_flap_instead_of_resetting_the_budget(pytester, site):
    run(pytester, site, "safe", "--nodes=alibuild01")
    state = site["consul"].value_json(STATE)
    assert state["budget"]["site.flag|alibuild01"]["create_flag"] and state["flaps"]["site.flag|alibuild01"]


def test_a_corrupt_state_acts_on_nothing(pytester, site):
    site["consul"].kv[STATE] = b"{not json"
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert verdicts(audit) == [("refused", "state")] and not list(site["flags"].iterdir())
    assert site["consul"].kv[STATE] == b"{not json"


# --------------------------------------------------------------------------- 8. errors, 9. the lock, 10. drains


def test_an_api_error_is_one_failed_decision_and_the_next_fix_still_runs(pytester, site):
    checks = site["checks"] / "flags.py"
    checks.write_text(checks.read_text() + '''

@check("site.boom", runbook="x", remediation="boom", roles=["agent"], needs=())
def test_boom(node):
    assert False, "broken"
''')
    result, summary, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert ("failed", None) in verdicts(audit) and any("409 Conflict" in e["reason"] for e in audit)
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "remediated"
    assert result.ret == 1


def test_disruptive_actions_need_all_and_the_lock(pytester, site):
    use(site, "reboot_it")
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert verdicts(audit) == [("refused", "mode")] and "--remediate=all" in audit[0]["reason"]
    site["consul"].broken = "500"  # the lock (and the state) cannot be read
    _, _, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert audit[-1]["verdict"] == "refused" and audit[-1]["guardrail"] in ("kill-switch", "state", "lock")


def test_a_lock_lost_mid_run_stops_what_comes_next(pytester, site):
    use(site, "steal_lock")  # alibuild01's action breaks the lock; alimetal01's comes next
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01,alimetal01")
    assert verdicts(audit, "alibuild01") == [("started", None), ("taken", None)]
    [refused] = [e for e in audit if e["node"] == "alimetal01"]
    assert refused["guardrail"] == "lock" and "no longer ours" in refused["reason"]
    assert not (site["flags"] / "alimetal01").exists()


def test_a_drain_not_idle_is_left_drained_and_not_acted_on(pytester, site):
    use(site, "reboot_it")
    site["still_running"] = ["ci-mesosci-slc9/build[0]"]
    _, summary, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert verdicts(audit) == [("refused", "workload")] and "left drained" in audit[0]["reason"]
    assert "21600" in audit[0]["reason"]  # the deadline, stated
    assert not (site["flags"] / "alibuild01").exists()
    drained = site["consul"].value_json(STATE)["drained"]["alibuild01"]
    assert drained["check"] == "site.flag" and drained["user"] and drained["host"]


def test_a_disruptive_action_drains_then_acts(pytester, site):
    use(site, "reboot_it")
    _, summary, audit = run(pytester, site, "all", "--nodes=alibuild01")
    assert site["drains"] == ["alibuild01"]
    assert verdicts(audit, "alibuild01")[:2] == [("started", None), ("taken", None)]
    assert "drained" in audit[0]["reason"] and (site["flags"] / "alibuild01").read_text() == "rebooted"


# --------------------------------------------------------------------------- 11. dry run, exit codes


def test_dry_run_goes_through_the_gates_and_changes_nothing(pytester, site):
    _, summary, audit = run(pytester, site, "dry-run")
    assert rec(summary, "site.flag", "alibuild01")["outcome"] == "failed"
    assert not list(site["flags"].iterdir())
    assert {v for v, _ in verdicts(audit)} == {"planned"}
    assert all("would create the flag" in e["reason"] for e in audit)
    use(site, "reboot_it")
    _, _, audit = run(pytester, site, "dry-run", "--nodes=alibuild01")
    assert verdicts(audit)[-1] == ("refused", "mode")
    assert audit[-1]["reason"].startswith("would reboot alibuild01, but disruptive: needs --remediate=all")
    assert site["drains"] == [] and site["consul"].entry(LOCK) is None


def test_a_remediation_that_is_no_fixture_fails_the_collection(pytester, site):
    use(site, "create_flga")
    result, _, _ = run(pytester, site, "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*remediation 'create_flga' is not a fixture*"])


def test_remediation_runs_in_one_process(pytester, site):
    inventory = write_inventory(site)
    result = pytester.runpytest(f"--inventory={inventory}", "--remediate=safe", "-n", "2", str(site["checks"]))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--remediate=safe runs in one process*"])


# --------------------------------------------------------------------------- 7. never undo a human


HOST_CHECK = '''

@check("site.on-the-node", runbook="x", roles=["agent"], needs=())
def test_on_the_node(host, node):
    assert not pathlib.Path(FLAGS, "bad-" + node.name).exists(), "bad"
'''


class FakeNomad:
    """Nomad as re-enabling sees it: ``theirs`` are nodes a human drained again since."""

    reenabled: list[str] = []
    theirs: set[str] = set()

    def __init__(self, http: Any) -> None:
        pass

    def node(self, name: str) -> dict[str, Any]:
        return {"ID": f"id-{name}", "Name": name}

    def reenable(self, node_id: str, node: dict[str, Any]) -> str:
        from remediation.model import NeedsHuman

        if node["Name"] in self.theirs:
            raise NeedsHuman(f"{node['Name']} was drained by bob@lxplus")
        self.reenabled.append(node["Name"])
        return f"{node['Name']} re-enabled in Nomad"


@pytest.fixture
def nomad(site: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> type[FakeNomad]:
    monkeypatch.setattr(FakeNomad, "reenabled", [])
    monkeypatch.setattr(FakeNomad, "theirs", set())
    monkeypatch.setattr(engine, "Nomad", FakeNomad)
    (site["checks"] / "flags.py").write_text((site["checks"] / "flags.py").read_text() + HOST_CHECK)
    for name in ("alibuild01", "alimetal01"):
        (site["flags"] / name).write_text("fine")
    mine = {"run_id": "earlier", "user": "ci", "host": "runner", "check": "site.flag", "since": 1.0}
    site["consul"].kv[STATE] = json.dumps({"drained": {n: mine for n in ("alibuild01", "alibuild02", "alimetal01")}})
    return FakeNomad


def test_only_nodes_whose_own_checks_ran_and_passed_are_re_enabled(pytester, site, nomad):
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert nomad.reenabled == ["alibuild01"]  # alimetal01: no check ran; alibuild02: in maintenance
    assert set(site["consul"].value_json(STATE)["drained"]) == {"alibuild02", "alimetal01"}
    assert [(e["node"], e["verdict"]) for e in audit if e["action"] == "reenable_node"] == [("alibuild01", "taken")]


def test_a_node_that_still_fails_stays_drained(pytester, site, nomad):
    (site["flags"] / "bad-alibuild01").write_text("")
    run(pytester, site, "safe", "--nodes=alibuild01")
    assert nomad.reenabled == [] and "alibuild01" in site["consul"].value_json(STATE)["drained"]


def test_a_humans_drain_since_ours_is_theirs(pytester, site, nomad):
    nomad.theirs.add("alibuild01")
    _, _, audit = run(pytester, site, "safe", "--nodes=alibuild01")
    assert nomad.reenabled == []
    [line] = [e for e in audit if e["action"] == "reenable_node"]
    assert line["verdict"] == "refused" and "bob@lxplus" in line["reason"]
    assert "alibuild01" not in site["consul"].value_json(STATE)["drained"]  # not ours to remember any more


def test_the_kill_switch_also_stops_re_enabling(pytester, site, nomad):
    site["consul"].kv[STOP] = json.dumps({"reason": "hands off"})
    run(pytester, site, "safe", "--nodes=alibuild01")
    assert nomad.reenabled == []


# --------------------------------------------------------------------------- re-checks run through pytest

OWN_FIXTURE = '''

@pytest.fixture
def flag_path(node):
    """The site's own fixture; each setup is counted, so a test sees whether a re-check set it up again."""
    with open(pathlib.Path(FLAGS).parent / "setups", "a") as f:
        f.write(node.name + "\\n")
    return pathlib.Path(FLAGS, node.name)


@pytest.fixture
def locked_flag(node):
    def do(progress):
        pathlib.Path(FLAGS, node.name).write_text("fixed")
        return "flag created"
    return Action("locked_flag", node, f"create the flag of {node.name} under the lock", do, gates=("lock",))
'''

OWN_CHECK = '''
from acceptance.checkspec import check


@check("site.own-fixture", runbook="x", remediation="{fix}", roles=["agent"], needs=())
def test_own_fixture(flag_path):
    assert flag_path.exists(), f"no flag at {{flag_path.name}}"
'''


@pytest.mark.parametrize("mode, fix, outcome, verdict", [
    ("safe", "create_flag", "remediated", "taken"),  # the re-check after the fix
    ("dry-run", "locked_flag", "failed", "planned"),  # the re-check that confirms the failure (a locked action)
])
def test_a_site_checks_own_fixture_is_set_up_again_for_its_re_check(pytester, site, mode, fix, outcome, verdict):
    (site["checks"] / "flags.py").unlink()
    with (site["checks"] / "conftest.py").open("a") as f:
        f.write(OWN_FIXTURE)
    (site["checks"] / "own.py").write_text(OWN_CHECK.format(fix=fix))
    result, summary, audit = run(pytester, site, mode, "--nodes=alibuild01")
    record = rec(summary, "site.own-fixture", "alibuild01")
    assert record["outcome"] == outcome and record["remediation_detail"]["verdict"] == verdict, record
    assert verdicts(audit)[-1] == (verdict, "dry-run" if mode == "dry-run" else None)
    # the check, then its re-check: pytest set the conftest fixture up twice (no value kept from the first run)
    assert (site["path"] / "setups").read_text().split() == ["alibuild01", "alibuild01"]
    assert (site["flags"] / "alibuild01").exists() is (mode == "safe")
