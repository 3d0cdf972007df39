/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mbufmux - a bounded, shared pool of mux buffers with a fair wait list.
 *
 * A pool hands out fixed-size buffers up to a limit. A context (a socket,
 * a stream, anything that needs one buffer to make progress) embeds a
 * struct mbufmux_waiter and asks for its buffer with mbufmux_get(). If the
 * pool cannot serve it, the waiter is queued at the tail of a FIFO and the
 * caller stops its I/O; when a buffer comes back it is handed directly to
 * the head waiter and the waiter's ->available() callback runs from a
 * workqueue with the buffer already attached. A caller that may sleep can
 * instead wait in the queue, in mbufmux_get_killable(), and be woken by
 * the context that gives the buffer back.
 *
 * See Documentation/mbufmux.rst.
 */
#ifndef _MBUFMUX_H
#define _MBUFMUX_H

#include <linux/bits.h>
#include <linux/limits.h>
#include <linux/list.h>
#include <linux/sizes.h>
#include <linux/stddef.h>
#include <linux/types.h>
#include <linux/workqueue.h>

struct mbufmux_pool;
struct mbufmux_waiter;
struct mem_cgroup;
struct seq_file;

/* Longest pool name, terminating NUL included. */
#define MBUFMUX_NAME_MAX	32
/* Bounds of a pool's buffer size and limit. */
#define MBUFMUX_BUF_SIZE_MIN	64U
#define MBUFMUX_BUF_SIZE_MAX	SZ_1M
#define MBUFMUX_LIMIT_MAX	SZ_16M

/*
 * A margin that means "leave the pool's reserve to critical users": what
 * every non-critical caller passes. The reserve is read at the time the
 * allocation is attempted, so changing it at run time takes effect at once.
 */
#define MBUFMUX_MARGIN_RESERVE	UINT_MAX

/* Buckets of the log2 histogram of wait times (bucket 0: under 1 us). */
#define MBUFMUX_WAIT_HIST_BUCKETS	24

/**
 * define MBUFMUX_POOL_NO_ZERO - the consumer needs no zeroed buffers
 *
 * A pool creation flag (&struct mbufmux_pool_params.flags): the consumer
 * declares that it never exposes a byte of a buffer that it did not write
 * itself since it got the buffer (it sends, copies out or reads back only
 * what it wrote), so its buffers need no zeroing. The pool then zeroes
 * nothing: not on allocation (no __GFP_ZERO), not on a handoff, not when
 * it serves a preallocated buffer; and it recycles: a buffer that comes
 * back while nobody waits is kept (never more than the limit; given back
 * to the system under memory pressure) and served again to the same
 * memory cgroup without a round trip through the slab allocator (nor its
 * ``init_on_alloc`` zeroing). A buffer may then hold whatever its last
 * owner, or the kernel, left in it.
 */
#define MBUFMUX_POOL_NO_ZERO	BIT(0)
/* Every flag mbufmux_pool_create() knows. */
#define MBUFMUX_POOL_FLAGS	MBUFMUX_POOL_NO_ZERO

/**
 * struct mbufmux_pool_params - how to create a pool
 * @name: debugfs directory and slab cache suffix: lower-case letters,
 *	digits, ``_`` and ``-``; unique
 * @buf_size: size of each buffer in bytes
 * @limit: most buffers in use at once
 * @reserve: buffers only critical allocations (margin below the reserve)
 *	may take; must be below @limit
 * @prealloc: buffers allocated at creation and kept (no more than @limit),
 *	served when the slab allocator fails
 * @flags: %MBUFMUX_POOL_NO_ZERO or 0
 */
struct mbufmux_pool_params {
	const char *name;
	unsigned int buf_size;
	unsigned int limit;
	unsigned int reserve;
	unsigned int prealloc;
	unsigned int flags;
};

/**
 * struct mbufmux_waiter_ops - a consumer's callbacks for its waiters
 * @available: a buffer has been handed to the waiter; mbufmux_get() now
 *	returns it. Runs from the mbufmux workqueue, in process context, may
 *	sleep. Must not call mbufmux_cancel() on its own waiter. Not called
 *	for a wait in mbufmux_get_killable().
 * @show: optional, describes the waiter's owner on one line (no newline)
 *	for the debugfs ``waiters`` file. Runs under the pool's wait-list lock
 *	with bottom halves disabled: must not sleep.
 */
