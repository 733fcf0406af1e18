/*
 * test_config.c — pipeline files checked against fake plugins' option
 * tables: every error kind at its exact line:col, every option type filled,
 * defaults, environment interpolation, --set overrides and the keys the
 * core reads itself (input, errors, on_error, batch_size, event_time,
 * watermark).
 */
#include "config.h"

#include "../tap.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Fake plugins ----------------------------------------------------------- */

typedef struct tls_cfg {
    char *ca;
    bool verify;
    int64_t timeout_ms;
    int64_t port;
} tls_cfg;

typedef struct file_cfg {
    char *path;
    int format;
    int mode;
    double rate;
    int64_t count;
    bool follow;
    int64_t poll_ms;
    int64_t buffer;
    sluice_list tags;
    sluice_map labels;
    tls_cfg tls;
    int late;
    char *note;
} file_cfg;

static const char *const formats[] = {"json", "lines", "csv", NULL};
static const char *const modes[] = {"read", "follow", NULL};

static const sluice_option tls_opts[] = {
    {.name = "ca", .type = SLUICE_OPT_STRING, .offset = offsetof(tls_cfg, ca)},
    {.name = "verify", .type = SLUICE_OPT_BOOL, .default_value = "true",
     .offset = offsetof(tls_cfg, verify)},
    {.name = "timeout", .type = SLUICE_OPT_DURATION, .default_value = "5s",
     .offset = offsetof(tls_cfg, timeout_ms)},
    {.name = "port", .type = SLUICE_OPT_INT, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(tls_cfg, port)},
    {0}};

static const sluice_option file_opts[] = {
    {.name = "path", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(file_cfg, path)},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "json",
     .offset = offsetof(file_cfg, format), .choices = formats},
    {.name = "mode", .type = SLUICE_OPT_ENUM, .default_value = "read",
     .offset = offsetof(file_cfg, mode), .choices = modes},
    {.name = "rate", .type = SLUICE_OPT_DOUBLE, .default_value = "1.5",
     .offset = offsetof(file_cfg, rate)},
    {.name = "count", .type = SLUICE_OPT_INT, .default_value = "10",
     .offset = offsetof(file_cfg, count)},
    {.name = "follow", .type = SLUICE_OPT_BOOL, .default_value = "false",
     .offset = offsetof(file_cfg, follow)},
    {.name = "poll", .type = SLUICE_OPT_DURATION, .default_value = "250ms",
     .offset = offsetof(file_cfg, poll_ms)},
    {.name = "buffer", .type = SLUICE_OPT_SIZE, .default_value = "64KiB",
     .offset = offsetof(file_cfg, buffer)},
    {.name = "tags", .type = SLUICE_OPT_LIST, .default_value = "[a, b]",
     .offset = offsetof(file_cfg, tags)},
    {.name = "labels", .type = SLUICE_OPT_MAP, .offset = offsetof(file_cfg, labels)},
    {.name = "tls", .type = SLUICE_OPT_OBJECT, .offset = offsetof(file_cfg, tls),
     .fields = tls_opts},
    {.name = "late", .type = SLUICE_OPT_OUTPUT, .offset = offsetof(file_cfg, late)},
    {.name = "note", .type = SLUICE_OPT_STRING, .default_value = "hello",
     .offset = offsetof(file_cfg, note)},
    {0}};

static const sluice_plugin_def file_source = {
    SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR, sizeof(sluice_plugin_def),
    .name = "file", .kind = SLUICE_SOURCE, .config_size = sizeof(file_cfg),
    .options = file_opts};

typedef struct filter_cfg {
    char *where;
} filter_cfg;

static const sluice_option filter_opts[] = {
    {.name = "where", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(filter_cfg, where)},
    {0}};

static const sluice_plugin_def filter_operator = {
    SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR, sizeof(sluice_plugin_def),
    .name = "filter", .kind = SLUICE_OPERATOR, .config_size = sizeof(filter_cfg),
    .options = filter_opts};

typedef struct console_cfg {
    int format;
} console_cfg;

static const char *const console_formats[] = {"table", "json", NULL};

static const sluice_option console_opts[] = {
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "table",
     .offset = offsetof(console_cfg, format), .choices = console_formats},
    {0}};

static const sluice_plugin_def console_sink = {
    SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR, sizeof(sluice_plugin_def),
    .name = "console", .kind = SLUICE_SINK, .config_size = sizeof(console_cfg),
    .options = console_opts};

/* No options at all, no config struct. */
static const sluice_plugin_def bare_sink = {
    SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR, sizeof(sluice_plugin_def),
    .name = "bare", .kind = SLUICE_SINK};

/* A plugin whose default does not convert: a plugin bug, reported. */
typedef struct buggy_cfg {
    int64_t n;
} buggy_cfg;

static const sluice_option buggy_opts[] = {
    {.name = "n", .type = SLUICE_OPT_INT, .default_value = "many",
     .offset = offsetof(buggy_cfg, n)},
    {0}};

static const sluice_plugin_def buggy_source = {
    SLUICE_ABI_MAJOR, SLUICE_ABI_MINOR, sizeof(sluice_plugin_def),
    .name = "buggy", .kind = SLUICE_SOURCE, .config_size = sizeof(buggy_cfg),
    .options = buggy_opts};

static const sluice_plugin_def *const plugins[] = {&file_source, &filter_operator,
                                                   &console_sink, &bare_sink, &buggy_source};

static int lookups;

static const sluice_plugin_def *fake_lookup(void *ctx, const char *type, sluice_kind kind,
                                            char *err, size_t errlen)
{
    lookups++;
    if (strcmp(type, "abi") == 0) { /* what the real loader says for a bad .so */
        snprintf(err, errlen, "plugin ./abi.so was built for ABI 2.0, this sluice has 1.0");
        return NULL;
    }
    for (size_t i = 0; i < sizeof plugins / sizeof plugins[0]; i++)
        if (strcmp(plugins[i]->name, type) == 0 && plugins[i]->kind == kind)
            return plugins[i];
    return NULL; /* err left empty: the checker words it */
}

