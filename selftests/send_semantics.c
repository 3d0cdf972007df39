// SPDX-License-Identifier: GPL-2.0
/*
 * Selftests of the send path of the "mbufmux" TCP ULP: flush points as
 * TCP's, a dead connection lets go of its buffer at once, TCP's semantics
 * kept (RCV_SHUTDOWN, SIOCOUTQ, a refused disconnect).
 *
 * The fixture, and what the tests share: send.h.
 */
#define _GNU_SOURCE
#include "send.h"

/* ---- flush points ---- */

/*
 * After flush point @what: the peer receives the held bytes, @want, and
 * the socket @fd, all sent, lets its buffer go.
 */
static void expect_flushed(struct __test_metadata *_metadata, int fd,
			   int peer, const char *want, const char *what)
{
	size_t len = strlen(want);
	char buf[8];

	ASSERT_LE(len, sizeof(buf));
	ASSERT_EQ(recv_all(peer, buf, len, WAKE_MS), len)
		TH_LOG("%s did not push the held bytes", what);
	EXPECT_EQ(memcmp(buf, want, len), 0);
	EXPECT_EQ(wait_flags(fd, ~0U, 0, WAKE_MS), 0U);
}

/*
 * send("hdr", MSG_MORE) holds the bytes (as TCP would); TCP_NODELAY set to
 * 1 pushes them, as it pushes TCP's own queue: the peer receives them.
 * Fails if the ULP keeps MSG_MORE bytes past TCP_NODELAY (issue 11).
 */
TEST_F(mbufmux_send, nodelay_flush)
{
	int fd, peer;

	fd = pair_on(_metadata, &self->lsn, true, &peer);
	ASSERT_EQ(send(fd, "hdr", 3, MSG_MORE), 3);
	EXPECT_EQ(staged(fd), 3);
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);
	ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_NODELAY, 1), 0);
	expect_flushed(_metadata, fd, peer, "hdr", "TCP_NODELAY");
	close(fd);
	close(peer);
}

/*
 * TCP_CORK 1, a plain send and a send with MSG_MORE, TCP_CORK 0: the peer
 * receives both, in order. Fails if uncorking does not push what the ULP
 * holds.
 */
TEST_F(mbufmux_send, cork_flush)
{
	int fd, peer;

	fd = pair_on(_metadata, &self->lsn, true, &peer);
	ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_CORK, 1), 0);
	ASSERT_EQ(send(fd, "ab", 2, 0), 2);
	ASSERT_EQ(send(fd, "cd", 2, MSG_MORE), 2);
	ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_CORK, 0), 0);
	expect_flushed(_metadata, fd, peer, "abcd", "uncorking");
	close(fd);
	close(peer);
}

/*
 * A corked program (TCP_CORK 1) writes 16 buffers' worth in pieces of
 * 10,000 bytes, non-blocking, each when poll() says it may, while its peer
 * reads; then it uncorks and closes. On plain TCP (the control, first)
 * send() takes it all at once. Under the ULP it may have to wait for room,
 * but must make progress: every byte arrives and the writer never stalls
 * for STALL_MS. Fails if the bytes TCP holds corked, which the socket's
 * buffer covers, keep the buffer from draining until the program uncorks,
 * which it does only once send() has taken everything. (TCP sends no
 * partial segment while corked, and with the default buf_size, 65536, the
 * socket is unwritable, at three quarters of its buffer, before a segment
 * of loopback's MSS, 65483, is full.)
 */
