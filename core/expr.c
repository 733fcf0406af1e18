/*
 * expr.c — Lua 5.4 expressions over a record's fields (`where:`, `set:`).
 *
 * Why Lua: users know it from Fluent Bit and Redis, and it is small: one
 * sandboxed interpreter per expression holds ~15 KiB. Why this shape: a
 * `where:` filter runs once per record on the hot path, so the per-record
 * work must be a handful of stack pushes and one call, nothing more.
 *
 * Compiling (once, at create()):
 *   1. `return EXPR` is loaded alone, so a syntax error is reported on the
 *      user's own text ("[expr]:1: unexpected symbol near <eof>") and the
 *      source is known to be an expression (a `return` must end its chunk),
 *      never statements smuggled around our wrapper.
 *   2. A small lexer (strings, long brackets and comments skipped) finds the
 *      free names: every identifier that is not a keyword, a local the
 *      expression declares itself, a member after `.` or `:`, a table
 *      constructor key, or an allowed global used as one (a library before
 *      `.`, a function being called; elsewhere `type` or `error` is the
 *      field of that name). A free name followed by `.name.name` is one
 *      dotted chain (`user.id`).
 *   3. The chunk `return function(p1, p2, ...) return (EXPR) end` is built
 *      with each chain rewritten to one parameter; plain names keep their own
 *      name as the parameter, so Lua's messages still say
 *      "(local 'bytes')". Field names are interned now, so evaluating is a
 *      scan over a record's integer names.
 *
 * Evaluating: push the function and one value per parameter (absent → nil;
 * SLUICE_JSON fields go in as their JSON *text*, a Lua string; a chain
 * a.b.c is the field named "a.b.c" if present, else the path "c" inside
 * the JSON of field "a.b", else the path "b.c" inside field "a"),
 * lua_pcall, convert the one result: nil → NULL, boolean, integer → INT,
 * float → DOUBLE, string → STRING copied into the out batch's arena, table
 * → SLUICE_JSON text. `status_code >= 400` over ten-field records costs
 * ~35 ns per record (tests/unit/test_expr.c prints the figure), so no C
 * fast path for simple shapes is needed.
 *
 * Sandbox: one lua_State per expression (a stage runs on its own thread).
 * Its globals hold only the pure base functions of allowed_functions[] and
 * the libraries string, math, table and utf8: no io, os, require, load,
 * dofile, collectgarbage, print, debug, setmetatable. Every other free name
 * is a record field, so `os` is a field (nil, unless the record has one);
 * calling a free name (`os.execute(...)`, `require "x"`) can never work on
 * a field value, so it is refused at compile time with the list of what is
 * available. Writing a global is an error. Chunks load as text only (no
 * precompiled bytecode). An allocator caps each state's memory while it
 * runs user code; an instruction count hook stops `while true do end` after
 * SL_EXPR_BUDGET instructions — installed only when the source contains a
 * loop or a function (straight-line code always terminates, and the hook
 * makes every VM instruction slower).
 */
#include "expr.h"

#include "json.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#define SL_EXPR_BUDGET 1000000           /* VM instructions per evaluation */
#define SL_EXPR_MEM_LIMIT (64u << 20)    /* bytes a state may hold while evaluating */
#define SL_EXPR_MAX_PARAMS 180           /* Lua allows 200 locals per function */
#define SL_EXPR_SCRATCH_MAX (1u << 20)   /* recycle the path scratch batch past this */
#define SL_EXPR_JSON_DEPTH 64            /* nested tables in a result */
#define SL_EXPR_CHUNK "=[expr]"          /* messages read "[expr]:1: ..." */

/* What the sandbox keeps. Such a name is the global only where it is used
 * as one: a library followed by `.`, `:` or `[` (`string.format`), a
 * function being called (`tostring(x)`). Anywhere else it reads the field
 * of that name, so `type == "click"` and `error ~= nil` mean what they say. */
static const char *const allowed_libraries[] = {"math", "string", "table", "utf8", NULL};
static const char *const allowed_functions[] = {
    "tostring", "tonumber", "type", "pairs", "ipairs", "select", "error",
    "pcall", "next", "rawget", "rawequal", "rawlen", NULL,
};

static const char *const lua_keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
    "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
    "true", "until", "while", NULL,
};

/* One way to find a dotted chain's value: the field `name`, and when path
 * is not NULL, the path inside that field's JSON text. */
typedef struct lookup {
    sluice_name name;
    char *path;
} lookup;

