// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of the "mbufmux" TCP upper-layer protocol
 * (mbufmux_tcp.ko), complementing mbufmux_tcp.c:
 *
 * - attach: the CVE-2023-0461 flow, bad ULP names and pointers, bad
 *   pointers at SOL_MBUFMUX and in send(), "tls" and "mbufmux" on one
 *   socket, non-TCP sockets;
 * - races, looped: two attaches, close against attach, close against the
 *   handoff's work, a release on one CPU against the waiter's close,
 *   poll/setsockopt/close on one file from several threads, attached
 *   sockets passed over SCM_RIGHTS by a process that exits;
 * - teardown: peer resets with bytes staged, 10,000 parked sockets closed
 *   at once, network namespaces going away, rmmod with orphaned sockets,
 *   load/unload cycles racing attaches;
 * - limits: limit and reserve changed under load, every parameter at its
 *   extremes, at run time and at load time;
 * - security: no stale bytes, the reserve out of unprivileged reach (a
 *   non-root user, and one in a user namespace), read-only debugfs, memory
 *   charged to the socket's cgroup;
 * - the per-user cap (user_limit): one user (nobody, and root of a user
 *   namespace mapped to it) cannot hold more than its cap nor starve
 *   another user, FIFO order within a user, wake-ups when the user's
 *   buffer comes back, teardown of sockets parked by the cap, changes at
 *   run time, bad values;
 * - a bounded random stress of many threads.
 *
 * Run as root with mbufmux.ko and mbufmux_tcp.ko loaded and debugfs
 * mounted; some tests unload mbufmux_tcp.ko and load it again from
 * $MBUFMUX_MODDIR (default /mbufmux, the test VM's) with the parameters it
 * had. Every test ends with the pool at rest: nothing in use, nobody
 * waiting, allocs == frees and waits == handoffs + cancels, no user's
 * share of the per-user cap left.
 *
 * Environment (the default, then the default on a debug kernel, one with
 * lockdep as make check-debug's, where everything runs 20 to 50 times
 * slower):
 *   MBUFMUX_RACE_ITERS   iterations of each race loop (2000; 300)
 *   MBUFMUX_RACE_SECS    time cap of each race loop, seconds (15; 45)
 *   MBUFMUX_PARKED       sockets parked at once in mass_close (10000; 2000)
 *   MBUFMUX_CYCLES       load/unload cycles in load_unload_race (50; 50)
 *   MBUFMUX_LOAD_SECS    length of params_under_load, seconds (5; 15)
 *   MBUFMUX_STRESS_SECS  length of random_stress, seconds (10; 60)
 *   MBUFMUX_SEED         seed of the random choices (logged by each test)
 *
 * Nothing asserts on elapsed time: timeouts are hang guards only.
 */
#define _GNU_SOURCE

#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>

#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "mbufmux_util.h"

#define NETNS_FILE	"/tmp/mbufmux-adv-netns"
#define CGROUP_MNT	"/tmp/mbufmux-adv-cgroup"

#define REST_MS		20000	/* for the pool to come back to rest */

#define NOBODY		65534
#define CHUNK		(64 << 10)

static long env_long(const char *name, long def)
{
	const char *s = getenv(name);

	return s && *s ? strtol(s, NULL, 0) : def;
}

/* A setting from the environment, with a default for debug kernels. */
static long knob(const char *name, long def, long debug_def)
{
	static int debug = -1;

	if (debug < 0)
		debug = !access("/proc/lockdep", F_OK);
	return env_long(name, debug ? debug_def : def);
}

/*
 * The pool at rest, its counters consistent over its whole life, and no
 * user's share of it left.
 */
static void expect_rest(struct __test_metadata *_metadata)
{
	struct pool_stats st;
	int ret;

	ret = wait_rest(&st, REST_MS);
	EXPECT_EQ(ret, 0)
		TH_LOG("pool not at rest: in_use %lld waiters %lld",
		       st.in_use, st.waiters);
	EXPECT_EQ(st.allocs, st.frees);
	EXPECT_EQ(st.waits, st.handoffs + st.cancels)
		TH_LOG("waits %lld handoffs %lld cancels %lld", st.waits,
		       st.handoffs, st.cancels);
	EXPECT_EQ(users_listed(), 0) TH_LOG("a user's share left behind");
}

/* Unloads mbufmux_tcp.ko, retrying while it is busy: 0 or -errno. */
static int module_unload(int ms)
{
	long long end = now_ms() + ms;

	for (;;) {
		if (!syscall(SYS_delete_module, "mbufmux_tcp", O_NONBLOCK))
			return 0;
		if ((errno != EWOULDBLOCK && errno != EBUSY) ||
		    now_ms() > end)
			return -errno;
		sleep_ms(1);
	}
}

/* The ULP's name (getsockopt TCP_ULP), "" if none or on error. */
static const char *ulp_of(int fd)
{
	static char name[32];
	socklen_t len = sizeof(name) - 1;

	memset(name, 0, sizeof(name));
	if (getsockopt(fd, IPPROTO_TCP, TCP_ULP, name, &len))
		return "";
	name[len] = '\0';
	return name;
}

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	return ti.tcpi_state;
}

/*
 * Receives until end of file: the bytes that came (the first @size of
 * them in @buf), -1 if no end of file came within @ms, -2 on a reset.
 */
static long recv_to_eof(int fd, void *buf, size_t size, int ms)
{
	long long end = now_ms() + ms;
	char tmp[CHUNK / 4];
	size_t got = 0;
	ssize_t n;

	for (;;) {
		if (!(poll_one(fd, POLLIN, 50) & (POLLIN | POLLHUP | POLLERR))) {
			if (now_ms() > end)
				return -1;
			continue;
		}
		n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0)
			return -2;
		if (!n)
			return got;
		if (got < size)
			memcpy((char *)buf + got, tmp,
			       got + n > size ? size - got : (size_t)n);
		got += n;
	}
}

/* Closes @n pairs: each connecting side, then its peer. */
static void close_pairs(const int *fds, const int *peers, long n)
{
	long i;

	for (i = 0; i < n; i++) {
		close(fds[i]);
		close(peers[i]);
	}
}

/* Reads whatever is there without waiting. */
static void drain(int fd)
{
	char tmp[4096];

	while (recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT) > 0)
		;
}

static void pin_cpu(int cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % n, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void spin(unsigned long n)
{
	while (n--)
		__asm__ __volatile__("" ::: "memory");
}

/*
 * Two pages, the second inaccessible: a user pointer that runs into a
 * fault after @valid bytes is guard_ptr(valid).
 */
static char *guard_page;

static char *guard_ptr(size_t valid)
{
	long pg = sysconf(_SC_PAGESIZE);

	if (!guard_page) {
		guard_page = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (guard_page == MAP_FAILED ||
		    mprotect(guard_page + pg, pg, PROT_NONE))
			abort();
	}
	return guard_page + pg - valid;
}

/*
 * In a child of the test's process: dies with it (after a failed ASSERT the
 * harness waits for no grandchild, and one left behind would keep the
 * runner's output pipe open), and closes the pipe ends of the parent's.
 */
static void child_setup(pid_t parent, int fd1, int fd2)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) || getppid() != parent)
		_exit(1);
	if (fd1 >= 0)
		close(fd1);
	if (fd2 >= 0)
		close(fd2);
}

static int raise_nofile(rlim_t want)
{
	struct rlimit rl = { .rlim_cur = want, .rlim_max = want };

	return setrlimit(RLIMIT_NOFILE, &rl);
}

/* Runs a command, output discarded: its exit code, or -1. */
static int run_cmd(char *const argv[])
{
	int status, fd;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Brings the loopback device of this network namespace up. */
static int lo_up(void)
{
	struct ifreq ifr = {};
	int fd, ret;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	ret = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (!ret) {
		ifr.ifr_flags |= IFF_UP;
		ret = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return ret;
}

/*
 * The parameters as the program found them: the fixture restores them, and
 * loads the module with them again if a test left it unloaded.
 */
static struct tcp_params initial;

static void __attribute__((constructor)) save_initial_params(void)
{
	params_read(&initial);
}

static int module_restore(void)
{
	return module_load_params(&initial);
}

#define FAMILIES	2	/* the fixture's listeners: IPv4, IPv6 */

FIXTURE(adv)
{
	pid_t pid;			/* the test's process */
	struct lsn lsn[FAMILIES];	/* loopback listeners */
	struct lsn small;		/* one with a small receive buffer */
	bool saved;			/* the parameters are saved */
	long buf_size;
};

FIXTURE_SETUP(adv)
{
	int rcvbuf = 2048;
	struct pool_stats st;

	self->saved = false;
	self->pid = getpid();
	ASSERT_GT(initial.limit, 0)
		TH_LOG("mbufmux_tcp.ko was not loaded when the program started");
	ASSERT_GE(initial.reserve, 0);
	ASSERT_GE(initial.user_limit, 0);
	if (!module_loaded("mbufmux_tcp")) {
		ASSERT_EQ(module_restore(), 0)
			TH_LOG("mbufmux_tcp.ko left unloaded by an earlier test");
		TH_LOG("mbufmux_tcp.ko was left unloaded: loaded it again");
	}
	self->buf_size = initial.buf_size;
	ASSERT_EQ(param_get("buf_size"), self->buf_size);
	ASSERT_EQ(params_write(&initial), 0);
	self->saved = true;
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("pool not at rest: in_use %lld waiters %lld",
		       st.in_use, st.waiters);

	ASSERT_EQ(lsn_open(&self->lsn[0], AF_INET, false), 0);
	ASSERT_EQ(lsn_open(&self->lsn[1], AF_INET6, false), 0)
		TH_LOG("no IPv6 listener: the kernel must have IPv6");
	ASSERT_EQ(lsn_open(&self->small, AF_INET, false), 0);
	ASSERT_EQ(setsockopt(self->small.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			     sizeof(rcvbuf)), 0);
}

/*
 * Runs in the parent of the test's process, once that process, its
 * children and the sockets they had are gone. After a failed ASSERT, the
 * 6.12 harness built -O2 may run it in the test's own process instead (the
 * wrapper's fork() result does not survive its longjmp()), its children
 * still alive: the test has failed already, and the next setup restores
 * the parameters and waits for the pool, so nothing is checked then.
 */
FIXTURE_TEARDOWN_PARENT(adv)
{
	if (getpid() == self->pid)
		return;
	umount2(NETNS_FILE, MNT_DETACH);
	unlink(NETNS_FILE);
	if (!self->saved)
		return;
	if (!module_loaded("mbufmux_tcp")) {
		EXPECT_EQ(module_restore(), 0);
		EXPECT_TRUE(false) TH_LOG("the test left mbufmux_tcp unloaded");
	}
	EXPECT_EQ(params_write(&initial), 0);
	expect_rest(_metadata);
	EXPECT_EQ(param_get("buf_size"), self->buf_size);
}

/* A pair on listener @f (0: IPv4, 1: IPv6) of the fixture. */
static int new_pair(struct __test_metadata *_metadata,
		    struct _test_data_adv *self, int f, bool attach_it,
		    int *peer)
{
	int fd;

	fd = lsn_pair(&self->lsn[f % FAMILIES], peer);
	ASSERT_GE(fd, 0) TH_LOG("pair: %s", strerror(errno));
	if (attach_it)
		ASSERT_EQ(attach(fd), 0) TH_LOG("attach: %s", strerror(errno));
	return fd;
}

/* Sets the pool's limits and the per-user cap. */
static void caps_set(struct __test_metadata *_metadata, long limit,
		     long reserve, long user_limit)
{
	ASSERT_EQ(limits_set(limit, reserve), 0);
	ASSERT_EQ(param_set("user_limit", user_limit), 0);
}

/* ---- attach ---- */

/*
 * CVE-2023-0461: a ULP without clone() that reaches LISTEN shares its
 * context with every child. The exploit's flow (attach, connect(AF_UNSPEC),
 * listen, accept, close the child, use the parent) must be refused at some
 * step, here at the first: disconnecting. Whatever is refused, the socket
 * stays as it was and keeps working. After a reset (TCP_CLOSE) there is no
 * way back either; a socket that disconnected before attaching is refused
 * the ULP. If a step is wrongly allowed, the flow goes on as the exploit
 * would, so that a use-after-free shows in the kernel log.
 */
TEST_F_TIMEOUT(adv, cve_2023_0461, 120)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	struct sockaddr_storage ss;
	struct mbufmux_info info;
	int f, fd, peer, c, cl, r;
	socklen_t len;
	char buf[16];

	for (f = 0; f < FAMILIES; f++) {
		fd = new_pair(_metadata, self, f, true, &peer);
		ASSERT_EQ(send(fd, "abc", 3, MSG_MORE), 3);

		EXPECT_EQ(connect(fd, &unspec, sizeof(unspec)), -1);
		EXPECT_EQ(errno, EOPNOTSUPP);
		r = listen(fd, 8);
		EXPECT_EQ(r, -1);
		EXPECT_EQ(errno, EINVAL);
		if (!r) {
			/* The exploit's next steps: a child, closed. */
			len = sizeof(ss);
			getsockname(fd, (struct sockaddr *)&ss, &len);
			cl = socket(ss.ss_family, SOCK_STREAM, 0);
			connect(cl, (struct sockaddr *)&ss, len);
			c = accept(fd, NULL, NULL);
			close(c);
			close(cl);
		}
		c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		EXPECT_EQ(c, -1);
		EXPECT_EQ(errno, EINVAL);
		if (c >= 0)
			close(c);

		/* The parent is intact: established, attached, staging. */
		EXPECT_EQ(tcp_state(fd), TCP_ESTABLISHED);
		EXPECT_STREQ(ulp_of(fd), ULP_NAME);
		ASSERT_EQ(info_get(fd, &info), 0);
		EXPECT_EQ(info.staged, 3U);
		ASSERT_EQ(send(fd, "de", 2, 0), 2);
		ASSERT_EQ(recv(peer, buf, 5, MSG_WAITALL), 5);
		EXPECT_EQ(memcmp(buf, "abcde", 5), 0);
		ASSERT_EQ(send(peer, "ok", 2, 0), 2);
		ASSERT_EQ(recv(fd, buf, 2, MSG_WAITALL), 2);

		/* Reset by the peer: TCP_CLOSE, still no way back. */
		ASSERT_EQ(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		close(peer);
		EXPECT_TRUE(poll_one(fd, POLLIN, WAKE_MS) &
			    (POLLERR | POLLHUP));
		EXPECT_EQ(tcp_state(fd), TCP_CLOSE);
		EXPECT_EQ(connect(fd, &unspec, sizeof(unspec)), -1);
		EXPECT_EQ(listen(fd, 8), -1);
		EXPECT_EQ(connect(fd, (struct sockaddr *)&self->lsn[f].addr,
				  self->lsn[f].len), -1);
		EXPECT_EQ(attach(fd), -1);
		EXPECT_EQ(errno, EEXIST);
		close(fd);

		/* Disconnected first: the ULP is refused; TCP goes on. */
		fd = new_pair(_metadata, self, f, false, &peer);
		ASSERT_EQ(connect(fd, &unspec, sizeof(unspec)), 0);
		EXPECT_EQ(attach(fd), -1);
		EXPECT_EQ(errno, ENOTCONN);
		ASSERT_EQ(listen(fd, 8), 0);
		EXPECT_EQ(attach(fd), -1);
		EXPECT_EQ(errno, ENOTCONN);
		len = sizeof(ss);
		ASSERT_EQ(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
		cl = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_EQ(connect(cl, (struct sockaddr *)&ss, len), 0);
		c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_GE(c, 0);
		EXPECT_STREQ(ulp_of(c), "");
		EXPECT_STREQ(ulp_of(fd), "");
		close(c);
		close(cl);
		close(fd);
		close(peer);
	}
}

/*
 * TCP_ULP names and pointers: optlen 0, NULL and wild pointers, a name
 * that runs into an unmapped page, a prefix, an over-long and an upper-case
 * name are refused and leave the socket without a ULP; then the name as
 * the kernel reads it (at most 15 bytes, up to a NUL) attaches: without
 * its NUL, followed by junk after the NUL, and with its NUL as the last
 * mapped byte.
 */
TEST_F_TIMEOUT(adv, ulp_names, 120)
{
	static const char junk[] = "mbufmux\0junk-junk-junk";
	int f, fd, fd2, fd3, peer, peer2, peer3;
	char *p;

	for (f = 0; f < FAMILIES; f++) {
		fd = new_pair(_metadata, self, f, false, &peer);

		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, ULP_NAME, 0),
			  -1);
		EXPECT_EQ(errno, EINVAL);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, NULL, 8), -1);
		EXPECT_EQ(errno, EFAULT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, (void *)8, 8),
			  -1);
		EXPECT_EQ(errno, EFAULT);
		p = guard_ptr(4);
		memcpy(p, "mbuf", 4);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, p, 8), -1);
		EXPECT_EQ(errno, EFAULT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "mbufmu", 6),
			  -1);
		EXPECT_EQ(errno, ENOENT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP,
				     "mbufmuxmbufmuxmbufmux", 22), -1);
		EXPECT_EQ(errno, ENOENT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "MBUFMUX", 8),
			  -1);
		EXPECT_EQ(errno, ENOENT);
		EXPECT_STREQ(ulp_of(fd), "");
		EXPECT_EQ(info_flags(fd), ~0U);

		/* Its NUL the last byte before the unmapped page. */
		p = guard_ptr(sizeof(ULP_NAME));
		memcpy(p, ULP_NAME, sizeof(ULP_NAME));
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, p, 64), 0)
			TH_LOG("%s", strerror(errno));
		EXPECT_STREQ(ulp_of(fd), ULP_NAME);

		fd2 = new_pair(_metadata, self, f, false, &peer2);
		EXPECT_EQ(setsockopt(fd2, IPPROTO_TCP, TCP_ULP, ULP_NAME,
				     strlen(ULP_NAME)), 0);
		fd3 = new_pair(_metadata, self, f, false, &peer3);
		EXPECT_EQ(setsockopt(fd3, IPPROTO_TCP, TCP_ULP, junk,
				     sizeof(junk)), 0);

		/* All three work. */
		EXPECT_EQ(send(fd, "1", 1, 0), 1);
		EXPECT_EQ(send(fd2, "2", 1, MSG_MORE), 1);
		EXPECT_EQ(info_flags(fd2), MBUFMUX_F_HOLDS_BUF);
		EXPECT_EQ(send(fd3, "3", 1, 0), 1);
		close(fd);
		close(fd2);
		close(fd3);
		EXPECT_EQ(recv_to_eof(peer, NULL, 0, WAKE_MS), 1);
		EXPECT_EQ(recv_to_eof(peer2, NULL, 0, WAKE_MS), 1);
		EXPECT_EQ(recv_to_eof(peer3, NULL, 0, WAKE_MS), 1);
		close(peer);
		close(peer2);
		close(peer3);
	}
}

