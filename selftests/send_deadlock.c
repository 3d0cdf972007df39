// SPDX-License-Identifier: GPL-2.0
/*
 * Selftests of the send path of the "mbufmux" TCP ULP: no pool-induced
 * deadlock in either blocking mode, with both ends attached and through a
 * chain of relays.
 *
 * The fixture, and what the tests share: send.h.
 */
#define _GNU_SOURCE
#include "send.h"

/* ---- no pool-induced deadlock ---- */

/*
 * A parked socket whose receive side is stalled may read (both directions
 * blocked otherwise): a pool of one buffer, held; v parked. A few bytes
 * from its peer do not make it readable (park_both in ulp_park.c
 * checks that), so a blocking recv() sleeps; once its peer has filled v's
 * window (sending until EAGAIN), that recv() returns, and poll() reports
 * v readable with more waiting. Fails if a parked socket may not read
 * what its peer is stuck on (issue 11's cycle: the peer may be a holder
 * that can only give its buffer back once v reads).
 */
TEST_F(mbufmux_send, parked_reads_when_stalled)
{
	struct blocked_call c = {};
	int h, hp, v, vp;
	char in[100];
	long total;

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	ASSERT_TRUE(park(v));
	fill(in, 10, 67, 0);
	ASSERT_EQ(send(vp, in, 10, 0), 10);

	c = (struct blocked_call){ .op = CALL_RECV, .fd = v, .buf = in,
				   .len = sizeof(in) };
	ASSERT_EQ(blocked_call_start(&c), 0);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS));
	total = send_backlog(vp, 67, 10);
	ASSERT_GT(total, 0);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS))
		TH_LOG("a parked socket's window is shut, and it may not read");
	EXPECT_EQ(c.ret, (ssize_t)sizeof(in)) TH_LOG("%s", strerror(c.err));
	EXPECT_EQ(check(in, sizeof(in), 67, 0), -1);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED);
	EXPECT_TRUE(poll_one(v, POLLIN, WAKE_MS) & POLLIN);
	EXPECT_GT(recv(v, in, sizeof(in), MSG_DONTWAIT), 0);
	close(v);
	close(vp);
	close(h);
	close(hp);
}

#define XCONN		8	/* connections of no_deadlock_* */

/* One end of a bidirectional flow. */
struct xend {
	int fd;
	uint32_t tx;		/* the flow it sends */
	uint32_t rx;		/* the flow it receives */
	size_t sent;
	size_t rcvd;
	bool eof;
};

/* The state of @n ends and the pool, when something has stalled. */
static void xend_dump(struct __test_metadata *_metadata,
		      const struct xend *e, int n)
{
	struct mbufmux_info info;
	struct pool_stats st;
	int i;

	for (i = 0; i < n; i++) {
		info_get(e[i].fd, &info);
		TH_LOG("end %d: sent %zu, received %zu%s; flags %#x, %u staged, %ld unsent",
		       i, e[i].sent, e[i].rcvd, e[i].eof ? ", eof" : "",
		       info.flags, info.staged, outq_nsd(e[i].fd));
	}
	if (!stats_read(&st))
		TH_LOG("pool: %lld in use, %lld waiting", st.in_use,
		       st.waiters);
}

/*
 * One end's turn in a poll() loop, given its @revents: reads what came
 * (checked against its flow; end of file only after @bytes), and sends the
 * next piece of its flow, of random size, shutting down for writing once
 * @bytes are sent. @in and @out are CHUNK bytes. True if a byte moved.
 */
