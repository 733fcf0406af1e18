/*
 * lua_operator.c — the `lua` operator: transforms written in Lua 5.4, with
 * keyed state, event-time timers and metrics.
 *
 *     operators:
 *       rate:
 *         type: lua
 *         input: per_service
 *         script: etc/examples/scripts/error_rate.lua   # or code: | ...
 *         config: {threshold: 10}        # any YAML: init(config) gets it
 *         max_instructions: 10000000     # per call; 0: no budget
 *         memory_limit: 256MiB           # the Lua state's memory; 0: none
 *         unsafe: false                  # true: every library, no limits
 *         lua_path: [etc/examples/scripts/lib]   # require() looks here
 *
 * The script defines process(record, emit) and may define init(config),
 * on_timer(key, time, emit), on_watermark(wm, emit) and on_close(emit):
 *
 *     function process(r, emit)
 *       r.slow = r.response_time > 0.5
 *       return r                      -- the same as emit(r)
 *     end
 *
 * Lifecycle. create() makes one Lua state for the stage (a stage runs on
 * one thread, so the state is never shared), opens the sandbox
 * (sandbox.c), runs the script's main chunk, then init(config). A syntax
 * error, a missing file, an error in the main chunk or in init, or a
 * script without process() is a configuration error pointing at `script`
 * (or `code`, or `config` for init): `sluice validate` finds it, exit
 * status 2. restore() (before start) then replaces the state and timers
 * with the checkpoint's: whatever init() put there is overwritten.
 *
 * Calls. Every call into the script — process per record, on_timer per due
 * timer, on_watermark, on_close — is one lua_pcall of a small C function
 * that converts the input, calls the script and converts what it emits,
 * all under the call's instruction budget and memory limit. Its emits are
 * committed only if the whole call succeeds (output.c): a runtime error
 * sends the input record to the stage's `errors` output (reason
 * `lua_error`, the detail is Lua's message with script:line, and a short
 * traceback when the error comes from a nested function; errors outside
 * process have no record and name the callback) and the pipeline goes on.
 *
 * Event time. Records are tables of their fields only. sluice.time() gives
 * the event time of the call (script_api.c); emitted records get it unless
 * emit(t, time) says otherwise: the input's in process, the timer's in
 * on_timer, the watermark in on_watermark and the last watermark (before
 * the end of input) in on_close. Timers: on each new watermark every due
 * timer fires in time order, then on_watermark runs; at the end of bounded
 * input (watermark SLUICE_TIME_MAX) that fires every remaining timer, so
 * all have fired before on_close (called from flush()).
 *
 * Snapshots: "SLLU", version 1, then the keyed state (keyed_state.c) and
 * the timers (timers.c). The script itself is not in the snapshot: a
 * restart may run a newer script on the old state.
 *
 * SLUICE_LUA_NAIVE=1 in the environment turns the fast paths of convert.c
 * off (field names hashed each time, every emitted record built field by
 * field): the per-record baseline scripts/bench-lua compares against.
 */
#include "sluice/plugin.h"

#include "lua_op.h"
#include "script_api.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>

#define MSGH 1 /* main stack slot of the message handler; nothing else stays */
#define SNAPSHOT_MAGIC "SLLU"
#define SNAPSHOT_VERSION 1
#define TRACEBACK_FRAMES 6
#define CODE_CHUNKNAME "=[code]"

typedef struct lua_config {
    char *script;
    char *code;
    char *config;
    int64_t max_instructions;
    int64_t memory_limit;
    bool unsafe;
    sluice_list lua_path;
} lua_config;

