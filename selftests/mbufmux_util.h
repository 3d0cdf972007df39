/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the selftests of mbufmux_tcp.ko (mbufmux_tcp.c, mbufmux_adversarial.c)
 * share: the module's parameters, loading it, its debugfs files (the pool's
 * counters, its parked sockets, the per-user cap), byte patterns, attaching
 * sockets, looking at them and waiting on them, loopback listeners.
 *
 * A header of static inline functions rather than a library: the helpers
 * that fail a test use kselftest_harness.h, which each program includes
 * once, with its own state (as tools/testing/selftests/landlock/common.h).
 * Include it first, after defining _GNU_SOURCE.
 */
#ifndef MBUFMUX_UTIL_H
#define MBUFMUX_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <linux/capability.h>
#include <linux/sockios.h>

#include "mbufmux.h"
#include "kselftest_harness.h"

#define ULP_NAME	"mbufmux"
#define MODULE_DIR	"/sys/module/mbufmux_tcp"
#define PARAM_DIR	MODULE_DIR "/parameters/"
#define DBG_ROOT	"/sys/kernel/debug/mbufmux/"
#define DBG_DIR		DBG_ROOT "tcp/"
#define MODULE_DIR_VM	"/mbufmux"	/* where the test VM keeps the .ko */

/* Hang guards, in milliseconds. */
#define WAKE_MS		5000	/* for something that must happen */
#define QUIET_MS	200	/* for something that must not happen */

#define LIMIT_MAX	16777216	/* MBUFMUX_LIMIT_MAX */

#define BACKLOG_CHUNK	(64 << 10)	/* send_backlog(), recv_pattern() */
#define BACKLOG_MAX	(64 << 20)

/* Time and random numbers */

static inline long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static inline void sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

/* xorshift64*: every random choice, reproducible by seed. */
static inline uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* A test's seed, $MBUFMUX_SEED or the time: logged, never 0. */
static inline uint64_t test_seed(struct __test_metadata *_metadata)
{
	const char *env = getenv("MBUFMUX_SEED");
	uint64_t seed = env && *env ? strtoull(env, NULL, 0) : 0;

	if (!seed)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	TH_LOG("seed %llu (MBUFMUX_SEED to repeat)", (unsigned long long)seed);
	return seed | 1;
}

/* Files and module parameters */

/* Reads a small text file, NUL-terminated; returns its length or -errno. */
static inline ssize_t read_text(const char *path, char *buf, size_t size)
{
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < size - 1) {
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0) {
			n = -errno;
			close(fd);
			return n;
		}
		if (!n)
			break;
		len += n;
	}
	close(fd);
	buf[len] = '\0';
	return len;
}

/* Writes @val to a file in one write(2): 0 or -errno. */
static inline int write_text(const char *path, const char *val)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* The number a small file holds, or -1. */
static inline long long read_number(const char *path)
{
	char buf[64];

	if (read_text(path, buf, sizeof(buf)) <= 0)
		return -1;
	return strtoll(buf, NULL, 10);
}

/* Writes @val to a module parameter as it is: 0 or -errno. */
static inline int param_write(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	return write_text(path, val);
}

static inline int param_set(const char *name, long val)
{
	char s[32];

	snprintf(s, sizeof(s), "%ld\n", val);
	return param_write(name, s);
}

/* A module parameter's value, or -1. */
static inline long param_get(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	return read_number(path);
}

/* Sets both limits, in an order that each write is valid in. */
static inline int limits_set(long limit, long reserve)
{
	return param_set("reserve", 0) ?: param_set("limit", limit) ?:
	       param_set("reserve", reserve);
}

/*
 * Writing each of the @n values @bad to parameter @name fails with EINVAL,
 * and a value past 32 bits with EINVAL or ERANGE; @name keeps @old.
 */
static inline void expect_refused(struct __test_metadata *_metadata,
				  const char *name, const char * const *bad,
				  size_t n, long old)
{
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		EXPECT_EQ(param_write(name, bad[i]), -EINVAL)
			TH_LOG("%s=\"%s\"", name, bad[i]);
		EXPECT_EQ(param_get(name), old);
	}
	err = param_write(name, "4294967296");
	EXPECT_TRUE(err == -EINVAL || err == -ERANGE)
		TH_LOG("%s=4294967296: %d", name, err);
	EXPECT_EQ(param_get(name), old);
}

/* The parameters of mbufmux_tcp.ko; -1 where one cannot be read. */
struct tcp_params {
	long buf_size;
	long limit;
	long reserve;
	long user_limit;
};