/* ---- Helpers ------------------------------------------------------------------ */

static char tmp_path[64];

/* Writes yaml to a temp file, reads and (when read) checks it. The diag
 * names the file "p.yaml" so messages can be compared exactly. */
static sl_pipeline_cfg *load(const char *yaml, const sl_override *ovr, size_t novr,
                             sl_diag *d, int *rc)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/sl-test-config-XXXXXX.yaml");
    int fd = mkstemps(tmp_path, 5);
    if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml))
        abort();
    close(fd);
    *d = (sl_diag){.file = "p.yaml"};
    sl_pipeline_cfg *cfg = sl_config_read(tmp_path, ovr, novr, d);
    *rc = cfg ? sl_config_check(cfg, fake_lookup, NULL, d) : -2;
    unlink(tmp_path);
    return cfg;
}

/* Loads yaml expecting exactly the given messages, in order (NULL-ended). */
static void expect(const char *what, const char *yaml, ...)
{
    sl_diag d;
    int rc;
    sl_pipeline_cfg *cfg = load(yaml, NULL, 0, &d, &rc);
    va_list ap;
    va_start(ap, yaml);
    size_t n = 0;
    bool same = true;
    for (const char *want; (want = va_arg(ap, const char *)); n++)
        if (n >= d.count || strcmp(d.messages[n], want) != 0) {
            same = false;
            printf("#   want [%zu] %s\n", n, want);
        }
    va_end(ap);
    ok(same && n == d.count && rc != 0, "%s", what);
    if (!same || n != d.count)
        for (size_t i = 0; i < d.count; i++)
            printf("#   got  [%zu] %s\n", i, d.messages[i]);
    sl_config_free(cfg);
    sl_diag_free(&d);
}

#define SINK "sinks:\n  out:\n    type: console\n    input: logs\n"
#define SOURCE "sources:\n  logs:\n    type: file\n    path: /x\n"

static const sl_stage_cfg *stage(const sl_pipeline_cfg *cfg, const char *name)
{
    for (size_t i = 0; cfg && i < cfg->nstages; i++)
        if (strcmp(cfg->stages[i].name, name) == 0)
            return &cfg->stages[i];
    return NULL;
}

/* ---- Error kinds ----------------------------------------------------------------- */

