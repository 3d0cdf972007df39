// SPDX-License-Identifier: GPL-2.0
/*
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
#define _GNU_SOURCE

#include <signal.h>

#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sendfile.h>

#include <linux/bpf.h>

#include "mbufmux_util.h"

#define REST_MS		10000	/* for the pool to come back to rest */

#define MAX_FDS		128

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP	262
#endif

/* The peer has closed its side: recv() returns 0 within the guard. */
static bool recv_eof(int fd)
{
	char c;

	if (!(poll_one(fd, POLLIN, WAKE_MS) & (POLLIN | POLLHUP)))
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static unsigned short local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void on_signal(int sig)
{
	(void)sig;
}

/*
 * The parameters as the program found them. The fixture's teardown restores
 * what a test changed. It runs in the parent of the test's process: in the
 * 6.12 harness built -O2, the test's own process may skip it after a failed
 * ASSERT, as the wrapper's fork() result need not survive its longjmp()
 * (the -Wclobbered warning the Makefile silences). A test killed at its
 * timeout gets no teardown at all: the setup repairs what it left, so that
 * one hang does not fail every test after it.
 */
static struct tcp_params initial;

static void __attribute__((constructor)) save_initial_params(void)
{
	params_read(&initial);
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
	ASSERT_TRUE(module_loaded("mbufmux_tcp"))
		TH_LOG("mbufmux_tcp.ko is not loaded");
	ASSERT_GT(initial.limit, 0)
		TH_LOG("mbufmux_tcp.ko was not loaded when the program started");
	ASSERT_GE(initial.reserve, 0);
	ASSERT_GE(initial.user_limit, 0);
	ASSERT_GT(initial.buf_size, 0);

	ASSERT_EQ(stats_read(&self->st0), 0)
		TH_LOG("cannot read %sstats (debugfs mounted?)", DBG_DIR);
	self->buf_size = param_get("buf_size");
	ASSERT_EQ(self->buf_size, initial.buf_size);
	ASSERT_EQ(self->st0.buf_size, self->buf_size);
	if (!params_equal(&initial)) {
		TH_LOG("parameters left changed by an earlier test: restoring them");
		ASSERT_EQ(params_write(&initial), 0);
	}
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
static void track(struct __test_metadata *_metadata,
		  struct _test_data_mbufmux *self, int fd)
{
	ASSERT_LT(self->nfds, MAX_FDS);
	self->fds[self->nfds++] = fd;
}

/* Closes a socket the fixture would close otherwise. */
static void drop(struct _test_data_mbufmux *self, int fd)
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
static int new_pair(struct __test_metadata *_metadata,
		    struct _test_data_mbufmux *self, bool attach_it, int *peer)
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

/* Makes the pool @limit buffers small (and its reserve 0). */
static void shrink(struct __test_metadata *_metadata, long limit)
{
	ASSERT_EQ(limits_set(limit, 0), 0);
}

/* @n attached sockets that each keep a buffer: one byte held by MSG_MORE. */
static void holders(struct __test_metadata *_metadata,
		    struct _test_data_mbufmux *self, int *fds, int *peers,
		    int n)
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

/* A send without MSG_MORE: the held byte and this one go, then the buffer. */
static void release(struct __test_metadata *_metadata, int fd)
{
	ASSERT_EQ(send(fd, "r", 1, MSG_DONTWAIT), 1);
}

static void stats(struct __test_metadata *_metadata, struct pool_stats *st)
{
	ASSERT_EQ(stats_read(st), 0);
}

/*
 * send_backlog_staged() on an attached socket whose peer does not read:
 * returns the bytes sent; some stay unsent, covered by the socket's buffer.
 */
static size_t backlog(struct __test_metadata *_metadata, int fd,
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

/*
 * Attach contract: only an ESTABLISHED TCP socket takes the ULP, and only
 * once; unconnected, listening, SYN_SENT, CLOSE_WAIT and UDP sockets are
 * refused. An attached socket can neither disconnect (connect(AF_UNSPEC))
 * nor listen, and keeps working, on either side of the connection.
 */
TEST_F(mbufmux, attach_contract)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	struct sockaddr_storage addr;
	socklen_t len, alen;
	struct tcp_info ti;
	char name[16] = {};
	int fd, peer, s, l, i;
	char buf[4];

	/* Not connected: a fresh socket, and a listener. */
	s = socket(self->lsn.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(s, 0);
	track(_metadata, self, s);
	EXPECT_EQ(attach(s), -1);
	EXPECT_EQ(errno, ENOTCONN);
	EXPECT_EQ(attach(self->lsn.fd), -1);
	EXPECT_EQ(errno, ENOTCONN);
	/* The listener must still work (nothing was half attached). */
	fd = new_pair(_metadata, self, false, &peer);

	/* UDP, connected or not: not a TCP socket. */
	s = socket(self->lsn.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(s, 0);
	track(_metadata, self, s);
	EXPECT_EQ(attach(s), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);
	ASSERT_EQ(connect(s, (struct sockaddr *)&self->lsn.addr, self->lsn.len),
		  0);
	EXPECT_EQ(attach(s), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);

	/* Established: once, not twice. Both sides may attach. */
	ASSERT_EQ(attach(fd), 0);
	EXPECT_EQ(attach(fd), -1);
	EXPECT_EQ(errno, EEXIST);
	len = sizeof(name);
	ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_ULP, name, &len), 0);
	EXPECT_STREQ(name, ULP_NAME);
	ASSERT_EQ(attach(peer), 0);

	/* No way back to a state that could listen (CVE-2023-0461). */
	EXPECT_EQ(connect(fd, &unspec, sizeof(unspec)), -1);
	EXPECT_EQ(errno, EOPNOTSUPP);
	EXPECT_EQ(listen(fd, 1), -1);
	len = sizeof(ti);
	ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
	EXPECT_EQ(ti.tcpi_state, TCP_ESTABLISHED);

	/* Still a working connection, both ways. */
	ASSERT_EQ(send(fd, "ping", 4, 0), 4);
	ASSERT_EQ(recv_all(peer, buf, 4, WAKE_MS), 4U);
	EXPECT_EQ(memcmp(buf, "ping", 4), 0);
	ASSERT_EQ(send(peer, "pong", 4, 0), 4);
	ASSERT_EQ(recv_all(fd, buf, 4, WAKE_MS), 4U);
	EXPECT_EQ(memcmp(buf, "pong", 4), 0);

	/*
	 * SYN_SENT: a listener whose accept queue is full drops the SYN, so
	 * a non-blocking connect stays in progress.
	 */
	l = socket(self->lsn.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(l, 0);
	track(_metadata, self, l);
	memcpy(&addr, &self->lsn.addr, sizeof(addr));
	if (self->lsn.family == AF_INET6)
		((struct sockaddr_in6 *)&addr)->sin6_port = 0;
	else
		((struct sockaddr_in *)&addr)->sin_port = 0;
	alen = self->lsn.len;
	ASSERT_EQ(bind(l, (struct sockaddr *)&addr, alen), 0);
	ASSERT_EQ(listen(l, 0), 0);
	ASSERT_EQ(getsockname(l, (struct sockaddr *)&addr, &alen), 0);
	for (i = 0; i < 3; i++) {
		s = socket(self->lsn.family, SOCK_STREAM | SOCK_CLOEXEC |
			   SOCK_NONBLOCK, 0);
		ASSERT_GE(s, 0);
		track(_metadata, self, s);
		if (connect(s, (struct sockaddr *)&addr, alen))
			ASSERT_EQ(errno, EINPROGRESS);
		sleep_ms(20);
		len = sizeof(ti);
		ASSERT_EQ(getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
		if (ti.tcpi_state == TCP_SYN_SENT)
			break;
		s = -1;
	}
	ASSERT_GE(s, 0) TH_LOG("no connection stayed in SYN_SENT");
	EXPECT_EQ(attach(s), -1);
	EXPECT_EQ(errno, ENOTCONN);

	/* CLOSE_WAIT (the peer has closed) is not ESTABLISHED. */
	s = new_pair(_metadata, self, false, &peer);
	drop(self, peer);
	ASSERT_TRUE(recv_eof(s));
	EXPECT_EQ(attach(s), -1);
	EXPECT_EQ(errno, ENOTCONN);
}

static int sockmap_create(void)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = BPF_MAP_TYPE_SOCKMAP;
	attr.key_size = sizeof(int);
	attr.value_size = sizeof(int);
	attr.max_entries = 2;
	return syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
}

static int sockmap_add(int map, int key, int fd)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_fd = map;
	attr.key = (uintptr_t)&key;
	attr.value = (uintptr_t)&fd;
	attr.flags = BPF_ANY;
	return syscall(SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr, sizeof(attr));
}

/*
 * The ULP stays off TCP sockets that are not plain TCP: an MPTCP socket,
 * and a socket in a sockmap (which owns the socket's operations); nor can
 * an attached socket join a sockmap, whose sends would go around the
 * staged bytes. The test VM's kernels have MPTCP and sockmap.
 */
TEST_F(mbufmux, attach_refused)
{
	int fd, peer, s, map;

	s = socket(self->lsn.family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP);
	ASSERT_GE(s, 0) TH_LOG("no MPTCP: %s", strerror(errno));
	track(_metadata, self, s);
	ASSERT_EQ(connect(s, (struct sockaddr *)&self->lsn.addr,
			  self->lsn.len), 0);
	peer = accept4(self->lsn.fd, NULL, NULL, SOCK_CLOEXEC);
	ASSERT_GE(peer, 0);
	track(_metadata, self, peer);
	/* MPTCP refuses TCP_ULP itself, before any ULP sees the socket. */
	EXPECT_EQ(attach(s), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);

	map = sockmap_create();
	ASSERT_GE(map, 0) TH_LOG("no sockmap: %s", strerror(errno));
	track(_metadata, self, map);
	fd = new_pair(_metadata, self, false, NULL);
	ASSERT_EQ(sockmap_add(map, 0, fd), 0) TH_LOG("%s", strerror(errno));
	EXPECT_EQ(attach(fd), -1);
	EXPECT_EQ(errno, EOPNOTSUPP);

	fd = new_pair(_metadata, self, true, NULL);
	EXPECT_EQ(sockmap_add(map, 1, fd), -1);
	EXPECT_EQ(errno, EOPNOTSUPP);
	ASSERT_EQ(send(fd, "x", 1, 0), 1);
}

/*
 * Socket options: MBUFMUX_INFO of a fresh socket and its truncated copy;
 * MBUFMUX_BLOCK get/set and its invalid values and lengths; SOL_MBUFMUX is
 * not there without the ULP; TCP's own options still work through it.
 */
TEST_F(mbufmux, sockopts)
{
	char big[sizeof(struct mbufmux_info) + 16];
	struct mbufmux_info info;
	int fd, plain, val;
	socklen_t len;
	uint32_t flags;

	fd = new_pair(_metadata, self, true, NULL);
	memset(&info, 0xff, sizeof(info));
	len = sizeof(info);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len), 0);
	EXPECT_EQ(len, sizeof(info));
	EXPECT_EQ(info.flags, 0U);
	EXPECT_EQ(info.block, (uint32_t)MBUFMUX_BLOCK_BOTH);
	EXPECT_EQ(info.buf_size, (uint32_t)self->buf_size);
	EXPECT_EQ(info.staged, 0U);
	EXPECT_EQ(info.waits, 0ULL);
	EXPECT_EQ(info.handoffs, 0ULL);
	EXPECT_EQ(info.wait_ns, 0ULL);

	/* A longer buffer gets the structure, and its size. */
	len = sizeof(big);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, big, &len), 0);
	EXPECT_EQ(len, sizeof(info));

	/* A shorter buffer gets the leading fields. */
	ASSERT_EQ(send(fd, "x", 1, MSG_MORE), 1);
	flags = 0;
	len = sizeof(flags);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &flags, &len), 0);
	EXPECT_EQ(len, sizeof(flags));
	EXPECT_EQ(flags, MBUFMUX_F_HOLDS_BUF);
	ASSERT_EQ(send(fd, "y", 1, 0), 1);

	len = sizeof(val);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, &len), 0);
	EXPECT_EQ(val, MBUFMUX_BLOCK_BOTH);
	EXPECT_EQ(len, sizeof(val));

	val = MBUFMUX_BLOCK_SEND;
	ASSERT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
			     sizeof(val)), 0);
	val = -1;
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, &len), 0);
	EXPECT_EQ(val, MBUFMUX_BLOCK_SEND);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.block, (uint32_t)MBUFMUX_BLOCK_SEND);

	/* Invalid modes and short lengths change nothing. */
	val = 2;
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
			     sizeof(val)), -1);
	EXPECT_EQ(errno, EINVAL);
	val = -1;
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
			     sizeof(val)), -1);
	EXPECT_EQ(errno, EINVAL);
	val = MBUFMUX_BLOCK_BOTH;
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, 2), -1);
	EXPECT_EQ(errno, EINVAL);
	len = 2;
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, &len), -1);
	EXPECT_EQ(errno, EINVAL);
	len = sizeof(val);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, &len), 0);
	EXPECT_EQ(val, MBUFMUX_BLOCK_SEND);

	/* Unknown options. */
	len = sizeof(val);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, 99, &val, &len), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &val,
			     sizeof(val)), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);

	/* No SOL_MBUFMUX on a socket without the ULP (IP's own errno). */
	plain = new_pair(_metadata, self, false, NULL);
	len = sizeof(info);
	EXPECT_EQ(getsockopt(plain, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len),
		  -1);
	EXPECT_EQ(errno, self->lsn.family == AF_INET6 ? ENOPROTOOPT :
			 EOPNOTSUPP);
	EXPECT_EQ(setsockopt(plain, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
			     sizeof(val)), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);

	/* TCP's options pass through. */
	val = 1;
	ASSERT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &val, sizeof(val)),
		  0);
	val = 0;
	len = sizeof(val);
	ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &val, &len), 0);
	EXPECT_EQ(val, 1);
}

