#!/usr/bin/env bash
# failure_isolation.sh — every stage's failure is isolated (issue 8), each
# case checking that no record is lost: count in = count out + count in
# errors, read from the output files (ids are generate's seq(), so every
# record is accounted for by its id, not just counted).
#
#   a. an operator (faulty.so, tests/plugins/faulty.c) returning ERROR
#      mid-run: exit status 1 (not a signal, no sanitizer report), the
#      message names the stage; with checkpoints and the exactly-once file
#      sink, a second run with the fault off resumes from the last checkpoint
#      and the output holds every record exactly once. Without checkpoints an
#      unbounded run whose operator starts failing ends with status 1 too. A
#      sink returning ERROR (faulty sink, fail_at) is resumed the same way.
#   b. a Lua operator whose process() raises an error on some records and
#      loops forever on others (stopped by max_instructions): those records
#      reach the stage's `errors:` output with the reason, the rest reach the
#      sink, exit 0, in = out + errors exactly; without `errors:` the run's
#      summary counts them as rejected.
#   c. a sink that is down (faulty.so's sink returns RETRY while a file
#      exists): the core retries the same batch; with checkpoint.timeout 1s
#      checkpoints fail during the outage (log, /metrics, events_log) and none
#      completes while data is stuck; nothing is written while down; when the
#      peer is back every record arrives once, a checkpoint completes, exit 0.
#      A kill -9 during the outage and a restart give every record once: no
#      checkpoint acknowledged data the sink had not written.
#   d. the socket sink toward a peer that is down at start and listens a few
#      seconds later: every record arrives (the sink promises at least once;
#      exactly once when it never had to reconnect); a peer that never comes
#      up fails the run (exit 1, the address named) after connect_timeout.
#
# A Kafka sink whose brokers are unreachable is kafka_brokers.sh's case c.
# Waits poll with a timeout (wait_for); runs that hang are killed after
# RUN_TIMEOUT and reported.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
require_cmd python3 || done_testing
require_cmd curl || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"
require_plugin faulty

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"   # runs may leave .sluice/ behind
TIMEOUT=30        # seconds one wait for a condition may take
RUN_TIMEOUT=120   # seconds one whole run may take
if sanitized_build; then
    TIMEOUT=90
    RUN_TIMEOUT=300
fi

# ---- helpers -------------------------------------------------------------------------

# ids FILE [JQ_FILTER]: the `id` of each record, sorted numerically, one a line.
ids() { jq -r "${2:-.} | .id" "$1" | sort -n; }
# want_ids N FILE: 0 .. N-1 into FILE.
want_ids() { seq 0 $(($1 - 1)) >"$2"; }
has_lines() { [ "$(lines_in "$1")" -ge "$2" ]; }
log_has() { grep -Eq -- "$2" "$1"; }
# Checkpoint events of an events_log: the epochs of EVENT, one a line.
epochs_of() { [ -f "$1" ] && jq -r "select(.event == \"$2\") | .epoch" "$1"; }
event_count() { epochs_of "$1" "$2" | wc -l; }
has_event() { [ "$(event_count "$1" "$2")" -ge "${3:-1}" ]; }
# newest_epoch EVENTS: the highest epoch any event names so far.
newest_epoch() { jq -r 'select(.epoch) | .epoch' "$1" | sort -n | tail -n 1; }
# failed_after EVENTS S N: at least N checkpoints numbered above S failed.
failed_after() { [ "$(epochs_of "$1" checkpoint_failed | awk -v s="$2" '$1 > s' | wc -l)" -ge "$3" ]; }
# The line "run ended after ...: N records read, M written by sinks, K rejected".
summary() { grep -Eo '[0-9]+ records read, [0-9]+ written by sinks, [0-9]+ rejected' "$1"; }
# No AddressSanitizer, LeakSanitizer or UBSan report in a log.
no_sanitizer_report() {
    unlike "$(cat "$1")" 'AddressSanitizer|LeakSanitizer|runtime error:|SUMMARY: .*Sanitizer' "$2"
}
# metric_value URL NAME_AND_LABELS: the value of one series on /metrics.
metric_value() {
    curl -fsS --max-time 5 "$1" 2>/dev/null | awk -v s="$2" 'index($0, s " ") == 1 { print $2 }'
}
metric_at_least() { local v; v=$(metric_value "$1" "$2"); [ -n "$v" ] && awk -v v="$v" -v m="$3" 'BEGIN { exit !(v >= m) }'; }

