"""The cluster-wide remediation state, kill switch and lock against a fake Consul (tests/unit/fakeconsul.py):
what cannot be read is a refusal, never an empty state; writes are check-and-set; the lock's session has no
health check, is verified before each step, and a hold outlives its process; the CLI's stop / resume / release."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from acceptance.inventory import load_inventory
from alice_acceptance import cli
from remediation import lock as lockmod
from remediation import switch
from remediation.clients import Api, write_config
from remediation.lock import ConsulLock, holder_of, release_hold
from remediation.model import ActionFailed
from remediation.state import ClusterState, StateUnavailable

from .fakeconsul import FakeConsul, consul_inventory, fake_consul_fixture  # noqa: F401 - the fixture

STATE, STOP, LOCK = "alice-acceptance/remediation-state", "alice-acceptance/stop", "alice-acceptance/remediation-lock"
EMPTY = {"budget": {}, "flaps": {}, "drained": {}, "disruptive": [], "holds": {}}


@pytest.fixture
def inv(fake_consul: FakeConsul, write_inventory: Callable[..., Path]) -> Path:
    return write_inventory(consul_inventory(fake_consul))


@pytest.fixture
def http(inv: Path) -> Api:
    inventory = load_inventory(inv)
    return Api(write_config("consul", inventory, [n for n in inventory.nodes if n.role == "master"]))


def other_session(fake: FakeConsul) -> str:
    """Another runner's session, as Consul would have created it for them."""
    with fake.lock:
        sid = f"other-{len(fake.sessions)}"
        fake.sessions[sid] = {"ID": sid, "Name": "other", "Node": "x", "Behavior": "delete", "TTL": "",
                              "NodeChecks": []}
    return sid


def take(fake: FakeConsul, sid: str, owner: dict[str, Any]) -> None:
    with fake.lock:
        fake.write(LOCK, json.dumps(owner).encode(), session=sid)


# --------------------------------------------------------------------------- the state


def test_a_missing_state_is_the_defaults(fake_consul: FakeConsul, http: Api) -> None:
    assert ClusterState(http, STATE).read() == EMPTY
    assert fake_consul.requests[-1].headers["x-consul-token"] == fake_consul.token


def test_the_state_keeps_what_it_holds_and_fills_in_the_rest(fake_consul: FakeConsul, http: Api) -> None:
    fake_consul.kv[STATE] = json.dumps({"budget": {"a|n": {"restart": [1.0]}}, "mine": 1})
    assert ClusterState(http, STATE).read() == {**EMPTY, "budget": {"a|n": {"restart": [1.0]}}, "mine": 1}


@pytest.mark.parametrize("value", [b"[]", b"not json {", b"\xff\xfe", b"", b'"text"', b'{"budget": []}',
                                   b'{"disruptive": {}}', b'{"holds": null}'])
def test_a_state_that_is_not_the_document_is_unavailable(fake_consul: FakeConsul, http: Api, value: bytes) -> None:
    fake_consul.kv[STATE] = value
    with pytest.raises(StateUnavailable, match=STATE):
        ClusterState(http, STATE).read()
    with pytest.raises(StateUnavailable):
        ClusterState(http, STATE).update(lambda s: None)
    assert fake_consul.kv[STATE] == value  # nothing written over it


@pytest.mark.parametrize("broken", ["500", "html"])
def test_a_consul_that_does_not_answer_is_unavailable(fake_consul: FakeConsul, http: Api, broken: str) -> None:
    fake_consul.broken = broken
    with pytest.raises(StateUnavailable, match=STATE):
        ClusterState(http, STATE).read()
    with pytest.raises(StateUnavailable):
        ClusterState(http, STATE).update(lambda s: s["drained"].update(n={}))


def test_a_refused_token_is_unavailable_and_never_named(fake_consul: FakeConsul, monkeypatch: pytest.MonkeyPatch,
                                                        inv: Path) -> None:
    wrong = "wrong-token-0123456789"
    monkeypatch.setenv("CONSUL_REMEDIATION_TOKEN", wrong)
    inventory = load_inventory(inv)
    http = Api(write_config("consul", inventory, list(inventory.nodes[:1])))
    with pytest.raises(StateUnavailable) as e:
        ClusterState(http, STATE).read()
    assert "403" in str(e.value) and "CONSUL_REMEDIATION_TOKEN" in str(e.value)
    assert wrong not in str(e.value) and str(fake_consul.token) not in str(e.value)


def test_update_creates_the_key_only_if_absent(fake_consul: FakeConsul, http: Api) -> None:
    assert ClusterState(http, STATE).update(lambda s: s["drained"].setdefault("alibuild01", {"t": 1})) == {"t": 1}
    assert fake_consul.requests[-1].query == {"cas": "0"}
    assert fake_consul.value_json(STATE) == {**EMPTY, "drained": {"alibuild01": {"t": 1}}}


