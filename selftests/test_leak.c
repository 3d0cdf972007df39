// SPDX-License-Identifier: GPL-2.0
/*
 * test_leak - the positive control of kmemleak for make check-debug.
 *
 * Its init allocates LEAK_SIZE bytes and forgets them. A kernel whose
 * kmemleak works reports one unreferenced object of that size after the two
 * scans that end every test VM run: scripts/check-debug.sh boots a VM of its
 * own that loads this module, and fails unless that report comes. The
 * suite's own runs never load it (selftests/Kbuild builds it only against a
 * kernel with CONFIG_DEBUG_KMEMLEAK, and check-debug.sh keeps it out of the
 * suite's initramfs). A kmemleak-clean suite run then means something.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>

/*
 * Distinctive: nothing else in a test VM run allocates this size. Above
 * KMALLOC_MAX_CACHE_SIZE, kmalloc() takes pages and kmemleak records the
 * size asked for; from a kmalloc cache it would record the cache's object
 * size (8192 for 4242).
 */
#define LEAK_SIZE	42424

static int __init test_leak_init(void)
{
	void *leak = kmalloc(LEAK_SIZE, GFP_KERNEL);

	if (!leak)
		return -ENOMEM;
	/* No pointer to it is kept anywhere: this is the leak. */
	pr_info("allocated %d bytes and forgot them\n", LEAK_SIZE);
	return 0;
}
module_init(test_leak_init);

MODULE_AUTHOR("The mbufmux developers");
MODULE_DESCRIPTION("mbufmux: leaks one object at load, the positive control of kmemleak");
MODULE_LICENSE("GPL");
