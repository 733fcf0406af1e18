/*
 * eventtime.c — event-time parsing and the source watermark; see eventtime.h.
 *
 * The ISO-8601 parser is hand-written because it runs once per record and
 * strptime()+timegm() cost several times more (locale, tz lookups); the
 * civil-date arithmetic is Howard Hinnant's days_from_civil.
 */
#include "eventtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *p, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

bool sl_parse_iso8601(const char *p, size_t len, int64_t *ms)
{
    int y, mo, d, h, mi, s = 0;
    if (len < 16 || !digits(p, 4, &y) || p[4] != '-' || !digits(p + 5, 2, &mo) ||
        p[7] != '-' || !digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't' && p[10] != ' ') ||
        !digits(p + 11, 2, &h) || p[13] != ':' || !digits(p + 14, 2, &mi))
        return false;
    size_t i = 16;
    if (i < len && p[i] == ':') {
        if (i + 3 > len || !digits(p + i + 1, 2, &s))
            return false;
        i += 3;
    }
    int64_t frac_ms = 0;
    if (i < len && (p[i] == '.' || p[i] == ',')) {
        i++;
        size_t start = i;
        int scale = 100;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            frac_ms += (p[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9)
            return false;
    }
    int64_t offset_min = 0;
    if (i < len && (p[i] == 'Z' || p[i] == 'z')) {
        i++;
    } else if (i < len && (p[i] == '+' || p[i] == '-')) {
        int oh, om = 0;
        int sign = p[i] == '-' ? -1 : 1;
        if (i + 3 > len || !digits(p + i + 1, 2, &oh))
            return false;
        i += 3;
        if (i < len && p[i] == ':')
            i++;
        if (i + 2 <= len && digits(p + i, 2, &om))
            i += 2;
        offset_min = sign * (oh * 60 + om);
    }
    if (i != len || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return false;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + s - offset_min * 60;
    *ms = secs * 1000 + frac_ms;
    return true;
}

void sl_format_iso8601(int64_t ms, char out[48])
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t msr = ms - secs * 1000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t sod = secs - days * 86400;
    /* civil_from_days */
    int64_t z = days + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(out, 48, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m % 13, d % 32,
             (unsigned)(sod / 3600) % 24, (unsigned)(sod / 60 % 60), (unsigned)(sod % 60),
             (unsigned)msr % 1000);
}

static bool parse_number(sluice_str s, double *out)
{
    char buf[64];
    if (s.len == 0 || s.len >= sizeof buf)
        return false;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == 0 && isfinite(*out);
}

bool sl_event_time_of(const sluice_value *v, sl_time_format fmt, int64_t *ms, const char **why)
{
    double num;
    switch (v->type) {
    case SLUICE_INT:
        if (fmt == SL_TIME_ISO8601)
            break;
        *ms = fmt == SL_TIME_EPOCH_S ? v->u.i * 1000 : v->u.i;
        return true;
    case SLUICE_DOUBLE:
        if (fmt == SL_TIME_ISO8601 || !isfinite(v->u.d))
            break;
        *ms = (int64_t)(fmt == SL_TIME_EPOCH_S ? v->u.d * 1000.0 : v->u.d);
        return true;
    case SLUICE_STRING:
        if (fmt == SL_TIME_ISO8601) {
            if (sl_parse_iso8601(v->u.s.ptr, v->u.s.len, ms))
                return true;
            *why = "event time is not an ISO-8601 date-time";
            return false;
        }
        if (parse_number(v->u.s, &num)) {
            *ms = (int64_t)(fmt == SL_TIME_EPOCH_S ? num * 1000.0 : num);
            return true;
        }
        break;
    case SLUICE_NULL:
        *why = "event time field is null";
        return false;
    default:
        break;
    }
    *why = fmt == SL_TIME_ISO8601 ? "event time is not an ISO-8601 string"
                                  : "event time is not a number";
    return false;
}

#define MAX_PARTITIONS (1u << 20) /* beyond this, partitions share slots */

