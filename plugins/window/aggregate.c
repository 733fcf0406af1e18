/*
 * aggregate.c — parsing, per-group states and results of the window
 * operator's aggregates (the list and the rules are in aggregate.h).
 *
 * States are plain structs in the group's block. The ones that keep values
 * hold a pointer to a heap object made on first use, so a group whose
 * field is always null costs nothing more. Values are kept in the
 * canonical encoding of buf.h: a distinct-set is a hash set over those
 * bytes, a list is those bytes back to back, first/last keep one.
 */
#include "aggregate.h"
#include "sketch.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>

/* ---- Parsing ---------------------------------------------------------- */

typedef enum arg_shape { ARGS_NONE, ARGS_FIELD, ARGS_FIELD_Q, ARGS_EXPR, ARGS_FIELD_EXPR } arg_shape;

static const struct {
    const char *name;
    agg_func func;
    arg_shape shape;
} funcs[] = {
    {"count", AGG_COUNT, ARGS_NONE},
    {"sum", AGG_SUM, ARGS_FIELD},
    {"avg", AGG_AVG, ARGS_FIELD},
    {"min", AGG_MIN, ARGS_FIELD},
    {"max", AGG_MAX, ARGS_FIELD},
    {"stddev", AGG_STDDEV, ARGS_FIELD},
    {"count_distinct", AGG_COUNT_DISTINCT, ARGS_FIELD},
    {"collect_list", AGG_COLLECT_LIST, ARGS_FIELD},
    {"collect_set", AGG_COLLECT_SET, ARGS_FIELD},
    {"first", AGG_FIRST, ARGS_FIELD},
    {"last", AGG_LAST, ARGS_FIELD},
    {"percentile", AGG_PERCENTILE, ARGS_FIELD_Q},
    {"count_if", AGG_COUNT_IF, ARGS_EXPR},
    {"sum_if", AGG_SUM_IF, ARGS_FIELD_EXPR},
};
#define NFUNCS (sizeof funcs / sizeof funcs[0])

const char *agg_func_name(agg_func f)
{
    for (size_t i = 0; i < NFUNCS; i++)
        if (funcs[i].func == f)
            return funcs[i].name;
    return "?";
}