static inline void params_read(struct tcp_params *p)
{
	p->buf_size = param_get("buf_size");
	p->limit = param_get("limit");
	p->reserve = param_get("reserve");
	p->user_limit = param_get("user_limit");
}

/* Applies the run-time parameters of @p: 0 or -errno. */
static inline int params_write(const struct tcp_params *p)
{
	return limits_set(p->limit, p->reserve) ?:
	       param_set("user_limit", p->user_limit);
}

/* Does the module run with the parameters of @p? */
static inline bool params_equal(const struct tcp_params *p)
{
	struct tcp_params now;

	params_read(&now);
	return !memcmp(&now, p, sizeof(now));
}

/* Loading and unloading */

static inline bool module_loaded(const char *name)
{
	char buf[16384], *line, *save;
	size_t len = strlen(name);

	if (read_text("/proc/modules", buf, sizeof(buf)) < 0)
		return false;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, name, len) && line[len] == ' ')
			return true;
	return false;
}

static inline long module_refcnt(void)
{
	return read_number(MODULE_DIR "/refcnt");
}

/* mbufmux_tcp.ko, in $MBUFMUX_MODDIR or the test VM's directory. */
static inline const char *module_ko(void)
{
	static char path[256];
	const char *dir = getenv("MBUFMUX_MODDIR");

	snprintf(path, sizeof(path), "%s/mbufmux_tcp.ko", dir ?: MODULE_DIR_VM);
	return path;
}

/* Loads mbufmux_tcp.ko with @args: 0 or -errno. */
static inline int module_load(const char *args)
{
	int fd, ret = 0;

	fd = open(module_ko(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, args, 0))
		ret = -errno;
	close(fd);
	return ret;
}

/* Loads mbufmux_tcp.ko with the parameters of @p: 0 or -errno. */
static inline int module_load_params(const struct tcp_params *p)
{
	char args[160];

	snprintf(args, sizeof(args),
		 "buf_size=%ld limit=%ld reserve=%ld user_limit=%ld",
		 p->buf_size, p->limit, p->reserve, p->user_limit);
	return module_load(args);
}

/* The pool's debugfs counters */

struct pool_stats {
	long long in_use;
	long long peak;
	long long limit;
	long long reserve;
	long long prealloc;
	long long buf_size;
	long long allocs;
	long long alloc_fail;
	long long frees;
	long long waits;
	long long handoffs;
	long long cancels;
	long long waiters;
	long long waiters_peak;
	long long wait_ns_max;
	long long wait_hist;		/* sum of the wait_hist_us_* buckets */
};

/* Reads DBG_DIR/stats: 0, or -1 if it cannot or a counter is missing. */
static inline int stats_read(struct pool_stats *st)
{
#define STAT_FIELD(f)	{ #f, offsetof(struct pool_stats, f) }
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {
		STAT_FIELD(in_use), STAT_FIELD(peak), STAT_FIELD(limit),
		STAT_FIELD(reserve), STAT_FIELD(prealloc),
		STAT_FIELD(buf_size), STAT_FIELD(allocs),
		STAT_FIELD(alloc_fail), STAT_FIELD(frees), STAT_FIELD(waits),
		STAT_FIELD(handoffs), STAT_FIELD(cancels),
		STAT_FIELD(waiters), STAT_FIELD(waiters_peak),
		STAT_FIELD(wait_ns_max),
	};
#undef STAT_FIELD
	char buf[8192], name[64], *line, *save;
	unsigned int found = 0;
	long long v;
	size_t i;

	if (read_text(DBG_DIR "stats", buf, sizeof(buf)) < 0)
		return -1;
	memset(st, 0, sizeof(*st));
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "%63s %lld", name, &v) != 2)
			return -1;
		if (!strncmp(name, "wait_hist_us_", 13)) {
			st->wait_hist += v;
			continue;
		}
		for (i = 0; i < ARRAY_SIZE(fields); i++) {
			if (strcmp(name, fields[i].name))
				continue;
			*(long long *)((char *)st + fields[i].off) = v;
			found |= 1U << i;
		}
	}
	return found == (1U << ARRAY_SIZE(fields)) - 1 ? 0 : -1;
}

/* Waits for no buffer in use and nobody waiting: 0, 1 if not, -1. */
static inline int wait_rest(struct pool_stats *st, int ms)
{
	long long end = now_ms() + ms;

	for (;;) {
		if (stats_read(st))
			return -1;
		if (!st->in_use && !st->waiters)
			return 0;
		if (now_ms() > end)
			return 1;
		sleep_ms(5);
	}
}

