// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux - a bounded, shared pool of mux buffers with a fair wait list.
 *
 * After HAProxy's mux buffer allocator: a context that needs a buffer and
 * cannot get one is parked at the tail of a FIFO instead of failing; each
 * buffer that comes back is handed, under the wait-list lock, to the head
 * waiter, whose callback then runs from a workqueue with the buffer in hand;
 * or, if the waiter sleeps in mbufmux_get_killable(), the freer wakes it.
 * A pool that zeroes its buffers zeroes the returning one first, outside
 * the lock: see __mbufmux_buf_free().
 *
 * Recycling. A pool whose consumer never exposes bytes it did not write
 * (MBUFMUX_POOL_NO_ZERO) zeroes nothing, and keeps buffers that come back
 * while nobody waits in per-CPU slots, outside @in_use, for the next
 * allocations of the same memory cgroup: see mbufmux_keep().
 *
 * Accounting. @in_use counts the buffers out. Taking a buffer is a cmpxchg
 * loop that keeps the limit exact; the slab allocation follows. Nothing on
 * the fast path (nobody waiting, room under the limit) takes a lock.
 *
 * No lost wake-up. A context that fails to allocate queues itself under
 * @wait_lock, publishes @nr_waiters, issues a full barrier and tries again;
 * a context that frees a buffer decrements @in_use, issues a full barrier
 * and then reads @nr_waiters. One of the two sees the other: either the
 * new waiter finds the room, or the freer serves the wait list.
 *
 * Lifetime. The owner destroys its pool once every buffer is back and
 * every call into it has returned, as for a slab cache; the pool is then
 * freed at once. A buffer still out is the owner's bug: as
 * kmem_cache_destroy() does with objects still allocated, the pool reports
 * it and is leaked, not freed, so that a late free still finds it (see
 * mbufmux_pool_destroy(); the module's exit frees it if that buffer came
 * back). Nothing on the fast path pays for that bug: no bias in @in_use,
 * no RCU read section around the free.
 *
 * Fairness. Once anybody waits, mbufmux_get() callers queue behind them and
 * every freed buffer goes to the head waiter, so a waiter is served in the
 * order it arrived and a buffer wakes at most one waiter.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/ctype.h>
#include <linux/debugfs.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/sched/mm.h>
#include <linux/seq_file.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/wait_bit.h>
#include <linux/workqueue.h>

#include "mbufmux.h"
#include "mbufmux_compat.h"

#define CREATE_TRACE_POINTS
#include "mbufmux_trace.h"

/* How soon to retry serving waiters after the slab allocator failed. */
#define MBUFMUX_RETRY_DELAY	(HZ / 50)
/* Kept buffers per CPU (MBUFMUX_POOL_NO_ZERO): two cache lines of slots. */
#define MBUFMUX_KEEP_SLOTS	8
/* Other CPUs an allocation looks for kept buffers on: mbufmux_unkeep(). */
#define MBUFMUX_UNKEEP_CPUS	8

/*
 * A kept buffer's place. @memcg is the class of the buffer in @buf, so
 * that an allocation for another cgroup passes it over without taking it:
 * a hint, written after @buf is filled, which may be stale meanwhile. The
 * class recorded in the buffer itself (struct mbufmux_kept) decides.
 */
struct mbufmux_keep_slot {
	void *buf;
	struct mem_cgroup *memcg;
};

/*
 * A CPU's kept buffers. The shrinker, a lowered limit, the pool's release
 * and allocations on other CPUs take buffers from every CPU's slots, so
 * @buf is only ever changed with full atomics (xchg(), cmpxchg()), never
 * this_cpu_*() operations, which are atomic against the local CPU alone.
 * Uncontended, the lines stay in the local CPU's cache.
 */
struct mbufmux_keep {
	struct mbufmux_keep_slot slot[MBUFMUX_KEEP_SLOTS];
	unsigned int next;	/* the next slot to replace: a hint */
};

/*
 * The start of an idle, kept buffer (nobody reads an idle buffer): the
 * memory cgroup that the context that gave it back was charged to, NULL
 * being a class of its own. Only compared, never dereferenced.
 */
struct mbufmux_kept {
	struct mem_cgroup *memcg;
};

struct mbufmux_pool {
	/* Read on every operation; written rarely. */
	struct kmem_cache *cache;
	unsigned int buf_size;
	unsigned int limit;		/* written under @wait_lock */
	unsigned int reserve;		/* written under @wait_lock */
	unsigned int nr_waiters;	/* written under @wait_lock */
	unsigned int nr_explicit;	/* waiters with an explicit margin */
	unsigned int flags;		/* MBUFMUX_POOL_* */
	/* The counters kept per CPU: @pcpu of struct mbufmux_pool_stats. */
	struct mbufmux_pool_pcpu_counts __percpu *pcpu;
	/* Kept buffers: only with MBUFMUX_POOL_NO_ZERO, else NULL. */
	struct mbufmux_keep __percpu *keep;
#ifdef MBUFMUX_TEST_HOOKS
	atomic_t fail_slab;		/* mbufmux_pool_inject_slab_failures() */
#endif
	char name[MBUFMUX_NAME_MAX];

	atomic_t in_use ____cacheline_aligned_in_smp;
	atomic_t peak;
	/* Buffers in @keep, or on their way in or out: at most @limit. */
	atomic_t nr_kept;

	/* @wait_lock protects the wait list and everything below it. */
	spinlock_t wait_lock ____cacheline_aligned_in_smp;
	struct list_head wait_list;
	/* The counters kept here: @locked of struct mbufmux_pool_stats. */
	struct mbufmux_pool_locked_counts counts;

	/* @stash_lock protects the preallocated buffers (as mempool's). */
	spinlock_t stash_lock;
	unsigned int stash_min;
	unsigned int stash_nr;
	void **stash;

	struct delayed_work retry_work;
	struct dentry *debugfs;
	struct list_head pools_node;	/* on mbufmux_pools */
	/* Destroyed with buffers out (under mbufmux_pools_lock). */
	bool leaked;

	/* Gives kept buffers back under memory pressure (with @keep only). */
	struct shrinker *shrinker;
	atomic_long_t shrunk;
};

static struct workqueue_struct *mbufmux_wq;
static struct dentry *mbufmux_debugfs_root;

/* Every pool, leaked ones included, for name checks and debugfs "pools". */
static LIST_HEAD(mbufmux_pools);
static DEFINE_MUTEX(mbufmux_pools_lock);

static void mbufmux_serve(struct mbufmux_pool *pool);

static unsigned int mbufmux_used(const struct mbufmux_pool *pool)
{
	return atomic_read(&pool->in_use);
}

/* The one check of a limit and a reserve, at creation and at run time. */
static bool mbufmux_limits_valid(unsigned int limit, unsigned int reserve)
{
	return limit && limit <= MBUFMUX_LIMIT_MAX && reserve < limit;
}

static unsigned int mbufmux_margin(const struct mbufmux_pool *pool,
				   unsigned int margin)
{
	return margin == MBUFMUX_MARGIN_RESERVE ? READ_ONCE(pool->reserve)
						: margin;
}

/*
 * Count one more buffer out if that leaves @margin buffers under the limit.
 * The limit is exact: concurrent chargers cannot overshoot it.
 */
static bool mbufmux_charge(struct mbufmux_pool *pool, unsigned int margin)
{
	unsigned int limit = READ_ONCE(pool->limit);
	int old = atomic_read(&pool->in_use);
	unsigned int used;

	do {
		used = old;
		if (margin >= limit || used >= limit - margin)
			return false;
	} while (!atomic_try_cmpxchg(&pool->in_use, &old, old + 1));

	/* A racy peak would be lossy; only the rare new peak pays a cmpxchg. */
	old = atomic_read(&pool->peak);
	while (used + 1 > old &&
	       !atomic_try_cmpxchg_relaxed(&pool->peak, &old, used + 1))
		;
	return true;
}

/* One buffer fewer out: then serve the waiters, if any. */
static void mbufmux_uncharge(struct mbufmux_pool *pool)
{
	atomic_dec(&pool->in_use);
	/* Orders the decrement before the read of nr_waiters: see above. */
	smp_mb__after_atomic();
	if (unlikely(READ_ONCE(pool->nr_waiters)))
		mbufmux_serve(pool);
}

