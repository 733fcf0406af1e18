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
 *
 * Basic auth (metrics.username + password): /metrics, /status and unknown
 * paths answer 401 with `WWW-Authenticate: Basic realm="sluice"` unless the
 * request carries the right credentials; /healthz and /ready stay open,
 * because liveness and readiness probes (Kubernetes httpGet) usually cannot
 * send credentials and those two tell nothing but "alive" and "ready".
 * Prometheus can send them (basic_auth in its scrape config). Both user and
 * password are compared in time that depends only on what the client sent,
 * and the client's password is wiped before it is freed.
 *
 * TLS (metrics.tls_cert + tls_key): the PEM files are read here at start and
 * handed to libmicrohttpd's GnuTLS; the endpoint then speaks HTTPS only. A
 * key GnuTLS rejects (or that does not match the certificate) fails the
 * start with GnuTLS's reason, which libmicrohttpd logs through us.
 *
 * libmicrohttpd's own messages go to the sluice log, rate limited once the
 * daemon runs (a port scanner's failed handshakes must not flood it).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "log.h"
#include "metrics.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

#define READY_CHECKPOINT_INTERVALS 3
#define AUTH_REALM "sluice"
#define MAX_PEM_BYTES (1024 * 1024)
#define MHD_LOG_INTERVAL_S 10

struct sl_http {
    sl_runtime *rt;
    struct MHD_Daemon *daemon;
    int fd;
    unsigned port;
    const char *username;         /* rt->cfg's; NULL: no auth */
    const char *password;
    char *cert_pem;               /* NULL: plain HTTP */
    char *key_pem;                /* wiped when freed */

    /* libmicrohttpd's messages: kept for the error while starting, logged
     * (rate limited) once running. */
    pthread_mutex_t log_lock;
    bool running;
    char start_error[256];
    sl_ratelimit log_limit;
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

/* Loopback is 127.0.0.0/8, ::1 and ::ffff:127.x.y.z; the address actually
 * bound decides, so `localhost:9464` counts as loopback too. */
static bool bound_to_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24 == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

static void warn_if_open_to_network(const sl_http *h, const char *addr)
{
    if (h->username || bound_to_loopback(h->fd))
        return;
    char host[256], port[16];
    if (!split_listen(addr, host, sizeof host, port, sizeof port))
        snprintf(host, sizeof host, "%s", addr);
    bool v6 = strchr(host, ':') != NULL;
    sl_log(SLUICE_LOG_WARN, NULL, "metrics endpoint on %s%s%s:%u without authentication: "
           "anyone who can reach it reads /metrics and /status (set metrics.username and "
           "metrics.password, or listen on 127.0.0.1)", v6 ? "[" : "", host, v6 ? "]" : "",
           h->port);
}

/* ---- basic auth ---------------------------------------------------------------- */

/* Equal strings, in time that depends on given's length only, never on
 * where it first differs from want nor on want's length. */
static bool same_secret(const char *given, const char *want)
{
    size_t gl = strlen(given), wl = strlen(want);
    volatile unsigned diff = gl != wl;
    if (wl == 0)
        return gl == 0;
    for (size_t i = 0; i < gl; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)want[i % wl];
    return diff == 0;
}

static bool authorized(const sl_http *h, struct MHD_Connection *conn)
{
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    bool ok = false;
    if (user && pass) {
        bool user_ok = same_secret(user, h->username);
        bool pass_ok = same_secret(pass, h->password); /* both, always */
        ok = user_ok && pass_ok;
    }
    if (pass) {
        explicit_bzero(pass, strlen(pass));
        MHD_free(pass);
    }
    if (user)
        MHD_free(user);
    return ok;
}

/* Liveness and readiness probes usually cannot send credentials; these two
 * routes reveal nothing but "alive" and "ready". */
static bool open_route(const char *url)
{
    return strcmp(url, "/healthz") == 0 || strcmp(url, "/ready") == 0;
}

static MHD_Result_t deny(struct MHD_Connection *conn)
{
    static const char body[] = "unauthorized: this endpoint needs basic auth credentials\n";
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_Result_t rc = MHD_queue_basic_auth_fail_response(conn, AUTH_REALM, resp);
    MHD_destroy_response(resp);
    return rc;
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
    if (h->username && !open_route(url) && !authorized(h, conn))
        return deny(conn);
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

/* ---- libmicrohttpd's messages -------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    sl_http *h = cls;
    char msg[sizeof h->start_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    pthread_mutex_lock(&h->log_lock);
    uint64_t suppressed = 0;
    if (!h->running) {
        if (!h->start_error[0]) /* the first says why; the rest follow from it */
            snprintf(h->start_error, sizeof h->start_error, "%s", msg);
    } else if (sl_ratelimit_pass(&h->log_limit, &suppressed)) {
        if (suppressed)
            sl_log(SLUICE_LOG_WARN, NULL, "metrics endpoint: %s (%llu similar messages "
                   "not shown)", msg, (unsigned long long)suppressed);
        else
            sl_log(SLUICE_LOG_WARN, NULL, "metrics endpoint: %s", msg);
    }
    pthread_mutex_unlock(&h->log_lock);
}

/* ---- TLS files ------------------------------------------------------------------- */

/* The whole file, NUL-terminated as MHD wants it; NULL with err set. */
static char *read_pem(const char *what, const char *path, const char *marker, char *err,
                      size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "metrics.%s '%s': %s", what, path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > MAX_PEM_BYTES) {
        snprintf(err, errlen, "metrics.%s '%s': %s", what, path,
                 S_ISREG(st.st_mode) ? "larger than 1 MiB: not a PEM file"
                                     : "not a regular file");
        close(fd);
        return NULL;
    }
    char *pem = malloc((size_t)st.st_size + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (pem && len < (size_t)st.st_size &&
           (n = read(fd, pem + len, (size_t)st.st_size - len)) > 0)
        len += (size_t)n;
    int saved = errno;
    close(fd);
    if (!pem || n < 0) {
        snprintf(err, errlen, "metrics.%s '%s': %s", what, path,
                 pem ? strerror(saved) : "out of memory");
        free(pem);
        return NULL;
    }
    pem[len] = '\0';
    if (!strstr(pem, marker)) {
        snprintf(err, errlen, "metrics.%s '%s': no PEM %s in it (a line with '%s')", what,
                 path, strcmp(what, "tls_key") == 0 ? "private key" : "certificate", marker);
        explicit_bzero(pem, len);
        free(pem);
        return NULL;
    }
    return pem;
}

static void free_secret(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

static int load_tls(sl_http *h, const sl_pipeline_cfg *cfg, char *err, size_t errlen)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen, "metrics.tls_cert is set, but this libmicrohttpd was built "
                 "without TLS (GnuTLS) support: install one with it, or remove tls_cert "
                 "and tls_key");
        return -1;
    }
    h->cert_pem = read_pem("tls_cert", cfg->metrics_tls_cert, "-----BEGIN CERTIFICATE-----",
                           err, errlen);
    if (h->cert_pem)
        h->key_pem = read_pem("tls_key", cfg->metrics_tls_key, "PRIVATE KEY-----", err, errlen);
    return h->cert_pem && h->key_pem ? 0 : -1;
}

