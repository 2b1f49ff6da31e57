"""Autopilot's health as hashicorp/raft-autopilot judges it (types.go `isHealthy`), on the Nomad and Consul
emulators' three servers as local processes (no lab needed), and the lab fault lag-server: `raft-lag` in a
server's fault_dir makes it a slow follower (late answers, a trailing log) while it stays alive and a voter.

The clusters are the emulator tests' own (`test_nomad_emulator.Cluster`, `test_consul_emulator.Cluster`),
servers only, with autopilot's reconcile every 2 s: a server wrongly thought dead would be removed quickly.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.emulators.base import FAULT_DIR, LAG_FLAG, Election, Peer
from tests.lab.test_consul_emulator import NOT_YET
from tests.polling import wait_until

pytestmark = pytest.mark.emulator

THRESHOLD_S = Election.LAST_CONTACT_THRESHOLD_S  # 200 ms: Nomad's and Consul's LastContactThreshold
MAX_TRAILING = Election.MAX_TRAILING_LOGS  # 250: their MaxTrailingLogs
NOMAD_IPS = ([f"127.0.{n}.1{i}" for i in (1, 2, 3)] for n in (8, 9, 10))


def seconds(value: Any) -> float:
    """LastContact as either product shows it: Nomad nanoseconds, Consul Go's duration text ("27.29ms")."""
    if isinstance(value, int | float):
        return float(value) / 1e9
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([\d.]+)(h|ms|us|µs|ns|m|s)", str(value))
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


def _ports_free(ips: list[str], ports: tuple[int, ...]) -> bool:
    for ip in ips:
        for port in ports:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((ip, port))
                except OSError:
                    return False
    return True


@dataclass
class Servers:
    """Three servers of one product, seen the same way: names, autopilot's health, the leader, flags."""

    product: str
    names: list[str]
    health_of: Callable[[str], tuple[int, dict[str, Any]]]  # (status, body) of the health asked of a server
    leader_of: Callable[[], str]  # the leader's name all servers agree on, "" while they do not
    fault_dir: Callable[[str], Path]

    def health(self) -> tuple[int, dict[str, Any]]:
        return self.health_of(self.names[0])

    def by_name(self, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["Name"].split(".")[0]: s for s in body["Servers"]}

    def flag(self, name: str) -> None:
        self.fault_dir(name).mkdir(parents=True, exist_ok=True)
        (self.fault_dir(name) / LAG_FLAG).write_text("")

    def unflag(self, name: str) -> None:
        (self.fault_dir(name) / LAG_FLAG).unlink(missing_ok=True)


def _start_with_fault_dir(start: Callable[[str], None], name: str, fault_dir: Path) -> None:
    """Starts a server whose Election finds its fault_dir in $ALICELAB_FAULT_DIR (the emulators' own
    configuration names the same directory)."""
    fault_dir.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALICELAB_FAULT_DIR", str(fault_dir))
        start(name)