#ifdef MBUFMUX_TEST_HOOKS
static bool mbufmux_should_fail_slab(struct mbufmux_pool *pool)
{
	return unlikely(atomic_read(&pool->fail_slab)) &&
	       atomic_dec_if_positive(&pool->fail_slab) >= 0;
}
#else
/* The installed module: no slab allocation is made to fail. */
static bool mbufmux_should_fail_slab(struct mbufmux_pool *pool)
{
	return false;
}
#endif

/* Does the pool zero its buffers? All do, but MBUFMUX_POOL_NO_ZERO ones. */
static bool mbufmux_zeroes(const struct mbufmux_pool *pool)
{
	return !(pool->flags & MBUFMUX_POOL_NO_ZERO);
}

static gfp_t mbufmux_gfp(const struct mbufmux_pool *pool)
{
	return GFP_NOWAIT | __GFP_NOWARN |
	       (mbufmux_zeroes(pool) ? __GFP_ZERO : 0);
}

/* Give up to @nr kept buffers, any CPU's, back to the slab allocator. */
static unsigned long mbufmux_drain(struct mbufmux_pool *pool,
				   unsigned long nr)
{
	unsigned long freed = 0;
	struct mbufmux_keep *k;
	unsigned int i;
	void *buf;
	int cpu;

	for_each_possible_cpu(cpu) {
		if (freed >= nr)
			break;
		k = per_cpu_ptr(pool->keep, cpu);
		for (i = 0; i < MBUFMUX_KEEP_SLOTS && freed < nr; i++) {
			if (!READ_ONCE(k->slot[i].buf))
				continue;
			buf = xchg(&k->slot[i].buf, NULL);
			if (!buf)
				continue;
			kmem_cache_free(pool->cache, buf);
			atomic_dec(&pool->nr_kept);
			freed++;
		}
	}
	return freed;
}

/* Give the kept buffers beyond the limit back (it was lowered). */
static void mbufmux_trim(struct mbufmux_pool *pool)
{
	int excess = atomic_read(&pool->nr_kept) - (int)READ_ONCE(pool->limit);

	if (unlikely(excess > 0))
		mbufmux_drain(pool, excess);
}

/*
 * Keep @buf, which comes back from a context charged to @memcg, on this
 * CPU for the next allocation for @memcg. Lockless: a context preempted or
 * migrated in here only works on another CPU's slots, with full atomics.
 * At most @limit buffers are kept, counted in @nr_kept before they go in a
 * slot; with no room left (@limit kept, or this CPU's slots all taken),
 * @buf replaces one of this CPU's kept buffers instead, as the buffers
 * freed last are the likeliest to be needed again (by their cgroup).
 *
 * Returns the buffer for the caller to free: the replaced one, or @buf if
 * it could not be kept; NULL if @buf was kept without replacing another.
 * @buf, or its slot, is still counted in @in_use: the pool cannot have
 * been freed (its owner destroys it once every buffer is back, or it is
 * leaked), and mbufmux_pool_free() will find @buf if it is kept.
 */
static void *mbufmux_keep(struct mbufmux_pool *pool, void *buf,
			  struct mem_cgroup *memcg)
{
	struct mbufmux_keep *k = raw_cpu_ptr(pool->keep);
	struct mbufmux_kept *kb = buf;
	unsigned int i, s;
	void *old;
	int kept;

	kb->memcg = memcg;

	for (i = 0; i < MBUFMUX_KEEP_SLOTS && READ_ONCE(k->slot[i].buf); i++)
		;
	kept = atomic_read(&pool->nr_kept);
	while (i < MBUFMUX_KEEP_SLOTS && kept < (int)READ_ONCE(pool->limit)) {
		if (!atomic_try_cmpxchg(&pool->nr_kept, &kept, kept + 1))
			continue;
		/*
		 * Fully ordered: whoever takes @buf sees its class, and the
		 * limit is read after @buf is in, for a concurrent lowering
		 * of it (see mbufmux_pool_set_limits()).
		 */
		for (; i < MBUFMUX_KEEP_SLOTS; i++) {
			if (!cmpxchg(&k->slot[i].buf, NULL, buf)) {
				WRITE_ONCE(k->slot[i].memcg, memcg);
				mbufmux_trim(pool);
				return NULL;
			}
		}
		/* Filled meanwhile, from softirq or on another CPU. */
		atomic_dec(&pool->nr_kept);
		break;
	}

	/* No room: replace a kept buffer of this CPU, if it has one. */
	s = READ_ONCE(k->next);
	for (i = 0; i < MBUFMUX_KEEP_SLOTS; i++, s++) {
		s %= MBUFMUX_KEEP_SLOTS;
		old = READ_ONCE(k->slot[s].buf);
		if (old && try_cmpxchg(&k->slot[s].buf, &old, buf)) {
			WRITE_ONCE(k->slot[s].memcg, memcg);
			WRITE_ONCE(k->next, s + 1);
			return old;
		}
	}
	return buf;
}

/*
 * A buffer of @k's charged to @memcg, or NULL. Slots whose class is
 * another are passed over untouched. A buffer taken on a stale class
 * (its slot refilled meanwhile) goes back to its slot, or, if the slot
 * was filled again, to the slab allocator.
 */
static __always_inline void *mbufmux_unkeep_from(struct mbufmux_pool *pool,
						 struct mbufmux_keep *k,
						 struct mem_cgroup *memcg)
{
	struct mbufmux_keep_slot *slot;
	struct mem_cgroup *kb_memcg;
	struct mbufmux_kept *kb;
	unsigned int i;

	for (i = 0; i < MBUFMUX_KEEP_SLOTS; i++) {
		slot = &k->slot[i];
		kb = READ_ONCE(slot->buf);
		if (!kb || READ_ONCE(slot->memcg) != memcg)
			continue;
		if (cmpxchg(&slot->buf, kb, NULL) != kb)
			continue;
		/*
		 * Fully ordered after the keeper's cmpxchg(), which put
		 * @kb there after writing its class.
		 */
		if (likely(kb->memcg == memcg)) {
			/* Nobody sees what the pool wrote in it. */
			kb->memcg = NULL;
			atomic_dec(&pool->nr_kept);
			this_cpu_inc(pool->pcpu->recycled);
			return kb;
		}
		/* Read before @kb is back in view. */
		kb_memcg = kb->memcg;
		if (cmpxchg(&slot->buf, NULL, kb)) {
			kmem_cache_free(pool->cache, kb);
			atomic_dec(&pool->nr_kept);
			continue;
		}
		WRITE_ONCE(slot->memcg, kb_memcg);
		/* A lowered limit may have missed it while it was out. */
		mbufmux_trim(pool);
	}
	return NULL;
}

/*
 * The search of mbufmux_unkeep() beyond this CPU: up to MBUFMUX_UNKEEP_CPUS
 * other CPUs, the next ones in order, while any buffer is kept.
 */
static noinline void *mbufmux_unkeep_remote(struct mbufmux_pool *pool,
					    struct mem_cgroup *memcg)
{
	unsigned int n, here, cpu;
	void *buf = NULL;

	here = raw_smp_processor_id();
	cpu = here;
	for (n = 0; !buf && n < MBUFMUX_UNKEEP_CPUS; n++) {
		if (!atomic_read(&pool->nr_kept))
			break;
		cpu = cpumask_next(cpu, cpu_possible_mask);
		if (cpu >= nr_cpu_ids)
			cpu = cpumask_first(cpu_possible_mask);
		if (cpu == here)
			break;
		buf = mbufmux_unkeep_from(pool, per_cpu_ptr(pool->keep, cpu),
					  memcg);
	}
	return buf;
}

/*
 * A kept buffer charged to @memcg, or NULL: this CPU's first, then those
 * of other CPUs (mbufmux_unkeep_remote()). A buffer is kept where it is
 * freed, and for a socket that is often where its ACKs are processed, not
 * where it sends; looking further saves the slab round trip the sender
 * would make instead. A search that finds nothing (every kept buffer is
 * of other cgroups) reads the slots and changes none; the bound keeps its
 * cost independent of the number of CPUs: a buffer kept further away
 * serves the CPUs near it, or goes back under pressure.
 */
