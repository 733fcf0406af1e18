/*
 * test_json.c — the JSON decoder, encoder and dotted paths.
 *
 * Every error kind the decoder reports is exercised with the message it
 * gives, then typed values, escapes and unicode, big numbers, nested values
 * kept as text and reached with sl_json_path, and encode(decode(x)) round
 * trips.
 */
#include "json.h"
#include "../tap.h"

#include <math.h>
#include <stdlib.h>

static sl_json_decoder *dec;
static char err[256];

/* Decode text into a fresh record of b; NULL on error (message in err). */
static sluice_record *decode(sluice_batch *b, const char *text)
{
    sluice_record *r = sl_record_append(b);
    err[0] = '\0';
    if (sl_json_decode(dec, b, r, text, strlen(text), err, sizeof err) != 0)
        return NULL;
    return r;
}

static const sluice_value *field(const sluice_record *r, const char *name)
{
    return sluice_get(r, sl_intern(name, strlen(name)));
}

/* A string value as a NUL-terminated string (decoded strings carry a NUL). */
static const char *sval(const sluice_value *v)
{
    if (!v || (v->type != SLUICE_STRING && v->type != SLUICE_JSON))
        return NULL;
    return v->u.s.ptr;
}

static void expect_error(const char *text, const char *want)
{
    sluice_batch *b = sl_batch_new(4);
    sluice_record *r = decode(b, text);
    ok(r == NULL, "rejects %s", text);
    is_str(err, want, "message for %s", text);
    sl_batch_unref(b);
}

static void test_errors(void)
{
    expect_error("", "expected '{', got end of input at byte 0");
    expect_error("   ", "expected '{', got end of input at byte 3");
    expect_error("[1,2]", "expected '{', got '[' at byte 0");
    expect_error("\"str\"", "expected '{', got '\"' at byte 0");
    expect_error("42", "expected '{', got '4' at byte 0");
    expect_error("{\"a\":1} x", "trailing characters after the object at byte 8");
    expect_error("{\"a\":1}{}", "trailing characters after the object at byte 7");
    expect_error("{\"a\" 1}", "expected ':', got '1' at byte 5");
    expect_error("{\"a\":1 \"b\":2}", "expected ',' or '}', got '\"' at byte 7");
    expect_error("{\"a\":1,}", "expected a string key, got '}' at byte 7");
    expect_error("{a:1}", "expected a string key, got 'a' at byte 1");
    expect_error("{\"a\":}", "expected a value, got '}' at byte 5");
    expect_error("{\"a\":", "expected a value, got end of input at byte 5");
    expect_error("{\"a\":1", "expected ',' or '}', got end of input at byte 6");
    expect_error("{\"a\":\"abc}", "unterminated string at byte 5");
    expect_error("{\"abc", "unterminated string at byte 1");
    expect_error("{\"a\":\"x\ty\"}", "control character 0x09 in string at byte 7");
    expect_error("{\"a\":\"x\\qy\"}", "invalid escape '\\q' at byte 7");
    expect_error("{\"a\":\"\\u12G4\"}", "invalid \\u escape at byte 6");
    expect_error("{\"a\":\"\\u12\"}", "invalid \\u escape at byte 6");
    expect_error("{\"a\":\"\\ud800\"}", "unpaired surrogate \\ud800 at byte 6");
    expect_error("{\"a\":\"\\udc00\\ud800\"}", "unpaired surrogate \\udc00 at byte 6");
    expect_error("{\"a\":\"\\ud800\\u0041\"}", "unpaired surrogate \\ud800 at byte 6");
    expect_error("{\"a\":tru}", "expected a value, got 't' at byte 5");
    expect_error("{\"a\":nul}", "expected a value, got 'n' at byte 5");
    expect_error("{\"a\":NaN}", "expected a value, got 'N' at byte 5");
    expect_error("{\"a\":01}", "expected ',' or '}', got '1' at byte 6");
    expect_error("{\"a\":1.}", "invalid number at byte 5");
    expect_error("{\"a\":.5}", "expected a value, got '.' at byte 5");
    expect_error("{\"a\":-}", "invalid number at byte 5");
    expect_error("{\"a\":1e}", "invalid number at byte 5");
    expect_error("{\"a\":+1}", "expected a value, got '+' at byte 5");
    expect_error("{\"a\":[1,2,]}", "expected a value, got ']' at byte 10");
    expect_error("{\"a\":[1 2]}", "expected ',' or ']', got '2' at byte 8");
    expect_error("{\"a\":{\"b\" 1}}", "expected ':', got '1' at byte 10");
    expect_error("{\"a\":{1:2}}", "expected a string key, got '1' at byte 6");
    expect_error("{\"a\":{\"b\":\"\x01\"}}", "control character 0x01 in string at byte 11");
    expect_error("{\"a\":[\"\\x\"]}", "invalid escape '\\x' at byte 7");
    expect_error("{\"a\":[}", "expected a value, got '}' at byte 6");
    expect_error("{\"a\":{\"b\":1]}", "expected ',' or '}', got ']' at byte 11");
    expect_error("{\"a\":\x80}", "expected a value, got byte 0x80 at byte 5");

    /* Depth: the top-level object counts; 64 levels pass, 65 fail. */
    char deep[256];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 63; i++)
        deep[n++] = '[';
    for (int i = 0; i < 63; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    sluice_batch *b = sl_batch_new(4);
    ok(decode(b, deep) != NULL, "64 levels of nesting are accepted (%s)", err);
    sl_batch_unref(b);
    n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 64; i++)
        deep[n++] = '[';
    for (int i = 0; i < 64; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    expect_error(deep, "nesting deeper than 64 at byte 68");

    /* A very deep document fails cleanly, without recursion. */
    size_t big = 1 << 20;
    char *huge = malloc(big + 8);
    memcpy(huge, "{\"a\":", 5);
    memset(huge + 5, '[', big);
    huge[5 + big] = '\0';
    b = sl_batch_new(4);
    ok(decode(b, huge) == NULL, "a million '[' is refused");
    sl_batch_unref(b);
    free(huge);

    /* Errors leave the record empty. */
    b = sl_batch_new(4);
    sluice_record *r = sl_record_append(b);
    const char *bad = "{\"a\":1,\"b\":tru}";
    ok(sl_json_decode(dec, b, r, bad, strlen(bad), err, sizeof err) == -1, "bad input returns -1");
    is_int(r->nfields, 0, "no fields on error");
    sl_batch_unref(b);

    /* A NULL-free buffer with no terminator: decode stops at len. */
    b = sl_batch_new(4);
    r = sl_record_append(b);
    const char buf[] = {'{', '"', 'a', '"', ':', '1', '2'};
    ok(sl_json_decode(dec, b, r, buf, sizeof buf, err, sizeof err) == -1,
       "input is bounded by len");
    is_str(err, "expected ',' or '}', got end of input at byte 7", "end of buffer reported");
    ok(sl_json_decode(dec, b, r, "{}", 2, NULL, 0) == 0, "a NULL err buffer is fine");
    ok(sl_json_decode(dec, b, r, "{", 1, NULL, 0) == -1, "... also on error");
    sl_batch_unref(b);
}

