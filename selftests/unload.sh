#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Last test of the run: both modules unload cleanly once every socket is
# closed, and leave nothing behind (slab caches, debugfs). The kernel-log
# verdict then catches "Objects remaining" or a leak report from the exit
# paths; under a kmemleak kernel, vm-init.sh scans after this.
set -u

. "$(dirname "$0")/ktap.sh"
absent() { ! grep -q "^$1 " /proc/modules; }
gone() { [ ! -e "$1" ]; }

echo "TAP version 13"
echo "1..5"
# The pool's caches validate themselves before they go (SLUB; a
# complaint is a "BUG mbufmux_..." report that the verdict catches).
for v in /sys/kernel/slab/mbufmux_*/validate; do
	[ -w "$v" ] && echo 1 >"$v"
done
# Closed sockets hold the module until TCP destroys them (TIME_WAIT does
# not hold it; an orphan in FIN_WAIT_2 may, up to tcp_fin_timeout, 60 s by
# default, after a test whose peers stopped reading): retry that long.
i=0
until rmmod mbufmux_tcp 2>/dev/null || [ $i -ge 450 ]; do
	sleep 0.2
	i=$((i + 1))
done
absent mbufmux_tcp ||
	echo "# still held: refcnt $(cat /sys/module/mbufmux_tcp/refcnt) after $((i / 5)) s"
check "rmmod mbufmux_tcp" absent mbufmux_tcp
check "rmmod mbufmux" rmmod mbufmux
check "mbufmux is gone" absent mbufmux
check "no mbufmux slab cache left" sh -c '! ls /sys/kernel/slab 2>/dev/null | grep -q mbufmux'
check "no debugfs directory left" gone /sys/kernel/debug/mbufmux
[ $failed -eq 0 ]
