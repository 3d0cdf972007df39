#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Boot the mbufmux test VM (qemu, Debian's 6.12 cloud kernel, busybox
# initramfs with the built modules and selftests) and judge the run.
#
# Usage: scripts/vm.sh MODE [kernel args...]
#        scripts/vm.sh cmd 'COMMAND' | HOSTSCRIPT [kernel args...]
#   check  run selftests/TESTS, print TAP, judge the kernel log
#   demo   run demo/demo.sh, judge the kernel log
#   cmd    run a shell command (or a host script, copied in) in the VM
#   shell  interactive busybox shell on the console (no timeout on a
#          terminal); power off with "exit" (or Ctrl-A x to kill qemu).
#          Input can be piped in too: printf 'ls /mbufmux\nexit\n' | ...
# Kernel args come last and win, e.g. "loglevel=8", "mbufmux.timeout=60",
# or module parameters "mbufmux.<param>=<value>".
#
# Env: MBUFMUX_VM_TIMEOUT  whole-run limit in seconds (default 900)
#      MBUFMUX_BUILD       output dir (default build/ in the checkout)
#      MBUFMUX_SRC         tree with the modules/selftests (default checkout)
#      MBUFMUX_VM_MODULES  Debian modules to add (default "tls")
#      MBUFMUX_VM_ACCEL    qemu -accel value (default kvm if usable, else
#                          tcg,thread=multi)
#      MBUFMUX_VM_QEMU_ARGS extra qemu arguments (word-split)
#      MBUFMUX_VM_KERNEL   kernel image to boot instead of Debian's (e.g. the
#                          debug build); MBUFMUX_VM_MODULES then defaults to ""
#      MBUFMUX_VM_FILES    more files for the initramfs: HOSTFILE=/GUEST/PATH
#                          words (e.g. the debug kernel's own modules)
#      MBUFMUX_VM_EXPECT_LEAK  SIZE: the positive control of kmemleak (see
#                          scripts/check-debug.sh): the run passes only if
#                          kmemleak reported one unreferenced object, of
#                          SIZE bytes, and nothing else
#
# Output (not shell): the console (without the kernel log dump at its end;
# for the demo, without kernel messages either), all of it kept in
# $MBUFMUX_BUILD/vm-MODE.log; then the verdict: for check, the programs
# and their test cases counted, "ok|not ok - kernel log clean" and the
# closing line "N passed, N failed, N skipped", counting test cases.
# Exit: 0 all passed, 1 a test / the kernel log / the VM's exit code
# failed, 2 the VM did not finish (crash, hang, timeout), 3 bad usage or
# setup error.
set -eu

scripts=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$scripts")
build=${MBUFMUX_BUILD:-$repo/build}
vm_timeout=${MBUFMUX_VM_TIMEOUT:-900}

usage() {
	sed -n '/^# Usage:/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 3
}

[ $# -ge 1 ] || usage
mode=$1
shift
extra_files=()
cmdargs=()
case $mode in
check | demo | shell) ;;
cmd)
	[ $# -ge 1 ] || usage
	if [ -f "$1" ]; then
		extra_files=("$1=/cmd.sh")
		cmdargs=(mbufmux.script=/cmd.sh)
	else
		cmdargs=("mbufmux.cmd=$(printf '%s\n' "$1" | base64 -w 0)")
	fi
	shift
	;;
*) usage ;;
esac

mkdir -p "$build"
# The uncompressed vmlinux boots seconds faster under TCG than vmlinuz.
kernel=${MBUFMUX_VM_KERNEL:-}
if [ -n "$kernel" ]; then
	# Debian's modules would not match another kernel: none unless asked.
	export MBUFMUX_VM_MODULES=${MBUFMUX_VM_MODULES-}
else
	kernel=$("$scripts/vm-kernel.sh" --vmlinux) || exit 3
fi
initrd=$build/initramfs-$mode.cpio.gz
# shellcheck disable=SC2206 # one word per file
extra_files+=(${MBUFMUX_VM_FILES:-})
"$scripts/mkinitramfs.sh" "$initrd" "${extra_files[@]}" || exit 3

