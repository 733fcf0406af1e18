/*
 * log.h — the runtime's log lines on stderr, and rate limiting for the ones
 * that could repeat per record.
 *
 * One line per message: an ISO-8601 UTC timestamp, the level, the stage in
 * brackets when there is one, the text. Lines are written whole under a lock
 * so that threads never interleave, and the live status line (status.c) is
 * cleared first and redrawn after, so the two share the terminal cleanly.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include "sluice/plugin.h"

void sl_log_set_level(sluice_log_level max);
sluice_log_level sl_log_level_from(const char *name, int *ok);
void sl_log(sluice_log_level level, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sl_vlog(sluice_log_level level, const char *stage, const char *fmt, va_list ap);

/* Called with the log lock held around each log line: clear and redraw the
 * status line. NULL when there is none. */
void sl_log_set_status_hooks(void (*clear)(void), void (*redraw)(void));
/* Write raw text to stderr under the log lock (the status line itself). */
void sl_log_write_locked(void (*fn)(void *), void *arg);

/* At most one line per interval; the others are counted and the count is
 * reported with the next line that passes. Not thread-safe: one per stage
 * thread. */
typedef struct sl_ratelimit {
    int64_t interval_ns;
    int64_t last_ns;
    uint64_t suppressed;
} sl_ratelimit;

#define SL_RATELIMIT_INIT(seconds) {(int64_t)(seconds) * 1000000000, INT64_MIN / 2, 0}

/* True when a line may be logged now; *suppressed receives how many were
 * held back since the last one. */
int sl_ratelimit_pass(sl_ratelimit *rl, uint64_t *suppressed);

int64_t sl_now_ns(void);     /* CLOCK_MONOTONIC */
int64_t sl_wall_ms(void);    /* CLOCK_REALTIME, ms since the epoch */

#endif
