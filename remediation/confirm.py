"""Is the node really down? Asked right before a disruptive action (a hard reboot), from sources that do not share
the failure's cause, as Facebook's FBAR does before it touches a machine.

=========  =====================================================================================================
ping       several deadline pings from here, spread over a few seconds: broken only if none answered
ssh        a fresh connection (the master connection forgotten first): broken only on a node-side failure; a
           runner-side one (a bastion, sshd's MaxStartups) or a configuration error cannot tell
nomad      Nomad's view of its agent: ``down`` / ``disconnected`` broken, ``ready`` / ``initializing`` not
openstack  the server's state: ERROR broken; running: cannot tell (OpenStack does not see inside the guest), which
           does not stand in the way (``blind``); a state a human set, a task in progress or an unknown state: not
           broken, and never acted on
=========  =====================================================================================================

The rule (:func:`confirmed`): every source the action needs says broken, except a blind one (OpenStack's
"running"), and at least one says so. Anything else refuses: a source that cannot tell is not a yes, and one lost
ping followed by an answer is an answer. An agent's hard reboot needs ping, ssh, nomad and openstack
(``reprobe`` + ``nomad_view`` + ``cloud_view``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from acceptance.clients.errors import one_line
from acceptance.inventory import Node
from acceptance.transport.nodes import Nodes
from acceptance.transport.ping import ProbeResult
from remediation.cloud import OpenStack, classify

PINGS = 3
NOMAD_DOWN = ("down", "disconnected")
NOMAD_UP = ("ready", "initializing")


@dataclass(frozen=True)
class Evidence:
    """One source's word: ``broken`` True or False, or None (cannot tell). ``blind``: the source cannot see such
    a failure at all (OpenStack sees a running VM, not its guest), so its None does not stand in the way."""

    source: str
    broken: bool | None
    detail: str
    blind: bool = False


def _pings(results: Sequence[ProbeResult], elapsed_s: float) -> Evidence:
    answered = next((i for i, r in enumerate(results) if r.ok), None)
    if answered is not None:
        return Evidence("ping", False, f"ping {answered + 1} of {len(results)} answered: {results[answered].message}")
    errors = [r for r in results if r.error]
    if errors:
        return Evidence("ping", None, f"ping could not be tried: {errors[-1].message}")
    return Evidence("ping", True, f"no answer to {len(results)} pings over {elapsed_s:.0f} s: {results[-1].message}")


def reprobe(node: Node, nodes: Nodes, spread_s: float = 4.0, *, count: int = PINGS,
            sleep: Callable[[float], None] = time.sleep) -> list[Evidence]:
    """``count`` fresh pings started ``spread_s / (count - 1)`` apart (each one retries lost echoes until its own
    deadline; the first answer ends it), then a fresh ssh connection."""
    start = time.monotonic()
    results: list[ProbeResult] = []
    for i in range(count):
        if i:
            sleep(max(0.0, start + i * spread_s / (count - 1) - time.monotonic()))
        results.append(nodes.ping(node, fresh=True))
        if results[-1].ok:
            break
    evidence = [_pings(results, time.monotonic() - start)]
    nodes.reset(node)  # the master connection may be stale (or fine while new ones fail): a new one
    ssh = nodes.session(node).connect()
    if ssh.ok:
        evidence.append(Evidence("ssh", False, f"a fresh ssh connection got in: {ssh.message}"))
    elif ssh.runner_error or ssh.config_error:
        evidence.append(Evidence("ssh", None, ssh.message))
    else:
        evidence.append(Evidence("ssh", True, ssh.message))
    return evidence


def nomad_view(node: Node, read_node: Callable[[str], dict[str, Any]]) -> Evidence:
    """Nomad's view of the node's agent (``read_node``: the node's JSON, e.g. ``remediation.drains.Nomad.node``)."""
    try:
        data = read_node(node.name)
        status = str(data.get("Status", ""))
        said = f"Nomad sees {node.name} {status or 'without a status'}"
        if data.get("StatusDescription"):
            said += f" ({one_line(data['StatusDescription'], 120)})"
    except Exception as e:  # any failure to read is "cannot tell", never a yes
        return Evidence("nomad", None, f"Nomad cannot be read: {one_line(e)}")
    if status in NOMAD_DOWN:
        return Evidence("nomad", True, said)
    if status in NOMAD_UP:
        return Evidence("nomad", False, f"{said}: its client still reaches the servers")
    return Evidence("nomad", None, f"{said}: a status the suite does not know")


def cloud_view(node: Node, cloud: OpenStack) -> Evidence:
    """OpenStack's state of the node's server."""
    try:
        state = cloud.state(node)
    except Exception as e:  # ActionFailed or anything else: cannot tell
        return Evidence("openstack", None, f"OpenStack cannot be read: {one_line(e)}")
    shows = f"OpenStack shows {node.name} {state.describe()}"
    kind = classify(state)
    if kind == "broken":
        return Evidence("openstack", True, shows)
    if kind == "running":
        return Evidence("openstack", None, f"{shows}: it runs, OpenStack cannot see inside the guest", blind=True)
    why = {"human": "a state a human set", "busy": "something is in progress"}.get(kind, "a state the suite does "
                                                                                         "not know")
    return Evidence("openstack", False, f"{shows}: {why}, never acted on")


def confirmed(evidence: Sequence[Evidence], need: Sequence[str]) -> str | None:
    """None when the sources in ``need`` agree that the node is broken (the module's rule), else why not: each
    dissenting source with its detail, then what the others said."""
    dissent: list[str] = []
    agree: list[str] = []
    for source in need:
        said = [e for e in evidence if e.source == source]
        if not said:
            dissent.append(f"{source}: no evidence")
        for e in said:
            if e.broken is True or (e.broken is None and e.blind):
                agree.append(f"{source}: {e.detail}")
            elif e.broken is False:
                dissent.append(f"{source} says not broken: {e.detail}")
            else:
                dissent.append(f"{source} cannot tell: {e.detail}")
    if not dissent and not any(e.broken for e in evidence if e.source in need):
        dissent.append("no source saw the node broken")
    if not dissent:
        return None
    return "; ".join(dissent) + (f" (while {'; '.join(agree)})" if agree else "")
