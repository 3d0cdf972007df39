/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The fixture of the adversarial selftests of the "mbufmux" TCP
 * upper-layer protocol (mbufmux_tcp.ko), one program per topic
 * (adv_*.c, complementing ulp_*.c and send_*.c), and the helpers more
 * than one of them uses; the helpers that do not fail a test are in
 * lib/mbufmux_test_lib.h.
 *
 * Run as root with mbufmux.ko and mbufmux_tcp.ko loaded and debugfs
 * mounted; some tests unload mbufmux_tcp.ko and load it again from
 * $MBUFMUX_MODDIR (default /mbufmux, the test VM's) with the parameters it
 * had. Every test ends with the pool at rest: nothing in use, nobody
 * waiting, allocs == frees and waits == handoffs + cancels, no user's
 * share of the per-user cap left.
 *
 * Environment (the default, then the default on a debug kernel, one with
 * lockdep as make check-debug's, where everything runs 20 to 50 times
 * slower):
 *   MBUFMUX_RACE_ITERS   iterations of each race loop (2000; 300)
 *   MBUFMUX_RACE_SECS    time cap of each race loop, seconds (15; 45)
 *   MBUFMUX_PARKED       sockets parked at once in mass_close (10000; 2000)
 *   MBUFMUX_CYCLES       load/unload cycles in load_unload_race (50; 50)
 *   MBUFMUX_LOAD_SECS    length of params_under_load, seconds (5; 15)
 *   MBUFMUX_STRESS_SECS  length of random_stress, seconds (10; 60)
 *   MBUFMUX_SEED         seed of the random choices (logged by each test)
 *
 * Nothing asserts on elapsed time: timeouts are hang guards only.
 */
#ifndef MBUFMUX_ADV_H
#define MBUFMUX_ADV_H

#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>

#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "mbufmux_util.h"

#define NETNS_FILE	"/tmp/mbufmux-adv-netns"
#define CGROUP_MNT	"/tmp/mbufmux-adv-cgroup"

#define NOBODY		65534
#define CHUNK		(64 << 10)

/*
 * The pool at rest, its counters consistent over its whole life, and no
 * user's share of it left.
 */
static inline void expect_rest(struct __test_metadata *_metadata)
{
	struct pool_stats st;
	int ret;

	ret = wait_rest(&st, REST_MS);
	EXPECT_EQ(ret, 0)
		TH_LOG("pool not at rest: in_use %lld waiters %lld",
		       st.in_use, st.waiters);
	EXPECT_EQ(st.allocs, st.frees);
	EXPECT_EQ(st.waits, st.handoffs + st.cancels)
		TH_LOG("waits %lld handoffs %lld cancels %lld", st.waits,
		       st.handoffs, st.cancels);
	EXPECT_EQ(users_listed(), 0) TH_LOG("a user's share left behind");
}

static inline int module_restore(void)
{
	return module_load_params(&initial);
}

#define FAMILIES	2	/* the fixture's listeners: IPv4, IPv6 */

FIXTURE(adv)
{
	pid_t pid;			/* the test's process */
	struct lsn lsn[FAMILIES];	/* loopback listeners */
	struct lsn small;		/* one with a small receive buffer */
	bool saved;			/* the parameters are saved */
	long buf_size;
};

FIXTURE_SETUP(adv)
{
	int rcvbuf = 2048;
	struct pool_stats st;

	self->saved = false;
	self->pid = getpid();
	assert_initial(_metadata);
	if (!module_loaded("mbufmux_tcp")) {
		ASSERT_EQ(module_restore(), 0)
			TH_LOG("mbufmux_tcp.ko left unloaded by an earlier test");
		TH_LOG("mbufmux_tcp.ko was left unloaded: loaded it again");
	}
	self->buf_size = initial.buf_size;
	ASSERT_EQ(param_get("buf_size"), self->buf_size);
	ASSERT_EQ(params_write(&initial), 0);
	self->saved = true;
	ASSERT_EQ(wait_rest(&st, REST_MS), 0)
		TH_LOG("pool not at rest: in_use %lld waiters %lld",
		       st.in_use, st.waiters);

	ASSERT_EQ(lsn_open(&self->lsn[0], AF_INET, false), 0);
	ASSERT_EQ(lsn_open(&self->lsn[1], AF_INET6, false), 0)
		TH_LOG("no IPv6 listener: the kernel must have IPv6");
	ASSERT_EQ(lsn_open(&self->small, AF_INET, false), 0);
	ASSERT_EQ(setsockopt(self->small.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
			     sizeof(rcvbuf)), 0);
}

/*
 * Runs in the parent of the test's process, once that process, its
 * children and the sockets they had are gone. After a failed ASSERT, the
 * 6.12 harness built -O2 may run it in the test's own process instead (the
 * wrapper's fork() result does not survive its longjmp()), its children
 * still alive: the test has failed already, and the next setup restores
 * the parameters and waits for the pool, so nothing is checked then.
 */
FIXTURE_TEARDOWN_PARENT(adv)
{
	if (getpid() == self->pid)
		return;
	umount2(NETNS_FILE, MNT_DETACH);
	unlink(NETNS_FILE);
	if (!self->saved)
		return;
	if (!module_loaded("mbufmux_tcp")) {
		EXPECT_EQ(module_restore(), 0);
		EXPECT_TRUE(false) TH_LOG("the test left mbufmux_tcp unloaded");
	}
	EXPECT_EQ(params_write(&initial), 0);
	expect_rest(_metadata);
	EXPECT_EQ(param_get("buf_size"), self->buf_size);
}

/* A pair on listener @f (0: IPv4, 1: IPv6) of the fixture. */
static inline int new_pair(struct __test_metadata *_metadata,
			   struct _test_data_adv *self, int f, bool attach_it,
			   int *peer)
{
	return pair_on(_metadata, &self->lsn[f % FAMILIES], attach_it, peer);
}

/* Sets the pool's limits and the per-user cap. */
static inline void caps_set(struct __test_metadata *_metadata, long limit,
			    long reserve, long user_limit)
{
	ASSERT_EQ(limits_set(limit, reserve), 0);
	ASSERT_EQ(param_set("user_limit", user_limit), 0);
}

struct flow {
	int tx;
	int rx;
	uint32_t id;
	uint64_t sent;
	uint64_t rcvd;
	bool eof;
};

#define FLOWS_MAX	8

/*
 * A thread that drives byte-exact flows (attached sender, attached
 * receiver) with random chunks and random MSG_MORE until told to stop,
 * then shuts them down and reads them to the end.
 */
struct flower {
	pthread_t thread;
	struct flow fl[FLOWS_MAX];
	int n;
	unsigned int chunk;
	uint64_t seed;
	const bool *stop;
	char what[160];
};

static inline void *flower_fn(void *arg)
{
	struct flower *w = arg;
	struct pollfd pfd[2 * FLOWS_MAX];
	int i, k, n, done, flags;
	long long last = now_ms();
	char *buf = malloc(CHUNK);
	bool stopping = false;
	struct flow *f;
	ssize_t ret;
	size_t len;
	long bad;

	if (!buf) {
		snprintf(w->what, sizeof(w->what), "no memory");
		return NULL;
	}
	for (done = 0; done < w->n;) {
		if (!stopping && __atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
			stopping = true;
			last = now_ms();
			for (i = 0; i < w->n; i++)
				if (shutdown(w->fl[i].tx, SHUT_WR)) {
					snprintf(w->what, sizeof(w->what),
						 "flow %u: shutdown: %s",
						 w->fl[i].id, strerror(errno));
					goto out;
				}
		}
		for (i = 0, n = 0; i < w->n; i++) {
			pfd[n].fd = stopping ? -1 : w->fl[i].tx;
			pfd[n++].events = POLLOUT;
			pfd[n].fd = w->fl[i].eof ? -1 : w->fl[i].rx;
			pfd[n++].events = POLLIN;
		}
		poll(pfd, n, 20);
		for (k = 0; k < n; k++) {
			f = &w->fl[k / 2];
			if (pfd[k].revents & (POLLERR | POLLNVAL)) {
				snprintf(w->what, sizeof(w->what),
					 "flow %u: revents %#x", f->id,
					 pfd[k].revents);
				goto out;
			}
			if (!pfd[k].revents)
				continue;
			if (k & 1) {
				ret = recv(f->rx, buf, CHUNK, MSG_DONTWAIT);
				if (ret < 0 && errno == EAGAIN)
					continue;
				if (ret <= 0 && !(ret == 0 && stopping)) {
					snprintf(w->what, sizeof(w->what),
						 "flow %u: recv %zd: %s",
						 f->id, ret, strerror(errno));
					goto out;
				}
				if (!ret) {
					f->eof = true;
					done++;
					continue;
				}
				bad = check(buf, ret, f->id, f->rcvd);
				if (bad >= 0) {
					snprintf(w->what, sizeof(w->what),
						 "flow %u: wrong byte at %llu",
						 f->id, (unsigned long long)
						 (f->rcvd + bad));
					goto out;
				}
				f->rcvd += ret;
				last = now_ms();
				continue;
			}
			len = 1 + rnd(&w->seed) % w->chunk;
			flags = rnd(&w->seed) & 1 ? MSG_MORE : 0;
			fill(buf, len, f->id, f->sent);
			ret = send(f->tx, buf, len, flags | MSG_DONTWAIT);
			if (ret < 0 && errno == EAGAIN)
				continue;
			if (ret <= 0) {
				snprintf(w->what, sizeof(w->what),
					 "flow %u: send: %s", f->id,
					 strerror(errno));
				goto out;
			}
			f->sent += ret;
			last = now_ms();
		}
		if (stopping && now_ms() - last > 60000) {
			snprintf(w->what, sizeof(w->what),
				 "no progress for 60 s while finishing");
			goto out;
		}
	}
	for (i = 0; i < w->n; i++)
		if (w->fl[i].rcvd != w->fl[i].sent)
			snprintf(w->what, sizeof(w->what),
				 "flow %u: sent %llu, received %llu",
				 w->fl[i].id,
				 (unsigned long long)w->fl[i].sent,
				 (unsigned long long)w->fl[i].rcvd);
out:
	free(buf);
	return NULL;
}

/* @n flowers of @per flows each, every other one unprivileged. */
static inline void flowers_start(struct __test_metadata *_metadata,
				 struct _test_data_adv *self, struct flower *w,
				 int n, int per, unsigned int chunk,
				 const bool *stop, uint64_t seed)
{
	int i, j;

	for (i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].n = per;
		w[i].chunk = chunk;
		w[i].stop = stop;
		w[i].seed = seed + i * 0x9e3779b97f4a7c15ULL;
		ASSERT_EQ(net_admin(!(i & 1)), 0);
		for (j = 0; j < per; j++) {
			w[i].fl[j].id = i * FLOWS_MAX + j;
			w[i].fl[j].tx = new_pair(_metadata, self, j, true,
						 &w[i].fl[j].rx);
			ASSERT_EQ(attach(w[i].fl[j].rx), 0);
			ASSERT_EQ(set_nonblock(w[i].fl[j].tx), 0);
			ASSERT_EQ(set_nonblock(w[i].fl[j].rx), 0);
		}
		ASSERT_EQ(net_admin(true), 0);
		ASSERT_EQ(pthread_create(&w[i].thread, NULL, flower_fn, &w[i]),
			  0);
	}
}

