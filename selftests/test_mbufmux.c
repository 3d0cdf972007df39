// SPDX-License-Identifier: GPL-2.0
/*
 * test_mbufmux - in-kernel tests of the mbufmux pool API.
 *
 * Loading the module runs every test and prints KTAP to the kernel log
 * between "test_mbufmux: begin" and "test_mbufmux: end", and the number of
 * failed tests in the read-only parameter tests_failed (the load itself
 * succeeds: busybox insmod retries a failed load with the older syscall,
 * which would run everything twice). selftests/test_mbufmux.sh drives it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/memcontrol.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "mbufmux.h"

static unsigned int stress_ops = 100000;
module_param(stress_ops, uint, 0444);
MODULE_PARM_DESC(stress_ops, "operations of the concurrent stress, in all");

/*
 * Not a timing assertion: only how long to wait before calling a hang a
 * lost wake-up. Emulated CPUs are slow; keep it generous.
 */
#define HANG_TIMEOUT	(60 * HZ)
#define BUF_SIZE	256

static char *hold_pool;
module_param(hold_pool, charp, 0444);
MODULE_PARM_DESC(hold_pool, "only create a pool of this name and hold it until unload (to make another module's pool creation fail)");
static struct mbufmux_pool *held_pool;

static int failed_asserts;

/*
 * The pools destroyed with a buffer out on purpose are leaked, their names
 * taken until mbufmux.ko unloads: they end in this tag, one per load, so
 * that the tests can run again meanwhile (fault_inject.sh runs them twice).
 */
static char leak_tag[9];
module_param_string(leak_tag, leak_tag, sizeof(leak_tag), 0444);
MODULE_PARM_DESC(leak_tag, "suffix of the pools leaked on purpose (default: random; read-only result)");

/* Results for test_mbufmux.sh; init never fails, so insmod never retries. */
static unsigned int tests_failed = UINT_MAX;
module_param(tests_failed, uint, 0444);
MODULE_PARM_DESC(tests_failed, "tests that failed (read-only result)");

#define CHECK(cond) ({							\
	bool __ok = !!(cond);						\
	if (!__ok) {							\
		failed_asserts++;					\
		pr_info("    # %s:%d: check failed: %s\n",		\
			__func__, __LINE__, #cond);			\
	}								\
	__ok;								\
})

#define CHECK_EQ(a, b) ({						\
	long long __a = (a), __b = (b);					\
	bool __ok = __a == __b;						\
	if (!__ok) {							\
		failed_asserts++;					\
		pr_info("    # %s:%d: %s == %lld, expected %s == %lld\n",\
			__func__, __LINE__, #a, __a, #b, __b);		\
	}								\
	__ok;								\
})

/* A pool made as @p says; NULL, counted as a failure, if it cannot be. */
static struct mbufmux_pool *new_pool_from(const struct mbufmux_pool_params *p)
{
	struct mbufmux_pool *pool = mbufmux_pool_create(p);

	if (IS_ERR(pool)) {
		pr_info("    # cannot create pool %s: %ld\n", p->name,
			PTR_ERR(pool));
		failed_asserts++;
		return NULL;
	}
	return pool;
}

static struct mbufmux_pool *new_sized_pool(const char *name,
					   unsigned int size,
					   unsigned int limit,
					   unsigned int reserve,
					   unsigned int prealloc)
{
	struct mbufmux_pool_params p = {
		.name = name, .buf_size = size, .limit = limit,
		.reserve = reserve, .prealloc = prealloc,
	};

	return new_pool_from(&p);
}

static struct mbufmux_pool *new_pool(const char *name, unsigned int limit,
				     unsigned int reserve,
				     unsigned int prealloc)
{
	return new_sized_pool(name, BUF_SIZE, limit, reserve, prealloc);
}

static struct mbufmux_pool *new_flagged_pool(const char *name,
					     unsigned int size,
					     unsigned int limit,
					     unsigned int flags)
{
	struct mbufmux_pool_params p = {
		.name = name, .buf_size = size, .limit = limit, .flags = flags,
	};

	return new_pool_from(&p);
}

static struct mbufmux_pool_stats stats(struct mbufmux_pool *pool)
{
	struct mbufmux_pool_stats st;

	mbufmux_pool_get_stats(pool, &st);
	return st;
}

/*
 * The same in static storage, for tests that check one counter at a time:
 * with KASAN, a struct copy per check would overflow their frames. Only
 * for the thread that runs the tests (or the one it waits for).
 */
static const struct mbufmux_pool_stats *stats_now(struct mbufmux_pool *pool)
{
	static struct mbufmux_pool_stats st;

	mbufmux_pool_get_stats(pool, &st);
	return &st;
}

static bool all_zero(const u8 *buf, size_t len)
{
	return !memchr_inv(buf, 0, len);
}

/*
 * A waiter whose callback counts and signals. The tests keep theirs in
 * static storage or on the heap: a work_struct on the stack would need
 * INIT_WORK_ONSTACK(), which debugobjects checks.
 */
struct tw {
	struct mbufmux_waiter w;
	struct completion handed;
	atomic_t calls;
	int order;		/* rank among all callbacks of a test */
};

static atomic_t tw_seq;

static void tw_available(struct mbufmux_waiter *w)
{
	struct tw *t = container_of(w, struct tw, w);

	t->order = atomic_inc_return(&tw_seq);
	atomic_inc(&t->calls);
	complete(&t->handed);
}

static const struct mbufmux_waiter_ops tw_ops = {
	.available = tw_available,
};

static void tw_init(struct tw *t, struct mbufmux_pool *pool)
{
	mbufmux_waiter_init(&t->w, pool, &tw_ops);
	init_completion(&t->handed);
	atomic_set(&t->calls, 0);
	t->order = 0;
}

/*
 * @n, refused a buffer, waits while @h gives its own back: returns what
 * @n was handed, or NULL (a failure) if its callback did not come.
 */
static void *hand_over(struct tw *h, struct tw *n)
{
	reinit_completion(&n->handed);
	CHECK(!mbufmux_get(&n->w, 0));
	mbufmux_put(&h->w);
	if (!CHECK(wait_for_completion_timeout(&n->handed, HANG_TIMEOUT)))
		return NULL;
	return mbufmux_get(&n->w, 0);
}

/* Tests. Each returns nothing; CHECK() records failures. */

static void test_fastpath(void)
{
	struct mbufmux_pool *pool = new_pool("t_fast", 4, 0, 0);
	static struct tw t;
	struct mbufmux_pool_stats st;
	void *a, *b;
	int i;

	if (!pool)
		return;
	tw_init(&t, pool);
	for (i = 0; i < 1000; i++) {
		a = mbufmux_get(&t.w, 0);
		if (!CHECK(a))
			break;
		/* Held: get returns the same buffer, nothing more is taken. */
		b = mbufmux_get(&t.w, 0);
		CHECK(a == b);
		CHECK(all_zero(a, BUF_SIZE));
		memset(a, 0xa5, BUF_SIZE);
		mbufmux_put(&t.w);
		CHECK(!mbufmux_waiter_buf(&t.w));
	}
	st = stats(pool);
	CHECK_EQ(st.allocs, 1000);
	CHECK_EQ(st.frees, 1000);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.peak, 1);
	CHECK_EQ(st.waits, 0);
	CHECK_EQ(st.alloc_fail, 0);
	CHECK_EQ(atomic_read(&t.calls), 0);
	mbufmux_pool_destroy(pool);
}

static void test_limit_margin_reserve(void)
{
	static const struct mbufmux_pool_params same_name = {
		.name = "t_limit", .buf_size = BUF_SIZE, .limit = 1,
	};
	struct mbufmux_pool *pool, *dup;
	struct mbufmux_pool_stats st;
	void *b[5];

	pool = new_pool("t_limit", 4, 1, 0);
	if (!pool)
		return;

	/* Non-critical callers leave the reserve: 3 of 4. */
	b[0] = mbufmux_buf_alloc(pool, MBUFMUX_MARGIN_RESERVE);
	b[1] = mbufmux_buf_alloc(pool, MBUFMUX_MARGIN_RESERVE);
	b[2] = mbufmux_buf_alloc(pool, MBUFMUX_MARGIN_RESERVE);
	CHECK(b[0] && b[1] && b[2]);
	CHECK(!mbufmux_buf_alloc(pool, MBUFMUX_MARGIN_RESERVE));
	/* A margin of 1 needs in_use + 1 < 4: refused at 3. */
	CHECK(!mbufmux_buf_alloc(pool, 1));
	/* A critical allocation takes the reserve, and then nothing is left. */
	b[3] = mbufmux_buf_alloc(pool, 0);
	CHECK(b[3]);
	CHECK(!mbufmux_buf_alloc(pool, 0));
	/* A margin at or above the limit never succeeds. */
	mbufmux_buf_free(pool, b[3]);
	CHECK(!mbufmux_buf_alloc(pool, 4));
	CHECK(!mbufmux_buf_alloc(pool, UINT_MAX - 1));

	st = stats(pool);
	CHECK_EQ(st.in_use, 3);
	CHECK_EQ(st.peak, 4);
	CHECK_EQ(st.alloc_fail, 5);
	CHECK_EQ(st.reserve, 1);

	/* Lowering the limit under in_use takes nothing back. */
	CHECK_EQ(mbufmux_pool_set_limits(pool, 2, 0), 0);
	CHECK(!mbufmux_buf_alloc(pool, 0));
	mbufmux_buf_free(pool, b[0]);
	CHECK(!mbufmux_buf_alloc(pool, 0));
	mbufmux_buf_free(pool, b[1]);
	b[0] = mbufmux_buf_alloc(pool, 0);
	CHECK(b[0]);
	CHECK(!mbufmux_buf_alloc(pool, 0));
	mbufmux_buf_free(pool, b[0]);
	mbufmux_buf_free(pool, b[2]);

	/* Bad values are refused and change nothing. */
	CHECK_EQ(mbufmux_pool_set_limits(pool, 0, 0), -EINVAL);
	CHECK_EQ(mbufmux_pool_set_limits(pool, 3, 3), -EINVAL);
	CHECK_EQ(mbufmux_pool_set_limits(pool, MBUFMUX_LIMIT_MAX + 1, 0),
		 -EINVAL);
	st = stats(pool);
	CHECK_EQ(st.limit, 2);
	CHECK_EQ(st.reserve, 0);
	CHECK_EQ(st.in_use, 0);

	/* What the pool keeps is what its owner reads back (the ULP does). */
	CHECK_EQ(mbufmux_pool_set_limits(pool, 5, 4), 0);
	CHECK_EQ(mbufmux_pool_limit(pool), 5);
	CHECK_EQ(mbufmux_pool_reserve(pool), 4);
	CHECK_EQ(mbufmux_pool_set_limits(pool, 4, 4), -EINVAL);
	CHECK_EQ(mbufmux_pool_limit(pool), 5);
	CHECK_EQ(mbufmux_pool_reserve(pool), 4);

	/* Names are unique. */
	dup = mbufmux_pool_create(&same_name);
	CHECK_EQ(PTR_ERR_OR_ZERO(dup), -EEXIST);
	if (!IS_ERR(dup))
		mbufmux_pool_destroy(dup);
	mbufmux_pool_destroy(pool);
}

