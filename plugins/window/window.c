/*
 * window.c — the `window` operator: event-time windowed aggregation.
 *
 *     operators:
 *       per_service:
 *         type: window
 *         input: logs
 *         size: 1m                  # tumbling; + slide: 30s = sliding; gap: 30s = session
 *         group_by: [service]
 *         allowed_lateness: 0s
 *         late: late_events         # optional output for late records
 *         emit: on_close            # or "every 10s" (update mode)
 *         aggregate:
 *           requests: count()
 *           avg_rt: avg(response_time)
 *           p99_rt: percentile(response_time, 0.99)
 *
 * Semantics are Flink's. The watermark W says every record with time <= W
 * has arrived, so a window [start, end) closes — emits its final row and
 * frees its state — when W >= end - 1 + allowed_lateness. A record whose
 * windows are all closed is late: counted (host->count_late) and sent
 * unchanged to `late`, or dropped. A record that still has some open
 * windows updates only those. Assignment rules are in assign.h; the
 * aggregates in aggregate.h.
 *
 * State. A group is one (window, key): a single malloc() holding a small
 * header, every aggregate's fixed-size state block and the group key. The
 * key is the canonical encoding (buf.h) of the group-by values, so equal
 * keys are equal bytes: hash once per record, compare with memcmp, and the
 * original values are decoded from it for the output row.
 *   - Tumbling/sliding: the open windows in an array sorted by start (a
 *     handful: size/slide plus what lateness and disorder keep open), each
 *     with its own open-addressing table of groups and the groups in
 *     first-appearance order. The last window used is cached, so the
 *     tumbling hot path is: encode key, hash, probe, a few adds. Closing
 *     drops the oldest windows whole.
 *   - Sessions: a table of keys, each with its few disjoint sessions. A
 *     record merges into every session its [t, t + gap) overlaps (bridging
 *     two if it must); closing sweeps the keys only once the earliest
 *     session end is due, and keys left with no session are dropped, so
 *     state stays bounded by the open sessions.
 *
 * Output rows come in window-end order, then in order of the keys' first
 * appearance in the window: window_start, window_end (ISO-8601 UTC with
 * ms), the group-by fields (their values; null when the field was
 * missing), then the aggregates as declared. rec->time = window_end - 1.
 *
 * `emit: every 10s` (processing time, from on_tick) also emits the current
 * row of every open group that changed since the last such emit; the final
 * row still comes at close.
 *
 * Snapshots: "SLWN", a version byte, the shape of the configuration (a
 * blob from a differently configured window is refused), the watermark and
 * counters, then every open group with its aggregate states (agg_save).
 */
#include "sluice/plugin.h"

#include "aggregate.h"
#include "assign.h"
#include "buf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define SNAPSHOT_MAGIC "SLWN"
#define SNAPSHOT_VERSION 1

typedef struct window_config {
    int64_t size;
    int64_t slide;
    int64_t gap;
    sluice_list group_by;
    sluice_map aggregate;
    int64_t allowed_lateness;
    int late;
    char *emit;
} window_config;

static const sluice_option window_options[] = {
    {.name = "size",
     .type = SLUICE_OPT_DURATION,
     .offset = offsetof(window_config, size),
     .help = "window length: tumbling windows, or sliding with `slide`; windows are "
             "aligned to the epoch (required unless `gap`)"},
    {.name = "slide",
     .type = SLUICE_OPT_DURATION,
     .offset = offsetof(window_config, slide),
     .help = "sliding windows: a new window every `slide` (0 < slide <= size); a record "
             "belongs to every window covering it"},
    {.name = "gap",
     .type = SLUICE_OPT_DURATION,
     .offset = offsetof(window_config, gap),
     .help = "session windows per key: a session is [first, last + gap); a record less "
             "than `gap` from a session joins it (and may bridge two)"},
    {.name = "group_by",
     .type = SLUICE_OPT_LIST,
     .offset = offsetof(window_config, group_by),
     .help = "fields to group by (none: one group); a missing field groups as null"},
    {.name = "aggregate",
     .type = SLUICE_OPT_MAP,
     .offset = offsetof(window_config, aggregate),
     .help = "output field: function, from count(), sum(f), avg(f), min(f), max(f), "
             "stddev(f) (sample), count_distinct(f) (exact), collect_list(f), collect_set(f), "
             "first(f), last(f) (by event time), percentile(f, q) (DDSketch, within 1% "
             "relative error), count_if(lua expr), sum_if(f, lua expr); nulls are skipped"},
    {.name = "allowed_lateness",
     .type = SLUICE_OPT_DURATION,
     .default_value = "0",
     .offset = offsetof(window_config, allowed_lateness),
     .help = "keep a window open this long after the watermark passes its end"},
    {.name = "late",
     .type = SLUICE_OPT_OUTPUT,
     .offset = offsetof(window_config, late),
     .help = "output for late records (unchanged); without it they are counted and dropped"},
    {.name = "emit",
     .type = SLUICE_OPT_STRING,
     .default_value = "on_close",
     .offset = offsetof(window_config, emit),
     .help = "on_close: one final row per window; `every 10s`: also the current rows of "
             "changed windows every 10 s of processing time"},
    {.name = NULL},
};

/* One (window, key). Allocated as header + aggregate states + key bytes. */
typedef struct group {
    uint64_t hash;
    int64_t start, end;
    uint64_t seq; /* first appearance */
    uint32_t keylen;
    uint8_t dirty; /* changed since the last partial emit */
    unsigned char *key;
    _Alignas(8) unsigned char state[];
} group;

/* A tumbling/sliding window and its groups. */
typedef struct win {
    int64_t start, end;
    size_t n, cap;
    group **groups; /* first-appearance order */
    uint32_t mask;
    group **slots; /* open addressing, NULL = empty */
} win;

