/*
 * fuzz_duration_size.c — libFuzzer target for the scalar conversions every
 * option goes through (core/yaml.c): sl_parse_duration, sl_parse_size,
 * sl_parse_int, sl_parse_double and sl_parse_bool.
 *
 * The input (up to its first NUL) is given to each. Beyond "no crash, no
 * undefined behaviour", duration, size and int are checked against small
 * reference parsers written from yaml.h's contract with 128-bit arithmetic,
 * so an overflow that wraps, a unit read wrongly or a value accepted with
 * trailing junk shows up as a difference. A double that parses must be
 * finite, and a value that converts must leave *out set while a refusal
 * must leave it untouched.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "yaml.h"

#define MAX_INPUT 4096
#define UNTOUCHED 0x5a5a5a5a5a5a5a5aLL

typedef __int128 i128;

static bool ref_digits(const char **s, i128 *out)
{
    const char *p = *s;
    i128 v = 0;
    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > INT64_MAX)
            v = (i128)INT64_MAX + 1; /* saturate: too big either way */
    }
    *s = p;
    *out = v;
    return true;
}

/* <digits> alone (ms), or one or more <digits><unit>, unit ms s m h d. */
static bool ref_duration(const char *s, long long *ms)
{
    i128 n, total = 0;
    const char *p = s;
    if (!ref_digits(&p, &n))
        return false;
    if (!*p) {
        if (n > INT64_MAX)
            return false;
        *ms = (long long)n;
        return true;
    }
    for (;;) { /* a unit after every number, then the next number */
        i128 unit;
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else if (*p == 's') {
            unit = 1000, p++;
        } else if (*p == 'm') {
            unit = 60000, p++;
        } else if (*p == 'h') {
            unit = 3600000, p++;
        } else if (*p == 'd') {
            unit = 86400000, p++;
        } else {
            return false;
        }
        if (n > INT64_MAX)
            return false;
        total += n * unit;
        if (total > INT64_MAX)
            return false;
        if (!*p)
            break;
        if (!ref_digits(&p, &n))
            return false;
    }
    *ms = (long long)total;
    return true;
}

/* <digits>[ ]<unit>, or bare digits; units case-insensitive. */
static bool ref_size(const char *s, long long *bytes)
{
    static const struct {
        const char *unit;
        long long mult;
    } units[] = {{"b", 1},           {"kb", 1000},          {"kib", 1024},
                 {"mb", 1000000},    {"mib", 1048576},      {"gb", 1000000000},
                 {"gib", 1073741824}, {"tb", 1000000000000}, {"tib", 1099511627776}};
    const char *p = s;
    i128 n;
    if (!ref_digits(&p, &n))
        return false;
    if (!*p) {
        if (n > INT64_MAX)
            return false;
        *bytes = (long long)n;
        return true;
    }
    if (*p == ' ')
        p++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(p, units[i].unit) == 0) {
            i128 v = n * units[i].mult;
            if (n > INT64_MAX || v > INT64_MAX)
                return false;
            *bytes = (long long)v;
            return true;
        }
    }
    return false;
}

/* [+-]<digits>, in range. */
static bool ref_int(const char *s, long long *out)
{
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    i128 v = 0;
    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > (i128)INT64_MAX + 1)
            v = (i128)INT64_MAX + 2;
    }
    if (*p)
        return false;
    if (neg)
        v = -v;
    if (v > INT64_MAX || v < INT64_MIN)
        return false;
    *out = (long long)v;
    return true;
}

static void compare(const char *what, const char *s, bool got, long long gv, bool want,
                    long long wv)
{
    if (got != want)
        fuzz_fail("%s('%s'): %s, reference %s", what, s, got ? "accepted" : "refused",
                  want ? "accepts" : "refuses");
    if (got && gv != wv)
        fuzz_fail("%s('%s') = %lld, reference %lld", what, s, gv, wv);
    if (!got && gv != UNTOUCHED)
        fuzz_fail("%s('%s') refused but changed *out", what, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *s = fuzz_exact_copy(data, size, 1); /* up to the first NUL */
    long long got, want;
    bool ok;

    got = UNTOUCHED;
    ok = sl_parse_duration(s, &got);
    compare("duration", s, ok, got, ref_duration(s, &want), want);

    got = UNTOUCHED;
    ok = sl_parse_size(s, &got);
    compare("size", s, ok, got, ref_size(s, &want), want);

    got = UNTOUCHED;
    ok = sl_parse_int(s, &got);
    compare("int", s, ok, got, ref_int(s, &want), want);

    double d = 0.0;
    if (sl_parse_double(s, &d) && !isfinite(d))
        fuzz_fail("double('%s') gave a non-finite value", s);

    bool b = false;
    (void)sl_parse_bool(s, &b);

    free(s);
    return 0;
}