/*
 * Bad pointers and lengths where the ULP itself copies: MBUFMUX_INFO and
 * MBUFMUX_BLOCK with NULL, a pointer into an unmapped page, a negative
 * length; send() from NULL and from a buffer that runs into an unmapped
 * page (the part before the fault is sent, and only that). Every call
 * fails cleanly (EFAULT, EINVAL) or does what it can; the socket lock is
 * not left held, the staged bytes are not lost, the buffer goes back.
 */
TEST_F_TIMEOUT(adv, bad_pointers, 120)
{
	struct mbufmux_info info;
	char buf[64], *p;
	int fd, peer, val;
	socklen_t len;
	ssize_t n;

	fd = new_pair(_metadata, self, 0, true, &peer);
	ASSERT_EQ(send(fd, "st", 2, MSG_MORE), 2);

	len = sizeof(info);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, NULL, &len), -1);
	EXPECT_EQ(errno, EFAULT);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, NULL), -1);
	EXPECT_EQ(errno, EFAULT);
	len = -1;
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len), -1);
	EXPECT_EQ(errno, EINVAL);
	len = 0;
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len), 0);
	EXPECT_EQ(len, 0U);
	p = guard_ptr(8);
	len = sizeof(info);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, p, &len), -1);
	EXPECT_EQ(errno, EFAULT);
	len = sizeof(int);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, NULL, &len), -1);
	EXPECT_EQ(errno, EFAULT);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, guard_ptr(2),
			     &len), -1);
	EXPECT_EQ(errno, EFAULT);

	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, NULL,
			     sizeof(int)), -1);
	EXPECT_EQ(errno, EFAULT);
	p = guard_ptr(2);
	memset(p, 0, 2);
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, p, sizeof(int)),
		  -1);
	EXPECT_EQ(errno, EFAULT);
	val = MBUFMUX_BLOCK_SEND;
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, 1 << 20),
		  0);
	val = -1;
	len = sizeof(val);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, &len), 0);
	EXPECT_EQ(val, MBUFMUX_BLOCK_SEND);

	/* The lock was released on every path: the socket still works. */
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.staged, 2U);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);

	/* send() from NULL: EFAULT, and the staged bytes go out. */
	EXPECT_EQ(send(fd, NULL, 10, MSG_MORE), -1);
	EXPECT_EQ(errno, EFAULT);
	ASSERT_EQ(recv(peer, buf, 2, MSG_WAITALL), 2);
	EXPECT_EQ(memcmp(buf, "st", 2), 0);
	EXPECT_EQ(info_flags(fd), 0U);

	/*
	 * Eight readable bytes, then a fault. Nothing is staged, so they go
	 * straight to TCP, which copies a segment's worth or nothing: EFAULT,
	 * as on plain TCP. Staged behind other bytes, what was copied would be
	 * sent. Either way no byte arrives that send() did not count.
	 */
	p = guard_ptr(8);
	memcpy(p, "eight-ok", 8);
	n = send(fd, p, 100, 0);
	EXPECT_TRUE((n == -1 && errno == EFAULT) || (n > 0 && n <= 8))
		TH_LOG("%zd: %s", n, strerror(errno));
	if (n > 0) {
		ASSERT_EQ(recv(peer, buf, n, MSG_WAITALL), n);
		EXPECT_EQ(memcmp(buf, "eight-ok", n), 0);
	}
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);
	EXPECT_EQ(info_flags(fd), 0U);
	close(fd);
	EXPECT_EQ(recv_to_eof(peer, NULL, 0, WAKE_MS), 0);
	close(peer);
}

/*
 * One ULP per socket: "tls" on an attached socket, and "mbufmux" on a kTLS
 * socket, fail with EEXIST; each socket keeps its own ULP and works. Needs
 * tls.ko (the test VM has it).
 */
TEST_F_TIMEOUT(adv, tls_exclusive, 120)
{
	char *const modprobe[] = { "modprobe", "tls", NULL };
	struct mbufmux_info info;
	int f, fd, peer, t, tpeer;
	char buf[4];

	ASSERT_EQ(run_cmd(modprobe), 0) TH_LOG("modprobe tls failed");
	for (f = 0; f < FAMILIES; f++) {
		t = new_pair(_metadata, self, f, false, &tpeer);
		ASSERT_EQ(setsockopt(t, IPPROTO_TCP, TCP_ULP, "tls", 4), 0)
			TH_LOG("ULP tls: %s", strerror(errno));
		EXPECT_EQ(attach(t), -1);
		EXPECT_EQ(errno, EEXIST);
		EXPECT_STREQ(ulp_of(t), "tls");
		EXPECT_EQ(info_get(t, &info), -1);
		ASSERT_EQ(send(t, "tls", 3, 0), 3);
		ASSERT_EQ(recv(tpeer, buf, 3, MSG_WAITALL), 3);

		fd = new_pair(_metadata, self, f, true, &peer);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 4), -1);
		EXPECT_EQ(errno, EEXIST);
		EXPECT_STREQ(ulp_of(fd), ULP_NAME);
		ASSERT_EQ(send(fd, "m", 1, MSG_MORE), 1);
		ASSERT_EQ(info_get(fd, &info), 0);
		EXPECT_EQ(info.staged, 1U);
		ASSERT_EQ(send(fd, "ux", 2, 0), 2);
		ASSERT_EQ(recv(peer, buf, 3, MSG_WAITALL), 3);
		EXPECT_EQ(memcmp(buf, "mux", 3), 0);
		close(fd);
		close(peer);
		close(t);
		close(tpeer);
	}
}

/*
 * Sockets that are not TCP cannot take a TCP ULP: AF_UNIX (stream, dgram,
 * a listener) and a raw IPPROTO_TCP socket; they keep working.
 */
TEST_F_TIMEOUT(adv, not_tcp_refused, 120)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM,
				     SOCK_SEQPACKET };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sv[2], l, raw;
	char c;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(types); i++) {
		ASSERT_EQ(socketpair(AF_UNIX, types[i] | SOCK_CLOEXEC, 0, sv),
			  0);
		EXPECT_EQ(attach(sv[0]), -1);
		EXPECT_TRUE(errno == EOPNOTSUPP || errno == ENOPROTOOPT)
			TH_LOG("type %d: errno %d", types[i], errno);
		ASSERT_EQ(send(sv[0], "u", 1, 0), 1);
		ASSERT_EQ(recv(sv[1], &c, 1, 0), 1);
		close(sv[0]);
		close(sv[1]);
	}

	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(l, 0);
	/* An abstract address: nothing left in the file system. */
	snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "mbufmux-%d",
		 getpid());
	ASSERT_EQ(bind(l, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ASSERT_EQ(listen(l, 1), 0);
	EXPECT_EQ(attach(l), -1);
	close(l);

	raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
	ASSERT_GE(raw, 0);
	EXPECT_EQ(attach(raw), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);
	close(raw);
}

/* ---- races ---- */

#define RACE_MAX	4

struct race;

struct race_arg {
	struct race *r;
	int who;
};

/*
 * Worker threads that run one step each per iteration, released together
 * by a barrier after a random spin of up to @jitter, pinned to alternate
 * CPUs; the main thread sets the iteration up, may act itself, and checks.
 */
struct race {
	pthread_barrier_t go;
	pthread_barrier_t end;
	pthread_t thr[RACE_MAX];
	struct race_arg arg[RACE_MAX];
	int nthr;
	void (*op)(struct race *r, int who);
	bool stop;
	unsigned long jitter;
	uint64_t seed[RACE_MAX + 1];
	int fd[16];
	int nfd;
	long ret[RACE_MAX];
	int err[RACE_MAX];
	int closed;
	long count[RACE_MAX];
	pthread_mutex_t lock;
	int nbad;
	char bad[160];
};

static void race_bad(struct race *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->nbad++) {
		va_start(ap, fmt);
		vsnprintf(r->bad, sizeof(r->bad), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
}

static void *race_thread(void *arg)
{
	struct race_arg *a = arg;
	struct race *r = a->r;

	pin_cpu(a->who);
	for (;;) {
		pthread_barrier_wait(&r->go);
		if (__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
			break;
		spin(rnd(&r->seed[a->who]) % (r->jitter + 1));
		r->op(r, a->who);
		pthread_barrier_wait(&r->end);
	}
	return NULL;
}

static int race_start(struct race *r, int nthr,
		      void (*op)(struct race *r, int who),
		      unsigned long jitter, uint64_t seed)
{
	int i;

	/* Pinned to alternate CPUs, the threads race for real. */
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		fprintf(stderr, "# the races need two CPUs (the test VM has two)\n");
		return -1;
	}
	memset(r, 0, sizeof(*r));
	r->nthr = nthr;
	r->op = op;
	r->jitter = jitter;
	for (i = 0; i <= RACE_MAX; i++)
		r->seed[i] = seed + 0x9e3779b97f4a7c15ULL * (i + 1);
	pthread_mutex_init(&r->lock, NULL);
	pthread_barrier_init(&r->go, NULL, nthr + 1);
	pthread_barrier_init(&r->end, NULL, nthr + 1);
	for (i = 0; i < nthr; i++) {
		r->arg[i].r = r;
		r->arg[i].who = i;
		if (pthread_create(&r->thr[i], NULL, race_thread, &r->arg[i]))
			return -1;
	}
	return 0;
}

/* One iteration; @main_op, if any, runs in the main thread meanwhile. */
static void race_once(struct race *r, void (*main_op)(struct race *r))
{
	pthread_barrier_wait(&r->go);
	if (main_op) {
		spin(rnd(&r->seed[RACE_MAX]) % (r->jitter + 1));
		main_op(r);
	}
	pthread_barrier_wait(&r->end);
}

static void race_stop(struct race *r)
{
	int i;

	__atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
	pthread_barrier_wait(&r->go);
	for (i = 0; i < r->nthr; i++)
		pthread_join(r->thr[i], NULL);
	pthread_barrier_destroy(&r->go);
	pthread_barrier_destroy(&r->end);
}

static int race_iters(void)
{
	return knob("MBUFMUX_RACE_ITERS", 2000, 300);
}

static long long race_deadline(void)
{
	return now_ms() + knob("MBUFMUX_RACE_SECS", 15, 45) * 1000;
}

/* A race loop must have run often enough to mean something. */
static void race_done(struct __test_metadata *_metadata, int i, int iters)
{
	TH_LOG("%d of %d iterations", i, iters);
	ASSERT_GE(i, iters < 100 ? iters : 100)
		TH_LOG("too few iterations within MBUFMUX_RACE_SECS");
}

static void op_attach(struct race *r, int who)
{
	r->ret[who] = attach(r->fd[0]);
	r->err[who] = errno;
}

/*
 * Two threads attach one socket at once, on two CPUs: exactly one
 * succeeds, the other gets EEXIST, and the socket works.
 */
TEST_F_TIMEOUT(adv, race_attach_twice, 300)
{
	int i, iters = race_iters(), peer, ok;
	long long end = race_deadline();
	struct race r;
	char c;

	ASSERT_EQ(race_start(&r, 2, op_attach, 2000, test_seed(_metadata)),
		  0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		r.fd[0] = new_pair(_metadata, self, i, false, &peer);
		race_once(&r, NULL);
		ok = !r.ret[0] + !r.ret[1];
		ASSERT_EQ(ok, 1) TH_LOG("iteration %d: %ld/%d %ld/%d", i,
					r.ret[0], r.err[0], r.ret[1],
					r.err[1]);
		ASSERT_EQ(r.err[r.ret[0] ? 0 : 1], EEXIST);
		ASSERT_EQ(send(r.fd[0], "a", 1, 0), 1);
		ASSERT_EQ(recv(peer, &c, 1, MSG_WAITALL), 1);
		close(r.fd[0]);
		close(peer);
	}
	race_stop(&r);
	race_done(_metadata, i, iters);
}

static void op_close_attach(struct race *r, int who)
{
	if (who) {
		r->ret[1] = close(r->fd[0]);
		return;
	}
	r->ret[0] = attach(r->fd[0]);
	r->err[0] = errno;
	r->ret[2] = -2;
	if (!r->ret[0]) {
		r->ret[2] = send(r->fd[0], "s", 1,
				 MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
		r->err[2] = errno;
	}
}

/*
 * close() racing setsockopt(TCP_ULP) and a MSG_MORE send on the same file:
 * the attach succeeds or finds the descriptor gone (EBADF), and so does
 * the send; a byte that send() accepted reaches the peer before the end
 * of file, whichever thread's call released the socket.
 */
TEST_F_TIMEOUT(adv, race_close_attach, 300)
{
	int i, iters = race_iters(), peer;
	long long end = race_deadline();
	long attached = 0, sent = 0, got;
	struct race r;
	char c;

	ASSERT_EQ(race_start(&r, 2, op_close_attach, 20000,
			     test_seed(_metadata)), 0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		r.fd[0] = new_pair(_metadata, self, i, false, &peer);
		race_once(&r, NULL);
		ASSERT_EQ(r.ret[1], 0);
		ASSERT_TRUE(!r.ret[0] || r.err[0] == EBADF)
			TH_LOG("attach: %s", strerror(r.err[0]));
		ASSERT_TRUE(r.ret[2] != -1 || r.err[2] == EBADF)
			TH_LOG("send: %s", strerror(r.err[2]));
		attached += !r.ret[0];
		sent += r.ret[2] == 1;
		got = recv_to_eof(peer, &c, 1, WAKE_MS);
		ASSERT_EQ(got, r.ret[2] == 1 ? 1 : 0)
			TH_LOG("iteration %d: sent %ld, peer got %ld", i,
			       r.ret[2], got);
		close(peer);
	}
	race_stop(&r);
	TH_LOG("attached before the close %ld times, sent %ld", attached,
	       sent);
	race_done(_metadata, i, iters);
}

#define VICTIMS	4

static void op_release_close(struct race *r, int who)
{
	int order[VICTIMS], i, j, t;

	if (!who) {
		/* fd[0]: the holder; ret[0]: how it lets go. */
		switch (r->ret[0]) {
		case 0:
			r->ret[1] = send(r->fd[0], "r", 1, MSG_DONTWAIT);
			break;
		case 1:
			r->ret[1] = shutdown(r->fd[0], SHUT_WR);
			break;
		default:
			r->ret[1] = close(r->fd[0]);
			break;
		}
		r->err[1] = errno;
		return;
	}
	/* The parked sockets, closed in a random order. */
	for (i = 0; i < VICTIMS; i++)
		order[i] = i;
	for (i = VICTIMS - 1; i > 0; i--) {
		j = rnd(&r->seed[who]) % (i + 1);
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (i = 0; i < VICTIMS; i++) {
		spin(rnd(&r->seed[who]) % 2000);
		close(r->fd[1 + order[i]]);
	}
}

/*
 * Close while the wake-up work is queued or running: a holder lets its
 * buffer go (a send, shutdown(SHUT_WR) or close, each handing the buffer
 * to the head of the queue and queueing its work) while the parked
 * sockets are closed, in a random order, on the other CPU. Every handed
 * buffer comes back, every wait ends in a handoff or a cancel, and the
 * holder's bytes arrive.
 */
TEST_F_TIMEOUT(adv, race_close_handoff, 300)
{
	int i, k, iters = race_iters(), hp, vp[VICTIMS];
	long long end = race_deadline();
	struct pool_stats st0, st;
	long got, how[3] = {};
	struct race r;
	char buf[4];

	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(stats_read(&st0), 0);
	ASSERT_EQ(race_start(&r, 2, op_release_close, 20000,
			     test_seed(_metadata)), 0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		r.fd[0] = new_pair(_metadata, self, i, true, &hp);
		ASSERT_TRUE(hold(r.fd[0]));
		for (k = 0; k < VICTIMS; k++) {
			r.fd[1 + k] = new_pair(_metadata, self, i + k, true,
					       &vp[k]);
			ASSERT_TRUE(park(r.fd[1 + k])) TH_LOG("victim %d", k);
		}
		r.ret[0] = rnd(&r.seed[RACE_MAX]) % 3;
		how[r.ret[0]]++;
		race_once(&r, NULL);
		ASSERT_EQ(r.ret[1], r.ret[0] ? 0 : 1)
			TH_LOG("release %ld: %s", r.ret[0],
			       strerror(r.err[1]));
		if (r.ret[0] != 2)
			close(r.fd[0]);
		got = recv_to_eof(hp, buf, sizeof(buf), WAKE_MS);
		ASSERT_EQ(got, r.ret[0] ? 1 : 2);
		EXPECT_EQ(memcmp(buf, "hr", got), 0);
		close(hp);
		for (k = 0; k < VICTIMS; k++) {
			ASSERT_EQ(recv_to_eof(vp[k], NULL, 0, WAKE_MS), 0);
			close(vp[k]);
		}
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS))
			TH_LOG("iteration %d: pool not at rest", i);
	}
	race_stop(&r);
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.waits - st0.waits, (long long)i * VICTIMS);
	EXPECT_EQ(st.waits - st0.waits, st.handoffs - st0.handoffs +
		  st.cancels - st0.cancels);
	TH_LOG("released by send %ld, shutdown %ld, close %ld; %lld handoffs, %lld cancels",
	       how[0], how[1], how[2], st.handoffs - st0.handoffs,
	       st.cancels - st0.cancels);
	race_done(_metadata, i, iters);
}

static void op_release_vs_waiter(struct race *r, int who)
{
	if (!who) {
		/* The waiter, on one CPU: sleeps parked, then closes. */
		r->ret[0] = send(r->fd[1], "w", 1, MSG_NOSIGNAL);
		r->err[0] = errno;
		r->ret[2] = close(r->fd[1]);
		return;
	}
	/* The holder, on the other: lets its buffer go, at a random time. */
	usleep(r->ret[3]);
	r->ret[1] = send(r->fd[0], "r", 1, MSG_DONTWAIT);
	r->err[1] = errno;
}

/*
 * A release on one CPU while the waiter closes on the other: the waiter
 * sleeps in a blocking send() on a dry pool with a short SO_SNDTIMEO,
 * then closes at once, whether it was handed the buffer or timed out;
 * the holder lets the buffer go at a random time around that timeout, so
 * the handoff and its work meet the close and the cancel. A byte that
 * send() accepted arrives; the holder gets its buffer back in the next
 * iteration.
 */
TEST_F_TIMEOUT(adv, race_release_vs_waiter, 300)
{
	int i, iters = race_iters(), hp, vp;
	long long end = race_deadline();
	long handed = 0, timedout = 0;
	struct timeval tv;
	struct race r;
	char buf[4];

	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(race_start(&r, 2, op_release_vs_waiter, 2000,
			     test_seed(_metadata)), 0);
	r.fd[0] = new_pair(_metadata, self, 0, true, &hp);
	for (i = 0; i < iters && now_ms() < end; i++) {
		ASSERT_TRUE(hold(r.fd[0])) TH_LOG("iteration %d", i);
		r.fd[1] = new_pair(_metadata, self, i, true, &vp);
		tv.tv_sec = 0;
		tv.tv_usec = 100 + rnd(&r.seed[RACE_MAX]) % 2000;
		r.ret[3] = rnd(&r.seed[RACE_MAX]) % (2 * tv.tv_usec);
		ASSERT_EQ(setsockopt(r.fd[1], SOL_SOCKET, SO_SNDTIMEO, &tv,
				     sizeof(tv)), 0);
		race_once(&r, NULL);
		ASSERT_EQ(r.ret[1], 1) TH_LOG("%s", strerror(r.err[1]));
		ASSERT_EQ(r.ret[2], 0);
		ASSERT_TRUE(r.ret[0] == 1 || r.err[0] == EAGAIN)
			TH_LOG("waiter: %ld %s", r.ret[0], strerror(r.err[0]));
		handed += r.ret[0] == 1;
		timedout += r.ret[0] != 1;
		ASSERT_EQ(recv_to_eof(vp, buf, 1, WAKE_MS), r.ret[0] == 1);
		close(vp);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS))
			TH_LOG("iteration %d: pool not at rest", i);
		if (!(i % 256))
			drain(hp);
	}
	race_stop(&r);
	close(r.fd[0]);
	close(hp);
	TH_LOG("the waiter was served %ld times, timed out %ld times",
	       handed, timedout);
	race_done(_metadata, i, iters);
}

