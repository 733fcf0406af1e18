/*
 * convert.c — records, field values and JSON text between sluice and Lua.
 *
 * The mapping (both ways, so a record survives a round trip unchanged):
 *   SLUICE_NULL    <-> sluice.null (a light userdata; nil means "absent")
 *   SLUICE_BOOL    <-> boolean
 *   SLUICE_INT     <-> integer (math.type "integer")
 *   SLUICE_DOUBLE  <-> float (1.0 stays a float, and is written back "1.0")
 *   SLUICE_STRING  <-> string (bytes as they are)
 *   SLUICE_JSON    <-> table: JSON objects become tables with string keys;
 *                      arrays become sequences carrying a shared metatable,
 *                      so an empty array comes back as [] and not {}; JSON
 *                      null inside becomes sluice.null (keeps array slots).
 * Back from Lua, any table is JSON: one carrying the array metatable, or
 * whose keys are exactly 1..n (n > 0), is an array; anything else is an
 * object with its keys sorted (string or number keys), so output does not
 * change between runs. A table nested in itself is refused (a cycle), as
 * are functions, coroutines and userdata.
 *
 * The hot path is a script that reads a field or two, sets another and
 * returns the record it was given. Converting every field in and out would
 * cost more than the rest of the pipeline (scripts/bench-lua measures it:
 * SLUICE_LUA_NAIVE=1), so the record table process() receives is lazy:
 *   - it starts empty, with a metatable whose __index converts a field on
 *     first read and keeps it in the table (so a nested table read twice
 *     is the same table), and whose __newindex notes writes to fields not
 *     read yet (so `r.f = nil` on an unread field is a removal); __pairs
 *     loads every field first, so pairs(r) sees the whole record (next()
 *     and rawget() see only what was touched);
 *   - writing it back (emit(r) / return r) starts from a copy of the input
 *     record (host->record_copy shares the input's fields) and looks only
 *     at the keys in the table: set what changed, unset fields read or
 *     written and then removed, add the new keys; untouched fields are
 *     never converted at all;
 *   - field names go to Lua from a table indexed by sluice_name (anchored
 *     there), so a name coming back is found by the address of its Lua
 *     string in a small open-addressing table, not by hashing it again;
 *   - a per-name generation stamp finds an input field by name in O(1)
 *     without clearing anything between records.
 * The input record lives only during its process() call, so when the call
 * returns the table's metatable is swapped for one that raises ("record
 * table used after its process() call returned"): a script that keeps the
 * table around gets an error, never another record's fields. Such a table
 * nested in something emitted or stored is loaded in full first (or
 * refused when stale), so no partial record ever leaves the stage.
 */
#include "convert.h"

#include <lauxlib.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_JSON_DEPTH 64 /* == the length of slua_conv.ancestors */
#define MAX_SHORT_STRING 40 /* Lua interns strings up to this length */

const char slua_null_sentinel = 0;

static void *oom(lua_State *L)
{
    luaL_error(L, "out of memory");
    return NULL;
}

/* ---- Set up --------------------------------------------------------------- */

static int record_index(lua_State *L);
static int record_newindex(lua_State *L);
static int record_pairs(lua_State *L);
static int record_stale(lua_State *L);

