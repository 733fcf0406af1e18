/*
 * file_source.c — the `file` source: records from a file or a glob of files,
 * read once to the end (`mode: read`) or followed like `tail -F`
 * (`mode: follow`).
 *
 * Reading. Each file is read with read() into one large buffer (read_buffer,
 * 1 MiB by default) and split into lines with memchr; a line lying whole in
 * the buffer is handed to the codec where it lies, so nothing is copied on
 * the way (the codec copies field values into the batch arena itself). Only
 * a line that spans two reads is gathered in the file's `carry` buffer,
 * which never grows beyond max_line: a longer line is rejected
 * ("line_too_long", with its first KiB as raw) as soon as it passes the
 * limit, and the rest of it is skipped up to its newline. A trailing '\r'
 * is stripped and empty lines are skipped.
 *
 * Files. Every file has its own codec (a CSV file's first line is its
 * header) and is one partition: records carry the file's index in
 * rec->partition. Each file remembers its identity (dev, inode) and
 * `offset`, the byte just past the last whole line consumed. Every poll ends
 * with its partial batch emitted, so between polls `offset` is exactly where
 * a restart must resume: snapshot() saves {path, dev, ino, offset} per file
 * and restore() makes start() seek there.
 *
 * Read mode reads the files in glob order, a final line without a newline
 * being a record, then emits the last batch and returns DONE; progress is
 * bytes read over the total size of all files.
 *
 * Follow mode reads every file to its current end, emits what it has, and
 * when nothing is left sleeps ~100 ms before polling again. Every idle poll
 * (and at least once a second while busy) it re-stats: a path naming another
 * inode (rotation by rename) or vanished has its old file read to the end
 * and closed, then the new file is read from offset 0; a file smaller than
 * what was read (truncation, copytruncate) is read again from 0; a glob
 * picks up new matching files, except a rotated file that reappears under a
 * matching name (its inode is one already read), which would otherwise be
 * read twice. A final line without a newline is kept until its newline
 * arrives, since the writer may be mid-line.
 *
 * A poll does at most MAX_BATCHES_PER_POLL batches or ~100 ms of work, so
 * the runtime can react to a shutdown promptly.
 */
#include "sluice/plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCHES_PER_POLL 8
#define POLL_BUDGET_NS (100 * 1000000LL)
#define IDLE_SLEEP_MS 100
#define BUSY_RESCAN_NS (1000 * 1000000LL)
#define RAW_PREFIX_MAX 1024      /* bytes of an over-long line kept in its error record */
#define CARRY_KEEP_MAX (64 * 1024) /* a larger carry buffer is freed after its line */

enum { FORMAT_JSON, FORMAT_LINES, FORMAT_CSV };
enum { MODE_READ, MODE_FOLLOW };

static const char *const format_choices[] = {"json", "lines", "csv", NULL};
static const char *const mode_choices[] = {"read", "follow", NULL};

typedef struct file_source_config {
    char *path;
    int format;
    int mode;
    int64_t read_buffer;
    int64_t max_line;
} file_source_config;

static const sluice_option file_source_options[] = {
    {.name = "path", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(file_source_config, path),
     .help = "file to read, or a glob(3) pattern (files read in sorted order)"},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "json",
     .offset = offsetof(file_source_config, format), .choices = format_choices,
     .help = "json (one object per line), lines (field `message`) or csv (header row first)"},
    {.name = "mode", .type = SLUICE_OPT_ENUM, .default_value = "read",
     .offset = offsetof(file_source_config, mode), .choices = mode_choices,
     .help = "read: to the end, then finish; follow: keep reading appended lines, like tail -F"},
    {.name = "read_buffer", .type = SLUICE_OPT_SIZE, .default_value = "1MiB",
     .offset = offsetof(file_source_config, read_buffer),
     .help = "bytes read from the file at once"},
    {.name = "max_line", .type = SLUICE_OPT_SIZE, .default_value = "1MiB",
     .offset = offsetof(file_source_config, max_line),
     .help = "longest line accepted; longer ones are rejected as line_too_long"},
    {.name = NULL},
};

/* A saved read position, from restore(), used when the file is opened. */
typedef struct saved_position {
    char *path;
    uint64_t dev, ino, offset;
} saved_position;

