#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Build (once) the debug kernel: tinyconfig + scripts/debug-kernel.config
# from Debian's linux-source-6.12, cached outside the checkout and keyed by
# the fragment and the source version. Prints the build directory, which
# holds arch/x86/boot/bzImage and is a KDIR for external modules.
#
# Usage: scripts/debug-kernel.sh          build if needed, print the dir
#        scripts/debug-kernel.sh --key    print the cache key only
# Env:   MBUFMUX_CACHE (default /var/cache/mbufmux), SRCTREE (the unpacked
#        linux-source-6.12, default $MBUFMUX_CACHE/linux-source-6.12)
set -euo pipefail

scripts=$(cd "$(dirname "$0")" && pwd)
cache=${MBUFMUX_CACHE:-/var/cache/mbufmux}
srctree=${SRCTREE:-$cache/linux-source-6.12}
fragment=$scripts/debug-kernel.config

"$scripts/deps.sh" --debug
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.12)
key=$( (cat "$fragment"; echo "linux-source-6.12 $srcver") | sha256sum | cut -c1-16)
[ "${1:-}" != "--key" ] || { echo "$key"; exit 0; }

out=$cache/debug-kernel/$key
if [ -f "$out/.done" ]; then
	echo "$out"
	exit 0
fi
[ -f "$srctree/Makefile" ] || { echo "debug-kernel: no source tree at $srctree (make srctree)" >&2; exit 1; }

mkdir -p "$out"
log=$out/build.log
echo "debug-kernel: building into $out (log: $log); about 30 min cold on 2 cores" >&2
start=$(date +%s)
{
	make -C "$srctree" O="$out" tinyconfig
	"$srctree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment"
	make -C "$srctree" O="$out" olddefconfig
} >"$log" 2>&1

# Every option of the fragment must have survived olddefconfig.
missing=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=n) opt=${line%%=*}
		grep -q "^$opt=" "$out/.config" && { echo "debug-kernel: $opt is set, wanted n" >&2; missing=1; } ;;
	CONFIG_*=*) grep -qx "$line" "$out/.config" || { echo "debug-kernel: $line did not stick" >&2; missing=1; } ;;
	esac
done <"$fragment"
[ $missing -eq 0 ] || exit 1

nice -n 10 make -C "$srctree" O="$out" -j"$(nproc)" bzImage modules >>"$log" 2>&1 || {
	tail -n 30 "$log" >&2
	exit 1
}
mins=$(( ($(date +%s) - start + 59) / 60 ))
echo "debug-kernel: built in $mins min" | tee -a "$log" >&2
echo "$mins" >"$out/.done"
echo "$out"
