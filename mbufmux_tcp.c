// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_tcp - the "mbufmux" TCP upper-layer protocol.
 *
 * Any established TCP socket can draw its mux buffer from one shared,
 * bounded pool (mbufmux.ko, pool "tcp"):
 *
 *	setsockopt(fd, IPPROTO_TCP, TCP_ULP, "mbufmux", sizeof("mbufmux"));
 *
 * send() copies user data into the socket's buffer, taken from the pool on
 * demand, and pushes it to TCP; MSG_MORE holds it back until the buffer is
 * full or a send without MSG_MORE comes. What TCP cannot take yet is pushed
 * from the write-space callback, through a work item. An empty buffer goes
 * back to the pool.
 *
 * A socket that needs a buffer when the pool has none is parked on the
 * pool's FIFO: poll reports it neither readable nor writable (or only not
 * writable, with MBUFMUX_BLOCK_SEND), blocking calls sleep, non-blocking
 * ones fail with EAGAIN. When a buffer is handed to it, the waiter's
 * callback wakes its poll waiters and poll recomputes the real readiness.
 *
 * Per-user cap. Sockets of one user (the socket's owner, sk_uid) hold at
 * most user_limit buffers or places in the pool's queue at once; the next
 * one parks on the user's own FIFO, in front of the pool, exactly as if it
 * were parked on the pool, until one of the user's sockets gives its
 * buffer back. Sockets attached with CAP_NET_ADMIN (those allowed the
 * reserve) are exempt.
 *
 * This module knows sockets and uses only the exported API of mbufmux.ko,
 * as any other consumer would.
 *
 * Locking: the staged bytes and the buffer they live in belong to the
 * socket lock (lock_sock); the per-user counts and FIFOs to
 * mbufmux_users_lock. The waiter's callback takes no socket lock, so
 * the close path may cancel it at any point; the tx work takes the socket
 * lock, so it is disabled only after the lock is released.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/debugfs.h>
#include <linux/hashtable.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/poll.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uio.h>
#include <linux/version.h>
#include <linux/workqueue.h>
#include <net/inet_common.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "mbufmux.h"
#include "uapi/mbufmux.h"

/*
 * 6.1 compatibility. MSG_SPLICE_PAGES (6.5) replaced ->sendpage, which
 * sendfile() used before; disable_work_sync() arrived in 6.10.
 */
#ifdef MSG_SPLICE_PAGES
#define MSG_SPLICE_PAGES_COMPAT		MSG_SPLICE_PAGES
#else
#define MSG_SPLICE_PAGES_COMPAT		0
#define MBUFMUX_HAVE_SENDPAGE
#endif
#if KERNEL_VERSION(6, 10, 0) <= LINUX_VERSION_CODE
#define MBUFMUX_HAVE_DISABLE_WORK
#endif
#ifdef MSG_SENDPAGE_NOTLAST
#define MSG_SENDPAGE_NOTLAST_COMPAT	MSG_SENDPAGE_NOTLAST
#else
#define MSG_SENDPAGE_NOTLAST_COMPAT	0
#endif

/* Module parameters */

#define MBUFMUX_TCP_BUF_SIZE_DEFAULT	16384
#define MBUFMUX_TCP_LIMIT_DEFAULT	64

static unsigned int buf_size = MBUFMUX_TCP_BUF_SIZE_DEFAULT;
module_param(buf_size, uint, 0444);
MODULE_PARM_DESC(buf_size, "size of each socket's buffer, bytes (set at load, 64 to 1048576)");

static unsigned int limit = MBUFMUX_TCP_LIMIT_DEFAULT;
static unsigned int reserve;
static struct mbufmux_pool *tcp_pool;

static void mbufmux_users_grant_all(void);

/*
 * limit and reserve are checked against each other and applied to the
 * pool at once; kernel_param_lock serialises their writers.
 */
static int mbufmux_tcp_set_limits(unsigned int new_limit,
				  unsigned int new_reserve)
{
	int err;

	if (!new_limit || new_limit > MBUFMUX_LIMIT_MAX ||
	    new_reserve >= new_limit)
		return -EINVAL;
	err = mbufmux_pool_set_limits(tcp_pool, new_limit, new_reserve);
	if (err)
		return err;
	WRITE_ONCE(limit, new_limit);
	WRITE_ONCE(reserve, new_reserve);
	/* The automatic per-user cap follows them. */
	mbufmux_users_grant_all();
	return 0;
}

static int mbufmux_tcp_param_set(const char *val, const struct kernel_param *kp)
{
	unsigned int v;
	int err;

	/* kstrtouint() refuses signs, junk and overflow: nothing clamps. */
	err = kstrtouint(val, 0, &v);
	if (err)
		return err;
	/* At load, the pair is checked once both are known (module init). */
	if (!tcp_pool) {
		*(unsigned int *)kp->arg = v;
		return 0;
	}
	if (kp->arg == &limit)
		err = mbufmux_tcp_set_limits(v, reserve);
	else
		err = mbufmux_tcp_set_limits(limit, v);
	if (err)
		pr_warn_ratelimited("%s=%u refused: need 0 <= reserve < limit <= %u\n",
				    kp->name, v, MBUFMUX_LIMIT_MAX);
	return err;
}

static const struct kernel_param_ops mbufmux_tcp_param_ops = {
	.set = mbufmux_tcp_param_set,
	.get = param_get_uint,
};

module_param_cb(limit, &mbufmux_tcp_param_ops, &limit, 0644);
MODULE_PARM_DESC(limit, "most buffers in use at once (1 to 16777216; raising it wakes parked sockets)");
module_param_cb(reserve, &mbufmux_tcp_param_ops, &reserve, 0644);
MODULE_PARM_DESC(reserve, "buffers only CAP_NET_ADMIN sockets may take (below limit)");

/* Per-socket context */

/**
 * struct mbufmux_sock - an attached socket
 * @waiter: holds the socket's buffer, or its place in the pool's queue
 * @tx_work: pushes staged bytes once TCP has room (write-space callback)
 * @sk: the socket
 * @sk_proto: TCP's proto, restored at close
 * @sk_write_space: TCP's write-space callback, restored at close
 * @head: first staged byte in the buffer (under the socket lock)
 * @tail: end of the staged bytes (under the socket lock)
 * @margin: the pool margin of this socket's requests
 * @user: the owner's share of the pool, or NULL if the socket is exempt
 * @user_node: on @user's FIFO while parked by the cap (mbufmux_users_lock)
 * @block: enum mbufmux_block
 * @hold: the last send had MSG_MORE: keep the staged bytes for more
 * @closing: the socket is being closed; the tx work does nothing
 * @user_slot: counts against @user's cap: the socket holds a buffer or a
 *	place in the pool's queue, or was granted the right to take one
 *	(set under mbufmux_users_lock; cleared by the socket itself)
 * @user_parked: on @user's FIFO (under mbufmux_users_lock)
 * @user_parked_ns: when the socket was parked on @user's FIFO
 * @user_waits: times it was parked there (added to MBUFMUX_INFO's @waits)
 * @user_wait_ns: time it spent there until a slot was granted
 * @rcu: frees the context after the readers of icsk_ulp_data
 */
struct mbufmux_sock {
	struct mbufmux_waiter waiter;
	struct work_struct tx_work;
	struct sock *sk;
	struct proto *sk_proto;
	void (*sk_write_space)(struct sock *sk);
	unsigned int head;
	unsigned int tail;
	unsigned int margin;
	struct mbufmux_user *user;
	struct list_head user_node;
	u8 block;
	bool hold;
	bool closing;
	bool user_slot;
	bool user_parked;
	u64 user_parked_ns;
	u64 user_waits;
	u64 user_wait_ns;
	struct rcu_head rcu;
};

enum { MBUFMUX_IPV4, MBUFMUX_IPV6, MBUFMUX_NUM_PROTS };

static struct proto mbufmux_prots[MBUFMUX_NUM_PROTS];
static struct proto_ops mbufmux_proto_ops[MBUFMUX_NUM_PROTS];
/* The TCPv6 proto and ops our copies were built from; tcp_prot for v4. */
static const struct proto *saved_tcpv6_prot;
static const struct proto_ops *saved_tcpv6_ops;
static DEFINE_MUTEX(tcpv6_prot_mutex);
static struct workqueue_struct *mbufmux_tcp_wq;

static struct mbufmux_sock *mbufmux_sk_ctx(const struct sock *sk)
{
	/* Attached sockets only: the ops below are reached through it. */
	return (__force struct mbufmux_sock *)
		rcu_dereference_protected(inet_csk(sk)->icsk_ulp_data, 1);
}

/* Waiting for a buffer: on the pool's queue, or on the user's. */
static bool mbufmux_parked(const struct mbufmux_sock *ctx)
{
	return mbufmux_waiter_queued(&ctx->waiter) ||
	       READ_ONCE(ctx->user_parked);
}

static unsigned int mbufmux_staged(const struct mbufmux_sock *ctx)
{
	return ctx->tail - ctx->head;
}

/* Wake everybody sleeping or polling on the socket, both directions. */
static void mbufmux_wake(struct sock *sk)
{
	struct socket_wq *wq;

	rcu_read_lock();
	wq = rcu_dereference(sk->sk_wq);
	if (skwq_has_sleeper(wq))
		wake_up_interruptible_poll(&wq->wait, EPOLLIN | EPOLLRDNORM |
					   EPOLLOUT | EPOLLWRNORM |
					   EPOLLWRBAND);
	rcu_read_unlock();
}

/* Per-user cap */

/**
 * struct mbufmux_user - one user's share of the pool
 * @node: in mbufmux_users, hashed by @uid
 * @uid: the sockets' owner
 * @socks: attached sockets of this user that the cap applies to
 * @held: of those, the sockets counted against the cap (@user_slot)
 * @nr_parked: sockets on @parked
 * @parked: sockets waiting for one of the user's slots, oldest first
 *
 * Everything here is under mbufmux_users_lock.
 */
struct mbufmux_user {
	struct hlist_node node;
	kuid_t uid;
	unsigned int socks;
	unsigned int held;
	unsigned int nr_parked;
	struct list_head parked;
};

static unsigned int user_limit;
static DEFINE_HASHTABLE(mbufmux_users, 6);
/* Protects mbufmux_users, each mbufmux_user and the sockets' user fields. */
static DEFINE_SPINLOCK(mbufmux_users_lock);
static struct dentry *mbufmux_users_file;

/* The cap: user_limit, or by default half of what the reserve leaves. */
static unsigned int mbufmux_user_cap(void)
{
	unsigned int cap = READ_ONCE(user_limit);

	if (cap)
		return cap;
	return max(1U, (READ_ONCE(limit) - READ_ONCE(reserve)) / 2);
}

/* Give the free slots of @user to its parked sockets, oldest first. */
static void mbufmux_user_grant_locked(struct mbufmux_user *user)
{
	unsigned int cap = mbufmux_user_cap();
	struct mbufmux_sock *ctx;

	lockdep_assert_held(&mbufmux_users_lock);
	while (user->held < cap && !list_empty(&user->parked)) {
		ctx = list_first_entry(&user->parked, struct mbufmux_sock,
				       user_node);
		list_del_init(&ctx->user_node);
		user->nr_parked--;
		user->held++;
		WRITE_ONCE(ctx->user_wait_ns, ctx->user_wait_ns +
			   ktime_get_ns() - ctx->user_parked_ns);
		WRITE_ONCE(ctx->user_slot, true);
		WRITE_ONCE(ctx->user_parked, false);
		/* Still attached: close takes it off the FIFO first. */
		mbufmux_wake(ctx->sk);
	}
}

/* The cap may have grown (user_limit, limit or reserve changed). */
static void mbufmux_users_grant_all(void)
{
	struct mbufmux_user *user;
	unsigned int bkt;

	spin_lock(&mbufmux_users_lock);
	hash_for_each(mbufmux_users, bkt, user, node)
		mbufmux_user_grant_locked(user);
	spin_unlock(&mbufmux_users_lock);
}

/*
 * May the socket go to the pool? Yes if it counts against its user's cap
 * already, or the cap has room and nobody of that user is parked before
 * it; otherwise it is parked on the user's FIFO (once).
 */
static bool mbufmux_user_take(struct mbufmux_sock *ctx)
{
	struct mbufmux_user *user = ctx->user;
	bool ok;

	/* Only the socket itself clears @user_slot: true stays true. */
	if (!user || READ_ONCE(ctx->user_slot))
		return true;

	spin_lock(&mbufmux_users_lock);
	ok = ctx->user_slot;
	if (!ok && !ctx->user_parked) {
		if (list_empty(&user->parked) &&
		    user->held < mbufmux_user_cap()) {
			user->held++;
			WRITE_ONCE(ctx->user_slot, true);
			ok = true;
		} else {
			list_add_tail(&ctx->user_node, &user->parked);
			user->nr_parked++;
			ctx->user_parked_ns = ktime_get_ns();
			WRITE_ONCE(ctx->user_waits, ctx->user_waits + 1);
			WRITE_ONCE(ctx->user_parked, true);
		}
	}
	spin_unlock(&mbufmux_users_lock);
	return ok;
}

/*
 * The socket gave its buffer or its place in the pool back: leave the
 * user's FIFO, give the slot to the next parked socket of the user.
 */
static void mbufmux_user_put(struct mbufmux_sock *ctx)
{
	struct mbufmux_user *user = ctx->user;

	if (!user)
		return;
	spin_lock(&mbufmux_users_lock);
	if (ctx->user_parked) {
		list_del_init(&ctx->user_node);
		user->nr_parked--;
		WRITE_ONCE(ctx->user_parked, false);
	}
	if (ctx->user_slot) {
		WRITE_ONCE(ctx->user_slot, false);
		user->held--;
		mbufmux_user_grant_locked(user);
	}
	spin_unlock(&mbufmux_users_lock);
}

/* The share of @uid, one more socket in it; NULL if out of memory. */
static struct mbufmux_user *mbufmux_user_get(kuid_t uid)
{
	struct mbufmux_user *user, *new;

	new = kzalloc(sizeof(*new), GFP_KERNEL);
	if (!new)
		return NULL;
	spin_lock(&mbufmux_users_lock);
	hash_for_each_possible(mbufmux_users, user, node, __kuid_val(uid)) {
		if (uid_eq(user->uid, uid))
			goto found;
	}
	user = new;
	new = NULL;
	user->uid = uid;
	INIT_LIST_HEAD(&user->parked);
	hash_add(mbufmux_users, &user->node, __kuid_val(uid));
found:
	user->socks++;
	spin_unlock(&mbufmux_users_lock);
	kfree(new);
	return user;
}

/* At close: give everything back and leave the user's share. */
static void mbufmux_user_detach(struct mbufmux_sock *ctx)
{
	struct mbufmux_user *user = ctx->user;

	if (!user)
		return;
	mbufmux_user_put(ctx);
	spin_lock(&mbufmux_users_lock);
	if (--user->socks) {
		user = NULL;
	} else {
		WARN_ON_ONCE(user->held || user->nr_parked);
		hash_del(&user->node);
	}
	spin_unlock(&mbufmux_users_lock);
	kfree(user);
	ctx->user = NULL;
}

static int mbufmux_users_show(struct seq_file *m, void *v)
{
	struct mbufmux_user *user;
	unsigned int bkt;

	spin_lock(&mbufmux_users_lock);
	seq_printf(m, "cap %u\n", mbufmux_user_cap());
	hash_for_each(mbufmux_users, bkt, user, node)
		seq_printf(m, "uid=%u socks=%u held=%u parked=%u\n",
			   from_kuid_munged(seq_user_ns(m), user->uid),
			   user->socks, user->held, user->nr_parked);
	spin_unlock(&mbufmux_users_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(mbufmux_users);

static int mbufmux_user_limit_set(const char *val,
				  const struct kernel_param *kp)
{
	unsigned int v;
	int err;

	err = kstrtouint(val, 0, &v);
	if (err)
		return err;
	if (v > MBUFMUX_LIMIT_MAX) {
		pr_warn_ratelimited("user_limit=%u refused: need 0 (automatic) to %u\n",
				    v, MBUFMUX_LIMIT_MAX);
		return -EINVAL;
	}
	WRITE_ONCE(user_limit, v);
	/* At load, nobody is attached yet. */
	if (tcp_pool)
		mbufmux_users_grant_all();
	return 0;
}

static const struct kernel_param_ops mbufmux_user_limit_ops = {
	.set = mbufmux_user_limit_set,
	.get = param_get_uint,
};

module_param_cb(user_limit, &mbufmux_user_limit_ops, &user_limit, 0644);
MODULE_PARM_DESC(user_limit, "most buffers the sockets of one user hold or wait for at once (0: (limit - reserve) / 2, at least 1); CAP_NET_ADMIN sockets are exempt");

/* The pool's callback: a buffer was handed to a parked socket. */
static void mbufmux_available(struct mbufmux_waiter *w)
{
	struct mbufmux_sock *ctx = container_of(w, struct mbufmux_sock,
						waiter);

	/* The waiter is off the queue already: poll sees the real state. */
	mbufmux_wake(ctx->sk);
}

static void mbufmux_show(struct seq_file *m, const struct mbufmux_waiter *w)
{
	const struct mbufmux_sock *ctx = container_of(w, struct mbufmux_sock,
						      waiter);
	const struct sock *sk = ctx->sk;

	seq_printf(m, "tcp sk=%p sport=%u dport=%u staged=%u", sk,
		   inet_sk(sk)->inet_num, ntohs(inet_sk(sk)->inet_dport),
		   mbufmux_staged(ctx));
}

static const struct mbufmux_waiter_ops mbufmux_waiter_ops = {
	.available = mbufmux_available,
	.show = mbufmux_show,
};

/*
 * Push the staged bytes to TCP without waiting. An emptied buffer goes
 * back to the pool unless MSG_MORE data is expected. Returns 0 when all
 * was pushed, -EAGAIN if TCP is full, or TCP's error.
 */
static int mbufmux_push(struct sock *sk, struct mbufmux_sock *ctx)
{
	char *buf = mbufmux_waiter_buf(&ctx->waiter);
	int flags = MSG_DONTWAIT | MSG_NOSIGNAL;
	struct msghdr msg = {};
	struct kvec iov;
	int ret = 0;

	sock_owned_by_me(sk);
	if (ctx->hold)
		flags |= MSG_MORE;
	while (ctx->head < ctx->tail) {
		iov.iov_base = buf + ctx->head;
		iov.iov_len = mbufmux_staged(ctx);
		msg.msg_flags = flags;
		iov_iter_kvec(&msg.msg_iter, ITER_SOURCE, &iov, 1, iov.iov_len);
		ret = tcp_sendmsg_locked(sk, &msg, iov.iov_len);
		if (ret <= 0)
			break;
		ctx->head += ret;
		ret = 0;
	}
	if (ctx->head == ctx->tail) {
		ctx->head = 0;
		ctx->tail = 0;
		if (!ctx->hold && mbufmux_waiter_buf(&ctx->waiter)) {
			mbufmux_put(&ctx->waiter);
			mbufmux_user_put(ctx);
		}
	} else if (ctx->head) {
		/* Keep the free space in one piece at the end. */
		memmove(buf, buf + ctx->head, mbufmux_staged(ctx));
		ctx->tail -= ctx->head;
		ctx->head = 0;
	}
	return ret ?: (ctx->tail ? -EAGAIN : 0);
}

/*
 * Push everything staged now, for close and shutdown: TCP's send buffer
 * limit is lifted for the time of the call, as the bytes were accepted by
 * send() already. Only a hard error (reset, no memory) loses them.
 */
static void mbufmux_push_all(struct sock *sk, struct mbufmux_sock *ctx)
{
	int sndbuf = READ_ONCE(sk->sk_sndbuf);
	int err;

	if (!mbufmux_staged(ctx))
		goto out;
	ctx->hold = false;
	WRITE_ONCE(sk->sk_sndbuf, max_t(int, sndbuf, sk->sk_wmem_queued +
					2 * mbufmux_staged(ctx) + SOCK_MIN_SNDBUF));
	err = mbufmux_push(sk, ctx);
	WRITE_ONCE(sk->sk_sndbuf, sndbuf);
	if (err)
		net_warn_ratelimited("%u staged bytes lost on socket %lu: %d\n",
				     mbufmux_staged(ctx), sock_i_ino(sk), err);
out:
	ctx->hold = false;
	ctx->head = 0;
	ctx->tail = 0;
}

static void mbufmux_tx_work(struct work_struct *work)
{
	struct mbufmux_sock *ctx = container_of(work, struct mbufmux_sock,
						tx_work);
	struct sock *sk = ctx->sk;

	lock_sock(sk);
	if (!ctx->closing && !ctx->hold && mbufmux_staged(ctx)) {
		int err = mbufmux_push(sk, ctx);

		/* A dead connection drops what it had queued, like TCP. */
		if (err && err != -EAGAIN) {
			ctx->head = 0;
			ctx->tail = 0;
			mbufmux_put(&ctx->waiter);
			mbufmux_user_put(ctx);
		}
	}
	release_sock(sk);
	mbufmux_wake(sk);
	/* Taken by the write-space callback that queued us. */
	sock_put(sk);
}

/* TCP has room again: push what is staged, from process context. */
static void mbufmux_write_space(struct sock *sk)
{
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);

	if (!READ_ONCE(ctx->hold) && READ_ONCE(ctx->tail)) {
		/* The work drops this reference; if it was queued already,
		 * nothing will, so drop it here (CVE-2025-40258).
		 */
		sock_hold(sk);
		if (!queue_work(mbufmux_tcp_wq, &ctx->tx_work))
			sock_put(sk);
	}
	ctx->sk_write_space(sk);
}

/* Does parking stop this direction (MBUFMUX_BLOCK may change meanwhile)? */
static bool mbufmux_blocked(const struct mbufmux_sock *ctx, bool for_send)
{
	return mbufmux_parked(ctx) &&
	       (for_send || READ_ONCE(ctx->block) == MBUFMUX_BLOCK_BOTH);
}

/*
 * Sleep until the socket's waiter is handed a buffer. Called with the
 * socket lock held; sk_wait_event() drops it while sleeping.
 */
static int mbufmux_wait_unparked(struct sock *sk, struct mbufmux_sock *ctx,
				 long *timeo, bool for_send)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	int err = 0;

	add_wait_queue(sk_sleep(sk), &wait);
	while (mbufmux_blocked(ctx, for_send)) {
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if (for_send && (sk->sk_shutdown & SEND_SHUTDOWN)) {
			err = -EPIPE;
			break;
		}
		if (!for_send && (sk->sk_shutdown & RCV_SHUTDOWN))
			break;
		if (!*timeo) {
			err = -EAGAIN;
			break;
		}
		if (signal_pending(current)) {
			err = sock_intr_errno(*timeo);
			break;
		}
		sk_wait_event(sk, timeo, !mbufmux_blocked(ctx, for_send) ||
			      sk->sk_err ||
			      (sk->sk_shutdown & (for_send ? SEND_SHUTDOWN :
						  RCV_SHUTDOWN)), &wait);
	}
	remove_wait_queue(sk_sleep(sk), &wait);
	return err;
}

#define MBUFMUX_SEND_FLAGS (MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL | \
			    MSG_EOR | MSG_WAITALL | MSG_CMSG_COMPAT | \
			    MSG_BATCH | MSG_SENDPAGE_NOTLAST_COMPAT)

