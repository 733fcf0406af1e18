#!/usr/bin/env bash
# memory_limit.sh — with a sink that stalls, memory stays bounded by
# `memory_limit`: the file source stops reading, the generator stops
# generating, the Kafka source pauses its partitions (and so stays in its
# group however long the stall), RSS stays under the limit; when the sink
# moves again every record arrives.
#
# The stalled sink is a console sink writing into a FIFO that is open but
# not read (the pipe fills, the write blocks); "release" starts a reader.
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/kafka_lib.sh"

kafka_require
T=$(tmpdir)

# AddressSanitizer's shadow memory and quarantine add to RSS whatever the
# pipeline holds: a sanitizer build gets a looser bound that still fails if
# memory grows with the input, and fewer generated records (it is ~5x slower).
LIMIT_MIB=64
RSS_BOUND_KIB=$((LIMIT_MIB * 1024))
GEN_RECORDS=20000000
if sanitized_build; then
    RSS_BOUND_KIB=$((320 * 1024))
    GEN_RECORDS=4000000
    diag "sanitizer build: RSS bound $((RSS_BOUND_KIB / 1024)) MiB, $GEN_RECORDS generated records"
fi

# ---- the configuration ------------------------------------------------------

cat >"$T/bad.yaml" <<'YAML'
pipeline: bad
memory_limit: lots
sources:
  g: {type: generate, count: 1}
sinks:
  o: {type: console, input: g}
YAML
"$SLUICE" validate "$T/bad.yaml" >"$T/bad.out" 2>&1
is "$?" 2 "memory_limit: lots is a configuration error (exit 2)"
like "$(cat "$T/bad.out")" "bad.yaml:2:15: memory_limit expects a size" "... reported at its line and column"
sed -i 's/^memory_limit: .*/memory_limit: 1MiB/' "$T/bad.yaml"
"$SLUICE" validate "$T/bad.yaml" >"$T/bad.out" 2>&1
is "$?" 2 "memory_limit below 4MiB is refused (exit 2)"
sed -i 's/^memory_limit: .*/memory_limit: 0/' "$T/bad.yaml"
ok "memory_limit: 0 (no limit) is accepted" "$SLUICE" validate "$T/bad.yaml"

# ---- helpers ------------------------------------------------------------------

# start_stalled NAME YAML: `sluice run` whose stdout is a FIFO nobody reads
# yet; sets PID and STALL_FD (the shell's own never-reading end, which no
# child may inherit: an open write end keeps the reader from seeing EOF).
start_stalled() {
    local name=$1 yaml=$2
    rm -f "$T/$name.fifo"
    mkfifo "$T/$name.fifo"
    exec {STALL_FD}<>"$T/$name.fifo"     # a reader that never reads
    "$SLUICE" run "$yaml" >"$T/$name.fifo" 2>"$T/$name.log" {STALL_FD}<&- &
    PID=$!
    # Peak RSS (the kernel's VmHWM), read until the process is gone.
    (
        while hwm=$(awk '/^VmHWM:/{ print $2 }' "/proc/$PID/status" 2>/dev/null) &&
            [ -n "$hwm" ]; do
            echo "$hwm" >"$T/$name.rss"
            sleep 0.2
        done
    ) {STALL_FD}<&- &
}

# release NAME: read the FIFO to its end, counting lines into NAME.count
# (and keeping them in NAME.out when asked with KEEP=1).
release() {
    local name=$1
    if [ "${KEEP:-0}" = 1 ]; then
        cat <"$T/$name.fifo" >"$T/$name.out" {STALL_FD}<&- &
    else
        wc -l <"$T/$name.fifo" >"$T/$name.count" {STALL_FD}<&- &
    fi
    READER=$!
    sleep 0.2                            # the reader has the FIFO open
    exec {STALL_FD}<&-
}

scrape() { curl -sf "http://127.0.0.1:$1/metrics" >"$2"; }
paused_now() {
    scrape "$1" "$T/scrape" && [ "$(metric "$T/scrape" sluice_source_paused "stage=\"$2\"")" = 1 ]
}

