/*
 * assign.h — which windows an event time belongs to, and when a window
 * closes. Pure functions over int64 milliseconds, unit-tested on their own.
 *
 * Tumbling and sliding windows are aligned to the epoch: their starts are
 * multiples of `slide` (tumbling: slide = size) and a record at t belongs to
 * every [start, start + size) with start <= t < start + size. Division
 * floors, so negative times (before 1970) land in the right windows too.
 *
 * Session windows are per key: a session is [first_t, last_t + gap). A
 * record at t is the interval [t, t + gap); it joins every session it
 * overlaps (strictly: half-open intervals that merely touch do not merge,
 * so a record exactly `gap` after the last one starts a new session), and a
 * record overlapping two sessions bridges them into one.
 */
#ifndef SLUICE_WINDOW_ASSIGN_H
#define SLUICE_WINDOW_ASSIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* floor(a / b) for b > 0. */
int64_t wa_floor_div(int64_t a, int64_t b);

/* The windows of size `size` sliding by `slide` (0 < slide <= size) that
 * contain t: their starts are *first, *first + slide, ..., *last. Returns
 * the number of windows, or 0 when t is so close to the ends of int64 that
 * a window bound would overflow. */
uint64_t wa_sliding(int64_t t, int64_t size, int64_t slide, int64_t *first, int64_t *last);

/* Whether window [start, end) is closed at watermark wm: the watermark
 * says every record with time <= wm has arrived, so the window is complete
 * once wm >= end - 1, and it is kept `lateness` longer. Saturating. */
bool wa_closed(int64_t end, int64_t lateness, int64_t wm);

/* A session interval. */
typedef struct wa_session {
    int64_t start, end;
} wa_session;

/* Whether the record interval [t, t + gap) overlaps session s. */
bool wa_session_overlaps(wa_session s, int64_t t, int64_t gap);

/* Merge record t into the disjoint sessions s[0..n): returns the index of
 * the session that now holds t (grown to cover [t, t + gap)), having folded
 * every other session the record overlaps into it (those are removed, *n
 * shrinks, the order of the rest is kept). Returns -1 when t overlaps none
 * (nothing changed: the caller opens a new session). The operator applies
 * the same rule to its sessions, which carry aggregate state. */
long wa_session_merge(wa_session *s, size_t *n, int64_t t, int64_t gap);

/* Session end for a record at t, or false on overflow. */
bool wa_session_end(int64_t t, int64_t gap, int64_t *end);

#endif
