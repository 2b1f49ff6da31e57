"""Bringing the lab up and down: network, service containers, node containers, OpenBao, and the
state folder. `up` is idempotent: it creates what is missing and starts what is stopped."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..polling import wait_until
from . import configs, hosts, images, labapi, statefiles
from .dockerctl import LabError, docker, ensure_engine, inspect, memory_mib, node_exec
from .topology import (
    BUILD_SIZE,
    BUILDER_IMAGE,
    MONIT_HOST,
    MONIT_IP,
    NETWORK,
    OPENSTACK_HOST,
    OPENSTACK_IP,
    REGISTRY_IP,
    STATE,
    SUBNET,
    Node,
    Topology,
    topology,
)

EMULATORS = Path(__file__).resolve().parent / "emulators"
LABEL = "alicelab.lab"
REGISTRY_PORT = 5443  # published on 127.0.0.1 only, for the host to push the builder image
# What systemd as PID 1 needs in a container on a machine where --privileged is refused.
SYSTEMD_ARGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--cgroupns=host",
    "--stop-signal",
    "SIGRTMIN+3",
]


def wait_for(what: str, ok: Callable[[], bool], timeout: float, interval: float = 1.0) -> None:
    """wait_until failing with a LabError, which `python -m tests.lab` prints as one line."""
    wait_until(ok, timeout=timeout, interval=interval, what=what, error=LabError)


def saved_agents() -> int:
    path = STATE / "topology.json"
    return int(json.loads(path.read_text())["vm_agents"]) if path.exists() else 2


def current() -> Topology:
    return topology(saved_agents())


def _network() -> None:
    if docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$", timeout=30).strip():
        return
    docker("network", "create", "--subnet", SUBNET, "--label", f"{LABEL}=1", NETWORK, timeout=60)


DEFINITION = "alicelab.definition"


def _digest(args: list[str]) -> str:
    """How a container was made: its `docker run` arguments, hashed (kept in the label DEFINITION)."""
    return hashlib.sha256(json.dumps(args).encode()).hexdigest()[:16]


def _definition(args: list[str]) -> list[str]:
    return ["--label", f"{DEFINITION}={_digest(args)}"]


def _stale(info: dict[str, Any] | None, image: str, args: list[str] | None = None) -> bool:
    """A container made from another image or definition, or for another checkout's state folder (its bind
    mounts and secrets would not match): it is recreated."""
    if info is None:
        return False
    labels = info["Config"]["Labels"]
    made = args is None or labels.get(DEFINITION) == _digest(args)
    return info["Config"]["Image"] != image or labels.get(LABEL) != str(STATE) or not made


def _ensure_running(name: str, options: str, image: str, command: str) -> None:
    info = inspect(name)
    args = ["--name", name, "--label", f"{LABEL}={STATE}", *options.split(), image, *command.split()]
    if _stale(info, image, args):
        docker("rm", "-f", name, timeout=120)
        info = None
    if info is None:
        docker("run", "-d", *_definition(args), *args, timeout=120)
    elif not info["State"]["Running"]:
        docker("start", name, timeout=120)


def _services(rootfs: str) -> None:
    """The registry, the OpenStack endpoint and the MONIT stand-in: one process each, no systemd."""
    d = configs.write_services(current())
    net = f"--network {NETWORK} --init"
    _ensure_running(
        "alicelab-registry",
        f"{net} --ip {REGISTRY_IP} --hostname registry -p 127.0.0.1:{REGISTRY_PORT}:443 "
        f"-v {d['registry']}:/etc/alicelab:ro",
        rootfs,
        "/usr/bin/docker-registry serve /etc/alicelab/registry.yml",
    )
    _ensure_running(
        "alicelab-openstack",
        f"{net} --ip {OPENSTACK_IP} --hostname openstack --network-alias {OPENSTACK_HOST} -e PYTHONPATH=/opt/alicelab "
        f"-v {d['openstack']}:/etc/alicelab:ro -v {EMULATORS}:/opt/alicelab/emulators:ro "
        "-v /var/run/docker.sock:/var/run/docker.sock",
        rootfs,
        "python3 -m emulators.openstack /etc/alicelab/openstack.json",
    )
    _ensure_running(
        "alicelab-monit",
        f"{net} --ip {MONIT_IP} --hostname monit --network-alias {MONIT_HOST} -v {d['monit']}:/etc/alicelab:ro",
        rootfs,
        "/usr/bin/prometheus --config.file=/etc/alicelab/monit.yml --storage.tsdb.path=/tmp/monit "
        "--web.enable-remote-write-receiver --web.listen-address=:9090",
    )


def _push_builder() -> None:
    local = f"127.0.0.1:{REGISTRY_PORT}/alisw/slc9-builder:latest"
    images.builder_image("alicelab/builder:latest")
    docker("tag", "alicelab/builder:latest", local, timeout=30)

    def pushed() -> bool:
        return "error" not in docker("push", local, timeout=120, check=False).lower()

    wait_for("the builder image to reach the lab registry", pushed, 60, 2)


def node_run_args(node: Node, image: str) -> list[str]:
    d = configs.node_dir(node)
    args = [
        "--name",
        node.name,
        "--hostname",
        node.name,
        "--network",
        NETWORK,
        "--ip",
        node.ip,
        "--network-alias",
        node.fqdn,
        *SYSTEMD_ARGS,
        "--add-host",
        f"registry.cern.ch:{REGISTRY_IP}",
        "--label",
        f"{LABEL}={STATE}",
        "--label",
        f"alicelab.role={node.role}",
        "--label",
        f"alicelab.server={configs.server_label(node)}",
        "-v",
        f"{d}:/etc/alicelab:ro",
        "-v",
        f"{d}/ssh/ssh_host_ed25519_key:/etc/ssh/ssh_host_ed25519_key:ro",
        "-v",
        f"{d}/ssh/ssh_host_ed25519_key.pub:/etc/ssh/ssh_host_ed25519_key.pub:ro",
        "-v",
        f"{STATE / 'id_ed25519.pub'}:/root/.ssh/authorized_keys:ro",
        "-v",
        f"{EMULATORS}:/opt/alicelab/emulators:ro",
        "-v",
        f"{STATE / 'ca.pem'}:/etc/docker/certs.d/registry.cern.ch/ca.crt:ro",
    ]
    if node.has_vdb:
        # The `vdb` volume: a filesystem of its own on /build, with its own size. Unlike a Cinder volume it is a
        # tmpfs, so its content does not outlive a reboot (the boot recreates /build/nomad).
        args += [
            "--mount",
            f"type=volume,src=alicelab-{node.name}-vdb,dst=/build,volume-opt=type=tmpfs,"
            f"volume-opt=device=tmpfs,volume-opt=o=size={BUILD_SIZE}",
        ]
    return [*args, image]


def _node(node: Node, image: str) -> None:
    info = inspect(node.name)
    args = node_run_args(node, image)
    if _stale(info, image, args):
        docker("rm", "-f", node.name, timeout=120)  # its definition changed: recreate it
        info = None
    if info is None:
        docker("run", "-d", *_definition(args), *args, timeout=180)
    elif not info["State"]["Running"]:
        docker("start", node.name, timeout=120)


def ssh_port_open(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 22), timeout=2) as s:
            return s.recv(4).startswith(b"SSH")
    except OSError:
        return False


def unseal_all(topo: Topology) -> None:
    """Initialises OpenBao once (keys and root token into .lab/ only) and unseals every master."""
    init = labapi.vault_init()
    first = topo.masters[0].ip

    def answering(ip: str) -> bool:
        return labapi.vault("GET", ip, "/v1/sys/seal-status")[0] == 200

    for m in topo.masters:
        wait_for(f"OpenBao on {m.name}", functools.partial(answering, m.ip), 120)
    states = [labapi.vault("GET", m.ip, "/v1/sys/seal-status")[1] for m in topo.masters]
    if init is not None and all(isinstance(st, dict) and st.get("initialized") is False for st in states):
        init = None  # every master's storage is new (containers recreated): the old keys open nothing
    if init is None:
        status, body = labapi.vault(
            "PUT", first, "/v1/sys/init", {"secret_shares": 3, "secret_threshold": 2}, timeout=60
        )
        if status != 200:
            raise LabError(f"OpenBao init on {topo.masters[0].name} failed with HTTP {status}")
        init = {"keys": body["keys_base64"], "root_token": body["root_token"]}
        configs.write(STATE / "vault-init.json", json.dumps(init), 0o600)
    keys = init["keys"][:2]

    def unsealed(ip: str) -> bool:
        status, body = labapi.vault("GET", ip, "/v1/sys/seal-status")
        if status == 200 and not body["sealed"]:
            return True
        if status == 200 and body.get("initialized", True):
            for k in keys:
                labapi.vault("PUT", ip, "/v1/sys/unseal", {"key": k}, timeout=30)
        elif status == 200:
            labapi.vault("PUT", ip, "/v1/sys/unseal", {"reset": True})  # not joined yet: retry_join needs time
        return False

    for m in topo.masters:
        wait_for(f"OpenBao unsealed on {m.name}", functools.partial(unsealed, m.ip), 180, 3)


def _pull_builder(node: Node) -> None:
    node_exec(
        node.name,
        f"docker image inspect {BUILDER_IMAGE} >/dev/null 2>&1 || docker pull -q {BUILDER_IMAGE}",
        timeout=300,
    )


def _first_puppet_run(node: Node) -> None:
    node_exec(
        node.name,
        "test -s /opt/puppetlabs/puppet/public/last_run_summary.yaml || puppet agent -t -v "
        ">/var/log/puppetlabs/first-run.log 2>&1; true",
        timeout=600,
    )


def _apply_kernel_arguments(node: Node) -> None:
    """A new agent's first puppet run puts the kernel argument into its boot configuration; as on a real
    machine, a reboot applies it (ALICE's "Machines may require a manual reboot")."""
    script = ("grep -q systemd.unified_cgroup_hierarchy=0 /proc/cmdline || "
              "! grep -q systemd.unified_cgroup_hierarchy=0 /etc/default/grub || echo reboot")
    if node_exec(node.name, script, timeout=60).strip() == "reboot":
        docker("restart", "-t", "10", node.name, timeout=120)
        wait_for(f"sshd on {node.name}", functools.partial(ssh_port_open, node.ip), 240, 2)


def _host_limits() -> None:
    """Every node's systemd takes several inotify instances; the kernel's default of 128 per user
    stops booting at about 20 nodes."""
    for name, floor in (("max_user_instances", 8192), ("max_user_watches", 1048576)):
        path = Path("/proc/sys/fs/inotify") / name
        try:
            if int(path.read_text()) < floor:
                path.write_text(str(floor))
        except OSError as exc:
            raise LabError(
                f"cannot raise fs.inotify.{name} to {floor} ({exc}); run as root or set it by sysctl"
            ) from exc


def up(vm_agents: int | None = None) -> Topology:
    ensure_engine()
    _host_limits()
    STATE.mkdir(exist_ok=True)
    n = vm_agents if vm_agents is not None else saved_agents()
    topo = topology(n)
    configs.write(STATE / "topology.json", json.dumps({"vm_agents": n}))
    configs.ssh_keys()
    statefiles.client_cert()
    configs.write(STATE / "ca.pem", configs.ca()[0].read_text())
    tags = images.node_images()
    rootfs = images.rootfs()
    _network()
    hosts.publish(topo)
    _services(rootfs)
    _push_builder()
    for node in topo.nodes:
        configs.write_node(node, topo)
    statefiles.write_all(topo, vault_up=False)
    for node in topo.nodes:
        _node(node, tags[node.role])
    _remove_extra_agents(topo)
    for node in topo.nodes:
        wait_for(f"sshd on {node.name}", functools.partial(ssh_port_open, node.ip), 240, 2)
    unseal_all(topo)
    statefiles.write_all(topo)  # now with VAULT_TOKEN
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(_pull_builder, topo.agents))
        list(pool.map(_first_puppet_run, topo.nodes))
        list(pool.map(_apply_kernel_arguments, topo.agents))
    for m in topo.masters:  # the scrape list follows the topology, which may have changed since boot
        node_exec(m.name, "systemctl reload prometheus", timeout=60)
    wait_healthy(topo)
    return topo