TEST_F_TIMEOUT(mbufmux_send, cork_large, 120)
{
	size_t len = 16 * self->buf_size, sent;
	char *out = malloc(len);
	struct reader rd;
	long long last;
	int fd, ulp;
	ssize_t n;

	ASSERT_NE(out, NULL);
	fill(out, len, 77, 0);
	for (ulp = 0; ulp < 2; ulp++) {
		rd = (struct reader){ .chunk = 16384, .flow = 77 };
		fd = pair_on(_metadata, &self->lsn, ulp, &rd.fd);
		ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_CORK, 1), 0);
		ASSERT_EQ(set_nonblock(fd), 0);
		ASSERT_EQ(pthread_create(&rd.thread, NULL, reader_fn, &rd), 0);
		last = now_ms();
		for (sent = 0; sent < len;) {
			ASSERT_LT(now_ms() - last, STALL_MS)
				TH_LOG("%s, corked: stalled after %zu of %zu bytes, %ld unsent",
				       ulp ? "ULP" : "plain", sent, len,
				       outq_nsd(fd));
			if (!(poll_one(fd, POLLOUT, 1000) & POLLOUT))
				continue;
			n = len - sent < 10000 ? len - sent : 10000;
			n = send(fd, out + sent, n, MSG_DONTWAIT);
			if (n < 0 && errno == EAGAIN)
				continue;
			ASSERT_GT(n, 0) TH_LOG("send: %s", strerror(errno));
			sent += n;
			last = now_ms();
		}
		ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_CORK, 0), 0);
		ASSERT_EQ(close(fd), 0);
		ASSERT_EQ(pthread_join(rd.thread, NULL), 0);
		EXPECT_EQ(rd.err, 0) TH_LOG("reader: %s", strerror(rd.err));
		EXPECT_EQ(rd.bad, -1);
		EXPECT_EQ(rd.got, len);
		EXPECT_TRUE(rd.eof);
		close(rd.fd);
	}
	free(out);
}

/*
 * The ULP never makes TCP send smaller segments than it would, when its
 * buffer holds a segment (the default: loopback's MSS is 65483). Each case
 * on a fresh pair whose peer has a large window, first 256 KiB sent, read
 * and acknowledged (TCP bounds its MSS to half the peer's largest window,
 * 32767 at first), on plain TCP (the control: the expectations hold on
 * this kernel) and attached:
 * - send() of one MSS: one more data segment (TCP_INFO). Fails if the ULP
 *   hands TCP the bytes in two calls and TCP sends the first part alone
 *   (Nagle lets a partial segment go while nothing small is in flight).
 * - TCP_CORK, send() of one MSS and 100 bytes: one more data segment, the
 *   100 bytes held (SIOCOUTQNSD). Fails if the ULP pushes past the cork
 *   because the send might leave the socket unwritable (MSS + 100 bytes
 *   against three quarters of the buffer) rather than because it does,
 *   once TCP has taken them and sent its full segment: 100 unsent bytes
 *   leave the socket writable.
 * Then the cork comes off and every byte arrives.
 */
TEST_F(mbufmux_send, full_segments)
{
	size_t warm = 256 << 10, n;
	int fd, peer, ulp, cork, mss;
	long long end;
	struct lsn big;
	socklen_t len;
	long segs;
	char *buf;

	buf = malloc(warm);
	ASSERT_NE(buf, NULL);
	ASSERT_EQ(lsn_open_bufs(&big, variant->family, 1 << 20, 0), 0);
	for (cork = 0; cork < 2; cork++) {
		for (ulp = 0; ulp < 2; ulp++) {
			fd = pair_on(_metadata, &big, ulp, &peer);
			fill(buf, warm, 79, 0);
			ASSERT_EQ(send(fd, buf, warm, 0), (ssize_t)warm);
			recv_pattern(_metadata, peer, warm, 79);
			end = now_ms() + WAKE_MS;
			while (outq(fd) && now_ms() < end)
				sleep_ms(1);
			ASSERT_EQ(outq(fd), 0);
			len = sizeof(mss);
			ASSERT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss,
					     &len), 0);
			if (self->buf_size < mss) {
				close(fd);
				close(peer);
				SKIP(goto out, "buf_size %ld below the MSS %d",
				     self->buf_size, mss);
			}

			n = mss + (cork ? 100 : 0);
			fill(buf, n, 80, 0);
			segs = data_segs_out(fd);
			ASSERT_GT(segs, 0);
			ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_CORK, cork), 0);
			ASSERT_EQ(send(fd, buf, n, 0), (ssize_t)n);
			EXPECT_EQ(data_segs_out(fd) - segs, 1)
				TH_LOG("%s, %s: %zu bytes in %ld segments, %ld unsent",
				       ulp ? "ULP" : "plain",
				       cork ? "corked" : "not corked", n,
				       data_segs_out(fd) - segs, outq_nsd(fd));
			EXPECT_EQ(outq_nsd(fd), (long)(n - mss));
			ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_CORK, 0), 0);
			recv_pattern(_metadata, peer, n, 80);
			close(fd);
			close(peer);
		}
	}
out:
	close(big.fd);
	free(buf);
}

