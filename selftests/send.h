/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fixture (mbufmux_send, with its variants ipv4 and ipv6) of the
 * selftests of the send path (send_*.c, one program per topic), and what
 * they share; the helpers that do not fail a test are in
 * lib/mbufmux_test_lib.h. Include it first, after defining _GNU_SOURCE.
 *
 * Selftests of the send path of the "mbufmux" TCP upper-layer protocol
 * (mbufmux_tcp.ko): the pool holds the unsent bytes (issue 10) and TCP's
 * semantics are kept under the ULP (issue 11). The contract they check
 * (send-path-spec.md), per attached socket, with staged = the bytes in the
 * ULP's buffer and notsent = TCP's write_seq - snd_nxt:
 *
 * - the bound: a socket holds a buffer whenever staged + notsent > 0, and
 *   staged + notsent <= buf_size, so that the sum of SIOCOUTQNSD (which
 *   counts the staged bytes) over attached sockets stays within
 *   limit * buf_size; a drained holder gives its buffer back by itself and
 *   the head waiter gets it, and a holder that keeps sending takes turns
 *   with the sockets parked behind it (bound_*, drain_serves_fifo,
 *   fair_turns);
 * - nothing accepted is lost: close() and shutdown(SHUT_WR) deliver every
 *   byte whatever TCP's limits (deliver_*);
 * - no pool-induced deadlock in either blocking mode: a parked socket
 *   whose receive side is stalled reads (parked_reads_when_stalled,
 *   no_deadlock_*, relay_chain);
 * - flush points as TCP's: TCP_NODELAY, uncorking, and bytes sent without
 *   MSG_MORE pushed even behind a later MSG_MORE send (nodelay_flush,
 *   cork_flush, flush_mark); a MSG_MORE send followed by a wait for
 *   POLLOUT, and a corked program writing more than a buffer, work as on
 *   plain TCP (msg_more_then_poll, cork_large);
 * - a dead connection lets go of its buffer, queue place and user slot at
 *   once (reset_lets_go, shutdown_lets_go); a closed one keeps its buffer
 *   while TCP has bytes to send (close_keeps_buffer);
 * - shutdown(SHUT_WR) keeps the RCV_SHUTDOWN TCP set meanwhile
 *   (shutdown_keeps_rdhup); SIOCOUTQ and SIOCOUTQNSD count the staged
 *   bytes (outq_counts_staged); a refused connect(AF_UNSPEC) leaves a
 *   sleeping sender alone (disconnect_no_side_effect).
 *
 * Each test says, in its comment, what broken behaviour makes it fail. The
 * fixture restores the module's parameters and net.ipv4.tcp_notsent_lowat,
 * and checks that the pool is left at rest: nothing in use, nobody
 * waiting, allocs == frees, waits == handoffs + cancels, no user's share
 * left (after close, a socket keeps its buffer until TCP destroys it: the
 * teardown waits for that).
 *
 * Run as root with mbufmux.ko and mbufmux_tcp.ko loaded and debugfs
 * mounted. Nothing asserts on elapsed time: the guards are progress
 * watchdogs (STALL_MS without a byte moving) and hang guards, generous
 * because the test VM is software-emulated.
 *
 * Environment (the default, then the default on a debug kernel, one with
 * lockdep, where everything runs 20 to 50 times slower):
 *   MBUFMUX_SEND_BYTES   bytes each flow streams in deliver_*, no_deadlock_*
 *                        and relay_chain (262144; 65536)
 *   MBUFMUX_RDHUP_ITERS  iterations of shutdown_keeps_rdhup (500; 100)
 *   MBUFMUX_SEED         seed of the random choices (logged by each test)
 */
#ifndef MBUFMUX_SEND_H
#define MBUFMUX_SEND_H

#include <signal.h>

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>

#include <linux/sockios.h>

#include "mbufmux_util.h"

#define STALL_MS	30000	/* progress watchdog: no byte moved that long */
#define SETTLE_MS	3000	/* nobody writable that long: stalled */

#define CHUNK		(64 << 10)
#define SMALL_RCVBUF	2048	/* a tiny window (the kernel doubles it) */
#define SMALL_BUF	4096	/* small socket buffers */

#define LOWAT_SYSCTL	"/proc/sys/net/ipv4/tcp_notsent_lowat"