def _remove_extra_agents(topo: Topology) -> None:
    """Agents of an earlier, larger `up --agents N` that the new topology does not have."""
    wanted = {n.name for n in topo.nodes}
    names = docker("ps", "-a", "--filter", "label=alicelab.role", "--format", "{{.Names}}", timeout=30).split()
    extra = [n for n in names if n not in wanted]
    if extra:
        docker("rm", "-f", *extra, timeout=300)


def _forget_removed_agents(topo: Topology) -> None:
    """Agents of an earlier, larger lab leave Nomad nodes and Consul registrations behind, as deleted
    machines do; the lab purges them as an operator would (`nomad node purge`, catalog deregister)."""
    m = topo.masters[0].ip
    known = {n.name for n in topo.nodes}
    status, nodes = labapi.nomad("GET", m, "/v1/nodes")
    for n in nodes if status == 200 else []:
        if n["Name"] not in known:
            labapi.nomad("PUT", m, f"/v1/node/{n['ID']}/purge")
    status, members = labapi.consul("GET", m, "/v1/catalog/nodes")
    for n in members if status == 200 else []:
        if n["Node"] not in known:
            labapi.consul("PUT", m, "/v1/catalog/deregister", {"Node": n["Node"]})
    # A machine gone for good stays a failed member (serfHealth critical) until an operator force-leaves it,
    # which Consul does only once gossip has called it failed (an alive member would rejoin).
    def gone() -> list[str]:
        status, members = labapi.consul("GET", m, "/v1/agent/members")
        return [n["Name"] for n in members if n["Name"] not in known] if status == 200 else []

    def pruned() -> bool:
        for name in gone():
            labapi.consul("PUT", m, f"/v1/agent/force-leave/{name}?prune=1")
        return not gone()

    if gone():
        wait_for("Consul to prune the removed agents", pruned, 90, 3)


