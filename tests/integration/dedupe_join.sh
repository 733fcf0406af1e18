#!/usr/bin/env bash
# dedupe_join.sh — the `dedupe` and `join` operators end to end through
# `sluice run`.
#
# dedupe: repeats within `within` dropped, a record exactly `within` after
# the kept one kept, dropped records not extending the bound (first
# occurrence), keys of several fields, 20000 records across batches against
# a jq reference of the same rule, records without event time to `errors`,
# bad options exit 2 with file:line:col.
# join: left and inner on one and two keys, CSV and JSON-lines tables, keys
# compared by text (CSV 1 = JSON "1"), duplicate table keys (last wins),
# prefix and fields, a reload picked up by a running follow-mode pipeline
# and a bad reload keeping the old table, a missing table or a bad table
# line failing the start (exit 1), bad options (exit 2, file:line:col).
#
# Expected outputs are worked by hand or computed by jq from the inputs,
# and compared in jq's normal form with sorted keys (`jq -cS .`).
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing

T=$(tmpdir)
TIMEOUT=10

run() { "$SLUICE" run --quiet "$T/$1.yaml"; }
norm() { jq -cS . "$@"; }

# pipeline NAME INPUT EVENT_TIME(yes|no) OPERATOR_YAML_LINES: file -> op -> file
# ($T/NAME.out); the operator's `errors: bad` stream goes to $T/NAME.errors.
pipeline() {
    local et=
    [ "$3" = yes ] && et="    event_time: {field: ts, format: epoch_ms}
    watermark: {max_delay: ${WM_DELAY:-20s}}"
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  in:
    type: file
    path: $2
    format: json
$et
operators:
  op:
    input: in
    errors: bad
$4
sinks:
  out:
    type: file
    input: op
    path: $T/$1.out
    format: json
  rejected:
    type: file
    input: bad
    path: $T/$1.errors
    format: json
EOF
}

# ==== dedupe ====================================================================

# One key, within 10s. Worked by hand (t0 = the kept record's time):
#   n1 a@1000 kept (t0=1000)   n2 a@2000 dropped   n3 b@1500 kept
#   n4 a@11000 kept: exactly 10s after n1 (t0=11000)
#   n5 a@12000 dropped   n6 a@20999 dropped (9.999s after n4)
#   n7 a@21000 kept: 10s after n4 — n5/n6 did not extend the bound
#   n8 b@1200 dropped: 300ms BEFORE b's kept record (out of order, |dt| < within)
#   n9 b@11499 dropped, n10 b@11500 kept (10s after n3)
cat >"$T/one.jsonl" <<'EOF'
{"ts":1000,"u":"a","n":1}
{"ts":2000,"u":"a","n":2}
{"ts":1500,"u":"b","n":3}
{"ts":11000,"u":"a","n":4}
{"ts":12000,"u":"a","n":5}
{"ts":20999,"u":"a","n":6}
{"ts":21000,"u":"a","n":7}
{"ts":1200,"u":"b","n":8}
{"ts":11499,"u":"b","n":9}
{"ts":11500,"u":"b","n":10}
EOF
pipeline d1 "$T/one.jsonl" yes '    type: dedupe
    key: u
    within: 10s'
ok "dedupe on one key runs" run d1
is "$(jq -r .n "$T/d1.out" | tr '\n' ' ')" "1 3 4 7 10 " \
    "dedupe: repeats within 10s dropped, exactly 10s later kept, first occurrence"
is "$(norm "$T/d1.out" | head -1)" '{"n":1,"ts":1000,"u":"a"}' "kept records pass unchanged"

# State is freed behind the watermark (max_delay 0, one record per batch, so
# the watermark moves between records): b@50000 moves it to 50000 and a's
# entry (t0=1000 < 50000 - 10s) is freed, so the late a@2000 passes as new;
# c's entry (t0=44000) is not, so c@45000 is still a repeat.
cat >"$T/evict.jsonl" <<'EOF'
{"ts":1000,"u":"a","n":1}
{"ts":44000,"u":"c","n":2}
{"ts":50000,"u":"b","n":3}
{"ts":2000,"u":"a","n":4}
{"ts":45000,"u":"c","n":5}
EOF
WM_DELAY=0s pipeline d0 "$T/evict.jsonl" yes '    type: dedupe
    key: u
    within: 10s'
