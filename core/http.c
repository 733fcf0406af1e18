/*
 * http.c — the HTTP endpoint of a run; see http.h.
 *
 * Routes:
 *   /metrics  Prometheus text format 0.0.4 (metrics.c)
 *   /healthz  "ok": the process is alive and serving
 *   /ready    200 while the pipeline runs and, when checkpoints run on an
 *             interval, the last one succeeded within 3 intervals; else 503
 *   /status   JSON: each stage's kind, type, records, errors, watermark and
 *             queue depth, and the last checkpoint
 * Every response is built whole in memory and handed to MHD to free.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint.h"
#include "metrics.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

#define READY_CHECKPOINT_INTERVALS 3

struct sl_http {
    sl_runtime *rt;
    struct MHD_Daemon *daemon;
    int fd;
    unsigned port;
};

/* ---- binding ----------------------------------------------------------------- */

/* Split "host:port" / "[v6]:port" into host and port. */
static bool split_listen(const char *addr, char *host, size_t hostlen, char *port,
                         size_t portlen)
{
    const char *colon;
    const char *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return false;
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return false;
        hl = (size_t)(colon - addr);
    }
    const char *p = colon + 1;
    if (hl == 0 || hl >= hostlen || !*p || strlen(p) >= portlen || strspn(p, "0123456789") != strlen(p))
        return false;
    memcpy(host, h, hl);
    host[hl] = 0;
    strcpy(port, p);
    return true;
}

