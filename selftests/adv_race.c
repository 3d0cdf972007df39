// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP), races,
 * looped: two attaches, close against attach, close against the handoff's
 * work, a release on one CPU against the waiter's close,
 * poll/setsockopt/close on one file from several threads, attached sockets
 * passed over SCM_RIGHTS by a process that exits.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

static void pin_cpu(int cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % n, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void spin(unsigned long n)
{
	while (n--)
		__asm__ __volatile__("" ::: "memory");
}

#define RACE_MAX	4

struct race;

struct race_arg {
	struct race *r;
	int who;
};

/*
 * Worker threads that run one step each per iteration, released together
 * by a barrier after a random spin of up to @jitter, pinned to alternate
 * CPUs; the main thread sets the iteration up, may act itself, and checks.
 */
struct race {
	pthread_barrier_t go;
	pthread_barrier_t end;
	pthread_t thr[RACE_MAX];
	struct race_arg arg[RACE_MAX];
	int nthr;
	void (*op)(struct race *r, int who);
	bool stop;
	unsigned long jitter;
	uint64_t seed[RACE_MAX + 1];
	int fd[16];
	int nfd;
	long ret[RACE_MAX];
	int err[RACE_MAX];
	int closed;
	long count[RACE_MAX];
	pthread_mutex_t lock;
	int nbad;
	char bad[160];
};

static void race_bad(struct race *r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (!r->nbad++) {
		va_start(ap, fmt);
		vsnprintf(r->bad, sizeof(r->bad), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
}

static void *race_thread(void *arg)
{
	struct race_arg *a = arg;
	struct race *r = a->r;

	pin_cpu(a->who);
	for (;;) {
		pthread_barrier_wait(&r->go);
		if (__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
			break;
		spin(rnd(&r->seed[a->who]) % (r->jitter + 1));
		r->op(r, a->who);
		pthread_barrier_wait(&r->end);
	}
	return NULL;
}

static int race_start(struct race *r, int nthr,
		      void (*op)(struct race *r, int who),
		      unsigned long jitter, uint64_t seed)
{
	int i;

	/* Pinned to alternate CPUs, the threads race for real. */
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
		fprintf(stderr, "# the races need two CPUs (the test VM has two)\n");
		return -1;
	}
	memset(r, 0, sizeof(*r));
	r->nthr = nthr;
	r->op = op;
	r->jitter = jitter;
	for (i = 0; i <= RACE_MAX; i++)
		r->seed[i] = seed + 0x9e3779b97f4a7c15ULL * (i + 1);
	pthread_mutex_init(&r->lock, NULL);
	pthread_barrier_init(&r->go, NULL, nthr + 1);
	pthread_barrier_init(&r->end, NULL, nthr + 1);
	for (i = 0; i < nthr; i++) {
		r->arg[i].r = r;
		r->arg[i].who = i;
		if (pthread_create(&r->thr[i], NULL, race_thread, &r->arg[i]))
			return -1;
	}
	return 0;
}

/* One iteration; @main_op, if any, runs in the main thread meanwhile. */
static void race_once(struct race *r, void (*main_op)(struct race *r))
{
	pthread_barrier_wait(&r->go);
	if (main_op) {
		spin(rnd(&r->seed[RACE_MAX]) % (r->jitter + 1));
		main_op(r);
	}
	pthread_barrier_wait(&r->end);
}

static void race_stop(struct race *r)
{
	int i;

	__atomic_store_n(&r->stop, true, __ATOMIC_RELEASE);
	pthread_barrier_wait(&r->go);
	for (i = 0; i < r->nthr; i++)
		pthread_join(r->thr[i], NULL);
	pthread_barrier_destroy(&r->go);
	pthread_barrier_destroy(&r->end);
}

static int race_iters(void)
{
	return knob("MBUFMUX_RACE_ITERS", 2000, 300);
}

static long long race_deadline(void)
{
	return now_ms() + knob("MBUFMUX_RACE_SECS", 15, 45) * 1000;
}

/* A race loop must have run often enough to mean something. */
static void race_done(struct __test_metadata *_metadata, int i, int iters)
{
	TH_LOG("%d of %d iterations", i, iters);
	ASSERT_GE(i, iters < 100 ? iters : 100)
		TH_LOG("too few iterations within MBUFMUX_RACE_SECS");
}

/*
 * The end of iteration @i of a loop whose holder lives on (its peer @hp):
 * the waiter's peer @vp closed, the pool back at rest, and now and then
 * the holder's peer drained of the bytes the iterations left it.
 */
static void race_next(struct __test_metadata *_metadata, int i, int vp,
		      int hp)
{
	close(vp);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS))
		TH_LOG("iteration %d: pool not at rest", i);
	if (!(i % 256))
		drain(hp);
}

static void op_attach(struct race *r, int who)
{
	r->ret[who] = attach(r->fd[0]);
	r->err[who] = errno;
}

/*
 * Two threads attach one socket at once, on two CPUs: exactly one
 * succeeds, the other gets EEXIST, and the socket works.
 */
TEST_F_TIMEOUT(adv, race_attach_twice, 300)
{
	int i, iters = race_iters(), peer, ok;
	long long end = race_deadline();
	struct race r;
	char c;

	ASSERT_EQ(race_start(&r, 2, op_attach, 2000, test_seed(_metadata)),
		  0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		r.fd[0] = new_pair(_metadata, self, i, false, &peer);
		race_once(&r, NULL);
		ok = !r.ret[0] + !r.ret[1];
		ASSERT_EQ(ok, 1) TH_LOG("iteration %d: %ld/%d %ld/%d", i,
					r.ret[0], r.err[0], r.ret[1],
					r.err[1]);
		ASSERT_EQ(r.err[r.ret[0] ? 0 : 1], EEXIST);
		ASSERT_EQ(send(r.fd[0], "a", 1, 0), 1);
		ASSERT_EQ(recv(peer, &c, 1, MSG_WAITALL), 1);
		close(r.fd[0]);
		close(peer);
	}
	race_stop(&r);
	race_done(_metadata, i, iters);
}

static void op_close_attach(struct race *r, int who)
{
	if (who) {
		r->ret[1] = close(r->fd[0]);
		return;
	}
	r->ret[0] = attach(r->fd[0]);
	r->err[0] = errno;
	r->ret[2] = -2;
	if (!r->ret[0]) {
		r->ret[2] = send(r->fd[0], "s", 1,
				 MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL);
		r->err[2] = errno;
	}
}

/*
 * close() racing setsockopt(TCP_ULP) and a MSG_MORE send on the same file:
 * the attach succeeds or finds the descriptor gone (EBADF), and so does
 * the send; a byte that send() accepted reaches the peer before the end
 * of file, whichever thread's call released the socket.
 */
TEST_F_TIMEOUT(adv, race_close_attach, 300)
{
	int i, iters = race_iters(), peer;
	long long end = race_deadline();
	long attached = 0, sent = 0, got;
	struct race r;
	char c;

	ASSERT_EQ(race_start(&r, 2, op_close_attach, 20000,
			     test_seed(_metadata)), 0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		r.fd[0] = new_pair(_metadata, self, i, false, &peer);
		race_once(&r, NULL);
		ASSERT_EQ(r.ret[1], 0);
		ASSERT_TRUE(!r.ret[0] || r.err[0] == EBADF)
			TH_LOG("attach: %s", strerror(r.err[0]));
		ASSERT_TRUE(r.ret[2] != -1 || r.err[2] == EBADF)
			TH_LOG("send: %s", strerror(r.err[2]));
		attached += !r.ret[0];
		sent += r.ret[2] == 1;
		got = recv_to_eof(peer, &c, 1, WAKE_MS);
		ASSERT_EQ(got, r.ret[2] == 1 ? 1 : 0)
			TH_LOG("iteration %d: sent %ld, peer got %ld", i,
			       r.ret[2], got);
		close(peer);
	}
	race_stop(&r);
	TH_LOG("attached before the close %ld times, sent %ld", attached,
	       sent);
	race_done(_metadata, i, iters);
}

#define VICTIMS	4

static void op_release_close(struct race *r, int who)
{
	int order[VICTIMS], i, j, t;

	if (!who) {
		/* fd[0]: the holder; ret[0]: how it lets go. */
		switch (r->ret[0]) {
		case 0:
			r->ret[1] = send(r->fd[0], "r", 1, MSG_DONTWAIT);
			break;
		case 1:
			r->ret[1] = shutdown(r->fd[0], SHUT_WR);
			break;
		default:
			r->ret[1] = close(r->fd[0]);
			break;
		}
		r->err[1] = errno;
		return;
	}
	/* The parked sockets, closed in a random order. */
	for (i = 0; i < VICTIMS; i++)
		order[i] = i;
	for (i = VICTIMS - 1; i > 0; i--) {
		j = rnd(&r->seed[who]) % (i + 1);
		t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (i = 0; i < VICTIMS; i++) {
		spin(rnd(&r->seed[who]) % 2000);
		close(r->fd[1 + order[i]]);
	}
}

/*
 * Close while the wake-up work is queued or running: a holder lets its
 * buffer go (a send, shutdown(SHUT_WR) or close, each handing the buffer
 * to the head of the queue and queueing its work) while the parked
 * sockets are closed, in a random order, on the other CPU. Every handed
 * buffer comes back, every wait ends in a handoff or a cancel, and the
 * holder's bytes arrive.
 */
TEST_F_TIMEOUT(adv, race_close_handoff, 300)
{
	int i, k, iters = race_iters(), hp, vp[VICTIMS];
	long long end = race_deadline();
	struct pool_stats st0, st;
	long got, how[3] = {};
	struct race r;
	char buf[4];

	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(stats_read(&st0), 0);
	ASSERT_EQ(race_start(&r, 2, op_release_close, 20000,
			     test_seed(_metadata)), 0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		r.fd[0] = new_pair(_metadata, self, i, true, &hp);
		ASSERT_TRUE(hold(r.fd[0]));
		for (k = 0; k < VICTIMS; k++) {
			r.fd[1 + k] = new_pair(_metadata, self, i + k, true,
					       &vp[k]);
			ASSERT_TRUE(park(r.fd[1 + k])) TH_LOG("victim %d", k);
		}
		r.ret[0] = rnd(&r.seed[RACE_MAX]) % 3;
		how[r.ret[0]]++;
		race_once(&r, NULL);
		ASSERT_EQ(r.ret[1], r.ret[0] ? 0 : 1)
			TH_LOG("release %ld: %s", r.ret[0],
			       strerror(r.err[1]));
		if (r.ret[0] != 2)
			close(r.fd[0]);
		got = recv_to_eof(hp, buf, sizeof(buf), WAKE_MS);
		ASSERT_EQ(got, r.ret[0] ? 1 : 2);
		EXPECT_EQ(memcmp(buf, "hr", got), 0);
		close(hp);
		for (k = 0; k < VICTIMS; k++) {
			ASSERT_EQ(recv_to_eof(vp[k], NULL, 0, WAKE_MS), 0);
			close(vp[k]);
		}
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS))
			TH_LOG("iteration %d: pool not at rest", i);
	}
	race_stop(&r);
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.waits - st0.waits, (long long)i * VICTIMS);
	EXPECT_EQ(st.waits - st0.waits, st.handoffs - st0.handoffs +
		  st.cancels - st0.cancels);
	TH_LOG("released by send %ld, shutdown %ld, close %ld; %lld handoffs, %lld cancels",
	       how[0], how[1], how[2], st.handoffs - st0.handoffs,
	       st.cancels - st0.cancels);
	race_done(_metadata, i, iters);
}