# ---- a. an operator that returns ERROR mid-run -------------------------------------------
# 2000 records at 500/s through `boom` (faulty operator) into the file sink;
# run 1 fails at record 1000 (~2 s in, after several checkpoints), run 2
# has the fault off and resumes.
N_A=2000
cat >"$T/a.yaml" <<EOF
pipeline: fi_operator
checkpoint: {dir: $T/chk-a, interval: 200ms, retain: 10}
metrics: {listen: false}
events_log: $T/a.events
sources:
  gen:
    type: generate
    rate: 500
    count: $N_A
    seed: 1
    fields: {id: seq()}
operators:
  boom:
    type: faulty
    input: gen
    fail_at: \${FAIL_AT}
sinks:
  out: {type: file, input: boom, path: $T/a.out}
EOF
FAIL_AT=1000 timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/a.yaml" >"$T/a1.log" 2>&1
st=$?
is "$st" 1 "operator ERROR: the run exits with status 1 (not a signal, not a hang)" ||
    diag "$(tail -c 3000 "$T/a1.log")"
like "$(cat "$T/a1.log")" 'ERROR .*\[boom\].*injected failure at record 1000' \
    "operator ERROR: the error message names the stage and says why"
no_sanitizer_report "$T/a1.log" "operator ERROR: no sanitizer report"
ok "operator ERROR: checkpoints completed before the failure" has_event "$T/a.events" checkpoint_completed
last_a=$(ids "$T/a.out" | tail -n 1)
ok "operator ERROR: nothing at or after the failing record reached the sink (last id ${last_a:-none})" \
    test "${last_a:-0}" -lt 999
diag "run 1 wrote $(lines_in "$T/a.out") records before stopping"

FAIL_AT=0 timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/a.yaml" >"$T/a2.log" 2>&1
st=$?
is "$st" 0 "operator ERROR: the second run, fault off, exits 0" || diag "$(tail -c 3000 "$T/a2.log")"
like "$(cat "$T/a2.log")" 'restored checkpoint [0-9]+' "operator ERROR: the second run restores the last checkpoint"
read_a2=$(summary "$T/a2.log" | awk '{ print $1 }')
ok "operator ERROR: the second run resumes instead of starting over (read ${read_a2:-?} of $N_A)" \
    test "${read_a2:-0}" -gt 0 -a "${read_a2:-$N_A}" -lt $N_A
want_ids $N_A "$T/a.want"
ids "$T/a.out" >"$T/a.got"
same_lines "operator ERROR: after the resume the output holds every input record exactly once" \
    "$T/a.got" "$T/a.want"
no_sanitizer_report "$T/a2.log" "operator ERROR: no sanitizer report in the second run"

# Without checkpoints, an unbounded run whose operator starts failing (a
# file appears: fail_while) ends by itself with status 1.
cat >"$T/a3.yaml" <<EOF
pipeline: fi_operator_unbounded
metrics: {listen: false}
sources:
  gen: {type: generate, rate: 500, fields: {id: seq()}}
operators:
  tripwire: {type: faulty, input: gen, fail_while: $T/a3.fail}
sinks:
  out: {type: file, input: tripwire, path: $T/a3.out}
EOF
"$SLUICE" run "$T/a3.yaml" >"$T/a3.log" 2>&1 &
pid=$!
ok "operator ERROR (unbounded): records flow before the fault" wait_for $TIMEOUT has_lines "$T/a3.out" 100
touch "$T/a3.fail"
wait_exit $pid
st=$?
is "$st" 1 "operator ERROR (unbounded): the run ends by itself with status 1" ||
    diag "$(tail -c 3000 "$T/a3.log")"
like "$(cat "$T/a3.log")" "ERROR .*\\[tripwire\\].*a3\\.fail' exists" \
    "operator ERROR (unbounded): the message names the stage and the cause"
no_sanitizer_report "$T/a3.log" "operator ERROR (unbounded): no sanitizer report"
ids "$T/a3.out" >"$T/a3.got"
n_a3=$(lines_in "$T/a3.got")
want_ids "$n_a3" "$T/a3.want"
same_lines "operator ERROR (unbounded): what reached the sink is a gapless prefix 0..$((n_a3 - 1)), each once" \
    "$T/a3.got" "$T/a3.want"

# A sink returning ERROR mid-run (faulty sink, fail_at): the same, on the
# sink side: exit 1 naming the stage, then a resume with every record once.
cat >"$T/a4.yaml" <<EOF
pipeline: fi_sink_error
checkpoint: {dir: $T/chk-a4, interval: 200ms, retain: 10}
metrics: {listen: false}
sources:
  gen: {type: generate, rate: 500, count: $N_A, seed: 2, fields: {id: seq()}}