/* Sessions of one key. */
typedef struct keystate {
    uint64_t hash;
    size_t n, cap;
    group **sessions; /* disjoint */
    uint32_t keylen;
    unsigned char key[];
} keystate;

typedef enum window_kind { KIND_SLIDING, KIND_SESSION } window_kind;

typedef struct window_op {
    const sluice_host *host;
    sluice_ctx *ctx;
    window_kind kind;
    int64_t size, slide, gap, lateness;
    int late_output;
    int64_t emit_every; /* ms; 0 = on_close */
    int64_t next_emit;

    size_t ngroup_by;
    sluice_name *group_names;
    size_t nagg;
    agg_spec *aggs;
    sluice_name *agg_names;
    bool heap_aggs; /* some aggregate owns heap memory: track its growth */
    size_t state_size;
    size_t ninputs;
    sluice_name *input_names;
    const sluice_value **inputs; /* per record */
    size_t nconds;
    sluice_expr **conds;
    bool *cond_values; /* per record */
    sluice_name name_start, name_end;

    int64_t wm;
    uint64_t arrival, seq;

    win **wins; /* sorted by start */
    size_t nwins, capwins;
    win *last_win;

    keystate **kslots;
    uint32_t kmask;
    size_t nkeys;
    int64_t min_end; /* no session ends before this */

    uint64_t live_groups, bytes;
    sl_bytes key, scratch;
    sluice_batch *out;
} window_op;

/* ---- Small helpers ------------------------------------------------------ */

static void report_state(window_op *w)
{
    if (SLUICE_HOST_HAS(w->host, state_size))
        w->host->state_size(w->ctx, w->live_groups, w->bytes);
}

static int oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "window: out of memory");
    return SLUICE_ERROR;
}

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm): exact
 * for every int64 ms, unlike gmtime on 32-bit time_t or far years. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static size_t iso_time(int64_t ms, char *out, size_t outlen)
{
    int64_t days = wa_floor_div(ms, 86400000);
    int64_t rem = ms - days * 86400000;
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    int n = snprintf(out, outlen, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, mo, d,
                     (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
                     (int)(rem % 1000));
    return n < 0 ? 0 : (size_t)n;
}

/* "every 10s" -> 10000 ms; "on_close" -> 0; -1 when malformed. */
static int64_t parse_emit(const char *s)
{
    if (!s || !strcmp(s, "on_close"))
        return 0;
    if (strncmp(s, "every", 5) != 0 || !isspace((unsigned char)s[5]))
        return -1;
    s += 5;
    while (isspace((unsigned char)*s))
        s++;
    char *end;
    double n = strtod(s, &end);
    if (end == s || !(n > 0))
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ms", 1}, {"s", 1e3}, {"m", 6e4}, {"h", 3.6e6}, {"d", 8.64e7}, {"", 1}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].unit)) {
            double ms = n * units[i].ms;
            return ms >= 1 && ms < 1e15 ? (int64_t)ms : -1;
        }
    return -1;
}

/* ---- Groups ----------------------------------------------------------------- */

static size_t group_fixed_bytes(const window_op *w, size_t keylen)
{
    /* The allocation plus its share of a table slot and an order slot. */
    return sizeof(group) + w->state_size + keylen + 3 * sizeof(void *);
}

static size_t group_heap_bytes(const window_op *w, const group *g)
{
    size_t n = 0;
    for (size_t a = 0; w->heap_aggs && a < w->nagg; a++)
        n += agg_heap_bytes(&w->aggs[a], g->state + w->aggs[a].offset);
    return n;
}

static group *group_new(window_op *w, uint64_t hash, const unsigned char *key, size_t keylen,
                        int64_t start, int64_t end)
{
    group *g = malloc(sizeof *g + w->state_size + keylen);
    if (!g)
        return NULL;
    g->hash = hash;
    g->start = start;
    g->end = end;
    g->seq = w->seq++;
    g->keylen = (uint32_t)keylen;
    g->dirty = 0;
    memset(g->state, 0, w->state_size);
    g->key = g->state + w->state_size;
    if (keylen)
        memcpy(g->key, key, keylen);
    w->live_groups++;
    w->bytes += group_fixed_bytes(w, keylen);
    return g;
}

static void group_free(window_op *w, group *g)
{
    w->bytes -= group_fixed_bytes(w, g->keylen) + group_heap_bytes(w, g);
    w->live_groups--;
    for (size_t a = 0; a < w->nagg; a++)
        agg_free(&w->aggs[a], g->state + w->aggs[a].offset);
    free(g);
}

/* Fold the current record (w->inputs, w->cond_values) into g. */
static bool group_update(window_op *w, group *g, int64_t t)
{
    size_t before = w->heap_aggs ? group_heap_bytes(w, g) : 0;
    for (size_t a = 0; a < w->nagg; a++) {
        const agg_spec *s = &w->aggs[a];
        const sluice_value *v = s->input >= 0 ? w->inputs[s->input] : NULL;
        bool cond = s->cond >= 0 ? w->cond_values[s->cond] : true;
        if (!agg_update(s, g->state + s->offset, v, cond, t, w->arrival))
            return false;
    }
    if (w->heap_aggs)
        w->bytes += group_heap_bytes(w, g) - before;
    g->dirty = 1;
    return true;
}

/* ---- Tumbling / sliding windows ----------------------------------------- */

static void win_free(window_op *w, win *wn)
{
    for (size_t i = 0; i < wn->n; i++)
        group_free(w, wn->groups[i]);
    w->bytes -= sizeof *wn + ((size_t)wn->mask + 1) * sizeof *wn->slots;
    free(wn->groups);
    free(wn->slots);
    free(wn);
}

