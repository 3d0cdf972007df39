// SPDX-License-Identifier: GPL-2.0
/*
 * The helpers every userspace program of mbufmux shares: see
 * mbufmux_test_lib.h.
 */
#define _GNU_SOURCE
#include "mbufmux_test_lib.h"

void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
		strerror(errno));
	exit(2);
}

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
	poll(NULL, 0, ms);
}

uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

ssize_t read_text(const char *path, char *buf, size_t size)
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

int write_text(const char *path, const char *val)
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

long long read_number(const char *path)
{
	char buf[64];

	if (read_text(path, buf, sizeof(buf)) <= 0)
		return -1;
	return strtoll(buf, NULL, 10);
}

int param_write(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	return write_text(path, val);
}

int param_set(const char *name, long val)
{
	char s[32];

	snprintf(s, sizeof(s), "%ld\n", val);
	return param_write(name, s);
}

long param_get(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), PARAM_DIR "%s", name);
	return read_number(path);
}

int limits_set(long limit, long reserve)
{
	return param_set("reserve", 0) ?: param_set("limit", limit) ?:
	       param_set("reserve", reserve);
}

void params_read(struct tcp_params *p)
{
	p->buf_size = param_get("buf_size");
	p->limit = param_get("limit");
	p->reserve = param_get("reserve");
	p->user_limit = param_get("user_limit");
}

int params_write(const struct tcp_params *p)
{
	return limits_set(p->limit, p->reserve) ?:
	       param_set("user_limit", p->user_limit);
}

bool params_equal(const struct tcp_params *p)
{
	struct tcp_params now;

	params_read(&now);
	return !memcmp(&now, p, sizeof(now));
}

bool module_loaded(const char *name)
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

long module_refcnt(void)
{
	return read_number(MODULE_DIR "/refcnt");
}

const char *module_ko(void)
{
	static char path[256];
	const char *dir = getenv("MBUFMUX_MODDIR");

	snprintf(path, sizeof(path), "%s/mbufmux_tcp.ko", dir ?: MODULE_DIR_VM);
	return path;
}

int module_load(const char *args)
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

int module_load_params(const struct tcp_params *p)
{
	char args[160];

	snprintf(args, sizeof(args),
		 "buf_size=%ld limit=%ld reserve=%ld user_limit=%ld",
		 p->buf_size, p->limit, p->reserve, p->user_limit);
	return module_load(args);
}

int stats_read(struct pool_stats *st)
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

