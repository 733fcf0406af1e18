/*
 * timers.c — event-time timers: `timer.at(key, t)` fires `on_timer(key, t,
 * emit)` once when the input watermark reaches t.
 *
 * As in Flink, a timer is identified by (time, key): setting the same pair
 * twice sets it once, so a script may call timer.at() for every record of
 * a key without piling up timers. Due timers fire in time order, ties in
 * registration order.
 *
 * Each timer is one malloc() (header + key bytes), referenced from a
 * binary min-heap ordered by (time, seq) and from a chained hash table on
 * (time, key) for the duplicate check and cancel(). A timer knows its heap
 * slot, so cancel() removes it in O(log n) instead of leaving a tombstone
 * that would hold memory until its time.
 *
 * Snapshots hold (time, key) in firing order; reloading re-numbers seq in
 * that order, which keeps ties in their order.
 */
#include "timers.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a over the time and the key bytes. */
static uint64_t timer_hash(int64_t time, const void *key, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    unsigned char t[8];
    memcpy(t, &time, 8);
    for (int i = 0; i < 8; i++)
        h = (h ^ t[i]) * 1099511628211ull;
    const unsigned char *p = key;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static bool earlier(const slua_timer *a, const slua_timer *b)
{
    return a->time < b->time || (a->time == b->time && a->seq < b->seq);
}

/* ---- Heap ----------------------------------------------------------------- */

static void heap_place(slua_timers *t, size_t i, slua_timer *x)
{
    t->heap[i] = x;
    x->heap_index = i;
}

static void sift_up(slua_timers *t, size_t i)
{
    slua_timer *x = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(x, t->heap[parent]))
            break;
        heap_place(t, i, t->heap[parent]);
        i = parent;
    }
    heap_place(t, i, x);
}

static void sift_down(slua_timers *t, size_t i)
{
    slua_timer *x = t->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= t->n)
            break;
        if (child + 1 < t->n && earlier(t->heap[child + 1], t->heap[child]))
            child++;
        if (!earlier(t->heap[child], x))
            break;
        heap_place(t, i, t->heap[child]);
        i = child;
    }
    heap_place(t, i, x);
}

static void heap_remove(slua_timers *t, size_t i)
{
    slua_timer *last = t->heap[--t->n];
    if (i == t->n)
        return;
    heap_place(t, i, last);
    if (i > 0 && earlier(last, t->heap[(i - 1) / 2]))
        sift_up(t, i);
    else
        sift_down(t, i);
}

/* ---- Hash table ---------------------------------------------------------------- */

static slua_timer **bucket_of(slua_timers *t, uint64_t hash)
{
    return &t->buckets[hash & (t->nbuckets - 1)];
}

static bool table_grow(slua_timers *t)
{
    size_t n = t->nbuckets ? t->nbuckets * 2 : 64;
    slua_timer **b = calloc(n, sizeof *b);
    if (!b)
        return false;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (slua_timer *x = t->buckets[i], *next; x; x = next) {
            next = x->next;
            slua_timer **head = &b[x->hash & (n - 1)];
            x->next = *head;
            *head = x;
        }
    t->bytes += (n - t->nbuckets) * sizeof *b;
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return true;
}

static slua_timer **table_find(slua_timers *t, uint64_t hash, int64_t time, const void *key,
                               size_t len)
{
    if (!t->nbuckets)
        return NULL;
    for (slua_timer **at = bucket_of(t, hash); *at; at = &(*at)->next) {
        slua_timer *x = *at;
        if (x->hash == hash && x->time == time && x->keylen == len &&
            memcmp(x->key, key, len) == 0)
            return at;
    }
    return NULL;
}

static size_t timer_bytes(const slua_timer *x)
{
    return sizeof *x + x->keylen + sizeof(slua_timer *);
}

/* ---- API -------------------------------------------------------------------------- */

int slua_timers_add(slua_timers *t, int64_t time, const void *key, size_t keylen)
{
    uint64_t hash = timer_hash(time, key, keylen);
    if (table_find(t, hash, time, key, keylen))
        return 0;
    if (keylen > UINT32_MAX)
        return -1;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        slua_timer **h = realloc(t->heap, cap * sizeof *h);
        if (!h)
            return -1;
        t->bytes += (cap - t->cap) * sizeof *h;
        t->heap = h;
        t->cap = cap;
    }
    if (t->n >= t->nbuckets && !table_grow(t))
        return -1;
    slua_timer *x = malloc(sizeof *x + keylen);
    if (!x)
        return -1;
    x->time = time;
    x->seq = t->seq++;
    x->hash = hash;
    x->keylen = (uint32_t)keylen;
    if (keylen)
        memcpy(x->key, key, keylen);
    slua_timer **head = bucket_of(t, hash);
    x->next = *head;
    *head = x;
    t->heap[t->n++] = x;
    sift_up(t, t->n - 1);
    t->bytes += timer_bytes(x);
    return 1;
}

bool slua_timers_cancel(slua_timers *t, int64_t time, const void *key, size_t keylen)
{
    slua_timer **at = table_find(t, timer_hash(time, key, keylen), time, key, keylen);
    if (!at)
        return false;
    slua_timer *x = *at;
    *at = x->next;
    heap_remove(t, x->heap_index);
    t->bytes -= timer_bytes(x);
    free(x);
    return true;
}

const slua_timer *slua_timers_peek(const slua_timers *t)
{
    return t->n ? t->heap[0] : NULL;
}

slua_timer *slua_timers_pop(slua_timers *t)
{
    if (!t->n)
        return NULL;
    slua_timer *x = t->heap[0];
    slua_timer **at = bucket_of(t, x->hash);
    while (*at != x)
        at = &(*at)->next;
    *at = x->next;
    heap_remove(t, 0);
    t->bytes -= timer_bytes(x);
    return x;
}

void slua_timers_clear(slua_timers *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->heap[i]);
    free(t->heap);
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

/* ---- Snapshots --------------------------------------------------------------------- */

static int compare_firing(const void *a, const void *b)
{
    const slua_timer *x = *(slua_timer *const *)a, *y = *(slua_timer *const *)b;
    return earlier(x, y) ? -1 : earlier(y, x) ? 1 : 0;
}

bool slua_timers_save(const slua_timers *t, sl_bytes *out)
{
    slua_timer **order = malloc((t->n ? t->n : 1) * sizeof *order);
    if (!order)
        return false;
    if (t->n)
        memcpy(order, t->heap, t->n * sizeof *order);
    qsort(order, t->n, sizeof *order, compare_firing);
    bool ok = slua_buf_varint(out, t->n);
    for (size_t i = 0; ok && i < t->n; i++)
        ok = slua_buf_u64(out, (uint64_t)order[i]->time) &&
             slua_buf_varint(out, order[i]->keylen) &&
             sl_bytes_put(out, order[i]->key, order[i]->keylen);
    free(order);
    return ok;
}

bool slua_timers_load(slua_timers *t, sl_reader *r)
{
    slua_timers_clear(t);
    uint64_t n = slua_read_varint(r);
    if (r->bad || n > (uint64_t)(r->end - r->p))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        int64_t time = (int64_t)slua_read_u64(r);
        uint64_t len = slua_read_varint(r);
        const unsigned char *key = sl_reader_take(r, (size_t)len);
        if (!key || slua_timers_add(t, time, key, (size_t)len) < 0)
            return false;
    }
    return !r->bad;
}
