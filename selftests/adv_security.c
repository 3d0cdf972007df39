// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP),
 * security: no stale bytes, the reserve out of unprivileged reach (a non-
 * root user, and one in a user namespace), read-only debugfs, memory
 * charged to the socket's cgroup.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

/* Sends @n bytes of 0xa5 with MSG_MORE, filling most of a buffer. */
static bool stage_secret(int fd, size_t n)
{
	char *buf = malloc(n);
	bool ok;

	if (!buf)
		return false;
	memset(buf, 0xa5, n);
	ok = send(fd, buf, n, MSG_MORE) == (ssize_t)n;
	free(buf);
	return ok;
}

/* The next socket to hold the buffer stages one byte: only that goes. */
static void expect_only(struct __test_metadata *_metadata, int b, int bp)
{
	struct mbufmux_info info;
	char buf[64];

	ASSERT_EQ(send(b, "B", 1, MSG_MORE | MSG_DONTWAIT), 1);
	ASSERT_EQ(info_get(b, &info), 0);
	EXPECT_EQ(info.staged, 1U);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);
	ASSERT_EQ(send(b, "b", 1, 0), 1);
	ASSERT_EQ(recv(bp, buf, 2, MSG_WAITALL), 2);
	EXPECT_EQ(memcmp(buf, "Bb", 2), 0);
	EXPECT_EQ(poll_one(bp, POLLIN, QUIET_MS), 0);
}

/*
 * A buffer never shows one socket's bytes to another: socket A fills most
 * of a buffer with 0xa5 and lets it go, back to the slab or handed
 * directly to a parked socket B (closed or flushed); B then stages one
 * byte, MBUFMUX_INFO counts one, and B's peer gets B's bytes only.
 *
 * What this proves: no path of the ULP sends bytes it did not stage.
 * What it cannot prove: that the pool zeroes its buffers (DESIGN's rule,
 * which matters to any other consumer of mbufmux.ko): userspace never sees
 * a buffer's unstaged bytes. init_on_alloc=0 (make check-debug) keeps the
 * slab from zeroing for the pool; the check itself belongs in
 * test_mbufmux.ko.
 */
TEST_F_TIMEOUT(adv, no_stale_bytes, 120)
{
	size_t n = self->buf_size - 1, i;
	int a, ap, b, bp, round;
	ssize_t ret;
	char cmdline[4096] = "";
	char *buf;

	read_text("/proc/cmdline", cmdline, sizeof(cmdline));
	TH_LOG("init_on_alloc=0 %s on the kernel command line",
	       strstr(cmdline, "init_on_alloc=0") ? "is" : "is NOT");

	buf = malloc(n);
	ASSERT_NE(buf, NULL);
	for (round = 0; round < 3; round++) {
		ASSERT_EQ(limits_set(round ? 1 : initial.limit, 0), 0);
		a = new_pair(_metadata, self, round, true, &ap);
		b = new_pair(_metadata, self, round, true, &bp);
		ASSERT_TRUE(stage_secret(a, n));
		if (round) {
			/* Handed over: A flushes (1) or closes (2). */
			ASSERT_TRUE(park(b));
			ret = round == 1 ? send(a, "", 0, 0) : close(a);
			ASSERT_EQ(ret, 0);
			ASSERT_TRUE(poll_one(b, POLLOUT, WAKE_MS) & POLLOUT);
		} else {
			/* Back to the slab, then taken again. */
			ASSERT_EQ(send(a, "", 0, 0), 0);
			ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		}
		expect_only(_metadata, b, bp);
		if (round != 2)
			close(a);
		ASSERT_EQ(recv_to_eof(ap, buf, n, WAKE_MS), (long)n);
		for (i = 0; i < n && buf[i] == (char)0xa5; i++)
			;
		ASSERT_EQ(i, n) TH_LOG("A's byte %zu is %#x", i, buf[i]);
		close(ap);
		close(b);
		close(bp);
	}
	free(buf);
}

/*
 * The reserve is out of unprivileged reach: with limit 4 and reserve 2 (and
 * a per-user cap out of the way), the sockets of nobody, and of root of a
 * user namespace mapped to nobody, get two buffers and park the third on
 * the pool; a root socket still gets one; a buffer coming back within the
 * reserve does not go to the unprivileged waiter (its margin, in debugfs,
 * is the reserve), only lowering the reserve serves it.
 */
