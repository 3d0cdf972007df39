// SPDX-License-Identifier: GPL-2.0
/*
 * bench_mbufmux_kern - microbenchmarks of the mbufmux pool, each next to
 * its baseline, in the style of the kernel's page_pool bench: loops timed
 * with the cycle counter (get_cycles()), kthreads bound per CPU.
 *
 *   fastpath    alloc+free per operation, nobody waiting, room under the
 *               limit: kmem_cache (zeroing, as Debian's init_on_alloc does
 *               anyway), mempool, objpool (with and without zeroing the
 *               object), mbufmux_buf_alloc/free on a zeroing pool and on
 *               one made as mbufmux_tcp makes its own (recycling, no
 *               zeroing), and mbufmux_get/put; on CPU 0 alone, then on
 *               every online CPU at once. Each figure is the median of
 *               @rounds runs, the variants interleaved so that noise hits
 *               them alike.
 *   handoff     from the free of the last buffer to the waiter's callback,
 *               p50 and p99, next to a bare queue_work() on a workqueue
 *               made like mbufmux's (queue_work() to the work function
 *               running); samples of both interleaved. For a zeroing pool
 *               and for mbufmux_tcp's kind; with the contexts in the root
 *               memory cgroup, in a child cgroup (the loader's), or the
 *               holder in the root and the waiter in the child; from a
 *               kthread (spaced), or back to back, from the callback of
 *               the handoff before.
 *   contention  @waiters kthreads against @bufs buffers for @contention_ms:
 *               operations per second, and the waits against the FIFO
 *               bound (waiters / bufs x the mean hold of a buffer): the
 *               longest and the 99th percentile; next to a counting
 *               semaphore guarding a kmem_cache (also FIFO). The threads
 *               wait as a semaphore's do, asleep in the queue
 *               (mbufmux_get_killable()); and, for the figure of the
 *               callback's work item, by a callback that completes what
 *               the thread sleeps on.
 *
 * Loading the module runs everything (it takes a while under emulation)
 * and succeeds; the figures are in debugfs, as JSON members and as a
 * table: /sys/kernel/debug/bench_mbufmux/{results,table}. bench/README.md
 * describes them; bench/vm-bench.sh drives the module.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/memcontrol.h>
#include <linux/mempool.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/semaphore.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/timex.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include "mbufmux.h"
#include "mbufmux_compat.h"

#ifdef MBUFMUX_HAVE_OBJPOOL
#include <linux/objpool.h>
#endif

static unsigned int size = 16384;
module_param(size, uint, 0444);
MODULE_PARM_DESC(size, "buffer size of the main runs, bytes (a zeroing pool's; mbufmux_tcp's, which zeroes nothing, is 65536)");

static unsigned int small_size = 256;
module_param(small_size, uint, 0444);
MODULE_PARM_DESC(small_size, "buffer size of the runs that isolate bookkeeping from zeroing");

static unsigned int fastpath_ms = 250;
module_param(fastpath_ms, uint, 0444);
MODULE_PARM_DESC(fastpath_ms, "duration of one fast-path run, ms");

static unsigned int rounds = 5;
module_param(rounds, uint, 0444);
MODULE_PARM_DESC(rounds, "fast-path runs per figure (the median is kept)");

static unsigned int variants = ~0U;
module_param(variants, uint, 0444);
MODULE_PARM_DESC(variants, "fast path: bit mask of the variants to run, in table order (to profile one)");

static unsigned int modes = 3;
module_param(modes, uint, 0444);
MODULE_PARM_DESC(modes, "fast path: bit mask, 1 CPU 0 alone, 2 all online CPUs at once");

static unsigned int samples = 2000;
module_param(samples, uint, 0444);
MODULE_PARM_DESC(samples, "handoff and queue_work latency samples each");

static unsigned int waiters = 32;
module_param(waiters, uint, 0444);
MODULE_PARM_DESC(waiters, "contention: waiter kthreads");

static unsigned int bufs = 4;
module_param(bufs, uint, 0444);
MODULE_PARM_DESC(bufs, "contention: buffers they share (the pool's limit)");

static unsigned int hold_us = 20;
module_param(hold_us, uint, 0444);
MODULE_PARM_DESC(hold_us, "contention: how long a holder keeps its buffer (sleeping), us");

static unsigned int contention_ms = 2000;
module_param(contention_ms, uint, 0444);
MODULE_PARM_DESC(contention_ms, "contention: duration of each run, ms");

static unsigned int tests = 7;
module_param(tests, uint, 0444);
MODULE_PARM_DESC(tests, "bit mask: 1 fastpath, 2 handoff, 4 contention");

/* Output: JSON members and a table, for debugfs. */
#define BENCH_OUT_SIZE	(32 * 1024)

struct bench_out {
	char *buf;
	size_t len;
};

static struct bench_out json_out, table_out;
static struct debugfs_blob_wrapper json_blob, table_blob;
static struct dentry *bench_debugfs;

static __printf(2, 3) void out(struct bench_out *o, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	o->len += vscnprintf(o->buf + o->len, BENCH_OUT_SIZE - o->len, fmt,
			     args);
	va_end(args);
}

/* Fixed point, thousandths: printed "%llu.%03u", fx_int(v), fx_frac(v) */
static u64 fx_int(u64 v)
{
	return div_u64(v, 1000);
}

static u32 fx_frac(u64 v)
{
	u32 rem;

	div_u64_rem(v, 1000, &rem);
	return rem;
}

/* @a / @b in thousandths, rounded; 0 if @b is 0. */
static u64 ratio_milli(u64 a, u64 b)
{
	return b ? div64_u64(a * 1000 + b / 2, b) : 0;
}

/* Cycle counter */

static u64 cycles_per_ms;

static void calibrate_cycles(void)
{
	u64 c0, c1, n0, n1;

	n0 = ktime_get_ns();
	c0 = get_cycles();
	msleep(50);
	c1 = get_cycles();
	n1 = ktime_get_ns();
	cycles_per_ms = div64_u64((c1 - c0) * NSEC_PER_MSEC, n1 - n0) ?: 1;
}

static u64 cycles_to_ns(u64 c)
{
	return div64_u64(c * NSEC_PER_MSEC, cycles_per_ms);
}

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/* The value below which @pm per mille of the sorted @v lie. */
static u64 percentile(const u64 *v, unsigned int n, unsigned int pm)
{
	unsigned int i = div_u64((u64)n * pm, 1000);

	return n ? v[min(i, n - 1)] : 0;
}

static void noop_available(struct mbufmux_waiter *w)
{
}

static const struct mbufmux_waiter_ops noop_waiter_ops = {
	.available = noop_available,
};

/* Fast path */

