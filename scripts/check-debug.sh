#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check-debug: the whole suite, plus fault injection, on the debug
# kernel (lockdep, KASAN, kmemleak, failslab, debugobjects; see
# scripts/debug-kernel.config). The kernel is built once and cached; the
# modules are built against it in $MBUFMUX_BUILD/debug-src (default
# build/debug-src), a copy of the sources, so the tree's own build (against
# Debian's kernel) is left alone. The VM runs write to $MBUFMUX_BUILD/debug
# (the suite) and $MBUFMUX_BUILD/debug-leak (the kmemleak control); the
# kernel's own modules are staged in $MBUFMUX_BUILD/debug-modules.
#
# Before the suite, a VM of its own is the positive control of kmemleak:
# it loads selftests/test_leak.ko, which leaks 42424 bytes, and passes only
# if kmemleak reports that object (scripts/vm.sh, MBUFMUX_VM_EXPECT_LEAK).
# Without it, "kmemleak clean" would prove nothing. The suite's VM never
# sees that module.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
build=${MBUFMUX_BUILD:-$repo/build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
cache=${MBUFMUX_CACHE:-/var/cache/mbufmux}
mkdir -p "$cache"
# One build of the kernel at a time: a second check-debug waits for it.
dk=$(flock "$cache/debug-kernel.lock" scripts/debug-kernel.sh)
src=$build/debug-src
leak=$build/debug-leak

rm -rf "$src" "$leak"
mkdir -p "$src" "$leak/src/selftests"
# The sources only: no build output, no git, no nested build dir.
exclude=(--exclude=./build)
case $build in
"$repo"/*) exclude+=("--exclude=./${build#"$repo"/}") ;;
esac
tar "${exclude[@]}" --exclude=./.git --exclude='*.ko' --exclude='*.o' \
	--exclude='.*.cmd' --exclude='*.mod' --exclude='*.mod.c' \
	--exclude=Module.symvers --exclude=modules.order -cf - . |
	tar -xf - -C "$src"
# With the test modules (test_mbufmux.ko, test_leak.ko) and the test
# hooks of mbufmux.ko they call (Kbuild).
make -s -C "$dk" M="$src" W=1 MBUFMUX_TESTS=1 modules 2>&1 | tee "$build/debug-build.log"
if grep -Ei 'warning|error' "$build/debug-build.log"; then
	echo "check-debug: the modules do not build cleanly against the debug kernel" >&2
	exit 1
fi

# The userspace programs do not depend on the kernel: same binaries. The
# module-init sweep's loader (fault_inject.sh) is only for this kernel.
cp selftests/mbufmux_fault "$src/selftests/"
cp demo/mbufmux_demo "$src/demo/"
${CC:-cc} -O2 -Wall -Wextra -Werror -static -o "$src/selftests/mbufmux_init_fault" \
	selftests/mbufmux_init_fault.c

# The control's tree: the modules vm-init.sh loads, and the leaking one,
# moved out of the suite's tree.
cp "$src/mbufmux.ko" "$src/mbufmux_tcp.ko" "$leak/src/"
mv "$src/selftests/test_leak.ko" "$leak/src/selftests/"

# The debug kernel's own modules (tls.ko and the crypto it needs: the
# adversarial tests modprobe tls), in /lib/modules of both VMs, as vm.sh
# puts Debian's there for Debian's kernel.
modroot=$build/debug-modules
rm -rf "$modroot"
make -s -C "$dk" INSTALL_MOD_PATH="$modroot" modules_install >/dev/null
MBUFMUX_VM_FILES=$(cd "$modroot" && find lib -type f -printf "$modroot/%p=/%p ")
export MBUFMUX_VM_FILES

# slub_debug checks our caches' redzones, poisoning and free pointers on
# every operation; init_on_alloc=0 lets the tests see unzeroed memory.
# kmemleak is on by default in this kernel (and naming it here would put
# the word in the command line the verdict reads).
args=("slub_debug=FZPU,mbufmux_*" init_on_alloc=0)
export MBUFMUX_VM_KERNEL=$dk/arch/x86/boot/bzImage

control=0
MBUFMUX_SRC=$leak/src MBUFMUX_BUILD=$leak MBUFMUX_VM_EXPECT_LEAK=42424 \
MBUFMUX_VM_TIMEOUT=${MBUFMUX_VM_TIMEOUT:-600} \
	scripts/vm.sh cmd 'insmod /mbufmux/test_leak.ko' "${args[@]}" || control=$?

suite=0
MBUFMUX_SRC=$src MBUFMUX_BUILD=$build/debug \
MBUFMUX_VM_TIMEOUT=${MBUFMUX_VM_TIMEOUT:-2400} \
	scripts/vm.sh check mbufmux.tests=TESTS.debug mbufmux.timeout=1200 \
		"${args[@]}" || suite=$?

if [ "$control" -ne 0 ]; then
	echo "check-debug: FAIL: kmemleak did not report the control's leak (log: $leak/vm-cmd.log): a clean kmemleak verdict proves nothing" >&2
	[ "$suite" -ne 0 ] || suite=1
fi
exit "$suite"
