/*
 * line_reader.c — a stream's bytes cut into lines; see line_reader.h.
 *
 * The carried buffer holds only the unterminated line after the last
 * '\n': complete lines are handed on straight from it and the rest is moved
 * to the front. Its room grows by doubling while a long line builds up and
 * shrinks back once that line is gone, so an idle connection holds about
 * one read's worth of memory.
 */
#include "line_reader.h"

#include <stdlib.h>
#include <string.h>

/* One complete line (without its '\n'). */
static int deliver(const char *p, size_t len, const sl_line_handler *h)
{
    if (len > 0 && p[len - 1] == '\r') /* CRLF peers (telnet, Windows tools) */
        len--;
    if (len > h->max_line)
        return h->too_long(h->arg, p, len, true);
    if (len == 0) /* as the file source: an empty line holds no record */
        return 0;
    return h->line(h->arg, p, len);
}

bool sl_line_reader_room(sl_line_reader *lr, size_t chunk)
{
    size_t want = lr->cap ? lr->cap : chunk;
    char *nb;

    if (lr->cap > 8 * chunk && lr->len <= chunk)
        want = 2 * chunk;
    while (want - lr->len < chunk)
        want *= 2;
    if (want == lr->cap)
        return true;
    nb = realloc(lr->buf, want);
    if (!nb)
        return false;
    lr->buf = nb;
    lr->cap = want;
    return true;
}

int sl_line_reader_take(sl_line_reader *lr, size_t from, const sl_line_handler *h)
{
    size_t start = 0, rest;
    char *nl;
    int rc;

    while (from < lr->len && (nl = memchr(lr->buf + from, '\n', lr->len - from)) != NULL) {
        size_t end = (size_t)(nl - lr->buf);
        if (lr->discarding)
            lr->discarding = false; /* the tail of a rejected line ends here */
        else if ((rc = deliver(lr->buf + start, end - start, h)) != 0)
            return rc;
        start = from = end + 1;
    }
    rest = lr->len - start;
    if (lr->discarding) {
        rest = 0;
    } else if (rest - (rest > 0 && lr->buf[start + rest - 1] == '\r') > h->max_line) {
        /* A '\r' at the end may be half of a CRLF the next read completes:
         * it counts no more than it will then (deliver() drops it). */
        if ((rc = h->too_long(h->arg, lr->buf + start, rest, false)) != 0)
            return rc;
        lr->discarding = true;
        rest = 0;
    }
    if (rest > 0 && start > 0)
        memmove(lr->buf, lr->buf + start, rest);
    lr->len = rest;
    return 0;
}

int sl_line_reader_finish(sl_line_reader *lr, const sl_line_handler *h)
{
    int rc = 0;

    if (lr->len > 0 && !lr->discarding)
        rc = deliver(lr->buf, lr->len, h);
    lr->len = 0;
    lr->discarding = false;
    return rc;
}

size_t sl_line_reader_pending(const sl_line_reader *lr)
{
    return lr->discarding ? 0 : lr->len;
}

void sl_line_reader_free(sl_line_reader *lr)
{
    free(lr->buf);
    memset(lr, 0, sizeof *lr);
}

int sl_lines_split(const char *p, size_t len, const sl_line_handler *h)
{
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t n = nl ? (size_t)(nl - p) : len;
        int rc = deliver(p, n, h);
        if (rc != 0)
            return rc;
        if (!nl)
            break;
        p += n + 1;
        len -= n + 1;
    }
    return 0;
}