/*
 * A critical request is not stuck behind waiters that may not take the
 * reserve: it gets the room they cannot use, and only that room.
 */
static void test_reserve_behind_waiters(void)
{
	struct mbufmux_pool *pool = new_pool("t_reserve", 3, 1, 0);
	static struct tw a, b, c;
	struct mbufmux_pool_stats st;
	void *held[3];

	if (!pool)
		return;
	held[0] = mbufmux_buf_alloc(pool, 0);
	held[1] = mbufmux_buf_alloc(pool, 0);
	tw_init(&a, pool);
	tw_init(&b, pool);
	tw_init(&c, pool);
	/* 2 of 3 out: a non-critical request would eat the reserve. */
	CHECK(!mbufmux_get(&a.w, MBUFMUX_MARGIN_RESERVE));
	/* A critical one takes the reserve at once, queue or not. */
	held[2] = mbufmux_get(&b.w, 0);
	CHECK(held[2]);
	/* Now full: a second critical request queues behind a. */
	CHECK(!mbufmux_get(&c.w, 0));
	/* One back: a still may not have it (3 - 1 + 1 == 3), c may. */
	mbufmux_buf_free(pool, held[0]);
	CHECK(wait_for_completion_timeout(&c.handed, HANG_TIMEOUT));
	CHECK(mbufmux_waiter_queued(&a.w));
	CHECK(!atomic_read(&a.calls));
	/* c gives it back: still one too many out for a. */
	mbufmux_cancel(&c.w);
	CHECK(mbufmux_waiter_queued(&a.w));
	/* Another back: now a fits, and gets the buffer. */
	mbufmux_buf_free(pool, held[1]);
	CHECK(wait_for_completion_timeout(&a.handed, HANG_TIMEOUT));
	st = stats(pool);
	CHECK_EQ(st.handoffs, 2);
	CHECK_EQ(st.waiters, 0);
	mbufmux_cancel(&a.w);
	mbufmux_cancel(&b.w);
	st = stats(pool);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.allocs, st.frees);
	mbufmux_pool_destroy(pool);
}

static void test_bad_params(void)
{
	static const struct mbufmux_pool_params bad[] = {
		{ .name = NULL, .buf_size = BUF_SIZE, .limit = 1 },
		{ .name = "", .buf_size = BUF_SIZE, .limit = 1 },
		{ .name = "Upper", .buf_size = BUF_SIZE, .limit = 1 },
		{ .name = "a/b", .buf_size = BUF_SIZE, .limit = 1 },
		{ .name = "a_name_that_is_much_too_long_for_it",
		  .buf_size = BUF_SIZE, .limit = 1 },
		{ .name = "t_bad", .buf_size = MBUFMUX_BUF_SIZE_MIN - 1,
		  .limit = 1 },
		{ .name = "t_bad", .buf_size = MBUFMUX_BUF_SIZE_MAX + 1,
		  .limit = 1 },
		{ .name = "t_bad", .buf_size = BUF_SIZE, .limit = 0 },
		{ .name = "t_bad", .buf_size = BUF_SIZE,
		  .limit = MBUFMUX_LIMIT_MAX + 1 },
		{ .name = "t_bad", .buf_size = BUF_SIZE, .limit = 2,
		  .reserve = 2 },
		{ .name = "t_bad", .buf_size = BUF_SIZE, .limit = 2,
		  .prealloc = 3 },
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		struct mbufmux_pool *pool = mbufmux_pool_create(&bad[i]);

		if (!CHECK_EQ(PTR_ERR_OR_ZERO(pool), -EINVAL)) {
			pr_info("    # case %u accepted\n", i);
			if (!IS_ERR(pool))
				mbufmux_pool_destroy(pool);
		}
	}
}

static void test_prealloc(void)
{
	struct mbufmux_pool *pool = new_pool("t_prealloc", 4, 0, 2);
	struct mbufmux_pool_stats st;
	void *b[3];
	int round;

	if (!pool)
		return;
	for (round = 0; round < 2; round++) {
		/* With the slab failing, the two preallocated buffers serve. */
		mbufmux_pool_inject_slab_failures(pool, 100);
		b[0] = mbufmux_buf_alloc(pool, 0);
		b[1] = mbufmux_buf_alloc(pool, 0);
		b[2] = mbufmux_buf_alloc(pool, 0);
		CHECK(b[0] && b[1]);
		CHECK(!b[2]);
		if (b[0]) {
			CHECK(all_zero(b[0], BUF_SIZE));
			memset(b[0], 0x5a, BUF_SIZE);
		}
		mbufmux_pool_inject_slab_failures(pool, 0);
		/* Freeing refills the stash before the slab gets anything. */
		if (b[0])
			mbufmux_buf_free(pool, b[0]);
		if (b[1])
			mbufmux_buf_free(pool, b[1]);
	}
	st = stats(pool);
	CHECK_EQ(st.alloc_nomem, 2);
	CHECK_EQ(st.alloc_fail, 0);
	CHECK_EQ(st.allocs, 4);
	CHECK_EQ(st.frees, 4);
	CHECK_EQ(st.in_use, 0);
	mbufmux_pool_destroy(pool);
}

/* FIFO: kthread contexts queue in a known order and are served in it. */

#define NR_FIFO 10

struct fifo_ctx {
	struct tw t;
	struct completion queued;	/* the thread asked, and waits */
	struct completion holding;	/* the thread has its buffer */
	struct completion may_put;
	struct completion done;
	bool got_buf_at_once;
	bool timed_out;
};

static int fifo_thread(void *arg)
{
	struct fifo_ctx *c = arg;

	if (mbufmux_get(&c->t.w, 0)) {
		/* Not expected: the pool is full. Report it and leave. */
		c->got_buf_at_once = true;
		mbufmux_put(&c->t.w);
		complete(&c->queued);
		kthread_complete_and_exit(&c->done, 0);
	}
	complete(&c->queued);
	if (!wait_for_completion_timeout(&c->t.handed, HANG_TIMEOUT)) {
		c->timed_out = true;
		mbufmux_cancel(&c->t.w);
		kthread_complete_and_exit(&c->done, 0);
	}
	if (mbufmux_get(&c->t.w, 0))
		complete(&c->holding);
	wait_for_completion(&c->may_put);
	mbufmux_put(&c->t.w);
	kthread_complete_and_exit(&c->done, 0);
}

static void test_fifo(void)
{
	struct mbufmux_pool *pool = new_pool("t_fifo", 1, 0, 0);
	struct mbufmux_pool_stats st;
	struct task_struct *task;
	static struct tw late;
	struct fifo_ctx *c;
	void *held;
	int i, n;

	if (!pool)
		return;
	c = kcalloc(NR_FIFO, sizeof(*c), GFP_KERNEL);
	if (!CHECK(c))
		goto out_pool;
	atomic_set(&tw_seq, 0);
	held = mbufmux_buf_alloc(pool, 0);
	CHECK(held);

	for (i = 0; i < NR_FIFO; i++) {
		tw_init(&c[i].t, pool);
		init_completion(&c[i].queued);
		init_completion(&c[i].holding);
		init_completion(&c[i].may_put);
		init_completion(&c[i].done);
		task = kthread_run(fifo_thread, &c[i], "t_mbufmux_%d", i);
		if (IS_ERR(task)) {
			CHECK(0);
			break;
		}
		/* Queue them one at a time, so the order is known. */
		wait_for_completion(&c[i].queued);
		CHECK(!c[i].got_buf_at_once);
	}
	n = i;
	CHECK_EQ(stats(pool).waiters, n);

	/* A newcomer does not overtake them, even for a critical buffer. */
	tw_init(&late, pool);
	CHECK(!mbufmux_get(&late.w, 0));
	CHECK(mbufmux_waiter_queued(&late.w));
	mbufmux_cancel(&late.w);
	CHECK(!mbufmux_waiter_queued(&late.w));

	/*
	 * One buffer freed wakes exactly one waiter, the head; when it puts
	 * the buffer back, the next one in line gets it.
	 */
	if (held)
		mbufmux_buf_free(pool, held);
	for (i = 0; i < n; i++) {
		if (!CHECK(wait_for_completion_timeout(&c[i].holding,
						       HANG_TIMEOUT)))
			break;
		/* Give a wrong second wake-up the time to show. */
		msleep(20);
		CHECK_EQ(atomic_read(&tw_seq), i + 1);
		CHECK_EQ(c[i].t.order, i + 1);
		st = stats(pool);
		CHECK_EQ(st.handoffs, i + 1);
		CHECK_EQ(st.waiters, n - i - 1);
		CHECK_EQ(st.in_use, 1);
		complete(&c[i].may_put);
	}
	/* Unblock and reap every thread, whatever failed above. */
	for (i = 0; i < n; i++) {
		complete(&c[i].may_put);
		wait_for_completion(&c[i].done);
		CHECK(!c[i].timed_out);
		CHECK_EQ(atomic_read(&c[i].t.calls), 1);
	}
	st = stats(pool);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.waiters, 0);
	CHECK_EQ(st.handoffs, n);
	CHECK_EQ(st.waits, n + 1);
	CHECK_EQ(st.cancels, 1);
	CHECK_EQ(st.allocs, st.frees);
	kfree(c);
