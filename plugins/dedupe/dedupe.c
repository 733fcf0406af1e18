/*
 * dedupe.c — the `dedupe` operator: drop records whose key was already seen
 * a short (event) time before.
 *
 *     operators:
 *       unique_clicks:
 *         type: dedupe
 *         input: clicks
 *         key: [user_id, ad_id]
 *         within: 10m
 *
 * Semantics
 *   Let t0 be the event time of the last record KEPT for a key. A record of
 *   that key with event time t is dropped when |t - t0| < within, and kept
 *   otherwise: a record exactly `within` after the kept one is kept (the
 *   bound is exclusive). A dropped record does NOT move t0 — first-
 *   occurrence semantics: a key repeated every second with `within: 10s`
 *   passes once every 10 s, not once. When a record is kept t0 becomes the
 *   larger of the two times, so a late record never pulls the window back.
 *   Records without an event time (the source has no `event_time`) are
 *   rejected with reason `no_event_time` to the stage's `errors` stream.
 *
 * Keys
 *   The values of the `key` fields (top-level field names), each encoded
 *   with its type: 1, 1.0 and "1" are three different keys; a missing field
 *   and a null one are the same key part (null). One stream usually keeps
 *   one type per field, and this keeps the comparison exact.
 *
 * State
 *   A chained hash table key bytes -> t0, plus a min-heap of (t0, entry) so
 *   expiry costs only the entries that expire. When the input watermark
 *   reaches wm, entries with t0 < wm - within are freed: no record on time
 *   (t >= wm) could be within `within` of them any more, so state stays
 *   bounded by the keys seen in the last `within` plus the watermark delay.
 *   A record that is itself behind the watermark may pass as new once its
 *   key's entry was freed (Spark's dropDuplicatesWithinWatermark behaves
 *   the same way). The heap may hold stale items — a key whose t0 moved on
 *   leaves its old item behind; popping one whose time is no longer the
 *   entry's is a no-op, and since t0 only grows a stale item always pops
 *   before the entry's current one, so it never points at freed memory.
 *
 * Snapshot: "SLDD", a version byte, the entry count, then per entry t0, the
 * key length and the key bytes (host byte order: the same build restores
 * it; the version byte guards the rest).
 */
#include "sluice/plugin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct dedupe_config {
    sluice_list key;
    int64_t within;
} dedupe_config;

static const sluice_option dedupe_options[] = {
    {.name = "key",
     .type = SLUICE_OPT_LIST,
     .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(dedupe_config, key),
     .help = "field names whose values together identify a duplicate (typed: 1 and \"1\" "
             "differ; a missing field counts as null)"},
    {.name = "within",
     .type = SLUICE_OPT_DURATION,
     .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(dedupe_config, within),
     .help = "a record is dropped when the last KEPT record of its key is less than this "
             "much event time away (exclusive: exactly `within` later is kept); dropped "
             "records do not extend it; state older than watermark - within is freed"},
    {.name = NULL},
};

/* One key's state; the key bytes follow the struct. */
typedef struct dd_entry {
    struct dd_entry *next;
    uint64_t hash;
    int64_t time; /* t0: event time of the last kept record */
    uint32_t len;
    unsigned char key[];
} dd_entry;

typedef struct dd_expiry {
    int64_t time;
    dd_entry *entry;
} dd_expiry;

typedef struct dedupe_op {
    const sluice_host *host;
    sluice_ctx *ctx;
    int64_t within;
    size_t nkeys;
    sluice_name *keys;

    dd_entry **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    size_t key_bytes; /* sum of the entries' key lengths, for state_size */

    dd_expiry *heap;
    size_t heap_len, heap_cap;

    unsigned char *scratch; /* the current record's key */
    size_t scratch_len, scratch_cap;
} dedupe_op;

/* ---- the key's bytes -------------------------------------------------------- */

static bool scratch_put(dedupe_op *d, const void *p, size_t n)
{
    if (d->scratch_len + n > d->scratch_cap) {
        size_t cap = d->scratch_cap ? d->scratch_cap : 64;
        while (cap < d->scratch_len + n)
            cap *= 2;
        unsigned char *q = realloc(d->scratch, cap);
        if (!q)
            return false;
        d->scratch = q;
        d->scratch_cap = cap;
    }
    if (n)
        memcpy(d->scratch + d->scratch_len, p, n);
    d->scratch_len += n;
    return true;
}

/* A type byte, then the payload: nothing (null), 1 byte (bool), 8 bytes
 * (int, double bits), or a 4-byte length and the bytes (string, JSON). */