/* In the order they run in a round: mbufmux right after its baseline. */
enum fp_variant {
	FP_KMEM_CACHE,
	FP_MBUFMUX_BUF,
	FP_MBUFMUX_GET,
	FP_MEMPOOL,
	FP_OBJPOOL,
	FP_OBJPOOL_ZERO,
	FP_MBUFMUX_NO_ZERO,
	FP_NR,
};

static const char * const fp_names[FP_NR] = {
	[FP_KMEM_CACHE]		= "kmem_cache",
	[FP_MBUFMUX_BUF]	= "mbufmux_buf",
	[FP_MBUFMUX_GET]	= "mbufmux_get",
	[FP_MEMPOOL]		= "mempool",
	[FP_OBJPOOL]		= "objpool",
	[FP_OBJPOOL_ZERO]	= "objpool_zero",
	[FP_MBUFMUX_NO_ZERO]	= "mbufmux_no_zero",
};

/* The allocators of one buffer size. Caches are made as mbufmux makes its. */
struct fp_env {
	unsigned int size;
	struct kmem_cache *cache;
	struct kmem_cache *mempool_cache;
	mempool_t *mempool;
#ifdef MBUFMUX_HAVE_OBJPOOL
	struct objpool_head objpool;
#endif
	bool objpool_ok;
	struct mbufmux_pool *pool;
	/* As mbufmux_tcp makes its own: recycles, zeroes nothing. */
	struct mbufmux_pool *pool_no_zero;
};

#ifdef MBUFMUX_HAVE_OBJPOOL
/* A few objects per CPU: only one is out at a time per thread. */
static bool fp_objpool_init(struct fp_env *env)
{
	int err = objpool_init(&env->objpool, 4 * num_possible_cpus(),
			       env->size, GFP_KERNEL, NULL, NULL, NULL);

	if (err)
		pr_warn("objpool_init(%u bytes): %d, objpool not measured\n",
			env->size, err);
	return !err;
}

static void fp_objpool_fini(struct fp_env *env)
{
	objpool_fini(&env->objpool);
}

static void *fp_objpool_pop(struct fp_env *env)
{
	return objpool_pop(&env->objpool);
}

static void fp_objpool_push(struct fp_env *env, void *p)
{
	objpool_push(p, &env->objpool);
}
#else
/* objpool arrived in 6.7: older kernels measure the rest. */
static bool fp_objpool_init(struct fp_env *env)
{
	return false;
}

static void fp_objpool_fini(struct fp_env *env)
{
}

static void *fp_objpool_pop(struct fp_env *env)
{
	return NULL;
}

static void fp_objpool_push(struct fp_env *env, void *p)
{
}
#endif

struct fp_thread {
	struct fp_env *env;
	enum fp_variant variant;
	struct completion *go;
	struct completion done;
	struct mbufmux_waiter w;
	u64 ops;
	u64 cycles;
	u64 ns;
	int err;
};

/*
 * What mbufmux asks of the slab. Debian's init_on_alloc zeroes every slab
 * object anyway; mempool refuses __GFP_ZERO, and gets it from init_on_alloc.
 */
#define FP_GFP		(GFP_NOWAIT | __GFP_NOWARN | __GFP_ZERO)
#define FP_GFP_MEMPOOL	(GFP_NOWAIT | __GFP_NOWARN)
#define FP_BATCH	32