static int make_record_mt(slua_conv *c, lua_State *L, bool stale)
{
    lua_createtable(L, 0, 5);
    lua_pushlightuserdata(L, c);
    lua_pushcclosure(L, stale ? record_stale : record_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushlightuserdata(L, c);
    lua_pushcclosure(L, stale ? record_stale : record_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushlightuserdata(L, c);
    lua_getglobal(L, "next"); /* the original, whatever the script does */
    lua_pushcclosure(L, stale ? record_stale : record_pairs, 2);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "record"); /* getmetatable(r) says what it is; */
    lua_setfield(L, -2, "__metatable"); /* setmetatable(r, ...) is refused */
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

void slua_conv_init(slua_conv *c, const sluice_host *host, lua_State *L)
{
    c->host = host;
    lua_newtable(L);
    c->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__name");
    c->array_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->record_mt_ref = make_record_mt(c, L, false);
    c->stale_mt_ref = make_record_mt(c, L, true);
    lua_pushboolean(L, 0);
    c->current_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void slua_conv_free(slua_conv *c)
{
    free(c->keys);
    free(c->stamp);
    free(c->pos);
    free(c->seen);
    free(c->vals);
    free(c->added);
    free(c->loaded);
    sl_bytes_free(&c->json);
    c->loaded = NULL;
    c->keys = NULL;
    c->stamp = c->pos = NULL;
    c->seen = NULL;
    c->vals = NULL;
    c->added = NULL;
}

void slua_push_array_mt(slua_conv *c, lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->array_mt_ref);
}

/* ---- Names ------------------------------------------------------------------ */

static uint32_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ull;
    return (uint32_t)(x >> 32);
}

static bool key_cache_grow(slua_conv *c)
{
    uint32_t cap = c->keys ? (c->keymask + 1) * 2 : 256;
    slua_key_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (uint32_t i = 0; c->keys && i <= c->keymask; i++) {
        if (!c->keys[i].ptr)
            continue;
        uint32_t j = ptr_hash(c->keys[i].ptr) & (cap - 1);
        while (slots[j].ptr)
            j = (j + 1) & (cap - 1);
        slots[j] = c->keys[i];
    }
    free(c->keys);
    c->keys = slots;
    c->keymask = cap - 1;
    return true;
}

/* Remember that the (anchored) string at ptr is `name`. Best effort. */
static void key_cache_add(slua_conv *c, const char *ptr, sluice_name name)
{
    if ((!c->keys || (c->nkeys + 1) * 2 > c->keymask + 1) && !key_cache_grow(c))
        return;
    uint32_t j = ptr_hash(ptr) & c->keymask;
    while (c->keys[j].ptr) {
        if (c->keys[j].ptr == ptr)
            return;
        j = (j + 1) & c->keymask;
    }
    c->keys[j].ptr = ptr;
    c->keys[j].name = name;
    c->nkeys++;
}

static sluice_name key_cache_find(const slua_conv *c, const char *ptr)
{
    if (!c->keys)
        return 0;
    for (uint32_t j = ptr_hash(ptr) & c->keymask; c->keys[j].ptr; j = (j + 1) & c->keymask)
        if (c->keys[j].ptr == ptr)
            return c->keys[j].name;
    return 0;
}

/* Push the Lua string of `name`, made (and anchored) the first time. */
static void push_name(slua_conv *c, lua_State *L, int names, sluice_name name)
{
    if (lua_rawgeti(L, names, (lua_Integer)name) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    const char *s = c->host->name_of(name);
    const char *ptr = lua_pushstring(L, s ? s : "");
    lua_pushvalue(L, -1);
    lua_rawseti(L, names, (lua_Integer)name);
    key_cache_add(c, ptr, name);
}

/* The sluice_name of the field-name key at idx (a string; raises else). */
static sluice_name field_name(slua_conv *c, lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TSTRING) {
        const char *type = luaL_typename(L, idx);
        return (sluice_name)luaL_error(L, "field names must be strings, not a %s key (%s)", type,
                                       luaL_tolstring(L, idx, NULL));
    }
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    sluice_name name = c->naive ? 0 : key_cache_find(c, s);
    if (name)
        return name;
    if (len == 0)
        return (sluice_name)luaL_error(L, "a field name cannot be empty");
    name = c->host->intern(s, len);
    if (!name)
        return (sluice_name)luaL_error(L, "cannot intern field name '%s'", s);
    if (len <= MAX_SHORT_STRING && !c->naive) {
        /* Anchor it, then cache it if the anchored string is this one
         * (short strings are interned by Lua, so it nearly always is). */
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->names_ref);
        int names = lua_gettop(L);
        push_name(c, L, names, name);
        if (lua_tostring(L, -1) == s)
            key_cache_add(c, s, name);
        lua_pop(L, 2);
    }
    return name;
}

/* ---- JSON text -> Lua ------------------------------------------------------------ */

typedef struct json_in {
    slua_conv *c;
    lua_State *L;
    const char *p, *end;
    const char *start;
    const char *what;
} json_in;

static int json_fail(json_in *in, const char *expected)
{
    return luaL_error(in->L, "%s: invalid JSON: expected %s at byte %d", in->what, expected,
                      (int)(in->p - in->start));
}

