/*
 * console.c — the `console` sink: records on the terminal, for demos and
 * for looking at a pipeline while building it.
 *
 *     sinks:
 *       out:
 *         type: console
 *         input: per_service
 *         format: table      # table (default) | json
 *         truncate: 20       # table cells longer than this are cut, "..." (0: never)
 *         max_rows: 20       # table rows shown per batch (0: all)
 *         output: stdout     # stdout | stderr
 *
 * `table` imitates Spark's console sink, so its output looks familiar:
 *
 *     -------------------------------------------
 *     Batch: 0
 *     -------------------------------------------
 *     +-------+-----+
 *     |service|count|
 *     +-------+-----+
 *     |    api|   12|
 *     +-------+-----+
 *     only showing top 20 rows
 *
 * Columns are the union of the shown rows' field names in first-seen order;
 * a row without a field shows "null". As in Spark's show(), cells are
 * right-aligned when truncating and left-aligned with truncate: 0, a cell
 * longer than `truncate` characters keeps truncate - 3 of them and "...",
 * control characters are escaped (\n, \t) so a row stays on one line, and
 * the table is followed by a blank line. Widths count UTF-8 characters, not
 * bytes. `json` writes one JSON object per line through the core's codec,
 * for `| jq`; max_rows applies to tables only.
 *
 * Each batch is rendered into one buffer and written with a single fwrite()
 * and fflush(): several console sinks on different threads never interleave
 * inside a batch, and a pipe (`| head`, `| jq`) sees every batch at once. A
 * failed write (EPIPE when the reader went away) is an error with a message,
 * not a crash; ignoring SIGPIPE is the runtime's job.
 */
#include "sluice/plugin.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { FORMAT_TABLE, FORMAT_JSON };
enum { OUTPUT_STDOUT, OUTPUT_STDERR };

typedef struct console_config {
    int format;
    int64_t truncate;
    int output;
    int64_t max_rows;
} console_config;

static const char *const format_choices[] = {"table", "json", NULL};
static const char *const output_choices[] = {"stdout", "stderr", NULL};

static const sluice_option console_options[] = {
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "table",
     .offset = offsetof(console_config, format), .choices = format_choices,
     .help = "table (a table per batch, like Spark's console sink) or json (one object per line)"},
    {.name = "truncate", .type = SLUICE_OPT_INT, .default_value = "20",
     .offset = offsetof(console_config, truncate),
     .help = "table cells longer than this many characters are cut with \"...\"; 0 = never"},
    {.name = "output", .type = SLUICE_OPT_ENUM, .default_value = "stdout",
     .offset = offsetof(console_config, output), .choices = output_choices,
     .help = "stdout or stderr"},
    {.name = "max_rows", .type = SLUICE_OPT_INT, .default_value = "20",
     .offset = offsetof(console_config, max_rows),
     .help = "table rows shown per batch, then \"only showing top N rows\"; 0 = all"},
    {.name = NULL},
};

/* One table cell: text at cells.data[off .. off+len), `width` characters. */
typedef struct cell {
    size_t off, len, width;
} cell;

typedef struct console {
    const sluice_host *host;
    sluice_ctx *ctx;
    int format;
    size_t truncate, max_rows;
    FILE *out;
    const char *out_name;
    sluice_codec *codec; /* json only */
    uint64_t batch_no;

    sluice_buf text;     /* what one write() prints */
    /* Table scratch, reused from batch to batch. */
    sluice_buf cells;
    cell *cellv;
    size_t cellcap;
    sluice_name *cols;
    size_t *widths;
    size_t ncols, colcap;
} console;

/* ---- rendering one cell ------------------------------------------------ */

static size_t utf8_width(const char *p, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)p[i] & 0xc0) != 0x80)
            w++;
    return w;
}

/* Byte offset where character number `chars` starts. */
static size_t utf8_offset(const char *p, size_t len, size_t chars)
{
    size_t seen = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)p[i] & 0xc0) != 0x80) {
            if (seen == chars)
                return i;
            seen++;
        }
    }
    return len;
}

