/*
 * fuzz_expr.c — libFuzzer target for the `where:` / `set:` expression
 * compiler and evaluator (core/expr.c): the free-name lexer, the rewrite
 * of dotted chains into parameters, the sandbox, and the conversion of
 * results (tables into JSON text).
 *
 * The input (up to its first NUL) is an expression. When it compiles, it
 * is evaluated over three records — typical fields, no fields at all, and
 * the same names holding other types (a string where a number was, JSON
 * arrays, a huge integer) — once with an output batch and once without.
 * A compile failure must come with a message; a result must be a value
 * of a known type whose bytes can be read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "fuzz_check.h"

#define MAX_INPUT 4096

static sluice_batch *records;

static void set_str(sluice_batch *b, sluice_record *r, const char *name, const char *text,
                    sluice_type type)
{
    sluice_value v = {.type = type};
    v.u.s = sl_str(b, text, strlen(text));
    if (sl_set(b, r, sl_intern(name, strlen(name)), v) != SLUICE_OK)
        abort();
}

static void set_val(sluice_batch *b, sluice_record *r, const char *name, sluice_value v)
{
    if (sl_set(b, r, sl_intern(name, strlen(name)), v) != SLUICE_OK)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    records = sl_batch_new(3);
    sluice_record *r = sl_record_append(records);
    set_val(records, r, "status_code", sluice_int(503));
    set_val(records, r, "bytes", sluice_double(2048.5));
    set_str(records, r, "message", "GET /index.html 503", SLUICE_STRING);
    set_str(records, r, "user", "{\"id\":7,\"name\":\"ann\",\"tags\":[\"a\",\"b\"],"
                                "\"geo\":{\"city\":\"Oslo\"}}", SLUICE_JSON);
    set_str(records, r, "a.b", "a field with a dot", SLUICE_STRING);
    set_val(records, r, "ok", sluice_bool(true));
    set_val(records, r, "nothing", sluice_null());

    (void)sl_record_append(records); /* no fields */

    r = sl_record_append(records);
    set_str(records, r, "status_code", "oops", SLUICE_STRING);
    set_val(records, r, "bytes", sluice_int(INT64_MIN));
    set_str(records, r, "message", "", SLUICE_STRING);
    set_str(records, r, "user", "[1,{\"id\":null},[]]", SLUICE_JSON);
    set_val(records, r, "ok", sluice_double(-0.0));
    return 0;
}

static void check_result(const sluice_value *v, bool has_out)
{
    if ((unsigned)v->type > SLUICE_JSON)
        fuzz_fail("a result of type %d", (int)v->type);
    if ((v->type == SLUICE_STRING || v->type == SLUICE_JSON) && has_out) {
        if (!v->u.s.ptr && v->u.s.len)
            fuzz_fail("a result string without bytes");
        (void)fuzz_touch(v->u.s.ptr, v->u.s.len);
    }
    (void)sl_value_truthy(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *source = fuzz_exact_copy(data, size, 1);
    char err[512] = "";
    sl_expr *e = sl_expr_compile(source, err, sizeof err);
    if (!e) {
        if (!err[0])
            fuzz_fail("compile failed without a message");
        free(source);
        return 0;
    }
    for (uint32_t i = 0; i < records->count; i++) {
        sluice_batch *out = sl_batch_new(1);
        sluice_value v;
        /* A failed evaluation's message is Lua's error value: error("")
         * makes an empty one, so only results are checked. */
        if (sl_expr_eval(e, &records->records[i], out, &v, err, sizeof err) == 0)
            check_result(&v, true);
        if (sl_expr_eval(e, &records->records[i], NULL, &v, err, sizeof err) == 0)
            check_result(&v, false);
        sl_batch_unref(out);
    }
    sl_expr_free(e);
    free(source);
    return 0;
}