static win *win_find(window_op *w, int64_t start, bool create)
{
    if (w->last_win && w->last_win->start == start)
        return w->last_win;
    size_t lo = 0, hi = w->nwins;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->wins[mid]->start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < w->nwins && w->wins[lo]->start == start)
        return w->last_win = w->wins[lo];
    if (!create)
        return NULL;
    if (w->nwins == w->capwins) {
        size_t cap = w->capwins ? w->capwins * 2 : 8;
        win **p = realloc(w->wins, cap * sizeof *p);
        if (!p)
            return NULL;
        w->wins = p;
        w->capwins = cap;
    }
    win *wn = calloc(1, sizeof *wn);
    group **slots = calloc(16, sizeof *slots);
    if (!wn || !slots) {
        free(wn);
        free(slots);
        return NULL;
    }
    wn->start = start;
    wn->end = start + w->size;
    wn->slots = slots;
    wn->mask = 15;
    w->bytes += sizeof *wn + 16 * sizeof *slots;
    memmove(w->wins + lo + 1, w->wins + lo, (w->nwins - lo) * sizeof *w->wins);
    w->wins[lo] = wn;
    w->nwins++;
    return w->last_win = wn;
}

static bool win_grow(window_op *w, win *wn)
{
    uint32_t cap = (wn->mask + 1) * 2;
    group **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < wn->n; i++) {
        uint32_t j = (uint32_t)wn->groups[i]->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = wn->groups[i];
    }
    w->bytes += ((size_t)cap - (wn->mask + 1)) * sizeof *slots;
    free(wn->slots);
    wn->slots = slots;
    wn->mask = cap - 1;
    return true;
}

/* The group of key in wn, made when missing. */
static group *win_group(window_op *w, win *wn, uint64_t hash, const unsigned char *key,
                        size_t keylen)
{
    uint32_t j = (uint32_t)hash & wn->mask;
    for (group *g; (g = wn->slots[j]); j = (j + 1) & wn->mask)
        if (g->hash == hash && g->keylen == keylen && memcmp(g->key, key, keylen) == 0)
            return g;
    if ((wn->n + 1) * 2 > (size_t)wn->mask + 1) {
        if (!win_grow(w, wn))
            return NULL;
        j = (uint32_t)hash & wn->mask;
        while (wn->slots[j])
            j = (j + 1) & wn->mask;
    }
    if (wn->n == wn->cap) {
        size_t cap = wn->cap ? wn->cap * 2 : 8;
        group **p = realloc(wn->groups, cap * sizeof *p);
        if (!p)
            return NULL;
        wn->groups = p;
        wn->cap = cap;
    }
    group *g = group_new(w, hash, key, keylen, wn->start, wn->end);
    if (!g)
        return NULL;
    wn->slots[j] = g;
    wn->groups[wn->n++] = g;
    return g;
}

typedef enum add_result { ADD_OK, ADD_LATE, ADD_RANGE, ADD_OOM } add_result;

static add_result add_sliding(window_op *w, int64_t t, uint64_t hash)
{
    int64_t first, last;
    if (!wa_sliding(t, w->size, w->slide, &first, &last))
        return ADD_RANGE;
    bool any = false;
    for (int64_t s = first;; s += w->slide) {
        if (!wa_closed(s + w->size, w->lateness, w->wm)) {
            win *wn = win_find(w, s, true);
            group *g = wn ? win_group(w, wn, hash, w->key.data, w->key.len) : NULL;
            if (!g || !group_update(w, g, t))
                return ADD_OOM;
            any = true;
        }
        if (s == last)
            break;
    }
    return any ? ADD_OK : ADD_LATE;
}

/* ---- Sessions ---------------------------------------------------------------- */

static keystate *key_find(window_op *w, uint64_t hash, const unsigned char *key, size_t len,
                          uint32_t *slot)
{
    uint32_t j = (uint32_t)hash & w->kmask;
    for (keystate *k; w->kslots && (k = w->kslots[j]); j = (j + 1) & w->kmask)
        if (k->hash == hash && k->keylen == len && memcmp(k->key, key, len) == 0)
            return k;
    *slot = j;
    return NULL;
}

/* Rebuild the key table with room for n keys, from the keys in ks[]. */
static bool keys_rebuild(window_op *w, keystate **ks, size_t n)
{
    uint32_t cap = 16;
    while (cap < n * 2 + 2)
        cap *= 2;
    keystate **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint32_t j = (uint32_t)ks[i]->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = ks[i];
    }
    if (w->kslots)
        w->bytes -= ((size_t)w->kmask + 1) * sizeof *slots;
    w->bytes += (size_t)cap * sizeof *slots;
    free(w->kslots);
    w->kslots = slots;
    w->kmask = cap - 1;
    w->nkeys = n;
    return true;
}

/* Every key, in table order (for rebuilds and sweeps). */
static keystate **keys_list(window_op *w)
{
    keystate **ks = malloc((w->nkeys + 1) * sizeof *ks);
    if (!ks)
        return NULL;
    size_t n = 0;
    for (uint32_t j = 0; w->kslots && j <= w->kmask; j++)
        if (w->kslots[j])
            ks[n++] = w->kslots[j];
    return ks;
}

static keystate *key_add(window_op *w, uint64_t hash, const unsigned char *key, size_t len)
{
    if (!w->kslots || (w->nkeys + 1) * 2 > (size_t)w->kmask + 1) {
        keystate **ks = keys_list(w);
        bool ok = ks && keys_rebuild(w, ks, w->nkeys);
        free(ks);
        if (!ok)
            return NULL;
    }
    uint32_t slot = 0;
    key_find(w, hash, key, len, &slot);
    keystate *k = calloc(1, sizeof *k + len);
    if (!k)
        return NULL;
    k->hash = hash;
    k->keylen = (uint32_t)len;
    memcpy(k->key, key, len);
    w->kslots[slot] = k;
    w->nkeys++;
    w->bytes += sizeof *k + len;
    return k;
}

static void key_free(window_op *w, keystate *k)
{
    for (size_t i = 0; i < k->n; i++)
        group_free(w, k->sessions[i]);
    w->bytes -= sizeof *k + k->keylen + k->cap * sizeof *k->sessions;
    free(k->sessions);
    free(k);
}