static int mbufmux_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)
{
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);
	int flags = msg->msg_flags;
	unsigned int space;
	size_t copied = 0;
	int err = 0;
	char *buf;
	long timeo;

	/* Data is copied into the buffer: spliced pages are just a source. */
	if (flags & ~(MBUFMUX_SEND_FLAGS | MSG_SPLICE_PAGES_COMPAT))
		return -EOPNOTSUPP;

	lock_sock(sk);
	timeo = sock_sndtimeo(sk, flags & MSG_DONTWAIT);
	while (msg_data_left(msg)) {
		if (sk->sk_err) {
			err = sock_error(sk);
			break;
		}
		if ((sk->sk_shutdown & SEND_SHUTDOWN) ||
		    !((1 << sk->sk_state) & (TCPF_ESTABLISHED | TCPF_CLOSE_WAIT))) {
			err = -EPIPE;
			break;
		}

		buf = NULL;
		if (mbufmux_user_take(ctx))
			buf = mbufmux_get(&ctx->waiter, ctx->margin);
		if (!buf) {
			err = mbufmux_wait_unparked(sk, ctx, &timeo, true);
			if (err)
				break;
			continue;
		}

		if (ctx->tail == mbufmux_pool_buf_size(tcp_pool)) {
			/* Full: make room by pushing, else wait for TCP. */
			ctx->hold = true;
			err = mbufmux_push(sk, ctx);
			if (err == -EAGAIN)
				err = sk_stream_wait_memory(sk, &timeo);
			if (err)
				break;
			continue;
		}

		space = mbufmux_pool_buf_size(tcp_pool) - ctx->tail;
		space = copy_from_iter(buf + ctx->tail,
				       min_t(size_t, space, msg_data_left(msg)),
				       &msg->msg_iter);
		if (!space) {
			err = -EFAULT;
			break;
		}
		ctx->tail += space;
		copied += space;
	}

	/* Hold the bytes for more, or push them now. */
	ctx->hold = (flags & (MSG_MORE | MSG_SENDPAGE_NOTLAST_COMPAT)) &&
		    !(flags & MSG_EOR) && !err;
	if (!ctx->hold) {
		int perr = mbufmux_push(sk, ctx);

		if (perr && perr != -EAGAIN && !copied)
			err = perr;
	}
	release_sock(sk);

	if (copied)
		return copied;
	if (err == -EPIPE)
		return sk_stream_error(sk, flags, err);
	return err;
}

