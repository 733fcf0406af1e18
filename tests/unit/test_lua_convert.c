/*
 * test_lua_convert.c — the Lua operator's conversions (plugins/lua/):
 * JSON text <-> Lua values (escapes, surrogates, number types, arrays vs
 * objects, errors), the binary form of state values (round trips, refusals,
 * and damaged blobs that must raise, never crash), the timer heap (order,
 * duplicates, cancel, snapshots) and the write-back of a lazy record table
 * to a record (only changed fields written; removals; new fields sorted).
 *
 * The host is the core's real record/batch/intern code; Lua runs in a plain
 * state, each step under lua_pcall as in the operator.
 */
#include "record.h"
#include "../../plugins/lua/convert.h"
#include "../../plugins/lua/keyed_state.h"
#include "../../plugins/lua/timers.h"
#include "../tap.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdlib.h>

static sluice_record *host_copy(sluice_batch *b, const sluice_batch *src_batch,
                                const sluice_record *src)
{
    return sl_record_copy(b, src_batch, src);
}

static const sluice_host host = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_host),
    .intern = sl_intern,
    .name_of = sl_name_of,
    .record_append = sl_record_append,
    .record_copy = host_copy,
    .alloc = sl_alloc,
    .str = sl_str,
    .set = sl_set,
    .unset = sl_unset,
};

static slua_conv conv;
static slua_state store;
static lua_State *L;
static char msg[512];

