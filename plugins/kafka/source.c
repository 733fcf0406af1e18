/*
 * source.c — the `kafka` source: records from one or more Kafka topics,
 * read by a consumer-group member with librdkafka, with offsets that are
 * part of sluice's checkpoints.
 *
 * Positions. The consumer never commits on its own (enable.auto.commit and
 * enable.auto.offset.store are off) and never resets on its own
 * (auto.offset.reset=error): this file decides where every partition
 * starts and what the group learns. Per partition it tracks `next`, the
 * offset after the last message it consumed. Every poll() ends with its
 * partial batch emitted, and the rebalance callback emits it before it
 * does anything else, so whenever snapshot() runs (between polls, or from
 * inside the rebalance callback through host->checkpoint_now) `next` is
 * exactly the position after everything emitted.
 *
 * Where an assigned partition starts, first match wins:
 *   1. the offset restored from the checkpoint, once per partition after
 *      a restore (sluice's checkpoint is the source of truth: Kafka's mock
 *      does not even keep offsets sent in a transaction);
 *   2. the group's committed offset (rd_kafka_committed), or this
 *      member's own position when it last gave the partition up, if that
 *      is further: everything before it went through this pipeline, and
 *      the hand-over commit may have failed (librdkafka's mock refuses
 *      commits while the group rebalances; real brokers accept them);
 *   3. `start`: earliest or latest, resolved to a concrete offset right
 *      away (ListOffsets), so a checkpoint taken before the partition's
 *      first message still pins the position and a restart leaves no gap.
 * Partitions are assigned with explicit offsets, eager or cooperative
 * (incremental) protocol alike.
 *
 * What the group learns. commit(epoch) — a checkpoint completed — commits
 * that epoch's offsets asynchronously, so Kafka tooling shows the group's
 * lag; only partitions still assigned are committed, never a position that
 * would overwrite a newer owner's. On revoke (a rebalance hands partitions
 * to another member): with checkpoints on, ask for a checkpoint now and,
 * once it completed, commit the revoked partitions' positions
 * synchronously, so the new owner resumes exactly after what this member's
 * sinks have committed; if the checkpoint cannot complete, commit nothing
 * and the new owner resumes from the last completed one (duplicates, never
 * loss). With checkpoints off, revoked positions are committed directly.
 * At close the consumer leaves the group with a bounded wait (brokers may
 * be down at shutdown).
 *
 * Checkpoint blob: text, one line per partition currently assigned or
 * restored and not yet used: "topic\tpartition\tnext_offset\n" (Kafka
 * topic names are [a-zA-Z0-9._-], so tabs and newlines cannot occur).
 * Partitions handed to another member are left out: their position is in
 * the group now, and the new owner moves it on. Restored partitions get
 * the first dense indices, in blob order, so rec->partition stays stable
 * across restarts. snapshot() also publishes the assigned partitions'
 * offsets (common.h) for exactly-once sinks, and keeps them for commit().
 *
 * Partitions. Each (topic, partition) gets a dense index the first time it
 * is seen; records carry it in rec->partition, so the core keeps one
 * watermark per Kafka partition. Assignment declares and opens them,
 * revocation marks them done, so a partition owned by another member never
 * holds the watermark back.
 *
 * Errors. An offset that no longer exists (retention, a recreated topic)
 * fails the run, or with fail_on_data_loss: false skips to the nearest
 * available offset with a warning and sluice_kafka_data_loss_total (the
 * partition is assigned afresh there: after an offset error librdkafka
 * ignores seek()). A message with a null value (a tombstone) is rejected
 * as null_value in json and lines formats (raw keeps it as value: null). An
 * unknown topic fails the run. Brokers unreachable for connect_timeout
 * before the first contact fail the run; later outages are retried for
 * ever with a warning every 10 s.
 *
 * Speed. Messages are taken from librdkafka's consumer queue up to 1024 at
 * a time (rd_kafka_consume_batch_queue: measured ~1.25M messages/s on the
 * mock against ~0.85M/s with one consumer_poll per message; the first call
 * of a poll waits up to 100 ms, later ones do not). Rebalance callbacks
 * run inside that call, so a message dequeued in the same call as the
 * revocation of its partition is dropped by the ownership and position
 * checks rather than emitted. The payload is decoded straight from
 * librdkafka's buffer by the codec, which copies what it keeps into the
 * batch arena (the key is copied with host->str; format raw copies each
 * part); nothing is malloc()ed per message; per-topic counters are summed
 * locally and added once per poll; lag is read from librdkafka's cached
 * high watermarks once a second.
 */
#include <pthread.h>

#include "common.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_WAIT_MS 100               /* the first consumer_poll of a poll() */
#define MAX_BATCHES_PER_POLL 4
#define POLL_BUDGET_NS (100 * 1000000LL)
#define LAG_EVERY_NS (1000 * 1000000LL)
#define WARN_EVERY_NS (10 * 1000000000LL)
#define QUERY_TIMEOUT_MS 5000          /* committed offsets, watermarks, ListOffsets */
#define QUERY_ATTEMPTS 3
#define HANDOVER_CHECKPOINT_MS 60000
#define COMMIT_TIMEOUT_MS 10000
#define CLOSE_TIMEOUT_MS 10000
#define KEPT_EPOCHS 8
#define MSGS_PER_CALL 1024             /* messages taken from librdkafka at once */
#define TOPIC_NAME_MAX 249

enum { START_EARLIEST, START_LATEST };
enum { FORMAT_JSON, FORMAT_LINES, FORMAT_RAW };

static const char *const start_choices[] = {"earliest", "latest", NULL};
static const char *const format_choices[] = {"json", "lines", "raw", NULL};

typedef struct kafka_source_config {
    char *brokers;
    sluice_list topic;
    char *group_id;
    int start;
    int format;
    sluice_map properties;
    bool fail_on_data_loss;
    int64_t connect_timeout;
} kafka_source_config;

static const sluice_option kafka_source_options[] = {
    {.name = "brokers", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(kafka_source_config, brokers),
     .help = "bootstrap brokers, host:port[,host:port...]"},
    {.name = "topic", .type = SLUICE_OPT_LIST, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(kafka_source_config, topic),
     .help = "topic to read, or a list of them; a name starting with ^ is a regex"},
    {.name = "group_id", .type = SLUICE_OPT_STRING,
     .offset = offsetof(kafka_source_config, group_id),
     .help = "consumer group (default sluice.<pipeline>.<stage>)"},
    {.name = "start", .type = SLUICE_OPT_ENUM, .default_value = "earliest",
     .offset = offsetof(kafka_source_config, start), .choices = start_choices,
     .help = "where a partition starts with neither a checkpoint nor a committed group "
             "offset: earliest (the backlog too, what a stream processor on a fresh group "
             "usually wants) or latest (only what arrives from now on)"},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "json",
     .offset = offsetof(kafka_source_config, format), .choices = format_choices,
     .help = "json (a JSON object per message), lines (field `message`) or raw (fields "
             "key, value, headers, topic, partition, offset, timestamp)"},
    {.name = "properties", .type = SLUICE_OPT_MAP,
     .offset = offsetof(kafka_source_config, properties),
     .help = "librdkafka properties, e.g. security.protocol: SASL_SSL (consumer settings "
             "this source owns, such as enable.auto.commit, are refused)"},
    {.name = "fail_on_data_loss", .type = SLUICE_OPT_BOOL, .default_value = "true",
     .offset = offsetof(kafka_source_config, fail_on_data_loss),
     .help = "fail the run when offsets to read no longer exist (retention); false: skip "
             "ahead with a warning, counted in sluice_kafka_data_loss_total"},
    {.name = "connect_timeout", .type = SLUICE_OPT_DURATION, .default_value = "30s",
     .offset = offsetof(kafka_source_config, connect_timeout),
     .help = "fail the run when no broker answered for this long after start (0: wait "
             "for ever); later outages are always retried"},
    {.name = NULL},
};

