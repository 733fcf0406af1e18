#!/usr/bin/env bash
# examples.sh — the pipelines in etc/examples: every one passes
# `sluice validate`; the event-time ones run on their bundled data and give
# what scripts/window-reference computes from the same data (the examples'
# watermark, 5 s behind, covers the data's reordering, so no record is late
# and the per-batch watermark gives the same rows as the reference's
# per-record one). burst-anomaly must report the bursty user u0666 and
# nobody else.
#
# Runs happen in a scratch folder (a run may leave .sluice/ behind), with the
# examples' relative input paths replaced by absolute ones and OUT_DIR set.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
require_cmd python3 || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
EX=$SRCDIR/etc/examples
REF=$SRCDIR/scripts/window-reference
EVENTS=$EX/data/user-events.jsonl
export OUT_DIR=$T/out
mkdir -p "$OUT_DIR"

ROUND='walk(if type == "number" and . != floor then (. * 1000000 | round) / 1000000 else . end)'
norm() { jq -cS "$ROUND" "$@" | LC_ALL=C sort; }

# ---- every example validates ---------------------------------------------------
n=0
for f in "$EX"/*.yaml; do
    n=$((n + 1))
    # From the repository root, as the examples say to run them: the Lua
    # ones name their scripts relative to it, and validate compiles them.
    status_is 0 "validate $(basename "$f") exits 0" \
        bash -c 'cd "$1" && "$2" validate "$3"' _ "$SRCDIR" "$SLUICE" "$f"
done
ok "there are examples to validate ($n)" test "$n" -ge 5

# ---- the bundled data is what its generator makes --------------------------------
ok "user-events.jsonl = scripts/gen-user-events output" \
    cmp -s "$EVENTS" <(python3 "$SRCDIR/scripts/gen-user-events")

# run EXAMPLE SOURCE INPUT: run it to its end (bounded input) from the scratch folder.
run() {
    timeout 120 "$SLUICE" run --quiet --set "sources.$2.path=$3" "$EX/$1.yaml"
}

# ---- burst-anomaly: u0666 and only u0666 --------------------------------------
ok "burst-anomaly runs to its end" run burst-anomaly events "$EVENTS"
A=$OUT_DIR/burst-anomalies.jsonl
is "$(jq -r .user_id "$A" | sort -u)" u0666 "burst-anomaly: the bursty user is reported, nobody else"
"$REF" '{"size":"5m","slide":"1m","group_by":["user_id"],"max_delay":"5s",
         "event_time":{"field":"ts"},"aggregate":{"events":"count()"}}' "$EVENTS" |
    jq -c 'select(.events > 50)' >"$T/burst.exp"
is "$(jq -c '{window_start, window_end, user_id, events}' "$A" | norm)" "$(norm "$T/burst.exp")" \
    "burst-anomaly: its windows and counts = reference"
is "$(jq -c '.actions | sort' "$A" | sort -u)" '["click","view"]' \
    "burst-anomaly: collect_set of the bot's actions"

# ---- per-user-activity: events and distinct pages per user -----------------------
ok "per-user-activity runs to its end" run per-user-activity events "$EVENTS"
"$REF" '{"size":"10m","slide":"1m","group_by":["user_id"],"max_delay":"5s",
         "event_time":{"field":"ts"},
         "aggregate":{"events":"count()","pages":"count_distinct(page)",
                      "first_seen":"first(ts)","last_seen":"last(ts)"}}' "$EVENTS" >"$T/activity.exp"
is "$(norm "$OUT_DIR/per-user-activity.jsonl")" "$(norm "$T/activity.exp")" \
    "per-user-activity: rows = reference"

# ---- per-action-metrics: counts and means per action ------------------------------
ok "per-action-metrics runs to its end" run per-action-metrics events "$EVENTS"
"$REF" '{"size":"1m","group_by":["action"],"max_delay":"5s","event_time":{"field":"ts"},
         "aggregate":{"events":"count()","avg_ms":"avg(duration_ms)","max_ms":"max(duration_ms)"}}' \
    "$EVENTS" >"$T/per_minute.exp"
is "$(jq -c 'del(.p95_ms)' "$OUT_DIR/per-action-per-minute.jsonl" | norm)" "$(norm "$T/per_minute.exp")" \
    "per-action-metrics: per-minute counts, means, maxima = reference"
is "$(jq -c 'select(.p95_ms == null or .p95_ms > .max_ms * 1.01 or .p95_ms < 0)' \
        "$OUT_DIR/per-action-per-minute.jsonl" | head -3)" "" \
    "per-action-metrics: every p95 is a number within [0, max]"
is "$(jq -s 'map(.events) | add' "$OUT_DIR/per-action-last-5m.jsonl")" \
    "$(( $(wc -l <"$EVENTS") * 5 ))" "per-action-metrics: 5m/1m sliding counts every event 5 times"

# ---- error-rate over the access log --------------------------------------------------
ACCESS=$EX/data/access.jsonl
ok "error-rate runs to its end" run error-rate logs "$ACCESS"
"$REF" '{"size":"1m","group_by":["service"],"max_delay":"5s","event_time":{"field":"timestamp"},
         "aggregate":{"requests":"count()","errors":"count_if(status_code >= 500)"}}' "$ACCESS" |
    jq -c '. + {error_rate: (.errors / .requests)}' >"$T/rate.exp"
is "$(jq -c 'del(.p99_rt)' "$OUT_DIR/error-rates.jsonl" | norm)" "$(norm "$T/rate.exp")" \
    "error-rate: requests, errors, error_rate per service and minute = reference"
is "$(jq -r 'select(.error_rate > 0.2) | .service' "$OUT_DIR/error-rates.jsonl" | sort -u)" checkout \
    "error-rate: checkout's burst stands out"
is "$(wc -l <"$OUT_DIR/error-rate-bad-lines.jsonl")" 3 "error-rate: the 3 truncated lines go to bad_lines"

done_testing
