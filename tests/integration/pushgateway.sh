#!/usr/bin/env bash
# pushgateway.sh — the pushgateway sink against a real Prometheus Pushgateway
# (the Debian package) started here on 127.0.0.1:
#   a) a bounded run: the final push carries the runtime metrics (records
#      counted) and the gauges made from records, values and labels exact;
#      records that cannot make their gauges are counted, not pushed;
#      the grouping key survives '/' and empty values (base64 in the URL);
#      what the gateway then serves is clean under promtool check metrics;
#   b) a running pipeline pushes every interval: new values show up while
#      it runs;
#   c) a gateway that is down: the pipeline's other sink is not held up,
#      failures are counted and logged once, pushes resume when the
#      gateway comes up (on the same port);
#   d) a final push that cannot land ends the run with 0 and an ERROR line;
#   e) max_series bounds the series made from records;
#   f) basic auth and TLS (the gateway's --web.config.file): pushes land
#      with the right password and CA, a wrong password is an HTTP 401;
#   g) bad options: exit 2 with file:line:col.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd prometheus-pushgateway || done_testing
require_cmd promtool || done_testing
require_cmd curl || done_testing
require_cmd openssl || done_testing
require_cmd python3 || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"
require_plugin pushgateway
T=$(tmpdir)
TIMEOUT=60
trap bg_kill_all EXIT

# gateway_start NAME PORT [ARGS...]: a pushgateway on 127.0.0.1:PORT, in
# memory only; its pid in GW_PID.
gateway_start() {
    local name=$1 port=$2 scheme=http; shift 2
    case "$*" in *web.config.file*) scheme=https ;; esac
    prometheus-pushgateway --web.listen-address="127.0.0.1:$port" --persistence.file="" "$@" \
        >"$T/$name.gw.log" 2>&1 &
    GW_PID=$!
    gw_ready() { curl -sk "$scheme://127.0.0.1:$port/-/ready" >/dev/null; }
    ok "pushgateway $name starts on 127.0.0.1:$port" wait_for 30 gw_ready ||
        bail_out "the pushgateway did not start: $(tail -c 1500 "$T/$name.gw.log")"
}
gateway_stop() { kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null; }
# The samples the gateway serves, without comments and its own families.
pushed() { curl -s "$@" | grep -v '^#' | grep -v -E '^(go_|process_|pushgateway_)'; }

# ---- a) a bounded run, the final push ---------------------------------------------
PORT=$(free_port)
gateway_start main "$PORT"
GW=http://127.0.0.1:$PORT

cat >"$T/windows.jsonl" <<'EOF'
{"service":"api","avg_rt":0.12,"errors":3,"ok":true}
{"service":"web","avg_rt":0.5,"errors":0,"ok":false}
{"service":"api","avg_rt":0.25,"errors":5,"ok":true}
{"service":"db","avg_rt":"slow","errors":1,"ok":true}
{"avg_rt":1,"errors":1,"ok":true}
{"service":"queue \"q\"","avg_rt":1e-3,"errors":-2,"ok":true}
{"service":"text","avg_rt":"4.5","errors":7,"ok":true}
EOF
cat >"$T/a.yaml" <<EOF
pipeline: pg-batch
metrics: {listen: false}
sources:
  windows: {type: file, path: $T/windows.jsonl}
sinks:
  push:
    type: pushgateway
    input: windows
    url: $GW/
    grouping: {instance: "host/1", region: ""}
    interval: 1h
    metrics:
      - {name: service_response_seconds, value: avg_rt, labels: {service: service}}
      - name: service_errors
        value: errors
        labels: {service: service, healthy: ok}
        help: "Errors in the last window."
EOF
"$SLUICE" run "$T/a.yaml" >"$T/a.log" 2>&1
is "$?" 0 "a) the bounded run exits 0"
like "$(cat "$T/a.log")" "final push to $GW/metrics/job/pg-batch/instance@base64/aG9zdC8x/region@base64/= done" \
    "a) the final push went to the group's URL (base64 for '/' and empty values)"
pushed "$GW/metrics" >"$T/a.pushed"
G='instance="host/1",job="pg-batch",region=""'
want_lines() {
    local desc=$1 missing=""; shift
    for l in "$@"; do grep -qxF -- "$l" "$T/a.pushed" || missing+="$l"$'\n'; done
    is "$missing" "" "$desc"
}
want_lines "a) the response-time gauges: the last value per service" \
    "service_response_seconds{$G,service=\"api\"} 0.25" \
    "service_response_seconds{$G,service=\"web\"} 0.5" \
    "service_response_seconds{$G,service=\"queue \\\"q\\\"\"} 0.001" \
    "service_response_seconds{$G,service=\"text\"} 4.5"