/* librdkafka settings this source relies on; users get a config error. */
static const struct {
    const char *name, *why;
} owned_properties[] = {
    {"bootstrap.servers", "use the brokers option"},
    {"metadata.broker.list", "use the brokers option"},
    {"group.id", "use the group_id option"},
    {"enable.auto.commit", "it commits offsets itself, after each checkpoint"},
    {"auto.commit.enable", "it commits offsets itself, after each checkpoint"},
    {"enable.auto.offset.store", "it tracks offsets itself"},
    {"auto.offset.reset", "use start and fail_on_data_loss"},
    {NULL, NULL},
};

/* Counted per topic: a handful of series, whatever the partition count. */
typedef struct topic_stats {
    char *name;
    sluice_series *records_in, *bytes_in;
    uint64_t pending_records, pending_bytes; /* added to the series once per poll */
    struct topic_stats *next;
} topic_stats;

/* One (topic, partition) this source has owned or restored. */
typedef struct kpart {
    char *topic;
    int32_t partition;
    uint32_t index;          /* dense: rec->partition */
    int64_t next;            /* offset after the last one consumed; -1: not known */
    int64_t restored;        /* from the checkpoint, when restored_unused */
    int64_t assigned_at;     /* the offset given to assign(), maybe logical */
    int64_t revoked_at;      /* `next` when last revoked; -1: never owned here */
    bool restored_unused;
    bool assigned;
    bool declared_done;      /* told the core it holds no watermark back */
    topic_stats *stats;
    sluice_series *lag, *data_loss;
} kpart;

typedef struct kept_offsets {
    uint64_t epoch;
    rd_kafka_topic_partition_list_t *offsets;
} kept_offsets;

/* Log a recurring condition at most once per WARN_EVERY_NS. */
typedef struct ratelimit {
    int64_t last_ns;
    uint64_t suppressed;
} ratelimit;

typedef struct kafka_source {
    sk_base base; /* first: librdkafka's callbacks find it through the opaque */
    const kafka_source_config *cfg;
    const sluice_host *host;
    sluice_ctx *ctx;
    char *group_id;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue; /* the consumer's queue (messages, rebalances, errors) */
    rd_kafka_message_t *msgs[MSGS_PER_CALL];
    sluice_codec *codec;
    bool checkpoints;        /* the pipeline takes checkpoints */

    sluice_name n_key, n_value, n_headers, n_topic, n_partition, n_offset, n_timestamp;

    kpart **parts;           /* by dense index */
    size_t nparts, capparts;
    const rd_kafka_topic_t *cached_rkt; /* the last message's partition, for a fast lookup */
    int32_t cached_partition;
    kpart *cached;
    topic_stats *topics;

    sluice_batch *batch;
    unsigned emitted;

    int64_t started_ns;
    bool connected;          /* some broker answered since start */
    bool said_connected;     /* check_connection() has seen `connected` */
    bool in_poll;            /* emitting is allowed (the rebalance callback runs in poll) */
    bool paused;             /* the pipeline is full: assigned partitions are paused */
    bool closing;
    int64_t last_lag_ns;
    ratelimit connect_warn, down_warn, error_warn, commit_warn;

    bool failed;             /* a callback hit a condition that fails the run */
    char failure[1024];

    kept_offsets kept[KEPT_EPOCHS];
    rd_kafka_topic_partition_list_t *last_committed; /* of the newest commit() */

    sluice_metric *m_lag, *m_records, *m_bytes, *m_rebalances, *m_loss;
    sluice_series *s_assign, *s_revoke;
} kafka_source;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* True when the caller should log now; then *suppressed says how many
 * occurrences were not logged since the last time. */
static bool ratelimit_pass(ratelimit *rl, uint64_t *suppressed)
{
    int64_t now = now_ns();
    if (rl->last_ns && now - rl->last_ns < WARN_EVERY_NS) {
        rl->suppressed++;
        return false;
    }
    rl->last_ns = now;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}

/* Fail the run at the next chance: callbacks cannot return an error. */
static void set_failure(kafka_source *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_failure(kafka_source *s, const char *fmt, ...)
{
    if (s->failed)
        return; /* the first cause is the one to report */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof s->failure, fmt, ap);
    va_end(ap);
    s->failed = true;
}

/* ---- metrics (ABI 1.2; every function tolerates NULL) ----------------- */

static bool host_has_metrics(const sluice_host *h)
{
    return SLUICE_HOST_HAS(h, metric_new) && SLUICE_HOST_HAS(h, metric_series) &&
           SLUICE_HOST_HAS(h, series_add) && SLUICE_HOST_HAS(h, series_set);
}

static void define_metrics(kafka_source *s)
{
    const sluice_host *h = s->host;
    if (!host_has_metrics(h))
        return;
    static const char *const topic_partition[] = {"topic", "partition", NULL};
    static const char *const topic_only[] = {"topic", NULL};
    /* Not `kind`: the core labels every stage metric with kind="source". */
    static const char *const event[] = {"event", NULL};
    s->m_lag = h->metric_new(s->ctx, "sluice_kafka_consumer_lag", SLUICE_GAUGE,
                             "Messages in the partition after the source's position "
                             "(high watermark - next offset)",
                             topic_partition);
    s->m_records = h->metric_new(s->ctx, "sluice_kafka_records_in_total", SLUICE_COUNTER,
                                 "Messages read from Kafka", topic_only);
    s->m_bytes = h->metric_new(s->ctx, "sluice_kafka_bytes_in_total", SLUICE_COUNTER,
                               "Key and value bytes read from Kafka", topic_only);
    s->m_rebalances = h->metric_new(s->ctx, "sluice_kafka_rebalances_total", SLUICE_COUNTER,
                                    "Consumer group rebalances this source took part in",
                                    event);
    s->m_loss = h->metric_new(s->ctx, "sluice_kafka_data_loss_total", SLUICE_COUNTER,
                              "Messages skipped because their offsets no longer exist "
                              "(fail_on_data_loss: false)",
                              topic_partition);
    static const char *const assign[] = {"assign", NULL};
    static const char *const revoke[] = {"revoke", NULL};
    if (s->m_rebalances) {
        s->s_assign = h->metric_series(s->m_rebalances, assign);
        s->s_revoke = h->metric_series(s->m_rebalances, revoke);
    }
}

static sluice_series *series_of(kafka_source *s, sluice_metric *m, const char *topic,
                                int32_t partition)
{
    if (!m)
        return NULL;
    char num[16];
    snprintf(num, sizeof num, "%" PRId32, partition);
    /* partition < 0: a per-topic family */
    const char *values[] = {topic, partition >= 0 ? num : NULL, NULL};
    return s->host->metric_series(m, values);
}

static void series_add(kafka_source *s, sluice_series *series, double delta)
{
    if (series)
        s->host->series_add(series, delta);
}

static void series_set(kafka_source *s, sluice_series *series, double value)
{
    if (series)
        s->host->series_set(series, value);
}

/* ---- partitions and topics ------------------------------------------- */

static topic_stats *topic_stats_of(kafka_source *s, const char *name)
{
    for (topic_stats *t = s->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    topic_stats *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = strdup(name);
    if (!t->name) {
        free(t);
        return NULL;
    }
    t->records_in = series_of(s, s->m_records, name, -1);
    t->bytes_in = series_of(s, s->m_bytes, name, -1);
    t->next = s->topics;
    s->topics = t;
    return t;
}

static void flush_topic_counters(kafka_source *s)
{
    for (topic_stats *t = s->topics; t; t = t->next) {
        if (t->pending_records) {
            series_add(s, t->records_in, (double)t->pending_records);
            series_add(s, t->bytes_in, (double)t->pending_bytes);
            t->pending_records = t->pending_bytes = 0;
        }
    }
}

static kpart *part_find(kafka_source *s, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i]->partition == partition && strcmp(s->parts[i]->topic, topic) == 0)
            return s->parts[i];
    return NULL;
}

/* The entry of (topic, partition), made with the next dense index the
 * first time. NULL when out of memory. */