/* Append text with control characters escaped, so a cell stays on its line. */
static int append_escaped(const sluice_host *h, sluice_buf *b, const char *p, size_t len)
{
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != 0x7f)
            continue;
        if (h->buf_append(b, p + run, i - run))
            return -1;
        char esc[8];
        switch (c) {
        case '\n': memcpy(esc, "\\n", 3); break;
        case '\r': memcpy(esc, "\\r", 3); break;
        case '\t': memcpy(esc, "\\t", 3); break;
        default: snprintf(esc, sizeof esc, "\\x%02x", c); break;
        }
        if (h->buf_append(b, esc, strlen(esc)))
            return -1;
        run = i + 1;
    }
    return h->buf_append(b, p + run, len - run);
}

/* The shortest text that reads back as the same double, with ".0" when it
 * would otherwise look like an integer (Spark shows 1.0, not 1). */
static void format_double(double d, char *out, size_t n)
{
    if (isnan(d)) {
        snprintf(out, n, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(out, n, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            break;
    }
    if (!strpbrk(out, ".e"))
        strncat(out, ".0", n - strlen(out) - 1);
}

static int append_value(const sluice_host *h, sluice_buf *b, const sluice_value *v)
{
    char num[40];
    if (!v)
        return h->buf_append(b, "null", 4);
    switch (v->type) {
    case SLUICE_NULL:
        return h->buf_append(b, "null", 4);
    case SLUICE_BOOL:
        return v->u.b ? h->buf_append(b, "true", 4) : h->buf_append(b, "false", 5);
    case SLUICE_INT:
        snprintf(num, sizeof num, "%" PRId64, v->u.i);
        return h->buf_append(b, num, strlen(num));
    case SLUICE_DOUBLE:
        format_double(v->u.d, num, sizeof num);
        return h->buf_append(b, num, strlen(num));
    case SLUICE_STRING:
    case SLUICE_JSON:
        return append_escaped(h, b, v->u.s.ptr, v->u.s.len);
    }
    return h->buf_append(b, "?", 1);
}

/* Finish the cell that starts at c->off: cut it to `truncate` characters
 * the way Spark does, and measure it. */
static int finish_cell(console *c, cell *cl)
{
    sluice_buf *b = &c->cells;
    const char *p = b->data + cl->off;
    size_t len = b->len - cl->off;
    size_t width = utf8_width(p, len);
    if (c->truncate && width > c->truncate) {
        size_t keep = c->truncate < 4 ? c->truncate : c->truncate - 3;
        b->len = cl->off + utf8_offset(p, len, keep);
        if (c->truncate >= 4 && c->host->buf_append(b, "...", 3))
            return -1;
        width = c->truncate;
    }
    cl->len = b->len - cl->off;
    cl->width = width;
    return 0;
}

/* ---- rendering a table ------------------------------------------------- */

static int grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < want)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = n;
    return 0;
}

static int collect_columns(console *c, const sluice_batch *in, size_t rows)
{
    c->ncols = 0;
    for (size_t r = 0; r < rows; r++) {
        const sluice_record *rec = &in->records[r];
        for (uint32_t f = 0; f < rec->nfields; f++) {
            sluice_name name = rec->fields[f].name;
            size_t k = 0;
            while (k < c->ncols && c->cols[k] != name)
                k++;
            if (k < c->ncols)
                continue;
            size_t cap = c->colcap;
            if (grow((void **)&c->cols, &cap, c->ncols + 1, sizeof *c->cols) ||
                grow((void **)&c->widths, &c->colcap, c->ncols + 1, sizeof *c->widths))
                return -1;
            c->cols[c->ncols++] = name;
        }
    }
    return 0;
}

