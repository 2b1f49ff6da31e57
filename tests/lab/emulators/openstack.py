"""Keystone v3 and the Nova calls the suite makes, whose servers are the lab's Docker containers.

Run as `PYTHONPATH=/opt/alicelab python3 -m emulators.openstack /etc/alicelab/openstack.json` in a
container that has the host's Docker socket bind-mounted (standard library only: Debian's python3).

Config file:
```
{
  "bind": "172.30.0.6",                   # address both APIs listen on
  "public_host": "172.30.0.6",            # host put in the catalog and in links
  "tls": {"cert": "...", "key": "..."},   # or null for plain HTTP; no client certificates (as production)
  "users": [                               # names unique; the domain is always Default
    {"name": "alibuild-reader", "password": "...", "domain": "Default",
     "roles": [{"project": "ALICE Release Testing", "role": "reader"}]},   # (project, role) assignments
    {"name": "alibuild", "password": "...", "domain": "Default",
     "projects": ["ALICE Release Testing", "ALICE Release Testing - physical nodes"]}  # = role member on each
  ],
  "projects": [{"id": "<32 hex>", "name": "ALICE Release Testing"}, ...],
  "flavors": [{"id": "...", "name": "m2.large", "vcpus": 4, "ram": 7500, "disk": 40}, ...],
  "availability_zones": ["cern-geneva-a", "cern-geneva-b", "cern-geneva-c"],
  "lab_admin_secret": "...",               # X-Lab-Admin for the /lab/* endpoints
  "label": "alicelab.server",              # Docker label that makes a container a server
  # optional:
  "network": "alicelab",                   # Docker network whose address a server reports
  "ports": {"keystone": 5000, "nova": 8774},
  "docker_socket": "/var/run/docker.sock", # also env ALICELAB_DOCKER_SOCKET
  "stop_timeout": 10                       # seconds `docker stop` waits on os-stop / SOFT reboot
}
```
Users and roles (Keystone): `roles` lists role assignments, each `{"project": <a name of "projects">,
"role": <name>}`; the older `projects` key (a list of project names) still works and means the role `member` on
each; a user may have both. A project name that is not in "projects", a malformed assignment or a repeated user
name fails the start. Roles imply others as `keystone-manage bootstrap` links them (keystone/cmd/bootstrap.py:
admin implies manager implies member implies reader; before 2023.2, without `manager`, admin implied member); any
other role name is accepted (Keystone allows custom roles) and grants nothing in Nova. A project-scoped token
needs a role on its project (else 401, as for an unknown user or a wrong password) and lists the effective roles
in `token.roles`. Token validation (`GET|HEAD|DELETE /v3/auth/tokens`) is for the subject's own user or an admin
(else 403, keystone/common/policies/token.py).

Nova enforces its default policies (new defaults, enforced by default since 2023.1; see NOVA_POLICIES): reads
need `reader` on the server's project, server actions `member`, `admin` (on any project) may do anything. A token
lacking the role gets 403 `{"forbidden": {"code": 403, "message": "Policy doesn't allow <rule> to be
performed."}}`. Servers are filtered by the token's project: a server of another project is 404 and never listed
(an admin token sees every project's server by id, and lists them all with `?all_tenants`, which others may not).

A server is any container (running or not) carrying the label, whose value is JSON
`{"id", "name", "project", "flavor", "az", "image", "created", "metadata", "volumes": [{"id", "device", "size_gb"}]}`.
Lab-only overrides (`PATCH /lab/servers/<name>`, header `X-Lab-Admin`) are applied over the label and kept in
memory; `DELETE /lab/servers/<name>/override` clears them.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from . import base

MIN_VERSION = (2, 1)
MAX_VERSION = (2, 102)  # the newest shape the reference samples show (flavors 2.102)
TOKEN_TTL_S = 3600
DOCKER_API = "/v1.41"
_NS = uuid.UUID("6b1c1a0e-5b8e-4a77-9b3e-2f7d0c0a1ce5")  # stable ids for users, images, endpoints

# Keystone's default roles, linked as `keystone-manage bootstrap` links them (keystone/cmd/bootstrap.py,
# _bootstrap_member_role / _bootstrap_manager_role / _bootstrap_admin_role): admin implies manager implies
# member implies reader. A token lists the assigned roles and every role they imply.
IMPLIED_ROLES = {"admin": "manager", "manager": "member", "member": "reader"}

# Nova's default policy rules (nova/policies/base.py): ADMIN = rule:context_is_admin = "role:admin";
# PROJECT_MEMBER_OR_ADMIN = "(role:member and project_id:%(project_id)s) or rule:context_is_admin";
# PROJECT_READER_OR_ADMIN = the same with role:reader; RULE_ANY = "@".
ADMIN, PROJECT_MEMBER_OR_ADMIN, PROJECT_READER_OR_ADMIN, RULE_ANY = "admin", "member", "reader", "@"
NOVA_POLICIES: dict[str, str] = {
    # nova/policies/servers.py (SERVERS = "os_compute_api:servers:%s"), checked in
    # nova/api/openstack/compute/servers.py: index/detail before listing, the others after the server is found
    # (target: its project)
    "os_compute_api:servers:index": PROJECT_READER_OR_ADMIN,
    "os_compute_api:servers:detail": PROJECT_READER_OR_ADMIN,
    "os_compute_api:servers:index:get_all_tenants": ADMIN,
    "os_compute_api:servers:detail:get_all_tenants": ADMIN,
    "os_compute_api:servers:show": PROJECT_READER_OR_ADMIN,
    "os_compute_api:servers:reboot": PROJECT_MEMBER_OR_ADMIN,  # SOFT and HARD alike
    "os_compute_api:servers:rebuild": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:servers:start": PROJECT_MEMBER_OR_ADMIN,
    "os_compute_api:servers:stop": PROJECT_MEMBER_OR_ADMIN,
    # nova/policies/volumes_attachments.py, checked in nova/api/openstack/compute/volume_attachments.py index
    "os_compute_api:os-volumes-attachments:index": PROJECT_READER_OR_ADMIN,
    # nova/policies/flavor_extra_specs.py: flavors themselves have no rule (any project-scoped token,
    # nova/api/openstack/compute/flavors.py); this one is checked with fatal=False and only decides whether
    # flavors show `extra_specs` from 2.61 on
    "os_compute_api:os-flavor-extra-specs:index": PROJECT_READER_OR_ADMIN,
    # nova/policies/availability_zone.py
    "os_compute_api:os-availability-zone:list": RULE_ANY,
    "os_compute_api:os-availability-zone:detail": ADMIN,
}
# The server actions the emulator runs and the rule each needs.
ACTION_POLICIES = {
    "reboot_hard": "os_compute_api:servers:reboot",
    "reboot_soft": "os_compute_api:servers:reboot",
    "os-start": "os_compute_api:servers:start",
    "os-stop": "os_compute_api:servers:stop",
    "rebuild": "os_compute_api:servers:rebuild",
}


def effective_roles(assigned: list[str]) -> list[str]:
    """The assigned roles followed by those they imply, each once."""
    out: list[str] = []
    for role in assigned:
        r: str | None = role
        while r is not None and r not in out:
            out.append(r)
            r = IMPLIED_ROLES.get(r)
    return out


def _assignments(user: dict[str, Any], projects: list[str]) -> dict[str, list[str]]:
    """A configured user's assigned roles by project name: `projects` (member on each) and `roles`."""
    found: dict[str, list[str]] = {}
    pairs = [(p, "member") for p in user.get("projects") or []]
    for a in user.get("roles") or []:
        if not isinstance(a, dict) or not isinstance(a.get("project"), str) or not isinstance(a.get("role"), str):
            raise ValueError(f'user {user.get("name")}: a role assignment is {{"project": ..., "role": ...}}')
        pairs.append((a["project"], a["role"]))
    for project, role in pairs:
        if project not in projects:
            raise ValueError(f"user {user.get('name')}: no project {project!r} in the config's projects")
        if not role.strip():
            raise ValueError(f"user {user.get('name')}: an empty role name")
        roles = found.setdefault(project, [])
        if role not in roles:
            roles.append(role)
    return found