static kpart *part_get(kafka_source *s, const char *topic, int32_t partition)
{
    kpart *p = part_find(s, topic, partition);
    if (p)
        return p;
    if (s->nparts == s->capparts) {
        size_t cap = s->capparts ? s->capparts * 2 : 16;
        kpart **parts = realloc(s->parts, cap * sizeof *parts);
        if (!parts)
            return NULL;
        s->parts = parts;
        s->capparts = cap;
    }
    p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->topic = strdup(topic);
    if (!p->topic) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    p->index = (uint32_t)s->nparts;
    p->next = -1;
    p->restored = -1;
    p->revoked_at = -1;
    s->parts[s->nparts++] = p;
    return p;
}

/* Metric series and counters of a partition, made when it is first
 * assigned (restored partitions never assigned here stay without). */
static void part_instrument(kafka_source *s, kpart *p)
{
    if (!p->stats)
        p->stats = topic_stats_of(s, p->topic);
    if (!p->lag)
        p->lag = series_of(s, s->m_lag, p->topic, p->partition);
}

static void part_free(kpart *p)
{
    free(p->topic);
    free(p);
}

/* The entry a message belongs to; the previous message's in the common
 * case of runs from one partition. */
static kpart *part_of_message(kafka_source *s, const rd_kafka_message_t *m)
{
    if (m->rkt == s->cached_rkt && m->partition == s->cached_partition && s->cached)
        return s->cached;
    kpart *p = part_find(s, rd_kafka_topic_name(m->rkt), m->partition);
    if (p) {
        s->cached_rkt = m->rkt;
        s->cached_partition = m->partition;
        s->cached = p;
    }
    return p;
}

/* ---- batches ------------------------------------------------------------ */

static int emit_batch(kafka_source *s, char *err, size_t errlen)
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
    return SLUICE_OK;
}

/* A batch with room for one more record. */
static int room_for_one(kafka_source *s, char *err, size_t errlen)
{
    if (s->batch && s->batch->count >= s->batch->capacity &&
        emit_batch(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    if (!s->batch) {
        s->batch = s->host->batch_new(s->ctx);
        if (!s->batch) {
            snprintf(err, errlen, "out of memory");
            return SLUICE_ERROR;
        }
    }
    return SLUICE_OK;
}

/* ---- messages into records ----------------------------------------------- */

static int64_t timestamp_of(const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t type;
    int64_t ts = rd_kafka_message_timestamp(m, &type);
    return type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts < 0 ? SLUICE_TIME_NONE : ts;
}

/* Bytes of the JSON string literal for p[0..len), quotes included; invalid
 * UTF-8 becomes U+FFFD so the text stays valid JSON. With out NULL only
 * measures. */
static size_t utf8_length(const unsigned char *p, size_t len)
{
    unsigned char c = p[0];
    size_t need = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
    if (c >= 0xf5 || need == 0 || need > len)
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return need;
}

static size_t json_string(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
#define PUT(ch)            \
    do {                   \
        if (out)           \
            out[n] = (ch); \
        n++;               \
    } while (0)
    PUT('"');
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char)c);
            i++;
        } else if (c < 0x20) {
            PUT('\\');
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[c >> 4]);
            PUT(hex[c & 15]);
            i++;
        } else if (c < 0x80) {
            PUT((char)c);
            i++;
        } else {
            size_t k = utf8_length(p + i, len - i);
            if (k == 0) {
                /* U+FFFD */
                PUT((char)0xef);
                PUT((char)0xbf);
                PUT((char)0xbd);
                i++;
            } else {
                for (size_t j = 0; j < k; j++)
                    PUT((char)p[i + j]);
                i += k;
            }
        }
    }
    PUT('"');
#undef PUT
    return n;
}

/* The message's headers as JSON object text in b's arena: {"name":"value"}
 * with null for a header without a value. "{}" when there are none. */
static sluice_value headers_json(kafka_source *s, sluice_batch *b, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    sluice_value v;
    v.type = SLUICE_JSON;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || !hdrs) {
        v.u.s = s->host->str(b, "{}", 2);
        return v;
    }
    size_t size = 2, count = 0;
    const char *name;
    const void *val;
    size_t vlen;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) ==
                       RD_KAFKA_RESP_ERR_NO_ERROR;
         i++, count++)
        size += json_string(NULL, name, strlen(name)) + 1 +
                (val ? json_string(NULL, val, vlen) : 4) + 1;
    char *out = s->host->alloc(b, size);
    if (!out) {
        v.type = SLUICE_NULL;
        return v;
    }
    size_t n = 0;
    out[n++] = '{';
    for (size_t i = 0; i < count; i++) {
        rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen);
        if (i)
            out[n++] = ',';
        n += json_string(out + n, name, strlen(name));
        out[n++] = ':';
        if (val) {
            n += json_string(out + n, val, vlen);
        } else {
            memcpy(out + n, "null", 4);
            n += 4;
        }
    }
    out[n++] = '}';
    v.u.s.ptr = out;
    v.u.s.len = n;
    return v;
}

static sluice_value string_or_null(kafka_source *s, sluice_batch *b, const void *p, size_t len)
{
    if (!p)
        return sluice_null();
    return sluice_string(s->host->str(b, p, len));
}

/* format: raw — the message's parts as fields, nothing decoded. */
static int raw_record(kafka_source *s, sluice_batch *b, const rd_kafka_message_t *m,
                      const kpart *p)
{
    sluice_record *r = s->host->record_append(b);
    if (!r)
        return -1;
    const sluice_host *h = s->host;
    int bad = 0;
    bad |= h->set(b, r, s->n_key, string_or_null(s, b, m->key, m->key_len));
    bad |= h->set(b, r, s->n_value, string_or_null(s, b, m->payload, m->len));
    bad |= h->set(b, r, s->n_headers, headers_json(s, b, m));
    bad |= h->set(b, r, s->n_topic, sluice_string(h->str(b, p->topic, strlen(p->topic))));
    bad |= h->set(b, r, s->n_partition, sluice_int(m->partition));
    bad |= h->set(b, r, s->n_offset, sluice_int(m->offset));
    int64_t ts = timestamp_of(m);
    bad |= h->set(b, r, s->n_timestamp, ts == SLUICE_TIME_NONE ? sluice_null() : sluice_int(ts));
    return bad ? -1 : 0;
}

