#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Host-side tests of mbufmuxtop (make check-tools): no VM, no module. Fake
# debugfs trees in a temporary directory, in the format of mbufmux.c's
# stats file, with counters chosen so that each rate and each percentile
# is known; the output must match, character for character:
# - two saved trees replayed (--debugfs twice): rates over the interval,
#   percentiles over the interval and since load, each on a bucket edge
#   (an off-by-one rank moves it); a pool that appears, one reloaded (its
#   counters went down): no interval figures; unknown keys ignored;
# - the live mode (one tree, read twice): the same figures, rates 0;
# - -p; plain frames on a pipe, the screen cleared on a tty;
# - errors: a missing or malformed key, no pool, no such pool, no
#   directory, permission denied, bad options.
# Prints TAP; exits 1 if a test failed.
#
# Usage: tools/mbufmuxtop-test.sh [PATH/TO/mbufmuxtop]
set -u

top=${1:-$(dirname "$0")/mbufmuxtop}
case $top in
/*) ;;
*) top=$(pwd)/$top ;;
esac
[ -x "$top" ] || { echo "mbufmuxtop-test: no $top (make -C tools)" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mbufmuxtop-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# n, failed and result <0|1> <name>: the selftests' TAP helpers.
. "$(dirname "$0")/../selftests/ktap.sh"

# mkstats FILE [key=value ...] [-key ...] [+"extra line" ...]: a stats
# file as mbufmux.c prints it, every counter 0 unless given; -key leaves
# a line out, +line adds one at the end.
mkstats() {
	f=$1
	shift
	mkdir -p "$(dirname "$f")"
	{
		for k in in_use peak limit reserve prealloc buf_size allocs \
			alloc_fail alloc_nomem frees waits handoffs cancels \
			recharges recharge_fail waiters waiters_peak wait_ns_max; do
			echo "$k"
		done
		i=0
		while [ $i -lt 24 ]; do
			if [ $i -eq 0 ]; then echo wait_hist_us_0; else echo "wait_hist_us_$((1 << (i - 1)))"; fi
			i=$((i + 1))
		done
		for k in kept recycled shrunk; do
			echo "$k"
		done
	} | awk -v args="$(printf '%s\n' "$@")" '
		BEGIN {
			n = split(args, a, "\n")
			for (i = 1; i <= n; i++) {
				if (a[i] ~ /^-/)
					drop[substr(a[i], 2)] = 1
				else if (a[i] ~ /^\+/)
					extra[++ne] = substr(a[i], 2)
				else if (a[i] != "") {
					eq = index(a[i], "=")
					val[substr(a[i], 1, eq - 1)] = substr(a[i], eq + 1)
				}
			}
		}
		!($1 in drop) { print $1, ($1 in val) ? val[$1] : ($1 == "buf_size" ? 16384 : 0) }
		END { for (i = 1; i <= ne; i++) print extra[i] }' >"$f"
}

# expect NAME EXPECTED-FILE ACTUAL-FILE: equal, or the diff.
expect() {
	if diff -u "$2" "$3" >"$tmp/diff"; then
		result 0 "$1"
	else
		sed 's/^/# /' "$tmp/diff"
		result 1 "$1"
	fi
}

# fails NAME STATUS PATTERN COMMAND...: exits STATUS, says PATTERN.
fails() {
	name=$1 want=$2 pat=$3
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -eq "$want" ] && grep -q -- "$pat" "$tmp/err" &&
	   [ ! -s "$tmp/out" ]; then
		result 0 "$name"
	else
		echo "# exit $rc (want $want), stderr:"
		sed 's/^/#   /' "$tmp/err"
		echo "# stdout: $(wc -c <"$tmp/out") bytes"
		result 1 "$name"
	fi
}

echo "TAP version 13"
echo "1..17"

# Tree 1, then tree 2 two seconds later.
#
# tcp, in tree 1: 10 waits since load, 7 under 1 us, 2 in [2, 4) us and
# 1 in [2048, 4096) us: p50 (rank 5) "<1us", p90 (rank 9) "<4us", p99
# (rank 9.9, so 10) "<4096us"; the longest 2500999 ns, "2500us". Between
# the trees: 300 handoffs (150.0/s), 1001 allocs (500.5/s), 100 waits: 50
# in [8, 16) us, 40 in [64, 128), 9 in [1024, 2048) and 1 in the last
# bucket (from 4194304 us): p50, p90 and p99 end exactly where their rank
# (50, 90, 99) does, "<16us", "<128us", "<2048us"; max ">4.1s". Since
# load, 110 waits: p50 (rank 55) "<16us", p90 (rank 99, the last of
# [64, 128)) "<128us", p99 (rank 108.9, so 109: one past [1024, 2048))
# "<4096us", max exact 5.0 s. A rank one off, or rounded down, moves one
# of them.
t1=$tmp/t1
t2=$tmp/t2
mkstats "$t1/tcp/stats" in_use=3 peak=4 limit=4 allocs=1000 frees=997 \
	waits=20 handoffs=10 waiters=2 wait_ns_max=2500999 \
	wait_hist_us_0=7 wait_hist_us_2=2 wait_hist_us_2048=1 \
	"+future_counter 12" "+wait_hist_us_total 10" "+a_flag"
mkstats "$t2/tcp/stats" in_use=4 peak=4 limit=4 allocs=2001 frees=1997 \
	waits=330 handoffs=310 waiters=28 wait_ns_max=5000000123 \
	wait_hist_us_0=7 wait_hist_us_2=2 wait_hist_us_8=50 \
	wait_hist_us_64=40 wait_hist_us_1024=9 wait_hist_us_2048=1 \
	wait_hist_us_4194304=1 \
	"+future_counter 99" "+wait_hist_us_total 110" "+a_flag"
# b_rl: reloaded between the trees (allocs went down): no interval.
mkstats "$t1/b_rl/stats" limit=8 peak=8 allocs=500 handoffs=5 \
	wait_hist_us_16=5 wait_ns_max=20000
mkstats "$t2/b_rl/stats" limit=8 peak=1 allocs=2 in_use=1
# a_new: only in tree 2. 1000000 waits in [16384, 32768) us: "<33ms".
mkstats "$t2/a_new/stats" limit=1 peak=1 in_use=1 allocs=7 \
	handoffs=1000000 wait_hist_us_16384=1000000 wait_ns_max=20000000
for t in "$t1" "$t2"; do
	: >"$t/tcp/waiters"
	printf 'tcp live in_use=3\n' >"$t/pools"
done

cat >"$tmp/replay.want" <<'EOF'
mbufmuxtop tree 1/2  first read: rates from the next one  2 pools

POOL          IN_USE   LIMIT    PEAK  PARKED  HANDOFFS/s    ALLOCS/s
b_rl               0       8       8       0           -           -
tcp                3       4       4       2           -           -

WAIT          last interval (bucket bounds)     since load (max exact)
POOL             p50     p90     p99     max       p50     p90     p99     max
b_rl               -       -       -       -     <32us   <32us   <32us    20us
tcp                -       -       -       -      <1us    <4us <4096us  2500us

mbufmuxtop tree 2/2  interval 2.00 s  3 pools

POOL          IN_USE   LIMIT    PEAK  PARKED  HANDOFFS/s    ALLOCS/s
a_new              1       1       1       0           -           -
b_rl               1       8       1       0           -           -
tcp                4       4       4      28       150.0       500.5

WAIT          last interval (bucket bounds)     since load (max exact)
POOL             p50     p90     p99     max       p50     p90     p99     max
a_new              -       -       -       -     <33ms   <33ms   <33ms    20ms
b_rl               -       -       -       -         -       -       -       -
tcp            <16us  <128us <2048us   >4.1s     <16us  <128us <4096us    5.0s
EOF
"$top" -d 2 --debugfs "$t1" --debugfs "$t2" >"$tmp/replay.out" 2>&1
expect "replay: rates and percentiles over the interval and since load" \
	"$tmp/replay.want" "$tmp/replay.out"

# The same, one pool (and -n 1 of 2 trees).
cat >"$tmp/p.want" <<'EOF'
mbufmuxtop tree 1/2  first read: rates from the next one  1 pool

POOL          IN_USE   LIMIT    PEAK  PARKED  HANDOFFS/s    ALLOCS/s
tcp                3       4       4       2           -           -

WAIT          last interval (bucket bounds)     since load (max exact)
POOL             p50     p90     p99     max       p50     p90     p99     max
tcp                -       -       -       -      <1us    <4us <4096us  2500us
EOF
"$top" -n 1 -p tcp --debugfs "$t1" --debugfs "$t2" >"$tmp/p.out" 2>&1
expect "-p tcp: only that pool" "$tmp/p.want" "$tmp/p.out"

# Live: tree 2 read twice. Nothing moves: rates 0.0, no interval waits,
# so both frames end on the same wait table. The header lines (time,
# measured interval) are left out.
cat >"$tmp/live.waits" <<'EOF'

WAIT          last interval (bucket bounds)     since load (max exact)
POOL             p50     p90     p99     max       p50     p90     p99     max
a_new              -       -       -       -     <33ms   <33ms   <33ms    20ms
b_rl               -       -       -       -         -       -       -       -
tcp                -       -       -       -     <16us  <128us <4096us    5.0s
EOF
{
	cat <<'EOF'
HEADER

POOL          IN_USE   LIMIT    PEAK  PARKED  HANDOFFS/s    ALLOCS/s
a_new              1       1       1       0           -           -
b_rl               1       8       1       0           -           -
tcp                4       4       4      28           -           -
EOF
	cat "$tmp/live.waits"
	cat <<'EOF'

HEADER

POOL          IN_USE   LIMIT    PEAK  PARKED  HANDOFFS/s    ALLOCS/s
a_new              1       1       1       0         0.0         0.0
b_rl               1       8       1       0         0.0         0.0
tcp                4       4       4      28         0.0         0.0
EOF
	cat "$tmp/live.waits"
} >"$tmp/live.want"
"$top" -n 2 -d 0.1 --debugfs "$t2" >"$tmp/live.raw" 2>&1
rc=$?
sed 's/^mbufmuxtop .*/HEADER/' "$tmp/live.raw" >"$tmp/live.out"
[ $rc -eq 0 ] || echo "# exit $rc"
expect "live: two reads of one tree" "$tmp/live.want" "$tmp/live.out"