@pytest.fixture(scope="module", params=["nomad", "consul"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    if request.param == "nomad":
        yield from _nomad(tmp_path_factory.mktemp("autopilot-nomad"))
    else:
        yield from _consul(tmp_path_factory.mktemp("autopilot-consul"))


def _nomad(root: Path) -> Iterator[Servers]:
    from tests.lab import test_nomad_emulator as tnomad  # here: a change there breaks only its half

    ips = next((ips for ips in NOMAD_IPS if _ports_free(ips, (4646, 4647))), None)
    if ips is None:
        pytest.fail("Nomad's ports (4646, 4647) are taken on 127.0.8-10.11-13")
    names = list(tnomad.SERVERS)
    with pytest.MonkeyPatch.context() as mp:
        # the Nomad tests' cluster, servers only, on addresses of its own (their module may run meanwhile)
        mp.setattr(tnomad, "SERVERS", dict(zip(names, ips, strict=True)))
        mp.setattr(tnomad, "CLIENTS", {})
        cl = tnomad.Cluster(root)
        by_addr = {f"{ip}:4647": n for n, ip in tnomad.SERVERS.items()}

        def health_of(who: str) -> tuple[int, dict[str, Any]]:
            r = cl.request("GET", who, "/v1/operator/autopilot/health", token=tnomad.READ)
            return r.status_code, (r.json() if r.status_code in (200, 429) else {})

        def leader_of() -> str:
            return by_addr.get(cl.agreed_leader(names), "")

        try:
            for name in names:
                _start_with_fault_dir(cl.start, name, cl.fault_dir(name))
            wait_until(leader_of, timeout=15, what="a Nomad leader", ignore=NOT_YET)
            yield Servers("nomad", names, health_of, leader_of, cl.fault_dir)
        except BaseException:
            print(cl.logs())
            raise
        finally:
            for name in list(cl.procs):
                cl.stop(name)


def _consul(root: Path) -> Iterator[Servers]:
    from tests.lab import test_consul_emulator as tconsul  # here: a change there breaks only its half

    tconsul._choose_masters()
    c = tconsul.Cluster(root)
    names = [m["name"] for m in tconsul.MASTERS]

    def fault_dir(name: str) -> Path:
        return root / "faults" / name

    for name, path in c.configs.items():  # node.json names the fault_dir too
        path.write_text(json.dumps(json.loads(path.read_text()) | {"fault_dir": str(fault_dir(name))}))

    def health_of(who: str) -> tuple[int, dict[str, Any]]:
        r = c.get(c.ip(who), "/v1/operator/autopilot/health", token=tconsul.READ)
        return r.status_code, (r.json() if r.status_code in (200, 429) else {})

    def leader_of() -> str:
        addr = c.leader()
        return next((m["name"] for m in tconsul.MASTERS if f"{m['ip']}:8300" == addr), "")

    try:
        for name in names:
            _start_with_fault_dir(c.start, name, fault_dir(name))
        wait_until(leader_of, timeout=15, what="a Consul leader", ignore=NOT_YET)
        yield Servers("consul", names, health_of, leader_of, fault_dir)
    finally:
        c.stop_all()
        for name in names:
            log = root / f"{name}.log"
            if log.exists() and log.stat().st_size:
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def all_healthy(s: Servers) -> dict[str, Any] | None:
    status, body = s.health()
    if status == 200 and body.get("Healthy") and body.get("FailureTolerance") == 1 and len(body["Servers"]) == 3:
        return body
    return None


def check_sound(s: Servers, body: dict[str, Any]) -> None:
    """Every server healthy as raft-autopilot judges it: LastContact within the threshold (the leader's 0),
    the leader's term, and LastIndex within MaxTrailingLogs of the leader's."""
    servers = s.by_name(body)
    (leader,) = [v for v in servers.values() if v["Leader"]]
    for name, v in servers.items():
        assert v["Healthy"] and v["Voter"] and v["SerfStatus"] == "alive", (name, v)
        assert seconds(v["LastContact"]) < THRESHOLD_S, (name, v["LastContact"])
        assert v["LastTerm"] == leader["LastTerm"] > 0, (name, v["LastTerm"], leader["LastTerm"])
        assert leader["LastIndex"] - v["LastIndex"] <= MAX_TRAILING and v["LastIndex"] > 0, (name, v, leader)
    assert seconds(leader["LastContact"]) == 0


def test_healthy_servers_stay_healthy(servers: Servers) -> None:
    """A healthy cluster is healthy at every look (no flapping): small LastContact, one term, close indexes;
    the leader's log moves on while nothing happens, as a real leader's does."""
    s = servers
    body = wait_until(lambda: all_healthy(s), timeout=15, what=f"three healthy {s.product} servers", ignore=NOT_YET)
    check_sound(s, body)
    first = max(v["LastIndex"] for v in body["Servers"])
    for _ in range(12):  # 3 s of looks, some of them between two heartbeats, some during one
        time.sleep(0.25)
        status, body = s.health()
        assert status == 200, body
        check_sound(s, body)
    assert max(v["LastIndex"] for v in body["Servers"]) > first


def test_lagging_follower_is_unhealthy_until_it_catches_up(servers: Servers) -> None:
    s = servers
    wait_until(lambda: all_healthy(s), timeout=15, what=f"three healthy {s.product} servers", ignore=NOT_YET)
    leader = wait_until(s.leader_of, timeout=10, what="a leader", ignore=NOT_YET)
    lagger = next(n for n in s.names if n != leader)
    others = [n for n in s.names if n != lagger]
    seen = {"slow": False, "trailing": False}

    def lagger_unhealthy() -> bool:
        """Exactly the lagger unhealthy (429, tolerance 0); it stays an alive voter; the leader stays."""
        status, body = s.health()
        servers = s.by_name(body)
        assert set(servers) == set(s.names), body  # nobody removed
        assert all(servers[n]["Healthy"] for n in others), body
        v, lead = servers[lagger], servers[leader]
        assert lead["Leader"] and v["Voter"] and v["SerfStatus"] == "alive", body
        if v["Healthy"]:
            return False
        assert (status, body["Healthy"], body["FailureTolerance"]) == (429, False, 0), body
        slow, trailing = seconds(v["LastContact"]) > THRESHOLD_S, lead["LastIndex"] - v["LastIndex"] > MAX_TRAILING
        assert slow or trailing, v
        seen["slow"] |= slow
        seen["trailing"] |= trailing
        return all(seen.values())

    s.flag(lagger)
    try:
        # Late answers (LastContact) at the first heartbeat; the log trails by > 250 entries within ~3 s.
        wait_until(lagger_unhealthy, timeout=10, interval=0.25, what=f"{lagger} slow and trailing",
                   ignore=NOT_YET)
        for _ in range(12):  # it stays so, and autopilot (reconcile every 2 s) removes nobody
            time.sleep(0.25)
            assert lagger_unhealthy()
        assert s.leader_of() == leader
        for n in s.names:
            status, body = s.health_of(n)  # every server forwards to the same leader
            assert status == 429 and not s.by_name(body)[lagger]["Healthy"], (n, body)
    finally:
        s.unflag(lagger)
    body = wait_until(lambda: all_healthy(s), timeout=6, interval=0.25, what=f"{lagger} healthy again", ignore=NOT_YET)
    check_sound(s, body)
    assert s.leader_of() == leader and all(v["Voter"] for v in body["Servers"])


def test_fault_dir_of_an_election(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a server looks for LAG_FLAG: the constructor's fault_dir, else $ALICELAB_FAULT_DIR, else
    /run/alicelab (what the lab's masters use)."""
    me = Peer("a", "alimesos01", "127.0.0.1:1")
    monkeypatch.delenv("ALICELAB_FAULT_DIR", raising=False)
    assert Election(me, [me], None, lambda p: "").fault_dir == FAULT_DIR == "/run/alicelab"
    monkeypatch.setenv("ALICELAB_FAULT_DIR", str(tmp_path / "env"))
    assert Election(me, [me], None, lambda p: "", fault_dir=str(tmp_path)).fault_dir == str(tmp_path)
    election = Election(me, [me], None, lambda p: "")
    assert election.fault_dir == str(tmp_path / "env") and not election.lagging()
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / LAG_FLAG).write_text("")
    assert election.lagging()
