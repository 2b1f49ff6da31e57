"""The nightly's message to Mattermost (alice_acceptance/notify.py): what it says for a new failure, a recovery and
a "needs a human"; nothing when nothing changed, nor for a shard; one POST of Mattermost's JSON to a real local
receiver (the lab's stand-in, tests/lab/notifications.py); a receiver that hangs, fails, redirects or is not
there costs a bounded time and one warning, never the webhook's URL; the inventory's ``notify`` section; and the
plugin sending for a nightly and not for a shard."""

from __future__ import annotations

import json
import logging
import secrets
import socket
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from acceptance.inventory import InventoryError, MattermostSettings, parse_inventory
from acceptance.transport.batch import Answer
from alice_acceptance import notify
from reports.summary import Record, Summary
from tests.lab import __main__ as lab_main
from tests.lab.notifications import Receiver

from .conftest import EXAMPLE, make_site
from .fakessh import FakeNodes

pytest_plugins = ["pytester"]

REPORT = "https://alice-ci.example.cern.ch/acceptance/{run_id}/report.html"
RUN = "20261126T030000Z-3f9a1c"


Items = Sequence[dict[str, Any]]


def summary(new: Items = (), fixed: Items = (), records: Items = (), remediations: Items = (),
            **top: Any) -> dict[str, Any]:
    trend = {"runs": 7, "flap_threshold": 3, "previous_run": "20261125T030000Z-77aa01", "compared_runs": [],
             "new_failures": list(new), "fixed": list(fixed), "still_failing": [], "flapping": []}
    return {"run_id": RUN, "cluster": "alice-prod", "moment": "nightly", "shard": None, "interrupted": False,
            "trend": trend, "records": list(records), "remediations": list(remediations), **top}


def record(check: str, node: str, outcome: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"check": check, "node": node, "outcome": outcome, "severity": "major", "message": message, **extra}


def entry(check: str, node: str, outcome: str, previous: str | None) -> dict[str, Any]:
    return {"check": check, "node": node, "outcome": outcome, "previous": previous}


def escalation(check: str, node: str, reason: str, verdict: str = "escalated") -> dict[str, Any]:
    return {"run_id": RUN, "node": node, "check": check, "action": "image.pull", "mode": "safe", "verdict": verdict,
            "guardrail": "unfixable", "reason": reason, "before": None, "after": None, "duration_s": 1.0}


FAILING = summary(new=[entry("agent.build.free", "alibuild29", "failed", "passed")],
                  records=[record("agent.build.free", "alibuild29", "failed", "only 12 GiB free on /build")])


# --------------------------------------------------------------------------- the message


def test_a_new_failure_says_node_check_reason_and_links_its_row() -> None:
    text = notify.message(FAILING, REPORT)
    assert text is not None
    head, facts, *rest = text.splitlines()
    assert head == "#### :rotating_light: `alice-prod` nightly: 1 new failure"
    assert f"run `{RUN}`" in facts and f"(https://alice-ci.example.cern.ch/acceptance/{RUN}/report.html)" in facts
    line = next(x for x in rest if "alibuild29" in x)
    assert line.startswith("- `alibuild29` `agent.build.free` **failed** major (was passed): "
                           "`only 12 GiB free on /build` [report](https://alice-ci.example.cern.ch/acceptance/")
    assert line.endswith("/report.html#r-2cbb56657488)")  # the row's anchor: sha1(check NUL node)
    assert "**:red_circle: New failures**" in rest


def test_a_recovery_says_what_fixed_it() -> None:
    data = summary(fixed=[entry("node.ssh", "alibuild07", "passed", "failed"),
                          entry("agent.units.nomad", "alibuild08", "remediated", "error")],
                   remediations=[escalation("agent.units.nomad", "alibuild08", "restarted nomad", verdict="taken")])
    text = notify.message(data, None)
    assert text is not None and text.splitlines()[0] == "#### :white_check_mark: `alice-prod` nightly: 2 recoveries"
    assert "- `alibuild07` `node.ssh` passed (was failed): passes again" in text
    assert "- `alibuild08` `agent.units.nomad` remediated (was error): `image.pull`: `restarted nomad`" in text
    assert "[report]" not in text  # no report_url: no link


