/*
 * graph.c — resolve stage inputs into a DAG and check that it can run; see
 * graph.h.
 */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

const char *sl_graph_stream_name(const sl_graph *g, sl_port p)
{
    const sl_stage_cfg *st = &g->cfg->stages[p.stage];
    return p.output == 0 ? st->name : st->outputs[p.output - 1];
}

static int find_stream(const sl_pipeline_cfg *cfg, const char *name, sl_port *out)
{
    for (size_t i = 0; i < cfg->nstages; i++) {
        const sl_stage_cfg *st = &cfg->stages[i];
        if (strcmp(st->name, name) == 0) {
            out->stage = i;
            out->output = 0;
            return 0;
        }
        for (size_t o = 0; o < st->noutputs; o++) {
            if (strcmp(st->outputs[o], name) == 0) {
                out->stage = i;
                out->output = o + 1;
                return 0;
            }
        }
    }
    return -1;
}

static const char *kind_name(sluice_kind k)
{
    return k == SLUICE_SOURCE ? "source" : k == SLUICE_OPERATOR ? "operator" : "sink";
}

static int resolve_inputs(sl_graph *g, sl_diag *diag)
{
    const sl_pipeline_cfg *cfg = g->cfg;
    int bad = 0;
    for (size_t i = 0; i < cfg->nstages; i++) {
        const sl_stage_cfg *st = &cfg->stages[i];
        g->stages[i].inputs = calloc(st->ninputs ? st->ninputs : 1, sizeof(sl_port));
        for (size_t k = 0; k < st->ninputs; k++) {
            const sl_node *at = st->input_nodes && st->input_nodes[k] ? st->input_nodes[k]
                                                                     : st->node;
            sl_port p;
            if (find_stream(cfg, st->inputs[k], &p) != 0) {
                sl_diag_add(diag, at->line, at->col,
                            "%s '%s': input '%s' is not a stage or a stage's output", kind_name(st->kind),
                            st->name, st->inputs[k]);
                bad = 1;
                continue;
            }
            if (cfg->stages[p.stage].kind == SLUICE_SINK) {
                sl_diag_add(diag, at->line, at->col,
                            "%s '%s': input '%s' is a sink, which has no output", kind_name(st->kind),
                            st->name, st->inputs[k]);
                bad = 1;
                continue;
            }
            for (size_t j = 0; j < k; j++) {
                if (strcmp(st->inputs[j], st->inputs[k]) == 0) {
                    sl_diag_add(diag, at->line, at->col, "%s '%s': input '%s' is listed twice",
                                kind_name(st->kind), st->name, st->inputs[k]);
                    bad = 1;
                }
            }
            g->stages[i].inputs[k] = p;
        }
    }
    return bad ? -1 : 0;
}

static void add_consumer(sl_graph_stage *gs, size_t output, size_t stage, unsigned input)
{
    size_t n = gs->nconsumers[output];
    gs->consumers[output] = realloc(gs->consumers[output], (n + 1) * sizeof(sl_consumer));
    gs->consumers[output][n].stage = stage;
    gs->consumers[output][n].input = input;
    gs->nconsumers[output] = n + 1;
}

/* Whether `to` can be reached from `from` over edges between stages still
 * pending (depth-first; pipelines have few stages). */
static bool reaches_from(const sl_graph *g, const size_t *pending, size_t from, size_t to,
                         bool *seen)
{
    const sl_graph_stage *gs = &g->stages[from];
    for (size_t o = 0; o < gs->noutputs; o++)
        for (size_t c = 0; c < gs->nconsumers[o]; c++) {
            size_t next = gs->consumers[o][c].stage;
            if (next == to)
                return true;
            if (!pending[next] || seen[next])
                continue;
            seen[next] = true;
            if (reaches_from(g, pending, next, to, seen))
                return true;
        }
    return false;
}

static bool reaches(const sl_graph *g, const size_t *pending, size_t from, size_t to)
{
    bool *seen = calloc(g->nstages, sizeof *seen);
    bool r = reaches_from(g, pending, from, to, seen);
    free(seen);
    return r;
}

/* Kahn's algorithm; what is left unordered lies on or after a cycle. */
static int order_stages(sl_graph *g, sl_diag *diag)
{
    const sl_pipeline_cfg *cfg = g->cfg;
    size_t n = g->nstages, done = 0;
    size_t *pending = calloc(n ? n : 1, sizeof *pending);
    for (size_t i = 0; i < n; i++)
        pending[i] = cfg->stages[i].ninputs;
    g->order = calloc(n ? n : 1, sizeof *g->order);
    for (size_t i = 0; i < n; i++)
        if (pending[i] == 0)
            g->order[done++] = i;
    for (size_t k = 0; k < done; k++) {
        const sl_graph_stage *gs = &g->stages[g->order[k]];
        for (size_t o = 0; o < gs->noutputs; o++)
            for (size_t c = 0; c < gs->nconsumers[o]; c++)
                if (--pending[gs->consumers[o][c].stage] == 0)
                    g->order[done++] = gs->consumers[o][c].stage;
    }
    int bad = 0;
    if (done < n) {
        /* What Kahn's algorithm leaves is on a cycle or downstream of one;
         * name only the stages that can reach themselves. */
        for (size_t i = 0; i < n; i++) {
            if (pending[i] == 0 || !reaches(g, pending, i, i))
                continue;
            const sl_stage_cfg *st = &cfg->stages[i];
            /* Point at the first input that is itself on the cycle. */
            const sl_node *at = st->node;
            for (size_t k = st->ninputs; k-- > 0;) {
                size_t from = g->stages[i].inputs[k].stage;
                if (pending[from] && reaches(g, pending, i, from) && st->input_nodes &&
                    st->input_nodes[k])
                    at = st->input_nodes[k];
            }
            sl_diag_add(diag, at->line, at->col, "%s '%s' is part of a cycle of inputs",
                        kind_name(st->kind), st->name);
            bad = 1;
        }
    }
    free(pending);
    return bad ? -1 : 0;
}