sed -i '0,/^    format: json$/s//    format: json\n    batch_size: 1/' "$T/d0.yaml"
ok "dedupe with eviction runs" run d0
is "$(jq -r .n "$T/d0.out" | tr '\n' ' ')" "1 2 3 4 " \
    "keys older than watermark - within are freed; younger ones still dedupe"

# Several key fields; a missing field is a null key part; types count.
cat >"$T/multi.jsonl" <<'EOF'
{"ts":1000,"u":"a","act":"click","n":1}
{"ts":1001,"u":"a","act":"view","n":2}
{"ts":1002,"u":"b","act":"click","n":3}
{"ts":1003,"u":"a","act":"click","n":4}
{"ts":1004,"u":"a","n":5}
{"ts":1005,"u":"a","act":null,"n":6}
{"ts":1006,"u":1,"act":"click","n":7}
{"ts":1007,"u":"1","act":"click","n":8}
{"ts":1008,"u":1,"act":"click","n":9}
{"ts":9000,"u":"a","act":"view","n":10}
EOF
pipeline d2 "$T/multi.jsonl" yes '    type: dedupe
    key: [u, act]
    within: 5s'
ok "dedupe on two keys runs" run d2
is "$(jq -r .n "$T/d2.out" | tr '\n' ' ')" "1 2 3 5 7 8 10 " \
    "dedupe on [u, act]: all fields must repeat; missing = null; 1 and \"1\" differ"

# Many records across batch boundaries (batch_size 100), sorted by time,
# against jq running the same rule.
seq 0 19999 | jq -c '{ts: (. * 37), u: ("k" + ((. * 7919) % 53 | tostring)), n: .}' \
    >"$T/many.jsonl"
pipeline d3 "$T/many.jsonl" yes '    type: dedupe
    key: [u]
    within: 5s'
