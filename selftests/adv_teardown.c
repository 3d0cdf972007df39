// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP),
 * teardown: peer resets with bytes staged, 10,000 parked sockets closed at
 * once, network namespaces going away, rmmod with orphaned sockets,
 * load/unload cycles racing attaches.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

/*
 * A peer reset while bytes are staged (held by MSG_MORE, and behind a full
 * TCP send queue) and a socket is parked behind them, and a reset of a
 * parked socket's peer: the error shows (poll, send), the staged bytes are
 * dropped at close without a hang, the buffers come back and go to the
 * parked socket, nothing leaks.
 */
TEST_F_TIMEOUT(adv, peer_reset, 120)
{
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	int f, h, hp, b, bp, v, vp;
	struct mbufmux_info info;
	char buf[1000];
	short ev;

	for (f = 0; f < FAMILIES; f++) {
		ASSERT_EQ(limits_set(2, 0), 0);
		h = new_pair(_metadata, self, f, true, &hp);
		ASSERT_EQ(send(h, buf, sizeof(buf), MSG_MORE),
			  (ssize_t)sizeof(buf));
		/* Its peer's window shuts: b keeps its buffer. */
		b = lsn_pair(&self->small, &bp);
		ASSERT_GE(b, 0);
		ASSERT_EQ(attach(b), 0);
		ASSERT_GT(send_backlog(b, 9, 0), 0);
		ASSERT_GT(unsent_bytes(b), 0);
		ASSERT_EQ(info_flags(b), MBUFMUX_F_HOLDS_BUF);
		v = new_pair(_metadata, self, f, true, &vp);
		ASSERT_TRUE(park(v));

		/* Both holders' peers reset. */
		ASSERT_EQ(setsockopt(hp, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		ASSERT_EQ(setsockopt(bp, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		close(hp);
		close(bp);
		ev = poll_one(h, POLLOUT, WAKE_MS);
		EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("%#x", ev);
		ev = poll_one(b, POLLOUT, WAKE_MS);
		EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("%#x", ev);
		EXPECT_EQ(send(h, "x", 1, MSG_NOSIGNAL), -1);
		EXPECT_TRUE(errno == ECONNRESET || errno == EPIPE)
			TH_LOG("%s", strerror(errno));
		/*
		 * Dead, they let their buffers go at once, without the
		 * program's help: v is served before they are closed.
		 */
		EXPECT_EQ(wait_flags(h, ~0U, 0, WAKE_MS), 0U);
		EXPECT_EQ(wait_flags(b, ~0U, 0, WAKE_MS), 0U);
		ASSERT_TRUE(poll_one(v, POLLOUT, WAKE_MS) & POLLOUT);
		EXPECT_EQ(info_flags(v), MBUFMUX_F_HOLDS_BUF);
		ASSERT_EQ(info_get(h, &info), 0);
		EXPECT_EQ(info.staged, 0U);
		close(h);
		close(b);

		/* A parked socket whose peer resets, then served. */
		h = new_pair(_metadata, self, f, true, &hp);
		ASSERT_TRUE(hold(h));
		b = new_pair(_metadata, self, f, true, &bp);
		ASSERT_TRUE(park(b));
		ASSERT_EQ(setsockopt(bp, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		close(bp);
		ev = poll_one(b, POLLIN | POLLOUT, WAKE_MS);
		EXPECT_TRUE(ev & (POLLERR | POLLHUP)) TH_LOG("%#x", ev);
		EXPECT_EQ(send(b, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT), -1);
		EXPECT_TRUE(errno == ECONNRESET || errno == EPIPE)
			TH_LOG("%s", strerror(errno));
		/* b left the queue when it died: v's buffer goes to nobody. */
		EXPECT_EQ(wait_flags(b, ~0U, 0, WAKE_MS), 0U);
		ASSERT_EQ(send(v, "v", 1, 0), 1);
		ASSERT_TRUE(wait_pool(1, 0, WAKE_MS));
		close(b);
		close(h);
		close(v);
		EXPECT_EQ(recv_to_eof(vp, buf, sizeof(buf), WAKE_MS), 1);
		EXPECT_EQ(recv_to_eof(hp, buf, sizeof(buf), WAKE_MS), 1);
		close(vp);
		close(hp);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	}
}

/* Child of mass_close: a holder and @n parked sockets, then waits. */
static int park_many(const struct lsn *l, long n, int out, int in)
{
	int fd, peer, h, hp;
	long i;
	char c;

	h = lsn_pair(l, &hp);
	if (h < 0 || attach(h) || !hold(h))
		return 1;
	for (i = 0; i < n; i++) {
		fd = lsn_pair(&l[i % FAMILIES], &peer);
		if (fd < 0) {
			fprintf(stderr, "# pair %ld: %s\n", i, strerror(errno));
			return 2;
		}
		if (attach(fd) || !park(fd)) {
			fprintf(stderr, "# park %ld: %s\n", i, strerror(errno));
			return 3;
		}
	}
	if (write(out, "R", 1) != 1)
		return 4;
	/* The holder lets go: the head is handed the buffer. */
	if (read(in, &c, 1) != 1 || send(h, "r", 1, MSG_DONTWAIT) != 1 ||
	    write(out, "D", 1) != 1)
		return 5;
	pause();
	return 0;
}

/*
 * Many parked sockets (MBUFMUX_PARKED, 10,000; 2,000 on a debug kernel,
 * where 10,000 take 7 minutes) closed at once:
 * a process parks them behind one holder, which then lets its buffer go
 * to the first of them, and is killed: its exit closes them all, the one
 * with a handed buffer among them. Every waiter is cancelled or served,
 * the pool comes back to rest; the debugfs list showed them all.
 */
TEST_F_TIMEOUT(adv, mass_close, 900)
{
	long n = knob("MBUFMUX_PARKED", 10000, 2000), lines;
	struct pool_stats st0, st;
	int out[2], in[2], status;
	long long t0;
	pid_t pid, ppid;
	char c;

	ASSERT_EQ(raise_nofile(2 * n + 256), 0)
		TH_LOG("RLIMIT_NOFILE %ld: %s", 2 * n + 256, strerror(errno));
	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
	ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
	ASSERT_EQ(stats_read(&st0), 0);
	t0 = now_ms();
	ppid = getpid();
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		child_setup(ppid, out[0], in[1]);
		_exit(park_many(self->lsn, n, out[1], in[0]));
	}
	close(out[1]);
	close(in[0]);
	if (read(out[0], &c, 1) != 1) {
		waitpid(pid, &status, 0);
		ASSERT_TRUE(false) TH_LOG("the parking process failed: %#x",
					  status);
	}
	TH_LOG("%ld sockets parked in %lld ms", n, now_ms() - t0);
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.waiters, n);
	EXPECT_EQ(st.waits - st0.waits, n);
	EXPECT_EQ(st.in_use, 1);
	lines = waiters_read(NULL, 0);
	EXPECT_EQ(lines, n);

	ASSERT_EQ(write(in[1], "C", 1), 1);
	ASSERT_EQ(read(out[0], &c, 1), 1);
	t0 = now_ms();
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(wait_rest(&st, 4 * REST_MS), 0)
		TH_LOG("in_use %lld waiters %lld", st.in_use, st.waiters);
	TH_LOG("closed in %lld ms: %lld cancels, %lld handoffs",
	       now_ms() - t0, st.cancels - st0.cancels,
	       st.handoffs - st0.handoffs);
	EXPECT_EQ(st.cancels - st0.cancels + st.handoffs - st0.handoffs, n);
	EXPECT_EQ(waiters_read(NULL, 0), 0);
	close(out[0]);
	close(in[1]);
}

/*
 * The process in a network namespace: a backlogged socket and a holder
 * keep both buffers, three sockets are parked and a thread sleeps in a
 * blocking send.
 */
static void *blocked_send(void *arg)
{
	send(*(int *)arg, "b", 1, MSG_NOSIGNAL);
	return NULL;
}

static int netns_child(int out, int in)
{
	int i, fd, peer, b, h, bfd, rcvbuf = 2048;
	struct lsn l;
	pthread_t t;
	char c;

	if (unshare(CLONE_NEWNET) || lo_up() || lsn_open(&l, AF_INET, false))
		return 1;
	/*
	 * A small receive buffer: once its window is shut, nothing the peer
	 * acknowledges can make room for the 16 KiB staged behind it, so the
	 * backlogged socket keeps its buffer.
	 */
	if (setsockopt(l.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)))
		return 1;
	b = lsn_pair(&l, &peer);
	if (b < 0 || attach(b) || send_backlog(b, 3, 0) <= 0)
		return 2;
	h = lsn_pair(&l, &peer);
	if (h < 0 || attach(h) || !hold(h))
		return 3;
	for (i = 0; i < 3; i++) {
		fd = lsn_pair(&l, &peer);
		if (fd < 0 || attach(fd) || !park(fd))
			return 4;
	}
	bfd = lsn_pair(&l, &peer);
	if (bfd < 0 || attach(bfd) ||
	    pthread_create(&t, NULL, blocked_send, &bfd))
		return 5;
	if (write(out, "R", 1) != 1)
		return 6;
	read(in, &c, 1);
	return 0;
}

/*
 * A network namespace goes away with sockets holding and waiting for
 * buffers: its only process is killed (namespace freed with it); or the
 * namespace is pinned by a bind mount, as "ip netns add" does, and that is
 * removed ("ip netns del") after the process is killed, or before. Busybox
 * ip has no netns: the bind mount is what it would do. The pool comes back
 * to rest each time.
 */
TEST_F_TIMEOUT(adv, netns_teardown, 300)
{
	int i, out[2], in[2], status, fd;
	pid_t pid, ppid = getpid();
	char path[64], c;

	ASSERT_EQ(limits_set(2, 0), 0);
	for (i = 0; i < 6; i++) {
		ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
		ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			child_setup(ppid, out[0], in[1]);
			_exit(netns_child(out[1], in[0]));
		}
		close(out[1]);
		close(in[0]);
		if (read(out[0], &c, 1) != 1) {
			waitpid(pid, &status, 0);
			ASSERT_TRUE(false) TH_LOG("netns child: %#x", status);
		}
		ASSERT_TRUE(wait_pool(2, 4, WAKE_MS));
		if (i % 3) {
			fd = open(NETNS_FILE, O_CREAT | O_RDONLY | O_CLOEXEC,
				  0600);
			ASSERT_GE(fd, 0);
			close(fd);
			snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
			ASSERT_EQ(mount(path, NETNS_FILE, NULL, MS_BIND, NULL),
				  0) TH_LOG("%s", strerror(errno));
		}
		if (i % 3 == 2)
			ASSERT_EQ(umount2(NETNS_FILE, MNT_DETACH), 0);
		ASSERT_EQ(kill(pid, SIGKILL), 0);
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
		close(out[0]);
		close(in[1]);
		ASSERT_TRUE(wait_pool(0, 0, REST_MS)) TH_LOG("round %d", i);
		if (i % 3 == 1) {
			ASSERT_EQ(umount2(NETNS_FILE, MNT_DETACH), 0);
			sleep_ms(100);
		}
		unlink(NETNS_FILE);
		ASSERT_TRUE(wait_pool(0, 0, REST_MS));
	}
}

#define ORPHANS	8

/*
 * rmmod with orphaned sockets: attached sockets closed with their peers
 * not reading stay behind as FIN_WAIT1 orphans with data queued, each
 * holding a module reference and the pool buffer that covers their unsent
 * bytes; unloading is refused. Once they die (half of the peers read every byte and close,
 * every byte arriving; the other half reset) the module unloads cleanly,
 * and loads again.
 */
TEST_F_TIMEOUT(adv, rmmod_orphans, 300)
{
	int i, fd[ORPHANS], peer[ORPHANS], err;
	long total[ORPHANS];
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	long ref0, ref, got;
	struct pool_stats st;
	long long end;
	char *buf;

	ASSERT_EQ(access(module_ko(), R_OK), 0) TH_LOG("no %s", module_ko());
	ref0 = module_refcnt();
	ASSERT_GE(ref0, 0);
	for (i = 0; i < ORPHANS; i++) {
		/* A small window: what the buffer covers stays unsent. */
		fd[i] = lsn_pair(&self->small, &peer[i]);
		ASSERT_GE(fd[i], 0);
		ASSERT_EQ(attach(fd[i]), 0);
		total[i] = send_backlog_staged(fd[i], 100 + i);
		ASSERT_GT(total[i], 0);
	}
	EXPECT_EQ(module_refcnt(), ref0 + ORPHANS);
	for (i = 0; i < ORPHANS; i++)
		close(fd[i]);
	/* Each orphan keeps the buffer that covers its unsent bytes. */
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.in_use, ORPHANS);
	sleep_ms(50);
	ref = module_refcnt();
	EXPECT_EQ(ref, ref0 + ORPHANS) TH_LOG("orphans hold %ld", ref - ref0);
	EXPECT_GE(tcp_state_count(TCP_FIN_WAIT1), ORPHANS);

	err = syscall(SYS_delete_module, "mbufmux_tcp", O_NONBLOCK) ? errno
								    : 0;
	if (!err) {
		EXPECT_EQ(module_restore(), 0);
		ASSERT_TRUE(false) TH_LOG("unloaded under orphaned sockets");
	}
	EXPECT_TRUE(err == EWOULDBLOCK || err == EBUSY) TH_LOG("%d", err);
	EXPECT_TRUE(module_loaded("mbufmux_tcp"));

	buf = malloc(32 << 20);
	ASSERT_NE(buf, NULL);
	for (i = 0; i < ORPHANS; i++) {
		if (i & 1) {
			setsockopt(peer[i], SOL_SOCKET, SO_LINGER, &lin,
				   sizeof(lin));
		} else {
			got = recv_to_eof(peer[i], buf, 32 << 20,
					  4 * WAKE_MS);
			EXPECT_EQ(got, total[i]) TH_LOG("orphan %d", i);
			if (got > 0 && (size_t)got <= 32U << 20)
				EXPECT_EQ(check(buf, got, 100 + i, 0), -1);
		}
		close(peer[i]);
	}
	free(buf);
	end = now_ms() + REST_MS;
	while ((ref = module_refcnt()) != ref0 && now_ms() < end)
		sleep_ms(10);
	EXPECT_EQ(ref, ref0);
	ASSERT_EQ(module_unload(REST_MS), 0) TH_LOG("%s", strerror(errno));
	EXPECT_FALSE(module_loaded("mbufmux_tcp"));
	EXPECT_NE(access(DBG_DIR, F_OK), 0);
	EXPECT_NE(access(ULP_DBG_DIR, F_OK), 0);
	EXPECT_NE(access("/sys/kernel/slab/mbufmux_tcp", F_OK), 0);
	ASSERT_EQ(module_restore(), 0);
	fd[0] = new_pair(_metadata, self, 0, true, &peer[0]);
	ASSERT_EQ(send(fd[0], "x", 1, 0), 1);
	close(fd[0]);
	close(peer[0]);
}

struct attacher {
	const struct lsn *lsn;
	bool stop;
	long ok;
	long enoent;
	long other;
	int first_err;
};

static void *attacher_fn(void *arg)
{
	struct attacher *a = arg;
	int fd, peer;
	long n;

	for (n = 0; !__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE); n++) {
		fd = lsn_pair(&a->lsn[n % FAMILIES], &peer);
		if (fd < 0) {
			a->other++;
			a->first_err = a->first_err ?: errno;
			continue;
		}
		/* Mostly without CAP_NET_ADMIN: no request_module(). */
		net_admin(!(n % 16));
		if (!attach(fd)) {
			a->ok++;
			if (send(fd, "a", 1, MSG_MORE | MSG_DONTWAIT) != 1) {
				a->other++;
				a->first_err = a->first_err ?: errno;
			}
		} else if (errno == ENOENT) {
			a->enoent++;
		} else {
			a->other++;
			a->first_err = a->first_err ?: errno;
		}
		net_admin(true);
		close(fd);
		close(peer);
	}
	return NULL;
}

