// SPDX-License-Identifier: GPL-2.0
/*
 * mbufmuxtop - a live view of the mbufmux pools, in the spirit of slabtop.
 *
 * Once an interval it reads <dir>/<pool>/stats for every pool (<dir> is
 * /sys/kernel/debug/mbufmux) and shows, per pool: buffers in use against
 * the limit, the peak, the parked waiters (sockets, for the pool "tcp"),
 * handoffs and allocations per second, and the wait-time percentiles
 * (p50, p90, p99, max) of the pool's log2 histogram, over the last
 * interval and since the pool was created.
 *
 * A percentile is the bucket of the histogram that holds it (nearest
 * rank), shown as that bucket's upper bound: "<64us" means the wait was
 * under 64 us, and in the same bucket as the waits from 32 us. The last
 * bucket has no upper bound: ">4.1s" (it holds the waits from 4194304 us,
 * rounded down). The bounds come from the names of
 * the wait_hist_us_<lo> keys. Only the longest wait since load is exact
 * (wait_ns_max): it has no "<".
 *
 * Rates are over the time measured between two reads. With several
 * --debugfs trees (copies of the directory saved SECONDS apart: cp -r), it
 * replays them, one frame per tree, and takes the interval as given.
 *
 * Keys it does not know are ignored; a missing key it needs is an error.
 * See usage() and Documentation/mbufmux.rst (debugfs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/vfs.h>

#define DEFAULT_DIR	"/sys/kernel/debug/mbufmux"
#define DEBUGFS_MAGIC	0x64626720	/* linux/magic.h */
#define HIST_PREFIX	"wait_hist_us_"
#define MAX_BUCKETS	65	/* under 1 us, then one per power of two */
#define INTERVAL_MAX	86400.0

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define __noreturn	__attribute__((noreturn))
#define __printf(a, b)	__attribute__((format(printf, a, b)))

/* The keys it needs, in the order of the stats file. */
enum key {
	K_IN_USE,
	K_PEAK,
	K_LIMIT,
	K_ALLOCS,
	K_HANDOFFS,
	K_WAITERS,
	K_WAIT_NS_MAX,
	NR_KEYS
};

static const char *const key_names[NR_KEYS] = {
	[K_IN_USE] = "in_use",
	[K_PEAK] = "peak",
	[K_LIMIT] = "limit",
	[K_ALLOCS] = "allocs",
	[K_HANDOFFS] = "handoffs",
	[K_WAITERS] = "waiters",
	[K_WAIT_NS_MAX] = "wait_ns_max",
};

/* One read of a pool's stats file. */
struct snap {
	uint64_t v[NR_KEYS];
	unsigned int nr_buckets;
	uint64_t lo[MAX_BUCKETS];	/* lower bounds, us, increasing */
	uint64_t cnt[MAX_BUCKETS];
	dev_t dev;			/* the file: a new one is a new pool */
	ino_t ino;
};

struct pool {
	char *name;
	struct snap cur, prev;
	bool has_prev;
};

struct pools {
	struct pool *p;
	size_t nr;
};

static const char *prog = "mbufmuxtop";
static bool replay;	/* several trees: each a copy of its own */

static void __noreturn __printf(1, 2) die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		die("out of memory");
	return d;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s [-d SECONDS] [-n COUNT] [-p POOL] [--debugfs DIR]...\n"
		"A live view of the mbufmux pools. Run as root: debugfs is root's.\n"
		"\n"
		"  -d, --delay SECONDS  interval between frames (default 1)\n"
		"  -n, --iterations COUNT\n"
		"                       print COUNT frames, then exit (default:\n"
		"                       until interrupted)\n"
		"  -p, --pool POOL      show only POOL\n"
		"      --debugfs DIR    the mbufmux debugfs directory (default\n"
		"                       " DEFAULT_DIR "); given more than\n"
		"                       once, saved copies of it taken SECONDS\n"
		"                       apart, replayed one frame each\n"
		"  -h, --help           this help\n"
		"\n"
		"Waits are log2 histogram buckets: \"<64us\" is under 64 us (at\n"
		"least 32 us); the longest since load, without \"<\", is exact.\n",
		prog);
}

