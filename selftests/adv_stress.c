// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP), a
 * bounded random stress of many threads.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

#define SLOTS		64
#define CHAOS		6
#define STRESS_FLOWERS	2
#define STRESS_PER	2

enum chaos_op {
	OP_OPEN, OP_ATTACH, OP_SEND, OP_SEND_BACK, OP_RECV, OP_POLL,
	OP_BLOCK, OP_INFO, OP_SHUTDOWN, OP_CLOSE, OP_RESET, OP_POKE, NR_OPS
};

static const char * const op_names[NR_OPS] = {
	"open", "attach", "send", "send_back", "recv", "poll", "block",
	"info", "shutdown", "close", "reset", "poke",
};

/* How often each operation is chosen, out of the sum. */
static const unsigned int op_weight[NR_OPS] = {
	10, 4, 25, 5, 20, 8, 5, 5, 3, 6, 2, 7,
};

struct slot {
	pthread_mutex_t lock;	/* taken to fill or empty the slot */
	int tx;
	int rx;
};

struct stress {
	struct slot slot[SLOTS];
	struct lsn lsn[CHAOS];
	int poke[2 * STRESS_FLOWERS * STRESS_PER];
	int npoke;
	long buf_size;
	bool stop;
	long ops[NR_OPS];
	long unexpected;
	long anomalies;
	pthread_mutex_t lock;
	char first[160];
};

struct chaos {
	pthread_t thread;
	struct stress *s;
	int id;
	uint64_t seed;
};

static void stress_note(struct stress *s, long *counter, const char *fmt,
			...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	if (!s->unexpected && !s->anomalies) {
		va_start(ap, fmt);
		vsnprintf(s->first, sizeof(s->first), fmt, ap);
		va_end(ap);
	}
	(*counter)++;
	pthread_mutex_unlock(&s->lock);
}

/* Errors a call may meet on a socket other threads shut down or close. */
static bool expected_errno(int err)
{
	switch (err) {
	case EAGAIN:
	case EPIPE:
	case ECONNRESET:
	case ENOTCONN:
	case EBADF:
	case ENOTSOCK:
	case EEXIST:
	case ENOPROTOOPT:
	case EOPNOTSUPP:
		return true;
	}
	return false;
}

static void chaos_check(struct stress *s, enum chaos_op op, long ret)
{
	if (ret < 0 && !expected_errno(errno))
		stress_note(s, &s->unexpected, "%s: %s", op_names[op],
			    strerror(errno));
}

/* A slot's socket, either side, read without the lock: may be stale. */
static int chaos_fd(struct chaos *c, struct slot *sl)
{
	if (rnd(&c->seed) & 1)
		return __atomic_load_n(&sl->rx, __ATOMIC_RELAXED);
	return __atomic_load_n(&sl->tx, __ATOMIC_RELAXED);
}

static void chaos_open(struct chaos *c, struct slot *sl)
{
	struct timeval tv = { .tv_usec = 5000 };
	int fd, peer, val;

	pthread_mutex_lock(&sl->lock);
	if (sl->tx >= 0)
		goto out;
	fd = lsn_pair(&c->s->lsn[c->id], &peer);
	if (fd < 0) {
		stress_note(c->s, &c->s->unexpected, "open: %s",
			    strerror(errno));
		goto out;
	}
	if (rnd(&c->seed) % 4)
		chaos_check(c->s, OP_ATTACH, attach(fd));
	if (rnd(&c->seed) % 3 == 0)
		chaos_check(c->s, OP_ATTACH, attach(peer));
	/* Nothing may block for long: non-blocking, or short timeouts. */
	if (rnd(&c->seed) & 1)
		set_nonblock(fd);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(peer, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	val = rnd(&c->seed) & 1;
	setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, sizeof(val));
	__atomic_store_n(&sl->rx, peer, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->tx, fd, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&sl->lock);
}

static void chaos_close(struct chaos *c, struct slot *sl, bool reset)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	int tx, rx;

	pthread_mutex_lock(&sl->lock);
	tx = sl->tx;
	rx = sl->rx;
	__atomic_store_n(&sl->tx, -1, __ATOMIC_RELAXED);
	__atomic_store_n(&sl->rx, -1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&sl->lock);
	if (tx < 0)
		return;
	if (reset)
		setsockopt(rnd(&c->seed) & 1 ? tx : rx, SOL_SOCKET, SO_LINGER,
			   &lin, sizeof(lin));
	if (rnd(&c->seed) & 1) {
		close(tx);
		close(rx);
	} else {
		close(rx);
		close(tx);
	}
}

