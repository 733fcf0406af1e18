/*
 * file_sink.c — the `file` sink: records written to one file as JSON lines,
 * plain lines (the `message` field) or CSV (a header row first).
 *
 * Each record is encoded by the host codec into one malloc()ed buffer and
 * followed by '\n'; the buffer goes out with write() when it passes
 * buffer_size and at the end of every write() call, so output appears as
 * soon as a batch has been handled (tail -f on the output shows it) while
 * a large batch still costs only a few system calls. flush() writes out and
 * fsync()s.
 *
 * The file is created with mode 0644 (narrowed by the umask) and truncated
 * at start unless `append: true`. With `mode` (octal, e.g. "0640") the
 * file gets exactly those permission bits at start, created or not, umask
 * or not: the user said so. A mode without the owner's write bit is
 * refused, since a restart could no longer open the file. A missing parent folder is an error at start (no folder is
 * created behind the user's back); a failing write (ENOSPC, EIO) stops the
 * stage with the path and strerror.
 *
 * Exactly-once output across crashes (epoch files renamed on commit) is the
 * checkpoint layer's: prepare/commit will be added here with it.
 */
#include "sluice/plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FORMAT_JSON, FORMAT_LINES, FORMAT_CSV };

static const char *const format_choices[] = {"json", "lines", "csv", NULL};

typedef struct file_sink_config {
    char *path;
    int format;
    bool append;
    int64_t buffer_size;
    char *mode;
} file_sink_config;

static const sluice_option file_sink_options[] = {
    {.name = "path", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(file_sink_config, path), .help = "file to write"},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "json",
     .offset = offsetof(file_sink_config, format), .choices = format_choices,
     .help = "json (one object per line), lines (the `message` field) or csv (header row first)"},
    {.name = "append", .type = SLUICE_OPT_BOOL, .default_value = "false",
     .offset = offsetof(file_sink_config, append),
     .help = "append to the file instead of truncating it at start"},
    {.name = "buffer_size", .type = SLUICE_OPT_SIZE, .default_value = "1MiB",
     .offset = offsetof(file_sink_config, buffer_size),
     .help = "bytes gathered before a write(); each batch is written out at its end"},
    {.name = "mode", .type = SLUICE_OPT_STRING, .offset = offsetof(file_sink_config, mode),
     .help = "permission bits of the file, in octal like \"0640\", set at start whatever the "
             "umask (default: created 0644 less the umask; an existing file keeps its own)"},
    {.name = NULL},
};

typedef struct file_sink {
    const sluice_host *host;
    sluice_ctx *ctx;
    const file_sink_config *cfg;
    int fd;
    sluice_codec *codec;
    sluice_buf out;
    size_t flush_at;
    int64_t restored_len; /* from a checkpoint: cut the file back to this; -1: none */
    int mode;             /* from `mode`; -1: none */
} file_sink;

/* "0640", "640": three or four octal digits, nothing above 0777 (no
 * setuid, setgid or sticky bit on a data file). -1 when not such. */
static int parse_mode(const char *text)
{
    size_t len = strlen(text);
    if (len < 3 || len > 4 || (len == 4 && text[0] != '0'))
        return -1;
    int mode = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '7')
            return -1;
        mode = mode * 8 + (text[i] - '0');
    }
    return mode;
}