static void test_values(void)
{
    sluice_batch *b = sl_batch_new(16);
    sluice_record *r = decode(b, " \t{ \"s\" : \"hello\" , \"i\":42,\"n\":-7,\"d\":3.25,\"e\":1e3,"
                                 "\"E\":-2.5E-3,\"t\":true,\"f\":false,\"z\":null,\"empty\":\"\","
                                 "\"zero\":0,\"negzero\":-0.0}\r\n");
    ok(r != NULL, "decodes a flat object (%s)", err);
    is_int(r->nfields, 12, "12 fields");
    is_str(sval(field(r, "s")), "hello", "string");
    is_int(field(r, "i")->type, SLUICE_INT, "42 is an int");
    is_int(field(r, "i")->u.i, 42, "42");
    is_int(field(r, "n")->u.i, -7, "-7");
    is_int(field(r, "d")->type, SLUICE_DOUBLE, "3.25 is a double");
    ok(field(r, "d")->u.d == 3.25, "3.25");
    is_int(field(r, "e")->type, SLUICE_DOUBLE, "1e3 is a double");
    ok(field(r, "e")->u.d == 1000.0, "1e3");
    ok(field(r, "E")->u.d == -2.5e-3, "-2.5E-3");
    is_int(field(r, "t")->type, SLUICE_BOOL, "true is a bool");
    ok(field(r, "t")->u.b, "true");
    ok(!field(r, "f")->u.b, "false");
    is_int(field(r, "z")->type, SLUICE_NULL, "null");
    is_str(sval(field(r, "empty")), "", "empty string");
    is_int(field(r, "zero")->u.i, 0, "0");
    ok(field(r, "negzero")->u.d == 0.0 && signbit(field(r, "negzero")->u.d), "-0.0 keeps its sign");
    is_str(sl_name_of(r->fields[0].name), "s", "fields keep document order");
    is_str(sl_name_of(r->fields[11].name), "negzero", "... to the last");

    r = decode(b, "{}");
    ok(r && r->nfields == 0, "empty object");

    /* Duplicate keys: the last one wins, in the first one's place. */
    r = decode(b, "{\"a\":1,\"b\":2,\"a\":\"three\"}");
    ok(r != NULL, "duplicate keys accepted");
    is_int(r->nfields, 2, "one field per name");
    is_str(sval(field(r, "a")), "three", "last value wins");
    is_str(sl_name_of(r->fields[0].name), "a", "at the first position");

    /* Decoding into a record that already has fields: sl_set semantics.
     * No string values either, so nothing is allocated (fuzz_json found
     * the NULL arithmetic this used to do; run it under UBSan to see). */
    r = sl_record_append(b);
    sl_set(b, r, sl_intern("keep", 4), sluice_int(1));
    sl_set(b, r, sl_intern("a", 1), sluice_int(1));
    const char *more = "{\"a\":2,\"new\":3}";
    ok(sl_json_decode(dec, b, r, more, strlen(more), err, sizeof err) == 0, "decodes into a used record");
    is_int(r->nfields, 3, "keep, a, new");
    is_int(field(r, "keep")->u.i, 1, "existing field kept");
    is_int(field(r, "a")->u.i, 2, "existing field replaced");
    is_int(field(r, "new")->u.i, 3, "new field added");

    /* Many fields, more than any initial capacity. */
    char many[8192];
    size_t n = 0;
    many[n++] = '{';
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    many[n++] = '}';
    many[n] = '\0';
    r = decode(b, many);
    ok(r && r->nfields == 300, "300 fields");
    is_int(field(r, "k299")->u.i, 299, "the last of them");
    sl_batch_unref(b);
}

