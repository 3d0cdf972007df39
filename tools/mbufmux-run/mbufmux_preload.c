// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_preload.so - attach the TCP sockets of an unmodified, dynamically
 * linked program to the "mbufmux" ULP (LD_PRELOAD; see mbufmux-run).
 *
 * Every established IPv4 or IPv6 TCP socket the program makes with
 * connect(), or gets from accept() or accept4(), is attached with
 * setsockopt(TCP_ULP, "mbufmux"):
 *
 * - a connect() that returns 0: at once;
 * - a connect() still in progress (EINPROGRESS, EALREADY, EINTR): on the
 *   first read, write, send, receive, sendfile() or splice() on the socket
 *   (or connect() again, EISCONN) once TCP_INFO says it is established.
 *   A table indexed by descriptor holds the socket cookie (SO_COOKIE) of
 *   each such socket, so a descriptor closed and reused for something else
 *   is never taken for it; every other descriptor costs those calls one
 *   load;
 * - accept(), accept4(): at once.
 *
 * Nothing the program sees changes when a socket cannot be attached (the
 * module is not loaded, another ULP is set, ...): the socket stays plain
 * TCP and errno is what the program's own call left. After an ENOENT (the
 * module is not loaded) the process stops trying, so a privileged program
 * does not make the kernel look for the module on every connection.
 *
 * Environment (validated; a bad value is reported on stderr and turns the
 * library off, it is never clamped):
 *   MBUFMUX_RUN_BLOCK    both|send: set MBUFMUX_BLOCK on each attached
 *                        socket (unset: the ULP's default, both)
 *   MBUFMUX_RUN_VERBOSE  1: report each attach (or why not) on stderr,
 *                        0 or unset: quiet
 *   MBUFMUX_RUN_LOG      the report goes to this file (appended) instead
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mbufmux.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

#define ULP_NAME	"mbufmux"
/* Descriptors above this have no entry: a connect in progress there is
 * not attached (reported). The table is sparse, untouched pages cost nothing.
 */
#define MAX_TABLE	1048576u

/*
 * The real functions. The FORTIFY_SOURCE entry points of read() and
 * recv*() (Debian builds with it) call glibc's internal read, not the
 * interposed one, so they are wrapped too.
 */
static struct {
	typeof(connect) *connect;
	typeof(accept) *accept;
	typeof(accept4) *accept4;
	typeof(setsockopt) *setsockopt;
	typeof(read) *read;
	typeof(write) *write;
	typeof(readv) *readv;
	typeof(writev) *writev;
	typeof(send) *send;
	typeof(recv) *recv;
	typeof(sendto) *sendto;
	typeof(recvfrom) *recvfrom;
	typeof(sendmsg) *sendmsg;
	typeof(recvmsg) *recvmsg;
	typeof(sendmmsg) *sendmmsg;
	typeof(recvmmsg) *recvmmsg;
	typeof(sendfile) *sendfile;
	typeof(sendfile64) *sendfile64;
	typeof(splice) *splice;
	ssize_t (*read_chk)(int fd, void *buf, size_t n, size_t buflen);
	ssize_t (*recv_chk)(int fd, void *buf, size_t n, size_t buflen,
			    int flags);
	ssize_t (*recvfrom_chk)(int fd, void *buf, size_t n, size_t buflen,
				int flags, __SOCKADDR_ARG addr,
				socklen_t *addr_len);
} real;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int enabled;		/* the environment was valid */
static int verbose;
static int block_mode = -1;	/* -1: leave the ULP's default */
static const char *log_path;
static int module_absent;	/* an attach failed with ENOENT */
static uint64_t *pending;	/* [fd]: cookie of a connect in progress */
static unsigned int pending_size;

static void *next_sym(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

/* One line of the report: to MBUFMUX_RUN_LOG (opened for each line, so no
 * descriptor of the program's is taken) or to stderr, unless stderr is
 * an IP socket (a descriptor 2 reused for a connection).
 */
static void report(const char *fmt, ...)
{
	char line[512];
	int saved = errno, len, n, fd;
	struct stat st;
	va_list ap;

	if (!verbose)
		return;
	/* The prefix fits: at most 30 + 10 + 64 bytes. */
	len = snprintf(line, sizeof(line), "mbufmux-run: pid %d (%.64s): ",
		       (int)getpid(), program_invocation_short_name);
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len += n;
	if (len > (int)sizeof(line) - 2)	/* truncated */
		len = sizeof(line) - 2;
	line[len++] = '\n';

	if (log_path) {
		fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
			  0644);
		if (fd >= 0) {
			real.write(fd, line, len);
			close(fd);
		}
	} else if (fstat(2, &st) == 0) {
		int dom = 0;
		socklen_t olen = sizeof(dom);

		if (!S_ISSOCK(st.st_mode) ||
		    getsockopt(2, SOL_SOCKET, SO_DOMAIN, &dom, &olen) ||
		    (dom != AF_INET && dom != AF_INET6))
			real.write(2, line, len);
	}
	errno = saved;
}

/* An environment value is used as given or refused, never clamped. */
static int parse_env(void)
{
	const char *b = getenv("MBUFMUX_RUN_BLOCK");
	const char *v = getenv("MBUFMUX_RUN_VERBOSE");
	const char *l = getenv("MBUFMUX_RUN_LOG");
	const char *bad = NULL, *val = NULL, *want = NULL;

	if (v && *v && strcmp(v, "0") && strcmp(v, "1")) {
		bad = "MBUFMUX_RUN_VERBOSE";
		val = v;
		want = "0 or 1";
	} else if (b && *b && strcmp(b, "both") && strcmp(b, "send")) {
		bad = "MBUFMUX_RUN_BLOCK";
		val = b;
		want = "both or send";
	} else if (l && *l && l[0] != '/') {
		bad = "MBUFMUX_RUN_LOG";
		val = l;
		want = "an absolute path";
	}
	if (bad) {
		char msg[512];
		int len = snprintf(msg, sizeof(msg),
				   "mbufmux-run: pid %d: bad %s '%.200s' (want %s): no socket will be attached\n",
				   (int)getpid(), bad, val, want);

		if (len > (int)sizeof(msg) - 1)
			len = sizeof(msg) - 1;
		real.write(2, msg, len);
		return 0;
	}
	verbose = v && !strcmp(v, "1");
	if (b && !strcmp(b, "both"))
		block_mode = MBUFMUX_BLOCK_BOTH;
	else if (b && !strcmp(b, "send"))
		block_mode = MBUFMUX_BLOCK_SEND;
	/* A copy: the program may change its environment. */
	log_path = l && *l ? strdup(l) : NULL;
	if (l && *l && !log_path) {
		static const char nomem[] =
			"mbufmux-run: no memory: no socket will be attached\n";

		real.write(2, nomem, sizeof(nomem) - 1);
		return 0;
	}
	return 1;
}

static void init(void)
{
	int saved = errno;
	struct rlimit rl;
	void *p;

	real.connect = next_sym("connect");
	real.accept = next_sym("accept");
	real.accept4 = next_sym("accept4");
	real.setsockopt = next_sym("setsockopt");
	real.read = next_sym("read");
	real.write = next_sym("write");
	real.readv = next_sym("readv");
	real.writev = next_sym("writev");
	real.send = next_sym("send");
	real.recv = next_sym("recv");
	real.sendto = next_sym("sendto");
	real.recvfrom = next_sym("recvfrom");
	real.sendmsg = next_sym("sendmsg");
	real.recvmsg = next_sym("recvmsg");
	real.sendmmsg = next_sym("sendmmsg");
	real.recvmmsg = next_sym("recvmmsg");
	real.sendfile = next_sym("sendfile");
	real.sendfile64 = next_sym("sendfile64");
	real.splice = next_sym("splice");
	real.read_chk = next_sym("__read_chk");
	real.recv_chk = next_sym("__recv_chk");
	real.recvfrom_chk = next_sym("__recvfrom_chk");

	enabled = parse_env();
	if (enabled) {
		pending_size = MAX_TABLE;
		if (!getrlimit(RLIMIT_NOFILE, &rl) &&
		    rl.rlim_max != RLIM_INFINITY && rl.rlim_max < MAX_TABLE)
			pending_size = rl.rlim_max < 1024 ? 1024 : rl.rlim_max;
		p = mmap(NULL, pending_size * sizeof(*pending),
			 PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			pending_size = 0;
			report("no memory for the descriptor table: %s",
			       "sockets connected in the background will not be attached");
		} else {
			pending = p;
		}
		report("preloaded, block=%s", block_mode == MBUFMUX_BLOCK_SEND ?
		       "send" : "both");
	}
	errno = saved;
}

static inline void ensure_init(void)
{
	pthread_once(&init_once, init);
}

__attribute__((constructor)) static void preload_ctor(void)
{
	ensure_init();
}

static const char *why(int err)
{
	switch (err) {
	case ENOENT:
		return "module mbufmux_tcp not loaded";
	case EEXIST:
		return "another ULP is set on the socket";
	case ENOTCONN:
		return "not established (any more)";
	case EOPNOTSUPP:
		return "in a sockmap, or its protocol was replaced";
	case ENOPROTOOPT:
		return "no TCP_ULP on this socket (MPTCP, or an old kernel)";
	case ENOMEM:
		return "no memory";
	default:
		return strerror(err);
	}
}

static const char *errname(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "?";
}

/* Is fd a TCP socket (IPv4 or IPv6)? */
static int is_tcp(int fd)
{
	int dom = 0, proto = 0;
	socklen_t len = sizeof(int);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) ||
	    (dom != AF_INET && dom != AF_INET6))
		return 0;
	len = sizeof(int);
	return !getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) &&
	       proto == IPPROTO_TCP;
}

