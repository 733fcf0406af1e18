/*
 * convert.h — records and values between sluice and Lua. See convert.c.
 *
 * Every function that takes a lua_State may raise a Lua error (bad value,
 * out of memory): call them only inside a protected call.
 */
#ifndef SLUICE_LUA_CONVERT_H
#define SLUICE_LUA_CONVERT_H

#include "sluice/plugin.h"

#include "lua_buf.h"

#include <lua.h>

/* `sluice.null`: a light userdata no other value equals. */
extern const char slua_null_sentinel;
#define SLUA_NULL ((void *)&slua_null_sentinel)

typedef struct slua_key_slot {
    const char *ptr; /* a Lua string's bytes, anchored in the names table */
    sluice_name name;
} slua_key_slot;

typedef struct slua_conv {
    const sluice_host *host;
    int names_ref;    /* registry: table sluice_name -> its Lua string */
    int array_mt_ref; /* registry: the metatable that marks JSON arrays */
    int record_mt_ref;  /* registry: metatable of the lazy record table */
    int stale_mt_ref;   /* ... and of one whose call has returned */
    int current_ref;    /* registry slot: the record table of the call */
    const sluice_record *lazy_rec; /* the record process() is looking at */
    const void *lazy_table;        /* its table (lua_topointer) */
    uint8_t *loaded;    /* per input field: read into the table, or written */
    size_t caploaded;
    /* Interned Lua strings (by address) -> sluice_name, so a field name
     * coming back from Lua costs a pointer hash, not a string hash. */
    slua_key_slot *keys;
    uint32_t keymask, nkeys;
    /* Per record being written back: where each input field sits. */
    uint32_t *stamp, *pos;
    size_t capnames;
    uint32_t cur_stamp;
    uint8_t *seen;        /* per input field: gone, same or changed */
    sluice_value *vals;   /* per input field: its new value when changed */
    size_t capseen;
    sluice_field *added; /* new fields, sorted before they are set */
    size_t capadded;
    const void *ancestors[64]; /* tables being encoded, to refuse cycles */
    sl_bytes json;             /* scratch for JSON text */
    bool naive; /* benchmark baseline: no name cache (see lua_operator.c) */
} slua_conv;

/* Set up (inside a protected call): the names table, the array metatable. */
void slua_conv_init(slua_conv *c, const sluice_host *host, lua_State *L);
void slua_conv_free(slua_conv *c);

static inline bool slua_is_null(lua_State *L, int idx)
{
    return lua_touserdata(L, idx) == SLUA_NULL && lua_islightuserdata(L, idx);
}

/* Push the array metatable (for sluice.array()). */
void slua_push_array_mt(slua_conv *c, lua_State *L);

/* Push a field's value: NULL -> sluice.null, JSON -> a table (arrays
 * marked with the array metatable). */
void slua_push_value(slua_conv *c, lua_State *L, const sluice_value *v);

/* Push JSON text decoded into Lua values; `what` names it in errors. */
void slua_push_json(slua_conv *c, lua_State *L, const char *text, size_t len, const char *what);

/* Push the table of record r, valid until slua_record_done(): lazy (fields
 * load on first read), or with every field when naive. r must stay valid
 * until then. */
void slua_push_record(slua_conv *c, lua_State *L, const sluice_record *r);
/* After the call (protected or not; allocates nothing): the record's table
 * now raises on use. */
void slua_record_done(slua_conv *c, lua_State *L);
/* A lazy record table at idx gets all its fields (emitting it as a new
 * record, storing it, nesting it in JSON); a stale one raises. Any other
 * table is left alone. */
void slua_table_complete(slua_conv *c, lua_State *L, int idx);

/* The value at idx as JSON text into out (appended). */
void slua_encode_json(slua_conv *c, lua_State *L, int idx, sl_bytes *out);

/* A new record in b whose fields are the table at idx (every key a field,
 * sorted by name for a stable output). */
sluice_record *slua_new_record(slua_conv *c, lua_State *L, int idx, sluice_batch *b);

/* The table at idx is what the script made of orig's table: a copy of orig
 * in b (host->record_copy, sharing orig's fields) with only the fields
 * whose value changed set, the ones the script removed unset and the new
 * ones added (sorted, after the others). Nothing reaches b unless the whole
 * record converts: a bad value raises before the record is appended. */
sluice_record *slua_updated_record(slua_conv *c, lua_State *L, int idx, sluice_batch *b,
                                   const sluice_batch *in, const sluice_record *orig);

#endif
