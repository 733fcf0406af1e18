/*
 * http.h — the run's HTTP endpoint (libmicrohttpd): /metrics (Prometheus
 * text), /healthz, /ready and /status (JSON).
 *
 * Why libmicrohttpd with its own polling thread: a scrape must never wait
 * on a stage, and a stage never on a scrape; the handlers only read the
 * runtime's atomic counters, so they need no lock against the stages.
 * The listening socket is bound by us, before the daemon starts, so a busy
 * port is a clear error at start and port 0 reports the port it got.
 *
 * Safe defaults (issue 8): the default address is loopback; with
 * metrics.username/password every route but /healthz and /ready answers
 * 401 without the right credentials; with metrics.tls_cert/tls_key it
 * speaks HTTPS only (libmicrohttpd's GnuTLS). Listening beyond loopback
 * without auth is allowed but warned about.
 */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include "runtime.h"

typedef struct sl_http sl_http;

/* Bind `listen` (host:port, [v6]:port; port 0: any free port) and serve rt,
 * with the basic auth and TLS that rt->cfg sets. NULL with err set when the
 * address is bad or cannot be bound, or the TLS files are not a usable
 * certificate and key (or libmicrohttpd has no TLS). err never holds the
 * password. */
sl_http *sl_http_start(sl_runtime *rt, const char *listen, char *err, size_t errlen);
/* The port actually bound. */
unsigned sl_http_port(const sl_http *h);
/* "https" with TLS, else "http": for the URL the run logs. */
const char *sl_http_scheme(const sl_http *h);
/* Stop serving (waits for requests in flight) and free. NULL is fine. */
void sl_http_stop(sl_http *h);

#endif