static bool encode_value(dedupe_op *d, const sluice_value *v)
{
    unsigned char type = v ? (unsigned char)v->type : SLUICE_NULL;
    if (!scratch_put(d, &type, 1))
        return false;
    if (!v)
        return true;
    switch (v->type) {
    case SLUICE_NULL:
        return true;
    case SLUICE_BOOL: {
        unsigned char b = v->u.b;
        return scratch_put(d, &b, 1);
    }
    case SLUICE_INT:
        return scratch_put(d, &v->u.i, 8);
    case SLUICE_DOUBLE:
        return scratch_put(d, &v->u.d, 8);
    case SLUICE_STRING:
    case SLUICE_JSON: {
        uint32_t n = (uint32_t)v->u.s.len;
        return scratch_put(d, &n, 4) && scratch_put(d, v->u.s.ptr, v->u.s.len);
    }
    }
    return true;
}

static bool encode_key(dedupe_op *d, const sluice_record *rec)
{
    d->scratch_len = 0;
    for (size_t i = 0; i < d->nkeys; i++)
        if (!encode_value(d, sluice_get(rec, d->keys[i])))
            return false;
    return true;
}

/* FNV-1a, 64 bit: keys are short, and this is simple and good enough. */
static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- the hash table ---------------------------------------------------------- */

