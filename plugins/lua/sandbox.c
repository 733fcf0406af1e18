/*
 * sandbox.c — what a Lua operator's script may touch, and for how long.
 *
 * A pipeline file is configuration, and configuration gets copied from
 * wikis and colleagues: a script must not be able to run programs, read or
 * write files, or hang the stage, unless its author says `unsafe: true`.
 *
 * The environment (default):
 *   - base functions, except that `load` only takes text (a binary chunk
 *     can break the VM's invariants), and `dofile`/`loadfile` only read
 *     files inside a `lua_path` folder (text only too);
 *   - string (without string.dump: no bytecode out), table, math, utf8,
 *     coroutine;
 *   - os.time, os.clock, os.date, os.difftime only: no execute, exit,
 *     remove, rename, tmpname, getenv, setlocale (which would change the
 *     whole process);
 *   - no io, no debug (debug.sethook would lift the budget), no
 *     package.loadlib or C searchers (each one left out raises "X is not
 *     available in the sandbox", naming `unsafe: true`): `require` is ours and finds only
 *     pure-Lua modules, NAME.lua or NAME/init.lua (dots are folders) in the
 *     `lua_path` folders, loaded as text into the same environment;
 *     `package` holds only `loaded` and `path` (for information).
 *
 * Budget: a count hook stops a call after max_instructions VM instructions
 * with "instruction budget exceeded" raised at the running line; it then
 * re-arms itself to fire on every instruction, so a pcall() in the script
 * cannot swallow it and go on looping. Coroutines inherit the hook.
 *
 * Memory: the allocator counts every byte of the state and refuses to grow
 * past memory_limit while a call runs (Lua turns that into a memory error
 * for the call). Outside calls nothing is refused: Lua aborts the process
 * on an allocation failure outside a protected call.
 *
 * `unsafe: true` opens every standard library (io, os, debug, package with
 * its C loaders; lua_path goes first on package.path) and installs neither
 * the budget nor the memory limit.
 */
#include "sandbox.h"

#include <lauxlib.h>
#include <lualib.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Allocator and budget ------------------------------------------------ */

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    slua_sandbox *sb = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        sb->used -= old;
        return NULL;
    }
    if (sb->enforce && sb->memory_limit && nsize > old &&
        sb->used - old + nsize > sb->memory_limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p)
        sb->used = sb->used - old + nsize;
    return p;
}

lua_State *slua_sandbox_new_state(slua_sandbox *sb)
{
    return lua_newstate(sandbox_alloc, sb);
}

slua_sandbox *slua_sandbox_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

/* Raised at the line that was running (level 0: a hook has no frame). */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    slua_sandbox *sb = slua_sandbox_of(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_where(L, 0);
    lua_pushfstring(L, "instruction budget exceeded (max_instructions: %I)",
                    (lua_Integer)sb->max_instructions);
    lua_concat(L, 2);
    lua_error(L);
}

void slua_sandbox_arm(slua_sandbox *sb, lua_State *L, bool limit_memory)
{
    if (sb->unsafe)
        return;
    sb->enforce = limit_memory && sb->memory_limit > 0;
    if (sb->max_instructions > 0) {
        int count = sb->max_instructions > INT_MAX ? INT_MAX : (int)sb->max_instructions;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, count);
    }
}

void slua_sandbox_disarm(slua_sandbox *sb)
{
    sb->enforce = false;
}

/* ---- lua_path -------------------------------------------------------------- */

bool slua_sandbox_set_path(slua_sandbox *sb, const char *const *dirs, size_t n, char *why,
                           size_t whylen)
{
    sb->path = calloc(n + 1, sizeof *sb->path);
    if (!sb->path) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char *real = realpath(dirs[i], NULL);
        if (!real) {
            snprintf(why, whylen, "cannot use folder '%s': %s", dirs[i], strerror(errno));
            return false;
        }
        sb->path[sb->npath++] = real;
    }
    return true;
}

