#!/usr/bin/env bash
# checkpoint_recovery.sh — what issue 4 promises around the checkpoints
# themselves, each against a real `sluice run`:
#   a) a damaged newest checkpoint (a truncated MANIFEST; a flipped byte in a
#      state file) is skipped with a warning naming it, the one before is
#      restored, and the output is still each record exactly once;
#   b) SIGTERM mid-run (a followed file, which never ends by itself): a final
#      checkpoint, exit 0; lines appended meanwhile are read by the restart,
#      which continues where the first run stopped — every line once;
#   c) shutdown_file: removing it drains the run like SIGTERM, exit 0;
#   d) retention: after a run with many checkpoints, `retain: 2` leaves the
#      two newest chk-N folders;
#   e) --from-scratch ignores the checkpoints: the output starts over;
#   f) a changed pipeline (a stage's type changed, a stage gone) is refused
#      with exit 2, a message naming the stage and suggesting --from-scratch,
#      and the output file left as it was;
#   g) events_log: JSON lines run_started, checkpoint_started/_completed
#      (epoch, duration_ms, bytes, records), restored, run_stopped;
#   h) bounded input running out takes a final checkpoint at its end, so a
#      second run of the same pipeline reads nothing again.
#
# Every wait polls with a timeout (wait_for); a run that hangs is killed
# after RUN_TIMEOUT and reported. Stage names are distinctive (feed, pick,
# sink_out) so that a message "naming the stage" can be checked for.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
require_cmd python3 || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"   # a run may leave .sluice/ behind
TIMEOUT=15        # seconds a wait for output may take
RUN_TIMEOUT=120   # seconds one whole run may take
sanitized_build && RUN_TIMEOUT=900   # ASan runs batch_size 1 many times slower

# ---- helpers ----------------------------------------------------------------------
has_lines() { [ "$(lines_in "$1")" -ge "$2" ]; }
# Checkpoint folders of DIR/PIPELINE: epochs, oldest first; with a MANIFEST.
epochs() { ls -d "$1"/chk-* 2>/dev/null | sed 's/.*chk-//' | sort -n; }
valid_epochs() { local n; for n in $(epochs "$1"); do [ -f "$1/chk-$n/MANIFEST" ] && echo "$n"; done; }
# same_json OUT WANT: OUT holds WANT's lines, in order (jq's compact form).
same_json() { cmp -s <(jq -c . "$1" 2>/dev/null) "$2"; }
manifests_at_least() { [ "$(valid_epochs "$1" | wc -l)" -ge "$2" ]; }

# The input for the bounded runs: 200k records, about half selected.
python3 - "$T" <<'PY'
import json, random, sys
r = random.Random(7)
codes = [200, 200, 200, 201, 204, 301, 304, 400, 401, 403, 404, 500, 502, 503]
with open(sys.argv[1] + "/access.jsonl", "w") as f:
    for i in range(200000):
        f.write(json.dumps({"seq": i, "status_code": r.choice(codes),
                            "path": "/api/items/%d" % r.randrange(100000)},
                           separators=(",", ":")) + "\n")
PY
[ -s "$T/access.jsonl" ] || bail_out "python3 could not write the input"
jq -c 'select(.status_code >= 400)' "$T/access.jsonl" >"$T/access.want"

# bounded_yaml NAME OUT CHECKPOINT_YAML [TOP_LEVEL_LINE]: file (batch_size 1,
# so a run takes seconds) -> filter -> file, pipeline ck_NAME.
bounded_yaml() {
    cat >"$T/$1.yaml" <<EOF
pipeline: ck_$1
checkpoint: $3
$4
sources:
  feed:
    type: file
    path: $T/access.jsonl
    batch_size: 1
operators:
  pick:
    type: filter
    input: feed
    where: status_code >= 400
sinks:
  sink_out:
    type: file
    input: pick
    path: $2
EOF
}

# follow_yaml NAME INPUT OUT CHECKPOINT_YAML [TOP_LEVEL_LINE]: a followed
# file -> file, pipeline ck_NAME; it never ends by itself.
follow_yaml() {
    cat >"$T/$1.yaml" <<EOF
pipeline: ck_$1
checkpoint: $4
$5
sources:
  feed:
    type: file
    path: $2
    mode: follow
sinks:
  sink_out:
    type: file
    input: feed
    path: $3
EOF
}

# numbered FROM TO: JSON lines {"n":FROM} .. {"n":TO}
numbered() { seq "$1" "$2" | sed 's/.*/{"n":&}/'; }

