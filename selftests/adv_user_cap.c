// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP), the
 * per-user cap (user_limit): one user (nobody, and root of a user
 * namespace mapped to it) cannot hold more than its cap nor starve another
 * user, FIFO order within a user, wake-ups when the user's buffer comes
 * back, teardown of sockets parked by the cap, changes at run time, bad
 * values.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

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
 * one does. MBUFMUX_INFO counts a wait on the user's FIFO as one on the
 * pool's: a wait from the parking on, its time once the slot is granted,
 * no handoff.
 */
TEST_F_TIMEOUT(adv, user_cap_holds, 120)
{
	struct mbufmux_info info;
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
	ASSERT_EQ(info_get(a[4], &info), 0);
	EXPECT_EQ(info.waits, 1ULL);
	EXPECT_EQ(info.wait_ns, 0ULL);
	ASSERT_EQ(send(a[1], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(a[4], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(a[4]), 0U);
	EXPECT_EQ(info_flags(a[5]), USER_PARKED);
	expect_user(_metadata, USER_A, 6, 3, 1);
	ASSERT_EQ(info_get(a[4], &info), 0);
	EXPECT_EQ(info.waits, 1ULL);
	EXPECT_GT(info.wait_ns, 0ULL);
	EXPECT_EQ(info.handoffs, 0ULL);
	ASSERT_EQ(info_get(a[5], &info), 0);
	EXPECT_EQ(info.waits, 1ULL);
	EXPECT_EQ(info.wait_ns, 0ULL);
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
			recv_pattern(_metadata, ap[0], total, 61);
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

TEST_HARNESS_MAIN
