/*
 * sketch.h — a mergeable percentile sketch (DDSketch, Masson et al. 2019).
 *
 * Error bound: for any q, the value returned is within 1% RELATIVE error of
 * the exact lower q-quantile x[floor(q * (n - 1))] of the values added
 * (|estimate - exact| <= 0.01 * |exact|), whatever the distribution, and
 * merging two sketches gives the sketch of the union with the same bound.
 * Values are bucketed by the logarithm base gamma = 1.01/0.99: bucket i
 * holds (gamma^(i-1), gamma^i] and reports 2*gamma^i/(gamma+1), at most
 * alpha = (gamma-1)/(gamma+1) = 0.01 away from anything in it. Negative
 * values use a mirrored store; 0 (and subnormals) a zero count; NaN and
 * infinities are skipped.
 *
 * Size: one count per bucket between the smallest and largest magnitude
 * seen, about 115 buckets per decade of range (8 bytes each). Each store
 * is capped at SKETCH_MAX_BUCKETS; past that (a range of over 10^35) the
 * lowest buckets are folded together, which only loosens the bound for
 * the smallest magnitudes.
 */
#ifndef SLUICE_WINDOW_SKETCH_H
#define SLUICE_WINDOW_SKETCH_H

#include "buf.h"

#define SKETCH_ALPHA 0.01
#define SKETCH_MAX_BUCKETS 4096

/* Counts for buckets [offset, offset + n). */
typedef struct sketch_store {
    int32_t offset;
    uint32_t n;
    uint64_t *counts;
} sketch_store;

typedef struct sketch {
    sketch_store pos, neg;
    uint64_t zero;
    uint64_t count;
} sketch;

/* A zeroed sketch is empty and valid. */
bool sketch_add(sketch *s, double v);                 /* false: out of memory */
bool sketch_merge(sketch *dst, const sketch *src);    /* false: out of memory */
bool sketch_quantile(const sketch *s, double q, double *out); /* false: empty */
void sketch_free(sketch *s);
size_t sketch_bytes(const sketch *s);
bool sketch_save(const sketch *s, sl_bytes *b);
bool sketch_load(sketch *s, sl_reader *r);

#endif
