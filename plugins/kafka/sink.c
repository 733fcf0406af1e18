/*
 * sink.c — the `kafka` sink: records produced to a Kafka topic with
 * librdkafka, at least once (idempotent producer) or exactly once
 * (one Kafka transaction per checkpoint epoch).
 *
 * Each record becomes one message: the value is the record encoded by the
 * host codec (json, lines) or, with `format: raw`, the `value` field's bytes
 * as they are; the key is the `key` field's value as text (strings as they
 * are, numbers printed), or, without a `key` option, the record's own key
 * (the one a Kafka source read), so kafka -> kafka keeps keys and thus
 * partitioning; `headers` maps header names to fields; the message
 * timestamp is the record's event time when it has one. The topic is the
 * `topic_field` value when that is a non-empty string, else `topic`; a
 * record with neither is rejected ("no_topic"), never dropped silently.
 *
 * Messages go out with RD_KAFKA_MSG_F_COPY through one reused encode
 * buffer and a cached rd_kafka_topic_t per topic, so at least once costs no
 * malloc of ours per record. When librdkafka's queue is full the sink
 * serves delivery reports for 50 ms and tries again: that wait is the
 * backpressure that slows the pipeline down to what Kafka takes.
 *
 * Delivery errors are never dropped. The delivery report callback (served
 * on this stage's thread, inside rd_kafka_poll/flush) counts failures and
 * keeps the first one's reason; the next write(), prepare() or flush()
 * fails with it, so the run (or the checkpoint) fails instead of going on
 * with a hole in the output. prepare() and flush() wait for every message
 * to be acknowledged (rd_kafka_flush, bounded by delivery_timeout, which is
 * librdkafka's message.timeout.ms), so a completed checkpoint means every
 * record before its barrier is in Kafka.
 *
 * Exactly once (`exactly_once: true`, needs a `checkpoint:` section): one
 * transaction per checkpoint epoch, begun lazily at the first message or
 * offsets after the previous commit. prepare(N) flushes the transaction,
 * fails on any delivery error, sends the Kafka sources' offsets of epoch N
 * into it (sk_offsets_each: the sources published them at their snapshot)
 * and leaves the sink "prepared". Records arriving while prepared belong to
 * epoch N+1, so they must not land in N's transaction: write() keeps them,
 * encoded, in an in-memory pending list. commit(N) commits the transaction,
 * then produces the pending list into a new one. A checkpoint that failed
 * mid-run gets no commit; prepare(N+1) then produces the pending list into
 * the still-open transaction and commit(N+1) commits both epochs together.
 * abort(N) (the run is ending and N will never complete) aborts the
 * transaction and drops the pending list: a restart replays it all from the
 * last completed checkpoint.
 *
 * flush() (all input ended) commits nothing. At the end of bounded input
 * the final checkpoint completes with the sink's end state, its barrier
 * never reaching the sink, so a commit() of an epoch newer than the last
 * prepared one covers everything the sink holds; a sink destroyed with no
 * outcome (the run failed) aborts, and a restart replays.
 *
 * At start, rd_kafka_init_transactions() with the same transactional_id
 * fences a crashed predecessor and aborts its open transaction. Errors of
 * the transactional API follow librdkafka's rules: retriable ones are
 * retried, abortable ones abort the transaction and fail the checkpoint,
 * fatal ones (a fenced producer) fail the run.
 *
 * What exactly once cannot cover: between the checkpoint's manifest being
 * written and commit_transaction() returning, a crash leaves epoch N
 * recorded as complete while its transaction is still open; the next run's
 * init_transactions() aborts it, and librdkafka has no way to resume and
 * commit a predecessor's transaction. That window is one round trip to the
 * transaction coordinator.
 *
 * The Kafka offsets a transaction carries are for Kafka's own tooling
 * (group lag); sluice's checkpoint stays the source of truth for where the
 * sources resume.
 */
#include "common.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { FORMAT_JSON, FORMAT_LINES, FORMAT_RAW };

static const char *const format_choices[] = {"json", "lines", "raw", NULL};

typedef struct kafka_sink_config {
    char *brokers;
    char *topic;
    char *topic_field;
    char *key;
    int format;
    sluice_map headers;
    sluice_map properties;
    bool exactly_once;
    char *transactional_id;
    int64_t delivery_timeout; /* ms */
} kafka_sink_config;

static const sluice_option kafka_sink_options[] = {
    {.name = "brokers", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(kafka_sink_config, brokers),
     .help = "bootstrap brokers, host:port[,host:port...]"},
    {.name = "topic", .type = SLUICE_OPT_STRING, .offset = offsetof(kafka_sink_config, topic),
     .help = "the topic to write to (with topic_field: the topic of records that name none)"},
    {.name = "topic_field", .type = SLUICE_OPT_STRING,
     .offset = offsetof(kafka_sink_config, topic_field),
     .help = "a field whose string value names each record's topic"},
    {.name = "key", .type = SLUICE_OPT_STRING, .offset = offsetof(kafka_sink_config, key),
     .help = "a field whose value (as text) is the message key; without it, the record's "
             "own key (read by a Kafka source), if any"},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "json",
     .offset = offsetof(kafka_sink_config, format), .choices = format_choices,
     .help = "json (the record as an object), lines (the `message` field) or raw (the "
             "`value` field's bytes as they are; null makes a tombstone)"},
    {.name = "headers", .type = SLUICE_OPT_MAP, .offset = offsetof(kafka_sink_config, headers),
     .help = "message headers: header name -> field whose value (as text) it carries"},
    {.name = "properties", .type = SLUICE_OPT_MAP,
     .offset = offsetof(kafka_sink_config, properties),
     .help = "librdkafka producer properties (security settings included); they win over "
             "sluice's defaults (enable.idempotence=true, partitioner=murmur2_random)"},
    {.name = "exactly_once", .type = SLUICE_OPT_BOOL, .default_value = "false",
     .offset = offsetof(kafka_sink_config, exactly_once),
     .help = "one Kafka transaction per checkpoint, committed when the checkpoint completes "
             "(needs a checkpoint: section; consumers read with isolation.level=read_committed)"},
    {.name = "transactional_id", .type = SLUICE_OPT_STRING,
     .offset = offsetof(kafka_sink_config, transactional_id),
     .help = "with exactly_once: the transactional.id, stable across restarts "
             "(default sluice.<pipeline>.<stage>)"},
    {.name = "delivery_timeout", .type = SLUICE_OPT_DURATION, .default_value = "30s",
     .offset = offsetof(kafka_sink_config, delivery_timeout),
     .help = "how long a message may wait for Kafka to acknowledge it before the run fails "
             "(message.timeout.ms)"},
    {.name = NULL},
};

#define POLL_FULL_MS 50          /* wait when librdkafka's queue is full */
#define WARN_EVERY_MS 10000      /* rate of "still waiting" warnings */
#define MAX_TOPIC_SERIES 100     /* topics with their own metric series */
#define TXN_TIMEOUT_MIN_MS 60000 /* librdkafka's default transaction.timeout.ms */
#define TXN_TIMEOUT_MAX_MS 900000 /* brokers' default transaction.max.timeout.ms */
#define DESTROY_FLUSH_MS 2000
#define PENDING_WARN_BYTES ((size_t)256 << 20)