static void chaos_step(struct chaos *c, char *buf)
{
	struct stress *s = c->s;
	struct slot *sl = &s->slot[rnd(&c->seed) % SLOTS];
	unsigned int w = rnd(&c->seed) % 100, sum = 0;
	struct mbufmux_info info;
	enum chaos_op op;
	int fd, val, flags;
	size_t len;

	for (op = 0; op < NR_OPS - 1; op++) {
		sum += op_weight[op];
		if (w < sum)
			break;
	}
	__atomic_add_fetch(&s->ops[op], 1, __ATOMIC_RELAXED);
	if (op == OP_SEND)
		fd = __atomic_load_n(&sl->tx, __ATOMIC_RELAXED);
	else if (op == OP_SEND_BACK)
		fd = __atomic_load_n(&sl->rx, __ATOMIC_RELAXED);
	else
		fd = chaos_fd(c, sl);
	if (fd < 0 && op != OP_OPEN && op != OP_POKE)
		return;
	switch (op) {
	case OP_OPEN:
		chaos_open(c, sl);
		break;
	case OP_ATTACH:
		chaos_check(s, op, attach(fd));
		break;
	case OP_SEND:
	case OP_SEND_BACK:
		len = 1 + rnd(&c->seed) % (2 * s->buf_size);
		if (len > CHUNK)
			len = CHUNK;
		flags = MSG_NOSIGNAL;
		if (rnd(&c->seed) & 1)
			flags |= MSG_MORE;
		if (rnd(&c->seed) & 1)
			flags |= MSG_DONTWAIT;
		chaos_check(s, op, send(fd, buf, len, flags));
		break;
	case OP_RECV:
		chaos_check(s, op, recv(fd, buf, CHUNK, MSG_DONTWAIT));
		break;
	case OP_POLL:
		poll_one(fd, POLLIN | POLLOUT, rnd(&c->seed) % 3);
		break;
	case OP_BLOCK:
		val = rnd(&c->seed) & 1;
		chaos_check(s, op, setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK,
					      &val, sizeof(val)));
		break;
	case OP_INFO:
		if (!info_get(fd, &info)) {
			if ((info.flags & MBUFMUX_F_HOLDS_BUF) &&
			    (info.flags & MBUFMUX_F_PARKED))
				stress_note(s, &s->anomalies,
					    "parked and holding");
			if (info.staged > s->buf_size)
				stress_note(s, &s->anomalies,
					    "%u bytes staged", info.staged);
		} else {
			chaos_check(s, op, -1);
		}
		break;
	case OP_SHUTDOWN:
		chaos_check(s, op, shutdown(fd, rnd(&c->seed) % 3));
		break;
	case OP_CLOSE:
	case OP_RESET:
		chaos_close(c, sl, op == OP_RESET);
		break;
	case OP_POKE:
		/* The flowers' sockets: looked at, never disturbed. */
		fd = s->poke[rnd(&c->seed) % s->npoke];
		val = rnd(&c->seed) & 1;
		if (rnd(&c->seed) & 1)
			poll_one(fd, POLLIN | POLLOUT, 0);
		else if (setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
				    sizeof(val)) || info_get(fd, &info))
			stress_note(s, &s->unexpected, "poke: %s",
				    strerror(errno));
		break;
	case NR_OPS:
		break;
	}
}

static void *chaos_fn(void *arg)
{
	struct chaos *c = arg;
	char *buf = malloc(CHUNK);

	if (!buf) {
		stress_note(c->s, &c->s->unexpected, "no memory");
		return NULL;
	}
	memset(buf, 'c', CHUNK);
	/* Every other thread attaches without CAP_NET_ADMIN. */
	net_admin(c->id & 1);
	while (!__atomic_load_n(&c->s->stop, __ATOMIC_ACQUIRE))
		chaos_step(c, buf);
	free(buf);
	return NULL;
}

/*
 * The bounded random stress (MBUFMUX_STRESS_SECS): six threads, half of
 * them unprivileged, do random operations on 64 shared slots of socket
 * pairs: open (attached or not, blocking with short timeouts or not),
 * attach again, send with random sizes and MSG_MORE both ways, receive,
 * poll, MBUFMUX_BLOCK, MBUFMUX_INFO, shutdown, close, reset; on sockets
 * another thread may be closing. Two more threads drive four byte-exact
 * flows that the others only poll and poke. The main thread changes limit
 * and reserve at random meanwhile. Every call fails only as a socket shut
 * down or closed under it may; MBUFMUX_INFO stays coherent; no more
 * buffers are out than the highest limit; every byte of the flows arrives;
 * at the end the pool is at rest and its counters add up.
 */
