/*
 * faulty.c — a test-only plugin (`faulty.so`) that fails on purpose, for
 * tests/integration/failure_isolation.sh. Never installed.
 *
 *     operators:
 *       boom:
 *         type: faulty
 *         input: src
 *         fail_at: 500            # ERROR on the 500th record of the run (0: never)
 *         fail_while: /tmp/f      # ERROR whenever this file exists
 *     sinks:
 *       out:
 *         type: faulty
 *         input: boom
 *         path: out.jsonl         # JSON lines
 *         down_while: /tmp/down   # RETRY ("peer down") while this file exists
 *         fail_at: 0              # ERROR at this record of the run (0: never)
 *
 * The operator passes records through by reference (host->record_copy).
 * Records before the failing one in its batch are emitted first, so what
 * reached downstream is exactly the records numbered below fail_at.
 *
 * The sink writes each batch as JSON lines with write(). A RETRY writes
 * nothing, so the core may hand the same batch again without duplicating
 * it. Checkpoints: prepare() fsync()s, snapshot() records the file's
 * length, and restore() cuts the file back to it at start — exactly once
 * across a failure and restart, as the built-in file sink does.
 */
#include "sluice/plugin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static bool file_exists(const char *path)
{
    return path && *path && access(path, F_OK) == 0;
}

/* ---- the operator ---------------------------------------------------------- */

typedef struct faulty_op_config {
    int64_t fail_at;
    char *fail_while;
} faulty_op_config;

static const sluice_option op_options[] = {
    {.name = "fail_at", .type = SLUICE_OPT_INT, .default_value = "0",
     .offset = offsetof(faulty_op_config, fail_at),
     .help = "fail (SLUICE_ERROR) on this record, counting from 1 across the run; 0: never"},
    {.name = "fail_while", .type = SLUICE_OPT_STRING,
     .offset = offsetof(faulty_op_config, fail_while),
     .help = "fail on any batch that arrives while this file exists"},
    {.name = NULL},
};

typedef struct faulty_op {
    const sluice_host *host;
    sluice_ctx *ctx;
    const faulty_op_config *cfg;
    uint64_t seen; /* records handled this run */
} faulty_op;

static int op_create(const sluice_host *host, sluice_ctx *ctx, const void *config, void **self,
                     char *err, size_t errlen)
{
    const faulty_op_config *cfg = config;
    if (cfg->fail_at < 0) {
        host->config_error(ctx, "fail_at", "fail_at must not be negative");
        snprintf(err, errlen, "invalid faulty operator options");
        return SLUICE_ERROR;
    }
    faulty_op *op = calloc(1, sizeof *op);
    if (!op) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    op->host = host;
    op->ctx = ctx;
    op->cfg = cfg;
    *self = op;
    return SLUICE_OK;
}

static void op_destroy(void *self)
{
    free(self);
}

