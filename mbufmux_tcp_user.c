// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmux_tcp: the per-user cap.
 *
 * Sockets of one user (the socket's owner, sk_uid) hold at most user_limit
 * buffers or places in the pool's queue at once; the next one parks on the
 * user's own FIFO, in front of the pool, exactly as if it were parked on
 * the pool, until one of the user's sockets gives its buffer back. Sockets
 * attached with CAP_NET_ADMIN (those allowed the reserve) are exempt: the
 * ULP does not attach them here. The interface: mbufmux_tcp_user.h.
 *
 * Locking: mbtcp_users_lock, taken with bottom halves off, protects the
 * users' hash, each user, and what the cap changes in a waiter (its place
 * on the FIFO, its slot, and the socket's wait counts while it is parked:
 * mbtcp_user_count()); each socket serialises its own calls.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/hashtable.h>
#include <linux/ktime.h>
#include <linux/lockdep.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#include "mbufmux.h"
#include "mbufmux_tcp_user.h"
#include "uapi/mbufmux.h"

/**
 * struct mbtcp_user - one user's share of the pool
 * @node: in mbtcp_users, hashed by @uid
 * @uid: the sockets' owner
 * @socks: attached sockets of this user that the cap applies to
 * @held: of those, the sockets counted against the cap (@slot)
 * @nr_parked: sockets on @parked
 * @parked: sockets waiting for one of the user's slots, oldest first
 *
 * Everything here is under mbtcp_users_lock.
 */
struct mbtcp_user {
	struct hlist_node node;
	kuid_t uid;
	unsigned int socks;
	unsigned int held;
	unsigned int nr_parked;
	struct list_head parked;
};

static unsigned int user_limit;
static DEFINE_HASHTABLE(mbtcp_users, 6);
/* Protects mbtcp_users, each mbtcp_user and its waiters (see above). */
static DEFINE_SPINLOCK(mbtcp_users_lock);

/* The cap: user_limit, or by default half of what the reserve leaves. */
static unsigned int mbtcp_user_cap(void)
{
	unsigned int cap = READ_ONCE(user_limit);

	if (cap)
		return cap;
	return max(1U, mbtcp_unreserved() / 2);
}

/* Give the free slots of @user to its parked sockets, oldest first. */
static void mbtcp_user_grant_locked(struct mbtcp_user *user)
{
	unsigned int cap = mbtcp_user_cap();
	struct mbtcp_user_waiter *w;

	lockdep_assert_held(&mbtcp_users_lock);
	while (user->held < cap && !list_empty(&user->parked)) {
		w = list_first_entry(&user->parked, struct mbtcp_user_waiter,
				     node);
		list_del_init(&w->node);
		WRITE_ONCE(user->nr_parked, user->nr_parked - 1);
		user->held++;
		/* Counted before the socket may see its slot and queue in
		 * the pool, which adds to the same counts.
		 */
		mbtcp_user_count(w, 0, ktime_get_ns() - w->parked_ns);
		WRITE_ONCE(w->parked, false);
		/* Pairs with smp_load_acquire() in mbtcp_user_take() */
		smp_store_release(&w->slot, true);
		/* Still attached: close takes it off the FIFO first. */
		mbtcp_user_granted(w);
	}
}

/**
 * mbtcp_user_cap_changed() - grant what a larger cap allows
 *
 * The cap may have grown: user_limit, or the limit or reserve it follows
 * by default, changed. Parked sockets get the new slots at once.
 *
 * Context: process or softirq context; takes the cap's lock.
 */
void mbtcp_user_cap_changed(void)
{
	struct mbtcp_user *user;
	unsigned int bkt;

	spin_lock_bh(&mbtcp_users_lock);
	hash_for_each(mbtcp_users, bkt, user, node)
		mbtcp_user_grant_locked(user);
	spin_unlock_bh(&mbtcp_users_lock);
}

/**
 * mbtcp_user_take() - may the socket go to the pool?
 * @w: the socket's place under the cap
 *
 * Yes if it counts against its user's cap already, or the cap has room
 * and nobody of that user is parked before it; otherwise it is parked on
 * the user's FIFO (once), until mbtcp_user_granted() says it may go.
 *
 * Context: process or softirq context; takes the cap's lock.
 * Return: true if the socket may take a buffer or queue in the pool.
 */
bool mbtcp_user_take(struct mbtcp_user_waiter *w)
{
	struct mbtcp_user *user = w->user;
	bool ok;

	/*
	 * Only the socket itself clears @slot: true stays true. Pairs with
	 * the release in mbtcp_user_grant_locked(): the wait is counted.
	 */
	if (!user || smp_load_acquire(&w->slot))
		return true;

	spin_lock_bh(&mbtcp_users_lock);
	ok = w->slot;
	if (!ok && !w->parked) {
		if (list_empty(&user->parked) &&
		    user->held < mbtcp_user_cap()) {
			user->held++;
			WRITE_ONCE(w->slot, true);
			ok = true;
		} else {
			list_add_tail(&w->node, &user->parked);
			WRITE_ONCE(user->nr_parked, user->nr_parked + 1);
			w->parked_ns = ktime_get_ns();
			mbtcp_user_count(w, 1, 0);
			WRITE_ONCE(w->parked, true);
		}
	}
	spin_unlock_bh(&mbtcp_users_lock);
	return ok;
}

