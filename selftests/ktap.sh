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
