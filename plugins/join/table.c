/*
 * table.c — load a CSV or JSON-lines file into memory and find its rows by
 * key, for the join operator.
 *
 * Loading goes through the host's codec, so the table's values get exactly
 * the types a `file` source would give them (CSV: unquoted numbers are
 * numbers, empty is null). The decoded records stay in the batches the
 * codec filled; the table keeps those batches until it is freed, and the
 * index points at their records (a batch's record array never moves).
 *
 * Keys compare by TEXT, not by type: each key value becomes its canonical
 * text — a string its bytes, an integer its decimal digits, a double that
 * holds an integer (|d| < 2^53) the same digits, other doubles %.17g,
 * booleans true/false, nested JSON its text — and the parts are joined
 * with a 4-byte length before each. So a CSV table's "1" or 1 matches a
 * JSON record's 1 or "1", and ("a,b","c") never collides with ("a","b,c").
 * A null or missing key part means "no key": such a table row is skipped
 * (counted) and such a record matches nothing, as NULL never equals NULL
 * in SQL.
 *
 * When two rows have the same key the LAST one wins (a later line of the
 * file corrects an earlier one); they are counted for a warning.
 *
 * The index is a chained hash table of row numbers (uint32 heads and
 * nexts, one malloc each), with the key bytes in one shared buffer.
 */
#include "table.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define NO_ROW UINT32_MAX

typedef struct table_entry {
    uint64_t hash;
    size_t key_off;
    uint32_t key_len;
    uint32_t next;
    const sluice_record *row;
} table_entry;

struct join_table {
    const sluice_host *host;
    sluice_batch **batches;
    size_t nbatches, cap_batches;

    table_entry *entries;
    uint32_t nentries;
    uint32_t *heads;
    size_t nbuckets; /* a power of two */
    char *keys;      /* all entries' key bytes */
    size_t keys_len, keys_cap;

    size_t duplicates, keyless;
    join_file_id file;
};

/* ---- the file's identity ---------------------------------------------------- */

static join_file_id file_id_of(const struct stat *st)
{
    join_file_id id = {
        .exists = true,
        .dev = st->st_dev,
        .ino = st->st_ino,
        .size = st->st_size,
        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
    };
    return id;
}

join_file_id join_file_stat(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return (join_file_id){.exists = false};
    return file_id_of(&st);
}

bool join_file_same(const join_file_id *a, const join_file_id *b)
{
    if (!a->exists || !b->exists)
        return a->exists == b->exists;
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns;
}

/* ---- keys ---------------------------------------------------------------------- */

static bool key_put(join_key *k, const void *p, size_t n)
{
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? k->cap : 64;
        while (cap < k->len + n)
            cap *= 2;
        char *q = realloc(k->data, cap);
        if (!q)
            return false;
        k->data = q;
        k->cap = cap;
    }
    if (n)
        memcpy(k->data + k->len, p, n);
    k->len += n;
    return true;
}

/* One part: a 4-byte length, then the value's canonical text. */
static bool key_part(join_key *k, const char *text, size_t n)
{
    uint32_t len = (uint32_t)n;
    return key_put(k, &len, 4) && key_put(k, text, n);
}

/* true: appended; false: out of memory. Null is handled by the caller. */
static bool key_value(join_key *k, const sluice_value *v)
{
    char num[40];
    int n;
    switch (v->type) {
    case SLUICE_NULL:
        return true;
    case SLUICE_BOOL:
        return v->u.b ? key_part(k, "true", 4) : key_part(k, "false", 5);
    case SLUICE_INT:
        n = snprintf(num, sizeof num, "%" PRId64, v->u.i);
        return key_part(k, num, (size_t)n);
    case SLUICE_DOUBLE:
        if (isfinite(v->u.d) && v->u.d == trunc(v->u.d) && fabs(v->u.d) < 9007199254740992.0)
            n = snprintf(num, sizeof num, "%" PRId64, (int64_t)v->u.d);
        else
            n = snprintf(num, sizeof num, "%.17g", v->u.d);
        return key_part(k, num, (size_t)n);
    case SLUICE_STRING:
    case SLUICE_JSON:
        return key_part(k, v->u.s.ptr, v->u.s.len);
    }
    return false;
}

