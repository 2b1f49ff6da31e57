"""What discovery and the OpenStack snapshot cost against a hostile cloud: a Keystone that trickles its token
answer one byte a second, and a Nova whose server listing is 300 MiB. Each case runs in a fresh process and
prints its wall time and peak memory (ru_maxrss); no assertion (a benchmark). Local servers on 127.0.0.1 only.

    .venv/bin/python -m tests.bench.hostile_openstack
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CASES = ("trickling-keystone", "300-MiB-listing")
ENTRIES = ("discovery", "snapshot")


def child(case: str, entry: str) -> dict[str, Any]:
    """In the measured process: serve the hostile cloud, run the entry point once, report."""
    import pytest

    from tests.unit import test_openstack_transport as t

    def flood(h: Any, seen: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()
        chunk = b" " * (1 << 20)
        try:
            h.wfile.write(b'{"servers": [')
            for _ in range(300):
                h.wfile.write(chunk)
        except OSError:
            pass
        h.close_connection = True

    made: list[t.Server] = []

    def servers(route: Any = None) -> t.Server:
        made.append(t.Server(route))
        return made[-1]

    with tempfile.TemporaryDirectory() as tmp:
        if case == "trickling-keystone":
            inv, _, _ = t.cloud_of(servers, Path(tmp), tokens=t.trickle, deadline_s=10, timeout_s=30)
        else:
            inv, _, _ = t.cloud_of(servers, Path(tmp), flood, deadline_s=120, timeout_s=120)
        start = time.monotonic()
        message = (t.discovery_message if entry == "discovery" else t.snapshot_message)(inv)
        took = time.monotonic() - start
    for s in made:
        s.close()
    del pytest
    return {"case": case, "entry": entry, "seconds": round(took, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "message": message[:160]}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], sys.argv[3])))
        return
    for case in CASES:
        for entry in ENTRIES:
            out = subprocess.run([sys.executable, "-m", "tests.bench.hostile_openstack", "--child", case, entry],
                                 capture_output=True, text=True, timeout=600, check=False)
            if out.returncode != 0:
                print(f"{case} {entry}: failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{case:20} {entry:10} {r['seconds']:7.2f} s  peak {r['peak_rss_mib']:7.1f} MiB  {r['message']}")


if __name__ == "__main__":
    main()
