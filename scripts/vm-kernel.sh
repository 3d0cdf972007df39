#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Print the path of a test VM kernel: the vmlinuz of the Debian image
# package that matches the headers in KDIR (linux-image-6.12-cloud-amd64's
# by default, Debian 12's own linux-image-6.1.0-*-amd64 with the 6.1
# headers), unpacked from the .deb (never from the host's /boot) into a
# cache outside the checkout:
#
#   ${MBUFMUX_CACHE:-/var/cache/mbufmux}/kernel/<kver>/vmlinuz
#   ${MBUFMUX_CACHE:-/var/cache/mbufmux}/kernel/<kver>/vmlinux (--vmlinux)
#   ${MBUFMUX_CACHE:-/var/cache/mbufmux}/kernel/<kver>/lib/modules/<kver>/
#
# The kernel release is checked against the headers in KDIR, so modules
# built there load in the VM (vermagic, modversions).
#
# Usage: scripts/vm-kernel.sh [--vmlinux | --moddir | --release]
#   (no option)  print the vmlinuz path
#   --vmlinux    print the path of the uncompressed ELF vmlinux, which qemu
#                boots through its PVH entry point, skipping the bzImage's
#                decompression (seconds under TCG); the vmlinuz path if the
#                kernel has no CONFIG_PVH or cannot be unpacked
#   --moddir     print the lib/modules/<kver> directory instead
#   --release    print the kernel release string instead
# Env: MBUFMUX_CACHE (cache root), KDIR (headers, default: the 6.12 cloud
#      ones), MBUFMUX_KERNEL_PKG (the metapackage that names the current
#      image, default linux-image-6.12-cloud-amd64 for cloud headers,
#      linux-image-amd64 otherwise).
set -eu

if [ -z "${KDIR:-}" ]; then
	KDIR=$(ls -d /usr/src/linux-headers-6.12.*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)
fi
CACHE=${MBUFMUX_CACHE:-/var/cache/mbufmux}

die() { echo "vm-kernel: $*" >&2; exit 1; }

what=vmlinuz
case "${1:-}" in
"") ;;
--vmlinux) what=vmlinux ;;
--moddir) what=moddir ;;
--release) what=release ;;
*) die "usage: $0 [--vmlinux | --moddir | --release]" ;;
esac

# The release the modules are built for: UTS_RELEASE, what their vermagic
# says. (Debian's 6.1 headers have "6.1.192" in kernel.release but build
# for "6.1.0-57-amd64", the image's release.)
uts=$KDIR/include/generated/utsrelease.h
[ -r "$uts" ] || die "no kernel headers in KDIR=$KDIR (run scripts/deps.sh)"
want=$(sed -n 's/^#define UTS_RELEASE "\(.*\)"$/\1/p' "$uts")
[ -n "$want" ] || die "no UTS_RELEASE in $uts"
case $want in
*-cloud-amd64) META=${MBUFMUX_KERNEL_PKG:-linux-image-6.12-cloud-amd64} ;;
*) META=${MBUFMUX_KERNEL_PKG:-linux-image-amd64} ;;
esac

# Release string embedded in a bzImage: setup header field kernel_version
# (16 bits at 0x20e) points, relative to 0x200, at a NUL-terminated string
# "<release> (<builder>) #<n> ...".
bzimage_release() {
	off=$(od -An -tu2 -j 526 -N 2 "$1" | tr -d ' ')
	dd if="$1" bs=1 skip=$((off + 512)) count=256 2>/dev/null |
		tr '\0' '\n' | head -n 1 | cut -d ' ' -f 1
}

# Unpack the ELF vmlinux inside a bzImage. The setup header gives where
# the compressed payload is (setup_sects at 0x1f1, payload_offset and
# payload_length at 0x248/0x24c); kbuild appends the uncompressed size to
# zstd and xz payloads.
extract_vmlinux() {
	setup=$(od -An -tu1 -j 497 -N 1 "$1" | tr -d ' ')
	[ "$setup" -ne 0 ] || setup=4
	poff=$(od -An -tu4 -j 584 -N 4 "$1" | tr -d ' ')
	plen=$(od -An -tu4 -j 588 -N 4 "$1" | tr -d ' ')
	start=$(((setup + 1) * 512 + poff))
	case $(od -An -tx1 -j "$start" -N 4 "$1" | tr -d ' ') in
	28b52ffd) dec="zstd -dcq" plen=$((plen - 4)) ;;
	fd377a58) dec="xz -dc" plen=$((plen - 4)) ;;
	1f8b08*) dec="gzip -dc" ;;
	*) return 1 ;;
	esac
	# shellcheck disable=SC2086 # $dec is a command and its options
	tail -c +"$((start + 1))" "$1" | head -c "$plen" | $dec >"$2.tmp" || return 1
	[ "$(od -An -tx1 -N 4 "$2.tmp" | tr -d ' ')" = 7f454c46 ] || return 1
	mv "$2.tmp" "$2"
}

