/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mbufmux - what differs between the kernels it builds against (6.1 and
 * 6.12), in one place.
 *
 * Keyed on features, after WireGuard's compat layer: where the kernel has
 * a macro for a feature (SLAB_NO_MERGE, MSG_SENDPAGE_NOTLAST), that macro;
 * else an MBUFMUX_HAVE_<feature>, defined from the version that brought
 * the feature. Then what the sources use either way: a value, or a small
 * helper with a body for each, so that no function body of theirs tests a
 * version (only whole definitions may differ, where a prototype does).
 * The sources include this header and no <linux/version.h>. When a kernel
 * is no longer supported, what only it needed goes from here.
 */
#ifndef _MBUFMUX_COMPAT_H
#define _MBUFMUX_COMPAT_H

#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/version.h>
#include <linux/workqueue.h>

/* 6.5: ->sendpage gone; sendfile() and splice() pass MSG_SPLICE_PAGES. */
#if KERNEL_VERSION(6, 5, 0) > LINUX_VERSION_CODE
#define MBUFMUX_HAVE_SENDPAGE
#endif
/* 6.5: a protocol's ->ioctl() gets a kernel int, not the user's pointer. */
#if KERNEL_VERSION(6, 5, 0) <= LINUX_VERSION_CODE
#define MBUFMUX_HAVE_IOCTL_KARG
#endif
/* 6.7: shrinker_alloc(), with a private pointer; objpool. */
#if KERNEL_VERSION(6, 7, 0) <= LINUX_VERSION_CODE
#define MBUFMUX_HAVE_SHRINKER_ALLOC
#define MBUFMUX_HAVE_OBJPOOL
#endif
/* 6.10: disable_work_sync(). */
#if KERNEL_VERSION(6, 10, 0) <= LINUX_VERSION_CODE
#define MBUFMUX_HAVE_DISABLE_WORK
#endif

/*
 * The send flags a sendmsg() may carry, 0 where they mean nothing. Keyed
 * on ->sendpage, not on the flag: Debian's 6.1 defines MSG_SPLICE_PAGES
 * (backported) but still sends pages with ->sendpage.
 */
#ifdef MBUFMUX_HAVE_SENDPAGE
#define MSG_SPLICE_PAGES_COMPAT		0
#else
#define MSG_SPLICE_PAGES_COMPAT		MSG_SPLICE_PAGES
#endif
#ifdef MSG_SENDPAGE_NOTLAST
#define MSG_SENDPAGE_NOTLAST_COMPAT	MSG_SENDPAGE_NOTLAST
#else
#define MSG_SENDPAGE_NOTLAST_COMPAT	0
#endif

/* 6.5: SLAB_NO_MERGE; before, a cache with a usercopy region never merges. */
#ifndef SLAB_NO_MERGE
#define SLAB_NO_MERGE			0
#endif

/**
 * mbufmux_disable_work_sync() - stop a work item for good
 * @work: the work item
 *
 * disable_work_sync() where the kernel has it (6.10): cancels @work, waits
 * for it to finish, and keeps a later queue_work() from queueing it again.
 * Before, cancel_work_sync(), which does not: the caller must make sure
 * that nothing queues @work any more.
 *
 * Context: process context, may sleep.
 * Return: true if @work was pending.
 */
static inline bool mbufmux_disable_work_sync(struct work_struct *work)
{
#ifdef MBUFMUX_HAVE_DISABLE_WORK
	return disable_work_sync(work);
#else
	return cancel_work_sync(work);
#endif
}

/*
 * A shrinker with a private pointer. mbufmux_shrinker_create() allocates
 * and registers one named @name, with @count and @scan as its
 * ->count_objects and ->scan_objects: NULL if out of memory, else it runs
 * already. mbufmux_shrinker_private() returns its @private_data, for the
 * callbacks; mbufmux_shrinker_destroy() waits for its scans in progress,
 * after which none starts, and frees it. Process context, may sleep (but
 * mbufmux_shrinker_private(): any).
 *
 * From 6.7, shrinker_alloc() (which takes the name) and
 * shrinker_register(); before, a shrinker allocated with the pointer
 * beside it and registered with register_shrinker() (which takes it).
 */
#ifdef MBUFMUX_HAVE_SHRINKER_ALLOC
static inline struct shrinker *__mbufmux_shrinker_alloc(const char *name,
							void *private_data)
{
	struct shrinker *shrinker = shrinker_alloc(0, "%s", name);

	if (shrinker)
		shrinker->private_data = private_data;
	return shrinker;
}

static inline int __mbufmux_shrinker_register(struct shrinker *shrinker,
					      const char *name)
{
	shrinker_register(shrinker);
	return 0;
}

static inline void *mbufmux_shrinker_private(struct shrinker *shrinker)
{
	return shrinker->private_data;
}

static inline void mbufmux_shrinker_destroy(struct shrinker *shrinker)
{
	shrinker_free(shrinker);
}
#else
struct mbufmux_compat_shrinker {
	struct shrinker shrinker;
	void *private_data;
};

static inline struct shrinker *__mbufmux_shrinker_alloc(const char *name,
							void *private_data)
{
	struct mbufmux_compat_shrinker *s = kzalloc(sizeof(*s), GFP_KERNEL);

	if (!s)
		return NULL;
	s->shrinker.seeks = DEFAULT_SEEKS;
	s->private_data = private_data;
	return &s->shrinker;
}

static inline int __mbufmux_shrinker_register(struct shrinker *shrinker,
					      const char *name)
{
	return register_shrinker(shrinker, "%s", name);
}

static inline void *mbufmux_shrinker_private(struct shrinker *shrinker)
{
	return container_of(shrinker, struct mbufmux_compat_shrinker,
			    shrinker)->private_data;
}

/* unregister_shrinker() skips a shrinker that was never registered. */
static inline void mbufmux_shrinker_destroy(struct shrinker *shrinker)
{
	unregister_shrinker(shrinker);
	kfree(container_of(shrinker, struct mbufmux_compat_shrinker, shrinker));
}
#endif

static inline struct shrinker *
mbufmux_shrinker_create(const char *name,
			unsigned long (*count)(struct shrinker *,
					       struct shrink_control *),
			unsigned long (*scan)(struct shrinker *,
					      struct shrink_control *),
			void *private_data)
{
	struct shrinker *shrinker = __mbufmux_shrinker_alloc(name, private_data);

	if (!shrinker)
		return NULL;
	shrinker->count_objects = count;
	shrinker->scan_objects = scan;
	if (__mbufmux_shrinker_register(shrinker, name)) {
		mbufmux_shrinker_destroy(shrinker);
		return NULL;
	}
	return shrinker;
}

#endif /* _MBUFMUX_COMPAT_H */
