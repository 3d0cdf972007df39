/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mbufmux_tcp: the per-user cap (mbufmux_tcp_user.c), as the rest of the
 * ULP sees it.
 *
 * A socket the cap applies to is attached to its user's share with
 * mbtcp_user_attach(); it asks mbtcp_user_take() before it goes to the
 * pool, and mbtcp_user_put() gives its slot back once it has given the
 * pool its buffer, or its place in the queue, back. When the cap grants a
 * slot to a socket it parked, it calls mbtcp_user_granted(). For an
 * exempt socket, never attached, every call is a no-op.
 */
#ifndef _MBUFMUX_TCP_USER_H
#define _MBUFMUX_TCP_USER_H

#include <linux/compiler.h>
#include <linux/list.h>
#include <linux/types.h>
#include <linux/uidgid.h>

struct dentry;
struct mbufmux_info;
struct mbtcp_user;

/**
 * struct mbtcp_user_waiter - a socket under its user's cap
 * @user: the user's share, or NULL if the cap does not apply to the
 *	socket (exempt, or detached)
 * @node: on @user's FIFO while @parked
 * @parked_ns: when the socket was parked on @user's FIFO
 * @slot: counts against @user's cap: the socket holds a buffer or a place
 *	in the pool's queue, or was granted the right to take one (set under
 *	the cap's lock; cleared by the socket itself)
 * @parked: on @user's FIFO (under the cap's lock)
 *
 * Embedded in the socket's context, zeroed. The socket serialises its own
 * calls; @slot and @parked may be read locklessly. The socket's waits on
 * the FIFO are counted in its context (mbtcp_user_count()).
 */
struct mbtcp_user_waiter {
	struct mbtcp_user *user;
	struct list_head node;
	u64 parked_ns;
	bool slot;
	bool parked;
};

int mbtcp_user_attach(struct mbtcp_user_waiter *w, kuid_t uid);
void mbtcp_user_detach(struct mbtcp_user_waiter *w);
bool mbtcp_user_take(struct mbtcp_user_waiter *w);
void mbtcp_user_put(struct mbtcp_user_waiter *w);
bool __mbtcp_user_contended(const struct mbtcp_user *user);
void mbtcp_user_info(const struct mbtcp_user_waiter *w,
		     struct mbufmux_info *info);
void mbtcp_user_cap_changed(void);
void mbtcp_user_debugfs(struct dentry *dir);

/*
 * What the cap needs of the ULP (mbufmux_tcp_main.c): the buffers outside
 * the pool's reserve; to count a socket's wait on its user's FIFO in the
 * socket's statistics, when it is parked (@waits 1) and, before its slot
 * is published, when it is granted one (@wait_ns, the time it was
 * parked); and to be told that a parked socket was granted a slot. The
 * last two are called with the cap's lock held, bottom halves off: they
 * must not sleep.
 */
unsigned int mbtcp_unreserved(void);
void mbtcp_user_count(struct mbtcp_user_waiter *w, u64 waits, u64 wait_ns);
void mbtcp_user_granted(struct mbtcp_user_waiter *w);

/**
 * mbtcp_user_parked() - is the socket parked by its user's cap?
 * @w: the socket's place under the cap
 *
 * Context: any; a lockless snapshot.
 * Return: true while @w waits on its user's FIFO.
 */
static inline bool mbtcp_user_parked(const struct mbtcp_user_waiter *w)
{
	return READ_ONCE(w->parked);
}

/**
 * mbtcp_user_contended() - do sockets of the same user wait for a slot?
 * @w: the socket's place under the cap
 *
 * Context: any; a lockless snapshot. Free for an exempt socket.
 * Return: true if the cap has parked sockets of @w's user.
 */
static inline bool mbtcp_user_contended(const struct mbtcp_user_waiter *w)
{
	return w->user && __mbtcp_user_contended(w->user);
}

#endif /* _MBUFMUX_TCP_USER_H */