want_lines "a) the error gauges, two labels, one from a boolean field" \
    "service_errors{healthy=\"true\",instance=\"host/1\",job=\"pg-batch\",region=\"\",service=\"api\"} 5" \
    "service_errors{healthy=\"false\",instance=\"host/1\",job=\"pg-batch\",region=\"\",service=\"web\"} 0" \
    "service_errors{healthy=\"true\",instance=\"host/1\",job=\"pg-batch\",region=\"\",service=\"queue \\\"q\\\"\"} -2" \
    "service_errors{healthy=\"true\",instance=\"host/1\",job=\"pg-batch\",region=\"\",service=\"text\"} 7"
is "$(grep -c '^service_' "$T/a.pushed")" 8 "a) no other series (db and the service-less record made none)"
# The gateway serves labels sorted by name.
S='instance="host/1",job="pg-batch",kind="sink",pipeline="pg-batch"'
want_lines "a) the runtime's counters are pushed: 7 records in, 2 rejected by reason" \
    "sluice_records_in_total{$S,region=\"\",stage=\"push\"} 7" \
    "sluice_errors_total{$S,reason=\"not_a_number\",region=\"\",stage=\"push\"} 1" \
    "sluice_errors_total{$S,reason=\"missing_field\",region=\"\",stage=\"push\"} 1"
like "$(cat "$T/a.pushed")" "^sluice_pushgateway_series\{$S,region=\"\",stage=\"push\"\} 8$" \
    "a) the sink reports the 8 series it holds"
like "$(cat "$T/a.pushed")" "^push_time_seconds\{$G\} [1-9]" "a) the gateway stamped the push"
unlike "$(grep -v '^process_' "$T/a.pushed" | grep "$G")" '^process_' "a) no process_* families pushed (the gateway has its own)"
like "$(curl -s "$GW/metrics" | grep -A1 '^# HELP service_errors')" "Errors in the last window" \
    "a) the HELP text given is kept"
curl -s "$GW/metrics" >"$T/a.all"
ok "a) what the gateway serves is clean under promtool check metrics" \
    sh -c "promtool check metrics <'$T/a.all'"

# The example pipeline, pushing to this gateway.
(cd "$SRCDIR" && PUSHGATEWAY_URL=$GW HOSTNAME=ex "$SLUICE" run etc/examples/service-metrics-push.yaml) \
    >"$T/example.log" 2>&1
is "$?" 0 "a) etc/examples/service-metrics-push.yaml runs"
is "$(pushed "$GW/metrics" | grep -c '^service_requests{instance="ex",job="service-metrics",service="[a-z]*"} [1-9]')" 5 \
    "a) ... and leaves a request count for each of the log's 5 services in the gateway"

# ---- b) pushes every interval while running ------------------------------------------
: >"$T/live.jsonl"
cat >"$T/b.yaml" <<EOF
pipeline: pg-live
metrics: {listen: false}
sources:
  live: {type: file, path: $T/live.jsonl, mode: follow}
sinks:
  push:
    type: pushgateway
    input: live
    url: $GW
    interval: 200ms
    push_runtime_metrics: false
    metrics: [{name: queue_depth, value: depth, labels: {queue: q}}]
EOF
"$SLUICE" run "$T/b.yaml" >"$T/b.log" 2>&1 &
bpid=$!
echo '{"q":"orders","depth":10}' >>"$T/live.jsonl"
shows() { pushed "$GW/metrics" | grep -qxF "$1"; }
ok "b) a value appears while the run goes on" \
    wait_for $TIMEOUT shows 'queue_depth{instance="",job="pg-live",queue="orders"} 10'
echo '{"q":"orders","depth":42}' >>"$T/live.jsonl"
ok "b) ... and its next value, at a later push" \
    wait_for $TIMEOUT shows 'queue_depth{instance="",job="pg-live",queue="orders"} 42'
unlike "$(pushed "$GW/metrics" | grep 'job="pg-live"')" '^sluice_' \
    "b) push_runtime_metrics: false pushes only the record gauges"