/* Cells: row 0 is the header, rows 1..rows the records. */
static int render_cells(console *c, const sluice_batch *in, size_t rows)
{
    const sluice_host *h = c->host;
    size_t ncells = (rows + 1) * c->ncols;
    if (grow((void **)&c->cellv, &c->cellcap, ncells ? ncells : 1, sizeof *c->cellv))
        return -1;
    c->cells.len = 0;
    for (size_t k = 0; k < c->ncols; k++) {
        cell *cl = &c->cellv[k];
        const char *name = h->name_of(c->cols[k]);
        cl->off = c->cells.len;
        if (append_escaped(h, &c->cells, name, strlen(name)) || finish_cell(c, cl))
            return -1;
        c->widths[k] = cl->width < 3 ? 3 : cl->width; /* Spark's minimum */
    }
    for (size_t r = 0; r < rows; r++) {
        const sluice_record *rec = &in->records[r];
        for (size_t k = 0; k < c->ncols; k++) {
            cell *cl = &c->cellv[(r + 1) * c->ncols + k];
            cl->off = c->cells.len;
            if (append_value(h, &c->cells, sluice_get(rec, c->cols[k])) || finish_cell(c, cl))
                return -1;
            if (cl->width > c->widths[k])
                c->widths[k] = cl->width;
        }
    }
    return 0;
}

static int append_repeat(const sluice_host *h, sluice_buf *b, char ch, size_t n)
{
    char chunk[64];
    memset(chunk, ch, sizeof chunk);
    while (n > 0) {
        size_t k = n < sizeof chunk ? n : sizeof chunk;
        if (h->buf_append(b, chunk, k))
            return -1;
        n -= k;
    }
    return 0;
}

static int append_separator(console *c)
{
    const sluice_host *h = c->host;
    if (h->buf_append(&c->text, "+", 1))
        return -1;
    for (size_t k = 0; k < c->ncols; k++)
        if (append_repeat(h, &c->text, '-', c->widths[k]) || h->buf_append(&c->text, "+", 1))
            return -1;
    if (!c->ncols && h->buf_append(&c->text, "+", 1))
        return -1;
    return h->buf_append(&c->text, "\n", 1);
}

static int append_row(console *c, size_t row)
{
    const sluice_host *h = c->host;
    bool right = c->truncate > 0; /* Spark pads left when truncating */
    if (h->buf_append(&c->text, "|", 1))
        return -1;
    for (size_t k = 0; k < c->ncols; k++) {
        const cell *cl = &c->cellv[row * c->ncols + k];
        size_t pad = c->widths[k] - cl->width;
        if ((right && append_repeat(h, &c->text, ' ', pad)) ||
            h->buf_append(&c->text, c->cells.data + cl->off, cl->len) ||
            (!right && append_repeat(h, &c->text, ' ', pad)) ||
            h->buf_append(&c->text, "|", 1))
            return -1;
    }
    if (!c->ncols && h->buf_append(&c->text, "|", 1))
        return -1;
    return h->buf_append(&c->text, "\n", 1);
}

static int render_table(console *c, const sluice_batch *in)
{
    const sluice_host *h = c->host;
    size_t rows = in->count;
    if (c->max_rows && rows > c->max_rows)
        rows = c->max_rows;
    char head[128];
    int n = snprintf(head, sizeof head,
                     "-------------------------------------------\n"
                     "Batch: %" PRIu64 "\n"
                     "-------------------------------------------\n",
                     c->batch_no);
    if (h->buf_append(&c->text, head, (size_t)n) || collect_columns(c, in, rows) ||
        render_cells(c, in, rows))
        return -1;
    if (append_separator(c) || append_row(c, 0) || append_separator(c))
        return -1;
    for (size_t r = 0; r < rows; r++)
        if (append_row(c, r + 1))
            return -1;
    if (append_separator(c))
        return -1;
    if (rows < in->count) {
        n = snprintf(head, sizeof head, "only showing top %zu %s\n", rows,
                     rows == 1 ? "row" : "rows");
        if (h->buf_append(&c->text, head, (size_t)n))
            return -1;
    }
    return h->buf_append(&c->text, "\n", 1);
}