/* One message of partition p into the batch (or the errors output). */
static int handle_message(kafka_source *s, const rd_kafka_message_t *m, kpart *p,
                          char *err, size_t errlen)
{
    if (room_for_one(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    sluice_batch *b = s->batch;
    uint32_t before = b->count;
    if (s->cfg->format == FORMAT_RAW) {
        if (raw_record(s, b, m, p) != 0) {
            snprintf(err, errlen, "out of memory");
            return SLUICE_ERROR;
        }
    } else if (!m->payload) {
        /* A tombstone (null value) holds nothing to decode. */
        char detail[512];
        snprintf(detail, sizeof detail,
                 "topic %s partition %" PRId32 " offset %" PRId64 " has a null value",
                 p->topic, p->partition, m->offset);
        if (s->host->reject(s->ctx, NULL, (sluice_str){NULL, 0}, "null_value", detail) ==
            SLUICE_ERROR) {
            snprintf(err, errlen, "%s (on_error: fail)", detail);
            return SLUICE_ERROR;
        }
    } else if (s->host->decode(s->codec, b, m->payload, m->len) == SLUICE_ERROR) {
        snprintf(err, errlen,
                 "bad message at topic %s partition %" PRId32 " offset %" PRId64
                 " (on_error: fail)",
                 p->topic, p->partition, m->offset);
        return SLUICE_ERROR;
    }
    if (b->count > before) {
        sluice_record *r = &b->records[b->count - 1];
        r->time = timestamp_of(m);
        r->partition = p->index;
        if (m->key)
            r->key = s->host->str(b, m->key, m->key_len);
    }
    p->next = m->offset + 1;
    if (p->stats) {
        p->stats->pending_records++;
        p->stats->pending_bytes += m->len + m->key_len;
    }
    return SLUICE_OK;
}

/* ---- offsets ------------------------------------------------------------ */

/* The assigned partitions' positions (or, with only, those of `only`'s
 * partitions that are assigned), as a new list; NULL when empty. */
static rd_kafka_topic_partition_list_t *
positions(kafka_source *s, const rd_kafka_topic_partition_list_t *only)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    for (size_t i = 0; i < s->nparts; i++) {
        kpart *p = s->parts[i];
        if (!p->assigned || p->next < 0)
            continue;
        if (only && !rd_kafka_topic_partition_list_find(only, p->topic, p->partition))
            continue;
        if (!l)
            l = rd_kafka_topic_partition_list_new((int)(s->nparts - i));
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->next;
    }
    return l;
}

/* Commit and wait at most COMMIT_TIMEOUT_MS (a plain synchronous commit
 * can hang for as long as the coordinator is unreachable). */
static rd_kafka_resp_err_t commit_bounded(kafka_source *s,
                                          const rd_kafka_topic_partition_list_t *offsets)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(s->rk);
    rd_kafka_resp_err_t rc = rd_kafka_commit_queue(s->rk, offsets, q, NULL, NULL);
    if (rc == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_event_t *ev = NULL;
        int64_t deadline = now_ns() + COMMIT_TIMEOUT_MS * 1000000LL;
        rc = RD_KAFKA_RESP_ERR__TIMED_OUT;
        while (now_ns() < deadline) {
            ev = rd_kafka_queue_poll(q, 100);
            if (!ev)
                continue;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
                rc = rd_kafka_event_error(ev);
                rd_kafka_event_destroy(ev);
                break;
            }
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    return rc;
}

static void log_commit_failure(kafka_source *s, const char *what, const char *why)
{
    uint64_t suppressed;
    if (ratelimit_pass(&s->commit_warn, &suppressed))
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "cannot commit %s to group %s: %s (the next commit covers them; "
                     "%" PRIu64 " similar messages suppressed)",
                     what, s->group_id, why, suppressed);
}

/* Async commits (commit()) report here, from inside consumer_poll. */
static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    (void)offsets;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        log_commit_failure(opaque, "checkpointed offsets", rd_kafka_err2str(err));
}

static void kept_clear(kept_offsets *k)
{
    if (k->offsets)
        rd_kafka_topic_partition_list_destroy(k->offsets);
    k->offsets = NULL;
    k->epoch = 0;
}

/* ---- rebalances ----------------------------------------------------------- */

/* Group committed offsets for the partitions in `l` (offsets filled in;
 * RD_KAFKA_OFFSET_INVALID where the group has none). */
static rd_kafka_resp_err_t query_committed(kafka_source *s, rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_resp_err_t rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int attempt = 0; attempt < QUERY_ATTEMPTS; attempt++) {
        rc = rd_kafka_committed(s->rk, l, QUERY_TIMEOUT_MS);
        if (rc == RD_KAFKA_RESP_ERR_NO_ERROR)
            return rc;
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "cannot read the committed offsets of group %s (%s); retrying",
                     s->group_id, rd_kafka_err2str(rc));
    }
    return rc;
}

/* Logical BEGINNING/END offsets in `l` to concrete ones (ListOffsets takes
 * -2 and -1 as "earliest" and "latest" timestamps). Entries that fail keep
 * their logical offset. */
static void resolve_logical(kafka_source *s, rd_kafka_topic_partition_list_t *l)
{
    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_copy(l);
    if (rd_kafka_offsets_for_times(s->rk, q, QUERY_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < q->cnt; i++)
            if (q->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && q->elems[i].offset >= 0)
                l->elems[i].offset = q->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(q);
}

/* Tell the core which dense partitions are ours now: every assigned one
 * holds the watermark back, every other one does not. */
static void declare_partitions(kafka_source *s)
{
    const sluice_host *h = s->host;
    if (s->nparts == 0)
        return;
    h->partitions(s->ctx, (uint32_t)s->nparts);
    for (size_t i = 0; i < s->nparts; i++) {
        kpart *p = s->parts[i];
        if (p->assigned) {
            if (SLUICE_HOST_HAS(h, partition_open))
                h->partition_open(s->ctx, p->index);
            p->declared_done = false;
        } else if (!p->declared_done) {
            h->partition_done(s->ctx, p->index);
            p->declared_done = true;
        }
    }
}

static void log_assignment(kafka_source *s, const char *what,
                           const rd_kafka_topic_partition_list_t *l)
{
    char text[1024];
    size_t n = 0;
    text[0] = 0;
    for (int i = 0; i < l->cnt && n < sizeof text - 64; i++) {
        const rd_kafka_topic_partition_t *e = &l->elems[i];
        int w;
        if (e->offset >= 0)
            w = snprintf(text + n, sizeof text - n, "%s%s[%" PRId32 "]@%" PRId64, i ? " " : "",
                         e->topic, e->partition, e->offset);
        else
            w = snprintf(text + n, sizeof text - n, "%s%s[%" PRId32 "]%s", i ? " " : "",
                         e->topic, e->partition,
                         e->offset == RD_KAFKA_OFFSET_END ? "@latest"
                         : e->offset == RD_KAFKA_OFFSET_BEGINNING ? "@earliest"
                                                                  : "");
        if (w < 0)
            break;
        n += (size_t)w;
        if (i + 1 < l->cnt && n >= sizeof text - 64) {
            snprintf(text + n, sizeof text - n, " ... (%d in all)", l->cnt);
            break;
        }
    }
    s->host->log(s->ctx, SLUICE_LOG_INFO, "group %s: %s %s", s->group_id, what, text);
}

static void on_assign(kafka_source *s, rd_kafka_topic_partition_list_t *parts, bool cooperative)
{
    /* The start offset of each: checkpoint, then group, then `start`. */
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_topic_partition_list_t *ask = rd_kafka_topic_partition_list_new(assign->cnt);
    for (int i = 0; i < assign->cnt; i++) {
        rd_kafka_topic_partition_t *e = &assign->elems[i];
        kpart *p = part_get(s, e->topic, e->partition);
        if (!p) {
            set_failure(s, "out of memory");
            goto out;
        }
        if (p->restored_unused) {
            e->offset = p->restored;
            p->restored_unused = false;
        } else {
            e->offset = RD_KAFKA_OFFSET_INVALID;
            rd_kafka_topic_partition_list_add(ask, e->topic, e->partition);
        }
    }
    if (ask->cnt > 0) {
        rd_kafka_resp_err_t rc = query_committed(s, ask);
        if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Guessing a start could skip or repeat data: stop instead. */
            set_failure(s, "cannot read the committed offsets of group %s on %s: %s",
                        s->group_id, s->base.brokers, rd_kafka_err2str(rc));
            goto out;
        }
        rd_kafka_topic_partition_list_t *fresh = rd_kafka_topic_partition_list_new(ask->cnt);
        for (int i = 0; i < ask->cnt; i++) {
            const rd_kafka_topic_partition_t *c = &ask->elems[i];
            rd_kafka_topic_partition_t *e =
                rd_kafka_topic_partition_list_find(assign, c->topic, c->partition);
            const kpart *p = part_find(s, c->topic, c->partition);
            int64_t committed =
                c->err == RD_KAFKA_RESP_ERR_NO_ERROR && c->offset >= 0 ? c->offset : -1;
            /* Our own position when we gave it up wins over an older
             * committed one: everything before it went through this
             * pipeline, and the hand-over commit may have failed (the
             * mock refuses commits while the group rebalances). */
            if (p->revoked_at > committed)
                committed = p->revoked_at;
            if (committed >= 0)
                e->offset = committed;
            else
                rd_kafka_topic_partition_list_add(fresh, c->topic, c->partition)->offset =
                    s->cfg->start == START_EARLIEST ? RD_KAFKA_OFFSET_BEGINNING
                                                    : RD_KAFKA_OFFSET_END;
        }
        if (fresh->cnt > 0) {
            resolve_logical(s, fresh);
            for (int i = 0; i < fresh->cnt; i++)
                rd_kafka_topic_partition_list_find(assign, fresh->elems[i].topic,
                                                   fresh->elems[i].partition)
                    ->offset = fresh->elems[i].offset;
        }
        rd_kafka_topic_partition_list_destroy(fresh);
    }

    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative)
        error = rd_kafka_incremental_assign(s->rk, assign);
    else
        rc = rd_kafka_assign(s->rk, assign);
    if (error || rc) {
        set_failure(s, "cannot take the partitions assigned to group %s: %s", s->group_id,
                    error ? rd_kafka_error_string(error) : rd_kafka_err2str(rc));
        if (error)
            rd_kafka_error_destroy(error);
        goto out;
    }
    for (int i = 0; i < assign->cnt; i++) {
        kpart *p = part_find(s, assign->elems[i].topic, assign->elems[i].partition);
        p->assigned = true;
        p->assigned_at = assign->elems[i].offset;
        p->next = p->assigned_at >= 0 ? p->assigned_at : -1;
        part_instrument(s, p);
    }
    if (s->paused) /* while the pipeline is full, new partitions wait too */
        rd_kafka_pause_partitions(s->rk, assign);
    s->connected = true;
    declare_partitions(s);
    series_add(s, s->s_assign, 1);
    log_assignment(s, "assigned", assign);