static void skip_ws(json_in *in)
{
    while (in->p < in->end &&
           (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
        in->p++;
}

static int hex4(json_in *in)
{
    if (in->end - in->p < 4)
        return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = in->p[i];
        v <<= 4;
        if (h >= '0' && h <= '9')
            v |= h - '0';
        else if (h >= 'a' && h <= 'f')
            v |= h - 'a' + 10;
        else if (h >= 'A' && h <= 'F')
            v |= h - 'A' + 10;
        else
            return -1;
    }
    in->p += 4;
    return v;
}

static void add_utf8(luaL_Buffer *b, unsigned cp)
{
    char u[4];
    int n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    luaL_addlstring(b, u, (size_t)n);
}

/* At the opening quote: push the string. */
static void parse_string(json_in *in)
{
    const char *s = ++in->p;
    while (in->p < in->end && *in->p != '"' && *in->p != '\\' && (unsigned char)*in->p >= 0x20)
        in->p++;
    if (in->p < in->end && *in->p == '"') { /* no escapes: the common case */
        lua_pushlstring(in->L, s, (size_t)(in->p - s));
        in->p++;
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(in->L, &b);
    luaL_addlstring(&b, s, (size_t)(in->p - s));
    for (;;) {
        if (in->p >= in->end)
            json_fail(in, "'\"' to end the string");
        unsigned char ch = (unsigned char)*in->p;
        if (ch == '"') {
            in->p++;
            break;
        }
        if (ch < 0x20)
            json_fail(in, "no control character inside a string");
        if (ch != '\\') {
            luaL_addchar(&b, (char)ch);
            in->p++;
            continue;
        }
        if (++in->p >= in->end)
            json_fail(in, "an escape");
        char e = *in->p++;
        switch (e) {
        case '"': luaL_addchar(&b, '"'); break;
        case '\\': luaL_addchar(&b, '\\'); break;
        case '/': luaL_addchar(&b, '/'); break;
        case 'b': luaL_addchar(&b, '\b'); break;
        case 'f': luaL_addchar(&b, '\f'); break;
        case 'n': luaL_addchar(&b, '\n'); break;
        case 'r': luaL_addchar(&b, '\r'); break;
        case 't': luaL_addchar(&b, '\t'); break;
        case 'u': {
            int cp = hex4(in);
            if (cp < 0)
                json_fail(in, "4 hex digits after \\u");
            if (cp >= 0xd800 && cp < 0xdc00 && in->end - in->p >= 6 && in->p[0] == '\\' &&
                in->p[1] == 'u') {
                const char *save = in->p;
                in->p += 2;
                int lo = hex4(in);
                if (lo >= 0xdc00 && lo < 0xe000)
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                else
                    in->p = save;
            }
            if (cp >= 0xd800 && cp < 0xe000)
                cp = 0xfffd; /* a lone surrogate: the replacement character */
            add_utf8(&b, (unsigned)cp);
            break;
        }
        default:
            in->p--;
            json_fail(in, "a valid escape");
        }
    }
    luaL_pushresult(&b);
}

static void parse_number(json_in *in)
{
    const char *s = in->p;
    bool integral = true;
    if (in->p < in->end && *in->p == '-')
        in->p++;
    if (in->p >= in->end || !(*in->p >= '0' && *in->p <= '9'))
        json_fail(in, "a digit");
    if (*in->p == '0')
        in->p++;
    else
        while (in->p < in->end && *in->p >= '0' && *in->p <= '9')
            in->p++;
    if (in->p < in->end && *in->p == '.') {
        integral = false;
        in->p++;
        if (in->p >= in->end || !(*in->p >= '0' && *in->p <= '9'))
            json_fail(in, "a digit after '.'");
        while (in->p < in->end && *in->p >= '0' && *in->p <= '9')
            in->p++;
    }
    if (in->p < in->end && (*in->p == 'e' || *in->p == 'E')) {
        integral = false;
        in->p++;
        if (in->p < in->end && (*in->p == '+' || *in->p == '-'))
            in->p++;
        if (in->p >= in->end || !(*in->p >= '0' && *in->p <= '9'))
            json_fail(in, "a digit in the exponent");
        while (in->p < in->end && *in->p >= '0' && *in->p <= '9')
            in->p++;
    }
    size_t len = (size_t)(in->p - s);
    char tmp[64];
    if (len >= sizeof tmp) { /* absurdly long: a float, via Lua's own reader */
        lua_pushlstring(in->L, s, len);
        if (!lua_stringtonumber(in->L, lua_tostring(in->L, -1)))
            json_fail(in, "a number");
        lua_remove(in->L, -2);
    } else {
        memcpy(tmp, s, len);
        tmp[len] = '\0';
        if (!lua_stringtonumber(in->L, tmp))
            json_fail(in, "a number");
    }
    /* "1e2" reads as a float in Lua too; an integer too large for int64
     * becomes a float, like the core's decoder does. */
    if (!integral && lua_isinteger(in->L, -1)) {
        lua_Number d = (lua_Number)lua_tointeger(in->L, -1);
        lua_pop(in->L, 1);
        lua_pushnumber(in->L, d);
    }
}

static bool literal(json_in *in, const char *word, size_t len)
{
    if ((size_t)(in->end - in->p) < len || memcmp(in->p, word, len) != 0)
        return false;
    in->p += len;
    return true;
}

static void parse_value(json_in *in, int depth);

static void parse_object(json_in *in, int depth)
{
    lua_State *L = in->L;
    lua_newtable(L);
    in->p++;
    skip_ws(in);
    if (in->p < in->end && *in->p == '}') {
        in->p++;
        return;
    }
    for (;;) {
        skip_ws(in);
        if (in->p >= in->end || *in->p != '"')
            json_fail(in, "a key string");
        parse_string(in);
        skip_ws(in);
        if (in->p >= in->end || *in->p != ':')
            json_fail(in, "':'");
        in->p++;
        parse_value(in, depth + 1);
        lua_rawset(L, -3);
        skip_ws(in);
        if (in->p < in->end && *in->p == ',') {
            in->p++;
            continue;
        }
        if (in->p < in->end && *in->p == '}') {
            in->p++;
            return;
        }
        json_fail(in, "',' or '}'");
    }
}

static void parse_array(json_in *in, int depth)
{
    lua_State *L = in->L;
    lua_newtable(L);
    slua_push_array_mt(in->c, L);
    lua_setmetatable(L, -2);
    in->p++;
    skip_ws(in);
    if (in->p < in->end && *in->p == ']') {
        in->p++;
        return;
    }
    for (lua_Integer i = 1;; i++) {
        parse_value(in, depth + 1);
        lua_rawseti(L, -2, i);
        skip_ws(in);
        if (in->p < in->end && *in->p == ',') {
            in->p++;
            continue;
        }
        if (in->p < in->end && *in->p == ']') {
            in->p++;
            return;
        }
        json_fail(in, "',' or ']'");
    }
}

static void parse_value(json_in *in, int depth)
{
    if (depth > MAX_JSON_DEPTH)
        luaL_error(in->L, "%s: JSON nested deeper than %d", in->what, MAX_JSON_DEPTH);
    luaL_checkstack(in->L, 4, "JSON nested too deep");
    skip_ws(in);
    if (in->p >= in->end)
        json_fail(in, "a value");
    switch (*in->p) {
    case '{':
        parse_object(in, depth);
        return;
    case '[':
        parse_array(in, depth);
        return;
    case '"':
        parse_string(in);
        return;
    case 't':
        if (!literal(in, "true", 4))
            json_fail(in, "a value");
        lua_pushboolean(in->L, 1);
        return;
    case 'f':
        if (!literal(in, "false", 5))
            json_fail(in, "a value");
        lua_pushboolean(in->L, 0);
        return;
    case 'n':
        if (!literal(in, "null", 4))
            json_fail(in, "a value");
        lua_pushlightuserdata(in->L, SLUA_NULL);
        return;
    default:
        if (*in->p == '-' || (*in->p >= '0' && *in->p <= '9'))
            parse_number(in);
        else
            json_fail(in, "a value");
    }
}

void slua_push_json(slua_conv *c, lua_State *L, const char *text, size_t len, const char *what)
{
    json_in in = {c, L, text, text + len, text, what};
    parse_value(&in, 0);
    skip_ws(&in);
    if (in.p != in.end)
        json_fail(&in, "the end of the text");
}

/* ---- Lua -> JSON text ---------------------------------------------------------------- */

static void put(lua_State *L, sl_bytes *out, const char *p, size_t len)
{
    if (!sl_bytes_put(out, p, len))
        oom(L);
}

static void putc_(lua_State *L, sl_bytes *out, char ch)
{
    if (!slua_buf_putc(out, ch))
        oom(L);
}

static void encode_string(lua_State *L, const char *s, size_t len, sl_bytes *out)
{
    static const char hex[] = "0123456789abcdef";
    putc_(L, out, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        put(L, out, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        put(L, out, esc, n);
    }
    put(L, out, s + run, len - run);
    putc_(L, out, '"');
}

/* The shortest of %.15g..%.17g that reads back as d, with ".0" when it
 * would otherwise read back as an integer. Non-finite numbers are null. */
static size_t format_double(double d, char *buf, size_t size)
{
    if (!isfinite(d)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, size - 2, "%.*g", prec, d);
        if (prec == 17 || strtod(buf, NULL) == d)
            break;
    }
    for (int i = 0; i < n; i++)
        if (buf[i] == ',') /* a locale's decimal comma */
            buf[i] = '.';
    if (!strpbrk(buf, ".eEn")) {
        buf[n++] = '.';
        buf[n++] = '0';
        buf[n] = '\0';
    }
    return (size_t)n;
}

static void encode_number(lua_State *L, int idx, sl_bytes *out)
{
    char tmp[48];
    size_t n;
    if (lua_isinteger(L, idx))
        n = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(L, idx));
    else
        n = format_double((double)lua_tonumber(L, idx), tmp, sizeof tmp);
    put(L, out, tmp, n);
}

static void encode_any(slua_conv *c, lua_State *L, int idx, sl_bytes *out, int depth);

/* Array: marked with the array metatable, or keys exactly 1..n, n > 0. */
static bool as_array(slua_conv *c, lua_State *L, int idx, lua_Integer *n)
{
    *n = (lua_Integer)lua_rawlen(L, idx);
    if (lua_getmetatable(L, idx)) {
        slua_push_array_mt(c, L);
        bool marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked)
            return true;
    }
    if (*n == 0)
        return false;
    lua_Integer count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > *n) {
            lua_pop(L, 1);
            return false;
        }
        count++;
    }
    return count == *n;
}