/*
 * A plain send (and a scattered sendmsg) takes a buffer from the pool,
 * delivers the bytes, and gives the buffer back: one alloc and one free
 * each, nothing left in use.
 */
TEST_F(mbufmux, send_basic)
{
	char out[3000], in[3000];
	struct iovec iov[3] = {
		{ .iov_base = out, .iov_len = 1000 },
		{ .iov_base = out + 1000, .iov_len = 1 },
		{ .iov_base = out + 1001, .iov_len = 1999 },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 3 };
	struct mbufmux_info info;
	struct pool_stats st;
	int fd, peer;

	fd = new_pair(_metadata, self, true, &peer);
	fill(out, sizeof(out), 1, 0);
	ASSERT_EQ(send(fd, out, sizeof(out), 0), (ssize_t)sizeof(out));
	ASSERT_EQ(recv_all(peer, in, sizeof(in), WAKE_MS), sizeof(in));
	EXPECT_EQ(check(in, sizeof(in), 1, 0), -1);

	/* Scattered: one sendmsg() of three pieces. */
	fill(out, sizeof(out), 1, sizeof(out));
	ASSERT_EQ(sendmsg(fd, &msg, 0), (ssize_t)sizeof(out));
	memset(in, 0, sizeof(in));
	ASSERT_EQ(recv_all(peer, in, sizeof(in), WAKE_MS), sizeof(in));
	EXPECT_EQ(check(in, sizeof(in), 1, sizeof(out)), -1);

	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.flags, 0U);
	EXPECT_EQ(info.staged, 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(st.allocs - self->st0.allocs, 2);
	EXPECT_EQ(st.frees - self->st0.frees, 2);
	EXPECT_EQ(st.waits - self->st0.waits, 0);
}

/*
 * MSG_MORE holds the bytes in the socket's buffer (staged, the buffer kept,
 * nothing on the wire); a send without MSG_MORE delivers them all and the
 * buffer goes back.
 */
TEST_F(mbufmux, msg_more_holds)
{
	char out[150], in[150];
	struct mbufmux_info info;
	struct pool_stats st;
	int fd, peer;

	fd = new_pair(_metadata, self, true, &peer);
	fill(out, sizeof(out), 2, 0);
	ASSERT_EQ(send(fd, out, 100, MSG_MORE), 100);

	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	EXPECT_EQ(info.staged, 100U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 1);
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);

	ASSERT_EQ(send(fd, out + 100, 50, 0), 50);
	ASSERT_EQ(recv_all(peer, in, sizeof(in), WAKE_MS), sizeof(in));
	EXPECT_EQ(check(in, sizeof(in), 2, 0), -1);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.flags, 0U);
	EXPECT_EQ(info.staged, 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(st.allocs - self->st0.allocs, 1);
	EXPECT_EQ(st.frees - self->st0.frees, 1);
}

/*
 * MSG_MORE holds at most one buffer: a send larger than the buffer is
 * accepted whole, full buffers go to TCP and only the rest stays staged.
 */
TEST_F(mbufmux, msg_more_full_buffer)
{
	size_t len = 3 * self->buf_size + 100;
	struct mbufmux_info info;
	char *out, *in;
	int fd, peer;

	out = malloc(len + 1);
	in = malloc(len + 1);
	ASSERT_NE(out, NULL);
	ASSERT_NE(in, NULL);
	fill(out, len + 1, 3, 0);
	fd = new_pair(_metadata, self, true, &peer);

	ASSERT_EQ(send(fd, out, len, MSG_MORE), (ssize_t)len);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	EXPECT_EQ(info.staged, 100U);

	ASSERT_EQ(send(fd, out + len, 1, 0), 1);
	ASSERT_EQ(recv_all(peer, in, len + 1, WAKE_MS), len + 1);
	EXPECT_EQ(check(in, len + 1, 3, 0), -1);
	EXPECT_EQ(info_flags(fd), 0U);
	free(out);
	free(in);
}