out:
    rd_kafka_topic_partition_list_destroy(ask);
    rd_kafka_topic_partition_list_destroy(assign);
}

/* Make the revoked partitions' positions the group's, if what was read
 * from them is covered by a completed checkpoint (or checkpoints are off). */
static void hand_over(kafka_source *s, rd_kafka_topic_partition_list_t *parts)
{
    if (rd_kafka_assignment_lost(s->rk)) {
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "group %s: partitions lost (the group went on without this member); "
                     "their new owner resumes from the last committed offsets",
                     s->group_id);
        return;
    }
    rd_kafka_topic_partition_list_t *offsets = NULL;
    if (!s->checkpoints) {
        offsets = positions(s, parts);
    } else if (s->closing) {
        /* The final checkpoint's outcome arrived before close (or never
         * will): commit what the newest completed checkpoint covers. */
        for (int i = 0; s->last_committed && i < s->last_committed->cnt; i++) {
            const rd_kafka_topic_partition_t *e = &s->last_committed->elems[i];
            if (!rd_kafka_topic_partition_list_find(parts, e->topic, e->partition))
                continue;
            if (!offsets)
                offsets = rd_kafka_topic_partition_list_new(parts->cnt);
            rd_kafka_topic_partition_list_add(offsets, e->topic, e->partition)->offset = e->offset;
        }
    } else {
        char why[512] = "";
        int rc = SLUICE_HOST_HAS(s->host, checkpoint_now)
                     ? s->host->checkpoint_now(s->ctx, HANDOVER_CHECKPOINT_MS, why, sizeof why)
                     : SLUICE_RETRY;
        if (rc == SLUICE_OK) {
            offsets = positions(s, parts);
        } else {
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "group %s: handing partitions over without a checkpoint (%s); their "
                         "new owner resumes from the last completed one and may repeat records",
                         s->group_id, why[0] ? why : "checkpoints unavailable");
        }
    }
    if (!offsets)
        return;
    if (offsets->cnt > 0) {
        rd_kafka_resp_err_t rc = commit_bounded(s, offsets);
        if (rc == RD_KAFKA_RESP_ERR_NO_ERROR)
            s->host->log(s->ctx, SLUICE_LOG_INFO,
                         "committed the positions of revoked partitions to group %s",
                         s->group_id);
        else if (rc != RD_KAFKA_RESP_ERR__NO_OFFSET)
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "cannot commit the positions of revoked partitions to group %s: %s "
                         "(their next owner resumes from the last committed offsets and may "
                         "repeat records)",
                         s->group_id, rd_kafka_err2str(rc));
    }
    rd_kafka_topic_partition_list_destroy(offsets);
}

