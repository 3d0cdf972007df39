// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_tcp - the "mbufmux" TCP upper-layer protocol.
 *
 * Any established TCP socket can draw its mux buffer from one shared,
 * bounded pool (mbufmux.ko, pool "tcp"):
 *
 *	setsockopt(fd, IPPROTO_TCP, TCP_ULP, "mbufmux", sizeof("mbufmux"));
 *
 * The pool holds the unsent bytes: a socket's buffer, taken from the pool
 * on demand, covers every byte send() accepted and nobody has transmitted
 * yet, staged in the buffer or queued in TCP (write_seq - snd_nxt), and
 * send() accepts no more than that leaves room for. With nothing staged
 * the bytes go straight to TCP; what TCP refuses is staged and pushed from
 * the write-space callback, through a work item; MSG_MORE holds small
 * writes back until a flush. The buffer goes back to the pool once TCP has
 * transmitted everything it covered; close and shutdown hand TCP every
 * staged byte, and after close the buffer stays until TCP destroys the
 * socket (the ULP's release op).
 *
 * A socket that needs a buffer when the pool has none is parked on the
 * pool's FIFO: poll reports it not writable, and not readable either
 * unless its receive side is stalled (or only not writable, with
 * MBUFMUX_BLOCK_SEND); blocking calls sleep, non-blocking ones fail with
 * EAGAIN. When a buffer is handed to it, the waiter's callback wakes its
 * poll waiters and poll recomputes the real readiness.
 *
 * Per-user cap (mbufmux_tcp_user.c). Sockets of one user hold at most
 * user_limit buffers or places in the pool's queue at once; the next one
 * parks on the user's own FIFO, in front of the pool. Sockets attached
 * with CAP_NET_ADMIN (those allowed the reserve) are exempt.
 *
 * This module knows sockets and uses only the exported API of mbufmux.ko,
 * as any other consumer would.
 *
 * Locking: the staged bytes and the buffer they live in belong to the
 * socket lock (lock_sock(), or the socket's spinlock in softirq while
 * nobody owns it: see struct mbtcp_sock); the per-user cap's state to
 * the cap's own lock (mbufmux_tcp_user.c). The waiter's
 * callback takes no socket lock, so the close path may cancel it at any
 * point; the tx work takes the socket lock, so it is disabled only after
 * the lock is released.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/debugfs.h>
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
#include <linux/workqueue.h>
#include <net/inet_common.h>
#include <net/inet_connection_sock.h>
#include <net/sock.h>
#include <net/tcp.h>
#include <asm/ioctls.h>

#include "mbufmux.h"
#include "mbufmux_compat.h"
#include "mbufmux_tcp_user.h"
#include "uapi/mbufmux.h"

/* Module parameters */

/*
 * A buffer bounds what TCP holds unsent, so it bounds the segments TCP can
 * build too (what was sent cannot grow): one GSO segment at the default
 * gso_max_size, 64 KiB (loopback's MSS is 65483), lets TCP send segments as
 * large as it would without the ULP.
 */
#define MBTCP_BUF_SIZE_DEFAULT	65536
#define MBTCP_LIMIT_DEFAULT	64

static unsigned int buf_size = MBTCP_BUF_SIZE_DEFAULT;
module_param(buf_size, uint, 0444);
MODULE_PARM_DESC(buf_size, "size of each socket's buffer, bytes (set at load, 64 to 1048576)");

/*
 * limit and reserve as given at load, to create the pool with. From then
 * on the pool keeps them: the parameters read and write the pool's.
 */
static unsigned int limit = MBTCP_LIMIT_DEFAULT;
static unsigned int reserve;
static struct mbufmux_pool *tcp_pool;

/*
 * Both go to the pool at once, which checks them against each other (and
 * at load, once both are known: module init); kernel_param_lock
 * serialises their writers.
 */
static int mbtcp_param_set(const char *val, const struct kernel_param *kp)
{
	unsigned int v;
	int err;

	/* kstrtouint() refuses signs, junk and overflow: nothing clamps. */
	err = kstrtouint(val, 0, &v);
	if (err)
		return err;
	if (!tcp_pool) {
		*(unsigned int *)kp->arg = v;
		return 0;
	}
	if (kp->arg == &limit)
		err = mbufmux_pool_set_limits(tcp_pool, v,
					      mbufmux_pool_reserve(tcp_pool));
	else
		err = mbufmux_pool_set_limits(tcp_pool,
					      mbufmux_pool_limit(tcp_pool), v);
	if (err) {
		pr_warn_ratelimited("%s=%u refused: need 0 <= reserve < limit <= %u\n",
				    kp->name, v, MBUFMUX_LIMIT_MAX);
		return err;
	}
	/* The automatic per-user cap follows them. */
	mbtcp_user_cap_changed();
	return 0;
}

static int mbtcp_param_get(char *buffer, const struct kernel_param *kp)
{
	if (!tcp_pool)
		return param_get_uint(buffer, kp);
	return scnprintf(buffer, PAGE_SIZE, "%u\n",
			 kp->arg == &limit ? mbufmux_pool_limit(tcp_pool) :
					     mbufmux_pool_reserve(tcp_pool));
}

static const struct kernel_param_ops mbtcp_param_ops = {
	.set = mbtcp_param_set,
	.get = mbtcp_param_get,
};

module_param_cb(limit, &mbtcp_param_ops, &limit, 0644);
MODULE_PARM_DESC(limit, "most buffers in use at once (1 to 16777216; raising it wakes parked sockets)");
module_param_cb(reserve, &mbtcp_param_ops, &reserve, 0644);
MODULE_PARM_DESC(reserve, "buffers only CAP_NET_ADMIN sockets may take (below limit)");

/* The automatic per-user cap is half of them (mbufmux_tcp_user.h). */
unsigned int mbtcp_unreserved(void)
{
	return mbufmux_pool_limit(tcp_pool) - mbufmux_pool_reserve(tcp_pool);
}

/* Per-socket context */

/**
 * struct mbtcp_sock - an attached socket
 * @waiter: holds the socket's buffer, or its place in the pool's queue
 * @tx_work: pushes staged bytes once TCP has room, and lets a dead
 *	connection's buffer go (write-space and error callbacks)
 * @sk: the socket
 * @sk_write_space: TCP's write-space callback, restored at close
 * @sk_error_report: TCP's error callback, restored at close
 * @head: offset of the first staged byte in the buffer
 * @staged: bytes staged in the buffer, from @head
 * @flushed: of those, the leading ones that were sent without MSG_MORE
 *	(or flushed): pushed whenever TCP takes them, even while bytes
 *	behind them are held
 * @margin: the pool margin of this socket's requests
 * @user_waiter: the socket under its owner's per-user cap (its user is
 *	NULL if the socket is exempt)
 * @block: enum mbufmux_block
 * @pushing: in tcp_sendmsg_locked(), which may run the write-space
 *	callback from the backlog: that callback leaves the buffer alone
 * @sending: in sendmsg(), which may sleep for room with the lock
 *	released: the buffer stays for it, to be settled when it returns
 * @used: the buffer has covered bytes since the socket got it: once it
 *	has drained while others wait, its turn is over
 * @forcing: handing TCP the staged bytes past its not-sent low-water
 *	mark (close, shutdown); read by mbtcp_stream_memory_free()
 * @closing: close() has run; the context lives on, with the buffer if
 *	TCP has bytes left to transmit, until TCP destroys the socket
 * @rcu: frees the context after the readers of icsk_ulp_data
 *
 * @head, @staged, @flushed and the buffer belong to the socket lock: the
 * owner of lock_sock(), or the softirq that holds the socket's spinlock
 * while nobody owns it (the write-space callback). @staged is also read
 * locklessly, by poll.
 *
 * The waiter's @waits and @wait_ns count the socket's waits on its user's
 * FIFO too, MBUFMUX_INFO's sums (mbtcp_user_count()): the cap adds to
 * them under its lock while the socket is parked on the FIFO, and so not
 * on the pool's queue, where the pool adds to them under its own. A wait
 * is counted in the socket's own calls, which it serialises; its time, by
 * the cap before it publishes the slot that lets the socket queue in the
 * pool.
 */
struct mbtcp_sock {
	struct mbufmux_waiter waiter;
	struct work_struct tx_work;
	struct sock *sk;
	void (*sk_write_space)(struct sock *sk);
	void (*sk_error_report)(struct sock *sk);
	unsigned int head;
	unsigned int staged;
	unsigned int flushed;
	unsigned int margin;
	struct mbtcp_user_waiter user_waiter;
	u8 block;
	bool pushing;
	bool sending;
	bool used;
	bool forcing;
	bool closing;
	struct rcu_head rcu;
};

enum { MBTCP_IPV4, MBTCP_IPV6, MBTCP_NUM_PROTS };

static struct proto mbtcp_prots[MBTCP_NUM_PROTS];
static struct proto_ops mbtcp_proto_ops[MBTCP_NUM_PROTS];
/* The TCPv6 proto and ops our copies were built from; tcp_prot for v4. */
static struct proto *saved_tcpv6_prot;
static const struct proto_ops *saved_tcpv6_ops;
static DEFINE_MUTEX(tcpv6_prot_mutex);
static struct workqueue_struct *mbtcp_wq;
/* The ULP's debugfs directory, mbufmux_tcp/: the pool's is the pool's. */
static struct dentry *mbtcp_debugfs;

static struct mbtcp_sock *mbtcp_sk_ctx(const struct sock *sk)
{
	/* Attached sockets only: the ops below are reached through it. */
	return (__force struct mbtcp_sock *)
		rcu_dereference_protected(inet_csk(sk)->icsk_ulp_data, 1);
}

/*
 * TCP's proto, which the socket had before it was attached and gets back
 * at close: one per family, as attaching checks (mbtcp_ulp_init()).
 */
static struct proto *mbtcp_base_prot(const struct sock *sk)
{
	return sk->sk_family == AF_INET6 ? saved_tcpv6_prot : &tcp_prot;
}

/* Waiting for a buffer: on the pool's queue, or on the user's. */
static bool mbtcp_parked(const struct mbtcp_sock *ctx)
{
	return mbufmux_waiter_queued(&ctx->waiter) ||
	       mbtcp_user_parked(&ctx->user_waiter);
}

static unsigned int mbtcp_staged(const struct mbtcp_sock *ctx)
{
	return READ_ONCE(ctx->staged);
}

#define MBTCP_POLL_OUT	(EPOLLOUT | EPOLLWRNORM | EPOLLWRBAND)

/* Wake those sleeping or polling on the socket for @events. */
static void mbtcp_wake_events(struct sock *sk, __poll_t events)
{
	struct socket_wq *wq;

	rcu_read_lock();
	wq = rcu_dereference(sk->sk_wq);
	if (skwq_has_sleeper(wq))
		wake_up_interruptible_poll(&wq->wait, events);
	rcu_read_unlock();
}

/* Wake everybody sleeping or polling on the socket, both directions. */
static void mbtcp_wake(struct sock *sk)
{
	mbtcp_wake_events(sk, EPOLLIN | EPOLLRDNORM | MBTCP_POLL_OUT);
}

/* The pool's callback: a buffer was handed to a parked socket. */
static void mbtcp_available(struct mbufmux_waiter *w)
{
	struct mbtcp_sock *ctx = container_of(w, struct mbtcp_sock,
					      waiter);

	/* The waiter is off the queue already: poll sees the real state. */
	mbtcp_wake(ctx->sk);
}

static void mbtcp_show(struct seq_file *m, const struct mbufmux_waiter *w)
{
	const struct mbtcp_sock *ctx = container_of(w, struct mbtcp_sock,
						    waiter);
	const struct sock *sk = ctx->sk;

	seq_printf(m, "tcp sk=%p sport=%u dport=%u staged=%u", sk,
		   inet_sk(sk)->inet_num, ntohs(inet_sk(sk)->inet_dport),
		   mbtcp_staged(ctx));
}

/* A wait on the user's FIFO, counted with the pool's: see struct mbtcp_sock. */
void mbtcp_user_count(struct mbtcp_user_waiter *w, u64 waits, u64 wait_ns)
{
	struct mbtcp_sock *ctx = container_of(w, struct mbtcp_sock,
					      user_waiter);

	WRITE_ONCE(ctx->waiter.waits, ctx->waiter.waits + waits);
	WRITE_ONCE(ctx->waiter.wait_ns, ctx->waiter.wait_ns + wait_ns);
}

/* The user's cap granted the parked socket a slot: it may go to the pool. */
void mbtcp_user_granted(struct mbtcp_user_waiter *w)
{
	struct mbtcp_sock *ctx = container_of(w, struct mbtcp_sock,
					      user_waiter);

	mbtcp_wake(ctx->sk);
}

static const struct mbufmux_waiter_ops mbtcp_waiter_ops = {
	.available = mbtcp_available,
	.show = mbtcp_show,
};

/* The send path */

/*
 * The pool's buffer size, fixed at load, and the most unsent bytes that
 * leave a socket writable, all but a quarter of it (see mbtcp_writable()):
 * read on every send.
 */
static unsigned int tcp_buf_size __read_mostly;
static unsigned int tcp_buf_fill __read_mostly;

static unsigned int mbtcp_size(void)
{
	return tcp_buf_size;
}

static bool mbtcp_holds(const struct mbtcp_sock *ctx)
{
	return mbufmux_waiter_buf(&ctx->waiter);
}

/* Bytes TCP holds and has not transmitted yet (its own SIOCOUTQNSD). */
static u32 mbtcp_notsent(const struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);

	return READ_ONCE(tp->write_seq) - READ_ONCE(tp->snd_nxt);
}

