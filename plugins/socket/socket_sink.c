/*
 * socket_sink.c — the `socket` sink: records as lines to a TCP or UDP peer.
 *
 * TCP: one connection to `connect`, opened at start() — retried with a
 * delay doubling from 100 ms to 5 s for up to connect_timeout, so a
 * pipeline may start a moment before its peer. Each batch is encoded into
 * one buffer (a record per line) and sent with as few send() calls as the
 * kernel allows. When the connection breaks (EPIPE, ECONNRESET, or the
 * peer closed its end, noticed before sending), the sink reconnects and
 * sends the whole current batch again, giving up with an error after
 * connect_timeout without a connection. Delivery is therefore at least
 * once: a batch cut off mid-way is resent in full on the new connection.
 * Plain TCP has no acknowledgement above the kernel, so bytes the kernel
 * accepted just before the peer vanished cannot be known lost; checking
 * for the peer's FIN before every batch closes most of that window.
 *
 * UDP: one datagram per record (with its trailing newline, so a receiver
 * that concatenates datagrams — `nc -lu` — still sees lines). A record too
 * large for a datagram is rejected; datagrams the network refuses are
 * counted in a rate-limited warning, as UDP promises nothing more.
 *
 * SIGPIPE is never raised: every send() passes MSG_NOSIGNAL, so a broken
 * connection is an error code here, not a dead process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/plugin.h"
#include "../builtin.h"
#include "sockaddr.h"

enum { PROTO_TCP, PROTO_UDP };
enum { FORMAT_JSON, FORMAT_LINES };

static const char *const protocol_choices[] = {"tcp", "udp", NULL};
static const char *const format_choices[] = {"json", "lines", NULL};
static const char *const format_names[] = {"json", "lines"};

typedef struct socket_sink_config {
    char *connect;
    int protocol;
    int format;
    int64_t connect_timeout; /* ms */
} socket_sink_config;

#define UDP_PAYLOAD_MAX 65507   /* the most an IPv4 UDP datagram carries */
#define RAW_KEEP 1024
#define ATTEMPT_MIN_MS 100      /* the least time one connect attempt gets */
#define ATTEMPT_MAX_MS 5000
#define WARN_EVERY_MS 10000

typedef struct socket_sink {
    const sluice_host *host;
    sluice_ctx *ctx;
    sl_addr_spec addr;
    char shown[SL_ADDR_TEXT_MAX];   /* as configured */
    char peer[SL_ADDR_TEXT_MAX];    /* the address actually connected */
    bool udp;
    int format;
    int64_t connect_timeout;
    int fd;
    sluice_codec *codec;
    sluice_buf out;
    sl_backoff backoff;
    uint64_t udp_unsent;            /* datagrams not sent since the last warning */
    int64_t last_warn;
} socket_sink;

/* ---- create / destroy ------------------------------------------------ */

static int sink_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                       void **self, char *err, size_t errlen)
{
    const socket_sink_config *cfg = config;
    socket_sink *s;
    char msg[512];
    int bad = 0;

    *self = NULL;
    s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    if (!cfg->connect) {
        host->config_error(ctx, "type", "the socket sink needs connect: host:port");
        bad = 1;
    } else if (sl_addr_parse(cfg->connect, false, &s->addr, msg, sizeof msg) != 0) {
        host->config_error(ctx, "connect", "%s", msg);
        bad = 1;
    }
    if (cfg->connect_timeout < 0) {
        host->config_error(ctx, "connect_timeout", "must not be negative");
        bad = 1;
    }
    if (bad) {
        free(s);
        snprintf(err, errlen, "invalid socket sink configuration");
        return SLUICE_ERROR;
    }
    s->host = host;
    s->ctx = ctx;
    s->udp = cfg->protocol == PROTO_UDP;
    s->format = cfg->format;
    s->connect_timeout = cfg->connect_timeout;
    s->fd = -1;
    sl_addr_display(&s->addr, s->shown, sizeof s->shown);
    *self = s;
    return SLUICE_OK;
}

