#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# TAP helpers for the selftest scripts: source it, print the plan, call
# result for each check, end with "[ $failed -eq 0 ]".

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

check() {	# check <name> <command...>: run it, report its status
	name=$1
	shift
	"$@"
	result $? "$name"
}

# tcp_left: the TCP sockets TCP has not finished with, which may still hold
# mbufmux_tcp (an attached socket does until TCP destroys it): every line
# of /proc/net/tcp and tcp6 but listeners and timewait sockets (state
# TIME_WAIT, or FIN_WAIT2 with the timewait timer, "03:": what TCP keeps of
# a socket it destroyed, which holds no module), the state named, e.g.
#   LAST_ACK   1: 0100007F:A1B2 0100007F:1F90 09 0000D800:00000000 04:000003E8 00000006 ...
tcp_left() {
	cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '
	BEGIN {
		split("ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE CLOSE_WAIT LAST_ACK LISTEN CLOSING NEW_SYN_RECV", name)
		for (i = 1; i <= 12; i++) st[sprintf("%02X", i)] = name[i]
	}
	$4 in st && $4 != "06" && $4 != "0A" && $6 !~ /^03:/ { printf "%-11s %s\n", st[$4], $0 }'
}

# rmmod_tcp: unload mbufmux_tcp once the last sockets let it go. A closed
# socket holds it until TCP destroys it, which TCP's own timers bound: an
# orphan with data or a FIN unacknowledged retransmits or probes a zero
# window tcp_orphan_retries times (8 when 0, the default) with exponential
# backoff from an RTO of at least 200 ms, about 100 s in all, then may
# stay in FIN_WAIT2 up to tcp_fin_timeout (60 s). So the wait lasts as
# long as such sockets remain, up to 240 s; but a module still held once
# no such socket is left (after 5 s: a socket's last reference can go from
# RCU or a work item) is a hold of ours, and fails at once. A failure
# prints the sockets left, with their /proc/net/tcp lines.
rmmod_tcp() {
	i=0
	idle=0
	until rmmod mbufmux_tcp 2>/dev/null; do
		left=$(tcp_left)
		if [ -n "$left" ]; then
			idle=0
		else
			idle=$((idle + 1))
		fi
		if [ $idle -ge 25 ] || [ $i -ge 1200 ]; then
			echo "# mbufmux_tcp still held: refcnt $(cat /sys/module/mbufmux_tcp/refcnt) after $((i / 5)) s"
			echo "# TCP sockets left:${left:- none}"
			[ -z "$left" ] || printf '%s\n' "$left" | sed 's/^/#   /'
			return 1
		fi
		if [ $((i % 150)) -eq 149 ]; then
			echo "# waiting for $(printf '%s\n' "$left" | grep -c .) TCP sockets TCP is still ending:"
			printf '%s\n' "$left" | sed 's/^/#   /'
		fi
		sleep 0.2
		i=$((i + 1))
	done
}
