/*
 * config.h — the pipeline file, checked against every plugin's declared
 * options, turned into the stage list the graph builder and the runtime use.
 *
 * All checks that need no plugin running happen here, and every problem is
 * collected as "file:line:col: message" (exit status 2): YAML syntax, unset
 * ${VAR}, unknown top-level keys, unknown plugin type, unknown option, wrong
 * type, missing required option, bad duration/size/enum, duplicate stage
 * names, extra output names that clash with a stage or another output.
 * Whether `input` names exist, cycles and unused stages are graph.c's (it
 * has input_nodes/output_nodes for positions).
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include "sluice/plugin.h"
#include "yaml.h"

/* Finds a plugin by type and kind: built-ins first, then <type>.so on the
 * plugin path. Returns NULL and writes why into err (unknown type, or the
 * ABI mismatch message naming the file and both versions). */
typedef const sluice_plugin_def *(*sl_plugin_lookup)(void *lookup_ctx, const char *type,
                                                     sluice_kind kind, char *err, size_t errlen);

typedef enum sl_time_format {
    SL_TIME_EPOCH_MS = 0,
    SL_TIME_EPOCH_S,
    SL_TIME_ISO8601
} sl_time_format;

typedef struct sl_stage_cfg {
    char *name;
    sluice_kind kind;
    char *type;
    const sluice_plugin_def *def;
    const sl_node *node;          /* the stage's mapping, for positions */

    void *config;                 /* def->config_size bytes, filled from options */

    size_t ninputs;               /* operators and sinks */
    char **inputs;                /* stream names: a stage, or a stage's extra output */
    const sl_node **input_nodes;  /* positions of each name */

    /* Extra named outputs of this stage, in declaration order: `errors`
     * (when given) and every SLUICE_OPT_OUTPUT option given. The OPT_OUTPUT
     * int in config holds the index into this array. */
    size_t noutputs;
    char **outputs;
    const sl_node **output_nodes;
    int errors_output;            /* index into outputs, or -1 */
    bool on_error_fail;           /* on_error: fail (default: skip) */

    /* Core options of sources. */
    uint32_t batch_size;          /* default SL_DEFAULT_BATCH_SIZE */
    char *event_time_field;       /* NULL: the source's own time (if any) */
    sl_time_format event_time_format;
    int64_t max_delay_ms;         /* watermark.max_delay, default 0 */
    int64_t idle_timeout_ms;      /* watermark.idle_timeout, 0 = never idle */
} sl_stage_cfg;

typedef struct sl_pipeline_cfg {
    char *file;
    char *name;                   /* `pipeline:`; default: the file's base name */
    sl_node *root;

    char *checkpoint_dir;         /* default ./.sluice/checkpoints */
    int64_t checkpoint_interval_ms;
    int checkpoint_retain;        /* default 3 */
    int64_t checkpoint_timeout_ms; /* default 10m; 0: none */
    bool checkpoints;             /* a `checkpoint:` section is there */
    char *shutdown_file;          /* drain when this file is removed; NULL: none */
    char *events_log;             /* JSON lines of run and checkpoint events; NULL: none */
    int64_t memory_limit;         /* bytes; default 256MiB; 0: none (see runtime.c) */

    char *metrics_listen;         /* NULL with `listen: false`; absent or
                                     `listen: true` = 127.0.0.1:9464 */
    bool metrics_default;         /* nothing about the endpoint was written (no
                                     listen, auth or TLS): a busy port only warns */
    /* Basic auth and TLS of the endpoint; NULL when not set. Each pair is
     * whole or absent (checked here). The password comes from `password:` or
     * the first line of `password_file:`; it is never logged, and wiped when
     * the config is freed. The TLS files were readable when the config was
     * read; http.c reads them when the endpoint starts. */
    char *metrics_username;
    char *metrics_password;
    char *metrics_tls_cert;       /* PEM paths, relative to the working folder */
    char *metrics_tls_key;
    size_t nplugin_path;
    char **plugin_path;           /* resolved relative to the pipeline file's folder */

    size_t nstages;
    sl_stage_cfg *stages;         /* sources, then operators, then sinks, file order */
} sl_pipeline_cfg;

/* --set overrides: "key.path=value", applied to the tree before checking
 * (creating keys as needed). */
typedef struct sl_override {
    const char *path;
    const char *value;
} sl_override;

/* Pass 1: read the file and apply overrides; the plugin path is known after
 * this, so the loader can be set up. NULL (diag filled) only when there is
 * no usable tree: unreadable file, YAML syntax error, not a mapping. Lesser
 * problems (unset ${VAR}, unknown top-level key, bad stage name, a missing
 * sources: or sinks: section...) are left in diag and the config is still
 * returned, so pass 2 can add its findings and the user sees every mistake
 * in one run; sl_config_check() then returns -1. Sets diag->file to file
 * when NULL (the pointer is kept). Override values are taken as plain
 * scalars, without ${VAR} interpolation; problems with them print as
 * "--set: ...". */
sl_pipeline_cfg *sl_config_read(const char *file, const sl_override *ovr, size_t novr,
                                sl_diag *diag);
/* Pass 2: resolve each stage's plugin and check and fill its options.
 * Returns 0, or -1 when diag holds any problem (from this pass or pass 1).
 * A stage whose plugin is not found keeps def and config NULL. The lookup's
 * err text, when set, is the message at the `type:` value; else "unknown
 * source type 'x'". */
int sl_config_check(sl_pipeline_cfg *cfg, sl_plugin_lookup lookup, void *lookup_ctx,
                    sl_diag *diag);
void sl_config_free(sl_pipeline_cfg *cfg);

/* Fill a config struct from a mapping node per an option table (defaults
 * applied first, then the map's values). Shared by the pipeline checker and
 * unit tests. Keys in ignore_keys (NULL-terminated, may be NULL) are skipped;
 * any other key not in opts is an "unknown option" (with a did-you-mean).
 * Problems go to diag; returns 0 or -1. `stage` (may be NULL) names the
 * plugin in messages and collects SLUICE_OPT_OUTPUT values in
 * stage->outputs; an OUTPUT option ignores any default_value (an extra
 * output exists only when the user names it) and is -1 when absent. An
 * explicit null value (`path:`) is an error, not "absent". Whatever the
 * result, free the strings, lists and maps with sl_options_free(). */
int sl_options_fill(const sluice_option *opts, const sl_node *map, void *config,
                    const char *const *ignore_keys, sl_stage_cfg *stage, sl_diag *diag);
/* Frees what sl_options_fill allocated inside config (not config itself)
 * and clears those pointers, so calling it twice is harmless. */
void sl_options_free(const sluice_option *opts, void *config);

/* Where an option of a stage stands, for host->config_error(): the value
 * node of a dotted option path ("metrics.0.value": a number picks a list
 * item), or the deepest node of the path that exists
 * (the stage node when none does). */
const sl_node *sl_stage_option_node(const sl_stage_cfg *st, const char *option);

#endif
