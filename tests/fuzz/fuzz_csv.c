/*
 * fuzz_csv.c — libFuzzer target for the CSV decoder and encoder
 * (core/csv.c), behind `format: csv` files.
 *
 * The input is a CSV file: lines are given in turn, each in a buffer of its
 * exact size. As in the codec, the first line that reads as a header is
 * the header (a bad one is rejected and the next line tried); every later
 * line is a row. Every other row is decoded into a record that already
 * holds a field (the decoder's sl_set() path). For each row that decodes:
 *   - the record is sane (names once, known types, readable strings);
 *   - writing it as CSV (header line, then the row) and reading that back
 *     with fresh decoders gives the same record: csv.h promises
 *     decode(encode(r)) keeps the values (a non-finite double comes back
 *     empty, i.e. null);
 * and every failure says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "fuzz_check.h"
#include "json.h"

#define MAX_LINES 64
#define MAX_INPUT (256 * 1024)

typedef struct run {
    sl_csv *csv;
    sluice_batch *b;
    size_t rows;
    sluice_name pre;
} run;

static void round_trip(const sluice_record *r)
{
    sl_csv *enc = sl_csv_new(), *dec = sl_csv_new();
    sluice_buf text = {0};
    char err[256];
    if (!enc || !dec)
        abort();
    if (sl_csv_write_header(enc, r, &text) != SLUICE_OK)
        fuzz_fail("write_header failed");
    size_t header_len = text.len;
    if (sl_buf_putc(&text, '\n') != SLUICE_OK || sl_csv_encode(enc, r, &text) != SLUICE_OK)
        fuzz_fail("encode failed");
    if (memchr(text.data + header_len + 1, '\n', text.len - header_len - 1))
        fuzz_fail("an encoded row holds a line break");

    char *header = fuzz_exact_copy(text.data, header_len, 0);
    char *row = fuzz_exact_copy(text.data + header_len + 1, text.len - header_len - 1, 0);
    if (sl_csv_read_header(dec, header, header_len, err, sizeof err) != 0)
        fuzz_fail("the written header does not read back: %s: %.*s", err, (int)header_len,
                  header);
    sluice_batch *b2 = sl_batch_new(1);
    sluice_record *r2 = sl_record_append(b2);
    if (sl_csv_decode(dec, b2, r2, row, text.len - header_len - 1, err, sizeof err) != 0)
        fuzz_fail("the written row does not read back: %s: %.*s", err, (int)text.len,
                  text.data);
    fuzz_records_equal(r, r2, 1, "csv encode/decode");

    sl_batch_unref(b2);
    free(header);
    free(row);
    sl_buf_free(&text);
    sl_csv_free(enc);
    sl_csv_free(dec);
}

static void one_line(const char *line, size_t len, void *arg)
{
    run *rn = arg;
    char err[256] = "";
    if (!sl_csv_has_header(rn->csv)) {
        if (sl_csv_read_header(rn->csv, line, len, err, sizeof err) != 0 && !err[0])
            fuzz_fail("a bad header without a message");
        return;
    }
    if (rn->b->count == rn->b->capacity)
        return;
    sluice_record *r = sl_record_append(rn->b);
    if (rn->rows++ % 2 == 1 &&
        sl_set(rn->b, r, rn->pre, sluice_int((int64_t)rn->rows)) != SLUICE_OK)
        fuzz_fail("sl_set failed");
    if (sl_csv_decode(rn->csv, rn->b, r, line, len, err, sizeof err) != 0) {
        if (!err[0])
            fuzz_fail("a bad row without a message");
        rn->b->count--; /* as the codec does: the record is dropped */
        return;
    }
    fuzz_record_sane(r, "decoded row");
    round_trip(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    run rn = {.csv = sl_csv_new(), .b = sl_batch_new(MAX_LINES), .pre = sl_intern("pre", 3)};
    if (!rn.csv || !rn.b)
        abort();
    fuzz_each_line(data, size, MAX_LINES, one_line, &rn);
    sl_batch_unref(rn.b);
    sl_csv_free(rn.csv);
    return 0;
}