static bool end_io(struct __test_metadata *_metadata, struct xend *e,
		   short revents, size_t bytes, uint64_t *rs, char *in,
		   char *out)
{
	bool moved = false;
	size_t len;
	ssize_t r;
	long bad;

	ASSERT_EQ(revents & (POLLERR | POLLNVAL), 0)
		TH_LOG("flow %u: revents %#x", e->tx, revents);
	if (!e->eof && (revents & (POLLIN | POLLHUP))) {
		r = recv(e->fd, in, CHUNK, MSG_DONTWAIT);
		ASSERT_TRUE(r >= 0 || errno == EAGAIN)
			TH_LOG("flow %u: recv: %s", e->rx, strerror(errno));
		if (!r) {
			ASSERT_EQ(e->rcvd, bytes)
				TH_LOG("flow %u: early end of file", e->rx);
			e->eof = true;
		} else if (r > 0) {
			bad = check(in, r, e->rx, e->rcvd);
			ASSERT_EQ(bad, -1) TH_LOG("flow %u: wrong byte at %zu",
						  e->rx, e->rcvd + bad);
			e->rcvd += r;
			moved = true;
		}
	}
	if (e->sent < bytes && (revents & POLLOUT)) {
		len = 1 + rnd(rs) % CHUNK;
		if (len > bytes - e->sent)
			len = bytes - e->sent;
		fill(out, len, e->tx, e->sent);
		r = send(e->fd, out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		ASSERT_TRUE(r > 0 || errno == EAGAIN)
			TH_LOG("flow %u: send: %s", e->tx, strerror(errno));
		if (r > 0) {
			e->sent += r;
			moved = true;
			if (e->sent == bytes)
				ASSERT_EQ(shutdown(e->fd, SHUT_WR), 0);
		}
	}
	return moved;
}

/* What an end asks poll() for: POLLIN to its end of file, POLLOUT too. */
static short end_events(const struct xend *e, size_t bytes)
{
	return (e->eof ? 0 : POLLIN) | (e->sent < bytes ? POLLOUT : 0);
}

/*
 * The bound while bytes move: no attached socket has more than a buffer's
 * worth unsent (unsent_data(), one socket at a time: the sum over sockets
 * read one by one would not be a snapshot), and the pool has no more than
 * @limit buffers out.
 */
static void bound_sample(struct __test_metadata *_metadata,
			 const struct xend *e, int n, long buf_size,
			 long limit)
{
	struct pool_stats st;
	long nsd;
	int i;

	for (i = 0; i < n; i++) {
		nsd = unsent_data(e[i].fd);
		ASSERT_GE(nsd, 0);
		ASSERT_LE(nsd, buf_size)
			TH_LOG("flow %u: %ld bytes unsent, %ld staged", e[i].tx,
			       nsd, staged(e[i].fd));
	}
	ASSERT_EQ(stats_read(&st), 0);
	ASSERT_LE(st.in_use, limit);
}

/*
 * Drives @n non-blocking ends from one poll() loop that asks for POLLIN and
 * POLLOUT on every socket (POLLOUT while it has bytes left to send): each
 * end sends @bytes of its flow, then shuts down for writing, and reads
 * what comes, every byte checked, to end of file. Every 16 rounds,
 * bound_sample(). Fails if no byte moves for STALL_MS.
 */
static void drive(struct __test_metadata *_metadata, struct xend *e, int n,
		  size_t bytes, long buf_size, long limit, uint64_t *rs)
{
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	char *in = malloc(CHUNK), *out = malloc(CHUNK);
	long long last = now_ms();
	int i, done = 0, rounds = 0;

	ASSERT_NE(pfd, NULL);
	ASSERT_NE(in, NULL);
	ASSERT_NE(out, NULL);
	while (done < n) {
		for (i = 0; i < n; i++) {
			pfd[i].fd = e[i].fd;
			pfd[i].events = end_events(&e[i], bytes);
			pfd[i].revents = 0;
		}
		ASSERT_GE(poll(pfd, n, 1000), 0);
		for (i = done = 0; i < n; i++) {
			if (pfd[i].revents &&
			    end_io(_metadata, &e[i], pfd[i].revents, bytes, rs,
				   in, out))
				last = now_ms();
			done += e[i].eof && e[i].sent == bytes;
		}
		if (!(++rounds % 16))
			bound_sample(_metadata, e, n, buf_size, limit);
		if (now_ms() - last > STALL_MS) {
			xend_dump(_metadata, e, n);
			ASSERT_TRUE(false) TH_LOG("no byte moved for %d ms",
						  STALL_MS);
		}
	}
	free(pfd);
	free(in);
	free(out);
}

/* Sets the blocking mode of an attached socket. */
static int block_mode(int fd, int mode)
{
	return setint(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, mode);
}

/*
 * XCONN connections, both ends attached in blocking @mode, socket buffers
 * of @bufsz (0: the defaults) on both ends, a pool of @limit buffers:
 * drive() them, every end sending and receiving @bytes.
 */
static void exchange(struct __test_metadata *_metadata,
		     struct _test_data_mbufmux_send *self, int family,
		     int mode, int bufsz, long limit, size_t bytes)
{
	struct sockopts o = { .rcvbuf = bufsz, .sndbuf = bufsz };
	struct xend e[2 * XCONN];
	struct pool_stats st;
	struct lsn l;
	int i, a, b;

	ASSERT_EQ(lsn_open_bufs(&l, family, bufsz, bufsz), 0);
	shrink(_metadata, limit);
	for (i = 0; i < XCONN; i++) {
		a = lsn_pair_opts(&l, &o, &b);
		ASSERT_GE(a, 0) TH_LOG("pair: %s", strerror(errno));
		e[2 * i] = (struct xend){ .fd = a, .tx = 2 * i,
					  .rx = 2 * i + 1 };
		e[2 * i + 1] = (struct xend){ .fd = b, .tx = 2 * i + 1,
					      .rx = 2 * i };
	}
	for (i = 0; i < 2 * XCONN; i++) {
		ASSERT_EQ(attach(e[i].fd), 0);
		if (mode != MBUFMUX_BLOCK_BOTH)
			ASSERT_EQ(block_mode(e[i].fd, mode), 0);
		ASSERT_EQ(set_nonblock(e[i].fd), 0);
	}
	drive(_metadata, e, 2 * XCONN, bytes, self->buf_size, limit,
	      &self->seed);
	for (i = 0; i < 2 * XCONN; i++)
		close(e[i].fd);
	close(l.fd);
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("in_use %lld waiters %lld", st.in_use, st.waiters);
}

/* exchange() with small and default socket buffers, limit 1 to 4. */
static void no_deadlock(struct __test_metadata *_metadata,
			struct _test_data_mbufmux_send *self, int family,
			int mode)
{
	size_t bytes = knob("MBUFMUX_SEND_BYTES", 256 << 10, 64 << 10);
	static const int bufs[] = { SMALL_BUF, 0 };
	long limit;
	int b;

	for (b = 0; b < 2; b++)
		for (limit = 1; limit <= 4; limit++)
			exchange(_metadata, self, family, mode, bufs[b], limit,
				 bytes);
	TH_LOG("%d connections, %zu B each way, limit 1-4, 4 KiB and default buffers: all arrived",
	       XCONN, bytes);
}

/*
 * No pool-induced deadlock, both directions blocked while parked (the
 * default): 8 connections, both ends attached, every end sends and
 * receives 256 KiB from one poll() loop, socket buffers of 4 KiB and the
 * defaults, limit 1 to 4. Fails if a holder whose peer is parked can never
 * give its buffer back because the parked peer may not read (the cycle of
 * issue 11: the watchdog sees no byte move), or a byte is lost or
 * reordered.
 */
TEST_F_TIMEOUT(mbufmux_send, no_deadlock_both, 600)
{
	no_deadlock(_metadata, self, variant->family, MBUFMUX_BLOCK_BOTH);
}

/* As no_deadlock_both, parking blocking only the send direction. */
TEST_F_TIMEOUT(mbufmux_send, no_deadlock_send, 600)
{
	no_deadlock(_metadata, self, variant->family, MBUFMUX_BLOCK_SEND);
}

/* A relay's queue of bytes for one side, unbounded. */
struct byteq {
	char *buf;
	size_t head;
	size_t tail;
	size_t size;
};

static int byteq_put(struct byteq *q, const char *data, size_t len)
{
	char *nb;

	if (q->head && q->tail + len > q->size) {
		memmove(q->buf, q->buf + q->head, q->tail - q->head);
		q->tail -= q->head;
		q->head = 0;
	}
	if (q->tail + len > q->size) {
		nb = realloc(q->buf, 2 * (q->tail + len));
		if (!nb)
			return -1;
		q->buf = nb;
		q->size = 2 * (q->tail + len);
	}
	memcpy(q->buf + q->tail, data, len);
	q->tail += len;
	return 0;
}

/*
 * The chain's sockets: A's, P1's towards A and towards P2, P2's towards
 * P1 and towards B, B's. Relay socket i (1 to 4) forwards to relay_peer(i).
 */
enum { CH_A, CH_P1A, CH_P1B, CH_P2A, CH_P2B, CH_B, CH_N };

static int relay_peer(int i)
{
	return i & 1 ? i + 1 : i - 1;
}

/*
 * A relay's turn on one of its sockets, given its @revents: reads what
 * came into @to, the queue of its other side (or notes the end of file in
 * @eof), and writes out what @from holds for this side. @in is CHUNK bytes.
 * True if a byte moved.
 */
static bool relay_io(struct __test_metadata *_metadata, int fd,
		     short revents, bool *eof, struct byteq *from,
		     struct byteq *to, char *in)
{
	bool moved = false;
	ssize_t r;

	ASSERT_EQ(revents & (POLLERR | POLLNVAL), 0)
		TH_LOG("relay: revents %#x", revents);
	if (!*eof && (revents & (POLLIN | POLLHUP))) {
		r = recv(fd, in, CHUNK, MSG_DONTWAIT);
		ASSERT_TRUE(r >= 0 || errno == EAGAIN)
			TH_LOG("relay: recv: %s", strerror(errno));
		if (!r)
			*eof = true;
		if (r > 0) {
			ASSERT_EQ(byteq_put(to, in, r), 0);
			moved = true;
		}
	}
	if (from->head < from->tail && (revents & POLLOUT)) {
		r = send(fd, from->buf + from->head, from->tail - from->head,
			 MSG_DONTWAIT | MSG_NOSIGNAL);
		ASSERT_TRUE(r > 0 || errno == EAGAIN)
			TH_LOG("relay: send: %s", strerror(errno));
		if (r > 0) {
			from->head += r;
			moved = true;
		}
	}
	return moved;
}

/*
 * A -> P1 -> P2 -> B and back, every socket attached in blocking @mode, a
 * pool of @limit: A and B each send @bytes and check every byte they get;
 * each relay reads both its sides whenever they are readable, into an
 * unbounded queue, writes a queue out whenever its socket is writable, and
 * passes an end of file on once the queue is empty. One poll() loop runs
 * all four programs (each only ever waits in that poll()).
 */
static void relay_run(struct __test_metadata *_metadata,
		      struct _test_data_mbufmux_send *self, int mode,
		      int bufsz, long limit, size_t bytes)
{
	struct sockopts so = { .rcvbuf = bufsz, .sndbuf = bufsz };
	struct xend end[2] = {};	/* A, B */
	struct xend all[CH_N];		/* every socket, for bound_sample() */
	struct byteq q[CH_N] = {};	/* bytes to write on relay socket i */
	bool eof[CH_N] = {}, shut[CH_N] = {};
	struct pollfd pfd[CH_N];
	long long last = now_ms();
	char *in = malloc(CHUNK), *out = malloc(CHUNK);
	int fd[CH_N], i, k, o, rounds = 0;
	struct pool_stats st;
	struct lsn l;

	ASSERT_NE(in, NULL);
	ASSERT_NE(out, NULL);
	ASSERT_EQ(lsn_open_bufs(&l, self->lsn.family, bufsz, bufsz), 0);
	shrink(_metadata, limit);
	for (i = 0; i < CH_N; i += 2) {
		fd[i] = lsn_pair_opts(&l, &so, &fd[i + 1]);
		ASSERT_GE(fd[i], 0) TH_LOG("pair: %s", strerror(errno));
	}
	close(l.fd);
	for (i = 0; i < CH_N; i++) {
		ASSERT_EQ(attach(fd[i]), 0);
		if (mode != MBUFMUX_BLOCK_BOTH)
			ASSERT_EQ(block_mode(fd[i], mode), 0);
		ASSERT_EQ(set_nonblock(fd[i]), 0);
	}
	end[0] = (struct xend){ .fd = fd[CH_A], .tx = 300, .rx = 301 };
	end[1] = (struct xend){ .fd = fd[CH_B], .tx = 301, .rx = 300 };
	for (k = 0; k < CH_N; k++)
		all[k] = (struct xend){ .fd = fd[k], .tx = k };

	while (!end[0].eof || !end[1].eof) {
		for (i = 0; i < CH_N; i++) {
			pfd[i].fd = fd[i];
			pfd[i].revents = 0;
			if (i == CH_A || i == CH_B)
				pfd[i].events = end_events(&end[!!i], bytes);
			else
				pfd[i].events = (eof[i] ? 0 : POLLIN) |
					(q[i].head < q[i].tail ? POLLOUT : 0);
		}
		ASSERT_GE(poll(pfd, CH_N, 1000), 0);
		for (i = 0; i < CH_N; i++) {
			if (!pfd[i].revents)
				continue;
			if (i == CH_A || i == CH_B) {
				if (end_io(_metadata, &end[!!i], pfd[i].revents,
					   bytes, &self->seed, in, out))
					last = now_ms();
				continue;
			}
			if (relay_io(_metadata, fd[i], pfd[i].revents, &eof[i],
				     &q[i], &q[relay_peer(i)], in))
				last = now_ms();
		}
		/* A relay passes an end of file on once it has written all. */
		for (k = CH_P1A; k <= CH_P2B; k++) {
			o = relay_peer(k);
			if (eof[o] && !shut[k] && q[k].head == q[k].tail) {
				ASSERT_EQ(shutdown(fd[k], SHUT_WR), 0);
				shut[k] = true;
			}
		}
		if (!(++rounds % 16))
			bound_sample(_metadata, all, CH_N, self->buf_size,
				     limit);
		if (now_ms() - last > STALL_MS) {
			all[CH_A] = end[0];
			all[CH_B] = end[1];
			xend_dump(_metadata, all, CH_N);
			for (k = CH_P1A; k <= CH_P2B; k++)
				TH_LOG("relay socket %d: %zu queued%s", k,
				       q[k].tail - q[k].head,
				       eof[k] ? ", eof read" : "");
			ASSERT_TRUE(false) TH_LOG("no byte moved for %d ms",
						  STALL_MS);
		}
	}
	for (i = 0; i < 2; i++)
		EXPECT_EQ(end[i].rcvd, bytes);
	for (i = 0; i < CH_N; i++) {
		close(fd[i]);
		free(q[i].buf);
	}
	free(in);
	free(out);
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("in_use %lld waiters %lld", st.in_use, st.waiters);
}

/*
 * A chain of attached relays, A -> P1 -> P2 -> B and back, limit 1 to 4,
 * both blocking modes, socket buffers of 4 KiB and the defaults. Fails if
 * a parked relay may not read the side that waits for it while its own
 * buffer cannot drain (a pool-induced deadlock: the watchdog sees no byte
 * move), or a byte is lost or reordered.
 */
TEST_F_TIMEOUT(mbufmux_send, relay_chain, 600)
{
	size_t bytes = knob("MBUFMUX_SEND_BYTES", 256 << 10, 64 << 10);
	static const int modes[] = { MBUFMUX_BLOCK_BOTH, MBUFMUX_BLOCK_SEND };
	static const int bufs[] = { SMALL_BUF, 0 };
	long limit;
	int m, b;

	for (m = 0; m < 2; m++)
		for (b = 0; b < 2; b++)
			for (limit = 1; limit <= 4; limit++)
				relay_run(_metadata, self, modes[m], bufs[b],
					  limit, bytes);
	TH_LOG("A-P1-P2-B, %zu B each way, limit 1-4, both buffer sizes: all arrived",
	       bytes);
}

TEST_HARNESS_MAIN
