"""Server actions through openstacksdk with the remediation cloud (a member's credentials): the state of a
node's server, and a reboot."""

from __future__ import annotations

import os
import time
from typing import Any

from acceptance.inventory import Inventory, Node
from acceptance.redaction import remember
from remediation.model import ActionFailed, Progress


class OpenStack:
    """Server actions through openstacksdk, in the node's project (VMs and masters, or physical nodes)."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def _connection(self, node: Node) -> Any:
        import openstack.config
        import openstack.connection

        settings = self.inventory.apis.openstack
        # its own cloud (a member's credentials), as the other APIs have remediation tokens of their own
        vm_cloud = ((settings.remediation_cloud if settings else None) or os.environ.get("OS_REMEDIATION_CLOUD")
                    or (settings.cloud if settings else None) or os.environ.get("OS_CLOUD"))
        metal_cloud = settings and (settings.remediation_cloud_metal or settings.cloud_metal)
        cloud = vm_cloud
        extra: dict[str, Any] = {}
        if node.role == "agent" and node.kind == "metal":
            if metal_cloud:
                cloud = metal_cloud
            else:
                extra["project_name"] = node.project or "ALICE Release Testing - physical nodes"
        files = [str(settings.clouds_yaml)] if settings and settings.clouds_yaml else None
        region = openstack.config.OpenStackConfig(config_files=files).get_one(
            cloud=cloud, api_timeout=settings.timeout_s if settings else 30, **extra)
        remember(*(v for k, v in (region.config.get("auth") or {}).items() if "password" in k or "secret" in k))
        return openstack.connection.Connection(config=region)

    def server(self, node: Node) -> tuple[Any, Any]:
        conn = self._connection(node)
        server = conn.compute.find_server(node.name, ignore_missing=True)
        if server is None:
            raise ActionFailed(f"no OpenStack server {node.name}")
        return conn, server

    def status(self, node: Node) -> str:
        conn, server = self.server(node)
        status: str = str(conn.compute.get_server(server.id).status)
        return status

    def reboot(self, node: Node, hard: bool, progress: Progress, timeout_s: float = 600) -> str:
        conn, server = self.server(node)
        status = str(conn.compute.get_server(server.id).status)
        if status == "SHUTOFF":
            conn.compute.start_server(server)
            what = "started (it was SHUTOFF)"
        else:
            conn.compute.reboot_server(server, "HARD" if hard else "SOFT")
            what = f"{'hard' if hard else 'soft'} rebooted through OpenStack"
        time.sleep(2)  # Nova flips the status to REBOOT/HARD_REBOOT asynchronously
        progress.wait(f"{node.name} ACTIVE", lambda: str(conn.compute.get_server(server.id).status) == "ACTIVE",
                      timeout_s)
        return f"{node.name} {what}"
