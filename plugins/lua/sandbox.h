/*
 * sandbox.h — the Lua operator's safe environment, memory limit and
 * instruction budget. See sandbox.c for what is allowed and why.
 */
#ifndef SLUICE_LUA_SANDBOX_H
#define SLUICE_LUA_SANDBOX_H

#include <lua.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct slua_sandbox {
    bool unsafe;              /* `unsafe: true`: every library, no limits */
    size_t memory_limit;      /* bytes the state may hold; 0: none */
    size_t used;              /* bytes the state holds now */
    bool enforce;             /* the limit applies now (inside protected calls) */
    int64_t max_instructions; /* VM instructions per call; 0: none */
    size_t npath;
    char **path;              /* lua_path, resolved with realpath() */
} slua_sandbox;

/* A new state whose allocator counts into sb. NULL when out of memory. */
lua_State *slua_sandbox_new_state(slua_sandbox *sb);

/* The sandbox a state was made with (its allocator's data). */
slua_sandbox *slua_sandbox_of(lua_State *L);

/* lua_path: resolve each folder; false with a message naming the bad one. */
bool slua_sandbox_set_path(slua_sandbox *sb, const char *const *dirs, size_t n,
                           char *why, size_t whylen);

/* A lua_CFunction, run under lua_pcall on a new state: opens the libraries
 * the sandbox allows (all of them when unsafe) and installs require, load,
 * dofile and loadfile as described in sandbox.c. */
int slua_sandbox_open(lua_State *L);

/* Before each call into the script: a fresh instruction budget, and the
 * memory limit on (unless limit_memory is false: a snapshot must not fail
 * because the state is full). After it: the limit off again (Lua must
 * never see an allocation fail outside a protected call). */
void slua_sandbox_arm(slua_sandbox *sb, lua_State *L, bool limit_memory);
void slua_sandbox_disarm(slua_sandbox *sb);

void slua_sandbox_free(slua_sandbox *sb);

#endif