/* Waits until @in_use buffers are out and @waiters are queued. */
static inline bool wait_pool(long long in_use, long long waiters, int ms)
{
	long long end = now_ms() + ms;
	struct pool_stats st;

	for (;;) {
		if (!stats_read(&st) && st.in_use == in_use &&
		    st.waiters == waiters)
			return true;
		if (now_ms() > end)
			break;
		sleep_ms(2);
	}
	fprintf(stderr, "# pool: in_use %lld waiters %lld, not %lld %lld\n",
		st.in_use, st.waiters, in_use, waiters);
	return false;
}

/*
 * The debugfs list of parked sockets, head first: returns the number of
 * lines, or -1; and the local port of each of the first @max ("sport=",
 * 0 if missing) in @ports.
 */
static inline long waiters_read(unsigned short *ports, long max)
{
	size_t size = 64 << 20;
	char *buf = malloc(size), *line, *save, *p;
	long n = 0;

	if (!buf || read_text(DBG_DIR "waiters", buf, size) < 0) {
		free(buf);
		return -1;
	}
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (n < max) {
			p = strstr(line, "sport=");
			ports[n] = p ? atoi(p + 6) : 0;
		}
		n++;
	}
	free(buf);
	return n;
}

/* The per-user cap: DBG_DIR/users */

#define USERS_FILE	DBG_DIR "users"

/* One user's line: its attached sockets the cap applies to, ... */
struct user_counts {
	long socks;
	long held;	/* ... those that hold a buffer or wait in the pool */
	long parked;	/* ... those parked on the user's FIFO */
};

/*
 * The counts of @uid: 1, 0 if it has no line (no socket the cap applies
 * to; the counts are zeroed), -1 if the file cannot be read.
 */
static inline int users_read(unsigned int uid, struct user_counts *uc)
{
	char buf[16384], *line, *save;
	struct user_counts c;
	unsigned int u;

	memset(uc, 0, sizeof(*uc));
	if (read_text(USERS_FILE, buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		if (sscanf(line, "uid=%u socks=%ld held=%ld parked=%ld", &u,
			   &c.socks, &c.held, &c.parked) == 4 && u == uid) {
			*uc = c;
			return 1;
		}
	}
	return 0;
}

/* How many users have a line, or -1. */
static inline int users_listed(void)
{
	char buf[16384], *p;
	int n = 0;

	if (read_text(USERS_FILE, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; (p = strstr(p, "uid=")); p++)
		n++;
	return n;
}

/* The cap now in force ("cap" in USERS_FILE), or -1. */
static inline long users_cap(void)
{
	char buf[16384];
	long cap;

	if (read_text(USERS_FILE, buf, sizeof(buf)) < 0 ||
	    sscanf(buf, "cap %ld", &cap) != 1)
		return -1;
	return cap;
}

/* Byte patterns */

/* Per-flow byte pattern: byte @off of flow @flow. */
static inline uint8_t pattern(uint32_t flow, uint64_t off)
{
	uint64_t x = (off >> 3) * 0x9e3779b97f4a7c15ULL ^
		     ((uint64_t)flow << 40 | 0x5bd1e995);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x >> ((off & 7) * 8);
}

static inline void fill(void *buf, size_t len, uint32_t flow, uint64_t off)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = pattern(flow, off + i);
}

/* The index of the first wrong byte, or -1. */
static inline long check(const void *buf, size_t len, uint32_t flow,
			 uint64_t off)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != pattern(flow, off + i))
			return i;
	return -1;
}

/* Attached sockets */

static inline int attach(int fd)
{
	return setsockopt(fd, IPPROTO_TCP, TCP_ULP, ULP_NAME,
			  sizeof(ULP_NAME));
}

static inline int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? fl : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static inline int info_get(int fd, struct mbufmux_info *info)
{
	socklen_t len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	if (getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, info, &len))
		return -1;
	return len == sizeof(*info) ? 0 : -1;
}

/* MBUFMUX_INFO flags, or ~0U if the option fails. */
static inline unsigned int info_flags(int fd)
{
	struct mbufmux_info info;

	return info_get(fd, &info) ? ~0U : info.flags;
}

/* Waits until (flags & @mask) == @want; returns the last flags seen. */
static inline unsigned int wait_flags(int fd, unsigned int mask,
				      unsigned int want, int ms)
{
	long long end = now_ms() + ms;
	unsigned int flags;

	for (;;) {
		flags = info_flags(fd);
		if (flags != ~0U && (flags & mask) == want)
			return flags;
		if (now_ms() > end)
			return flags;
		sleep_ms(5);
	}
}