int join_key_build(join_key *k, const sluice_record *r, const sluice_name *on, size_t non)
{
    k->len = 0;
    for (size_t i = 0; i < non; i++) {
        const sluice_value *v = sluice_get(r, on[i]);
        if (!v || v->type == SLUICE_NULL)
            return JOIN_KEY_NONE;
        if (!key_value(k, v))
            return JOIN_KEY_OOM;
    }
    return JOIN_KEY_OK;
}

void join_key_free(join_key *k)
{
    free(k->data);
    k->data = NULL;
    k->len = k->cap = 0;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- the index ----------------------------------------------------------------- */

static uint32_t find_entry(const join_table *t, const char *key, size_t len, uint64_t h)
{
    if (!t->nbuckets)
        return NO_ROW;
    for (uint32_t i = t->heads[h & (t->nbuckets - 1)]; i != NO_ROW; i = t->entries[i].next) {
        const table_entry *e = &t->entries[i];
        if (e->hash == h && e->key_len == len && memcmp(t->keys + e->key_off, key, len) == 0)
            return i;
    }
    return NO_ROW;
}

static bool index_row(join_table *t, const join_key *k, const sluice_record *row)
{
    uint64_t h = hash_bytes(k->data, k->len);
    uint32_t found = find_entry(t, k->data, k->len, h);
    if (found != NO_ROW) {
        t->entries[found].row = row; /* the last row wins */
        t->duplicates++;
        return true;
    }
    if (t->keys_len + k->len > t->keys_cap) {
        size_t cap = t->keys_cap ? t->keys_cap : 4096;
        while (cap < t->keys_len + k->len)
            cap *= 2;
        char *q = realloc(t->keys, cap);
        if (!q)
            return false;
        t->keys = q;
        t->keys_cap = cap;
    }
    memcpy(t->keys + t->keys_len, k->data, k->len);
    uint32_t i = t->nentries++;
    size_t b = h & (t->nbuckets - 1);
    t->entries[i] = (table_entry){
        .hash = h, .key_off = t->keys_len, .key_len = (uint32_t)k->len, .next = t->heads[b],
        .row = row};
    t->heads[b] = i;
    t->keys_len += k->len;
    return true;
}

static bool build_index(join_table *t, const join_table_spec *spec)
{
    size_t rows = 0;
    for (size_t i = 0; i < t->nbatches; i++)
        rows += t->batches[i]->count;
    if (rows >= NO_ROW)
        return false;
    t->nbuckets = 16;
    while (t->nbuckets < rows * 2)
        t->nbuckets *= 2;
    t->heads = malloc(t->nbuckets * sizeof *t->heads);
    t->entries = malloc((rows ? rows : 1) * sizeof *t->entries);
    if (!t->heads || !t->entries)
        return false;
    memset(t->heads, 0xff, t->nbuckets * sizeof *t->heads); /* all NO_ROW */
    join_key k = {0};
    bool ok = true;
    for (size_t i = 0; i < t->nbatches && ok; i++)
        for (uint32_t j = 0; j < t->batches[i]->count && ok; j++) {
            const sluice_record *row = &t->batches[i]->records[j];
            int rc = join_key_build(&k, row, spec->on, spec->non);
            if (rc == JOIN_KEY_NONE)
                t->keyless++;
            else
                ok = rc == JOIN_KEY_OK && index_row(t, &k, row);
        }
    join_key_free(&k);
    return ok;
}

/* ---- loading ------------------------------------------------------------------ */

/* A batch with room for one more record, kept by the table. */
static sluice_batch *batch_with_room(join_table *t, const join_table_spec *spec)
{
    if (t->nbatches) {
        sluice_batch *b = t->batches[t->nbatches - 1];
        if (b->count < b->capacity)
            return b;
    }
    if (t->nbatches == t->cap_batches) {
        size_t cap = t->cap_batches ? t->cap_batches * 2 : 8;
        sluice_batch **q = realloc(t->batches, cap * sizeof *q);
        if (!q)
            return NULL;
        t->batches = q;
        t->cap_batches = cap;
    }
    sluice_batch *b = spec->host->batch_new(spec->ctx);
    if (b)
        t->batches[t->nbatches++] = b;
    return b;
}

static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

/* Decode every line into t's batches. Returns false with err set. */
static bool read_rows(join_table *t, const join_table_spec *spec, FILE *f, char *err,
                      size_t errlen)
{
    sluice_codec *codec = spec->host->codec_new(spec->ctx, spec->format, err, errlen);
    if (!codec)
        return false;
    char *line = NULL;
    size_t cap = 0, lineno = 0, bad = 0, first_bad = 0;
    ssize_t n;
    bool ok = true, failed_hard = false;
    errno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        if (blank(line, len))
            continue;
        sluice_batch *b = batch_with_room(t, spec);
        if (!b) {
            snprintf(err, errlen, "out of memory reading table '%s'", spec->path);
            ok = false;
            break;
        }
        int rc = spec->host->decode(codec, b, line, len);
        if (rc == SLUICE_OK)
            continue;
        if (!bad++)
            first_bad = lineno;
        if (rc == SLUICE_ERROR) { /* on_error: fail: stop at the first one */
            failed_hard = true;
            break;
        }
    }
    if (ok && ferror(f)) {
        snprintf(err, errlen, "cannot read table '%s': %s", spec->path, strerror(errno));
        ok = false;
    }
    if (ok && bad) {
        snprintf(err, errlen,
                 "table '%s': %s%zu bad line%s, the first at line %zu (see the stage's "
                 "errors)",
                 spec->path, failed_hard ? "at least " : "", bad, bad == 1 ? "" : "s",
                 first_bad);
        ok = false;
    }
    free(line);
    spec->host->codec_free(codec);
    return ok;
}