typedef struct object_key {
    const char *s; /* a string key's bytes (anchored by the table); NULL: num[] */
    size_t len;
    int index;     /* 1-based position in the list of original keys */
    char num[40];  /* a number key's text */
} object_key;

static const char *key_text(const object_key *k)
{
    return k->s ? k->s : k->num;
}

static int compare_keys(const void *a, const void *b)
{
    const object_key *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(key_text(x), key_text(y), n);
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

static void encode_object(slua_conv *c, lua_State *L, int idx, sl_bytes *out, int depth)
{
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        n++;
    }
    /* The original keys in a list (to fetch the values in sorted order) and
     * a userdata for the sort: both collected if a value raises. */
    lua_createtable(L, (int)n, 0);
    int keys = lua_gettop(L);
    object_key *k = lua_newuserdatauv(L, (n ? n : 1) * sizeof *k, 0);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* n is exact: nothing changes the table meanwhile */
        lua_pop(L, 1);
        object_key *e = &k[i];
        int kt = lua_type(L, -1);
        if (kt == LUA_TSTRING) {
            e->s = lua_tolstring(L, -1, &e->len);
        } else if (kt == LUA_TNUMBER) {
            e->s = NULL;
            e->len = lua_isinteger(L, -1)
                         ? (size_t)snprintf(e->num, sizeof e->num, "%lld",
                                            (long long)lua_tointeger(L, -1))
                         : format_double((double)lua_tonumber(L, -1), e->num, sizeof e->num);
        } else {
            luaL_error(L, "a table key of type %s cannot become JSON (keys are strings or "
                          "numbers)",
                       lua_typename(L, kt));
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, keys, (lua_Integer)(i + 1));
        e->index = (int)(i + 1);
        i++;
    }
    qsort(k, n, sizeof *k, compare_keys);
    putc_(L, out, '{');
    for (i = 0; i < n; i++) {
        if (i)
            putc_(L, out, ',');
        encode_string(L, key_text(&k[i]), k[i].len, out);
        putc_(L, out, ':');
        lua_rawgeti(L, keys, k[i].index);
        lua_rawget(L, idx);
        encode_any(c, L, lua_gettop(L), out, depth + 1);
        lua_pop(L, 1);
    }
    putc_(L, out, '}');
    lua_pop(L, 2);
}

