/*
 * lua_buf.h — the Lua operator's encodings over plugins/bytes.h.
 *
 * JSON text for nested fields, serialised state values and snapshot blobs
 * are all built in an sl_bytes (malloc()ed, not Lua memory, so a snapshot
 * can hand its data to the core as is). Unlike the window's host-order
 * encoding, integers here are little-endian and lengths LEB128, as keyed
 * state values may be restored on another machine. Functions return false
 * only when out of memory; callers inside Lua turn that into a Lua error.
 */
#ifndef SLUICE_LUA_BUF_H
#define SLUICE_LUA_BUF_H

#include "bytes.h"

static inline bool slua_buf_putc(sl_bytes *b, char c)
{
    if (b->len == b->cap && !sl_bytes_reserve(b, 1))
        return false;
    b->data[b->len++] = c;
    return true;
}

/* Little-endian fixed-width integers and a LEB128 length, for blobs that
 * must read back the same on any machine. */
static inline bool slua_buf_u64(sl_bytes *b, uint64_t v)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(v >> (8 * i));
    return sl_bytes_put(b, le, 8);
}

static inline bool slua_buf_varint(sl_bytes *b, uint64_t v)
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
    return sl_bytes_put(b, tmp, n);
}

/* Reading a blob back, LE as written. */
static inline uint8_t slua_read_u8(sl_reader *r)
{
    const unsigned char *p = sl_reader_take(r, 1);
    return p ? p[0] : 0;
}

static inline uint64_t slua_read_u64(sl_reader *r)
{
    const unsigned char *p = sl_reader_take(r, 8);
    uint64_t v = 0;
    for (int i = 0; p && i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline uint64_t slua_read_varint(sl_reader *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        const unsigned char *p = sl_reader_take(r, 1);
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
