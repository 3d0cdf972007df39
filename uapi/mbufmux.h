/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mbufmux - what userspace sees of the "mbufmux" TCP upper-layer protocol.
 *
 * Attach:  setsockopt(fd, IPPROTO_TCP, TCP_ULP, "mbufmux", sizeof("mbufmux"));
 * Then:    getsockopt(fd, SOL_MBUFMUX, MBUFMUX_INFO, &info, &len);
 *          setsockopt(fd, SOL_MBUFMUX, MBUFMUX_BLOCK, &mode, sizeof(int));
 */
#ifndef _UAPI_LINUX_MBUFMUX_H
#define _UAPI_LINUX_MBUFMUX_H

#include <linux/const.h>
#include <linux/types.h>

/* The socket option level of an attached socket ("MB"). */
#define SOL_MBUFMUX		0x4d42

/* Options at SOL_MBUFMUX */
#define MBUFMUX_INFO		1	/* get: struct mbufmux_info */
#define MBUFMUX_BLOCK		2	/* get/set: int, enum mbufmux_block */

/* What a parked socket stops doing. */
enum mbufmux_block {
	MBUFMUX_BLOCK_BOTH = 0,	/* send and receive (default) */
	MBUFMUX_BLOCK_SEND = 1,	/* only send, the direction that needs it */
};

/* mbufmux_info.flags */
#define MBUFMUX_F_HOLDS_BUF	_BITUL(0)	/* the socket holds a buffer */
#define MBUFMUX_F_PARKED	_BITUL(1)	/* queued, waiting for one */
#define MBUFMUX_F_USER_CAP	_BITUL(2)	/* parked by the per-user cap */

/**
 * struct mbufmux_info - the state of one attached socket
 * @flags: MBUFMUX_F_*
 * @block: the blocking mode, enum mbufmux_block
 * @buf_size: size of the pool's buffers, bytes
 * @staged: bytes accepted by send() and still in the buffer
 * @waits: times the socket was parked
 * @handoffs: buffers handed to it after a wait
 * @wait_ns: total time spent parked until a handoff (or, when parked by
 *	the per-user cap, until a slot was granted), nanoseconds
 *
 * Shorter optlen values get a truncated copy (the leading fields).
 */
struct mbufmux_info {
	__u32 flags;
	__u32 block;
	__u32 buf_size;
	__u32 staged;
	__u64 waits;
	__u64 handoffs;
	__u64 wait_ns;
};

#endif /* _UAPI_LINUX_MBUFMUX_H */
