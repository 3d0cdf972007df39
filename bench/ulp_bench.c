// SPDX-License-Identifier: GPL-2.0
/*
 * ulp_bench - the "mbufmux" TCP ULP against plain TCP over loopback, each
 * figure next to the plain-TCP program a user would run instead.
 *
 *   ulp_bench stream [-s SECS] [-r REPS] [-f FLUSH] [-w SIZE] [-n FLOWS] [-m MODE] [-D]
 *	Throughput and CPU time per GB of 1 and 16 flows, each a sender and
 *	a receiver thread. 64 KiB writes: the ULP against plain TCP, both
 *	plain send()s. 64-byte writes, two pairs: plain send()s under the
 *	ULP (ulp_plain) against plain TCP; send(MSG_MORE) with a send
 *	without it every FLUSH writes, under the ULP (ulp) and on plain TCP
 *	(tcp_more), the same calls. Then the same writes to /dev/null
 *	(null_floor, the system call alone). After an unrecorded round
 *	(a warm-up), REPS rounds: every pair
 *	once per round, its two cells one right after the other, the ULP's
 *	first in even rounds and second in odd ones (so that a drift of the
 *	host's load within a pair cancels over the rounds); each figure is
 *	the median of the rounds, each ratio the median of the pairs'
 *	ratios, with their min, max and quartiles. CPU time is the busy
 *	time of /proc/stat (softirq included) over the measured seconds.
 *	-w, -n and -m run only the cells of that write size (65536 or 64),
 *	flow count (1 or 16) or mode (tcp, ulp, tcp_more, null_floor,
 *	ulp_plain), to profile one; the others then report 0. -D sets
 *	TCP_NODELAY on every sender, in every mode (a diagnosis: is Nagle's
 *	algorithm what holds a figure back?).
 *
 *   ulp_bench rr [-n PINGS] [-r REPS] [-s SECS] [-B BACKGROUND] [-D] [-o]
 *	Request/response latency: one connection, 64-byte requests each
 *	answered by a 64-byte response (both ends under the ULP, or both
 *	plain TCP), PINGS round trips (at most SECS seconds) per run, p50
 *	and p99. Twice: with the pool free, and with it full: BACKGROUND
 *	connections (default twice the pool's limit) write 64-byte messages
 *	from one epoll loop meanwhile, each in two writes, the first with
 *	MSG_MORE, as in scale (for TCP, the same connections and writes). A
 *	ULP run and its TCP run one after the other, REPS rounds. To
 *	diagnose: -D sets TCP_NODELAY on both ends, -o attaches the ULP to
 *	the requester only.
 *
 *   ulp_bench scale [-c N[,N...]] [-b BYTES] [-m MSGS] [-r RESERVE]
 *		     [-P PERMILLE] [-R ROUNDS] [-a OCTET] [-T TIMEOUT]
 *	For each N (default 1000, 10000, 30000): N connections at once, each
 *	writing BYTES in MSGS messages from one epoll loop; every message is
 *	two writes, the first with MSG_MORE, so that a connection holds a
 *	pool buffer across loop turns and the pool's limit is reached. A
 *	second thread receives and checks every byte. ROUNDS (1) rounds of
 *	three runs: the ULP as root (margin 0), plain TCP, and the ULP with
 *	the pool's reserve set to RESERVE (8) and only PERMILLE (10, 1%) of
 *	the sockets attached with CAP_NET_ADMIN. The pool must never have
 *	more than its limit out, and every connection must complete. Reports
 *	the time per handoff (run time over the sockets' waits), ULP/TCP
 *	time, and the longest wait over the FIFO bound, each the median of
 *	the rounds, after one unrecorded run. Each run listens on its own
 *	loopback address, from 127.0.0.OCTET (2) on, and connects from its
 *	own, 127.0.1.OCTET, each connection bound to its own port (10000
 *	on): no search for a free ephemeral port (the kernel's scans the
 *	ports the others took, which at 30,000 connections took minutes),
 *	and none of the ports held by the last run's connections in
 *	TIME_WAIT.
 *
 *   ulp_bench ctx [-n N]
 *	The per-socket context: the slab cache that grows by about N
 *	objects when N connected sockets are attached (/proc/slabinfo), and
 *	its object size, which is what a context costs after the
 *	allocator's rounding.
 *
 *   ulp_bench memory [-n N[,N...]] [-c CAP] [-w SIZE] [-l LOWAT]
 *	The unsent send memory of N senders (64 and 1024) to peers that never
 *	read: each sender, non-blocking, writes SIZE-byte chunks until EAGAIN
 *	or until CAP bytes were accepted (4 MiB: so that 1,024 plain senders
 *	cannot take the VM's memory), in passes over all senders until a
 *	pass gets nothing more accepted. Then: the sum over the senders of
 *	SIOCOUTQNSD (bytes accepted and not yet sent; it includes the ULP's
 *	staged bytes once the ULP reports them) and of SIOCOUTQ, the peers'
 *	SIOCINQ, and /proc/net/sockstat's TCP "mem" (pages) before and after.
 *	Three configurations for each N, in this order: the ULP attached
 *	(the pool as the module is set: the bench sets limit), plain TCP,
 *	plain TCP with TCP_NOTSENT_LOWAT = LOWAT (16384) on each sender. The
 *	peers are closed first (unread data: a reset), then the senders, and
 *	TCP's memory must fall back before the next configuration runs.
 *
 * Prints a table on stderr and JSON members (no enclosing braces) on
 * stdout, for bench/vm-bench.sh; bench/README.md describes them. Exits 1
 * if a check failed, 2 on a setup error.
 */
#define _GNU_SOURCE
#include <sys/epoll.h>
#include <sys/resource.h>

#include "mbufmux_test_lib.h"

#define MAX_FLOWS	64
#define MAX_REPS	31

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The @p quantile (0..1) of the sorted @s, interpolated between ranks. */
static double quantile_sorted(const double *s, int n, double p)
{
	double pos = (n - 1) * p;
	int i = (int)pos;

	if (n <= 0)
		return 0;
	if (i >= n - 1)
		return s[n - 1];
	return s[i] + (pos - i) * (s[i + 1] - s[i]);
}

