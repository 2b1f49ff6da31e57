"""Nomad drains and whose they are. A drain of ours carries ``drained_by`` in its Meta; only such a drain, once
complete, is undone (eligible again): a drain in progress is never cancelled, a human's drain or
``eligibility -disable`` never touched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from acceptance.inventory import Node
from acceptance.judging.raft import is_named
from acceptance.redaction import clip
from remediation.clients import Api
from remediation.model import ActionFailed, NeedsHuman, Progress


class Nomad:
    """Nomad's nodes with the remediation token: read, drained for us, given back only when ours."""

    OWNER = "alice-acceptance"
    QUIET = ("system",)  # what IgnoreSystemJobs leaves running (Nomad's drainer waits for sysbatch)

    def __init__(self, http: Api) -> None:
        self.http = http
        self._job_types: dict[tuple[str, str], str] = {}  # (namespace, job) -> type

    def node(self, name: str) -> dict[str, Any]:
        nodes = self.http.lib("GET /v1/nodes", lambda n: n.nodes.get_nodes())
        found = [n for n in nodes or [] if isinstance(n, dict) and is_named(str(n.get("Name", "")), name)]
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
        return drained_by(node) == cls.OWNER

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
        if not node.get("DrainStrategy") and _disabled_after_drain(node):
            return f"`nomad node eligibility -disable` after {drain}"
        return drain


def drained_by(node: Mapping[str, Any]) -> str | None:
    """``drained_by`` of the drain in progress, or of the last one when complete and not followed by an
    ``eligibility -disable``; None otherwise (a cancelled drain was someone else's doing)."""
    last = node.get("LastDrain")
    if not isinstance(last, dict):
        return None
    meta = last.get("Meta")
    by = str(meta["drained_by"]) if isinstance(meta, dict) and meta.get("drained_by") else None
    if node.get("DrainStrategy"):
        return by if last.get("Status") == "draining" else None
    return by if last.get("Status") == "complete" and not _disabled_after_drain(node) else None


def _disabled_after_drain(node: Mapping[str, Any]) -> bool:
    """The node's events (Nomad keeps the last 10) end with an ``eligibility -disable``, not a drain."""
    marks = [m for m in (str(e.get("Message")) for e in node.get("Events") or [] if isinstance(e, dict))
             if m.startswith(("Node drain", "Node marked as"))]
    return bool(marks) and marks[-1] == "Node marked as ineligible for scheduling"


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
        if drained_by(n) != mine and not for_human:
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
