"""OpenStack (one snapshot per run): every node's server ACTIVE in its project (VMs and masters in
apis.openstack.cloud, bare metal in apis.openstack.cloud_metal), the flavors, the masters in distinct
availability zones, the vdb volume of every VM agent."""

from __future__ import annotations

from acceptance.apifixtures import assert_reachable
from acceptance.checkspec import check
from acceptance.clients import openstack_api
from acceptance.clients.openstack_api import Server
from acceptance.clients.snapshot import Snapshot, Snapshots
from acceptance.inventory import CLUSTER, Expectations, Node
from acceptance.outcomes import CheckError
from remediation.fixtures import hard_reboot

RUNBOOK = {"master": "Creating a master", "agent": "Creating a agent"}
RUNBOOK_REBOOT = "Rebooting a Mesos server"


def _servers(snap: Snapshot, node: Node) -> tuple[list[Server], str]:
    project = openstack_api.project_of(node)
    servers: list[Server] = snap.get(f"servers:{project}")
    return servers, f"the {'physical nodes' if project == 'metal' else 'VM'} project ({snap.parts[f'cloud:{project}']})"


def _server(snap: Snapshot, node: Node) -> Server:
    servers, label = _servers(snap, node)
    found = openstack_api.find(servers, node.name)
    if len(found) != 1:
        raise AssertionError(openstack_api.active_problem(servers, node, label))
    return found[0]


@check("api.openstack.reachable", runbook=RUNBOOK["master"], severity="major", roles=[CLUSTER], needs=())
def test_reachable(snapshots: Snapshots) -> None:
    assert_reachable(snapshots.get("openstack"))


@check("node.openstack.active", runbook=RUNBOOK_REBOOT, severity="critical", remediation=hard_reboot,
       needs=())
def test_active(openstack_snapshot: Snapshot, node: Node) -> None:
    servers, label = _servers(openstack_snapshot, node)
    problem = openstack_api.active_problem(servers, node, label)
    assert problem is None, problem


@check("node.openstack.flavor", runbook=RUNBOOK, severity="minor", needs=())
def test_flavor(openstack_snapshot: Snapshot, node: Node, expect: Expectations) -> None:
    problem = openstack_api.flavor_problem(_server(openstack_snapshot, node), node, expect)
    assert problem is None, problem


@check("cluster.openstack.master-azs", runbook=RUNBOOK["master"], severity="major", roles=[CLUSTER], needs=())
def test_master_azs(openstack_snapshot: Snapshot, all_nodes: list[Node], expect: Expectations) -> None:
    masters = [n for n in all_nodes if n.role == "master"]
    if not masters:
        raise CheckError("no master in the inventory")
    problems = openstack_api.master_az_problems(openstack_snapshot.get("servers:vm"), masters,
                                                expect.availability_zones)
    assert not problems, "; ".join(problems)


@check("agent.openstack.vdb", runbook=RUNBOOK["agent"], severity="critical", roles=["agent"], kinds=["vm"],
       needs=())
def test_vdb(openstack_snapshot: Snapshot, node: Node) -> None:
    _server(openstack_snapshot, node)  # the server exists (else: the reason)
    devices: list[str] = openstack_snapshot.get(f"attachments:{node.name}")
    assert "/dev/vdb" in devices, (f"no volume attached as /dev/vdb to {node.name} "
                                   f"(attached: {', '.join(devices) or 'none'})")