static void op_release_vs_waiter(struct race *r, int who)
{
	if (!who) {
		/* The waiter, on one CPU: sleeps parked, then closes. */
		r->ret[0] = send(r->fd[1], "w", 1, MSG_NOSIGNAL);
		r->err[0] = errno;
		r->ret[2] = close(r->fd[1]);
		return;
	}
	/* The holder, on the other: lets its buffer go, at a random time. */
	usleep(r->ret[3]);
	r->ret[1] = send(r->fd[0], "r", 1, MSG_DONTWAIT);
	r->err[1] = errno;
}

/*
 * A release on one CPU while the waiter closes on the other: the waiter
 * sleeps in a blocking send() on a dry pool with a short SO_SNDTIMEO,
 * then closes at once, whether it was handed the buffer or timed out;
 * the holder lets the buffer go at a random time around that timeout, so
 * the handoff and its work meet the close and the cancel. A byte that
 * send() accepted arrives; the holder gets its buffer back in the next
 * iteration.
 */
TEST_F_TIMEOUT(adv, race_release_vs_waiter, 300)
{
	int i, iters = race_iters(), hp, vp;
	long long end = race_deadline();
	long handed = 0, timedout = 0;
	struct timeval tv;
	struct race r;
	char buf[4];

	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(race_start(&r, 2, op_release_vs_waiter, 2000,
			     test_seed(_metadata)), 0);
	r.fd[0] = new_pair(_metadata, self, 0, true, &hp);
	for (i = 0; i < iters && now_ms() < end; i++) {
		ASSERT_TRUE(hold(r.fd[0])) TH_LOG("iteration %d", i);
		r.fd[1] = new_pair(_metadata, self, i, true, &vp);
		tv.tv_sec = 0;
		tv.tv_usec = 100 + rnd(&r.seed[RACE_MAX]) % 2000;
		r.ret[3] = rnd(&r.seed[RACE_MAX]) % (2 * tv.tv_usec);
		ASSERT_EQ(setsockopt(r.fd[1], SOL_SOCKET, SO_SNDTIMEO, &tv,
				     sizeof(tv)), 0);
		race_once(&r, NULL);
		ASSERT_EQ(r.ret[1], 1) TH_LOG("%s", strerror(r.err[1]));
		ASSERT_EQ(r.ret[2], 0);
		ASSERT_TRUE(r.ret[0] == 1 || r.err[0] == EAGAIN)
			TH_LOG("waiter: %ld %s", r.ret[0], strerror(r.err[0]));
		handed += r.ret[0] == 1;
		timedout += r.ret[0] != 1;
		ASSERT_EQ(recv_to_eof(vp, buf, 1, WAKE_MS), r.ret[0] == 1);
		race_next(_metadata, i, vp, hp);
	}
	race_stop(&r);
	close(r.fd[0]);
	close(hp);
	TH_LOG("the waiter was served %ld times, timed out %ld times",
	       handed, timedout);
	race_done(_metadata, i, iters);
}