static void encode_table(slua_conv *c, lua_State *L, int idx, sl_bytes *out, int depth)
{
    if (depth >= MAX_JSON_DEPTH)
        luaL_error(L, "tables nested deeper than %d", MAX_JSON_DEPTH);
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < depth; i++)
        if (c->ancestors[i] == self)
            luaL_error(L, "a table that contains itself (a cycle) cannot become JSON");
    c->ancestors[depth] = self;
    luaL_checkstack(L, 8, "tables nested too deep");
    slua_table_complete(c, L, idx);
    lua_Integer n;
    if (!as_array(c, L, idx, &n)) {
        encode_object(c, L, idx, out, depth);
        return;
    }
    putc_(L, out, '[');
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1)
            putc_(L, out, ',');
        lua_rawgeti(L, idx, i);
        encode_any(c, L, lua_gettop(L), out, depth + 1);
        lua_pop(L, 1);
    }
    putc_(L, out, ']');
}

static void encode_any(slua_conv *c, lua_State *L, int idx, sl_bytes *out, int depth)
{
    size_t len;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put(L, out, "null", 4);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put(L, out, "true", 4);
        else
            put(L, out, "false", 5);
        return;
    case LUA_TNUMBER:
        encode_number(L, idx, out);
        return;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        encode_string(L, s, len, out);
        return;
    case LUA_TTABLE:
        encode_table(c, L, idx, out, depth);
        return;
    case LUA_TLIGHTUSERDATA:
        if (slua_is_null(L, idx)) {
            put(L, out, "null", 4);
            return;
        }
        break;
    default:
        break;
    }
    luaL_error(L, "a %s cannot become JSON", luaL_typename(L, idx));
}

void slua_encode_json(slua_conv *c, lua_State *L, int idx, sl_bytes *out)
{
    encode_any(c, L, lua_absindex(L, idx), out, 0);
}

/* ---- Values ------------------------------------------------------------------------ */

void slua_push_value(slua_conv *c, lua_State *L, const sluice_value *v)
{
    switch (v->type) {
    case SLUICE_BOOL:
        lua_pushboolean(L, v->u.b);
        return;
    case SLUICE_INT:
        lua_pushinteger(L, (lua_Integer)v->u.i);
        return;
    case SLUICE_DOUBLE:
        lua_pushnumber(L, (lua_Number)v->u.d);
        return;
    case SLUICE_STRING:
        lua_pushlstring(L, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len);
        return;
    case SLUICE_JSON:
        slua_push_json(c, L, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, "nested field");
        return;
    case SLUICE_NULL:
    default:
        lua_pushlightuserdata(L, SLUA_NULL);
        return;
    }
}

/* ---- Lazy record tables ---------------------------------------------------------------- */

static slua_conv *conv_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static int record_stale(lua_State *L)
{
    return luaL_error(L, "record table used after its process() call returned: copy the "
                         "fields you need into a table of your own");
}

/* The input field the key at idx names (-1: none). Never interns: reading
 * r[some_value] must not grow the core's name table. */
static int64_t input_field(slua_conv *c, lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        return -1;
    const sluice_record *r = c->lazy_rec;
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    sluice_name name = key_cache_find(c, s);
    if (name) {
        for (uint32_t j = 0; j < r->nfields; j++)
            if (r->fields[j].name == name)
                return j;
        return -1;
    }
    for (uint32_t j = 0; j < r->nfields; j++) {
        const char *fn = c->host->name_of(r->fields[j].name);
        if (fn && strlen(fn) == len && memcmp(fn, s, len) == 0) {
            field_name(c, L, idx); /* an existing name: caches its address */
            return j;
        }
    }
    return -1;
}