void sl_watermark_init(sl_watermark *w, int64_t max_delay_ms, int64_t idle_timeout_ms)
{
    memset(w, 0, sizeof *w);
    w->max_delay = max_delay_ms;
    w->idle_ns = idle_timeout_ms * 1000000;
    w->current = SLUICE_TIME_NONE;
}

void sl_watermark_free(sl_watermark *w)
{
    free(w->parts);
    w->parts = NULL;
    w->nparts = 0;
}

static sl_partition_wm *part(sl_watermark *w, size_t p, int64_t now_ns)
{
    p %= MAX_PARTITIONS;
    if (p >= w->nparts) {
        size_t n = w->nparts ? w->nparts : 4;
        while (n <= p)
            n *= 2;
        sl_partition_wm *np = realloc(w->parts, n * sizeof *np);
        if (!np)
            return NULL;
        for (size_t i = w->nparts; i < n; i++) {
            np[i].max_seen = SLUICE_TIME_NONE;
            np[i].last_ns = now_ns;
            /* Slots past the highest partition seen are not partitions. */
            np[i].done = i > p;
        }
        w->parts = np;
        w->nparts = n;
    } else if (w->parts[p].done && w->parts[p].max_seen == SLUICE_TIME_NONE) {
        w->parts[p].done = false; /* a filler slot becoming a partition */
        w->parts[p].last_ns = now_ns;
    }
    return &w->parts[p];
}

void sl_watermark_declare(sl_watermark *w, size_t n, int64_t now_ns)
{
    for (size_t p = 0; p < n; p++)
        part(w, p, now_ns);
}

void sl_watermark_done(sl_watermark *w, size_t partition)
{
    sl_partition_wm *pw = part(w, partition, 0);
    if (pw) {
        pw->done = true;
        if (pw->max_seen == SLUICE_TIME_NONE)
            pw->max_seen = SLUICE_TIME_MAX; /* finished without records: never a filler */
    }
}

void sl_watermark_open(sl_watermark *w, size_t partition, int64_t now_ns)
{
    sl_partition_wm *pw = part(w, partition, now_ns);
    if (pw) {
        pw->done = false;
        pw->last_ns = now_ns;
        if (pw->max_seen == SLUICE_TIME_MAX)
            pw->max_seen = SLUICE_TIME_NONE; /* "finished empty" no longer holds */
    }
}

void sl_watermark_observe(sl_watermark *w, size_t partition, int64_t t, int64_t now_ns)
{
    sl_partition_wm *pw = partition < w->nparts && !w->parts[partition].done
                              ? &w->parts[partition]
                              : part(w, partition, now_ns);
    if (!pw)
        return;
    if (t > pw->max_seen)
        pw->max_seen = t;
    pw->last_ns = now_ns;
}

sl_wm_change sl_watermark_poll(sl_watermark *w, int64_t now_ns, int64_t *wm)
{
    int64_t lowest = SLUICE_TIME_MAX;
    bool active = false, idle = false;
    for (size_t p = 0; p < w->nparts; p++) {
        const sl_partition_wm *pw = &w->parts[p];
        if (pw->done)
            continue;
        if (w->idle_ns > 0 && now_ns - pw->last_ns >= w->idle_ns) {
            idle = true;
            continue;
        }
        active = true;
        int64_t own = pw->max_seen == SLUICE_TIME_NONE ? SLUICE_TIME_NONE
                                                       : pw->max_seen - w->max_delay;
        if (own < lowest)
            lowest = own;
    }
    if (!active) {
        if (idle && !w->idle) {
            w->idle = true;
            return SL_WM_IDLE;
        }
        return SL_WM_SAME;
    }
    bool was_idle = w->idle;
    w->idle = false;
    if (lowest == SLUICE_TIME_NONE || (lowest <= w->current && !was_idle))
        return SL_WM_SAME;
    if (lowest > w->current)
        w->current = lowest;
    /* Back from idle: re-announce the watermark so downstream counts this
     * input again, even if it did not move. */
    *wm = w->current;
    return SL_WM_ADVANCED;
}
