#!/usr/bin/env bash
# signals.sh — SIGINT/SIGTERM drain a running pipeline and exit 0; a second
# signal exits at once (status 130) even when the drain cannot finish; the
# live status line appears on a terminal and never when stderr is a file.
. "$(dirname "$0")/../lib/tap.sh"

dir=$(tmpdir)

# An endless source into a file sink: the first signal drains and exits 0.
cat >"$dir/endless.yaml" <<YAML
sources:
  gen: {type: generate, rate: 2000, fields: {n: seq()}}
sinks:
  out: {type: file, input: gen, path: $dir/endless.jsonl}
YAML
for sig in INT TERM; do
    : >"$dir/endless.jsonl"
    "$SLUICE" run --quiet "$dir/endless.yaml" 2>"$dir/err" &
    pid=$!
    wait_for 10 test -s "$dir/endless.jsonl" || diag "no output yet"
    kill -$sig $pid
    wait $pid
    is "$?" 0 "SIG$sig drains the pipeline and exits 0"
    n=$(wc -l <"$dir/endless.jsonl")
    last=$(tail -n 1 "$dir/endless.jsonl" | jq -r .n)
    is "$last" "$((n - 1))" "SIG$sig: every record read before the signal was written ($n)"
done

# A sink stuck writing into a FIFO nobody reads: the drain cannot finish,
# and the second signal ends the process at once.
mkfifo "$dir/stuck"
exec 9<>"$dir/stuck"   # keep a reader so open() succeeds, but never read
cat >"$dir/stuck.yaml" <<YAML
sources:
  gen: {type: generate, fields: {n: seq(), pad: "padding padding padding padding"}}
sinks:
  out: {type: file, input: gen, path: $dir/stuck}
YAML
"$SLUICE" run "$dir/stuck.yaml" 2>"$dir/err2" &
pid=$!
# Signal only once sluice itself runs (not the libtool wrapper before it).
wait_for 20 grep -q "starting" "$dir/err2" || diag "sluice did not start"
sleep 0.3
kill -TERM $pid
sleep 0.3
kill -0 $pid 2>/dev/null
is "$?" 0 "after one signal the drain waits for the stuck sink"
kill -TERM $pid
start=${EPOCHREALTIME/./}
wait $pid
st=$?
took=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
is "$st" 130 "the second signal exits at once with status 130"
_tap_result $(( took > 2000 )) "and promptly (${took} ms)"
like "$(cat "$dir/err2")" "second signal" "saying why"
exec 9<&-

# The status line: on a terminal (script(1) gives the run a pty), not otherwise.
require_cmd script || done_testing
cat >"$dir/slow.yaml" <<YAML
sources:
  gen: {type: generate, rate: 500, count: 1200, fields: {n: seq()}}
sinks:
  out: {type: file, input: gen, path: $dir/slow.jsonl}
YAML
script -qec "$SLUICE run $dir/slow.yaml" /dev/null >"$dir/tty.out" 2>&1
is "$?" 0 "a run on a terminal ends by itself"
like "$(tr '\r' '\n' <"$dir/tty.out")" "gen [0-9.k]+ rec/s .*\| out [0-9.k]+ \| errors 0" \
    "a live status line with records/s, records out and errors is drawn"
script -qec "$SLUICE run --quiet $dir/slow.yaml" /dev/null >"$dir/tty-quiet.out" 2>&1
unlike "$(cat "$dir/tty-quiet.out")" "rec/s" "--quiet turns it off"
"$SLUICE" run "$dir/slow.yaml" 2>"$dir/file.err"
unlike "$(cat "$dir/file.err")" "rec/s" "no status line when stderr is not a terminal"
done_testing
