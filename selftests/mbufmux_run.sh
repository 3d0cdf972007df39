#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# mbufmux-run: unmodified Debian programs (socat, iperf3) with both ends of
# their connections attached through the preload library.
#
# - mbufmux_tcp unloaded first: socat (as nobody) still moves every byte,
#   and both reports say the sockets are not attached (ENOENT);
# - loaded again: socat both ways (IPv4 and IPv6, blocking and
#   non-blocking connect, both blocking modes), every byte compared; the
#   module's reference count shows the two attached sockets of a live
#   connection (each holds one until TCP destroys it), and the pool's
#   allocation counter moves with each transfer; a socat started by a
#   shell attaches too;
# - iperf3 forward and reversed, both ends attached (control and data
#   connections), iperf3 counting all the bytes its sender was to send;
# - a refused connect() reports the same error as without the library;
#   the launcher refuses bad options, warns about a static program, and
#   the library alone refuses a bad environment.
set -u

. "$(dirname "$0")/ktap.sh"

tmp=/tmp/mbufmux_run
stats=/sys/kernel/debug/mbufmux/tcp/stats
size=8388608

stat() { sed -n "s/^$1 //p" "$stats"; }
refcnt() { cat /sys/module/mbufmux_tcp/refcnt 2>/dev/null || echo none; }

# listening PORT: a socket listens on PORT (IPv4 or IPv6)
listening() {
	awk -v p=":$(printf '%04X' "$1")" \
		'$2 ~ p "$" && $4 == "0A" { f = 1 } END { exit !f }' \
		/proc/net/tcp /proc/net/tcp6
}

# wait_for COMMAND...: until it succeeds, at most 60 s (a bound, not a
# check: what follows asserts)
wait_for() {
	i=0
	until "$@"; do
		[ $i -lt 600 ] || return 1
		sleep 0.1
		i=$((i + 1))
	done
}

# count LOG TEXT: lines of LOG that contain TEXT
count() { grep -cF -- "$2" "$1" 2>/dev/null || true; }

