#!/usr/bin/env bash
# secrets.sh — configured secrets are never shown (issue 8's safe defaults).
#
# Every secret below contains $SECRET, a string found nowhere else, so one
# grep per output tells whether any of them leaked:
#   a. a run at --log-level debug with librdkafka's `debug: all`: a Kafka
#      source and sink against the mock cluster with sasl.password,
#      ssl.key.password and sasl.oauthbearer.config set; the metrics
#      endpoint with basic auth whose password comes from password_file; a
#      pushgateway sink (its gateway down, so failures are logged) with a
#      password and a URL carrying user:password; checkpoints and an
#      events_log. The records reach the output topic (the run did its
#      work), and $SECRET is in no stderr line, not in /status, /metrics
#      nor the events log. Where the key is shown, "[redacted]" stands for
#      the value: sluice's DEBUG line of each Kafka stage's settings
#      (sasl.password=[redacted], while sasl.username=bob stays readable),
#      librdkafka's own configuration dump, and the gateway URL in the
#      pushgateway's log lines (pguser:[redacted]@);
#   b. `sluice validate` and `sluice graph` of that file print no secret;
#   c. configuration errors (exit 2) next to secrets: librdkafka refusing
#      properties of a stage that also has secrets, a pushgateway URL with
#      user:password and a query (quoted with [redacted]), a metrics
#      password without a user name; `run` and `validate` alike;
#   d. a start failure (exit 1): ssl.key.pem that is no PEM key, whose
#      error comes from librdkafka, names the property, not its value.
# Waits poll with a timeout; the metrics endpoint listens on port 0.
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/kafka_lib.sh"

kafka_require
require_cmd curl || done_testing
require_plugin pushgateway

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
TIMEOUT=60
sanitized_build && TIMEOUT=180

SECRET=S3cr3tXYZ
N=20

mock_start secrets --topic sec_in:2 --topic sec_out:2
seq 1 $N | awk '{ printf "k%d:{\"i\":%d}\n", $1, $1 }' >"$T/in.msgs"
ok "kcat produces $N records to sec_in" kproduce sec_in -l "$T/in.msgs"

printf '%s\n' "$SECRET-metrics" >"$T/metrics.pw"
DEAD_PORT=$(free_port)

# no_secret DESC FILE: FILE exists, is not empty, and holds no $SECRET.
no_secret() {
    if [ ! -s "$2" ]; then
        fail "$1 (empty or missing: $2)"
        return 1
    fi
    unlike "$(cat "$2")" "$SECRET" "$1"
}

# ---- a. a run with everything secret at once --------------------------------------
cat >"$T/run.yaml" <<EOF
pipeline: secrets
checkpoint: {dir: $T/chk, interval: 300ms}
events_log: $T/events.jsonl
metrics:
  listen: 127.0.0.1:0
  username: prom
  password_file: $T/metrics.pw
sources:
  in:
    type: kafka
    brokers: $BOOT
    topic: sec_in
    properties:
      sasl.username: bob
      sasl.password: $SECRET-source-sasl
      ssl.key.password: $SECRET-source-key
      sasl.oauthbearer.config: "principal=admin scope=$SECRET-oauth"
      debug: all
      session.timeout.ms: 6000
      heartbeat.interval.ms: 500
sinks:
  out:
    type: kafka
    input: in
    brokers: $BOOT
    topic: sec_out
    properties:
      sasl.password: $SECRET-sink-sasl
      ssl.keystore.password: $SECRET-sink-keystore
      debug: all
  push:
    type: pushgateway
    input: in
    url: http://pguser:$SECRET-url@127.0.0.1:$DEAD_PORT
    username: pg
    password: $SECRET-pg
    interval: 500ms
    timeout: 1s
    final_timeout: 1s
EOF

