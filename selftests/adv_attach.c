// SPDX-License-Identifier: GPL-2.0
/*
 * Adversarial selftests of mbufmux_tcp.ko (the "mbufmux" TCP ULP), attach:
 * the CVE-2023-0461 flow, bad ULP names and pointers, bad pointers at
 * SOL_MBUFMUX and in send(), "tls" and "mbufmux" on one socket, non-TCP
 * sockets.
 *
 * The fixture, what the tests need and the environment they read: adv.h.
 */
#define _GNU_SOURCE
#include "adv.h"

/* The ULP's name (getsockopt TCP_ULP), "" if none or on error. */
static const char *ulp_of(int fd)
{
	static char name[32];
	socklen_t len = sizeof(name) - 1;

	memset(name, 0, sizeof(name));
	if (getsockopt(fd, IPPROTO_TCP, TCP_ULP, name, &len))
		return "";
	name[len] = '\0';
	return name;
}

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	return ti.tcpi_state;
}

/* Runs a command, output discarded: its exit code, or -1. */
static int run_cmd(char *const argv[])
{
	int status, fd;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * Two pages, the second inaccessible: a user pointer that runs into a
 * fault after @valid bytes is guard_ptr(valid).
 */
static char *guard_page;

static char *guard_ptr(size_t valid)
{
	long pg = sysconf(_SC_PAGESIZE);

	if (!guard_page) {
		guard_page = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (guard_page == MAP_FAILED ||
		    mprotect(guard_page + pg, pg, PROT_NONE))
			abort();
	}
	return guard_page + pg - valid;
}

/*
 * CVE-2023-0461: a ULP without clone() that reaches LISTEN shares its
 * context with every child. The exploit's flow (attach, connect(AF_UNSPEC),
 * listen, accept, close the child, use the parent) must be refused at some
 * step, here at the first: disconnecting. Whatever is refused, the socket
 * stays as it was and keeps working. After a reset (TCP_CLOSE) there is no
 * way back either; a socket that disconnected before attaching is refused
 * the ULP. If a step is wrongly allowed, the flow goes on as the exploit
 * would, so that a use-after-free shows in the kernel log.
 */
TEST_F_TIMEOUT(adv, cve_2023_0461, 120)
{
	struct sockaddr unspec = { .sa_family = AF_UNSPEC };
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	struct sockaddr_storage ss;
	struct mbufmux_info info;
	int f, fd, peer, c, cl, r;
	socklen_t len;
	char buf[16];

	for (f = 0; f < FAMILIES; f++) {
		fd = new_pair(_metadata, self, f, true, &peer);
		ASSERT_EQ(send(fd, "abc", 3, MSG_MORE), 3);

		EXPECT_EQ(connect(fd, &unspec, sizeof(unspec)), -1);
		EXPECT_EQ(errno, EOPNOTSUPP);
		r = listen(fd, 8);
		EXPECT_EQ(r, -1);
		EXPECT_EQ(errno, EINVAL);
		if (!r) {
			/* The exploit's next steps: a child, closed. */
			len = sizeof(ss);
			getsockname(fd, (struct sockaddr *)&ss, &len);
			cl = socket(ss.ss_family, SOCK_STREAM, 0);
			connect(cl, (struct sockaddr *)&ss, len);
			c = accept(fd, NULL, NULL);
			close(c);
			close(cl);
		}
		c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		EXPECT_EQ(c, -1);
		EXPECT_EQ(errno, EINVAL);
		if (c >= 0)
			close(c);

		/* The parent is intact: established, attached, staging. */
		EXPECT_EQ(tcp_state(fd), TCP_ESTABLISHED);
		EXPECT_STREQ(ulp_of(fd), ULP_NAME);
		ASSERT_EQ(info_get(fd, &info), 0);
		EXPECT_EQ(info.staged, 3U);
		ASSERT_EQ(send(fd, "de", 2, 0), 2);
		ASSERT_EQ(recv(peer, buf, 5, MSG_WAITALL), 5);
		EXPECT_EQ(memcmp(buf, "abcde", 5), 0);
		ASSERT_EQ(send(peer, "ok", 2, 0), 2);
		ASSERT_EQ(recv(fd, buf, 2, MSG_WAITALL), 2);

		/* Reset by the peer: TCP_CLOSE, still no way back. */
		ASSERT_EQ(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lin,
				     sizeof(lin)), 0);
		close(peer);
		EXPECT_TRUE(poll_one(fd, POLLIN, WAKE_MS) &
			    (POLLERR | POLLHUP));
		EXPECT_EQ(tcp_state(fd), TCP_CLOSE);
		EXPECT_EQ(connect(fd, &unspec, sizeof(unspec)), -1);
		EXPECT_EQ(listen(fd, 8), -1);
		EXPECT_EQ(connect(fd, (struct sockaddr *)&self->lsn[f].addr,
				  self->lsn[f].len), -1);
		EXPECT_EQ(attach(fd), -1);
		EXPECT_EQ(errno, EEXIST);
		close(fd);

		/* Disconnected first: the ULP is refused; TCP goes on. */
		fd = new_pair(_metadata, self, f, false, &peer);
		ASSERT_EQ(connect(fd, &unspec, sizeof(unspec)), 0);
		EXPECT_EQ(attach(fd), -1);
		EXPECT_EQ(errno, ENOTCONN);
		ASSERT_EQ(listen(fd, 8), 0);
		EXPECT_EQ(attach(fd), -1);
		EXPECT_EQ(errno, ENOTCONN);
		len = sizeof(ss);
		ASSERT_EQ(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
		cl = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ASSERT_EQ(connect(cl, (struct sockaddr *)&ss, len), 0);
		c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		ASSERT_GE(c, 0);
		EXPECT_STREQ(ulp_of(c), "");
		EXPECT_STREQ(ulp_of(fd), "");
		close(c);
		close(cl);
		close(fd);
		close(peer);
	}
}

/*
 * TCP_ULP names and pointers: optlen 0, NULL and wild pointers, a name
 * that runs into an unmapped page, a prefix, an over-long and an upper-case
 * name are refused and leave the socket without a ULP; then the name as
 * the kernel reads it (at most 15 bytes, up to a NUL) attaches: without
 * its NUL, followed by junk after the NUL, and with its NUL as the last
 * mapped byte.
 */
TEST_F_TIMEOUT(adv, ulp_names, 120)
{
	static const char junk[] = "mbufmux\0junk-junk-junk";
	int f, fd, fd2, fd3, peer, peer2, peer3;
	char *p;

	for (f = 0; f < FAMILIES; f++) {
		fd = new_pair(_metadata, self, f, false, &peer);

		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, ULP_NAME, 0),
			  -1);
		EXPECT_EQ(errno, EINVAL);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, NULL, 8), -1);
		EXPECT_EQ(errno, EFAULT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, (void *)8, 8),
			  -1);
		EXPECT_EQ(errno, EFAULT);
		p = guard_ptr(4);
		memcpy(p, "mbuf", 4);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, p, 8), -1);
		EXPECT_EQ(errno, EFAULT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "mbufmu", 6),
			  -1);
		EXPECT_EQ(errno, ENOENT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP,
				     "mbufmuxmbufmuxmbufmux", 22), -1);
		EXPECT_EQ(errno, ENOENT);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "MBUFMUX", 8),
			  -1);
		EXPECT_EQ(errno, ENOENT);
		EXPECT_STREQ(ulp_of(fd), "");
		EXPECT_EQ(info_flags(fd), ~0U);

		/* Its NUL the last byte before the unmapped page. */
		p = guard_ptr(sizeof(ULP_NAME));
		memcpy(p, ULP_NAME, sizeof(ULP_NAME));
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, p, 64), 0)
			TH_LOG("%s", strerror(errno));
		EXPECT_STREQ(ulp_of(fd), ULP_NAME);

		fd2 = new_pair(_metadata, self, f, false, &peer2);
		EXPECT_EQ(setsockopt(fd2, IPPROTO_TCP, TCP_ULP, ULP_NAME,
				     strlen(ULP_NAME)), 0);
		fd3 = new_pair(_metadata, self, f, false, &peer3);
		EXPECT_EQ(setsockopt(fd3, IPPROTO_TCP, TCP_ULP, junk,
				     sizeof(junk)), 0);

		/* All three work. */
		EXPECT_EQ(send(fd, "1", 1, 0), 1);
		EXPECT_EQ(send(fd2, "2", 1, MSG_MORE), 1);
		EXPECT_EQ(info_flags(fd2), MBUFMUX_F_HOLDS_BUF);
		EXPECT_EQ(send(fd3, "3", 1, 0), 1);
		close(fd);
		close(fd2);
		close(fd3);
		EXPECT_EQ(recv_to_eof(peer, NULL, 0, WAKE_MS), 1);
		EXPECT_EQ(recv_to_eof(peer2, NULL, 0, WAKE_MS), 1);
		EXPECT_EQ(recv_to_eof(peer3, NULL, 0, WAKE_MS), 1);
		close(peer);
		close(peer2);
		close(peer3);
	}
}