# reports LOG N HOW: LOG says N sockets were attached, each with
# "attached (HOW", and none failed to be
reports() {
	[ "$(count "$1" " attached ($3")" -eq "$2" ] &&
		[ "$(count "$1" "not attached")" -eq 0 ] && return 0
	sed 's/^/# /' "$1"
	return 1
}

# launch COMMAND...: run it, as nobody if $as_nobody is set (words
# without quoting needs)
launch() {
	if [ -n "${as_nobody:-}" ]; then
		su -s /bin/sh nobody -c "exec $*"
	else
		"$@"
	fi
}

# socat_pair NAME SERVER-ADDRS CLIENT-ADDRS [launcher options]: a socat
# server and client, each through mbufmux-run (reports in $tmp/NAME.srv
# and NAME.cli); the listening port is the last word of SERVER-ADDRS's
# "LISTEN:<port>"; sets srv_rc and cli_rc.
socat_pair() {
	name=$1 saddr=$2 caddr=$3
	shift 3
	port=$(echo "$saddr" | sed -n 's/.*LISTEN:\([0-9]*\).*/\1/p')
	rm -f "$tmp/$name.srv" "$tmp/$name.cli"
	# shellcheck disable=SC2086 # one word per socat address
	launch timeout 120 mbufmux-run -l "$tmp/$name.srv" "$@" socat -u $saddr &
	srv=$!
	wait_for listening "$port"
	# shellcheck disable=SC2086
	launch timeout 120 mbufmux-run -l "$tmp/$name.cli" "$@" socat -u $caddr
	cli_rc=$?
	wait $srv
	srv_rc=$?
}

same() { cmp -s "$1" "$2"; }

# sum_sent JSON: the bytes iperf3's sender sent, from the client's -J
# output (in reverse mode too, the server reports them to the client)
sum_sent() {
	tr -d ' \t\n' <"$1" | grep -o '"sum_sent":{[^}]*}' |
		sed -n 's/.*"bytes":\([0-9]*\).*/\1/p'
}

# sent_all N JSON: iperf3's sender sent its N bytes (-n). It may send
# more: it checks its count against N only between batches of writes
# (seen on 6.1: 8 MiB + 128 KiB, one more -l 128K block).
sent_all() {
	_sent=$(sum_sent "$2")
	[ -n "$_sent" ] && [ "$_sent" -ge "$1" ]
}

echo "TAP version 13"
echo "1..34"
for p in mbufmux-run socat iperf3; do
	command -v $p >/dev/null || echo "# $p is missing from the VM (make tools, scripts/deps.sh)"
done
rm -rf "$tmp"
mkdir -p "$tmp"
head -c $size /dev/urandom >"$tmp/data"

# 1. Without the module: the programs run as they would without
# mbufmux-run. They run as nobody: without CAP_NET_ADMIN the kernel does
# not load the module on demand, whatever is installed (root's ENOENT,
# where it is not, takes the same path). Unloading it also leaves no
# attached socket of an earlier test behind, so the reference counts
# below are this test's own.
rmmod_tcp
check "mbufmux_tcp unloaded" sh -c '! grep -q "^mbufmux_tcp " /proc/modules'
chmod 777 "$tmp"
as_nobody=1
socat_pair absent "TCP4-LISTEN:5301,reuseaddr CREATE:$tmp/absent.out" \
	"OPEN:$tmp/data TCP4:127.0.0.1:5301"
as_nobody=
check "module absent: socat succeeds (rc $srv_rc, $cli_rc)" \
	test "$srv_rc$cli_rc" = 00
check "module absent: every byte arrives" same "$tmp/data" "$tmp/absent.out"
check "module absent: the reports say not attached, ENOENT" sh -c "
	grep -q 'fd [0-9]* not attached (accept): ENOENT (module mbufmux_tcp not loaded)' $tmp/absent.srv &&
	grep -q 'fd [0-9]* not attached (connect): ENOENT (module mbufmux_tcp not loaded)' $tmp/absent.cli &&
	! grep -qE 'fd [0-9]+ attached \\(' $tmp/absent.srv $tmp/absent.cli"
check "module absent: nothing loaded it" sh -c '! grep -q "^mbufmux_tcp " /proc/modules'
insmod /mbufmux/mbufmux_tcp.ko
check "mbufmux_tcp loaded again, no socket attached" test "$(refcnt)" = 0

# 2. socat client -> server, IPv4, blocking connect.
a0=$(stat allocs)
socat_pair up "TCP4-LISTEN:5302,reuseaddr CREATE:$tmp/up.out" \
	"OPEN:$tmp/data TCP4:127.0.0.1:5302"
a1=$(stat allocs)
check "socat upload: both ends succeed (rc $srv_rc, $cli_rc)" \
	test "$srv_rc$cli_rc" = 00
check "socat upload: every byte arrives" same "$tmp/data" "$tmp/up.out"
check "socat upload: accept side attached" reports "$tmp/up.srv" 1 "accept), block=both"
check "socat upload: connect side attached" reports "$tmp/up.cli" 1 "connect), block=both"
check "socat upload: pool buffers taken ($a0 -> $a1)" test "$a1" -gt "$a0"

# 3. socat server -> client, IPv6, a non-blocking connect (connect-timeout)
# attached on its first I/O, both ends in MBUFMUX_BLOCK_SEND mode.
a0=$(stat allocs)
socat_pair down "OPEN:$tmp/data TCP6-LISTEN:5303,reuseaddr" \
	"TCP6:[::1]:5303,connect-timeout=60 CREATE:$tmp/down.out" -b send
a1=$(stat allocs)
check "socat download: both ends succeed (rc $srv_rc, $cli_rc)" \
	test "$srv_rc$cli_rc" = 00
check "socat download: every byte arrives" same "$tmp/data" "$tmp/down.out"
check "socat download: accept side attached, block=send" \
	reports "$tmp/down.srv" 1 "accept), block=send"
check "socat download: connect side attached on first I/O, block=send" \
	reports "$tmp/down.cli" 1 "connect, on first I/O), block=send"
check "socat download: pool buffers taken ($a0 -> $a1)" test "$a1" -gt "$a0"

# 4. A live connection: its two ends each hold a reference on mbufmux_tcp.
# The client reads a FIFO this shell holds open. The server is socat
# started by a (static) shell: a child that execs inherits the library.
check "earlier sockets destroyed, references dropped" \
	wait_for sh -c "[ \"\$(cat /sys/module/mbufmux_tcp/refcnt)\" = 0 ]"
mkfifo "$tmp/fifo"
timeout 120 mbufmux-run -l "$tmp/live.srv" sh -c "socat -u \
	TCP4-LISTEN:5304,reuseaddr CREATE:$tmp/live.out; exit \$?" &
srv=$!
wait_for listening 5304
timeout 120 mbufmux-run -l "$tmp/live.cli" socat -u \
	STDIN TCP4:127.0.0.1:5304 <"$tmp/fifo" &
cli=$!
exec 3>"$tmp/fifo"
wait_for sh -c "grep -q ' attached (accept)' $tmp/live.srv &&
	grep -q ' attached (connect)' $tmp/live.cli" 2>/dev/null
check "live connection: 2 sockets hold mbufmux_tcp (refcnt $(refcnt))" \
	test "$(refcnt)" = 2
check "live connection: the shell's socat child attached its socket" \
	reports "$tmp/live.srv" 1 "accept), block=both"
head -c 65536 "$tmp/data" >&3
exec 3>&-
wait $cli
cli_rc=$?
wait $srv
srv_rc=$?
check "live connection: every byte arrives (rc $srv_rc, $cli_rc)" sh -c \
	"[ $srv_rc$cli_rc = 00 ] && head -c 65536 $tmp/data | cmp -s - $tmp/live.out"

# 5. iperf3, forward: the client sends 8 MiB; control and data
# connections attached on both ends.
a0=$(stat allocs)
timeout 120 mbufmux-run -l "$tmp/ip.srv" iperf3 -s -1 -p 5305 -J >"$tmp/ip.srv.json" &
srv=$!
wait_for listening 5305
timeout 120 mbufmux-run -l "$tmp/ip.cli" iperf3 -c 127.0.0.1 -p 5305 \
	-n $size -l 128K -J >"$tmp/ip.cli.json"
cli_rc=$?
wait $srv
srv_rc=$?
a1=$(stat allocs)
sent=$(sum_sent "$tmp/ip.cli.json")
check "iperf3: both ends succeed (rc $srv_rc, $cli_rc)" test "$srv_rc$cli_rc" = 00
check "iperf3: the client sent its $size bytes (${sent:-none})" \
	sent_all $size "$tmp/ip.cli.json"
check "iperf3: server attached control and data" reports "$tmp/ip.srv" 2 "accept), block=both"
check "iperf3: client attached control and data" reports "$tmp/ip.cli" 2 "connect), block=both"
check "iperf3: pool buffers taken ($a0 -> $a1)" test "$a1" -gt "$a0"

# 6. iperf3 reversed (the server sends), a non-blocking connect for the
# control connection (--connect-timeout), MBUFMUX_BLOCK_SEND.
timeout 120 mbufmux-run -b send -l "$tmp/ipr.srv" iperf3 -s -1 -p 5306 -J >"$tmp/ipr.srv.json" &
srv=$!
wait_for listening 5306
timeout 120 mbufmux-run -b send -l "$tmp/ipr.cli" iperf3 -c 127.0.0.1 -p 5306 \
	-R -n 4M -l 128K --connect-timeout 60000 -J >"$tmp/ipr.cli.json"
cli_rc=$?
wait $srv
srv_rc=$?
sent=$(sum_sent "$tmp/ipr.cli.json")
check "iperf3 -R: both ends succeed (rc $srv_rc, $cli_rc)" test "$srv_rc$cli_rc" = 00
check "iperf3 -R: the server sent its 4194304 bytes (${sent:-none})" \
	sent_all 4194304 "$tmp/ipr.cli.json"
check "iperf3 -R: server attached control and data, block=send" \
	reports "$tmp/ipr.srv" 2 "accept), block=send"
# (iperf3 connects its data stream with a blocking connect)
check "iperf3 -R: client attached control on first I/O, block=send" \
	reports "$tmp/ipr.cli" 1 "connect, on first I/O), block=send"
check "iperf3 -R: client attached data at connect, block=send" \
	reports "$tmp/ipr.cli" 1 "connect), block=send"

# 7. What the program sees does not change, and bad input is refused.
socat -u OPEN:/dev/null TCP4:127.0.0.1:1 2>"$tmp/refused.plain"
plain=$?
mbufmux-run socat -u OPEN:/dev/null TCP4:127.0.0.1:1 2>"$tmp/refused.run"
run=$?
check "refused connect: same exit code ($plain, $run) and error" sh -c "
	[ $plain -eq $run ] && [ $run -ne 0 ] &&
	[ \"\$(sed 's/.* E //' $tmp/refused.plain)\" = \"\$(sed 's/.* E //' $tmp/refused.run)\" ] &&
	grep -q 'Connection refused' $tmp/refused.run"
mbufmux-run -b sometimes true 2>"$tmp/bad.err"
rc=$?
check "launcher refuses -b sometimes (exit $rc)" sh -c \
	"[ $rc -eq 2 ] && grep -q \"bad blocking mode 'sometimes'\" $tmp/bad.err"
mbufmux-run -v /bin/busybox true 2>"$tmp/static.err"
check "launcher warns about a static program" \
	grep -q 'busybox is statically linked' "$tmp/static.err"
LD_PRELOAD=/usr/lib/mbufmux/mbufmux_preload.so MBUFMUX_RUN_BLOCK=x \
	socat -u OPEN:"$tmp/data" CREATE:"$tmp/copy" 2>"$tmp/env.err"
rc=$?
check "library alone refuses MBUFMUX_RUN_BLOCK=x, program runs (exit $rc)" sh -c \
	"[ $rc -eq 0 ] && grep -q \"bad MBUFMUX_RUN_BLOCK 'x'\" $tmp/env.err &&
	cmp -s $tmp/data $tmp/copy"

rm -rf "$tmp"
[ $failed -eq 0 ]
