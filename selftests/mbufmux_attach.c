// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_attach: attach one established TCP socket to the "mbufmux" ULP,
 * as a program does, and say what happened. For selftests/install.sh,
 * which checks that the kernel loads the installed modules on demand (for
 * root) and that an unprivileged program cannot make it.
 *
 *   mbufmux_attach [-u UID]
 *
 * -u UID: first drop to UID (its group too, no supplementary groups, no
 * capabilities), as an unprivileged program.
 *
 * Opens a loopback connection, calls setsockopt(TCP_ULP, "mbufmux") on the
 * connecting end and prints one word on stdout: "ok", or the errno's name
 * (e.g. "ENOENT"). On "ok", the socket must then report the ULP
 * (getsockopt TCP_ULP) and carry bytes to its peer.
 *
 * Exit: 0 attached, 1 setsockopt failed, 2 anything else failed (a
 * message on stderr).
 */
#define _GNU_SOURCE
#include <grp.h>

#include "mbufmux_test_lib.h"

static void drop_to(uid_t uid)
{
	if (setgroups(0, NULL) || setgid(uid) || setuid(uid))
		die("dropping privileges");
	if (getuid() != uid || geteuid() != uid)
		die("still privileged");
}

int main(int argc, char **argv)
{
	char name[16] = "", buf[4];
	socklen_t len = sizeof(name);
	int opt, cli, srv;
	char *end;
	long long uid;

	while ((opt = getopt(argc, argv, "u:")) != -1) {
		switch (opt) {
		case 'u':
			errno = 0;
			uid = strtoll(optarg, &end, 10);
			/* (uid_t)-1 is no user: setuid() would ignore it. */
			if (errno || end == optarg || *end || uid < 0 ||
			    uid >= (uid_t)-1) {
				fprintf(stderr, "mbufmux_attach: bad uid '%s'\n",
					optarg);
				return 2;
			}
			drop_to(uid);
			break;
		default:
			fprintf(stderr, "usage: %s [-u UID]\n", argv[0]);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "usage: %s [-u UID]\n", argv[0]);
		return 2;
	}

	if (tcp_pair(&cli, &srv))
		die("a loopback connection");
	if (attach(cli)) {
		printf("%s\n", strerrorname_np(errno) ?: "EUNKNOWN");
		return 1;
	}
	if (getsockopt(cli, IPPROTO_TCP, TCP_ULP, name, &len))
		die("getsockopt TCP_ULP");
	if (strcmp(name, ULP_NAME)) {
		fprintf(stderr, "mbufmux_attach: the socket's ULP is '%s'\n",
			name);
		return 2;
	}
	if (send(cli, "ping", 4, 0) != 4)
		die("send");
	if (recv(srv, buf, 4, MSG_WAITALL) != 4)
		die("recv");
	if (memcmp(buf, "ping", 4)) {
		fprintf(stderr, "mbufmux_attach: the peer got other bytes\n");
		return 2;
	}
	printf("ok\n");
	return 0;
}
