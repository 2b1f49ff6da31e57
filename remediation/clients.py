"""The cluster's write side, with the remediation tokens (never the checks' read tokens): NOMAD_REMEDIATION_TOKEN
(node:write, node:read, namespace:read-job, management for raft transfer-leadership), CONSUL_REMEDIATION_TOKEN
(session:write, key:write on the lock prefix, operator:write), VAULT_REMEDIATION_TOKEN (update and sudo on
sys/step-down), OS_CLOUD (server actions). Addresses, CA and certificates are the checks'."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import requests

from acceptance.clients.call import over_urls
from acceptance.clients.config import ApiConfig, api_config, master_urls
from acceptance.clients.errors import ApiError
from acceptance.clients.libraries import LibClient, client_for
from acceptance.clients.raft import Autopilot, parse_autopilot
from acceptance.clients.transport import deadline
from acceptance.inventory import Inventory, Node
from acceptance.judging.raft import leading_master, server_is
from acceptance.redaction import clip, remember
from remediation.model import ActionFailed, NeedsHuman, Progress

T = TypeVar("T")

WRITE_TOKENS = {"nomad": "NOMAD_REMEDIATION_TOKEN", "consul": "CONSUL_REMEDIATION_TOKEN",
                "vault": "VAULT_REMEDIATION_TOKEN"}


def write_config(name: str, inventory: Inventory, masters: Sequence[Node], env: Mapping[str, str] | None = None
                 ) -> ApiConfig:
    env = os.environ if env is None else env
    token = env.get(WRITE_TOKENS[name]) or None
    remember(token)
    return dataclasses.replace(api_config(name, inventory, env=env, masters=list(masters)), token=token,
                               token_var=WRITE_TOKENS[name])


def consul_of(inventory_path: str) -> tuple[Inventory, Api]:
    """The commands' inventory and Consul with the remediation token; raises InventoryError on bad input."""
    from acceptance.inventory import load_inventory

    inventory = load_inventory(inventory_path)
    return inventory, Api(write_config("consul", inventory, [n for n in inventory.nodes if n.role == "master"]))


class Api:
    """One API with its write token, through the snapshots' fail-over; a refusal, a redirect or an answer that is
    not the API's is one line, and never acted on."""

    def __init__(self, cfg: ApiConfig) -> None:
        self.cfg = cfg
        self.clients: dict[str, LibClient] = {}

    def lib(self, what: str, use: Callable[[Any], T]) -> T:
        """``use(the library's client)``, ``what`` naming the call in messages."""
        if self.cfg.problem:
            raise ActionFailed(self.cfg.problem)

        def attempt(url: str, timeout: float) -> T:
            client = self.clients.get(url) or self.clients.setdefault(url, client_for(self.cfg, url))
            with deadline(timeout):
                return use(client.lib)

        try:
            return over_urls(self.cfg, self.cfg.urls, what, attempt, lambda: self.cfg.timeout_s)[1]
        except ApiError as e:
            if e.kind in ("auth", "forbidden"):
                raise ActionFailed(f"{self.cfg.title} refused {what} ({e.status}): set {self.cfg.token_var} to a "
                                   "token with the rights README.md lists") from None
            kept = " (not acted on)" if e.kind in ("redirect", "protocol") else ""
            raise ActionFailed(f"{self.cfg.title}: {e}{kept}") from None


def vault_health(vault: Api) -> Any:
    """The body whatever the status (hvac hands back a 429/472/473/501/503 response undecoded)."""
    def read(v: Any) -> Any:
        h = v.sys.read_health_status(method="GET", standby_ok=True)
        return h.json() if isinstance(h, requests.Response) else h
    return vault.lib("GET /v1/sys/health", read)


