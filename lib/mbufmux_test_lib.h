/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The helpers every userspace program of mbufmux shares (the selftests,
 * the demo, the fault tools, the bench): mbufmux_tcp.ko's parameters and
 * loading it, its debugfs files (the pool's counters, its parked sockets,
 * the per-user cap), byte patterns, attaching sockets, looking at them and
 * waiting on them, loopback listeners and pairs, time.
 *
 * Free of kselftest_harness.h: what fails a test lives in
 * selftests/mbufmux_util.h. Compiled once (lib/Makefile) and linked
 * statically into each program, which includes this after defining
 * _GNU_SOURCE.
 */
#ifndef MBUFMUX_TEST_LIB_H
#define MBUFMUX_TEST_LIB_H

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/capability.h>
#include <linux/sockios.h>

#include "mbufmux.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif

#define ULP_NAME	"mbufmux"
#define MODULE_DIR	"/sys/module/mbufmux_tcp"
#define PARAM_DIR	MODULE_DIR "/parameters/"
#define DBG_ROOT	"/sys/kernel/debug/mbufmux/"
#define DBG_DIR		DBG_ROOT "tcp/"	/* the ULP's pool */
#define ULP_DBG_DIR	"/sys/kernel/debug/mbufmux_tcp/"	/* the ULP's own */
#define MODULE_DIR_VM	"/mbufmux"	/* where the test VM keeps the .ko */

/* Hang guards, in milliseconds. */
#define WAKE_MS		5000	/* for something that must happen */
#define QUIET_MS	200	/* for something that must not happen */

#define LIMIT_MAX	16777216	/* MBUFMUX_LIMIT_MAX */

#define BACKLOG_CHUNK	(64 << 10)	/* send_backlog(), recv_pattern() */
#define BACKLOG_MAX	(64 << 20)

/* Errors of the programs that are not tests */

/* Prints "program: @what: strerror(errno)" and exits with 2. */
void __attribute__((noreturn)) die(const char *what);

/* Time and random numbers */

long long now_ms(void);

void sleep_ms(int ms);

/* xorshift64*: every random choice, reproducible by seed. */
uint64_t rnd(uint64_t *s);

/* Files and module parameters */

/* Reads a small text file, NUL-terminated; returns its length or -errno. */
ssize_t read_text(const char *path, char *buf, size_t size);

/* Writes @val to a file in one write(2): 0 or -errno. */
int write_text(const char *path, const char *val);

/* The number a small file holds, or -1. */
long long read_number(const char *path);

/* Writes @val to a module parameter as it is: 0 or -errno. */
int param_write(const char *name, const char *val);

int param_set(const char *name, long val);

/* A module parameter's value, or -1. */
long param_get(const char *name);

/* Sets both limits, in an order that each write is valid in. */
int limits_set(long limit, long reserve);

/* The parameters of mbufmux_tcp.ko; -1 where one cannot be read. */
struct tcp_params {
	long buf_size;
	long limit;
	long reserve;
	long user_limit;
};

void params_read(struct tcp_params *p);

/* Applies the run-time parameters of @p: 0 or -errno. */
int params_write(const struct tcp_params *p);

/* Does the module run with the parameters of @p? */
bool params_equal(const struct tcp_params *p);

/* Loading and unloading */

bool module_loaded(const char *name);

long module_refcnt(void);

/* mbufmux_tcp.ko, in $MBUFMUX_MODDIR or the test VM's directory. */
const char *module_ko(void);

/* Loads mbufmux_tcp.ko with @args: 0 or -errno. */
int module_load(const char *args);

/* Loads mbufmux_tcp.ko with the parameters of @p: 0 or -errno. */
int module_load_params(const struct tcp_params *p);

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
int stats_read(struct pool_stats *st);

/* One counter of DBG_DIR/stats by its name, or -1. */
long long stat_get(const char *name);

/*
 * Waits for no buffer in use and nobody waiting: 0, 1 if not, -1. Up to
 * @ms, and longer, up to 240 s in all, while closed sockets remain that
 * TCP is still ending (until 5 s after the last): each may hold its buffer
 * that long (Documentation/mbufmux.rst, "Known limitations").
 */
