/*
 * sluice/plugin.h — the one public ABI of sluice.
 *
 * A plugin is a shared object exporting one function:
 *
 *     const sluice_plugin_def *sluice_plugin(void);
 *
 * It returns a constant descriptor that begins with the ABI major and minor
 * version and the descriptor's size, so the core can check them before it
 * touches anything else (Postgres' PG_MODULE_MAGIC, Varnish's vrt.h). A
 * function rather than a data symbol, because dlsym() is only guaranteed to
 * work for functions.
 *
 * Plugins never link against the core: every service they need (records,
 * batches, logging, codecs, expressions) reaches them through the
 * sluice_host table handed to create() (Redis modules). Plugins never parse
 * YAML: they declare their options in a table (nginx's ngx_command_t, Fluent
 * Bit's config map) and the core validates the pipeline file against it,
 * applies defaults and fills the plugin's config struct before create().
 *
 * Versioning
 *   - A minor bump may only add: members at the END of sluice_host and
 *     sluice_plugin_def, new option types, new enum values. A plugin built
 *     for an older minor keeps working; the core reads descriptor members
 *     beyond plugin->size as NULL.
 *   - Anything else (a changed or removed member, a changed meaning) is a
 *     major bump. The core refuses a plugin whose major differs from its own
 *     or whose minor is newer than its own, naming the file and both
 *     versions.
 *   - A plugin must test host->size (or a member for NULL) before using a
 *     host member added after the minor it was built for:
 *     SLUICE_HOST_HAS(host, member) does both.
 *
 * ABI changelog
 *   1.0  first version.
 *   1.1  sluice_plugin_def.on_tick (periodic call for processing-time work);
 *        sluice_host.state_size, count_late, partitions, partition_done.
 *   1.2  commit() also reaches sources (on their own thread, between polls);
 *        sluice_host.partition_open, checkpoint_now, checkpoint_interval,
 *        pipeline_name, metric_new, metric_series, series_add, series_set.
 *   1.3  option types SLUICE_OPT_JSON and SLUICE_OPT_OBJECT_LIST;
 *        metric type SLUICE_HISTOGRAM; sluice_host.metrics_text,
 *        series_observe.
 *   1.4  sluice_plugin_def.pause (sources that must keep polling while the
 *        pipeline is full); sluice_host.memory_limit.
 *
 * Ownership, in one place
 *   - Strings in the descriptor and option table: owned by the plugin, must
 *     live as long as the .so is loaded (use literals).
 *   - The config struct passed to create(): owned by the core, valid until
 *     destroy() returns. Strings and lists in it are owned by the core.
 *   - A batch from host->batch_new(): owned by the caller until it passes it
 *     to host->emit()/emit_to() (ownership moves to the core) or frees it
 *     with host->batch_free().
 *   - A batch passed INTO process()/write(): borrowed and read-only; valid
 *     only during the call. Its records may be copied into an output batch
 *     with host->record_copy(), which keeps the input's memory alive for as
 *     long as the output batch lives, so nothing is copied per field.
 *   - Memory from host->alloc()/host->str() lives in the batch's arena and is
 *     freed with the batch, all at once.
 *   - A snapshot blob returned by snapshot() is malloc()ed by the plugin and
 *     free()d by the core. The blob handed to restore() is borrowed.
 *   - Error buffers: every callback that can fail gets `char *err, size_t
 *     errlen`; on SLUICE_ERROR it writes a human-readable NUL-terminated
 *     message there (librdkafka's errstr convention).
 */
#ifndef SLUICE_PLUGIN_H
#define SLUICE_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_ABI_MAJOR 1
#define SLUICE_ABI_MINOR 4

/* A batch is full at its capacity in records or at this many bytes of
 * arena, whichever comes first (big records would otherwise put tens of MB
 * in one batch and make memory_limit coarse). */
#define SLUICE_BATCH_MAX_BYTES (4u * 1024 * 1024)