def test_update_re_reads_and_re_applies_after_a_concurrent_write(fake_consul: FakeConsul, http: Api) -> None:
    fake_consul.kv[STATE] = json.dumps({"drained": {"a": 1}})
    calls: list[dict[str, Any]] = []

    def change(s: dict[str, Any]) -> int:
        calls.append(json.loads(json.dumps(s)))
        if len(calls) == 1:  # another runner writes between our read and our write
            fake_consul.kv[STATE] = json.dumps({"drained": {"a": 1, "b": 2}})
        s["drained"]["c"] = 3
        return len(calls)

    assert ClusterState(http, STATE).update(change) == 2
    assert [c["drained"] for c in calls] == [{"a": 1}, {"a": 1, "b": 2}]
    assert fake_consul.value_json(STATE)["drained"] == {"a": 1, "b": 2, "c": 3}  # nobody's change lost
    cas = [r.query.get("cas") for r in fake_consul.requests if r.method == "PUT"]
    assert len(cas) == 2 and cas[0] != cas[1]


def test_update_gives_up_after_five_conflicts(fake_consul: FakeConsul, http: Api) -> None:
    fake_consul.kv[STATE] = b"{}"
    calls = []

    def change(s: dict[str, Any]) -> None:
        calls.append(1)
        fake_consul.kv[STATE] = json.dumps({"drained": {str(len(calls)): 1}})

    with pytest.raises(StateUnavailable, match="another runner"):
        ClusterState(http, STATE).update(change)
    assert len(calls) == 5
    assert fake_consul.value_json(STATE) == {"drained": {"5": 1}}  # only the other runner's writes


# --------------------------------------------------------------------------- the kill switch


def test_stop_stopped_resume(fake_consul: FakeConsul, http: Api) -> None:
    assert switch.stopped(http, STOP) is None
    entry = switch.stop(http, STOP, "INC0123: hands off", run_id="r1")
    assert set(entry) == {"reason", "user", "host", "since", "run_id"}
    assert fake_consul.value_json(STOP) == entry
    assert switch.stopped(http, STOP) == entry
    assert switch.describe_stop(entry) == (f"stopped by {entry['user']}@{entry['host']} since {entry['since']}: "
                                           "INC0123: hands off")
    assert switch.resume(http, STOP) == entry
    assert STOP not in fake_consul.kv and switch.stopped(http, STOP) is None
    assert switch.resume(http, STOP) is None


def test_a_stop_written_by_hand_stops_too(fake_consul: FakeConsul, http: Api) -> None:
    fake_consul.kv[STOP] = b"disk swap"
    assert switch.stopped(http, STOP) == {"reason": "disk swap"}
    fake_consul.kv[STOP] = b""
    assert "exists" in str(switch.stopped(http, STOP))


def test_a_switch_that_cannot_be_read_is_unavailable(fake_consul: FakeConsul, http: Api) -> None:
    fake_consul.broken = "500"
    for call in (lambda: switch.stopped(http, STOP), lambda: switch.stop(http, STOP, "x"),
                 lambda: switch.resume(http, STOP)):
        with pytest.raises(StateUnavailable, match=STOP):
            call()


# --------------------------------------------------------------------------- the lock


def test_the_lock_session_has_no_health_check(fake_consul: FakeConsul, http: Api) -> None:
    lock = ConsulLock(http, LOCK, 900, "run-1")
    assert lock.acquire() is None
    try:
        session = fake_consul.sessions[str(lock.session)]
        assert session["NodeChecks"] == [] and session["ServiceChecks"] == []
        assert session["Behavior"] == "delete" and session["TTL"] == "450s"
        assert fake_consul.entry(LOCK)["Session"] == lock.session  # type: ignore[index]
        assert lock.verify() is None
        holder = holder_of(http, LOCK)
        assert holder is not None and holder["run_id"] == "run-1" and holder["session"] == lock.session
    finally:
        lock.release()
    assert holder_of(http, LOCK) is None and not fake_consul.sessions  # released: the key stays, unheld


def test_verify_fails_once_the_session_is_gone(fake_consul: FakeConsul, http: Api) -> None:
    lock = ConsulLock(http, LOCK, 900, "run-1")
    assert lock.acquire() is None
    fake_consul.expire(str(lock.session))
    assert "gone" in str(lock.verify())
    lock.release()