static void op_fd_threads(struct race *r, int who)
{
	struct mbufmux_info info;
	struct epoll_event ev;
	int v = r->fd[1], val;
	socklen_t len;
	long n = 0;
	short re;

	switch (who) {
	case 0:
		/* poll() and epoll_wait() until the file is gone. */
		while (!__atomic_load_n(&r->closed, __ATOMIC_ACQUIRE)) {
			re = poll_one(v, POLLIN | POLLOUT, !(n % 8));
			if (re & POLLNVAL)
				break;
			if (re & POLLERR)
				race_bad(r, "poll: POLLERR %#x", re);
			epoll_wait(r->fd[2], &ev, 1, !(n % 8));
			n++;
		}
		break;
	case 1:
		/* MBUFMUX_BLOCK set and read back, MBUFMUX_INFO. */
		while (!__atomic_load_n(&r->closed, __ATOMIC_ACQUIRE)) {
			val = n & 1;
			if (setsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
				       sizeof(val))) {
				if (errno != EBADF)
					race_bad(r, "set BLOCK: %s",
						 strerror(errno));
				break;
			}
			len = sizeof(val);
			val = -1;
			if (getsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
				       &len)) {
				if (errno != EBADF)
					race_bad(r, "get BLOCK: %s",
						 strerror(errno));
				break;
			}
			if (val != (n & 1))
				race_bad(r, "BLOCK %d read back as %d",
					 (int)(n & 1), val);
			if (info_get(v, &info)) {
				if (errno != EBADF)
					race_bad(r, "INFO: %s",
						 strerror(errno));
				break;
			}
			if ((info.flags & MBUFMUX_F_HOLDS_BUF) &&
			    (info.flags & MBUFMUX_F_PARKED))
				race_bad(r, "INFO: parked and holding");
			n++;
		}
		break;
	default:
		/* The holder lets go: its buffer is handed to v. */
		if (send(r->fd[0], "r", 1, MSG_DONTWAIT) != 1)
			race_bad(r, "release: %s", strerror(errno));
		n = 1;
		break;
	}
	r->count[who] += n;
}

static void main_close(struct race *r)
{
	close(r->fd[1]);
	__atomic_store_n(&r->closed, 1, __ATOMIC_RELEASE);
}

/*
 * poll/epoll, setsockopt/getsockopt and close on one parked socket from
 * several threads, while its buffer is handed to it: the sockets options
 * stay coherent (the mode reads back as set, never parked and holding at
 * once), poll shows no error, and the close, whichever thread's call ends
 * up releasing the file, leaves the pool with only the holder's buffer.
 */
TEST_F_TIMEOUT(adv, race_fd_threads, 300)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
	int i, iters = race_iters(), hp, vp;
	long long end = race_deadline();
	struct race r;

	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(race_start(&r, 3, op_fd_threads, 50000,
			     test_seed(_metadata)), 0);
	r.fd[0] = new_pair(_metadata, self, 0, true, &hp);
	r.fd[2] = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(r.fd[2], 0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		ASSERT_TRUE(hold(r.fd[0])) TH_LOG("iteration %d", i);
		r.fd[1] = new_pair(_metadata, self, i, true, &vp);
		ASSERT_TRUE(park(r.fd[1]));
		ev.data.fd = r.fd[1];
		ASSERT_EQ(epoll_ctl(r.fd[2], EPOLL_CTL_ADD, r.fd[1], &ev), 0);
		r.closed = 0;
		race_once(&r, main_close);
		ASSERT_EQ(r.nbad, 0) TH_LOG("iteration %d: %s", i, r.bad);
		ASSERT_EQ(recv_to_eof(vp, NULL, 0, WAKE_MS), 0);
		close(vp);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS))
			TH_LOG("iteration %d: pool not at rest", i);
		if (!(i % 256))
			drain(hp);
	}
	race_stop(&r);
	close(r.fd[0]);
	close(r.fd[2]);
	close(hp);
	TH_LOG("%ld polls, %ld option rounds", r.count[0], r.count[1]);
	race_done(_metadata, i, iters);
}

#define FDS_MAX	2

/* Sends @n (at most FDS_MAX) descriptors over the AF_UNIX socket @u. */
static int send_fds(int u, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(FDS_MAX * sizeof(int))] = {};
	struct iovec iov = { .iov_base = "F", .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = CMSG_SPACE(n * sizeof(int)),
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	if (n > FDS_MAX)
		return -1;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	return sendmsg(u, &msg, 0) == 1 ? 0 : -1;
}

/* Receives the @n descriptors of one send_fds(): 0 or -1. */
static int recv_fds(int u, int *fds, int n)
{
	char cbuf[CMSG_SPACE(FDS_MAX * sizeof(int))], c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;

	if (n > FDS_MAX || recvmsg(u, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(n * sizeof(int)))
		return -1;
	memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
	return 0;
}

enum scm_end { SCM_RECEIVED, SCM_PURGED, SCM_GC, SCM_ENDS };

/*
 * The sender: connects, attaches, stages @staged bytes (or parks if the
 * pool is dry), passes the socket over @u, exits. SCM_GC: passes it in a
 * unix socket cycle only the garbage collector can free.
 */
static int scm_sender(const struct lsn *l, int u, enum scm_end how,
		      bool parked, int staged)
{
	char buf[256];
	int fd, sv[2];

	fd = socket(l->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&l->addr, l->len) ||
	    attach(fd))
		return 1;
	if (parked) {
		if (!park(fd))
			return 2;
	} else {
		fill(buf, staged, 7, 0);
		if (send(fd, buf, staged, MSG_MORE) != staged)
			return 3;
	}
	if (how == SCM_GC) {
		/* sv[1] travels in its own queue, with the socket. */
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
		    send_fds(sv[0], (int []){ fd, sv[1] }, 2))
			return 4;
		return write(u, "G", 1) == 1 ? 0 : 5;
	}
	return send_fds(u, &fd, 1) ? 6 : 0;
}

/*
 * An attached socket passed over SCM_RIGHTS by a process that exits at
 * once: received, used and closed by the other process; or never received
 * (the receiving socket closed with it in flight); or lost in a unix
 * socket cycle, closed by the garbage collector from a kworker. Parked, or
 * with bytes staged by the sender: the staged bytes (and the receiver's)
 * arrive before the end of file, every wait ends.
 */
TEST_F_TIMEOUT(adv, scm_rights_exit, 300)
{
	int i, iters = race_iters() / 8, u[2], fd, peer, hp, h, status;
	long long end = race_deadline();
	struct mbufmux_info info;
	bool parked;
	uint64_t seed = test_seed(_metadata);
	enum scm_end how;
	char buf[300], c;
	int staged, n[SCM_ENDS] = {};
	pid_t pid, ppid;
	long got;

	h = new_pair(_metadata, self, 0, true, &hp);
	for (i = 0; i < iters && now_ms() < end; i++) {
		how = i % SCM_ENDS;
		parked = (i / SCM_ENDS) & 1;
		staged = 1 + rnd(&seed) % 255;
		n[how]++;
		if (parked) {
			ASSERT_EQ(limits_set(1, 0), 0);
			ASSERT_TRUE(hold(h));
		}
		ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				     u), 0);
		ppid = getpid();
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			child_setup(ppid, u[1], -1);
			_exit(scm_sender(&self->lsn[i % FAMILIES], u[0],
					 how, parked, staged));
		}
		close(u[0]);
		peer = accept4(self->lsn[i % FAMILIES].fd, NULL, NULL,
			       SOCK_CLOEXEC);
		ASSERT_GE(peer, 0);
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_EQ(status, 0) TH_LOG("sender failed: %#x", status);

		if (how == SCM_RECEIVED) {
			ASSERT_EQ(recv_fds(u[1], &fd, 1), 0);
			ASSERT_EQ(info_get(fd, &info), 0);
			EXPECT_EQ(info.flags, parked ? MBUFMUX_F_PARKED :
				  MBUFMUX_F_HOLDS_BUF);
			EXPECT_EQ(info.staged, parked ? 0U : (unsigned int)staged);
			if (parked) {
				ASSERT_EQ(send(h, "r", 1, 0), 1);
				ASSERT_TRUE(poll_one(fd, POLLOUT, WAKE_MS) &
					    POLLOUT);
			}
			ASSERT_EQ(send(fd, "!", 1, 0), 1);
			close(fd);
		} else if (how == SCM_GC) {
			ASSERT_EQ(read(u[1], &c, 1), 1);
		}
		close(u[1]);
		if (parked && how != SCM_RECEIVED) {
			/* The socket went away parked: nothing to hand. */
			ASSERT_TRUE(wait_pool(1, 0, WAKE_MS));
			ASSERT_EQ(send(h, "r", 1, 0), 1);
		}
		got = recv_to_eof(peer, buf, sizeof(buf), 4 * WAKE_MS);
		ASSERT_EQ(got, (parked ? 0 : staged) +
			  (how == SCM_RECEIVED ? 1 : 0))
			TH_LOG("iteration %d (%d, parked %d): got %ld", i, how,
			       parked, got);
		if (!parked)
			EXPECT_EQ(check(buf, staged, 7, 0), -1);
		close(peer);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		if (parked)
			ASSERT_EQ(params_write(&initial), 0);
		if (!(i % 64))
			drain(hp);
	}
	close(h);
	close(hp);
	TH_LOG("received %d, purged in flight %d, collected %d", n[0], n[1],
	       n[2]);
	race_done(_metadata, i, iters);
}

/* ---- teardown ---- */

/*
 * A peer reset while bytes are staged (held by MSG_MORE, and behind a full
 * TCP send queue) and a socket is parked behind them, and a reset of a
 * parked socket's peer: the error shows (poll, send), the staged bytes are
 * dropped at close without a hang, the buffers come back and go to the
 * parked socket, nothing leaks.
 */