def _uid(kind: str, name: str) -> str:
    return uuid.uuid5(_NS, f"{kind}:{name}").hex


def _now() -> datetime:
    return datetime.now(UTC)


def _iso_z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_us(t: datetime) -> str:
    """Keystone and Nova's `*_at` fields carry microseconds."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except (ValueError, AttributeError):
        return datetime.fromtimestamp(0, UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# --- Docker Engine API over the unix socket


class DockerError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Docker:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def call(
        self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        url = DOCKER_API + path + ("?" + urlencode(query) if query else "")
        data = None if body is None else json.dumps(body).encode()
        conn = _UnixConnection(self.socket_path, timeout)
        try:
            conn.request(method, url, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
        except OSError as exc:
            raise DockerError(f"docker {method} {path}: {exc}") from exc
        finally:
            conn.close()
        try:
            return resp.status, (json.loads(raw) if raw else None)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def ok(
        self, method: str, path: str, query: dict[str, str] | None = None, body: Any = None, timeout: float = 10.0
    ) -> Any:
        """A call that must succeed (304 "already in that state" counts as success)."""
        status, reply = self.call(method, path, query, body, timeout)
        if status >= 300 and status != 304:
            msg = reply.get("message") if isinstance(reply, dict) else reply
            raise DockerError(f"docker {method} {path}: {status} {msg}")
        return reply


# --- state


@dataclass
class Server:
    id: str
    name: str
    label: dict[str, Any]  # the container's label with the lab override applied
    container_id: str
    state: str  # Docker's State ("running", "exited", ...), "gone" while a rebuild has no container
    ip: str
    mac: str
    launched: datetime


@dataclass
class Token:
    user: dict[str, Any]
    project: dict[str, Any] | None
    issued: datetime
    expires: datetime
    audit_id: str
    roles: tuple[str, ...] = ()  # effective roles on the project (none when unscoped)


@dataclass
class Task:
    kind: str  # reboot_hard | reboot_soft | stop | start | rebuild
    status: str
    vm_state: str
    task_state: str
    server: Server  # listed from here while a rebuild has removed the container


@dataclass
class Fault:
    message: str
    created: datetime
    server: Server
    inspect: dict[str, Any] | None = None  # the last container config, so a failed rebuild can be retried


@dataclass
class Ctx:
    token: Token | None
    mv: tuple[int, int] = MIN_VERSION


def _json_error(status: int, kind: str, message: str) -> base.Response:
    return base.Response(status=status, body={kind: {"code": status, "message": message}})


def _unauthorized(uri: str) -> base.Response:
    body = {
        "error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}
    }
    return base.Response(status=401, body=body, headers={"WWW-Authenticate": f'Keystone uri="{uri}"'})


class _ServerOnlyTls(base.Tls):
    """Production OpenStack is HTTPS without client certificates, unlike the cluster's own services."""

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


