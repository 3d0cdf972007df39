// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_init_fault - load a module with its N-th fault site failing, for
 * the module-init sweep of fault_inject.sh.
 *
 *   mbufmux_init_fault N MODULE.ko [PARAMS]
 *
 * Writes N to this thread's fail-nth, then loads MODULE.ko with
 * finit_module(2) from the same thread, so that no exec and no other
 * syscall in between consumes the countdown (busybox insmod cannot do
 * that). Which fault sites count is up to the fault attributes'
 * stack-trace filters (fault_inject.sh aims them at module text).
 *
 * Prints one line, "<errno> <fired>": the errno of finit_module (0 if the
 * module loaded) and 1 if the N-th fault fired (fail-nth read back as 0),
 * 0 if the load never reached it. Exit 0 if both are known, 2 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *params = argc > 3 ? argv[3] : "";
	char buf[16] = "";
	int nth_fd, mod_fd, len, err;
	ssize_t got;

	if (argc < 3 || atoi(argv[1]) < 1) {
		fprintf(stderr, "usage: %s N MODULE.ko [PARAMS]\n", argv[0]);
		return 2;
	}
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR);
	if (nth_fd < 0) {
		perror("/proc/thread-self/fail-nth");
		return 2;
	}
	mod_fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (mod_fd < 0) {
		perror(argv[2]);
		return 2;
	}

	len = strlen(argv[1]);
	if (write(nth_fd, argv[1], len) != len) {
		perror("writing fail-nth");
		return 2;
	}
	err = syscall(SYS_finit_module, mod_fd, params, 0) ? errno : 0;
	got = pread(nth_fd, buf, sizeof(buf) - 1, 0);
	/* Never leave a countdown running, whatever happens next. */
	if (pwrite(nth_fd, "0", 1, 0) != 1 || got <= 0) {
		perror("fail-nth");
		return 2;
	}

	printf("%d %d\n", err, atoi(buf) == 0);
	return 0;
}