/* One parameter of the compiled function: a plain name has one lookup; a
 * chain a.b.c has "a.b.c", then ("a.b", "c"), then ("a", "b.c"). */
typedef struct param {
    char *text;    /* the chain as written, without spaces: "user.id" */
    char *lua;     /* the parameter's name in the generated chunk */
    size_t nlookups;
    lookup *lookups;
} param;

struct sl_expr {
    lua_State *L;          /* stack slot 1 holds the compiled function */
    size_t nparams;
    param *params;
    bool needs_budget;     /* the source has loops or functions */
    bool budget_exceeded;
    bool limit_memory;     /* enforce SL_EXPR_MEM_LIMIT (only in user code) */
    size_t mem;            /* bytes held by L */
    sluice_batch *scratch; /* strings found by JSON path, pushed then dropped */
    sluice_buf json;       /* table results are encoded here first */
};

/* ---- Small string helpers ---------------------------------------------- */

static bool in_list(const char *const *list, const char *p, size_t len)
{
    for (size_t i = 0; list[i]; i++)
        if (strlen(list[i]) == len && memcmp(list[i], p, len) == 0)
            return true;
    return false;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *arg)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, arg);
}

static char *dup_range(const char *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* ---- Lexer --------------------------------------------------------------- */

typedef enum tok_kind { TK_NAME, TK_STRING, TK_OTHER } tok_kind;

typedef struct token {
    tok_kind kind;
    size_t start, len;
} token;

typedef struct tokens {
    size_t n, cap;
    token *v;
} tokens;

static int tok_push(tokens *t, tok_kind kind, size_t start, size_t len)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        token *v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return -1;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = (token){kind, start, len};
    return 0;
}

/* At s[i] == '[': the level of a long bracket `[==[`, or -1 if it is not one. */
static int long_bracket_level(const char *s, size_t i)
{
    size_t j = i + 1;
    while (s[j] == '=')
        j++;
    return s[j] == '[' ? (int)(j - i - 1) : -1;
}

/* Skip a long bracket of `level` opening at s[i]; index after its close. */
static size_t skip_long_bracket(const char *s, size_t i, int level)
{
    i += (size_t)level + 2;
    for (; s[i]; i++) {
        if (s[i] != ']')
            continue;
        size_t j = i + 1;
        while (s[j] == '=')
            j++;
        if (s[j] == ']' && (int)(j - i - 1) == level)
            return j + 1;
    }
    return i;
}

static size_t skip_quoted(const char *s, size_t i)
{
    char q = s[i++];
    for (; s[i] && s[i] != q; i++)
        if (s[i] == '\\' && s[i + 1])
            i++;
    return s[i] ? i + 1 : i;
}

static size_t skip_number(const char *s, size_t i)
{
    bool hex = s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X');
    for (; s[i]; i++) {
        char c = s[i];
        bool exp = hex ? (c == 'p' || c == 'P') : (c == 'e' || c == 'E');
        if (exp && (s[i + 1] == '+' || s[i + 1] == '-'))
            i++;
        else if (!isalnum((unsigned char)c) && c != '.' && c != '_')
            break;
    }
    return i;
}

/* Names, strings and punctuation of s; numbers and comments are dropped
 * (they never hold a free name; a string matters only as call syntax,
 * f"x"). The source already parsed as Lua, so the lexer can be forgiving. */
static int lex(const char *s, tokens *t)
{
    static const char *const three[] = {"...", NULL};
    static const char *const two[] = {"..", "==", "~=", "<=", ">=", "//", "::",
                                      "<<", ">>", NULL};
    size_t i = 0;
    while (s[i]) {
        unsigned char c = (unsigned char)s[i];
        if (isspace(c)) {
            i++;
        } else if (c == '-' && s[i + 1] == '-') {
            int level = s[i + 2] == '[' ? long_bracket_level(s, i + 2) : -1;
            if (level >= 0) {
                i = skip_long_bracket(s, i + 2, level);
            } else {
                while (s[i] && s[i] != '\n')
                    i++;
            }
        } else if (c == '"' || c == '\'' || (c == '[' && long_bracket_level(s, i) >= 0)) {
            size_t start = i;
            i = c == '[' ? skip_long_bracket(s, i, long_bracket_level(s, i)) : skip_quoted(s, i);
            if (tok_push(t, TK_STRING, start, i - start) < 0)
                return -1;
        } else if (isdigit(c) || (c == '.' && isdigit((unsigned char)s[i + 1]))) {
            i = skip_number(s, i);
        } else if (isalpha(c) || c == '_') {
            size_t start = i;
            while (isalnum((unsigned char)s[i]) || s[i] == '_')
                i++;
            if (tok_push(t, TK_NAME, start, i - start) < 0)
                return -1;
        } else {
            size_t len = 1;
            if (in_list(three, s + i, strnlen(s + i, 3)))
                len = 3;
            else if (s[i + 1] && in_list(two, s + i, 2))
                len = 2;
            if (tok_push(t, TK_OTHER, i, len) < 0)
                return -1;
            i += len;
        }
    }
    return 0;
}

