#!/usr/bin/env bash
# kafka_watermarks.sh — per-partition watermarks of the Kafka source driving
# a `window` operator while sluice keeps running (a Kafka input never ends,
# so no end-of-input flush can make a window fire; only the watermark can).
#
#   a. a 4-partition topic, partitions 0-2 fed continuously (one record per
#      partition every 100 ms, event time from a field, 1 s of event time
#      per tick), partition 3 idle; tumbling 10 s windows with
#      `watermark: {idle_timeout: 3s}`: the first windows fire while sluice
#      runs, with exactly the right count and sum, once each, nothing late;
#   b. the same without idle_timeout: the idle partition holds every window
#      open (checked for 2 s after the others are 25 s of event time ahead);
#      one record on partition 3, far ahead, releases them: the watermark is
#      then the minimum over partitions 0-2, so [0,10) fires correct;
#   c. no event_time option: event time is the Kafka message timestamp.
#      The topic gets 20000 records 1 ms apart in event time from sluice's
#      generate -> kafka sink (which stamps messages with the event time,
#      checked with kcat's %T), read in a few hundred ms of wall time: the
#      1 s windows sluice emits have exactly the counts of messages kcat
#      shows stamped in each second, so records were windowed by their
#      Kafka timestamp, not by their arrival.
# Waits poll with a timeout (wait_for); the one fixed pause checks that
# something does NOT happen.
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/kafka_lib.sh"

kafka_require

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
TIMEOUT=30
sanitized_build && TIMEOUT=90
BASE=1700000000000   # a multiple of 10 s: 2023-11-14T22:13:20Z

mock_start wm --topic wm_a:4 --topic wm_b:4 --topic wm_c:4
diag "mock cluster at $BOOT"

# feed TOPIC: in the background, every 100 ms tick i, one record per
# partition p in 0..2: {"ts": BASE + i s, "p": p, "v": 1000 p + i}.
# Sets FEEDER.
feed() {
    python3 - "$BOOT" "$1" "$BASE" <<'PY' &
import subprocess, sys, time
boot, topic, base = sys.argv[1], sys.argv[2], int(sys.argv[3])
procs = [subprocess.Popen(["kcat", "-b", boot, "-P", "-t", topic, "-p", str(p)],
                          stdin=subprocess.PIPE, text=True) for p in range(3)]
for i in range(600):                       # at most 60 s
    for p, proc in enumerate(procs):
        proc.stdin.write('{"ts":%d,"p":%d,"v":%d}\n' % (base + i * 1000, p, 1000 * p + i))
        proc.stdin.flush()
    time.sleep(0.1)
PY
    FEEDER=$!
}
stop_feed() { kill "$FEEDER" 2>/dev/null; wait "$FEEDER" 2>/dev/null; }

window_yaml() {   # FILE TOPIC WATERMARK
    cat >"$1" <<EOF
pipeline: wm-$2
sources:
  in:
    type: kafka
    brokers: $BOOT
    topic: $2
    event_time: {field: ts, format: epoch_ms}
    watermark: $3
operators:
  win:
    type: window
    input: in
    size: 10s
    late: late_out
    aggregate: {n: count(), s: sum(v)}
sinks:
  rows: {type: file, input: win, path: $T/$2.rows}
  late: {type: file, input: late_out, path: $T/$2.late}
  seen: {type: file, input: in, path: $T/$2.seen}
EOF
}

iso() { jq -rn --argjson ms "$1" '$ms / 1000 | strftime("%Y-%m-%dT%H:%M:%S.000Z")'; }
W0=$(iso $BASE)
W1=$(iso $((BASE + 10000)))
# rows_of FILE START: the rows of the window starting at START, as "n/s" words
rows_of() { [ -f "$1" ] && jq -r --arg s "$2" 'select(.window_start == $s) | "\(.n)/\(.s)"' "$1" | tr '\n' ' '; }
has_rows() { [ -n "$(rows_of "$1" "$2")" ] && [ -n "$(rows_of "$1" "$3")" ]; }
# each of partitions 0-2 read up to at least tick N
seen_ticks() {
    [ -f "$1" ] && [ "$(jq -s --argjson b $BASE '[group_by(.p)[] | map(.ts) | max] | length' "$1")" = 3 ] &&
        [ "$(jq -s --argjson b $BASE '[group_by(.p)[] | map(.ts) | max] | min - $b' "$1")" -ge $(($2 * 1000)) ]
}
# [0,10) = ticks 0-9 of 3 partitions: 30 records, sum 3*45 + 10*(0+1000+2000)
WANT0="30/30135 "
WANT1="30/30435 "

# ---- a. idle partition released by idle_timeout ------------------------------------
# 3 s: long enough that a loaded machine fetching one partition late does
# not make it idle (and its records late) before its first fetch.
window_yaml "$T/a.yaml" wm_a "{max_delay: 0s, idle_timeout: 3s}"
feed wm_a
sluice_bg a "$T/a.yaml"
ok "idle_timeout: [0,10) and [10,20) fire while partition 3 gets nothing" \
    wait_for $TIMEOUT has_rows "$T/wm_a.rows" "$W0" "$W1"
ok "idle_timeout: ... and while sluice is still running (no end of input)" kill -0 $PID
is "$(rows_of "$T/wm_a.rows" "$W0")" "$WANT0" "idle_timeout: [0,10) = 30 records, sum 30135, once"
is "$(rows_of "$T/wm_a.rows" "$W1")" "$WANT1" "idle_timeout: [10,20) = 30 records, sum 30435, once"
stop_feed
stop_run $PID "idle_timeout"
is "$(lines_in "$T/wm_a.late")" 0 "idle_timeout: nothing late"
ok "idle_timeout: the records came from partitions 0-2 only" \
    test "$(jq -r .p "$T/wm_a.seen" | sort -u | tr '\n' ' ')" = "0 1 2 "

