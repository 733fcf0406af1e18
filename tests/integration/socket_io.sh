#!/usr/bin/env bash
# socket_io.sh — the socket source and sink against real peers (netcat),
# through `sluice run`:
#   1. listen/tcp on port 0 (the bound port read from the log), two clients
#      at once, a last line without newline, CRLF;
#   2. connect/tcp against `nc -lk` (Spark's socketTextStream set-up): the
#      peer not up yet, then up, then gone and back — reconnection;
#   3. listen/udp: several lines per datagram;
#   4. format json with `errors:`: a bad line and an over-long line land in
#      the errors stream, the good ones are kept;
#   5. the sink: file source -> socket sink -> `nc -l > out`; a peer that
#      never comes up (exit 1 after connect_timeout); reconnection when its
#      `nc -lk` peer is restarted between two bursts of a followed file;
#   6. configuration mistakes are exit status 2 with file:line:col.
# Every wait polls with a timeout (wait_for); SIGTERM must drain and exit 0.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd nc || done_testing
require_cmd jq || done_testing

T=$(tmpdir)
TIMEOUT=10

count_lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
has_lines() { [ "$(count_lines "$1")" -ge "$2" ]; }
messages() { jq -r .message "$1"; }

# start NAME: run $T/NAME.yaml in the background (log in $T/NAME.log), pid in $SL
start() {
    "$SLUICE" run --log-level info "$T/$1.yaml" >"$T/$1.log" 2>&1 &
    SL=$!
}

# stop NAME DESC: SIGTERM the running sluice; it must exit 0.
stop() {
    kill -TERM "$SL" 2>/dev/null
    wait "$SL"
    local st=$?
    is "$st" 0 "$2: SIGTERM drains and exits 0" || diag "$(tail -20 "$T/$1.log")"
}

# bound_port NAME: the port from the source's "listening on ADDR:PORT" line.
bound_port() { sed -nE 's/.*listening on .*:([0-9]+) \((tcp|udp)\).*/\1/p' "$T/$1.log" | head -1; }
logged() { grep -q -- "$2" "$T/$1.log"; }
alive() { kill -0 "$1" 2>/dev/null; }

# ---- 1. listen tcp, port 0, two clients at once ----------------------------------
seq 1 1000 | sed 's/^/client-a line /' >"$T/a.txt"
seq 1 1000 | sed 's/^/client-b line /' >"$T/b.txt"
cat >"$T/tcp.yaml" <<EOF
pipeline: tcp
sources:
  net:
    type: socket
    listen: 127.0.0.1:0
sinks:
  out:
    type: file
    input: net
    path: $T/tcp.out
EOF
start tcp
if ok "listen: the bound port of 127.0.0.1:0 is logged" wait_for $TIMEOUT logged tcp "listening on 127.0.0.1:"; then
    PORT=$(bound_port tcp)
    nc -N 127.0.0.1 "$PORT" <"$T/a.txt" >/dev/null 2>"$T/nc-a.err" &
    nca=$!
    nc -N 127.0.0.1 "$PORT" <"$T/b.txt" >/dev/null 2>"$T/nc-b.err" &
    ncb=$!
    wait $nca; sta=$?
    wait $ncb; stb=$?
    is "$sta $stb" "0 0" "two nc clients sent their files" || diag "$(cat "$T"/nc-[ab].err)"
    printf 'crlf line\r\nlast line without newline' | nc -N 127.0.0.1 "$PORT" >/dev/null
    ok "listen: every line of both clients arrives" wait_for $TIMEOUT has_lines "$T/tcp.out" 2002
    stop tcp "listen"
    is "$(messages "$T/tcp.out" | grep -c '^client-a line')" 1000 "client a: all 1000 lines"
    is "$(messages "$T/tcp.out" | grep -c '^client-b line')" 1000 "client b: all 1000 lines"
    ok "client a: in order" diff <(messages "$T/tcp.out" | grep '^client-a') "$T/a.txt"
    ok "CR of a CRLF line stripped" grep -qx 'crlf line' <(messages "$T/tcp.out")
    ok "a last line without newline is kept" grep -qx 'last line without newline' <(messages "$T/tcp.out")
else
    diag "$(cat "$T/tcp.log")"
    kill "$SL" 2>/dev/null
fi

# ---- 2. connect tcp against nc -lk, peer late, then restarted ---------------------
PORT=$(free_port)
cat >"$T/client.yaml" <<EOF
pipeline: client
sources:
  net:
    type: socket
    connect: 127.0.0.1:$PORT
sinks:
  out:
    type: file
    input: net
    path: $T/client.out
EOF
start client
ok "connect: a peer that is not up yet is retried" wait_for $TIMEOUT logged client "cannot connect to 127.0.0.1:$PORT"
seq 1 500 | sed 's/^/first /' >"$T/first.txt"
nc -lk 127.0.0.1 "$PORT" <"$T/first.txt" >/dev/null 2>"$T/nc1.err" &
nc1=$!
ok "connect: lines served by nc -lk arrive" wait_for $TIMEOUT has_lines "$T/client.out" 500 ||
    diag "nc -lk alive: $(alive $nc1 && echo yes || echo no); $(cat "$T/nc1.err")" "$(cat "$T/client.log")"