static void test_numbers(void)
{
    sluice_batch *b = sl_batch_new(16);
    sluice_record *r = decode(b, "{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
                                 "\"over\":9223372036854775808,\"under\":-9223372036854775809,"
                                 "\"huge\":123456789012345678901234567890,"
                                 "\"pi\":3.141592653589793,\"tiny\":5e-324,\"big\":1.7976931348623157e308,"
                                 "\"inf\":1e400,\"long\":0.1000000000000000055511151231257827,"
                                 "\"frac\":123.456,\"manyzeros\":0.000000000000000000000000001}");
    ok(r != NULL, "decodes numbers (%s)", err);
    is_int(field(r, "max")->type, SLUICE_INT, "INT64_MAX is an int");
    ok(field(r, "max")->u.i == INT64_MAX, "INT64_MAX");
    is_int(field(r, "min")->type, SLUICE_INT, "INT64_MIN is an int");
    ok(field(r, "min")->u.i == INT64_MIN, "INT64_MIN");
    is_int(field(r, "over")->type, SLUICE_DOUBLE, "INT64_MAX+1 overflows to double");
    ok(field(r, "over")->u.d == 9223372036854775808.0, "INT64_MAX+1 value");
    is_int(field(r, "under")->type, SLUICE_DOUBLE, "INT64_MIN-1 overflows to double");
    ok(field(r, "under")->u.d == -9223372036854775809.0, "INT64_MIN-1 value");
    ok(field(r, "huge")->u.d == 123456789012345678901234567890.0, "30 digits");
    ok(field(r, "pi")->u.d == 3.141592653589793, "pi exactly");
    ok(field(r, "tiny")->u.d == 5e-324, "smallest subnormal");
    ok(field(r, "big")->u.d == 1.7976931348623157e308, "DBL_MAX");
    ok(isinf(field(r, "inf")->u.d), "1e400 is infinity");
    ok(field(r, "long")->u.d == 0.1, "long mantissa rounds correctly");
    ok(field(r, "frac")->u.d == 123.456, "123.456 (fast path)");
    ok(field(r, "manyzeros")->u.d == 1e-27, "1e-27 written out");

    sluice_value v;
    ok(sl_json_number("12", 2, &v) && v.type == SLUICE_INT && v.u.i == 12, "sl_json_number int");
    ok(sl_json_number("-1.5e2", 6, &v) && v.type == SLUICE_DOUBLE && v.u.d == -150.0, "sl_json_number double");
    ok(!sl_json_number("12a", 3, &v), "not a number: 12a");
    ok(!sl_json_number("007", 3, &v), "not a number: 007");
    ok(!sl_json_number("", 0, &v), "not a number: empty");
    ok(!sl_json_number(" 1", 2, &v), "not a number: leading space");
    sl_batch_unref(b);
}