static double median(const double *v, int n)
{
	double s[MAX_REPS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return quantile_sorted(s, n, 0.5);
}

/* The ratios of the pairs, each run in the same round one after the other. */
struct pairs {
	double q[MAX_REPS];
	double med, min, max, q1, q3;
	int n;
};

/*
 * The median of the ratios @a[r] / @b[r], their min, max and quartiles:
 * each pair ran in the same round, one right after the other, so that slow
 * drifts of the host's load cancel.
 */
static struct pairs paired(const double *a, const double *b, int n)
{
	struct pairs p = { .n = n };
	double s[MAX_REPS];
	int r;

	for (r = 0; r < n; r++)
		p.q[r] = b[r] > 0 ? a[r] / b[r] : 0;
	memcpy(s, p.q, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	p.min = n ? s[0] : 0;
	p.max = n ? s[n - 1] : 0;
	p.med = quantile_sorted(s, n, 0.5);
	p.q1 = quantile_sorted(s, n, 0.25);
	p.q3 = quantile_sorted(s, n, 0.75);
	return p;
}

/*
 * JSON: "NAME": median, "NAME_pairs": [...], "NAME_spread": [min, max],
 * "NAME_iqr": [first quartile, third quartile]
 */
static void print_pairs(const char *name, const struct pairs *p)
{
	int r;

	printf("\"%s\": %.3f, \"%s_pairs\": [", name, p->med, name);
	for (r = 0; r < p->n; r++)
		printf("%s%.3f", r ? ", " : "", p->q[r]);
	printf("], \"%s_spread\": [%.3f, %.3f], \"%s_iqr\": [%.3f, %.3f]",
	       name, p->min, p->max, name, p->q1, p->q3);
}

/* The same, as top-level members of their own lines. */
static void print_key_pairs(const char *name, const struct pairs *p)
{
	printf("  \"%s\": %.3f,\n", name, p->med);
	printf("  \"%s_spread\": [%.3f, %.3f],\n", name, p->min, p->max);
	printf("  \"%s_iqr\": [%.3f, %.3f],\n", name, p->q1, p->q3);
}

/* Busy CPU time of all CPUs so far, seconds: /proc/stat's first line. */
static double cpu_busy_secs(void)
{
	unsigned long long v[8] = {};
	FILE *f = fopen("/proc/stat", "r");
	int n;

	if (!f)
		return -1;
	/* cpu user nice system idle iowait irq softirq steal ... */
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
		   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 7)
		return -1;
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
	       sysconf(_SC_CLK_TCK);
}

/* stream */

/*
 * M_NULL: the same writes to /dev/null, no socket: the cost of the system
 * call alone, a ceiling for any send path (small writes only).
 */
/* M_ULP_PLAIN: the ULP with plain send()s, no MSG_MORE (as M_TCP). */
enum mode { M_TCP, M_ULP, M_TCP_MORE, M_NULL, M_ULP_PLAIN, M_NR };
static const char * const mode_names[M_NR] = {
	"tcp", "ulp", "tcp_more", "null_floor", "ulp_plain",
};

/* A ULP cell and the plain-TCP cell a user would run instead. */
struct stream_pair {
	enum mode ulp, base;
	const char *ratio;	/* JSON name of the ratio */
	const char *key;	/* top-level key: the lower of the flow counts */
};

static const struct stream_pair large_pairs[] = {
	{ M_ULP, M_TCP, "ratio_ulp_vs_tcp", "ulp_large_ratio" },
};

static const struct stream_pair small_pairs[] = {
	{ M_ULP_PLAIN, M_TCP, "ratio_ulp_plain_vs_tcp", "ulp_small_plain_ratio" },
	{ M_ULP, M_TCP_MORE, "ratio_ulp_vs_tcp_more", "ulp_small_ratio" },
};

#define STREAM_MAX_PAIRS	2

struct flow {
	int cli, srv;		/* srv < 0: cli is /dev/null (M_NULL) */
	uint64_t rx;		/* bytes received, read by the main thread */
	size_t wsize;
	int flush;		/* 0: plain writes; else MSG_MORE, flush every N */
	int *stop;		/* read with __atomic_load_n() */
	pthread_barrier_t *start;
	int err;
};

static void *stream_sender(void *arg)
{
	struct flow *f = arg;
	char *buf = malloc(f->wsize);
	unsigned long n = 0;
	ssize_t ret;
	int flags;

	if (!buf)
		die("malloc");
	memset(buf, 'x', f->wsize);
	pthread_barrier_wait(f->start);
	while (!__atomic_load_n(f->stop, __ATOMIC_RELAXED)) {
		flags = MSG_NOSIGNAL;
		if (f->flush && ++n % f->flush)
			flags |= MSG_MORE;
		if (f->srv < 0) {
			ret = write(f->cli, buf, f->wsize);
			if (ret > 0)
				__atomic_add_fetch(&f->rx, ret, __ATOMIC_RELAXED);
		} else {
			ret = send(f->cli, buf, f->wsize, flags);
		}
		if (ret < 0 && errno != EINTR) {
			f->err = errno;
			break;
		}
	}
	if (f->srv < 0) {
		free(buf);
		return NULL;
	}
	/* Pushes what MSG_MORE held, then the FIN: the receiver ends. */
	shutdown(f->cli, SHUT_WR);
	free(buf);
	return NULL;
}

static void *stream_receiver(void *arg)
{
	struct flow *f = arg;
	size_t size = 256 * 1024;
	char *buf = malloc(size);
	ssize_t ret;

	if (!buf)
		die("malloc");
	pthread_barrier_wait(f->start);
	for (;;) {
		ret = recv(f->srv, buf, size, 0);
		if (ret > 0)
			__atomic_add_fetch(&f->rx, ret, __ATOMIC_RELAXED);
		else if (!ret || errno != EINTR)
			break;
	}
	free(buf);
	return NULL;
}

static bool stream_nodelay;	/* -D: TCP_NODELAY on every sender */

/* One cell's run: what the receivers got, and the CPU time it took. */
struct stream_sample {
	double bytes_per_sec;
	double cpu_secs_per_gb;	/* busy time of all CPUs per 10^9 bytes */
};

/* Bytes per second received over @secs, after a short warm-up. */
static struct stream_sample stream_run(enum mode m, size_t wsize, int flows,
				       int flush, double secs)
{
	pthread_t tx[MAX_FLOWS], rx[MAX_FLOWS];
	struct stream_sample res = {};
	struct flow f[MAX_FLOWS];
	pthread_barrier_t start;
	int stop = 0;
	uint64_t b0 = 0, b1 = 0;
	double t0, t1, c0, c1;
	struct lsn l;
	int i;

	memset(f, 0, sizeof(f));
	if (lsn_open(&l, AF_INET, false))
		die("listen on loopback");
	pthread_barrier_init(&start, NULL, (m == M_NULL ? 1 : 2) * flows + 1);
	for (i = 0; i < flows; i++) {
		if (m == M_NULL) {
			f[i].cli = open("/dev/null", O_WRONLY);
			f[i].srv = -1;
			if (f[i].cli < 0)
				die("open /dev/null");
		} else {
			f[i].cli = lsn_pair_or_die(&l, &f[i].srv);
		}
		if ((m == M_ULP || m == M_ULP_PLAIN) && attach(f[i].cli))
			die("setsockopt(TCP_ULP, \"mbufmux\") (is mbufmux_tcp loaded?)");
		if (stream_nodelay && m != M_NULL) {
			int one = 1;

			if (setsockopt(f[i].cli, IPPROTO_TCP, TCP_NODELAY, &one,
				       sizeof(one)))
				die("setsockopt(TCP_NODELAY)");
		}
		f[i].wsize = wsize;
		f[i].flush = (m == M_TCP || m == M_ULP_PLAIN) ? 0 : flush;
		f[i].stop = &stop;
		f[i].start = &start;
		if (pthread_create(&tx[i], NULL, stream_sender, &f[i]) ||
		    (m != M_NULL &&
		     pthread_create(&rx[i], NULL, stream_receiver, &f[i])))
			die("pthread_create");
	}
	pthread_barrier_wait(&start);
	usleep(200000);
	t0 = now();
	c0 = cpu_busy_secs();
	for (i = 0; i < flows; i++)
		b0 += __atomic_load_n(&f[i].rx, __ATOMIC_RELAXED);
	usleep(secs * 1e6);
	t1 = now();
	c1 = cpu_busy_secs();
	for (i = 0; i < flows; i++)
		b1 += __atomic_load_n(&f[i].rx, __ATOMIC_RELAXED);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < flows; i++) {
		pthread_join(tx[i], NULL);
		if (m != M_NULL)
			pthread_join(rx[i], NULL);
		if (f[i].err)
			fprintf(stderr, "ulp_bench: flow %d: send: %s\n", i,
				strerror(f[i].err));
		close(f[i].cli);
		if (f[i].srv >= 0)
			close(f[i].srv);
	}
	close(l.fd);
	pthread_barrier_destroy(&start);
	res.bytes_per_sec = (b1 - b0) / (t1 - t0);
	if (b1 > b0 && c0 >= 0 && c1 >= 0)
		res.cpu_secs_per_gb = (c1 - c0) / ((b1 - b0) / 1e9);
	return res;
}

/* JSON: "NAME": [each of @v over @div] */
static void print_runs(const char *name, const double *v, int n, double div)
{
	int r;

	printf("\"%s\": [", name);
	for (r = 0; r < n; r++)
		printf("%s%.2f", r ? ", " : "", v[r] / div);
	printf("]");
}

/*
 * The mode of cell @k of a round @r of @n pairs: the pair k / 2, the
 * ULP's cell first in even rounds; after the pairs of small writes (more
 * than one pair), /dev/null; M_NR past the end.
 */
static enum mode stream_cell(const struct stream_pair *pairs, int n, int k,
			     int r)
{
	const struct stream_pair *p = &pairs[k / 2];

	if (k == 2 * n)
		return n > 1 ? M_NULL : M_NR;
	return (k % 2) ^ (r % 2) ? p->base : p->ulp;
}

static int cmd_stream(int argc, char **argv)
{
	static const size_t sizes[2] = { 65536, 64 };
	static const char * const size_names[2] = { "large", "small" };
	static const struct stream_pair * const pairs_of[2] = {
		large_pairs, small_pairs,
	};
	static const int nr_pairs[2] = {
		ARRAY_SIZE(large_pairs), ARRAY_SIZE(small_pairs),
	};
	static const int flow_counts[2] = { 1, 16 };
	/* [size][flows][mode][round] */
	static double v[2][2][M_NR][MAX_REPS], cpu[2][2][M_NR][MAX_REPS];
	struct pairs ratio[2][2][STREAM_MAX_PAIRS], cpu_ratio[2];
	double secs = 1.0;
	int reps = 9, flush = 256, only_size = 0, only_flows = 0;
	const char *only_mode = NULL;
	int opt, s, fl, k, r, j, key;
	bool warm;

	while ((opt = getopt(argc, argv, "s:r:f:w:n:m:D")) != -1) {
		switch (opt) {
		case 's':
			secs = atof(optarg);
			break;
		case 'D':
			stream_nodelay = true;
			break;
		case 'r':
			reps = atoi(optarg);
			break;
		case 'f':
			flush = atoi(optarg);
			break;
		case 'w':
			only_size = atoi(optarg);
			break;
		case 'n':
			only_flows = atoi(optarg);
			break;
		case 'm':
			only_mode = optarg;
			break;
		default:
			return 2;
		}
	}
	warm = !only_size && !only_flows && !only_mode;
	if (reps < 1 || reps > MAX_REPS || flush < 1 || secs <= 0) {
		fprintf(stderr, "ulp_bench stream: bad -s, -r (1 to %d) or -f\n",
			MAX_REPS);
		return 2;
	}

	/*
	 * Warm-up, not recorded: a whole round (r = -1). The first cell of
	 * each kind after the previous part (or a cold pool) ran slow, for
	 * both modes: up to 4x in the first of 9 rounds.
	 */
	/*
	 * Interleaved: every pair once per round, its cells one right after
	 * the other, the ULP's first in even rounds, second in odd ones;
	 * then, for small writes, /dev/null. (r + 2: the parity of r, for
	 * the warm-up round, -1, too.)
	 */
	for (r = warm ? -1 : 0; r < reps; r++)
		for (s = 0; s < 2; s++)
			for (fl = 0; fl < 2; fl++)
				for (k = 0; k <= 2 * nr_pairs[s]; k++) {
					enum mode m = stream_cell(pairs_of[s],
								  nr_pairs[s],
								  k, r + 2);
					struct stream_sample x;

					if (m == M_NR ||
					    (only_size && only_size != (int)sizes[s]) ||
					    (only_flows && only_flows != flow_counts[fl]) ||
					    (only_mode && strcmp(only_mode, mode_names[m])))
						continue;
					x = stream_run(m, sizes[s], flow_counts[fl],
						       s ? flush : 0, secs);
					if (r < 0)
						continue;
					v[s][fl][m][r] = x.bytes_per_sec;
					cpu[s][fl][m][r] = x.cpu_secs_per_gb;
				}

	fprintf(stdout,
		"  \"ulp\": {\"secs\": %.2f, \"reps\": %d, \"small_flush_every\": %d, \"nodelay\": %s,\n",
		secs, reps, flush, stream_nodelay ? "true" : "false");
	printf("%s",
	       "    \"order\": \"per round, size and flow count, each pair one cell after the other, the ULP's first in even rounds: large (ulp, tcp); small (ulp_plain, tcp), (ulp, tcp_more), then null_floor\",\n");
	for (s = 0; s < 2; s++) {
		static const enum mode modes[2][5] = {
			{ M_ULP, M_TCP },
			{ M_ULP_PLAIN, M_TCP, M_ULP, M_TCP_MORE, M_NULL },
		};
		int nm = s ? 5 : 2;

		printf("    \"%s\": {\"write_size\": %zu", size_names[s], sizes[s]);
		for (fl = 0; fl < 2; fl++) {
			printf(",\n      \"%d\": {", flow_counts[fl]);
			for (k = 0; k < nm; k++) {
				enum mode m = modes[s][k];

				printf("\"%s\": {\"mbytes_per_sec\": %.2f, ",
				       mode_names[m], median(v[s][fl][m], reps) / 1e6);
				print_runs("runs", v[s][fl][m], reps, 1e6);
				printf(", \"cpu_secs_per_gb\": %.2f, ",
				       median(cpu[s][fl][m], reps));
				print_runs("cpu_runs", cpu[s][fl][m], reps, 1);
				printf("}, ");
				fprintf(stderr,
					"ulp %-5s %2d flow%s %-10s %9.2f MB/s, %6.2f CPU s/GB  (runs:",
					size_names[s], flow_counts[fl],
					fl ? "s" : " ", mode_names[m],
					median(v[s][fl][m], reps) / 1e6,
					median(cpu[s][fl][m], reps));
				for (r = 0; r < reps; r++)
					fprintf(stderr, " %.2f", v[s][fl][m][r] / 1e6);
				fprintf(stderr, ")\n");
			}
			for (j = 0; j < nr_pairs[s]; j++) {
				const struct stream_pair *p = &pairs_of[s][j];

				ratio[s][fl][j] = paired(v[s][fl][p->ulp],
							 v[s][fl][p->base], reps);
				print_pairs(p->ratio, &ratio[s][fl][j]);
				printf(", ");
			}
			if (s) {
				struct pairs nf = paired(v[s][fl][M_NULL],
							 v[s][fl][M_TCP], reps);

				printf("\"ratio_null_floor_vs_tcp\": %.3f", nf.med);
			} else {
				/* CPU time per GB, ULP over TCP: lower is better. */
				cpu_ratio[fl] = paired(cpu[s][fl][M_ULP],
						       cpu[s][fl][M_TCP], reps);
				print_pairs("cpu_per_gb_ratio_ulp_vs_tcp",
					    &cpu_ratio[fl]);
			}
			printf("}");
		}
		printf("},\n");
	}
	printf("%s",
	       "    \"key\": \"throughput: the lower ratio of 1 and 16 flows; CPU per GB: the higher\"\n  },\n");

	for (s = 0; s < 2; s++)
		for (j = 0; j < nr_pairs[s]; j++) {
			const struct stream_pair *p = &pairs_of[s][j];

			key = ratio[s][1][j].med < ratio[s][0][j].med;
			print_key_pairs(p->key, &ratio[s][key][j]);
			printf("  \"%s_flows\": %d,\n", p->key, flow_counts[key]);
			printf("  \"%s_baseline\": \"%s\",\n", p->key,
			       mode_names[p->base]);
			fprintf(stderr,
				"%-40s %.3f (1 flow %.3f [%.3f-%.3f], 16 flows %.3f [%.3f-%.3f]) vs %s\n",
				p->key, ratio[s][key][j].med,
				ratio[s][0][j].med, ratio[s][0][j].min,
				ratio[s][0][j].max, ratio[s][1][j].med,
				ratio[s][1][j].min, ratio[s][1][j].max,
				mode_names[p->base]);
		}
	key = cpu_ratio[1].med > cpu_ratio[0].med;
	print_key_pairs("cpu_per_gb_ratio", &cpu_ratio[key]);
	printf("  \"cpu_per_gb_ratio_flows\": %d,\n", flow_counts[key]);
	printf("  \"cpu_secs_per_gb_ulp\": %.2f,\n",
	       median(cpu[0][key][M_ULP], reps));
	printf("  \"cpu_secs_per_gb_tcp\": %.2f,\n",
	       median(cpu[0][key][M_TCP], reps));
	fprintf(stderr,
		"%-40s %.3f (1 flow %.3f [%.3f-%.3f], 16 flows %.3f [%.3f-%.3f]) vs tcp, 64 KiB writes\n",
		"cpu_per_gb_ratio", cpu_ratio[key].med, cpu_ratio[0].med,
		cpu_ratio[0].min, cpu_ratio[0].max, cpu_ratio[1].med,
		cpu_ratio[1].min, cpu_ratio[1].max);
	return 0;
}