/*
 * The flush mark: TCP_NOTSENT_LOWAT 1 and a peer that does not read yet
 * (tiny window), so that TCP refuses bytes sent without MSG_MORE and they
 * are staged; then send("B", MSG_MORE). When the peer reads, every byte
 * sent without MSG_MORE arrives, the sender calling nothing more; "B" does
 * not (TCP would hold it too) until the sender's next send without
 * MSG_MORE. Fails if a later MSG_MORE send holds back earlier bytes (the
 * write-space push skipping a holding socket, issue 11), or if MSG_MORE
 * bytes go out early.
 */
TEST_F(mbufmux_send, flush_mark)
{
	size_t sent = 0, max = self->buf_size / 2;
	char *buf = malloc(self->buf_size);
	long st_now = 0;
	int fd, peer;
	ssize_t n;

	ASSERT_NE(buf, NULL);
	fd = pair_on(_metadata, &self->small, true, &peer);
	ASSERT_EQ(setint(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, 1), 0);
	ASSERT_EQ(set_nonblock(fd), 0);
	while (sent < max) {
		fill(buf, 1000, 70, sent);
		n = send(fd, buf, 1000, MSG_DONTWAIT);
		ASSERT_EQ(n, 1000) TH_LOG("send: %s", strerror(errno));
		sent += n;
		sleep_ms(20);
		st_now = staged(fd);
		if (st_now > 0)
			break;
	}
	ASSERT_GT(st_now, 0) TH_LOG("nothing staged after %zu bytes", sent);
	ASSERT_EQ(send(fd, "B", 1, MSG_DONTWAIT | MSG_MORE), 1);

	recv_pattern(_metadata, peer, sent, 70);
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0)
		TH_LOG("MSG_MORE byte sent before its flush");
	ASSERT_EQ(send(fd, "C", 1, MSG_DONTWAIT), 1);
	expect_flushed(_metadata, fd, peer, "BC", "a send without MSG_MORE");
	close(fd);
	close(peer);
	free(buf);
}

/*
 * A program that sends part of a message with MSG_MORE, then waits for
 * POLLOUT before it sends the rest, works on plain TCP (the send buffer
 * has room); it must work under the ULP too. The first part leaves less
 * than a quarter of the ULP's buffer free; POLLOUT must still come, and
 * the rest completes the message. The same program on a plain socket
 * first, as the control. Fails if MSG_MORE bytes held in a nearly full
 * buffer keep the socket unwritable for good: a hang plain TCP does not
 * have.
 */
TEST_F(mbufmux_send, msg_more_then_poll)
{
	size_t first = self->buf_size - self->buf_size / 8;
	size_t len = first + 100;
	char *buf = malloc(len);
	int fd, peer, ulp;

	ASSERT_NE(buf, NULL);
	for (ulp = 0; ulp < 2; ulp++) {
		fd = pair_on(_metadata, &self->lsn, ulp, &peer);
		fill(buf, len, 75, 0);
		ASSERT_EQ(send(fd, buf, first, MSG_MORE | MSG_DONTWAIT),
			  (ssize_t)first);
		EXPECT_TRUE(poll_one(fd, POLLOUT, WAKE_MS) & POLLOUT)
			TH_LOG("%s: not writable after a MSG_MORE send; %ld staged",
			       ulp ? "ULP" : "plain", ulp ? staged(fd) : 0);
		ASSERT_EQ(send(fd, buf + first, len - first, MSG_DONTWAIT),
			  (ssize_t)(len - first));
		memset(buf, 0, len);
		ASSERT_EQ(recv_all(peer, buf, len, WAKE_MS), len);
		EXPECT_EQ(check(buf, len, 75, 0), -1);
		close(fd);
		close(peer);
	}
	free(buf);
}

/* ---- a dead connection lets go ---- */

/*
 * A holder with unsent bytes (its peer, tiny window, does not read),
 * attached without CAP_NET_ADMIN so that its user's share counts it: its
 * peer resets the connection (SO_LINGER 0). Within WAKE_MS, the program not
 * touching the socket: the pool's in_use drops, the user's held count
 * drops; then the socket holds no buffer. Then a parked socket (also
 * unprivileged) whose connection is reset leaves the pool's queue, and
 * its user slot, the same way. Fails if a reset socket keeps its buffer,
 * queue place or user slot until its program sends or closes (issue 11).
 */
