"""ACL policies and tokens of the emulated Nomad and Consul, as node.json gives them (schema in
tests/lab/README.md, "Node contract").

Policies are written in each product's own JSON rule syntax (what its HCL policies turn into):
- Nomad: {"namespace": {"default": {"policy": "read"}}, "node": {"policy": "read"}, "agent": {...},
  "operator": {...}}; a namespace rule may give "capabilities" instead of (or besides) "policy", and
  its name may be a glob ("*", "ci-*"). Levels deny < read < write; "deny" wins when policies merge.
- Consul: {"node_prefix": {"": {"policy": "read"}}, "service": {"vault": {"policy": "write"}},
  "key_prefix": {"alice-acceptance/": {"policy": "write"}}, "session_prefix": ..., "agent_prefix": ...,
  "operator": "read"}. An exact rule wins over a prefix rule, the longest prefix over a shorter one;
  merged policies: deny > write > list > read. Default policy deny.
A token is management when its type is "management" (Nomad) or it carries the "global-management"
policy (Consul). Test equipment: standard library only.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass, field
from typing import Any

LEVELS = {"deny": 0, "read": 1, "list": 2, "write": 3}
ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
GLOBAL_MANAGEMENT = "global-management"

NOMAD_NS_READ = ["list-jobs", "parse-job", "read-job", "csi-list-volume", "csi-read-volume", "read-job-scaling",
                 "list-scaling-policies", "read-scaling-policy"]
NOMAD_NS_WRITE = [*NOMAD_NS_READ, "scale-job", "submit-job", "dispatch-job", "read-logs", "read-fs", "alloc-exec",
                  "alloc-lifecycle", "csi-mount-volume", "csi-write-volume", "submit-recommendation"]
NOMAD_NS_SCALE = ["list-scaling-policies", "read-scaling-policy", "read-job-scaling", "scale-job"]


def _level(rule: Any) -> str:
    """The policy of a rule given as "read" or {"policy": "read"}."""
    if isinstance(rule, str):
        return rule
    if isinstance(rule, dict):
        return str(rule.get("policy", ""))
    return ""


def _merge(a: str, b: str) -> str:
    """Two policies for the same rule: deny wins, else the stronger."""
    if "deny" in (a, b):
        return "deny"
    return max(a, b, key=lambda x: LEVELS.get(x, -1))


def _grants(have: str, want: str) -> bool:
    if have not in LEVELS or have == "deny":
        return False
    if want == "list":
        return have in ("list", "write")
    return LEVELS[have] >= LEVELS[want]


# ------------------------------------------------------------------------------------------- Nomad

@dataclass
class NomadAuthz:
    accessor: str
    name: str
    management: bool = False
    levels: dict[str, str] = field(default_factory=dict)  # node, agent, operator, ...
    namespaces: dict[str, set[str]] = field(default_factory=dict)  # name or glob -> capabilities

    def allows(self, resource: str, level: str) -> bool:
        """node/agent/operator/... at read or write."""
        return self.management or _grants(self.levels.get(resource, ""), level)

    def _ns_caps(self, ns: str) -> set[str] | None:
        if ns in self.namespaces:
            return self.namespaces[ns]
        globs = [g for g in self.namespaces if any(c in g for c in "*?[") and fnmatch.fnmatchcase(ns, g)]
        if not globs:
            return None
        # Nomad picks the closest glob: the one that leaves the fewest characters to the wildcards.
        return self.namespaces[max(globs, key=lambda g: len(g.replace("*", "")))]

    def allows_ns(self, ns: str, capability: str) -> bool:
        """A namespace capability; "*" (all namespaces) is allowed when any namespace allows it."""
        if self.management:
            return True
        if ns == "*":
            return any(capability in caps and "deny" not in caps for caps in self.namespaces.values())
        caps = self._ns_caps(ns)
        return caps is not None and "deny" not in caps and capability in caps

    def view(self) -> dict[str, Any]:
        return {"AccessorID": self.accessor, "Name": self.name,
                "Type": "management" if self.management else "client"}


class NomadACL:
    """Tokens by secret. `tokens` in node.json is a list of {AccessorID, SecretID, Name, Type,
    Policies}; `internal` is the management secret the emulators use between themselves."""

    def __init__(self, cfg: dict[str, Any] | None, internal: str) -> None:
        cfg = cfg or {}
        policies: dict[str, Any] = dict(cfg.get("policies") or {})
        self.by_secret: dict[str, NomadAuthz] = {}
        if internal:
            self.by_secret[internal] = NomadAuthz(str(uuid.uuid5(uuid.NAMESPACE_OID, "nomad-internal")),
                                                  "lab internal", management=True)
        for tok in cfg.get("tokens") or []:
            authz = NomadAuthz(str(tok.get("AccessorID") or uuid.uuid4()), str(tok.get("Name", "")),
                               management=tok.get("Type") == "management")
            for pname in tok.get("Policies") or []:
                self._apply(authz, policies.get(pname) or {})
            self.by_secret[str(tok["SecretID"])] = authz
        self.anonymous = NomadAuthz("anonymous", "Anonymous Token")

    @staticmethod
    def _apply(authz: NomadAuthz, rules: dict[str, Any]) -> None:
        for resource, rule in rules.items():
            if resource == "namespace":
                for ns, spec in (rule or {}).items():
                    caps = set(spec.get("capabilities") or []) if isinstance(spec, dict) else set()
                    policy = _level(spec)
                    caps |= set({"deny": ["deny"], "read": NOMAD_NS_READ, "write": NOMAD_NS_WRITE,
                                 "scale": NOMAD_NS_SCALE}.get(policy, []))
                    authz.namespaces[ns] = authz.namespaces.get(ns, set()) | caps
            else:
                level = _level(rule)
                old = authz.levels.get(resource)
                authz.levels[resource] = level if old is None else _merge(old, level)

    def resolve(self, secret: str) -> NomadAuthz | None:
        """The token's rights; the anonymous token when no secret is given; None for an unknown one."""
        if not secret:
            return self.anonymous
        return self.by_secret.get(secret)