static void op_fd_threads(struct race *r, int who)
{
	struct mbufmux_info info;
	struct epoll_event ev;
	int v = r->fd[1], val;
	socklen_t len;
	long n = 0;
	short re;

	switch (who) {
	case 0:
		/* poll() and epoll_wait() until the file is gone. */
		while (!__atomic_load_n(&r->closed, __ATOMIC_ACQUIRE)) {
			re = poll_one(v, POLLIN | POLLOUT, !(n % 8));
			if (re & POLLNVAL)
				break;
			if (re & POLLERR)
				race_bad(r, "poll: POLLERR %#x", re);
			epoll_wait(r->fd[2], &ev, 1, !(n % 8));
			n++;
		}
		break;
	case 1:
		/* MBUFMUX_BLOCK set and read back, MBUFMUX_INFO. */
		while (!__atomic_load_n(&r->closed, __ATOMIC_ACQUIRE)) {
			val = n & 1;
			if (setsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
				       sizeof(val))) {
				if (errno != EBADF)
					race_bad(r, "set BLOCK: %s",
						 strerror(errno));
				break;
			}
			len = sizeof(val);
			val = -1;
			if (getsockopt(v, SOL_MBUFMUX, MBUFMUX_BLOCK, &val,
				       &len)) {
				if (errno != EBADF)
					race_bad(r, "get BLOCK: %s",
						 strerror(errno));
				break;
			}
			if (val != (n & 1))
				race_bad(r, "BLOCK %d read back as %d",
					 (int)(n & 1), val);
			if (info_get(v, &info)) {
				if (errno != EBADF)
					race_bad(r, "INFO: %s",
						 strerror(errno));
				break;
			}
			if ((info.flags & MBUFMUX_F_HOLDS_BUF) &&
			    (info.flags & MBUFMUX_F_PARKED))
				race_bad(r, "INFO: parked and holding");
			n++;
		}
		break;
	default:
		/* The holder lets go: its buffer is handed to v. */
		if (send(r->fd[0], "r", 1, MSG_DONTWAIT) != 1)
			race_bad(r, "release: %s", strerror(errno));
		n = 1;
		break;
	}
	r->count[who] += n;
}