/* A non-negative decimal integer, all of @s, or false. */
static bool parse_u64(const char *s, uint64_t *v)
{
	unsigned long long x;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

static int key_index(const char *key)
{
	int i;

	for (i = 0; i < NR_KEYS; i++)
		if (!strcmp(key, key_names[i]))
			return i;
	return -1;
}

/*
 * Read @path into @s. Returns false if the file is gone (the pool went
 * away since the directory was read); any other failure is fatal.
 */
static bool read_stats(const char *path, struct snap *s)
{
	static const char unknown[] =
		"not an mbufmux stats file, or from a module this tool does not know";
	bool seen[NR_KEYS] = { false };
	size_t len = 0;
	char *line = NULL;
	struct stat st;
	unsigned int i, j;
	FILE *f;

	f = fopen(path, "r");
	if (!f) {
		if (errno == ENOENT)
			return false;
		die("%s: %s%s", path, strerror(errno),
		    errno == EACCES ? " (debugfs is readable by root only)" : "");
	}
	if (fstat(fileno(f), &st))
		die("%s: %s", path, strerror(errno));
	memset(s, 0, sizeof(*s));
	s->dev = st.st_dev;
	s->ino = st.st_ino;

	while (getline(&line, &len, f) > 0) {
		char *val = strchr(line, ' ');
		uint64_t lo, v;
		int k;

		line[strcspn(line, "\n")] = '\0';
		if (val)
			*val++ = '\0';
		k = key_index(line);
		if (k < 0 && strncmp(line, HIST_PREFIX, strlen(HIST_PREFIX)))
			continue;	/* a key of a newer module */
		if (k < 0 && !parse_u64(line + strlen(HIST_PREFIX), &lo))
			continue;	/* wait_hist_us_<not a bound> */
		if (!val || !parse_u64(val, &v))
			die("%s: bad value for %s: '%s'", path, line,
			    val ? val : "");
		if (k >= 0) {
			if (seen[k])
				die("%s: %s given twice", path, line);
			seen[k] = true;
			s->v[k] = v;
			continue;
		}
		/* A histogram bucket: keep them sorted by lower bound. */
		if (s->nr_buckets == MAX_BUCKETS)
			die("%s: more than %d %s* buckets", path, MAX_BUCKETS,
			    HIST_PREFIX);
		for (i = 0; i < s->nr_buckets && s->lo[i] < lo; i++)
			;
		if (i < s->nr_buckets && s->lo[i] == lo)
			die("%s: %s given twice", path, line);
		for (j = s->nr_buckets; j > i; j--) {
			s->lo[j] = s->lo[j - 1];
			s->cnt[j] = s->cnt[j - 1];
		}
		s->lo[i] = lo;
		s->cnt[i] = v;
		s->nr_buckets++;
	}
	if (ferror(f)) {
		int err = errno;

		/* debugfs fails the reads of a file removed meanwhile */
		if (err == EIO && stat(path, &st) && errno == ENOENT) {
			free(line);
			fclose(f);
			return false;
		}
		die("%s: read: %s", path, strerror(err));
	}
	free(line);
	fclose(f);

	for (i = 0; i < NR_KEYS; i++)
		if (!seen[i])
			die("%s: no '%s' line (%s)", path, key_names[i], unknown);
	if (!s->nr_buckets)
		die("%s: no '%s<us>' lines (%s)", path, HIST_PREFIX, unknown);
	return true;
}

/* The directory cannot be opened: say why, as precisely as we can. */
static void __noreturn dir_error(const char *dir, int err)
{
	char *parent = xstrdup(dir), *slash;
	struct statfs sfs;

	if (err == EACCES)
		die("%s: %s (debugfs is readable by root only: run as root)",
		    dir, strerror(err));
	if (err != ENOENT)
		die("%s: %s", dir, strerror(err));
	slash = strrchr(parent, '/');
	if (!slash) {
		free(parent);
		parent = xstrdup(".");
	} else if (slash != parent) {
		*slash = '\0';
	} else {
		slash[1] = '\0';	/* "/" */
	}
	if (!statfs(parent, &sfs) && (uint32_t)sfs.f_type == DEBUGFS_MAGIC)
		die("%s: %s (is mbufmux.ko loaded?)", dir, strerror(err));
	if (!strcmp(dir, DEFAULT_DIR))
		die("%s: %s (debugfs is not mounted on %s: mount -t debugfs none %s)",
		    dir, strerror(err), parent, parent);
	die("%s: %s", dir, strerror(err));
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The pools in @dir: its subdirectories with a stats file, sorted. Fatal
 * if @dir cannot be read.
 */
static char **list_pools(const char *dir, size_t *nr)
{
	char **names = NULL, *path;
	struct dirent *de;
	struct stat st;
	DIR *d;

	*nr = 0;
	d = opendir(dir);
	if (!d)
		dir_error(dir, errno);
	while ((errno = 0, de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&path, "%s/%s/stats", dir, de->d_name) < 0)
			die("out of memory");
		if (stat(path, &st)) {
			if (errno != ENOENT && errno != ENOTDIR)
				die("%s: %s", path, strerror(errno));
			free(path);	/* not a pool: "pools" */
			continue;
		}
		free(path);
		names = xrealloc(names, (*nr + 1) * sizeof(*names));
		names[(*nr)++] = xstrdup(de->d_name);
	}
	if (errno)
		die("%s: %s", dir, strerror(errno));
	closedir(d);
	qsort(names, *nr, sizeof(*names), cmp_names);
	return names;
}

/*
 * Did the pool stay the same one between @a and @b? A reloaded one has a
 * new stats file (live), and its counters start again from 0.
 */
static bool same_pool(const struct snap *a, const struct snap *b)
{
	unsigned int i;

	if ((!replay && (a->dev != b->dev || a->ino != b->ino)) ||
	    a->nr_buckets != b->nr_buckets ||
	    b->v[K_ALLOCS] < a->v[K_ALLOCS] ||
	    b->v[K_HANDOFFS] < a->v[K_HANDOFFS] ||
	    b->v[K_PEAK] < a->v[K_PEAK])
		return false;
	for (i = 0; i < a->nr_buckets; i++)
		if (a->lo[i] != b->lo[i] || b->cnt[i] < a->cnt[i])
			return false;
	return true;
}

/*
 * Read every pool of @dir (or only @only) into @ps, keeping the previous
 * read of the pools seen before. Returns the number of pools read.
 */
static size_t read_pools(struct pools *ps, const char *dir, const char *only)
{
	struct pools next = { NULL, 0 };
	size_t nr, i, j;
	char **names = list_pools(dir, &nr);
	char *path;

	for (i = 0; i < nr; i++) {
		struct pool *p;

		if (only && strcmp(names[i], only))
			continue;
		next.p = xrealloc(next.p, (next.nr + 1) * sizeof(*next.p));
		p = &next.p[next.nr];
		if (asprintf(&path, "%s/%s/stats", dir, names[i]) < 0)
			die("out of memory");
		if (!read_stats(path, &p->cur)) {
			free(path);
			continue;	/* gone meanwhile */
		}
		free(path);
		p->name = names[i];
		names[i] = NULL;
		memset(&p->prev, 0, sizeof(p->prev));
		p->has_prev = false;
		for (j = 0; j < ps->nr; j++) {
			struct pool *old = &ps->p[j];

			if (strcmp(old->name, p->name))
				continue;
			p->prev = old->cur;
			p->has_prev = same_pool(&p->prev, &p->cur);
			break;
		}
		next.nr++;
	}
	for (i = 0; i < nr; i++)
		free(names[i]);
	free(names);
	for (j = 0; j < ps->nr; j++)
		free(ps->p[j].name);
	free(ps->p);
	*ps = next;
	return next.nr;
}

/*
 * The bucket that holds the @pct-th percentile of @cnt (nearest rank:
 * the smallest bucket at or below which at least @pct % of the waits
 * are), or -1 if there is none.
 */
static int percentile(const uint64_t *cnt, unsigned int nr, unsigned int pct)
{
	uint64_t total = 0, sum = 0, rank;
	unsigned int i;

	for (i = 0; i < nr; i++)
		total += cnt[i];
	if (!total)
		return -1;
	/* ceil(total * pct / 100), without overflow */
	rank = total / 100 * pct + (total % 100 * pct + 99) / 100;
	for (i = 0; i < nr; i++) {
		sum += cnt[i];
		if (sum >= rank)
			return i;
	}
	return nr - 1;
}

/*
 * @us in at most 4 characters and a unit, rounded up (@up) or down: up to
 * 9999us, then ms, then tenths of seconds under 10 s, then seconds.
 */
static void fmt_us(char *buf, size_t size, uint64_t us, bool up)
{
	unsigned long long x;

	if (us < 10000) {
		snprintf(buf, size, "%lluus", (unsigned long long)us);
	} else if (us < 1000000) {
		x = us / 1000 + (up && us % 1000);
		snprintf(buf, size, "%llums", x);
	} else if (us < 10000000) {
		x = us / 100000 + (up && us % 100000);
		snprintf(buf, size, "%llu.%llus", x / 10, x % 10);
	} else {
		x = us / 1000000 + (up && us % 1000000);
		snprintf(buf, size, "%llus", x);
	}
}

/*
 * Bucket @b of @s as text: "<N", its upper bound (the next one's lower
 * bound), or ">N" for the last, which has none (N rounded down).
 */
static void fmt_bucket(char *buf, size_t size, const struct snap *s, int b)
{
	char num[32];

	if (b < 0) {
		snprintf(buf, size, "-");
	} else if ((unsigned int)b + 1 < s->nr_buckets) {
		fmt_us(num, sizeof(num), s->lo[b + 1], true);
		snprintf(buf, size, "<%s", num);
	} else {
		fmt_us(num, sizeof(num), s->lo[b], false);
		snprintf(buf, size, ">%s", num);
	}
}

static const unsigned int pcts[] = { 50, 90, 99, 100 };

/* p50, p90, p99 and max of @cnt, each in a column of 8. */
static void print_waits(const struct snap *s, const uint64_t *cnt,
			const char *max_exact)
{
	char buf[40];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(pcts); i++) {
		int b = percentile(cnt, s->nr_buckets, pcts[i]);

		if (b >= 0 && pcts[i] == 100 && max_exact)
			snprintf(buf, sizeof(buf), "%s", max_exact);
		else
			fmt_bucket(buf, sizeof(buf), s, b);
		printf("%8s", buf);
	}
}