static int mbufmux_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
			   int flags, int *addr_len)
{
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);
	int err;

	if (mbufmux_parked(ctx) &&
	    READ_ONCE(ctx->block) == MBUFMUX_BLOCK_BOTH) {
		long timeo = sock_rcvtimeo(sk, flags & MSG_DONTWAIT);

		lock_sock(sk);
		err = mbufmux_wait_unparked(sk, ctx, &timeo, false);
		release_sock(sk);
		if (err)
			return err;
	}
	return ctx->sk_proto->recvmsg(sk, msg, len, flags, addr_len);
}

static __poll_t mbufmux_poll(struct file *file, struct socket *sock,
			     poll_table *wait)
{
	struct sock *sk = sock->sk;
	const struct proto_ops *ops;
	struct mbufmux_sock *ctx;
	__poll_t mask;

	ops = sk->sk_family == AF_INET6 ? saved_tcpv6_ops : &inet_stream_ops;
	mask = ops->poll(file, sock, wait);

	ctx = mbufmux_sk_ctx(sk);
	if (!mbufmux_parked(ctx))
		return mask;
	/* Parked: not writable, and not readable unless told otherwise;
	 * errors, hang-ups and end of file still show.
	 */
	mask &= ~(EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND);
	if (READ_ONCE(ctx->block) == MBUFMUX_BLOCK_BOTH &&
	    !(mask & (EPOLLERR | EPOLLRDHUP | EPOLLHUP)))
		mask &= ~(EPOLLIN | EPOLLRDNORM | EPOLLRDBAND | EPOLLPRI);
	return mask;
}

