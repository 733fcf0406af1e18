/*
 * push.h — pushing a metrics body to a Prometheus Pushgateway with libcurl,
 * on a thread of its own, so a slow or absent gateway never holds up the
 * pipeline.
 *
 * Every `interval` the pusher asks for a fresh body and PUTs it to the
 * group's URL (PUT replaces the whole group, so series that are gone from
 * the body are gone from the gateway). A failed push is retried sooner,
 * with a doubling backoff (0.5 s, 1 s, 2 s ... at most the interval), and
 * counted; nothing queues up behind it, since the next body supersedes the
 * last. pg_pusher_finish() stops the thread and makes the final push,
 * retrying until its deadline.
 */
#ifndef SLUICE_PUSHGATEWAY_PUSH_H
#define SLUICE_PUSHGATEWAY_PUSH_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/plugin.h"

typedef struct pg_pusher pg_pusher;

typedef struct pg_push_settings {
    const sluice_host *host;
    sluice_ctx *ctx;
    const char *url;       /* the group's full URL (pg_group_url) */
    int64_t interval_ms;
    int64_t timeout_ms;    /* one request, connect included */
    const char *username;  /* basic auth, or NULL */
    const char *password;
    const char *ca_file;   /* extra CA bundle for https, or NULL */
    bool tls_verify;
    /* Builds the body to push; called on the pusher's thread. */
    int (*body)(void *arg, sluice_buf *out);
    void *arg;
} pg_push_settings;

/* base + "/metrics/job/<job>" + "/<label>/<value>" per grouping label, each
 * value percent-encoded, or base64url-encoded ("<label>@base64/<value>")
 * when it holds a '/' or is empty, as the Pushgateway's API asks. NULL when
 * out of memory. The caller frees it. */
char *pg_group_url(const sluice_host *h, const char *base, const char *job,
                   const sluice_map *grouping);

/* Strings in s are copied. NULL with a message in err on failure. */
pg_pusher *pg_pusher_new(const pg_push_settings *s, char *err, size_t errlen);
int pg_pusher_start(pg_pusher *p, char *err, size_t errlen);
/* Stops the thread (an ongoing push is cut short) and pushes once more,
 * retrying until deadline_ms of wall time from now. true when it landed. */
bool pg_pusher_finish(pg_pusher *p, int64_t deadline_ms);
void pg_pusher_free(pg_pusher *p);

#endif