struct mbufmux_waiter_ops {
	void (*available)(struct mbufmux_waiter *w);
	void (*show)(struct seq_file *m, const struct mbufmux_waiter *w);
};

/**
 * struct mbufmux_waiter - a context that holds, or waits for, one buffer
 * @node: entry on the pool's wait list, under the pool's wait-list lock
 * @work: runs @ops->available after a handoff
 * @pool: the pool the buffer comes from
 * @ops: the consumer's callbacks
 * @memcg: memory cgroup charged for buffers allocated for this waiter, or
 *	NULL for the current task's; set by the consumer, which keeps it
 *	alive while the waiter is in use
 * @buf: the buffer this context holds, or NULL
 * @queued: on the wait list
 * @sleeps: the queued request sleeps in mbufmux_get_killable(): the
 *	handoff wakes it rather than queueing @work
 * @margin: the margin the queued request asked for
 * @queued_ns: when the waiter was queued (ktime_get_ns())
 * @waits: times this waiter was queued
 * @handoffs: buffers handed to this waiter
 * @wait_ns: total time spent queued until a handoff
 *
 * Embedded in the consumer's context and initialised with
 * mbufmux_waiter_init(). The consumer serialises its calls to mbufmux_get(),
 * mbufmux_put() and mbufmux_cancel() on one waiter; the pool updates the
 * fields under its wait-list lock while the waiter is queued. The counters
 * may be read at any time for statistics.
 *
 * A consumer whose contexts also wait elsewhere for the right to ask (as
 * mbufmux_tcp's per-user cap) may count those waits in @waits and
 * @wait_ns too, where the pool does not write them: @waits in its own
 * serialised calls (the pool counts in mbufmux_get()), @wait_ns while the
 * waiter is not queued, ordered before the mbufmux_get() that may queue it
 * (the pool counts while it is queued, at the handoff).
 */
struct mbufmux_waiter {
	struct list_head node;
	struct work_struct work;
	struct mbufmux_pool *pool;
	const struct mbufmux_waiter_ops *ops;
	struct mem_cgroup *memcg;
	void *buf;
	bool queued;
	bool sleeps;
	unsigned int margin;
	u64 queued_ns;
	u64 waits;
	u64 handoffs;
	u64 wait_ns;
};

/**
 * struct mbufmux_pool_stats - a snapshot of a pool's counters
 * @in_use: buffers out now
 * @peak: most buffers out at once
 * @limit: current limit
 * @reserve: current reserve
 * @prealloc: buffers preallocated at creation, kept for when the slab
 *	allocator fails (fixed at creation)
 * @buf_size: size of each buffer in bytes
 * @waiters: waiters queued now
 * @kept: buffers that came back and that the pool keeps now for the next
 *	allocations, not counted in @in_use; at most the limit, and 0 unless
 *	the pool has %MBUFMUX_POOL_NO_ZERO
 * @shrunk: kept buffers that the pool's shrinker gave back to the slab
 *	allocator under memory pressure
 * @pcpu: the counters the pool keeps per CPU (in a struct
 *	mbufmux_pool_pcpu_counts of each CPU), summed here
 * @allocs: buffers given out, handoffs included
 * @alloc_fail: allocations refused by the limit and margin
 * @alloc_nomem: allocations that found neither slab memory nor a
 *	preallocated buffer
 * @frees: buffers given back, those handed on included
 * @recycled: allocations (handoffs of fresh buffers included) served from
 *	the kept buffers, without the slab allocator; counted in @allocs too
 * @locked: the counters the pool keeps under its wait-list lock (in its
 *	struct mbufmux_pool_locked_counts), copied here
 * @waits: requests queued on the wait list
 * @handoffs: buffers handed to a waiter
 * @cancels: waiters cancelled while queued; at rest, every wait ended in
 *	a handoff or a cancel: @waits == @handoffs + @cancels
 * @recharges: handoffs to a waiter with its own memory cgroup that were
 *	given a fresh buffer charged to that cgroup, the returning one being
 *	freed (only the slot is handed on)
 * @recharge_fail: such handoffs where the fresh allocation failed: the
 *	returning buffer went on, still charged to its first cgroup
 * @waiters_peak: most waiters queued at once
 * @wait_ns_max: longest time a waiter was queued before its handoff
 * @wait_hist: log2 histogram of those times; bucket 0 counts waits under
 *	1 us, bucket k (k > 0) waits in [2^(k-1), 2^k) us, the last bucket
 *	everything longer
 *
 * Every field is a u64: the pool's debugfs ``stats`` file prints them all,
 * in an order of its own (see mbufmux.c). A counter the pool counts per
 * CPU, or under its wait-list lock, goes in the group of its kind, which
 * is where the pool counts it too.
 */