static const sluice_option lua_options[] = {
    {.name = "script",
     .type = SLUICE_OPT_STRING,
     .offset = offsetof(lua_config, script),
     .help = "the Lua 5.4 script (a relative path is taken from the current directory); it "
             "defines process(record, emit) and may define init(config), "
             "on_timer(key, time, emit), on_watermark(wm, emit), on_close(emit)"},
    {.name = "code",
     .type = SLUICE_OPT_STRING,
     .offset = offsetof(lua_config, code),
     .help = "the script inline, instead of `script`"},
    {.name = "config",
     .type = SLUICE_OPT_JSON,
     .offset = offsetof(lua_config, config),
     .help = "any YAML value, given to init(config) as Lua values (integers stay integers, "
             "null is sluice.null); {} when absent"},
    {.name = "max_instructions",
     .type = SLUICE_OPT_INT,
     .default_value = "10000000",
     .offset = offsetof(lua_config, max_instructions),
     .help = "Lua VM instructions one call may run (the main chunk, init, process for one "
             "record, one timer, on_watermark, on_close): an endless loop becomes an error for "
             "that record; 0: no budget"},
    {.name = "memory_limit",
     .type = SLUICE_OPT_SIZE,
     .default_value = "256MiB",
     .offset = offsetof(lua_config, memory_limit),
     .help = "memory the script's Lua state (its state store included) may hold; a call that "
             "needs more fails; 0: no limit"},
    {.name = "unsafe",
     .type = SLUICE_OPT_BOOL,
     .default_value = "false",
     .offset = offsetof(lua_config, unsafe),
     .help = "lift the sandbox (io, os, debug, C modules) and the instruction and memory "
             "limits"},
    {.name = "lua_path",
     .type = SLUICE_OPT_LIST,
     .offset = offsetof(lua_config, lua_path),
     .help = "folders where require() finds pure-Lua modules (NAME.lua, NAME/init.lua) and "
             "dofile/loadfile may read"},
    {.name = NULL},
};

/* ---- Small helpers ---------------------------------------------------------------- */

static int oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "lua: out of memory");
    return SLUICE_ERROR;
}

static void report_state(slua_op *op)
{
    if (!op->state.changed && !op->timers_changed)
        return;
    op->state.changed = op->timers_changed = false;
    if (SLUICE_HOST_HAS(op->host, state_size))
        op->host->state_size(op->ctx, op->state.nkeys, op->state.bytes + op->timers.bytes);
}

/* Lua warnings (an error in a __gc, warn() from the script) go to the log;
 * a warning may come in pieces. */
static void on_warning(void *ud, const char *msg, int tocont)
{
    slua_op *op = ud;
    if (!op->warning_len && !tocont && msg[0] == '@')
        return; /* a control message: "@on", "@off" */
    size_t len = strlen(msg), room = sizeof op->warning - 1 - op->warning_len;
    if (len > room)
        len = room;
    memcpy(op->warning + op->warning_len, msg, len);
    op->warning_len += len;
    if (tocont)
        return;
    op->warning[op->warning_len] = '\0';
    op->host->log(op->ctx, SLUICE_LOG_WARN, "Lua warning: %s", op->warning);
    op->warning_len = 0;
}

/* Everything runs under lua_pcall, so this is a bug of ours: say what Lua
 * said before it aborts the process. */
static int on_panic(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    const char *msg = lua_tostring(L, -1);
    op->host->log(op->ctx, SLUICE_LOG_ERROR, "Lua panic (unprotected error): %s",
                  msg ? msg : "?");
    return 0;
}

/* ---- Protected calls ---------------------------------------------------------------- */

static int call_snapshot(lua_State *L);

/* The message of an error, and a short traceback when it happened below
 * the function the operator called: "f.lua:3: boom [traceback: f.lua:3 in
 * function 'helper' < f.lua:9 in function <f.lua:8>]". One line, so it
 * reads well in an `error` field. */
static int message_handler(lua_State *L)
{
    slua_sandbox_of(L)->enforce = false; /* a full state still gets its message */
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, msg);
    lua_Debug ar;
    int frames = 0;
    char text[TRACEBACK_FRAMES][160];
    for (int level = 1; frames < TRACEBACK_FRAMES && lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sln", &ar) || ar.currentline <= 0)
            continue; /* a C function */
        if (ar.name)
            snprintf(text[frames], sizeof text[0], "%s:%d in %s '%s'", ar.short_src,
                     ar.currentline, *ar.namewhat ? ar.namewhat : "function", ar.name);
        else if (*ar.what == 'm')
            snprintf(text[frames], sizeof text[0], "%s:%d in the main chunk", ar.short_src,
                     ar.currentline);
        else
            snprintf(text[frames], sizeof text[0], "%s:%d in function <%s:%d>", ar.short_src,
                     ar.currentline, ar.short_src, ar.linedefined);
        frames++;
    }
    if (frames > 1) {
        luaL_addstring(&b, " [traceback: ");
        for (int i = 0; i < frames; i++) {
            if (i)
                luaL_addstring(&b, " < ");
            luaL_addstring(&b, text[i]);
        }
        luaL_addchar(&b, ']');
    }
    luaL_pushresult(&b);
    return 1;
}

/* Run fn(L) protected, in `phase`, under the budget and (except for
 * snapshots, which only read) the memory limit. On failure the message is
 * in msg. Returns the lua_pcall status. */