static void main_close(struct race *r)
{
	close(r->fd[1]);
	__atomic_store_n(&r->closed, 1, __ATOMIC_RELEASE);
}

/*
 * poll/epoll, setsockopt/getsockopt and close on one parked socket from
 * several threads, while its buffer is handed to it: the sockets options
 * stay coherent (the mode reads back as set, never parked and holding at
 * once), poll shows no error, and the close, whichever thread's call ends
 * up releasing the file, leaves the pool with only the holder's buffer.
 */
TEST_F_TIMEOUT(adv, race_fd_threads, 300)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET };
	int i, iters = race_iters(), hp, vp;
	long long end = race_deadline();
	struct race r;

	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(race_start(&r, 3, op_fd_threads, 50000,
			     test_seed(_metadata)), 0);
	r.fd[0] = new_pair(_metadata, self, 0, true, &hp);
	r.fd[2] = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_GE(r.fd[2], 0);
	for (i = 0; i < iters && now_ms() < end; i++) {
		ASSERT_TRUE(hold(r.fd[0])) TH_LOG("iteration %d", i);
		r.fd[1] = new_pair(_metadata, self, i, true, &vp);
		ASSERT_TRUE(park(r.fd[1]));
		ev.data.fd = r.fd[1];
		ASSERT_EQ(epoll_ctl(r.fd[2], EPOLL_CTL_ADD, r.fd[1], &ev), 0);
		r.closed = 0;
		race_once(&r, main_close);
		ASSERT_EQ(r.nbad, 0) TH_LOG("iteration %d: %s", i, r.bad);
		ASSERT_EQ(recv_to_eof(vp, NULL, 0, WAKE_MS), 0);
		race_next(_metadata, i, vp, hp);
	}
	race_stop(&r);
	close(r.fd[0]);
	close(r.fd[2]);
	close(hp);
	TH_LOG("%ld polls, %ld option rounds", r.count[0], r.count[1]);
	race_done(_metadata, i, iters);
}