static int sink_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                       void **self, char *err, size_t errlen)
{
    const file_sink_config *cfg = config;
    bool ok = true;
    if (!cfg->path || !*cfg->path) {
        host->config_error(ctx, "path", "path must not be empty");
        ok = false;
    }
    if (cfg->buffer_size < 1 || cfg->buffer_size > ((int64_t)1 << 30)) {
        host->config_error(ctx, "buffer_size", "buffer_size must be between 1 byte and 1GiB");
        ok = false;
    }
    int mode = -1;
    if (cfg->mode) {
        mode = parse_mode(cfg->mode);
        if (mode < 0) {
            host->config_error(ctx, "mode", "'%s' is not a file mode: give octal permission "
                               "bits from 0000 to 0777, like \"0640\"", cfg->mode);
            ok = false;
        } else if (!(mode & S_IWUSR)) {
            host->config_error(ctx, "mode", "'%s' leaves the owner without write permission: "
                               "a restart could not open the file again", cfg->mode);
            ok = false;
        }
    }
    if (!ok) {
        snprintf(err, errlen, "invalid file sink options");
        return SLUICE_ERROR;
    }
    file_sink *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    s->host = host;
    s->ctx = ctx;
    s->cfg = cfg;
    s->fd = -1;
    s->flush_at = (size_t)cfg->buffer_size;
    s->restored_len = -1;
    s->mode = mode;
    *self = s;
    return SLUICE_OK;
}

static int sink_start(void *self, char *err, size_t errlen)
{
    file_sink *s = self;
    static const char *const names[] = {"json", "lines", "csv"};
    s->codec = s->host->codec_new(s->ctx, names[s->cfg->format], err, errlen);
    if (!s->codec)
        return SLUICE_ERROR;
    bool resume = s->restored_len >= 0;
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC;
    if (resume || s->cfg->append)
        flags |= O_APPEND;
    else
        flags |= O_TRUNC;
    /* Created no wider than 0644 (or `mode`) whatever the umask; the
     * umask may narrow it, and a configured mode is set exactly below. */
    s->fd = open(s->cfg->path, flags, s->mode >= 0 ? (mode_t)s->mode : 0644);
    if (s->fd < 0) {
        snprintf(err, errlen, "cannot open '%s' for writing: %s", s->cfg->path, strerror(errno));
        return SLUICE_ERROR;
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat '%s': %s", s->cfg->path, strerror(errno));
        return SLUICE_ERROR;
    }
    /* Only a regular file has permission bits of its own to set: a FIFO
     * or /dev/null is left as it is. */
    if (s->mode >= 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) != (mode_t)s->mode &&
        fchmod(s->fd, (mode_t)s->mode) != 0) {
        snprintf(err, errlen, "cannot set mode %04o on '%s': %s", s->mode, s->cfg->path,
                 strerror(errno));
        return SLUICE_ERROR;
    }
    if (resume) {
        /* Exactly once: what was written after the checkpoint is written
         * again by this run, so cut it off first. */
        if (st.st_size < s->restored_len) {
            snprintf(err, errlen,
                     "'%s' is %lld bytes, shorter than the %lld the checkpoint committed: "
                     "output was lost; start with --from-scratch",
                     s->cfg->path, (long long)st.st_size, (long long)s->restored_len);
            return SLUICE_ERROR;
        }
        if (ftruncate(s->fd, s->restored_len) != 0) {
            snprintf(err, errlen, "cannot cut '%s' back to %lld bytes: %s", s->cfg->path,
                     (long long)s->restored_len, strerror(errno));
            return SLUICE_ERROR;
        }
        st.st_size = s->restored_len;
    }
    /* A CSV file that already has rows has its header. */
    if (st.st_size > 0)
        s->host->codec_header(s->codec, NULL, 0, NULL);
    return SLUICE_OK;
}

/* ---- Checkpoints: the committed length ------------------------------------ */

#define SINK_STATE_MAGIC 0x534c4653u /* "SLFS" */


static int sink_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                         size_t errlen)
{
    file_sink *s = self;
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat '%s': %s", s->cfg->path, strerror(errno));
        return SLUICE_ERROR;
    }
    uint32_t *b = malloc(16);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    b[0] = SINK_STATE_MAGIC;
    b[1] = 1; /* version */
    uint64_t size = (uint64_t)st.st_size + s->out.len;
    memcpy(&b[2], &size, sizeof size);
    *blob = b;
    *len = 16;
    return SLUICE_OK;
}

