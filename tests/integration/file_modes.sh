#!/usr/bin/env bash
# file_modes.sh — files sluice creates are 0644 and folders 0755 unless
# configured, never wider whatever the umask (issue 8's safe defaults).
#
# One pipeline creates everything it can: checkpoint folders (nested, not
# there before) and their files (MANIFEST, state), an events_log, a
# shutdown_file, two file sink outputs (one with `mode: "0640"`), and
# writes into a file that existed before with mode 0600. It runs under
# `umask 000` and under `umask 077`; then every file and folder the run
# created is checked with stat -c %a:
#   - files 0644 less the umask (644 under 000, 600 under 077), folders
#     0755 less the umask (755, 700): created with 0644/0755, not
#     0666/0777, so a permissive umask never makes them world-writable;
#   - the sink with `mode: "0640"` gets exactly 640 under both umasks (a
#     configured mode is the user's word, the umask does not narrow it);
#   - the file that existed keeps its 600;
#   - the run did its work: the outputs hold every record, checkpoints
#     completed;
#   - `mode` values that are not octal permission bits, or that take the
#     owner's write permission away, are refused with file:line:col, exit 2.
. "$(dirname "$0")/../lib/tap.sh"

[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
RUN_TIMEOUT=120
sanitized_build && RUN_TIMEOUT=400
N=2000

# run_under UMASK: the pipeline run in $T/uUMASK (everything it makes is
# inside), its config and the file that existed before in $T/cfgUMASK.
run_under() {
    local u=$1 out=$T/u$1 cfg=$T/cfg$1
    mkdir -p "$out" "$cfg"
    chmod 0755 "$out"
    : >"$cfg/existing.jsonl"
    chmod 0600 "$cfg/existing.jsonl"
    cat >"$cfg/p.yaml" <<EOF
pipeline: modes
metrics: {listen: false}
checkpoint: {dir: $out/state/checkpoints, interval: 100ms, retain: 2}
events_log: $out/events.jsonl
shutdown_file: $out/running
sources:
  gen: {type: generate, count: $N, rate: 2000, seed: 7, fields: {n: "seq()"}}
sinks:
  plain: {type: file, input: gen, path: $out/plain.jsonl}
  narrow: {type: file, input: gen, path: $out/narrow.jsonl, mode: "0640"}
  old: {type: file, input: gen, path: $cfg/existing.jsonl}
EOF
    (umask "$u" && exec "$SLUICE" run "$cfg/p.yaml" >"$cfg/run.log" 2>&1) &
    local pid=$!
    wait_exit "$pid"
    local st=$?
    is "$st" 0 "umask $u: the run ends by itself, exit 0" || diag "$(tail -c 2000 "$cfg/run.log")"
}

# check_modes UMASK FILE_MODE DIR_MODE: every file and folder under $T/uUMASK
# (the folder itself excepted) has the mode wanted.
check_modes() {
    local u=$1 want_file=$2 want_dir=$3 out=$T/u$1 bad=0 n_files=0 n_dirs=0 path mode
    while IFS= read -r -d '' path; do
        mode=$(stat -c %a "$path")
        case "$path" in
            "$out/narrow.jsonl") continue ;;   # configured: checked on its own
        esac
        if [ -d "$path" ]; then
            n_dirs=$((n_dirs + 1))
            [ "$mode" = "$want_dir" ] || { diag "folder $path: $mode, want $want_dir"; bad=1; }
        else
            n_files=$((n_files + 1))
            [ "$mode" = "$want_file" ] || { diag "file $path: $mode, want $want_file"; bad=1; }
        fi
    done < <(find "$out" -mindepth 1 -print0)
    diag "umask $u: $n_files files and $n_dirs folders created"
    # state, checkpoints, modes, chk-N at least; events, running, plain,
    # and a MANIFEST at least.
    if [ "$n_dirs" -ge 4 ] && [ "$n_files" -ge 4 ]; then
        pass "umask $u: the run created its folders and files"
    else
        fail "umask $u: the run created its folders and files"
    fi
    is "$bad" 0 "umask $u: files $want_file, folders $want_dir"
}

for u in 000 077; do
    run_under $u
    out=$T/u$u
    is "$(lines_in "$out/plain.jsonl")" $N "umask $u: the plain sink wrote all $N records"
    is "$(lines_in "$out/narrow.jsonl")" $N "umask $u: the sink with mode wrote all $N records"
    is "$(lines_in "$T/cfg$u/existing.jsonl")" $N "umask $u: the sink into an existing file too"
    like "$(cat "$out/events.jsonl" 2>/dev/null)" '"checkpoint_completed"' \
        "umask $u: checkpoints completed (events_log)"
    ok "umask $u: a MANIFEST was written" \
        sh -c "ls '$out'/state/checkpoints/modes/chk-*/MANIFEST"
    ok "umask $u: the shutdown_file was created" test -e "$out/running"
    is "$(stat -c %a "$out/narrow.jsonl")" 640 "umask $u: mode \"0640\" gives exactly 640"
    is "$(stat -c %a "$T/cfg$u/existing.jsonl")" 600 "umask $u: a file that existed keeps its 600"
done
check_modes 000 644 755
check_modes 077 600 700

# A configured mode is also applied to a file that exists with another.
chmod 0666 "$T/u000/narrow.jsonl"
(umask 000 && exec "$SLUICE" run "$T/cfg000/p.yaml" --from-scratch >"$T/cfg000/rerun.log" 2>&1) &
wait_exit $!
is "$?" 0 "a second run (umask 000) ends, exit 0"
is "$(stat -c %a "$T/u000/narrow.jsonl")" 640 "... and sets the existing 666 output back to 640"

# ---- bad modes ------------------------------------------------------------------------
bad_mode() {   # NAME VALUE ERE
    cat >"$T/bad-$1.yaml" <<EOF
pipeline: bad
metrics: {listen: false}
sources:
  gen: {type: generate, count: 1}
sinks:
  out: {type: file, input: gen, path: $T/bad-$1.out, mode: $2}
EOF
    status_is 2 "mode: $2 is refused, exit 2" "$SLUICE" validate "$T/bad-$1.yaml"
    like "$(cat "$TAP_OUT")" "bad-$1\.yaml:6:[0-9]+: .*mode: $3" "... at file:line:col: $3"
}
bad_mode word '"rw-r--r--"' "'rw-r--r--' is not a file mode"
bad_mode decimal '"0648"' "'0648' is not a file mode"
bad_mode setuid '"4755"' "'4755' is not a file mode"
bad_mode readonly '"0444"' "'0444' leaves the owner without write permission"
status_is 0 "mode: 600 (three digits, unquoted) is accepted" \
    sh -c "sed 's/mode: .*}/mode: 600}/' '$T/bad-word.yaml' >'$T/good.yaml' && '$SLUICE' validate '$T/good.yaml'"

done_testing
