/* test_graph.c — the DAG builder: inputs resolved to streams, fan-in and
 * fan-out, topological order, and each graph error with its line:col. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "graph.h"
#include "tap.h"

static int create(const sluice_host *h, sluice_ctx *c, const void *cfg, void **self, char *e,
                  size_t n)
{
    return SLUICE_OK;
}

static const sluice_option no_options[] = {{.name = NULL}};
static const sluice_plugin_def src = {.abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR, .size = sizeof(sluice_plugin_def), .name = "gen",
    .kind = SLUICE_SOURCE, .version = "1", .description = "", .config_size = 8,
    .options = no_options, .create = create};
static const sluice_plugin_def op = {.abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR, .size = sizeof(sluice_plugin_def), .name = "op",
    .kind = SLUICE_OPERATOR, .version = "1", .description = "", .config_size = 8,
    .options = no_options, .create = create};
static const sluice_plugin_def snk = {.abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR, .size = sizeof(sluice_plugin_def), .name = "out",
    .kind = SLUICE_SINK, .version = "1", .description = "", .config_size = 8,
    .options = no_options, .create = create};

static const sluice_plugin_def *lookup(void *ctx, const char *type, sluice_kind kind, char *err,
                                       size_t n)
{
    const sluice_plugin_def *d = kind == SLUICE_SOURCE ? &src : kind == SLUICE_OPERATOR ? &op : &snk;
    if (strcmp(d->name, type) == 0)
        return d;
    snprintf(err, n, "unknown type '%s'", type);
    return NULL;
}

/* Load YAML text into a checked config and build its graph. */
static sl_graph *build(const char *yaml, sl_pipeline_cfg **cfgp, sl_diag *diag)
{
    char path[] = "/tmp/sluice-graph-XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    if (fd < 0 || write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml))
        abort();
    close(fd);
    memset(diag, 0, sizeof *diag);
    diag->file = "p.yaml";
    *cfgp = sl_config_read(path, NULL, 0, diag);
    unlink(path);
    if (!*cfgp)
        return NULL;
    if (sl_config_check(*cfgp, lookup, NULL, diag) != 0)
        return NULL;
    return sl_graph_build(*cfgp, diag);
}

static bool has_diag(const sl_diag *d, const char *want)
{
    for (size_t i = 0; i < d->count; i++)
        if (strstr(d->messages[i], want))
            return true;
    for (size_t i = 0; i < d->count; i++)
        printf("#   diag: %s\n", d->messages[i]);
    return false;
}

static size_t stage_index(const sl_pipeline_cfg *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nstages; i++)
        if (strcmp(cfg->stages[i].name, name) == 0)
            return i;
    return (size_t)-1;
}

static void test_fan_in_out(void)
{
    sl_pipeline_cfg *cfg;
    sl_diag d;
    sl_graph *g = build("sources:\n"
                        "  a: {type: gen, errors: bad}\n"
                        "  b: {type: gen}\n"
                        "operators:\n"
                        "  both: {type: op, input: [a, b]}\n"
                        "sinks:\n"
                        "  s1: {type: out, input: both}\n"
                        "  s2: {type: out, input: [both, a]}\n"
                        "  s3: {type: out, input: bad}\n",
                        &cfg, &d);
    ok(g != NULL, "a fan-in, fan-out graph builds");
    if (!g) {
        sl_diag_print(&d);
        return;
    }
    size_t a = stage_index(cfg, "a"), both = stage_index(cfg, "both"), s2 = stage_index(cfg, "s2");
    size_t s3 = stage_index(cfg, "s3");
    is_int(g->stages[both].inputs[0].stage, a, "both's input 0 is a");
    is_int(g->stages[a].nconsumers[0], 2, "a's main output feeds two stages");
    is_int(g->stages[a].noutputs, 2, "a has an extra output for its errors");
    is_int(g->stages[a].nconsumers[1], 1, "which one stage consumes");
    is_int(g->stages[a].consumers[1][0].stage, s3, "s3 takes a's errors");
    is_int(g->stages[s2].inputs[1].stage, a, "s2's second input is a");
    int pos[16];
    for (size_t k = 0; k < g->nstages; k++)
        pos[g->order[k]] = (int)k;
    ok(pos[a] < pos[both] && pos[both] < pos[s2], "the order puts every stage after its inputs");
    is_str(sl_graph_stream_name(g, (sl_port){a, 1}), "bad", "stream names resolve");
    char *dot = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&dot, &len);
    sl_graph_dot(g, f);
    fclose(f);
    ok(strstr(dot, "digraph") && strstr(dot, "\"a\" -> \"both\"") &&
           strstr(dot, "\"a\" -> \"s3\" [label=\"bad\""),
       "DOT shows stages and edges, extra outputs labelled");
    free(dot);
    sl_graph_free(g);
    sl_config_free(cfg);
    sl_diag_free(&d);
}

static void expect_error(const char *yaml, const char *want, const char *what)
{
    sl_pipeline_cfg *cfg;
    sl_diag d;
    sl_graph *g = build(yaml, &cfg, &d);
    ok(g == NULL && has_diag(&d, want), "%s: %s", what, want);
    sl_graph_free(g);
    sl_config_free(cfg);
    sl_diag_free(&d);
}

int main(void)
{
    test_fan_in_out();
    expect_error("sources:\n  a: {type: gen}\nsinks:\n  s:\n    type: out\n    input: nope\n",
                 "p.yaml:6:12: sink 's': input 'nope' is not a stage", "unknown input");
    expect_error("sources:\n  a: {type: gen}\nsinks:\n  s: {type: out, input: a}\n"
                 "  t: {type: out, input: s}\n",
                 "p.yaml:5:25: sink 't': input 's' is a sink", "a sink as input");
    expect_error("sources:\n  a: {type: gen}\noperators:\n"
                 "  x: {type: op, input: [a, y]}\n"
                 "  y: {type: op, input: x}\n"
                 "sinks:\n  s: {type: out, input: y}\n",
                 "is part of a cycle", "a cycle");
    expect_error("sources:\n  a: {type: gen}\noperators:\n"
                 "  x: {type: op, input: [a, y]}\n"
                 "  y: {type: op, input: x}\n"
                 "sinks:\n  s: {type: out, input: y}\n",
                 "p.yaml:5:24: operator 'y' is part of a cycle", "the cycle's position");
    expect_error("sources:\n  a: {type: gen}\noperators:\n  lost: {type: op, input: a}\n"
                 "sinks:\n  s: {type: out, input: a}\n",
                 "p.yaml:4:9: operator 'lost': its output goes nowhere", "an unused operator");
    expect_error("sources:\n  a: {type: gen, errors: bad}\nsinks:\n  s: {type: out, input: a}\n",
                 "output 'bad' goes nowhere", "an unused errors output");
    expect_error("sources:\n  a: {type: gen}\nsinks:\n  s: {type: out, input: [a, a]}\n",
                 "input 'a' is listed twice", "a repeated input");
    return tap_done();
}
