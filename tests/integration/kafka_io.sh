#!/usr/bin/env bash
# kafka_io.sh — the Kafka source and sink against librdkafka's mock cluster,
# with kcat as the independent producer and consumer (issue 5).
#
#   a. at least once: 2000 JSON records (keys k0..k1999, so all 4 partitions
#      get some) and 5 undecodable messages produced with kcat -> kafka ->
#      filter (status >= 400) -> kafka: the output topic holds exactly the
#      selected records, keys kept; a second sink routes the same records
#      by a field (topic_field) with `key: user` and two `headers`, which
#      kcat sees (-f '%k %h %s'); the 5 bad messages are counted in
#      sluice_errors_total; /metrics shows the kafka_* families with exact
#      counts, per-partition lag 0 once everything is read, and passes
#      promtool;
#   b. exactly_once (checkpoint interval 200ms): the same, read back with
#      isolation.level=read_committed; Kafka transactions were committed
#      (metric) and none aborted.
#      What this proves against the mock: the run's output is complete and
#      free of duplicates, and its transactions commit. The mock writes no
#      commit/abort markers, so it cannot show that a read_committed
#      consumer would hide an aborted transaction — that needs a real broker;
#   c. format raw: key, value, headers, topic, partition, offset, timestamp
#      equal to what kcat reports for each message (a null key, headers and
#      a non-JSON value included); a raw kafka -> kafka copy keeps keys and
#      bytes;
#   d. `errors: NAME` on the source: the bad messages arrive there with raw,
#      error and stage, the good ones on the main output;
#   e. `sluice validate`: configuration mistakes of the Kafka stages give
#      FILE:LINE:COL and exit status 2;
#   f. etc/examples/kafka-error-rate.yaml with the demo's access log: the
#      rows of error-rate.yaml (its file twin) for every closed window.
# Each run reads with a consumer group of its own (the default group is
# sluice.<pipeline>.<stage>), from the earliest offset.
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/kafka_lib.sh"

kafka_require
require_cmd curl || done_testing
require_cmd promtool || done_testing

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
TIMEOUT=60
sanitized_build && TIMEOUT=180

mock_start io --topic io_in:4 --topic io_out:4 --topic io_4xx:2 --topic io_5xx:2 \
    --topic io_unrouted:1 --topic io_eo:4 --topic io_raw:4 --topic io_raw_copy:4 \
    --topic access-logs:4 --topic error-rates:4 --topic access-logs-rejected:1
diag "mock cluster at $BOOT"

# ---- input --------------------------------------------------------------------
# in.msgs: what kcat produces (key:value); selected: key<TAB>value of the
# records with status >= 400; want.io_4xx/io_5xx: what the routing sink
# must write (key = user, sorted headers, value + dest).
N=2000
python3 - "$T" "$N" <<'PY'
import json, random, sys
t, n = sys.argv[1], int(sys.argv[2])
r = random.Random(5)
out = {"sel": open(t + "/selected", "w"), "io_4xx": open(t + "/routed.io_4xx", "w"),
       "io_5xx": open(t + "/routed.io_5xx", "w")}
with open(t + "/in.msgs", "w") as f, open(t + "/in.good", "w") as g:
    for i in range(n):
        rec = {"i": i, "user": "u%d" % r.randrange(40),
               "status": r.choice([200, 200, 201, 302, 404, 500, 503]),
               "path": "/p/%d" % r.randrange(1000), "rt": r.randrange(1000) / 8,
               "note": "tab\there \"quoted\" caf\u00e9 \u2713" if i % 100 == 0 else "plain"}
        line = json.dumps(rec, separators=(",", ":"))
        f.write("k%d:%s\n" % (i, line))
        g.write(line + "\n")
        if rec["status"] >= 400:
            out["sel"].write("k%d\t%s\n" % (i, line))
            dest = "io_5xx" if rec["status"] >= 500 else "io_4xx"
            routed = dict(rec, dest=dest)
            out[dest].write("%s|x-status=%d,x-user=%s\t%s\n" % (rec["user"], rec["status"], rec["user"],
                                                              json.dumps(routed)))
    for j, bad in enumerate(["not json", '{"i":', "{broken}", "}{", "nul"]):
        f.write("bad%d:%s\n" % (j, bad))
PY
printf '%s\n' 'not json' '{"i":' '{broken}' '}{' 'nul' >"$T/in.bad"
ok "kcat produces the $N records and 5 bad messages to io_in" kproduce io_in -l "$T/in.msgs"
is "$(kend io_in)" $((N + 5)) "io_in holds $((N + 5)) messages"