def test_verify_fails_once_someone_else_holds_the_key(fake_consul: FakeConsul, http: Api) -> None:
    lock = ConsulLock(http, LOCK, 900, "run-1")
    assert lock.acquire() is None
    fake_consul.expire(str(lock.session))
    take(fake_consul, other_session(fake_consul), {"run_id": "run-2", "user": "bob", "host": "ci"})
    assert "held by run run-2 of bob@ci" in str(lock.verify())
    refusal = ConsulLock(http, LOCK, 900, "run-3").acquire()
    assert "held by run run-2 of bob@ci" in str(refusal)
    lock.release()
    assert fake_consul.value_json(LOCK)["run_id"] == "run-2"  # releasing ours never touched theirs


def test_verify_refuses_when_consul_cannot_be_read(fake_consul: FakeConsul, http: Api) -> None:
    lock = ConsulLock(http, LOCK, 900, "run-1")
    assert lock.acquire() is None
    fake_consul.broken = "html"
    assert "cannot be read" in str(lock.verify())
    fake_consul.broken = None
    assert lock.verify() is None
    lock.release()
    assert lock.verify() == "not held"


def test_holder_of_tells_free_from_cannot_tell(fake_consul: FakeConsul, http: Api) -> None:
    assert holder_of(http, LOCK) is None
    fake_consul.kv[LOCK] = b'{"run_id": "x"}'  # the key without a session: free
    assert holder_of(http, LOCK) is None
    fake_consul.broken = "500"
    with pytest.raises(StateUnavailable):
        holder_of(http, LOCK)
    assert "cannot be taken or checked" in str(ConsulLock(http, LOCK, 900, "r").acquire())


def test_a_hold_outlives_its_object_and_says_so(fake_consul: FakeConsul, http: Api) -> None:
    before = {t.name for t in threading.enumerate()}
    lock = ConsulLock(http, LOCK, 3600, "gate-run")
    assert lock.hold("rebuild:alibuild07 for alice@lxplus") is None
    sid = lock.session
    assert "remediation-lock" not in {t.name for t in threading.enumerate()} - before  # nobody renews it
    del lock
    gc.collect()
    holder = holder_of(http, LOCK)
    assert holder is not None and holder["session"] == sid
    assert holder["hold"] == "rebuild:alibuild07 for alice@lxplus" and holder["until"].endswith("Z")
    assert fake_consul.sessions[str(sid)]["TTL"] == "1800s"
    assert "a hold until" in lockmod.describe(holder)
    assert "a hold until" in str(ConsulLock(http, LOCK, 900, "nightly").acquire())  # no run acts meanwhile
    assert "released the hold" in release_hold(http, LOCK)
    assert holder_of(http, LOCK) is None and str(sid) not in fake_consul.sessions


def test_release_refuses_a_runs_lock(fake_consul: FakeConsul, http: Api) -> None:
    lock = ConsulLock(http, LOCK, 900, "nightly")
    assert lock.acquire() is None
    with pytest.raises(ActionFailed, match="not a hold.*lock break"):
        release_hold(http, LOCK)
    assert lock.verify() is None
    lock.release()
    assert "free" in release_hold(http, LOCK)
    fake_consul.broken = "500"
    with pytest.raises(ActionFailed, match="cannot be read"):
        release_hold(http, LOCK)