TEST_F_TIMEOUT(adv, peer_reset, 120)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	int f, h, hp, b, bp, v, vp;
	struct mbufmux_info info;
	char buf[1000];
	short ev;

	for (f = 0; f < FAMILIES; f++) {
		ASSERT_EQ(limits_set(2, 0), 0);
		h = new_pair(_metadata, self, f, true, &hp);
		ASSERT_EQ(send(h, buf, sizeof(buf), MSG_MORE),
			  (ssize_t)sizeof(buf));
		/* Its peer's window shuts: b keeps its buffer. */
		b = lsn_pair(&self->small, &bp);
		ASSERT_GE(b, 0);
		ASSERT_EQ(attach(b), 0);
		ASSERT_GT(send_backlog(b, 9, 0), 0);
		ASSERT_GT(unsent_bytes(b), 0);
		ASSERT_EQ(info_flags(b), MBUFMUX_F_HOLDS_BUF);
		v = new_pair(_metadata, self, f, true, &vp);
		ASSERT_TRUE(park(v));

		/* Both holders' peers reset. */
		ASSERT_EQ(setsockopt(hp, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		ASSERT_EQ(setsockopt(bp, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		close(hp);
		close(bp);
		ev = poll_one(h, POLLOUT, WAKE_MS);
		EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("%#x", ev);
		ev = poll_one(b, POLLOUT, WAKE_MS);
		EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("%#x", ev);
		EXPECT_EQ(send(h, "x", 1, MSG_NOSIGNAL), -1);
		EXPECT_TRUE(errno == ECONNRESET || errno == EPIPE)
			TH_LOG("%s", strerror(errno));
		/*
		 * Dead, they let their buffers go at once, without the
		 * program's help: v is served before they are closed.
		 */
		EXPECT_EQ(wait_flags(h, ~0U, 0, WAKE_MS), 0U);
		EXPECT_EQ(wait_flags(b, ~0U, 0, WAKE_MS), 0U);
		ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
		EXPECT_EQ(info_flags(v), MBUFMUX_F_HOLDS_BUF);
		ASSERT_EQ(info_get(h, &info), 0);
		EXPECT_EQ(info.staged, 0U);
		close(h);
		close(b);

		/* A parked socket whose peer resets, then served. */
		h = new_pair(_metadata, self, f, true, &hp);
		ASSERT_TRUE(hold(h));
		b = new_pair(_metadata, self, f, true, &bp);
		ASSERT_TRUE(park(b));
		ASSERT_EQ(setsockopt(bp, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		close(bp);
		ev = poll_one(b, POLLIN | POLLOUT, WAKE_MS);
		EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("%#x", ev);
		EXPECT_EQ(send(b, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT), -1);
		EXPECT_TRUE(errno == ECONNRESET || errno == EPIPE)
			TH_LOG("%s", strerror(errno));
		/* b left the queue when it died: v's buffer goes to nobody. */
		EXPECT_EQ(wait_flags(b, ~0U, 0, WAKE_MS), 0U);
		ASSERT_EQ(send(v, "v", 1, 0), 1);
		ASSERT_TRUE(wait_pool(1, 0, WAKE_MS));
		close(b);
		close(h);
		close(v);
		EXPECT_EQ(recv_to_eof(vp, buf, sizeof(buf), WAKE_MS), 1);
		EXPECT_EQ(recv_to_eof(hp, buf, sizeof(buf), WAKE_MS), 1);
		close(vp);
		close(hp);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	}
}

/* Child of mass_close: a holder and @n parked sockets, then waits. */
static int park_many(const struct lsn *l, long n, int out, int in)
{
	int fd, peer, h, hp;
	long i;
	char c;

	h = lsn_pair(l, &hp);
	if (h < 0 || attach(h) || !hold(h))
		return 1;
	for (i = 0; i < n; i++) {
		fd = lsn_pair(&l[i % FAMILIES], &peer);
		if (fd < 0) {
			fprintf(stderr, "# pair %ld: %s\n", i, strerror(errno));
			return 2;
		}
		if (attach(fd) || !park(fd)) {
			fprintf(stderr, "# park %ld: %s\n", i, strerror(errno));
			return 3;
		}
	}
	if (write(out, "R", 1) != 1)
		return 4;
	/* The holder lets go: the head is handed the buffer. */
	if (read(in, &c, 1) != 1 || send(h, "r", 1, MSG_DONTWAIT) != 1 ||
	    write(out, "D", 1) != 1)
		return 5;
	pause();
	return 0;
}

/*
 * Many parked sockets (MBUFMUX_PARKED, 10,000; 2,000 on a debug kernel,
 * where 10,000 take 7 minutes) closed at once:
 * a process parks them behind one holder, which then lets its buffer go
 * to the first of them, and is killed: its exit closes them all, the one
 * with a handed buffer among them. Every waiter is cancelled or served,
 * the pool comes back to rest; the debugfs list showed them all.
 */
TEST_F_TIMEOUT(adv, mass_close, 900)
{
	long n = knob("MBUFMUX_PARKED", 10000, 2000), lines;
	struct pool_stats st0, st;
	int out[2], in[2], status;
	long long t0;
	pid_t pid, ppid;
	char c;

	ASSERT_EQ(raise_nofile(2 * n + 256), 0)
		TH_LOG("RLIMIT_NOFILE %ld: %s", 2 * n + 256, strerror(errno));
	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
	ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
	ASSERT_EQ(stats_read(&st0), 0);
	t0 = now_ms();
	ppid = getpid();
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		child_setup(ppid, out[0], in[1]);
		_exit(park_many(self->lsn, n, out[1], in[0]));
	}
	close(out[1]);
	close(in[0]);
	if (read(out[0], &c, 1) != 1) {
		waitpid(pid, &status, 0);
		ASSERT_TRUE(false) TH_LOG("the parking process failed: %#x",
					  status);
	}
	TH_LOG("%ld sockets parked in %lld ms", n, now_ms() - t0);
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.waiters, n);
	EXPECT_EQ(st.waits - st0.waits, n);
	EXPECT_EQ(st.in_use, 1);
	lines = waiters_read(NULL, 0);
	EXPECT_EQ(lines, n);

	ASSERT_EQ(write(in[1], "C", 1), 1);
	ASSERT_EQ(read(out[0], &c, 1), 1);
	t0 = now_ms();
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(wait_rest(&st, 12 * REST_MS), 0)
		TH_LOG("in_use %lld waiters %lld", st.in_use, st.waiters);
	TH_LOG("closed in %lld ms: %lld cancels, %lld handoffs",
	       now_ms() - t0, st.cancels - st0.cancels,
	       st.handoffs - st0.handoffs);
	EXPECT_EQ(st.cancels - st0.cancels + st.handoffs - st0.handoffs, n);
	EXPECT_EQ(waiters_read(NULL, 0), 0);
	close(out[0]);
	close(in[1]);
}

/*
 * The process in a network namespace: a backlogged socket and a holder
 * keep both buffers, three sockets are parked and a thread sleeps in a
 * blocking send.
 */
static void *blocked_send(void *arg)
{
	send(*(int *)arg, "b", 1, MSG_NOSIGNAL);
	return NULL;
}

static int netns_child(int out, int in)
{
	int i, fd, peer, b, h, bfd, rcvbuf = 2048;
	struct lsn l;
	pthread_t t;
	char c;

	if (unshare(CLONE_NEWNET) || lo_up() || lsn_open(&l, AF_INET, false))
		return 1;
	/*
	 * A small receive buffer: once its window is shut, nothing the peer
	 * acknowledges can make room for the 16 KiB staged behind it, so the
	 * backlogged socket keeps its buffer.
	 */
	if (setsockopt(l.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)))
		return 1;
	b = lsn_pair(&l, &peer);
	if (b < 0 || attach(b) || send_backlog(b, 3, 0) <= 0)
		return 2;
	h = lsn_pair(&l, &peer);
	if (h < 0 || attach(h) || !hold(h))
		return 3;
	for (i = 0; i < 3; i++) {
		fd = lsn_pair(&l, &peer);
		if (fd < 0 || attach(fd) || !park(fd))
			return 4;
	}
	bfd = lsn_pair(&l, &peer);
	if (bfd < 0 || attach(bfd) ||
	    pthread_create(&t, NULL, blocked_send, &bfd))
		return 5;
	if (write(out, "R", 1) != 1)
		return 6;
	read(in, &c, 1);
	return 0;
}

/*
 * A network namespace goes away with sockets holding and waiting for
 * buffers: its only process is killed (namespace freed with it); or the
 * namespace is pinned by a bind mount, as "ip netns add" does, and that is
 * removed ("ip netns del") after the process is killed, or before. Busybox
 * ip has no netns: the bind mount is what it would do. The pool comes back
 * to rest each time.
 */
TEST_F_TIMEOUT(adv, netns_teardown, 300)
{
	int i, out[2], in[2], status, fd;
	pid_t pid, ppid = getpid();
	char path[64], c;

	ASSERT_EQ(limits_set(2, 0), 0);
	for (i = 0; i < 6; i++) {
		ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
		ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			child_setup(ppid, out[0], in[1]);
			_exit(netns_child(out[1], in[0]));
		}
		close(out[1]);
		close(in[0]);
		if (read(out[0], &c, 1) != 1) {
			waitpid(pid, &status, 0);
			ASSERT_TRUE(false) TH_LOG("netns child: %#x", status);
		}
		ASSERT_TRUE(wait_pool(2, 4, WAKE_MS));
		if (i % 3) {
			fd = open(NETNS_FILE, O_CREAT | O_RDONLY | O_CLOEXEC,
				  0600);
			ASSERT_GE(fd, 0);
			close(fd);
			snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
			ASSERT_EQ(mount(path, NETNS_FILE, NULL, MS_BIND, NULL),
				  0) TH_LOG("%s", strerror(errno));
		}
		if (i % 3 == 2)
			ASSERT_EQ(umount2(NETNS_FILE, MNT_DETACH), 0);
		ASSERT_EQ(kill(pid, SIGKILL), 0);
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		close(out[0]);
		close(in[1]);
		ASSERT_TRUE(wait_pool(0, 0, REST_MS)) TH_LOG("round %d", i);
		if (i % 3 == 1) {
			ASSERT_EQ(umount2(NETNS_FILE, MNT_DETACH), 0);
			sleep_ms(100);
		}
		unlink(NETNS_FILE);
		ASSERT_TRUE(wait_pool(0, 0, REST_MS));
	}
}

#define ORPHANS	8

/* Sockets in TCP state @st (/proc/net/tcp and tcp6), or -1. */
static long tcp_count(unsigned int st)
{
	static const char * const files[] = {
		"/proc/net/tcp", "/proc/net/tcp6",
	};
	unsigned int state;
	char line[512];
	long n = 0;
	size_t i;
	FILE *f;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		f = fopen(files[i], "re");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "%*s %*s %*s %x", &state) == 1 &&
			    state == st)
				n++;
		fclose(f);
	}
	return n;
}

/*
 * rmmod with orphaned sockets: attached sockets closed with their peers
 * not reading stay behind as FIN_WAIT1 orphans with data queued, each
 * holding a module reference and the pool buffer that covers their unsent
 * bytes; unloading is refused. Once they die (half of the peers read every byte and close,
 * every byte arriving; the other half reset) the module unloads cleanly,
 * and loads again.
 */
TEST_F_TIMEOUT(adv, rmmod_orphans, 300)
{
	int i, fd[ORPHANS], peer[ORPHANS], err;
	long total[ORPHANS];
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	long ref0, ref, got;
	struct pool_stats st;
	long long end;
	char *buf;

	ASSERT_EQ(access(module_ko(), R_OK), 0) TH_LOG("no %s", module_ko());
	ref0 = module_refcnt();
	ASSERT_GE(ref0, 0);
	for (i = 0; i < ORPHANS; i++) {
		/* A small window: what the buffer covers stays unsent. */
		fd[i] = lsn_pair(&self->small, &peer[i]);
		ASSERT_GE(fd[i], 0);
		ASSERT_EQ(attach(fd[i]), 0);
		total[i] = send_backlog_staged(fd[i], 100 + i);
		ASSERT_GT(total[i], 0);
	}
	EXPECT_EQ(module_refcnt(), ref0 + ORPHANS);
	for (i = 0; i < ORPHANS; i++)
		close(fd[i]);
	/* Each orphan keeps the buffer that covers its unsent bytes. */
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.in_use, ORPHANS);
	sleep_ms(50);
	ref = module_refcnt();
	EXPECT_EQ(ref, ref0 + ORPHANS) TH_LOG("orphans hold %ld", ref - ref0);
	EXPECT_GE(tcp_count(TCP_FIN_WAIT1), ORPHANS);

	err = syscall(SYS_delete_module, "mbufmux_tcp", O_NONBLOCK) ? errno
								    : 0;
	if (!err) {
		EXPECT_EQ(module_restore(), 0);
		ASSERT_TRUE(false) TH_LOG("unloaded under orphaned sockets");
	}
	EXPECT_TRUE(err == EWOULDBLOCK || err == EBUSY) TH_LOG("%d", err);
	EXPECT_TRUE(module_loaded("mbufmux_tcp"));

	buf = malloc(32 << 20);
	ASSERT_NE(buf, NULL);
	for (i = 0; i < ORPHANS; i++) {
		if (i & 1) {
			setsockopt(peer[i], SOL_SOCKET, SO_LINGER, &lin,
				   sizeof(lin));
		} else {
			got = recv_to_eof(peer[i], buf, 32 << 20,
					  4 * WAKE_MS);
			EXPECT_EQ(got, total[i]) TH_LOG("orphan %d", i);
			if (got > 0 && (size_t)got <= 32U << 20)
				EXPECT_EQ(check(buf, got, 100 + i, 0), -1);
		}
		close(peer[i]);
	}
	free(buf);
	end = now_ms() + REST_MS;
	while ((ref = module_refcnt()) != ref0 && now_ms() < end)
		sleep_ms(10);
	EXPECT_EQ(ref, ref0);
	ASSERT_EQ(module_unload(REST_MS), 0) TH_LOG("%s", strerror(errno));
	EXPECT_FALSE(module_loaded("mbufmux_tcp"));
	EXPECT_NE(access(DBG_DIR, F_OK), 0);
	EXPECT_NE(access("/sys/kernel/slab/mbufmux_tcp", F_OK), 0);
	ASSERT_EQ(module_restore(), 0);
	fd[0] = new_pair(_metadata, self, 0, true, &peer[0]);
	ASSERT_EQ(send(fd[0], "x", 1, 0), 1);
	close(fd[0]);
	close(peer[0]);
}

struct attacher {
	const struct lsn *lsn;
	bool stop;
	long ok;
	long enoent;
	long other;
	int first_err;
};

static void *attacher_fn(void *arg)
{
	struct attacher *a = arg;
	int fd, peer;
	long n;

	for (n = 0; !__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE); n++) {
		fd = lsn_pair(&a->lsn[n % FAMILIES], &peer);
		if (fd < 0) {
			a->other++;
			a->first_err = a->first_err ?: errno;
			continue;
		}
		/* Mostly without CAP_NET_ADMIN: no request_module(). */
		net_admin(!(n % 16));
		if (!attach(fd)) {
			a->ok++;
			if (send(fd, "a", 1, MSG_MORE | MSG_DONTWAIT) != 1) {
				a->other++;
				a->first_err = a->first_err ?: errno;
			}
		} else if (errno == ENOENT) {
			a->enoent++;
		} else {
			a->other++;
			a->first_err = a->first_err ?: errno;
		}
		net_admin(true);
		close(fd);
		close(peer);
	}
	return NULL;
}

/*
 * Load/unload cycles of mbufmux_tcp.ko (MBUFMUX_CYCLES, default 50)
 * while another thread keeps attaching sockets (IPv4 and IPv6, the IPv6
 * proto built again each time) and taking a buffer: an attach succeeds on
 * the loaded module or fails with ENOENT, nothing else; the unload waits
 * for the attached sockets to go; both outcomes happen.
 */
TEST_F_TIMEOUT(adv, load_unload_race, 600)
{
	long cycles = knob("MBUFMUX_CYCLES", 50, 50), c;
	uint64_t seed = test_seed(_metadata);
	struct attacher a = {};
	pthread_t t;
	int err;

	ASSERT_EQ(access(module_ko(), R_OK), 0) TH_LOG("no %s", module_ko());
	a.lsn = self->lsn;
	ASSERT_EQ(pthread_create(&t, NULL, attacher_fn, &a), 0);
	for (c = 0; c < cycles; c++) {
		sleep_ms(rnd(&seed) % 20);
		err = module_unload(REST_MS);
		if (err)
			break;
		sleep_ms(rnd(&seed) % 10);
		err = module_restore();
		if (err)
			break;
	}
	__atomic_store_n(&a.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	if (!module_loaded("mbufmux_tcp"))
		EXPECT_EQ(module_restore(), 0);
	ASSERT_EQ(err, 0) TH_LOG("cycle %ld: %s", c, strerror(-err));
	TH_LOG("%ld cycles: %ld attached, %ld ENOENT, %ld other", cycles,
	       a.ok, a.enoent, a.other);
	EXPECT_EQ(a.other, 0) TH_LOG("first error: %s",
				     strerror(a.first_err));
	EXPECT_GT(a.ok, 0);
	EXPECT_GT(a.enoent, 0);
}

/* ---- limits ---- */

struct flow {
	int tx;
	int rx;
	uint32_t id;
	uint64_t sent;
	uint64_t rcvd;
	bool eof;
};

#define FLOWS_MAX	8

/*
 * A thread that drives byte-exact flows (attached sender, attached
 * receiver) with random chunks and random MSG_MORE until told to stop,
 * then shuts them down and reads them to the end.
 */
struct flower {
	pthread_t thread;
	struct flow fl[FLOWS_MAX];
	int n;
	unsigned int chunk;
	uint64_t seed;
	const bool *stop;
	char what[160];
};

static void *flower_fn(void *arg)
{
	struct flower *w = arg;
	struct pollfd pfd[2 * FLOWS_MAX];
	int i, k, n, done, flags;
	long long last = now_ms();
	char *buf = malloc(CHUNK);
	bool stopping = false;
	struct flow *f;
	ssize_t ret;
	size_t len;
	long bad;

	if (!buf) {
		snprintf(w->what, sizeof(w->what), "no memory");
		return NULL;
	}
	for (done = 0; done < w->n;) {
		if (!stopping && __atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
			stopping = true;
			last = now_ms();
			for (i = 0; i < w->n; i++)
				if (shutdown(w->fl[i].tx, SHUT_WR)) {
					snprintf(w->what, sizeof(w->what),
						 "flow %u: shutdown: %s",
						 w->fl[i].id, strerror(errno));
					goto out;
				}
		}
		for (i = 0, n = 0; i < w->n; i++) {
			pfd[n].fd = stopping ? -1 : w->fl[i].tx;
			pfd[n++].events = POLLOUT;
			pfd[n].fd = w->fl[i].eof ? -1 : w->fl[i].rx;
			pfd[n++].events = POLLIN;
		}
		poll(pfd, n, 20);
		for (k = 0; k < n; k++) {
			f = &w->fl[k / 2];
			if (pfd[k].revents & (POLLERR | POLLNVAL)) {
				snprintf(w->what, sizeof(w->what),
					 "flow %u: revents %#x", f->id,
					 pfd[k].revents);
				goto out;
			}
			if (!pfd[k].revents)
				continue;
			if (k & 1) {
				ret = recv(f->rx, buf, CHUNK, MSG_DONTWAIT);
				if (ret < 0 && errno == EAGAIN)
					continue;
				if (ret <= 0 && !(ret == 0 && stopping)) {
					snprintf(w->what, sizeof(w->what),
						 "flow %u: recv %zd: %s",
						 f->id, ret, strerror(errno));
					goto out;
				}
				if (!ret) {
					f->eof = true;
					done++;
					continue;
				}
				bad = check(buf, ret, f->id, f->rcvd);
				if (bad >= 0) {
					snprintf(w->what, sizeof(w->what),
						 "flow %u: wrong byte at %llu",
						 f->id, (unsigned long long)
						 (f->rcvd + bad));
					goto out;
				}
				f->rcvd += ret;
				last = now_ms();
				continue;
			}
			len = 1 + rnd(&w->seed) % w->chunk;
			flags = rnd(&w->seed) & 1 ? MSG_MORE : 0;
			fill(buf, len, f->id, f->sent);
			ret = send(f->tx, buf, len, flags | MSG_DONTWAIT);
			if (ret < 0 && errno == EAGAIN)
				continue;
			if (ret <= 0) {
				snprintf(w->what, sizeof(w->what),
					 "flow %u: send: %s", f->id,
					 strerror(errno));
				goto out;
			}
			f->sent += ret;
			last = now_ms();
		}
		if (stopping && now_ms() - last > 60000) {
			snprintf(w->what, sizeof(w->what),
				 "no progress for 60 s while finishing");
			goto out;
		}
	}
	for (i = 0; i < w->n; i++)
		if (w->fl[i].rcvd != w->fl[i].sent)
			snprintf(w->what, sizeof(w->what),
				 "flow %u: sent %llu, received %llu",
				 w->fl[i].id,
				 (unsigned long long)w->fl[i].sent,
				 (unsigned long long)w->fl[i].rcvd);
out:
	free(buf);
	return NULL;
}

/* @n flowers of @per flows each, every other one unprivileged. */
static void flowers_start(struct __test_metadata *_metadata,
			  struct _test_data_adv *self, struct flower *w,
			  int n, int per, unsigned int chunk,
			  const bool *stop, uint64_t seed)
{
	int i, j;

	for (i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].n = per;
		w[i].chunk = chunk;
		w[i].stop = stop;
		w[i].seed = seed + i * 0x9e3779b97f4a7c15ULL;
		ASSERT_EQ(net_admin(!(i & 1)), 0);
		for (j = 0; j < per; j++) {
			w[i].fl[j].id = i * FLOWS_MAX + j;
			w[i].fl[j].tx = new_pair(_metadata, self, j, true,
						 &w[i].fl[j].rx);
			ASSERT_EQ(attach(w[i].fl[j].rx), 0);
			ASSERT_EQ(set_nonblock(w[i].fl[j].tx), 0);
			ASSERT_EQ(set_nonblock(w[i].fl[j].rx), 0);
		}
		ASSERT_EQ(net_admin(true), 0);
		ASSERT_EQ(pthread_create(&w[i].thread, NULL, flower_fn, &w[i]),
			  0);
	}
}