# ---- the file source stops reading ---------------------------------------------

# 30k records of ~4 KiB: 120 MB, four times the limit's share for records
# in flight. They pile up nowhere: the source stops reading.
python3 - "$T/big.jsonl" <<'PY'
import sys
pad = 'y' * 4000
with open(sys.argv[1], 'w') as f:
    for i in range(30000):
        f.write('{"seq":%d,"pad":"%s"}\n' % (i, pad))
PY
port=$(free_port)
cat >"$T/file.yaml" <<YAML
pipeline: big-records
memory_limit: ${LIMIT_MIB}MiB
metrics: {listen: 127.0.0.1:$port}
sources:
  f: {type: file, path: $T/big.jsonl, format: json}
operators:
  m:
    type: map
    input: f
    set: {twice: "seq * 2"}
sinks:
  out: {type: console, input: m, format: json}
YAML
start_stalled file "$T/file.yaml"
# Stopped: paused by memory_limit, or blocked on a full queue, whichever
# came first; either way the count of records read stands still.
read_count() { scrape "$port" "$T/scrape" && metric "$T/scrape" sluice_records_out_total 'stage="f"'; }
stands_still() {
    local a b
    a=$(read_count) && sleep 1 && b=$(read_count) && [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" -gt 0 ]
}
ok "file source: stops reading while the sink is stalled" wait_for 60 stands_still
sleep 2                                  # stalled a while longer: nothing moves
scrape "$port" "$T/scrape"
read_so_far=$(metric "$T/scrape" sluice_records_out_total 'stage="f"')
in_flight=$(metric "$T/scrape" sluice_memory_in_flight_bytes 'pipeline="big-records"')
diag "stalled: the source read $read_so_far of 30000 records; $in_flight bytes in flight;" \
     "paused: $(metric "$T/scrape" sluice_source_paused 'stage="f"')"
_tap_result $(( read_so_far >= 30000 / 4 )) "file source: stopped reading early (read $read_so_far of 30000)"
# Batches are counted by the arena chunks they allocated (more than they
# use); even so they stay within the limit (unbounded, 120 MB would be read).
_tap_result $(( in_flight > LIMIT_MIB * 1024 * 1024 )) \
    "in-flight bytes ($in_flight) stay under memory_limit"
KEEP=1 release file
wait_exit "$PID"
is "$?" 0 "file source: the run ends with status 0 once the sink moves"
wait "$READER"
is "$(lines_in "$T/file.out")" 30000 "file source: all 30000 records arrive"
is "$(jq -r .seq "$T/file.out" | sort -n | uniq | wc -l)" 30000 "... each one once"
rss=$(cat "$T/file.rss")
diag "file source: peak RSS $rss KiB"
_tap_result $(( rss >= RSS_BOUND_KIB )) "file source: peak RSS $rss KiB under $((RSS_BOUND_KIB / 1024)) MiB"

# ---- tens of millions of generated records ---------------------------------------

port=$(free_port)
cat >"$T/gen.yaml" <<YAML
pipeline: many-records
memory_limit: ${LIMIT_MIB}MiB
metrics: {listen: 127.0.0.1:$port}
sources:
  gen:
    type: generate
    count: $GEN_RECORDS
    seed: 7
    fields:
      id: seq()
      status: choice(200, 404, 500)
      rt: float(0, 2)
operators:
  slow_ones:
    type: map
    input: gen
    set: {slow: "rt > 1.5"}
sinks:
  out: {type: console, input: slow_ones, format: json}
YAML
start_stalled gen "$T/gen.yaml"
wait_for 60 eval 'scrape "$port" "$T/scrape" &&
    [ "$(metric "$T/scrape" sluice_backpressure_seconds_total stage=\"gen\")" != 0 ]'
sleep 3                                  # the stall
scrape "$port" "$T/scrape"
made=$(metric "$T/scrape" sluice_records_out_total 'stage="gen"')
_tap_result $(( made >= GEN_RECORDS / 10 )) "generator: held back while stalled ($made of $GEN_RECORDS made)"
release gen
wait_exit "$PID"
is "$?" 0 "generator: the run ends with status 0"
wait "$READER"
is "$(tr -d ' ' <"$T/gen.count")" "$GEN_RECORDS" "generator: all $GEN_RECORDS records arrive"
rss=$(cat "$T/gen.rss")
diag "generator: peak RSS $rss KiB for $GEN_RECORDS records"
_tap_result $(( rss >= RSS_BOUND_KIB )) "generator: peak RSS $rss KiB under $((RSS_BOUND_KIB / 1024)) MiB"

# ---- Kafka: partitions paused, the member stays in its group --------------------

# The mock keeps about 5 MB per partition (older messages are deleted):
# 80k messages of ~450 bytes over 8 partitions stay within that.
mock_start pause --topic big:8
KAFKA_RECORDS=80000
python3 - "$KAFKA_RECORDS" <<'PY' | kproduce big
import sys
pad = 'k' * 400
for i in range(int(sys.argv[1])):
    print('%d:{"seq":%d,"pad":"%s"}' % (i, i, pad))
PY
wait_for 30 kend_is_at_least big "$KAFKA_RECORDS" || bail_out "the records did not all reach topic big"
port=$(free_port)
# max.poll.interval.ms 6 s and a 12 s stall: a consumer that stopped polling
# would be thrown out of its group (and log it); a paused one is not.
cat >"$T/kafka.yaml" <<YAML
pipeline: kafka-paused
memory_limit: 32MiB
metrics: {listen: 127.0.0.1:$port}
sources:
  k:
    type: kafka
    brokers: $BOOT
    topic: big
    group_id: paused-group
    properties: {session.timeout.ms: 6000, heartbeat.interval.ms: 500, max.poll.interval.ms: 6000}
sinks:
  out: {type: console, input: k, format: json}
YAML
start_stalled kafka "$T/kafka.yaml"
if wait_for 60 paused_now "$port" k; then
    pass "kafka source: paused while the sink is stalled"
else
    fail "kafka source: paused while the sink is stalled"
    diag "$(cat "$T/kafka.log")"
fi
sleep 12
scrape "$port" "$T/scrape"
is "$(metric "$T/scrape" sluice_source_paused 'stage="k"')" 1 "kafka source: still paused after 12 s"
revokes=$(metric "$T/scrape" sluice_kafka_rebalances_total 'event="revoke"')
is "${revokes:-0}" 0 "kafka source: no partition revoked during the stall (still in its group)"
unlike "$(cat "$T/kafka.log")" "(poll interval|max.poll|revoked)" "... and nothing logged about leaving it"
read_so_far=$(metric "$T/scrape" sluice_records_out_total 'stage="k"')
_tap_result $(( read_so_far >= KAFKA_RECORDS / 2 )) \
    "kafka source: stopped reading early ($read_so_far of $KAFKA_RECORDS)"
KEEP=1 release kafka
wait_for 120 eval '[ "$(lines_in "$T/kafka.out")" -ge '"$KAFKA_RECORDS"' ]'
stop_run "$PID" "kafka source"
wait "$READER"
is "$(jq -r .seq "$T/kafka.out" | sort -n | uniq | wc -l)" "$KAFKA_RECORDS" \
    "kafka source: every record arrives after the stall"
is "$(lines_in "$T/kafka.out")" "$KAFKA_RECORDS" "... none twice"
rss=$(cat "$T/kafka.rss")
diag "kafka source: peak RSS $rss KiB"
sanitized_build && bound=$RSS_BOUND_KIB || bound=$((48 * 1024))
_tap_result $(( rss >= bound )) "kafka source: peak RSS $rss KiB under $((bound / 1024)) MiB"
mock_stop
done_testing
