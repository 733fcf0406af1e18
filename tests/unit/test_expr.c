/*
 * test_expr.c — the Lua expressions of `where:` and `set:` (core/expr.c).
 *
 * Records are built from JSON text with the real decoder, so nested
 * objects arrive as SLUICE_JSON the way they do in a pipeline. The last
 * test is a micro-benchmark printed as a TAP diagnostic (not an assertion):
 * `status_code >= 400` over records of ten fields.
 */
#include "expr.h"
#include "json.h"
#include "../tap.h"

#include <stdlib.h>
#include <time.h>

static sluice_batch *batch;
static sl_json_decoder *decoder;

static sluice_record *record(const char *json)
{
    char err[128];
    sluice_record *r = sl_record_append(batch);
    if (!r || sl_json_decode(decoder, batch, r, json, strlen(json), err, sizeof err) < 0) {
        printf("# bad test record %s: %s\n", json, err);
        exit(1);
    }
    return r;
}

/* Compile, evaluate once on r, free. -1 if compiling or evaluating failed. */
static int eval_on(const char *src, const sluice_record *r, sluice_value *v, char *err,
                   size_t errlen)
{
    sl_expr *e = sl_expr_compile(src, err, errlen);
    if (!e)
        return -1;
    int rc = sl_expr_eval(e, r, batch, v, err, errlen);
    sl_expr_free(e);
    return rc;
}

static const char *str_of(const sluice_value *v)
{
    static char buf[1024];
    if (v->type != SLUICE_STRING && v->type != SLUICE_JSON)
        return "(not a string)";
    snprintf(buf, sizeof buf, "%.*s", (int)v->u.s.len, v->u.s.ptr);
    return buf;
}

/* src on one line, for a TAP description. */
static const char *one_line(const char *src)
{
    static char buf[512];
    size_t n = 0;
    for (; *src && n + 3 < sizeof buf; src++) {
        if (*src == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *src;
        }
    }
    buf[n] = '\0';
    return buf;
}

/* Helpers that check one expression's result on r. */
static void is_bool_expr(const char *src, const sluice_record *r, bool want)
{
    char err[512] = "";
    sluice_value v;
    int rc = eval_on(src, r, &v, err, sizeof err);
    ok(rc == 0 && v.type == SLUICE_BOOL && v.u.b == want, "%s is %s", one_line(src),
       want ? "true" : "false");
    if (rc)
        printf("#   error: %s\n", err);
}

static void is_int_expr(const char *src, const sluice_record *r, int64_t want)
{
    char err[512] = "";
    sluice_value v;
    int rc = eval_on(src, r, &v, err, sizeof err);
    ok(rc == 0 && v.type == SLUICE_INT && v.u.i == want, "%s is %lld", one_line(src), (long long)want);
    if (rc)
        printf("#   error: %s\n", err);
    else if (v.type != SLUICE_INT || v.u.i != want)
        printf("#   got type %d\n", v.type);
}

static void is_double_expr(const char *src, const sluice_record *r, double want)
{
    char err[512] = "";
    sluice_value v;
    int rc = eval_on(src, r, &v, err, sizeof err);
    ok(rc == 0 && v.type == SLUICE_DOUBLE && v.u.d == want, "%s is %g", one_line(src), want);
    if (rc)
        printf("#   error: %s\n", err);
}

static void is_str_expr(const char *src, const sluice_record *r, sluice_type type,
                        const char *want)
{
    char err[512] = "";
    sluice_value v;
    int rc = eval_on(src, r, &v, err, sizeof err);
    ok(rc == 0 && v.type == type, "%s has type %d", one_line(src), type);
    if (rc)
        printf("#   error: %s\n", err);
    else
        is_str(str_of(&v), want, "%s is %s", one_line(src), want);
}

static void is_null_expr(const char *src, const sluice_record *r)
{
    char err[512] = "";
    sluice_value v;
    int rc = eval_on(src, r, &v, err, sizeof err);
    ok(rc == 0 && v.type == SLUICE_NULL, "%s is nil", one_line(src));
    if (rc)
        printf("#   error: %s\n", err);
}

/* The expression fails (to compile or to run) with a message containing want. */
static void fails_with(const char *src, const sluice_record *r, const char *want)
{
    char err[512] = "";
    sluice_value v;
    int rc = eval_on(src, r, &v, err, sizeof err);
    ok(rc < 0 && strstr(err, want), "%s fails with \"%s\"", one_line(src), want);
    if (rc == 0 || !strstr(err, want))
        printf("#   rc %d, err: %s\n", rc, err);
}

