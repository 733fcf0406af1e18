/*
 * common.c — librdkafka configuration, logging and errors shared by the
 * Kafka source and sink, and the registry that hands source offsets to
 * exactly-once sinks; see common.h.
 */
#include "common.h"

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
}

void sk_base_destroy(sk_base *b)
{
    pthread_mutex_destroy(&b->error_lock);
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

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sk_base *b = rd_kafka_opaque(rk);
    if (b)
        b->host->log(b->ctx, level_of(level), "librdkafka %s: %s", fac, buf);
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

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, const char *what,
               char *err, size_t errlen)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "%s%s: %s", what, name, why);
    return -1;
}

rd_kafka_conf_t *sk_conf_new(sk_base *base, const sluice_map *properties,
                             const char *const *defaults, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (base->brokers && set(conf, "bootstrap.servers", base->brokers, "", err, errlen) != 0)
        goto fail;
    /* librdkafka's own logging lands in sluice's log; it may be called
     * from librdkafka's threads, which host->log allows. */
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, base);
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (set(conf, defaults[i], defaults[i + 1], "", err, errlen) != 0)
            goto fail;
    for (size_t i = 0; properties && i < properties->count; i++)
        if (set(conf, properties->keys[i], properties->values[i], "properties.", err,
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