TEST_F_TIMEOUT(adv, reserve_unprivileged, 120)
{
	int userns, u[3], up[3], p, pp;
	char buf[4096];

	for (userns = 0; userns < 2; userns++) {
		ASSERT_EQ(limits_set(4, 2), 0);
		ASSERT_EQ(param_set("user_limit", 4), 0);
		user_pairs(_metadata, NOBODY, userns, 3, u, up);
		ASSERT_TRUE(hold(u[0]));
		ASSERT_TRUE(hold(u[1]));
		ASSERT_TRUE(park(u[2]));
		ASSERT_TRUE(wait_pool(2, 1, WAKE_MS));
		ASSERT_GT(read_text(DBG_DIR "waiters", buf, sizeof(buf)), 0);
		EXPECT_NE(strstr(buf, "margin=2 "), NULL) TH_LOG("%s", buf);

		p = new_pair(_metadata, self, userns, true, &pp);
		ASSERT_TRUE(hold(p));
		ASSERT_TRUE(wait_pool(3, 1, WAKE_MS));
		ASSERT_EQ(send(p, "r", 1, 0), 1);
		sleep_ms(50);
		ASSERT_TRUE(wait_pool(2, 1, WAKE_MS));
		EXPECT_EQ(info_flags(u[2]), MBUFMUX_F_PARKED);
		ASSERT_EQ(param_set("reserve", 0), 0);
		ASSERT_TRUE(wait_pool(3, 0, WAKE_MS));
		EXPECT_EQ(info_flags(u[2]), MBUFMUX_F_HOLDS_BUF);

		close_pairs(u, up, 3);
		close(p);
		close(pp);
		ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
		TH_LOG("%s: the reserve stayed out of reach",
		       userns ? "root in a user namespace" : "nobody");
	}
}