out_pool:
	mbufmux_pool_destroy(pool);
}

struct cancel_ctx {
	struct mbufmux_pool *pool;
	struct completion done;
	unsigned int pending, rounds;
};

/*
 * Cancel right after the handoff, before the work has run: the buffer
 * goes back and on to the next waiter. The thread runs SCHED_FIFO on the
 * CPU the work is queued on, so the worker cannot run before it sleeps
 * in the cancel: the work is caught pending every time.
 */
static int cancel_pending_thread(void *arg)
{
	struct cancel_ctx *cc = arg;
	struct mbufmux_pool *pool = cc->pool;
	static struct tw a, b;
	void *held;

	sched_set_fifo(current);
	for (cc->rounds = 0; cc->rounds < 200; cc->rounds++) {
		held = mbufmux_buf_alloc(pool, 0);
		tw_init(&a, pool);
		tw_init(&b, pool);
		CHECK(!mbufmux_get(&a.w, 0));
		CHECK(!mbufmux_get(&b.w, 0));
		mbufmux_buf_free(pool, held);
		mbufmux_cancel(&a.w);
		/* Caught pending: the callback never ran. */
		if (!atomic_read(&a.calls))
			cc->pending++;
		CHECK(!mbufmux_waiter_buf(&a.w));
		CHECK(atomic_read(&a.calls) <= 1);
		if (!CHECK(wait_for_completion_timeout(&b.handed,
						       HANG_TIMEOUT))) {
			mbufmux_cancel(&b.w);
			break;
		}
		CHECK(mbufmux_get(&b.w, 0));
		mbufmux_cancel(&b.w);
		CHECK_EQ(stats(pool).in_use, 0);
	}
	kthread_complete_and_exit(&cc->done, 0);
}

static void test_cancel(void)
{
	struct mbufmux_pool *pool = new_pool("t_cancel", 1, 0, 0);
	struct cancel_ctx cc = { .pool = pool };
	struct mbufmux_pool_stats st;
	struct task_struct *task;
	static struct tw a;
	void *held;

	if (!pool)
		return;

	/* Cancel while queued: nothing is handed, nothing runs. */
	held = mbufmux_buf_alloc(pool, 0);
	tw_init(&a, pool);
	CHECK(!mbufmux_get(&a.w, 0));
	mbufmux_cancel(&a.w);
	mbufmux_buf_free(pool, held);
	st = stats(pool);
	CHECK_EQ(st.cancels, 1);
	CHECK_EQ(st.handoffs, 0);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(atomic_read(&a.calls), 0);

	init_completion(&cc.done);
	task = kthread_create(cancel_pending_thread, &cc, "t_mbufmux_c");
	if (CHECK(!IS_ERR(task))) {
		kthread_bind(task, 0);
		wake_up_process(task);
		wait_for_completion(&cc.done);
	}
	pr_info("    # %u of %u cancels caught the work pending\n",
		cc.pending, cc.rounds);
	CHECK_EQ(cc.pending, cc.rounds);
	CHECK_EQ(cc.rounds, 200);
	st = stats(pool);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.waiters, 0);
	CHECK_EQ(st.allocs, st.frees);
	mbufmux_pool_destroy(pool);
}

/*
 * Sleeping in the queue, mbufmux_get_killable(): sleepers and waiters with
 * a callback share the one FIFO; the free wakes a sleeper, whose callback
 * never runs; a fatal signal takes a sleeper out of the queue.
 */
struct sleeper {
	struct tw t;
	struct task_struct *task;
	struct completion holding;	/* mbufmux_get_killable() returned */
	struct completion may_put;
	struct completion done;
	bool queue_first;		/* queued by mbufmux_get() before */
	bool reaped;			/* @done was waited for */
	void *buf;			/* what mbufmux_get_killable() returned */
	bool queued;			/* and whether @t was queued then */
};

static int sleeper_thread(void *arg)
{
	struct sleeper *s = arg;

	allow_signal(SIGKILL);
	if (s->queue_first)
		CHECK(!mbufmux_get(&s->t.w, 0));
	s->buf = mbufmux_get_killable(&s->t.w, 0);
	s->queued = mbufmux_waiter_queued(&s->t.w);
	if (s->buf) {
		s->t.order = atomic_inc_return(&tw_seq);
		complete(&s->holding);
		wait_for_completion(&s->may_put);
	}
	mbufmux_cancel(&s->t.w);
	kthread_complete_and_exit(&s->done, 0);
}

static bool start_sleeper(struct sleeper *s, struct mbufmux_pool *pool,
			  bool queue_first)
{
	unsigned long end = jiffies + HANG_TIMEOUT;

	tw_init(&s->t, pool);
	init_completion(&s->holding);
	init_completion(&s->may_put);
	init_completion(&s->done);
	s->queue_first = queue_first;
	s->task = kthread_run(sleeper_thread, s, "t_mbufmux_sl");
	if (!CHECK(!IS_ERR(s->task))) {
		s->task = NULL;
		return false;
	}
	get_task_struct(s->task);
	/* Asleep in the queue, or about to be: the handoff will wake it. */
	while (!(READ_ONCE(s->t.w.sleeps) && mbufmux_waiter_queued(&s->t.w))) {
		if (!CHECK(time_before(jiffies, end)))
			return false;
		usleep_range(1000, 2000);
	}
	return true;
}

/* Has the sleeper's thread ended? Waits for it, HANG_TIMEOUT at most. */
static bool sleeper_ended(struct sleeper *s)
{
	if (!s->reaped)
		s->reaped = wait_for_completion_timeout(&s->done, HANG_TIMEOUT);
	return s->reaped;
}

/* Ends the sleeper's thread, whatever state a failure left it in. */
static void stop_sleeper(struct sleeper *s)
{
	if (!s->task)
		return;
	complete(&s->may_put);
	if (!s->reaped && !completion_done(&s->done))
		send_sig(SIGKILL, s->task, 1);
	if (!s->reaped)
		wait_for_completion(&s->done);
	put_task_struct(s->task);
	s->task = NULL;
}

static void test_get_killable(void)
{
	struct mbufmux_pool *pool = new_pool("t_sleep", 1, 0, 0);
	static struct sleeper sl[3];	/* S1, S2 (queued first), K */
	static struct tw a, c;
	void *held;
	int i;

	if (!pool)
		return;
	memset(sl, 0, sizeof(sl));
	atomic_set(&tw_seq, 0);

	tw_init(&c, pool);
	/* Room: a buffer at once, no wait. */
	tw_init(&a, pool);
	held = mbufmux_get_killable(&a.w, 0);
	CHECK(held);
	CHECK_EQ(stats_now(pool)->waits, 0);
	mbufmux_cancel(&a.w);

	/* In line: S1 sleeps, C waits by callback, S2 and K sleep. */
	held = mbufmux_buf_alloc(pool, 0);
	CHECK(held);
	if (!start_sleeper(&sl[0], pool, false))
		goto out;
	CHECK(!mbufmux_get(&c.w, 0));
	if (!start_sleeper(&sl[1], pool, true) ||
	    !start_sleeper(&sl[2], pool, false))
		goto out;
	CHECK_EQ(stats_now(pool)->waiters, 4);

	/* A fatal signal takes K out of the queue, with nothing. */
	send_sig(SIGKILL, sl[2].task, 1);
	if (!CHECK(sleeper_ended(&sl[2])))
		goto out;
	CHECK(!sl[2].buf);
	CHECK(!sl[2].queued);
	CHECK_EQ(stats_now(pool)->cancels, 1);
	CHECK_EQ(stats_now(pool)->waiters, 3);

	/* The free wakes S1, the head, and nobody else. */
	mbufmux_buf_free(pool, held);
	held = NULL;
	if (!CHECK(wait_for_completion_timeout(&sl[0].holding, HANG_TIMEOUT)))
		goto out;
	msleep(20);	/* give a wrong second wake-up the time to show */
	CHECK_EQ(sl[0].t.order, 1);
	CHECK_EQ(atomic_read(&c.calls), 0);
	CHECK(!completion_done(&sl[1].holding));
	CHECK_EQ(stats_now(pool)->handoffs, 1);

	/* S1's buffer goes to C, by its callback... */
	complete(&sl[0].may_put);
	if (!CHECK(wait_for_completion_timeout(&c.handed, HANG_TIMEOUT)))
		goto out;
	CHECK_EQ(c.order, 2);
	CHECK(mbufmux_get(&c.w, 0));
	msleep(20);
	CHECK(!completion_done(&sl[1].holding));

	/* ...and C's to S2, which had queued with mbufmux_get(). */
	mbufmux_cancel(&c.w);
	if (!CHECK(wait_for_completion_timeout(&sl[1].holding, HANG_TIMEOUT)))
		goto out;
	CHECK_EQ(sl[1].t.order, 3);
	complete(&sl[1].may_put);
out:
	for (i = 0; i < ARRAY_SIZE(sl); i++) {
		stop_sleeper(&sl[i]);
		/* A sleeper's callback never runs; it returns out of line. */
		CHECK_EQ(atomic_read(&sl[i].t.calls), 0);
		CHECK(!sl[i].queued);
	}
	mbufmux_cancel(&c.w);
	if (held)
		mbufmux_buf_free(pool, held);
	CHECK_EQ(atomic_read(&c.calls), 1);
	CHECK_EQ(stats_now(pool)->in_use, 0);
	CHECK_EQ(stats_now(pool)->waiters, 0);
	CHECK_EQ(stats_now(pool)->waits, 4);
	CHECK_EQ(stats_now(pool)->handoffs, 3);
	CHECK_EQ(stats_now(pool)->cancels, 1);
	CHECK_EQ(stats_now(pool)->allocs, stats_now(pool)->frees);
	mbufmux_pool_destroy(pool);
}

