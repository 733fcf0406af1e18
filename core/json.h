/*
 * json.h — the JSON decoder and encoder of the hot path.
 *
 * The decoder reads one JSON object (one line of JSON-lines, one Kafka
 * message) straight into a record: top-level members become typed fields,
 * string bytes are copied once into the batch arena (unescaped), nested
 * objects and arrays are kept as their JSON text (SLUICE_JSON) and reached
 * later by dotted path. Field names are interned through a small per-decoder
 * cache so the global interner's lock is not taken per record.
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include "record.h"

typedef struct sl_json_decoder sl_json_decoder;

sl_json_decoder *sl_json_decoder_new(void);
void sl_json_decoder_free(sl_json_decoder *d);

/* Decode the object in data[0..len) into r's fields (appended with sl_set
 * semantics, strings into b's arena). Leading/trailing whitespace allowed.
 * Returns 0, or -1 with a short message ("expected ':' at byte 17") in err.
 * On error r may hold some fields: the caller discards the record. */
int sl_json_decode(sl_json_decoder *d, sluice_batch *b, sluice_record *r,
                   const char *data, size_t len, char *err, size_t errlen);

/* Append r's fields as one JSON object (no newline). */
int sl_json_encode(const sluice_record *r, sluice_buf *out);
/* Append one value as JSON (strings quoted and escaped, JSON text as is). */
int sl_json_encode_value(const sluice_value *v, sluice_buf *out);
/* Append s as a quoted, escaped JSON string. */
int sl_json_encode_string(const char *p, size_t len, sluice_buf *out);

/* Look up a dotted path ("a.b.c") inside a SLUICE_JSON value's text; the
 * result's strings are copied into b's arena. Returns false when absent or
 * when the text is not valid JSON. */
bool sl_json_path(sluice_batch *b, sluice_str json, const char *path, sluice_value *out);

/* sluice_buf helpers (malloc-backed). */
int sl_buf_append(sluice_buf *buf, const char *p, size_t len);
int sl_buf_putc(sluice_buf *buf, char c);
void sl_buf_free(sluice_buf *buf);

#endif