static void *mbufmux_unkeep(struct mbufmux_pool *pool,
			    struct mem_cgroup *memcg)
{
	void *buf;

	if (!atomic_read(&pool->nr_kept))
		return NULL;
	buf = mbufmux_unkeep_from(pool, raw_cpu_ptr(pool->keep), memcg);
	if (likely(buf) || !atomic_read(&pool->nr_kept))
		return buf;
	return mbufmux_unkeep_remote(pool, memcg);
}

/*
 * A buffer for a context charged to @memcg: a kept one of that cgroup,
 * else from the slab, else from the stash when the slab fails. Zeroed
 * unless the pool is MBUFMUX_POOL_NO_ZERO.
 */
static void *mbufmux_mem_alloc(struct mbufmux_pool *pool,
			       struct mem_cgroup *memcg)
{
	void *buf = NULL;

	if (pool->keep) {
		buf = mbufmux_unkeep(pool, memcg);
		if (buf)
			return buf;
	}
	if (!mbufmux_should_fail_slab(pool))
		buf = kmem_cache_alloc(pool->cache, mbufmux_gfp(pool));
	if (likely(buf))
		return buf;

	if (READ_ONCE(pool->stash_nr)) {
		spin_lock_bh(&pool->stash_lock);
		if (pool->stash_nr)
			buf = pool->stash[--pool->stash_nr];
		spin_unlock_bh(&pool->stash_lock);
		if (buf && mbufmux_zeroes(pool))
			memset(buf, 0, pool->buf_size);
	}
	return buf;
}

/* Give the memory back: refill the stash first, as mempool_free() does. */
static void mbufmux_mem_free(struct mbufmux_pool *pool, void *buf)
{
	if (unlikely(READ_ONCE(pool->stash_nr) < pool->stash_min)) {
		spin_lock_bh(&pool->stash_lock);
		if (pool->stash_nr < pool->stash_min) {
			pool->stash[pool->stash_nr++] = buf;
			buf = NULL;
		}
		spin_unlock_bh(&pool->stash_lock);
	}
	if (buf)
		kmem_cache_free(pool->cache, buf);
}

/*
 * A buffer that came back from a context charged to @memcg, still counted
 * in @in_use (or whose slot, still counted, was handed on): kept if the
 * pool recycles and its stash is full, else as mbufmux_mem_free().
 */
static void mbufmux_mem_release(struct mbufmux_pool *pool, void *buf,
				struct mem_cgroup *memcg)
{
	if (pool->keep &&
	    likely(READ_ONCE(pool->stash_nr) >= pool->stash_min)) {
		buf = mbufmux_keep(pool, buf, memcg);
		if (buf)
			kmem_cache_free(pool->cache, buf);
		return;
	}
	mbufmux_mem_free(pool, buf);
}

/*
 * Take a buffer if the limit and margin allow it. On failure *@nomem tells
 * whether the limit or the memory refused it. Counts successes only.
 */
static void *mbufmux_try_alloc(struct mbufmux_pool *pool, unsigned int margin,
			       struct mem_cgroup *memcg, bool *nomem)
{
	struct mem_cgroup *old_memcg;
	void *buf;

	*nomem = false;
	if (!mbufmux_charge(pool, mbufmux_margin(pool, margin)))
		return NULL;

	/* Charge the waiter's cgroup, not whoever made the room. */
	if (memcg) {
		old_memcg = set_active_memcg(memcg);
		buf = mbufmux_mem_alloc(pool, memcg);
		set_active_memcg(old_memcg);
	} else {
		buf = mbufmux_mem_alloc(pool, NULL);
	}
	if (unlikely(!buf)) {
		*nomem = true;
		/*
		 * The charge was only borrowed, but a waiter may have queued
		 * because of it: let the retry work serve the list (this may
		 * run under @wait_lock, so it cannot be served from here).
		 */
		atomic_dec(&pool->in_use);
		/* As in mbufmux_uncharge(): decrement, then look for waiters */
		smp_mb__after_atomic();
		if (READ_ONCE(pool->nr_waiters))
			mod_delayed_work(mbufmux_wq, &pool->retry_work,
					 MBUFMUX_RETRY_DELAY);
		return NULL;
	}
	this_cpu_inc(pool->pcpu->allocs);
	trace_mbufmux_alloc(pool->name, buf, mbufmux_used(pool));
	return buf;
}

static void mbufmux_count_fail(struct mbufmux_pool *pool, unsigned int margin,
			       bool nomem)
{
	if (nomem)
		this_cpu_inc(pool->pcpu->alloc_nomem);
	else
		this_cpu_inc(pool->pcpu->alloc_fail);
	trace_mbufmux_alloc_fail(pool->name, mbufmux_margin(pool, margin),
				 mbufmux_used(pool),
				 READ_ONCE(pool->limit), nomem);
}

static void mbufmux_dequeue_locked(struct mbufmux_pool *pool,
				   struct mbufmux_waiter *w)
{
	lockdep_assert_held(&pool->wait_lock);
	list_del_init(&w->node);
	WRITE_ONCE(pool->nr_waiters, pool->nr_waiters - 1);
	if (w->margin != MBUFMUX_MARGIN_RESERVE)
		pool->nr_explicit--;
}

/*
 * Give @buf to @w, which leaves the list. A waiter served in its own
 * mbufmux_get() (@self) just takes it; one that sleeps in
 * mbufmux_get_killable() is woken; any other gets its callback queued.
 */
static __always_inline void mbufmux_handoff_locked(struct mbufmux_pool *pool,
						   struct mbufmux_waiter *w,
						   void *buf, bool self)
{
	bool sleeps = w->sleeps;
	u64 waited;

	lockdep_assert_held(&pool->wait_lock);
	mbufmux_dequeue_locked(pool, w);
	WRITE_ONCE(w->buf, buf);
	if (self) {
		WRITE_ONCE(w->queued, false);
		return;
	}
	waited = ktime_get_ns() - w->queued_ns;
	w->handoffs++;
	w->wait_ns += waited;
	/*
	 * Pairs with smp_load_acquire() in mbufmux_get(): @buf is visible.
	 * From here on a sleeper may see it, return and free @w: nothing
	 * below reads @w (the wake-up only hashes its address).
	 */
	smp_store_release(&w->queued, false);

	pool->counts.handoffs++;
	pool->counts.wait_ns_max = max(pool->counts.wait_ns_max, waited);
	/* Bucket 0: under 1 us; k: [2^(k-1), 2^k) us, fls64() of the us. */
	pool->counts.wait_hist[min_t(unsigned int,
				     fls64(div_u64(waited, NSEC_PER_USEC)),
				     MBUFMUX_WAIT_HIST_BUCKETS - 1)]++;
	trace_mbufmux_handoff(pool->name, w, buf, waited);

	if (sleeps) {
		/*
		 * Order the store of @queued before wake_up_var()'s look at
		 * the wait queue; pairs with the barrier in the sleeper's
		 * prepare_to_wait_event() before its look at @queued.
		 */
		smp_mb();
		wake_up_var(&w->queued);
	} else {
		queue_work(mbufmux_wq, &w->work);
	}
}

/*
 * The buffer coming back, for @w: if @w wants its buffers charged to its
 * own memory cgroup and @spare may be charged to another one (@spare_memcg
 * is the cgroup of the context that gave it back, NULL if unknown), a fresh
 * buffer is allocated in @w's cgroup and the slot, not the memory, is
 * handed on (a kept buffer of @w's cgroup, if the pool recycles, and
 * @spare kept in its place). If that allocation fails, @spare itself goes:
 * the waiter is served, and the charge stays where it was (counted in
 * @recharge_fail).
 */
static bool mbufmux_needs_recharge(const struct mbufmux_waiter *w,
				   const struct mem_cgroup *spare_memcg)
{
	return w->memcg && w->memcg != spare_memcg;
}