def test_needs_a_human_comes_from_the_escalations_once_per_check_and_node() -> None:
    data = summary(remediations=[escalation("agent.image.builder", "alibuild15", "needs a human: first"),
                                 escalation("agent.image.builder", "alibuild15", "needs a human: registry says no"),
                                 escalation("agent.units.docker", "alibuild16", "restarted", verdict="failed")])
    text = notify.message(data, REPORT)
    assert text is not None and text.splitlines()[0].endswith("nightly: 1 needs a human")
    items = [x for x in text.splitlines() if x.startswith("- ")]
    assert len(items) == 1
    assert items[0].startswith("- `alibuild15` `agent.image.builder` `image.pull`: `needs a human: registry says no` "
                               "[report](https://")


def test_nothing_changed_says_nothing() -> None:
    quiet = summary(records=[record("agent.build.free", "alibuild29", "failed", "still")])
    quiet["trend"]["still_failing"] = [entry("agent.build.free", "alibuild29", "failed", "failed")]
    assert notify.message(quiet, REPORT) is None
    assert notify.message({**FAILING, "trend": None}, REPORT) is None  # no trend: nothing to compare with


def test_a_check_message_pings_nobody_and_breaks_no_markdown() -> None:
    hostile = "disk full @channel @all @here <!channel> <!here|x> `code` [x](https://evil) **bold**\x1b[31m"
    data = summary(new=[entry("site.x`y", "alibuild01", "failed", None)],
                   records=[record("site.x`y", "alibuild01", "failed", hostile)])
    text = notify.message(data, REPORT)
    assert text is not None
    assert "@" not in text.replace("(https://", "")  # no ASCII '@' at all: no mention of anyone
    assert "<!" not in text and "\x1b" not in text
    line = next(x for x in text.splitlines() if "alibuild01" in x)
    spans = line.split("`")
    assert len(spans) % 2 == 1  # backticks pair up: remote text stays inside its code spans
    assert "[x](https://evil) **bold**" in spans[-2]  # the reason: inside a code span, shown, not rendered
    assert "not checked in the previous run" in line


def test_a_bad_night_is_bounded_and_links_the_rest() -> None:
    new = [entry(f"agent.check.{i}", f"alibuild{n:02}", "failed", "passed") for i in range(30) for n in range(20)]
    recs = [record(e["check"], e["node"], "failed", "x" * 5000) for e in new]
    text = notify.message(summary(new=new, records=recs), REPORT)
    assert text is not None and len(text) <= notify.MAX_TEXT
    assert f"- ... and {len(new) - notify.MAX_ITEMS} more: see the [report](" in text
    assert max(len(x) for x in text.splitlines()) < 600  # each reason cut to one short line


# --------------------------------------------------------------------------- sending


@pytest.fixture
def receiver(tmp_path: Path) -> Any:
    with Receiver(log=tmp_path / "received.jsonl", key=secrets.token_hex(13)) as r:
        yield r


def settings(**kw: Any) -> MattermostSettings:
    return MattermostSettings(**{"channel": "alice-build-infra", "report_url": REPORT, "timeout_s": 2, **kw})