/* Joins the flowers: every byte each flow sent arrived, or a failure. */
static void flowers_join(struct __test_metadata *_metadata,
			 struct flower *w, int n, uint64_t *bytes)
{
	int i, j;

	*bytes = 0;
	for (i = 0; i < n; i++) {
		pthread_join(w[i].thread, NULL);
		EXPECT_STREQ(w[i].what, "");
		for (j = 0; j < w[i].n; j++) {
			*bytes += w[i].fl[j].rcvd;
			close(w[i].fl[j].tx);
			close(w[i].fl[j].rx);
		}
	}
}

#define LOAD_FLOWERS	4
#define LOAD_PER	4

/*
 * limit and reserve changed at random while 16 flows (half of them
 * unprivileged) move data: the limit often dropped below the buffers in
 * use, the reserve anywhere below it. The pool never has more buffers out
 * than the highest limit it was given, every byte arrives, and with the
 * parameters restored everything comes back.
 */
TEST_F_TIMEOUT(adv, params_under_load, 600)
{
	long secs = knob("MBUFMUX_LOAD_SECS", 5, 15);
	long long end, changes = 0, below = 0, max_limit = initial.limit;
	struct flower w[LOAD_FLOWERS];
	uint64_t seed, bytes;
	struct pool_stats st;
	long limit, reserve;
	bool stop = false;

	seed = test_seed(_metadata);
	flowers_start(_metadata, self, w, LOAD_FLOWERS, LOAD_PER, CHUNK,
		      &stop, seed);
	end = now_ms() + secs * 1000;
	while (now_ms() < end) {
		sleep_ms(1 + rnd(&seed) % 10);
		ASSERT_EQ(stats_read(&st), 0);
		ASSERT_LE(st.in_use, max_limit);
		if (st.in_use > 1 && rnd(&seed) % 3 == 0)
			limit = st.in_use / 2;
		else
			limit = 1 + rnd(&seed) % (LOAD_FLOWERS * LOAD_PER);
		reserve = rnd(&seed) & 1 ? rnd(&seed) % limit : 0;
		below += limit < st.in_use;
		if (limit > max_limit)
			max_limit = limit;
		ASSERT_EQ(limits_set(limit, reserve), 0);
		changes++;
	}
	ASSERT_EQ(params_write(&initial), 0);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, LOAD_FLOWERS, &bytes);
	TH_LOG("%lld changes (%lld below in_use) in %ld s, %llu bytes moved",
	       changes, below, secs, (unsigned long long)bytes);
	EXPECT_GT(below, 0);
	EXPECT_GT(bytes, 0U);
}

/*
 * Each run-time parameter at its extremes: limit 1 (a transfer through a
 * single buffer), limit 16777216 (hundreds of buffers at once, nobody
 * waits), reserve limit - 1 at a small and at the largest limit (an
 * unprivileged socket gets a buffer only when none is out; privileged
 * sockets take the rest, a privileged waiter is served before an
 * unprivileged one queued ahead of it), with the per-user cap at its
 * largest, out of the way (the user_cap_* tests take it to its extremes).
 */
TEST_F_TIMEOUT(adv, param_extremes, 300)
{
	int i, fd[256], peer[256], u[2], up[2], p[3], pp[3];
	struct flower w[2];
	struct pool_stats st0, st;
	uint64_t bytes, seed;
	bool stop = false;

	/* limit 1: two flowers, eight flows, one buffer. */
	seed = test_seed(_metadata);
	ASSERT_EQ(limits_set(1, 0), 0);
	flowers_start(_metadata, self, w, 2, 4, 3000, &stop, seed);
	for (i = 0; i < 200; i++) {
		ASSERT_EQ(stats_read(&st), 0);
		ASSERT_LE(st.in_use, 1);
		sleep_ms(5);
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, 2, &bytes);
	EXPECT_GT(bytes, 0U);
	TH_LOG("limit 1: %llu bytes moved", (unsigned long long)bytes);

	/* limit 16777216: 256 buffers at once, no waits. */
	ASSERT_EQ(limits_set(16777216, 0), 0);
	ASSERT_EQ(stats_read(&st0), 0);
	for (i = 0; i < 256; i++) {
		fd[i] = new_pair(_metadata, self, i, true, &peer[i]);
		ASSERT_TRUE(hold(fd[i]));
	}
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.in_use, 256);
	EXPECT_EQ(st.waits, st0.waits);
	close_pairs(fd, peer, 256);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* reserve = limit - 1, limit 3. */
	caps_set(_metadata, 3, 2, LIMIT_MAX);
	ASSERT_EQ(net_admin(false), 0);
	for (i = 0; i < 2; i++)
		u[i] = new_pair(_metadata, self, i, true, &up[i]);
	ASSERT_EQ(net_admin(true), 0);
	for (i = 0; i < 3; i++)
		p[i] = new_pair(_metadata, self, i, true, &pp[i]);
	ASSERT_TRUE(hold(u[0]));
	ASSERT_TRUE(park(u[1]));
	ASSERT_TRUE(hold(p[0]));
	ASSERT_TRUE(hold(p[1]));
	ASSERT_TRUE(park(p[2]));
	/* p[0]'s buffer skips u[1] (it may not take the reserve): p[2]. */
	ASSERT_EQ(send(p[0], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(p[2], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_PARKED);
	ASSERT_EQ(send(u[0], "r", 1, 0), 1);
	ASSERT_EQ(send(p[1], "r", 1, 0), 1);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_PARKED);
	/* Only p[2]'s is out: it goes, then u[1] may have one. */
	ASSERT_EQ(send(p[2], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(u[1], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_HOLDS_BUF);
	close_pairs(u, up, 2);
	close_pairs(p, pp, 3);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* The largest reserve: the same for unprivileged sockets. */
	caps_set(_metadata, LIMIT_MAX, LIMIT_MAX - 1, LIMIT_MAX);
	ASSERT_EQ(net_admin(false), 0);
	for (i = 0; i < 2; i++)
		u[i] = new_pair(_metadata, self, i, true, &up[i]);
	ASSERT_EQ(net_admin(true), 0);
	p[0] = new_pair(_metadata, self, 0, true, &pp[0]);
	ASSERT_TRUE(hold(u[0]));
	ASSERT_TRUE(park(u[1]));
	ASSERT_TRUE(hold(p[0]));
	ASSERT_EQ(send(u[0], "r", 1, 0), 1);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_PARKED);
	ASSERT_EQ(send(p[0], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(u[1], POLLOUT, WAKE_MS) & POLLOUT);
	close_pairs(u, up, 2);
	close(p[0]);
	close(pp[0]);
}

struct big_reader {
	pthread_t thread;
	int fd;
	size_t len;
	size_t got;
	long bad;
};

static void *big_reader_fn(void *arg)
{
	struct big_reader *r = arg;
	char *buf = malloc(CHUNK);
	ssize_t n;

	r->bad = -2;
	if (!buf)
		return NULL;
	r->bad = -1;
	while (r->got < r->len) {
		n = recv(r->fd, buf, CHUNK, 0);
		if (n <= 0)
			break;
		if (r->bad < 0 && check(buf, n, 77, r->got) >= 0)
			r->bad = r->got + check(buf, n, 77, r->got);
		r->got += n;
	}
	free(buf);
	return NULL;
}

/*
 * Sends @len bytes with MSG_MORE, then one more byte without, through a
 * new pair: in between, what did not fill a buffer stays held, and the
 * unsent bytes stay within a buffer of @buf_size.
 */
static void big_transfer(struct __test_metadata *_metadata,
			 struct _test_data_adv *self, size_t len,
			 unsigned int buf_size)
{
	struct big_reader r = { .len = len + 1 };
	struct mbufmux_info info;
	char *buf = malloc(len + 1);
	int fd;

	ASSERT_NE(buf, NULL);
	fill(buf, len + 1, 77, 0);
	fd = new_pair(_metadata, self, 0, true, &r.fd);
	ASSERT_EQ(pthread_create(&r.thread, NULL, big_reader_fn, &r), 0);
	ASSERT_EQ(send(fd, buf, len, MSG_MORE), (ssize_t)len);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_GT(info.staged, 0U);
	EXPECT_LE(info.staged, buf_size);
	EXPECT_LE(unsent_bytes(fd), (long)buf_size);
	EXPECT_EQ(info.buf_size, buf_size);
	ASSERT_EQ(send(fd, buf + len, 1, 0), 1);
	pthread_join(r.thread, NULL);
	EXPECT_EQ(r.got, len + 1);
	EXPECT_EQ(r.bad, -1);
	close(fd);
	close(r.fd);
	free(buf);
}

/* Loads mbufmux_tcp.ko with @args and checks what it reports. */
static void load_with(struct __test_metadata *_metadata, const char *args,
		      long buf_size, long limit, long reserve, long user_limit)
{
	long cap = (limit - reserve) / 2;
	struct pool_stats st;
	int err;

	err = module_load(args);
	ASSERT_EQ(err, 0) TH_LOG("%s: %s", args, strerror(-err));
	EXPECT_EQ(param_get("buf_size"), buf_size);
	EXPECT_EQ(param_get("limit"), limit);
	EXPECT_EQ(param_get("reserve"), reserve);
	EXPECT_EQ(param_get("user_limit"), user_limit);
	EXPECT_EQ(users_cap(), user_limit ?: cap ?: 1);
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.buf_size, buf_size);
	EXPECT_EQ(st.limit, limit);
	EXPECT_EQ(st.reserve, reserve);
	EXPECT_EQ(st.prealloc, reserve);
}

/*
 * Load-time parameters at and past their extremes: buf_size 63 and
 * 1048577, limit 0 and 16777217, reserve == limit, user_limit 16777217,
 * junk are refused (EINVAL) and leave no module, debugfs directory or
 * cache; the largest reserve (16777215 buffers to preallocate) is refused
 * cleanly, without a warning; buf_size 64 and 1048576, limit 1 and
 * 16777216, reserve limit - 1, user_limit 1 and 16777216 load and work.
 * The module is then loaded as it was.
 */
TEST_F_TIMEOUT(adv, load_extremes, 600)
{
	static const char * const bad[] = {
		"buf_size=63", "buf_size=1048577", "buf_size=0",
		"limit=0", "limit=16777217", "limit=4 reserve=4",
		"limit=4 reserve=5", "limit=abc", "buf_size=-1",
		"user_limit=16777217", "user_limit=-1",
	};
	int fd, peer, v, vp, u, upr;
	struct flower w[1];
	uint64_t bytes;
	bool stop;
	size_t i;
	int err;

	ASSERT_EQ(access(module_ko(), R_OK), 0) TH_LOG("no %s", module_ko());
	ASSERT_EQ(module_unload(REST_MS), 0);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_EQ(module_load(bad[i]), -EINVAL) TH_LOG("%s", bad[i]);
		EXPECT_FALSE(module_loaded("mbufmux_tcp"));
		EXPECT_NE(access(DBG_DIR, F_OK), 0);
		EXPECT_NE(access("/sys/kernel/slab/mbufmux_tcp", F_OK), 0);
		if (module_loaded("mbufmux_tcp"))
			module_unload(REST_MS);
	}

	TH_LOG("limit=16777216 reserve=16777215: must fail cleanly (no WARN in the kernel log)");
	err = module_load("limit=16777216 reserve=16777215");
	EXPECT_EQ(err, -ENOMEM) TH_LOG("%s", strerror(-err));
	EXPECT_NE(access(DBG_DIR, F_OK), 0);
	EXPECT_NE(access("/sys/kernel/slab/mbufmux_tcp", F_OK), 0);
	if (!err)
		ASSERT_EQ(module_unload(REST_MS), 0);

	/* 64-byte buffers: a byte-exact transfer through them. */
	load_with(_metadata, "buf_size=64 limit=4", 64, 4, 0, 0);
	stop = false;
	flowers_start(_metadata, self, w, 1, 4, 200, &stop, 1);
	sleep_ms(1000);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, 1, &bytes);
	EXPECT_GT(bytes, 0U);
	big_transfer(_metadata, self, 3 * 64 + 10, 64);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);

	/* 1 MiB buffers, three of them preallocated. */
	load_with(_metadata, "buf_size=1048576 limit=4 reserve=3", 1048576,
		  4, 3, 0);
	big_transfer(_metadata, self, 3 * 1048576 + 100, 1048576);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);

	/* limit 1: one holder, one parked. */
	load_with(_metadata, "limit=1 user_limit=1", initial.buf_size, 1, 0,
		  1);
	fd = new_pair(_metadata, self, 0, true, &peer);
	v = new_pair(_metadata, self, 1, true, &vp);
	ASSERT_TRUE(hold(fd));
	ASSERT_TRUE(park(v));
	close(fd);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	close(v);
	close(peer);
	close(vp);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);

	/* The largest limit; reserve limit - 1 with its buffers. */
	load_with(_metadata, "limit=16777216 user_limit=16777216",
		  initial.buf_size, LIMIT_MAX, 0, LIMIT_MAX);
	ASSERT_EQ(module_unload(REST_MS), 0);
	load_with(_metadata, "limit=8 reserve=7 user_limit=8",
		  initial.buf_size, 8, 7, 8);
	ASSERT_EQ(net_admin(false), 0);
	u = new_pair(_metadata, self, 0, true, &upr);
	v = new_pair(_metadata, self, 1, true, &vp);
	ASSERT_EQ(net_admin(true), 0);
	ASSERT_TRUE(hold(u));
	ASSERT_TRUE(park(v));
	fd = new_pair(_metadata, self, 0, true, &peer);
	ASSERT_TRUE(hold(fd));
	close(u);
	close(v);
	close(fd);
	close(upr);
	close(vp);
	close(peer);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);
	ASSERT_EQ(module_restore(), 0);
}

/* ---- security ---- */

/* Sends @n bytes of 0xa5 with MSG_MORE, filling most of a buffer. */
static bool stage_secret(int fd, size_t n)
{
	char *buf = malloc(n);
	bool ok;

	if (!buf)
		return false;
	memset(buf, 0xa5, n);
	ok = send(fd, buf, n, MSG_MORE) == (ssize_t)n;
	free(buf);
	return ok;
}

/* The next socket to hold the buffer stages one byte: only that goes. */
static void expect_only(struct __test_metadata *_metadata, int b, int bp)
{
	struct mbufmux_info info;
	char buf[64];

	ASSERT_EQ(send(b, "B", 1, MSG_MORE | MSG_DONTWAIT), 1);
	ASSERT_EQ(info_get(b, &info), 0);
	EXPECT_EQ(info.staged, 1U);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	ASSERT_EQ(send(b, "b", 1, 0), 1);
	ASSERT_EQ(recv(bp, buf, 2, MSG_WAITALL), 2);
	EXPECT_EQ(memcmp(buf, "Bb", 2), 0);
	EXPECT_EQ(poll_one(bp, POLLIN, QUIET_MS), 0);
}

/*
 * A buffer never shows one socket's bytes to another: socket A fills most
 * of a buffer with 0xa5 and lets it go, back to the slab or handed
 * directly to a parked socket B (closed or flushed); B then stages one
 * byte, MBUFMUX_INFO counts one, and B's peer gets B's bytes only.
 *
 * What this proves: no path of the ULP sends bytes it did not stage.
 * What it cannot prove: that the pool zeroes its buffers (DESIGN's rule,
 * which matters to any other consumer of mbufmux.ko): userspace never sees
 * a buffer's unstaged bytes. init_on_alloc=0 (make check-debug) keeps the
 * slab from zeroing for the pool; the check itself belongs in
 * test_mbufmux.ko.
 */
TEST_F_TIMEOUT(adv, no_stale_bytes, 120)
{
	size_t n = self->buf_size - 1, i;
	int a, ap, b, bp, round;
	ssize_t ret;
	char cmdline[4096] = "";
	char *buf;

	read_text("/proc/cmdline", cmdline, sizeof(cmdline));
	TH_LOG("init_on_alloc=0 %s on the kernel command line",
	       strstr(cmdline, "init_on_alloc=0") ? "is" : "is NOT");

	buf = malloc(n);
	ASSERT_NE(buf, NULL);
	for (round = 0; round < 3; round++) {
		ASSERT_EQ(limits_set(round ? 1 : initial.limit, 0), 0);
		a = new_pair(_metadata, self, round, true, &ap);
		b = new_pair(_metadata, self, round, true, &bp);
		ASSERT_TRUE(stage_secret(a, n));
		if (round) {
			/* Handed over: A flushes (1) or closes (2). */
			ASSERT_TRUE(park(b));
			ret = round == 1 ? send(a, "", 0, 0) : close(a);
			ASSERT_EQ(ret, 0);
			ASSERT_TRUE(poll_one(b, POLLOUT, WAKE_MS) & POLLOUT);
		} else {
			/* Back to the slab, then taken again. */
			ASSERT_EQ(send(a, "", 0, 0), 0);
			ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		}
		expect_only(_metadata, b, bp);
		if (round != 2)
			close(a);
		ASSERT_EQ(recv_to_eof(ap, buf, n, WAKE_MS), (long)n);
		for (i = 0; i < n && buf[i] == (char)0xa5; i++)
			;
		ASSERT_EQ(i, n) TH_LOG("A's byte %zu is %#x", i, buf[i]);
		close(ap);
		close(b);
		close(bp);
	}
	free(buf);
}

/*
 * Becomes user and group @uid, without capabilities; with @userns, then
 * root of a new user and network namespace that maps it to @uid outside,
 * loopback up, as "unshare -Urn" would. 0, or the step that failed.
 */