/* ---- Free names and chains ---------------------------------------------- */

typedef struct scan {
    const char *src;
    tokens toks;
    /* Names the expression declares itself (locals, parameters, loop
     * variables), ignoring scope: such a name never reads a field. */
    size_t nlocals, caplocals;
    const token **locals;
    bool has_loops; /* function, while, repeat, for, goto */
} scan;

static bool tok_is(const scan *sc, size_t i, const char *text)
{
    if (i >= sc->toks.n)
        return false;
    const token *tk = &sc->toks.v[i];
    return strlen(text) == tk->len && memcmp(sc->src + tk->start, text, tk->len) == 0;
}

static bool tok_is_name(const scan *sc, size_t i)
{
    return i < sc->toks.n && sc->toks.v[i].kind == TK_NAME &&
           !in_list(lua_keywords, sc->src + sc->toks.v[i].start, sc->toks.v[i].len);
}

static bool same_text(const scan *sc, const token *a, const token *b)
{
    return a->len == b->len && memcmp(sc->src + a->start, sc->src + b->start, a->len) == 0;
}

static int add_local(scan *sc, size_t i)
{
    if (sc->nlocals == sc->caplocals) {
        size_t cap = sc->caplocals ? sc->caplocals * 2 : 16;
        const token **v = realloc(sc->locals, cap * sizeof *v);
        if (!v)
            return -1;
        sc->locals = v;
        sc->caplocals = cap;
    }
    sc->locals[sc->nlocals++] = &sc->toks.v[i];
    return 0;
}

static bool is_local(const scan *sc, const token *tk)
{
    for (size_t i = 0; i < sc->nlocals; i++)
        if (same_text(sc, sc->locals[i], tk))
            return true;
    return false;
}

/* Record every name the expression declares: `local a, b <const>`,
 * `local function f`, `function (x, y)`, `for k, v in` / `for i =`. */
static int find_locals(scan *sc)
{
    for (size_t i = 0; i < sc->toks.n; i++) {
        if (tok_is(sc, i, "function") || tok_is(sc, i, "while") ||
            tok_is(sc, i, "repeat") || tok_is(sc, i, "for") || tok_is(sc, i, "goto"))
            sc->has_loops = true;
        if (tok_is(sc, i, "local") || tok_is(sc, i, "for")) {
            size_t j = i + 1;
            if (tok_is(sc, j, "function")) {
                if (tok_is_name(sc, j + 1) && add_local(sc, j + 1) < 0)
                    return -1;
                continue;
            }
            while (tok_is_name(sc, j)) {
                if (add_local(sc, j) < 0)
                    return -1;
                j++;
                if (tok_is(sc, j, "<")) /* attribute: <const>, <close> */
                    j += 3;
                if (!tok_is(sc, j, ","))
                    break;
                j++;
            }
        } else if (tok_is(sc, i, "function")) {
            size_t j = i + 1;
            while (j < sc->toks.n && !tok_is(sc, j, "("))
                j++;
            for (j++; j < sc->toks.n && !tok_is(sc, j, ")"); j++)
                if (tok_is_name(sc, j) && add_local(sc, j) < 0)
                    return -1;
        }
    }
    return 0;
}

/* Is token i followed by call syntax: `(`, a string literal or `{`? */
static bool is_called(const scan *sc, size_t i)
{
    return tok_is(sc, i + 1, "(") || tok_is(sc, i + 1, "{") ||
           (i + 1 < sc->toks.n && sc->toks.v[i + 1].kind == TK_STRING);
}

static bool is_allowed_global(const scan *sc, size_t i)
{
    const token *tk = &sc->toks.v[i];
    if (in_list(allowed_libraries, sc->src + tk->start, tk->len))
        return tok_is(sc, i + 1, ".") || tok_is(sc, i + 1, ":") || tok_is(sc, i + 1, "[");
    if (in_list(allowed_functions, sc->src + tk->start, tk->len))
        return is_called(sc, i);
    return false;
}

