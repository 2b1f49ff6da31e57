"""The faults' NODE argument is checked before the lab is touched (no Docker here: the topology is a
fake and every call that would reach Docker or the APIs is recorded instead)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.lab import __main__ as cli
from tests.lab import cluster, faults, labapi
from tests.lab.dockerctl import LabError
from tests.lab.topology import topology


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """A lab of three masters, two VM agents and alimetal01; Docker and the APIs record what they are asked."""
    seen: list[tuple[str, Any]] = []
    monkeypatch.setattr(cluster, "current", lambda: topology(2))
    monkeypatch.setattr(faults, "node_exec", lambda name, script, timeout=60: seen.append(("exec", (name, script))))

    def docker(*args: str, **kw: Any) -> str:
        seen.append(("docker", args))
        return ""

    monkeypatch.setattr(faults, "docker", docker)
    monkeypatch.setattr(faults, "inspect", lambda name: None)

    def nomad(method: str, ip: str, path: str, body: Any = None) -> tuple[int, Any]:
        seen.append(("nomad", (method, path)))
        if path.endswith("/allocations"):
            return 200, [{"JobID": "ci-mesosci-slc9", "ClientStatus": "running", "DesiredStatus": "run"},
                         {"JobID": "ci-mesosdaq-slc9", "ClientStatus": "failed", "DesiredStatus": "run"}]
        return 200, {}

    monkeypatch.setattr(labapi, "nomad", nomad)
    return seen


@pytest.mark.parametrize(("verb", "fault", "node", "says"), [
    # the reported accident: healing the orphan with the name of a real agent deleted the agent
    ("heal", "orphan-server", "alibuild01", "alibuild01 is a node of the lab"),
    ("fault", "orphan-server", "alimesos01", "alimesos01 is a node of the lab"),
    ("fault", "orphan-server", "web01", "'web01' is not a build VM name"),
    ("heal", "orphan-server", "alibuild; rm -rf /", "is not a build VM name"),
    ("fault", "seal-vault", "alibuild01", "seal-vault applies to master nodes; alibuild01 is an agent"),
    ("fault", "fail-allocation", "alimesos02", "applies to agent nodes"),
    ("fault", "disconnect-agent", "alibuild09", "no node 'alibuild09' in the lab"),
    ("heal", "disconnect-agent", "", "disconnect-agent needs a NODE (agent), e.g. alibuild01"),
    ("fault", "partition", "", "partition needs a NODE"),
    ("fault", "kill-leader:nomad", "alibuild01", "acts on the cluster and takes no NODE"),
    ("fault", "exhaust-reschedule", "alibuild01", "takes no NODE"),
    ("fault", "monit-down", "alimesos01", "takes no NODE"),
    ("fault", "kill-leader:postgres", "", "unknown fault 'kill-leader:postgres'"),
    ("fault", "stop-unit:nomad;reboot", "alibuild01", "is not a systemd unit name"),
    ("fault", "stop-unit:<unit>", "alibuild01", "'<unit>' is not a systemd unit name"),
    ("fault", "no-such-fault", "alibuild01", "unknown fault 'no-such-fault'"),
])
def test_bad_node_arguments_are_refused_before_anything_is_done(
    calls: list[tuple[str, Any]], verb: str, fault: str, node: str, says: str
) -> None:
    action = faults.inject if verb == "fault" else faults.heal
    with pytest.raises(LabError, match=None) as info:
        action(fault, node)
    message = str(info.value)
    assert says in message
    assert "\n" not in message, "one line"
    assert calls == [], "nothing may be touched"


def test_the_orphan_needs_a_name_no_node_has(calls: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    assert "alibuild99" in faults.inject("orphan-server")
    assert calls[-1][0] == "docker" and "alibuild99" in calls[-1][1]
    assert "alibuild77 deleted" in faults.heal("orphan-server", "alibuild77")
    assert calls[-1] == ("docker", ("rm", "-f", "alibuild77"))
    monkeypatch.setattr(cluster, "current", lambda: topology(120))  # alibuild99 is an agent of this lab
    with pytest.raises(LabError, match="alibuild99 is a node of the lab"):
        faults.heal("orphan-server")
    monkeypatch.setattr(cluster, "current", lambda: topology(250))  # and the orphan's address is taken
    with pytest.raises(LabError, match="belongs to a node"):
        faults.inject("orphan-server", "alibuild251")


def test_valid_arguments_reach_the_node(calls: list[tuple[str, Any]]) -> None:
    assert "stops heartbeating" in faults.inject("disconnect-agent", "alimetal01")
    assert calls == [("exec", ("alimetal01", "mkdir -p /run/alicelab && printf '%s' '' > "
                                             "/run/alicelab/nomad-disconnected"))]
    assert "heartbeats again" in faults.heal("disconnect-agent", "alimetal01")
    assert calls[-1] == ("exec", ("alimetal01", "rm -f /run/alicelab/nomad-disconnected"))
    calls.clear()
    assert "ci-mesosci-slc9" in faults.inject("fail-allocation", "alibuild02")
    assert calls[-1] == ("exec", ("alibuild02", "mkdir -p /run/alicelab && printf '%s' '' > "
                                                "/run/alicelab/nomad-fail-allocations"))
    calls.clear()
    faults.inject("exhaust-reschedule")
    flagged = sorted(name for kind, (name, script) in calls if kind == "exec" and "job:ci-mesosdaq-slc9" in script)
    assert flagged == ["alibuild01", "alibuild02", "alimetal01"], "every agent fails the job"
    calls.clear()
    faults.heal("exhaust-reschedule")
    assert ("nomad", ("POST", "/v1/job/ci-mesosdaq-slc9/evaluate")) in calls, "the job left failed is rescheduled"
    assert ("nomad", ("POST", "/v1/job/ci-mesosci-slc9/evaluate")) not in calls, "a running job is left alone"


def test_the_command_line_says_one_line(calls: list[tuple[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["heal", "orphan-server", "alibuild01"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lab: orphan-server: alibuild01 is a node of the lab") and err.count("\n") == 1
    assert calls == []
