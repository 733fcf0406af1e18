/*
 * keyed_state.c — `state.get/put/del/keys` and the binary form of values.
 *
 *     local s = state.get(r.service) or {n = 0}
 *     s.n = s.n + 1
 *     state.put(r.service, s)
 *
 * Value semantics, like Flink's RocksDB backend rather than its heap one:
 * put() serialises the value at once and get() returns a fresh copy. So a
 * table changed after put() does not change the state until it is put
 * again; a mistake (a function inside, a cycle) is an error at the put()
 * that made it, with the record that caused it, not at the next
 * checkpoint; the state's size in bytes is exact; and a snapshot is a
 * plain copy of the stored strings. Serialised values are Lua strings in a
 * registry table keyed by the state key, so Lua's own hash table does the
 * lookups and the memory limit covers the state.
 *
 * Keys are strings or numbers (integers and floats; 1.0 is 1, as in a Lua
 * table). Values: nil (put(k, nil) deletes), booleans, integers, floats,
 * strings, sluice.null, and tables of these (keys: strings, numbers,
 * booleans). Tables marked as JSON arrays keep the mark.
 *
 * Binary form (little-endian, versioned by the snapshot header):
 *   'F' | 'T'                 false, true
 *   'I' int64 | 'D' double    integer, float (bit pattern)
 *   'S' varint-len bytes      string
 *   'N'                       sluice.null
 *   'O' | 'A' varint-n (key value)*n
 *                             table, or one marked as a JSON array
 * A state snapshot is varint-count then (key blob) pairs, a key being the
 * value form of a string or number and a blob a varint length and a value.
 */
#include "keyed_state.h"

#include <lauxlib.h>

#include <math.h>

#define MAX_DEPTH 64

static void no_memory(lua_State *L)
{
    luaL_error(L, "out of memory");
}

static void put_u8(lua_State *L, sl_bytes *out, char tag)
{
    if (!slua_buf_putc(out, tag))
        no_memory(L);
}

static void put_u64(lua_State *L, sl_bytes *out, uint64_t v)
{
    if (!slua_buf_u64(out, v))
        no_memory(L);
}

static void put_varint(lua_State *L, sl_bytes *out, uint64_t v)
{
    if (!slua_buf_varint(out, v))
        no_memory(L);
}

static void put_bytes(lua_State *L, sl_bytes *out, const char *p, size_t len)
{
    put_varint(L, out, len);
    if (!sl_bytes_put(out, p, len))
        no_memory(L);
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- Serialising ------------------------------------------------------------ */

typedef struct writer {
    slua_conv *conv;
    lua_State *L;
    sl_bytes *out;
    const char *what;
    const void *ancestors[MAX_DEPTH];
} writer;

static void write_value(writer *w, int idx, int depth);

static bool marked_array(slua_conv *conv, lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return false;
    slua_push_array_mt(conv, L);
    bool marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
}

static void write_table(writer *w, int idx, int depth)
{
    lua_State *L = w->L;
    if (depth >= MAX_DEPTH)
        luaL_error(L, "%s: tables nested deeper than %d", w->what, MAX_DEPTH);
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < depth; i++)
        if (w->ancestors[i] == self)
            luaL_error(L, "%s: a table that contains itself (a cycle) cannot be stored", w->what);
    w->ancestors[depth] = self;
    luaL_checkstack(L, 6, "tables nested too deep");
    slua_table_complete(w->conv, L, idx); /* a record table: all of its fields */
    uint64_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
    }
    put_u8(L, w->out, marked_array(w->conv, L, idx) ? 'A' : 'O');
    put_varint(L, w->out, n);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
            luaL_error(L, "%s: a table key of type %s cannot be stored (keys are strings, "
                          "numbers or booleans)",
                       w->what, lua_typename(L, kt));
        write_value(w, lua_gettop(L) - 1, depth + 1);
        write_value(w, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
}

static void write_value(writer *w, int idx, int depth)
{
    lua_State *L = w->L;
    size_t len;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        put_u8(L, w->out, lua_toboolean(L, idx) ? 'T' : 'F');
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            put_u8(L, w->out, 'I');
            put_u64(L, w->out, (uint64_t)lua_tointeger(L, idx));
        } else {
            put_u8(L, w->out, 'D');
            put_u64(L, w->out, double_bits((double)lua_tonumber(L, idx)));
        }
        return;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        put_u8(L, w->out, 'S');
        put_bytes(L, w->out, s, len);
        return;
    case LUA_TTABLE:
        write_table(w, idx, depth);
        return;
    case LUA_TLIGHTUSERDATA:
        if (slua_is_null(L, idx)) {
            put_u8(L, w->out, 'N');
            return;
        }
        break;
    default:
        break;
    }
    luaL_error(L, "%s: a %s cannot be stored (state holds nil, booleans, numbers, strings, "
                  "sluice.null and tables of those)",
               w->what, luaL_typename(L, idx));
}

