/* test_eventtime.c — event-time parsing and the per-partition source
 * watermark: max - delay per partition, minimum over partitions that are
 * neither done nor idle, declared partitions holding it back, idleness. */
#include "eventtime.h"
#include "tap.h"

#define MS 1000000LL /* ns per ms */

static void test_parse(void)
{
    int64_t ms;
    ok(sl_parse_iso8601("1970-01-01T00:00:00Z", 20, &ms) && ms == 0, "the epoch");
    ok(sl_parse_iso8601("2024-03-15T12:07:31.123Z", 24, &ms) && ms == 1710504451123LL,
       "UTC with milliseconds");
    ok(sl_parse_iso8601("2024-03-15T13:07:31.123+01:00", 29, &ms) && ms == 1710504451123LL,
       "an offset is applied");
    ok(sl_parse_iso8601("2024-03-15 12:07:31Z", 20, &ms) && ms == 1710504451000LL,
       "a space instead of T");
    ok(sl_parse_iso8601("2024-03-15T12:07:31.123456789Z", 30, &ms) && ms == 1710504451123LL,
       "nanoseconds are cut to ms");
    ok(sl_parse_iso8601("1969-12-31T23:59:59.999Z", 24, &ms) && ms == -1, "before the epoch");
    ok(!sl_parse_iso8601("2024-13-01T00:00:00Z", 20, &ms), "month 13 is refused");
    ok(!sl_parse_iso8601("2024-03-15T12:07:31Zjunk", 24, &ms), "trailing text is refused");
    ok(!sl_parse_iso8601("yesterday", 9, &ms), "words are refused");
    char buf[48];
    sl_format_iso8601(1710504451123LL, buf);
    is_str(buf, "2024-03-15T12:07:31.123Z", "formatting gives ISO-8601 back");
    sl_format_iso8601(-1, buf);
    is_str(buf, "1969-12-31T23:59:59.999Z", "and before the epoch too");

    const char *why = NULL;
    sluice_value v = sluice_int(1500);
    ok(sl_event_time_of(&v, SL_TIME_EPOCH_S, &ms, &why) && ms == 1500000, "epoch_s int");
    ok(sl_event_time_of(&v, SL_TIME_EPOCH_MS, &ms, &why) && ms == 1500, "epoch_ms int");
    v = sluice_double(1.5);
    ok(sl_event_time_of(&v, SL_TIME_EPOCH_S, &ms, &why) && ms == 1500, "epoch_s double");
    ok(!sl_event_time_of(&v, SL_TIME_ISO8601, &ms, &why) && why, "a number is not ISO-8601");
    v = sluice_string((sluice_str){"nope", 4});
    ok(!sl_event_time_of(&v, SL_TIME_ISO8601, &ms, &why), "a bad string is refused: %s", why);
    v = sluice_null();
    ok(!sl_event_time_of(&v, SL_TIME_EPOCH_MS, &ms, &why), "null is refused");
}

static void test_single_partition(void)
{
    sl_watermark w;
    int64_t wm;
    sl_watermark_init(&w, 10, 0);
    is_int(sl_watermark_poll(&w, 0, &wm), SL_WM_SAME, "nothing seen: no watermark");
    sl_watermark_observe(&w, 0, 100, 0);
    ok(sl_watermark_poll(&w, 0, &wm) == SL_WM_ADVANCED && wm == 90, "max - max_delay");
    sl_watermark_observe(&w, 0, 50, 0);
    is_int(sl_watermark_poll(&w, 0, &wm), SL_WM_SAME, "an older record does not move it back");
    sl_watermark_observe(&w, 0, 95, 0);
    is_int(sl_watermark_poll(&w, 0, &wm), SL_WM_SAME, "nor one below the max");
    sl_watermark_observe(&w, 0, 200, 0);
    ok(sl_watermark_poll(&w, 0, &wm) == SL_WM_ADVANCED && wm == 190, "a newer one moves it on");
    sl_watermark_free(&w);
}

