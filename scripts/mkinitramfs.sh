#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Build the test VM's initramfs (gzip'd newc cpio):
#
#   /init                      scripts/vm-init.sh
#   /bin/busybox + applets     busybox-static and its applet links
#   /bin/vm-runtests.sh        scripts/vm-runtests.sh
#   /mbufmux/*.ko              every built module: ./*.ko, selftests/*.ko
#   /selftests/                TESTS, settings, config and every executable
#                              in selftests/ (programs, scripts)
#   /demo/                     every executable in demo/ (mbufmux_demo,
#                              demo.sh: make run)
#   /usr/sbin/mbufmuxtop       tools/mbufmuxtop-static, if built
#   /lib/modules/<kver>/       Debian modules from $MBUFMUX_VM_MODULES and
#                              their dependencies (for modprobe), if present
#   /usr/bin/mbufmux-run,      tools/mbufmux-run, as installed, if built
#   /usr/lib/mbufmux/
#   /usr/bin/<program>         host programs named in $MBUFMUX_VM_PROGRAMS
#                              (default "iperf3 socat"), if installed
#   shared libraries           of any dynamically linked program above
#
# Usage: scripts/mkinitramfs.sh OUT.cpio.gz [HOSTFILE=/GUEST/PATH ...]
#   extra HOSTFILE=/GUEST/PATH arguments copy more files in.
# Env: MBUFMUX_SRC (tree to take modules and selftests from, default: this
#      checkout), MBUFMUX_VM_MODULES (Debian module names, default "tls"),
#      BUSYBOX (default /bin/busybox).
set -eu

scripts=$(cd "$(dirname "$0")" && pwd)
src=${MBUFMUX_SRC:-$(dirname "$scripts")}
busybox=${BUSYBOX:-/bin/busybox}
debmods=${MBUFMUX_VM_MODULES-tls}