/* Return codes of every callback and of host functions that can fail. */
typedef enum sluice_status {
    SLUICE_OK = 0,     /* done; for poll(): something may have been emitted */
    SLUICE_RETRY = 1,  /* nothing now (no input yet, transient fault): call again later */
    SLUICE_DONE = 2,   /* poll() only: the source's input is exhausted */
    SLUICE_ERROR = -1  /* failed; a message is in err */
} sluice_status;

typedef enum sluice_kind {
    SLUICE_SOURCE = 1,
    SLUICE_OPERATOR = 2,
    SLUICE_SINK = 3
} sluice_kind;

/* ---- Values, records and batches ------------------------------------- */

typedef enum sluice_type {
    SLUICE_NULL = 0,
    SLUICE_BOOL,
    SLUICE_INT,    /* int64_t */
    SLUICE_DOUBLE,
    SLUICE_STRING, /* UTF-8 bytes, not NUL-terminated */
    SLUICE_JSON    /* a nested object or array, kept as its JSON text */
} sluice_type;

typedef struct sluice_str {
    const char *ptr;
    size_t len;
} sluice_str;

typedef struct sluice_value {
    sluice_type type;
    union {
        bool b;
        int64_t i;
        double d;
        sluice_str s; /* SLUICE_STRING and SLUICE_JSON */
    } u;
} sluice_value;

/* A field name interned once (host->intern): comparing names is comparing
 * integers. Id 0 is never a valid name. */
typedef uint32_t sluice_name;

typedef struct sluice_field {
    sluice_name name;
    sluice_value value;
} sluice_field;

#define SLUICE_TIME_NONE INT64_MIN /* no event time (yet) */
#define SLUICE_TIME_MAX INT64_MAX  /* the watermark at the end of bounded input */

typedef struct sluice_record {
    int64_t time;       /* event time, ms since the epoch, or SLUICE_TIME_NONE */
    int64_t ingest_ns;  /* CLOCK_MONOTONIC ns when the source read it */
    sluice_str key;     /* optional key (e.g. Kafka), may be {NULL,0} */
    sluice_str raw;     /* the undecoded input, when the source keeps it */
    uint32_t partition; /* source partition (file of a glob, Kafka partition) */
    uint32_t nfields;
    uint32_t capfields; /* core-private: room in fields[] */
    sluice_field *fields;
} sluice_record;

struct sluice_batch_mem; /* core-private: arena, refcount, kept batches */

typedef struct sluice_batch {
    uint32_t count;           /* records[0..count) are valid */
    uint32_t capacity;        /* the stage's batch_size; lowered to count once the
                                 batch holds SLUICE_BATCH_MAX_BYTES: check
                                 count < capacity before each append */
    sluice_record *records;
    struct sluice_batch_mem *mem;
} sluice_batch;

/* Field lookup by interned name: a linear scan over a handful of integers,
 * which beats hashing for the record sizes streams carry. */
static inline const sluice_value *sluice_get(const sluice_record *r, sluice_name name)
{
    for (uint32_t i = 0; i < r->nfields; i++)
        if (r->fields[i].name == name)
            return &r->fields[i].value;
    return NULL;
}

static inline sluice_value sluice_int(int64_t i)
{
    sluice_value v;
    v.type = SLUICE_INT;
    v.u.i = i;
    return v;
}

static inline sluice_value sluice_double(double d)
{
    sluice_value v;
    v.type = SLUICE_DOUBLE;
    v.u.d = d;
    return v;
}

static inline sluice_value sluice_bool(bool b)
{
    sluice_value v;
    v.type = SLUICE_BOOL;
    v.u.b = b;
    return v;
}

static inline sluice_value sluice_null(void)
{
    sluice_value v;
    memset(&v, 0, sizeof v);
    v.type = SLUICE_NULL;
    return v;
}

/* A string value pointing at s; the bytes must outlive the batch (copy them
 * with host->str() first unless they already live in the batch's arena). */
