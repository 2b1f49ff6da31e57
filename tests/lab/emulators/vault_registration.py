"""Registers the node's Vault (OpenBao) in Consul as Vault's own `service_registration "consul"` does:
service `vault` with tag `active` or `standby`, and a TTL check that fails while Vault is sealed or
down. OpenBao's build carries no Consul registration, so the lab runs this beside it (on masters, as
`vault-consul-registration.service`). Standard library only.

Run as `PYTHONPATH=/opt/alicelab python3 -m emulators.vault_registration /etc/alicelab/node.json`.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from . import base

PERIOD_S = 5


def sync(cfg: dict[str, Any], tls: base.Tls) -> None:
    ip = cfg["ip"]
    status, health = base.call(f"https://{ip}:8200/v1/sys/health?standbyok=true", tls, timeout=3)
    if status == 0:
        return  # no answer: like a crashed Vault, stop updating and let the TTL expire the check
    healthy = status == 200 and isinstance(health, dict) and not health.get("sealed", True)
    tag = "standby" if isinstance(health, dict) and health.get("standby") else "active"
    service_id = f"vault:{ip}:8200"
    check_id = f"{service_id}:vault-sealed-check"
    consul = f"https://{ip}:8500/v1/agent"
    headers = {"X-Consul-Token": cfg["tokens"]["consul"]}
    body = {
        "ID": service_id,
        "Name": "vault",
        "Tags": [tag],
        "Address": ip,
        "Port": 8200,
        "Check": {
            "CheckID": check_id,
            "Name": "Vault Sealed Status",
            "TTL": f"{3 * PERIOD_S}s",
            # given, because re-registering a TTL check without it resets it to critical until the update below
            "Status": "passing" if healthy else "critical",
            "Notes": "Vault service is healthy when Vault is in an unsealed status and can become an active "
            "Vault server",
        },
    }
    base.call(f"{consul}/service/register", tls, "PUT", body, headers, timeout=3)
    verb = "pass" if healthy else "fail"
    base.call(f"{consul}/check/{verb}/{check_id}", tls, "PUT", None, headers, timeout=3)


def main(argv: list[str]) -> int:
    cfg = base.load_json(argv[1])
    tls = base.Tls.from_config(cfg["tls"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            sync(cfg, tls)
        except Exception as exc:  # noqa: BLE001 - keep registering whatever one round did
            print(f"vault registration: {exc}", file=sys.stderr)
        time.sleep(PERIOD_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