static bool key_push(window_op *w, keystate *k, group *g)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 2;
        group **p = realloc(k->sessions, cap * sizeof *p);
        if (!p)
            return false;
        w->bytes += (cap - k->cap) * sizeof *p;
        k->sessions = p;
        k->cap = cap;
    }
    k->sessions[k->n++] = g;
    return true;
}

/* Fold session src into dst (states, bounds, first appearance). */
static bool session_merge(window_op *w, group *dst, group *src)
{
    size_t before = group_heap_bytes(w, dst) + group_heap_bytes(w, src);
    for (size_t a = 0; a < w->nagg; a++)
        if (!agg_merge(&w->aggs[a], dst->state + w->aggs[a].offset,
                       src->state + w->aggs[a].offset))
            return false;
    w->bytes += group_heap_bytes(w, dst);
    w->bytes -= before;
    if (src->start < dst->start)
        dst->start = src->start;
    if (src->end > dst->end)
        dst->end = src->end;
    if (src->seq < dst->seq)
        dst->seq = src->seq;
    group_free(w, src); /* its states are empty now */
    return true;
}

static add_result add_session(window_op *w, int64_t t, uint64_t hash)
{
    int64_t end;
    if (!wa_session_end(t, w->gap, &end))
        return ADD_RANGE;
    uint32_t slot;
    keystate *k = key_find(w, hash, w->key.data, w->key.len, &slot);
    group *into = NULL;
    size_t kept = 0;
    for (size_t i = 0; k && i < k->n; i++) {
        group *g = k->sessions[i];
        wa_session s = {g->start, g->end};
        if (!wa_session_overlaps(s, t, w->gap)) {
            k->sessions[kept++] = g;
        } else if (!into) {
            into = g;
            if (t < into->start)
                into->start = t;
            if (end > into->end)
                into->end = end;
            k->sessions[kept++] = g;
        } else if (!session_merge(w, into, g)) {
            return ADD_OOM;
        }
    }
    if (k)
        k->n = kept;
    if (!into) {
        /* A new session: late when it would already have closed. */
        if (wa_closed(end, w->lateness, w->wm))
            return ADD_LATE;
        if (!k && !(k = key_add(w, hash, w->key.data, w->key.len)))
            return ADD_OOM;
        if (!(into = group_new(w, hash, w->key.data, w->key.len, t, end)))
            return ADD_OOM;
        if (!key_push(w, k, into)) {
            group_free(w, into);
            return ADD_OOM;
        }
        if (end < w->min_end)
            w->min_end = end;
    }
    return group_update(w, into, t) ? ADD_OK : ADD_OOM;
}

/* ---- Output rows -------------------------------------------------------------- */

