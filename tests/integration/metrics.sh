#!/usr/bin/env bash
# metrics.sh — the HTTP endpoint of `sluice run` (issue 6, first slice):
# /metrics in the Prometheus text format (checked by promtool), its counters
# against the records fed, /healthz, /ready, /status (JSON naming every
# stage), port 0 (the real port is logged), the default 127.0.0.1:9464 (a busy
# default port only warns), and a busy port (exit 1 with a
# message, before any output is written).
#
# A followed file feeds filter -> file, with checkpoints on an interval so
# the checkpoint metrics and the checkpoint side of /ready are exercised.
# Waits poll with a timeout (wait_for), never a fixed sleep.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd curl || done_testing
require_cmd jq || done_testing
require_cmd promtool || done_testing
require_cmd python3 || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
TIMEOUT=20
sanitized_build && TIMEOUT=60

write_config() {   # FILE LISTEN
    cat >"$1" <<YAML
pipeline: metrics-test
checkpoint:
  dir: $T/chk
  interval: 200ms
metrics:
  listen: $2
sources:
  in:
    type: file
    path: $T/in.log
    mode: follow
operators:
  keep:
    type: filter
    input: in
    where: status >= 400
sinks:
  out:
    type: file
    input: keep
    path: $T/out.log
YAML
}

# 100 records, 30 of them with status >= 400, and one line that is not JSON.
feed() {
    local i
    for i in $(seq 1 100); do
        if [ $((i % 10)) -lt 3 ]; then echo "{\"i\":$i,\"status\":500}"; else echo "{\"i\":$i,\"status\":200}"; fi
    done
    echo 'not json'   # rejected by the source: one error
}

