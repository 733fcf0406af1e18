#!/usr/bin/env bash
# filter_map.sh — the `filter` and `map` operators end to end through
# `sluice run`: file -> filter -> file and file -> map -> file on small JSON
# inputs, each compared with what jq computes from the same input; a Lua
# syntax error in `where:`/`set:` is a configuration error (exit 2,
# file:line:col); a runtime error sends the record to the `errors` stream
# and loses nothing else; the sandbox refuses os/io at load time.
#
# Outputs are compared in jq's normal form with sorted keys (`jq -cS .`),
# so the check is on values and types, not on spacing or key order.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing

T=$(tmpdir)

run() { "$SLUICE" run --quiet "$T/$1.yaml"; }
norm() { jq -cS . "$@"; }

# operator NAME TYPE INPUT_FILE OPERATOR_YAML_LINES: file -> operator -> file
# ($T/NAME.out); with `errors: bad` the errors go to $T/NAME.errors.
operator() {
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  in:
    type: file
    path: $3
    format: json
operators:
  op:
    type: $2
    input: in
$4
sinks:
  out:
    type: file
    input: op
    path: $T/$1.out
    format: json
EOF
    if grep -q 'errors: bad' "$T/$1.yaml"; then
        cat >>"$T/$1.yaml" <<EOF
  rejected:
    type: file
    input: bad
    path: $T/$1.errors
    format: json
EOF
    fi
}

cat >"$T/access.jsonl" <<'EOF'
{"ts":1,"service":"api","method":"GET","path":"/api/users","status_code":200,"bytes":2048,"response_time":0.12,"user":{"id":7,"geo":{"country":"NO"}}}
{"ts":2,"service":"api","method":"POST","path":"/api/login","status_code":401,"bytes":512,"response_time":0.03,"user":{"id":12}}
{"ts":3,"service":"web","method":"GET","path":"/index.html","status_code":404,"bytes":0,"response_time":0.01}
{"ts":4,"service":"api","method":"GET","path":"/api/orders","status_code":500,"bytes":128,"response_time":1.5,"user":{"id":42,"geo":{"country":"SE"}}}
{"ts":5,"service":"health","method":"GET","path":"/healthz","status_code":200,"bytes":2,"response_time":0.001,"user":null}
{"ts":6,"service":"api","method":"DELETE","path":"/api/users/3","status_code":503,"bytes":64,"response_time":0.9,"user":{"id":3}}
{"ts":7,"service":"web","method":"GET","path":"/img/a.png","status_code":304,"bytes":0,"response_time":0.002,"type":"static","error":null}
EOF

# filter_vs_jq DESC WHERE JQ_SELECT: the filter keeps exactly jq's records, in order.
filter_vs_jq() {
    local name=f$((++_case))
    operator "$name" filter "$T/access.jsonl" "    where: '$2'"
    ok "filter runs: $1" run "$name" || return
    is "$(norm "$T/$name.out")" "$(jq -cS "select($3)" "$T/access.jsonl")" "filter = jq: $1"
}
_case=0

# ---- filter -------------------------------------------------------------------
filter_vs_jq "comparison" 'status_code >= 400' '.status_code >= 400'
filter_vs_jq "and/or/not" 'service == "api" and not (status_code < 500) or method == "POST"' \
    '.service == "api" and (.status_code < 500 | not) or .method == "POST"'
filter_vs_jq "path into nested JSON" 'user.id ~= nil and user.id > 10' \
    '.user.id != null and .user.id > 10'
filter_vs_jq "deeper path" 'user.geo.country == "SE"' '.user.geo.country == "SE"'
filter_vs_jq "string functions" 'path:sub(1, 5) == "/api/" and #path > 10' \
    '(.path | startswith("/api/")) and (.path | length) > 10'
filter_vs_jq "absent field is nil" 'type == "static"' '.type == "static"'
filter_vs_jq "truthiness: a present value passes" 'user' '.user != null'
filter_vs_jq "nothing passes" 'false' 'false'

# A bigger input crosses batch boundaries (batch_size 4096).
seq 1 20000 | jq -c '{n: ., status_code: (if . % 7 == 0 then 500 else 200 end), s: ("r" + tostring)}' \
    >"$T/many.jsonl"
operator many filter "$T/many.jsonl" "    where: status_code == 500 and n % 2 == 1"
ok "filter over 20000 records runs" run many
is "$(norm "$T/many.out" | md5sum)" \
    "$(jq -cS 'select(.status_code == 500 and .n % 2 == 1)' "$T/many.jsonl" | md5sum)" \
    "filter over 20000 records = jq (order kept)"

# ---- map ------------------------------------------------------------------------
operator map1 map "$T/access.jsonl" '    set:
      kb: bytes / 1024
      route: method .. " " .. path
      slow: response_time > 0.5
      uid: user.id
      class: status_code >= 500 and "server" or status_code >= 400 and "client" or "ok"
      status_code: status_code + 0.5
      tags: "{ service, method }"
    drop: [user, response_time, ts]'