kill $nc1 2>/dev/null; wait $nc1 2>/dev/null
ok "connect: the peer going away is noticed" wait_for $TIMEOUT logged client "closed the connection; reconnecting"
seq 1 500 | sed 's/^/second /' >"$T/second.txt"
nc -lk 127.0.0.1 "$PORT" <"$T/second.txt" >/dev/null 2>"$T/nc2.err" &
nc2=$!
ok "connect: after the peer restarts, its lines arrive" wait_for $TIMEOUT has_lines "$T/client.out" 1000 ||
    diag "nc -lk alive: $(alive $nc2 && echo yes || echo no); $(cat "$T/nc2.err")" "$(cat "$T/client.log")"
stop client "connect"
kill $nc2 2>/dev/null; wait $nc2 2>/dev/null
ok "connect: both peers' lines, in order, once" diff <(messages "$T/client.out") <(cat "$T/first.txt" "$T/second.txt")

# ---- 3. listen udp ------------------------------------------------------------------
cat >"$T/udp.yaml" <<EOF
pipeline: udp
sources:
  net:
    type: socket
    listen: 127.0.0.1:0
    protocol: udp
sinks:
  out:
    type: file
    input: net
    path: $T/udp.out
EOF
start udp
if ok "udp: the bound port is logged" wait_for $TIMEOUT logged udp "listening on 127.0.0.1:.*(udp)"; then
    PORT=$(bound_port udp)
    printf 'u1\nu2\nu3' | nc -u -q0 127.0.0.1 "$PORT"
    printf 'u4\n' | nc -u -q0 127.0.0.1 "$PORT"
    ok "udp: every line of every datagram arrives" wait_for $TIMEOUT has_lines "$T/udp.out" 4
    stop udp "udp"
    is "$(messages "$T/udp.out" | sort | tr '\n' ' ')" "u1 u2 u3 u4 " "udp: the lines, once each"
else
    diag "$(cat "$T/udp.log")"
    kill "$SL" 2>/dev/null
fi

# ---- 4. json with errors: a bad line, an over-long line ------------------------
PORT=$(free_port)
cat >"$T/json.yaml" <<EOF
pipeline: json
sources:
  net:
    type: socket
    listen: 127.0.0.1:$PORT
    format: json
    max_line: 2KiB
    errors: bad
sinks:
  good:
    type: file
    input: net
    path: $T/good.out
  rejected:
    type: file
    input: bad
    path: $T/bad.out
EOF
start json
LONG=$(printf '{"id":99,"pad":"%s"}' "$(head -c 5000 /dev/zero | tr '\0' x)")
printf '{"id":1,"svc":"api"}\n{"id":2,"svc":\n{"id":3,"svc":"web"}\n%s\n{"id":4,"svc":"db"}\n' "$LONG" >"$T/mixed.jsonl"
if ok "json: the source listens on a fixed port" wait_for $TIMEOUT logged json "listening on 127.0.0.1:$PORT"; then
    ok "json: nc sends the lines" nc -N 127.0.0.1 "$PORT" <"$T/mixed.jsonl"
    ok "json: the good records arrive" wait_for $TIMEOUT has_lines "$T/good.out" 3
    ok "json: the bad ones reach the errors stream" wait_for $TIMEOUT has_lines "$T/bad.out" 2
    stop json "json"
    is "$(jq -c '[.id, .svc]' "$T/good.out" | tr '\n' ' ')" '[1,"api"] [3,"web"] [4,"db"] ' \
        "json: good records kept with their values"
    is "$(jq -r 'select(.raw == "{\"id\":2,\"svc\":") | .stage' "$T/bad.out")" net \
        "json: the malformed line, with raw and stage"
    is "$(jq -r 'select(.raw | startswith("{\"id\":99")) | .raw | length' "$T/bad.out")" 1024 \
        "json: the over-long line's first KiB in raw"
    like "$(jq -r .error "$T/bad.out")" "max_line" "json: the over-long line's error names max_line"
else
    diag "$(cat "$T/json.log")"
    kill "$SL" 2>/dev/null
fi

# ---- 5. sink: file source -> socket sink -> nc -l > out ---------------------------
seq 1 2000 | awk '{printf "{\"n\":%d,\"s\":\"r%d\"}\n", $1, $1}' >"$T/send.jsonl"
PORT=$(free_port)
cat >"$T/sink.yaml" <<EOF
pipeline: sink
sources:
  in:
    type: file
    path: $T/send.jsonl
    format: json
sinks:
  net:
    type: socket
    input: in
    connect: 127.0.0.1:$PORT