/*
 * Bad pointers and lengths where the ULP itself copies: MBUFMUX_INFO and
 * MBUFMUX_BLOCK with NULL, a pointer into an unmapped page, a negative
 * length; send() from NULL and from a buffer that runs into an unmapped
 * page (the part before the fault is sent, and only that). Every call
 * fails cleanly (EFAULT, EINVAL) or does what it can; the socket lock is
 * not left held, the staged bytes are not lost, the buffer goes back.
 */
TEST_F_TIMEOUT(adv, bad_pointers, 120)
{
	struct mbufmux_info info;
	char buf[64], *p;
	int fd, peer, val;
	socklen_t len;
	ssize_t n;

	fd = new_pair(_metadata, self, 0, true, &peer);
	ASSERT_EQ(send(fd, "st", 2, MSG_MORE), 2);

	len = sizeof(info);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, NULL, &len), -1);
	EXPECT_EQ(errno, EFAULT);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, NULL), -1);
	EXPECT_EQ(errno, EFAULT);
	len = -1;
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len), -1);
	EXPECT_EQ(errno, EINVAL);
	len = 0;
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len), 0);
	EXPECT_EQ(len, 0U);
	p = guard_ptr(8);
	len = sizeof(info);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, p, &len), -1);
	EXPECT_EQ(errno, EFAULT);
	len = sizeof(int);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, NULL, &len), -1);
	EXPECT_EQ(errno, EFAULT);
	EXPECT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, guard_ptr(2),
			     &len), -1);
	EXPECT_EQ(errno, EFAULT);

	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, NULL,
			     sizeof(int)), -1);
	EXPECT_EQ(errno, EFAULT);
	p = guard_ptr(2);
	memset(p, 0, 2);
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, p, sizeof(int)),
		  -1);
	EXPECT_EQ(errno, EFAULT);
	val = MBUFMUX_BLOCK_SEND;
	EXPECT_EQ(setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, 1 << 20),
		  0);
	val = -1;
	len = sizeof(val);
	ASSERT_EQ(getsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &val, &len), 0);
	EXPECT_EQ(val, MBUFMUX_BLOCK_SEND);

	/* The lock was released on every path: the socket still works. */
	ASSERT_EQ(info_get(fd, &info), 0);
	EXPECT_EQ(info.staged, 2U);
	EXPECT_EQ(info.flags, MBUFMUX_F_HOLDS_BUF);

	/* send() from NULL: EFAULT, and the staged bytes go out. */
	EXPECT_EQ(send(fd, NULL, 10, MSG_MORE), -1);
	EXPECT_EQ(errno, EFAULT);
	ASSERT_EQ(recv(peer, buf, 2, MSG_WAITALL), 2);
	EXPECT_EQ(memcmp(buf, "st", 2), 0);
	EXPECT_EQ(info_flags(fd), 0U);

	/*
	 * Eight readable bytes, then a fault. Nothing is staged, so they go
	 * straight to TCP, which copies a segment's worth or nothing: EFAULT,
	 * as on plain TCP. Staged behind other bytes, what was copied would be
	 * sent. Either way no byte arrives that send() did not count.
	 */
	p = guard_ptr(8);
	memcpy(p, "eight-ok", 8);
	n = send(fd, p, 100, 0);
	EXPECT_TRUE((n == -1 && errno == EFAULT) || (n > 0 && n <= 8))
		TH_LOG("%zd: %s", n, strerror(errno));
	if (n > 0) {
		ASSERT_EQ(recv(peer, buf, n, MSG_WAITALL), n);
		EXPECT_EQ(memcmp(buf, "eight-ok", n), 0);
	}
	EXPECT_EQ(poll_one(peer, POLLIN, QUIET_MS), 0);
	EXPECT_EQ(info_flags(fd), 0U);
	close(fd);
	EXPECT_EQ(recv_to_eof(peer, NULL, 0, WAKE_MS), 0);
	close(peer);
}

