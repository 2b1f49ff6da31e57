"""Who leads Nomad's and Consul's raft (autopilot's view, which the quorum gate and the blast radius read too), and
the leadership moved off a master before it is disrupted: transferred to a healthy voter among the other masters,
Vault stepped down. Never a raft peer removed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import requests
import tenacity

from acceptance.clients.config import ApiConfig, master_urls
from acceptance.clients.errors import ApiError
from acceptance.clients.raft import Autopilot, parse_autopilot
from acceptance.inventory import Inventory, Node
from acceptance.judging.raft import leading_master, server_is
from remediation.clients import Api, vault_health, write_config
from remediation.model import ActionFailed, Progress


def _nomad_autopilot(n: Any) -> Any:
    """python-nomad has no autopilot method; 429 is autopilot's "unhealthy", an answer."""
    try:
        return n.operator.request("autopilot", "health", method="get").json()
    except Exception as e:
        response = getattr(e, "nomad_resp", None)
        if isinstance(response, requests.Response) and response.status_code == 429:
            return response.json()
        raise


def _just_elected(health: Any) -> bool:
    """Autopilot's answer in the moments after an election: ``"Servers": null``."""
    return isinstance(health, dict) and health.get("Servers") is None


class Raft:
    """A Nomad or Consul server cluster's leadership, each through its library."""

    LEADER: dict[str, Callable[[Any], Any]] = {"nomad": lambda n: n.status.leader.get_leader(),
                                               "consul": lambda c: c.status.leader()}
    AUTOPILOT: dict[str, Callable[[Any], Any]] = {"nomad": _nomad_autopilot,
                                                  "consul": lambda c: c.operator.autopilot_health()}
    # python-nomad has no transfer method: its generic request; py-consul's operator.raft_transfer_leader
    TRANSFER: dict[str, Callable[[Any, str], Any]] = {
        "nomad": lambda n, i: n.operator.request("raft", "transfer-leadership", params={"id": i}, method="put"),
        "consul": lambda c, i: c.operator.raft_transfer_leader(i)}

    def __init__(self, http: Api) -> None:
        self.http, self.title, self.name = http, http.cfg.title, http.cfg.name

    def autopilot(self) -> Autopilot:
        """Autopilot's view, waiting out the moments after an election when it lists no servers yet."""
        read = tenacity.Retrying(stop=tenacity.stop_after_attempt(10), wait=tenacity.wait_fixed(1),
                                 retry=tenacity.retry_if_result(_just_elected))
        try:
            health = read(self.http.lib, "GET /v1/operator/autopilot/health", self.AUTOPILOT[self.name])
        except tenacity.RetryError:
            raise ActionFailed(f"{self.title}: autopilot lists no servers yet (just elected)") from None
        try:
            return parse_autopilot(health)
        except (ApiError, ValueError) as e:  # a proxy's page, not autopilot's JSON
            raise ActionFailed(f"{self.title} autopilot health: {e}") from None

    def leading(self, masters: Sequence[Node]) -> str | None:
        """The leading master by the raft server's identity (never the leader's address as a string)."""
        leader = str(self.http.lib("GET /v1/status/leader", self.LEADER[self.name]) or "")
        return leading_master(leader, self.autopilot(), [(m.name, m.address) for m in masters])

    def transfer_away(self, master: Node, others: Sequence[Node], progress: Progress) -> str:
        """Move the leadership off ``master`` to a healthy voter among ``others`` (nothing when elsewhere)."""
        masters = [master, *others]
        leading = self.leading(masters)
        if leading is None:
            raise ActionFailed(f"cannot tell which master is the {self.title} leader: nothing moved")
        if leading != master.name:
            return f"{self.title} leadership is already elsewhere ({leading})"
        targets = [s for s in self.autopilot().servers if s.healthy and s.voter and s.id
                   and any(server_is(s, o.name, o.address) for o in others)]
        if not targets:
            raise ActionFailed(f"no healthy {self.title} voter to move the leadership to")
        self.http.lib("transfer the raft leadership", lambda c: self.TRANSFER[self.name](c, targets[0].id))
        progress.wait(f"the {self.title} leadership to move",
                      lambda: self.leading(masters) not in (master.name, None), 60)
        return f"{self.title} leadership moved from {master.name} to {self.leading(masters)}"


def step_down_if_active(cfg: ApiConfig, master: Node, progress: Progress) -> str:
    vault = Api(cfg.for_url(master_urls(cfg.url, [master], 8200)[0]))
    now = vault_health(vault)
    if not isinstance(now, dict) or now.get("standby", True) or now.get("sealed", True):
        return "Vault is not active there"
    try:
        vault.lib("PUT /v1/sys/step-down", lambda c: c.sys.step_down())
    except ActionFailed as e:
        raise ActionFailed(f"Vault step-down on {master.name} refused ({e}): set {cfg.token_var} to a "
                           "token with sudo on sys/step-down") from None

    def standby() -> bool:
        h = vault_health(vault)
        return isinstance(h, dict) and bool(h.get("standby"))

    progress.wait(f"Vault on {master.name} to step down", standby, 60)
    return f"Vault on {master.name} stepped down"


def move_leadership_off(inventory: Inventory, master: Node, masters: Sequence[Node], progress: Progress) -> str:
    """Before a master is disrupted: its Nomad and Consul leadership to another master, its Vault stepped down."""
    others = [m for m in masters if m.name != master.name]
    return "; ".join([Raft(Api(write_config("nomad", inventory, masters))).transfer_away(master, others, progress),
                      Raft(Api(write_config("consul", inventory, masters))).transfer_away(master, others, progress),
                      step_down_if_active(write_config("vault", inventory, masters), master, progress)])