/* In a child running as nobody: the files it must not write. */
static int nobody_writes(void)
{
	static const char * const files[] = {
		PARAM_DIR "limit", PARAM_DIR "reserve", PARAM_DIR "buf_size",
		PARAM_DIR "user_limit", DBG_DIR "stats", DBG_DIR "waiters",
		USERS_FILE, DBG_ROOT "pools",
	};
	size_t i;
	int fd;

	if (become_user(NOBODY, false))
		return 100;
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		fd = open(files[i], O_WRONLY | O_CLOEXEC);
		if (fd >= 0 || errno != EACCES)
			return 1 + i;
	}
	/* Parameters are readable, debugfs is not. */
	fd = open(PARAM_DIR "limit", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 20;
	close(fd);
	fd = open(DBG_DIR "stats", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		return 21;
	return 0;
}

/*
 * debugfs files are read-only (0444): root cannot write them either (no
 * write method), and they stay as they were; nobody cannot open them at
 * all, nor write the parameters (0644, buf_size 0444).
 */
TEST_F_TIMEOUT(adv, debugfs_readonly, 120)
{
	static const char * const files[] = {
		DBG_DIR "stats", DBG_DIR "waiters", USERS_FILE,
		DBG_ROOT "pools",
	};
	static const struct {
		const char *name;
		unsigned int mode;
	} params[] = {
		{ "limit", 0644 }, { "reserve", 0644 }, { "buf_size", 0444 },
		{ "user_limit", 0644 },
	};
	struct pool_stats st0, st;
	char path[128];
	struct stat sb;
	int fd, status;
	pid_t pid, ppid;
	size_t i;

	ASSERT_EQ(stats_read(&st0), 0);
	for (i = 0; i < ARRAY_SIZE(files); i++) {
		ASSERT_EQ(stat(files[i], &sb), 0) TH_LOG("%s", files[i]);
		EXPECT_TRUE(S_ISREG(sb.st_mode));
		EXPECT_EQ(sb.st_mode & 07777, 0444U) TH_LOG("%s", files[i]);
		/* Root may open it for writing, never write it. */
		fd = open(files[i], O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			EXPECT_EQ(write(fd, "in_use 99\n", 10), -1)
				TH_LOG("%s", files[i]);
			close(fd);
		} else {
			EXPECT_EQ(errno, EACCES) TH_LOG("%s", files[i]);
		}
	}
	for (i = 0; i < ARRAY_SIZE(params); i++) {
		snprintf(path, sizeof(path), PARAM_DIR "%s", params[i].name);
		ASSERT_EQ(stat(path, &sb), 0);
		EXPECT_EQ(sb.st_mode & 07777, params[i].mode)
			TH_LOG("%s", path);
	}
	ASSERT_EQ(stats_read(&st), 0);
	EXPECT_EQ(st.in_use, st0.in_use);
	EXPECT_EQ(st.limit, st0.limit);

	ppid = getpid();
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		child_setup(ppid, -1, -1);
		_exit(nobody_writes());
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(WEXITSTATUS(status), 0)
		TH_LOG("as nobody: check %d failed", WEXITSTATUS(status));
}

static long long cg_current(const char *cg)
{
	char path[128];

	snprintf(path, sizeof(path), CGROUP_MNT "/%s/memory.current", cg);
	return read_number(path);
}

static int cg_enter(const char *cg)
{
	char path[128], pid[32];

	snprintf(path, sizeof(path), CGROUP_MNT "%s%s/cgroup.procs",
		 *cg ? "/" : "", cg);
	snprintf(pid, sizeof(pid), "%d\n", getpid());
	return write_text(path, pid);
}

#define CG_BYTES	(2 << 20)

/* An empty send: a socket that holds an empty buffer gives it back. */
static bool give_back(int fd)
{
	return !send(fd, "", 0, 0);
}

static bool holds_buf(int fd)
{
	return info_flags(fd) == MBUFMUX_F_HOLDS_BUF;
}

/* How many of the @n sockets @fds @op succeeds on. */
static long count_ok(const int *fds, long n, bool (*op)(int fd))
{
	long i, ok = 0;

	for (i = 0; i < n; i++)
		ok += op(fds[i]);
	return ok;
}

/*
 * cgroup2 with the memory controller, cgroups mbx-a and mbx-b, and 2 * n
 * socket pairs made in mbx-a, for about CG_BYTES of buffers; the process
 * is then in mbx-b.
 *
 * cgroup2 is mounted in a mount namespace of the test's own, gone with it.
 * The two cgroups are left behind, empty: removing them would switch the
 * kernel's socket accounting off again (memcg_sockets_enabled_key) at
 * some later time, from an RCU callback, patching the text of the TCP
 * stack while later tests run. Under qemu's TCG that patching has crashed
 * the guest ("Oops: int3" in sk_forced_mem_schedule()).
 */
struct cg_setup {
	long n;
	long long bytes;
	int *fd;
	int *peer;
};

static void cg_setup(struct __test_metadata *_metadata,
		     struct _test_data_adv *self, struct cg_setup *cg)
{
	static const char * const cgroups[] = { "mbx-a", "mbx-b" };
	char path[128];
	size_t k;
	long i;

	cg->n = (CG_BYTES + self->buf_size - 1) / self->buf_size;
	if (cg->n > 2000)
		cg->n = 2000;
	cg->bytes = cg->n * self->buf_size;
	cg->fd = calloc(2 * cg->n, sizeof(int));
	cg->peer = calloc(2 * cg->n, sizeof(int));
	ASSERT_TRUE(cg->fd && cg->peer);
	ASSERT_EQ(raise_nofile(4 * cg->n + 256), 0);

	ASSERT_EQ(unshare(CLONE_NEWNS), 0) TH_LOG("%s", strerror(errno));
	ASSERT_EQ(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	mkdir(CGROUP_MNT, 0755);
	ASSERT_EQ(mount("none", CGROUP_MNT, "cgroup2", 0, NULL), 0)
		TH_LOG("cannot mount cgroup2: %s", strerror(errno));
	ASSERT_EQ(write_text(CGROUP_MNT "/cgroup.subtree_control", "+memory"),
		  0) TH_LOG("no memory controller");
	for (k = 0; k < ARRAY_SIZE(cgroups); k++) {
		snprintf(path, sizeof(path), CGROUP_MNT "/%s", cgroups[k]);
		ASSERT_TRUE(!mkdir(path, 0755) || errno == EEXIST)
			TH_LOG("%s: %s", path, strerror(errno));
	}
	ASSERT_EQ(cg_enter("mbx-a"), 0);
	for (i = 0; i < 2 * cg->n; i++)
		cg->fd[i] = new_pair(_metadata, self, i, true, &cg->peer[i]);
	ASSERT_EQ(cg_enter("mbx-b"), 0);
	sleep_ms(100);
}

static void cg_cleanup(struct __test_metadata *_metadata,
		       struct cg_setup *cg)
{
	close_pairs(cg->fd, cg->peer, 2 * cg->n);
	ASSERT_EQ(cg_enter(""), 0);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	free(cg->fd);
	free(cg->peer);
}

/*
 * Memory is charged to the socket's cgroup: sockets created in cgroup A
 * take their buffers while the process is in cgroup B, directly (send)
 * and through the wait list (parked, then served by a limit raised from
 * B): A's memory.current grows by about the buffers' size, B's does not;
 * giving them back uncharges A.
 */
TEST_F_TIMEOUT(adv, memcg_charge, 300)
{
	long long a0, b0, a1, b1;
	struct cg_setup cg;
	int *fd;
	long n;

	cg_setup(_metadata, self, &cg);
	fd = cg.fd;
	n = cg.n;

	/* Taken by send() from B. */
	ASSERT_EQ(limits_set(2 * n + 1, 0), 0);
	a0 = cg_current("mbx-a");
	b0 = cg_current("mbx-b");
	ASSERT_EQ(count_ok(fd, n, hold), n);
	a1 = cg_current("mbx-a");
	b1 = cg_current("mbx-b");
	TH_LOG("%ld buffers (%lld bytes) sent from B: A +%lld, B +%lld", n,
	       cg.bytes, a1 - a0, b1 - b0);
	EXPECT_GE(a1 - a0, cg.bytes / 2);
	EXPECT_LT(b1 - b0, cg.bytes / 4);
	ASSERT_EQ(count_ok(fd, n, give_back), n);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));

	/* Parked in A, served by a limit raised from B. */
	ASSERT_EQ(limits_set(1, 0), 0);
	ASSERT_TRUE(hold(fd[0]));
	ASSERT_EQ(count_ok(fd + 1, n, park), n);
	a0 = cg_current("mbx-a");
	b0 = cg_current("mbx-b");
	ASSERT_EQ(limits_set(n + 1, 0), 0);
	ASSERT_TRUE(wait_pool(n + 1, 0, WAKE_MS));
	a1 = cg_current("mbx-a");
	b1 = cg_current("mbx-b");
	TH_LOG("%ld waiters served by a limit raised from B: A +%lld, B +%lld",
	       n, a1 - a0, b1 - b0);
	EXPECT_GE(a1 - a0, cg.bytes / 2);
	EXPECT_LT(b1 - b0, cg.bytes / 4);

	/* The served buffers are empty: giving them back sends nothing. */
	ASSERT_EQ(count_ok(fd + 1, n, give_back), n);
	ASSERT_TRUE(wait_pool(1, 0, WAKE_MS));
	a0 = cg_current("mbx-a");
	TH_LOG("given back: A -%lld", a1 - a0);
	EXPECT_GE(a1 - a0, cg.bytes / 2);
	cg_cleanup(_metadata, &cg);
}