/* rr: request/response latency */

#define RR_SIZE		64
#define RR_MAX_BG	1024

struct rr_echo {
	int fd;
	int err;
};

/*
 * Runs the calling thread on CPU @cpu (modulo the CPUs there are). The
 * requester and the responder share CPU 0: under emulation, a wake-up
 * across CPUs can cost milliseconds (an idle vCPU), which would be the
 * figure, for either mode; the background writers run on CPU 1.
 */
static void rr_pin(int cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(n > 0 ? cpu % n : 0, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
		die("pthread_setaffinity_np");
}

/* Answers every RR_SIZE-byte request with RR_SIZE bytes, until EOF. */
static void *rr_echo_fn(void *arg)
{
	struct rr_echo *e = arg;
	char buf[RR_SIZE];
	size_t got;
	ssize_t ret;

	rr_pin(0);
	for (;;) {
		for (got = 0; got < RR_SIZE; got += ret) {
			ret = recv(e->fd, buf + got, RR_SIZE - got, 0);
			if (!ret)
				return NULL;
			if (ret < 0) {
				if (errno == EINTR) {
					ret = 0;
					continue;
				}
				e->err = errno;
				return NULL;
			}
		}
		if (send(e->fd, buf, RR_SIZE, MSG_NOSIGNAL) != RR_SIZE) {
			e->err = errno;
			return NULL;
		}
	}
}

/* The background of the full pool: writers and a reader, as in scale. */
struct rr_bg {
	int n;
	int cli[RR_MAX_BG], srv[RR_MAX_BG];
	unsigned int sent[RR_MAX_BG];
	int stop;		/* __atomic_load_n() / __atomic_store_n() */
	pthread_t tx, rx;
};

/* An epoll instance watching @fds[0..@n) for @events, each by its index. */
static int rr_epoll(const int *fds, int n, uint32_t events)
{
	int ep, i;

	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < n; i++) {
		struct epoll_event e = { .events = events, .data.u32 = i };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e))
			die("epoll_ctl");
	}
	return ep;
}

static void *rr_bg_tx(void *arg)
{
	struct rr_bg *bg = arg;
	struct epoll_event ev[256];
	char buf[RR_SIZE / 2];
	int ep, i, k, n;

	rr_pin(1);
	memset(buf, 'b', sizeof(buf));
	ep = rr_epoll(bg->cli, bg->n, EPOLLOUT);
	while (!__atomic_load_n(&bg->stop, __ATOMIC_RELAXED)) {
		n = epoll_wait(ep, ev, 256, 100);
		for (k = 0; k < n; k++) {
			i = ev[k].data.u32;
			/* Half a message with MSG_MORE: the buffer is held. */
			if (send(bg->cli[i], buf, sizeof(buf),
				 MSG_DONTWAIT | MSG_NOSIGNAL |
				 (bg->sent[i] % 2 ? 0 : MSG_MORE)) > 0)
				bg->sent[i]++;
		}
	}
	close(ep);
	return NULL;
}

static void *rr_bg_rx(void *arg)
{
	struct rr_bg *bg = arg;
	struct epoll_event ev[256];
	char buf[16384];
	int ep, k, n;

	rr_pin(1);
	ep = rr_epoll(bg->srv, bg->n, EPOLLIN);
	while (!__atomic_load_n(&bg->stop, __ATOMIC_RELAXED)) {
		n = epoll_wait(ep, ev, 256, 100);
		for (k = 0; k < n; k++)
			while (recv(bg->srv[ev[k].data.u32], buf, sizeof(buf),
				    MSG_DONTWAIT) > 0)
				;
	}
	close(ep);
	return NULL;
}

static void rr_bg_start(struct rr_bg *bg, const struct lsn *l, int n, bool ulp)
{
	int i;

	memset(bg, 0, sizeof(*bg));
	bg->n = n;
	for (i = 0; i < n; i++) {
		bg->cli[i] = lsn_pair_or_die(l, &bg->srv[i]);
		if (ulp && attach(bg->cli[i]))
			die("setsockopt(TCP_ULP, \"mbufmux\")");
		if (set_nonblock(bg->cli[i]) || set_nonblock(bg->srv[i]))
			die("fcntl");
	}
	if (pthread_create(&bg->tx, NULL, rr_bg_tx, bg) ||
	    pthread_create(&bg->rx, NULL, rr_bg_rx, bg))
		die("pthread_create");
}

static void rr_bg_stop(struct rr_bg *bg)
{
	int i;

	__atomic_store_n(&bg->stop, 1, __ATOMIC_RELAXED);
	pthread_join(bg->tx, NULL);
	pthread_join(bg->rx, NULL);
	for (i = 0; i < bg->n; i++) {
		close(bg->cli[i]);
		close(bg->srv[i]);
	}
}

/* What the pool looked like as the pings began (ULP runs with background). */
struct rr_pool_seen {
	long long in_use, waiters;
};

/*
 * Up to @pings round trips (at most @secs seconds): their times in @lat
 * (seconds), their number returned. @bg connections write meanwhile.
 */
static bool rr_nodelay;		/* -D: TCP_NODELAY on both ends */
static bool rr_one_side;	/* -o: the ULP on the requester only */

static int rr_run(bool ulp, int bg_n, int pings, double secs, double *lat,
		  struct rr_pool_seen *seen)
{
	static struct rr_bg bg;
	char req[RR_SIZE], resp[RR_SIZE];
	struct rr_echo echo = {};
	pthread_t echo_thread;
	int cli, n = 0;
	double t_end, t0;
	struct lsn l;
	size_t got;
	ssize_t ret;

	memset(req, 'q', sizeof(req));
	if (lsn_open(&l, AF_INET, false))
		die("listen on loopback");
	cli = lsn_pair_or_die(&l, &echo.fd);
	if (ulp && (attach(cli) || (!rr_one_side && attach(echo.fd))))
		die("setsockopt(TCP_ULP, \"mbufmux\") (is mbufmux_tcp loaded?)");
	if (rr_nodelay && (setint(cli, IPPROTO_TCP, TCP_NODELAY, 1) ||
			   setint(echo.fd, IPPROTO_TCP, TCP_NODELAY, 1)))
		die("setsockopt(TCP_NODELAY)");
	if (bg_n) {
		rr_bg_start(&bg, &l, bg_n, ulp);
		/* Let the writers fill the pool and queue. */
		usleep(200000);
	}
	close(l.fd);
	if (ulp) {
		seen->in_use = stat_get("in_use");
		seen->waiters = stat_get("waiters");
	}
	if (pthread_create(&echo_thread, NULL, rr_echo_fn, &echo))
		die("pthread_create");
	rr_pin(0);

	t_end = now() + secs;
	while (n < pings && now() < t_end) {
		t0 = now();
		if (send(cli, req, sizeof(req), MSG_NOSIGNAL) != sizeof(req))
			die("rr: send");
		for (got = 0; got < sizeof(resp); got += ret) {
			ret = recv(cli, resp + got, sizeof(resp) - got, 0);
			if (!ret || (ret < 0 && errno != EINTR))
				die("rr: recv");
			if (ret < 0)
				ret = 0;
		}
		lat[n++] = now() - t0;
	}
	shutdown(cli, SHUT_WR);
	pthread_join(echo_thread, NULL);
	if (echo.err)
		fprintf(stderr, "ulp_bench rr: echo: %s\n", strerror(echo.err));
	if (bg_n)
		rr_bg_stop(&bg);
	close(cli);
	close(echo.fd);
	return n;
}

