/*
 * json.c — the JSON decoder and encoder of the hot path.
 *
 * Why hand-written: decoding is most pipelines' hot path, and every library
 * Debian offers (yajl, jansson, json-c, libfastjson) either builds a tree we
 * then walk and copy, or calls back per token with copied strings. Decoding
 * straight into the record's fields does one pass and one copy per string.
 * bench/json_decoders.c measures this against those libraries on access-log
 * lines; BENCHMARKS.md ("JSON decoder choice") has the figures.
 *
 * Decoding one line:
 *   - Only the top-level object is turned into fields. Members are parsed
 *     straight into a per-decoder scratch array (duplicate keys: the last
 *     one wins, found in O(1) through a per-name generation stamp). Strings
 *     and nested text stay pointers into the input until the line has
 *     parsed; then one arena allocation takes the exactly sized field array
 *     and all the record's strings (NUL-terminated, unescaped). A record
 *     that already has fields gets them through sl_set() instead.
 *   - Keys: lines of one stream mostly repeat the same keys in the same
 *     order, so each key is first compared, as raw bytes, with the key at
 *     the same place in the last decoded record (no scan, no hash). Other
 *     keys go through a small per-decoder cache (key bytes -> sluice_name),
 *     so sl_intern() and its mutex are met only for keys not seen lately.
 *   - Strings are scanned 16 bytes at a time (SSE2; 8 otherwise) for '"',
 *     '\\' and control characters; escapes (\uXXXX, surrogate pairs
 *     included, becomes UTF-8) are undone when copied into the arena.
 *   - Numbers: integers that fit are SLUICE_INT, larger ones SLUICE_DOUBLE;
 *     decimals use Clinger's exact fast path (mantissa < 2^53, |exp10| <= 22)
 *     and strtod_l() in the "C" locale otherwise, so results are always the
 *     correctly rounded double.
 *   - Nested objects and arrays are validated (depth limit SL_JSON_MAX_DEPTH,
 *     counting the top-level object) and kept as their JSON text.
 *   - Bytes >= 0x80 are not checked: invalid UTF-8 passes through as bytes.
 *
 * Errors name what was expected and the byte offset (from 0) in the input.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l, newlocale, uselocale */
#endif
#include "json.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define SL_JSON_MAX_DEPTH 64
#define NAME_CACHE_SLOTS 1024 /* power of two */
#define NAME_CACHE_PROBES 4
#define NAME_CACHE_KEYLEN 52  /* longer keys skip the cache */

typedef struct name_slot {
    uint32_t hash;
    uint16_t len;
    sluice_name name; /* 0: empty slot */
    char key[NAME_CACHE_KEYLEN];
} name_slot;

#define EXPECT_KEYS 64        /* keys remembered from the last record */
#define EXPECT_BYTES 2048     /* ... and their raw bytes, at most */

/* How a scratch value's bytes still have to reach the arena: strings and
 * nested text point into the input until commit_fields() copies all of a
 * record's strings with one allocation. */
enum { PENDING_NONE, PENDING_COPY, PENDING_UNESCAPE };

typedef struct expected_key {
    uint32_t off, len;    /* raw bytes (escapes as written) in expect_bytes */
    sluice_name name;
} expected_key;

typedef struct seen_key {
    const char *raw;      /* a key of this record, raw bytes in the input */
    uint32_t len;
    sluice_name name;
} seen_key;

struct sl_json_decoder {
    name_slot cache[NAME_CACHE_SLOTS];
    sluice_field *scratch; /* this record's fields, before they go to the arena */
    uint8_t *pending;      /* per scratch field: PENDING_* */
    uint32_t nscratch, capscratch;
    uint32_t *seen_gen;    /* per name id: gen of the record that last had it */
    uint32_t *seen_idx;    /* ... and its index in scratch */
    uint32_t seen_cap, gen;
    char *keybuf;          /* an unescaped key */
    size_t keycap;
    /* The keys of the last record, in order. Lines of one stream mostly
     * repeat them, so a key is first compared with the expected one. */
    expected_key expect[EXPECT_KEYS];
    uint32_t nexpect;
    char expect_bytes[EXPECT_BYTES];
    seen_key fresh[EXPECT_KEYS]; /* keys of this record past the expected run */
};

/* ---- Shared helpers ---------------------------------------------------- */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale_obj;

static void c_locale_init(void)
{
    c_locale_obj = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* Number text must not depend on the process locale (a decimal comma). */
static locale_t c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale_obj;
}

/* Where parsing stopped and why; every failure goes through fail(). */
typedef struct parser {
    const char *base, *end;
    char *err;
    size_t errlen;
} parser;

