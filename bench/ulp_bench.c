// SPDX-License-Identifier: GPL-2.0
/*
 * ulp_bench - the "mbufmux" TCP ULP against plain TCP over loopback.
 *
 *   ulp_bench stream [-s SECS] [-r REPS] [-f FLUSH] [-w SIZE] [-n FLOWS] [-m MODE] [-D]
 *	Throughput of 1 and 16 flows, each a sender and a receiver thread:
 *	64 KiB writes (plain on both), and 64-byte writes: plain send()s on
 *	TCP and under the ULP (ulp_plain), and send(MSG_MORE) under the ULP
 *	with a send without it every FLUSH writes (the ULP also pushes every
 *	buffer-full); TCP with the same MSG_MORE batching is measured too.
 *	After an unrecorded warm-up (16 flows of 64 KiB writes, ULP then
 *	TCP), the cells run in turn, REPS rounds, each ULP cell right before the
 *	TCP cell it is compared with (ULP, TCP, ULP, TCP, ...), so that noise
 *	hits a pair alike; each figure is the median, each ratio the median
 *	of the pairs' ratios, with their min and max.
 *	-w, -n and -m run only the cells of that write size (65536 or 64),
 *	flow count (1 or 16) or mode (tcp, ulp, tcp_more, null_floor,
 *	ulp_plain), to profile one; the others then report 0. -D sets
 *	TCP_NODELAY on every sender, in every mode (a diagnosis: is Nagle's
 *	algorithm what holds a figure back?).
 *
 *   ulp_bench scale [-c CONNS] [-b BYTES] [-m MSGS] [-t | -u] [-T TIMEOUT]
 *	CONNS connections at once, each writing BYTES in MSGS messages from
 *	one epoll loop; every message is two writes, the first with
 *	MSG_MORE, so that a connection holds a pool buffer across loop turns
 *	and the pool's limit is reached. A second thread receives and checks
 *	every byte. With the ULP (the default; -t for plain TCP) the pool
 *	must never have more than its limit out, and every connection must
 *	complete. Reports completion times and Jain's index of them. -u
 *	attaches without CAP_NET_ADMIN (the sockets then leave the reserve).
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
#define MAX_REPS	15

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

static double median(const double *v, int n)
{
	double s[MAX_REPS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The ratios of the pairs, each run in the same round one after the other. */
struct pairs {
	double q[MAX_REPS];
	double med, min, max;
	int n;
};

/*
 * The median of the ratios @a[r] / @b[r] (and their min and max): each
 * pair ran in the same round, one right after the other, so that slow
 * drifts of the host's load cancel.
 */
static struct pairs paired(const double *a, const double *b, int n)
{
	struct pairs p = { .n = n };
	int r;

	for (r = 0; r < n; r++) {
		p.q[r] = b[r] > 0 ? a[r] / b[r] : 0;
		if (!r || p.q[r] < p.min)
			p.min = p.q[r];
		if (!r || p.q[r] > p.max)
			p.max = p.q[r];
	}
	p.med = median(p.q, n);
	return p;
}

static double paired_ratio(const double *a, const double *b, int n)
{
	return paired(a, b, n).med;
}

/* JSON: "NAME": median, "NAME_pairs": [...], "NAME_spread": [min, max] */
static void print_pairs(const char *name, const struct pairs *p)
{
	int r;

	printf("\"%s\": %.3f, \"%s_pairs\": [", name, p->med, name);
	for (r = 0; r < p->n; r++)
		printf("%s%.3f", r ? ", " : "", p->q[r]);
	printf("], \"%s_spread\": [%.3f, %.3f]", name, p->min, p->max);
}

/* Jain's fairness index: (sum x)^2 / (n * sum x^2), 1 when all are equal. */
static double jain(const double *x, int n)
{
	double sum = 0, sq = 0;
	int i;

	for (i = 0; i < n; i++) {
		sum += x[i];
		sq += x[i] * x[i];
	}
	return sq > 0 ? sum * sum / (n * sq) : 0;
}

/*
 * Leave CAP_NET_ADMIN out of the effective set: the ULP then gives the
 * sockets the pool's default margin (they leave the reserve), as for an
 * unprivileged program. With it, a socket's margin is 0 (explicit).
 */