get() { curl -s --max-time 5 "http://127.0.0.1:$PORT$1"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT$1"; }
# sample NAME STAGE: the value of NAME for that stage in $T/metrics.txt
sample() { grep "^$1{.*stage=\"$2\"" "$T/metrics.txt" | awk '{print $2}'; }
sink_has() { [ "$(lines_in "$T/out.log")" -ge "$1" ]; }
scraped_out() { get /metrics >"$T/metrics.txt" && [ "$(sample sluice_records_out_total out)" = "$1" ]; }
checkpointed() { get /metrics | grep -q '^sluice_checkpoint_last_success_timestamp_seconds{'; }

# ---- a running pipeline, scraped --------------------------------------------------
PORT=$(free_port)
write_config "$T/run.yaml" "127.0.0.1:$PORT"
feed >"$T/in.log"
"$SLUICE" run "$T/run.yaml" >"$T/run.log" 2>&1 &
pid=$!

ok "the sink gets the 30 selected records" wait_for $TIMEOUT sink_has 30
like "$(cat "$T/run.log")" "metrics on http://127.0.0.1:$PORT/metrics" "the endpoint is logged"
ok "/metrics reports the sink's 30 records" wait_for $TIMEOUT scraped_out 30
is "$(sample sluice_records_out_total in)" 100 "source: 100 records out"
is "$(sample sluice_records_in_total keep)" 100 "filter: 100 records in"
is "$(sample sluice_records_out_total keep)" 30 "filter: 30 records out"
is "$(sample sluice_records_in_total out)" 30 "sink: 30 records in"
is "$(sample sluice_records_late_total out)" 0 "no late records"
like "$(grep '^sluice_errors_total{' "$T/metrics.txt")" '^sluice_errors_total\{pipeline="metrics-test",stage="in",kind="source",reason="[a-z_]+"\} 1$' \
    "the bad line: one error on the source, by reason"
like "$(cat "$T/metrics.txt")" '# TYPE sluice_records_in_total counter' "TYPE lines"
like "$(cat "$T/metrics.txt")" '# HELP sluice_queue_depth_batches ' "HELP lines"
like "$(cat "$T/metrics.txt")" 'sluice_queue_depth_batches\{pipeline="metrics-test",stage="out",kind="sink"\} [0-9]+' \
    "queue depth per stage, with pipeline, stage and kind labels"
hist() { grep "^$1{.*stage=\"$2\".*$3" "$T/metrics.txt" | awk '{print $2}'; }
is "$(hist sluice_end_to_end_latency_seconds_count out)" 30 \
    "end-to-end latency: one observation per record the sink wrote"
is "$(hist sluice_end_to_end_latency_seconds_bucket out 'le="+Inf"')" 30 \
    "end-to-end latency: the +Inf bucket holds them all"
is "$(hist sluice_batch_duration_seconds_count keep)" "$(sample sluice_batches_total keep)" \
    "batch duration: one observation per batch the filter took"
is "$(hist sluice_scheduling_delay_seconds_count out)" "$(sample sluice_batches_total out)" \
    "scheduling delay: one observation per batch the sink took"
is "$(hist sluice_end_to_end_latency_seconds_count keep)" "" \
    "end-to-end latency only on sinks"
like "$(cat "$T/metrics.txt")" '^process_resident_memory_bytes [0-9]' "process_* metrics"
like "$(cat "$T/metrics.txt")" 'process_open_fds [0-9]' "process_open_fds"

ok "a checkpoint completes and shows up" wait_for $TIMEOUT checkpointed
get /metrics >"$T/metrics.txt"
like "$(cat "$T/metrics.txt")" 'sluice_checkpoints_total\{pipeline="metrics-test",outcome="completed"\} [1-9]' \
    "completed checkpoints are counted"
if promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1; then
    pass "promtool check metrics: clean"
else
    fail "promtool check metrics: clean"
    diag "$(cat "$T/promtool.out")"
fi

# More input: the counters follow.
for i in $(seq 101 110); do echo "{\"i\":$i,\"status\":404}"; done >>"$T/in.log"
ok "/metrics follows new input (40 written)" wait_for $TIMEOUT scraped_out 40
is "$(sample sluice_records_out_total in)" 110 "source: 110 records out"

is "$(code /healthz)" 200 "/healthz: 200"
is "$(get /healthz)" ok "/healthz: ok"
is "$(code /ready)" 200 "/ready: 200 while running with recent checkpoints"
is "$(code /nowhere)" 404 "an unknown path: 404"
get /status >"$T/status.json"
ok "/status is valid JSON" jq -e . "$T/status.json"
is "$(jq -r '[.stages[].name] | join(" ")' "$T/status.json")" "in keep out" "/status names the stages"
is "$(jq -r '.stages[] | select(.name=="keep") | "\(.kind) \(.type) \(.records_in) \(.records_out)"' "$T/status.json")" \
    "operator filter 110 40" "/status: kind, type and counts"
ok "/status: the last checkpoint" jq -e '.checkpoint.completed >= 1 and .checkpoint.last_success_ms > 0' "$T/status.json"
is "$(curl -s -o /dev/null -w '%{content_type}' "http://127.0.0.1:$PORT/metrics")" \
    "text/plain; version=0.0.4; charset=utf-8" "/metrics content type"

# ---- a busy port ------------------------------------------------------------------
write_config "$T/busy.yaml" "127.0.0.1:$PORT"
sed -i "s|$T/out.log|$T/busy.out|; s|$T/chk|$T/chk2|" "$T/busy.yaml"
"$SLUICE" run "$T/busy.yaml" >"$T/busy.log" 2>&1
is "$?" 1 "a port in use: exit 1"
like "$(cat "$T/busy.log")" "metrics.listen '127.0.0.1:$PORT'.*(in use|cannot)" "a port in use: the message says so"
ok "a port in use: no output written" test ! -e "$T/busy.out"

kill -TERM "$pid"
wait_exit "$pid"
is "$?" 0 "SIGTERM: the run drains and exits 0"

# ---- port 0 -----------------------------------------------------------------------
write_config "$T/zero.yaml" "127.0.0.1:0"
sed -i "s|$T/out.log|$T/zero.out|; s|$T/chk|$T/chk3|" "$T/zero.yaml"
"$SLUICE" run "$T/zero.yaml" >"$T/zero.log" 2>&1 &
zpid=$!
logged_port() { grep -q 'metrics on http://127.0.0.1:[1-9][0-9]*/metrics' "$T/zero.log"; }
ok "port 0: the real port is logged" wait_for $TIMEOUT logged_port
PORT=$(grep -o 'metrics on http://127.0.0.1:[0-9]*' "$T/zero.log" | sed 's/.*://')
is "$(code /healthz)" 200 "port 0: served on the logged port ($PORT)"
kill -TERM "$zpid"
wait_exit "$zpid"
is "$?" 0 "port 0 run: exits 0"

# ---- the default: 127.0.0.1:9464, a busy default port only warns ---------------
# (That 9464 is the default is test_config's; serving on it here would race
# with other tests' runs under `make -j check`, which all default to it.)
cat >"$T/default.yaml" <<EOF
pipeline: metrics-default
sources:
  in: {type: generate, count: 100}
sinks:
  out: {type: file, input: in, path: $T/default.out}
EOF
# Other tests' short runs take the port now and then; wait until it is ours,
# or a run of theirs could free it between our check and our run.
python3 -c '
import socket, time
deadline = time.time() + 30
while True:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 9464)); s.listen(1)
        break
    except OSError:
        s.close()
        if time.time() > deadline:
            raise SystemExit("127.0.0.1:9464 stays busy")
        time.sleep(0.05)
print("held", flush=True)
time.sleep(60)
' >"$T/hold.out" 2>&1 &
holder=$!
ok "the default port is held for the test" wait_for $TIMEOUT grep -q held "$T/hold.out"
"$SLUICE" run "$T/default.yaml" >"$T/default.log" 2>&1
is "$?" 0 "no metrics section and 127.0.0.1:9464 busy: the run still succeeds"
like "$(cat "$T/default.log")" "127.0.0.1:9464.*running without the metrics endpoint" \
    "... with a warning saying the endpoint is off"
is "$(lines_in "$T/default.out")" 100 "... and writes its output"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

done_testing
