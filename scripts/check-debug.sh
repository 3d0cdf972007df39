#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# make check-debug: the whole suite, plus fault injection, on the debug
# kernel (lockdep, KASAN, kmemleak, failslab, debugobjects; see
# scripts/debug-kernel.config). The kernel is built once and cached; the
# modules are built against it in build/debug-src, a copy of the sources,
# so the tree's own build (against Debian's kernel) is left alone.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
dk=$(scripts/debug-kernel.sh)
src=build/debug-src

rm -rf "$src"
mkdir -p "$src"
# The sources only: no build output, no git, no nested build dir.
tar --exclude=./build --exclude=./.git --exclude='*.ko' --exclude='*.o' \
	--exclude='.*.cmd' --exclude='*.mod' --exclude='*.mod.c' \
	--exclude=Module.symvers --exclude=modules.order -cf - . |
	tar -xf - -C "$src"
make -s -C "$dk" M="$repo/$src" W=1 modules 2>&1 | tee build/debug-build.log
if grep -Ei 'warning|error' build/debug-build.log; then
	echo "check-debug: the modules do not build cleanly against the debug kernel" >&2
	exit 1
fi

# The userspace programs do not depend on the kernel: same binaries.
cp selftests/mbufmux_tcp selftests/mbufmux_demo selftests/mbufmux_fault \
	"$src/selftests/"

# slub_debug checks our caches' redzones, poisoning and free pointers on
# every operation; init_on_alloc=0 lets the tests see unzeroed memory.
# kmemleak is on by default in this kernel (and naming it here would put
# the word in the command line the verdict reads).
MBUFMUX_SRC=$repo/$src \
MBUFMUX_VM_KERNEL=$dk/arch/x86/boot/bzImage \
MBUFMUX_BUILD=$repo/build/debug \
MBUFMUX_VM_TIMEOUT=${MBUFMUX_VM_TIMEOUT:-2400} \
	scripts/vm.sh check mbufmux.tests=TESTS.debug mbufmux.timeout=1200 \
		"slub_debug=FZPU,mbufmux_*" init_on_alloc=0
