/*
 * common.h — what the Kafka source and sink share: building a librdkafka
 * configuration from the stage's options, librdkafka's logs and errors into
 * sluice's log, and the hand-over of source offsets to exactly-once sinks.
 *
 * Both kinds live in one kafka.so (the source's descriptor's `next` is the
 * sink's), so the offsets registry is plain process-global state of this
 * plugin: the core never learns what a Kafka offset is.
 */
#ifndef SLUICE_KAFKA_COMMON_H
#define SLUICE_KAFKA_COMMON_H

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>

#include <sluice/plugin.h>

/* The first member of both the source's and the sink's instance struct:
 * librdkafka's callbacks find it through rd_kafka_opaque(). */
typedef struct sk_base {
    const sluice_host *host;
    sluice_ctx *ctx;
    const char *brokers;
    /* Set by the error callback (librdkafka's threads), read by the stage. */
    _Atomic int all_brokers_down;  /* 1 while no broker is reachable */
    _Atomic int fatal;             /* a fatal error (fenced producer, ...) */
    char last_error[512];          /* guarded by error_lock, already redacted */
    pthread_mutex_t error_lock;
    /* The values of secret properties (sk_secret_name), longest first:
     * wiped out of every librdkafka message before sluice logs or keeps
     * it (passwords inside URLs the core hides from every message). Set by sk_conf_new() before
     * librdkafka's threads exist, freed by sk_base_destroy() after they
     * ended, so the callbacks read them without a lock. */
    char **secrets;
    size_t nsecrets;
} sk_base;

void sk_base_init(sk_base *b, const sluice_host *host, sluice_ctx *ctx, const char *brokers);
/* After rd_kafka_destroy(): its callbacks may still run until then. */
void sk_base_destroy(sk_base *b);
/* The newest error librdkafka reported (copied), or "" when none. */
void sk_last_error(sk_base *b, char *out, size_t outlen);

/* A configuration with bootstrap.servers = brokers, sluice's log and error
 * callbacks, `opaque` = base, and then every `properties` entry applied in
 * file order (so users can override anything, security settings
 * included). The defaults given in `defaults` (NULL-terminated name/value
 * pairs) are applied before properties. NULL with err set ("properties.X:
 * librdkafka's message", redacted) on a bad property. Also remembers the
 * secrets among properties in base, and logs the settings at DEBUG with
 * each secret shown as "[redacted]". */
rd_kafka_conf_t *sk_conf_new(sk_base *base, const sluice_map *properties,
                             const char *const *defaults, char *err, size_t errlen);

/* Whether properties set `name` (users' settings win over ours). */
const char *sk_property(const sluice_map *properties, const char *name);

/* create() time, no I/O: librdkafka's own word on each of `properties`,
 * on a throwaway configuration; each bad one is a config error at
 * properties.NAME. false when any was bad. */
bool sk_check_properties(const sluice_host *host, sluice_ctx *ctx,
                         const sluice_map *properties);

/* ---- secrets ---------------------------------------------------------- */

#define SK_REDACTED "[redacted]"

/* Whether a librdkafka property holds a secret, by its name: it contains
 * (in any case) password, passwd, secret, token, credential, jaas,
 * oauthbearer.config, key.pem, ssl_key, private or api.key/apikey/api_key.
 * This catches sasl.password, ssl.key.password, ssl.keystore.password,
 * ssl.key.pem, sasl.oauthbearer.config, sasl.oauthbearer.client.secret and
 * Java-style names like sasl.jaas.config that users paste in; a name too
 * many (sasl.oauthbearer.token.endpoint.url) only hides a value. */
bool sk_secret_name(const char *name);

/* Rewrites text in place (at most cap bytes with its NUL): every
 * occurrence of one of base's secrets becomes "[redacted]". For messages
 * of librdkafka's that did not come through the callbacks, such as
 * rd_kafka_new()'s error text. */
void sk_redact(const sk_base *base, char *text, size_t cap);

/* "sluice.PIPELINE.STAGE": a default group or transactional id, stable
 * across restarts. malloc()ed; NULL when out of memory. */
char *sk_default_id(const sluice_host *host, sluice_ctx *ctx);

/* ---- offsets of Kafka sources, for exactly-once sinks ------------------ */

/* A source publishes, at snapshot(epoch), the next offsets to read of
 * every partition it owns, with its consumer group's metadata. The list is
 * copied. */
void sk_offsets_publish(rd_kafka_t *consumer, uint64_t epoch,
                        const rd_kafka_topic_partition_list_t *offsets);
/* The source is going away. */
void sk_offsets_forget(rd_kafka_t *consumer);
/* For each Kafka source of this process that published offsets for
 * `epoch`: fn(arg, offsets, group_metadata). Returns the number of calls,
 * or the first non-zero value fn returned (fn stops the walk by returning
 * non-zero; negative for an error). Runs under the registry's lock: fn must
 * not call back into the registry. */
typedef int (*sk_offsets_fn)(void *arg, const rd_kafka_topic_partition_list_t *offsets,
                             const rd_kafka_consumer_group_metadata_t *group);
int sk_offsets_each(uint64_t epoch, sk_offsets_fn fn, void *arg);

/* The descriptors, defined in source.c and sink.c. */
extern const sluice_plugin_def sk_kafka_source;
extern const sluice_plugin_def sk_kafka_sink;

#endif