static void test_raise_limit(void)
{
	struct mbufmux_pool *pool = new_pool("t_raise", 2, 0, 0);
	static struct tw t[3];
	struct mbufmux_pool_stats st;
	void *b[2];
	int i;

	if (!pool)
		return;
	b[0] = mbufmux_buf_alloc(pool, 0);
	b[1] = mbufmux_buf_alloc(pool, 0);
	for (i = 0; i < 3; i++) {
		tw_init(&t[i], pool);
		CHECK(!mbufmux_get(&t[i].w, MBUFMUX_MARGIN_RESERVE));
	}
	/* Room for two of the three: the first two in line get it. */
	CHECK_EQ(mbufmux_pool_set_limits(pool, 4, 0), 0);
	for (i = 0; i < 2; i++)
		CHECK(wait_for_completion_timeout(&t[i].handed, HANG_TIMEOUT));
	CHECK(mbufmux_waiter_queued(&t[2].w));
	/* Lowering the reserve makes room too. */
	CHECK_EQ(mbufmux_pool_set_limits(pool, 5, 1), 0);
	CHECK(mbufmux_waiter_queued(&t[2].w));
	CHECK_EQ(mbufmux_pool_set_limits(pool, 5, 0), 0);
	CHECK(wait_for_completion_timeout(&t[2].handed, HANG_TIMEOUT));
	st = stats(pool);
	CHECK_EQ(st.in_use, 5);
	CHECK_EQ(st.handoffs, 3);
	for (i = 0; i < 3; i++) {
		CHECK(mbufmux_get(&t[i].w, 0));
		mbufmux_cancel(&t[i].w);
	}
	mbufmux_buf_free(pool, b[0]);
	mbufmux_buf_free(pool, b[1]);
	CHECK_EQ(stats(pool).in_use, 0);
	mbufmux_pool_destroy(pool);
}

/*
 * The wait histogram: each handoff counts in the bucket of its wait, the
 * one wait_ns_max holds when there was one handoff. Bucket 0 counts waits
 * under 1 us, bucket k > 0 those in [2^(k-1), 2^k) us, the last one all
 * longer. The wait is at least the 3 ms slept, so the bucket is at least
 * that of 2048 us: a lower bound, whatever the machine's speed.
 */
static void test_wait_hist(void)
{
	struct mbufmux_pool *pool = new_pool("t_wait_hist", 1, 0, 0);
	static struct mbufmux_pool_stats st;
	unsigned int i, k = 0, n = 0;
	static struct tw t;
	u64 us, sum = 0;
	void *held;

	if (!pool)
		return;
	held = mbufmux_buf_alloc(pool, 0);
	if (!CHECK(held))
		goto out;
	tw_init(&t, pool);
	CHECK(!mbufmux_get(&t.w, 0));
	usleep_range(3000, 4000);
	mbufmux_buf_free(pool, held);
	if (!CHECK(wait_for_completion_timeout(&t.handed, HANG_TIMEOUT)))
		goto out;
	mbufmux_pool_get_stats(pool, &st);
	for (i = 0; i < MBUFMUX_WAIT_HIST_BUCKETS; i++) {
		sum += st.wait_hist[i];
		if (st.wait_hist[i]) {
			k = i;
			n++;
		}
	}
	CHECK_EQ(st.handoffs, 1);
	CHECK_EQ(sum, st.handoffs);
	CHECK_EQ(n, 1);
	us = div_u64(st.wait_ns_max, NSEC_PER_USEC);
	pr_info("    # waited %llu us: bucket %u\n", us, k);
	CHECK(us >= 3000);
	CHECK(k >= 12);
	CHECK(k > 0 && us >= 1ULL << (k - 1));
	CHECK(k == MBUFMUX_WAIT_HIST_BUCKETS - 1 || us < 1ULL << k);
out:
	mbufmux_cancel(&t.w);
	CHECK_EQ(stats_now(pool)->in_use, 0);
	mbufmux_pool_destroy(pool);
}

/*
 * A zeroing pool's handoff: a page-sized buffer, written all over, comes
 * back to waiters from contexts without a memory cgroup. The waiter gets
 * that very buffer, zeroed before it is handed on: nothing beyond the
 * limit, no other buffer in its place. The raw free alike. (The stats
 * live in static storage: with KASAN, a copy per check would overflow the
 * frame.)
 */
static void test_handoff_zero(void)
{
	struct mbufmux_pool *pool = new_sized_pool("t_handoff_zero", PAGE_SIZE,
						   2, 1, 0);
	static struct mbufmux_pool_stats st;
	static struct tw t[2];
	void *other, *held, *got;
	int i;

	if (!pool)
		return;
	/* The room under the reserve is taken for the whole test. */
	other = mbufmux_buf_alloc(pool, MBUFMUX_MARGIN_RESERVE);
	CHECK(other);
	tw_init(&t[0], pool);
	tw_init(&t[1], pool);
	held = mbufmux_get(&t[0].w, 0);
	if (!CHECK(held))
		goto out;
	for (i = 0; i < 20; i++) {
		struct tw *h = &t[i % 2], *n = &t[(i + 1) % 2];

		memset(held, 0xa5, PAGE_SIZE);
		got = hand_over(h, n);
		if (!CHECK(got))
			break;
		CHECK(got == held);
		CHECK(all_zero(got, PAGE_SIZE));
		mbufmux_pool_get_stats(pool, &st);
		CHECK_EQ(st.handoffs, i + 1);
		CHECK_EQ(st.in_use, 2);
		CHECK_EQ(st.recharges, 0);
		held = got;
	}
	if (i < 20)
		goto out;

	/* mbufmux_buf_free() of a written buffer: zeroed for the waiter. */
	mbufmux_put(&t[0].w);
	mbufmux_put(&t[1].w);
	held = mbufmux_buf_alloc(pool, 0);
	if (!CHECK(held))
		goto out;
	memset(held, 0x5a, PAGE_SIZE);
	reinit_completion(&t[0].handed);
	CHECK(!mbufmux_get(&t[0].w, 0));
	mbufmux_buf_free(pool, held);
	if (!CHECK(wait_for_completion_timeout(&t[0].handed, HANG_TIMEOUT)))
		goto out;
	got = mbufmux_get(&t[0].w, 0);
	CHECK(got == held);
	if (got)
		CHECK(all_zero(got, PAGE_SIZE));
	mbufmux_put(&t[0].w);

	/*
	 * A waiter that may not have the slot (it leaves the reserve, which
	 * is all there is) is not handed the returning buffer: it goes back
	 * to the memory, and the waiter stays queued.
	 */
	held = mbufmux_buf_alloc(pool, 0);
	CHECK(held);
	CHECK(!mbufmux_get(&t[0].w, MBUFMUX_MARGIN_RESERVE));
	mbufmux_buf_free(pool, held);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.handoffs, 21);
	CHECK_EQ(st.in_use, 1);
	CHECK(mbufmux_waiter_queued(&t[0].w));
	mbufmux_cancel(&t[0].w);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.waits, st.handoffs + 1);
	CHECK_EQ(st.cancels, 1);
out:
	mbufmux_cancel(&t[0].w);
	mbufmux_cancel(&t[1].w);
	if (other)
		mbufmux_buf_free(pool, other);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.allocs, st.frees);
	mbufmux_pool_destroy(pool);
}

/*
 * A zeroing pool's handoffs across memory cgroups. A waiter with a cgroup,
 * served by a buffer given back without one, gets a fresh, zeroed buffer
 * in its cgroup (a recharge). A buffer given back by a waiter with a
 * cgroup is zeroed and handed on itself: its charge goes on with it.
 */
static void test_handoff_zero_memcg(void)
{
	struct mbufmux_pool *pool = new_sized_pool("t_handoff_zero_cg",
						   PAGE_SIZE, 1, 0, 0);
	static struct mbufmux_pool_stats st;
	struct mem_cgroup *memcg;
	static struct tw a, b;
	void *held, *got;

	if (!pool)
		return;
	/* Both kernels have memory cgroups; the root one is enough here. */
	memcg = get_mem_cgroup_from_mm(current->mm);
	if (!CHECK(memcg))
		goto out_pool;
	tw_init(&a, pool);
	tw_init(&b, pool);

	/* b (no cgroup) gives back to a (a cgroup): recharged. */
	held = mbufmux_get(&b.w, 0);
	if (!CHECK(held))
		goto out;
	memset(held, 0xa5, PAGE_SIZE);
	a.w.memcg = memcg;
	got = hand_over(&b, &a);
	if (!CHECK(got))
		goto out;
	CHECK(all_zero(got, PAGE_SIZE));
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recharges, 1);
	CHECK_EQ(st.handoffs, 1);

	/* a (a cgroup) gives back to b (none): the same buffer, zeroed. */
	memset(got, 0xa5, PAGE_SIZE);
	held = hand_over(&a, &b);
	if (!CHECK(held))
		goto out;
	CHECK(held == got);
	CHECK(all_zero(held, PAGE_SIZE));
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recharges, 1);
	CHECK_EQ(st.handoffs, 2);
	CHECK_EQ(st.in_use, 1);
