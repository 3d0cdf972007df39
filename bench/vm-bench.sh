#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The benchmarks, inside the test VM: bench/run.sh boots the VM with this
# script (scripts/vm.sh cmd), the modules in /mbufmux/ (mbufmux.ko and
# mbufmux_tcp.ko loaded by /init, bench_mbufmux_kern.ko) and ulp_bench in
# /selftests/. bench/run.sh puts the settings below in front of it.
#
# First, cgroup2 is mounted with the memory controller and a child cgroup,
# bench, is made (and never removed: see below); every part runs with it
# there, so that the kernel's socket accounting is the same for all.
# Then, in this order, each after the previous one has ended
# (BENCH_PARTS picks some):
#   scale   N connections (1,000, 10,000, 30,000) through the pool's
#           BENCH_LIMIT buffers: the ULP as root, plain TCP, the ULP with
#           reserve 8 and 1% of the sockets privileged (first, on a pool
#           nobody has used: mbufmux_tcp is reloaded if its pool was);
#   kernel  the benchmark module (fast path, handoff, contention), loaded
#           from the child cgroup, whose memcg its memcg handoffs use;
#   stream  ULP and TCP streams, and CPU time per GB;
#   rr      request/response latency, the pool free and full;
#   ctx     the per-socket context's size;
#   memory  send memory: senders to peers that never read, with the ULP
#           (the pool's limit still BENCH_LIMIT), plain TCP and plain TCP
#           with TCP_NOTSENT_LOWAT (last: it takes TCP to its memory
#           limits).
#
# Prints each part's table, then the JSON members of every part between
# ===MBUFMUX-BENCH-TABLE-BEGIN/END=== and ===MBUFMUX-BENCH-JSON-BEGIN/END===.
# Exits 1 if a part failed or a check did not hold (the figures of the
# others are still printed).
set -u

: "${BENCH_PARTS:=scale kernel stream rr ctx memory}"	# which, in order
: "${BENCH_CONNS:=1000,10000,30000}"	# scale: connections, each N
: "${BENCH_CONN_BYTES:=4096}"	# scale: bytes each
: "${BENCH_CONN_MSGS:=4}"	# scale: messages each
: "${BENCH_LIMIT:=64}"		# scale: mbufmux_tcp's limit
: "${BENCH_SCALE_RESERVE:=8}"	# scale: the reserve of the third run
: "${BENCH_SCALE_PRIV:=10}"	# scale: its privileged sockets, per mille
: "${BENCH_SCALE_REPS:=1}"	# scale: rounds of the three runs, each N
: "${BENCH_STREAM_SECS:=1}"	# stream: seconds per run
: "${BENCH_STREAM_REPS:=9}"	# stream: rounds (pairs per ratio)
: "${BENCH_RR_PINGS:=400}"	# rr: round trips per run
: "${BENCH_RR_REPS:=5}"		# rr: rounds
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

# Wait until the guest is idle: busy under 2% of one second, for at most
# SETTLE_MAX seconds. Boot leaves work behind: the kernel's crypto
# self-tests (cryptomgr_test threads) kept a third of a vCPU busy for the
# first 10-20 emulated seconds, which made the first scale runs 35-80%
# slower than the same runs later (setup 0.8-2.3 s against 0.44 s): the
# warm-up, and sometimes the first recorded run, the figure at N = 1,000.
SETTLE_MAX=120
cpu_times() {	# sets all and busy: jiffies since boot, all CPUs
	# shellcheck disable=SC2046 # the fields of /proc/stat's cpu line
	set -- $(sed -n 's/^cpu  *//p' /proc/stat)
	busy=$(($1 + $2 + $3 + $6 + $7 + $8))	# all but idle and iowait
	all=$((busy + $4 + $5))
}
settle() {
	waited=0 permille=1000
	cpu_times
	while [ "$waited" -lt "$SETTLE_MAX" ]; do
		all0=$all busy0=$busy
		sleep 1
		waited=$((waited + 1))
		cpu_times
		[ "$all" -gt "$all0" ] &&
			permille=$(((busy - busy0) * 1000 / (all - all0)))
		[ "$permille" -lt 20 ] && break
	done
	echo "vm-bench: idle after $waited s (busy $permille per mille over the last second)"
	[ "$permille" -lt 20 ] || fail "the guest stayed busy for $SETTLE_MAX s"
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

wanted() {
	case " $BENCH_PARTS " in
	*" $1 "*) return 0 ;;
	esac
	return 1
}

# Ephemeral ports for 30,000 connections at once: each scale run has a
# listening address of its own, so TIME_WAIT of the last one is no
# matter; and room for those TIME_WAITs (the default would drop them, with
# a kernel message each). ulp_bench raises its own descriptor limit.
echo "10000 65001" >/proc/sys/net/ipv4/ip_local_port_range
echo 262144 >/proc/sys/net/ipv4/tcp_max_tw_buckets

# The child memory cgroup. Never removed: removing the last child would
# switch the kernel's socket accounting off again (memcg_sockets_enabled_key)
# from an RCU callback, patching the TCP stack's text while the bench runs
# (under TCG that has crashed the guest; see selftests/adv_security.c).
cg=/sys/fs/cgroup
memcg=
if mkdir -p "$cg" && mount -t cgroup2 none "$cg" &&
	echo +memory >"$cg/cgroup.subtree_control" && mkdir -p "$cg/bench"; then
	memcg=/bench
