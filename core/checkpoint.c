/*
 * checkpoint.c — the checkpoint coordinator, the on-disk format and
 * restore; see checkpoint.h for the protocol.
 *
 * Writing is crash-safe by ordering: state files first (each fsynced), then
 * MANIFEST through a temp file, fsync, rename, fsync of the folder. A crash
 * at any point leaves either no MANIFEST (the folder is ignored and later
 * deleted) or a complete checkpoint. Reading trusts nothing: the MANIFEST's
 * own CRC, each state file's length and CRC (manifest.c).
 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "manifest.h"
#include "runtime.h"

#define MANIFEST SL_MANIFEST_FILE

static void sl_buf_append_str(sluice_buf *b, const char *s)
{
    sl_buf_append(b, s, strlen(s));
}

/* ---- the coordinator --------------------------------------------------------- */

typedef struct stage_state {
    void *blob;        /* at the epoch in flight */
    size_t len;
    uint64_t epoch;    /* last epoch acknowledged */
    bool ok;
    bool ended;        /* its thread finished: final_blob stands for it */
    bool final_ok;
    void *final_blob;
    size_t final_len;
} stage_state;

struct sl_checkpoint {
    sl_runtime *rt;
    char *root;           /* dir/pipeline */
    int64_t interval_ms;
    int64_t timeout_ms;
    int retain;
    FILE *events;
    pthread_mutex_t lock;
    stage_state *stages;
    uint64_t epoch;       /* last started */
    bool in_flight;
    bool final_taken;
    _Atomic bool requested; /* a source asked for one now (checkpoint_now) */
    int64_t started_ns;   /* of the one in flight */
    int64_t next_due_ms;
    sl_checkpoint_stats stats;
};

static int mkdir_p(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

sl_checkpoint *sl_checkpoint_new(sl_runtime *rt, const sl_checkpoint_opts *o)
{
    sl_checkpoint *cp = calloc(1, sizeof *cp);
    cp->rt = rt;
    size_t n = strlen(o->dir) + strlen(o->pipeline) + 2;
    cp->root = malloc(n);
    snprintf(cp->root, n, "%s/%s", o->dir, o->pipeline);
    cp->interval_ms = o->interval_ms;
    cp->timeout_ms = o->timeout_ms;
    cp->retain = o->retain > 0 ? o->retain : 1;
    pthread_mutex_init(&cp->lock, NULL);
    cp->stages = calloc(rt->nstages ? rt->nstages : 1, sizeof *cp->stages);
    if (o->events_log) {
        /* 0644 whatever the umask (fopen() would make it 0666 under umask 0). */
        int fd = open(o->events_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        cp->events = fd >= 0 ? fdopen(fd, "a") : NULL;
        if (fd >= 0 && !cp->events)
            close(fd);
        if (!cp->events)
            sl_log(SLUICE_LOG_WARN, NULL, "cannot open events_log '%s': %s", o->events_log,
                   strerror(errno));
    }
    cp->next_due_ms = sl_wall_ms() + o->interval_ms;
    return cp;
}

void sl_checkpoint_free(sl_checkpoint *cp)
{
    if (!cp)
        return;
    for (size_t i = 0; i < cp->rt->nstages; i++) {
        free(cp->stages[i].blob);
        free(cp->stages[i].final_blob);
    }
    free(cp->stages);
    if (cp->events)
        fclose(cp->events);
    pthread_mutex_destroy(&cp->lock);
    free(cp->root);
    free(cp);
}

void sl_checkpoint_event(sl_checkpoint *cp, const char *json_fields)
{
    if (!cp || !cp->events)
        return;
    char ts[48];
    sl_format_iso8601(sl_wall_ms(), ts);
    fprintf(cp->events, "{\"time\":\"%s\",%s}\n", ts, json_fields);
    fflush(cp->events);
}

void sl_checkpoint_ack(sl_checkpoint *cp, size_t stage, uint64_t epoch, void *blob, size_t len,
                       bool ok)
{
    if (!cp) {
        free(blob);
        return;
    }
    pthread_mutex_lock(&cp->lock);
    stage_state *s = &cp->stages[stage];
    if (epoch == 0) {
        free(s->final_blob);
        s->final_blob = blob;
        s->final_len = len;
        s->ended = true;
        s->final_ok = ok;
    } else {
        free(s->blob);
        s->blob = blob;
        s->len = len;
        s->epoch = epoch;
        s->ok = ok;
    }
    pthread_mutex_unlock(&cp->lock);
}

void sl_checkpoint_request(sl_checkpoint *cp)
{
    atomic_store(&cp->requested, true);
}

void sl_checkpoint_stats_get(sl_checkpoint *cp, sl_checkpoint_stats *out)
{
    pthread_mutex_lock(&cp->lock);
    *out = cp->stats;
    pthread_mutex_unlock(&cp->lock);
}

static void start_epoch(sl_checkpoint *cp, bool final)
{
    cp->epoch++;
    cp->in_flight = true;
    cp->started_ns = sl_now_ns();
    char ev[128];
    snprintf(ev, sizeof ev, "\"event\":\"checkpoint_started\",\"epoch\":%llu,\"final\":%s",
             (unsigned long long)cp->epoch, final ? "true" : "false");
    sl_checkpoint_event(cp, ev);
    sl_runtime_barrier(cp->rt, cp->epoch, final);
}

bool sl_checkpoint_final(sl_checkpoint *cp)
{
    pthread_mutex_lock(&cp->lock);
    bool can = !cp->final_taken;
    cp->final_taken = true;
    bool busy = cp->in_flight;
    pthread_mutex_unlock(&cp->lock);
    if (!can)
        return false;
    if (busy) {
        /* Let the one in flight finish; the next tick starts the final one. */
        return true;
    }
    start_epoch(cp, true);
    return true;
}

/* ---- writing ---------------------------------------------------------------- */

static int write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    return close(fd);
}

static void fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(path);
}