out:
	mbufmux_cancel(&a.w);
	mbufmux_cancel(&b.w);
	a.w.memcg = NULL;
	mem_cgroup_put(memcg);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.in_use, 0);
out_pool:
	mbufmux_pool_destroy(pool);
}

/*
 * Destroyed with a buffer out, the owner's bug: reported and leaked, not
 * freed, so that the late free finds the pool (KASAN, in check-debug,
 * would report a use after free) and is counted. test_mbufmux.sh checks
 * that it is listed as leaked with nothing in use, without its debugfs
 * directory; unload.sh, that unloading mbufmux.ko frees it.
 */
static void test_destroy_busy(void)
{
	struct mbufmux_pool *pool;
	char name[MBUFMUX_NAME_MAX];
	void *buf;

	snprintf(name, sizeof(name), "t_busy_%s", leak_tag);
	pool = new_pool(name, 2, 0, 1);
	if (!pool)
		return;
	buf = mbufmux_buf_alloc(pool, 0);
	CHECK(buf);
	mbufmux_pool_destroy(pool);
	/* Past the bug, as its owner would go on: the pool still works. */
	CHECK_EQ(stats_now(pool)->in_use, 1);
	if (buf) {
		memset(buf, 1, BUF_SIZE);
		mbufmux_buf_free(pool, buf);
	}
	CHECK_EQ(stats_now(pool)->in_use, 0);
	CHECK_EQ(stats_now(pool)->frees, 1);
}

/* Stress: contexts on both CPUs take, wait, cancel, resize at random. */

#define NR_STRESS 6

struct stress_ctx {
	struct tw t;
	struct mbufmux_pool *pool;
	struct task_struct *task;
	struct completion done;
	unsigned int ops;
	unsigned int at;	/* the op the thread is at */
	unsigned int last;	/* offset of the buffer's last word */
	unsigned int flags;	/* the pool's */
	u32 mark;		/* this thread's, in a buffer it holds */
	int held_max;		/* most buffers held at once, seen here */
	unsigned long waits, handed, cancelled, raw, hung, dirty, shared;
	unsigned long slept;
};

/*
 * Waits for stress thread @i to end. On a debug kernel in a VM beside
 * others the threads' ops can take minutes: waiting in slices leaves the
 * hung-task detector to threads stuck in one op, and the log says how far
 * the thread has come. A thread waiting by callback gives up on its own
 * after HANG_TIMEOUT; one asleep in mbufmux_get_killable() as long is
 * sent a fatal signal, and counts the op as hung.
 */
static void stress_join(struct stress_ctx *c, int i)
{
	unsigned int at = UINT_MAX, slices = 0;

	while (!wait_for_completion_timeout(&c->done, HANG_TIMEOUT / 2)) {
		pr_info("    # stress thread %d at op %u of %u\n", i,
			READ_ONCE(c->at), c->ops);
		slices = READ_ONCE(c->at) == at ? slices + 1 : 0;
		at = READ_ONCE(c->at);
		if (slices == 2)
			send_sig(SIGKILL, c->task, 1);
	}
	put_task_struct(c->task);
}

/* Buffers held by the stress threads now, counted by them. */
static atomic_t stress_held;

#define STRESS_MARK	0x6d780000	/* | thread: in a buffer held */
#define STRESS_FREE	0x6d78ffff	/* in a buffer given back */

/*
 * A buffer the thread got (held counts it). A pool that zeroes gives it
 * zeroed; one that does not may give it with anybody's bytes, but never
 * while another holds it (its mark would be there).
 */
static void stress_got(struct stress_ctx *c, void *buf)
{
	u32 *last = buf + c->last;

	c->held_max = max(c->held_max, atomic_inc_return(&stress_held));
	if (c->flags & MBUFMUX_POOL_NO_ZERO) {
		if ((*last & 0xffff0000) == STRESS_MARK && *last != STRESS_FREE)
			c->shared++;
		*last = c->mark;
	}
}

static void stress_put(struct stress_ctx *c, void *buf)
{
	u32 *last = buf + c->last;

	if (c->flags & MBUFMUX_POOL_NO_ZERO) {
		if (*last != c->mark)
			c->shared++;
		*last = STRESS_FREE;
	}
	atomic_dec(&stress_held);
}

/* Use the buffer the thread's waiter holds, and give it back. */
static void stress_use(struct stress_ctx *c, void *buf, u32 r)
{
	bool zeroes = !(c->flags & MBUFMUX_POOL_NO_ZERO);

	/* Zeroed, and nobody else's: else a stale value. */
	if (zeroes && (*(u32 *)buf || *(u32 *)(buf + c->last)))
		c->dirty++;
	stress_got(c, buf);
	*(u32 *)buf = r | 1;
	if (zeroes)
		*(u32 *)(buf + c->last) = r | 1;
	if (r & 0x10000)
		cond_resched();
	stress_put(c, buf);
	mbufmux_put(&c->t.w);
}

static int stress_thread(void *arg)
{
	struct stress_ctx *c = arg;
	bool zeroes = !(c->flags & MBUFMUX_POOL_NO_ZERO);
	unsigned int i;
	u64 waits;
	void *buf;

	allow_signal(SIGKILL);	/* from stress_join(), for a lost wake-up */
	for (i = 0; i < c->ops; i++) {
		u32 r = get_random_u32();

		WRITE_ONCE(c->at, i);
		switch (r % 8) {
		case 0:
			buf = mbufmux_buf_alloc(c->pool, r & 8 ? 0 :
						MBUFMUX_MARGIN_RESERVE);
			if (buf) {
				c->raw++;
				stress_got(c, buf);
				stress_put(c, buf);
				mbufmux_buf_free(c->pool, buf);
			}
			break;
		case 1:
			/* A fixed limit is exact: held never exceeds it. */
			if (!zeroes)
				mbufmux_pool_set_limits(c->pool, 3, 1);
			else if (!(r & 0xf0))
				mbufmux_pool_set_limits(c->pool,
							1 + (r >> 8) % 6,
							(r >> 16) % 2 &&
							(r >> 8) % 6 ? 1 : 0);
			break;
		case 2:
			/* Sleeping in the queue; no signal comes, so a buffer. */
			waits = c->t.w.waits;
			buf = mbufmux_get_killable(&c->t.w, r & 8 ? 0 :
						   MBUFMUX_MARGIN_RESERVE);
			if (c->t.w.waits != waits) {
				c->waits++;
				c->handed++;
				c->slept++;
			}
			if (!buf) {
				c->hung++;
				break;
			}
			stress_use(c, buf, r);
			break;
		default:
			reinit_completion(&c->t.handed);
			buf = mbufmux_get(&c->t.w, r & 8 ? 0 :
					  MBUFMUX_MARGIN_RESERVE);
			if (!buf) {
				c->waits++;
				if (!(r & 0x700)) {
					mbufmux_cancel(&c->t.w);
					c->cancelled++;
					break;
				}
				if (!wait_for_completion_timeout(&c->t.handed,
								 HANG_TIMEOUT)) {
					c->hung++;
					mbufmux_cancel(&c->t.w);
					break;
				}
				c->handed++;
				buf = mbufmux_get(&c->t.w, 0);
				if (!buf) {
					c->hung++;
					break;
				}
			}
			stress_use(c, buf, r);
			break;
		}
	}
	mbufmux_cancel(&c->t.w);
	kthread_complete_and_exit(&c->done, 0);
}

/*
 * The fast path alone, racing on every CPU: threads that take buffers
 * with mbufmux_buf_alloc() and give them back, never waiting, so that
 * allocations (from the slab or recycled) and frees (kept or not) meet
 * on both CPUs with room under the limit. Two threads per CPU, each
 * holding its buffer across a reschedule now and then.
 */
#define NR_RACE_PER_CPU	2

static int race_thread(void *arg)
{
	struct stress_ctx *c = arg;
	unsigned int i;
	void *buf;

	for (i = 0; i < c->ops; i++) {
		WRITE_ONCE(c->at, i);
		buf = mbufmux_buf_alloc(c->pool, 0);
		if (!buf) {
			cond_resched();
			continue;
		}
		c->raw++;
		stress_got(c, buf);
		if (i & 1)
			cond_resched();
		stress_put(c, buf);
		mbufmux_buf_free(c->pool, buf);
	}
	kthread_complete_and_exit(&c->done, 0);
}

/* Returns the most buffers the threads held at once. */
static int race_fastpath(struct mbufmux_pool *pool, unsigned int size,
			 unsigned int flags)
{
	unsigned int cpus = num_online_cpus(), nr = NR_RACE_PER_CPU * cpus;
	unsigned long raw = 0, shared = 0;
	struct stress_ctx *c;
	int i, n, held_max = 0;

	c = kcalloc(nr, sizeof(*c), GFP_KERNEL);
	if (!CHECK(c))
		return 0;
	atomic_set(&stress_held, 0);
	for (i = 0; i < nr; i++) {
		init_completion(&c[i].done);
		c[i].pool = pool;
		c[i].ops = DIV_ROUND_UP(stress_ops, nr);
		c[i].last = size - sizeof(u32);
		c[i].flags = flags;
		c[i].mark = STRESS_MARK | (0x100 + i);
		c[i].task = kthread_create(race_thread, &c[i], "t_mbufmux_r%d",
					   i);
		if (IS_ERR(c[i].task)) {
			CHECK(0);
			break;
		}
		get_task_struct(c[i].task);
		kthread_bind(c[i].task, i % cpus);
		wake_up_process(c[i].task);
	}
	n = i;
	for (i = 0; i < n; i++) {
		stress_join(&c[i], i);
		raw += c[i].raw;
		shared += c[i].shared;
		held_max = max(held_max, c[i].held_max);
	}
	pr_info("    # fast path race: %d threads, %lu buffers taken, held at most %d at once\n",
		n, raw, held_max);
	CHECK(raw > 0);
	CHECK_EQ(shared, 0);
	kfree(c);
	return held_max;
}