enum scm_end { SCM_RECEIVED, SCM_PURGED, SCM_GC, SCM_ENDS };

/*
 * The sender: connects, attaches, stages @staged bytes (or parks if the
 * pool is dry), passes the socket over @u, exits. SCM_GC: passes it in a
 * unix socket cycle only the garbage collector can free.
 */
static int scm_sender(const struct lsn *l, int u, enum scm_end how,
		      bool parked, int staged)
{
	char buf[256];
	int fd, sv[2];

	fd = socket(l->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&l->addr, l->len) ||
	    attach(fd))
		return 1;
	if (parked) {
		if (!park(fd))
			return 2;
	} else {
		fill(buf, staged, 7, 0);
		if (send(fd, buf, staged, MSG_MORE) != staged)
			return 3;
	}
	if (how == SCM_GC) {
		/* sv[1] travels in its own queue, with the socket. */
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
		    send_fds(sv[0], (int []){ fd, sv[1] }, 2))
			return 4;
		return write(u, "G", 1) == 1 ? 0 : 5;
	}
	return send_fds(u, &fd, 1) ? 6 : 0;
}

/*
 * An attached socket passed over SCM_RIGHTS by a process that exits at
 * once: received, used and closed by the other process; or never received
 * (the receiving socket closed with it in flight); or lost in a unix
 * socket cycle, closed by the garbage collector from a kworker. Parked, or
 * with bytes staged by the sender: the staged bytes (and the receiver's)
 * arrive before the end of file, every wait ends.
 */