/* Run f under lua_pcall; 0 on success, else the message is in msg. */
static int protect(lua_CFunction f)
{
    lua_pushcfunction(L, f);
    int st = lua_pcall(L, 0, 0, 0);
    msg[0] = '\0';
    if (st != LUA_OK) {
        snprintf(msg, sizeof msg, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
    }
    return st;
}

static int setup(lua_State *l)
{
    luaL_openlibs(l);
    slua_conv_init(&conv, &host, l);
    slua_state_open(&store, &conv, l);
    lua_pushlightuserdata(l, SLUA_NULL);
    lua_setglobal(l, "null");
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------ */

static const char *json_in;
static sl_bytes json_out;

static int json_round_trip(lua_State *l)
{
    slua_push_json(&conv, l, json_in, strlen(json_in), "test");
    json_out.len = 0;
    slua_encode_json(&conv, l, -1, &json_out);
    slua_buf_putc(&json_out, '\0');
    return 0;
}

static void check_json(const char *in, const char *want, const char *what)
{
    json_in = in;
    if (protect(json_round_trip) != LUA_OK) {
        ok(0, "json: %s (raised: %s)", what, msg);
        return;
    }
    is_str(json_out.data, want, "json: %s", what);
}

static void check_json_error(const char *in, const char *want_part, const char *what)
{
    json_in = in;
    int st = protect(json_round_trip);
    ok(st != LUA_OK && strstr(msg, want_part), "json error: %s (%s)", what, msg);
}

static const char *lua_src;
static int encode_lua(lua_State *l)
{
    if (luaL_loadstring(l, lua_src) != LUA_OK)
        return lua_error(l);
    lua_call(l, 0, 1);
    json_out.len = 0;
    slua_encode_json(&conv, l, -1, &json_out);
    slua_buf_putc(&json_out, '\0');
    return 0;
}

static void check_encode(const char *src, const char *want, const char *what)
{
    lua_src = src;
    int st = protect(encode_lua);
    if (!want) {
        ok(st != LUA_OK, "encode refuses %s (%s)", what, msg);
        return;
    }
    if (st != LUA_OK) {
        ok(0, "encode: %s (raised: %s)", what, msg);
        return;
    }
    is_str(json_out.data, want, "encode: %s", what);
}

static void test_json(void)
{
    check_json("{\"b\":1,\"a\":[1,2.0,null,{}],\"c\":[],\"d\":{}}",
               "{\"a\":[1,2.0,null,{}],\"b\":1,\"c\":[],\"d\":{}}",
               "objects sorted, arrays kept, [] and {} distinct, 2.0 a float");
    check_json("[1e2, -0.5, 1.5e-7, 12345678901234567890, -9223372036854775808]",
               "[100.0,-0.5,1.5e-07,1.2345678901234567e+19,-9223372036854775808]",
               "exponents and too-large integers become floats; int64 min stays");
    check_json("\"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\u0001\"",
               "\"\xc3\xa9\xf0\x9f\x98\x80\\n\\t\\\"\\\\/\\u0001\"",
               "escapes: \\u, a surrogate pair, controls back as escapes");
    check_json("\"\\ud800x\"", "\"\xef\xbf\xbdx\"", "a lone surrogate becomes U+FFFD");
    check_json(" { \"k\" : [ true , false , null ] } ", "{\"k\":[true,false,null]}",
               "whitespace everywhere");
    check_json_error("{\"a\":1", "expected ',' or '}'", "unterminated object");
    check_json_error("[1,]", "expected a value", "trailing comma");
    check_json_error("01", "the end of the text", "a leading zero");
    check_json_error("\"a\nb\"", "no control character", "a raw newline in a string");
    check_json_error("\"\\x\"", "a valid escape", "a bad escape");
    check_json_error("{\"a\":1} x", "the end of the text", "trailing garbage");
    check_json_error("nul", "expected a value", "a truncated literal");
    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    check_json_error(deep, "nested deeper", "nesting beyond the limit");

    check_encode("return {3, 2, 1}", "[3,2,1]", "a sequence is an array");
    check_encode("return {[1] = 'a', [3] = 'c'}", "{\"1\":\"a\",\"3\":\"c\"}",
                 "a table with holes is an object with number keys");
    check_encode("return {x = 1.0, y = 0/0, z = 1/0, n = null}",
                 "{\"n\":null,\"x\":1.0,\"y\":null,\"z\":null}",
                 "1.0 stays 1.0, NaN and inf are null, sluice.null is null");
    check_encode("return {[true] = 1}", NULL, "a boolean key");
    check_encode("local t = {} t.t = t return t", NULL, "a cycle");
    check_encode("return {f = print}", NULL, "a function");
    check_encode("local t = {} local u = {t, t} return u", "[{},{}]",
                 "the same table twice (not a cycle)");
}

/* ---- State values ------------------------------------------------------------------- */

static sl_bytes blob;

static int serialize_lua(lua_State *l)
{
    if (luaL_loadstring(l, lua_src) != LUA_OK)
        return lua_error(l);
    lua_call(l, 0, 1);
    blob.len = 0;
    slua_serialize(&conv, l, -1, &blob, "test");
    return 0;
}

static const unsigned char *read_p;
static size_t read_len;
static int deserialize_and_reserialize(lua_State *l)
{
    sl_reader r = {read_p, read_p + read_len, false};
    slua_deserialize(&conv, l, &r);
    if (r.p != r.end)
        return luaL_error(l, "trailing bytes");
    json_out.len = 0;
    slua_serialize(&conv, l, -1, &json_out, "again");
    return 0;
}

/* The value of lua_src and its copy through the binary form are equal,
 * deeply (keys of every type, integer vs float, sluice.null). */
static int same_after_round_trip(lua_State *l)
{
    static const char *const deepeq =
        "local function eq(a, b)\n"
        "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n"
        "  if type(a) ~= 'table' then return a == b end\n"
        "  for k, v in pairs(a) do if not eq(v, b[k]) then return false end end\n"
        "  for k in pairs(b) do if a[k] == nil then return false end end\n"
        "  return true\n"
        "end\n"
        "return eq";
    if (luaL_loadstring(l, deepeq) != LUA_OK || luaL_loadstring(l, lua_src) != LUA_OK)
        return lua_error(l);
    lua_call(l, 0, 1); /* the value */
    lua_insert(l, -2);
    lua_call(l, 0, 1); /* eq */
    lua_insert(l, -2);
    blob.len = 0;
    slua_serialize(&conv, l, -1, &blob, "test");
    sl_reader r = {(const unsigned char *)blob.data, (const unsigned char *)blob.data + blob.len,
                     false};
    slua_deserialize(&conv, l, &r);
    lua_call(l, 2, 1);
    if (!lua_toboolean(l, -1))
        return luaL_error(l, "the copy differs");
    return 0;
}

static int json_through_state(lua_State *l)
{
    slua_push_json(&conv, l, json_in, strlen(json_in), "test");
    blob.len = 0;
    slua_serialize(&conv, l, -1, &blob, "test");
    sl_reader r = {(const unsigned char *)blob.data, (const unsigned char *)blob.data + blob.len,
                     false};
    slua_deserialize(&conv, l, &r);
    json_out.len = 0;
    slua_encode_json(&conv, l, -1, &json_out);
    slua_buf_putc(&json_out, '\0');
    return 0;
}

static void test_state_values(void)
{
    lua_src = "return {n = 1, f = 1.5, one = 1.0, s = 'x\\0y', b = false, t = true, "
              "null = null, list = {1, 2, {deep = {}}}, [7] = 'seven', [2.5] = 'float key', "
              "[true] = 'bool key', big = math.mininteger}";
    ok(protect(serialize_lua) == LUA_OK, "serialize a value of every kind (%s)", msg);
    read_p = (const unsigned char *)blob.data;
    read_len = blob.len;
    ok(protect(deserialize_and_reserialize) == LUA_OK, "it reads back (%s)", msg);
    ok(json_out.len == blob.len, "and serialises to as many bytes");
    ok(protect(same_after_round_trip) == LUA_OK, "the copy equals the original deeply (%s)", msg);

    /* A JSON array keeps its mark through state: an empty one stays []. */
    json_in = "{\"empty\":[],\"obj\":{}}";
    ok(protect(json_through_state) == LUA_OK, "an array through state (%s)", msg);
    is_str(json_out.data, "{\"empty\":[],\"obj\":{}}", "state keeps [] and {} apart");

    lua_src = "return function() end";
    ok(protect(serialize_lua) != LUA_OK && strstr(msg, "a function cannot be stored"),
       "a function is refused (%s)", msg);
    lua_src = "local t = {} t[1] = {t} return t";
    ok(protect(serialize_lua) != LUA_OK && strstr(msg, "cycle"), "a cycle is refused (%s)", msg);
    lua_src = "return {[{}] = 1}";
    ok(protect(serialize_lua) != LUA_OK && strstr(msg, "key of type table"),
       "a table key is refused (%s)", msg);
    lua_src = "return coroutine.create(print)";
    ok(protect(serialize_lua) != LUA_OK, "a coroutine is refused");

    /* Damage: every truncation and every byte changed must raise or read,
     * never crash or read out of bounds (ASan watches). */
    lua_src = "return {a = {1, 2, {b = 'text', c = {x = 1.5}}}, [3] = true, s = 'str'}";
    ok(protect(serialize_lua) == LUA_OK, "serialize the value to damage");
    unsigned char *copy = malloc(blob.len);
    int raised = 0, read_ok = 0;
    for (size_t cut = 0; cut < blob.len; cut++) {
        read_p = (const unsigned char *)blob.data;
        read_len = cut;
        protect(deserialize_and_reserialize) == LUA_OK ? read_ok++ : raised++;
    }
    is_int(read_ok, 0, "every truncation of a blob is refused (%d refused)", raised);
    static const unsigned char replacements[] = {0, 1, 0x7f, 0x80, 0xff, 'O', 'A', 'S', 'I', 'D'};
    int tried = 0;
    for (size_t i = 0; i < blob.len; i++)
        for (size_t k = 0; k < sizeof replacements; k++) {
            memcpy(copy, blob.data, blob.len);
            copy[i] = replacements[k];
            read_p = copy;
            read_len = blob.len;
            protect(deserialize_and_reserialize);
            tried++;
        }
    ok(tried > 0, "%d damaged blobs read without a crash", tried);
    free(copy);
}

/* ---- Timers ------------------------------------------------------------------------ */

static void test_timers(void)
{
    slua_timers t = {0};
    srand(7);
    int added = 0, dups = 0;
    for (int i = 0; i < 2000; i++) {
        int64_t time = rand() % 500;
        char key[8];
        int n = snprintf(key, sizeof key, "k%d", rand() % 10);
        int rc = slua_timers_add(&t, time, key, (size_t)n);
        rc == 1 ? added++ : dups++;
    }
    ok(dups > 0 && added == (int)t.n, "duplicates (time, key) are set once (%d, %d dups)", added,
       dups);
    ok(slua_timers_cancel(&t, t.heap[0]->time, t.heap[0]->key, t.heap[0]->keylen),
       "cancel the earliest");
    added--;
    sl_bytes saved = {0};
    ok(slua_timers_save(&t, &saved), "save");
    slua_timers loaded = {0};
    sl_reader r = {(const unsigned char *)saved.data,
                     (const unsigned char *)saved.data + saved.len, false};
    ok(slua_timers_load(&loaded, &r) && r.p == r.end && (int)loaded.n == added,
       "load the snapshot back (%zu timers)", loaded.n);
    int64_t last = INT64_MIN;
    int popped = 0, in_order = 1, same = 1;
    slua_timer *x, *y;
    while ((x = slua_timers_pop(&t))) {
        y = slua_timers_pop(&loaded);
        if (x->time < last)
            in_order = 0;
        if (!y || y->time != x->time || y->keylen != x->keylen ||
            memcmp(x->key, y->key, x->keylen) != 0)
            same = 0;
        last = x->time;
        popped++;
        free(x);
        free(y);
    }
    ok(in_order && popped == added, "timers pop in time order, each once (%d)", popped);
    ok(same && loaded.n == 0, "the reloaded heap pops the same timers in the same order");
    for (size_t cut = 0; cut + 1 < saved.len; cut += 7) {
        sl_reader d = {(const unsigned char *)saved.data,
                         (const unsigned char *)saved.data + cut, false};
        slua_timers_load(&loaded, &d);
    }
    ok(1, "truncated timer snapshots load without a crash");
    slua_timers_clear(&loaded);
    slua_timers_clear(&t);
    sl_bytes_free(&saved);
}

/* ---- Records: the lazy table and its write-back ------------------------------------------ */

static sluice_batch *in_batch, *out_batch;
static sluice_record *out_rec;
static const char *script;

static int update(lua_State *l)
{
    const sluice_record *in = &in_batch->records[0];
    slua_push_record(&conv, l, in);
    int t = lua_gettop(l);
    if (luaL_loadstring(l, script) != LUA_OK)
        return lua_error(l);
    lua_pushvalue(l, t);
    lua_call(l, 1, 0);
    out_rec = slua_updated_record(&conv, l, t, out_batch, in_batch, in);
    return 0;
}

static void render(char *buf, size_t size, const sluice_record *r)
{
    size_t n = 0;
    for (uint32_t i = 0; i < r->nfields && n < size; i++) {
        const sluice_value *v = &r->fields[i].value;
        n += (size_t)snprintf(buf + n, size - n, "%s%s=", i ? " " : "", sl_name_of(r->fields[i].name));
        if (n >= size)
            break;
        switch (v->type) {
        case SLUICE_INT: n += (size_t)snprintf(buf + n, size - n, "%lld", (long long)v->u.i); break;
        case SLUICE_DOUBLE: n += (size_t)snprintf(buf + n, size - n, "%g", v->u.d); break;
        case SLUICE_BOOL: n += (size_t)snprintf(buf + n, size - n, "%s", v->u.b ? "true" : "false"); break;
        case SLUICE_NULL: n += (size_t)snprintf(buf + n, size - n, "null"); break;
        default:
            n += (size_t)snprintf(buf + n, size - n, "%s'%.*s'", v->type == SLUICE_JSON ? "json" : "",
                                  (int)v->u.s.len, v->u.s.ptr);
        }
    }
}

static void check_update(const char *src, const char *want, bool shares_fields, const char *what)
{
    script = src;
    out_batch = sl_batch_new(4);
    int st = protect(update);
    slua_record_done(&conv, L);
    char got[600] = "";
    if (st == LUA_OK)
        render(got, sizeof got, out_rec);
    else
        snprintf(got, sizeof got, "raised: %s", msg);
    is_str(got, want, "write-back: %s", what);
    if (st == LUA_OK)
        ok((out_rec->fields == in_batch->records[0].fields) == shares_fields,
           "write-back: %s %s the input's field array", what, shares_fields ? "shares" : "replaces");
    sl_batch_unref(out_batch);
}

static void test_records(void)
{
    in_batch = sl_batch_new(4);
    sluice_record *r = sl_record_append(in_batch);
    const char *j = "{\"x\":[1,2]}";
    sl_set(in_batch, r, sl_intern("a", 1), sluice_int(1));
    sl_set(in_batch, r, sl_intern("s", 1), sluice_string(sl_str(in_batch, "text", 4)));
    sluice_value jv = {.type = SLUICE_JSON, .u.s = sl_str(in_batch, j, strlen(j))};
    sl_set(in_batch, r, sl_intern("j", 1), jv);
    sl_set(in_batch, r, sl_intern("f", 1), sluice_double(1.0));

    check_update("local r = ... local _ = r.a, r.s, r.j", "a=1 s='text' j=json'{\"x\":[1,2]}' f=1",
                 true, "reading only");
    check_update("local r = ... r.a = r.a r.s = 'te' .. 'xt'", "a=1 s='text' j=json'{\"x\":[1,2]}' f=1",
                 true, "writing equal values");
    check_update("local r = ... r.a = 2 r.z = true r.b = 'new'",
                 "a=2 s='text' j=json'{\"x\":[1,2]}' f=1 b='new' z=true", false,
                 "a change in place, new fields sorted after");
    check_update("local r = ... r.s = nil", "a=1 j=json'{\"x\":[1,2]}' f=1", false,
                 "removing a field never read");
    check_update("local r = ... local _ = r.s r.s = nil r.a = 1.5", "a=1.5 j=json'{\"x\":[1,2]}' f=1",
                 false, "removing a field after reading it; an integer becoming a float");
    check_update("local r = ... table.insert(r.j.x, 3)", "a=1 s='text' j=json'{\"x\":[1,2,3]}' f=1",
                 false, "a nested table changed in place");
    check_update("local r = ... local _ = r.j.x", "a=1 s='text' j=json'{\"x\":[1,2]}' f=1", true,
                 "a nested table only read");
    check_update("local r = ... for k, v in pairs(r) do end r.f = null",
                 "a=1 s='text' j=json'{\"x\":[1,2]}' f=null", false, "pairs() then a null");
    check_update("local r = ... r[1] = 'x'", "raised: field names must be strings, not a number key (1)",
                 false, "a number key");
    sl_batch_unref(in_batch);
}

int main(void)
{
    L = luaL_newstate();
    if (protect(setup) != LUA_OK) {
        printf("Bail out! setup: %s\n", msg);
        return 1;
    }
    test_json();
    test_state_values();
    test_timers();
    test_records();
    lua_close(L);
    slua_conv_free(&conv);
    sl_bytes_free(&json_out);
    sl_bytes_free(&blob);
    return tap_done();
}