/*
 * @size: a small buffer, or a page. With @flags
 * MBUFMUX_POOL_NO_ZERO, the pool zeroes nothing and recycles: the limit
 * stays at 3 (set again and again, for its side effects), and the threads
 * check that they never hold more buffers than that at once, nor one
 * buffer two at once.
 *
 * The threads start with every buffer out, held here until one of them
 * waits: so the wait path is taken whatever the scheduler does. (With the
 * limit fixed at 3, waiting needs four takers at once; on a loaded host a
 * VM's threads ran one after the other, and none ever waited.)
 */
static void stress(const char *name, unsigned int size, unsigned int flags)
{
	struct mbufmux_pool_params p = {
		.name = name, .buf_size = size, .limit = 3, .reserve = 1,
		.prealloc = 1, .flags = flags,
	};
	unsigned long waits = 0, handed = 0, cancelled = 0, hung = 0, dirty = 0;
	unsigned long shared = 0, slept = 0;
	void *out[3] = {};	/* p.limit */
	struct mbufmux_pool *pool;
	struct mbufmux_pool_stats st;
	struct stress_ctx *c;
	int i, n, held_max = 0;

	pool = mbufmux_pool_create(&p);
	if (!CHECK(!IS_ERR(pool)))
		return;
	atomic_set(&stress_held, 0);
	c = kcalloc(NR_STRESS, sizeof(*c), GFP_KERNEL);
	if (!CHECK(c))
		goto out_pool;
	for (i = 0; i < ARRAY_SIZE(out); i++) {
		out[i] = mbufmux_buf_alloc(pool, 0);	/* the reserve too */
		CHECK(out[i]);
	}
	for (i = 0; i < NR_STRESS; i++) {
		tw_init(&c[i].t, pool);
		init_completion(&c[i].done);
		c[i].pool = pool;
		c[i].ops = DIV_ROUND_UP(stress_ops, NR_STRESS);
		c[i].last = size - sizeof(u32);
		c[i].flags = flags;
		c[i].mark = STRESS_MARK | i;
		c[i].task = kthread_create(stress_thread, &c[i],
					   "t_mbufmux_s%d", i);
		if (IS_ERR(c[i].task)) {
			CHECK(0);
			break;
		}
		get_task_struct(c[i].task);
		kthread_bind(c[i].task, i % num_online_cpus());
		wake_up_process(c[i].task);
	}
	n = i;
	for (i = 0; n && !mbufmux_pool_waiting(pool) && i < 10000; i++)
		usleep_range(100, 200);
	CHECK(!n || mbufmux_pool_waiting(pool));
	for (i = 0; i < ARRAY_SIZE(out); i++)
		if (out[i])
			mbufmux_buf_free(pool, out[i]);
	for (i = 0; i < n; i++) {
		stress_join(&c[i], i);
		waits += c[i].waits;
		handed += c[i].handed;
		cancelled += c[i].cancelled;
		hung += c[i].hung;
		dirty += c[i].dirty;
		shared += c[i].shared;
		slept += c[i].slept;
		held_max = max(held_max, c[i].held_max);
	}
	/* Quiesce: the last frees may still be serving. */
	CHECK_EQ(mbufmux_pool_set_limits(pool, 3, 1), 0);
	st = stats(pool);
	pr_info("    # %u B, %d threads, %u ops: waits %lu (slept %lu) handed %lu cancelled %lu; pool allocs %llu handoffs %llu cancels %llu peak %llu nomem %llu\n",
		size, n, n * DIV_ROUND_UP(stress_ops, NR_STRESS), waits,
		slept, handed, cancelled, st.allocs, st.handoffs, st.cancels,
		st.peak, st.alloc_nomem);
	if (flags)
		pr_info("    # recycled %llu kept %llu, held at most %d at once\n",
			st.recycled, st.kept, held_max);
	CHECK_EQ(hung, 0);
	CHECK_EQ(dirty, 0);
	CHECK_EQ(shared, 0);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.waiters, 0);
	CHECK_EQ(st.allocs, st.frees);
	CHECK(st.peak <= 6);
	/* Every wait ended in a handoff or a cancel: none was lost. */
	CHECK_EQ(st.waits, waits);
	CHECK(handed <= st.handoffs);
	CHECK_EQ(st.waits, st.handoffs + st.cancels);
	CHECK(waits > 0);
	CHECK(slept > 0);
	if (flags) {
		/* The limit was exact, and nothing was zeroed or kept past it. */
		CHECK(held_max <= 3);
		/* And with the fast path racing alone. */
		CHECK(race_fastpath(pool, size, flags) <= 3);
		st = stats(pool);
		CHECK_EQ(st.in_use, 0);
		CHECK_EQ(st.allocs, st.frees);
		CHECK(st.peak <= 3);
		CHECK(st.kept <= st.limit);
		CHECK(st.recycled > 0);
		CHECK(st.recycled <= st.allocs);
	}
	kfree(c);
out_pool:
	mbufmux_pool_destroy(pool);
}

static void test_stress(void)
{
	stress("t_stress", BUF_SIZE, 0);
}

static void test_stress_page(void)
{
	stress("t_stress_page", PAGE_SIZE, 0);
}

static void test_stress_recycle(void)
{
	stress("t_stress_recycle", PAGE_SIZE, MBUFMUX_POOL_NO_ZERO);
}

/*
 * Recycling (MBUFMUX_POOL_NO_ZERO). Kept buffers sit in per-CPU slots, so
 * these tests run their steps in a kthread bound to one CPU.
 */

struct on_cpu {
	void (*fn)(void *arg);
	void *arg;
	struct completion done;
};

static int on_cpu_thread(void *data)
{
	struct on_cpu *oc = data;

	oc->fn(oc->arg);
	kthread_complete_and_exit(&oc->done, 0);
}

static void run_on_cpu(unsigned int cpu, void (*fn)(void *arg), void *arg)
{
	struct on_cpu oc = { .fn = fn, .arg = arg };
	struct task_struct *task;

	init_completion(&oc.done);
	task = kthread_create(on_cpu_thread, &oc, "t_mbufmux_on%u", cpu);
	if (!CHECK(!IS_ERR(task)))
		return;
	kthread_bind(task, cpu);
	wake_up_process(task);
	wait_for_completion(&oc.done);
}

/* What a recycled buffer holds: the pool's mark cleared, the rest as left. */
static bool as_left(const u8 *buf, size_t len, int c)
{
	return all_zero(buf, sizeof(void *)) &&
	       !memchr_inv(buf + sizeof(void *), c, len - sizeof(void *));
}

/* Unknown flags are refused; a pool without the flag keeps nothing. */
static void test_flags(void)
{
	static const struct mbufmux_pool_params bad = {
		.name = "t_flags", .buf_size = BUF_SIZE, .limit = 1,
		.flags = 1U << 31,
	};
	static struct mbufmux_pool_stats st;
	struct mbufmux_pool *pool;
	void *buf;
	int i;

	pool = mbufmux_pool_create(&bad);
	CHECK_EQ(PTR_ERR_OR_ZERO(pool), -EINVAL);
	if (!IS_ERR(pool))
		mbufmux_pool_destroy(pool);

	pool = new_pool("t_flags", 4, 0, 0);
	if (!pool)
		return;
	for (i = 0; i < 10; i++) {
		buf = mbufmux_buf_alloc(pool, 0);
		if (!CHECK(buf))
			break;
		CHECK(all_zero(buf, BUF_SIZE));
		memset(buf, 0xa5, BUF_SIZE);
		mbufmux_buf_free(pool, buf);
	}
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.kept, 0);
	CHECK_EQ(st.recycled, 0);
	CHECK_EQ(mbufmux_pool_shrink(pool, 100), 0);
	CHECK_EQ(stats_now(pool)->shrunk, 0);
	mbufmux_pool_destroy(pool);
}

/*
 * A buffer that comes back is kept and serves the next allocation without
 * the slab allocator: it comes back as its last owner left it (init_on_alloc
 * would have zeroed it, slub_debug poisoned it), only the pool's mark
 * cleared.
 */
static void recycle_steps(void *arg)
{
	struct mbufmux_pool *pool = arg;
	static struct mbufmux_pool_stats st;
	static struct tw t;
	u8 *a, *b;
	int i;

	tw_init(&t, pool);
	a = mbufmux_get(&t.w, 0);
	if (!CHECK(a))
		return;
	memset(a, 0xa5, BUF_SIZE);
	mbufmux_put(&t.w);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.kept, 1);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.recycled, 0);

	b = mbufmux_get(&t.w, 0);
	if (!CHECK(b == a))
		goto out;
	CHECK(as_left(b, BUF_SIZE, 0xa5));
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recycled, 1);
	CHECK_EQ(st.kept, 0);
	CHECK_EQ(st.in_use, 1);
	CHECK_EQ(st.allocs, 2);
	memset(b, 0x5a, BUF_SIZE);
	mbufmux_put(&t.w);

	/* The raw calls alike; and every later round is served the same. */
	a = mbufmux_buf_alloc(pool, 0);
	CHECK(a == b);
	if (a) {
		CHECK(as_left(a, BUF_SIZE, 0x5a));
		mbufmux_buf_free(pool, a);
	}
	for (i = 0; i < 1000; i++) {
		if (!CHECK(mbufmux_get(&t.w, 0)))
			break;
		mbufmux_put(&t.w);
	}
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.allocs, 1003);
	CHECK_EQ(st.recycled, 1002);
	CHECK_EQ(st.frees, 1003);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.kept, 1);
out:
	mbufmux_cancel(&t.w);
}

static void test_recycle(void)
{
	struct mbufmux_pool *pool = new_flagged_pool("t_recycle", BUF_SIZE, 4,
						     MBUFMUX_POOL_NO_ZERO);

	if (!pool)
		return;
	run_on_cpu(0, recycle_steps, pool);
	mbufmux_pool_destroy(pool);
}

