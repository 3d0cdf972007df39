// SPDX-License-Identifier: GPL-2.0
/*
 * Selftests of the "mbufmux" TCP ULP: byte-exact transfers on a small
 * pool, parking (both directions, send only, hangup), FIFO wake order,
 * blocked senders woken or failing, SO_SNDTIMEO and signals.
 *
 * The fixture, and what the tests share: ulp.h.
 */
#define _GNU_SOURCE
#include "ulp.h"

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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);

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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	fill(out, sizeof(out), 11, 0);

	c = (struct blocked_call){ .op = CALL_SEND, .fd = v, .buf = out,
				   .len = sizeof(out) };
	start_parked(_metadata, &c);
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
		start_parked(_metadata, &c[i]);
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
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

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);

	c = (struct blocked_call){ .op = CALL_SEND, .fd = v, .buf = out,
				   .len = sizeof(out) };
	start_parked(_metadata, &c);
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

TEST_HARNESS_MAIN
