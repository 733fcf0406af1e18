/*
 * csv.c — RFC 4180 rows with a header row, to and from records.
 *
 * The caller splits the input into lines, so a row is one line: a quoted
 * field may hold commas and doubled quotes ("") but not a line break (such
 * a row fails as an unterminated quoted field). One trailing '\r' is dropped
 * (CRLF files); a UTF-8 byte order mark before the header is dropped.
 *
 * Decoding splits a line into spans in one pass (a quoted span is
 * unescaped into the batch arena only when it holds "" pairs), checks the
 * count against the header, then writes the fields straight into an exactly
 * sized field array. Types follow the text: an unquoted value that is a
 * JSON number becomes SLUICE_INT / SLUICE_DOUBLE (so "007" or "+5" stay
 * strings: leading zeros are data), an empty unquoted value is SLUICE_NULL,
 * anything quoted is a string. A quote inside an unquoted value is kept as
 * a literal character, as most CSV writers in the wild need.
 *
 * Encoding quotes a value when it holds , " \n \r, starts or ends with a
 * space or tab, or when unquoted it would read back as another type (an
 * empty string, or a string that looks like a number) — so decode(encode(r))
 * gives r's values back. A first column name starting with a byte order
 * mark is quoted too, or reading would drop the mark.
 */
#include "csv.h"

#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* One field of a row as found in the line. */
typedef struct span {
    const char *p;
    size_t len;
    bool quoted;
    bool has_pairs; /* quoted with "" inside: needs unescaping */
} span;

struct sl_csv {
    /* Decoding: the header's names. */
    sluice_name *header;
    size_t ncols;
    bool has_header;
    span *spans; /* a row's spans, reused */
    size_t capspans;
    /* Encoding: the columns the first record fixed. */
    sluice_name *columns;
    size_t nout;
    bool columns_fixed;
};

sl_csv *sl_csv_new(void)
{
    return calloc(1, sizeof(sl_csv));
}

void sl_csv_free(sl_csv *c)
{
    if (!c)
        return;
    free(c->header);
    free(c->spans);
    free(c->columns);
    free(c);
}

bool sl_csv_has_header(const sl_csv *c)
{
    return c->has_header;
}

static int add_span(sl_csv *c, size_t n, span s)
{
    if (n == c->capspans) {
        size_t cap = c->capspans ? c->capspans * 2 : 16;
        span *x = realloc(c->spans, cap * sizeof *x);
        if (!x)
            return -1;
        c->spans = x;
        c->capspans = cap;
    }
    c->spans[n] = s;
    return 0;
}

/* Split line into c->spans; *count is the number of fields. */
static int split(sl_csv *c, const char *line, size_t len, size_t *count,
                 char *err, size_t errlen)
{
    const char *p = line, *end = line + len;
    size_t n = 0;
    if (len && end[-1] == '\r')
        end--;
    for (;;) {
        span s = {p, 0, false, false};
        if (p < end && *p == '"') {
            const char *open = p++;
            s.quoted = true;
            s.p = p;
            for (;;) {
                const char *q = memchr(p, '"', (size_t)(end - p));
                if (!q) {
                    snprintf(err, errlen, "unterminated quoted field at byte %zu",
                             (size_t)(open - line));
                    return -1;
                }
                if (q + 1 < end && q[1] == '"') {
                    s.has_pairs = true;
                    p = q + 2;
                    continue;
                }
                s.len = (size_t)(q - s.p);
                p = q + 1;
                break;
            }
            if (p < end && *p != ',') {
                snprintf(err, errlen, "expected ',' after closing quote at byte %zu",
                         (size_t)(p - line));
                return -1;
            }
        } else {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            p = comma ? comma : end;
            s.len = (size_t)(p - s.p);
        }
        if (add_span(c, n++, s) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (p >= end)
            break;
        p++; /* the comma */
    }
    *count = n;
    return 0;
}

/* The text of a quoted span with "" pairs made single, into dst. */
static size_t unquote(const span *s, char *dst)
{
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++) {
        dst[n++] = s->p[i];
        if (s->p[i] == '"')
            i++; /* the second quote of the pair */
    }
    return n;
}