/*
 * sendfile() and splice() hand the ULP page fragments: they are copied
 * into the buffer like any other send, every byte arrives, and the buffer
 * goes back.
 */
TEST_F(mbufmux, sendfile_splice)
{
	size_t len = 3 * self->buf_size + 123, done;
	struct pool_stats st;
	int fd, peer, mfd;
	char *out, *in;
	off_t off = 0;
	int pipefd[2];
	ssize_t n;

	out = malloc(len);
	in = malloc(len);
	ASSERT_NE(out, NULL);
	ASSERT_NE(in, NULL);
	fd = new_pair(_metadata, self, true, &peer);

	mfd = memfd_create("mbufmux", MFD_CLOEXEC);
	ASSERT_GE(mfd, 0);
	track(_metadata, self, mfd);
	fill(out, len, 5, 0);
	ASSERT_EQ(write(mfd, out, len), (ssize_t)len);
	for (done = 0; done < len; done += n) {
		n = sendfile(fd, mfd, &off, len - done);
		ASSERT_GT(n, 0) TH_LOG("%s", strerror(errno));
	}
	ASSERT_EQ(recv_all(peer, in, len, WAKE_MS), len);
	EXPECT_EQ(check(in, len, 5, 0), -1);
	EXPECT_EQ(info_flags(fd), 0U);

	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	track(_metadata, self, pipefd[0]);
	track(_metadata, self, pipefd[1]);
	fill(out, 5000, 6, 0);
	ASSERT_EQ(write(pipefd[1], out, 5000), 5000);
	for (done = 0; done < 5000; done += n) {
		n = splice(pipefd[0], NULL, fd, NULL, 5000 - done, 0);
		ASSERT_GT(n, 0) TH_LOG("%s", strerror(errno));
	}
	memset(in, 0, 5000);
	ASSERT_EQ(recv_all(peer, in, 5000, WAKE_MS), 5000U);
	EXPECT_EQ(check(in, 5000, 6, 0), -1);

	ASSERT_EQ(wait_rest(&st, WAKE_MS), 0);
	EXPECT_GE(st.allocs - self->st0.allocs, 2);
	EXPECT_EQ(st.allocs - self->st0.allocs,
		  st.frees - self->st0.frees);
	free(out);
	free(in);
}

#define XFER_FLOWS	16
#define XFER_LIMIT	4
#define XFER_BYTES	(512 << 10)	/* per flow: 8 MiB in all */
#define XFER_CHUNK	(64 << 10)
#define XFER_STALL_MS	20000

struct flow {
	int tx;		/* attached, sends */
	int rx;		/* attached too, only receives */
	size_t sent;
	size_t rcvd;
	bool eof;
};

/*
 * Byte-exact transfer: 16 flows share 4 buffers. Every flow first stages a
 * few bytes with MSG_MORE, so 4 hold the buffers and 12 are parked; then
 * one poll() loop drives them all with random chunk sizes and random
 * MSG_MORE until each has sent 512 KiB and shut down. Every byte is checked
 * against the flow's pattern; no more than 4 buffers are ever in use; the
 * pool's waits and handoffs add up to the sockets' own counts.
 */
TEST_F_TIMEOUT(mbufmux, transfer, 240)
{
	long long waits = 0, handoffs = 0, last, max_in_use = 0;
	struct pollfd pfd[2 * XFER_FLOWS];
	struct flow fl[XFER_FLOWS] = {};
	int map[2 * XFER_FLOWS];
	struct mbufmux_info info;
	struct pool_stats st;
	int i, k, n, parked, done, loops = 0;
	unsigned char *buf;
	size_t len, left;
	uint64_t rs;
	ssize_t ret;
	long bad;
	int flags;

	rs = test_seed(_metadata);
	buf = malloc(XFER_CHUNK);
	ASSERT_NE(buf, NULL);

	shrink(_metadata, XFER_LIMIT);
	for (i = 0; i < XFER_FLOWS; i++) {
		fl[i].tx = new_pair(_metadata, self, true, &fl[i].rx);
		ASSERT_EQ(attach(fl[i].rx), 0);
		ASSERT_EQ(set_nonblock(fl[i].tx), 0);
		ASSERT_EQ(set_nonblock(fl[i].rx), 0);
	}

	/* Round one: everybody stages, the first XFER_LIMIT hold buffers. */
	parked = 0;
	for (i = 0; i < XFER_FLOWS; i++) {
		len = 1 + rnd(&rs) % 1000;
		fill(buf, len, i, 0);
		ret = send(fl[i].tx, buf, len, MSG_MORE);
		if (ret < 0) {
			ASSERT_EQ(errno, EAGAIN);
			ASSERT_EQ(info_flags(fl[i].tx), MBUFMUX_F_PARKED);
			parked++;
			continue;
		}
		ASSERT_EQ(ret, (ssize_t)len);
		fl[i].sent = len;
	}
	EXPECT_EQ(parked, XFER_FLOWS - XFER_LIMIT);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, XFER_LIMIT);
	EXPECT_EQ(st.waiters, XFER_FLOWS - XFER_LIMIT);

	done = 0;
	last = now_ms();
	while (done < XFER_FLOWS) {
		n = 0;
		for (i = 0; i < XFER_FLOWS; i++) {
			if (fl[i].sent < XFER_BYTES) {
				pfd[n] = (struct pollfd){ .fd = fl[i].tx,
							  .events = POLLOUT };
				map[n++] = 2 * i;
			}
			if (!fl[i].eof) {
				pfd[n] = (struct pollfd){ .fd = fl[i].rx,
							  .events = POLLIN };
				map[n++] = 2 * i + 1;
			}
		}
		ASSERT_GE(poll(pfd, n, 1000), 0);

		for (k = 0; k < n; k++) {
			struct flow *f = &fl[map[k] / 2];

			i = map[k] / 2;
			if (!pfd[k].revents)
				continue;
			ASSERT_EQ(pfd[k].revents & (POLLERR | POLLNVAL), 0)
				TH_LOG("flow %d: revents %#x", i,
				       pfd[k].revents);
			if (map[k] & 1) {
				ret = recv(f->rx, buf, XFER_CHUNK, 0);
				if (ret < 0 && errno == EAGAIN)
					continue;
				ASSERT_GE(ret, 0);
				if (!ret) {
					ASSERT_EQ(f->rcvd, (size_t)XFER_BYTES);
					f->eof = true;
					done++;
					continue;
				}
				bad = check(buf, ret, i, f->rcvd);
				ASSERT_EQ(bad, -1)
					TH_LOG("flow %d: wrong byte at %zu",
					       i, f->rcvd + bad);
				f->rcvd += ret;
				last = now_ms();
				continue;
			}

			left = XFER_BYTES - f->sent;
			len = 1 + rnd(&rs) % XFER_CHUNK;
			if (len > left)
				len = left;
			flags = 0;
			if (len < left && (rnd(&rs) & 1))
				flags |= MSG_MORE;
			fill(buf, len, i, f->sent);
			ret = send(f->tx, buf, len, flags);
			if (ret < 0 && errno == EAGAIN)
				continue;
			ASSERT_GT(ret, 0)
				TH_LOG("flow %d: send: %s", i, strerror(errno));
			f->sent += ret;
			if (f->sent == XFER_BYTES)
				ASSERT_EQ(shutdown(f->tx, SHUT_WR), 0);
			last = now_ms();
		}

		if (!(++loops % 32)) {
			stats(_metadata, &st);
			if (st.in_use > max_in_use)
				max_in_use = st.in_use;
			ASSERT_LE(st.in_use, XFER_LIMIT);
		}
		if (now_ms() - last > XFER_STALL_MS) {
			for (i = 0; i < XFER_FLOWS; i++) {
				info_get(fl[i].tx, &info);
				TH_LOG("flow %d: sent %zu rcvd %zu flags %#x staged %u",
				       i, fl[i].sent, fl[i].rcvd, info.flags,
				       info.staged);
			}
			ASSERT_TRUE(false) TH_LOG("no progress for %d ms",
						  XFER_STALL_MS);
		}
	}

	for (i = 0; i < XFER_FLOWS; i++) {
		ASSERT_EQ(info_get(fl[i].tx, &info), 0);
		EXPECT_EQ(info.flags, 0U) TH_LOG("flow %d", i);
		EXPECT_EQ(info.staged, 0U);
		waits += info.waits;
		handoffs += info.handoffs;
		ASSERT_EQ(info_get(fl[i].rx, &info), 0);
		EXPECT_EQ(info.waits, 0ULL);
	}
	stats(_metadata, &st);
	TH_LOG("%d flows, %d buffers, peak %lld: %lld waits, %lld handoffs, %d bytes ok",
	       XFER_FLOWS, XFER_LIMIT, max_in_use, waits, handoffs,
	       XFER_FLOWS * XFER_BYTES);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_GE(waits, XFER_FLOWS - XFER_LIMIT);
	EXPECT_EQ(st.waits - self->st0.waits, waits);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, handoffs);
	EXPECT_EQ(handoffs, waits);
	EXPECT_EQ(st.cancels - self->st0.cancels, 0);
	EXPECT_EQ(st.wait_hist - self->st0.wait_hist, handoffs);
	free(buf);
}

