#!/usr/bin/env bash
# checkpoint_kill.sh — exactly-once through kill -9 (issue 4's main test).
#
# Two bounded pipelines, each with `checkpoint: {interval: 100ms}`:
#   filter  file -> filter (status_code >= 400) -> file, 200k JSON records
#   window  file -> tumbling 1 s window, count and sum per key -> file,
#           300k records over 300 s of event time, 20 keys
# Each is run once without checkpoints and never killed: the reference. Then
# it is started again with checkpoints, killed with SIGKILL at 3 to 5 random
# moments (a random 0.1-0.8 s after each start, less on a fast machine) and restarted each time with
# the same command, until a run ends by itself with status 0. Its output must
# equal the reference as a multiset of lines: every selected record once,
# every window row once with the right values.
#
# Why the checks are shaped so:
# - the references are checked first against values worked out here
#   (jq for the filter, python3 for the windows), so a wrong run cannot
#   pass merely by being wrong the same way twice;
# - a restart that ignored its checkpoints and started over would also end
#   with the right output (the file sink truncates at start), so the test
#   also asserts that the kills landed in mid-run, with output already
#   written, and that each restart logged "restored checkpoint N" for N the
#   newest checkpoint with a MANIFEST the killed run left (or, when it left
#   none, restored nothing); the first kill waits for its run's first
#   checkpoint, so that at least one restart restores one however loaded
#   the machine is;
# - `batch_size: 1` makes a run take seconds, so kills land mid-run; the
#   kill delays shrink when a machine is so fast that the reference run is
#   short (each kill must still find a run going).
# The window input is out of order by at most 200 ms and the watermark
# trails by 500 ms, so no record is ever late whatever the batch boundaries
# or restarts: the late output must stay empty.
#
# KILL_SEED=N replays the same kill moments; KEEP_TMP=1 keeps the files.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
require_cmd python3 || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"   # a run may leave .sluice/ behind
RUN_TIMEOUT=120                        # seconds one run may take at most
sanitized_build && RUN_TIMEOUT=900   # ASan runs batch_size 1 many times slower

KILL_SEED=${KILL_SEED:-$$}
RANDOM=$KILL_SEED
diag "KILL_SEED=$KILL_SEED"

# ---- inputs (seeded) and their expected outputs -----------------------------
python3 - "$T" <<'PY'
import datetime, json, random, sys
t = sys.argv[1]
r = random.Random(4)
codes = [200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 500, 502, 503]
with open(t + "/access.jsonl", "w") as f:
    for i in range(200000):
        f.write(json.dumps({"seq": i, "status_code": r.choice(codes),
                            "path": "/api/items/%d" % r.randrange(100000),
                            "bytes": r.randrange(100, 100000)},
                           separators=(",", ":")) + "\n")