/*
 * A handoff does not zero either: the waiter gets the buffer that came
 * back, as it was left.
 */
static void test_handoff_no_zero(void)
{
	struct mbufmux_pool *pool = new_flagged_pool("t_nozero_handoff",
						     PAGE_SIZE, 1,
						     MBUFMUX_POOL_NO_ZERO);
	static struct mbufmux_pool_stats st;
	static struct tw a, b;
	u8 *held, *got;
	int i;

	if (!pool)
		return;
	tw_init(&a, pool);
	tw_init(&b, pool);
	held = mbufmux_get(&a.w, 0);
	if (!CHECK(held))
		goto out;
	for (i = 0; i < 4; i++) {
		struct tw *h = i % 2 ? &b : &a, *n = i % 2 ? &a : &b;

		memset(held, 0xa0 + i, PAGE_SIZE);
		got = hand_over(h, n);
		CHECK(got == held);
		if (!got)
			break;
		CHECK(!memchr_inv(got, 0xa0 + i, PAGE_SIZE));
		held = got;
	}
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.handoffs, 4);
	CHECK_EQ(st.in_use, 1);
out:
	mbufmux_cancel(&a.w);
	mbufmux_cancel(&b.w);
	CHECK_EQ(stats_now(pool)->in_use, 0);
	mbufmux_pool_destroy(pool);
}

struct recycle_memcg {
	struct mbufmux_pool *pool;
	struct mem_cgroup *memcg;
};

/*
 * A kept buffer serves only allocations for the cgroup that gave it back
 * (NULL is a class of its own): a waiter of cgroup M, one of none and
 * the raw calls (none). The root cgroup will do: only the class counts.
 */
static void recycle_memcg_steps(void *arg)
{
	struct recycle_memcg *rm = arg;
	struct mbufmux_pool *pool = rm->pool;
	static struct mbufmux_pool_stats st;
	static struct tw m, none;
	void *x, *y, *z;

	tw_init(&m, pool);
	tw_init(&none, pool);
	m.w.memcg = rm->memcg;

	x = mbufmux_get(&m.w, 0);
	if (!CHECK(x))
		goto out;
	memset(x, 0xa5, BUF_SIZE);
	mbufmux_put(&m.w);
	CHECK_EQ(stats_now(pool)->kept, 1);
	/* Not for the other class: fresh from the slab, x stays kept. */
	y = mbufmux_get(&none.w, 0);
	CHECK(y && y != x);
	z = mbufmux_buf_alloc(pool, 0);
	CHECK(z && z != x);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recycled, 0);
	CHECK_EQ(st.kept, 1);
	if (z)
		mbufmux_buf_free(pool, z);
	mbufmux_put(&none.w);
	CHECK_EQ(stats_now(pool)->kept, 3);
	/* For its own class. */
	CHECK(mbufmux_get(&m.w, 0) == x);
	CHECK(as_left(x, BUF_SIZE, 0xa5));
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recycled, 1);
	CHECK_EQ(st.kept, 2);
	/* And the other class gets one of its own two back. */
	y = mbufmux_get(&none.w, 0);
	CHECK(y && y != x);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recycled, 2);
	CHECK_EQ(st.kept, 1);
	mbufmux_put(&none.w);
	mbufmux_put(&m.w);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.kept, 3);
	CHECK_EQ(st.in_use, 0);
	CHECK_EQ(st.allocs, st.frees);
out:
	mbufmux_cancel(&m.w);
	mbufmux_cancel(&none.w);
}

/*
 * The same with the pool full: a buffer that none gives back to a waiter
 * of M is recharged, and M's fresh buffer is its kept one; the returning
 * one is kept in its place. At the limit (1), a buffer that comes back
 * replaces the kept one.
 */
static void recycle_recharge_steps(void *arg)
{
	struct recycle_memcg *rm = arg;
	struct mbufmux_pool *pool = rm->pool;
	static struct mbufmux_pool_stats st;
	static struct tw m, none;
	void *x, *y;

	tw_init(&m, pool);
	tw_init(&none, pool);
	m.w.memcg = rm->memcg;

	x = mbufmux_get(&m.w, 0);
	if (!CHECK(x))
		goto out;
	mbufmux_put(&m.w);
	y = mbufmux_get(&none.w, 0);
	if (!CHECK(y && y != x))
		goto out;
	CHECK(!mbufmux_get(&m.w, 0));
	mbufmux_put(&none.w);
	if (!CHECK(wait_for_completion_timeout(&m.handed, HANG_TIMEOUT)))
		goto out;
	CHECK(mbufmux_get(&m.w, 0) == x);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recharges, 1);
	CHECK_EQ(st.recycled, 1);
	CHECK_EQ(st.kept, 1);
	CHECK_EQ(st.in_use, 1);
	/* y is kept (none's); x comes back at the limit: replaces it. */
	mbufmux_put(&m.w);
	CHECK_EQ(stats_now(pool)->kept, 1);
	y = mbufmux_get(&none.w, 0);
	CHECK(y && y != x);
	CHECK_EQ(stats_now(pool)->recycled, 1);
	mbufmux_put(&none.w);
	/* y kept, none's: M's next buffer comes from the slab. */
	CHECK(mbufmux_get(&m.w, 0));
	CHECK_EQ(stats_now(pool)->recycled, 1);
out:
	mbufmux_cancel(&m.w);
	mbufmux_cancel(&none.w);
	CHECK_EQ(stats_now(pool)->in_use, 0);
}

/*
 * Run @steps on CPU 0 with a fresh recycling (no-zero) pool of @limit
 * buffers and the memory cgroup of the caller, as struct recycle_memcg.
 */
static void run_recycle_memcg(const char *name, unsigned int limit,
			      void (*steps)(void *arg))
{
	struct recycle_memcg rm = {};

	rm.memcg = get_mem_cgroup_from_mm(current->mm);
	if (!CHECK(rm.memcg))
		return;
	rm.pool = new_flagged_pool(name, BUF_SIZE, limit, MBUFMUX_POOL_NO_ZERO);
	if (rm.pool) {
		run_on_cpu(0, steps, &rm);
		mbufmux_pool_destroy(rm.pool);
	}
	mem_cgroup_put(rm.memcg);
}

static void test_recycle_memcg(void)
{
	run_recycle_memcg("t_recycle_cg", 4, recycle_memcg_steps);
	run_recycle_memcg("t_recycle_cg1", 1, recycle_recharge_steps);
}

/*
 * Never more kept than the limit: with 3 kept for none, 3 more out for M
 * (the kept ones are not theirs), M's coming back replace none's. A
 * lowered limit gives the excess back at once.
 */
static void keep_limit_steps(void *arg)
{
	struct recycle_memcg *rm = arg;
	struct mbufmux_pool *pool = rm->pool;
	static struct mbufmux_pool_stats st;
	static struct tw t[3];
	void *b[3];
	int i;

	for (i = 0; i < 3; i++) {
		b[i] = mbufmux_buf_alloc(pool, 0);
		CHECK(b[i]);
	}
	for (i = 0; i < 3; i++)
		if (b[i])
			mbufmux_buf_free(pool, b[i]);
	CHECK_EQ(stats_now(pool)->kept, 3);
	for (i = 0; i < 3; i++) {
		tw_init(&t[i], pool);
		t[i].w.memcg = rm->memcg;
		CHECK(mbufmux_get(&t[i].w, 0));
	}
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.in_use, 3);
	CHECK_EQ(st.kept, 3);
	CHECK_EQ(st.recycled, 0);
	for (i = 0; i < 3; i++) {
		mbufmux_put(&t[i].w);
		CHECK(stats_now(pool)->kept <= 3);
	}
	/* All three kept are M's now. */
	for (i = 0; i < 3; i++)
		CHECK(mbufmux_get(&t[i].w, 0));
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.recycled, 3);
	CHECK_EQ(st.kept, 0);
	for (i = 0; i < 3; i++)
		mbufmux_put(&t[i].w);
	CHECK_EQ(stats_now(pool)->kept, 3);

	CHECK_EQ(mbufmux_pool_set_limits(pool, 1, 0), 0);
	CHECK_EQ(stats_now(pool)->kept, 1);
	CHECK_EQ(mbufmux_pool_set_limits(pool, 3, 0), 0);
	for (i = 0; i < 3; i++)
		mbufmux_cancel(&t[i].w);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.in_use, 0);
	CHECK(st.kept <= 1);
	CHECK_EQ(st.shrunk, 0);
}

static void test_keep_limit(void)
{
	run_recycle_memcg("t_keep_limit", 3, keep_limit_steps);
}

/*
 * Kept buffers on both CPUs: the shrinker takes them from either. All are
 * taken first, so that neither CPU's frees can be served by the other's.
 */
struct keep_some {
	struct mbufmux_pool *pool;
	void *b[3];
};

static void keep_some(void *arg)
{
	struct keep_some *ks = arg;
	int i;

	for (i = 0; i < 3; i++)
		if (ks->b[i])
			mbufmux_buf_free(ks->pool, ks->b[i]);
}