int sl_csv_read_header(sl_csv *c, const char *line, size_t len, char *err, size_t errlen)
{
    if (len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
        line += 3;
        len -= 3;
    }
    size_t n;
    if (split(c, line, len, &n, err, errlen) != 0)
        return -1;
    sluice_name *names = calloc(n, sizeof *names);
    if (!names) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        span *s = &c->spans[i];
        char small[256], *text = (char *)s->p;
        size_t tlen = s->len;
        if (s->has_pairs) {
            text = s->len <= sizeof small ? small : malloc(s->len);
            if (!text) {
                free(names);
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            tlen = unquote(s, text);
        }
        if (tlen == 0) {
            snprintf(err, errlen, "column %zu of the header has no name", i + 1);
            names[i] = 0;
        } else {
            names[i] = sl_intern(text, tlen);
            if (!names[i])
                snprintf(err, errlen, "too many distinct field names");
        }
        if (text != s->p && text != small)
            free(text);
        for (size_t j = 0; names[i] && j < i; j++) {
            if (names[j] == names[i]) {
                snprintf(err, errlen, "column %zu of the header repeats '%s'", i + 1,
                         sl_name_of(names[i]));
                names[i] = 0;
            }
        }
        if (!names[i]) {
            free(names);
            return -1;
        }
    }
    free(c->header);
    c->header = names;
    c->ncols = n;
    c->has_header = true;
    return 0;
}

/* The typed value of one span; strings into b's arena. */
static int span_value(sluice_batch *b, const span *s, sluice_value *v)
{
    if (!s->quoted) {
        if (s->len == 0) {
            *v = sluice_null();
            return 0;
        }
        if (sl_json_number(s->p, s->len, v))
            return 0;
    }
    v->type = SLUICE_STRING;
    if (!s->has_pairs) {
        v->u.s = sl_str(b, s->p, s->len);
        return v->u.s.ptr ? 0 : -1;
    }
    char *d = sl_alloc(b, s->len + 1);
    if (!d)
        return -1;
    size_t n = unquote(s, d);
    d[n] = '\0';
    v->u.s.ptr = d;
    v->u.s.len = n;
    return 0;
}