int wait_rest(struct pool_stats *st, int ms);

/* Waits until @in_use buffers are out and @waiters are queued. */
bool wait_pool(long long in_use, long long waiters, int ms);

/* The sockets in TCP state @st (/proc/net/tcp and tcp6), or -1. */
int tcp_state_count(unsigned int st);

/*
 * The debugfs list of parked sockets, head first: returns the number of
 * lines, or -1; and the local port of each of the first @max ("sport=",
 * 0 if missing) in @ports.
 */
long waiters_read(unsigned short *ports, long max);

/* The per-user cap: ULP_DBG_DIR/users */

#define USERS_FILE	ULP_DBG_DIR "users"

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
int users_read(unsigned int uid, struct user_counts *uc);

/* How many users have a line, or -1. */
int users_listed(void);

/* The cap now in force ("cap" in USERS_FILE), or -1. */
long users_cap(void);

/* Byte patterns */

/* Per-flow byte pattern: byte @off of flow @flow. */
uint8_t pattern(uint32_t flow, uint64_t off);

void fill(void *buf, size_t len, uint32_t flow, uint64_t off);

/* The index of the first wrong byte, or -1. */
long check(const void *buf, size_t len, uint32_t flow, uint64_t off);

/* Attached sockets */

int attach(int fd);

int set_nonblock(int fd);

int info_get(int fd, struct mbufmux_info *info);

/* MBUFMUX_INFO flags, or ~0U if the option fails. */
unsigned int info_flags(int fd);

/* Waits until (flags & @mask) == @want; returns the last flags seen. */
unsigned int wait_flags(int fd, unsigned int mask, unsigned int want,
			int ms);

/* poll() one socket: its revents, 0 on timeout. */
short poll_one(int fd, short events, int ms);

#define POLL_FIRST_MAX	128

/*
 * Waits for one of @n (at most POLL_FIRST_MAX) sockets to report @events:
 * returns the index of the first that does, -1 on timeout.
 */
int poll_first(const int *fds, int n, short events, int ms);

/* Receives exactly @len bytes (or up to EOF, the timeout): count received. */
size_t recv_all(int fd, void *buf, size_t len, int ms);

/* The peer has closed its side: recv() returns 0 within WAKE_MS. */
bool recv_eof(int fd);

/* The local port of socket @fd, 0 on error. */
unsigned short local_port(int fd);

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

void *blocked_call_fn(void *arg);

int blocked_call_start(struct blocked_call *c);

/* Joins the thread within @ms: true if it has returned. */
bool blocked_call_join(struct blocked_call *c, int ms);

/* Keeps a buffer: one byte held back by MSG_MORE. */
bool hold(int fd);

/* A non-blocking send finds no buffer for it: EAGAIN, flags @want. */
bool park_flags(int fd, unsigned int want);

/* A non-blocking send finds the pool dry: EAGAIN, parked on the pool. */
bool park(int fd);

/* Drops or restores CAP_NET_ADMIN in this thread's effective set. */
int net_admin(bool on);

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
int lsn_open(struct lsn *l, int family, bool v4mapped);

/*
 * A loopback listener whose accepted sockets get @rcvbuf and @sndbuf
 * (0: the default) from the start: set on the listener, inherited, and
 * announced in the handshake. 0 or -errno.
 */
int lsn_open_bufs(struct lsn *l, int family, int rcvbuf, int sndbuf);

/*
 * A listener on the IPv4 address @ipv4 (dotted, e.g. one of 127.0.0.0/8,
 * all of it local on Linux's loopback), any port. 0 or -errno. Each
 * address has its own ports: many connections at once, or one run after
 * another whose connections are still in TIME_WAIT, can go to different
 * ones.
 */
int lsn_open_addr(struct lsn *l, const char *ipv4);

/*
 * A connected pair through @l, which nobody else accepts on meanwhile: the
 * connecting side, the accepted one in *@peer; -1 on error.
 */
int lsn_pair(const struct lsn *l, int *peer);

