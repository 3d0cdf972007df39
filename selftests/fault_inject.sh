#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Fault injection, for the debug kernel (make check-debug): failslab aimed
# at the module's own caches during the in-kernel stress and a socket
# stress, a fail-nth sweep over attach/send/release/close, and failures
# during module init (a taken pool name; a fail-nth sweep over each
# module's init). Nothing may crash or leak (the kernel-log verdict and
# kmemleak judge that); an allocation failure parks or errors cleanly;
# every byte that send() accepted arrives; the counters stay consistent.
# Leaves both modules loaded, as vm-init.sh loaded them.
# Prints TAP; exit 4 (skip) on a kernel without fault injection.
set -u

FS=/sys/kernel/debug/failslab
DBG=/sys/kernel/debug/mbufmux
DBG_TCP=/sys/kernel/debug/mbufmux_tcp	# the ULP's own files
MODDIR=${MBUFMUX_MODDIR:-/mbufmux}
if [ ! -d "$FS" ] || [ ! -d /sys/kernel/slab ]; then
	echo "1..0 # SKIP no failslab or /sys/kernel/slab (CONFIG_FAILSLAB)"
	exit 4
fi

. "$(dirname "$0")/ktap.sh"
stat() { sed -n "s/^$1 //p" "$DBG/tcp/stats"; }

# failslab: only caches marked in /sys/kernel/slab/<cache>/failslab, and
# sleeping allocations too (ignore-gfp-wait=N): the buffers are GFP_NOWAIT,
# the preallocated ones GFP_KERNEL.
failslab() {	# failslab <probability %>
	echo Y >"$FS/cache-filter"
	echo N >"$FS/ignore-gfp-wait"
	echo 0 >"$FS/verbose"
	echo -1 >"$FS/times"
	echo 1 >"$FS/interval"
	echo "$1" >"$FS/probability"
}

echo "TAP version 13"
echo "1..8"

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
# The first summary is t_stress's (stress_page's cache is not marked).
summary=$(diff /tmp/dmesg.0 /tmp/dmesg.1 | grep 'threads, .* ops:' | head -n 1 |
	sed 's/.*# //')
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
# Twice: with a buffer per connection, every buffer comes from the slab
# (and some fail); with 4, most come by handoff, and parked sockets meet
# failures too. The pool recycles the buffers that come back: the
# shrinker (drop_caches) gives its kept ones back first, so that the
# slab is asked for them again.
rc=0
for bufs in 16 4; do
	echo 2 >/proc/sys/vm/drop_caches
	/demo/mbufmux_demo 16 $bufs 128 >/tmp/demo.out || rc=1
	sed 's/^/# /' /tmp/demo.out
done
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
# its pool while test_mbufmux.ko holds one named "tcp" (-EEXIST, before any
# allocation; tests 6-7 fail the allocations).
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
[ -e $DBG_TCP ] && bad="$bad ulp-debugfs-left"
insmod "$MODDIR/mbufmux_tcp.ko" || bad="$bad reload"
grep -qw mbufmux /proc/sys/net/ipv4/tcp_available_ulp || bad="$bad ulp-missing"
[ -z "$bad" ]
result $? "a failed module init leaves no module, ULP, debugfs or cache behind" "$bad"

