"""Reachability from the machine running the suite: one ICMP echo (the system's ``ping``), or a TCP connection
attempt to the ssh port where no ``ping`` command exists."""

from __future__ import annotations

import errno
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of reaching a node: ``ok``; or not ok with a message; ``error`` when it could not be tried."""

    ok: bool
    message: str = ""
    error: bool = False
    duration_s: float = 0.0


def ping(address: str, timeout_s: float = 2.0) -> ProbeResult:
    """One ICMP echo with the system's ``ping``, from the machine running pytest."""
    exe = shutil.which("ping")
    if exe is None:
        return tcp_probe(address, 22, timeout_s)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [exe, "-c", "1", "-W", str(max(1, int(timeout_s))), "--", address],
            capture_output=True, text=True, timeout=timeout_s + 3, check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(ok=False, message=f"ping {address}: no answer within {timeout_s:g}s",
                           duration_s=time.monotonic() - start)
    duration = time.monotonic() - start
    if proc.returncode == 0:
        return ProbeResult(ok=True, message=f"ping {address}: ok", duration_s=duration)
    if proc.returncode == 1:
        return ProbeResult(ok=False, message=f"ping {address}: no answer within {timeout_s:g}s", duration_s=duration)
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
