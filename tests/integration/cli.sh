#!/bin/bash
# cli.sh — the `sluice` command's contract: version, help, exit statuses,
# `plugins`, `validate` with each kind of configuration error reported as
# FILE:LINE:COL: (exit 2), `graph` as DOT, and a whole run of the demo
# pipeline whose outputs are checked against jq's reading of the input.
. "${SRCDIR:-$(dirname "$0")/../..}/tests/lib/tap.sh"

[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"
T=$(tmpdir)
out() { cat "$TAP_OUT"; }
# Run from a scratch folder (a run may leave .sluice/ behind); the example's
# relative input path is replaced by its absolute one.
cd "$T" || bail_out "cannot cd to $T"
example=$SRCDIR/etc/examples/log-analysis.yaml
input=$SRCDIR/etc/examples/data/access.jsonl
at_input=(--set "sources.logs.path=$input"
          --set "operators.rate.script=$SRCDIR/etc/examples/scripts/error_rate.lua")

# ---- version, help, usage errors ------------------------------------------
status_is 0 "sluice version exits 0" "$SLUICE" version
like "$(out)" '^sluice [0-9]+\.[0-9]+\.[0-9]+' "sluice version prints a version"
status_is 0 "sluice --help exits 0" "$SLUICE" --help
like "$(out)" '[Uu]sage' "sluice --help shows usage"
for cmd in run validate plugins graph version; do
    status_is 0 "sluice $cmd --help exits 0" "$SLUICE" "$cmd" --help
    like "$(out)" "[Uu]sage: sluice $cmd" "sluice $cmd --help shows its usage"
done
status_is 2 "an unknown command exits 2" "$SLUICE" frobnicate
like "$(out)" 'frobnicate' "and names the command"
status_is 2 "no command at all exits 2" "$SLUICE"
status_is 2 "run without a file exits 2" "$SLUICE" run
status_is 2 "an unknown option of run exits 2" "$SLUICE" run --no-such-flag x.yaml

# ---- plugins ----------------------------------------------------------------
status_is 0 "sluice plugins exits 0" "$SLUICE" plugins
listing=$(out)
for p in file console generate socket filter map; do
    like "$listing" "^[[:space:]]*${p}[[:space:]]" "sluice plugins lists $p"
done
status_is 0 "sluice plugins file exits 0" "$SLUICE" plugins file
described=$(out)
like "$described" '^[[:space:]]+path[[:space:]]' "sluice plugins file shows the path option"
path_help=$(awk '/^[[:space:]]+path[[:space:]]/ { getline; print; exit }' <<<"$described")
like "$path_help" '[[:alpha:]]{3,}' "and its help text"
status_is 2 "sluice plugins NOSUCH exits 2" "$SLUICE" plugins nosuchplugin

# ---- validate: the example, then one mistake per file -----------------------
status_is 0 "validate etc/examples/log-analysis.yaml exits 0" \
    "$SLUICE" validate "${at_input[@]}" "$example"

# bad_config NAME LINE REGEX: validating $T/NAME.yaml (from stdin) exits 2
# with "FILE:LINE:COL: message" where the message matches REGEX.
bad_config() {
    local name=$1 line=$2 re=$3 f=$T/$1.yaml
    cat >"$f"
    status_is 2 "$name: validate exits 2" "$SLUICE" validate "$f"
    like "$(out)" "^$f:$line:[0-9]+: .*$re" "$name: reported as FILE:$line:COL: with the reason"
}

bad_config unknown-type 4 'nosuch' <<'EOF'
pipeline: t
sources:
  src:
    type: nosuch
sinks:
  out: {type: console, input: src}
EOF

bad_config unknown-option 5 'colour' <<'EOF'
pipeline: t
sources:
  src:
    type: generate
    colour: red
sinks:
  out: {type: console, input: src}
EOF

bad_config wrong-type 5 'count' <<'EOF'
pipeline: t
sources:
  src:
    type: generate
    count: lots
sinks:
  out: {type: console, input: src}
EOF

bad_config missing-required '(5|6)' 'path' <<'EOF'
pipeline: t
sources:
  src: {type: generate, count: 1}
sinks:
  out:
    type: file
    input: src
EOF

bad_config unknown-input 7 'nowhere' <<'EOF'
pipeline: t
sources:
  src: {type: generate, count: 1}
sinks:
  out:
    type: console
    input: nowhere
EOF

bad_config cycle '(7|11)' 'cycle' <<'EOF'
pipeline: t
sources:
  src: {type: generate, count: 1}
operators:
  a:
    type: map
    input: [src, b]
    set: {x: 1}
  b:
    type: filter
    input: a
    where: x == 1
sinks:
  out: {type: console, input: b}
EOF
unlike "$(out)" "'out'.*cycle" "cycle: the sink downstream of it is not said to be on it"

bad_config unused-stage '(5|6)' 'lonely' <<'EOF'
pipeline: t
sources:
  src: {type: generate, count: 1}
operators:
  lonely:
    type: filter
    input: src
    where: seq > 0
sinks:
  out: {type: console, input: src}
EOF

# ---- graph ------------------------------------------------------------------
status_is 0 "graph of the example exits 0" "$SLUICE" graph "${at_input[@]}" "$example"
dot=$(out)
like "$dot" '^[[:space:]]*(strict[[:space:]]+)?digraph' "graph prints a DOT digraph"
for stage in logs enrich server_errors show_errors save_enriched save_bad_lines; do
    like "$dot" "$stage" "graph names stage $stage"
done

# ---- run the demo pipeline to its end ---------------------------------------
require_cmd jq
export OUT_DIR=$T/demo
mkdir -p "$OUT_DIR"
status_is 0 "run of the example ends by itself with exit 0" \
    timeout 120 "$SLUICE" run --quiet "${at_input[@]}" "$example"
console=$(out)
enriched=$OUT_DIR/enriched.jsonl
bad=$OUT_DIR/bad_lines.jsonl

good_in=$(jq -cR 'fromjson?' "$input" | wc -l)
all_in=$(wc -l <"$input")
is "$(wc -l <"$enriched" 2>/dev/null)" "$good_in" \
    "enriched output has every decodable input line ($good_in of $all_in)"
is "$(wc -l <"$bad" 2>/dev/null)" "$((all_in - good_in))" "the malformed lines went to bad_lines"
is "$(jq -s 'map(select(.error != null and .stage == "logs" and (.raw | type) == "string")) | length' "$bad" 2>/dev/null)" \
    "$((all_in - good_in))" "each bad line carries error, stage and raw"
is "$(jq -s 'map(select(.slow == (.response_time > 1.0) and .kb == .bytes / 1024
                        and (has("user_agent") | not))) | length' "$enriched" 2>/dev/null)" \
    "$good_in" "every enriched record has slow and kb set and user_agent dropped"
