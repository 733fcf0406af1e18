/*
 * json_decoders.c — which JSON decoder sluice uses, settled by measurement.
 *
 * DESIGN.md asks for the decoder to be chosen on benchmark data, and for a
 * hand-written one only if it beats every library Debian offers. This
 * program decodes the same N JSON access-log lines into sluice records with
 *   sluice       core/json.c (sl_json_decode)
 *   yajl         the callback parser (no tree), nested values re-generated
 *                with yajl_gen
 *   jansson      json_loadb, then walk the object
 *   json-c       a reused json_tokener, then walk the object
 *   libfastjson  a reused fjson_tokener, then walk the object
 * Each produces the same typed fields: strings copied into the batch arena,
 * ints, doubles, and the nested "client" object as its JSON text (what
 * sluice keeps). Field names go through the same kind of per-decoder name
 * cache for every contender, so none pays sl_intern's lock per key. The
 * records of every library are checked against sluice's before timing.
 *
 * Not part of the normal build; scripts/bench-json compiles and runs it:
 *   gcc -std=gnu11 -O2 -Icore -Icore/include bench/json_decoders.c core/json.c \
 *       core/batch.c core/intern.c -o /tmp/json_decoders \
 *       -lyajl -ljansson -ljson-c -lfastjson -lpthread -lm -ldl
 *   /tmp/json_decoders [lines] [runs] [only]
 * (default 200000 lines, 5 runs; `only` times just the decoders whose name
 * starts with it, e.g. "sluice").
 * Prints ns/record and MB/s, the median of the runs.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dlvsym */
#endif
#include "json.h"
#include "record.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#define FJSON_NATIVE_API_ONLY /* no json_* aliases */
#include <libfastjson/json.h>
#include <libfastjson/json_object_iterator.h>

/* json-c's headers cannot share a file with jansson.h (both declare
 * json_object, json_type, json_object_get, json_object_iter_next), so the
 * part of json-c 0.16's API used here is declared by hand, as in its
 * json_types.h, json_object.h, json_tokener.h and json_object_iterator.h.
 * Both libraries export json_object_iter_next (versioned: JSONC_0.14 and
 * libjansson.so.4); the plain name binds to jansson's, so json-c's is
 * fetched with dlvsym(). */
struct json_object;
struct json_tokener;
struct json_object_iterator {
    const void *opaque_;
};
enum jc_type {
    jc_type_null, jc_type_boolean, jc_type_double, jc_type_int,
    jc_type_object, jc_type_array, jc_type_string
};
#define JC_TO_STRING_PLAIN 0
#define JC_TOKENER_SUCCESS 0
extern struct json_tokener *json_tokener_new(void);
extern void json_tokener_free(struct json_tokener *tok);
extern void json_tokener_reset(struct json_tokener *tok);
extern struct json_object *json_tokener_parse_ex(struct json_tokener *tok, const char *str, int len);
extern int json_tokener_get_error(struct json_tokener *tok);
extern int json_object_put(struct json_object *obj);
extern enum jc_type json_object_get_type(const struct json_object *obj);
extern const char *json_object_get_string(struct json_object *obj);
extern int json_object_get_string_len(const struct json_object *obj);
extern int64_t json_object_get_int64(const struct json_object *obj);
extern double json_object_get_double(const struct json_object *obj);
extern int json_object_get_boolean(const struct json_object *obj);
extern const char *json_object_to_json_string_length(struct json_object *obj, int flags, size_t *len);
extern struct json_object_iterator json_object_iter_begin(struct json_object *obj);
extern struct json_object_iterator json_object_iter_end(const struct json_object *obj);
extern int json_object_iter_equal(const struct json_object_iterator *a,
                                  const struct json_object_iterator *b);
extern const char *json_object_iter_peek_name(const struct json_object_iterator *it);
extern struct json_object *json_object_iter_peek_value(const struct json_object_iterator *it);
static void (*jc_iter_next)(struct json_object_iterator *it);

/* ---- Test data ----------------------------------------------------------- */

typedef struct line {
    char *p;
    size_t len;
} line;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

#define PICK(a) (a[rnd() % (sizeof a / sizeof a[0])])