die() { echo "mkinitramfs: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 OUT.cpio.gz [HOSTFILE=/GUEST/PATH ...]"
out=$1
shift
[ -x "$busybox" ] || die "no $busybox (run scripts/deps.sh)"

root=$(mktemp -d "${TMPDIR:-/tmp}/mbufmux-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT

for d in bin sbin usr/bin usr/sbin proc sys dev tmp root etc mbufmux selftests demo; do
	mkdir -p "$root/$d"
done

# Copy the shared libraries (and loader) of a dynamically linked program.
copy_libs() {
	ldd "$1" >/dev/null 2>&1 || return 0	# static, or not ELF
	echo "mkinitramfs: $1 is dynamically linked, adding its libraries" >&2
	ldd "$1" | sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' |
	while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
}

cp "$busybox" "$root/bin/busybox"
copy_libs "$root/bin/busybox"
# Applet links now rather than "busybox --install" at boot (slow under TCG).
"$busybox" --list-full | while read -r applet; do
	[ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
install -m 755 "$scripts/vm-init.sh" "$root/init"
install -m 755 "$scripts/vm-runtests.sh" "$root/bin/vm-runtests.sh"

cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
nogroup:x:65534:
EOF
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost\n' >"$root/etc/hosts"

# Modules under test.
nko=0
for ko in "$src"/*.ko "$src"/selftests/*.ko; do
	[ -f "$ko" ] || continue
	cp "$ko" "$root/mbufmux/"
	nko=$((nko + 1))
done
[ "$nko" -gt 0 ] || echo "mkinitramfs: warning: no *.ko in $src (not built?)" >&2

# Selftests: the list, settings, and every executable (not objects).
if [ -d "$src/selftests" ]; then
	for f in "$src"/selftests/*; do
		[ -f "$f" ] || continue
		name=$(basename "$f")
		case $name in
		TESTS | TESTS.* | settings | config) cp "$f" "$root/selftests/" ;;
		*.ko | *.o | *.c | *.h | Makefile) ;;
		*)
			if [ -x "$f" ]; then
				cp "$f" "$root/selftests/"
				copy_libs "$f"
			fi
			;;
		esac
	done
	if [ -f "$src/selftests/TESTS" ]; then
		sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$src/selftests/TESTS" |
		while read -r t; do
			[ -x "$root/selftests/$t" ] ||
				echo "mkinitramfs: warning: selftests/TESTS lists '$t', not built/executable" >&2
		done
	fi
fi

# The demo (make run; the tests run it too).
for f in "$src"/demo/*; do
	[ -f "$f" ] && [ -x "$f" ] || continue
	cp "$f" "$root/demo/"
	copy_libs "$f"
done

# The pools' live view, on the PATH (static: no C library here).
if [ -x "$src/tools/mbufmuxtop-static" ]; then
	install -m 755 "$src/tools/mbufmuxtop-static" "$root/usr/sbin/mbufmuxtop"
fi

# mbufmux-run where "make install-tools PREFIX=/usr" puts it, and the real
# programs its selftest runs through it (a real file replaces any applet
# link of the same name).
run=$src/tools/mbufmux-run
if [ -f "$run/mbufmux_preload.so" ]; then
	mkdir -p "$root/usr/lib/mbufmux"
	install -m 755 "$run/mbufmux-run" "$root/usr/bin/mbufmux-run"
	cp "$run/mbufmux_preload.so" "$root/usr/lib/mbufmux/"
	copy_libs "$root/usr/lib/mbufmux/mbufmux_preload.so"
else
	echo "mkinitramfs: warning: no $run/mbufmux_preload.so (make tools)" >&2
fi
for p in ${MBUFMUX_VM_PROGRAMS-iperf3 socat}; do
	if path=$(command -v "$p") && [ -f "$path" ]; then
		rm -f "$root/usr/bin/$p"
		cp "$path" "$root/usr/bin/$p"
		copy_libs "$path"
	else
		echo "mkinitramfs: warning: no $p on the host (scripts/deps.sh)" >&2
	fi
done

# Debian modules (e.g. tls.ko) and their dependencies, decompressed.
moddir=
if [ -n "$debmods" ] && ! moddir=$("$scripts/vm-kernel.sh" --moddir 2>/dev/null); then
	echo "mkinitramfs: warning: no VM kernel (scripts/vm-kernel.sh), skipping: $debmods" >&2
	moddir=
fi
if [ -n "$moddir" ]; then
	kver=$(basename "$moddir")
	base=${moddir%/lib/modules/*}
	for m in $debmods; do
		deps=$(modprobe -d "$base" -S "$kver" --show-depends "$m" 2>/dev/null |
			sed -n 's/^insmod \([^ ]*\).*/\1/p') || true
		if [ -z "$deps" ]; then
			echo "mkinitramfs: note: Debian module '$m' not found (built in?)" >&2
			continue
		fi
		for ko in $deps; do
			rel=${ko#"$moddir"/}
			rel=${rel%.xz}
			dst="$root/lib/modules/$kver/$rel"
			mkdir -p "$(dirname "$dst")"
			echo "$rel" >>"$root/lib/modules/$kver.order"
			case $ko in
			*.xz) xz -dc "$ko" >"$dst" ;;
			*) cp "$ko" "$dst" ;;
			esac
		done
	done
	if [ -d "$root/lib/modules/$kver" ]; then
		sort -u "$root/lib/modules/$kver.order" >"$root/lib/modules/$kver/modules.order"
		rm "$root/lib/modules/$kver.order"
		cp "$moddir/modules.builtin" "$moddir/modules.builtin.modinfo" \
			"$root/lib/modules/$kver/"
		depmod -b "$root" "$kver"
	fi
fi

# Extra files: HOSTFILE=/GUEST/PATH.
for spec in "$@"; do
	from=${spec%%=*}
	to=${spec#*=}
	if [ "$from" = "$spec" ] || [ ! -f "$from" ]; then
		die "bad extra file '$spec' (want HOSTFILE=/GUEST/PATH)"
	fi
	mkdir -p "$root$(dirname "$to")"
	cp "$from" "$root$to"
	copy_libs "$from"
done

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
	cpio --quiet -o -H newc -R 0:0) | gzip -1 -n >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs: $out ($nko modules, $(du -k "$out" | cut -f 1) KiB)" >&2