static void test_strings(void)
{
    sluice_batch *b = sl_batch_new(16);
    sluice_record *r = decode(b, "{\"esc\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\","
                                 "\"u\":\"\\u00e9\\u20AC\\u0041\","
                                 "\"pair\":\"\\ud83d\\ude00\","
                                 "\"raw\":\"caf\xc3\xa9 \xe2\x82\xac\","
                                 "\"bad8\":\"\xff\xfe\","
                                 "\"nul\":\"a\\u0000b\","
                                 "\"k\\u0065y\":1,"
                                 "\"long\":\"0123456789abcdef0123456789abcdef0123456789\\\"tail\"}");
    ok(r != NULL, "decodes escapes (%s)", err);
    is_str(sval(field(r, "esc")), "a\"b\\c/d\b\f\n\r\t", "simple escapes");
    is_str(sval(field(r, "u")), "\xc3\xa9\xe2\x82\xac" "A", "\\u escapes to UTF-8");
    is_str(sval(field(r, "pair")), "\xf0\x9f\x98\x80", "surrogate pair to 4-byte UTF-8");
    is_str(sval(field(r, "raw")), "caf\xc3\xa9 \xe2\x82\xac", "raw UTF-8 kept");
    is_str(sval(field(r, "bad8")), "\xff\xfe", "invalid UTF-8 passes through as bytes");
    const sluice_value *nul = field(r, "nul");
    ok(nul && nul->u.s.len == 3 && memcmp(nul->u.s.ptr, "a\0b", 3) == 0, "\\u0000 is a NUL byte");
    ok(field(r, "key") != NULL, "escaped key is unescaped");
    is_str(sval(field(r, "long")), "0123456789abcdef0123456789abcdef0123456789\"tail", "escape after 8-byte runs");

    /* A key longer than the name cache holds. */
    char longkey[101];
    memset(longkey, 'k', 100);
    longkey[100] = '\0';
    char doc[400];
    snprintf(doc, sizeof doc, "{\"%s\":1,\"%s\":2}", longkey, longkey);
    r = decode(b, doc);
    ok(r && r->nfields == 1 && field(r, longkey)->u.i == 2, "long keys bypass the cache");

    /* The name cache survives many distinct keys (eviction path). */
    bool all = true;
    for (int i = 0; i < 5000 && all; i++) {
        snprintf(doc, sizeof doc, "{\"key_%d\":%d,\"stable\":1}", i, i);
        sluice_batch *b2 = sl_batch_new(1);
        sluice_record *r2 = decode(b2, doc);
        char name[32];
        snprintf(name, sizeof name, "key_%d", i);
        all = r2 && field(r2, name) && field(r2, name)->u.i == i && field(r2, "stable");
        sl_batch_unref(b2);
    }
    ok(all, "5000 distinct keys resolve to the right names");
    sl_batch_unref(b);
}

