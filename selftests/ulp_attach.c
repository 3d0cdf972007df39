// SPDX-License-Identifier: GPL-2.0
/*
 * Selftests of the "mbufmux" TCP ULP: the attach contract, what is refused
 * (sockmap, MPTCP, ...), the socket options, sending with and without
 * MSG_MORE, sendfile and splice.
 *
 * The fixture, and what the tests share: ulp.h.
 */
#define _GNU_SOURCE
#include "ulp.h"

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
 * Everything sent and the buffer back: @fd holds no buffer and stages
 * nothing, no buffer is in use, and @bufs were taken from the pool and
 * given back since the test began; the counters as read in *@st.
 */
static void expect_all_sent(struct __test_metadata *_metadata,
			    struct _test_data_mbufmux *self, int fd,
			    long long bufs, struct pool_stats *st)
{
	struct mbufmux_info info;

	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.flags, 0U);
	EXPECT_EQ(info.staged, 0U);
	stats(_metadata, st);
	EXPECT_EQ(st->in_use, 0);
	EXPECT_EQ(st->allocs - self->st0.allocs, bufs);
	EXPECT_EQ(st->frees - self->st0.frees, bufs);
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

	expect_all_sent(_metadata, self, fd, 2, &st);
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
	EXPECT_GE(info.staged, 100U);
	EXPECT_LT(info.staged, self->buf_size / 4);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 1);
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);

	ASSERT_EQ(send(fd, out + 100, 50, 0), 50);
	ASSERT_EQ(recv_all(peer, in, sizeof(in), WAKE_MS), sizeof(in));
	EXPECT_EQ(check(in, sizeof(in), 2, 0), -1);
	expect_all_sent(_metadata, self, fd, 1, &st);
}

/*
 * MSG_MORE holds at most one buffer: a send larger than the buffer is
 * accepted whole, full buffers go to TCP and only the rest stays staged:
 * the 100 bytes past the last buffer's worth, and the few bytes TCP still
 * held when each buffer's worth went (a partial segment Nagle's algorithm
 * keeps for a moment counts against the buffer), far less than a buffer.
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
	fd = new_pair_bufs(_metadata, self, 4 * self->buf_size, &peer);

	ASSERT_EQ(send(fd, out, len, MSG_MORE), (ssize_t)len);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	EXPECT_GE(info.staged, 100U);
	EXPECT_LT(info.staged, self->buf_size / 4);

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
	fd = new_pair_bufs(_metadata, self, 4 * self->buf_size, &peer);

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

TEST_HARNESS_MAIN
