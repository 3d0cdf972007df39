// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_demo - many TCP connections share a few mux buffers.
 *
 * Opens CONNS connections over loopback, attaches the "mbufmux" ULP to
 * the sending side of each, lowers the pool's limit to a few buffers and
 * has every connection send a pseudo-random stream in random chunks, with
 * random MSG_MORE. The senders start together, each holding its first
 * chunk (MSG_MORE), so the buffers run out and sockets park at once.
 * Receivers check every byte. At the end it prints a
 * summary and the pool's debugfs counters, and fails if a byte differs,
 * the pool ever went over its limit or did not come back to rest.
 *
 * Usage: mbufmux_demo [connections [buffers [KiB per connection]]]
 */
#define _GNU_SOURCE
#include "mbufmux_test_lib.h"

struct flow {
	int id;
	int tx, rx;
	size_t bytes;
	size_t verified;
	int bad;
	struct mbufmux_info info;
};

static int running = 1;	/* __atomic: the monitor reads it */
static long long sampled_peak;

/* Samples in_use while the flows run. */
static void *monitor(void *arg)
{
	long long v;

	(void)arg;
	while (__atomic_load_n(&running, __ATOMIC_RELAXED)) {
		v = stat_get("in_use");
		if (v > sampled_peak)
			sampled_peak = v;
		usleep(1000);
	}
	return NULL;
}

static pthread_barrier_t start;

static void *sender(void *arg)
{
	struct flow *fl = arg;
	uint64_t seed = 0x9e3779b97f4a7c15ULL ^ (fl->id * 2654435761u);
	static char chunk[65536];
	size_t off = 0, n;
	socklen_t len = sizeof(fl->info);
	char *buf = malloc(sizeof(chunk));

	if (!buf)
		die("malloc");
	/* All at once, each holding its first bytes: the buffers run out. */
	pthread_barrier_wait(&start);
	while (off < fl->bytes) {
		uint32_t r = rnd(&seed) >> 32;
		int flags = (r & 3) || !off ? MSG_MORE : 0;
		ssize_t sent;

		n = 1 + r % 20000;
		if (n > fl->bytes - off)
			n = fl->bytes - off;
		if (off + n == fl->bytes)
			flags = 0;
		fill(buf, n, fl->id, off);
		sent = send(fl->tx, buf, n, flags);
		if (sent < 0)
			die("send");
		off += sent;
	}
	getsockopt(fl->tx, SOL_MBUFMUX, MBUFMUX_INFO, &fl->info, &len);
	shutdown(fl->tx, SHUT_WR);
	free(buf);
	(void)chunk;
	return NULL;
}

static void *receiver(void *arg)
{
	struct flow *fl = arg;
	char buf[65536];
	ssize_t n, i;

	while ((n = recv(fl->rx, buf, sizeof(buf), 0)) > 0) {
		for (i = 0; i < n; i++)
			if ((uint8_t)buf[i] != pattern(fl->id, fl->verified + i))
				fl->bad++;
		fl->verified += n;
	}
	if (n < 0)
		die("recv");
	return NULL;
}

int main(int argc, char **argv)
{
	int conns = argc > 1 ? atoi(argv[1]) : 32;
	int bufs = argc > 2 ? atoi(argv[2]) : 4;
	size_t kib = argc > 3 ? strtoul(argv[3], NULL, 0) : 256;
	long long waits0, handoffs0, allocs0, limit0, peak0, peak;
	pthread_t *th, mon;
	struct lsn l;
	struct flow *fl;
	size_t total = 0, verified = 0;
	int i, bad = 0, fails = 0;

	if (conns < 1 || bufs < 1 || !kib) {
		fprintf(stderr, "usage: %s [connections [buffers [KiB]]]\n",
			argv[0]);
		return 2;
	}
	fl = calloc(conns, sizeof(*fl));
	th = calloc(2 * conns, sizeof(*th));
	if (!fl || !th)
		die("calloc");

	limit0 = stat_get("limit");
	if (limit0 < 0)
		die("reading " DBG_DIR "stats (mbufmux_tcp loaded, debugfs mounted?)");
	if (param_set("limit", bufs))
		die("setting limit");
	/*
	 * The pool's peak never goes down: it speaks for this run only if
	 * it was within the new limit before. Else the sampled in_use does.
	 */
	peak0 = stat_get("peak");
	waits0 = stat_get("waits");
	handoffs0 = stat_get("handoffs");
	allocs0 = stat_get("allocs");

	errno = -lsn_open(&l, AF_INET, false);
	if (errno)
		die("listen");

	for (i = 0; i < conns; i++) {
		fl[i].id = i;
		fl[i].bytes = kib * 1024;
		fl[i].tx = lsn_pair_or_die(&l, &fl[i].rx);
		if (attach(fl[i].tx))
			die("setsockopt(TCP_ULP, \"mbufmux\")");
	}
	printf("mbufmux demo: %d connections over loopback share %d buffers",
	       conns, bufs);
	printf(" of %lld bytes; %zu KiB each\n", stat_get("buf_size"), kib);

	if (pthread_barrier_init(&start, NULL, conns))
		die("pthread_barrier_init");
	for (i = 0; i < conns; i++) {
		pthread_create(&th[2 * i], NULL, receiver, &fl[i]);
		pthread_create(&th[2 * i + 1], NULL, sender, &fl[i]);
	}
	pthread_create(&mon, NULL, monitor, NULL);
	for (i = 0; i < 2 * conns; i++)
		pthread_join(th[i], NULL);
	__atomic_store_n(&running, 0, __ATOMIC_RELAXED);
	pthread_join(mon, NULL);
	peak = peak0 <= bufs ? stat_get("peak") : sampled_peak;

	for (i = 0; i < conns; i++) {
		total += fl[i].bytes;
		verified += fl[i].verified;
		bad += fl[i].bad;
		if (fl[i].verified != fl[i].bytes)
			fails++;
		close(fl[i].tx);
		close(fl[i].rx);
	}
	close(l.fd);

	printf("\n  connections           %d\n", conns);
	printf("  buffers (limit)       %d\n", bufs);
	printf("  sockets parked        %lld times\n", stat_get("waits") - waits0);
	printf("  buffers handed off    %lld\n",
	       stat_get("handoffs") - handoffs0);
	printf("  buffers taken         %lld\n", stat_get("allocs") - allocs0);
	printf("  peak in use           %lld (limit %d)%s\n", peak, bufs,
	       peak <= bufs ? "" : "  <-- OVER THE LIMIT");
	printf("  longest wait          %lld us\n",
	       stat_get("wait_ns_max") / 1000);
	printf("  bytes sent            %zu\n", total);
	printf("  bytes verified        %zu, %d differing, %d short flows\n",
	       verified, bad, fails);
	printf("  in use now            %lld\n\n", stat_get("in_use"));

	param_set("limit", limit0);
	if (bad || fails || verified != total || peak > bufs ||
	    stat_get("in_use") != 0) {
		printf("mbufmux demo: FAILED\n");
		return 1;
	}
	printf("mbufmux demo: every byte arrived intact; the pool never exceeded its limit\n");
	return 0;
}
