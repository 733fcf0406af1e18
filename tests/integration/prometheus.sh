#!/usr/bin/env bash
# prometheus.sh — a real Prometheus (the Debian package) scrapes a running
# sluice on 127.0.0.1, and its HTTP API shows what sluice counted:
#   - the target is up;
#   - sluice_records_out_total of the source equals the records fed (a
#     bounded file source, so the number is known), and the sink's
#     sluice_records_in_total the same;
#   - the end-to-end latency histogram is queryable (histogram_quantile);
#   - the alert rules of contrib/ load into it and SluicePipelineDown is
#     not firing while sluice runs.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd prometheus || done_testing
require_cmd curl || done_testing
require_cmd jq || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"
T=$(tmpdir)
TIMEOUT=60

N=5000
seq 1 $N | awk '{ printf "{\"i\":%d}\n", $1 }' >"$T/in.jsonl"
# A file source that reads N records and then keeps following: the run
# stays up to be scraped, and the counters stop at N.
cat >"$T/p.yaml" <<YAML
pipeline: prom-test
metrics: {listen: "127.0.0.1:0"}
sources:
  in: {type: file, path: $T/in.jsonl, mode: follow}
sinks:
  out: {type: file, input: in, path: $T/out.jsonl}
YAML
"$SLUICE" run "$T/p.yaml" >"$T/sluice.log" 2>&1 &
spid=$!
logged_port() { grep -q 'metrics on http://127.0.0.1:[1-9][0-9]*/metrics' "$T/sluice.log"; }
ok "sluice serves its metrics" wait_for 15 logged_port || diag "$(cat "$T/sluice.log")"
SPORT=$(grep -o 'metrics on http://127.0.0.1:[0-9]*' "$T/sluice.log" | sed 's/.*://')
all_out() { [ "$(lines_in "$T/out.jsonl")" -ge $N ]; }
ok "sluice copied the $N records" wait_for $TIMEOUT all_out

PPORT=$(free_port)
cat >"$T/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [$SRCDIR/contrib/prometheus/sluice-alerts.yml]
scrape_configs:
  - job_name: sluice
    static_configs: [{targets: ["127.0.0.1:$SPORT"]}]
YAML
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
    --web.listen-address="127.0.0.1:$PPORT" >"$T/prometheus.log" 2>&1 &
ppid=$!
api() { curl -s --get "http://127.0.0.1:$PPORT/api/v1/$1" --data-urlencode "$2"; }
value() { api query "query=$1" | jq -r '.data.result[0].value[1] // empty'; }
ready() { curl -sf "http://127.0.0.1:$PPORT/-/ready" >/dev/null; }
ok "prometheus starts on 127.0.0.1:$PPORT" wait_for 30 ready || diag "$(tail -c 2000 "$T/prometheus.log")"
target_up() { [ "$(value 'up{job="sluice"}')" = 1 ]; }
ok "the sluice target is up" wait_for $TIMEOUT target_up ||
    diag "$(curl -s "http://127.0.0.1:$PPORT/api/v1/targets" | head -c 1500)"
counted() { [ "$(value 'sluice_records_out_total{stage="in"}')" = "$N" ]; }
ok "through Prometheus: the source's records_out = $N" wait_for $TIMEOUT counted ||
    diag "got: $(value 'sluice_records_out_total{stage="in"}')"
is "$(value 'sluice_records_in_total{stage="out",pipeline="prom-test",kind="sink"}')" "$N" \
    "through Prometheus: the sink's records_in = $N"
is "$(value 'sum(sluice_end_to_end_latency_seconds_count{stage="out"})')" "$N" \
    "through Prometheus: one latency observation per record"
q=$(value 'histogram_quantile(0.99, sum by (le) (sluice_end_to_end_latency_seconds_bucket{stage="out"}))')
like "$q" '^[0-9.e+-]+$' "through Prometheus: a p99 end-to-end latency ($q s)"
rules_loaded() { [ "$(curl -s "http://127.0.0.1:$PPORT/api/v1/rules" | jq '[.data.groups[].rules[]] | length')" -ge 5 ]; }
ok "the contrib alert rules are loaded" wait_for 30 rules_loaded
is "$(curl -s "http://127.0.0.1:$PPORT/api/v1/alerts" | jq '[.data.alerts[] | select(.labels.alertname == "SluicePipelineDown")] | length')" 0 \
    "SluicePipelineDown is not firing while sluice runs"

kill -TERM "$spid"
wait_exit "$spid"
is "$?" 0 "sluice drains and exits 0"
down() { [ "$(value 'up{job="sluice"}')" = 0 ]; }
ok "after sluice stops, Prometheus sees the target down" wait_for $TIMEOUT down
kill "$ppid" 2>/dev/null
wait "$ppid" 2>/dev/null
done_testing
