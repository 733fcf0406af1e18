#!/usr/bin/env bash
# metrics_auth.sh — basic auth and TLS on the metrics endpoint (issues 6 and
# 8's "safe defaults"):
#   - basic auth: no or wrong credentials get 401 with
#     `WWW-Authenticate: Basic realm="sluice"`; the right ones get /metrics
#     and /status; /healthz and /ready stay open (probes cannot send
#     credentials); the password comes from ${ENV} or a password_file and is
#     never in the log nor in /status;
#   - TLS: HTTPS with a self-signed certificate (curl --cacert), plain HTTP
#     to the TLS port fails, TLS and basic auth together, and a real
#     Prometheus scraping over HTTPS with basic_auth and tls_config.ca_file
#     (target up, a counter equal to the records fed; a job with a wrong
#     password sees the target down);
#   - a bad key or one that does not match the certificate stops the run at
#     start (exit 1, before any output is written);
#   - config errors (exit 2, file:line:col, from `run` and `validate`): a user
#     without a password and the reverse, a certificate without a key and the
#     reverse, a missing certificate or password file;
#   - listening beyond loopback without auth warns.
# Every run listens on port 0 and the test reads the logged port, so tests
# run in parallel never collide. Waits poll with a timeout, never a fixed sleep.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd curl || done_testing
require_cmd jq || done_testing
require_cmd openssl || done_testing
require_cmd promtool || done_testing
require_cmd prometheus || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
TIMEOUT=20
sanitized_build && TIMEOUT=60
N=50
seq 1 $N | awk '{ printf "{\"i\":%d}\n", $1 }' >"$T/in.jsonl"

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$T/key.pem" -out "$T/cert.pem" \
    >"$T/openssl.log" 2>&1 || bail_out "openssl cannot make a certificate: $(cat "$T/openssl.log")"
# Another pair, for a key that does not match the certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=other \
    -keyout "$T/other-key.pem" -out "$T/other-cert.pem" >/dev/null 2>&1

PASSWORD='s3cret-Pa55-do-not-log'
FILE_PASSWORD='from-the-file-9f2c'

# write_config NAME METRICS_YAML_LINES: $T/NAME.yaml, a followed file copied
# to $T/NAME.out (the run stays up to be scraped; the counters stop at N).
write_config() {
    {
        echo "pipeline: auth-$1"
        echo "metrics:"
        printf '%s\n' "$2"
        cat <<YAML
sources:
  in: {type: file, path: $T/in.jsonl, mode: follow}
sinks:
  out: {type: file, input: in, path: $T/$1.out}
YAML
    } >"$T/$1.yaml"
}

