/*
 * fuzz_lines.c — libFuzzer target for the codecs sources decode with
 * (core/codec.c): "lines" above all, and json and csv behind the same
 * decode() call.
 *
 * The first byte picks the format (lines, json, csv), the rest is lines
 * given in turn as a file source would, each in a buffer of its exact size
 * and with the batch emptied when full. The stage around the codec is a
 * stub of sl_stage_reject() that counts rejects and checks their raw text,
 * so the target checks what the host contract promises:
 *   - no line is lost: every line is a record, a csv header, or a reject
 *     whose raw text is the line itself;
 *   - "lines" makes exactly one field, `message`, holding the line byte for
 *     byte, and encoding gives the line back;
 *   - every record encodes, and a json/csv record decodes back from its
 *     encoding (csv through its header line) into an equal record.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "fuzz_check.h"
#include "json.h"
#include "runtime.h"

#define MAX_LINES 256
#define MAX_INPUT (256 * 1024)
#define BATCH 8

static const char *const formats[] = {"lines", "json", "csv"};

/* The stage's reject, as the codec calls it: the line it could not
 * decode, with a reason word and a human detail. */
static size_t rejects;
static const char *expect_raw;
static size_t expect_len;

int sl_stage_reject(sluice_ctx *ctx, const sluice_record *rec, sluice_str raw,
                    const char *reason, const char *detail)
{
    (void)ctx;
    if (rec)
        fuzz_fail("the codec rejected with a record");
    if (raw.len != expect_len || (raw.len && memcmp(raw.ptr, expect_raw, raw.len) != 0))
        fuzz_fail("a reject's raw text is not the line");
    if (!reason || !*reason || strchr(reason, ' ') || !detail || !*detail)
        fuzz_fail("a reject without a reason word or detail");
    rejects++;
    return SLUICE_RETRY;
}

typedef struct run {
    int format;
    sluice_codec *codec;
    sluice_codec *enc;   /* encodes every record of this input, like a sink */
    sluice_codec *again; /* decodes what enc wrote */
    bool enc_header_read;
    sluice_batch *b;
    size_t lines, records, headers;
    sluice_name message;
} run;

static void check_lines_record(run *rn, const sluice_record *r, const char *line, size_t len)
{
    if (r->nfields != 1 || r->fields[0].name != rn->message ||
        r->fields[0].value.type != SLUICE_STRING)
        fuzz_fail("a lines record is not one string field `message`");
    const sluice_str *s = &r->fields[0].value.u.s;
    if (s->len != len || (len && memcmp(s->ptr, line, len) != 0))
        fuzz_fail("`message` is not the line");
}

/* Encode r with the input's sink codec, decode it back, compare. */
static void round_trip(run *rn, const sluice_record *r, const char *line, size_t len)
{
    sluice_buf out = {0};
    if (sl_codec_encode(rn->enc, r, &out) != SLUICE_OK)
        fuzz_fail("encode failed");
    if (rn->format == 0) {
        if (out.len != len || (len && memcmp(out.data, line, len) != 0))
            fuzz_fail("lines: encode(decode(line)) is not the line");
        sl_buf_free(&out);
        return;
    }
    size_t start = 0;
    if (rn->format == 2 && !rn->enc_header_read) {
        /* The first encode wrote the header line too. */
        const char *nl = memchr(out.data, '\n', out.len);
        if (!nl)
            fuzz_fail("csv: the first encode wrote no header line");
        start = (size_t)(nl - out.data) + 1;
        char *header = fuzz_exact_copy(out.data, start - 1, 0);
        expect_raw = header;
        expect_len = start - 1;
        sluice_batch *hb = sl_batch_new(1);
        size_t before = rejects;
        if (sl_codec_decode(rn->again, hb, header, start - 1) != SLUICE_OK || rejects != before)
            fuzz_fail("csv: the written header does not read back");
        sl_batch_unref(hb);
        free(header);
        rn->enc_header_read = true;
    }
    char *text = fuzz_exact_copy(out.len ? out.data + start : "", out.len - start, 0);
    sluice_batch *b2 = sl_batch_new(1);
    expect_raw = text;
    expect_len = out.len - start;
    size_t before = rejects;
    int rc = sl_codec_decode(rn->again, b2, text, out.len - start);
    if (rc != SLUICE_OK || rejects != before || b2->count != 1)
        fuzz_fail("%s: the encoded record does not decode back: %.*s", formats[rn->format],
                  (int)(out.len - start), text);
    /* Rows of one header all have its columns, so csv compares whole too. */
    fuzz_records_equal(r, &b2->records[0], 1, "codec round trip");
    sl_batch_unref(b2);
    free(text);
    sl_buf_free(&out);
}

static void one_line(const char *line, size_t len, void *arg)
{
    run *rn = arg;
    rn->lines++;
    if (rn->b->count == rn->b->capacity) { /* "emit" the full batch */
        sl_batch_unref(rn->b);
        rn->b = sl_batch_new(BATCH);
    }
    uint32_t before = rn->b->count;
    size_t rejected = rejects;
    bool header = rn->format == 2 && rn->headers == 0;
    expect_raw = line;
    expect_len = len;
    int rc = sl_codec_decode(rn->codec, rn->b, line, len);
    if (rc == SLUICE_ERROR)
        fuzz_fail("decode failed with on_error: skip");
    if (rc == SLUICE_RETRY && rejects != rejected + 1)
        fuzz_fail("RETRY without a reject");
    if (rc == SLUICE_OK && header && rn->b->count == before) {
        rn->headers++;
        return;
    }
    if (rc != SLUICE_OK) {
        if (rn->b->count != before)
            fuzz_fail("a rejected line left a record");
        return;
    }
    if (rn->b->count != before + 1)
        fuzz_fail("decode returned OK without appending one record");
    const sluice_record *r = &rn->b->records[before];
    rn->records++;
    fuzz_record_sane(r, "decoded record");
    if (rn->format == 0)
        check_lines_record(rn, r, line, len);
    round_trip(rn, r, line, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (size < 1 || size > MAX_INPUT)
        return 0;
    run rn = {.format = data[0] % 3, .message = sl_intern("message", 7)};
    const char *fmt = formats[rn.format];
    rn.codec = sl_codec_new(NULL, fmt, err, sizeof err);
    rn.enc = sl_codec_new(NULL, fmt, err, sizeof err);
    rn.again = sl_codec_new(NULL, fmt, err, sizeof err);
    rn.b = sl_batch_new(BATCH);
    if (!rn.codec || !rn.enc || !rn.again || !rn.b)
        abort();
    size_t rejected = rejects;
    fuzz_each_line(data + 1, size - 1, MAX_LINES, one_line, &rn);
    if (rn.records + rn.headers + (rejects - rejected) != rn.lines)
        fuzz_fail("%zu lines in, %zu records + %zu header + %zu rejects out", rn.lines,
                  rn.records, rn.headers, rejects - rejected);
    sl_batch_unref(rn.b);
    sl_codec_free(rn.codec);
    sl_codec_free(rn.enc);
    sl_codec_free(rn.again);
    return 0;
}
