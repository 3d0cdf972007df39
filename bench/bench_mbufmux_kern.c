// SPDX-License-Identifier: GPL-2.0
/*
 * bench_mbufmux_kern - microbenchmarks of the mbufmux pool, each next to
 * its baseline, in the style of the kernel's page_pool bench: loops timed
 * with the cycle counter (get_cycles()), kthreads bound per CPU.
 *
 *   fastpath    alloc+free per operation, nobody waiting, room under the
 *               limit: kmem_cache, mempool, objpool (with and without
 *               zeroing the object), mbufmux_buf_alloc/free and
 *               mbufmux_get/put; on CPU 0 alone, then on every online CPU
 *               at once. Each figure is the median of @rounds runs, the
 *               variants interleaved so that noise hits them alike.
 *   handoff     from the free of the last buffer to the waiter's callback,
 *               p50 and p99, next to a bare queue_work() on a workqueue
 *               made like mbufmux's (queue_work() to the work function
 *               running); samples of both interleaved.
 *   contention  @waiters kthreads against @bufs buffers for @contention_ms:
 *               operations per second, Jain's fairness index of the
 *               per-waiter service counts, longest wait; next to a
 *               counting semaphore guarding a kmem_cache (also FIFO).
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
#include <linux/mempool.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/semaphore.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/timex.h>
#include <linux/version.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>

#include "mbufmux.h"

/* objpool arrived in 6.7: older kernels measure the rest. */
#if KERNEL_VERSION(6, 7, 0) <= LINUX_VERSION_CODE
#define BENCH_HAVE_OBJPOOL
#include <linux/objpool.h>
#endif
#ifndef SLAB_NO_MERGE
#define SLAB_NO_MERGE 0
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

/* Jain's fairness index of @n counts, in thousandths: (sum x)^2 / (n sum x^2) */
static u64 jain_milli(const u64 *x, unsigned int n)
{
	u64 sum = 0, sq = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		sum += x[i];
		sq += x[i] * x[i];
	}
	if (!sq)
		return 0;
	/* Scale down big sums so that sum^2 * 1000 fits in 64 bits. */
	while (sum > (1ULL << 26)) {
		sum >>= 1;
		sq >>= 2;
	}
	return div64_u64(sum * sum * 1000 + n * sq / 2, n * sq ?: 1);
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
	FP_NR,
};

static const char * const fp_names[FP_NR] = {
	[FP_KMEM_CACHE]		= "kmem_cache",
	[FP_MBUFMUX_BUF]	= "mbufmux_buf",
	[FP_MBUFMUX_GET]	= "mbufmux_get",
	[FP_MEMPOOL]		= "mempool",
	[FP_OBJPOOL]		= "objpool",
	[FP_OBJPOOL_ZERO]	= "objpool_zero",
};

/* The allocators of one buffer size. Caches are made as mbufmux makes its. */
struct fp_env {
	unsigned int size;
	struct kmem_cache *cache;
	struct kmem_cache *mempool_cache;
	mempool_t *mempool;
#ifdef BENCH_HAVE_OBJPOOL
	struct objpool_head objpool;
#endif
	bool objpool_ok;
	struct mbufmux_pool *pool;
};

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
#ifdef BENCH_HAVE_OBJPOOL
	case FP_OBJPOOL:
		p = objpool_pop(&env->objpool);
		if (unlikely(!p))
			return -ENOMEM;
		objpool_push(p, &env->objpool);
		break;
	case FP_OBJPOOL_ZERO:
		p = objpool_pop(&env->objpool);
		if (unlikely(!p))
			return -ENOMEM;
		memset(p, 0, env->size);
		objpool_push(p, &env->objpool);
		break;
#endif
	case FP_MBUFMUX_BUF:
		p = mbufmux_buf_alloc(env->pool, MBUFMUX_MARGIN_RESERVE);
		if (unlikely(!p))
			return -ENOMEM;
		mbufmux_buf_free(env->pool, p);
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

#ifdef BENCH_HAVE_OBJPOOL
	/* A few objects per CPU: only one is out at a time per thread. */
	err = objpool_init(&env->objpool, 4 * num_possible_cpus(), bsize,
			   GFP_KERNEL, NULL, NULL, NULL);
	if (err)
		pr_warn("objpool_init(%u bytes): %d, objpool not measured\n",
			bsize, err);
	env->objpool_ok = !err;
#endif

	snprintf(name, sizeof(name), "bench_fp_%u", id);
	params.name = name;
	env->pool = mbufmux_pool_create(&params);
	if (IS_ERR(env->pool)) {
		err = PTR_ERR(env->pool);
		env->pool = NULL;
		return err;
	}
	return 0;
}