/* poll() one socket: its revents, 0 on timeout. */
static inline short poll_one(int fd, short events, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	return poll(&pfd, 1, ms) == 1 ? pfd.revents : 0;
}

#define POLL_FIRST_MAX	128

/*
 * Waits for one of @n (at most POLL_FIRST_MAX) sockets to report @events:
 * returns the index of the first that does, -1 on timeout.
 */
static inline int poll_first(const int *fds, int n, short events, int ms)
{
	struct pollfd pfd[POLL_FIRST_MAX];
	int i;

	if (n > POLL_FIRST_MAX)
		return -1;
	for (i = 0; i < n; i++) {
		pfd[i].fd = fds[i];
		pfd[i].events = events;
		pfd[i].revents = 0;
	}
	if (poll(pfd, n, ms) <= 0)
		return -1;
	for (i = 0; i < n; i++)
		if (pfd[i].revents & events)
			return i;
	return -1;
}

/* Receives exactly @len bytes (or up to EOF, the timeout): count received. */
static inline size_t recv_all(int fd, void *buf, size_t len, int ms)
{
	long long end = now_ms() + ms;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		if (!(poll_one(fd, POLLIN, 100) &
		      (POLLIN | POLLHUP | POLLERR))) {
			if (now_ms() > end)
				break;
			continue;
		}
		n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	return got;
}

/* Receives @total bytes of pattern @flow. */
static inline void recv_pattern(struct __test_metadata *_metadata, int fd,
				char *buf, size_t total, uint32_t flow)
{
	size_t got = 0, n;

	while (got < total) {
		n = total - got < BACKLOG_CHUNK ? total - got : BACKLOG_CHUNK;
		n = recv_all(fd, buf, n, WAKE_MS);
		ASSERT_GT(n, 0U) TH_LOG("got %zu of %zu bytes", got, total);
		ASSERT_EQ(check(buf, n, flow, got), -1)
			TH_LOG("wrong byte after %zu", got);
		got += n;
	}
}

/* A blocking call run by a thread, so that the test can watch it sleep. */
enum call_op { CALL_SEND, CALL_RECV, CALL_POLL };

struct blocked_call {
	enum call_op op;
	int fd;
	char *buf;		/* CALL_SEND, CALL_RECV */
	size_t len;
	short events;		/* CALL_POLL: ret is revents */
	ssize_t ret;
	int err;
	pthread_t thread;
};

static inline void *blocked_call_fn(void *arg)
{
	struct blocked_call *c = arg;
	struct pollfd pfd = { .fd = c->fd, .events = c->events };

	switch (c->op) {
	case CALL_SEND:
		c->ret = send(c->fd, c->buf, c->len, MSG_NOSIGNAL);
		break;
	case CALL_RECV:
		c->ret = recv(c->fd, c->buf, c->len, MSG_WAITALL);
		break;
	case CALL_POLL:
		/*
		 * poll() looks at the socket once more when its timeout
		 * expires: a missing wake-up only shows if the caller gives
		 * up before that.
		 */
		c->ret = poll(&pfd, 1, 4 * WAKE_MS) == 1 ? pfd.revents : 0;
		break;
	}
	c->err = errno;
	return NULL;
}

static inline int blocked_call_start(struct blocked_call *c)
{
	return pthread_create(&c->thread, NULL, blocked_call_fn, c);
}

/* Joins the thread within @ms: true if it has returned. */
static inline bool blocked_call_join(struct blocked_call *c, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return !pthread_timedjoin_np(c->thread, NULL, &ts);
}

/* Keeps a buffer: one byte held back by MSG_MORE. */
static inline bool hold(int fd)
{
	ssize_t n = send(fd, "h", 1, MSG_MORE | MSG_DONTWAIT);
	int err = errno;
	unsigned int flags = info_flags(fd);

	if (n == 1 && flags == MBUFMUX_F_HOLDS_BUF)
		return true;
	fprintf(stderr, "# %s: send %zd (%s), flags %#x\n", __func__, n,
		n < 0 ? strerror(err) : "sent", flags);
	return false;
}

/* A non-blocking send finds no buffer for it: EAGAIN, flags @want. */
static inline bool park_flags(int fd, unsigned int want)
{
	ssize_t n = send(fd, "p", 1, MSG_DONTWAIT);
	int err = errno;
	unsigned int flags = info_flags(fd);

	if (n == -1 && err == EAGAIN && flags == want)
		return true;
	fprintf(stderr, "# %s: send %zd (%s), flags %#x, not %#x\n", __func__,
		n, n < 0 ? strerror(err) : "sent", flags, want);
	return false;
}