static void test_partitions(void)
{
    sl_watermark w;
    int64_t wm;
    sl_watermark_init(&w, 0, 1000); /* idle after 1000 ms */
    sl_watermark_declare(&w, 2, 0);
    sl_watermark_observe(&w, 0, 500, 0);
    is_int(sl_watermark_poll(&w, 1 * MS, &wm), SL_WM_SAME,
           "a declared partition with no record yet holds the watermark");
    sl_watermark_observe(&w, 1, 300, 2 * MS);
    ok(sl_watermark_poll(&w, 2 * MS, &wm) == SL_WM_ADVANCED && wm == 300,
       "the minimum over partitions");
    sl_watermark_observe(&w, 0, 800, 900 * MS);
    is_int(sl_watermark_poll(&w, 900 * MS, &wm), SL_WM_SAME, "the slow partition holds it");
    ok(sl_watermark_poll(&w, 1100 * MS, &wm) == SL_WM_ADVANCED && wm == 800,
       "idle_timeout releases the slow partition");
    sl_watermark_observe(&w, 1, 900, 1200 * MS);
    sl_watermark_observe(&w, 0, 1000, 1200 * MS);
    ok(sl_watermark_poll(&w, 1200 * MS, &wm) == SL_WM_ADVANCED && wm == 900,
       "a partition that comes back counts again");
    is_int(sl_watermark_poll(&w, 2300 * MS, &wm), SL_WM_IDLE,
           "when every partition is idle the source is idle");
    is_int(sl_watermark_poll(&w, 2400 * MS, &wm), SL_WM_SAME, "idleness is said once");
    sl_watermark_observe(&w, 0, 1000, 2500 * MS);
    ok(sl_watermark_poll(&w, 2500 * MS, &wm) == SL_WM_ADVANCED && wm == 1000,
       "back from idle, the watermark is announced again");
    sl_watermark_free(&w);

    sl_watermark_init(&w, 0, 0);
    sl_watermark_declare(&w, 3, 0);
    sl_watermark_observe(&w, 0, 100, 0);
    sl_watermark_done(&w, 0);
    is_int(sl_watermark_poll(&w, 0, &wm), SL_WM_SAME,
           "files not yet read hold the watermark (they may be older)");
    sl_watermark_observe(&w, 1, 50, 0);
    sl_watermark_done(&w, 1);
    sl_watermark_observe(&w, 2, 70, 0);
    ok(sl_watermark_poll(&w, 0, &wm) == SL_WM_ADVANCED && wm == 70,
       "finished partitions no longer count");
    sl_watermark_observe(&w, 7, 10, 0);
    is_int(sl_watermark_poll(&w, 0, &wm), SL_WM_SAME,
           "a new partition appearing lower does not move the watermark back");
    sl_watermark_free(&w);
}

/* Kafka partitions come and go with rebalances. */
static void test_reopen(void)
{
    sl_watermark w;
    int64_t wm;
    sl_watermark_init(&w, 0, 0);
    sl_watermark_declare(&w, 2, 0);
    sl_watermark_observe(&w, 0, 100, 0);
    sl_watermark_observe(&w, 1, 200, 0);
    ok(sl_watermark_poll(&w, 0, &wm) == SL_WM_ADVANCED && wm == 100, "two partitions: the min");
    sl_watermark_done(&w, 0); /* revoked */
    ok(sl_watermark_poll(&w, 0, &wm) == SL_WM_ADVANCED && wm == 200,
       "a revoked partition no longer holds the watermark");
    sl_watermark_open(&w, 0, 0); /* assigned back */
    sl_watermark_observe(&w, 1, 300, 0);
    is_int(sl_watermark_poll(&w, 0, &wm), SL_WM_SAME,
           "a partition assigned back holds the watermark again");
    sl_watermark_observe(&w, 0, 250, 0);
    ok(sl_watermark_poll(&w, 0, &wm) == SL_WM_ADVANCED && wm == 250,
       "and counts again once it produces");
    sl_watermark_free(&w);
}

int main(void)
{
    test_parse();
    test_single_partition();
    test_partitions();
    test_reopen();
    return tap_done();
}