static void test_shrink(void)
{
	struct mbufmux_pool *pool = new_flagged_pool("t_shrink", BUF_SIZE, 8,
						     MBUFMUX_POOL_NO_ZERO);
	unsigned int cpus = min(num_online_cpus(), 2U);
	static struct mbufmux_pool_stats st;
	struct keep_some ks[2] = {};
	unsigned int cpu;
	void *buf;
	int i;

	if (!pool)
		return;
	for (cpu = 0; cpu < cpus; cpu++) {
		ks[cpu].pool = pool;
		for (i = 0; i < 3; i++) {
			ks[cpu].b[i] = mbufmux_buf_alloc(pool, 0);
			CHECK(ks[cpu].b[i]);
		}
	}
	for (cpu = 0; cpu < cpus; cpu++)
		run_on_cpu(cpu, keep_some, &ks[cpu]);
	CHECK_EQ(stats_now(pool)->kept, 3 * cpus);
	CHECK_EQ(mbufmux_pool_shrink(pool, 2), 2);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.kept, 3 * cpus - 2);
	CHECK_EQ(st.shrunk, 2);
	CHECK_EQ(mbufmux_pool_shrink(pool, 100), 3 * cpus - 2);
	CHECK_EQ(mbufmux_pool_shrink(pool, 100), 0);
	mbufmux_pool_get_stats(pool, &st);
	CHECK_EQ(st.kept, 0);
	CHECK_EQ(st.shrunk, 3 * cpus);
	/* Nothing kept: the next allocation comes from the slab. */
	buf = mbufmux_buf_alloc(pool, 0);
	CHECK(buf);
	CHECK_EQ(stats_now(pool)->recycled, 0);
	if (buf)
		mbufmux_buf_free(pool, buf);
	mbufmux_pool_destroy(pool);
}

/*
 * A buffer kept on one CPU serves an allocation on another, as it must
 * for a socket whose buffers come back where its ACKs are processed, not
 * where it sends. One of another cgroup is passed over there too, and
 * stays kept where it was.
 */
struct cross_cpu {
	struct mbufmux_pool *pool;
	struct mem_cgroup *memcg;
	void *buf;
};

static void cross_cpu_keep(void *arg)
{
	struct cross_cpu *cc = arg;

	cc->buf = mbufmux_buf_alloc(cc->pool, 0);
	if (!CHECK(cc->buf))
		return;
	memset(cc->buf, 0xa5, BUF_SIZE);
	mbufmux_buf_free(cc->pool, cc->buf);
}

static void cross_cpu_take(void *arg)
{
	struct cross_cpu *cc = arg;
	static struct mbufmux_pool_stats st;
	static struct tw m;
	u8 *b;

	/* Not M's: M's buffer comes from the slab (and is kept here). */
	tw_init(&m, cc->pool);
	m.w.memcg = cc->memcg;
	b = mbufmux_get(&m.w, 0);
	CHECK(b && b != cc->buf);
	mbufmux_put(&m.w);
	mbufmux_pool_get_stats(cc->pool, &st);
	CHECK_EQ(st.recycled, 0);
	CHECK_EQ(st.kept, 2);

	/* For none, as the other CPU left it. */
	b = mbufmux_buf_alloc(cc->pool, 0);
	CHECK(b == cc->buf);
	if (b) {
		CHECK(as_left(b, BUF_SIZE, 0xa5));
		mbufmux_buf_free(cc->pool, b);
	}
	mbufmux_pool_get_stats(cc->pool, &st);
	CHECK_EQ(st.recycled, 1);
	CHECK_EQ(st.in_use, 0);
	mbufmux_cancel(&m.w);
}

static void test_recycle_cross_cpu(void)
{
	struct cross_cpu cc = {};

	/* The VM (scripts/vm.sh) has 2; on 1 CPU there is nothing to test. */
	if (!CHECK(num_online_cpus() >= 2)) {
		pr_err("recycle_cross_cpu: needs 2 CPUs online\n");
		return;
	}
	cc.memcg = get_mem_cgroup_from_mm(current->mm);
	if (!CHECK(cc.memcg))
		return;
	cc.pool = new_flagged_pool("t_cross_cpu", BUF_SIZE, 4,
				   MBUFMUX_POOL_NO_ZERO);
	if (cc.pool) {
		run_on_cpu(1, cross_cpu_keep, &cc);
		CHECK_EQ(stats_now(cc.pool)->kept, 1);
		run_on_cpu(0, cross_cpu_take, &cc);
		mbufmux_pool_destroy(cc.pool);
	}
	mem_cgroup_put(cc.memcg);
}

/*
 * A pool with kept buffers for test_mbufmux.sh, which drops the caches
 * (echo 2 > drop_caches runs every shrinker) and reads its stats; it is
 * destroyed at unload.
 */
#define DROP_KEPT	4
static struct mbufmux_pool *drop_pool;

static void test_shrinker_setup(void)
{
	void *b[DROP_KEPT];
	int i;

	drop_pool = new_flagged_pool("t_drop", BUF_SIZE, DROP_KEPT,
				     MBUFMUX_POOL_NO_ZERO);
	if (!drop_pool)
		return;
	for (i = 0; i < DROP_KEPT; i++)
		b[i] = mbufmux_buf_alloc(drop_pool, 0);
	for (i = 0; i < DROP_KEPT; i++)
		if (CHECK(b[i]))
			mbufmux_buf_free(drop_pool, b[i]);
	/* Freed on whichever CPU: at most the limit kept, most likely all. */
	CHECK(stats_now(drop_pool)->kept <= DROP_KEPT);
	CHECK(stats_now(drop_pool)->kept > 0);
}

/*
 * Destroyed with kept buffers: they go back to the slab before the cache
 * is destroyed. Destroyed with a buffer out too: leaked, it keeps working,
 * the late free included; mbufmux.ko frees it at unload, kept buffers
 * first. A buffer left behind would show in the kernel log ("Objects
 * remaining" on kmem_cache_destroy(), or kmemleak), which scripts/vm.sh
 * judges; test_mbufmux.sh checks that the second pool is listed as leaked,
 * unload.sh that no cache is left.
 */
static void test_destroy_kept(void)
{
	char name[MBUFMUX_NAME_MAX];
	struct mbufmux_pool *pool;
	void *b[3];
	int i;

	pool = new_flagged_pool("t_destroy_kept", BUF_SIZE, 4,
				MBUFMUX_POOL_NO_ZERO);
	if (pool) {
		for (i = 0; i < 3; i++)
			b[i] = mbufmux_buf_alloc(pool, 0);
		for (i = 0; i < 3; i++)
			if (CHECK(b[i]))
				mbufmux_buf_free(pool, b[i]);
		CHECK(stats_now(pool)->kept > 0);
		mbufmux_pool_destroy(pool);
	}

	snprintf(name, sizeof(name), "t_destroy_kept_busy_%s", leak_tag);
	pool = new_flagged_pool(name, BUF_SIZE, 4, MBUFMUX_POOL_NO_ZERO);
	if (!pool)
		return;
	b[0] = mbufmux_buf_alloc(pool, 0);
	b[1] = mbufmux_buf_alloc(pool, 0);
	if (CHECK(b[0]))
		mbufmux_buf_free(pool, b[0]);
	CHECK_EQ(stats_now(pool)->kept, 1);
	mbufmux_pool_destroy(pool);
	/* Leaked: it works on, and keeps this one too, for the unload. */
	if (CHECK(b[1]))
		mbufmux_buf_free(pool, b[1]);
	CHECK_EQ(stats_now(pool)->in_use, 0);
	CHECK_EQ(stats_now(pool)->kept, 2);
}

struct mbufmux_test {
	const char *name;
	void (*fn)(void);
};

static const struct mbufmux_test tests[] = {
	{ "fastpath", test_fastpath },
	{ "limit_margin_reserve", test_limit_margin_reserve },
	{ "reserve_behind_waiters", test_reserve_behind_waiters },
	{ "bad_params", test_bad_params },
	{ "prealloc_when_slab_fails", test_prealloc },
	{ "fifo_order", test_fifo },
	{ "cancel", test_cancel },
	{ "get_killable", test_get_killable },
	{ "raise_limit_wakes", test_raise_limit },
	{ "wait_hist", test_wait_hist },
	{ "handoff_zero", test_handoff_zero },
	{ "handoff_zero_memcg", test_handoff_zero_memcg },
	{ "destroy_with_buffers_out", test_destroy_busy },
	{ "stress", test_stress },
	{ "stress_page", test_stress_page },
	{ "flags", test_flags },
	{ "recycle", test_recycle },
	{ "handoff_no_zero", test_handoff_no_zero },
	{ "recycle_memcg", test_recycle_memcg },
	{ "keep_limit", test_keep_limit },
	{ "shrink", test_shrink },
	{ "recycle_cross_cpu", test_recycle_cross_cpu },
	{ "shrinker_setup", test_shrinker_setup },
	{ "destroy_kept", test_destroy_kept },
	{ "stress_recycle", test_stress_recycle },
};

static int __init test_mbufmux_init(void)
{
	unsigned int i, failed = 0;
	int before;

	if (hold_pool) {
		struct mbufmux_pool_params p = {
			.name = hold_pool, .buf_size = BUF_SIZE, .limit = 1,
		};

		held_pool = mbufmux_pool_create(&p);
		if (IS_ERR(held_pool))
			return PTR_ERR(held_pool);
		tests_failed = 0;
		return 0;
	}

	if (!leak_tag[0])
		snprintf(leak_tag, sizeof(leak_tag), "%08x", get_random_u32());
	pr_info("begin\n");
	pr_info("KTAP version 1\n");
	pr_info("1..%zu\n", ARRAY_SIZE(tests));
	for (i = 0; i < ARRAY_SIZE(tests); i++) {
		before = failed_asserts;
		tests[i].fn();
		if (failed_asserts != before)
			failed++;
		pr_info("%sok %u %s\n", failed_asserts != before ? "not " : "",
			i + 1, tests[i].name);
	}
	pr_info("end: %u of %zu failed\n", failed, ARRAY_SIZE(tests));
	tests_failed = failed;
	return 0;
}

static void __exit test_mbufmux_exit(void)
{
	mbufmux_pool_destroy(held_pool);
	mbufmux_pool_destroy(drop_pool);
}

module_init(test_mbufmux_init);
module_exit(test_mbufmux_exit);

MODULE_DESCRIPTION("In-kernel tests of the mbufmux pool API");
MODULE_LICENSE("GPL");
