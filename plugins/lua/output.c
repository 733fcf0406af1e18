/*
 * output.c — output batches with all-or-nothing script calls.
 *
 * A script may emit several records for one input record and then fail:
 * none of them may reach downstream, or a retry of the input (after the
 * error is fixed) would duplicate them. Records are written into the
 * batches at emit() time, so a table changed after emit() does not change
 * what was emitted, but a batch is handed to the core only when the call
 * that filled it has returned successfully:
 *   - begin() remembers the current batch and its count;
 *   - room() moves a full batch to `full` (still ours) and starts another;
 *   - commit() emits `full` (every record in them is committed: the call
 *     began in the first, whose earlier records were committed before);
 *   - rollback() cuts the first batch back to the remembered count and
 *     frees the batches the call started.
 * The arena bytes of rolled-back records stay in the batch until it is
 * freed: a failed call is rare, and arenas only grow.
 */
#include "output.h"

#include <stdio.h>
#include <stdlib.h>

void slua_out_begin(slua_output *o)
{
    o->mark_batch = o->cur;
    o->mark_count = o->cur ? o->cur->count : 0;
}

sluice_batch *slua_out_room(slua_output *o)
{
    if (o->cur && o->cur->count < o->cur->capacity)
        return o->cur;
    if (o->cur) {
        if (o->nfull == o->capfull) {
            size_t cap = o->capfull ? o->capfull * 2 : 4;
            sluice_batch **f = realloc(o->full, cap * sizeof *f);
            if (!f)
                return NULL;
            o->full = f;
            o->capfull = cap;
        }
        o->full[o->nfull++] = o->cur;
        o->cur = NULL;
    }
    o->cur = o->host->batch_new(o->ctx);
    return o->cur;
}

static int emit(slua_output *o, sluice_batch *b, char *err, size_t errlen)
{
    if (o->host->emit(o->ctx, b) != SLUICE_OK) {
        snprintf(err, errlen, "lua: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

int slua_out_commit(slua_output *o, char *err, size_t errlen)
{
    int rc = SLUICE_OK;
    for (size_t i = 0; i < o->nfull; i++) {
        if (rc == SLUICE_OK)
            rc = emit(o, o->full[i], err, errlen);
        else
            o->host->batch_free(o->full[i]);
    }
    o->nfull = 0;
    o->mark_batch = o->cur;
    o->mark_count = o->cur ? o->cur->count : 0;
    return rc;
}

void slua_out_rollback(slua_output *o)
{
    sluice_batch *keep = o->mark_batch;
    for (size_t i = 0; i < o->nfull; i++)
        if (o->full[i] != keep)
            o->host->batch_free(o->full[i]);
    if (o->cur && o->cur != keep)
        o->host->batch_free(o->cur);
    o->nfull = 0;
    o->cur = keep;
    if (keep)
        keep->count = o->mark_count;
}

int slua_out_flush(slua_output *o, char *err, size_t errlen)
{
    int rc = slua_out_commit(o, err, errlen);
    sluice_batch *b = o->cur;
    o->cur = NULL;
    o->mark_batch = NULL;
    o->mark_count = 0;
    if (!b)
        return rc;
    if (rc != SLUICE_OK || b->count == 0) {
        o->host->batch_free(b);
        return rc;
    }
    return emit(o, b, err, errlen);
}

void slua_out_free(slua_output *o)
{
    for (size_t i = 0; i < o->nfull; i++)
        o->host->batch_free(o->full[i]);
    if (o->cur)
        o->host->batch_free(o->cur);
    free(o->full);
    o->full = NULL;
    o->nfull = o->capfull = 0;
    o->cur = NULL;
}