/* Field j into the table at t (not loaded before). */
static void load_field(slua_conv *c, lua_State *L, int t, int names, uint32_t j)
{
    const sluice_field *f = &c->lazy_rec->fields[j];
    push_name(c, L, names, f->name);
    slua_push_value(c, L, &f->value);
    lua_rawset(L, t);
    c->loaded[j] = 1;
}

static void load_all(slua_conv *c, lua_State *L, int t)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->names_ref);
    int names = lua_gettop(L);
    for (uint32_t j = 0; j < c->lazy_rec->nfields; j++)
        if (!c->loaded[j])
            load_field(c, L, t, names, j);
    lua_pop(L, 1);
}

static int record_index(lua_State *L)
{
    slua_conv *c = conv_of(L);
    if (lua_topointer(L, 1) != c->lazy_table)
        return record_stale(L);
    int64_t j = input_field(c, L, 2);
    if (j < 0 || c->loaded[j])
        return 0; /* not a field, or one the script removed */
    slua_push_value(c, L, &c->lazy_rec->fields[j].value);
    c->loaded[j] = 1;
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

static int record_newindex(lua_State *L)
{
    slua_conv *c = conv_of(L);
    if (lua_topointer(L, 1) != c->lazy_table)
        return record_stale(L);
    int64_t j = input_field(c, L, 2);
    if (j >= 0)
        c->loaded[j] = 1; /* written over (or removed) before being read */
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 0;
}

static int record_pairs(lua_State *L)
{
    slua_conv *c = conv_of(L);
    if (lua_topointer(L, 1) != c->lazy_table)
        return record_stale(L);
    load_all(c, L, 1);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

void slua_table_complete(slua_conv *c, lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return;
    idx = lua_absindex(L, idx);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->record_mt_ref);
    bool lazy = lua_rawequal(L, -1, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->stale_mt_ref);
    bool stale = lua_rawequal(L, -1, -3);
    lua_pop(L, 3);
    if (stale || (lazy && lua_topointer(L, idx) != c->lazy_table))
        record_stale(L);
    if (lazy)
        load_all(c, L, idx);
}

static void eager_record(slua_conv *c, lua_State *L, const sluice_record *r)
{
    lua_createtable(L, 0, (int)r->nfields);
    int t = lua_gettop(L);
    for (uint32_t i = 0; i < r->nfields; i++) {
        const sluice_field *f = &r->fields[i];
        lua_pushstring(L, c->host->name_of(f->name));
        slua_push_value(c, L, &f->value);
        lua_rawset(L, t);
    }
}

void slua_push_record(slua_conv *c, lua_State *L, const sluice_record *r)
{
    if (r->nfields > c->caploaded) {
        uint8_t *loaded = realloc(c->loaded, r->nfields);
        if (!loaded)
            oom(L);
        c->loaded = loaded;
        c->caploaded = r->nfields;
    }
    c->lazy_rec = r;
    if (c->naive) {
        eager_record(c, L, r);
        memset(c->loaded, 1, r->nfields);
        return;
    }
    memset(c->loaded, 0, r->nfields);
    lua_createtable(L, 0, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->record_mt_ref);
    lua_setmetatable(L, -2);
    c->lazy_table = lua_topointer(L, -1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, c->current_ref);
}

void slua_record_done(slua_conv *c, lua_State *L)
{
    c->lazy_rec = NULL;
    if (!c->lazy_table)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->current_ref);
    if (lua_topointer(L, -1) == c->lazy_table) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->stale_mt_ref);
        lua_setmetatable(L, -2);
    }
    lua_pop(L, 1);
    c->lazy_table = NULL;
}

static sluice_str arena_copy(slua_conv *c, lua_State *L, sluice_batch *b, const void *p,
                             size_t len)
{
    sluice_str s = c->host->str(b, p, len);
    if (!s.ptr)
        oom(L);
    return s;
}

