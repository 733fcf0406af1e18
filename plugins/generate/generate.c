/*
 * generate.c — the `generate` source: synthetic records for demos, tests
 * and benchmarks.
 *
 *     sources:
 *       gen:
 *         type: generate
 *         rate: 1000          # records/s; 0 (default) = as fast as possible
 *         count: 100000       # 0 (default) = unbounded
 *         seed: 42            # 0 (default) = seeded from the clock
 *         fields:
 *           id: seq()
 *           status: choice(200, 200, 404, 500)
 *           service: choice('api', 'web', "auth")
 *           response_time: normal(120, 30)
 *           user: int(1, 5000)
 *           ts: now_iso()
 *           env: prod          # anything else is a literal
 *
 * Templates are parsed once, at create(), into a small array of tagged
 * generators; a bad one is reported at its own line:col through
 * host->config_error("fields.NAME"). Per record the hot loop is a switch
 * over that array and a few calls of xoshiro256** — no parsing, no
 * hashing, no allocation beyond one bump allocation of the field array per
 * batch. Strings that records carry (choice items, literals) are copied into
 * each batch's arena once per batch, not per record, so batches never point
 * into this instance (which may be destroyed before a sink drops them).
 *
 * Without `fields` a record has a single field, `seq` (0, 1, 2, ...).
 *
 * Pacing: a token bucket on CLOCK_MONOTONIC. Tokens accrue at `rate` per
 * second and are capped at 100 ms worth, so after a stall (backpressure)
 * the source does not burst to catch up. A poll waits until ~10 ms worth of
 * records (at least one) is due, sleeping at most 100 ms, and emits what it
 * made, so a slow generator still delivers records promptly. At rate 0 it
 * fills whole batches, a few per poll.
 *
 * Determinism: with a seed, the values (all but now()/now_iso() and the
 * record time) depend only on the seed and the fields, in file order.
 * snapshot() keeps the record count and the generator state, so a bounded
 * generate restored from a checkpoint continues where it stopped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* M_PI, clock_nanosleep, gmtime_r */
#endif
#include "sluice/plugin.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLEEP_S 0.1       /* a poll blocks at most this long */
#define BATCH_WINDOW_S 0.01   /* a paced poll gathers about this much */
#define BURST_S 0.1           /* the bucket holds at most this much */
#define BATCHES_PER_POLL 4    /* at rate 0 */
#define CLOCK_EVERY 256       /* records between clock reads in a burst */

typedef struct generate_config {
    double rate;
    int64_t count;
    sluice_map fields;
    int64_t seed;
} generate_config;

static const sluice_option generate_options[] = {
    {.name = "rate", .type = SLUICE_OPT_DOUBLE, .default_value = "0",
     .offset = offsetof(generate_config, rate),
     .help = "records per second; 0 = as fast as possible"},
    {.name = "count", .type = SLUICE_OPT_INT, .default_value = "0",
     .offset = offsetof(generate_config, count),
     .help = "records to generate, then finish; 0 = unbounded"},
    {.name = "fields", .type = SLUICE_OPT_MAP,
     .offset = offsetof(generate_config, fields),
     .help = "field name -> template: int(a, b), float(a, b), normal(mean, sd), "
             "choice(x, y, ...), seq(), seq(start), now(), now_iso(), uuid(), "
             "or a literal; default: one field seq: seq()"},
    {.name = "seed", .type = SLUICE_OPT_INT, .default_value = "0",
     .offset = offsetof(generate_config, seed),
     .help = "random seed; 0 = from the clock (same seed, same values)"},
    {.name = NULL},
};

/* ---- random numbers: xoshiro256**, seeded by splitmix64 --------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform in [0, range); range 0 means the full 64 bits. Multiply-high
 * (Lemire) instead of modulo: no division, bias below range / 2^64. */