/* Out of line: the handoff without a recharge needs fewer registers. */
static noinline void *mbufmux_recharge_locked(struct mbufmux_pool *pool,
					      struct mbufmux_waiter *w,
					      void *spare,
					      struct mem_cgroup *spare_memcg)
{
	struct mem_cgroup *old_memcg;
	void *buf = NULL;

	lockdep_assert_held(&pool->wait_lock);
	/* Not from the stash: that is for when the slab fails, not this. */
	if (pool->keep)
		buf = mbufmux_unkeep(pool, w->memcg);
	if (!buf) {
		old_memcg = set_active_memcg(w->memcg);
		buf = kmem_cache_alloc(pool->cache, mbufmux_gfp(pool));
		set_active_memcg(old_memcg);
	}
	if (unlikely(!buf)) {
		pool->counts.recharge_fail++;
		return spare;
	}
	pool->counts.recharges++;
	mbufmux_mem_release(pool, spare, spare_memcg);
	return buf;
}

/*
 * Serve the wait list in order: each waiter the limit has room for, given
 * its margin, is handed a buffer. A waiter that does not fit is skipped
 * only for a later one with a smaller margin (a critical request may take
 * the reserve that the head may not); when every waiter leaves the reserve
 * (no explicit margins queued), the first that does not fit ends the walk.
 * @self is the waiter whose mbufmux_get() is serving, or NULL.
 */
static void mbufmux_serve_locked(struct mbufmux_pool *pool,
				 struct mbufmux_waiter *self)
{
	struct mbufmux_waiter *w, *next;
	bool nomem;
	void *buf;

	lockdep_assert_held(&pool->wait_lock);
	list_for_each_entry_safe(w, next, &pool->wait_list, node) {
		buf = mbufmux_try_alloc(pool, w->margin, w->memcg, &nomem);
		if (buf) {
			mbufmux_handoff_locked(pool, w, buf, w == self);
			continue;
		}
		if (nomem) {
			/* The retry work is scheduled: stop here. */
			mbufmux_count_fail(pool, w->margin, true);
			break;
		}
		/* Nobody further can fit: all leave the reserve, or the
		 * pool is full (no margin fits no room).
		 */
		if (!pool->nr_explicit ||
		    mbufmux_used(pool) >= READ_ONCE(pool->limit))
			break;
	}
}

/*
 * Hand the slot of @spare, a buffer coming back (still counted in
 * @in_use) from a context charged to @spare_memcg and zeroed if the pool
 * zeroes, to the first waiter that may have it, in order as
 * mbufmux_serve_locked() walks. The walk ends there: the slot changes
 * hands, @in_use does not, so nobody behind fits who did not before (they
 * are served by whatever makes room next). Returns @spare if nobody took
 * it.
 */
static void *mbufmux_handoff_spare_locked(struct mbufmux_pool *pool,
					  void *spare,
					  struct mem_cgroup *spare_memcg)
{
	unsigned int margin, limit;
	struct mbufmux_waiter *w;
	void *buf;

	lockdep_assert_held(&pool->wait_lock);
	list_for_each_entry(w, &pool->wait_list, node) {
		margin = mbufmux_margin(pool, w->margin);
		limit = READ_ONCE(pool->limit);
		/* One fewer out must leave the margin under the limit. */
		if (margin < limit && mbufmux_used(pool) - 1 < limit - margin) {
			buf = spare;
			if (mbufmux_needs_recharge(w, spare_memcg))
				buf = mbufmux_recharge_locked(pool, w, spare,
							      spare_memcg);
			this_cpu_inc(pool->pcpu->frees);
			this_cpu_inc(pool->pcpu->allocs);
			mbufmux_handoff_locked(pool, w, buf, false);
			return NULL;
		}
		/* As in mbufmux_serve_locked(), one fewer out. */
		if (!pool->nr_explicit || mbufmux_used(pool) - 1 >= limit)
			break;
	}
	return spare;
}

/*
 * Give a counted buffer, from a context charged to @memcg, back to the
 * memory (or keep it), then let the waiters in.
 */
static void mbufmux_release_buf(struct mbufmux_pool *pool, void *buf,
				struct mem_cgroup *memcg)
{
	mbufmux_mem_release(pool, buf, memcg);
	this_cpu_inc(pool->pcpu->frees);
	mbufmux_uncharge(pool);
}

/* Serve the wait list after room was made (a free, a limit change). */
static void mbufmux_serve(struct mbufmux_pool *pool)
{
	spin_lock_bh(&pool->wait_lock);
	mbufmux_serve_locked(pool, NULL);
	spin_unlock_bh(&pool->wait_lock);
}

static void mbufmux_retry_work(struct work_struct *work)
{
	struct mbufmux_pool *pool = container_of(to_delayed_work(work),
						 struct mbufmux_pool,
						 retry_work);

	mbufmux_serve(pool);
}

/*
 * A free while contexts wait: @buf, from a context charged to @memcg, is
 * likely handed on. Out of line, so that the free's fast path (nobody
 * waiting) saves only the registers it needs.
 */
static noinline void mbufmux_free_waiting(struct mbufmux_pool *pool,
					  void *buf, struct mem_cgroup *memcg)
{
	/*
	 * Never carry one owner's bytes to the next. The one place a
	 * returning buffer is zeroed, here, outside the wait-list lock; a
	 * consumer that never shows bytes it did not write
	 * (MBUFMUX_POOL_NO_ZERO) needs none.
	 */
	if (mbufmux_zeroes(pool))
		memset(buf, 0, pool->buf_size);
	spin_lock_bh(&pool->wait_lock);
	buf = mbufmux_handoff_spare_locked(pool, buf, memcg);
	spin_unlock_bh(&pool->wait_lock);
	if (buf)
		mbufmux_release_buf(pool, buf, memcg);
}

/* @memcg: the cgroup @buf is charged to, NULL if unknown */
static void __mbufmux_buf_free(struct mbufmux_pool *pool, void *buf,
			       struct mem_cgroup *memcg)
{
	if (unlikely(READ_ONCE(pool->nr_waiters)))
		mbufmux_free_waiting(pool, buf, memcg);
	else
		mbufmux_release_buf(pool, buf, memcg);
}

/**
 * mbufmux_buf_alloc() - take a buffer without waiting
 * @pool: the pool
 * @margin: buffers to leave under the limit for others: the allocation
 *	succeeds only if ``in_use + margin < limit``. Pass
 *	%MBUFMUX_MARGIN_RESERVE to leave the pool's reserve, 0 for a critical
 *	allocation that may take the reserve.
 *
 * This is the raw primitive: it does not look at the wait list, so it may
 * take room a queued waiter is about to be given. Contexts that share the
 * pool fairly use mbufmux_get(). The buffer is zeroed, unless the pool is
 * %MBUFMUX_POOL_NO_ZERO: then it may be a kept one, as it was given back
 * with mbufmux_buf_free().
 *
 * Context: process or softirq context, with hard interrupts enabled;
 * never sleeps.
 * Return: a buffer of mbufmux_pool_buf_size() bytes, or NULL if the limit
 * or the memory refused it.
 */
void *mbufmux_buf_alloc(struct mbufmux_pool *pool, unsigned int margin)
{
	bool nomem;
	void *buf;

	buf = mbufmux_try_alloc(pool, margin, NULL, &nomem);
	if (unlikely(!buf))
		mbufmux_count_fail(pool, margin, nomem);
	return buf;
}
EXPORT_SYMBOL_GPL(mbufmux_buf_alloc);

/**
 * mbufmux_buf_free() - give a buffer back to its pool
 * @pool: the pool the buffer came from
 * @buf: the buffer
 *
 * If contexts are waiting, the buffer, zeroed unless the pool is
 * %MBUFMUX_POOL_NO_ZERO, goes straight to the head waiter, whose callback
 * is queued (or which is woken, if it sleeps in mbufmux_get_killable());
 * otherwise it returns to the memory, or a
 * %MBUFMUX_POOL_NO_ZERO pool keeps it for the next allocation.
 *
 * Context: process or softirq context, with hard interrupts enabled;
 * never sleeps.
 * Return: nothing.
 */
