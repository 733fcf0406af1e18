/*
 * sockaddr.c — "host:port" parsing, resolution and socket opening for the
 * socket source and sink (see sockaddr.h for why they share it).
 *
 * Parsing is purely syntactic so `sluice validate` can report a malformed
 * address at its line and column without touching the network; names are
 * resolved only when a stage starts (and again at every reconnection, so a
 * peer that moves to another address is followed). IPv6 literals must be
 * bracketed, as in URLs: "::1:9000" is ambiguous, "[::1]:9000" is not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SOCK_NONBLOCK, SOCK_CLOEXEC */
#endif
#include "sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool service_name_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return false;
    return true;
}

static int check_port(const char *port, bool listening, char *err, size_t errlen)
{
    if (!*port) {
        snprintf(err, errlen, "missing port after ':' (expected host:port, e.g. 127.0.0.1:9000)");
        return -1;
    }
    if (strlen(port) >= SL_ADDR_PORT_MAX) {
        snprintf(err, errlen, "port '%s' is too long", port);
        return -1;
    }
    if (all_digits(port)) {
        long v = strlen(port) > 5 ? 65536 : strtol(port, NULL, 10);
        if (v > 65535) {
            snprintf(err, errlen, "port %s is out of range (0-65535)", port);
            return -1;
        }
        if (v == 0 && !listening) {
            snprintf(err, errlen, "port 0 can only be used to listen (the system picks a free port)");
            return -1;
        }
        return 0;
    }
    if (!service_name_ok(port)) {
        snprintf(err, errlen, "'%s' is not a port number or service name", port);
        return -1;
    }
    return 0;
}

/* The part of a bracketed IPv6 literal before any "%zone" must parse. */
static bool ipv6_literal_ok(const char *host)
{
    char addr[INET6_ADDRSTRLEN + 1];
    size_t n = strcspn(host, "%");
    struct in6_addr a;

    if (n == 0 || n >= sizeof addr)
        return false;
    memcpy(addr, host, n);
    addr[n] = '\0';
    return inet_pton(AF_INET6, addr, &a) == 1;
}

int sl_addr_parse(const char *text, bool listening, sl_addr_spec *out,
                  char *err, size_t errlen)
{
    const char *host, *port;
    size_t hostlen;

    memset(out, 0, sizeof *out);
    if (!text || !*text) {
        snprintf(err, errlen, "empty address (expected host:port, e.g. 127.0.0.1:9000)");
        return -1;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close) {
            snprintf(err, errlen, "'%s': missing ']' (IPv6 addresses are written [::1]:9000)", text);
            return -1;
        }
        if (close[1] != ':') {
            snprintf(err, errlen, "'%s': expected ':port' after ']' (e.g. [::1]:9000)", text);
            return -1;
        }
        host = text + 1;
        hostlen = (size_t)(close - host);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon) {
            snprintf(err, errlen, "'%s' has no port (expected host:port, e.g. 127.0.0.1:9000)", text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(colon - text))) {
            snprintf(err, errlen, "'%s': IPv6 addresses need brackets, e.g. [%.*s]:%s",
                     text, (int)(colon - text), text, colon + 1);
            return -1;
        }
        host = text;
        hostlen = (size_t)(colon - text);
        port = colon + 1;
        if (hostlen == 1 && host[0] == '*')
            hostlen = 0; /* "*:9000": every local address */
    }
    if (hostlen >= SL_ADDR_HOST_MAX) {
        snprintf(err, errlen, "host name in '%s' is too long", text);
        return -1;
    }
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    if (text[0] == '[' && !ipv6_literal_ok(out->host)) {
        snprintf(err, errlen, "'%s' is not an IPv6 address", out->host);
        return -1;
    }
    if (check_port(port, listening, err, errlen) != 0)
        return -1;
    memcpy(out->port, port, strlen(port) + 1);
    return 0;
}

void sl_addr_display(const sl_addr_spec *spec, char *out, size_t outlen)
{
    if (!spec->host[0])
        snprintf(out, outlen, "*:%s", spec->port);
    else if (strchr(spec->host, ':'))
        snprintf(out, outlen, "[%s]:%s", spec->host, spec->port);
    else
        snprintf(out, outlen, "%s:%s", spec->host, spec->port);
}

int sl_addr_resolve(const sl_addr_spec *spec, int socktype, bool passive,
                    struct addrinfo **out, char *err, size_t errlen)
{
    struct addrinfo hints;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    /* No AI_ADDRCONFIG: it hides 127.0.0.1 on hosts whose only interface
     * is loopback (containers, CI), which is exactly where tests run. */
    hints.ai_flags = (passive ? AI_PASSIVE : 0) | (all_digits(spec->port) ? AI_NUMERICSERV : 0);
    rc = getaddrinfo(spec->host[0] ? spec->host : NULL, spec->port, &hints, out);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", spec->host[0] ? spec->host : "*",
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        *out = NULL;
        return -1;
    }
    return 0;
}

void sl_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "(unknown address)");
        return;
    }
    if (sa->sa_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%s", host, serv);
    else
        snprintf(out, outlen, "%s:%s", host, serv);
}

/* Bind (and listen on) one resolved address; -1 with errno on failure. */
static int open_listener(const struct addrinfo *ai, bool wildcard)
{
    int one = 1, zero = 0;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    /* A restarted server must not wait out TIME_WAIT of its old clients. */
    if (ai->ai_socktype == SOCK_STREAM)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6 && wildcard)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        (ai->ai_socktype == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int sl_sock_listen(const sl_addr_spec *spec, int socktype, char *bound, size_t boundlen,
                   char *err, size_t errlen)
{
    struct addrinfo *list, *ai;
    bool wildcard = spec->host[0] == '\0';
    int fd = -1, last_errno = EADDRNOTAVAIL;
    char shown[SL_ADDR_TEXT_MAX];

    if (sl_addr_resolve(spec, socktype, true, &list, err, errlen) != 0)
        return -1;
    /* Pass 0: IPv6 only when wildcard (dual-stack covers IPv4 too);
     * pass 1: everything else, in resolver order. */
    for (int pass = 0; pass < 2 && fd < 0; pass++) {
        for (ai = list; ai && fd < 0; ai = ai->ai_next) {
            bool v6 = ai->ai_family == AF_INET6;
            if (wildcard && (pass == 0) != v6)
                continue;
            if (!wildcard && pass == 1)
                break;
            fd = open_listener(ai, wildcard);
            if (fd < 0)
                last_errno = errno;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        sl_addr_display(spec, shown, sizeof shown);
        snprintf(err, errlen, "cannot listen on %s: %s", shown, strerror(last_errno));
        return -1;
    }
    {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            sl_addr_format((struct sockaddr *)&ss, len, bound, boundlen);
        else
            sl_addr_display(spec, bound, boundlen);
    }
    return fd;
}

int sl_sock_connect_start(const struct addrinfo *ai, int *fd)
{
    int e;

    *fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                 ai->ai_protocol);
    if (*fd < 0)
        return errno;
    if (connect(*fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return 0;
    e = errno;
    if (e == EINPROGRESS || e == EINTR) /* EINTR: the connect goes on */
        return EINPROGRESS;
    close(*fd);
    *fd = -1;
    return e;
}

int sl_sock_connect_result(int fd)
{
    int e = 0;
    socklen_t len = sizeof e;

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return errno;
    return e;
}

int64_t sl_sock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sl_sock_now_ms(void)
{
    return sl_sock_now_ns() / 1000000;
}