static line *make_lines(size_t n, size_t *total)
{
    static const char *services[] = {"checkout", "search", "auth", "catalog", "payments", "frontend"};
    static const char *methods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
    static const char *paths[] = {"/api/v1/orders", "/api/v1/users", "/api/v1/search", "/health",
                                  "/api/v2/cart/items", "/static/app.js"};
    static const char *regions[] = {"eu-west-1", "us-east-1", "ap-south-1", "us-west-2"};
    static const int statuses[] = {200, 200, 200, 200, 201, 204, 301, 400, 404, 500, 503};
    static const char *agents[] = {"curl/8.1.2", "Mozilla/5.0 (X11; Linux x86_64)",
                                   "okhttp/4.9.3", "Go-http-client/1.1"};
    line *lines = malloc(n * sizeof *lines);
    *total = 0;
    for (size_t i = 0; i < n; i++) {
        char buf[512];
        int len = snprintf(buf, sizeof buf,
            "{\"timestamp\":\"2024-05-%02uT%02u:%02u:%02u.%03uZ\",\"service\":\"%s\","
            "\"method\":\"%s\",\"path\":\"%s/%u\",\"status_code\":%d,"
            "\"response_time\":%u.%03u,\"bytes\":%u,\"user_id\":\"u-%06u\",\"region\":\"%s\","
            "\"client\":{\"ip\":\"10.%u.%u.%u\",\"ua\":\"%s\"}}",
            1 + rnd() % 28, rnd() % 24, rnd() % 60, rnd() % 60, rnd() % 1000, PICK(services),
            PICK(methods), PICK(paths), rnd() % 100000, PICK(statuses),
            rnd() % 2000, rnd() % 1000, rnd() % 200000, rnd() % 1000000, PICK(regions),
            rnd() % 256, rnd() % 256, rnd() % 256, PICK(agents));
        lines[i].p = malloc((size_t)len);
        memcpy(lines[i].p, buf, (size_t)len); /* not NUL-terminated, like a read buffer */
        lines[i].len = (size_t)len;
        *total += (size_t)len;
    }
    return lines;
}

/* ---- A name cache, as every real adapter would keep ------------------------ */

typedef struct cached {
    size_t len;
    sluice_name name;
    char key[48];
} cached;

static cached name_cache[256];

static sluice_name name_for(const char *key, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 16777619u;
    cached *c = &name_cache[h & 255];
    if (c->name && c->len == len && memcmp(c->key, key, len) == 0)
        return c->name;
    sluice_name n = sl_intern(key, len);
    if (len <= sizeof c->key) {
        c->len = len;
        c->name = n;
        memcpy(c->key, key, len);
    }
    return n;
}

static void set_str(sluice_batch *b, sluice_record *r, sluice_name n, const char *p, size_t len)
{
    sl_set(b, r, n, sluice_string(sl_str(b, p, len)));
}

static void set_json(sluice_batch *b, sluice_record *r, sluice_name n, const char *p, size_t len)
{
    sluice_value v = {.type = SLUICE_JSON, .u.s = sl_str(b, p, len)};
    sl_set(b, r, n, v);
}

/* ---- The contenders: decode one line into r; 0 or -1 ---------------------- */

static sl_json_decoder *sluice_dec;

static int dec_sluice(sluice_batch *b, sluice_record *r, const line *l)
{
    char err[128];
    return sl_json_decode(sluice_dec, b, r, l->p, l->len, err, sizeof err);
}

/* yajl: callbacks at depth 1 set fields; deeper events go to a generator
 * that rebuilds the nested value's text. */
typedef struct yajl_ctx {
    sluice_batch *b;
    sluice_record *r;
    int depth;
    sluice_name key;
    yajl_gen gen;
} yajl_ctx;

static yajl_gen yajl_g;

static int y_null(void *c)
{
    yajl_ctx *y = c;
    if (y->depth > 1)
        return yajl_gen_null(y->gen) == yajl_gen_status_ok;
    return sl_set(y->b, y->r, y->key, sluice_null()) == SLUICE_OK;
}

static int y_bool(void *c, int v)
{
    yajl_ctx *y = c;
    if (y->depth > 1)
        return yajl_gen_bool(y->gen, v) == yajl_gen_status_ok;
    return sl_set(y->b, y->r, y->key, sluice_bool(v)) == SLUICE_OK;
}

static int y_int(void *c, long long v)
{
    yajl_ctx *y = c;
    if (y->depth > 1)
        return yajl_gen_integer(y->gen, v) == yajl_gen_status_ok;
    return sl_set(y->b, y->r, y->key, sluice_int(v)) == SLUICE_OK;
}