# key<TAB>json -> key<TAB>json normalized by jq -cS (sorted keys, one spelling
# of numbers and strings), so that sluice's encoding is compared by value.
norm_pairs() { paste <(cut -f1 "$1") <(cut -f2- "$1" | jq -cS .); }
norm_pairs "$T/selected" >"$T/want.out"
norm_pairs "$T/routed.io_4xx" >"$T/want.io_4xx"
norm_pairs "$T/routed.io_5xx" >"$T/want.io_5xx"
SELECTED=$(lines_in "$T/want.out")
ok "some records are selected, not all ($SELECTED of $N)" test "$SELECTED" -gt 100 -a "$SELECTED" -lt "$N"

# ---- a. at least once, routing, key, headers, bad messages, metrics ---------------
PORT=$(free_port)
cat >"$T/alo.yaml" <<EOF
pipeline: io-alo
metrics: {listen: 127.0.0.1:$PORT}
sources:
  in:
    type: kafka
    brokers: $BOOT
    topic: io_in
operators:
  errors_only: {type: filter, input: in, where: status >= 400}
  route:
    type: map
    input: errors_only
    set: {dest: "status >= 500 and 'io_5xx' or 'io_4xx'"}
sinks:
  out: {type: kafka, input: errors_only, brokers: $BOOT, topic: io_out}
  routed:
    type: kafka
    input: route
    brokers: $BOOT
    topic: io_unrouted
    topic_field: dest
    key: user
    headers: {x-user: user, x-status: status}
EOF
sluice_bg alo "$T/alo.yaml"
ok "alo: io_out gets the $SELECTED selected records" wait_for $TIMEOUT kend_is_at_least io_out "$SELECTED"
ok "alo: the routed topics get them too" \
    wait_for $TIMEOUT eval '[ $(( $(kend io_4xx) + $(kend io_5xx) )) -ge '"$SELECTED"' ]'

scrape() { curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$T/metrics.txt"; }
m() { metric "$T/metrics.txt" "$@"; }
lag_zero() {
    scrape || return 1
    local p v
    for p in 0 1 2 3; do
        v=$(m sluice_kafka_consumer_lag "stage=\"in\",topic=\"io_in\",partition=\"$p\"")
        [ "$v" = 0 ] || return 1
    done
}
read_all() { scrape && [ "$(m sluice_kafka_records_in_total 'stage="in",topic="io_in"')" = $((N + 5)) ]; }
ok "alo: /metrics counts all $((N + 5)) messages read from io_in" wait_for $TIMEOUT read_all
ok "alo: consumer lag 0 on each of the 4 partitions once all is read" wait_for $TIMEOUT lag_zero
scrape
ok "alo: /metrics passes promtool check metrics" promtool check metrics <"$T/metrics.txt"
is "$(grep -c '^sluice_kafka_consumer_lag{.*topic="io_in"' "$T/metrics.txt")" 4 \
    "alo: one lag series per partition"
bytes_in=$(m sluice_kafka_bytes_in_total 'stage="in",topic="io_in"')
value_bytes=$(cut -d: -f2- "$T/in.msgs" | LC_ALL=C awk '{ s += length($0) } END { print s }')
ok "alo: bytes in ($bytes_in) >= the values' bytes ($value_bytes)" \
    awk -v a="${bytes_in:-0}" -v b="$value_bytes" 'BEGIN { exit !(a >= b) }'
# The sink counts a message out when Kafka acknowledged it; the pipeline is
# idle now, so the counts must get there without further input.
sink_counted() {
    scrape || return 1
    [ "$(m sluice_kafka_records_out_total 'stage="out",topic="io_out"')" = "$SELECTED" ] &&
        [ "$(( $(m sluice_kafka_records_out_total 'stage="routed",topic="io_4xx"') +
               $(m sluice_kafka_records_out_total 'stage="routed",topic="io_5xx"') ))" = "$SELECTED" ]
}
ok "alo: records out = $SELECTED to io_out and to io_4xx + io_5xx, once acknowledged" wait_for 10 sink_counted ||
    diag "$(grep '^sluice_kafka_records_out_total' "$T/metrics.txt")"
ok "alo: bytes out counted" awk -v a="$(m sluice_kafka_bytes_out_total 'stage="out",topic="io_out"')" \
    'BEGIN { exit !(a > 0) }'
# The core's own `kind` label (source/sink) leaves the plugin another name
# for the rebalance's kind: event.
ok "alo: a rebalance (assign) counted" \
    awk -v a="$(m sluice_kafka_rebalances_total 'stage="in",event="assign"')" 'BEGIN { exit !(a >= 1) }'