kill -TERM "$bpid"
wait_exit "$bpid"
is "$?" 0 "b) SIGTERM: drains and exits 0"
like "$(cat "$T/b.log")" "final push .* done" "b) and pushes a last time"

# ---- c) the gateway is down, then comes up -----------------------------------------------
DPORT=$(free_port)
seq 1 2000 | awk '{ printf "{\"i\":%d,\"q\":\"jobs\",\"depth\":%d}\n", $1, $1 }' >"$T/c.jsonl"
cat >"$T/c.yaml" <<EOF
pipeline: pg-down
metrics: {listen: "127.0.0.1:0"}
sources:
  in: {type: file, path: $T/c.jsonl, mode: follow}
sinks:
  copy: {type: file, input: in, path: $T/c.out}
  push:
    type: pushgateway
    input: in
    url: http://127.0.0.1:$DPORT
    interval: 300ms
    timeout: 1s
    metrics: [{name: queue_depth, value: depth, labels: {queue: q}}]
EOF
"$SLUICE" run "$T/c.yaml" >"$T/c.log" 2>&1 &
cpid=$!
copied() { [ "$(lines_in "$T/c.out")" -eq 2000 ]; }
ok "c) with the gateway down, the other sink still gets every record" wait_for $TIMEOUT copied
sport() { grep -o 'metrics on http://127.0.0.1:[0-9]*' "$T/c.log" | sed 's/.*://'; }
failures() {
    curl -s "http://127.0.0.1:$(sport)/metrics" |
        awk '/^sluice_pushgateway_pushes_total\{.*outcome="failure"/ { print $2 }'
}
retried() { [ "$(failures)" -ge 3 ] 2>/dev/null; }
ok "c) failed pushes are retried and counted" wait_for $TIMEOUT retried
is "$(grep -c 'WARN .*push to http://127.0.0.1:'"$DPORT"'.* failed' "$T/c.log")" 1 \
    "c) the failure is logged once, not per attempt"
gateway_stop
gateway_start late "$DPORT"
arrived() { pushed "http://127.0.0.1:$DPORT/metrics" | grep -qxF 'queue_depth{instance="",job="pg-down",queue="jobs"} 2000'; }
ok "c) once the gateway is up, the pushes land" wait_for $TIMEOUT arrived
like "$(cat "$T/c.log")" "pushes to http://127.0.0.1:$DPORT.* work again \(after [0-9]+ failed\)" \
    "c) the recovery is logged"
kill -TERM "$cpid"
wait_exit "$cpid"
is "$?" 0 "c) the run exits 0"
GW=http://127.0.0.1:$DPORT

# ---- d) a final push that cannot land ----------------------------------------------------
NPORT=$(free_port)
sed -e "s|url: .*|url: http://127.0.0.1:$NPORT|" -e 's|pipeline: pg-batch|pipeline: pg-nowhere|' \
    "$T/a.yaml" >"$T/d.yaml"
sed -i 's|    interval: 1h|    interval: 1h\n    final_timeout: 1s|' "$T/d.yaml"
"$SLUICE" run "$T/d.yaml" >"$T/d.log" 2>&1
is "$?" 0 "d) a gateway that never answers does not fail the run"
like "$(cat "$T/d.log")" "ERROR .*the final push to http://127.0.0.1:$NPORT/.* failed for 1000 ms" \
    "d) ... and the lost final push is an ERROR line"

# ---- e) max_series ---------------------------------------------------------------------------
cat >"$T/e.yaml" <<EOF
pipeline: pg-cap
metrics: {listen: false}
sources:
  windows: {type: file, path: $T/windows.jsonl}
sinks:
  push:
    type: pushgateway
    input: windows
    url: $GW
    max_series: 2
    metrics: [{name: service_response_seconds, value: avg_rt, labels: {service: service}}]
EOF
"$SLUICE" run "$T/e.yaml" >"$T/e.log" 2>&1
is "$?" 0 "e) max_series: the run exits 0"
is "$(pushed "$GW/metrics" | grep '^service_' | grep -c 'job="pg-cap"')" 2 "e) only 2 series pushed"
like "$(pushed "$GW/metrics" | grep 'job="pg-cap"')" '^sluice_errors_total\{.*reason="too_many_series".*\} 2$' \
    "e) the 2 records that would make more are counted with a reason"