static int become_user(uid_t uid, bool userns)
{
	char map[32];

	if (setgroups(0, NULL) || setresgid(uid, uid, uid) ||
	    setresuid(uid, uid, uid))
		return 1;
	if (!userns)
		return 0;
	snprintf(map, sizeof(map), "0 %u 1", uid);
	/* The id maps of a process that changed its ids: dumpable. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) ||
	    unshare(CLONE_NEWUSER | CLONE_NEWNET) ||
	    write_text("/proc/self/setgroups", "deny") ||
	    write_text("/proc/self/uid_map", map) ||
	    write_text("/proc/self/gid_map", map))
		return 2;
	return lo_up() ? 3 : 0;
}

/*
 * The process of user_pairs(): becomes the user, makes @n attached pairs
 * on a loopback listener of its own and passes them over @u, each
 * attached socket with its peer. 0, or the step that failed.
 */
static int user_child(uid_t uid, bool userns, int n, int u)
{
	int i, pair[2], step;
	struct lsn l;

	step = become_user(uid, userns);
	if (step)
		return step;
	if (lsn_open(&l, AF_INET, false))
		return 4;
	for (i = 0; i < n; i++) {
		pair[0] = lsn_pair(&l, &pair[1]);
		if (pair[0] < 0 || attach(pair[0]))
			return 5;
		if (send_fds(u, pair, 2))
			return 6;
	}
	return 0;
}

/*
 * @n attached loopback pairs of user @uid, made by a process of that user,
 * or by root of a user namespace mapped to @uid (@userns): the attached
 * sockets in @fds, their peers in @peers. The socket's owner and its
 * margin are set by then; the test's process drives them.
 */
static void user_pairs(struct __test_metadata *_metadata, uid_t uid,
		       bool userns, int n, int *fds, int *peers)
{
	pid_t pid, ppid = getpid();
	int u[2], pair[2], status, i;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, u), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		child_setup(ppid, u[0], -1);
		_exit(user_child(uid, userns, n, u[1]));
	}
	close(u[1]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0)
		TH_LOG("uid %u%s: step %d failed", uid,
		       userns ? " in a user namespace" : "",
		       WEXITSTATUS(status));
	for (i = 0; i < n; i++) {
		ASSERT_EQ(recv_fds(u[0], pair, 2), 0);
		fds[i] = pair[0];
		peers[i] = pair[1];
	}
	close(u[0]);
}

/*
 * The reserve is out of unprivileged reach: with limit 4 and reserve 2 (and
 * a per-user cap out of the way), the sockets of nobody, and of root of a
 * user namespace mapped to nobody, get two buffers and park the third on
 * the pool; a root socket still gets one; a buffer coming back within the
 * reserve does not go to the unprivileged waiter (its margin, in debugfs,
 * is the reserve), only lowering the reserve serves it.
 */
TEST_F_TIMEOUT(adv, reserve_unprivileged, 120)
{
	int userns, u[3], up[3], p, pp;
	char buf[4096];

	for (userns = 0; userns < 2; userns++) {
		ASSERT_EQ(limits_set(4, 2), 0);
		ASSERT_EQ(param_set("user_limit", 4), 0);
		user_pairs(_metadata, NOBODY, userns, 3, u, up);
		ASSERT_TRUE(hold(u[0]));
		ASSERT_TRUE(hold(u[1]));
		ASSERT_TRUE(park(u[2]));
		ASSERT_TRUE(wait_pool(2, 1, WAKE_MS));
		ASSERT_GT(read_text(DBG_DIR "waiters", buf, sizeof(buf)), 0);
		EXPECT_NE(strstr(buf, "margin=2 "), NULL) TH_LOG("%s", buf);

		p = new_pair(_metadata, self, userns, true, &pp);
		ASSERT_TRUE(hold(p));
		ASSERT_TRUE(wait_pool(3, 1, WAKE_MS));
		ASSERT_EQ(send(p, "r", 1, 0), 1);
		sleep_ms(50);
		ASSERT_TRUE(wait_pool(2, 1, WAKE_MS));
		EXPECT_EQ(info_flags(u[2]), MBUFMUX_F_PARKED);
		ASSERT_EQ(param_set("reserve", 0), 0);
		ASSERT_TRUE(wait_pool(3, 0, WAKE_MS));
		EXPECT_EQ(info_flags(u[2]), MBUFMUX_F_HOLDS_BUF);

		close_pairs(u, up, 3);
		close(p);
		close(pp);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		TH_LOG("%s: the reserve stayed out of reach",
		       userns ? "root in a user namespace" : "nobody");
	}
}

/* ---- per-user cap ---- */

#define USER_A		NOBODY	/* and root of a user namespace mapped to it */
#define USER_B		1000
#define USER_PARKED	(MBUFMUX_F_PARKED | MBUFMUX_F_USER_CAP)

/* A non-blocking send finds the user at its cap: parked on its FIFO. */
static bool park_user(int fd)
{
	return park_flags(fd, USER_PARKED);
}

/* The debugfs line of @uid says @socks sockets, @held held, @parked. */
static void expect_user(struct __test_metadata *_metadata, uid_t uid,
			long socks, long held, long parked)
{
	struct user_counts uc;

	ASSERT_EQ(users_read(uid, &uc), socks ? 1 : 0)
		TH_LOG("uid %u: no line, or one left behind", uid);
	EXPECT_EQ(uc.socks, socks) TH_LOG("uid %u: sockets", uid);
	EXPECT_EQ(uc.held, held) TH_LOG("uid %u: held", uid);
	EXPECT_EQ(uc.parked, parked) TH_LOG("uid %u: parked", uid);
}

/*
 * One unprivileged user cannot hold more than its cap: nobody's own
 * sockets and those of root of a user namespace mapped to nobody count
 * as one user. With the automatic cap (limit 8: 4), the first four of six
 * take buffers and the other two are parked on the user's FIFO (EAGAIN,
 * MBUFMUX_F_PARKED | MBUFMUX_F_USER_CAP), not on the pool, which has room
 * and gives it to root's sockets (exempt). An explicit cap of 3 applies at
 * once: a buffer given back while nobody holds 4 wakes nobody; the next
 * one does.
 */
TEST_F_TIMEOUT(adv, user_cap_holds, 120)
{
	int a[6], ap[6], p, pp, i;

	caps_set(_metadata, 8, 0, 0);
	EXPECT_EQ(users_cap(), 4);
	user_pairs(_metadata, USER_A, false, 3, a, ap);
	user_pairs(_metadata, USER_A, true, 3, a + 3, ap + 3);
	expect_user(_metadata, USER_A, 6, 0, 0);
	for (i = 0; i < 4; i++)
		ASSERT_TRUE(hold(a[i])) TH_LOG("socket %d", i);
	for (; i < 6; i++)
		ASSERT_TRUE(park_user(a[i])) TH_LOG("socket %d", i);
	expect_user(_metadata, USER_A, 6, 4, 2);
	ASSERT_TRUE(wait_pool(4, 0, 0));
	EXPECT_EQ(waiters_read(NULL, 0), 0);

	p = new_pair(_metadata, self, 0, true, &pp);
	ASSERT_TRUE(hold(p));
	ASSERT_TRUE(wait_pool(5, 0, 0));
	EXPECT_EQ(info_flags(a[4]), USER_PARKED);

	ASSERT_EQ(param_set("user_limit", 3), 0);
	EXPECT_EQ(users_cap(), 3);
	ASSERT_EQ(send(a[0], "r", 1, 0), 1);
	EXPECT_EQ(poll_one(a[4], POLLOUT, QUIET_MS), 0);
	EXPECT_EQ(info_flags(a[4]), USER_PARKED);
	expect_user(_metadata, USER_A, 6, 3, 2);
	ASSERT_EQ(send(a[1], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(a[4], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(a[4]), 0U);
	EXPECT_EQ(info_flags(a[5]), USER_PARKED);
	expect_user(_metadata, USER_A, 6, 3, 1);
	ASSERT_TRUE(hold(a[4]));
	ASSERT_TRUE(wait_pool(4, 0, 0));

	close_pairs(a, ap, 6);
	expect_user(_metadata, USER_A, 0, 0, 0);
	close(p);
	close(pp);
}

/*
 * Parked on the user's FIFO is parked: with both directions blocked, poll,
 * select and epoll show nothing although data waits, recv() fails with
 * EAGAIN, a blocking send() sleeps (SO_SNDTIMEO: EAGAIN, still parked in
 * its place); with MBUFMUX_BLOCK_SEND it reads. Errors and hang-ups still
 * show. The pool's queue and its waiters list never see it. When the
 * user's buffer comes back, a sleeping poll() and a sleeping send() wake.
 */
TEST_F_TIMEOUT(adv, user_cap_parked, 120)
{
	struct timeval tv = { .tv_usec = 200000 }, tv0 = {};
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	struct blocked_call c[2] = {};
	int a[3], ap[3], ep, val;
	char buf[8], out[100];
	fd_set rd, wr;

	caps_set(_metadata, 8, 0, 1);
	user_pairs(_metadata, USER_A, false, 3, a, ap);
	ASSERT_TRUE(hold(a[0]));
	ASSERT_TRUE(park_user(a[1]));
	ASSERT_TRUE(park_user(a[2]));

	ASSERT_EQ(send(ap[1], "data", 4, 0), 4);
	sleep_ms(50);
	EXPECT_EQ(poll_one(a[1], POLLIN | POLLOUT, QUIET_MS), 0);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(a[1], &rd);
	FD_SET(a[1], &wr);
	EXPECT_EQ(select(a[1] + 1, &rd, &wr, NULL, &tv0), 0);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(ep, 0);
	ev.data.fd = a[1];
	ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, a[1], &ev), 0);
	EXPECT_EQ(epoll_wait(ep, &ev, 1, QUIET_MS), 0);
	EXPECT_EQ(recv(a[1], buf, sizeof(buf), MSG_DONTWAIT), -1);
	EXPECT_EQ(errno, EAGAIN);
	ASSERT_EQ(setsockopt(a[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)),
		  0);
	EXPECT_EQ(send(a[1], "t", 1, 0), -1);
	EXPECT_EQ(errno, EAGAIN);
	ASSERT_EQ(setsockopt(a[1], SOL_SOCKET, SO_SNDTIMEO, &tv0, sizeof(tv0)),
		  0);
	expect_user(_metadata, USER_A, 3, 1, 2);

	/* Send-only blocking: it reads, still parked. */
	val = MBUFMUX_BLOCK_SEND;
	ASSERT_EQ(setsockopt(a[2], SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
			     sizeof(val)), 0);
	ASSERT_EQ(send(ap[2], "abcd", 4, 0), 4);
	EXPECT_EQ(poll_one(a[2], POLLIN | POLLOUT, WAKE_MS) &
		  (POLLIN | POLLOUT), POLLIN);
	ASSERT_EQ(recv(a[2], buf, sizeof(buf), MSG_DONTWAIT), 4);
	EXPECT_EQ(info_flags(a[2]), USER_PARKED);

	/* The peer's FIN shows through, as on the pool. */
	ASSERT_EQ(shutdown(ap[2], SHUT_WR), 0);
	EXPECT_TRUE(poll_one(a[2], POLLIN | POLLRDHUP, WAKE_MS) & POLLRDHUP);
	EXPECT_EQ(recv(a[2], buf, sizeof(buf), MSG_DONTWAIT), 0);
	EXPECT_EQ(info_flags(a[2]), USER_PARKED);
	ASSERT_TRUE(wait_pool(1, 0, 0));
	EXPECT_EQ(waiters_read(NULL, 0), 0);

	/* A sleeping send() on a[1], a sleeping poll() on a[2]. */
	fill(out, sizeof(out), 60, 0);
	c[0].op = CALL_SEND;
	c[0].fd = a[1];
	c[0].buf = out;
	c[0].len = sizeof(out);
	c[1].op = CALL_POLL;
	c[1].fd = a[2];
	c[1].events = POLLOUT;
	ASSERT_EQ(blocked_call_start(&c[0]), 0);
	ASSERT_EQ(blocked_call_start(&c[1]), 0);
	EXPECT_FALSE(blocked_call_join(&c[0], QUIET_MS));
	EXPECT_FALSE(blocked_call_join(&c[1], 0));

	/* a[0] flushes: a[1] wakes and sends, which hands the slot on. */
	ASSERT_EQ(send(a[0], "r", 1, 0), 1);
	ASSERT_TRUE(blocked_call_join(&c[0], WAKE_MS))
		TH_LOG("send() not woken by the user's buffer");
	EXPECT_EQ(c[0].ret, (ssize_t)sizeof(out)) TH_LOG("%s",
							 strerror(c[0].err));
	ASSERT_TRUE(blocked_call_join(&c[1], WAKE_MS))
		TH_LOG("poll() not woken by the user's buffer");
	EXPECT_TRUE(c[1].ret & POLLOUT);
	ASSERT_EQ(recv_all(ap[1], out, sizeof(out), WAKE_MS), sizeof(out));
	EXPECT_EQ(check(out, sizeof(out), 60, 0), -1);
	EXPECT_EQ(info_flags(a[2]), 0U);
	expect_user(_metadata, USER_A, 3, 1, 0);

	close(ep);
	close_pairs(a, ap, 3);
	expect_user(_metadata, USER_A, 0, 0, 0);
}

/*
 * One user cannot starve another. Root's sockets hold two of the pool's
 * four buffers; user A (nobody) has six sockets that all want one, user B
 * one. With a cap of 2, A holds two and parks four on its own FIFO, out of
 * the pool's queue: B, parked on the pool, is served by the first buffer
 * root gives back, and A's parked sockets stay parked though the pool has
 * room again. Without a cap (user_limit 16777216), A's four others queue
 * on the pool ahead of B and take both buffers root gives back: B stays
 * parked for as long as A holds.
 */
TEST_F_TIMEOUT(adv, user_cap_no_starvation, 120)
{
	int a[6], ap[6], b, bp, r[2], rp[2], i, round;
	bool capped;

	for (round = 0; round < 2; round++) {
		capped = !round;
		caps_set(_metadata, 4, 0, capped ? 2 : LIMIT_MAX);
		for (i = 0; i < 2; i++) {
			r[i] = new_pair(_metadata, self, i, true, &rp[i]);
			ASSERT_TRUE(hold(r[i]));
		}
		user_pairs(_metadata, USER_A, false, 6, a, ap);
		user_pairs(_metadata, USER_B, false, 1, &b, &bp);
		for (i = 0; i < 2; i++)
			ASSERT_TRUE(hold(a[i]));
		for (; i < 6; i++)
			ASSERT_TRUE(capped ? park_user(a[i]) : park(a[i]));
		ASSERT_TRUE(park(b));
		ASSERT_TRUE(wait_pool(4, capped ? 1 : 5, 0));
		expect_user(_metadata, USER_A, 6, capped ? 2 : 6,
			    capped ? 4 : 0);
		expect_user(_metadata, USER_B, 1, 1, 0);

		for (i = 0; i < 2; i++)
			ASSERT_EQ(send(r[i], "r", 1, 0), 1);
		if (capped) {
			ASSERT_TRUE(poll_one(b, POLLOUT, WAKE_MS) & POLLOUT)
				TH_LOG("B not served with A at its cap");
			EXPECT_EQ(info_flags(b), MBUFMUX_F_HOLDS_BUF);
			for (i = 2; i < 6; i++)
				EXPECT_EQ(info_flags(a[i]), USER_PARKED);
			ASSERT_TRUE(wait_pool(3, 0, WAKE_MS));
		} else {
			for (i = 2; i < 4; i++)
				ASSERT_TRUE(poll_one(a[i], POLLOUT, WAKE_MS) &
					    POLLOUT) TH_LOG("socket %d", i);
			EXPECT_EQ(poll_one(b, POLLOUT, QUIET_MS), 0)
				TH_LOG("B served although A queued first");
			EXPECT_EQ(info_flags(b), MBUFMUX_F_PARKED);
			ASSERT_TRUE(wait_pool(4, 3, WAKE_MS));
		}
		TH_LOG("%s: user B %s", capped ? "cap 2" : "no cap",
		       info_flags(b) & MBUFMUX_F_HOLDS_BUF ? "served" :
		       "still parked");

		close_pairs(a, ap, 6);
		close_pairs(&b, &bp, 1);
		close_pairs(r, rp, 2);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		expect_user(_metadata, USER_A, 0, 0, 0);
		expect_user(_metadata, USER_B, 0, 0, 0);
	}
}

#define UFIFO_N	6

/*
 * FIFO within a user: with a cap of 1, six sockets of user A park on its
 * FIFO behind its holder, in a known order. Each time the user's buffer
 * comes back, the oldest parked socket, and only it, is woken with the
 * slot; its next send takes a buffer and, emptying it, hands the slot on.
 */
TEST_F_TIMEOUT(adv, user_cap_fifo, 120)
{
	int a[UFIFO_N + 1], ap[UFIFO_N + 1], i, j, k;
	char c;

	caps_set(_metadata, 8, 0, 1);
	user_pairs(_metadata, USER_A, false, UFIFO_N + 1, a, ap);
	ASSERT_TRUE(hold(a[0]));
	for (i = 1; i <= UFIFO_N; i++)
		ASSERT_TRUE(park_user(a[i])) TH_LOG("socket %d", i);
	expect_user(_metadata, USER_A, UFIFO_N + 1, 1, UFIFO_N);
	ASSERT_TRUE(wait_pool(1, 0, 0));

	ASSERT_EQ(send(a[0], "r", 1, 0), 1);
	for (i = 1; i <= UFIFO_N; i++) {
		k = poll_first(a + i, UFIFO_N + 1 - i, POLLOUT, WAKE_MS);
		ASSERT_EQ(k, 0) TH_LOG("step %d: socket %d woke first", i,
				       i + k);
		EXPECT_EQ(info_flags(a[i]), 0U);
		for (j = i + 1; j <= UFIFO_N; j++)
			EXPECT_EQ(info_flags(a[j]), USER_PARKED)
				TH_LOG("step %d: socket %d", i, j);
		expect_user(_metadata, USER_A, UFIFO_N + 1, 1, UFIFO_N - i);
		ASSERT_EQ(send(a[i], "n", 1, MSG_DONTWAIT), 1);
		ASSERT_EQ(recv_all(ap[i], &c, 1, WAKE_MS), 1U);
		EXPECT_EQ(c, 'n');
	}
	expect_user(_metadata, USER_A, UFIFO_N + 1, 0, 0);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	close_pairs(a, ap, UFIFO_N + 1);
	expect_user(_metadata, USER_A, 0, 0, 0);
}

