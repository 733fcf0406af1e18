/*
 * fuzz_yaml.c — libFuzzer target for the pipeline loader: the YAML reader
 * (core/yaml.c: anchors, aliases, merge keys, ${ENV} and ${ENV:-default}),
 * the pipeline checker (core/config.c) with every built-in plugin's option
 * table (core/options.c: durations, sizes, enums, lists, maps, objects),
 * and the graph builder (core/graph.c).
 *
 * Each input is a pipeline file. It is parsed alone with
 * sl_yaml_parse_string() (the tree is walked: every node positioned, every
 * map key a scalar), then written to an in-memory file and loaded as
 * `sluice validate` loads a pipeline: sl_config_read() (with --set
 * overrides taken from lines "#set key.path=value" of the input, comments
 * to YAML), sl_config_check() against the built-in plugins, and, when that
 * passes, sl_graph_build() and the DOT output. Every diagnostic must be a
 * "file:line:col: message" (or "file: message", "--set: message") line.
 *
 * A few variables are set for ${...} to find: FUZZ_DIR, FUZZ_PORT,
 * FUZZ_SIZE, FUZZ_DURATION, FUZZ_EMPTY (set, empty) and FUZZ_LIST; any
 * other name is unset. The plugin lookup knows only the built-ins, so no
 * input can make the target dlopen() a file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "builtin.h"
#include "config.h"
#include "fuzz_check.h"
#include "graph.h"
#include "yaml.h"

#define MAX_INPUT (64 * 1024)
#define MAX_OVERRIDES 4

static int pipeline_fd = -1;
static char pipeline_path[64];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("FUZZ_DIR", "/tmp/sluice-fuzz", 1);
    setenv("FUZZ_PORT", "127.0.0.1:9464", 1);
    setenv("FUZZ_SIZE", "16MiB", 1);
    setenv("FUZZ_DURATION", "1m30s", 1);
    setenv("FUZZ_EMPTY", "", 1);
    setenv("FUZZ_LIST", "[a, b]", 1);
    /* A pipeline may name files (password_file: /dev/stdin): never wait
     * on a terminal. */
    if (!freopen("/dev/null", "r", stdin))
        abort();
    pipeline_fd = memfd_create("pipeline.yaml", MFD_CLOEXEC);
    if (pipeline_fd < 0)
        abort();
    snprintf(pipeline_path, sizeof pipeline_path, "/proc/self/fd/%d", pipeline_fd);
    devnull = fopen("/dev/null", "w");
    if (!devnull)
        abort();
    return 0;
}

/* The built-in plugins only, as loader.c finds them (by name, then kind). */
static const sluice_plugin_def *lookup(void *arg, const char *type, sluice_kind kind, char *err,
                                       size_t errlen)
{
    (void)arg;
    bool other_kind = false;
    for (const sluice_plugin_def *const *b = sl_builtin_plugins; *b; b++) {
        if (strcmp((*b)->name, type) != 0)
            continue;
        if ((*b)->kind == kind)
            return *b;
        other_kind = true;
    }
    if (other_kind)
        snprintf(err, errlen, "plugin '%s' is not of this kind", type);
    return NULL;
}

static void check_tree(const sl_node *n, int depth)
{
    if (depth > 1000)
        fuzz_fail("tree deeper than the parser's limit");
    if (n->line < 1 || n->col < 1)
        fuzz_fail("a node at %d:%d", n->line, n->col);
    switch (n->kind) {
    case SL_NODE_SCALAR:
        if (!n->value)
            fuzz_fail("a scalar without text");
        (void)strlen(n->value);
        (void)sl_node_is_null(n);
        return;
    case SL_NODE_MAP:
        for (size_t i = 0; i < n->count; i++) {
            if (!n->keys[i] || n->keys[i]->kind != SL_NODE_SCALAR)
                fuzz_fail("a map key that is not a scalar");
            if (sl_node_get(n, n->keys[i]->value) == NULL)
                fuzz_fail("a key that sl_node_get() cannot find");
            check_tree(n->keys[i], depth + 1);
            check_tree(n->items[i], depth + 1);
        }
        return;
    case SL_NODE_SEQ:
        for (size_t i = 0; i < n->count; i++)
            check_tree(n->items[i], depth + 1);
        return;
    }
    fuzz_fail("a node of kind %d", (int)n->kind);
}

static void check_diag(const sl_diag *d, const char *file)
{
    size_t flen = strlen(file);
    for (size_t i = 0; i < d->count; i++) {
        const char *m = d->messages[i];
        if (strncmp(m, "--set: ", 7) == 0)
            continue;
        if (strncmp(m, file, flen) != 0 || m[flen] != ':')
            fuzz_fail("a diagnostic without the file: '%s'", m);
    }
}

/* "#set path=value" lines: --set overrides (pointers into text). */
static size_t find_overrides(char *text, sl_override *ovr)
{
    size_t n = 0;
    for (char *l = text; l && n < MAX_OVERRIDES; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, "#set ", 5) != 0)
            continue;
        char *eol = strchr(l, '\n'), *eq = strchr(l + 5, '=');
        if (!eq || (eol && eq > eol))
            continue;
        ovr[n].path = l + 5;
        ovr[n].value = eq + 1;
        n++;
    }
    /* Cut them apart only now: the scan above needs the newlines. */
    for (size_t i = 0; i < n; i++) {
        *strchr(ovr[i].path, '=') = '\0';
        char *eol = strchr(ovr[i].value, '\n');
        if (eol)
            *eol = '\0';
    }
    return n;
}

static void load_pipeline(const uint8_t *data, size_t size)
{
    if (ftruncate(pipeline_fd, 0) != 0 || pwrite(pipeline_fd, data, size, 0) != (ssize_t)size)
        abort();
    char *text = fuzz_exact_copy(data, size, 1);
    sl_override ovr[MAX_OVERRIDES];
    size_t novr = strlen(text) == size ? find_overrides(text, ovr) : 0;

    sl_diag diag = {0};
    sl_pipeline_cfg *cfg = sl_config_read(pipeline_path, ovr, novr, &diag);
    if (cfg) {
        int rc = sl_config_check(cfg, lookup, NULL, &diag);
        if (rc == 0 && diag.count)
            fuzz_fail("sl_config_check passed with diagnostics");
        if (rc != 0 && !diag.count)
            fuzz_fail("sl_config_check failed without a diagnostic");
        for (size_t i = 0; i < cfg->nstages; i++) {
            const sl_stage_cfg *st = &cfg->stages[i];
            (void)sl_stage_option_node(st, "path");
            (void)sl_stage_option_node(st, "metrics.0.value");
            (void)sl_stage_option_node(st, "properties.linger.ms");
        }
        if (rc == 0) {
            sl_graph *g = sl_graph_build(cfg, &diag);
            if (g) {
                sl_graph_dot(g, devnull);
                sl_graph_free(g);
            } else if (!diag.count) {
                fuzz_fail("sl_graph_build failed without a diagnostic");
            }
        }
        sl_config_free(cfg);
    } else if (!diag.count) {
        fuzz_fail("sl_config_read failed without a diagnostic");
    }
    check_diag(&diag, pipeline_path);
    sl_diag_free(&diag);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    sl_diag diag = {0};
    sl_node *root = sl_yaml_parse_string((const char *)data, size, &diag);
    if (root)
        check_tree(root, 0);
    else if (!diag.count)
        fuzz_fail("sl_yaml_parse_string failed without a diagnostic");
    check_diag(&diag, "<string>");
    sl_node_free(root);
    sl_diag_free(&diag);

    load_pipeline(data, size);
    return 0;
}