static void print_rate(bool has_prev, uint64_t a, uint64_t b, double secs)
{
	if (has_prev)
		printf("%12.1f", (double)(b - a) / secs);
	else
		printf("%12s", "-");
}

static void print_frame(const struct pools *ps, const char *when,
			double secs, bool first)
{
	uint64_t diff[MAX_BUCKETS];
	char max[32];
	unsigned int i;
	size_t j;

	printf("%s %s  ", prog, when);
	if (first)
		printf("first read: rates from the next one");
	else
		printf("interval %.2f s", secs);
	printf("  %zu pool%s\n\n", ps->nr, ps->nr == 1 ? "" : "s");

	printf("%-12s%8s%8s%8s%8s%12s%12s\n", "POOL", "IN_USE", "LIMIT",
	       "PEAK", "PARKED", "HANDOFFS/s", "ALLOCS/s");
	for (j = 0; j < ps->nr; j++) {
		const struct pool *p = &ps->p[j];
		const uint64_t *v = p->cur.v;

		printf("%-11s %8llu%8llu%8llu%8llu", p->name,
		       (unsigned long long)v[K_IN_USE],
		       (unsigned long long)v[K_LIMIT],
		       (unsigned long long)v[K_PEAK],
		       (unsigned long long)v[K_WAITERS]);
		print_rate(p->has_prev, p->prev.v[K_HANDOFFS], v[K_HANDOFFS],
			   secs);
		print_rate(p->has_prev, p->prev.v[K_ALLOCS], v[K_ALLOCS], secs);
		printf("\n");
	}

	printf("\n%-12s%-34s%s\n", "WAIT", "  last interval (bucket bounds)",
	       "  since load (max exact)");
	printf("%-12s%8s%8s%8s%8s  %8s%8s%8s%8s\n", "POOL", "p50", "p90", "p99",
	       "max", "p50", "p90", "p99", "max");
	for (j = 0; j < ps->nr; j++) {
		const struct pool *p = &ps->p[j];
		const struct snap *s = &p->cur;

		printf("%-11s ", p->name);
		if (p->has_prev) {
			for (i = 0; i < s->nr_buckets; i++)
				diff[i] = s->cnt[i] - p->prev.cnt[i];
			print_waits(s, diff, NULL);
		} else {
			printf("%8s%8s%8s%8s", "-", "-", "-", "-");
		}
		fmt_us(max, sizeof(max), s->v[K_WAIT_NS_MAX] / 1000, false);
		printf("  ");
		print_waits(s, s->cnt, max);
		printf("\n");
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	struct timespec ts = {
		.tv_sec = (time_t)t,
		.tv_nsec = (long)((t - (time_t)t) * 1e9),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	       EINTR)
		;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "delay", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "pool", required_argument, NULL, 'p' },
		{ "debugfs", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char **dirs = NULL, *only = NULL;
	double delay = 1.0, last = 0, t, deadline;
	bool tty = isatty(STDOUT_FILENO);
	uint64_t count = 0, frame;
	struct pools ps = { NULL, 0 };
	size_t nr_dirs = 0, i;
	char when[64], *end;
	int c;

	while ((c = getopt_long(argc, argv, "d:n:p:h", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			errno = 0;
			delay = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(delay) ||
			    delay <= 0 || delay > INTERVAL_MAX) {
				fprintf(stderr, "%s: -d %s: want seconds, > 0 and <= %.0f\n",
					prog, optarg, INTERVAL_MAX);
				return 2;
			}
			break;
		case 'n':
			if (!parse_u64(optarg, &count) || !count) {
				fprintf(stderr, "%s: -n %s: want a count of frames, at least 1\n",
					prog, optarg);
				return 2;
			}
			break;
		case 'p':
			if (only) {
				fprintf(stderr, "%s: -p given twice\n", prog);
				return 2;
			}
			if (!*optarg || strchr(optarg, '/') || optarg[0] == '.') {
				fprintf(stderr, "%s: -p '%s': not a pool name\n",
					prog, optarg);
				return 2;
			}
			only = optarg;
			break;
		case 'D':
			dirs = xrealloc(dirs, (nr_dirs + 1) * sizeof(*dirs));
			dirs[nr_dirs++] = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog,
			argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!nr_dirs) {
		dirs = xrealloc(dirs, sizeof(*dirs));
		dirs[nr_dirs++] = DEFAULT_DIR;
	}
	replay = nr_dirs > 1;
	if (replay) {
		if (!count)
			count = nr_dirs;
		if (count > nr_dirs) {
			fprintf(stderr, "%s: -n %llu, but only %zu --debugfs trees to replay\n",
				prog, (unsigned long long)count, nr_dirs);
			return 2;
		}
	}

	deadline = now();
	for (frame = 0; !count || frame < count; frame++) {
		const char *dir = dirs[replay ? frame : 0];
		size_t n;

		if (frame && !replay) {
			deadline += delay;
			if (deadline < now())
				deadline = now();	/* fell behind */
			sleep_until(deadline);
		}
		t = replay ? frame * delay : now();
		n = read_pools(&ps, dir, only);
		if (!n && only) {
			size_t nr;
			char **names = list_pools(dir, &nr);

			fprintf(stderr, "%s: %s: no pool '%s' (pools:", prog,
				dir, only);
			for (i = 0; i < nr; i++)
				fprintf(stderr, " %s", names[i]);
			fprintf(stderr, "%s)\n", nr ? "" : " none");
			return 1;
		}
		if (!n)
			die("%s: no pool (is mbufmux_tcp.ko, or another user of the pool, loaded?)",
			    dir);

		if (replay) {
			snprintf(when, sizeof(when), "tree %llu/%zu",
				 (unsigned long long)frame + 1, nr_dirs);
		} else {
			time_t wall = time(NULL);

			strftime(when, sizeof(when), "%F %T",
				 localtime(&wall));
		}
		if (tty)
			printf("\033[H\033[J");
		else if (frame)
			printf("\n");
		print_frame(&ps, when, t - last, !frame);
		if (fflush(stdout) || ferror(stdout))
			die("stdout: %s", strerror(errno));
		last = t;
	}
	return 0;
}