void slua_serialize(slua_conv *conv, lua_State *L, int idx, sl_bytes *out, const char *what)
{
    writer w = {.conv = conv, .L = L, .out = out, .what = what};
    write_value(&w, lua_absindex(L, idx), 0);
}

/* ---- Reading back ------------------------------------------------------------ */

static void damaged(lua_State *L)
{
    luaL_error(L, "damaged state value");
}

static void read_value(slua_conv *conv, lua_State *L, sl_reader *r, int depth)
{
    if (depth > MAX_DEPTH)
        damaged(L);
    luaL_checkstack(L, 6, "state value nested too deep");
    uint8_t tag = slua_read_u8(r);
    uint64_t n;
    const unsigned char *p;
    switch (r->bad ? 0 : tag) {
    case 'F':
    case 'T':
        lua_pushboolean(L, tag == 'T');
        return;
    case 'I':
        n = slua_read_u64(r);
        lua_pushinteger(L, (lua_Integer)n);
        break;
    case 'D':
        n = slua_read_u64(r);
        lua_pushnumber(L, (lua_Number)bits_double(n));
        break;
    case 'S':
        n = slua_read_varint(r);
        p = sl_reader_take(r, (size_t)n);
        if (!p)
            damaged(L);
        lua_pushlstring(L, (const char *)p, (size_t)n);
        return;
    case 'N':
        lua_pushlightuserdata(L, SLUA_NULL);
        return;
    case 'O':
    case 'A': {
        n = slua_read_varint(r);
        size_t room = (size_t)(r->end - r->p) / 2; /* each pair takes >= 2 bytes */
        if (r->bad || n > room)
            damaged(L);
        lua_createtable(L, 0, (int)(n < 1024 ? n : 1024));
        if (tag == 'A') {
            slua_push_array_mt(conv, L);
            lua_setmetatable(L, -2);
        }
        for (uint64_t i = 0; i < n; i++) {
            read_value(conv, L, r, depth + 1);
            if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
                                     isnan(lua_tonumber(L, -1))))
                damaged(L);
            read_value(conv, L, r, depth + 1);
            lua_rawset(L, -3);
        }
        return;
    }
    default:
        damaged(L);
    }
    if (r->bad)
        damaged(L);
}

void slua_deserialize(slua_conv *conv, lua_State *L, sl_reader *r)
{
    read_value(conv, L, r, 0);
}

/* ---- Keys ------------------------------------------------------------------- */

void slua_key_check(lua_State *L, int idx, const char *what)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING)
        return;
    if (t == LUA_TNUMBER) {
        if (!lua_isinteger(L, idx) && isnan(lua_tonumber(L, idx)))
            luaL_error(L, "%s: a key cannot be NaN", what);
        return;
    }
    luaL_error(L, "%s: keys are strings or numbers, not %s", what, luaL_typename(L, idx));
}

/* A float with an integer value becomes that integer, as Lua tables do. */
static void push_normal_key(lua_State *L, int idx)
{
    lua_Integer i;
    if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx) &&
        lua_numbertointeger(lua_tonumber(L, idx), &i) && (lua_Number)i == lua_tonumber(L, idx))
        lua_pushinteger(L, i);
    else
        lua_pushvalue(L, idx);
}

void slua_key_encode(lua_State *L, int idx, sl_bytes *out)
{
    push_normal_key(L, idx);
    writer w = {.L = L, .out = out, .what = "key"};
    write_value(&w, lua_gettop(L), 0);
    lua_pop(L, 1);
}

void slua_key_push(lua_State *L, sl_reader *r)
{
    uint8_t tag = r->p < r->end ? *r->p : 0;
    if (tag != 'S' && tag != 'I' && tag != 'D')
        damaged(L);
    read_value(NULL, L, r, 0);
}

/* ---- The store and its Lua API -------------------------------------------- */

static slua_state *state_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static uint64_t key_bytes(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TSTRING ? (uint64_t)lua_rawlen(L, idx) : 8;
}