/* ---- lifetime ---------------------------------------------------------------- */

static void free_http(sl_http *h)
{
    free(h->cert_pem);
    free_secret(h->key_pem);
    pthread_mutex_destroy(&h->log_lock);
    free(h);
}

static struct MHD_Daemon *start_daemon(sl_http *h)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, h->key_pem},
        {MHD_OPTION_END, 0, NULL}};
    if (h->cert_pem)
        flags |= MHD_USE_TLS;
    else
        tls[0].option = MHD_OPTION_END;
    /* The logger first: MHD logs the options after it through it. */
    return MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_ARRAY, tls,
                            MHD_OPTION_END);
}

sl_http *sl_http_start(sl_runtime *rt, const char *listen_addr, char *err, size_t errlen)
{
    const sl_pipeline_cfg *cfg = rt->cfg;
    sl_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "metrics: out of memory");
        return NULL;
    }
    h->rt = rt;
    h->fd = -1;
    h->username = cfg->metrics_username;
    h->password = cfg->metrics_password;
    h->log_limit = (sl_ratelimit)SL_RATELIMIT_INIT(MHD_LOG_INTERVAL_S);
    pthread_mutex_init(&h->log_lock, NULL);
    if ((h->username && !h->password) || (cfg->metrics_tls_cert && !cfg->metrics_tls_key)) {
        snprintf(err, errlen, "metrics: basic auth and TLS each need both of their settings");
        free_http(h);
        return NULL;
    }
    if (cfg->metrics_tls_cert && load_tls(h, cfg, err, errlen) != 0) {
        free_http(h);
        return NULL;
    }
    h->fd = bind_listen(listen_addr, &h->port, err, errlen);
    if (h->fd < 0) {
        free_http(h);
        return NULL;
    }
    h->daemon = start_daemon(h);
    if (!h->daemon) {
        if (h->cert_pem)
            snprintf(err, errlen, "metrics: cannot serve HTTPS with tls_cert '%s' and "
                     "tls_key '%s': %s", cfg->metrics_tls_cert, cfg->metrics_tls_key,
                     h->start_error[0] ? h->start_error
                                       : "not a usable certificate and matching key");
        else
            snprintf(err, errlen, "metrics.listen '%s': cannot start the HTTP server%s%s",
                     listen_addr, h->start_error[0] ? ": " : "", h->start_error);
        close(h->fd);
        free_http(h);
        return NULL;
    }
    pthread_mutex_lock(&h->log_lock);
    h->running = true;
    if (h->start_error[0]) /* a warning while starting that did not stop it */
        sl_log(SLUICE_LOG_WARN, NULL, "metrics endpoint: %s", h->start_error);
    pthread_mutex_unlock(&h->log_lock);
    warn_if_open_to_network(h, listen_addr);
    return h;
}

unsigned sl_http_port(const sl_http *h)
{
    return h->port;
}

const char *sl_http_scheme(const sl_http *h)
{
    return h->cert_pem ? "https" : "http";
}

void sl_http_stop(sl_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->daemon); /* closes the listening socket it was given */
    free_http(h);
}