# Accelerator: KVM where the host has it, else multi-threaded TCG.
accel=${MBUFMUX_VM_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg,thread=multi
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		accel=kvm
	fi
fi

# Kernel command line:
#  panic=-1 + -no-reboot  a panic ends qemu at once (no markers: a failure);
#  loglevel=5             warnings, oopses and traces reach the console
#                         live, info noise does not (all of it is in the
#                         dmesg dump at the end);
#  softlockup_panic, hung_task_panic  a hang ends the run instead of
#                         waiting for the timeout;
#  mitigations=off        no PTI etc.: much faster syscalls under TCG.
append="console=ttyS0 panic=-1 loglevel=5 printk.devkmsg=on"
append+=" softlockup_panic=1 hung_task_panic=1 mitigations=off"
append+=" mbufmux.mode=$mode ${cmdargs[*]} $*"

# qboot, where qemu ships it, starts a -kernel faster than SeaBIOS.
bios=()
qboot=/usr/share/qemu/qboot.rom
[ ! -f "$qboot" ] || bios=(-bios "$qboot")

# la57=off: with 5-level paging, the KASAN debug kernel takes an early
# interrupt on an unmapped shadow address under TCG (a "wild-memory-access"
# that also turns lockdep off); 4-level paging is what real hosts use.
# shellcheck disable=SC2206 # user-supplied qemu words
qemu=(qemu-system-x86_64 -nographic -nodefaults -no-user-config
	-serial mon:stdio -no-reboot -accel "$accel" -cpu max,la57=off -smp 2 -m 2048
	"${bios[@]}" -kernel "$kernel" -initrd "$initrd" -append "$append"
	${MBUFMUX_VM_QEMU_ARGS:-})

echo "vm: booting $kernel mode=$mode accel=$accel" >&2
log=$build/vm-$mode.log
if [ "$mode" = shell ]; then
	[ -t 0 ] && exec "${qemu[@]}"
	# Scripted input (a pipe): bytes sent before the guest's shell reads
	# the console get lost, so feed stdin only once the prompt is up.
	# The timeout applies, in case the input does not end with "exit".
	fifo=$(mktemp -u "$build/.vm-shell.XXXXXX")
	rm -f "$log"
	mkfifo "$fifo"
	: >"$log"
	exec 3<&0
	(
		exec >"$fifo"
		until grep -q 'mbufmux-vm:.*# ' "$log" 2>/dev/null; do sleep 0.2; done
		cat <&3
	) &
	feeder=$!
	set +e
	timeout -k 10 "$vm_timeout" "${qemu[@]}" <"$fifo" 2>&1 | tee "$log"
	qrc=${PIPESTATUS[0]}
	kill "$feeder" 2>/dev/null
	rm -f "$fifo"
	exit "$qrc"
fi

# The whole console goes to the log; the terminal gets what the run
# printed, without the kernel log dump at its end (the verdict below shows
# any line of it that fails the run), and for the demo without the kernel
# messages that reach the console either.
console_filter() {
	awk -v demo="$([ "$mode" = demo ] && echo 1)" '
	{ sub(/\r$/, "") }
	/^===MBUFMUX-DMESG-BEGIN===$/ { dump = 1 }
	dump { if ($0 ~ /^===MBUFMUX-RC=/) dump = 0; next }
	demo && /^\[ *[0-9]+\.[0-9]+\] / { next }
	{ print; fflush() }'
}
start=$(date +%s)
set +e
timeout -k 10 "$vm_timeout" "${qemu[@]}" </dev/null 2>&1 | tee "$log" | console_filter
qrc=${PIPESTATUS[0]}
set -e
secs=$(($(date +%s) - start))

# Serial output has CRLF line ends.
out=$(tr -d '\r' <"$log")
dmesg=$(sed -n '/===MBUFMUX-DMESG-BEGIN===/,/===MBUFMUX-DMESG-END===/p' <<<"$out")
rc=$(grep -o '===MBUFMUX-RC=[0-9]*===' <<<"$out" | tail -n 1 | tr -dc '0-9') || true

# What fails the kernel log; what looks like it but is benign.
bad='WARNING:|BUG:|Oops|Call Trace|lockdep|possible circular locking|KASAN|UBSAN'
bad+='|kmemleak|unreferenced object|refcount_t|Objects remaining|Slab cache still has objects'
bad+='|general protection|Kernel panic|hung task|blocked for more than|soft lockup|hard LOCKUP'
bad+='|rcu.*detected stall|ODEBUG|invalid context|list_add corruption|list_del corruption'
bad+='|Disabling lock debugging'
# SLUB's own reports (slub_debug checks, validate): "BUG <cache> (...): ..."
bad+='|BUG [^ ]+ \(|FIX [^ ]+: |Slab corruption'
benign='kmemleak: Kernel memory leak detector initialized|kmemleak: Automatic memory scanning thread'
benign+='|ODEBUG: selftest passed|hung_task_timeout_secs|RCU lockdep checking is enabled'

# Boot time: kernel start to /init, as the guest saw it.
boot=$(sed -n 's/^mbufmux-vm: init started at \([0-9.]*\)s.*/\1/p' <<<"$out" | head -n 1)

echo
echo "--- vm: $mode verdict (boot to /init ${boot:-?}s, whole run ${secs}s, log: $log) ---"
finished=1
if [ -z "$rc" ] || ! grep -q 'MBUFMUX-DMESG-END' <<<"$dmesg"; then
	finished=0
	if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
		echo "vm: FAIL: timed out after ${vm_timeout}s (MBUFMUX_VM_TIMEOUT)"
	else
		echo "vm: FAIL: the VM stopped before the end markers (crash or panic; qemu exit $qrc)"
	fi
	# No dmesg dump: judge what reached the console.
	dmesg=$out
	note=" (console only, no dmesg dump)"
fi

# The test cases in the runner's TAP (see count_cases), as
# "cases failed skipped programs programs_failed programs_skipped".
# Three levels: the runner's line per program; inside it (lines prefixed
# "# ") the program's own results, one per test case (a kselftest case and
# variant, a script check); and, below a result, the nested KTAP of the
# cases it stands for (the in-kernel tests, indented), which are then
# counted instead of it. A result that failed with none of its cases
# failed counts as one failed case; cases a plan announced but that never
# reported count as failed.
count_cases() {
	awk '
	function result(line) { return line ~ /^[# ]*not ok / }
	function skip(line) { return line ~ /# SKIP/ }
	# The nested cases since the last program-level result.
	/^#     +1\.\.[0-9]+/ { sub(/^#[ ]+1\.\./, ""); plan2 = $0 + 0; next }
	/^#     +(not )?ok [0-9]+/ {
		n2++; if (result($0)) f2++; else if (skip($0)) s2++; next
	}
	/^# 1\.\.[0-9]+/ { sub(/^# 1\.\./, ""); plan1 = $0 + 0; next }
	/^# (not )?ok [0-9]+/ {
		bad = result($0)
		if (n2 > 0 || plan2 > 0) {
			miss = plan2 > n2 ? plan2 - n2 : 0
			c1 += n2 + miss; f1 += f2 + miss; s1 += s2
			if (bad && f2 + miss == 0) { c1++; f1++ }
		} else {
			c1++; if (bad) f1++; else if (skip($0)) s1++
		}
		n1++; n2 = f2 = s2 = plan2 = 0
		next
	}
	/^(not )?ok [0-9]+/ {
		bad = result($0)
		progs++; if (bad) pf++; else if (skip($0)) ps++
		if (n1 == 0) {
			c1 = 1; f1 = bad; s1 = !bad && skip($0)
		} else if (plan1 > n1) {
			c1 += plan1 - n1; f1 += plan1 - n1
		}
		if (bad && f1 == 0) { c1++; f1++ }
		cases += c1; failed += f1; skipped += s1
		c1 = f1 = s1 = n1 = plan1 = 0; n2 = f2 = s2 = plan2 = 0
	}
	END { print cases + 0, failed + 0, skipped + 0, progs + 0, pf + 0, ps + 0 }'
}

# TAP results of the runner (check), or one result for the whole run.
passed=0 skipped=0 nfailed=0
if [ "$mode" = check ]; then
	tap=$(sed '/===MBUFMUX-DMESG-BEGIN===/,$d' <<<"$out")
	read -r ncases nfailed skipped nprogs pfailed pskipped < <(count_cases <<<"$tap")
	passed=$((ncases - nfailed - skipped))
	echo "programs: $((nprogs - pfailed - pskipped)) passed, $pfailed failed, $pskipped skipped;" \
		"their test cases: $passed passed, $nfailed failed, $skipped skipped"
	plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\)$/\1/p' <<<"$tap" | head -n 1)
	missing=$((${plan:-0} - nprogs))
	if [ "$missing" -gt 0 ]; then
		echo "not ok - $missing of $plan test programs did not report"
		nfailed=$((nfailed + missing))
	elif [ "$finished" -eq 0 ]; then
		echo "not ok - VM ran to the end"
		nfailed=$((nfailed + 1))
	elif [ "$rc" -ne 0 ] && [ "$nfailed" -eq 0 ]; then
		echo "not ok - VM exit code $rc (module load failed?)"
		nfailed=1
	fi
else
	if [ "$finished" -eq 1 ] && [ "$rc" -eq 0 ]; then
		echo "ok - $mode"
		passed=1
	else
		echo "not ok - $mode # exit=${rc:-none}"
		nfailed=1
	fi
fi

# Known reports of an injected allocation failure. The module-init sweep
# of selftests/fault_inject.sh fails allocations made by the modules' init
# functions, between two markers it writes to the kernel log. Two kernel
# functions report such a failure with a line and a dump_stack():
# kmem_cache_create() (mm/slab_common.c; -ENOMEM, or -EINVAL when SLUB
# loses its per-node or per-CPU allocation) and the per-CPU allocator
# (mm/percpu.c). Between the markers only, the dump that follows one of
# these two lines (after nothing but its "CPU:", "Tainted:" and "Hardware
# name:" lines) is not a finding: its "Call Trace:", then stack frames and
# the user registers up to "</TASK>" (a frame may be named lockdep_*). Any
# other line ends the dump and is judged as anywhere else: a WARNING, BUG,
# KASAN, lockdep or kmemleak report between the markers still fails the
# run. (The sweep sets the fault attributes' verbose to 0: no
# "FAULT_INJECTION: forcing a failure" banners.)
injected_dumps() {	# filter: drop those dumps, count them
	awk -v count="$build/.injected-dumps" '
	/mbufmux-selftest: init fault sweep begin$/ { sweep = 1 }
	/mbufmux-selftest: init fault sweep end$/ { sweep = 0 }
	sweep && /\] (__kmem_cache_create_args\(mbufmux_[a-z0-9_]+\) failed with error -(12|22)|percpu: allocation failed, size=[0-9]+ align=[0-9]+ atomic=0, .*)$/ {
		dump = 1; print; next
	}
	dump == 1 && /\] (CPU: |Tainted: |Hardware name: )/ { print; next }
	dump == 1 && /\] Call Trace:$/ { dump = 2; n++; next }
	dump == 2 && /\]  <\/TASK>$/ { dump = 0; next }
	dump == 2 && /\]  (<TASK>|(\? )?([A-Za-z0-9_.]+\+0x[0-9a-f]+\/0x[0-9a-f]+|0x[0-9a-f]+)( \[[a-z0-9_]+\])?)$/ { next }
	dump == 2 && /\] (RIP|Code|RSP|RAX|RDX|RBP|R10|R13): / { next }
	{ dump = 0; print }
	END { print n + 0 > count }'
}
hits=$(injected_dumps <<<"$dmesg" | grep -E "$bad" | grep -vE "$benign") || true
ndumps=$(cat "$build/.injected-dumps" 2>/dev/null) || ndumps=0
rm -f "$build/.injected-dumps"
[ "$ndumps" = 0 ] ||
	echo "vm: $ndumps stack dumps of injected allocation failures allowed (fault_inject.sh init sweep)"