/*
 * Parking, both directions blocked (the default): a send on a dry pool
 * fails with EAGAIN and parks the socket once; while parked, poll() and
 * select() show neither readable nor writable although data is waiting,
 * and recv() fails with EAGAIN. A buffer coming back is handed to it: a
 * sleeping poll() wakes up to the real readiness, and the socket keeps the
 * handed buffer until its next send empties it.
 */
TEST_F(mbufmux, park_both)
{
	struct blocked_call c = {};
	int h, hp, v, vp, n;
	uint64_t wait_ns;
	struct mbufmux_info info;
	struct pool_stats st;
	unsigned short port;
	struct timeval tv = {};
	fd_set rd, wr;
	char buf[8];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);

	ASSERT_TRUE(park(v));
	stats(_metadata, &st);
	EXPECT_EQ(st.waits - self->st0.waits, 1);
	EXPECT_EQ(st.waiters, 1);
	EXPECT_EQ(st.in_use, 1);
	ASSERT_EQ(waiters_read(&port, 1), 1);
	EXPECT_EQ(port, local_port(v));

	/* Parked once: trying again does not queue it again. */
	EXPECT_EQ(send(v, "p", 1, MSG_DONTWAIT), -1);
	EXPECT_EQ(errno, EAGAIN);
	stats(_metadata, &st);
	EXPECT_EQ(st.waits - self->st0.waits, 1);
	EXPECT_EQ(st.waiters, 1);

	/* Data is waiting, yet nothing shows. */
	ASSERT_EQ(send(vp, "data", 4, 0), 4);
	sleep_ms(50);
	EXPECT_EQ(poll_one(v, POLLIN | POLLOUT, QUIET_MS), 0);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(v, &rd);
	FD_SET(v, &wr);
	EXPECT_EQ(select(v + 1, &rd, &wr, NULL, &tv), 0);
	EXPECT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), -1);
	EXPECT_EQ(errno, EAGAIN);
	ASSERT_EQ(set_nonblock(v), 0);
	EXPECT_EQ(recv(v, buf, sizeof(buf), 0), -1);
	EXPECT_EQ(errno, EAGAIN);

	/*
	 * The holder flushes: its buffer is handed to the parked socket, and
	 * a poll() sleeping on that socket wakes up to the real readiness.
	 */
	c.op = CALL_POLL;
	c.fd = v;
	c.events = POLLIN | POLLOUT;
	ASSERT_EQ(blocked_call_start(&c), 0);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS));
	release(_metadata, h);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS))
		TH_LOG("poll() not woken up by the handoff");
	EXPECT_EQ(c.ret & (POLLIN | POLLOUT), POLLIN | POLLOUT);
	n = poll_one(v, POLLIN | POLLOUT, 0);
	EXPECT_EQ(n & (POLLIN | POLLOUT), POLLIN | POLLOUT);
	ASSERT_EQ(info_get(v, &info), 0);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	EXPECT_EQ(info.waits, 1ULL);
	EXPECT_EQ(info.handoffs, 1ULL);
	EXPECT_GT(info.wait_ns, 0ULL);
	stats(_metadata, &st);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.in_use, 1);
	EXPECT_GE(st.wait_ns_max, (long long)info.wait_ns);
	EXPECT_EQ(waiters_read(&port, 1), 0);

	ASSERT_EQ(recv(v, buf, sizeof(buf), 0), 4);
	EXPECT_EQ(memcmp(buf, "data", 4), 0);
	ASSERT_EQ(recv_all(hp, buf, 2, WAKE_MS), 2U);
	EXPECT_EQ(memcmp(buf, "hr", 2), 0);

	/* Its next send empties the handed buffer, which goes back. */
	ASSERT_EQ(send(v, "go", 2, MSG_DONTWAIT), 2);
	ASSERT_EQ(recv_all(vp, buf, 2, WAKE_MS), 2U);
	EXPECT_EQ(memcmp(buf, "go", 2), 0);
	EXPECT_EQ(info_flags(v), 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);

	/* Parked a second time: the socket's counters add up. */
	ASSERT_EQ(send(h, "h", 1, MSG_MORE | MSG_DONTWAIT), 1);
	ASSERT_TRUE(park(v));
	release(_metadata, h);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	wait_ns = info.wait_ns;
	ASSERT_EQ(info_get(v, &info), 0);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	EXPECT_EQ(info.waits, 2ULL);
	EXPECT_EQ(info.handoffs, 2ULL);
	EXPECT_GT(info.wait_ns, wait_ns);
	stats(_metadata, &st);
	EXPECT_EQ(st.waits - self->st0.waits, 2);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 2);
}

/*
 * MBUFMUX_BLOCK_SEND: a parked socket is not writable, but stays readable
 * (poll shows POLLIN, recv works). Switching back to both directions hides
 * POLLIN again; the handoff brings POLLOUT.
 */
TEST_F(mbufmux, park_send_only)
{
	int h, hp, v, vp, val = MBUFMUX_BLOCK_SEND;
	struct pool_stats st;
	char buf[8];
	short ev;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_EQ(setsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, sizeof(val)),
		  0);
	ASSERT_TRUE(park(v));

	EXPECT_EQ(poll_one(v, POLLIN | POLLOUT, QUIET_MS), 0);
	ASSERT_EQ(send(vp, "abcd", 4, 0), 4);
	ev = poll_one(v, POLLIN | POLLOUT, WAKE_MS);
	EXPECT_EQ(ev & (POLLIN | POLLOUT), POLLIN);
	ASSERT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), 4);
	EXPECT_EQ(memcmp(buf, "abcd", 4), 0);
	EXPECT_EQ(send(v, "p", 1, MSG_DONTWAIT), -1);
	EXPECT_EQ(errno, EAGAIN);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED);

	/* Back to both directions while parked: reading stops too. */
	val = MBUFMUX_BLOCK_BOTH;
	ASSERT_EQ(setsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, sizeof(val)),
		  0);
	ASSERT_EQ(send(vp, "efgh", 4, 0), 4);
	sleep_ms(50);
	EXPECT_EQ(poll_one(v, POLLIN | POLLOUT, QUIET_MS), 0);
	EXPECT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), -1);
	EXPECT_EQ(errno, EAGAIN);

	release(_metadata, h);
	ev = poll_one(v, POLLIN | POLLOUT, WAKE_MS);
	EXPECT_EQ(ev & (POLLIN | POLLOUT), POLLIN | POLLOUT);
	ASSERT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), 4);
	EXPECT_EQ(memcmp(buf, "efgh", 4), 0);
	stats(_metadata, &st);
	EXPECT_EQ(st.waits - self->st0.waits, 1);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
	EXPECT_EQ(st.waiters, 0);
}

/*
 * The send-only mode in use: two attached ends of one connection on a pool
 * of one buffer. A fills the connection (TCP full, bytes staged in the one
 * buffer) while B, which must answer, is parked. B still reads, so A's
 * staged bytes drain, its buffer comes back and goes to B, which answers.
 * (Blocking both directions, B could not read, and neither would move.)
 */
