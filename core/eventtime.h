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

typedef struct sl_watermark {
    int64_t max_seen;    /* SLUICE_TIME_NONE until a record is seen */
    int64_t max_delay;
    int64_t current;     /* last watermark emitted */
} sl_watermark;

void sl_watermark_init(sl_watermark *w, int64_t max_delay_ms);
void sl_watermark_observe(sl_watermark *w, int64_t t);
/* True and the new value when the watermark moved forward since last asked. */
bool sl_watermark_advance(sl_watermark *w, int64_t *wm);

#endif