long long stat_get(const char *name)
{
	char key[64];
	long long v, found = -1;
	FILE *f = fopen(DBG_DIR "stats", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", key, &v) == 2)
		if (!strcmp(key, name)) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

/*
 * The lines of /proc/net/tcp and tcp6 for which @match(line, @arg) is
 * true, or -1 if neither can be read.
 */
static int tcp_lines(bool (*match)(const char *line, unsigned int arg),
		     unsigned int arg)
{
	static const char * const files[] = {
		"/proc/net/tcp", "/proc/net/tcp6",
	};
	int n = 0, read = 0;
	char line[512];
	size_t i;
	FILE *f;

	for (i = 0; i < ARRAY_SIZE(files); i++) {
		f = fopen(files[i], "re");
		if (!f)
			continue;
		read++;
		while (fgets(line, sizeof(line), f))
			n += match(line, arg);
		fclose(f);
	}
	return read ? n : -1;
}

/*
 * A closed socket TCP has not finished with (an orphan, inode 0), but a
 * timewait one (state TIME_WAIT, or FIN_WAIT2 with the timewait timer,
 * "03:"), which is what TCP keeps of a socket it destroyed: an attached
 * one keeps its buffer until TCP destroys it.
 */
static bool tcp_orphan(const char *line, unsigned int unused)
{
	char st[8], tr[16];
	unsigned long inode;

	(void)unused;
	return sscanf(line, "%*s %*s %*s %7s %*s %15s %*s %*s %*s %lu",
		      st, tr, &inode) == 3 && !inode &&
	       strcmp(st, "0A") && strcmp(st, "06") && strncmp(tr, "03:", 3);
}

static bool tcp_in_state(const char *line, unsigned int st)
{
	unsigned int state;

	return sscanf(line, "%*s %*s %*s %x", &state) == 1 && state == st;
}

int tcp_state_count(unsigned int st)
{
	return tcp_lines(tcp_in_state, st);
}

/*
 * How long wait_rest() waits past its own limit while closed sockets that
 * TCP has not destroyed remain: TCP's own timers bound them. An orphan
 * with data or a FIN unacknowledged retransmits, or probes a zero window,
 * tcp_orphan_retries times (8 when 0, the default) with exponential
 * backoff from an RTO of at least 200 ms, about 100 s in all, and may then
 * stay in FIN_WAIT2 up to tcp_fin_timeout (60 s); as rmmod_tcp in ktap.sh.
 */
#define ORPHAN_MS	240000
/* Once the last of them is gone: its buffer goes back in release. */
#define ORPHAN_GRACE_MS	5000

int wait_rest(struct pool_stats *st, int ms)
{
	long long start = now_ms(), end = start + ms;
	int orphans, told = 0;

	for (;;) {
		if (stats_read(st))
			return -1;
		if (!st->in_use && !st->waiters)
			return 0;
		sleep_ms(5);
		if (now_ms() <= end)
			continue;
		orphans = tcp_lines(tcp_orphan, 0);
		if (orphans <= 0 || now_ms() - start > ORPHAN_MS)
			return 1;
		if (!told++)
			fprintf(stderr, "# pool not at rest after %d ms: %d closed sockets left\n",
				ms, orphans);
		end = now_ms() + ORPHAN_GRACE_MS;
	}
}

bool wait_pool(long long in_use, long long waiters, int ms)
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

long waiters_read(unsigned short *ports, long max)
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

int users_read(unsigned int uid, struct user_counts *uc)
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

int users_listed(void)
{
	char buf[16384], *p;
	int n = 0;

	if (read_text(USERS_FILE, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; (p = strstr(p, "uid=")); p++)
		n++;
	return n;
}

long users_cap(void)
{
	char buf[16384];
	long cap;

	if (read_text(USERS_FILE, buf, sizeof(buf)) < 0 ||
	    sscanf(buf, "cap %ld", &cap) != 1)
		return -1;
	return cap;
}

uint8_t pattern(uint32_t flow, uint64_t off)
{
	uint64_t x = (off >> 3) * 0x9e3779b97f4a7c15ULL ^
		     ((uint64_t)flow << 40 | 0x5bd1e995);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x >> ((off & 7) * 8);
}

void fill(void *buf, size_t len, uint32_t flow, uint64_t off)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = pattern(flow, off + i);
}

long check(const void *buf, size_t len, uint32_t flow, uint64_t off)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != pattern(flow, off + i))
			return i;
	return -1;
}

int attach(int fd)
{
	return setsockopt(fd, IPPROTO_TCP, TCP_ULP, ULP_NAME,
			  sizeof(ULP_NAME));
}

int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl < 0 ? fl : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int info_get(int fd, struct mbufmux_info *info)
{
	socklen_t len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	if (getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, info, &len))
		return -1;
	return len == sizeof(*info) ? 0 : -1;
}

unsigned int info_flags(int fd)
{
	struct mbufmux_info info;

	return info_get(fd, &info) ? ~0U : info.flags;
}

unsigned int wait_flags(int fd, unsigned int mask, unsigned int want,
			int ms)
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

short poll_one(int fd, short events, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	return poll(&pfd, 1, ms) == 1 ? pfd.revents : 0;
}

int poll_first(const int *fds, int n, short events, int ms)
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