static void test_errors(void)
{
    expect("unknown type",
           "sources:\n  logs:\n    type: fiel\n    path: /x\n" SINK,
           "p.yaml:3:11: unknown source type 'fiel'", NULL);
    expect("loader's message for a bad plugin",
           "sources:\n  logs:\n    type: abi\n" SINK,
           "p.yaml:3:11: plugin ./abi.so was built for ABI 2.0, this sluice has 1.0", NULL);
    expect("unknown operator type", SOURCE
           "operators:\n  f:\n    type: nope\n    input: logs\n"
           "sinks:\n  out:\n    type: console\n    input: f\n",
           "p.yaml:7:11: unknown operator type 'nope'", NULL);
    expect("unknown option with a suggestion",
           "sources:\n  logs:\n    type: file\n    path: /x\n    formt: json\n" SINK,
           "p.yaml:5:5: unknown option 'formt' for file source (did you mean 'format'? "
           "known: path, format, mode, rate, count, follow, poll, buffer, tags, labels, tls, "
           "late, note)", NULL);
    expect("unknown option suggests a core key", SOURCE
           "sinks:\n  out:\n    type: console\n    inptu: logs\n",
           "p.yaml:7:5: missing required option 'input'",
           "p.yaml:8:5: unknown option 'inptu' for console sink (did you mean 'input'? known: "
           "format)", NULL);
    expect("unknown option, plugin without options", SOURCE
           "sinks:\n  out:\n    type: bare\n    input: logs\n    x: 1\n",
           "p.yaml:9:5: unknown option 'x' for bare sink (it takes no options of its own)", NULL);
    expect("core source key on a sink is unknown", SOURCE
           "sinks:\n  out:\n    type: console\n    input: logs\n    batch_size: 5\n",
           "p.yaml:9:5: unknown option 'batch_size' for console sink (known: format)", NULL);
    expect("wrong type: number",
           "sources:\n  logs:\n    type: file\n    path: /x\n    rate: fast\n" SINK,
           "p.yaml:5:11: option 'rate' expects a number, got 'fast'", NULL);
    expect("wrong type: integer",
           "sources:\n  logs:\n    type: file\n    path: /x\n    count: 1.5\n" SINK,
           "p.yaml:5:12: option 'count' expects an integer, got '1.5'", NULL);
    expect("wrong type: bool",
           "sources:\n  logs:\n    type: file\n    path: /x\n    follow: maybe\n" SINK,
           "p.yaml:5:13: option 'follow' expects true or false, got 'maybe'", NULL);
    expect("wrong type: string given a mapping",
           "sources:\n  logs:\n    type: file\n    path: {a: 1}\n" SINK,
           "p.yaml:4:11: option 'path' expects a string, got a mapping", NULL);
    expect("wrong type: string given a list",
           "sources:\n  logs:\n    type: file\n    path:\n      - a\n" SINK,
           "p.yaml:5:7: option 'path' expects a string, got a list", NULL);
    expect("wrong type: list of mappings",
           "sources:\n  logs:\n    type: file\n    path: /x\n    tags: [a, {b: 1}]\n" SINK,
           "p.yaml:5:15: option 'tags' expects a list of plain values, got a mapping", NULL);
    expect("wrong type: map given a scalar",
           "sources:\n  logs:\n    type: file\n    path: /x\n    labels: x\n" SINK,
           "p.yaml:5:13: option 'labels' expects a mapping of names to values, got 'x'", NULL);
    expect("wrong type: map value not scalar",
           "sources:\n  logs:\n    type: file\n    path: /x\n    labels: {a: [1]}\n" SINK,
           "p.yaml:5:17: option 'labels.a' expects a plain value, got a list", NULL);
    expect("wrong type: object given a scalar",
           "sources:\n  logs:\n    type: file\n    path: /x\n    tls: yes\n" SINK,
           "p.yaml:5:10: option 'tls' expects a mapping, got 'yes'", NULL);
    expect("nested object: unknown, wrong type, missing required",
           "sources:\n  logs:\n    type: file\n    path: /x\n    tls:\n      verify: sure\n"
           "      cert: x\n" SINK,
           "p.yaml:6:15: option 'tls.verify' expects true or false, got 'sure'",
           "p.yaml:7:7: unknown option 'tls.cert' for file source (known: ca, verify, timeout, "
           "port)",
           "p.yaml:6:7: missing required option 'tls.port'", NULL);
    expect("missing required option",
           "sources:\n  logs:\n    type: file\n    format: csv\n" SINK,
           "p.yaml:3:5: missing required option 'path'", NULL);
    expect("missing required option in a flow mapping",
           "sources:\n  logs: {type: file}\n" SINK,
           "p.yaml:2:9: missing required option 'path'", NULL);
    expect("option with no value",
           "sources:\n  logs:\n    type: file\n    path:\n" SINK,
           "p.yaml:4:10: option 'path' has no value", NULL);
    expect("bad duration",
           "sources:\n  logs:\n    type: file\n    path: /x\n    poll: 10 parsecs\n" SINK,
           "p.yaml:5:11: option 'poll' expects a duration like 250ms, 10s, 5m, 1h or 2d, "
           "got '10 parsecs'", NULL);
    expect("negative duration",
           "sources:\n  logs:\n    type: file\n    path: /x\n    poll: -5s\n" SINK,
           "p.yaml:5:11: option 'poll' expects a duration like 250ms, 10s, 5m, 1h or 2d, "
           "got '-5s'", NULL);
    expect("bad size",
           "sources:\n  logs:\n    type: file\n    path: /x\n    buffer: 12 parsecs\n" SINK,
           "p.yaml:5:13: option 'buffer' expects a size like 512KiB, 16MiB or 1GB, "
           "got '12 parsecs'", NULL);
    expect("bad enum",
           "sources:\n  logs:\n    type: file\n    path: /x\n    format: xml\n" SINK,
           "p.yaml:5:13: option 'format' expects one of json, lines, csv, got 'xml'", NULL);
    unsetenv("SL_TEST_UNSET");
    expect("unset environment variable",
           "sources:\n  logs:\n    type: file\n    path: /data/${SL_TEST_UNSET}/x\n" SINK,
           "p.yaml:4:11: environment variable SL_TEST_UNSET is not set", NULL);
    expect("duplicate stage name across sections",
           "sources:\n  logs:\n    type: file\n    path: /x\n"
           "sinks:\n  logs:\n    type: console\n    input: logs\n"
           "  out:\n    type: console\n    input: logs\n",
           "p.yaml:6:3: duplicate stage name 'logs' (a source at line 2)", NULL);
    expect("duplicate stage name within a section (YAML duplicate key)",
           "sources:\n  logs:\n    type: file\n    path: /x\n  logs:\n    type: file\n"
           "    path: /y\n" SINK,
           "p.yaml:5:3: duplicate key 'logs' (first at line 2)", NULL);
    expect("unknown top-level key",
           SOURCE SINK "sink:\n  x: 1\n",
           "p.yaml:9:1: unknown top-level key 'sink' (known: pipeline, checkpoint, metrics, "
           "plugin_path, shutdown_file, events_log, memory_limit, sources, operators, sinks)", NULL);
    expect("YAML syntax error",
           "sources:\n  logs:\n    type: file\n    path: [/x\n" SINK,
           "p.yaml:5:6: did not find expected ',' or ']' (while parsing a flow sequence "
           "started at 4:11)", NULL);
    expect("not a mapping", "- a\n- b\n",
           "p.yaml:1:1: a pipeline file is a mapping with sources:, sinks: and optionally "
           "operators:, not a list", NULL);
    expect("no sources, no sinks", "pipeline: x\n",
           "p.yaml: no sources: a pipeline needs at least one source (a `sources:` section)",
           "p.yaml: no sinks: a pipeline needs at least one sink (a `sinks:` section)", NULL);
    expect("empty sinks section", SOURCE "sinks:\n",
           "p.yaml:5:1: sinks is empty: a pipeline needs at least one sink", NULL);
    expect("bad stage name",
           "sources:\n  \"my logs\":\n    type: file\n    path: /x\n"
           "sinks:\n  out:\n    type: console\n    input: my logs\n",
           "p.yaml:2:3: stage name 'my logs' may only contain letters, digits, '_' and '-'",
           NULL);
    expect("stage without type",
           "sources:\n  logs:\n    path: /x\n" SINK,
           "p.yaml:2:3: stage 'logs' has no type", NULL);
    expect("stage that is not a mapping",
           "sources:\n  logs: file\n" SINK,
           "p.yaml:2:9: stage 'logs' expects a mapping with at least `type:`, got a plain value",
           NULL);
    expect("section that is not a mapping",
           "sources:\n  - logs\n" SINK,
           "p.yaml:2:3: sources expects a mapping of stage names to their settings, got a list",
           NULL);
    expect("plugin bug: bad default",
           "sources:\n  logs:\n    type: buggy\n" SINK,
           "p.yaml:3:5: plugin bug: the default 'many' of option 'n' is not valid (option 'n' "
           "expects an integer, got 'many')", NULL);
}

