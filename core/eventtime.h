/*
 * eventtime.h — reading a record's event time from a field, and a source's
 * watermark.
 *
 * The core, not the plugin, extracts event time, right after a source emits
 * a batch: every source gets `event_time: {field, format}` for free, and a
 * record whose time is missing or unreadable is rejected in one place.
 * Watermark = the largest event time seen minus max_delay; it only moves
 * forward.
 */
#ifndef SLUICE_EVENTTIME_H
#define SLUICE_EVENTTIME_H

#include <stdbool.h>

#include "config.h"
#include "record.h"

/* ISO-8601 / RFC 3339 date-time ("2026-11-23T09:00:00.123Z", "+01:00"
 * offsets, a space for T, no fraction or up to 9 digits). */
bool sl_parse_iso8601(const char *p, size_t len, int64_t *ms);
/* Format ms since the epoch as "2026-11-23T09:00:00.123Z". */
void sl_format_iso8601(int64_t ms, char out[48]);

/* The event time of v per format; false with a reason when unusable. */
bool sl_event_time_of(const sluice_value *v, sl_time_format fmt, int64_t *ms,
                      const char **why);

/* A source's watermark, per partition (a file of a glob, a Kafka
 * partition): each partition's own is its largest event time minus
 * max_delay, and the source's is the minimum over partitions that are
 * neither finished nor idle. A partition the source declared but that has
 * not produced a record yet holds the watermark back (its records may be
 * the oldest) until idle_timeout passes. When every partition left is idle
 * the source is idle: downstream stops waiting for it. */
typedef struct sl_partition_wm {
    int64_t max_seen;  /* SLUICE_TIME_NONE until a record is seen */
    int64_t last_ns;   /* monotonic time of its last record (or declaration) */
    bool done;
} sl_partition_wm;

typedef struct sl_watermark {
    int64_t max_delay;
    int64_t idle_ns;     /* 0: partitions never go idle */
    int64_t current;     /* last watermark emitted */
    bool idle;           /* idleness last reported */
    size_t nparts;
    sl_partition_wm *parts;
} sl_watermark;

typedef enum sl_wm_change {
    SL_WM_SAME = 0,
    SL_WM_ADVANCED, /* *wm holds the new watermark */
    SL_WM_IDLE      /* every partition left is idle */
} sl_wm_change;

void sl_watermark_init(sl_watermark *w, int64_t max_delay_ms, int64_t idle_timeout_ms);
void sl_watermark_free(sl_watermark *w);
/* The source has partitions 0..n-1 (more may appear later). */
void sl_watermark_declare(sl_watermark *w, size_t n, int64_t now_ns);
void sl_watermark_done(sl_watermark *w, size_t partition);
/* A partition is the source's (again), e.g. a Kafka partition assigned
 * back: it holds the watermark until it produces or goes idle. */
void sl_watermark_open(sl_watermark *w, size_t partition, int64_t now_ns);
void sl_watermark_observe(sl_watermark *w, size_t partition, int64_t t, int64_t now_ns);
/* Whether the watermark moved forward or the source went idle since the
 * last call. */
sl_wm_change sl_watermark_poll(sl_watermark *w, int64_t now_ns, int64_t *wm);

#endif