bad_counted=$(grep '^sluice_errors_total{.*stage="in"' "$T/metrics.txt" | awk '{ s += $NF } END { print s + 0 }')
is "$bad_counted" 5 "alo: the 5 undecodable messages counted in sluice_errors_total{stage=in}"
stop_run $PID alo
like "$(cat "$T/alo.log")" "$N records|$((N + 5)) records read" "alo: the run's summary counts the records read"

kconsume io_out '%k\t%s\n' >"$T/got.out.raw"
norm_pairs "$T/got.out.raw" >"$T/got.out"
same_lines "alo: io_out = the selected records with their keys, each once" "$T/got.out" "$T/want.out"
for t in io_4xx io_5xx; do
    kconsume $t '%k|%h\t%s\n' >"$T/got.$t.raw"
    # header order is the sink's; compare them sorted
    python3 -c '
import sys
for line in open(sys.argv[1], encoding="utf-8"):
    kh, value = line.rstrip("\n").split("\t", 1)
    key, headers = kh.split("|", 1)
    print("%s|%s\t%s" % (key, ",".join(sorted(headers.split(","))), value))' \
        "$T/got.$t.raw" >"$T/got.$t.sorted-headers"
    norm_pairs "$T/got.$t.sorted-headers" >"$T/got.$t"
    same_lines "alo: $t = its records, key = user, headers x-user and x-status" "$T/got.$t" "$T/want.$t"
done
is "$(kend io_unrouted)" 0 "alo: nothing fell back to the default topic"

# ---- b. exactly once ---------------------------------------------------------------
PORT=$(free_port)
cat >"$T/eo.yaml" <<EOF
pipeline: io-eo
checkpoint: {interval: 200ms, dir: $T/chk}
events_log: $T/eo.events
metrics: {listen: 127.0.0.1:$PORT}
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_in}
operators:
  errors_only: {type: filter, input: in, where: status >= 400}
sinks:
  out: {type: kafka, input: errors_only, brokers: $BOOT, topic: io_eo, exactly_once: true}
EOF
sluice_bg eo "$T/eo.yaml"
ok "eo: io_eo gets the $SELECTED selected records" wait_for $TIMEOUT kend_is_at_least io_eo "$SELECTED"
committed() {
    scrape && awk -v a="$(m sluice_kafka_transactions_total 'stage="out",outcome="committed"')" \
        'BEGIN { exit !(a >= 1) }'
}
ok "eo: sluice_kafka_transactions_total{outcome=committed} >= 1" wait_for $TIMEOUT committed
stop_run $PID eo
kconsume io_eo '%k\t%s\n' -X isolation.level=read_committed >"$T/got.eo.raw"
norm_pairs "$T/got.eo.raw" >"$T/got.eo"
same_lines "eo: read_committed sees the selected records, each once" "$T/got.eo" "$T/want.out"
ok "eo: checkpoints completed (events_log)" grep -q '"event":"checkpoint_completed"' "$T/eo.events"
unlike "$(grep -v -e bad_json -e "without the metrics endpoint" "$T/eo.log")" "[Aa]bort|WARN|ERROR" "eo: no transaction aborted, no warning (but for the bad messages) in the log"
is "$(m sluice_kafka_transactions_total 'stage="out",outcome="aborted"')" "$(
    grep -q 'outcome="aborted"' "$T/metrics.txt" && echo 0)" "eo: no aborted transaction counted"

# ---- c. format raw -----------------------------------------------------------------
# 10 messages with key and two headers, 10 without headers, one with no key,
# one whose value is not JSON, one with an empty value.
{ for i in $(seq 0 9); do echo "h$i:{\"i\":$i}"; done; } | kproduce io_raw -H hdr1=one -H hdr2='two words'
{ for i in $(seq 10 19); do echo "p$i:{\"i\":$i}"; done; echo 'plain:just some text'; echo 'empty:'; } |
    kproduce io_raw
echo 'no key here' | kcat -b "$BOOT" -P -t io_raw -p 1
ok "raw: io_raw holds 23 messages" test "$(kend io_raw)" -eq 23
kconsume io_raw '%k\t%p\t%o\t%T\t%s\n' >"$T/raw.want"
cat >"$T/raw.yaml" <<EOF
pipeline: io-raw
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_raw, format: raw}
sinks:
  file: {type: file, input: in, path: $T/raw.out}
  copy: {type: kafka, input: in, brokers: $BOOT, topic: io_raw_copy, format: raw}