static int cmd_rr(int argc, char **argv)
{
	static const char * const loads[2] = { "free", "full" };
	static const char * const modes[2] = { "ulp", "tcp" };
	int pings = 400, reps = 5, bg_n = -1, opt, r, ld, m, i;
	double secs = 2;
	/* [load][mode]: every sample of every round; per round: p50, p99 */
	double *all[2][2], p50[2][2][MAX_REPS], p99[2][2][MAX_REPS];
	double a50[2][2], a99[2][2];	/* [load][mode], of all samples */
	int nall[2][2] = {}, failed = 0;
	struct rr_pool_seen seen[MAX_REPS] = {};
	double *lat;

	while ((opt = getopt(argc, argv, "n:r:s:B:Do")) != -1) {
		switch (opt) {
		case 'D':
			rr_nodelay = true;
			break;
		case 'o':
			rr_one_side = true;
			break;
		case 'n':
			pings = atoi(optarg);
			break;
		case 'r':
			reps = atoi(optarg);
			break;
		case 's':
			secs = atof(optarg);
			break;
		case 'B':
			bg_n = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	if (bg_n < 0)
		bg_n = 2 * stat_get("limit");
	if (pings < 10 || reps < 1 || reps > MAX_REPS || secs <= 0 ||
	    bg_n < 1 || bg_n > RR_MAX_BG) {
		fprintf(stderr,
			"ulp_bench rr: bad -n (at least 10), -r (1 to %d), -s or -B (1 to %d; default: twice the pool's limit)\n",
			MAX_REPS, RR_MAX_BG);
		return 2;
	}
	if (raise_nofile(2 * RR_MAX_BG + 64))
		die("setrlimit(RLIMIT_NOFILE)");
	lat = calloc(pings, sizeof(*lat));
	for (ld = 0; ld < 2; ld++)
		for (m = 0; m < 2; m++) {
			all[ld][m] = calloc((size_t)pings * reps, sizeof(double));
			if (!all[ld][m])
				die("calloc");
		}
	if (!lat)
		die("calloc");

	/* Rounds: free then full, each ULP then TCP (TCP first in odd ones). */
	for (r = 0; r < reps; r++)
		for (ld = 0; ld < 2; ld++)
			for (i = 0; i < 2; i++) {
				int n;

				m = i ^ (r % 2);
				n = rr_run(!m, ld ? bg_n : 0, pings, secs, lat,
					   ld && !m ? &seen[r] : &(struct rr_pool_seen){});
				if (n < 10) {
					fprintf(stderr,
						"ulp_bench rr: %s %s: only %d round trips in %.1f s\n",
						loads[ld], modes[m], n, secs);
					failed = 1;
				}
				qsort(lat, n, sizeof(*lat), cmp_double);
				p50[ld][m][r] = quantile_sorted(lat, n, 0.5);
				p99[ld][m][r] = quantile_sorted(lat, n, 0.99);
				memcpy(all[ld][m] + nall[ld][m], lat,
				       n * sizeof(*lat));
				nall[ld][m] += n;
			}

	fprintf(stdout,
		"  \"rr\": {\"write_size\": %d, \"pings\": %d, \"secs\": %.1f, \"reps\": %d, \"background\": %d, \"nodelay\": %s, \"ulp_on\": \"%s\",\n",
		RR_SIZE, pings, secs, reps, bg_n, rr_nodelay ? "true" : "false",
		rr_one_side ? "requester" : "both");
	for (ld = 0; ld < 2; ld++) {
		struct pairs q50 = paired(p50[ld][0], p50[ld][1], reps);
		struct pairs q99 = paired(p99[ld][0], p99[ld][1], reps);
		double *x50 = a50[ld], *x99 = a99[ld];

		printf("    \"%s\": {", loads[ld]);
		for (m = 0; m < 2; m++) {
			qsort(all[ld][m], nall[ld][m], sizeof(double), cmp_double);
			x50[m] = quantile_sorted(all[ld][m], nall[ld][m], 0.5);
			x99[m] = quantile_sorted(all[ld][m], nall[ld][m], 0.99);
			fprintf(stdout,
				"\"%s\": {\"samples\": %d, \"p50_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}, ",
				modes[m], nall[ld][m], x50[m] * 1e6,
				x99[m] * 1e6,
				nall[ld][m] ? all[ld][m][nall[ld][m] - 1] * 1e6 : 0);
			fprintf(stderr,
				"rr %-4s %-3s %5d round trips of 64 B: p50 %8.1f us, p99 %8.1f us\n",
				loads[ld], modes[m], nall[ld][m], x50[m] * 1e6,
				x99[m] * 1e6);
		}
		if (ld) {
			printf("\"pool_in_use_at_start\": [");
			for (r = 0; r < reps; r++)
				printf("%s%lld", r ? ", " : "", seen[r].in_use);
			printf("], \"pool_waiters_at_start\": [");
			for (r = 0; r < reps; r++)
				printf("%s%lld", r ? ", " : "", seen[r].waiters);
			printf("], ");
		}
		/* Of all samples pooled; the pairs are the rounds' p50s, p99s. */
		printf("\"ratio_p50\": %.3f, \"ratio_p99\": %.3f, ",
		       x50[1] > 0 ? x50[0] / x50[1] : 0,
		       x99[1] > 0 ? x99[0] / x99[1] : 0);
		print_pairs("ratio_p50_rounds", &q50);
		printf(", ");
		print_pairs("ratio_p99_rounds", &q99);
		printf("}%s\n", ld ? "" : ",");
		fprintf(stderr,
			"rr %-4s ulp/tcp p50 %.3f, p99 %.3f (rounds' p50 ratios %.3f-%.3f)\n",
			loads[ld], x50[1] > 0 ? x50[0] / x50[1] : 0,
			x99[1] > 0 ? x99[0] / x99[1] : 0, q50.min, q50.max);
	}
	printf("  },\n");
	for (ld = 0; ld < 2; ld++) {
		printf("  \"rr_%s_p50_ratio\": %.3f,\n", loads[ld],
		       a50[ld][1] > 0 ? a50[ld][0] / a50[ld][1] : 0);
		printf("  \"rr_%s_p99_ratio\": %.3f,\n", loads[ld],
		       a99[ld][1] > 0 ? a99[ld][0] / a99[ld][1] : 0);
	}
	for (ld = 0; ld < 2; ld++)
		for (m = 0; m < 2; m++)
			free(all[ld][m]);
	free(lat);
	return failed;
}

/* scale */

struct conn {
	int cli, srv;
	unsigned int sent;	/* bytes the sender got accepted */
	unsigned int rcvd;	/* bytes received and checked */
	unsigned int eagain;
	double parked_at;	/* since when a send is refused (EAGAIN), or 0 */
	double done;		/* when the last byte was accepted, s */
	double rx_done;		/* when it was received */
};

struct scale {
	struct conn *c;
	int conns;
	unsigned int bytes, half;
	double t0, deadline;
	int stop;		/* __atomic_load_n() / __atomic_store_n() */
	int bad_bytes;
	int rx_complete;
	long long in_use_max, waiters_max;
	double in_use_sum;	/* of the samples, for the mean */
	int samples;
};

static void *scale_receiver(void *arg)
{
	struct scale *sc = arg;
	struct epoll_event ev[256];
	unsigned char buf[8192];
	int ep, n, k, i;
	unsigned int j;
	ssize_t ret;

	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < sc->conns; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.u32 = i };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, sc->c[i].srv, &e))
			die("epoll_ctl");
	}
	while (sc->rx_complete < sc->conns && now() < sc->deadline &&
	       !__atomic_load_n(&sc->stop, __ATOMIC_RELAXED)) {
		n = epoll_wait(ep, ev, 256, 200);
		for (k = 0; k < n; k++) {
			struct conn *c = &sc->c[ev[k].data.u32];

			i = ev[k].data.u32;
			ret = recv(c->srv, buf, sizeof(buf), MSG_DONTWAIT);
			if (ret <= 0) {
				if (ret < 0 && errno == EAGAIN)
					continue;
				/* EOF or error before everything came. */
				epoll_ctl(ep, EPOLL_CTL_DEL, c->srv, NULL);
				continue;
			}
			for (j = 0; j < ret; j++)
				if (buf[j] != pattern(i, c->rcvd + j))
					sc->bad_bytes++;
			c->rcvd += ret;
			if (c->rcvd >= sc->bytes) {
				c->rx_done = now() - sc->t0;
				sc->rx_complete++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->srv, NULL);
			}
		}
	}
	close(ep);
	return NULL;
}

/* Samples the pool while the test runs: in_use must stay under the limit. */
static void *scale_monitor(void *arg)
{
	struct scale *sc = arg;
	long long v;

	while (!__atomic_load_n(&sc->stop, __ATOMIC_RELAXED)) {
		v = stat_get("in_use");
		if (v > sc->in_use_max)
			sc->in_use_max = v;
		if (v >= 0) {
			sc->in_use_sum += v;
			sc->samples++;
		}
		v = stat_get("waiters");
		if (v > sc->waiters_max)
			sc->waiters_max = v;
		usleep(20000);
	}
	return NULL;
}

/* pthread_join() within @secs: 0, or ETIMEDOUT (the thread still runs). */
static int timed_join(pthread_t t, double secs)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)secs;
	return pthread_timedjoin_np(t, NULL, &ts);
}

/* The three runs at each N. */
enum scale_cfg { SC_ULP, SC_TCP, SC_RESERVE, SC_NR };
static const char * const scale_cfg_names[SC_NR] = {
	"ulp", "tcp", "ulp_reserve",
};

struct scale_res {
	int conns, completed, bad_bytes, reserve, privileged;
	bool failed;
	double setup_secs, secs, rx_secs;
	double ct_p50, ct_p99, ct_max;	/* completion times */
	/* ULP: the sockets' waits (MBUFMUX_INFO: pool and per-user cap) */
	long long waits, handoffs, allocs, peak, in_use_max, waiters_max;
	long long recycled;	/* of @allocs, from kept buffers (no slab) */
	double in_use_mean;
	int parked_max;		/* connections refused at once, at most */
	int conns_parked;	/* connections refused at least once */
	double wait_max;	/* longest refusal to acceptance, s */
	double wait_p99;	/* the 99th percentile of those waits, s */
	long nr_waits_seen;	/* of those waits */
	double us_per_wait;	/* run time over the sockets' waits */
	double hold_mean;	/* a buffer's mean hold, s (Little's law) */
	double fifo_bound;	/* parked_max / in_use_mean x hold_mean, s */
};