/* Is token i a free name, i.e. a read of a record field? */
static bool is_free_name(const scan *sc, size_t i)
{
    if (!tok_is_name(sc, i))
        return false;
    const token *tk = &sc->toks.v[i];
    if (is_local(sc, tk) || is_allowed_global(sc, i))
        return false;
    if (i > 0 && (tok_is(sc, i - 1, ".") || tok_is(sc, i - 1, ":") ||
                  tok_is(sc, i - 1, "::") || tok_is(sc, i - 1, "goto")))
        return false;
    /* `{ name = v }`: a table key, not a read. */
    if (i > 0 && tok_is(sc, i + 1, "=") &&
        (tok_is(sc, i - 1, "{") || tok_is(sc, i - 1, ",") || tok_is(sc, i - 1, ";")))
        return false;
    /* `function name(`: a function statement's own name. */
    if (i > 0 && tok_is(sc, i - 1, "function"))
        return false;
    return true;
}

/* ---- Parameters ---------------------------------------------------------- */

static void free_params(sl_expr *e)
{
    for (size_t i = 0; i < e->nparams; i++) {
        param *p = &e->params[i];
        for (size_t j = 0; j < p->nlookups; j++)
            free(p->lookups[j].path);
        free(p->lookups);
        free(p->text);
        free(p->lua);
    }
    free(e->params);
    e->params = NULL;
    e->nparams = 0;
}

/* The lookups of a chain "a.b.c": "a.b.c", then "a.b" + "c", then "a" + "b.c". */
static int build_lookups(param *p)
{
    size_t len = strlen(p->text), nsegs = 1;
    for (size_t i = 0; i < len; i++)
        nsegs += p->text[i] == '.';
    p->lookups = calloc(nsegs, sizeof *p->lookups);
    if (!p->lookups)
        return -1;
    size_t end = len;
    for (size_t k = 0; k < nsegs; k++) {
        lookup *lk = &p->lookups[p->nlookups++];
        lk->name = sl_intern(p->text, end);
        if (!lk->name)
            return -1;
        if (end < len && !(lk->path = dup_range(p->text + end + 1, len - end - 1)))
            return -1;
        while (end > 0 && p->text[--end] != '.')
            ;
    }
    return 0;
}

/* Does `name` clash with any name token of the source or another parameter? */
static bool name_taken(const sl_expr *e, const scan *sc, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < sc->toks.n; i++)
        if (sc->toks.v[i].kind == TK_NAME && sc->toks.v[i].len == len &&
            memcmp(sc->src + sc->toks.v[i].start, name, len) == 0)
            return true;
    for (size_t i = 0; i < e->nparams; i++)
        if (strcmp(e->params[i].lua, name) == 0)
            return true;
    return false;
}

/* A Lua name for chain "user.id": "user_id", made unique with a suffix. */
static char *chain_param_name(const sl_expr *e, const scan *sc, const char *text)
{
    size_t len = strlen(text);
    char *name = malloc(len + 16);
    if (!name)
        return NULL;
    for (size_t i = 0; i <= len; i++)
        name[i] = text[i] == '.' ? '_' : text[i];
    for (unsigned n = 2; name_taken(e, sc, name); n++)
        snprintf(name + len, 16, "_%u", n);
    return name;
}

/* The parameter for chain `text` (plain name or dotted), added if new. */
static param *param_for(sl_expr *e, const scan *sc, const char *text)
{
    for (size_t i = 0; i < e->nparams; i++)
        if (strcmp(e->params[i].text, text) == 0)
            return &e->params[i];
    if (e->nparams == SL_EXPR_MAX_PARAMS)
        return NULL;
    param *v = realloc(e->params, (e->nparams + 1) * sizeof *v);
    if (!v)
        return NULL;
    e->params = v;
    param *p = &e->params[e->nparams];
    memset(p, 0, sizeof *p);
    p->text = strdup(text);
    /* A plain name keeps its own name (Lua's messages then name the field),
     * unless it would shadow a global the expression also calls. */
    bool plain = !strchr(text, '.') && !in_list(allowed_libraries, text, strlen(text)) &&
                 !in_list(allowed_functions, text, strlen(text));
    p->lua = !p->text ? NULL : plain ? strdup(text) : chain_param_name(e, sc, text);
    e->nparams++; /* counted now so free_params() releases a half-built one */
    if (!p->lua || build_lookups(p) < 0)
        return NULL;
    return p;
}

