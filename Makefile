# SPDX-License-Identifier: GPL-2.0
#
# mbufmux: every user-facing target. `make help` lists them.

# The headers of Debian's linux-image-6.12-cloud-amd64, the test VM's
# kernel: what every target that runs the VM builds against.
KDIR_VM		?= $(lastword $(sort $(wildcard /usr/src/linux-headers-6.12.*-cloud-amd64)))
# What `make` and `make install` build against: the running kernel's
# headers where they are installed, else the test VM's.
KDIR_RUNNING	:= /lib/modules/$(shell uname -r)/build
KDIR		?= $(if $(wildcard $(KDIR_RUNNING)/Makefile),$(KDIR_RUNNING),$(KDIR_VM))
# Debian 12's own kernel headers (6.1), the second build target.
KDIR_61		?= $(firstword $(wildcard /usr/src/linux-headers-6.1.*-amd64))
CACHE		?= /var/cache/mbufmux
SRCTREE		?= $(CACHE)/linux-source-6.12
SRCTAR		:= /usr/src/linux-source-6.12.tar.xz

.PHONY: all modules deps srctree selftests check check-debug run vm style \
	build-all \
	tools install-tools check-tools \
	clean help
.PHONY: test-modules install check-dkms version

all: modules

help:
	@echo "make            build the modules against KDIR ($(KDIR))"
	@echo "make install    install them in /lib/modules (modules_install, depmod)"
	@echo "make test-modules  the modules with the test ones (MBUFMUX_TESTS=1)"
	@echo "make check-dkms DKMS builds and installs, 6.12 and 6.1, in a throwaway tree"
	@echo "make version    print the version (dkms.conf's PACKAGE_VERSION)"
	@echo "make run        boot the test VM and run the demo (the main job)"
	@echo "make check      build, boot the test VM, run every test (TAP)"
	@echo "make vm         interactive shell in the test VM, modules loaded"
	@echo "make check-debug  the tests and fault injection on a debug kernel"
	@echo "make style      checkpatch --strict, sparse, kernel-doc"
	@echo "make build-all  W=1 builds against the 6.12 and 6.1 headers"
	@echo "make bench      benchmarks in the test VM (table, build/bench.json)"
	@echo "make tools      build tools/ (mbufmuxtop, mbufmux-run)"
	@echo "make install-tools  install them in PREFIX (/usr/local)"
	@echo "make check-tools    their host-side tests (no VM; part of make check)"
	@echo "make clean      remove build output"

# Every Debian package the project needs (idempotent, quick when done).
deps:
	@scripts/deps.sh

# The product: mbufmux.ko and mbufmux_tcp.ko (Kbuild).
modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

# The same, with the test modules and the test hooks they call.
test-modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) MBUFMUX_TESTS=1 modules

version:
	@sed -n 's/^PACKAGE_VERSION="\([^"]*\)"$$/\1/p' dkms.conf

# The product modules only, whatever was built before, into
# $(INSTALL_MOD_PATH)/lib/modules/<release>/updates, then depmod (Kbuild
# skips it without a System.map). Unsigned: the kernel's signing key is
# not in its headers (with Secure Boot, use DKMS: README.md).
KRELEASE	= $(shell sed -n 's/^\#define UTS_RELEASE "\(.*\)"$$/\1/p' \
		    $(KDIR)/include/generated/utsrelease.h)
install:
	$(MAKE) -C $(KDIR) M=$(CURDIR) MBUFMUX_TESTS=0 MBUFMUX_BENCH=0 modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) INSTALL_MOD_DIR=updates \
		CONFIG_MODULE_SIG_ALL= modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b $(INSTALL_MOD_PATH)) $(KRELEASE)

# DKMS (dkms.conf) against both kernels' headers, in a throwaway tree.
check-dkms: deps
	scripts/check-dkms.sh $(KDIR_VM) $(KDIR_61)