/* The Lua value at idx as the value of field `name`, strings in b. */
static sluice_value to_value(slua_conv *c, lua_State *L, int idx, sluice_batch *b,
                             sluice_name name)
{
    sluice_value v = sluice_null();
    size_t len;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return sluice_bool(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        return lua_isinteger(L, idx) ? sluice_int((int64_t)lua_tointeger(L, idx))
                                     : sluice_double((double)lua_tonumber(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        return sluice_string(arena_copy(c, L, b, s, len));
    case LUA_TTABLE:
        c->json.len = 0;
        slua_encode_json(c, L, idx, &c->json);
        v.type = SLUICE_JSON;
        v.u.s = arena_copy(c, L, b, c->json.data, c->json.len);
        return v;
    case LUA_TLIGHTUSERDATA:
        if (slua_is_null(L, idx))
            return v;
        break;
    default:
        break;
    }
    luaL_error(L, "field '%s': a %s cannot be a field value", c->host->name_of(name),
               luaL_typename(L, idx));
    return v;
}

/* Is the Lua value at idx what `orig` already holds? When it is not and
 * it is a table, its JSON text is left in c->json. */
static bool same_value(slua_conv *c, lua_State *L, int idx, const sluice_value *orig)
{
    int t = lua_type(L, idx);
    size_t len;
    const char *s;
    switch (orig->type) {
    case SLUICE_NULL:
        return t == LUA_TLIGHTUSERDATA && slua_is_null(L, idx);
    case SLUICE_BOOL:
        return t == LUA_TBOOLEAN && lua_toboolean(L, idx) == orig->u.b;
    case SLUICE_INT:
        return t == LUA_TNUMBER && lua_isinteger(L, idx) && lua_tointeger(L, idx) == orig->u.i;
    case SLUICE_DOUBLE:
        return t == LUA_TNUMBER && !lua_isinteger(L, idx) && lua_tonumber(L, idx) == orig->u.d;
    case SLUICE_STRING:
        if (t != LUA_TSTRING)
            return false;
        s = lua_tolstring(L, idx, &len);
        return len == orig->u.s.len && (len == 0 || memcmp(s, orig->u.s.ptr, len) == 0);
    case SLUICE_JSON:
        if (t != LUA_TTABLE)
            return false;
        c->json.len = 0;
        slua_encode_json(c, L, idx, &c->json);
        return c->json.len == orig->u.s.len &&
               (c->json.len == 0 || memcmp(c->json.data, orig->u.s.ptr, c->json.len) == 0);
    }
    return false;
}

/* ---- Records --------------------------------------------------------------------------- */

static void grow_added(slua_conv *c, lua_State *L, size_t n)
{
    if (n <= c->capadded)
        return;
    size_t cap = c->capadded ? c->capadded : 16;
    while (cap < n)
        cap *= 2;
    sluice_field *a = realloc(c->added, cap * sizeof *a);
    if (!a)
        oom(L);
    c->added = a;
    c->capadded = cap;
}

/* Where field `name` sits in the indexed input record (index_input), or
 * UINT32_MAX when it does not. */
static uint32_t input_rank(const slua_conv *c, sluice_name name)
{
    return name < c->capnames && c->stamp[name] == c->cur_stamp ? c->pos[name] : UINT32_MAX;
}

static bool field_before(const slua_conv *c, const sluice_field *a, const sluice_field *b)
{
    uint32_t ra = input_rank(c, a->name), rb = input_rank(c, b->name);
    if (ra != rb)
        return ra < rb;
    return ra == UINT32_MAX &&
           strcmp(c->host->name_of(a->name), c->host->name_of(b->name)) < 0;
}

/* Insertion sort of c->added[from, n): fields of the input record first,
 * in its order, then the others by name, so output does not depend on
 * Lua's table order. A handful of fields; qsort() has no context. */
static void sort_added(const slua_conv *c, size_t from, size_t n)
{
    for (size_t i = from + 1; i < n; i++) {
        sluice_field f = c->added[i];
        size_t j = i;
        while (j > from && field_before(c, &f, &c->added[j - 1])) {
            c->added[j] = c->added[j - 1];
            j--;
        }
        c->added[j] = f;
    }
}

/* An arena array of n fields for a record about to be appended to b. The
 * record's `capfields` stays 0 (as host->record_copy leaves it): the core
 * then copies the array before anyone changes it, as for any record whose
 * fields it does not own (the generate source does the same). */
static sluice_field *field_array(slua_conv *c, lua_State *L, sluice_batch *b, size_t n)
{
    if (n == 0)
        return NULL;
    sluice_field *f = c->host->alloc(b, n * sizeof *f);
    if (!f)
        oom(L);
    return f;
}

static void index_input(slua_conv *c, lua_State *L, const sluice_record *rec);

sluice_record *slua_new_record(slua_conv *c, lua_State *L, int idx, sluice_batch *b)
{
    idx = lua_absindex(L, idx);
    slua_table_complete(c, L, idx);
    static const sluice_record no_fields = {0};
    index_input(c, L, c->lazy_rec ? c->lazy_rec : &no_fields); /* input fields keep their order */
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        grow_added(c, L, n + 1);
        sluice_name name = field_name(c, L, -2);
        c->added[n].name = name;
        c->added[n].value = to_value(c, L, -1, b, name);
        n++;
        lua_pop(L, 1);
    }
    sort_added(c, 0, n);
    sluice_field *f = field_array(c, L, b, n);
    sluice_record *r = c->host->record_append(b);
    if (!r)
        return oom(L);
    if (n)
        memcpy(f, c->added, n * sizeof *f);
    r->fields = f;
    r->nfields = (uint32_t)n;
    return r;
}

/* Room for names up to `max` and `nfields` per-field slots; a new stamp. */
static void prepare_positions(slua_conv *c, lua_State *L, sluice_name max, uint32_t nfields)
{
    if ((size_t)max >= c->capnames) {
        size_t cap = c->capnames ? c->capnames : 256;
        while (cap <= (size_t)max)
            cap *= 2;
        uint32_t *stamp = realloc(c->stamp, cap * sizeof *stamp);
        if (stamp)
            c->stamp = stamp;
        uint32_t *pos = realloc(c->pos, cap * sizeof *pos);
        if (pos)
            c->pos = pos;
        if (!stamp || !pos)
            oom(L);
        memset(c->stamp + c->capnames, 0, (cap - c->capnames) * sizeof *stamp);
        c->capnames = cap;
    }
    if (nfields > c->capseen) {
        uint8_t *seen = realloc(c->seen, nfields);
        if (seen)
            c->seen = seen;
        sluice_value *vals = realloc(c->vals, nfields * sizeof *vals);
        if (vals)
            c->vals = vals;
        if (!seen || !vals)
            oom(L);
        c->capseen = nfields;
    }
    if (++c->cur_stamp == 0) { /* wrapped: old stamps could match again */
        memset(c->stamp, 0, c->capnames * sizeof *c->stamp);
        c->cur_stamp = 1;
    }
}

/* Index rec's fields by name (a new stamp): input_rank() and the
 * position lookups of collect_changes() then work in O(1). */
static void index_input(slua_conv *c, lua_State *L, const sluice_record *rec)
{
    sluice_name max = 0;
    for (uint32_t j = 0; j < rec->nfields; j++)
        if (rec->fields[j].name > max)
            max = rec->fields[j].name;
    prepare_positions(c, L, max, rec->nfields);
    for (uint32_t j = 0; j < rec->nfields; j++) {
        c->stamp[rec->fields[j].name] = c->cur_stamp;
        c->pos[rec->fields[j].name] = j;
    }
}

enum { FIELD_GONE = 0, FIELD_SAME = 1, FIELD_CHANGED = 2 };

/* Compare the table at idx with orig: c->seen[j] says what became of input
 * field j (FIELD_GONE only counts for fields the script touched), the
 * new value of a changed one is in c->vals[j], and the new fields are in
 * c->added, sorted by name. Returns how many new fields; *changes is
 * whether anything differs from orig at all. */
static size_t collect_changes(slua_conv *c, lua_State *L, int idx, sluice_batch *b,
                              const sluice_record *orig, bool *changes)
{
    uint32_t nf = orig->nfields;
    index_input(c, L, orig);
    for (uint32_t j = 0; j < nf; j++)
        c->seen[j] = FIELD_GONE;
    size_t nnew = 0;
    *changes = false;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        sluice_name name = field_name(c, L, -2);
        if (name < c->capnames && c->stamp[name] == c->cur_stamp) {
            uint32_t j = c->pos[name];
            const sluice_value *was = &orig->fields[j].value;
            if (same_value(c, L, -1, was)) {
                c->seen[j] = FIELD_SAME;
            } else if (lua_type(L, -1) == LUA_TTABLE && was->type == SLUICE_JSON) {
                c->seen[j] = FIELD_CHANGED; /* same_value() left its JSON text */
                c->vals[j].type = SLUICE_JSON;
                c->vals[j].u.s = arena_copy(c, L, b, c->json.data, c->json.len);
            } else {
                c->seen[j] = FIELD_CHANGED;
                c->vals[j] = to_value(c, L, -1, b, name);
            }
            *changes |= c->seen[j] == FIELD_CHANGED;
        } else {
            grow_added(c, L, nnew + 1);
            c->added[nnew].name = name;
            c->added[nnew].value = to_value(c, L, -1, b, name);
            nnew++;
        }
        lua_pop(L, 1);
    }
    sort_added(c, 0, nnew);
    if (nnew)
        *changes = true;
    for (uint32_t j = 0; j < nf && !*changes; j++)
        *changes = c->seen[j] == FIELD_GONE && c->loaded[j];
    return nnew;
}

sluice_record *slua_updated_record(slua_conv *c, lua_State *L, int idx, sluice_batch *b,
                                   const sluice_batch *in, const sluice_record *orig)
{
    idx = lua_absindex(L, idx);
    bool changes;
    size_t nnew = collect_changes(c, L, idx, b, orig, &changes);
    uint32_t nf = orig->nfields;
    sluice_field *f = NULL;
    size_t n = 0;
    if (changes) {
        f = field_array(c, L, b, nf + nnew);
        for (uint32_t j = 0; j < nf; j++) {
            if (c->seen[j] == FIELD_GONE && c->loaded[j])
                continue; /* read or written, then removed */
            f[n].name = orig->fields[j].name;
            f[n].value = c->seen[j] == FIELD_CHANGED ? c->vals[j] : orig->fields[j].value;
            n++;
        }
        for (size_t i = 0; i < nnew; i++)
            f[n++] = c->added[i];
    }
    sluice_record *r = c->host->record_copy(b, in, orig);
    if (!r)
        return oom(L);
    if (changes) {
        r->fields = f;
        r->nfields = (uint32_t)n;
    }
    return r;
}