TEST_F(mbufmux, send_only_exchange)
{
	int a, b, val = MBUFMUX_BLOCK_SEND;
	struct pool_stats st;
	size_t total, got;
	char *buf;
	ssize_t n;

	buf = malloc(BACKLOG_CHUNK);
	ASSERT_NE(buf, NULL);
	shrink(_metadata, 1);
	a = new_pair(_metadata, self, true, &b);
	ASSERT_EQ(attach(b), 0);
	ASSERT_EQ(setsockopt(b, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, sizeof(val)),
		  0);
	ASSERT_EQ(set_nonblock(b), 0);

	total = backlog(_metadata, a, 50);
	ASSERT_TRUE(park(b));

	for (got = 0; got < total; got += n) {
		ASSERT_TRUE(poll_one(b, POLLIN, WAKE_MS) & POLLIN)
			TH_LOG("got %zu of %zu bytes", got, total);
		n = recv(b, buf, BACKLOG_CHUNK, 0);
		ASSERT_GT(n, 0);
		ASSERT_EQ(check(buf, n, 50, got), -1);
	}
	ASSERT_TRUE(poll_one(b, POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(a), 0U);
	EXPECT_EQ(info_flags(b), MBUFMUX_F_HOLDS_BUF);
	ASSERT_EQ(send(b, "answer", 6, 0), 6);
	ASSERT_EQ(recv_all(a, buf, 6, WAKE_MS), 6U);
	EXPECT_EQ(memcmp(buf, "answer", 6), 0);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
	free(buf);
}

/*
 * Hang-ups and errors show through parking: the peer's FIN gives
 * POLLIN|POLLRDHUP and recv() returns end of file; its reset gives
 * POLLERR/POLLHUP and send() the error. Closing the socket then takes it
 * off the wait list (a cancel).
 */
TEST_F(mbufmux, park_hangup)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	int h, hp, v, vp;
	struct pool_stats st;
	char buf[8];
	short ev;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));

	ASSERT_EQ(shutdown(vp, SHUT_WR), 0);
	ev = poll_one(v, POLLIN | POLLOUT | POLLRDHUP, WAKE_MS);
	EXPECT_TRUE(ev & POLLRDHUP) TH_LOG("revents %#x", ev);
	EXPECT_FALSE(ev & POLLOUT);
	EXPECT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), 0);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED);

	ASSERT_EQ(setsockopt(vp, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin)), 0);
	drop(self, vp);
	ev = poll_one(v, POLLOUT, WAKE_MS);
	EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("revents %#x", ev);
	EXPECT_EQ(send(v, "p", 1, MSG_DONTWAIT | MSG_NOSIGNAL), -1);
	EXPECT_TRUE(errno == ECONNRESET || errno == EPIPE)
		TH_LOG("errno %d", errno);

	drop(self, v);
	stats(_metadata, &st);
	EXPECT_EQ(st.cancels - self->st0.cancels, 1);
	EXPECT_EQ(st.waiters, 0);
	release(_metadata, h);
	stats(_metadata, &st);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 0);
}

#define FIFO_N	9

/*
 * FIFO: 9 sockets parked in a known order (the debugfs list shows that
 * order) are served in that order, one buffer at a time: each handoff
 * makes exactly the head writable, the others stay parked, and the woken
 * socket keeps the buffer until its next send, which hands it on.
 */
TEST_F(mbufmux, fifo_order)
{
	unsigned short port[FIFO_N], wport[FIFO_N];
	int h[2], hp[2], v[FIFO_N], vp[FIFO_N];
	long long wait_ns_max = 0;
	struct mbufmux_info info;
	struct pool_stats st;
	int i, j, k;
	char c;

	shrink(_metadata, 2);
	holders(_metadata, self, h, hp, 2);
	for (i = 0; i < FIFO_N; i++) {
		v[i] = new_pair(_metadata, self, true, &vp[i]);
		ASSERT_TRUE(park(v[i]));
		port[i] = local_port(v[i]);
	}
	stats(_metadata, &st);
	EXPECT_EQ(st.waits - self->st0.waits, FIFO_N);
	EXPECT_EQ(st.waiters, FIFO_N);
	EXPECT_GE(st.waiters_peak, FIFO_N);
	ASSERT_EQ(waiters_read(wport, FIFO_N), FIFO_N);
	for (i = 0; i < FIFO_N; i++)
		EXPECT_EQ(wport[i], port[i]) TH_LOG("position %d", i);

	release(_metadata, h[0]);
	for (i = 0; i < FIFO_N; i++) {
		/* The head, and only the head, is handed the buffer. */
		k = poll_first(v + i, FIFO_N - i, POLLOUT, WAKE_MS);
		ASSERT_EQ(k, 0) TH_LOG("step %d: socket %d woke first", i,
				       i + k);
		ASSERT_EQ(info_get(v[i], &info), 0);
		EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
		EXPECT_EQ(info.handoffs, 1ULL);
		EXPECT_GT(info.wait_ns, 0ULL);
		if ((long long)info.wait_ns > wait_ns_max)
			wait_ns_max = info.wait_ns;
		for (j = i + 1; j < FIFO_N; j++)
			EXPECT_EQ(info_flags(v[j]), MBUFMUX_F_PARKED)
				TH_LOG("step %d: socket %d", i, j);
		if (i + 1 < FIFO_N)
			EXPECT_EQ(poll_first(v + i + 1, FIFO_N - i - 1,
					     POLLOUT, 0), -1);
		stats(_metadata, &st);
		EXPECT_EQ(st.handoffs - self->st0.handoffs, i + 1);
		EXPECT_EQ(st.waiters, FIFO_N - i - 1);
		EXPECT_EQ(st.in_use, 2);
		EXPECT_EQ(waiters_read(wport, FIFO_N), FIFO_N - i - 1);
		if (i + 1 < FIFO_N)
			EXPECT_EQ(wport[0], port[i + 1]);

		/* It keeps the buffer until its next send empties it. */
		sleep_ms(10);
		EXPECT_EQ(info_flags(v[i]), MBUFMUX_F_HOLDS_BUF);
		ASSERT_EQ(send(v[i], "n", 1, MSG_DONTWAIT), 1);
		ASSERT_EQ(recv_all(vp[i], &c, 1, WAKE_MS), 1U);
		EXPECT_EQ(info_flags(v[i]), 0U);
	}
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 1);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, FIFO_N);
	EXPECT_EQ(st.wait_hist - self->st0.wait_hist, FIFO_N);
	EXPECT_EQ(st.cancels - self->st0.cancels, 0);
	EXPECT_GE(st.wait_ns_max, wait_ns_max);
}

/*
 * A blocking send on a dry pool sleeps, parked, until a buffer is handed
 * to it (here by a holder that closes); then it completes and the bytes
 * arrive, the holder's too.
 */
TEST_F(mbufmux, blocked_send_woken)
{
	char out[4000], in[4000];
	struct blocked_call c = {};
	struct pool_stats st;
	int h, hp, v, vp;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	fill(out, sizeof(out), 11, 0);

	c.op = CALL_SEND;
	c.fd = v;
	c.buf = out;
	c.len = sizeof(out);
	ASSERT_EQ(blocked_call_start(&c), 0);
	ASSERT_EQ(wait_flags(v, MBUFMUX_F_PARKED, MBUFMUX_F_PARKED, WAKE_MS) &
		  MBUFMUX_F_PARKED, MBUFMUX_F_PARKED);
	stats(_metadata, &st);
	EXPECT_EQ(st.waiters, 1);
	EXPECT_EQ(st.waits - self->st0.waits, 1);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS));

	/* The holder closes: its byte goes out, its buffer to the sender. */
	drop(self, h);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, (ssize_t)sizeof(out)) TH_LOG("errno %d", c.err);
	ASSERT_EQ(recv_all(vp, in, sizeof(in), WAKE_MS), sizeof(in));
	EXPECT_EQ(check(in, sizeof(in), 11, 0), -1);
	ASSERT_EQ(recv_all(hp, in, 1, WAKE_MS), 1U);
	EXPECT_EQ(in[0], 'h');
	EXPECT_TRUE(recv_eof(hp));
	stats(_metadata, &st);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.in_use, 0);
}

/*
 * Errors end a send sleeping on a dry pool: the socket's own
 * shutdown(SHUT_WR) with EPIPE, the peer's reset with ECONNRESET (or
 * EPIPE). Closing the sockets then cancels their places in the queue.
 */
TEST_F(mbufmux, blocked_send_errors)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	struct blocked_call c[2] = {};
	struct pool_stats st;
	int h, hp, v[2], vp[2], i;
	char out[100];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	for (i = 0; i < 2; i++) {
		v[i] = new_pair(_metadata, self, true, &vp[i]);
		c[i].op = CALL_SEND;
		c[i].fd = v[i];
		c[i].buf = out;
		c[i].len = sizeof(out);
		ASSERT_EQ(blocked_call_start(&c[i]), 0);
		ASSERT_EQ(wait_flags(v[i], MBUFMUX_F_PARKED, MBUFMUX_F_PARKED,
				     WAKE_MS) & MBUFMUX_F_PARKED,
			  MBUFMUX_F_PARKED);
	}

	ASSERT_EQ(shutdown(v[0], SHUT_WR), 0);
	ASSERT_TRUE(blocked_call_join(&c[0], WAKE_MS));
	EXPECT_EQ(c[0].ret, -1);
	EXPECT_EQ(c[0].err, EPIPE);

	ASSERT_EQ(setsockopt(vp[1], SOL_SOCKET, SO_LINGER, &lin, sizeof(lin)),
		  0);
	drop(self, vp[1]);
	ASSERT_TRUE(blocked_call_join(&c[1], WAKE_MS));
	EXPECT_EQ(c[1].ret, -1);
	EXPECT_TRUE(c[1].err == ECONNRESET || c[1].err == EPIPE)
		TH_LOG("errno %d", c[1].err);

	EXPECT_TRUE(recv_eof(vp[0]));
	drop(self, v[0]);
	drop(self, v[1]);
	stats(_metadata, &st);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.cancels - self->st0.cancels, 2);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 0);
}

