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
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../uapi/mbufmux.h"

#define PARAMS	"/sys/module/mbufmux_tcp/parameters/"
#define STATS	"/sys/kernel/debug/mbufmux/tcp/stats"

struct flow {
	int id;
	int tx, rx;
	size_t bytes;
	size_t verified;
	int bad;
	struct mbufmux_info info;
};

static uint32_t next_rand(uint32_t *s)
{
	/* xorshift32: cheap, and the receiver can replay it. */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static uint8_t pattern(int id, size_t off)
{
	return (uint8_t)(off * 31 + id * 7 + (off >> 10));
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static long stat_get(const char *name)
{
	char key[64];
	long v, ret = -1;
	FILE *f = fopen(STATS, "r");

	if (!f)
		die(STATS);
	while (fscanf(f, "%63s %ld", key, &v) == 2)
		if (!strcmp(key, name))
			ret = v;
	fclose(f);
	return ret;
}

static int param_set(const char *name, unsigned int v)
{
	char path[128];
	FILE *f;
	int ret;

	snprintf(path, sizeof(path), PARAMS "%s", name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	ret = fprintf(f, "%u\n", v) < 0;
	return fclose(f) || ret ? -1 : 0;
}

static int running = 1;	/* __atomic: the monitor reads it */
static long sampled_peak;

/* Samples in_use while the flows run. */
static void *monitor(void *arg)
{
	long v;

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
	uint32_t seed = 0x9e3779b9u ^ (fl->id * 2654435761u);
	static char chunk[65536];
	size_t off = 0, n, i;
	socklen_t len = sizeof(fl->info);
	char *buf = malloc(sizeof(chunk));

	if (!buf)
		die("malloc");
	/* All at once, each holding its first bytes: the buffers run out. */
	pthread_barrier_wait(&start);
	while (off < fl->bytes) {
		uint32_t r = next_rand(&seed);
		int flags = (r & 3) || !off ? MSG_MORE : 0;
		ssize_t sent;

		n = 1 + r % 20000;
		if (n > fl->bytes - off)
			n = fl->bytes - off;
		if (off + n == fl->bytes)
			flags = 0;
		for (i = 0; i < n; i++)
			buf[i] = pattern(fl->id, off + i);
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
	long waits0, handoffs0, allocs0, limit0, peak0, peak;
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t alen = sizeof(addr);
	pthread_t *th, mon;
	struct flow *fl;
	size_t total = 0, verified = 0;
	int lfd, i, bad = 0, fails = 0;

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

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (void *)&addr, sizeof(addr)) ||
	    listen(lfd, conns) || getsockname(lfd, (void *)&addr, &alen))
		die("listen");

	for (i = 0; i < conns; i++) {
		fl[i].id = i;
		fl[i].bytes = kib * 1024;
		fl[i].tx = socket(AF_INET, SOCK_STREAM, 0);
		if (fl[i].tx < 0 || connect(fl[i].tx, (void *)&addr, alen))
			die("connect");
		fl[i].rx = accept(lfd, NULL, NULL);
		if (fl[i].rx < 0)
			die("accept");
		if (setsockopt(fl[i].tx, IPPROTO_TCP, TCP_ULP, "mbufmux",
			       sizeof("mbufmux")))
			die("setsockopt(TCP_ULP, \"mbufmux\")");
	}
	printf("mbufmux demo: %d connections over loopback share %d buffers",
	       conns, bufs);
	printf(" of %ld bytes; %zu KiB each\n", stat_get("buf_size"), kib);

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
	close(lfd);

	printf("\n  connections           %d\n", conns);
	printf("  buffers (limit)       %d\n", bufs);
	printf("  sockets parked        %ld times\n", stat_get("waits") - waits0);
	printf("  buffers handed off    %ld\n",
	       stat_get("handoffs") - handoffs0);
	printf("  buffers taken         %ld\n", stat_get("allocs") - allocs0);
	printf("  peak in use           %ld (limit %d)%s\n", peak, bufs,
	       peak <= bufs ? "" : "  <-- OVER THE LIMIT");
	printf("  longest wait          %ld us\n",
	       stat_get("wait_ns_max") / 1000);
	printf("  bytes sent            %zu\n", total);
	printf("  bytes verified        %zu, %d differing, %d short flows\n",
	       verified, bad, fails);
	printf("  in use now            %ld\n\n", stat_get("in_use"));

	param_set("limit", limit0);
	if (bad || fails || verified != total || peak > bufs ||
	    stat_get("in_use") != 0) {
		printf("mbufmux demo: FAILED\n");
		return 1;
	}
	printf("mbufmux demo: every byte arrived intact; the pool never exceeded its limit\n");
	return 0;
}