TEST_F(mbufmux_send, reset_lets_go)
{
	int h, hp, v, vp;
	struct pool_stats st;

	shrink(_metadata, 1);
	ASSERT_EQ(param_set("user_limit", 8), 0);
	ASSERT_EQ(net_admin(false), 0);
	h = lsn_pair(&self->small, &hp);
	ASSERT_GE(h, 0);
	ASSERT_EQ(attach(h), 0);
	ASSERT_EQ(net_admin(true), 0);
	backlog(_metadata, h, 80);
	ASSERT_EQ(info_flags(h), MBUFMUX_F_HOLDS_BUF);
	ASSERT_TRUE(wait_pool(1, 0, 0));
	ASSERT_TRUE(wait_user_held(0, 1, 0));

	ASSERT_EQ(close_reset(hp), 0);
	EXPECT_TRUE(wait_pool(0, 0, WAKE_MS))
		TH_LOG("a reset holder keeps its buffer");
	EXPECT_TRUE(wait_user_held(0, 0, WAKE_MS))
		TH_LOG("a reset holder keeps its user slot");
	EXPECT_EQ(info_flags(h) & MBUFMUX_F_HOLDS_BUF, 0U);
	close(h);

	/* Parked, then reset. */
	h = pair_on(_metadata, &self->lsn, true, &hp);
	ASSERT_TRUE(hold(h));
	ASSERT_EQ(net_admin(false), 0);
	v = lsn_pair(&self->lsn, &vp);
	ASSERT_GE(v, 0);
	ASSERT_EQ(attach(v), 0);
	ASSERT_EQ(net_admin(true), 0);
	ASSERT_TRUE(park(v));
	ASSERT_TRUE(wait_pool(1, 1, 0));
	ASSERT_TRUE(wait_user_held(0, 1, 0));

	ASSERT_EQ(close_reset(vp), 0);
	EXPECT_TRUE(wait_waiters(0, WAKE_MS))
		TH_LOG("a reset socket stays in the pool's queue");
	EXPECT_TRUE(wait_user_held(0, 0, WAKE_MS))
		TH_LOG("a reset socket keeps its user slot");
	EXPECT_EQ(info_flags(v) & MBUFMUX_F_PARKED, 0U);
	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, 1);
	close(v);
	close(h);
	close(hp);
}

/*
 * shutdown(SHUT_WR) of a parked socket leaves the pool's queue at once (a
 * cancel: the counters show it when shutdown() returns). shutdown(SHUT_WR)
 * of a holder with bytes TCP has not sent (peer not reading, tiny window)
 * keeps the buffer while they are unsent, so a socket parked behind it
 * stays parked; once the peer has read them and the FIN, the buffer comes
 * back by itself and goes to the parked socket. Fails if a parked socket
 * that can no longer send keeps its place, or a shut-down holder lets its
 * unsent bytes out of the bound (or never gives its buffer back).
 */