static inline uint64_t rng_below(rng *r, uint64_t range)
{
    uint64_t x = rng_next(r);
    if (range == 0)
        return x;
#ifdef __SIZEOF_INT128__
    return (uint64_t)(((unsigned __int128)x * range) >> 64);
#else
    return x % range;
#endif
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- templates ---------------------------------------------------------- */

typedef enum gen_kind {
    GEN_CONST,  /* a literal: items[0] */
    GEN_INT,    /* lo + [0, span) */
    GEN_FLOAT,  /* dlo + dspan * [0, 1) */
    GEN_NORMAL, /* dlo = mean, dspan = stddev */
    GEN_CHOICE, /* one of items[] */
    GEN_SEQ,    /* lo + records generated so far */
    GEN_NOW,    /* epoch ms */
    GEN_NOW_ISO,
    GEN_UUID
} gen_kind;

typedef struct gen_field {
    sluice_name name;
    gen_kind kind;
    int64_t lo;
    uint64_t span; /* 0: the whole int64 range */
    double dlo, dspan;
    size_t nitems;
    sluice_value *items;     /* strings point at malloc()ed copies we own */
    sluice_value *cur_items; /* the same, with strings in the current batch */
    bool has_strings;
} gen_field;

typedef struct generate {
    const sluice_host *host;
    sluice_ctx *ctx;
    double rate;
    uint64_t count;      /* 0: unbounded */
    size_t nfields;
    gen_field *fields;

    rng rng;
    uint64_t produced;   /* records made so far (seq() is start + this) */

    /* Pacing. */
    bool bucket_started;
    double tokens;
    double last_refill;  /* monotonic seconds */

    /* The batch being filled, valid only during one poll. */
    sluice_batch *batch;
    uint32_t capacity;   /* batch capacity, learned from the first batch */

    /* The clock, read every CLOCK_EVERY records. */
    int64_t now_ms, now_mono_ns;
    unsigned clock_age;
    /* now_iso(): the text for iso_ms, copied into the current batch once. */
    int64_t iso_ms;
    sluice_str iso_str;
} generate;

typedef struct tmpl_arg {
    char *text;
    bool quoted;
} tmpl_arg;

typedef struct tmpl_args {
    size_t n;
    tmpl_arg *v;
} tmpl_args;

static void args_free(tmpl_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i].text);
    free(a->v);
    a->n = 0;
    a->v = NULL;
}

static bool parse_int64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return false;
    /* strtod also takes hex and "inf"/"nan": keep to decimal numbers. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return false;
    *out = v;
    return true;
}

/* The typed value of a bare word: an int, a double, true/false, null, or
 * else the string itself (strdup()ed; the caller owns it). */
static int bare_value(const char *text, sluice_value *out)
{
    int64_t i;
    double d;
    if (parse_int64(text, &i)) {
        *out = sluice_int(i);
    } else if (parse_number(text, &d)) {
        *out = sluice_double(d);
    } else if (!strcmp(text, "true") || !strcmp(text, "false")) {
        *out = sluice_bool(text[0] == 't');
    } else if (!strcmp(text, "null")) {
        *out = sluice_null();
    } else {
        char *copy = strdup(text);
        if (!copy)
            return -1;
        sluice_str s = {copy, strlen(copy)};
        *out = sluice_string(s);
    }
    return 0;
}

static int string_value(const char *text, sluice_value *out)
{
    char *copy = strdup(text);
    if (!copy)
        return -1;
    sluice_str s = {copy, strlen(copy)};
    *out = sluice_string(s);
    return 0;
}

