/*
 * bytes.h — a growable malloc()ed byte buffer and a bounds-checked reader,
 * for the built-in plugins that serialise state or build keys (window,
 * lua). Header only: plugins reach the core through the host table, never
 * by linking, and these are on hot paths (a group key per record).
 *
 * The buffer's memory is malloc()ed, so a finished snapshot can be handed
 * to the core as its blob. Functions return false only when out of memory.
 * Readers never trust their input (a snapshot may be damaged): a read past
 * the end marks the reader bad and yields nothing, so callers test once.
 */
#ifndef SLUICE_PLUGINS_BYTES_H
#define SLUICE_PLUGINS_BYTES_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct sl_bytes {
    unsigned char *data;
    size_t len, cap;
} sl_bytes;

static inline bool sl_bytes_reserve(sl_bytes *b, size_t more)
{
    if (b->cap - b->len >= more)
        return true;
    if (more > SIZE_MAX / 2 - b->len)
        return false;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < more)
        cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (!p)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

static inline bool sl_bytes_put(sl_bytes *b, const void *p, size_t n)
{
    if (!sl_bytes_reserve(b, n))
        return false;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}

static inline void sl_bytes_free(sl_bytes *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

typedef struct sl_reader {
    const unsigned char *p, *end;
    bool bad;
} sl_reader;

/* Borrow the next n bytes in place; NULL (and bad) when fewer are left. */
static inline const unsigned char *sl_reader_take(sl_reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += n;
    return at;
}

#endif