/* One alloc+free: the unit every fast-path figure is per. */
static int fp_op(struct fp_thread *t)
{
	struct fp_env *env = t->env;
	void *p;

	switch (t->variant) {
	case FP_KMEM_CACHE:
		p = kmem_cache_alloc(env->cache, FP_GFP);
		if (unlikely(!p))
			return -ENOMEM;
		kmem_cache_free(env->cache, p);
		break;
	case FP_MEMPOOL:
		p = mempool_alloc(env->mempool, FP_GFP_MEMPOOL);
		if (unlikely(!p))
			return -ENOMEM;
		mempool_free(p, env->mempool);
		break;
	case FP_OBJPOOL:
		p = fp_objpool_pop(env);
		if (unlikely(!p))
			return -ENOMEM;
		fp_objpool_push(env, p);
		break;
	case FP_OBJPOOL_ZERO:
		p = fp_objpool_pop(env);
		if (unlikely(!p))
			return -ENOMEM;
		memset(p, 0, env->size);
		fp_objpool_push(env, p);
		break;
	case FP_MBUFMUX_BUF:
		p = mbufmux_buf_alloc(env->pool, MBUFMUX_MARGIN_RESERVE);
		if (unlikely(!p))
			return -ENOMEM;
		mbufmux_buf_free(env->pool, p);
		break;
	case FP_MBUFMUX_NO_ZERO:
		p = mbufmux_buf_alloc(env->pool_no_zero, MBUFMUX_MARGIN_RESERVE);
		if (unlikely(!p))
			return -ENOMEM;
		mbufmux_buf_free(env->pool_no_zero, p);
		break;
	case FP_MBUFMUX_GET:
		p = mbufmux_get(&t->w, MBUFMUX_MARGIN_RESERVE);
		if (unlikely(!p))
			return -ENOMEM;
		mbufmux_put(&t->w);
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

static int fp_thread_fn(void *data)
{
	struct fp_thread *t = data;
	u64 c0, c1, n0, limit;
	unsigned int i;

	mbufmux_waiter_init(&t->w, t->env->pool, &noop_waiter_ops);
	wait_for_completion(t->go);

	/* Warm up the caches and the allocator's per-CPU state. */
	for (i = 0; i < FP_BATCH && !t->err; i++)
		t->err = fp_op(t);

	limit = fastpath_ms * cycles_per_ms;
	n0 = ktime_get_ns();
	c0 = get_cycles();
	c1 = c0;
	while (!t->err && c1 - c0 < limit) {
		for (i = 0; i < FP_BATCH; i++)
			t->err |= fp_op(t);
		t->ops += FP_BATCH;
		c1 = get_cycles();
		cond_resched();
	}
	t->ns = ktime_get_ns() - n0;
	t->cycles = c1 - c0;
	mbufmux_cancel(&t->w);
	complete(&t->done);
	return 0;
}

/*
 * Run @variant on the CPUs of @cpus at once. Returns the mean cost of an
 * operation on one CPU in picoseconds (and its cycles in *@cyc), 0 if it
 * could not run.
 */
static u64 fp_run(struct fp_env *env, enum fp_variant variant,
		  const struct cpumask *cpus, u64 *cyc)
{
	DECLARE_COMPLETION_ONSTACK(go);
	struct fp_thread *t;
	u64 ps = 0, cy = 0;
	unsigned int n = 0, i;
	int cpu, err = 0;

	t = kcalloc(nr_cpu_ids, sizeof(*t), GFP_KERNEL);
	if (!t)
		return 0;
	for_each_cpu(cpu, cpus) {
		struct task_struct *task;

		t[n].env = env;
		t[n].variant = variant;
		t[n].go = &go;
		init_completion(&t[n].done);
		task = kthread_create_on_cpu(fp_thread_fn, &t[n], cpu,
					     "bench_fp/%u");
		if (IS_ERR(task)) {
			err = PTR_ERR(task);
			break;
		}
		wake_up_process(task);
		n++;
	}
	complete_all(&go);
	for (i = 0; i < n; i++) {
		wait_for_completion(&t[i].done);
		if (t[i].err || !t[i].ops) {
			err = t[i].err ?: -EIO;
			continue;
		}
		ps += div64_u64(t[i].ns * 1000, t[i].ops);
		cy += div64_u64(t[i].cycles, t[i].ops);
	}
	kfree(t);
	if (err || !n) {
		pr_warn("fastpath %s: failed (%d)\n", fp_names[variant], err);
		return 0;
	}
	*cyc = div_u64(cy, n);
	return div_u64(ps, n);
}

static int fp_env_init(struct fp_env *env, unsigned int bsize,
		       unsigned int id)
{
	struct mbufmux_pool_params params = {
		.buf_size = bsize,
		.limit = 1024,
	};
	char name[32];
	int err;

	memset(env, 0, sizeof(*env));
	env->size = bsize;

	snprintf(name, sizeof(name), "bench_fp_kmem_%u", id);
	env->cache = kmem_cache_create_usercopy(name, bsize, 0,
						SLAB_ACCOUNT | SLAB_NO_MERGE,
						0, bsize, NULL);
	snprintf(name, sizeof(name), "bench_fp_mempool_%u", id);
	env->mempool_cache = kmem_cache_create_usercopy(name, bsize, 0,
							SLAB_ACCOUNT |
							SLAB_NO_MERGE,
							0, bsize, NULL);
	if (!env->cache || !env->mempool_cache)
		return -ENOMEM;
	/* As many reserved elements as a pool would keep in reserve. */
	env->mempool = mempool_create_slab_pool(16, env->mempool_cache);
	if (!env->mempool)
		return -ENOMEM;

	env->objpool_ok = fp_objpool_init(env);

	snprintf(name, sizeof(name), "bench_fp_%u", id);
	params.name = name;
	env->pool = mbufmux_pool_create(&params);
	if (IS_ERR(env->pool)) {
		err = PTR_ERR(env->pool);
		env->pool = NULL;
		return err;
	}
	snprintf(name, sizeof(name), "bench_fp_nz_%u", id);
	params.flags = MBUFMUX_POOL_NO_ZERO;
	env->pool_no_zero = mbufmux_pool_create(&params);
	if (IS_ERR(env->pool_no_zero)) {
		err = PTR_ERR(env->pool_no_zero);
		env->pool_no_zero = NULL;
		return err;
	}
	return 0;
}

static void fp_env_exit(struct fp_env *env)
{
	mbufmux_pool_destroy(env->pool_no_zero);
	mbufmux_pool_destroy(env->pool);
	if (env->objpool_ok)
		fp_objpool_fini(env);
	mempool_destroy(env->mempool);
	kmem_cache_destroy(env->mempool_cache);
	kmem_cache_destroy(env->cache);
}

/*
 * Medians of the fast-path figures of one size; [0]: CPU 0 alone, [1]: all
 * online CPUs. A ratio is the median of the ratios of each round, where
 * the variant ran a moment after the baseline (paired, against slow drifts
 * of the host's load).
 */
struct fp_result {
	u64 ps[2][FP_NR];
	u64 cyc[2][FP_NR];
	u64 ratio[2][FP_NR];	/* thousandths */
};

static u64 median(u64 *v, unsigned int n)
{
	sort(v, n, sizeof(*v), cmp_u64, NULL);
	return n ? v[n / 2] : 0;
}

static int fp_bench(unsigned int bsize, unsigned int id, struct fp_result *res)
{
	u64 (*ps)[2][FP_NR], (*cyc)[2][FP_NR];
	struct fp_env *env;
	unsigned int r, m, v, nr = max(rounds, 1U);
	u64 col[16];
	int err;

	nr = min_t(unsigned int, nr, ARRAY_SIZE(col));
	env = kzalloc(sizeof(*env), GFP_KERNEL);
	ps = kcalloc(nr, sizeof(*ps), GFP_KERNEL);
	cyc = kcalloc(nr, sizeof(*cyc), GFP_KERNEL);
	err = -ENOMEM;
	if (!env || !ps || !cyc)
		goto out;
	err = fp_env_init(env, bsize, id);
	if (err)
		goto out_env;

	for (r = 0; r < nr; r++)
		for (m = 0; m < 2; m++)
			for (v = 0; v < FP_NR; v++) {
				if (!(variants & BIT(v)) || !(modes & BIT(m)))
					continue;
				if ((v == FP_OBJPOOL || v == FP_OBJPOOL_ZERO) &&
				    !env->objpool_ok)
					continue;
				ps[r][m][v] = fp_run(env, v, m ? cpu_online_mask :
						     cpumask_of(0),
						     &cyc[r][m][v]);
			}

	for (m = 0; m < 2; m++)
		for (v = 0; v < FP_NR; v++) {
			for (r = 0; r < nr; r++)
				col[r] = ps[r][m][v];
			res->ps[m][v] = median(col, nr);
			for (r = 0; r < nr; r++)
				col[r] = cyc[r][m][v];
			res->cyc[m][v] = median(col, nr);
			for (r = 0; r < nr; r++)
				col[r] = ratio_milli(ps[r][m][v],
						     ps[r][m][FP_KMEM_CACHE]);
			res->ratio[m][v] = median(col, nr);
		}
out_env:
	fp_env_exit(env);
out:
	kfree(cyc);
	kfree(ps);
	kfree(env);
	return err;
}

static void fp_report(unsigned int bsize, const struct fp_result *res,
		      bool last)
{
	static const char * const mode_names[2] = { "cpu1", "cpus_all" };
	unsigned int m, v;
	u64 x, r;

	out(&json_out, "    \"%u\": {\n", bsize);
	for (m = 0; m < 2; m++) {
		out(&json_out, "      \"%s\": {\"cpus\": %u", mode_names[m],
		    m ? num_online_cpus() : 1);
		out(&table_out, "fastpath %6u B %-8s", bsize, mode_names[m]);
		for (v = 0; v < FP_NR; v++) {
			x = res->ps[m][v];
			if (!x)
				continue;
			r = res->ratio[m][v];
			out(&json_out,
			    ", \"%s\": {\"ns_per_op\": %llu.%03u, \"cycles_per_op\": %llu, \"ratio_vs_kmem_cache\": %llu.%03u}",
			    fp_names[v], fx_int(x), fx_frac(x), res->cyc[m][v],
			    fx_int(r), fx_frac(r));
			out(&table_out, " %s %llu.%01u", fp_names[v],
			    fx_int(x), fx_frac(x) / 100);
		}
		out(&json_out, "}%s\n", m ? "" : ",");
		out(&table_out, " (ns/op)\n");
	}
	out(&json_out, "    }%s\n", last ? "" : ",");
}

/* Handoff latency */

/*
 * Where the contexts' buffers are charged: all in the root cgroup (the
 * kthreads of the bench, sockets of a host without cgroups), all in one
 * child cgroup (the sockets of one container or systemd service), or the
 * holder in the root and the waiter in a child (a handoff that recharges).
 */
enum ho_memcg { HO_ROOT, HO_MEMCG, HO_MEMCG_CROSS };

static const char * const ho_memcg_names[] = {
	[HO_ROOT]		= "root",
	[HO_MEMCG]		= "child",
	[HO_MEMCG_CROSS]	= "root_to_child",
};

/**
 * struct ho_cfg - one handoff measurement
 * @name: its JSON member
 * @key: the top-level figure it gives (the ratio of the p50s)
 * @small: at small_size, not size
 * @no_zero: the pool as mbufmux_tcp makes its own (MBUFMUX_POOL_NO_ZERO)
 * @memcg: enum ho_memcg
 * @b2b: back to back: the waiter that was just handed the buffer gives it
 *	back from its callback, to a second waiter; that second handoff is
 *	timed (and the baseline is a work item queued from a work function)
 */
struct ho_cfg {
	const char *name;
	const char *key;
	bool small;
	bool no_zero;
	enum ho_memcg memcg;
	bool b2b;
};

static const struct ho_cfg ho_cfgs[] = {
	{ "zero", "handoff_ratio_vs_workqueue" },
	{ "zero_small", "handoff_ratio_vs_workqueue_small", .small = true },
	{ "zero_back_to_back", "handoff_ratio_vs_workqueue_back_to_back",
	  .b2b = true },
	{ "zero_memcg", "handoff_ratio_vs_workqueue_memcg",
	  .memcg = HO_MEMCG },
	{ "zero_memcg_back_to_back",
	  "handoff_ratio_vs_workqueue_memcg_back_to_back",
	  .memcg = HO_MEMCG, .b2b = true },
	{ "zero_memcg_cross", "handoff_ratio_vs_workqueue_memcg_cross",
	  .memcg = HO_MEMCG_CROSS },
	{ "no_zero", "handoff_ratio_vs_workqueue_no_zero", .no_zero = true },
	{ "no_zero_back_to_back",
	  "handoff_ratio_vs_workqueue_no_zero_back_to_back",
	  .no_zero = true, .b2b = true },
	{ "no_zero_memcg", "handoff_ratio_vs_workqueue_no_zero_memcg",
	  .no_zero = true, .memcg = HO_MEMCG },
	{ "no_zero_memcg_back_to_back",
	  "handoff_ratio_vs_workqueue_no_zero_memcg_back_to_back",
	  .no_zero = true, .memcg = HO_MEMCG, .b2b = true },
	{ "no_zero_memcg_cross", "handoff_ratio_vs_workqueue_no_zero_memcg_cross",
	  .no_zero = true, .memcg = HO_MEMCG_CROSS },
};

#define HO_NR	ARRAY_SIZE(ho_cfgs)

/* The child cgroup of the memcg runs: the loading process's, if not root. */
static struct mem_cgroup *bench_memcg;

struct ho_ctx {
	struct mbufmux_waiter holder;
	struct mbufmux_waiter waiter;
	struct mbufmux_waiter waiter2;	/* back to back: the second */
	struct workqueue_struct *wq;
	struct work_struct work;
	struct work_struct work2;	/* back to back: the second */
	struct completion ran;
	bool b2b;
	u64 t0, t1;
};

static void ho_available(struct mbufmux_waiter *w)
{
	struct ho_ctx *c = container_of(w, struct ho_ctx, waiter);

	if (c->b2b) {
		/* On to the second waiter at once: the timed handoff. */
		c->t0 = get_cycles();
		mbufmux_put(w);
		return;
	}
	c->t1 = get_cycles();
	complete(&c->ran);
}

static const struct mbufmux_waiter_ops ho_waiter_ops = {
	.available = ho_available,
};

static void ho_available2(struct mbufmux_waiter *w)
{
	struct ho_ctx *c = container_of(w, struct ho_ctx, waiter2);

	c->t1 = get_cycles();
	complete(&c->ran);
}

static const struct mbufmux_waiter_ops ho_waiter2_ops = {
	.available = ho_available2,
};

static void ho_work(struct work_struct *work)
{
	struct ho_ctx *c = container_of(work, struct ho_ctx, work);

	if (c->b2b) {
		c->t0 = get_cycles();
		queue_work(c->wq, &c->work2);
		return;
	}
	c->t1 = get_cycles();
	complete(&c->ran);
}

static void ho_work2(struct work_struct *work)
{
	struct ho_ctx *c = container_of(work, struct ho_ctx, work2);

	c->t1 = get_cycles();
	complete(&c->ran);
}

struct ho_result {
	bool ok;
	u64 ho[3];	/* p50, p99, max; ns */
	u64 recharges;	/* handoffs that recharged (a fresh buffer) */
	u64 recycled;	/* allocations served from kept buffers */
	u64 wq[3];
	int err;
};

struct ho_args {
	const struct ho_cfg *cfg;
	unsigned int id;
	struct ho_result *res;
	struct completion done;
};

static void ho_summary(u64 *v, unsigned int n, u64 out3[3])
{
	sort(v, n, sizeof(*v), cmp_u64, NULL);
	out3[0] = cycles_to_ns(percentile(v, n, 500));
	out3[1] = cycles_to_ns(percentile(v, n, 990));
	out3[2] = cycles_to_ns(n ? v[n - 1] : 0);
}

static int ho_thread_fn(void *data)
{
	struct ho_args *a = data;
	const struct ho_cfg *cfg = a->cfg;
	struct mbufmux_pool_params params = {
		.buf_size = cfg->small ? small_size : size,
		.limit = 1,
		.flags = cfg->no_zero ? MBUFMUX_POOL_NO_ZERO : 0,
	};
	struct mem_cgroup *memcg = cfg->memcg == HO_ROOT ? NULL : bench_memcg;
	struct workqueue_struct *wq = NULL;
	struct mbufmux_pool *pool = NULL;
	struct mbufmux_waiter *last;
	struct mbufmux_pool_stats st;
	u64 *lat_ho, *lat_wq;
	unsigned int i, n = 0;
	struct ho_ctx *c;
	char name[32];
	int err = -ENOMEM;

	lat_ho = kvmalloc_array(samples, sizeof(u64), GFP_KERNEL);
	lat_wq = kvmalloc_array(samples, sizeof(u64), GFP_KERNEL);
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	/* Made as mbufmux makes its workqueue. */
	wq = alloc_workqueue("bench_mbufmux", 0, 0);
	if (!lat_ho || !lat_wq || !c || !wq)
		goto out;
	snprintf(name, sizeof(name), "bench_ho_%u", a->id);
	params.name = name;
	pool = mbufmux_pool_create(&params);
	if (IS_ERR(pool)) {
		err = PTR_ERR(pool);
		pool = NULL;
		goto out;
	}
	c->wq = wq;
	c->b2b = cfg->b2b;
	mbufmux_waiter_init(&c->holder, pool, &noop_waiter_ops);
	mbufmux_waiter_init(&c->waiter, pool, &ho_waiter_ops);
	mbufmux_waiter_init(&c->waiter2, pool, &ho_waiter2_ops);
	/* The holder's cgroup is where the buffer it gives back is charged. */
	c->holder.memcg = cfg->memcg == HO_MEMCG ? memcg : NULL;
	c->waiter.memcg = memcg;
	c->waiter2.memcg = memcg;
	INIT_WORK(&c->work, ho_work);
	INIT_WORK(&c->work2, ho_work2);
	init_completion(&c->ran);
	last = cfg->b2b ? &c->waiter2 : &c->waiter;

	err = -EIO;
	/* One more round than samples: the first warms up, unrecorded. */
	for (i = 0; i <= samples; i++) {
		/* The holder takes the only buffer; the waiter(s) queue. */
		if (!mbufmux_get(&c->holder, MBUFMUX_MARGIN_RESERVE) ||
		    mbufmux_get(&c->waiter, MBUFMUX_MARGIN_RESERVE) ||
		    (cfg->b2b &&
		     mbufmux_get(&c->waiter2, MBUFMUX_MARGIN_RESERVE)))
			goto out_cancel;
		reinit_completion(&c->ran);
		c->t0 = get_cycles();
		mbufmux_put(&c->holder);
		wait_for_completion(&c->ran);
		lat_ho[n] = c->t1 - c->t0;
		if (!mbufmux_waiter_buf(last))
			goto out_cancel;
		mbufmux_put(last);

		reinit_completion(&c->ran);
		c->t0 = get_cycles();
		queue_work(wq, &c->work);
		wait_for_completion(&c->ran);
		lat_wq[n] = c->t1 - c->t0;
		if (i)
			n++;
		cond_resched();
	}
	mbufmux_pool_get_stats(pool, &st);
	a->res->recharges = st.recharges;
	a->res->recycled = st.recycled;
	ho_summary(lat_ho, n, a->res->ho);
	ho_summary(lat_wq, n, a->res->wq);
	err = 0;
out_cancel:
	mbufmux_cancel(&c->waiter2);
	mbufmux_cancel(&c->waiter);
	mbufmux_cancel(&c->holder);
	flush_work(&c->work);
	flush_work(&c->work2);
out:
	mbufmux_pool_destroy(pool);
	if (wq)
		destroy_workqueue(wq);
	kfree(c);
	kvfree(lat_wq);
	kvfree(lat_ho);
	a->res->err = err;
	complete(&a->done);
	return 0;
}

/* Runs on CPU 0, where mbufmux's bound workqueue then runs the callback. */
static int ho_bench(const struct ho_cfg *cfg, unsigned int id,
		    struct ho_result *res)
{
	struct ho_args a = { .cfg = cfg, .id = id, .res = res };
	struct task_struct *task;

	init_completion(&a.done);
	task = kthread_create_on_cpu(ho_thread_fn, &a, 0, "bench_ho/%u");
	if (IS_ERR(task))
		return PTR_ERR(task);
	wake_up_process(task);
	wait_for_completion(&a.done);
	if (res->err)
		pr_warn("handoff %s: failed (%d)\n", cfg->name, res->err);
	return res->err;
}

static void ho_report(const struct ho_cfg *cfg, const struct ho_result *r,
		      bool last)
{
	u64 r50 = ratio_milli(r->ho[0], r->wq[0]);
	u64 r99 = ratio_milli(r->ho[1], r->wq[1]);

	out(&json_out,
	    "    \"%s\": {\"size\": %u, \"pool\": \"%s\", \"memcg\": \"%s\", \"back_to_back\": %s, \"samples\": %u, \"recharges\": %llu, \"recycled\": %llu, \"handoff\": {\"p50_ns\": %llu, \"p99_ns\": %llu, \"max_ns\": %llu}, \"queue_work\": {\"p50_ns\": %llu, \"p99_ns\": %llu, \"max_ns\": %llu}, \"ratio_p50\": %llu.%03u, \"ratio_p99\": %llu.%03u}%s\n",
	    cfg->name, cfg->small ? small_size : size,
	    cfg->no_zero ? "no_zero" : "zero", ho_memcg_names[cfg->memcg],
	    cfg->b2b ? "true" : "false", samples, r->recharges, r->recycled,
	    r->ho[0], r->ho[1], r->ho[2], r->wq[0], r->wq[1], r->wq[2],
	    fx_int(r50), fx_frac(r50), fx_int(r99), fx_frac(r99),
	    last ? "" : ",");
	out(&table_out,
	    "handoff %-27s %6u B: p50 %llu p99 %llu | queue_work p50 %llu p99 %llu (ns), ratio p50 %llu.%03u p99 %llu.%03u\n",
	    cfg->name, cfg->small ? small_size : size, r->ho[0], r->ho[1],
	    r->wq[0], r->wq[1], fx_int(r50), fx_frac(r50), fx_int(r99),
	    fx_frac(r99));
}

/* Contention */

struct ct_env;

/* Waits kept per thread for the percentiles (the longest is kept apart). */
#define CT_WAITS_MAX	16384

struct ct_thread {
	struct ct_env *env;
	struct mbufmux_waiter w;
	struct completion handed;
	struct task_struct *task;
	u64 count;
	u64 wait_max_ns;
	u64 hold_ns;		/* sum: from having the buffer to giving it back */
	u32 *waits;		/* ns, the first CT_WAITS_MAX */
	unsigned int nr_waits;
};

/* How the contention's threads wait: the keys', the callback's, down(). */
enum ct_kind {
	CT_SLEEP,
	CT_CALLBACK,
	CT_SEMAPHORE,
	CT_NR
};

static const char *const ct_names[CT_NR] = {
	[CT_SLEEP] = "mbufmux",
	[CT_CALLBACK] = "mbufmux_callback",
	[CT_SEMAPHORE] = "semaphore",
};

struct ct_env {
	enum ct_kind kind;
	struct mbufmux_pool *pool;
	struct semaphore sem;
	struct kmem_cache *cache;
	struct completion go;
	atomic_t running;
	struct completion all_done;
	bool stop;
};

static void ct_available(struct mbufmux_waiter *w)
{
	complete(&container_of(w, struct ct_thread, w)->handed);
}

static const struct mbufmux_waiter_ops ct_waiter_ops = {
	.available = ct_available,
};

/*
 * What a holder does with its buffer: write a little of it, then keep it
 * for @hold_us while "its I/O is in flight" (sleeping, so the other
 * waiters run and find the buffers taken).
 */
static void ct_use(void *buf, u64 count)
{
	if (buf)
		memset(buf, (int)count, 64);
	if (hold_us)
		usleep_range(hold_us, hold_us + hold_us / 4 + 1);
}

static int ct_thread_fn(void *data)
{
	struct ct_thread *t = data;
	struct ct_env *env = t->env;
	u64 t0, t1, waited;
	void *buf;

	wait_for_completion(&env->go);
	while (!READ_ONCE(env->stop)) {
		t0 = ktime_get_ns();
		if (env->kind == CT_SEMAPHORE) {
			down(&env->sem);
			t1 = ktime_get_ns();
			buf = kmem_cache_alloc(env->cache, GFP_KERNEL);
			ct_use(buf, t->count);
			kmem_cache_free(env->cache, buf);
			t->hold_ns += ktime_get_ns() - t1;
			up(&env->sem);
		} else {
			if (env->kind == CT_SLEEP) {
				buf = mbufmux_get_killable(&t->w,
							   MBUFMUX_MARGIN_RESERVE);
			} else {
				reinit_completion(&t->handed);
				buf = mbufmux_get(&t->w, MBUFMUX_MARGIN_RESERVE);
				if (!buf) {
					wait_for_completion(&t->handed);
					buf = mbufmux_get(&t->w,
							  MBUFMUX_MARGIN_RESERVE);
				}
			}
			t1 = ktime_get_ns();
			ct_use(buf, t->count);
			t->hold_ns += ktime_get_ns() - t1;
			mbufmux_put(&t->w);
		}
		waited = t1 - t0;
		t->wait_max_ns = max(t->wait_max_ns, waited);
		if (t->nr_waits < CT_WAITS_MAX)
			t->waits[t->nr_waits++] = min_t(u64, waited, U32_MAX);
		t->count++;
		cond_resched();
	}
	if (env->kind != CT_SEMAPHORE)
		mbufmux_cancel(&t->w);
	if (atomic_dec_and_test(&env->running))
		complete(&env->all_done);
	while (!kthread_should_stop()) {
		set_current_state(TASK_INTERRUPTIBLE);
		if (!kthread_should_stop())
			schedule();
		__set_current_state(TASK_RUNNING);
	}
	return 0;
}

/*
 * The FIFO bound: with @waiters threads served in order by @bufs buffers,
 * each held @hold_ns_mean, a request waits for at most the holds of the
 * others ahead of it: waiters / bufs x the mean hold. The hold is the
 * buffer's, as the pool (or the semaphore) sees it: from giving it out to
 * getting it back, the handoff's wake-ups included, bufs x the run's time
 * / the operations (Little's law). The figures are the longest and the
 * 99th percentile wait over that bound (thousandths). @holder_ns_mean is
 * the hold as the holder sees it, from having the buffer to giving it
 * back, and @max_vs_holder the longest wait over the bound made of that.
 */
struct ct_result {
	u64 ops_per_s;
	u64 hold_ns_mean;
	u64 holder_ns_mean;
	u64 max_vs_holder;
	u64 fifo_bound_ns;
	u64 wait_p50_ns;
	u64 wait_p99_ns;
	u64 max_vs_bound;
	u64 p99_vs_bound;
	u64 wait_max_ns;
	u64 count_min;
	u64 count_max;
	u64 pool_wait_ns_max;
	u64 handoffs;
	u64 waits;
	u64 waiters_peak;
	u64 in_use_peak;
};

static int ct_run(enum ct_kind kind, unsigned int bsize,
		  struct ct_result *res)
{
	struct mbufmux_pool_params params = {
		.name = "bench_ct",
		.buf_size = bsize,
		.limit = bufs,
	};
	struct mbufmux_pool_stats *st = NULL;
	unsigned int i, n = 0;
	struct ct_thread *t;
	struct ct_env *env;
	u64 *all = NULL;
	u64 ns, hold = 0, ops = 0;
	unsigned int nr_all = 0, j;
	int err = -ENOMEM;

	env = kzalloc(sizeof(*env), GFP_KERNEL);
	t = kcalloc(waiters, sizeof(*t), GFP_KERNEL);
	all = kvmalloc_array(waiters, CT_WAITS_MAX * sizeof(*all), GFP_KERNEL);
	st = kzalloc(sizeof(*st), GFP_KERNEL);
	if (!env || !t || !all || !st)
		goto out;
	for (i = 0; i < waiters; i++) {
		t[i].waits = kvmalloc_array(CT_WAITS_MAX, sizeof(u32),
					    GFP_KERNEL);
		if (!t[i].waits)
			goto out;
	}
	env->kind = kind;
	init_completion(&env->go);
	init_completion(&env->all_done);
	sema_init(&env->sem, bufs);
	if (kind == CT_SEMAPHORE) {
		env->cache = kmem_cache_create_usercopy("bench_ct_kmem", bsize,
							0, SLAB_ACCOUNT |
							SLAB_NO_MERGE,
							0, bsize, NULL);
		if (!env->cache)
			goto out;
	} else {
		env->pool = mbufmux_pool_create(&params);
		if (IS_ERR(env->pool)) {
			err = PTR_ERR(env->pool);
			env->pool = NULL;
			goto out;
		}
	}

	for (n = 0; n < waiters; n++) {
		struct task_struct *task;

		t[n].env = env;
		mbufmux_waiter_init(&t[n].w, env->pool, &ct_waiter_ops);
		init_completion(&t[n].handed);
		/* Spread over the CPUs, like connections over RX queues. */
		task = kthread_create_on_cpu(ct_thread_fn, &t[n],
					     cpumask_local_spread(n, NUMA_NO_NODE),
					     "bench_ct/%u");
		if (IS_ERR(task)) {
			err = PTR_ERR(task);
			break;
		}
		get_task_struct(task);
		t[n].task = task;
		atomic_inc(&env->running);
		wake_up_process(task);
	}
	if (n < waiters)
		WRITE_ONCE(env->stop, true);
	ns = ktime_get_ns();
	complete_all(&env->go);
	if (n == waiters)
		msleep(contention_ms);
	WRITE_ONCE(env->stop, true);
	if (n)
		wait_for_completion(&env->all_done);
	ns = ktime_get_ns() - ns;
	for (i = 0; i < n; i++) {
		kthread_stop(t[i].task);
		put_task_struct(t[i].task);
	}
	if (n < waiters)
		goto out;

	memset(res, 0, sizeof(*res));
	res->count_min = U64_MAX;
	for (i = 0; i < n; i++) {
		ops += t[i].count;
		hold += t[i].hold_ns;
		res->wait_max_ns = max(res->wait_max_ns, t[i].wait_max_ns);
		res->count_min = min(res->count_min, t[i].count);
		res->count_max = max(res->count_max, t[i].count);
		for (j = 0; j < t[i].nr_waits; j++)
			all[nr_all++] = t[i].waits[j];
	}
	res->ops_per_s = div64_u64(ops * NSEC_PER_SEC, ns);
	res->hold_ns_mean = div64_u64(ns * bufs, ops ?: 1);
	res->fifo_bound_ns = div_u64(res->hold_ns_mean * waiters, bufs);
	res->holder_ns_mean = div64_u64(hold, ops ?: 1);
	res->max_vs_holder = ratio_milli(res->wait_max_ns,
					 div_u64(res->holder_ns_mean * waiters,
						 bufs));
	sort(all, nr_all, sizeof(*all), cmp_u64, NULL);
	res->wait_p50_ns = percentile(all, nr_all, 500);
	res->wait_p99_ns = percentile(all, nr_all, 990);
	res->max_vs_bound = ratio_milli(res->wait_max_ns, res->fifo_bound_ns);
	res->p99_vs_bound = ratio_milli(res->wait_p99_ns, res->fifo_bound_ns);
	if (env->pool) {
		mbufmux_pool_get_stats(env->pool, st);
		res->pool_wait_ns_max = st->wait_ns_max;
		res->handoffs = st->handoffs;
		res->waits = st->waits;
		res->waiters_peak = st->waiters_peak;
		res->in_use_peak = st->peak;
	}
	err = 0;
out:
	if (env) {
		mbufmux_pool_destroy(env->pool);
		kmem_cache_destroy(env->cache);
	}
	kfree(st);
	kvfree(all);
	for (i = 0; t && i < waiters; i++)
		kvfree(t[i].waits);
	kfree(t);
	kfree(env);
	if (err)
		pr_warn("contention (%s): failed (%d)\n", ct_names[kind], err);
	return err;
}

static void ct_report(const char *name, const struct ct_result *r, bool last)
{
	out(&json_out,
	    "    \"%s\": {\"ops_per_sec\": %llu, \"hold_us_mean\": %llu.%03u, \"fifo_bound_us\": %llu.%03u, \"wait_p50_us\": %llu.%03u, \"wait_p99_us\": %llu.%03u, \"wait_max_us\": %llu.%03u, \"wait_max_vs_fifo_bound\": %llu.%03u, \"wait_p99_vs_fifo_bound\": %llu.%03u, \"holder_us_mean\": %llu.%03u, \"wait_max_vs_holder_bound\": %llu.%03u, \"count_min\": %llu, \"count_max\": %llu",
	    name, r->ops_per_s, fx_int(r->hold_ns_mean),
	    fx_frac(r->hold_ns_mean), fx_int(r->fifo_bound_ns),
	    fx_frac(r->fifo_bound_ns), fx_int(r->wait_p50_ns),
	    fx_frac(r->wait_p50_ns), fx_int(r->wait_p99_ns),
	    fx_frac(r->wait_p99_ns), fx_int(r->wait_max_ns),
	    fx_frac(r->wait_max_ns), fx_int(r->max_vs_bound),
	    fx_frac(r->max_vs_bound), fx_int(r->p99_vs_bound),
	    fx_frac(r->p99_vs_bound), fx_int(r->holder_ns_mean),
	    fx_frac(r->holder_ns_mean), fx_int(r->max_vs_holder),
	    fx_frac(r->max_vs_holder), r->count_min, r->count_max);
	if (r->handoffs || r->waits)
		out(&json_out,
		    ", \"pool_wait_max_us\": %llu, \"handoffs\": %llu, \"waits\": %llu, \"waiters_peak\": %llu, \"in_use_peak\": %llu",
		    div_u64(r->pool_wait_ns_max, 1000), r->handoffs, r->waits,
		    r->waiters_peak, r->in_use_peak);
	out(&json_out, "}%s\n", last ? "" : ",");
	out(&table_out,
	    "contention %-10s %u waiters / %u bufs: %llu ops/s, hold %llu us (holder's %llu), FIFO bound %llu us, wait p50 %llu p99 %llu max %llu us, max/bound %llu.%03u, per-waiter ops %llu..%llu\n",
	    name, waiters, bufs, r->ops_per_s, div_u64(r->hold_ns_mean, 1000),
	    div_u64(r->holder_ns_mean, 1000),
	    div_u64(r->fifo_bound_ns, 1000), div_u64(r->wait_p50_ns, 1000),
	    div_u64(r->wait_p99_ns, 1000), div_u64(r->wait_max_ns, 1000),
	    fx_int(r->max_vs_bound), fx_frac(r->max_vs_bound), r->count_min,
	    r->count_max);
}

/* Module */

/* A top-level figure: a JSON member and a line of the table. */
static void out_key(const char *name, u64 milli)
{
	out(&json_out, "  \"%s\": %llu.%03u,\n", name, fx_int(milli),
	    fx_frac(milli));
	out(&table_out, "%-40s %llu.%03u\n", name, fx_int(milli),
	    fx_frac(milli));
}

static void bench_run(void)
{
	unsigned int sizes[2] = { size, small_size };
	bool fp_ok[2] = {}, ho_any = false, ct_ok = false;
	struct ho_result *ho = NULL;
	struct ct_result ct[CT_NR] = {};
	struct fp_result *fp = NULL;
	u64 t0 = ktime_get_ns();
	unsigned int i, last = 0;

	calibrate_cycles();
	pr_info("begin: %llu cycles/ms, %u online CPUs, memcg runs: %s\n",
		cycles_per_ms, num_online_cpus(),
		bench_memcg ? "in the loader's cgroup" : "skipped");

	if (tests & 1) {
		fp = kcalloc(2, sizeof(*fp), GFP_KERNEL);
		for (i = 0; fp && i < 2; i++)
			fp_ok[i] = !fp_bench(sizes[i], i, &fp[i]);
	}
	if (tests & 2) {
		ho = kcalloc(HO_NR, sizeof(*ho), GFP_KERNEL);
		for (i = 0; ho && i < HO_NR; i++) {
			if (ho_cfgs[i].memcg != HO_ROOT && !bench_memcg)
				continue;
			ho[i].ok = !ho_bench(&ho_cfgs[i], i, &ho[i]);
			if (ho[i].ok) {
				ho_any = true;
				last = i;
			}
		}
	}
	if (tests & 4)
		for (i = 0, ct_ok = true; ct_ok && i < CT_NR; i++)
			ct_ok = !ct_run(i, size, &ct[i]);

	out(&json_out,
	    "  \"kernel\": {\"cycles_per_us\": %llu, \"online_cpus\": %u, \"size\": %u, \"small_size\": %u, \"fastpath_ms\": %u, \"rounds\": %u, \"samples\": %u, \"waiters\": %u, \"bufs\": %u, \"hold_us\": %u, \"contention_ms\": %u, \"memcg\": %s},\n",
	    div_u64(cycles_per_ms, 1000), num_online_cpus(), size, small_size,
	    fastpath_ms, rounds, samples, waiters, bufs, hold_us,
	    contention_ms, bench_memcg ? "true" : "false");

	if (fp_ok[0] || fp_ok[1]) {
		out(&json_out, "  \"fastpath\": {\n");
		for (i = 0; i < 2; i++)
			if (fp_ok[i])
				fp_report(sizes[i], &fp[i], i == 1 || !fp_ok[1]);
		out(&json_out, "  },\n");
	}
	if (ho_any) {
		out(&json_out, "  \"handoff\": {\n");
		for (i = 0; i < HO_NR; i++)
			if (ho[i].ok)
				ho_report(&ho_cfgs[i], &ho[i], i == last);
		out(&json_out, "  },\n");
	}
	if (ct_ok) {
		out(&json_out,
		    "  \"contention\": {\n    \"waiters\": %u, \"bufs\": %u, \"size\": %u, \"hold_us\": %u, \"ms\": %u,\n",
		    waiters, bufs, size, hold_us, contention_ms);
		for (i = 0; i < CT_NR; i++)
			ct_report(ct_names[i], &ct[i], i == CT_NR - 1);
		out(&json_out, "  },\n");
	}

	/* The keys: the pool as mbufmux_tcp makes it (recycling, no zeroing) */
	if (fp_ok[0]) {
		out_key("fastpath_ratio_vs_kmem_cache",
			fp[0].ratio[0][FP_MBUFMUX_NO_ZERO]);
		out_key("fastpath_ratio_vs_kmem_cache_cpus_all",
			fp[0].ratio[1][FP_MBUFMUX_NO_ZERO]);
		out_key("fastpath_zeroing_ratio_vs_kmem_cache",
			fp[0].ratio[0][FP_MBUFMUX_BUF]);
	}
	if (fp_ok[1]) {
		out_key("fastpath_ratio_vs_kmem_cache_small",
			fp[1].ratio[0][FP_MBUFMUX_NO_ZERO]);
		out_key("fastpath_ratio_vs_kmem_cache_small_cpus_all",
			fp[1].ratio[1][FP_MBUFMUX_NO_ZERO]);
		out_key("fastpath_zeroing_ratio_vs_kmem_cache_small",
			fp[1].ratio[0][FP_MBUFMUX_BUF]);
	}
	for (i = 0; ho && i < HO_NR; i++)
		if (ho[i].ok)
			out_key(ho_cfgs[i].key,
				ratio_milli(ho[i].ho[0], ho[i].wq[0]));
	if (ct_ok) {
		out_key("fairness_wait_vs_fifo_bound",
			ct[CT_SLEEP].max_vs_bound);
		out_key("fairness_wait_vs_fifo_bound_callback",
			ct[CT_CALLBACK].max_vs_bound);
		out_key("fairness_wait_vs_fifo_bound_semaphore",
			ct[CT_SEMAPHORE].max_vs_bound);
		out_key("fairness_wait_p99_vs_fifo_bound",
			ct[CT_SLEEP].p99_vs_bound);
		out_key("contention_ops_ratio_vs_semaphore",
			ratio_milli(ct[CT_SLEEP].ops_per_s,
				    ct[CT_SEMAPHORE].ops_per_s));
		out_key("contention_ops_ratio_vs_semaphore_callback",
			ratio_milli(ct[CT_CALLBACK].ops_per_s,
				    ct[CT_SEMAPHORE].ops_per_s));
	}
	out(&json_out, "  \"kernel_bench_secs\": %llu,\n",
	    div_u64(ktime_get_ns() - t0, NSEC_PER_SEC));
	kfree(ho);
	kfree(fp);
	pr_info("end\n");
}

/*
 * The memcg runs take the cgroup of the process that loads the module
 * (bench/vm-bench.sh loads it from a child cgroup of its own); none if it
 * is the root, or if the kernel has no memory controller.
 */
static void bench_memcg_get(void)
{
#ifdef CONFIG_MEMCG
	struct mem_cgroup *memcg = get_mem_cgroup_from_mm(current->mm);

	if (memcg && !parent_mem_cgroup(memcg)) {
		/* The root: no reference to drop (see css_put()). */
		mem_cgroup_put(memcg);
		memcg = NULL;
	}
	bench_memcg = memcg;
#endif
}

static void bench_memcg_put(void)
{
#ifdef CONFIG_MEMCG
	mem_cgroup_put(bench_memcg);
	bench_memcg = NULL;
#endif
}

static int __init bench_mbufmux_init(void)
{
	if (!size || !small_size || !waiters || !bufs || !samples ||
	    waiters > 4096 || samples > 1000000)
		return -EINVAL;
	json_out.buf = vzalloc(BENCH_OUT_SIZE);
	table_out.buf = vzalloc(BENCH_OUT_SIZE);
	if (!json_out.buf || !table_out.buf) {
		vfree(json_out.buf);
		vfree(table_out.buf);
		return -ENOMEM;
	}

	/* Never fails from here: busybox insmod retries failed loads. */
	bench_memcg_get();
	bench_run();
	bench_memcg_put();

	json_blob.data = json_out.buf;
	json_blob.size = json_out.len;
	table_blob.data = table_out.buf;
	table_blob.size = table_out.len;
	bench_debugfs = debugfs_create_dir("bench_mbufmux", NULL);
	debugfs_create_blob("results", 0444, bench_debugfs, &json_blob);
	debugfs_create_blob("table", 0444, bench_debugfs, &table_blob);
	return 0;
}

static void __exit bench_mbufmux_exit(void)
{
	debugfs_remove_recursive(bench_debugfs);
	vfree(json_out.buf);
	vfree(table_out.buf);
}

module_init(bench_mbufmux_init);
module_exit(bench_mbufmux_exit);

MODULE_AUTHOR("The mbufmux developers");
MODULE_DESCRIPTION("Benchmarks of the mbufmux pool against kmem_cache, mempool, objpool and workqueues");
MODULE_LICENSE("GPL");
