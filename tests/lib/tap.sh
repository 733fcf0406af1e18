# tap.sh — a small TAP producer for sluice's shell integration tests.
#
# Sourced (bash) by every tests/integration/*.sh; automake's tap-driver reads
# what it prints. Each check is one test point; a failing one prints `#`
# diagnostics (what was got and wanted, or a command's output) under it.
#
#   plan N | done_testing       the plan, first or last (exit status 1 if any failed)
#   ok DESC CMD [ARGS...]       pass when CMD exits 0 (its output is shown on failure)
#   fails DESC CMD [ARGS...]    pass when CMD exits non-zero
#   status_is WANT DESC CMD...  pass when CMD exits with status WANT
#   is GOT WANT DESC            string equality        isnt GOT WANT DESC
#   like GOT ERE DESC           some line of GOT matches the extended regex
#   unlike GOT ERE DESC         no line does
#   pass DESC | fail DESC       record a result computed elsewhere
#   diag MSG...                 a `#` comment line
#   bail_out MSG                stop the whole test script ("Bail out!")
#   tmpdir [NAME]               print this test's temp dir (or a sub-folder NAME
#                               of it, made on demand); removed at exit unless KEEP_TMP=1
#   wait_for SECS CMD...        retry CMD every 50 ms until it succeeds; 1 on timeout
#   free_port                   print a TCP port nobody listens on (127.0.0.1)
#   require_cmd X               a FAILED test point "X not installed" when X is
#                               missing (tests never skip), and status 1
#   bg_kill_all                 end this shell's background jobs (runs at exit)
#   sanitized_build             true when $SLUICE is an AddressSanitizer build
#   lines_in FILE               its line count (0 when missing)
#   wait_exit PID               its exit status; 124 after RUN_TIMEOUT (a SIGKILL)
#   same_lines DESC GOT WANT    the files hold the same lines, any order
#
# Environment, as set by Makefile.am's AM_TESTS_ENVIRONMENT, with defaults
# so a test runs by hand from anywhere: SRCDIR (repo root, from this file's
# place), BUILDDIR ($SRCDIR/build, where scripts/setup builds), SLUICE
# ($BUILDDIR/sluice). The last command's output, after ok/fails/status_is,
# is in the file "$TAP_OUT".

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
SLUICE=${SLUICE:-$BUILDDIR/sluice}
export SRCDIR BUILDDIR SLUICE

_tap_n=0
_tap_failed=0
_tap_tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX") || exit 1
TAP_OUT=$_tap_tmp/.last-output

plan() { echo "1..$1"; }
done_testing() { echo "1..$_tap_n"; exit $(( _tap_failed > 0 )); }
diag() { local line; printf '%s\n' "$*" | while IFS= read -r line; do echo "# $line"; done; }
bail_out() { echo "Bail out! $*"; exit 1; }

