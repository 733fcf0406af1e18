/*
 * codec.c — json, lines and csv for sources and sinks; see codec.h.
 *
 * decode() appends one record, or rejects the input through the stage (so
 * it reaches `errors` with its raw text) and appends nothing. "lines" keeps
 * the whole line in one field, `message`, the name Fluent Bit and Vector
 * use. csv takes the first line it sees as the header; encoding csv writes
 * the header before the first row, its columns fixed by the first record.
 */
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "json.h"
#include "runtime.h"

typedef enum codec_format { CODEC_JSON, CODEC_LINES, CODEC_CSV } codec_format;

struct sluice_codec {
    sluice_ctx *ctx;
    codec_format format;
    sl_json_decoder *json;
    sl_csv *csv;
    bool header_done;
    sluice_name message;
};

sluice_codec *sl_codec_new(sluice_ctx *ctx, const char *format, char *err, size_t errlen)
{
    codec_format f;
    if (strcmp(format, "json") == 0)
        f = CODEC_JSON;
    else if (strcmp(format, "lines") == 0)
        f = CODEC_LINES;
    else if (strcmp(format, "csv") == 0)
        f = CODEC_CSV;
    else {
        snprintf(err, errlen, "unknown format '%s' (json, lines or csv)", format);
        return NULL;
    }
    sluice_codec *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->ctx = ctx;
    c->format = f;
    c->message = sl_intern("message", 7);
    if (f == CODEC_JSON)
        c->json = sl_json_decoder_new();
    if (f == CODEC_CSV)
        c->csv = sl_csv_new();
    if ((f == CODEC_JSON && !c->json) || (f == CODEC_CSV && !c->csv)) {
        sl_codec_free(c);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return c;
}

void sl_codec_free(sluice_codec *c)
{
    if (!c)
        return;
    if (c->json)
        sl_json_decoder_free(c->json);
    if (c->csv)
        sl_csv_free(c->csv);
    free(c);
}

static int reject(sluice_codec *c, const char *data, size_t len, const char *reason,
                  const char *detail)
{
    sluice_str raw = {data, len};
    return sl_stage_reject(c->ctx, NULL, raw, reason, detail) == SLUICE_ERROR ? SLUICE_ERROR
                                                                              : SLUICE_RETRY;
}

int sl_codec_decode(sluice_codec *c, sluice_batch *b, const char *data, size_t len)
{
    char err[256];
    if (c->format == CODEC_CSV && !sl_csv_has_header(c->csv)) {
        if (sl_csv_read_header(c->csv, data, len, err, sizeof err) != 0)
            return reject(c, data, len, "bad_csv_header", err);
        return SLUICE_OK;
    }
    sluice_record *r = sl_record_append(b);
    if (!r)
        return SLUICE_ERROR; /* the caller emits full batches first */
    int rc = 0;
    switch (c->format) {
    case CODEC_JSON:
        rc = sl_json_decode(c->json, b, r, data, len, err, sizeof err);
        break;
    case CODEC_CSV:
        rc = sl_csv_decode(c->csv, b, r, data, len, err, sizeof err);
        break;
    case CODEC_LINES:
        rc = sl_set(b, r, c->message, sluice_string(sl_str(b, data, len)));
        if (rc != 0)
            snprintf(err, sizeof err, "out of memory");
        break;
    }
    if (rc != 0) {
        b->count--; /* the half-decoded record is dropped; its arena bytes stay */
        return reject(c, data, len, c->format == CODEC_JSON ? "bad_json" : "bad_csv", err);
    }
    return SLUICE_OK;
}

int sl_codec_encode(sluice_codec *c, const sluice_record *r, sluice_buf *out)
{
    switch (c->format) {
    case CODEC_JSON:
        return sl_json_encode(r, out);
    case CODEC_LINES: {
        const sluice_value *v = sluice_get(r, c->message);
        if (v && v->type == SLUICE_STRING)
            return sl_buf_append(out, v->u.s.ptr, v->u.s.len);
        if (v)
            return sl_json_encode_value(v, out);
        return sl_json_encode(r, out); /* no message: the whole record */
    }
    case CODEC_CSV:
        if (!c->header_done) {
            if (sl_csv_write_header(c->csv, r, out) != 0 || sl_buf_putc(out, '\n') != 0)
                return SLUICE_ERROR;
            c->header_done = true;
        }
        return sl_csv_encode(c->csv, r, out);
    }
    return SLUICE_ERROR;
}

int sl_codec_header(sluice_codec *c, const char *line, size_t len, sluice_buf *out)
{
    if (c->format != CODEC_CSV)
        return SLUICE_OK;
    if (!line && !out) {
        c->header_done = true; /* the output already has its header */
        return SLUICE_OK;
    }
    if (line) {
        char err[256];
        if (sl_csv_read_header(c->csv, line, len, err, sizeof err) != 0)
            return reject(c, line, len, "bad_csv_header", err);
    }
    return SLUICE_OK;
}
