#!/usr/bin/env bash
# window_semantics.sh — the `window` operator's results end to end through
# `sluice run`, on small hand-made inputs (tests/data/window/): tumbling
# count/sum/avg/min/max per key, sliding windows (a record in size/slide
# windows), session windows merging and bridging, out-of-order records within
# max_delay all counted, late records routed to `late:` exactly and counted
# nowhere, allowed_lateness keeping a window open, records without a usable
# event time going to `errors`, the end of a bounded input firing every open
# window, and a seeded random input against the reference.
#
# Expected rows come from scripts/window-reference, an independent model of
# the window contract of issue 3; for the small cases they are also worked
# by hand in the comments and the reference is checked against them first, so
# a wrong reference cannot make a wrong operator pass. Every source runs with
# `batch_size: 1`: the core advances the watermark once per batch, and the
# reference simulates it once per record.
#
# Rows are compared as sets, in jq's sorted-key form with doubles rounded to
# 6 decimals (`norm`), and then in sequence: the contract's emission order is
# window end, then each group's first appearance in the window.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
require_cmd python3 || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"   # a run may leave .sluice/ behind
DATA=$SRCDIR/tests/data/window
REF=$SRCDIR/scripts/window-reference

ROUND='walk(if type == "number" and . != floor then (. * 1000000 | round) / 1000000 else . end)'
norm() { jq -cS "$ROUND" "$@" | LC_ALL=C sort; }        # a set of rows
norm_seq() { jq -cS "$ROUND" "$@"; }                   # records in order

