#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Last test of the run: both modules unload cleanly once every socket is
# closed, and leave nothing behind (slab caches, debugfs), not even the
# pools test_mbufmux.sh leaked on purpose, which mbufmux.ko frees at
# unload now that their buffers are back. The kernel-log
# verdict then catches "Objects remaining" or a leak report from the exit
# paths; under a kmemleak kernel, vm-init.sh scans after this.
set -u

. "$(dirname "$0")/ktap.sh"
absent() { ! grep -q "^$1 " /proc/modules; }
gone() { for f; do [ ! -e "$f" ] || return 1; done; }

echo "TAP version 13"
echo "1..5"
# The pool's caches validate themselves before they go (SLUB; a
# complaint is a "BUG mbufmux_..." report that the verdict catches).
for v in /sys/kernel/slab/mbufmux_*/validate; do
	[ -w "$v" ] && echo 1 >"$v"
done
rmmod_tcp
check "rmmod mbufmux_tcp" absent mbufmux_tcp
check "rmmod mbufmux" rmmod mbufmux
check "mbufmux is gone" absent mbufmux
check "no mbufmux slab cache left" sh -c '! ls /sys/kernel/slab 2>/dev/null | grep -q mbufmux'
check "no debugfs directory left" gone /sys/kernel/debug/mbufmux \
	/sys/kernel/debug/mbufmux_tcp
[ $failed -eq 0 ]