sinks:
  shaky:
    type: faulty
    input: gen
    path: $T/a4.out
    fail_at: \${FAIL_AT}
EOF
FAIL_AT=1000 timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/a4.yaml" >"$T/a4.1.log" 2>&1
st=$?
is "$st" 1 "sink ERROR: the run exits with status 1" || diag "$(tail -c 3000 "$T/a4.1.log")"
like "$(cat "$T/a4.1.log")" 'ERROR .*\[shaky\] write failed: .*injected failure at record 1000' \
    "sink ERROR: the error message names the stage and says why"
no_sanitizer_report "$T/a4.1.log" "sink ERROR: no sanitizer report"
FAIL_AT=0 timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/a4.yaml" >"$T/a4.2.log" 2>&1
st=$?
is "$st" 0 "sink ERROR: the second run, fault off, exits 0" || diag "$(tail -c 3000 "$T/a4.2.log")"
like "$(cat "$T/a4.2.log")" 'restored checkpoint [0-9]+' "sink ERROR: the second run restores the last checkpoint"
ids "$T/a4.out" >"$T/a4.got"
same_lines "sink ERROR: after the resume the output holds every input record exactly once" \
    "$T/a4.got" "$T/a.want"

# ---- b. a Lua operator that errors or loops ----------------------------------------------
# Records with id % 7 == 3 emit themselves and then raise an error (the
# emit must not escape: a failed call commits nothing); id % 50 == 17 loops
# forever, stopped by the instruction budget. Batches of 64, so failing
# records sit in the middle of batches whose other records go on.
N_B=2000
cat >"$T/b.lua" <<'EOF'
function process(r, emit)
  if r.id % 7 == 3 then
    emit(r)
    error("boom on " .. r.id)
  end
  if r.id % 50 == 17 then
    while true do end
  end
  r.ok = true
  return r
end
EOF
b_yaml() {   # NAME ERRORS_LINE SINK_LINES
    cat >"$T/$1.yaml" <<EOF
pipeline: fi_$1
metrics: {listen: false}
sources:
  gen:
    type: generate
    count: $N_B
    batch_size: 64
    fields: {id: seq()}
operators:
  script:
    type: lua
    input: gen
    script: $T/b.lua
    max_instructions: 100000
$2
sinks:
  out: {type: file, input: script, path: $T/$1.out}
$3
EOF
}
b_yaml b "    errors: script_errors" "  errs: {type: file, input: script_errors, path: $T/b.errors}"
timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/b.yaml" >"$T/b.log" 2>&1
st=$?
is "$st" 0 "lua errors: the run exits 0 (no hang on the endless loops)" || diag "$(tail -c 3000 "$T/b.log")"
no_sanitizer_report "$T/b.log" "lua errors: no sanitizer report"
seq 0 $((N_B - 1)) | awk '$1 % 7 == 3 || $1 % 50 == 17' >"$T/b.want_errors"
seq 0 $((N_B - 1)) | awk '!($1 % 7 == 3 || $1 % 50 == 17)' >"$T/b.want_out"
seq 0 $((N_B - 1)) | awk '$1 % 7 == 3' >"$T/b.want_raised"
seq 0 $((N_B - 1)) | awk '$1 % 50 == 17 && $1 % 7 != 3' >"$T/b.want_looped"
want_ids $N_B "$T/b.want"
{ ids "$T/b.out"; ids "$T/b.errors"; } >"$T/b.got"
same_lines "lua errors: in = out + errors: each of the $N_B records once, in the sink or in errors" \
    "$T/b.got" "$T/b.want"
ids "$T/b.errors" >"$T/b.got_errors"
same_lines "lua errors: exactly the failing records are in errors ($(lines_in "$T/b.want_errors"))" \
    "$T/b.got_errors" "$T/b.want_errors"
ids "$T/b.out" >"$T/b.got_out"
same_lines "lua errors: exactly the other records reached the sink (an emit before an error did not escape)" \
    "$T/b.got_out" "$T/b.want_out"
ids "$T/b.errors" 'select(.error | test("^lua_error: .*b\\.lua:4: boom on [0-9]+$"))' >"$T/b.got_raised"
same_lines "lua errors: raised errors carry the reason lua_error and script:line with the message" \
    "$T/b.got_raised" "$T/b.want_raised"