static int check_unused(sl_graph *g, sl_diag *diag)
{
    const sl_pipeline_cfg *cfg = g->cfg;
    int bad = 0;
    for (size_t i = 0; i < cfg->nstages; i++) {
        const sl_stage_cfg *st = &cfg->stages[i];
        const sl_graph_stage *gs = &g->stages[i];
        if (st->kind != SLUICE_SINK && gs->nconsumers[0] == 0) {
            sl_diag_add(diag, st->node->line, st->node->col,
                        "%s '%s': its output goes nowhere (no operator or sink has it as input)",
                        kind_name(st->kind), st->name);
            bad = 1;
        }
        for (size_t o = 0; o < st->noutputs; o++) {
            if (gs->nconsumers[o + 1] == 0) {
                const sl_node *at = st->output_nodes && st->output_nodes[o] ? st->output_nodes[o]
                                                                            : st->node;
                sl_diag_add(diag, at->line, at->col,
                            "%s '%s': output '%s' goes nowhere (no operator or sink has it as input)",
                            kind_name(st->kind), st->name, st->outputs[o]);
                bad = 1;
            }
        }
    }
    return bad ? -1 : 0;
}

sl_graph *sl_graph_build(const sl_pipeline_cfg *cfg, sl_diag *diag)
{
    sl_graph *g = calloc(1, sizeof *g);
    g->cfg = cfg;
    g->nstages = cfg->nstages;
    g->stages = calloc(cfg->nstages ? cfg->nstages : 1, sizeof *g->stages);
    for (size_t i = 0; i < cfg->nstages; i++) {
        sl_graph_stage *gs = &g->stages[i];
        gs->noutputs = 1 + cfg->stages[i].noutputs;
        gs->nconsumers = calloc(gs->noutputs, sizeof *gs->nconsumers);
        gs->consumers = calloc(gs->noutputs, sizeof *gs->consumers);
    }
    if (resolve_inputs(g, diag) != 0) {
        sl_graph_free(g);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nstages; i++)
        for (size_t k = 0; k < cfg->stages[i].ninputs; k++) {
            sl_port p = g->stages[i].inputs[k];
            add_consumer(&g->stages[p.stage], p.output, i, (unsigned)k);
        }
    int bad = order_stages(g, diag);
    if (check_unused(g, diag) != 0)
        bad = 1;
    if (bad) {
        sl_graph_free(g);
        return NULL;
    }
    return g;
}

void sl_graph_free(sl_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nstages; i++) {
        sl_graph_stage *gs = &g->stages[i];
        free(gs->inputs);
        for (size_t o = 0; o < gs->noutputs; o++)
            free(gs->consumers[o]);
        free(gs->consumers);
        free(gs->nconsumers);
    }
    free(g->stages);
    free(g->order);
    free(g);
}

static void dot_id(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

void sl_graph_dot(const sl_graph *g, FILE *out)
{
    const sl_pipeline_cfg *cfg = g->cfg;
    fprintf(out, "digraph ");
    dot_id(out, cfg->name ? cfg->name : "pipeline");
    fprintf(out, " {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (size_t i = 0; i < cfg->nstages; i++) {
        const sl_stage_cfg *st = &cfg->stages[i];
        const char *shape = st->kind == SLUICE_SOURCE ? "invhouse"
                            : st->kind == SLUICE_SINK ? "house" : "box";
        fprintf(out, "  ");
        dot_id(out, st->name);
        fprintf(out, " [shape=%s, label=\"%s\\n(%s)\"];\n", shape, st->name, st->type);
    }
    for (size_t i = 0; i < cfg->nstages; i++) {
        const sl_graph_stage *gs = &g->stages[i];
        for (size_t o = 0; o < gs->noutputs; o++)
            for (size_t c = 0; c < gs->nconsumers[o]; c++) {
                fprintf(out, "  ");
                dot_id(out, cfg->stages[i].name);
                fprintf(out, " -> ");
                dot_id(out, cfg->stages[gs->consumers[o][c].stage].name);
                if (o > 0) {
                    fprintf(out, " [label=");
                    dot_id(out, cfg->stages[i].outputs[o - 1]);
                    fprintf(out, ", style=dashed]");
                }
                fprintf(out, ";\n");
            }
    }
    fprintf(out, "}\n");
}