/*
 * What the socket's buffer covers: every byte send() accepted and nobody
 * has transmitted yet, staged here or queued in TCP. While it is not zero
 * the socket holds its buffer, and it never exceeds the buffer's size.
 */
static unsigned int mbtcp_unsent(const struct sock *sk,
				 const struct mbtcp_sock *ctx)
{
	return mbtcp_staged(ctx) + mbtcp_notsent(sk);
}

/* Others wait for a buffer: of the pool, or a slot of this user's cap. */
static bool mbtcp_contended(const struct mbtcp_sock *ctx)
{
	return mbufmux_pool_waiting(tcp_pool) ||
	       mbtcp_user_contended(&ctx->user_waiter);
}

/*
 * How many more bytes send() may accept now: what the buffer leaves
 * beside the unsent bytes. While others wait, a holder whose bytes are
 * all on their way (none held for MSG_MORE) takes nothing more until it
 * has drained and given its buffer back; its next send queues behind them,
 * so each holder gets one buffer's worth per turn. A holder of MSG_MORE
 * bytes may go on until it flushes or fills the buffer: it is the
 * program's next send that flushes them.
 */
static unsigned int mbtcp_room(const struct sock *sk,
			       const struct mbtcp_sock *ctx)
{
	unsigned int unsent = mbtcp_unsent(sk, ctx);
	unsigned int size = mbtcp_size();

	if (unsent && READ_ONCE(ctx->flushed) == mbtcp_staged(ctx) &&
	    mbtcp_contended(ctx))
		return 0;
	return unsent < size ? size - unsent : 0;
}

