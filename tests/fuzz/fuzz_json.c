/*
 * fuzz_json.c — libFuzzer target for the JSON decoder (core/json.c), the
 * parser behind `format: json` files, sockets and Kafka messages.
 *
 * The input is read as JSON lines, as a source sees them: one decoder
 * takes every line in turn (so its expected-key and name caches carry over
 * from record to record, as in a stream), each line in a buffer of its
 * exact size so a read past its end is caught. Every other record already
 * holds a field when it is decoded, which takes the decoder's sl_set()
 * path. For each record that decodes:
 *   - the record is sane (names once, known types, readable strings);
 *   - encode, then decode with a second decoder, gives the same record
 *     (the round trip a json file sink and source depend on); a non-finite
 *     double may come back as null (the encoder writes it so);
 *   - nested values answer sl_json_path() for the whole value and for a
 *     few paths (first member, index 0, a key found in the text).
 * A line that fails must say why, with a byte position.
 * sl_json_number() is also given the whole input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "json.h"

#define MAX_LINES 64
#define MAX_INPUT (256 * 1024)

typedef struct run {
    sl_json_decoder *dec, *again;
    sluice_batch *b;
    size_t index;
    sluice_name pre;
} run;

static void check_paths(sluice_batch *b, const sluice_value *v)
{
    static const char *const paths[] = {"", "0", "1.0", "a", "a.b", "0.a", "items.0.id", NULL};
    sluice_value out;
    if (!sl_json_path(b, v->u.s, "", &out))
        fuzz_fail("sl_json_path(\"\") failed on text the decoder accepted");
    for (size_t i = 0; paths[i]; i++)
        if (sl_json_path(b, v->u.s, paths[i], &out) &&
            (out.type == SLUICE_STRING || out.type == SLUICE_JSON))
            (void)fuzz_touch(out.u.s.ptr, out.u.s.len);
    /* A key taken from the text itself: the first "..." run. */
    const char *q = memchr(v->u.s.ptr, '"', v->u.s.len);
    if (q) {
        const char *end = v->u.s.ptr + v->u.s.len;
        const char *q2 = memchr(q + 1, '"', (size_t)(end - q - 1));
        if (q2 && q2 - q - 1 < 64) {
            char key[64];
            memcpy(key, q + 1, (size_t)(q2 - q - 1));
            key[q2 - q - 1] = '\0';
            if (sl_json_path(b, v->u.s, key, &out) &&
                (out.type == SLUICE_STRING || out.type == SLUICE_JSON))
                (void)fuzz_touch(out.u.s.ptr, out.u.s.len);
        }
    }
}

static void round_trip(run *rn, const sluice_record *r)
{
    sluice_buf text = {0};
    char err[256];
    if (sl_json_encode(r, &text) != SLUICE_OK)
        fuzz_fail("encode failed");
    char *copy = fuzz_exact_copy(text.data, text.len, 0);
    sluice_batch *b2 = sl_batch_new(1);
    sluice_record *r2 = sl_record_append(b2);
    if (sl_json_decode(rn->again, b2, r2, copy, text.len, err, sizeof err) != 0)
        fuzz_fail("the encoder's output does not decode: %s: %.*s", err, (int)text.len,
                  text.data);
    fuzz_records_equal(r, r2, 1, "json encode/decode");
    sl_batch_unref(b2);
    free(copy);
    sl_buf_free(&text);
}

static void one_line(const char *line, size_t len, void *arg)
{
    run *rn = arg;
    char err[256] = "";
    if (rn->b->count == rn->b->capacity)
        return;
    sluice_record *r = sl_record_append(rn->b);
    if (rn->index++ % 2 == 1 &&
        sl_set(rn->b, r, rn->pre, sluice_int((int64_t)rn->index)) != SLUICE_OK)
        fuzz_fail("sl_set failed");
    if (sl_json_decode(rn->dec, rn->b, r, line, len, err, sizeof err) != 0) {
        if (!strstr(err, " at byte "))
            fuzz_fail("an error without a position: '%s'", err);
        rn->b->count--; /* as the codec does: the record is dropped */
        return;
    }
    fuzz_record_sane(r, "decoded record");
    round_trip(rn, r);
    for (uint32_t i = 0; i < r->nfields; i++)
        if (r->fields[i].value.type == SLUICE_JSON)
            check_paths(rn->b, &r->fields[i].value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    run rn = {.dec = sl_json_decoder_new(), .again = sl_json_decoder_new(),
              .b = sl_batch_new(MAX_LINES), .pre = sl_intern("pre", 3)};
    if (!rn.dec || !rn.again || !rn.b)
        abort();
    fuzz_each_line(data, size, MAX_LINES, one_line, &rn);

    sluice_value v;
    char *whole = fuzz_exact_copy(data, size, 0);
    if (sl_json_number(whole, size, &v) && v.type != SLUICE_INT && v.type != SLUICE_DOUBLE)
        fuzz_fail("sl_json_number gave a %s", fuzz_type_name(v.type));
    free(whole);

    sl_batch_unref(rn.b);
    sl_json_decoder_free(rn.dec);
    sl_json_decoder_free(rn.again);
    return 0;
}