static void test_core_key_errors(void)
{
    expect("source with input",
           "sources:\n  logs:\n    type: file\n    path: /x\n    input: other\n" SINK,
           "p.yaml:5:5: a source takes no input", NULL);
    expect("sink without input", SOURCE "sinks:\n  out:\n    type: console\n",
           "p.yaml:7:5: missing required option 'input'", NULL);
    expect("input as a mapping", SOURCE "sinks:\n  out:\n    type: console\n    input: {a: 1}\n",
           "p.yaml:8:12: input expects a stage name or a list of names, got a mapping", NULL);
    expect("empty input list", SOURCE "sinks:\n  out:\n    type: console\n    input: []\n",
           "p.yaml:8:12: input is an empty list", NULL);
    expect("input listed twice", SOURCE
           "sinks:\n  out:\n    type: console\n    input: [logs, logs]\n",
           "p.yaml:8:19: input 'logs' is listed twice", NULL);
    expect("bad on_error",
           "sources:\n  logs:\n    type: file\n    path: /x\n    on_error: panic\n" SINK,
           "p.yaml:5:15: option 'on_error' expects one of skip, fail, got 'panic'", NULL);
    expect("batch_size out of range",
           "sources:\n  logs:\n    type: file\n    path: /x\n    batch_size: 0\n" SINK,
           "p.yaml:5:17: option 'batch_size' must be from 1 to 1048576, got 0", NULL);
    expect("batch_size too big",
           "sources:\n  logs:\n    type: file\n    path: /x\n    batch_size: 2000000\n" SINK,
           "p.yaml:5:17: option 'batch_size' must be from 1 to 1048576, got 2000000", NULL);
    expect("batch_size not a number",
           "sources:\n  logs:\n    type: file\n    path: /x\n    batch_size: lots\n" SINK,
           "p.yaml:5:17: option 'batch_size' expects an integer, got 'lots'", NULL);
    expect("event_time: bad format",
           "sources:\n  logs:\n    type: file\n    path: /x\n"
           "    event_time: {field: ts, format: rfc822}\n" SINK,
           "p.yaml:5:37: option 'event_time.format' expects one of epoch_ms, epoch_s, iso8601, "
           "got 'rfc822'", NULL);
    expect("event_time: mapping without field",
           "sources:\n  logs:\n    type: file\n    path: /x\n"
           "    event_time:\n      format: epoch_s\n" SINK,
           "p.yaml:6:7: missing required option 'event_time.field'", NULL);
    expect("event_time: unknown key",
           "sources:\n  logs:\n    type: file\n    path: /x\n"
           "    event_time: {field: ts, zone: UTC}\n" SINK,
           "p.yaml:5:29: unknown option 'event_time.zone' for file source (known: field, "
           "format)", NULL);
    expect("watermark: bad duration",
           "sources:\n  logs:\n    type: file\n    path: /x\n"
           "    watermark:\n      max_delay: soon\n" SINK,
           "p.yaml:6:18: option 'watermark.max_delay' expects a duration like 250ms, 10s, 5m, "
           "1h or 2d, got 'soon'", NULL);
    expect("errors output named like a stage",
           "sources:\n  logs:\n    type: file\n    path: /x\n    errors: out\n" SINK,
           "p.yaml:5:13: output name 'out' is already the name of a sink (line 7)", NULL);
    expect("two outputs with one name",
           "sources:\n  logs:\n    type: file\n    path: /x\n    errors: bad\n    late: bad\n"
           SINK,
           "p.yaml:6:11: output name 'bad' is already used by stage 'logs' (line 5)", NULL);
    expect("outputs of two stages with one name",
           "sources:\n  logs:\n    type: file\n    path: /x\n    errors: bad\n"
           "  more:\n    type: file\n    path: /y\n    errors: bad\n" SINK,
           "p.yaml:9:13: output name 'bad' is already used by stage 'logs' (line 5)", NULL);
    expect("bad output name",
           "sources:\n  logs:\n    type: file\n    path: /x\n    errors: [a]\n" SINK,
           "p.yaml:5:13: option 'errors' expects a stream name, got a list", NULL);
    expect("errors with a space in its name",
           "sources:\n  logs:\n    type: file\n    path: /x\n    errors: bad records\n" SINK,
           "p.yaml:5:13: option 'errors' expects a stream name (letters, digits, '_' and '-'), "
           "got 'bad records'", NULL);
    expect("top-level sections: checkpoint, metrics, pipeline",
           "pipeline: a/b\ncheckpoint:\n  interval: often\n  retain: 0\n  keep: 1\n"
           "metrics:\n  listen: [1]\n" SOURCE SINK,
           "p.yaml:1:11: pipeline name 'a/b' may only contain letters, digits, '.', '_' and '-'",
           "p.yaml:5:3: unknown key 'keep' in checkpoint (known: dir, interval, retain, timeout)",
           "p.yaml:3:13: checkpoint.interval expects a duration like 10s or 1m, got 'often'",
           "p.yaml:4:11: checkpoint.retain expects a whole number from 1, got '0'",
           "p.yaml:7:11: metrics.listen expects host:port or false, got a list", NULL);
}

/* Many mistakes in one file: all reported in one run, in file order per stage. */
static void test_all_collected(void)
{
    expect("every error collected",
           "sources:\n"
           "  logs:\n"
           "    type: file\n"
           "    rate: fast\n"
           "    format: xml\n"
           "operators:\n"
           "  f:\n"
           "    type: filtr\n"
           "    input: logs\n"
           "sinks:\n"
           "  out:\n"
           "    type: console\n"
           "    input: f\n"
           "    colour: red\n"
           "bogus: 1\n",
           "p.yaml:15:1: unknown top-level key 'bogus' (known: pipeline, checkpoint, metrics, "
           "plugin_path, shutdown_file, events_log, memory_limit, sources, operators, sinks)",
           "p.yaml:4:11: option 'rate' expects a number, got 'fast'",
           "p.yaml:5:13: option 'format' expects one of json, lines, csv, got 'xml'",
           "p.yaml:3:5: missing required option 'path'",
           "p.yaml:8:11: unknown operator type 'filtr'",
           "p.yaml:14:5: unknown option 'colour' for console sink (known: format)", NULL);
}