static void on_revoke(kafka_source *s, rd_kafka_topic_partition_list_t *parts, bool cooperative)
{
    /* What was read before is emitted before the checkpoint covers it. */
    if (s->in_poll) {
        char err[256];
        if (emit_batch(s, err, sizeof err) != SLUICE_OK)
            set_failure(s, "%s", err);
    }
    hand_over(s, parts);
    for (int i = 0; i < parts->cnt; i++) {
        kpart *p = part_find(s, parts->elems[i].topic, parts->elems[i].partition);
        if (p && p->assigned) {
            p->assigned = false;
            p->revoked_at = p->next;
        }
    }
    if (!s->closing)
        declare_partitions(s);
    s->cached = NULL;
    if (cooperative) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(s->rk, parts);
        if (error) {
            s->host->log(s->ctx, SLUICE_LOG_WARN, "cannot give up partitions: %s",
                         rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    } else {
        rd_kafka_assign(s->rk, NULL);
    }
    series_add(s, s->s_revoke, 1);
    log_assignment(s, "revoked", parts);
}

/* Runs inside consumer_poll (or the close loop) on the stage's thread. */
static void handle_rebalance(kafka_source *s, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *parts)
{
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(s->rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (s->closing) {
            rd_kafka_assign(s->rk, NULL); /* leaving anyway */
            return;
        }
        on_assign(s, parts, cooperative);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(s, parts, cooperative);
    } else {
        s->host->log(s->ctx, SLUICE_LOG_WARN, "group %s: rebalance failed: %s", s->group_id,
                     rd_kafka_err2str(err));
        if (!cooperative)
            rd_kafka_assign(s->rk, NULL);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)rk;
    handle_rebalance(opaque, err, parts);
}

/* ---- errors from the consumer ----------------------------------------------- */

/* Fetch p again from p->next. A partition stopped by an offset error
 * (auto.offset.reset=error) ignores seek(), so it is assigned afresh:
 * alone with the cooperative protocol, with the whole assignment (every
 * partition at its own position) with the eager one. */
static int restart_partition(kafka_source *s, kpart *p, char *err, size_t errlen)
{
    bool cooperative = strcmp(rd_kafka_rebalance_protocol(s->rk), "COOPERATIVE") == 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rc = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (cooperative) {
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        error = rd_kafka_incremental_unassign(s->rk, l);
        if (!error) {
            l->elems[0].offset = p->next;
            error = rd_kafka_incremental_assign(s->rk, l);
        }
    } else {
        for (size_t i = 0; i < s->nparts; i++) {
            kpart *q = s->parts[i];
            if (q->assigned)
                rd_kafka_topic_partition_list_add(l, q->topic, q->partition)->offset =
                    q->next >= 0 ? q->next : q->assigned_at;
        }
        rc = rd_kafka_assign(s->rk, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
    s->cached = NULL;
    if (!error && !rc)
        return SLUICE_OK;
    snprintf(err, errlen, "topic %s partition %" PRId32 ": cannot skip to offset %" PRId64 ": %s",
             p->topic, p->partition, p->next,
             error ? rd_kafka_error_string(error) : rd_kafka_err2str(rc));
    if (error)
        rd_kafka_error_destroy(error);
    return SLUICE_ERROR;
}

/* The offset asked for is gone (retention) or beyond the end (a recreated
 * topic): fail, or skip to the nearest offset that exists. */
static int data_loss(kafka_source *s, const rd_kafka_message_t *m, char *err, size_t errlen)
{
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
    kpart *p = m->rkt ? part_find(s, topic, m->partition) : NULL;
    int64_t wanted = m->offset >= 0 ? m->offset : p ? p->next : -1;
    int64_t low = -1, high = -1;
    rd_kafka_resp_err_t rc =
        rd_kafka_query_watermark_offsets(s->rk, topic, m->partition, &low, &high, QUERY_TIMEOUT_MS);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen,
                 "topic %s partition %" PRId32 ": offset %" PRId64
                 " is not available (%s), and the available range cannot be read: %s",
                 topic, m->partition, wanted, rd_kafka_message_errstr(m), rd_kafka_err2str(rc));
        return SLUICE_ERROR;
    }
    if (s->cfg->fail_on_data_loss) {
        snprintf(err, errlen,
                 "topic %s partition %" PRId32 ": offset %" PRId64
                 " is no longer available (earliest is %" PRId64 ", latest %" PRId64
                 "); set fail_on_data_loss: false to skip ahead",
                 topic, m->partition, wanted, low, high);
        return SLUICE_ERROR;
    }
    int64_t to = wanted >= 0 && wanted < low ? low : high;
    int64_t skipped = wanted >= 0 && wanted < low ? low - wanted : 0;
    s->host->log(s->ctx, SLUICE_LOG_WARN,
                 "topic %s partition %" PRId32 ": offset %" PRId64
                 " is no longer available (earliest is %" PRId64 ", latest %" PRId64
                 "); skipping to %" PRId64 " (%" PRId64 " messages lost)",
                 topic, m->partition, wanted, low, high, to, skipped);
    if (p) {
        if (!p->data_loss)
            p->data_loss = series_of(s, s->m_loss, topic, m->partition);
        series_add(s, p->data_loss, (double)skipped);
        p->next = to;
    }
    if (!p || restart_partition(s, p, err, errlen) != SLUICE_OK) {
        if (!p)
            snprintf(err, errlen, "topic %s partition %" PRId32 " is not assigned here", topic,
                     m->partition);
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int consumer_error(kafka_source *s, const rd_kafka_message_t *m, char *err, size_t errlen)
{
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
    switch (m->err) {
    case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        return SLUICE_OK;
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
        return data_loss(s, m, err, errlen);
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        if (topic)
            snprintf(err, errlen, "topic %s does not exist on %s", topic, s->base.brokers);
        else
            snprintf(err, errlen, "a subscribed topic does not exist on %s: %s",
                     s->base.brokers, rd_kafka_message_errstr(m));
        return SLUICE_ERROR;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__FATAL:
        snprintf(err, errlen, "%s%s%s", topic ? topic : "", topic ? ": " : "",
                 rd_kafka_message_errstr(m));
        return SLUICE_ERROR;
    default: {
        uint64_t suppressed;
        if (ratelimit_pass(&s->error_warn, &suppressed))
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "consumer error%s%s: %s (retrying; %" PRIu64 " similar suppressed)",
                         topic ? " on topic " : "", topic ? topic : "",
                         rd_kafka_message_errstr(m), suppressed);
        return SLUICE_OK;
    }
    }
}

/* Before the first contact: give up after connect_timeout. Later: warn
 * at a limited rate while no broker is reachable. */
static int check_connection(kafka_source *s, char *err, size_t errlen)
{
    if (atomic_load(&s->base.fatal)) {
        char why[512];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(s->rk, why, sizeof why);
        snprintf(err, errlen, "fatal Kafka error: %s", code ? why : "unknown");
        return SLUICE_ERROR;
    }
    if (!s->connected && rd_kafka_controllerid(s->rk, 0) >= 0)
        s->connected = true;
    if (s->connected && !s->said_connected) {
        /* Outages before the first contact are over, not ongoing. */
        s->said_connected = true;
        atomic_store(&s->base.all_brokers_down, 0);
        if (s->connect_warn.last_ns)
            s->host->log(s->ctx, SLUICE_LOG_INFO, "reached the brokers of %s after %" PRId64 " s",
                         s->base.brokers, (now_ns() - s->started_ns) / 1000000000);
    }
    char last[512];
    uint64_t suppressed;
    if (!s->connected) {
        int64_t waited_ms = (now_ns() - s->started_ns) / 1000000;
        if (!atomic_load(&s->base.all_brokers_down))
            return SLUICE_OK; /* still connecting */
        sk_last_error(&s->base, last, sizeof last);
        if (s->cfg->connect_timeout > 0 && waited_ms >= s->cfg->connect_timeout) {
            snprintf(err, errlen, "cannot reach any broker of %s after %" PRId64 "s: %s",
                     s->base.brokers, waited_ms / 1000, last[0] ? last : "no answer");
            return SLUICE_ERROR;
        }
        if (ratelimit_pass(&s->connect_warn, &suppressed))
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "cannot reach any broker of %s yet: %s (retrying%s)", s->base.brokers,
                         last[0] ? last : "no answer",
                         s->cfg->connect_timeout > 0 ? " until connect_timeout" : "");
        return SLUICE_OK;
    }
    if (atomic_exchange(&s->base.all_brokers_down, 0)) {
        sk_last_error(&s->base, last, sizeof last);
        if (ratelimit_pass(&s->down_warn, &suppressed))
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "all brokers of %s are unreachable: %s (retrying)", s->base.brokers,
                         last[0] ? last : "no answer");
    }
    return SLUICE_OK;
}

static void update_lag(kafka_source *s)
{
    int64_t now = now_ns();
    if (!s->m_lag || now - s->last_lag_ns < LAG_EVERY_NS)
        return;
    s->last_lag_ns = now;
    for (size_t i = 0; i < s->nparts; i++) {
        kpart *p = s->parts[i];
        int64_t low, high;
        if (!p->assigned || p->next < 0 || !p->lag)
            continue;
        if (rd_kafka_get_watermark_offsets(s->rk, p->topic, p->partition, &low, &high) !=
                RD_KAFKA_RESP_ERR_NO_ERROR ||
            high < 0)
            continue;
        series_set(s, p->lag, (double)(high > p->next ? high - p->next : 0));
    }
}

/* ---- lifecycle ------------------------------------------------------------ */

