#!/usr/bin/env bash
# contrib.sh — what contrib/ ships works: the Prometheus alert rules load
# and fire (and stay quiet) as their unit tests say (`promtool check rules`,
# `promtool test rules`); the Grafana dashboard is valid JSON whose every
# query is valid PromQL and asks for metrics sluice really exposes.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd promtool || done_testing
RULES=$SRCDIR/contrib/prometheus/sluice-alerts.yml
T=$(tmpdir)

if promtool check rules "$RULES" >"$T/check.out" 2>&1; then
    pass "promtool check rules: the alert rules load"
else
    fail "promtool check rules: the alert rules load"
    diag "$(cat "$T/check.out")"
fi
like "$(cat "$T/check.out")" "SUCCESS: [0-9]+ rules found" "promtool found the rules"
for alert in SluicePipelineDown SluiceCheckpointsFailing SluiceKafkaLagGrowing \
    SluiceWatermarkLagGrowing SluiceBatchTimeAboveInterval; do
    like "$(cat "$RULES")" "alert: $alert" "an alert rule $alert"
done
# promtool resolves rule_files relative to the test file's folder.
if (cd "$SRCDIR/contrib/prometheus" && promtool test rules sluice-alerts.test.yml) >"$T/test.out" 2>&1; then
    pass "promtool test rules: down, failing checkpoints and error rate fire as expected"
else
    fail "promtool test rules: down, failing checkpoints and error rate fire as expected"
    diag "$(cat "$T/test.out")"
fi

# ---- the Grafana dashboard -----------------------------------------------------
DASH=$SRCDIR/contrib/grafana/sluice-dashboard.json
require_cmd jq || done_testing
ok "the dashboard is valid JSON" jq -e '.panels | length > 0' "$DASH"
is "$(jq '[.panels[] | select((.targets | length) == 0)] | length' "$DASH")" 0 \
    "every panel has a query"
for title in "Records out" "End-to-end latency" "Watermark lag" "Backpressure" "Checkpoints" \
    "Kafka consumer lag"; do
    like "$(jq -r '.panels[].title' "$DASH")" "$title" "a panel: $title"
done
# Every query is valid PromQL: as recording rules (Grafana's variables
# replaced by what they stand for), promtool parses them.
jq -r '.panels[].targets[].expr' "$DASH" |
    sed -e 's/\$__rate_interval/5m/g' -e 's/\$pipeline/.*/g' -e 's/\$job/.*/g' |
    awk 'BEGIN { print "groups:\n  - name: dashboard\n    rules:" }
         { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "      - record: dashboard:q%d\n        expr: \"%s\"\n", NR, $0 }' \
        >"$T/dashboard-rules.yml"
is "$(grep -c 'record:' "$T/dashboard-rules.yml")" "$(jq '[.panels[].targets[]] | length' "$DASH")" \
    "one rule per dashboard query"
if promtool check rules "$T/dashboard-rules.yml" >"$T/dash.out" 2>&1; then
    pass "every dashboard query is valid PromQL (promtool)"
else
    fail "every dashboard query is valid PromQL (promtool)"
    diag "$(cat "$T/dash.out")"
fi
# Every metric it asks for is one sluice exposes: the core's from a live
# scrape, the Kafka plugin's from its definitions.
cat >"$T/scrape.yaml" <<YAML
pipeline: contrib
checkpoint: {dir: $T/ck, interval: 100ms}
metrics: {listen: "127.0.0.1:0"}
sources:
  in: {type: generate, rate: 1000, fields: {v: "int(1, 9)"}}
sinks:
  out: {type: file, input: in, path: $T/scrape.out}
YAML
"$SLUICE" run "$T/scrape.yaml" >"$T/scrape.log" 2>&1 &
spid=$!
port() { grep -o 'metrics on http://127.0.0.1:[0-9]*' "$T/scrape.log" | sed 's/.*://'; }
checkpointed() { curl -s "http://127.0.0.1:$(port)/metrics" >"$T/metrics.txt" &&
    grep -q '^sluice_checkpoint_last_success_timestamp_seconds' "$T/metrics.txt"; }
ok "a pipeline to scrape serves metrics with a checkpoint" wait_for 15 checkpointed
kill -TERM "$spid"
wait_exit "$spid"
grep -ho 'sluice_kafka_[a-z_]*' "$SRCDIR"/plugins/kafka/*.c | sort -u >"$T/kafka-names"
missing=
for m in $(jq -r '.panels[].targets[].expr' "$DASH" | grep -oE '(sluice|process)_[a-z_]+' |
           sed -E 's/_bucket$//' | sort -u); do
    case $m in
    sluice_kafka_*) grep -qx "$m" "$T/kafka-names" || missing="$missing $m" ;;
    *) grep -qE "^# TYPE $m " "$T/metrics.txt" || missing="$missing $m" ;;
    esac
done
is "$missing" "" "every metric the dashboard queries exists"

done_testing