EOF
nc -l 127.0.0.1 "$PORT" >"$T/received.jsonl" </dev/null 2>"$T/nc-sink.err" &
ncs=$!
ok "sink: a bounded run sends everything and exits 0" "$SLUICE" run --quiet "$T/sink.yaml"
ok "sink: nc -l receives all 2000 records" wait_for $TIMEOUT has_lines "$T/received.jsonl" 2000 ||
    diag "nc -l alive: $(alive $ncs && echo yes || echo no); $(cat "$T/nc-sink.err")"
kill $ncs 2>/dev/null; wait $ncs 2>/dev/null
ok "sink: nc received every record, in order" diff <(jq -c . "$T/received.jsonl") <(jq -c . "$T/send.jsonl")

PORT=$(free_port)
cat >"$T/refused.yaml" <<EOF
pipeline: refused
sources:
  in:
    type: file
    path: $T/send.jsonl
    format: json
sinks:
  net:
    type: socket
    input: in
    connect: 127.0.0.1:$PORT
    connect_timeout: 500ms
EOF
status_is 1 "sink: nobody listening -> exit 1 after connect_timeout" "$SLUICE" run --quiet "$T/refused.yaml"
like "$(cat "$TAP_OUT")" "cannot connect to 127.0.0.1:$PORT" "sink: the error names the address"

# Reconnection: the peer is restarted between two bursts of a followed file.
# The sink notices the dead connection before sending the second burst, so
# nothing is lost or doubled. (A peer killed while records sit unread in its
# socket buffer loses them: plain TCP has no acknowledgement above the kernel.)
PORT=$(free_port)
: >"$T/follow.jsonl"
cat >"$T/resend.yaml" <<EOF
pipeline: resend
sources:
  in:
    type: file
    path: $T/follow.jsonl
    format: json
    mode: follow
sinks:
  net:
    type: socket
    input: in
    connect: 127.0.0.1:$PORT
EOF
nc -lk 127.0.0.1 "$PORT" >"$T/part1.jsonl" </dev/null 2>"$T/nc-p1.err" &
ncp1=$!
start resend
head -500 "$T/send.jsonl" >>"$T/follow.jsonl"
ok "sink: records flow to the first peer" wait_for $TIMEOUT has_lines "$T/part1.jsonl" 500 ||
    diag "nc -lk alive: $(alive $ncp1 && echo yes || echo no); $(cat "$T/nc-p1.err" "$T/resend.log")"
kill $ncp1 2>/dev/null; wait $ncp1 2>/dev/null
nc -lk 127.0.0.1 "$PORT" >"$T/part2.jsonl" </dev/null 2>"$T/nc-p2.err" &
ncp2=$!
sed -n '501,1000p' "$T/send.jsonl" >>"$T/follow.jsonl"
ok "sink: after the peer restarts, the next records reach it" wait_for $TIMEOUT has_lines "$T/part2.jsonl" 500 ||
    diag "nc -lk alive: $(alive $ncp2 && echo yes || echo no); $(cat "$T/nc-p2.err" "$T/resend.log")"
stop resend "sink reconnection"
kill $ncp2 2>/dev/null; wait $ncp2 2>/dev/null
ok "sink: across the restart every record arrived once, in order" \
    diff <(cat "$T/part1.jsonl" "$T/part2.jsonl" | jq -c .) <(head -1000 "$T/send.jsonl" | jq -c .)
like "$(cat "$T/resend.log")" "closed the connection; reconnecting" "sink: the reconnection is logged"

# ---- 6. configuration mistakes ---------------------------------------------------
bad_config() {   # NAME SOURCE_OPTIONS_YAML
    cat >"$T/$1.yaml" <<EOF
pipeline: $1
sources:
  net:
    type: socket
$2
sinks:
  out:
    type: file
    input: net
    path: $T/never.out
EOF
}
bad_config both "    listen: 127.0.0.1:9000
    connect: 127.0.0.1:9001"
status_is 2 "config: listen and connect together -> exit 2" "$SLUICE" validate "$T/both.yaml"
like "$(cat "$TAP_OUT")" "both.yaml:[0-9]+:[0-9]+: .*listen or connect" "config: the message has file:line:col"
bad_config neither "    format: json"
status_is 2 "config: neither listen nor connect -> exit 2" "$SLUICE" validate "$T/neither.yaml"
bad_config v6 "    connect: ::1:9000"
status_is 2 "config: an unbracketed IPv6 address -> exit 2" "$SLUICE" validate "$T/v6.yaml"
like "$(cat "$TAP_OUT")" "v6.yaml:5:[0-9]+: .*\[::1\]:9000" "config: the message shows the bracketed form at the option's line"
bad_config udpclient "    connect: 127.0.0.1:9000
    protocol: udp"
status_is 2 "config: udp with connect -> exit 2" "$SLUICE" validate "$T/udpclient.yaml"
bad_config noport "    listen: 127.0.0.1"
status_is 2 "config: an address without port -> exit 2" "$SLUICE" validate "$T/noport.yaml"

done_testing