/*
 * shutdown(SHUT_WR): the staged bytes go before the FIN. Nothing can be
 * sent afterwards, so the socket gives its buffer back, or its place in
 * the queue (a parked socket may read again). Called by inet_shutdown()
 * under the socket lock; the waiter's callback does not take it, so the
 * cancel may wait for the callback here.
 */
static void mbufmux_shutdown(struct sock *sk, int how)
{
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);
	u8 shutdown = sk->sk_shutdown;

	if (how & SEND_SHUTDOWN) {
		if (mbufmux_staged(ctx)) {
			/* inet_shutdown() marked the socket already; with its
			 * lock held, no sender can slip in while it is lifted.
			 */
			WRITE_ONCE(sk->sk_shutdown, shutdown & ~SEND_SHUTDOWN);
			mbufmux_push_all(sk, ctx);
			WRITE_ONCE(sk->sk_shutdown, shutdown);
		}
		ctx->hold = false;
		mbufmux_cancel(&ctx->waiter);
		mbufmux_user_put(ctx);
	}
	ctx->sk_proto->shutdown(sk, how);
	if (how & SEND_SHUTDOWN)
		mbufmux_wake(sk);
}

/* connect(AF_UNSPEC) would take the socket back to where it could listen. */
static int mbufmux_disconnect(struct sock *sk, int flags)
{
	return -EOPNOTSUPP;
}

