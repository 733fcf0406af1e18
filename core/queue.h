/*
 * queue.h — the bounded queue in front of each operator and sink.
 *
 * Every upstream edge of a stage pushes into the stage's one queue, tagged
 * with the input number, so fan-in needs no polling over several queues and
 * the order on each edge is preserved. Batches are bounded: a producer
 * blocks while the queue holds `max_batches` batches, which is how a slow
 * sink slows its sources down and how memory stays bounded. Control items
 * (watermarks, end of stream) are few and never block behind the limit, so
 * they cannot deadlock a draining pipeline.
 */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include <stdint.h>

#include "record.h"

typedef enum sl_item_kind {
    SL_ITEM_BATCH = 1,
    SL_ITEM_WATERMARK,
    SL_ITEM_IDLE,    /* this input is idle: do not wait for its watermark */
    SL_ITEM_BARRIER, /* checkpoint barrier `epoch` */
    SL_ITEM_COMMIT,  /* sinks: checkpoint `epoch` is complete */
    SL_ITEM_ABORT,   /* sinks: checkpoint `epoch` will never complete (run ending) */
    SL_ITEM_EOS      /* this input has ended */
} sl_item_kind;

typedef struct sl_item {
    sl_item_kind kind;
    unsigned input;
    sluice_batch *batch;   /* BATCH: one reference, owned by the item */
    int64_t watermark;     /* WATERMARK */
    uint64_t epoch;        /* BARRIER, COMMIT */
    int64_t enqueued_ns;   /* for the scheduling-delay metric */
} sl_item;

typedef struct sl_queue sl_queue;

sl_queue *sl_queue_new(unsigned max_batches);
void sl_queue_free(sl_queue *q); /* drops any batches still queued */
/* Push; blocks while the queue is full of batches. Returns the ns spent
 * blocked (backpressure). */
int64_t sl_queue_push(sl_queue *q, const sl_item *item);
/* Push without waiting for room: for sources that pause instead of
 * blocking (their overshoot is what one poll emits). */
void sl_queue_push_over(sl_queue *q, const sl_item *item);
/* Pop; blocks until an item is there. */
void sl_queue_pop(sl_queue *q, sl_item *out);
/* Pop, waiting at most timeout_ms; false when nothing came. */
bool sl_queue_pop_wait(sl_queue *q, sl_item *out, int64_t timeout_ms);
unsigned sl_queue_depth(sl_queue *q); /* batches queued now */
unsigned sl_queue_capacity(const sl_queue *q); /* the max_batches it was made with */

#endif
