#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# mbufmuxtop (tools/mbufmuxtop.c; /usr/sbin/mbufmuxtop in the test VM)
# against the live pool "tcp". It runs in the background, its frames going
# to a file, from before mbufmux_demo (32 sockets on 4 buffers: they park)
# until after it; then once more at rest. Checks:
# - every frame: tcp's LIMIT is /sys/module/mbufmux_tcp/parameters/limit,
#   IN_USE <= LIMIT, PARKED <= the demo's 32 sockets;
# - the demo's handoffs show: a frame with HANDOFFS/s > 0 and percentiles
#   over its interval (the first frame is read before the demo starts, the
#   last after it ends, so some interval holds them);
# - the last frame: nothing in use, nobody parked;
# - every frame, and each group of percentiles (interval, since load):
#   each is a bucket bound of the histogram, p50 <= p90 <= p99 <= max <=
#   the bucket of the longest wait since load (exact, wait_ns_max);
# - at rest, a frame of "-n 1" equals debugfs: in_use, limit, peak,
#   waiters, and the since-load p50/p90/p99 (nearest rank, bucket upper
#   bounds) and max (wait_ns_max) worked out here from the histogram;
# - -n 2 prints two frames and exits 0; -p of no pool fails, saying so.
# Nothing asserts on time: the waits for frames are hang guards.
# MBUFMUXTOP: the program to test (default: mbufmuxtop on the PATH).
set -u

. "$(dirname "$0")/ktap.sh"

top=${MBUFMUXTOP:-$(command -v mbufmuxtop)}
DBG=/sys/kernel/debug/mbufmux/tcp/stats
PARAM=/sys/module/mbufmux_tcp/parameters/limit
CONNS=32
BUFS=4
out=/tmp/mbufmuxtop.out

[ -f "$DBG" ] || { echo "# mbufmux_tcp.ko is not loaded"; exit 4; }
if [ -z "$top" ] || [ ! -x "$top" ]; then
	echo "# no mbufmuxtop (make -C tools)"
	exit 1
fi

echo "TAP version 13"
echo "1..10"

# One line per frame, of the rows of pool tcp: in_use limit peak parked
# handoffs/s allocs/s, then the interval's p50 p90 p99 max and the ones
# since load.
frames() {
	awk '$1 == "POOL" { t = ($2 == "p50") ? 2 : 1 }
	     $1 == "tcp" && t == 1 { row = $2 " " $3 " " $4 " " $5 " " $6 " " $7 }
	     $1 == "tcp" && t == 2 { print row, $2, $3, $4, $5, $6, $7, $8, $9 }' "$@"
}
nframes() { frames "$out" | grep -c .; }

# fmt(us, up): the bucket bound mbufmuxtop shows for @us ("<" rounds it
# up, ">" down).
FMT='
function fmt(us, up,   x) {
	if (us < 10000)
		return us "us"
	if (us < 1000000) {
		x = int(us / 1000); if (up && us % 1000) x++
		return x "ms"
	}
	if (us < 10000000) {
		x = int(us / 100000); if (up && us % 100000) x++
		return int(x / 10) "." (x % 10) "s"
	}
	x = int(us / 1000000); if (up && us % 1000000) x++
	return x "s"
}'

# since_load: p50 p90 p99 max, from the stats file.
since_load() {
	awk "$FMT"'
	/^wait_hist_us_[0-9]+ / { lo[nb] = substr($1, 14) + 0; c[nb++] = $2; total += $2 }
	$1 == "wait_ns_max" { max = int($2 / 1000) }
	END {
		if (!total) { print "- - - -"; exit }
		split("50 90 99", pct)
		for (p = 1; p <= 3; p++) {
			rank = int((total * pct[p] + 99) / 100)
			for (i = 0; sum[p] + c[i] < rank; i++)
				sum[p] += c[i]
			printf "%s ", i < nb - 1 ? "<" fmt(lo[i + 1], 1) : ">" fmt(lo[i], 0)
		}
		print fmt(max, 0)
	}' "$DBG"
}

# ordered FRAMES: each percentile shown is a bucket of the histogram
# (its index, from the bounds in the stats file), and p50 <= p90 <= p99
# <= max <= the bucket of the exact max since load (its value shown is
# truncated: the highest bucket it may be in). Prints the frames that
# are not.
ordered() {
	awk "$FMT"'
	NR == FNR {
		if ($1 ~ /^wait_hist_us_[0-9]+$/)
			lo[nb++] = substr($1, 14) + 0
		next
	}
	FNR == 1 {
		for (i = 0; i < nb; i++)
			idx[i < nb - 1 ? "<" fmt(lo[i + 1], 1) : ">" fmt(lo[i], 0)] = i
	}
	function bucket(us,   i) {
		for (i = nb - 1; i > 0 && lo[i] > us; i--)
			;
		return i
	}
	function group(a, b, c, d, top,   i) {
		if (!(a in idx) || !(b in idx) || !(c in idx))
			return 0
		if (d != "" && !(d in idx))
			return 0
		i = d == "" ? top : idx[d]
		return idx[a] <= idx[b] && idx[b] <= idx[c] && idx[c] <= i && i <= top
	}
	{
		m = $14
		if (m == "-") {
			if ($7 != "-") { print; bad = 1 }
			next
		}
		if (m ~ /us$/) hi = m + 0
		else if (m ~ /ms$/) hi = (int(m) + 1) * 1000 - 1
		else if (m ~ /\.[0-9]s$/) hi = (m + 0.1) * 1000000 - 1
		else hi = (int(m) + 1) * 1000000 - 1
		top = bucket(hi)
		if (!group($11, $12, $13, "", top) ||
		    ($7 != "-" && !group($7, $8, $9, $10, top))) {
			print
			bad = 1
		}
	}
	END { exit bad }' "$DBG" "$@"
}

