/*
 * common.c — librdkafka configuration, logging and errors shared by the
 * Kafka source and sink, and the registry that hands source offsets to
 * exactly-once sinks; see common.h.
 */
#include "common.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sk_base_init(sk_base *b, const sluice_host *host, sluice_ctx *ctx, const char *brokers)
{
    b->host = host;
    b->ctx = ctx;
    b->brokers = brokers;
    atomic_init(&b->all_brokers_down, 0);
    atomic_init(&b->fatal, 0);
    b->last_error[0] = 0;
    pthread_mutex_init(&b->error_lock, NULL);
    b->secrets = NULL;
    b->nsecrets = 0;
}

static void free_secrets(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        explicit_bzero(list[i], strlen(list[i]));
        free(list[i]);
    }
    free(list);
}

void sk_base_destroy(sk_base *b)
{
    free_secrets(b->secrets, b->nsecrets);
    b->secrets = NULL;
    b->nsecrets = 0;
    pthread_mutex_destroy(&b->error_lock);
}

/* ---- secrets ------------------------------------------------------------- */

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == needle[i])
            i++;
        if (i == n)
            return true;
    }
    return false;
}

bool sk_secret_name(const char *name)
{
    static const char *const words[] = {
        "password", "passwd", "secret", "token", "credential", "jaas", "oauthbearer.config",
        "key.pem", "ssl_key", "private", "api.key", "apikey", "api_key", NULL};
    for (size_t i = 0; name && words[i]; i++)
        if (contains_nocase(name, words[i]))
            return true;
    return false;
}

typedef struct secret_list {
    char **items;
    size_t count;
    bool out_of_memory;
} secret_list;

static void add_secret(secret_list *l, const char *value, size_t len)
{
    if (len == 0)
        return;
    for (size_t i = 0; i < l->count; i++)
        if (strlen(l->items[i]) == len && memcmp(l->items[i], value, len) == 0)
            return;
    char **grown = realloc(l->items, (l->count + 1) * sizeof *grown);
    char *copy = grown ? strndup(value, len) : NULL;
    if (grown)
        l->items = grown;
    if (!copy) {
        l->out_of_memory = true;
        return;
    }
    /* Longest first, so a secret that holds another is replaced whole. */
    size_t at = l->count++;
    while (at > 0 && strlen(l->items[at - 1]) < len) {
        l->items[at] = l->items[at - 1];
        at--;
    }
    l->items[at] = copy;
}

static void add_property(secret_list *l, const char *name, const char *value)
{
    if (!value)
        return;
    if (sk_secret_name(name))
        add_secret(l, value, strlen(value));
}

/* One pass over text, the longest secret first at each place, so that a
 * secret is never found again inside a marker already put in. */
static void redact_with(char *const *secrets, size_t n, char *text, size_t cap)
{
    static const char marker[] = SK_REDACTED;
    if (!text || cap == 0 || n == 0)
        return;
    char *out = malloc(cap);
    if (!out) { /* better no message than one with a secret */
        text[0] = 0;
        return;
    }
    size_t o = 0;
    const char *p = text;
    while (*p && o < cap - 1) {
        size_t hit = 0;
        for (size_t i = 0; i < n && !hit; i++)
            if (secrets[i][0] == *p && strncmp(p, secrets[i], strlen(secrets[i])) == 0)
                hit = strlen(secrets[i]);
        if (!hit) {
            out[o++] = *p++;
            continue;
        }
        size_t m = sizeof marker - 1 < cap - 1 - o ? sizeof marker - 1 : cap - 1 - o;
        memcpy(out + o, marker, m);
        o += m;
        p += hit;
    }
    out[o] = 0;
    memcpy(text, out, o + 1);
    free(out);
}

void sk_redact(const sk_base *base, char *text, size_t cap)
{
    redact_with(base->secrets, base->nsecrets, text, cap);
}

void sk_last_error(sk_base *b, char *out, size_t outlen)
{
    pthread_mutex_lock(&b->error_lock);
    snprintf(out, outlen, "%s", b->last_error);
    pthread_mutex_unlock(&b->error_lock);
}

/* librdkafka's syslog levels onto sluice's four. */
static sluice_log_level level_of(int syslog_level)
{
    /* librdkafka calls a refused connection an error although it retries;
     * what ends a run is the stage's to say, at ERROR, in its own words. */
    if (syslog_level <= 4)
        return SLUICE_LOG_WARN;
    if (syslog_level <= 6)
        return SLUICE_LOG_INFO;
    return SLUICE_LOG_DEBUG;
}