ids "$T/b.errors" 'select(.error | test("^lua_error: .*b\\.lua:7: instruction budget exceeded"))' >"$T/b.got_looped"
same_lines "lua errors: endless loops carry 'instruction budget exceeded' at their line" \
    "$T/b.got_looped" "$T/b.want_looped"
is "$(jq -r .stage "$T/b.errors" | sort -u)" "script" "lua errors: every error record names its stage"
is "$(jq -r .ok "$T/b.out" | sort -u)" "true" "lua errors: records in the sink went through process()"

# Without `errors:` the failing records are counted and dropped.
b_yaml b2 "" ""
timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/b2.yaml" >"$T/b2.log" 2>&1
st=$?
is "$st" 0 "lua errors, no errors output: the run exits 0" || diag "$(tail -c 3000 "$T/b2.log")"
n_err=$(lines_in "$T/b.want_errors")
is "$(summary "$T/b2.log")" "$N_B records read, $((N_B - n_err)) written by sinks, $n_err rejected" \
    "lua errors, no errors output: read = written + rejected ($N_B = $((N_B - n_err)) + $n_err)"
is "$(lines_in "$T/b2.out")" "$((N_B - n_err))" "lua errors, no errors output: the sink holds the others"
like "$(cat "$T/b2.log")" 'WARN .*\[script\] dropped a record: lua_error' \
    "lua errors, no errors output: a (rate-limited) warning says records are dropped"

# ---- c. a sink that is down -----------------------------------------------------------------
# 2500 records at 500/s into the faulty sink, checkpoints every 200 ms that
# fail after 1 s. The outage starts once records and a checkpoint went
# through: `down` is created, the sink answers RETRY until it is removed.
N_C=2500
c_yaml() {   # NAME METRICS_PORT
    cat >"$T/$1.yaml" <<EOF
pipeline: fi_$1
checkpoint: {dir: $T/chk-$1, interval: 200ms, timeout: 1s, retain: 50}
metrics: {listen: "127.0.0.1:$2"}
events_log: $T/$1.events
sources:
  gen:
    type: generate
    rate: 500
    count: $N_C
    seed: 3
    fields: {id: seq()}
sinks:
  out: {type: faulty, input: gen, path: $T/$1.out, down_while: $T/$1.down}
EOF
}
PORT_C=$(free_port)
METRICS_C=http://127.0.0.1:$PORT_C/metrics
c_yaml c "$PORT_C"
"$SLUICE" run "$T/c.yaml" >"$T/c.log" 2>&1 &
pid=$!
ok "sink down: records and a checkpoint go through before the outage" \
    wait_for $TIMEOUT eval 'has_lines "$T/c.out" 200 && has_event "$T/c.events" checkpoint_completed'
touch "$T/c.down"
ok "sink down: the sink reports the peer down" wait_for $TIMEOUT log_has "$T/c.log" '\[out\] peer down'
# Epochs up to S may have passed the sink before the batch it is stuck on;
# any later one has its barrier behind that batch and cannot complete.
S=$(newest_epoch "$T/c.events")
ok "sink down: a checkpoint started during the outage fails (timeout: 1s): events_log checkpoint_failed" \
    wait_for $TIMEOUT failed_after "$T/c.events" "${S:-0}" 1
like "$(cat "$T/c.log")" 'checkpoint [0-9]+ failed' "sink down: the failed checkpoint is logged"
ok "sink down: /metrics counts it: sluice_checkpoints_total{outcome=\"failed\"} >= 1" \
    wait_for $TIMEOUT metric_at_least "$METRICS_C" 'sluice_checkpoints_total{pipeline="fi_c",outcome="failed"}' 1
lines_down=$(lines_in "$T/c.out")
ok "sink down: a second checkpoint fails while the peer stays down" \
    wait_for $TIMEOUT failed_after "$T/c.events" "${S:-0}" 2
is "$(lines_in "$T/c.out")" "$lines_down" "sink down: nothing is written while the peer is down"
ok "sink down: sluice keeps running through the outage" kill -0 $pid
cp "$T/c.events" "$T/c.events.during"
completed_during=$(epochs_of "$T/c.events.during" checkpoint_completed |
    awk -v s="${S:-0}" '$1 > s' | tr '\n' ' ')
is "$completed_during" "" \
    "sink down: no checkpoint started during the outage completes (none acknowledges unwritten data)"