TEST_F(mbufmux_send, shutdown_lets_go)
{
	struct pool_stats st, st1;
	int h, hp, v, vp, w, wp;
	char buf[2];
	long total;

	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	ASSERT_TRUE(park(v));
	stats(_metadata, &st);
	ASSERT_EQ(shutdown(v, SHUT_WR), 0);
	stats(_metadata, &st1);
	EXPECT_EQ(st1.waiters, 0);
	EXPECT_EQ(st1.cancels - st.cancels, 1);
	EXPECT_EQ(info_flags(v), 0U);
	EXPECT_TRUE(recv_eof(vp));
	ASSERT_EQ(send(h, "r", 1, 0), 1);
	ASSERT_EQ(recv_all(hp, buf, 2, WAKE_MS), 2U);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	close(v);
	close(vp);

	/* A holder with unsent bytes shuts down. */
	close(h);
	close(hp);
	h = pair_on(_metadata, &self->small, true, &hp);
	total = backlog(_metadata, h, 81);
	w = pair_on(_metadata, &self->lsn, true, &wp);
	ASSERT_TRUE(park(w));
	ASSERT_EQ(shutdown(h, SHUT_WR), 0);
	sleep_ms(QUIET_MS);
	if (outq_nsd(h) > 0) {
		EXPECT_EQ(info_flags(h), MBUFMUX_F_HOLDS_BUF)
			TH_LOG("%ld bytes unsent, no buffer", outq_nsd(h));
		EXPECT_EQ(info_flags(w), MBUFMUX_F_PARKED);
	}
	recv_pattern(_metadata, hp, total, 81);
	EXPECT_TRUE(recv_eof(hp));
	EXPECT_TRUE(poll_one(w, POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(w), MBUFMUX_F_HOLDS_BUF);
	EXPECT_EQ(info_flags(h), 0U);
	close(w);
	close(wp);
	close(h);
	close(hp);
}

/*
 * close() of a holder whose peer (tiny window) does not read: TCP still
 * holds bytes the socket's buffer covers, so the buffer stays out and the
 * socket parked behind it stays parked. Once the peer has read every byte
 * and the end of file, TCP is done with the socket and destroys it: the
 * buffer comes back and goes to the parked socket. Fails if close() lets
 * the unsent bytes out of the bound (the buffer back at once), or the
 * buffer never comes back from a closed socket.
 */
TEST_F(mbufmux_send, close_keeps_buffer)
{
	int h, hp, v, vp;
	long total;

	shrink(_metadata, 1);
	h = pair_on(_metadata, &self->small, true, &hp);
	total = backlog(_metadata, h, 82);
	v = pair_on(_metadata, &self->lsn, true, &vp);
	ASSERT_TRUE(park(v));
	ASSERT_EQ(close(h), 0);
	EXPECT_EQ(poll_one(v, POLLOUT, QUIET_MS), 0)
		TH_LOG("closed with bytes unsent, the buffer went back");
	EXPECT_EQ(info_flags(v), MBUFMUX_F_PARKED);
	EXPECT_TRUE(wait_pool(1, 1, 0));

	recv_pattern(_metadata, hp, total, 82);
	EXPECT_TRUE(recv_eof(hp));
	EXPECT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(v), MBUFMUX_F_HOLDS_BUF);
	close(v);
	close(vp);
	close(hp);
}

/* ---- TCP's semantics ---- */

struct fin_thread {
	int fd;
	pthread_barrier_t *go;
	unsigned int spin;
	int err;
	pthread_t thread;
};

/* Busy-waits @ns nanoseconds. */
static void spin(unsigned int ns)
{
	struct timespec ts, now;
	long long d;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	do {
		clock_gettime(CLOCK_MONOTONIC, &now);
		d = (now.tv_sec - ts.tv_sec) * 1000000000LL +
		    now.tv_nsec - ts.tv_nsec;
	} while (d < ns);
}

static void *fin_fn(void *arg)
{
	struct fin_thread *t = arg;

	pthread_barrier_wait(t->go);
	spin(t->spin);
	t->err = shutdown(t->fd, SHUT_WR) ? errno : 0;
	return NULL;
}

/*
 * shutdown(SHUT_WR) keeps what TCP set meanwhile: our socket has staged
 * bytes (MSG_MORE; small segments to a tiny window, so that pushing them
 * takes many segments and the socket's backlog may be processed in the
 * middle) and shuts down while its peer's FIN comes, sent by a thread at
 * the same moment (random offsets). Afterwards epoll reports EPOLLRDHUP
 * and recv() returns 0; the peer gets every staged byte, then end of
 * file. Many times, to give the race a chance. Fails if shutdown writes
 * back a stale sk_shutdown that erases the RCV_SHUTDOWN set by the FIN
 * (issue 11).
 */
