/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fixture (mbufmux, with its variants ipv4, ipv6 and ipv4_mapped) of
 * the selftests of the mbufmux TCP ULP (ulp_*.c, one program per topic),
 * and what they share; the helpers that do not fail a test are in
 * lib/mbufmux_test_lib.h. Include it first, after defining _GNU_SOURCE.
 *
 * Selftests of the "mbufmux" TCP upper-layer protocol (mbufmux_tcp.ko).
 *
 * Run as root with mbufmux.ko and mbufmux_tcp.ko loaded and debugfs
 * mounted. Every test runs over IPv4 and IPv6 loopback, and over IPv6
 * sockets talking IPv4 (v4-mapped addresses).
 *
 * The pool is shared by every attached socket, so the tests shrink it (the
 * "limit" parameter) to run it dry on purpose: "holders" are attached
 * sockets that keep a buffer by sending one byte with MSG_MORE, "victims"
 * are attached sockets that need one after that and get parked. Each test
 * checks what the socket shows (MBUFMUX_INFO, poll, errors) and what the
 * pool's debugfs counters say before and after. The fixture restores the
 * parameters and checks that the pool is left at rest (no buffer in use,
 * nobody waiting, no user's share of the per-user cap left). The helpers
 * shared with the adversarial tests (adv_*.c) are in lib/ and mbufmux_util.h.
 *
 * Nothing asserts on elapsed time: timeouts are hang guards only, generous
 * because the test VM is software-emulated.
 */
#ifndef MBUFMUX_ULP_H
#define MBUFMUX_ULP_H

#include <signal.h>

#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sendfile.h>

#include <linux/bpf.h>

#include "mbufmux_util.h"

#define MAX_FDS		128

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP	262
#endif

static inline void on_signal(int sig)
{
	(void)sig;
}

FIXTURE(mbufmux)
{
	struct lsn lsn;			/* the loopback listener */
	int fds[MAX_FDS];		/* every socket a test made */
	int nfds;
	pid_t pid;			/* the process that runs the test */
	bool saved;			/* the parameters are saved */
	long buf_size;
	struct pool_stats st0;		/* the counters when the test began */
};

FIXTURE_VARIANT(mbufmux)
{
	int family;
	bool v4mapped;		/* IPv6 sockets to ::ffff:127.0.0.1 */
};

FIXTURE_VARIANT_ADD(mbufmux, ipv4)
{
	.family = AF_INET,
};

FIXTURE_VARIANT_ADD(mbufmux, ipv6)
{
	.family = AF_INET6,
};

FIXTURE_VARIANT_ADD(mbufmux, ipv4_mapped)
{
	.family = AF_INET6,
	.v4mapped = true,
};

FIXTURE_SETUP(mbufmux)
{
	int err;

	self->lsn.fd = -1;
	self->pid = getpid();
	self->buf_size = restore_initial(_metadata);
	ASSERT_EQ(stats_read(&self->st0), 0)
		TH_LOG("cannot read %sstats (debugfs mounted?)", DBG_DIR);
	ASSERT_EQ(self->st0.buf_size, self->buf_size);
	self->saved = true;

	/* A test begins with the pool at rest. */
	ASSERT_EQ(wait_rest(&self->st0, REST_MS), 0)
		TH_LOG("pool not at rest: in_use %lld waiters %lld",
		       self->st0.in_use, self->st0.waiters);

	err = lsn_open(&self->lsn, variant->family, variant->v4mapped);
	ASSERT_EQ(err, 0) TH_LOG("listener: %s", strerror(-err));
}

/*
 * Runs in the parent of the test's process, after that process has ended
 * (closing its sockets), so that it also runs after a failed ASSERT (see
 * save_initial_params()).
 */
FIXTURE_TEARDOWN_PARENT(mbufmux)
{
	struct pool_stats st;
	int i;

	/* Parameters first: restoring the limit wakes any parked thread. */
	if (self->saved)
		EXPECT_EQ(params_write(&initial), 0);
	/*
	 * If the test's process runs this itself: in creation order, each
	 * pair's attached side before its peer, so that the peer is still
	 * there for the bytes it had staged.
	 */
	if (self->pid == getpid()) {
		for (i = 0; i < self->nfds; i++)
			if (self->fds[i] >= 0)
				close(self->fds[i]);
		if (self->lsn.fd >= 0)
			close(self->lsn.fd);
	}
	if (!self->saved)
		return;

	EXPECT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("pool not at rest after the test: in_use %lld waiters %lld",
		       st.in_use, st.waiters);
	EXPECT_TRUE(params_equal(&initial));
	EXPECT_EQ(st.limit, initial.limit);
	EXPECT_EQ(st.reserve, initial.reserve);
	EXPECT_EQ(users_listed(), 0) TH_LOG("a user's share left behind");
}

/*
 * The helpers below take the fixture's data as "struct _test_data_mbufmux",
 * which is what FIXTURE_DATA(mbufmux) stands for.
 */
static inline void track(struct __test_metadata *_metadata,
			 struct _test_data_mbufmux *self, int fd)
{
	ASSERT_LT(self->nfds, MAX_FDS);
	self->fds[self->nfds++] = fd;
}

/* Closes a socket the fixture would close otherwise. */
static inline void drop(struct _test_data_mbufmux *self, int fd)
{
	int i;

	for (i = 0; i < self->nfds; i++)
		if (self->fds[i] == fd)
			self->fds[i] = -1;
	close(fd);
}

/*
 * A connected loopback pair: returns the connecting side, attached if
 * @attach_it, and the accepted side in @peer (not attached).
 */
static inline int new_pair(struct __test_metadata *_metadata,
			   struct _test_data_mbufmux *self, bool attach_it,
			   int *peer)
{
	int fd, p;

	fd = lsn_pair(&self->lsn, &p);
	ASSERT_GE(fd, 0) TH_LOG("pair: %s", strerror(errno));
	track(_metadata, self, fd);
	track(_metadata, self, p);
	if (attach_it)
		ASSERT_EQ(attach(fd), 0);
	if (peer)
		*peer = p;
	return fd;
}

/*
 * new_pair(), attached, through a listener of its own whose accepted side
 * has SO_RCVBUF @bytes, so that the peer can take several buffers' worth
 * without reading (the default, tcp_rmem[1], 128 KiB, half of it window,
 * holds only one buffer of the default 64 KiB), and the attached side
 * SO_SNDBUF @bytes, so that TCP takes every byte the buffer lets through.
 */
static inline int new_pair_bufs(struct __test_metadata *_metadata,
				struct _test_data_mbufmux *self, int bytes,
				int *peer)
{
	const struct sockopts o = { .sndbuf = bytes };
	struct lsn l;
	int fd;

	ASSERT_EQ(lsn_open_bufs(&l, self->lsn.family, bytes, 0), 0);
	track(_metadata, self, l.fd);
	fd = lsn_pair_opts(&l, &o, peer);
	ASSERT_GE(fd, 0) TH_LOG("pair: %s", strerror(errno));
	track(_metadata, self, fd);
	track(_metadata, self, *peer);
	ASSERT_EQ(attach(fd), 0);
	return fd;
}

/* Makes the pool @limit buffers small (and its reserve 0). */
static inline void shrink(struct __test_metadata *_metadata, long limit)
{
	ASSERT_EQ(limits_set(limit, 0), 0);
}

/* @n attached sockets that each keep a buffer: one byte held by MSG_MORE. */
static inline void holders(struct __test_metadata *_metadata,
			   struct _test_data_mbufmux *self, int *fds,
			   int *peers, int n)
{
	struct mbufmux_info info;
	int i;

	for (i = 0; i < n; i++) {
		fds[i] = new_pair(_metadata, self, true, &peers[i]);
		ASSERT_TRUE(hold(fds[i]));
		ASSERT_EQ(info_get(fds[i], &info), 0);
		ASSERT_EQ(info.staged, 1U);
	}
}

/*
 * A dry pool and a socket that will have to wait on it: the pool one
 * buffer small, that buffer kept by one holder (holders()), returned in
 * *@h and its peer in *@hp. Returns a new attached socket, its peer in
 * *@vp; parking it, or not, is the test's own step.
 */
static inline int dry_pool_pair(struct __test_metadata *_metadata,
				struct _test_data_mbufmux *self, int *h,
				int *hp, int *vp)
{
	shrink(_metadata, 1);
	holders(_metadata, self, h, hp, 1);
	return new_pair(_metadata, self, true, vp);
}

/* A send without MSG_MORE: the held byte and this one go, then the buffer. */
static inline void release(struct __test_metadata *_metadata, int fd)
{
	ASSERT_EQ(send(fd, "r", 1, MSG_DONTWAIT), 1);
}

static inline void stats(struct __test_metadata *_metadata,
			 struct pool_stats *st)
{
	ASSERT_EQ(stats_read(st), 0);
}

/*
 * send_backlog_staged() on an attached socket whose peer does not read:
 * returns the bytes sent; some stay unsent, covered by the socket's buffer.
 */
static inline size_t backlog(struct __test_metadata *_metadata, int fd,
			     uint32_t flow)
{
	struct mbufmux_info info;
	long total = send_backlog_staged(fd, flow);

	ASSERT_GT(total, 0);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_GT(unsent_bytes(fd), 0);
	EXPECT_LE(unsent_bytes(fd), (long)info.buf_size);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	return total;
}

#endif /* MBUFMUX_ULP_H */