# ---- a) a damaged newest checkpoint is skipped ------------------------------------
# damage_test NAME HOW: kill -9 a run once it has 2 complete checkpoints,
# damage the newest complete one (HOW: manifest | state), restart.
damage_test() {
    local name=$1 how=$2 chk=$T/chk-$1 pid st newest restored victim
    bounded_yaml "$name" "$T/$name.out" "{interval: 100ms, dir: $chk, retain: 10}"
    "$SLUICE" run "$T/$name.yaml" >"$T/$name.1.err" 2>&1 &
    pid=$!
    ok "$name: 2 checkpoints complete" wait_for $TIMEOUT manifests_at_least "$chk/ck_$name" 2
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null   # no "Killed" notice from bash
    st=$?
    is "$st" 137 "$name: killed (SIGKILL) in mid-run" || diag "$(tail -c 2000 "$T/$name.1.err")"
    diag "$name: killed with $(lines_in "$T/$name.out") lines written; folders: $(epochs "$chk/ck_$name" | tr '\n' ' ')"

    newest=$(valid_epochs "$chk/ck_$name" | tail -1)
    if [ "$how" = manifest ]; then
        victim=$chk/ck_$name/chk-$newest/MANIFEST
        truncate -s $(( $(stat -c %s "$victim") / 2 )) "$victim"
    else
        victim=$chk/ck_$name/chk-$newest/feed.state
        ok "$name: the source's state file is $victim" test -s "$victim" ||
            diag "chk-$newest holds: $(ls -l "$chk/ck_$name/chk-$newest" 2>&1)"
        python3 -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x5a
open(p, "wb").write(b)' "$victim"
    fi
    diag "$name: damaged $victim"

    "$SLUICE" run "$T/$name.yaml" >"$T/$name.2.err" 2>&1 &
    wait_exit $!
    st=$?
    is "$st" 0 "$name: the restart ends by itself with status 0" || diag "$(tail -c 3000 "$T/$name.2.err")"
    like "$(grep -i warn "$T/$name.2.err")" "chk-$newest([^0-9]|\$)" \
        "$name: a warning names the skipped checkpoint chk-$newest" || diag "$(head -c 3000 "$T/$name.2.err")"
    restored=$(grep -Eo 'restored checkpoint [0-9]+' "$T/$name.2.err" | grep -Eo '[0-9]+$' | head -1)
    _tap_result $(( ${restored:-0} < 1 || ${restored:-0} >= newest )) \
        "$name: the checkpoint before it was restored (${restored:-none}, damaged $newest)" ||
        diag "$(head -c 3000 "$T/$name.2.err")"
    jq -c . "$T/$name.out" >"$T/$name.out.c" 2>&1
    same_lines "$name: the output holds each selected record exactly once" "$T/$name.out.c" "$T/access.want"
}
damage_test torn_manifest manifest
damage_test bad_state state

# ---- d) retention, g) the events log of a run with many checkpoints ----------------
bounded_yaml retain "$T/retain.out" "{interval: 100ms, dir: $T/chk-retain, retain: 2}" \
    "events_log: $T/retain.events"
"$SLUICE" run "$T/retain.yaml" >"$T/retain.err" 2>&1 &
wait_exit $!
st=$?
is "$st" 0 "retain: the run ends by itself with status 0" || diag "$(tail -c 3000 "$T/retain.err")"
jq -c . "$T/retain.out" >"$T/retain.out.c" 2>&1
same_lines "retain: the output is complete" "$T/retain.out.c" "$T/access.want"
completed=$(grep -Eo 'checkpoint [0-9]+ completed' "$T/retain.err" | grep -Eo '[0-9]+' | sort -n)
_tap_result $(( $(echo "$completed" | grep -c .) < 4 )) \
    "retain: many checkpoints completed ($(echo "$completed" | grep -c .))" || diag "$(head -c 3000 "$T/retain.err")"
is "$(epochs "$T/chk-retain/ck_retain" | tr '\n' ' ')" "$(echo "$completed" | tail -2 | tr '\n' ' ')" \
    "retain: 2 keeps exactly the two newest checkpoints"
is "$(find "$T/chk-retain" -iname '*tmp*' -o -iname '*temp*' | head -5)" "" "retain: no temporary files left behind"

EV=$T/retain.events
# (jq -e looks at the last output only: -s and all() check every line.)
ok "events_log: the file exists and every line is a JSON object with an event" \
    jq -e -s 'length > 0 and all(type == "object" and (.event | type == "string"))' "$EV"
is "$(jq -r .event "$EV" | head -1)" run_started "events_log: run_started first"
is "$(jq -r .event "$EV" | tail -1)" run_stopped "events_log: run_stopped last"
ok "events_log: checkpoint_completed has a numeric epoch, duration_ms, bytes and records per stage" \
    jq -e -s 'map(select(.event == "checkpoint_completed")) | length > 0 and
              all((.epoch | type == "number") and (.duration_ms | type == "number") and .duration_ms >= 0
                  and (.bytes | type == "number") and .bytes > 0 and (.records | type == "object"))' "$EV"