void mbufmux_buf_free(struct mbufmux_pool *pool, void *buf)
{
	__mbufmux_buf_free(pool, buf, NULL);
}
EXPORT_SYMBOL_GPL(mbufmux_buf_free);

static void mbufmux_waiter_work(struct work_struct *work)
{
	struct mbufmux_waiter *w = container_of(work, struct mbufmux_waiter,
						work);

	w->ops->available(w);
}

/**
 * mbufmux_waiter_init() - prepare a waiter embedded in a consumer's context
 * @w: the waiter
 * @pool: the pool its buffer will come from
 * @ops: the consumer's callbacks; @ops->available is required
 *
 * Context: any.
 * Return: nothing.
 */
void mbufmux_waiter_init(struct mbufmux_waiter *w, struct mbufmux_pool *pool,
			 const struct mbufmux_waiter_ops *ops)
{
	memset(w, 0, sizeof(*w));
	INIT_LIST_HEAD(&w->node);
	INIT_WORK(&w->work, mbufmux_waiter_work);
	w->pool = pool;
	w->ops = ops;
}
EXPORT_SYMBOL_GPL(mbufmux_waiter_init);

/*
 * mbufmux_get(), for a request that waits by its callback (@sleeps false)
 * or by sleeping in mbufmux_get_killable() (@sleeps true): which the
 * handoff, if the request is queued, will see.
 */
static __always_inline void *__mbufmux_get(struct mbufmux_waiter *w,
					   unsigned int margin, bool sleeps)
{
	struct mbufmux_pool *pool = w->pool;
	bool nomem;
	void *buf;

	/* Pairs with the smp_store_release() in mbufmux_handoff_locked() */
	if (smp_load_acquire(&w->queued))
		return NULL;
	buf = READ_ONCE(w->buf);
	if (buf)
		return buf;

	/* Fast path: nobody waits, so nobody is overtaken. */
	if (likely(!READ_ONCE(pool->nr_waiters))) {
		buf = mbufmux_try_alloc(pool, margin, w->memcg, &nomem);
		if (likely(buf)) {
			WRITE_ONCE(w->buf, buf);
			return buf;
		}
	}

	spin_lock_bh(&pool->wait_lock);
	/* Queued twice: the caller did not serialise its calls on @w. */
	if (WARN_ON_ONCE(w->queued)) {
		spin_unlock_bh(&pool->wait_lock);
		return NULL;
	}
	w->margin = margin;
	w->sleeps = sleeps;
	w->queued_ns = ktime_get_ns();
	w->queued = true;
	list_add_tail(&w->node, &pool->wait_list);
	WRITE_ONCE(pool->nr_waiters, pool->nr_waiters + 1);
	if (margin != MBUFMUX_MARGIN_RESERVE)
		pool->nr_explicit++;
	/*
	 * Publish the waiter before the last look at @in_use: pairs with the
	 * barrier after the decrement in mbufmux_uncharge(). Then serve
	 * the list as a free would: we are served if our turn has come.
	 */
	smp_mb();
	mbufmux_serve_locked(pool, w);
	if (!w->queued) {
		buf = w->buf;
		spin_unlock_bh(&pool->wait_lock);
		return buf;
	}
	w->waits++;
	pool->counts.waits++;
	pool->counts.waiters_peak = max_t(u64, pool->counts.waiters_peak,
					  pool->nr_waiters);
	trace_mbufmux_wait(pool->name, w, pool->nr_waiters);
	spin_unlock_bh(&pool->wait_lock);
	mbufmux_count_fail(pool, margin, false);
	return NULL;
}

/**
 * mbufmux_get() - the context's buffer, or a place in the queue for one
 * @w: the context's waiter
 * @margin: as for mbufmux_buf_alloc()
 *
 * If the context holds a buffer (its own or one handed to it), that buffer
 * is returned. Otherwise, if nobody waits and the pool has room, a new
 * buffer is taken. Otherwise the waiter is queued at the tail of the wait
 * list (once: a queued waiter stays where it is), the caller must stop the
 * I/O that needs the buffer, and @w->ops->available will run once a buffer
 * has been handed to it. New callers never overtake queued ones.
 *
 * Forward progress: a context holds at most one buffer, and must be able to
 * give it back without needing another one.
 *
 * Context: process or softirq context, with hard interrupts enabled;
 * never sleeps. Calls on one waiter are serialised by the caller.
 * Return: the context's buffer, or NULL if the waiter is queued.
 */
void *mbufmux_get(struct mbufmux_waiter *w, unsigned int margin)
{
	return __mbufmux_get(w, margin, false);
}
EXPORT_SYMBOL_GPL(mbufmux_get);

/* Take @w off the wait list if it is on it: a cancel. */
static void mbufmux_unqueue(struct mbufmux_pool *pool,
			    struct mbufmux_waiter *w)
{
	spin_lock_bh(&pool->wait_lock);
	if (w->queued) {
		mbufmux_dequeue_locked(pool, w);
		WRITE_ONCE(w->queued, false);
		pool->counts.cancels++;
		trace_mbufmux_cancel(pool->name, w, true);
	}
	spin_unlock_bh(&pool->wait_lock);
}

/**
 * mbufmux_get_killable() - the context's buffer, sleeping in the queue for it
 * @w: the context's waiter
 * @margin: as for mbufmux_buf_alloc()
 *
 * As mbufmux_get(), for a caller that may sleep, as down_killable() is
 * for a semaphore: where mbufmux_get() would queue the waiter, the caller
 * sleeps in its place in the queue until a buffer is handed to it. The
 * context that gives the buffer back wakes it directly: no work item, and
 * @w->ops->available is not called for this wait. A waiter that an earlier
 * mbufmux_get() queued keeps its place and now sleeps in it; if a buffer
 * was handed to it before this call took the wait-list lock, its callback
 * has been queued and still runs, as for any wait mbufmux_get() began
 * (mbufmux_waiter_flush() waits for it). The order is the wait list's,
 * shared with the waiters that wait by their callback.
 *
 * A fatal signal ends the sleep: the waiter leaves the queue (counted as a
 * cancel), unless a buffer was handed to it first, which it then returns.
 *
 * Context: process context, may sleep; not under a spinlock. Calls on one
 * waiter are serialised by the caller.
 * Return: the context's buffer, or NULL if a fatal signal came first (the
 * waiter is then not queued and holds nothing).
 */
void *mbufmux_get_killable(struct mbufmux_waiter *w, unsigned int margin)
{
	struct mbufmux_pool *pool = w->pool;
	void *buf;

	might_sleep();
	if (unlikely(mbufmux_waiter_queued(w))) {
		/*
		 * Queued by mbufmux_get(): sleep in that place, unless it was
		 * served meanwhile (by its callback, then).
		 */
		spin_lock_bh(&pool->wait_lock);
		if (w->queued)
			w->sleeps = true;
		spin_unlock_bh(&pool->wait_lock);
	} else {
		buf = __mbufmux_get(w, margin, true);
		if (buf)
			return buf;
	}
	/* Pairs with the release and barrier in mbufmux_handoff_locked() */
	if (!wait_var_event_killable(&w->queued, !mbufmux_waiter_queued(w)))
		return READ_ONCE(w->buf);
	mbufmux_unqueue(pool, w);
	return READ_ONCE(w->buf);
}
EXPORT_SYMBOL_GPL(mbufmux_get_killable);

/**
 * mbufmux_put() - give the context's buffer back
 * @w: the context's waiter
 *
 * The buffer, if the context holds one, goes to the head waiter or back to
 * the memory, as with mbufmux_buf_free(). A queued waiter stays queued.
 *
 * Context: process or softirq context, with hard interrupts enabled;
 * never sleeps. Calls on one waiter are serialised by the caller.
 * Return: nothing.
 */
void mbufmux_put(struct mbufmux_waiter *w)
{
	void *buf = mbufmux_waiter_buf(w);

	if (buf) {
		WRITE_ONCE(w->buf, NULL);
		/* Allocated, or recharged, in @w->memcg if it is set. */
		__mbufmux_buf_free(w->pool, buf, w->memcg);
	}
}
EXPORT_SYMBOL_GPL(mbufmux_put);

