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

# rmmod_tcp: unload mbufmux_tcp once the last sockets let it go. Closed
# sockets hold it until TCP destroys them (TIME_WAIT does not hold it; an
# orphan in FIN_WAIT_2 may, up to tcp_fin_timeout, 60 s by default, after
# a test whose peers stopped reading): retry that long. Fails if it stays.
rmmod_tcp() {
	i=0
	until rmmod mbufmux_tcp 2>/dev/null; do
		if [ $i -ge 450 ]; then
			echo "# mbufmux_tcp still held: refcnt $(cat /sys/module/mbufmux_tcp/refcnt) after 90 s"
			return 1
		fi
		sleep 0.2
		i=$((i + 1))
	done
}