static void test_nested(void)
{
    sluice_batch *b = sl_batch_new(16);
    sluice_record *r = decode(b, "{\"client\": {\"ip\": \"10.0.0.1\", \"ua\": \"curl/8\", "
                                 "\"geo\": {\"lat\": 1.5, \"cc\": \"d\\u00e9\"}, \"tags\": [\"a\", {\"x\": 1}], "
                                 "\"n\": null, \"ok\": true, \"k\\u0031\": 7}, \"arr\": [1, [2, []], {}]}");
    ok(r != NULL, "decodes nested values (%s)", err);
    const sluice_value *client = field(r, "client");
    is_int(client->type, SLUICE_JSON, "nested object kept as JSON");
    is_str(sval(client), "{\"ip\": \"10.0.0.1\", \"ua\": \"curl/8\", \"geo\": {\"lat\": 1.5, \"cc\": \"d\\u00e9\"}, "
                         "\"tags\": [\"a\", {\"x\": 1}], \"n\": null, \"ok\": true, \"k\\u0031\": 7}",
           "its text, verbatim");
    is_int(field(r, "arr")->type, SLUICE_JSON, "array kept as JSON");
    is_str(sval(field(r, "arr")), "[1, [2, []], {}]", "array text");

    sluice_value v;
    ok(sl_json_path(b, client->u.s, "ip", &v), "path ip");
    is_int(v.type, SLUICE_STRING, "ip is a string");
    is_str(sval(&v), "10.0.0.1", "ip value");
    ok(sl_json_path(b, client->u.s, "geo.lat", &v) && v.type == SLUICE_DOUBLE && v.u.d == 1.5, "geo.lat");
    ok(sl_json_path(b, client->u.s, "geo.cc", &v), "geo.cc");
    is_str(sval(&v), "d\xc3\xa9", "path strings are unescaped");
    ok(sl_json_path(b, client->u.s, "geo", &v) && v.type == SLUICE_JSON, "an object result is JSON");
    is_str(sval(&v), "{\"lat\": 1.5, \"cc\": \"d\\u00e9\"}", "its text");
    ok(sl_json_path(b, client->u.s, "tags.1.x", &v) && v.type == SLUICE_INT && v.u.i == 1, "array index");
    ok(sl_json_path(b, client->u.s, "tags.0", &v), "tags.0");
    is_str(sval(&v), "a", "tags.0 value");
    ok(!sl_json_path(b, client->u.s, "tags.2", &v), "index past the end");
    ok(!sl_json_path(b, client->u.s, "tags.x", &v), "non-numeric index");
    ok(sl_json_path(b, client->u.s, "n", &v) && v.type == SLUICE_NULL, "null member is present");
    ok(sl_json_path(b, client->u.s, "ok", &v) && v.type == SLUICE_BOOL && v.u.b, "bool member");
    ok(sl_json_path(b, client->u.s, "k1", &v) && v.u.i == 7, "escaped key matches");
    ok(!sl_json_path(b, client->u.s, "missing", &v), "absent key");
    ok(!sl_json_path(b, client->u.s, "ip.more", &v), "path through a scalar");
    ok(!sl_json_path(b, client->u.s, "geo.lat.x", &v), "path through a number");
    ok(sl_json_path(b, client->u.s, "", &v) && v.type == SLUICE_JSON, "empty path is the whole value");
    ok(sl_json_path(b, field(r, "arr")->u.s, "1.1", &v) && v.type == SLUICE_JSON, "nested array");
    is_str(sval(&v), "[]", "empty array result");
    ok(!sl_json_path(b, field(r, "arr")->u.s, "1.1.0", &v), "index into an empty array");
    ok(!sl_json_path(b, field(r, "arr")->u.s, "2.a", &v), "key in an empty object");

    sluice_str dup = sl_cstr("{\"a\":1,\"a\":2}");
    ok(sl_json_path(b, dup, "a", &v) && v.u.i == 2, "last duplicate key wins in paths too");
    sluice_str bad = sl_cstr("{\"a\":1");
    ok(!sl_json_path(b, bad, "a", &v), "invalid JSON text: false");
    sluice_str trailing = sl_cstr("{\"a\":1} x");
    ok(!sl_json_path(b, trailing, "a", &v), "trailing garbage: false");
    sluice_str none = {NULL, 0};
    ok(!sl_json_path(b, none, "a", &v), "NULL text: false");
    sl_batch_unref(b);
}

static const char *encode_record(const sluice_record *r, sluice_buf *out)
{
    out->len = 0;
    if (sl_json_encode(r, out) != SLUICE_OK || sl_buf_putc(out, '\0') != SLUICE_OK)
        return NULL;
    return out->data;
}