static int buf_add(sluice_buf *b, const char *p, size_t len)
{
    return sl_buf_append(b, p, len);
}

static int buf_adds(sluice_buf *b, const char *s)
{
    return sl_buf_append(b, s, strlen(s));
}

/* Find the free names and chains of sc->src, register them as parameters
 * and write `return function(params) return (rewritten\n) end` into out. */
static int rewrite(sl_expr *e, scan *sc, sluice_buf *out, char *err, size_t errlen)
{
    sluice_buf body = {0};
    size_t copied = 0;
    char text[512];
    int rc = -1;
    for (size_t i = 0; i < sc->toks.n; i++) {
        if (!is_free_name(sc, i))
            continue;
        const token *first = &sc->toks.v[i], *last = first;
        size_t tlen = 0;
        bool fits = first->len < sizeof text;
        if (fits) {
            memcpy(text, sc->src + first->start, first->len);
            tlen = first->len;
        }
        while (tok_is(sc, i + 1, ".") && tok_is_name(sc, i + 2)) {
            const token *seg = &sc->toks.v[i + 2];
            if (tlen + 1 + seg->len >= sizeof text)
                fits = false;
            if (fits) {
                text[tlen++] = '.';
                memcpy(text + tlen, sc->src + seg->start, seg->len);
                tlen += seg->len;
            }
            last = seg;
            i += 2;
        }
        if (!fits) {
            set_err(err, errlen, "%s", "a field name in the expression is too long");
            goto out;
        }
        text[tlen] = '\0';
        if (is_called(sc, i)) { /* `os.execute(...)`, `print "x"`: never a field */
            set_err(err, errlen,
                    "'%s' is not available to expressions (they may call string, math, "
                    "table and utf8 functions and tostring, tonumber, type, pairs, ipairs, "
                    "select, error, pcall, next, rawget, rawequal, rawlen)",
                    text);
            goto out;
        }
        param *p = param_for(e, sc, text);
        if (!p) {
            set_err(err, errlen, "%s", e->nparams >= SL_EXPR_MAX_PARAMS
                                           ? "the expression reads too many fields"
                                           : "out of memory");
            goto out;
        }
        if (buf_add(&body, sc->src + copied, first->start - copied) < 0 ||
            buf_adds(&body, p->lua) < 0)
            goto oom;
        copied = last->start + last->len;
    }
    if (buf_adds(&body, sc->src + copied) < 0 || buf_adds(out, "return function(") < 0)
        goto oom;
    for (size_t i = 0; i < e->nparams; i++)
        if ((i && buf_adds(out, ", ") < 0) || buf_adds(out, e->params[i].lua) < 0)
            goto oom;
    if (buf_adds(out, ") return (") < 0 || buf_add(out, body.data, body.len) < 0 ||
        buf_adds(out, "\n) end") < 0 || buf_add(out, "", 1) < 0)
        goto oom;
    rc = 0;
    goto out;
oom:
    set_err(err, errlen, "%s", "out of memory");
out:
    sl_buf_free(&body);
    return rc;
}

/* ---- The Lua state ------------------------------------------------------- */

static sl_expr *expr_of(lua_State *L)
{
    return *(sl_expr **)lua_getextraspace(L);
}

/* Counts every byte the state holds; refuses to grow past the limit while
 * user code runs (Lua turns NULL into a "not enough memory" error). Outside
 * user code (pushing a large field) nothing is refused: Lua would abort. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sl_expr *e = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        e->mem -= old;
        return NULL;
    }
    if (e->limit_memory && nsize > old && e->mem - old + nsize > SL_EXPR_MEM_LIMIT)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        e->mem = e->mem - old + nsize;
    return p;
}

/* Fires after SL_EXPR_BUDGET instructions, then on every instruction, so a
 * pcall() inside the expression cannot catch it and go on looping. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    sl_expr *e = expr_of(L);
    e->budget_exceeded = true;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction budget exceeded");
}

static int refuse_global_write(lua_State *L)
{
    return luaL_error(L, "assignment to global '%s' (use local)",
                      lua_tostring(L, 2) ? lua_tostring(L, 2) : "?");
}

/* Open the allowed libraries, then strip the globals to the allow-list. */
static void sandbox(lua_State *L)
{
    static const struct {
        const char *name;
        lua_CFunction open;
    } libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_UTF8LIBNAME, luaopen_utf8},
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].open, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    /* Collect the names to remove first: changing a table during next() is
     * only allowed for fields already present, but keep it obvious. */
    lua_newtable(L);
    int ndrop = 0;
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        lua_pop(L, 1);
        size_t len;
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!k || !(in_list(allowed_libraries, k, len) || in_list(allowed_functions, k, len))) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, -3, ++ndrop);
        }
    }
    for (int i = 1; i <= ndrop; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, LUA_STRLIBNAME); /* no bytecode out of the sandbox */
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    lua_newtable(L); /* globals' metatable: writes are mistakes */
    lua_pushcfunction(L, refuse_global_write);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}

