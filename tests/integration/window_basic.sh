#!/usr/bin/env bash
# window_basic.sh — a smoke test of the `window` operator through
# `sluice run`: tumbling 1-minute windows counting records per user over a
# tiny hand-made file, the expected rows worked out by hand below; the last
# record arrives after the watermark passed its window, so it is late and
# goes to the `late` output unchanged.
#
# Hand-worked expectation (event time = ts, ms since the epoch;
# max_delay 0, batch_size 1 so the watermark follows every record):
#   ts 0 a, 30000 b, 59999 a        -> [00:00:00, 00:01:00): a 2, b 1
#   ts 60000 a (the edge), 61000 b, 70000 (no user), 119999 b
#                                   -> [00:01:00, 00:02:00): a 1, b 2, null 1
#   ts 180000 a                     -> [00:03:00, 00:04:00): a 1
#   ts 1000 c: wm is 180000 by then, [0, 60000) closed -> late
# Rows come in window-end order, then by first appearance in the window.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing

T=$(tmpdir)

cat >"$T/in.jsonl" <<'EOF2'
{"ts":0,"user":"a"}
{"ts":30000,"user":"b"}
{"ts":59999,"user":"a"}
{"ts":60000,"user":"a"}
{"ts":61000,"user":"b"}
{"ts":70000}
{"ts":119999,"user":"b"}
{"ts":180000,"user":"a"}
{"ts":1000,"user":"c"}
EOF2

cat >"$T/p.yaml" <<EOF2
pipeline: window_basic
sources:
  in:
    type: file
    path: $T/in.jsonl
    format: json
    batch_size: 1
    event_time: {field: ts, format: epoch_ms}
    watermark: {max_delay: 0s}
operators:
  per_user:
    type: window
    input: in
    size: 1m
    group_by: [user]
    late: late_records
    aggregate:
      n: count()
sinks:
  out:
    type: file
    input: per_user
    path: $T/out.jsonl
    format: json
  late:
    type: file
    input: late_records
    path: $T/late.jsonl
    format: json
EOF2

ok "sluice run exits 0" "$SLUICE" run --quiet "$T/p.yaml"

want='{"n":2,"user":"a","window_end":"1970-01-01T00:01:00.000Z","window_start":"1970-01-01T00:00:00.000Z"}
{"n":1,"user":"b","window_end":"1970-01-01T00:01:00.000Z","window_start":"1970-01-01T00:00:00.000Z"}
{"n":1,"user":"a","window_end":"1970-01-01T00:02:00.000Z","window_start":"1970-01-01T00:01:00.000Z"}
{"n":2,"user":"b","window_end":"1970-01-01T00:02:00.000Z","window_start":"1970-01-01T00:01:00.000Z"}
{"n":1,"user":null,"window_end":"1970-01-01T00:02:00.000Z","window_start":"1970-01-01T00:01:00.000Z"}
{"n":1,"user":"a","window_end":"1970-01-01T00:04:00.000Z","window_start":"1970-01-01T00:03:00.000Z"}'
is "$(jq -cS . "$T/out.jsonl" 2>&1)" "$want" "tumbling count per user, rows in window-end then first-appearance order"

is "$(head -1 "$T/out.jsonl" | jq -r 'keys_unsorted | join(",")' 2>&1 | head -1)" \
    "window_start,window_end,user,n" "fields: window_start, window_end, group-by, aggregates"

is "$(jq -cS . "$T/late.jsonl" 2>&1)" '{"ts":1000,"user":"c"}' "the late record goes to \`late\` unchanged"

fails "size with gap is a configuration error" \
    "$SLUICE" validate <(sed 's/size: 1m/size: 1m\n    gap: 10s/' "$T/p.yaml")
status_is 2 "exit status 2 for a bad aggregate" \
    "$SLUICE" validate <(sed 's/count()/median(x)/' "$T/p.yaml")
like "$(cat "$TAP_OUT")" 'aggregate\.n.*unknown aggregate' "the error names aggregate.n"

done_testing