static void test_arithmetic(const sluice_record *r)
{
    is_double_expr("bytes / 1024", r, 2.0);
    is_int_expr("bytes // 1024", r, 2);
    is_int_expr("bytes + status_code * 2", r, 2048 + 1000);
    is_int_expr("bytes % 1000", r, 48);
    is_double_expr("response_time * 2", r, 0.5);
    is_double_expr("2^10", r, 1024.0);
    is_int_expr("math.max(bytes, 5000)", r, 5000);
}

static void test_comparisons(const sluice_record *r)
{
    is_bool_expr("status_code >= 400", r, true);
    is_bool_expr("status_code < 400", r, false);
    is_bool_expr("status_code == 500", r, true);
    is_bool_expr("status_code ~= 500", r, false);
    is_bool_expr("method == \"GET\"", r, true);
    is_bool_expr("response_time > 0.1", r, true);
}

static void test_strings(const sluice_record *r)
{
    is_str_expr("method .. ' ' .. path", r, SLUICE_STRING, "GET /api/users");
    is_str_expr("string.lower(method)", r, SLUICE_STRING, "get");
    is_str_expr("method:lower()", r, SLUICE_STRING, "get");
    is_int_expr("#path", r, 10);
    is_bool_expr("path:find('^/api') ~= nil", r, true);
    is_str_expr("string.format('%s=%d', method, status_code)", r, SLUICE_STRING, "GET=500");
    is_str_expr("tostring(status_code)", r, SLUICE_STRING, "500");
    is_int_expr("tonumber('12') + 1", r, 13);
    is_str_expr("[[long]] .. \"q\\\"\" .. 'x' -- a comment\n", r, SLUICE_STRING, "longq\"x");
}

static void test_logic(const sluice_record *r)
{
    is_bool_expr("status_code >= 400 and method == 'GET'", r, true);
    is_bool_expr("status_code < 400 or method == 'POST'", r, false);
    is_bool_expr("not (status_code < 400)", r, true);
    is_str_expr("status_code >= 500 and 'server' or 'client'", r, SLUICE_STRING, "server");
    is_bool_expr("ok_flag == true", r, true);
    is_bool_expr("not ok_flag", r, false);
}

static void test_absent_and_paths(const sluice_record *r)
{
    is_null_expr("missing", r);
    is_bool_expr("missing == nil", r, true);
    is_int_expr("missing or 7", r, 7);
    is_null_expr("nothing", r); /* a JSON null field */
    is_int_expr("user.id", r, 42);
    is_bool_expr("user.id ~= nil", r, true);
    is_str_expr("user.geo.city", r, SLUICE_STRING, "Oslo");
    is_null_expr("user.nope", r);
    is_null_expr("user.geo.nope.deeper", r);
    is_int_expr("user . id + 1", r, 43); /* spaces inside a chain */
    is_int_expr("user.id + user.id", r, 84);
    is_int_expr("a.b", r, 5);                   /* the field named "a.b" wins */
    is_int_expr("a.c", r, 9);                   /* else the path into a */
    is_null_expr("method.x", r);                /* a string is not JSON */
    is_bool_expr("type(user) == 'string'", r, true); /* JSON arrives as text */
    is_str_expr("user.geo", r, SLUICE_STRING, "{\"city\": \"Oslo\"}"); /* a nested object too */
    is_bool_expr("user_id == nil and user.id == 42", r, true); /* user_id vs user.id */
    is_bool_expr("user:sub(1, 1) == '{'", r, true);
}

static void test_globals_as_fields(const sluice_record *r)
{
    is_bool_expr("type == 'click'", r, true);   /* a field named like a function */
    is_bool_expr("error ~= nil", r, true);
    is_int_expr("error.code", r, 7);
    is_str_expr("type(type)", r, SLUICE_STRING, "string");
}

static void test_locals(const sluice_record *r)
{
    is_int_expr("(function(x) local y = x * 2; return y + bytes end)(1)", r, 2050);
    is_int_expr("(function() local n = 0; for i = 1, 10 do n = n + i end; return n end)()", r,
                55);
    is_str_expr("({ status_code = 1, path = 2 }).path and path", r, SLUICE_STRING,
                "/api/users");
    is_int_expr("select('#', 1, 2, 3)", r, 3);
}