/* A non-blocking send finds the pool dry: EAGAIN, parked on the pool. */
static inline bool park(int fd)
{
	return park_flags(fd, MBUFMUX_F_PARKED);
}

/* Drops or restores CAP_NET_ADMIN in this thread's effective set. */
static inline int net_admin(bool on)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data))
		return -1;
	if (on)
		data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective |=
			CAP_TO_MASK(CAP_NET_ADMIN);
	else
		data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective &=
			~CAP_TO_MASK(CAP_NET_ADMIN);
	return syscall(SYS_capset, &hdr, data);
}

/* Loopback connections */

struct lsn {
	int fd;
	int family;
	struct sockaddr_storage addr;
	socklen_t len;
};

/*
 * A listener on loopback: 127.0.0.1 or ::1, or ::ffff:127.0.0.1 for
 * IPv6 sockets talking IPv4 (@v4mapped). 0 or -errno.
 */
static inline int lsn_open(struct lsn *l, int family, bool v4mapped)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;
	int err;

	memset(l, 0, sizeof(*l));
	l->family = family;
	if (family == AF_INET6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		if (v4mapped)
			inet_pton(AF_INET6, "::ffff:127.0.0.1",
				  &sin6->sin6_addr);
		l->len = sizeof(*sin6);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		l->len = sizeof(*sin);
	}
	l->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		return -errno;
	if (bind(l->fd, (struct sockaddr *)&l->addr, l->len) ||
	    listen(l->fd, 4096) ||
	    getsockname(l->fd, (struct sockaddr *)&l->addr, &l->len)) {
		err = -errno;
		close(l->fd);
		l->fd = -1;
		return err;
	}
	return 0;
}

/*
 * A connected pair through @l, which nobody else accepts on meanwhile: the
 * connecting side, the accepted one in *@peer; -1 on error.
 */
static inline int lsn_pair(const struct lsn *l, int *peer)
{
	int fd, err;

	fd = socket(l->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&l->addr, l->len))
		goto err;
	*peer = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (*peer < 0)
		goto err;
	return fd;
err:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/*
 * Sends pattern @flow from its byte @from on, non-blocking, until neither
 * TCP nor the socket's buffer takes more (the peer does not read): returns
 * the bytes sent, or
 * -1 if a send fails otherwise or more than BACKLOG_MAX bytes go. What TCP
 * could not take is left staged in the socket's buffer; the socket keeps
 * it for good only if the peer's receive buffer is small, else what TCP
 * sends on into the peer's window makes room.
 */
static inline long send_backlog(int fd, uint32_t flow, long from)
{
	char *buf = malloc(BACKLOG_CHUNK);
	long total = 0;
	ssize_t n;

	if (!buf || set_nonblock(fd))
		goto fail;
	while (total <= BACKLOG_MAX) {
		fill(buf, BACKLOG_CHUNK, flow, from + total);
		n = send(fd, buf, BACKLOG_CHUNK, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			free(buf);
			return total;
		}
		if (n <= 0)
			break;
		total += n;
	}
	fprintf(stderr, "# %s: %ld bytes sent, then %s\n", __func__, total,
		total > BACKLOG_MAX ? "too many" : strerror(errno));
fail:
	free(buf);
	return -1;
}

/* Bytes accepted and not transmitted yet: staged, or queued in TCP. */
static inline long unsent_bytes(int fd)
{
	int n;

	return ioctl(fd, SIOCOUTQNSD, &n) ? -1 : n;
}

/*
 * send_backlog() until the socket keeps unsent bytes (staged in its buffer
 * or queued in TCP, which the buffer covers) for good, so that it holds its
 * buffer until the peer reads: while the peer's receive window still grows
 * (its receive queue is not full yet), TCP transmits what it held after
 * send() said EAGAIN, and the buffer goes back. Stable once the unsent
 * bytes stay the same over QUIET_MS. Returns the bytes sent, or -1.
 */
static inline long send_backlog_staged(int fd, uint32_t flow)
{
	long total = 0, n, unsent;
	int tries;

	for (tries = 0; tries < 100; tries++) {
		n = send_backlog(fd, flow, total);
		if (n < 0)
			return -1;
		total += n;
		unsent = unsent_bytes(fd);
		sleep_ms(QUIET_MS);
		if (unsent > 0 && unsent_bytes(fd) == unsent &&
		    (info_flags(fd) & MBUFMUX_F_HOLDS_BUF))
			return total;
	}
	return -1;
}

#endif /* MBUFMUX_UTIL_H */