/* librdkafka redacts the properties it knows to be sensitive in its own
 * configuration dump, but other messages may quote a value (an
 * unparsable sasl.oauthbearer.config is echoed back): every line is
 * scrubbed of this stage's secrets first. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sk_base *b = rd_kafka_opaque(rk);
    if (!b)
        return;
    if (!b->nsecrets) {
        b->host->log(b->ctx, level_of(level), "librdkafka %s: %s", fac, buf);
        return;
    }
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", buf);
    sk_redact(b, msg, sizeof msg);
    b->host->log(b->ctx, level_of(level), "librdkafka %s: %s", fac, msg);
}

/* Runs on librdkafka's threads (or inside its poll calls): remember, and
 * let the stage decide what an error means for the run. Transient
 * connection errors are logged by the stage at a limited rate, not here. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sk_base *b = opaque;
    (void)rk;
    pthread_mutex_lock(&b->error_lock);
    snprintf(b->last_error, sizeof b->last_error, "%s", reason);
    sk_redact(b, b->last_error, sizeof b->last_error);
    pthread_mutex_unlock(&b->error_lock);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&b->all_brokers_down, 1);
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        atomic_store(&b->fatal, 1);
}

const char *sk_property(const sluice_map *properties, const char *name)
{
    if (!properties)
        return NULL;
    for (size_t i = 0; i < properties->count; i++)
        if (strcmp(properties->keys[i], name) == 0)
            return properties->values[i];
    return NULL;
}

bool sk_check_properties(const sluice_host *host, sluice_ctx *ctx,
                         const sluice_map *properties)
{
    bool ok = true;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (size_t i = 0; properties && i < properties->count; i++) {
        char option[300], why[512];
        if (rd_kafka_conf_set(conf, properties->keys[i], properties->values[i], why,
                              sizeof why) == RD_KAFKA_CONF_OK)
            continue;
        /* librdkafka quotes the value it refuses: not when it is a secret. */
        secret_list mine = {0};
        add_property(&mine, properties->keys[i], properties->values[i]);
        redact_with(mine.items, mine.count, why, sizeof why);
        free_secrets(mine.items, mine.count);
        size_t n = strlen(why);
        while (n && (why[n - 1] == '\n' || why[n - 1] == ' ' || why[n - 1] == '.'))
            why[--n] = 0;
        snprintf(option, sizeof option, "properties.%s", properties->keys[i]);
        host->config_error(ctx, option, "%s", why);
        ok = false;
    }
    rd_kafka_conf_destroy(conf);
    return ok;
}

char *sk_default_id(const sluice_host *host, sluice_ctx *ctx)
{
    const char *pipeline = SLUICE_HOST_HAS(host, pipeline_name) ? host->pipeline_name(ctx) : NULL;
    const char *stage = host->stage_name(ctx);
    size_t n = strlen("sluice..") + (pipeline ? strlen(pipeline) : 0) + strlen(stage) + 1;
    char *id = malloc(n);
    if (!id)
        return NULL;
    if (pipeline && *pipeline)
        snprintf(id, n, "sluice.%s.%s", pipeline, stage);
    else
        snprintf(id, n, "sluice.%s", stage);
    return id;
}

static int set(const sk_base *base, rd_kafka_conf_t *conf, const char *name, const char *value,
               const char *what, char *err, size_t errlen)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return 0;
    sk_redact(base, why, sizeof why);
    snprintf(err, errlen, "%s%s: %s", what, name, why);
    return -1;
}

/* One "name=value" of the DEBUG line, the value hidden when secret. */
static void describe_setting(sluice_buf *line, const sluice_host *host, const char *name,
                             const char *value)
{
    if (line->len)
        host->buf_append(line, ", ", 2);
    host->buf_append(line, name, strlen(name));
    host->buf_append(line, "=", 1);
    if (sk_secret_name(name))
        value = SK_REDACTED;
    host->buf_append(line, value, strlen(value));
}

/* The settings this stage gives librdkafka, for `--log-level debug`;
 * passwords inside URLs the core's log hides. */
static void log_settings(const sk_base *base, const sluice_map *properties,
                         const char *const *defaults)
{
    const sluice_host *host = base->host;
    sluice_buf line = {0};
    if (base->brokers)
        describe_setting(&line, host, "bootstrap.servers", base->brokers);
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        describe_setting(&line, host, defaults[i], defaults[i + 1]);
    for (size_t i = 0; properties && i < properties->count; i++)
        describe_setting(&line, host, properties->keys[i], properties->values[i]);
    char text[2048];
    snprintf(text, sizeof text, "%.*s", (int)line.len, line.data ? line.data : "");
    host->buf_free(&line);
    sk_redact(base, text, sizeof text);
    host->log(base->ctx, SLUICE_LOG_DEBUG, "librdkafka settings: %s", text);
}