class Nomad:
    """Nomad's nodes with the remediation token. A drain of ours carries ``drained_by`` in its Meta; only such a
    drain, once complete, is undone (eligible again): a drain in progress is never cancelled, a human's drain or
    ``eligibility -disable`` never touched."""

    OWNER = "alice-acceptance"
    QUIET = ("system",)  # what IgnoreSystemJobs leaves running (Nomad's drainer waits for sysbatch)

    def __init__(self, http: Api) -> None:
        self.http = http
        self._job_types: dict[tuple[str, str], str] = {}  # (namespace, job) -> type

    def node(self, name: str) -> dict[str, Any]:
        nodes = self.http.lib("GET /v1/nodes", lambda n: n.nodes.get_nodes())
        found = [n for n in nodes or [] if isinstance(n, dict) and (n.get("Name") == name or
                                                                  str(n.get("Name", "")).startswith(name + "."))]
        if len(found) != 1:
            raise ActionFailed(f"{name} is not one Nomad node ({len(found)} found)")
        node_id = str(found[0]["ID"])
        return dict(self.http.lib(f"GET /v1/node/{node_id}", lambda n: n.node.get_node(node_id)))

    def running(self, node_id: str, allowed_jobs: Sequence[str] = ()) -> list[str]:
        """``job/allocation`` running or starting on the node, but system jobs' and ``allowed_jobs``."""
        allocs = self.http.lib(f"GET /v1/node/{node_id}/allocations", lambda n: n.node.get_allocations(node_id))
        if not isinstance(allocs, list):
            raise ActionFailed(f"Nomad: the allocations of node {node_id} are not a list")
        return [f"{a.get('JobID')}/{a.get('Name')}" for a in allocs
                if isinstance(a, dict) and a.get("ClientStatus") in ("pending", "running")
                and a.get("JobID") not in allowed_jobs and self._job_type(a) not in self.QUIET]

    def _job_type(self, alloc: dict[str, Any]) -> str:
        """The stub's JobType, else the allocation's Job, else the job itself (read once; unreadable: "?")."""
        job = alloc.get("Job")
        kind = alloc.get("JobType") or (job.get("Type") if isinstance(job, dict) else None)
        if isinstance(kind, str) and kind:
            return kind
        key = (str(alloc.get("Namespace") or "default"), str(alloc.get("JobID") or ""))
        if key not in self._job_types:
            try:
                read = self.http.lib(f"GET /v1/job/{key[1]}", lambda n: n.job.get_job(key[1], namespace=key[0]))
            except ActionFailed:
                read = None
            self._job_types[key] = str(read.get("Type") or "?") if isinstance(read, dict) else "?"
        return self._job_types[key]

    def drain(self, node_id: str, deadline_s: float, owner: Mapping[str, str]) -> None:
        """Drain, system jobs left running, ``owner`` in the Meta Nomad keeps in LastDrain (an owner's own
        ``drained_by`` replaces ours: ``gate --prepare``'s human)."""
        meta = {"drained_by": self.OWNER, **{k: str(v) for k, v in owner.items()}}
        spec = {"DrainSpec": {"Deadline": int(deadline_s * 1e9), "IgnoreSystemJobs": True}, "Meta": meta}
        # python-nomad's drain_node_with_spec sends no Meta: its generic request on the node's endpoint
        self.http.lib(f"POST /v1/node/{node_id}/drain",
                      lambda n: n.node.request(node_id, "drain", json=spec, method="post"))

    @classmethod
    def drained_by_us(cls, node: Mapping[str, Any]) -> bool:
        return cls._drained_by(node) == cls.OWNER

    def reenable(self, node_id: str, node: Mapping[str, Any]) -> str:
        """Eligible again, only after a complete drain of ours (ActionFailed while it drains, NeedsHuman when
        not ours)."""
        name = str(node.get("Name") or node_id)
        draining = bool(node.get("DrainStrategy"))
        if not draining and node.get("SchedulingEligibility") == "eligible":
            return f"{name} is already eligible in Nomad: nothing to do"
        if not self.drained_by_us(node):
            raise NeedsHuman(f"{name} is {'being drained' if draining else 'ineligible'} in Nomad, set by "
                             f"{self.who(node)}: not ours to re-enable")
        if draining:
            raise ActionFailed(f"{name} is still draining in Nomad (our drain): not re-enabled, never cancelled; "
                               "the next run looks again")
        self.http.lib(f"POST /v1/node/{node_id}/eligibility", lambda n: n.node.eligible_node(node_id, eligible=True))
        return f"{name} re-enabled in Nomad (eligible again; our drain was complete)"

    @staticmethod
    def _drained_by(node: Mapping[str, Any]) -> str | None:
        """``drained_by`` of the drain in progress, or of the last one when complete and not followed by an
        ``eligibility -disable``; None otherwise (a cancelled drain was someone else's doing)."""
        last = node.get("LastDrain")
        if not isinstance(last, dict):
            return None
        meta = last.get("Meta")
        by = str(meta["drained_by"]) if isinstance(meta, dict) and meta.get("drained_by") else None
        if node.get("DrainStrategy"):
            return by if last.get("Status") == "draining" else None
        return by if last.get("Status") == "complete" and not Nomad._disabled_after_drain(node) else None

    @staticmethod
    def _disabled_after_drain(node: Mapping[str, Any]) -> bool:
        """The node's events (Nomad keeps the last 10) end with an ``eligibility -disable``, not a drain."""
        marks = [m for m in (str(e.get("Message")) for e in node.get("Events") or [] if isinstance(e, dict))
                 if m.startswith(("Node drain", "Node marked as"))]
        return bool(marks) and marks[-1] == "Node marked as ineligible for scheduling"

    @staticmethod
    def who(node: Mapping[str, Any]) -> str:
        """What set the drain or ineligibility: LastDrain's Meta and its token's accessor (no secret)."""
        last = node.get("LastDrain")
        if not isinstance(last, dict):
            return "`nomad node eligibility -disable` (no drain recorded)"
        meta: Mapping[str, Any] = last["Meta"] if isinstance(last.get("Meta"), dict) else {}
        said = [f"{k} {clip(str(meta[k]), 60)}" for k in ("drained_by", "user", "host", "message") if meta.get(k)]
        if last.get("AccessorID"):
            said.append(f"token accessor {last['AccessorID']}")
        drain = f"the last drain ({last.get('Status') or '?'}; {', '.join(said) or 'no Meta'})"
        if not node.get("DrainStrategy") and Nomad._disabled_after_drain(node):
            return f"`nomad node eligibility -disable` after {drain}"
        return drain


