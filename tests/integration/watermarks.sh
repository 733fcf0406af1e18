#!/usr/bin/env bash
# watermarks.sh — how the watermark drives the `window` operator on live
# (followed) inputs, against a running `sluice run`:
#   - `emit: every 1s` (update mode): partial rows while a window is open,
#     then its final row when the watermark passes its end, then nothing more;
#   - two sources fanned into one window hold its watermark at their minimum:
#     a window does not close while one input lags, and closes once it catches up;
#   - a glob's idle file is released by `watermark: {idle_timeout: 1s}`: the
#     window closes about a second after that file's last line, not before;
#     without idle_timeout the idle file holds it back.
#
# Every source has `batch_size: 1` so the watermark moves once per record.
# Waits poll the outputs with a timeout (wait_for); the few fixed pauses only
# check that something does NOT happen. Times are seconds into 12:00 on
# 2024-03-15 (`rec S V` writes one record at 12:00:S).
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
TIMEOUT=10
W0=2024-03-15T12:00

rec() { printf '{"ts":"%s:%06.3fZ","v":%s}\n' "$W0" "$1" "$2"; }
has_lines() { [ "$(lines_in "$1")" -ge "$2" ]; }
# rows_of FILE START_SECOND: the rows of the window starting then, as "n/s" words
rows_of() { [ -f "$1" ] && jq -r --arg s "$W0:$(printf %02d "$2").000Z" \
    'select(.window_start == $s) | "\(.n)/\(.s)"' "$1" | tr '\n' ' '; }