typedef struct tracked_file {
    char *path;
    uint32_t partition;
    int fd;                 /* -1 when not open */
    bool known;             /* dev/ino name the file last opened at path */
    dev_t dev;
    ino_t ino;
    bool has_retired;       /* dev/ino of the file rotated away from path */
    dev_t retired_dev;
    ino_t retired_ino;
    bool ignored;           /* a glob match that is a rotated file already read */
    bool detached;          /* path names another file now: read this one to its end */
    bool finished;          /* read mode: read to its end */
    bool open_warned;       /* follow mode: logged that it cannot be opened */
    uint64_t read_pos;      /* where the next read() starts */
    uint64_t offset;        /* just past the last whole line consumed */
    sluice_codec *codec;
    char *carry;            /* the start of a line spanning reads */
    size_t carry_len, carry_cap;
    uint64_t line_total;    /* bytes of that line so far, skipped ones included */
    bool skipping;          /* that line is over max_line: rejected, drop to '\n' */
} tracked_file;

typedef struct file_source {
    const sluice_host *host;
    sluice_ctx *ctx;
    const file_source_config *cfg;
    bool follow, is_glob;

    tracked_file **files;
    size_t nfiles, capfiles;
    uint32_t next_partition;
    size_t current;         /* read mode: the file being read; follow: round robin */

    char *buf;              /* read buffer; buf[pos..end) belongs to buf_owner */
    size_t bufsize, pos, end;
    tracked_file *buf_owner;
    int64_t read_ns;        /* CLOCK_MONOTONIC of the last read, for ingest_ns */

    sluice_batch *batch;    /* being filled */
    unsigned emitted;       /* batches emitted in this poll */
    int64_t poll_start_ns;
    bool budget_spent;
    int64_t last_scan_ns;

    uint64_t bytes_done, bytes_total;

    saved_position *saved;
    size_t nsaved;
} file_source;

static const char *const format_names[] = {"json", "lines", "csv"};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static bool is_glob_pattern(const char *path)
{
    return strpbrk(path, "*?[") != NULL;
}

/* ---- Tracked files ----------------------------------------------------- */

static tracked_file *file_add(file_source *s, const char *path, char *err, size_t errlen)
{
    if (s->nfiles == s->capfiles) {
        size_t cap = s->capfiles ? s->capfiles * 2 : 8;
        tracked_file **files = realloc(s->files, cap * sizeof *files);
        if (!files)
            goto oom;
        s->files = files;
        s->capfiles = cap;
    }
    tracked_file *f = calloc(1, sizeof *f);
    if (!f)
        goto oom;
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        goto oom;
    }
    f->fd = -1;
    f->partition = s->next_partition++;
    s->files[s->nfiles++] = f;
    return f;
oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

static void reset_line_state(tracked_file *f)
{
    f->carry_len = 0;
    f->line_total = 0;
    f->skipping = false;
    if (f->carry_cap > CARRY_KEEP_MAX) {
        free(f->carry);
        f->carry = NULL;
        f->carry_cap = 0;
    }
}

static void file_close(file_source *s, tracked_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->codec)
        s->host->codec_free(f->codec);
    f->codec = NULL;
    reset_line_state(f);
    if (s->buf_owner == f) {
        s->buf_owner = NULL;
        s->pos = s->end = 0;
    }
}

static void file_free(file_source *s, tracked_file *f)
{
    file_close(s, f);
    free(f->carry);
    free(f->path);
    free(f);
}

static bool same_identity(const struct stat *st, dev_t dev, ino_t ino)
{
    return st->st_dev == dev && st->st_ino == ino;
}

static const saved_position *saved_position_of(const file_source *s, const char *path)
{
    for (size_t i = 0; i < s->nsaved; i++)
        if (strcmp(s->saved[i].path, path) == 0)
            return &s->saved[i];
    return NULL;
}

