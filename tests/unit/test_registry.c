/*
 * test_registry.c — plugin-defined metrics: definition rules, series,
 * updates and the text exposition.
 */
#include <stdlib.h>
#include <string.h>

#include "histogram.h"
#include "json.h"
#include "registry.h"
#include "tap.h"

static char *render(sl_registry *reg)
{
    sluice_buf out = {0};
    ok(sl_registry_render(reg, &out) == 0, "renders");
    sl_buf_putc(&out, 0);
    return out.data;
}

int main(void)
{
    sl_registry *reg = sl_registry_new();
    const char *why = "";
    const char *labels[] = {"topic", "partition", NULL};
    sluice_metric *lag = sl_registry_family(reg, "p", "in", "source", "sluice_kafka_consumer_lag",
                                            SLUICE_GAUGE, "Records behind.", labels, &why);
    ok(lag != NULL, "a family with labels");
    ok(sl_registry_family(reg, "p", "in", "source", "sluice_kafka_consumer_lag", SLUICE_GAUGE,
                          "x", labels, &why) == lag,
       "defining it again from the same stage gives the same handle");
    sluice_metric *lag2 = sl_registry_family(reg, "p", "in2", "source",
                                             "sluice_kafka_consumer_lag", SLUICE_GAUGE, "x",
                                             labels, &why);
    ok(lag2 && lag2 != lag, "another stage gets its own handle on the family");
    ok(!sl_registry_family(reg, "p", "in", "source", "sluice_kafka_consumer_lag", SLUICE_COUNTER,
                           "x", labels, &why),
       "the same name with another type is refused");
    ok(strstr(why, "another type") != NULL, "and says why: %s", why);
    ok(!sl_registry_family(reg, "p", "in", "source", "9bad", SLUICE_GAUGE, "x", NULL, &why),
       "a name starting with a digit is refused");
    const char *reserved[] = {"stage", NULL};
    ok(!sl_registry_family(reg, "p", "in", "source", "m_total", SLUICE_COUNTER, "x", reserved,
                           &why),
       "a reserved label name is refused");
    const char *bad_label[] = {"a-b", NULL};
    ok(!sl_registry_family(reg, "p", "in", "source", "m_total", SLUICE_COUNTER, "x", bad_label,
                           &why),
       "a label name with a dash is refused");

    const char *v0[] = {"events", "0", NULL}, *v1[] = {"events", "1", NULL};
    sluice_series *s0 = sl_registry_series(lag, v0), *s1 = sl_registry_series(lag, v1);
    ok(s0 && s1 && s0 != s1, "one series per set of label values");
    ok(sl_registry_series(lag, v0) == s0, "looked up again, the same series");
    const char *missing[] = {"events", NULL};
    ok(sl_registry_series(lag, missing) == NULL, "too few label values: no series");
    sl_registry_set(s0, 42);
    sl_registry_set(s1, 7);
    sl_registry_add(s1, 0.5);
    sl_registry_add(NULL, 1); /* a metric that could not be kept: a no-op */

    sluice_metric *c = sl_registry_family(reg, "p", "out", "sink", "sluice_x_total",
                                          SLUICE_COUNTER, "Quoted \"help\".", NULL, &why);
    sluice_series *cs = sl_registry_series(c, NULL);
    for (int i = 0; i < 1000; i++)
        sl_registry_add(cs, 1);
    const char *odd[] = {"we\"ird\\\n", "2", NULL};
    sl_registry_set(sl_registry_series(lag2, odd), 1);

    const char *op[] = {"op", NULL}, *put[] = {"put", NULL};
    sluice_metric *hm = sl_registry_family(reg, "p", "out", "sink", "plugin_call_seconds",
                                           SLUICE_HISTOGRAM, "Call time.", op, &why);
    ok(hm != NULL, "a histogram family");
    sluice_series *hs = sl_registry_series(hm, put);
    sl_registry_observe(hs, 0.002);
    sl_registry_observe(hs, 30);
    sl_registry_observe(hs, 0.0 / 0.0); /* NaN: ignored */
    sl_registry_add(hs, 5);             /* not a counter: ignored */
    sl_registry_observe(cs, 1);         /* not a histogram: ignored */

    char *text = render(reg);
    ok(strstr(text, "# TYPE plugin_call_seconds histogram\n") != NULL, "a histogram's TYPE");
    ok(strstr(text, "plugin_call_seconds_bucket{pipeline=\"p\",stage=\"out\",kind=\"sink\","
                    "op=\"put\",le=\"0.0025\"} 1\n") != NULL,
       "its buckets carry the stage's and its own labels, then le");
    ok(strstr(text, "plugin_call_seconds_count{pipeline=\"p\",stage=\"out\",kind=\"sink\","
                    "op=\"put\"} 2\n") != NULL &&
           strstr(text, "plugin_call_seconds_sum{pipeline=\"p\",stage=\"out\",kind=\"sink\","
                        "op=\"put\"} 30.002000000\n") != NULL,
       "count and sum: NaN and add() ignored");
    ok(strstr(text, "# TYPE sluice_kafka_consumer_lag gauge\n") != NULL, "TYPE line");
    ok(strstr(text, "sluice_kafka_consumer_lag{pipeline=\"p\",stage=\"in\",kind=\"source\","
                    "topic=\"events\",partition=\"0\"} 42\n") != NULL,
       "a series with the stage's labels first");
    ok(strstr(text, "partition=\"1\"} 7.5\n") != NULL, "add on top of set");
    ok(strstr(text, "sluice_x_total{pipeline=\"p\",stage=\"out\",kind=\"sink\"} 1000\n") != NULL,
       "a counter without labels");
    ok(strstr(text, "topic=\"we\\\"ird\\\\\\n\"") != NULL, "label values are escaped");
    const char *first = strstr(text, "# TYPE sluice_kafka_consumer_lag");
    ok(first && !strstr(first + 1, "# TYPE sluice_kafka_consumer_lag"),
       "one TYPE line for a family two stages share");
    free(text);
    sl_registry_free(reg);

    /* Histograms: bucket edges are inclusive upper bounds; the local
     * gatherer merges into the same counts as direct observations. */
    static sl_histogram h;
    sl_hist_observe_ns(&h, 100000);     /* 100 µs: exactly the first bound */
    sl_hist_observe_ns(&h, 100001);     /* just above: the second bucket */
    sl_hist_observe_ns(&h, -5);         /* a clock step back: counted as 0 */
    sl_hist_local l = {0};
    sl_hist_local_add(&l, 2000000000);  /* 2 s */
    sl_hist_local_add(&l, 120000000000); /* 120 s: only +Inf */
    sl_hist_merge(&h, &l);
    sluice_buf hb = {0};
    ok(sl_hist_render(&h, "lat_seconds", "stage=\"s\"", &hb) == 0, "a histogram renders");
    sl_buf_putc(&hb, 0);
    ok(strstr(hb.data, "lat_seconds_bucket{stage=\"s\",le=\"0.0001\"} 2\n") != NULL,
       "le is inclusive: 100 µs and the negative one in the first bucket");
    ok(strstr(hb.data, "lat_seconds_bucket{stage=\"s\",le=\"0.00025\"} 3\n") != NULL,
       "buckets are cumulative");
    ok(strstr(hb.data, "lat_seconds_bucket{stage=\"s\",le=\"2.5\"} 4\n") != NULL,
       "the merged 2 s observation");
    ok(strstr(hb.data, "lat_seconds_bucket{stage=\"s\",le=\"60\"} 4\n") != NULL &&
           strstr(hb.data, "lat_seconds_bucket{stage=\"s\",le=\"+Inf\"} 5\n") != NULL,
       "120 s only in +Inf");
    ok(strstr(hb.data, "lat_seconds_count{stage=\"s\"} 5\n") != NULL, "count");
    ok(strstr(hb.data, "lat_seconds_sum{stage=\"s\"} 122.000200001\n") != NULL, "sum in seconds");
    free(hb.data);
    return tap_done();
}
