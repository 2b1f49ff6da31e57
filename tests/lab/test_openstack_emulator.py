"""The OpenStack emulator against the machine's Docker daemon: shapes of the documented samples,
openstacksdk unmodified, and the server actions really acting on the containers.

Only this module's own Docker resources are touched: network `alicelab-ostest` and containers `ostest-*`.

Roles and Nova's policies (section 5) run against a fake Docker Engine API on a unix socket instead (it records
the calls the emulator makes): they need no Docker daemon and touch no container.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openstack
import openstack.exceptions
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.shapes import FREE_MAPS, assert_same_shape
from tests.polling import wait_until
from tests.reference import API

pytestmark = pytest.mark.emulator

HERE = Path(__file__).resolve().parent
SAMPLES = API / "openstack"
NETWORK, SUBNET = "alicelab-ostest", "172.31.250.0/24"
HOST = "127.0.0.31"
KEYSTONE, NOVA = f"https://{HOST}:5000", f"https://{HOST}:8774"
IMAGE = "ostest/busybox:latest"
# Not the lab's `alicelab.server`: the lab may be up on the same daemon, and its nodes are none of ours.
LABEL = "ostest.server"
VMS, METAL = "ALICE Release Testing", "ALICE Release Testing - physical nodes"
USER, PASSWORD, ADMIN_SECRET = "alibuild-lab", "s3cret-lab-pw", "lab-admin-secret"
ADMIN_USER = "cloud-admin"  # role admin on the VM project: Nova's admin-only calls
# Maps keyed by data in the Nova samples (network names, metadata keys, hint names, host and service names).
NOVA_MAPS = {"addresses", "metadata", "scheduler_hints", "extra_specs", "properties", "hosts"}

SERVERS = {  # name: (project, flavor, az, ip, volumes)
    "ostest-alimesos01": (VMS, "m2.large", "cern-geneva-a", "172.31.250.11", False),
    "ostest-alibuild01": (VMS, "m2.2xlarge", "cern-geneva-b", "172.31.250.21", True),
    "ostest-alibuild02": (VMS, "m2.2xlarge", "cern-geneva-c", "172.31.250.22", True),
    "ostest-alimetal01": (METAL, "p1.dl8245125.S513-V-IP28", "cern-geneva-c", "172.31.250.31", False),
}
SERVER_IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_DNS, name)) for name in SERVERS}
PROJECTS = [{"id": uuid.uuid5(uuid.NAMESPACE_DNS, p).hex, "name": p} for p in (VMS, METAL)]
FLAVORS = [
    {"id": str(i), "name": f, "vcpus": 4 * i, "ram": 7500 * i, "disk": 40 * i}
    for i, f in enumerate(["m2.large", "m2.2xlarge", "p1.dl8245125.S513-V-IP28"], 1)
]


def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def inspect(name: str) -> dict[str, Any]:
    return json.loads(docker("inspect", name))[0]  # type: ignore[no-any-return]


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())["body"]


def _cleanup() -> None:
    names = docker("ps", "-aq", "--filter", "name=^ostest-").split()
    if names:
        docker("rm", "-f", *names, check=False)
    docker("network", "rm", NETWORK, check=False)


def _ensure_image(tmp: Path) -> None:
    """A tiny busybox image (Debian's busybox-static), made once and kept for later runs."""
    if docker("images", "-q", IMAGE):
        return
    tar = tmp / "busybox.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tf.addfile(link)
    docker("import", str(tar), IMAGE)


def _make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.31."""
    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str,
        issuer: x509.Name | None,
        key: ec.EllipticCurvePrivateKey,
        sign_key: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        b = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False)
        return b.sign(sign_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("ostest CA", None, ca_key, ca_key, True)
    cert = build("openstack", ca_cert.subject, key, ca_key, False)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _run_server(name: str, data: Path) -> None:
    project, flavor, az, ip, vdb = SERVERS[name]
    label = {
        "id": SERVER_IDS[name],
        "name": name,
        "project": project,
        "flavor": flavor,
        "az": az,
        "image": "ALMA9 - x86_64",
        "created": "2026-11-01T09:00:00Z",
        "metadata": {"landb-mainuser": "alice"},
        "volumes": [{"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"vol-{name}")), "device": "/dev/vdb", "size_gb": 1000}]
        if vdb
        else [],
    }
    (data / name).mkdir()
    docker(
        "run",
        "-d",
        "--init",
        "--name",
        name,
        "--hostname",
        name,
        "--network",
        NETWORK,
        "--ip",
        ip,
        "--label",
        f"{LABEL}={json.dumps(label)}",
        "-v",
        f"{data / name}:/data",
        IMAGE,
        "sh",
        "-c",
        "sleep 100000",
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The network and the server containers (plus one unlabelled container that is no server)."""
    tmp = tmp_path_factory.mktemp("ostest")
    _cleanup()
    _ensure_image(tmp)
    docker("network", "create", "--subnet", SUBNET, NETWORK)
    try:
        for name in SERVERS:
            _run_server(name, tmp)
        docker("run", "-d", "--init", "--name", "ostest-plain", "--network", NETWORK, IMAGE, "sh", "-c", "sleep 1d")
        yield tmp
    finally:
        _cleanup()


@pytest.fixture(scope="module")
def emulator(lab: Path) -> Iterator[dict[str, Any]]:
    """The emulator as a subprocess on the host, HTTPS with a throwaway CA, run without site-packages
    (-S) to show it needs the standard library only."""
    ca, cert, key = _make_tls(lab)
    cfg = {
        "bind": HOST,
        "public_host": HOST,
        "network": NETWORK,
        "tls": {"cert": str(cert), "key": str(key)},
        "users": [
            {"name": USER, "password": PASSWORD, "domain": "Default", "projects": [VMS, METAL]},
            {
                "name": ADMIN_USER,
                "password": PASSWORD,
                "domain": "Default",
                "roles": [{"project": VMS, "role": "admin"}],
            },
        ],
        "projects": PROJECTS,
        "flavors": FLAVORS,
        "availability_zones": ["cern-geneva-a", "cern-geneva-b", "cern-geneva-c"],
        "lab_admin_secret": ADMIN_SECRET,
        "label": LABEL,
        "stop_timeout": 3,
    }
    (lab / "openstack.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(HERE), "ALICELAB_DOCKER_SOCKET": "/var/run/docker.sock"}
    log = (lab / "emulator.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "emulators.openstack", str(lab / "openstack.json")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        assert proc.poll() is None, (lab / "emulator.log").read_text()
        try:
            socket.create_connection((HOST, 8774), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(listening, timeout=10, what="the emulator to listen")
    try:
        yield {"proc": proc, "ca": str(ca), "cfg": cfg, "log": lab / "emulator.log"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()


def get_token(emu: dict[str, Any], project: str = VMS, password: str = PASSWORD, user: str = USER) -> requests.Response:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }
    url = emu.get("keystone", KEYSTONE)
    return requests.post(f"{url}/v3/auth/tokens", json=body, verify=emu["ca"], timeout=10)


@pytest.fixture(scope="module")
def token(emulator: dict[str, Any]) -> str:
    resp = get_token(emulator)
    assert resp.status_code == 201, resp.text
    return resp.headers["X-Subject-Token"]


@pytest.fixture(scope="module")
def admin_token(emulator: dict[str, Any]) -> str:
    resp = get_token(emulator, user=ADMIN_USER)
    assert resp.status_code == 201, resp.text
    return resp.headers["X-Subject-Token"]


def nova(
    emu: dict[str, Any], token: str | None, path: str, mv: str | None = None, method: str = "GET", body: Any = None
) -> requests.Response:
    headers = {"X-Auth-Token": token} if token else {}
    if mv:
        headers["OpenStack-API-Version"] = f"compute {mv}"
    url = emu.get("nova", NOVA)
    return requests.request(method, f"{url}/v2.1{path}", headers=headers, json=body, verify=emu["ca"], timeout=10)


def connect(emu: dict[str, Any], project: str = VMS) -> Any:
    return openstack.connect(
        auth_url=f"{KEYSTONE}/v3",
        username=USER,
        password=PASSWORD,
        project_name=project,
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="cern",
        cacert=emu["ca"],
    )


def wait_status(conn: Any, name: str, status: str, timeout: float = 30) -> Any:
    def settled() -> bool:
        s = conn.compute.get_server(SERVER_IDS[name])
        return bool(s.status == status and s.task_state is None)

    wait_until(settled, timeout=timeout, what=f"{name} to be {status}")
    return conn.compute.get_server(SERVER_IDS[name])


# --- (1) shapes of the documented samples


def test_keystone_token_shape(emulator: dict[str, Any]) -> None:
    resp = get_token(emulator)
    assert resp.status_code == 201
    assert resp.headers["X-Subject-Token"]
    body = resp.json()
    assert_same_shape(sample("keystone_auth_tokens_project_scoped"), body, "$")
    catalog = {s["type"]: s for s in body["token"]["catalog"]}
    assert {e["interface"]: e["url"] for e in catalog["compute"]["endpoints"]} == {
        i: f"{NOVA}/v2.1" for i in ("public", "internal", "admin")
    }
    assert {e["region_id"] for e in catalog["identity"]["endpoints"]} == {"cern"}
    assert body["token"]["project"]["name"] == VMS
    expires = dt.datetime.fromisoformat(body["token"]["expires_at"])
    issued = dt.datetime.fromisoformat(body["token"]["issued_at"])
    assert expires - issued == dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("path", "mv", "name"),
    [
        ("/servers/detail?limit=1", None, "nova_servers_detail_v2.1"),
        ("/servers/detail?limit=1", "2.100", "nova_servers_detail_v2.100"),
        ("/servers/{id}", None, "nova_server_get_v2.1"),
        ("/servers/{id}", "2.100", "nova_server_get_v2.100"),
        ("/servers/{id}/os-volume_attachments", None, "nova_os_volume_attachments"),
        ("/servers/{id}/os-volume_attachments", "2.89", "nova_os_volume_attachments_v2.89"),
        ("/flavors/detail", None, "nova_flavors_detail_v2.1"),
        ("/flavors/detail", "2.102", "nova_flavors_detail_v2.102"),
        ("/os-availability-zone", None, "nova_os_availability_zone"),
        ("/os-availability-zone/detail", None, "nova_os_availability_zone_detail"),
    ],
)
def test_nova_shapes(
    emulator: dict[str, Any], token: str, admin_token: str, path: str, mv: str | None, name: str
) -> None:
    if path == "/os-availability-zone/detail":  # admin only in Nova (os_compute_api:os-availability-zone:detail)
        token = admin_token
    resp = nova(emulator, token, path.format(id=SERVER_IDS["ostest-alibuild01"]), mv)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    hosts = {h for z in body.get("availabilityZoneInfo", []) for h in (z["hosts"] or {})}
    assert_same_shape(sample(name), body, "$", free_maps={*FREE_MAPS, *NOVA_MAPS, *hosts})
    if mv:
        assert resp.headers["OpenStack-API-Version"] == f"compute {mv}"


def test_server_view_values(emulator: dict[str, Any], token: str) -> None:
    old = nova(emulator, token, f"/servers/{SERVER_IDS['ostest-alibuild01']}").json()["server"]
    assert old["flavor"]["id"] == "2"
    assert old["status"] == "ACTIVE"
    assert old["OS-EXT-STS:vm_state"] == "active"
    assert old["OS-EXT-AZ:availability_zone"] == "cern-geneva-b"
    net = old["addresses"][NETWORK][0]
    assert net["addr"] == "172.31.250.21"
    assert net["OS-EXT-IPS:type"] == "fixed"
    assert (
        net["OS-EXT-IPS-MAC:mac_addr"]
        == inspect("ostest-alibuild01")["NetworkSettings"]["Networks"][NETWORK]["MacAddress"]
    )
    new = nova(emulator, token, f"/servers/{SERVER_IDS['ostest-alibuild01']}", "2.47").json()["server"]
    assert new["flavor"]["original_name"] == "m2.2xlarge"
    assert "id" not in new["flavor"]
    names = [s["name"] for s in nova(emulator, token, "/servers").json()["servers"]]
    assert sorted(names) == ["ostest-alibuild01", "ostest-alibuild02", "ostest-alimesos01"]
    matched = nova(emulator, token, "/servers/detail?name=^ostest-alibuild0[12]$").json()["servers"]
    assert sorted(s["name"] for s in matched) == ["ostest-alibuild01", "ostest-alibuild02"]
    # all_tenants is for admins only (os_compute_api:servers:detail:get_all_tenants)
    assert nova(emulator, token, "/servers/detail?all_tenants=1").status_code == 403
    page = nova(emulator, token, "/servers/detail?limit=2").json()
    rest = requests.get(
        page["servers_links"][0]["href"], headers={"X-Auth-Token": token}, verify=emulator["ca"], timeout=10
    ).json()
    assert len(page["servers"]) + len(rest["servers"]) == 3
    assert nova(emulator, token, "/servers", mv="2.200").status_code == 406


# --- (2) openstacksdk, unmodified


def test_openstacksdk_reads(emulator: dict[str, Any]) -> None:
    conn = connect(emulator)
    assert sorted(s.name for s in conn.compute.servers()) == [
        "ostest-alibuild01",
        "ostest-alibuild02",
        "ostest-alimesos01",
    ]
    server = conn.compute.get_server(SERVER_IDS["ostest-alimesos01"])
    assert server.availability_zone == "cern-geneva-a"
    assert server.flavor.original_name == "m2.large"
    found = conn.compute.find_server("ostest-alibuild01")
    assert found is not None
    assert found.id == SERVER_IDS["ostest-alibuild01"]
    assert conn.compute.find_server("ostest-alimetal01") is None  # the other project's
    attachments = list(conn.compute.volume_attachments(found))
    assert [a.device for a in attachments] == ["/dev/vdb"]
    assert {f.name for f in conn.compute.flavors()} == {"m2.large", "m2.2xlarge", "p1.dl8245125.S513-V-IP28"}
    assert sorted(z.name for z in conn.compute.availability_zones()) == [
        "cern-geneva-a",
        "cern-geneva-b",
        "cern-geneva-c",
    ]
    metal = connect(emulator, METAL)
    assert [s.name for s in metal.compute.servers()] == ["ostest-alimetal01"]


def test_openstacksdk_clouds_yaml(emulator: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = {
        "auth_url": f"{KEYSTONE}/v3",
        "username": USER,
        "password": PASSWORD,
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    clouds = {
        "clouds": {
            "ostest-physical": {
                "auth": {**auth, "project_name": METAL},
                "region_name": "cern",
                "identity_api_version": 3,
                "cacert": emulator["ca"],
            }
        }
    }
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("OS_CLOUD", "ostest-physical")
    conn = openstack.connect()
    assert [s.name for s in conn.compute.servers()] == ["ostest-alimetal01"]


# --- (3) actions act on the containers


def test_hard_reboot_restarts_the_container(emulator: dict[str, Any]) -> None:
    conn = connect(emulator)
    before = inspect("ostest-alimesos01")["State"]["StartedAt"]
    conn.compute.reboot_server(SERVER_IDS["ostest-alimesos01"], "HARD")
    wait_status(conn, "ostest-alimesos01", "ACTIVE")
    state = inspect("ostest-alimesos01")["State"]
    assert state["Running"]
    assert state["StartedAt"] != before


def test_stop_start_and_conflicts(emulator: dict[str, Any], token: str) -> None:
    conn = connect(emulator)
    sid = SERVER_IDS["ostest-alibuild02"]
    resp = nova(emulator, token, f"/servers/{sid}/action", method="POST", body={"os-start": None})
    assert resp.status_code == 409
    assert "conflictingRequest" in resp.json()
    conn.compute.stop_server(sid)
    server = wait_status(conn, "ostest-alibuild02", "SHUTOFF")
    assert server.vm_state == "stopped"
    assert server.power_state == 4
    assert not inspect("ostest-alibuild02")["State"]["Running"]
    assert server.addresses[NETWORK][0]["addr"] == "172.31.250.22"  # a stopped server keeps its address
    resp = nova(emulator, token, f"/servers/{sid}/action", method="POST", body={"os-stop": None})
    assert resp.status_code == 409
    conn.compute.start_server(sid)
    wait_status(conn, "ostest-alibuild02", "ACTIVE")
    assert inspect("ostest-alibuild02")["State"]["Running"]


def test_rebuild_recreates_the_container(emulator: dict[str, Any], token: str) -> None:
    conn = connect(emulator)
    name, sid = "ostest-alibuild01", SERVER_IDS["ostest-alibuild01"]
    old = inspect(name)
    docker("exec", name, "sh", "-c", "echo x > /root-disk-file; echo y > /data/volume-file")
    server = conn.compute.get_server(sid)
    rebuilt = conn.compute.rebuild_server(server, server.image.id)
    assert rebuilt.id == sid
    wait_status(conn, name, "ACTIVE")
    new = inspect(name)
    assert new["Id"] != old["Id"]
    assert new["State"]["Running"]
    assert new["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] == "172.31.250.21"
    assert new["Config"]["Labels"] == old["Config"]["Labels"]
    assert docker("exec", name, "/bin/busybox", "cat", "/data/volume-file") == "y"  # volumes survive
    assert docker("exec", name, "sh", "-c", "test -e /root-disk-file || echo clean") == "clean"
    # The raw call, at the newest server microversion, answers the full server as the sample shows.
    request = {"rebuild": {"imageRef": server.image.id, "user_data": "ZWNobyAiaGVsbG8gd29ybGQi"}}
    resp = nova(emulator, token, f"/servers/{sid}/action", "2.100", "POST", request)
    assert resp.status_code == 202, resp.text
    assert_same_shape(sample("nova_server_action_rebuild_v2.100"), resp.json(), "$", free_maps={*FREE_MAPS, *NOVA_MAPS})
    assert resp.json()["server"]["status"] == "REBUILD"
    wait_status(conn, name, "ACTIVE")
    assert inspect(name)["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] == "172.31.250.21"


def test_rebuild_shape_v21(emulator: dict[str, Any], token: str) -> None:
    conn = connect(emulator)
    sid = SERVER_IDS["ostest-alimetal01"]
    metal_token = get_token(emulator, METAL).headers["X-Subject-Token"]
    resp = nova(emulator, metal_token, f"/servers/{sid}/action", None, "POST", {"rebuild": {"imageRef": "x"}})
    assert resp.status_code == 202, resp.text
    assert_same_shape(sample("nova_server_action_rebuild_v2.1"), resp.json(), "$", free_maps={*FREE_MAPS, *NOVA_MAPS})
    metal = connect(emulator, METAL)
    wait_status(metal, "ostest-alimetal01", "ACTIVE")
    assert conn.compute.find_server("ostest-alimetal01") is None


# --- (4) authentication and the lab's overrides


def test_authentication(emulator: dict[str, Any], token: str) -> None:
    assert get_token(emulator, password="wrong").status_code == 401
    assert get_token(emulator, project="no such project").status_code == 401
    assert nova(emulator, None, "/servers/detail").status_code == 401
    assert nova(emulator, "not-a-token", "/flavors").status_code == 401
    missing = nova(emulator, token, f"/servers/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert "itemNotFound" in missing.json()
    other = nova(emulator, token, f"/servers/{SERVER_IDS['ostest-alimetal01']}")
    assert other.status_code == 404
    assert requests.get(f"{NOVA}/", verify=emulator["ca"], timeout=10).status_code == 200  # discovery is open


def test_lab_override(emulator: dict[str, Any], token: str) -> None:
    url, sid = f"{NOVA}/lab/servers/ostest-alimesos01", SERVER_IDS["ostest-alimesos01"]

    def az() -> str:
        return str(nova(emulator, token, f"/servers/{sid}").json()["server"]["OS-EXT-AZ:availability_zone"])

    denied = requests.patch(
        url, json={"az": "cern-geneva-b"}, headers={"X-Lab-Admin": "nope"}, verify=emulator["ca"], timeout=10
    )
    assert denied.status_code == 403
    assert az() == "cern-geneva-a"
    ok = requests.patch(
        url, json={"az": "cern-geneva-b"}, headers={"X-Lab-Admin": ADMIN_SECRET}, verify=emulator["ca"], timeout=10
    )
    assert ok.status_code == 200
    assert az() == "cern-geneva-b"
    cleared = requests.delete(
        f"{url}/override", headers={"X-Lab-Admin": ADMIN_SECRET}, verify=emulator["ca"], timeout=10
    )
    assert cleared.status_code == 204
    assert az() == "cern-geneva-a"


def test_sigterm_exits_within_a_second(emulator: dict[str, Any]) -> None:
    proc = emulator["proc"]
    assert proc.poll() is None
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - start < 1.0
    assert "Traceback" not in emulator["log"].read_text()


# --- (5) roles and Nova's policies, against a fake Docker Engine (no daemon, no container)

FAKE_HOST = "127.0.0.32"
FAKE_KEYSTONE, FAKE_NOVA = f"http://{FAKE_HOST}:5000", f"http://{FAKE_HOST}:8774"
FAKE_LABEL, FAKE_NETWORK = "ostest.fake.server", "ostest-fake"
ROLE_USERS = {  # name: the user's one role assignment (project, role)
    "vms-reader": (VMS, "reader"),
    "vms-member": (VMS, "member"),
    "metal-reader": (METAL, "reader"),
    "metal-member": (METAL, "member"),
    "vms-admin": (VMS, "admin"),
    "vms-observer": (VMS, "observer"),  # a role Nova's default policies know nothing of
}
FAKE_SERVERS = {  # name: (project, ip, has a volume)
    "fake-vm01": (VMS, "172.31.251.11", True),
    "fake-vm02": (VMS, "172.31.251.12", False),
    "fake-metal01": (METAL, "172.31.251.31", False),
}
FAKE_IDS = {name: str(uuid.uuid5(uuid.NAMESPACE_DNS, name)) for name in FAKE_SERVERS}


def policy_message(rule: str) -> dict[str, Any]:
    """Nova's 403 body (nova/exception.py PolicyNotAuthorized through nova/api/openstack/wsgi.py Fault)."""
    return {"forbidden": {"code": 403, "message": f"Policy doesn't allow {rule} to be performed."}}


class FakeDocker:
    """The Docker Engine API calls the emulator makes (list containers; restart, stop, start), on a unix
    socket; every action is recorded as (action, container name)."""

    def __init__(self, path: str) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.containers: dict[str, dict[str, Any]] = {}
        for name, (project, ip, vdb) in FAKE_SERVERS.items():
            label = {
                "id": FAKE_IDS[name],
                "name": name,
                "project": project,
                "flavor": "m2.large",
                "az": "cern-geneva-a",
                "image": "ALMA9 - x86_64",
                "created": "2026-11-01T09:00:00Z",
                "metadata": {},
                "volumes": [{"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"vol-{name}")), "device": "/dev/vdb"}]
                if vdb
                else [],
            }
            self.containers[name] = {
                "Id": uuid.uuid5(uuid.NAMESPACE_DNS, f"container-{name}").hex * 2,
                "Names": [f"/{name}"],
                "Labels": {FAKE_LABEL: json.dumps(label)},
                "State": "running",
                "Created": 1_790_000_000,
                "NetworkSettings": {"Networks": {FAKE_NETWORK: {"IPAddress": ip, "MacAddress": ""}}},
            }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: Any = None) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if raw:  # a 204 has no body (the client may already have closed the connection)
                    self.wfile.write(raw)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/v1.41/containers/json":
                    return self.answer(404, {"message": f"no route {url.path}"})
                wanted = json.loads(parse_qs(url.query).get("filters", ["{}"])[0]).get("label", [])
                with fake.lock:
                    items = [c for c in fake.containers.values() if all(k in c["Labels"] for k in wanted)]
                    self.answer(200, json.loads(json.dumps(items)))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path).path.split("/")  # "", "v1.41", "containers", id, action
                states = {"restart": "running", "stop": "exited", "start": "running"}
                with fake.lock:
                    found = [n for n, c in fake.containers.items() if len(parts) == 5 and c["Id"] == parts[3]]
                    if not found or parts[4] not in states:
                        return self.answer(404, {"message": f"no such container or action: {self.path}"})
                    fake.containers[found[0]]["State"] = states[parts[4]]
                    fake.calls.append((parts[4], found[0]))
                self.answer(204)

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-docker", daemon=True).start()

    def since(self, mark: int) -> list[tuple[str, str]]:
        with self.lock:
            return self.calls[mark:]

    def mark(self) -> int:
        with self.lock:
            return len(self.calls)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The emulator (plain HTTP, standard library only: -S) over a fake Docker socket, with one user per
    (project, role) of ROLE_USERS, the lab's existing user (`projects`: member on both) and three servers."""
    tmp = tmp_path_factory.mktemp("osfake")
    docker_api = FakeDocker(str(tmp / "docker.sock"))
    users: list[dict[str, Any]] = [
        {"name": name, "password": PASSWORD, "domain": "Default", "roles": [{"project": project, "role": role}]}
        for name, (project, role) in ROLE_USERS.items()
    ]
    users.append({"name": USER, "password": PASSWORD, "domain": "Default", "projects": [VMS, METAL]})
    cfg = {
        "bind": FAKE_HOST,
        "public_host": FAKE_HOST,
        "network": FAKE_NETWORK,
        "tls": None,
        "users": users,
        "projects": PROJECTS,
        "flavors": [{**f, "extra_specs": {"hw:cpu_policy": "shared"}} for f in FLAVORS],
        "availability_zones": ["cern-geneva-a", "cern-geneva-b", "cern-geneva-c"],
        "lab_admin_secret": ADMIN_SECRET,
        "label": FAKE_LABEL,
        "stop_timeout": 1,
    }
    (tmp / "openstack.json").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(HERE), "ALICELAB_DOCKER_SOCKET": str(tmp / "docker.sock")}
    log = (tmp / "emulator.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "emulators.openstack", str(tmp / "openstack.json")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def listening() -> bool:
        assert proc.poll() is None, (tmp / "emulator.log").read_text()
        try:
            for port in (5000, 8774):
                socket.create_connection((FAKE_HOST, port), timeout=0.5).close()
            return True
        except OSError:
            return False

    wait_until(listening, timeout=10, what="the emulator to listen")
    try:
        yield {
            "keystone": FAKE_KEYSTONE,
            "nova": FAKE_NOVA,
            "ca": True,
            "docker": docker_api,
            "log": tmp / "emulator.log",
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
        docker_api.server.shutdown()
        docker_api.server.server_close()
        assert "Traceback" not in (tmp / "emulator.log").read_text()


def role_token(emu: dict[str, Any], user: str, project: str | None = None) -> str:
    resp = get_token(emu, project or ROLE_USERS[user][0], user=user)
    assert resp.status_code == 201, resp.text
    return str(resp.headers["X-Subject-Token"])


def act(emu: dict[str, Any], token: str, name: str, body: Any) -> requests.Response:
    return nova(emu, token, f"/servers/{FAKE_IDS[name]}/action", method="POST", body=body)


def settle(emu: dict[str, Any], token: str, name: str, status: str = "ACTIVE") -> None:
    def done() -> bool:
        server = nova(emu, token, f"/servers/{FAKE_IDS[name]}").json()["server"]
        return bool(server["status"] == status and server["OS-EXT-STS:task_state"] is None)

    wait_until(done, timeout=10, what=f"{name} to be {status}")


def listed(emu: dict[str, Any], token: str, path: str = "/servers/detail") -> list[str]:
    resp = nova(emu, token, path)
    assert resp.status_code == 200, resp.text
    return sorted(s["name"] for s in resp.json()["servers"])


ACTIONS = [  # (body, Nova's rule)
    ({"reboot": {"type": "SOFT"}}, "os_compute_api:servers:reboot"),
    ({"reboot": {"type": "HARD"}}, "os_compute_api:servers:reboot"),
    ({"os-stop": None}, "os_compute_api:servers:stop"),
    ({"os-start": None}, "os_compute_api:servers:start"),
    ({"rebuild": {"imageRef": str(uuid.uuid4())}}, "os_compute_api:servers:rebuild"),
]


def test_tokens_list_the_effective_roles(fake: dict[str, Any]) -> None:
    expected = {
        "vms-reader": ["reader"],
        "vms-member": ["member", "reader"],
        "vms-admin": ["admin", "manager", "member", "reader"],  # keystone-manage bootstrap's implied roles
        "vms-observer": ["observer"],
    }
    ids: dict[str, str] = {}
    for user, roles in expected.items():
        resp = get_token(fake, VMS, user=user)
        assert resp.status_code == 201, resp.text
        token = resp.json()["token"]
        assert [r["name"] for r in token["roles"]] == roles
        for r in token["roles"]:
            assert ids.setdefault(r["name"], r["id"]) == r["id"]  # one id per role, whoever holds it
        assert_same_shape(sample("keystone_auth_tokens_project_scoped"), resp.json(), "$")
    for project in (VMS, METAL):  # the older `projects` key: member
        resp = get_token(fake, project)
        assert [r["name"] for r in resp.json()["token"]["roles"]] == ["member", "reader"]
    denied = get_token(fake, METAL, user="vms-reader")  # no role on that project: no token for it
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == 401
    assert get_token(fake, VMS, user="nobody").status_code == 401
    assert get_token(fake, VMS, password="wrong", user="vms-member").status_code == 401


def test_reader_reads_but_may_not_act(fake: dict[str, Any]) -> None:
    token, sid = role_token(fake, "vms-reader"), FAKE_IDS["fake-vm01"]
    assert listed(fake, token) == ["fake-vm01", "fake-vm02"]
    assert listed(fake, token, "/servers") == ["fake-vm01", "fake-vm02"]
    assert nova(fake, token, f"/servers/{sid}").json()["server"]["status"] == "ACTIVE"
    attachments = nova(fake, token, f"/servers/{sid}/os-volume_attachments")
    assert attachments.status_code == 200
    assert [a["device"] for a in attachments.json()["volumeAttachments"]] == ["/dev/vdb"]
    assert nova(fake, token, "/flavors/detail").status_code == 200
    assert nova(fake, token, "/os-availability-zone").status_code == 200
    mark = fake["docker"].mark()
    for body, rule in ACTIONS:
        resp = act(fake, token, "fake-vm01", body)
        assert resp.status_code == 403, (body, resp.text)
        assert resp.json() == policy_message(rule)
        assert resp.headers["OpenStack-API-Version"] == "compute 2.1"
    # Nova validates the body first (400), then finds the server (404), then checks the policy (403)
    assert act(fake, token, "fake-vm01", {"reboot": {"type": "GENTLE"}}).status_code == 400
    assert nova(fake, token, f"/servers/{uuid.uuid4()}/action", method="POST", body=ACTIONS[0][0]).status_code == 404
    assert fake["docker"].since(mark) == []
    assert nova(fake, token, f"/servers/{sid}").json()["server"]["status"] == "ACTIVE"


def test_member_may_act(fake: dict[str, Any]) -> None:
    token = role_token(fake, "vms-member")
    mark = fake["docker"].mark()
    for body in ({"reboot": {"type": "HARD"}}, {"reboot": {"type": "SOFT"}}, {"os-stop": None}):
        resp = act(fake, token, "fake-vm02", body)
        assert resp.status_code == 202, resp.text
        settle(fake, token, "fake-vm02", "SHUTOFF" if "os-stop" in body else "ACTIVE")
    assert act(fake, token, "fake-vm02", {"os-start": None}).status_code == 202
    settle(fake, token, "fake-vm02")
    assert fake["docker"].since(mark) == [
        ("restart", "fake-vm02"),
        ("restart", "fake-vm02"),
        ("stop", "fake-vm02"),
        ("start", "fake-vm02"),
    ]
    legacy = get_token(fake, METAL).headers["X-Subject-Token"]  # `projects`: member, as before
    assert act(fake, legacy, "fake-metal01", {"reboot": {"type": "HARD"}}).status_code == 202
    settle(fake, legacy, "fake-metal01")


def test_projects_are_separate(fake: dict[str, Any]) -> None:
    vms, metal = role_token(fake, "vms-reader"), role_token(fake, "metal-reader")
    vms_member, metal_member = role_token(fake, "vms-member"), role_token(fake, "metal-member")
    assert listed(fake, vms) == listed(fake, vms_member) == ["fake-vm01", "fake-vm02"]
    assert listed(fake, metal) == listed(fake, metal_member) == ["fake-metal01"]
    metal_id, vm_id = FAKE_IDS["fake-metal01"], FAKE_IDS["fake-vm01"]
    for token, path in (
        (vms, f"/servers/{metal_id}"),
        (vms_member, f"/servers/{metal_id}"),
        (metal, f"/servers/{vm_id}/os-volume_attachments"),
    ):
        resp = nova(fake, token, path)
        assert resp.status_code == 404
        assert resp.json() == {
            "itemNotFound": {"code": 404, "message": f"Instance {path.split('/')[2]} could not be found."}
        }
    mark = fake["docker"].mark()
    other = act(fake, vms_member, "fake-metal01", {"reboot": {"type": "HARD"}})  # not found before forbidden
    assert other.status_code == 404
    assert "itemNotFound" in other.json()
    own = act(fake, metal, "fake-metal01", {"os-stop": None})
    assert own.json() == policy_message("os_compute_api:servers:stop")
    assert fake["docker"].since(mark) == []
    # ?all_tenants is the admins' (an empty value counts as yes, 0 as no, other words are a 400)
    for path in ("/servers/detail?all_tenants=1", "/servers?all_tenants"):
        resp = nova(fake, vms_member, path)
        kind = "detail" if "detail" in path else "index"
        assert resp.json() == policy_message(f"os_compute_api:servers:{kind}:get_all_tenants")
    assert listed(fake, vms, "/servers/detail?all_tenants=0") == ["fake-vm01", "fake-vm02"]
    assert nova(fake, vms, "/servers/detail?all_tenants=maybe").status_code == 400


def test_admin_and_unknown_roles(fake: dict[str, Any]) -> None:
    admin, member = role_token(fake, "vms-admin"), role_token(fake, "vms-member")
    assert listed(fake, admin) == ["fake-vm01", "fake-vm02"]
    assert listed(fake, admin, "/servers/detail?all_tenants=1") == ["fake-metal01", "fake-vm01", "fake-vm02"]
    assert nova(fake, admin, f"/servers/{FAKE_IDS['fake-metal01']}").status_code == 200  # admin: any project's
    assert nova(fake, admin, "/os-availability-zone/detail").status_code == 200
    zones = nova(fake, member, "/os-availability-zone/detail")
    assert zones.json() == policy_message("os_compute_api:os-availability-zone:detail")
    observer = role_token(fake, "vms-observer")  # a token, but none of Nova's roles
    assert nova(fake, observer, "/servers/detail").json() == policy_message("os_compute_api:servers:detail")
    assert nova(fake, observer, "/servers").json() == policy_message("os_compute_api:servers:index")
    assert nova(fake, observer, "/os-availability-zone").status_code == 200  # "@"
    flavors = nova(fake, observer, "/flavors/detail", "2.61")  # flavors need no role; extra specs need reader
    assert flavors.status_code == 200
    assert all("extra_specs" not in f for f in flavors.json()["flavors"])
    assert all(f["extra_specs"] for f in nova(fake, member, "/flavors/detail", "2.61").json()["flavors"])


def test_token_validation_is_for_its_subject_or_an_admin(fake: dict[str, Any]) -> None:
    reader, member, admin = (role_token(fake, u) for u in ("vms-reader", "vms-member", "vms-admin"))

    def check(method: str, caller: str, subject: str) -> requests.Response:
        headers = {"X-Auth-Token": caller, "X-Subject-Token": subject}
        return requests.request(method, f"{FAKE_KEYSTONE}/v3/auth/tokens", headers=headers, timeout=10)

    assert check("GET", reader, reader).status_code == 200
    assert check("GET", admin, member).status_code == 200
    denied = check("GET", reader, member)
    assert denied.status_code == 403
    assert denied.json() == {
        "error": {
            "code": 403,
            "title": "Forbidden",
            "message": "You are not authorized to perform the requested action: identity:validate_token.",
        }
    }
    assert check("HEAD", reader, member).status_code == 403
    assert check("DELETE", reader, member).status_code == 403
    assert check("GET", member, member).status_code == 200  # not revoked by the refusal


def test_openstacksdk_reader_cloud_gets_forbidden(
    fake: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader-only clouds.yaml reads everything the suite reads and can no longer reboot, stop or start."""
    clouds = {
        "clouds": {
            "ostest-reader": {
                "auth": {
                    "auth_url": f"{FAKE_KEYSTONE}/v3",
                    "username": "vms-reader",
                    "password": PASSWORD,
                    "project_name": VMS,
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": "cern",
                "identity_api_version": 3,
            }
        }
    }
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("OS_CLOUD", "ostest-reader")
    conn = openstack.connect()
    assert sorted(s.name for s in conn.compute.servers()) == ["fake-vm01", "fake-vm02"]
    server = conn.compute.find_server("fake-vm01")
    assert server is not None
    assert [a.device for a in conn.compute.volume_attachments(server)] == ["/dev/vdb"]
    assert conn.compute.find_server("fake-metal01") is None
    mark = fake["docker"].mark()
    calls: list[tuple[Callable[[], Any], str]] = [
        (lambda: conn.compute.reboot_server(server, "SOFT"), "reboot"),
        (lambda: conn.compute.reboot_server(server, "HARD"), "reboot"),
        (lambda: conn.compute.stop_server(server), "stop"),
        (lambda: conn.compute.start_server(server), "start"),
    ]
    for call, rule in calls:
        with pytest.raises(openstack.exceptions.ForbiddenException) as refused:
            call()
        assert refused.value.status_code == 403
        assert f"Policy doesn't allow os_compute_api:servers:{rule} to be performed." in str(refused.value)
    assert fake["docker"].since(mark) == []


def test_config_roles_are_checked() -> None:
    from tests.lab.emulators import openstack as emulator

    assert emulator.effective_roles(["admin"]) == ["admin", "manager", "member", "reader"]
    assert emulator.effective_roles(["reader", "member"]) == ["reader", "member"]
    base_cfg = {"public_host": "127.0.0.1", "projects": PROJECTS, "flavors": [], "availability_zones": []}
    docker_api = emulator.Docker("/nonexistent.sock")
    ok = {"name": "a", "password": "p", "projects": [VMS], "roles": [{"project": METAL, "role": "reader"}]}
    emu = emulator.OpenStack({**base_cfg, "users": [ok]}, docker_api)
    assert emu.users[0]["assignments"] == {VMS: ["member"], METAL: ["reader"]}
    for users, error in (
        ([{**ok, "roles": [{"project": "no such project", "role": "reader"}]}], "no project"),
        ([{**ok, "projects": ["no such project"]}], "no project"),
        ([{**ok, "roles": [{"project": VMS}]}], "role assignment"),
        ([{**ok, "roles": [{"project": VMS, "role": " "}]}], "empty role"),
        ([ok, ok], "unique"),
    ):
        with pytest.raises(ValueError, match=error):
            emulator.OpenStack({**base_cfg, "users": users}, docker_api)