static char *dup_trimmed(const char *p, size_t n)
{
    while (n && isspace((unsigned char)*p))
        p++, n--;
    while (n && isspace((unsigned char)p[n - 1]))
        n--;
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* A field argument: trimmed, optionally quoted ("a b", 'x', `y`). */
static char *field_arg(const char *p, size_t n)
{
    char *s = dup_trimmed(p, n);
    size_t len = s ? strlen(s) : 0;
    if (len >= 2 && (s[0] == '"' || s[0] == '\'' || s[0] == '`') && s[len - 1] == s[0]) {
        memmove(s, s + 1, len - 2);
        s[len - 2] = 0;
    }
    return s;
}

/* The first comma outside brackets and quotes, or NULL. */
static const char *top_comma(const char *p, const char *end)
{
    int depth = 0;
    char quote = 0;
    for (; p < end; p++) {
        if (quote) {
            if (*p == '\\' && p + 1 < end)
                p++;
            else if (*p == quote)
                quote = 0;
        } else if (*p == '"' || *p == '\'') {
            quote = *p;
        } else if (*p == '(' || *p == '[' || *p == '{') {
            depth++;
        } else if (*p == ')' || *p == ']' || *p == '}') {
            depth--;
        } else if (*p == ',' && depth == 0) {
            return p;
        }
    }
    return NULL;
}

static bool blank(const char *p, const char *end)
{
    for (; p < end; p++)
        if (!isspace((unsigned char)*p))
            return false;
    return true;
}

static bool parse_args(agg_spec *out, arg_shape shape, const char *name, const char *a,
                       const char *end, char *why, size_t whylen)
{
    const char *comma = top_comma(a, end);
    switch (shape) {
    case ARGS_NONE:
        if (!blank(a, end)) {
            snprintf(why, whylen, "%s() takes no argument", name);
            return false;
        }
        return true;
    case ARGS_FIELD:
        if (comma || blank(a, end)) {
            snprintf(why, whylen, "%s() takes one field name, e.g. %s(bytes)", name, name);
            return false;
        }
        out->field = field_arg(a, (size_t)(end - a));
        break;
    case ARGS_FIELD_Q: {
        if (!comma || blank(a, comma)) {
            snprintf(why, whylen, "percentile() takes a field and a quantile, e.g. "
                                  "percentile(response_time, 0.99)");
            return false;
        }
        char *q = dup_trimmed(comma + 1, (size_t)(end - comma - 1));
        char *qend = NULL;
        out->q = q ? strtod(q, &qend) : NAN;
        bool good = q && *q && qend && *qend == 0 && out->q >= 0 && out->q <= 1;
        free(q);
        if (!good) {
            snprintf(why, whylen, "percentile(): the quantile must be a number from 0 to 1");
            return false;
        }
        out->field = field_arg(a, (size_t)(comma - a));
        break;
    }
    case ARGS_EXPR:
        if (blank(a, end)) {
            snprintf(why, whylen, "count_if() takes a Lua expression, e.g. "
                                  "count_if(status >= 500)");
            return false;
        }
        out->expr = dup_trimmed(a, (size_t)(end - a));
        return out->expr != NULL || (snprintf(why, whylen, "out of memory"), false);
    case ARGS_FIELD_EXPR:
        if (!comma || blank(a, comma) || blank(comma + 1, end)) {
            snprintf(why, whylen, "sum_if() takes a field and a Lua expression, e.g. "
                                  "sum_if(bytes, status >= 500)");
            return false;
        }
        out->field = field_arg(a, (size_t)(comma - a));
        out->expr = dup_trimmed(comma + 1, (size_t)(end - comma - 1));
        if (!out->expr) {
            snprintf(why, whylen, "out of memory");
            return false;
        }
        break;
    }
    if (!out->field) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    if (!*out->field) {
        snprintf(why, whylen, "%s(): the field name is empty", name);
        return false;
    }
    return true;
}

bool agg_parse(const char *text, agg_spec *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    out->input = out->cond = -1;
    const char *p = text ? text : "";
    while (isspace((unsigned char)*p))
        p++;
    const char *name = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t namelen = (size_t)(p - name);
    while (isspace((unsigned char)*p))
        p++;
    const char *end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (!namelen || *p != '(' || end <= p || end[-1] != ')') {
        snprintf(why, whylen, "`%s` is not an aggregate call like count() or avg(field)",
                 text ? text : "");
        return false;
    }
    for (size_t i = 0; i < NFUNCS; i++) {
        if (strlen(funcs[i].name) != namelen || memcmp(funcs[i].name, name, namelen) != 0)
            continue;
        out->func = funcs[i].func;
        if (!parse_args(out, funcs[i].shape, funcs[i].name, p + 1, end - 1, why, whylen)) {
            agg_spec_free(out);
            return false;
        }
        return true;
    }
    snprintf(why, whylen,
             "unknown aggregate `%.*s` (count, sum, avg, min, max, stddev, count_distinct, "
             "collect_list, collect_set, first, last, percentile, count_if, sum_if)",
             (int)namelen, name);
    return false;
}

void agg_spec_free(agg_spec *spec)
{
    free(spec->field);
    free(spec->expr);
    spec->field = spec->expr = NULL;
}

/* ---- States ------------------------------------------------------------ */

typedef struct sum_state {
    int64_t i;
    double d;
    uint8_t any, is_double;
} sum_state;

typedef struct avg_state {
    double sum;
    uint64_t n;
} avg_state;

typedef struct extreme_state {
    int64_t i;
    double d;
    uint8_t has, is_double;
} extreme_state;

typedef struct stddev_state {
    uint64_t n;
    double mean, m2;
} stddev_state;

/* Distinct values: a set of canonical encodings. data holds them back to
 * back in first-seen order; slots index them (len 0 = empty slot). */
typedef struct byteset_slot {
    uint64_t hash;
    uint32_t off, len;
} byteset_slot;

typedef struct byteset {
    uint64_t count;
    uint32_t mask; /* slots - 1 */
    byteset_slot *slots;
    sl_bytes data;
} byteset;

typedef struct list_state {
    uint64_t n;
    sl_bytes data; /* encodings back to back, arrival order */
} list_state;

typedef struct pick_state { /* first / last */
    int64_t t;
    uint64_t arrival;
    unsigned char *bytes; /* the value's encoding */
    uint32_t len;
    uint8_t has;
} pick_state;

#define ROUND8(n) (((n) + 7) & ~(size_t)7)

size_t agg_state_size(agg_func f)
{
    switch (f) {
    case AGG_COUNT:
    case AGG_COUNT_IF:
        return 8;
    case AGG_SUM:
    case AGG_SUM_IF:
        return ROUND8(sizeof(sum_state));
    case AGG_AVG:
        return ROUND8(sizeof(avg_state));
    case AGG_MIN:
    case AGG_MAX:
        return ROUND8(sizeof(extreme_state));
    case AGG_STDDEV:
        return ROUND8(sizeof(stddev_state));
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET:
    case AGG_COLLECT_LIST:
    case AGG_PERCENTILE:
        return sizeof(void *);
    case AGG_FIRST:
    case AGG_LAST:
        return ROUND8(sizeof(pick_state));
    }
    return 8;
}

static bool numeric(const sluice_value *v, double *d)
{
    if (!v)
        return false;
    if (v->type == SLUICE_INT) {
        *d = (double)v->u.i;
        return true;
    }
    if (v->type == SLUICE_DOUBLE && !isnan(v->u.d)) {
        *d = v->u.d;
        return true;
    }
    return false;
}

static bool present(const sluice_value *v)
{
    return v && v->type != SLUICE_NULL;
}

static void sum_add_int(sum_state *s, int64_t i)
{
    if (!s->is_double && !__builtin_add_overflow(s->i, i, &s->i))
        return;
    if (!s->is_double) {
        s->d = (double)s->i;
        s->is_double = 1;
    }
    s->d += (double)i;
}

static void sum_add(sum_state *s, const sluice_value *v)
{
    if (!v)
        return;
    if (v->type == SLUICE_INT) {
        sum_add_int(s, v->u.i);
    } else if (v->type == SLUICE_DOUBLE && !isnan(v->u.d)) {
        if (!s->is_double) {
            s->d = (double)s->i;
            s->is_double = 1;
        }
        s->d += v->u.d;
    } else {
        return;
    }
    s->any = 1;
}

static void sum_merge(sum_state *d, const sum_state *s)
{
    if (!s->any)
        return;
    if (s->is_double) {
        if (!d->is_double) {
            d->d = (double)d->i;
            d->is_double = 1;
        }
        d->d += s->d;
    } else {
        sum_add_int(d, s->i);
    }
    d->any = 1;
}

/* Whether candidate (ci, cd, c_is_double) beats the held extreme. */
static bool extreme_beats(const extreme_state *e, int64_t ci, double cd, bool c_double, bool max)
{
    if (!e->has)
        return true;
    if (!c_double && !e->is_double)
        return max ? ci > e->i : ci < e->i;
    double held = e->is_double ? e->d : (double)e->i;
    return max ? cd > held : cd < held;
}

static void extreme_take(extreme_state *e, int64_t ci, double cd, bool c_double, bool max)
{
    if (!extreme_beats(e, ci, cd, c_double, max))
        return;
    e->has = 1;
    e->is_double = c_double;
    e->i = ci;
    e->d = cd;
}

static void extreme_add(extreme_state *e, const sluice_value *v, bool max)
{
    if (!v)
        return;
    if (v->type == SLUICE_INT)
        extreme_take(e, v->u.i, (double)v->u.i, false, max);
    else if (v->type == SLUICE_DOUBLE && !isnan(v->u.d))
        extreme_take(e, 0, v->u.d, true, max);
}

static void stddev_add(stddev_state *s, double x)
{
    s->n++;
    double delta = x - s->mean;
    s->mean += delta / (double)s->n;
    s->m2 += delta * (x - s->mean);
}

/* Chan et al.'s parallel combination of two (n, mean, M2). */
static void stddev_merge(stddev_state *a, const stddev_state *b)
{
    if (!b->n)
        return;
    if (!a->n) {
        *a = *b;
        return;
    }
    double n = (double)(a->n + b->n);
    double delta = b->mean - a->mean;
    a->m2 += b->m2 + delta * delta * (double)a->n * (double)b->n / n;
    a->mean += delta * (double)b->n / n;
    a->n += b->n;
}

/* ---- The distinct set ---------------------------------------------------- */

static bool byteset_grow(byteset *s)
{
    uint32_t cap = s->slots ? (s->mask + 1) * 2 : 8;
    byteset_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (uint32_t i = 0; s->slots && i <= s->mask; i++) {
        if (!s->slots[i].len)
            continue;
        uint32_t j = (uint32_t)s->slots[i].hash & (cap - 1);
        while (slots[j].len)
            j = (j + 1) & (cap - 1);
        slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->mask = cap - 1;
    return true;
}

/* Add an encoding; *added says whether it was new. */
static bool byteset_add(byteset *s, const unsigned char *p, size_t len, bool *added)
{
    *added = false;
    if (s->data.len + len > UINT32_MAX)
        return false;
    if ((!s->slots || (s->count + 1) * 4 > (uint64_t)(s->mask + 1) * 3) && !byteset_grow(s))
        return false;
    uint64_t h = whash(p, len);
    uint32_t j = (uint32_t)h & s->mask;
    for (; s->slots[j].len; j = (j + 1) & s->mask)
        if (s->slots[j].hash == h && s->slots[j].len == len &&
            memcmp(s->data.data + s->slots[j].off, p, len) == 0)
            return true;
    uint32_t off = (uint32_t)s->data.len;
    if (!sl_bytes_put(&s->data, p, len))
        return false;
    s->slots[j] = (byteset_slot){h, off, (uint32_t)len};
    s->count++;
    *added = true;
    return true;
}

static void byteset_free(byteset *s)
{
    if (!s)
        return;
    free(s->slots);
    sl_bytes_free(&s->data);
    free(s);
}

/* Every encoding of a back-to-back sequence, through fn. */
static bool each_value(const sl_bytes *data, bool (*fn)(void *, const unsigned char *, size_t),
                       void *arg)
{
    sl_reader r = {data->data, data->data + data->len, false};
    while (r.p < r.end) {
        const unsigned char *at = r.p;
        sluice_value v;
        if (!wval_decode(&r, &v))
            return false;
        if (!fn(arg, at, (size_t)(r.p - at)))
            return false;
    }
    return true;
}

static bool byteset_add_one(void *set, const unsigned char *p, size_t len)
{
    bool added;
    return byteset_add(set, p, len, &added);
}

/* The encoding of v in a small stack buffer when it fits, else in tmp. */
static bool encode_tmp(const sluice_value *v, sl_bytes *tmp)
{
    tmp->len = 0;
    return wval_encode(tmp, v);
}

/* ---- JSON for collect_* ------------------------------------------------- */

static bool json_string(sl_bytes *b, const char *p, size_t n)
{
    if (!wbuf_u8(b, '"'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[8];
        const char *e = NULL;
        size_t elen = 2;
        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                e = esc;
                elen = 6;
            }
        }
        if (e ? !sl_bytes_put(b, e, elen) : !wbuf_u8(b, c))
            return false;
    }
    return wbuf_u8(b, '"');
}

bool agg_json_value(sl_bytes *b, const sluice_value *v)
{
    char num[40];
    int n;
    switch (v ? v->type : SLUICE_NULL) {
    case SLUICE_BOOL:
        return v->u.b ? sl_bytes_put(b, "true", 4) : sl_bytes_put(b, "false", 5);
    case SLUICE_INT:
        n = snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        return sl_bytes_put(b, num, (size_t)n);
    case SLUICE_DOUBLE:
        if (!isfinite(v->u.d))
            return sl_bytes_put(b, "null", 4);
        /* The shortest of %.15g/%.17g that reads back exactly. */
        n = snprintf(num, sizeof num, "%.15g", v->u.d);
        if (strtod(num, NULL) != v->u.d)
            n = snprintf(num, sizeof num, "%.17g", v->u.d);
        return sl_bytes_put(b, num, (size_t)n);
    case SLUICE_STRING:
        return json_string(b, v->u.s.ptr, v->u.s.len);
    case SLUICE_JSON:
        return sl_bytes_put(b, v->u.s.ptr, v->u.s.len);
    default:
        return sl_bytes_put(b, "null", 4);
    }
}

typedef struct json_array {
    sl_bytes *out;
    bool first;
} json_array;

static bool json_array_item(void *arg, const unsigned char *p, size_t len)
{
    json_array *a = arg;
    sl_reader r = {p, p + len, false};
    sluice_value v;
    if (!wval_decode(&r, &v))
        return false;
    if (!a->first && !wbuf_u8(a->out, ','))
        return false;
    a->first = false;
    return agg_json_value(a->out, &v);
}

static bool json_array_of(const sl_bytes *data, sl_bytes *out)
{
    json_array a = {out, true};
    static const sl_bytes empty;
    return wbuf_u8(out, '[') && each_value(data ? data : &empty, json_array_item, &a) &&
           wbuf_u8(out, ']');
}

/* ---- Update / merge / free ------------------------------------------- */

static bool pick_better(const pick_state *p, int64_t t, uint64_t arrival, bool last)
{
    if (!p->has)
        return true;
    if (last)
        return t > p->t || (t == p->t && arrival > p->arrival);
    return t < p->t || (t == p->t && arrival < p->arrival);
}

static bool pick_set(pick_state *p, const unsigned char *bytes, size_t len, int64_t t,
                     uint64_t arrival)
{
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return false;
    memcpy(copy, bytes, len);
    free(p->bytes);
    p->bytes = copy;
    p->len = (uint32_t)len;
    p->t = t;
    p->arrival = arrival;
    p->has = 1;
    return true;
}

static bool list_add(void **slot, const sluice_value *v)
{
    list_state *l = *slot;
    if (!l && !(l = *slot = calloc(1, sizeof *l)))
        return false;
    if (!wval_encode(&l->data, v))
        return false;
    l->n++;
    return true;
}

static bool set_add(void **slot, const sluice_value *v)
{
    byteset *s = *slot;
    if (!s && !(s = *slot = calloc(1, sizeof *s)))
        return false;
    unsigned char small[64];
    sl_bytes tmp = {small, 0, sizeof small};
    size_t need = v->type == SLUICE_STRING || v->type == SLUICE_JSON ? 5 + v->u.s.len : 9;
    if (need > sizeof small)
        tmp = (sl_bytes){0};
    bool added, ok = encode_tmp(v, &tmp) && byteset_add(s, tmp.data, tmp.len, &added);
    if (tmp.data != small)
        sl_bytes_free(&tmp);
    return ok;
}

bool agg_update(const agg_spec *spec, void *state, const sluice_value *v, bool cond,
                int64_t t, uint64_t arrival)
{
    double d;
    switch (spec->func) {
    case AGG_COUNT:
        ++*(uint64_t *)state;
        return true;
    case AGG_COUNT_IF:
        if (cond)
            ++*(uint64_t *)state;
        return true;
    case AGG_SUM_IF:
        if (cond)
            sum_add(state, v);
        return true;
    case AGG_SUM:
        sum_add(state, v);
        return true;
    case AGG_AVG:
        if (numeric(v, &d)) {
            avg_state *a = state;
            a->sum += d;
            a->n++;
        }
        return true;
    case AGG_MIN:
    case AGG_MAX:
        extreme_add(state, v, spec->func == AGG_MAX);
        return true;
    case AGG_STDDEV:
        if (numeric(v, &d))
            stddev_add(state, d);
        return true;
    case AGG_PERCENTILE: {
        if (!numeric(v, &d))
            return true;
        sketch **sk = state;
        if (!*sk && !(*sk = calloc(1, sizeof **sk)))
            return false;
        return sketch_add(*sk, d);
    }
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET:
        return !present(v) || set_add(state, v);
    case AGG_COLLECT_LIST:
        return !present(v) || list_add(state, v);
    case AGG_FIRST:
    case AGG_LAST: {
        pick_state *p = state;
        if (!present(v) || !pick_better(p, t, arrival, spec->func == AGG_LAST))
            return true;
        sl_bytes tmp = {0};
        bool ok = wval_encode(&tmp, v) && pick_set(p, tmp.data, tmp.len, t, arrival);
        sl_bytes_free(&tmp);
        return ok;
    }
    }
    return true;
}

bool agg_merge(const agg_spec *spec, void *dst, void *src)
{
    bool ok = true;
    switch (spec->func) {
    case AGG_COUNT:
    case AGG_COUNT_IF:
        *(uint64_t *)dst += *(uint64_t *)src;
        break;
    case AGG_SUM:
    case AGG_SUM_IF:
        sum_merge(dst, src);
        break;
    case AGG_AVG: {
        avg_state *a = dst, *b = src;
        a->sum += b->sum;
        a->n += b->n;
        break;
    }
    case AGG_MIN:
    case AGG_MAX: {
        extreme_state *b = src;
        if (b->has)
            extreme_take(dst, b->i, b->d, b->is_double, spec->func == AGG_MAX);
        break;
    }
    case AGG_STDDEV:
        stddev_merge(dst, src);
        break;
    case AGG_PERCENTILE: {
        sketch **a = dst, **b = src;
        if (!*b)
            break;
        if (!*a) {
            *a = *b;
            *b = NULL;
        } else {
            ok = sketch_merge(*a, *b);
        }
        break;
    }
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET: {
        byteset **a = dst, **b = src;
        if (!*b)
            break;
        if (!*a) {
            *a = *b;
            *b = NULL;
        } else {
            ok = each_value(&(*b)->data, byteset_add_one, *a);
        }
        break;
    }
    case AGG_COLLECT_LIST: {
        list_state **a = dst, **b = src;
        if (!*b)
            break;
        if (!*a) {
            *a = *b;
            *b = NULL;
        } else {
            ok = sl_bytes_put(&(*a)->data, (*b)->data.data, (*b)->data.len);
            (*a)->n += (*b)->n;
        }
        break;
    }
    case AGG_FIRST:
    case AGG_LAST: {
        pick_state *a = dst, *b = src;
        if (b->has && pick_better(a, b->t, b->arrival, spec->func == AGG_LAST)) {
            free(a->bytes);
            *a = *b;
            b->bytes = NULL;
        }
        break;
    }
    }
    agg_free(spec, src);
    return ok;
}

void agg_free(const agg_spec *spec, void *state)
{
    switch (spec->func) {
    case AGG_PERCENTILE: {
        sketch **sk = state;
        if (*sk) {
            sketch_free(*sk);
            free(*sk);
            *sk = NULL;
        }
        break;
    }
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET: {
        byteset **s = state;
        byteset_free(*s);
        *s = NULL;
        break;
    }
    case AGG_COLLECT_LIST: {
        list_state **l = state;
        if (*l) {
            sl_bytes_free(&(*l)->data);
            free(*l);
            *l = NULL;
        }
        break;
    }
    case AGG_FIRST:
    case AGG_LAST: {
        pick_state *p = state;
        free(p->bytes);
        p->bytes = NULL;
        p->has = 0;
        break;
    }
    default:
        break;
    }
}

size_t agg_heap_bytes(const agg_spec *spec, const void *state)
{
    switch (spec->func) {
    case AGG_PERCENTILE: {
        sketch *const *sk = state;
        return *sk ? sizeof **sk + sketch_bytes(*sk) : 0;
    }
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET: {
        byteset *const *s = state;
        return *s ? sizeof **s + ((*s)->slots ? ((size_t)(*s)->mask + 1) * sizeof(byteset_slot)
                                              : 0) + (*s)->data.cap
                  : 0;
    }
    case AGG_COLLECT_LIST: {
        list_state *const *l = state;
        return *l ? sizeof **l + (*l)->data.cap : 0;
    }
    case AGG_FIRST:
    case AGG_LAST:
        return ((const pick_state *)state)->len;
    default:
        return 0;
    }
}

/* ---- Results ------------------------------------------------------------ */

static sluice_value sum_value(const sum_state *s)
{
    if (!s->any)
        return sluice_null();
    return s->is_double ? sluice_double(s->d) : sluice_int(s->i);
}

bool agg_result(const agg_spec *spec, const void *state, sluice_value *out, sl_bytes *scratch)
{
    scratch->len = 0;
    *out = sluice_null();
    switch (spec->func) {
    case AGG_COUNT:
    case AGG_COUNT_IF:
        *out = sluice_int((int64_t) * (const uint64_t *)state);
        break;
    case AGG_SUM:
    case AGG_SUM_IF:
        *out = sum_value(state);
        break;
    case AGG_AVG: {
        const avg_state *a = state;
        if (a->n)
            *out = sluice_double(a->sum / (double)a->n);
        break;
    }
    case AGG_MIN:
    case AGG_MAX: {
        const extreme_state *e = state;
        if (e->has)
            *out = e->is_double ? sluice_double(e->d) : sluice_int(e->i);
        break;
    }
    case AGG_STDDEV: {
        const stddev_state *s = state;
        if (s->n >= 2)
            *out = sluice_double(sqrt((s->m2 > 0 ? s->m2 : 0) / (double)(s->n - 1)));
        break;
    }
    case AGG_PERCENTILE: {
        sketch *const *sk = state;
        double q;
        if (*sk && sketch_quantile(*sk, spec->q, &q))
            *out = sluice_double(q);
        break;
    }
    case AGG_COUNT_DISTINCT: {
        byteset *const *s = state;
        *out = sluice_int(*s ? (int64_t)(*s)->count : 0);
        break;
    }
    case AGG_COLLECT_SET:
    case AGG_COLLECT_LIST: {
        const sl_bytes *data = NULL;
        if (spec->func == AGG_COLLECT_SET) {
            byteset *const *s = state;
            data = *s ? &(*s)->data : NULL;
        } else {
            list_state *const *l = state;
            data = *l ? &(*l)->data : NULL;
        }
        if (!json_array_of(data, scratch))
            return false;
        out->type = SLUICE_JSON;
        out->u.s = (sluice_str){(const char *)scratch->data, scratch->len};
        break;
    }
    case AGG_FIRST:
    case AGG_LAST: {
        const pick_state *p = state;
        if (!p->has)
            break;
        sl_reader r = {p->bytes, p->bytes + p->len, false};
        wval_decode(&r, out);
        break;
    }
    }
    return true;
}

/* ---- Snapshots ------------------------------------------------------------ */

static bool save_seq(const sl_bytes *data, sl_bytes *b)
{
    return wbuf_u64(b, data ? data->len : 0) && (!data || sl_bytes_put(b, data->data, data->len));
}

/* Read a back-to-back encoding sequence, checking every value decodes. */
static const unsigned char *load_seq(sl_reader *r, size_t *len)
{
    uint64_t n = rbuf_u64(r);
    if (r->bad || n > (uint64_t)(r->end - r->p))
        return r->bad = true, NULL;
    const unsigned char *p = sl_reader_take(r, (size_t)n);
    sl_reader check = {p, p + n, false};
    sluice_value v;
    while (check.p < check.end)
        if (!wval_decode(&check, &v))
            return r->bad = true, NULL;
    *len = (size_t)n;
    return p;
}

bool agg_save(const agg_spec *spec, const void *st, sl_bytes *b)
{
    switch (spec->func) {
    case AGG_COUNT:
    case AGG_COUNT_IF:
        return wbuf_u64(b, *(const uint64_t *)st);
    case AGG_SUM:
    case AGG_SUM_IF: {
        const sum_state *s = st;
        return wbuf_i64(b, s->i) && wbuf_f64(b, s->d) && wbuf_u8(b, s->any) &&
               wbuf_u8(b, s->is_double);
    }
    case AGG_AVG: {
        const avg_state *a = st;
        return wbuf_f64(b, a->sum) && wbuf_u64(b, a->n);
    }
    case AGG_MIN:
    case AGG_MAX: {
        const extreme_state *e = st;
        return wbuf_i64(b, e->i) && wbuf_f64(b, e->d) && wbuf_u8(b, e->has) &&
               wbuf_u8(b, e->is_double);
    }
    case AGG_STDDEV: {
        const stddev_state *s = st;
        return wbuf_u64(b, s->n) && wbuf_f64(b, s->mean) && wbuf_f64(b, s->m2);
    }
    case AGG_PERCENTILE: {
        sketch *const *sk = st;
        static const sketch empty;
        return sketch_save(*sk ? *sk : &empty, b);
    }
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET: {
        byteset *const *s = st;
        return save_seq(*s ? &(*s)->data : NULL, b);
    }
    case AGG_COLLECT_LIST: {
        list_state *const *l = st;
        return wbuf_u64(b, *l ? (*l)->n : 0) && save_seq(*l ? &(*l)->data : NULL, b);
    }
    case AGG_FIRST:
    case AGG_LAST: {
        const pick_state *p = st;
        return wbuf_u8(b, p->has) && wbuf_i64(b, p->t) && wbuf_u64(b, p->arrival) &&
               wbuf_u32(b, p->len) && sl_bytes_put(b, p->bytes, p->has ? p->len : 0);
    }
    }
    return false;
}

bool agg_load(const agg_spec *spec, void *st, sl_reader *r)
{
    switch (spec->func) {
    case AGG_COUNT:
    case AGG_COUNT_IF:
        *(uint64_t *)st = rbuf_u64(r);
        break;
    case AGG_SUM:
    case AGG_SUM_IF: {
        sum_state *s = st;
        s->i = rbuf_i64(r);
        s->d = rbuf_f64(r);
        s->any = rbuf_u8(r);
        s->is_double = rbuf_u8(r);
        break;
    }
    case AGG_AVG: {
        avg_state *a = st;
        a->sum = rbuf_f64(r);
        a->n = rbuf_u64(r);
        break;
    }
    case AGG_MIN:
    case AGG_MAX: {
        extreme_state *e = st;
        e->i = rbuf_i64(r);
        e->d = rbuf_f64(r);
        e->has = rbuf_u8(r);
        e->is_double = rbuf_u8(r);
        break;
    }
    case AGG_STDDEV: {
        stddev_state *s = st;
        s->n = rbuf_u64(r);
        s->mean = rbuf_f64(r);
        s->m2 = rbuf_f64(r);
        break;
    }
    case AGG_PERCENTILE: {
        sketch **sk = st;
        if (!(*sk = calloc(1, sizeof **sk)))
            return false;
        if (!sketch_load(*sk, r))
            return false;
        break;
    }
    case AGG_COUNT_DISTINCT:
    case AGG_COLLECT_SET: {
        size_t len = 0;
        const unsigned char *p = load_seq(r, &len);
        if (!p)
            return false;
        byteset **s = st;
        if (!(*s = calloc(1, sizeof **s)))
            return false;
        sl_bytes src = {(unsigned char *)p, len, len};
        if (!each_value(&src, byteset_add_one, *s))
            return false;
        break;
    }
    case AGG_COLLECT_LIST: {
        uint64_t n = rbuf_u64(r);
        size_t len = 0;
        const unsigned char *p = load_seq(r, &len);
        if (!p)
            return false;
        list_state **l = st;
        if (!(*l = calloc(1, sizeof **l)) || !sl_bytes_put(&(*l)->data, p, len))
            return false;
        (*l)->n = n;
        break;
    }
    case AGG_FIRST:
    case AGG_LAST: {
        pick_state *p = st;
        uint8_t has = rbuf_u8(r);
        int64_t t = rbuf_i64(r);
        uint64_t arrival = rbuf_u64(r);
        uint32_t len = rbuf_u32(r);
        if (!has)
            break;
        const unsigned char *bytes = sl_reader_take(r, len);
        sl_reader check = {bytes, bytes + len, false};
        sluice_value v;
        if (!bytes || !wval_decode(&check, &v) || check.p != check.end)
            return r->bad = true, false;
        if (!pick_set(p, bytes, len, t, arrival))
            return false;
        break;
    }
    }
    return !r->bad;
}