static void copy_lua_error(lua_State *L, char *err, size_t errlen)
{
    const char *msg = lua_tostring(L, -1);
    if (msg)
        set_err(err, errlen, "%s", msg);
    else
        set_err(err, errlen, "error object is a %s value", luaL_typename(L, -1));
}

static bool blank(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return *s == '\0';
}

/* `return SOURCE` alone: Lua's own message for a syntax error, on the
 * user's text, and proof that SOURCE is an expression. */
static int check_syntax(lua_State *L, const char *source, char *err, size_t errlen)
{
    sluice_buf chunk = {0};
    int rc = -1;
    if (buf_adds(&chunk, "return ") < 0 || buf_adds(&chunk, source) < 0) {
        set_err(err, errlen, "%s", "out of memory");
    } else if (luaL_loadbufferx(L, chunk.data, chunk.len, SL_EXPR_CHUNK, "t") != LUA_OK) {
        copy_lua_error(L, err, errlen);
    } else {
        rc = 0;
    }
    lua_settop(L, 0);
    sl_buf_free(&chunk);
    return rc;
}

sl_expr *sl_expr_compile(const char *source, char *err, size_t errlen)
{
    if (!source || blank(source)) {
        set_err(err, errlen, "%s", "empty expression");
        return NULL;
    }
    if (strlen(source) > 64 * 1024) {
        set_err(err, errlen, "%s", "expression longer than 64 KiB");
        return NULL;
    }
    sl_expr *e = calloc(1, sizeof *e);
    scan sc = {.src = source};
    sluice_buf chunk = {0};
    if (!e)
        goto oom;
    e->L = lua_newstate(sandbox_alloc, e);
    if (!e->L)
        goto oom;
    *(sl_expr **)lua_getextraspace(e->L) = e;
    sandbox(e->L);
    if (check_syntax(e->L, source, err, errlen) < 0)
        goto fail;
    if (lex(source, &sc.toks) < 0 || find_locals(&sc) < 0)
        goto oom;
    e->needs_budget = sc.has_loops;
    if (rewrite(e, &sc, &chunk, err, errlen) < 0)
        goto fail;
    if (luaL_loadbufferx(e->L, chunk.data, chunk.len - 1, SL_EXPR_CHUNK, "t") != LUA_OK ||
        lua_pcall(e->L, 0, 1, 0) != LUA_OK) {
        copy_lua_error(e->L, err, errlen);
        goto fail;
    }
    if (!lua_isfunction(e->L, 1)) {
        set_err(err, errlen, "%s", "internal error: the expression did not compile to a function");
        goto fail;
    }
    e->scratch = sl_batch_new(1);
    if (!e->scratch)
        goto oom;
    free(sc.toks.v);
    free(sc.locals);
    sl_buf_free(&chunk);
    return e;
oom:
    set_err(err, errlen, "%s", "out of memory");
fail:
    free(sc.toks.v);
    free(sc.locals);
    sl_buf_free(&chunk);
    sl_expr_free(e);
    return NULL;
}

void sl_expr_free(sl_expr *e)
{
    if (!e)
        return;
    if (e->L)
        lua_close(e->L);
    free_params(e);
    sl_batch_unref(e->scratch);
    sl_buf_free(&e->json);
    free(e);
}

/* ---- Evaluation ---------------------------------------------------------- */