# Headers: the time, then the measured interval.
head -n 1 "$tmp/live.raw" | grep -Eq '^mbufmuxtop [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}  first read: rates from the next one  3 pools$'
result $? "live: first header has the time"
grep '^mbufmuxtop' "$tmp/live.raw" | sed -n 2p | grep -Eq '^mbufmuxtop [0-9-]+ [0-9:]+  interval [0-9]+\.[0-9]{2} s  3 pools$'
result $? "live: second header has the measured interval"

# A pipe gets plain frames, a terminal a cleared screen for each.
! grep -q "$(printf '\033')" "$tmp/live.raw"
result $? "no escape sequence when stdout is not a terminal"
script -qec "'$top' -n 2 -d 0.1 --debugfs '$t2'" /dev/null >"$tmp/tty.out" 2>&1
[ "$(grep -c "$(printf '\033\\[H\033\\[J')mbufmuxtop " "$tmp/tty.out")" -eq 2 ]
result $? "the screen is cleared before each frame on a terminal"

# Errors.
mkstats "$tmp/miss/tcp/stats" -handoffs
fails "missing key: error naming it" 1 "tcp/stats: no 'handoffs' line" \
	"$top" -n 1 --debugfs "$tmp/miss"
mkstats "$tmp/nohist/tcp/stats" -wait_hist_us_0 -wait_hist_us_1 \
	-wait_hist_us_2 -wait_hist_us_4 -wait_hist_us_8 -wait_hist_us_16 \
	-wait_hist_us_32 -wait_hist_us_64 -wait_hist_us_128 \
	-wait_hist_us_256 -wait_hist_us_512 -wait_hist_us_1024 \
	-wait_hist_us_2048 -wait_hist_us_4096 -wait_hist_us_8192 \
	-wait_hist_us_16384 -wait_hist_us_32768 -wait_hist_us_65536 \
	-wait_hist_us_131072 -wait_hist_us_262144 -wait_hist_us_524288 \
	-wait_hist_us_1048576 -wait_hist_us_2097152 -wait_hist_us_4194304
