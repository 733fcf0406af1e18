/*
 * assign.c — window assignment (see assign.h for the rules). Kept free of
 * any operator state so the edge cases — boundaries, negative times,
 * overflow near the ends of int64, bridging sessions — are tested directly.
 */
#include "assign.h"

int64_t wa_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

uint64_t wa_sliding(int64_t t, int64_t size, int64_t slide, int64_t *first, int64_t *last)
{
    /* The latest start is the multiple of slide at or below t; the earliest
     * is the smallest multiple of slide above t - size. */
    int64_t lo_edge;
    if (__builtin_sub_overflow(t, size, &lo_edge))
        return 0;
    int64_t hi = wa_floor_div(t, slide) * slide;
    int64_t lo = (wa_floor_div(lo_edge, slide) + 1) * slide;
    int64_t end;
    if (__builtin_add_overflow(hi, size, &end))
        return 0;
    *first = lo;
    *last = hi;
    return (uint64_t)((hi - lo) / slide) + 1;
}

bool wa_closed(int64_t end, int64_t lateness, int64_t wm)
{
    int64_t limit;
    if (wm == INT64_MAX)
        return true; /* the end of input closes everything */
    if (__builtin_add_overflow(end - 1, lateness, &limit))
        return false; /* beyond int64: closes only at the end of input */
    return wm >= limit;
}

bool wa_session_overlaps(wa_session s, int64_t t, int64_t gap)
{
    return t < s.end && s.start < t + gap;
}

bool wa_session_end(int64_t t, int64_t gap, int64_t *end)
{
    return !__builtin_add_overflow(t, gap, end);
}

long wa_session_merge(wa_session *s, size_t *n, int64_t t, int64_t gap)
{
    long into = -1;
    size_t w = 0;
    for (size_t i = 0; i < *n; i++) {
        if (!wa_session_overlaps(s[i], t, gap)) {
            s[w++] = s[i];
            continue;
        }
        if (into < 0) {
            into = (long)w;
            s[w] = s[i];
            if (t < s[w].start)
                s[w].start = t;
            if (t + gap > s[w].end)
                s[w].end = t + gap;
            w++;
        } else {
            if (s[i].start < s[into].start)
                s[into].start = s[i].start;
            if (s[i].end > s[into].end)
                s[into].end = s[i].end;
        }
    }
    *n = w;
    return into;
}