static char *dup_range(const char *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* Split the text between the parentheses into arguments: 'quoted' or
 * "quoted" (commas and spaces kept), or bare (trimmed). Returns NULL, or
 * the reason it could not. */
static const char *split_args(const char *p, const char *end, tmpl_args *out)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (p == end)
        return NULL; /* no arguments */
    for (;;) {
        while (p < end && isspace((unsigned char)*p))
            p++;
        const char *start, *stop;
        bool quoted = false;
        if (p < end && (*p == '\'' || *p == '"')) {
            char q = *p++;
            start = p;
            while (p < end && *p != q)
                p++;
            if (p == end)
                return "unterminated quoted argument";
            stop = p++;
            quoted = true;
        } else {
            start = p;
            while (p < end && *p != ',') {
                if (*p == '(' || *p == ')' || *p == '\'' || *p == '"')
                    return "unexpected parenthesis or quote in an argument";
                p++;
            }
            stop = p;
            while (stop > start && isspace((unsigned char)stop[-1]))
                stop--;
            if (stop == start)
                return "empty argument";
        }
        tmpl_arg *v = realloc(out->v, (out->n + 1) * sizeof *v);
        if (!v)
            return "out of memory";
        out->v = v;
        v[out->n].quoted = quoted;
        v[out->n].text = dup_range(start, (size_t)(stop - start));
        if (!v[out->n].text)
            return "out of memory";
        out->n++;
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p == end)
            return NULL;
        if (*p != ',')
            return "expected ',' between arguments";
        p++;
    }
}

/* Put the reason a template is bad into why[] and fail. */
#define BAD_TEMPLATE(...)                                                   \
    do {                                                                    \
        snprintf(why, whylen, __VA_ARGS__);                                 \
        return -1;                                                          \
    } while (0)

static int need_args(const char *fn, const tmpl_args *a, size_t lo, size_t hi,
                     const char *usage, char *why, size_t whylen)
{
    if (a->n >= lo && a->n <= hi)
        return 0;
    BAD_TEMPLATE("%s takes %s, got %zu argument%s", fn, usage, a->n, a->n == 1 ? "" : "s");
}

static int number_arg(const char *fn, const tmpl_arg *a, double *out, char *why, size_t whylen)
{
    if (a->quoted || !parse_number(a->text, out))
        BAD_TEMPLATE("%s needs numbers, got '%s'", fn, a->text);
    return 0;
}

static int int_arg(const char *fn, const tmpl_arg *a, int64_t *out, char *why, size_t whylen)
{
    if (a->quoted || !parse_int64(a->text, out))
        BAD_TEMPLATE("%s needs integers, got '%s'", fn, a->text);
    return 0;
}

/* Fill f from the function call fn(args). Returns 0, -1 with the reason in
 * why, or 1 when fn is not a template function (the text is a literal). */
static int build_call(gen_field *f, const char *fn, tmpl_args *a, char *why, size_t whylen)
{
    if (!strcmp(fn, "int")) {
        int64_t lo, hi;
        if (need_args("int()", a, 2, 2, "2 arguments (low, high)", why, whylen) ||
            int_arg("int()", &a->v[0], &lo, why, whylen) ||
            int_arg("int()", &a->v[1], &hi, why, whylen))
            return -1;
        if (lo > hi)
            BAD_TEMPLATE("int(): low %lld is greater than high %lld", (long long)lo,
                         (long long)hi);
        f->kind = GEN_INT;
        f->lo = lo;
        f->span = (uint64_t)hi - (uint64_t)lo + 1; /* wraps to 0 for the full range */
    } else if (!strcmp(fn, "float") || !strcmp(fn, "normal")) {
        bool normal = fn[0] == 'n';
        const char *name = normal ? "normal()" : "float()";
        double x, y;
        if (need_args(name, a, 2, 2, normal ? "2 arguments (mean, stddev)" : "2 arguments (low, high)",
                      why, whylen) ||
            number_arg(name, &a->v[0], &x, why, whylen) ||
            number_arg(name, &a->v[1], &y, why, whylen))
            return -1;
        if (normal && y < 0)
            BAD_TEMPLATE("normal(): stddev %g is negative", y);
        if (!normal && x > y)
            BAD_TEMPLATE("float(): low %g is greater than high %g", x, y);
        f->kind = normal ? GEN_NORMAL : GEN_FLOAT;
        f->dlo = x;
        f->dspan = normal ? y : y - x;
        if (!isfinite(f->dspan))
            BAD_TEMPLATE("%s: the range is too large", name);
    } else if (!strcmp(fn, "choice")) {
        if (a->n == 0)
            BAD_TEMPLATE("choice() needs at least one item");
        f->items = calloc(a->n, sizeof *f->items);
        if (!f->items)
            BAD_TEMPLATE("out of memory");
        for (size_t i = 0; i < a->n; i++) {
            int rc = a->v[i].quoted ? string_value(a->v[i].text, &f->items[i])
                                    : bare_value(a->v[i].text, &f->items[i]);
            if (rc)
                BAD_TEMPLATE("out of memory");
            f->nitems++;
        }
        f->kind = GEN_CHOICE;
    } else if (!strcmp(fn, "seq")) {
        int64_t start = 0;
        if (need_args("seq()", a, 0, 1, "0 or 1 argument (start)", why, whylen) ||
            (a->n == 1 && int_arg("seq()", &a->v[0], &start, why, whylen)))
            return -1;
        f->kind = GEN_SEQ;
        f->lo = start;
    } else if (!strcmp(fn, "now") || !strcmp(fn, "now_iso") || !strcmp(fn, "uuid")) {
        char name[16];
        snprintf(name, sizeof name, "%s()", fn);
        if (need_args(name, a, 0, 0, "no arguments", why, whylen))
            return -1;
        f->kind = fn[0] == 'u' ? GEN_UUID : fn[3] == '_' ? GEN_NOW_ISO : GEN_NOW;
    } else {
        return 1;
    }
    return 0;
}