TEST_F_TIMEOUT(adv, scm_rights_exit, 300)
{
	int i, iters = race_iters() / 8, u[2], fd, peer, hp, h, status;
	long long end = race_deadline();
	struct mbufmux_info info;
	bool parked;
	uint64_t seed = test_seed(_metadata);
	enum scm_end how;
	char buf[300], c;
	int staged, n[SCM_ENDS] = {};
	pid_t pid, ppid;
	long got;

	h = new_pair(_metadata, self, 0, true, &hp);
	for (i = 0; i < iters && now_ms() < end; i++) {
		how = i % SCM_ENDS;
		parked = (i / SCM_ENDS) & 1;
		staged = 1 + rnd(&seed) % 255;
		n[how]++;
		if (parked) {
			ASSERT_EQ(limits_set(1, 0), 0);
			ASSERT_TRUE(hold(h));
		}
		ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				     u), 0);
		ppid = getpid();
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			child_setup(ppid, u[1], -1);
			_exit(scm_sender(&self->lsn[i % FAMILIES], u[0],
					 how, parked, staged));
		}
		close(u[0]);
		peer = accept4(self->lsn[i % FAMILIES].fd, NULL, NULL,
			       SOCK_CLOEXEC);
		ASSERT_GE(peer, 0);
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		ASSERT_EQ(status, 0) TH_LOG("sender failed: %#x", status);

		if (how == SCM_RECEIVED) {
			ASSERT_EQ(recv_fds(u[1], &fd, 1), 0);
			ASSERT_EQ(info_get(fd, &info), 0);
			EXPECT_EQ(info.flags, parked ? MBUFMUX_F_PARKED :
				  MBUFMUX_F_HOLDS_BUF);
			EXPECT_EQ(info.staged, parked ? 0U : (unsigned int)staged);
			if (parked) {
				ASSERT_EQ(send(h, "r", 1, 0), 1);
				ASSERT_TRUE(poll_one(fd, POLLOUT, WAKE_MS) &
					    POLLOUT);
			}
			ASSERT_EQ(send(fd, "!", 1, 0), 1);
			close(fd);
		} else if (how == SCM_GC) {
			ASSERT_EQ(read(u[1], &c, 1), 1);
		}
		close(u[1]);
		if (parked && how != SCM_RECEIVED) {
			/* The socket went away parked: nothing to hand. */
			ASSERT_TRUE(wait_pool(1, 0, WAKE_MS));
			ASSERT_EQ(send(h, "r", 1, 0), 1);
		}
		got = recv_to_eof(peer, buf, sizeof(buf), 4 * WAKE_MS);
		ASSERT_EQ(got, (parked ? 0 : staged) +
			  (how == SCM_RECEIVED ? 1 : 0))
			TH_LOG("iteration %d (%d, parked %d): got %ld", i, how,
			       parked, got);
		if (!parked)
			EXPECT_EQ(check(buf, staged, 7, 0), -1);
		close(peer);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		if (parked)
			ASSERT_EQ(params_write(&initial), 0);
		if (!(i % 64))
			drain(hp);
	}
	close(h);
	close(hp);
	TH_LOG("received %d, purged in flight %d, collected %d", n[0], n[1],
	       n[2]);
	race_done(_metadata, i, iters);
}

TEST_HARNESS_MAIN