TEST_F_TIMEOUT(mbufmux_send, shutdown_keeps_rdhup, 300)
{
	long iters = knob("MBUFMUX_RDHUP_ITERS", 500, 100);
	struct sockopts o = { .maxseg = 536 };
	size_t len = self->buf_size - 1;
	struct epoll_event ev;
	pthread_barrier_t go;
	char *buf = malloc(len);
	struct fin_thread t;
	int fd, peer, ep;
	long i, missed = 0;
	struct lsn l;
	char c;

	ASSERT_NE(buf, NULL);
	/* The smallest receive buffer there is: the smallest segments. */
	ASSERT_EQ(lsn_open_bufs(&l, self->lsn.family, 1, 0), 0);
	ASSERT_EQ(pthread_barrier_init(&go, NULL, 2), 0);
	for (i = 0; i < iters; i++) {
		fd = lsn_pair_opts(&l, &o, &peer);
		ASSERT_GE(fd, 0) TH_LOG("pair: %s", strerror(errno));
		ASSERT_EQ(attach(fd), 0);
		fill(buf, len, 90, 0);
		ASSERT_EQ(send(fd, buf, len, MSG_MORE), (ssize_t)len);
		ASSERT_GT(staged(fd), 0);

		t = (struct fin_thread){ .fd = peer, .go = &go,
					 .spin = rnd(&self->seed) % 50000 };
		ASSERT_EQ(pthread_create(&t.thread, NULL, fin_fn, &t), 0);
		pthread_barrier_wait(&go);
		spin(rnd(&self->seed) % 50000);
		ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
		ASSERT_EQ(pthread_join(t.thread, NULL), 0);
		ASSERT_EQ(t.err, 0);

		ep = epoll_create1(EPOLL_CLOEXEC);
		ASSERT_GE(ep, 0);
		ev.events = EPOLLIN | EPOLLRDHUP;
		ev.data.fd = fd;
		ASSERT_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
		ev.events = 0;
		if (epoll_wait(ep, &ev, 1, WAKE_MS) != 1 ||
		    !(ev.events & EPOLLRDHUP)) {
			if (missed++ < 3)
				TH_LOG("iteration %ld: no EPOLLRDHUP (events %#x)",
				       i, ev.events);
		}
		close(ep);
		EXPECT_EQ(recv(fd, &c, 1, MSG_DONTWAIT), 0)
			TH_LOG("iteration %ld: %s", i, strerror(errno));

		memset(buf, 0, len);
		ASSERT_EQ(recv_all(peer, buf, len, WAKE_MS), len);
		ASSERT_EQ(check(buf, len, 90, 0), -1);
		ASSERT_TRUE(recv_eof(peer));
		close(fd);
		close(peer);
	}
	EXPECT_EQ(missed, 0) TH_LOG("%ld of %ld iterations lost the FIN",
				    missed, iters);
	close(l.fd);
	pthread_barrier_destroy(&go);
	free(buf);
}

/*
 * SIOCOUTQ and SIOCOUTQNSD count the staged bytes; TCP_INFO is TCP's own
 * view. Bytes held with MSG_MORE (staged, not in TCP): both ioctls show
 * them, tcpi_notsent_bytes does not; after the flush, once the peer has
 * them, both drop to 0. Bytes stalled in part in TCP (peer not reading,
 * tiny window): SIOCOUTQNSD is the staged bytes plus TCP's not-sent ones,
 * SIOCOUTQ at least that. Fails if the ioctls leave the staged bytes out
 * (a program that waits for SIOCOUTQ == 0 before an abortive close then
 * loses them, issue 11).
 */
TEST_F(mbufmux_send, outq_counts_staged)
{
	long s1, s2, nsd, tcp, q;
	int fd, peer, tries;
	char buf[3001];
	size_t total;

	fd = pair_on(_metadata, &self->lsn, true, &peer);
	fill(buf, sizeof(buf), 95, 0);
	ASSERT_EQ(send(fd, buf, 3000, MSG_MORE), 3000);
	ASSERT_EQ(staged(fd), 3000);
	EXPECT_EQ(outq(fd), 3000);
	EXPECT_EQ(outq_nsd(fd), 3000);
	EXPECT_EQ(tcp_notsent(fd), 0);
	ASSERT_EQ(send(fd, buf + 3000, 1, 0), 1);
	ASSERT_EQ(recv_all(peer, buf, sizeof(buf), WAKE_MS), sizeof(buf));
	EXPECT_EQ(check(buf, sizeof(buf), 95, 0), -1);
	EXPECT_TRUE(wait_outq_empty(fd, WAKE_MS))
		TH_LOG("SIOCOUTQ %ld, SIOCOUTQNSD %ld", outq(fd), outq_nsd(fd));
	close(fd);
	close(peer);

	/* Stalled: staged bytes and TCP's. */
	fd = pair_on(_metadata, &self->small, true, &peer);
	total = backlog(_metadata, fd, 96);
	for (tries = 0; tries < 50; tries++) {
		s1 = staged(fd);
		nsd = outq_nsd(fd);
		tcp = tcp_notsent(fd);
		q = outq(fd);
		s2 = staged(fd);
		if (s1 == s2)
			break;
	}
	ASSERT_GE(tcp, 0);
	EXPECT_EQ(nsd, s1 + tcp)
		TH_LOG("SIOCOUTQNSD %ld, %ld staged, TCP's not sent %ld", nsd,
		       s1, tcp);
	EXPECT_GE(q, nsd);
	recv_pattern(_metadata, peer, total, 96);
	EXPECT_TRUE(wait_outq_empty(fd, WAKE_MS))
		TH_LOG("SIOCOUTQ %ld, SIOCOUTQNSD %ld", outq(fd), outq_nsd(fd));
	close(fd);
	close(peer);
}