/* Attach an established TCP socket; errno is left as it was. */
static void attach(int fd, const char *how)
{
	int saved = errno, err, mode = block_mode;

	if (__atomic_load_n(&module_absent, __ATOMIC_RELAXED))
		goto out;
	if (real.setsockopt(fd, IPPROTO_TCP, TCP_ULP, ULP_NAME,
			    sizeof(ULP_NAME))) {
		err = errno;
		if (err == ENOENT) {
			/* Once: the process stays unattached from now on. */
			if (!__atomic_exchange_n(&module_absent, 1,
						 __ATOMIC_RELAXED))
				report("fd %d not attached (%s): %s", fd, how,
				       "ENOENT (module mbufmux_tcp not loaded); this process runs unattached");
		} else {
			report("fd %d not attached (%s): %s (%s)", fd, how,
			       errname(err), why(err));
		}
		goto out;
	}
	if (mode >= 0 && real.setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK,
					 &mode, sizeof(mode))) {
		err = errno;
		report("fd %d attached (%s), but MBUFMUX_BLOCK failed: %s (%s)",
		       fd, how, errname(err), strerror(err));
		goto out;
	}
	report("fd %d attached (%s), block=%s", fd, how,
	       mode == MBUFMUX_BLOCK_SEND ? "send" : "both");
