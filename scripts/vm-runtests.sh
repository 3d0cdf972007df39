#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Selftest runner of the mbufmux test VM, in the style of the kernel's
# tools/testing/selftests/kselftest/runner.sh. Runs every test named in
# /selftests/TESTS (one executable per line, relative to /selftests; blank
# lines and lines starting with '#' are ignored), each from /selftests with
# stdin from /dev/null and a timeout, and prints KTAP:
#
#   TAP version 13
#   1..N
#   # <test output, prefixed>
#   ok 1 name | not ok 1 name # exit=1 | ok 1 name # SKIP | not ok 1 name # TIMEOUT 300s
#
# Exit code 4 of a test means skipped (kselftest's KSFT_SKIP). The runner
# exits 1 if any test failed, else 0.
#
# Timeout per test, in seconds: $MBUFMUX_TEST_TIMEOUT (mbufmux.timeout= on
# the kernel command line), else "timeout=N" in /selftests/settings, else 300.
set -eu

dir=${MBUFMUX_SELFTESTS:-/selftests}
list=$dir/${MBUFMUX_TESTS:-TESTS}
ksft_skip=4

timeout=300
if [ -r "$dir/settings" ]; then
	t=$(sed -n 's/^timeout=\([0-9][0-9]*\)$/\1/p' "$dir/settings")
	[ -z "$t" ] || timeout=$t
fi
timeout=${MBUFMUX_TEST_TIMEOUT:-$timeout}

tests=""
[ ! -r "$list" ] || tests=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$list")
total=$(printf '%s\n' "$tests" | grep -c . || true)

# Put a line in the kernel log, to tell which test a report came from.
kmsg() { echo "<6>mbufmux-selftest: $*" >/dev/kmsg 2>/dev/null || true; }
tainted() { cat /proc/sys/kernel/tainted 2>/dev/null || echo 0; }

echo "TAP version 13"
echo "1..$total"
[ -r "$list" ] || echo "# no $list: nothing to run"
echo "# timeout set to $timeout"

n=0
failed=0
for t in $tests; do
	n=$((n + 1))
	echo "# selftests: mbufmux: $t"
	if [ ! -f "$dir/$t" ] || [ ! -x "$dir/$t" ]; then
		echo "not ok $n $t # missing or not executable"
		failed=1
		continue
	fi
	kmsg "start $t"
	taint0=$(tainted)
	start=$(date +%s)
	# Prefix the output (awk: also ends an unterminated last line, and
	# flushes each line); the exit code comes back through a file.
	{
		rc=0
		(cd "$dir" && timeout -k 10 "$timeout" "./$t" </dev/null 2>&1) || rc=$?
		echo "$rc" >/tmp/.mbufmux-rc
	} | awk '{ print "# " $0; fflush() }'
	rc=$(cat /tmp/.mbufmux-rc)
	secs=$(($(date +%s) - start))
	taint1=$(tainted)
	kmsg "end $t rc=$rc ${secs}s"
	[ "$taint0" = "$taint1" ] ||
		echo "# kernel taint changed $taint0 -> $taint1 during $t (see kernel log)"
	if [ "$rc" -eq 0 ]; then
		echo "ok $n $t"
	elif [ "$rc" -eq "$ksft_skip" ]; then
		echo "ok $n $t # SKIP"
	elif { [ "$rc" -eq 124 ] || [ "$rc" -eq 143 ] || [ "$rc" -eq 137 ]; } && [ "$secs" -ge "$timeout" ]; then
		echo "not ok $n $t # TIMEOUT ${timeout}s"
		failed=1
	else
		echo "not ok $n $t # exit=$rc"
		failed=1
	fi
done
exit "$failed"
