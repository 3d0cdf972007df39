// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_fault - a fail-nth sweep over the ULP's attach, send, release
 * and close, for a kernel with CONFIG_FAULT_INJECTION.
 *
 * For each operation and each N in 1..MAX_NTH, the N-th fault site the
 * operation reaches in this task fails (/proc/self/task/<tid>/fail-nth).
 * Whatever fails, the kernel must not crash or leak, the operation must
 * fail cleanly or succeed, and the socket must keep working: every byte
 * that send() accepted reaches the peer, in order. The sweep runs as root,
 * then as nobody, whose sockets also go through the per-user cap (an
 * allocation at attach).
 *
 * Prints TAP; exit 0 if every check held, 1 otherwise, 4 without
 * fail-nth.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <sys/wait.h>

#include "mbufmux_test_lib.h"

#define MAX_NTH		64
#define KSFT_SKIP	4

static int failnth_fd = -1;
static int failures;

static void fail_nth(int n)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%d", n);

	if (pwrite(failnth_fd, buf, len, 0) != len) {
		perror("fail-nth");
		exit(1);
	}
}

/* Did the fault fire? (fail-nth reads 0 once it has.) */
static int fault_fired(void)
{
	char buf[16] = "";

	if (pread(failnth_fd, buf, sizeof(buf) - 1, 0) < 0)
		return 0;
	fail_nth(0);
	return atoi(buf) == 0;
}

/* Read exactly @want bytes of the pattern starting at @from, or EOF. */
static int drain_check(int rx, size_t from, size_t want)
{
	char buf[4096];
	size_t got = 0;
	ssize_t n;

	while (got < want) {
		struct pollfd p = { .fd = rx, .events = POLLIN };

		if (poll(&p, 1, 10000) != 1)
			return -1;
		n = recv(rx, buf, sizeof(buf), 0);
		if (n <= 0)
			return -1;
		if (check(buf, n, 0, from + got) != -1)
			return -1;
		got += n;
	}
	return 0;
}

static void report(int ok, const char *op, int n, const char *what)
{
	if (!ok) {
		failures++;
		printf("# %s with fail-nth=%d: %s\n", op, n, what);
	}
}

/* One round: a fault during @op, then the socket must still carry data. */
static void round_once(const char *op, int n)
{
	char data[3000];
	size_t sent = 0;
	int tx, rx, attached, ok = 1;
	const char *why = NULL;
	ssize_t r;

	fill(data, sizeof(data), 0, 0);
	if (tcp_pair(&tx, &rx))
		die("a loopback connection");

	if (!strcmp(op, "attach"))
		fail_nth(n);
	attached = attach(tx) == 0;
	if (!strcmp(op, "attach")) {
		int err = errno, fired = fault_fired();

		if (!attached && (!fired || err != ENOMEM)) {
			ok = 0;
			why = "attach failed, not with ENOMEM from the fault";
		}
	} else if (!attached) {
		ok = 0;
		why = "attach failed without a fault";
	}

	/* send with MSG_MORE (staged), then without (pushed and released). */
	if (!strcmp(op, "send"))
		fail_nth(n);
	r = send(tx, data, 1000, MSG_MORE | MSG_DONTWAIT);
	if (!strcmp(op, "send"))
		fault_fired();
	if (r > 0)
		sent += r;
	if (!strcmp(op, "release"))
		fail_nth(n);
	r = send(tx, data + sent, sizeof(data) - sent, MSG_DONTWAIT);
	if (!strcmp(op, "release"))
		fault_fired();
	if (r > 0)
		sent += r;

	if (!strcmp(op, "close"))
		fail_nth(n);
	close(tx);
	if (!strcmp(op, "close"))
		fault_fired();

	/* What send() accepted arrives, in order, then EOF. */
	if (ok && drain_check(rx, 0, sent)) {
		ok = 0;
		why = "accepted bytes lost or reordered";
	}
	if (ok && recv(rx, data, 1, 0) != 0) {
		ok = 0;
		why = "no EOF after the data";
	}
	close(rx);
	report(ok, op, n, why);
}

static const char * const ops[] = { "attach", "send", "release", "close" };

/* This thread's fail-nth, opened while it may still be (root). */
static int open_fail_nth(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth",
		 (long)syscall(SYS_gettid));
	failnth_fd = open(path, O_RDWR);
	return failnth_fd;
}

static void sweep(unsigned int first, const char *who)
{
	unsigned int o;
	int n;

	for (o = 0; o < ARRAY_SIZE(ops); o++) {
		int before = failures;

		for (n = 1; n <= MAX_NTH; n++)
			round_once(ops[o], n);
		printf("%sok %u fail-nth 1..%d during %s, as %s\n",
		       failures == before ? "" : "not ", first + o, MAX_NTH,
		       ops[o], who);
		fflush(stdout);
	}
}

int main(void)
{
	int status;
	pid_t pid;

	if (open_fail_nth() < 0) {
		printf("1..0 # SKIP no fail-nth (CONFIG_FAULT_INJECTION)\n");
		return KSFT_SKIP;
	}

	printf("TAP version 13\n");
	printf("1..%zu\n", 2 * ARRAY_SIZE(ops));
	sweep(1, "root");
	fflush(stdout);

	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (!pid) {
		close(failnth_fd);
		if (open_fail_nth() < 0 || setgroups(0, NULL) ||
		    setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534)) {
			perror("nobody");
			_exit(1);
		}
		sweep(1 + ARRAY_SIZE(ops), "nobody");
		_exit(failures ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		failures++;
	return failures ? 1 : 0;
}