join_table *join_table_load(const join_table_spec *spec, char *err, size_t errlen)
{
    FILE *f = fopen(spec->path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open table '%s': %s", spec->path, strerror(errno));
        return NULL;
    }
    join_table *t = calloc(1, sizeof *t);
    if (!t) {
        fclose(f);
        snprintf(err, errlen, "out of memory loading table '%s'", spec->path);
        return NULL;
    }
    t->host = spec->host;
    struct stat st;
    if (fstat(fileno(f), &st) == 0)
        t->file = file_id_of(&st);
    bool ok = read_rows(t, spec, f, err, errlen);
    fclose(f);
    if (ok && !build_index(t, spec)) {
        snprintf(err, errlen, "out of memory indexing table '%s'", spec->path);
        ok = false;
    }
    if (!ok) {
        join_table_free(t);
        return NULL;
    }
    return t;
}

void join_table_free(join_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbatches; i++)
        t->host->batch_free(t->batches[i]);
    free(t->batches);
    free(t->entries);
    free(t->heads);
    free(t->keys);
    free(t);
}

/* ---- lookups and figures ----------------------------------------------------- */

const sluice_record *join_table_find(const join_table *t, const join_key *k)
{
    uint32_t i = find_entry(t, k->data, k->len, hash_bytes(k->data, k->len));
    return i == NO_ROW ? NULL : t->entries[i].row;
}

size_t join_table_rows(const join_table *t)
{
    return t->nentries;
}

size_t join_table_duplicates(const join_table *t)
{
    return t->duplicates;
}

size_t join_table_keyless(const join_table *t)
{
    return t->keyless;
}

size_t join_table_bytes(const join_table *t)
{
    return (size_t)(t->file.exists ? t->file.size : 0) + t->keys_cap +
           t->nentries * sizeof *t->entries + t->nbuckets * sizeof *t->heads;
}

join_file_id join_table_file(const join_table *t)
{
    return t->file;
}

bool join_table_has_column(const join_table *t, sluice_name name)
{
    for (size_t i = 0; i < t->nbatches; i++)
        for (uint32_t j = 0; j < t->batches[i]->count; j++)
            if (sluice_get(&t->batches[i]->records[j], name))
                return true;
    return false;
}