out:
	errno = saved;
}

static uint64_t cookie_of(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len))
		return 0;
	return cookie;
}

/* A connect() on fd is in progress: attach it on its first I/O. */
static void track(int fd)
{
	int saved = errno;
	uint64_t cookie;

	if ((unsigned int)fd >= pending_size) {
		report("fd %d not attached (connect in progress): beyond the descriptor table (%u)",
		       fd, pending_size);
		goto out;
	}
	cookie = cookie_of(fd);
	if (!cookie) {
		report("fd %d not attached (connect in progress): no SO_COOKIE: %s",
		       fd, strerror(errno));
		goto out;
	}
	__atomic_store_n(&pending[fd], cookie, __ATOMIC_RELAXED);
out:
	errno = saved;
}

static void untrack(int fd)
{
	if ((unsigned int)fd < pending_size)
		__atomic_store_n(&pending[fd], 0, __ATOMIC_RELAXED);
}

static void pending_io(int fd, uint64_t cookie)
{
	int saved = errno;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (cookie_of(fd) != cookie) {
		/* Closed, and the number reused: not ours any more. */
		__atomic_compare_exchange_n(&pending[fd], &cookie, 0, 0,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		goto out;
	}
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		goto out;
	if (ti.tcpi_state == TCP_SYN_SENT)
		goto out;	/* still connecting */
	/* One thread claims it; the others go on unattached meanwhile. */
	if (!__atomic_compare_exchange_n(&pending[fd], &cookie, 0, 0,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		goto out;
	if (ti.tcpi_state == TCP_ESTABLISHED)
		attach(fd, "connect, on first I/O");
	else
		report("fd %d not attached (connect, on first I/O): TCP state %u, not established",
		       fd, ti.tcpi_state);
out:
	errno = saved;
}

/* The cost for every other descriptor: one load. */
static inline void check_fd(int fd)
{
	uint64_t cookie;

	ensure_init();
	if ((unsigned int)fd >= pending_size)
		return;
	cookie = __atomic_load_n(&pending[fd], __ATOMIC_RELAXED);
	if (__builtin_expect(cookie != 0, 0))
		pending_io(fd, cookie);
}

int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	const struct sockaddr *sa = addr.__sockaddr__;
	int ret, saved;

	ensure_init();
	ret = real.connect(fd, addr, len);
	if (!enabled || !sa || len < sizeof(sa->sa_family))
		return ret;
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
		if (sa->sa_family == AF_UNSPEC)	/* disconnect */
			untrack(fd);
		return ret;
	}
	saved = errno;
	if (ret == 0) {
		untrack(fd);
		if (is_tcp(fd))
			attach(fd, "connect");
	} else if (errno == EISCONN) {
		/* Connected in the background: attach it if it was ours. */
		check_fd(fd);
	} else if (errno == EINPROGRESS || errno == EALREADY ||
		   errno == EINTR) {
		if (is_tcp(fd))
			track(fd);
	}
	errno = saved;
	return ret;
}

static int accepted(int fd, const char *how)
{
	if (fd >= 0 && enabled) {
		int saved = errno;

		untrack(fd);
		if (is_tcp(fd))
			attach(fd, how);
		errno = saved;
	}
	return fd;
}

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *len)
{
	ensure_init();
	return accepted(real.accept(fd, addr, len), "accept");
}

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *len, int flags)
{
	ensure_init();
	return accepted(real.accept4(fd, addr, len, flags), "accept4");
}