/* SIOCOUTQ: bytes not acknowledged yet, staged ones included; or -1. */
static inline long outq(int fd)
{
	int val;

	return ioctl(fd, SIOCOUTQ, &val) ? -1 : val;
}

/* SIOCOUTQNSD: bytes not sent yet, staged ones included; or -1. */
static inline long outq_nsd(int fd)
{
	int val;

	return ioctl(fd, SIOCOUTQNSD, &val) ? -1 : val;
}

/*
 * The data bytes not sent yet: SIOCOUTQNSD, less the FIN while TCP has it
 * queued, unsent, after a shutdown(SHUT_WR) or close() (a FIN takes a
 * sequence number, which SIOCOUTQNSD counts, but no memory); or -1. The
 * state is read first: if it is one that follows our FIN, a FIN is queued,
 * and with anything unsent it is the last of it; before it, no FIN is (only
 * the caller shuts its socket down).
 */
static inline long unsent_data(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	bool fin;
	long nsd;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	fin = ti.tcpi_state == TCP_FIN_WAIT1 || ti.tcpi_state == TCP_CLOSING ||
	      ti.tcpi_state == TCP_LAST_ACK;
	nsd = outq_nsd(fd);
	return nsd > 0 && fin ? nsd - 1 : nsd;
}

/* struct tcp_info as the kernel has it, up to tcpi_data_segs_out (4.6). */
struct tcp_info_ext {
	struct tcp_info base;	/* glibc's: up to tcpi_total_retrans */
	uint64_t pacing_rate;
	uint64_t max_pacing_rate;
	uint64_t bytes_acked;
	uint64_t bytes_received;
	uint32_t segs_out;
	uint32_t segs_in;
	uint32_t notsent_bytes;
	uint32_t min_rtt;
	uint32_t data_segs_in;
	uint32_t data_segs_out;
};

/* TCP_INFO's tcpi_notsent_bytes: TCP's own not-sent bytes; or -1. */
static inline long tcp_notsent(int fd)
{
	struct tcp_info_ext ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ||
	    len < offsetof(struct tcp_info_ext, notsent_bytes) +
		  sizeof(ti.notsent_bytes))
		return -1;
	return ti.notsent_bytes;
}

/* TCP_INFO's tcpi_data_segs_out: the data segments TCP sent; or -1. */
static inline long data_segs_out(int fd)
{
	struct tcp_info_ext ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ||
	    len < sizeof(ti))
		return -1;
	return ti.data_segs_out;
}

/* The staged bytes of an attached socket (MBUFMUX_INFO), or -1. */
static inline long staged(int fd)
{
	struct mbufmux_info info;

	if (info_get(fd, &info))
		return -1;
	return info.staged;
}

/* Waits until SIOCOUTQ and SIOCOUTQNSD are both 0. */
static inline bool wait_outq_empty(int fd, int ms)
{
	long long end = now_ms() + ms;

	for (;;) {
		if (!outq(fd) && !outq_nsd(fd))
			return true;
		if (now_ms() > end)
			return false;
		sleep_ms(5);
	}
}

/* Waits until the pool's debugfs counters show @waiters queued. */
static inline bool wait_waiters(long long waiters, int ms)
{
	long long end = now_ms() + ms;
	struct pool_stats st;

	for (;;) {
		if (!stats_read(&st) && st.waiters == waiters)
			return true;
		if (now_ms() > end)
			return false;
		sleep_ms(2);
	}
}

/* Waits until the users file shows @held for @uid. */
static inline bool wait_user_held(unsigned int uid, long held, int ms)
{
	long long end = now_ms() + ms;
	struct user_counts uc;

	for (;;) {
		if (users_read(uid, &uc) >= 0 && uc.held == held)
			return true;
		if (now_ms() > end)
			return false;
		sleep_ms(2);
	}
}

/* Resets the connection when closed (SO_LINGER 0). */
static inline int close_reset(int fd)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin)))
		return -1;
	return close(fd);
}

/* At least @n open files (root may raise the hard limit too). */
static inline int nofile_at_least(rlim_t n)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -1;
	if (rl.rlim_cur >= n)
		return 0;
	if (rl.rlim_max < n)
		rl.rlim_max = n;
	rl.rlim_cur = n;
	return setrlimit(RLIMIT_NOFILE, &rl);
}