# The positive control of kmemleak: vm-init.sh printed the report of its
# two scans (/sys/kernel/debug/kmemleak) on the console; there must be one
# object in it, of the expected size. Its one-line summary in the kernel
# log is then expected, not a finding.
if [ -n "${MBUFMUX_VM_EXPECT_LEAK:-}" ]; then
	size=$MBUFMUX_VM_EXPECT_LEAK
	leaks=$(sed '/===MBUFMUX-DMESG-BEGIN===/,$d' <<<"$out" |
		grep -E '^unreferenced object 0x[0-9a-f]+ \(size [0-9]+\):') || true
	summary='kmemleak: 1 new suspected memory leaks \(see /sys/kernel/debug/kmemleak\)$'
	if [ "$(grep -c . <<<"$leaks")" -eq 1 ] &&
		grep -q "(size $size):\$" <<<"$leaks" &&
		[ "$(grep -cE "$summary" <<<"$dmesg")" -eq 1 ]; then
		echo "ok - kmemleak positive control: leak of $size bytes detected"
		passed=$((passed + 1))
		hits=$(grep -vE "$summary" <<<"$hits") || true
	else
		echo "not ok - kmemleak positive control: leak of $size bytes detected"
		echo "vm: kmemleak reported:${leaks:- nothing}"
		nfailed=$((nfailed + 1))
	fi
fi
if [ -n "$hits" ]; then
	echo "vm: kernel log problems:"
	while IFS= read -r line; do echo "  $line"; done <<<"$hits"
	echo "not ok - kernel log clean"
	nfailed=$((nfailed + 1))
else
	echo "ok - kernel log clean${note:-}"
	passed=$((passed + 1))
fi

echo "$passed passed, $nfailed failed, $skipped skipped"
[ "$finished" -eq 1 ] || exit 2
[ "$nfailed" -eq 0 ] && [ "$rc" -eq 0 ] || exit 1
exit 0