/* Emit *out (if it holds anything) and clear it. */
static int emit_pending(faulty_op *op, sluice_batch **out, char *err, size_t errlen)
{
    sluice_batch *b = *out;
    *out = NULL;
    if (!b)
        return SLUICE_OK;
    if (b->count == 0) {
        op->host->batch_free(b);
        return SLUICE_OK;
    }
    if (op->host->emit(op->ctx, b) != SLUICE_OK) {
        snprintf(err, errlen, "faulty: emitting a batch failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int op_process(void *self, const sluice_batch *in, unsigned input, char *err,
                      size_t errlen)
{
    (void)input;
    faulty_op *op = self;
    const sluice_host *h = op->host;
    if (file_exists(op->cfg->fail_while)) {
        snprintf(err, errlen, "faulty: injected failure: '%s' exists", op->cfg->fail_while);
        return SLUICE_ERROR;
    }
    sluice_batch *out = h->batch_new(op->ctx);
    if (!out) {
        snprintf(err, errlen, "faulty: out of memory");
        return SLUICE_ERROR;
    }
    for (uint32_t i = 0; i < in->count; i++) {
        op->seen++;
        if (op->cfg->fail_at > 0 && op->seen == (uint64_t)op->cfg->fail_at) {
            /* What came before the failing record is delivered. */
            if (emit_pending(op, &out, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            snprintf(err, errlen, "faulty: injected failure at record %llu (fail_at)",
                     (unsigned long long)op->seen);
            return SLUICE_ERROR;
        }
        if (h->record_copy(out, in, &in->records[i]))
            continue;
        if (emit_pending(op, &out, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        out = h->batch_new(op->ctx);
        if (!out || !h->record_copy(out, in, &in->records[i])) {
            if (out)
                h->batch_free(out);
            snprintf(err, errlen, "faulty: out of memory");
            return SLUICE_ERROR;
        }
    }
    return emit_pending(op, &out, err, errlen);
}

/* ---- the sink -------------------------------------------------------------- */

typedef struct faulty_sink_config {
    char *path;
    char *down_while;
    int64_t fail_at;
} faulty_sink_config;

static const sluice_option sink_options[] = {
    {.name = "path", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(faulty_sink_config, path), .help = "file to write JSON lines to"},
    {.name = "down_while", .type = SLUICE_OPT_STRING,
     .offset = offsetof(faulty_sink_config, down_while),
     .help = "while this file exists, write() returns SLUICE_RETRY (the peer is down)"},
    {.name = "fail_at", .type = SLUICE_OPT_INT, .default_value = "0",
     .offset = offsetof(faulty_sink_config, fail_at),
     .help = "fail (SLUICE_ERROR) on this record, counting from 1 across the run; 0: never"},
    {.name = NULL},
};

typedef struct faulty_sink {
    const sluice_host *host;
    sluice_ctx *ctx;
    const faulty_sink_config *cfg;
    int fd;
    sluice_codec *codec;
    sluice_buf out;
    uint64_t written;      /* records written this run */
    bool down;             /* the last write() found the peer down */
    int64_t restored_len;  /* committed length from a checkpoint; -1: none */
} faulty_sink;

#define SINK_STATE_MAGIC 0x464c5453u /* "STLF" */

static int sink_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                       void **self, char *err, size_t errlen)
{
    const faulty_sink_config *cfg = config;
    bool ok = true;
    if (!cfg->path || !*cfg->path) {
        host->config_error(ctx, "path", "path must not be empty");
        ok = false;
    }
    if (cfg->fail_at < 0) {
        host->config_error(ctx, "fail_at", "fail_at must not be negative");
        ok = false;
    }
    if (!ok) {
        snprintf(err, errlen, "invalid faulty sink options");
        return SLUICE_ERROR;
    }
    faulty_sink *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    s->host = host;
    s->ctx = ctx;
    s->cfg = cfg;
    s->fd = -1;
    s->restored_len = -1;
    *self = s;
    return SLUICE_OK;
}

static int sink_start(void *self, char *err, size_t errlen)
{
    faulty_sink *s = self;
    s->codec = s->host->codec_new(s->ctx, "json", err, errlen);
    if (!s->codec)
        return SLUICE_ERROR;
    bool resume = s->restored_len >= 0;
    s->fd = open(s->cfg->path, O_WRONLY | O_CREAT | O_CLOEXEC | (resume ? O_APPEND : O_TRUNC),
                 0644);
    if (s->fd < 0) {
        snprintf(err, errlen, "cannot open '%s': %s", s->cfg->path, strerror(errno));
        return SLUICE_ERROR;
    }
    if (resume) {
        /* What was written after the checkpoint comes again: cut it off. */
        struct stat st;
        if (fstat(s->fd, &st) != 0 || st.st_size < s->restored_len) {
            snprintf(err, errlen, "'%s' is shorter than the %lld bytes the checkpoint committed",
                     s->cfg->path, (long long)s->restored_len);
            return SLUICE_ERROR;
        }
        if (ftruncate(s->fd, s->restored_len) != 0) {
            snprintf(err, errlen, "cannot cut '%s' back: %s", s->cfg->path, strerror(errno));
            return SLUICE_ERROR;
        }
    }
    return SLUICE_OK;
}

static void sink_destroy(void *self)
{
    faulty_sink *s = self;
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->codec)
        s->host->codec_free(s->codec);
    s->host->buf_free(&s->out);
    free(s);
}

/* Write s->out whole (across short writes), then empty it. */
static int write_out(faulty_sink *s, char *err, size_t errlen)
{
    size_t done = 0;
    while (done < s->out.len) {
        ssize_t n = write(s->fd, s->out.data + done, s->out.len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "cannot write to '%s': %s", s->cfg->path, strerror(errno));
            s->out.len = 0;
            return SLUICE_ERROR;
        }
        done += (size_t)n;
    }
    s->out.len = 0;
    return SLUICE_OK;
}

static int sink_write(void *self, const sluice_batch *in, char *err, size_t errlen)
{
    faulty_sink *s = self;
    const sluice_host *h = s->host;
    if (file_exists(s->cfg->down_while)) {
        /* Nothing of this batch is written, so the core's retry of the
         * same batch duplicates nothing. Logged once per outage. */
        if (!s->down)
            h->log(s->ctx, SLUICE_LOG_WARN, "peer down ('%s' exists); asking to retry",
                   s->cfg->down_while);
        s->down = true;
        return SLUICE_RETRY;
    }
    if (s->down)
        h->log(s->ctx, SLUICE_LOG_INFO, "peer back; writing again");
    s->down = false;
    s->out.len = 0;
    uint32_t encoded = 0;
    for (uint32_t i = 0; i < in->count; i++) {
        if (s->cfg->fail_at > 0 && s->written + encoded + 1 == (uint64_t)s->cfg->fail_at) {
            /* Records before the failing one are written. */
            if (write_out(s, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            s->written += encoded;
            snprintf(err, errlen, "faulty: injected failure at record %llu (fail_at)",
                     (unsigned long long)s->written + 1);
            return SLUICE_ERROR;
        }
        if (h->encode(s->codec, &in->records[i], &s->out) != SLUICE_OK ||
            h->buf_append(&s->out, "\n", 1) != SLUICE_OK) {
            snprintf(err, errlen, "faulty: cannot encode record %llu",
                     (unsigned long long)(s->written + encoded + 1));
            return SLUICE_ERROR;
        }
        encoded++;
    }
    if (write_out(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    s->written += encoded;
    return SLUICE_OK;
}

/* Everything written so far is durable before the checkpoint's snapshot. */
static int sink_prepare(void *self, uint64_t epoch, char *err, size_t errlen)
{
    (void)epoch;
    faulty_sink *s = self;
    if (s->fd >= 0 && fsync(s->fd) != 0) {
        snprintf(err, errlen, "cannot sync '%s': %s", s->cfg->path, strerror(errno));
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int sink_flush(void *self, char *err, size_t errlen)
{
    return sink_prepare(self, 0, err, errlen);
}

static int sink_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                         size_t errlen)
{
    (void)epoch;
    faulty_sink *s = self;
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat '%s'", s->cfg->path);
        return SLUICE_ERROR;
    }
    unsigned char *b = malloc(12);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    uint32_t magic = SINK_STATE_MAGIC;
    uint64_t size = (uint64_t)st.st_size;
    memcpy(b, &magic, 4);
    memcpy(b + 4, &size, 8);
    *blob = b;
    *len = 12;
    return SLUICE_OK;
}

static int sink_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    faulty_sink *s = self;
    uint32_t magic;
    uint64_t size;
    if (len != 12) {
        snprintf(err, errlen, "faulty sink state has %zu bytes, want 12", len);
        return SLUICE_ERROR;
    }
    memcpy(&magic, blob, 4);
    memcpy(&size, (const char *)blob + 4, 8);
    if (magic != SINK_STATE_MAGIC || size > INT64_MAX) {
        snprintf(err, errlen, "faulty sink state is not in a format this version reads");
        return SLUICE_ERROR;
    }
    s->restored_len = (int64_t)size;
    return SLUICE_OK;
}

/* ---- descriptors -------------------------------------------------------------- */

static const sluice_plugin_def faulty_sink_def = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "faulty",
    .kind = SLUICE_SINK,
    .version = "1.0",
    .description = "test sink: JSON lines; RETRY while `down_while` exists, ERROR at `fail_at`",
    .config_size = sizeof(faulty_sink_config),
    .options = sink_options,
    .create = sink_create,
    .start = sink_start,
    .destroy = sink_destroy,
    .write = sink_write,
    .flush = sink_flush,
    .snapshot = sink_snapshot,
    .restore = sink_restore,
    .prepare = sink_prepare,
};

static const sluice_plugin_def faulty_op_def = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "faulty",
    .kind = SLUICE_OPERATOR,
    .version = "1.0",
    .description = "test operator: passes records on; ERROR at `fail_at` or while `fail_while` exists",
    .next = &faulty_sink_def,
    .config_size = sizeof(faulty_op_config),
    .options = op_options,
    .create = op_create,
    .destroy = op_destroy,
    .process = op_process,
};

EXPORT const sluice_plugin_def *sluice_plugin(void)
{
    return &faulty_op_def;
}