rm -f "$T/c.down"
ok "sink down: the sink writes again when the peer is back" wait_for $TIMEOUT log_has "$T/c.log" '\[out\] peer back'
wait_exit $pid
st=$?
is "$st" 0 "sink down: after recovery the run ends by itself with status 0" || diag "$(tail -c 3000 "$T/c.log")"
no_sanitizer_report "$T/c.log" "sink down: no sanitizer report"
last_failed=$(epochs_of "$T/c.events" checkpoint_failed | tail -n 1)
completed_after=$(epochs_of "$T/c.events" checkpoint_completed | awk -v f="${last_failed:-0}" '$1 > f' | wc -l)
ok "sink down: checkpoints complete again after the outage ($completed_after after epoch ${last_failed:-?})" \
    test "$completed_after" -ge 1
want_ids $N_C "$T/c.want"
ids "$T/c.out" >"$T/c.got"
same_lines "sink down: in = out: every record arrives exactly once" "$T/c.got" "$T/c.want"
is "$(summary "$T/c.log")" "$N_C records read, $N_C written by sinks, 0 rejected" \
    "sink down: the run's summary: read = written"

# A kill -9 during the outage, then a restart with the peer back: the
# restored checkpoint covers only what the sink had written, so every
# record arrives once (the faulty sink is exactly-once, like the file sink).
PORT_C2=$(free_port)
c_yaml c2 "$PORT_C2"
"$SLUICE" run "$T/c2.yaml" >"$T/c2.1.log" 2>&1 &
pid=$!
ok "sink down, kill -9: records and a checkpoint go through first" \
    wait_for $TIMEOUT eval 'has_lines "$T/c2.out" 200 && has_event "$T/c2.events" checkpoint_completed'
touch "$T/c2.down"
ok "sink down, kill -9: the sink reports the peer down" wait_for $TIMEOUT log_has "$T/c2.1.log" '\[out\] peer down'
S=$(newest_epoch "$T/c2.events")
ok "sink down, kill -9: a checkpoint fails during the outage" \
    wait_for $TIMEOUT failed_after "$T/c2.events" "${S:-0}" 1
{ kill -9 $pid; wait $pid; } 2>/dev/null   # no "Killed" notice in the log
rm -f "$T/c2.down"
timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/c2.yaml" >"$T/c2.2.log" 2>&1
st=$?
is "$st" 0 "sink down, kill -9: the restart with the peer back exits 0" || diag "$(tail -c 3000 "$T/c2.2.log")"
like "$(cat "$T/c2.2.log")" 'restored checkpoint [0-9]+' "sink down, kill -9: the restart restores a checkpoint"
ids "$T/c2.out" >"$T/c2.got"
same_lines "sink down, kill -9: every record exactly once after the restart" "$T/c2.got" "$T/c.want"

# A graceful stop during the outage cannot take its final checkpoint: the
# run gives up when that checkpoint times out and says so with status 1
# (exit 0 would claim a clean stop), rather than wait for the peer for ever.
PORT_C3=$(free_port)
c_yaml c3 "$PORT_C3"
"$SLUICE" run "$T/c3.yaml" >"$T/c3.log" 2>&1 &
pid=$!
wait_for $TIMEOUT has_lines "$T/c3.out" 200
touch "$T/c3.down"
wait_for $TIMEOUT log_has "$T/c3.log" '\[out\] peer down'
kill -TERM $pid
t0=${EPOCHREALTIME/./}
RUN_TIMEOUT=60 wait_exit $pid
st=$?
took=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
is "$st" 1 "sink down, SIGTERM: exit 1 once the final checkpoint times out" ||
    diag "$(tail -c 3000 "$T/c3.log")"
ok "sink down, SIGTERM: ends within 30 s ($took ms; checkpoint timeout 1s)" test "$took" -lt 30000
like "$(cat "$T/c3.log")" "the final checkpoint \([0-9]+\) failed" \
    "sink down, SIGTERM: the log says the final checkpoint failed"
rm -f "$T/c3.down"
no_sanitizer_report "$T/c3.log" "sink down, SIGTERM: no sanitizer report"

# ---- d. the socket sink toward a peer that is down at start ----------------------------------
# The listener appends everything each connection sends to a file (flushed
# per read), so records are accounted for whatever the connections were.
cat >"$T/listener.py" <<'PY'
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(8)
with open(sys.argv[2], "ab") as out:
    while True:
        conn, _ = srv.accept()
        while True:
            data = conn.recv(65536)
            if not data:
                break
            out.write(data)
            out.flush()
        conn.close()
