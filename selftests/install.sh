#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The installed modules, used as README's "Loading it on a real machine"
# has it, with nothing loaded by hand: runs after unload.sh (no mbufmux
# module loaded). `make check` copies in what `make install` installs
# (the Makefile's install-stage: /lib/modules/<release>/updates/) and
# Debian's kmod (/bin/kmod), which this script makes the kernel's
# modprobe, depmod and modinfo (in /sbin, as on Debian). It
# writes /etc/modprobe.d/mbufmux.conf, runs depmod, then checks that
#  - an unprivileged setsockopt(TCP_ULP, "mbufmux") gets ENOENT, and
#    loads nothing (loading on demand needs CAP_NET_ADMIN);
#  - root's attaches, the kernel having loaded mbufmux and mbufmux_tcp,
#    the installed build (no test hooks in /proc/kallsyms, the version
#    modinfo gives), with the options of the modprobe.d file;
#  - after `modprobe mbufmux_tcp`, what modules-load.d has done at boot,
#    an unprivileged program attaches.
# It unloads both modules at the end, and puts busybox back as modprobe.
set -u

. "$(dirname "$0")/ktap.sh"

kver=$(uname -r)
moddir=/lib/modules/$kver
conf=/etc/modprobe.d/mbufmux.conf
nobody=65534

loaded() { grep -q "^$1 " /proc/modules; }
neither_loaded() { ! loaded mbufmux && ! loaded mbufmux_tcp; }
both_loaded() { loaded mbufmux && loaded mbufmux_tcp; }
installed() { ls "$moddir/updates/$1.ko"* >/dev/null 2>&1; }
attach_gives() {	# attach_gives WANT [-u UID]: mbufmux_attach prints WANT
	want=$1
	shift
	got=$(./mbufmux_attach "$@")
	[ "$got" = "$want" ] && return 0
	echo "# mbufmux_attach $*: got '$got', want '$want'"
	return 1
}
param_is() {	# param_is NAME WANT: mbufmux_tcp's parameter NAME is WANT
	got=$(cat "/sys/module/mbufmux_tcp/parameters/$1" 2>&1)
	[ "$got" = "$2" ] && return 0
	echo "# mbufmux_tcp $1 is '$got', want '$2'"
	return 1
}
options_applied() { param_is limit 7 && param_is reserve 1; }
installed_build() {
	for m in mbufmux mbufmux_tcp; do
		want=$(/sbin/modinfo -F version "$m")
		got=$(cat "/sys/module/$m/version" 2>&1)
		if [ -z "$want" ] || [ "$got" != "$want" ]; then
			echo "# $m: version '$got' loaded, '$want' installed"
			return 1
		fi
	done
	echo "# version $want"
	for s in mbufmux_pool_inject_slab_failures mbufmux_pool_shrink; do
		if grep -qw "$s" /proc/kallsyms; then
			echo "# the loaded mbufmux has the test hook $s"
			return 1
		fi
	done
}
unload_both() {
	ok=0
	if loaded mbufmux_tcp; then rmmod_tcp || ok=1; fi
	if loaded mbufmux; then rmmod mbufmux || ok=1; fi
	neither_loaded && return $ok
}
is_kmod() { "/sbin/$1" --version 2>&1 | grep -q '^kmod version'; }

echo "TAP version 13"
echo "1..16"

if ! installed mbufmux || ! installed mbufmux_tcp || [ ! -x /bin/kmod ]; then
	echo "# no $moddir/updates/mbufmux*.ko* or /bin/kmod: make check copies them in"
	result 1 "installed modules and kmod present"
	exit 1
fi
result 0 "installed modules and kmod present"
# By path: busybox's sh runs its own applets for bare names.
kmod_tools="modprobe depmod modinfo"
for t in $kmod_tools; do
	ln -snf /bin/kmod "/sbin/$t"
done
echo "# the kernel runs $(cat /proc/sys/kernel/modprobe) to load modules"
check "kmod's modprobe, depmod and modinfo in /sbin" \
	eval 'is_kmod modprobe && is_kmod depmod && is_kmod modinfo'
# The options in the order the README gives: limit before reserve.
mkdir -p "$(dirname "$conf")"
echo "options mbufmux_tcp limit=7 reserve=1" >"$conf"
check "depmod" /sbin/depmod
check "modules.alias maps tcp-ulp-mbufmux to mbufmux_tcp" \
	grep -qx 'alias tcp-ulp-mbufmux mbufmux_tcp' "$moddir/modules.alias"
check "nothing of mbufmux loaded" neither_loaded

check "unprivileged attach: ENOENT" attach_gives ENOENT -u $nobody
check "unprivileged attach loaded nothing" neither_loaded

f0=$failed
check "root attach: ok" attach_gives ok
[ "$failed" -eq "$f0" ] ||
	echo "# modprobe: $(/sbin/modprobe --show-depends tcp-ulp-mbufmux 2>&1)"
check "root attach loaded mbufmux and mbufmux_tcp" both_loaded
check "with the options of $conf" options_applied
check "the installed build: its version, no test hooks" installed_build
check "both unload" unload_both

check "modprobe mbufmux_tcp (modules-load.d)" eval '/sbin/modprobe mbufmux_tcp && both_loaded'
check "with the options of $conf, again" options_applied
check "unprivileged attach once loaded: ok" attach_gives ok -u $nobody
check "both unload, again" unload_both

rm -f "$conf"
for t in $kmod_tools; do
	ln -snf /bin/busybox "/sbin/$t"
done
[ "$failed" -eq 0 ]