# kselftest_harness.h, checkpatch.pl and kernel-doc come from Debian's
# linux-source-6.12, unpacked once into the cache (never into the repo).
srctree: $(SRCTREE)/Makefile
$(SRCTREE)/Makefile: $(SRCTAR)
	mkdir -p $(CACHE)
	rm -rf $(SRCTREE).tmp && mkdir -p $(SRCTREE).tmp
	tar -xf $(SRCTAR) -C $(SRCTREE).tmp --strip-components=1
	rm -rf $(SRCTREE) && mv $(SRCTREE).tmp $(SRCTREE)
	touch $@
$(SRCTAR):
	@scripts/deps.sh

# With tools/: selftests/mbufmuxtop.sh runs mbufmuxtop in the VM.
selftests: srctree
	$(MAKE) -C selftests SRCTREE=$(SRCTREE)
	for p in demo/mbufmux_demo selftests/mbufmux_fault \
		 selftests/mbufmux_attach; do \
		$(CC) -O2 -Wall -Wextra -static -pthread -Iuapi -Ilib \
			-o $$p $$p.c lib/libmbufmux_test.a || exit 1; \
	done
	$(MAKE) -C tools

# The suite on the 6.12 cloud kernel, then on Debian 12's 6.1 (modules
# built against KDIR_61 in build/k61/src), each VM with the modules `make
# install` installs for it too (selftests/install.sh): scripts/check.sh.
check: deps
	$(MAKE) check-dkms
	$(MAKE) test-modules selftests KDIR=$(KDIR_VM)
	$(MAKE) check-tools
	KDIR=$(KDIR_VM) KDIR_61=$(KDIR_61) scripts/check.sh

# The demo: what it builds, the demo's summary, the pool's counters and
# the verdict (the VM's console, kernel log included, in build/vm-demo.log).
run: deps
	@echo "=== run: building mbufmux.ko, mbufmux_tcp.ko (against $(KDIR_VM)) and the demo"
	@$(MAKE) -s --no-print-directory modules selftests KDIR=$(KDIR_VM)
	@KDIR=$(KDIR_VM) scripts/vm.sh demo

vm: deps
	$(MAKE) test-modules selftests KDIR=$(KDIR_VM)
	KDIR=$(KDIR_VM) scripts/vm.sh shell

# The suite and fault injection on a debug kernel built from linux-source
# (cached; about 25 min cold on 2 cores).
check-debug: deps srctree
	$(MAKE) test-modules selftests KDIR=$(KDIR_VM)
	scripts/check-debug.sh

# checkpatch --strict, with the exceptions each kind of file needs:
# LINUX_VERSION_CODE: one source builds against 6.1 and 6.12;
# CONST_STRUCT: the ULP's proto and proto_ops are copies of TCP's, built
# at run time (as kTLS's); OPEN_ENDED_LINE and
# PARENTHESIS_ALIGNMENT: the TRACE_EVENT() layout of include/trace/events;
# PREFER_KERNEL_TYPES: userspace programs use <stdint.h>;
# PREFER_DEFINED_ATTRIBUTE_MACRO: userspace defines its own __printf().
CHECKPATCH	:= $(SRCTREE)/scripts/checkpatch.pl --strict --no-tree --quiet \
		   --ignore SPDX_LICENSE_TAG,FILE_PATH_CHANGES