int sl_csv_decode(sl_csv *c, sluice_batch *b, sluice_record *r,
                  const char *line, size_t len, char *err, size_t errlen)
{
    if (!c->has_header) {
        snprintf(err, errlen, "no header row yet");
        return -1;
    }
    size_t n;
    if (split(c, line, len, &n, err, errlen) != 0)
        return -1;
    if (n != c->ncols) {
        snprintf(err, errlen, "%zu column%s, header has %zu", n, n == 1 ? "" : "s", c->ncols);
        return -1;
    }
    /* A fresh record gets one exactly sized array; header names are
     * distinct, so no field replaces another. */
    sluice_field *f = NULL;
    if (r->nfields == 0) {
        f = sl_alloc(b, n * sizeof *f);
        if (!f)
            goto oom;
    }
    for (size_t i = 0; i < n; i++) {
        sluice_value v;
        if (span_value(b, &c->spans[i], &v) != 0)
            goto oom;
        if (f) {
            f[i].name = c->header[i];
            f[i].value = v;
        } else if (sl_set(b, r, c->header[i], v) != SLUICE_OK) {
            goto oom;
        }
    }
    if (f) {
        r->fields = f;
        r->nfields = r->capfields = (uint32_t)n;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- Encoding ---------------------------------------------------------- */

static bool needs_quotes(const char *p, size_t len, bool is_string)
{
    if (len == 0)
        return is_string; /* unquoted empty reads back as null */
    if (p[0] == ' ' || p[0] == '\t' || p[len - 1] == ' ' || p[len - 1] == '\t')
        return true;
    for (size_t i = 0; i < len; i++)
        if (p[i] == ',' || p[i] == '"' || p[i] == '\n' || p[i] == '\r')
            return true;
    sluice_value ignored;
    return is_string && sl_json_number(p, len, &ignored);
}

static int put_quoted(sluice_buf *out, const char *p, size_t len)
{
    if (sl_buf_putc(out, '"') != SLUICE_OK)
        return SLUICE_ERROR;
    const char *end = p + len;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        const char *stop = q ? q + 1 : end; /* include the quote, then double it */
        if (sl_buf_append(out, p, (size_t)(stop - p)) != SLUICE_OK)
            return SLUICE_ERROR;
        if (q && sl_buf_putc(out, '"') != SLUICE_OK)
            return SLUICE_ERROR;
        p = stop;
    }
    return sl_buf_putc(out, '"');
}

static int put_text(sluice_buf *out, const char *p, size_t len, bool is_string)
{
    if (!needs_quotes(p, len, is_string))
        return sl_buf_append(out, p, len);
    return put_quoted(out, p, len);
}

static int put_value(sluice_buf *out, const sluice_value *v)
{
    switch (v->type) {
    case SLUICE_NULL:
        return SLUICE_OK;
    case SLUICE_DOUBLE:
        if (!isfinite(v->u.d))
            return SLUICE_OK; /* no CSV spelling; empty, like null */
        return sl_json_encode_value(v, out);
    case SLUICE_BOOL:
    case SLUICE_INT:
        return sl_json_encode_value(v, out);
    case SLUICE_STRING:
        return put_text(out, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, true);
    case SLUICE_JSON:
        return put_text(out, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, true);
    }
    return SLUICE_OK;
}

static int fix_columns(sl_csv *c, const sluice_record *first)
{
    c->columns_fixed = true;
    c->nout = 0;
    if (!first->nfields)
        return SLUICE_OK;
    sluice_name *cols = malloc(first->nfields * sizeof *cols);
    if (!cols)
        return SLUICE_ERROR;
    for (uint32_t i = 0; i < first->nfields; i++)
        cols[i] = first->fields[i].name;
    free(c->columns);
    c->columns = cols;
    c->nout = first->nfields;
    return SLUICE_OK;
}

int sl_csv_write_header(sl_csv *c, const sluice_record *first, sluice_buf *out)
{
    if (fix_columns(c, first) != SLUICE_OK)
        return SLUICE_ERROR;
    for (size_t i = 0; i < c->nout; i++) {
        const char *name = sl_name_of(c->columns[i]);
        size_t len = sl_name_len(c->columns[i]);
        if (i && sl_buf_putc(out, ',') != SLUICE_OK)
            return SLUICE_ERROR;
        /* A name starting with a byte order mark would lose it when read
         * back (a BOM before the header is dropped): quote it. */
        bool bom = i == 0 && len >= 3 && memcmp(name, "\xef\xbb\xbf", 3) == 0;
        if ((bom ? put_quoted(out, name, len) : put_text(out, name, len, false)) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

int sl_csv_encode(sl_csv *c, const sluice_record *r, sluice_buf *out)
{
    if (!c->columns_fixed && fix_columns(c, r) != SLUICE_OK)
        return SLUICE_ERROR;
    for (size_t i = 0; i < c->nout; i++) {
        if (i && sl_buf_putc(out, ',') != SLUICE_OK)
            return SLUICE_ERROR;
        /* Field i of a record shaped like the first is the usual case. */
        const sluice_value *v = NULL;
        if (i < r->nfields && r->fields[i].name == c->columns[i])
            v = &r->fields[i].value;
        else
            v = sluice_get(r, c->columns[i]);
        if (v && put_value(out, v) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    return SLUICE_OK;
}
