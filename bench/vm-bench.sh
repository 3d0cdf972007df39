#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The benchmarks, inside the test VM: bench/run.sh boots the VM with this
# script (scripts/vm.sh cmd), the modules in /mbufmux/ (mbufmux.ko and
# mbufmux_tcp.ko loaded by /init, bench_mbufmux_kern.ko) and ulp_bench in
# /selftests/. bench/run.sh puts the settings below in front of it.
#
# In this order, each after the previous one has ended:
#   1. scale with the ULP (first, so that the pool's all-time peak is this
#      test's; mbufmux_tcp is reloaded if its pool was used already), the
#      same without CAP_NET_ADMIN (the sockets leave the reserve: another
#      path through the wait list), then with plain TCP;
#   2. the benchmark module (fast path, handoff, contention);
#   3. ULP and TCP streams;
#   4. send memory: senders to peers that never read, with the ULP (the
#      pool's limit still BENCH_LIMIT), plain TCP and plain TCP with
#      TCP_NOTSENT_LOWAT (last: it takes TCP to its memory limits).
#
# Prints each part's table, then the JSON members of every part between
# ===MBUFMUX-BENCH-TABLE-BEGIN/END=== and ===MBUFMUX-BENCH-JSON-BEGIN/END===.
# Exits 1 if a part failed or a check did not hold (the figures of the
# others are still printed).
set -u

: "${BENCH_CONNS:=10000}"		# scale: connections
: "${BENCH_CONN_BYTES:=4096}"	# scale: bytes each
: "${BENCH_CONN_MSGS:=4}"	# scale: messages each
: "${BENCH_LIMIT:=64}"		# scale: mbufmux_tcp's limit
: "${BENCH_STREAM_SECS:=2}"	# stream: seconds per run
: "${BENCH_STREAM_REPS:=5}"	# stream: runs per figure
: "${BENCH_KERN_ARGS:=}"	# bench_mbufmux_kern.ko parameters
: "${BENCH_MEM_SENDERS:=64,1024}"	# memory: sender counts
: "${BENCH_MEM_CAP:=4194304}"	# memory: most bytes accepted per sender

out=/tmp/bench
mkdir -p "$out"
rc=0
errors=
t0=$(cut -d ' ' -f 1 /proc/uptime)

fail() {
	echo "vm-bench: $*"
	errors="$errors${errors:+, }\"$*\""
	rc=1
}

# Run a part: NAME TIMEOUT COMMAND...; JSON members to $out/NAME.json,
# table lines to $out/NAME.txt (and the console). Exit 0 or 1 (a check
# failed) keeps the members; anything else drops them.
part() {
	name=$1 secs=$2
	shift 2
	echo "vm-bench: $name: $*"
	start=$(cut -d ' ' -f 1 /proc/uptime)
	timeout -k 10 "$secs" "$@" >"$out/$name.json" 2>"$out/$name.txt"
	prc=$?
	cat "$out/$name.txt"
	echo "vm-bench: $name: exit $prc, $(awk -v s="$start" '{ printf "%.0f", $1 - s }' /proc/uptime) s"
	case $prc in
	0) ;;
	1) fail "$name: a check failed" ;;
	*) fail "$name: exit $prc"; rm -f "$out/$name.json" ;;
	esac
}

pool_stat() {
	sed -n "s/^$1 //p" /sys/kernel/debug/mbufmux/tcp/stats 2>/dev/null
}

# Room for two scale runs' ports (TIME_WAIT); ulp_bench raises its own
# descriptor limit (RLIMIT_NOFILE).
echo "10000 65001" >/proc/sys/net/ipv4/ip_local_port_range

# 1. Scale. The pool's peak is all-time: start from a fresh pool.
if [ "$(pool_stat allocs)" != 0 ]; then
	echo "vm-bench: the tcp pool was used already: reloading mbufmux_tcp"
	if ! rmmod mbufmux_tcp || ! insmod /mbufmux/mbufmux_tcp.ko; then
		fail "reloading mbufmux_tcp"
	fi
fi
echo "$BENCH_LIMIT" >/sys/module/mbufmux_tcp/parameters/limit ||
	fail "setting mbufmux_tcp limit=$BENCH_LIMIT"
part scale 600 ./ulp_bench scale -c "$BENCH_CONNS" -b "$BENCH_CONN_BYTES" \
	-m "$BENCH_CONN_MSGS"
part scale_unpriv 600 ./ulp_bench scale -u -c "$BENCH_CONNS" \
	-b "$BENCH_CONN_BYTES" -m "$BENCH_CONN_MSGS"
part scale_tcp 600 ./ulp_bench scale -t -c "$BENCH_CONNS" \
	-b "$BENCH_CONN_BYTES" -m "$BENCH_CONN_MSGS"

# 2. The benchmark module.
echo "vm-bench: kernel: insmod bench_mbufmux_kern.ko $BENCH_KERN_ARGS"
start=$(cut -d ' ' -f 1 /proc/uptime)
# shellcheck disable=SC2086 # one word per module parameter
if insmod /mbufmux/bench_mbufmux_kern.ko $BENCH_KERN_ARGS; then
	cat /sys/kernel/debug/bench_mbufmux/results >"$out/kernel.json"
	cat /sys/kernel/debug/bench_mbufmux/table >"$out/kernel.txt"
	cat "$out/kernel.txt"
	rmmod bench_mbufmux_kern || fail "rmmod bench_mbufmux_kern"
	for k in fastpath_ratio_vs_kmem_cache handoff_ratio_vs_workqueue \
		fairness_jain; do
		grep -q "\"$k\"" "$out/kernel.json" ||
			fail "kernel: no $k (see the kernel log)"
	done
else
	fail "kernel: insmod bench_mbufmux_kern.ko"
fi
echo "vm-bench: kernel: $(awk -v s="$start" '{ printf "%.0f", $1 - s }' /proc/uptime) s"

# 3. Streams.
part stream 900 ./ulp_bench stream -s "$BENCH_STREAM_SECS" \
	-r "$BENCH_STREAM_REPS"

# 4. Send memory. The pool's limit is still BENCH_LIMIT (set above).
part memory 600 ./ulp_bench memory -n "$BENCH_MEM_SENDERS" -c "$BENCH_MEM_CAP"

secs=$(awk -v s="$t0" '{ printf "%.0f", $1 - s }' /proc/uptime)
autoinit=$(dmesg | sed -n 's/.*mem auto-init: //p' | head -n 1)

echo "===MBUFMUX-BENCH-TABLE-BEGIN==="
for p in scale scale_unpriv scale_tcp kernel stream memory; do
	[ ! -f "$out/$p.txt" ] || cat "$out/$p.txt"
done
echo "===MBUFMUX-BENCH-TABLE-END==="

echo "===MBUFMUX-BENCH-JSON-BEGIN==="
printf '  "vm": {"kernel": "%s", "cpus": %s, "mem_kb": %s, "mem_auto_init": "%s", "conns": %s, "limit": %s},\n' \
	"$(uname -r)" "$(grep -c ^processor /proc/cpuinfo)" \
	"$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)" \
	"$autoinit" "$BENCH_CONNS" "$BENCH_LIMIT"
for p in scale scale_unpriv scale_tcp kernel stream memory; do
	[ ! -f "$out/$p.json" ] || cat "$out/$p.json"
done
printf '  "errors": [%s],\n' "$errors"
printf '  "vm_bench_secs": %s\n' "$secs"
echo "===MBUFMUX-BENCH-JSON-END==="
exit $rc