enum give_back { GIVE_FLUSH, GIVE_DRAIN, GIVE_SHUTDOWN, GIVE_CLOSE,
		 GIVE_WAYS };

static const char * const give_names[GIVE_WAYS] = {
	"flush", "drain", "shutdown", "close",
};

/*
 * The user's parked sockets wake when one of its sockets gives its buffer
 * back, whichever way: a send that flushes, bytes TCP takes later (the
 * peer reads a backlog: the tx work gives it back), shutdown(SHUT_WR),
 * close(). Each time a blocking send() sleeping first on the user's FIFO
 * completes, and the socket parked after it is handed the slot in turn.
 */
TEST_F_TIMEOUT(adv, user_cap_wake, 120)
{
	struct blocked_call c;
	int a[3], ap[3], way;
	char out[100], *buf;
	long total = 0;

	buf = malloc(CHUNK);
	ASSERT_NE(buf, NULL);
	for (way = 0; way < GIVE_WAYS; way++) {
		caps_set(_metadata, 8, 0, 1);
		user_pairs(_metadata, USER_A, false, 3, a, ap);
		if (way == GIVE_DRAIN) {
			total = send_backlog_staged(a[0], 61);
			ASSERT_GT(total, 0);
			ASSERT_EQ(info_flags(a[0]), MBUFMUX_F_HOLDS_BUF);
		} else {
			ASSERT_TRUE(hold(a[0]));
		}
		memset(&c, 0, sizeof(c));
		c.op = CALL_SEND;
		c.fd = a[1];
		c.buf = out;
		c.len = sizeof(out);
		fill(out, sizeof(out), 62, 0);
		ASSERT_EQ(blocked_call_start(&c), 0);
		ASSERT_EQ(wait_flags(a[1], ~0U, USER_PARKED, WAKE_MS),
			  USER_PARKED);
		ASSERT_TRUE(park_user(a[2]));
		EXPECT_FALSE(blocked_call_join(&c, QUIET_MS));

		switch (way) {
		case GIVE_FLUSH:
			ASSERT_EQ(send(a[0], "r", 1, 0), 1);
			break;
		case GIVE_DRAIN:
			recv_pattern(_metadata, ap[0], buf, total, 61);
			break;
		case GIVE_SHUTDOWN:
			ASSERT_EQ(shutdown(a[0], SHUT_WR), 0);
			break;
		case GIVE_CLOSE:
			close(a[0]);
			a[0] = -1;
			break;
		}
		ASSERT_TRUE(blocked_call_join(&c, WAKE_MS))
			TH_LOG("%s: the sleeping send() was not woken",
			       give_names[way]);
		EXPECT_EQ(c.ret, (ssize_t)sizeof(out));
		ASSERT_EQ(recv_all(ap[1], buf, sizeof(out), WAKE_MS),
			  sizeof(out));
		EXPECT_EQ(check(buf, sizeof(out), 62, 0), -1);
		ASSERT_TRUE(poll_one(a[2], POLLOUT, WAKE_MS) & POLLOUT)
			TH_LOG("%s: the next one was not handed the slot",
			       give_names[way]);
		expect_user(_metadata, USER_A, way == GIVE_CLOSE ? 2 : 3, 1,
			    0);
		if (a[0] >= 0)
			close(a[0]);
		close(ap[0]);
		close_pairs(a + 1, ap + 1, 2);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		expect_user(_metadata, USER_A, 0, 0, 0);
	}
	free(buf);
}

/*
 * Sockets parked on the user's FIFO go away cleanly. Behind a holder, with
 * a cap of 1: shutdown(SHUT_WR) takes one off (EPIPE on send, it reads
 * again), shutdown(SHUT_WR) under a sleeping send() ends it with EPIPE,
 * close() takes another off, a reset peer shows through (POLLERR) and
 * leaves the socket in its place; the rest keep their order. A socket
 * handed the slot that closes without using it hands it on. With every
 * socket closed, the user has no line left in debugfs.
 */
TEST_F_TIMEOUT(adv, user_cap_teardown, 120)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	struct blocked_call c = {};
	int a[6], ap[6], i;
	char buf[8], out[10];
	short ev;

	caps_set(_metadata, 8, 0, 1);
	user_pairs(_metadata, USER_A, false, 6, a, ap);
	ASSERT_TRUE(hold(a[0]));
	c.op = CALL_SEND;
	c.fd = a[1];
	c.buf = out;
	c.len = sizeof(out);
	ASSERT_EQ(blocked_call_start(&c), 0);
	ASSERT_EQ(wait_flags(a[1], ~0U, USER_PARKED, WAKE_MS), USER_PARKED);
	for (i = 2; i < 6; i++)
		ASSERT_TRUE(park_user(a[i])) TH_LOG("socket %d", i);
	expect_user(_metadata, USER_A, 6, 1, 5);

	/* Shut down while parked: off the FIFO, reads again. */
	ASSERT_EQ(shutdown(a[2], SHUT_WR), 0);
	EXPECT_EQ(info_flags(a[2]), 0U);
	EXPECT_EQ(send(a[2], "x", 1, MSG_NOSIGNAL), -1);
	EXPECT_EQ(errno, EPIPE);
	ASSERT_EQ(send(ap[2], "rd", 2, 0), 2);
	EXPECT_TRUE(poll_one(a[2], POLLIN, WAKE_MS) & POLLIN);
	EXPECT_EQ(recv(a[2], buf, sizeof(buf), MSG_DONTWAIT), 2);
	expect_user(_metadata, USER_A, 6, 1, 4);

	/* Shut down under a sleeping send(): EPIPE. */
	ASSERT_EQ(shutdown(a[1], SHUT_WR), 0);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, -1);
	EXPECT_EQ(c.err, EPIPE);
	expect_user(_metadata, USER_A, 6, 1, 3);

	/* Closed while parked. */
	close(a[3]);
	a[3] = -1;
	expect_user(_metadata, USER_A, 5, 1, 2);

	/*
	 * A reset shows through, and the dead socket lets go of its place at
	 * once, without the program's help: a[5] stays parked behind the
	 * holder.
	 */
	ASSERT_EQ(setsockopt(ap[4], SOL_SOCKET, SO_LINGER, &lin, sizeof(lin)),
		  0);
	close(ap[4]);
	ap[4] = -1;
	ev = poll_one(a[4], POLLOUT, WAKE_MS);
	EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("revents %#x", ev);
	EXPECT_EQ(wait_flags(a[4], ~0U, 0, WAKE_MS), 0U);
	EXPECT_EQ(info_flags(a[5]), USER_PARKED);
	expect_user(_metadata, USER_A, 5, 1, 1);
	close(a[4]);
	a[4] = -1;
	expect_user(_metadata, USER_A, 4, 1, 1);

	/* The slot goes to a[5]. */
	ASSERT_EQ(send(a[0], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(a[5], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(a[5]), 0U);
	expect_user(_metadata, USER_A, 4, 1, 0);

	for (i = 0; i < 6; i++) {
		if (a[i] >= 0)
			close(a[i]);
		if (ap[i] >= 0)
			close(ap[i]);
	}
	expect_user(_metadata, USER_A, 0, 0, 0);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
}

/*
 * user_limit changed at run time. Raised from 1 to 3, it hands the new
 * room to the user's parked sockets at once, oldest first. Lowered to 1,
 * it takes nothing back: buffers given back wake nobody until the user is
 * under the cap again. The automatic cap follows limit and reserve:
 * raising the limit wakes parked sockets of a capped user too.
 */
TEST_F_TIMEOUT(adv, user_cap_runtime, 120)
{
	int a[6], ap[6], i;

	caps_set(_metadata, 8, 0, 1);
	user_pairs(_metadata, USER_A, false, 6, a, ap);
	ASSERT_TRUE(hold(a[0]));
	for (i = 1; i < 6; i++)
		ASSERT_TRUE(park_user(a[i])) TH_LOG("socket %d", i);

	/* Raised: two more slots, to the two oldest. */
	ASSERT_EQ(param_set("user_limit", 3), 0);
	for (i = 1; i < 3; i++) {
		ASSERT_TRUE(poll_one(a[i], POLLOUT, WAKE_MS) & POLLOUT)
			TH_LOG("socket %d", i);
		ASSERT_TRUE(hold(a[i]));
	}
	for (; i < 6; i++)
		EXPECT_EQ(info_flags(a[i]), USER_PARKED) TH_LOG("socket %d", i);
	expect_user(_metadata, USER_A, 6, 3, 3);

	/* Lowered: nothing taken back, nobody woken until under the cap. */
	ASSERT_EQ(param_set("user_limit", 1), 0);
	EXPECT_EQ(users_cap(), 1);
	for (i = 0; i < 3; i++)
		EXPECT_EQ(info_flags(a[i]), MBUFMUX_F_HOLDS_BUF);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(send(a[i], "r", 1, 0), 1);
		EXPECT_EQ(poll_one(a[3], POLLOUT, QUIET_MS), 0)
			TH_LOG("woken with %d of 3 buffers back", i + 1);
	}
	ASSERT_EQ(send(a[2], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(a[3], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(a[4]), USER_PARKED);
	expect_user(_metadata, USER_A, 6, 1, 2);

	/* Automatic: (2 - 0) / 2 = 1, then (8 - 0) / 2 = 4 wakes both. */
	caps_set(_metadata, 2, 0, 0);
	EXPECT_EQ(users_cap(), 1);
	EXPECT_EQ(info_flags(a[4]), USER_PARKED);
	ASSERT_EQ(param_set("limit", 8), 0);
	EXPECT_EQ(users_cap(), 4);
	for (i = 4; i < 6; i++)
		ASSERT_TRUE(poll_one(a[i], POLLOUT, WAKE_MS) & POLLOUT)
			TH_LOG("socket %d", i);
	expect_user(_metadata, USER_A, 6, 3, 0);

	/* A larger reserve lowers it: (8 - 6) / 2 = 1. */
	ASSERT_EQ(param_set("reserve", 6), 0);
	EXPECT_EQ(users_cap(), 1);
	close_pairs(a, ap, 6);
	expect_user(_metadata, USER_A, 0, 0, 0);
}

/*
 * Bad user_limit writes fail with EINVAL (ERANGE for an overflow) and leave
 * the old value: not a number, negative, above 16777216. 0 (automatic)
 * and 16777216 are taken. The cap in force shows in debugfs.
 */
TEST_F_TIMEOUT(adv, user_cap_bad_values, 120)
{
	static const char * const bad[] = {
		"abc", "12abc", "-1", "16777217", "1.5", " ", "\n",
	};

	caps_set(_metadata, 8, 2, 5);
	expect_refused(_metadata, "user_limit", bad, ARRAY_SIZE(bad), 5);
	EXPECT_EQ(users_cap(), 5);

	ASSERT_EQ(param_write("user_limit", "16777216"), 0);
	EXPECT_EQ(users_cap(), LIMIT_MAX);
	ASSERT_EQ(param_write("user_limit", "0"), 0);
	EXPECT_EQ(param_get("user_limit"), 0);
	EXPECT_EQ(users_cap(), 3);
	ASSERT_EQ(param_write("user_limit", "0x10"), 0);
	EXPECT_EQ(users_cap(), 16);
}

/* In a child running as nobody: the files it must not write. */
static int nobody_writes(void)
{
	static const char * const files[] = {
		PARAM_DIR "limit", PARAM_DIR "reserve", PARAM_DIR "buf_size",
		PARAM_DIR "user_limit", DBG_DIR "stats", DBG_DIR "waiters",
		USERS_FILE, DBG_ROOT "pools",
	};
	size_t i;
	int fd;

	if (become_user(NOBODY, false))
		return 100;
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		fd = open(files[i], O_WRONLY | O_CLOEXEC);
		if (fd >= 0 || errno != EACCES)
			return 1 + i;
	}
	/* Parameters are readable, debugfs is not. */
	fd = open(PARAM_DIR "limit", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 20;
	close(fd);
	fd = open(DBG_DIR "stats", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		return 21;
	return 0;
}

/*
 * debugfs files are read-only (0444): root cannot write them either (no
 * write method), and they stay as they were; nobody cannot open them at
 * all, nor write the parameters (0644, buf_size 0444).
 */
TEST_F_TIMEOUT(adv, debugfs_readonly, 120)
{
	static const char * const files[] = {
		DBG_DIR "stats", DBG_DIR "waiters", USERS_FILE,
		DBG_ROOT "pools",
	};
	static const struct {
		const char *name;
		unsigned int mode;
	} params[] = {
		{ "limit", 0644 }, { "reserve", 0644 }, { "buf_size", 0444 },
		{ "user_limit", 0644 },
	};
	struct pool_stats st0, st;
	char path[128];
	struct stat sb;
	int fd, status;
	pid_t pid, ppid;
	size_t i;

	ASSERT_EQ(stats_read(&st0), 0);
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		ASSERT_EQ(stat(files[i], &sb), 0) TH_LOG("%s", files[i]);
		EXPECT_TRUE(S_ISREG(sb.st_mode));
		EXPECT_EQ(sb.st_mode & 07777, 0444U) TH_LOG("%s", files[i]);
		/* Root may open it for writing, never write it. */
		fd = open(files[i], O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			EXPECT_EQ(write(fd, "in_use 99\n", 10), -1)
				TH_LOG("%s", files[i]);
			close(fd);
		} else {
			EXPECT_EQ(errno, EACCES) TH_LOG("%s", files[i]);
		}
	}
	for (i = 0; i < ARRAY_SIZE(params); i++) {
		snprintf(path, sizeof(path), PARAM_DIR "%s", params[i].name);
		ASSERT_EQ(stat(path, &sb), 0);
		EXPECT_EQ(sb.st_mode & 07777, params[i].mode)
			TH_LOG("%s", path);
	}
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.in_use, st0.in_use);
	EXPECT_EQ(st.limit, st0.limit);

	ppid = getpid();
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		child_setup(ppid, -1, -1);
		_exit(nobody_writes());
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0)
		TH_LOG("as nobody: check %d failed", WEXITSTATUS(status));
}

static long long cg_current(const char *cg)
{
	char path[128];

	snprintf(path, sizeof(path), CGROUP_MNT "/%s/memory.current", cg);
	return read_number(path);
}

static int cg_enter(const char *cg)
{
	char path[128], pid[32];

	snprintf(path, sizeof(path), CGROUP_MNT "%s%s/cgroup.procs",
		 *cg ? "/" : "", cg);
	snprintf(pid, sizeof(pid), "%d\n", getpid());
	return write_text(path, pid);
}

#define CG_BYTES	(2 << 20)

/* An empty send: a socket that holds an empty buffer gives it back. */
static bool give_back(int fd)
{
	return !send(fd, "", 0, 0);
}

static bool holds_buf(int fd)
{
	return info_flags(fd) == MBUFMUX_F_HOLDS_BUF;
}

/* How many of the @n sockets @fds @op succeeds on. */
static long count_ok(const int *fds, long n, bool (*op)(int fd))
{
	long i, ok = 0;

	for (i = 0; i < n; i++)
		ok += op(fds[i]);
	return ok;
}

/*
 * cgroup2 with the memory controller, cgroups mbx-a and mbx-b, and 2 * n
 * socket pairs made in mbx-a, for about CG_BYTES of buffers; the process
 * is then in mbx-b.
 *
 * cgroup2 is mounted in a mount namespace of the test's own, gone with it.
 * The two cgroups are left behind, empty: removing them would switch the
 * kernel's socket accounting off again (memcg_sockets_enabled_key) at
 * some later time, from an RCU callback, patching the text of the TCP
 * stack while later tests run. Under qemu's TCG that patching has crashed
 * the guest ("Oops: int3" in sk_forced_mem_schedule()).
 */
struct cg_setup {
	long n;
	long long bytes;
	int *fd;
	int *peer;
};

static void cg_setup(struct __test_metadata *_metadata,
		     struct _test_data_adv *self, struct cg_setup *cg)
{
	static const char * const cgroups[] = { "mbx-a", "mbx-b" };
	char path[128];
	size_t k;
	long i;

	cg->n = (CG_BYTES + self->buf_size - 1) / self->buf_size;
	if (cg->n > 2000)
		cg->n = 2000;
	cg->bytes = cg->n * self->buf_size;
	cg->fd = calloc(2 * cg->n, sizeof(int));
	cg->peer = calloc(2 * cg->n, sizeof(int));
	ASSERT_TRUE(cg->fd && cg->peer);
	ASSERT_EQ(raise_nofile(4 * cg->n + 256), 0);

	ASSERT_EQ(unshare(CLONE_NEWNS), 0) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	mkdir(CGROUP_MNT, 0755);
	ASSERT_EQ(mount("none", CGROUP_MNT, "cgroup2", 0, NULL), 0)
		TH_LOG("cannot mount cgroup2: %s", strerror(errno));
	ASSERT_EQ(write_text(CGROUP_MNT "/cgroup.subtree_control", "+memory"),
		  0) TH_LOG("no memory controller");
	for (k = 0; k < ARRAY_SIZE(cgroups); k++) {
		snprintf(path, sizeof(path), CGROUP_MNT "/%s", cgroups[k]);
		ASSERT_TRUE(!mkdir(path, 0755) || errno == EEXIST)
			TH_LOG("%s: %s", path, strerror(errno));
	}
	ASSERT_EQ(cg_enter("mbx-a"), 0);
	for (i = 0; i < 2 * cg->n; i++)
		cg->fd[i] = new_pair(_metadata, self, i, true, &cg->peer[i]);
	ASSERT_EQ(cg_enter("mbx-b"), 0);
	sleep_ms(100);
}