/*
 * Room worth a wake-up: a quarter of the buffer (as TCP's
 * sk_stream_min_wspace() for its own queue), or any room at all while
 * MSG_MORE bytes are held, which only the program's next send flushes.
 */
static bool mbtcp_writable(const struct sock *sk,
			   const struct mbtcp_sock *ctx)
{
	unsigned int room = mbtcp_room(sk, ctx);

	if (mbtcp_parked(ctx))
		return false;
	if (READ_ONCE(ctx->flushed) != mbtcp_staged(ctx))
		return room;
	return room >= mbtcp_size() / 4;
}

/*
 * A socket's buffer comes through its user's cap, then the pool, and goes
 * back to both at once: mbtcp_get(), mbtcp_put() and mbtcp_cancel() are
 * the only places that take it or give it back.
 *
 * The buffer the socket holds, or one the pool gives it now if the cap
 * lets it ask; NULL while it is parked, by either.
 */
static char *mbtcp_get(struct mbtcp_sock *ctx)
{
	char *buf = mbufmux_waiter_buf(&ctx->waiter);

	if (!buf && mbtcp_user_take(&ctx->user_waiter))
		buf = mbufmux_get(&ctx->waiter, ctx->margin);
	return buf;
}

/* The buffer goes back, with the user's slot. Process or softirq context. */
static void mbtcp_put(struct mbtcp_sock *ctx)
{
	ctx->head = 0;
	ctx->used = false;
	mbufmux_put(&ctx->waiter);
	mbtcp_user_put(&ctx->user_waiter);
}

/*
 * The buffer, or the place in the pool's queue or on the user's FIFO,
 * goes back. Process context, may sleep (the pool waits for the waiter's
 * callback): not under a lock that callback takes.
 */
static void mbtcp_cancel(struct mbtcp_sock *ctx)
{
	mbufmux_cancel(&ctx->waiter);
	mbtcp_put(ctx);
}

/*
 * Give the buffer back once everything it covered has been transmitted,
 * unless a send() in progress goes on with it; otherwise have TCP call the
 * write-space callback when it makes progress (it does so only while
 * SOCK_NOSPACE is set). Under the socket lock, as defined at struct
 * mbtcp_sock: TCP transmits only under it too, so the flag cannot be
 * missed. Returns true if the buffer went back.
 */
static bool mbtcp_settle(struct sock *sk, struct mbtcp_sock *ctx)
{
	if (!mbtcp_holds(ctx))
		return false;
	if (!ctx->staged && !mbtcp_notsent(sk) && !READ_ONCE(ctx->sending)) {
		mbtcp_put(ctx);
		return true;
	}
	/* Set already, as a rule, while TCP holds the socket's bytes. */
	if (sk->sk_socket && !test_bit(SOCK_NOSPACE, &sk->sk_socket->flags))
		set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
	return false;
}

/*
 * One call into TCP for @len bytes of @msg, past Nagle and cork if @push.
 * With @pushing set, a write-space callback run from the backlog
 * meanwhile leaves the buffer alone.
 */
static int mbtcp_tcp_call(struct sock *sk, struct mbtcp_sock *ctx,
			  struct msghdr *msg, size_t len, bool push)
{
	struct tcp_sock *tp = tcp_sk(sk);
	u8 nonagle = tp->nonagle;
	int ret;

	if (push)
		tp->nonagle = TCP_NAGLE_OFF | TCP_NAGLE_PUSH;
	WRITE_ONCE(ctx->pushing, true);
	ret = tcp_sendmsg_locked(sk, msg, len);
	WRITE_ONCE(ctx->pushing, false);
	/* What was queued has been pushed: no TCP_NAGLE_PUSH left over. */
	if (push)
		tp->nonagle = nonagle & ~TCP_NAGLE_PUSH;
	return ret;
}

/* Would @more unsent bytes leave the socket unwritable? See mbtcp_writable(). */
static bool mbtcp_fills(const struct sock *sk, const struct mbtcp_sock *ctx,
			size_t more)
{
	return mbtcp_unsent(sk, ctx) + more > tcp_buf_fill;
}

/*
 * Hand @len bytes of @msg to TCP, new to what the buffer covers if @added
 * (else staged already). When they leave the socket unwritable, TCP must
 * transmit what it holds now, partial segment and all, since the program
 * will give no more until it has: TCP does the same for its own queue,
 * pushing past Nagle and cork when its send buffer is full (TCP_NAGLE_PUSH
 * in tcp_sendmsg_locked()). Whether they do is known only once TCP has
 * taken them, after it has sent the full segments itself: if they might,
 * TCP gets all bytes but the last one first, with MSG_MORE (its partial
 * segment waits for that byte, as within one send() on plain TCP; the
 * flag holds nothing beyond the call), and the last one pushes if the
 * socket is then unwritable, or goes as TCP's Nagle test says. So a push
 * never cuts short a segment that TCP would have filled within the
 * buffer, and a socket that stays writable is never pushed early.
 */
static int mbtcp_tcp_send(struct sock *sk, struct mbtcp_sock *ctx,
			  struct msghdr *msg, size_t len, bool added)
{
	int first, ret;

	if (!mbtcp_fills(sk, ctx, added ? len : 0))
		return mbtcp_tcp_call(sk, ctx, msg, len, false);
	if (len == 1)
		return mbtcp_tcp_call(sk, ctx, msg, len, true);

	iov_iter_truncate(&msg->msg_iter, len - 1);
	msg->msg_flags |= MSG_MORE;
	first = mbtcp_tcp_call(sk, ctx, msg, len - 1, false);
	msg->msg_flags &= ~MSG_MORE;
	iov_iter_reexpand(&msg->msg_iter, len - max(first, 0));
	/* TCP is full (and pushed), or failed. */
	if (first != len - 1)
		return first;
	ret = mbtcp_tcp_call(sk, ctx, msg, 1, mbtcp_fills(sk, ctx, added));
	return ret > 0 ? first + ret : first;
}

/*
 * Hand the flushed bytes to TCP, without waiting; the held ones stay. The
 * buffer covers them in TCP as it did here. Returns 0 if all of them went,
 * -EAGAIN if TCP is full, or TCP's error.
 */