__attribute__((format(printf, 3, 4)))
static const char *fail(parser *ps, const char *at, const char *fmt, ...)
{
    if (!ps->err || !ps->errlen)
        return NULL;
    char what[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s at byte %zu", what, (size_t)(at - ps->base));
    return NULL;
}

static const char *describe(parser *ps, const char *at, const char *expected)
{
    if (at >= ps->end)
        return fail(ps, at, "%s, got end of input", expected);
    unsigned char c = (unsigned char)*at;
    if (c >= 0x20 && c < 0x7f)
        return fail(ps, at, "%s, got '%c'", expected, c);
    return fail(ps, at, "%s, got byte 0x%02x", expected, c);
}

static const char *skip_ws_run(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Most tokens follow each other directly: one compare rules those out,
 * and the caller's next test of *p reuses it. */
static inline const char *skip_ws(const char *p, const char *end)
{
    if (p < end && (unsigned char)*p > ' ')
        return p;
    return skip_ws_run(p, end);
}

/* ---- Strings ----------------------------------------------------------- */

/* Bytes that end a plain run inside a string: '"', '\\', and < 0x20. */
static inline bool string_special(unsigned char c)
{
    return c == '"' || c == '\\' || c < 0x20;
}

/* The first special byte at or after p (or end), eight bytes at a time. */
static inline const char *scan_plain(const char *p, const char *end)
{
#ifdef __SSE2__
    /* Sixteen at a time: '"', '\\', and bytes <= 0x1f (unsigned min). */
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i special = _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash));
        __m128i hit = _mm_or_si128(special, _mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#endif
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        uint64_t q = x ^ (ones * '"'), s = x ^ (ones * '\\');
        /* A byte is flagged when it is zero in q or s, or < 0x20 in x; the
         * high bit of x excludes bytes >= 0x80 from the "< 0x20" test. */
        uint64_t hit = ((q - ones) & ~q) | ((s - ones) & ~s) | ((x - ones * 0x20) & ~x);
        hit &= highs;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Borrows only flag bytes after a real hit: the lowest is exact. */
        if (hit)
            return p + (__builtin_ctzll(hit) >> 3);
#else
        if (hit)
            break;
#endif
        p += 8;
    }
    while (p < end && !string_special((unsigned char)*p))
        p++;
    return p;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static size_t put_utf8(char *d, uint32_t cp)
{
    if (cp < 0x80) {
        d[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        d[0] = (char)(0xc0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xe0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        d[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    d[0] = (char)(0xf0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    d[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One escape sequence at p (which points at the backslash). Writes its
 * bytes to dst when dst is not NULL (at most 4; never more than the escape
 * took in the input) and returns the byte after it, or NULL. */
static const char *unescape_one(parser *ps, const char *p, char *dst, size_t *dlen)
{
    if (p + 1 >= ps->end)
        return fail(ps, p, "unterminated string");
    char c = p[1], out;
    switch (c) {
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case '/': out = '/'; break;
    case 'b': out = '\b'; break;
    case 'f': out = '\f'; break;
    case 'n': out = '\n'; break;
    case 'r': out = '\r'; break;
    case 't': out = '\t'; break;
    case 'u': {
        int hi = ps->end - p >= 6 ? hex4(p + 2) : -1;
        if (hi < 0)
            return fail(ps, p, "invalid \\u escape");
        uint32_t cp = (uint32_t)hi;
        const char *next = p + 6;
        if (hi >= 0xdc00 && hi <= 0xdfff)
            return fail(ps, p, "unpaired surrogate \\u%04x", hi);
        if (hi >= 0xd800 && hi <= 0xdbff) {
            int lo = (ps->end - next >= 6 && next[0] == '\\' && next[1] == 'u') ? hex4(next + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return fail(ps, p, "unpaired surrogate \\u%04x", hi);
            cp = 0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
            next += 6;
        }
        if (dst)
            *dlen = put_utf8(dst, cp);
        return next;
    }
    default:
        if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            return fail(ps, p, "invalid escape '\\%c'", c);
        return fail(ps, p, "invalid escape");
    }
    if (dst) {
        *dst = out;
        *dlen = 1;
    }
    return p + 2;
}

/* Scan the string whose opening quote is at p. Returns the byte after the
 * closing quote; *has_escapes tells whether the content needs unescaping.
 * Validates escapes and rejects control characters. */
static const char *scan_string(parser *ps, const char *p, bool *has_escapes)
{
    const char *open = p++;
    *has_escapes = false;
    for (;;) {
        p = scan_plain(p, ps->end);
        if (p >= ps->end)
            return fail(ps, open, "unterminated string");
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            *has_escapes = true;
            p = unescape_one(ps, p, NULL, NULL);
            if (!p)
                return NULL;
            continue;
        }
        return fail(ps, p, "control character 0x%02x in string", c);
    }
}

/* Unescape the already validated content src[0..len) into dst (room for len
 * bytes: an escape never produces more bytes than it takes). */
static size_t unescape_into(parser *ps, const char *src, size_t len, char *dst)
{
    const char *p = src, *end = src + len;
    size_t n = 0;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        if (!bs)
            bs = end;
        memcpy(dst + n, p, (size_t)(bs - p));
        n += (size_t)(bs - p);
        if (bs == end)
            break;
        size_t k = 0;
        p = unescape_one(ps, bs, dst + n, &k);
        n += k;
    }
    return n;
}

/* ---- Numbers ----------------------------------------------------------- */

static const double exact_pow10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static double slow_strtod(const char *p, size_t len)
{
    char small[64];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf)
        return NAN;
    memcpy(buf, p, len);
    buf[len] = '\0';
    double d = strtod_l(buf, NULL, c_locale());
    if (buf != small)
        free(buf);
    return d;
}

/* A JSON number at p: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
 * Returns the byte after it, or NULL (no message) when the text is not a
 * number. The value: SLUICE_INT when integral and in int64 range, else
 * SLUICE_DOUBLE, correctly rounded. */
static const char *scan_number(const char *p, const char *end, sluice_value *out)
{
    const char *start = p;
    bool neg = false;
    if (p < end && *p == '-') {
        neg = true;
        p++;
    }
    if (p >= end || (unsigned)(*p - '0') > 9)
        return NULL;
    uint64_t mant = 0;
    bool mant_exact = true; /* mant holds every digit so far */
    int dropped = 0;        /* integer digits beyond what mant holds */
    const char *digits = p; /* mant < 10^(p - digits) while exact */
    if (*p == '0') {
        p++;
        digits = p;
    } else {
        /* Nineteen digits cannot overflow mant: no check on those. */
        const char *stop = end - p > 19 ? p + 19 : end;
        while (p < stop && (unsigned)(*p - '0') <= 9)
            mant = mant * 10 + (unsigned)(*p++ - '0');
        while (p < end && (unsigned)(*p - '0') <= 9) {
            unsigned dgt = (unsigned)(*p - '0');
            if (mant_exact && mant <= (UINT64_MAX - 9) / 10)
                mant = mant * 10 + dgt;
            else {
                mant_exact = false;
                dropped++;
            }
            p++;
        }
    }
    bool integral = true;
    int frac_digits = 0;
    if (p < end && *p == '.') {
        integral = false;
        p++;
        if (p >= end || (unsigned)(*p - '0') > 9)
            return NULL;
        if (mant_exact) {
            /* Up to nineteen digits in mant in all: no checks on those. */
            size_t held = (size_t)(p - 1 - digits);
            size_t room = held < 19 ? 19 - held : 0;
            const char *stop = (size_t)(end - p) > room ? p + room : end;
            const char *frac = p;
            while (p < stop && (unsigned)(*p - '0') <= 9)
                mant = mant * 10 + (unsigned)(*p++ - '0');
            frac_digits = (int)(p - frac);
        }
        while (p < end && (unsigned)(*p - '0') <= 9) {
            if (mant_exact && frac_digits < 400 && mant <= (UINT64_MAX - 9) / 10) {
                mant = mant * 10 + (unsigned)(*p - '0');
                frac_digits++;
            } else {
                mant_exact = false;
            }
            p++;
        }
    }
    int exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = false;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        if (p >= end || (unsigned)(*p - '0') > 9)
            return NULL;
        while (p < end && (unsigned)(*p - '0') <= 9) {
            if (exp10 < 100000) /* far beyond any double; strtod sorts it out */
                exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (eneg)
            exp10 = -exp10;
    }
    if (integral && mant_exact) {
        if (!neg && mant <= (uint64_t)INT64_MAX) {
            *out = sluice_int((int64_t)mant);
            return p;
        }
        if (neg && mant <= (uint64_t)INT64_MAX + 1) {
            *out = sluice_int(mant == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mant);
            return p;
        }
    }
    /* Clinger: both mant and 10^|e| are exact doubles, so one IEEE
     * multiplication or division rounds correctly. */
    int e = exp10 - frac_digits + dropped;
    if (mant_exact && dropped == 0 && mant <= (1ull << 53) && e >= -22 && e <= 22) {
        double d = (double)mant;
        d = e < 0 ? d / exact_pow10[-e] : d * exact_pow10[e];
        *out = sluice_double(neg ? -d : d);
        return p;
    }
    *out = sluice_double(slow_strtod(start, (size_t)(p - start)));
    return p;
}

bool sl_json_number(const char *p, size_t len, sluice_value *out)
{
    const char *end = p + len;
    return len && scan_number(p, end, out) == end;
}

/* ---- Validating skip of nested values ---------------------------------- */

static const char *skip_literal(parser *ps, const char *p, sluice_value *out)
{
    size_t room = (size_t)(ps->end - p);
    if (room >= 4 && memcmp(p, "true", 4) == 0) {
        if (out)
            *out = sluice_bool(true);
        return p + 4;
    }
    if (room >= 5 && memcmp(p, "false", 5) == 0) {
        if (out)
            *out = sluice_bool(false);
        return p + 5;
    }
    if (room >= 4 && memcmp(p, "null", 4) == 0) {
        if (out)
            *out = sluice_null();
        return p + 4;
    }
    return describe(ps, p, "expected a value");
}

static const char *skip_number(parser *ps, const char *p)
{
    sluice_value v;
    const char *next = scan_number(p, ps->end, &v);
    return next ? next : fail(ps, p, "invalid number");
}

/* Skip and validate the value at p (already past whitespace). depth is the
 * nesting of the container holding it; containers deeper than
 * SL_JSON_MAX_DEPTH are refused. Iterative: a bit per open container says
 * whether it is an array, which SL_JSON_MAX_DEPTH <= 64 makes fit. */
static const char *skip_value(parser *ps, const char *p, int depth)
{
    const char *end = ps->end;
    uint64_t is_array = 0;
    int open = 0; /* containers opened by this call */
    bool esc;

    for (;;) {
        /* A value. */
        if (p >= end)
            return describe(ps, p, "expected a value");
        switch (*p) {
        case '{':
        case '[':
            if (depth + open + 1 > SL_JSON_MAX_DEPTH)
                return fail(ps, p, "nesting deeper than %d", SL_JSON_MAX_DEPTH);
            if (*p == '[')
                is_array |= 1ull << open;
            else
                is_array &= ~(1ull << open);
            open++;
            p = skip_ws(p + 1, end);
            if (p < end && *p == (is_array >> (open - 1) & 1 ? ']' : '}')) {
                p++;
                open--;
                break;
            }
            if (!(is_array >> (open - 1) & 1)) {
                if (p >= end || *p != '"')
                    return describe(ps, p, "expected a string key");
                goto member;
            }
            continue;
        case '"':
            p = scan_string(ps, p, &esc);
            break;
        case 't':
        case 'f':
        case 'n':
            p = skip_literal(ps, p, NULL);
            break;
        default:
            if (*p == '-' || (unsigned)(*p - '0') <= 9)
                p = skip_number(ps, p);
            else
                p = describe(ps, p, "expected a value");
            break;
        }
        if (!p)
            return NULL;

        /* After a value: close containers, or go on to the next element. */
        for (;;) {
            if (open == 0)
                return p;
            bool arr = is_array >> (open - 1) & 1;
            p = skip_ws(p, end);
            if (p < end && *p == (arr ? ']' : '}')) {
                p++;
                open--;
                continue;
            }
            if (p >= end || *p != ',')
                return describe(ps, p, arr ? "expected ',' or ']'" : "expected ',' or '}'");
            p = skip_ws(p + 1, end);
            if (arr)
                break;
            if (p >= end || *p != '"')
                return describe(ps, p, "expected a string key");
            goto member;
        }
        continue;

    member:
        p = scan_string(ps, p, &esc);
        if (!p)
            return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
            return describe(ps, p, "expected ':'");
        p = skip_ws(p + 1, end);
    }
}

/* ---- The decoder ------------------------------------------------------- */

sl_json_decoder *sl_json_decoder_new(void)
{
    return calloc(1, sizeof(sl_json_decoder));
}

void sl_json_decoder_free(sl_json_decoder *d)
{
    if (!d)
        return;
    free(d->scratch);
    free(d->pending);
    free(d->seen_gen);
    free(d->seen_idx);
    free(d->keybuf);
    free(d);
}

static inline uint32_t hash_key(const char *p, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}

/* The interned name of key bytes, through the cache. 0 when the global
 * name table is full. */
static sluice_name cached_name(sl_json_decoder *d, const char *key, size_t len)
{
    if (len > NAME_CACHE_KEYLEN)
        return sl_intern(key, len);
    uint32_t h = hash_key(key, len);
    name_slot *empty = NULL;
    for (uint32_t i = 0; i < NAME_CACHE_PROBES; i++) {
        name_slot *s = &d->cache[(h + i) & (NAME_CACHE_SLOTS - 1)];
        if (!s->name) {
            if (!empty)
                empty = s;
            continue;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s->name;
    }
    sluice_name name = sl_intern(key, len);
    if (!name)
        return 0;
    /* A full neighbourhood: replace the home slot (the cache stays bounded
     * whatever keys the data carries). */
    name_slot *s = empty ? empty : &d->cache[h & (NAME_CACHE_SLOTS - 1)];
    s->hash = h;
    s->len = (uint16_t)len;
    s->name = name;
    memcpy(s->key, key, len);
    return name;
}

/* a[0..len) == b[0..len), for short keys: word compares, the last word
 * overlapping the previous one, never reading outside either range. */
static inline bool bytes_equal(const char *a, const char *b, size_t len)
{
    if (len >= 8) {
        uint64_t x, y;
        for (size_t i = 0; i + 8 < len; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return false;
        }
        memcpy(&x, a + len - 8, 8);
        memcpy(&y, b + len - 8, 8);
        return x == y;
    }
    if (len >= 4) {
        uint32_t x0, y0, x1, y1;
        memcpy(&x0, a, 4);
        memcpy(&y0, b, 4);
        memcpy(&x1, a + len - 4, 4);
        memcpy(&y1, b + len - 4, 4);
        return x0 == y0 && x1 == y1;
    }
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* The expected key (quote at p) is the same raw text followed by '"': the
 * remembered text is a whole valid string content, so the input's string
 * ends at that quote too and unescapes to the same key. Returns the byte
 * after the closing quote, or NULL when it is another key. */
static inline const char *match_expected(const sl_json_decoder *d, const expected_key *e,
                                         const char *p, const char *end)
{
    if ((size_t)(end - p) < (size_t)e->len + 2 || p[e->len + 1] != '"' ||
        !bytes_equal(p + 1, d->expect_bytes + e->off, e->len))
        return NULL;
    return p + e->len + 2;
}

/* After a record whose keys were not all the expected ones: expect its
 * keys next time (the first `matched` are already there). */
static void remember_keys(sl_json_decoder *d, uint32_t matched, uint32_t nfresh)
{
    uint32_t n = matched;
    uint32_t off = n ? d->expect[n - 1].off + d->expect[n - 1].len : 0;
    for (uint32_t i = 0; i < nfresh && n < EXPECT_KEYS; i++, n++) {
        const seen_key *k = &d->fresh[i];
        if (k->len > EXPECT_BYTES - off)
            break;
        memcpy(d->expect_bytes + off, k->raw, k->len);
        d->expect[n].off = off;
        d->expect[n].len = k->len;
        d->expect[n].name = k->name;
        off += k->len;
    }
    d->nexpect = n;
}

/* Room for one more scratch field and one more name id (cold). */
static __attribute__((noinline)) int grow_scratch(sl_json_decoder *d, sluice_name name)
{
    if (name >= d->seen_cap) {
        uint32_t n = d->seen_cap ? d->seen_cap : 256;
        while (n <= name)
            n *= 2;
        uint32_t *g = realloc(d->seen_gen, n * sizeof *g);
        if (!g)
            return -1;
        d->seen_gen = g;
        uint32_t *x = realloc(d->seen_idx, n * sizeof *x);
        if (!x)
            return -1;
        d->seen_idx = x;
        memset(g + d->seen_cap, 0, (n - d->seen_cap) * sizeof *g);
        d->seen_cap = n;
    }
    if (d->nscratch == d->capscratch) {
        uint32_t n = d->capscratch ? d->capscratch * 2 : 32;
        sluice_field *f = realloc(d->scratch, n * sizeof *f);
        if (!f)
            return -1;
        d->scratch = f;
        uint8_t *k = realloc(d->pending, n);
        if (!k)
            return -1;
        d->pending = k;
        d->capscratch = n;
    }
    return 0;
}

/* The scratch slot of a field: a new one, or the one this record already
 * has for name (last key wins, at the place of the first). -1 when out of
 * memory. The value is parsed straight into the slot. */
static inline int64_t slot_for(sl_json_decoder *d, sluice_name name)
{
    if (name < d->seen_cap && d->seen_gen[name] == d->gen)
        return d->seen_idx[name];
    if ((name >= d->seen_cap || d->nscratch == d->capscratch) && grow_scratch(d, name) != 0)
        return -1;
    uint32_t i = d->nscratch++;
    d->seen_gen[name] = d->gen;
    d->seen_idx[name] = i;
    d->scratch[i].name = name;
    return i;
}

/* A new generation per record makes every seen_gen stamp stale at once. */
static void start_record(sl_json_decoder *d)
{
    d->nscratch = 0;
    if (++d->gen == 0) {
        if (d->seen_gen)
            memset(d->seen_gen, 0, d->seen_cap * sizeof *d->seen_gen);
        d->gen = 1;
    }
}

/* Copy the record's strings into the arena (one allocation, shared with
 * the field array when the record has no fields yet), then its fields.
 * The field array is copied first and its string pointers fixed up in
 * place, so the copy never loads scratch bytes just stored (those loads
 * wait behind the stores to cold arena memory; the time mostly moved to
 * the stores themselves, which are the real cost here). */
static int commit_fields(parser *ps, sl_json_decoder *d, sluice_batch *b, sluice_record *r)
{
    uint32_t n = d->nscratch;
    if (n == 0)
        return 0;
    size_t text = 0;
    for (uint32_t i = 0; i < n; i++)
        if (d->pending[i] != PENDING_NONE)
            text += d->scratch[i].value.u.s.len + 1;
    size_t fbytes = r->nfields == 0 ? n * sizeof(sluice_field) : 0;
    char *mem = NULL;
    if (fbytes + text && !(mem = sl_alloc(b, fbytes + text)))
        return -1;
    sluice_field *f = d->scratch;
    if (fbytes) {
        f = (sluice_field *)(void *)mem;
        memcpy(f, d->scratch, fbytes);
    }
    char *s = mem ? mem + fbytes : NULL; /* no strings, no fields to place: mem is NULL */
    for (uint32_t i = 0; i < n; i++) {
        if (d->pending[i] == PENDING_NONE)
            continue;
        const sluice_str *src = &d->scratch[i].value.u.s;
        size_t len = src->len;
        if (d->pending[i] == PENDING_COPY)
            memcpy(s, src->ptr, len);
        else
            len = unescape_into(ps, src->ptr, len, s);
        s[len] = '\0';
        f[i].value.u.s.ptr = s;
        f[i].value.u.s.len = len;
        s += len + 1; /* unescaping only shortens: within the room counted */
    }
    if (fbytes) {
        r->fields = f;
        r->nfields = r->capfields = n;
        return 0;
    }
    for (uint32_t i = 0; i < n; i++)
        if (sl_set(b, r, f[i].name, f[i].value) != SLUICE_OK)
            return -1;
    return 0;
}

/* The key whose opening quote is at p: its bytes (unescaped into keybuf
 * when needed) in key and klen. */
static const char *parse_key(parser *ps, sl_json_decoder *d, const char *p,
                             const char **key, size_t *klen)
{
    bool esc;
    const char *next = scan_string(ps, p, &esc);
    if (!next)
        return NULL;
    const char *content = p + 1;
    size_t rawlen = (size_t)(next - 1 - content);
    if (!esc) {
        *key = content;
        *klen = rawlen;
        return next;
    }
    if (rawlen > d->keycap) {
        char *k = realloc(d->keybuf, rawlen);
        if (!k)
            return fail(ps, p, "out of memory");
        d->keybuf = k;
        d->keycap = rawlen;
    }
    *klen = unescape_into(ps, content, rawlen, d->keybuf);
    *key = d->keybuf;
    return next;
}

/* The name of the key whose quote is at p, into *name; returns the byte
 * after the key. The expected key is tried first; other keys go through
 * the name cache and are noted in fresh[] for remember_keys(). */
static inline const char *member_key(parser *ps, sl_json_decoder *d, const char *p,
                                     uint32_t index, uint32_t *matched, uint32_t *nfresh,
                                     sluice_name *name)
{
    if (index == *matched && index < d->nexpect) {
        const expected_key *e = &d->expect[index];
        const char *next = match_expected(d, e, p, ps->end);
        if (next) {
            *name = e->name;
            (*matched)++;
            return next;
        }
    }
    const char *key = NULL;
    size_t klen = 0;
    const char *next = parse_key(ps, d, p, &key, &klen);
    if (!next)
        return NULL;
    *name = cached_name(d, key, klen);
    if (!*name)
        return fail(ps, p, "too many distinct field names");
    if (*nfresh < EXPECT_KEYS) {
        seen_key *k = &d->fresh[(*nfresh)++];
        k->raw = p + 1;
        k->len = (uint32_t)(next - 1 - (p + 1));
        k->name = *name;
    }
    return next;
}

/* One member value at p (past whitespace) into v. Strings and nested text
 * stay in the input for now: *pending says how commit_fields() copies them. */
static inline __attribute__((always_inline)) const char *
member_value(parser *ps, const char *p, sluice_value *v, uint8_t *pending)
{
    const char *end = ps->end, *next;
    bool esc;
    if (p >= end)
        return describe(ps, p, "expected a value");
    switch (*p) {
    case '"':
        next = scan_string(ps, p, &esc);
        if (!next)
            return NULL;
        v->type = SLUICE_STRING;
        v->u.s.ptr = p + 1;
        v->u.s.len = (size_t)(next - 1 - (p + 1));
        *pending = esc ? PENDING_UNESCAPE : PENDING_COPY;
        return next;
    case '{':
    case '[':
        next = skip_value(ps, p, 1);
        if (!next)
            return NULL;
        v->type = SLUICE_JSON;
        v->u.s.ptr = p;
        v->u.s.len = (size_t)(next - p);
        *pending = PENDING_COPY;
        return next;
    case 't':
    case 'f':
    case 'n':
        *pending = PENDING_NONE;
        return skip_literal(ps, p, v);
    default:
        *pending = PENDING_NONE;
        if (*p == '-' || (unsigned)(*p - '0') <= 9) {
            next = scan_number(p, end, v);
            return next ? next : fail(ps, p, "invalid number");
        }
        return describe(ps, p, "expected a value");
    }
}

/* One value at p (past whitespace), strings into b's arena (for paths). */
static const char *parse_value(parser *ps, sluice_batch *b, const char *p, sluice_value *v)
{
    uint8_t pending = PENDING_NONE;
    const char *next = member_value(ps, p, v, &pending);
    if (!next || pending == PENDING_NONE)
        return next;
    if (pending == PENDING_COPY) {
        v->u.s = sl_str(b, v->u.s.ptr, v->u.s.len);
        return v->u.s.ptr ? next : fail(ps, p, "out of memory");
    }
    char *dst = sl_alloc(b, v->u.s.len + 1);
    if (!dst)
        return fail(ps, p, "out of memory");
    size_t n = unescape_into(ps, v->u.s.ptr, v->u.s.len, dst);
    dst[n] = '\0';
    v->u.s.ptr = dst;
    v->u.s.len = n;
    return next;
}

int sl_json_decode(sl_json_decoder *d, sluice_batch *b, sluice_record *r,
                   const char *data, size_t len, char *err, size_t errlen)
{
    parser ps = {data, data + len, err, errlen};
    const char *end = ps.end;
    const char *p = skip_ws(data, end);
    uint32_t index = 0, matched = 0, nfresh = 0;
    start_record(d);

    if (p >= end || *p != '{') {
        describe(&ps, p, "expected '{'");
        return -1;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;; index++) {
            if (p >= end || *p != '"') {
                describe(&ps, p, "expected a string key");
                return -1;
            }
            const char *key_at = p;
            sluice_name name;
            if (!(p = member_key(&ps, d, p, index, &matched, &nfresh, &name)))
                return -1;
            p = skip_ws(p, end);
            if (p >= end || *p != ':') {
                describe(&ps, p, "expected ':'");
                return -1;
            }
            p = skip_ws(p + 1, end);
            int64_t slot = slot_for(d, name);
            if (slot < 0) {
                fail(&ps, key_at, "out of memory");
                return -1;
            }
            if (!(p = member_value(&ps, p, &d->scratch[slot].value, &d->pending[slot])))
                return -1;
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                index++;
                break;
            }
            describe(&ps, p, "expected ',' or '}'");
            return -1;
        }
    }
    p = skip_ws(p, end);
    if (p < end) {
        fail(&ps, p, "trailing characters after the object");
        return -1;
    }
    if (commit_fields(&ps, d, b, r) != 0) {
        fail(&ps, data, "out of memory");
        return -1;
    }
    if (matched != index || matched != d->nexpect)
        remember_keys(d, matched, nfresh);
    return 0;
}

/* ---- Dotted paths into JSON text --------------------------------------- */

/* Does the key whose quote is at p equal seg? The text is already valid. */
static bool key_equals(parser *ps, const char *p, const char *keyend, const char *seg, size_t seglen)
{
    const char *content = p + 1;
    size_t rawlen = (size_t)(keyend - 1 - content);
    if (!memchr(content, '\\', rawlen))
        return rawlen == seglen && memcmp(content, seg, seglen) == 0;
    if (rawlen < seglen) /* unescaping only shortens */
        return false;
    char small[128];
    char *buf = rawlen <= sizeof small ? small : malloc(rawlen);
    if (!buf)
        return false;
    size_t n = unescape_into(ps, content, rawlen, buf);
    bool eq = n == seglen && memcmp(buf, seg, seglen) == 0;
    if (buf != small)
        free(buf);
    return eq;
}

/* The value for one path segment inside the container at p (member of an
 * object, last one when keys repeat; or element of an array when seg is an
 * index). NULL when absent. */
static const char *step(parser *ps, const char *p, const char *seg, size_t seglen)
{
    const char *end = ps->end, *found = NULL;
    bool esc;
    if (*p == '[') {
        size_t idx = 0;
        if (seglen == 0 || seglen > 9)
            return NULL;
        for (size_t i = 0; i < seglen; i++) {
            if ((unsigned)(seg[i] - '0') > 9)
                return NULL;
            idx = idx * 10 + (size_t)(seg[i] - '0');
        }
        p = skip_ws(p + 1, end);
        if (*p == ']')
            return NULL;
        for (size_t i = 0;; i++) {
            if (i == idx)
                return p;
            p = skip_ws(skip_value(ps, p, 0), end);
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1, end);
        }
    }
    if (*p != '{')
        return NULL;
    p = skip_ws(p + 1, end);
    if (*p == '}')
        return NULL;
    for (;;) {
        const char *keyend = scan_string(ps, p, &esc);
        bool match = key_equals(ps, p, keyend, seg, seglen);
        p = skip_ws(skip_ws(keyend, end) + 1, end); /* past ':' */
        if (match)
            found = p;
        p = skip_ws(skip_value(ps, p, 0), end);
        if (*p != ',')
            return found;
        p = skip_ws(p + 1, end);
    }
}

bool sl_json_path(sluice_batch *b, sluice_str json, const char *path, sluice_value *out)
{
    if (!json.ptr || !path)
        return false;
    char errbuf[96];
    parser ps = {json.ptr, json.ptr + json.len, errbuf, sizeof errbuf};
    const char *p = skip_ws(ps.base, ps.end);
    /* Validate everything once; the walk below can then trust the text. */
    const char *after = skip_value(&ps, p, 0);
    if (!after || skip_ws(after, ps.end) != ps.end)
        return false;

    /* An empty path means the whole value. */
    for (const char *seg = path; *path;) {
        const char *dot = strchr(seg, '.');
        size_t seglen = dot ? (size_t)(dot - seg) : strlen(seg);
        p = step(&ps, p, seg, seglen);
        if (!p)
            return false;
        if (!dot)
            break;
        seg = dot + 1;
    }

    if (*p == '{' || *p == '[') {
        const char *next = skip_value(&ps, p, 0);
        out->type = SLUICE_JSON;
        out->u.s = sl_str(b, p, (size_t)(next - p));
        return out->u.s.ptr != NULL;
    }
    return parse_value(&ps, b, p, out) != NULL;
}

/* ---- Buffers ----------------------------------------------------------- */

static int buf_reserve(sluice_buf *buf, size_t more)
{
    if (buf->cap - buf->len >= more)
        return SLUICE_OK;
    size_t need = buf->len + more;
    if (need < buf->len)
        return SLUICE_ERROR;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    char *d = realloc(buf->data, cap);
    if (!d)
        return SLUICE_ERROR;
    buf->data = d;
    buf->cap = cap;
    return SLUICE_OK;
}

int sl_buf_append(sluice_buf *buf, const char *p, size_t len)
{
    if (len == 0)
        return SLUICE_OK;
    if (buf_reserve(buf, len) != SLUICE_OK)
        return SLUICE_ERROR;
    memcpy(buf->data + buf->len, p, len);
    buf->len += len;
    return SLUICE_OK;
}

int sl_buf_putc(sluice_buf *buf, char c)
{
    if (buf->len == buf->cap && buf_reserve(buf, 1) != SLUICE_OK)
        return SLUICE_ERROR;
    buf->data[buf->len++] = c;
    return SLUICE_OK;
}

void sl_buf_free(sluice_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

/* ---- The encoder ------------------------------------------------------- */

int sl_json_encode_string(const char *p, size_t len, sluice_buf *out)
{
    static const char hexd[] = "0123456789abcdef";
    const char *end = p + len;
    if (buf_reserve(out, len + 2) != SLUICE_OK)
        return SLUICE_ERROR;
    out->data[out->len++] = '"';
    while (p < end) {
        const char *run = scan_plain(p, end);
        if (sl_buf_append(out, p, (size_t)(run - p)) != SLUICE_OK)
            return SLUICE_ERROR;
        if (run == end)
            break;
        unsigned char c = (unsigned char)*run;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\t': esc[1] = 't'; break;
        case '\r': esc[1] = 'r'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hexd[c >> 4];
            esc[5] = hexd[c & 15];
            n = 6;
        }
        if (sl_buf_append(out, esc, n) != SLUICE_OK)
            return SLUICE_ERROR;
        p = run + 1;
    }
    return sl_buf_putc(out, '"');
}

static int encode_int(int64_t i, sluice_buf *out)
{
    char tmp[24], *e = tmp + sizeof tmp, *s = e;
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    do {
        *--s = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0)
        *--s = '-';
    return sl_buf_append(out, s, (size_t)(e - s));
}

/* The shortest of %.15g/%.16g/%.17g that reads back as d, with ".0" added
 * when it would otherwise read back as an integer. In the "C" locale. */
static int encode_double(double d, sluice_buf *out)
{
    if (!isfinite(d))
        return sl_buf_append(out, "null", 4);
    char tmp[40];
    int n = 0;
    locale_t old = uselocale(c_locale());
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp - 2, "%.*g", prec, d);
        if (prec == 17 || strtod_l(tmp, NULL, c_locale()) == d)
            break;
    }
    uselocale(old);
    if (!strpbrk(tmp, ".eE")) {
        tmp[n++] = '.';
        tmp[n++] = '0';
    }
    return sl_buf_append(out, tmp, (size_t)n);
}

int sl_json_encode_value(const sluice_value *v, sluice_buf *out)
{
    switch (v->type) {
    case SLUICE_NULL:
        return sl_buf_append(out, "null", 4);
    case SLUICE_BOOL:
        return v->u.b ? sl_buf_append(out, "true", 4) : sl_buf_append(out, "false", 5);
    case SLUICE_INT:
        return encode_int(v->u.i, out);
    case SLUICE_DOUBLE:
        return encode_double(v->u.d, out);
    case SLUICE_STRING:
        return sl_json_encode_string(v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, out);
    case SLUICE_JSON:
        if (!v->u.s.ptr || !v->u.s.len)
            return sl_buf_append(out, "null", 4);
        return sl_buf_append(out, v->u.s.ptr, v->u.s.len);
    }
    return sl_buf_append(out, "null", 4);
}

int sl_json_encode(const sluice_record *r, sluice_buf *out)
{
    if (sl_buf_putc(out, '{') != SLUICE_OK)
        return SLUICE_ERROR;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const sluice_field *f = &r->fields[i];
        if (i && sl_buf_putc(out, ',') != SLUICE_OK)
            return SLUICE_ERROR;
        if (sl_json_encode_string(sl_name_of(f->name), sl_name_len(f->name), out) != SLUICE_OK ||
            sl_buf_putc(out, ':') != SLUICE_OK ||
            sl_json_encode_value(&f->value, out) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    return sl_buf_putc(out, '}');
}