static void mbufmux_ctx_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct mbufmux_sock, rcu));
}

static void mbufmux_close(struct sock *sk, long timeout)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);
	struct proto *sk_proto = ctx->sk_proto;

	lock_sock(sk);
	mbufmux_push_all(sk, ctx);
	ctx->closing = true;
	write_lock_bh(&sk->sk_callback_lock);
	rcu_assign_pointer(icsk->icsk_ulp_data, NULL);
	WRITE_ONCE(sk->sk_prot, sk_proto);
	if (sk->sk_write_space == mbufmux_write_space)
		sk->sk_write_space = ctx->sk_write_space;
	write_unlock_bh(&sk->sk_callback_lock);
	release_sock(sk);

	/*
	 * The write-space callback is TCP's again and ran under the socket
	 * lock we just took, so nothing can queue the tx work any more;
	 * disabling it also keeps a late queue_work() from reviving it.
	 * Neither may run under the socket lock: the tx work takes it.
	 */
#ifdef MBUFMUX_HAVE_DISABLE_WORK
	if (disable_work_sync(&ctx->tx_work))
#else
	if (cancel_work_sync(&ctx->tx_work))
#endif
		sock_put(sk);
	mbufmux_cancel(&ctx->waiter);
	mbufmux_user_detach(ctx);

	sk_proto->close(sk, timeout);
	call_rcu(&ctx->rcu, mbufmux_ctx_free_rcu);
}