/* One topic written to: librdkafka's handle (a per-message name lookup
 * would cost a lock and a hash), and its metric series with the
 * deliveries not yet added to them. */
typedef struct topic_slot {
    char *name;
    size_t len;
    uint32_t index; /* in kafka_sink.slots, for the pending list */
    rd_kafka_topic_t *rkt;
    sluice_series *records_out;
    sluice_series *bytes_out;
    uint64_t unreported_records;
    uint64_t unreported_bytes;
    bool dirty;
} topic_slot;

/* Produce errors by librdkafka error code (a small, fixed set). */
typedef struct reason_series {
    rd_kafka_resp_err_t code;
    sluice_series *series;
} reason_series;

#define MAX_REASONS 64

/* One message ready to produce; the strings are borrowed. */
typedef struct out_msg {
    topic_slot *slot;
    const char *key; /* NULL: no key */
    size_t key_len;
    const char *value; /* NULL: a null value (tombstone) */
    size_t value_len;
    int64_t timestamp; /* ms; 0: now */
    /* headers: hdr_val[i]/hdr_len[i] of the sink, NULL when absent */
} out_msg;

typedef struct kafka_sink {
    sk_base base; /* first: librdkafka's callbacks find the sink through it */
    const sluice_host *host;
    sluice_ctx *ctx;
    const kafka_sink_config *cfg;

    sluice_name topic_field;
    sluice_name key_field;
    sluice_name value_field;
    size_t nheaders;
    sluice_name *header_fields;
    const char **hdr_val;   /* per header, for the message being produced */
    size_t *hdr_len;
    char (*hdr_num)[40];    /* printed numbers of header values */
    rd_kafka_vu_t *vus;     /* the produceva() argument list, reused */
    char key_num[40];

    char *transactional_id;
    int64_t txn_timeout_ms;

    rd_kafka_t *rk;
    sluice_codec *codec;
    sluice_buf enc;     /* the value being encoded, reused */

    topic_slot **slots; /* every topic written to so far */
    uint32_t nslots, capslots;
    uint32_t *slot_index; /* open addressing: slot index + 1, 0 empty */
    uint32_t capindex;    /* power of two */
    topic_slot *default_slot;
    topic_slot *last_slot;
    topic_slot **dirty; /* slots with deliveries to add to the metrics */
    uint32_t ndirty;

    /* Messages handed to librdkafka and those it reported on: the
     * difference is still in flight. */
    uint64_t produced;
    uint64_t reported;
    /* Delivery failures since start (or the last deliberate abort). */
    uint64_t failed;
    char first_failure[512];
    bool discarding; /* aborting on purpose: purged messages are no failure */

    /* Metrics (NULL when the core keeps none). */
    sluice_metric *m_records_out;
    sluice_metric *m_bytes_out;
    sluice_metric *m_errors;
    sluice_metric *m_txns;
    sluice_series *s_committed;
    sluice_series *s_aborted;
    reason_series reasons[MAX_REASONS];
    size_t nreasons;

    /* Exactly once. */
    bool txn_open;          /* begin_transaction() done, no commit/abort since */
    uint64_t prepared;      /* the epoch prepared and not yet committed; 0: none */
    uint64_t txn_messages;  /* produced into the open transaction since its last prepare */
    uint64_t txn_records;   /* produced into the open transaction in all */
    bool broken;            /* a fatal producer error: nothing more can be done */
    sluice_buf pending;     /* messages that arrived while prepared, serialised */
    uint64_t npending;
    size_t pending_warn_at;

    bool checkpoints; /* the pipeline takes checkpoints */
    bool input_ended; /* flush() was called: every input has ended */
    int64_t last_warn_ms;
} kafka_sink;

/* ---- small helpers ------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A double as the shortest text that reads back the same. */
static size_t print_double(double d, char out[40])
{
    int n = snprintf(out, 40, "%.15g", d);
    if (isfinite(d) && strtod(out, NULL) != d)
        n = snprintf(out, 40, "%.17g", d);
    return (size_t)n;
}

/* A field's value as message bytes: strings and nested JSON as they are,
 * numbers and booleans printed into num. false for null or absent. */
static bool value_bytes(const sluice_value *v, char num[40], const char **p, size_t *n)
{
    if (!v)
        return false;
    switch (v->type) {
    case SLUICE_NULL:
        return false;
    case SLUICE_BOOL:
        *p = v->u.b ? "true" : "false";
        *n = v->u.b ? 4 : 5;
        return true;
    case SLUICE_INT:
        *n = (size_t)snprintf(num, 40, "%" PRId64, v->u.i);
        *p = num;
        return true;
    case SLUICE_DOUBLE:
        *n = print_double(v->u.d, num);
        *p = num;
        return true;
    case SLUICE_STRING:
    case SLUICE_JSON:
        *p = v->u.s.ptr ? v->u.s.ptr : "";
        *n = v->u.s.len;
        return true;
    }
    return false;
}