/**
 * mbufmux_cancel() - take a waiter out of the pool for good
 * @w: the context's waiter
 *
 * Removes @w from the wait list if it is queued, waits for a pending or
 * running callback to finish and gives back any buffer the context holds,
 * handed-off or not: it is offered to the next waiter. Afterwards @w holds
 * nothing and may be freed, or used again.
 *
 * Context: process context, may sleep. Must not be called from @w's own
 * callback, nor under a lock that callback takes.
 * Return: nothing.
 */
void mbufmux_cancel(struct mbufmux_waiter *w)
{
	struct mbufmux_pool *pool = w->pool;

	might_sleep();
	mbufmux_unqueue(pool, w);

	/*
	 * Only a handoff queues the work, and only while @w is on the list:
	 * once off it, nothing can queue it again, so cancelling is enough.
	 * A handed-off buffer counts as a handoff, not a cancel, whether its
	 * callback ran or not: every wait ends in exactly one of the two.
	 */
	if (cancel_work_sync(&w->work))
		trace_mbufmux_cancel(pool->name, w, false);
	mbufmux_put(w);
}
EXPORT_SYMBOL_GPL(mbufmux_cancel);

/**
 * mbufmux_waiter_flush() - wait for a waiter's callback to be done
 * @w: the context's waiter, not queued
 *
 * Waits until a ->available() callback queued by the handoff that gave @w
 * its buffer has run. The context keeps what it holds. As only a handoff
 * queues the callback, and only to a queued waiter, none can run
 * afterwards until @w queues again: a context that keeps its buffer past
 * its own lifetime (a socket's bytes still in flight after close) may then
 * give it back with mbufmux_put() from any context, and be freed.
 *
 * Context: process context, may sleep. Must not be called from @w's own
 * callback, nor under a lock that callback takes.
 * Return: nothing.
 */
void mbufmux_waiter_flush(struct mbufmux_waiter *w)
{
	might_sleep();
	WARN_ON_ONCE(mbufmux_waiter_queued(w));
	flush_work(&w->work);
}
EXPORT_SYMBOL_GPL(mbufmux_waiter_flush);

/**
 * mbufmux_pool_set_limits() - change a pool's limit and reserve at run time
 * @pool: the pool
 * @limit: new limit, 1 to %MBUFMUX_LIMIT_MAX
 * @reserve: new reserve, below @limit
 *
 * Raising the limit (or lowering the reserve) offers the new room to the
 * waiters at once. Lowering the limit takes no buffer back: it only stops
 * new allocations until enough buffers have come back; kept buffers beyond
 * the new limit go back to the slab allocator.
 *
 * Context: process or softirq context, with hard interrupts enabled;
 * never sleeps.
 * Return: 0, or -EINVAL if the values are out of range (nothing changes).
 */
int mbufmux_pool_set_limits(struct mbufmux_pool *pool, unsigned int limit,
			    unsigned int reserve)
{
	if (!mbufmux_limits_valid(limit, reserve))
		return -EINVAL;

	spin_lock_bh(&pool->wait_lock);
	WRITE_ONCE(pool->limit, limit);
	WRITE_ONCE(pool->reserve, reserve);
	mbufmux_serve_locked(pool, NULL);
	spin_unlock_bh(&pool->wait_lock);

	/* Kept buffers past a lowered limit go. */
	if (pool->keep) {
		/*
		 * Pairs with the cmpxchg() in mbufmux_keep(): a buffer kept
		 * against the old limit is either seen by this trim, or its
		 * keeper sees the new limit and trims itself.
		 */
		smp_mb();
		mbufmux_trim(pool);
	}
	return 0;
}
EXPORT_SYMBOL_GPL(mbufmux_pool_set_limits);

/**
 * mbufmux_pool_limit() - a pool's current limit
 * @pool: the pool
 *
 * Context: any. A lockless snapshot: mbufmux_pool_set_limits() may change
 * it right after.
 * Return: the most buffers @pool lets out at once.
 */
unsigned int mbufmux_pool_limit(const struct mbufmux_pool *pool)
{
	return READ_ONCE(pool->limit);
}
EXPORT_SYMBOL_GPL(mbufmux_pool_limit);

/**
 * mbufmux_pool_reserve() - a pool's current reserve
 * @pool: the pool
 *
 * Context: any. A lockless snapshot, as mbufmux_pool_limit().
 * Return: the buffers of @pool that only critical allocations may take.
 */
unsigned int mbufmux_pool_reserve(const struct mbufmux_pool *pool)
{
	return READ_ONCE(pool->reserve);
}
EXPORT_SYMBOL_GPL(mbufmux_pool_reserve);

/**
 * mbufmux_pool_buf_size() - the size of a pool's buffers
 * @pool: the pool
 *
 * Context: any.
 * Return: the size of every buffer of @pool, in bytes.
 */
unsigned int mbufmux_pool_buf_size(const struct mbufmux_pool *pool)
{
	return pool->buf_size;
}
EXPORT_SYMBOL_GPL(mbufmux_pool_buf_size);

/**
 * mbufmux_pool_waiting() - do contexts wait for a buffer of this pool?
 * @pool: the pool
 *
 * A holder that shares the pool fairly gives its buffer back once it has
 * drained when this is true, instead of filling it again.
 *
 * Context: any. A lockless snapshot: a waiter may queue, or be served,
 * right after.
 * Return: true if at least one waiter is queued.
 */
bool mbufmux_pool_waiting(const struct mbufmux_pool *pool)
{
	return READ_ONCE(pool->nr_waiters) != 0;
}
EXPORT_SYMBOL_GPL(mbufmux_pool_waiting);

/**
 * mbufmux_pool_get_stats() - a snapshot of a pool's counters
 * @pool: the pool
 * @st: filled in
 *
 * The per-CPU counters are summed without stopping their writers: under
 * concurrent use the snapshot is approximate, at rest it is exact.
 *
 * Context: process or softirq context, with hard interrupts enabled;
 * never sleeps.
 * Return: nothing.
 */
void mbufmux_pool_get_stats(struct mbufmux_pool *pool,
			    struct mbufmux_pool_stats *st)
{
	/* The groups of counters, as arrays of their u64s. */
	u64 *sum = (u64 *)&st->pcpu;
	const u64 *pc;
	unsigned int i;
	int cpu;

	memset(st, 0, sizeof(*st));
	for_each_possible_cpu(cpu) {
		pc = (const u64 *)per_cpu_ptr(pool->pcpu, cpu);
		for (i = 0; i < sizeof(st->pcpu) / sizeof(u64); i++)
			sum[i] += READ_ONCE(pc[i]);
	}
	st->in_use = mbufmux_used(pool);
	st->peak = atomic_read(&pool->peak);
	st->limit = mbufmux_pool_limit(pool);
	st->reserve = mbufmux_pool_reserve(pool);
	st->prealloc = pool->stash_min;
	st->buf_size = pool->buf_size;
	st->kept = max(atomic_read(&pool->nr_kept), 0);
	st->shrunk = atomic_long_read(&pool->shrunk);

	spin_lock_bh(&pool->wait_lock);
	st->locked = pool->counts;
	st->waiters = pool->nr_waiters;
	spin_unlock_bh(&pool->wait_lock);
}
EXPORT_SYMBOL_GPL(mbufmux_pool_get_stats);

#ifdef MBUFMUX_TEST_HOOKS
/**
 * mbufmux_pool_inject_slab_failures() - make the next slab allocations fail
 * @pool: the pool
 * @n: how many of its next slab allocations fail
 *
 * A test hook for test_mbufmux: it lets the preallocated buffers be tested
 * on kernels without fault injection. Built only with the tests
 * (MBUFMUX_TESTS=1, see Kbuild), never in the installed module.
 *
 * Context: any.
 * Return: nothing.
 */
void mbufmux_pool_inject_slab_failures(struct mbufmux_pool *pool,
				       unsigned int n)
{
	atomic_set(&pool->fail_slab, min_t(unsigned int, n, INT_MAX));
}
EXPORT_SYMBOL_GPL(mbufmux_pool_inject_slab_failures);
#endif