rd_kafka_conf_t *sk_conf_new(sk_base *base, const sluice_map *properties,
                             const char *const *defaults, char *err, size_t errlen)
{
    /* Secrets first, so that even an error about a property is scrubbed. */
    secret_list secrets = {0};
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        add_property(&secrets, defaults[i], defaults[i + 1]);
    for (size_t i = 0; properties && i < properties->count; i++)
        add_property(&secrets, properties->keys[i], properties->values[i]);
    free_secrets(base->secrets, base->nsecrets);
    base->secrets = secrets.items;
    base->nsecrets = secrets.count;
    if (secrets.out_of_memory) { /* better no client than one that might leak */
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log_settings(base, properties, defaults);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (base->brokers &&
        set(base, conf, "bootstrap.servers", base->brokers, "", err, errlen) != 0)
        goto fail;
    /* librdkafka's own logging lands in sluice's log; it may be called
     * from librdkafka's threads, which host->log allows. */
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, base);
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (set(base, conf, defaults[i], defaults[i + 1], "", err, errlen) != 0)
            goto fail;
    for (size_t i = 0; properties && i < properties->count; i++)
        if (set(base, conf, properties->keys[i], properties->values[i], "properties.", err,
                errlen) != 0)
            goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- the offsets registry ------------------------------------------------ */

/* A few epochs per source: a sink prepares epoch N after the source
 * snapshotted it, and checkpoints run one at a time, so the newest one or
 * two are all that is ever asked for. */
#define KEPT_EPOCHS 4

typedef struct published {
    uint64_t epoch;
    rd_kafka_topic_partition_list_t *offsets;
} published;

typedef struct source_entry {
    rd_kafka_t *consumer;
    rd_kafka_consumer_group_metadata_t *group;
    published kept[KEPT_EPOCHS];
    struct source_entry *next;
} source_entry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static source_entry *registry;

static source_entry *entry_of(rd_kafka_t *consumer, bool create)
{
    for (source_entry *e = registry; e; e = e->next)
        if (e->consumer == consumer)
            return e;
    if (!create)
        return NULL;
    source_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->consumer = consumer;
    e->group = rd_kafka_consumer_group_metadata(consumer);
    e->next = registry;
    registry = e;
    return e;
}

void sk_offsets_publish(rd_kafka_t *consumer, uint64_t epoch,
                        const rd_kafka_topic_partition_list_t *offsets)
{
    pthread_mutex_lock(&registry_lock);
    source_entry *e = entry_of(consumer, true);
    if (e) {
        /* The group's generation changes with every rebalance, and a broker
         * refuses offsets sent with an old one: take it fresh each time. */
        rd_kafka_consumer_group_metadata_t *group = rd_kafka_consumer_group_metadata(consumer);
        if (group) {
            if (e->group)
                rd_kafka_consumer_group_metadata_destroy(e->group);
            e->group = group;
        }
        /* Replace the oldest slot. */
        published *slot = &e->kept[0];
        for (int i = 1; i < KEPT_EPOCHS; i++)
            if (e->kept[i].epoch < slot->epoch)
                slot = &e->kept[i];
        if (slot->offsets)
            rd_kafka_topic_partition_list_destroy(slot->offsets);
        slot->epoch = epoch;
        slot->offsets = rd_kafka_topic_partition_list_copy(offsets);
    }
    pthread_mutex_unlock(&registry_lock);
}

void sk_offsets_forget(rd_kafka_t *consumer)
{
    pthread_mutex_lock(&registry_lock);
    for (source_entry **p = &registry; *p; p = &(*p)->next) {
        source_entry *e = *p;
        if (e->consumer != consumer)
            continue;
        *p = e->next;
        for (int i = 0; i < KEPT_EPOCHS; i++)
            if (e->kept[i].offsets)
                rd_kafka_topic_partition_list_destroy(e->kept[i].offsets);
        if (e->group)
            rd_kafka_consumer_group_metadata_destroy(e->group);
        free(e);
        break;
    }
    pthread_mutex_unlock(&registry_lock);
}

int sk_offsets_each(uint64_t epoch, sk_offsets_fn fn, void *arg)
{
    int calls = 0;
    pthread_mutex_lock(&registry_lock);
    for (source_entry *e = registry; e; e = e->next) {
        for (int i = 0; i < KEPT_EPOCHS; i++) {
            if (e->kept[i].epoch != epoch || !e->kept[i].offsets || !e->group)
                continue;
            int rc = fn(arg, e->kept[i].offsets, e->group);
            if (rc != 0) {
                pthread_mutex_unlock(&registry_lock);
                return rc;
            }
            calls++;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return calls;
}
