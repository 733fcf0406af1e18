#!/usr/bin/env bash
# file_io.sh — the file source and sink in read mode, end to end through
# `sluice run`: json, lines and csv both ways, a glob, 100k records, the
# `errors` stream for malformed input (and nothing else lost), over-long
# lines, and the start-up errors a user meets first (no file, no folder).
#
# Outputs are compared with jq's normal form (`jq -c .`), so the check is on
# values and types (an int stays an int), not on spacing.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing

T=$(tmpdir)

# run NAME: run the pipeline $T/NAME.yaml quietly; the command's output is
# in $TAP_OUT for the caller's diagnostics.
run() { "$SLUICE" run --quiet "$T/$1.yaml"; }

# pipeline NAME SOURCE_PATH SOURCE_FORMAT SINK_PATH SINK_FORMAT [EXTRA_SOURCE_YAML]
pipeline() {
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  in:
    type: file
    path: $2
    format: $3
$6
sinks:
  out:
    type: file
    input: in
    path: $4
    format: $5
EOF
}

same_json() { diff <(jq -c . "$1") <(jq -c . "$2"); }

# ---- json -> json, typed values kept -------------------------------------
cat >"$T/typed.jsonl" <<'EOF'
{"id":1,"name":"alpha","ok":true,"ratio":0.5,"none":null,"neg":-42}
{"id":2,"name":"with \"quotes\" and \\ backslash","ok":false,"ratio":1e-3,"big":9007199254740993}
{"id":3,"name":"unicode é ü 漢字 \u00e9","nested":{"a":[1,2,{"b":"c"}],"d":{}},"list":[1,"x",null]}
{"id":4,"empty":"","tab":"a\tb","nl":"line1\nline2"}
EOF
pipeline json_json "$T/typed.jsonl" json "$T/typed.out" json
ok "json -> json runs" run json_json
ok "json -> json: same values and types (jq -c)" same_json "$T/typed.jsonl" "$T/typed.out"
is "$(jq -r 'select(.id == 2) | .big | type' "$T/typed.out")" number "a big int stays a number"
is "$(jq -c 'select(.id == 3) | .nested.a[2]' "$T/typed.out")" '{"b":"c"}' "nested JSON kept"

# ---- lines both ways: CRLF stripped, empty lines skipped ---------------------
printf 'first line\r\n\nsecond line with "quotes" and {braces}\n\r\n   indented\nlast line without newline' >"$T/plain.txt"
printf 'first line\nsecond line with "quotes" and {braces}\n   indented\nlast line without newline\n' >"$T/plain.want"
pipeline lines_lines "$T/plain.txt" lines "$T/plain.out" lines
ok "lines -> lines runs" run lines_lines
ok "lines -> lines: text kept, CR stripped, empty lines skipped" cmp "$T/plain.want" "$T/plain.out"
pipeline lines_json "$T/plain.txt" lines "$T/plain.json" json
ok "lines -> json runs" run lines_json
is "$(jq -r .message "$T/plain.json")" "$(cat "$T/plain.want")" "lines become a message field"

# ---- csv both ways ------------------------------------------------------------
cat >"$T/people.csv" <<'EOF'
id,name,city,score
1,Ada,London,9.5
2,"Smith, John","New York",7
3,"She said ""hi""",Paris,-1.25
4,plain,"",0
EOF
pipeline csv_json "$T/people.csv" csv "$T/people.json" json
ok "csv -> json runs" run csv_json
is "$(jq -c '[.id, .name, .score]' "$T/people.json" | tr '\n' ' ')" \
    '[1,"Ada",9.5] [2,"Smith, John",7] [3,"She said \"hi\"",-1.25] [4,"plain",0] ' \
    "csv: header names the fields, quoted values, typed numbers"
is "$(jq -r .city "$T/people.json" | tr '\n' '|')" 'London|New York|Paris||' "csv: quoted comma-free and empty values"

