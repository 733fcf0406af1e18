/*
 * fuzz_socket_lines.c — libFuzzer target for the socket source's line
 * reader (plugins/socket/line_reader.c): what a TCP or UDP peer sends is
 * cut into lines there, with a max_line limit, before any decoder sees it.
 *
 * Input: byte 0 picks max_line (1..64, small so the too-long paths are
 * common), bytes 1-2 seed the sizes of the reads, the rest is the stream.
 * The stream is fed as a connection would deliver it — reads of 1..97
 * bytes into the reader's own buffer, grown with a small chunk size so
 * growing and shrinking happen — then finished as when the peer closes.
 * The same bytes are also cut in one go, as a datagram is. Checked:
 *   - both give the same lines, in order: where the reads fall never
 *     changes which lines a source emits (line_reader.h promises it);
 *   - every line is 1..max_line bytes without '\n', every reject longer
 *     than max_line;
 *   - the reader never holds more than one over-long line's worth
 *     (max_line + 1 bytes) between reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "socket/line_reader.h"

#define MAX_INPUT (64 * 1024)
#define ROOM_CHUNK 8

typedef struct lines {
    char *bytes; /* the lines, each followed by '\n' */
    size_t len, cap;
    size_t count, rejects;
    size_t max_line;
} lines;

static void append(lines *l, const char *p, size_t len)
{
    if (l->len + len + 1 > l->cap) {
        l->cap = (l->len + len + 1) * 2;
        l->bytes = realloc(l->bytes, l->cap);
        if (!l->bytes)
            abort();
    }
    memcpy(l->bytes + l->len, p, len);
    l->len += len;
    l->bytes[l->len++] = '\n';
}

static int on_line(void *arg, const char *p, size_t len)
{
    lines *l = arg;
    if (len == 0 || len > l->max_line)
        fuzz_fail("a line of %zu bytes with max_line %zu", len, l->max_line);
    if (memchr(p, '\n', len))
        fuzz_fail("a line holding '\\n'");
    append(l, p, len);
    l->count++;
    return 0;
}

static int on_too_long(void *arg, const char *p, size_t len, bool complete)
{
    lines *l = arg;
    (void)complete;
    if (len <= l->max_line)
        fuzz_fail("a reject of %zu bytes with max_line %zu", len, l->max_line);
    (void)fuzz_touch(p, len);
    l->rejects++;
    return 0;
}

/* A small xorshift: the read sizes follow from the input's seed. */
static unsigned next_read(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return 1 + x % 97;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > MAX_INPUT)
        return 0;
    size_t max_line = 1 + data[0] % 64;
    uint32_t seed = 0x9e3779b9u ^ ((uint32_t)data[1] << 8 | data[2]);
    const char *stream = (const char *)data + 3;
    size_t len = size - 3;

    lines streamed = {.max_line = max_line}, whole = {.max_line = max_line};
    sl_line_handler hs = {.max_line = max_line, .line = on_line, .too_long = on_too_long,
                          .arg = &streamed};
    sl_line_handler hw = {.max_line = max_line, .line = on_line, .too_long = on_too_long,
                          .arg = &whole};

    sl_line_reader lr = {0};
    for (size_t at = 0; at < len;) {
        size_t want = next_read(&seed);
        if (!sl_line_reader_room(&lr, ROOM_CHUNK))
            abort();
        size_t n = lr.cap - lr.len;
        if (n > want)
            n = want;
        if (n > len - at)
            n = len - at;
        size_t from = lr.len;
        memcpy(lr.buf + lr.len, stream + at, n);
        lr.len += n;
        at += n;
        if (sl_line_reader_take(&lr, from, &hs) != 0)
            fuzz_fail("take stopped without a callback asking");
        if (lr.len > max_line + 1)
            fuzz_fail("the reader holds %zu bytes with max_line %zu", lr.len, max_line);
    }
    if (sl_line_reader_finish(&lr, &hs) != 0)
        fuzz_fail("finish stopped without a callback asking");
    if (sl_line_reader_pending(&lr) != 0)
        fuzz_fail("bytes left after finish");
    sl_line_reader_free(&lr);

    char *copy = fuzz_exact_copy(stream, len, 0);
    if (sl_lines_split(copy, len, &hw) != 0)
        fuzz_fail("split stopped without a callback asking");
    free(copy);

    if (streamed.count != whole.count || streamed.len != whole.len ||
        (whole.len && memcmp(streamed.bytes, whole.bytes, whole.len) != 0))
        fuzz_fail("read in pieces: %zu lines; in one go: %zu lines (max_line %zu)",
                  streamed.count, whole.count, max_line);
    free(streamed.bytes);
    free(whole.bytes);
    return 0;
}
