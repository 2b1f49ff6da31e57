"""Fault injection: one command per fault, each with its heal. A fault changes the lab the way the
real failure would (a stopped unit, a sealed Vault, a node off the network, an OpenStack stop, a failing
allocation, a client that stops heartbeating); the suite observes it only through ssh and the real APIs.

Every fault's NODE argument is checked before anything is done (LabError, one line): a fault that acts on
a node needs an existing node of the right role, one that acts on the cluster takes none, and
`orphan-server` takes the name of a build VM that is NOT a node of the lab (default alibuild99)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import cluster, labapi
from .configs import EXHAUSTIBLE_JOB, server_label
from .dockerctl import LabError, docker, inspect, node_exec
from .emulators.nomad import DISCONNECT_FLAG, FAIL_FLAG, FAULT_DIR, VERSION_FLAG
from .topology import AZS, BUILD_MIN_FREE_GIB, BUILDER_IMAGE, NETWORK, PROJECT_VMS, STATE, Node, stable_id

CGROUP_ARG = "systemd.unified_cgroup_hierarchy=0"
BROKEN_PP = "/etc/puppet/code/environments/production/manifests/zz-lab-broken.pp"
ORPHAN = "alibuild99"
ORPHAN_IP = "172.30.1.250"
BUILD_VM_NAME = re.compile(r"alibuild\d{2,3}")
UNIT_NAME = re.compile(r"[A-Za-z0-9@_.:-]+")
SERVICES = ("nomad", "consul", "vault")

Action = Callable[[Node], str]


@dataclass(frozen=True)
class Fault:
    doc: str
    inject: Action
    heal: Action
    roles: tuple[str, ...] = ("master", "agent")
    # "node": an existing node of one of `roles`; "none": no NODE (the fault acts on the cluster);
    # "new-vm": a build VM name that is not a node of the lab (default ORPHAN)
    target: str = "node"


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
def _unit(unit: str) -> tuple[Action, Action]:
    """Stop a systemd unit on the node; the heal starts it again."""

    # docker.socket would start docker.service again at the first `docker` command: it stops with it
    units = "docker.socket docker.service" if unit in ("docker", "docker.service") else unit

    def stop(node: Node) -> str:
        _exec(node, f"systemctl stop {units}")
        return f"{unit} stopped on {node.name}"

    def start(node: Node) -> str:
        _exec(node, f"systemctl start {units}")
        if unit == "vault":
            cluster.unseal_all(cluster.current())
        return f"{unit} started on {node.name}"

    return stop, start


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
            host = body.split("//")[-1].split(":")[0]  # Nomad and Consul say an IP, OpenBao its api_addr's name
            return next(n for n in topo.masters if host in (n.ip, n.fqdn))
    raise LabError(f"{service} has no leader to kill")


def _kill_leader(service: str) -> tuple[Action, Action]:
    """Stop the service on its current leader; the heal starts it on every master."""

    def kill(_node: Node) -> str:
        leader = _leader_of(service)
        _exec(leader, f"systemctl stop {service}")
        return f"{service} stopped on its leader {leader.name}"

    def restart(_node: Node) -> str:
        for m in cluster.current().masters:
            _exec(m, f"systemctl start {service}")
        if service == "vault":
            cluster.unseal_all(cluster.current())
        return f"{service} running on every master"

    return kill, restart


# --- Vault
def _seal(node: Node) -> str:
    init = labapi.vault_init()
    if not init:
        raise LabError("OpenBao is not initialised; run `python -m tests.lab up` first")
    status, _body = labapi.vault("PUT", node.ip, "/v1/sys/seal", token=init["root_token"], timeout=30)
    if status != 204:
        raise LabError(f"sealing OpenBao on {node.name} failed with HTTP {status}")
    return f"OpenBao sealed on {node.name}"


def _unseal(node: Node) -> str:
    cluster.unseal_all(cluster.current())
    return "OpenBao unsealed on every master"


# --- network and power
def _partition(node: Node) -> str:
    docker("network", "disconnect", NETWORK, node.name, timeout=60)
    return f"{node.name} is off the network"


def _reconnect(node: Node) -> str:
    info = inspect(node.name)
    if info and NETWORK not in info["NetworkSettings"]["Networks"]:
        docker("network", "connect", "--ip", node.ip, "--alias", node.fqdn, NETWORK, node.name, timeout=60)
    _wait_ssh(node)
    return f"{node.name} is back on the network"


def _power_off(node: Node) -> str:
    status, _body = labapi.nova("POST", node.project, f"/servers/{node.server_id}/action", {"os-stop": None})
    if status != 202:
        raise LabError(f"Nova refused to stop {node.name} (HTTP {status})")

    def shutoff() -> bool:
        st, body = labapi.nova("GET", node.project, f"/servers/{node.server_id}")
        return st == 200 and body["server"]["status"] == "SHUTOFF"

    cluster.wait_for(f"{node.name} SHUTOFF", shutoff, 120, 2)
    return f"{node.name} powered off through OpenStack"


def _power_on(node: Node) -> str:
    st, body = labapi.nova("GET", node.project, f"/servers/{node.server_id}")
    if st == 200 and body["server"]["status"] == "SHUTOFF":
        labapi.nova("POST", node.project, f"/servers/{node.server_id}/action", {"os-start": None})
    _wait_active(node)
    return f"{node.name} powered on"


# --- agents' software
def _rmi(node: Node) -> str:
    _exec(node, f"docker rmi -f {BUILDER_IMAGE}")
    return f"{BUILDER_IMAGE} removed from {node.name}"


def _pull(node: Node) -> str:
    _exec(node, f"docker pull -q {BUILDER_IMAGE}", timeout=300)
    return f"{BUILDER_IMAGE} pulled on {node.name}"


def _break_puppet(node: Node) -> str:
    manifest = "exec { 'lab-broken-hostgroup-change': command => '/bin/false', path => ['/bin'] }"
    _exec(node, f'echo "{manifest}" > {BROKEN_PP}; puppet agent -t -v >/dev/null 2>&1; true', timeout=300)
    return f"puppet fails on {node.name}"


def _fix_puppet(node: Node) -> str:
    _exec(node, f"rm -f {BROKEN_PP}; puppet agent -t -v >/dev/null 2>&1; true", timeout=300)
    return f"puppet clean on {node.name}"


def _stale_puppet(node: Node) -> str:
    # The puppet timer stopped three hours ago: the last summary stays as it was, only older.
    _exec(
        node,
        "systemctl stop puppet-run.timer; f=/opt/puppetlabs/puppet/public/last_run_summary.yaml; "
        'sed -i "s/^  last_run: .*/  last_run: $(( $(date +%s) - 3 * 3600 ))/" $f',
    )
    return f"puppet last ran three hours ago on {node.name}"


def _fresh_puppet(node: Node) -> str:
    _exec(node, "systemctl start puppet-run.timer; puppet agent -t -v >/dev/null 2>&1; true", timeout=300)
    return f"puppet ran now on {node.name}"


def _drop_cgroup_arg(node: Node) -> str:
    _exec(node, f"sed -i 's/ {CGROUP_ARG}//' /etc/default/grub")
    return f"{CGROUP_ARG} dropped from {node.name}'s boot configuration (effective at next boot)"


def _restore_cgroup_arg(node: Node) -> str:
    _exec(
        node,
        f"grep -q '{CGROUP_ARG}' /etc/default/grub || "
        f'sed -i \'s/^GRUB_CMDLINE_LINUX="\\(.*\\)"/GRUB_CMDLINE_LINUX="\\1 {CGROUP_ARG}"/\' /etc/default/grub',
    )
    if CGROUP_ARG not in _exec(node, "cat /proc/cmdline"):
        _reboot_via_openstack(node)
    return f"{CGROUP_ARG} back on {node.name}'s kernel command line"


def _fill_build(node: Node) -> str:
    if not node.has_vdb:
        raise LabError(f"fill-build needs a VM agent with its /build volume; {node.name} has none")
    avail = int(_exec(node, "df -B1 --output=avail /build | tail -1").strip())
    keep = int(BUILD_MIN_FREE_GIB * 2**30 / 4)  # leave a quarter of the floor free
    _exec(node, f"fallocate -l {max(avail - keep, 1)} /build/nomad/lab-fill.img")
    return f"/build on {node.name} filled"


def _empty_build(node: Node) -> str:
    _exec(node, "rm -f /build/nomad/lab-fill.img")
    return f"/build on {node.name} emptied"


def _unmount_build(node: Node) -> str:
    if not node.has_vdb:
        raise LabError(f"unmount-build needs a VM agent with its /build volume; {node.name} has none")
    _exec(node, "umount -l /build")
    return f"the vdb volume is no longer mounted on /build on {node.name}"


def _remount_build(node: Node) -> str:
    if not _exec(node, "findmnt -n /build; true").strip():
        _reboot_via_openstack(node)  # the volume comes back at boot, as from fstab
    return f"/build mounted on {node.name}"


# --- TSM backups
def _fail_backup(node: Node) -> str:
    # The node's TSM registration expires: the server rejects it and the scheduled backup fails.
    _exec(node, "mv -f /etc/adsm/TSM.PWD /etc/adsm/TSM.PWD.expired; systemctl restart dsmcad; sleep 2")
    return f"TSM backups of {node.name} fail"


def _fix_backup(node: Node) -> str:
    _exec(
        node,
        "test -f /etc/adsm/TSM.PWD.expired && mv -f /etc/adsm/TSM.PWD.expired /etc/adsm/TSM.PWD; "
        "systemctl restart dsmcad; sleep 2",
    )
    return f"TSM backups of {node.name} succeed"


def _stale_backup(node: Node) -> str:
    script = (
        "import json,time\n"
        "p='/var/lib/tsm-lab/filespaces.json'\n"
        "d=json.load(open(p))\n"
        "for fs in d.values(): fs['last_incr']=time.time()-3*86400\n"
        "json.dump(d,open(p,'w'))\n"
    )
    _exec(node, f'python3 -c "{script}"')
    return f"the last backup of {node.name} is three days old"


def _fresh_backup(node: Node) -> str:
    _exec(node, "dsmc incremental >/dev/null")
    return f"{node.name} backed up now"


# --- Nomad
def _nomad(method: str, path: str, body: object = None) -> tuple[int, object]:
    """A Nomad call with the lab's internal (management) token, through the first master that answers (another
    fault may have stopped one), as the CLI fails over between its servers."""
    answer: tuple[int, object] = (0, None)
    for master in cluster.current().masters:
        answer = labapi.nomad(method, master.ip, path, body)
        if 0 < answer[0] < 500:
            return answer
    return answer


def _drain(node: Node) -> str:
    nid = stable_id("nomad-node", node.name)
    spec = {"DrainSpec": {"Deadline": 3600 * 10**9, "IgnoreSystemJobs": False}, "Meta": {"message": "lab fault"}}
    status, _body = _nomad("POST", f"/v1/node/{nid}/drain", spec)
    if status != 200:
        raise LabError(f"Nomad refused to drain {node.name} (HTTP {status})")
    return f"{node.name} draining in Nomad"


def _undrain(node: Node) -> str:
    nid = stable_id("nomad-node", node.name)
    _nomad("POST", f"/v1/node/{nid}/drain", {"DrainSpec": None, "MarkEligible": True})
    _nomad("POST", f"/v1/node/{nid}/eligibility", {"Eligibility": "eligible"})
    return f"{node.name} eligible in Nomad"


# --- Nomad clients (flags in FAULT_DIR on the agent, which its client emulator watches)
def _set_flag(node: Node, flag: str, text: str = "") -> None:
    _exec(node, f"mkdir -p {FAULT_DIR} && printf '%s' '{text}' > {FAULT_DIR}/{flag}")


def _clear_flag(node: Node, flag: str) -> None:
    _exec(node, f"rm -f {FAULT_DIR}/{flag}")


def _ci_allocations(node: Node) -> list[str]:
    nid = stable_id("nomad-node", node.name)
    status, allocs = _nomad("GET", f"/v1/node/{nid}/allocations")
    if status != 200 or not isinstance(allocs, list):
        raise LabError(f"Nomad did not list the allocations of {node.name} (HTTP {status})")
    return [a["JobID"] for a in allocs
            if a["JobID"].startswith("ci-") and a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"]


def agent_running_ci() -> str:
    """An agent that runs a CI allocation now: where those run depends on the faults healed before (a rescheduled
    allocation lands wherever Nomad places it)."""
    for agent in cluster.current().agents:
        if agent.kind == "vm" and _ci_allocations(agent):
            return agent.name
    raise LabError("no CI allocation runs on any agent; `nomad job status` shows the jobs")


def _fail_allocation(node: Node) -> str:
    jobs = _ci_allocations(node)
    if not jobs:
        raise LabError(f"no CI allocation runs on {node.name}; `nomad job status` shows where they run")
    _set_flag(node, FAIL_FLAG)
    return f"the CI allocations on {node.name} ({', '.join(sorted(jobs))}) fail; Nomad reschedules them"


def _reschedule_failed() -> list[str]:
    """`nomad job eval -force-reschedule` for every job left with a failed allocation (one whose reschedule
    attempts another fault used up, too), then `nomad system gc`: what an operator does after such faults."""
    status, allocs = _nomad("GET", "/v1/allocations")
    if status != 200 or not isinstance(allocs, list):
        raise LabError(f"Nomad did not list the allocations (HTTP {status})")
    jobs = sorted({a["JobID"] for a in allocs if a["ClientStatus"] == "failed" and a["DesiredStatus"] == "run"})
    for job in jobs:
        body = {"JobID": job, "EvalOptions": {"ForceReschedule": True}}
        status, _body = _nomad("POST", f"/v1/job/{job}/evaluate", body)
        if status != 200:
            raise LabError(f"Nomad refused to re-evaluate {job} (HTTP {status})")
    _nomad("PUT", "/v1/system/gc")
    return jobs


def _forget_failures(node: Node) -> str:
    _clear_flag(node, FAIL_FLAG)
    jobs = _reschedule_failed()
    return (f"no more failing allocations on {node.name}; rescheduled: {', '.join(jobs) or 'nothing'}; "
            "failed allocations garbage-collected")


def _exhaust_reschedule(_node: Node) -> str:
    for agent in cluster.current().agents:
        _set_flag(agent, FAIL_FLAG, f"job:{EXHAUSTIBLE_JOB}")
    return (f"{EXHAUSTIBLE_JOB}'s allocations fail on every agent: its reschedule attempt (one an hour) is used up "
            "and its last allocation stays failed")


def _force_reschedule(_node: Node) -> str:
    for agent in cluster.current().agents:
        _clear_flag(agent, FAIL_FLAG)
    jobs = _reschedule_failed()
    return f"{', '.join(jobs) or 'nothing'} rescheduled (nomad job eval -force-reschedule), failed allocations gone"


def _flagged(flag: str, on: str, off: str) -> tuple[Action, Action]:
    """A fault that is one flag in FAULT_DIR on its node: set to inject, removed to heal ({node} in the texts)."""

    def inject(node: Node) -> str:
        _set_flag(node, flag)
        return on.format(node=node.name)

    def heal(node: Node) -> str:
        _clear_flag(node, flag)
        return off.format(node=node.name)

    return inject, heal


_disconnect, _reconnect_client = _flagged(DISCONNECT_FLAG, "the Nomad client of {node} stops heartbeating "
                                          "(the node stays up)", "the Nomad client of {node} heartbeats again")


# --- OpenStack
def _orphan(orphan: Node) -> str:
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


def _remove_orphan(orphan: Node) -> str:
    docker("rm", "-f", orphan.name, timeout=60, check=False)
    return f"OpenStack server {orphan.name} deleted"


def _wrong_az(node: Node) -> str:
    others = [m.az for m in cluster.current().masters if m.name != node.name]
    if labapi.lab_override("PATCH", f"/lab/servers/{node.name}", {"az": others[0]}) not in (200, 204):
        raise LabError("the OpenStack emulator refused the override")
    return f"{node.name} reported in {others[0]}, beside another master"


def _right_az(node: Node) -> str:
    labapi.lab_override("DELETE", f"/lab/servers/{node.name}/override")
    return f"{node.name} back in its own availability zone"


def _stale_cmdline(node: Node) -> str:
    # booted before the boot configuration had the argument: /proc/cmdline lacks it while /etc/default/grub
    # has it (puppet put it there); a reboot applies it
    if CGROUP_ARG not in _exec(node, "cat /etc/default/grub"):
        raise LabError(f"{node.name}'s boot configuration lacks {CGROUP_ARG}: run puppet first")
    # written through the bind mount itself (a new file would not be the mounted one)
    _exec(node, f"c=$(sed 's/ {CGROUP_ARG}//' /proc/cmdline); printf '%s\\n' \"$c\" > /proc/cmdline")
    return f"{node.name} runs without {CGROUP_ARG} while its boot configuration has it (reboot to apply)"


def _reboot_if_needed(node: Node) -> str:
    if CGROUP_ARG not in _exec(node, "cat /proc/cmdline"):
        _reboot_via_openstack(node)
    return f"{node.name} booted with {CGROUP_ARG}"


def _hang(node: Node) -> str:
    # the node stops answering ping and ssh (a hung kernel, a dead NIC) until it is power-cycled
    _exec(node, "ip link set eth0 down")
    return f"{node.name} hangs: no ping, no ssh, until a hard reboot through OpenStack"


def _power_cycle(node: Node) -> str:
    _reboot_via_openstack(node)
    return f"{node.name} hard-rebooted through OpenStack"


def _override(changes: dict[str, object], said: str) -> Action:
    def act(node: Node) -> str:
        if labapi.lab_override("PATCH", f"/lab/servers/{node.name}", changes) not in (200, 204):
            raise LabError("the OpenStack emulator refused the override")
        return said.format(node=node.name)

    return act


def _override_cleared(node: Node) -> str:
    labapi.lab_override("DELETE", f"/lab/servers/{node.name}/override")
    return f"{node.name} as OpenStack really has it"


def _old_nomad(node: Node) -> str:
    _exec(node, f"mkdir -p {FAULT_DIR} && echo 1.8.4 > {FAULT_DIR}/{VERSION_FLAG}")
    return f"the Nomad server on {node.name} reports 1.8.4 (an upgrade left half done)"


def _same_nomad(node: Node) -> str:
    _exec(node, f"rm -f {FAULT_DIR}/{VERSION_FLAG}")
    return f"the Nomad server on {node.name} reports the cluster's version"


VAULT_ALONE = "/run/systemd/system/vault.service.d/alicelab-fault.conf"


def _wipe_vault(node: Node) -> str:
    # a master rebuilt without its join configuration: empty storage and no retry_join, so OpenBao stays
    # uninitialised (with retry_join it would report initialised and wait sealed for its keys)
    _exec(
        node,
        "systemctl stop vault; rm -rf /var/lib/vault/*; mkdir -p /run/alicelab /run/systemd/system/vault.service.d"
        " && awk '/retry_join/{skip=1} skip&&/^  }/{skip=0; next} !skip' /etc/alicelab/vault.hcl"
        " > /run/alicelab/vault-alone.hcl"
        f" && printf '[Service]\\nExecStart=\\nExecStart=/usr/local/bin/bao server -config=%s\\n'"
        f" /run/alicelab/vault-alone.hcl > {VAULT_ALONE} && systemctl daemon-reload && systemctl start vault",
        timeout=120,
    )
    return f"OpenBao on {node.name} lost its storage and its join configuration: not initialised"


def _rejoin_vault(node: Node) -> str:
    _exec(node, f"systemctl stop vault; rm -f {VAULT_ALONE}; systemctl daemon-reload; rm -rf /var/lib/vault/*;"
          " systemctl start vault", timeout=120)
    cluster.unseal_all(cluster.current())  # retry_join plus the unseal keys: it joins the cluster again
    return f"OpenBao on {node.name} joined the cluster again"


# --- monitoring
# --- servers that lag or rate-limit (flags in FAULT_DIR on masters, which the Nomad and Consul servers watch)
LAG_FLAG = "raft-lag"  # emulators/base.py: the server answers heartbeats late and stops applying the log
RATE_LIMIT = {"nomad": "rate-limit-nomad", "consul": "rate-limit-consul"}  # emulators/{nomad,consul}.py
RATE_PER_S = "2"  # what every server then answers per second, beyond which 429


_lag, _catch_up = _flagged(LAG_FLAG, "the Nomad and Consul servers on {node} lag behind the leader",
                           "the Nomad and Consul servers on {node} catch up")


def _rate_limit(service: str) -> tuple[Action, Action]:
    def limit(_node: Node) -> str:
        for m in cluster.current().masters:
            _set_flag(m, RATE_LIMIT[service], RATE_PER_S)
        return f"every {service} server answers {RATE_PER_S} requests a second, then 429"

    def unlimit(_node: Node) -> str:
        for m in cluster.current().masters:
            _clear_flag(m, RATE_LIMIT[service])
        return f"{service} servers no longer rate-limit"

    return limit, unlimit


def _monit(verb: str) -> Action:
    def act(_node: Node) -> str:
        docker(verb, "alicelab-monit", timeout=60)
        return f"MONIT stand-in: docker {verb} done"

    return act


FAULTS: dict[str, Fault] = {
    "stop-unit:<unit>": Fault("stop a systemd unit on NODE", *_unit("<unit>")),
    "seal-vault": Fault("seal OpenBao on master NODE", _seal, _unseal, ("master",)),
    "kill-leader:<nomad|consul|vault>": Fault("stop the service on its current leader", *_kill_leader("<service>"),
                                              target="none"),
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
    "fail-allocation": Fault(
        "the CI allocations on agent NODE fail; Nomad reschedules them elsewhere (heal: gc the failures)",
        _fail_allocation,
        _forget_failures,
        ("agent",),
    ),
    "exhaust-reschedule": Fault(
        f"{EXHAUSTIBLE_JOB} fails on every agent until no reschedule attempt is left (heal: force-reschedule)",
        _exhaust_reschedule,
        _force_reschedule,
        target="none",
    ),
    "disconnect-agent": Fault(
        "the Nomad client of agent NODE stops heartbeating, the node stays up (down, or disconnected when a "
        "job has a disconnect block)",
        _disconnect,
        _reconnect_client,
        ("agent",),
    ),
    "orphan-server": Fault(
        f"an OpenStack build VM NAME (default {ORPHAN}, not a node of the lab) that is no Nomad node",
        _orphan,
        _remove_orphan,
        target="new-vm",
    ),
    "wrong-az": Fault("master NODE reported in another master's availability zone", _wrong_az, _right_az, ("master",)),
    "target-down": Fault(
        "stop NODE's node exporter: a Prometheus target down", *_unit("prometheus-node-exporter")
    ),
    "wrong-flavor": Fault("VM agent NODE reported with a master's flavor (m2.large) in OpenStack",
                          _override({"flavor": "m2.large"}, "{node} reported as an m2.large"), _override_cleared,
                          ("agent",)),
    "detach-vdb": Fault("the vdb volume of VM agent NODE is not attached in OpenStack",
                        _override({"volumes": []}, "no volume attached to {node} in OpenStack"), _override_cleared,
                        ("agent",)),
    "old-nomad": Fault("the Nomad server on master NODE reports another version", _old_nomad, _same_nomad,
                       ("master",)),
    "wipe-vault": Fault("OpenBao on master NODE loses its storage (not initialised)", _wipe_vault, _rejoin_vault,
                        ("master",)),
    "stale-cmdline": Fault("agent NODE booted without the cgroup kernel argument its boot configuration has",
                           _stale_cmdline, _reboot_if_needed, ("agent",)),
    "hang": Fault("NODE stops answering ping and ssh until a hard reboot through OpenStack", _hang, _power_cycle),
    "monit-down": Fault("stop the MONIT stand-in: remote_write fails", _monit("stop"), _monit("start"), target="none"),
    "lag-server": Fault("the Nomad and Consul servers on master NODE fall behind the leader (late heartbeats, "
                        "trailing logs)", _lag, _catch_up, ("master",)),
    "rate-limit:<nomad|consul>": Fault(f"every server of the service answers {RATE_PER_S} requests/s, then 429",
                                       *_rate_limit("nomad"), target="none"),
}


def _resolve(name: str) -> Fault:
    kind, _, arg = name.partition(":")
    if kind == "stop-unit" and arg:
        if not UNIT_NAME.fullmatch(arg):
            raise LabError(f"{arg!r} is not a systemd unit name")
        return Fault(f"stop {arg}", *_unit(arg))
    if kind == "kill-leader" and arg in SERVICES:
        return Fault(f"kill the {arg} leader", *_kill_leader(arg), ("master",), "none")
    if kind == "rate-limit" and arg in RATE_LIMIT:
        return Fault(f"rate-limit {arg}", *_rate_limit(arg), ("master",), "none")
    if name in FAULTS and "<" not in name:
        return FAULTS[name]
    raise LabError(f"unknown fault {name!r}; `python -m tests.lab faults` lists them")


def _target(name: str, fault: Fault, node_name: str) -> Node:
    """The node a fault acts on, once its NODE argument is checked (LabError, one line, otherwise)."""
    topo = cluster.current()
    names = {n.name for n in topo.nodes}
    if fault.target == "none":
        if node_name:
            raise LabError(f"{name} acts on the cluster and takes no NODE (got {node_name!r})")
        return topo.masters[0]
    if fault.target == "new-vm":
        orphan = node_name or ORPHAN
        if orphan in names:
            raise LabError(f"{name}: {orphan} is a node of the lab, not an orphan; give the name of a build VM "
                           f"that is not one (e.g. alibuild{len(topo.agents) + 100})")
        if not BUILD_VM_NAME.fullmatch(orphan):
            raise LabError(f"{name}: {orphan!r} is not a build VM name (alibuildNN)")
        if ORPHAN_IP in {n.ip for n in topo.nodes}:
            raise LabError(f"{name}: the orphan's address {ORPHAN_IP} belongs to a node of this lab")
        return Node(orphan, "agent", ORPHAN_IP, "vm", AZS[1])
    if not node_name:
        raise LabError(f"{name} needs a NODE ({' or '.join(fault.roles)}), e.g. "
                       f"{next(n.name for n in topo.nodes if n.role in fault.roles)}")
    if node_name not in names:
        raise LabError(f"no node {node_name!r} in the lab ({', '.join(sorted(names))})")
    node = topo.get(node_name)
    if node.role not in fault.roles:
        article = "an" if node.role[0] in "aeiou" else "a"
        raise LabError(f"{name} applies to {' or '.join(fault.roles)} nodes; {node_name} is {article} {node.role}")
    return node


def inject(name: str, node_name: str = "") -> str:
    fault = _resolve(name)
    return fault.inject(_target(name, fault, node_name))


def heal(name: str, node_name: str = "") -> str:
    fault = _resolve(name)
    return fault.heal(_target(name, fault, node_name))


def reboot(node_name: str) -> str:
    """A hard reboot through OpenStack (for faults that take effect at the next boot)."""
    node = cluster.current().get(node_name)
    _reboot_via_openstack(node)
    return f"{node_name} rebooted"