ev_completed=$(jq -r 'select(.event == "checkpoint_completed") | .epoch' "$EV" | sort -n)
is "$ev_completed" "$completed" "events_log: one checkpoint_completed per 'checkpoint N completed' log line"
is "$(jq -r 'select(.event == "checkpoint_completed") | .epoch' "$EV")" "$ev_completed" \
    "events_log: epochs complete in increasing order"
is "$(jq -r 'select(.event == "checkpoint_started") | .epoch' "$EV" | sort -n |
      grep -Fxf <(echo "$ev_completed") | tr '\n' ' ')" "$(echo "$ev_completed" | tr '\n' ' ')" \
    "events_log: every completed epoch was started"
like "$(jq -c 'select(.event == "checkpoint_completed") | .records | keys' "$EV" | tail -1)" \
    'feed' "events_log: records counts name the stages"

# ---- b) SIGTERM mid-run: final checkpoint, exit 0, the restart continues ---------
IN=$T/follow.jsonl
numbered 1 500 >"$IN"
follow_yaml term "$IN" "$T/term.out" "{interval: 1h, dir: $T/chk-term}" "events_log: $T/term.events"
"$SLUICE" run "$T/term.yaml" >"$T/term.1.err" 2>&1 &
pid=$!
ok "SIGTERM: the lines already in the file arrive" wait_for $TIMEOUT has_lines "$T/term.out" 500
kill -TERM $pid
wait_exit $pid
is "$?" 0 "SIGTERM: drains and exits 0" || diag "$(tail -c 3000 "$T/term.1.err")"
final=$(grep -Eo 'checkpoint [0-9]+ completed' "$T/term.1.err" | grep -Eo '[0-9]+' | tail -1)
isnt "${final:-}" "" "SIGTERM: a final checkpoint completed (interval 1h: no periodic one)" ||
    diag "$(head -c 3000 "$T/term.1.err")"
is "$(lines_in "$T/term.out")" 500 "SIGTERM: every line read was written before the exit"

numbered 501 800 >>"$IN"        # while nothing runs
"$SLUICE" run "$T/term.yaml" >"$T/term.2.err" 2>&1 &
pid=$!
ok "restart: the lines appended while stopped arrive" wait_for $TIMEOUT has_lines "$T/term.out" 800
numbered 801 1000 >>"$IN"       # while it runs
ok "restart: lines appended while running arrive" wait_for $TIMEOUT has_lines "$T/term.out" 1000
like "$(cat "$T/term.2.err")" "restored checkpoint ${final:-NONE} from $T/chk-term/ck_term" \
    "restart: it says it restored the final checkpoint and from where"
kill -TERM $pid
wait_exit $pid
is "$?" 0 "restart: SIGTERM again exits 0" || diag "$(tail -c 3000 "$T/term.2.err")"
numbered 1 1000 >"$T/term.want"
jq -c . "$T/term.out" >"$T/term.out.c" 2>&1
same_lines "restart: the output holds every line exactly once" "$T/term.out.c" "$T/term.want"
ok "restart: continued where it stopped (same order as the input)" cmp "$T/term.out.c" "$T/term.want"
ok "events_log: a restored event with the epoch and the path" \
    jq -e --argjson e "${final:-0}" -s \
    'map(select(.event == "restored")) | length == 1 and .[0].epoch == $e and (.[0].path | type == "string")' \
    "$T/term.events"
is "$(jq -r .event "$T/term.events" | grep -E '^run_(started|stopped)$' | tail -2 | tr '\n' ' ')" \
    "run_started run_stopped " "events_log: the restarted run started and stopped"

# ---- e) --from-scratch ignores the checkpoints --------------------------------------
# A new input in place of the old: restoring would keep the old output (what
# the sink committed); starting over must give exactly the new input.
numbered 5001 5100 >"$T/follow.new" && mv "$T/follow.new" "$IN"
"$SLUICE" run "$T/term.yaml" --from-scratch >"$T/scratch.err" 2>&1 &
pid=$!
numbered 5001 5100 >"$T/scratch.want"
ok "--from-scratch: the output becomes exactly the new input" wait_for $TIMEOUT same_json "$T/term.out" "$T/scratch.want"
kill -TERM $pid
wait_exit $pid
is "$?" 0 "--from-scratch: SIGTERM exits 0" || diag "$(tail -c 3000 "$T/scratch.err")"
jq -c . "$T/term.out" >"$T/scratch.out.c" 2>&1
ok "--from-scratch: the output started over and stays so (only the new input, once)" \
    cmp "$T/scratch.out.c" "$T/scratch.want" ||
    diag "output: $(lines_in "$T/term.out") lines, first: $(head -1 "$T/term.out")"