static int y_double(void *c, double v)
{
    yajl_ctx *y = c;
    if (y->depth > 1)
        return yajl_gen_double(y->gen, v) == yajl_gen_status_ok;
    return sl_set(y->b, y->r, y->key, sluice_double(v)) == SLUICE_OK;
}

static int y_string(void *c, const unsigned char *s, size_t len)
{
    yajl_ctx *y = c;
    if (y->depth > 1)
        return yajl_gen_string(y->gen, s, len) == yajl_gen_status_ok;
    set_str(y->b, y->r, y->key, (const char *)s, len);
    return 1;
}

static int y_key(void *c, const unsigned char *s, size_t len)
{
    yajl_ctx *y = c;
    if (y->depth > 1)
        return yajl_gen_string(y->gen, s, len) == yajl_gen_status_ok;
    y->key = name_for((const char *)s, len);
    return 1;
}

static int y_open(void *c, bool map)
{
    yajl_ctx *y = c;
    if (++y->depth == 2) {
        yajl_gen_clear(y->gen);
        yajl_gen_reset(y->gen, NULL);
    }
    if (y->depth > 1)
        return (map ? yajl_gen_map_open(y->gen) : yajl_gen_array_open(y->gen)) == yajl_gen_status_ok;
    return 1;
}

static int y_close(void *c, bool map)
{
    yajl_ctx *y = c;
    if (y->depth > 1 &&
        (map ? yajl_gen_map_close(y->gen) : yajl_gen_array_close(y->gen)) != yajl_gen_status_ok)
        return 0;
    if (y->depth-- == 2) {
        const unsigned char *buf;
        size_t len;
        yajl_gen_get_buf(y->gen, &buf, &len);
        set_json(y->b, y->r, y->key, (const char *)buf, len);
    }
    return 1;
}

static int y_start_map(void *c) { return y_open(c, true); }
static int y_end_map(void *c) { return y_close(c, true); }
static int y_start_array(void *c) { return y_open(c, false); }
static int y_end_array(void *c) { return y_close(c, false); }

static const yajl_callbacks yajl_cbs = {
    y_null, y_bool, y_int, y_double, NULL, y_string,
    y_start_map, y_key, y_end_map, y_start_array, y_end_array,
};

static int dec_yajl(sluice_batch *b, sluice_record *r, const line *l)
{
    yajl_ctx y = {b, r, 0, 0, yajl_g};
    yajl_handle h = yajl_alloc(&yajl_cbs, NULL, &y);
    yajl_config(h, yajl_dont_validate_strings, 1); /* sluice does not check UTF-8 either */
    int rc = yajl_parse(h, (const unsigned char *)l->p, l->len) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok ? 0 : -1;
    yajl_free(h);
    return rc;
}

static int dec_jansson(sluice_batch *b, sluice_record *r, const line *l)
{
    json_error_t e;
    json_t *root = json_loadb(l->p, l->len, 0, &e);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        sluice_name n = name_for(key, strlen(key));
        switch (json_typeof(v)) {
        case JSON_STRING:
            set_str(b, r, n, json_string_value(v), json_string_length(v));
            break;
        case JSON_INTEGER:
            sl_set(b, r, n, sluice_int(json_integer_value(v)));
            break;
        case JSON_REAL:
            sl_set(b, r, n, sluice_double(json_real_value(v)));
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            sl_set(b, r, n, sluice_bool(json_is_true(v)));
            break;
        case JSON_NULL:
            sl_set(b, r, n, sluice_null());
            break;
        case JSON_OBJECT:
        case JSON_ARRAY: {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            set_json(b, r, n, text, strlen(text));
            free(text);
            break;
        }
        }
    }
    json_decref(root);
    return 0;
}

static struct json_tokener *jc_tok;