static void push_value(lua_State *L, const sluice_value *v)
{
    switch (v->type) {
    case SLUICE_BOOL:
        lua_pushboolean(L, v->u.b);
        break;
    case SLUICE_INT:
        lua_pushinteger(L, (lua_Integer)v->u.i);
        break;
    case SLUICE_DOUBLE:
        lua_pushnumber(L, v->u.d);
        break;
    case SLUICE_STRING:
    case SLUICE_JSON: /* JSON goes in as its text */
        lua_pushlstring(L, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

/* A chain's value: the first lookup that finds something. */
static void push_chain(sl_expr *e, const param *p, const sluice_record *r)
{
    lua_State *L = e->L;
    for (size_t i = 0; i < p->nlookups; i++) {
        const lookup *lk = &p->lookups[i];
        const sluice_value *v = sluice_get(r, lk->name);
        if (!v)
            continue;
        if (!lk->path) {
            push_value(L, v);
            return;
        }
        if (v->type != SLUICE_JSON)
            continue;
        if (sl_batch_bytes(e->scratch) > SL_EXPR_SCRATCH_MAX) {
            sluice_batch *fresh = sl_batch_new(1);
            if (fresh) {
                sl_batch_unref(e->scratch);
                e->scratch = fresh;
            }
        }
        sluice_value found;
        if (sl_json_path(e->scratch, v->u.s, lk->path, &found)) {
            push_value(L, &found);
            return;
        }
    }
    lua_pushnil(L);
}

static void push_param(sl_expr *e, const param *p, const sluice_record *r)
{
    if (p->nlookups == 1) { /* a plain name: the common case */
        const sluice_value *v = sluice_get(r, p->lookups[0].name);
        if (v)
            push_value(e->L, v);
        else
            lua_pushnil(e->L);
        return;
    }
    push_chain(e, p, r);
}

/* ---- Results ------------------------------------------------------------- */

static int encode_any(lua_State *L, int idx, sluice_buf *out, int depth);

static int encode_scalar(const sluice_value *v, sluice_buf *out, lua_State *L)
{
    if (sl_json_encode_value(v, out) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

static int compare_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A table with keys exactly 1..n (n > 0) is an array; else an object. */
static bool is_array(lua_State *L, int idx, lua_Integer *n)
{
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return false;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || k > len) {
            lua_pop(L, 1);
            return false;
        }
        count++;
    }
    *n = len;
    return len > 0 && count == len;
}

static int encode_array(lua_State *L, int idx, lua_Integer n, sluice_buf *out, int depth)
{
    if (sl_buf_putc(out, '[') < 0)
        return luaL_error(L, "out of memory");
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1 && sl_buf_putc(out, ',') < 0)
            return luaL_error(L, "out of memory");
        lua_rawgeti(L, idx, i);
        encode_any(L, lua_gettop(L), out, depth + 1);
        lua_pop(L, 1);
    }
    if (sl_buf_putc(out, ']') < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/* Objects come out with their keys sorted: Lua's order is arbitrary, and
 * output should not change between runs. Keys are strings or numbers. */
static int encode_object(lua_State *L, int idx, sluice_buf *out, int depth)
{
    lua_newtable(L); /* key as a string -> the key itself */
    int keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int kt = lua_type(L, -1);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
            return luaL_error(L, "a table key of type %s cannot become JSON", lua_typename(L, kt));
        lua_pushvalue(L, -1);
        lua_tostring(L, -1); /* converts the copy only: next() needs the original */
        lua_pushvalue(L, -2);
        lua_rawset(L, keys);
    }
    size_t nkeys = 0;
    lua_pushnil(L);
    while (lua_next(L, keys)) {
        lua_pop(L, 1);
        nkeys++;
    }
    const char **names = lua_newuserdatauv(L, nkeys * sizeof *names + 1, 0);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, keys)) {
        lua_pop(L, 1);
        names[n++] = lua_tostring(L, -1); /* anchored as a key of `keys` */
    }
    qsort(names, n, sizeof *names, compare_keys);
    if (sl_buf_putc(out, '{') < 0)
        return luaL_error(L, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if ((i && sl_buf_putc(out, ',') < 0) ||
            sl_json_encode_string(names[i], strlen(names[i]), out) < 0 ||
            sl_buf_putc(out, ':') < 0)
            return luaL_error(L, "out of memory");
        lua_pushstring(L, names[i]);
        lua_rawget(L, keys);  /* the original key */
        lua_rawget(L, idx);   /* its value */
        encode_any(L, lua_gettop(L), out, depth + 1);
        lua_pop(L, 1);
    }
    if (sl_buf_putc(out, '}') < 0)
        return luaL_error(L, "out of memory");
    lua_pop(L, 2);
    return 0;
}