/*
 * SO_SNDTIMEO: a blocking send on a dry pool fails with EAGAIN once the
 * timeout expires; the socket stays parked (in its place) and is served
 * by the next buffer that comes back.
 */
TEST_F(mbufmux, sndtimeo)
{
	struct timeval tv = { .tv_usec = 300000 };
	struct pool_stats st;
	int h, hp, v, vp;
	char buf[4];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_EQ(setsockopt(v, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);

	EXPECT_EQ(send(v, "t", 1, 0), -1);
	EXPECT_EQ(errno, EAGAIN);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED);
	stats(_metadata, &st);
	EXPECT_EQ(st.waiters, 1);
	EXPECT_EQ(st.waits - self->st0.waits, 1);

	/* Again: still in its place, not queued twice. */
	EXPECT_EQ(send(v, "t", 1, 0), -1);
	EXPECT_EQ(errno, EAGAIN);
	stats(_metadata, &st);
	EXPECT_EQ(st.waiters, 1);
	EXPECT_EQ(st.waits - self->st0.waits, 1);

	release(_metadata, h);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	ASSERT_EQ(send(v, "t", 1, MSG_DONTWAIT), 1);
	ASSERT_EQ(recv_all(vp, buf, 1, WAKE_MS), 1U);
	stats(_metadata, &st);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
	EXPECT_EQ(st.in_use, 0);
}

/*
 * A signal (handler without SA_RESTART) interrupts a send sleeping on a
 * dry pool: EINTR, nothing sent. The socket is still served afterwards.
 */
TEST_F(mbufmux, signal_interrupts)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct blocked_call c = {};
	struct pool_stats st;
	int h, hp, v, vp;
	char out[100];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);

	c.op = CALL_SEND;
	c.fd = v;
	c.buf = out;
	c.len = sizeof(out);
	ASSERT_EQ(blocked_call_start(&c), 0);
	ASSERT_EQ(wait_flags(v, MBUFMUX_F_PARKED, MBUFMUX_F_PARKED, WAKE_MS) &
		  MBUFMUX_F_PARKED, MBUFMUX_F_PARKED);
	ASSERT_EQ(pthread_kill(c.thread, SIGUSR1), 0);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, -1);
	EXPECT_EQ(c.err, EINTR);
	EXPECT_EQ(poll_one(vp, POLLIN, QUIET_MS), 0);

	release(_metadata, h);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	ASSERT_EQ(send(v, out, 10, MSG_DONTWAIT), 10);
	stats(_metadata, &st);
	EXPECT_EQ(st.waits - self->st0.waits, 1);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
	EXPECT_EQ(st.in_use, 0);
}

/*
 * Receiving while parked (both directions blocked): SO_RCVTIMEO expires
 * with EAGAIN although data is there; a blocking recv sleeps until the
 * handoff, then gets the data.
 */
TEST_F(mbufmux, recv_parked)
{
	struct timeval tv = { .tv_usec = 300000 };
	struct blocked_call c = {};
	char out[100], in[100];
	int h, hp, v, vp;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));
	fill(out, sizeof(out), 12, 0);
	ASSERT_EQ(send(vp, out, sizeof(out), 0), (ssize_t)sizeof(out));

	ASSERT_EQ(setsockopt(v, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	EXPECT_EQ(recv(v, in, sizeof(in), 0), -1);
	EXPECT_EQ(errno, EAGAIN);
	memset(&tv, 0, sizeof(tv));
	ASSERT_EQ(setsockopt(v, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);

	c.op = CALL_RECV;
	c.fd = v;
	c.buf = in;
	c.len = sizeof(in);
	ASSERT_EQ(blocked_call_start(&c), 0);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS));
	release(_metadata, h);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, (ssize_t)sizeof(in)) TH_LOG("errno %d", c.err);
	EXPECT_EQ(check(in, sizeof(in), 12, 0), -1);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_HOLDS_BUF);
}

/*
 * Switching a parked socket to MBUFMUX_BLOCK_SEND lets a recv() sleeping on
 * it go at once: it gets the data while the socket stays parked.
 */
TEST_F(mbufmux, recv_mode_switch)
{
	int h, hp, v, vp, val = MBUFMUX_BLOCK_SEND;
	struct blocked_call c = {};
	char out[100], in[100];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));
	fill(out, sizeof(out), 13, 0);
	ASSERT_EQ(send(vp, out, sizeof(out), 0), (ssize_t)sizeof(out));

	c.op = CALL_RECV;
	c.fd = v;
	c.buf = in;
	c.len = sizeof(in);
	ASSERT_EQ(blocked_call_start(&c), 0);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS));
	ASSERT_EQ(setsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, sizeof(val)),
		  0);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, (ssize_t)sizeof(in)) TH_LOG("errno %d", c.err);
	EXPECT_EQ(check(in, sizeof(in), 13, 0), -1);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED);
}

/*
 * epoll, level-triggered: nothing while parked (with data waiting), then
 * EPOLLIN|EPOLLOUT after the handoff, and again on the next wait.
 */
TEST_F(mbufmux, epoll_level)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	int h, hp, v, vp, ep;
	char buf[4];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));
	ASSERT_EQ(send(vp, "lvl", 3, 0), 3);

	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(ep, 0);
	track(_metadata, self, ep);
	ev.data.fd = v;
	ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, v, &ev), 0);
	EXPECT_EQ(epoll_wait(ep, &ev, 1, QUIET_MS), 0);

	release(_metadata, h);
	ASSERT_EQ(epoll_wait(ep, &ev, 1, WAKE_MS), 1);
	EXPECT_EQ(ev.data.fd, v);
	EXPECT_EQ(ev.events & (EPOLLIN | EPOLLOUT),
		  (uint32_t)(EPOLLIN | EPOLLOUT));
	ASSERT_EQ(epoll_wait(ep, &ev, 1, 0), 1);
	EXPECT_EQ(ev.events & (EPOLLIN | EPOLLOUT),
		  (uint32_t)(EPOLLIN | EPOLLOUT));
	ASSERT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), 3);
}

/*
 * epoll, edge-triggered: a socket registered before it was parked (its
 * first edge consumed) and one registered while parked each get an
 * EPOLLOUT edge when a buffer is handed to them, in FIFO order, and only
 * one.
 */
TEST_F(mbufmux, epoll_edge)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
	int h, hp, v[2], vp[2], ep;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(ep, 0);
	track(_metadata, self, ep);

	v[0] = new_pair(_metadata, self, true, &vp[0]);
	ev.data.fd = v[0];
	ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, v[0], &ev), 0);
	ASSERT_EQ(epoll_wait(ep, &ev, 1, WAKE_MS), 1);
	EXPECT_TRUE(!!(ev.events & EPOLLOUT));
	EXPECT_EQ(epoll_wait(ep, &ev, 1, 0), 0);
	ASSERT_TRUE(park(v[0]));

	/* EPOLLOUT alone: the wake-up must carry it. */
	v[1] = new_pair(_metadata, self, true, &vp[1]);
	ASSERT_TRUE(park(v[1]));
	ev.events = EPOLLOUT | EPOLLET;
	ev.data.fd = v[1];
	ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, v[1], &ev), 0);
	EXPECT_EQ(epoll_wait(ep, &ev, 1, QUIET_MS), 0);

	release(_metadata, h);
	ASSERT_EQ(epoll_wait(ep, &ev, 1, WAKE_MS), 1);
	EXPECT_EQ(ev.data.fd, v[0]);
	EXPECT_TRUE(!!(ev.events & EPOLLOUT));
	EXPECT_EQ(epoll_wait(ep, &ev, 1, QUIET_MS), 0);

	/* v[0] sends: its buffer goes to v[1]. */
	ASSERT_EQ(send(v[0], "e", 1, MSG_DONTWAIT), 1);
	ASSERT_EQ(epoll_wait(ep, &ev, 1, WAKE_MS), 1);
	if (ev.data.fd == v[0])	/* v[0]'s own send may signal an edge */
		ASSERT_EQ(epoll_wait(ep, &ev, 1, WAKE_MS), 1);
	EXPECT_EQ(ev.data.fd, v[1]);
	EXPECT_TRUE(!!(ev.events & EPOLLOUT));
	EXPECT_EQ(info_flags(v[1]), MBUFMUX_F_HOLDS_BUF);
}