is "$(jq -r '[.service, .status_code, .path] | @tsv' "$enriched" 2>/dev/null | sort | md5sum)" \
   "$(jq -rR 'fromjson? | [.service, .status_code, .path] | @tsv' "$input" | sort | md5sum)" \
    "the enriched records are the input's records"
like "$console" 'checkout' "the console shows the server errors (checkout's burst)"
like "$console" '(^|[[:space:]|])50[234]([[:space:]|]|$)' "with their status codes"
unlike "$console" '(^|[[:space:]|])200([[:space:]|]|$)' "and no successful request"

# --set reaches keys that hold dots (Kafka properties are named so): the
# longest existing key wins over splitting at every dot.
dotted=$(tmpdir dotted)
cat >"$dotted/p.yaml" <<'YAML'
pipeline: dotted
metrics: {listen: false}
sources:
  g:
    type: generate
    count: 2
    fields: {id: seq(), a.b: "1"}
sinks:
  out: {type: console, input: g, format: json}
YAML
out=$("$SLUICE" run --quiet --set sources.g.fields.a.b=7 "$dotted/p.yaml" 2>"$dotted/err")
is "$?" 0 "--set of a dotted key: exit 0" || diag "$(cat "$dotted/err")"
like "$out" '"a\.b":7' "--set sources.g.fields.a.b=7 replaced the key a.b"

done_testing
