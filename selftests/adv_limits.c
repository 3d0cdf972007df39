// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP), limits:
 * limit and reserve changed under load, every parameter at its extremes,
 * at run time and at load time.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

#define LOAD_FLOWERS	4
#define LOAD_PER	4

/*
 * limit and reserve changed at random while 16 flows (half of them
 * unprivileged) move data: the limit often dropped below the buffers in
 * use, the reserve anywhere below it. The pool never has more buffers out
 * than the highest limit it was given, every byte arrives, and with the
 * parameters restored everything comes back.
 */
TEST_F_TIMEOUT(adv, params_under_load, 600)
{
	long secs = knob("MBUFMUX_LOAD_SECS", 5, 15);
	long long end, changes = 0, below = 0, max_limit = initial.limit;
	struct flower w[LOAD_FLOWERS];
	uint64_t seed, bytes;
	struct pool_stats st;
	long limit, reserve;
	bool stop = false;

	seed = test_seed(_metadata);
	flowers_start(_metadata, self, w, LOAD_FLOWERS, LOAD_PER, CHUNK,
		      &stop, seed);
	end = now_ms() + secs * 1000;
	while (now_ms() < end) {
		sleep_ms(1 + rnd(&seed) % 10);
		ASSERT_EQ(stats_read(&st), 0);
		ASSERT_LE(st.in_use, max_limit);
		if (st.in_use > 1 && rnd(&seed) % 3 == 0)
			limit = st.in_use / 2;
		else
			limit = 1 + rnd(&seed) % (LOAD_FLOWERS * LOAD_PER);
		reserve = rnd(&seed) & 1 ? rnd(&seed) % limit : 0;
		below += limit < st.in_use;
		if (limit > max_limit)
			max_limit = limit;
		ASSERT_EQ(limits_set(limit, reserve), 0);
		changes++;
	}
	ASSERT_EQ(params_write(&initial), 0);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, LOAD_FLOWERS, &bytes);
	TH_LOG("%lld changes (%lld below in_use) in %ld s, %llu bytes moved",
	       changes, below, secs, (unsigned long long)bytes);
	EXPECT_GT(below, 0);
	EXPECT_GT(bytes, 0U);
}

/*
 * Each run-time parameter at its extremes: limit 1 (a transfer through a
 * single buffer), limit 16777216 (hundreds of buffers at once, nobody
 * waits), reserve limit - 1 at a small and at the largest limit (an
 * unprivileged socket gets a buffer only when none is out; privileged
 * sockets take the rest, a privileged waiter is served before an
 * unprivileged one queued ahead of it), with the per-user cap at its
 * largest, out of the way (the user_cap_* tests take it to its extremes).
 */
TEST_F_TIMEOUT(adv, param_extremes, 300)
{
	int i, fd[256], peer[256], u[2], up[2], p[3], pp[3];
	struct flower w[2];
	struct pool_stats st0, st;
	uint64_t bytes, seed;
	bool stop = false;

	/* limit 1: two flowers, eight flows, one buffer. */
	seed = test_seed(_metadata);
	ASSERT_EQ(limits_set(1, 0), 0);
	flowers_start(_metadata, self, w, 2, 4, 3000, &stop, seed);
	for (i = 0; i < 200; i++) {
		ASSERT_EQ(stats_read(&st), 0);
		ASSERT_LE(st.in_use, 1);
		sleep_ms(5);
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, 2, &bytes);
	EXPECT_GT(bytes, 0U);
	TH_LOG("limit 1: %llu bytes moved", (unsigned long long)bytes);

	/* limit 16777216: 256 buffers at once, no waits. */
	ASSERT_EQ(limits_set(16777216, 0), 0);
	ASSERT_EQ(stats_read(&st0), 0);
	for (i = 0; i < 256; i++) {
		fd[i] = new_pair(_metadata, self, i, true, &peer[i]);
		ASSERT_TRUE(hold(fd[i]));
	}
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.in_use, 256);
	EXPECT_EQ(st.waits, st0.waits);
	close_pairs(fd, peer, 256);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* reserve = limit - 1, limit 3. */
	caps_set(_metadata, 3, 2, LIMIT_MAX);
	ASSERT_EQ(net_admin(false), 0);
	for (i = 0; i < 2; i++)
		u[i] = new_pair(_metadata, self, i, true, &up[i]);
	ASSERT_EQ(net_admin(true), 0);
	for (i = 0; i < 3; i++)
		p[i] = new_pair(_metadata, self, i, true, &pp[i]);
	ASSERT_TRUE(hold(u[0]));
	ASSERT_TRUE(park(u[1]));
	ASSERT_TRUE(hold(p[0]));
	ASSERT_TRUE(hold(p[1]));
	ASSERT_TRUE(park(p[2]));
	/* p[0]'s buffer skips u[1] (it may not take the reserve): p[2]. */
	ASSERT_EQ(send(p[0], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(p[2], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_PARKED);
	ASSERT_EQ(send(u[0], "r", 1, 0), 1);
	ASSERT_EQ(send(p[1], "r", 1, 0), 1);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_PARKED);
	/* Only p[2]'s is out: it goes, then u[1] may have one. */
	ASSERT_EQ(send(p[2], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(u[1], POLLOUT, WAKE_MS) & POLLOUT);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_HOLDS_BUF);
	close_pairs(u, up, 2);
	close_pairs(p, pp, 3);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* The largest reserve: the same for unprivileged sockets. */
	caps_set(_metadata, LIMIT_MAX, LIMIT_MAX - 1, LIMIT_MAX);
	ASSERT_EQ(net_admin(false), 0);
	for (i = 0; i < 2; i++)
		u[i] = new_pair(_metadata, self, i, true, &up[i]);
	ASSERT_EQ(net_admin(true), 0);
	p[0] = new_pair(_metadata, self, 0, true, &pp[0]);
	ASSERT_TRUE(hold(u[0]));
	ASSERT_TRUE(park(u[1]));
	ASSERT_TRUE(hold(p[0]));
	ASSERT_EQ(send(u[0], "r", 1, 0), 1);
	EXPECT_EQ(info_flags(u[1]), MBUFMUX_F_PARKED);
	ASSERT_EQ(send(p[0], "r", 1, 0), 1);
	ASSERT_TRUE(poll_one(u[1], POLLOUT, WAKE_MS) & POLLOUT);
	close_pairs(u, up, 2);
	close(p[0]);
	close(pp[0]);
}