/* A send of @c was refused: it waits from now, if it did not already. */
static void scale_refused(struct conn *c, struct scale_res *res,
			  int *parked_now)
{
	if (!c->eagain++)
		res->conns_parked++;
	if (c->parked_at)
		return;
	c->parked_at = now();
	if (++*parked_now > res->parked_max)
		res->parked_max = *parked_now;
}

/* The first local port of the connections, each bound to its own. */
#define SCALE_PORT0	10000

static void scale_run(enum scale_cfg cfg, int conns, unsigned int bytes,
		      unsigned int msgs, const char *addr, const char *src,
		      int permille, long long limit, double timeout,
		      struct scale_res *res)
{
	struct sockaddr_in from = { .sin_family = AF_INET };
	bool use_ulp = cfg != SC_TCP, unpriv = cfg == SC_RESERVE;
	long long handoffs0 = 0, allocs0 = 0, recycled0 = 0;
	pthread_t rx_thread, mon_thread;
	struct epoll_event ev[1024];
	struct scale sc = {};
	int i, k, n, ep, done = 0, parked_now = 0;
	double *ct, t_setup, *waits;
	long nw = 0, max_waits = 2L * conns * (msgs + 1);
	unsigned char *data;
	struct lsn l;

	memset(res, 0, sizeof(*res));
	res->conns = conns;
	sc.c = calloc(conns, sizeof(*sc.c));
	ct = calloc(conns, sizeof(*ct));
	waits = calloc(max_waits, sizeof(*waits));
	data = malloc(bytes);
	if (!sc.c || !ct || !waits || !data)
		die("calloc");
	sc.conns = conns;
	sc.bytes = bytes;
	sc.half = bytes / msgs / 2;
	if (use_ulp) {
		handoffs0 = stat_get("handoffs");
		allocs0 = stat_get("allocs");
		recycled0 = stat_get("recycled");
		res->reserve = param_get("reserve");
	}

	t_setup = now();
	if (lsn_open_addr(&l, addr) || inet_pton(AF_INET, src, &from.sin_addr) != 1)
		die("listen on a loopback address");
	if (unpriv && net_admin(false))
		die("capset");
	for (i = 0; i < conns; i++) {
		/* Every 1000 / permille-th socket keeps CAP_NET_ADMIN. */
		bool priv = unpriv && permille &&
			    (long long)i * permille / 1000 !=
			    (long long)(i + 1) * permille / 1000;

		from.sin_port = htons(SCALE_PORT0 + i);
		sc.c[i].cli = lsn_pair_from(&l, &from, &sc.c[i].srv);
		if (sc.c[i].cli < 0)
			die("connect");
		if (priv && net_admin(true))
			die("capset");
		if (use_ulp && attach(sc.c[i].cli))
			die("setsockopt(TCP_ULP, \"mbufmux\")");
		if (priv && net_admin(false))
			die("capset");
		res->privileged += priv;
		if (set_nonblock(sc.c[i].cli) || set_nonblock(sc.c[i].srv))
			die("fcntl");
	}
	if (unpriv && net_admin(true))
		die("capset");
	close(l.fd);
	res->setup_secs = now() - t_setup;

	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < conns; i++) {
		struct epoll_event e = { .events = EPOLLOUT, .data.u32 = i };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, sc.c[i].cli, &e))
			die("epoll_ctl");
	}

	sc.t0 = now();
	sc.deadline = sc.t0 + timeout;
	if (pthread_create(&rx_thread, NULL, scale_receiver, &sc) ||
	    (use_ulp && pthread_create(&mon_thread, NULL, scale_monitor, &sc)))
		die("pthread_create");

	/* One write per ready connection per turn: buffers are held across turns. */
	while (done < conns && now() < sc.deadline) {
		n = epoll_wait(ep, ev, 1024, 200);
		for (k = 0; k < n; k++) {
			struct conn *c = &sc.c[ev[k].data.u32];
			unsigned int off, len, j;
			int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
			ssize_t ret;
			double t;

			i = ev[k].data.u32;
			if (ev[k].events & (EPOLLERR | EPOLLHUP)) {
				fprintf(stderr, "ulp_bench: connection %d: error\n", i);
				epoll_ctl(ep, EPOLL_CTL_DEL, c->cli, NULL);
				res->failed = true;
				done++;
				continue;
			}
			/* The rest of this half; a first half is held for more. */
			off = c->sent;
			len = sc.half - off % sc.half;
			if ((off / sc.half) % 2 == 0)
				flags |= MSG_MORE;
			for (j = 0; j < len; j++)
				data[j] = pattern(i, off + j);
			ret = send(c->cli, data, len, flags);
			if (ret < 0) {
				if (errno == EAGAIN) {
					/* Parked: epoll reports it when a buffer is handed over. */
					scale_refused(c, res, &parked_now);
					continue;
				}
				fprintf(stderr, "ulp_bench: connection %d: send: %s\n",
					i, strerror(errno));
				epoll_ctl(ep, EPOLL_CTL_DEL, c->cli, NULL);
				res->failed = true;
				done++;
				continue;
			}
			if (c->parked_at) {
				t = now() - c->parked_at;
				if (t > res->wait_max)
					res->wait_max = t;
				if (nw < max_waits)
					waits[nw++] = t;
				c->parked_at = 0;
				parked_now--;
			}
			c->sent += ret;
			if (c->sent == sc.bytes) {
				c->done = now() - sc.t0;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->cli, NULL);
				done++;
			}
		}
	}
	res->secs = now() - sc.t0;
	/* The receiver ends once everything came; give up after a while. */
	if (timed_join(rx_thread, res->failed ? 1 : 30)) {
		__atomic_store_n(&sc.stop, 1, __ATOMIC_RELAXED);
		pthread_join(rx_thread, NULL);
	}
	__atomic_store_n(&sc.stop, 1, __ATOMIC_RELAXED);
	if (use_ulp) {
		pthread_join(mon_thread, NULL);
		res->peak = stat_get("peak");
		res->handoffs = stat_get("handoffs") - handoffs0;
		res->allocs = stat_get("allocs") - allocs0;
		res->recycled = stat_get("recycled") - recycled0;
		res->in_use_max = sc.in_use_max;
		res->waiters_max = sc.waiters_max;
		res->in_use_mean = sc.samples ? sc.in_use_sum / sc.samples : 0;
	}

	n = 0;
	for (i = 0; i < conns; i++) {
		struct conn *c = &sc.c[i];

		if (c->sent == sc.bytes && c->rcvd == sc.bytes) {
			ct[n++] = c->done;
			if (c->done > res->ct_max)
				res->ct_max = c->done;
			if (c->rx_done > res->rx_secs)
				res->rx_secs = c->rx_done;
		}
		if (use_ulp) {
			struct mbufmux_info info;

			if (!info_get(c->cli, &info))
				res->waits += info.waits;
		}
	}
	for (i = 0; i < conns; i++) {
		close(sc.c[i].cli);
		close(sc.c[i].srv);
	}
	close(ep);

	res->completed = n;
	res->bad_bytes = sc.bad_bytes;
	qsort(ct, n, sizeof(*ct), cmp_double);
	res->ct_p50 = quantile_sorted(ct, n, 0.5);
	res->ct_p99 = quantile_sorted(ct, n, 0.99);
	qsort(waits, nw, sizeof(*waits), cmp_double);
	res->wait_p99 = quantile_sorted(waits, nw, 0.99);
	res->nr_waits_seen = nw;
	free(waits);
	if (use_ulp && res->waits)
		res->us_per_wait = res->secs * 1e6 / res->waits;
	/* Little's law: buffers out on average = allocations/s x mean hold. */
	if (use_ulp && res->allocs > 0)
		res->hold_mean = res->in_use_mean * res->secs / res->allocs;
	/*
	 * The FIFO bound: parked_max / buffers x hold_mean, with buffers the
	 * mean number out, those in rotation (the limit, unless the per-user
	 * cap holds the sockets to fewer): by Little's law, parked_max
	 * requests served at the pool's mean rate.
	 */
	if (res->in_use_mean > 0)
		res->fifo_bound = res->parked_max / res->in_use_mean *
				  res->hold_mean;
	if (n < conns || sc.bad_bytes)
		res->failed = true;
	if (use_ulp && (res->peak > limit || sc.in_use_max > limit))
		res->failed = true;
	free(data);
	free(ct);
	free(sc.c);
}

/* The run's JSON member (@json), or its line of the table. */
static void scale_print(enum scale_cfg cfg, const struct scale_res *r,
			long long limit, bool json)
{
	if (!json)
		goto table;
	fprintf(stdout,
		"\"%s\": {\"conns\": %d, \"completed\": %d, \"bad_bytes\": %d, \"setup_secs\": %.2f, \"secs\": %.3f, \"rx_secs\": %.3f, \"completion_secs\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f}, \"conns_parked\": %d, \"parked_max\": %d, \"refusals\": %ld, \"wait_p99_secs\": %.4f, \"wait_max_secs\": %.4f",
		scale_cfg_names[cfg], r->conns, r->completed, r->bad_bytes,
		r->setup_secs, r->secs, r->rx_secs, r->ct_p50, r->ct_p99,
		r->ct_max, r->conns_parked, r->parked_max, r->nr_waits_seen,
		r->wait_p99, r->wait_max);
	if (cfg != SC_TCP)
		fprintf(stdout,
			", \"reserve\": %d, \"privileged\": %d, \"waits\": %lld, \"handoffs\": %lld, \"allocs\": %lld, \"recycled\": %lld, \"us_per_handoff\": %.2f, \"pool\": {\"limit\": %lld, \"peak\": %lld, \"in_use_max_sampled\": %lld, \"in_use_mean_sampled\": %.1f, \"waiters_max_sampled\": %lld, \"peak_within_limit\": %s}, \"hold_secs_mean\": %.5f, \"fifo_bound_secs\": %.4f, \"wait_vs_fifo_bound\": %.3f, \"wait_p99_vs_fifo_bound\": %.3f",
			r->reserve, r->privileged, r->waits, r->handoffs,
			r->allocs, r->recycled, r->us_per_wait, limit, r->peak,
			r->in_use_max, r->in_use_mean, r->waiters_max,
			r->peak <= limit && r->in_use_max <= limit ?
			"true" : "false",
			r->hold_mean, r->fifo_bound,
			r->fifo_bound > 0 ? r->wait_max / r->fifo_bound : 0,
			r->fifo_bound > 0 ? r->wait_p99 / r->fifo_bound : 0);
	printf("}");
	return;
table:
	fprintf(stderr,
		"scale %5d %-11s %5d complete%s, %6.2f s (setup %.2f s), completion p50 %.3f max %.3f s",
		r->conns, scale_cfg_names[cfg], r->completed,
		r->bad_bytes ? ", BAD BYTES" : "", r->secs, r->setup_secs,
		r->ct_p50, r->ct_max);
	if (cfg != SC_TCP)
		fprintf(stderr,
			", %lld waits, %.2f us/handoff, %lld of %lld allocations recycled, peak %lld/%lld, longest wait %.1f ms = %.2f x FIFO bound (%d parked x %.2f ms / %.1f out)",
			r->waits, r->us_per_wait, r->recycled, r->allocs,
			r->peak, limit,
			r->wait_max * 1e3,
			r->fifo_bound > 0 ? r->wait_max / r->fifo_bound : 0,
			r->parked_max, r->hold_mean * 1e3, r->in_use_mean);
	fprintf(stderr, "%s\n", r->failed ? "  FAILED" : "");
}

