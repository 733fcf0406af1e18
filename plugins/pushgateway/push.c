/*
 * push.c — the pusher thread and its HTTP requests; see push.h.
 *
 * One curl easy handle, used only by whoever pushes: the thread while it
 * runs, then pg_pusher_finish() after joining it. The thread sleeps on a
 * condition variable (CLOCK_MONOTONIC), so stopping it is immediate, and
 * curl's progress callback cuts a request short once a stop is asked for.
 *
 * Failures are logged the first time, then at most once a minute while
 * they last, and once more when a push lands again, so a gateway that is
 * down for an hour does not flood the log; every attempt is counted in
 * sluice_pushgateway_pushes_total{outcome}.
 */
#include "push.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIRST_RETRY_MS 500
#define FAILURE_LOG_EVERY_MS 60000

struct pg_pusher {
    pg_push_settings s;
    char *url, *username, *password, *ca_file;
    CURL *curl;
    char curl_error[CURL_ERROR_SIZE];
    sluice_buf response;

    pthread_t thread;
    bool thread_running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;            /* under lock: the thread should end */
    atomic_bool cut_short; /* the progress callback aborts transfers */

    unsigned failures;    /* consecutive */
    int64_t last_failure_log_ms;
    sluice_series *pushed_ok, *pushed_failed, *last_success;
};

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- The group's URL ------------------------------------------------------ */

static bool append_str(const sluice_host *h, sluice_buf *b, const char *s)
{
    return h->buf_append(b, s, strlen(s)) == SLUICE_OK;
}

static bool append_base64url(const sluice_host *h, sluice_buf *b, const char *s)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    if (len == 0)
        return append_str(h, b, "="); /* the gateway's spelling of an empty value */
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        char quad[4] = {alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63],
                        i + 1 < len ? alphabet[(v >> 6) & 63] : '=',
                        i + 2 < len ? alphabet[v & 63] : '='};
        if (h->buf_append(b, quad, 4) != SLUICE_OK)
            return false;
    }
    return true;
}

static bool append_segment(const sluice_host *h, sluice_buf *b, const char *label,
                           const char *value)
{
    if (!append_str(h, b, "/") || !append_str(h, b, label))
        return false;
    if (!*value || strchr(value, '/'))
        return append_str(h, b, "@base64/") && append_base64url(h, b, value);
    char *escaped = curl_easy_escape(NULL, value, 0);
    bool ok = escaped && append_str(h, b, "/") && append_str(h, b, escaped);
    curl_free(escaped);
    return ok;
}

char *pg_group_url(const sluice_host *h, const char *base, const char *job,
                   const sluice_map *grouping)
{
    sluice_buf b = {0};
    size_t baselen = strlen(base);
    while (baselen && base[baselen - 1] == '/')
        baselen--;
    bool ok = h->buf_append(&b, base, baselen) == SLUICE_OK &&
              append_str(h, &b, "/metrics") && append_segment(h, &b, "job", job);
    for (size_t i = 0; ok && grouping && i < grouping->count; i++)
        ok = append_segment(h, &b, grouping->keys[i], grouping->values[i]);
    if (!ok || h->buf_append(&b, "", 1) != SLUICE_OK) {
        h->buf_free(&b);
        return NULL;
    }
    return b.data; /* buf memory is malloc()ed: the caller free()s it */
}

/* ---- One push ------------------------------------------------------------- */

static size_t on_response(char *p, size_t size, size_t n, void *arg)
{
    pg_pusher *pusher = arg;
    sluice_buf *b = &pusher->response;
    size_t len = size * n;
    if (b->len < 1024) /* the first line or so is all a message needs */
        pusher->s.host->buf_append(b, p, len < 1024 - b->len ? len : 1024 - b->len);
    return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    pg_pusher *p = arg;
    return atomic_load(&p->cut_short) ? 1 : 0;
}

static bool setup_curl(pg_pusher *p, char *err, size_t errlen)
{
    CURL *c = p->curl = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot make a curl handle");
        return false;
    }
    curl_easy_setopt(c, CURLOPT_URL, p->url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, p->curl_error);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)p->s.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)p->s.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_response);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sluice-pushgateway/" SLUICE_VERSION);
    if (p->username) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, p->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, p->password ? p->password : "");
    }
    if (p->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, p->ca_file);
    if (!p->s.tls_verify) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return true;
}

/* The response's first line, for a message: the gateway explains a 400. */
static void first_line(const sluice_buf *b, char *out, size_t len)
{
    size_t n = 0;
    while (b->data && n < b->len && n + 1 < len && b->data[n] != '\n' && b->data[n] != '\r')
        n++;
    memcpy(out, b->data ? b->data : "", n);
    out[n] = 0;
}

