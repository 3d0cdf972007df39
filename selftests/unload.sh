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
# Closed sockets may still hold the module for a moment (TIME_WAIT does
# not; FIN_WAIT orphans might): retry briefly.
i=0
until rmmod mbufmux_tcp 2>/dev/null || [ $i -ge 50 ]; do
	sleep 0.2
	i=$((i + 1))
done
check "rmmod mbufmux_tcp" absent mbufmux_tcp
check "rmmod mbufmux" rmmod mbufmux
check "mbufmux is gone" absent mbufmux
check "no mbufmux slab cache left" sh -c '! ls /sys/kernel/slab 2>/dev/null | grep -q mbufmux'
check "no debugfs directory left" gone /sys/kernel/debug/mbufmux
[ $failed -eq 0 ]