/*
 * No buffer kept in the pool: drop_caches runs every shrinker, the pool's
 * included, which gives them all back.
 */
static void drop_kept(struct __test_metadata *_metadata)
{
	ASSERT_EQ(write_text("/proc/sys/vm/drop_caches", "2"), 0);
	ASSERT_EQ(stat_get("kept"), 0);
}

/*
 * A buffer handed on is charged to the socket it is handed to: holders
 * made in cgroup B let their buffers go to waiters made in cgroup A,
 * which later give them back (empty, nothing sent): that uncharges A, not
 * B. (B's sockets are charged for the bytes they send meanwhile, which is
 * why nothing is measured across the handoff itself.)
 *
 * The pool keeps buffers that come back, per CPU, for their cgroup: the
 * handoffs keep some of B's (each waiter got a buffer charged to A
 * instead), and A's give-back would push them out of full slots,
 * uncharging B by up to 8 buffers a CPU, which with 64 KiB buffers is
 * the bound itself. So none is kept across the measure, before or after.
 */
TEST_F_TIMEOUT(adv, memcg_handoff, 300)
{
	long long a0, b0, a1, b1;
	struct cg_setup cg;
	int *fd;
	long i, n;

	cg_setup(_metadata, self, &cg);
	fd = cg.fd;
	n = cg.n;

	/* The holders, made again in B. */
	ASSERT_EQ(limits_set(n, 0), 0);
	for (i = 0; i < n; i++) {
		close(fd[n + i]);
		close(cg.peer[n + i]);
		fd[n + i] = new_pair(_metadata, self, i, true, &cg.peer[n + i]);
	}
	ASSERT_EQ(count_ok(fd + n, n, hold), n);
	ASSERT_EQ(count_ok(fd, n, park), n);
	ASSERT_EQ(count_ok(fd + n, n, give_back), n);
	ASSERT_TRUE(wait_pool(n, 0, WAKE_MS));
	ASSERT_EQ(count_ok(fd, n, holds_buf), n);

	drop_kept(_metadata);
	a0 = cg_current("mbx-a");
	b0 = cg_current("mbx-b");
	ASSERT_EQ(count_ok(fd, n, give_back), n);
	ASSERT_TRUE(wait_pool(0, 0, WAKE_MS));
	drop_kept(_metadata);
	a1 = cg_current("mbx-a");
	b1 = cg_current("mbx-b");
	TH_LOG("%ld buffers handed from B's sockets to A's, given back by A's: A -%lld, B -%lld",
	       n, a0 - a1, b0 - b1);
	EXPECT_GE(a0 - a1, cg.bytes / 2)
		TH_LOG("the handed buffers were not charged to A");
	EXPECT_LT(b0 - b1, cg.bytes / 4)
		TH_LOG("the handed buffers stayed charged to B, which allocated them");
	cg_cleanup(_metadata, &cg);
}

TEST_HARNESS_MAIN