static int set_literal(gen_field *f, const char *text, bool string_only)
{
    f->kind = GEN_CONST;
    f->items = calloc(1, sizeof *f->items);
    if (!f->items)
        return -1;
    f->nitems = 1;
    if (!text) {
        f->items[0] = sluice_null();
        return 0;
    }
    return string_only ? string_value(text, &f->items[0]) : bare_value(text, &f->items[0]);
}

static bool is_template_function(const char *name, size_t len)
{
    static const char *const names[] = {"int", "float", "normal", "choice", "seq",
                                        "now", "now_iso", "uuid", NULL};
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && !memcmp(names[i], name, len))
            return true;
    return false;
}

/* Parse one template into f. Returns 0, or -1 with the reason in why. */
static int parse_template(generate *g, gen_field *f, const char *fieldname, const char *text,
                          char *why, size_t whylen)
{
    if (!text)
        return set_literal(f, NULL, false);
    const char *p = text, *end = text + strlen(text);
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;

    /* 'text' or "text": a string, even if it looks like a number. */
    if (end - p >= 2 && (*p == '\'' || *p == '"') && end[-1] == *p) {
        char *inner = dup_range(p + 1, (size_t)(end - p - 2));
        int rc = inner ? set_literal(f, inner, true) : -1;
        free(inner);
        if (rc)
            BAD_TEMPLATE("out of memory");
        return 0;
    }

    /* identifier(...) */
    const char *q = p;
    if (q < end && (isalpha((unsigned char)*q) || *q == '_')) {
        while (q < end && (isalnum((unsigned char)*q) || *q == '_'))
            q++;
        const char *name_end = q;
        while (q < end && isspace((unsigned char)*q))
            q++;
        if (q < end && *q == '(' && end[-1] != ')' &&
            is_template_function(p, (size_t)(name_end - p)))
            BAD_TEMPLATE("missing ')' at the end");
        if (q < end && *q == '(' && end[-1] == ')') {
            char *fn = dup_range(p, (size_t)(name_end - p));
            tmpl_args args = {0, NULL};
            const char *bad = fn ? split_args(q + 1, end - 1, &args) : "out of memory";
            int rc;
            if (bad) {
                snprintf(why, whylen, "%s", bad);
                rc = -1;
            } else {
                rc = build_call(f, fn, &args, why, whylen);
            }
            if (rc == 1)
                g->host->log(g->ctx, SLUICE_LOG_WARN,
                             "fields.%s: '%s' is not a template function (int, float, normal, "
                             "choice, seq, now, now_iso, uuid); using it as a literal string",
                             fieldname, fn);
            args_free(&args);
            free(fn);
            if (rc <= 0)
                return rc;
        }
    }

    /* A literal: numbers, true/false and null are typed; other text is kept
     * exactly as written (untrimmed). */
    char *trimmed = dup_range(p, (size_t)(end - p));
    if (!trimmed)
        BAD_TEMPLATE("out of memory");
    sluice_value v;
    int rc = bare_value(trimmed, &v);
    free(trimmed);
    if (rc)
        BAD_TEMPLATE("out of memory");
    if (v.type == SLUICE_STRING) {
        free((char *)v.u.s.ptr);
        rc = set_literal(f, text, true);
    } else {
        rc = set_literal(f, NULL, false);
        if (!rc)
            f->items[0] = v;
    }
    if (rc)
        BAD_TEMPLATE("out of memory");
    return 0;
}