PY
N_D=5000
PORT_D=$(free_port)
cat >"$T/d.yaml" <<EOF
pipeline: fi_socket
metrics: {listen: false}
sources:
  gen: {type: generate, count: $N_D, fields: {id: seq()}}
sinks:
  out: {type: socket, input: gen, connect: "127.0.0.1:$PORT_D", connect_timeout: 60s}
EOF
"$SLUICE" run "$T/d.yaml" >"$T/d.log" 2>&1 &
pid=$!
ok "socket peer down at start: the sink warns that it cannot connect, naming the address" \
    wait_for $TIMEOUT log_has "$T/d.log" "WARN .*\\[out\\] cannot connect to 127\\.0\\.0\\.1:$PORT_D"
sleep 2   # the peer comes up "a few seconds later"
ok "socket peer down at start: sluice waits for the peer" kill -0 $pid
python3 "$T/listener.py" "$PORT_D" "$T/d.out" &
lpid=$!
wait_exit $pid
st=$?
is "$st" 0 "socket peer down at start: once the peer listens the run ends with status 0" ||
    diag "$(tail -c 3000 "$T/d.log")"
like "$(cat "$T/d.log")" 'connected to 127\.0\.0\.1:[0-9]+ after [0-9]+ failed attempt' \
    "socket peer down at start: the sink says it connected after failed attempts"
ok "socket peer down at start: the listener received the records" wait_for $TIMEOUT has_lines "$T/d.out" $N_D
kill $lpid 2>/dev/null
wait $lpid 2>/dev/null
want_ids $N_D "$T/d.want"
ids "$T/d.out" | uniq >"$T/d.got_distinct"
same_lines "socket peer down at start: every record arrives (at least once, as the sink promises)" \
    "$T/d.got_distinct" "$T/d.want"
if grep -q 'reconnecting' "$T/d.log"; then
    diag "the sink reconnected, so repeats are allowed: $(lines_in "$T/d.out") lines for $N_D records"
else
    is "$(lines_in "$T/d.out")" "$N_D" "socket peer down at start: one connection, so each record exactly once"
fi
no_sanitizer_report "$T/d.log" "socket peer down at start: no sanitizer report"

# A peer that never comes up: the run fails after connect_timeout rather
# than dropping the records.
PORT_D2=$(free_port)
sed -e "s/127\\.0\\.0\\.1:$PORT_D/127.0.0.1:$PORT_D2/" -e 's/connect_timeout: 60s/connect_timeout: 2s/' \
    -e 's/fi_socket/fi_socket_never/' "$T/d.yaml" >"$T/d2.yaml"
t0=${EPOCHREALTIME/./}
timeout -s KILL "$RUN_TIMEOUT" "$SLUICE" run "$T/d2.yaml" >"$T/d2.log" 2>&1
st=$?
took=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
is "$st" 1 "socket peer never up: exit 1" || diag "$(tail -c 3000 "$T/d2.log")"
ok "socket peer never up: within 30 s ($took ms; connect_timeout 2s)" test "$took" -lt 30000
like "$(cat "$T/d2.log")" "ERROR .*\\[out\\].*127\\.0\\.0\\.1:$PORT_D2.*connect_timeout" \
    "socket peer never up: the error names the stage, the address and connect_timeout"
no_sanitizer_report "$T/d2.log" "socket peer never up: no sanitizer report"

# SIGTERM while the sink still waits for its peer at start: the wait is
# cut short (not connect_timeout later).
PORT_D3=$(free_port)
sed -e "s/127\\.0\\.0\\.1:$PORT_D/127.0.0.1:$PORT_D3/" -e 's/fi_socket/fi_socket_term/' \
    "$T/d.yaml" >"$T/d3.yaml"
"$SLUICE" run "$T/d3.yaml" >"$T/d3.log" 2>&1 &
pid=$!
wait_for $TIMEOUT log_has "$T/d3.log" 'cannot connect'
kill -TERM $pid
t0=${EPOCHREALTIME/./}
RUN_TIMEOUT=60 wait_exit $pid
st=$?
took=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
ok "SIGTERM while connecting at start: ends within 10 s ($took ms; connect_timeout 60s)" \
    test "$took" -lt 10000
is "$st" 1 "SIGTERM while connecting at start: exit 1 (it never ran)"
like "$(cat "$T/d3.log")" "SIGTERM while starting" "SIGTERM while connecting at start: logged"
no_sanitizer_report "$T/d3.log" "SIGTERM while connecting at start: no sanitizer report"

done_testing