/**
 * mbtcp_user_put() - the socket gave its buffer or its place back
 * @w: the socket's place under the cap
 *
 * Leaves the user's FIFO, and gives the slot to the next parked socket of
 * the user.
 *
 * Context: any but hard interrupts; takes the cap's lock.
 */
void mbtcp_user_put(struct mbtcp_user_waiter *w)
{
	struct mbtcp_user *user = w->user;

	if (!user)
		return;
	spin_lock_bh(&mbtcp_users_lock);
	if (w->parked) {
		list_del_init(&w->node);
		WRITE_ONCE(user->nr_parked, user->nr_parked - 1);
		WRITE_ONCE(w->parked, false);
	}
	if (w->slot) {
		WRITE_ONCE(w->slot, false);
		user->held--;
		mbtcp_user_grant_locked(user);
	}
	spin_unlock_bh(&mbtcp_users_lock);
}

/**
 * mbtcp_user_attach() - bring a socket under its user's cap
 * @w: the socket's place under the cap, zeroed
 * @uid: the socket's owner
 *
 * Context: process context, may sleep.
 * Return: 0, or -ENOMEM.
 */
int mbtcp_user_attach(struct mbtcp_user_waiter *w, kuid_t uid)
{
	struct mbtcp_user *user, *new;

	new = kzalloc(sizeof(*new), GFP_KERNEL);
	if (!new)
		return -ENOMEM;
	spin_lock_bh(&mbtcp_users_lock);
	hash_for_each_possible(mbtcp_users, user, node, __kuid_val(uid)) {
		if (uid_eq(user->uid, uid))
			goto found;
	}
	user = new;
	new = NULL;
	user->uid = uid;
	INIT_LIST_HEAD(&user->parked);
	hash_add(mbtcp_users, &user->node, __kuid_val(uid));
found:
	user->socks++;
	spin_unlock_bh(&mbtcp_users_lock);
	kfree(new);
	INIT_LIST_HEAD(&w->node);
	w->user = user;
	return 0;
}

/**
 * mbtcp_user_detach() - at close: give everything back, leave the share
 * @w: the socket's place under the cap
 *
 * Afterwards the cap no longer applies to the socket.
 *
 * Context: any but hard interrupts; takes the cap's lock.
 */
void mbtcp_user_detach(struct mbtcp_user_waiter *w)
{
	struct mbtcp_user *user = w->user;

	if (!user)
		return;
	mbtcp_user_put(w);
	spin_lock_bh(&mbtcp_users_lock);
	if (--user->socks) {
		user = NULL;
	} else {
		WARN_ON_ONCE(user->held || user->nr_parked);
		hash_del(&user->node);
	}
	spin_unlock_bh(&mbtcp_users_lock);
	kfree(user);
	w->user = NULL;
}

/* For mbtcp_user_contended(): a lockless snapshot. */
bool __mbtcp_user_contended(const struct mbtcp_user *user)
{
	return READ_ONCE(user->nr_parked);
}

/**
 * mbtcp_user_info() - the cap's part of a socket's MBUFMUX_INFO
 * @w: the socket's place under the cap
 * @info: what getsockopt() returns: the cap adds its flag (its waits are
 *	counted with the pool's, see mbtcp_user_count())
 *
 * Context: any; lockless.
 */
void mbtcp_user_info(const struct mbtcp_user_waiter *w,
		     struct mbufmux_info *info)
{
	if (READ_ONCE(w->parked))
		info->flags |= MBUFMUX_F_USER_CAP;
}

static int mbtcp_users_show(struct seq_file *m, void *v)
{
	struct mbtcp_user *user;
	unsigned int bkt;

	spin_lock_bh(&mbtcp_users_lock);
	seq_printf(m, "cap %u\n", mbtcp_user_cap());
	hash_for_each(mbtcp_users, bkt, user, node)
		seq_printf(m, "uid=%u socks=%u held=%u parked=%u\n",
			   from_kuid_munged(seq_user_ns(m), user->uid),
			   user->socks, user->held, user->nr_parked);
	spin_unlock_bh(&mbtcp_users_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(mbtcp_users);

/**
 * mbtcp_user_debugfs() - the cap's debugfs file, ``users``
 * @dir: the ULP's debugfs directory, which takes the file with it when it
 *	is removed
 *
 * Context: process context.
 */
void mbtcp_user_debugfs(struct dentry *dir)
{
	debugfs_create_file("users", 0444, dir, NULL, &mbtcp_users_fops);
}

static int mbtcp_user_limit_set(const char *val,
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
	/* At load, nobody is attached yet: nothing to grant. */
	mbtcp_user_cap_changed();
	return 0;
}

static const struct kernel_param_ops mbtcp_user_limit_ops = {
	.set = mbtcp_user_limit_set,
	.get = param_get_uint,
};

module_param_cb(user_limit, &mbtcp_user_limit_ops, &user_limit, 0644);
MODULE_PARM_DESC(user_limit, "most buffers the sockets of one user hold or wait for at once (0: (limit - reserve) / 2, at least 1); CAP_NET_ADMIN sockets are exempt");