/* The shrinker: kept buffers go back to the slab under memory pressure. */

static unsigned long mbufmux_shrink(struct mbufmux_pool *pool,
				    unsigned long nr)
{
	unsigned long freed = mbufmux_drain(pool, nr);

	atomic_long_add(freed, &pool->shrunk);
	return freed;
}

static unsigned long mbufmux_shrink_count(struct shrinker *shrinker,
					  struct shrink_control *sc)
{
	struct mbufmux_pool *pool = mbufmux_shrinker_private(shrinker);
	int kept = atomic_read(&pool->nr_kept);

	return kept > 0 ? kept : SHRINK_EMPTY;
}

static unsigned long mbufmux_shrink_scan(struct shrinker *shrinker,
					 struct shrink_control *sc)
{
	unsigned long freed = mbufmux_shrink(mbufmux_shrinker_private(shrinker),
					     sc->nr_to_scan);

	return freed ?: SHRINK_STOP;
}

static int mbufmux_shrinker_register(struct mbufmux_pool *pool)
{
	char name[MBUFMUX_NAME_MAX + 8];

	snprintf(name, sizeof(name), "mbufmux-%s", pool->name);
	pool->shrinker = mbufmux_shrinker_create(name, mbufmux_shrink_count,
						 mbufmux_shrink_scan, pool);
	return pool->shrinker ? 0 : -ENOMEM;
}

#ifdef MBUFMUX_TEST_HOOKS
/**
 * mbufmux_pool_shrink() - give kept buffers back as the shrinker does
 * @pool: the pool
 * @nr: how many at most
 *
 * A test hook for test_mbufmux: it runs what the pool's shrinker runs
 * under memory pressure, counted in ``shrunk`` the same way. Built only
 * with the tests (MBUFMUX_TESTS=1, see Kbuild).
 *
 * Context: process or softirq context; never sleeps.
 * Return: the number of kept buffers given back to the slab allocator.
 */
unsigned long mbufmux_pool_shrink(struct mbufmux_pool *pool, unsigned long nr)
{
	return pool->keep ? mbufmux_shrink(pool, nr) : 0;
}
EXPORT_SYMBOL_GPL(mbufmux_pool_shrink);
#endif

/* debugfs */

/*
 * The stats file: a "name value" line per field of struct
 * mbufmux_pool_stats, in this order, which tools/mbufmuxtop and the tests
 * rely on finding as it is (by name): keep it, and add new counters at the
 * end. The histogram prints a line per bucket, named by its lower bound.
 */
struct mbufmux_stat {
	const char *name;
	unsigned int off;	/* in struct mbufmux_pool_stats */
	bool hist;		/* MBUFMUX_WAIT_HIST_BUCKETS u64s from @off */
};