def test_lock_status(fake_consul: FakeConsul, inv: Path, http: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert lockmod.main(["status", f"--inventory={inv}"]) == 0
    assert capsys.readouterr().out.strip() == f"{LOCK}: free"
    lock = ConsulLock(http, LOCK, 900, "nightly")
    assert lock.acquire() is None
    assert lockmod.main(["status", f"--inventory={inv}"]) == 0
    assert "held by run nightly" in capsys.readouterr().out
    lock.release()
    fake_consul.broken = "500"
    for command in ("status", "break"):
        assert lockmod.main([command, f"--inventory={inv}"]) == 1
        out = capsys.readouterr().out
        assert out.startswith(f"{LOCK}: unknown: ") and "500" in out
        assert str(fake_consul.token) not in out


def test_lock_break(fake_consul: FakeConsul, inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sid = other_session(fake_consul)
    take(fake_consul, sid, {"run_id": "dead"})
    assert lockmod.main(["break", f"--inventory={inv}"]) == 0
    assert "broken" in capsys.readouterr().out
    assert LOCK not in fake_consul.kv and sid not in fake_consul.sessions


# --------------------------------------------------------------------------- the CLI


def test_cli_stop_then_resume(fake_consul: FakeConsul, inv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stop", "--reason", "INC0123: hands off", f"--inventory={inv}"]) == 0
    assert "INC0123: hands off" in capsys.readouterr().out
    assert fake_consul.value_json(STOP)["reason"] == "INC0123: hands off"
    assert cli.main(["resume", f"--inventory={inv}"]) == 0
    assert "resumed" in capsys.readouterr().out and STOP not in fake_consul.kv
    assert cli.main(["resume", f"--inventory={inv}"]) == 0
    assert "was not stopped" in capsys.readouterr().out


def test_cli_stop_needs_a_reason_and_consul(fake_consul: FakeConsul, inv: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALICE_ACCEPTANCE_INVENTORY", raising=False)
    assert cli.main(["stop", f"--inventory={inv}"]) == 4
    assert cli.main(["stop", "--reason", "  ", f"--inventory={inv}"]) == 4
    assert cli.main(["stop", "--reason", "x", "--bogus", f"--inventory={inv}"]) == 4
    assert cli.main(["stop", "--reason", "x"]) == 4  # no inventory
    assert cli.main(["stop", "--reason", "x", f"--inventory={inv.parent / 'missing.yaml'}"]) == 4
    assert STOP not in fake_consul.kv
    fake_consul.broken = "500"
    assert cli.main(["stop", "--reason", "x", f"--inventory={inv}"]) == 1
    assert cli.main(["resume", f"--inventory={inv}"]) == 1
    err = capsys.readouterr().err
    assert "cannot stop" in err and "cannot resume" in err and str(fake_consul.token) not in err


def test_cli_release(fake_consul: FakeConsul, inv: Path, http: Api, capsys: pytest.CaptureFixture[str]) -> None:
    run = ConsulLock(http, LOCK, 900, "nightly")
    assert run.acquire() is None
    assert cli.main(["release", f"--inventory={inv}"]) == 1
    assert "lock break" in capsys.readouterr().err
    run.release()
    assert ConsulLock(http, LOCK, 900, "gate").hold("rebuild:alibuild07") is None
    assert cli.main(["release", f"--inventory={inv}"]) == 0
    assert "released the hold" in capsys.readouterr().out and LOCK not in fake_consul.kv


# --------------------------------------------------------------------------- the fake itself


def test_the_fake_speaks_consuls_kv_and_sessions(fake_consul: FakeConsul, http: Api) -> None:
    """Through py-consul's named methods, as remediation calls them (kv, session, status)."""
    def create(c: Any, body: dict[str, Any]) -> Any:  # py-consul's session.create writes lower-case keys
        from consul.callback import CB  # type: ignore[import-untyped]

        return c.http.put(CB.json(is_id=True), "/v1/session/create", data=json.dumps(body), headers=c.prepare_headers())

    def kv(c: Any) -> Any:
        return c.kv

    assert http.lib("get", lambda c: kv(c).get("k")[1]) is None
    assert http.lib("put", lambda c: kv(c).put("k", json.dumps({"a": 1}), cas=0)) is True
    assert http.lib("put", lambda c: kv(c).put("k", json.dumps({"a": 2}), cas=0)) is False
    entry = http.lib("get", lambda c: kv(c).get("k")[1])
    assert json.loads(entry["Value"]) == {"a": 1} and "Session" not in entry
    assert http.lib("put", lambda c: kv(c).put("k", "3", cas=entry["ModifyIndex"])) is True
    assert http.lib("delete", lambda c: kv(c).delete("k", cas=entry["ModifyIndex"])) is False
    sid = http.lib("create", lambda c: create(c, {"TTL": "10s"}))
    assert fake_consul.sessions[sid]["NodeChecks"] == ["serfHealth"]  # Consul's default
    assert http.lib("put", lambda c: kv(c).put("k", "4", acquire=sid)) is True
    assert http.lib("put", lambda c: kv(c).put("k", "5", acquire=other_session(fake_consul))) is False
    assert http.lib("info", lambda c: c.session.info(sid)[1])["ID"] == sid
    assert http.lib("renew", lambda c: c.session.renew(sid))["ID"] == sid
    assert http.lib("destroy", lambda c: c.session.destroy(sid)) is True
    assert fake_consul.entry("k") is not None and "Session" not in fake_consul.entry("k")  # type: ignore[operator]
    assert http.lib("info", lambda c: c.session.info(sid)[1]) is None
    with pytest.raises(ActionFailed, match="404"):
        http.lib("renew", lambda c: c.session.renew(sid))
    with pytest.raises(ActionFailed, match="400"):
        http.lib("create", lambda c: create(c, {"TTL": "5s"}))
    from consul.callback import CB

    # the fake wants the token even there (py-consul's status.leader sends none: Consul needs none)
    assert http.lib("leader", lambda c: c.http.get(CB.json(), "/v1/status/leader",
                                                   headers=c.prepare_headers())) == "127.0.0.1:8300"
