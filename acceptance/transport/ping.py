"""Reachability from the machine running the suite: the system's ``ping`` in iputils' deadline mode, or a TCP
connection attempt to the ssh port where no ``ping`` command exists.

``ping -c 1 -i 0.5 -w D`` sends an echo every 0.5 s until ONE reply arrives or D seconds pass (or the network
answers with an ICMP error): a healthy node costs one round trip, and one lost packet is not a verdict on the
node, since the next echo goes out half a second later. ``-W`` is not used: it only bounds the wait for one
reply, which is what made a single lost packet look like a dead node.
"""

from __future__ import annotations

import errno
import math
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

DEADLINE_S = 3.0  # a lost packet or two is retried; a dead node costs this long
INTERVAL_S = 0.5  # iputils lets any user go down to 2 ms; 0.5 s is gentle on the network
# iputils: "6 packets transmitted, 0 received, +1 errors, 100% packet loss"; busybox: "... 1 packets received"
_STATS = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received(?:, \+(\d+) errors)?")
_ICMP_ERROR = re.compile(r"^From (.+?):? icmp_seq=\d+ (.+)$", re.MULTILINE)  # "From gw (10.0.0.1) icmp_seq=1 ..."


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of reaching a node: ``ok``; or not ok with a message; ``error`` when it could not be tried."""

    ok: bool
    message: str = ""
    error: bool = False
    duration_s: float = 0.0


def _echoes(n: int) -> str:
    return f"{n} echo{'' if n == 1 else 'es'}"


def _no_answer(address: str, deadline: int, output: str) -> str:
    stats = _STATS.search(output)
    sent = f"{_echoes(int(stats.group(1)))} sent" if stats else "no statistics"
    icmp = _ICMP_ERROR.findall(output)
    if icmp:  # the network answered that the node cannot be reached: not a silence that lasted the deadline
        return f"ping {address}: unreachable, {icmp[-1][1]} from {icmp[-1][0]} ({sent})"
    return f"ping {address}: no answer within {deadline}s ({sent})"


def ping(address: str, deadline_s: float = DEADLINE_S) -> ProbeResult:
    """Echoes with the system's ``ping`` from the machine running pytest, until one answers or ``deadline_s``
    (whole seconds for iputils' ``-w``) passes."""
    exe = shutil.which("ping")
    if exe is None:
        return tcp_probe(address, 22, deadline_s)
    deadline = max(1, math.ceil(deadline_s))
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [exe, "-c", "1", "-i", f"{INTERVAL_S:g}", "-w", str(deadline), "--", address],
            capture_output=True, text=True, timeout=deadline + 3, check=False,
        )
    except subprocess.TimeoutExpired:  # ping itself hung (a slow resolver): it never judged
        return ProbeResult(ok=False, message=f"ping {address}: no answer within {deadline}s (ping did not exit)",
                           duration_s=time.monotonic() - start)
    except OSError as e:
        return ProbeResult(ok=False, error=True, message=f"ping {address}: cannot run ping: {e.strerror or e}",
                           duration_s=time.monotonic() - start)
    duration = time.monotonic() - start
    if proc.returncode == 0:
        stats = _STATS.search(proc.stdout)
        sent = f" ({_echoes(int(stats.group(1)))} sent)" if stats else ""
        return ProbeResult(ok=True, message=f"ping {address}: answered{sent}", duration_s=duration)
    if proc.returncode == 1:  # iputils: no reply at all within the deadline
        return ProbeResult(ok=False, message=_no_answer(address, deadline, proc.stdout), duration_s=duration)
    detail = (proc.stderr or proc.stdout).strip().splitlines()
    return ProbeResult(ok=False, error=True, duration_s=duration,
                       message=f"ping {address}: {detail[-1] if detail else f'exit status {proc.returncode}'}")


def tcp_probe(address: str, port: int = 22, timeout_s: float = 2.0) -> ProbeResult:
    """Reachability without ICMP (no ``ping`` command here): a TCP connection attempt; a refusal is an answer."""
    start = time.monotonic()
    what = f"tcp {address}:{port} (no ping command here)"
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            pass
    except ConnectionRefusedError:
        return ProbeResult(ok=True, message=f"{what}: refused, host up", duration_s=time.monotonic() - start)
    except TimeoutError:
        return ProbeResult(ok=False, message=f"{what}: no answer within {timeout_s:g}s",
                           duration_s=time.monotonic() - start)
    except OSError as e:
        error = e.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN)
        return ProbeResult(ok=False, error=error, message=f"{what}: {e.strerror or e}",
                           duration_s=time.monotonic() - start)
    return ProbeResult(ok=True, message=f"{what}: ok", duration_s=time.monotonic() - start)