static int run(slua_op *op, lua_CFunction fn, slua_phase phase, char *msg, size_t msglen)
{
    lua_State *L = op->L;
    op->phase = phase;
    lua_pushcfunction(L, fn);
    slua_sandbox_arm(&op->sandbox, L, fn != call_snapshot);
    int status = lua_pcall(L, 0, 0, MSGH);
    slua_sandbox_disarm(&op->sandbox);
    op->phase = SLUA_IDLE;
    if (status == LUA_ERRMEM && op->sandbox.memory_limit && !op->sandbox.unsafe) {
        snprintf(msg, msglen, "not enough memory (the Lua state holds %zu bytes; "
                              "memory_limit: %zu)",
                 op->sandbox.used, op->sandbox.memory_limit);
    } else if (status != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        snprintf(msg, msglen, "%s", m ? m : "unknown error");
    }
    lua_settop(L, MSGH);
    return status;
}

/* A table returned by a callback is emitted; nil is nothing; else an error. */
static void emit_result(slua_op *op, lua_State *L, const char *callback)
{
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE)
        slua_emit_table(op, L, -1, op->call_time);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s returned a %s: return a table (it is emitted) or nothing", callback,
                   luaL_typename(L, -1));
    lua_pop(L, 1);
}

static void push_function(lua_State *L, int ref)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

static void push_emit(slua_op *op, lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->emit_ref);
}

static int call_process(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    slua_push_record(&op->conv, L, op->in_rec);
    op->in_table = lua_topointer(L, -1);
    push_function(L, op->fn_process);
    lua_pushvalue(L, -2);
    push_emit(op, L);
    lua_call(L, 2, 1);
    emit_result(op, L, "process");
    return 0;
}

static int call_timer(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    push_function(L, op->fn_on_timer);
    sl_reader key = {op->timer->key, op->timer->key + op->timer->keylen, false};
    slua_key_push(L, &key);
    lua_pushinteger(L, (lua_Integer)op->timer->time);
    push_emit(op, L);
    lua_call(L, 3, 1);
    emit_result(op, L, "on_timer");
    return 0;
}

static int call_watermark(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    push_function(L, op->fn_on_watermark);
    lua_pushinteger(L, (lua_Integer)op->wm);
    push_emit(op, L);
    lua_call(L, 2, 1);
    emit_result(op, L, "on_watermark");
    return 0;
}

static int call_close(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    push_function(L, op->fn_on_close);
    push_emit(op, L);
    lua_call(L, 1, 1);
    emit_result(op, L, "on_close");
    return 0;
}

/* ---- Loading ------------------------------------------------------------------------- */

static int call_setup(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    slua_sandbox_open(L);
    slua_conv_init(&op->conv, op->host, L);
    slua_state_open(&op->state, &op->conv, L);
    slua_metrics_open(&op->metrics, op->host, op->ctx, L);
    slua_api_open(op, L);
    return 0;
}

/* Load the script (a file: errors name it; inline code: "[code]") and run
 * its main chunk. */
static int call_load(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    const char *src = op->load_source;
    int status = op->chunk_option[0] == 's'
                     ? luaL_loadfilex(L, src, "t")
                     : luaL_loadbufferx(L, src, strlen(src), CODE_CHUNKNAME, "t");
    if (status != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 0);
    return 0;
}