/*
 * Close while parked: the socket leaves the wait list (a cancel, one
 * waiter fewer, gone from debugfs), and the sockets around it keep their
 * order. A socket closed while holding a handed buffer gives it back.
 */
TEST_F(mbufmux, close_parked)
{
	unsigned short wport[3];
	int h, hp, v[3], vp[3], i;
	struct pool_stats st;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	for (i = 0; i < 3; i++) {
		v[i] = new_pair(_metadata, self, true, &vp[i]);
		ASSERT_TRUE(park(v[i]));
	}

	drop(self, v[1]);
	stats(_metadata, &st);
	EXPECT_EQ(st.cancels - self->st0.cancels, 1);
	EXPECT_EQ(st.waiters, 2);
	ASSERT_EQ(waiters_read(wport, 3), 2);
	EXPECT_EQ(wport[0], local_port(v[0]));
	EXPECT_EQ(wport[1], local_port(v[2]));

	release(_metadata, h);
	ASSERT_TRUE(poll_one(v[0], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(v[2]), MBUFMUX_F_PARKED);
	ASSERT_EQ(send(v[0], "c", 1, MSG_DONTWAIT), 1);
	ASSERT_TRUE(poll_one(v[2], POLLOUT, WAKE_MS) & POLLOUT);
	stats(_metadata, &st);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 2);
	EXPECT_EQ(st.in_use, 1);

	/* v[2] holds the handed buffer, unused: closing gives it back. */
	EXPECT_EQ(info_flags(v[2]), MBUFMUX_F_HOLDS_BUF);
	drop(self, v[2]);
	ASSERT_EQ(wait_rest(&st, REST_MS), 0);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 2);
	EXPECT_EQ(st.waits - self->st0.waits, 3);
}

/*
 * Close with staged bytes: what send() accepted with MSG_MORE reaches the
 * peer, every byte, before end of file. Once with a few bytes staged, once
 * with all but one byte of the buffer.
 */
TEST_F(mbufmux, close_staged)
{
	size_t sizes[2] = { 3000, self->buf_size - 1 };
	struct mbufmux_info info;
	struct pool_stats st;
	size_t off, n;
	char *buf;
	int fd, peer, i;

	buf = malloc(self->buf_size);
	ASSERT_NE(buf, NULL);
	for (i = 0; i < 2; i++) {
		fd = new_pair(_metadata, self, true, &peer);
		fill(buf, sizes[i], 20 + i, 0);
		for (off = 0; off < sizes[i]; off += n) {
			n = sizes[i] - off < 1000 ? sizes[i] - off : 1000;
			ASSERT_EQ(send(fd, buf + off, n, MSG_MORE), (ssize_t)n);
		}
		ASSERT_EQ(info_get(fd, &info), 0);
		EXPECT_EQ(info.staged, sizes[i]);
		EXPECT_EQ(poll_one(peer, POLLIN, 0), 0);

		drop(self, fd);
		memset(buf, 0, self->buf_size);
		ASSERT_EQ(recv_all(peer, buf, sizes[i], WAKE_MS), sizes[i]);
		EXPECT_EQ(check(buf, sizes[i], 20 + i, 0), -1);
		EXPECT_TRUE(recv_eof(peer));
	}
	ASSERT_EQ(wait_rest(&st, REST_MS), 0);
	EXPECT_EQ(st.allocs - self->st0.allocs, 2);
	EXPECT_EQ(st.frees - self->st0.frees, 2);
	free(buf);
}

/*
 * What TCP cannot take yet stays staged and goes out from the write-space
 * callback, without another send: once the peer reads, every byte
 * arrives and the emptied buffer goes back to the pool by itself.
 */
TEST_F(mbufmux, backlog_drains)
{
	struct pool_stats st;
	size_t total;
	int fd, peer;
	char *buf;

	buf = malloc(BACKLOG_CHUNK);
	ASSERT_NE(buf, NULL);
	fd = new_pair(_metadata, self, true, &peer);
	total = backlog(_metadata, fd, 30);
	recv_pattern(_metadata, peer, buf, total, 30);
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);
	EXPECT_EQ(wait_flags(fd, ~0U, 0, WAKE_MS), 0U);
	ASSERT_EQ(wait_rest(&st, WAKE_MS), 0);
	EXPECT_EQ(st.allocs - self->st0.allocs,
		  st.frees - self->st0.frees);
	free(buf);
}

/*
 * Close with bytes that TCP could not take yet (the peer not reading):
 * every byte send() accepted is still delivered, then end of file.
 */
TEST_F(mbufmux, close_backlogged)
{
	size_t total;
	int fd, peer;
	char *buf;

	buf = malloc(BACKLOG_CHUNK);
	ASSERT_NE(buf, NULL);
	fd = new_pair(_metadata, self, true, &peer);
	total = backlog(_metadata, fd, 31);
	drop(self, fd);
	recv_pattern(_metadata, peer, buf, total, 31);
	EXPECT_TRUE(recv_eof(peer));
	free(buf);
}

/*
 * shutdown(SHUT_WR) with staged bytes: they reach the peer before the
 * FIN, the buffer goes back, further sends fail with EPIPE, and receiving
 * still works. Also with bytes TCP could not take yet.
 */
TEST_F(mbufmux, shutdown_staged)
{
	char out[5000], in[5000], *buf;
	struct pool_stats st;
	size_t total;
	int fd, peer;

	fd = new_pair(_metadata, self, true, &peer);
	fill(out, sizeof(out), 40, 0);
	ASSERT_EQ(send(fd, out, sizeof(out), MSG_MORE), (ssize_t)sizeof(out));
	EXPECT_EQ(info_flags(fd), MBUFMUX_F_HOLDS_BUF);
	ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
	ASSERT_EQ(recv_all(peer, in, sizeof(in), WAKE_MS), sizeof(in));
	EXPECT_EQ(check(in, sizeof(in), 40, 0), -1);
	EXPECT_TRUE(recv_eof(peer));
	EXPECT_EQ(info_flags(fd), 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(send(fd, "x", 1, MSG_NOSIGNAL), -1);
	EXPECT_EQ(errno, EPIPE);
	ASSERT_EQ(send(peer, "back", 4, 0), 4);
	ASSERT_EQ(recv_all(fd, in, 4, WAKE_MS), 4U);
	EXPECT_EQ(memcmp(in, "back", 4), 0);

	/* Bytes TCP could not take yet go before the FIN too. */
	buf = malloc(BACKLOG_CHUNK);
	ASSERT_NE(buf, NULL);
	fd = new_pair(_metadata, self, true, &peer);
	total = backlog(_metadata, fd, 41);
	ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
	recv_pattern(_metadata, peer, buf, total, 41);
	EXPECT_TRUE(recv_eof(peer));
	EXPECT_EQ(wait_flags(fd, ~0U, 0, WAKE_MS), 0U);
	ASSERT_EQ(send(peer, "back", 4, 0), 4);
	ASSERT_EQ(recv_all(fd, in, 4, WAKE_MS), 4U);
	free(buf);
}

/*
 * shutdown(SHUT_WR) ends a parked socket's need for a buffer: it leaves
 * the wait list (a cancel) instead of waiting for a buffer it can never
 * use, and, no longer parked, reads again.
 */
TEST_F(mbufmux, shutdown_parked)
{
	struct pool_stats st;
	int h, hp, v, vp;
	char buf[4];

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));

	ASSERT_EQ(shutdown(v, SHUT_WR), 0);
	EXPECT_TRUE(recv_eof(vp));
	EXPECT_EQ(info_flags(v), 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.cancels - self->st0.cancels, 1);
	ASSERT_EQ(send(vp, "rd", 2, 0), 2);
	EXPECT_TRUE(poll_one(v, POLLIN, WAKE_MS) & POLLIN);
	EXPECT_EQ(recv(v, buf, sizeof(buf), MSG_DONTWAIT), 2);

	/* Nobody is waiting: the holder's buffer goes back to the pool. */
	release(_metadata, h);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 0);
}

/*
 * shutdown(SHUT_WR) of a socket holding a handed buffer it has not used
 * yet gives the buffer back: nothing can be sent with it any more.
 */
TEST_F(mbufmux, shutdown_handed)
{
	struct pool_stats st;
	int h, hp, v, vp;

	shrink(_metadata, 1);
	holders(_metadata, self, &h, &hp, 1);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));
	release(_metadata, h);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	ASSERT_EQ(info_flags(v), MBUFMUX_F_HOLDS_BUF);

	ASSERT_EQ(shutdown(v, SHUT_WR), 0);
	EXPECT_TRUE(recv_eof(vp));
	EXPECT_EQ(info_flags(v), 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 0);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
}

/*
 * Raising the limit wakes parked sockets at once, as many as the new room,
 * in FIFO order: 6 parked on a pool of 2, the limit raised to 5 wakes the
 * first 3, raised to 8 the other 3.
 */