static void test_encode(void)
{
    sluice_batch *b = sl_batch_new(16);
    sluice_buf out = {NULL, 0, 0};
    sluice_record *r = sl_record_append(b);
    sl_set(b, r, sl_intern("s", 1), sluice_string(sl_cstr("q\"b\\n\nt\tr\rb\bf\f\x01\x1f\x7f")));
    sl_set(b, r, sl_intern("i", 1), sluice_int(INT64_MIN));
    sl_set(b, r, sl_intern("d", 1), sluice_double(0.1));
    sl_set(b, r, sl_intern("w", 1), sluice_double(2.0));
    sl_set(b, r, sl_intern("nan", 3), sluice_double(NAN));
    sl_set(b, r, sl_intern("inf", 3), sluice_double(-INFINITY));
    sl_set(b, r, sl_intern("t", 1), sluice_bool(true));
    sl_set(b, r, sl_intern("z", 1), sluice_null());
    sluice_value j = {.type = SLUICE_JSON, .u.s = sl_cstr("[1,{\"a\":2}]")};
    sl_set(b, r, sl_intern("j", 1), j);
    sl_set(b, r, sl_intern("we\"ird", 6), sluice_int(1));
    is_str(encode_record(r, &out),
           "{\"s\":\"q\\\"b\\\\n\\nt\\tr\\rb\\bf\\f\\u0001\\u001f\x7f\",\"i\":-9223372036854775808,"
           "\"d\":0.1,\"w\":2.0,\"nan\":null,\"inf\":null,\"t\":true,\"z\":null,\"j\":[1,{\"a\":2}],"
           "\"we\\\"ird\":1}",
           "encodes every type");

    sluice_record *empty = sl_record_append(b);
    is_str(encode_record(empty, &out), "{}", "empty record");

    /* Shortest round-tripping doubles. */
    double ds[] = {0.1, 1.0 / 3, 123.456, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, -0.0, 100.0, 0.30000000000000004};
    const char *want[] = {"0.1", "0.3333333333333333", "123.456", "1e+21", "1e-07", "4.94065645841247e-324",
                          "1.7976931348623157e+308", "-0.0", "100.0", "0.30000000000000004"};
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        sluice_value v = sluice_double(ds[i]);
        out.len = 0;
        sl_json_encode_value(&v, &out);
        sl_buf_putc(&out, '\0');
        is_str(out.data, want[i], "double %.17g", ds[i]);
        sluice_value back;
        ok(sl_json_number(out.data, out.len - 1, &back) && back.type == SLUICE_DOUBLE && back.u.d == ds[i],
           "%s reads back as the same double", out.data);
    }

    out.len = 0;
    sl_json_encode_string("", 0, &out);
    ok(out.len == 2 && memcmp(out.data, "\"\"", 2) == 0, "empty string");
    out.len = 0;
    sl_json_encode_string("a\0b", 3, &out);
    ok(out.len == 10 && memcmp(out.data, "\"a\\u0000b\"", 10) == 0, "NUL escaped");

    /* Buffers grow geometrically and keep everything. */
    sluice_buf big = {NULL, 0, 0};
    bool same = true;
    for (int i = 0; i < 100000; i++)
        sl_buf_putc(&big, (char)('a' + i % 26));
    for (int i = 0; i < 100000; i++)
        same = same && big.data[i] == (char)('a' + i % 26);
    ok(same && big.len == 100000 && big.cap >= big.len, "100000 bytes appended");
    ok(big.cap < 4 * big.len, "capacity is not wildly over");
    sl_buf_free(&big);
    ok(big.data == NULL && big.len == 0 && big.cap == 0, "freed buffer is empty");
    sl_buf_free(&out);
    sl_batch_unref(b);
}

static void round_trip(const char *in, const char *want)
{
    sluice_batch *b = sl_batch_new(4);
    sluice_buf out = {NULL, 0, 0};
    sluice_record *r = decode(b, in);
    ok(r != NULL, "decodes %s (%s)", in, err);
    if (r) {
        is_str(encode_record(r, &out), want, "round trip of %s", in);
        /* And once more: encode(decode(encode(decode(x)))) is stable. */
        sluice_record *r2 = decode(b, out.data);
        char first[1024];
        snprintf(first, sizeof first, "%s", out.data);
        ok(r2 && strcmp(encode_record(r2, &out), first) == 0, "stable on the second trip");
    }
    sl_buf_free(&out);
    sl_batch_unref(b);
}

static void test_round_trip(void)
{
    round_trip("{\"a\":1,\"b\":\"x\",\"c\":1.5,\"d\":true,\"e\":null,\"f\":{\"g\":[1,2]}}",
               "{\"a\":1,\"b\":\"x\",\"c\":1.5,\"d\":true,\"e\":null,\"f\":{\"g\":[1,2]}}");
    round_trip("{ \"a\" : 1.0 , \"b\" : 1e2 }", "{\"a\":1.0,\"b\":100.0}");
    round_trip("{\"s\":\"\\u00e9\\n\\ud83d\\ude00\\/\"}", "{\"s\":\"\xc3\xa9\\n\xf0\x9f\x98\x80/\"}");
    round_trip("{\"big\":9223372036854775807,\"bigger\":9223372036854775808}",
               "{\"big\":9223372036854775807,\"bigger\":9.223372036854776e+18}");
    round_trip("{\"x\":0.1,\"y\":-0.000123}", "{\"x\":0.1,\"y\":-0.000123}");
}

int main(void)
{
    dec = sl_json_decoder_new();
    test_errors();
    test_values();
    test_numbers();
    test_strings();
    test_nested();
    test_encode();
    test_round_trip();
    sl_json_decoder_free(dec);
    return tap_done();
}