else
	fail "no cgroup2 memory controller: the memcg handoffs are skipped"
fi

settle

# 1. Scale. The pool's peak is all-time: start from a fresh pool.
if wanted scale; then
	if [ "$(pool_stat allocs)" != 0 ]; then
		echo "vm-bench: the tcp pool was used already: reloading mbufmux_tcp"
		if ! rmmod mbufmux_tcp || ! insmod /mbufmux/mbufmux_tcp.ko; then
			fail "reloading mbufmux_tcp"
		fi
	fi
fi
echo "$BENCH_LIMIT" >/sys/module/mbufmux_tcp/parameters/limit ||
	fail "setting mbufmux_tcp limit=$BENCH_LIMIT"
if wanted scale; then
	part scale 1800 ./ulp_bench scale -c "$BENCH_CONNS" \
		-b "$BENCH_CONN_BYTES" -m "$BENCH_CONN_MSGS" \
		-r "$BENCH_SCALE_RESERVE" -P "$BENCH_SCALE_PRIV" \
		-R "$BENCH_SCALE_REPS"
fi

# 2. The benchmark module, loaded from the child cgroup.
if wanted kernel; then
	echo "vm-bench: kernel: insmod bench_mbufmux_kern.ko $BENCH_KERN_ARGS (cgroup ${memcg:-/})"
	start=$(cut -d ' ' -f 1 /proc/uptime)
	# shellcheck disable=SC2016,SC2086 # $$ is the child's; one word per parameter
	if sh -c '[ -z "$1" ] || echo $$ >"$2$1/cgroup.procs" || exit 1
		shift 2; exec insmod /mbufmux/bench_mbufmux_kern.ko "$@"' \
		sh "$memcg" "$cg" $BENCH_KERN_ARGS; then
		cat /sys/kernel/debug/bench_mbufmux/results >"$out/kernel.json"
		cat /sys/kernel/debug/bench_mbufmux/table >"$out/kernel.txt"
		cat "$out/kernel.txt"
		rmmod bench_mbufmux_kern || fail "rmmod bench_mbufmux_kern"
		# Every key, unless parameters narrowed the runs down.
		for k in fastpath_ratio_vs_kmem_cache handoff_ratio_vs_workqueue \
			fairness_wait_vs_fifo_bound; do
			[ -n "$BENCH_KERN_ARGS" ] ||
				grep -q "\"$k\"" "$out/kernel.json" ||
				fail "kernel: no $k (see the kernel log)"
		done
		if [ -n "$memcg" ] && [ -z "$BENCH_KERN_ARGS" ]; then
			grep -q '"handoff_ratio_vs_workqueue_no_zero_memcg"' \
				"$out/kernel.json" ||
				fail "kernel: no memcg handoff (see the kernel log)"
		fi
	else
		fail "kernel: insmod bench_mbufmux_kern.ko"
	fi
	echo "vm-bench: kernel: $(awk -v s="$start" '{ printf "%.0f", $1 - s }' /proc/uptime) s"
fi

# 3. Streams.
if wanted stream; then
	part stream 900 ./ulp_bench stream -s "$BENCH_STREAM_SECS" \
		-r "$BENCH_STREAM_REPS"
fi

# 4. Request/response.
if wanted rr; then
	part rr 600 ./ulp_bench rr -n "$BENCH_RR_PINGS" -r "$BENCH_RR_REPS"
fi

# 5. The context's size.
if wanted ctx; then
	part ctx 300 ./ulp_bench ctx
fi

# 6. Send memory. The pool's limit is still BENCH_LIMIT (set above).
if wanted memory; then
	part memory 600 ./ulp_bench memory -n "$BENCH_MEM_SENDERS" \
		-c "$BENCH_MEM_CAP"
fi

secs=$(awk -v s="$t0" '{ printf "%.0f", $1 - s }' /proc/uptime)
autoinit=$(dmesg | sed -n 's/.*mem auto-init: //p' | head -n 1)

echo "===MBUFMUX-BENCH-TABLE-BEGIN==="
for p in scale kernel stream rr ctx memory; do
	[ ! -f "$out/$p.txt" ] || cat "$out/$p.txt"
done
echo "===MBUFMUX-BENCH-TABLE-END==="

echo "===MBUFMUX-BENCH-JSON-BEGIN==="
printf '  "vm": {"kernel": "%s", "cpus": %s, "mem_kb": %s, "mem_auto_init": "%s", "conns": "%s", "limit": %s, "memcg": "%s", "parts": "%s"},\n' \
	"$(uname -r)" "$(grep -c ^processor /proc/cpuinfo)" \
	"$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)" \
	"$autoinit" "$BENCH_CONNS" "$BENCH_LIMIT" "$memcg" "$BENCH_PARTS"
for p in scale kernel stream rr ctx memory; do
	[ ! -f "$out/$p.json" ] || cat "$out/$p.json"
done
printf '  "errors": [%s],\n' "$errors"
printf '  "vm_bench_secs": %s\n' "$secs"
echo "===MBUFMUX-BENCH-JSON-END==="
exit $rc