static int mbtcp_push(struct sock *sk, struct mbtcp_sock *ctx)
{
	char *buf = mbufmux_waiter_buf(&ctx->waiter);
	unsigned int len = ctx->flushed;
	struct msghdr msg = {};
	struct kvec iov;
	int ret = 0;

	sock_owned_by_me(sk);
	while (len) {
		iov.iov_base = buf + ctx->head;
		iov.iov_len = len;
		/*
		 * Never MSG_MORE (but for the bytes before the last, in
		 * mbtcp_tcp_send()): bytes TCP corked would stay unsent,
		 * and the room they take would never come back. The ULP
		 * holds MSG_MORE data itself.
		 */
		msg.msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
		iov_iter_kvec(&msg.msg_iter, ITER_SOURCE, &iov, 1, len);
		ret = mbtcp_tcp_send(sk, ctx, &msg, len, false);
		if (ret <= 0)
			break;
		ctx->head += ret;
		WRITE_ONCE(ctx->staged, ctx->staged - ret);
		WRITE_ONCE(ctx->flushed,
			   ctx->flushed - min_t(unsigned int, ctx->flushed, ret));
		len -= ret;
		ret = 0;
	}
	if (!ctx->staged)
		ctx->head = 0;
	return ret;
}

/* Held bytes go on too: the program flushed, or the buffer is full. */
static int mbtcp_flush(struct sock *sk, struct mbtcp_sock *ctx)
{
	WRITE_ONCE(ctx->flushed, ctx->staged);
	return mbtcp_push(sk, ctx);
}

/*
 * Hand every staged byte to TCP now, past TCP's own limits, for close and
 * shutdown: send() accepted them, and the buffer covers them in TCP as it
 * did here. TCP starts a new segment only below sk_sndbuf and, through
 * ->stream_memory_free, below its not-sent low-water mark. The first is
 * raised before each segment to just above what TCP holds, so that the
 * segment is still charged to the socket's memory (and the charge is
 * forced past a memory limit, as for a queue above its sndbuf: see
 * __sk_mem_raise_allocated()); @forcing lifts the second. Only an error
 * of TCP, or no memory at all for a segment, stops it.
 */
static int mbtcp_push_force(struct sock *sk, struct mbtcp_sock *ctx)
{
	int sndbuf = READ_ONCE(sk->sk_sndbuf);
	unsigned int before;
	int err = 0;

	WRITE_ONCE(ctx->forcing, true);
	while (ctx->staged && !err) {
		before = ctx->staged;
		WRITE_ONCE(sk->sk_sndbuf,
			   max(sndbuf, READ_ONCE(sk->sk_wmem_queued) + 1));
		err = mbtcp_flush(sk, ctx);
		if (err == -EAGAIN)
			err = ctx->staged < before ? 0 : -ENOMEM;
	}
	WRITE_ONCE(ctx->forcing, false);
	/* Under memory pressure TCP may have moderated it: keep that. */
	WRITE_ONCE(sk->sk_sndbuf, min(sndbuf, READ_ONCE(sk->sk_sndbuf)));
	return err;
}

/* The bytes are gone with the connection: say so, as nothing else will. */
static void mbtcp_drop(struct sock *sk, struct mbtcp_sock *ctx, int err)
{
	if (ctx->staged)
		net_info_ratelimited("%u staged bytes lost on socket %lu: %d\n",
				     ctx->staged, sock_i_ino(sk), err);
	WRITE_ONCE(ctx->staged, 0);
	WRITE_ONCE(ctx->flushed, 0);
	ctx->head = 0;
}

/* Reset, timed out, or failed: nothing more will be transmitted. */
static bool mbtcp_dead(const struct sock *sk)
{
	return READ_ONCE(sk->sk_err) || READ_ONCE(sk->sk_state) == TCP_CLOSE;
}

/*
 * A dead connection lets go of everything at once: staged bytes, buffer,
 * place in the pool's queue, user's slot. Under lock_sock(); may sleep.
 */
static void mbtcp_let_go(struct sock *sk, struct mbtcp_sock *ctx)
{
	/* sk_err stays for the program to read. */
	mbtcp_drop(sk, ctx, -(READ_ONCE(sk->sk_err) ?: ECONNRESET));
	mbtcp_cancel(ctx);
}

static void mbtcp_tx_work(struct work_struct *work)
{
	struct mbtcp_sock *ctx = container_of(work, struct mbtcp_sock,
					      tx_work);
	struct sock *sk = ctx->sk;

	lock_sock(sk);
	if (ctx->closing)
		goto out;
	if (mbtcp_dead(sk)) {
		mbtcp_let_go(sk, ctx);
	} else {
		/* Held bytes stay: the program has more to add to them. */
		mbtcp_push(sk, ctx);
		mbtcp_settle(sk, ctx);
	}
out:
	release_sock(sk);
	mbtcp_wake(sk);
	/* Taken by the callback that queued us. */
	sock_put(sk);
}

static void mbtcp_queue_tx(struct sock *sk, struct mbtcp_sock *ctx)
{
	/* The work drops this reference; if it was queued already,
	 * nothing will, so drop it here (CVE-2025-40258).
	 */
	sock_hold(sk);
	if (!queue_work(mbtcp_wq, &ctx->tx_work))
		sock_put(sk);
}

/*
 * TCP transmitted or freed something (it calls this with SOCK_NOSPACE
 * set, under the socket lock, often from softirq). Bytes TCP may take now
 * are pushed from process context; a buffer with nothing left to cover is
 * given back at once, unless this runs inside our own tcp_sendmsg_locked()
 * (from the backlog), which settles afterwards.
 */
static void mbtcp_write_space(struct sock *sk)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);

	ctx->sk_write_space(sk);
	if (READ_ONCE(ctx->pushing) || !mbtcp_holds(ctx))
		return;
	if (ctx->flushed) {
		/* As TCP wakes its writers: once it takes more. */
		if (sk_stream_is_writeable(sk))
			mbtcp_queue_tx(sk, ctx);
		else
			set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
		return;
	}
	if (mbtcp_settle(sk, ctx))
		mbtcp_wake(sk);
	else if (mbtcp_writable(sk, ctx))
		mbtcp_wake_events(sk, MBTCP_POLL_OUT);
}

/* A reset or an error: the tx work lets everything go, in process context. */
static void mbtcp_error_report(struct sock *sk)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);

	ctx->sk_error_report(sk);
	/* Not for what the error queue reports (timestamps, zerocopy). */
	if (mbtcp_dead(sk))
		mbtcp_queue_tx(sk, ctx);
}

/* Does parking stop this direction (MBUFMUX_BLOCK may change meanwhile)? */
static bool mbtcp_blocked(const struct mbtcp_sock *ctx, bool for_send)
{
	return mbtcp_parked(ctx) &&
	       (for_send || READ_ONCE(ctx->block) == MBUFMUX_BLOCK_BOTH);
}

/*
 * Data waits to be read and the peer cannot send more until it is: the
 * receive window is down to a segment, or receive memory is under
 * pressure (the test tcp_epollin_ready() uses to override SO_RCVLOWAT).
 * Reading never needs a buffer: a parked socket whose peer waits on it may
 * read, so that a holder stalled on it can drain and give its buffer back.
 */
static bool mbtcp_rx_stalled(const struct sock *sk)
{
	const struct tcp_sock *tp = tcp_sk(sk);
	int avail = READ_ONCE(tp->rcv_nxt) - READ_ONCE(tp->copied_seq);

	if (avail <= 0)
		return false;
	return tcp_rmem_pressure(sk) ||
	       tcp_receive_window(tp) <= inet_csk(sk)->icsk_ack.rcv_mss;
}