# The window operator's option lines, from a reference spec (JSON).
win_opts() {
    jq -r '
      (.size // empty | "    size: \(.)"),
      (.slide // empty | "    slide: \(.)"),
      (.gap // empty | "    gap: \(.)"),
      (.group_by // empty | "    group_by: [\(join(", "))]"),
      (.allowed_lateness // empty | "    allowed_lateness: \(.)"),
      "    aggregate:",
      (.aggregate | to_entries[] | "      \(.key): \u0027\(.value | gsub("\u0027"; "\u0027\u0027"))\u0027")
    ' <<<"$1"
}

# window_pipeline NAME INPUT SPEC: file (batch_size 1) -> window -> files
# $T/NAME.rows, .late (the `late:` output) and .bad (the source's errors).
window_pipeline() {
    local md
    md=$(jq -r '.max_delay // "0s"' <<<"$3")
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  in:
    type: file
    path: $2
    format: json
    batch_size: 1
    event_time: {field: ts, format: iso8601}
    watermark: {max_delay: $md}
    errors: bad_time
operators:
  win:
    type: window
    input: in
    late: late_out
$(win_opts "$3")
sinks:
  rows:
    type: file
    input: win
    path: $T/$1.rows
  late:
    type: file
    input: late_out
    path: $T/$1.late
  bad:
    type: file
    input: bad_time
    path: $T/$1.bad
EOF
}

run() { timeout 60 "$SLUICE" run --quiet "$T/$1.yaml"; }

# against_reference NAME INPUT SPEC: run the pipeline, compare its rows and
# its late records with the reference's.
against_reference() {
    window_pipeline "$1" "$2" "$3"
    "$REF" "$3" "$2" --late "$T/$1.exp_late" >"$T/$1.exp" ||
        bail_out "window-reference failed on $1"
    ok "$1: sluice run exits 0" run "$1" || return 1
    is "$(norm "$T/$1.rows")" "$(norm "$T/$1.exp")" "$1: rows = reference"
    is "$(norm_seq "$T/$1.late")" "$(norm_seq "$T/$1.exp_late")" "$1: late records = reference"
    "$REF" "$3" "$2" --emit-order >"$T/$1.exp_order"
    is "$(norm_seq "$T/$1.rows")" "$(norm_seq "$T/$1.exp_order")" \
        "$1: rows in the contract's order (window end, then first appearance in the window)"
}

# The reference against rows worked by hand (HAND is jq-able JSON lines).
reference_is() {   # NAME HAND DESC
    is "$(norm "$T/$1.exp")" "$(norm <<<"$2")" "reference = hand-worked rows: $3"
}

ends_non_decreasing() {
    [ -s "$1" ] && jq -r .window_end "$1" | LC_ALL=C sort -c 2>/dev/null
}

W0=2024-03-15T12:00   # the minute every hand-made input lives in

# ---- tumbling, per key, out of order within max_delay -------------------------
# size 10s, max_delay 5s. Arrival order (seconds into 12:00) and watermark after:
#   ann 1 (W -4), bob 3.5, ann 2 (1.5s out of order), bob 9.999 (last ms of
#   [0,10)), ann 10 (first ms of [10,20); W 5), ann 6 (4 s behind the max:
#   counted), cid 14 (W 9: [0,10) needs W >= 9.999, still open), cid 9 (5 s
#   behind: counted), ann 21 (W 16: [0,10) closes), ann 12 without v (counted
#   by count(), skipped by the others). End of input fires the rest.
SPEC='{"size":"10s","group_by":["user"],"max_delay":"5s","event_time":{"field":"ts"},
 "aggregate":{"n":"count()","total":"sum(v)","mean":"avg(v)","lo":"min(v)","hi":"max(v)"}}'
against_reference tumbling "$DATA/tumbling.jsonl" "$SPEC"
reference_is tumbling "
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"user\":\"ann\",\"n\":3,\"total\":12.5,\"mean\":4.1666667,\"lo\":2.5,\"hi\":6}
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"user\":\"bob\",\"n\":2,\"total\":8,\"mean\":4,\"lo\":-2,\"hi\":10}
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"user\":\"cid\",\"n\":1,\"total\":3,\"mean\":3,\"lo\":3,\"hi\":3}
{\"window_start\":\"$W0:10.000Z\",\"window_end\":\"$W0:20.000Z\",\"user\":\"ann\",\"n\":2,\"total\":1,\"mean\":1,\"lo\":1,\"hi\":1}
{\"window_start\":\"$W0:10.000Z\",\"window_end\":\"$W0:20.000Z\",\"user\":\"cid\",\"n\":1,\"total\":7,\"mean\":7,\"lo\":7,\"hi\":7}
{\"window_start\":\"$W0:20.000Z\",\"window_end\":\"$W0:30.000Z\",\"user\":\"ann\",\"n\":1,\"total\":5,\"mean\":5,\"lo\":5,\"hi\":5}" \
    "tumbling per key"
is "$(jq -s 'map(.n) | add' "$T/tumbling.rows")" 10 "tumbling: every record (all within max_delay) counted once"
is "$(jq -r 'select(.user == "bob" and .window_end == "'$W0':10.000Z") | .total | type' "$T/tumbling.rows")" \
    number "tumbling: a sum of ints is a number"
is "$(jq -c 'select(.user == "bob" and .window_end == "'$W0':10.000Z") | .total' "$T/tumbling.rows")" \
    8 "tumbling: a sum of ints stays an int"
is "$(head -1 "$T/tumbling.rows" | jq -c 'keys_unsorted[:3]')" '["window_start","window_end","user"]' \
    "row fields lead with window_start, window_end, the group-by fields"
is "$(head -1 "$T/tumbling.rows" | jq -c 'keys_unsorted[3:]')" '["n","total","mean","lo","hi"]' \
    "then the aggregates in declaration order"
ok "rows come out in window-end order" ends_non_decreasing "$T/tumbling.rows"
is "$(wc -l <"$T/tumbling.late")" 0 "tumbling: nothing late"

# ---- sliding: every record in size/slide windows ---------------------------
# size 10s slide 5s, max_delay 0; records at 1, 7, 12, 13 (v 1, 2, 4, 8):
#   [-5,5): 1 | [0,10): 1,7 | [5,15): 7,12,13 | [10,20): 12,13
# so 4 records give 8 memberships. Nothing is late: each arrives after the
# previous in event time.
SPEC='{"size":"10s","slide":"5s","max_delay":"0s","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference sliding "$DATA/sliding.jsonl" "$SPEC"
reference_is sliding "
{\"window_start\":\"2024-03-15T11:59:55.000Z\",\"window_end\":\"$W0:05.000Z\",\"n\":1,\"s\":1}
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"n\":2,\"s\":3}
{\"window_start\":\"$W0:05.000Z\",\"window_end\":\"$W0:15.000Z\",\"n\":3,\"s\":14}
{\"window_start\":\"$W0:10.000Z\",\"window_end\":\"$W0:20.000Z\",\"n\":2,\"s\":12}" \
    "sliding 10s/5s"
is "$(jq -s 'map(.n) | add' "$T/sliding.rows")" 8 "sliding: each record counted in size/slide = 2 windows"
ok "sliding rows in window-end order" ends_non_decreasing "$T/sliding.rows"

# A slide that does not divide the size: 10s every 4s; a record falls in 2 or
# 3 windows (t=1 in those starting at -8, -4, 0; t=7 in 0 and 4).
SPEC='{"size":"10s","slide":"4s","max_delay":"1s","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference sliding_4s "$DATA/sliding.jsonl" "$SPEC"

# ---- session windows: merging, bridging, the exact-gap edge -------------------
# gap 5s, per user, max_delay 10s. ann 0 then 3: one session [0,8). bob 2 and
# bob 7: 7 is exactly `gap` after 2, so [2,7) and [7,12) stay apart (half-open
# intervals that only touch do not merge). ann 20 (W 10: ann [0,8) and bob
# [2,7) close), ann 13 (a new session [13,18)), ann 16 ([16,21) overlaps both
# [13,18) and [20,25): it bridges them into [13,25)). The end fires the rest.
SPEC='{"gap":"5s","group_by":["user"],"max_delay":"10s","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference session "$DATA/session.jsonl" "$SPEC"
reference_is session "
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:08.000Z\",\"user\":\"ann\",\"n\":2,\"s\":3}
{\"window_start\":\"$W0:02.000Z\",\"window_end\":\"$W0:07.000Z\",\"user\":\"bob\",\"n\":1,\"s\":10}
{\"window_start\":\"$W0:07.000Z\",\"window_end\":\"$W0:12.000Z\",\"user\":\"bob\",\"n\":1,\"s\":20}
{\"window_start\":\"$W0:13.000Z\",\"window_end\":\"$W0:25.000Z\",\"user\":\"ann\",\"n\":3,\"s\":12}" \
    "sessions"

# ---- late records, then allowed_lateness keeping windows open ------------------
# tumbling 10s, max_delay 2s, one group. Arrival (t, v) and watermark after:
#   #1 (1,1) W-1  #2 (5,2) W3  #3 (12,3) W10: [0,10) closes
#   #4 (9,100): its only window is closed -> late   #5 (11,4) counted
#   #6 (23,5) W21: [10,20) closes  #7 (19.5,200) late  #8 (21,6) counted
#   #9 (8,300) late.   Rows: [0,10) 2/3, [10,20) 2/7, [20,30) 2/11.
SPEC='{"size":"10s","max_delay":"2s","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference late "$DATA/late.jsonl" "$SPEC"
reference_is late "
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"n\":2,\"s\":3}
{\"window_start\":\"$W0:10.000Z\",\"window_end\":\"$W0:20.000Z\",\"n\":2,\"s\":7}
{\"window_start\":\"$W0:20.000Z\",\"window_end\":\"$W0:30.000Z\",\"n\":2,\"s\":11}" \
    "late records left out"
is "$(jq -c .n "$T/late.late" | tr '\n' ' ')" "4 7 9 " "late: exactly records #4, #7, #9 in the late output"
is "$(norm_seq "$T/late.late")" "$(sed -n '4p;7p;9p' "$DATA/late.jsonl" | norm_seq)" \
    "late: the late records come out unchanged"

# allowed_lateness 3s: a window closes at W >= end - 1ms + 3s. #3 (W 10) no
# longer closes [0,10), so #4 counts; #6 (W 21) closes [0,10) (3 rows: 1,2,100)
# but not [10,20), so #7 counts; #9 (8) is late: [0,10) closed at #6.
#   Rows: [0,10) 3/103, [10,20) 3/207, [20,30) 2/11. Late: #9 only.
SPEC='{"size":"10s","max_delay":"2s","allowed_lateness":"3s","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference lateness "$DATA/late.jsonl" "$SPEC"
reference_is lateness "
{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"n\":3,\"s\":103}
{\"window_start\":\"$W0:10.000Z\",\"window_end\":\"$W0:20.000Z\",\"n\":3,\"s\":207}
{\"window_start\":\"$W0:20.000Z\",\"window_end\":\"$W0:30.000Z\",\"n\":2,\"s\":11}" \
    "allowed_lateness keeps windows open"
is "$(jq -c .n "$T/lateness.late" | tr '\n' ' ')" "9 " "lateness: only #9 is late"
is "$(jq -s length "$T/lateness.rows")" 3 "lateness: one final row per window (on_close)"

# ---- records without a usable event time -> errors ---------------------------
# Missing, null, not a date, a number under format iso8601, an impossible date:
# five records go to the source's `errors` output (reason bad_event_time),
# unchanged apart from the added error/stage/raw; the three good ones
# (t 1, 3, 4; v 1, 6, 8) make one row.
SPEC='{"size":"10s","max_delay":"0s","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference bad_time "$DATA/bad_time.jsonl" "$SPEC"
reference_is bad_time "{\"window_start\":\"$W0:00.000Z\",\"window_end\":\"$W0:10.000Z\",\"n\":3,\"s\":15}" \
    "only records with a usable event time"
is "$(jq -c 'del(.error, .stage, .raw)' "$T/bad_time.bad" | norm)" \
    "$(sed -n '2,5p;7p' "$DATA/bad_time.jsonl" | norm)" "bad event time: the 5 records reach errors"
is "$(jq -r '.error | split(":")[0]' "$T/bad_time.bad" | sort -u)" bad_event_time \
    "bad event time: reason bad_event_time"

# Without event_time on the source, records reach the window with no event
# time at all: the window rejects them (no_event_time) to its own errors.
printf '{"v":1}\n{"v":2}\n' >"$T/no_time.jsonl"
cat >"$T/no_time.yaml" <<EOF
pipeline: no_time
sources:
  in: {type: file, path: $T/no_time.jsonl, format: json}
operators:
  win:
    type: window
    input: in
    size: 10s
    errors: win_bad
    aggregate: {n: count()}
sinks:
  rows: {type: file, input: win, path: $T/no_time.rows}
  bad: {type: file, input: win_bad, path: $T/no_time.bad}
EOF
ok "no event time: sluice run exits 0" run no_time
is "$(jq -c 'del(.error, .stage, .raw)' "$T/no_time.bad" | tr '\n' ' ')" '{"v":1} {"v":2} ' \
    "no event time: both records go to the window's errors"
is "$(jq -r '.error | split(":")[0]' "$T/no_time.bad" | sort -u)" no_event_time "no event time: reason no_event_time"
is "$(jq -r .stage "$T/no_time.bad" | sort -u)" win "no event time: stage is the window"
is "$(wc -l <"$T/no_time.rows")" 0 "no event time: no rows"

# ---- end of a bounded input fires every open window ---------------------------
# max_delay 1h: no watermark ever closes a window while the file is read; the
# end of input moves the watermark to +infinity and all six rows come out.
SPEC='{"size":"10s","group_by":["user"],"max_delay":"1h","aggregate":{"n":"count()","s":"sum(v)"}}'
against_reference end_fires "$DATA/tumbling.jsonl" "$SPEC"
is "$(wc -l <"$T/end_fires.rows")" 6 "end of input: every (window, user) row fired"

# ---- seeded random input against the reference -------------------------------
# 600 records of 4 users over ~10 minutes, delivered up to 8 s out of order,
# some far later; max_delay 3s, allowed_lateness 1s: many records within the
# delay, some inside the lateness, some late.
python3 - "$T/random.jsonl" <<'EOF'
import json, random, sys, datetime
rng = random.Random(7)
base = datetime.datetime(2024, 3, 15, 12, 0, tzinfo=datetime.timezone.utc)
with open(sys.argv[1], "w") as out:
    t = 0.0
    for i in range(600):
        t += rng.uniform(0, 2)
        lag = rng.uniform(0, 8) if rng.random() < 0.3 else 0
        if rng.random() < 0.03:
            lag = rng.uniform(10, 60)
        stamp = base + datetime.timedelta(milliseconds=int(max(0, t - lag) * 1000))
        out.write(json.dumps({"ts": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (stamp.microsecond // 1000),
                              "user": rng.choice(["u1", "u2", "u3", "u4"]),
                              "v": rng.choice([rng.randint(-50, 500), round(rng.uniform(0, 10), 3)]),
                              "seq": i}) + "\n")
EOF
AGG='"aggregate":{"n":"count()","s":"sum(v)","a":"avg(v)","lo":"min(v)","hi":"max(v)"}'
against_reference random_tumbling "$T/random.jsonl" \
    '{"size":"30s","group_by":["user"],"max_delay":"3s","allowed_lateness":"1s",'"$AGG"'}'
against_reference random_sliding "$T/random.jsonl" \
    '{"size":"20s","slide":"5s","group_by":["user"],"max_delay":"3s","allowed_lateness":"1s",'"$AGG"'}'
ok "random sliding: rows in window-end order" ends_non_decreasing "$T/random_sliding.rows"
against_reference random_session "$T/random.jsonl" \
    '{"gap":"4s","group_by":["user"],"max_delay":"3s",'"$AGG"'}'
isnt "$(wc -l <"$T/random_tumbling.exp_late")" 0 "random: the input does have late records"

# More aggregates, two group-by fields, one of them missing from every record
# (groups as null): stddev (sample), count_distinct, first/last (by event
# time, ties in arrival order), count_if/sum_if with a Lua expression.
against_reference random_more "$T/random.jsonl" \
    '{"size":"1m","group_by":["user","nope"],"max_delay":"3s","aggregate":{"n":"count()",
      "sd":"stddev(v)","d":"count_distinct(v)","f":"first(seq)","l":"last(seq)",
      "big":"sum_if(v, v > 100)","c":"count_if(v >= 250)"}}'
is "$(jq -c .nope "$T/random_more.rows" | sort -u)" null "a missing group-by field groups as null"

# ---- configuration mistakes: exit 2, file:line:col ------------------------------
bad_config() {   # DESC OPTION_LINES...
    local desc=$1 f=$T/bad_$((++_bad)).yaml; shift
    {
        printf 'pipeline: bad\nsources:\n  in: {type: file, path: %s, event_time: {field: ts}}\n' \
            "$DATA/sliding.jsonl"
        printf 'operators:\n  win:\n    type: window\n    input: in\n'
        printf '    %s\n' "$@"
        printf 'sinks:\n  rows: {type: file, input: win, path: %s}\n' "$T/bad.rows"
    } >"$f"
    status_is 2 "config: $desc -> exit 2" "$SLUICE" validate "$f" &&
        like "$(cat "$TAP_OUT")" "^$f:[0-9]+:[0-9]+: " "config: $desc -> reported as file:line:col"
}
_bad=0
bad_config "a bad emit value" "size: 10s" "emit: sometimes" "aggregate: {n: count()}"
bad_config "gap with size" "size: 10s" "gap: 5s" "aggregate: {n: count()}"
bad_config "slide larger than size" "size: 10s" "slide: 20s" "aggregate: {n: count()}"
bad_config "neither size nor gap" "aggregate: {n: count()}"
bad_config "an unknown aggregate" "size: 10s" "aggregate: {n: nosuch(v)}"

done_testing