# ------------------------------------------------------------------------------------------ Consul

SEGMENTED = ("node", "service", "key", "session", "agent", "event", "query")


@dataclass
class ConsulAuthz:
    accessor: str
    description: str
    management: bool = False
    exact: dict[str, dict[str, str]] = field(default_factory=dict)  # resource -> name -> policy
    prefix: dict[str, dict[str, str]] = field(default_factory=dict)  # resource -> prefix -> policy
    flat: dict[str, str] = field(default_factory=dict)  # operator, keyring, acl, mesh

    def policy_for(self, resource: str, name: str) -> str:
        if resource not in SEGMENTED:
            return self.flat.get(resource, "")
        exact = self.exact.get(resource, {})
        if name in exact:
            return exact[name]
        matches = [p for p in self.prefix.get(resource, {}) if name.startswith(p)]
        return self.prefix[resource][max(matches, key=len)] if matches else ""

    def allows(self, resource: str, name: str, level: str) -> bool:
        return self.management or _grants(self.policy_for(resource, name), level)

    def key_write_prefix(self, prefix: str) -> bool:
        """Consul's KeyWritePrefix: write on the prefix and no rule under it that takes write away."""
        if self.management:
            return True
        if not _grants(self.policy_for("key", prefix), "write"):
            return False
        under = [p for p in self.prefix.get("key", {}) if p.startswith(prefix) and p != prefix]
        under += [k for k in self.exact.get("key", {}) if k.startswith(prefix)]
        return all(_grants(self.policy_for("key", k), "write") for k in under)

    def denied(self, resource: str, level: str, name: str | None = None) -> str:
        """Consul's message for a refused request."""
        text = f"Permission denied: token with AccessorID '{self.accessor}' lacks permission '{resource}:{level}'"
        return text + (f' on "{name}"' if name is not None else "")


class ConsulACL:
    """Tokens by secret. `tokens` in node.json is a list of {AccessorID, SecretID, Description,
    Policies: [name, ...]} (a policy "global-management" makes a management token)."""

    def __init__(self, cfg: dict[str, Any] | None, internal: str) -> None:
        cfg = cfg or {}
        policies: dict[str, Any] = dict(cfg.get("policies") or {})
        self.by_secret: dict[str, ConsulAuthz] = {}
        if internal:
            self.by_secret[internal] = ConsulAuthz(str(uuid.uuid5(uuid.NAMESPACE_OID, "consul-internal")),
                                                   "lab internal", management=True)
        for tok in cfg.get("tokens") or []:
            names = [p["Name"] if isinstance(p, dict) else p for p in tok.get("Policies") or []]
            authz = ConsulAuthz(str(tok.get("AccessorID") or uuid.uuid4()), str(tok.get("Description", "")),
                                management=GLOBAL_MANAGEMENT in names)
            for pname in names:
                self._apply(authz, policies.get(pname) or {})
            self.by_secret[str(tok["SecretID"])] = authz
        self.anonymous = ConsulAuthz(ANONYMOUS_ACCESSOR, "Anonymous Token")

    @staticmethod
    def _apply(authz: ConsulAuthz, rules: dict[str, Any]) -> None:
        for key, rule in rules.items():
            if key.endswith("_prefix") and key[:-7] in SEGMENTED:
                table = authz.prefix.setdefault(key[:-7], {})
            elif key in SEGMENTED:
                table = authz.exact.setdefault(key, {})
            else:
                level = _level(rule)
                authz.flat[key] = _merge(authz.flat[key], level) if key in authz.flat else level
                continue
            for name, spec in (rule or {}).items():
                level = _level(spec)
                table[name] = _merge(table[name], level) if name in table else level

    def resolve(self, secret: str) -> ConsulAuthz | None:
        if not secret:
            return self.anonymous
        return self.by_secret.get(secret)