static void cg_cleanup(struct __test_metadata *_metadata,
		       struct cg_setup *cg)
{
	close_pairs(cg->fd, cg->peer, 2 * cg->n);
	ASSERT_EQ(cg_enter(""), 0);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	free(cg->fd);
	free(cg->peer);
}

/*
 * Memory is charged to the socket's cgroup: sockets created in cgroup A
 * take their buffers while the process is in cgroup B, directly (send)
 * and through the wait list (parked, then served by a limit raised from
 * B): A's memory.current grows by about the buffers' size, B's does not;
 * giving them back uncharges A.
 */
TEST_F_TIMEOUT(adv, memcg_charge, 300)
{
	long long a0, b0, a1, b1;
	struct cg_setup cg;
	int *fd;
	long n;

	cg_setup(_metadata, self, &cg);
	fd = cg.fd;
	n = cg.n;

	/* Taken by send() from B. */
	ASSERT_EQ(limits_set(2 * n + 1, 0), 0);
	a0 = cg_current("mbx-a");
	b0 = cg_current("mbx-b");
	ASSERT_EQ(count_ok(fd, n, hold), n);
	a1 = cg_current("mbx-a");
	b1 = cg_current("mbx-b");
	TH_LOG("%ld buffers (%lld bytes) sent from B: A +%lld, B +%lld", n,
	       cg.bytes, a1 - a0, b1 - b0);
	EXPECT_GE(a1 - a0, cg.bytes / 2);
	EXPECT_LT(b1 - b0, cg.bytes / 4);
	ASSERT_EQ(count_ok(fd, n, give_back), n);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* Parked in A, served by a limit raised from B. */
	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_TRUE(hold(fd[0]));
	ASSERT_EQ(count_ok(fd + 1, n, park), n);
	a0 = cg_current("mbx-a");
	b0 = cg_current("mbx-b");
	ASSERT_EQ(limits_set(n + 1, 0), 0);
	ASSERT_TRUE(wait_pool(n + 1, 0, WAKE_MS));
	a1 = cg_current("mbx-a");
	b1 = cg_current("mbx-b");
	TH_LOG("%ld waiters served by a limit raised from B: A +%lld, B +%lld",
	       n, a1 - a0, b1 - b0);
	EXPECT_GE(a1 - a0, cg.bytes / 2);
	EXPECT_LT(b1 - b0, cg.bytes / 4);

	/* The served buffers are empty: giving them back sends nothing. */
	ASSERT_EQ(count_ok(fd + 1, n, give_back), n);
	ASSERT_TRUE(wait_pool(1, 0, WAKE_MS));
	a0 = cg_current("mbx-a");
	TH_LOG("given back: A -%lld", a1 - a0);
	EXPECT_GE(a1 - a0, cg.bytes / 2);
	cg_cleanup(_metadata, &cg);
}

/*
 * A buffer handed on is charged to the socket it is handed to: holders
 * made in cgroup B let their buffers go to waiters made in cgroup A,
 * which later give them back (empty, nothing sent): that uncharges A, not
 * B. (B's sockets are charged for the bytes they send meanwhile, which is
 * why nothing is measured across the handoff itself.)
 */
TEST_F_TIMEOUT(adv, memcg_handoff, 300)
{
	long long a0, b0, a1, b1;
	struct cg_setup cg;
	int *fd;
	long i, n;

	cg_setup(_metadata, self, &cg);
	fd = cg.fd;
	n = cg.n;

	/* The holders, made again in B. */
	ASSERT_EQ(limits_set(n, 0), 0);
	for (i = 0; i < n; i++) {
		close(fd[n + i]);
		close(cg.peer[n + i]);
		fd[n + i] = new_pair(_metadata, self, i, true, &cg.peer[n + i]);
	}
	ASSERT_EQ(count_ok(fd + n, n, hold), n);
	ASSERT_EQ(count_ok(fd, n, park), n);
	ASSERT_EQ(count_ok(fd + n, n, give_back), n);
	ASSERT_TRUE(wait_pool(n, 0, WAKE_MS));
	ASSERT_EQ(count_ok(fd, n, holds_buf), n);

	a0 = cg_current("mbx-a");
	b0 = cg_current("mbx-b");
	ASSERT_EQ(count_ok(fd, n, give_back), n);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	a1 = cg_current("mbx-a");
	b1 = cg_current("mbx-b");
	TH_LOG("%ld buffers handed from B's sockets to A's, given back by A's: A -%lld, B -%lld",
	       n, a0 - a1, b0 - b1);
	EXPECT_GE(a0 - a1, cg.bytes / 2)
		TH_LOG("the handed buffers were not charged to A");
	EXPECT_LT(b0 - b1, cg.bytes / 4)
		TH_LOG("the handed buffers stayed charged to B, which allocated them");
	cg_cleanup(_metadata, &cg);
}

/* ---- random stress ---- */

#define SLOTS		64
#define CHAOS		6
#define STRESS_FLOWERS	2
#define STRESS_PER	2

enum chaos_op {
	OP_OPEN, OP_ATTACH, OP_SEND, OP_SEND_BACK, OP_RECV, OP_POLL,
	OP_BLOCK, OP_INFO, OP_SHUTDOWN, OP_CLOSE, OP_RESET, OP_POKE, NR_OPS
};

static const char * const op_names[NR_OPS] = {
	"open", "attach", "send", "send_back", "recv", "poll", "block",
	"info", "shutdown", "close", "reset", "poke",
};

/* How often each operation is chosen, out of the sum. */
static const unsigned int op_weight[NR_OPS] = {
	10, 4, 25, 5, 20, 8, 5, 5, 3, 6, 2, 7,
};

struct slot {
	pthread_mutex_t lock;	/* taken to fill or empty the slot */
	int tx;
	int rx;
};

struct stress {
	struct slot slot[SLOTS];
	struct lsn lsn[CHAOS];
	int poke[2 * STRESS_FLOWERS * STRESS_PER];
	int npoke;
	long buf_size;
	bool stop;
	long ops[NR_OPS];
	long unexpected;
	long anomalies;
	pthread_mutex_t lock;
	char first[160];
};

struct chaos {
	pthread_t thread;
	struct stress *s;
	int id;
	uint64_t seed;
};

static void stress_note(struct stress *s, long *counter, const char *fmt,
			...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	if (!s->unexpected && !s->anomalies) {
		va_start(ap, fmt);
		vsnprintf(s->first, sizeof(s->first), fmt, ap);
		va_end(ap);
	}
	(*counter)++;
	pthread_mutex_unlock(&s->lock);
}

/* Errors a call may meet on a socket other threads shut down or close. */
static bool expected_errno(int err)
{
	switch (err) {
	case EAGAIN:
	case EPIPE:
	case ECONNRESET:
	case ENOTCONN:
	case EBADF:
	case ENOTSOCK:
	case EEXIST:
	case ENOPROTOOPT:
	case EOPNOTSUPP:
		return true;
	}
	return false;
}

static void chaos_check(struct stress *s, enum chaos_op op, long ret)
{
	if (ret < 0 && !expected_errno(errno))
		stress_note(s, &s->unexpected, "%s: %s", op_names[op],
			    strerror(errno));
}

/* A slot's socket, either side, read without the lock: may be stale. */
static int chaos_fd(struct chaos *c, struct slot *sl)
{
	if (rnd(&c->seed) & 1)
		return __atomic_load_n(&sl->rx, __ATOMIC_RELAXED);
	return __atomic_load_n(&sl->tx, __ATOMIC_RELAXED);
}

static void chaos_open(struct chaos *c, struct slot *sl)
{
	struct timeval tv = { .tv_usec = 5000 };
	int fd, peer, val;

	pthread_mutex_lock(&sl->lock);
	if (sl->tx >= 0)
		goto out;
	fd = lsn_pair(&c->s->lsn[c->id], &peer);
	if (fd < 0) {
		stress_note(c->s, &c->s->unexpected, "open: %s",
			    strerror(errno));
		goto out;
	}
	if (rnd(&c->seed) % 4)
		chaos_check(c->s, OP_ATTACH, attach(fd));
	if (rnd(&c->seed) % 3 == 0)
		chaos_check(c->s, OP_ATTACH, attach(peer));
	/* Nothing may block for long: non-blocking, or short timeouts. */
	if (rnd(&c->seed) & 1)
		set_nonblock(fd);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(peer, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	val = rnd(&c->seed) & 1;
	setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, sizeof(val));
	__atomic_store_n(&sl->rx, peer, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->tx, fd, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&sl->lock);
}

static void chaos_close(struct chaos *c, struct slot *sl, bool reset)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	int tx, rx;

	pthread_mutex_lock(&sl->lock);
	tx = sl->tx;
	rx = sl->rx;
	__atomic_store_n(&sl->tx, -1, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->rx, -1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&sl->lock);
	if (tx < 0)
		return;
	if (reset)
		setsockopt(rnd(&c->seed) & 1 ? tx : rx, SOL_SOCKET, SO_LINGER,
			   &lin, sizeof(lin));
	if (rnd(&c->seed) & 1) {
		close(tx);
		close(rx);
	} else {
		close(rx);
		close(tx);
	}
}

static void chaos_step(struct chaos *c, char *buf)
{
	struct stress *s = c->s;
	struct slot *sl = &s->slot[rnd(&c->seed) % SLOTS];
	unsigned int w = rnd(&c->seed) % 100, sum = 0;
	struct mbufmux_info info;
	enum chaos_op op;
	int fd, val, flags;
	size_t len;

	for (op = 0; op < NR_OPS - 1; op++) {
		sum += op_weight[op];
		if (w < sum)
			break;
	}
	__atomic_add_fetch(&s->ops[op], 1, __ATOMIC_RELAXED);
	if (op == OP_SEND)
		fd = __atomic_load_n(&sl->tx, __ATOMIC_RELAXED);
	else if (op == OP_SEND_BACK)
		fd = __atomic_load_n(&sl->rx, __ATOMIC_RELAXED);
	else
		fd = chaos_fd(c, sl);
	if (fd < 0 && op != OP_OPEN && op != OP_POKE)
		return;
	switch (op) {
	case OP_OPEN:
		chaos_open(c, sl);
		break;
	case OP_ATTACH:
		chaos_check(s, op, attach(fd));
		break;
	case OP_SEND:
	case OP_SEND_BACK:
		len = 1 + rnd(&c->seed) % (2 * s->buf_size);
		if (len > CHUNK)
			len = CHUNK;
		flags = MSG_NOSIGNAL;
		if (rnd(&c->seed) & 1)
			flags |= MSG_MORE;
		if (rnd(&c->seed) & 1)
			flags |= MSG_DONTWAIT;
		chaos_check(s, op, send(fd, buf, len, flags));
		break;
	case OP_RECV:
		chaos_check(s, op, recv(fd, buf, CHUNK, MSG_DONTWAIT));
		break;
	case OP_POLL:
		poll_one(fd, POLLIN | POLLOUT, rnd(&c->seed) % 3);
		break;
	case OP_BLOCK:
		val = rnd(&c->seed) & 1;
		chaos_check(s, op, setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK,
					      &val, sizeof(val)));
		break;
	case OP_INFO:
		if (!info_get(fd, &info)) {
			if ((info.flags & MBUFMUX_F_HOLDS_BUF) &&
			    (info.flags & MBUFMUX_F_PARKED))
				stress_note(s, &s->anomalies,
					    "parked and holding");
			if (info.staged > s->buf_size)
				stress_note(s, &s->anomalies,
					    "%u bytes staged", info.staged);
		} else {
			chaos_check(s, op, -1);
		}
		break;
	case OP_SHUTDOWN:
		chaos_check(s, op, shutdown(fd, rnd(&c->seed) % 3));
		break;
	case OP_CLOSE:
	case OP_RESET:
		chaos_close(c, sl, op == OP_RESET);
		break;
	case OP_POKE:
		/* The flowers' sockets: looked at, never disturbed. */
		fd = s->poke[rnd(&c->seed) % s->npoke];
		val = rnd(&c->seed) & 1;
		if (rnd(&c->seed) & 1)
			poll_one(fd, POLLIN | POLLOUT, 0);
		else if (setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
				    sizeof(val)) || info_get(fd, &info))
			stress_note(s, &s->unexpected, "poke: %s",
				    strerror(errno));
		break;
	case NR_OPS:
		break;
	}
}

static void *chaos_fn(void *arg)
{
	struct chaos *c = arg;
	char *buf = malloc(CHUNK);

	if (!buf) {
		stress_note(c->s, &c->s->unexpected, "no memory");
		return NULL;
	}
	memset(buf, 'c', CHUNK);
	/* Every other thread attaches without CAP_NET_ADMIN. */
	net_admin(c->id & 1);
	while (!__atomic_load_n(&c->s->stop, __ATOMIC_ACQUIRE))
		chaos_step(c, buf);
	free(buf);
	return NULL;
}

/*
 * The bounded random stress (MBUFMUX_STRESS_SECS): six threads, half of
 * them unprivileged, do random operations on 64 shared slots of socket
 * pairs: open (attached or not, blocking with short timeouts or not),
 * attach again, send with random sizes and MSG_MORE both ways, receive,
 * poll, MBUFMUX_BLOCK, MBUFMUX_INFO, shutdown, close, reset; on sockets
 * another thread may be closing. Two more threads drive four byte-exact
 * flows that the others only poll and poke. The main thread changes limit
 * and reserve at random meanwhile. Every call fails only as a socket shut
 * down or closed under it may; MBUFMUX_INFO stays coherent; no more
 * buffers are out than the highest limit; every byte of the flows arrives;
 * at the end the pool is at rest and its counters add up.
 */
TEST_F_TIMEOUT(adv, random_stress, 1200)
{
	long secs = knob("MBUFMUX_STRESS_SECS", 10, 60);
	long long end, changes = 0, max_limit = initial.limit, total = 0;
	struct flower w[STRESS_FLOWERS];
	struct pool_stats st0, st;
	struct chaos c[CHAOS];
	uint64_t seed, bytes;
	long limit, reserve;
	struct stress *s;
	bool flows_stop = false;
	int i, j;

	seed = test_seed(_metadata);
	s = calloc(1, sizeof(*s));
	ASSERT_NE(s, NULL);
	s->buf_size = self->buf_size;
	pthread_mutex_init(&s->lock, NULL);
	for (i = 0; i < SLOTS; i++) {
		pthread_mutex_init(&s->slot[i].lock, NULL);
		s->slot[i].tx = -1;
		s->slot[i].rx = -1;
	}
	for (i = 0, j = 0; i < CHAOS; i++)
		j += !lsn_open(&s->lsn[i], i & 1 ? AF_INET6 : AF_INET, false);
	ASSERT_EQ(j, CHAOS);
	ASSERT_EQ(stats_read(&st0), 0);
	flowers_start(_metadata, self, w, STRESS_FLOWERS, STRESS_PER, CHUNK,
		      &flows_stop, seed);
	for (i = 0; i < STRESS_FLOWERS; i++)
		for (j = 0; j < STRESS_PER; j++) {
			s->poke[s->npoke++] = w[i].fl[j].tx;
			s->poke[s->npoke++] = w[i].fl[j].rx;
		}
	for (i = 0; i < CHAOS; i++) {
		c[i].s = s;
		c[i].id = i;
		c[i].seed = seed + (i + 1) * 0xbf58476d1ce4e5b9ULL;
		ASSERT_EQ(pthread_create(&c[i].thread, NULL, chaos_fn, &c[i]),
			  0);
	}

	TH_LOG("%ld s of random operations", secs);
	end = now_ms() + secs * 1000;
	while (now_ms() < end) {
		sleep_ms(2 + rnd(&seed) % 20);
		ASSERT_EQ(stats_read(&st), 0);
		EXPECT_LE(st.in_use, max_limit);
		if (st.in_use > 1 && rnd(&seed) % 4 == 0)
			limit = st.in_use / 2;
		else if (rnd(&seed) % 8 == 0)
			limit = 1000;
		else
			limit = 1 + rnd(&seed) % 24;
		reserve = rnd(&seed) % 3 == 0 ? rnd(&seed) % limit : 0;
		if (limit > max_limit)
			max_limit = limit;
		ASSERT_EQ(limits_set(limit, reserve), 0);
		changes++;
	}
	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	for (i = 0; i < CHAOS; i++)
		pthread_join(c[i].thread, NULL);
	for (i = 0; i < SLOTS; i++) {
		if (s->slot[i].tx >= 0)
			close(s->slot[i].tx);
		if (s->slot[i].rx >= 0)
			close(s->slot[i].rx);
	}
	ASSERT_EQ(params_write(&initial), 0);
	__atomic_store_n(&flows_stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, STRESS_FLOWERS, &bytes);

	for (i = 0; i < NR_OPS; i++)
		total += s->ops[i];
	TH_LOG("%lld operations, %lld parameter changes, %llu flow bytes",
	       total, changes, (unsigned long long)bytes);
	for (i = 0; i < NR_OPS; i++)
		TH_LOG("  %-9s %ld", op_names[i], s->ops[i]);
	EXPECT_EQ(s->unexpected, 0) TH_LOG("first: %s", s->first);
	EXPECT_EQ(s->anomalies, 0) TH_LOG("first: %s", s->first);
	EXPECT_GT(bytes, 0U);
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("in_use %lld waiters %lld", st.in_use, st.waiters);
	TH_LOG("%lld allocs, %lld waits: %lld handoffs, %lld cancels",
	       st.allocs - st0.allocs, st.waits - st0.waits,
	       st.handoffs - st0.handoffs, st.cancels - st0.cancels);
	EXPECT_EQ(st.waits - st0.waits, st.handoffs - st0.handoffs +
		  st.cancels - st0.cancels);
	for (i = 0; i < CHAOS; i++)
		close(s->lsn[i].fd);
	free(s);
}

TEST_HARNESS_MAIN