static int emit_out(window_op *w, char *err, size_t errlen)
{
    sluice_batch *b = w->out;
    w->out = NULL;
    if (!b)
        return SLUICE_OK;
    if (b->count == 0) {
        w->host->batch_free(b);
        return SLUICE_OK;
    }
    if (w->host->emit(w->ctx, b) != SLUICE_OK) {
        snprintf(err, errlen, "window: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static sluice_record *next_row(window_op *w, char *err, size_t errlen)
{
    const sluice_host *h = w->host;
    sluice_record *r = w->out ? h->record_append(w->out) : NULL;
    if (r)
        return r;
    if (w->out && emit_out(w, err, errlen) != SLUICE_OK)
        return NULL;
    if (!(w->out = h->batch_new(w->ctx)) || !(r = h->record_append(w->out))) {
        oom(err, errlen);
        return NULL;
    }
    return r;
}

/* Set a field, copying strings into the output batch. */
static bool set_copy(window_op *w, sluice_record *r, sluice_name name, sluice_value v)
{
    if (v.type == SLUICE_STRING || v.type == SLUICE_JSON) {
        v.u.s = w->host->str(w->out, v.u.s.ptr, v.u.s.len);
        if (!v.u.s.ptr && v.u.s.len)
            return false;
    }
    return w->host->set(w->out, r, name, v) == SLUICE_OK;
}

static int emit_row(window_op *w, const group *g, char *err, size_t errlen)
{
    sluice_record *r = next_row(w, err, errlen);
    if (!r)
        return SLUICE_ERROR;
    r->time = g->end - 1;
    char iso[48];
    size_t n = iso_time(g->start, iso, sizeof iso);
    if (!set_copy(w, r, w->name_start, sluice_string((sluice_str){iso, n})))
        return oom(err, errlen);
    n = iso_time(g->end, iso, sizeof iso);
    if (!set_copy(w, r, w->name_end, sluice_string((sluice_str){iso, n})))
        return oom(err, errlen);
    sl_reader key = {g->key, g->key + g->keylen, false};
    for (size_t i = 0; i < w->ngroup_by; i++) {
        sluice_value v;
        wval_decode(&key, &v);
        if (!set_copy(w, r, w->group_names[i], v))
            return oom(err, errlen);
    }
    for (size_t a = 0; a < w->nagg; a++) {
        sluice_value v;
        if (!agg_result(&w->aggs[a], g->state + w->aggs[a].offset, &v, &w->scratch) ||
            !set_copy(w, r, w->agg_names[a], v))
            return oom(err, errlen);
    }
    return SLUICE_OK;
}

/* Close every window the watermark has passed (all of them with force). */
static int close_sliding(window_op *w, bool force, char *err, size_t errlen)
{
    size_t closed = 0;
    int rc = SLUICE_OK;
    while (closed < w->nwins &&
           (force || wa_closed(w->wins[closed]->end, w->lateness, w->wm))) {
        win *wn = w->wins[closed];
        for (size_t i = 0; i < wn->n && rc == SLUICE_OK; i++)
            rc = emit_row(w, wn->groups[i], err, errlen);
        if (w->last_win == wn)
            w->last_win = NULL;
        win_free(w, wn);
        closed++;
        if (rc != SLUICE_OK)
            break;
    }
    if (closed) {
        memmove(w->wins, w->wins + closed, (w->nwins - closed) * sizeof *w->wins);
        w->nwins -= closed;
    }
    return rc;
}

static int by_end_then_seq(const void *a, const void *b)
{
    const group *x = *(group *const *)a, *y = *(group *const *)b;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sessions: take out every closable one (all with force), drop keys left
 * empty, emit in (end, first appearance) order. */
static int close_sessions(window_op *w, bool force, char *err, size_t errlen)
{
    if (!force && !wa_closed(w->min_end, w->lateness, w->wm))
        return SLUICE_OK;
    keystate **ks = keys_list(w);
    group **done = malloc((w->live_groups + 1) * sizeof *done);
    if (!ks || !done) {
        free(ks);
        free(done);
        return oom(err, errlen);
    }
    size_t nkeys = w->nkeys, ndone = 0, kept_keys = 0;
    int64_t min_end = INT64_MAX;
    for (size_t i = 0; i < nkeys; i++) {
        keystate *k = ks[i];
        size_t kept = 0;
        for (size_t s = 0; s < k->n; s++) {
            group *g = k->sessions[s];
            if (force || wa_closed(g->end, w->lateness, w->wm)) {
                done[ndone++] = g;
            } else {
                k->sessions[kept++] = g;
                if (g->end < min_end)
                    min_end = g->end;
            }
        }
        k->n = kept;
        if (kept)
            ks[kept_keys++] = k;
        else
            key_free(w, k);
    }
    w->min_end = min_end;
    bool rebuilt = keys_rebuild(w, ks, kept_keys);
    free(ks);
    qsort(done, ndone, sizeof *done, by_end_then_seq);
    int rc = rebuilt ? SLUICE_OK : oom(err, errlen);
    for (size_t i = 0; i < ndone; i++) {
        if (rc == SLUICE_OK)
            rc = emit_row(w, done[i], err, errlen);
        group_free(w, done[i]);
    }
    free(done);
    return rc;
}

static int close_windows(window_op *w, bool force, char *err, size_t errlen)
{
    int rc = w->kind == KIND_SESSION ? close_sessions(w, force, err, errlen)
                                     : close_sliding(w, force, err, errlen);
    if (rc == SLUICE_OK)
        rc = emit_out(w, err, errlen);
    report_state(w);
    return rc;
}

/* Update mode: the current row of every group changed since last time. */
static int emit_partials(window_op *w, char *err, size_t errlen)
{
    int rc = SLUICE_OK;
    if (w->kind == KIND_SLIDING) {
        for (size_t i = 0; i < w->nwins && rc == SLUICE_OK; i++)
            for (size_t j = 0; j < w->wins[i]->n && rc == SLUICE_OK; j++) {
                group *g = w->wins[i]->groups[j];
                if (g->dirty) {
                    g->dirty = 0;
                    rc = emit_row(w, g, err, errlen);
                }
            }
    } else {
        group **dirty = malloc((w->live_groups + 1) * sizeof *dirty);
        if (!dirty)
            return oom(err, errlen);
        size_t n = 0;
        for (uint32_t j = 0; w->kslots && j <= w->kmask; j++)
            for (size_t s = 0; w->kslots[j] && s < w->kslots[j]->n; s++)
                if (w->kslots[j]->sessions[s]->dirty)
                    dirty[n++] = w->kslots[j]->sessions[s];
        qsort(dirty, n, sizeof *dirty, by_end_then_seq);
        for (size_t i = 0; i < n && rc == SLUICE_OK; i++) {
            dirty[i]->dirty = 0;
            rc = emit_row(w, dirty[i], err, errlen);
        }
        free(dirty);
    }
    if (rc == SLUICE_OK)
        rc = emit_out(w, err, errlen);
    return rc;
}

/* ---- Create / destroy ----------------------------------------------------------- */

static void window_destroy(void *self)
{
    window_op *w = self;
    if (!w)
        return;
    for (size_t i = 0; i < w->nwins; i++)
        win_free(w, w->wins[i]);
    for (uint32_t j = 0; w->kslots && j <= w->kmask; j++)
        if (w->kslots[j])
            key_free(w, w->kslots[j]);
    free(w->kslots);
    free(w->wins);
    for (size_t i = 0; i < w->nconds; i++)
        if (w->conds[i])
            w->host->expr_free(w->conds[i]);
    for (size_t a = 0; a < w->nagg; a++)
        agg_spec_free(&w->aggs[a]);
    if (w->out)
        w->host->batch_free(w->out);
    free(w->conds);
    free(w->cond_values);
    free(w->aggs);
    free(w->agg_names);
    free(w->group_names);
    free(w->input_names);
    free(w->inputs);
    sl_bytes_free(&w->key);
    sl_bytes_free(&w->scratch);
    free(w);
}

static bool check_shape(window_op *w, const window_config *cfg)
{
    const sluice_host *h = w->host;
    bool ok = true;
    if (cfg->gap < 0 || cfg->size < 0 || cfg->slide < 0) {
        h->config_error(w->ctx, cfg->gap < 0 ? "gap" : cfg->size < 0 ? "size" : "slide",
                        "must be a positive duration");
        return false;
    }
    if (cfg->gap > 0) {
        if (cfg->size || cfg->slide) {
            h->config_error(w->ctx, "gap", "`gap` (session windows) excludes `size` and `slide`");
            ok = false;
        }
        w->kind = KIND_SESSION;
        w->gap = cfg->gap;
    } else if (cfg->size > 0) {
        w->kind = KIND_SLIDING;
        w->size = cfg->size;
        w->slide = cfg->slide ? cfg->slide : cfg->size;
        if (w->slide > w->size) {
            h->config_error(w->ctx, "slide", "`slide` must not exceed `size` (a record would "
                                             "fall between windows)");
            ok = false;
        }
    } else {
        h->config_error(w->ctx, cfg->slide ? "slide" : "size",
                        "window needs `size` (tumbling; with `slide`: sliding) or `gap` "
                        "(session windows), a positive duration");
        ok = false;
    }
    if (cfg->allowed_lateness < 0) {
        h->config_error(w->ctx, "allowed_lateness", "must not be negative");
        ok = false;
    }
    w->lateness = cfg->allowed_lateness;
    w->late_output = cfg->late;
    w->emit_every = parse_emit(cfg->emit);
    if (w->emit_every < 0) {
        h->config_error(w->ctx, "emit", "`%s`: expected on_close or `every DURATION` "
                                        "(e.g. every 10s)", cfg->emit);
        ok = false;
    }
    return ok;
}

static bool name_taken(const window_op *w, sluice_name n, size_t nagg_so_far)
{
    if (n == w->name_start || n == w->name_end)
        return true;
    for (size_t i = 0; i < w->ngroup_by; i++)
        if (w->group_names[i] == n)
            return true;
    for (size_t a = 0; a < nagg_so_far; a++)
        if (w->agg_names[a] == n)
            return true;
    return false;
}

/* The index of input field `field`, added once. */
static int input_index(window_op *w, const char *field)
{
    sluice_name n = w->host->intern(field, strlen(field));
    for (size_t i = 0; i < w->ninputs; i++)
        if (w->input_names[i] == n)
            return (int)i;
    w->input_names[w->ninputs] = n;
    return (int)w->ninputs++;
}

static bool parse_aggregates(window_op *w, const window_config *cfg)
{
    const sluice_host *h = w->host;
    bool ok = true;
    size_t offset = 0;
    for (size_t a = 0; a < cfg->aggregate.count; a++) {
        char option[300], why[300];
        const char *name = cfg->aggregate.keys[a];
        snprintf(option, sizeof option, "aggregate.%s", name);
        agg_spec *s = &w->aggs[a];
        if (!agg_parse(cfg->aggregate.values[a], s, why, sizeof why)) {
            h->config_error(w->ctx, option, "%s", why);
            ok = false;
            continue;
        }
        w->agg_names[a] = h->intern(name, strlen(name));
        w->nagg = a + 1;
        if (!*name || name_taken(w, w->agg_names[a], a)) {
            h->config_error(w->ctx, option, *name ? "`%s` is already an output field "
                                                    "(window_start/window_end, a group_by "
                                                    "field or another aggregate)"
                                                  : "an output name cannot be empty%s", name);
            ok = false;
        }
        s->offset = offset;
        offset += agg_state_size(s->func);
        if (s->field)
            s->input = input_index(w, s->field);
        if (s->expr) {
            s->cond = (int)w->nconds;
            if (!(w->conds[w->nconds++] = h->expr_compile(w->ctx, option, s->expr)))
                ok = false;
        }
        if (s->func == AGG_COUNT_DISTINCT || s->func == AGG_COLLECT_SET ||
            s->func == AGG_COLLECT_LIST || s->func == AGG_FIRST || s->func == AGG_LAST ||
            s->func == AGG_PERCENTILE)
            w->heap_aggs = true;
    }
    w->nagg = cfg->aggregate.count;
    w->state_size = offset;
    return ok;
}

static int window_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                         void **self, char *err, size_t errlen)
{
    const window_config *cfg = config;
    window_op *w = calloc(1, sizeof *w);
    if (!w)
        return oom(err, errlen);
    w->host = host;
    w->ctx = ctx;
    w->wm = INT64_MIN;
    w->min_end = INT64_MAX;
    w->name_start = host->intern("window_start", 12);
    w->name_end = host->intern("window_end", 10);
    size_t ng = cfg->group_by.count, na = cfg->aggregate.count;
    w->group_names = calloc(ng + 1, sizeof *w->group_names);
    w->aggs = calloc(na + 1, sizeof *w->aggs);
    w->agg_names = calloc(na + 1, sizeof *w->agg_names);
    w->input_names = calloc(na + 1, sizeof *w->input_names);
    w->inputs = calloc(na + 1, sizeof *w->inputs);
    w->conds = calloc(na + 1, sizeof *w->conds);
    w->cond_values = calloc(na + 1, sizeof *w->cond_values);
    if (!w->group_names || !w->aggs || !w->agg_names || !w->input_names || !w->inputs ||
        !w->conds || !w->cond_values) {
        window_destroy(w);
        return oom(err, errlen);
    }
    /* Never NULL, even for an empty key: memcmp() needs valid pointers. */
    if (!sl_bytes_reserve(&w->key, 64) || !sl_bytes_reserve(&w->scratch, 64)) {
        window_destroy(w);
        return oom(err, errlen);
    }
    bool ok = check_shape(w, cfg);
    for (size_t i = 0; i < ng; i++) {
        const char *f = cfg->group_by.items[i];
        sluice_name n = host->intern(f, strlen(f));
        if (!*f || name_taken(w, n, 0)) {
            host->config_error(ctx, "group_by", *f ? "`%s` is listed twice or clashes with "
                                                     "window_start/window_end"
                                                   : "a field name cannot be empty%s", f);
            ok = false;
        }
        w->group_names[w->ngroup_by++] = n;
    }
    if (!parse_aggregates(w, cfg))
        ok = false;
    if (!ok) {
        window_destroy(w);
        snprintf(err, errlen, "window: invalid configuration");
        return SLUICE_ERROR;
    }
    *self = w;
    return SLUICE_OK;
}

/* ---- Records ------------------------------------------------------------------- */

/* The record's group key into w->key, its inputs and conditions. RETRY:
 * rejected (a condition failed to evaluate); ERROR under on_error: fail. */
static int read_record(window_op *w, const sluice_record *rec, sluice_batch **scratch,
                       char *err, size_t errlen)
{
    w->key.len = 0;
    for (size_t i = 0; i < w->ngroup_by; i++)
        if (!wval_encode(&w->key, sluice_get(rec, w->group_names[i])))
            return oom(err, errlen);
    for (size_t i = 0; i < w->ninputs; i++)
        w->inputs[i] = sluice_get(rec, w->input_names[i]);
    for (size_t c = 0; c < w->nconds; c++) {
        sluice_value v;
        char msg[512];
        if (!*scratch && !(*scratch = w->host->batch_new(w->ctx)))
            return oom(err, errlen);
        if (w->host->expr_eval(w->conds[c], rec, *scratch, &v, msg, sizeof msg) != SLUICE_OK) {
            if (w->host->reject(w->ctx, rec, (sluice_str){NULL, 0}, "expr_error", msg) ==
                SLUICE_ERROR) {
                snprintf(err, errlen, "window: %s", msg);
                return SLUICE_ERROR;
            }
            return SLUICE_RETRY;
        }
        w->cond_values[c] = !(v.type == SLUICE_NULL || (v.type == SLUICE_BOOL && !v.u.b));
    }
    return SLUICE_OK;
}

static int reject(window_op *w, const sluice_record *rec, const char *reason, const char *detail,
                  char *err, size_t errlen)
{
    if (w->host->reject(w->ctx, rec, (sluice_str){NULL, 0}, reason, detail) == SLUICE_ERROR) {
        snprintf(err, errlen, "window: %s", detail);
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* A late record goes to `late` (when configured) unchanged. */
static int route_late(window_op *w, const sluice_batch *in, const sluice_record *rec,
                      sluice_batch **late, char *err, size_t errlen)
{
    const sluice_host *h = w->host;
    if (w->late_output < 0)
        return SLUICE_OK;
    if (*late && h->record_copy(*late, in, rec))
        return SLUICE_OK;
    if (*late) {
        sluice_batch *full = *late;
        *late = NULL;
        if (h->emit_to(w->ctx, w->late_output, full) != SLUICE_OK) {
            snprintf(err, errlen, "window: emitting late records failed");
            return SLUICE_ERROR;
        }
    }
    if (!(*late = h->batch_new(w->ctx)) || !h->record_copy(*late, in, rec))
        return oom(err, errlen);
    return SLUICE_OK;
}

static int process_records(window_op *w, const sluice_batch *in, sluice_batch **scratch,
                           sluice_batch **late, uint64_t *nlate, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < in->count; i++) {
        const sluice_record *rec = &in->records[i];
        int rc;
        if (rec->time == SLUICE_TIME_NONE) {
            if (reject(w, rec, "no_event_time",
                       "the window operator needs event time: set `event_time` on the source",
                       err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            continue;
        }
        rc = read_record(w, rec, scratch, err, errlen);
        if (rc == SLUICE_RETRY)
            continue;
        if (rc != SLUICE_OK)
            return rc;
        uint64_t hash = whash(w->key.data, w->key.len);
        w->arrival++;
        add_result r = w->kind == KIND_SESSION ? add_session(w, rec->time, hash)
                                               : add_sliding(w, rec->time, hash);
        switch (r) {
        case ADD_OK:
            break;
        case ADD_OOM:
            return oom(err, errlen);
        case ADD_RANGE:
            if (reject(w, rec, "bad_event_time",
                       "event time too close to the int64 limits for this window", err,
                       errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            break;
        case ADD_LATE:
            ++*nlate;
            if (route_late(w, in, rec, late, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            break;
        }
    }
    return SLUICE_OK;
}

static int window_process(void *self, const sluice_batch *in, unsigned input, char *err,
                          size_t errlen)
{
    window_op *w = self;
    const sluice_host *h = w->host;
    sluice_batch *scratch = NULL, *late = NULL;
    uint64_t nlate = 0;
    int rc = process_records(w, in, &scratch, &late, &nlate, err, errlen);
    if (scratch)
        h->batch_free(scratch);
    if (nlate && SLUICE_HOST_HAS(h, count_late))
        h->count_late(w->ctx, nlate);
    if (late) {
        if (rc == SLUICE_OK && late->count) {
            if (h->emit_to(w->ctx, w->late_output, late) != SLUICE_OK) {
                snprintf(err, errlen, "window: emitting late records failed");
                rc = SLUICE_ERROR;
            }
        } else {
            h->batch_free(late);
        }
    }
    report_state(w);
    return rc;
}

static int window_on_watermark(void *self, int64_t wm, char *err, size_t errlen)
{
    window_op *w = self;
    if (wm <= w->wm)
        return SLUICE_OK;
    w->wm = wm;
    return close_windows(w, wm == SLUICE_TIME_MAX, err, errlen);
}

/* The end of the input. A bounded input has already moved the watermark to
 * the end (every window fired in on_watermark). Windows still open here
 * were stopped early (a signal): they are not final, so nothing is emitted
 * as if it were; they stay in the state a final checkpoint keeps. */
static int window_flush(void *self, char *err, size_t errlen)
{
    window_op *w = self;
    (void)err;
    (void)errlen;
    if (w->wm != SLUICE_TIME_MAX && w->live_groups)
        w->host->log(w->ctx, SLUICE_LOG_INFO,
                     "stopped with %zu group(s) in open windows: not emitted as final rows "
                     "(a checkpoint keeps them for the next run)",
                     (size_t)w->live_groups);
    return SLUICE_OK;
}

static int window_on_tick(void *self, int64_t now_ms, char *err, size_t errlen)
{
    window_op *w = self;
    if (!w->emit_every)
        return SLUICE_OK;
    if (!w->next_emit) {
        w->next_emit = now_ms + w->emit_every;
        return SLUICE_OK;
    }
    if (now_ms < w->next_emit)
        return SLUICE_OK;
    w->next_emit = now_ms + w->emit_every;
    return emit_partials(w, err, errlen);
}

/* ---- Snapshots ------------------------------------------------------------------- */

static bool save_shape(const window_op *w, sl_bytes *b)
{
    bool ok = sl_bytes_put(b, SNAPSHOT_MAGIC, 4) && wbuf_u8(b, SNAPSHOT_VERSION) &&
              wbuf_u8(b, (uint8_t)w->kind) && wbuf_i64(b, w->size) && wbuf_i64(b, w->slide) &&
              wbuf_i64(b, w->gap) && wbuf_u32(b, (uint32_t)w->ngroup_by) &&
              wbuf_u32(b, (uint32_t)w->nagg);
    for (size_t a = 0; ok && a < w->nagg; a++)
        ok = wbuf_u8(b, (uint8_t)w->aggs[a].func);
    return ok;
}

static bool save_group(const window_op *w, const group *g, sl_bytes *b)
{
    bool ok = wbuf_i64(b, g->start) && wbuf_i64(b, g->end) && wbuf_u64(b, g->seq) &&
              wbuf_u8(b, g->dirty) && wbuf_u32(b, g->keylen) && sl_bytes_put(b, g->key, g->keylen);
    for (size_t a = 0; ok && a < w->nagg; a++)
        ok = agg_save(&w->aggs[a], g->state + w->aggs[a].offset, b);
    return ok;
}

static int window_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                           size_t errlen)
{
    window_op *w = self;
    sl_bytes b = {0};
    bool ok = save_shape(w, &b) && wbuf_i64(&b, w->wm) && wbuf_u64(&b, w->arrival) &&
              wbuf_u64(&b, w->seq) && wbuf_u64(&b, w->live_groups);
    for (size_t i = 0; ok && i < w->nwins; i++)
        for (size_t j = 0; ok && j < w->wins[i]->n; j++)
            ok = save_group(w, w->wins[i]->groups[j], &b);
    for (uint32_t j = 0; ok && w->kslots && j <= w->kmask; j++)
        for (size_t s = 0; ok && w->kslots[j] && s < w->kslots[j]->n; s++)
            ok = save_group(w, w->kslots[j]->sessions[s], &b);
    if (!ok) {
        sl_bytes_free(&b);
        return oom(err, errlen);
    }
    *blob = b.data;
    *len = b.len;
    return SLUICE_OK;
}

/* Read one group and put it where it belongs. false: damaged or OOM. */
static bool load_group(window_op *w, sl_reader *r)
{
    int64_t start = rbuf_i64(r), end = rbuf_i64(r);
    uint64_t seq = rbuf_u64(r);
    uint8_t dirty = rbuf_u8(r);
    uint32_t keylen = rbuf_u32(r);
    const unsigned char *key = sl_reader_take(r, keylen);
    if (!key || end <= start)
        return false;
    sl_reader check = {key, key + keylen, false};
    for (size_t i = 0; i < w->ngroup_by; i++) {
        sluice_value v;
        if (!wval_decode(&check, &v))
            return false;
    }
    if (check.p != check.end)
        return false;
    uint64_t hash = whash(key, keylen);
    group *g;
    if (w->kind == KIND_SLIDING) {
        if (end - start != w->size || wa_floor_div(start, w->slide) * w->slide != start)
            return false;
        win *wn = win_find(w, start, true);
        size_t before = wn ? wn->n : 0;
        if (!wn || !(g = win_group(w, wn, hash, key, keylen)) || wn->n == before)
            return false; /* out of memory, or the same group twice */
    } else {
        uint32_t slot;
        keystate *k = key_find(w, hash, key, keylen, &slot);
        if (!k && !(k = key_add(w, hash, key, keylen)))
            return false;
        if (!(g = group_new(w, hash, key, keylen, start, end)))
            return false;
        if (!key_push(w, k, g)) {
            group_free(w, g);
            return false;
        }
        if (end < w->min_end)
            w->min_end = end;
    }
    g->seq = seq;
    g->dirty = dirty;
    for (size_t a = 0; a < w->nagg; a++)
        if (!agg_load(&w->aggs[a], g->state + w->aggs[a].offset, r))
            return false;
    if (w->heap_aggs)
        w->bytes += group_heap_bytes(w, g);
    return true;
}

static int window_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    window_op *w = self;
    sl_bytes shape = {0};
    if (!save_shape(w, &shape))
        return oom(err, errlen);
    sl_reader r = {blob, (const unsigned char *)blob + len, false};
    const unsigned char *head = sl_reader_take(&r, shape.len);
    bool same = head && memcmp(head, shape.data, shape.len) == 0;
    sl_bytes_free(&shape);
    if (!same) {
        snprintf(err, errlen, "window: the snapshot is from a different version or window "
                              "configuration (size/slide/gap, group_by, aggregates)");
        return SLUICE_ERROR;
    }
    if (w->live_groups) {
        snprintf(err, errlen, "window: restore into a window that already holds state");
        return SLUICE_ERROR;
    }
    int64_t wm = rbuf_i64(&r);
    uint64_t arrival = rbuf_u64(&r), seq = rbuf_u64(&r), n = rbuf_u64(&r);
    for (uint64_t i = 0; i < n && !r.bad; i++)
        if (!load_group(w, &r))
            r.bad = true;
    if (r.bad || r.p != r.end) {
        snprintf(err, errlen, "window: damaged snapshot (%zu bytes)", len);
        return SLUICE_ERROR;
    }
    w->wm = wm;
    w->arrival = arrival;
    w->seq = seq;
    report_state(w);
    return SLUICE_OK;
}

const sluice_plugin_def sl_plugin_window_operator = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "window",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "event-time windows (tumbling, sliding, session) with grouped aggregates",
    .config_size = sizeof(window_config),
    .options = window_options,
    .create = window_create,
    .destroy = window_destroy,
    .process = window_process,
    .on_watermark = window_on_watermark,
    .flush = window_flush,
    .snapshot = window_snapshot,
    .restore = window_restore,
    .on_tick = window_on_tick,
};
