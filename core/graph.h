/*
 * graph.h — the pipeline's stages as a DAG of named streams.
 *
 * Every stage's main output is a stream named after the stage; `errors:` and
 * other output options (a window's `late:`) add more named streams. A stage's
 * `input` names streams. The builder resolves those names, and rejects at
 * load time, as file:line:col, what cannot run: an unknown input, a sink
 * named as an input, a cycle, and a stream that no stage consumes (a stage
 * whose output goes nowhere is almost always a typo in an `input`).
 */
#ifndef SLUICE_GRAPH_H
#define SLUICE_GRAPH_H

#include <stdio.h>

#include "config.h"

/* One end of an edge: stage index and its output (0 = main, 1.. = the
 * stage's extra outputs, in sl_stage_cfg.outputs order + 1). */
typedef struct sl_port {
    size_t stage;
    size_t output;
} sl_port;

typedef struct sl_consumer {
    size_t stage;
    unsigned input; /* position in the consumer's input list */
} sl_consumer;

typedef struct sl_graph_stage {
    sl_port *inputs;           /* ninputs, from the config */
    size_t noutputs;           /* 1 + extra outputs */
    size_t *nconsumers;        /* per output */
    sl_consumer **consumers;   /* per output */
} sl_graph_stage;

typedef struct sl_graph {
    const sl_pipeline_cfg *cfg;
    size_t nstages;
    sl_graph_stage *stages;
    size_t *order;             /* topological: every stage after its inputs */
} sl_graph;

/* NULL with diagnostics when the graph cannot run. */
sl_graph *sl_graph_build(const sl_pipeline_cfg *cfg, sl_diag *diag);
void sl_graph_free(sl_graph *g);
/* The name of a stream (a stage's main output or an extra one). */
const char *sl_graph_stream_name(const sl_graph *g, sl_port p);
/* Graphviz DOT of the pipeline. */
void sl_graph_dot(const sl_graph *g, FILE *out);

#endif