/* Joins the flowers: every byte each flow sent arrived, or a failure. */
static inline void flowers_join(struct __test_metadata *_metadata,
				struct flower *w, int n, uint64_t *bytes)
{
	int i, j;

	*bytes = 0;
	for (i = 0; i < n; i++) {
		pthread_join(w[i].thread, NULL);
		EXPECT_STREQ(w[i].what, "");
		for (j = 0; j < w[i].n; j++) {
			*bytes += w[i].fl[j].rcvd;
			close(w[i].fl[j].tx);
			close(w[i].fl[j].rx);
		}
	}
}

/*
 * The process of user_pairs(): becomes the user, makes @n attached pairs
 * on a loopback listener of its own and passes them over @u, each
 * attached socket with its peer. 0, or the step that failed.
 */
static inline int user_child(uid_t uid, bool userns, int n, int u)
{
	int i, pair[2], step;
	struct lsn l;

	step = become_user(uid, userns);
	if (step)
		return step;
	if (lsn_open(&l, AF_INET, false))
		return 4;
	for (i = 0; i < n; i++) {
		pair[0] = lsn_pair(&l, &pair[1]);
		if (pair[0] < 0 || attach(pair[0]))
			return 5;
		if (send_fds(u, pair, 2))
			return 6;
	}
	return 0;
}

/*
 * @n attached loopback pairs of user @uid, made by a process of that user,
 * or by root of a user namespace mapped to @uid (@userns): the attached
 * sockets in @fds, their peers in @peers. The socket's owner and its
 * margin are set by then; the test's process drives them.
 */
static inline void user_pairs(struct __test_metadata *_metadata, uid_t uid,
			      bool userns, int n, int *fds, int *peers)
{
	pid_t pid, ppid = getpid();
	int u[2], pair[2], status, i;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, u), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		child_setup(ppid, u[0], -1);
		_exit(user_child(uid, userns, n, u[1]));
	}
	close(u[1]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0)
		TH_LOG("uid %u%s: step %d failed", uid,
		       userns ? " in a user namespace" : "",
		       WEXITSTATUS(status));
	for (i = 0; i < n; i++) {
		ASSERT_EQ(recv_fds(u[0], pair, 2), 0);
		fds[i] = pair[0];
		peers[i] = pair[1];
	}
	close(u[0]);
}

#endif /* MBUFMUX_ADV_H */
