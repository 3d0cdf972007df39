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

. "$(dirname "$0")/ktap.sh"
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
/selftests/mbufmux_demo 16 4 128 >/tmp/demo.out
rc=$?
sed 's/^/# /' /tmp/demo.out
echo 0 >"$FS/probability"
echo 0 >/sys/kernel/slab/mbufmux_tcp/failslab
nomem=$(($(stat alloc_nomem) - nomem0))
echo "# $nomem allocations failed by failslab during the socket stress"
[ $rc -eq 0 ] && [ "$nomem" -gt 0 ] && [ "$(stat in_use)" = 0 ] &&
	[ "$(stat allocs)" = "$(stat frees)" ]
result $? "socket stress with failslab on mbufmux_tcp: every byte arrives"

# 3. fail-nth over attach, send, release and close.
/selftests/mbufmux_fault >/tmp/fault.out
rc=$?
sed 's/^/# /' /tmp/fault.out
[ $rc -eq 0 ] && [ "$(stat in_use)" = 0 ] && [ "$(stat waiters)" = 0 ]
result $? "fail-nth sweep over attach, send, release and close"

# 4. A failed module init leaves nothing behind: mbufmux_tcp cannot create
# its pool while test_mbufmux.ko holds one named "tcp". (A fail-nth sweep
# over insmod mostly fails the module loader's own allocations first, and
# the kernel reports those itself - warn_alloc, a trace_events WARN - which
# the verdict cannot tell from a real bug.)
bad=""
rmmod mbufmux_tcp || bad="$bad rmmod"
insmod "$MODDIR/test_mbufmux.ko" hold_pool=tcp || bad="$bad hold"
if insmod "$MODDIR/mbufmux_tcp.ko" 2>/dev/null; then
	bad="$bad loaded-despite-taken-pool"
	rmmod mbufmux_tcp
fi
grep -q '^mbufmux_tcp ' /proc/modules && bad="$bad module-left"
grep -qw mbufmux /proc/sys/net/ipv4/tcp_available_ulp && bad="$bad ulp-registered"
rmmod test_mbufmux || bad="$bad rmmod-holder"
[ -e /sys/kernel/slab/mbufmux_tcp ] && bad="$bad cache-left"
[ -e $DBG/tcp ] && bad="$bad debugfs-left"
insmod "$MODDIR/mbufmux_tcp.ko" || bad="$bad reload"
grep -qw mbufmux /proc/sys/net/ipv4/tcp_available_ulp || bad="$bad ulp-missing"
[ -z "$bad" ]
result $? "a failed module init leaves no module, ULP, debugfs or cache behind" "$bad"

[ $failed -eq 0 ]