# ---- f) basic auth and TLS ------------------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
ok "f) a self-signed certificate" test -s "$T/cert.pem"
HASH=$(python3 -W ignore -c 'import crypt; print(crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))')
cat >"$T/web.yml" <<EOF
tls_server_config: {cert_file: $T/cert.pem, key_file: $T/key.pem}
basic_auth_users: {pusher: '$HASH'}
EOF
SPORT=$(free_port)
gateway_start secure "$SPORT" --web.config.file="$T/web.yml"
SGW=https://127.0.0.1:$SPORT
secure_run() { # NAME PASSWORD
    cat >"$T/$1.yaml" <<EOF
pipeline: pg-$1
metrics: {listen: false}
sources:
  windows: {type: file, path: $T/windows.jsonl}
sinks:
  push:
    type: pushgateway
    input: windows
    url: $SGW
    username: pusher
    password: \${PG_PASSWORD}
    ca_file: $T/cert.pem
    final_timeout: 1s
    metrics: [{name: service_response_seconds, value: avg_rt, labels: {service: service}}]
EOF
    PG_PASSWORD=$2 "$SLUICE" run "$T/$1.yaml" >"$T/$1.log" 2>&1
}
secure_run tls s3cret
is "$?" 0 "f) https + basic auth: the run exits 0"
like "$(pushed --cacert "$T/cert.pem" -u pusher:s3cret "$SGW/metrics")" \
    '^service_response_seconds\{instance="",job="pg-tls",service="api"\} 0.25$' \
    "f) the push landed (read back over https with the password)"
unlike "$(cat "$T/tls.log")" "s3cret" "f) the password is not logged"
secure_run badpw wrong
like "$(cat "$T/badpw.log")" "push to $SGW/.* failed: HTTP 401" "f) a wrong password: HTTP 401 in the log"
rm -f "$T/nocert"
sed -e "s|    ca_file: .*|    ca_file: $T/nocert|" "$T/tls.yaml" >"$T/noca.yaml"
PG_PASSWORD=s3cret "$SLUICE" run "$T/noca.yaml" >"$T/noca.log" 2>&1
like "$(cat "$T/noca.log")" "push to $SGW/.* failed: .*(certificate|CA|SSL)" \
    "f) without the right CA the push fails on the certificate"
gateway_stop

# ---- g) bad options ------------------------------------------------------------------------
bad() { # NAME WANT-REGEX YAML-SINK-BODY
    local name=$1 want=$2
    printf 'pipeline: bad\nsources:\n  in: {type: generate, count: 1}\nsinks:\n  push:\n    type: pushgateway\n    input: in\n%s\n' \
        "$3" >"$T/bad-$name.yaml"
    "$SLUICE" validate "$T/bad-$name.yaml" >"$T/bad-$name.log" 2>&1
    is "$?" 2 "g) $name: exit 2"
    like "$(cat "$T/bad-$name.log")" "^$T/bad-$name.yaml:$want" "g) $name: the message, at its place"
}
bad no-url "6:5: missing required option 'url'" "    metrics: [{name: x, value: v}]"
bad scheme "8:10: .*'ftp://h' is not an http:// or https:// URL" "    url: ftp://h"
bad metric-name "10:15: .*'1bad' is not a Prometheus metric name" \
    "    url: http://h
    metrics:
      - name: 1bad
        value: v"
bad reserved "9:22: .*'sluice_x' is a name the runtime's own metrics" \
    "    url: http://h
    metrics: [{name: sluice_x, value: v}]"
bad duplicate "11:16: .*gauge 'x' is already defined by metrics.0" \
    "    url: http://h
    metrics:
      - {name: x, value: v}
      - {name: x, value: w}"
bad job-label "9:49: .*label 'job' is part of the group's key" \
    "    url: http://h
    metrics: [{name: x, value: v, labels: {job: j}}]"
bad grouping-label "9:21: .*'a-b' is not a label name" \
    "    url: http://h
    grouping: {a-b: c}"
bad half-auth "9:15: .*basic auth needs both username and password" \
    "    url: http://h
    username: u"
bad missing-value "10:9: missing required option 'metrics.0.value'" \
    "    url: http://h
    metrics:
      - name: x"
bad not-a-list "9:14: option 'metrics' expects a list of mappings" \
    "    url: http://h
    metrics: x"
bad nothing "9:27: .*nothing to push" \
    "    url: http://h
    push_runtime_metrics: false"
done_testing
