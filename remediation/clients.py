"""The cluster's write side, with the remediation tokens (never the checks' read tokens):

=========================  ======================================  ===========================================
variable                    what remediation does with it            rights it needs
=========================  ======================================  ===========================================
NOMAD_REMEDIATION_TOKEN     drain / re-enable an agent, move the     ``node:write``, ``node:read``,
                            Nomad leadership off a master            ``namespace:read-job``, and management for
                                                                     ``operator/raft/transfer-leadership``
CONSUL_REMEDIATION_TOKEN    the remediation lock (a session and a    ``session:write``, ``key:write`` on the
                            KV key), move the Consul leadership      lock key's prefix, ``operator:write``
VAULT_REMEDIATION_TOKEN     step the active Vault down before its    ``update`` and ``sudo`` on ``sys/step-down``
                            master is disrupted
OS_CLOUD (clouds.yaml)      reboot / hard reboot / start a server    the project's member role (server actions)
=========================  ======================================  ===========================================

Addresses, CA and client certificates are the checks' (``NOMAD_ADDR``, ``NOMAD_CACERT``, ..., the inventory's
``apis``); every call has a timeout; redirects are never followed with a token.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import requests

from acceptance.clients.config import ApiConfig, api_config, master_urls
from acceptance.clients.errors import ApiError, classify
from acceptance.clients.libraries import LibClient, client_for
from acceptance.clients.raft import Autopilot, leading_master, parse_autopilot, server_is
from acceptance.clients.transport import BodyError, Redirected, TooLarge, excerpt
from acceptance.inventory import Inventory, Node
from acceptance.redaction import redact, remember
from remediation.model import ActionFailed, Progress

T = TypeVar("T")

WRITE_TOKENS = {"nomad": "NOMAD_REMEDIATION_TOKEN", "consul": "CONSUL_REMEDIATION_TOKEN",
                "vault": "VAULT_REMEDIATION_TOKEN"}


def write_config(name: str, inventory: Inventory, masters: Sequence[Node], env: Mapping[str, str] | None = None
                 ) -> ApiConfig:
    env = os.environ if env is None else env
    cfg = api_config(name, inventory, env=env, masters=list(masters))
    token = env.get(WRITE_TOKENS[name]) or None
    remember(token)
    return dataclasses.replace(cfg, token=token, token_var=WRITE_TOKENS[name])


def consul_of(inventory_path: str) -> tuple[Inventory, Http]:
    """The commands' (lock, stop, resume, release) inventory and Consul with the remediation token; raises
    InventoryError on bad input."""
    from acceptance.inventory import load_inventory

    inventory = load_inventory(inventory_path)
    return inventory, Http(write_config("consul", inventory, [n for n in inventory.nodes if n.role == "master"]))


class Http:
    """One API with its write token through its official library (:mod:`acceptance.clients.libraries`, on the
    hardened transport): fail-over across its addresses; a redirect or a non-JSON answer is never acted on."""

    def __init__(self, cfg: ApiConfig) -> None:
        self.cfg = cfg
        self.clients: dict[str, LibClient] = {}

    def client(self, url: str) -> LibClient:
        if url not in self.clients:
            self.clients[url] = client_for(self.cfg, url, json_api=True)
        return self.clients[url]

    def call(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None,
             ok: tuple[int, ...] = (200,)) -> Any:
        if self.cfg.problem:
            raise ActionFailed(self.cfg.problem)
        last, answered = "", False
        for url in self.cfg.urls:
            try:
                status, _, data = self.client(url).request(method, path, params, body)
            except (Redirected, BodyError, TooLarge) as e:
                raise ActionFailed(f"{url}: {method} {path}: {e} (not acted on)") from None
            except requests.RequestException as e:
                if not answered:  # an answer (no leader, 5xx) says more than a server that is down
                    last = f"{url}: no answer ({type(e).__name__})"
                continue
            if status in (401, 403):
                raise ActionFailed(f"{self.cfg.title} refused {method} {path} ({status}): set "
                                   f"{self.cfg.token_var} to a token with the rights README.md lists")
            if status not in ok:
                last, answered = f"{url}: {method} {path}: HTTP {status} {excerpt(data, 200)}", True
                if status >= 500:
                    continue
                raise ActionFailed(last)
            return json.loads(data) if data.strip() else None  # strict JSON: the transport checked a 2xx
        raise ActionFailed(f"{self.cfg.title}: {last or 'no address answered'}")

    def lib(self, what: str, use: Callable[[Any], T]) -> T:
        """``use(the library's client)`` on the first address that answers; any refusal is one line."""
        if self.cfg.problem:
            raise ActionFailed(self.cfg.problem)
        last: ApiError | None = None
        for url in self.cfg.urls:
            try:
                return use(self.client(url).lib)
            except Exception as e:  # classify() makes one line of each library's exceptions, without the token
                err = classify(self.cfg, url, what, e)
                if err.kind != "unreachable" and not err.retryable:
                    raise ActionFailed(str(err)) from None
                last = err
        raise ActionFailed(f"{self.cfg.title}: {what}: {last or 'no address answered'}")


class Nomad:
    """Nomad's nodes with the remediation token. A drain this suite makes names it in the drain's Meta
    (``drained_by``, with the run, user, host and check); only such a drain, once complete, is ever undone, and
    only by making the node eligible again: a drain in progress is never cancelled, and a human's drain or
    ``nomad node eligibility -disable`` is never touched."""

    OWNER = "alice-acceptance"
    QUIET = ("system",)  # what IgnoreSystemJobs leaves running (Nomad's drainer waits for sysbatch)

    def __init__(self, http: Http) -> None:
        self.http = http
        self._job_types: dict[tuple[str, str], str] = {}  # (namespace, job) -> type, for allocations without it

    def node(self, name: str) -> dict[str, Any]:
        nodes = self.http.lib("GET /v1/nodes", lambda n: n.nodes.get_nodes())
        found = [n for n in nodes or [] if isinstance(n, dict) and (n.get("Name") == name or
                                                                  str(n.get("Name", "")).startswith(name + "."))]
        if len(found) != 1:
            raise ActionFailed(f"{name} is not one Nomad node ({len(found)} found)")
        node_id = str(found[0]["ID"])
        return dict(self.http.lib(f"GET /v1/node/{node_id}", lambda n: n.node.get_node(node_id)))

    def running(self, node_id: str, allowed_jobs: Sequence[str] = ()) -> list[str]:
        """``job/allocation`` of what runs (or starts) on the node, system and sysbatch jobs and ``allowed_jobs``
        left out."""
        allocs = self.http.lib(f"GET /v1/node/{node_id}/allocations", lambda n: n.node.get_allocations(node_id))
        if not isinstance(allocs, list):
            raise ActionFailed(f"Nomad: the allocations of node {node_id} are not a list")
        return [f"{a.get('JobID')}/{a.get('Name')}" for a in allocs
                if isinstance(a, dict) and a.get("ClientStatus") in ("pending", "running")
                and a.get("JobID") not in allowed_jobs and self._job_type(a) not in self.QUIET]

    def _job_type(self, alloc: dict[str, Any]) -> str:
        """The list stub's JobType, else the full allocation's Job, else the job itself (once per job)."""
        job = alloc.get("Job")
        kind = alloc.get("JobType") or (job.get("Type") if isinstance(job, dict) else None)
        if isinstance(kind, str) and kind:
            return kind
        from urllib.parse import quote

        key = (str(alloc.get("Namespace") or "default"), str(alloc.get("JobID") or ""))
        if key not in self._job_types:
            try:
                read = self.http.call("GET", f"/v1/job/{quote(key[1], safe='')}", params={"namespace": key[0]})
            except ActionFailed:  # gone or unreadable: counted as running, never ignored
                read = None
            self._job_types[key] = str(read.get("Type") or "?") if isinstance(read, dict) else "?"
        return self._job_types[key]

    def drain(self, node_id: str, deadline_s: float, owner: Mapping[str, str]) -> None:
        """Drain, system jobs left running; ``owner`` (run_id, user, host, check) goes to the drain's Meta, which
        Nomad keeps in the node's LastDrain (its values are strings). An owner's own ``drained_by`` replaces
        ours: that drain is theirs (``gate --prepare``: the human's)."""
        meta = {"drained_by": self.OWNER, **{k: str(v) for k, v in owner.items()}}
        spec = {"DrainSpec": {"Deadline": int(deadline_s * 1e9), "IgnoreSystemJobs": True}, "Meta": meta}
        self.http.call("POST", f"/v1/node/{node_id}/drain", spec)

    @classmethod
    def drained_by_us(cls, node: Mapping[str, Any]) -> bool:
        """The node's drain is this suite's: the drain in progress, or, with none on, the last drain, complete
        (a cancelled one was someone else's doing) and not followed by an ``eligibility -disable``."""
        return cls._drained_by(node) == cls.OWNER

    def reenable(self, node_id: str, node: Mapping[str, Any]) -> str:
        """Eligible again, only for a drain of ours that is complete; raises ActionFailed while it drains and
        NeedsHuman for a node that is not ours."""
        from remediation.model import NeedsHuman

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
        """Who the node's drain or ineligibility is by, as its LastDrain's Meta says; None when no drain of
        anyone's explains it: a cancelled drain (we never cancel), or an ``eligibility -disable`` after it."""
        last = node.get("LastDrain")
        meta = last.get("Meta") if isinstance(last, dict) else None
        by = str(meta["drained_by"]) if isinstance(meta, dict) and meta.get("drained_by") else None
        if not isinstance(last, dict):
            return None
        if node.get("DrainStrategy"):
            return by if last.get("Status") == "draining" else None
        if last.get("Status") != "complete" or Nomad._disabled_after_drain(node):
            return None
        return by

    @staticmethod
    def _disabled_after_drain(node: Mapping[str, Any]) -> bool:
        """The node's events (Nomad keeps the last 10, in order) end with an ``eligibility -disable``, not a drain
        (a drain sets the node ineligible without an event of that kind)."""
        messages = [str(e.get("Message")) for e in node.get("Events") or [] if isinstance(e, dict)]
        marks = [m for m in messages if m.startswith(("Node drain", "Node marked as"))]
        return bool(marks) and marks[-1] == "Node marked as ineligible for scheduling"

    @staticmethod
    def who(node: Mapping[str, Any]) -> str:
        """What set the node's drain or ineligibility, from LastDrain's Meta and its token's accessor (an
        accessor is no secret)."""
        last = node.get("LastDrain")
        if not isinstance(last, dict):
            return "`nomad node eligibility -disable` (no drain recorded)"
        meta: Mapping[str, Any] = last["Meta"] if isinstance(last.get("Meta"), dict) else {}
        said = [f"{k} {redact(str(meta[k]))[:60]}" for k in ("drained_by", "user", "host", "message") if meta.get(k)]
        if last.get("AccessorID"):
            said.append(f"token accessor {last['AccessorID']}")
        drain = f"the last drain ({last.get('Status') or '?'}; {', '.join(said) or 'no Meta'})"
        if not node.get("DrainStrategy") and Nomad._disabled_after_drain(node):
            return f"`nomad node eligibility -disable` after {drain}"
        return drain


class Raft:
    """A Nomad or Consul server cluster's leadership: the same moves, each product's own paths."""

    TRANSFER = {"nomad": ("PUT", "/v1/operator/raft/transfer-leadership"),
                "consul": ("POST", "/v1/operator/raft/transfer-leader")}

    def __init__(self, http: Http) -> None:
        self.http = http
        self.title = http.cfg.title

    def autopilot(self) -> Autopilot:
        """Autopilot's view, waiting out the moments right after an election when it lists no servers yet."""
        problem = ""
        for _ in range(10):
            health = self.http.call("GET", "/v1/operator/autopilot/health", ok=(200, 429))
            if isinstance(health, dict) and health.get("Servers") is None:
                problem = "autopilot lists no servers yet (just elected)"
                time.sleep(1)
                continue
            try:
                return parse_autopilot(health)
            except (ApiError, ValueError) as e:  # a proxy's page, not autopilot's JSON
                raise ActionFailed(f"{self.title} autopilot health: {e}") from None
        raise ActionFailed(f"{self.title}: {problem}")

    def leading(self, masters: Sequence[Node]) -> str | None:
        """The leading master by the raft server's identity (never the leader's address as a string)."""
        leader = str(self.http.call("GET", "/v1/status/leader") or "")
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
        method, path = self.TRANSFER[self.http.cfg.name]
        self.http.call(method, path, params={"id": targets[0].id})
        progress.wait(f"the {self.title} leadership to move",
                      lambda: self.leading(masters) not in (master.name, None), 60)
        return f"{self.title} leadership moved from {master.name} to {self.leading(masters)}"


class Vault:
    def __init__(self, cfg: ApiConfig) -> None:
        self.cfg = cfg

    def step_down_if_active(self, master: Node, progress: Progress) -> str:
        url = master_urls(self.cfg.url, [master], 8200)[0]
        vault = Http(dataclasses.replace(self.cfg, urls=(url,)))

        def health() -> Any:  # standbyok: a standby answers 200 with its state too
            return vault.lib("GET /v1/sys/health",
                             lambda c: c.sys.read_health_status(method="GET", standby_ok=True).json())

        now = health()
        if not isinstance(now, dict) or now.get("standby", True) or now.get("sealed", True):
            return "Vault is not active there"
        try:
            vault.lib("PUT /v1/sys/step-down", lambda c: c.sys.step_down())
        except ActionFailed as e:
            raise ActionFailed(f"Vault step-down on {master.name} refused ({e}): set {self.cfg.token_var} to a "
                               "token with sudo on sys/step-down") from None

        def standby() -> bool:
            h = health()
            return isinstance(h, dict) and bool(h.get("standby"))

        progress.wait(f"Vault on {master.name} to step down", standby, 60)
        return f"Vault on {master.name} stepped down"


def move_leadership_off(inventory: Inventory, master: Node, masters: Sequence[Node], progress: Progress) -> str:
    """Before a master is disrupted: its Nomad and Consul leadership to another master, its Vault stepped down."""
    others = [m for m in masters if m.name != master.name]
    return "; ".join([Raft(Http(write_config("nomad", inventory, masters))).transfer_away(master, others, progress),
                      Raft(Http(write_config("consul", inventory, masters))).transfer_away(master, others, progress),
                      Vault(write_config("vault", inventory, masters)).step_down_if_active(master, progress)])


def drain_until_idle(nomad: Nomad, node: Node, deadline_s: float, wait_s: float, progress: Progress,
                     owner: Mapping[str, str], allowed_jobs: Sequence[str] = (), for_human: bool = False
                     ) -> list[str]:
    """Drain ``node`` with ``owner`` in the drain's Meta (see :meth:`Nomad.drain`) and wait up to ``wait_s`` until
    no allocation runs there but system jobs' and ``allowed_jobs``'; the allocations still running (empty: idle).
    A drain already on, or done, by the same owner is waited on again; anyone else's drain or ineligibility is
    not ours to take over (NeedsHuman), unless ``for_human`` (``gate --prepare``: a human asked, their drain is
    waited on). Not idle: the node stays drained (the caller never re-enables it here)."""
    from remediation.model import NeedsHuman

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