# 5-8. A fail-nth sweep over each module's init. Plain fail-nth would mostly
# fail the module loader's own allocations, which the kernel reports itself.
# With the stack-trace filter (CONFIG_FAULT_INJECTION_STACKTRACE_FILTER),
# only allocations whose call stack passes through module text count: those
# of the modules' init functions, directly or through the kernel (workqueue,
# per-CPU counters, slab cache, prealloc, debugfs), not the loader's, which
# runs in kernel text. For N = 1, 2, ... the N-th of them fails (failslab or
# fail_page_alloc, sleeping allocations included), until a load does not
# reach it. An init that fails must fail with -ENOMEM and leave nothing
# behind; one that survives its failure (debugfs is optional; most such
# sites are this kernel's own metadata: kmemleak, debugobjects) must unload
# cleanly. kmemleak, at the end of the run, judges what the error paths
# freed. The kernel's own reports of some of these failures come with a
# stack dump: scripts/vm.sh allows exactly those between the two markers.
# The order of the sites is not quite fixed (the debug metadata and new
# slab pages come when their pools run low): one run may step over a site
# that another run reaches.
#
# One kernel path is left out (reject-start/end): inside kmem_cache_create(),
# mm/slub.c's sysfs_slab_add() leaks the kobject's name when its sysfs
# registration fails (upstream 2420baa8e046 "mm/slab: Allow cache creation
# to proceed even if sysfs registration fails", not in Debian's 6.12).
# kmemleak would report the kernel's leak, not ours, and kmem_cache_create()
# still fails at its other sites.
MOD_START=0xffffffffa0000000	# MODULES_VADDR: no KASLR in this kernel
MOD_END=0xffffffffff000000	# MODULES_END
in_modules() {	# MOD_START <= $1 < MOD_END, $1 as 0x + 16 hex digits
	case $1 in
	0xffffffffff*) return 1 ;;
	0xffffffff[a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) return 0 ;;
	esac
	return 1
}
ksym() { sed -n "s/^\([0-9a-f]*\) . $1\$/0x\1/p" /proc/kallsyms; }
ksym_end() {	# where the next symbol starts
	sort /proc/kallsyms | sed -n "/^[0-9a-f]* . $1\$/{n;s/^\([0-9a-f]*\) .*/0x\1/p;}"
}
caches() {	# any mbufmux_* slab cache (its debugfs directory included)
	for c in /sys/kernel/slab/mbufmux* /sys/kernel/debug/slab/mbufmux*; do
		[ -e "$c" ] && return 0
	done
	return 1
}
# What a failed init may not leave behind.
left_mbufmux() {
	grep -q '^mbufmux ' /proc/modules && echo module
	[ -e $DBG ] && echo debugfs
	caches && echo cache
}
left_tcp() {
	grep -q '^mbufmux_tcp ' /proc/modules && echo module
	[ -e $DBG/tcp ] && echo debugfs
	[ -e $DBG_TCP ] && echo ulp-debugfs
	grep -q '^tcp ' $DBG/pools 2>/dev/null && echo pool-listed
	caches && echo cache
	grep -qw mbufmux /proc/sys/net/ipv4/tcp_available_ulp && echo ulp
}
sweep() {	# sweep <module> <leftover check> [params]
	mod=$1 left=$2 params=${3:-}
	nth=0 nfail=0 nsurv=0 survived="" bad="unfinished" t0=$(date +%s)
	while [ $nth -lt 1000 ]; do
		nth=$((nth + 1))
		out=$(/selftests/mbufmux_init_fault $nth "$MODDIR/$mod.ko" "$params") ||
			{ bad="$bad helper@$nth"; break; }
		# shellcheck disable=SC2086 # "<errno> <fired>"
		set -- $out
		if [ "$1" = 0 ] && [ "$2" = 0 ]; then
			# Loaded, and the N-th never came: every site swept.
			bad=${bad#unfinished}
			break
		elif [ "$1" = 0 ]; then
			nsurv=$((nsurv + 1))
			survived="$survived $nth"
			rmmod "$mod" || { bad="$bad rmmod@$nth"; break; }
		elif [ "$1" = 12 ] && [ "$2" = 1 ]; then
			nfail=$((nfail + 1))
		else
			bad="$bad errno$1,fired$2@$nth"
		fi
		l=$($left | tr '\n' ,)
		[ -z "$l" ] || { bad="$bad left:$l@$nth"; break; }
	done
	echo "# $mod${params:+ $params}: N = 1..$nth in $(($(date +%s) - t0))s: $nfail inits failed with ENOMEM, $nsurv loaded despite the N-th failure (unloaded), N = $nth loaded"
	echo "# $mod: loaded despite the N-th failure for N =${survived:- none}"
	[ -z "$bad" ] && [ $nfail -gt 0 ]
	result $? "fail-nth sweep over the init of $mod: $nfail failures, nothing left behind" "$bad"
}

if [ ! -e "$FS/require-start" ] || [ ! -x /selftests/mbufmux_init_fault ]; then
	for t in "module area" mbufmux mbufmux_tcp "modules reloaded"; do
		echo "ok $((n += 1)) module init sweep: $t # SKIP no stack-trace filter or helper"
	done
	[ $failed -eq 0 ]
	exit
fi

# The filter range must hold module text and nothing of the kernel's.
mbufmux_at=$(sed -n 's/^mbufmux .* \(0x[0-9a-f]*\).*/\1/p' /proc/modules)
REJ_START=$(ksym sysfs_slab_add)
REJ_END=$(ksym_end sysfs_slab_add)
in_modules "$mbufmux_at" && ! in_modules "$(ksym _stext)" &&
	! in_modules "$(ksym _end)" && [ -n "$REJ_START" ] && [ -n "$REJ_END" ]
result $? "module text at $mbufmux_at is in $MOD_START..$MOD_END, the kernel's is not" \
	"kernel $(ksym _stext)..$(ksym _end), sysfs_slab_add ${REJ_START:-?}..${REJ_END:-?}"

# As vm-init.sh loaded them; unload (rmmod_tcp waits for the sockets that
# still hold mbufmux_tcp).
tcp_params=""
for p in buf_size limit reserve user_limit; do
	v=$(cat /sys/module/mbufmux_tcp/parameters/$p 2>/dev/null) &&
		tcp_params="$tcp_params $p=$v"
done
rmmod_tcp
rmmod mbufmux

for a in /sys/kernel/debug/fail*; do
	[ -e "$a/require-start" ] || continue
	for f in require-start require-end reject-start reject-end verbose \
		 ignore-gfp-wait ignore-gfp-highmem min-order cache-filter \
		 task-filter; do
		[ -e "$a/$f" ] && echo "$a/$f $(cat "$a/$f")"
	done
	echo $MOD_START >"$a/require-start"
	echo $MOD_END >"$a/require-end"
	echo "$REJ_START" >"$a/reject-start"
	echo "$REJ_END" >"$a/reject-end"
	echo 0 >"$a/verbose"
	for f in ignore-gfp-wait ignore-gfp-highmem cache-filter task-filter; do
		[ -e "$a/$f" ] && echo N >"$a/$f"
	done
	[ -e "$a/min-order" ] && echo 0 >"$a/min-order"
done >/tmp/fault-attrs.saved
echo "<6>mbufmux-selftest: init fault sweep begin" >/dev/kmsg

sweep mbufmux left_mbufmux
grep -q '^mbufmux ' /proc/modules || insmod "$MODDIR/mbufmux.ko"
# With a reserve, the pool preallocates it: its stash and buffers too.
sweep mbufmux_tcp left_tcp "limit=8 reserve=4"

while read -r f v; do
	echo "$v" >"$f"
done </tmp/fault-attrs.saved
echo "<6>mbufmux-selftest: init fault sweep end" >/dev/kmsg

# Leave them as vm-init.sh loaded them, and working.
bad=""
grep -q '^mbufmux ' /proc/modules || insmod "$MODDIR/mbufmux.ko" || bad="$bad mbufmux"
rmmod mbufmux_tcp 2>/dev/null
# shellcheck disable=SC2086 # one word per parameter
insmod "$MODDIR/mbufmux_tcp.ko" $tcp_params || bad="$bad mbufmux_tcp"
/demo/mbufmux_demo 4 2 64 >/tmp/demo.out || { bad="$bad demo"; sed 's/^/# /' /tmp/demo.out; }
[ -z "$bad" ] && [ "$(stat in_use)" = 0 ]
result $? "modules reloaded ($tcp_params ) and working" "$bad"

[ $failed -eq 0 ]