EOF
sluice_bg raw "$T/raw.yaml"
ok "raw: all 23 records in the file" wait_for $TIMEOUT eval '[ "$(lines_in "$T/raw.out")" -ge 23 ]'
ok "raw: all 23 copied" wait_for $TIMEOUT kend_is_at_least io_raw_copy 23
stop_run $PID raw
jq -r '[(.key // ""), .partition, .offset, .timestamp, .value] | @tsv' "$T/raw.out" >"$T/raw.got" 2>&1
same_lines "raw: key, partition, offset, timestamp and value = what kcat reports" "$T/raw.got" "$T/raw.want"
is "$(jq -r 'select(.key == "h3") | .headers | (if type == "string" then fromjson else . end) | to_entries | map("\(.key)=\(.value)") | join(",")' \
    "$T/raw.out" 2>&1)" "hdr1=one,hdr2=two words" "raw: headers as a JSON object"
like "$(jq -r 'select(.key == "p13") | .headers | if . == null then "none" else . end' "$T/raw.out" 2>&1)" \
    '^(none|\{\})$' "raw: a message without headers: headers null, absent or {}"
is "$(jq -r 'select(.value == "no key here") | .key == null' "$T/raw.out" 2>&1)" true "raw: no key -> key null"
is "$(jq -r .topic "$T/raw.out" | sort -u)" io_raw "raw: topic field"
is "$(jq -r '[.partition, .offset, .timestamp] | map(type) | join(",")' "$T/raw.out" | sort -u)" \
    "number,number,number" "raw: partition, offset and timestamp are numbers"
kconsume io_raw '%k|%s\n' | sort >"$T/raw.kv.want"
kconsume io_raw_copy '%k|%s\n' | sort >"$T/raw.kv.got"
same_lines "raw: kafka -> kafka copy keeps keys and values byte for byte" "$T/raw.kv.got" "$T/raw.kv.want"

# ---- d. errors output ----------------------------------------------------------------
cat >"$T/errors.yaml" <<EOF
pipeline: io-errors
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_in, errors: bad}
sinks:
  good: {type: file, input: in, path: $T/errors.good}
  rejected: {type: file, input: bad, path: $T/errors.bad}
EOF
sluice_bg errors "$T/errors.yaml"
ok "errors: the $N good records arrive" wait_for $TIMEOUT eval '[ "$(lines_in "$T/errors.good")" -ge '$N' ]'
ok "errors: the 5 bad ones on the errors output" wait_for $TIMEOUT eval '[ "$(lines_in "$T/errors.bad")" -ge 5 ]'
stop_run $PID errors
jq -cS . "$T/in.good" >"$T/errors.good.want"
jq -cS . "$T/errors.good" >"$T/errors.good.got"
same_lines "errors: the main output = every good record once" "$T/errors.good.got" "$T/errors.good.want"
jq -r .raw "$T/errors.bad" >"$T/errors.raw.got" 2>&1
same_lines "errors: raw = each bad message's text" "$T/errors.raw.got" "$T/in.bad"
is "$(jq -r '[(.error | type == "string" and length > 0), .stage] | @tsv' "$T/errors.bad" | sort -u)" \
    "$(printf 'true\tin')" "errors: error and stage fields"

# ---- f. the example etc/examples/kafka-error-rate.yaml ---------------------------------
# The demo's access log through Kafka gives the rows its file twin
# (error-rate.yaml, a bounded run: every window fires) gives, for each
# window the watermark has passed: all windows that end 10 s or more before
# the newest record (the watermark trails by 5 s), never a row the file
# run does not have. The log's 3 truncated lines go to the rejected topic.
EX=$SRCDIR/etc/examples
ROUND='walk(if type == "number" and . != floor then (. * 1000000 | round) / 1000000 else . end)'
mkdir -p "$T/exref"
OUT_DIR=$T/exref timeout 120 "$SLUICE" run --quiet --set "sources.logs.path=$EX/data/access.jsonl" \
    "$EX/error-rate.yaml" >/dev/null 2>"$T/exref.log"
jq -cS "$ROUND" "$T/exref/error-rates.jsonl" | sort >"$T/ex.ref" 2>&1
ok "example: the file twin's reference has rows" test "$(lines_in "$T/ex.ref")" -gt 10
newest=$(jq -rR 'fromjson? | .timestamp' "$EX/data/access.jsonl" | sort | tail -n 1)
cutoff=$(jq -rn --arg t "$newest" '$t | sub("\\.[0-9]+Z$"; "Z") | fromdate - 10')
jq -c --argjson c "$cutoff" 'select((.window_end | sub("\\.[0-9]+Z$"; "Z") | fromdate) <= $c)' "$T/ex.ref" |
    sort >"$T/ex.must"