struct big_reader {
	pthread_t thread;
	int fd;
	size_t len;
	size_t got;
	long bad;
};

static void *big_reader_fn(void *arg)
{
	struct big_reader *r = arg;
	char *buf = malloc(CHUNK);
	ssize_t n;

	r->bad = -2;
	if (!buf)
		return NULL;
	r->bad = -1;
	while (r->got < r->len) {
		n = recv(r->fd, buf, CHUNK, 0);
		if (n <= 0)
			break;
		if (r->bad < 0 && check(buf, n, 77, r->got) >= 0)
			r->bad = r->got + check(buf, n, 77, r->got);
		r->got += n;
	}
	free(buf);
	return NULL;
}

/*
 * Sends @len bytes with MSG_MORE, then one more byte without, through a
 * new pair: in between, what did not fill a buffer stays held, and the
 * unsent bytes stay within a buffer of @buf_size.
 */
static void big_transfer(struct __test_metadata *_metadata,
			 struct _test_data_adv *self, size_t len,
			 unsigned int buf_size)
{
	struct big_reader r = { .len = len + 1 };
	struct mbufmux_info info;
	char *buf = malloc(len + 1);
	int fd;

	ASSERT_NE(buf, NULL);
	fill(buf, len + 1, 77, 0);
	fd = new_pair(_metadata, self, 0, true, &r.fd);
	ASSERT_EQ(pthread_create(&r.thread, NULL, big_reader_fn, &r), 0);
	ASSERT_EQ(send(fd, buf, len, MSG_MORE), (ssize_t)len);
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_GT(info.staged, 0U);
	EXPECT_LE(info.staged, buf_size);
	EXPECT_LE(unsent_bytes(fd), (long)buf_size);
	EXPECT_EQ(info.buf_size, buf_size);
	ASSERT_EQ(send(fd, buf + len, 1, 0), 1);
	pthread_join(r.thread, NULL);
	EXPECT_EQ(r.got, len + 1);
	EXPECT_EQ(r.bad, -1);
	close(fd);
	close(r.fd);
	free(buf);
}

/* Loads mbufmux_tcp.ko with @args and checks what it reports. */
static void load_with(struct __test_metadata *_metadata, const char *args,
		      long buf_size, long limit, long reserve, long user_limit)
{
	long cap = (limit - reserve) / 2;
	struct pool_stats st;
	int err;

	err = module_load(args);
	ASSERT_EQ(err, 0) TH_LOG("%s: %s", args, strerror(-err));
	EXPECT_EQ(param_get("buf_size"), buf_size);
	EXPECT_EQ(param_get("limit"), limit);
	EXPECT_EQ(param_get("reserve"), reserve);
	EXPECT_EQ(param_get("user_limit"), user_limit);
	EXPECT_EQ(users_cap(), user_limit ?: cap ?: 1);
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.buf_size, buf_size);
	EXPECT_EQ(st.limit, limit);
	EXPECT_EQ(st.reserve, reserve);
	EXPECT_EQ(st.prealloc, reserve);
}

