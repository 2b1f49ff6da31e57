"""Nomad emulator for the lab: servers (role `master`) and clients (role `agent`), HTTP API on 4646.

Test equipment only: it runs in the lab's nodes with Debian's python3 (3.11), standard library only:
    PYTHONPATH=/opt/alicelab python3 -m emulators.nomad /etc/alicelab/node.json

Servers elect a leader with `base.Election` (only with a quorum); the leader owns the state (nodes, jobs,
allocations), places allocations and pushes the state whole to the followers, which forward writes to it.
Clients register and heartbeat (every 1 s) over the servers' RPC port 4647; the leader marks a node `down`
after 6 s without a heartbeat. Clients also register themselves and their running allocations in Consul.

Jobs are given in node.json (masters only), key `jobs`, a list of:
    {
      "ID": "ci-mesosci-slc9",          # job ID and name (required)
      "Type": "service",                # "service" (kept running) or "batch" (runs RunSeconds, then complete)
      "Count": 2,                       # allocations wanted (default 1)
      "Constraints": [                  # Nomad constraints; LTarget ${attr.*}, ${meta.*}, ${node.unique.id},
        {"LTarget": "${attr.kernel.name}", "RTarget": "linux", "Operand": "="},   # ${node.unique.name},
        {"LTarget": "${meta.allow_compilation}", "RTarget": "true", "Operand": "="}  # ${node.datacenter},
      ],                                # ${node.class}, ${node.pool}; operands =, ==, is, !=, not, regexp,
                                        # is_set, is_not_set, distinct_hosts
      "RunSeconds": 30,                 # batch only: how long an allocation runs (default 60)
      "Group": "ci", "Task": "ci",      # optional; default "ci" for ci-* jobs, else the job ID
      "Image": "registry.cern.ch/alisw/slc9-builder:latest",  # optional, the docker task's image
      "Priority": 50, "Datacenters": ["cern"]                  # optional
    }
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from . import base

VERSION = "1.9.7"
REVISION = "f869597f5dd7ca5a3e2d3d9e8ec7b5fcd8b7a3d2"
HTTP_PORT, RPC_PORT, SERF_PORT = 4646, 4647, 4648
HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 6.0
CONSUL_SYNC_S = 5.0
LEADER_LOOP_S = 0.25
MAX_TERMINAL_ALLOCS_PER_JOB = 20
ZERO_TIME = "0001-01-01T00:00:00Z"
NO_LEADER = "No cluster leader"
HOPS_HEADER = "x-alicelab-hops"


# --------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} nomad: {msg}", file=sys.stderr, flush=True)


def rfc3339(ns: int) -> str:
    if not ns:
        return ZERO_TIME
    dt = datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def every(name: str, interval: float, fn: Callable[[], None]) -> None:
    """Runs fn every `interval` seconds in a daemon thread that survives any exception."""

    def run() -> None:
        while True:
            started = time.monotonic()
            try:
                fn()
            except Exception:  # test equipment must keep going
                log(f"{name}: {traceback.format_exc()}")
            time.sleep(max(0.05, interval - (time.monotonic() - started)))

    threading.Thread(target=run, name=name, daemon=True).start()


def token_check(token: str) -> base.TokenCheck:
    def check(req: base.Request) -> base.Response | None:
        given = base.bearer_token(req, "x-nomad-token")
        if not given:
            return base.error(403, "Permission denied")
        if given != token:
            return base.error(403, "ACL token not found")  # what Nomad answers for an unknown secret
        return None

    return check


def dispatch(router: base.Router, req: base.Request, check: base.TokenCheck) -> base.Response:
    """Runs a request through a router as base.serve would (used for requests forwarded over RPC)."""
    found = router.match(req.method, req.path)
    if found is None:
        return base.error(404, "Invalid URL path")
    if isinstance(found, str):
        return base.error(405, "Invalid method")
    fn, params, acl = found
    req.params = params
    denied = check(req) if acl else None
    if denied is not None:
        return denied
    try:
        return fn(req)
    except (KeyError, ValueError, TypeError) as exc:
        return base.error(400, f"Bad request: {exc}")
    except Exception as exc:
        log(f"handler {req.path}: {traceback.format_exc()}")
        return base.error(500, str(exc))


def request_to_json(req: base.Request, hops: int) -> dict[str, Any]:
    headers = {k: v for k, v in req.headers.items() if k in ("x-nomad-token", "authorization")}
    headers[HOPS_HEADER] = str(hops)
    return {"method": req.method, "path": req.path, "query": req.query, "headers": headers,
            "body": req.body.decode(errors="replace")}


def request_from_json(d: dict[str, Any]) -> base.Request:
    return base.Request(d["method"], d["path"], dict(d.get("query") or {}), dict(d.get("headers") or {}),
                        str(d.get("body") or "").encode())


def response_to_json(resp: base.Response) -> dict[str, Any]:
    return {"status": resp.status, "headers": resp.headers, "body": resp.encode().decode(errors="replace")}


def response_from_json(d: dict[str, Any]) -> base.Response:
    return base.Response(status=int(d["status"]), raw=str(d.get("body", "")).encode(), headers=dict(d["headers"]))


def parse_duration(text: str, default: float) -> float:
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text or ""):
        found = True
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total if found else default


def prometheus_text(gauges: list[tuple[str, dict[str, str], float]]) -> bytes:
    lines: list[str] = []
    seen: set[str] = set()
    for name, labels, value in gauges:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {name}")
            lines.append(f"# TYPE {name} gauge")
        lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
    return ("\n".join(lines) + "\n").encode()


def metrics_response(req: base.Request, gauges: list[tuple[str, dict[str, str], float]]) -> base.Response:
    if req.query.get("format") == "prometheus":
        return base.Response(raw=prometheus_text(gauges), headers={"Content-Type": "text/plain; version=0.0.4"})
    body = {
        "Timestamp": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "Gauges": [{"Name": n.replace("_", "."), "Labels": labels, "Value": v} for n, labels, v in gauges],
        "Counters": [], "Samples": [], "Points": [],
    }
    return base.Response(body=body)


def runtime_stats() -> dict[str, str]:
    return {"arch": _arch(), "cpu_count": str(os.cpu_count() or 1), "goroutines": str(threading.active_count()),
            "kernel.name": os.uname().sysname.lower(), "max_procs": str(os.cpu_count() or 1), "version": "go1.22.12"}


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def agent_config(cfg: dict[str, Any], server: bool) -> dict[str, Any]:
    """The agent configuration as /v1/agent/self shows it (the subset the lab's nodes would set)."""
    ip = cfg["ip"]
    masters = cfg.get("masters", [])
    tls = cfg.get("tls", {})
    return {
        "Addresses": {"HTTP": ip, "RPC": ip, "Serf": ip},
        "AdvertiseAddrs": {"HTTP": f"{ip}:{HTTP_PORT}", "RPC": f"{ip}:{RPC_PORT}", "Serf": f"{ip}:{SERF_PORT}"},
        "BindAddr": "0.0.0.0",
        "Client": {
            "AllocDir": "", "ChrootEnv": {}, "ClientMaxPort": 14512, "ClientMinPort": 14000,
            "DisableRemoteExec": False, "Enabled": not server, "GCDiskUsageThreshold": 80,
            "GCInodeUsageThreshold": 70, "GCInterval": 60000000000, "MaxKillTimeout": "30s",
            "Meta": {} if server else {"allow_compilation": "true"}, "NetworkInterface": "eth0", "NetworkSpeed": 0,
            "NodeClass": "", "NodePool": "default", "Options": {"driver.docker.volumes": "true"},
            "Reserved": {"CPU": 0, "DiskMB": 0, "MemoryMB": 0, "ParsedReservedPorts": None, "ReservedPorts": ""},
            "Servers": None if server else [f"{m['ip']}:{RPC_PORT}" for m in masters],
            "StateDir": "" if server else os.path.join(cfg.get("build_dir", "/build"), "nomad", "client"),
        },
        "Consul": {
            "Addr": "127.0.0.1:8500", "Auth": "", "AutoAdvertise": True, "CAFile": tls.get("ca", ""),
            "CertFile": tls.get("cert", ""), "ChecksUseAdvertise": False, "ClientAutoJoin": True,
            "ClientServiceName": "nomad-client", "EnableSSL": True, "KeyFile": tls.get("key", ""),
            "ServerAutoJoin": True, "ServerServiceName": "nomad", "Timeout": 5000000000, "Token": "<redacted>",
            "VerifySSL": True,
        },
        "DataDir": os.path.join(cfg.get("build_dir", "/build"), "nomad"),
        "Datacenter": cfg.get("datacenter", "cern"), "DevMode": False, "DisableAnonymousSignature": True,
        "DisableUpdateCheck": True, "EnableDebug": False, "EnableSyslog": False, "Files": ["/etc/nomad.d/nomad.hcl"],
        "HTTPAPIResponseHeaders": {}, "LeaveOnInt": False, "LeaveOnTerm": False, "LogLevel": "INFO",
        "NodeName": cfg["name"], "Ports": {"HTTP": HTTP_PORT, "RPC": RPC_PORT, "Serf": SERF_PORT},
        "Region": cfg.get("region", "global"), "Revision": REVISION,
        "Server": {
            "BootstrapExpect": len(masters) if server else 0, "DataDir": "", "Enabled": server,
            "EnabledSchedulers": None, "HeartbeatGrace": "", "NodeGCThreshold": "", "NumSchedulers": 0,
            "ProtocolVersion": 0, "RaftProtocol": 3, "RejoinAfterLeave": False, "RetryInterval": "30s",
            "RetryJoin": [m["ip"] for m in masters] if server else [], "RetryMaxAttempts": 0, "StartJoin": [],
        },
        "SyslogFacility": "LOCAL0",
        "TLSConfig": {"CAFile": tls.get("ca", ""), "CertFile": tls.get("cert", ""), "EnableHTTP": True,
                      "EnableRPC": True, "KeyFile": tls.get("key", ""), "VerifyHTTPSClient": True,
                      "VerifyServerHostname": True},
        "Telemetry": {"CollectionInterval": "1s", "DisableHostname": False, "PrometheusMetrics": True,
                      "PublishAllocationMetrics": True, "PublishNodeMetrics": True, "UseNodeName": False},
        "Vault": {"Addr": "https://vault.service.consul:8200", "AllowUnauthenticated": True,
                  "ConnectionRetryIntv": 30000000000, "Enabled": server, "Role": "", "TLSCaFile": tls.get("ca", ""),
                  "TLSSkipVerify": False, "TaskTokenTTL": "", "Token": "<redacted>"},
        "Version": {"Revision": REVISION, "Version": VERSION, "VersionMetadata": "", "VersionPrerelease": ""},
    }


# --------------------------------------------------------------------------- jobs and allocations

def job_spec(raw: dict[str, Any], datacenter: str) -> dict[str, Any]:
    jid = str(raw["ID"])
    default_name = "ci" if jid.startswith("ci-") else jid
    return {
        "ID": jid,
        "Type": raw.get("Type", "service"),
        "Count": int(raw.get("Count", 1)),
        "Constraints": list(raw.get("Constraints") or []),
        "RunSeconds": float(raw.get("RunSeconds", 60)),
        "Group": raw.get("Group", default_name),
        "Task": raw.get("Task", default_name),
        "Image": raw.get("Image", "registry.cern.ch/alisw/slc9-builder:latest"),
        "Priority": int(raw.get("Priority", 50)),
        "Datacenters": list(raw.get("Datacenters") or [datacenter]),
    }


def _target(expr: str, node: dict[str, Any]) -> str | None:
    m = re.fullmatch(r"\$\{(attr|meta)\.(.+)\}", expr or "")
    if m:
        values: dict[str, str] = node.get("Attributes" if m.group(1) == "attr" else "Meta") or {}
        return values.get(m.group(2))
    fixed = {"${node.unique.id}": node["ID"], "${node.unique.name}": node["Name"],
             "${node.datacenter}": node["Datacenter"], "${node.class}": node.get("NodeClass", ""),
             "${node.pool}": node.get("NodePool", "default")}
    return str(fixed.get(expr, expr))


def satisfies(node: dict[str, Any], constraints: list[dict[str, Any]]) -> bool:
    for c in constraints:
        op = c.get("Operand", "=")
        left, right = _target(c.get("LTarget", ""), node), c.get("RTarget", "")
        if op == "distinct_hosts":
            continue  # checked by the placement
        if op in ("=", "==", "is"):
            ok = left == right
        elif op in ("!=", "not"):
            ok = left != right
        elif op == "regexp":
            ok = left is not None and re.search(right, left) is not None
        elif op == "is_set":
            ok = left is not None
        elif op == "is_not_set":
            ok = left is None
        else:
            ok = False  # an operand the lab does not know never matches, rather than matching silently
        if not ok:
            return False
    return True


def task_event(kind: str, ns: int, message: str = "", details: dict[str, str] | None = None) -> dict[str, Any]:
    display = {"Received": "Task received by client", "Task Setup": "Building Task Directory",
               "Driver": "Downloading image", "Started": "Task started by client",
               "Terminated": "Exit Code: 0", "Killing": "Sent interrupt. Waiting 5s before force killing",
               "Killed": "Task successfully killed"}.get(kind, message)
    return {
        "Details": details or {}, "DiskLimit": 0, "DisplayMessage": display, "DownloadError": "", "DriverError": "",
        "DriverMessage": "", "ExitCode": 0, "FailedSibling": "", "FailsTask": False, "GenericSource": "",
        "KillError": "", "KillReason": "", "KillTimeout": 0, "Message": message, "RestartReason": "",
        "SetupError": "", "Signal": 0, "StartDelay": 0, "TaskSignal": "", "TaskSignalReason": "", "Time": ns,
        "Type": kind, "ValidationError": "", "VaultError": "",
    }


def empty_state() -> dict[str, Any]:
    return {"index": 1, "nodes": {}, "jobs": {}, "allocs": {}, "drains": {}}


ACTIVE = ("pending", "running")


def is_active(a: dict[str, Any]) -> bool:
    return bool(a["DesiredStatus"] == "run" and a["ClientStatus"] in ACTIVE)


def finished_ok(a: dict[str, Any]) -> bool:
    """A batch allocation that ran to its end (not one stopped by a drain or a lost node)."""
    return bool(a["ClientStatus"] == "complete" and a["DesiredStatus"] == "run")


class Cluster:
    """The state the leader owns, and the rules it applies to it. Callers hold the server's lock."""

    def __init__(self, state: dict[str, Any], jobs: list[dict[str, Any]], region: str) -> None:
        self.state, self.jobs, self.region = state, jobs, region

    def bump(self) -> int:
        self.state["index"] += 1
        return int(self.state["index"])

    # --- nodes
    def node_event(self, node: dict[str, Any], message: str, subsystem: str, idx: int) -> None:
        event = {"CreateIndex": idx, "Details": None, "Message": message, "Subsystem": subsystem,
                 "Timestamp": rfc3339(time.time_ns())}
        node["Events"] = [*(node.get("Events") or [])[-9:], event]

    def set_status(self, node: dict[str, Any], status: str, message: str) -> None:
        idx = self.bump()
        node["Status"], node["StatusUpdatedAt"], node["ModifyIndex"] = status, int(time.time()), idx
        self.node_event(node, message, "Cluster", idx)

    def upsert_node(self, info: dict[str, Any]) -> dict[str, Any]:
        nodes = self.state["nodes"]
        node: dict[str, Any] | None = nodes.get(info["ID"])
        if node is None:
            idx = self.bump()
            node = dict(info, Status="ready", StatusDescription="", StatusUpdatedAt=int(time.time()),
                        SchedulingEligibility="eligible", Drain=False, DrainStrategy=None, LastDrain=None,
                        Events=[], CreateIndex=idx, ModifyIndex=idx, SecretID="")
            self.node_event(node, "Node registered", "Cluster", idx)
            nodes[info["ID"]] = node
            return node
        fingerprint = ("Name", "Datacenter", "NodeClass", "NodePool", "HTTPAddr", "Meta", "Drivers")
        if any(node.get(k) != info.get(k) for k in fingerprint):
            node["ModifyIndex"] = self.bump()
        node.update(info)  # attributes (free disk space) change all the time: no new index for them
        if node["Status"] != "ready":
            self.set_status(node, "ready", "Node reregistered by heartbeat")
        return node

    # --- allocations
    def touch(self, a: dict[str, Any]) -> None:
        a["ModifyIndex"] = a["AllocModifyIndex"] = self.bump()
        a["ModifyTime"] = time.time_ns()

    def stop_alloc(self, a: dict[str, Any], client: str, desired_desc: str, migrate: bool = False) -> None:
        now = time.time_ns()
        a["DesiredStatus"], a["DesiredDescription"] = "stop", desired_desc
        if a["ClientStatus"] in ACTIVE:
            a["ClientStatus"] = client
            a["ClientDescription"] = "All tasks have completed" if client == "complete" else ""
            a["FinishedAt"] = now
            if client == "complete":
                a["Events"] += [task_event("Killing", now), task_event("Killed", now)]
        if migrate:
            a["DesiredTransition"]["Migrate"] = True
        self.touch(a)

    def place(self, job: dict[str, Any], slot: int, node: dict[str, Any], prev: dict[str, Any] | None) -> None:
        spec = job["Spec"]
        now = time.time_ns()
        idx = self.bump()
        aid = str(uuid.uuid4())
        self.state["allocs"][aid] = {
            "ID": aid, "EvalID": str(uuid.uuid4()), "Name": f"{spec['ID']}.{spec['Group']}[{slot}]", "Slot": slot,
            "Namespace": "default", "NodeID": node["ID"], "NodeName": node["Name"], "JobID": spec["ID"],
            "JobType": spec["Type"], "JobVersion": job["Version"], "TaskGroup": spec["Group"], "Task": spec["Task"],
            "DesiredStatus": "run", "DesiredDescription": "", "ClientStatus": "running",
            "ClientDescription": "Tasks are running",
            "DesiredTransition": {"ForceReschedule": None, "Migrate": None, "Reschedule": None},
            "CreateIndex": idx, "ModifyIndex": idx, "AllocModifyIndex": idx, "CreateTime": now, "ModifyTime": now,
            "StartedAt": now, "FinishedAt": 0, "PreviousAllocation": prev["ID"] if prev else "",
            "NextAllocation": "",
            "Events": [task_event("Received", now), task_event("Task Setup", now, "Building Task Directory",
                                                               {"message": "Building Task Directory"}),
                       task_event("Driver", now, "", {"image": spec["Image"]}), task_event("Started", now)],
        }
        if prev:
            prev["NextAllocation"] = aid
            self.touch(prev)

    def feasible(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [n for n in self.state["nodes"].values()
                if n["Status"] == "ready" and n["SchedulingEligibility"] == "eligible" and not n["Drain"]
                and n["Datacenter"] in spec["Datacenters"] and satisfies(n, spec["Constraints"])]

    def reconcile(self, heartbeats: dict[str, float]) -> None:
        st = self.state
        now, mono = time.time_ns(), time.monotonic()
        allocs = st["allocs"]
        # Jobs come from the configuration; a changed spec is a new job version.
        for spec in self.jobs:
            job = st["jobs"].get(spec["ID"])
            if job is None:
                idx = self.bump()
                st["jobs"][spec["ID"]] = {"Spec": spec, "CreateIndex": idx, "ModifyIndex": idx, "JobModifyIndex": idx,
                                          "SubmitTime": now, "Version": 0}
            elif job["Spec"] != spec:
                idx = self.bump()
                job.update(Spec=spec, ModifyIndex=idx, JobModifyIndex=idx, SubmitTime=now, Version=job["Version"] + 1)
        # Missed heartbeats: the node is down and what ran there is lost.
        for node in st["nodes"].values():
            if node["Status"] == "ready" and mono - heartbeats.get(node["ID"], 0.0) > HEARTBEAT_TTL_S:
                self.set_status(node, "down", "Node heartbeat missed")
                for a in allocs.values():
                    if a["NodeID"] == node["ID"] and a["ClientStatus"] in ACTIVE:
                        self.stop_alloc(a, "lost", "alloc is lost since its node is down")
        # Batch allocations finish after their run time.
        for a in allocs.values():
            job = st["jobs"].get(a["JobID"])
            if (a["JobType"] == "batch" and a["ClientStatus"] == "running" and job
                    and now >= a["StartedAt"] + int(job["Spec"]["RunSeconds"] * 1e9)):
                a["ClientStatus"], a["ClientDescription"], a["FinishedAt"] = "complete", "All tasks have completed", now
                a["Events"].append(task_event("Terminated", now, "", {"exit_code": "0", "signal": "0"}))
                self.touch(a)
        # Drains: service allocations migrate now, batch ones at the deadline; then the drain is complete.
        for node_id, drain in list(st["drains"].items()):
            node = st["nodes"].get(node_id)
            if node is None:
                del st["drains"][node_id]
                continue
            forced = drain["force_ns"] is not None and now >= drain["force_ns"]
            left = 0
            for a in allocs.values():
                if a["NodeID"] == node_id and is_active(a):
                    if a["JobType"] == "service" or forced:
                        self.stop_alloc(a, "complete", "alloc is being migrated", migrate=True)
                    else:
                        left += 1
            if not left:
                idx = self.bump()
                node.update(Drain=False, DrainStrategy=None, ModifyIndex=idx)
                if node.get("LastDrain"):
                    node["LastDrain"].update(Status="complete", UpdatedAt=rfc3339(now))
                self.node_event(node, "Node drain complete", "Drain", idx)
                del st["drains"][node_id]
        # Placement: keep Count allocations per job, spread over the feasible nodes.
        for job in st["jobs"].values():
            self.place_job(job)
        self.gc()

    def place_job(self, job: dict[str, Any]) -> None:
        spec = job["Spec"]
        mine = [a for a in self.state["allocs"].values() if a["JobID"] == spec["ID"]]
        active = [a for a in mine if is_active(a)]
        for a in active:
            if a["Slot"] >= spec["Count"]:
                self.stop_alloc(a, "complete", "alloc not needed due to job update")
        done = [a for a in mine if spec["Type"] == "batch" and finished_ok(a)]
        taken = {a["Slot"] for a in active + done}
        missing = [s for s in range(spec["Count"]) if s not in taken]
        if not missing:
            return
        nodes = self.feasible(spec)
        distinct = any(c.get("Operand") == "distinct_hosts" for c in spec["Constraints"])
        load: dict[str, int] = {n["ID"]: 0 for n in nodes}
        own: dict[str, int] = {n["ID"]: 0 for n in nodes}
        for a in self.state["allocs"].values():
            if is_active(a) and a["NodeID"] in load:
                load[a["NodeID"]] += 1
                own[a["NodeID"]] += a["JobID"] == spec["ID"]
        for slot in missing:
            choices = [n for n in nodes if not (distinct and own[n["ID"]])]
            if not choices:
                return  # stays queued until a node fits
            node = min(choices, key=lambda n: (own[n["ID"]], load[n["ID"]], n["Name"]))
            prev = max((a for a in mine if a["Slot"] == slot and not is_active(a) and not a["NextAllocation"]),
                       key=lambda a: a["CreateIndex"], default=None)
            self.place(job, slot, node, prev)
            own[node["ID"]] += 1
            load[node["ID"]] += 1

    def gc(self) -> None:
        by_job: dict[str, list[dict[str, Any]]] = {}
        for a in self.state["allocs"].values():
            if not is_active(a) and not finished_ok(a):
                by_job.setdefault(a["JobID"], []).append(a)
        for terminal in by_job.values():
            terminal.sort(key=lambda a: a["ModifyIndex"])
            for a in terminal[:-MAX_TERMINAL_ALLOCS_PER_JOB]:
                del self.state["allocs"][a["ID"]]

    # --- views
    def summary(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["Spec"]
        mine = [a for a in self.state["allocs"].values() if a["JobID"] == spec["ID"]]
        count = {s: sum(1 for a in mine if a["ClientStatus"] == s) for s in ("pending", "running", "complete",
                                                                               "failed", "lost")}
        finished = sum(1 for a in mine if finished_ok(a))
        live = count["pending"] + count["running"]
        queued = max(0, spec["Count"] - live - (finished if spec["Type"] == "batch" else 0))
        return {
            "JobID": spec["ID"], "Namespace": "default",
            "Summary": {spec["Group"]: {"Queued": queued, "Complete": count["complete"], "Failed": count["failed"],
                                        "Running": count["running"], "Starting": count["pending"],
                                        "Lost": count["lost"], "Unknown": 0}},
            "Children": {"Pending": 0, "Running": 0, "Dead": 0},
            "CreateIndex": job["CreateIndex"],
            "ModifyIndex": max([job["ModifyIndex"], *(a["ModifyIndex"] for a in mine)]),
        }

    def job_status(self, job: dict[str, Any]) -> str:
        spec = job["Spec"]
        mine = [a for a in self.state["allocs"].values() if a["JobID"] == spec["ID"]]
        if any(is_active(a) for a in mine):
            return "running"
        if spec["Type"] == "batch":
            finished = sum(1 for a in mine if finished_ok(a))
            if finished >= spec["Count"]:
                return "dead"
        return "pending"

    def job_stub(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["Spec"]
        return {
            "ID": spec["ID"], "ParentID": "", "Name": spec["ID"], "Namespace": "default",
            "Datacenters": spec["Datacenters"], "NodePool": "default", "Multiregion": None, "Type": spec["Type"],
            "Priority": spec["Priority"], "Periodic": False, "ParameterizedJob": False, "Stop": False,
            "Status": self.job_status(job), "StatusDescription": "", "JobSummary": self.summary(job),
            "CreateIndex": job["CreateIndex"], "ModifyIndex": job["ModifyIndex"],
            "JobModifyIndex": job["JobModifyIndex"], "SubmitTime": job["SubmitTime"], "Meta": None,
        }

    def job_full(self, job: dict[str, Any]) -> dict[str, Any]:
        spec = job["Spec"]
        task = {
            "Artifacts": None, "Config": {"image": spec["Image"], "args": [], "privileged": False},
            "Constraints": None, "DispatchPayload": None, "Driver": "docker", "Env": None, "KillSignal": "",
            "KillTimeout": 5000000000, "Leader": False, "LogConfig": {"MaxFileSizeMB": 10, "MaxFiles": 10},
            "Meta": None, "Name": spec["Task"],
            "Resources": {"CPU": 4000, "DiskMB": 0, "MemoryMB": 8192, "Networks": [
                {"CIDR": "", "Device": "", "DynamicPorts": [{"Label": "http", "Value": 0}], "IP": "", "MBits": 10,
                 "Mode": "", "ReservedPorts": None}]},
            "Services": [{"AddressMode": "auto", "Checks": [
                {"AddressMode": "", "Args": None, "CheckRestart": None, "Command": "", "Header": None,
                 "InitialStatus": "", "Interval": 30000000000, "Method": "", "Name": "alive", "Path": "",
                 "PortLabel": "http", "Protocol": "", "TLSSkipVerify": False, "Timeout": 2000000000, "Type": "tcp"}],
                "Name": spec["ID"], "PortLabel": "http", "Tags": [spec["Group"]], "Provider": "consul"}],
            "ShutdownDelay": 0, "Templates": None, "User": "", "Vault": {"Policies": ["nomad"]},
        }
        group = {
            "Constraints": None, "Count": spec["Count"],
            "EphemeralDisk": {"Migrate": False, "SizeMB": 300, "Sticky": True}, "Meta": None,
            "Migrate": {"HealthCheck": "checks", "HealthyDeadline": 300000000000, "MaxParallel": 1,
                        "MinHealthyTime": 10000000000},
            "Name": spec["Group"],
            "ReschedulePolicy": {"Attempts": 0, "Delay": 30000000000, "DelayFunction": "exponential", "Interval": 0,
                                 "MaxDelay": 3600000000000, "Unlimited": True},
            "RestartPolicy": {"Attempts": 2, "Delay": 15000000000, "Interval": 1800000000000, "Mode": "fail"},
            "Tasks": [task], "Update": None,
        }
        return {
            "AllAtOnce": False, "Constraints": [dict(c) for c in spec["Constraints"]] or None,
            "CreateIndex": job["CreateIndex"], "Datacenters": spec["Datacenters"], "ID": spec["ID"],
            "JobModifyIndex": job["JobModifyIndex"], "Meta": None, "ModifyIndex": job["ModifyIndex"],
            "Name": spec["ID"], "Namespace": "default", "NodePool": "default", "ParameterizedJob": None,
            "ParentID": "", "Payload": None, "Periodic": None, "Priority": spec["Priority"], "Region": self.region,
            "Stable": True, "Status": self.job_status(job), "StatusDescription": "", "Stop": False,
            "SubmitTime": job["SubmitTime"], "TaskGroups": [group], "Type": spec["Type"],
            "Update": {"AutoRevert": False, "Canary": 0, "HealthCheck": "", "HealthyDeadline": 0, "MaxParallel": 0,
                       "MinHealthyTime": 0, "Stagger": 0},
            "VaultToken": "", "Version": job["Version"],
        }

    def task_state(self, a: dict[str, Any]) -> dict[str, Any]:
        state = "running" if a["ClientStatus"] == "running" else "pending" if a["ClientStatus"] == "pending" else "dead"
        return {"Events": a["Events"], "Failed": a["ClientStatus"] == "failed",
                "FinishedAt": rfc3339(a["FinishedAt"]), "LastRestart": ZERO_TIME, "Restarts": 0,
                "StartedAt": rfc3339(a["StartedAt"]), "State": state, "TaskHandle": None}

    def alloc_stub(self, a: dict[str, Any]) -> dict[str, Any]:
        return {
            "ClientDescription": a["ClientDescription"], "ClientStatus": a["ClientStatus"],
            "CreateIndex": a["CreateIndex"], "CreateTime": a["CreateTime"],
            "DeploymentStatus": {"Canary": False, "Healthy": a["ClientStatus"] == "running",
                                 "ModifyIndex": a["ModifyIndex"], "Timestamp": rfc3339(a["StartedAt"])},
            "DesiredDescription": a["DesiredDescription"], "DesiredStatus": a["DesiredStatus"],
            "DesiredTransition": dict(a["DesiredTransition"]), "EvalID": a["EvalID"], "FollowupEvalID": "",
            "ID": a["ID"], "JobID": a["JobID"], "JobType": a["JobType"], "JobVersion": a["JobVersion"],
            "ModifyIndex": a["ModifyIndex"], "ModifyTime": a["ModifyTime"], "Name": a["Name"],
            "Namespace": a["Namespace"], "NextAllocation": a["NextAllocation"], "NodeID": a["NodeID"],
            "NodeName": a["NodeName"], "PreemptedAllocations": None, "PreemptedByAllocation": "",
            "PreviousAllocation": a["PreviousAllocation"], "RescheduleTracker": None, "TaskGroup": a["TaskGroup"],
            "TaskStates": {a["Task"]: self.task_state(a)},
        }

    def alloc_full(self, a: dict[str, Any]) -> dict[str, Any]:
        job = self.state["jobs"].get(a["JobID"])
        node = self.state["nodes"].get(a["NodeID"]) or {}
        ip = (node.get("Attributes") or {}).get("unique.network.ip-address", "")
        net = [{"CIDR": "", "Device": "eth0", "DynamicPorts": [{"Label": "http", "Value": 20000 + a["Slot"]}],
                "IP": ip, "MBits": 10, "Mode": "host", "ReservedPorts": None}]
        res = {"CPU": 4000, "DiskMB": 300, "MemoryMB": 8192, "Networks": net}
        full = self.alloc_stub(a)
        full.update({
            "AllocModifyIndex": a["AllocModifyIndex"], "DeploymentID": "",
            "Job": self.job_full(job) if job else None,
            "Metrics": {"AllocationTime": 81234, "ClassExhausted": None, "ClassFiltered": None,
                        "CoalescedFailures": 0, "ConstraintFiltered": None, "DimensionExhausted": None,
                        "NodesAvailable": {node.get("Datacenter", ""): len(self.state["nodes"])},
                        "NodesEvaluated": len(self.state["nodes"]), "NodesExhausted": 0, "NodesFiltered": 0,
                        "NodesInPool": len(self.state["nodes"]), "QuotaExhausted": None,
                        "Scores": {f"{a['NodeID']}.binpack": 0.5}},
            "Resources": res, "SharedResources": {"CPU": 0, "DiskMB": 300, "MemoryMB": 0, "Networks": None},
            "TaskResources": {a["Task"]: dict(res, DiskMB=0)},
        })
        return full

    def node_stub(self, n: dict[str, Any], with_os: bool) -> dict[str, Any]:
        attrs = n.get("Attributes") or {}
        stub = {
            "Address": attrs.get("unique.network.ip-address", ""), "CreateIndex": n["CreateIndex"],
            "Datacenter": n["Datacenter"], "Drain": n["Drain"], "Drivers": n["Drivers"], "ID": n["ID"],
            "LastDrain": n["LastDrain"], "ModifyIndex": n["ModifyIndex"], "Name": n["Name"],
            "NodeClass": n["NodeClass"], "NodePool": n.get("NodePool", "default"),
            "SchedulingEligibility": n["SchedulingEligibility"], "Status": n["Status"],
            "StatusDescription": n["StatusDescription"], "Version": attrs.get("nomad.version", VERSION),
        }
        if with_os:
            stub["Attributes"] = {"os.name": attrs.get("os.name", "")}
        return stub


# --------------------------------------------------------------------------- server

class Server:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name, self.ip = cfg["name"], cfg["ip"]
        self.region, self.dc = cfg.get("region", "global"), cfg.get("datacenter", "cern")
        self.token = cfg["tokens"]["nomad"]
        self.tls = base.Tls.from_config(cfg["tls"])
        self.check = token_check(self.token)
        self.peers = [base.Peer(id=m["nomad_id"], name=m["name"], address=f"{m['ip']}:{RPC_PORT}")
                      for m in cfg["masters"]]
        self.me = next(p for p in self.peers if p.name == self.name)
        self.jobs = [job_spec(j, self.dc) for j in cfg.get("jobs") or []]
        self.data_dir = cfg.get("data_dir") or os.path.join(cfg.get("build_dir", "/build"), "nomad", "server")
        self.lock = threading.RLock()
        self.sync_lock = threading.Lock()
        self.state = self._load()
        self.persisted_index = self.state["index"]
        self.heartbeats: dict[str, float] = {}  # the leader's timers: node ID -> time of the last heartbeat
        self.synced_term = -1
        self.times_leader = 0
        self.election = base.Election(self.me, self.peers, self.tls, lambda p: f"https://{p.address}/internal/election",
                                      self._state_for_push, self._adopt)
        self.api = base.Router()
        self.rpc = base.Router()
        self._routes()

    # --- state, election, persistence
    def _load(self) -> dict[str, Any]:
        try:
            state = base.load_json(os.path.join(self.data_dir, "state.json"))
            if isinstance(state, dict) and "index" in state:
                return dict(empty_state(), **state)
        except (OSError, ValueError):
            pass
        return empty_state()

    def _persist(self) -> None:
        with self.lock:
            if self.state["index"] == self.persisted_index:
                return
            text, index = json.dumps(self.state), self.state["index"]
        os.makedirs(self.data_dir, exist_ok=True)
        tmp = os.path.join(self.data_dir, "state.json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(self.data_dir, "state.json"))
        self.persisted_index = index

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            copy: dict[str, Any] = json.loads(json.dumps(self.state))
            return copy

    def _state_for_push(self) -> dict[str, Any]:
        self.ensure_synced()
        return self.snapshot()

    def _adopt(self, state: Any) -> None:
        # Called by the election with its lock held: must not call back into it.
        if isinstance(state, dict) and "index" in state:
            with self.lock:
                self.state = state

    def ensure_synced(self) -> None:
        """On taking leadership, start from the most recent state any reachable server holds, as raft
        only elects a server whose log is up to date; and give every node a fresh heartbeat timer."""
        with self.sync_lock:
            term = self.election.term
            if self.synced_term == term or self.election.leader_id != self.me.id:
                return
            best: dict[str, Any] | None = None
            for p in self.election.peers:
                status, reply = base.call(f"https://{p.address}/internal/state", self.tls, timeout=1.0)
                if status == 200 and isinstance(reply, dict) and reply.get("index", 0) > (best or {}).get("index", 0):
                    best = reply
            with self.lock:
                if best is not None and best["index"] > self.state["index"]:
                    self.state = dict(empty_state(), **best)
                now = time.monotonic()
                self.heartbeats = {nid: now for nid in self.state["nodes"]}
            self.synced_term = term
            self.times_leader += 1
            log(f"{self.name} is the leader (term {term})")

    def cluster(self) -> Cluster:
        return Cluster(self.state, self.jobs, self.region)

    def _leader_tick(self) -> None:
        if self.election.is_leader():
            self.ensure_synced()
            with self.lock:
                self.cluster().reconcile(self.heartbeats)

    def start(self) -> None:
        base.serve(self.ip, HTTP_PORT, self.api, self.tls, self.check, name="nomad")
        base.serve(self.ip, RPC_PORT, self.rpc, self.tls, self.check, name="nomad-rpc")
        self.election.run()
        every("leader", LEADER_LOOP_S, self._leader_tick)
        every("persist", 1.0, self._persist)
        log(f"server {self.name} on {self.ip}:{HTTP_PORT}/{RPC_PORT}")

    # --- request plumbing
    def _headers(self, index: int, leader: base.Peer | None) -> dict[str, str]:
        if leader is None or leader.id == self.me.id:
            contact = "0"
        else:
            contact = str(int(max(0.0, time.monotonic() - self.election.last_heard) * 1000))
        return {"X-Nomad-Index": str(index), "X-Nomad-KnownLeader": "true" if leader else "false",
                "X-Nomad-LastContact": contact}

    def _block(self, req: base.Request) -> None:
        """Blocking queries: wait until the state moves past ?index= (or ?wait= elapses)."""
        if "index" not in req.query:
            return
        target = int(req.query["index"] or 0)
        deadline = time.monotonic() + min(parse_duration(req.query.get("wait", ""), 300.0), 600.0)
        while time.monotonic() < deadline:
            with self.lock:
                if self.state["index"] > target:
                    return
            time.sleep(0.05)

    def query(self, req: base.Request, produce: Callable[[Cluster], Any]) -> base.Response:
        """A read: as in Nomad, a follower forwards it to the leader unless ?stale, which reads this
        server's own copy of the state (up to a tick behind)."""
        leader = self.election.leader()
        if leader is None and not req.flag("stale"):
            return base.error(500, NO_LEADER)
        if leader is not None and leader.id != self.me.id and not req.flag("stale"):
            return self.forward(req)
        self._block(req)
        with self.lock:
            body = produce(self.cluster())
            index = self.state["index"]
            if isinstance(body, base.Response):
                return body
            raw = json.dumps(body).encode()  # serialised under the lock: the state moves on meanwhile
        return base.Response(raw=raw, headers=self._headers(index, leader))

    def write(self, req: base.Request, apply: Callable[[Cluster], base.Response]) -> base.Response:
        """A write: applied by the leader; a follower forwards it there."""
        if not self.election.is_leader():
            return self.forward(req)
        self.ensure_synced()
        with self.lock:
            resp = apply(self.cluster())
            index = self.state["index"]
        resp.headers.update(self._headers(index, self.me))
        return resp

    def forward(self, req: base.Request, path: str = "/internal/forward") -> base.Response:
        leader = self.election.leader()
        hops = int(req.headers.get(HOPS_HEADER, "0") or 0)
        if leader is None or leader.id == self.me.id or hops >= 3:
            return base.error(500, NO_LEADER)
        status, reply = base.call(f"https://{leader.address}{path}", self.tls, "POST", request_to_json(req, hops + 1),
                                  timeout=5.0)
        if status == 200 and isinstance(reply, dict) and "status" in reply:
            return response_from_json(reply)
        return base.error(500, f"rpc error: {NO_LEADER}")

    # --- routes
    def _routes(self) -> None:
        api, rpc = self.api, self.rpc

        @rpc.route("POST", "/internal/election", acl=False)
        def election(req: base.Request) -> base.Response:
            return base.Response(body=self.election.on_message(req.json()))

        @rpc.route("GET", "/internal/state", acl=False)
        def state(req: base.Request) -> base.Response:
            return base.Response(body=self.snapshot())

        @rpc.route("POST", "/internal/forward", acl=False)  # the forwarded request carries its own token
        def forwarded(req: base.Request) -> base.Response:
            return base.Response(body=response_to_json(dispatch(self.api, request_from_json(req.json()), self.check)))

        @rpc.route("POST", "/internal/node/register")
        @rpc.route("POST", "/internal/node/heartbeat")
        def heartbeat(req: base.Request) -> base.Response:
            if not self.election.is_leader():
                leader = self.election.leader()
                if leader is None:
                    return base.error(500, NO_LEADER)
                status, reply = base.call(f"https://{leader.address}{req.path}", self.tls, "POST", req.json(),
                                          headers={"X-Nomad-Token": self.token}, timeout=2.0)
                return base.Response(body=reply) if status == 200 else base.error(500, NO_LEADER)
            self.ensure_synced()
            info = req.json()
            with self.lock:
                cl = self.cluster()
                cl.upsert_node(info)
                self.heartbeats[info["ID"]] = time.monotonic()
                running = [{"ID": a["ID"], "JobID": a["JobID"], "Name": a["Name"], "TaskGroup": a["TaskGroup"],
                            "ClientStatus": a["ClientStatus"], "CreateIndex": a["CreateIndex"]}
                           for a in self.state["allocs"].values() if a["NodeID"] == info["ID"] and is_active(a)]
            return base.Response(body={"HeartbeatTTL": int(HEARTBEAT_TTL_S * 1e9), "Allocs": running,
                                       "LeaderRPCAddr": self.me.address,
                                       "Servers": [p.address for p in self.election.all_peers()]})

        @api.route("GET", "/v1/status/leader", acl=False)
        def status_leader(req: base.Request) -> base.Response:
            leader = self.election.leader()
            return base.Response(body=leader.address if leader else "")

        @api.route("GET", "/v1/status/peers", acl=False)
        def status_peers(req: base.Request) -> base.Response:
            return base.Response(body=[p.address for p in self.election.all_peers()])

        @api.route("GET", "/v1/regions")
        def regions(req: base.Request) -> base.Response:
            return base.Response(body=[self.region])

        @api.route("GET", "/v1/agent/health", acl=False)
        def health(req: base.Request) -> base.Response:
            if req.query.get("type") == "client":
                return base.Response(status=500, body={"client": {"ok": False, "message": "client not enabled"}})
            if self.election.leader() is None:
                return base.Response(status=500, body={"server": {"ok": False, "message": "no leader"}})
            return base.Response(body={"server": {"ok": True, "message": "ok"}})

        @api.route("GET", "/v1/agent/members")
        def members(req: base.Request) -> base.Response:
            return base.Response(body={"ServerName": self.name, "ServerRegion": self.region, "ServerDC": self.dc,
                                       "Members": [self._member(p) for p in self.election.all_peers()]})

        @api.route("GET", "/v1/agent/servers")
        def servers(req: base.Request) -> base.Response:
            return base.Response(body=[p.address for p in self.election.all_peers()])

        @api.route("GET", "/v1/agent/self")
        def agent_self(req: base.Request) -> base.Response:
            return base.Response(body={"config": agent_config(self.cfg, server=True), "member": self._member(self.me),
                                       "stats": self._stats()})

        @api.route("GET", "/v1/metrics", acl=False)  # Nomad documents no ACL for metrics
        def metrics(req: base.Request) -> base.Response:
            return metrics_response(req, self._gauges())

        @api.route("GET", "/v1/nodes")
        def nodes(req: base.Request) -> base.Response:
            prefix, with_os = req.query.get("prefix", ""), req.flag("os")
            return self.query(req, lambda cl: [cl.node_stub(n, with_os) for n in sorted(
                cl.state["nodes"].values(), key=lambda n: n["ID"]) if n["ID"].startswith(prefix)])

        @api.route("GET", "/v1/node/{node_id}")
        def node(req: base.Request) -> base.Response:
            nid = req.params["node_id"]
            return self.query(req, lambda cl: cl.state["nodes"].get(nid) or base.error(404, "node not found"))

        @api.route("GET", "/v1/node/{node_id}/allocations")
        def node_allocs(req: base.Request) -> base.Response:
            nid = req.params["node_id"]
            return self.query(req, lambda cl: [cl.alloc_full(a) for a in sorted(
                cl.state["allocs"].values(), key=lambda a: a["CreateIndex"]) if a["NodeID"] == nid])

        @api.route("PUT|POST", "/v1/node/{node_id}/drain")
        def drain(req: base.Request) -> base.Response:
            body = req.json() or {}
            accessor = str(uuid.uuid5(uuid.NAMESPACE_OID, base.bearer_token(req, "x-nomad-token")))
            return self.write(req, lambda cl: self._drain(cl, req.params["node_id"], body, accessor))

        @api.route("PUT|POST", "/v1/node/{node_id}/eligibility")
        def eligibility(req: base.Request) -> base.Response:
            body = req.json() or {}
            return self.write(req, lambda cl: self._eligibility(cl, req.params["node_id"], body))

        @api.route("PUT|POST", "/v1/node/{node_id}/purge")
        def purge(req: base.Request) -> base.Response:
            return self.write(req, lambda cl: self._purge(cl, req.params["node_id"]))

        @api.route("GET", "/v1/operator/raft/configuration")
        def raft_configuration(req: base.Request) -> base.Response:
            leader = self.election.leader()
            servers = [{"Address": p.address, "ID": p.id, "Leader": bool(leader and leader.id == p.id),
                        "Node": f"{p.name}.{self.region}", "RaftProtocol": "3", "Voter": True}
                       for p in self.election.all_peers()]
            return self.query(req, lambda cl: {"Index": cl.state["index"], "Servers": servers})

        @api.route("PUT|POST", "/v1/operator/raft/transfer-leadership")
        def transfer(req: base.Request) -> base.Response:
            return self._transfer(req)

        @api.route("GET", "/v1/jobs")
        def jobs(req: base.Request) -> base.Response:
            prefix = req.query.get("prefix", "")
            return self.query(req, lambda cl: [cl.job_stub(j) for _, j in sorted(cl.state["jobs"].items())
                                               if j["Spec"]["ID"].startswith(prefix)])

        @api.route("GET", "/v1/job/{job_id}")
        def job(req: base.Request) -> base.Response:
            jid = req.params["job_id"]
            return self.query(req, lambda cl: cl.job_full(cl.state["jobs"][jid]) if jid in cl.state["jobs"]
                              else base.error(404, "job not found"))

        @api.route("GET", "/v1/job/{job_id}/summary")
        def job_summary(req: base.Request) -> base.Response:
            jid = req.params["job_id"]
            return self.query(req, lambda cl: cl.summary(cl.state["jobs"][jid]) if jid in cl.state["jobs"]
                              else base.error(404, "job not found"))

        @api.route("GET", "/v1/job/{job_id}/allocations")
        def job_allocs(req: base.Request) -> base.Response:
            jid = req.params["job_id"]
            return self.query(req, lambda cl: [cl.alloc_stub(a) for a in sorted(
                cl.state["allocs"].values(), key=lambda a: a["CreateIndex"]) if a["JobID"] == jid])

        @api.route("GET", "/v1/allocations")
        def allocations(req: base.Request) -> base.Response:
            prefix = req.query.get("prefix", "")
            return self.query(req, lambda cl: [cl.alloc_stub(a) for a in sorted(
                cl.state["allocs"].values(), key=lambda a: a["CreateIndex"]) if a["ID"].startswith(prefix)])

        @api.route("GET", "/v1/allocation/{alloc_id}")
        def allocation(req: base.Request) -> base.Response:
            aid = req.params["alloc_id"]
            return self.query(req, lambda cl: cl.alloc_full(cl.state["allocs"][aid]) if aid in cl.state["allocs"]
                              else base.error(404, "alloc not found"))

    # --- writes
    @staticmethod
    def _update_response(index: int) -> base.Response:
        return base.Response(body={"EvalCreateIndex": 0, "EvalIDs": None, "Index": index, "NodeModifyIndex": index})

    def _drain(self, cl: Cluster, node_id: str, body: dict[str, Any], accessor: str) -> base.Response:
        node = cl.state["nodes"].get(node_id)
        if node is None:
            return base.error(404, "node not found")
        spec, now = body.get("DrainSpec"), time.time_ns()
        idx = cl.bump()
        if spec:
            deadline = int(spec.get("Deadline", 0))
            # Deadline > 0: force at now+deadline; 0: no deadline; < 0: force at once (Nomad's DrainSpec rules).
            force_ns = None if deadline == 0 else now + max(deadline, 0)
            node.update(Drain=True, SchedulingEligibility="ineligible", ModifyIndex=idx, DrainStrategy={
                "Deadline": deadline, "IgnoreSystemJobs": bool(spec.get("IgnoreSystemJobs", False)),
                "ForceDeadline": rfc3339(now + deadline) if deadline > 0 else ZERO_TIME, "StartedAt": rfc3339(now)})
            node["LastDrain"] = {"AccessorID": accessor, "Meta": body.get("Meta") or {}, "StartedAt": rfc3339(now),
                                 "Status": "draining", "UpdatedAt": rfc3339(now)}
            cl.state["drains"][node_id] = {"force_ns": force_ns}
            cl.node_event(node, "Node drain strategy set", "Drain", idx)
        else:
            if node["Drain"]:
                node.update(Drain=False, DrainStrategy=None)
                if node.get("LastDrain"):
                    node["LastDrain"].update(Status="canceled", UpdatedAt=rfc3339(now))
                cl.state["drains"].pop(node_id, None)
                cl.node_event(node, "Node drain disabled", "Drain", idx)
            if body.get("MarkEligible"):
                node["SchedulingEligibility"] = "eligible"
                cl.node_event(node, "Node marked as eligible for scheduling", "Cluster", idx)
            node["ModifyIndex"] = idx
        return self._update_response(idx)

    def _eligibility(self, cl: Cluster, node_id: str, body: dict[str, Any]) -> base.Response:
        wanted = body.get("Eligibility")
        if wanted not in ("eligible", "ineligible"):
            return base.error(400, f"invalid scheduling eligibility {wanted!r}")
        node = cl.state["nodes"].get(node_id)
        if node is None:
            return base.error(404, "node not found")
        if node["DrainStrategy"] is not None and wanted == "eligible":
            # Nomad's RPC refuses this with a plain error, which the HTTP layer turns into a 500.
            return base.error(500, "can not set node's scheduling eligibility to eligible while it is draining")
        idx = cl.bump()
        if node["SchedulingEligibility"] != wanted:
            node["SchedulingEligibility"] = wanted
            cl.node_event(node, f"Node marked as {wanted} for scheduling", "Cluster", idx)
        node["ModifyIndex"] = idx
        return self._update_response(idx)

    def _purge(self, cl: Cluster, node_id: str) -> base.Response:
        """`nomad node purge`: the node and its allocations leave the state (a deleted machine)."""
        if cl.state["nodes"].pop(node_id, None) is None:
            return base.error(404, "node not found")
        for aid in [aid for aid, a in cl.state["allocs"].items() if a["NodeID"] == node_id]:
            del cl.state["allocs"][aid]
        idx = cl.bump()
        return base.Response(body={"EvalIDs": [], "EvalCreateIndex": 0, "NodeModifyIndex": idx},
                             headers={"X-Nomad-Index": str(idx)})

    def _transfer(self, req: base.Request) -> base.Response:
        pid, addr = req.query.get("id"), req.query.get("address")
        if pid is None and addr is None:
            return base.error(400, "must specify id or address")
        if pid is not None and addr is not None:
            return base.error(400, "must specify either id or address")
        if not (pid or addr):
            return base.error(400, f"{'id' if pid is not None else 'address'} must be non-empty")
        target = next((p for p in self.election.all_peers() if p.id == pid or p.address == addr), None)
        if target is None:
            what = f'id "{pid}"' if pid else f'address "{addr}"'
            return base.error(400, f"{what} was not found in the Raft configuration")
        if not self.election.is_leader():
            return self.forward(req)
        me = {"Address": self.me.address, "ID": self.me.id}
        to = {"Address": target.address, "ID": target.id}
        if target.id == self.me.id:
            return base.Response(body={"From": me, "To": to, "Noop": True, "Err": None})
        if not self.election.transfer_to(target):
            return base.error(500, f"failed to transfer leadership to {target.address}")
        log(f"leadership transferred to {target.name}")
        return base.Response(body={"From": me, "To": to, "Noop": False, "Err": None})

    # --- agent views
    def _member(self, p: base.Peer) -> dict[str, Any]:
        ip = p.address.rsplit(":", 1)[0]
        alive = p.id == self.me.id or self.election.alive.get(p.id, False)
        return {
            "Name": f"{p.name}.{self.region}", "Addr": ip, "Port": SERF_PORT,
            "Tags": {"role": "nomad", "region": self.region, "dc": self.dc, "build": VERSION, "revision": REVISION,
                     "port": str(RPC_PORT), "expect": str(len(self.peers)), "vsn": "1", "mvn": "1",
                     "raft_vsn": "3", "id": p.id, "rpc_addr": ip},
            "Status": "alive" if alive else "failed",
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2, "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
        }

    def _stats(self) -> dict[str, dict[str, str]]:
        leader = self.election.leader()
        leading = bool(leader and leader.id == self.me.id)
        with self.lock:
            index = str(self.state["index"])
        term = str(self.election.term)
        contact = "0" if leading else ("never" if not leader else
                                       f"{(time.monotonic() - self.election.last_heard) * 1000:.3f}ms")
        peers_conf = " ".join(f"{{Suffrage:Voter ID:{p.id} Address:{p.address}}}" for p in self.election.all_peers())
        alive = sum(1 for v in self.election.alive.values() if v)
        return {
            "runtime": runtime_stats(),
            "nomad": {"server": "true", "leader": str(leading).lower(), "leader_addr": leader.address if leader else "",
                      "bootstrap": "false", "known_regions": "1"},
            "raft": {"applied_index": index, "commit_index": index, "fsm_pending": "0", "last_contact": contact,
                     "last_log_index": index, "last_log_term": term, "last_snapshot_index": "0",
                     "last_snapshot_term": "0", "latest_configuration": f"[{peers_conf}]",
                     "latest_configuration_index": "1", "num_peers": str(len(self.peers) - 1),
                     "protocol_version": "3", "protocol_version_max": "3", "protocol_version_min": "0",
                     "snapshot_version_max": "1", "snapshot_version_min": "0",
                     "state": "Leader" if leading else "Follower", "term": term},
            "serf": {"encrypted": "true", "event_queue": "0", "event_time": "1",
                     "failed": str(len(self.peers) - 1 - alive),
                     "health_score": "0", "intent_queue": "0", "left": "0", "member_time": "1",
                     "members": str(len(self.peers)), "query_queue": "0", "query_time": "1"},
        }

    def _gauges(self) -> list[tuple[str, dict[str, str], float]]:
        leading = self.election.is_leader()
        host = {"host": self.name}
        gauges: list[tuple[str, dict[str, str], float]] = [
            ("nomad_raft_state_leader", host, 1.0 if leading else 0.0),
            ("nomad_raft_peers", host, float(len(self.peers))),
            ("nomad_runtime_num_goroutines", host, float(threading.active_count())),
        ]
        with self.lock:
            cl = self.cluster()
            active = sum(1 for n in cl.state["nodes"].values() if n["Status"] == "ready")
            gauges.append(("nomad_nomad_heartbeat_active", host, float(active) if leading else 0.0))
            if leading:  # as in Nomad, only the leader publishes job summaries
                for jid, job in sorted(cl.state["jobs"].items()):
                    for group, s in cl.summary(job)["Summary"].items():
                        labels = dict(host, job=jid, task_group=group, namespace="default")
                        for key in ("Running", "Queued", "Complete", "Failed", "Lost", "Starting"):
                            gauges.append((f"nomad_nomad_job_summary_{key.lower()}", labels, float(s[key])))
        return gauges


# --------------------------------------------------------------------------- client

def _os_release() -> tuple[str, str]:
    values: dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            for line in fh:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    values[k] = v.strip('"')
    except OSError:
        pass
    return values.get("ID", "linux"), values.get("VERSION_ID", "")


def _volume_of(path: str) -> str:
    """The device mounted where `path` lives (Nomad's unique.storage.volume)."""
    real, best, device = os.path.realpath(path), "", "unknown"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                mount, source = left.split()[4], [*right.split(), "", ""][1]
                if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, device = mount, source
    except (OSError, IndexError):
        pass
    return device


def _mem_total() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class Client:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name, self.ip = cfg["name"], cfg["ip"]
        self.node_id = cfg["nomad_node_id"]
        self.dc = cfg.get("datacenter", "cern")
        self.token = cfg["tokens"]["nomad"]
        self.consul_token = cfg.get("tokens", {}).get("consul", "")
        self.build_dir = cfg.get("build_dir", "/build")
        self.tls = base.Tls.from_config(cfg["tls"])
        self.check = token_check(self.token)
        self.masters = [m["ip"] for m in cfg.get("masters", [])]
        self.preferred = 0  # index in masters of the server that answered last
        self.allocs: list[dict[str, Any]] = []
        self.last_ok = 0.0
        self.known_servers: list[str] = []
        self.registered_allocs: set[str] = set()
        self.started = time.time_ns()
        self.api = base.Router()
        self._routes()

    def storage(self) -> tuple[int, int]:
        st = os.statvfs(self.build_dir)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def node_info(self) -> dict[str, Any]:
        u = os.uname()
        free, total = self.storage()
        os_id, os_version = _os_release()
        cores = os.cpu_count() or 1
        mem = _mem_total()
        updated = rfc3339(self.started)
        attrs = {
            "cpu.arch": _arch(), "cpu.numcores": str(cores), "cpu.totalcompute": str(cores * 2000),
            "cpu.frequency": "2000", "driver.docker": "1", "driver.docker.version": "20.10.24+dfsg1",
            "driver.docker.os_type": "linux", "driver.docker.runtimes": "io.containerd.runc.v2,runc",
            "driver.docker.volumes.enabled": "true", "kernel.name": u.sysname.lower(), "kernel.version": u.release,
            "kernel.arch": u.machine, "memory.totalbytes": str(mem), "nomad.version": VERSION,
            "nomad.revision": REVISION, "nomad.advertise.address": f"{self.ip}:{HTTP_PORT}", "os.name": os_id,
            "os.version": os_version, "os.signals": "SIGHUP,SIGINT,SIGKILL,SIGTERM,SIGUSR1,SIGUSR2",
            "unique.hostname": self.name, "unique.network.ip-address": self.ip,
            "unique.advertise.address": f"{self.ip}:{HTTP_PORT}", "unique.cgroup.mountpoint": "/sys/fs/cgroup",
            "unique.consul.name": self.name, "unique.storage.bytesfree": str(free),
            "unique.storage.bytestotal": str(total), "unique.storage.volume": _volume_of(self.build_dir),
            "consul.datacenter": self.dc, "consul.version": "1.20.5", "consul.server": "false",
        }
        docker_attrs = {k: v for k, v in attrs.items() if k.startswith("driver.docker")}
        return {
            "ID": self.node_id, "Name": self.name, "Datacenter": self.dc, "NodeClass": "", "NodePool": "default",
            "HTTPAddr": f"{self.ip}:{HTTP_PORT}", "TLSEnabled": True, "Attributes": attrs,
            "Meta": {"allow_compilation": "true"}, "ComputedClass": "v1:8391032176120513345",
            "Drivers": {
                "docker": {"Attributes": docker_attrs, "Detected": True, "HealthDescription": "Healthy",
                           "Healthy": True, "UpdateTime": updated},
                "exec": {"Attributes": {"driver.exec": "true"}, "Detected": True, "HealthDescription": "Healthy",
                         "Healthy": True, "UpdateTime": updated},
                "raw_exec": {"Attributes": {}, "Detected": False, "HealthDescription": "disabled",
                             "Healthy": False, "UpdateTime": updated},
            },
            "HostVolumes": {}, "HostNetworks": {}, "Links": {"consul": f"{self.dc}.{self.name}"},
            "NodeResources": {
                "Cpu": {"CpuShares": cores * 2000, "TotalCpuCores": cores,
                        "ReservableCpuCores": list(range(cores))},
                "Devices": [], "Disk": {"DiskMB": free // (1 << 20)}, "Memory": {"MemoryMB": mem // (1 << 20)},
                "Networks": [{"CIDR": f"{self.ip}/32", "Device": "eth0", "DynamicPorts": None, "IP": self.ip,
                              "MBits": 1000, "Mode": "", "ReservedPorts": None}],
                "NodeNetworks": [{"Addresses": [{"Address": self.ip, "Alias": "default", "Family": "ipv4",
                                                 "Gateway": "", "ReservedPorts": ""}],
                                  "Device": "eth0", "MacAddress": "02:42:ac:1e:00:02", "Mode": "host"}],
                "MinDynamicPort": 20000, "MaxDynamicPort": 32000,
            },
            "ReservedResources": {"Cpu": {"CpuShares": 0}, "Disk": {"DiskMB": 0}, "Memory": {"MemoryMB": 0},
                                  "Networks": {"ReservedHostPorts": ""}},
        }

    def _ordered_masters(self) -> list[int]:
        n = len(self.masters)
        return [(self.preferred + i) % n for i in range(n)]

    def rpc(self, path: str, body: Any, timeout: float) -> Any:
        """One call to the servers' RPC port, trying each master; None when none answers."""
        for i in self._ordered_masters():
            status, reply = base.call(f"https://{self.masters[i]}:{RPC_PORT}{path}", self.tls, "POST", body,
                                      headers={"X-Nomad-Token": self.token}, timeout=timeout)
            if status == 200:
                self.preferred = i
                return reply
        return None

    def heartbeat(self) -> None:
        reply = self.rpc("/internal/node/heartbeat", self.node_info(), timeout=1.5)
        if isinstance(reply, dict):
            self.allocs = list(reply.get("Allocs") or [])
            self.known_servers = list(reply.get("Servers") or [])
            self.last_ok = time.monotonic()

    # --- Consul, as Nomad clients sync their services
    def _consul(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        for ip in self.masters:
            status, reply = base.call(f"https://{ip}:8500{path}", self.tls, method, body,
                                      headers={"X-Consul-Token": self.consul_token}, timeout=2.0)
            if status == 200:
                return status, reply
        return 0, None

    def consul_sync(self) -> None:
        short = self.node_id[:8]
        svc_id = f"_nomad-client-{short}"
        common = {"Node": self.name, "Address": self.ip, "Datacenter": self.dc}
        self._consul("PUT", "/v1/catalog/register", dict(common, Service={
            "ID": svc_id, "Service": "nomad-client", "Port": HTTP_PORT, "Tags": ["http"]}, Check={
            "CheckID": "nomad-client-health", "Name": "Nomad Client HTTP Check", "Status": "passing",
            "ServiceID": svc_id}))
        running = sorted((a for a in self.allocs if a.get("ClientStatus") == "running"),
                         key=lambda a: a.get("CreateIndex", 0))
        current: set[str] = set()
        for n, a in enumerate(running):
            sid = f"_nomad-task-{a['ID']}"
            status, _ = self._consul("PUT", "/v1/catalog/register", dict(common, Service={
                "ID": sid, "Service": a["JobID"], "Port": 8000 + n, "Tags": [a["TaskGroup"]]}, Check={
                "CheckID": f"_nomad-check-{a['ID']}", "Name": f"service: \"{a['JobID']}\" check",
                "Status": "passing", "ServiceID": sid}))
            if status == 200:
                current.add(sid)
        # Services of allocations that stopped (also those a previous run of this agent left behind).
        stale = set(self.registered_allocs)
        status, reply = self._consul("GET", f"/v1/catalog/node/{self.name}")
        if status == 200 and isinstance(reply, dict):
            stale |= {sid for sid in (reply.get("Services") or {}) if str(sid).startswith("_nomad-task-")}
        for sid in stale - current - {svc_id}:
            if self._consul("PUT", "/v1/catalog/deregister", dict(common, ServiceID=sid))[0] == 200:
                stale.discard(sid)
        self.registered_allocs = current | (stale - current - {svc_id})

    # --- API
    def start(self) -> None:
        base.serve(self.ip, HTTP_PORT, self.api, self.tls, self.check, name="nomad")
        every("heartbeat", HEARTBEAT_S, self.heartbeat)
        every("consul", CONSUL_SYNC_S, self.consul_sync)
        log(f"client {self.name} ({self.node_id}) on {self.ip}:{HTTP_PORT}")

    def _healthy(self) -> bool:
        return time.monotonic() - self.last_ok < HEARTBEAT_TTL_S

    def _routes(self) -> None:
        api = self.api

        @api.route("GET", "/v1/agent/health", acl=False)
        def health(req: base.Request) -> base.Response:
            if req.query.get("type") == "server":
                return base.Response(status=500, body={"server": {"ok": False, "message": "server not enabled"}})
            if not self._healthy():
                return base.Response(status=500, body={"client": {"ok": False, "message": "no known servers"}})
            return base.Response(body={"client": {"ok": True, "message": "ok"}})

        @api.route("GET", "/v1/agent/self")
        def agent_self(req: base.Request) -> base.Response:
            last = f"{time.monotonic() - self.last_ok:.6f}s" if self.last_ok else "never"
            return base.Response(body={
                "config": agent_config(self.cfg, server=False),  # no "member": clients are not in serf
                "stats": {
                    "client": {"heartbeat_ttl": f"{HEARTBEAT_TTL_S:.0f}s", "node_id": self.node_id,
                               "known_servers": ",".join(self.known_servers), "num_allocations": str(len(self.allocs)),
                               "last_heartbeat": last},
                    "runtime": runtime_stats(),
                },
            })

        @api.route("GET", "/v1/metrics", acl=False)
        def metrics(req: base.Request) -> base.Response:
            free, total = self.storage()
            labels = {"host": self.name, "node_id": self.node_id, "datacenter": self.dc, "node_class": "none",
                      "node_pool": "default", "node_status": "ready" if self._healthy() else "initializing"}
            disk = {"host": self.name, "disk": _volume_of(self.build_dir), "node_id": self.node_id}
            running = sum(1 for a in self.allocs if a.get("ClientStatus") == "running")
            return metrics_response(req, [
                ("nomad_client_allocations_running", labels, float(running)),
                ("nomad_client_allocations_pending", labels, 0.0),
                ("nomad_client_allocations_blocked", labels, 0.0),
                ("nomad_client_host_disk_size", disk, float(total)),
                ("nomad_client_host_disk_available", disk, float(free)),
                ("nomad_client_host_disk_used_percent", disk, 100.0 * (total - free) / total if total else 0.0),
                ("nomad_runtime_num_goroutines", {"host": self.name}, float(threading.active_count())),
            ])

        # Everything else goes to a server, as a Nomad client forwards API calls; the server checks the token.
        @api.route("GET|PUT|POST|DELETE", "/v1/{rest*}", acl=False)
        def forward(req: base.Request) -> base.Response:
            reply = self.rpc("/internal/forward", request_to_json(req, 0), timeout=5.0)
            if isinstance(reply, dict) and "status" in reply:
                return response_from_json(reply)
            return base.error(500, "no servers")


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cfg = base.load_json(args[0] if args else "/etc/alicelab/node.json")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent: Server | Client = Server(cfg) if cfg.get("role") == "master" else Client(cfg)
    agent.start()
    while not stop.wait(0.2):
        pass
    # A client leaves without deregistering: the servers notice the missed heartbeats, as with Nomad.
    log(f"{cfg['name']} stopping")
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
