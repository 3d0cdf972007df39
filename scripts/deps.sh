#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Install every Debian package mbufmux needs to build, test and run its VM.
# Idempotent: a quick no-op when everything is already installed.
#
# Usage: scripts/deps.sh [--debug]   (--debug adds the debug-kernel toolchain)
set -eu

PKGS="make gcc libc6-dev qemu-system-x86 busybox-static cpio gzip xz-utils
      linux-headers-6.12-cloud-amd64 linux-headers-amd64 linux-source-6.12
      sparse python3 perl iproute2 kmod zstd dkms openssl iperf3 socat"
if [ "${1:-}" = "--debug" ]; then
	PKGS="$PKGS bc flex bison libelf-dev libssl-dev dwarves"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
	     grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
