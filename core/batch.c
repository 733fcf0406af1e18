/*
 * batch.c — batches of records and the arena each one owns.
 *
 * Everything a batch holds (the record array, field arrays, strings) comes
 * from its arena: a chain of chunks, bump-allocated, freed at once. A batch
 * may keep other batches alive (record_copy passes records through an
 * operator without copying their fields), and is reference-counted for
 * fan-out. Nothing is freed per record or per field.
 */
#include "record.h"

#include <stdatomic.h>
#include <stdlib.h>

#define CHUNK_MIN (64 * 1024)

/* Bytes held by every live batch's arena, process-wide: what the runtime
 * weighs against memory_limit. Counted per chunk (64 KiB and up), so the
 * atomic is touched rarely. */
static _Atomic size_t live_bytes;

size_t sl_batch_live_bytes(void)
{
    return atomic_load_explicit(&live_bytes, memory_order_relaxed);
}

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    char data[];
} chunk;

struct sluice_batch_mem {
    _Atomic int refs;
    chunk *chunks;
    size_t bytes;
    size_t nkept, capkept;
    sluice_batch **kept;
};

static chunk *chunk_new(size_t want)
{
    size_t size = want < CHUNK_MIN ? CHUNK_MIN : want;
    chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    atomic_fetch_add_explicit(&live_bytes, sizeof *c + size, memory_order_relaxed);
    return c;
}