static int mbufmux_getsockopt(struct sock *sk, int level, int optname,
			      char __user *optval, int __user *optlen)
{
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);
	struct mbufmux_info info = {};
	int len, val;

	if (level != SOL_MBUFMUX)
		return ctx->sk_proto->getsockopt(sk, level, optname, optval,
						 optlen);
	if (get_user(len, optlen))
		return -EFAULT;
	if (len < 0)
		return -EINVAL;

	switch (optname) {
	case MBUFMUX_INFO:
		lock_sock(sk);
		if (mbufmux_waiter_buf(&ctx->waiter))
			info.flags |= MBUFMUX_F_HOLDS_BUF;
		if (mbufmux_parked(ctx))
			info.flags |= MBUFMUX_F_PARKED;
		if (READ_ONCE(ctx->user_parked))
			info.flags |= MBUFMUX_F_USER_CAP;
		info.block = ctx->block;
		info.buf_size = mbufmux_pool_buf_size(tcp_pool);
		info.staged = mbufmux_staged(ctx);
		/* Parked on the pool's queue or on the user's, both count. */
		info.waits = READ_ONCE(ctx->waiter.waits) +
			     READ_ONCE(ctx->user_waits);
		info.handoffs = READ_ONCE(ctx->waiter.handoffs);
		info.wait_ns = READ_ONCE(ctx->waiter.wait_ns) +
			       READ_ONCE(ctx->user_wait_ns);
		release_sock(sk);
		len = min_t(int, len, sizeof(info));
		if (copy_to_user(optval, &info, len))
			return -EFAULT;
		break;
	case MBUFMUX_BLOCK:
		if (len < sizeof(int))
			return -EINVAL;
		len = sizeof(int);
		val = READ_ONCE(ctx->block);
		if (copy_to_user(optval, &val, len))
			return -EFAULT;
		break;
	default:
		return -ENOPROTOOPT;
	}
	return put_user(len, optlen);
}

