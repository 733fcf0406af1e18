/*
 * socket_source.c — the `socket` source: line-delimited records from the
 * network.
 *
 * Three shapes, chosen by options:
 *   listen + tcp   a TCP server; any number of clients (up to
 *                  max_connections) each send lines: `nc HOST PORT < file`.
 *   listen + udp   a bound UDP socket; every datagram holds one or more
 *                  lines (the last may lack its newline).
 *   connect + tcp  a TCP client, like Spark's socketTextStream against
 *                  `nc -lk 9999`: it connects, reads lines, and when the
 *                  peer is not up yet or goes away, reconnects with a delay
 *                  doubling from 100 ms to 5 s, logging at a limited rate.
 *
 * One poll() call per source poll, over the listening socket and every
 * connection, waits at most 100 ms, so the runtime gets control back often
 * enough to stop or checkpoint. All sockets are non-blocking. Each TCP
 * connection owns a line reader (line_reader.c: the partial line at the end
 * of a read is carried over to the next) and its own codec, so per-stream
 * decoder state never mixes peers. Decoded records go to one batch that is
 * emitted when full and at the end of every poll; emit() blocking under
 * backpressure stops our reads, which fills the kernel buffers and slows
 * the senders — TCP carries the backpressure to them. A read budget per
 * poll bounds the work (and memory) of one call however fast peers send.
 *
 * A line longer than max_line is never buffered whole: once the carried
 * partial line exceeds the limit it is reported with host->reject()
 * ("line_too_long", raw = its first KiB) and the rest of it is skipped up
 * to the next newline, so one runaway peer cannot exhaust memory.
 *
 * The source is unbounded: it never returns DONE; it runs until the
 * runtime stops calling it. Bytes of an unterminated line still buffered
 * when it is destroyed are reported in a warning, not dropped in silence.
 * A socket cannot be rewound, so there is no snapshot/restore: as with
 * Spark's socket source, what peers sent before a crash is not replayed.
 * Empty lines hold no record and a trailing '\r' is dropped, as in the
 * file source.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK */
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/plugin.h"
#include "../builtin.h"
#include "line_reader.h"
#include "sockaddr.h"

enum { PROTO_TCP, PROTO_UDP };
enum { FORMAT_JSON, FORMAT_LINES };

static const char *const protocol_choices[] = {"tcp", "udp", NULL};
static const char *const format_choices[] = {"json", "lines", NULL};
static const char *const format_names[] = {"json", "lines"};

typedef struct socket_source_config {
    char *listen;
    char *connect;
    int protocol;
    int format;
    int64_t max_line;
    int64_t max_connections;
} socket_source_config;

#define POLL_MS 100                 /* the longest one poll() call may block */
#define READ_CHUNK (64 * 1024)      /* least free room for one recv() */
#define READ_BUDGET (4u << 20)      /* bytes read per source poll, all peers */
#define UDP_DATAGRAM_MAX 65536
#define RAW_KEEP 1024               /* bytes of a too-long line kept in `raw` */
#define CONNECT_ATTEMPT_MS 5000     /* give up on one address after this */
#define RETRY_LOG_MS 30000          /* repeat "still cannot connect" at most this often */
#define MAX_LINE_LIMIT ((int64_t)1 << 30)

/* One TCP stream: accepted (listen) or ours (connect). */
typedef struct conn {
    int fd;
    sluice_codec *codec;
    sl_line_reader lines; /* the bytes after the last newline seen */
    char peer[SL_ADDR_TEXT_MAX];
} conn;

