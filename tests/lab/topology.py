"""Who is in the lab: names, roles, addresses and OpenStack placement of every container."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / ".lab"
NETWORK = "alicelab"
SUBNET = "172.30.0.0/16"
CLUSTER = "alicelab"

PROJECT_VMS = "ALICE Release Testing"
PROJECT_METAL = "ALICE Release Testing - physical nodes"
AZS = ["cern-geneva-a", "cern-geneva-b", "cern-geneva-c"]
MASTER_FLAVOR = "m2.large"
VM_FLAVOR = "m2.2xlarge"
METAL_FLAVOR = "p1.dl7426795.S513-V-IP52"
IMAGE_NAME = "ALMA9 - x86_64 [2026-11-01]"

# Nodes and services are named as in production, by host name: <name>.alicelab.test, resolved by Docker's DNS on
# the lab network and, on this machine, by a block of /etc/hosts (hosts.py). `.test` is reserved (RFC 2606):
# a lab name can never reach another machine, even when the block is missing.
DOMAIN = "alicelab.test"
OPENSTACK_HOST = f"openstack.{DOMAIN}"
MONIT_HOST = f"monit.{DOMAIN}"
REGISTRY_IP = "172.30.0.5"
OPENSTACK_IP = "172.30.0.6"
MONIT_IP = "172.30.0.7"
BUILDER_IMAGE = "registry.cern.ch/alisw/slc9-builder"
# The lab's /build volumes are small tmpfs; the inventory asks for a free-space floor to match.
BUILD_SIZE = "1g"
BUILD_MIN_FREE_GIB = 0.5

# Fixed UUIDs derived from names: a recreated container keeps its Nomad node and raft IDs.
_NS = uuid.UUID("6f1c5d52-3b1e-4c8f-9d55-0a11ce1ab000")


def stable_id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


@dataclass(frozen=True)
class Node:
    name: str
    role: str  # master | agent
    ip: str
    kind: str | None = None  # vm | metal for agents
    az: str = AZS[0]

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def project(self) -> str:
        return PROJECT_METAL if self.kind == "metal" else PROJECT_VMS

    @property
    def flavor(self) -> str:
        return {"master": MASTER_FLAVOR, "vm": VM_FLAVOR, "metal": METAL_FLAVOR}[self.kind or self.role]

    @property
    def has_vdb(self) -> bool:
        return self.kind == "vm"

    @property
    def server_id(self) -> str:
        return stable_id("server", self.name)


@dataclass
class Topology:
    masters: list[Node] = field(default_factory=list)
    agents: list[Node] = field(default_factory=list)

    @property
    def nodes(self) -> list[Node]:
        return self.masters + self.agents

    def get(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def topology(vm_agents: int = 2) -> Topology:
    """Three masters, `vm_agents` VM agents alibuildNN and one physical agent alimetal01."""
    if not 1 <= vm_agents <= 250:
        raise ValueError("--agents must be between 1 and 250")
    masters = [Node(f"alimesos0{i}", "master", f"172.30.0.1{i}", az=AZS[i - 1]) for i in (1, 2, 3)]
    agents = [
        Node(f"alibuild{i:02d}", "agent", f"172.30.1.{i}", "vm", AZS[(i - 1) % 3]) for i in range(1, vm_agents + 1)
    ]
    agents.append(Node("alimetal01", "agent", "172.30.2.1", "metal", AZS[0]))
    return Topology(masters, agents)