static void sink_destroy(void *self)
{
    socket_sink *s = self;

    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd); /* the kernel still delivers what was sent */
    if (s->codec)
        s->host->codec_free(s->codec);
    if (s->out.data)
        s->host->buf_free(&s->out);
    free(s);
}

/* ---- connecting -------------------------------------------------------- */

static void format_ms(int64_t ms, char *out, size_t outlen)
{
    if (ms % 1000 == 0)
        snprintf(out, outlen, "%llds", (long long)(ms / 1000));
    else
        snprintf(out, outlen, "%lldms", (long long)ms);
}

/* Wait for an in-progress connect until deadline (at least a short while,
 * so the last attempt before the deadline is a real one). */
static int wait_connected(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - sl_sock_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int rc;
        if (left < ATTEMPT_MIN_MS)
            left = ATTEMPT_MIN_MS;
        if (left > ATTEMPT_MAX_MS)
            left = ATTEMPT_MAX_MS;
        rc = poll(&p, 1, (int)left);
        if (rc > 0)
            return sl_sock_connect_result(fd);
        if (rc == 0)
            return ETIMEDOUT;
        if (errno != EINTR)
            return errno;
    }
}

/* A socket on the first resolved address that takes a connection, made
 * blocking: sends wait for the peer, which is the sink's backpressure. */
static int try_connect(socket_sink *s, int64_t deadline, char *why, size_t whylen)
{
    struct addrinfo *list, *ai;
    int e = ECONNREFUSED;

    if (sl_addr_resolve(&s->addr, s->udp ? SOCK_DGRAM : SOCK_STREAM, false, &list, why,
                        whylen) != 0)
        return -1;
    for (ai = list; ai; ai = ai->ai_next) {
        int fd;
        e = sl_sock_connect_start(ai, &fd);
        if (e == EINPROGRESS)
            e = wait_connected(fd, deadline);
        if (e == 0) {
            int one = 1;
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            if (!s->udp) /* batches are written whole; don't hold back their tails */
                (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            sl_addr_format(ai->ai_addr, ai->ai_addrlen, s->peer, sizeof s->peer);
            s->fd = fd;
            freeaddrinfo(list);
            return 0;
        }
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(list);
    snprintf(why, whylen, "%s", strerror(e));
    return -1;
}

/* Sleep ms in short steps; true when cut short because the run stops. */
static bool pause_ms(socket_sink *s, int64_t ms, bool interruptible)
{
    while (ms > 0) {
        int64_t step = ms < 50 ? ms : 50;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000};
        if (interruptible && s->host->stopping(s->ctx))
            return true;
        nanosleep(&ts, NULL);
        ms -= step;
    }
    return false;
}

/* Connect, retrying with backoff until deadline. `interruptible`: give up
 * when the run is stopping (at start(); never while a batch is pending). */
static int connect_until(socket_sink *s, int64_t deadline, bool interruptible,
                         char *err, size_t errlen)
{
    char why[512], limit[32];
    unsigned failures = 0;

    sl_backoff_reset(&s->backoff);
    format_ms(s->connect_timeout, limit, sizeof limit);
    for (;;) {
        int64_t now, wait;
        if (try_connect(s, deadline, why, sizeof why) == 0) {
            if (failures > 0)
                s->host->log(s->ctx, SLUICE_LOG_INFO, "connected to %s after %u failed attempt%s",
                             s->peer, failures, failures == 1 ? "" : "s");
            else
                s->host->log(s->ctx, SLUICE_LOG_INFO, "connected to %s (%s)", s->peer,
                             s->udp ? "udp" : "tcp");
            return SLUICE_OK;
        }
        if (++failures == 1)
            s->host->log(s->ctx, SLUICE_LOG_WARN, "cannot connect to %s: %s; retrying for up to %s",
                         s->shown, why, limit);
        now = sl_sock_now_ms();
        if (now >= deadline) {
            snprintf(err, errlen, "cannot connect to %s within connect_timeout (%s): %s",
                     s->shown, limit, why);
            return SLUICE_ERROR;
        }
        wait = sl_backoff_next(&s->backoff);
        if (wait > deadline - now)
            wait = deadline - now;
        if (pause_ms(s, wait, interruptible)) {
            snprintf(err, errlen, "stopped while connecting to %s: %s", s->shown, why);
            return SLUICE_ERROR;
        }
    }
}

static int sink_start(void *self, char *err, size_t errlen)
{
    socket_sink *s = self;

    s->codec = s->host->codec_new(s->ctx, format_names[s->format], err, errlen);
    if (!s->codec)
        return SLUICE_ERROR;
    return connect_until(s, sl_sock_now_ms() + s->connect_timeout, true, err, errlen);
}

/* ---- TCP --------------------------------------------------------------- */

/* Whether the peer has closed its end since the last batch (what it may
 * have sent us is read and dropped). A peer half-closing while it still
 * reads is taken for gone too: a reconnection costs less than a batch
 * written into a connection nobody reads. */
static bool peer_gone(socket_sink *s)
{
    char scratch[4096];

    for (int i = 0; i < 64; i++) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN | POLLRDHUP};
        ssize_t n;
        if (poll(&p, 1, 0) <= 0)
            return false;
        if (p.revents & (POLLERR | POLLHUP | POLLRDHUP))
            return true;
        n = recv(s->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
    return false;
}

/* 0, or the errno value that broke the connection. */
static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void drop_connection(socket_sink *s)
{
    close(s->fd);
    s->fd = -1;
}

/* Send s->out, reconnecting and resending it whole while the connection
 * breaks, until connect_timeout passes without a connection. */
static int send_batch(socket_sink *s, uint32_t records, char *err, size_t errlen)
{
    int64_t deadline = 0;

    if (s->out.len == 0)
        return SLUICE_OK;
    for (;;) {
        int e;
        if (s->fd >= 0 && peer_gone(s)) {
            s->host->log(s->ctx, SLUICE_LOG_WARN, "%s closed the connection; reconnecting",
                         s->peer);
            drop_connection(s);
        }
        if (s->fd < 0) {
            if (deadline == 0)
                deadline = sl_sock_now_ms() + s->connect_timeout;
            if (connect_until(s, deadline, false, err, errlen) != SLUICE_OK)
                return SLUICE_ERROR;
        }
        e = send_all(s->fd, s->out.data, s->out.len);
        if (e == 0)
            return SLUICE_OK;
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "sending to %s failed: %s; reconnecting to resend the batch (%u records)",
                     s->peer, strerror(e), records);
        drop_connection(s);
    }
}

