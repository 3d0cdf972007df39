/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The harness side of the selftests of mbufmux_tcp.ko: the helpers that
 * fail a test, on top of lib/mbufmux_test_lib.h (which this includes). A
 * header of static inline functions: they use kselftest_harness.h, which
 * each program includes once, with its own state (as
 * tools/testing/selftests/landlock/common.h). Include it first, after
 * defining _GNU_SOURCE.
 */
#ifndef MBUFMUX_UTIL_H
#define MBUFMUX_UTIL_H

#include "mbufmux_test_lib.h"
#include "kselftest_harness.h"

/*
 * How long the fixtures wait for the pool to come back to rest after a
 * test: a hang guard (the send tests need the most, sockets keeping their
 * buffer until TCP has sent everything), not an assertion on time.
 */
#define REST_MS		60000

/*
 * The parameters of mbufmux_tcp.ko as the program found them: the
 * fixtures restore them after each test.
 */
static struct tcp_params initial;

static void __attribute__((constructor)) save_initial_params(void)
{
	params_read(&initial);
}

/* The module was loaded, with sane parameters, when the program started. */
static inline void assert_initial(struct __test_metadata *_metadata)
{
	ASSERT_GT(initial.limit, 0)
		TH_LOG("mbufmux_tcp.ko was not loaded when the program started");
	ASSERT_GE(initial.reserve, 0);
	ASSERT_GE(initial.user_limit, 0);
}

/*
 * The start of a test that needs mbufmux_tcp.ko as the program found it:
 * loaded, with buf_size unchanged, and the run-time parameters restored
 * (said in the log) if an earlier test left them changed. Returns
 * buf_size.
 */
static inline long restore_initial(struct __test_metadata *_metadata)
{
	long buf_size;

	ASSERT_TRUE(module_loaded("mbufmux_tcp"))
		TH_LOG("mbufmux_tcp.ko is not loaded");
	assert_initial(_metadata);
	ASSERT_GT(initial.buf_size, 0);
	buf_size = param_get("buf_size");
	ASSERT_EQ(buf_size, initial.buf_size);
	if (!params_equal(&initial)) {
		TH_LOG("parameters left changed by an earlier test: restoring them");
		ASSERT_EQ(params_write(&initial), 0);
	}
	return buf_size;
}

/* A test's seed, $MBUFMUX_SEED or the time: logged, never 0. */
static inline uint64_t test_seed(struct __test_metadata *_metadata)
{
	const char *env = getenv("MBUFMUX_SEED");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : 0;

	if (!seed)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	TH_LOG("seed %llu (MBUFMUX_SEED to repeat)", (unsigned long long)seed);
	return seed | 1;
}

/*
 * Writing each of the @n values @bad to parameter @name fails with EINVAL,
 * and a value past 32 bits with EINVAL or ERANGE; @name keeps @old.
 */
static inline void expect_refused(struct __test_metadata *_metadata,
				  const char *name, const char * const *bad,
				  size_t n, long old)
{
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		EXPECT_EQ(param_write(name, bad[i]), -EINVAL)
			TH_LOG("%s=\"%s\"", name, bad[i]);
		EXPECT_EQ(param_get(name), old);
	}
	err = param_write(name, "4294967296");
	EXPECT_TRUE(err == -EINVAL || err == -ERANGE)
		TH_LOG("%s=4294967296: %d", name, err);
	EXPECT_EQ(param_get(name), old);
}

/* A pair on listener @l, the connecting side attached if @attach_it. */
static inline int pair_on(struct __test_metadata *_metadata,
			  const struct lsn *l, bool attach_it, int *peer)
{
	int fd;

	fd = lsn_pair(l, peer);
	ASSERT_GE(fd, 0) TH_LOG("pair: %s", strerror(errno));
	if (attach_it)
		ASSERT_EQ(attach(fd), 0) TH_LOG("attach: %s", strerror(errno));
	return fd;
}

/*
 * Starts @c, a call that must sleep on a dry pool, and waits until its
 * socket is parked: the call is then asleep in the pool's wait list.
 */
static inline void start_parked(struct __test_metadata *_metadata,
				struct blocked_call *c)
{
	ASSERT_EQ(blocked_call_start(c), 0);
	ASSERT_EQ(wait_flags(c->fd, MBUFMUX_F_PARKED, MBUFMUX_F_PARKED,
			     WAKE_MS) & MBUFMUX_F_PARKED, MBUFMUX_F_PARKED);
}

/* Receives @total bytes of pattern @flow, BACKLOG_CHUNK at a time. */
static inline void recv_pattern(struct __test_metadata *_metadata, int fd,
				size_t total, uint32_t flow)
{
	char *buf = malloc(BACKLOG_CHUNK);
	size_t got = 0, n;

	ASSERT_NE(buf, NULL);
	while (got < total) {
		n = total - got < BACKLOG_CHUNK ? total - got : BACKLOG_CHUNK;
		n = recv_all(fd, buf, n, WAKE_MS);
		ASSERT_GT(n, 0U) TH_LOG("got %zu of %zu bytes", got, total);
		ASSERT_EQ(check(buf, n, flow, got), -1)
			TH_LOG("wrong byte after %zu", got);
		got += n;
	}
	free(buf);
}

#endif /* MBUFMUX_UTIL_H */