static bool valid_topic_name(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > TOPIC_NAME_MAX || strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool check_options(const sluice_host *host, sluice_ctx *ctx, const kafka_source_config *cfg)
{
    bool ok = true;
    if (!cfg->brokers || !*cfg->brokers) {
        host->config_error(ctx, "brokers", "must name at least one host:port");
        ok = false;
    }
    if (cfg->topic.count == 0) {
        host->config_error(ctx, "topic", "at least one topic is needed");
        ok = false;
    }
    for (size_t i = 0; i < cfg->topic.count; i++) {
        const char *t = cfg->topic.items[i];
        bool regex = t[0] == '^' && !strpbrk(t, "\t\n");
        if (!regex && !valid_topic_name(t)) {
            host->config_error(ctx, "topic",
                               "'%s' is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -; "
                               "a regex starts with ^)",
                               t);
            ok = false;
        }
    }
    if (cfg->group_id && !*cfg->group_id) {
        host->config_error(ctx, "group_id", "must not be empty");
        ok = false;
    }
    if (cfg->connect_timeout < 0) {
        host->config_error(ctx, "connect_timeout", "must not be negative");
        ok = false;
    }
    /* Properties this source must own, then librdkafka's word on the rest. */
    for (size_t i = 0; i < cfg->properties.count; i++) {
        const char *name = cfg->properties.keys[i];
        for (size_t k = 0; owned_properties[k].name; k++) {
            if (strcmp(name, owned_properties[k].name) != 0)
                continue;
            char option[300];
            snprintf(option, sizeof option, "properties.%s", name);
            host->config_error(ctx, option, "the kafka source sets this itself; %s",
                               owned_properties[k].why);
            ok = false;
        }
    }
    if (!sk_check_properties(host, ctx, &cfg->properties))
        ok = false;
    return ok;
}

static void source_destroy(void *self);

static int source_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                         void **self, char *err, size_t errlen)
{
    const kafka_source_config *cfg = config;
    if (!check_options(host, ctx, cfg)) {
        snprintf(err, errlen, "invalid kafka source options");
        return SLUICE_ERROR;
    }
    kafka_source *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    sk_base_init(&s->base, host, ctx, cfg->brokers);
    s->cfg = cfg;
    s->host = host;
    s->ctx = ctx;
    s->group_id = cfg->group_id ? strdup(cfg->group_id) : sk_default_id(host, ctx);
    if (!s->group_id) {
        source_destroy(s);
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    s->checkpoints = SLUICE_HOST_HAS(host, checkpoint_interval) && host->checkpoint_interval(ctx) >= 0;
    if (cfg->format == FORMAT_RAW) {
        s->n_key = host->intern("key", 3);
        s->n_value = host->intern("value", 5);
        s->n_headers = host->intern("headers", 7);
        s->n_topic = host->intern("topic", 5);
        s->n_partition = host->intern("partition", 9);
        s->n_offset = host->intern("offset", 6);
        s->n_timestamp = host->intern("timestamp", 9);
    }
    *self = s;
    return SLUICE_OK;
}

static int source_start(void *self, char *err, size_t errlen)
{
    kafka_source *s = self;
    if (s->cfg->format != FORMAT_RAW) {
        s->codec = s->host->codec_new(s->ctx, s->cfg->format == FORMAT_JSON ? "json" : "lines",
                                      err, errlen);
        if (!s->codec)
            return SLUICE_ERROR;
    }
    define_metrics(s);
    /* librdkafka prefetches up to 64 MiB by default; within memory_limit
     * it gets an eighth (properties, applied after these, may say more). */
    char prefetch_kib[32] = "";
    int64_t limit = SLUICE_HOST_HAS(s->host, memory_limit) ? s->host->memory_limit(s->ctx) : 0;
    if (limit > 0) {
        int64_t kib = limit / 8 / 1024;
        snprintf(prefetch_kib, sizeof prefetch_kib, "%lld",
                 (long long)(kib < 1024 ? 1024 : kib > 65536 ? 65536 : kib));
    }
    const char *const defaults[] = {
        "group.id", s->group_id,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "auto.offset.reset", "error",
        "enable.partition.eof", "false",
        "client.id", "sluice",
        prefetch_kib[0] ? "queued.max.messages.kbytes" : NULL, prefetch_kib,
        NULL,
    };
    rd_kafka_conf_t *conf = sk_conf_new(&s->base, &s->cfg->properties, defaults, err, errlen);
    if (!conf)
        return SLUICE_ERROR;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    char why[512];
    s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!s->rk) {
        rd_kafka_conf_destroy(conf);
        sk_redact(&s->base, why, sizeof why);
        snprintf(err, errlen, "cannot create a Kafka consumer: %s", why);
        return SLUICE_ERROR;
    }
    rd_kafka_poll_set_consumer(s->rk);
    s->queue = rd_kafka_queue_get_consumer(s->rk);
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new((int)s->cfg->topic.count);
    for (size_t i = 0; i < s->cfg->topic.count; i++)
        rd_kafka_topic_partition_list_add(topics, s->cfg->topic.items[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t rc = rd_kafka_subscribe(s->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot subscribe: %s", rd_kafka_err2str(rc));
        return SLUICE_ERROR;
    }
    s->started_ns = now_ns();
    s->host->log(s->ctx, SLUICE_LOG_INFO, "consuming %s%s from %s as group %s",
                 s->cfg->topic.items[0], s->cfg->topic.count > 1 ? " (and more)" : "",
                 s->base.brokers, s->group_id);
    return SLUICE_OK;
}

static bool budget_spent(kafka_source *s, int64_t started)
{
    return s->emitted >= MAX_BATCHES_PER_POLL || now_ns() - started > POLL_BUDGET_NS ||
           s->host->stopping(s->ctx);
}

/* One message or consumer error, in queue order. */
static int handle_one(kafka_source *s, const rd_kafka_message_t *m, bool *did_work, char *err,
                      size_t errlen)
{
    if (m->err)
        return consumer_error(s, m, err, errlen);
    s->connected = true;
    kpart *p = part_of_message(s, m);
    /* Only partitions we own, and nothing before our position (a message
     * fetched before a seek or re-assignment, or dequeued in the same
     * batch as a rebalance that revoked its partition). */
    if (!p || !p->assigned || (p->next >= 0 && m->offset < p->next))
        return SLUICE_OK;
    *did_work = true;
    return handle_message(s, m, p, err, errlen);
}

static int source_poll(void *self, char *err, size_t errlen)
{
    kafka_source *s = self;
    int64_t started = now_ns();
    bool did_work = false;
    int rc = SLUICE_OK;
    s->emitted = 0;
    s->in_poll = true;
    for (unsigned round = 0; rc == SLUICE_OK; round++) {
        /* Batches of messages: about a third of the cost of one
         * consumer_poll per message. Rebalance callbacks run inside. */
        ssize_t got = rd_kafka_consume_batch_queue(s->queue, round == 0 ? POLL_WAIT_MS : 0,
                                                   s->msgs, MSGS_PER_CALL);
        ssize_t i = 0;
        if (s->failed) {
            snprintf(err, errlen, "%s", s->failure);
            rc = SLUICE_ERROR;
        }
        for (; i < got && rc == SLUICE_OK; i++) {
            rc = handle_one(s, s->msgs[i], &did_work, err, errlen);
            rd_kafka_message_destroy(s->msgs[i]);
        }
        for (; i < got; i++) /* the run fails: the rest is read again after a restart */
            rd_kafka_message_destroy(s->msgs[i]);
        if (got <= 0 || budget_spent(s, started))
            break;
    }
    s->in_poll = false;
    if (rc == SLUICE_OK)
        rc = emit_batch(s, err, errlen);
    flush_topic_counters(s);
    if (rc == SLUICE_OK)
        rc = check_connection(s, err, errlen);
    if (rc != SLUICE_OK)
        return SLUICE_ERROR;
    update_lag(s);
    return did_work ? SLUICE_OK : SLUICE_RETRY;
}

/* The pipeline is full (or has room again). Pausing the assigned
 * partitions stops the fetcher and drops what librdkafka prefetched for
 * them; resuming fetches again from the position after the last message
 * this source took, so nothing is skipped (and the position check in
 * handle_one() drops anything already seen). Polls go on meanwhile, which
 * keeps the member in its group (max.poll.interval.ms) and rebalances
 * served. */
static int source_pause(void *self, bool paused, char *err, size_t errlen)
{
    kafka_source *s = self;
    s->paused = paused;
    if (!s->rk)
        return SLUICE_OK;
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t rc = rd_kafka_assignment(s->rk, &parts);
    if (rc == RD_KAFKA_RESP_ERR_NO_ERROR && parts->cnt > 0)
        rc = paused ? rd_kafka_pause_partitions(s->rk, parts)
                    : rd_kafka_resume_partitions(s->rk, parts);
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "cannot %s the assigned partitions: %s",
                 paused ? "pause" : "resume", rd_kafka_err2str(rc));
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* Leave the group: revoke (and hand over) through the rebalance handler,
 * but wait at most CLOSE_TIMEOUT_MS, since brokers may be gone. */
static void close_consumer(kafka_source *s)
{
    s->closing = true;
    rd_kafka_queue_t *q = rd_kafka_queue_new(s->rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(s->rk, q);
    if (error) {
        s->host->log(s->ctx, SLUICE_LOG_WARN, "cannot leave group %s cleanly: %s", s->group_id,
                     rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else {
        int64_t deadline = now_ns() + CLOSE_TIMEOUT_MS * 1000000LL;
        while (!rd_kafka_consumer_closed(s->rk)) {
            if (now_ns() >= deadline) {
                s->host->log(s->ctx, SLUICE_LOG_WARN,
                             "group %s: leaving the group timed out after %d s", s->group_id,
                             CLOSE_TIMEOUT_MS / 1000);
                break;
            }
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
            if (!ev)
                continue;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                handle_rebalance(s, rd_kafka_event_error(ev),
                                 rd_kafka_event_topic_partition_list(ev));
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy_flags(s->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    s->rk = NULL;
}

static void source_destroy(void *self)
{
    kafka_source *s = self;
    if (!s)
        return;
    if (s->batch)
        s->host->batch_free(s->batch);
    if (s->queue)
        rd_kafka_queue_destroy(s->queue);
    if (s->rk) {
        sk_offsets_forget(s->rk);
        close_consumer(s);
    }
    for (int i = 0; i < KEPT_EPOCHS; i++)
        kept_clear(&s->kept[i]);
    if (s->last_committed)
        rd_kafka_topic_partition_list_destroy(s->last_committed);
    for (size_t i = 0; i < s->nparts; i++)
        part_free(s->parts[i]);
    free(s->parts);
    while (s->topics) {
        topic_stats *t = s->topics;
        s->topics = t->next;
        free(t->name);
        free(t);
    }
    if (s->codec)
        s->host->codec_free(s->codec);
    free(s->group_id);
    sk_base_destroy(&s->base);
    free(s);
}

/* ---- checkpoints ------------------------------------------------------------ */

static bool in_checkpoint(const kpart *p)
{
    return (p->assigned && p->next >= 0) || p->restored_unused;
}

static int source_snapshot(void *self, uint64_t epoch, void **blob, size_t *len, char *err,
                           size_t errlen)
{
    kafka_source *s = self;
    size_t size = 1;
    for (size_t i = 0; i < s->nparts; i++)
        if (in_checkpoint(s->parts[i]))
            size += strlen(s->parts[i]->topic) + 2 * 24;
    char *out = malloc(size);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    size_t n = 0;
    for (size_t i = 0; i < s->nparts; i++) {
        const kpart *p = s->parts[i];
        if (in_checkpoint(p))
            n += (size_t)snprintf(out + n, size - n, "%s\t%" PRId32 "\t%" PRId64 "\n", p->topic,
                                  p->partition, p->assigned ? p->next : p->restored);
    }
    *blob = out;
    *len = n;

    if (epoch == 0 || !s->rk)
        return SLUICE_OK;
    /* For exactly-once sinks, and for commit(epoch). */
    rd_kafka_topic_partition_list_t *offsets = positions(s, NULL);
    if (!offsets)
        offsets = rd_kafka_topic_partition_list_new(0);
    sk_offsets_publish(s->rk, epoch, offsets);
    kept_offsets *slot = &s->kept[0];
    for (int i = 1; i < KEPT_EPOCHS; i++)
        if (s->kept[i].epoch < slot->epoch)
            slot = &s->kept[i];
    kept_clear(slot);
    slot->epoch = epoch;
    slot->offsets = offsets;
    return SLUICE_OK;
}

/* One "topic\tpartition\toffset" line; false when it is not one. */
static bool parse_line(char *line, char **topic, int32_t *partition, int64_t *offset)
{
    char *tab1 = strchr(line, '\t');
    char *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
    if (!tab2 || strchr(tab2 + 1, '\t'))
        return false;
    *tab1 = *tab2 = 0;
    char *end;
    if (!valid_topic_name(line) || !tab1[1] || tab1[1] == '-' || !tab2[1] || tab2[1] == '-')
        return false;
    errno = 0;
    long long part = strtoll(tab1 + 1, &end, 10);
    if (*end || errno || part > INT32_MAX)
        return false;
    long long off = strtoll(tab2 + 1, &end, 10);
    if (*end || errno)
        return false;
    *topic = line;
    *partition = (int32_t)part;
    *offset = off;
    return true;
}

static int source_restore(void *self, const void *blob, size_t len, char *err, size_t errlen)
{
    kafka_source *s = self;
    /* Before start(): nothing is assigned yet; a second restore replaces. */
    for (size_t i = 0; i < s->nparts; i++)
        part_free(s->parts[i]);
    s->nparts = 0;
    char *text = malloc(len + 1);
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    memcpy(text, blob, len);
    text[len] = 0;
    int rc = SLUICE_OK;
    unsigned lineno = 0;
    if (len && text[len - 1] != '\n') {
        snprintf(err, errlen, "damaged kafka source checkpoint: it does not end with a newline");
        rc = SLUICE_ERROR;
    }
    if (memchr(text, 0, len)) {
        snprintf(err, errlen, "damaged kafka source checkpoint: it holds a NUL byte");
        rc = SLUICE_ERROR;
    }
    for (char *line = text; rc == SLUICE_OK && *line;) {
        char *nl = strchr(line, '\n');
        *nl = 0;
        lineno++;
        char *topic;
        int32_t partition;
        int64_t offset;
        if (!parse_line(line, &topic, &partition, &offset)) {
            snprintf(err, errlen,
                     "damaged kafka source checkpoint: line %u is not topic<TAB>partition<TAB>offset",
                     lineno);
            rc = SLUICE_ERROR;
            break;
        }
        if (part_find(s, topic, partition)) {
            snprintf(err, errlen, "damaged kafka source checkpoint: %s[%" PRId32 "] twice (line %u)",
                     topic, partition, lineno);
            rc = SLUICE_ERROR;
            break;
        }
        kpart *p = part_get(s, topic, partition);
        if (!p) {
            snprintf(err, errlen, "out of memory");
            rc = SLUICE_ERROR;
            break;
        }
        p->restored = offset;
        p->restored_unused = true;
        line = nl + 1;
    }
    free(text);
    if (rc != SLUICE_OK) {
        for (size_t i = 0; i < s->nparts; i++)
            part_free(s->parts[i]);
        s->nparts = 0;
        return rc;
    }
    if (s->nparts)
        s->host->log(s->ctx, SLUICE_LOG_INFO, "restored the positions of %zu partitions",
                     s->nparts);
    return SLUICE_OK;
}

/* Checkpoint `epoch` is complete: its offsets become the group's (every
 * epoch up to it is covered). Asynchronous; failures are logged by
 * offset_commit_cb. */
static int source_commit(void *self, uint64_t epoch, char *err, size_t errlen)
{
    kafka_source *s = self;
    (void)err;
    (void)errlen;
    kept_offsets *best = NULL;
    for (int i = 0; i < KEPT_EPOCHS; i++)
        if (s->kept[i].offsets && s->kept[i].epoch <= epoch &&
            (!best || s->kept[i].epoch > best->epoch))
            best = &s->kept[i];
    if (!best || !s->rk)
        return SLUICE_OK;
    rd_kafka_topic_partition_list_t *offsets = best->offsets;
    best->offsets = NULL;
    for (int i = 0; i < KEPT_EPOCHS; i++)
        if (s->kept[i].epoch <= epoch)
            kept_clear(&s->kept[i]);
    if (s->last_committed)
        rd_kafka_topic_partition_list_destroy(s->last_committed);
    s->last_committed = offsets;
    /* Never move a partition another member owns now. */
    rd_kafka_topic_partition_list_t *mine = positions(s, NULL);
    rd_kafka_topic_partition_list_t *send = rd_kafka_topic_partition_list_new(offsets->cnt);
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offsets->elems[i];
        if (mine && rd_kafka_topic_partition_list_find(mine, e->topic, e->partition))
            rd_kafka_topic_partition_list_add(send, e->topic, e->partition)->offset = e->offset;
    }
    if (send->cnt > 0) {
        rd_kafka_resp_err_t rc = rd_kafka_commit(s->rk, send, 1);
        if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_commit_failure(s, "checkpointed offsets", rd_kafka_err2str(rc));
    }
    rd_kafka_topic_partition_list_destroy(send);
    if (mine)
        rd_kafka_topic_partition_list_destroy(mine);
    return SLUICE_OK;
}

const sluice_plugin_def sk_kafka_source = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "kafka",
    .kind = SLUICE_SOURCE,
    .version = "1.0",
    .description = "records from Kafka topics, as a consumer group member, offsets checkpointed",
    .next = &sk_kafka_sink,
    .config_size = sizeof(kafka_source_config),
    .options = kafka_source_options,
    .create = source_create,
    .start = source_start,
    .destroy = source_destroy,
    .poll = source_poll,
    .snapshot = source_snapshot,
    .restore = source_restore,
    .commit = source_commit,
    .pause = source_pause,
};