has_any_row() { [ -n "$(rows_of "$1" "$2")" ]; }
has_row() { rows_of "$1" "$2" | grep -qw -- "$3"; }
count_rows() { rows_of "$1" "$2" | tr ' ' '\n' | grep -cx -- "$3"; }
counts_grow() { rows_of "$1" "$2" | tr ' ' '\n' | grep . | cut -d/ -f1 | sort -nc; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

stop() {   # PID DESC: SIGTERM, exit status 0
    kill -TERM "$1" 2>/dev/null
    wait "$1"
    local st=$?
    is "$st" 0 "$2: SIGTERM drains, exit 0"
}

# ---- update mode: emit every 1s -------------------------------------------------
# tumbling 10s, max_delay 0. Records at 1 and 2: the watermark is 2 s, far
# from closing [0,10), yet a partial row 2/3 must come within a tick; a
# record at 3 makes it 3/6; one at 15 moves the watermark past 9.999: the
# final row 3/6 follows (so 3/6 appears twice: partial, final); [10,20)
# gets its own partial 1/100; no row for [0,10) after its final one.
: >"$T/upd.jsonl"
cat >"$T/upd.yaml" <<EOF
pipeline: update_mode
sources:
  in:
    type: file
    path: $T/upd.jsonl
    mode: follow
    batch_size: 1
    event_time: {field: ts, format: iso8601}
    watermark: {max_delay: 0s}
operators:
  win:
    type: window
    input: in
    size: 10s
    emit: every 1s
    aggregate: {n: count(), s: sum(v)}
sinks:
  rows: {type: file, input: win, path: $T/upd.rows}
EOF
"$SLUICE" run --quiet "$T/upd.yaml" >"$T/upd.log" 2>&1 &
pid=$!
{ rec 1 1; rec 2 2; } >>"$T/upd.jsonl"
ok "update: a partial row 2/3 while the window is open" wait_for $TIMEOUT has_row "$T/upd.rows" 0 2/3
rec 3 3 >>"$T/upd.jsonl"
ok "update: the next tick brings the changed partial 3/6" wait_for $TIMEOUT has_row "$T/upd.rows" 0 3/6
is "$(count_rows "$T/upd.rows" 0 3/6)" 1 "update: 3/6 once so far (the window is still open)"
sleep 1.5   # two more ticks: an unchanged window is not emitted again
is "$(count_rows "$T/upd.rows" 0 3/6)" 1 "update: an unchanged open window is not re-emitted"
rec 15 100 >>"$T/upd.jsonl"
ok "update: watermark past the end -> the final row 3/6" \
    wait_for $TIMEOUT eval '[ "$(count_rows "$T/upd.rows" 0 3/6)" = 2 ]'
ok "update: the next window's partial 1/100" wait_for $TIMEOUT has_row "$T/upd.rows" 10 1/100
sleep 1.5
is "$(rows_of "$T/upd.rows" 0 | awk '{print $NF}')" 3/6 "update: the final row is the window's last"
is "$(count_rows "$T/upd.rows" 0 3/6)" 2 "update: nothing for [0,10) after its final row"
ok "update: the row counts of [0,10) only grow" counts_grow "$T/upd.rows" 0
stop $pid "update"

# ---- two inputs: the window's watermark is their minimum -------------------------
# A has 1, 2, 15, 27; B (lagging) has 3. Watermark = min(27, 3) = 3: nothing
# may close. B then sends 4 (it must still count in [0,10): were the window
# closed on A's watermark alone it would be late) and 22: min(27, 22) = 22
# closes [0,10) = {1,2,3,4} and [10,20) = {15}. B 35: min(27, 35) = 27,
# [20,30) (needs 29.999) stays open; A 40: min(40, 35) = 35 closes it.
{ rec 1 1; rec 2 2; rec 15 10; rec 27 20; } >"$T/a.jsonl"
rec 3 100 >"$T/b.jsonl"
src() {   # NAME FILE
    cat <<EOF
  $1:
    type: file
    path: $2
    mode: follow
    batch_size: 1
    event_time: {field: ts, format: iso8601}
    watermark: {max_delay: 0s}
EOF
}
cat >"$T/two.yaml" <<EOF
pipeline: two_inputs
sources:
$(src a "$T/a.jsonl")
$(src b "$T/b.jsonl")
operators:
  win:
    type: window
    input: [a, b]
    size: 10s
    late: late_out
    aggregate: {n: count(), s: sum(v)}
sinks:
  rows: {type: file, input: win, path: $T/two.rows}
  late: {type: file, input: late_out, path: $T/two.late}
  seen: {type: file, input: [a, b], path: $T/two.seen}
EOF
"$SLUICE" run --quiet "$T/two.yaml" >"$T/two.log" 2>&1 &
pid=$!
ok "two inputs: both sources read" wait_for $TIMEOUT has_lines "$T/two.seen" 5
sleep 0.5
is "$(lines_in "$T/two.rows")" 0 "two inputs: no window closes while B lags at 3 s"
rec 4 200 >>"$T/b.jsonl"
rec 22 300 >>"$T/b.jsonl"
ok "two inputs: B catching up closes [0,10)" wait_for $TIMEOUT has_lines "$T/two.rows" 2
is "$(rows_of "$T/two.rows" 0)" "4/303 " "two inputs: [0,10) holds both inputs' records, B's 4 s one too"
is "$(rows_of "$T/two.rows" 10)" "1/10 " "two inputs: [10,20) = A's 15"
rec 35 1 >>"$T/b.jsonl"
ok "two inputs: B's 35 read" wait_for $TIMEOUT has_lines "$T/two.seen" 8
sleep 0.5
is "$(rows_of "$T/two.rows" 20)" "" "two inputs: now A lags (27): [20,30) stays open"
rec 40 1 >>"$T/a.jsonl"
ok "two inputs: A catching up closes [20,30)" wait_for $TIMEOUT has_lines "$T/two.rows" 3
is "$(rows_of "$T/two.rows" 20)" "2/320 " "two inputs: [20,30) = A's 27 + B's 22"
is "$(lines_in "$T/two.late")" 0 "two inputs: nothing late"
stop $pid "two inputs"

# ---- idle partition: idle_timeout releases it ----------------------------------
# A glob of a.jsonl and b.jsonl, one source, one partition per file. Phase 1
# (1.5 s, longer than idle_timeout): both files keep getting lines, a's at
# 12 s and on, b's inside [0,10) -> b holds the watermark near 2 s and [0,10)
# stays open. Phase 2: b stops; about 1 s after its last line it is idle, the
# watermark becomes a's and [0,10) closes holding 1 (a) + every b record.
# Then a b record at 3 s is late: [0,10) is closed.
idle_case() {   # NAME IDLE_OPTION
    local G; G=$(tmpdir "$1")
    rec 1 1 >"$G/a.jsonl"
    rec 2 1 >"$G/b.jsonl"
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  in:
    type: file
    path: $G/*.jsonl
    mode: follow
    batch_size: 1
    event_time: {field: ts, format: iso8601}
    watermark: {max_delay: 0s$2}
operators:
  win:
    type: window
    input: in
    size: 10s
    late: late_out
    aggregate: {n: count(), s: sum(v)}
sinks:
  rows: {type: file, input: win, path: $T/$1.rows}
  late: {type: file, input: late_out, path: $T/$1.late}
  seen: {type: file, input: in, path: $T/$1.seen}
EOF
    "$SLUICE" run --quiet "$T/$1.yaml" >"$T/$1.log" 2>&1 &
    pid=$!
    ok "$1: both files read" wait_for $TIMEOUT has_lines "$T/$1.seen" 2
    ( i=0; while :; do rec "$(awk -v i=$i 'BEGIN { printf "%.1f", 12 + i / 10 }')" 1 >>"$G/a.jsonl"
        i=$((i + 1)); sleep 0.2; done ) &
    writer_a=$!
    ( i=0; while :; do rec "$(awk -v i=$i 'BEGIN { printf "%.2f", 2 + i / 100 }')" 1 >>"$G/b.jsonl"
        now_ms >"$T/$1.b_last"; i=$((i + 1)); sleep 0.2; done ) &
    writer_b=$!
    sleep 1.5
    is "$(rows_of "$T/$1.rows" 0)" "" "$1: [0,10) open while b keeps getting lines"
    kill $writer_b; wait $writer_b 2>/dev/null
}

idle_case idle ", idle_timeout: 1s"
ok "idle: b idle -> [0,10) closes" wait_for $TIMEOUT has_any_row "$T/idle.rows" 0
waited=$(( $(now_ms) - $(cat "$T/idle.b_last") ))
diag "[0,10) closed ${waited} ms after b's last line was written"
ok "idle: not before idle_timeout (${waited} ms >= 950)" test "$waited" -ge 950
ok "idle: soon after it (${waited} ms <= 5000)" test "$waited" -le 5000
nb=$(lines_in "$T/idle/b.jsonl")
is "$(rows_of "$T/idle.rows" 0)" "$((1 + nb))/$((1 + nb)) " "idle: [0,10) = a's 1 s record + all $nb of b's"
rec 3 1 >>"$T/idle/b.jsonl"
ok "idle: b back with a 3 s record: late" wait_for $TIMEOUT has_lines "$T/idle.late" 1
is "$(jq -r .ts "$T/idle.late")" "$W0:03.000Z" "idle: the late record is b's 3 s one"
kill $writer_a; wait $writer_a 2>/dev/null
stop $pid "idle"

# The same without idle_timeout: b's silence holds the window open.
idle_case no_idle ""
sleep 2.5
is "$(rows_of "$T/no_idle.rows" 0)" "" "no idle_timeout: [0,10) still open 2.5 s after b went quiet"
kill $writer_a; wait $writer_a 2>/dev/null
stop $pid "no idle_timeout"

done_testing