static int bind_listen(const char *addr, unsigned *bound_port, char *err, size_t errlen)
{
    char host[256], port[16];
    if (!split_listen(addr, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "metrics.listen '%s': expected host:port", addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "metrics.listen '%s': %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "metrics.listen '%s': cannot listen: %s", addr,
                 strerror(saved));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *bound_port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound_port = ntohs(ss.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* ---- handlers ---------------------------------------------------------------- */

static bool checkpoints_recent(sl_runtime *rt)
{
    int64_t interval = rt->cfg->checkpoint_interval_ms;
    if (!rt->checkpoint || interval <= 0)
        return true;
    int64_t allowed = READY_CHECKPOINT_INTERVALS * interval;
    sl_checkpoint_stats s;
    sl_checkpoint_stats_get(rt->checkpoint, &s);
    if (!s.last_success_ms) /* none yet: the run gets the same grace */
        return (sl_now_ns() - rt->started_ns) / 1000000 <= allowed;
    return sl_wall_ms() - s.last_success_ms <= allowed;
}

static bool ready(sl_runtime *rt)
{
    return !sl_runtime_done(rt) && !atomic_load(&rt->stopping) && !atomic_load(&rt->failed) &&
           checkpoints_recent(rt);
}

static void json_str(sluice_buf *b, const char *s)
{
    sl_json_encode_string(s, strlen(s), b);
}

static void __attribute__((format(printf, 2, 3))) json_f(sluice_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sl_buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void status_stage(sluice_buf *b, sluice_ctx *ctx)
{
    json_f(b, "{\"name\":");
    json_str(b, ctx->cfg->name);
    json_f(b, ",\"kind\":\"%s\",\"type\":", sl_metrics_kind_name(ctx->cfg->kind));
    json_str(b, ctx->cfg->type);
    json_f(b, ",\"records_in\":%llu,\"records_out\":%llu,\"errors\":%llu,\"records_late\":%llu",
           (unsigned long long)atomic_load(&ctx->records_in),
           (unsigned long long)atomic_load(&ctx->records_out),
           (unsigned long long)atomic_load(&ctx->errors),
           (unsigned long long)atomic_load(&ctx->records_late));
    int64_t wm = sl_metrics_watermark(ctx);
    if (wm == SLUICE_TIME_NONE)
        json_f(b, ",\"watermark_ms\":null");
    else
        json_f(b, ",\"watermark_ms\":%lld", (long long)wm);
    if (ctx->queue)
        json_f(b, ",\"queue_depth\":%u", sl_queue_depth(ctx->queue));
    else
        json_f(b, ",\"queue_depth\":null");
    json_f(b, ",\"finished\":%s}", atomic_load(&ctx->finished) ? "true" : "false");
}

static void status_json(sl_runtime *rt, sluice_buf *b)
{
    json_f(b, "{\"pipeline\":");
    json_str(b, rt->cfg->name);
    json_f(b, ",\"running\":%s,\"ready\":%s,\"uptime_seconds\":%.3f,\"stages\":[",
           sl_runtime_done(rt) ? "false" : "true", ready(rt) ? "true" : "false",
           rt->started_ns ? (double)(sl_now_ns() - rt->started_ns) / 1e9 : 0.0);
    for (size_t i = 0; i < rt->nstages; i++) {
        if (i)
            sl_buf_putc(b, ',');
        status_stage(b, &rt->stages[i]);
    }
    json_f(b, "],\"checkpoint\":");
    if (!rt->checkpoint) {
        json_f(b, "null}\n");
        return;
    }
    sl_checkpoint_stats s;
    sl_checkpoint_stats_get(rt->checkpoint, &s);
    json_f(b, "{\"completed\":%llu,\"failed\":%llu,\"last_epoch\":%llu",
           (unsigned long long)s.completed, (unsigned long long)s.failed,
           (unsigned long long)s.last_epoch);
    if (s.completed)
        json_f(b, ",\"last_duration_ms\":%.3f,\"last_bytes\":%llu,\"last_success_ms\":%lld}}\n",
               s.last_duration_ms, (unsigned long long)s.last_bytes,
               (long long)s.last_success_ms);
    else
        json_f(b, ",\"last_duration_ms\":null,\"last_bytes\":null,\"last_success_ms\":null}}\n");
}

static MHD_Result_t respond(struct MHD_Connection *conn, unsigned code, const char *type,
                            sluice_buf *body)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        body->len, body->data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        sl_buf_free(body);
        return MHD_NO;
    }
    body->data = NULL; /* MHD frees it */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_Result_t rc = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return rc;
}

static MHD_Result_t respond_text(struct MHD_Connection *conn, unsigned code, const char *text)
{
    sluice_buf b = {0};
    sl_buf_append(&b, text, strlen(text));
    return respond(conn, code, "text/plain; charset=utf-8", &b);
}

static MHD_Result_t handle(void *cls, struct MHD_Connection *conn, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **con_cls)
{
    sl_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp(url, "/metrics") == 0) {
        sluice_buf b = {0};
        if (sl_metrics_render(h->rt, &b) != 0) {
            sl_buf_free(&b);
            return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &b);
    }
    if (strcmp(url, "/healthz") == 0)
        return respond_text(conn, MHD_HTTP_OK, "ok\n");
    if (strcmp(url, "/ready") == 0)
        return ready(h->rt) ? respond_text(conn, MHD_HTTP_OK, "ready\n")
                            : respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
    if (strcmp(url, "/status") == 0) {
        sluice_buf b = {0};
        status_json(h->rt, &b);
        return respond(conn, MHD_HTTP_OK, "application/json", &b);
    }
    return respond_text(conn, MHD_HTTP_NOT_FOUND,
                        "not found: try /metrics, /healthz, /ready or /status\n");
}

/* ---- lifetime ---------------------------------------------------------------- */

sl_http *sl_http_start(sl_runtime *rt, const char *listen_addr, char *err, size_t errlen)
{
    unsigned port;
    int fd = bind_listen(listen_addr, &port, err, errlen);
    if (fd < 0)
        return NULL;
    sl_http *h = calloc(1, sizeof *h);
    h->rt = rt;
    h->fd = fd;
    h->port = port;
    h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                                 NULL, handle, h, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "metrics.listen '%s': cannot start the HTTP server", listen_addr);
        close(fd);
        free(h);
        return NULL;
    }
    return h;
}

unsigned sl_http_port(const sl_http *h)
{
    return h->port;
}

void sl_http_stop(sl_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon); /* closes the listening socket it was given */
    free(h);
}