static void test_result_types(const sluice_record *r)
{
    is_null_expr("nil", r);
    is_bool_expr("true", r, true);
    is_int_expr("1 + 2", r, 3);
    is_double_expr("1.5 + 1", r, 2.5);
    is_str_expr("'s'", r, SLUICE_STRING, "s");
    is_str_expr("{ b = { 1, 2, 'x' }, a = 1, [3] = true }", r, SLUICE_JSON,
                "{\"3\":true,\"a\":1,\"b\":[1,2,\"x\"]}");
    is_str_expr("{}", r, SLUICE_JSON, "{}");
    is_str_expr("{ s = 'q\"\\n' }", r, SLUICE_JSON, "{\"s\":\"q\\\"\\n\"}");
    fails_with("{ f = string.len }", r, "cannot become a field value");
    fails_with("string.len", r, "returned a function");
    /* The result string lives in the out batch, not in Lua. */
    char err[256];
    sluice_value v;
    sl_expr *e = sl_expr_compile("method .. '!'", err, sizeof err);
    ok(e && sl_expr_eval(e, r, batch, &v, err, sizeof err) == 0 && v.u.s.ptr &&
           strcmp(v.u.s.ptr, "GET!") == 0,
       "a string result is copied into the batch");
    ok(e && sl_expr_eval(e, r, NULL, &v, err, sizeof err) == 0 && v.type == SLUICE_STRING,
       "out may be NULL when only truthiness matters");
    sl_expr_free(e);
    sluice_value f = sluice_bool(false), n = sluice_null(), z = sluice_int(0);
    ok(!sl_value_truthy(&f) && !sl_value_truthy(&n) && sl_value_truthy(&z),
       "Lua truthiness: only nil and false are false");
}

/* 200 distinct fields: more parameters than a Lua function may have. */
static void test_too_many_fields(void)
{
    char src[4096], err[256];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(src + n, sizeof src - n, "%sf%d", i ? " + " : "", i);
    ok(!sl_expr_compile(src, err, sizeof err) && strstr(err, "too many fields"),
       "an expression reading 200 fields is refused (%s)", err);
}

static void test_errors(const sluice_record *r)
{
    char err[512] = "";
    is_bool_expr("status_code >= 400 -- a trailing comment", r, true);
    is_bool_expr("status_code >= 400 and\n  method == 'GET'", r, true);
    fails_with("status_code >= 400 and\n  method == 'GET' and\n  bytes > {}", r, "[expr]:3:");
    ok(!sl_expr_compile("status_code >=", err, sizeof err), "a syntax error does not compile");
    is_str(err, "[expr]:1: unexpected symbol near <eof>", "the message is Lua's");
    ok(!sl_expr_compile("a = 1", err, sizeof err) && strstr(err, "[expr]:1:"),
       "a statement is not an expression (%s)", err);
    ok(!sl_expr_compile("1) end os.exit() return (1", err, sizeof err),
       "nothing can break out of the wrapper (%s)", err);
    ok(!sl_expr_compile("1, 2", err, sizeof err), "one expression only (%s)", err);
    ok(!sl_expr_compile("   ", err, sizeof err) && strstr(err, "empty"), "empty (%s)", err);
    ok(!sl_expr_compile(NULL, err, sizeof err), "NULL source");
    ok(!sl_expr_compile("\x1bLua", err, sizeof err), "no bytecode");
    fails_with("bytes + nosuch", r, "attempt to perform arithmetic on a nil value (local 'nosuch')");
    fails_with("user.nope + 1", r, "attempt to perform arithmetic on a nil value (local 'user_nope')");
    fails_with("status_code > 'x'", r, "attempt to compare");
    fails_with("error('boom')", r, "[expr]:1: boom");
    fails_with("error({})", r, "error object is a table value");
    fails_with("(function() function f() end end)()", r, "assignment to global 'f'");
}

static void test_sandbox(const sluice_record *r)
{
    fails_with("os.execute('touch /tmp/sluice-pwned')", r, "'os.execute' is not available");
    fails_with("io.open('/etc/passwd')", r, "'io.open' is not available");
    fails_with("require('os')", r, "'require' is not available");
    fails_with("require 'os'", r, "'require' is not available");
    fails_with("load('return 1')()", r, "'load' is not available");
    fails_with("dofile('/etc/passwd')", r, "'dofile' is not available");
    fails_with("print{}", r, "'print' is not available");
    fails_with("collectgarbage()", r, "'collectgarbage' is not available");
    /* Reached as values they are absent fields, not the functions. */
    is_bool_expr("os == nil and io == nil and load == nil and require == nil and "
                 "debug == nil and _G == nil and _ENV == nil",
                 r, true);
    is_bool_expr("pcall(load, 'return 1') == false", r, true);
    is_bool_expr("string.dump == nil", r, true);
    is_bool_expr("(function() return setmetatable == nil and getmetatable == nil end)()", r,
                 true);
    fails_with("(function() while true do end end)()", r, "instruction budget exceeded");
    fails_with("(function() while true do pcall(function() while true do end end) end end)()",
               r, "instruction budget exceeded");
    fails_with("(function() local t = {} for i = 1, 1e9 do t[i] = i end end)()", r,
               "budget exceeded");
    fails_with("string.rep('x', 1e9)", r, "not enough memory");

    /* The same compiled expression runs again after a budget error. */
    char err[256];
    sluice_value v;
    sl_expr *e = sl_expr_compile(
        "bytes > 0 and (function() while bytes > 1000 do end return bytes end)()", err,
        sizeof err);
    sluice_record *small = record("{\"bytes\": 5}");
    ok(e && sl_expr_eval(e, r, batch, &v, err, sizeof err) < 0, "loops on a big record");
    ok(e && sl_expr_eval(e, small, batch, &v, err, sizeof err) == 0 && v.type == SLUICE_INT &&
           v.u.i == 5,
       "and evaluates the next record normally");
    sl_expr_free(e);
}

