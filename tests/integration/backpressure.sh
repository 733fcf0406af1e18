#!/usr/bin/env bash
# backpressure.sh — a sink that reads slowly slows the source down instead of
# letting memory grow: 5M generated records pushed through a file sink into a
# FIFO drained by a throttled reader, with peak RSS checked against a bound
# and every record accounted for at the other end.
. "$(dirname "$0")/../lib/tap.sh"

RECORDS=5000000
RSS_BOUND_KIB=$((64 * 1024))   # the bound the README states
# AddressSanitizer's shadow memory and quarantine multiply RSS; a sanitizer
# build is held to a looser bound that still fails if memory grows with the
# input (5M records held in memory would be well over 1 GiB).
if sanitized_build; then
    RSS_BOUND_KIB=$((384 * 1024))
    diag "sanitizer build: RSS bound raised to 384 MiB"
fi

require_cmd python3 || done_testing
[ -x /usr/bin/time ] || { fail "/usr/bin/time not installed (Debian package time)"; done_testing; }

dir=$(tmpdir)
mkfifo "$dir/pipe"
cat >"$dir/p.yaml" <<YAML
pipeline: backpressure
sources:
  gen:
    type: generate
    count: $RECORDS
    seed: 1
    fields:
      id: seq()
      status: choice(200, 404, 500)
      rt: float(0, 2)
sinks:
  slow:
    type: file
    input: gen
    path: $dir/pipe
    format: json
YAML

# The slow reader: ~40 MB/s in 256 KiB steps, counting lines as it goes.
python3 - "$dir/pipe" "$dir/count" <<'PY' &
import sys, time
n = 0
with open(sys.argv[1], 'rb', buffering=0) as f:
    while True:
        chunk = f.read(256 * 1024)
        if not chunk:
            break
        n += chunk.count(b'\n')
        time.sleep(0.006)
open(sys.argv[2], 'w').write(str(n))
PY
reader=$!

/usr/bin/time -f '%M' -o "$dir/rss" "$SLUICE" run --quiet "$dir/p.yaml" 2>"$dir/stderr"
st=$?
wait "$reader"
is "$st" 0 "the run ends by itself with status 0" || diag "$(cat "$dir/stderr")"
is "$(cat "$dir/count" 2>/dev/null)" "$RECORDS" "the slow reader received all $RECORDS records"
rss=$(tail -n 1 "$dir/rss")
diag "peak RSS: $rss KiB for $RECORDS records"
_tap_result $(( rss >= RSS_BOUND_KIB )) "peak RSS ${rss} KiB stays under $((RSS_BOUND_KIB / 1024)) MiB"
done_testing