# Fast path: this release is already cached.
kver=$want
dir="$CACHE/kernel/$kver"
if [ ! -f "$dir/.complete" ]; then
	# Resolve the metapackage to the real image package, e.g.
	# linux-image-6.12.117+deb12-cloud-amd64.
	pkg=$(apt-cache depends "$META" 2>/dev/null |
		sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[^ ]*\).*/\1/p' |
		grep -v -e '-unsigned$' -e '-dbg$' | head -n 1) || true
	[ -n "$pkg" ] || pkg="linux-image-$want"
	[ "${pkg#linux-image-}" = "$want" ] ||
		die "$META is ${pkg#linux-image-} but KDIR headers are $want: update KDIR or the headers package"
	mkdir -p "$CACHE/kernel"
	# Serialise concurrent first runs; re-check under the lock.
	exec 9>"$CACHE/kernel/.lock"
	flock 9
	if [ ! -f "$dir/.complete" ]; then
		echo "vm-kernel: fetching $pkg into $dir" >&2
		tmp=$(mktemp -d "$CACHE/kernel/.tmp.XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		# Same Debian version as the installed headers, when known, so
		# the modversions CRCs match too.
		hver=$(dpkg-query -W -f='${Version}' "linux-headers-$kver" 2>/dev/null) || hver=""
		spec=$pkg
		[ -z "$hver" ] || spec="$pkg=$hver"
		# apt-get download writes into the current directory; the
		# _apt sandbox user cannot write to tmp, so run unsandboxed.
		get() {
			(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$spec" >&2)
		}
		if ! get; then
			echo "vm-kernel: download failed, running apt-get update" >&2
			apt-get update -qq >&2
			get || die "cannot download $spec"
		fi
		deb=$(ls "$tmp"/*.deb)
		dpkg-deb -x "$deb" "$tmp/root"
		[ -f "$tmp/root/boot/vmlinuz-$kver" ] || die "$deb has no boot/vmlinuz-$kver"
		[ -d "$tmp/root/lib/modules/$kver" ] || die "$deb has no lib/modules/$kver"
		rm -rf "$dir"
		mkdir -p "$dir/lib/modules"
		mv "$tmp/root/boot/vmlinuz-$kver" "$dir/vmlinuz"
		mv "$tmp/root/boot/config-$kver" "$dir/config" 2>/dev/null || true
		mv "$tmp/root/boot/System.map-$kver" "$dir/System.map" 2>/dev/null || true
		mv "$tmp/root/lib/modules/$kver" "$dir/lib/modules/$kver"
		mv "$deb" "$dir/"
		rel=$(bzimage_release "$dir/vmlinuz")
		[ "$rel" = "$want" ] ||
			die "$dir/vmlinuz is release '$rel', KDIR headers are '$want'"
		echo "$rel" >"$dir/release"
		# The .deb ships no modules.dep; build it for modprobe -d.
		depmod -b "$dir" "$kver"
		touch "$dir/.complete"
		rm -rf "$tmp"
		trap - EXIT
	fi
	exec 9>&-
fi

# Cheap re-check on every run: the cached image must still match KDIR.
rel=$(cat "$dir/release")
[ "$rel" = "$want" ] || die "cached kernel is '$rel', KDIR headers are '$want'"
echo "vm-kernel: $rel (matches $KDIR)" >&2

if [ "$what" = vmlinux ]; then
	what=vmlinuz
	if grep -q '^CONFIG_PVH=y' "$dir/config" 2>/dev/null; then
		if [ ! -f "$dir/vmlinux" ]; then
			exec 9>"$CACHE/kernel/.lock"
			flock 9
			[ -f "$dir/vmlinux" ] || extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux" ||
				echo "vm-kernel: cannot unpack vmlinux, using vmlinuz" >&2
			rm -f "$dir/vmlinux.tmp"
			exec 9>&-
		fi
		[ ! -f "$dir/vmlinux" ] || what=vmlinux
	fi
fi

case $what in
vmlinuz) echo "$dir/vmlinuz" ;;
vmlinux) echo "$dir/vmlinux" ;;
moddir) echo "$dir/lib/modules/$kver" ;;
release) echo "$rel" ;;
esac