static inline sluice_value sluice_string(sluice_str s)
{
    sluice_value v;
    v.type = SLUICE_STRING;
    v.u.s = s;
    return v;
}

/* ---- Options ---------------------------------------------------------- */

typedef enum sluice_opt_type {
    SLUICE_OPT_STRING = 1, /* char *            (NULL when absent, no default) */
    SLUICE_OPT_INT,        /* int64_t */
    SLUICE_OPT_DOUBLE,     /* double */
    SLUICE_OPT_BOOL,       /* bool */
    SLUICE_OPT_DURATION,   /* int64_t ms; "250ms", "10s", "5m", "1h", "2d" or a number of ms */
    SLUICE_OPT_SIZE,       /* int64_t bytes; "64KiB", "16MiB", "1GiB", "100MB" or a number */
    SLUICE_OPT_ENUM,       /* int: index into choices[] */
    SLUICE_OPT_LIST,       /* sluice_list: a scalar or a sequence of scalars */
    SLUICE_OPT_MAP,        /* sluice_map: a mapping of scalar keys to scalar values, in file order */
    SLUICE_OPT_OBJECT,     /* a nested struct at offset, described by fields[] */
    SLUICE_OPT_OUTPUT,     /* int: an extra named output of the stage (like `late`);
                              the core stores its output index, or -1 when absent.
                              The name becomes a stream other stages can take as input. */
    /* ---- 1.3 ---- */
    SLUICE_OPT_JSON,       /* char *: any YAML value as JSON text (NULL when absent).
                              Plain scalars are typed: 42 integer, 4.5 number,
                              true/false, null/~ null; quoted scalars are strings;
                              mappings are objects (file order), sequences arrays. */
    SLUICE_OPT_OBJECT_LIST /* sluice_objects: a list of mappings, each filled into
                              its own struct described by fields[] (defaults and
                              required checks per item). The core allocates each
                              item with the size in the `offset` of fields[]'s
                              terminating entry (SLUICE_OPTIONS_END_SIZED). */
} sluice_opt_type;

typedef struct sluice_list {
    size_t count;
    char **items;
} sluice_list;

typedef struct sluice_map {
    size_t count;
    char **keys;
    char **values;
} sluice_map;

/* SLUICE_OPT_OBJECT_LIST: items[i] points at a struct of the item type. */
typedef struct sluice_objects {
    size_t count;
    void **items;
} sluice_objects;

#define SLUICE_OPT_REQUIRED 0x1u

typedef struct sluice_option {
    const char *name;
    sluice_opt_type type;
    const char *default_value;     /* as it would be written in YAML; NULL: none */
    unsigned flags;                /* SLUICE_OPT_REQUIRED */
    size_t offset;                 /* offsetof(your_config, member) */
    const char *help;
    const char *const *choices;    /* SLUICE_OPT_ENUM: NULL-terminated */
    const struct sluice_option *fields; /* SLUICE_OPT_OBJECT: NULL-name-terminated */
} sluice_option;

/* Ends the fields[] of a SLUICE_OPT_OBJECT_LIST, saying how big one item is. */
#define SLUICE_OPTIONS_END_SIZED(item_type) {.name = NULL, .offset = sizeof(item_type)}

/* ---- The host table ---------------------------------------------------- */

typedef struct sluice_ctx sluice_ctx;     /* one per stage instance, core-owned */
typedef struct sluice_metric sluice_metric; /* a metric family a plugin defines (1.2) */
typedef struct sluice_series sluice_series; /* one labelled series of it (1.2) */

typedef enum sluice_metric_type {
    SLUICE_COUNTER = 1,  /* only goes up; the name should end in _total */
    SLUICE_GAUGE = 2,
    SLUICE_HISTOGRAM = 3 /* 1.3: durations in seconds (name them *_seconds), in the
                            core's fixed buckets (100 us to 60 s), so they
                            aggregate with its own; fed with series_observe() */
} sluice_metric_type;
typedef struct sluice_codec sluice_codec; /* a decoder/encoder for one format */
typedef struct sluice_expr sluice_expr;   /* a compiled Lua expression */