"$SLUICE" run "$T/run.yaml" --log-level debug >"$T/run.out" 2>"$T/run.err" &
PID=$!
logged_port() { grep -Eq 'metrics on http://127\.0\.0\.1:[1-9][0-9]*/metrics' "$T/run.err"; }
if ok "the run logs its metrics endpoint" wait_for $TIMEOUT logged_port; then
    PORT=$(grep -Eo 'metrics on http://127\.0\.0\.1:[0-9]+' "$T/run.err" | head -n 1)
    PORT=${PORT##*:}
else
    PORT=0
    diag "$(tail -c 2000 "$T/run.err")"
fi
URL=http://127.0.0.1:$PORT
ok "all $N records reach sec_out" wait_for $TIMEOUT kend_is_at_least sec_out $N
checkpointed() { grep -q '"checkpoint_completed"' "$T/events.jsonl"; }
ok "a checkpoint completes (events_log)" wait_for $TIMEOUT checkpointed
push_failed() { grep -q 'push to .* failed' "$T/run.err"; }
ok "the pushgateway sink logs its failed push" wait_for $TIMEOUT push_failed

curl -s --max-time 10 -u "prom:$SECRET-metrics" "$URL/status" >"$T/status.json"
curl -s --max-time 10 -u "prom:$SECRET-metrics" "$URL/metrics" >"$T/metrics.txt"
ok "/status answers JSON (with credentials)" jq -e '.pipeline == "secrets"' "$T/status.json"
like "$(cat "$T/metrics.txt")" '^sluice_records_out_total\{.*stage="in"' \
    "/metrics answers (with credentials)"
curl -s --max-time 10 -u "prom:wrong" "$URL/status" >"$T/denied.txt"
no_secret "a denied request's answer holds no secret" "$T/denied.txt"
no_secret "/status holds no secret" "$T/status.json"
no_secret "/metrics holds no secret (labels included)" "$T/metrics.txt"

kill -TERM "$PID"
wait_exit "$PID"
is "$?" 0 "SIGTERM drains the run, exit 0"
is "$(kend sec_out)" "$N" "sec_out holds the $N records"

no_secret "stderr holds no secret" "$T/run.err"
unlike "$(cat "$T/run.out")" "$SECRET" "stdout holds no secret"
no_secret "the events log holds no secret" "$T/events.jsonl"
if grep -rl "$SECRET" "$T/chk" >"$T/chk.leaks" 2>&1; then
    fail "the checkpoint files hold no secret"
    diag "$(cat "$T/chk.leaks")"
else
    pass "the checkpoint files hold no secret"
fi
like "$(cat "$T/run.err")" 'DEBUG \[in\] librdkafka settings: .*sasl\.password=\[redacted\]' \
    "the source's settings at DEBUG: sasl.password=[redacted]"
like "$(cat "$T/run.err")" 'DEBUG \[in\] librdkafka settings: .*sasl\.username=bob, ' \
    "... while sasl.username=bob, no secret, stays readable"
like "$(cat "$T/run.err")" 'DEBUG \[in\] librdkafka settings: .*ssl\.key\.password=\[redacted\].*sasl\.oauthbearer\.config=\[redacted\]' \
    "... ssl.key.password and sasl.oauthbearer.config too"
like "$(cat "$T/run.err")" 'DEBUG \[out\] librdkafka settings: .*sasl\.password=\[redacted\].*ssl\.keystore\.password=\[redacted\]' \
    "the sink's settings at DEBUG: sasl.password and ssl.keystore.password [redacted]"
like "$(cat "$T/run.err")" '\[in\] librdkafka CONF: .*sasl\.password = \[redacted\]' \
    "librdkafka's own configuration dump (debug: all) shows [redacted]"
like "$(cat "$T/run.err")" '\[push\] pushing to http://pguser:\[redacted\]@127\.0\.0\.1:[0-9]+/metrics/job/secrets every' \
    "the pushgateway URL is logged with pguser:[redacted]@"
like "$(cat "$T/run.err")" 'WARN  \[push\] push to http://pguser:\[redacted\]@127\.0\.0\.1:' \
    "... in its failure lines too"

# ---- b. validate and graph ----------------------------------------------------------
status_is 0 "sluice validate accepts the run's file" "$SLUICE" validate "$T/run.yaml"
unlike "$(cat "$TAP_OUT")" "$SECRET" "... and prints no secret"
status_is 0 "sluice graph draws it" "$SLUICE" graph "$T/run.yaml"
unlike "$(cat "$TAP_OUT")" "$SECRET" "... and prints no secret"

# ---- c. configuration errors next to secrets --------------------------------------
cat >"$T/bad_props.yaml" <<EOF
pipeline: secrets-bad
metrics: {listen: false}
sources:
  in:
    type: kafka
    brokers: $BOOT
    topic: sec_in
    properties:
      sasl.password: $SECRET-bad-sasl
      session.timeout.ms: soon
      ssl.key.password: $SECRET-bad-key
      sasl.jaas.config: "PlainLoginModule required username=u password=$SECRET-jaas;"
sinks:
  out: {type: console, input: in}
  push:
    type: pushgateway
    input: in
    url: "http://pguser:$SECRET-query@127.0.0.1:9/?x=1"
EOF
for cmd in validate run; do
    status_is 2 "bad librdkafka properties: sluice $cmd exits 2" \
        "$SLUICE" $cmd "$T/bad_props.yaml"
    out=$(cat "$TAP_OUT")
    like "$out" 'bad_props\.yaml:10:[0-9]+: .*properties\.session\.timeout\.ms' \
        "... $cmd names properties.session.timeout.ms at its line"
    like "$out" 'bad_props\.yaml:12:[0-9]+: .*properties\.sasl\.jaas\.config' \
        "... $cmd names properties.sasl.jaas.config"
    like "$out" "bad_props\.yaml:18:[0-9]+: .*'http://pguser:\[redacted\]@127\.0\.0\.1:9/\?x=1'" \
        "... $cmd quotes the gateway URL with pguser:[redacted]@"
    unlike "$out" "$SECRET" "... $cmd prints no secret"
done

cat >"$T/bad_metrics.yaml" <<EOF
pipeline: secrets-metrics
metrics:
  listen: 127.0.0.1:0
  password: $SECRET-lonely
sources:
  in: {type: generate, count: 1}
sinks:
  out: {type: console, input: in}
EOF
status_is 2 "a metrics password without a user name: exit 2" "$SLUICE" validate "$T/bad_metrics.yaml"
like "$(cat "$TAP_OUT")" 'bad_metrics\.yaml:4:[0-9]+: .*metrics\.password' "... the error points at metrics.password"
unlike "$(cat "$TAP_OUT")" "$SECRET" "... and prints no secret"

# ---- d. a start failure from librdkafka ----------------------------------------------
cat >"$T/bad_pem.yaml" <<EOF
pipeline: secrets-pem
metrics: {listen: false}
sources:
  in:
    type: kafka
    brokers: $BOOT
    topic: sec_in
    properties:
      security.protocol: ssl
      ssl.key.pem: "$SECRET-not-a-pem-key"
      ssl.key.password: $SECRET-pem-pw
sinks:
  out: {type: console, input: in}
EOF
status_is 1 "ssl.key.pem that is no key: the run fails at start, exit 1" timeout $TIMEOUT \
    "$SLUICE" run "$T/bad_pem.yaml" --log-level debug
like "$(cat "$TAP_OUT")" 'ssl\.key\.pem' "... the error names ssl.key.pem"
unlike "$(cat "$TAP_OUT")" "$SECRET" "... and prints no secret"

mock_stop
done_testing
