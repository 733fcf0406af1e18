#!/usr/bin/env bash
# kafka_brokers.sh — the Kafka source and sink when brokers, topics or
# offsets are not what the pipeline expects (issue 5), against the mock
# cluster:
#
#   a. the broker is down when sluice starts (mock `down 1` first): the
#      source logs that it cannot reach the brokers and retries, naming
#      them; once the warning is out the broker comes back (`up 1`) and
#      every record arrives; exit 0 on SIGTERM;
#   b. an outage while running: the broker goes down after the first
#      records arrived: a warning; it comes back, more records are
#      produced: they arrive too, nothing lost or repeated;
#   c. unreachable brokers (a closed port) with connect_timeout: 2s: exit 1
#      within a bounded time, the message names the brokers; a sink whose
#      brokers are unreachable (delivery_timeout: 2s) fails the run with
#      exit 1 too instead of dropping records;
#   d. a topic that does not exist (the mock's `missing` command, since it
#      otherwise creates every topic asked for): exit 1, the message names
#      the topic;
#   e. fail_on_data_loss, two ways offsets a checkpoint restores can be gone:
#      - retention: the mock keeps only the newest ~5 MB of a partition, so
#        after run 1 checkpointed offset 10, 3000 records of 2 KB push it
#        out: exit 1 with "no longer available"; with fail_on_data_loss:
#        false a warning, sluice_kafka_data_loss_total = exactly the offsets
#        skipped, and the run reads on from the log's start;
#      - a recreated cluster whose topic is shorter than the checkpoint's
#        offsets: exit 1 likewise; with false a warning per partition, and
#        records produced afterwards arrive.
# Waits poll with a timeout (wait_for), never a fixed sleep.
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/kafka_lib.sh"

kafka_require
require_cmd curl || done_testing

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
TIMEOUT=60
sanitized_build && TIMEOUT=180

