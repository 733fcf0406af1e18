#!/bin/bash
# generate_console.sh — the generate source and the console sink, end to end.
#
# generate -> file (json): count, seq contiguity, value ranges, choice sets,
# determinism under a seed, pacing under `rate`; a bad template is a config
# error at its line:col; console table (Spark-like header, columns,
# truncation, max_rows) and console json (valid JSON lines).
. "${SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}/tests/lib/tap.sh"

require_cmd jq || done_testing
T=$(tmpdir)

# run_to FILE PIPELINE: run a pipeline, bounded by a timeout, stdout to FILE.
run_to() {
    timeout 30 "$SLUICE" run "$2" >"$1" 2>"$1.err"
    local st=$?
    [ $st -eq 0 ] || { diag "sluice run $2 exited $st"; diag "$(head -c 2000 "$1.err")"; }
    return $st
}

# gen_to_file NAME SEED OUT: a 1000-record generate with a few templates,
# written as JSON lines to OUT.
gen_to_file() {
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  gen:
    type: generate
    count: 1000
    seed: $2
    fields:
      id: seq()
      a: int(10, 20)
      m: choice('GET', "POST", PUT)
      n: choice(200, 404, 2.5)
      f: float(0, 1)
      g: normal(100, 15)
      u: uuid()
      t: now()
      ts: now_iso()
      env: prod
sinks:
  out:
    type: file
    input: gen
    path: $3
    format: json
EOF
    run_to "$T/$1.stdout" "$T/$1.yaml"
}

# ---- generate -> file ------------------------------------------------------

ok "generate count=1000 seed=42 runs to the end" gen_to_file g1 42 "$T/out1.jsonl"
is "$(wc -l <"$T/out1.jsonl" | tr -d ' ')" 1000 "exactly 1000 lines"
is "$(jq -s '[.[].id] == [range(0; 1000)]' "$T/out1.jsonl")" true "seq() is 0..999, contiguous, in order"
is "$(jq -s 'all(.[]; (.a | type) == "number" and .a == (.a | floor) and .a >= 10 and .a <= 20)' "$T/out1.jsonl")" \
    true "int(10, 20) values are integers within [10, 20]"
is "$(jq -s '[.[].a] | unique | length' "$T/out1.jsonl")" 11 "int(10, 20) covers all 11 values"
is "$(jq -s 'all(.[]; .f >= 0 and .f < 1)' "$T/out1.jsonl")" true "float(0, 1) values are within [0, 1)"
is "$(jq -s '[.[].m] | unique | join(",")' "$T/out1.jsonl")" '"GET,POST,PUT"' \
    "choice('GET', \"POST\", PUT) gives exactly those strings"
is "$(jq -s '[.[].n] | unique | map(tostring) | join(",")' "$T/out1.jsonl")" '"2.5,200,404"' \
    "choice(200, 404, 2.5) gives numbers, not strings"
is "$(jq -s '([.[].g] | add / length) as $m | ($m > 97 and $m < 103)' "$T/out1.jsonl")" true \
    "normal(100, 15) has a mean near 100"
is "$(jq -s 'all(.[]; .u | test("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"))' "$T/out1.jsonl")" \
    true "uuid() gives version-4 UUIDs"
is "$(jq -s '[.[].u] | unique | length' "$T/out1.jsonl")" 1000 "uuid() values are all different"
now_ms=$(( ${EPOCHREALTIME/./} / 1000 ))
is "$(jq -s --argjson now "$now_ms" 'all(.[]; (.t | type) == "number" and .t <= $now and .t > $now - 60000)' "$T/out1.jsonl")" \
    true "now() is the current epoch time in ms"
is "$(jq -s 'all(.[]; .ts | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"))' "$T/out1.jsonl")" \
    true "now_iso() is ISO-8601 UTC with milliseconds"
is "$(jq -s 'all(.[]; .env == "prod")' "$T/out1.jsonl")" true "a plain literal is a constant string"

ok "the same pipeline with the same seed runs again" gen_to_file g2 42 "$T/out2.jsonl"
ok "same seed -> identical values (now() fields aside)" \
    cmp <(jq -c 'del(.t, .ts)' "$T/out1.jsonl") <(jq -c 'del(.t, .ts)' "$T/out2.jsonl")
ok "another seed runs" gen_to_file g3 7 "$T/out3.jsonl"
fails "another seed -> different values" \
    cmp <(jq -c 'del(.t, .ts)' "$T/out1.jsonl") <(jq -c 'del(.t, .ts)' "$T/out3.jsonl")