static bool mbtcp_recv_blocked(const struct sock *sk,
			       const struct mbtcp_sock *ctx)
{
	return mbtcp_blocked(ctx, false) && !mbtcp_rx_stalled(sk);
}

/*
 * Sleep until the socket may go on: a sender until its waiter is handed
 * a buffer and, if it holds one, until the buffer has room; a receiver
 * until it is unparked or its receive side stalls. Called with the socket
 * lock held; sk_wait_event() drops it while sleeping.
 */
static bool mbtcp_must_wait(struct sock *sk, struct mbtcp_sock *ctx,
			    bool for_send)
{
	if (!for_send)
		return mbtcp_recv_blocked(sk, ctx);
	if (mbtcp_blocked(ctx, true))
		return true;
	return mbtcp_holds(ctx) && !mbtcp_writable(sk, ctx);
}

static int mbtcp_wait(struct sock *sk, struct mbtcp_sock *ctx,
		      long *timeo, bool for_send)
{
	DEFINE_WAIT_FUNC(wait, woken_wake_function);
	int err = 0;

	add_wait_queue(sk_sleep(sk), &wait);
	while (mbtcp_must_wait(sk, ctx, for_send)) {
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
		if (for_send && sk->sk_socket)
			set_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
		/* A refused connect(AF_UNSPEC) does not concern us: the
		 * loop looks again, whatever sk_wait_event() says.
		 */
		sk_wait_event(sk, timeo, !mbtcp_must_wait(sk, ctx, for_send) ||
			      READ_ONCE(sk->sk_err) ||
			      (READ_ONCE(sk->sk_shutdown) &
			       (for_send ? SEND_SHUTDOWN : RCV_SHUTDOWN)), &wait);
	}
	remove_wait_queue(sk_sleep(sk), &wait);
	return err;
}

/*
 * Hand @len bytes of @msg straight to TCP: nothing is staged, so nothing
 * must go before them, and the socket's buffer covers them in TCP as it
 * would here. Control messages are ignored, as when the bytes are staged.
 * Returns what TCP took, or its error (-EAGAIN when it is full).
 */
static int mbtcp_write_through(struct sock *sk, struct mbtcp_sock *ctx,
			       struct msghdr *msg, size_t len)
{
	size_t controllen = msg->msg_controllen;
	size_t left = msg_data_left(msg);
	int flags = msg->msg_flags;
	int ret;

	msg->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL |
			 (flags & MSG_SPLICE_PAGES_COMPAT);
	msg->msg_controllen = 0;
	iov_iter_truncate(&msg->msg_iter, len);
	ret = mbtcp_tcp_send(sk, ctx, msg, len, true);
	iov_iter_reexpand(&msg->msg_iter, left - max(ret, 0));
	msg->msg_controllen = controllen;
	msg->msg_flags = flags;
	return ret;
}

/* Copy up to @len bytes of @msg behind the staged ones. */
static int mbtcp_stage(struct mbtcp_sock *ctx, char *buf,
		       struct msghdr *msg, size_t len)
{
	size_t copied;

	/* Keep the free space in one piece at the end. */
	if (ctx->head + ctx->staged + len > mbtcp_size()) {
		memmove(buf, buf + ctx->head, ctx->staged);
		ctx->head = 0;
	}
	copied = copy_from_iter(buf + ctx->head + ctx->staged, len,
				&msg->msg_iter);
	if (!copied)
		return -EFAULT;
	WRITE_ONCE(ctx->staged, ctx->staged + copied);
	return copied;
}

#define MBTCP_SEND_FLAGS (MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL | \
			  MSG_EOR | MSG_WAITALL | MSG_CMSG_COMPAT | \
			  MSG_BATCH | MSG_SENDPAGE_NOTLAST_COMPAT)

/* MSG_MORE holds the bytes back (but for the end of a record). */
static bool mbtcp_more(int flags)
{
	return (flags & (MSG_MORE | MSG_SENDPAGE_NOTLAST_COMPAT)) &&
	       !(flags & MSG_EOR);
}

static int mbtcp_send_error(struct sock *sk)
{
	if (sk->sk_err)
		return sock_error(sk);
	if ((sk->sk_shutdown & SEND_SHUTDOWN) ||
	    !((1 << sk->sk_state) & (TCPF_ESTABLISHED | TCPF_CLOSE_WAIT)))
		return -EPIPE;
	return 0;
}

/*
 * The send loop, under the socket lock, for @msg after the @copied bytes
 * mbtcp_send_fast() sent. Returns the bytes accepted, or an error. Out
 * of line, so that the fast path's caller stays a small function.
 */
static noinline int mbtcp_send_loop(struct sock *sk,
				    struct mbtcp_sock *ctx,
				    struct msghdr *msg, size_t copied)
{
	bool more = mbtcp_more(msg->msg_flags);
	size_t left, len;
	unsigned int room;
	int err = 0, ret;
	long timeo;
	char *buf;

	timeo = sock_sndtimeo(sk, msg->msg_flags & MSG_DONTWAIT);
	WRITE_ONCE(ctx->sending, true);
	while (msg_data_left(msg)) {
		err = mbtcp_send_error(sk);
		if (err)
			break;

		/*
		 * Drained while others wait: the buffer goes to them, and
		 * this send queues behind them for its next turn.
		 */
		if (ctx->used && mbtcp_holds(ctx) &&
		    !mbtcp_unsent(sk, ctx) && mbtcp_contended(ctx))
			mbtcp_put(ctx);

		/* Never kept across a wait: a callback may give it back. */
		buf = mbtcp_get(ctx);
		room = buf ? mbtcp_room(sk, ctx) : 0;
		if (!room) {
			/* Full: TCP must transmit before more can come. */
			if (buf)
				mbtcp_flush(sk, ctx);
			err = mbtcp_wait(sk, ctx, &timeo, true);
			if (err)
				break;
			continue;
		}
		left = msg_data_left(msg);
		len = min_t(size_t, room, left);

		/*
		 * With nothing staged the bytes may go straight to TCP, but
		 * for small MSG_MORE writes: those the buffer coalesces.
		 */
		ret = -EAGAIN;
		if (!ctx->staged && (!more || room <= left))
			ret = mbtcp_write_through(sk, ctx, msg, len);
		if (ret == -EAGAIN || !ret)
			ret = mbtcp_stage(ctx, buf, msg, len);
		if (ret < 0) {
			err = ret;
			break;
		}
		ctx->used = true;
		copied += ret;
		/* A full buffer goes on, held bytes and all. */
		if (mbtcp_unsent(sk, ctx) >= mbtcp_size())
			mbtcp_flush(sk, ctx);
	}

	/* A send without MSG_MORE is a flush mark: all before it goes. */
	if (!more || err)
		WRITE_ONCE(ctx->flushed, ctx->staged);
	if (ctx->flushed) {
		ret = mbtcp_push(sk, ctx);
		if (ret && ret != -EAGAIN && !copied)
			err = ret;
	}
	WRITE_ONCE(ctx->sending, false);
	mbtcp_settle(sk, ctx);
	return copied ?: err;
}