/* lsn_pair(), or the program ends with die("connect"). */
int lsn_pair_or_die(const struct lsn *l, int *peer);

/*
 * lsn_pair() from the local address @src (address and port, bound before
 * connect()): many connections to one listener without the kernel's
 * search for a free ephemeral port, which scans the ports the others took
 * and grows with their number.
 */
int lsn_pair_from(const struct lsn *l, const struct sockaddr_in *src,
		  int *peer);

/* Options of the connecting side of a pair, set before connect() */
struct sockopts {
	int rcvbuf;		/* SO_RCVBUF, 0: the default */
	int sndbuf;		/* SO_SNDBUF, 0: the default */
	int maxseg;		/* TCP_MAXSEG, 0: the default */
};

/*
 * lsn_pair() with options @o (NULL: none) on the connecting side set
 * before connect(), so that the handshake announces them.
 */
int lsn_pair_opts(const struct lsn *l, const struct sockopts *o, int *peer);

/* setsockopt() of an int: 0 or -1. */
int setint(int fd, int level, int name, int val);

/* A connected pair on loopback (IPv4), its own listener closed: 0 or -1. */
int tcp_pair(int *fd, int *peer);

/*
 * Sends pattern @flow from its byte @from on, non-blocking, until neither
 * TCP nor the socket's buffer takes more (the peer does not read): returns
 * the bytes sent, or
 * -1 if a send fails otherwise or more than BACKLOG_MAX bytes go. What TCP
 * could not take is left staged in the socket's buffer; the socket keeps
 * it for good only if the peer's receive buffer is small, else what TCP
 * sends on into the peer's window makes room.
 */
long send_backlog(int fd, uint32_t flow, long from);

/* Bytes accepted and not transmitted yet: staged, or queued in TCP. */
long unsent_bytes(int fd);

/*
 * send_backlog() until the socket keeps unsent bytes (staged in its buffer
 * or queued in TCP, which the buffer covers) for good, so that it holds its
 * buffer until the peer reads: while the peer's receive window still grows
 * (its receive queue is not full yet), TCP transmits what it held after
 * send() said EAGAIN, and the buffer goes back. Stable once the unsent
 * bytes stay the same over QUIET_MS. Returns the bytes sent, or -1.
 */
long send_backlog_staged(int fd, uint32_t flow);

/* Processes, users, namespaces */

#define FDS_MAX	2	/* send_fds(), recv_fds() */

long env_long(const char *name, long def);

/* A setting from the environment, with a default for debug kernels. */
long knob(const char *name, long def, long debug_def);

/* Unloads mbufmux_tcp.ko, retrying while it is busy: 0 or -errno. */
int module_unload(int ms);

/*
 * Receives until end of file: the bytes that came (the first @size of
 * them in @buf), -1 if no end of file came within @ms, -2 on a reset.
 */
long recv_to_eof(int fd, void *buf, size_t size, int ms);

/* Closes @n pairs: each connecting side, then its peer. */
void close_pairs(const int *fds, const int *peers, long n);

/* Reads whatever is there without waiting. */
void drain(int fd);

/*
 * In a child of the test's process: dies with it (after a failed ASSERT the
 * harness waits for no grandchild, and one left behind would keep the
 * runner's output pipe open), and closes the pipe ends of the parent's.
 */
void child_setup(pid_t parent, int fd1, int fd2);

int raise_nofile(rlim_t want);

/* Brings the loopback device of this network namespace up. */
int lo_up(void);

/* Sends @n (at most FDS_MAX) descriptors over the AF_UNIX socket @u. */
int send_fds(int u, const int *fds, int n);

/* Receives the @n descriptors of one send_fds(): 0 or -1. */
int recv_fds(int u, int *fds, int n);

/*
 * Becomes user and group @uid, without capabilities; with @userns, then
 * root of a new user and network namespace that maps it to @uid outside,
 * loopback up, as "unshare -Urn" would. 0, or the step that failed.
 */
int become_user(uid_t uid, bool userns);

#endif /* MBUFMUX_TEST_LIB_H */