# 1000 records per second of event time over 300 s, 20 keys, each record
# up to 200 ms before its place (out of order, within the 500 ms max_delay).
base = 1700000000000
groups = {}
with open(t + "/events.jsonl", "w") as f:
    for i in range(300000):
        ts = base + i - r.randrange(201)
        k = "k%d" % r.randrange(20)
        v = r.randrange(1000)
        f.write(json.dumps({"ts": ts, "k": k, "v": v}, separators=(",", ":")) + "\n")
        g = groups.setdefault((ts // 1000, k), [0, 0])
        g[0] += 1
        g[1] += v

def iso(ms):
    d = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)

with open(t + "/events.want", "w") as f:
    for (sec, k), (n, s) in groups.items():
        f.write(json.dumps({"window_start": iso(sec * 1000), "window_end": iso(sec * 1000 + 1000),
                            "k": k, "n": n, "s": s}, sort_keys=True, separators=(",", ":")) + "\n")
PY
[ -s "$T/events.want" ] || bail_out "python3 could not write the inputs"
jq -c 'select(.status_code >= 400)' "$T/access.jsonl" >"$T/access.want"

# ---- pipelines ------------------------------------------------------------------
# filter_yaml FILE OUT [CHECKPOINT_LINE]
filter_yaml() {
    cat >"$1" <<EOF
pipeline: ck_filter
$3
sources:
  in:
    type: file
    path: $T/access.jsonl
    batch_size: 1
operators:
  errors_only:
    type: filter
    input: in
    where: status_code >= 400
sinks:
  out:
    type: file
    input: errors_only
    path: $2
EOF
}

# window_yaml FILE OUT LATE_OUT [CHECKPOINT_LINE]
window_yaml() {
    cat >"$1" <<EOF
pipeline: ck_window
$4
sources:
  in:
    type: file
    path: $T/events.jsonl
    batch_size: 1
    event_time: {field: ts, format: epoch_ms}
    watermark: {max_delay: 500ms}
operators:
  per_key:
    type: window
    input: in
    size: 1s
    group_by: [k]
    late: late_records
    aggregate:
      n: count()
      s: sum(v)
sinks:
  out:
    type: file
    input: per_key
    path: $2
  late:
    type: file
    input: late_records
    path: $3
EOF
}

CHECKPOINT="checkpoint: {interval: 100ms, dir: $T/chk}"
filter_yaml "$T/filter-ref.yaml" "$T/filter.ref"
filter_yaml "$T/filter.yaml" "$T/filter.out" "$CHECKPOINT"
window_yaml "$T/window-ref.yaml" "$T/window.ref" "$T/window-late.ref"
window_yaml "$T/window.yaml" "$T/window.out" "$T/window-late.out" "$CHECKPOINT"

# ---- helpers ----------------------------------------------------------------------
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# Gone, or a zombie not yet reaped: kill -0 alone says yes to a zombie.
# Epochs of the checkpoints in DIR/PIPELINE with a MANIFEST, oldest first.
valid_epochs() {
    local n
    for n in $(ls -d "$1"/chk-* 2>/dev/null | sed 's/.*chk-//' | sort -n); do
        [ -f "$1/chk-$n/MANIFEST" ] && echo "$n"
    done
}

# kill_restart NAME YAML OUT: start `sluice run YAML`, SIGKILL it a random
# 0.1 s to MAX_DELAY_MS after the start, restart, ... until KILLS kills have
# landed on a running process; then let the last run end by itself. Sets
# ATTEMPTS, LANDED (kills that hit a running process), MID_OUTPUT (of those,
# the ones with OUT partly written), FINAL_STATUS. Each run's stderr is in
# $T/NAME.N.err.
kill_restart() {
    local name=$1 yaml=$2 out=$3 pid st d lines
    ATTEMPTS=0 LANDED=0 MID_OUTPUT=0 FINAL_STATUS=
    NEWEST=()
    rm -f "$T/$name".*.err
    while :; do
        ATTEMPTS=$((ATTEMPTS + 1))
        "$SLUICE" run "$yaml" >"$T/$name.$ATTEMPTS.err" 2>&1 &
        pid=$!
        if [ "$LANDED" -lt "$KILLS" ]; then
            # The first kill comes after this run's first checkpoint, so that
            # at least one restart has something to restore even on a loaded
            # machine; the others come at any moment after a start.
            [ "$LANDED" -eq 0 ] &&
                { wait_for 30 grep -Eq 'checkpoint [0-9]+ completed' "$T/$name.$ATTEMPTS.err" ||
                  diag "$name run $ATTEMPTS: no checkpoint completed within 30 s"; }
            d=$(( 100 + RANDOM % (MAX_DELAY_MS - 99) ))
            sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
            lines=$(lines_in "$out")
            kill -9 "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null   # no "Killed" notice from bash
            st=$?
            if [ "$st" -eq 137 ]; then
                LANDED=$((LANDED + 1))
                # What the restart must restore: the newest checkpoint with a
                # MANIFEST when the process died, or none.
                NEWEST[ATTEMPTS + 1]=$(valid_epochs "$T/chk/ck_$name" | tail -1)
                [ "$lines" -gt 0 ] && MID_OUTPUT=$((MID_OUTPUT + 1))
                diag "$name run $ATTEMPTS: killed after $d ms, output had $lines lines"
                continue
            fi
            diag "$name run $ATTEMPTS: ended by itself (status $st) before the kill at $d ms"
            FINAL_STATUS=$st
            return
        fi
        wait_exit "$pid"
        FINAL_STATUS=$?
        diag "$name run $ATTEMPTS: not killed, status $FINAL_STATUS, output $(lines_in "$out") lines"
        return
    done
}

# kill_test NAME: the reference run, then kill_restart with checkpoints, and
# the checks common to both pipelines.
kill_test() {
    local name=$1 t0 took
    t0=$(now_ms)
    "$SLUICE" run --quiet "$T/$name-ref.yaml" >"$T/$name-ref.err" 2>&1 &
    wait_exit $!
    REF_STATUS=$?
    took=$(( $(now_ms) - t0 ))
    is "$REF_STATUS" 0 "$name: the reference run (no checkpoints) exits 0"
    [ "$REF_STATUS" = 0 ] || diag "$(head -c 2000 "$T/$name-ref.err")"
    diag "$name: the reference run took $took ms"

    # All the kill delays together stay well under the reference run's time
    # (the first also waits for a checkpoint), so that every kill lands on a
    # running process even on a fast machine.
    KILLS=$(( 3 + RANDOM % 3 ))
    MAX_DELAY_MS=$(( took / (KILLS + 2) ))
    [ "$MAX_DELAY_MS" -gt 800 ] && MAX_DELAY_MS=800
    [ "$MAX_DELAY_MS" -lt 120 ] && MAX_DELAY_MS=120
    diag "$name: $KILLS kills, each 100-$MAX_DELAY_MS ms after a start"

    kill_restart "$name" "$T/$name.yaml" "$T/$name.out"
    is "$FINAL_STATUS" 0 "$name: after $LANDED kills a restarted run ends by itself with status 0"
    [ "$FINAL_STATUS" = 0 ] || diag "$(tail -c 3000 "$T/$name.$ATTEMPTS.err")"
    is "$LANDED" "$KILLS" "$name: all $KILLS kills landed on a running process"
    _tap_result $(( MID_OUTPUT == 0 )) "$name: kills landed after output was written ($MID_OUTPUT of $LANDED)"

    # Each restart restores the newest complete checkpoint the killed run
    # left, or starts over when it left none.
    local i r got want with=0
    got= want=
    for ((i = 2; i <= ATTEMPTS; i++)); do
        r=$(grep -Eo 'restored checkpoint [0-9]+ from' "$T/$name.$i.err" | grep -Eo '[0-9]+' | head -1)
        if [ -z "$r" ] && ! grep -q "pipeline 'ck_$name' starting" "$T/$name.$i.err"; then
            continue   # killed before it got as far as restoring (a loaded machine)
        fi
        want+="run $i: ${NEWEST[i]:-none}; "
        [ -n "${NEWEST[i]}" ] && with=$((with + 1))
        got+="run $i: ${r:-none}; "
    done
    is "$got" "$want" "$name: each restart restored the newest complete checkpoint (none: started over)" ||
        for ((i = 2; i <= ATTEMPTS; i++)); do
            diag "run $i stderr: $(grep -E 'WARN|ERROR|restored|starting' "$T/$name.$i.err" | head -5)"
        done
    _tap_result $(( with == 0 )) "$name: restarts that had a checkpoint to restore it: $with"
    local completed
    completed=$(cat "$T/$name".*.err | grep -Ec 'checkpoint [0-9]+ completed in [0-9.]+ ms')
    _tap_result $(( completed == 0 )) "$name: checkpoints completed during the runs ($completed)"
    like "$(ls "$T/chk/ck_$name" 2>&1)" '^chk-[0-9]+$' "$name: checkpoint folders under DIR/<pipeline>/chk-N"
}

# ---- filter: every selected record exactly once -----------------------------
kill_test filter
jq -c . "$T/filter.ref" >"$T/filter.ref.c" 2>&1
same_lines "filter: the reference holds exactly the records with status_code >= 400" \
    "$T/filter.ref.c" "$T/access.want"
jq -c . "$T/filter.out" >"$T/filter.out.c" 2>&1
same_lines "filter: after the kills, every selected record exactly once (multiset = reference)" \
    "$T/filter.out.c" "$T/filter.ref.c"
# One source, one path: a restart cuts the file back to what it committed and
# appends from the source's position then, so even the order is kept.
ok "filter: and in the reference's order" cmp "$T/filter.out.c" "$T/filter.ref.c"
is "$(tail -c 1 "$T/filter.out" | od -An -c | tr -d ' ')" '\n' "filter: the output ends with a whole line"

# ---- window: every window row exactly once, right values ----------------------
kill_test window
jq -cS . "$T/window.ref" >"$T/window.ref.c" 2>&1
same_lines "window: the reference holds the right count and sum per key and second" \
    "$T/window.ref.c" "$T/events.want"
is "$(lines_in "$T/window-late.ref")" 0 "window: no late record in the reference"
jq -cS . "$T/window.out" >"$T/window.out.c" 2>&1
same_lines "window: after the kills, every window row exactly once (multiset = reference)" \
    "$T/window.out.c" "$T/window.ref.c"
is "$(lines_in "$T/window-late.out")" 0 "window: no late record after the kills either"
is "$(jq -s 'map(.n) | add' "$T/window.out" 2>&1)" 300000 "window: the counts add up to every record once"

done_testing
