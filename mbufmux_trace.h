/* SPDX-License-Identifier: GPL-2.0 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM mbufmux

#if !defined(_MBUFMUX_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _MBUFMUX_TRACE_H

#include <linux/string.h>
#include <linux/tracepoint.h>

#include "mbufmux.h"

/*
 * The pool name is copied into a fixed array rather than a __string(): the
 * __assign_str() signature changed in 6.10 and the module builds on 6.1 too.
 */

TRACE_EVENT(mbufmux_alloc,
	TP_PROTO(const char *pool, const void *buf, unsigned int in_use),
	TP_ARGS(pool, buf, in_use),
	TP_STRUCT__entry(
		__array(char, pool, MBUFMUX_NAME_MAX)
		__field(const void *, buf)
		__field(unsigned int, in_use)
	),
	TP_fast_assign(
		strscpy(__entry->pool, pool, MBUFMUX_NAME_MAX);
		__entry->buf = buf;
		__entry->in_use = in_use;
	),
	TP_printk("pool=%s buf=%p in_use=%u",
		  __entry->pool, __entry->buf, __entry->in_use)
);

TRACE_EVENT(mbufmux_alloc_fail,
	TP_PROTO(const char *pool, unsigned int margin, unsigned int in_use,
		 unsigned int limit, bool nomem),
	TP_ARGS(pool, margin, in_use, limit, nomem),
	TP_STRUCT__entry(
		__array(char, pool, MBUFMUX_NAME_MAX)
		__field(unsigned int, margin)
		__field(unsigned int, in_use)
		__field(unsigned int, limit)
		__field(bool, nomem)
	),
	TP_fast_assign(
		strscpy(__entry->pool, pool, MBUFMUX_NAME_MAX);
		__entry->margin = margin;
		__entry->in_use = in_use;
		__entry->limit = limit;
		__entry->nomem = nomem;
	),
	TP_printk("pool=%s margin=%u in_use=%u limit=%u reason=%s",
		  __entry->pool, __entry->margin, __entry->in_use,
		  __entry->limit, __entry->nomem ? "nomem" : "limit")
);

TRACE_EVENT(mbufmux_wait,
	TP_PROTO(const char *pool, const void *waiter, unsigned int waiters),
	TP_ARGS(pool, waiter, waiters),
	TP_STRUCT__entry(
		__array(char, pool, MBUFMUX_NAME_MAX)
		__field(const void *, waiter)
		__field(unsigned int, waiters)
	),
	TP_fast_assign(
		strscpy(__entry->pool, pool, MBUFMUX_NAME_MAX);
		__entry->waiter = waiter;
		__entry->waiters = waiters;
	),
	TP_printk("pool=%s waiter=%p waiters=%u",
		  __entry->pool, __entry->waiter, __entry->waiters)
);

TRACE_EVENT(mbufmux_handoff,
	TP_PROTO(const char *pool, const void *waiter, const void *buf,
		 u64 wait_ns),
	TP_ARGS(pool, waiter, buf, wait_ns),
	TP_STRUCT__entry(
		__array(char, pool, MBUFMUX_NAME_MAX)
		__field(const void *, waiter)
		__field(const void *, buf)
		__field(u64, wait_ns)
	),
	TP_fast_assign(
		strscpy(__entry->pool, pool, MBUFMUX_NAME_MAX);
		__entry->waiter = waiter;
		__entry->buf = buf;
		__entry->wait_ns = wait_ns;
	),
	TP_printk("pool=%s waiter=%p buf=%p wait_ns=%llu",
		  __entry->pool, __entry->waiter, __entry->buf,
		  __entry->wait_ns)
);

TRACE_EVENT(mbufmux_cancel,
	TP_PROTO(const char *pool, const void *waiter, bool queued),
	TP_ARGS(pool, waiter, queued),
	TP_STRUCT__entry(
		__array(char, pool, MBUFMUX_NAME_MAX)
		__field(const void *, waiter)
		__field(bool, queued)
	),
	TP_fast_assign(
		strscpy(__entry->pool, pool, MBUFMUX_NAME_MAX);
		__entry->waiter = waiter;
		__entry->queued = queued;
	),
	TP_printk("pool=%s waiter=%p state=%s",
		  __entry->pool, __entry->waiter,
		  __entry->queued ? "queued" : "handed-off")
);

#endif /* _MBUFMUX_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE mbufmux_trace
#include <trace/define_trace.h>