TEST_F_TIMEOUT(adv, random_stress, 1200)
{
	long secs = knob("MBUFMUX_STRESS_SECS", 10, 60);
	long long end, changes = 0, max_limit = initial.limit, total = 0;
	struct flower w[STRESS_FLOWERS];
	struct pool_stats st0, st;
	struct chaos c[CHAOS];
	uint64_t seed, bytes;
	long limit, reserve;
	struct stress *s;
	bool flows_stop = false;
	int i, j;

	seed = test_seed(_metadata);
	s = calloc(1, sizeof(*s));
	ASSERT_NE(s, NULL);
	s->buf_size = self->buf_size;
	pthread_mutex_init(&s->lock, NULL);
	for (i = 0; i < SLOTS; i++) {
		pthread_mutex_init(&s->slot[i].lock, NULL);
		s->slot[i].tx = -1;
		s->slot[i].rx = -1;
	}
	for (i = 0, j = 0; i < CHAOS; i++)
		j += !lsn_open(&s->lsn[i], i & 1 ? AF_INET6 : AF_INET, false);
	ASSERT_EQ(j, CHAOS);
	ASSERT_EQ(stats_read(&st0), 0);
	flowers_start(_metadata, self, w, STRESS_FLOWERS, STRESS_PER, CHUNK,
		      &flows_stop, seed);
	for (i = 0; i < STRESS_FLOWERS; i++)
		for (j = 0; j < STRESS_PER; j++) {
			s->poke[s->npoke++] = w[i].fl[j].tx;
			s->poke[s->npoke++] = w[i].fl[j].rx;
		}
	for (i = 0; i < CHAOS; i++) {
		c[i].s = s;
		c[i].id = i;
		c[i].seed = seed + (i + 1) * 0xbf58476d1ce4e5b9ULL;
		ASSERT_EQ(pthread_create(&c[i].thread, NULL, chaos_fn, &c[i]),
			  0);
	}

	TH_LOG("%ld s of random operations", secs);
	end = now_ms() + secs * 1000;
	while (now_ms() < end) {
		sleep_ms(2 + rnd(&seed) % 20);
		ASSERT_EQ(stats_read(&st), 0);
		EXPECT_LE(st.in_use, max_limit);
		if (st.in_use > 1 && rnd(&seed) % 4 == 0)
			limit = st.in_use / 2;
		else if (rnd(&seed) % 8 == 0)
			limit = 1000;
		else
			limit = 1 + rnd(&seed) % 24;
		reserve = rnd(&seed) % 3 == 0 ? rnd(&seed) % limit : 0;
		if (limit > max_limit)
			max_limit = limit;
		ASSERT_EQ(limits_set(limit, reserve), 0);
		changes++;
	}
	__atomic_store_n(&s->stop, true, __ATOMIC_RELEASE);
	for (i = 0; i < CHAOS; i++)
		pthread_join(c[i].thread, NULL);
	for (i = 0; i < SLOTS; i++) {
		if (s->slot[i].tx >= 0)
			close(s->slot[i].tx);
		if (s->slot[i].rx >= 0)
			close(s->slot[i].rx);
	}
	ASSERT_EQ(params_write(&initial), 0);
	__atomic_store_n(&flows_stop, true, __ATOMIC_RELEASE);
	flowers_join(_metadata, w, STRESS_FLOWERS, &bytes);

	for (i = 0; i < NR_OPS; i++)
		total += s->ops[i];
	TH_LOG("%lld operations, %lld parameter changes, %llu flow bytes",
	       total, changes, (unsigned long long)bytes);
	for (i = 0; i < NR_OPS; i++)
		TH_LOG("  %-9s %ld", op_names[i], s->ops[i]);
	EXPECT_EQ(s->unexpected, 0) TH_LOG("first: %s", s->first);
	EXPECT_EQ(s->anomalies, 0) TH_LOG("first: %s", s->first);
	EXPECT_GT(bytes, 0U);
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("in_use %lld waiters %lld", st.in_use, st.waiters);
	TH_LOG("%lld allocs, %lld waits: %lld handoffs, %lld cancels",
	       st.allocs - st0.allocs, st.waits - st0.waits,
	       st.handoffs - st0.handoffs, st.cancels - st0.cancels);
	EXPECT_EQ(st.waits - st0.waits, st.handoffs - st0.handoffs +
		  st.cancels - st0.cancels);
	for (i = 0; i < CHAOS; i++)
		close(s->lsn[i].fd);
	free(s);
}

TEST_HARNESS_MAIN
