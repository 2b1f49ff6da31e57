"""The lab's names on this machine: one marked block of /etc/hosts, written at `up` and removed at `down`, so
that the suite reaches the lab by host name as it reaches production (inside the lab network Docker's DNS
answers the same names, as network aliases)."""

from __future__ import annotations

from pathlib import Path

from .topology import MONIT_HOST, MONIT_IP, OPENSTACK_HOST, OPENSTACK_IP, Topology

HOSTS = Path("/etc/hosts")
BEGIN, END = "# alicelab begin (python -m tests.lab)", "# alicelab end"


def entries(topo: Topology) -> list[tuple[str, str]]:
    return [(OPENSTACK_IP, OPENSTACK_HOST), (MONIT_IP, MONIT_HOST), *((n.ip, n.fqdn) for n in topo.nodes)]


def _without_block(text: str) -> list[str]:
    lines, inside = [], False
    for line in text.splitlines():
        if line == BEGIN:
            inside = True
        elif line == END and inside:
            inside = False
        elif not inside:
            lines.append(line)
    return lines


def publish(topo: Topology, hosts: Path = HOSTS) -> None:
    """Writes the block (in place: /etc/hosts may be a bind mount that a rename would not replace)."""
    kept = _without_block(hosts.read_text() if hosts.exists() else "")
    block = [BEGIN, *(f"{ip} {name}" for ip, name in entries(topo)), END]
    text = "\n".join([*kept, *block]) + "\n"
    if not hosts.exists() or hosts.read_text() != text:
        with hosts.open("w") as fh:
            fh.write(text)


def withdraw(hosts: Path = HOSTS) -> None:
    if hosts.exists():
        text = hosts.read_text()
        kept = "\n".join(_without_block(text)) + "\n"
        if kept != text:
            with hosts.open("w") as fh:
                fh.write(kept)
