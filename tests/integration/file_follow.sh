#!/usr/bin/env bash
# file_follow.sh — the file source in `mode: follow`, like tail -F, against
# a running `sluice run`: lines appended later arrive, a line still being
# written waits for its newline, a rotated file (mv + new file) is finished
# and the new one read, a truncated file is read again from its start, a
# glob picks up files created later; SIGTERM drains and exits 0.
#
# Every wait polls the output with a timeout (wait_for), never a fixed sleep,
# except one short pause that checks something does NOT arrive.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing

T=$(tmpdir)
TIMEOUT=10

has_lines() { [ "$(lines_in "$1")" -ge "$2" ]; }
messages() { jq -r .message "$1" | tr '\n' ' '; }
last_is() { [ "$(jq -r .message "$T/follow.out" | tail -1)" = "$1" ]; }

# ---- one followed file ---------------------------------------------------------
printf '{"message":"existing 1"}\n{"message":"existing 2"}\n' >"$T/app.log"
cat >"$T/follow.yaml" <<EOF
pipeline: follow
sources:
  in:
    type: file
    path: $T/app.log
    mode: follow
sinks:
  out:
    type: file
    input: in
    path: $T/follow.out
EOF
"$SLUICE" run --quiet "$T/follow.yaml" >"$T/follow.log" 2>&1 &
pid=$!

ok "lines already in the file arrive" wait_for $TIMEOUT has_lines "$T/follow.out" 2
for i in 1 2 3; do echo "{\"message\":\"appended $i\"}" >>"$T/app.log"; done
ok "appended lines arrive" wait_for $TIMEOUT has_lines "$T/follow.out" 5
is "$(messages "$T/follow.out")" "existing 1 existing 2 appended 1 appended 2 appended 3 " \
    "in order, nothing lost"

printf '{"message":"half ' >>"$T/app.log"
sleep 0.4
is "$(lines_in "$T/follow.out")" 5 "a line without its newline waits"
printf 'written"}\n' >>"$T/app.log"
ok "the line arrives once its newline is written" wait_for $TIMEOUT has_lines "$T/follow.out" 6
is "$(jq -r .message "$T/follow.out" | tail -1)" "half written" "the line is whole"

# Rotation by rename: the old file's last lines, then the new file's.
echo '{"message":"before rotation"}' >>"$T/app.log"
mv "$T/app.log" "$T/app.log.1"
echo '{"message":"old file, after rename"}' >>"$T/app.log.1"
printf '{"message":"new 1"}\n{"message":"new 2"}\n{"message":"new 3"}\n' >"$T/app.log"
ok "after rotation the new file's lines arrive" wait_for $TIMEOUT last_is "new 3"
like "$(messages "$T/follow.out")" "before rotation .*new 1 new 2 new 3 $" "rotation: new file read from its start"
like "$(messages "$T/follow.out")" "before rotation" "rotation: the old file's last line arrived"

# Truncation (copytruncate): the file is read again from offset 0.
cp "$T/app.log" "$T/app.log.2"
: >"$T/app.log"
echo '{"message":"t1"}' >>"$T/app.log"
ok "after truncation new lines arrive" wait_for $TIMEOUT last_is t1
echo '{"message":"t2"}' >>"$T/app.log"
ok "and keep arriving" wait_for $TIMEOUT last_is t2

kill -TERM $pid
wait $pid
st=$?
is "$st" 0 "SIGTERM: sluice drains and exits 0"
[ "$st" = 0 ] || diag "$(cat "$T/follow.log")"
is "$(jq -r .message "$T/follow.out" | grep -c '^new [123]$')" 3 "every rotated-in line once"
is "$(jq -r .message "$T/follow.out" | grep -c '^t[12]$')" 2 "every line after truncation once"

# ---- a followed glob: files created later, plain lines -------------------------
G=$(tmpdir logs)
echo "a first" >"$G/a.log"
cat >"$T/glob.yaml" <<EOF
pipeline: follow_glob
sources:
  in:
    type: file
    path: $G/*.log
    format: lines
    mode: follow
sinks:
  out:
    type: file
    input: in
    path: $T/glob.out
    format: lines
EOF
"$SLUICE" run --quiet "$T/glob.yaml" >"$T/glob.log" 2>&1 &
pid=$!
ok "glob: the existing file is read" wait_for $TIMEOUT has_lines "$T/glob.out" 1
echo "b first" >"$G/b.log"
ok "glob: a file created later is picked up" wait_for $TIMEOUT has_lines "$T/glob.out" 2
echo "a second" >>"$G/a.log"
echo "b second" >>"$G/b.log"
ok "glob: both files keep being followed" wait_for $TIMEOUT has_lines "$T/glob.out" 4
echo "not matched" >"$G/c.txt"
mv "$G/a.log" "$G/a.log.old"   # no longer matches; its lines were read already
echo "a new" >"$G/a.log"
ok "glob: rotated file's successor read" wait_for $TIMEOUT has_lines "$T/glob.out" 5
is "$(sort "$T/glob.out" | tr '\n' '|')" "a first|a new|a second|b first|b second|" \
    "glob: every line once, nothing from unmatched files"

kill -TERM $pid
wait $pid
is "$?" 0 "SIGTERM: exit 0"

# ---- follow mode waits for a file that does not exist yet -----------------------
cat >"$T/later.yaml" <<EOF
pipeline: follow_later
sources:
  in:
    type: file
    path: $T/later.log
    format: lines
    mode: follow
sinks:
  out:
    type: file
    input: in
    path: $T/later.out
    format: lines
EOF
"$SLUICE" run --quiet "$T/later.yaml" >"$T/later.log.err" 2>&1 &
pid=$!
ok "the sink's file is created at start" wait_for $TIMEOUT test -f "$T/later.out"
ok "sluice keeps running while the file is missing" kill -0 $pid
echo "finally" >"$T/later.log"
ok "the file is read once it appears" wait_for $TIMEOUT has_lines "$T/later.out" 1
kill -TERM $pid
wait $pid
is "$?" 0 "SIGTERM: exit 0"

done_testing
