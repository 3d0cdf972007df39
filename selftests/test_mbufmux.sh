#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs the in-kernel API tests of test_mbufmux.ko (like the kernel's
# tools/testing/selftests/lib scripts) and checks what they leave behind:
# the tracepoints fired, the shrinker of a recycling pool runs, the pools
# destroyed with a buffer out are leaked (and freed when mbufmux.ko
# unloads: unload.sh), every other test pool is gone, debugfs is clean.
# Prints KTAP; exits 0 if every test passed, 1 otherwise, 4 to skip.
set -u

MOD=${MBUFMUX_MODDIR:-/mbufmux}/test_mbufmux.ko
DBG=/sys/kernel/debug/mbufmux
TRACE=/sys/kernel/tracing

[ -d "$DBG" ] || { echo "# mbufmux.ko is not loaded"; exit 4; }
[ -f "$MOD" ] || { echo "# $MOD missing"; exit 4; }

. "$(dirname "$0")/ktap.sh"

echo "TAP version 13"
echo "1..6"

# Trace the wait and handoff events of the FIFO test's pool (the filter
# keeps the stress test from flooding the ring buffer).
echo > "$TRACE/trace"
for ev in mbufmux_wait mbufmux_handoff; do
	echo 'pool == "t_fifo"' > "$TRACE/events/mbufmux/$ev/filter"
	echo 1 > "$TRACE/events/mbufmux/$ev/enable"
done

dmesg > /tmp/dmesg.before
insmod "$MOD" stress_ops="${MBUFMUX_STRESS_OPS:-100000}"
rc=$?
tag=
if [ $rc -eq 0 ]; then
	nfail=$(cat /sys/module/test_mbufmux/parameters/tests_failed)
	[ "$nfail" = 0 ] || rc=1
	tag=$(cat /sys/module/test_mbufmux/parameters/leak_tag)
fi
dmesg > /tmp/dmesg.after
# Print the module's own KTAP as a nested report.
diff /tmp/dmesg.before /tmp/dmesg.after | sed -n 's/^+\[[^]]*\] test_mbufmux: /    /p'
result $rc "test_mbufmux.ko: every in-kernel test passed"

for ev in mbufmux_wait mbufmux_handoff; do
	echo 0 > "$TRACE/events/mbufmux/$ev/enable"
	echo 0 > "$TRACE/events/mbufmux/$ev/filter"
done
waits=$(grep -c 'mbufmux_wait: pool=t_fifo' "$TRACE/trace")
handoffs=$(grep -c 'mbufmux_handoff: pool=t_fifo' "$TRACE/trace")
echo "# trace: $waits wait and $handoffs handoff events of pool t_fifo"
# test_fifo queues 11 waiters (one cancelled) and hands off 10 buffers.
[ "$waits" -eq 11 ] && [ "$handoffs" -eq 10 ]
result $? "tracepoints: wait and handoff events seen in tracefs"

# The test left pool t_drop (MBUFMUX_POOL_NO_ZERO) with kept buffers:
# dropping the slab caches runs every shrinker, its own included.
dstat() { sed -n "s/^$1 //p" "$DBG/t_drop/stats" 2>/dev/null; }
kept0=$(dstat kept) shrunk0=$(dstat shrunk)
echo 2 >/proc/sys/vm/drop_caches
kept1=$(dstat kept) shrunk1=$(dstat shrunk)
echo "# t_drop: kept $kept0 -> $kept1, shrunk $shrunk0 -> $shrunk1 after drop_caches"
[ "${kept0:-0}" -gt 0 ] && [ "$kept1" = 0 ] &&
	[ "$shrunk1" -eq $((shrunk0 + kept0)) ]
result $? "drop_caches: the shrinker gave the kept buffers back, counted"

rmmod test_mbufmux
result $? "test_mbufmux.ko unloads"

# The two pools destroyed with a buffer out are leaked: still listed, the
# buffer back since; no other test pool is left (those of an earlier run
# are leaked ones too).
pools=$(grep '^t_' "$DBG/pools")
printf '%s\n' "$pools" | sed '/^$/d; s/^/# pool: /'
printf '%s\n' "$pools" | grep -qx "t_busy_$tag leaked in_use=0" &&
	printf '%s\n' "$pools" | grep -qx "t_destroy_kept_busy_$tag leaked in_use=0" &&
	! printf '%s\n' "$pools" | grep -qv ' leaked in_use=0$'
result $? "destroyed with buffers out: leaked, nothing in use; no other test pool left"
left=$(ls "$DBG" | grep -v '^pools$' | grep '^t_')
[ -z "$left" ]
result $? "no test pool left in debugfs" "$left"

[ $failed -eq 0 ]
