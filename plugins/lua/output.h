/*
 * output.h — the Lua operator's output batches, with all-or-nothing calls.
 * See output.c.
 */
#ifndef SLUICE_LUA_OUTPUT_H
#define SLUICE_LUA_OUTPUT_H

#include "sluice/plugin.h"

typedef struct slua_output {
    const sluice_host *host;
    sluice_ctx *ctx;
    sluice_batch *cur;     /* being filled; not yet emitted */
    sluice_batch **full;   /* filled during the current call, waiting for its end */
    size_t nfull, capfull;
    sluice_batch *mark_batch; /* cur when the call began (NULL: none) */
    uint32_t mark_count;      /* its count then */
} slua_output;

/* A call into the script begins: what it emits can still be taken back. */
void slua_out_begin(slua_output *o);
/* The batch the next record goes into (with room for it); NULL when out of
 * memory. */
sluice_batch *slua_out_room(slua_output *o);
/* The call succeeded: hand the batches it filled to the core. */
int slua_out_commit(slua_output *o, char *err, size_t errlen);
/* The call failed: forget every record it emitted. */
void slua_out_rollback(slua_output *o);
/* Emit the current batch too (end of a process()/on_watermark()/flush()). */
int slua_out_flush(slua_output *o, char *err, size_t errlen);
void slua_out_free(slua_output *o);

#endif
