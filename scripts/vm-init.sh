#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the mbufmux test VM (busybox, see scripts/mkinitramfs.sh).
#
# Kernel command line parameters it reads (dotted, so the kernel itself
# ignores them):
#   mbufmux.mode=check|demo|shell|cmd   what to do (default: shell)
#   mbufmux.script=/path                cmd mode: script to run
#   mbufmux.cmd=<base64>                cmd mode: shell command to run
#   mbufmux.timeout=<s>                 check mode: per-test timeout
#   mbufmux.tests=<file>                check mode: the list in /selftests
#                                       (default TESTS)
#   mbufmux.<param>=<v>                 any other: module parameter for
#   mbufmux_tcp.<param>=<v>             mbufmux.ko / mbufmux_tcp.ko
#
# check, demo and cmd end with the kernel log between
# ===MBUFMUX-DMESG-BEGIN=== and ===MBUFMUX-DMESG-END===, then
# ===MBUFMUX-RC=<exit code>=== and a power-off; scripts/vm.sh parses that.
#
# No "set -e": if /init exits, the kernel panics. Failures are reported
# through the RC marker instead.
set -u
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/selftests
export HOME=/root
export PS1='mbufmux-vm:\w# '

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Make sure stdio is the console even if the initramfs has no /dev/console.
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
ln -sf /proc/self/fd /dev/fd
hostname mbufmux-vm
echo "mbufmux-vm: init started at $(cut -d ' ' -f 1 /proc/uptime)s uptime"
ip link set lo up

mode=shell
script=
cmd=
timeout=
params=
tcp_params=
read -r cmdline </proc/cmdline
for arg in $cmdline; do
	case $arg in
	mbufmux.mode=*) mode=${arg#*=} ;;
	mbufmux.script=*) script=${arg#*=} ;;
	mbufmux.cmd=*) cmd=${arg#*=} ;;
	mbufmux.timeout=*) timeout=${arg#*=} ;;
	mbufmux.tests=*) export MBUFMUX_TESTS="${arg#*=}" ;;
	mbufmux.*=*) params="$params ${arg#mbufmux.}" ;;
	mbufmux_tcp.*=*) tcp_params="$tcp_params ${arg#mbufmux_tcp.}" ;;
	esac
done
[ -z "$timeout" ] || export MBUFMUX_TEST_TIMEOUT="$timeout"

# Load the modules under test; a failure fails the run.
rc=0
load() {
	echo "mbufmux-vm: insmod $*"
	if ! insmod "$@"; then
		echo "mbufmux-vm: insmod $1 failed"
		rc=1
	fi
}
if [ -f /mbufmux/mbufmux.ko ]; then
	# shellcheck disable=SC2086 # one word per module parameter
	load /mbufmux/mbufmux.ko $params
else
	echo "mbufmux-vm: /mbufmux/mbufmux.ko missing (not built?)"
	rc=1
fi
if [ -f /mbufmux/mbufmux_tcp.ko ]; then
	# shellcheck disable=SC2086
	load /mbufmux/mbufmux_tcp.ko $tcp_params
fi

# Print the kernel log and the exit code for scripts/vm.sh, power off.
finish() {
	[ "$rc" -ne 0 ] || rc=$1
	# Every slab cache checks itself (SLUB's validate: free lists, red
	# zones and poison where slub_debug asked for them); a complaint is a
	# "BUG <cache>" report in the kernel log, which scripts/vm.sh judges.
	for v in /sys/kernel/slab/*/validate; do
		[ -w "$v" ] && echo 1 >"$v" 2>/dev/null
	done
	# A kmemleak kernel: two scans (objects must age first) put any
	# suspected leak in the kernel log, which scripts/vm.sh judges.
	if [ -w /sys/kernel/debug/kmemleak ]; then
		echo scan >/sys/kernel/debug/kmemleak
		sleep 6
		echo scan >/sys/kernel/debug/kmemleak
		cat /sys/kernel/debug/kmemleak
	fi
	# Keep late kernel messages from splitting the lines below.
	dmesg -n 1
	sync
	echo
	echo "===MBUFMUX-DMESG-BEGIN==="
	dmesg
	echo "===MBUFMUX-DMESG-END==="
	echo "===MBUFMUX-RC=$rc==="
	poweroff -f
}

case $mode in
check)
	vm-runtests.sh
	finish $?
	;;
demo)
	if [ -x /demo/demo.sh ]; then
		(cd /demo && ./demo.sh </dev/null)
		finish $?
	else
		echo "mbufmux-vm: /demo/demo.sh missing"
		finish 1
	fi
	;;
cmd)
	if [ -n "$script" ]; then
		(cd /selftests 2>/dev/null || cd /; sh "$script" </dev/null)
		finish $?
	elif [ -n "$cmd" ]; then
		echo "$cmd" | base64 -d >/tmp/cmd.sh
		(cd /selftests 2>/dev/null || cd /; sh /tmp/cmd.sh </dev/null)
		finish $?
	else
		echo "mbufmux-vm: cmd mode needs mbufmux.script= or mbufmux.cmd="
		finish 1
	fi
	;;
shell)
	cat <<-EOF

	mbufmux test VM: $(uname -r)
	  modules loaded: $(cut -d ' ' -f 1 /proc/modules | tr '\n' ' ')
	  modules:   /mbufmux/    selftests: /selftests/ (run-tests: vm-runtests.sh)
	  debugfs:   /sys/kernel/debug/mbufmux (pools), /sys/kernel/debug/mbufmux_tcp (ULP)
	  tracing:   /sys/kernel/tracing
	  exit the shell to power off

	EOF
	cd /selftests 2>/dev/null || cd /
	setsid cttyhack sh -l
	poweroff -f
	;;
*)
	echo "mbufmux-vm: unknown mbufmux.mode=$mode"
	finish 1
	;;
esac