pipeline csv_csv "$T/people.csv" csv "$T/people.out.csv" csv
ok "csv -> csv runs" run csv_csv
is "$(head -1 "$T/people.out.csv")" "id,name,city,score" "csv sink writes the header row first"
pipeline csv_back "$T/people.out.csv" csv "$T/people.back.json" json
ok "csv written by the sink reads back" run csv_back
ok "csv -> csv -> json equals csv -> json" same_json "$T/people.json" "$T/people.back.json"

pipeline json_csv "$T/people.json" json "$T/people.fromjson.csv" csv
ok "json -> csv runs" run json_csv
pipeline json_csv_back "$T/people.fromjson.csv" csv "$T/people.fromjson.json" json
ok "json -> csv -> json reads back" run json_csv_back
ok "json -> csv -> json keeps the values" same_json "$T/people.json" "$T/people.fromjson.json"

# ---- a glob of 3 files, read in sorted order --------------------------------------
G=$(tmpdir glob)
for f in c b a; do
    for i in 1 2 3 4 5; do echo "{\"file\":\"$f\",\"i\":$i}"; done >"$G/part-$f.jsonl"
done
echo '{"not":"matched"}' >"$G/other.txt"
pipeline glob "$G/part-*.jsonl" json "$T/glob.out" json
ok "glob of 3 files runs" run glob
is "$(wc -l <"$T/glob.out")" 15 "glob: every line of the 3 files"
ok "glob: files read in sorted order" same_json <(cat "$G"/part-a.jsonl "$G"/part-b.jsonl "$G"/part-c.jsonl) "$T/glob.out"

# ---- 100k records: count and checksum against jq ----------------------------------
awk 'BEGIN { for (i = 0; i < 100000; i++)
    printf "{\"seq\":%d,\"service\":\"svc-%d\",\"latency\":%d.%d,\"ok\":%s,\"path\":\"/api/v1/items/%d\"}\n",
           i, i % 7, i % 1000, i % 10, (i % 3 ? "true" : "false"), i * 31 }' >"$T/big.jsonl"
pipeline big "$T/big.jsonl" json "$T/big.out" json
ok "100k records run" run big
is "$(wc -l <"$T/big.out")" 100000 "100k records out"
is "$(jq -c . "$T/big.out" | md5sum)" "$(jq -c . "$T/big.jsonl" | md5sum)" "100k records: checksum equals jq's"
is "$(jq -s 'map(.seq) | add' "$T/big.out")" 4999950000 "100k records: seq sum"