/* Epoch numbers of chk-N folders under root, newest first. */
static size_t list_epochs(const char *root, uint64_t **out)
{
    *out = NULL;
    DIR *d = opendir(root);
    if (!d)
        return 0;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long v;
        char tail;
        if (sscanf(e->d_name, "chk-%llu%c", &v, &tail) != 1)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = realloc(*out, cap * sizeof **out);
        }
        (*out)[n++] = v;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort, descending */
        for (size_t j = i; j > 0 && (*out)[j - 1] < (*out)[j]; j--) {
            uint64_t t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return n;
}

static void apply_retention(sl_checkpoint *cp)
{
    uint64_t *epochs;
    size_t n = list_epochs(cp->root, &epochs);
    for (size_t i = (size_t)cp->retain; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/chk-%llu", cp->root, (unsigned long long)epochs[i]);
        remove_tree(p);
    }
    free(epochs);
}

/* The epoch's state, stage by stage: what it acknowledged for this epoch,
 * or its final state when it ended before the barrier reached it. */
static int write_checkpoint(sl_checkpoint *cp, uint64_t epoch, size_t *bytes)
{
    sl_runtime *rt = cp->rt;
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/chk-%llu", cp->root, (unsigned long long)epoch);
    if (mkdir_p(dir) != 0) {
        sl_log(SLUICE_LOG_ERROR, NULL, "checkpoint %llu: cannot create %s: %s",
               (unsigned long long)epoch, dir, strerror(errno));
        return -1;
    }
    sluice_buf m = {0};
    char line[512];
    snprintf(line, sizeof line, "sluice-checkpoint %d\npipeline %s\nepoch %llu\ncreated_ms %lld\n",
             SL_MANIFEST_VERSION, rt->cfg->name, (unsigned long long)epoch,
             (long long)sl_wall_ms());
    sl_buf_append_str(&m, line);
    *bytes = 0;
    for (size_t i = 0; i < rt->nstages; i++) {
        stage_state *s = &cp->stages[i];
        const void *blob = s->epoch == epoch ? s->blob : s->final_blob;
        size_t len = s->epoch == epoch ? s->len : s->final_len;
        const sl_stage_cfg *st = &rt->cfg->stages[i];
        if (!blob) {
            snprintf(line, sizeof line, "stage %s %s - 0 0\n", st->name, st->type);
        } else {
            snprintf(path, sizeof path, "%s/%s.state", dir, st->name);
            if (write_file(path, blob, len) != 0) {
                sl_log(SLUICE_LOG_ERROR, NULL, "checkpoint %llu: cannot write %s: %s",
                       (unsigned long long)epoch, path, strerror(errno));
                free(m.data);
                return -1;
            }
            *bytes += len;
            snprintf(line, sizeof line, "stage %s %s %zu %08x\n", st->name, st->type, len,
                     sl_crc32(0, blob, len));
        }
        sl_buf_append_str(&m, line);
    }
    snprintf(line, sizeof line, "crc %08x\n", sl_crc32(0, m.data, m.len));
    sl_buf_append_str(&m, line);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/" MANIFEST ".tmp", dir);
    snprintf(path, sizeof path, "%s/" MANIFEST, dir);
    int rc = write_file(tmp, m.data, m.len);
    *bytes += m.len;
    free(m.data);
    if (rc != 0 || rename(tmp, path) != 0) {
        sl_log(SLUICE_LOG_ERROR, NULL, "checkpoint %llu: cannot write %s: %s",
               (unsigned long long)epoch, path, strerror(errno));
        return -1;
    }
    fsync_dir(dir);
    fsync_dir(cp->root);
    return 0;
}

