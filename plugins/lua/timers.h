/*
 * timers.h — event-time timers of the Lua operator: a min-heap of
 * (time, registration order) over (time, key) pairs, each pair at most
 * once. Plain C, no Lua: keys are opaque bytes (keyed_state.h encodes
 * them). See timers.c.
 */
#ifndef SLUICE_LUA_TIMERS_H
#define SLUICE_LUA_TIMERS_H

#include "lua_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct slua_timer {
    int64_t time;
    uint64_t seq;           /* registration order: ties fire first-come */
    size_t heap_index;
    struct slua_timer *next; /* in its hash bucket */
    uint64_t hash;
    uint32_t keylen;
    unsigned char key[];
} slua_timer;

typedef struct slua_timers {
    slua_timer **heap;
    size_t n, cap;
    slua_timer **buckets;
    size_t nbuckets;
    uint64_t seq;
    uint64_t bytes; /* approximate memory, for host->state_size */
} slua_timers;

/* 1: added; 0: that (time, key) is already set; -1: out of memory. */
int slua_timers_add(slua_timers *t, int64_t time, const void *key, size_t keylen);
/* true when that (time, key) was set (it is removed). */
bool slua_timers_cancel(slua_timers *t, int64_t time, const void *key, size_t keylen);
/* The earliest timer, or NULL. */
const slua_timer *slua_timers_peek(const slua_timers *t);
/* Remove the earliest timer and hand it over (free() it). */
slua_timer *slua_timers_pop(slua_timers *t);
void slua_timers_clear(slua_timers *t);

/* Snapshots: count, then (time, key) in firing order. load() replaces
 * what t holds; false on a damaged blob or out of memory. */
bool slua_timers_save(const slua_timers *t, sl_bytes *out);
bool slua_timers_load(slua_timers *t, sl_reader *r);

#endif
