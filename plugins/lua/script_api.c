/*
 * script_api.c — what a script can call besides the standard library
 * (`state` is in keyed_state.c, `metrics` in lua_metrics.c).
 *
 *   emit(t [, time])   the emit passed to process/on_timer/on_watermark/
 *                      on_close: emit table t as a record, now (a table
 *                      changed after emit() does not change what was
 *                      emitted). Event time: `time` (ms) when given; else
 *                      the input record's (process), the timer's (on_timer),
 *                      the watermark (on_watermark; at the end of input the
 *                      last watermark before it) or, in on_close, the last
 *                      watermark (none when there was none).
 *                      In process(), the record keeps the input's key and
 *                      partition. Not available while the script loads.
 *   sluice.null        the JSON/record null (nil means "no such field")
 *   sluice.array([t])  mark t (or a new table) as a JSON array, so that an
 *                      empty one is written [] and not {}
 *   sluice.time()      event time (ms) of the record being processed, of the
 *                      timer firing, or of the watermark; nil when none
 *   sluice.watermark() the input watermark (ms), nil before the first;
 *                      math.maxinteger at the end of bounded input
 *   sluice.key()       the input record's key (e.g. Kafka's), or nil
 *   sluice.input()     in process(): which input (1-based, as listed in
 *                      `input`) the record came from
 *   sluice.stage       the stage's name
 *   log.debug/info/warn/error(fmt, ...)
 *                      string.format(fmt, ...) (or one value, tostring'd)
 *                      to sluice's log, prefixed with the stage name
 *   print(...)         log.info of the values separated by tabs
 *   timer.at(key, t)   call on_timer(key, t, emit) once the watermark
 *                      reaches t (ms); (key, t) is set at most once
 *   timer.cancel(key, t)  true when that timer was set (it no longer is)
 */
#include "script_api.h"

#include <lauxlib.h>
#include <lualib.h>

#include <math.h>
#include <stdio.h>

static const char *const phase_names[] = {
    [SLUA_LOADING] = "loading the script", [SLUA_PROCESS] = "process",
    [SLUA_TIMER] = "on_timer",             [SLUA_WATERMARK] = "on_watermark",
    [SLUA_CLOSE] = "on_close",             [SLUA_IDLE] = "no call",
};

/* An event time argument: an integer number of ms (a float only when it
 * holds an integer). */
static int64_t check_time(lua_State *L, int idx, const char *what)
{
    int isint = 0;
    lua_Integer t = lua_tointegerx(L, idx, &isint);
    if (!isint)
        luaL_error(L, "%s: the time must be an integer number of milliseconds, not %s",
                   what, lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx)
                                                         : luaL_typename(L, idx));
    if (t == (lua_Integer)SLUICE_TIME_NONE)
        luaL_error(L, "%s: time out of range", what);
    return (int64_t)t;
}

/* ---- emit ---------------------------------------------------------------------- */

void slua_emit_table(slua_op *op, lua_State *L, int idx, int64_t time)
{
    const sluice_host *h = op->host;
    idx = lua_absindex(L, idx);
    if (op->phase == SLUA_LOADING || op->phase == SLUA_IDLE)
        luaL_error(L, "emit() is only available in process, on_timer, on_watermark and "
                      "on_close (not while %s)",
                   phase_names[op->phase]);
    sluice_batch *b = slua_out_room(&op->out);
    if (!b)
        luaL_error(L, "out of memory");
    const sluice_record *in = op->phase == SLUA_PROCESS ? op->in_rec : NULL;
    sluice_record *r;
    if (in && !op->conv.naive && lua_topointer(L, idx) == op->in_table) {
        r = slua_updated_record(&op->conv, L, idx, b, op->in_batch, in);
    } else {
        r = slua_new_record(&op->conv, L, idx, b);
        if (in) {
            r->ingest_ns = in->ingest_ns;
            r->partition = in->partition;
            if (in->key.ptr)
                r->key = h->str(b, in->key.ptr, in->key.len);
        }
    }
    r->time = time;
}

static int api_emit(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t time = lua_isnoneornil(L, 2) ? op->call_time : check_time(L, 2, "emit");
    slua_emit_table(op, L, 1, time);
    return 0;
}

/* ---- sluice.* --------------------------------------------------------------------- */

static void push_time(lua_State *L, int64_t t)
{
    if (t == SLUICE_TIME_NONE)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)t);
}

static int api_time(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    push_time(L, op->phase == SLUA_LOADING || op->phase == SLUA_IDLE ? SLUICE_TIME_NONE
                                                                     : op->call_time);
    return 1;
}