TEST_F(mbufmux, raise_limit)
{
	int h[2], hp[2], v[6], vp[6], i;
	struct pool_stats st;
	short ev;

	shrink(_metadata, 2);
	holders(_metadata, self, h, hp, 2);
	for (i = 0; i < 6; i++) {
		v[i] = new_pair(_metadata, self, true, &vp[i]);
		ASSERT_TRUE(park(v[i]));
	}

	ASSERT_EQ(param_set("limit", 5), 0);
	for (i = 0; i < 3; i++) {
		ev = poll_one(v[i], POLLOUT, WAKE_MS);
		ASSERT_TRUE(ev & POLLOUT) TH_LOG("socket %d", i);
		EXPECT_EQ(info_flags(v[i]), MBUFMUX_F_HOLDS_BUF);
	}
	for (; i < 6; i++)
		EXPECT_EQ(info_flags(v[i]), MBUFMUX_F_PARKED)
			TH_LOG("socket %d", i);
	stats(_metadata, &st);
	EXPECT_EQ(st.limit, 5);
	EXPECT_EQ(st.in_use, 5);
	EXPECT_EQ(st.waiters, 3);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 3);

	ASSERT_EQ(param_set("limit", 8), 0);
	for (i = 3; i < 6; i++) {
		ev = poll_one(v[i], POLLOUT, WAKE_MS);
		ASSERT_TRUE(ev & POLLOUT) TH_LOG("socket %d", i);
		EXPECT_EQ(info_flags(v[i]), MBUFMUX_F_HOLDS_BUF);
	}
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 8);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.waits - self->st0.waits, 6);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 6);
}

/*
 * Lowering the limit takes no buffer back; it only stops new ones until
 * enough have come back: a socket parked on a limit lowered from 4 to 1
 * under 3 holders is served when the last of them lets go.
 */
TEST_F(mbufmux, lower_limit)
{
	int h[3], hp[3], v, vp, i;
	struct pool_stats st;

	shrink(_metadata, 4);
	holders(_metadata, self, h, hp, 3);
	ASSERT_EQ(param_set("limit", 1), 0);
	for (i = 0; i < 3; i++)
		EXPECT_EQ(info_flags(h[i]), MBUFMUX_F_HOLDS_BUF);
	v = new_pair(_metadata, self, true, &vp);
	ASSERT_TRUE(park(v));

	for (i = 0; i < 2; i++) {
		release(_metadata, h[i]);
		EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED) TH_LOG("%d", i);
	}
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 1);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 0);
	release(_metadata, h[2]);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_HOLDS_BUF);
	stats(_metadata, &st);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
}

/*
 * The reserve is out of unprivileged reach: with limit 4 and reserve 2,
 * sockets attached without CAP_NET_ADMIN get 2 buffers and the third is
 * parked, while a privileged socket still gets one, even with that waiter
 * queued ahead of it. Lowering the reserve serves the parked socket at once.
 * (The per-user cap, which would stop root's third unprivileged socket
 * first, is set out of the way.)
 */
TEST_F(mbufmux, reserve)
{
	int u[3], up[3], p, pp, i;
	struct pool_stats st;

	shrink(_metadata, 4);
	ASSERT_EQ(param_set("reserve", 2), 0);
	ASSERT_EQ(param_set("user_limit", 4), 0);
	ASSERT_EQ(net_admin(false), 0);
	for (i = 0; i < 3; i++)
		u[i] = new_pair(_metadata, self, true, &up[i]);
	ASSERT_EQ(net_admin(true), 0);
	p = new_pair(_metadata, self, true, &pp);

	for (i = 0; i < 2; i++)
		ASSERT_EQ(send(u[i], "u", 1, MSG_MORE | MSG_DONTWAIT), 1);
	ASSERT_TRUE(park(u[2]));
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 2);
	EXPECT_EQ(st.waiters, 1);

	ASSERT_EQ(send(p, "p", 1, MSG_MORE | MSG_DONTWAIT), 1);
	EXPECT_EQ(info_flags(p), MBUFMUX_F_HOLDS_BUF);
	EXPECT_EQ(info_flags(u[2]), MBUFMUX_F_PARKED);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 3);

	ASSERT_EQ(param_set("reserve", 0), 0);
	ASSERT_TRUE(poll_one(u[2], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(u[2]), MBUFMUX_F_HOLDS_BUF);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 4);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.waits - self->st0.waits, 1);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, 1);
}

/*
 * Bad parameter writes fail with EINVAL (ERANGE for an overflow) and leave
 * the old values, in the parameters and in the pool: not a number,
 * negative, a limit of 0 or above 16777216, a reserve not below the
 * limit. buf_size cannot be written at all. Good writes take effect.
 */
TEST_F(mbufmux, bad_params)
{
	static const char * const bad_limit[] = {
		"abc", "12abc", "-1", "0", "16777217", "1.5", " ", "\n",
	};
	static const char * const bad_reserve[] = {
		"abc", "-1", "4", "5", "3x",
	};
	struct pool_stats st;
	int fd;

	shrink(_metadata, 4);
	expect_refused(_metadata, "limit", bad_limit, ARRAY_SIZE(bad_limit), 4);
	expect_refused(_metadata, "reserve", bad_reserve,
		       ARRAY_SIZE(bad_reserve), 0);
	stats(_metadata, &st);
	EXPECT_EQ(st.limit, 4);
	EXPECT_EQ(st.reserve, 0);

	/* The limit cannot go down to the reserve either. */
	ASSERT_EQ(param_write("reserve", "3\n"), 0);
	EXPECT_EQ(param_write("limit", "3"), -EINVAL);
	EXPECT_EQ(param_write("limit", "1"), -EINVAL);
	EXPECT_EQ(param_get("limit"), 4);
	EXPECT_EQ(param_get("reserve"), 3);
	stats(_metadata, &st);
	EXPECT_EQ(st.limit, 4);
	EXPECT_EQ(st.reserve, 3);

	/* The extremes that are allowed. */
	ASSERT_EQ(param_write("reserve", "0"), 0);
	EXPECT_EQ(param_write("limit", "16777216"), 0);
	EXPECT_EQ(param_get("limit"), 16777216);
	EXPECT_EQ(param_write("limit", "1"), 0);
	EXPECT_EQ(param_get("limit"), 1);
	stats(_metadata, &st);
	EXPECT_EQ(st.limit, 1);

	/* buf_size is set at load time only: not even root opens it. */
	fd = open(PARAM_DIR "buf_size", O_WRONLY | O_CLOEXEC);
	EXPECT_EQ(fd, -1);
	EXPECT_EQ(errno, EACCES);
	if (fd >= 0)
		close(fd);
	EXPECT_EQ(param_get("buf_size"), self->buf_size);
}

/*
 * Unloading is refused while a socket is attached (one module reference
 * per attached socket), and mbufmux.ko cannot go while mbufmux_tcp.ko is
 * loaded; the sockets keep working, and the references go with them.
 */
TEST_F(mbufmux, rmmod_busy)
{
	long ref0, ref;
	int fd, peer, err;
	long long end;
	char buf[4];

	ref0 = module_refcnt();
	ASSERT_GE(ref0, 0);
	fd = new_pair(_metadata, self, true, &peer);
	ASSERT_EQ(attach(peer), 0);
	EXPECT_EQ(module_refcnt(), ref0 + 2);
	ASSERT_GT(module_refcnt(), 0);

	err = syscall(SYS_delete_module, "mbufmux_tcp", O_NONBLOCK) ? errno : 0;
	if (!err) {
		module_load_params(&initial);
		ASSERT_TRUE(false)
			TH_LOG("mbufmux_tcp unloaded with sockets attached");
	}
	EXPECT_TRUE(err == EBUSY || err == EWOULDBLOCK) TH_LOG("errno %d", err);
	EXPECT_TRUE(module_loaded("mbufmux_tcp"));

	err = syscall(SYS_delete_module, "mbufmux", O_NONBLOCK) ? errno : 0;
	ASSERT_NE(err, 0) TH_LOG("mbufmux unloaded under mbufmux_tcp");
	EXPECT_TRUE(err == EBUSY || err == EWOULDBLOCK) TH_LOG("errno %d", err);
	EXPECT_TRUE(module_loaded("mbufmux"));

	ASSERT_EQ(send(fd, "still", 4, 0), 4);
	ASSERT_EQ(recv_all(peer, buf, 4, WAKE_MS), 4U);

	drop(self, fd);
	drop(self, peer);
	end = now_ms() + REST_MS;
	while ((ref = module_refcnt()) != ref0 && now_ms() < end)
		sleep_ms(10);
	EXPECT_EQ(ref, ref0);
}

TEST_HARNESS_MAIN