static void fp_env_exit(struct fp_env *env)
{
	mbufmux_pool_destroy(env->pool);
#ifdef BENCH_HAVE_OBJPOOL
	if (env->objpool_ok)
		objpool_fini(&env->objpool);
#endif
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

struct ho_ctx {
	struct mbufmux_waiter holder;
	struct mbufmux_waiter waiter;
	struct work_struct work;
	struct work_struct barrier;
	struct completion ran;
	u64 t1;
};

static void ho_available(struct mbufmux_waiter *w)
{
	struct ho_ctx *c = container_of(w, struct ho_ctx, waiter);

	c->t1 = get_cycles();
	complete(&c->ran);
}

static const struct mbufmux_waiter_ops ho_waiter_ops = {
	.available = ho_available,
};

static void ho_work(struct work_struct *work)
{
	struct ho_ctx *c = container_of(work, struct ho_ctx, work);

	c->t1 = get_cycles();
	complete(&c->ran);
}

static void ho_barrier(struct work_struct *work)
{
}

struct ho_result {
	u64 ho[3];	/* p50, p99, max; ns */
	u64 clean_handoffs;	/* samples that took the clean buffer */
	u64 wq[3];
	int err;
};

struct ho_args {
	unsigned int bsize;
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

/* Is the pool still clearing the buffer that a clean handoff replaced? */
static bool ho_clearing(struct mbufmux_pool *pool)
{
	struct mbufmux_pool_stats st;

	mbufmux_pool_get_stats(pool, &st);
	return st.clean_handoffs && !st.clean;
}

static int ho_thread_fn(void *data)
{
	struct ho_args *a = data;
	struct mbufmux_pool_params params = {
		.buf_size = a->bsize,
		.limit = 1,
	};
	struct workqueue_struct *wq = NULL;
	struct mbufmux_pool *pool = NULL;
	struct mbufmux_pool_stats st;
	u64 *lat_ho, *lat_wq, t0;
	unsigned int i, k, n = 0;
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
	mbufmux_waiter_init(&c->holder, pool, &noop_waiter_ops);
	mbufmux_waiter_init(&c->waiter, pool, &ho_waiter_ops);
	INIT_WORK(&c->work, ho_work);
	INIT_WORK(&c->barrier, ho_barrier);
	init_completion(&c->ran);

	err = -EIO;
	/* One more round than samples: the first warms up, unrecorded. */
	for (i = 0; i <= samples; i++) {
		/* The holder takes the only buffer; the waiter queues. */
		if (!mbufmux_get(&c->holder, MBUFMUX_MARGIN_RESERVE) ||
		    mbufmux_get(&c->waiter, MBUFMUX_MARGIN_RESERVE))
			goto out_cancel;
		reinit_completion(&c->ran);
		t0 = get_cycles();
		mbufmux_put(&c->holder);
		wait_for_completion(&c->ran);
		lat_ho[n] = c->t1 - t0;
		if (!mbufmux_waiter_buf(&c->waiter))
			goto out_cancel;
		/*
		 * The pool clears the buffer a clean handoff replaced from a
		 * work item that runs after the callback, on this CPU: let it
		 * finish, or the baseline's work item would wait behind it.
		 * Both workqueues share this CPU's workers, so a work item
		 * queued now runs after it, unless it slept.
		 */
		for (k = 0; k < 100 && ho_clearing(pool); k++) {
			queue_work(wq, &c->barrier);
			flush_work(&c->barrier);
		}
		mbufmux_put(&c->waiter);

		reinit_completion(&c->ran);
		t0 = get_cycles();
		queue_work(wq, &c->work);
		wait_for_completion(&c->ran);
		lat_wq[n] = c->t1 - t0;
		if (i)
			n++;
		cond_resched();
	}
	mbufmux_pool_get_stats(pool, &st);
	a->res->clean_handoffs = st.clean_handoffs;
	ho_summary(lat_ho, n, a->res->ho);
	ho_summary(lat_wq, n, a->res->wq);
	err = 0;
out_cancel:
	mbufmux_cancel(&c->waiter);
	mbufmux_cancel(&c->holder);
	flush_work(&c->work);
	flush_work(&c->barrier);
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
static int ho_bench(unsigned int bsize, unsigned int id, struct ho_result *res)
{
	struct ho_args a = { .bsize = bsize, .id = id, .res = res };
	struct task_struct *task;

	init_completion(&a.done);
	task = kthread_create_on_cpu(ho_thread_fn, &a, 0, "bench_ho/%u");
	if (IS_ERR(task))
		return PTR_ERR(task);
	wake_up_process(task);
	wait_for_completion(&a.done);
	if (res->err)
		pr_warn("handoff %u B: failed (%d)\n", bsize, res->err);
	return res->err;
}

static void ho_report(unsigned int bsize, const struct ho_result *r, bool last)
{
	u64 r50 = ratio_milli(r->ho[0], r->wq[0]);
	u64 r99 = ratio_milli(r->ho[1], r->wq[1]);

	out(&json_out,
	    "    \"%u\": {\"samples\": %u, \"clean_handoffs\": %llu, \"handoff\": {\"p50_ns\": %llu, \"p99_ns\": %llu, \"max_ns\": %llu}, \"queue_work\": {\"p50_ns\": %llu, \"p99_ns\": %llu, \"max_ns\": %llu}, \"ratio_p50\": %llu.%03u, \"ratio_p99\": %llu.%03u}%s\n",
	    bsize, samples, r->clean_handoffs, r->ho[0], r->ho[1], r->ho[2],
	    r->wq[0], r->wq[1], r->wq[2], fx_int(r50), fx_frac(r50),
	    fx_int(r99), fx_frac(r99), last ? "" : ",");
	out(&table_out,
	    "handoff  %6u B: handoff p50 %llu p99 %llu | queue_work p50 %llu p99 %llu (ns), ratio p50 %llu.%03u p99 %llu.%03u\n",
	    bsize, r->ho[0], r->ho[1], r->wq[0], r->wq[1],
	    fx_int(r50), fx_frac(r50), fx_int(r99), fx_frac(r99));
}

/* Contention */

struct ct_env;

struct ct_thread {
	struct ct_env *env;
	struct mbufmux_waiter w;
	struct completion handed;
	struct task_struct *task;
	u64 count;
	u64 wait_max_ns;
};

struct ct_env {
	bool use_sem;
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
	u64 t0, waited;
	void *buf;

	wait_for_completion(&env->go);
	while (!READ_ONCE(env->stop)) {
		t0 = ktime_get_ns();
		if (env->use_sem) {
			down(&env->sem);
			waited = ktime_get_ns() - t0;
			buf = kmem_cache_alloc(env->cache, GFP_KERNEL);
			ct_use(buf, t->count);
			kmem_cache_free(env->cache, buf);
			up(&env->sem);
		} else {
			reinit_completion(&t->handed);
			buf = mbufmux_get(&t->w, MBUFMUX_MARGIN_RESERVE);
			if (!buf) {
				wait_for_completion(&t->handed);
				buf = mbufmux_get(&t->w, MBUFMUX_MARGIN_RESERVE);
			}
			waited = ktime_get_ns() - t0;
			ct_use(buf, t->count);
			mbufmux_put(&t->w);
		}
		t->wait_max_ns = max(t->wait_max_ns, waited);
		t->count++;
		cond_resched();
	}
	if (!env->use_sem)
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

struct ct_result {
	u64 ops_per_s;
	u64 jain;	/* thousandths */
	u64 wait_max_ns;
	u64 count_min;
	u64 count_max;
	u64 pool_wait_ns_max;
	u64 handoffs;
	u64 waits;
	u64 waiters_peak;
	u64 in_use_peak;
};

static int ct_run(bool use_sem, unsigned int bsize, struct ct_result *res)
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
	u64 *counts = NULL;
	u64 ns;
	int err = -ENOMEM;

	env = kzalloc(sizeof(*env), GFP_KERNEL);
	t = kcalloc(waiters, sizeof(*t), GFP_KERNEL);
	counts = kcalloc(waiters, sizeof(*counts), GFP_KERNEL);
	st = kzalloc(sizeof(*st), GFP_KERNEL);
	if (!env || !t || !counts || !st)
		goto out;
	env->use_sem = use_sem;
	init_completion(&env->go);
	init_completion(&env->all_done);
	sema_init(&env->sem, bufs);
	if (use_sem) {
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
		counts[i] = t[i].count;
		res->ops_per_s += t[i].count;
		res->wait_max_ns = max(res->wait_max_ns, t[i].wait_max_ns);
		res->count_min = min(res->count_min, t[i].count);
		res->count_max = max(res->count_max, t[i].count);
	}
	res->ops_per_s = div64_u64(res->ops_per_s * NSEC_PER_SEC, ns);
	res->jain = jain_milli(counts, n);
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
	kfree(counts);
	kfree(t);
	kfree(env);
	if (err)
		pr_warn("contention (%s): failed (%d)\n",
			use_sem ? "semaphore" : "mbufmux", err);
	return err;
}

static void ct_report(const char *name, const struct ct_result *r, bool last)
{
	out(&json_out,
	    "    \"%s\": {\"ops_per_sec\": %llu, \"fairness_jain\": %llu.%03u, \"wait_max_us\": %llu, \"count_min\": %llu, \"count_max\": %llu",
	    name, r->ops_per_s, fx_int(r->jain), fx_frac(r->jain),
	    div_u64(r->wait_max_ns, 1000), r->count_min, r->count_max);
	if (r->handoffs || r->waits)
		out(&json_out,
		    ", \"pool_wait_max_us\": %llu, \"handoffs\": %llu, \"waits\": %llu, \"waiters_peak\": %llu, \"in_use_peak\": %llu",
		    div_u64(r->pool_wait_ns_max, 1000), r->handoffs, r->waits,
		    r->waiters_peak, r->in_use_peak);
	out(&json_out, "}%s\n", last ? "" : ",");
	out(&table_out,
	    "contention %-10s %u waiters / %u bufs: %llu ops/s, jain %llu.%03u, longest wait %llu us, per-waiter ops %llu..%llu\n",
	    name, waiters, bufs, r->ops_per_s, fx_int(r->jain), fx_frac(r->jain),
	    div_u64(r->wait_max_ns, 1000), r->count_min, r->count_max);
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
	bool fp_ok[2] = {}, ho_ok[2] = {}, ct_ok = false;
	struct ho_result ho[2] = {};
	struct ct_result ct[2] = {};
	struct fp_result *fp = NULL;
	u64 t0 = ktime_get_ns();
	unsigned int i;

	calibrate_cycles();
	pr_info("begin: %llu cycles/ms, %u online CPUs\n", cycles_per_ms,
		num_online_cpus());

	if (tests & 1) {
		fp = kcalloc(2, sizeof(*fp), GFP_KERNEL);
		for (i = 0; fp && i < 2; i++)
			fp_ok[i] = !fp_bench(sizes[i], i, &fp[i]);
	}
	if (tests & 2)
		for (i = 0; i < 2; i++)
			ho_ok[i] = !ho_bench(sizes[i], i, &ho[i]);
	if (tests & 4)
		ct_ok = !ct_run(false, size, &ct[0]) &&
			!ct_run(true, size, &ct[1]);

	out(&json_out,
	    "  \"kernel\": {\"cycles_per_us\": %llu, \"online_cpus\": %u, \"size\": %u, \"small_size\": %u, \"fastpath_ms\": %u, \"rounds\": %u, \"samples\": %u, \"waiters\": %u, \"bufs\": %u, \"hold_us\": %u, \"contention_ms\": %u},\n",
	    div_u64(cycles_per_ms, 1000), num_online_cpus(), size, small_size,
	    fastpath_ms, rounds, samples, waiters, bufs, hold_us,
	    contention_ms);

	if (fp_ok[0] || fp_ok[1]) {
		out(&json_out, "  \"fastpath\": {\n");
		for (i = 0; i < 2; i++)
			if (fp_ok[i])
				fp_report(sizes[i], &fp[i], i == 1 || !fp_ok[1]);
		out(&json_out, "  },\n");
	}
	if (ho_ok[0] || ho_ok[1]) {
		out(&json_out, "  \"handoff\": {\n");
		for (i = 0; i < 2; i++)
			if (ho_ok[i])
				ho_report(sizes[i], &ho[i], i == 1 || !ho_ok[1]);
		out(&json_out, "  },\n");
	}
	if (ct_ok) {
		out(&json_out,
		    "  \"contention\": {\n    \"waiters\": %u, \"bufs\": %u, \"size\": %u, \"hold_us\": %u, \"ms\": %u,\n",
		    waiters, bufs, size, hold_us, contention_ms);
		ct_report("mbufmux", &ct[0], false);
		ct_report("semaphore", &ct[1], true);
		out(&json_out, "  },\n");
	}

	if (fp_ok[0]) {
		out_key("fastpath_ratio_vs_kmem_cache",
			fp[0].ratio[0][FP_MBUFMUX_BUF]);
		out_key("fastpath_ratio_vs_kmem_cache_cpus_all",
			fp[0].ratio[1][FP_MBUFMUX_BUF]);
	}
	if (fp_ok[1]) {
		out_key("fastpath_ratio_vs_kmem_cache_small",
			fp[1].ratio[0][FP_MBUFMUX_BUF]);
		out_key("fastpath_ratio_vs_kmem_cache_small_cpus_all",
			fp[1].ratio[1][FP_MBUFMUX_BUF]);
	}
	if (ho_ok[0])
		out_key("handoff_ratio_vs_workqueue",
			ratio_milli(ho[0].ho[0], ho[0].wq[0]));
	if (ho_ok[1])
		out_key("handoff_ratio_vs_workqueue_small",
			ratio_milli(ho[1].ho[0], ho[1].wq[0]));
	if (ct_ok) {
		out_key("fairness_jain", ct[0].jain);
		out_key("contention_ops_ratio_vs_semaphore",
			ratio_milli(ct[0].ops_per_s, ct[1].ops_per_s));
	}
	out(&json_out, "  \"kernel_bench_secs\": %llu,\n",
	    div_u64(ktime_get_ns() - t0, NSEC_PER_SEC));
	kfree(fp);
	pr_info("end\n");
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
	bench_run();

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