#define SCALE_MAX_N	8
#define SCALE_CONNS_MAX	50000	/* ports SCALE_PORT0 on, below 65536 */
#define SCALE_MAX_REPS	9

/* The figure furthest from 1 of @v[i] / @v[0], i > 0 (1 if none). */
static double worst_vs_first(const double *v, int n)
{
	double worst = 1, q;
	int i;

	for (i = 1; i < n; i++) {
		q = v[0] > 0 ? v[i] / v[0] : 0;
		if ((q > 1 ? q - 1 : 1 - q) > (worst > 1 ? worst - 1 : 1 - worst))
			worst = q;
	}
	return worst;
}

static int cmd_scale(int argc, char **argv)
{
	int ns[SCALE_MAX_N] = { 1000, 10000, 30000 }, nn = 3, reps = 1;
	unsigned int bytes = 4096, msgs = 4;
	int reserve = 8, permille = 10, opt, i, c, r, a1 = 2, nmax = 0, k = 0;
	static struct scale_res res[SCALE_MAX_N][SC_NR][SCALE_MAX_REPS];
	/* Medians over the rounds, [cfg][N] */
	double per_wait[SC_NR][SCALE_MAX_N], vs_tcp[SC_NR][SCALE_MAX_N];
	double bound[SC_NR][SCALE_MAX_N], bound99[SC_NR][SCALE_MAX_N];
	double x[SCALE_MAX_REPS], y[SCALE_MAX_REPS], timeout = 600;
	double worst_bound = 0;
	long long limit, reserve0, peak = 0, buf_size;
	bool failed = false;
	char addr[32], src[32], *tok;

	while ((opt = getopt(argc, argv, "c:b:m:r:P:a:R:T:")) != -1) {
		switch (opt) {
		case 'c':
			nn = 0;
			for (tok = strtok(optarg, ","); tok; tok = strtok(NULL, ","))
				ns[nn < SCALE_MAX_N ? nn++ : nn] = atoi(tok);
			break;
		case 'b':
			bytes = atoi(optarg);
			break;
		case 'm':
			msgs = atoi(optarg);
			break;
		case 'r':
			reserve = atoi(optarg);
			break;
		case 'P':
			permille = atoi(optarg);
			break;
		case 'a':
			a1 = atoi(optarg);
			break;
		case 'R':
			reps = atoi(optarg);
			break;
		case 'T':
			timeout = atof(optarg);
			break;
		default:
			return 2;
		}
	}
	for (i = 0; i < nn; i++) {
		if (ns[i] < 1 || ns[i] > SCALE_CONNS_MAX)
			nn = 0;
		else if (ns[i] > nmax)
			nmax = ns[i];
	}
	if (!nn || !msgs || bytes < 2 * msgs || bytes % (2 * msgs) ||
	    reserve < 0 || permille < 0 || permille > 1000 || a1 < 2 ||
	    reps < 1 || reps > SCALE_MAX_REPS ||
	    a1 + SC_NR * nn * reps + 1 > 254) {
		fprintf(stderr,
			"ulp_bench scale: need -c N[,N...] (1 to %d each, up to %d), -b a multiple of 2 * -m, -r >= 0, -P 0 to 1000, -R 1 to %d, -a from 2, and at most 251 runs\n",
			SCALE_CONNS_MAX, SCALE_MAX_N, SCALE_MAX_REPS);
		return 2;
	}
	/* Two descriptors a connection, and some. */
	if (raise_nofile(2 * (rlim_t)nmax + 64))
		die("setrlimit(RLIMIT_NOFILE) (root, fs.nr_open)");

	limit = stat_get("limit");
	reserve0 = param_get("reserve");
	buf_size = stat_get("buf_size");
	if (limit < 0 || reserve0 < 0)
		die("read " DBG_DIR "stats (mbufmux_tcp loaded, debugfs mounted?)");
	if (reserve >= limit) {
		fprintf(stderr, "ulp_bench scale: -r %d: not below the limit %lld\n",
			reserve, limit);
		return 2;
	}

	/*
	 * Warm-up, not recorded: the first run after boot took twice the
	 * time of the next ones. Then for each N, rounds of the three runs,
	 * each on its own addresses.
	 */
	snprintf(addr, sizeof(addr), "127.0.0.%d", a1 + k);
	snprintf(src, sizeof(src), "127.0.1.%d", a1 + k++);
	if (limits_set(limit, 0))
		die("setting mbufmux_tcp's limit and reserve");
	scale_run(SC_ULP, ns[0] < 1000 ? ns[0] : 1000, bytes, msgs, addr, src,
		  permille, limit, timeout, &res[0][0][0]);
	failed |= res[0][0][0].failed;
	for (i = 0; i < nn; i++)
		for (r = 0; r < reps; r++)
			for (c = 0; c < SC_NR; c++) {
				snprintf(addr, sizeof(addr), "127.0.0.%d", a1 + k);
				snprintf(src, sizeof(src), "127.0.1.%d", a1 + k++);
				if (limits_set(limit, c == SC_RESERVE ? reserve : 0))
					die("setting mbufmux_tcp's limit and reserve");
				scale_run(c, ns[i], bytes, msgs, addr, src,
					  permille, limit, timeout,
					  &res[i][c][r]);
				failed |= res[i][c][r].failed;
				if (res[i][c][r].peak > peak)
					peak = res[i][c][r].peak;
				scale_print(c, &res[i][c][r], limit, false);
			}
	if (limits_set(limit, reserve0))
		die("restoring mbufmux_tcp's limit and reserve");

	for (i = 0; i < nn; i++)
		for (c = 0; c < SC_NR; c++) {
			for (r = 0; r < reps; r++) {
				const struct scale_res *q = &res[i][c][r];

				x[r] = q->us_per_wait;
				y[r] = q->fifo_bound > 0 ? q->wait_max / q->fifo_bound : 0;
			}
			per_wait[c][i] = median(x, reps);
			bound[c][i] = median(y, reps);
			for (r = 0; r < reps; r++) {
				const struct scale_res *q = &res[i][c][r];

				x[r] = q->secs;
				y[r] = res[i][SC_TCP][r].secs;
			}
			vs_tcp[c][i] = paired(x, y, reps).med;
			for (r = 0; r < reps; r++) {
				const struct scale_res *q = &res[i][c][r];

				x[r] = q->fifo_bound > 0 ? q->wait_p99 / q->fifo_bound : 0;
			}
			bound99[c][i] = median(x, reps);
		}

	fprintf(stdout,
		"  \"scale\": {\"limit\": %lld, \"reserve\": %d, \"privileged_permille\": %d, \"bytes_per_conn\": %u, \"msgs_per_conn\": %u, \"writes_per_msg\": 2, \"reps\": %d, \"conns\": [",
		limit, reserve, permille, bytes, msgs, reps);
	for (i = 0; i < nn; i++)
		printf("%s%d", i ? ", " : "", ns[i]);
	printf("],\n");
	printf("%s",
	       "    \"figures\": \"each the median of the rounds; ratio_vs_tcp: of the rounds' ULP / TCP times\",\n");
	for (i = 0; i < nn; i++) {
		printf("    \"%d\": {", ns[i]);
		for (c = 0; c < SC_NR; c++) {
			printf("\"%s\": {\"runs\": [", scale_cfg_names[c]);
			for (r = 0; r < reps; r++) {
				printf("%s{", r ? ", " : "");
				scale_print(c, &res[i][c][r], limit, true);
				printf("}");
			}
			printf("]");
			if (c != SC_TCP)
				fprintf(stdout,
					", \"us_per_handoff\": %.2f, \"wait_vs_fifo_bound\": %.3f, \"wait_p99_vs_fifo_bound\": %.3f, \"ratio_vs_tcp\": %.3f",
					per_wait[c][i], bound[c][i],
					bound99[c][i], vs_tcp[c][i]);
			printf("}%s", c == SC_NR - 1 ? "" : ", ");
		}
		printf("}%s\n", i == nn - 1 ? "" : ",");
		if (bound[SC_ULP][i] > worst_bound)
			worst_bound = bound[SC_ULP][i];
		fprintf(stderr,
			"scale %5d (median of %d) ulp: %.2f us/handoff, %.3f x TCP's time, longest wait %.2f x FIFO bound (p99 %.2f); ulp_reserve: %.2f us/handoff, %.3f x TCP's time\n",
			ns[i], reps, per_wait[SC_ULP][i], vs_tcp[SC_ULP][i],
			bound[SC_ULP][i], bound99[SC_ULP][i],
			per_wait[SC_RESERVE][i], vs_tcp[SC_RESERVE][i]);
	}
	printf("  },\n");
	printf("  \"scale_handoff_flatness\": %.3f,\n",
	       worst_vs_first(per_wait[SC_ULP], nn));
	printf("  \"scale_reserve_handoff_flatness\": %.3f,\n",
	       worst_vs_first(per_wait[SC_RESERVE], nn));
	printf("  \"scale_wait_vs_fifo_bound\": %.3f,\n", worst_bound);
	printf("  \"scale_ratio_vs_tcp\": %.3f,\n", vs_tcp[SC_ULP][nn - 1]);
	printf("  \"scale_reserve_ratio_vs_tcp\": %.3f,\n",
	       vs_tcp[SC_RESERVE][nn - 1]);
	printf("  \"scale_peak_in_use\": %lld,\n", peak);
	printf("  \"scale_peak_bytes\": %lld,\n", peak * buf_size);
	fprintf(stderr,
		"%-40s %.3f (us per handoff at each N over N = %d's: the one furthest from 1)\n",
		"scale_handoff_flatness", worst_vs_first(per_wait[SC_ULP], nn),
		ns[0]);
	fprintf(stderr, "%-40s %.3f\n", "scale_reserve_handoff_flatness",
		worst_vs_first(per_wait[SC_RESERVE], nn));
	fprintf(stderr, "%-40s %.3f (the worst N)\n", "scale_wait_vs_fifo_bound",
		worst_bound);
	if (failed)
		fprintf(stderr, "ulp_bench scale: FAILED\n");
	return failed;
}

