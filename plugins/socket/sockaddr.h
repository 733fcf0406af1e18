/*
 * sockaddr.h — socket plumbing shared by the socket source and sink.
 *
 * Both ends of the socket plugin take an address as one string, "host:port"
 * ("127.0.0.1:9000", "localhost:9000", "[::1]:9000", "*:9000" or ":9000"
 * for every local address), and both need the same few steps around it:
 * check its syntax at create() time without any I/O, resolve it with
 * getaddrinfo() when the stage starts, open a listening or connecting
 * non-blocking socket on one of the resulting addresses, name a peer in a
 * log line, and wait between reconnection attempts with a doubling delay.
 * Keeping them here means the source and sink parse, report and retry
 * addresses identically.
 */
#ifndef SLUICE_SOCKET_SOCKADDR_H
#define SLUICE_SOCKET_SOCKADDR_H

#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_ADDR_HOST_MAX 256
#define SL_ADDR_PORT_MAX 32
/* Room for "[v6-address%zone]:65535" and for a host name with a port. */
#define SL_ADDR_TEXT_MAX (SL_ADDR_HOST_MAX + SL_ADDR_PORT_MAX + 4)

/* A parsed "host:port". An empty host means "any local address" when
 * listening and the loopback address when connecting (getaddrinfo's rules
 * for a NULL node). */
typedef struct sl_addr_spec {
    char host[SL_ADDR_HOST_MAX];
    char port[SL_ADDR_PORT_MAX]; /* digits or a service name ("http") */
} sl_addr_spec;

/* Check the syntax of `text` and split it; no I/O. Port 0 ("pick a free
 * one") is accepted only when `listening`. Returns 0, or -1 with a message
 * in err that reads well after "option: ". */
int sl_addr_parse(const char *text, bool listening, sl_addr_spec *out,
                  char *err, size_t errlen);

/* "host:port" as a user would write it, for log lines and errors. */
void sl_addr_display(const sl_addr_spec *spec, char *out, size_t outlen);

/* getaddrinfo() for spec with the given SOCK_STREAM/SOCK_DGRAM; `passive`
 * for a listening socket. Returns 0 and a list to freeaddrinfo(), or -1
 * with a message in err. */
int sl_addr_resolve(const sl_addr_spec *spec, int socktype, bool passive,
                    struct addrinfo **out, char *err, size_t errlen);

/* A numeric "1.2.3.4:5" / "[::1]:5" for a socket address. */
void sl_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

/* A bound (and for TCP, listening) non-blocking socket on spec. With the
 * wildcard host, IPv6 dual-stack is tried first so both families are
 * served, then IPv4. `bound` receives the actual address, which tells
 * the port the kernel picked for port 0. Returns the fd, or -1 with a
 * message in err. */
int sl_sock_listen(const sl_addr_spec *spec, int socktype, char *bound, size_t boundlen,
                   char *err, size_t errlen);

/* Begin a non-blocking connect() to one resolved address. Returns 0 with
 * *fd connected, EINPROGRESS with *fd to wait on for POLLOUT, or an errno
 * value with *fd = -1. */
int sl_sock_connect_start(const struct addrinfo *ai, int *fd);

/* After POLLOUT on an in-progress connect: 0 when connected, else the
 * errno value of the failure. */
int sl_sock_connect_result(int fd);

/* CLOCK_MONOTONIC in milliseconds and nanoseconds. */
int64_t sl_sock_now_ms(void);
int64_t sl_sock_now_ns(void);

/* Reconnection delay: 100 ms, doubling up to 5 s; reset once a connection
 * proves useful, so a peer that accepts and hangs up at once is not
 * hammered. */
#define SL_BACKOFF_MIN_MS 100
#define SL_BACKOFF_MAX_MS 5000

typedef struct sl_backoff {
    int64_t delay_ms;
} sl_backoff;

static inline void sl_backoff_reset(sl_backoff *b)
{
    b->delay_ms = SL_BACKOFF_MIN_MS;
}

/* The delay to wait now; the next one doubles. */
static inline int64_t sl_backoff_next(sl_backoff *b)
{
    int64_t d = b->delay_ms < SL_BACKOFF_MIN_MS ? SL_BACKOFF_MIN_MS : b->delay_ms;
    b->delay_ms = d * 2 > SL_BACKOFF_MAX_MS ? SL_BACKOFF_MAX_MS : d * 2;
    return d;
}

#endif