def wait_healthy(topo: Topology, timeout: float = 240) -> None:
    """Leaders elected, every agent a ready Nomad node, Consul's checks passing (Vault registered and
    unsealed), every Prometheus target scraped: the state a nightly run expects."""
    m = topo.masters[0].ip

    def nomad_ready() -> bool:
        status, nodes = labapi.nomad("GET", m, "/v1/nodes")
        if status != 200:
            return False
        ready = {n["Name"] for n in nodes if n["Status"] == "ready"}
        return all(a.name in ready for a in topo.agents)

    def consul_leader() -> bool:
        return bool(labapi.consul("GET", m, "/v1/status/leader")[1])

    def no_critical_checks() -> bool:
        status, checks = labapi.consul("GET", m, "/v1/health/state/critical")
        return status == 200 and checks == []

    def targets_up(ip: str) -> bool:
        status, body = labapi.http("GET", f"http://{ip}:9090/api/v1/targets?state=active")
        targets = body["data"]["activeTargets"] if status == 200 else []
        return bool(targets) and all(t["health"] == "up" for t in targets)

    wait_for("a Consul leader", consul_leader, timeout)
    wait_for("every agent ready in Nomad", nomad_ready, timeout)
    _forget_removed_agents(topo)
    wait_for("no critical check in Consul", no_critical_checks, timeout)
    for master in topo.masters:
        wait_for(f"every Prometheus target up on {master.name}", functools.partial(targets_up, master.ip), timeout, 2)


