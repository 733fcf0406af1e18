/*
 * buf.h — the canonical value encoding the window operator is built on,
 * over the byte buffer and reader of plugins/bytes.h.
 *
 * One encoding serves three purposes, so it is defined once here:
 *   - group keys: the group-by values of a record, concatenated, are the
 *     key of a hash table, compared with memcmp — no interning, no
 *     per-type comparison;
 *   - values an aggregate must keep (count_distinct, collect_*, first,
 *     last): stored as their encoding in memory the plugin owns, since a
 *     record's strings vanish when process() returns;
 *   - snapshots: the same bytes go into the blob.
 *
 * Encoding of one value: a type byte (sluice_type), then
 *   NULL: nothing; BOOL: 1 byte; INT: 8 bytes; DOUBLE: 8 bytes (the bits);
 *   STRING/JSON: a 4-byte length, then the bytes.
 * Integers are written in host byte order: a snapshot is restored by the
 * same build on the same machine, and the version byte of the blob guards
 * the rest. Type-tagged, so 1 and 1.0 and "1" are three different keys.
 *
 * Readers never trust their input: every read checks the bounds (bytes.h).
 */
#ifndef SLUICE_WINDOW_BUF_H
#define SLUICE_WINDOW_BUF_H

#include "sluice/plugin.h"

#include "bytes.h"

static inline bool wbuf_u8(sl_bytes *b, uint8_t v) { return sl_bytes_put(b, &v, 1); }
static inline bool wbuf_u32(sl_bytes *b, uint32_t v) { return sl_bytes_put(b, &v, 4); }
static inline bool wbuf_u64(sl_bytes *b, uint64_t v) { return sl_bytes_put(b, &v, 8); }
static inline bool wbuf_i64(sl_bytes *b, int64_t v) { return sl_bytes_put(b, &v, 8); }
static inline bool wbuf_f64(sl_bytes *b, double v) { return sl_bytes_put(b, &v, 8); }

/* Copy n bytes out; zeroes (and the reader bad) when short. */
static inline bool rbuf_get(sl_reader *r, void *out, size_t n)
{
    const unsigned char *p = sl_reader_take(r, n);
    if (p && n)
        memcpy(out, p, n);
    else if (n)
        memset(out, 0, n);
    return p != NULL;
}

static inline uint8_t rbuf_u8(sl_reader *r) { uint8_t v; rbuf_get(r, &v, 1); return v; }
static inline uint32_t rbuf_u32(sl_reader *r) { uint32_t v; rbuf_get(r, &v, 4); return v; }
static inline uint64_t rbuf_u64(sl_reader *r) { uint64_t v; rbuf_get(r, &v, 8); return v; }
static inline int64_t rbuf_i64(sl_reader *r) { int64_t v; rbuf_get(r, &v, 8); return v; }
static inline double rbuf_f64(sl_reader *r) { double v; rbuf_get(r, &v, 8); return v; }

/* Append v's canonical encoding; v NULL (field absent) encodes as null. */
static inline bool wval_encode(sl_bytes *b, const sluice_value *v)
{
    if (!v || v->type == SLUICE_NULL)
        return wbuf_u8(b, SLUICE_NULL);
    switch (v->type) {
    case SLUICE_BOOL:
        return wbuf_u8(b, SLUICE_BOOL) && wbuf_u8(b, v->u.b ? 1 : 0);
    case SLUICE_INT:
        return wbuf_u8(b, SLUICE_INT) && wbuf_i64(b, v->u.i);
    case SLUICE_DOUBLE:
        return wbuf_u8(b, SLUICE_DOUBLE) && wbuf_f64(b, v->u.d);
    case SLUICE_STRING:
    case SLUICE_JSON:
        if (v->u.s.len > UINT32_MAX)
            return false;
        return wbuf_u8(b, (uint8_t)v->type) && wbuf_u32(b, (uint32_t)v->u.s.len) &&
               sl_bytes_put(b, v->u.s.ptr, v->u.s.len);
    default:
        return wbuf_u8(b, SLUICE_NULL);
    }
}

/* Decode one value; strings point into the reader's bytes. */
static inline bool wval_decode(sl_reader *r, sluice_value *v)
{
    memset(v, 0, sizeof *v);
    uint8_t type = rbuf_u8(r);
    switch (type) {
    case SLUICE_NULL:
        v->type = SLUICE_NULL;
        break;
    case SLUICE_BOOL:
        v->type = SLUICE_BOOL;
        v->u.b = rbuf_u8(r) != 0;
        break;
    case SLUICE_INT:
        v->type = SLUICE_INT;
        v->u.i = rbuf_i64(r);
        break;
    case SLUICE_DOUBLE:
        v->type = SLUICE_DOUBLE;
        v->u.d = rbuf_f64(r);
        break;
    case SLUICE_STRING:
    case SLUICE_JSON: {
        uint32_t n = rbuf_u32(r);
        const unsigned char *p = sl_reader_take(r, n);
        v->type = (sluice_type)type;
        v->u.s.ptr = p ? (const char *)p : "";
        v->u.s.len = p ? n : 0;
        break;
    }
    default:
        r->bad = true;
    }
    return !r->bad;
}

/* 64-bit hash of a byte string (a wyhash-style multiply-mix over 8-byte
 * words): group keys are short, so this is a handful of multiplies. */
static inline uint64_t whash_mix(uint64_t a, uint64_t b)
{
    __uint128_t m = (__uint128_t)a * b;
    return (uint64_t)m ^ (uint64_t)(m >> 64);
}

static inline uint64_t whash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0xa0761d6478bd642full);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = whash_mix(h ^ w, 0xe7037ed1a0b428dbull);
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    if (len)
        memcpy(&w, p, len);
    return whash_mix(h ^ w ^ 0x8ebc6af09c88c6e3ull, 0x589965cc75374cc3ull);
}

#endif
