/*
 * status.h — the one live status line `sluice run` keeps on a terminal's
 * stderr: records/s per source, progress of bounded input, records out,
 * errors, elapsed time. Log lines clear it and redraw it (log.c), so the two
 * never garble each other. Off when stderr is not a terminal or --quiet.
 */
#ifndef SLUICE_STATUS_H
#define SLUICE_STATUS_H

#include "runtime.h"

typedef struct sl_status sl_status;

sl_status *sl_status_new(sl_runtime *rt, bool live);
/* Recompute rates and redraw; call about once a second. */
void sl_status_tick(sl_status *s);
/* Clear the live line and print a one-line summary of the run to stderr
 * (always, as a log line). */
void sl_status_finish(sl_status *s);
void sl_status_free(sl_status *s);

#endif
