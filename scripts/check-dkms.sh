#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# make check-dkms: DKMS (dkms.conf) builds, signs and installs the product
# modules for each kernel given, as `dkms add` and `dkms install` do on a
# real machine (README.md), but in a throwaway DKMS tree under
# $MBUFMUX_BUILD/dkms (default build/dkms): the system's /var/lib/dkms,
# /usr/src, /lib/modules and DKMS signing key are left alone. The source
# DKMS gets is the checkout's files, without build output (git ls-files).
#
# Per kernel: dkms build and install (into the throwaway install tree,
# then depmod there) succeed; Kbuild links exactly mbufmux.ko and
# mbufmux_tcp.ko (its make.log: no test module), for that kernel (vermagic), carrying dkms.conf's PACKAGE_VERSION
# (modinfo -F version), signed with DKMS's key ("DKMS module signing key",
# the MOK of README's Secure Boot note); mbufmux.ko has none of the test
# hooks (nm: no mbufmux_pool_inject_slab_failures, mbufmux_pool_shrink);
# modprobe resolves the ULP's alias tcp-ulp-mbufmux to mbufmux, then
# mbufmux_tcp, from updates/dkms.
#
# Usage: scripts/check-dkms.sh KDIR...   (kernel header trees)
# Prints TAP; exits 0 if every check passed, 1 otherwise.
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${MBUFMUX_BUILD:-$repo/build}
top=$build/dkms
hooks="mbufmux_pool_inject_slab_failures mbufmux_pool_shrink"

die() { echo "check-dkms: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 KDIR..."
command -v dkms >/dev/null || die "no dkms (run scripts/deps.sh)"
ver=$(sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$/\1/p' "$repo/dkms.conf")
[ -n "$ver" ] || die "no PACKAGE_VERSION=\"...\" line in $repo/dkms.conf"
# dkms install wants root, even into its own tree.
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

. "$repo/selftests/ktap.sh"

# The throwaway trees, and the signing key DKMS generates on first use
# (its framework.conf variables; /var/lib/dkms/mok.key by default).
$SUDO rm -rf "$top"
mkdir -p "$top/src/mbufmux-$ver" "$top/tree" "$top/root/lib/modules" "$top/key" ||
	exit 1
mok_signing_key=$top/key/mok.key
mok_certificate=$top/key/mok.pub
export mok_signing_key mok_certificate
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
	xargs -0 cp --parents -t "$top/src/mbufmux-$ver") ||
	die "cannot copy the checkout's files (not a git checkout?)"
# Not the flags of a calling make (-s would hide what make.log must show).
run_dkms() {
	$SUDO env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		mok_signing_key="$mok_signing_key" mok_certificate="$mok_certificate" \
		dkms --dkmstree "$top/tree" --sourcetree "$top/src" \
		--installtree "$top/root/lib/modules" "$@" >>"$top/dkms.log" 2>&1
}

# The files DKMS installed for kernel $kver, any compression.
installed() {	# installed MODULE
	for f in "$top/root/lib/modules/$kver/updates/dkms/$1.ko"*; do
		[ -f "$f" ] && echo "$f" && return 0
	done
	return 1
}
uncompressed() {	# uncompressed FILE OUT
	case $1 in
	*.xz) xz -dc "$1" >"$2" ;;
	*.zst) zstd -dcq "$1" >"$2" ;;
	*.gz) gzip -dc "$1" >"$2" ;;
	*) cp "$1" "$2" ;;
	esac
}
field_is() {	# field_is FIELD WANT MODULE: modinfo -F FIELD of MODULE is WANT
	got=$(modinfo -b "$top/root" -k "$kver" -F "$1" "$3" 2>&1)
	[ "$got" = "$2" ] && return 0
	echo "# $3: modinfo -F $1 is '$got', want '$2'"
	return 1
}
vermagic_ok() {	# vermagic_ok MODULE
	got=$(modinfo -b "$top/root" -k "$kver" -F vermagic "$1" 2>&1)
	case $got in
	"$kver "*) return 0 ;;
	esac
	echo "# $1: vermagic '$got', want '$kver ...'"
	return 1
}
only_products() {	# what Kbuild linked, by its make.log
	got=$(sed -n 's|^ *LD \[M\] *.*/build/\(.*\)\.ko$|\1|p' \
		"$top/tree/mbufmux/$ver/$kver/"*/log/make.log | sort | tr '\n' ' ')
	[ "$got" = "mbufmux mbufmux_tcp " ] && return 0
	echo "# built: $got"
	return 1
}
no_hooks() {
	f=$(installed mbufmux) || return 1
	uncompressed "$f" "$top/mbufmux.ko" || return 1
	syms=$(nm "$top/mbufmux.ko") || return 1
	bad=0
	for s in $hooks; do
		if printf '%s\n' "$syms" | grep -qw "$s"; then
			echo "# $f has the test hook $s"
			bad=1
		fi
	done
	return $bad
}
alias_resolves() {
	got=$(modprobe -d "$top/root" -S "$kver" --show-depends tcp-ulp-mbufmux 2>&1 |
		sed -n 's|^insmod [^ ]*/\(updates/dkms/[^ ]*\).*|\1|p' | sed 's/\.ko.*//' |
		tr '\n' ' ')
	[ "$got" = "updates/dkms/mbufmux updates/dkms/mbufmux_tcp " ] && return 0
	echo "# modprobe --show-depends tcp-ulp-mbufmux: '$got'"
	return 1
}

echo "TAP version 13"
echo "1..$((1 + 9 * $#))"
echo "# throwaway DKMS tree: $top (log: $top/dkms.log)"
check "dkms add mbufmux/$ver" run_dkms add -m mbufmux -v "$ver"
for kdir in "$@"; do
	# The release modules get (vermagic): Debian's 6.1 headers say
	# 6.1.<n> in include/config/kernel.release, 6.1.0-<abi>-amd64 here.
	kver=$(sed -n 's/^#define UTS_RELEASE "\(.*\)"$/\1/p' \
		"$kdir/include/generated/utsrelease.h" 2>/dev/null)
	[ -n "$kver" ] || die "no kernel headers in $kdir"
	echo "# kernel $kver ($kdir)"
	mkdir -p "$top/root/lib/modules/$kver"
	check "$kver: dkms build" run_dkms build -m mbufmux -v "$ver" -k "$kver" \
		--kernelsourcedir "$kdir"
	check "$kver: only mbufmux and mbufmux_tcp built" only_products
	check "$kver: dkms install" run_dkms install -m mbufmux -v "$ver" -k "$kver" \
		--kernelsourcedir "$kdir" --no-depmod
	# (It warns of the modules.order and modules.builtin of a real tree.)
	check "$kver: depmod" eval 'depmod -b "$top/root" "$kver" 2>>"$top/dkms.log"'
	check "$kver: version $ver (modinfo)" \
		eval 'field_is version "$ver" mbufmux && field_is version "$ver" mbufmux_tcp'
	check "$kver: built for $kver (vermagic)" \
		eval 'vermagic_ok mbufmux && vermagic_ok mbufmux_tcp'
	check "$kver: signed with the DKMS key" \
		eval 'field_is signer "DKMS module signing key" mbufmux &&
		      field_is signer "DKMS module signing key" mbufmux_tcp'
	check "$kver: mbufmux.ko has no test hooks" no_hooks
	check "$kver: tcp-ulp-mbufmux loads mbufmux, then mbufmux_tcp" alias_resolves
done
[ "$failed" -eq 0 ] || tail -n 30 "$top/dkms.log" | sed 's/^/# /'
[ "$failed" -eq 0 ]