/* PUTs one fresh body. true when the gateway took it; else why in err. */
static bool push_once(pg_pusher *p, char *err, size_t errlen)
{
    sluice_buf body = {0};
    const sluice_host *h = p->s.host;
    if (p->s.body(p->s.arg, &body) != 0) {
        snprintf(err, errlen, "out of memory building the metrics");
        h->buf_free(&body);
        return false;
    }
    struct curl_slist *headers =
        curl_slist_append(NULL, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
    p->response.len = 0;
    p->curl_error[0] = 0;
    curl_easy_setopt(p->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(p->curl, CURLOPT_POSTFIELDS, body.data ? body.data : "");
    curl_easy_setopt(p->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    CURLcode rc = curl_easy_perform(p->curl);
    long status = 0;
    curl_easy_getinfo(p->curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    h->buf_free(&body);

    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", p->curl_error[0] ? p->curl_error : curl_easy_strerror(rc));
        return false;
    }
    if (status < 200 || status > 299) {
        char line[256];
        first_line(&p->response, line, sizeof line);
        snprintf(err, errlen, "HTTP %ld%s%s", status, *line ? ": " : "", line);
        return false;
    }
    return true;
}

/* Pushes once and does the bookkeeping: counters, the log policy. */
static bool push_counted(pg_pusher *p)
{
    const sluice_host *h = p->s.host;
    char why[512];
    if (push_once(p, why, sizeof why)) {
        h->series_add(p->pushed_ok, 1);
        h->series_set(p->last_success, (double)time(NULL));
        if (p->failures)
            h->log(p->s.ctx, SLUICE_LOG_INFO, "pushes to %s work again (after %u failed)",
                   p->url, p->failures);
        p->failures = 0;
        return true;
    }
    h->series_add(p->pushed_failed, 1);
    int64_t now = monotonic_ms();
    if (p->failures == 0 || now - p->last_failure_log_ms >= FAILURE_LOG_EVERY_MS) {
        if (atomic_load(&p->cut_short))
            snprintf(why, sizeof why, "cut short by the end of the run");
        h->log(p->s.ctx, SLUICE_LOG_WARN, "push to %s failed: %s%s", p->url, why,
               p->failures ? " (still failing)" : "; retrying with backoff");
        p->last_failure_log_ms = now;
    }
    p->failures++;
    return false;
}

/* ---- The thread ------------------------------------------------------------- */

static int64_t next_delay_ms(const pg_pusher *p)
{
    if (p->failures == 0)
        return p->s.interval_ms;
    int64_t d = FIRST_RETRY_MS;
    for (unsigned i = 1; i < p->failures && d < p->s.interval_ms; i++)
        d *= 2;
    return d < p->s.interval_ms ? d : p->s.interval_ms;
}

/* Waits delay_ms or until stopped; true when it should stop. */
static bool sleep_or_stop(pg_pusher *p, int64_t delay_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += delay_ms / 1000;
    until.tv_nsec += (delay_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->lock);
    while (!p->stop && pthread_cond_timedwait(&p->wake, &p->lock, &until) != ETIMEDOUT)
        ;
    bool stop = p->stop;
    pthread_mutex_unlock(&p->lock);
    return stop;
}

static void *pusher_main(void *arg)
{
    pg_pusher *p = arg;
    while (!sleep_or_stop(p, next_delay_ms(p)))
        push_counted(p);
    return NULL;
}

/* ---- Life cycle ------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

pg_pusher *pg_pusher_new(const pg_push_settings *s, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    pg_pusher *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->s = *s;
    bool ok = true;
    p->url = dup_or_null(s->url, &ok);
    p->username = dup_or_null(s->username, &ok);
    p->password = dup_or_null(s->password, &ok);
    p->ca_file = dup_or_null(s->ca_file, &ok);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&p->cut_short, false);
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        pg_pusher_free(p);
        return NULL;
    }
    if (!setup_curl(p, err, errlen)) {
        pg_pusher_free(p);
        return NULL;
    }
    const sluice_host *h = s->host;
    sluice_metric *pushes = h->metric_new(
        s->ctx, "sluice_pushgateway_pushes_total", SLUICE_COUNTER,
        "Pushes to the Pushgateway, by outcome.", (const char *const[]){"outcome", NULL});
    p->pushed_ok = h->metric_series(pushes, (const char *const[]){"success"});
    p->pushed_failed = h->metric_series(pushes, (const char *const[]){"failure"});
    p->last_success = h->metric_series(
        h->metric_new(s->ctx, "sluice_pushgateway_last_success_timestamp_seconds", SLUICE_GAUGE,
                      "When a push last reached the Pushgateway (0: never).", NULL),
        NULL);
    return p;
}

int pg_pusher_start(pg_pusher *p, char *err, size_t errlen)
{
    int rc = pthread_create(&p->thread, NULL, pusher_main, p);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the pusher thread: %s", strerror(rc));
        return SLUICE_ERROR;
    }
    p->thread_running = true;
    return SLUICE_OK;
}

static void stop_thread(pg_pusher *p)
{
    if (!p->thread_running)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    atomic_store(&p->cut_short, true);
    pthread_join(p->thread, NULL);
    p->thread_running = false;
    atomic_store(&p->cut_short, false);
}

bool pg_pusher_finish(pg_pusher *p, int64_t deadline_ms)
{
    stop_thread(p);
    int64_t end = monotonic_ms() + deadline_ms, delay = 100;
    p->failures = 0; /* the final push reports its own first failure */
    for (;;) {
        if (push_counted(p))
            return true;
        if (monotonic_ms() + delay >= end)
            break;
        struct timespec ts = {delay / 1000, (delay % 1000) * 1000000};
        nanosleep(&ts, NULL);
        delay *= 2;
    }
    return false;
}

void pg_pusher_free(pg_pusher *p)
{
    if (!p)
        return;
    stop_thread(p);
    if (p->curl)
        curl_easy_cleanup(p->curl);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    p->s.host->buf_free(&p->response);
    free(p->url);
    free(p->username);
    if (p->password) /* heap that is reused later must not still hold it */
        explicit_bzero(p->password, strlen(p->password));
    free(p->password);
    free(p->ca_file);
    free(p);
}
