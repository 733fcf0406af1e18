#!/usr/bin/env bash
# kafka_rebalance.sh — a consumer-group rebalance between two sluice
# processes, against the mock cluster (issue 5).
#
# Instance A (pipeline rb_a) reads a 4-partition topic alone; instance B
# (pipeline rb_b, its own checkpoints) joins the same group. Checkpoints
# are on with a 1 h interval, so any checkpoint A takes before it is
# stopped was asked for by the rebalance (revoked partitions are
# checkpointed before they are handed over). Then more records arrive, and
# are split between the two. Checked:
#   - A logs the revocation and takes a checkpoint for it;
#   - in A's log, that checkpoint completes before the partitions are let
#     go, and the hand-over commit is made (or its refusal logged) first;
#   - every record, before and after the rebalance, reaches A's or B's
#     output: nothing is lost;
#   - both instances read some of the records produced after the
#     rebalance (the group really split the partitions).
# Duplicates are not checked: the mock refuses offset commits while a group
# rebalances (a real broker accepts them), so a partition handed over may
# be read again from an older committed offset; only a real broker shows
# the hand-over without repeats.
. "$(dirname "$0")/../lib/tap.sh"
. "$(dirname "$0")/kafka_lib.sh"

kafka_require
T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"
TIMEOUT=90

mock_start rb --topic rb_in:4
produce() { seq "$1" "$2" | awk '{ printf "k%d:{\"i\":%d}\n", $1 % 16, $1 }' | kproduce rb_in; }
produce 1 400

instance_yaml() {
    cat >"$T/$1.yaml" <<EOF
pipeline: rb_$1
checkpoint: {dir: $T/ck, interval: 1h}
events_log: $T/$1.events
sources:
  in:
    type: kafka
    brokers: "$BOOT"
    topic: rb_in
    group_id: rb_group
    properties: $GROUP_PROPERTIES
sinks:
  out:
    type: file
    input: in
    path: $T/$1.out
EOF
}
instance_yaml a
instance_yaml b
has_lines() { [ -f "$1" ] && [ "$(lines_in "$1")" -ge "$2" ]; }
seen_all() {
    cat "$T/a.out" "$T/b.out" 2>/dev/null | jq -r .i | sort -un >"$T/seen"
    [ "$(wc -l <"$T/seen")" -ge "$1" ]
}
logged() { grep -qE "$2" "$T/$1.log" 2>/dev/null; }

sluice_bg a "$T/a.yaml"
PID_A=$PID
ok "A alone reads the 400 records" wait_for $TIMEOUT has_lines "$T/a.out" 400 ||
    diag "$(tail -c 2000 "$T/a.log")"

sluice_bg b "$T/b.yaml"
PID_B=$PID
ok "B joins the group: it is assigned partitions" \
    wait_for $TIMEOUT logged b 'group rb_group: assigned rb_in\[' || diag "$(tail -c 2000 "$T/b.log")"
ok "A gives partitions up" wait_for $TIMEOUT logged a 'group rb_group: revoked rb_in\[' ||
    diag "$(tail -c 2000 "$T/a.log")"
ok "A checkpoints the hand-over (interval 1 h: no other checkpoint is due)" \
    wait_for $TIMEOUT grep -q '"checkpoint_completed"' "$T/a.events"

# The hand-over order in A's log: a checkpoint completes, then the revoked
# partitions' positions are committed (or the refusal is logged: the mock
# refuses commits during a rebalance), then they are let go.
line_of() { grep -nE "$2" "$T/$1.log" | head -n 1 | cut -d: -f1; }
ck=$(line_of a 'checkpoint [0-9]+ completed')
rv=$(line_of a 'group rb_group: revoked rb_in\[')
cm=$(line_of a 'positions of revoked partitions')
ok "A's checkpoint completes before it lets the partitions go" [ -n "$ck" ] && [ -n "$rv" ] && [ "$ck" -lt "$rv" ] ||
    diag "$(grep -nE 'checkpoint|rb_group' "$T/a.log" | head)"
ok "A commits the hand-over positions, or says it could not, before letting go" \
    [ -n "$cm" ] && [ "$cm" -le "$rv" ] || diag "$(grep -nE 'commit|rb_group' "$T/a.log" | head)"
diag "B's start offsets: $(assigned_offsets "$T/b.log" rb_in | tr '\n' ' ')(A's positions: $(kends rb_in | tr '\n' ' '))"

assigned_twice() { [ "$(grep -c 'group rb_group: assigned rb_in\[' "$T/a.log")" -ge 2 ]; }
ok "both settle: A is assigned partitions again after the rebalance" \
    wait_for $TIMEOUT assigned_twice
produce 401 800
ok "every record reaches A or B: nothing lost" wait_for $TIMEOUT seen_all 800 ||
    diag "missing: $(comm -23 <(seq 1 800 | sort) <(sort "$T/seen") | head -20 | tr '\n' ' ')"
after() { jq -r 'select(.i > 400) | .i' "$T/$1.out" 2>/dev/null | wc -l; }
ok "A reads some of the records produced after the rebalance" [ "$(after a)" -gt 0 ]
ok "B reads some of them too: the partitions were split" [ "$(after b)" -gt 0 ]
diag "after the rebalance: A read $(after a), B read $(after b) of 400"

stop_run "$PID_A" "A"
stop_run "$PID_B" "B"
mock_stop
done_testing
