/*
 * log.c — log lines on stderr; see log.h.
 *
 * Every line is scrubbed of URL passwords (redact.h) before it is written.
 */
#include "log.h"

#include "redact.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static sluice_log_level log_max = SLUICE_LOG_INFO;
static void (*status_clear)(void);
static void (*status_redraw)(void);

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void sl_log_set_level(sluice_log_level max)
{
    log_max = max;
}

sluice_log_level sl_log_level_from(const char *name, int *ok)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_names[i]) == 0 ||
            (i == 1 && strcasecmp(name, "warning") == 0)) {
            *ok = 1;
            return (sluice_log_level)i;
        }
    }
    *ok = 0;
    return SLUICE_LOG_INFO;
}

void sl_log_set_status_hooks(void (*clear)(void), void (*redraw)(void))
{
    pthread_mutex_lock(&log_lock);
    status_clear = clear;
    status_redraw = redraw;
    pthread_mutex_unlock(&log_lock);
}

void sl_log_write_locked(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&log_lock);
    fn(arg);
    pthread_mutex_unlock(&log_lock);
}

int64_t sl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sl_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sl_vlog(sluice_log_level level, const char *stage, const char *fmt, va_list ap)
{
    if (level > log_max)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    if (stage && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - n, "[%s] ", stage);
    if (n < (int)sizeof line)
        n += vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (n >= (int)sizeof line - 1)
        n = sizeof line - 2;
    line[n] = 0;
    n = (int)sl_redact_url_passwords(line, sizeof line - 1); /* room for the '\n' */
    line[n++] = '\n';
    pthread_mutex_lock(&log_lock);
    if (status_clear)
        status_clear();
    fwrite(line, 1, (size_t)n, stderr);
    if (status_redraw)
        status_redraw();
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

void sl_log(sluice_log_level level, const char *stage, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vlog(level, stage, fmt, ap);
    va_end(ap);
}

int sl_ratelimit_pass(sl_ratelimit *rl, uint64_t *suppressed)
{
    int64_t now = sl_now_ns();
    if (now - rl->last_ns < rl->interval_ns) {
        rl->suppressed++;
        return 0;
    }
    rl->last_ns = now;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return 1;
}