static int render_json(console *c, const sluice_batch *in, char *err, size_t errlen)
{
    const sluice_host *h = c->host;
    for (uint32_t r = 0; r < in->count; r++) {
        if (h->encode(c->codec, &in->records[r], &c->text) != SLUICE_OK) {
            snprintf(err, errlen, "console: could not encode a record as JSON");
            return SLUICE_ERROR;
        }
        if (h->buf_append(&c->text, "\n", 1)) {
            snprintf(err, errlen, "console: out of memory");
            return SLUICE_ERROR;
        }
    }
    return SLUICE_OK;
}

/* ---- output --------------------------------------------------------------- */

static int write_out(console *c, const char *p, size_t len, char *err, size_t errlen)
{
    errno = 0;
    size_t wrote = len ? fwrite(p, 1, len, c->out) : 0;
    if (wrote == len && fflush(c->out) == 0)
        return SLUICE_OK;
    int e = errno ? errno : EIO;
    clearerr(c->out);
    if (e == EPIPE)
        snprintf(err, errlen, "console: %s was closed by its reader (broken pipe)", c->out_name);
    else
        snprintf(err, errlen, "console: cannot write to %s: %s", c->out_name, strerror(e));
    return SLUICE_ERROR;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int console_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                          void **self, char *err, size_t errlen)
{
    const console_config *cfg = config;
    bool ok = true;
    if (cfg->truncate < 0) {
        host->config_error(ctx, "truncate", "truncate must be >= 0 (0 = never), got %lld",
                           (long long)cfg->truncate);
        ok = false;
    }
    if (cfg->max_rows < 0) {
        host->config_error(ctx, "max_rows", "max_rows must be >= 0 (0 = all), got %lld",
                           (long long)cfg->max_rows);
        ok = false;
    }
    if (!ok) {
        snprintf(err, errlen, "console: invalid configuration");
        return SLUICE_ERROR;
    }
    console *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "console: out of memory");
        return SLUICE_ERROR;
    }
    c->host = host;
    c->ctx = ctx;
    c->format = cfg->format;
    c->truncate = (size_t)cfg->truncate;
    c->max_rows = (size_t)cfg->max_rows;
    c->out = cfg->output == OUTPUT_STDERR ? stderr : stdout;
    c->out_name = cfg->output == OUTPUT_STDERR ? "stderr" : "stdout";
    *self = c;
    return SLUICE_OK;
}

static int console_start(void *self, char *err, size_t errlen)
{
    console *c = self;
    if (c->format == FORMAT_JSON) {
        c->codec = c->host->codec_new(c->ctx, "json", err, errlen);
        if (!c->codec)
            return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static void console_destroy(void *self)
{
    console *c = self;
    if (!c)
        return;
    if (c->codec)
        c->host->codec_free(c->codec);
    c->host->buf_free(&c->text);
    c->host->buf_free(&c->cells);
    free(c->cellv);
    free(c->cols);
    free(c->widths);
    free(c);
}

static int console_write(void *self, const sluice_batch *in, char *err, size_t errlen)
{
    console *c = self;
    c->text.len = 0;
    if (c->format == FORMAT_JSON) {
        if (render_json(c, in, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    } else if (render_table(c, in)) {
        snprintf(err, errlen, "console: out of memory");
        return SLUICE_ERROR;
    }
    c->batch_no++;
    return write_out(c, c->text.data, c->text.len, err, errlen);
}

static int console_flush(void *self, char *err, size_t errlen)
{
    console *c = self;
    return write_out(c, NULL, 0, err, errlen);
}

const sluice_plugin_def sl_plugin_console_sink = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "console",
    .kind = SLUICE_SINK,
    .version = "1.0",
    .description = "print records as a table per batch (like Spark's console sink) or JSON lines",
    .config_size = sizeof(console_config),
    .options = console_options,
    .create = console_create,
    .start = console_start,
    .destroy = console_destroy,
    .write = console_write,
    .flush = console_flush,
};
