// SPDX-License-Identifier: GPL-2.0
/*
 * Selftests of the "mbufmux" TCP ULP: receiving while parked, poll and
 * epoll of parked sockets, close and shutdown of parked, staged and
 * backlogged sockets.
 *
 * The fixture, and what the tests share: ulp.h.
 */
#define _GNU_SOURCE
#include "ulp.h"

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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	ASSERT_TRUE(park(v));
	fill(out, sizeof(out), 12, 0);
	ASSERT_EQ(send(vp, out, sizeof(out), 0), (ssize_t)sizeof(out));

	ASSERT_EQ(setsockopt(v, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	EXPECT_EQ(recv(v, in, sizeof(in), 0), -1);
	EXPECT_EQ(errno, EAGAIN);
	memset(&tv, 0, sizeof(tv));
	ASSERT_EQ(setsockopt(v, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);

	c = (struct blocked_call){ .op = CALL_RECV, .fd = v, .buf = in,
				   .len = sizeof(in) };
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	ASSERT_TRUE(park(v));
	fill(out, sizeof(out), 13, 0);
	ASSERT_EQ(send(vp, out, sizeof(out), 0), (ssize_t)sizeof(out));

	c = (struct blocked_call){ .op = CALL_RECV, .fd = v, .buf = in,
				   .len = sizeof(in) };
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
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

	fd = new_pair(_metadata, self, true, &peer);
	total = backlog(_metadata, fd, 30);
	recv_pattern(_metadata, peer, total, 30);
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);
	EXPECT_EQ(wait_flags(fd, ~0U, 0, WAKE_MS), 0U);
	ASSERT_EQ(wait_rest(&st, WAKE_MS), 0);
	EXPECT_EQ(st.allocs - self->st0.allocs,
		  st.frees - self->st0.frees);
}

/*
 * Close with bytes that TCP could not take yet (the peer not reading):
 * every byte send() accepted is still delivered, then end of file.
 */
TEST_F(mbufmux, close_backlogged)
{
	size_t total;
	int fd, peer;

	fd = new_pair(_metadata, self, true, &peer);
	total = backlog(_metadata, fd, 31);
	drop(self, fd);
	recv_pattern(_metadata, peer, total, 31);
	EXPECT_TRUE(recv_eof(peer));
}

/*
 * shutdown(SHUT_WR) with staged bytes: they reach the peer before the
 * FIN, the buffer goes back, further sends fail with EPIPE, and receiving
 * still works. Also with bytes TCP could not take yet.
 */
TEST_F(mbufmux, shutdown_staged)
{
	char out[5000], in[5000];
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
	fd = new_pair(_metadata, self, true, &peer);
	total = backlog(_metadata, fd, 41);
	ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
	recv_pattern(_metadata, peer, total, 41);
	EXPECT_TRUE(recv_eof(peer));
	EXPECT_EQ(wait_flags(fd, ~0U, 0, WAKE_MS), 0U);
	ASSERT_EQ(send(peer, "back", 4, 0), 4);
	ASSERT_EQ(recv_all(fd, in, 4, WAKE_MS), 4U);
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
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

TEST_HARNESS_MAIN