/* ---- Good pipelines ------------------------------------------------------------- */

static void test_good_pipeline(void)
{
    setenv("SL_TEST_DIR", "/var/data", 1);
    unsetenv("SL_TEST_UNSET");
    const char *yaml =
        "pipeline: log-analysis\n"
        "checkpoint:\n"
        "  dir: /tmp/ck\n"
        "  interval: 10s\n"
        "  retain: 5\n"
        "metrics:\n"
        "  listen: 127.0.0.1:9999\n"
        "plugin_path: [./plugins, /opt/sluice]\n"
        "sources:\n"
        "  logs:\n"
        "    type: file\n"
        "    path: ${SL_TEST_DIR}/access.jsonl\n"
        "    format: CSV\n"
        "    mode: follow\n"
        "    rate: 2.5\n"
        "    count: -3\n"
        "    follow: yes\n"
        "    poll: 1m30s\n"
        "    buffer: 16MiB\n"
        "    tags: solo\n"
        "    labels: {env: prod, team: \"${SL_TEST_UNSET:-core}\"}\n"
        "    tls:\n"
        "      port: 443\n"
        "      ca: /etc/ca.pem\n"
        "    errors: bad_lines\n"
        "    late: late_events\n"
        "    on_error: fail\n"
        "    batch_size: 100\n"
        "    event_time: {field: timestamp, format: epoch_ms}\n"
        "    watermark: {max_delay: 10s, idle_timeout: 30s}\n"
        "operators:\n"
        "  errors_only:\n"
        "    type: filter\n"
        "    input: logs\n"
        "    where: status_code >= 400\n"
        "sinks:\n"
        "  out:\n"
        "    type: console\n"
        "    input: [errors_only, bad_lines, late_events]\n"
        "    format: json\n";
    sl_diag d;
    int rc;
    sl_pipeline_cfg *cfg = load(yaml, NULL, 0, &d, &rc);
    is_int(rc, 0, "good pipeline checks");
    sl_diag_print(&d);
    if (!cfg || rc != 0) {
        sl_config_free(cfg);
        sl_diag_free(&d);
        return;
    }
    is_str(cfg->name, "log-analysis", "pipeline name");
    is_str(cfg->checkpoint_dir, "/tmp/ck", "checkpoint.dir");
    is_int(cfg->checkpoint_interval_ms, 10000, "checkpoint.interval");
    is_int(cfg->checkpoint_retain, 5, "checkpoint.retain");
    is_str(cfg->metrics_listen, "127.0.0.1:9999", "metrics.listen");
    is_int(cfg->nplugin_path, 2, "two plugin folders");
    is_str(cfg->plugin_path[0], "/tmp/./plugins", "relative folder resolved at the file's folder");
    is_str(cfg->plugin_path[1], "/opt/sluice", "absolute folder kept");
    is_int(cfg->nstages, 3, "three stages");
    is_str(cfg->stages[0].name, "logs", "sources first");
    is_str(cfg->stages[1].name, "errors_only", "then operators");
    is_str(cfg->stages[2].name, "out", "then sinks");

    const sl_stage_cfg *st = &cfg->stages[0];
    const file_cfg *fc = st->config;
    ok(st->def == &file_source, "def resolved");
    is_int(st->kind, SLUICE_SOURCE, "kind");
    is_str(st->type, "file", "type");
    is_str(fc->path, "/var/data/access.jsonl", "STRING with ${VAR}");
    is_int(fc->format, 2, "ENUM index (case-insensitive)");
    is_int(fc->mode, 1, "ENUM follow");
    ok(fc->rate == 2.5, "DOUBLE");
    is_int(fc->count, -3, "INT");
    ok(fc->follow, "BOOL yes");
    is_int(fc->poll_ms, 90000, "DURATION 1m30s");
    is_int(fc->buffer, 16777216, "SIZE 16MiB");
    is_int(fc->tags.count, 1, "LIST from a scalar");
    is_str(fc->tags.items[0], "solo", "LIST item");
    is_int(fc->labels.count, 2, "MAP of two");
    is_str(fc->labels.keys[0], "env", "MAP key in file order");
    is_str(fc->labels.values[0], "prod", "MAP value");
    is_str(fc->labels.keys[1], "team", "second MAP key");
    is_str(fc->labels.values[1], "core", "${VAR:-default} in a value");
    is_int(fc->tls.port, 443, "OBJECT field");
    is_str(fc->tls.ca, "/etc/ca.pem", "OBJECT string field");
    ok(fc->tls.verify, "OBJECT field default");
    is_int(fc->tls.timeout_ms, 5000, "OBJECT duration default");
    is_str(fc->note, "hello", "STRING default");
    is_int(st->noutputs, 2, "two extra outputs");
    is_str(st->outputs[0], "bad_lines", "errors output first");
    is_str(st->outputs[1], "late_events", "then the OUTPUT option");
    is_int(st->errors_output, 0, "errors_output index");
    is_int(fc->late, 1, "OUTPUT option holds its index");
    is_int(st->output_nodes[1]->line, 26, "output node position");
    ok(st->on_error_fail, "on_error: fail");
    is_int(st->batch_size, 100, "batch_size");
    is_str(st->event_time_field, "timestamp", "event_time.field");
    is_int(st->event_time_format, SL_TIME_EPOCH_MS, "event_time.format");
    is_int(st->max_delay_ms, 10000, "watermark.max_delay");
    is_int(st->idle_timeout_ms, 30000, "watermark.idle_timeout");
    is_int(st->ninputs, 0, "a source has no inputs");

    st = &cfg->stages[1];
    is_str(((const filter_cfg *)st->config)->where, "status_code >= 400", "filter where");
    is_int(st->ninputs, 1, "one input");
    is_str(st->inputs[0], "logs", "input name");
    is_int(st->input_nodes[0]->line, 34, "input node line");
    is_int(st->input_nodes[0]->col, 12, "input node col");
    is_int(st->errors_output, -1, "no errors output");
    ok(!st->on_error_fail, "on_error defaults to skip");

    st = &cfg->stages[2];
    is_int(((const console_cfg *)st->config)->format, 1, "console format json");
    is_int(st->ninputs, 3, "input list of three");
    is_str(st->inputs[2], "late_events", "an extra output as input");
    is_int(st->input_nodes[1]->col, 26, "second input col");

    /* Positions for host->config_error(). */
    st = &cfg->stages[0];
    const sl_node *n = sl_stage_option_node(st, "event_time.field");
    is_str(n->value, "timestamp", "option node: dotted path");
    is_int(n->line, 29, "option node line");
    n = sl_stage_option_node(st, "tls.port");
    is_int(n->line, 23, "nested option node");
    n = sl_stage_option_node(st, "nope");
    ok(n == st->node, "absent option: the stage node");
    n = sl_stage_option_node(st, "tls.nope");
    ok(n == sl_node_get(st->node, "tls"), "partly absent: the deepest node found");

    sl_config_free(cfg);
    sl_diag_free(&d);
}

