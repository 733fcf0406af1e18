/*
 * codec.h — the formats sources and sinks speak (json, lines, csv), behind
 * the host table's codec_new/decode/encode, so every plugin parses and
 * writes records the same way and rejects bad input the same way.
 */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include "sluice/plugin.h"

sluice_codec *sl_codec_new(sluice_ctx *ctx, const char *format, char *err, size_t errlen);
void sl_codec_free(sluice_codec *c);
int sl_codec_decode(sluice_codec *c, sluice_batch *b, const char *data, size_t len);
int sl_codec_encode(sluice_codec *c, const sluice_record *r, sluice_buf *out);
int sl_codec_header(sluice_codec *c, const char *line, size_t len, sluice_buf *out);

#endif
