/*
 * csv.h — RFC 4180 CSV rows with a header row.
 *
 * A decoder learns the column names from the first line it is given; every
 * later line becomes a record whose fields are named by the header. Values
 * that look like integers or decimals become SLUICE_INT / SLUICE_DOUBLE,
 * an empty unquoted value is SLUICE_NULL, everything else a string.
 * A row whose number of columns differs from the header is an error.
 *
 * Details:
 *   - Lines are split by the caller, so a quoted field cannot hold a line
 *     break: such a row fails ("unterminated quoted field at byte N").
 *     Commas and doubled quotes ("") inside quotes work.
 *   - One trailing '\r' is dropped (CRLF files); a UTF-8 BOM before the
 *     header is dropped.
 *   - A value is a number only when the whole unquoted text is a JSON
 *     number: "007", "+5", " 5", "1." stay strings. Integers beyond int64
 *     become doubles. A quoted value is always a string.
 *   - A quote inside an unquoted value is kept as a literal character.
 *   - Header names must be non-empty and distinct.
 *   - The encoder quotes a value holding , " \n \r, starting or ending with
 *     a space or tab, and strings that would otherwise read back as another
 *     type (empty, or number-like), so decode(encode(r)) keeps the values.
 *     Bools are written true/false and JSON values as their text (both read
 *     back as strings); NaN and infinities are written empty.
 */
#ifndef SLUICE_CSV_H
#define SLUICE_CSV_H

#include "record.h"

typedef struct sl_csv sl_csv;

sl_csv *sl_csv_new(void);
void sl_csv_free(sl_csv *c);
bool sl_csv_has_header(const sl_csv *c);
/* Parse a header line (column names, interned). 0 or -1 with err; after an
 * error the decoder still has no header (or keeps the previous one). */
int sl_csv_read_header(sl_csv *c, const char *line, size_t len, char *err, size_t errlen);
/* Decode one row (no trailing newline needed) into r, with sl_set
 * semantics. 0 or -1 with err ("3 columns, header has 4"); r is left as it
 * was after a bad row (only running out of memory can leave it half set). */
int sl_csv_decode(sl_csv *c, sluice_batch *b, sluice_record *r,
                  const char *line, size_t len, char *err, size_t errlen);
/* Encoding: the first record fixes the columns (its field order);
 * sl_csv_write_header appends the header line; sl_csv_encode appends one row
 * (fields missing in a later record are empty, extra ones are left out).
 * Neither appends a newline. */
int sl_csv_write_header(sl_csv *c, const sluice_record *first, sluice_buf *out);
int sl_csv_encode(sl_csv *c, const sluice_record *r, sluice_buf *out);

#endif