static dd_entry *table_find(dedupe_op *d, const unsigned char *key, size_t len, uint64_t h)
{
    for (dd_entry *e = d->buckets[h & (d->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

static bool table_grow(dedupe_op *d)
{
    size_t n = d->nbuckets * 2;
    dd_entry **b = calloc(n, sizeof *b);
    if (!b)
        return false;
    for (size_t i = 0; i < d->nbuckets; i++) {
        dd_entry *e = d->buckets[i];
        while (e) {
            dd_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
    return true;
}

static void table_remove(dedupe_op *d, dd_entry *victim)
{
    dd_entry **pp = &d->buckets[victim->hash & (d->nbuckets - 1)];
    while (*pp && *pp != victim)
        pp = &(*pp)->next;
    if (!*pp)
        return;
    *pp = victim->next;
    d->count--;
    d->key_bytes -= victim->len;
    free(victim);
}

/* ---- the expiry heap (min on time) ------------------------------------------- */

static bool heap_push(dedupe_op *d, int64_t time, dd_entry *e)
{
    if (d->heap_len == d->heap_cap) {
        size_t cap = d->heap_cap ? d->heap_cap * 2 : 256;
        dd_expiry *h = realloc(d->heap, cap * sizeof *h);
        if (!h)
            return false;
        d->heap = h;
        d->heap_cap = cap;
    }
    size_t i = d->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (d->heap[parent].time <= time)
            break;
        d->heap[i] = d->heap[parent];
        i = parent;
    }
    d->heap[i] = (dd_expiry){time, e};
    return true;
}

static dd_expiry heap_pop(dedupe_op *d)
{
    dd_expiry top = d->heap[0];
    dd_expiry last = d->heap[--d->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= d->heap_len)
            break;
        if (child + 1 < d->heap_len && d->heap[child + 1].time < d->heap[child].time)
            child++;
        if (d->heap[child].time >= last.time)
            break;
        d->heap[i] = d->heap[child];
        i = child;
    }
    if (d->heap_len)
        d->heap[i] = last;
    return top;
}

/* ---- state ------------------------------------------------------------------- */

/* Add a key with t0 = time, or move an existing key's t0 forward. */
static bool remember(dedupe_op *d, dd_entry *e, const unsigned char *key, size_t len,
                     uint64_t h, int64_t time)
{
    if (e) {
        if (time <= e->time)
            return true;
        e->time = time;
        return heap_push(d, time, e);
    }
    if (d->count >= d->nbuckets && !table_grow(d))
        return false;
    e = malloc(sizeof *e + len);
    if (!e)
        return false;
    e->hash = h;
    e->time = time;
    e->len = (uint32_t)len;
    memcpy(e->key, key, len);
    if (!heap_push(d, time, e)) {
        free(e);
        return false;
    }
    e->next = d->buckets[h & (d->nbuckets - 1)];
    d->buckets[h & (d->nbuckets - 1)] = e;
    d->count++;
    d->key_bytes += len;
    return true;
}

static void report_state(dedupe_op *d)
{
    uint64_t bytes = d->count * sizeof(dd_entry) + d->key_bytes +
                     d->nbuckets * sizeof(dd_entry *) + d->heap_cap * sizeof(dd_expiry);
    d->host->state_size(d->ctx, d->count, bytes);
}

static void clear_state(dedupe_op *d)
{
    for (size_t i = 0; d->buckets && i < d->nbuckets; i++) {
        dd_entry *e = d->buckets[i];
        while (e) {
            dd_entry *next = e->next;
            free(e);
            e = next;
        }
        d->buckets[i] = NULL;
    }
    d->count = 0;
    d->key_bytes = 0;
    d->heap_len = 0;
}

/* ---- lifecycle --------------------------------------------------------------- */

static void dedupe_destroy(void *self)
{
    dedupe_op *d = self;
    if (!d)
        return;
    clear_state(d);
    free(d->buckets);
    free(d->heap);
    free(d->scratch);
    free(d->keys);
    free(d);
}

static int dedupe_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                         void **self, char *err, size_t errlen)
{
    const dedupe_config *cfg = config;
    bool ok = true;
    if (cfg->key.count == 0) {
        host->config_error(ctx, "key", "dedupe needs at least one key field");
        ok = false;
    }
    for (size_t i = 0; i < cfg->key.count; i++)
        if (!cfg->key.items[i][0]) {
            host->config_error(ctx, "key", "a key field name cannot be empty");
            ok = false;
        }
    if (cfg->within <= 0) {
        host->config_error(ctx, "within", "must be more than 0 (e.g. 10s)");
        ok = false;
    }
    if (!ok) {
        snprintf(err, errlen, "dedupe: invalid options");
        return SLUICE_ERROR;
    }
    dedupe_op *d = calloc(1, sizeof *d);
    if (!d)
        goto oom;
    d->host = host;
    d->ctx = ctx;
    d->within = cfg->within;
    d->nkeys = cfg->key.count;
    d->nbuckets = 64;
    d->keys = calloc(d->nkeys, sizeof *d->keys);
    d->buckets = calloc(d->nbuckets, sizeof *d->buckets);
    if (!d->keys || !d->buckets)
        goto oom;
    for (size_t i = 0; i < d->nkeys; i++)
        d->keys[i] = host->intern(cfg->key.items[i], strlen(cfg->key.items[i]));
    *self = d;
    return SLUICE_OK;
oom:
    dedupe_destroy(d);
    snprintf(err, errlen, "dedupe: out of memory");
    return SLUICE_ERROR;
}

/* ---- records ----------------------------------------------------------------- */

static bool is_duplicate(int64_t t, int64_t t0, int64_t within)
{
    /* |t - t0| < within without overflow at the int64 edges */
    if (t >= t0)
        return (uint64_t)t - (uint64_t)t0 < (uint64_t)within;
    return (uint64_t)t0 - (uint64_t)t < (uint64_t)within;
}

/* SLUICE_OK: keep rec; SLUICE_RETRY: drop it (duplicate or rejected);
 * SLUICE_ERROR: out of memory or on_error: fail. */
static int judge(dedupe_op *d, const sluice_record *rec, char *err, size_t errlen)
{
    if (rec->time == SLUICE_TIME_NONE) {
        if (d->host->reject(d->ctx, rec, (sluice_str){NULL, 0}, "no_event_time",
                            "dedupe needs event time: configure `event_time` on the "
                            "source") == SLUICE_ERROR) {
            snprintf(err, errlen, "dedupe: a record has no event time (on_error: fail)");
            return SLUICE_ERROR;
        }
        return SLUICE_RETRY;
    }
    if (!encode_key(d, rec))
        goto oom;
    uint64_t h = hash_bytes(d->scratch, d->scratch_len);
    dd_entry *e = table_find(d, d->scratch, d->scratch_len, h);
    if (e && is_duplicate(rec->time, e->time, d->within))
        return SLUICE_RETRY;
    if (!remember(d, e, d->scratch, d->scratch_len, h, rec->time))
        goto oom;
    return SLUICE_OK;
oom:
    snprintf(err, errlen, "dedupe: out of memory");
    return SLUICE_ERROR;
}

static int dedupe_process(void *self, const sluice_batch *in, unsigned input, char *err,
                          size_t errlen)
{
    dedupe_op *d = self;
    const sluice_host *h = d->host;
    sluice_batch *out = NULL;
    int rc = SLUICE_OK;
    for (uint32_t i = 0; i < in->count && rc != SLUICE_ERROR; i++) {
        const sluice_record *rec = &in->records[i];
        int verdict = judge(d, rec, err, errlen);
        if (verdict == SLUICE_ERROR) {
            rc = SLUICE_ERROR;
            break;
        }
        if (verdict != SLUICE_OK)
            continue;
        if (out && out->count == out->capacity) {
            sluice_batch *full = out;
            out = NULL;
            if (h->emit(d->ctx, full) != SLUICE_OK) {
                snprintf(err, errlen, "dedupe: emitting a batch failed");
                rc = SLUICE_ERROR;
                break;
            }
        }
        if (!out && !(out = h->batch_new(d->ctx))) {
            snprintf(err, errlen, "dedupe: out of memory");
            rc = SLUICE_ERROR;
            break;
        }
        if (!h->record_copy(out, in, rec)) {
            snprintf(err, errlen, "dedupe: out of memory");
            rc = SLUICE_ERROR;
        }
    }
    report_state(d);
    if (rc == SLUICE_ERROR || !out || out->count == 0) {
        if (out)
            h->batch_free(out);
        return rc;
    }
    if (h->emit(d->ctx, out) != SLUICE_OK) {
        snprintf(err, errlen, "dedupe: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* Free every key whose t0 < wm - within: nothing on time can match it. */
static int dedupe_on_watermark(void *self, int64_t wm, char *err, size_t errlen)
{
    dedupe_op *d = self;
    int64_t cutoff = wm == SLUICE_TIME_MAX       ? SLUICE_TIME_MAX
                     : wm < INT64_MIN + d->within ? INT64_MIN
                                                  : wm - d->within;
    size_t before = d->count;
    while (d->heap_len && d->heap[0].time < cutoff) {
        dd_expiry x = heap_pop(d);
        if (x.entry->time == x.time)
            table_remove(d, x.entry);
    }
    if (d->count != before)
        report_state(d);
    return SLUICE_OK;
}

/* ---- snapshot / restore ----------------------------------------------------------- */

#define SNAP_MAGIC "SLDD"
#define SNAP_VERSION 1

static int dedupe_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                           size_t errlen)
{
    dedupe_op *d = self;
    size_t size = 4 + 1 + 8 + d->count * (8 + 4) + d->key_bytes;
    unsigned char *p = malloc(size), *w = p;
    if (!p) {
        snprintf(err, errlen, "dedupe: out of memory writing a snapshot");
        return SLUICE_ERROR;
    }
    uint64_t n = d->count;
    memcpy(w, SNAP_MAGIC, 4), w += 4;
    *w++ = SNAP_VERSION;
    memcpy(w, &n, 8), w += 8;
    for (size_t i = 0; i < d->nbuckets; i++)
        for (dd_entry *e = d->buckets[i]; e; e = e->next) {
            memcpy(w, &e->time, 8), w += 8;
            memcpy(w, &e->len, 4), w += 4;
            memcpy(w, e->key, e->len), w += e->len;
        }
    *blob = p;
    *len = size;
    return SLUICE_OK;
}

static int dedupe_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    dedupe_op *d = self;
    const unsigned char *p = blob, *end = p + len;
    uint64_t n;
    if (len < 13 || memcmp(p, SNAP_MAGIC, 4) != 0) {
        snprintf(err, errlen, "dedupe: not a dedupe snapshot");
        return SLUICE_ERROR;
    }
    if (p[4] != SNAP_VERSION) {
        snprintf(err, errlen, "dedupe: snapshot version %u, this build reads %u", p[4],
                 SNAP_VERSION);
        return SLUICE_ERROR;
    }
    memcpy(&n, p + 5, 8);
    p += 13;
    clear_state(d);
    for (uint64_t i = 0; i < n; i++) {
        int64_t t;
        uint32_t klen;
        if ((size_t)(end - p) < 12)
            goto damaged;
        memcpy(&t, p, 8);
        memcpy(&klen, p + 8, 4);
        p += 12;
        if ((size_t)(end - p) < klen)
            goto damaged;
        uint64_t h = hash_bytes(p, klen);
        if (!remember(d, table_find(d, p, klen, h), p, klen, h, t)) {
            snprintf(err, errlen, "dedupe: out of memory restoring a snapshot");
            clear_state(d);
            return SLUICE_ERROR;
        }
        p += klen;
    }
    if (p != end)
        goto damaged;
    report_state(d);
    return SLUICE_OK;
damaged:
    clear_state(d);
    snprintf(err, errlen, "dedupe: the snapshot is damaged (truncated or trailing bytes)");
    return SLUICE_ERROR;
}

const sluice_plugin_def sl_plugin_dedupe_operator = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "dedupe",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "drop records whose `key` was kept less than `within` event time before",
    .config_size = sizeof(dedupe_config),
    .options = dedupe_options,
    .create = dedupe_create,
    .destroy = dedupe_destroy,
    .process = dedupe_process,
    .on_watermark = dedupe_on_watermark,
    .snapshot = dedupe_snapshot,
    .restore = dedupe_restore,
};