static void test_defaults(void)
{
    sl_diag d;
    int rc;
    sl_pipeline_cfg *cfg = load(SOURCE "sinks:\n  out:\n    type: bare\n    input: logs\n",
                                NULL, 0, &d, &rc);
    is_int(rc, 0, "minimal pipeline checks");
    sl_diag_print(&d);
    if (!cfg || rc != 0) {
        sl_config_free(cfg);
        sl_diag_free(&d);
        return;
    }
    ok(strncmp(cfg->name, "sl-test-config-", 15) == 0 && !strchr(cfg->name, '.'),
       "default pipeline name: the file's base name without .yaml (%s)", cfg->name);
    is_str(cfg->checkpoint_dir, "./.sluice/checkpoints", "default checkpoint dir");
    is_int(cfg->checkpoint_interval_ms, 0, "no periodic checkpoints by default");
    is_int(cfg->checkpoint_retain, 3, "default retain");
    is_str(cfg->metrics_listen, "127.0.0.1:9464", "metrics on loopback by default");
    ok(cfg->metrics_default, "... marked as the default (a busy port only warns)");
    is_int(cfg->nplugin_path, 0, "no plugin path");
    const sl_stage_cfg *st = &cfg->stages[0];
    const file_cfg *fc = st->config;
    is_int(fc->format, 0, "ENUM default");
    is_int(fc->mode, 0, "second ENUM default");
    ok(fc->rate == 1.5, "DOUBLE default");
    is_int(fc->count, 10, "INT default");
    ok(!fc->follow, "BOOL default");
    is_int(fc->poll_ms, 250, "DURATION default");
    is_int(fc->buffer, 65536, "SIZE default");
    is_int(fc->tags.count, 2, "LIST default from YAML text");
    is_str(fc->tags.items[1], "b", "LIST default item");
    is_int(fc->labels.count, 0, "MAP absent: empty");
    ok(fc->tls.ca == NULL, "STRING absent: NULL");
    ok(fc->tls.verify, "absent OBJECT still gets its fields' defaults");
    is_int(fc->tls.timeout_ms, 5000, "absent OBJECT duration default");
    is_int(fc->late, -1, "OUTPUT absent: -1");
    is_int(st->noutputs, 0, "no outputs");
    is_int(st->errors_output, -1, "no errors output");
    is_int(st->batch_size, 4096, "default batch_size");
    ok(st->event_time_field == NULL, "no event_time");
    is_int(st->event_time_format, SL_TIME_ISO8601, "default time format");
    is_int(st->max_delay_ms, 0, "default max_delay");
    is_int(st->idle_timeout_ms, 0, "default idle_timeout");
    ok(cfg->stages[1].config != NULL, "a config even for config_size 0");
    sl_config_free(cfg);
    sl_diag_free(&d);
}

static void test_top_level_variants(void)
{
    sl_diag d;
    int rc;
    sl_pipeline_cfg *cfg = load("metrics:\n  listen: false\nplugin_path: ext\n"
                                "operators:\n" SOURCE SINK, NULL, 0, &d, &rc);
    is_int(rc, 0, "variants check");
    sl_diag_print(&d);
    ok(cfg && cfg->metrics_listen == NULL, "listen: false");
    ok(cfg && cfg->nplugin_path == 1 && strcmp(cfg->plugin_path[0], "/tmp/ext") == 0,
       "plugin_path as one string");
    sl_config_free(cfg);
    sl_diag_free(&d);

    cfg = load("metrics:\n  listen: true\n" SOURCE SINK, NULL, 0, &d, &rc);
    is_str(cfg ? cfg->metrics_listen : NULL, "127.0.0.1:9464",
           "listen: true = the default address");
    sl_config_free(cfg);
    sl_diag_free(&d);

    /* event_time as a plain string = the field; on a second source. */
    cfg = load("sources:\n  logs:\n    type: file\n    path: /x\n    event_time: ts\n"
               "    watermark: {max_delay: 2s}\n" SINK, NULL, 0, &d, &rc);
    is_int(rc, 0, "event_time string form checks");
    sl_diag_print(&d);
    const sl_stage_cfg *st = stage(cfg, "logs");
    is_str(st ? st->event_time_field : NULL, "ts", "event_time: ts");
    is_int(st ? (int)st->event_time_format : -1, SL_TIME_ISO8601, "format default iso8601");
    is_int(st ? st->max_delay_ms : -1, 2000, "watermark.max_delay");
    is_int(st ? st->idle_timeout_ms : -1, 0, "idle_timeout default");
    sl_config_free(cfg);
    sl_diag_free(&d);

    /* Anchors and merge keys across stages. */
    cfg = load("sources:\n  a: &src\n    type: file\n    path: /x\n    format: lines\n"
               "  b:\n    <<: *src\n    path: /y\n"
               "sinks:\n  out:\n    type: console\n    input: [a, b]\n", NULL, 0, &d, &rc);
    is_int(rc, 0, "merge keys check");
    sl_diag_print(&d);
    st = stage(cfg, "b");
    ok(st && strcmp(((const file_cfg *)st->config)->path, "/y") == 0, "own key wins");
    ok(st && ((const file_cfg *)st->config)->format == 1, "merged key applies");
    sl_config_free(cfg);
    sl_diag_free(&d);
}

