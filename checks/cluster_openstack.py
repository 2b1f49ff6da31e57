"""OpenStack (one snapshot per run): every node's server ACTIVE in its project (VMs and masters in
apis.openstack.cloud, bare metal in apis.openstack.cloud_metal), the flavors, the masters in distinct
availability zones, the vdb volume of every VM agent."""

from __future__ import annotations

from acceptance.checkspec import check
from acceptance.clients.openstack_api import OpenStackSnapshot, Project, Server
from acceptance.inventory import CLUSTER, Expectations, Node
from acceptance.judging import openstack as judge_openstack
from acceptance.outcomes import CheckError
from remediation.fixtures import hard_reboot

RUNBOOK = {"master": "Creating a master", "agent": "Creating a agent"}
RUNBOOK_REBOOT = "Rebooting a Mesos server"


def _project(snap: OpenStackSnapshot, node: Node) -> tuple[Project, str]:
    metal = judge_openstack.project_of(node) == "metal"
    project = snap.metal if metal else snap.vm
    return project, f"the {'physical nodes' if metal else 'VM'} project ({project.label})"


def _server(snap: OpenStackSnapshot, node: Node) -> Server:
    project, label = _project(snap, node)
    found = judge_openstack.find(project.servers, node.name)
    if len(found) != 1:
        raise AssertionError(judge_openstack.active_problem(project.servers, node, label))
    return found[0]


@check("node.openstack.active", runbook=RUNBOOK_REBOOT, severity="critical", remediation=hard_reboot,
       needs=())
def test_active(openstack_snapshot: OpenStackSnapshot, node: Node) -> None:
    project, label = _project(openstack_snapshot, node)
    problem = judge_openstack.active_problem(project.servers, node, label)
    assert problem is None, problem


@check("node.openstack.flavor", runbook=RUNBOOK, severity="minor", needs=())
def test_flavor(openstack_snapshot: OpenStackSnapshot, node: Node, expect: Expectations) -> None:
    problem = judge_openstack.flavor_problem(_server(openstack_snapshot, node), node, expect)
    assert problem is None, problem


@check("cluster.openstack.master-azs", runbook=RUNBOOK["master"], severity="major", roles=[CLUSTER], needs=())
def test_master_azs(openstack_snapshot: OpenStackSnapshot, all_nodes: list[Node], expect: Expectations) -> None:
    masters = [n for n in all_nodes if n.role == "master"]
    if not masters:
        raise CheckError("no master in the inventory")
    problems = judge_openstack.master_az_problems(openstack_snapshot.vm.servers, masters, expect.availability_zones)
    assert not problems, "; ".join(problems)


@check("agent.openstack.vdb", runbook=RUNBOOK["agent"], severity="critical", roles=["agent"], kinds=["vm"],
       needs=())
def test_vdb(openstack_snapshot: OpenStackSnapshot, node: Node) -> None:
    _server(openstack_snapshot, node)  # the server exists (else: the reason)
    devices = openstack_snapshot.attachments.of(node.name)
    assert "/dev/vdb" in devices, (f"no volume attached as /dev/vdb to {node.name} "
                                   f"(attached: {', '.join(devices) or 'none'})")