sed -i '0,/^    format: json$/s//    format: json\n    batch_size: 100/' "$T/d3.yaml"
ok "dedupe over 20000 records runs" run d3
want=$(jq -cs 'reduce .[] as $r ({seen: {}, out: []};
        .seen[$r.u] as $t0
        | if $t0 != null and (($r.ts - $t0) | fabs) < 5000 then .
          else .seen[$r.u] = ([$t0 // $r.ts, $r.ts] | max) | .out += [$r.n] end)
        | .out | length' "$T/many.jsonl")
is "$(wc -l <"$T/d3.out" | tr -d ' ')" "$want" "dedupe over 20000 records keeps what jq keeps ($want)"
is "$(jq -r .n "$T/d3.out" | md5sum)" \
    "$(jq -cs 'reduce .[] as $r ({seen: {}, out: []};
        .seen[$r.u] as $t0
        | if $t0 != null and (($r.ts - $t0) | fabs) < 5000 then .
          else .seen[$r.u] = ([$t0 // $r.ts, $r.ts] | max) | .out += [$r.n] end)
        | .out[]' "$T/many.jsonl" | md5sum)" "the same records, in order"

# No event time on the source: every record to `errors`, none passes.
pipeline d4 "$T/one.jsonl" no '    type: dedupe
    key: u
    within: 10s'
ok "dedupe without event time runs" run d4
is "$(wc -l <"$T/d4.errors" | tr -d ' ')" 10 "every record without event time goes to errors"
is "$(jq -r '.error | split(":")[0]' "$T/d4.errors" | sort -u)" "no_event_time" \
    "with reason no_event_time"
is "$(cat "$T/d4.out" 2>/dev/null | wc -l | tr -d ' ')" 0 "and none is passed on"

# Bad options: exit 2, each problem at its file:line:col.
pipeline d5 "$T/one.jsonl" yes '    type: dedupe
    key: []
    within: 0s'
status_is 2 "dedupe with bad options exits 2" run d5
like "$(cat "$TAP_OUT")" "d5.yaml:[0-9]+:[0-9]+: .*key" "an empty key is reported at file:line:col"
like "$(cat "$TAP_OUT")" "d5.yaml:[0-9]+:[0-9]+: .*within.*more than 0" \
    "within: 0s is reported at file:line:col"
pipeline d6 "$T/one.jsonl" yes '    type: dedupe
    key: u'
status_is 2 "dedupe without within exits 2" run d6
like "$(cat "$TAP_OUT")" "d6.yaml:[0-9]+:[0-9]+: .*within" "the missing option is named"

# ==== join =======================================================================

cat >"$T/events.jsonl" <<'EOF'
{"ts":1,"uid":1,"region":"eu","x":"a"}
{"ts":2,"uid":"2","region":"us","x":"b"}
{"ts":3,"uid":3,"region":"eu","x":"c"}
{"ts":4,"uid":9,"region":"eu","x":"d"}
{"ts":5,"region":"us","x":"e"}
{"ts":6,"uid":2,"region":"eu","x":"f"}
EOF
# uid 2 twice: the last row wins. "3" quoted is a string: matches by text.
cat >"$T/users.csv" <<'EOF'
uid,name,plan
1,alice,pro
2,bob,free
"3",carol,pro
2,bobby,team
EOF

pipeline j1 "$T/events.jsonl" no "    type: join
    table: $T/users.csv
    on: uid"
ok "left join on a CSV table runs" run j1
is "$(norm "$T/j1.out")" "$(jq -cS '
    ({"1": {name: "alice", plan: "pro"}, "2": {name: "bobby", plan: "team"},
      "3": {name: "carol", plan: "pro"}}) as $t
    | . + ($t[(.uid // "none") | tostring] // {})' "$T/events.jsonl")" \
    "left: matches enriched (by text, last duplicate wins), the rest unchanged"

pipeline j2 "$T/events.jsonl" no "    type: join
    table: $T/users.csv
    on: [uid]
    how: inner
    fields: [plan, nosuch]
    prefix: user_"
ok "inner join with fields and prefix runs" run j2
is "$(jq -c '[.x, .user_plan]' "$T/j2.out" | tr '\n' ' ')" \
    '["a","pro"] ["b","team"] ["c","pro"] ["f","team"] ' \
    "inner: only matches, with the listed fields under the prefix"
is "$(jq -c 'has("user_name") or has("name") or has("user_nosuch")' "$T/j2.out" | sort -u)" \
    "false" "unlisted and absent columns are not added"

# Two keys, a JSON-lines table with typed and nested values.
cat >"$T/prices.jsonl" <<'EOF'
{"uid":1,"region":"eu","price":9.5,"tags":["a","b"],"vip":true}
{"uid":2,"region":"eu","price":7,"vip":false}

{"uid":2,"region":"us","price":12,"vip":null}
{"uid":3,"region":"us","price":1}
EOF
pipeline j3 "$T/events.jsonl" no "    type: join
    table: $T/prices.jsonl
    on: [uid, region]
    how: inner"
ok "inner join on two keys, JSON-lines table, runs" run j3
is "$(norm "$T/j3.out")" "$(jq -cS '
    select(.x == "a" or .x == "b" or .x == "f")
    | if .x == "a" then . + {price: 9.5, tags: ["a","b"], vip: true}
      elif .x == "b" then . + {price: 12, vip: null}
      else . + {price: 7, vip: false} end' "$T/events.jsonl")" \
    "two keys: both must match; values keep their types (nested JSON too)"

pipeline j4 "$T/events.jsonl" no "    type: join
    table: $T/prices.jsonl
    on: [uid, region]
    fields: price
    prefix: p_"
ok "left join on two keys runs" run j4
is "$(jq -c '[.x, .p_price]' "$T/j4.out" | tr '\n' ' ')" \
    '["a",9.5] ["b",12] ["c",null] ["d",null] ["e",null] ["f",7] ' \
    "left on two keys: unmatched (c: wrong region) pass without the field"
is "$(jq -c 'select(.x == "c") | has("p_price")' "$T/j4.out")" false \
    "an unmatched record gets no field at all"

# A table bigger than a batch (4096 rows) and 20000 records, against jq.
{ echo "id,label"; seq 0 9999 | awk '{ print $1 ",L" ($1 * 3) }'; } >"$T/big.csv"
seq 0 19999 | jq -c '{id: ((. * 7) % 12000), n: .}' >"$T/bigev.jsonl"
pipeline j10 "$T/bigev.jsonl" no "    type: join
    table: $T/big.csv
    on: id
    how: inner"
ok "inner join against a 10000-row table runs" run j10
is "$(norm "$T/j10.out" | md5sum)" \
    "$(jq -cS 'select(.id < 10000) | . + {label: ("L" + (.id * 3 | tostring))}' \
        "$T/bigev.jsonl" | md5sum)" "every match enriched, the rest dropped, order kept"

# format: by option when the extension says nothing.
cp "$T/users.csv" "$T/users.table"
pipeline j5 "$T/events.jsonl" no "    type: join
    table: $T/users.table
    format: csv
    on: uid
    how: inner"
ok "format: csv for a file without a known extension" run j5
is "$(wc -l <"$T/j5.out" | tr -d ' ')" 4 "and it joins"

# Missing table: the start fails, exit 1, the path named.
pipeline j6 "$T/events.jsonl" no "    type: join
    table: $T/nope.csv
    on: uid"
status_is 1 "a missing table exits 1" run j6
like "$(cat "$TAP_OUT")" "cannot open table '$T/nope.csv'" "the message names the path"

# A bad line in the table: the start fails with its line number.
printf '{"uid":1,"a":1}\n{"uid":2,\n' >"$T/broken.jsonl"
pipeline j7 "$T/events.jsonl" no "    type: join
    table: $T/broken.jsonl
    on: uid"
status_is 1 "a table with a bad line exits 1" run j7
like "$(cat "$TAP_OUT")" "broken.jsonl.*1 bad line.*line 2" "the message names the file and line"

# Bad options: exit 2 with file:line:col.
pipeline j8 "$T/events.jsonl" no "    type: join
    table: $T/users.txt
    on: []
    how: outer
    reload: -1s"
status_is 2 "join with bad options exits 2" run j8
like "$(cat "$TAP_OUT")" "j8.yaml:[0-9]+:[0-9]+: .*(inner|outer)" "a bad 'how' at file:line:col"
pipeline j9 "$T/events.jsonl" no "    type: join
    table: $T/users.txt
    on: []"
status_is 2 "join with an unknown extension exits 2" run j9
like "$(cat "$TAP_OUT")" "j9.yaml:[0-9]+:[0-9]+: .*cannot tell the format" \
    "the table's format problem at file:line:col"
like "$(cat "$TAP_OUT")" "j9.yaml:[0-9]+:[0-9]+: .*on.*at least one key" \
    "an empty 'on' at file:line:col"

# ---- reload during a follow-mode run --------------------------------------------
F=$(tmpdir follow)
echo '{"sku":"s1","price":1}' >"$F/table.jsonl"
echo '{"sku":"s1","n":1}' >"$F/in.jsonl"
cat >"$F/p.yaml" <<EOF
pipeline: reload
sources:
  in:
    type: file
    path: $F/in.jsonl
    format: json
    mode: follow
operators:
  op:
    type: join
    input: in
    table: $F/table.jsonl
    on: sku
    reload: 100ms
sinks:
  out:
    type: file
    input: op
    path: $F/out.jsonl
    format: json
EOF
"$SLUICE" run "$F/p.yaml" >"$F/log" 2>&1 &
pid=$!

price_of() { jq -r "select(.n == $1) | .price" "$F/out.jsonl" 2>/dev/null | grep -qx -- "$2"; }
logged() { grep -Eq -- "$1" "$F/log"; }
reloads() { [ "$(grep -c "reloaded table .*: 1 keys" "$F/log")" -ge "$1" ]; }

ok "the first record is enriched from the table at start" wait_for $TIMEOUT price_of 1 1
# Replace the table the safe way (write, then rename over it).
echo '{"sku":"s1","price":2}' >"$F/table.new" && mv "$F/table.new" "$F/table.jsonl"
ok "the changed table is reloaded" wait_for $TIMEOUT reloads 1
echo '{"sku":"s1","n":2}' >>"$F/in.jsonl"
ok "a record after the reload gets the new value" wait_for $TIMEOUT price_of 2 2

# A broken rewrite: logged as an error, the old table keeps serving.
printf '{"sku":"s1","price":\n' >"$F/table.new" && mv "$F/table.new" "$F/table.jsonl"
ok "a bad reload is logged as an error" wait_for $TIMEOUT logged "ERROR.*reloading failed"
echo '{"sku":"s1","n":3}' >>"$F/in.jsonl"
ok "after a bad reload the previous table still serves" wait_for $TIMEOUT price_of 3 2

# Fixed again, in place this time (mtime and size change, same inode).
echo '{"sku":"s1","price":30}' >"$F/table.jsonl"
ok "an in-place rewrite is reloaded" wait_for $TIMEOUT reloads 2
echo '{"sku":"s1","n":4}' >>"$F/in.jsonl"
ok "and its value is used" wait_for $TIMEOUT price_of 4 30

kill -TERM $pid
wait $pid
st=$?
is "$st" 0 "SIGTERM: the follow run drains and exits 0"
[ "$st" = 0 ] || diag "$(cat "$F/log")"
is "$(jq -c '[.n, .price]' "$F/out.jsonl" | tr '\n' ' ')" "[1,1] [2,2] [3,2] [4,30] " \
    "every record once, each with the table of its time"

done_testing