typedef enum sluice_log_level {
    SLUICE_LOG_ERROR = 0,
    SLUICE_LOG_WARN,
    SLUICE_LOG_INFO,
    SLUICE_LOG_DEBUG
} sluice_log_level;

/* A growable byte buffer for encoders; memory is malloc()ed, free with
 * host->buf_free(). */
typedef struct sluice_buf {
    char *data;
    size_t len;
    size_t cap;
} sluice_buf;

typedef struct sluice_host {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size; /* sizeof(sluice_host) of the core: which members exist */

    /* Logging, prefixed with the stage name. */
    void (*log)(sluice_ctx *ctx, sluice_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* During create(): report a configuration problem in option `option`
     * (dotted for nested ones, e.g. "event_time.field"); the core prints it
     * as file:line:col of that option. create() then returns SLUICE_ERROR. */
    void (*config_error)(sluice_ctx *ctx, const char *option, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Field names. intern() is thread-safe; call it at create() time and keep
     * the id. name_of() returns a NUL-terminated string owned by the core. */
    sluice_name (*intern)(const char *name, size_t len);
    const char *(*name_of)(sluice_name name);

    /* Batches. batch_new() makes an empty batch with the stage's batch_size
     * capacity. record_append() returns a zeroed record (time NONE) to fill,
     * or NULL when the batch is full: emit it and start another. */
    sluice_batch *(*batch_new)(sluice_ctx *ctx);
    void (*batch_free)(sluice_batch *b);
    sluice_record *(*record_append)(sluice_batch *b);
    /* Append a shallow copy of src (from another batch) to b; b keeps src's
     * batch alive. NULL when b is full. */
    sluice_record *(*record_copy)(sluice_batch *b, const sluice_batch *src_batch,
                                  const sluice_record *src);
    void *(*alloc)(sluice_batch *b, size_t size);              /* arena, 8-aligned */
    sluice_str (*str)(sluice_batch *b, const char *p, size_t len); /* copy into arena */
    /* Set (add or replace) a field; value strings must live in b's arena or
     * in a batch b keeps. Returns SLUICE_ERROR only when out of memory. */
    int (*set)(sluice_batch *b, sluice_record *r, sluice_name name, sluice_value v);
    void (*unset)(sluice_batch *b, sluice_record *r, sluice_name name);
    /* A nested value by dotted path ("user.id"), looking into JSON text of
     * nested objects; strings land in b's arena. false when absent. */
    bool (*get_path)(sluice_batch *b, const sluice_record *r, const char *path,
                     sluice_value *out);

    /* Output. emit() hands b to the stage's main output and blocks while the
     * downstream queues are full (backpressure). emit_to() sends to an extra
     * output declared as a SLUICE_OPT_OUTPUT option (its stored index).
     * Ownership of b moves to the core in every case. */
    int (*emit)(sluice_ctx *ctx, sluice_batch *b);
    int (*emit_to)(sluice_ctx *ctx, int output, sluice_batch *b);
    /* A record this stage cannot handle: the core sends a copy with `error`,
     * `stage` and `raw` to the stage's `errors` output, or counts it in
     * sluice_errors_total{stage,reason} and logs at a limited rate. `reason`
     * is a short fixed word (e.g. "bad_json"), `detail` the human message.
     * rec may be NULL when nothing was decoded. Returns SLUICE_ERROR when the
     * stage is configured with on_error: fail (the caller returns it). */
    int (*reject)(sluice_ctx *ctx, const sluice_record *rec, sluice_str raw,
                  const char *reason, const char *detail);

    /* Codecs: one per stage and format ("json", "lines", "csv"). decode()
     * turns one undecoded unit (a line, a message) into a record appended to
     * b; bad input is reject()ed by the codec itself and decode() returns
     * SLUICE_RETRY (nothing appended). csv_header() feeds a CSV header line.
     * encode() appends the record's serialisation (no trailing newline). */
    sluice_codec *(*codec_new)(sluice_ctx *ctx, const char *format, char *err, size_t errlen);
    void (*codec_free)(sluice_codec *c);
    int (*decode)(sluice_codec *c, sluice_batch *b, const char *data, size_t len);
    int (*encode)(sluice_codec *c, const sluice_record *r, sluice_buf *out);
    /* CSV only: feed the header line to read the names from; or, with
     * line and out both NULL, say the output already has its header (a
     * sink appending to an existing file). */
    int (*codec_header)(sluice_codec *c, const char *line, size_t len, sluice_buf *out);
    void (*buf_free)(sluice_buf *buf);
    int (*buf_append)(sluice_buf *buf, const char *p, size_t len);

    /* Lua expressions over a record's fields (`status_code >= 400`). Compiled
     * once at create(); eval() per record, on the stage's own thread. The
     * result's strings land in out_batch's arena. On a runtime error eval()
     * returns SLUICE_ERROR with the Lua message in err. */
    sluice_expr *(*expr_compile)(sluice_ctx *ctx, const char *option, const char *source);
    void (*expr_free)(sluice_expr *e);
    int (*expr_eval)(sluice_expr *e, const sluice_record *r, sluice_batch *out_batch,
                     sluice_value *result, char *err, size_t errlen);

    /* Sources: progress of bounded input for the status line (done <= total,
     * bytes); whether the runtime is draining, so a blocking source returns. */
    void (*progress)(sluice_ctx *ctx, uint64_t done, uint64_t total);
    bool (*stopping)(sluice_ctx *ctx);
    /* The stage's name as written in the pipeline file. */
    const char *(*stage_name)(sluice_ctx *ctx);

    /* ---- 1.1 ---- */
    /* Stateful operators: the live state's size now (keys held, bytes
     * approximately), for the metrics layer. Call after changes, cheaply
     * (once per batch or watermark). */
    void (*state_size)(sluice_ctx *ctx, uint64_t keys, uint64_t bytes);
    /* Records that arrived after their window closed; counted in
     * sluice_records_late_total{stage}, whether or not they are routed on. */
    void (*count_late)(sluice_ctx *ctx, uint64_t n);
    /* Sources with partitions (records' `partition`): declare that
     * partitions 0..n-1 exist, so one that has produced nothing yet holds
     * the watermark back (until watermark.idle_timeout); and say when one
     * has ended (a file read to its end), so it no longer does. */
    void (*partitions)(sluice_ctx *ctx, uint32_t n);
    void (*partition_done)(sluice_ctx *ctx, uint32_t partition);

    /* ---- 1.2 ---- */
    /* Sources: partition `partition` is (again) one of this source's, e.g. a
     * Kafka partition assigned back after a rebalance: it holds the
     * watermark back again until it produces or idle_timeout passes. */
    void (*partition_open)(sluice_ctx *ctx, uint32_t partition);
    /* Sources, on their own thread (also from inside poll()): ask for a
     * checkpoint now and wait until one that covers everything this source
     * emitted so far has completed (the core calls this source's snapshot()
     * from within the call, so the plugin's state must be consistent when
     * it calls). For handing partitions over without losing or repeating
     * records (a Kafka rebalance). SLUICE_OK: completed. SLUICE_RETRY:
     * checkpoints are off, the run is stopping, or timeout_ms passed.
     * SLUICE_ERROR: the checkpoint failed (message in err). */
    int (*checkpoint_now)(sluice_ctx *ctx, int64_t timeout_ms, char *err, size_t errlen);
    /* The pipeline's checkpoint interval in ms; 0 when only a final
     * checkpoint is taken at shutdown; -1 when checkpoints are off (no
     * `checkpoint:` section). Callable from create(). */
    int64_t (*checkpoint_interval)(sluice_ctx *ctx);
    /* The pipeline's name (`pipeline:` in the file), for identifiers that
     * must be stable across restarts (Kafka group and transactional ids). */
    const char *(*pipeline_name)(sluice_ctx *ctx);
    /* Plugin metrics, exposed on /metrics with a `stage` label first and
     * then the family's own labels. metric_new() (at create() or start())
     * defines a family: name like "sluice_kafka_consumer_lag", labels a
     * NULL-terminated list of label names or NULL. Calling it again with
     * the same name from the same stage returns the same family. NULL on a
     * bad name or out of memory (metrics are then simply not kept; the
     * series functions accept NULL). metric_series() returns the series for
     * one set of label values (one per label name), creating it the first
     * time; keep the pointer, it lives as long as the pipeline. series_add()
     * and series_set() are thread-safe and cheap (an atomic). All strings
     * are copied. */
    sluice_metric *(*metric_new)(sluice_ctx *ctx, const char *name, sluice_metric_type type,
                                 const char *help, const char *const *labels);
    sluice_series *(*metric_series)(sluice_metric *m, const char *const *values);
    void (*series_add)(sluice_series *s, double delta);
    void (*series_set)(sluice_series *s, double value);

    /* ---- 1.3 ---- */
    /* Append what /metrics serves now (Prometheus text format 0.0.4: the
     * runtime's, the plugins' and the process_* metrics) to out, for a
     * plugin that ships them elsewhere (the Pushgateway sink). Thread-safe;
     * costs a walk over every series, so call it per push, not per batch. */
    int (*metrics_text)(sluice_ctx *ctx, sluice_buf *out);
    /* One observation (seconds) of a SLUICE_HISTOGRAM series; negative
     * values count as 0, NaN is ignored. Thread-safe, a few atomics. On
     * other series it does nothing, as series_add/set do on histograms. */
    void (*series_observe)(sluice_series *s, double seconds);

    /* ---- 1.4 ---- */
    /* The pipeline's `memory_limit` in bytes (0: none), for a plugin that
     * sizes its own buffers from it (the Kafka source's prefetch). */
    int64_t (*memory_limit)(sluice_ctx *ctx);
} sluice_host;

/* Whether the core's host table has `member`, set: the table may come from
 * a core of an older minor than the plugin was built for. */
#define SLUICE_HOST_HAS(h, member)                                                           \
    ((h)->size >= offsetof(sluice_host, member) + sizeof(((sluice_host *)0)->member) &&   \
     (h)->member != NULL)

/* ---- The descriptor ---------------------------------------------------- */

typedef struct sluice_plugin_def {
    /* These three first, always: they protect the rest. */
    uint16_t abi_major;  /* SLUICE_ABI_MAJOR */
    uint16_t abi_minor;  /* SLUICE_ABI_MINOR */
    uint32_t size;       /* sizeof(sluice_plugin_def) */

    const char *name;        /* the `type:` users write */
    sluice_kind kind;
    const char *version;
    const char *description; /* one line for `sluice plugins` */
    /* Another kind of the same type in the same .so (the kafka source's
     * descriptor points at the kafka sink's), or NULL. */
    const struct sluice_plugin_def *next;

    size_t config_size;            /* the core allocates and fills this struct */
    const sluice_option *options;  /* NULL-name-terminated; may be NULL */

    /* create(): check the config and build the instance; no I/O, no threads
     * (`sluice validate` calls create then destroy). Report bad options with
     * host->config_error(). start(): open files, sockets, connections.
     * destroy(): free everything; called even if start() failed. */
    int (*create)(const sluice_host *host, sluice_ctx *ctx, const void *config,
                  void **self, char *err, size_t errlen);
    int (*start)(void *self, char *err, size_t errlen);
    void (*destroy)(void *self);

    /* Source: read what is available (up to a few batches, blocking at most
     * ~100 ms) and emit it. OK: did work; RETRY: nothing now; DONE: input
     * exhausted (bounded input), the source's watermark goes to the end. */
    int (*poll)(void *self, char *err, size_t errlen);

    /* Operator: one input batch (borrowed), from input number `input` (the
     * position in the stage's `input` list). Emit zero or more batches. */
    int (*process)(void *self, const sluice_batch *in, unsigned input,
                   char *err, size_t errlen);

    /* Sink: write one batch (borrowed). */
    int (*write)(void *self, const sluice_batch *in, char *err, size_t errlen);

    /* The stage's input watermark moved forward to wm (ms; SLUICE_TIME_MAX at
     * the end of bounded input). Operators may emit from here. */
    int (*on_watermark)(void *self, int64_t wm, char *err, size_t errlen);

    /* All inputs ended (or the runtime drains): operators emit what they hold,
     * sinks flush to durable storage. */
    int (*flush)(void *self, char *err, size_t errlen);

    /* Checkpoints (aligned barriers). snapshot(): serialise the instance's
     * state (sources: their read positions) into a malloc()ed blob.
     * restore(): load one before start(). prepare(): a sink makes epoch's
     * output durable but invisible; commit(): makes it visible; abort():
     * discards it. Any may be NULL: stateless, or nothing to do. */
    int (*snapshot)(void *self, uint64_t epoch, void **blob, size_t *len,
                    char *err, size_t errlen);
    int (*restore)(void *self, const void *blob, size_t len, char *err, size_t errlen);
    int (*prepare)(void *self, uint64_t epoch, char *err, size_t errlen);
    /* commit(): checkpoint `epoch` is complete and durable. Sinks make its
     * output visible; sources (1.2) may tell their peer how far they got
     * (Kafka: commit the group's offsets of that epoch). A sink that ran
     * prepare() is kept running at the end of the run until the final
     * checkpoint's commit() or abort() has reached it. When a checkpoint
     * fails mid-run its epoch simply gets no commit(): the next prepare()
     * and commit() cover it too (commit(N) covers every epoch up to N).
     * abort() (1.2: called on sinks): the run is ending and epoch, which
     * this sink prepared, will never complete; discard what was prepared
     * (a restart replays it from the last completed checkpoint). */
    int (*commit)(void *self, uint64_t epoch, char *err, size_t errlen);
    int (*abort)(void *self, uint64_t epoch, char *err, size_t errlen);

    /* ---- 1.1 ---- */
    /* Called on the stage's thread about every 100 ms while it runs, with
     * the wall-clock time (ms since the epoch), between batches: for
     * processing-time work such as `emit: every 10s`. May emit. NULL: none. */
    int (*on_tick)(void *self, int64_t now_ms, char *err, size_t errlen);

    /* ---- 1.4 ---- */
    /* Sources: the pipeline is full (paused = true: records in flight past
     * memory_limit's share, or a downstream queue full) or has room again
     * (false). A source with pause() keeps being polled while paused, to
     * keep its session alive (Kafka: serve rebalances and heartbeats), and
     * should read nothing meanwhile (Kafka: pause its partitions); what it
     * emits anyway is taken. emit() never blocks such a source: a poll's
     * batches are queued even past the queues' bound, and the source is
     * paused before its next poll (so keep what one poll emits small: a
     * few batches). A source without pause() is not polled while paused,
     * and blocks in emit() on a full queue. Called on the source's thread,
     * between polls. NULL: none. */
    int (*pause)(void *self, bool paused, char *err, size_t errlen);
} sluice_plugin_def;

/* The one symbol a plugin .so exports. */
typedef const sluice_plugin_def *(*sluice_plugin_fn)(void);
#define SLUICE_PLUGIN_SYMBOL "sluice_plugin"

#ifdef __cplusplus
}
#endif
#endif /* SLUICE_PLUGIN_H */