static int dec_jsonc(sluice_batch *b, sluice_record *r, const line *l)
{
    json_tokener_reset(jc_tok);
    struct json_object *root = json_tokener_parse_ex(jc_tok, l->p, (int)l->len);
    if (!root || json_tokener_get_error(jc_tok) != JC_TOKENER_SUCCESS ||
        json_object_get_type(root) != jc_type_object) {
        json_object_put(root);
        return -1;
    }
    struct json_object_iterator it = json_object_iter_begin(root);
    struct json_object_iterator stop = json_object_iter_end(root);
    for (; !json_object_iter_equal(&it, &stop); jc_iter_next(&it)) {
        const char *key = json_object_iter_peek_name(&it);
        struct json_object *v = json_object_iter_peek_value(&it);
        sluice_name n = name_for(key, strlen(key));
        switch (json_object_get_type(v)) {
        case jc_type_string:
            set_str(b, r, n, json_object_get_string(v), (size_t)json_object_get_string_len(v));
            break;
        case jc_type_int:
            sl_set(b, r, n, sluice_int(json_object_get_int64(v)));
            break;
        case jc_type_double:
            sl_set(b, r, n, sluice_double(json_object_get_double(v)));
            break;
        case jc_type_boolean:
            sl_set(b, r, n, sluice_bool(json_object_get_boolean(v)));
            break;
        case jc_type_null:
            sl_set(b, r, n, sluice_null());
            break;
        case jc_type_object:
        case jc_type_array: {
            size_t len;
            const char *text = json_object_to_json_string_length(v, JC_TO_STRING_PLAIN, &len);
            set_json(b, r, n, text, len);
            break;
        }
        }
    }
    json_object_put(root);
    return 0;
}

static struct fjson_tokener *fj_tok;

static int dec_fastjson(sluice_batch *b, sluice_record *r, const line *l)
{
    fjson_tokener_reset(fj_tok);
    struct fjson_object *root = fjson_tokener_parse_ex(fj_tok, l->p, (int)l->len);
    if (!root || fjson_object_get_type(root) != fjson_type_object) {
        fjson_object_put(root);
        return -1;
    }
    struct fjson_object_iterator it = fjson_object_iter_begin(root);
    struct fjson_object_iterator stop = fjson_object_iter_end(root);
    for (; !fjson_object_iter_equal(&it, &stop); fjson_object_iter_next(&it)) {
        const char *key = fjson_object_iter_peek_name(&it);
        struct fjson_object *v = fjson_object_iter_peek_value(&it);
        sluice_name n = name_for(key, strlen(key));
        switch (fjson_object_get_type(v)) {
        case fjson_type_string:
            set_str(b, r, n, fjson_object_get_string(v), (size_t)fjson_object_get_string_len(v));
            break;
        case fjson_type_int:
            sl_set(b, r, n, sluice_int(fjson_object_get_int64(v)));
            break;
        case fjson_type_double:
            sl_set(b, r, n, sluice_double(fjson_object_get_double(v)));
            break;
        case fjson_type_boolean:
            sl_set(b, r, n, sluice_bool(fjson_object_get_boolean(v)));
            break;
        case fjson_type_null:
            sl_set(b, r, n, sluice_null());
            break;
        case fjson_type_object:
        case fjson_type_array: {
            const char *text = fjson_object_to_json_string_ext(v, FJSON_TO_STRING_PLAIN);
            set_json(b, r, n, text, strlen(text));
            break;
        }
        }
    }
    fjson_object_put(root);
    return 0;
}

typedef struct contender {
    const char *name;
    int (*decode)(sluice_batch *b, sluice_record *r, const line *l);
} contender;

static const contender contenders[] = {
    {"sluice (core/json.c)", dec_sluice},
    {"yajl 2.1 (callbacks)", dec_yajl},
    {"jansson 2.14", dec_jansson},
    {"json-c 0.16", dec_jsonc},
    {"libfastjson 1.2304", dec_fastjson},
};
#define NCONTENDERS (sizeof contenders / sizeof contenders[0])

/* ---- Checking and timing ---------------------------------------------------- */

static bool same_value(sluice_batch *b, const sluice_value *a, const sluice_value *e)
{
    if (a->type != e->type)
        return false;
    switch (a->type) {
    case SLUICE_NULL:
        return true;
    case SLUICE_BOOL:
        return a->u.b == e->u.b;
    case SLUICE_INT:
        return a->u.i == e->u.i;
    case SLUICE_DOUBLE:
        return a->u.d == e->u.d;
    case SLUICE_STRING:
        return a->u.s.len == e->u.s.len && memcmp(a->u.s.ptr, e->u.s.ptr, a->u.s.len) == 0;
    case SLUICE_JSON: {
        /* Spacing may differ: compare what paths into it find. */
        const char *paths[] = {"ip", "ua"};
        for (size_t i = 0; i < 2; i++) {
            sluice_value x, y;
            if (!sl_json_path(b, a->u.s, paths[i], &x) || !sl_json_path(b, e->u.s, paths[i], &y) ||
                !same_value(b, &x, &y))
                return false;
        }
        return true;
    }
    }
    return false;
}

