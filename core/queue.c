/*
 * queue.c — a bounded multi-producer, single-consumer queue; see queue.h.
 *
 * A mutex and two condition variables: batches are thousands of records, so
 * one lock round trip per batch costs nothing measurable, and a lock-free
 * ring would buy complexity, not throughput.
 */
#include "queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "histogram.h"
#include "log.h"

struct sl_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    unsigned max_batches, batches;
    size_t head, count, cap; /* ring of items */
    sl_item *ring;
};

sl_queue *sl_queue_new(unsigned max_batches)
{
    sl_queue *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->max_batches = max_batches ? max_batches : 1;
    q->cap = 64;
    q->ring = calloc(q->cap, sizeof *q->ring);
    if (!q->ring) {
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return q;
}

void sl_queue_free(sl_queue *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->count; i++) {
        sl_item *it = &q->ring[(q->head + i) % q->cap];
        if (it->kind == SL_ITEM_BATCH)
            sl_batch_unref(it->batch);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->ring);
    free(q);
}

/* Control items may exceed the batch bound, so the ring grows when needed;
 * it stays small because control items are rare. */
static int grow(sl_queue *q)
{
    size_t ncap = q->cap * 2;
    sl_item *n = malloc(ncap * sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < q->count; i++)
        n[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = n;
    q->head = 0;
    q->cap = ncap;
    return 0;
}

static int64_t push(sl_queue *q, const sl_item *item, bool wait_for_room)
{
    int64_t blocked = 0;
    pthread_mutex_lock(&q->lock);
    if (wait_for_room && item->kind == SL_ITEM_BATCH && q->batches >= q->max_batches) {
        int64_t t0 = sl_now_ns();
        while (q->batches >= q->max_batches)
            pthread_cond_wait(&q->not_full, &q->lock);
        blocked = sl_now_ns() - t0;
    }
    while (q->count == q->cap && grow(q) != 0) {
        /* Out of memory for a control item: wait for the consumer. */
        pthread_cond_wait(&q->not_full, &q->lock);
    }
    sl_item *slot = &q->ring[(q->head + q->count) % q->cap];
    *slot = *item;
    slot->enqueued_ns = SL_TIMING ? sl_now_ns() : 0;
    q->count++;
    if (item->kind == SL_ITEM_BATCH)
        q->batches++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    return blocked;
}

int64_t sl_queue_push(sl_queue *q, const sl_item *item)
{
    return push(q, item, true);
}

void sl_queue_push_over(sl_queue *q, const sl_item *item)
{
    push(q, item, false);
}

static void take(sl_queue *q, sl_item *out)
{
    *out = q->ring[q->head];
    q->head = (q->head + 1) % q->cap;
    q->count--;
    if (out->kind == SL_ITEM_BATCH) {
        q->batches--;
        pthread_cond_broadcast(&q->not_full);
    }
}

void sl_queue_pop(sl_queue *q, sl_item *out)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    take(q, out);
    pthread_mutex_unlock(&q->lock);
}

bool sl_queue_pop_wait(sl_queue *q, sl_item *out, int64_t timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        if (pthread_cond_timedwait(&q->not_empty, &q->lock, &until) != 0)
            break;
    bool got = q->count > 0;
    if (got)
        take(q, out);
    pthread_mutex_unlock(&q->lock);
    return got;
}

unsigned sl_queue_depth(sl_queue *q)
{
    pthread_mutex_lock(&q->lock);
    unsigned n = q->batches;
    pthread_mutex_unlock(&q->lock);
    return n;
}

unsigned sl_queue_capacity(const sl_queue *q)
{
    return q->max_batches; /* fixed at creation: no lock needed */
}