static int api_watermark(lua_State *L)
{
    push_time(L, slua_op_of(L)->wm);
    return 1;
}

static int api_key(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    if (op->phase == SLUA_PROCESS && op->in_rec && op->in_rec->key.ptr)
        lua_pushlstring(L, op->in_rec->key.ptr, op->in_rec->key.len);
    else
        lua_pushnil(L);
    return 1;
}

static int api_input(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    if (op->phase == SLUA_PROCESS)
        lua_pushinteger(L, (lua_Integer)op->input + 1);
    else
        lua_pushnil(L);
    return 1;
}

static int api_array(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    slua_push_array_mt(&op->conv, L);
    lua_setmetatable(L, 1);
    return 1;
}

static void open_sluice(slua_op *op, lua_State *L)
{
    static const luaL_Reg api[] = {
        {"time", api_time},   {"watermark", api_watermark}, {"key", api_key},
        {"input", api_input}, {"array", api_array},         {NULL, NULL},
    };
    luaL_newlib(L, api);
    lua_pushlightuserdata(L, SLUA_NULL);
    lua_setfield(L, -2, "null");
    const char *stage = op->host->stage_name ? op->host->stage_name(op->ctx) : NULL;
    lua_pushstring(L, stage ? stage : "");
    lua_setfield(L, -2, "stage");
    lua_setglobal(L, "sluice");
}

/* ---- log and print ------------------------------------------------------------------ */

/* The message of log.*(fmt, ...): string.format (kept from before the
 * script could replace it) when there are arguments after fmt. */
static const char *log_message(lua_State *L)
{
    int n = lua_gettop(L);
    if (n == 0)
        return "";
    if (n == 1)
        return luaL_tolstring(L, 1, NULL);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, 1);
    return lua_tostring(L, -1);
}

static int log_at(lua_State *L, sluice_log_level level)
{
    slua_op *op = slua_op_of(L);
    const char *msg = log_message(L);
    op->host->log(op->ctx, level, "%s", msg ? msg : "");
    return 0;
}

static int log_debug(lua_State *L) { return log_at(L, SLUICE_LOG_DEBUG); }
static int log_info(lua_State *L) { return log_at(L, SLUICE_LOG_INFO); }
static int log_warn(lua_State *L) { return log_at(L, SLUICE_LOG_WARN); }
static int log_error(lua_State *L) { return log_at(L, SLUICE_LOG_ERROR); }

static int api_print(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    op->host->log(op->ctx, SLUICE_LOG_INFO, "%s", lua_tostring(L, -1));
    return 0;
}

static void open_log(lua_State *L)
{
    static const luaL_Reg api[] = {
        {"debug", log_debug}, {"info", log_info},   {"warn", log_warn},
        {"error", log_error}, {NULL, NULL},
    };
    lua_createtable(L, 0, 4);
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_getfield(L, -1, "format");
    lua_remove(L, -2);
    luaL_setfuncs(L, api, 1);
    lua_setglobal(L, "log");
    lua_register(L, "print", api_print);
}

/* ---- timer.* ------------------------------------------------------------------------ */

static int timer_at(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    slua_key_check(L, 1, "timer.at");
    int64_t t = check_time(L, 2, "timer.at");
    if (op->fn_on_timer == LUA_NOREF && op->phase != SLUA_LOADING)
        return luaL_error(L, "timer.at: the script defines no on_timer(key, time, emit)");
    sl_bytes *key = &op->conv.json;
    key->len = 0;
    slua_key_encode(L, 1, key);
    if (slua_timers_add(&op->timers, t, key->data, key->len) < 0)
        return luaL_error(L, "out of memory");
    op->timers_changed = true;
    return 0;
}

static int timer_cancel(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    slua_key_check(L, 1, "timer.cancel");
    int64_t t = check_time(L, 2, "timer.cancel");
    sl_bytes *key = &op->conv.json;
    key->len = 0;
    slua_key_encode(L, 1, key);
    bool was = slua_timers_cancel(&op->timers, t, key->data, key->len);
    op->timers_changed |= was;
    lua_pushboolean(L, was);
    return 1;
}

static void open_timer(lua_State *L)
{
    static const luaL_Reg api[] = {{"at", timer_at}, {"cancel", timer_cancel}, {NULL, NULL}};
    luaL_newlib(L, api);
    lua_setglobal(L, "timer");
}

void slua_api_open(slua_op *op, lua_State *L)
{
    open_sluice(op, L);
    open_log(L);
    open_timer(L);
    lua_pushcfunction(L, api_emit);
    op->emit_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}