/* After seeking into a CSV file, its codec still needs the header row. */
static int feed_csv_header(file_source *s, tracked_file *f, char *err, size_t errlen)
{
    size_t cap = 64 * 1024, len = 0;
    char *line = malloc(cap);
    if (!line) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    for (;;) {
        ssize_t n = pread(f->fd, line + len, cap - len, (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "cannot read '%s': %s", f->path, strerror(errno));
            free(line);
            return SLUICE_ERROR;
        }
        char *nl = memchr(line + len, '\n', (size_t)n);
        len += (size_t)n;
        if (nl || n == 0) {
            if (nl)
                len = (size_t)(nl - line);
            break;
        }
        if (len == cap) {
            if (cap >= (size_t)s->cfg->max_line)
                break;
            char *bigger = realloc(line, cap * 2);
            if (!bigger) {
                free(line);
                snprintf(err, errlen, "out of memory");
                return SLUICE_ERROR;
            }
            line = bigger;
            cap *= 2;
        }
    }
    if (len && line[len - 1] == '\r')
        len--;
    /* The header appends no record; a decode error means a broken header,
     * which the codec has already reported. */
    int rc = s->host->decode(f->codec, s->batch, line, len);
    free(line);
    if (rc == SLUICE_ERROR) {
        snprintf(err, errlen, "bad CSV header in '%s'", f->path);
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int ensure_batch(file_source *s, char *err, size_t errlen)
{
    if (s->batch)
        return SLUICE_OK;
    s->batch = s->host->batch_new(s->ctx);
    if (!s->batch) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* Positions a freshly opened file where a restored checkpoint left it. */
static int seek_to_saved(file_source *s, tracked_file *f, const struct stat *st,
                         char *err, size_t errlen)
{
    const saved_position *sp = saved_position_of(s, f->path);
    if (!sp || sp->offset == 0)
        return SLUICE_OK;
    if (sp->dev != (uint64_t)st->st_dev || sp->ino != (uint64_t)st->st_ino) {
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "'%s' was replaced since the checkpoint; reading it from the start", f->path);
        return SLUICE_OK;
    }
    if (S_ISREG(st->st_mode) && sp->offset > (uint64_t)st->st_size) {
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "'%s' shrank since the checkpoint; reading it from the start", f->path);
        return SLUICE_OK;
    }
    if (lseek(f->fd, (off_t)sp->offset, SEEK_SET) < 0) {
        snprintf(err, errlen, "cannot seek in '%s': %s", f->path, strerror(errno));
        return SLUICE_ERROR;
    }
    f->read_pos = f->offset = sp->offset;
    s->bytes_done += sp->offset;
    if (ensure_batch(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    return s->cfg->format == FORMAT_CSV ? feed_csv_header(s, f, err, errlen) : SLUICE_OK;
}

/* Opens f->path from its start (or its restored position) with a fresh
 * codec. Returns SLUICE_OK, SLUICE_RETRY when the path cannot be opened
 * (errno kept, message in err), or SLUICE_ERROR. */
static int file_open(file_source *s, tracked_file *f, char *err, size_t errlen)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open '%s': %s", f->path, strerror(e));
        errno = e;
        return SLUICE_RETRY;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        snprintf(err, errlen, "cannot read '%s': %s", f->path, strerror(e));
        close(fd);
        errno = e;
        return SLUICE_RETRY;
    }
    sluice_codec *codec = s->host->codec_new(s->ctx, format_names[s->cfg->format], err, errlen);
    if (!codec) {
        close(fd);
        return SLUICE_ERROR;
    }
    f->fd = fd;
    f->codec = codec;
    f->known = true;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->read_pos = f->offset = 0;
    f->detached = false;
    f->open_warned = false;
    reset_line_state(f);
    return seek_to_saved(s, f, &st, err, errlen);
}

/* ---- Lines into records ------------------------------------------------ */

static void note_budget(file_source *s)
{
    if (s->emitted >= MAX_BATCHES_PER_POLL || now_ns() - s->poll_start_ns > POLL_BUDGET_NS ||
        s->host->stopping(s->ctx))
        s->budget_spent = true;
}

static int emit_batch(file_source *s, char *err, size_t errlen)
{
    sluice_batch *b = s->batch;
    s->batch = NULL;
    if (!b)
        return SLUICE_OK;
    if (b->count == 0) {
        s->host->batch_free(b);
        return SLUICE_OK;
    }
    s->emitted++;
    if (s->host->emit(s->ctx, b) == SLUICE_ERROR) {
        snprintf(err, errlen, "cannot emit a batch");
        return SLUICE_ERROR;
    }
    note_budget(s);
    return SLUICE_OK;
}

/* One whole line (without its '\n') of f, at f->offset. */
static int handle_line(file_source *s, tracked_file *f, const char *p, size_t len,
                       char *err, size_t errlen)
{
    if (len && p[len - 1] == '\r')
        len--;
    if (len == 0)
        return SLUICE_OK;
    if (ensure_batch(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    sluice_batch *b = s->batch;
    uint32_t before = b->count;
    int rc = s->host->decode(f->codec, b, p, len);
    if (rc == SLUICE_ERROR) {
        snprintf(err, errlen, "bad input in '%s' at byte %" PRIu64 " (on_error: fail)",
                 f->path, f->offset);
        return SLUICE_ERROR;
    }
    if (rc == SLUICE_OK && b->count > before) {
        sluice_record *r = &b->records[b->count - 1];
        r->partition = f->partition;
        r->ingest_ns = s->read_ns;
    }
    if (b->count >= b->capacity)
        return emit_batch(s, err, errlen);
    return SLUICE_OK;
}

static int reject_long_line(file_source *s, tracked_file *f, const char *p, size_t len,
                            char *err, size_t errlen)
{
    char detail[512];
    snprintf(detail, sizeof detail,
             "line in '%s' at byte %" PRIu64 " is longer than max_line (%" PRId64 " bytes)",
             f->path, f->offset, s->cfg->max_line);
    sluice_str raw = {p, len < RAW_PREFIX_MAX ? len : RAW_PREFIX_MAX};
    if (s->host->reject(s->ctx, NULL, raw, "line_too_long", detail) == SLUICE_ERROR) {
        snprintf(err, errlen, "%s (on_error: fail)", detail);
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int carry_reserve(tracked_file *f, size_t want, char *err, size_t errlen)
{
    if (want <= f->carry_cap)
        return SLUICE_OK;
    size_t cap = f->carry_cap ? f->carry_cap : 4096;
    while (cap < want)
        cap *= 2;
    char *p = realloc(f->carry, cap);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    f->carry = p;
    f->carry_cap = cap;
    return SLUICE_OK;
}

/* Adds p[0..len) to the line that spans reads; rejects the line the moment
 * it passes max_line, so carry never holds more than max_line bytes. */
static int carry_add(file_source *s, tracked_file *f, const char *p, size_t len,
                     char *err, size_t errlen)
{
    f->line_total += len;
    if (f->skipping)
        return SLUICE_OK;
    if (f->line_total > (uint64_t)s->cfg->max_line) {
        size_t raw_len = (size_t)(f->line_total < RAW_PREFIX_MAX ? f->line_total : RAW_PREFIX_MAX);
        if (f->carry_len < raw_len) {
            if (carry_reserve(f, raw_len, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            memcpy(f->carry + f->carry_len, p, raw_len - f->carry_len);
        }
        f->skipping = true;
        f->carry_len = 0;
        return reject_long_line(s, f, f->carry, raw_len, err, errlen);
    }
    if (carry_reserve(f, f->carry_len + len, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    memcpy(f->carry + f->carry_len, p, len);
    f->carry_len += len;
    return SLUICE_OK;
}

/* The spanning line ended (at a '\n', or at the end of the file). */
static int end_carried_line(file_source *s, tracked_file *f, bool newline, char *err,
                            size_t errlen)
{
    int rc = SLUICE_OK;
    if (!f->skipping && f->line_total > 0)
        rc = handle_line(s, f, f->carry, f->carry_len, err, errlen);
    f->offset += f->line_total + (newline ? 1 : 0);
    reset_line_state(f);
    return rc;
}

/* Hands the lines in buf[pos..end) to the codec until the buffer is used
 * up or the poll's budget is spent. */
static int consume_buffer(file_source *s, char *err, size_t errlen)
{
    tracked_file *f = s->buf_owner;
    uint64_t max_line = (uint64_t)s->cfg->max_line;
    while (s->pos < s->end && !s->budget_spent) {
        const char *p = s->buf + s->pos;
        size_t avail = s->end - s->pos;
        const char *nl = memchr(p, '\n', avail);
        size_t len = nl ? (size_t)(nl - p) : avail;
        if (f->line_total > 0 || !nl) {
            /* The line began in an earlier read or goes on in a later one. */
            s->pos += len + (nl ? 1 : 0);
            if (carry_add(s, f, p, len, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            if (nl && end_carried_line(s, f, true, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            continue;
        }
        s->pos += len + 1;
        int rc = len > max_line ? reject_long_line(s, f, p, len, err, errlen)
                                : handle_line(s, f, p, len, err, errlen);
        f->offset += len + 1;
        if (rc != SLUICE_OK)
            return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* One read() of f into the buffer: bytes read, 0 at the end, -1 on error. */
static ssize_t read_chunk(file_source *s, tracked_file *f, char *err, size_t errlen)
{
    ssize_t n;
    do
        n = read(f->fd, s->buf, s->bufsize);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        snprintf(err, errlen, "cannot read '%s': %s", f->path, strerror(errno));
        return -1;
    }
    s->buf_owner = f;
    s->pos = 0;
    s->end = (size_t)n;
    f->read_pos += (uint64_t)n;
    s->bytes_done += (uint64_t)n;
    s->read_ns = now_ns();
    if (s->read_ns - s->poll_start_ns > POLL_BUDGET_NS)
        s->budget_spent = true;
    return n;
}

/* ---- Read mode ----------------------------------------------------------- */

static void report_progress(file_source *s)
{
    uint64_t done = s->bytes_done < s->bytes_total ? s->bytes_done : s->bytes_total;
    s->host->progress(s->ctx, done, s->bytes_total);
}

static int poll_read(file_source *s, char *err, size_t errlen)
{
    while (!s->budget_spent) {
        if (s->pos < s->end) {
            if (consume_buffer(s, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            continue;
        }
        if (s->current >= s->nfiles) {
            if (emit_batch(s, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            s->bytes_done = s->bytes_total;
            report_progress(s);
            return SLUICE_DONE;
        }
        tracked_file *f = s->files[s->current];
        if (f->fd < 0 && file_open(s, f, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        ssize_t n = read_chunk(s, f, err, errlen);
        if (n < 0)
            return SLUICE_ERROR;
        if (n == 0) {
            /* A last line without a newline is a record too. */
            if (f->line_total > 0 && end_carried_line(s, f, false, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            file_close(s, f);
            f->finished = true;
            s->host->partition_done(s->ctx, f->partition);
            s->current++;
        }
    }
    if (emit_batch(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    report_progress(s);
    return SLUICE_OK;
}

/* ---- Follow mode --------------------------------------------------------- */

/* A file read to its end after its path moved on: take its last partial
 * line as a record (no more is coming) and close it. */
static int retire_file(file_source *s, tracked_file *f, char *err, size_t errlen)
{
    if (f->line_total > 0 && end_carried_line(s, f, false, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    file_close(s, f);
    f->has_retired = true;
    f->retired_dev = f->dev;
    f->retired_ino = f->ino;
    f->known = false;
    f->detached = false;
    return SLUICE_OK;
}

static int open_followed(file_source *s, tracked_file *f, char *err, size_t errlen)
{
    int rc = file_open(s, f, err, errlen);
    if (rc == SLUICE_RETRY) {
        /* Not there (yet) or unreadable: wait for it, say so once. */
        if (errno != ENOENT && !f->open_warned) {
            s->host->log(s->ctx, SLUICE_LOG_WARN, "%s; will retry", err);
            f->open_warned = true;
        }
        return SLUICE_RETRY;
    }
    return rc;
}

/* Reads from the next file (round robin) that has new bytes: 1 when it did
 * something, 0 when every file is at its end, -1 on error. */
static int follow_read_some(file_source *s, char *err, size_t errlen)
{
    for (size_t tried = 0; tried < s->nfiles; tried++) {
        tracked_file *f = s->files[s->current % s->nfiles];
        s->current = (s->current + 1) % s->nfiles;
        if (f->fd < 0)
            continue;
        ssize_t n = read_chunk(s, f, err, errlen);
        if (n < 0)
            return -1;
        if (n > 0)
            return 1;
        if (f->detached) {
            if (retire_file(s, f, err, errlen) != SLUICE_OK)
                return -1;
            int rc = open_followed(s, f, err, errlen);
            if (rc == SLUICE_ERROR)
                return -1;
            return 1;
        }
    }
    return 0;
}

static int restart_truncated(file_source *s, tracked_file *f, char *err, size_t errlen)
{
    s->host->log(s->ctx, SLUICE_LOG_INFO, "'%s' was truncated; reading it from the start",
                 f->path);
    if (f->line_total > 0 && end_carried_line(s, f, false, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    if (lseek(f->fd, 0, SEEK_SET) < 0) {
        snprintf(err, errlen, "cannot seek in '%s': %s", f->path, strerror(errno));
        return SLUICE_ERROR;
    }
    sluice_codec *codec = s->host->codec_new(s->ctx, format_names[s->cfg->format], err, errlen);
    if (!codec)
        return SLUICE_ERROR;
    s->host->codec_free(f->codec);
    f->codec = codec;
    f->read_pos = f->offset = 0;
    return SLUICE_OK;
}

/* Rotation, deletion, truncation of one followed path; sets *changed when
 * there is something new to read. */
static int check_followed(file_source *s, tracked_file *f, bool *changed, char *err,
                          size_t errlen)
{
    struct stat st;
    bool exists = stat(f->path, &st) == 0 && !S_ISDIR(st.st_mode);
    if (f->ignored) {
        /* A rotated copy of a file already read; a new file under its name
         * is read like any other. */
        if (!exists || same_identity(&st, f->dev, f->ino))
            return SLUICE_OK;
        f->ignored = false;
    }
    if (f->fd < 0) {
        if (!exists)
            return SLUICE_OK;
        int rc = open_followed(s, f, err, errlen);
        if (rc == SLUICE_OK)
            *changed = true;
        return rc == SLUICE_ERROR ? SLUICE_ERROR : SLUICE_OK;
    }
    if (!exists || !same_identity(&st, f->dev, f->ino)) {
        /* Renamed away or deleted: finish the old file, then the new. */
        if (!f->detached) {
            f->detached = true;
            *changed = true;
        }
        return SLUICE_OK;
    }
    struct stat now;
    if (fstat(f->fd, &now) == 0 && S_ISREG(now.st_mode) && (uint64_t)now.st_size < f->read_pos) {
        *changed = true;
        return restart_truncated(s, f, err, errlen);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > f->read_pos)
        *changed = true;
    return SLUICE_OK;
}

static tracked_file *file_by_path(file_source *s, const char *path)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (strcmp(s->files[i]->path, path) == 0)
            return s->files[i];
    return NULL;
}

/* A glob match whose inode is one we read under another name. */
static bool already_read(file_source *s, const struct stat *st)
{
    for (size_t i = 0; i < s->nfiles; i++) {
        tracked_file *f = s->files[i];
        if (f->known && same_identity(st, f->dev, f->ino))
            return true;
        if (f->has_retired && same_identity(st, f->retired_dev, f->retired_ino))
            return true;
    }
    return false;
}

/* Lists the paths the pattern names now. */
static int list_paths(file_source *s, glob_t *g, char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    int rc = glob(s->cfg->path, GLOB_MARK, NULL, g);
    if (rc == 0 || rc == GLOB_NOMATCH)
        return SLUICE_OK;
    snprintf(err, errlen, "cannot list '%s': %s", s->cfg->path,
             rc == GLOB_NOSPACE ? "out of memory" : "read error");
    globfree(g);
    return SLUICE_ERROR;
}

static int scan_new_files(file_source *s, bool *changed, char *err, size_t errlen)
{
    glob_t g;
    if (list_paths(s, &g, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    int rc = SLUICE_OK;
    for (size_t i = 0; i < g.gl_pathc && rc == SLUICE_OK; i++) {
        const char *path = g.gl_pathv[i];
        size_t len = strlen(path);
        if (len && path[len - 1] == '/')
            continue; /* a folder */
        if (file_by_path(s, path))
            continue;
        struct stat st;
        if (stat(path, &st) < 0)
            continue;
        tracked_file *f = file_add(s, path, err, errlen);
        if (!f) {
            rc = SLUICE_ERROR;
            break;
        }
        if (already_read(s, &st)) {
            f->ignored = true;
            f->known = true;
            f->dev = st.st_dev;
            f->ino = st.st_ino;
            continue;
        }
        rc = open_followed(s, f, err, errlen);
        if (rc == SLUICE_OK)
            *changed = true;
        rc = rc == SLUICE_ERROR ? SLUICE_ERROR : SLUICE_OK;
    }
    globfree(&g);
    return rc;
}

static int follow_housekeeping(file_source *s, bool *changed, char *err, size_t errlen)
{
    s->last_scan_ns = now_ns();
    for (size_t i = 0; i < s->nfiles; i++)
        if (check_followed(s, s->files[i], changed, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    if (s->is_glob)
        return scan_new_files(s, changed, err, errlen);
    return SLUICE_OK;
}

static void idle_sleep(file_source *s)
{
    for (int slept = 0; slept < IDLE_SLEEP_MS && !s->host->stopping(s->ctx); slept += 20) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int poll_follow(file_source *s, char *err, size_t errlen)
{
    bool did_work = false, checked = false, slept = false;
    while (!s->budget_spent) {
        if (s->pos < s->end) {
            if (consume_buffer(s, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            did_work = true;
            continue;
        }
        int got = follow_read_some(s, err, errlen);
        if (got < 0)
            return SLUICE_ERROR;
        if (got > 0) {
            did_work = true;
            continue;
        }
        /* Every file is at its end: let what we have go downstream. */
        if (emit_batch(s, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        bool busy_rescan = now_ns() - s->last_scan_ns > BUSY_RESCAN_NS;
        if (!checked && (!did_work || busy_rescan)) {
            bool changed = false;
            if (follow_housekeeping(s, &changed, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            checked = true;
            if (changed)
                continue;
        }
        if (did_work)
            break;
        if (slept || s->host->stopping(s->ctx))
            return SLUICE_RETRY;
        idle_sleep(s);
        slept = true;
    }
    if (emit_batch(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    return did_work ? SLUICE_OK : SLUICE_RETRY;
}

/* ---- Lifecycle ----------------------------------------------------------- */

static int source_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                         void **self, char *err, size_t errlen)
{
    const file_source_config *cfg = config;
    bool ok = true;
    if (!cfg->path || !*cfg->path) {
        host->config_error(ctx, "path", "path must not be empty");
        ok = false;
    }
    if (cfg->read_buffer < 4096 || cfg->read_buffer > ((int64_t)1 << 30)) {
        host->config_error(ctx, "read_buffer", "read_buffer must be between 4KiB and 1GiB");
        ok = false;
    }
    if (cfg->max_line < 1 || cfg->max_line > ((int64_t)1 << 30)) {
        host->config_error(ctx, "max_line", "max_line must be between 1 byte and 1GiB");
        ok = false;
    }
    if (!ok) {
        snprintf(err, errlen, "invalid file source options");
        return SLUICE_ERROR;
    }
    file_source *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    s->host = host;
    s->ctx = ctx;
    s->cfg = cfg;
    s->follow = cfg->mode == MODE_FOLLOW;
    s->is_glob = is_glob_pattern(cfg->path);
    s->bufsize = (size_t)cfg->read_buffer;
    *self = s;
    return SLUICE_OK;
}

/* Read mode: the files are fixed at start; each must be readable now. */
static int start_read(file_source *s, char *err, size_t errlen)
{
    if (!s->is_glob) {
        if (!file_add(s, s->cfg->path, err, errlen))
            return SLUICE_ERROR;
    } else {
        glob_t g;
        if (list_paths(s, &g, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            size_t len = strlen(g.gl_pathv[i]);
            if (len && g.gl_pathv[i][len - 1] == '/')
                continue;
            if (!file_add(s, g.gl_pathv[i], err, errlen)) {
                globfree(&g);
                return SLUICE_ERROR;
            }
        }
        globfree(&g);
        if (s->nfiles == 0) {
            snprintf(err, errlen, "no file matches '%s'", s->cfg->path);
            return SLUICE_ERROR;
        }
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        tracked_file *f = s->files[i];
        int fd = open(f->path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            snprintf(err, errlen, "cannot open '%s': %s", f->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return SLUICE_ERROR;
        }
        close(fd);
        if (S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "cannot read '%s': %s", f->path, strerror(EISDIR));
            return SLUICE_ERROR;
        }
        if (S_ISREG(st.st_mode))
            s->bytes_total += (uint64_t)st.st_size;
    }
    /* Every file is a partition whose records may be the oldest: the
     * watermark waits for each until it has been read to its end. */
    s->host->partitions(s->ctx, (uint32_t)s->nfiles);
    return SLUICE_OK;
}

static int source_start(void *self, char *err, size_t errlen)
{
    file_source *s = self;
    s->buf = malloc(s->bufsize);
    if (!s->buf) {
        snprintf(err, errlen, "out of memory for a %zu-byte read buffer", s->bufsize);
        return SLUICE_ERROR;
    }
    if (!s->follow)
        return start_read(s, err, errlen);
    /* Follow mode: whatever exists now, and wait for the rest. */
    if (!s->is_glob && !file_add(s, s->cfg->path, err, errlen))
        return SLUICE_ERROR;
    bool changed = false;
    return follow_housekeeping(s, &changed, err, errlen);
}

static int source_poll(void *self, char *err, size_t errlen)
{
    file_source *s = self;
    s->emitted = 0;
    s->budget_spent = false;
    s->poll_start_ns = now_ns();
    return s->follow ? poll_follow(s, err, errlen) : poll_read(s, err, errlen);
}

static void free_saved(file_source *s)
{
    for (size_t i = 0; i < s->nsaved; i++)
        free(s->saved[i].path);
    free(s->saved);
    s->saved = NULL;
    s->nsaved = 0;
}

static void source_destroy(void *self)
{
    file_source *s = self;
    if (!s)
        return;
    for (size_t i = 0; i < s->nfiles; i++)
        file_free(s, s->files[i]);
    free(s->files);
    if (s->batch)
        s->host->batch_free(s->batch);
    free(s->buf);
    free_saved(s);
    free(s);
}

/* ---- Checkpoints ----------------------------------------------------------
 *
 * Blob: "SLFS" u32 version(1) u32 count, then per file
 *       u64 dev, u64 ino, u64 offset, u32 path length, path bytes
 * (host byte order: a checkpoint is restored on the machine that took it,
 * since inode numbers mean nothing elsewhere). */

#define BLOB_MAGIC "SLFS"
#define BLOB_VERSION 1u

static void put_bytes(char **p, const void *v, size_t n)
{
    memcpy(*p, v, n);
    *p += n;
}

static bool get_bytes(const char **p, const char *end, void *v, size_t n)
{
    if ((size_t)(end - *p) < n)
        return false;
    memcpy(v, *p, n);
    *p += n;
    return true;
}

static int source_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                           size_t errlen)
{
    file_source *s = self;
    size_t size = 12;
    uint32_t count = 0;
    for (size_t i = 0; i < s->nfiles; i++) {
        if (s->files[i]->known && !s->files[i]->ignored) {
            size += 28 + strlen(s->files[i]->path);
            count++;
        }
    }
    char *out = malloc(size), *p = out;
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    uint32_t version = BLOB_VERSION;
    put_bytes(&p, BLOB_MAGIC, 4);
    put_bytes(&p, &version, 4);
    put_bytes(&p, &count, 4);
    for (size_t i = 0; i < s->nfiles; i++) {
        tracked_file *f = s->files[i];
        if (!f->known || f->ignored)
            continue;
        uint64_t dev = (uint64_t)f->dev, ino = (uint64_t)f->ino;
        uint32_t plen = (uint32_t)strlen(f->path);
        put_bytes(&p, &dev, 8);
        put_bytes(&p, &ino, 8);
        put_bytes(&p, &f->offset, 8);
        put_bytes(&p, &plen, 4);
        put_bytes(&p, f->path, plen);
    }
    *blob = out;
    *len = size;
    return SLUICE_OK;
}

static int source_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    file_source *s = self;
    const char *p = blob, *end = p + len;
    char magic[4];
    uint32_t version, count;
    free_saved(s);
    if (!get_bytes(&p, end, magic, 4) || memcmp(magic, BLOB_MAGIC, 4) != 0 ||
        !get_bytes(&p, end, &version, 4) || version != BLOB_VERSION ||
        !get_bytes(&p, end, &count, 4) || count > len / 28)
        goto bad;
    s->saved = calloc(count ? count : 1, sizeof *s->saved);
    if (!s->saved) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    for (uint32_t i = 0; i < count; i++) {
        saved_position *sp = &s->saved[i];
        uint32_t plen;
        if (!get_bytes(&p, end, &sp->dev, 8) || !get_bytes(&p, end, &sp->ino, 8) ||
            !get_bytes(&p, end, &sp->offset, 8) || !get_bytes(&p, end, &plen, 4) ||
            (size_t)(end - p) < plen)
            goto bad;
        sp->path = strndup(p, plen);
        if (!sp->path) {
            snprintf(err, errlen, "out of memory");
            return SLUICE_ERROR;
        }
        p += plen;
        s->nsaved++;
    }
    return SLUICE_OK;
bad:
    free_saved(s);
    snprintf(err, errlen, "damaged file source checkpoint (%zu bytes)", len);
    return SLUICE_ERROR;
}

const sluice_plugin_def sl_plugin_file_source = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "file",
    .kind = SLUICE_SOURCE,
    .version = "1.0",
    .description = "records from a file or glob, read to the end or followed like tail -F",
    .config_size = sizeof(file_source_config),
    .options = file_source_options,
    .create = source_create,
    .start = source_start,
    .destroy = source_destroy,
    .poll = source_poll,
    .snapshot = source_snapshot,
    .restore = source_restore,
};