/* ctx: the per-socket context's size, as the slab allocator rounds it */

#define CTX_MAX_CACHES	512

struct slab_count {
	char name[64];
	long active, objsize;
};

/* /proc/slabinfo: name, active objects, object size; the count, or -1. */
static int slabinfo_read(struct slab_count *sc, int max)
{
	FILE *f = fopen("/proc/slabinfo", "r");
	char line[512];
	int n = 0;
	long total;

	if (!f)
		return -1;
	while (n < max && fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || !strncmp(line, "slabinfo", 8))
			continue;
		if (sscanf(line, "%63s %ld %ld %ld", sc[n].name, &sc[n].active,
			   &total, &sc[n].objsize) == 4)
			n++;
	}
	fclose(f);
	return n;
}

static int cmd_ctx(int argc, char **argv)
{
	static struct slab_count before[CTX_MAX_CACHES], after[CTX_MAX_CACHES];
	int n = 2000, opt, i, j, nb, na, best = -1;
	long best_delta = 0, delta;
	int *cli, *srv;
	struct lsn l;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n')
			return 2;
		n = atoi(optarg);
	}
	if (n < 100 || n > 20000) {
		fprintf(stderr, "ulp_bench ctx: bad -n (100 to 20000)\n");
		return 2;
	}
	if (raise_nofile(2 * (rlim_t)n + 64))
		die("setrlimit(RLIMIT_NOFILE)");
	cli = calloc(n, sizeof(*cli));
	srv = calloc(n, sizeof(*srv));
	if (!cli || !srv)
		die("calloc");
	if (lsn_open(&l, AF_INET, false))
		die("listen on loopback");
	for (i = 0; i < n; i++)
		cli[i] = lsn_pair_or_die(&l, &srv[i]);
	close(l.fd);
	usleep(100000);
	nb = slabinfo_read(before, CTX_MAX_CACHES);
	for (i = 0; i < n; i++)
		if (attach(cli[i]))
			die("setsockopt(TCP_ULP, \"mbufmux\") (is mbufmux_tcp loaded?)");
	na = slabinfo_read(after, CTX_MAX_CACHES);
	if (nb < 0 || na < 0)
		die("read /proc/slabinfo");
	/* The cache that grew the most; a context is one object of it. */
	for (j = 0; j < na; j++)
		for (i = 0; i < nb; i++) {
			if (strcmp(before[i].name, after[j].name))
				continue;
			delta = after[j].active - before[i].active;
			if (delta > best_delta) {
				best_delta = delta;
				best = j;
			}
		}
	for (i = 0; i < n; i++) {
		close(cli[i]);
		close(srv[i]);
	}
	free(cli);
	free(srv);
	if (best < 0) {
		fprintf(stderr, "ulp_bench ctx: no slab cache grew\n");
		return 1;
	}
	fprintf(stdout,
		"  \"ctx\": {\"sockets\": %d, \"cache\": \"%s\", \"objects_added\": %ld, \"object_size\": %ld},\n",
		n, after[best].name, best_delta, after[best].objsize);
	printf("  \"ctx_bytes\": %ld,\n", after[best].objsize);
	fprintf(stderr,
		"%-40s %ld (%d sockets attached: %s grew by %ld objects of %ld bytes)\n",
		"ctx_bytes", after[best].objsize, n, after[best].name,
		best_delta, after[best].objsize);
	/* About one object per socket, or it was not the context. */
	return best_delta < n * 9 / 10 || best_delta > n * 11 / 10;
}

/* memory */

#define MEM_MAX_N	4096
#define MEM_MAX_PASSES	10

struct mem_cfg {
	const char *name;
	bool ulp;
	bool lowat;		/* TCP_NOTSENT_LOWAT on each sender */
};

static const struct mem_cfg mem_cfgs[] = {
	{ "ulp", true, false },
	{ "tcp", false, false },
	{ "tcp_lowat", false, true },
};

#define MEM_NR_CFGS	((int)ARRAY_SIZE(mem_cfgs))

struct mem_result {
	long long accepted, unsent, unsent_max, outq, peer_inq;
	long long staged, pool_in_use, pool_waiters;
	long long mem_before, mem_after;	/* sockstat TCP mem, pages */
	int at_cap, none_accepted, holding, parked, passes, errors;
	double secs, settle_secs;
	bool settled;
};

/* /proc/net/sockstat: "TCP: inuse I orphan O tw T alloc A mem M"; -1 if not. */
static long long sockstat_tcp_mem(void)
{
	char line[256];
	long long mem = -1;
	FILE *f = fopen("/proc/net/sockstat", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, " mem ");

		if (!strncmp(line, "TCP:", 4) && p) {
			mem = atoll(p + 5);
			break;
		}
	}
	fclose(f);
	return mem;
}

/* Three numbers of a sysctl file (tcp_mem, tcp_wmem), in @v. */
static void sysctl3(const char *path, long long v[3])
{
	FILE *f = fopen(path, "r");

	if (!f || fscanf(f, "%lld %lld %lld", &v[0], &v[1], &v[2]) != 3) {
		v[0] = -1;
		v[1] = -1;
		v[2] = -1;
	}
	if (f)
		fclose(f);
}

/* Waits (up to 10 s) for TCP's memory to fall back to @base + @slack pages. */
static bool mem_settle(long long base, long long slack, double *secs)
{
	double t0 = now();
	long long m;

	do {
		m = sockstat_tcp_mem();
		if (m >= 0 && m <= base + slack) {
			*secs = now() - t0;
			return true;
		}
		usleep(50000);
	} while (now() - t0 < 10);
	*secs = now() - t0;
	return false;
}

static void mem_run(const struct mem_cfg *cfg, int n, long long cap,
		    size_t wsize, int lowat, const char *buf,
		    struct mem_result *res)
{
	int *cli = calloc(n, sizeof(int)), *srv = calloc(n, sizeof(int));
	long long *acc = calloc(n, sizeof(long long));
	struct lsn l;
	int i, pass;
	double t0;

	if (!cli || !srv || !acc)
		die("calloc");
	memset(res, 0, sizeof(*res));
	res->mem_before = sockstat_tcp_mem();
	if (lsn_open(&l, AF_INET, false))
		die("listen on loopback");
	for (i = 0; i < n; i++) {
		cli[i] = lsn_pair_or_die(&l, &srv[i]);
		if (cfg->ulp && attach(cli[i]))
			die("setsockopt(TCP_ULP, \"mbufmux\") (is mbufmux_tcp loaded?)");
		if (cfg->lowat && setsockopt(cli[i], IPPROTO_TCP,
					     TCP_NOTSENT_LOWAT, &lowat,
					     sizeof(lowat)))
			die("setsockopt(TCP_NOTSENT_LOWAT)");
		if (set_nonblock(cli[i]))
			die("fcntl");
	}
	close(l.fd);

	/* Passes over all senders until one gets nothing more accepted. */
	t0 = now();
	for (pass = 0; pass < MEM_MAX_PASSES; pass++) {
		long long got = 0;

		for (i = 0; i < n; i++) {
			while (acc[i] < cap) {
				size_t len = wsize;
				ssize_t ret;

				if ((long long)len > cap - acc[i])
					len = cap - acc[i];
				ret = send(cli[i], buf, len,
					   MSG_DONTWAIT | MSG_NOSIGNAL);
				if (ret > 0) {
					acc[i] += ret;
					got += ret;
					continue;
				}
				if (ret < 0 && errno == EINTR)
					continue;
				if (ret < 0 && errno != EAGAIN) {
					fprintf(stderr,
						"ulp_bench memory: %s sender %d: send: %s\n",
						cfg->name, i, strerror(errno));
					res->errors++;
					acc[i] = cap + 1;	/* no more */
				}
				break;
			}
		}
		res->passes = pass + 1;
		if (!got)
			break;
		usleep(100000);
	}
	res->secs = now() - t0;
	/* Let the write-space callbacks and work items run. */
	usleep(200000);

	for (i = 0; i < n; i++) {
		int nsd = 0, outq = 0, inq = 0;

		if (acc[i] > cap)
			acc[i] = cap;	/* an error stopped it */
		res->accepted += acc[i];
		if (acc[i] == cap)
			res->at_cap++;
		if (!acc[i])
			res->none_accepted++;
		if (ioctl(cli[i], SIOCOUTQNSD, &nsd) || ioctl(cli[i], SIOCOUTQ, &outq) ||
		    ioctl(srv[i], SIOCINQ, &inq))
			die("ioctl(SIOCOUTQNSD/SIOCOUTQ/SIOCINQ)");
		res->unsent += nsd;
		if (nsd > res->unsent_max)
			res->unsent_max = nsd;
		res->outq += outq;
		res->peer_inq += inq;
		if (cfg->ulp) {
			struct mbufmux_info info;
			socklen_t len = sizeof(info);

			if (!getsockopt(cli[i], SOL_MBUFMUX, MBUFMUX_INFO, &info,
					&len)) {
				res->staged += info.staged;
				res->holding += !!(info.flags & MBUFMUX_F_HOLDS_BUF);
				res->parked += !!(info.flags & MBUFMUX_F_PARKED);
			}
		}
	}
	res->mem_after = sockstat_tcp_mem();
	if (cfg->ulp) {
		res->pool_in_use = stat_get("in_use");
		res->pool_waiters = stat_get("waiters");
	}

	/* The peers first: closing with unread data resets the connection. */
	for (i = 0; i < n; i++)
		close(srv[i]);
	for (i = 0; i < n; i++)
		close(cli[i]);
	free(acc);
	free(srv);
	free(cli);
}