# ---- pacing ----------------------------------------------------------------

cat >"$T/rate.yaml" <<EOF
pipeline: rate
sources:
  gen:
    type: generate
    rate: 200
    count: 100
sinks:
  out:
    type: file
    input: gen
    path: $T/rate.jsonl
    format: json
EOF
t0=${EPOCHREALTIME/./}
ok "rate: 200 with count: 100 runs to the end" run_to "$T/rate.stdout" "$T/rate.yaml"
t1=${EPOCHREALTIME/./}
elapsed_ms=$(( (t1 - t0) / 1000 ))
diag "100 records at 200/s took ${elapsed_ms} ms"
is "$(( elapsed_ms >= 400 ))" 1 "rate: 200 paces 100 records over at least 0.4 s"
is "$(jq -s '[.[].seq] == [range(0; 100)]' "$T/rate.jsonl")" true \
    "without fields, records have one field seq: 0..99"

# ---- configuration errors ----------------------------------------------------

cat >"$T/bad.yaml" <<'EOF'
sources:
  gen:
    type: generate
    count: 10
    fields:
      ok: seq()
      a: int(5)
sinks:
  out:
    type: console
    input: gen
EOF
status_is 2 "a bad template (int(5)) fails validation with exit status 2" \
    "$SLUICE" validate "$T/bad.yaml"
like "$(cat "$TAP_OUT")" "bad\.yaml:7:(7|10): .*int" "the error names bad.yaml:7 (the field a) and int()"

cat >"$T/badrate.yaml" <<'EOF'
sources:
  gen:
    type: generate
    rate: -5
sinks:
  out:
    type: console
    input: gen
EOF
status_is 2 "a negative rate fails validation with exit status 2" "$SLUICE" validate "$T/badrate.yaml"
like "$(cat "$TAP_OUT")" "badrate\.yaml:4:[0-9]+: .*rate" "the error points at the rate line"

# ---- console: table --------------------------------------------------------

cat >"$T/table.yaml" <<'EOF'
pipeline: table
sources:
  gen:
    type: generate
    count: 5
    seed: 1
    fields:
      id: seq()
      long_text: 'this text is much longer than twenty characters'
      code: choice(200, 404)
sinks:
  out:
    type: console
    input: gen
EOF
ok "generate -> console (table) runs" run_to "$T/table.out" "$T/table.yaml"
out=$(cat "$T/table.out")
like "$out" "^Batch: 0$" "a batch header 'Batch: 0'"
like "$out" "^-{43}$" "the header is framed by dashes as in Spark"
like "$out" "^\+-+\+-+\+-+\+$" "an ASCII table border +---+---+"
like "$out" "^\| +id\| +long_text\|code\|$" "the column names, in field order"
like "$out" "^\| +0\|this text is much\.\.\.\| (200|404)\|$" "long cells cut to 20 characters with '...'"
is "$(grep -c '^|' "$T/table.out")" 6 "a header row and 5 data rows"

cat >"$T/rows.yaml" <<'EOF'
pipeline: rows
sources:
  gen:
    type: generate
    count: 30
sinks:
  out:
    type: console
    input: gen
    truncate: 0
EOF
ok "30 records -> console (table) runs" run_to "$T/rows.out" "$T/rows.yaml"
like "$(cat "$T/rows.out")" "^only showing top 20 rows$" "at most 20 rows per batch, then 'only showing top 20 rows'"
like "$(cat "$T/rows.out")" "^\|0  \|$" "truncate: 0 left-aligns as Spark does"

# ---- console: json -----------------------------------------------------------

cat >"$T/json.yaml" <<'EOF'
pipeline: json
sources:
  gen:
    type: generate
    count: 50
    seed: 3
    fields:
      id: seq()
      name: choice('a "quoted" word', plain, 'tab	inside')
      x: float(-1, 1)
sinks:
  out:
    type: console
    input: gen
    format: json
EOF
ok "generate -> console (json) runs" run_to "$T/json.out" "$T/json.yaml"
is "$(wc -l <"$T/json.out" | tr -d ' ')" 50 "one line per record"
ok "every line is a JSON object" jq -se 'all(.[]; type == "object")' "$T/json.out"
is "$(jq -s '[.[].id] == [range(0; 50)]' "$T/json.out")" true "all records, in order"

done_testing
