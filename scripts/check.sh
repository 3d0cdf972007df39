#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`, once the modules and the test programs are built: the
# whole suite (selftests/TESTS) in the test VM, on each kernel a user runs
# it on, each with its own verdict (scripts/vm.sh), then one closing line
# that adds them up:
#
#   6.12  Debian's linux-image-6.12-cloud-amd64, with the modules built in
#         the checkout against KDIR;
#   6.1   Debian 12's own linux-image-6.1.0-*-amd64 (and its tls.ko), with
#         the modules built against KDIR_61 in a copy of the sources,
#         build/k61/src (an external module builds in its own directory),
#         its console log in build/k61/.
#
# The test programs (and mbufmux-run's preload library) are userspace,
# the same binaries for both kernels.
# Each VM also gets what `make install` installs for its kernel (in
# build/install-root, build/k61/install-root), copied into its
# /lib/modules/<release>/updates, and Debian's kmod as /bin/kmod: for
# selftests/install.sh.
#
# Usage: scripts/check.sh
# Env: KDIR, KDIR_61 (header trees; default: the installed 6.12 cloud and
#      6.1 ones), MBUFMUX_CHECK_KERNELS (default "6.12 6.1": which to run),
#      MAKE, and scripts/vm.sh's (MBUFMUX_VM_TIMEOUT, ...).
# Exit: 0 if every kernel's run passed, else the first failing run's
# scripts/vm.sh exit code (1 a test or the kernel log failed, 2 the VM did
# not finish, 3 setup error).
set -u

scripts=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$scripts")
build=$repo/build
make=${MAKE:-make}
latest() { ls -d $1 2>/dev/null | sort -V | tail -n 1; }
kdir=${KDIR:-$(latest '/usr/src/linux-headers-6.12.*-cloud-amd64')}
kdir61=${KDIR_61:-$(latest '/usr/src/linux-headers-6.1.*-amd64')}

# The 6.1 tree: the checkout's sources (tracked and new files, not build
# output), built against kdir61 with the test modules, plus the
# checkout's test programs and static tools.
prepare_61() {
	src=$build/k61/src
	rm -rf "$src"
	mkdir -p "$src"
	(cd "$repo" && git ls-files -co --exclude-standard -z |
		grep -zv -e '^build/' -e '^\.git' |
		xargs -0 cp --parents -t "$src") || return 3
	for f in "$repo"/selftests/* "$repo"/demo/*; do
		[ -f "$f" ] && [ -x "$f" ] && cp "$f" "$src/${f#"$repo"/}"
	done
	# and the tools' static builds (mbufmuxtop, for selftests/mbufmuxtop.sh)
	for f in "$repo"/tools/*-static; do
		[ -f "$f" ] && cp "$f" "$src/tools/"
	done
	# mbufmux-run's preload library (build output, so not copied above).
	lib=$repo/tools/mbufmux-run/mbufmux_preload.so
	[ ! -f "$lib" ] || cp "$lib" "$src/tools/mbufmux-run/"
	echo "check: building the modules against $kdir61 in $src"
	"$make" -s -C "$src" KDIR="$kdir61" test-modules >"$build/k61/build.log" 2>&1 ||
		{ cat "$build/k61/build.log"; return 3; }
}

# `make install` of tree $1 for headers $2 into $3, then the tree's test
# build again (install builds the product modules in place).
stage_install() {
	rm -rf "$3"
	{ "$make" -s -C "$1" KDIR="$2" INSTALL_MOD_PATH="$3" install &&
		"$make" -s -C "$1" KDIR="$2" test-modules; } >"$3.log" 2>&1 ||
		{ cat "$3.log"; return 3; }
}
# The MBUFMUX_VM_FILES words that put install root $1 and kmod in a VM.
vm_files() {
	(cd "$1" && find lib -name '*.ko*' -printf "$1/%p=/%p ")
	printf '%s=/bin/kmod\n' "$(command -v kmod)"
}

summary=()
total_p=0 total_f=0 total_s=0
first_rc=0
for k in ${MBUFMUX_CHECK_KERNELS:-6.12 6.1}; do
	case $k in
	6.12) hdr=$kdir src=$repo root=$build/install-root env=() ;;
	6.1)
		hdr=$kdir61 src=$build/k61/src root=$build/k61/install-root
		env=(MBUFMUX_SRC="$build/k61/src" MBUFMUX_BUILD="$build/k61")
		;;
	*) echo "check: unknown kernel '$k' (6.12 or 6.1)" >&2; exit 3 ;;
	esac
	echo
	echo "=== check: the suite on Linux $k ($hdr)"
	rc=0
	if [ -z "$hdr" ] || [ ! -d "$hdr" ]; then
		echo "check: no $k headers (run scripts/deps.sh)"
		rc=3
	elif [ "$k" = 6.1 ] && ! mkdir -p "$build/k61"; then
		rc=3
	elif [ "$k" = 6.1 ] && ! prepare_61; then
		rc=3
	elif ! stage_install "$src" "$hdr" "$root"; then
		rc=3
	fi
	line="not run"
	if [ "$rc" -eq 0 ]; then
		out=$build/.check-$k.out
		env KDIR="$hdr" "${env[@]}" \
			MBUFMUX_VM_FILES="${MBUFMUX_VM_FILES:-} $(vm_files "$root")" \
			"$scripts/vm.sh" check | tee "$out"
		rc=${PIPESTATUS[0]}
		line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out" | tail -n 1)
		rm -f "$out"
	fi
	if [ -n "$line" ] && [ "$line" != "not run" ]; then
		read -r p _ f _ s _ <<<"$line"
		total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
	else
		line="no verdict"
		total_f=$((total_f + 1))
	fi
	[ "$rc" -eq 0 ] || line="$line (exit $rc)"
	summary+=("Linux $k: $line")
	[ "$rc" -eq 0 ] || [ "$first_rc" -ne 0 ] || first_rc=$rc
done

echo
echo "=== check: verdicts"
for s in "${summary[@]}"; do echo "  $s"; done
echo "$total_p passed, $total_f failed, $total_s skipped"
exit "$first_rc"