/* "_MSG_TIMED_OUT" -> "msg_timed_out": a metric label from an error code. */
static void reason_word(rd_kafka_resp_err_t code, char *out, size_t outlen)
{
    const char *name = rd_kafka_err2name(code);
    while (*name == '_')
        name++;
    size_t i = 0;
    for (; name[i] && i + 1 < outlen; i++) {
        char c = name[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[i] = 0;
}

static void count_error(kafka_sink *s, rd_kafka_resp_err_t code)
{
    if (!s->m_errors)
        return;
    for (size_t i = 0; i < s->nreasons; i++)
        if (s->reasons[i].code == code) {
            s->host->series_add(s->reasons[i].series, 1);
            return;
        }
    char word[64];
    reason_word(code, word, sizeof word);
    const char *values[] = {word, NULL};
    sluice_series *series = s->host->metric_series(s->m_errors, values);
    if (s->nreasons < MAX_REASONS)
        s->reasons[s->nreasons++] = (reason_series){code, series};
    s->host->series_add(series, 1);
}

static void count_transaction(kafka_sink *s, bool committed)
{
    if (s->m_txns)
        s->host->series_add(committed ? s->s_committed : s->s_aborted, 1);
}

/* ---- topics ---------------------------------------------------------------- */

static uint32_t hash_name(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static int index_grow(kafka_sink *s)
{
    uint32_t cap = s->capindex ? s->capindex * 2 : 16;
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return -1;
    for (uint32_t i = 0; i < s->nslots; i++) {
        uint32_t h = hash_name(s->slots[i]->name, s->slots[i]->len) & (cap - 1);
        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = i + 1;
    }
    free(s->slot_index);
    s->slot_index = idx;
    s->capindex = cap;
    return 0;
}

static topic_slot *slot_new(kafka_sink *s, const char *name, size_t len, char *err,
                            size_t errlen)
{
    if (s->nslots == s->capslots) {
        uint32_t cap = s->capslots ? s->capslots * 2 : 8;
        topic_slot **ns = realloc(s->slots, cap * sizeof *ns);
        topic_slot **nd = realloc(s->dirty, cap * sizeof *nd);
        if (ns)
            s->slots = ns;
        if (nd)
            s->dirty = nd;
        if (!ns || !nd)
            goto oom;
        s->capslots = cap;
    }
    if ((s->nslots + 1) * 2 > s->capindex && index_grow(s) != 0)
        goto oom;
    topic_slot *t = calloc(1, sizeof *t);
    if (!t)
        goto oom;
    t->name = strndup(name, len);
    if (!t->name) {
        free(t);
        goto oom;
    }
    t->len = len;
    /* Topic-level settings come from `properties` through the default
     * topic configuration. */
    t->rkt = rd_kafka_topic_new(s->rk, t->name, NULL);
    if (!t->rkt) {
        snprintf(err, errlen, "cannot use topic '%s': %s", t->name,
                 rd_kafka_err2str(rd_kafka_last_error()));
        free(t->name);
        free(t);
        return NULL;
    }
    if (s->m_records_out) {
        /* Past MAX_TOPIC_SERIES topics, one shared series keeps the
         * metrics' cardinality bounded. */
        const char *values[] = {s->nslots < MAX_TOPIC_SERIES ? t->name : "_other", NULL};
        t->records_out = s->host->metric_series(s->m_records_out, values);
        t->bytes_out = s->host->metric_series(s->m_bytes_out, values);
    }
    t->index = s->nslots;
    s->slots[s->nslots++] = t;
    uint32_t h = hash_name(name, len) & (s->capindex - 1);
    while (s->slot_index[h])
        h = (h + 1) & (s->capindex - 1);
    s->slot_index[h] = t->index + 1;
    return t;
oom:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

static topic_slot *slot_of(kafka_sink *s, const char *name, size_t len, char *err,
                           size_t errlen)
{
    topic_slot *t = s->last_slot;
    if (t && t->len == len && memcmp(t->name, name, len) == 0)
        return t;
    if (s->capindex) {
        uint32_t h = hash_name(name, len) & (s->capindex - 1);
        for (; s->slot_index[h]; h = (h + 1) & (s->capindex - 1)) {
            t = s->slots[s->slot_index[h] - 1];
            if (t->len == len && memcmp(t->name, name, len) == 0)
                return s->last_slot = t;
        }
    }
    t = slot_new(s, name, len, err, errlen);
    if (t)
        s->last_slot = t;
    return t;
}

static void report_deliveries(kafka_sink *s)
{
    for (uint32_t i = 0; i < s->ndirty; i++) {
        topic_slot *t = s->dirty[i];
        if (t->records_out) {
            s->host->series_add(t->records_out, (double)t->unreported_records);
            s->host->series_add(t->bytes_out, (double)t->unreported_bytes);
        }
        t->unreported_records = t->unreported_bytes = 0;
        t->dirty = false;
    }
    s->ndirty = 0;
}

/* ---- delivery reports --------------------------------------------------------- */

/* Called by librdkafka on this stage's thread, inside rd_kafka_poll() and
 * rd_kafka_flush() (and the transactional calls that flush). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_sink *s = opaque;
    topic_slot *t = m->_private;
    (void)rk;
    s->reported++;
    if (m->err) {
        if (s->discarding && (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                              m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT))
            return;
        count_error(s, m->err);
        if (s->failed++ == 0)
            snprintf(s->first_failure, sizeof s->first_failure, "topic '%s': %s",
                     t ? t->name : rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        return;
    }
    if (!t)
        return;
    t->unreported_records++;
    t->unreported_bytes += m->len + m->key_len;
    if (!t->dirty) {
        t->dirty = true;
        s->dirty[s->ndirty++] = t;
    }
}

static void serve(kafka_sink *s, int timeout_ms)
{
    rd_kafka_poll(s->rk, timeout_ms);
    report_deliveries(s);
}

/* The run must not go on once Kafka lost a message or the producer broke. */
static int check_health(kafka_sink *s, char *err, size_t errlen)
{
    if (atomic_load(&s->base.fatal) || s->broken) {
        char why[512];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(s->rk, why, sizeof why);
        if (code) {
            snprintf(err, errlen, "fatal Kafka producer error: %s%s", why,
                     code == RD_KAFKA_RESP_ERR__FENCED ||
                             code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH
                         ? " (another producer with this transactional_id started)"
                         : "");
            s->broken = true;
            return SLUICE_ERROR;
        }
        if (s->broken) {
            snprintf(err, errlen, "the Kafka producer failed earlier and cannot go on");
            return SLUICE_ERROR;
        }
    }
    if (s->failed) {
        snprintf(err, errlen,
                 "%" PRIu64 " message(s) could not be delivered to Kafka (first: %s)%s",
                 s->failed, s->first_failure,
                 s->cfg->exactly_once ? "; the transaction cannot be committed"
                 : s->checkpoints     ? "; a restart resumes from the last completed checkpoint"
                                      : "");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* A wait that started at `since` and is still going: say so every
 * WARN_EVERY_MS (short waits are ordinary backpressure, not news). */
static void warn_waiting(kafka_sink *s, const char *what, int64_t since)
{
    int64_t now = now_ms();
    if (now - since < WARN_EVERY_MS || (s->last_warn_ms && now - s->last_warn_ms < WARN_EVERY_MS))
        return;
    s->last_warn_ms = now;
    char last[512];
    sk_last_error(&s->base, last, sizeof last);
    s->host->log(s->ctx, SLUICE_LOG_WARN,
                 "%s for %llds: %" PRIu64 " message(s) not yet acknowledged by %s%s%s", what,
                 (long long)((now - since) / 1000), s->produced - s->reported, s->cfg->brokers,
                 last[0] ? "; last error: " : "", last);
}

/* Every message produced so far acknowledged (or failed), within the
 * delivery timeout; served in slices so a long wait is logged. */
static int wait_delivered(kafka_sink *s, char *err, size_t errlen)
{
    int64_t since = now_ms();
    int64_t deadline = since + s->cfg->delivery_timeout + 5000;
    while (rd_kafka_outq_len(s->rk) > 0) {
        rd_kafka_flush(s->rk, 1000);
        report_deliveries(s);
        if (rd_kafka_outq_len(s->rk) == 0)
            break;
        if (now_ms() > deadline) {
            snprintf(err, errlen,
                     "%d message(s) still not acknowledged by Kafka after delivery_timeout",
                     rd_kafka_outq_len(s->rk));
            return SLUICE_ERROR;
        }
        warn_waiting(s, "waiting for Kafka", since);
    }
    serve(s, 0);
    return check_health(s, err, errlen);
}

/* ---- transactions ------------------------------------------------------------- */

enum txn_op { TXN_INIT, TXN_BEGIN, TXN_COMMIT, TXN_ABORT, TXN_OFFSETS };

static const char *const txn_op_names[] = {"initialising transactions", "beginning a transaction",
                                           "committing the transaction",
                                           "aborting the transaction",
                                           "sending source offsets to the transaction"};

typedef struct offsets_job {
    rd_kafka_topic_partition_list_t *offsets;
    rd_kafka_consumer_group_metadata_t *group;
} offsets_job;

static rd_kafka_error_t *txn_run(kafka_sink *s, enum txn_op op, const offsets_job *job)
{
    switch (op) {
    case TXN_INIT:
        return rd_kafka_init_transactions(s->rk, (int)s->cfg->delivery_timeout);
    case TXN_BEGIN:
        return rd_kafka_begin_transaction(s->rk);
    case TXN_COMMIT:
        return rd_kafka_commit_transaction(s->rk, -1);
    case TXN_ABORT:
        return rd_kafka_abort_transaction(s->rk, -1);
    case TXN_OFFSETS:
        return rd_kafka_send_offsets_to_transaction(s->rk, job->offsets, job->group,
                                                    (int)s->txn_timeout_ms);
    }
    return NULL;
}

static void drop_pending(kafka_sink *s)
{
    s->pending.len = 0;
    s->npending = 0;
}

/* Abort the open transaction (deliberately: what it held is replayed
 * from the last checkpoint). */
static int txn_abort(kafka_sink *s, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + 2 * s->txn_timeout_ms;
    s->discarding = true;
    rd_kafka_error_t *e;
    while ((e = txn_run(s, TXN_ABORT, NULL)) && rd_kafka_error_is_retriable(e) &&
           now_ms() < deadline) {
        rd_kafka_error_destroy(e);
        sleep_ms(100);
    }
    serve(s, 0);
    s->discarding = false;
    s->txn_open = false;
    s->prepared = 0;
    s->txn_messages = 0;
    if (e) {
        snprintf(err, errlen, "aborting the Kafka transaction failed: %s",
                 rd_kafka_error_string(e));
        if (rd_kafka_error_is_fatal(e) || !rd_kafka_error_is_retriable(e))
            s->broken = true;
        rd_kafka_error_destroy(e);
        return SLUICE_ERROR;
    }
    /* The failures that made us abort are reported already; the purged
     * messages are no loss (they are replayed). */
    s->failed = 0;
    s->first_failure[0] = 0;
    count_transaction(s, false);
    return SLUICE_OK;
}

/* One transactional call, through librdkafka's error rules: retriable ->
 * again (until twice the transaction timeout); abortable -> abort the
 * transaction and fail; fatal or anything else -> the producer is done. */
static int txn_call(kafka_sink *s, enum txn_op op, const offsets_job *job, char *err,
                    size_t errlen)
{
    /* At start, unreachable brokers fail the run within the delivery
     * timeout rather than after minutes. */
    int64_t patience = op == TXN_INIT ? s->cfg->delivery_timeout : 2 * s->txn_timeout_ms;
    int64_t deadline = now_ms() + patience;
    for (;;) {
        rd_kafka_error_t *e = txn_run(s, op, job);
        report_deliveries(s);
        if (!e)
            return SLUICE_OK;
        if (rd_kafka_error_is_retriable(e) && now_ms() < deadline) {
            s->host->log(s->ctx, SLUICE_LOG_WARN, "%s: %s; retrying", txn_op_names[op],
                         rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            sleep_ms(200);
            continue;
        }
        char last[512];
        sk_last_error(&s->base, last, sizeof last);
        int n = rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR__TIMED_OUT
                    ? snprintf(err, errlen, "%s with brokers %s timed out after %llds%s%s",
                               txn_op_names[op], s->cfg->brokers, (long long)(patience / 1000),
                               last[0] ? "; last error: " : " (are the brokers reachable?)",
                               last)
                    : snprintf(err, errlen, "%s with brokers %s failed: %s", txn_op_names[op],
                               s->cfg->brokers, rd_kafka_error_string(e));
        size_t used = n < 0 ? 0 : (size_t)n < errlen ? (size_t)n : errlen - 1;
        if (rd_kafka_error_txn_requires_abort(e) && op != TXN_ABORT) {
            rd_kafka_error_destroy(e);
            char why[512];
            if (txn_abort(s, why, sizeof why) == SLUICE_OK)
                snprintf(err + used, errlen - used, "; the transaction was aborted");
            else
                snprintf(err + used, errlen - used, "; %s", why);
            drop_pending(s);
            return SLUICE_ERROR;
        }
        rd_kafka_resp_err_t code = rd_kafka_error_code(e);
        if (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
            code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED)
            snprintf(err + used, errlen - used,
                     " (another producer with transactional_id '%s' took over)",
                     s->transactional_id);
        s->broken = true;
        rd_kafka_error_destroy(e);
        return SLUICE_ERROR;
    }
}

static int ensure_txn(kafka_sink *s, char *err, size_t errlen)
{
    if (s->txn_open)
        return SLUICE_OK;
    if (txn_call(s, TXN_BEGIN, NULL, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    s->txn_open = true;
    s->txn_messages = 0;
    s->txn_records = 0;
    return SLUICE_OK;
}

/* ---- producing -------------------------------------------------------------- */

static size_t build_vus(kafka_sink *s, const out_msg *m)
{
    rd_kafka_vu_t *vu = s->vus;
    size_t n = 0;
    vu[n].vtype = RD_KAFKA_VTYPE_RKT;
    vu[n++].u.rkt = m->slot->rkt;
    vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
    vu[n].vtype = RD_KAFKA_VTYPE_KEY;
    vu[n].u.mem.ptr = (void *)m->key;
    vu[n++].u.mem.size = m->key ? m->key_len : 0;
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = (void *)m->value;
    vu[n++].u.mem.size = m->value ? m->value_len : 0;
    vu[n].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
    vu[n++].u.i64 = m->timestamp;
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = m->slot;
    for (size_t i = 0; i < s->nheaders; i++) {
        if (!s->hdr_val[i])
            continue;
        vu[n].vtype = RD_KAFKA_VTYPE_HEADER;
        vu[n].u.header.name = s->cfg->headers.keys[i];
        vu[n].u.header.val = s->hdr_val[i];
        vu[n++].u.header.size = (ssize_t)s->hdr_len[i];
    }
    return n;
}

/* Errors at produce time that belong to the one message (too large, a
 * topic named by a record that Kafka does not know): the record is
 * rejected and the run goes on. The configured topic missing is no
 * record's fault: that fails the run. */
static bool record_error(kafka_sink *s, const out_msg *m, rd_kafka_resp_err_t code)
{
    if (code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        return true;
    bool topic_problem = code == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                         code == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                         code == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
    return topic_problem && m->slot != s->default_slot;
}

/* Hands one message to librdkafka, waiting while its queue is full. rec is
 * the record it came from (NULL for a pending message). */
static int produce(kafka_sink *s, const out_msg *m, const sluice_record *rec, char *err,
                   size_t errlen)
{
    size_t n = build_vus(s, m);
    int64_t stop_deadline = 0, full_since = 0;
    for (;;) {
        rd_kafka_error_t *e = rd_kafka_produceva(s->rk, s->vus, n);
        if (!e) {
            s->txn_messages++;
            s->txn_records++;
            s->produced++;
            return SLUICE_OK;
        }
        rd_kafka_resp_err_t code = rd_kafka_error_code(e);
        if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_error_destroy(e);
            if (!full_since)
                full_since = now_ms();
            serve(s, POLL_FULL_MS);
            if (check_health(s, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            /* While the run drains, still give Kafka the delivery timeout
             * to take what is queued, then fail loudly. */
            if (s->host->stopping(s->ctx)) {
                if (!stop_deadline)
                    stop_deadline = now_ms() + s->cfg->delivery_timeout;
                else if (now_ms() > stop_deadline) {
                    snprintf(err, errlen,
                             "the run is stopping and Kafka (%s) has taken no message for "
                             "delivery_timeout; %d message(s) still queued",
                             s->cfg->brokers, rd_kafka_outq_len(s->rk));
                    return SLUICE_ERROR;
                }
            }
            warn_waiting(s, "the producer queue is full", full_since);
            continue;
        }
        count_error(s, code);
        char detail[512];
        snprintf(detail, sizeof detail, "cannot produce to topic '%s': %s", m->slot->name,
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        if (!record_error(s, m, code)) {
            snprintf(err, errlen, "%s", detail);
            return SLUICE_ERROR;
        }
        sluice_str raw = rec ? rec->raw : (sluice_str){m->value, m->value ? m->value_len : 0};
        char word[64];
        reason_word(code, word, sizeof word);
        if (s->host->reject(s->ctx, rec, raw, word, detail) == SLUICE_ERROR) {
            snprintf(err, errlen, "%s", detail);
            return SLUICE_ERROR;
        }
        return SLUICE_OK;
    }
}

/* ---- the pending list (exactly once, while prepared) --------------------------- */

/* Each pending message: a fixed head, then key, value and the present
 * headers' bytes. Lengths are -1 for absent. */
typedef struct pending_head {
    uint32_t slot;
    uint32_t nheaders;
    int64_t key_len;
    int64_t value_len;
    int64_t timestamp;
} pending_head;

static int pending_put(kafka_sink *s, const void *p, size_t n)
{
    return n ? s->host->buf_append(&s->pending, p, n) : SLUICE_OK;
}

static int pending_add(kafka_sink *s, const out_msg *m, char *err, size_t errlen)
{
    pending_head h = {
        .slot = m->slot->index,
        .nheaders = (uint32_t)s->nheaders,
        .key_len = m->key ? (int64_t)m->key_len : -1,
        .value_len = m->value ? (int64_t)m->value_len : -1,
        .timestamp = m->timestamp,
    };
    bool ok = pending_put(s, &h, sizeof h) == SLUICE_OK &&
              (!m->key || pending_put(s, m->key, m->key_len) == SLUICE_OK) &&
              (!m->value || pending_put(s, m->value, m->value_len) == SLUICE_OK);
    for (size_t i = 0; ok && i < s->nheaders; i++) {
        int64_t len = s->hdr_val[i] ? (int64_t)s->hdr_len[i] : -1;
        ok = pending_put(s, &len, sizeof len) == SLUICE_OK &&
             (!s->hdr_val[i] || pending_put(s, s->hdr_val[i], s->hdr_len[i]) == SLUICE_OK);
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory keeping records for the next transaction");
        return SLUICE_ERROR;
    }
    s->npending++;
    if (s->pending.len >= s->pending_warn_at) {
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "%" PRIu64 " records (%zu MiB) wait in memory for checkpoint %" PRIu64
                     " to complete",
                     s->npending, s->pending.len >> 20, s->prepared);
        s->pending_warn_at *= 2;
    }
    return SLUICE_OK;
}

/* Reads the pending message at *pos into m and the sink's header slots. */
static void pending_read(kafka_sink *s, size_t *pos, out_msg *m)
{
    const char *base = s->pending.data;
    pending_head h;
    memcpy(&h, base + *pos, sizeof h);
    *pos += sizeof h;
    m->slot = s->slots[h.slot];
    m->key = h.key_len >= 0 ? base + *pos : NULL;
    m->key_len = h.key_len >= 0 ? (size_t)h.key_len : 0;
    *pos += m->key_len;
    m->value = h.value_len >= 0 ? base + *pos : NULL;
    m->value_len = h.value_len >= 0 ? (size_t)h.value_len : 0;
    *pos += m->value_len;
    m->timestamp = h.timestamp;
    for (size_t i = 0; i < h.nheaders; i++) {
        int64_t len;
        memcpy(&len, base + *pos, sizeof len);
        *pos += sizeof len;
        s->hdr_val[i] = len >= 0 ? base + *pos : NULL;
        s->hdr_len[i] = len >= 0 ? (size_t)len : 0;
        *pos += s->hdr_len[i];
    }
}

/* Produces the pending list into the open transaction. */
static int pending_flush(kafka_sink *s, char *err, size_t errlen)
{
    if (!s->npending)
        return SLUICE_OK;
    if (ensure_txn(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    size_t pos = 0;
    while (pos < s->pending.len) {
        out_msg m;
        pending_read(s, &pos, &m);
        if (produce(s, &m, NULL, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    drop_pending(s);
    s->pending_warn_at = PENDING_WARN_BYTES;
    serve(s, 0);
    return SLUICE_OK;
}

/* ---- write ----------------------------------------------------------------- */

/* The record's topic; NULL when it names none and there is no default
 * (or, with err set, when out of memory). */
static topic_slot *topic_of(kafka_sink *s, const sluice_record *rec, char *err, size_t errlen)
{
    if (s->topic_field) {
        const sluice_value *v = sluice_get(rec, s->topic_field);
        if (v && v->type == SLUICE_STRING && v->u.s.len > 0)
            return slot_of(s, v->u.s.ptr, v->u.s.len, err, errlen);
    }
    return s->default_slot;
}

/* Builds the message for one record. SLUICE_RETRY: the record was
 * rejected (reported), go on with the next. */
static int message_of(kafka_sink *s, const sluice_record *rec, out_msg *m, char *err,
                      size_t errlen)
{
    const sluice_host *h = s->host;
    err[0] = 0;
    m->slot = topic_of(s, rec, err, errlen);
    if (!m->slot) {
        if (err[0])
            return SLUICE_ERROR;
        return h->reject(s->ctx, rec, rec->raw, "no_topic",
                         "the record has no string field naming its topic and the sink "
                         "has no default topic") == SLUICE_ERROR
                   ? SLUICE_ERROR
                   : SLUICE_RETRY;
    }
    if (s->key_field) {
        m->key = NULL;
        if (!value_bytes(sluice_get(rec, s->key_field), s->key_num, &m->key, &m->key_len))
            m->key = NULL;
    } else {
        m->key = rec->key.len ? rec->key.ptr : NULL;
        m->key_len = rec->key.len;
    }
    if (s->cfg->format == FORMAT_RAW) {
        const sluice_value *v = sluice_get(rec, s->value_field);
        if (!v)
            return h->reject(s->ctx, rec, rec->raw, "no_value",
                             "format raw needs a `value` field") == SLUICE_ERROR
                       ? SLUICE_ERROR
                       : SLUICE_RETRY;
        s->enc.len = 0;
        char num[40];
        if (value_bytes(v, num, &m->value, &m->value_len)) {
            if (m->value == num) { /* the number must outlive this frame */
                if (h->buf_append(&s->enc, num, m->value_len) != SLUICE_OK)
                    goto oom;
                m->value = s->enc.data;
            }
        } else {
            m->value = NULL; /* null: a tombstone */
            m->value_len = 0;
        }
    } else {
        s->enc.len = 0;
        int rc = h->encode(s->codec, rec, &s->enc);
        if (rc == SLUICE_ERROR) {
            snprintf(err, errlen, "cannot encode a record for Kafka");
            return SLUICE_ERROR;
        }
        if (rc != SLUICE_OK)
            return SLUICE_RETRY; /* the codec refused it and reported it */
        /* An empty buffer may have no memory yet; an empty value is still
         * a value, not a tombstone. */
        m->value = s->enc.data ? s->enc.data : "";
        m->value_len = s->enc.len;
    }
    for (size_t i = 0; i < s->nheaders; i++)
        if (!value_bytes(sluice_get(rec, s->header_fields[i]), s->hdr_num[i], &s->hdr_val[i],
                         &s->hdr_len[i]))
            s->hdr_val[i] = NULL;
    m->timestamp = rec->time != SLUICE_TIME_NONE && rec->time > 0 ? rec->time : 0;
    return SLUICE_OK;
oom:
    snprintf(err, errlen, "out of memory");
    return SLUICE_ERROR;
}

static int sink_write(void *self, const sluice_batch *in, char *err, size_t errlen)
{
    kafka_sink *s = self;
    if (check_health(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    for (uint32_t i = 0; i < in->count; i++) {
        const sluice_record *rec = &in->records[i];
        out_msg m;
        int rc = message_of(s, rec, &m, err, errlen);
        if (rc == SLUICE_RETRY)
            continue;
        if (rc != SLUICE_OK)
            return SLUICE_ERROR;
        if (s->prepared) {
            /* After barrier N, before commit(N): the next epoch's. */
            if (pending_add(s, &m, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
            continue;
        }
        if (s->cfg->exactly_once && ensure_txn(s, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        if (produce(s, &m, rec, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    serve(s, 0);
    return check_health(s, err, errlen);
}

/* ---- checkpoints ---------------------------------------------------------- */

typedef struct offsets_copy {
    offsets_job *jobs;
    size_t njobs, cap;
    bool oom;
} offsets_copy;

/* Under the registry's lock: copy, so the network calls happen outside it. */
static int copy_offsets(void *arg, const rd_kafka_topic_partition_list_t *offsets,
                        const rd_kafka_consumer_group_metadata_t *group)
{
    offsets_copy *c = arg;
    if (c->njobs == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        offsets_job *nj = realloc(c->jobs, cap * sizeof *nj);
        if (!nj) {
            c->oom = true;
            return -1;
        }
        c->jobs = nj;
        c->cap = cap;
    }
    void *buf = NULL;
    size_t size = 0;
    rd_kafka_consumer_group_metadata_t *copy = NULL;
    rd_kafka_error_t *e = rd_kafka_consumer_group_metadata_write(group, &buf, &size);
    if (!e)
        e = rd_kafka_consumer_group_metadata_read(&copy, buf, size);
    if (buf)
        rd_kafka_mem_free(NULL, buf);
    if (e) {
        rd_kafka_error_destroy(e);
        c->oom = true;
        return -1;
    }
    c->jobs[c->njobs].offsets = rd_kafka_topic_partition_list_copy(offsets);
    c->jobs[c->njobs].group = copy;
    c->njobs++;
    return 0;
}

static int send_offsets(kafka_sink *s, uint64_t epoch, char *err, size_t errlen)
{
    offsets_copy c = {0};
    int rc = sk_offsets_each(epoch, copy_offsets, &c);
    int status = SLUICE_OK;
    if (rc < 0 || c.oom) {
        snprintf(err, errlen, "cannot copy the Kafka sources' offsets of checkpoint %" PRIu64,
                 epoch);
        status = SLUICE_ERROR;
    }
    for (size_t i = 0; status == SLUICE_OK && i < c.njobs; i++) {
        if (c.jobs[i].offsets->cnt == 0)
            continue; /* a source with no partitions assigned yet */
        if (ensure_txn(s, err, errlen) != SLUICE_OK ||
            txn_call(s, TXN_OFFSETS, &c.jobs[i], err, errlen) != SLUICE_OK)
            status = SLUICE_ERROR;
        else
            s->host->log(s->ctx, SLUICE_LOG_DEBUG,
                         "checkpoint %" PRIu64 ": offsets of %d partition(s) sent in the "
                         "transaction",
                         epoch, c.jobs[i].offsets->cnt);
    }
    for (size_t i = 0; i < c.njobs; i++) {
        rd_kafka_topic_partition_list_destroy(c.jobs[i].offsets);
        rd_kafka_consumer_group_metadata_destroy(c.jobs[i].group);
    }
    free(c.jobs);
    return status;
}

/* Barrier N reached the sink: everything before it is in Kafka (at least
 * once) or in the open transaction with epoch N's source offsets (exactly
 * once), before the checkpoint's manifest is written. */
static int sink_prepare(void *self, uint64_t epoch, char *err, size_t errlen)
{
    kafka_sink *s = self;
    if (check_health(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    if (!s->cfg->exactly_once)
        return wait_delivered(s, err, errlen);
    /* Still prepared for an earlier epoch whose checkpoint failed: what
     * came since joins this transaction, which commit(epoch) covers. */
    if (pending_flush(s, err, errlen) != SLUICE_OK ||
        wait_delivered(s, err, errlen) != SLUICE_OK ||
        send_offsets(s, epoch, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    s->prepared = epoch;
    s->txn_messages = 0;
    return SLUICE_OK;
}

/* Checkpoint `epoch` completed: its transaction becomes visible, and what
 * waited in memory starts the next one. */
static int sink_commit(void *self, uint64_t epoch, char *err, size_t errlen)
{
    kafka_sink *s = self;
    if (!s->cfg->exactly_once)
        return SLUICE_OK;
    /* After flush(), a checkpoint newer than the last one prepared
     * completed without a barrier reaching this sink (its inputs had
     * ended): it covers everything the sink received. */
    bool covers_all = s->input_ended && epoch > s->prepared;
    if (covers_all) {
        if (pending_flush(s, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    } else if (!s->prepared || s->prepared > epoch) {
        return SLUICE_OK; /* nothing prepared up to epoch */
    }
    if (s->txn_open) {
        if (txn_call(s, TXN_COMMIT, NULL, err, errlen) != SLUICE_OK) {
            size_t used = strlen(err);
            snprintf(err + used, errlen - used,
                     "; checkpoint %" PRIu64 " completed, so its records may be missing from "
                     "Kafka",
                     epoch);
            return SLUICE_ERROR;
        }
        s->txn_open = false;
        count_transaction(s, true);
    }
    s->prepared = 0;
    s->txn_messages = 0;
    if (pending_flush(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    /* After the end of input, what went into the new transaction waits
     * for the final checkpoint: make its delivery errors known now. */
    return s->input_ended && s->txn_open ? wait_delivered(s, err, errlen) : SLUICE_OK;
}

/* The run ends and `epoch` will never complete: discard its transaction
 * and what waited for the next one; a restart replays both. */
static int sink_abort(void *self, uint64_t epoch, char *err, size_t errlen)
{
    kafka_sink *s = self;
    (void)epoch;
    if (!s->cfg->exactly_once)
        return SLUICE_OK;
    if (s->npending)
        s->host->log(s->ctx, SLUICE_LOG_INFO,
                     "dropping %" PRIu64 " records written after checkpoint %" PRIu64
                     " (a restart replays them)",
                     s->npending, epoch);
    drop_pending(s);
    if (!s->txn_open) {
        s->prepared = 0;
        return SLUICE_OK;
    }
    s->host->log(s->ctx, SLUICE_LOG_WARN,
                 "checkpoint %" PRIu64 " will not complete: aborting its Kafka transaction",
                 epoch);
    return txn_abort(s, err, errlen);
}

/* All input has arrived. At least once: wait for every acknowledgement.
 *
 * Exactly once: nothing is committed here. What the sink holds waits for
 * the run's final outcome, which the core delivers before the sink ends:
 * a commit() newer than the last prepared epoch covers it all (the final
 * checkpoint of bounded input completes with this sink's end state, its
 * barrier never reaching the sink); an abort(), or no outcome at all
 * (destroy), aborts it, and a restart replays it. Records produced since
 * the last prepare are flushed now, so delivery errors fail the run here
 * rather than at the commit. */
static int sink_flush(void *self, char *err, size_t errlen)
{
    kafka_sink *s = self;
    if (!s->rk)
        return SLUICE_OK;
    if (check_health(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    if (!s->cfg->exactly_once)
        return wait_delivered(s, err, errlen);
    s->input_ended = true;
    uint64_t waiting = s->txn_messages + s->npending;
    if (waiting)
        s->host->log(s->ctx, SLUICE_LOG_INFO,
                     "%" PRIu64 " records written since the last checkpoint wait for the final "
                     "checkpoint's commit",
                     waiting);
    return wait_delivered(s, err, errlen);
}

/* ---- create / start / destroy ------------------------------------------- */

static int64_t txn_timeout_for(int64_t interval_ms, int64_t delivery_timeout)
{
    /* A transaction spans one checkpoint interval and its checkpoint;
     * with only a final checkpoint, the whole run. */
    int64_t t = interval_ms > 0 ? 2 * interval_ms + 30000 : TXN_TIMEOUT_MAX_MS;
    if (t < TXN_TIMEOUT_MIN_MS)
        t = TXN_TIMEOUT_MIN_MS;
    if (t < delivery_timeout + 1000)
        t = delivery_timeout + 1000;
    if (t > TXN_TIMEOUT_MAX_MS)
        t = TXN_TIMEOUT_MAX_MS;
    return t;
}

static bool check_config(const sluice_host *host, sluice_ctx *ctx, const kafka_sink_config *cfg)
{
    bool ok = true;
    if (!cfg->brokers || !*cfg->brokers) {
        host->config_error(ctx, "brokers", "brokers must not be empty");
        ok = false;
    }
    if ((!cfg->topic || !*cfg->topic) && (!cfg->topic_field || !*cfg->topic_field)) {
        host->config_error(ctx, "topic", "the kafka sink needs a topic or a topic_field");
        ok = false;
    }
    if (cfg->delivery_timeout < 1 || cfg->delivery_timeout > INT32_MAX) {
        host->config_error(ctx, "delivery_timeout",
                           "delivery_timeout must be between 1ms and about 24 days");
        ok = false;
    }
    for (size_t i = 0; i < cfg->headers.count; i++)
        if (!*cfg->headers.keys[i] || !*cfg->headers.values[i]) {
            host->config_error(ctx, "headers",
                               "each header needs a name and the field it carries");
            ok = false;
        }
    if (cfg->exactly_once) {
        if (!SLUICE_HOST_HAS(host, checkpoint_interval)) {
            host->config_error(ctx, "exactly_once",
                               "exactly_once needs a sluice core with plugin ABI 1.2 or later");
            ok = false;
        } else if (host->checkpoint_interval(ctx) < 0) {
            host->config_error(ctx, "exactly_once",
                               "exactly_once needs checkpoints: add a checkpoint: section");
            ok = false;
        }
        const char *idem = sk_property(&cfg->properties, "enable.idempotence");
        if (idem && strcmp(idem, "true") != 0) {
            host->config_error(ctx, "properties",
                               "exactly_once needs enable.idempotence=true");
            ok = false;
        }
        if (sk_property(&cfg->properties, "transactional.id")) {
            host->config_error(ctx, "properties",
                               "set the transactional id with transactional_id, not "
                               "properties.transactional.id");
            ok = false;
        }
    } else if (sk_property(&cfg->properties, "transactional.id")) {
        host->config_error(ctx, "properties",
                           "transactional.id makes a transactional producer: use "
                           "exactly_once: true (and transactional_id) instead");
        ok = false;
    }
    if (!sk_check_properties(host, ctx, &cfg->properties))
        ok = false;
    return ok;
}

static void sink_destroy(void *self);

static int sink_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                       void **self, char *err, size_t errlen)
{
    const kafka_sink_config *cfg = config;
    *self = NULL;
    if (!check_config(host, ctx, cfg)) {
        snprintf(err, errlen, "invalid kafka sink options");
        return SLUICE_ERROR;
    }
    kafka_sink *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    sk_base_init(&s->base, host, ctx, cfg->brokers);
    s->host = host;
    s->ctx = ctx;
    s->cfg = cfg;
    *self = s;
    if (cfg->topic_field && *cfg->topic_field)
        s->topic_field = host->intern(cfg->topic_field, strlen(cfg->topic_field));
    if (cfg->key && *cfg->key)
        s->key_field = host->intern(cfg->key, strlen(cfg->key));
    s->value_field = host->intern("value", 5);
    s->nheaders = cfg->headers.count;
    s->header_fields = calloc(s->nheaders + 1, sizeof *s->header_fields);
    s->hdr_val = calloc(s->nheaders + 1, sizeof *s->hdr_val);
    s->hdr_len = calloc(s->nheaders + 1, sizeof *s->hdr_len);
    s->hdr_num = calloc(s->nheaders + 1, sizeof *s->hdr_num);
    s->vus = calloc(6 + s->nheaders, sizeof *s->vus);
    if (!s->header_fields || !s->hdr_val || !s->hdr_len || !s->hdr_num || !s->vus)
        goto oom;
    for (size_t i = 0; i < s->nheaders; i++)
        s->header_fields[i] =
            host->intern(cfg->headers.values[i], strlen(cfg->headers.values[i]));
    s->pending_warn_at = PENDING_WARN_BYTES;
    s->checkpoints = SLUICE_HOST_HAS(host, checkpoint_interval) && host->checkpoint_interval(ctx) >= 0;
    if (cfg->transactional_id && !cfg->exactly_once)
        host->log(ctx, SLUICE_LOG_WARN, "transactional_id is only used with exactly_once: true");
    if (cfg->exactly_once) {
        s->transactional_id = cfg->transactional_id && *cfg->transactional_id
                                  ? strdup(cfg->transactional_id)
                                  : sk_default_id(host, ctx);
        if (!s->transactional_id)
            goto oom;
        int64_t interval = host->checkpoint_interval(ctx);
        s->txn_timeout_ms = txn_timeout_for(interval, cfg->delivery_timeout);
        if (interval == 0)
            host->log(ctx, SLUICE_LOG_WARN,
                      "exactly_once with only a final checkpoint keeps one Kafka transaction "
                      "open for the whole run; Kafka aborts it after %llds",
                      (long long)(s->txn_timeout_ms / 1000));
    }
    return SLUICE_OK;
oom:
    snprintf(err, errlen, "out of memory");
    sink_destroy(s);
    *self = NULL;
    return SLUICE_ERROR;
}

static void define_metrics(kafka_sink *s)
{
    const sluice_host *h = s->host;
    if (!SLUICE_HOST_HAS(h, metric_new) || !SLUICE_HOST_HAS(h, series_set))
        return;
    static const char *const by_topic[] = {"topic", NULL};
    static const char *const by_reason[] = {"reason", NULL};
    static const char *const by_outcome[] = {"outcome", NULL};
    s->m_records_out = h->metric_new(s->ctx, "sluice_kafka_records_out_total", SLUICE_COUNTER,
                                     "Messages Kafka acknowledged, by topic", by_topic);
    s->m_bytes_out = h->metric_new(s->ctx, "sluice_kafka_bytes_out_total", SLUICE_COUNTER,
                                   "Key and value bytes of the messages Kafka acknowledged",
                                   by_topic);
    s->m_errors = h->metric_new(s->ctx, "sluice_kafka_produce_errors_total", SLUICE_COUNTER,
                                "Messages Kafka did not take, by librdkafka error",
                                by_reason);
    if (!s->m_records_out || !s->m_bytes_out)
        s->m_records_out = s->m_bytes_out = NULL;
    if (s->cfg->exactly_once) {
        s->m_txns = h->metric_new(s->ctx, "sluice_kafka_transactions_total", SLUICE_COUNTER,
                                  "Kafka transactions ended, by outcome", by_outcome);
        if (s->m_txns) {
            static const char *const committed[] = {"committed", NULL};
            static const char *const aborted[] = {"aborted", NULL};
            s->s_committed = h->metric_series(s->m_txns, committed);
            s->s_aborted = h->metric_series(s->m_txns, aborted);
        }
    }
}

static int sink_start(void *self, char *err, size_t errlen)
{
    kafka_sink *s = self;
    const kafka_sink_config *cfg = s->cfg;
    static const char *const codec_names[] = {"json", "lines"};
    if (cfg->format != FORMAT_RAW) {
        s->codec = s->host->codec_new(s->ctx, codec_names[cfg->format], err, errlen);
        if (!s->codec)
            return SLUICE_ERROR;
    }
    define_metrics(s);

    char timeout[32], txn_timeout[32];
    snprintf(timeout, sizeof timeout, "%lld", (long long)cfg->delivery_timeout);
    snprintf(txn_timeout, sizeof txn_timeout, "%lld", (long long)s->txn_timeout_ms);
    const char *defaults[16];
    size_t n = 0;
    defaults[n++] = "enable.idempotence";
    defaults[n++] = "true";
    defaults[n++] = "message.timeout.ms";
    defaults[n++] = timeout;
    /* Java's partitioner: keys land where Java producers put them. */
    defaults[n++] = "partitioner";
    defaults[n++] = "murmur2_random";
    if (cfg->exactly_once) {
        defaults[n++] = "transactional.id";
        defaults[n++] = s->transactional_id;
        defaults[n++] = "transaction.timeout.ms";
        defaults[n++] = txn_timeout;
    }
    defaults[n] = NULL;
    rd_kafka_conf_t *conf = sk_conf_new(&s->base, &cfg->properties, defaults, err, errlen);
    if (!conf)
        return SLUICE_ERROR;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char why[512];
    s->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        sk_redact(&s->base, why, sizeof why);
        snprintf(err, errlen, "cannot create a Kafka producer for %s: %s", cfg->brokers, why);
        return SLUICE_ERROR;
    }
    if (cfg->exactly_once) {
        const char *t = sk_property(&cfg->properties, "transaction.timeout.ms");
        if (t)
            s->txn_timeout_ms = strtoll(t, NULL, 10);
        if (txn_call(s, TXN_INIT, NULL, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        s->host->log(s->ctx, SLUICE_LOG_INFO,
                     "exactly once: transactional_id '%s', one transaction per checkpoint",
                     s->transactional_id);
    }
    if (cfg->topic && *cfg->topic) {
        s->default_slot = slot_of(s, cfg->topic, strlen(cfg->topic), err, errlen);
        if (!s->default_slot)
            return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static void close_producer(kafka_sink *s)
{
    char err[1024];
    if (s->txn_open && !s->broken) {
        /* No outcome reached the sink (the run failed): a restart replays
         * all of it from the last completed checkpoint. */
        if (s->txn_records || s->npending)
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "no checkpoint outcome reached the sink: aborting its open Kafka "
                         "transaction (%" PRIu64 " records) and dropping %" PRIu64
                         " waiting ones; a restart replays them",
                         s->txn_records, s->npending);
        if (txn_abort(s, err, sizeof err) != SLUICE_OK)
            s->host->log(s->ctx, SLUICE_LOG_WARN, "%s", err);
    } else if (!s->cfg->exactly_once && rd_kafka_outq_len(s->rk) > 0) {
        rd_kafka_flush(s->rk, DESTROY_FLUSH_MS);
    }
    serve(s, 0);
    if (s->produced > s->reported) {
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "%" PRIu64 " message(s) were not acknowledged by Kafka before the sink "
                     "closed",
                     s->produced - s->reported);
        s->discarding = true;
        rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        serve(s, 0);
    }
    for (uint32_t i = 0; i < s->nslots; i++)
        rd_kafka_topic_destroy(s->slots[i]->rkt);
    rd_kafka_destroy(s->rk);
    s->rk = NULL;
}

static void sink_destroy(void *self)
{
    kafka_sink *s = self;
    if (!s)
        return;
    if (s->rk)
        close_producer(s);
    for (uint32_t i = 0; i < s->nslots; i++) {
        free(s->slots[i]->name);
        free(s->slots[i]);
    }
    free(s->slots);
    free(s->dirty);
    free(s->slot_index);
    if (s->codec)
        s->host->codec_free(s->codec);
    s->host->buf_free(&s->enc);
    s->host->buf_free(&s->pending);
    free(s->header_fields);
    free(s->hdr_val);
    free(s->hdr_len);
    free(s->hdr_num);
    free(s->vus);
    free(s->transactional_id);
    sk_base_destroy(&s->base);
    free(s);
}

/* Delivery reports are otherwise served only while records flow: once
 * input pauses, the out counters and a late delivery error would wait for
 * the next batch. */
static int sink_tick(void *self, int64_t now_ms, char *err, size_t errlen)
{
    kafka_sink *s = self;
    (void)now_ms;
    if (!s->rk)
        return SLUICE_OK;
    serve(s, 0);
    return check_health(s, err, errlen);
}

const sluice_plugin_def sk_kafka_sink = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "kafka",
    .kind = SLUICE_SINK,
    .version = "1.0",
    .description = "records produced to Kafka, at least once or exactly once (transactions)",
    .next = NULL,
    .config_size = sizeof(kafka_sink_config),
    .options = kafka_sink_options,
    .create = sink_create,
    .start = sink_start,
    .destroy = sink_destroy,
    .write = sink_write,
    .flush = sink_flush,
    .prepare = sink_prepare,
    .commit = sink_commit,
    .abort = sink_abort,
    .on_tick = sink_tick,
};