/*
 * The common send, on its own: the socket holds its buffer, nothing is
 * staged (so the unsent bytes are all TCP's), nobody waits for a buffer,
 * and the whole of @msg fits beside the unsent bytes without leaving the
 * socket unwritable, with no MSG_MORE to hold it back and no control
 * message to ignore. It goes straight to TCP as mbtcp_write_through()
 * would send it, without the loop's other cases to rule out first: most
 * sends of small writes are this one, and under emulation every
 * instruction of theirs shows. What TCP checks itself, and refuses as
 * mbtcp_send_error() would (EPIPE: shut down for writing, or no longer
 * connected), is left to TCP; a pending error is not, which TCP leaves
 * pending while the connection is established (EPIPE) and the loop
 * reports. Returns the bytes TCP took, TCP's error, or 0 (nothing sent:
 * TCP is full, or the send is not this one) to leave the send to the
 * loop.
 */
static int mbtcp_send_fast(struct sock *sk, struct mbtcp_sock *ctx,
			   struct msghdr *msg)
{
	size_t left;
	int flags, ret;

	if (unlikely(mbtcp_more(msg->msg_flags)))
		return 0;
	/* Then the pool, a call: nothing read before need survive it. */
	if (mbtcp_contended(ctx))
		return 0;
	flags = msg->msg_flags;
	left = msg_data_left(msg);
	if (!left || msg->msg_controllen || ctx->staged || !mbtcp_holds(ctx) ||
	    READ_ONCE(sk->sk_err) || mbtcp_notsent(sk) + left > tcp_buf_fill)
		return 0;
	msg->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL |
			 (flags & MSG_SPLICE_PAGES_COMPAT);
	ret = mbtcp_tcp_call(sk, ctx, msg, left, false);
	msg->msg_flags = flags;
	if (ret == -EAGAIN)
		return 0;
	if (ret > 0)
		ctx->used = true;
	return ret;
}

static int mbtcp_sendmsg(struct sock *sk, struct msghdr *msg, size_t size)
{
	struct mbtcp_sock *ctx;
	int ret;

	/*
	 * Spliced pages go to TCP as they are when they go straight to it,
	 * and are copied when they are staged.
	 */
	if (msg->msg_flags & ~(MBTCP_SEND_FLAGS | MSG_SPLICE_PAGES_COMPAT))
		return -EOPNOTSUPP;

	/* The flags are read from @msg again where needed: fewer to keep. */
	lock_sock(sk);
	ctx = mbtcp_sk_ctx(sk);
	ret = mbtcp_send_fast(sk, ctx, msg);
	if (likely(ret > 0 && !msg_data_left(msg))) {
		/* TCP holds bytes and will say when they go: the rule. */
		if (!mbtcp_notsent(sk) ||
		    !test_bit(SOCK_NOSPACE, &sk->sk_socket->flags))
			mbtcp_settle(sk, ctx);
	} else if (ret < 0) {
		mbtcp_settle(sk, ctx);
	} else {
		ret = mbtcp_send_loop(sk, ctx, msg, ret);
	}
	release_sock(sk);
	if (ret == -EPIPE)
		return sk_stream_error(sk, msg->msg_flags, ret);
	return ret;
}

static int mbtcp_recvmsg(struct sock *sk, struct msghdr *msg, size_t len,
			 int flags, int *addr_len)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);
	int err;

	if (mbtcp_recv_blocked(sk, ctx)) {
		long timeo = sock_rcvtimeo(sk, flags & MSG_DONTWAIT);

		lock_sock(sk);
		err = mbtcp_wait(sk, ctx, &timeo, false);
		release_sock(sk);
		if (err)
			return err;
	}
	return mbtcp_base_prot(sk)->recvmsg(sk, msg, len, flags, addr_len);
}

static __poll_t mbtcp_poll(struct file *file, struct socket *sock,
			   poll_table *wait)
{
	struct sock *sk = sock->sk;
	const struct proto_ops *ops;
	struct mbtcp_sock *ctx;
	__poll_t mask;

	ops = sk->sk_family == AF_INET6 ? saved_tcpv6_ops : &inet_stream_ops;
	mask = ops->poll(file, sock, wait);
	ctx = mbtcp_sk_ctx(sk);

	/*
	 * Writable: the socket can take bytes now, into its buffer (even when
	 * TCP's own queue is full); parked, not at all. Shut down for writing,
	 * as TCP says (writable, so that send() reports it), and so on a
	 * hang-up or an error: the socket's send() fails at once.
	 */
	if (mbtcp_parked(ctx)) {
		mask &= ~MBTCP_POLL_OUT;
	} else if (!(mask & (EPOLLERR | EPOLLHUP)) &&
		   !(READ_ONCE(sk->sk_shutdown) & SEND_SHUTDOWN)) {
		mask &= ~MBTCP_POLL_OUT;
		if (mbtcp_writable(sk, ctx))
			mask |= EPOLLOUT | EPOLLWRNORM;
	}
	/* Errors, hang-ups and end of file can always be read. */
	if (mbtcp_recv_blocked(sk, ctx) &&
	    !(mask & (EPOLLERR | EPOLLRDHUP | EPOLLHUP)))
		mask &= ~(EPOLLIN | EPOLLRDNORM | EPOLLRDBAND | EPOLLPRI);
	return mask;
}

/*
 * shutdown(SHUT_WR): the staged bytes go to TCP before the FIN, past its
 * limits. Nothing can be sent afterwards: a parked socket leaves the queue
 * (and may read again), and the buffer goes back once TCP has transmitted
 * what it covers (at once, or from the write-space callback). Called by
 * inet_shutdown() under the socket lock; the waiter's callback does not
 * take it, so the cancel may wait for the callback here.
 */
static void mbtcp_shutdown(struct sock *sk, int how)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);
	int err;

	if (how & SEND_SHUTDOWN) {
		if (ctx->staged) {
			/* inet_shutdown() marked the socket already; with its
			 * lock held, no sender can slip in while it is lifted.
			 * The push may process the backlog: what TCP sets in
			 * sk_shutdown meanwhile (a FIN, a reset) stays.
			 */
			WRITE_ONCE(sk->sk_shutdown,
				   sk->sk_shutdown & ~SEND_SHUTDOWN);
			err = mbtcp_push_force(sk, ctx);
			WRITE_ONCE(sk->sk_shutdown,
				   sk->sk_shutdown | SEND_SHUTDOWN);
			if (err)
				mbtcp_drop(sk, ctx, err);
		}
		if (mbtcp_parked(ctx))
			mbtcp_cancel(ctx);
	}
	mbtcp_base_prot(sk)->shutdown(sk, how);
	if (how & SEND_SHUTDOWN) {
		mbtcp_settle(sk, ctx);
		mbtcp_wake(sk);
	}
}

/*
 * connect(AF_UNSPEC) would take the socket back to where it could listen.
 * The core has counted a disconnect before asking: a thread sleeping in
 * TCP's recvmsg() on the socket returns EPIPE (those sleeping in the
 * ULP's waits do not), and a later connect() fails with EINVAL.
 */
static int mbtcp_disconnect(struct sock *sk, int flags)
{
	return -EOPNOTSUPP;
}

/* TCP's not-sent low-water mark, lifted while close or shutdown push. */
static bool mbtcp_stream_memory_free(const struct sock *sk, int wake)
{
	const struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);

	if (READ_ONCE(ctx->forcing))
		return true;
	return mbtcp_base_prot(sk)->stream_memory_free(sk, wake);
}

/*
 * SIOCOUTQ and SIOCOUTQNSD count the staged bytes too, read under the
 * socket lock: a push moves bytes from one count to the other.
 */