static int mbufmux_setsockopt(struct sock *sk, int level, int optname,
			      sockptr_t optval, unsigned int optlen)
{
	struct mbufmux_sock *ctx = mbufmux_sk_ctx(sk);
	int val;

	if (level != SOL_MBUFMUX)
		return ctx->sk_proto->setsockopt(sk, level, optname, optval,
						 optlen);
	if (optname != MBUFMUX_BLOCK)
		return -ENOPROTOOPT;
	if (optlen < sizeof(int))
		return -EINVAL;
	if (copy_from_sockptr(&val, optval, sizeof(val)))
		return -EFAULT;
	if (val != MBUFMUX_BLOCK_BOTH && val != MBUFMUX_BLOCK_SEND)
		return -EINVAL;
	WRITE_ONCE(ctx->block, val);
	/* Receivers parked by the old mode may go now. */
	mbufmux_wake(sk);
	return 0;
}

#ifdef MBUFMUX_HAVE_SENDPAGE
/* Before 6.5, sendfile() reaches TCP through ->sendpage: copy it too. */
static int mbufmux_sendpage(struct sock *sk, struct page *page, int offset,
			    size_t size, int flags)
{
	struct bio_vec bvec = {
		.bv_page = page, .bv_offset = offset, .bv_len = size,
	};
	struct msghdr msg = { .msg_flags = flags & ~MSG_SENDPAGE_NOPOLICY };

	iov_iter_bvec(&msg.msg_iter, ITER_SOURCE, &bvec, 1, size);
	return mbufmux_sendmsg(sk, &msg, size);
}
#endif

static void mbufmux_build_proto(struct proto *prot, const struct proto *base,
				struct proto_ops *ops,
				const struct proto_ops *base_ops)
{
	*prot = *base;
	prot->close = mbufmux_close;
	prot->sendmsg = mbufmux_sendmsg;
	prot->recvmsg = mbufmux_recvmsg;
	prot->shutdown = mbufmux_shutdown;
	prot->disconnect = mbufmux_disconnect;
	prot->getsockopt = mbufmux_getsockopt;
	prot->setsockopt = mbufmux_setsockopt;
#ifdef MBUFMUX_HAVE_SENDPAGE
	prot->sendpage = mbufmux_sendpage;
#endif
	/* sockmap would route sends around the staged bytes: refuse it. */
	prot->psock_update_sk_prot = NULL;

	*ops = *base_ops;
	ops->poll = mbufmux_poll;
}

/* Build the IPv6 copies from the first IPv6 socket, as kTLS does. */
static int mbufmux_build_tcpv6(struct sock *sk)
{
	const struct proto *prot = READ_ONCE(sk->sk_prot);
	int err = 0;

	/* Pairs with the release below: the copies are built */
	if (likely(prot == smp_load_acquire(&saved_tcpv6_prot)))
		return sk->sk_socket->ops == saved_tcpv6_ops ? 0 : -EOPNOTSUPP;

	mutex_lock(&tcpv6_prot_mutex);
	if (!saved_tcpv6_prot) {
		mbufmux_build_proto(&mbufmux_prots[MBUFMUX_IPV6], prot,
				    &mbufmux_proto_ops[MBUFMUX_IPV6],
				    sk->sk_socket->ops);
		saved_tcpv6_ops = sk->sk_socket->ops;
		/* Publish the copies, then the proto they were built from */
		smp_store_release(&saved_tcpv6_prot, prot);
	} else if (prot != saved_tcpv6_prot) {
		err = -EOPNOTSUPP;
	}
	mutex_unlock(&tcpv6_prot_mutex);
	return err;
}