static void test_overrides(void)
{
    const sl_override ovr[] = {
        {"sources.logs.path", "/from/cli"},
        {"sources.logs.format", "lines"},
        {"sources.extra.type", "file"},
        {"sources.extra.path", "/e"},
        {"operators.f.type", "filter"},  /* `operators:` is empty in the file */
        {"operators.f.input", "logs"},
        {"operators.f.where", "x > 1"},
        {"sinks.out.input", "f"},
        {"pipeline", "from-cli"},
        {"checkpoint.interval", "1m"},
    };
    sl_diag d;
    int rc;
    sl_pipeline_cfg *cfg = load(SOURCE "operators:\n" SINK, ovr, sizeof ovr / sizeof ovr[0],
                                &d, &rc);
    is_int(rc, 0, "overrides check");
    sl_diag_print(&d);
    const sl_stage_cfg *st = stage(cfg, "logs");
    is_str(st ? ((const file_cfg *)st->config)->path : NULL, "/from/cli", "value replaced");
    is_int(st ? ((const file_cfg *)st->config)->format : -1, 1, "value added");
    st = stage(cfg, "extra");
    ok(st && st->kind == SLUICE_SOURCE, "stage created by --set");
    st = stage(cfg, "f");
    ok(st && st->kind == SLUICE_OPERATOR && st->ninputs == 1,
       "operator created in an empty section");
    st = stage(cfg, "out");
    is_str(st && st->ninputs ? st->inputs[0] : NULL, "f", "input overridden");
    is_str(cfg ? cfg->name : NULL, "from-cli", "top-level scalar overridden");
    is_int(cfg ? cfg->checkpoint_interval_ms : -1, 60000, "nested mapping created");
    sl_config_free(cfg);
    sl_diag_free(&d);

    const sl_override bad[] = {
        {"sources.logs.rate", "fast"},
        {"sources.logs.path.deeper", "x"},
        {"sources..x", "y"},
        {"plugin_path.x", "y"},
    };
    cfg = load("plugin_path: [a]\n" SOURCE SINK, bad, sizeof bad / sizeof bad[0], &d, &rc);
    ok(rc != 0, "bad overrides fail");
    const char *want[] = {
        "--set: cannot set 'sources.logs.path.deeper': 'path' is a plain value, not a mapping",
        "--set: 'sources..x' is not a key path like sources.logs.path",
        "--set: cannot set 'plugin_path.x': 'plugin_path' is a list, not a mapping",
        "--set: option 'rate' expects a number, got 'fast'",
    };
    is_int(d.count, 4, "four override problems");
    for (size_t i = 0; i < 4 && i < d.count; i++)
        is_str(d.messages[i], want[i], "override message %zu", i);
    sl_config_free(cfg);
    sl_diag_free(&d);
}

static void test_unreadable(void)
{
    sl_diag d = {0};
    sl_pipeline_cfg *cfg = sl_config_read("/nonexistent/pipeline.yaml", NULL, 0, &d);
    ok(cfg == NULL, "missing file: NULL");
    is_str(d.count ? d.messages[0] : NULL,
           "/nonexistent/pipeline.yaml: cannot open: No such file or directory",
           "missing file message, diag->file defaults to the path");
    sl_diag_free(&d);
}

/* sl_options_fill on its own, without a stage. */
static void test_options_fill_direct(void)
{
    sl_diag d = {.file = "o.yaml"};
    const char *text = "path: /p\ntags: [x, y, z]\nlate: l\n";
    sl_node *map = sl_yaml_parse_string(text, strlen(text), &d);
    file_cfg fc;
    memset(&fc, 0, sizeof fc);
    const char *const ignore[] = {"unused", NULL};
    int rc = sl_options_fill(file_opts, map, &fc, ignore, NULL, &d);
    is_int(rc, 0, "fill without a stage");
    is_str(fc.path, "/p", "path");
    is_int(fc.tags.count, 3, "list of three");
    is_int(fc.late, -1, "OUTPUT without a stage: -1");
    sl_options_free(file_opts, &fc);
    ok(fc.path == NULL && fc.tags.items == NULL && fc.note == NULL, "free clears pointers");
    sl_options_free(file_opts, &fc); /* twice is harmless */
    sl_node_free(map);

    text = "- a\n";
    map = sl_yaml_parse_string(text, strlen(text), &d);
    memset(&fc, 0, sizeof fc);
    rc = sl_options_fill(file_opts, map, &fc, NULL, NULL, &d);
    ok(rc != 0, "a list is not a mapping of options");
    is_str(d.count ? d.messages[0] : NULL, "o.yaml:1:1: expected a mapping of options, got a list",
           "message");
    sl_options_free(file_opts, &fc);
    sl_node_free(map);
    sl_diag_free(&d);
}