void *sl_alloc(sluice_batch *b, size_t size)
{
    struct sluice_batch_mem *m = b->mem;
    size = (size + 7) & ~(size_t)7;
    chunk *c = m->chunks;
    if (!c || c->size - c->used < size) {
        /* Grow geometrically so a large batch needs few chunks. */
        size_t want = size;
        if (c && c->size * 2 > want)
            want = c->size * 2;
        if (want > 4 * 1024 * 1024 && size <= 4 * 1024 * 1024)
            want = 4 * 1024 * 1024;
        chunk *n = chunk_new(want);
        if (!n)
            return NULL;
        n->next = c;
        m->chunks = n;
        m->bytes += n->size;
        c = n;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

sluice_batch *sl_batch_new(uint32_t capacity)
{
    if (capacity == 0)
        capacity = SL_DEFAULT_BATCH_SIZE;
    sluice_batch *b = calloc(1, sizeof *b);
    struct sluice_batch_mem *m = calloc(1, sizeof *m);
    if (!b || !m) {
        free(b);
        free(m);
        return NULL;
    }
    atomic_init(&m->refs, 1);
    b->mem = m;
    b->capacity = capacity;
    return b;
}

void sl_batch_ref(sluice_batch *b)
{
    atomic_fetch_add_explicit(&b->mem->refs, 1, memory_order_relaxed);
}

void sl_batch_unref(sluice_batch *b)
{
    if (!b)
        return;
    struct sluice_batch_mem *m = b->mem;
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < m->nkept; i++)
        sl_batch_unref(m->kept[i]);
    free(m->kept);
    for (chunk *c = m->chunks; c;) {
        chunk *next = c->next;
        atomic_fetch_sub_explicit(&live_bytes, sizeof *c + c->size, memory_order_relaxed);
        free(c);
        c = next;
    }
    free(m);
    free(b);
}

/* The record array is allocated at full capacity on first append: one
 * allocation per batch, and record pointers stay valid. Past
 * SLUICE_BATCH_MAX_BYTES of arena the batch says it is full by lowering
 * its capacity to its count: every producer checks count against capacity
 * before appending, so none needs to know about bytes. */
sluice_record *sl_record_append(sluice_batch *b)
{
    if (b->count >= b->capacity)
        return NULL;
    if (!b->records) {
        b->records = sl_alloc(b, (size_t)b->capacity * sizeof *b->records);
        if (!b->records)
            return NULL;
    }
    sluice_record *r = &b->records[b->count++];
    if (b->mem->bytes >= SLUICE_BATCH_MAX_BYTES)
        b->capacity = b->count;
    memset(r, 0, sizeof *r);
    r->time = SLUICE_TIME_NONE;
    return r;
}

void sl_batch_keep(sluice_batch *b, const sluice_batch *other)
{
    struct sluice_batch_mem *m = b->mem;
    if (other == b)
        return;
    /* Most operators keep the same input batch for every record they pass:
     * check the last one before growing the list. */
    if (m->nkept && m->kept[m->nkept - 1] == other)
        return;
    for (size_t i = 0; i < m->nkept; i++)
        if (m->kept[i] == other)
            return;
    if (m->nkept == m->capkept) {
        size_t n = m->capkept ? m->capkept * 2 : 4;
        sluice_batch **k = realloc(m->kept, n * sizeof *k);
        if (!k)
            abort();
        m->kept = k;
        m->capkept = n;
    }
    sl_batch_ref((sluice_batch *)other);
    m->kept[m->nkept++] = (sluice_batch *)other;
}

sluice_record *sl_record_copy(sluice_batch *b, const sluice_batch *src_batch,
                              const sluice_record *src)
{
    sluice_record *r = sl_record_append(b);
    if (!r)
        return NULL;
    *r = *src;
    /* The fields array is shared with src until someone sets a field:
     * capfields = 0 makes sl_set copy it first. */
    r->capfields = 0;
    if (src_batch)
        sl_batch_keep(b, src_batch);
    return r;
}

static sluice_value clone_value(sluice_batch *b, sluice_value v)
{
    if (v.type == SLUICE_STRING || v.type == SLUICE_JSON)
        v.u.s = sl_str(b, v.u.s.ptr, v.u.s.len);
    return v;
}

sluice_record *sl_record_clone(sluice_batch *b, const sluice_record *src)
{
    sluice_record *r = sl_record_append(b);
    if (!r)
        return NULL;
    r->time = src->time;
    r->ingest_ns = src->ingest_ns;
    r->partition = src->partition;
    r->key = sl_str(b, src->key.ptr, src->key.len);
    r->raw = sl_str(b, src->raw.ptr, src->raw.len);
    if (src->nfields) {
        r->fields = sl_alloc(b, src->nfields * sizeof *r->fields);
        if (!r->fields)
            return NULL;
        for (uint32_t i = 0; i < src->nfields; i++) {
            r->fields[i].name = src->fields[i].name;
            r->fields[i].value = clone_value(b, src->fields[i].value);
        }
        r->nfields = r->capfields = src->nfields;
    }
    return r;
}

sluice_str sl_str(sluice_batch *b, const char *p, size_t len)
{
    sluice_str s = {NULL, 0};
    if (!p)
        return s;
    char *d = sl_alloc(b, len + 1);
    if (!d)
        return s;
    memcpy(d, p, len);
    d[len] = '\0'; /* harmless, and handy for strtod and friends */
    s.ptr = d;
    s.len = len;
    return s;
}

static int own_fields(sluice_batch *b, sluice_record *r)
{
    if (r->capfields || !r->nfields)
        return SLUICE_OK;
    sluice_field *f = sl_alloc(b, r->nfields * sizeof *f);
    if (!f)
        return SLUICE_ERROR;
    memcpy(f, r->fields, r->nfields * sizeof *f);
    r->fields = f;
    r->capfields = r->nfields;
    return SLUICE_OK;
}

int sl_set(sluice_batch *b, sluice_record *r, sluice_name name, sluice_value v)
{
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (r->fields[i].name == name) {
            if (own_fields(b, r) != SLUICE_OK) /* shared array: copy first */
                return SLUICE_ERROR;
            r->fields[i].value = v;
            return SLUICE_OK;
        }
    }
    if (r->nfields >= r->capfields) { /* full, or shared with a copied record */
        uint32_t n = r->capfields ? r->capfields * 2 : (r->nfields < 8 ? 8 : r->nfields + 8);
        sluice_field *f = sl_alloc(b, n * sizeof *f);
        if (!f)
            return SLUICE_ERROR;
        if (r->nfields)
            memcpy(f, r->fields, r->nfields * sizeof *f);
        r->fields = f;
        r->capfields = n;
    }
    r->fields[r->nfields].name = name;
    r->fields[r->nfields].value = v;
    r->nfields++;
    return SLUICE_OK;
}

void sl_unset(sluice_batch *b, sluice_record *r, sluice_name name)
{
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (r->fields[i].name != name)
            continue;
        if (own_fields(b, r) != SLUICE_OK)
            return;
        memmove(&r->fields[i], &r->fields[i + 1], (r->nfields - i - 1) * sizeof *r->fields);
        r->nfields--;
        return;
    }
}

size_t sl_batch_bytes(const sluice_batch *b)
{
    return b->mem->bytes;
}