/* Every stage has answered for the epoch in flight (or has ended). */
static bool epoch_complete(sl_checkpoint *cp, bool *ok)
{
    *ok = true;
    for (size_t i = 0; i < cp->rt->nstages; i++) {
        stage_state *s = &cp->stages[i];
        if (s->epoch == cp->epoch) {
            if (!s->ok)
                *ok = false;
        } else if (!s->ended) {
            return false;
        } else if (!s->final_ok) {
            *ok = false;
        }
    }
    return true;
}

/* "not complete within 1s (waiting for out, sink2)" */
static void pending_stages(sl_checkpoint *cp, char *out, size_t len)
{
    int n = snprintf(out, len, "not complete within %lld ms (waiting for",
                     (long long)cp->timeout_ms);
    const char *sep = " ";
    for (size_t i = 0; i < cp->rt->nstages && n > 0 && (size_t)n < len - 8; i++) {
        stage_state *s = &cp->stages[i];
        if (s->epoch == cp->epoch || s->ended)
            continue;
        n += snprintf(out + n, len - (size_t)n, "%s%s", sep, cp->rt->stages[i].cfg->name);
        sep = ", ";
    }
    if (n > 0 && (size_t)n < len - 2)
        snprintf(out + n, len - (size_t)n, ")");
}