typedef struct socket_source {
    const sluice_host *host;
    sluice_ctx *ctx;
    sl_addr_spec addr;
    char shown[SL_ADDR_TEXT_MAX]; /* the address as configured, for messages */
    bool connect_mode;
    bool udp;
    int format;
    size_t max_line;
    int max_conns;

    int listen_fd;              /* TCP listener or the UDP socket; -1 */
    conn *conns;                /* listen: up to max_conns; connect: 0 or 1 */
    int nconns;
    struct pollfd *pfds;
    bool full_logged;           /* "max_connections reached" said once per episode */

    sluice_codec *udp_codec;
    char *udp_buf;
    struct sockaddr_storage udp_from;
    socklen_t udp_fromlen;
    char udp_peer[SL_ADDR_TEXT_MAX];

    /* connect mode: attempt state */
    struct addrinfo *ai_list, *ai_next;
    int connecting_fd;          /* in-progress connect; -1 */
    int64_t attempt_deadline;   /* ms: when the in-progress connect times out */
    int64_t next_attempt;       /* ms: when to try again while disconnected */
    int last_errno;
    sl_backoff backoff;
    unsigned failures;          /* consecutive failed attempts */
    int64_t last_fail_log;

    sluice_batch *batch;        /* records decoded during this poll */
    int64_t read_ns;            /* ingest time stamped on records */
} socket_source;

/* ---- create / destroy ----------------------------------------------- */

static int check_config(const sluice_host *host, sluice_ctx *ctx,
                        const socket_source_config *cfg, socket_source *s)
{
    char msg[512];
    int bad = 0;
    const char *addr_opt = cfg->listen ? "listen" : "connect";

    if ((cfg->listen != NULL) == (cfg->connect != NULL)) {
        host->config_error(ctx, cfg->listen ? "connect" : "type",
                           cfg->listen ? "give either listen or connect, not both"
                                       : "the socket source needs listen: host:port (server) "
                                         "or connect: host:port (client)");
        return 1;
    }
    if (sl_addr_parse(cfg->listen ? cfg->listen : cfg->connect, cfg->listen != NULL,
                      &s->addr, msg, sizeof msg) != 0) {
        host->config_error(ctx, addr_opt, "%s", msg);
        bad = 1;
    }
    if (cfg->connect && cfg->protocol == PROTO_UDP) {
        host->config_error(ctx, "protocol", "udp needs listen: a UDP socket only receives "
                                            "datagrams sent to its own address");
        bad = 1;
    }
    if (cfg->max_line < 1 || cfg->max_line > MAX_LINE_LIMIT) {
        host->config_error(ctx, "max_line", "must be between 1 byte and 1GiB");
        bad = 1;
    }
    if (cfg->max_connections < 1 || cfg->max_connections > 65536) {
        host->config_error(ctx, "max_connections", "must be between 1 and 65536");
        bad = 1;
    }
    return bad;
}

static int source_create(const sluice_host *host, sluice_ctx *ctx, const void *config,
                         void **self, char *err, size_t errlen)
{
    const socket_source_config *cfg = config;
    socket_source *s = calloc(1, sizeof *s);

    *self = NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    if (check_config(host, ctx, cfg, s) != 0) {
        free(s);
        snprintf(err, errlen, "invalid socket source configuration");
        return SLUICE_ERROR;
    }
    s->host = host;
    s->ctx = ctx;
    s->connect_mode = cfg->connect != NULL;
    s->udp = cfg->protocol == PROTO_UDP;
    s->format = cfg->format;
    s->max_line = (size_t)cfg->max_line;
    s->max_conns = s->connect_mode ? 1 : (int)cfg->max_connections;
    s->listen_fd = -1;
    s->connecting_fd = -1;
    sl_addr_display(&s->addr, s->shown, sizeof s->shown);
    sl_backoff_reset(&s->backoff);
    *self = s;
    return SLUICE_OK;
}

static void conn_close(socket_source *s, conn *c)
{
    size_t pending = sl_line_reader_pending(&c->lines);

    if (pending > 0)
        s->host->log(s->ctx, SLUICE_LOG_WARN,
                     "dropping %zu bytes of an unterminated line from %s", pending, c->peer);
    if (c->fd >= 0)
        close(c->fd);
    if (c->codec)
        s->host->codec_free(c->codec);
    sl_line_reader_free(&c->lines);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* Remove conns[i], moving the last one into its place. */
static void conn_remove(socket_source *s, int i)
{
    conn_close(s, &s->conns[i]);
    s->nconns--;
    if (i != s->nconns) {
        s->conns[i] = s->conns[s->nconns];
        memset(&s->conns[s->nconns], 0, sizeof s->conns[s->nconns]);
        s->conns[s->nconns].fd = -1;
    }
}

static void source_destroy(void *self)
{
    socket_source *s = self;

    if (!s)
        return;
    while (s->nconns > 0)
        conn_remove(s, s->nconns - 1);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->connecting_fd >= 0)
        close(s->connecting_fd);
    if (s->ai_list)
        freeaddrinfo(s->ai_list);
    if (s->udp_codec)
        s->host->codec_free(s->udp_codec);
    if (s->batch)
        s->host->batch_free(s->batch);
    free(s->udp_buf);
    free(s->conns);
    free(s->pfds);
    free(s);
}

