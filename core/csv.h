/*
 * csv.h — RFC 4180 CSV rows with a header row.
 *
 * A decoder learns the column names from the first line it is given; every
 * later line becomes a record whose fields are named by the header. Values
 * that look like integers or decimals become SLUICE_INT / SLUICE_DOUBLE,
 * an empty unquoted value is SLUICE_NULL, everything else a string.
 * A row whose number of columns differs from the header is an error.
 */
#ifndef SLUICE_CSV_H
#define SLUICE_CSV_H

#include "record.h"

typedef struct sl_csv sl_csv;

sl_csv *sl_csv_new(void);
void sl_csv_free(sl_csv *c);
bool sl_csv_has_header(const sl_csv *c);
/* Parse a header line (column names, interned). 0 or -1 with err. */
int sl_csv_read_header(sl_csv *c, const char *line, size_t len, char *err, size_t errlen);
/* Decode one row (no trailing newline needed) into r. 0 or -1 with err
 * ("3 columns, header has 4"). */
int sl_csv_decode(sl_csv *c, sluice_batch *b, sluice_record *r,
                  const char *line, size_t len, char *err, size_t errlen);
/* Encoding: the first record fixes the columns (its field order);
 * sl_csv_write_header appends the header line; sl_csv_encode appends one row
 * (fields missing in a later record are empty, extra ones are left out).
 * Neither appends a newline. */
int sl_csv_write_header(sl_csv *c, const sluice_record *first, sluice_buf *out);
int sl_csv_encode(sl_csv *c, const sluice_record *r, sluice_buf *out);

#endif