produce_range() {   # TOPIC FROM TO: records {"i": i} keyed k<i>
    seq "$2" "$3" | awk '{ printf "k%d:{\"i\":%d}\n", $1, $1 }' | kproduce "$1"
}
out_has() { [ "$(lines_in "$1")" -ge "$2" ]; }
ids() { jq -r .i "$1" | sort -n | tr '\n' ' ' | sed 's/ $//'; }
range() { seq "$1" "$2" | tr '\n' ' ' | sed 's/ $//'; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

simple_yaml() {   # FILE NAME TOPIC [EXTRA SOURCE LINES]
    cat >"$1" <<EOF
pipeline: $2
sources:
  in:
    type: kafka
    brokers: \${BROKERS}
    topic: $3
$4
sinks:
  out: {type: file, input: in, path: $T/$2.out}
EOF
}

mock_start brokers --topic br_a:4 --topic br_b:4
export BROKERS=$BOOT
diag "mock cluster at $BOOT"

# ---- a. down at start -------------------------------------------------------------------
produce_range br_a 1 100
ok "down at start: the mock takes broker 1 down" mock_cmd down 1
simple_yaml "$T/a.yaml" down_at_start br_a
sluice_bg a "$T/a.yaml"
warned() { grep -Eq 'WARN.*(reach|unreachable|down).*127\.0\.0\.1:[0-9]+' "$T/a.log"; }
ok "down at start: a warning names the unreachable brokers" wait_for 30 warned
like "$(cat "$T/a.log")" 'WARN.*retry' "down at start: ... and says it retries"
ok "down at start: sluice still runs while the broker is down" kill -0 $PID
ok "down at start: the broker comes back" mock_cmd up 1
ok "down at start: then every record arrives" wait_for $TIMEOUT out_has "$T/down_at_start.out" 100
stop_run $PID "down at start"
is "$(ids "$T/down_at_start.out")" "$(range 1 100)" "down at start: records 1..100, each once"

# ---- b. outage while running ---------------------------------------------------------------
produce_range br_b 1 100
simple_yaml "$T/b.yaml" outage br_b
sluice_bg b "$T/b.yaml"
ok "outage: the first 100 records arrive" wait_for $TIMEOUT out_has "$T/outage.out" 100
ok "outage: the mock takes broker 1 down" mock_cmd down 1
outage_warned() { grep -Eq 'WARN.*(unreachable|reach|down|retry)' "$T/b.log"; }
ok "outage: a warning while the broker is down" wait_for 30 outage_warned
ok "outage: sluice keeps running" kill -0 $PID
ok "outage: the broker comes back" mock_cmd up 1
produce_range br_b 101 150
ok "outage: records produced after it arrive" wait_for $TIMEOUT out_has "$T/outage.out" 150
stop_run $PID "outage"
is "$(ids "$T/outage.out")" "$(range 1 150)" "outage: records 1..150, each once"

# ---- c. unreachable brokers ------------------------------------------------------------------
CLOSED=127.0.0.1:$(free_port)
simple_yaml "$T/c.yaml" unreachable br_a "    connect_timeout: 2s"
t0=$(now_ms)
BROKERS=$CLOSED sluice_bg c "$T/c.yaml"
wait_exit $PID
st=$?
took=$(( $(now_ms) - t0 ))
is "$st" 1 "unreachable: exit 1"
ok "unreachable: within 20 s ($took ms; connect_timeout 2s)" test "$took" -lt 20000
like "$(cat "$T/c.log")" "ERROR.*${CLOSED//./\\.}" "unreachable: the error names the brokers"

cat >"$T/c-sink.yaml" <<EOF
pipeline: unreachable-sink
sources:
  gen: {type: generate, count: 10}
sinks:
  out: {type: kafka, input: gen, brokers: $CLOSED, topic: nowhere, delivery_timeout: 2s}
EOF
t0=$(now_ms)
sluice_bg csink "$T/c-sink.yaml"
wait_exit $PID
st=$?
took=$(( $(now_ms) - t0 ))
is "$st" 1 "unreachable sink: exit 1 (records not delivered are an error, not dropped)"
ok "unreachable sink: within 30 s ($took ms; delivery_timeout 2s)" test "$took" -lt 30000
like "$(cat "$T/csink.log")" "ERROR.*(${CLOSED//./\\.}|deliver|time)" "unreachable sink: the error says why"

# ---- d. unknown topic -------------------------------------------------------------------------
# The mock creates any topic a client asks metadata for; its `missing NAME`
# command (rd_kafka_mock_topic_set_error, UNKNOWN_TOPIC_OR_PART) makes it
# answer as a broker without that topic does.
if ok "unknown topic: the mock reports no_such_topic as unknown" mock_cmd missing no_such_topic; then
    simple_yaml "$T/d.yaml" unknown_topic no_such_topic
    t0=$(now_ms)
    sluice_bg d "$T/d.yaml"
    RUN_TIMEOUT=45 wait_exit $PID
    st=$?
    took=$(( $(now_ms) - t0 ))
    is "$st" 1 "unknown topic: exit 1"
    ok "unknown topic: within 40 s ($took ms)" test "$took" -lt 40000
    like "$(cat "$T/d.log")" 'ERROR.*no_such_topic' "unknown topic: the error names the topic"
else
    diag "$KAFKA_MOCK has no 'missing' command: the topic would simply be created"
    for what in "exit 1" "within 40 s" "the error names the topic"; do fail "unknown topic: $what (not run)"; done
fi

# ---- e. fail_on_data_loss ----------------------------------------------------------------------
# dataloss_yaml FILE NAME: kafka (topic dl) -> file, checkpoints, metrics on
# $PORT, fail_on_data_loss from $FAIL_ON_LOSS (default true).
dataloss_yaml() {
    cat >"$1" <<EOF
pipeline: $2
checkpoint: {interval: 200ms, dir: $T/chk-$2}
metrics:
  listen: 127.0.0.1:\${PORT}
sources:
  in:
    type: kafka
    brokers: \${BROKERS}
    topic: dl
    properties: $GROUP_PROPERTIES
    fail_on_data_loss: \${FAIL_ON_LOSS:-true}
sinks:
  out: {type: file, input: in, path: $T/$2.out}
EOF
}
export PORT FAIL_ON_LOSS
scrape_loss() {   # the sum of sluice_kafka_data_loss_total, from $PORT
    curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$T/loss.metrics" 2>/dev/null || return 1
    awk '/^sluice_kafka_data_loss_total\{/ { s += $NF; n++ } END { if (n) printf "%.0f\n", s; else exit 1 }' \
        "$T/loss.metrics"
}

# e1. Retention: the mock keeps only the newest ~5 MB of a partition.
# Run 1 reads records 1..10 of a 1-partition topic and checkpoints offset
# 10; then 3000 records of 2 KB push offsets 10.. out of the log.
mock_cmd topic dl 1 || bail_out "cannot create topic dl"
produce_range dl 1 10
dataloss_yaml "$T/e1.yaml" retention
PORT=$(free_port)
sluice_bg e1a "$T/e1.yaml"
ok "retention: run 1 reads 10 records" wait_for $TIMEOUT out_has "$T/retention.out" 10
stop_run $PID "retention: run 1"
python3 -c '
pad = "x" * 2000
for i in range(11, 3011):
    print("k%d:{\"i\":%d,\"pad\":\"%s\"}" % (i, i, pad))' | kproduce dl
LOW=$(kcat -b "$BOOT" -C -t dl -o beginning -c 1 -q -f '%o')
ok "retention: the mock dropped the oldest offsets (the log starts at ${LOW:-?} now, after 10)" \
    test "${LOW:-0}" -gt 10
PORT=$(free_port)
sluice_bg e1b "$T/e1.yaml"
wait_exit $PID
is "$?" 1 "retention: the restored offset is gone: exit 1"
like "$(cat "$T/e1b.log")" 'ERROR.*dl.*no longer available' \
    "retention: the error names the topic and says the offset is no longer available"
is "$(lines_in "$T/retention.out")" 10 "retention: nothing more written"

PORT=$(free_port)
FAIL_ON_LOSS=false sluice_bg e1c "$T/e1.yaml"
loss_is() { [ "$(scrape_loss)" = "$1" ]; }
ok "retention, fail_on_data_loss: false: sluice_kafka_data_loss_total = $((LOW - 10)) (offsets 10..$((LOW - 1)))" \
    wait_for $TIMEOUT loss_is $((LOW - 10))
like "$(cat "$T/e1c.log")" 'WARN.*dl.*skipping' "retention, false: a warning that it skips"
ok "retention, false: the run goes on and reads from the log's start on" \
    wait_for $TIMEOUT out_has "$T/retention.out" $((10 + 3010 - LOW))
stop_run $PID "retention, false"
is "$(ids "$T/retention.out")" "$(range 1 10) $(range $((LOW + 1)) 3010)" \
    "retention, false: records 1..10, then $((LOW + 1))..3010 (what the log still has), each once"
mock_stop

# e2. A recreated cluster: run 1 reads 200 records of a 4-partition topic;
# a new cluster's topic holds only 20, so the checkpoint's offsets (about
# 50 per partition) are past its end.
mock_start dataloss --topic dl:4
export BROKERS=$BOOT
produce_range dl 1 200
FAIL_ON_LOSS=true
dataloss_yaml "$T/e2.yaml" recreated
PORT=$(free_port)
sluice_bg e2a "$T/e2.yaml"
ok "recreated: run 1 reads 200 records" wait_for $TIMEOUT out_has "$T/recreated.out" 200
stop_run $PID "recreated: run 1"
mock_stop
mock_start dataloss2 --topic dl:4
export BROKERS=$BOOT
produce_range dl 1001 1020
PORT=$(free_port)
sluice_bg e2b "$T/e2.yaml"
wait_exit $PID
is "$?" 1 "recreated: restored offsets past the end: exit 1"
like "$(cat "$T/e2b.log")" 'ERROR.*dl.*no longer available' \
    "recreated: the error names the topic and says the offsets are no longer available"

PORT=$(free_port)
FAIL_ON_LOSS=false sluice_bg e2c "$T/e2.yaml"
skipped_all() { [ "$(grep -c 'WARN.*dl.*skipping' "$T/e2c.log")" -ge 4 ]; }
ok "recreated, false: a warning per partition that it skips (to the end)" wait_for $TIMEOUT skipped_all
ok "recreated, false: the run goes on" kill -0 $PID
produce_range dl 2001 2010
got_new() { [ "$(jq -r .i "$T/recreated.out" 2>/dev/null | awk '$1 > 2000' | wc -l)" -ge 10 ]; }
ok "recreated, false: records produced afterwards arrive" wait_for $TIMEOUT got_new
stop_run $PID "recreated, false"
is "$(jq -r .i "$T/recreated.out" | awk '$1 > 200' | sort -n | tr '\n' ' ' | sed 's/ $//')" "$(range 2001 2010)" \
    "recreated, false: after the first 200, exactly records 2001..2010"

mock_stop
done_testing