static void test_reuse(void)
{
    char err[256];
    sluice_value v;
    sl_expr *e = sl_expr_compile("status_code >= 400 and user.id", err, sizeof err);
    int hits = 0;
    for (int i = 0; i < 1000; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"status_code\": %d, \"user\": {\"id\": %d}}",
                 i % 2 ? 500 : 200, i);
        sluice_record *r = record(line);
        if (sl_expr_eval(e, r, batch, &v, err, sizeof err) == 0 && v.type == SLUICE_INT &&
            v.u.i == i)
            hits++;
        if (batch->count == batch->capacity) {
            sl_batch_unref(batch);
            batch = sl_batch_new(0);
        }
    }
    is_int(hits, 500, "one compiled expression over 1000 records");
    sl_expr_free(e);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Diagnostic only: ns per evaluation on the hot path of `where:`. */
static void bench(const char *src)
{
    enum { NREC = 1024, ROUNDS = 2000 };
    sluice_batch *b = sl_batch_new(NREC);
    for (int i = 0; i < NREC; i++) {
        char line[512], err[128];
        snprintf(line, sizeof line,
                 "{\"timestamp\":\"2024-01-01T00:00:%02dZ\",\"service\":\"api\",\"method\":"
                 "\"GET\",\"path\":\"/api/users/%d\",\"status_code\":%d,\"bytes\":%d,"
                 "\"response_time\":%g,\"user_id\":\"u%d\",\"host\":\"web-%d\",\"region\":"
                 "\"eu-north-1\"}",
                 i % 60, i, i % 7 ? 200 : 503, i * 13, i * 0.001, i % 97, i % 5);
        sluice_record *r = sl_record_append(b);
        if (sl_json_decode(decoder, b, r, line, strlen(line), err, sizeof err) < 0)
            exit(1);
    }
    char err[256];
    sl_expr *e = sl_expr_compile(src, err, sizeof err);
    if (!e) {
        printf("# bench: %s\n", err);
        return;
    }
    sluice_value v;
    long truthy = 0;
    double t0 = now_ns();
    for (int round = 0; round < ROUNDS; round++)
        for (int i = 0; i < NREC; i++)
            if (sl_expr_eval(e, &b->records[i], b, &v, err, sizeof err) == 0 &&
                sl_value_truthy(&v))
                truthy++;
    double ns = (now_ns() - t0) / ((double)NREC * ROUNDS);
    printf("# bench: %-45s %7.1f ns/record (%ld truthy)\n", src, ns, truthy);
    sl_expr_free(e);
    sl_batch_unref(b);
}

int main(int argc, char **argv)
{
    batch = sl_batch_new(0);
    decoder = sl_json_decoder_new();
    sluice_record *r = record(
        "{\"status_code\": 500, \"bytes\": 2048, \"response_time\": 0.25, \"method\": \"GET\","
        " \"path\": \"/api/users\", \"ok_flag\": true, \"nothing\": null,"
        " \"user\": {\"id\": 42, \"geo\": {\"city\": \"Oslo\"}}, \"a.b\": 5,"
        " \"a\": {\"b\": 6, \"c\": 9}, \"tags\": [1, 2], \"type\": \"click\","
        " \"error\": {\"code\": 7}}");
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        goto bench_only;
    test_arithmetic(r);
    test_comparisons(r);
    test_strings(r);
    test_logic(r);
    test_absent_and_paths(r);
    test_globals_as_fields(r);
    test_locals(r);
    test_result_types(r);
    test_errors(r);
    test_too_many_fields();
    test_sandbox(r);
    test_reuse();
bench_only:
    bench("status_code >= 400");
    bench("status_code >= 400 and method == 'GET'");
    bench("service == 'api' and response_time > 0.5");
    bench("bytes / 1024");
    bench("(function() return status_code >= 400 end)()");
    sl_json_decoder_free(decoder);
    sl_batch_unref(batch);
    if (argc > 1)
        return 0;
    return tap_done();
}