class OpenStack:
    def __init__(self, cfg: dict[str, Any], docker: Docker) -> None:
        self.cfg = cfg
        self.docker = docker
        self.label_key: str = cfg.get("label", "alicelab.server")
        self.network: str = cfg.get("network", "alicelab")
        ports = cfg.get("ports") or {}
        self.keystone_port = int(ports.get("keystone", 5000))
        self.nova_port = int(ports.get("nova", 8774))
        self.stop_timeout = int(cfg.get("stop_timeout", 10))
        scheme = "https" if cfg.get("tls") else "http"
        self.keystone_url = f"{scheme}://{cfg['public_host']}:{self.keystone_port}"
        self.nova_url = f"{scheme}://{cfg['public_host']}:{self.nova_port}"
        self.projects: list[dict[str, Any]] = cfg["projects"]
        self.flavors: list[dict[str, Any]] = cfg["flavors"]
        self.zones: list[str] = cfg["availability_zones"]
        names = [p["name"] for p in self.projects]
        self.users = [{**u, "id": _uid("user", u["name"]), "assignments": _assignments(u, names)} for u in cfg["users"]]
        if len({u["name"] for u in self.users}) != len(self.users):
            raise ValueError("user names must be unique (one domain: Default)")
        self.lock = threading.Lock()
        self.tokens: dict[str, Token] = {}
        self.tasks: dict[str, Task] = {}
        self.faults: dict[str, Fault] = {}
        self.updated: dict[str, datetime] = {}
        self.overrides: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, Server] = {}  # last view of each server: addresses of stopped containers

    # --- Docker → servers

    def servers(self) -> list[Server]:
        query = {"all": "1", "filters": json.dumps({"label": [self.label_key]})}
        items = self.docker.ok("GET", "/containers/json", query)
        found: dict[str, Server] = {}
        for c in items:
            server = self._server(c)
            if server is not None:
                found[server.id] = server
        with self.lock:
            for sid, s in found.items():
                self.seen[sid] = s
            # A server whose container is being (or failed to be) recreated still exists for Nova.
            for sid, task in self.tasks.items():
                found.setdefault(sid, self._overridden(task.server))
            for sid, fault in self.faults.items():
                found.setdefault(sid, self._overridden(fault.server))
        return sorted(found.values(), key=lambda s: (str(s.label.get("created", "")), s.id), reverse=True)

    def _overridden(self, s: Server) -> Server:
        label = {**s.label, **self.overrides.get(s.name, {})}
        return Server(s.id, s.name, label, s.container_id, "gone", s.ip, s.mac, s.launched)

    def _server(self, c: dict[str, Any]) -> Server | None:
        try:
            label = json.loads((c.get("Labels") or {})[self.label_key])
            sid, name = str(label["id"]), str(label["name"])
        except (KeyError, ValueError, TypeError):
            return None  # not a server the emulator can describe
        with self.lock:
            label = {**label, **self.overrides.get(name, {})}
            prev = self.seen.get(sid)
        ep = ((c.get("NetworkSettings") or {}).get("Networks") or {}).get(self.network) or {}
        ip = ep.get("IPAddress") or (ep.get("IPAMConfig") or {}).get("IPv4Address") or (prev.ip if prev else "")
        mac = ep.get("MacAddress") or (prev.mac if prev and prev.ip == ip else "") or _mac_of(ip)
        launched = datetime.fromtimestamp(int(c.get("Created") or 0), UTC)
        return Server(sid, name, label, c["Id"], str(c.get("State") or ""), ip, mac, launched)

    def project_servers(self, project_name: str) -> list[Server]:
        return [s for s in self.servers() if s.label.get("project") == project_name]

    def find(self, token: Token, sid: str) -> Server | None:
        """The server as Nova looks it up for this token: within the token's project (nova/db/main/api.py,
        model_query with project_only=True for a user context), any project's for an admin."""
        assert token.project is not None
        candidates = self.servers() if ADMIN in token.roles else self.project_servers(token.project["name"])
        return next((s for s in candidates if s.id == sid), None)

    def allowed(self, token: Token, rule: str, project_id: str | None = None) -> bool:
        """Whether Nova's default rule lets the token act on a target of this project (default: the token's
        own, as nova/policy.py's default_target)."""
        check = NOVA_POLICIES[rule]
        if check == RULE_ANY or ADMIN in token.roles:  # context_is_admin: role:admin, whatever the project
            return True
        if check == ADMIN or token.project is None:
            return False
        return check in token.roles and (project_id or token.project["id"]) == token.project["id"]

    def authorize(self, token: Token, rule: str, project_id: str | None = None) -> base.Response | None:
        """None when allowed, else Nova's 403 (nova/exception.py PolicyNotAuthorized, rendered by
        nova/api/openstack/wsgi.py Fault as {"forbidden": {"code", "message"}})."""
        if self.allowed(token, rule, project_id):
            return None
        return _json_error(403, "forbidden", f"Policy doesn't allow {rule} to be performed.")

    def server_project_id(self, s: Server) -> str:
        return self._project_id(str(s.label.get("project", "")))

    def status(self, s: Server) -> tuple[str, str, str | None, int]:
        """Nova's (status, vm_state, task_state, power_state) for a server."""
        power = {"running": 1, "restarting": 1, "paused": 3, "exited": 4, "created": 4}.get(s.state, 0)
        with self.lock:
            task, fault = self.tasks.get(s.id), self.faults.get(s.id)
        if task is not None:
            return task.status, task.vm_state, task.task_state, power
        if fault is not None:
            return "ERROR", "error", None, power
        return {
            "running": ("ACTIVE", "active", None, power),
            "restarting": ("HARD_REBOOT", "active", "rebooting_hard", power),
            "paused": ("PAUSED", "paused", None, power),
            "removing": ("REBUILD", "active", "rebuilding", power),
            "dead": ("ERROR", "error", None, power),
        }.get(s.state, ("SHUTOFF", "stopped", None, power))

    # --- views

    def _links(self, kind: str, rid: str) -> list[dict[str, str]]:
        return [
            {"href": f"{self.nova_url}/v2.1/{kind}/{rid}", "rel": "self"},
            {"href": f"{self.nova_url}/{kind}/{rid}", "rel": "bookmark"},
        ]

    def _flavor(self, name: str) -> dict[str, Any]:
        known = next((f for f in self.flavors if f["name"] == name), None)
        return known or {"id": _uid("flavor", name), "name": name, "vcpus": 0, "ram": 0, "disk": 0}

    def _project_id(self, name: str) -> str:
        return next((p["id"] for p in self.projects if p["name"] == name), _uid("project", name))

    def _owner(self, project: str) -> str:
        """The server's user_id: the first user who may create servers in its project (role member)."""
        return next(
            (u["id"] for u in self.users if "member" in effective_roles(u["assignments"].get(project, []))),
            _uid("user", "nova"),
        )

    def server_view(self, s: Server, mv: tuple[int, int], show: bool = False) -> dict[str, Any]:
        status, vm_state, task_state, power = self.status(s)
        label = s.label
        az = str(label.get("az", ""))
        host = _host_of(az)
        project_id = self._project_id(str(label.get("project", "")))
        flavor = self._flavor(str(label.get("flavor", "")))
        image_name = str(label.get("image", ""))
        image_id = str(uuid.uuid5(_NS, f"image:{image_name}"))
        created = _parse_time(str(label.get("created", "")))
        with self.lock:
            updated = self.updated.get(s.id, max(created, s.launched))
            fault = self.faults.get(s.id)
        if mv >= (2, 47):
            flavor_view: dict[str, Any] = {
                "disk": flavor["disk"],
                "ephemeral": 0,
                "extra_specs": flavor.get("extra_specs", {}),
                "original_name": flavor["name"],
                "ram": flavor["ram"],
                "swap": 0,
                "vcpus": flavor["vcpus"],
            }
        else:
            flavor_view = {"id": flavor["id"], "links": self._links("flavors", flavor["id"])[1:]}
        image: dict[str, Any] = {"id": image_id, "links": self._links("images", image_id)[1:]}
        if mv >= (2, 98):
            image["properties"] = {
                "architecture": "x86_64",
                "os_distro": image_name.split()[0].lower() if image_name else "",
                "auto_disk_config": "False",
            }
        volumes = [
            {"id": v["id"], **({"delete_on_termination": False} if mv >= (2, 3) else {})}
            for v in label.get("volumes") or []
        ]
        addresses = (
            {self.network: [{"addr": s.ip, "OS-EXT-IPS-MAC:mac_addr": s.mac, "OS-EXT-IPS:type": "fixed", "version": 4}]}
            if s.ip
            else {}
        )
        view: dict[str, Any] = {
            "accessIPv4": "",
            "accessIPv6": "",
            "addresses": addresses,
            "created": _iso_z(created),
            "flavor": flavor_view,
            "hostId": hashlib.sha224((project_id + host).encode()).hexdigest(),
            "id": s.id,
            "image": image,
            "key_name": None,
            "links": self._links("servers", s.id),
            "metadata": dict(label.get("metadata") or {}),
            "name": s.name,
            "config_drive": "",
            "OS-DCF:diskConfig": "MANUAL",
            "OS-EXT-AZ:availability_zone": az,
            "OS-EXT-SRV-ATTR:host": host,
            "OS-EXT-SRV-ATTR:hypervisor_hostname": host,
            "OS-EXT-SRV-ATTR:instance_name": f"instance-{int(s.id.replace('-', '')[:8], 16):08x}",
            "OS-EXT-STS:power_state": power,
            "OS-EXT-STS:task_state": task_state,
            "OS-EXT-STS:vm_state": vm_state,
            "os-extended-volumes:volumes_attached": volumes,
            "OS-SRV-USG:launched_at": _iso_us(s.launched),
            "OS-SRV-USG:terminated_at": None,
            "progress": 0,
            "security_groups": [{"name": "default"}],
            "status": status,
            "tenant_id": project_id,
            "updated": _iso_z(updated),
            "user_id": self._owner(str(label.get("project"))),
        }
        if fault is not None and status == "ERROR":
            view["fault"] = {"code": 500, "created": _iso_z(fault.created), "message": fault.message}
        if mv >= (2, 3):
            view["OS-EXT-SRV-ATTR:hostname"] = s.name
        for since, key, value in (
            ((2, 9), "locked", False),
            ((2, 19), "description", ""),
            ((2, 26), "tags", []),
            ((2, 63), "trusted_image_certificates", None),
            ((2, 73), "locked_reason", ""),
            ((2, 96), "pinned_availability_zone", az or None),
            ((2, 100), "scheduler_hints", {}),
        ):
            if mv >= since:
                view[key] = value
        if show and mv >= (2, 71):
            view["server_groups"] = []
        return view

    def flavor_view(
        self, f: dict[str, Any], mv: tuple[int, int], detail: bool, extra_specs: bool = True
    ) -> dict[str, Any]:
        view: dict[str, Any] = {"id": f["id"], "links": self._links("flavors", f["id"]), "name": f["name"]}
        if detail:
            view.update(
                {
                    "OS-FLV-EXT-DATA:ephemeral": 0,
                    "disk": f["disk"],
                    "os-flavor-access:is_public": True,
                    "ram": f["ram"],
                    "swap": 0 if mv >= (2, 75) else "",
                    "vcpus": f["vcpus"],
                }
            )
            if mv < (2, 102):
                view.update({"OS-FLV-DISABLED:disabled": False, "rxtx_factor": 1.0})
            if mv >= (2, 61) and extra_specs:
                view["extra_specs"] = f.get("extra_specs", {})
        if mv >= (2, 55):
            view["description"] = f.get("description")
        return view

    # --- Keystone

    def issue_token(self, body: Any) -> base.Response:
        auth = body["auth"]
        identity = auth["identity"]
        if "password" not in identity.get("methods", []):
            return _unauthorized(self.keystone_url)
        given = identity["password"]["user"]
        user = self._user(given)
        if user is None or not hmac.compare_digest(str(given.get("password", "")), str(user["password"])):
            return _unauthorized(self.keystone_url)
        project = None
        roles: list[str] = []
        scope = auth.get("scope")
        if isinstance(scope, dict) and "project" in scope:
            project = self._scoped_project(scope["project"])
            if project is not None:
                roles = effective_roles(user["assignments"].get(project["name"], []))
            if not roles:  # Keystone: no role on the project, no token for it (401)
                return _unauthorized(self.keystone_url)
        elif scope:
            return _json_error(400, "error", "Only project scope is supported by the lab")
        now = _now()
        token = Token(
            user,
            project,
            now,
            datetime.fromtimestamp(now.timestamp() + TOKEN_TTL_S, UTC),
            secrets.token_urlsafe(16)[:22],
            tuple(roles),
        )
        token_id = "gAAAAAB" + secrets.token_urlsafe(132)  # Fernet-looking, as Keystone issues
        with self.lock:
            self.tokens = {k: t for k, t in self.tokens.items() if t.expires > now}
            self.tokens[token_id] = token
        catalog = "nocatalog" not in (body.get("_query") or {})
        return base.Response(201, self.token_body(token, catalog), {"X-Subject-Token": token_id})

    def _user(self, given: dict[str, Any]) -> dict[str, Any] | None:
        if "id" in given:
            return next((u for u in self.users if u["id"] == given["id"]), None)
        domain = given.get("domain") or {}
        if domain.get("name", "Default") != "Default" and domain.get("id") != "default":
            return None
        return next((u for u in self.users if u["name"] == given.get("name")), None)

    def _scoped_project(self, given: dict[str, Any]) -> dict[str, Any] | None:
        if "id" in given:
            return next((p for p in self.projects if p["id"] == given["id"]), None)
        domain = given.get("domain") or {}
        if domain.get("name") != "Default" and domain.get("id") != "default":
            return None
        return next((p for p in self.projects if p["name"] == given.get("name")), None)

    def token_body(self, token: Token, catalog: bool = True) -> dict[str, Any]:
        domain = {"id": "default", "name": "Default"}
        body: dict[str, Any] = {
            "audit_ids": [token.audit_id],
            "expires_at": _iso_us(token.expires) + "Z",
            "is_domain": False,
            "issued_at": _iso_us(token.issued) + "Z",
            "methods": ["password"],
            "user": {
                "domain": domain,
                "id": token.user["id"],
                "name": token.user["name"],
                "password_expires_at": "2099-12-31T00:00:00.000000",
            },
        }
        if token.project is not None:
            body["project"] = {"domain": domain, "id": token.project["id"], "name": token.project["name"]}
            body["roles"] = [{"id": _uid("role", r), "name": r} for r in token.roles]
            if catalog:
                body["catalog"] = [
                    self._service("compute", "nova", f"{self.nova_url}/v2.1"),
                    self._service("identity", "keystone", f"{self.keystone_url}/v3"),
                ]
        return {"token": body}

    @staticmethod
    def _service(kind: str, name: str, url: str) -> dict[str, Any]:
        endpoints = [
            {"id": _uid("endpoint", f"{name}:{i}"), "interface": i, "region": "cern", "region_id": "cern", "url": url}
            for i in ("public", "internal", "admin")
        ]
        return {"endpoints": endpoints, "type": kind, "id": _uid("service", name), "name": name}

    def token(self, token_id: str) -> Token | None:
        with self.lock:
            token = self.tokens.get(token_id)
        return token if token is not None and token.expires > _now() else None

    # --- actions (run in background threads so the 202 returns at once)

    def start_action(self, s: Server, name: str, arg: Any, mv: tuple[int, int]) -> base.Response:
        kind = action_kind(name, arg)
        if isinstance(kind, base.Response):
            return kind
        status, vm_state, task_state, _ = self.status(s)
        allowed = {
            "reboot_hard": {"active", "stopped", "error", "paused", "suspended"},
            "reboot_soft": {"active"},
            "os-stop": {"active", "error"},
            "os-start": {"stopped"},
            "rebuild": {"active", "stopped", "error"},
        }
        verb = {"os-stop": "stop", "os-start": "start"}.get(name, name)
        if task_state is not None:
            return _json_error(
                409, "conflictingRequest", f"Cannot '{verb}' instance {s.id} while it is in task_state {task_state}"
            )
        if vm_state not in allowed[kind]:
            return _json_error(
                409, "conflictingRequest", f"Cannot '{verb}' instance {s.id} while it is in vm_state {vm_state}"
            )
        states = {
            "reboot_hard": ("HARD_REBOOT", "reboot_started_hard"),
            "reboot_soft": ("REBOOT", "reboot_started"),
            "os-stop": (status, "powering-off"),
            "os-start": (status, "powering-on"),
            "rebuild": ("REBUILD", "rebuilding"),
        }
        new_status, new_task_state = states[kind]
        with self.lock:
            if s.id in self.tasks:  # lost a race with another action
                return _json_error(409, "conflictingRequest", f"Cannot '{verb}' instance {s.id} while it is busy")
            self.tasks[s.id] = Task(kind, new_status, vm_state, new_task_state, s)
            fault = self.faults.get(s.id)
        threading.Thread(target=self._run, args=(s, kind, arg, fault), name=f"{kind}:{s.name}", daemon=True).start()
        if kind == "rebuild":
            return base.Response(202, {"server": self._rebuild_view(s, arg, mv)})
        return base.Response(202, None, {"Content-Type": "text/html; charset=UTF-8"}, raw=b"")

    def _rebuild_view(self, s: Server, arg: dict[str, Any], ctx_mv: tuple[int, int]) -> dict[str, Any]:
        view = self.server_view(s, ctx_mv, show=True)
        if "metadata" in arg:
            view["metadata"] = arg["metadata"]
        view["adminPass"] = arg.get("adminPass") or secrets.token_urlsafe(9)
        if ctx_mv >= (2, 57):
            view["user_data"] = arg.get("user_data")
        if ctx_mv < (2, 75):  # the reduced representation of older microversions
            keep = (
                "accessIPv4",
                "accessIPv6",
                "OS-DCF:diskConfig",
                "addresses",
                "adminPass",
                "created",
                "flavor",
                "hostId",
                "id",
                "image",
                "links",
                "metadata",
                "name",
                "progress",
                "status",
                "tenant_id",
                "updated",
                "user_id",
                "description",
                "tags",
                "locked",
                "key_name",
                "user_data",
                "trusted_image_certificates",
                "server_groups",
            )
            view = {k: v for k, v in view.items() if k in keep}
            view["addresses"] = {
                n: [{"addr": a["addr"], "version": 4} for a in addrs] for n, addrs in view["addresses"].items()
            }
        return view

    def _run(self, s: Server, kind: str, arg: Any, fault: Fault | None) -> None:
        try:
            if kind == "reboot_hard":  # a power cycle: hardly any grace
                self.docker.ok("POST", f"/containers/{s.container_id}/restart", {"t": "1"}, timeout=30)
            elif kind == "reboot_soft":
                t = self.stop_timeout
                self.docker.ok("POST", f"/containers/{s.container_id}/restart", {"t": str(t)}, timeout=t + 30)
            elif kind == "os-stop":
                t = self.stop_timeout
                self.docker.ok("POST", f"/containers/{s.container_id}/stop", {"t": str(t)}, timeout=t + 30)
            elif kind == "os-start":
                self.docker.ok("POST", f"/containers/{s.container_id}/start", timeout=30)
            elif kind == "rebuild":
                self._rebuild(s, arg, fault.inspect if fault else None)
            with self.lock:
                self.faults.pop(s.id, None)
        except Exception as exc:  # any failure becomes the server's ERROR fault; the thread ends cleanly
            traceback.print_exc()
            saved = exc.inspect if isinstance(exc, _RebuildFailed) else (fault.inspect if fault else None)
            with self.lock:
                self.faults[s.id] = Fault(str(exc), _now(), s, saved)
        finally:
            with self.lock:
                self.tasks.pop(s.id, None)
                self.updated[s.id] = _now()

    def _rebuild(self, s: Server, arg: dict[str, Any], saved: dict[str, Any] | None) -> None:
        """Recreates the container clean: same name, config, host config, networks and IPv4 address. Named
        volumes survive (as Cinder volumes do), anonymous ones are dropped with the old root disk."""
        status, info = self.docker.call("GET", f"/containers/{s.container_id}/json")
        if status == 404 and saved is not None:
            info = saved
        elif status != 200:
            raise DockerError(f"docker inspect {s.container_id}: {status} {info}")
        name = str(info["Name"]).lstrip("/")
        config = dict(info["Config"])
        labels = dict(config.get("Labels") or {})
        label = json.loads(labels[self.label_key])
        if isinstance(arg.get("metadata"), dict):
            label["metadata"] = arg["metadata"]  # rebuild replaces metadata when it is given
        labels[self.label_key] = json.dumps(label)
        config["Labels"] = labels
        host_config = info["HostConfig"]
        old_short = str(info["Id"])[:12]
        endpoints: dict[str, dict[str, Any]] = {}
        for net, ep in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items():
            ipam = dict(ep.get("IPAMConfig") or {})
            ip = ipam.get("IPv4Address") or ep.get("IPAddress") or (s.ip if net == self.network else "")
            if ip and net not in ("bridge", "host", "none"):  # fixed addresses exist on user networks only
                ipam["IPv4Address"] = ip
            endpoints[net] = {
                "IPAMConfig": ipam or None,
                "Aliases": [a for a in ep.get("Aliases") or [] if a != old_short] or None,
                "Links": ep.get("Links"),
                "DriverOpts": ep.get("DriverOpts"),
            }
        was_running = bool((info.get("State") or {}).get("Running"))
        self.docker.ok("DELETE", f"/containers/{info['Id']}", {"force": "1", "v": "1"}, timeout=30)
        # From here on the old container is gone: keep its config for a retry if anything fails.
        mode = str(host_config.get("NetworkMode") or "")
        first = mode if mode in endpoints else next(iter(endpoints), "")
        body = {
            **config,
            "HostConfig": host_config,
            "NetworkingConfig": {"EndpointsConfig": {first: endpoints[first]} if first else {}},
        }
        try:
            created = self.docker.ok("POST", "/containers/create", {"name": name}, body, timeout=30)
            new_id = created["Id"]
            for net, ep in endpoints.items():  # API 1.41 takes one network at create time
                if net != first:
                    self.docker.ok(
                        "POST", f"/networks/{quote(net)}/connect", body={"Container": new_id, "EndpointConfig": ep}
                    )
            if was_running:  # Nova leaves a stopped server stopped after a rebuild
                self.docker.ok("POST", f"/containers/{new_id}/start", timeout=30)
        except Exception as exc:
            raise _RebuildFailed(str(exc), info) from exc

    # --- lab overrides

    def set_override(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        changes = {k: v for k, v in changes.items() if k not in ("id", "name")}
        with self.lock:
            self.overrides[name] = {**self.overrides.get(name, {}), **changes}
            return dict(self.overrides[name])


class _RebuildFailed(Exception):
    def __init__(self, message: str, inspect: dict[str, Any]) -> None:
        super().__init__(message)
        self.inspect = inspect


def action_kind(name: str, arg: Any) -> str | base.Response:
    """The emulator's kind of a server action (a key of ACTION_POLICIES), or Nova's 400 for a malformed one
    (Nova validates the body before it looks the server up or checks the policy)."""
    if name == "reboot":
        reboot_type = str((arg or {}).get("type", "")).upper() if isinstance(arg, dict) else ""
        if reboot_type not in ("HARD", "SOFT"):
            return _json_error(400, "badRequest", "Invalid input for field/attribute type.")
        return "reboot_hard" if reboot_type == "HARD" else "reboot_soft"
    if name not in ("os-start", "os-stop", "rebuild"):
        return _json_error(400, "badRequest", f"There is no such action: {name}")
    if name == "rebuild" and not (isinstance(arg, dict) and arg.get("imageRef")):
        return _json_error(400, "badRequest", "Invalid input for field/attribute rebuild. imageRef is required")
    return name


def _mac_of(ip: str) -> str:
    """Docker 20.10 derives a container's MAC from its IPv4 address."""
    try:
        parts = [int(p) for p in ip.split(".")]
    except ValueError:
        return ""
    return "02:42:" + ":".join(f"{p:02x}" for p in parts) if len(parts) == 4 else ""


def _host_of(az: str) -> str:
    return f"{az or 'nova'}-hv01.cern.ch"


def _microversion(headers: dict[str, str]) -> tuple[int, int] | base.Response:
    raw = None
    for part in headers.get("openstack-api-version", "").split(","):
        service, _, version = part.strip().partition(" ")
        if service.lower() == "compute":
            raw = version.strip()
    raw = raw or headers.get("x-openstack-nova-api-version", "").strip()
    if not raw:
        return MIN_VERSION
    if raw.lower() == "latest":
        return MAX_VERSION
    m = re.fullmatch(r"(\d+)\.(\d+)", raw)
    if not m:
        return _json_error(400, "badRequest", f"Invalid API version request string {raw}")
    mv = (int(m.group(1)), int(m.group(2)))
    if not MIN_VERSION <= mv <= MAX_VERSION:
        return _json_error(
            406,
            "computeFault",
            f"Version {raw} is not supported by the API. Minimum is 2.1 and "
            f"maximum is {MAX_VERSION[0]}.{MAX_VERSION[1]}.",
        )
    return mv


def _all_tenants(query: dict[str, str]) -> bool | base.Response:
    """nova/api/openstack/common.py is_all_tenants: present and empty means yes, else oslo's strict
    bool_from_string (an unknown word is a 400)."""
    if "all_tenants" not in query:
        return False
    value = query["all_tenants"].strip().lower()
    if value in ("", "1", "t", "true", "on", "y", "yes"):
        return True
    if value in ("0", "f", "false", "off", "n", "no"):
        return False
    return _json_error(
        400,
        "badRequest",
        f"Invalid input received: Unrecognized value '{query['all_tenants']}', acceptable values are: "
        "'0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'",
    )


NovaHandler = Callable[[base.Request, Ctx], base.Response]


def build(emu: OpenStack) -> tuple[base.Router, base.Router]:
    """The Keystone and the Nova routers."""
    keystone, nova = base.Router(), base.Router()

    def guarded(fn: Callable[[base.Request], base.Response]) -> Callable[[base.Request], base.Response]:
        def run(req: base.Request) -> base.Response:
            try:
                return fn(req)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                return _json_error(400, "badRequest", f"Malformed request: {exc}")
            except Exception as exc:  # a request thread must answer, never die
                traceback.print_exc()
                return _json_error(500, "computeFault", f"Unexpected error: {exc}")

        return run

    def api(methods: str, pattern: str, acl: bool = True) -> Callable[[NovaHandler], NovaHandler]:
        """A Nova route: token, project scope and microversion checked before the handler runs."""

        def register(fn: NovaHandler) -> NovaHandler:
            def handler(req: base.Request) -> base.Response:
                token = emu.token(req.headers.get("x-auth-token", ""))
                if acl and token is None:
                    return _unauthorized(emu.keystone_url)
                if acl and token is not None and token.project is None:
                    return _json_error(403, "forbidden", "A project-scoped token is required")
                mv = _microversion(req.headers)
                if isinstance(mv, base.Response):
                    return mv
                resp = fn(req, Ctx(token, mv))
                version = f"{mv[0]}.{mv[1]}"
                resp.headers.update(
                    {
                        "OpenStack-API-Version": f"compute {version}",
                        "X-OpenStack-Nova-API-Version": version,
                        "Vary": "OpenStack-API-Version, X-OpenStack-Nova-API-Version",
                    }
                )
                return resp

            nova.route(methods, pattern, acl=False)(guarded(handler))
            return fn

        return register

    # --- Keystone

    def keystone_version() -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{emu.keystone_url}/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
        }

    @keystone.route("GET", "/", acl=False)
    @guarded
    def keystone_versions(req: base.Request) -> base.Response:
        return base.Response(300, {"versions": {"values": [keystone_version()]}})

    @keystone.route("GET", "/v3", acl=False)
    @keystone.route("GET", "/v3/", acl=False)
    @guarded
    def keystone_v3(req: base.Request) -> base.Response:
        return base.Response(200, {"version": keystone_version()})

    @keystone.route("POST", "/v3/auth/tokens", acl=False)
    @guarded
    def issue(req: base.Request) -> base.Response:
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("auth"), dict):
            return _json_error(400, "error", "Expecting to find auth in request body")
        return emu.issue_token({**body, "_query": req.query})

    @keystone.route("GET|HEAD|DELETE", "/v3/auth/tokens", acl=False)
    @guarded
    def validate(req: base.Request) -> base.Response:
        caller = emu.token(req.headers.get("x-auth-token", ""))
        if caller is None:
            return _unauthorized(emu.keystone_url)
        subject_id = req.headers.get("x-subject-token", "")
        subject = emu.token(subject_id)
        if subject is None:
            return base.Response(
                404, {"error": {"code": 404, "title": "Not Found", "message": "Could not find token."}}
            )
        # keystone/common/policies/token.py: identity:check_token (HEAD), validate_token (GET), revoke_token
        # (DELETE) allow rule:admin_required (role:admin) or rule:token_subject (the subject's own user); system
        # readers and the service role do not exist in the lab.
        if ADMIN not in caller.roles and caller.user["id"] != subject.user["id"]:
            rule = {"HEAD": "check_token", "GET": "validate_token"}.get(req.method, "revoke_token")
            message = f"You are not authorized to perform the requested action: identity:{rule}."
            return base.Response(403, {"error": {"code": 403, "title": "Forbidden", "message": message}})
        if req.method == "DELETE":
            with emu.lock:
                emu.tokens.pop(subject_id, None)
            return base.Response(204)
        return base.Response(200, emu.token_body(subject, not req.flag("nocatalog")), {"X-Subject-Token": subject_id})

    # --- Nova

    def nova_version() -> dict[str, Any]:
        return {
            "id": "v2.1",
            "status": "CURRENT",
            "version": f"{MAX_VERSION[0]}.{MAX_VERSION[1]}",
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [
                {"rel": "self", "href": f"{emu.nova_url}/v2.1/"},
                {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
            ],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}],
        }

    @api("GET", "/", acl=False)
    def nova_versions(req: base.Request, ctx: Ctx) -> base.Response:
        return base.Response(200, {"versions": [nova_version()]})

    @api("GET", "/v2.1", acl=False)
    @api("GET", "/v2.1/", acl=False)
    def nova_v21(req: base.Request, ctx: Ctx) -> base.Response:
        return base.Response(200, {"version": nova_version()})

    def listing(req: base.Request, ctx: Ctx, detail: bool) -> base.Response:
        assert ctx.token is not None
        assert ctx.token.project is not None
        kind = "detail" if detail else "index"
        denied = emu.authorize(ctx.token, f"os_compute_api:servers:{kind}")
        if denied:
            return denied
        all_tenants = _all_tenants(req.query)
        if isinstance(all_tenants, base.Response):
            return all_tenants
        if all_tenants:  # nova/api/openstack/compute/servers.py _get_servers: admins only
            denied = emu.authorize(ctx.token, f"os_compute_api:servers:{kind}:get_all_tenants")
            if denied:
                return denied
            found = emu.servers()
        else:
            found = emu.project_servers(ctx.token.project["name"])
        if "name" in req.query:
            try:
                pattern = re.compile(req.query["name"])
            except re.error:
                return _json_error(400, "badRequest", "Invalid regular expression for name")
            found = [s for s in found if pattern.search(s.name)]
        if "status" in req.query:
            found = [s for s in found if emu.status(s)[0] == req.query["status"].upper()]
        if "marker" in req.query:
            ids = [s.id for s in found]
            if req.query["marker"] not in ids:
                return _json_error(400, "badRequest", f"marker [{req.query['marker']}] not found")
            found = found[ids.index(req.query["marker"]) + 1 :]
        limit = min(int(req.query.get("limit", 1000)), 1000)
        page = found[:limit]
        if detail:
            items = [emu.server_view(s, ctx.mv) for s in page]
        else:
            items = [{"id": s.id, "links": emu._links("servers", s.id), "name": s.name} for s in page]
        body: dict[str, Any] = {"servers": items}
        if page and len(page) == limit:  # Nova adds the next link whenever a page is full
            kind = "servers/detail" if detail else "servers"
            query = urlencode({"limit": limit, "marker": page[-1].id})
            body["servers_links"] = [{"href": f"{emu.nova_url}/v2.1/{kind}?{query}", "rel": "next"}]
        return base.Response(200, body)

    @api("GET", "/v2.1/servers/detail")
    def servers_detail(req: base.Request, ctx: Ctx) -> base.Response:
        return listing(req, ctx, True)

    @api("GET", "/v2.1/servers")
    def servers(req: base.Request, ctx: Ctx) -> base.Response:
        return listing(req, ctx, False)

    def not_found(sid: str) -> base.Response:
        return _json_error(404, "itemNotFound", f"Instance {sid} could not be found.")

    def found(ctx: Ctx, sid: str, rule: str) -> Server | base.Response:
        """The server, looked up then authorized in Nova's order: 404 before 403."""
        assert ctx.token is not None
        s = emu.find(ctx.token, sid)
        if s is None:
            return not_found(sid)
        return emu.authorize(ctx.token, rule, emu.server_project_id(s)) or s

    @api("GET", "/v2.1/servers/{id}")
    def server(req: base.Request, ctx: Ctx) -> base.Response:
        s = found(ctx, req.params["id"], "os_compute_api:servers:show")
        if isinstance(s, base.Response):
            return s
        return base.Response(200, {"server": emu.server_view(s, ctx.mv, show=True)})

    @api("POST", "/v2.1/servers/{id}/action")
    def action(req: base.Request, ctx: Ctx) -> base.Response:
        body = req.json()
        if not isinstance(body, dict) or len(body) != 1:
            return _json_error(400, "badRequest", "Malformed request body")
        name, arg = next(iter(body.items()))
        kind = action_kind(name, arg)
        if isinstance(kind, base.Response):
            return kind
        s = found(ctx, req.params["id"], ACTION_POLICIES[kind])
        if isinstance(s, base.Response):
            return s
        return emu.start_action(s, name, arg, ctx.mv)

    @api("GET", "/v2.1/servers/{id}/os-volume_attachments")
    def volume_attachments(req: base.Request, ctx: Ctx) -> base.Response:
        s = found(ctx, req.params["id"], "os_compute_api:os-volumes-attachments:index")
        if isinstance(s, base.Response):
            return s
        items = []
        for v in s.label.get("volumes") or []:
            item: dict[str, Any] = {"device": v.get("device", "/dev/vdb"), "serverId": s.id, "volumeId": v["id"]}
            if ctx.mv < (2, 89):
                item["id"] = v["id"]
            else:
                item["attachment_id"] = str(uuid.uuid5(_NS, f"attachment:{s.id}:{v['id']}"))
                item["bdm_uuid"] = str(uuid.uuid5(_NS, f"bdm:{s.id}:{v['id']}"))
            if ctx.mv >= (2, 70):
                item["tag"] = None
            if ctx.mv >= (2, 79):
                item["delete_on_termination"] = False
            items.append(item)
        return base.Response(200, {"volumeAttachments": items})

    def extra_specs(ctx: Ctx) -> bool:
        assert ctx.token is not None
        return emu.allowed(ctx.token, "os_compute_api:os-flavor-extra-specs:index")

    @api("GET", "/v2.1/flavors/detail")
    def flavors_detail(req: base.Request, ctx: Ctx) -> base.Response:
        specs = extra_specs(ctx)
        return base.Response(200, {"flavors": [emu.flavor_view(f, ctx.mv, True, specs) for f in emu.flavors]})

    @api("GET", "/v2.1/flavors")
    def flavors(req: base.Request, ctx: Ctx) -> base.Response:
        return base.Response(200, {"flavors": [emu.flavor_view(f, ctx.mv, False) for f in emu.flavors]})

    @api("GET", "/v2.1/flavors/{id}")
    def flavor(req: base.Request, ctx: Ctx) -> base.Response:
        f = next((f for f in emu.flavors if str(f["id"]) == req.params["id"]), None)
        if f is None:
            return _json_error(404, "itemNotFound", f"Flavor {req.params['id']} could not be found.")
        return base.Response(200, {"flavor": emu.flavor_view(f, ctx.mv, True, extra_specs(ctx))})

    @api("GET", "/v2.1/os-availability-zone")
    def zones(req: base.Request, ctx: Ctx) -> base.Response:
        return base.Response(
            200,
            {
                "availabilityZoneInfo": [
                    {"hosts": None, "zoneName": z, "zoneState": {"available": True}} for z in emu.zones
                ]
            },
        )

    @api("GET", "/v2.1/os-availability-zone/detail")
    def zones_detail(req: base.Request, ctx: Ctx) -> base.Response:
        assert ctx.token is not None
        denied = emu.authorize(ctx.token, "os_compute_api:os-availability-zone:detail")
        if denied:
            return denied
        now = _iso_us(_now())

        def svc(name: str) -> dict[str, Any]:
            return {name: {"active": True, "available": True, "updated_at": now}}

        info: list[dict[str, Any]] = [
            {
                "hosts": {"cci-nova-conductor01": svc("nova-conductor"), "cci-nova-scheduler01": svc("nova-scheduler")},
                "zoneName": "internal",
                "zoneState": {"available": True},
            }
        ]
        info += [
            {"hosts": {_host_of(z): svc("nova-compute")}, "zoneName": z, "zoneState": {"available": True}}
            for z in emu.zones
        ]
        return base.Response(200, {"availabilityZoneInfo": info})

    # --- lab-only: fault injection over the labels

    def lab_admin(req: base.Request) -> base.Response | None:
        secret = str(emu.cfg.get("lab_admin_secret") or "")
        if not secret or not hmac.compare_digest(req.headers.get("x-lab-admin", ""), secret):
            return _json_error(403, "forbidden", "X-Lab-Admin required")
        return None

    @api("PATCH", "/lab/servers/{name}", acl=False)
    def lab_patch(req: base.Request, ctx: Ctx) -> base.Response:
        denied = lab_admin(req)
        if denied:
            return denied
        changes = req.json()
        if not isinstance(changes, dict):
            return _json_error(400, "badRequest", "Expecting a JSON object")
        return base.Response(200, {"override": emu.set_override(req.params["name"], changes)})

    @api("DELETE", "/lab/servers/{name}/override", acl=False)
    def lab_clear(req: base.Request, ctx: Ctx) -> base.Response:
        denied = lab_admin(req)
        if denied:
            return denied
        with emu.lock:
            emu.overrides.pop(req.params["name"], None)
        return base.Response(204)

    @api("GET", "/lab/overrides", acl=False)
    def lab_list(req: base.Request, ctx: Ctx) -> base.Response:
        return lab_admin(req) or base.Response(200, {"overrides": dict(emu.overrides)})

    return keystone, nova


def main(argv: list[str]) -> int:
    cfg = base.load_json(argv[1])
    sock = os.environ.get("ALICELAB_DOCKER_SOCKET") or cfg.get("docker_socket") or "/var/run/docker.sock"
    emu = OpenStack(cfg, Docker(sock))
    keystone, nova = build(emu)
    tls_cfg = cfg.get("tls")
    tls = _ServerOnlyTls(ca="", cert=tls_cfg["cert"], key=tls_cfg["key"]) if tls_cfg else None
    base.serve(cfg["bind"], emu.keystone_port, keystone, tls, name="keystone")
    nova_server = base.serve(cfg["bind"], emu.nova_port, nova, tls, name="nova")
    # base.serve dispatches GET/PUT/POST/DELETE/HEAD; the lab override endpoint is a PATCH.
    handler_cls: Any = nova_server.RequestHandlerClass
    handler_cls.do_PATCH = handler_cls.do_GET
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"openstack emulator: keystone {emu.keystone_url}, nova {emu.nova_url}, docker {sock}", flush=True)
    while not stop.wait(0.2):
        pass
    return 0  # the servers are daemon threads: exiting the main thread ends them at once


if __name__ == "__main__":
    sys.exit(main(sys.argv))