/* ---- start ----------------------------------------------------------- */

static int source_start(void *self, char *err, size_t errlen)
{
    socket_source *s = self;
    char bound[SL_ADDR_TEXT_MAX];
    sluice_codec *probe;

    /* Fail now, not at the first client, if the codec cannot be made. */
    probe = s->host->codec_new(s->ctx, format_names[s->format], err, errlen);
    if (!probe)
        return SLUICE_ERROR;
    if (s->udp)
        s->udp_codec = probe;
    else
        s->host->codec_free(probe);

    s->conns = calloc((size_t)s->max_conns, sizeof *s->conns);
    s->pfds = calloc((size_t)s->max_conns + 1, sizeof *s->pfds);
    if (!s->conns || !s->pfds) {
        snprintf(err, errlen, "out of memory");
        return SLUICE_ERROR;
    }
    if (s->connect_mode) {
        s->next_attempt = sl_sock_now_ms(); /* the first poll connects */
        s->host->log(s->ctx, SLUICE_LOG_INFO, "connecting to %s", s->shown);
        return SLUICE_OK;
    }
    s->listen_fd = sl_sock_listen(&s->addr, s->udp ? SOCK_DGRAM : SOCK_STREAM,
                                  bound, sizeof bound, err, errlen);
    if (s->listen_fd < 0)
        return SLUICE_ERROR;
    if (s->udp) {
        s->udp_buf = malloc(UDP_DATAGRAM_MAX);
        if (!s->udp_buf) {
            snprintf(err, errlen, "out of memory");
            return SLUICE_ERROR;
        }
    }
    s->host->log(s->ctx, SLUICE_LOG_INFO, "listening on %s (%s)", bound,
                 s->udp ? "udp" : "tcp");
    return SLUICE_OK;
}

/* ---- lines → records ------------------------------------------------- */

static const char *peer_name(socket_source *s, const conn *c)
{
    if (c)
        return c->peer;
    sl_addr_format((struct sockaddr *)&s->udp_from, s->udp_fromlen, s->udp_peer,
                   sizeof s->udp_peer);
    return s->udp_peer;
}

/* The first RAW_KEEP bytes, cut back to a UTF-8 character boundary. */
static sluice_str raw_prefix(const char *p, size_t len)
{
    sluice_str r = {p, len};
    if (len > RAW_KEEP) {
        size_t cut = RAW_KEEP;
        while (cut > 0 && ((unsigned char)p[cut] & 0xC0) == 0x80)
            cut--;
        r.len = cut;
    }
    return r;
}

/* Where the lines of one stream go: the source, the peer (NULL for UDP)
 * and the poll's error buffer. */
typedef struct line_target {
    socket_source *s;
    const conn *c;
    char *err;
    size_t errlen;
} line_target;