/* ok=false: why (NULL: a stage could not snapshot or writing failed). */
static void finish_epoch(sl_checkpoint *cp, bool ok, const char *why)
{
    uint64_t epoch = cp->epoch;
    size_t bytes = 0;
    int written = ok ? write_checkpoint(cp, epoch, &bytes) : -1;
    double ms = (double)(sl_now_ns() - cp->started_ns) / 1e6; /* writing included */
    if (written == 0) {
        sl_log(SLUICE_LOG_INFO, NULL, "checkpoint %llu completed in %.1f ms (%zu bytes)",
               (unsigned long long)epoch, ms, bytes);
        char ev[4096];
        int n = snprintf(ev, sizeof ev,
                         "\"event\":\"checkpoint_completed\",\"epoch\":%llu,"
                         "\"duration_ms\":%.3f,\"bytes\":%zu,\"records\":{",
                         (unsigned long long)epoch, ms, bytes);
        for (size_t i = 0; i < cp->rt->nstages && n < (int)sizeof ev - 200; i++) {
            sluice_ctx *ctx = &cp->rt->stages[i];
            n += snprintf(ev + n, sizeof ev - n, "%s\"%s\":%llu", i ? "," : "", ctx->cfg->name,
                          (unsigned long long)atomic_load(&ctx->records_out));
        }
        snprintf(ev + n, sizeof ev - n, "}");
        sl_checkpoint_event(cp, ev);
        cp->stats.completed++;
        cp->stats.last_epoch = epoch;
        cp->stats.last_duration_ms = ms;
        cp->stats.last_bytes = bytes;
        cp->stats.last_success_ms = sl_wall_ms();
        sl_runtime_commit(cp->rt, epoch);
        apply_retention(cp);
        if (atomic_load(&cp->rt->final_epoch) == epoch)
            sl_runtime_outcomes_over(cp->rt);
    } else {
        sl_log(SLUICE_LOG_WARN, NULL, "checkpoint %llu failed after %.1f ms%s%s",
               (unsigned long long)epoch, ms, why ? ": " : "", why ? why : "");
        cp->stats.failed++;
        cp->stats.last_failed_epoch = epoch;
        if (atomic_load(&cp->rt->final_epoch) == epoch) {
            sl_runtime_abort(cp->rt, epoch);
            sl_runtime_outcomes_over(cp->rt);
            /* The graceful stop cannot complete (a sink still cannot
             * write): stop outright, so stages retrying give up and the
             * run ends with status 1 rather than wait for ever. */
            sl_runtime_stop(cp->rt);
        }
        char ev[128];
        snprintf(ev, sizeof ev, "\"event\":\"checkpoint_failed\",\"epoch\":%llu,\"reason\":\"%s\"",
                 (unsigned long long)epoch, why ? "timeout" : "error");
        sl_checkpoint_event(cp, ev);
    }
    cp->in_flight = false;
}

int64_t sl_checkpoint_tick(sl_checkpoint *cp)
{
    pthread_mutex_lock(&cp->lock);
    bool ok;
    if (cp->in_flight && epoch_complete(cp, &ok))
        finish_epoch(cp, ok, NULL);
    else if (cp->in_flight && cp->timeout_ms > 0 &&
             sl_now_ns() - cp->started_ns > cp->timeout_ms * 1000000) {
        /* A stage is stuck (a sink whose peer is down): give this epoch up
         * rather than wait for ever; its barrier still travels, and the
         * next checkpoint covers what it would have. */
        char why[512];
        pending_stages(cp, why, sizeof why);
        finish_epoch(cp, false, why);
    }
    int64_t now = sl_wall_ms();
    bool start_final = !cp->in_flight && cp->final_taken &&
                       atomic_load(&cp->rt->final_epoch) == 0;
    bool asked = !cp->in_flight && !cp->final_taken && atomic_exchange(&cp->requested, false);
    bool start_periodic = asked || (!cp->in_flight && !cp->final_taken && cp->interval_ms > 0 &&
                                    now >= cp->next_due_ms);
    if (start_periodic && cp->interval_ms > 0)
        cp->next_due_ms = now + cp->interval_ms;
    pthread_mutex_unlock(&cp->lock);
    if (start_final || start_periodic)
        start_epoch(cp, start_final);
    if (cp->in_flight)
        return 5;
    if (cp->interval_ms > 0 && !cp->final_taken) {
        int64_t wait = cp->next_due_ms - sl_wall_ms();
        return wait < 1 ? 1 : wait;
    }
    return 250;
}

/* ---- reading and restore -------------------------------------------------------- */