def _nomad_autopilot(n: Any) -> Any:
    """python-nomad has no autopilot method; 429 is autopilot's "unhealthy", an answer."""
    try:
        return n.operator.request("autopilot", "health", method="get").json()
    except Exception as e:
        response = getattr(e, "nomad_resp", None)
        if isinstance(response, requests.Response) and response.status_code == 429:
            return response.json()
        raise


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
        for _ in range(10):
            health = self.http.lib("GET /v1/operator/autopilot/health", self.AUTOPILOT[self.name])
            if isinstance(health, dict) and health.get("Servers") is None:
                time.sleep(1)
                continue
            try:
                return parse_autopilot(health)
            except (ApiError, ValueError) as e:  # a proxy's page, not autopilot's JSON
                raise ActionFailed(f"{self.title} autopilot health: {e}") from None
        raise ActionFailed(f"{self.title}: autopilot lists no servers yet (just elected)")

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


def drain_until_idle(nomad: Nomad, node: Node, deadline_s: float, wait_s: float, progress: Progress,
                     owner: Mapping[str, str], allowed_jobs: Sequence[str] = (), for_human: bool = False
                     ) -> list[str]:
    """Drain ``node`` for ``owner`` and wait up to ``wait_s`` until only system jobs' and ``allowed_jobs``'
    allocations run there; what still runs (empty: idle; else it stays drained). The same owner's drain is waited
    on again; anyone else's is NeedsHuman, unless ``for_human`` (``gate --prepare``)."""
    n = nomad.node(node.name)
    node_id = str(n["ID"])
    mine = {"drained_by": Nomad.OWNER, **owner}["drained_by"]
    draining = bool(n.get("DrainStrategy") or n.get("Drain"))
    if draining or n.get("SchedulingEligibility") != "eligible":
        if Nomad._drained_by(n) != mine and not for_human:
            raise NeedsHuman(f"{node.name} is {'being drained' if draining else 'ineligible'} in Nomad, set by "
                             f"{Nomad.who(n)}: not ours to take over, nothing done")
        progress.say(f"{node.name} already {'draining' if draining else 'drained'} in Nomad by {mine}")
    else:
        nomad.drain(node_id, deadline_s, owner)
        progress.say(f"{node.name} draining in Nomad (deadline {deadline_s:g} s, system jobs left running)")
    try:
        progress.wait(f"no allocation running on {node.name}", lambda: not nomad.running(node_id, allowed_jobs),
                      wait_s, 5)
    except ActionFailed:
        return nomad.running(node_id, allowed_jobs)
    return []