ok "map runs" run map1
is "$(norm "$T/map1.out")" "$(jq -cS '
    . + {kb: (.bytes / 1024), route: (.method + " " + .path), slow: (.response_time > 0.5),
         uid: .user.id,
         class: (if .status_code >= 500 then "server" elif .status_code >= 400 then "client" else "ok" end),
         status_code: (.status_code + 0.5), tags: [.service, .method]}
    | del(.user, .response_time, .ts)' "$T/access.jsonl")" \
    "map = jq: set (against the original record), drop"
is "$(jq -r '.uid | type' "$T/map1.out" | sort -u | tr '\n' ' ')" "null number " \
    "a nil result is a null field; an integer stays a number"

operator swap map "$T/access.jsonl" '    set:
      method: service
      service: method'
ok "map swap runs" run swap
is "$(jq -c '[.method, .service]' "$T/swap.out" | head -2 | tr '\n' ' ')" \
    '["api","GET"] ["api","POST"] ' "every set expression sees the original record"

operator droponly map "$T/access.jsonl" '    drop: user'
ok "map with only drop runs" run droponly
is "$(norm "$T/droponly.out")" "$(jq -cS 'del(.user)' "$T/access.jsonl")" "drop alone = jq del"

# ---- runtime errors go to `errors`, nothing else is lost ----------------------------
cat >"$T/mixed.jsonl" <<'EOF'
{"id":1,"bytes":5000}
{"id":2,"bytes":"lots"}
{"id":3,"bytes":10}
{"id":4}
{"id":5,"bytes":7000}
EOF
operator ferr filter "$T/mixed.jsonl" '    where: bytes > 1000
    errors: bad'
ok "filter with runtime errors runs (exit 0)" run ferr
is "$(jq -c .id "$T/ferr.out" | tr '\n' ' ')" "1 5 " "records that pass are kept"
is "$(jq -c .id "$T/ferr.errors" | tr '\n' ' ')" "2 4 " "records whose expression failed go to errors"
like "$(jq -r .error "$T/ferr.errors")" 'attempt to compare' "errors carry the Lua message"
is "$(jq -r .stage "$T/ferr.errors" | sort -u)" "op" "errors name the stage"

operator merr map "$T/mixed.jsonl" '    set:
      kb: bytes // 1024
    errors: bad'
ok "map with runtime errors runs (exit 0)" run merr
is "$(jq -c '[.id, .kb]' "$T/merr.out" | tr '\n' ' ')" "[1,4] [3,0] [5,6] " "mapped records are kept"
is "$(jq -c .id "$T/merr.errors" | tr '\n' ' ')" "2 4 " "failing records go to errors, not half-mapped"
like "$(jq -r .error "$T/merr.errors")" '^expr_error: set\.kb: .*attempt to perform arithmetic' \
    "the map error names the field"

operator failfast filter "$T/mixed.jsonl" '    where: bytes > 1000
    on_error: fail'
status_is 1 "on_error: fail stops the run with status 1" run failfast
like "$(cat "$TAP_OUT")" 'attempt to compare' "and says why"

# ---- configuration errors: exit 2 with file:line:col ------------------------------
operator badwhere filter "$T/access.jsonl" '    where: status_code >='
line=$(grep -n 'where:' "$T/badwhere.yaml" | cut -d: -f1)
status_is 2 "a syntax error in where: exits 2" "$SLUICE" validate "$T/badwhere.yaml"
like "$(cat "$TAP_OUT")" "badwhere\.yaml:$line:[0-9]+:.*unexpected symbol" \
    "the message has file:line:col and Lua's text"
status_is 2 "run refuses it too" run badwhere

operator badset map "$T/access.jsonl" '    set:
      ok_one: bytes * 2
      broken: (bytes'
line=$(grep -n 'broken:' "$T/badset.yaml" | cut -d: -f1)
status_is 2 "a syntax error in set: exits 2" "$SLUICE" validate "$T/badset.yaml"
like "$(cat "$TAP_OUT")" "badset\.yaml:$line:[0-9]+:.*expected" "at the bad expression's line"

operator nowhere filter "$T/access.jsonl" ''
status_is 2 "filter without where: exits 2" "$SLUICE" validate "$T/nowhere.yaml"
like "$(cat "$TAP_OUT")" "where" "and names the option"

operator empty map "$T/access.jsonl" ''
status_is 2 "map with neither set nor drop exits 2" "$SLUICE" validate "$T/empty.yaml"

# ---- sandbox ------------------------------------------------------------------------
operator pwn filter "$T/access.jsonl" "    where: os.execute(\"touch $T/pwned\")"
status_is 2 "os.execute is refused at load time" run pwn
like "$(cat "$TAP_OUT")" "not available" "with a message saying what is"
ok "nothing was executed" test ! -e "$T/pwned"

operator loop filter "$T/access.jsonl" '    where: (function() while true do end end)()
    errors: bad'
ok "an endless loop does not hang the run" timeout 20 "$SLUICE" run --quiet "$T/loop.yaml"
is "$(wc -l <"$T/loop.errors" | tr -d ' ')" 7 "each record's loop is stopped and rejected"
like "$(jq -r .error "$T/loop.errors" | sort -u)" "instruction budget exceeded" "by the budget"

done_testing