# ---- malformed lines go to `errors`; every good record still arrives --------------
cat >"$T/mixed.jsonl" <<'EOF'
{"n":1,"v":"good"}
{"n":2,"v":"missing brace"
this is not json at all
{"n":3,"v":"good"}
{"n":4,"v":}
{"n":5,"v":"good"}
[1,2,3]
{"n":6,"v":"good"}
EOF
grep -E '^\{"n":[0-9]+,"v":"good"\}$' "$T/mixed.jsonl" >"$T/mixed.good"
grep -vE '^\{"n":[0-9]+,"v":"good"\}$' "$T/mixed.jsonl" >"$T/mixed.bad"
cat >"$T/bad_json.yaml" <<EOF
pipeline: bad_json
sources:
  in:
    type: file
    path: $T/mixed.jsonl
    format: json
    errors: bad
sinks:
  out:
    type: file
    input: in
    path: $T/mixed.out
  errs:
    type: file
    input: bad
    path: $T/mixed.err
EOF
ok "bad JSON does not stop the run" run bad_json
ok "bad JSON: every good record in the main output" same_json "$T/mixed.good" "$T/mixed.out"
is "$(wc -l <"$T/mixed.err")" "$(wc -l <"$T/mixed.bad")" "bad JSON: one errors record per bad line"
is "$(jq -r .raw "$T/mixed.err")" "$(cat "$T/mixed.bad")" "bad JSON: raw holds each bad line"
# `error` holds the reason (the runtime may word it), `stage` the source.
is "$(jq -r '[(.error | type == "string" and length > 0), .stage] | @tsv' "$T/mixed.err" | sort -u)" \
    "$(printf 'true\tin')" "bad JSON: error and stage fields"

cat >"$T/mixed.csv" <<'EOF'
a,b,c
1,2,3
1,2
4,5,6
7,8,9,10
"x,y",z,w
EOF
cat >"$T/bad_csv.yaml" <<EOF
pipeline: bad_csv
sources:
  in:
    type: file
    path: $T/mixed.csv
    format: csv
    errors: bad
sinks:
  out:
    type: file
    input: in
    path: $T/mixedcsv.out
  errs:
    type: file
    input: bad
    path: $T/mixedcsv.err
EOF
ok "wrong CSV arity does not stop the run" run bad_csv
is "$(jq -c '[.a, .b, .c]' "$T/mixedcsv.out" | tr '\n' ' ')" '[1,2,3] [4,5,6] ["x,y","z","w"] ' \
    "bad CSV: every good row in the main output"
is "$(jq -r .raw "$T/mixedcsv.err" | tr '\n' '|')" '1,2|7,8,9,10|' "bad CSV: raw holds each bad row"
like "$(jq -r .error "$T/mixedcsv.err")" "bad_csv|column" "bad CSV: error field"

# ---- an over-long line is rejected, the rest still read -----------------------------
{
    echo '{"n":1}'
    printf '{"long":"%s"}\n' "$(head -c 5000 /dev/zero | tr '\0' x)"
    echo '{"n":2}'
} >"$T/long.jsonl"
cat >"$T/long.yaml" <<EOF
pipeline: long
sources:
  in:
    type: file
    path: $T/long.jsonl
    max_line: 1KiB
    read_buffer: 4KiB
    errors: bad
sinks:
  out:
    type: file
    input: in
    path: $T/long.out
  errs:
    type: file
    input: bad
    path: $T/long.err
EOF
ok "an over-long line does not stop the run" run long
is "$(jq -c .n "$T/long.out" | tr '\n' ' ')" "1 2 " "over-long line: the other lines arrive"
like "$(jq -r .error "$T/long.err")" "line_too_long|longer than max_line" "over-long line: rejected as line_too_long"
is "$(jq -r '.raw | length' "$T/long.err")" 1024 "over-long line: raw is its first KiB"

# ---- append: true --------------------------------------------------------------------
echo '{"n":0}' >"$T/appended.out"
cat >"$T/append.yaml" <<EOF
pipeline: append
sources:
  in:
    type: file
    path: $T/typed.jsonl
sinks:
  out:
    type: file
    input: in
    path: $T/appended.out
    append: true
EOF
ok "append: true runs" run append
is "$(wc -l <"$T/appended.out")" 5 "append: true keeps what the file held"
ok "without append the file is truncated" run json_json
is "$(wc -l <"$T/typed.out")" 4 "default: the sink truncates at start"

# ---- start-up errors name the path --------------------------------------------------
pipeline nomatch "$T/nothing-*.jsonl" json "$T/x.out" json
status_is 1 "a glob that matches nothing fails the run" run nomatch
like "$(cat "$TAP_OUT")" "no file matches '$T/nothing-\*.jsonl'" "it says which pattern matched nothing"

pipeline nofile "$T/missing.jsonl" json "$T/x.out" json
status_is 1 "a missing file fails the run" run nofile
like "$(cat "$TAP_OUT")" "$T/missing.jsonl.*No such file" "it names the file and the reason"

pipeline nodir "$T/typed.jsonl" json "$T/no/such/dir/out.jsonl" json
status_is 1 "a sink into a missing folder fails the run" run nodir
like "$(cat "$TAP_OUT")" "$T/no/such/dir/out.jsonl.*No such file or directory" \
    "it names the path and the reason"

if [ -w /dev/full ]; then
    pipeline full "$T/typed.jsonl" json /dev/full json
    status_is 1 "a write error (ENOSPC) fails the run" run full
    like "$(cat "$TAP_OUT")" "No space left on device" "it says why"
fi

done_testing