#define MBUFMUX_STAT(f)							\
	{ #f, offsetof(struct mbufmux_pool_stats, f), false }
#define MBUFMUX_STAT_HIST(f)						\
	{ #f "_us_", offsetof(struct mbufmux_pool_stats, f), true }

static const struct mbufmux_stat mbufmux_stats[] = {
	MBUFMUX_STAT(in_use),
	MBUFMUX_STAT(peak),
	MBUFMUX_STAT(limit),
	MBUFMUX_STAT(reserve),
	MBUFMUX_STAT(prealloc),
	MBUFMUX_STAT(buf_size),
	MBUFMUX_STAT(allocs),
	MBUFMUX_STAT(alloc_fail),
	MBUFMUX_STAT(alloc_nomem),
	MBUFMUX_STAT(frees),
	MBUFMUX_STAT(waits),
	MBUFMUX_STAT(handoffs),
	MBUFMUX_STAT(cancels),
	MBUFMUX_STAT(recharges),
	MBUFMUX_STAT(recharge_fail),
	MBUFMUX_STAT(waiters),
	MBUFMUX_STAT(waiters_peak),
	MBUFMUX_STAT(wait_ns_max),
	MBUFMUX_STAT_HIST(wait_hist),
	MBUFMUX_STAT(kept),
	MBUFMUX_STAT(recycled),
	MBUFMUX_STAT(shrunk),
};

/* As many lines as struct mbufmux_pool_stats has fields. */
static_assert(ARRAY_SIZE(mbufmux_stats) - 1 + MBUFMUX_WAIT_HIST_BUCKETS ==
	      sizeof(struct mbufmux_pool_stats) / sizeof(u64));

static int mbufmux_stats_show(struct seq_file *m, void *v)
{
	const struct mbufmux_stat *s;
	struct mbufmux_pool_stats st;
	const u64 *val;
	unsigned int i;

	mbufmux_pool_get_stats(m->private, &st);
	for (s = mbufmux_stats; s < mbufmux_stats + ARRAY_SIZE(mbufmux_stats);
	     s++) {
		val = (const u64 *)((const char *)&st + s->off);
		if (!s->hist) {
			seq_printf(m, "%s %llu\n", s->name, *val);
			continue;
		}
		for (i = 0; i < MBUFMUX_WAIT_HIST_BUCKETS; i++)
			seq_printf(m, "%s%lu %llu\n", s->name,
				   i ? 1UL << (i - 1) : 0UL, val[i]);
	}
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(mbufmux_stats);

static int mbufmux_waiters_show(struct seq_file *m, void *v)
{
	struct mbufmux_pool *pool = m->private;
	struct mbufmux_waiter *w;
	unsigned int pos = 0;
	u64 now;

	spin_lock_bh(&pool->wait_lock);
	now = ktime_get_ns();
	list_for_each_entry(w, &pool->wait_list, node) {
		seq_printf(m, "%u wait_us=%llu margin=%u ", pos++,
			   div_u64(now - w->queued_ns, NSEC_PER_USEC),
			   mbufmux_margin(pool, w->margin));
		if (w->ops->show)
			w->ops->show(m, w);
		else
			seq_printf(m, "waiter=%p", w);
		seq_putc(m, '\n');
	}
	spin_unlock_bh(&pool->wait_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(mbufmux_waiters);

static int mbufmux_pools_show(struct seq_file *m, void *v)
{
	struct mbufmux_pool *pool;

	mutex_lock(&mbufmux_pools_lock);
	list_for_each_entry(pool, &mbufmux_pools, pools_node)
		seq_printf(m, "%s %s in_use=%u\n", pool->name,
			   pool->leaked ? "leaked" : "live",
			   mbufmux_used(pool));
	mutex_unlock(&mbufmux_pools_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(mbufmux_pools);

/* Pool lifetime */

static bool mbufmux_name_valid(const char *name)
{
	size_t len = name ? strnlen(name, MBUFMUX_NAME_MAX) : 0;
	size_t i;

	if (!len || len == MBUFMUX_NAME_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!islower(name[i]) && !isdigit(name[i]) &&
		    name[i] != '_' && name[i] != '-')
			return false;
	return true;
}

static struct mbufmux_pool *mbufmux_pool_find(const char *name)
{
	struct mbufmux_pool *pool;

	lockdep_assert_held(&mbufmux_pools_lock);
	list_for_each_entry(pool, &mbufmux_pools, pools_node)
		if (!strcmp(pool->name, name))
			return pool;
	return NULL;
}

/* Unlist and free an idle pool. */
static void mbufmux_pool_free(struct mbufmux_pool *pool)
{
	mutex_lock(&mbufmux_pools_lock);
	list_del(&pool->pools_node);
	mutex_unlock(&mbufmux_pools_lock);
	/* Nothing queues them any more: every slot is back, nobody waits. */
	cancel_delayed_work_sync(&pool->retry_work);
	if (pool->keep) {
		/* No scan runs after this, and nobody keeps buffers any more. */
		mbufmux_shrinker_destroy(pool->shrinker);
		mbufmux_drain(pool, ULONG_MAX);
		WARN_ON_ONCE(atomic_read(&pool->nr_kept));
		free_percpu(pool->keep);
	}
	while (pool->stash_nr)
		kmem_cache_free(pool->cache, pool->stash[--pool->stash_nr]);
	kvfree(pool->stash);
	kmem_cache_destroy(pool->cache);
	free_percpu(pool->pcpu);
	kfree(pool);
}

/**
 * mbufmux_pool_create() - create a pool of buffers
 * @params: name, buffer size, limit, reserve and preallocated buffers
 *
 * Creates the slab cache (``mbufmux_<name>``, charged to the allocating
 * task's memory cgroup, user copies allowed over the whole buffer),
 * preallocates @params->prealloc buffers and the debugfs directory
 * ``mbufmux/<name>/``; with %MBUFMUX_POOL_NO_ZERO in @params->flags, also
 * the per-CPU slots of its kept buffers and their shrinker.
 *
 * Context: process context, may sleep.
 * Return: the pool, or an ERR_PTR(): -EINVAL for a bad name, an out of
 * range value or an unknown flag, -EEXIST if a pool of that name exists,
 * -ENOMEM.
 */
struct mbufmux_pool *mbufmux_pool_create(const struct mbufmux_pool_params *params)
{
	char cache_name[MBUFMUX_NAME_MAX + 8];
	struct mbufmux_pool *pool;
	int err;

	if (!mbufmux_name_valid(params->name) ||
	    params->flags & ~MBUFMUX_POOL_FLAGS ||
	    params->buf_size < MBUFMUX_BUF_SIZE_MIN ||
	    params->buf_size > MBUFMUX_BUF_SIZE_MAX ||
	    !mbufmux_limits_valid(params->limit, params->reserve) ||
	    params->prealloc > params->limit)
		return ERR_PTR(-EINVAL);

	pool = kzalloc(sizeof(*pool), GFP_KERNEL);
	if (!pool)
		return ERR_PTR(-ENOMEM);
	strscpy(pool->name, params->name, sizeof(pool->name));
	pool->buf_size = params->buf_size;
	pool->limit = params->limit;
	pool->reserve = params->reserve;
	pool->flags = params->flags;
	spin_lock_init(&pool->wait_lock);
	INIT_LIST_HEAD(&pool->wait_list);
	spin_lock_init(&pool->stash_lock);
	INIT_DELAYED_WORK(&pool->retry_work, mbufmux_retry_work);

	/*
	 * The name first: a second cache of the same name would clash in
	 * sysfs and debugfs. The lock is held until the pool is listed.
	 */
	mutex_lock(&mbufmux_pools_lock);
	err = -EEXIST;
	if (mbufmux_pool_find(pool->name))
		goto err_unlock;

	err = -ENOMEM;
	pool->pcpu = alloc_percpu(struct mbufmux_pool_pcpu_counts);
	if (!pool->pcpu)
		goto err_unlock;
	if (!mbufmux_zeroes(pool)) {
		pool->keep = alloc_percpu(struct mbufmux_keep);
		if (!pool->keep)
			goto err_free_pcpu;
	}

	snprintf(cache_name, sizeof(cache_name), "mbufmux_%s", pool->name);
	pool->cache = kmem_cache_create_usercopy(cache_name, pool->buf_size, 0,
						 SLAB_ACCOUNT | SLAB_NO_MERGE,
						 0, pool->buf_size, NULL);
	if (!pool->cache)
		goto err_free_pcpu;

	/*
	 * The limit allows millions of buffers: a large request must fail
	 * with -ENOMEM, not warn in the page allocator or wake the OOM killer.
	 */
	if (params->prealloc) {
		pool->stash = kvcalloc(params->prealloc, sizeof(void *),
				       GFP_KERNEL);
		if (!pool->stash)
			goto err_free_stash;
	}
	pool->stash_min = params->prealloc;
	while (pool->stash_nr < pool->stash_min) {
		void *buf = kmem_cache_alloc(pool->cache, GFP_KERNEL |
					     __GFP_NORETRY | __GFP_NOWARN);

		if (!buf)
			goto err_free_stash;
		pool->stash[pool->stash_nr++] = buf;
	}
	if (pool->keep) {
		err = mbufmux_shrinker_register(pool);
		if (err)
			goto err_free_stash;
	}

	pool->debugfs = debugfs_create_dir(pool->name, mbufmux_debugfs_root);
	debugfs_create_file("stats", 0444, pool->debugfs, pool,
			    &mbufmux_stats_fops);
	debugfs_create_file("waiters", 0444, pool->debugfs, pool,
			    &mbufmux_waiters_fops);
	list_add_tail(&pool->pools_node, &mbufmux_pools);
	mutex_unlock(&mbufmux_pools_lock);
	return pool;

err_free_stash:
	while (pool->stash_nr)
		kmem_cache_free(pool->cache, pool->stash[--pool->stash_nr]);
	kvfree(pool->stash);
	kmem_cache_destroy(pool->cache);
err_free_pcpu:
	free_percpu(pool->keep);
	free_percpu(pool->pcpu);
err_unlock:
	mutex_unlock(&mbufmux_pools_lock);
	kfree(pool);
	return ERR_PTR(err);
}
EXPORT_SYMBOL_GPL(mbufmux_pool_create);

/**
 * mbufmux_pool_destroy() - destroy a pool
 * @pool: the pool, or NULL
 *
 * The owner must have cancelled every waiter, given every buffer back, and
 * must not call into the pool again: every call it made must have
 * returned, as for kmem_cache_destroy(). The pool is then freed at once.
 *
 * Buffers still out are a bug in the owner. As kmem_cache_destroy() with
 * objects still allocated, the pool reports it and is not freed: it loses
 * its debugfs directory, stays listed (``leaked`` in ``mbufmux/pools``,
 * its name taken) and works on, so that a late free of those buffers is
 * no use after free. It is freed when this module is unloaded, if they
 * all came back by then.
 *
 * Context: process context, may sleep.
 * Return: nothing.
 */
void mbufmux_pool_destroy(struct mbufmux_pool *pool)
{
	unsigned int left;

	if (!pool)
		return;

	debugfs_remove_recursive(pool->debugfs);
	pool->debugfs = NULL;
	WARN_ONCE(READ_ONCE(pool->nr_waiters),
		  "mbufmux: pool %s destroyed with waiters queued\n", pool->name);
	cancel_delayed_work_sync(&pool->retry_work);

	left = mbufmux_used(pool);
	if (likely(!left)) {
		mbufmux_pool_free(pool);
		return;
	}
	mutex_lock(&mbufmux_pools_lock);
	pool->leaked = true;
	mutex_unlock(&mbufmux_pools_lock);
	pr_err("pool %s destroyed with %u buffers in use: leaking it\n",
	       pool->name, left);
}
EXPORT_SYMBOL_GPL(mbufmux_pool_destroy);

static int __init mbufmux_init(void)
{
	mbufmux_wq = alloc_workqueue("mbufmux", 0, 0);
	if (!mbufmux_wq)
		return -ENOMEM;

	/* debugfs is optional: its failures are not errors (see debugfs.h). */
	mbufmux_debugfs_root = debugfs_create_dir("mbufmux", NULL);
	debugfs_create_file("pools", 0444, mbufmux_debugfs_root, NULL,
			    &mbufmux_pools_fops);
	return 0;
}

static void __exit mbufmux_exit(void)
{
	struct mbufmux_pool *pool, *next;

	debugfs_remove_recursive(mbufmux_debugfs_root);
	/*
	 * The pools left are leaked ones, or their owner's bug too. Every
	 * owner module is gone (it needed this one), so nothing calls into
	 * them any more: those whose buffers all came back can go.
	 */
	list_for_each_entry_safe(pool, next, &mbufmux_pools, pools_node) {
		if (mbufmux_used(pool)) {
			pr_err("pool %s left with %u buffers in use at unload: leaking it\n",
			       pool->name, mbufmux_used(pool));
			continue;
		}
		if (!pool->leaked)
			pr_err("pool %s never destroyed by its owner\n",
			       pool->name);
		mbufmux_pool_free(pool);
	}
	destroy_workqueue(mbufmux_wq);
}

module_init(mbufmux_init);
module_exit(mbufmux_exit);

MODULE_AUTHOR("The mbufmux developers");
MODULE_DESCRIPTION("A bounded, shared pool of mux buffers with a fair FIFO wait list");
MODULE_LICENSE("GPL");
MODULE_VERSION(MBUFMUX_VERSION);