/* Store the string at the top under the key at kidx (nil: delete). */
static void store_set(slua_state *s, lua_State *L, int kidx)
{
    int v = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->store_ref);
    int store = v + 1;
    lua_pushvalue(L, kidx);
    lua_rawget(L, store);
    if (lua_isstring(L, -1)) {
        s->nkeys--;
        s->bytes -= key_bytes(L, kidx) + lua_rawlen(L, -1);
    }
    lua_pop(L, 1);
    if (!lua_isnil(L, v)) {
        s->nkeys++;
        s->bytes += key_bytes(L, kidx) + lua_rawlen(L, v);
    }
    lua_pushvalue(L, kidx);
    lua_pushvalue(L, v);
    lua_rawset(L, store);
    lua_settop(L, v - 1);
    s->changed = true;
}

static int state_get(lua_State *L)
{
    slua_state *s = state_of(L);
    slua_key_check(L, 1, "state.get");
    push_normal_key(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->store_ref);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    size_t len;
    const char *blob = lua_tolstring(L, -1, &len);
    sl_reader r = {(const unsigned char *)blob, (const unsigned char *)blob + len, false};
    slua_deserialize(s->conv, L, &r);
    return 1;
}

static int state_put(lua_State *L)
{
    slua_state *s = state_of(L);
    slua_key_check(L, 1, "state.put");
    lua_settop(L, 2);
    push_normal_key(L, 1);
    lua_replace(L, 1);
    if (lua_isnil(L, 2)) {
        lua_pushnil(L);
        store_set(s, L, 1);
        return 0;
    }
    sl_bytes *scratch = &s->conv->json;
    scratch->len = 0;
    slua_serialize(s->conv, L, 2, scratch, "state.put");
    lua_pushlstring(L, scratch->data ? (const char *)scratch->data : "", scratch->len);
    store_set(s, L, 1);
    return 0;
}

static int state_del(lua_State *L)
{
    slua_state *s = state_of(L);
    slua_key_check(L, 1, "state.del");
    lua_settop(L, 1);
    push_normal_key(L, 1);
    lua_replace(L, 1);
    lua_pushnil(L);
    store_set(s, L, 1);
    return 0;
}

/* state.keys(): every key, as an array (in no particular order). */
static int state_keys(lua_State *L)
{
    slua_state *s = state_of(L);
    lua_createtable(L, s->nkeys < 1u << 20 ? (int)s->nkeys : 1 << 20, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->store_ref);
    lua_Integer i = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -4, ++i);
    }
    lua_pop(L, 1);
    return 1;
}

void slua_state_open(slua_state *s, slua_conv *conv, lua_State *L)
{
    static const luaL_Reg api[] = {
        {"get", state_get}, {"put", state_put}, {"del", state_del}, {"keys", state_keys},
        {NULL, NULL},
    };
    s->conv = conv;
    lua_newtable(L);
    s->store_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 4);
    lua_pushlightuserdata(L, s);
    luaL_setfuncs(L, api, 1);
    lua_setglobal(L, "state");
}

/* ---- Snapshots ------------------------------------------------------------------ */

void slua_state_save(slua_state *s, lua_State *L, sl_bytes *out)
{
    put_varint(L, out, s->nkeys);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->store_ref);
    int store = lua_gettop(L);
    uint64_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, store)) {
        size_t len;
        const char *blob = lua_tolstring(L, -1, &len);
        writer w = {.L = L, .out = out, .what = "state key"};
        write_value(&w, lua_gettop(L) - 1, 0);
        put_bytes(L, out, blob, len);
        lua_pop(L, 1);
        n++;
    }
    lua_pop(L, 1);
    if (n != s->nkeys)
        luaL_error(L, "internal error: the state holds %I keys, counted %I", (lua_Integer)n,
                   (lua_Integer)s->nkeys);
}

void slua_state_load(slua_state *s, lua_State *L, sl_reader *r)
{
    uint64_t n = slua_read_varint(r);
    if (r->bad || n > (uint64_t)(r->end - r->p))
        damaged(L);
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->store_ref);
    s->nkeys = s->bytes = 0;
    s->changed = true;
    for (uint64_t i = 0; i < n; i++) {
        int top = lua_gettop(L);
        slua_key_push(L, r);
        uint64_t len = slua_read_varint(r);
        const unsigned char *blob = sl_reader_take(r, (size_t)len);
        if (!blob)
            damaged(L);
        sl_reader check = {blob, blob + len, false};
        slua_deserialize(s->conv, L, &check); /* refuse damage now, not at get() */
        if (check.p != check.end)
            damaged(L);
        lua_pop(L, 1);
        lua_pushlstring(L, (const char *)blob, (size_t)len);
        store_set(s, L, top + 1);
        lua_settop(L, top);
    }
}