size_t recv_all(int fd, void *buf, size_t len, int ms)
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

bool recv_eof(int fd)
{
	char c;

	if (!(poll_one(fd, POLLIN, WAKE_MS) & (POLLIN | POLLHUP)))
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

unsigned short local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void *blocked_call_fn(void *arg)
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

int blocked_call_start(struct blocked_call *c)
{
	return pthread_create(&c->thread, NULL, blocked_call_fn, c);
}

bool blocked_call_join(struct blocked_call *c, int ms)
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

bool hold(int fd)
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

bool park_flags(int fd, unsigned int want)
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

bool park(int fd)
{
	return park_flags(fd, MBUFMUX_F_PARKED);
}

int net_admin(bool on)
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

/* Opens the listener of @l on its address (port 0: any): 0 or -errno. */
static int lsn_listen(struct lsn *l)
{
	int err;

	l->fd = socket(l->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

int lsn_open(struct lsn *l, int family, bool v4mapped)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;

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
	return lsn_listen(l);
}

int lsn_open_addr(struct lsn *l, const char *ipv4)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;

	memset(l, 0, sizeof(*l));
	l->family = AF_INET;
	sin->sin_family = AF_INET;
	if (inet_pton(AF_INET, ipv4, &sin->sin_addr) != 1)
		return -EINVAL;
	l->len = sizeof(*sin);
	return lsn_listen(l);
}

int setint(int fd, int level, int name, int val)
{
	return setsockopt(fd, level, name, &val, sizeof(val));
}

int lsn_open_bufs(struct lsn *l, int family, int rcvbuf, int sndbuf)
{
	int err = lsn_open(l, family, false);

	if (err)
		return err;
	if ((rcvbuf && setint(l->fd, SOL_SOCKET, SO_RCVBUF, rcvbuf)) ||
	    (sndbuf && setint(l->fd, SOL_SOCKET, SO_SNDBUF, sndbuf))) {
		err = -errno;
		close(l->fd);
		l->fd = -1;
	}
	return err;
}

/* Closes @fd, errno left as it was: -1, for the caller to return. */
static int close_keep_errno(int fd)
{
	int err = errno;

	close(fd);
	errno = err;
	return -1;
}

/*
 * The end of a pair: @fd connected to @l and the peer accepted into
 * *@peer; @fd, or -1 with @fd closed and errno saying why.
 */
static int lsn_connect(const struct lsn *l, int fd, int *peer)
{
	if (connect(fd, (const struct sockaddr *)&l->addr, l->len))
		return close_keep_errno(fd);
	*peer = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (*peer < 0)
		return close_keep_errno(fd);
	return fd;
}

int lsn_pair_opts(const struct lsn *l, const struct sockopts *o, int *peer)
{
	int fd;

	fd = socket(l->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if ((o && o->rcvbuf && setint(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf)) ||
	    (o && o->sndbuf && setint(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf)) ||
	    (o && o->maxseg && setint(fd, IPPROTO_TCP, TCP_MAXSEG, o->maxseg)))
		return close_keep_errno(fd);
	return lsn_connect(l, fd, peer);
}

int lsn_pair_from(const struct lsn *l, const struct sockaddr_in *src,
		  int *peer)
{
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (const struct sockaddr *)src, sizeof(*src)))
		return close_keep_errno(fd);
	return lsn_connect(l, fd, peer);
}

int lsn_pair(const struct lsn *l, int *peer)
{
	return lsn_pair_opts(l, NULL, peer);
}

int lsn_pair_or_die(const struct lsn *l, int *peer)
{
	int fd = lsn_pair(l, peer);

	if (fd < 0)
		die("connect");
	return fd;
}

long send_backlog(int fd, uint32_t flow, long from)
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

long unsent_bytes(int fd)
{
	int n;

	return ioctl(fd, SIOCOUTQNSD, &n) ? -1 : n;
}

long send_backlog_staged(int fd, uint32_t flow)
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