void slua_sandbox_free(slua_sandbox *sb)
{
    for (size_t i = 0; i < sb->npath; i++)
        free(sb->path[i]);
    free(sb->path);
    sb->path = NULL;
    sb->npath = 0;
}

/* Is `file` (as given) inside one of the lua_path folders? */
static bool inside_path(const slua_sandbox *sb, const char *file)
{
    char *real = realpath(file, NULL);
    if (!real)
        return false;
    bool inside = false;
    for (size_t i = 0; i < sb->npath && !inside; i++) {
        size_t len = strlen(sb->path[i]);
        inside = strncmp(real, sb->path[i], len) == 0 &&
                 (real[len] == '/' || sb->path[i][len - 1] == '/');
    }
    free(real);
    return inside;
}

/* ---- require, load, dofile, loadfile ---------------------------------------- */

static bool readable(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    fclose(f);
    return true;
}

/* A module name that maps to a file name only one way. */
static bool plain_module_name(const char *name)
{
    if (!*name || *name == '.')
        return false;
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return false;
        if (p[0] == '.' && (p[1] == '.' || p[1] == '\0'))
            return false;
    }
    return true;
}

/* Push the path of module `name` in the lua_path folders, or nothing. */
static bool find_module(lua_State *L, const slua_sandbox *sb, const char *name)
{
    static const char *const forms[] = {"%s/%s.lua", "%s/%s/init.lua"};
    luaL_Buffer rel;
    luaL_buffinit(L, &rel);
    for (const char *p = name; *p; p++)
        luaL_addchar(&rel, *p == '.' ? '/' : *p);
    luaL_pushresult(&rel);
    const char *file = lua_tostring(L, -1);
    for (size_t i = 0; i < sb->npath; i++)
        for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
            lua_pushfstring(L, forms[k], sb->path[i], file);
            if (readable(lua_tostring(L, -1))) {
                lua_remove(L, -2);
                return true;
            }
            lua_pop(L, 1);
        }
    lua_pop(L, 1);
    return false;
}

static int sandbox_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, 2, name);
    if (lua_toboolean(L, -1))
        return 1;
    lua_pop(L, 1);
    slua_sandbox *sb = slua_sandbox_of(L);
    if (!plain_module_name(name) || !find_module(L, sb, name))
        return luaL_error(L,
                          "module '%s' not found: no %s.lua or init.lua in the lua_path folders "
                          "(the sandbox loads only pure-Lua modules from lua_path; "
                          "C modules need `unsafe: true`)",
                          name, name);
    const char *file = lua_tostring(L, -1);
    if (luaL_loadfilex(L, file, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s': %s", name, file,
                          lua_tostring(L, -1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 3);
    lua_call(L, 2, 1);
    if (!lua_isnil(L, -1))
        lua_setfield(L, 2, name);
    else
        lua_pop(L, 1);
    lua_getfield(L, 2, name);
    if (lua_isnil(L, -1)) { /* a module that returns nothing is `true` */
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, 2, name);
    }
    lua_pushvalue(L, 3);
    return 2;
}

/* load(chunk, name, mode, env) with the mode forced to text. */
static int sandbox_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n < 3)
        lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n < 3 ? 3 : n, LUA_MULTRET);
    return lua_gettop(L);
}

/* The file of loadfile()/dofile() loaded as text, after checking that it
 * lies inside lua_path (raises when not). Returns luaL_loadfilex's status
 * with the chunk or the message pushed. */
static int load_file_checked(lua_State *L, const char *what)
{
    const char *file = luaL_checkstring(L, 1);
    slua_sandbox *sb = slua_sandbox_of(L);
    if (!inside_path(sb, file))
        return luaL_error(L, "%s('%s') is refused: the sandbox reads only files inside the "
                             "lua_path folders",
                          what, file);
    return luaL_loadfilex(L, file, "t");
}

