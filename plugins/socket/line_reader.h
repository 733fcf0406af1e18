/*
 * line_reader.h — bytes from a stream cut into lines, with a length limit,
 * for the socket source.
 *
 * Why a file of its own: this is the part of the socket source that reads
 * what a peer sends, byte for byte, so it is the part hostile input reaches
 * first. Kept free of sockets, codecs and the host table, it can be driven
 * by a fuzzer (tests/fuzz/fuzz_socket_lines.c) with any split of the input
 * into reads, and by the source with real recv() calls, through the same
 * code.
 *
 * The rules (the same as the file source's):
 *   - A line ends at '\n'; one '\r' before it is dropped (CRLF peers).
 *   - An empty line holds no record: it is skipped.
 *   - A line longer than max_line is never handed on. When it is complete
 *     it goes to too_long(complete = true) whole. When its unterminated
 *     start already exceeds the limit (a runaway peer), that start goes to
 *     too_long(complete = false) and the rest of the line is skipped up to
 *     the next '\n', so the buffer never grows much past max_line.
 *   - How the bytes were split into reads never changes which lines come
 *     out.
 *
 * Callbacks return 0 to go on; anything else stops the reader, which
 * returns that value (the socket source passes SLUICE_ERROR through).
 */
#ifndef SLUICE_SOCKET_LINE_READER_H
#define SLUICE_SOCKET_LINE_READER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sl_line_handler {
    size_t max_line; /* bytes, without the '\n' and a dropped '\r' */
    /* A line of 1..max_line bytes (no '\n', its '\r' dropped). */
    int (*line)(void *arg, const char *p, size_t len);
    /* A line over max_line: all of it (complete) or its first len bytes. */
    int (*too_long)(void *arg, const char *p, size_t len, bool complete);
    void *arg;
} sl_line_handler;

/* One stream's carried bytes: the unterminated line after the last '\n'.
 * Zero-initialise it; sl_line_reader_free() releases it. */
typedef struct sl_line_reader {
    char *buf;
    size_t len, cap;
    bool discarding; /* inside a too-long line: drop bytes up to the next '\n' */
} sl_line_reader;

/* Make room for at least `chunk` more bytes at buf + len (shrinking a
 * buffer that grew for a long line once that line is gone). false when
 * out of memory; the reader is unchanged then. */
bool sl_line_reader_room(sl_line_reader *lr, size_t chunk);

/* The caller appended bytes at buf[from..len): hand on every line they
 * complete, keep the unterminated rest (or start skipping it). */
int sl_line_reader_take(sl_line_reader *lr, size_t from, const sl_line_handler *h);

/* The stream ended: its last line may lack a '\n' (`printf a | nc`). The
 * reader is empty afterwards. */
int sl_line_reader_finish(sl_line_reader *lr, const sl_line_handler *h);

/* Bytes of an unterminated line held (0 while skipping a too-long one). */
size_t sl_line_reader_pending(const sl_line_reader *lr);

void sl_line_reader_free(sl_line_reader *lr);

/* Every line of one self-contained buffer (a UDP datagram); the last may
 * lack its '\n'. */
int sl_lines_split(const char *p, size_t len, const sl_line_handler *h);

#endif