/*
 * Load-time parameters at and past their extremes: buf_size 63 and
 * 1048577, limit 0 and 16777217, reserve == limit, user_limit 16777217,
 * junk are refused (EINVAL) and leave no module, debugfs directory or
 * cache; the largest reserve (16777215 buffers to preallocate) is refused
 * cleanly, without a warning; buf_size 64 and 1048576, limit 1 and
 * 16777216, reserve limit - 1, user_limit 1 and 16777216 load and work.
 * The module is then loaded as it was.
 */
TEST_F_TIMEOUT(adv, load_extremes, 600)
{
	static const char * const bad[] = {
		"buf_size=63", "buf_size=1048577", "buf_size=0",
		"limit=0", "limit=16777217", "limit=4 reserve=4",
		"limit=4 reserve=5", "limit=abc", "buf_size=-1",
		"user_limit=16777217", "user_limit=-1",
	};
	int fd, peer, v, vp, u, upr;
	struct flower w[1];
	uint64_t bytes;
	bool stop;
	size_t i;
	int err;

	ASSERT_EQ(access(module_ko(), R_OK), 0) TH_LOG("no %s", module_ko());
	ASSERT_EQ(module_unload(REST_MS), 0);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		EXPECT_EQ(module_load(bad[i]), -EINVAL) TH_LOG("%s", bad[i]);
		EXPECT_FALSE(module_loaded("mbufmux_tcp"));
		EXPECT_NE(access(DBG_DIR, F_OK), 0);
		EXPECT_NE(access(ULP_DBG_DIR, F_OK), 0);
		EXPECT_NE(access("/sys/kernel/slab/mbufmux_tcp", F_OK), 0);
		if (module_loaded("mbufmux_tcp"))
			module_unload(REST_MS);
	}

	TH_LOG("limit=16777216 reserve=16777215: must fail cleanly (no WARN in the kernel log)");
	err = module_load("limit=16777216 reserve=16777215");
	EXPECT_EQ(err, -ENOMEM) TH_LOG("%s", strerror(-err));
	EXPECT_NE(access(DBG_DIR, F_OK), 0);
	EXPECT_NE(access(ULP_DBG_DIR, F_OK), 0);
	EXPECT_NE(access("/sys/kernel/slab/mbufmux_tcp", F_OK), 0);
	if (!err)
		ASSERT_EQ(module_unload(REST_MS), 0);

	/* 64-byte buffers: a byte-exact transfer through them. */
	load_with(_metadata, "buf_size=64 limit=4", 64, 4, 0, 0);
	stop = false;
	flowers_start(_metadata, self, w, 1, 4, 200, &stop, 1);
	sleep_ms(1000);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, 1, &bytes);
	EXPECT_GT(bytes, 0U);
	big_transfer(_metadata, self, 3 * 64 + 10, 64);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);

	/* 1 MiB buffers, three of them preallocated. */
	load_with(_metadata, "buf_size=1048576 limit=4 reserve=3", 1048576,
		  4, 3, 0);
	big_transfer(_metadata, self, 3 * 1048576 + 100, 1048576);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);

	/* limit 1: one holder, one parked. */
	load_with(_metadata, "limit=1 user_limit=1", initial.buf_size, 1, 0,
		  1);
	fd = new_pair(_metadata, self, 0, true, &peer);
	v = new_pair(_metadata, self, 1, true, &vp);
	ASSERT_TRUE(hold(fd));
	ASSERT_TRUE(park(v));
	close(fd);
	ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
	close(v);
	close(peer);
	close(vp);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);

	/* The largest limit; reserve limit - 1 with its buffers. */
	load_with(_metadata, "limit=16777216 user_limit=16777216",
		  initial.buf_size, LIMIT_MAX, 0, LIMIT_MAX);
	ASSERT_EQ(module_unload(REST_MS), 0);
	load_with(_metadata, "limit=8 reserve=7 user_limit=8",
		  initial.buf_size, 8, 7, 8);
	ASSERT_EQ(net_admin(false), 0);
	u = new_pair(_metadata, self, 0, true, &upr);
	v = new_pair(_metadata, self, 1, true, &vp);
	ASSERT_EQ(net_admin(true), 0);
	ASSERT_TRUE(hold(u));
	ASSERT_TRUE(park(v));
	fd = new_pair(_metadata, self, 0, true, &peer);
	ASSERT_TRUE(hold(fd));
	close(u);
	close(v);
	close(fd);
	close(upr);
	close(vp);
	close(peer);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	ASSERT_EQ(module_unload(REST_MS), 0);
	ASSERT_EQ(module_restore(), 0);
}

TEST_HARNESS_MAIN