# ---- b. without idle_timeout the idle partition holds the watermark -----------------
window_yaml "$T/b.yaml" wm_b "{max_delay: 0s}"
feed wm_b
sluice_bg b "$T/b.yaml"
ok "no idle_timeout: partitions 0-2 read 25 s of event time ahead" wait_for $TIMEOUT seen_ticks "$T/wm_b.seen" 25
sleep 2
is "$(lines_in "$T/wm_b.rows")" 0 "no idle_timeout: no window fires while partition 3 has nothing"
echo "{\"ts\":$((BASE + 1000000)),\"p\":3,\"v\":0}" | kcat -b "$BOOT" -P -t wm_b -p 3
ok "no idle_timeout: a record on partition 3 releases [0,10) and [10,20)" \
    wait_for $TIMEOUT has_rows "$T/wm_b.rows" "$W0" "$W1"
is "$(rows_of "$T/wm_b.rows" "$W0")" "$WANT0" "no idle_timeout: [0,10) correct"
is "$(rows_of "$T/wm_b.rows" "$W1")" "$WANT1" "no idle_timeout: [10,20) correct"
far=$(iso $((BASE + 1000000)))
is "$(rows_of "$T/wm_b.rows" "$far")" "" "no idle_timeout: the far-ahead window stays open (min over partitions)"
stop_feed
stop_run $PID "no idle_timeout"
is "$(lines_in "$T/wm_b.late")" 0 "no idle_timeout: nothing late"

# ---- c. the Kafka timestamp as event time ---------------------------------------------
# The topic is written by sluice itself (generate -> kafka sink), because
# its sink stamps each message with the record's event time: 20000 records
# 1 ms apart, keys 1..1000 over the 4 partitions. kcat checks the stamps.
cat >"$T/c-produce.yaml" <<EOF
pipeline: wm-c-produce
sources:
  gen:
    type: generate
    count: 20000
    seed: 3
    fields:
      ts: seq($BASE)
      k: int(1, 1000)
    event_time: {field: ts, format: epoch_ms}
sinks:
  out: {type: kafka, input: gen, brokers: $BOOT, topic: wm_c, key: k}
EOF
status_is 0 "kafka timestamp: generate -> kafka writes 20000 records and ends" \
    timeout 120 "$SLUICE" run --quiet "$T/c-produce.yaml"
kconsume wm_c '%p %T %s\n' >"$T/wm_c.msgs"
is "$(lines_in "$T/wm_c.msgs")" 20000 "kafka timestamp: wm_c holds 20000 messages"
is "$(cut -d' ' -f1 "$T/wm_c.msgs" | sort -u | tr '\n' ' ')" "0 1 2 3 " "kafka timestamp: on all 4 partitions"
is "$(jq -r '.ts' <(cut -d' ' -f3- "$T/wm_c.msgs") | paste -d' ' <(cut -d' ' -f2 "$T/wm_c.msgs") - |
      awk '$1 != $2' | wc -l)" 0 \
    "kafka timestamp: the sink stamped each message with its event time (kcat %T = ts)"

cat >"$T/c.yaml" <<EOF
pipeline: wm-c
sources:
  in:
    type: kafka
    brokers: $BOOT
    topic: wm_c
    watermark: {max_delay: 0s}
operators:
  win:
    type: window
    input: in
    size: 1s
    late: late_out
    aggregate: {n: count()}
sinks:
  rows: {type: file, input: win, path: $T/wm_c.rows}
  late: {type: file, input: late_out, path: $T/wm_c.late}
EOF
sluice_bg c "$T/c.yaml"
# Every partition has read to about 20 s: [0,1) ... [18,19) must fire.
ok "kafka timestamp: 1 s windows fire while sluice runs (19 or more)" \
    wait_for $TIMEOUT eval '[ "$(lines_in "$T/wm_c.rows")" -ge 19 ]'
stop_run $PID "kafka timestamp"
awk '{ c[int($2 / 1000)]++ } END { for (s in c) print s, c[s] }' "$T/wm_c.msgs" | sort -n >"$T/wm_c.want"
jq -r '"\(.window_start | sub("\\.[0-9]+Z$"; "Z") | fromdate) \(.n)"' "$T/wm_c.rows" | sort -n >"$T/wm_c.got"
bad=$(join "$T/wm_c.got" "$T/wm_c.want" | awk '$2 != $3' | wc -l)
missing=$(join -v 1 "$T/wm_c.got" "$T/wm_c.want" | wc -l)
is "$bad/$missing" "0/0" "kafka timestamp: each row = kcat's count of messages stamped in its second" ||
    { diag "rows (second count):"; diag "$(cat "$T/wm_c.got")"; diag "kcat:"; diag "$(cat "$T/wm_c.want")"; }
is "$(head -n 1 "$T/wm_c.got" | cut -d' ' -f1)" "$((BASE / 1000))" "kafka timestamp: the first row is the first second"
ok "kafka timestamp: rows for consecutive seconds, each once" \
    awk 'NR > 1 && $1 != prev + 1 { exit 1 } { prev = $1 }' "$T/wm_c.got"
is "$(lines_in "$T/wm_c.late")" 0 "kafka timestamp: nothing late"

mock_stop
done_testing