unlike "$(cat "$T/scratch.err")" "restored checkpoint" "--from-scratch: nothing restored"

# ---- f) a changed pipeline is refused -----------------------------------------------
# term.yaml has a final checkpoint again (the --from-scratch run's SIGTERM).
cp "$T/term.out" "$T/term.out.before"
sed '0,/^    type: file$/s//    type: generate/; s/^    path: .*follow.jsonl$/    count: 10/; /^    mode: follow$/d' \
    "$T/term.yaml" >"$T/changed.yaml"
# Only the source's type changes: the sink stays a file sink.
is "$(grep -c 'type: generate' "$T/changed.yaml")" 1 "(the changed pipeline has a generate source)"
status_is 2 "a stage whose type changed: exit 2" "$SLUICE" run "$T/changed.yaml"
msg=$(cat "$TAP_OUT")
like "$msg" "feed" "the message names the stage (feed)"
like "$msg" "file.*generate|generate.*file" "the message says what changed (file -> generate)"
like "$msg" "--from-scratch" "the message suggests --from-scratch"
like "$msg" "$T/chk-term/ck_term" "the message names the folder to remove"
ok "the refused run left the output file as it was" cmp "$T/term.out" "$T/term.out.before"

sed 's/sink_out/sink_renamed/' "$T/term.yaml" >"$T/vanished.yaml"
status_is 2 "a stage that vanished: exit 2" "$SLUICE" run "$T/vanished.yaml"
like "$(cat "$TAP_OUT")" "sink_out" "the message names the vanished stage (sink_out)"
like "$(cat "$TAP_OUT")" "--from-scratch" "and suggests --from-scratch"
ok "the refused run left the output file as it was" cmp "$T/term.out" "$T/term.out.before"

ok "--from-scratch runs the changed pipeline" "$SLUICE" run --quiet "$T/changed.yaml" --from-scratch
is "$(lines_in "$T/term.out")" 10 "and its output is the new pipeline's"

# ---- c) shutdown_file: removing it drains the run ---------------------------------
numbered 1 300 >"$T/sd.jsonl"
touch "$T/sluice.running"
follow_yaml shutdown "$T/sd.jsonl" "$T/sd.out" "{interval: 1h, dir: $T/chk-sd}" \
    "shutdown_file: $T/sluice.running"
"$SLUICE" run "$T/shutdown.yaml" >"$T/sd.err" 2>&1 &
pid=$!
ok "shutdown_file: the lines arrive" wait_for $TIMEOUT has_lines "$T/sd.out" 300
numbered 301 400 >>"$T/sd.jsonl"
ok "shutdown_file: appended lines arrive" wait_for $TIMEOUT has_lines "$T/sd.out" 400
ok "shutdown_file: still running while the file exists" kill -0 $pid
rm "$T/sluice.running"
ok "shutdown_file: removing it ends the run" wait_for $TIMEOUT exited $pid
wait_exit $pid
is "$?" 0 "shutdown_file: drains and exits 0" || diag "$(tail -c 3000 "$T/sd.err")"
numbered 1 400 >"$T/sd.want"
jq -c . "$T/sd.out" >"$T/sd.out.c" 2>&1
same_lines "shutdown_file: the output is complete, each line once" "$T/sd.out.c" "$T/sd.want"
like "$(cat "$T/sd.err")" "checkpoint [0-9]+ completed" "shutdown_file: a final checkpoint, as for SIGTERM"

# ---- h) the end of bounded input is checkpointed ------------------------------------
bounded_yaml ends "$T/ends.out" "{dir: $T/ck, interval: 1h}" "events_log: $T/ends.events"
"$SLUICE" run "$T/ends.yaml" >"$T/ends.err" 2>&1
is "$?" 0 "bounded end: the run exits 0"
jq -c . "$T/ends.out" >"$T/ends.out.c"
same_lines "bounded end: the output is complete" "$T/ends.out.c" "$T/access.want"
is "$(jq -c 'select(.event == "checkpoint_started") | .final' "$T/ends.events" | tail -1)" "true" \
    "bounded end: with interval 1h, the one checkpoint taken is a final one at the end"
is "$(jq -c 'select(.event == "checkpoint_completed")' "$T/ends.events" | wc -l | tr -d ' ')" 1 \
    "bounded end: and it completed"
"$SLUICE" run "$T/ends.yaml" >"$T/ends2.err" 2>&1
is "$?" 0 "bounded end: a second run exits 0"
jq -c . "$T/ends.out" >"$T/ends.out.c"
same_lines "bounded end: the second run read nothing again" "$T/ends.out.c" "$T/access.want"

done_testing