# start NAME: runs $T/NAME.yaml in the background (pid in $PID), waits for
# the logged endpoint and sets $PORT and $URL (scheme://127.0.0.1:port).
start() {
    "$SLUICE" run "$T/$1.yaml" >"$T/$1.log" 2>&1 &
    PID=$!
    logged() { grep -Eq 'metrics on https?://[^ ]*:[1-9][0-9]*/metrics' "$T/$1.log"; }
    if ! wait_for $TIMEOUT logged "$1"; then
        diag "no endpoint logged: $(cat "$T/$1.log")"
        PORT=0
        return 1
    fi
    URL=$(grep -Eo 'metrics on https?://[^ ]*:[0-9]+' "$T/$1.log" | sed 's/^metrics on //')
    PORT=${URL##*:}
    URL=${URL%:*}
    URL="${URL/0.0.0.0/127.0.0.1}:$PORT"
}
stop() {   # DESC: SIGTERM the run in $PID, which drains and exits 0
    kill -TERM "$PID"
    wait_exit "$PID"
    is "$?" 0 "$1"
}

# code PATH [CURL ARGS...]: the HTTP status ("000" when no HTTP answer)
code() { local p=$1; shift; curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$URL$p"; }
get() { local p=$1; shift; curl -s --max-time 5 "$@" "$URL$p"; }
headers() { local p=$1; shift; curl -s -D - -o /dev/null --max-time 5 "$@" "$URL$p"; }
sample() { grep "^$1{.*stage=\"$2\"" | awk '{print $2}'; }
counted() {   # CURL ARGS...: the source's records_out reached N
    [ "$(get /metrics "$@" | sample sluice_records_out_total in)" = "$N" ]
}

# ---- basic auth, the password from ${METRICS_PASSWORD} ------------------------------
write_config basic '  listen: 127.0.0.1:0
  username: prom
  password: ${METRICS_PASSWORD}'
METRICS_PASSWORD=$PASSWORD start basic
ok "basic auth: the run serves on a logged port" test "$PORT" -gt 0
like "$URL" '^http://127\.0\.0\.1:' "basic auth without TLS: plain http"
is "$(code /metrics)" 401 "no credentials: /metrics is 401"
like "$(headers /metrics)" '^WWW-Authenticate: Basic realm="sluice"' \
    "... with WWW-Authenticate: Basic realm=\"sluice\""
is "$(code /metrics -u prom:wrong)" 401 "a wrong password: 401"
is "$(code /metrics -u someone:$PASSWORD)" 401 "a wrong user name: 401"
is "$(code /metrics -u prom:${PASSWORD}x)" 401 "the password with one more character: 401"
is "$(code /metrics -u prom:${PASSWORD%?})" 401 "the password with one less character: 401"
is "$(code /metrics -H 'Authorization: Basic !!!not-base64')" 401 "a malformed Authorization header: 401"
is "$(code /metrics -u "prom:$PASSWORD")" 200 "the right credentials: 200"
ok "... and the counters reach the $N records fed" wait_for $TIMEOUT counted -u "prom:$PASSWORD"
get /metrics -u "prom:$PASSWORD" >"$T/basic.metrics"
like "$(cat "$T/basic.metrics")" '^# TYPE sluice_records_in_total counter' "... in the Prometheus text format"
if promtool check metrics <"$T/basic.metrics" >"$T/promtool.out" 2>&1; then
    pass "... clean under promtool check metrics"
else
    fail "... clean under promtool check metrics"
    diag "$(cat "$T/promtool.out")"
fi
is "$(code /healthz)" 200 "/healthz is open: liveness probes send no credentials"
is "$(get /healthz)" ok "... and says ok"
is "$(code /ready)" 200 "/ready is open too (readiness probes)"
is "$(code /status)" 401 "/status without credentials: 401"
is "$(code /nowhere)" 401 "an unknown path without credentials: 401 (nothing revealed)"
is "$(code /nowhere -u "prom:$PASSWORD")" 404 "an unknown path with credentials: 404"
get /status -u "prom:$PASSWORD" >"$T/basic.status"
ok "/status with credentials: JSON" jq -e '.pipeline == "auth-basic"' "$T/basic.status"
unlike "$(cat "$T/basic.status")" "$PASSWORD" "the password is not in /status"
stop "basic auth run: SIGTERM, exit 0"
unlike "$(cat "$T/basic.log")" "$PASSWORD" "the password is not in the log"
unlike "$(cat "$T/basic.log")" "without authentication" "loopback with auth: no warning"

# ---- the password from a password_file (its first line) ------------------------------
printf '%s\r\nsecond-line\n' "$FILE_PASSWORD" >"$T/metrics.pass"
write_config pwfile "  listen: 127.0.0.1:0
  username: prom
  password_file: $T/metrics.pass"
start pwfile
is "$(code /metrics -u "prom:$FILE_PASSWORD")" 200 "password_file: its first line is the password"
is "$(code /metrics -u prom:second-line)" 401 "... the second line is not"
is "$(code /metrics)" 401 "... no credentials: 401"
get /status -u "prom:$FILE_PASSWORD" >"$T/pwfile.status"
unlike "$(cat "$T/pwfile.status")" "$FILE_PASSWORD" "the file's password is not in /status"
stop "password_file run: SIGTERM, exit 0"
unlike "$(cat "$T/pwfile.log")" "$FILE_PASSWORD" "the file's password is not in the log"

# ---- TLS ---------------------------------------------------------------------------
write_config tls "  listen: 127.0.0.1:0
  tls_cert: $T/cert.pem
  tls_key: $T/key.pem"
start tls
like "$URL" '^https://127\.0\.0\.1:' "TLS: the log gives an https URL"
is "$(code /metrics --cacert "$T/cert.pem")" 200 "TLS: curl --cacert cert.pem https://.../metrics: 200"
ok "TLS: the counters reach the $N records fed" wait_for $TIMEOUT counted --cacert "$T/cert.pem"
is "$(code /healthz --cacert "$T/cert.pem")" 200 "TLS: /healthz: 200"
fails "TLS: a client that does not trust the certificate fails" \
    curl -sf --max-time 5 -o /dev/null "$URL/metrics"
plain="http://127.0.0.1:$PORT/metrics"
fails "TLS: plain http to the TLS port fails" curl -sf --max-time 5 -o /dev/null "$plain"
is "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$plain")" 000 "... with no HTTP answer"
is "$(code /metrics --cacert "$T/cert.pem")" 200 "TLS: still serving after the plain-http attempt"
stop "TLS run: SIGTERM, exit 0"

# ---- TLS and basic auth, and a real Prometheus scraping them -------------------------
write_config both "  listen: 127.0.0.1:0
  username: prom
  password: $PASSWORD
  tls_cert: $T/cert.pem
  tls_key: $T/key.pem"
start both
like "$URL" '^https://' "TLS + basic auth: https"
is "$(code /metrics --cacert "$T/cert.pem")" 401 "TLS + basic auth: no credentials: 401"
is "$(code /metrics --cacert "$T/cert.pem" -u prom:wrong)" 401 "TLS + basic auth: a wrong password: 401"
is "$(code /metrics --cacert "$T/cert.pem" -u "prom:$PASSWORD")" 200 "TLS + basic auth: the right credentials: 200"
is "$(code /healthz --cacert "$T/cert.pem")" 200 "TLS + basic auth: /healthz open"

PPORT=$(free_port)
cat >"$T/prometheus.yml" <<YAML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: sluice
    scheme: https
    basic_auth: {username: prom, password: "$PASSWORD"}
    tls_config: {ca_file: $T/cert.pem}
    static_configs: [{targets: ["127.0.0.1:$PORT"]}]
  - job_name: wrong-password
    scheme: https
    basic_auth: {username: prom, password: "not-it"}
    tls_config: {ca_file: $T/cert.pem}
    static_configs: [{targets: ["127.0.0.1:$PORT"]}]
YAML
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
    --web.listen-address="127.0.0.1:$PPORT" >"$T/prometheus.log" 2>&1 &
ppid=$!
api() { curl -s --get "http://127.0.0.1:$PPORT/api/v1/$1" --data-urlencode "$2"; }
value() { api query "query=$1" | jq -r '.data.result[0].value[1] // empty'; }
prom_ready() { curl -sf "http://127.0.0.1:$PPORT/-/ready" >/dev/null; }
ok "prometheus starts on 127.0.0.1:$PPORT" wait_for 30 prom_ready || diag "$(tail -c 2000 "$T/prometheus.log")"
up_is() { [ "$(value "up{job=\"$1\"}")" = "$2" ]; }
ok "Prometheus over https with basic_auth and tls_config.ca_file: the target is up" \
    wait_for $TIMEOUT up_is sluice 1 ||
    diag "$(curl -s "http://127.0.0.1:$PPORT/api/v1/targets" | head -c 1500)"
prom_counted() { [ "$(value 'sluice_records_out_total{job="sluice",stage="in"}')" = "$N" ]; }
ok "through Prometheus: the source's records_out = $N" wait_for $TIMEOUT prom_counted
ok "a job with a wrong password sees the target down" wait_for $TIMEOUT up_is wrong-password 0
last_error() {
    curl -s "http://127.0.0.1:$PPORT/api/v1/targets" |
        jq -r '.data.activeTargets[] | select(.labels.job == "wrong-password") | .lastError'
}
has_401() { last_error | grep -q 401; }
ok "... its scrape error is the 401" wait_for $TIMEOUT has_401
kill "$ppid" 2>/dev/null
wait "$ppid" 2>/dev/null
stop "TLS + basic auth run: SIGTERM, exit 0"
unlike "$(cat "$T/both.log")" "$PASSWORD" "the password is not in the log"

# ---- a bad key stops the run at start (exit 1) ----------------------------------------
head -c 400 "$T/key.pem" >"$T/broken-key.pem"
echo "-----END PRIVATE KEY-----" >>"$T/broken-key.pem"
start_fails() {   # NAME KEY WANT_REGEX DESC
    write_config "$1" "  listen: 127.0.0.1:0
  tls_cert: $T/cert.pem
  tls_key: $2"
    "$SLUICE" run "$T/$1.yaml" >"$T/$1.log" 2>&1
    is "$?" 1 "$4: exit 1 at start"
    like "$(cat "$T/$1.log")" "$3" "$4: the message says why"
    ok "$4: no output written" test ! -e "$T/$1.out"
}
start_fails badkey "$T/broken-key.pem" \
    "ERROR metrics: cannot serve HTTPS with tls_cert '.*cert.pem' and tls_key '.*broken-key.pem': .+" \
    "a corrupt key"
start_fails mismatch "$T/other-key.pem" "tls_key '.*other-key.pem': .*(do not match|mismatch)" \
    "a key of another certificate"
start_fails notpem "$T/in.jsonl" "metrics.tls_key '.*in.jsonl': no PEM private key" \
    "a key file that is not PEM"

# ---- config errors: exit 2 with file:line:col, from run and validate -------------------
# config_error NAME METRICS_LINES WANT_REGEX DESC
config_error() {
    write_config "$1" "$2"
    "$SLUICE" validate "$T/$1.yaml" >"$T/$1.validate" 2>&1
    is "$?" 2 "$4: validate exits 2"
    like "$(cat "$T/$1.validate")" "^$T/$1.yaml:[0-9]+:[0-9]+: $3" "$4: file:line:col and the message"
    "$SLUICE" run "$T/$1.yaml" >"$T/$1.log" 2>&1
    is "$?" 2 "$4: run exits 2"
    like "$(cat "$T/$1.log")" "^$T/$1.yaml:[0-9]+:[0-9]+: $3" "$4: run reports it too"
}
config_error useronly '  username: prom' \
    'metrics.username needs metrics.password or metrics.password_file' "a username without a password"
config_error passonly "  password: $PASSWORD" \
    'metrics.password needs metrics.username' "a password without a username"
unlike "$(cat "$T/passonly.validate" "$T/passonly.log")" "$PASSWORD" "... the message does not show the password"
config_error fileonly "  password_file: $T/metrics.pass" \
    'metrics.password_file needs metrics.username' "a password_file without a username"
config_error certonly "  tls_cert: $T/cert.pem" \
    'metrics.tls_cert needs metrics.tls_key' "a tls_cert without a tls_key"
config_error keyonly "  tls_key: $T/key.pem" \
    'metrics.tls_key needs metrics.tls_cert' "a tls_key without a tls_cert"
config_error nocert "  tls_cert: $T/missing.pem
  tls_key: $T/key.pem" \
    "metrics.tls_cert '$T/missing.pem': No such file or directory" "a missing certificate file"
is "$(grep -o '^[^ ]*yaml:[0-9]*:[0-9]*' "$T/nocert.validate")" "$T/nocert.yaml:3:13" \
    "... the position is the tls_cert value's"
config_error nopass "  username: prom
  password_file: $T/missing.pass" \
    "metrics.password_file '$T/missing.pass': No such file or directory" "a missing password file"
config_error endless "  username: prom
  password_file: /dev/zero" \
    "metrics.password_file '/dev/zero': the first line is longer than 4095 bytes" \
    "a password file without an end (/dev/zero) is refused, not read forever"
: >"$T/empty.pass"
config_error emptypass "  username: prom
  password_file: $T/empty.pass" \
    "metrics.password_file '$T/empty.pass': the first line is empty" "an empty password file"
config_error twopass "  username: prom
  password: x
  password_file: $T/metrics.pass" \
    'metrics.password and metrics.password_file are both set' "password and password_file both"

# ---- beyond loopback without auth: a warning -------------------------------------------
bounded() {   # NAME METRICS_LINES: a run that ends by itself
    cat >"$T/$1.yaml" <<YAML
pipeline: auth-$1
metrics:
$2
sources:
  in: {type: generate, count: 10}
sinks:
  out: {type: file, input: in, path: $T/$1.out}
YAML
    "$SLUICE" run "$T/$1.yaml" >"$T/$1.log" 2>&1
}
bounded open '  listen: 0.0.0.0:0'
is "$?" 0 "listen 0.0.0.0:0 without auth: the run works"
like "$(cat "$T/open.log")" 'WARN .*metrics endpoint on 0\.0\.0\.0:[1-9][0-9]* without authentication' \
    "... and warns: metrics endpoint on 0.0.0.0:PORT without authentication"
bounded openauth "  listen: 0.0.0.0:0
  username: prom
  password: $PASSWORD"
is "$?" 0 "listen 0.0.0.0:0 with auth: the run works"
unlike "$(cat "$T/openauth.log")" 'without authentication' "... and does not warn"
bounded local '  listen: 127.0.0.1:0'
unlike "$(cat "$T/local.log")" 'without authentication' "loopback without auth: no warning"

done_testing