static int encode_any(lua_State *L, int idx, sluice_buf *out, int depth)
{
    sluice_value v = sluice_null();
    size_t len;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        break;
    case LUA_TBOOLEAN:
        v = sluice_bool(lua_toboolean(L, idx));
        break;
    case LUA_TNUMBER:
        v = lua_isinteger(L, idx) ? sluice_int(lua_tointeger(L, idx))
                                  : sluice_double(lua_tonumber(L, idx));
        break;
    case LUA_TSTRING:
        v.type = SLUICE_STRING;
        v.u.s.ptr = lua_tolstring(L, idx, &len);
        v.u.s.len = len;
        break;
    case LUA_TTABLE: {
        if (depth >= SL_EXPR_JSON_DEPTH)
            return luaL_error(L, "table nested deeper than %d (a cycle?)", SL_EXPR_JSON_DEPTH);
        luaL_checkstack(L, 8, "table too deep");
        lua_Integer n;
        if (is_array(L, idx, &n))
            return encode_array(L, idx, n, out, depth);
        return encode_object(L, idx, out, depth);
    }
    default:
        return luaL_error(L, "a %s cannot become a field value", luaL_typename(L, idx));
    }
    return encode_scalar(&v, out, L);
}

/* Runs under lua_pcall: encoding may raise (bad keys, out of memory). */
static int encode_table(lua_State *L)
{
    sl_expr *e = expr_of(L);
    e->json.len = 0;
    encode_any(L, 1, &e->json, 0);
    return 0;
}

static int table_result(sl_expr *e, sluice_batch *out, sluice_value *result,
                        char *err, size_t errlen)
{
    lua_State *L = e->L;
    lua_pushcfunction(L, encode_table);
    lua_insert(L, -2);
    e->limit_memory = true;
    int rc = lua_pcall(L, 1, 0, 0);
    e->limit_memory = false;
    if (rc != LUA_OK) {
        copy_lua_error(L, err, errlen);
        return -1;
    }
    result->type = SLUICE_JSON;
    result->u.s = (sluice_str){NULL, 0};
    if (out) {
        result->u.s = sl_str(out, e->json.data ? e->json.data : "", e->json.len);
        if (!result->u.s.ptr) {
            set_err(err, errlen, "%s", "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Convert the value on top of the stack. */
static int to_result(sl_expr *e, sluice_batch *out, sluice_value *result,
                     char *err, size_t errlen)
{
    lua_State *L = e->L;
    size_t len;
    const char *s;
    switch (lua_type(L, -1)) {
    case LUA_TNIL:
        *result = sluice_null();
        return 0;
    case LUA_TBOOLEAN:
        *result = sluice_bool(lua_toboolean(L, -1));
        return 0;
    case LUA_TNUMBER:
        *result = lua_isinteger(L, -1) ? sluice_int(lua_tointeger(L, -1))
                                       : sluice_double(lua_tonumber(L, -1));
        return 0;
    case LUA_TSTRING:
        s = lua_tolstring(L, -1, &len);
        *result = sluice_string((sluice_str){NULL, 0});
        if (out) {
            result->u.s = sl_str(out, s, len);
            if (!result->u.s.ptr) {
                set_err(err, errlen, "%s", "out of memory");
                return -1;
            }
        }
        return 0;
    case LUA_TTABLE:
        return table_result(e, out, result, err, errlen);
    default:
        set_err(err, errlen, "the expression returned a %s, not a value", luaL_typename(L, -1));
        return -1;
    }
}

int sl_expr_eval(sl_expr *e, const sluice_record *r, sluice_batch *out,
                 sluice_value *result, char *err, size_t errlen)
{
    lua_State *L = e->L;
    *result = sluice_null();
    if (e->nparams + 4 > LUA_MINSTACK && !lua_checkstack(L, (int)e->nparams + 4)) {
        set_err(err, errlen, "%s", "out of memory");
        return -1;
    }
    lua_pushvalue(L, 1);
    for (size_t i = 0; i < e->nparams; i++)
        push_param(e, &e->params[i], r);
    if (e->needs_budget) {
        e->budget_exceeded = false;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, SL_EXPR_BUDGET);
    }
    e->limit_memory = true;
    int status = lua_pcall(L, (int)e->nparams, 1, 0);
    e->limit_memory = false;
    int rc = 0;
    if (status != LUA_OK) {
        if (e->budget_exceeded)
            set_err(err, errlen, "%s", "instruction budget exceeded");
        else
            copy_lua_error(L, err, errlen);
        rc = -1;
    } else {
        rc = to_result(e, out, result, err, errlen);
    }
    if (e->needs_budget)
        lua_sethook(L, NULL, 0, 0);
    lua_settop(L, 1);
    return rc;
}
