// SPDX-License-Identifier: GPL-2.0
/*
 * Selftests of the "mbufmux" TCP ULP: the limit raised and lowered under
 * parked sockets, the reserve, bad parameter values, rmmod while attached.
 *
 * The fixture, and what the tests share: ulp.h.
 */
#define _GNU_SOURCE
#include "ulp.h"

/*
 * Every parked socket served: @in_use buffers out, nobody waiting, and
 * each of the @waits waits since the test began ended in a handoff.
 */
static void expect_all_served(struct __test_metadata *_metadata,
			      struct _test_data_mbufmux *self,
			      long long in_use, long long waits)
{
	struct pool_stats st;

	stats(_metadata, &st);
	EXPECT_EQ(st.in_use, in_use);
	EXPECT_EQ(st.waiters, 0);
	EXPECT_EQ(st.waits - self->st0.waits, waits);
	EXPECT_EQ(st.handoffs - self->st0.handoffs, waits);
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
	expect_all_served(_metadata, self, 8, 6);
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
	expect_all_served(_metadata, self, 4, 1);
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