/* Encode r into s->out (newline-terminated). SLUICE_RETRY: r was rejected. */
static int encode_record(socket_sink *s, const sluice_record *r, char *err, size_t errlen)
{
    size_t mark = s->out.len;

    if (s->host->encode(s->codec, r, &s->out) != SLUICE_OK) {
        s->out.len = mark;
        if (s->host->reject(s->ctx, r, (sluice_str){NULL, 0}, "encode_failed",
                            "the record cannot be encoded") == SLUICE_ERROR) {
            snprintf(err, errlen, "a record cannot be encoded (on_error: fail)");
            return SLUICE_ERROR;
        }
        return SLUICE_RETRY;
    }
    if (s->host->buf_append(&s->out, "\n", 1) != SLUICE_OK) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

static int write_tcp(socket_sink *s, const sluice_batch *in, char *err, size_t errlen)
{
    s->out.len = 0;
    for (uint32_t i = 0; i < in->count; i++)
        if (encode_record(s, &in->records[i], err, errlen) == SLUICE_ERROR)
            return SLUICE_ERROR;
    return send_batch(s, in->count, err, errlen);
}

/* ---- UDP --------------------------------------------------------------- */

static void note_unsent(socket_sink *s, int e)
{
    int64_t now = sl_sock_now_ms();

    s->udp_unsent++;
    if (s->last_warn == 0 || now - s->last_warn >= WARN_EVERY_MS) {
        s->host->log(s->ctx, SLUICE_LOG_WARN, "%llu datagram(s) to %s not sent: %s",
                     (unsigned long long)s->udp_unsent, s->peer, strerror(e));
        s->udp_unsent = 0;
        s->last_warn = now;
    }
}

static int send_datagram(socket_sink *s, const sluice_record *r, char *err, size_t errlen)
{
    int rc;

    s->out.len = 0;
    rc = encode_record(s, r, err, errlen);
    if (rc != SLUICE_OK)
        return rc;
    if (s->out.len > UDP_PAYLOAD_MAX) {
        char detail[128];
        size_t keep = s->out.len - 1 < RAW_KEEP ? s->out.len - 1 : RAW_KEEP;
        snprintf(detail, sizeof detail, "encoded record of %zu bytes exceeds a UDP datagram "
                 "(%d bytes)", s->out.len - 1, UDP_PAYLOAD_MAX);
        if (s->host->reject(s->ctx, r, (sluice_str){s->out.data, keep}, "datagram_too_large",
                            detail) == SLUICE_ERROR) {
            snprintf(err, errlen, "%s (on_error: fail)", detail);
            return SLUICE_ERROR;
        }
        return SLUICE_RETRY;
    }
    /* ECONNREFUSED reports an earlier datagram's ICMP error: this one was
     * not sent yet, so try it once more. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (send(s->fd, s->out.data, s->out.len, MSG_NOSIGNAL) >= 0)
            return SLUICE_OK;
        if (errno != EINTR && errno != ECONNREFUSED)
            break;
    }
    note_unsent(s, errno);
    return SLUICE_OK;
}

static int write_udp(socket_sink *s, const sluice_batch *in, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < in->count; i++)
        if (send_datagram(s, &in->records[i], err, errlen) == SLUICE_ERROR)
            return SLUICE_ERROR;
    return SLUICE_OK;
}

/* ---- callbacks ----------------------------------------------------------- */

static int sink_write(void *self, const sluice_batch *in, char *err, size_t errlen)
{
    socket_sink *s = self;

    return s->udp ? write_udp(s, in, err, errlen) : write_tcp(s, in, err, errlen);
}

/* Nothing is buffered between writes; what send() took, the kernel sends. */
static int sink_flush(void *self, char *err, size_t errlen)
{
    socket_sink *s = self;

    if (s->udp && s->udp_unsent > 0) {
        s->host->log(s->ctx, SLUICE_LOG_WARN, "%llu datagram(s) to %s not sent",
                     (unsigned long long)s->udp_unsent, s->peer);
        s->udp_unsent = 0;
    }
    return SLUICE_OK;
}

static const sluice_option sink_options[] = {
    {.name = "connect", .type = SLUICE_OPT_STRING, .flags = SLUICE_OPT_REQUIRED,
     .offset = offsetof(socket_sink_config, connect),
     .help = "host:port to send to ([::1]:9000 for IPv6)"},
    {.name = "protocol", .type = SLUICE_OPT_ENUM, .default_value = "tcp",
     .offset = offsetof(socket_sink_config, protocol), .choices = protocol_choices,
     .help = "tcp: one connection, a record per line; udp: a datagram per record"},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "json",
     .offset = offsetof(socket_sink_config, format), .choices = format_choices,
     .help = "json: one JSON object per line; lines: the field `message`"},
    {.name = "connect_timeout", .type = SLUICE_OPT_DURATION, .default_value = "10s",
     .offset = offsetof(socket_sink_config, connect_timeout),
     .help = "how long to keep retrying a refused or lost TCP connection before failing"},
    {.name = NULL},
};

const sluice_plugin_def sl_plugin_socket_sink = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "socket",
    .kind = SLUICE_SINK,
    .version = "1.0.0",
    .description = "records as JSON lines or lines to a TCP peer, or as UDP datagrams",
    .config_size = sizeof(socket_sink_config),
    .options = sink_options,
    .create = sink_create,
    .start = sink_start,
    .destroy = sink_destroy,
    .write = sink_write,
    .flush = sink_flush,
};
