/*
 * fuzz_check.h — what the fuzz targets share: a loud failure, and record
 * comparison for round-trip checks.
 *
 * A target does more than feed bytes to a parser and wait for a sanitizer:
 * where a parser has a property worth holding (decode(encode(r)) == r, a
 * line split not depending on read boundaries), the target checks it and
 * calls fuzz_fail(), which aborts, so libFuzzer saves the input like any
 * crash.
 */
#ifndef SLUICE_FUZZ_CHECK_H
#define SLUICE_FUZZ_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

__attribute__((format(printf, 1, 2), noreturn))
static void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz check failed: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* A copy of p[0..len) in a buffer of exactly len bytes (one more, a NUL,
 * when nul is set), so AddressSanitizer sees any read past the end. */
static inline char *fuzz_exact_copy(const void *p, size_t len, int nul)
{
    size_t size = len + (nul ? 1 : 0);
    char *c = malloc(size ? size : 1); /* malloc(0) may return NULL */
    if (!c)
        abort();
    if (len)
        memcpy(c, p, len);
    if (nul)
        c[len] = '\0';
    return c;
}

/* Touch every byte of a string value, so a dangling pointer is caught
 * here rather than never. */
static inline unsigned fuzz_touch(const char *p, size_t len)
{
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)p[i];
    return sum;
}

/* Values equal as a round trip must keep them: same type, strings byte for
 * byte, doubles bit for bit (so -0.0 and 0.0 differ). A non-finite double
 * is written as null/empty by the encoders, so with `nonfinite_is_null`
 * it matches a NULL on the other side. */
static inline int fuzz_value_equal(const sluice_value *a, const sluice_value *b,
                                   int nonfinite_is_null)
{
    if (nonfinite_is_null && a->type == SLUICE_DOUBLE && !isfinite(a->u.d))
        return b->type == SLUICE_NULL;
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SLUICE_NULL:
        return 1;
    case SLUICE_BOOL:
        return a->u.b == b->u.b;
    case SLUICE_INT:
        return a->u.i == b->u.i;
    case SLUICE_DOUBLE:
        return memcmp(&a->u.d, &b->u.d, sizeof a->u.d) == 0;
    case SLUICE_STRING:
    case SLUICE_JSON:
        return a->u.s.len == b->u.s.len &&
               (a->u.s.len == 0 || memcmp(a->u.s.ptr, b->u.s.ptr, a->u.s.len) == 0);
    }
    return 0;
}

static inline const char *fuzz_type_name(sluice_type t)
{
    static const char *const names[] = {"null", "bool", "int", "double", "string", "json"};
    return (unsigned)t < 6 ? names[t] : "?";
}

/* Same field names in the same order, with equal values; fails loudly
 * naming the first difference. */
static inline void fuzz_records_equal(const sluice_record *a, const sluice_record *b,
                                      int nonfinite_is_null, const char *what)
{
    if (a->nfields != b->nfields)
        fuzz_fail("%s: %u fields became %u", what, a->nfields, b->nfields);
    for (uint32_t i = 0; i < a->nfields; i++) {
        const sluice_field *x = &a->fields[i], *y = &b->fields[i];
        if (x->name != y->name)
            fuzz_fail("%s: field %u is '%s', came back as '%s'", what, i, sl_name_of(x->name),
                      sl_name_of(y->name));
        if (!fuzz_value_equal(&x->value, &y->value, nonfinite_is_null))
            fuzz_fail("%s: field '%s' (%s) came back different (%s)", what,
                      sl_name_of(x->name), fuzz_type_name(x->value.type),
                      fuzz_type_name(y->value.type));
    }
}

/* Every field name once, every value of a known type with readable bytes. */
static inline void fuzz_record_sane(const sluice_record *r, const char *what)
{
    for (uint32_t i = 0; i < r->nfields; i++) {
        const sluice_field *f = &r->fields[i];
        if (f->name == 0)
            fuzz_fail("%s: field %u has no name", what, i);
        for (uint32_t j = 0; j < i; j++)
            if (r->fields[j].name == f->name)
                fuzz_fail("%s: field '%s' twice", what, sl_name_of(f->name));
        if ((unsigned)f->value.type > SLUICE_JSON)
            fuzz_fail("%s: field '%s' has type %d", what, sl_name_of(f->name),
                      (int)f->value.type);
        if (f->value.type == SLUICE_STRING || f->value.type == SLUICE_JSON)
            (void)fuzz_touch(f->value.u.s.ptr, f->value.u.s.len);
    }
}

/* Calls fn(line, len, arg) for every '\n'-separated piece of data (the
 * last may be empty), each in an exactly sized copy. Stops after max. */
static inline void fuzz_each_line(const uint8_t *data, size_t size, size_t max,
                                  void (*fn)(const char *line, size_t len, void *arg), void *arg)
{
    size_t start = 0, n = 0;
    while (start <= size && n < max) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t end = nl ? (size_t)(nl - data) : size;
        char *copy = fuzz_exact_copy(data + start, end - start, 0);
        fn(copy, end - start, arg);
        free(copy);
        n++;
        if (!nl)
            break;
        start = end + 1;
    }
}

#endif