/*
 * Load/unload cycles of mbufmux_tcp.ko (MBUFMUX_CYCLES, default 50)
 * while another thread keeps attaching sockets (IPv4 and IPv6, the IPv6
 * proto built again each time) and taking a buffer: an attach succeeds on
 * the loaded module or fails with ENOENT, nothing else; the unload waits
 * for the attached sockets to go; both outcomes happen.
 */
TEST_F_TIMEOUT(adv, load_unload_race, 600)
{
	long cycles = knob("MBUFMUX_CYCLES", 50, 50), c;
	uint64_t seed = test_seed(_metadata);
	struct attacher a = {};
	pthread_t t;
	int err;

	ASSERT_EQ(access(module_ko(), R_OK), 0) TH_LOG("no %s", module_ko());
	a.lsn = self->lsn;
	ASSERT_EQ(pthread_create(&t, NULL, attacher_fn, &a), 0);
	for (c = 0; c < cycles; c++) {
		sleep_ms(rnd(&seed) % 20);
		err = module_unload(REST_MS);
		if (err)
			break;
		sleep_ms(rnd(&seed) % 10);
		err = module_restore();
		if (err)
			break;
	}
	__atomic_store_n(&a.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	if (!module_loaded("mbufmux_tcp"))
		EXPECT_EQ(module_restore(), 0);
	ASSERT_EQ(err, 0) TH_LOG("cycle %ld: %s", c, strerror(-err));
	TH_LOG("%ld cycles: %ld attached, %ld ENOENT, %ld other", cycles,
	       a.ok, a.enoent, a.other);
	EXPECT_EQ(a.other, 0) TH_LOG("first error: %s",
				     strerror(a.first_err));
	EXPECT_GT(a.ok, 0);
	EXPECT_GT(a.enoent, 0);
}

TEST_HARNESS_MAIN