int sl_checkpoint_restore(sl_checkpoint *cp, char *err, size_t errlen)
{
    sl_runtime *rt = cp->rt;
    uint64_t *epochs;
    size_t n = list_epochs(cp->root, &epochs);
    int rc = 0;
    for (size_t k = 0; k < n; k++) {
        char dir[4096], why[512];
        snprintf(dir, sizeof dir, "%s/chk-%llu", cp->root, (unsigned long long)epochs[k]);
        sl_manifest m;
        if (sl_manifest_read(dir, &m, why, sizeof why) != 0) {
            sl_log(SLUICE_LOG_WARN, NULL, "skipping checkpoint %s: %s", dir, why);
            sl_manifest_free(&m);
            continue;
        }
        const sl_manifest_stage *ms = m.stages;
        size_t nms = m.nstages;
        uint64_t epoch = m.epoch;
        /* The checkpoint must fit this pipeline: every stage with state
         * still there, of the same type, able to restore. */
        for (size_t i = 0; i < nms && rc == 0; i++) {
            if (!ms[i].has_state)
                continue;
            size_t j = 0;
            while (j < rt->nstages && strcmp(rt->cfg->stages[j].name, ms[i].name) != 0)
                j++;
            if (j == rt->nstages) {
                snprintf(err, errlen,
                         "checkpoint %s holds state of stage '%s', which the pipeline no longer "
                         "has; use --from-scratch or remove %s",
                         dir, ms[i].name, cp->root);
                rc = -1;
            } else if (strcmp(rt->cfg->stages[j].type, ms[i].type) != 0) {
                snprintf(err, errlen,
                         "checkpoint %s: stage '%s' was of type %s and is now %s, so its state "
                         "cannot be restored; use --from-scratch or remove %s",
                         dir, ms[i].name, ms[i].type, rt->cfg->stages[j].type, cp->root);
                rc = -1;
            }
        }
        for (size_t i = 0; i < nms && rc == 0; i++) {
            if (!ms[i].has_state)
                continue;
            size_t j = 0;
            while (strcmp(rt->cfg->stages[j].name, ms[i].name) != 0)
                j++;
            sluice_ctx *ctx = &rt->stages[j];
            char path[4352]; /* a PATH_MAX folder, a stage name, ".state" */
            snprintf(path, sizeof path, "%s/%s.state", dir, ms[i].name);
            size_t len;
            char *blob = sl_read_whole_file(path, &len);
            char perr[1024] = "";
            if (!ctx->def->restore ||
                ctx->def->restore(ctx->self, blob, len, perr, sizeof perr) != SLUICE_OK) {
                snprintf(err, errlen,
                         "checkpoint %s: stage '%s' cannot restore its state: %s; use "
                         "--from-scratch or remove %s",
                         dir, ms[i].name, ctx->def->restore ? perr : "it keeps no state now",
                         cp->root);
                rc = -1;
            }
            free(blob);
        }
        sl_manifest_free(&m);
        if (rc == 0) {
            /* Number on from the newest folder, damaged ones included, so
             * new checkpoints are always the newest. */
            cp->epoch = epochs[0] > epoch ? epochs[0] : epoch;
            sl_log(SLUICE_LOG_INFO, NULL, "restored checkpoint %llu from %s",
                   (unsigned long long)epoch, dir);
            char ev[4500];
            snprintf(ev, sizeof ev, "\"event\":\"restored\",\"epoch\":%llu,\"path\":\"%s\"",
                     (unsigned long long)epoch, dir);
            sl_checkpoint_event(cp, ev);
        }
        free(epochs);
        return rc;
    }
    /* Nothing to restore: keep numbering after whatever folders exist. */
    if (n)
        cp->epoch = epochs[0];
    free(epochs);
    return 0;
}

int sl_checkpoint_discard(sl_checkpoint *cp)
{
    uint64_t *epochs;
    size_t n = list_epochs(cp->root, &epochs);
    for (size_t i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/chk-%llu", cp->root, (unsigned long long)epochs[i]);
        remove_tree(p);
    }
    free(epochs);
    if (n)
        sl_log(SLUICE_LOG_INFO, NULL, "--from-scratch: removed %zu checkpoint(s) from %s", n,
               cp->root);
    return 0;
}
