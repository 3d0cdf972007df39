#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Fault injection, for the debug kernel (make check-debug): failslab aimed
# at the module's own caches during the in-kernel stress and a socket
# stress, a fail-nth sweep over attach/send/release/close, and failures
# during module init. Nothing may crash or leak (the kernel-log verdict and
# kmemleak judge that); an allocation failure parks or errors cleanly;
# every byte that send() accepted arrives; the counters stay consistent.
# Prints TAP; exit 4 (skip) on a kernel without fault injection.
set -u

FS=/sys/kernel/debug/failslab
DBG=/sys/kernel/debug/mbufmux
MODDIR=${MBUFMUX_MODDIR:-/mbufmux}
if [ ! -d "$FS" ] || [ ! -d /sys/kernel/slab ]; then
	echo "1..0 # SKIP no failslab or /sys/kernel/slab (CONFIG_FAILSLAB)"
	exit 4
fi

n=0
failed=0
result() {	# result <0|1> <name> [diagnostic]
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n $2"
	else
		failed=$((failed + 1))
		echo "not ok $n $2${3:+ # $3}"
	fi
}
stat() { sed -n "s/^$1 //p" "$DBG/tcp/stats"; }

# failslab: only caches marked in /sys/kernel/slab/<cache>/failslab, and
# sleeping allocations too (ignore-gfp-wait=N). Our allocations never
# sleep anyway: they are GFP_NOWAIT.
failslab() {	# failslab <probability %>
	echo Y >"$FS/cache-filter"
	echo N >"$FS/ignore-gfp-wait"
	echo 0 >"$FS/verbose"
	echo -1 >"$FS/times"
	echo 1 >"$FS/interval"
	echo "$1" >"$FS/probability"
}

echo "TAP version 13"
echo "1..4"

# 1. The in-kernel stress with a third of its pool's slab allocations
# failing. The stress pool's cache appears when the test reaches it: mark
# it as soon as it does.
failslab 33
(
	i=0
	while [ $i -lt 3000 ]; do
		if [ -e /sys/kernel/slab/mbufmux_t_stress/failslab ]; then
			echo 1 >/sys/kernel/slab/mbufmux_t_stress/failslab
			exit 0
		fi
		sleep 0.01
		i=$((i + 1))
	done
) &
marker=$!
dmesg >/tmp/dmesg.0
insmod "$MODDIR/test_mbufmux.ko" stress_ops=30000
rc=$?
wait $marker
dmesg >/tmp/dmesg.1
summary=$(diff /tmp/dmesg.0 /tmp/dmesg.1 | grep 'threads, .* ops:' | sed 's/.*# //')
echo "# $summary"
nomem=$(echo "$summary" | sed -n 's/.*nomem \([0-9]*\).*/\1/p')
nfail=$(cat /sys/module/test_mbufmux/parameters/tests_failed 2>/dev/null || echo 1)
rmmod test_mbufmux
[ $rc -eq 0 ] && [ "$nfail" = 0 ] && [ "${nomem:-0}" -gt 0 ]
result $? "in-kernel API tests with failslab on the stress pool's cache" \
	"insmod $rc, failed tests $nfail, nomem ${nomem:-?}"

# 2. The socket stress with slab failures on the ULP's cache: sockets
# park until the retry serves them; every byte must still arrive.
nomem0=$(stat alloc_nomem)
echo 1 >/sys/kernel/slab/mbufmux_tcp/failslab
failslab 30
/selftests/mbufmux_demo 16 4 128 | sed 's/^/# /'
rc=$?
echo 0 >"$FS/probability"
echo 0 >/sys/kernel/slab/mbufmux_tcp/failslab
nomem=$(($(stat alloc_nomem) - nomem0))
echo "# $nomem allocations failed by failslab during the socket stress"
[ $rc -eq 0 ] && [ "$nomem" -gt 0 ] && [ "$(stat in_use)" = 0 ] &&
	[ "$(stat allocs)" = "$(stat frees)" ]
result $? "socket stress with failslab on mbufmux_tcp: every byte arrives"

# 3. fail-nth over attach, send, release and close.
/selftests/mbufmux_fault | sed 's/^/# /'
[ "$(stat in_use)" = 0 ] && [ "$(stat waiters)" = 0 ]
result $? "fail-nth sweep over attach, send, release and close"

# 4. Failures during module init leave nothing behind. fail-nth ignores
# probability, but not the filters: every cache, sleeping allocations too.
echo 0 >"$FS/probability"
echo N >"$FS/cache-filter"
echo N >"$FS/ignore-gfp-wait"
[ ! -d /sys/kernel/debug/fail_page_alloc ] ||
	echo N >/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait
init_fail() {	# init_fail <module> <nth>: load it with the nth fault failing
	sh -c "echo $2 >/proc/self/fail-nth && exec insmod $MODDIR/$1.ko" \
		2>/dev/null
}
loaded() { grep -q "^$1 " /proc/modules; }
bad=""
failures=0
rmmod mbufmux_tcp && rmmod mbufmux || bad="cannot unload before the sweep"
for mod in mbufmux mbufmux_tcp; do
	for nth in $(seq 1 150); do
		if init_fail $mod "$nth"; then
			# Loaded (the fault hit something harmless or nothing):
			# it must work, and unload.
			[ $mod = mbufmux ] || rmmod mbufmux_tcp || bad="$bad rmmod-$nth"
			[ $mod = mbufmux_tcp ] || rmmod mbufmux || bad="$bad rmmod-$nth"
			continue
		fi
		failures=$((failures + 1))
		loaded $mod && bad="$bad $mod-loaded-$nth"
		case $mod in
		mbufmux)
			[ -e $DBG ] && bad="$bad debugfs-left-$nth" ;;
		mbufmux_tcp)
			[ -e $DBG/tcp ] && bad="$bad debugfs-tcp-left-$nth"
			[ -e /sys/kernel/slab/mbufmux_tcp ] && bad="$bad cache-left-$nth" ;;
		esac
	done
	# The next module's sweep needs this one loaded.
	[ $mod = mbufmux ] && { insmod $MODDIR/mbufmux.ko || bad="$bad reload"; }
done
insmod $MODDIR/mbufmux_tcp.ko || bad="$bad reload-tcp"
echo "# $failures of 300 faulted loads failed cleanly"
[ -z "$bad" ] && [ $failures -gt 0 ] && loaded mbufmux_tcp
result $? "module init failures leave no module, debugfs or cache behind" "$bad"

[ $failed -eq 0 ]