static int mbtcp_outq(struct sock *sk, int cmd, int *answ)
{
	const struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);
	const struct tcp_sock *tp = tcp_sk(sk);
	bool slow;

	if (cmd != SIOCOUTQ && cmd != SIOCOUTQNSD)
		return -ENOIOCTLCMD;
	slow = lock_sock_fast(sk);
	*answ = tp->write_seq - (cmd == SIOCOUTQ ? tp->snd_una : tp->snd_nxt) +
		ctx->staged;
	unlock_sock_fast(sk, slow);
	return 0;
}

#ifdef MBUFMUX_HAVE_IOCTL_KARG
static int mbtcp_ioctl(struct sock *sk, int cmd, int *karg)
{
	int err = mbtcp_outq(sk, cmd, karg);

	if (err == -ENOIOCTLCMD)
		return mbtcp_base_prot(sk)->ioctl(sk, cmd, karg);
	return err;
}
#else
static int mbtcp_ioctl(struct sock *sk, int cmd, unsigned long arg)
{
	int answ, err = mbtcp_outq(sk, cmd, &answ);

	if (err == -ENOIOCTLCMD)
		return mbtcp_base_prot(sk)->ioctl(sk, cmd, arg);
	return put_user(answ, (int __user *)arg);
}
#endif

static void mbtcp_ctx_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct mbtcp_sock, rcu));
}

static void mbtcp_close(struct sock *sk, long timeout)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);
	struct proto *sk_proto = mbtcp_base_prot(sk);
	bool keep;
	int err;

	lock_sock(sk);
	if (sock_flag(sk, SOCK_LINGER) && !sk->sk_lingertime) {
		/* An abortive close: TCP drops its own queue too. */
		mbtcp_drop(sk, ctx, -ECONNABORTED);
	} else if (ctx->staged) {
		err = mbtcp_push_force(sk, ctx);
		if (err)
			mbtcp_drop(sk, ctx, err);
	}
	ctx->closing = true;
	/*
	 * The buffer stays with TCP's bytes until TCP has transmitted them
	 * or given up, and TCP destroys the socket (mbtcp_release()).
	 */
	keep = mbtcp_holds(ctx) && mbtcp_notsent(sk) && !mbtcp_dead(sk);
	write_lock_bh(&sk->sk_callback_lock);
	WRITE_ONCE(sk->sk_prot, sk_proto);
	if (sk->sk_write_space == mbtcp_write_space)
		sk->sk_write_space = ctx->sk_write_space;
	if (sk->sk_error_report == mbtcp_error_report)
		sk->sk_error_report = ctx->sk_error_report;
	write_unlock_bh(&sk->sk_callback_lock);
	release_sock(sk);

	/*
	 * The callbacks are TCP's again and ran under the socket lock we
	 * just took, so nothing can queue the tx work any more; disabling it
	 * also keeps a late queue_work() from reviving it. Neither may run
	 * under the socket lock: the tx work takes it.
	 */
	if (mbufmux_disable_work_sync(&ctx->tx_work))
		sock_put(sk);
	if (keep) {
		/* No callback may run once the socket is gone. */
		mbufmux_waiter_flush(&ctx->waiter);
	} else {
		mbtcp_cancel(ctx);
		mbtcp_user_detach(&ctx->user_waiter);
	}
	sk_proto->close(sk, timeout);
}

/*
 * TCP destroys the socket (tcp_cleanup_ulp(), in any context, the socket
 * dead): the buffer a closed socket kept for its last bytes goes back, and
 * the context after the readers of icsk_ulp_data.
 */
static void mbtcp_release(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);

	if (!ctx)
		return;
	WARN_ON_ONCE(!ctx->closing);
	rcu_assign_pointer(icsk->icsk_ulp_data, NULL);
	mbtcp_put(ctx);
	mbtcp_user_detach(&ctx->user_waiter);
	call_rcu(&ctx->rcu, mbtcp_ctx_free_rcu);
}

