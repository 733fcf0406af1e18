/*
 * lua_op.h — one `type: lua` operator instance, shared by the files of
 * plugins/lua (lua_operator.c drives it; script_api.c gives scripts their
 * functions). Not a public header.
 */
#ifndef SLUICE_LUA_OP_H
#define SLUICE_LUA_OP_H

#include "sluice/plugin.h"

#include "convert.h"
#include "keyed_state.h"
#include "lua_buf.h"
#include "lua_metrics.h"
#include "output.h"
#include "sandbox.h"
#include "timers.h"

#include <lua.h>

/* What the script is being called for; emit() and the sluice.* functions
 * behave according to it. */
typedef enum slua_phase {
    SLUA_LOADING,   /* the script's main chunk, init(config) */
    SLUA_PROCESS,
    SLUA_TIMER,
    SLUA_WATERMARK,
    SLUA_CLOSE,
    SLUA_IDLE       /* between calls: snapshots, restore */
} slua_phase;

typedef struct slua_op {
    const sluice_host *host;
    sluice_ctx *ctx;
    lua_State *L;
    slua_sandbox sandbox;
    slua_conv conv;
    slua_state state;
    slua_timers timers;
    slua_metrics metrics;
    slua_output out;
    const char *chunk_option; /* "script" or "code": where load errors point */

    /* The script's functions: registry references, LUA_NOREF when absent. */
    int fn_process, fn_on_watermark, fn_on_timer, fn_on_close;
    int fn_init;  /* only while loading */
    int emit_ref; /* the emit() handed to the callbacks */

    /* The call in progress. */
    slua_phase phase;
    const sluice_batch *in_batch; /* process: the input batch and record */
    const sluice_record *in_rec;
    const void *in_table;         /* process: the record's table (lua_topointer) */
    unsigned input;               /* process: which input */
    slua_timer *timer;            /* on_timer: the timer firing */
    int64_t call_time;            /* default event time of what the call emits */
    int64_t wm;                   /* input watermark; SLUICE_TIME_NONE before any */
    int64_t last_finite_wm;       /* the latest watermark before the end of input */
    bool timers_changed;
    const char *load_source;      /* while loading: the script's path, or the code */
    const char *config_json;      /* while loading: for init(config) */

    sl_reader restore_from;     /* restore(): the blob being read */
    sl_bytes snapshot;            /* snapshot(): the blob being written */
    char warning[512];            /* a Lua warning being assembled */
    size_t warning_len;
} slua_op;

static inline slua_op *slua_op_of(lua_State *L)
{
    return *(slua_op **)lua_getextraspace(L);
}

#endif