int tcp_pair(int *fd, int *peer)
{
	struct lsn l;

	if (lsn_open(&l, AF_INET, false))
		return -1;
	*fd = lsn_pair(&l, peer);
	close_keep_errno(l.fd);
	return *fd < 0 ? -1 : 0;
}

long env_long(const char *name, long def)
{
	const char *s = getenv(name);

	return s && *s ? strtol(s, NULL, 0) : def;
}

long knob(const char *name, long def, long debug_def)
{
	static int debug = -1;

	if (debug < 0)
		debug = !access("/proc/lockdep", F_OK);
	return env_long(name, debug ? debug_def : def);
}

int module_unload(int ms)
{
	long long end = now_ms() + ms;

	for (;;) {
		if (!syscall(SYS_delete_module, "mbufmux_tcp", O_NONBLOCK))
			return 0;
		if ((errno != EWOULDBLOCK && errno != EBUSY) ||
		    now_ms() > end)
			return -errno;
		sleep_ms(1);
	}
}

long recv_to_eof(int fd, void *buf, size_t size, int ms)
{
	long long end = now_ms() + ms;
	char tmp[16 << 10];
	size_t got = 0;
	ssize_t n;

	for (;;) {
		if (!(poll_one(fd, POLLIN, 50) & (POLLIN | POLLHUP | POLLERR))) {
			if (now_ms() > end)
				return -1;
			continue;
		}
		n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n < 0)
			return -2;
		if (!n)
			return got;
		if (got < size)
			memcpy((char *)buf + got, tmp,
			       got + n > size ? size - got : (size_t)n);
		got += n;
	}
}

void close_pairs(const int *fds, const int *peers, long n)
{
	long i;

	for (i = 0; i < n; i++) {
		close(fds[i]);
		close(peers[i]);
	}
}

void drain(int fd)
{
	char tmp[4096];

	while (recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT) > 0)
		;
}

void child_setup(pid_t parent, int fd1, int fd2)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) || getppid() != parent)
		_exit(1);
	if (fd1 >= 0)
		close(fd1);
	if (fd2 >= 0)
		close(fd2);
}

int raise_nofile(rlim_t want)
{
	struct rlimit rl = { .rlim_cur = want, .rlim_max = want };

	return setrlimit(RLIMIT_NOFILE, &rl);
}

int lo_up(void)
{
	struct ifreq ifr = {};
	int fd, ret;

	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	ret = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (!ret) {
		ifr.ifr_flags |= IFF_UP;
		ret = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	close(fd);
	return ret;
}

int send_fds(int u, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(FDS_MAX * sizeof(int))] = {};
	struct iovec iov = { .iov_base = "F", .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf,
		.msg_controllen = CMSG_SPACE(n * sizeof(int)),
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	if (n > FDS_MAX)
		return -1;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	return sendmsg(u, &msg, 0) == 1 ? 0 : -1;
}

int recv_fds(int u, int *fds, int n)
{
	char cbuf[CMSG_SPACE(FDS_MAX * sizeof(int))], c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm;

	if (n > FDS_MAX || recvmsg(u, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(n * sizeof(int)))
		return -1;
	memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
	return 0;
}

int become_user(uid_t uid, bool userns)
{
	char map[32];

	if (setgroups(0, NULL) || setresgid(uid, uid, uid) ||
	    setresuid(uid, uid, uid))
		return 1;
	if (!userns)
		return 0;
	snprintf(map, sizeof(map), "0 %u 1", uid);
	/* The id maps of a process that changed its ids: dumpable. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) ||
	    unshare(CLONE_NEWUSER | CLONE_NEWNET) ||
	    write_text("/proc/self/setgroups", "deny") ||
	    write_text("/proc/self/uid_map", map) ||
	    write_text("/proc/self/gid_map", map))
		return 2;
	return lo_up() ? 3 : 0;
}