# Keyed by line number, so that every partition gets lines from the whole
# log: a partition holding only its first minute would hold every window.
awk '{ print NR ":" $0 }' "$EX/data/access.jsonl" >"$T/access.keyed"
ok "kcat produces the demo log to access-logs" kproduce access-logs -l "$T/access.keyed"
KAFKA_BROKERS=$BOOT CHECKPOINT_DIR=$T/exchk sluice_bg example "$EX/kafka-error-rate.yaml" --set checkpoint.interval=500ms
ok "example: the closed windows' rows reach error-rates" \
    wait_for $TIMEOUT kend_is_at_least error-rates "$(lines_in "$T/ex.must")"
stop_run $PID "example"
kconsume error-rates '%k\t%s\n' -X isolation.level=read_committed >"$T/ex.kv"
cut -f2- "$T/ex.kv" | jq -cS "$ROUND" | sort >"$T/ex.got"
ok "example: every row is one the file twin has" \
    eval '[ -z "$(LC_ALL=C comm -23 <(LC_ALL=C sort "$T/ex.got") <(LC_ALL=C sort "$T/ex.ref"))" ]'
ok "example: every window closed 10 s before the newest record is there" \
    eval '[ -z "$(LC_ALL=C comm -13 <(LC_ALL=C sort -u "$T/ex.got") <(LC_ALL=C sort "$T/ex.must"))" ]'
is "$(sort "$T/ex.got" | uniq -d | wc -l)" 0 "example: no row twice"
is "$(awk -F'\t' '{ split($2, a, "\"service\":\""); split(a[2], b, "\""); if ($1 != b[1]) n++ } END { print n + 0 }' "$T/ex.kv")" 0 \
    "example: rows are keyed by service"
kconsume access-logs-rejected '%s\n' >"$T/ex.rejected"
is "$(lines_in "$T/ex.rejected")" 3 "example: the log's 3 truncated lines are in access-logs-rejected"
is "$(jq -r '[(.raw | length > 0), .stage] | @tsv' "$T/ex.rejected" | sort -u)" "$(printf 'true\tlogs')" \
    "example: ... with their raw text and stage"

# ---- e. configuration errors ----------------------------------------------------------
# bad_config NAME LINE REGEX: validating $T/NAME.yaml (stdin) exits 2 with
# FILE:LINE:COL: message matching REGEX; LINE may be an ERE (a|b).
bad_config() {
    local name=$1 line=$2 re=$3 f=$T/$1.yaml
    cat >"$f"
    status_is 2 "validate $name: exit 2" "$SLUICE" validate "$f"
    like "$(cat "$TAP_OUT")" "^$f:($line):[0-9]+: .*($re)" "validate $name: FILE:LINE:COL: with the reason"
}
bad_config no-brokers '[345]' 'brokers' <<EOF
pipeline: t
sources:
  in:
    type: kafka
    topic: io_in
sinks:
  out: {type: console, input: in}
EOF
bad_config eo-without-checkpoint '9|10' 'checkpoint' <<EOF
pipeline: t
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_in}
sinks:
  out:
    type: kafka
    input: in
    brokers: $BOOT
    topic: io_out
    exactly_once: true
EOF
bad_config bad-source-property '6|7' 'no\.such\.property' <<EOF
pipeline: t
sources:
  in:
    type: kafka
    brokers: $BOOT
    properties:
      no.such.property: 1
    topic: io_in
sinks:
  out: {type: console, input: in}
EOF
bad_config bad-sink-property '9|10' 'linger\.ms|-5' <<EOF
pipeline: t
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_in}
sinks:
  out:
    type: kafka
    input: in
    brokers: $BOOT
    topic: io_out
    properties: {linger.ms: -5}
EOF
bad_config owned-property '6|7' 'enable\.auto\.commit' <<EOF
pipeline: t
sources:
  in:
    type: kafka
    brokers: $BOOT
    properties:
      enable.auto.commit: true
    topic: io_in
sinks:
  out: {type: console, input: in}
EOF
bad_config bad-format '4' 'avro|format' <<EOF
pipeline: t
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_in}
  in2: {type: kafka, brokers: $BOOT, topic: io_in, format: avro}
sinks:
  out: {type: console, input: [in, in2]}
EOF
bad_config sink-without-topic '4|5' 'topic' <<EOF
pipeline: t
sources:
  in: {type: kafka, brokers: $BOOT, topic: io_in}
sinks:
  out: {type: kafka, input: in, brokers: $BOOT}
EOF
status_is 0 "validate: a correct kafka -> kafka file exits 0" "$SLUICE" validate "$T/eo.yaml"

mock_stop
done_testing