struct mbufmux_pool_stats {
	u64 in_use;
	u64 peak;
	u64 limit;
	u64 reserve;
	u64 prealloc;
	u64 buf_size;
	u64 waiters;
	u64 kept;
	u64 shrunk;

	struct_group_tagged(mbufmux_pool_pcpu_counts, pcpu, /* per CPU */
		u64 allocs;
		u64 alloc_fail;
		u64 alloc_nomem;
		u64 frees;
		u64 recycled;
	);

	struct_group_tagged(mbufmux_pool_locked_counts, locked, /* wait_lock */
		u64 waits;
		u64 handoffs;
		u64 cancels;
		u64 recharges;
		u64 recharge_fail;
		u64 waiters_peak;
		u64 wait_ns_max;
		u64 wait_hist[MBUFMUX_WAIT_HIST_BUCKETS];
	);
};

struct mbufmux_pool *mbufmux_pool_create(const struct mbufmux_pool_params *params);
void mbufmux_pool_destroy(struct mbufmux_pool *pool);
int mbufmux_pool_set_limits(struct mbufmux_pool *pool, unsigned int limit,
			    unsigned int reserve);
unsigned int mbufmux_pool_limit(const struct mbufmux_pool *pool);
unsigned int mbufmux_pool_reserve(const struct mbufmux_pool *pool);
unsigned int mbufmux_pool_buf_size(const struct mbufmux_pool *pool);
bool mbufmux_pool_waiting(const struct mbufmux_pool *pool);
void mbufmux_pool_get_stats(struct mbufmux_pool *pool,
			    struct mbufmux_pool_stats *stats);

void *mbufmux_buf_alloc(struct mbufmux_pool *pool, unsigned int margin);
void mbufmux_buf_free(struct mbufmux_pool *pool, void *buf);

void mbufmux_waiter_init(struct mbufmux_waiter *w, struct mbufmux_pool *pool,
			 const struct mbufmux_waiter_ops *ops);
void *mbufmux_get(struct mbufmux_waiter *w, unsigned int margin);
void *mbufmux_get_killable(struct mbufmux_waiter *w, unsigned int margin);
void mbufmux_put(struct mbufmux_waiter *w);
void mbufmux_cancel(struct mbufmux_waiter *w);
void mbufmux_waiter_flush(struct mbufmux_waiter *w);

/**
 * mbufmux_waiter_queued() - is the waiter on its pool's wait list?
 * @w: the waiter
 *
 * Context: any. A lockless snapshot: the answer may change at once when a
 * buffer is handed to the waiter.
 * Return: true if @w is queued waiting for a buffer.
 */
static inline bool mbufmux_waiter_queued(const struct mbufmux_waiter *w)
{
	/* Pairs with the release in the handoff: the buffer is visible */
	return smp_load_acquire(&w->queued);
}

/**
 * mbufmux_waiter_buf() - the buffer a waiter holds
 * @w: the waiter
 *
 * Context: any; the consumer's own serialisation makes the answer stable.
 * Return: the buffer @w holds, or NULL.
 */
static inline void *mbufmux_waiter_buf(const struct mbufmux_waiter *w)
{
	/* Pairs with the release in the handoff, see mbufmux_get() */
	if (smp_load_acquire(&w->queued))
		return NULL;
	return READ_ONCE(w->buf);
}

#ifdef MBUFMUX_TEST_HOOKS
/*
 * Test hooks of test_mbufmux, in mbufmux.ko only when it is built with the
 * tests (MBUFMUX_TESTS=1, see Kbuild); never in the installed module.
 */
/* Fail the pool's next @n slab allocations. */
void mbufmux_pool_inject_slab_failures(struct mbufmux_pool *pool,
				       unsigned int n);
/* Run the pool's shrinker for @nr buffers. */
unsigned long mbufmux_pool_shrink(struct mbufmux_pool *pool, unsigned long nr);
#endif

#endif /* _MBUFMUX_H */
