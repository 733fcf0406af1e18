/*
 * json.h — the JSON decoder and encoder of the hot path.
 *
 * The decoder reads one JSON object (one line of JSON-lines, one Kafka
 * message) straight into a record: top-level members become typed fields,
 * string bytes are copied once into the batch arena (unescaped), nested
 * objects and arrays are kept as their JSON text (SLUICE_JSON) and reached
 * later by dotted path. Field names are interned through a small per-decoder
 * cache so the global interner's lock is not taken per record.
 *
 * Strictness: RFC 8259 grammar (no comments, no trailing commas, no NaN);
 * the top level must be an object; nothing but whitespace may follow it;
 * control characters in strings, invalid escapes and unpaired \u surrogates
 * are errors; objects/arrays nest at most 64 deep (the top-level object
 * counts). Bytes >= 0x80 are not checked: invalid UTF-8 passes through as
 * bytes. Duplicate keys: the last one wins.
 *
 * A decoder is not thread-safe: one per stage (per codec).
 */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include "record.h"

typedef struct sl_json_decoder sl_json_decoder;

sl_json_decoder *sl_json_decoder_new(void);
void sl_json_decoder_free(sl_json_decoder *d);

/* Decode the object in data[0..len) into r's fields (appended with sl_set
 * semantics, strings into b's arena). Leading/trailing whitespace allowed.
 * Integers in int64 range are SLUICE_INT, other numbers SLUICE_DOUBLE.
 * Returns 0, or -1 with a short message ("expected ':', got '=' at byte 17";
 * bytes counted from 0) in err. On error r may hold some fields (today it
 * holds none): the caller discards the record. */
int sl_json_decode(sl_json_decoder *d, sluice_batch *b, sluice_record *r,
                   const char *data, size_t len, char *err, size_t errlen);

/* Append r's fields as one JSON object (no newline). These return
 * SLUICE_OK, or SLUICE_ERROR when out of memory. Doubles are written with
 * the fewest digits (15..17) that read back exactly, with ".0" added to
 * integral ones so they stay doubles; NaN and infinities become null.
 * Strings are written as their bytes with '"', '\\' and control characters
 * escaped (invalid UTF-8 is not repaired). */
int sl_json_encode(const sluice_record *r, sluice_buf *out);
/* Append one value as JSON (strings quoted and escaped, JSON text as is). */
int sl_json_encode_value(const sluice_value *v, sluice_buf *out);
/* Append s as a quoted, escaped JSON string. */
int sl_json_encode_string(const char *p, size_t len, sluice_buf *out);

/* Look up a dotted path ("a.b.c") inside a SLUICE_JSON value's text; a
 * segment of digits also indexes an array ("items.0.id"); "" is the whole
 * value. The result is typed like a decoded field: strings (unescaped) and
 * nested objects/arrays (SLUICE_JSON) are copied into b's arena. Returns
 * false when absent or when the text is not valid JSON. */
bool sl_json_path(sluice_batch *b, sluice_str json, const char *path, sluice_value *out);

/* Is p[0..len) exactly one JSON number? Then *out is its value, typed as the
 * decoder types it (CSV uses this for type inference). */
bool sl_json_number(const char *p, size_t len, sluice_value *out);

/* sluice_buf helpers (malloc-backed, growing geometrically). SLUICE_OK or
 * SLUICE_ERROR when out of memory. sl_buf_free leaves an empty buffer. */
int sl_buf_append(sluice_buf *buf, const char *p, size_t len);
int sl_buf_putc(sluice_buf *buf, char c);
void sl_buf_free(sluice_buf *buf);

#endif