/* "mbufmux", with or without its NUL, as the kernel reads a ULP name. */
static int is_ulp_name(const void *val, socklen_t len)
{
	const size_t n = sizeof(ULP_NAME) - 1;

	return val && len >= n && !memcmp(val, ULP_NAME, n) &&
	       (len == n || ((const char *)val)[n] == '\0');
}

/*
 * The program attaching a socket itself: if it is attached already, that
 * is what it asked for (the kernel would say EEXIST).
 */
int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	int ret;

	ensure_init();
	ret = real.setsockopt(fd, level, name, val, len);
	if (ret && errno == EEXIST && enabled && level == IPPROTO_TCP &&
	    name == TCP_ULP && is_ulp_name(val, len)) {
		char cur[16] = "";
		socklen_t clen = sizeof(cur) - 1;
		int saved = errno;

		if (!getsockopt(fd, IPPROTO_TCP, TCP_ULP, cur, &clen) &&
		    !strcmp(cur, ULP_NAME))
			return 0;
		errno = saved;
	}
	return ret;
}

ssize_t read(int fd, void *buf, size_t n)
{
	check_fd(fd);
	return real.read(fd, buf, n);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	check_fd(fd);
	return real.write(fd, buf, n);
}

ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	check_fd(fd);
	return real.readv(fd, iov, cnt);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	check_fd(fd);
	return real.writev(fd, iov, cnt);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	check_fd(fd);
	return real.send(fd, buf, n, flags);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	check_fd(fd);
	return real.recv(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags,
	       __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	check_fd(fd);
	return real.sendto(fd, buf, n, flags, addr, len);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags,
		 __SOCKADDR_ARG addr, socklen_t *len)
{
	check_fd(fd);
	return real.recvfrom(fd, buf, n, flags, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	check_fd(fd);
	return real.sendmsg(fd, msg, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	check_fd(fd);
	return real.recvmsg(fd, msg, flags);
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
	check_fd(fd);
	return real.sendmmsg(fd, vec, vlen, flags);
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags,
	     struct timespec *tmo)
{
	check_fd(fd);
	return real.recvmmsg(fd, vec, vlen, flags, tmo);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *off, size_t n)
{
	check_fd(out_fd);
	return real.sendfile(out_fd, in_fd, off, n);
}

ssize_t sendfile64(int out_fd, int in_fd, off64_t *off, size_t n)
{
	check_fd(out_fd);
	return real.sendfile64(out_fd, in_fd, off, n);
}

ssize_t splice(int fd_in, off64_t *off_in, int fd_out, off64_t *off_out,
	       size_t n, unsigned int flags)
{
	check_fd(fd_in);
	check_fd(fd_out);
	return real.splice(fd_in, off_in, fd_out, off_out, n, flags);
}

ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	check_fd(fd);
	return real.read_chk(fd, buf, n, buflen);
}

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
	check_fd(fd);
	return real.recv_chk(fd, buf, n, buflen, flags);
}

ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
		       __SOCKADDR_ARG addr, socklen_t *len)
{
	check_fd(fd);
	return real.recvfrom_chk(fd, buf, n, buflen, flags, addr, len);
}
