/*
 * sketch.c — DDSketch with 1% relative error (see sketch.h for the bound
 * and its proof in one line). Dense stores: a contiguous count array that
 * grows at either end, which is smaller and faster than a map for the
 * few hundred buckets real data touches.
 */
#include "sketch.h"

#include <float.h>
#include <math.h>

static double gamma_value(void)
{
    return (1.0 + SKETCH_ALPHA) / (1.0 - SKETCH_ALPHA);
}

static double log_gamma(void)
{
    return log1p(2.0 * SKETCH_ALPHA / (1.0 - SKETCH_ALPHA)); /* log(gamma) */
}

/* Bucket i holds (gamma^(i-1), gamma^i]. */
static int32_t bucket_of(double x)
{
    return (int32_t)ceil(log(x) / log_gamma());
}

static double bucket_value(int32_t i)
{
    return 2.0 * pow(gamma_value(), i) / (gamma_value() + 1.0);
}

/* Make room for bucket i (and fold the lowest buckets past the cap). */
static bool store_add(sketch_store *st, int32_t i, uint64_t n)
{
    if (st->n == 0) {
        st->counts = calloc(16, sizeof *st->counts);
        if (!st->counts)
            return false;
        st->offset = i - 8;
        st->n = 16;
    }
    if (i < st->offset && (int64_t)st->offset + st->n - i > SKETCH_MAX_BUCKETS) {
        /* Below a full range: counts as the lowest bucket kept. */
        i = st->offset;
    }
    if (i < st->offset || i >= st->offset + (int64_t)st->n) {
        int64_t lo = i < st->offset ? i : st->offset;
        int64_t hi = i >= st->offset + (int64_t)st->n ? i + 1 : st->offset + (int64_t)st->n;
        int64_t want = hi - lo;
        int64_t grow = want + want / 2;
        if (grow > SKETCH_MAX_BUCKETS)
            grow = want > SKETCH_MAX_BUCKETS ? want : SKETCH_MAX_BUCKETS;
        /* Spare room on the side that grew. */
        int64_t new_lo = i < st->offset ? hi - grow : lo;
        uint64_t *c = calloc((size_t)grow, sizeof *c);
        if (!c)
            return false;
        memcpy(c + (st->offset - new_lo), st->counts, st->n * sizeof *c);
        free(st->counts);
        st->counts = c;
        st->offset = (int32_t)new_lo;
        st->n = (uint32_t)grow;
        if ((int64_t)st->n > SKETCH_MAX_BUCKETS) {
            /* Fold everything below the top SKETCH_MAX_BUCKETS into the lowest kept. */
            uint32_t drop = st->n - SKETCH_MAX_BUCKETS;
            uint64_t folded = 0;
            for (uint32_t k = 0; k < drop; k++)
                folded += st->counts[k];
            memmove(st->counts, st->counts + drop, SKETCH_MAX_BUCKETS * sizeof *c);
            st->counts[0] += folded;
            st->offset += (int32_t)drop;
            st->n = SKETCH_MAX_BUCKETS;
            if (i < st->offset)
                i = st->offset;
        }
    }
    st->counts[i - st->offset] += n;
    return true;
}

bool sketch_add(sketch *s, double v)
{
    if (!isfinite(v))
        return true;
    bool ok = true;
    if (v > DBL_MIN)
        ok = store_add(&s->pos, bucket_of(v), 1);
    else if (v < -DBL_MIN)
        ok = store_add(&s->neg, bucket_of(-v), 1);
    else
        s->zero++;
    if (ok)
        s->count++;
    return ok;
}

static bool store_merge(sketch_store *dst, const sketch_store *src)
{
    for (uint32_t k = 0; k < src->n; k++)
        if (src->counts[k] && !store_add(dst, src->offset + (int32_t)k, src->counts[k]))
            return false;
    return true;
}

bool sketch_merge(sketch *dst, const sketch *src)
{
    if (!store_merge(&dst->pos, &src->pos) || !store_merge(&dst->neg, &src->neg))
        return false;
    dst->zero += src->zero;
    dst->count += src->count;
    return true;
}

bool sketch_quantile(const sketch *s, double q, double *out)
{
    if (s->count == 0)
        return false;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double rank = q * (double)(s->count - 1);
    double seen = 0;
    /* Ascending values: negatives from the largest magnitude down. */
    for (uint32_t k = s->neg.n; k-- > 0;) {
        seen += (double)s->neg.counts[k];
        if (seen > rank) {
            *out = -bucket_value(s->neg.offset + (int32_t)k);
            return true;
        }
    }
    seen += (double)s->zero;
    if (seen > rank) {
        *out = 0;
        return true;
    }
    int32_t last = 0;
    bool any = false;
    for (uint32_t k = 0; k < s->pos.n; k++) {
        if (!s->pos.counts[k])
            continue;
        any = true;
        last = s->pos.offset + (int32_t)k;
        seen += (double)s->pos.counts[k];
        if (seen > rank) {
            *out = bucket_value(last);
            return true;
        }
    }
    /* Rounding at q = 1: the largest value. */
    *out = any ? bucket_value(last) : 0;
    return true;
}

void sketch_free(sketch *s)
{
    free(s->pos.counts);
    free(s->neg.counts);
    memset(s, 0, sizeof *s);
}

size_t sketch_bytes(const sketch *s)
{
    return ((size_t)s->pos.n + s->neg.n) * sizeof(uint64_t);
}

/* Only the non-empty range of a store is written. */
static bool store_save(const sketch_store *st, sl_bytes *b)
{
    uint32_t lo = 0, hi = st->n;
    while (lo < hi && !st->counts[lo])
        lo++;
    while (hi > lo && !st->counts[hi - 1])
        hi--;
    if (!wbuf_u32(b, hi - lo) || !wbuf_i64(b, (int64_t)st->offset + lo))
        return false;
    for (uint32_t k = lo; k < hi; k++)
        if (!wbuf_u64(b, st->counts[k]))
            return false;
    return true;
}

static bool store_load(sketch_store *st, sl_reader *r)
{
    uint32_t n = rbuf_u32(r);
    int64_t offset = rbuf_i64(r);
    if (r->bad || n > SKETCH_MAX_BUCKETS || offset < INT32_MIN || offset > INT32_MAX - (int64_t)n)
        return r->bad = true, false;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t c = rbuf_u64(r);
        if (r->bad)
            return false;
        if (c && !store_add(st, (int32_t)(offset + k), c))
            return false;
    }
    return true;
}

bool sketch_save(const sketch *s, sl_bytes *b)
{
    return wbuf_u64(b, s->zero) && wbuf_u64(b, s->count) && store_save(&s->pos, b) &&
           store_save(&s->neg, b);
}

bool sketch_load(sketch *s, sl_reader *r)
{
    memset(s, 0, sizeof *s);
    s->zero = rbuf_u64(r);
    s->count = rbuf_u64(r);
    return store_load(&s->pos, r) && store_load(&s->neg, r) && !r->bad;
}