static void drop_net_admin(void)
{
	if (net_admin(false))
		die("capset");
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

/*
 * The order of the cells in a round, per write size: each ULP cell right
 * before the TCP cell it is compared with (for small writes, TCP's cell
 * sits between both ULP cells it is the baseline of).
 */
static const enum mode large_order[] = { M_ULP, M_TCP };
static const enum mode small_order[] = {
	M_ULP_PLAIN, M_TCP, M_ULP, M_TCP_MORE, M_NULL,
};

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

/* Bytes per second received over @secs, after a short warm-up. */
static bool stream_nodelay;	/* -D: TCP_NODELAY on every sender */

static double stream_run(enum mode m, size_t wsize, int flows, int flush,
			 double secs)
{
	pthread_t tx[MAX_FLOWS], rx[MAX_FLOWS];
	struct flow f[MAX_FLOWS];
	pthread_barrier_t start;
	int stop = 0;
	uint64_t b0 = 0, b1 = 0;
	double t0, t1;
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
			f[i].cli = lsn_pair(&l, &f[i].srv);
			if (f[i].cli < 0)
				die("connect");
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
	for (i = 0; i < flows; i++)
		b0 += __atomic_load_n(&f[i].rx, __ATOMIC_RELAXED);
	usleep(secs * 1e6);
	t1 = now();
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
	return (b1 - b0) / (t1 - t0);
}

static int cmd_stream(int argc, char **argv)
{
	static const size_t sizes[2] = { 65536, 64 };
	static const char * const size_names[2] = { "large", "small" };
	static const enum mode * const orders[2] = { large_order, small_order };
	static const int order_len[2] = {
		ARRAY_SIZE(large_order), ARRAY_SIZE(small_order),
	};
	static const int flow_counts[2] = { 1, 16 };
	double v[2][2][M_NR][MAX_REPS], med[2][2][M_NR];
	/* [size][flows]: ULP / TCP; plain: ULP without MSG_MORE / TCP */
	struct pairs ratio[2][2], plain[2];
	double secs = 1.5;
	int key[2], key_plain;
	int reps = 3, flush = 256, only_size = 0, only_flows = 0;
	const char *only_mode = NULL;
	int opt, s, fl, m, k, r;

	memset(v, 0, sizeof(v));
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
	if (reps < 1 || reps > MAX_REPS || flush < 1 || secs <= 0) {
		fprintf(stderr, "ulp_bench stream: bad -s, -r or -f\n");
		return 2;
	}

	/*
	 * Warm-up, not recorded: the first cells after the previous part (or
	 * a cold pool) ran slow for both modes.
	 */
	if (!only_size && !only_flows && !only_mode) {
		stream_run(M_ULP, sizes[0], flow_counts[1], 0, secs);
		stream_run(M_TCP, sizes[0], flow_counts[1], 0, secs);
	}

	/* Interleaved: every cell once per round, in pairs (ULP, TCP). */
	for (r = 0; r < reps; r++)
		for (s = 0; s < 2; s++)
			for (fl = 0; fl < 2; fl++)
				for (k = 0; k < order_len[s]; k++) {
					m = orders[s][k];
					if ((only_size && only_size != (int)sizes[s]) ||
					    (only_flows && only_flows != flow_counts[fl]) ||
					    (only_mode && strcmp(only_mode, mode_names[m])))
						continue;
					v[s][fl][m][r] = stream_run(m, sizes[s],
								    flow_counts[fl],
								    s ? flush : 0,
								    secs);
				}

	fprintf(stdout,
		"  \"ulp\": {\"secs\": %.2f, \"reps\": %d, \"small_flush_every\": %d, \"nodelay\": %s,\n",
		secs, reps, flush, stream_nodelay ? "true" : "false");
	printf("%s",
	       "    \"order\": \"per round and flow count: large ulp, tcp; small ulp_plain, tcp, ulp, tcp_more, null_floor\",\n");
	for (s = 0; s < 2; s++) {
		printf("    \"%s\": {\"write_size\": %zu", size_names[s], sizes[s]);
		key[s] = 0;
		for (fl = 0; fl < 2; fl++) {
			printf(",\n      \"%d\": {", flow_counts[fl]);
			for (k = 0; k < order_len[s]; k++) {
				m = orders[s][k];
				med[s][fl][m] = median(v[s][fl][m], reps);
				printf("\"%s\": {\"mbytes_per_sec\": %.2f, \"runs\": [",
				       mode_names[m], med[s][fl][m] / 1e6);
				for (r = 0; r < reps; r++)
					printf("%s%.2f", r ? ", " : "",
					       v[s][fl][m][r] / 1e6);
				printf("]}, ");
				fprintf(stderr,
					"ulp %-5s %2d flow%s %-10s %9.2f MB/s  (runs:",
					size_names[s], flow_counts[fl],
					fl ? "s" : " ", mode_names[m],
					med[s][fl][m] / 1e6);
				for (r = 0; r < reps; r++)
					fprintf(stderr, " %.2f", v[s][fl][m][r] / 1e6);
				fprintf(stderr, ")\n");
			}
			ratio[s][fl] = paired(v[s][fl][M_ULP], v[s][fl][M_TCP],
					      reps);
			print_pairs("ratio_ulp_vs_tcp", &ratio[s][fl]);
			if (s == 1) {
				plain[fl] = paired(v[s][fl][M_ULP_PLAIN],
						   v[s][fl][M_TCP], reps);
				printf(", ");
				print_pairs("ratio_ulp_plain_vs_tcp", &plain[fl]);
				printf(", \"ratio_ulp_vs_tcp_more\": %.3f",
				       paired_ratio(v[s][fl][M_ULP],
						    v[s][fl][M_TCP_MORE], reps));
				printf(", \"ratio_null_floor_vs_tcp\": %.3f",
				       paired_ratio(v[s][fl][M_NULL],
						    v[s][fl][M_TCP], reps));
			}
			printf("}");
			if (ratio[s][fl].med < ratio[s][key[s]].med)
				key[s] = fl;
		}
		printf("},\n");
	}
	key_plain = plain[1].med < plain[0].med;
	printf("    \"key\": \"the lower ratio of 1 and 16 flows\"\n  },\n");
	printf("  \"ulp_large_ratio\": %.3f,\n", ratio[0][key[0]].med);
	printf("  \"ulp_large_ratio_flows\": %d,\n", flow_counts[key[0]]);
	printf("  \"ulp_large_ratio_spread\": [%.3f, %.3f],\n",
	       ratio[0][key[0]].min, ratio[0][key[0]].max);
	printf("  \"ulp_small_ratio\": %.3f,\n", ratio[1][key[1]].med);
	printf("  \"ulp_small_ratio_spread\": [%.3f, %.3f],\n",
	       ratio[1][key[1]].min, ratio[1][key[1]].max);
	printf("  \"ulp_small_plain_ratio\": %.3f,\n", plain[key_plain].med);
	printf("  \"ulp_small_plain_ratio_flows\": %d,\n",
	       flow_counts[key_plain]);
	printf("  \"ulp_small_plain_ratio_spread\": [%.3f, %.3f],\n",
	       plain[key_plain].min, plain[key_plain].max);
	fprintf(stderr,
		"%-40s %.3f (1 flow %.3f [%.3f-%.3f], 16 flows %.3f [%.3f-%.3f])\n",
		"ulp_large_ratio", ratio[0][key[0]].med,
		ratio[0][0].med, ratio[0][0].min, ratio[0][0].max,
		ratio[0][1].med, ratio[0][1].min, ratio[0][1].max);
	fprintf(stderr,
		"%-40s %.3f (1 flow %.3f [%.3f-%.3f], 16 flows %.3f [%.3f-%.3f])\n",
		"ulp_small_ratio", ratio[1][key[1]].med,
		ratio[1][0].med, ratio[1][0].min, ratio[1][0].max,
		ratio[1][1].med, ratio[1][1].min, ratio[1][1].max);
	fprintf(stderr,
		"%-40s %.3f (1 flow %.3f [%.3f-%.3f], 16 flows %.3f [%.3f-%.3f])\n",
		"ulp_small_plain_ratio", plain[key_plain].med,
		plain[0].med, plain[0].min, plain[0].max,
		plain[1].med, plain[1].min, plain[1].max);
	return 0;
}

/* scale */

struct conn {
	int cli, srv;
	unsigned int sent;	/* bytes the sender got accepted */
	unsigned int rcvd;	/* bytes received and checked */
	unsigned int eagain;
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

static int cmd_scale(int argc, char **argv)
{
	unsigned int bytes = 4096, msgs = 4;
	int conns = 10000, use_ulp = 1, unpriv = 0, opt, i, k, n, ep;
	struct lsn l;
	int failed = 0;
	long long limit = -1, peak = -1, peak0 = -1, allocs0 = -1;
	long long handoffs0 = 0, waits0 = 0;
	long long buf_size = -1, handoffs = -1, waits = -1, wait_ns_max = -1;
	long long clean = 0;
	double timeout = 240, t_setup, t_end, t_rx_end = 0;
	double *ct, ct_max = 0, ct_sum = 0, wait_sum = 0, wait_max = 0;
	pthread_t rx_thread, mon_thread;
	struct epoll_event ev[1024];
	struct scale sc = {};
	struct rlimit rl;
	unsigned char *data;
	int done = 0, eagain_conns = 0;
	const char *name;

	while ((opt = getopt(argc, argv, "c:b:m:tuT:")) != -1) {
		switch (opt) {
		case 'c':
			conns = atoi(optarg);
			break;
		case 'b':
			bytes = atoi(optarg);
			break;
		case 'm':
			msgs = atoi(optarg);
			break;
		case 't':
			use_ulp = 0;
			break;
		case 'u':
			unpriv = 1;
			break;
		case 'T':
			timeout = atof(optarg);
			break;
		default:
			return 2;
		}
	}
	if (conns < 1 || !msgs || bytes < 2 * msgs || bytes % (2 * msgs)) {
		fprintf(stderr, "ulp_bench scale: need -c >= 1 and -b a multiple of 2 * -m\n");
		return 2;
	}
	name = !use_ulp ? "scale_tcp" : unpriv ? "scale_unpriv" : "scale";

	/* Two descriptors a connection, and some. */
	rl.rlim_max = 2 * (rlim_t)conns + 64;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit(RLIMIT_NOFILE) (root, fs.nr_open)");

	sc.c = calloc(conns, sizeof(*sc.c));
	ct = calloc(conns, sizeof(*ct));
	data = malloc(bytes);
	if (!sc.c || !ct || !data)
		die("calloc");
	sc.conns = conns;
	sc.bytes = bytes;
	sc.half = bytes / msgs / 2;

	if (use_ulp) {
		limit = stat_get("limit");
		peak0 = stat_get("peak");
		allocs0 = stat_get("allocs");
		handoffs0 = stat_get("handoffs");
		waits0 = stat_get("waits");
		buf_size = stat_get("buf_size");
		if (limit < 0)
			die("read " DBG_DIR "stats (mbufmux_tcp loaded, debugfs mounted?)");
	}

	if (unpriv)
		drop_net_admin();
	t_setup = now();
	if (lsn_open(&l, AF_INET, false))
		die("listen on loopback");
	for (i = 0; i < conns; i++) {
		sc.c[i].cli = lsn_pair(&l, &sc.c[i].srv);
		if (sc.c[i].cli < 0)
			die("connect");
		if (use_ulp && attach(sc.c[i].cli))
			die("setsockopt(TCP_ULP, \"mbufmux\")");
		if (set_nonblock(sc.c[i].cli))
			die("fcntl");
		if (set_nonblock(sc.c[i].srv))
			die("fcntl");
	}
	close(l.fd);
	t_setup = now() - t_setup;

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

			i = ev[k].data.u32;
			if (ev[k].events & (EPOLLERR | EPOLLHUP)) {
				fprintf(stderr, "ulp_bench: connection %d: error\n", i);
				epoll_ctl(ep, EPOLL_CTL_DEL, c->cli, NULL);
				failed = 1;
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
					if (!c->eagain++)
						eagain_conns++;
					continue;
				}
				fprintf(stderr, "ulp_bench: connection %d: send: %s\n",
					i, strerror(errno));
				epoll_ctl(ep, EPOLL_CTL_DEL, c->cli, NULL);
				failed = 1;
				done++;
				continue;
			}
			c->sent += ret;
			if (c->sent == sc.bytes) {
				c->done = now() - sc.t0;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->cli, NULL);
				done++;
			}
		}
	}
	t_end = now() - sc.t0;
	/* The receiver ends once everything came; give up after a while. */
	if (timed_join(rx_thread, failed ? 1 : 30)) {
		__atomic_store_n(&sc.stop, 1, __ATOMIC_RELAXED);
		pthread_join(rx_thread, NULL);
	}
	__atomic_store_n(&sc.stop, 1, __ATOMIC_RELAXED);
	if (use_ulp) {
		pthread_join(mon_thread, NULL);
		peak = stat_get("peak");
		handoffs = stat_get("handoffs") - handoffs0;
		waits = stat_get("waits") - waits0;
		wait_ns_max = stat_get("wait_ns_max");
		/* The zeroed buffer the pool keeps for handoffs, if any. */
		clean = stat_get("clean");
	}

	n = 0;
	for (i = 0; i < conns; i++) {
		struct conn *c = &sc.c[i];

		if (c->sent == sc.bytes && c->rcvd == sc.bytes) {
			ct[n++] = c->done;
			ct_sum += c->done;
			if (c->done > ct_max)
				ct_max = c->done;
			if (c->rx_done > t_rx_end)
				t_rx_end = c->rx_done;
		}
		if (use_ulp) {
			struct mbufmux_info info;
			socklen_t len = sizeof(info);

			if (!getsockopt(c->cli, SOL_MBUFMUX, MBUFMUX_INFO, &info,
					&len)) {
				wait_sum += info.wait_ns / 1e9;
				if (info.wait_ns / 1e9 > wait_max)
					wait_max = info.wait_ns / 1e9;
			}
		}
	}
	for (i = 0; i < conns; i++) {
		close(sc.c[i].cli);
		close(sc.c[i].srv);
	}
	close(ep);

	if (n < conns || sc.bad_bytes)
		failed = 1;
	if (use_ulp && (peak > limit || sc.in_use_max > limit))
		failed = 1;

	fprintf(stdout,
		"  \"%s\": {\"ulp\": %s, \"cap_net_admin\": %s, \"conns\": %d, \"bytes_per_conn\": %u, \"msgs_per_conn\": %u, \"writes_per_msg\": 2,\n",
		name, use_ulp ? "true" : "false", unpriv ? "false" : "true",
		conns, bytes, msgs);
	fprintf(stdout,
		"    \"completed\": %d, \"all_complete\": %s, \"bad_bytes\": %d, \"setup_secs\": %.2f, \"secs\": %.3f, \"rx_secs\": %.3f,\n",
		n, n == conns ? "true" : "false", sc.bad_bytes, t_setup, t_end,
		t_rx_end);
	qsort(ct, n, sizeof(*ct), cmp_double);
	fprintf(stdout,
		"    \"completion_secs\": {\"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f, \"mean\": %.3f}, \"completion_fairness_jain\": %.3f,\n",
		n ? ct[n / 2] : 0, n ? ct[(int)(n * 0.99)] : 0, ct_max,
		n ? ct_sum / n : 0, jain(ct, n));
	if (use_ulp) {
		fprintf(stdout,
			"    \"conns_parked\": %d, \"parked_secs_mean\": %.3f, \"parked_secs_max\": %.3f,\n",
			eagain_conns, wait_sum / conns, wait_max);
		fprintf(stdout,
			"    \"pool\": {\"limit\": %lld, \"peak\": %lld, \"peak_before\": %lld, \"allocs_before\": %lld, \"in_use_max_sampled\": %lld, \"waiters_max_sampled\": %lld, \"buf_size\": %lld, \"clean\": %lld, \"peak_bytes\": %lld, \"handoffs\": %lld, \"waits\": %lld, \"wait_ns_max_since_load\": %lld, \"peak_within_limit\": %s}\n",
			limit, peak, peak0, allocs0, sc.in_use_max,
			sc.waiters_max, buf_size, clean,
			(peak + clean) * buf_size, handoffs,
			waits, wait_ns_max, peak <= limit ? "true" : "false");
	} else {
		printf("    \"conns_eagain\": %d\n", eagain_conns);
	}
	printf("  },\n");
	if (use_ulp && !unpriv) {
		printf("  \"scale_fairness_jain\": %.3f,\n", jain(ct, n));
		printf("  \"scale_peak_in_use\": %lld,\n", peak);
		printf("  \"scale_peak_bytes\": %lld,\n",
		       (peak + clean) * buf_size);
	}

	fprintf(stderr,
		"%-10s %d conns x %u B (%u msgs): %d complete%s, %.2f s (setup %.2f s), completion p50 %.3f s max %.3f s, jain %.3f\n",
		name, conns, bytes, msgs, n, sc.bad_bytes ? ", BAD BYTES" : "",
		t_end, t_setup, n ? ct[n / 2] : 0, ct_max, jain(ct, n));
	if (use_ulp)
		fprintf(stderr,
			"%-10s pool limit %lld: peak %lld (sampled in_use max %lld, waiters max %lld), %lld KiB at the peak, %lld handoffs, most parked per conn %.3f s\n",
			name, limit, peak, sc.in_use_max, sc.waiters_max,
			(peak + clean) * buf_size / 1024, handoffs, wait_max);
	if (failed)
		fprintf(stderr, "ulp_bench %s: FAILED\n", name);
	free(data);
	free(ct);
	free(sc.c);
	return failed;
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
		cli[i] = lsn_pair(&l, &srv[i]);
		if (cli[i] < 0)
			die("connect");
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
	if (argc >= 2 && !strcmp(argv[1], "stream"))
		return cmd_stream(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "scale"))
		return cmd_scale(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "memory"))
		return cmd_memory(argc - 1, argv + 1);
	fprintf(stderr,
		"usage: ulp_bench stream [-s SECS] [-r REPS] [-f FLUSH]\n"
		"       ulp_bench scale [-c CONNS] [-b BYTES] [-m MSGS] [-t | -u] [-T TIMEOUT]\n"
		"       ulp_bench memory [-n N[,N...]] [-c CAP] [-w SIZE] [-l LOWAT]\n");
	return 2;
}