/*
 * The kernel log from now on (/dev/kmsg, non-blocking, at its end), or -1
 * if it cannot be read: the check is then left out.
 */
static inline int kmsg_open(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Did a record containing @what come since kmsg_open()? Closes @fd. */
static inline bool kmsg_seen(int fd, const char *what)
{
	char rec[2048];
	bool seen = false;
	ssize_t n;

	if (fd < 0)
		return false;
	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)	/* overwritten: go on */
			continue;
		if (n <= 0)
			break;
		rec[n] = '\0';
		if (strstr(rec, what)) {
			fprintf(stderr, "# kernel log: %s", strchr(rec, ';') ?: rec);
			seen = true;
		}
	}
	close(fd);
	return seen;
}

/*
 * The parameters as the program found them, and tcp_notsent_lowat. The
 * teardown restores them; it runs in the parent of the test's process
 * (FIXTURE_TEARDOWN_PARENT). In the 6.12 harness built -O2, the test's own
 * process may run it after a failed ASSERT (the wrapper's fork() result
 * need not survive its longjmp(), the -Wclobbered warning the Makefile
 * silences), its sockets still open: it restores the settings and checks
 * nothing, the test has failed already. A test killed at its timeout gets
 * no teardown: the next setup repairs the settings.
 */
static long long initial_lowat = -1;

static void __attribute__((constructor)) save_initial_lowat(void)
{
	initial_lowat = read_number(LOWAT_SYSCTL);
}

static inline int lowat_sysctl_set(long long val)
{
	char s[32];

	snprintf(s, sizeof(s), "%lld\n", val);
	return write_text(LOWAT_SYSCTL, s);
}

FIXTURE(mbufmux_send)
{
	struct lsn lsn;		/* a loopback listener */
	struct lsn small;	/* one whose sockets announce a tiny window */
	pid_t pid;		/* the process that runs the test */
	bool saved;		/* the settings are saved */
	long buf_size;
	uint64_t seed;
};

FIXTURE_VARIANT(mbufmux_send)
{
	int family;
};