static int mbufmux_tcp_init(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	struct mbufmux_sock *ctx;
	int ver, err;

	/* No clone(): a listener's children would share the context. */
	if (sk->sk_state != TCP_ESTABLISHED)
		return -ENOTCONN;
	/* sockmap and friends own sk_user_data and replace sk_prot. */
	if (READ_ONCE(sk->sk_user_data) || !sk->sk_socket)
		return -EOPNOTSUPP;

	if (sk->sk_family == AF_INET6) {
		err = mbufmux_build_tcpv6(sk);
		if (err)
			return err;
		ver = MBUFMUX_IPV6;
	} else if (sk->sk_prot == &tcp_prot &&
		   sk->sk_socket->ops == &inet_stream_ops) {
		ver = MBUFMUX_IPV4;
	} else {
		return -EOPNOTSUPP;
	}

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;
	mbufmux_waiter_init(&ctx->waiter, tcp_pool, &mbufmux_waiter_ops);
	INIT_WORK(&ctx->tx_work, mbufmux_tx_work);
	ctx->sk = sk;
	ctx->sk_proto = sk->sk_prot;
	ctx->block = MBUFMUX_BLOCK_BOTH;
#ifdef CONFIG_MEMCG
	/* Buffers allocated for it while it waits are charged to its cgroup. */
	ctx->waiter.memcg = sk->sk_memcg;
#endif
	INIT_LIST_HEAD(&ctx->user_node);
	/*
	 * The reserve is for the administrator's sockets, which the per-user
	 * cap leaves alone. capable() looks at the initial user namespace:
	 * root of its own namespace is an ordinary user here.
	 */
	if (capable(CAP_NET_ADMIN)) {
		ctx->margin = 0;
	} else {
		ctx->margin = MBUFMUX_MARGIN_RESERVE;
		ctx->user = mbufmux_user_get(sk->sk_uid);
		if (!ctx->user) {
			kfree(ctx);
			return -ENOMEM;
		}
	}

	/* Publish the context before the ops that use it (CVE-2024-36489). */
	write_lock_bh(&sk->sk_callback_lock);
	rcu_assign_pointer(icsk->icsk_ulp_data, ctx);
	ctx->sk_write_space = sk->sk_write_space;
	sk->sk_write_space = mbufmux_write_space;
	WRITE_ONCE(sk->sk_prot, &mbufmux_prots[ver]);
	WRITE_ONCE(sk->sk_socket->ops, &mbufmux_proto_ops[ver]);
	write_unlock_bh(&sk->sk_callback_lock);
	return 0;
}

static struct tcp_ulp_ops mbufmux_tcp_ulp_ops __read_mostly = {
	.name		= "mbufmux",
	.owner		= THIS_MODULE,
	.init		= mbufmux_tcp_init,
};

static int __init mbufmux_tcp_module_init(void)
{
	struct mbufmux_pool_params params = {
		.name = "tcp",
		.buf_size = buf_size,
		.limit = limit,
		.reserve = reserve,
		.prealloc = reserve,
	};
	int err;

	if (buf_size < MBUFMUX_BUF_SIZE_MIN || buf_size > MBUFMUX_BUF_SIZE_MAX ||
	    !limit || limit > MBUFMUX_LIMIT_MAX || reserve >= limit) {
		pr_err("bad parameters: need %u <= buf_size <= %u, 0 <= reserve < limit <= %u\n",
		       MBUFMUX_BUF_SIZE_MIN, MBUFMUX_BUF_SIZE_MAX,
		       MBUFMUX_LIMIT_MAX);
		return -EINVAL;
	}

	mbufmux_build_proto(&mbufmux_prots[MBUFMUX_IPV4], &tcp_prot,
			    &mbufmux_proto_ops[MBUFMUX_IPV4], &inet_stream_ops);

	mbufmux_tcp_wq = alloc_workqueue("mbufmux_tcp", 0, 0);
	if (!mbufmux_tcp_wq)
		return -ENOMEM;

	tcp_pool = mbufmux_pool_create(&params);
	if (IS_ERR(tcp_pool)) {
		err = PTR_ERR(tcp_pool);
		tcp_pool = NULL;
		goto err_wq;
	}

	mbufmux_users_file = debugfs_create_file("users", 0444,
						 mbufmux_pool_debugfs_dir(tcp_pool),
						 NULL, &mbufmux_users_fops);
	err = tcp_register_ulp(&mbufmux_tcp_ulp_ops);
	if (err)
		goto err_pool;
	return 0;

err_pool:
	debugfs_remove(mbufmux_users_file);
	mbufmux_pool_destroy(tcp_pool);
	tcp_pool = NULL;
err_wq:
	destroy_workqueue(mbufmux_tcp_wq);
	return err;
}

static void __exit mbufmux_tcp_module_exit(void)
{
	/* Every attached socket holds a module reference: none is left. */
	tcp_unregister_ulp(&mbufmux_tcp_ulp_ops);
	destroy_workqueue(mbufmux_tcp_wq);
	/* Contexts are freed after a grace period. */
	rcu_barrier();
	/* Ours, in the pool's directory: the pool may outlive us. */
	debugfs_remove(mbufmux_users_file);
	mbufmux_pool_destroy(tcp_pool);
}

module_init(mbufmux_tcp_module_init);
module_exit(mbufmux_tcp_module_exit);

MODULE_AUTHOR("The mbufmux developers");
MODULE_DESCRIPTION("mbufmux TCP upper-layer protocol: socket buffers from a shared, bounded pool");
MODULE_LICENSE("GPL");
MODULE_ALIAS_TCP_ULP("mbufmux");