def down() -> None:
    ensure_engine()
    names = docker("ps", "-aq", "--filter", f"label={LABEL}", timeout=30).split()
    if names:
        docker("rm", "-f", "-v", *names, timeout=600)
    vols = [v for v in docker("volume", "ls", "-q", timeout=30).split() if v.startswith("alicelab-")]
    if vols:
        docker("volume", "rm", "-f", *vols, timeout=120)
    if docker("network", "ls", "-q", "--filter", f"name=^{NETWORK}$", timeout=30).strip():
        docker("network", "rm", NETWORK, timeout=60)
    hosts.withdraw()
    for name in ("inventory.yaml", "env", "vault-init.json"):
        (STATE / name).unlink(missing_ok=True)


def status() -> list[str]:
    topo = current()
    lines = []
    for name in ["alicelab-registry", "alicelab-openstack", "alicelab-monit", *[n.name for n in topo.nodes]]:
        info = inspect(name)
        state = info["State"]["Status"] if info else "absent"
        lines.append(f"{name:20} {state}")
    m = topo.masters[0].ip
    lines.append(f"nomad leader:  {labapi.nomad('GET', m, '/v1/status/leader')[1]!r}")
    lines.append(f"consul leader: {labapi.consul('GET', m, '/v1/status/leader')[1]!r}")
    for mm in topo.masters:
        st, body = labapi.vault("GET", mm.ip, "/v1/sys/health")
        lines.append(f"vault {mm.name}: HTTP {st} sealed={body.get('sealed') if isinstance(body, dict) else '?'}")
    lines.append(f"memory of the lab's containers: {sum(memory_mib().values()):.0f} MiB")
    return lines


def env() -> dict[str, str]:
    """The variables of .lab/env, for processes started by the lab's own tests."""
    out = dict(os.environ)
    for line in (STATE / "env").read_text().splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        out[k] = v.strip("'")
    return out