static int mbtcp_getsockopt(struct sock *sk, int level, int optname,
			    char __user *optval, int __user *optlen)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);
	struct mbufmux_info info = {};
	int len, val;

	if (level != SOL_MBUFMUX)
		return mbtcp_base_prot(sk)->getsockopt(sk, level, optname,
						       optval, optlen);
	if (get_user(len, optlen))
		return -EFAULT;
	if (len < 0)
		return -EINVAL;

	switch (optname) {
	case MBUFMUX_INFO:
		lock_sock(sk);
		if (mbtcp_holds(ctx))
			info.flags |= MBUFMUX_F_HOLDS_BUF;
		if (mbtcp_parked(ctx))
			info.flags |= MBUFMUX_F_PARKED;
		info.block = ctx->block;
		info.buf_size = mbtcp_size();
		info.staged = ctx->staged;
		/* Parked on the pool's queue or on the user's, both count. */
		info.waits = READ_ONCE(ctx->waiter.waits);
		info.handoffs = READ_ONCE(ctx->waiter.handoffs);
		info.wait_ns = READ_ONCE(ctx->waiter.wait_ns);
		mbtcp_user_info(&ctx->user_waiter, &info);
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

/* TCP_NODELAY set, TCP_CORK cleared: TCP pushes its queue, we ours. */
static bool mbtcp_flushes(int level, int optname, sockptr_t optval,
			  unsigned int optlen)
{
	int val;

	if (level != SOL_TCP || (optname != TCP_NODELAY && optname != TCP_CORK))
		return false;
	if (optlen < sizeof(int) || copy_from_sockptr(&val, optval, sizeof(val)))
		return false;
	return optname == TCP_NODELAY ? val : !val;
}

static int mbtcp_setsockopt(struct sock *sk, int level, int optname,
			    sockptr_t optval, unsigned int optlen)
{
	struct mbtcp_sock *ctx = mbtcp_sk_ctx(sk);
	int val, err;

	if (level != SOL_MBUFMUX) {
		err = mbtcp_base_prot(sk)->setsockopt(sk, level, optname,
						      optval, optlen);
		if (err || !mbtcp_flushes(level, optname, optval, optlen))
			return err;
		lock_sock(sk);
		mbtcp_flush(sk, ctx);
		mbtcp_settle(sk, ctx);
		release_sock(sk);
		return 0;
	}
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
	mbtcp_wake(sk);
	return 0;
}

#ifdef MBUFMUX_HAVE_SENDPAGE
/* Before 6.5, sendfile() reaches TCP through ->sendpage: copy it too. */
static int mbtcp_sendpage(struct sock *sk, struct page *page, int offset,
			  size_t size, int flags)
{
	struct bio_vec bvec = {
		.bv_page = page, .bv_offset = offset, .bv_len = size,
	};
	struct msghdr msg = { .msg_flags = flags & ~MSG_SENDPAGE_NOPOLICY };

	iov_iter_bvec(&msg.msg_iter, ITER_SOURCE, &bvec, 1, size);
	return mbtcp_sendmsg(sk, &msg, size);
}

static void mbtcp_build_sendpage(struct proto *prot)
{
	prot->sendpage = mbtcp_sendpage;
}
#else
/* sendfile() and splice() come through ->sendmsg (MSG_SPLICE_PAGES). */
static void mbtcp_build_sendpage(struct proto *prot)
{
}
#endif

static void mbtcp_build_proto(struct proto *prot, const struct proto *base,
			      struct proto_ops *ops,
			      const struct proto_ops *base_ops)
{
	*prot = *base;
	prot->close = mbtcp_close;
	prot->sendmsg = mbtcp_sendmsg;
	prot->recvmsg = mbtcp_recvmsg;
	prot->shutdown = mbtcp_shutdown;
	prot->disconnect = mbtcp_disconnect;
	prot->getsockopt = mbtcp_getsockopt;
	prot->setsockopt = mbtcp_setsockopt;
	prot->stream_memory_free = mbtcp_stream_memory_free;
	prot->ioctl = mbtcp_ioctl;
	mbtcp_build_sendpage(prot);
	/* sockmap would route sends around the staged bytes: refuse it. */
	prot->psock_update_sk_prot = NULL;

	*ops = *base_ops;
	ops->poll = mbtcp_poll;
}

/* Build the IPv6 copies from the first IPv6 socket, as kTLS does. */
static int mbtcp_build_tcpv6(struct sock *sk)
{
	struct proto *prot = READ_ONCE(sk->sk_prot);
	int err = 0;

	/* Pairs with the release below: the copies are built */
	if (likely(prot == smp_load_acquire(&saved_tcpv6_prot)))
		return sk->sk_socket->ops == saved_tcpv6_ops ? 0 : -EOPNOTSUPP;

	mutex_lock(&tcpv6_prot_mutex);
	if (!saved_tcpv6_prot) {
		mbtcp_build_proto(&mbtcp_prots[MBTCP_IPV6], prot,
				  &mbtcp_proto_ops[MBTCP_IPV6],
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

static int mbtcp_ulp_init(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	struct mbtcp_sock *ctx;
	int ver, err;

	/* No clone(): a listener's children would share the context. */
	if (sk->sk_state != TCP_ESTABLISHED)
		return -ENOTCONN;
	/* sockmap and friends own sk_user_data and replace sk_prot. */
	if (READ_ONCE(sk->sk_user_data) || !sk->sk_socket)
		return -EOPNOTSUPP;

	if (sk->sk_family == AF_INET6) {
		err = mbtcp_build_tcpv6(sk);
		if (err)
			return err;
		ver = MBTCP_IPV6;
	} else if (sk->sk_prot == &tcp_prot &&
		   sk->sk_socket->ops == &inet_stream_ops) {
		ver = MBTCP_IPV4;
	} else {
		return -EOPNOTSUPP;
	}

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;
	mbufmux_waiter_init(&ctx->waiter, tcp_pool, &mbtcp_waiter_ops);
	INIT_WORK(&ctx->tx_work, mbtcp_tx_work);
	ctx->sk = sk;
	ctx->block = MBUFMUX_BLOCK_BOTH;
#ifdef CONFIG_MEMCG
	/* Buffers allocated for it while it waits are charged to its cgroup. */
	ctx->waiter.memcg = sk->sk_memcg;
#endif
	/*
	 * The reserve is for the administrator's sockets, which the per-user
	 * cap leaves alone. capable() looks at the initial user namespace:
	 * root of its own namespace is an ordinary user here.
	 */
	if (capable(CAP_NET_ADMIN)) {
		ctx->margin = 0;
	} else {
		ctx->margin = MBUFMUX_MARGIN_RESERVE;
		err = mbtcp_user_attach(&ctx->user_waiter, sk->sk_uid);
		if (err) {
			kfree(ctx);
			return err;
		}
	}

	/* Publish the context before the ops that use it (CVE-2024-36489). */
	write_lock_bh(&sk->sk_callback_lock);
	rcu_assign_pointer(icsk->icsk_ulp_data, ctx);
	ctx->sk_write_space = sk->sk_write_space;
	sk->sk_write_space = mbtcp_write_space;
	ctx->sk_error_report = sk->sk_error_report;
	sk->sk_error_report = mbtcp_error_report;
	WRITE_ONCE(sk->sk_prot, &mbtcp_prots[ver]);
	WRITE_ONCE(sk->sk_socket->ops, &mbtcp_proto_ops[ver]);
	write_unlock_bh(&sk->sk_callback_lock);
	return 0;
}

static struct tcp_ulp_ops mbtcp_ulp_ops __read_mostly = {
	.name		= "mbufmux",
	.owner		= THIS_MODULE,
	.init		= mbtcp_ulp_init,
	.release	= mbtcp_release,
};

static int __init mbtcp_module_init(void)
{
	struct mbufmux_pool_params params = {
		.name = "tcp",
		.buf_size = buf_size,
		.limit = limit,
		.reserve = reserve,
		.prealloc = reserve,
		/* Only [head, head + staged) is sent: bytes it wrote itself. */
		.flags = MBUFMUX_POOL_NO_ZERO,
	};
	int err;

	mbtcp_build_proto(&mbtcp_prots[MBTCP_IPV4], &tcp_prot,
			  &mbtcp_proto_ops[MBTCP_IPV4], &inet_stream_ops);

	mbtcp_wq = alloc_workqueue("mbufmux_tcp", 0, 0);
	if (!mbtcp_wq)
		return -ENOMEM;

	/* The pool checks the parameters: only they can be out of range. */
	tcp_pool = mbufmux_pool_create(&params);
	if (IS_ERR(tcp_pool)) {
		err = PTR_ERR(tcp_pool);
		tcp_pool = NULL;
		if (err == -EINVAL)
			pr_err("bad parameters: need %u <= buf_size <= %u, 0 <= reserve < limit <= %u\n",
			       MBUFMUX_BUF_SIZE_MIN, MBUFMUX_BUF_SIZE_MAX,
			       MBUFMUX_LIMIT_MAX);
		goto err_wq;
	}
	tcp_buf_size = mbufmux_pool_buf_size(tcp_pool);
	tcp_buf_fill = tcp_buf_size - tcp_buf_size / 4;

	/* As for any debugfs user: without its files, the ULP still works. */
	mbtcp_debugfs = debugfs_create_dir(KBUILD_MODNAME, NULL);
	mbtcp_user_debugfs(mbtcp_debugfs);
	err = tcp_register_ulp(&mbtcp_ulp_ops);
	if (err)
		goto err_debugfs;
	return 0;

err_debugfs:
	debugfs_remove(mbtcp_debugfs);
	mbufmux_pool_destroy(tcp_pool);
	tcp_pool = NULL;
err_wq:
	destroy_workqueue(mbtcp_wq);
	return err;
}

static void __exit mbtcp_module_exit(void)
{
	/* Every attached socket holds a module reference: none is left. */
	tcp_unregister_ulp(&mbtcp_ulp_ops);
	/* Waits for the files' readers: none is left for what goes below. */
	debugfs_remove(mbtcp_debugfs);
	destroy_workqueue(mbtcp_wq);
	/* Contexts are freed after a grace period. */
	rcu_barrier();
	mbufmux_pool_destroy(tcp_pool);
}

module_init(mbtcp_module_init);
module_exit(mbtcp_module_exit);

MODULE_AUTHOR("The mbufmux developers");
MODULE_DESCRIPTION("mbufmux TCP upper-layer protocol: socket buffers from a shared, bounded pool");
MODULE_LICENSE("GPL");
MODULE_VERSION(MBUFMUX_VERSION);
MODULE_ALIAS_TCP_ULP("mbufmux");