def test_one_post_of_mattermost_json(receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    said: list[str] = []
    ok = notify.notify_summary(FAILING, settings(icon_url="https://alice.example.cern.ch/icon.png"),
                               env={"ALICE_ACCEPTANCE_MATTERMOST_URL": receiver.url}, say=said.append,
                               warn=pytest.fail)
    assert ok and receiver.requests == 1
    assert receiver.received == [{"text": notify.message(FAILING, REPORT), "username": "alice-acceptance",
                                  "channel": "alice-build-infra",
                                  "icon_url": "https://alice.example.cern.ch/icon.png"}]
    assert said == ["notify: Mattermost message sent: 1 new failure"]
    # `python -m tests.lab notifications` prints what it received, one JSON per line
    assert lab_main.main(["notifications", "--log", str(receiver.log)]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == receiver.received


def test_nothing_is_sent_when_nothing_changed_or_for_a_shard(receiver: Receiver) -> None:
    env = {"ALICE_ACCEPTANCE_MATTERMOST_URL": receiver.url}
    for data in ({**FAILING, "trend": {**FAILING["trend"], "new_failures": []}},
                 {**FAILING, "shard": {"index": 1, "count": 2}}, {**FAILING, "moment": "provision"}):
        assert not notify.notify_summary(data, settings(), env=env, warn=pytest.fail)
    assert not notify.notify_summary(FAILING, None, env=env, warn=pytest.fail)  # no notify section
    assert receiver.requests == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("answer", ["hang", "500", "redirect", "refused"])
def test_a_bad_receiver_costs_a_bounded_time_and_one_warning(answer: str, receiver: Receiver,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = receiver.url if answer != "refused" else f"http://127.0.0.1:{_closed_port()}/hooks/{secrets.token_hex(13)}"
    receiver.answer = answer
    posts: list[int] = []
    real = notify.new_session

    def counting(**kw: Any) -> Any:
        session = real(**kw)
        post = session.post
        session.post = lambda *a, **k: (posts.append(1), post(*a, **k))[1]  # type: ignore[method-assign]
        return session

    monkeypatch.setattr(notify, "new_session", counting)
    warnings: list[str] = []
    start = time.monotonic()
    assert not notify.notify_summary(FAILING, settings(timeout_s=1), env={"ALICE_ACCEPTANCE_MATTERMOST_URL": url},
                                     warn=warnings.append, say=pytest.fail)
    assert time.monotonic() - start < 2.5
    assert len(warnings) == 1 and warnings[0].startswith("notify: Mattermost message not sent: 127.0.0.1: ")
    assert {"hang": "timed out", "500": "HTTP 500", "redirect": "HTTP 302", "refused": "connection refused (tried "
            "twice)"}[answer] in warnings[0] or (answer == "hang" and "no complete answer" in warnings[0])
    assert len(posts) == (2 if answer == "refused" else 1)  # one retry, and only when nothing could be posted
    key = url.rsplit("/", 1)[-1]
    shown = warnings[0] + capsys.readouterr().out + capsys.readouterr().err
    assert url not in shown and key not in shown


def test_the_url_comes_from_the_environment_and_is_never_shown(receiver: Receiver) -> None:
    warnings: list[str] = []
    assert not notify.notify_summary(FAILING, settings(url_env="TEAM_HOOK"), env={}, warn=warnings.append)
    bad = f"mattermost.cern.ch/hooks/{secrets.token_hex(13)}"
    assert not notify.notify_summary(FAILING, settings(), env={"ALICE_ACCEPTANCE_MATTERMOST_URL": bad},
                                     warn=warnings.append)
    assert warnings == [
        "notify: Mattermost message not sent: TEAM_HOOK is not set (the webhook's URL comes from the environment)",
        "notify: Mattermost message not sent: ALICE_ACCEPTANCE_MATTERMOST_URL is not an http(s) URL"]
    assert receiver.requests == 0


# --------------------------------------------------------------------------- the inventory


def _inventory(notify_section: Any) -> Any:
    return parse_inventory({"nodes": {"masters": [{"name": "alimesos01"}]}, "notify": notify_section},
                           Path("/site/inventory.yaml"))


def test_the_notify_section_defaults() -> None:
    assert _inventory({}).notify.mattermost is None
    assert _inventory({"mattermost": {}}).notify.mattermost == MattermostSettings(
        url_env="ALICE_ACCEPTANCE_MATTERMOST_URL", channel=None, username="alice-acceptance", report_url=None,
        timeout_s=5)
    assert _inventory({"mattermost": {"report_url": REPORT, "channel": "@oncall"}}).notify.mattermost.report_url \
        == REPORT


@pytest.mark.parametrize(("section", "said"), [
    ({"mattermost": {"url": "x"}}, "notify.mattermost.url: unknown key; fix: did you mean 'url_env'?"),
    ({"slack": {}}, "notify.slack: unknown key; fix: remove it (known keys: mattermost)"),
    ({"mattermost": {"url_env": "my-hook"}}, "notify.mattermost.url_env: not an environment variable name"),
    ({"mattermost": {"url_env": "https://mm.example/hooks/s3cretkey4711"}},
     "notify.mattermost.url_env: a URL where the name of an environment variable belongs; fix: the URL is a secret"),
    ({"mattermost": {"channel": "Town Square"}}, "notify.mattermost.channel: 'Town Square' is not a Mattermost"),
    ({"mattermost": {"report_url": "https://x/{when}/r.html"}}, "notify.mattermost.report_url: "),
    ({"mattermost": {"timeout_s": 600}}, "notify.mattermost.timeout_s: must be > 0 and <= 30, got 600"),
])
def test_the_notify_section_is_checked_in_one_line(section: Any, said: str) -> None:
    with pytest.raises(InventoryError) as caught:
        _inventory(section)
    text = str(caught.value)
    assert said in text and "\n" not in text and "s3cretkey4711" not in text


# --------------------------------------------------------------------------- the plugin

SITE = '''
from acceptance.checkspec import check


@check("site.cvmfs.enabled", runbook="Creating a agent", roles=["agent"])
def test_cvmfs(host):
    assert host.service("cvmfs").is_enabled, "cvmfs is not enabled @channel"
'''


def _nodes(enabled: bool) -> FakeNodes:
    def answers(command: str) -> Answer | None:
        if command == "systemctl is-enabled cvmfs":
            return Answer(0, b"enabled\n", b"") if enabled else Answer(1, b"disabled\n", b"")
        return Answer(0, b"", b"")

    return FakeNodes({}, default=answers)


def _run(pytester: pytest.Pytester, site: dict[str, Any], enabled: bool, *args: str) -> tuple[Any, dict[str, Any]]:
    result = pytester.runpytest(f"--inventory={site['inventory']}", f"--report-dir={site['out']}", "-p",
                                "no:cacheprovider", "--moment=nightly", str(site["checks"]), *args,
                                plugins=[_nodes(enabled)])
    (written,) = [x.split(": ", 1)[1] for x in result.outlines if x.startswith("summary: ")]  # a shard has no latest
    return result, json.loads(Path(written).read_text())


def _last_night(site: dict[str, Any], data: dict[str, Any]) -> None:
    """Move a run to the night before (runs started within one second are not before one another)."""
    path = site["out"] / data["run_id"] / "summary.json"
    path.write_text(json.dumps({**data, "started": "2026-01-01T03:00:00+00:00", "finished": None}))


@pytest.fixture
def nightly_site(pytester: pytest.Pytester, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    site = make_site(pytester, {"cvmfs.py": SITE})
    with site["inventory"].open("a") as f:
        f.write(textwrap.dedent(f"""\
            notify:
              mattermost: {{url_env: SITE_HOOK, channel: alice-build-infra, report_url: "{REPORT}", timeout_s: 2}}
            """))
    monkeypatch.setenv("SITE_HOOK", receiver.url)
    return site


def test_the_plugin_notifies_a_nightly_not_a_shard(pytester: pytest.Pytester, nightly_site: dict[str, Any],
                                                   receiver: Receiver) -> None:
    result, first = _run(pytester, nightly_site, True)
    assert result.ret == 0 and receiver.requests == 0  # no previous night: nothing changed
    _last_night(nightly_site, first)
    result, shard = _run(pytester, nightly_site, False, "--shard=1/1")
    assert result.ret == 1 and shard["trend"]["new_failures"] and receiver.requests == 0  # the merge speaks for it
    result, night = _run(pytester, nightly_site, False)
    assert result.ret == 1 and receiver.requests == 1
    (sent,) = receiver.received
    assert sent["channel"] == "alice-build-infra" and sent["text"] == notify.message(night, REPORT)
    assert "- `alibuild01` `site.cvmfs.enabled` **failed** major (was passed): `cvmfs is not enabled ＠channel`" \
        in sent["text"]
    result.stdout.fnmatch_lines(["notify: Mattermost message sent: 2 new failures"])


def test_a_failed_sending_leaves_the_exit_status(pytester: pytest.Pytester, nightly_site: dict[str, Any],
                                                 receiver: Receiver) -> None:
    _, first = _run(pytester, nightly_site, True)
    _last_night(nightly_site, first)
    receiver.answer = "500"
    result, _ = _run(pytester, nightly_site, False)
    assert result.ret == 1 and receiver.requests == 1
    warned = [x for x in result.outlines if x.startswith("notify:")]
    assert len(warned) == 1 and warned[0].startswith("notify: Mattermost message not sent: 127.0.0.1: HTTP 500 ")
    key = receiver.url.rsplit("/", 1)[-1]
    assert key not in result.stdout.str() + result.stderr.str() and "<redacted>" in warned[0]


class _Plugins:
    def get_plugin(self, name: str) -> None:
        return None  # neither pytest-html's page nor a terminal


class _Config:
    pluginmanager = _Plugins()


def test_without_pytest_html_the_summary_is_read_back(tmp_path: Path, receiver: Receiver,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    data = Summary(run_id=RUN, cluster="alice-prod", inventory="/site/inventory.yaml", moment="nightly",
                   started="2026-11-26T03:00:00+00:00", duration_s=1.0, exit_status=1, trend=FAILING["trend"],
                   records=[Record(**record("agent.build.free", "alibuild29", "failed", "12 GiB free"))]).to_json()
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("ALICE_ACCEPTANCE_MATTERMOST_URL", receiver.url)
    caplog.set_level(logging.INFO, logger="alice_acceptance.notify")
    notify.after_run(_Config(), settings(), {"summary": path})  # type: ignore[arg-type]
    assert receiver.requests == 1 and "`12 GiB free`" in receiver.received[0]["text"]
    notify.after_run(_Config(), settings(), {})  # type: ignore[arg-type]
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert caplog.records[1].getMessage().startswith("notify: no summary to notify from")


def test_the_merge_notifies_the_merged_night(tmp_path: Path, receiver: Receiver, write_inventory: Any,
                                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    inventory = write_inventory(EXAMPLE + f'notify:\n  mattermost: {{url_env: SITE_HOOK, report_url: "{REPORT}"}}\n')
    monkeypatch.setenv("SITE_HOOK", receiver.url)
    monkeypatch.delenv("ALICE_ACCEPTANCE_INVENTORY", raising=False)
    data = Summary(run_id=RUN, cluster="alicelab", inventory=str(inventory), moment="nightly", duration_s=1.0,
                   started="2026-11-26T03:00:00+00:00", exit_status=1, trend=FAILING["trend"],
                   records=[Record(**record("agent.build.free", "alibuild29", "failed", "12 GiB free"))]).to_json()
    path = tmp_path / "merged" / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    notify.after_merge(path)  # the inventory the shards ran with
    assert receiver.requests == 1 and capsys.readouterr().out == "notify: Mattermost message sent: 1 new failure\n"
    notify.after_merge(path, inventory=tmp_path / "missing.yaml")
    assert receiver.requests == 1 and capsys.readouterr().err.startswith("notify: not sent: ")
