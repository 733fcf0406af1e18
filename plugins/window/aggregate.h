/*
 * aggregate.h — the window operator's aggregate functions.
 *
 * An aggregate is parsed once from its spec text ("avg(response_time)") into
 * an agg_spec. Every (window, key) group holds one fixed-size state block
 * per aggregate, laid out by the operator at spec->offset inside the
 * group's allocation, so the per-record path is a switch and a few adds —
 * no allocation for count/sum/avg/min/max/stddev/count_if/sum_if. The
 * aggregates that keep values (count_distinct, collect_*, first, last,
 * percentile) own heap memory, copied from the record: a record's strings
 * are gone once process() returns. A zeroed block is an empty state.
 *
 *   count()            records in the group (int)
 *   sum(f)             int while every value is an int and no overflow, else double
 *   avg(f)             double
 *   min(f), max(f)     numeric; int or double as the extreme value was
 *   stddev(f)          sample standard deviation (n - 1), Welford; null for n < 2
 *   count_distinct(f)  exact (every distinct value is kept), int
 *   collect_list(f)    JSON array in arrival order
 *   collect_set(f)     JSON array of distinct values, first-seen order
 *   first(f), last(f)  by event time, ties broken by arrival order
 *   percentile(f, q)   DDSketch, within 1% relative error (sketch.h)
 *   count_if(expr)     records for which the Lua expression is truthy (int)
 *   sum_if(f, expr)    sum(f) over those records
 *
 * Nulls and absent fields are skipped by every aggregate of a field;
 * numeric ones also skip non-numeric values (a string "12" is not 12).
 * An aggregate over no values is null (count*, count_distinct: 0;
 * collect_*: []). Sessions merge states (agg_merge), so every state is
 * mergeable; min/max/first/last/percentile merge exactly as if the two
 * groups' records had been seen by one.
 */
#ifndef SLUICE_WINDOW_AGGREGATE_H
#define SLUICE_WINDOW_AGGREGATE_H

#include "buf.h"

typedef enum agg_func {
    AGG_COUNT,
    AGG_SUM,
    AGG_AVG,
    AGG_MIN,
    AGG_MAX,
    AGG_STDDEV,
    AGG_COUNT_DISTINCT,
    AGG_COLLECT_LIST,
    AGG_COLLECT_SET,
    AGG_FIRST,
    AGG_LAST,
    AGG_PERCENTILE,
    AGG_COUNT_IF,
    AGG_SUM_IF,
} agg_func;

typedef struct agg_spec {
    agg_func func;
    char *field;   /* input field name (malloc()ed), NULL for count()/count_if() */
    char *expr;    /* condition source (malloc()ed) for count_if/sum_if */
    double q;      /* percentile */
    size_t offset; /* of its state inside a group's block; set by the operator */
    int input;     /* operator's index of the input field, -1 none */
    int cond;      /* operator's index of the condition, -1 none */
} agg_spec;

/* Parse "func(args)". false with a message in why. */
bool agg_parse(const char *text, agg_spec *out, char *why, size_t whylen);
void agg_spec_free(agg_spec *spec);
const char *agg_func_name(agg_func f);

/* Bytes of a state block (a multiple of 8). */
size_t agg_state_size(agg_func f);

/* Fold one record in: v is the input field's value (NULL when absent), cond
 * the condition's truth (true for aggregates without one), t the event
 * time, arrival a counter increasing with every record. false: out of
 * memory. */
bool agg_update(const agg_spec *spec, void *state, const sluice_value *v, bool cond,
                int64_t t, uint64_t arrival);

/* dst becomes the state of both groups' records; src is freed. */
bool agg_merge(const agg_spec *spec, void *dst, void *src);

/* Free what the state owns (the block itself is the caller's). */
void agg_free(const agg_spec *spec, void *state);

/* Heap bytes the state owns beyond its block. */
size_t agg_heap_bytes(const agg_spec *spec, const void *state);

/* The result. Strings point into the state or into scratch (reset by this
 * call): copy them before the next call. false: out of memory. */
bool agg_result(const agg_spec *spec, const void *state, sluice_value *out, sl_bytes *scratch);

/* Snapshot form of a state, and back (into a zeroed block). */
bool agg_save(const agg_spec *spec, const void *state, sl_bytes *b);
bool agg_load(const agg_spec *spec, void *state, sl_reader *r);

/* Append v as JSON text (strings escaped; non-finite doubles as null). */
bool agg_json_value(sl_bytes *b, const sluice_value *v);

#endif