/* ---- 1.3 option types: any value as JSON, lists of objects ------------------- */

typedef struct metric_item {
    char *name;
    char *value;
    sluice_map labels;
    char *help;
} metric_item;

typedef struct push_cfg {
    char *config;
    sluice_objects metrics;
    char *fallback;
} push_cfg;

static const sluice_option metric_item_opts[] = {
    {.name = "name", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(metric_item, name)},
    {.name = "value", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(metric_item, value)},
    {.name = "labels", .type = SLUICE_OPT_MAP, .offset = offsetof(metric_item, labels)},
    {.name = "help", .type = SLUICE_OPT_STRING, .default_value = "from records",
     .offset = offsetof(metric_item, help)},
    SLUICE_OPTIONS_END_SIZED(metric_item)};

static const sluice_option push_opts[] = {
    {.name = "config", .type = SLUICE_OPT_JSON, .offset = offsetof(push_cfg, config)},
    {.name = "metrics", .type = SLUICE_OPT_OBJECT_LIST, .offset = offsetof(push_cfg, metrics),
     .fields = metric_item_opts},
    {.name = "fallback", .type = SLUICE_OPT_JSON, .default_value = "{a: [1, x]}",
     .offset = offsetof(push_cfg, fallback)},
    {0}};

static int fill_push(const char *text, push_cfg *pc, sl_diag *d)
{
    sl_node *map = sl_yaml_parse_string(text, strlen(text), d);
    memset(pc, 0, sizeof *pc);
    int rc = map ? sl_options_fill(push_opts, map, pc, NULL, NULL, d) : -1;
    sl_node_free(map);
    return rc;
}

static void test_json_and_object_lists(void)
{
    sl_diag d = {.file = "p.yaml"};
    push_cfg pc;
    int rc = fill_push("config: {i: 42, neg: -7, f: 4.5, whole: 2.0, exp: 1e3, t: true, "
                       "F: False, n: null, tilde: ~, s: hello, q: '42', qt: \"true\", "
                       "list: [1, [2], {}], \"k\\\"ey\": \"a\\tb\"}\n"
                       "metrics:\n"
                       "  - {name: rt, value: avg_rt, labels: {service: service}}\n"
                       "  - name: errors\n"
                       "    value: n\n"
                       "    help: errors seen\n",
                       &pc, &d);
    is_int(rc, 0, "json and object list fill");
    is_str(pc.config,
           "{\"i\":42,\"neg\":-7,\"f\":4.5,\"whole\":2.0,\"exp\":1000.0,\"t\":true,"
           "\"F\":false,\"n\":null,\"tilde\":null,\"s\":\"hello\",\"q\":\"42\","
           "\"qt\":\"true\",\"list\":[1,[2],{}],\"k\\\"ey\":\"a\\tb\"}",
           "JSON: typed plain scalars, quoted strings, floats stay floats, nesting, escapes");
    is_str(pc.fallback, "{\"a\":[1,\"x\"]}", "a JSON default");
    is_int(pc.metrics.count, 2, "two items");
    metric_item *a = pc.metrics.count > 1 ? pc.metrics.items[0] : NULL;
    metric_item *b = pc.metrics.count > 1 ? pc.metrics.items[1] : NULL;
    is_str(a ? a->name : NULL, "rt", "item 0 name");
    is_str(a && a->labels.count ? a->labels.values[0] : NULL, "service", "item 0 labels");
    is_str(a ? a->help : NULL, "from records", "item 0 gets the field's default");
    is_str(b ? b->help : NULL, "errors seen", "item 1 help");
    sl_options_free(push_opts, &pc);
    ok(pc.config == NULL && pc.metrics.items == NULL, "free clears them");

    rc = fill_push("config: 7\nmetrics: {name: one, value: v}\n", &pc, &d);
    is_int(rc, 0, "a scalar config, one mapping as a list of one");
    is_str(pc.config, "7", "scalar JSON");
    is_int(pc.metrics.count, 1, "one item");
    sl_options_free(push_opts, &pc);

    rc = fill_push("metrics:\n  - {name: x}\n  - 5\n  - {name: y, value: v, bogus: 1}\n",
                   &pc, &d);
    ok(rc != 0, "bad items are errors");
    is_int(d.count, 3, "three problems");
    is_str(d.count > 0 ? d.messages[0] : NULL,
           "p.yaml:2:5: missing required option 'metrics.0.value'", "missing field, at the item");
    is_str(d.count > 1 ? d.messages[1] : NULL,
           "p.yaml:3:5: option 'metrics.1' expects a mapping, got '5'", "not a mapping");
    static const char unknown[] = "p.yaml:4:25: unknown option 'metrics.2.bogus'";
    ok(d.count > 2 && strncmp(d.messages[2], unknown, sizeof unknown - 1) == 0,
       "unknown key in an item: %s", d.count > 2 ? d.messages[2] : "");
    sl_options_free(push_opts, &pc);
    sl_diag_free(&d);

    d = (sl_diag){.file = "p.yaml"};
    rc = fill_push("metrics: 3\n", &pc, &d);
    is_str(d.count ? d.messages[0] : NULL,
           "p.yaml:1:10: option 'metrics' expects a list of mappings, got '3'", "not a list");
    sl_options_free(push_opts, &pc);
    sl_diag_free(&d);
}

int main(void)
{
    test_errors();
    test_core_key_errors();
    test_all_collected();
    test_good_pipeline();
    test_defaults();
    test_top_level_variants();
    test_overrides();
    test_unreadable();
    test_options_fill_direct();
    test_json_and_object_lists();
    ok(lookups > 0, "the lookup was used");
    return tap_done();
}