/*
 * connect(AF_UNSPEC) on an attached socket fails with EOPNOTSUPP and
 * leaves a sender sleeping on it alone: one sleeping parked (pool dry),
 * one sleeping for room (its peer, tiny window, does not read yet;
 * SO_SNDBUF 8192 so that TCP's queue is small too). Neither is woken by
 * the refused disconnect (still sleeping after QUIET_MS); the first
 * completes its whole send once a buffer comes back, the second once its
 * peer reads. Fails if the disconnect, refused, still counts (the core's
 * sk_disconnects) and the sleeper then fails with EPIPE or returns short
 * (issue 11).
 */
TEST_F_TIMEOUT(mbufmux_send, disconnect_no_side_effect, 120)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	size_t len = 256 << 10, got = 0;
	struct blocked_call c = {};
	char out[4000], *big, *in;
	int h, hp, v, vp;
	long long last;
	ssize_t n;
	long bad;

	/* Parked. */
	v = dry_pool_pair(_metadata, self, &h, &hp, &vp);
	fill(out, sizeof(out), 97, 0);
	c = (struct blocked_call){ .op = CALL_SEND, .fd = v, .buf = out,
				   .len = sizeof(out) };
	start_parked(_metadata, &c);
	EXPECT_EQ(connect(v, &unspec, sizeof(unspec)), -1);
	EXPECT_EQ(errno, EOPNOTSUPP);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS))
		TH_LOG("woken by the refused disconnect: %zd, %s", c.ret,
		       strerror(c.err));
	ASSERT_EQ(send(h, "r", 1, 0), 1);
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, (ssize_t)sizeof(out)) TH_LOG("%s", strerror(c.err));
	in = malloc(len);
	ASSERT_NE(in, NULL);
	if (c.ret > 0) {
		ASSERT_EQ(recv_all(vp, in, c.ret, WAKE_MS), (size_t)c.ret);
		EXPECT_EQ(check(in, c.ret, 97, 0), -1);
	}
	close(v);
	close(vp);
	close(h);
	close(hp);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* Sleeping for room. */
	big = malloc(len);
	ASSERT_NE(big, NULL);
	fill(big, len, 98, 0);
	v = pair_on(_metadata, &self->small, true, &vp);
	ASSERT_EQ(setint(v, SOL_SOCKET, SO_SNDBUF, 8192), 0);
	c = (struct blocked_call){ .op = CALL_SEND, .fd = v, .buf = big,
				   .len = len };
	ASSERT_EQ(blocked_call_start(&c), 0);
	ASSERT_FALSE(blocked_call_join(&c, QUIET_MS))
		TH_LOG("the send did not sleep: %zd", c.ret);
	EXPECT_EQ(connect(v, &unspec, sizeof(unspec)), -1);
	EXPECT_EQ(errno, EOPNOTSUPP);
	EXPECT_FALSE(blocked_call_join(&c, QUIET_MS))
		TH_LOG("woken by the refused disconnect: %zd, %s", c.ret,
		       strerror(c.err));
	last = now_ms();
	while (got < len && now_ms() - last < WAKE_MS) {
		if (!(poll_one(vp, POLLIN, 100) & POLLIN))
			continue;
		n = recv(vp, in + got, len - got, MSG_DONTWAIT);
		if (n <= 0)
			break;
		bad = check(in + got, n, 98, got);
		ASSERT_EQ(bad, -1) TH_LOG("wrong byte at %zu", got + bad);
		got += n;
		last = now_ms();
	}
	ASSERT_TRUE(blocked_call_join(&c, WAKE_MS));
	EXPECT_EQ(c.ret, (ssize_t)len)
		TH_LOG("send: %zd of %zu bytes, %s", c.ret, len,
		       c.ret < 0 ? strerror(c.err) : "short");
	EXPECT_EQ(got, c.ret < 0 ? got : (size_t)c.ret);
	close(v);
	close(vp);
	free(big);
	free(in);
}

TEST_HARNESS_MAIN
