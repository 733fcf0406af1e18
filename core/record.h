/*
 * record.h — records, batches, their arenas, and interned field names.
 *
 * A batch owns an arena: every record, field array and string of the batch
 * lives in a chain of chunks freed all at once when the last reference goes.
 * A batch can "keep" other batches (their memory stays alive while it lives),
 * which is how an operator passes records through without copying fields.
 * Batches are reference-counted because fan-out hands the same read-only
 * batch to several downstream stages.
 */
#ifndef SLUICE_RECORD_H
#define SLUICE_RECORD_H

#include "sluice/plugin.h"

#define SL_DEFAULT_BATCH_SIZE 4096u

/* Interned names. Thread-safe. Ids start at 1. The table is sized once, so
 * sl_name_of() needs no lock. */
sluice_name sl_intern(const char *name, size_t len);
const char *sl_name_of(sluice_name name);
size_t sl_name_len(sluice_name name);

/* Batches. */
sluice_batch *sl_batch_new(uint32_t capacity);
void sl_batch_ref(sluice_batch *b);
void sl_batch_unref(sluice_batch *b); /* frees at zero; NULL is fine */
size_t sl_batch_live_bytes(void);      /* arena bytes of all live batches */
sluice_record *sl_record_append(sluice_batch *b);
sluice_record *sl_record_copy(sluice_batch *b, const sluice_batch *src_batch,
                              const sluice_record *src);
/* Deep copy: every string into b's arena (for records that outlive src). */
sluice_record *sl_record_clone(sluice_batch *b, const sluice_record *src);
void sl_batch_keep(sluice_batch *b, const sluice_batch *other);
void *sl_alloc(sluice_batch *b, size_t size);
sluice_str sl_str(sluice_batch *b, const char *p, size_t len);
int sl_set(sluice_batch *b, sluice_record *r, sluice_name name, sluice_value v);
void sl_unset(sluice_batch *b, sluice_record *r, sluice_name name);
size_t sl_batch_bytes(const sluice_batch *b); /* arena bytes, for memory accounting */

/* Convenience for code that works with NUL-terminated strings. */
static inline sluice_str sl_cstr(const char *s)
{
    sluice_str r = {s, s ? strlen(s) : 0};
    return r;
}

#endif