_tap_result() {   # STATUS(0 = pass) DESC
    _tap_n=$((_tap_n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $_tap_n - $2"
    else
        echo "not ok $_tap_n - $2"
        _tap_failed=$((_tap_failed + 1))
    fi
    return "$1"
}
pass() { _tap_result 0 "$1"; }
fail() { _tap_result 1 "$1"; }

# Runs CMD with its output captured (TAP lines of its own would confuse the driver).
_tap_run() { "$@" >"$TAP_OUT" 2>&1; }
_tap_show() { diag "command: $*"; diag "output:"; diag "$(head -c 4000 "$TAP_OUT")"; }

ok() {
    local desc=$1; shift
    _tap_run "$@"; local st=$?
    _tap_result $(( st != 0 )) "$desc" || { diag "exit status $st"; _tap_show "$@"; return 1; }
}
fails() {
    local desc=$1; shift
    _tap_run "$@"; local st=$?
    _tap_result $(( st == 0 )) "$desc" || { diag "exit status 0, expected a failure"; _tap_show "$@"; return 1; }
}
status_is() {
    local want=$1 desc=$2; shift 2
    _tap_run "$@"; local st=$?
    _tap_result $(( st != want )) "$desc" || { diag "exit status $st, want $want"; _tap_show "$@"; return 1; }
}

is() {
    _tap_result "$([ "$1" = "$2" ]; echo $?)" "$3" || { diag "got:  '$1'"; diag "want: '$2'"; return 1; }
}
isnt() {
    _tap_result "$([ "$1" != "$2" ]; echo $?)" "$3" || { diag "got '$1', want anything else"; return 1; }
}
like() {
    _tap_result "$(printf '%s\n' "$1" | grep -Eq -- "$2"; echo $?)" "$3" ||
        { diag "got:"; diag "$(printf '%s' "$1" | head -c 4000)"; diag "want a line matching /$2/"; return 1; }
}
unlike() {
    _tap_result "$(printf '%s\n' "$1" | grep -Eq -- "$2"; [ $? -ne 0 ]; echo $?)" "$3" ||
        { diag "got:"; diag "$(printf '%s' "$1" | head -c 4000)"; diag "want no line matching /$2/"; return 1; }
}

tmpdir() {
    [ -z "$1" ] && { echo "$_tap_tmp"; return; }
    mkdir -p "$_tap_tmp/$1" && echo "$_tap_tmp/$1"
}

# Elapsed time from bash's EPOCHREALTIME (microseconds), so no fork per poll.
wait_for() {
    local secs=$1; shift
    local now=${EPOCHREALTIME/./} deadline
    deadline=$(( now + $(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000000 }') ))
    until "$@" >/dev/null 2>&1; do
        [ "${EPOCHREALTIME/./}" -ge "$deadline" ] && return 1
        sleep 0.05
    done
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    for _ in $(seq 50); do   # a refused connection means no listener there
        p=$(( 20000 + RANDOM % 40000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    return 1
}

require_cmd() {
    command -v "$1" >/dev/null 2>&1 && return 0
    fail "$1 not installed"
    diag "install it (scripts/setup does) — tests do not skip"
    return 1
}

# require_plugin NAME: NAME.so is in a folder of $SLUICE_PLUGIN_PATH
# (make check points it at the build tree's loadable plugins).
require_plugin() {
    local d dirs
    IFS=: read -ra dirs <<<"${SLUICE_PLUGIN_PATH:-}"
    for d in "${dirs[@]}"; do
        [ -f "$d/$1.so" ] && return 0
    done
    bail_out "no $1.so in SLUICE_PLUGIN_PATH=${SLUICE_PLUGIN_PATH:-} (build first)"
}

# sanitized_build: true when $SLUICE was built with AddressSanitizer, which
# makes it several times slower and bigger: tests scale their time and
# memory bounds, never their checks.
sanitized_build() {
    local real=$BUILDDIR/.libs/sluice
    [ -x "$real" ] || real=$SLUICE
    ldd "$real" 2>/dev/null | grep -q libasan
}

bg_kill_all() {
    local pids; pids=$(jobs -p)
    [ -z "$pids" ] && return 0
    kill $pids 2>/dev/null
    local p alive
    for _ in $(seq 40); do   # up to 2 s to drain, then force
        alive=
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.05
    done
    kill -9 $pids 2>/dev/null
    wait 2>/dev/null
    return 0
}

# ---- runs and outputs (shared by the checkpoint tests) -----------------------

# lines_in FILE: its line count, 0 when it does not exist.
lines_in() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

exited() { [ ! -e "/proc/$1" ] || grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

# wait_exit PID: the exit status of PID; 124 (after a SIGKILL) when it runs
# longer than RUN_TIMEOUT (default 120 s).
wait_exit() {
    if ! wait_for "${RUN_TIMEOUT:-120}" exited "$1"; then
        kill -9 "$1" 2>/dev/null
        wait "$1" 2>/dev/null
        return 124
    fi
    wait "$1"
}

# same_lines DESC GOT WANT: the files hold the same lines, counted with
# multiplicity; on failure, what is missing, extra and duplicated.
same_lines() {
    local desc=$1 got=$2 want=$3
    LC_ALL=C sort "$got" >"$got.sorted"
    LC_ALL=C sort "$want" >"$want.sorted"
    if cmp -s "$got.sorted" "$want.sorted"; then pass "$desc"; return 0; fi
    fail "$desc"
    diag "got $(lines_in "$got") lines, want $(lines_in "$want")"
    diag "missing: $(LC_ALL=C comm -13 "$got.sorted" "$want.sorted" | wc -l)," \
         "extra or duplicated: $(LC_ALL=C comm -23 "$got.sorted" "$want.sorted" | wc -l)," \
         "distinct lines seen more than once: $(uniq -d "$got.sorted" | wc -l)"
    diag "diff (sorted, first 20 lines):"
    diag "$(diff "$got.sorted" "$want.sorted" | head -20)"
    return 1
}

_tap_cleanup() {
    bg_kill_all
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "# kept $_tap_tmp" >&2; else rm -rf "$_tap_tmp"; fi
}
trap _tap_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