/* Every contender gives the same fields as sluice's decoder. */
static bool check(const line *lines, size_t n)
{
    bool good = true;
    for (size_t c = 1; c < NCONTENDERS; c++) {
        for (size_t i = 0; i < n && good; i++) {
            sluice_batch *b = sl_batch_new(2);
            sluice_record *want = sl_record_append(b), *got = sl_record_append(b);
            if (dec_sluice(b, want, &lines[i]) != 0 || contenders[c].decode(b, got, &lines[i]) != 0 ||
                want->nfields != got->nfields) {
                good = false;
            } else {
                for (uint32_t f = 0; f < want->nfields && good; f++) {
                    const sluice_value *v = sluice_get(got, want->fields[f].name);
                    good = v && same_value(b, &want->fields[f].value, v);
                }
            }
            if (!good)
                fprintf(stderr, "%s disagrees on line %zu: %.*s\n", contenders[c].name, i,
                        (int)lines[i].len, lines[i].p);
            sl_batch_unref(b);
        }
    }
    return good;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Decode all lines into batches of 4096, as a source stage would. */
static double run_once(const contender *c, const line *lines, size_t n)
{
    double t0 = now();
    sluice_batch *b = sl_batch_new(SL_DEFAULT_BATCH_SIZE);
    for (size_t i = 0; i < n; i++) {
        sluice_record *r = sl_record_append(b);
        if (!r) {
            sl_batch_unref(b);
            b = sl_batch_new(SL_DEFAULT_BATCH_SIZE);
            r = sl_record_append(b);
        }
        if (c->decode(b, r, &lines[i]) != 0) {
            fprintf(stderr, "%s failed on line %zu\n", c->name, i);
            exit(1);
        }
    }
    sl_batch_unref(b);
    return now() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    const char *only = argc > 3 ? argv[3] : "";
    if (n == 0 || runs <= 0 || runs > 99) {
        fprintf(stderr, "usage: %s [lines] [runs]\n", argv[0]);
        return 2;
    }
    size_t total;
    line *lines = make_lines(n, &total);
    sluice_dec = sl_json_decoder_new();
    yajl_g = yajl_gen_alloc(NULL);
    jc_tok = json_tokener_new();
    jc_iter_next = (void (*)(struct json_object_iterator *))dlvsym(RTLD_DEFAULT, "json_object_iter_next",
                                                                  "JSONC_0.14");
    if (!jc_iter_next) {
        fprintf(stderr, "json-c's json_object_iter_next@JSONC_0.14 not found\n");
        return 1;
    }
    fj_tok = fjson_tokener_new();

    if (!check(lines, n < 2000 ? n : 2000)) {
        fprintf(stderr, "contenders disagree: no timing\n");
        return 1;
    }
    printf("%zu lines, %.1f bytes/line on average, median of %d runs\n\n", n, (double)total / n, runs);
    printf("| decoder | ns/record | MB/s | vs sluice |\n");
    printf("| --- | ---: | ---: | ---: |\n");
    /* Runs are interleaved (each round times every decoder once) so a
     * burst of load on a shared machine hits all of them alike. */
    static double t[NCONTENDERS][99];
    for (size_t c = 0; c < NCONTENDERS; c++)
        run_once(&contenders[c], lines, n < 20000 ? n : 20000); /* warm up */
    for (int k = 0; k < runs; k++)
        for (size_t c = 0; c < NCONTENDERS; c++)
            if (strncmp(contenders[c].name, only, strlen(only)) == 0)
                t[c][k] = run_once(&contenders[c], lines, n);
    double base = 0;
    for (size_t c = 0; c < NCONTENDERS; c++) {
        if (strncmp(contenders[c].name, only, strlen(only)) != 0)
            continue;
        qsort(t[c], (size_t)runs, sizeof t[c][0], cmp_double);
        double med = t[c][runs / 2];
        if (base == 0)
            base = med;
        printf("| %s | %.0f | %.0f | %.2fx |\n", contenders[c].name, med * 1e9 / n,
               total / med / 1e6, med / base);
    }

    fjson_tokener_free(fj_tok);
    json_tokener_free(jc_tok);
    yajl_gen_free(yajl_g);
    sl_json_decoder_free(sluice_dec);
    for (size_t i = 0; i < n; i++)
        free(lines[i].p);
    free(lines);
    return 0;
}
