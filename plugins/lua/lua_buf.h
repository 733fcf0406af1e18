/*
 * lua_buf.h — a growable byte buffer for the Lua operator's encoders.
 *
 * JSON text for nested fields, serialised state values and snapshot blobs
 * are all built in one of these. It is malloc()ed (not Lua memory), so a
 * snapshot can hand its data to the core as is. Functions return false
 * only when out of memory; callers inside Lua turn that into a Lua error.
 */
#ifndef SLUICE_LUA_BUF_H
#define SLUICE_LUA_BUF_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct slua_buf {
    char *data;
    size_t len, cap;
} slua_buf;

static inline bool slua_buf_reserve(slua_buf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return true;
    if (more > SIZE_MAX / 2 - b->len)
        return false;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < more)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return false;
    b->data = p;
    b->cap = cap;
    return true;
}

static inline bool slua_buf_put(slua_buf *b, const void *p, size_t len)
{
    if (!slua_buf_reserve(b, len))
        return false;
    if (len)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    return true;
}

static inline bool slua_buf_putc(slua_buf *b, char c)
{
    if (b->len == b->cap && !slua_buf_reserve(b, 1))
        return false;
    b->data[b->len++] = c;
    return true;
}

/* Little-endian fixed-width integers and a LEB128 length, for blobs that
 * must read back the same on any machine. */
static inline bool slua_buf_u64(slua_buf *b, uint64_t v)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    return slua_buf_put(b, le, 8);
}

static inline bool slua_buf_varint(slua_buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    return slua_buf_put(b, tmp, n);
}

static inline void slua_buf_free(slua_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Reading a blob back: every read checks the bounds; a short or damaged
 * blob sets `bad` and yields zeroes, so callers test once at the end. */
typedef struct slua_reader {
    const unsigned char *p, *end;
    bool bad;
} slua_reader;

static inline const unsigned char *slua_read_take(slua_reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *at = r->p;
    r->p += n;
    return at;
}

static inline uint8_t slua_read_u8(slua_reader *r)
{
    const unsigned char *p = slua_read_take(r, 1);
    return p ? p[0] : 0;
}

static inline uint64_t slua_read_u64(slua_reader *r)
{
    const unsigned char *p = slua_read_take(r, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t slua_read_varint(slua_reader *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        const unsigned char *p = slua_read_take(r, 1);
        if (!p)
            return 0;
        v |= (uint64_t)(p[0] & 0x7f) << shift;
        if (!(p[0] & 0x80))
            return v;
    }
    r->bad = true;
    return 0;
}

#endif