/* loadfile(path [, mode [, env]]): the mode is always text. */
static int sandbox_loadfile(lua_State *L)
{
    int env = lua_isnoneornil(L, 3) ? 0 : 3;
    if (load_file_checked(L, "loadfile") != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

static int sandbox_dofile(lua_State *L)
{
    lua_settop(L, 1);
    if (load_file_checked(L, "dofile") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* ---- Building the environment -------------------------------------------- */

/* What the sandbox leaves out raises a message that names it and the way
 * to allow it, rather than Lua's "attempt to call a nil value". */
static int refused(lua_State *L)
{
    return luaL_error(L, "%s is not available in the sandbox (`unsafe: true` on the stage "
                         "allows it)", lua_tostring(L, lua_upvalueindex(1)));
}

static void refuse_fields(lua_State *L, const char *table, const char *const *names)
{
    lua_getglobal(L, table);
    for (size_t i = 0; names[i]; i++) {
        lua_pushfstring(L, "%s.%s", table, names[i]);
        lua_pushcclosure(L, refused, 1);
        lua_setfield(L, -2, names[i]);
    }
    lua_pop(L, 1);
}

/* __index of a library left out: io.open, debug.sethook... */
static int refused_library(lua_State *L)
{
    return luaL_error(L, "%s.%s is not available in the sandbox (`unsafe: true` on the "
                         "stage allows it)", lua_tostring(L, lua_upvalueindex(1)),
                      luaL_tolstring(L, 2, NULL));
}

static void refuse_library(lua_State *L, const char *name)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, name);
    lua_pushcclosure(L, refused_library, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setglobal(L, name);
}

/* `package.path` text for the lua_path folders. */
static void push_path_text(lua_State *L, const slua_sandbox *sb)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < sb->npath; i++) {
        if (i)
            luaL_addchar(&b, ';');
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", sb->path[i], sb->path[i]);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
}

static void open_unsafe(lua_State *L, const slua_sandbox *sb)
{
    luaL_openlibs(L);
    if (!sb->npath)
        return;
    lua_getglobal(L, LUA_LOADLIBNAME);
    push_path_text(L, sb);
    lua_pushliteral(L, ";");
    lua_getfield(L, -3, "path");
    lua_concat(L, 3);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
}

static void open_safe(lua_State *L, const slua_sandbox *sb)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_TABLIBNAME, luaopen_table},   {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math},   {LUA_UTF8LIBNAME, luaopen_utf8},
        {LUA_OSLIBNAME, luaopen_os},       {NULL, NULL},
    };
    static const char *const os_refused[] = {"execute", "exit",   "remove",    "rename",
                                             "tmpname", "getenv", "setlocale", NULL};
    static const char *const string_refused[] = {"dump", NULL};
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    refuse_fields(L, LUA_OSLIBNAME, os_refused);
    refuse_fields(L, LUA_STRLIBNAME, string_refused);
    refuse_library(L, LUA_IOLIBNAME);
    refuse_library(L, LUA_DBLIBNAME);

    lua_getglobal(L, "load");
    lua_pushcclosure(L, sandbox_load, 1);
    lua_setglobal(L, "load");
    lua_register(L, "loadfile", sandbox_loadfile);
    lua_register(L, "dofile", sandbox_dofile);
    lua_register(L, "require", sandbox_require);

    lua_createtable(L, 0, 2); /* package: information only */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_setfield(L, -2, "loaded");
    push_path_text(L, sb);
    lua_setfield(L, -2, "path");
    lua_setglobal(L, LUA_LOADLIBNAME);
    refuse_fields(L, LUA_LOADLIBNAME, (const char *const[]){"loadlib", NULL});
}

int slua_sandbox_open(lua_State *L)
{
    slua_sandbox *sb = slua_sandbox_of(L);
    if (sb->unsafe)
        open_unsafe(L, sb);
    else
        open_safe(L, sb);
    return 0;
}
