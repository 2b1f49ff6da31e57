"""Fault injection: one command per fault, each with its heal. A fault changes the lab the way the
real failure would (a stopped unit, a sealed Vault, a node off the network, an OpenStack stop); the
suite observes it only through ssh and the real APIs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import cluster, labapi
from .configs import server_label
from .dockerctl import LabError, docker, inspect, node_exec
from .topology import AZS, BUILD_MIN_FREE_GIB, BUILDER_IMAGE, NETWORK, PROJECT_VMS, STATE, Node, stable_id

CGROUP_ARG = "systemd.unified_cgroup_hierarchy=0"
BROKEN_PP = "/etc/puppet/code/environments/production/manifests/zz-lab-broken.pp"
ORPHAN = "alibuild99"
ORPHAN_IP = "172.30.1.250"


@dataclass(frozen=True)
class Fault:
    doc: str
    inject: Callable[[Node, str], str]
    heal: Callable[[Node, str], str]
    roles: tuple[str, ...] = ("master", "agent")
    needs_node: bool = True


def _exec(node: Node, script: str, timeout: float = 120) -> str:
    return node_exec(node.name, script, timeout=timeout)


def _wait_ssh(node: Node) -> None:
    cluster.wait_for(f"sshd on {node.name}", lambda: cluster.ssh_port_open(node.ip), 240, 2)


def _reboot_via_openstack(node: Node) -> None:
    """A hard reboot through Nova, as an operator would do it; waits for ACTIVE and ssh."""
    status, _ = labapi.nova("POST", node.project, f"/servers/{node.server_id}/action", {"reboot": {"type": "HARD"}})
    if status != 202:
        raise LabError(f"Nova refused the reboot of {node.name} (HTTP {status})")
    _wait_active(node)


def _wait_active(node: Node) -> None:
    def active() -> bool:
        status, body = labapi.nova("GET", node.project, f"/servers/{node.server_id}")
        return status == 200 and body["server"]["status"] == "ACTIVE"

    cluster.wait_for(f"{node.name} ACTIVE", active, 180, 2)
    _wait_ssh(node)
    if node.role == "master":
        cluster.unseal_all(cluster.current())


# --- units
def _units(unit: str) -> str:
    # docker.socket would start docker.service again at the first `docker` command: stop it too
    return "docker.socket docker.service" if unit in ("docker", "docker.service") else unit


def _stop_unit(unit: str) -> Callable[[Node, str], str]:
    def inject(node: Node, _: str) -> str:
        _exec(node, f"systemctl stop {_units(unit)}")
        return f"{unit} stopped on {node.name}"

    return inject


def _start_unit(unit: str) -> Callable[[Node, str], str]:
    def heal(node: Node, _: str) -> str:
        _exec(node, f"systemctl start {_units(unit)}")
        if unit == "vault":
            cluster.unseal_all(cluster.current())
        return f"{unit} started on {node.name}"

    return heal


# --- leaders
def _leader_of(service: str) -> Node:
    topo = cluster.current()
    for m in topo.masters:
        if service == "nomad":
            status, body = labapi.nomad("GET", m.ip, "/v1/status/leader")
        elif service == "consul":
            status, body = labapi.consul("GET", m.ip, "/v1/status/leader")
        else:
            status, body = labapi.vault("GET", m.ip, "/v1/sys/leader")
            body = (body or {}).get("leader_address", "") if status == 200 else ""
        if status == 200 and body:
            ip = body.split("//")[-1].split(":")[0]
            return next(n for n in topo.masters if n.ip == ip)
    raise LabError(f"{service} has no leader to kill")


def _kill_leader(service: str) -> Callable[[Node, str], str]:
    def inject(_node: Node, _: str) -> str:
        leader = _leader_of(service)
        _exec(leader, f"systemctl stop {service}")
        return f"{service} stopped on its leader {leader.name}"

    return inject


def _restart_everywhere(service: str) -> Callable[[Node, str], str]:
    def heal(_node: Node, _: str) -> str:
        for m in cluster.current().masters:
            _exec(m, f"systemctl start {service}")
        if service == "vault":
            cluster.unseal_all(cluster.current())
        return f"{service} running on every master"

    return heal


# --- Vault
def _seal(node: Node, _: str) -> str:
    init = labapi.vault_init()
    if not init:
        raise LabError("OpenBao is not initialised; run `python -m tests.lab up` first")
    status, _body = labapi.vault("PUT", node.ip, "/v1/sys/seal", token=init["root_token"], timeout=30)
    if status != 204:
        raise LabError(f"sealing OpenBao on {node.name} failed with HTTP {status}")
    return f"OpenBao sealed on {node.name}"


def _unseal(node: Node, _: str) -> str:
    cluster.unseal_all(cluster.current())
    return "OpenBao unsealed on every master"


# --- network and power
def _partition(node: Node, _: str) -> str:
    docker("network", "disconnect", NETWORK, node.name, timeout=60)
    return f"{node.name} is off the network"


def _reconnect(node: Node, _: str) -> str:
    info = inspect(node.name)
    if info and NETWORK not in info["NetworkSettings"]["Networks"]:
        docker("network", "connect", "--ip", node.ip, NETWORK, node.name, timeout=60)
    _wait_ssh(node)
    return f"{node.name} is back on the network"


def _power_off(node: Node, _: str) -> str:
    status, _body = labapi.nova("POST", node.project, f"/servers/{node.server_id}/action", {"os-stop": None})
    if status != 202:
        raise LabError(f"Nova refused to stop {node.name} (HTTP {status})")

    def shutoff() -> bool:
        st, body = labapi.nova("GET", node.project, f"/servers/{node.server_id}")
        return st == 200 and body["server"]["status"] == "SHUTOFF"

    cluster.wait_for(f"{node.name} SHUTOFF", shutoff, 120, 2)
    return f"{node.name} powered off through OpenStack"


def _power_on(node: Node, _: str) -> str:
    st, body = labapi.nova("GET", node.project, f"/servers/{node.server_id}")
    if st == 200 and body["server"]["status"] == "SHUTOFF":
        labapi.nova("POST", node.project, f"/servers/{node.server_id}/action", {"os-start": None})
    _wait_active(node)
    return f"{node.name} powered on"


# --- agents' software
def _rmi(node: Node, _: str) -> str:
    _exec(node, f"docker rmi -f {BUILDER_IMAGE}")
    return f"{BUILDER_IMAGE} removed from {node.name}"


def _pull(node: Node, _: str) -> str:
    _exec(node, f"docker pull -q {BUILDER_IMAGE}", timeout=300)
    return f"{BUILDER_IMAGE} pulled on {node.name}"


def _break_puppet(node: Node, _: str) -> str:
    manifest = "exec { 'lab-broken-hostgroup-change': command => '/bin/false', path => ['/bin'] }"
    _exec(node, f'echo "{manifest}" > {BROKEN_PP}; puppet agent -t -v >/dev/null 2>&1; true', timeout=300)
    return f"puppet fails on {node.name}"


def _fix_puppet(node: Node, _: str) -> str:
    _exec(node, f"rm -f {BROKEN_PP}; puppet agent -t -v >/dev/null 2>&1; true", timeout=300)
    return f"puppet clean on {node.name}"


def _stale_puppet(node: Node, _: str) -> str:
    # The puppet timer stopped three hours ago: the last summary stays as it was, only older.
    _exec(
        node,
        "systemctl stop puppet-run.timer; f=/opt/puppetlabs/puppet/public/last_run_summary.yaml; "
        'sed -i "s/^  last_run: .*/  last_run: $(( $(date +%s) - 3 * 3600 ))/" $f',
    )
    return f"puppet last ran three hours ago on {node.name}"


def _fresh_puppet(node: Node, _: str) -> str:
    _exec(node, "systemctl start puppet-run.timer; puppet agent -t -v >/dev/null 2>&1; true", timeout=300)
    return f"puppet ran now on {node.name}"


def _drop_cgroup_arg(node: Node, _: str) -> str:
    _exec(node, f"sed -i 's/ {CGROUP_ARG}//' /etc/default/grub")
    return f"{CGROUP_ARG} dropped from {node.name}'s boot configuration (effective at next boot)"


def _restore_cgroup_arg(node: Node, _: str) -> str:
    _exec(
        node,
        f"grep -q '{CGROUP_ARG}' /etc/default/grub || "
        f'sed -i \'s/^GRUB_CMDLINE_LINUX="\\(.*\\)"/GRUB_CMDLINE_LINUX="\\1 {CGROUP_ARG}"/\' /etc/default/grub',
    )
    if CGROUP_ARG not in _exec(node, "cat /proc/cmdline"):
        _reboot_via_openstack(node)
    return f"{CGROUP_ARG} back on {node.name}'s kernel command line"


def _fill_build(node: Node, _: str) -> str:
    if not node.has_vdb:
        raise LabError(f"fill-build needs a VM agent with its /build volume; {node.name} has none")
    avail = int(_exec(node, "df -B1 --output=avail /build | tail -1").strip())
    keep = int(BUILD_MIN_FREE_GIB * 2**30 / 4)  # leave a quarter of the floor free
    _exec(node, f"fallocate -l {max(avail - keep, 1)} /build/nomad/lab-fill.img")
    return f"/build on {node.name} filled"


def _empty_build(node: Node, _: str) -> str:
    _exec(node, "rm -f /build/nomad/lab-fill.img")
    return f"/build on {node.name} emptied"


def _unmount_build(node: Node, _: str) -> str:
    if not node.has_vdb:
        raise LabError(f"unmount-build needs a VM agent with its /build volume; {node.name} has none")
    _exec(node, "umount -l /build")
    return f"the vdb volume is no longer mounted on /build on {node.name}"


def _remount_build(node: Node, _: str) -> str:
    if not _exec(node, "findmnt -n /build; true").strip():
        _reboot_via_openstack(node)  # the volume comes back at boot, as from fstab
    return f"/build mounted on {node.name}"


# --- TSM backups
def _fail_backup(node: Node, _: str) -> str:
    # The node's TSM registration expires: the server rejects it and the scheduled backup fails.
    _exec(node, "mv -f /etc/adsm/TSM.PWD /etc/adsm/TSM.PWD.expired; systemctl restart dsmcad; sleep 2")
    return f"TSM backups of {node.name} fail"


def _fix_backup(node: Node, _: str) -> str:
    _exec(
        node,
        "test -f /etc/adsm/TSM.PWD.expired && mv -f /etc/adsm/TSM.PWD.expired /etc/adsm/TSM.PWD; "
        "systemctl restart dsmcad; sleep 2",
    )
    return f"TSM backups of {node.name} succeed"


def _stale_backup(node: Node, _: str) -> str:
    script = (
        "import json,time\n"
        "p='/var/lib/tsm-lab/filespaces.json'\n"
        "d=json.load(open(p))\n"
        "for fs in d.values(): fs['last_incr']=time.time()-3*86400\n"
        "json.dump(d,open(p,'w'))\n"
    )
    _exec(node, f'python3 -c "{script}"')
    return f"the last backup of {node.name} is three days old"


def _fresh_backup(node: Node, _: str) -> str:
    _exec(node, "dsmc incremental >/dev/null")
    return f"{node.name} backed up now"


# --- Nomad
def _drain(node: Node, _: str) -> str:
    nid = stable_id("nomad-node", node.name)
    m = cluster.current().masters[0]
    spec = {"DrainSpec": {"Deadline": 3600 * 10**9, "IgnoreSystemJobs": False}, "Meta": {"message": "lab fault"}}
    status, _body = labapi.nomad("POST", m.ip, f"/v1/node/{nid}/drain", spec)
    if status != 200:
        raise LabError(f"Nomad refused to drain {node.name} (HTTP {status})")
    return f"{node.name} draining in Nomad"


def _undrain(node: Node, _: str) -> str:
    nid = stable_id("nomad-node", node.name)
    m = cluster.current().masters[0]
    labapi.nomad("POST", m.ip, f"/v1/node/{nid}/drain", {"DrainSpec": None, "MarkEligible": True})
    labapi.nomad("POST", m.ip, f"/v1/node/{nid}/eligibility", {"Eligibility": "eligible"})
    return f"{node.name} eligible in Nomad"


# --- OpenStack
def _orphan(_node: Node, name: str) -> str:
    orphan = Node(name or ORPHAN, "agent", ORPHAN_IP, "vm", AZS[1])
    if inspect(orphan.name) is None:
        docker(
            "run",
            "-d",
            "--name",
            orphan.name,
            "--hostname",
            orphan.name,
            "--network",
            NETWORK,
            "--ip",
            orphan.ip,
            "--init",
            "--label",
            f"{cluster.LABEL}={STATE}",
            "--label",
            f"alicelab.server={server_label(orphan)}",
            "alicelab/builder:latest",
            "sleep",
            "1000000",
            timeout=120,
        )
    return f"OpenStack server {orphan.name} exists in {PROJECT_VMS} without being a Nomad node"


def _remove_orphan(_node: Node, name: str) -> str:
    docker("rm", "-f", name or ORPHAN, timeout=60, check=False)
    return f"OpenStack server {name or ORPHAN} deleted"


def _wrong_az(node: Node, _: str) -> str:
    others = [m.az for m in cluster.current().masters if m.name != node.name]
    if labapi.lab_override("PATCH", f"/lab/servers/{node.name}", {"az": others[0]}) not in (200, 204):
        raise LabError("the OpenStack emulator refused the override")
    return f"{node.name} reported in {others[0]}, beside another master"


def _right_az(node: Node, _: str) -> str:
    labapi.lab_override("DELETE", f"/lab/servers/{node.name}/override")
    return f"{node.name} back in its own availability zone"


def _stale_cmdline(node: Node, _: str) -> str:
    # booted before the boot configuration had the argument: /proc/cmdline (bind-mounted from this file by
    # alicelab-boot) lacks it while /etc/default/grub has it; a reboot applies it
    if CGROUP_ARG not in _exec(node, "cat /etc/default/grub"):
        raise LabError(f"{node.name}'s boot configuration lacks {CGROUP_ARG}: run puppet first")
    # written through the bind mount itself (a new file would not be the mounted one)
    _exec(node, f"c=$(sed 's/ {CGROUP_ARG}//' /proc/cmdline); printf '%s\\n' \"$c\" > /proc/cmdline")
    return f"{node.name} runs without {CGROUP_ARG} while its boot configuration has it (reboot to apply)"


def _reboot_if_needed(node: Node, _: str) -> str:
    if CGROUP_ARG not in _exec(node, "cat /proc/cmdline"):
        _reboot_via_openstack(node)
    return f"{node.name} booted with {CGROUP_ARG}"


def _hang(node: Node, _: str) -> str:
    # the node stops answering ping and ssh (a hung kernel, a dead NIC) until it is power-cycled
    _exec(node, "ip link set eth0 down")
    return f"{node.name} hangs: no ping, no ssh, until a hard reboot through OpenStack"


def _power_cycle(node: Node, _: str) -> str:
    _reboot_via_openstack(node)
    return f"{node.name} hard-rebooted through OpenStack"


# --- monitoring
def _monit(verb: str) -> Callable[[Node, str], str]:
    def act(_node: Node, _: str) -> str:
        docker(verb, "alicelab-monit", timeout=60)
        return f"MONIT stand-in: docker {verb} done"

    return act


FAULTS: dict[str, Fault] = {
    "stop-unit:<unit>": Fault("stop a systemd unit on NODE", lambda n, a: "", lambda n, a: ""),
    "seal-vault": Fault("seal OpenBao on master NODE", _seal, _unseal, ("master",)),
    "kill-leader:<nomad|consul|vault>": Fault(
        "stop the service on its current leader", lambda n, a: "", lambda n, a: "", needs_node=False
    ),
    "partition": Fault("cut NODE off the network", _partition, _reconnect),
    "power-off": Fault("stop NODE through the OpenStack API", _power_off, _power_on),
    "remove-builder-image": Fault("remove the builder image from agent NODE", _rmi, _pull, ("agent",)),
    "break-puppet": Fault("make puppet runs on NODE fail", _break_puppet, _fix_puppet),
    "stale-puppet": Fault("puppet has not run on NODE for three hours", _stale_puppet, _fresh_puppet),
    "unmount-build": Fault(
        "the vdb volume of VM agent NODE is not mounted on /build (heal: reboot)",
        _unmount_build,
        _remount_build,
        ("agent",),
    ),
    "drop-cgroup-arg": Fault(
        "drop the cgroup kernel argument from NODE's boot configuration (next boot)",
        _drop_cgroup_arg,
        _restore_cgroup_arg,
        ("agent",),
    ),
    "fill-build": Fault(
        "fill /build on VM agent NODE below the free-space floor", _fill_build, _empty_build, ("agent",)
    ),
    "fail-backup": Fault("TSM rejects master NODE (expired registration)", _fail_backup, _fix_backup, ("master",)),
    "stale-backup": Fault(
        "the last backup of master NODE is three days old", _stale_backup, _fresh_backup, ("master",)
    ),
    "unexpected-drain": Fault("drain agent NODE in Nomad with nobody's say-so", _drain, _undrain, ("agent",)),
    "orphan-server": Fault(
        "an OpenStack build VM (NODE, default alibuild99) that is no Nomad node",
        _orphan,
        _remove_orphan,
        needs_node=False,
    ),
    "wrong-az": Fault("master NODE reported in another master's availability zone", _wrong_az, _right_az, ("master",)),
    "target-down": Fault(
        "stop NODE's node exporter: a Prometheus target down",
        _stop_unit("prometheus-node-exporter"),
        _start_unit("prometheus-node-exporter"),
    ),
    "stale-cmdline": Fault("agent NODE booted without the cgroup kernel argument its boot configuration has",
                           _stale_cmdline, _reboot_if_needed, ("agent",)),
    "hang": Fault("NODE stops answering ping and ssh until a hard reboot through OpenStack", _hang, _power_cycle),
    "monit-down": Fault(
        "stop the MONIT stand-in: remote_write fails", _monit("stop"), _monit("start"), needs_node=False
    ),
}


def _resolve(name: str) -> tuple[Fault, str]:
    kind, _, arg = name.partition(":")
    if kind == "stop-unit" and arg:
        return Fault(f"stop {arg}", _stop_unit(arg), _start_unit(arg)), arg
    if kind == "kill-leader" and arg in ("nomad", "consul", "vault"):
        return Fault(f"kill the {arg} leader", _kill_leader(arg), _restart_everywhere(arg), ("master",), False), arg
    if name in FAULTS and ":" not in name:
        return FAULTS[name], ""
    raise LabError(f"unknown fault {name!r}; `python -m tests.lab faults` lists them")


def _target(fault: Fault, node_name: str) -> Node:
    topo = cluster.current()
    if not node_name:
        if fault.needs_node:
            raise LabError("this fault needs a NODE, e.g. alibuild01")
        return topo.masters[0]
    try:
        node = topo.get(node_name)
    except KeyError:
        if not fault.needs_node:
            return Node(node_name, "agent", ORPHAN_IP)
        raise LabError(f"no node {node_name!r} in the lab ({', '.join(n.name for n in topo.nodes)})") from None
    if node.role not in fault.roles:
        raise LabError(f"this fault applies to {' or '.join(fault.roles)} nodes; {node_name} is a {node.role}")
    return node


def inject(name: str, node_name: str = "") -> str:
    fault, _arg = _resolve(name)
    node = _target(fault, node_name)
    return fault.inject(node, node_name if not fault.needs_node else "")


def heal(name: str, node_name: str = "") -> str:
    fault, _arg = _resolve(name)
    node = _target(fault, node_name)
    return fault.heal(node, node_name if not fault.needs_node else "")


def reboot(node_name: str) -> str:
    """A hard reboot through OpenStack (for faults that take effect at the next boot)."""
    node = cluster.current().get(node_name)
    _reboot_via_openstack(node)
    return f"{node_name} rebooted"