/*
 * One ULP per socket: "tls" on an attached socket, and "mbufmux" on a kTLS
 * socket, fail with EEXIST; each socket keeps its own ULP and works. Needs
 * tls.ko (the test VM has it).
 */
TEST_F_TIMEOUT(adv, tls_exclusive, 120)
{
	char *const modprobe[] = { "modprobe", "tls", NULL };
	struct mbufmux_info info;
	int f, fd, peer, t, tpeer;
	char buf[4];

	ASSERT_EQ(run_cmd(modprobe), 0) TH_LOG("modprobe tls failed");
	for (f = 0; f < FAMILIES; f++) {
		t = new_pair(_metadata, self, f, false, &tpeer);
		ASSERT_EQ(setsockopt(t, IPPROTO_TCP, TCP_ULP, "tls", 4), 0)
			TH_LOG("ULP tls: %s", strerror(errno));
		EXPECT_EQ(attach(t), -1);
		EXPECT_EQ(errno, EEXIST);
		EXPECT_STREQ(ulp_of(t), "tls");
		EXPECT_EQ(info_get(t, &info), -1);
		ASSERT_EQ(send(t, "tls", 3, 0), 3);
		ASSERT_EQ(recv(tpeer, buf, 3, MSG_WAITALL), 3);

		fd = new_pair(_metadata, self, f, true, &peer);
		EXPECT_EQ(setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 4), -1);
		EXPECT_EQ(errno, EEXIST);
		EXPECT_STREQ(ulp_of(fd), ULP_NAME);
		ASSERT_EQ(send(fd, "m", 1, MSG_MORE), 1);
		ASSERT_EQ(info_get(fd, &info), 0);
		EXPECT_EQ(info.staged, 1U);
		ASSERT_EQ(send(fd, "ux", 2, 0), 2);
		ASSERT_EQ(recv(peer, buf, 3, MSG_WAITALL), 3);
		EXPECT_EQ(memcmp(buf, "mux", 3), 0);
		close(fd);
		close(peer);
		close(t);
		close(tpeer);
	}
}