FIXTURE_VARIANT_ADD(mbufmux_send, ipv4)
{
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(mbufmux_send, ipv6)
{
	.family = AF_INET6,
};

FIXTURE_SETUP(mbufmux_send)
{
	struct pool_stats st;
	int err;

	self->lsn.fd = -1;
	self->small.fd = -1;
	self->pid = getpid();
	self->buf_size = restore_initial(_metadata);
	ASSERT_GE(initial_lowat, 0) TH_LOG("cannot read %s", LOWAT_SYSCTL);
	if (read_number(LOWAT_SYSCTL) != initial_lowat) {
		TH_LOG("tcp_notsent_lowat left changed: restoring it");
		ASSERT_EQ(lowat_sysctl_set(initial_lowat), 0);
	}
	self->saved = true;

	/* A test begins with the pool at rest. */
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("pool not at rest: in_use %lld waiters %lld",
		       st.in_use, st.waiters);
	ASSERT_EQ(st.buf_size, self->buf_size);

	err = lsn_open(&self->lsn, variant->family, false);
	ASSERT_EQ(err, 0) TH_LOG("listener: %s", strerror(-err));
	err = lsn_open_bufs(&self->small, variant->family, SMALL_RCVBUF, 0);
	ASSERT_EQ(err, 0) TH_LOG("listener: %s", strerror(-err));
	self->seed = test_seed(_metadata);
}

FIXTURE_TEARDOWN_PARENT(mbufmux_send)
{
	struct pool_stats st;

	if (!self->saved)
		return;
	/* Parameters first: restoring the limit wakes any parked thread. */
	EXPECT_EQ(params_write(&initial), 0);
	EXPECT_EQ(lowat_sysctl_set(initial_lowat), 0);
	if (self->pid == getpid())
		return;

	EXPECT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("pool not at rest after the test: in_use %lld waiters %lld",
		       st.in_use, st.waiters);
	EXPECT_EQ(st.allocs, st.frees)
		TH_LOG("allocs %lld frees %lld", st.allocs, st.frees);
	EXPECT_EQ(st.waits, st.handoffs + st.cancels)
		TH_LOG("waits %lld handoffs %lld cancels %lld", st.waits,
		       st.handoffs, st.cancels);
	EXPECT_TRUE(params_equal(&initial));
	EXPECT_EQ(st.limit, initial.limit);
	EXPECT_EQ(users_listed(), 0) TH_LOG("a user's share left behind");
}

/*
 * The helpers below take the fixture's data as
 * "struct _test_data_mbufmux_send", which is FIXTURE_DATA(mbufmux_send).
 */

/* Makes the pool @limit buffers small (its reserve 0). */
static inline void shrink(struct __test_metadata *_metadata, long limit)
{
	ASSERT_EQ(limits_set(limit, 0), 0);
}

static inline void stats(struct __test_metadata *_metadata,
			 struct pool_stats *st)
{
	ASSERT_EQ(stats_read(st), 0);
}

/*
 * A dry pool and a socket that will have to wait on it: the pool one
 * buffer small, that buffer held by an attached socket (hold(): one byte
 * with MSG_MORE), returned in *@h and its peer in *@hp. Returns a new
 * attached socket, its peer in *@vp; parking it, or not, is the test's
 * own step.
 */
static inline int dry_pool_pair(struct __test_metadata *_metadata,
				struct _test_data_mbufmux_send *self, int *h,
				int *hp, int *vp)
{
	shrink(_metadata, 1);
	*h = pair_on(_metadata, &self->lsn, true, hp);
	ASSERT_TRUE(hold(*h));
	return pair_on(_metadata, &self->lsn, true, vp);
}

/*
 * send_backlog() on a socket whose peer does not read: returns the bytes
 * sent, and the socket has unsent bytes (staged or TCP's) left.
 */
static inline long backlog(struct __test_metadata *_metadata, int fd,
			   uint32_t flow)
{
	long total = send_backlog(fd, flow, 0);

	ASSERT_GT(total, 0);
	ASSERT_GT(outq_nsd(fd), 0);
	return total;
}

/* The reading end of a flow, in a thread of its own. */
struct reader {
	int fd;
	uint32_t flow;
	size_t chunk;		/* bytes per recv() */
	int nap_ms;		/* sleep after each recv() */
	int pause;		/* the sender asks it to stop reading */
	int paused;		/* it has stopped */
	size_t got;		/* bytes received (read with __atomic) */
	long bad;		/* where the first wrong byte is, or -1 */
	bool eof;
	int err;		/* the error that ended it, ETIMEDOUT: stalled */
	pthread_t thread;
};

static inline void *reader_fn(void *arg)
{
	struct reader *r = arg;
	char *buf = malloc(r->chunk);
	long long last = now_ms();
	ssize_t n;
	long b;

	r->bad = -1;
	if (!buf) {
		r->err = ENOMEM;
		return NULL;
	}
	for (;;) {
		if (__atomic_load_n(&r->pause, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&r->paused, 1, __ATOMIC_RELEASE);
			sleep_ms(2);
			last = now_ms();
			continue;
		}
		__atomic_store_n(&r->paused, 0, __ATOMIC_RELEASE);
		if (!(poll_one(r->fd, POLLIN, 100) &
		      (POLLIN | POLLHUP | POLLERR))) {
			if (now_ms() - last > STALL_MS) {
				r->err = ETIMEDOUT;
				break;
			}
			continue;
		}
		n = recv(r->fd, buf, r->chunk, MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0) {
			r->err = errno;
			break;
		}
		if (!n) {
			r->eof = true;
			break;
		}
		if (r->bad < 0) {
			b = check(buf, n, r->flow, r->got);
			if (b >= 0)
				r->bad = r->got + b;
		}
		__atomic_store_n(&r->got, r->got + n, __ATOMIC_RELEASE);
		last = now_ms();
		if (r->nap_ms)
			sleep_ms(r->nap_ms);
	}
	free(buf);
	return NULL;
}

static inline size_t reader_got(struct reader *r)
{
	return __atomic_load_n(&r->got, __ATOMIC_ACQUIRE);
}

/* Stops the reader between two reads: true once it has. */
static inline bool reader_pause(struct reader *r)
{
	long long end = now_ms() + WAKE_MS;

	__atomic_store_n(&r->pause, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&r->paused, __ATOMIC_ACQUIRE)) {
		if (now_ms() > end)
			return false;
		sleep_ms(1);
	}
	return true;
}

#endif /* MBUFMUX_SEND_H */
