/*
 * keyed_state.h — the `state` API of Lua scripts and the binary form of
 * Lua values used for it, for timers' keys and for snapshots. See
 * keyed_state.c.
 *
 * Functions taking a lua_State may raise Lua errors: call them inside a
 * protected call.
 */
#ifndef SLUICE_LUA_KEYED_STATE_H
#define SLUICE_LUA_KEYED_STATE_H

#include "convert.h"
#include "lua_buf.h"

#include <lua.h>

typedef struct slua_state {
    slua_conv *conv;   /* for the array metatable */
    int store_ref;     /* registry: table key -> serialised value (a string) */
    uint64_t nkeys;
    uint64_t bytes;    /* keys and serialised values */
    bool changed;      /* since the last report to host->state_size */
} slua_state;

/* Make the store and the global `state` table (get, put, del, keys). */
void slua_state_open(slua_state *s, slua_conv *conv, lua_State *L);

/* A Lua value (nil, boolean, number, string, sluice.null, tables of
 * those) in binary form, appended to out; raises on anything else, on a
 * cycle or on nesting deeper than 64 tables. */
void slua_serialize(slua_conv *conv, lua_State *L, int idx, sl_bytes *out, const char *what);
/* Push the value read from r; raises on a damaged blob. */
void slua_deserialize(slua_conv *conv, lua_State *L, sl_reader *r);

/* Keys (state and timers): a string or a number; raises on anything else
 * (and on NaN). A float with an integer value is that integer, as in a
 * Lua table. */
void slua_key_check(lua_State *L, int idx, const char *what);
void slua_key_encode(lua_State *L, int idx, sl_bytes *out);
void slua_key_push(lua_State *L, sl_reader *r);

/* Snapshots: append every key and value / replace the store with what r
 * holds (raises on a damaged blob). */
void slua_state_save(slua_state *s, lua_State *L, sl_bytes *out);
void slua_state_load(slua_state *s, lua_State *L, sl_reader *r);

#endif