/*
 * Sockets that are not TCP cannot take a TCP ULP: AF_UNIX (stream, dgram,
 * a listener) and a raw IPPROTO_TCP socket; they keep working.
 */
TEST_F_TIMEOUT(adv, not_tcp_refused, 120)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM,
				     SOCK_SEQPACKET };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int sv[2], l, raw;
	char c;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(types); i++) {
		ASSERT_EQ(socketpair(AF_UNIX, types[i] | SOCK_CLOEXEC, 0, sv),
			  0);
		EXPECT_EQ(attach(sv[0]), -1);
		EXPECT_TRUE(errno == EOPNOTSUPP || errno == ENOPROTOOPT)
			TH_LOG("type %d: errno %d", types[i], errno);
		ASSERT_EQ(send(sv[0], "u", 1, 0), 1);
		ASSERT_EQ(recv(sv[1], &c, 1, 0), 1);
		close(sv[0]);
		close(sv[1]);
	}

	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ASSERT_GE(l, 0);
	/* An abstract address: nothing left in the file system. */
	snprintf(sun.sun_path + 1, sizeof(sun.sun_path) - 1, "mbufmux-%d",
		 getpid());
	ASSERT_EQ(bind(l, (struct sockaddr *)&sun, sizeof(sun)), 0);
	ASSERT_EQ(listen(l, 1), 0);
	EXPECT_EQ(attach(l), -1);
	close(l);

	raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
	ASSERT_GE(raw, 0);
	EXPECT_EQ(attach(raw), -1);
	EXPECT_EQ(errno, ENOPROTOOPT);
	close(raw);
}

TEST_HARNESS_MAIN
