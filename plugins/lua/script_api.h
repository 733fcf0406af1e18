/*
 * script_api.h — the functions a Lua operator's script calls: emit,
 * sluice.*, log.*, print, timer.*. See script_api.c.
 */
#ifndef SLUICE_LUA_SCRIPT_API_H
#define SLUICE_LUA_SCRIPT_API_H

#include "lua_op.h"

/* Install the globals and the emit function (inside a protected call). */
void slua_api_open(slua_op *op, lua_State *L);

/* Emit the table at idx with event time `time` (SLUICE_TIME_NONE: none):
 * a copy of the input record with only what changed written, when the
 * table is the record process() was given; a new record otherwise. Raises
 * on a bad table. */
void slua_emit_table(slua_op *op, lua_State *L, int idx, int64_t time);

#endif
