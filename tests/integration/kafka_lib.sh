# kafka_lib.sh — what the Kafka integration tests share (sourced after
# tests/lib/tap.sh by tests/integration/kafka_*.sh; not a test itself).
#
# The peer is librdkafka's mock cluster, run by the project's helper
# ($KAFKA_MOCK, built as tests/tools/kafka-mock by `make check`): it prints
# `BOOTSTRAP host:port,...` when it listens and then takes commands on stdin
# (topic NAME N, down ID, up ID, quit), answering `ok` or `error ...`.
# kcat is the independent producer and consumer. Nothing here sleeps for
# correctness: every wait polls a condition with a timeout (wait_for).
#
#   kafka_require              kcat, jq, the mock and kafka.so, or a failed
#                              test point and exit (tests never skip)
#   mock_start NAME [ARGS...]  start a mock cluster; sets BOOT (its bootstrap
#                              list) and MOCK_PID; its stdin is fd $MOCK_IN
#   mock_cmd LINE              send a command, wait for its answer: 0 on `ok`
#   mock_stop                  quit the mock and wait for it
#   kproduce TOPIC [KCAT...]   stdin -> TOPIC, one message per line, the key
#                              before the first ':' (kcat -K:)
#   kconsume TOPIC FMT [KCAT...]  every message of TOPIC now, formatted (kcat -f)
#   kend TOPIC                 the sum of TOPIC's partitions' end offsets
#   kends TOPIC                "partition end" lines, one per partition
#   sluice_bg NAME YAML [ARGS...]  `sluice run` in the background, its
#                              output in $T/NAME.log; sets PID
#   stop_run PID DESC          SIGTERM, and a test point: exit status 0
#   assigned_offsets LOG TOPIC "partition offset" lines of the last
#                              assignment the source logged for TOPIC
#   metric FILE NAME LABELS    the value of the sample NAME{...} whose labels
#                              include every k="v" of LABELS (a regex-free
#                              substring match per label), from a scrape
#
# GROUP_PROPERTIES: librdkafka settings for sources whose group is joined
# again by a later run. The mock keeps a departed member until its session
# times out (45 s by default) before the group can rebalance, so a restart
# would wait that long; 6 s keeps restarts short (much lower makes the
# mock's rebalances flap).

KAFKA_MOCK=${KAFKA_MOCK:-$BUILDDIR/tests/tools/kafka-mock}
SLUICE_PLUGIN_PATH=${SLUICE_PLUGIN_PATH:-$BUILDDIR/plugins/kafka/.libs}
export KAFKA_MOCK SLUICE_PLUGIN_PATH

GROUP_PROPERTIES='{session.timeout.ms: 6000, heartbeat.interval.ms: 500}'

kafka_require() {
    require_cmd kcat || done_testing
    require_cmd jq || done_testing
    require_cmd python3 || done_testing
    [ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"
    [ -x "$KAFKA_MOCK" ] ||
        bail_out "no mock Kafka cluster at $KAFKA_MOCK (make check builds tests/tools/kafka-mock)"
    require_plugin kafka
}

_mock_n=0
mock_start() {
    local name=$1; shift
    _mock_n=$((_mock_n + 1))
    MOCK_DIR=$(tmpdir "mock-$name-$_mock_n")
    mkfifo "$MOCK_DIR/in" || bail_out "mkfifo failed"
    "$KAFKA_MOCK" "$@" <"$MOCK_DIR/in" >"$MOCK_DIR/out" 2>"$MOCK_DIR/err" &
    MOCK_PID=$!
    exec {MOCK_IN}>"$MOCK_DIR/in"
    if ! wait_for 30 grep -q '^BOOTSTRAP ' "$MOCK_DIR/out"; then
        diag "mock stderr: $(head -c 2000 "$MOCK_DIR/err")"
        bail_out "the mock Kafka cluster ($KAFKA_MOCK $*) printed no BOOTSTRAP line in 30 s"
    fi
    BOOT=$(awk '/^BOOTSTRAP /{ print $2; exit }' "$MOCK_DIR/out")
    [ -n "$BOOT" ] || bail_out "the mock printed an empty bootstrap list"
}

_answers() { wc -l <"$MOCK_DIR/out"; }
mock_cmd() {
    local before; before=$(_answers)
    echo "$*" >&"$MOCK_IN" || return 1
    wait_for 10 eval '[ "$(_answers)" -gt "$before" ]' || { diag "mock: no answer to '$*'"; return 1; }
    local answer; answer=$(tail -n 1 "$MOCK_DIR/out")
    [ "$answer" = ok ] || { diag "mock: '$*' -> $answer"; return 1; }
}

mock_stop() {
    [ -n "$MOCK_PID" ] || return 0
    echo quit >&"$MOCK_IN" 2>/dev/null
    exec {MOCK_IN}>&-
    wait_for 10 exited "$MOCK_PID" || kill -9 "$MOCK_PID" 2>/dev/null
    wait "$MOCK_PID" 2>/dev/null
    MOCK_PID=
}

kproduce() {
    local topic=$1; shift
    kcat -b "$BOOT" -P -t "$topic" -K: -X enable.idempotence=true "$@"
}
kconsume() {
    local topic=$1 fmt=$2; shift 2
    kcat -b "$BOOT" -C -t "$topic" -o beginning -e -q -f "$fmt" "$@"
}
kends() {
    local topic=$1 n p args=()
    n=$(kcat -b "$BOOT" -L -t "$topic" 2>/dev/null | grep -c '^ *partition [0-9]')
    [ "$n" -gt 0 ] || return 1
    for ((p = 0; p < n; p++)); do args+=(-t "$topic:$p:-1"); done
    kcat -b "$BOOT" -Q "${args[@]}" 2>/dev/null |
        awk '/ offset /{ gsub(/[][]/, "", $2); print $2, $4 }' | sort -n
}
kend() { kends "$1" | awk '{ s += $2 } END { print s + 0 }'; }
kend_is_at_least() { [ "$(kend "$1")" -ge "$2" ]; }

sluice_bg() {
    local name=$1 yaml=$2; shift 2
    "$SLUICE" run "$yaml" "$@" >"$T/$name.log" 2>&1 &
    PID=$!
}

stop_run() {
    local pid=$1 desc=$2 st
    kill -TERM "$pid" 2>/dev/null
    wait_exit "$pid"
    st=$?
    is "$st" 0 "$desc: SIGTERM drains, exit 0"
}

# The source logs "group G: assigned T[p]@offset ...": the last such line's
# offsets for TOPIC.
assigned_offsets() {
    grep -E 'group .*: assigned ' "$1" | tail -n 1 | grep -oE "(^| )$2\[[0-9]+\]@[0-9]+" |
        sed -E 's/.*\[([0-9]+)\]@([0-9]+)/\1 \2/' | sort -n
}

metric() {
    local file=$1 name=$2 labels=$3
    awk -v name="$name" -v labels="$labels" '
        BEGIN { n = split(labels, want, ",") }
        index($0, name "{") == 1 {
            for (i = 1; i <= n; i++) if (want[i] != "" && index($0, want[i]) == 0) next
            print $NF; exit
        }' "$file"
}
