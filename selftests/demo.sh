#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The main job (make run): many TCP connections over loopback share a few
# mux buffers through the "mbufmux" ULP; every byte is verified.
set -eu

echo
echo "=== mbufmux: $(grep -c . /sys/kernel/debug/mbufmux/pools) pool(s) loaded:" \
	"$(cut -d' ' -f1 /sys/kernel/debug/mbufmux/pools | tr '\n' ' ')==="
/selftests/mbufmux_demo "${MBUFMUX_DEMO_CONNS:-32}" "${MBUFMUX_DEMO_BUFS:-4}" \
	"${MBUFMUX_DEMO_KIB:-256}"
echo "=== /sys/kernel/debug/mbufmux/tcp/stats (wait_hist_us_* buckets that are non-zero) ==="
grep -v '^wait_hist' /sys/kernel/debug/mbufmux/tcp/stats | sed 's/^/  /'
grep '^wait_hist' /sys/kernel/debug/mbufmux/tcp/stats | grep -v ' 0$' | sed 's/^/  /'