static int sink_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    file_sink *s = self;
    uint32_t head[2];
    uint64_t size;
    if (len != 16) {
        snprintf(err, errlen, "file sink state has %zu bytes, want 16", len);
        return SLUICE_ERROR;
    }
    memcpy(head, blob, sizeof head);
    memcpy(&size, (const char *)blob + 8, sizeof size);
    if (head[0] != SINK_STATE_MAGIC || head[1] != 1 || size > INT64_MAX) {
        snprintf(err, errlen, "file sink state is not in a format this version reads");
        return SLUICE_ERROR;
    }
    s->restored_len = (int64_t)size;
    return SLUICE_OK;
}

/* Writes the whole buffer out, across short writes and signals. */
static int write_out(file_sink *s, char *err, size_t errlen)
{
    size_t done = 0;
    while (done < s->out.len) {
        ssize_t n = write(s->fd, s->out.data + done, s->out.len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "cannot write to '%s': %s", s->cfg->path, strerror(errno));
            /* Keep what did not go out, for a later flush to retry. */
            memmove(s->out.data, s->out.data + done, s->out.len - done);
            s->out.len -= done;
            return SLUICE_ERROR;
        }
        done += (size_t)n;
    }
    s->out.len = 0;
    return SLUICE_OK;
}

static int sink_write(void *self, const sluice_batch *in, char *err, size_t errlen)
{
    file_sink *s = self;
    const sluice_host *h = s->host;
    for (uint32_t i = 0; i < in->count; i++) {
        size_t before = s->out.len;
        int rc = h->encode(s->codec, &in->records[i], &s->out);
        if (rc == SLUICE_ERROR) {
            snprintf(err, errlen, "cannot encode a record for '%s'", s->cfg->path);
            return SLUICE_ERROR;
        }
        if (rc != SLUICE_OK) {
            /* The codec refused this record (and reported it): drop any
             * partial text so the file stays well formed. */
            s->out.len = before;
            continue;
        }
        if (h->buf_append(&s->out, "\n", 1) != SLUICE_OK) {
            snprintf(err, errlen, "out of memory");
            return SLUICE_ERROR;
        }
        if (s->out.len >= s->flush_at && write_out(s, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    return write_out(s, err, errlen);
}

static int sink_flush(void *self, char *err, size_t errlen)
{
    file_sink *s = self;
    if (s->fd < 0)
        return SLUICE_OK;
    if (write_out(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    /* Pipes, terminals and /dev/null cannot be synced; that is fine. */
    if (fsync(s->fd) < 0 && errno != EINVAL && errno != EROFS && errno != ENOTSUP) {
        snprintf(err, errlen, "cannot sync '%s': %s", s->cfg->path, strerror(errno));
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* Before a checkpoint's snapshot: everything written so far is durable. */
static int sink_prepare(void *self, uint64_t epoch, char *err, size_t errlen)
{
    (void)epoch;
    return sink_flush(self, err, errlen);
}

static void sink_destroy(void *self)
{
    file_sink *s = self;
    if (!s)
        return;
    if (s->fd >= 0) {
        if (s->out.len) {
            char err[256];
            if (write_out(s, err, sizeof err) != SLUICE_OK)
                s->host->log(s->ctx, SLUICE_LOG_ERROR, "%s", err);
        }
        close(s->fd);
    }
    if (s->codec)
        s->host->codec_free(s->codec);
    s->host->buf_free(&s->out);
    free(s);
}

const sluice_plugin_def sl_plugin_file_sink = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "file",
    .kind = SLUICE_SINK,
    .version = "1.0",
    .description = "records written to one file as JSON lines, plain lines or CSV",
    .config_size = sizeof(file_sink_config),
    .options = file_sink_options,
    .create = sink_create,
    .start = sink_start,
    .destroy = sink_destroy,
    .write = sink_write,
    .flush = sink_flush,
    .snapshot = sink_snapshot,
    .restore = sink_restore,
    .prepare = sink_prepare,
};