# The ULP's sources (Kbuild: mbufmux_tcp-y).
TCP_SRC		:= mbufmux_tcp_main.c mbufmux_tcp_user.c mbufmux_tcp_user.h
# The test modules are selftests/test_*.c; the rest there is userspace.
KERNEL_SRC	:= mbufmux.c mbufmux.h mbufmux_compat.h $(TCP_SRC) \
		   uapi/mbufmux.h \
		   $(filter-out %.mod.c, $(wildcard selftests/test_*.c)) \
		   $(wildcard bench/*_kern.c)
USER_SRC	:= $(filter-out %.mod.c selftests/test_%.c %_kern.c, \
		     $(wildcard selftests/*.c selftests/*.h lib/*.c lib/*.h \
				demo/*.c bench/*.c tools/*.c \
				tools/mbufmux-run/*.c))

# deps may install the headers KDIR points at: a sub-make sees them.
style: deps srctree
	@$(MAKE) --no-print-directory style-installed

.PHONY: style-installed build-all-installed
style-installed:
	@mkdir -p build
	$(CHECKPATCH) --ignore CONST_STRUCT,LINUX_VERSION_CODE -f $(KERNEL_SRC)
	$(CHECKPATCH) --ignore OPEN_ENDED_LINE,PARENTHESIS_ALIGNMENT -f mbufmux_trace.h
	$(CHECKPATCH) --ignore PREFER_KERNEL_TYPES,PREFER_DEFINED_ATTRIBUTE_MACRO \
		-f $(USER_SRC)
	$(SRCTREE)/scripts/kernel-doc -none -Wall mbufmux.h mbufmux_compat.h \
		mbufmux.c $(TCP_SRC) uapi/mbufmux.h
	$(MAKE) -s -C $(KDIR_VM) M=$(CURDIR) C=2 CHECK="sparse" modules \
		> build/sparse.log 2>&1 || (cat build/sparse.log; exit 1)
	$(MAKE) -s -C $(KDIR_VM) M=$(CURDIR) C=2 CHECK="sparse" \
		MBUFMUX_TESTS=1 MBUFMUX_BENCH=1 modules \
		>> build/sparse.log 2>&1 || (cat build/sparse.log; exit 1)
	@if grep -Ei 'warning|error' build/sparse.log; then exit 1; fi
	@echo "style: checkpatch --strict, kernel-doc and sparse are clean"

# W=1 against both kernels, in place, the product alone and with the test
# and bench modules; any warning fails. Ends with the tree built against
# the VM's kernel, test modules included.
build-all: deps
	@$(MAKE) --no-print-directory build-all-installed

build-all-installed:
	@mkdir -p build
	@for k in $(KDIR_61) $(KDIR_VM); do \
	for t in 0 1; do \
		echo "== W=1 build against $$k, MBUFMUX_TESTS=$$t MBUFMUX_BENCH=$$t"; \
		$(MAKE) -s -C $$k M=$(CURDIR) clean; \
		$(MAKE) -s -C $$k M=$(CURDIR) W=1 MBUFMUX_TESTS=$$t \
			MBUFMUX_BENCH=$$t modules > build/build-all.log 2>&1; \
		rc=$$?; \
		cat build/build-all.log; \
		[ $$rc -eq 0 ] || exit 1; \
		! grep -Eqi 'warning|error' build/build-all.log || exit 1; \
	done; \
	done
	@echo "build-all: no warnings against 6.1 and 6.12"

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean
	-$(MAKE) -C selftests clean
	-$(MAKE) -C bench clean
	-$(MAKE) -C lib clean
	-$(MAKE) -C tools clean
	rm -f demo/mbufmux_demo selftests/mbufmux_fault selftests/mbufmux_attach
	rm -rf build

# Benchmarks (bench/README.md): the modules and bench/ulp_bench, then the
# test VM runs bench/vm-bench.sh; prints a table, writes build/bench.json.
# Emulated timings: only the ratios within one run mean anything. Not part
# of `make check`.
.PHONY: bench
bench: deps
	$(MAKE) -C $(KDIR_VM) M=$(CURDIR) MBUFMUX_BENCH=1 modules
	$(MAKE) -C bench
	bench/run.sh

# Userspace tools (tools/Makefile): mbufmuxtop, the pools' live view, and
# mbufmux-run, which attaches unmodified programs (tools/mbufmux-run).
# PREFIX (default /usr/local) and DESTDIR go through to tools/Makefile.
tools:
	$(MAKE) -C tools

install-tools:
	$(MAKE) -C tools install

check-tools:
	$(MAKE) -C tools check
