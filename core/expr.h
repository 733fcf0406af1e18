/*
 * expr.h — Lua 5.4 expressions over a record's fields, for `where:` and
 * `set:` (`status_code >= 400`, `bytes / 1024`, `user.id ~= nil`).
 *
 * The expression is compiled once into a Lua function whose parameters are
 * the names it mentions (a dotted chain like `user.id` is one parameter,
 * resolved on the record as a field named "user.id" or else as a path into
 * the nested JSON of field `user`), so evaluating a record pushes only the
 * fields the expression reads. A SLUICE_JSON field reaches Lua as its JSON
 * text (a string); reach inside it with a dotted chain. Each expression has
 * its own lua_State: a stage evaluates on its own thread. Sandboxed: only
 * the base library's pure functions, string, math, table, utf8; an
 * instruction budget per call stops an endless loop. See expr.c.
 */
#ifndef SLUICE_EXPR_H
#define SLUICE_EXPR_H

#include "record.h"

typedef struct sl_expr sl_expr;

/* NULL with a message (Lua's syntax error, "[expr]:1: ...") in err. */
sl_expr *sl_expr_compile(const char *source, char *err, size_t errlen);
void sl_expr_free(sl_expr *e);
/* Evaluate on r; strings of the result are copied into out's arena. A Lua
 * nil result is SLUICE_NULL; integers SLUICE_INT, other numbers
 * SLUICE_DOUBLE; tables come back as SLUICE_JSON text (arrays for keys
 * 1..n, else objects with sorted keys). out may be NULL when only the
 * truthiness matters (string and JSON results then have no bytes).
 * 0, or -1 with the Lua error message in err. Not thread-safe per
 * expression: one stage's thread uses it. */
int sl_expr_eval(sl_expr *e, const sluice_record *r, sluice_batch *out,
                 sluice_value *result, char *err, size_t errlen);
/* Lua truthiness of a value: false only for NULL and boolean false. */
static inline bool sl_value_truthy(const sluice_value *v)
{
    return !(v->type == SLUICE_NULL || (v->type == SLUICE_BOOL && !v->u.b));
}

#endif
