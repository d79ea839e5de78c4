#!/usr/bin/env bash
# Builds the systemd test images from Debian's packages (no registry needed).
# Each image is tagged with a hash of this recipe, so an unchanged recipe is not rebuilt.
#   tests/images/build.sh [bookworm|trixie ...]    (default: both)
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,gnupg
RECIPE_HASH=$(sha256sum "$0" | cut -c1-12)

declare -A IMAGE_NAME=([bookworm]=platform-test-debian12 [trixie]=platform-test-debian13)

build() {
  local suite=$1 name=${IMAGE_NAME[$1]}
  if docker image inspect "$name:$RECIPE_HASH" >/dev/null 2>&1; then
    echo "image $name:$RECIPE_HASH is up to date"
    docker tag "$name:$RECIPE_HASH" "$name:latest"
    return
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/rootfs-"$suite".XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  echo "building $name:$RECIPE_HASH from Debian $suite"
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log"; exit 1; }
  rm -f "$rootfs.log"
  cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $SECURITY_MIRROR $suite-security main
SOURCES
  # A container has no consoles and no kernel modules to load: these units only fail.
  for unit in getty.target console-getty.service systemd-modules-load.service \
              systemd-udevd.service systemd-udev-trigger.service sys-kernel-config.mount; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  echo 'platform-test' >"$rootfs/etc/hostname"
  : >"$rootfs/etc/machine-id"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" -c . | docker import \
    -c 'CMD ["/lib/systemd/systemd"]' -c 'ENV container=docker' \
    - "$name:$RECIPE_HASH"
  docker tag "$name:$RECIPE_HASH" "$name:latest"
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
for suite in "${suites[@]}"; do
  [ -n "${IMAGE_NAME[$suite]:-}" ] || { echo "unknown suite: $suite (expected bookworm or trixie)" >&2; exit 2; }
  build "$suite"
done