fails "no histogram: error" 1 "no 'wait_hist_us_<us>' lines" \
	"$top" -n 1 --debugfs "$tmp/nohist"
mkstats "$tmp/bad/tcp/stats" limit=-4
fails "malformed value: error" 1 "bad value for limit: '-4'" \
	"$top" -n 1 --debugfs "$tmp/bad"
mkdir -p "$tmp/empty/x"
printf '' >"$tmp/empty/pools"
fails "no pool: error" 1 "empty: no pool (is mbufmux_tcp.ko" \
	"$top" -n 1 --debugfs "$tmp/empty"
fails "-p with no such pool: error listing the pools" 1 \
	"no pool 'tcpx' (pools: b_rl tcp)" "$top" -n 1 -p tcpx --debugfs "$t1"
fails "no directory: error" 1 "nothere: No such file or directory" \
	"$top" -n 1 --debugfs "$tmp/nothere"
# Unreadable, as debugfs is to anyone but root: $tmp is 0700.
if [ "$(id -u)" -eq 0 ]; then
	fails "permission denied: error saying root is needed" 1 \
		"Permission denied (debugfs is readable by root only" \
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$top" -n 1 --debugfs "$t1"
else
	chmod 0 "$t1"
	fails "permission denied: error saying root is needed" 1 \
		"Permission denied (debugfs is readable by root only" \
		"$top" -n 1 --debugfs "$t1"
	chmod 700 "$t1"
fi
fails "-d 0 refused" 2 "-d 0: want seconds" "$top" -d 0 --debugfs "$t1"
fails "-n 1x refused" 2 "-n 1x: want a count" "$top" -n 1x --debugfs "$t1"
fails "-n 3 with 2 trees refused" 2 "only 2 --debugfs trees" \
	"$top" -n 3 --debugfs "$t1" --debugfs "$t2"

[ "$n" -eq 17 ] || { echo "# ran $n tests, planned 17"; failed=$((failed + 1)); }
[ $failed -eq 0 ]