static void mem_print(const struct mem_cfg *cfg, int n,
		      const struct mem_result *r, const long long tcp_mem[3])
{
	fprintf(stdout,
		"\"%s\": {\"accepted_bytes\": %lld, \"unsent_bytes\": %lld, \"unsent_max_per_sender\": %lld, \"outq_bytes\": %lld, \"peer_inq_bytes\": %lld, \"senders_at_cap\": %d, \"senders_none_accepted\": %d, \"passes\": %d, \"send_errors\": %d, \"secs\": %.2f, \"sockstat_tcp_mem_pages\": {\"before\": %lld, \"after\": %lld, \"delta\": %lld}, \"settled_after\": %s, \"settle_secs\": %.2f",
		cfg->name, r->accepted, r->unsent, r->unsent_max, r->outq,
		r->peer_inq, r->at_cap, r->none_accepted, r->passes, r->errors,
		r->secs, r->mem_before, r->mem_after,
		r->mem_after - r->mem_before, r->settled ? "true" : "false",
		r->settle_secs);
	/* TCP's memory past tcp_mem[1] (pressure) or tcp_mem[2] (its limit) */
	printf(", \"tcp_mem_pressure\": %s, \"tcp_mem_over_limit\": %s",
	       r->mem_after > tcp_mem[1] ? "true" : "false",
	       r->mem_after > tcp_mem[2] ? "true" : "false");
	if (cfg->ulp)
		fprintf(stdout,
			", \"staged_bytes\": %lld, \"holding\": %d, \"parked\": %d, \"pool_in_use\": %lld, \"pool_waiters\": %lld",
			r->staged, r->holding, r->parked, r->pool_in_use,
			r->pool_waiters);
	printf("},\n        ");
	fprintf(stderr,
		"memory %4d %-10s unsent %9.3f MB (max %7.1f KiB/sender), accepted %9.3f MB, peers' inq %8.3f MB, TCP mem %6lld -> %6lld pages",
		n, cfg->name, r->unsent / 1e6, r->unsent_max / 1024.0,
		r->accepted / 1e6, r->peer_inq / 1e6, r->mem_before,
		r->mem_after);
	if (cfg->ulp)
		fprintf(stderr, ", pool in_use %lld, %d holding, %d parked",
			r->pool_in_use, r->holding, r->parked);
	if (r->at_cap)
		fprintf(stderr, ", %d at the cap", r->at_cap);
	if (r->mem_after > tcp_mem[1])
		fprintf(stderr, ", past tcp_mem[%d]", r->mem_after > tcp_mem[2] ? 2 : 1);
	fprintf(stderr, "\n");
}

static double ratio_or0(long long a, long long b)
{
	return b > 0 ? (double)a / b : 0;
}

static int cmd_memory(int argc, char **argv)
{
	int ns[8] = { 64, 1024 }, nn = 2, lowat = 16384, opt, i, c;
	long long cap = 4LL << 20, limit, buf_size, base, tcp_mem[3], tcp_wmem[3];
	long long in_use0, worst = 0;
	size_t wsize = 65536;
	struct mem_result res[8][MEM_NR_CFGS];
	struct rlimit rl;
	char *buf, *tok;
	int failed = 0;

	while ((opt = getopt(argc, argv, "n:c:w:l:")) != -1) {
		switch (opt) {
		case 'n':
			nn = 0;
			for (tok = strtok(optarg, ","); tok && nn < 8;
			     tok = strtok(NULL, ","))
				ns[nn++] = atoi(tok);
			break;
		case 'c':
			cap = atoll(optarg);
			break;
		case 'w':
			wsize = atoi(optarg);
			break;
		case 'l':
			lowat = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	for (i = 0; i < nn; i++)
		if (ns[i] < 1 || ns[i] > MEM_MAX_N)
			nn = 0;
	if (!nn || cap < 1 || wsize < 1 || lowat < 1) {
		fprintf(stderr, "ulp_bench memory: bad -n, -c, -w or -l\n");
		return 2;
	}
	rl.rlim_max = 2 * (rlim_t)MEM_MAX_N + 64;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit(RLIMIT_NOFILE) (root, fs.nr_open)");
	buf = malloc(wsize);
	if (!buf)
		die("malloc");
	memset(buf, 'm', wsize);

	limit = stat_get("limit");
	buf_size = stat_get("buf_size");
	in_use0 = stat_get("in_use");
	if (limit < 0 || buf_size < 0)
		die("read " DBG_DIR "stats (mbufmux_tcp loaded, debugfs mounted?)");
	sysctl3("/proc/sys/net/ipv4/tcp_mem", tcp_mem);
	sysctl3("/proc/sys/net/ipv4/tcp_wmem", tcp_wmem);
	base = sockstat_tcp_mem();

	for (i = 0; i < nn; i++)
		for (c = 0; c < MEM_NR_CFGS; c++) {
			struct mem_result *r = &res[i][c];

			mem_run(&mem_cfgs[c], ns[i], cap, wsize, lowat, buf, r);
			/* TCP's memory must be back before the next one. */
			r->settled = mem_settle(base, 1024, &r->settle_secs);
			if (r->errors || !r->settled)
				failed = 1;
		}

	fprintf(stdout,
		"  \"send_memory\": {\"pool_limit\": %lld, \"buf_size\": %lld, \"pool_bound_bytes\": %lld, \"pool_in_use_before\": %lld, \"write_size\": %zu, \"cap_per_sender_bytes\": %lld, \"notsent_lowat\": %d, \"page_size\": %ld, \"tcp_mem\": [%lld, %lld, %lld], \"tcp_wmem\": [%lld, %lld, %lld], \"sockstat_tcp_mem_pages_at_start\": %lld,\n",
		limit, buf_size, limit * buf_size, in_use0, wsize, cap, lowat,
		sysconf(_SC_PAGESIZE), tcp_mem[0], tcp_mem[1], tcp_mem[2],
		tcp_wmem[0], tcp_wmem[1], tcp_wmem[2], base);
	for (i = 0; i < nn; i++) {
		struct mem_result *r = res[i];

		printf("    \"%d\": {", ns[i]);
		for (c = 0; c < MEM_NR_CFGS; c++)
			mem_print(&mem_cfgs[c], ns[i], &r[c], tcp_mem);
		fprintf(stdout,
			"\"ratio_ulp_vs_tcp\": %.4f, \"ratio_ulp_vs_tcp_lowat\": %.4f, \"ratio_tcp_lowat_vs_tcp\": %.4f, \"ulp_within_pool_bound\": %s},\n",
			ratio_or0(r[0].unsent, r[1].unsent),
			ratio_or0(r[0].unsent, r[2].unsent),
			ratio_or0(r[2].unsent, r[1].unsent),
			r[0].unsent <= limit * buf_size ? "true" : "false");
		fprintf(stderr,
			"memory %4d ulp/tcp %.4f, ulp/tcp_lowat %.4f, tcp_lowat/tcp %.4f; ulp within limit x buf_size (%lld KiB): %s\n",
			ns[i], ratio_or0(r[0].unsent, r[1].unsent),
			ratio_or0(r[0].unsent, r[2].unsent),
			ratio_or0(r[2].unsent, r[1].unsent),
			limit * buf_size / 1024,
			r[0].unsent <= limit * buf_size ? "yes" : "NO");
	}
	printf("    \"key\": \"unsent_bytes (sum of SIOCOUTQNSD), ULP / plain TCP\"");
	if (nn >= 2) {
		/* The growth from the first N to the last, per configuration. */
		printf(",\n    \"growth_%d_vs_%d\": {", ns[nn - 1], ns[0]);
		for (c = 0; c < MEM_NR_CFGS; c++)
			printf("%s\"%s\": %.3f", c ? ", " : "", mem_cfgs[c].name,
			       ratio_or0(res[nn - 1][c].unsent, res[0][c].unsent));
		printf("}");
		fprintf(stderr,
			"memory growth %d vs %d senders: ulp %.3f, tcp %.3f, tcp_lowat %.3f\n",
			ns[nn - 1], ns[0],
			ratio_or0(res[nn - 1][0].unsent, res[0][0].unsent),
			ratio_or0(res[nn - 1][1].unsent, res[0][1].unsent),
			ratio_or0(res[nn - 1][2].unsent, res[0][2].unsent));
	}
	printf("\n  },\n");
	printf("  \"send_memory_ratio\": %.4f,\n",
	       ratio_or0(res[0][0].unsent, res[0][1].unsent));
	fprintf(stderr, "%-40s %.4f (%d senders)\n", "send_memory_ratio",
		ratio_or0(res[0][0].unsent, res[0][1].unsent), ns[0]);
	if (nn >= 2) {
		printf("  \"send_memory_ratio_%d\": %.4f,\n", ns[nn - 1],
		       ratio_or0(res[nn - 1][0].unsent, res[nn - 1][1].unsent));
		printf("  \"send_memory_ulp_flat\": %.3f,\n",
		       ratio_or0(res[nn - 1][0].unsent, res[0][0].unsent));
		printf("  \"send_memory_tcp_growth\": %.3f,\n",
		       ratio_or0(res[nn - 1][1].unsent, res[0][1].unsent));
		fprintf(stderr, "send_memory_ratio_%-22d %.4f (%d senders)\n",
			ns[nn - 1],
			ratio_or0(res[nn - 1][0].unsent, res[nn - 1][1].unsent),
			ns[nn - 1]);
		fprintf(stderr, "%-40s %.3f (ULP %d / %d senders; tcp %.3f)\n",
			"send_memory_ulp_flat",
			ratio_or0(res[nn - 1][0].unsent, res[0][0].unsent),
			ns[nn - 1], ns[0],
			ratio_or0(res[nn - 1][1].unsent, res[0][1].unsent));
	}
	/* The send path's bound: ULP unsent within limit x buf_size, every N. */
	for (i = 0; i < nn; i++)
		if (res[i][0].unsent > worst)
			worst = res[i][0].unsent;
	printf("  \"send_memory_ulp_vs_bound\": %.3f,\n",
	       ratio_or0(worst, limit * buf_size));
	fprintf(stderr, "%-40s %.3f (the most unsent of any N / %lld KiB)\n",
		"send_memory_ulp_vs_bound", ratio_or0(worst, limit * buf_size),
		limit * buf_size / 1024);
	free(buf);
	if (failed)
		fprintf(stderr,
			"ulp_bench memory: FAILED (a send error, or TCP's memory did not fall back)\n");
	return failed;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {
		{ "stream", cmd_stream },
		{ "rr", cmd_rr },
		{ "scale", cmd_scale },
		{ "ctx", cmd_ctx },
		{ "memory", cmd_memory },
	};
	size_t i;

	for (i = 0; argc >= 2 && i < ARRAY_SIZE(cmds); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr,
		"usage: ulp_bench stream [-s SECS] [-r REPS] [-f FLUSH] [-w SIZE] [-n FLOWS] [-m MODE] [-D]\n"
		"       ulp_bench rr [-n PINGS] [-r REPS] [-s SECS] [-B BACKGROUND] [-D] [-o]\n"
		"       ulp_bench scale [-c N[,N...]] [-b BYTES] [-m MSGS] [-r RESERVE] [-P PERMILLE] [-R ROUNDS] [-a OCTET] [-T TIMEOUT]\n"
		"       ulp_bench ctx [-n N]\n"
		"       ulp_bench memory [-n N[,N...]] [-c CAP] [-w SIZE] [-l LOWAT]\n");
	return 2;
}