static int reject_long_line(void *arg, const char *p, size_t len, bool complete)
{
    line_target *t = arg;
    socket_source *s = t->s;
    char detail[SL_ADDR_TEXT_MAX + 160];

    if (complete)
        snprintf(detail, sizeof detail, "line of %zu bytes from %s exceeds max_line (%zu bytes)",
                 len, peer_name(s, t->c), s->max_line);
    else
        snprintf(detail, sizeof detail,
                 "line from %s exceeds max_line (%zu bytes); skipping to the next newline",
                 peer_name(s, t->c), s->max_line);
    if (s->host->reject(s->ctx, NULL, raw_prefix(p, len), "line_too_long", detail) ==
        SLUICE_ERROR) {
        snprintf(t->err, t->errlen, "%s (on_error: fail)", detail);
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* A batch with room for one more record. */
static int batch_room(socket_source *s, char *err, size_t errlen)
{
    if (s->batch && s->batch->count >= s->batch->capacity) {
        sluice_batch *full = s->batch;
        s->batch = NULL;
        if (s->host->emit(s->ctx, full) == SLUICE_ERROR) {
            snprintf(err, errlen, "emit failed");
            return SLUICE_ERROR;
        }
    }
    if (!s->batch) {
        s->batch = s->host->batch_new(s->ctx);
        if (!s->batch) {
            snprintf(err, errlen, "out of memory");
            return SLUICE_ERROR;
        }
    }
    return SLUICE_OK;
}

/* Decode one line (no '\n', '\r' dropped, 1..max_line bytes). */
static int take_line(void *arg, const char *p, size_t len)
{
    line_target *t = arg;
    socket_source *s = t->s;
    uint32_t before;
    int rc;

    if (batch_room(s, t->err, t->errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    before = s->batch->count;
    rc = s->host->decode(t->c ? t->c->codec : s->udp_codec, s->batch, p, len);
    if (rc == SLUICE_ERROR) {
        snprintf(t->err, t->errlen, "undecodable input from %s (on_error: fail)",
                 peer_name(s, t->c));
        return SLUICE_ERROR;
    }
    if (s->batch->count > before) {
        sluice_record *r = &s->batch->records[s->batch->count - 1];
        if (r->ingest_ns == 0)
            r->ingest_ns = s->read_ns;
    }
    return SLUICE_OK;
}

/* The line rules (line_reader.h) applied for one stream of this source. */
static sl_line_handler line_handler(line_target *t)
{
    return (sl_line_handler){.max_line = t->s->max_line, .line = take_line,
                             .too_long = reject_long_line, .arg = t};
}

/* Send the batch built during this poll downstream. */
static int flush_batch(socket_source *s, char *err, size_t errlen)
{
    sluice_batch *b = s->batch;

    if (!b || b->count == 0)
        return SLUICE_OK;
    s->batch = NULL;
    if (s->host->emit(s->ctx, b) == SLUICE_ERROR) {
        snprintf(err, errlen, "emit failed");
        return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* ---- TCP streams ----------------------------------------------------- */

/* Read what c has, within *budget. *closed when the stream ended. */
static int conn_read(socket_source *s, conn *c, size_t *budget, bool *closed, bool *worked,
                     char *err, size_t errlen)
{
    line_target target = {s, c, err, errlen};
    sl_line_handler h = line_handler(&target);
    sl_line_reader *lr = &c->lines;

    *closed = false;
    while (*budget > 0) {
        ssize_t n;
        if (!sl_line_reader_room(lr, READ_CHUNK)) {
            s->host->log(s->ctx, SLUICE_LOG_ERROR, "out of memory reading from %s; closing it",
                         c->peer);
            *closed = true;
            return SLUICE_OK;
        }
        n = recv(c->fd, lr->buf + lr->len, lr->cap - lr->len, 0);
        if (n > 0) {
            size_t from = lr->len;
            lr->len += (size_t)n;
            *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
            *worked = true;
            if (s->connect_mode)
                sl_backoff_reset(&s->backoff); /* a useful connection */
            if (sl_line_reader_take(lr, from, &h) != SLUICE_OK)
                return SLUICE_ERROR;
            continue;
        }
        if (n == 0) {
            *closed = true;
            *worked = true;
            /* The peer is gone: its last line may lack a newline. */
            return sl_line_reader_finish(lr, &h);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return SLUICE_OK;
        /* Reset or the like: an unterminated tail is a truncated line. */
        s->host->log(s->ctx, SLUICE_LOG_WARN, "reading from %s failed: %s", c->peer,
                     strerror(errno));
        *closed = true;
        if (sl_line_reader_pending(lr) > 0) {
            char detail[SL_ADDR_TEXT_MAX + 96];
            snprintf(detail, sizeof detail, "connection from %s broke inside a line", c->peer);
            if (s->host->reject(s->ctx, NULL, raw_prefix(lr->buf, lr->len), "truncated_line",
                                detail) == SLUICE_ERROR) {
                snprintf(err, errlen, "%s (on_error: fail)", detail);
                return SLUICE_ERROR;
            }
        }
        sl_line_reader_free(lr); /* the stream is closed next */
        return SLUICE_OK;
    }
    return SLUICE_OK;
}

/* Take a connected fd as a new stream. */
static bool conn_add(socket_source *s, int fd, const struct sockaddr *peer, socklen_t peerlen)
{
    char err[256];
    conn *c = &s->conns[s->nconns];

    memset(c, 0, sizeof *c);
    c->fd = fd;
    sl_addr_format(peer, peerlen, c->peer, sizeof c->peer);
    c->codec = s->host->codec_new(s->ctx, format_names[s->format], err, sizeof err);
    if (!c->codec) {
        s->host->log(s->ctx, SLUICE_LOG_ERROR, "closing connection from %s: %s", c->peer, err);
        close(fd);
        c->fd = -1;
        return false;
    }
    s->nconns++;
    return true;
}

static void accept_clients(socket_source *s)
{
    while (s->nconns < s->max_conns) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s->host->log(s->ctx, SLUICE_LOG_WARN, "accept on %s failed: %s", s->shown,
                             strerror(errno));
            return;
        }
        if (conn_add(s, fd, (struct sockaddr *)&ss, len))
            s->host->log(s->ctx, SLUICE_LOG_DEBUG, "client %s connected",
                         s->conns[s->nconns - 1].peer);
    }
}

/* ---- connect mode ------------------------------------------------------ */

static void connect_failed(socket_source *s, const char *why)
{
    int64_t now = sl_sock_now_ms();
    int64_t delay = sl_backoff_next(&s->backoff);

    if (s->ai_list) {
        freeaddrinfo(s->ai_list);
        s->ai_list = s->ai_next = NULL;
    }
    s->failures++;
    s->next_attempt = now + delay;
    if (s->failures == 1 || now - s->last_fail_log >= RETRY_LOG_MS) {
        if (s->failures == 1)
            s->host->log(s->ctx, SLUICE_LOG_WARN, "cannot connect to %s: %s; retrying",
                         s->shown, why);
        else
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "still cannot connect to %s after %u attempts: %s; retrying",
                         s->shown, s->failures, why);
        s->last_fail_log = now;
    }
}

static void connect_succeeded(socket_source *s, int fd, const struct addrinfo *ai)
{
    bool added = conn_add(s, fd, ai->ai_addr, ai->ai_addrlen); /* before ai is freed */

    freeaddrinfo(s->ai_list);
    s->ai_list = s->ai_next = NULL;
    if (!added) {
        s->next_attempt = sl_sock_now_ms() + sl_backoff_next(&s->backoff);
        return;
    }
    if (s->failures > 0)
        s->host->log(s->ctx, SLUICE_LOG_INFO, "connected to %s after %u failed attempt%s",
                     s->conns[0].peer, s->failures, s->failures == 1 ? "" : "s");
    else
        s->host->log(s->ctx, SLUICE_LOG_INFO, "connected to %s", s->conns[0].peer);
    s->failures = 0;
}

/* Try the remaining resolved addresses until one connects or is pending. */
static void connect_next_address(socket_source *s)
{
    while (s->ai_next) {
        struct addrinfo *ai = s->ai_next;
        int fd, e = sl_sock_connect_start(ai, &fd);
        if (e == 0) {
            connect_succeeded(s, fd, ai);
            return;
        }
        if (e == EINPROGRESS) {
            s->connecting_fd = fd;
            s->attempt_deadline = sl_sock_now_ms() + CONNECT_ATTEMPT_MS;
            return; /* ai_next still points at ai: connect_progress needs it */
        }
        s->last_errno = e;
        s->ai_next = ai->ai_next;
    }
    connect_failed(s, strerror(s->last_errno ? s->last_errno : ECONNREFUSED));
}

static void connect_begin(socket_source *s)
{
    char msg[512];

    if (sl_addr_resolve(&s->addr, SOCK_STREAM, false, &s->ai_list, msg, sizeof msg) != 0) {
        connect_failed(s, msg);
        return;
    }
    s->ai_next = s->ai_list;
    s->last_errno = 0;
    connect_next_address(s);
}

/* The in-progress connect reported (revents) or may have timed out. */
static void connect_progress(socket_source *s, short revents)
{
    struct addrinfo *ai = s->ai_next;
    int e;

    if (revents) {
        e = sl_sock_connect_result(s->connecting_fd);
    } else if (sl_sock_now_ms() >= s->attempt_deadline) {
        e = ETIMEDOUT;
    } else {
        return;
    }
    if (e == 0) {
        int fd = s->connecting_fd;
        s->connecting_fd = -1;
        connect_succeeded(s, fd, ai);
        return;
    }
    close(s->connecting_fd);
    s->connecting_fd = -1;
    s->last_errno = e;
    s->ai_next = ai->ai_next;
    connect_next_address(s);
}

/* ---- UDP ------------------------------------------------------------- */

/* Every line of one datagram; the last may lack its newline. */
static int take_datagram(socket_source *s, const char *p, size_t len, char *err, size_t errlen)
{
    line_target target = {s, NULL, err, errlen};
    sl_line_handler h = line_handler(&target);

    return sl_lines_split(p, len, &h);
}

static int udp_read(socket_source *s, size_t *budget, bool *worked, char *err, size_t errlen)
{
    while (*budget > 0) {
        ssize_t n;
        s->udp_fromlen = sizeof s->udp_from;
        n = recvfrom(s->listen_fd, s->udp_buf, UDP_DATAGRAM_MAX, MSG_TRUNC,
                     (struct sockaddr *)&s->udp_from, &s->udp_fromlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s->host->log(s->ctx, SLUICE_LOG_WARN, "receiving on %s failed: %s", s->shown,
                             strerror(errno));
            return SLUICE_OK;
        }
        *worked = true;
        *budget = (size_t)n + 1 >= *budget ? 0 : *budget - (size_t)n - 1;
        if (n > UDP_DATAGRAM_MAX) { /* cannot happen over IP, but never decode a cut */
            if (s->host->reject(s->ctx, NULL, raw_prefix(s->udp_buf, UDP_DATAGRAM_MAX),
                                "datagram_truncated", "datagram larger than 64KiB") ==
                SLUICE_ERROR) {
                snprintf(err, errlen, "datagram larger than 64KiB (on_error: fail)");
                return SLUICE_ERROR;
            }
            continue;
        }
        if (take_datagram(s, s->udp_buf, (size_t)n, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    }
    return SLUICE_OK;
}

/* ---- poll ------------------------------------------------------------ */

/* Fill s->pfds; *first_conn is the index of conns[0]'s entry. */
static nfds_t build_pollset(socket_source *s, int *timeout, nfds_t *first_conn)
{
    nfds_t n = 0;
    int64_t now = sl_sock_now_ms();

    *timeout = POLL_MS;
    if (s->listen_fd >= 0) {
        if (s->udp || s->nconns < s->max_conns) {
            s->pfds[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
            s->full_logged = false;
        } else if (!s->full_logged) {
            /* New clients wait in the kernel's backlog, not refused. */
            s->host->log(s->ctx, SLUICE_LOG_WARN,
                         "max_connections (%d) reached; new clients wait until one leaves",
                         s->max_conns);
            s->full_logged = true;
        }
    } else if (s->connecting_fd >= 0) {
        s->pfds[n++] = (struct pollfd){.fd = s->connecting_fd, .events = POLLOUT};
        if (s->attempt_deadline - now < *timeout)
            *timeout = s->attempt_deadline - now < 0 ? 0 : (int)(s->attempt_deadline - now);
    } else if (s->connect_mode && s->nconns == 0) {
        int64_t wait = s->next_attempt - now;
        *timeout = wait < 0 ? 0 : wait < POLL_MS ? (int)wait : POLL_MS;
    }
    *first_conn = n;
    for (int i = 0; i < s->nconns; i++)
        s->pfds[n++] = (struct pollfd){.fd = s->conns[i].fd, .events = POLLIN};
    return n;
}

static int source_poll(void *self, char *err, size_t errlen)
{
    socket_source *s = self;
    size_t budget = READ_BUDGET;
    bool worked = false;
    nfds_t n, first_conn;
    short listen_events = 0, connect_events = 0;
    int timeout, ready;

    if (s->host->stopping(s->ctx))
        return SLUICE_RETRY;
    if (s->connect_mode && s->nconns == 0 && s->connecting_fd < 0 &&
        sl_sock_now_ms() >= s->next_attempt)
        connect_begin(s);

    n = build_pollset(s, &timeout, &first_conn);
    ready = poll(s->pfds, n, timeout);
    if (ready < 0) {
        if (errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return SLUICE_ERROR;
        }
        ready = 0;
    }
    if (first_conn > 0) {
        if (s->listen_fd >= 0)
            listen_events = s->pfds[0].revents;
        else
            connect_events = s->pfds[0].revents;
    }
    s->read_ns = sl_sock_now_ns();

    /* Backwards, so removing conns[i] (the last moves into its place)
     * never skips one whose events are still unread. */
    for (int i = s->nconns - 1; ready > 0 && i >= 0; i--) {
        bool closed;
        if (!s->pfds[first_conn + (nfds_t)i].revents)
            continue;
        if (conn_read(s, &s->conns[i], &budget, &closed, &worked, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
        if (closed) {
            if (s->connect_mode) {
                s->host->log(s->ctx, SLUICE_LOG_INFO, "%s closed the connection; reconnecting",
                             s->conns[i].peer);
                s->next_attempt = sl_sock_now_ms() + sl_backoff_next(&s->backoff);
            } else {
                s->host->log(s->ctx, SLUICE_LOG_DEBUG, "client %s disconnected",
                             s->conns[i].peer);
            }
            conn_remove(s, i);
        }
    }
    if (s->udp && (listen_events & POLLIN)) {
        if (udp_read(s, &budget, &worked, err, errlen) != SLUICE_OK)
            return SLUICE_ERROR;
    } else if (listen_events) {
        accept_clients(s);
    }
    if (s->connecting_fd >= 0)
        connect_progress(s, connect_events);

    if (flush_batch(s, err, errlen) != SLUICE_OK)
        return SLUICE_ERROR;
    return worked ? SLUICE_OK : SLUICE_RETRY;
}

/* ---- descriptor -------------------------------------------------------- */

static const sluice_option source_options[] = {
    {.name = "listen", .type = SLUICE_OPT_STRING,
     .offset = offsetof(socket_source_config, listen),
     .help = "host:port to serve: a TCP server for any number of clients, or a bound UDP "
             "socket (port 0 picks a free port, logged at start)"},
    {.name = "connect", .type = SLUICE_OPT_STRING,
     .offset = offsetof(socket_source_config, connect),
     .help = "host:port to read from as a TCP client (like `nc -lk PORT` feeding Spark's "
             "socketTextStream); reconnects while the peer is away"},
    {.name = "protocol", .type = SLUICE_OPT_ENUM, .default_value = "tcp",
     .offset = offsetof(socket_source_config, protocol), .choices = protocol_choices,
     .help = "tcp or udp (udp only with listen)"},
    {.name = "format", .type = SLUICE_OPT_ENUM, .default_value = "lines",
     .offset = offsetof(socket_source_config, format), .choices = format_choices,
     .help = "json: one JSON object per line; lines: each line is the field `message`"},
    {.name = "max_line", .type = SLUICE_OPT_SIZE, .default_value = "1MiB",
     .offset = offsetof(socket_source_config, max_line),
     .help = "longer lines are rejected (reason line_too_long) and skipped"},
    {.name = "max_connections", .type = SLUICE_OPT_INT, .default_value = "64",
     .offset = offsetof(socket_source_config, max_connections),
     .help = "TCP clients served at once; more wait in the listen backlog"},
    {.name = NULL},
};

const sluice_plugin_def sl_plugin_socket_source = {
    .abi_major = SLUICE_ABI_MAJOR,
    .abi_minor = SLUICE_ABI_MINOR,
    .size = sizeof(sluice_plugin_def),
    .name = "socket",
    .kind = SLUICE_SOURCE,
    .version = "1.0.0",
    .description = "lines or JSON lines from TCP clients, a TCP server, or UDP datagrams",
    .config_size = sizeof(socket_source_config),
    .options = source_options,
    .create = source_create,
    .start = source_start,
    .destroy = source_destroy,
    .poll = source_poll,
};