/* The script's callbacks: registry references, LUA_NOREF when absent. */
static int lookup(lua_State *L, const char *name)
{
    int t = lua_getglobal(L, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (t != LUA_TFUNCTION)
        luaL_error(L, "`%s` must be a function, not a %s", name, lua_typename(L, t));
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int call_lookup(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    op->fn_process = lookup(L, "process");
    op->fn_on_timer = lookup(L, "on_timer");
    op->fn_on_watermark = lookup(L, "on_watermark");
    op->fn_on_close = lookup(L, "on_close");
    op->fn_init = lookup(L, "init");
    return 0;
}

static int call_init(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    push_function(L, op->fn_init);
    if (op->config_json)
        slua_push_json(&op->conv, L, op->config_json, strlen(op->config_json), "config");
    else
        lua_newtable(L);
    lua_call(L, 1, 0);
    return 0;
}

/* ---- create / destroy ------------------------------------------------------------------ */

static void lua_destroy(void *self)
{
    slua_op *op = self;
    if (!op)
        return;
    if (op->L) {
        /* Finalizers run in lua_close: keep them under the budget. */
        slua_sandbox_arm(&op->sandbox, op->L, false);
        lua_close(op->L);
        slua_sandbox_disarm(&op->sandbox);
    }
    slua_out_free(&op->out);
    slua_timers_clear(&op->timers);
    slua_conv_free(&op->conv);
    slua_metrics_free(&op->metrics);
    slua_sandbox_free(&op->sandbox);
    sl_bytes_free(&op->snapshot);
    free(op);
}

static bool check_options(const sluice_host *h, sluice_ctx *ctx, const lua_config *cfg)
{
    bool ok = true;
    if (cfg->script && cfg->code) {
        h->config_error(ctx, "code", "give the script either as `script` (a file) or as "
                                     "`code` (inline), not both");
        ok = false;
    } else if (!cfg->script && !cfg->code) {
        h->config_error(ctx, "script", "a lua operator needs `script: FILE.lua` or inline "
                                       "`code: |`");
        ok = false;
    }
    if (cfg->max_instructions < 0) {
        h->config_error(ctx, "max_instructions", "must be 0 (no budget) or more");
        ok = false;
    }
    if (cfg->memory_limit < 0) {
        h->config_error(ctx, "memory_limit", "must be 0 (no limit) or more");
        ok = false;
    }
    return ok;
}

/* Set up the state and load the script; config errors reported. */
static bool load_script(slua_op *op, const lua_config *cfg)
{
    const sluice_host *h = op->host;
    char msg[2048];
    if (run(op, call_setup, SLUA_LOADING, msg, sizeof msg) != LUA_OK) {
        h->config_error(op->ctx, op->chunk_option, "cannot set up Lua: %s", msg);
        return false;
    }
    op->load_source = cfg->script ? cfg->script : cfg->code;
    int status = run(op, call_load, SLUA_LOADING, msg, sizeof msg);
    if (status != LUA_OK) {
        h->config_error(op->ctx, op->chunk_option, "%s", msg);
        return false;
    }
    status = run(op, call_lookup, SLUA_LOADING, msg, sizeof msg);
    if (status == LUA_OK && op->fn_process == LUA_NOREF)
        snprintf(msg, sizeof msg, "the script defines no process(record, emit) function");
    if (status != LUA_OK || op->fn_process == LUA_NOREF) {
        h->config_error(op->ctx, op->chunk_option, "%s", msg);
        return false;
    }
    if (op->fn_init != LUA_NOREF) {
        op->config_json = cfg->config;
        status = run(op, call_init, SLUA_LOADING, msg, sizeof msg);
        if (status != LUA_OK) {
            h->config_error(op->ctx, cfg->config ? "config" : op->chunk_option,
                            "init(config) failed: %s", msg);
            return false;
        }
    }
    if (op->timers.n && op->fn_on_timer == LUA_NOREF) {
        h->config_error(op->ctx, op->chunk_option,
                        "the script sets timers but defines no on_timer(key, time, emit)");
        return false;
    }
    return true;
}

static int lua_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                      void **self, char *err, size_t errlen)
{
    const lua_config *cfg = config;
    if (!check_options(host, ctx, cfg)) {
        snprintf(err, errlen, "lua: invalid configuration");
        return SLUICE_ERROR;
    }
    slua_op *op = calloc(1, sizeof *op);
    if (!op)
        return oom(err, errlen);
    op->host = host;
    op->ctx = ctx;
    op->out.host = host;
    op->out.ctx = ctx;
    op->chunk_option = cfg->script ? "script" : "code";
    op->fn_process = op->fn_on_timer = op->fn_on_watermark = op->fn_on_close = LUA_NOREF;
    op->emit_ref = op->fn_init = LUA_NOREF;
    op->wm = op->last_finite_wm = op->call_time = SLUICE_TIME_NONE;
    op->phase = SLUA_LOADING;
    const char *naive = getenv("SLUICE_LUA_NAIVE");
    op->conv.naive = naive && *naive && strcmp(naive, "0") != 0;
    op->sandbox.unsafe = cfg->unsafe;
    op->sandbox.max_instructions = cfg->max_instructions;
    op->sandbox.memory_limit = (size_t)cfg->memory_limit;

    char why[1024];
    if (!slua_sandbox_set_path(&op->sandbox, (const char *const *)cfg->lua_path.items,
                               cfg->lua_path.count, why, sizeof why)) {
        host->config_error(ctx, "lua_path", "%s", why);
        lua_destroy(op);
        snprintf(err, errlen, "lua: invalid configuration");
        return SLUICE_ERROR;
    }
    op->L = slua_sandbox_new_state(&op->sandbox);
    if (!op->L) {
        lua_destroy(op);
        return oom(err, errlen);
    }
    *(slua_op **)lua_getextraspace(op->L) = op;
    lua_setwarnf(op->L, on_warning, op);
    lua_atpanic(op->L, on_panic);
    lua_pushcfunction(op->L, message_handler); /* MSGH */
    if (!load_script(op, cfg)) {
        lua_destroy(op);
        snprintf(err, errlen, "lua: the script cannot be loaded");
        return SLUICE_ERROR;
    }
    report_state(op);
    *self = op;
    return SLUICE_OK;
}

/* ---- Records, timers, watermarks --------------------------------------------------------- */

static int reject(slua_op *op, const sluice_record *rec, const char *msg, char *err,
                  size_t errlen)
{
    if (op->host->reject(op->ctx, rec, (sluice_str){NULL, 0}, "lua_error", msg) ==
        SLUICE_ERROR) {
        snprintf(err, errlen, "lua: %s", msg);
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* One call whose emits are all-or-nothing; a failure is rejected with rec
 * (NULL outside process). SLUICE_ERROR: emitting failed, or on_error: fail. */
static int call_once(slua_op *op, lua_CFunction fn, slua_phase phase, const char *what,
                     const sluice_record *rec, char *err, size_t errlen)
{
    char msg[2048];
    slua_out_begin(&op->out);
    if (run(op, fn, phase, msg, sizeof msg) == LUA_OK)
        return slua_out_commit(&op->out, err, errlen);
    slua_out_rollback(&op->out);
    if (!what)
        return reject(op, rec, msg, err, errlen);
    char detail[2200];
    snprintf(detail, sizeof detail, "%s: %s", what, msg);
    return reject(op, rec, detail, err, errlen);
}

static int lua_process(void *self, const sluice_batch *in, unsigned input, char *err,
                       size_t errlen)
{
    slua_op *op = self;
    int rc = SLUICE_OK;
    op->in_batch = in;
    op->input = input;
    for (uint32_t i = 0; i < in->count && rc == SLUICE_OK; i++) {
        op->in_rec = &in->records[i];
        op->call_time = op->in_rec->time;
        rc = call_once(op, call_process, SLUA_PROCESS, NULL, op->in_rec, err, errlen);
        slua_record_done(&op->conv, op->L);
    }
    op->in_batch = NULL;
    op->in_rec = NULL;
    op->in_table = NULL;
    if (slua_out_flush(&op->out, err, errlen) != SLUICE_OK)
        rc = SLUICE_ERROR;
    report_state(op);
    return rc;
}

/* Fire every timer due at wm, in time order, including those the callbacks
 * set for times already due. A script that keeps setting due timers from
 * on_timer would never let this end: past a generous number of firings the
 * rest waits for the next watermark. */
static int fire_timers(slua_op *op, int64_t wm, char *err, size_t errlen)
{
    uint64_t fired = 0, limit = 4 * (uint64_t)op->timers.n + 100000, dropped = 0;
    const slua_timer *next;
    while ((next = slua_timers_peek(&op->timers)) && next->time <= wm) {
        if (fired++ == limit) {
            op->host->log(op->ctx, SLUICE_LOG_ERROR,
                          "on_timer keeps setting timers that are already due: %llu fired at "
                          "this watermark, the rest wait for the next one",
                          (unsigned long long)limit);
            break;
        }
        op->timer = slua_timers_pop(&op->timers);
        op->timers_changed = true;
        op->call_time = op->timer->time;
        int rc = SLUICE_OK;
        if (op->fn_on_timer == LUA_NOREF)
            dropped++; /* restored from a checkpoint of a script that had on_timer */
        else
            rc = call_once(op, call_timer, SLUA_TIMER, "on_timer", NULL, err, errlen);
        free(op->timer);
        op->timer = NULL;
        if (rc != SLUICE_OK)
            return rc;
    }
    if (dropped)
        op->host->log(op->ctx, SLUICE_LOG_WARN,
                      "%llu timer(s) came due but the script defines no on_timer(key, time, "
                      "emit): dropped",
                      (unsigned long long)dropped);
    return SLUICE_OK;
}

static int lua_on_watermark(void *self, int64_t wm, char *err, size_t errlen)
{
    slua_op *op = self;
    if (op->wm != SLUICE_TIME_NONE && wm <= op->wm)
        return SLUICE_OK;
    op->wm = wm;
    if (wm != SLUICE_TIME_MAX)
        op->last_finite_wm = wm;
    int rc = fire_timers(op, wm, err, errlen);
    if (rc == SLUICE_OK && op->fn_on_watermark != LUA_NOREF) {
        op->call_time = wm == SLUICE_TIME_MAX ? op->last_finite_wm : wm;
        rc = call_once(op, call_watermark, SLUA_WATERMARK, "on_watermark", NULL, err, errlen);
    }
    if (slua_out_flush(&op->out, err, errlen) != SLUICE_OK)
        rc = SLUICE_ERROR;
    report_state(op);
    return rc;
}

static int lua_flush(void *self, char *err, size_t errlen)
{
    slua_op *op = self;
    int rc = SLUICE_OK;
    if (op->fn_on_close != LUA_NOREF) {
        op->call_time = op->last_finite_wm;
        rc = call_once(op, call_close, SLUA_CLOSE, "on_close", NULL, err, errlen);
    }
    if (slua_out_flush(&op->out, err, errlen) != SLUICE_OK)
        rc = SLUICE_ERROR;
    report_state(op);
    return rc;
}

/* ---- Snapshots ------------------------------------------------------------------------------ */

static int call_snapshot(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    sl_bytes *b = &op->snapshot;
    b->len = 0;
    if (!sl_bytes_put(b, SNAPSHOT_MAGIC, 4) || !slua_buf_putc(b, SNAPSHOT_VERSION))
        return luaL_error(L, "out of memory");
    slua_state_save(&op->state, L, b);
    if (!slua_timers_save(&op->timers, b))
        return luaL_error(L, "out of memory");
    return 0;
}

static int lua_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                        size_t errlen)
{
    slua_op *op = self;
    (void)epoch;
    char msg[1024];
    if (run(op, call_snapshot, SLUA_IDLE, msg, sizeof msg) != LUA_OK) {
        snprintf(err, errlen, "lua: snapshot: %s", msg);
        return SLUICE_ERROR;
    }
    *blob = op->snapshot.data; /* malloc()ed: the core free()s it */
    *len = op->snapshot.len;
    op->snapshot = (sl_bytes){0};
    return SLUICE_OK;
}

static int call_restore(lua_State *L)
{
    slua_op *op = slua_op_of(L);
    sl_reader *r = &op->restore_from;
    const unsigned char *magic = sl_reader_take(r, 4);
    if (!magic || memcmp(magic, SNAPSHOT_MAGIC, 4) != 0)
        return luaL_error(L, "not a lua operator snapshot");
    uint8_t version = slua_read_u8(r);
    if (version != SNAPSHOT_VERSION)
        return luaL_error(L, "snapshot version %d, this sluice reads version %d", version,
                          SNAPSHOT_VERSION);
    slua_state_load(&op->state, L, r);
    if (!slua_timers_load(&op->timers, r) || r->p != r->end)
        return luaL_error(L, "damaged snapshot");
    for (size_t i = 0; i < op->timers.n; i++) { /* every key must read back */
        const slua_timer *t = op->timers.heap[i];
        sl_reader key = {t->key, t->key + t->keylen, false};
        slua_key_push(L, &key);
        if (key.p != key.end)
            return luaL_error(L, "damaged snapshot (a timer's key)");
        lua_pop(L, 1);
    }
    op->timers_changed = true;
    return 0;
}

static int lua_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    slua_op *op = self;
    char msg[1024];
    op->restore_from = (sl_reader){blob, (const unsigned char *)blob + len, false};
    if (run(op, call_restore, SLUA_IDLE, msg, sizeof msg) != LUA_OK) {
        snprintf(err, errlen, "lua: %s (%zu bytes)", msg, len);
        return SLUICE_ERROR;
    }
    report_state(op);
    return SLUICE_OK;
}

const sluice_plugin_def sl_plugin_lua_operator = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "lua",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "Lua 5.4 scripts: process(record, emit), keyed state, event-time timers, "
                   "metrics",
    .config_size = sizeof(lua_config),
    .options = lua_options,
    .create = lua_create,
    .destroy = lua_destroy,
    .process = lua_process,
    .on_watermark = lua_on_watermark,
    .flush = lua_flush,
    .snapshot = lua_snapshot,
    .restore = lua_restore,
};
