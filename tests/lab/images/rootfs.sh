#!/usr/bin/env bash
# Builds the lab's Debian rootfs with debootstrap and imports it as a Docker image.
# Usage: rootfs.sh IMAGE_TAG   (the caller decides the tag from a hash of this file)
# Every package the lab nodes need is in here, so that nodes boot without any network.
set -euo pipefail
tag=$1
work=$(mktemp -d /var/tmp/alicelab-rootfs.XXXXXX)
trap 'umount -l "$work/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
mirror=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,ca-certificates,apt-transport-https \
  bookworm "$work" "$mirror"
mount -t proc proc "$work/proc"
cat > "$work/usr/sbin/policy-rc.d" <<'P'
#!/bin/sh
exit 101
P
chmod +x "$work/usr/sbin/policy-rc.d"
chroot "$work" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$work" apt-get install -y -qq --no-install-recommends \
  openssh-server python3 iproute2 iputils-ping procps curl openssl less rsync kmod \
  prometheus prometheus-node-exporter docker.io puppet docker-registry util-linux e2fsprogs \
  >/dev/null
chroot "$work" apt-get clean
rm -f "$work/usr/sbin/policy-rc.d"
rm -rf "$work/var/lib/apt/lists/"* "$work/etc/ssh/ssh_host_"*
umount -l "$work/proc"
tar -C "$work" -c . | docker import \
  --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' \
  - "$tag" >/dev/null
echo "$tag"