limit0=$(cat "$PARAM")
echo "$BUFS" >"$PARAM"	# the demo sets the same, and puts it back

# The view from before the load to after it.
"$top" -d 0.2 -p tcp >"$out" 2>/tmp/mbufmuxtop.err &
pid=$!
i=0
while [ "$(nframes)" -lt 1 ] && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
done
/demo/mbufmux_demo "$CONNS" "$BUFS" 256 >/tmp/mbufmuxtop.demo 2>&1
demo=$?
sed 's/^/# demo: /' /tmp/mbufmuxtop.demo | grep -v '^# demo: *$'
result $demo "mbufmux_demo ran ($CONNS sockets, $BUFS buffers)"
# Two more frames: the last one read after the demo ended.
want=$(($(nframes) + 2))
i=0
while [ "$(nframes)" -lt $want ] && [ $i -lt 600 ] && kill -0 $pid 2>/dev/null; do
	sleep 0.1
	i=$((i + 1))
done
kill $pid 2>/dev/null
wait $pid 2>/dev/null
sed 's/^/# mbufmuxtop: /' /tmp/mbufmuxtop.err
frames "$out" >/tmp/mbufmuxtop.frames
nf=$(grep -c . /tmp/mbufmuxtop.frames)
echo "# $nf frames; the busiest:"
sort -k5 -n -r /tmp/mbufmuxtop.frames | head -n 1 | sed 's/^/#   /'
[ "$nf" -ge 3 ] && [ "$nf" -ge "$want" ]
result $? "mbufmuxtop: $nf frames, from before the load to after it"

limit=$(cat "$PARAM")
[ "$limit" -eq "$BUFS" ] &&
	awk -v l="$limit" '$2 != l { bad = 1 } END { exit bad }' /tmp/mbufmuxtop.frames
result $? "every frame: LIMIT is the module's limit ($limit)"
awk -v c="$CONNS" '$1 > $2 || $4 > c { print "# bad frame: " $0; bad = 1 }
	END { exit bad }' /tmp/mbufmuxtop.frames
result $? "every frame: IN_USE <= LIMIT, PARKED <= $CONNS"
awk '$5 > 0 && $7 != "-" { seen = 1 } END { exit !seen }' /tmp/mbufmuxtop.frames
result $? "the demo's handoffs show: HANDOFFS/s > 0 and wait percentiles"
ordered /tmp/mbufmuxtop.frames >/tmp/mbufmuxtop.bad
rc=$?
sed 's/^/# not in order: /' /tmp/mbufmuxtop.bad
result $rc "every frame: percentiles are buckets, in order, up to the longest wait"
tail -n 1 /tmp/mbufmuxtop.frames | awk '{ exit !($1 == 0 && $4 == 0) }'
result $? "last frame, after the demo: nothing in use, nobody parked"

# At rest: the figures equal debugfs'.
"$top" -n 1 -p tcp >/tmp/mbufmuxtop.rest 2>&1
rc=$?
got=$(frames /tmp/mbufmuxtop.rest | awk '{ print $1, $2, $3, $4, $11, $12, $13, $14 }')
st() { sed -n "s/^$1 //p" "$DBG"; }
exp="$(st in_use) $(st limit) $(st peak) $(st waiters) $(since_load)"
echo "# at rest: mbufmuxtop '$got', debugfs '$exp'"
[ $rc -eq 0 ] && [ "$got" = "$exp" ] && [ "$(st handoffs)" -gt 0 ]
result $? "at rest: in use, limit, peak, parked and waits since load as in debugfs"

"$top" -n 2 -d 0.1 >/tmp/mbufmuxtop.two 2>&1
rc=$?
[ $rc -eq 0 ] && [ "$(frames /tmp/mbufmuxtop.two | grep -c .)" -eq 2 ]
result $? "-n 2: two frames, exit 0"

"$top" -n 1 -p no_such_pool >/tmp/mbufmuxtop.none 2>&1
rc=$?
sed 's/^/# /' /tmp/mbufmuxtop.none
[ $rc -eq 1 ] && grep -q "no pool 'no_such_pool' (pools:.* tcp" /tmp/mbufmuxtop.none
result $? "-p no_such_pool: exit 1, the pools listed"

echo "$limit0" >"$PARAM"
[ $failed -eq 0 ]
