#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# The main job (make run): many TCP connections over loopback share a few
# mux buffers through the "mbufmux" ULP; every byte is verified. Then an
# unmodified program, socat, does the same through mbufmux-run.
set -eu

echo
echo "=== mbufmux: $(grep -c . /sys/kernel/debug/mbufmux/pools) pool(s) loaded:" \
	"$(cut -d' ' -f1 /sys/kernel/debug/mbufmux/pools | tr '\n' ' ')==="
/demo/mbufmux_demo "${MBUFMUX_DEMO_CONNS:-32}" "${MBUFMUX_DEMO_BUFS:-4}" \
	"${MBUFMUX_DEMO_KIB:-256}"
echo "=== /sys/kernel/debug/mbufmux/tcp/stats (wait_hist_us_* buckets that are non-zero) ==="
grep -v '^wait_hist' /sys/kernel/debug/mbufmux/tcp/stats | sed 's/^/  /'
grep '^wait_hist' /sys/kernel/debug/mbufmux/tcp/stats | grep -v ' 0$' | sed 's/^/  /'

# A real program, unmodified: socat on both ends, through mbufmux-run.
d=/tmp/demo-run
rm -rf "$d"
mkdir -p "$d"
head -c 4194304 /dev/urandom >"$d/in"
echo "=== mbufmux-run: socat, unmodified, sends 4 MiB over loopback; both ends attached ==="
a0=$(sed -n 's/^allocs //p' /sys/kernel/debug/mbufmux/tcp/stats)
mbufmux-run -l "$d/report" socat -u TCP4-LISTEN:5401,reuseaddr CREATE:"$d/out" &
srv=$!
i=0
until grep -q '^ *[0-9]*: [0-9A-F]*:1519 [0-9A-F]*:0000 0A ' /proc/net/tcp; do
	[ $i -lt 600 ] || { echo "mbufmux-run demo: socat did not listen"; exit 1; }
	sleep 0.1
	i=$((i + 1))
done
mbufmux-run -l "$d/report" socat -u OPEN:"$d/in" TCP4:127.0.0.1:5401
wait $srv
a1=$(sed -n 's/^allocs //p' /sys/kernel/debug/mbufmux/tcp/stats)
grep 'attached' "$d/report" | sed 's/^/  /'
if ! cmp -s "$d/in" "$d/out"; then
	echo "mbufmux-run demo: the bytes received differ from those sent"
	exit 1
fi
if [ "$(grep -cE 'fd [0-9]+ attached \((accept|connect)\)' "$d/report")" -ne 2 ]; then
	echo "mbufmux-run demo: both ends should have been attached"
	exit 1
fi
echo "  $(wc -c <"$d/out") bytes received, every byte verified; pool buffers taken meanwhile: $((a1 - a0))"
rm -rf "$d"