static void fields_free(generate *g)
{
    for (size_t i = 0; i < g->nfields; i++) {
        gen_field *f = &g->fields[i];
        for (size_t j = 0; j < f->nitems; j++)
            if (f->items[j].type == SLUICE_STRING)
                free((char *)f->items[j].u.s.ptr);
        free(f->items);
    }
    free(g->fields);
    g->fields = NULL;
    g->nfields = 0;
}

/* ---- the clock ------------------------------------------------------- */

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void read_clock(generate *g)
{
    struct timespec rt, mt;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mt);
    g->now_ms = (int64_t)rt.tv_sec * 1000 + rt.tv_nsec / 1000000;
    g->now_mono_ns = (int64_t)mt.tv_sec * 1000000000 + mt.tv_nsec;
    g->clock_age = 0;
}

static void sleep_seconds(double s)
{
    if (s <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
        ; /* a signal: the runtime checks stopping after we return */
}

/* "2026-11-23T09:00:00.123Z" — 24 bytes. */
static void format_iso(int64_t ms, char out[96])
{
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int millis = (int)(ms - secs * 1000);
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 96, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

/* ---- making records ---------------------------------------------------- */

/* Start a batch: copy the strings records will point at into its arena. */
static int batch_begin(generate *g)
{
    const sluice_host *h = g->host;
    g->batch = h->batch_new(g->ctx);
    if (!g->batch)
        return SLUICE_ERROR;
    if (!g->capacity)
        g->capacity = g->batch->capacity ? g->batch->capacity : 1;
    g->iso_str.ptr = NULL;
    for (size_t i = 0; i < g->nfields; i++) {
        gen_field *f = &g->fields[i];
        if (!f->has_strings)
            continue;
        f->cur_items = h->alloc(g->batch, f->nitems * sizeof *f->cur_items);
        if (!f->cur_items)
            return SLUICE_ERROR;
        for (size_t j = 0; j < f->nitems; j++) {
            f->cur_items[j] = f->items[j];
            if (f->items[j].type == SLUICE_STRING) {
                f->cur_items[j].u.s = h->str(g->batch, f->items[j].u.s.ptr, f->items[j].u.s.len);
                if (!f->cur_items[j].u.s.ptr)
                    return SLUICE_ERROR;
            }
        }
    }
    return SLUICE_OK;
}

static int batch_emit(generate *g, char *err, size_t errlen)
{
    sluice_batch *b = g->batch;
    g->batch = NULL;
    if (!b)
        return SLUICE_OK;
    if (b->count == 0) {
        g->host->batch_free(b);
        return SLUICE_OK;
    }
    if (g->host->emit(g->ctx, b) == SLUICE_ERROR) {
        snprintf(err, errlen, "generate: could not emit a batch");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static sluice_value make_uuid(generate *g)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = rng_next(&g->rng), lo = rng_next(&g->rng);
    hi = (hi & ~0xf000ull) | 0x4000ull;                         /* version 4 */
    lo = (lo & ~(0xc000ull << 48)) | (0x8000ull << 48);          /* variant 10 */
    char *s = g->host->alloc(g->batch, 40);
    if (!s)
        return sluice_null();
    char *o = s;
    for (int i = 0; i < 16; i++) {
        uint8_t byte = (uint8_t)(i < 8 ? hi >> (56 - 8 * i) : lo >> (56 - 8 * (i - 8)));
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[byte >> 4];
        *o++ = hex[byte & 15];
    }
    *o = '\0';
    sluice_str str = {s, 36};
    return sluice_string(str);
}

static sluice_value make_now_iso(generate *g)
{
    if (!g->iso_str.ptr || g->iso_ms != g->now_ms) {
        char text[96];
        format_iso(g->now_ms, text);
        g->iso_str = g->host->str(g->batch, text, strlen(text));
        g->iso_ms = g->now_ms;
        if (!g->iso_str.ptr)
            return sluice_null();
    }
    return sluice_string(g->iso_str);
}

static inline sluice_value make_value(generate *g, gen_field *f)
{
    switch (f->kind) {
    case GEN_INT:
        return sluice_int((int64_t)((uint64_t)f->lo + rng_below(&g->rng, f->span)));
    case GEN_FLOAT:
        return sluice_double(f->dlo + f->dspan * rng_unit(&g->rng));
    case GEN_NORMAL: {
        /* Box-Muller; the second variate is dropped so the state is just
         * the generator's (simple to snapshot). 1 - u keeps log() finite. */
        double u1 = 1.0 - rng_unit(&g->rng), u2 = rng_unit(&g->rng);
        return sluice_double(f->dlo + f->dspan * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
    case GEN_CHOICE: {
        const sluice_value *items = f->has_strings ? f->cur_items : f->items;
        return items[f->nitems == 1 ? 0 : rng_below(&g->rng, f->nitems)];
    }
    case GEN_CONST:
        return f->has_strings ? f->cur_items[0] : f->items[0];
    case GEN_SEQ:
        return sluice_int((int64_t)((uint64_t)f->lo + g->produced));
    case GEN_NOW:
        return sluice_int(g->now_ms);
    case GEN_NOW_ISO:
        return make_now_iso(g);
    case GEN_UUID:
        return make_uuid(g);
    }
    return sluice_null();
}

/* Make n records, emitting each batch that fills up; the last one stays in
 * g->batch for the caller to emit. */
static int make_records(generate *g, uint64_t n, char *err, size_t errlen)
{
    const sluice_host *h = g->host;
    while (n > 0) {
        if (!g->batch && batch_begin(g) != SLUICE_OK) {
            snprintf(err, errlen, "generate: out of memory");
            return SLUICE_ERROR;
        }
        sluice_batch *b = g->batch;
        uint64_t room = b->capacity > b->count ? b->capacity - b->count : 0;
        if (room == 0) {
            if (batch_emit(g, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            continue;
        }
        uint64_t todo = n < room ? n : room;
        /* One field array for all of this run's records. */
        sluice_field *fields = NULL;
        if (g->nfields) {
            fields = h->alloc(b, (size_t)todo * g->nfields * sizeof *fields);
            if (!fields) {
                snprintf(err, errlen, "generate: out of memory");
                return SLUICE_ERROR;
            }
        }
        for (uint64_t k = 0; k < todo; k++) {
            sluice_record *r = h->record_append(b);
            if (!r)
                break; /* cannot happen: room was checked */
            if (++g->clock_age >= CLOCK_EVERY)
                read_clock(g);
            r->time = g->now_ms;
            r->ingest_ns = g->now_mono_ns;
            /* capfields stays 0: the array is ours, and the core copies it
             * before anyone adds a field (as for a shared array). */
            r->fields = fields;
            r->nfields = (uint32_t)g->nfields;
            for (size_t i = 0; i < g->nfields; i++) {
                fields[i].name = g->fields[i].name;
                fields[i].value = make_value(g, &g->fields[i]);
            }
            fields += g->nfields;
            g->produced++;
            n--;
        }
    }
    return SLUICE_OK;
}

/* ---- lifecycle ---------------------------------------------------------- */

static int generate_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                           void **self, char *err, size_t errlen)
{
    const generate_config *cfg = config;
    bool ok = true;
    if (!(cfg->rate >= 0) || !isfinite(cfg->rate)) {
        host->config_error(ctx, "rate", "rate must be a number of records per second >= 0, got %g",
                           cfg->rate);
        ok = false;
    }
    if (cfg->count < 0) {
        host->config_error(ctx, "count", "count must be >= 0 (0 = unbounded), got %lld",
                           (long long)cfg->count);
        ok = false;
    }

    generate *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "generate: out of memory");
        return SLUICE_ERROR;
    }
    g->host = host;
    g->ctx = ctx;
    g->rate = cfg->rate;
    g->count = cfg->count > 0 ? (uint64_t)cfg->count : 0;

    size_t n = cfg->fields.count ? cfg->fields.count : 1;
    g->fields = calloc(n, sizeof *g->fields);
    if (!g->fields) {
        free(g);
        snprintf(err, errlen, "generate: out of memory");
        return SLUICE_ERROR;
    }
    if (!cfg->fields.count) {
        g->fields[0].name = host->intern("seq", 3);
        g->fields[0].kind = GEN_SEQ;
        g->nfields = 1;
    }
    for (size_t i = 0; i < cfg->fields.count; i++) {
        const char *key = cfg->fields.keys[i];
        const char *text = cfg->fields.values[i];
        char option[256], why[256];
        snprintf(option, sizeof option, "fields.%s", key);
        gen_field *f = &g->fields[g->nfields++];
        if (!key[0]) {
            host->config_error(ctx, option, "a field name may not be empty");
            ok = false;
            continue;
        }
        f->name = host->intern(key, strlen(key));
        for (size_t j = 0; j + 1 < g->nfields; j++)
            if (g->fields[j].name == f->name) {
                host->config_error(ctx, option, "field '%s' is given twice", key);
                ok = false;
            }
        why[0] = '\0';
        if (parse_template(g, f, key, text, why, sizeof why) != 0) {
            host->config_error(ctx, option, "bad template '%s': %s", text ? text : "", why);
            ok = false;
            continue;
        }
        for (size_t j = 0; j < f->nitems; j++)
            if (f->items[j].type == SLUICE_STRING)
                f->has_strings = true;
    }
    if (!ok) {
        fields_free(g);
        free(g);
        snprintf(err, errlen, "generate: invalid configuration");
        return SLUICE_ERROR;
    }

    uint64_t seed = (uint64_t)cfg->seed;
    if (seed == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        seed ^= (uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)g;
    }
    rng_seed(&g->rng, seed);
    read_clock(g);
    *self = g;
    return SLUICE_OK;
}

static int generate_start(void *self, char *err, size_t errlen)
{
    return SLUICE_OK;
}

static void generate_destroy(void *self)
{
    generate *g = self;
    if (!g)
        return;
    if (g->batch)
        g->host->batch_free(g->batch);
    fields_free(g);
    free(g);
}

/* How many records this poll may make under the rate; 0: none yet. */
static uint64_t paced_allowance(generate *g, uint64_t remaining)
{
    double now = mono_seconds();
    if (!g->bucket_started) {
        /* The first record goes out at once; the clock starts with it. */
        g->bucket_started = true;
        g->tokens = 1.0;
        g->last_refill = now;
    }
    uint32_t cap = g->capacity ? g->capacity : 1;
    double want = g->rate * BATCH_WINDOW_S;
    if (want < 1)
        want = 1;
    if (want > cap)
        want = cap;
    if (want > (double)remaining)
        want = (double)remaining;
    double burst = g->rate * BURST_S;
    if (burst < want)
        burst = want;

    g->tokens += (now - g->last_refill) * g->rate;
    g->last_refill = now;
    if (g->tokens > burst)
        g->tokens = burst;
    if (g->tokens < want && !g->host->stopping(g->ctx)) {
        double wait = (want - g->tokens) / g->rate;
        sleep_seconds(wait < MAX_SLEEP_S ? wait : MAX_SLEEP_S);
        now = mono_seconds();
        g->tokens += (now - g->last_refill) * g->rate;
        g->last_refill = now;
        if (g->tokens > burst)
            g->tokens = burst;
    }
    if (g->tokens < 1)
        return 0;
    uint64_t n = (uint64_t)g->tokens;
    if (n > remaining)
        n = remaining;
    if (n > (uint64_t)BATCHES_PER_POLL * cap)
        n = (uint64_t)BATCHES_PER_POLL * cap;
    g->tokens -= (double)n;
    return n;
}

static int generate_poll(void *self, char *err, size_t errlen)
{
    generate *g = self;
    if (g->count && g->produced >= g->count)
        return SLUICE_DONE;
    uint64_t remaining = g->count ? g->count - g->produced : UINT64_MAX;

    if (!g->capacity) { /* learn the batch size before pacing with it */
        if (batch_begin(g) != SLUICE_OK) {
            snprintf(err, errlen, "generate: out of memory");
            return SLUICE_ERROR;
        }
    }
    uint64_t n;
    if (g->rate > 0) {
        n = paced_allowance(g, remaining);
        if (n == 0) {
            if (g->batch) {
                g->host->batch_free(g->batch);
                g->batch = NULL;
            }
            return SLUICE_RETRY;
        }
    } else {
        n = (uint64_t)BATCHES_PER_POLL * g->capacity;
        if (n > remaining)
            n = remaining;
    }

    read_clock(g);
    if (make_records(g, n, err, errlen) != SLUICE_OK || batch_emit(g, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    if (g->count) {
        g->host->progress(g->ctx, g->produced, g->count);
        if (g->produced >= g->count)
            return SLUICE_DONE;
    }
    return SLUICE_OK;
}

/* ---- checkpoints: the record count and the generator state ------------- */

#define SNAP_MAGIC "slgen\0\0\1"

typedef struct gen_snapshot {
    char magic[8];
    uint64_t produced;
    uint64_t rng[4];
} gen_snapshot;

static int generate_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                             size_t errlen)
{
    generate *g = self;
    gen_snapshot *s = malloc(sizeof *s);
    if (!s) {
        snprintf(err, errlen, "generate: out of memory");
        return SLUICE_ERROR;
    }
    memcpy(s->magic, SNAP_MAGIC, sizeof s->magic);
    s->produced = g->produced;
    memcpy(s->rng, g->rng.s, sizeof s->rng);
    *blob = s;
    *len = sizeof *s;
    return SLUICE_OK;
}

static int generate_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    generate *g = self;
    gen_snapshot s;
    if (len != sizeof s) {
        snprintf(err, errlen, "generate: snapshot has %zu bytes, expected %zu", len, sizeof s);
        return SLUICE_ERROR;
    }
    memcpy(&s, blob, sizeof s);
    if (memcmp(s.magic, SNAP_MAGIC, sizeof s.magic)) {
        snprintf(err, errlen, "generate: not a generate snapshot");
        return SLUICE_ERROR;
    }
    g->produced = s.produced;
    memcpy(g->rng.s, s.rng, sizeof s.rng);
    return SLUICE_OK;
}

const sluice_plugin_def sl_plugin_generate_source = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "generate",
    .kind = SLUICE_SOURCE,
    .version = "1.0",
    .description = "synthetic records from templates, at a rate or as fast as possible",
    .config_size = sizeof(generate_config),
    .options = generate_options,
    .create = generate_create,
    .start = generate_start,
    .destroy = generate_destroy,
    .poll = generate_poll,
    .snapshot = generate_snapshot,
    .restore = generate_restore,
};
