#!/usr/bin/env bash
# lua.sh — the `lua` operator (issue 7) through `sluice run`: every script
# function and API, type round trips, init(config), keyed state and timers
# across a kill -9 and a restart, on_watermark/on_close, the sandbox (each
# forbidden call refused; unsafe: true allowing them), the instruction
# budget and memory limit, runtime and load-time errors, and the two
# examples on their bundled data.
#
# Most pipelines are file -> lua -> file with `batch_size: 1` and
# `max_delay: 0s`, so the watermark follows every record and the order of
# records, timers and watermarks in the output is fixed. Rejected records
# are read from the stage's `errors:` output. The event time of emitted
# records is made visible by a second lua stage (`stamp`) that copies
# sluice.time() into a field `_time`.
. "$(dirname "$0")/../lib/tap.sh"

require_cmd jq || done_testing
require_cmd python3 || done_testing
require_cmd curl || done_testing
[ -x "$SLUICE" ] || bail_out "no sluice binary at $SLUICE (build first, or set SLUICE)"

T=$(tmpdir)
cd "$T" || bail_out "cannot cd to $T"   # runs may leave .sluice/ behind
RUN_TIMEOUT=60
sanitized_build && RUN_TIMEOUT=300
MAXINT=9223372036854775807

# ---- helpers ---------------------------------------------------------------------

# script NAME: the Lua script on stdin becomes $T/NAME.lua
script() { cat >"$T/$1.lua"; }

# pipeline NAME INPUT [OPTION_LINE...]: $T/NAME.yaml, file INPUT -> lua `op`
# (its option lines as given, e.g. "script: $T/x.lua") -> $T/NAME.out, and
# op's errors -> $T/NAME.errors. STAMP=1 puts the `stamp` stage between op
# and the sink; SOURCE_EXTRA adds lines to the source; TOP adds top-level lines.
pipeline() {
    local name=$1 input=$2 line from=op
    shift 2
    [ -n "${STAMP:-}" ] && from=stamp
    {
        echo "pipeline: lua_$name"
        echo "metrics: {listen: false}"
        [ -n "${TOP:-}" ] && echo "$TOP"
        cat <<EOF
sources:
  in:
    type: file
    path: $input
    format: json
    batch_size: ${BATCH:-1}
    event_time: {field: ts, format: epoch_ms}
    watermark: {max_delay: 0s}
${SOURCE_EXTRA:-}
operators:
  op:
    type: lua
    input: in
    errors: op_errors
EOF
        for line in "$@"; do echo "    $line"; done
        [ -n "${STAMP:-}" ] && cat <<'EOF'
  stamp:
    type: lua
    input: op
    code: |
      function process(r) r._time = sluice.time() return r end
EOF
        cat <<EOF
sinks:
  out: {type: file, input: $from, path: $T/$name.out, format: json}
  errs: {type: file, input: op_errors, path: $T/$name.errors, format: json}
EOF
    } >"$T/$name.yaml"
}

# run NAME: sluice run it, stderr in $T/NAME.log; the exit status.
run() { timeout "$RUN_TIMEOUT" "$SLUICE" run "$T/$1.yaml" >"$T/$1.log" 2>&1; }

# out NAME [JQ]: the output records, one compact line each (through JQ).
out() { jq -c "${2:-.}" "$T/$1.out" 2>&1; }
errors_of() { jq -c "${2:-.}" "$T/$1.errors" 2>&1; }

# ---- 1. types: a record through a script and back ---------------------------------
cat >"$T/types.jsonl" <<'EOF'
{"ts":1000,"i":42,"neg":-7,"big":9007199254740993,"f":1.0,"g":2.5,"e":1.5e+300,"s":"héllo ✓ \"q\"\n","b":true,"c":false,"n":null,"o":{"x":[1,2.5,null,{}],"y":[],"z":{}},"arr":[true,"a"]}
EOF
script types <<'EOF'
function process(r)
  -- what the script sees
  r.t_i = math.type(r.i)
  r.t_big = math.type(r.big)
  r.t_f = math.type(r.f)
  r.t_g = math.type(r.g)
  r.t_b = type(r.b)
  r.n_is_null = r.n == sluice.null
  r.absent_is_nil = r.absent == nil
  r.s_len = #r.s
  r.o_x2 = r.o.x[2]
  r.o_x3_null = r.o.x[3] == sluice.null
  r.o_y_len = #r.o.y
  r.arr_1 = r.arr[1]
  return r
end
EOF
pipeline types "$T/types.jsonl" "script: $T/types.lua"
ok "types: the run exits 0" run types
want_seen='{"t_i":"integer","t_big":"integer","t_f":"float","t_g":"float","t_b":"boolean","n_is_null":true,"absent_is_nil":true,"s_len":15,"o_x2":2.5,"o_x3_null":true,"o_y_len":0,"arr_1":true}'
is "$(out types '{t_i,t_big,t_f,t_g,t_b,n_is_null,absent_is_nil,s_len,o_x2,o_x3_null,o_y_len,arr_1}')" \
    "$want_seen" "types: integers, floats (1.0 too), booleans, null vs absent, nested values as Lua sees them"
# Untouched fields leave exactly as they came (same text), added ones follow.
input_text=$(cat "$T/types.jsonl")
output_text=$(cat "$T/types.out")
is "${output_text:0:$(( ${#input_text} - 1 ))}" "${input_text%\}}" \
    "types: the input's fields come out as they came in, text and order"
like "$(cat "$T/types.out")" '"f":1\.0,' "types: a float 1.0 stays a float (written 1.0)"

script types2 <<'EOF'
-- every value goes through Lua and back into a NEW record
function process(r)
  local t = {}
  for k, v in pairs(r) do t[k] = v end
  t.ts = nil
  t.added_null = sluice.null
  t.added_nil = nil
  t.empty_array = sluice.array()
  t.empty_object = {}
  t.nested = {list = {1, 2.0, "three", sluice.null}, flag = false}
  return t
end
EOF
pipeline types2 "$T/types.jsonl" "script: $T/types2.lua"
ok "types: a copied record, the run exits 0" run types2
is "$(out types2 '{i,neg,big,f,g,e,s,b,c,n,o,arr}')" \
    "$(jq -c '{i,neg,big,f,g,e,s,b,c,n,o,arr}' "$T/types.jsonl")" \
    "types: every value survives Lua -> a new record (ints, floats, unicode, escapes, null, nested)"
like "$(cat "$T/types2.out")" '"big":9007199254740993,' "types: a 64-bit integer keeps every digit"
like "$(cat "$T/types2.out")" '"f":1\.0,' "types: 1.0 stays 1.0 through a new record"
like "$(cat "$T/types2.out")" '"o":\{"x":\[1,2\.5,null,\{\}\],"y":\[\],"z":\{\}\}' \
    "types: nested arrays stay arrays ([] too), objects stay objects ({} too), null stays null"
is "$(out types2 '[.added_null, has("added_nil"), .empty_array, .empty_object, .nested]')" \
    '[null,false,[],{},{"flag":false,"list":[1,2,"three",null]}]' \
    "types: sluice.null -> null, nil -> no field, sluice.array() -> [], {} -> {}, tables -> JSON"
like "$(cat "$T/types2.out")" '"nested":\{"flag":false,"list":\[1,2\.0,"three",null\]\}' \
    "types: a float in a nested table stays a float (2.0)"
is "$(out types2 'keys_unsorted | .[0:3]')" '["i","neg","big"]' \
    "types: a new record keeps the input's field order for the input's fields"

# ---- 2. emit, return, removals, event time ------------------------------------------
printf '{"ts":1000,"k":"a","v":1,"drop":"x"}\n{"ts":2000,"k":"b","v":2,"drop":"y"}\n' >"$T/two.jsonl"
script emit <<'EOF'
function process(r, emit)
  emit({k = r.k, copy = 1})           -- a new table: keeps the input's event time
  emit({k = r.k, copy = 2}, 5)        -- an explicit event time (ms)
  r.drop = nil                        -- removing a field never read
  r.v = r.v * 10
  return r                            -- the same as emit(r)
end
EOF
STAMP=1 pipeline emit "$T/two.jsonl" "script: $T/emit.lua"
ok "emit: the run exits 0" run emit
is "$(out emit)" '{"k":"a","copy":1,"_time":1000}
{"k":"a","copy":2,"_time":5}
{"ts":1000,"k":"a","v":10,"_time":1000}
{"k":"b","copy":1,"_time":2000}
{"k":"b","copy":2,"_time":5}
{"ts":2000,"k":"b","v":20,"_time":2000}' \
    "emit: several records per input in order, return shorthand, removed and changed fields, event times"

script half <<'EOF'
function process(r, emit)
  emit({k = r.k, before_error = true})
  emit({k = r.k, before_error = 2})
  if r.k == "a" then error("boom on " .. r.k) end
  return r
end
EOF
pipeline half "$T/two.jsonl" "script: $T/half.lua"
ok "half: the run exits 0" run half
is "$(out half '[.k, .before_error]' | tr '\n' ' ')" '["b",true] ["b",2] ["b",null] ' \
    "a failing call emits nothing: no record of the failed input reaches the output"
like "$(errors_of half '.error')" '^"lua_error: .*half\.lua:4: boom on a"$' \
    "the failed input is in errors with the Lua message and script:line"
is "$(errors_of half '[.k, .v, .stage]')" '["a",1,"op"]' "errors holds the input record itself, with its stage"

script pcall_emit <<'EOF'
function process(r, emit)
  local ok = pcall(emit, {k = r.k, bad = function() end})
  emit({k = r.k, caught = not ok})
end
EOF
pipeline pcall_emit "$T/two.jsonl" "script: $T/pcall_emit.lua"
ok "pcall(emit, bad): the run exits 0" run pcall_emit
is "$(out pcall_emit)" '{"k":"a","caught":true}
{"k":"b","caught":true}' "a bad emit caught by pcall leaves no half record behind"

script stale <<'EOF'
local kept
function process(r, emit)
  if kept then
    local ok, msg = pcall(function() return kept.v end)
    emit({k = r.k, stale_ok = ok, msg = msg})
  end
  kept = r
end
EOF
pipeline stale "$T/two.jsonl" "script: $T/stale.lua"
ok "stale: the run exits 0" run stale
like "$(out stale '.msg')" 'record table used after its process\(\) call returned' \
    "a record table kept past its call raises instead of showing another record"

# sluice.input(), sluice.stage, sluice.key() with two inputs.
printf '{"ts":1000,"from":"left"}\n' >"$T/left.jsonl"
printf '{"ts":1000,"from":"right"}\n' >"$T/right.jsonl"
cat >"$T/inputs.yaml" <<EOF
pipeline: lua_inputs
metrics: {listen: false}
sources:
  left: {type: file, path: $T/left.jsonl, format: json}
  right: {type: file, path: $T/right.jsonl, format: json}
operators:
  both:
    type: lua
    input: [left, right]
    code: |
      function process(r)
        return {from = r.from, input = sluice.input(), stage = sluice.stage,
                key = sluice.key() == nil, time = sluice.time() == nil}
      end
sinks:
  out: {type: file, input: both, path: $T/inputs.out, format: json}
EOF
ok "two inputs: the run exits 0" run inputs
is "$(out inputs '[.from, .input, .stage, .key, .time]' | sort | tr -d '\n')" \
    '["left",1,"both",true,true]["right",2,"both",true,true]' \
    "sluice.input() is the input's place in \`input\`, sluice.stage the stage, no key or event time here"

# ---- 3. init(config) ------------------------------------------------------------------
script config <<'EOF'
local seen
function init(config)
  seen = {
    i = math.type(config.i), f = math.type(config.f), one = math.type(config.one),
    b = config.b, n_is_null = config.n == sluice.null, absent = config.absent == nil,
    q = type(config.q), q_value = config.q, list = config.list, map = config.map,
    neg = config.neg,
  }
end
function process(r) return seen end
EOF
pipeline config "$T/two.jsonl" "script: $T/config.lua" \
    'config: {i: 42, f: 4.5, one: 1.0, b: true, n: null, q: "42", neg: -3, list: [1, two, ~], map: {a: {b: [x]}}}'
ok "config: the run exits 0" run config
is "$(out config | head -1)" \
    '{"absent":true,"b":true,"f":"float","i":"integer","list":[1,"two",null],"map":{"a":{"b":["x"]}},"n_is_null":true,"neg":-3,"one":"float","q":"string","q_value":"42"}' \
    "init(config): typed scalars (42 integer, 4.5 and 1.0 float, quoted \"42\" a string), null vs absent, lists, maps"
script config_default <<'EOF'
local n
function init(config) n = 0 for _ in pairs(config) do n = n + 1 end end
function process(r) return {keys = n, is_table = true} end
EOF
pipeline config_default "$T/two.jsonl" "script: $T/config_default.lua"
ok "config absent: the run exits 0" run config_default
is "$(out config_default | head -1)" '{"is_table":true,"keys":0}' "without config, init gets an empty table"

# ---- 4. keyed state -----------------------------------------------------------------------
printf '{"ts":1000,"k":"a"}\n{"ts":2000,"k":"b"}\n{"ts":3000,"k":"a"}\n{"ts":4000,"k":"c"}\n{"ts":5000,"k":"a"}\n' >"$T/keys.jsonl"
script state <<'EOF'
function process(r, emit)
  local s = state.get(r.k) or {n = 0, seen = {}}
  s.n = s.n + 1
  s.seen[#s.seen + 1] = r.ts
  s.f = 0.5
  state.put(r.k, s)
  s.n = 1000                       -- a copy: the stored value does not change
  state.put(7, "number key")
  state.put(7.0, "the same key")   -- 7.0 is 7, as in a Lua table
  if r.k == "c" then state.del("b") end
  local keys = state.keys()
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  for i, key in ipairs(keys) do keys[i] = tostring(key) end
  return {k = r.k, n = state.get(r.k).n, seen = state.get(r.k).seen, f = state.get(r.k).f,
          b_present = state.get("b") ~= nil, seven = state.get(7), keys = keys}
end
EOF
pipeline state "$T/keys.jsonl" "script: $T/state.lua"
ok "state: the run exits 0" run state
is "$(out state '[.k, .n, .seen, .f, .b_present, .seven, .keys]')" \
    '["a",1,[1000],0.5,false,"the same key",["7","a"]]
["b",1,[2000],0.5,true,"the same key",["7","a","b"]]
["a",2,[1000,3000],0.5,true,"the same key",["7","a","b"]]
["c",1,[4000],0.5,false,"the same key",["7","a","c"]]
["a",3,[1000,3000,5000],0.5,false,"the same key",["7","a","c"]]' \
    "state.get/put/del/keys: per-key values, copies on put, number keys, deletion"

script state_bad <<'EOF'
function process(r)
  if r.ts == 1000 then state.put("x", {f = function() end}) end
  if r.ts == 2000 then local t = {} t.self = t state.put("x", t) end
  if r.ts == 4000 then state.put({}, 1) end
  return r
end
EOF
pipeline state_bad "$T/keys.jsonl" "script: $T/state_bad.lua"
ok "state_bad: the run exits 0" run state_bad
like "$(errors_of state_bad '.error' | sed -n 1p)" 'state\.put: a function cannot be stored' \
    "state.put of a function is refused with a clear error"
like "$(errors_of state_bad '.error' | sed -n 2p)" 'a cycle' "state.put of a table that contains itself is refused"
like "$(errors_of state_bad '.error' | sed -n 3p)" 'keys are strings or numbers' "a table as a state key is refused"
is "$(out state_bad '.ts' | tr '\n' ' ')" "3000 5000 " "the other records go on"

# ---- 5. timers, on_watermark, on_close -----------------------------------------------------
script timers <<'EOF'
local n = 0
function process(r, emit)
  n = n + 1
  timer.at(r.k, r.ts + 1500)
  timer.at(r.k, r.ts + 1500)          -- the same (key, time) twice: fires once
  timer.at("cancelled", r.ts + 100)
  timer.cancel("cancelled", r.ts + 100)
  emit({rec = r.k, ts = r.ts})
end
function on_timer(key, t, emit)
  emit({timer = key, at = t, wm = sluice.watermark(), now = sluice.time()})
end
function on_watermark(wm, emit)
  emit({wm = wm})
end
function on_close(emit)
  emit({closed = true, records = n, wm = sluice.watermark()})
end
EOF
STAMP=1 pipeline timers "$T/keys.jsonl" "script: $T/timers.lua"
ok "timers: the run exits 0" run timers
# Raw text: jq would round math.maxinteger. New tables list the input's
# fields first (ts), then the others by name.
is "$(sed 's/,"_time":[0-9]*}$/}/' "$T/timers.out" | tr -d '\n')" \
'{"ts":1000,"rec":"a"}{"wm":1000}{"ts":2000,"rec":"b"}{"wm":2000}{"ts":3000,"rec":"a"}'\
'{"at":2500,"now":2500,"timer":"a","wm":3000}{"wm":3000}{"ts":4000,"rec":"c"}'\
'{"at":3500,"now":3500,"timer":"b","wm":4000}{"wm":4000}{"ts":5000,"rec":"a"}'\
'{"at":4500,"now":4500,"timer":"a","wm":5000}{"wm":5000}'\
'{"at":5500,"now":5500,"timer":"c","wm":'$MAXINT'}{"at":6500,"now":6500,"timer":"a","wm":'$MAXINT'}'\
'{"wm":'$MAXINT'}{"closed":true,"records":5,"wm":'$MAXINT'}' \
    "timers fire once, in time order, as the watermark passes them, the rest at the end of input; then on_watermark, then on_close"
is "$(out timers 'select(.timer) | [.at, ._time]' | tr -d '\n')" '[2500,2500][3500,3500][4500,4500][5500,5500][6500,6500]' \
    "records emitted from on_timer carry the timer's time as event time"
is "$(out timers 'select(.wm and (.timer|not) and (.closed|not)) | ._time' | tr '\n' ' ')" \
    "1000 2000 3000 4000 5000 5000 " \
    "records from on_watermark carry the watermark (the last one before the end of input, at the end)"
is "$(out timers 'select(.closed) | ._time')" 5000 "on_close's records carry the last watermark"

script timer_no_handler <<'EOF'
function process(r) timer.at("x", 1) return r end
EOF
pipeline timer_no_handler "$T/two.jsonl" "script: $T/timer_no_handler.lua"
ok "timer.at without on_timer: the run exits 0" run timer_no_handler
like "$(errors_of timer_no_handler '.error' | head -1)" 'defines no on_timer' \
    "timer.at without on_timer is an error for that record"

# ---- 6. log, print, metrics ---------------------------------------------------------------
script logs <<'EOF'
function process(r)
  log.info("info %s %d", r.k, r.ts)
  log.warn("warn %s", r.k)
  log.error("error plain")
  print("printed", r.k, 1.5)
  return r
end
EOF
pipeline logs "$T/two.jsonl" "script: $T/logs.lua"
ok "log: the run exits 0" run logs
like "$(cat "$T/logs.log")" 'INFO +\[op\] info a 1000$' "log.info formats and logs at INFO with the stage name"
like "$(cat "$T/logs.log")" 'WARN +\[op\] warn b$' "log.warn logs at WARN"
like "$(cat "$T/logs.log")" 'ERROR +\[op\] error plain$' "log.error logs at ERROR"
like "$(cat "$T/logs.log")" 'INFO +\[op\] printed	a	1\.5$' "print() goes to the log, tab-separated"

script metrics <<'EOF'
local seen = metrics.counter("lua_test_seen", {kind_of = "all"})
function process(r)
  seen:inc()
  metrics.counter("lua_test_by_key_total", {key = r.k, zone = "z1"}):inc(2)
  metrics.gauge("lua_test_last_ts", {key = r.k}):set(r.ts)
  local g = metrics.gauge("lua_test_updown")
  g:inc(5) g:dec() g:dec(2)
  state.put(r.k, r.ts)
  local ok, err = pcall(metrics.counter, "bad-name")
  local ok2, err2 = pcall(function() seen:inc(-1) end)
  local h = metrics.histogram("lua_test_wait_seconds", {key = r.k})
  h:observe(r.ts / 1000000)
  local ok3, err3 = pcall(function() h:inc() end)
  return {k = r.k, bad_name = err, negative = err2, hist_inc = err3}
end
EOF
PORT=$(free_port)
: >"$T/metrics.jsonl"
TOP="metrics: {listen: 127.0.0.1:$PORT}" SOURCE_EXTRA="    mode: follow" \
    pipeline metrics "$T/metrics.jsonl" "script: $T/metrics.lua"
sed -i '/^metrics: {listen: false}$/d' "$T/metrics.yaml"
"$SLUICE" run "$T/metrics.yaml" >"$T/metrics.log" 2>&1 &
mpid=$!
printf '{"ts":1000,"k":"a"}\n{"ts":2000,"k":"b"}\n{"ts":3000,"k":"a"}\n' >>"$T/metrics.jsonl"
scraped() { curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$T/scrape.txt" &&
            grep -q '^lua_test_seen_total{.*} 3$' "$T/scrape.txt"; }
ok "metrics: the script's counter reaches 3 on /metrics" wait_for 30 scraped
like "$(cat "$T/scrape.txt")" '^lua_test_seen_total\{.*stage="op".*kind_of="all"\} 3$' \
    "metrics.counter: _total appended, the stage label first, then the script's labels"
like "$(cat "$T/scrape.txt")" '^lua_test_by_key_total\{.*key="a",zone="z1"\} 4$' \
    "metrics.counter:inc(n) per label set (labels sorted by name)"
like "$(cat "$T/scrape.txt")" '^lua_test_last_ts\{.*key="b"\} 2000$' "metrics.gauge:set"
like "$(cat "$T/scrape.txt")" '^# TYPE lua_test_last_ts gauge' "a gauge is typed gauge"
like "$(cat "$T/scrape.txt")" '^lua_test_updown\{[^}]*stage="op"[^}]*\} 6$' "metrics.gauge:inc and :dec (3 x (5 - 1 - 2))"
like "$(cat "$T/scrape.txt")" '^sluice_state_keys\{[^}]*stage="op"[^}]*\} 2$' \
    "the state's size reaches the core's sluice_state_keys gauge (2 keys)"
like "$(cat "$T/scrape.txt")" '^# TYPE lua_test_wait_seconds histogram' "metrics.histogram is typed histogram"
like "$(cat "$T/scrape.txt")" '^lua_test_wait_seconds_bucket\{[^}]*key="a",le="0.005"\} 2$' \
    "metrics.histogram:observe: 1 ms and 3 ms of key a in the 5 ms bucket"
like "$(cat "$T/scrape.txt")" '^lua_test_wait_seconds_bucket\{[^}]*key="a",le="0.001"\} 1$' \
    "... and only the 1 ms one in the 1 ms bucket (le inclusive)"
like "$(cat "$T/scrape.txt")" '^lua_test_wait_seconds_sum\{[^}]*key="a"\} 0.004000000$' "... their sum in seconds"
like "$(out metrics '.hist_inc' | head -1)" 'histograms take observe' "a histogram has no inc()"
like "$(out metrics '.bad_name' | head -1)" 'not a valid metric name' "a bad metric name is a Lua error"
like "$(out metrics '.negative' | head -1)" 'a counter only goes up' "a counter cannot go down"
kill -TERM "$mpid"
wait_exit "$mpid"
is "$?" 0 "metrics: the followed pipeline drains on SIGTERM and exits 0"

# ---- 7. sandbox ----------------------------------------------------------------------------
mkdir -p "$T/lib/pkg"
printf 'return {answer = 42}\n' >"$T/lib/mymod.lua"
printf 'return {name = "pkg"}\n' >"$T/lib/pkg/init.lua"
printf 'return "from dofile"\n' >"$T/lib/inside.lua"
printf 'return "outside"\n' >"$T/outside.lua"
CASES="os.execute io.popen io.open require_socket require_lfs package.loadlib load_binary string.dump dofile loadfile os.getenv os.exit os.remove debug.sethook collectgarbage_ok os.time_ok require_ok require_init_ok dofile_inside_ok"
i=0
for c in $CASES; do i=$((i + 1)); echo "{\"ts\":$((i * 1000)),\"case\":\"$c\"}"; done >"$T/cases.jsonl"
script sandbox <<EOF
local cases = {
  ["os.execute"] = function() return os.execute("touch $T/pwned") end,
  ["io.popen"] = function() return io.popen("id") end,
  ["io.open"] = function() return io.open("/etc/passwd") end,
  require_socket = function() return require("socket") end,
  require_lfs = function() return require("lfs") end,
  ["package.loadlib"] = function() return package.loadlib("libc.so.6", "system") end,
  load_binary = function()
    local f, err = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8", "chunk")
    if not f then error(err) end
    return f
  end,
  ["string.dump"] = function() return string.dump(print) end,
  dofile = function() return dofile("$T/outside.lua") end,
  loadfile = function() return loadfile("$T/outside.lua") end,
  ["os.getenv"] = function() return os.getenv("HOME") end,
  ["os.exit"] = function() return os.exit(3) end,
  ["os.remove"] = function() return os.remove("$T/outside.lua") end,
  ["debug.sethook"] = function() return debug.sethook() end,
  collectgarbage_ok = function() return collectgarbage("count") > 0 end,
  ["os.time_ok"] = function() return os.time() > 0 end,
  require_ok = function() return require("mymod").answer end,
  require_init_ok = function() return require("pkg").name end,
  dofile_inside_ok = function() return dofile("$T/lib/inside.lua") end,
}
function process(r)
  return {case = r.case, result = tostring(cases[r.case]())}
end
EOF
pipeline sandbox "$T/cases.jsonl" "script: $T/sandbox.lua" "lua_path: [$T/lib]"
ok "sandbox: the run exits 0 (refusals are record errors)" run sandbox
refused() {   # CASE REGEX
    like "$(errors_of sandbox "select(.case == \"$1\") | .error")" "$2" "sandbox: $1 is refused"
}
refused os.execute "os.execute is not available in the sandbox \\(\`unsafe: true\` on the stage allows it\\)"
refused io.popen "io.popen is not available in the sandbox"
refused io.open "io.open is not available in the sandbox"
refused require_socket "module 'socket' not found.*C modules need \`unsafe: true\`"
refused require_lfs "module 'lfs' not found"
refused package.loadlib "package.loadlib is not available in the sandbox"
refused load_binary "attempt to load a binary chunk"
refused string.dump "string.dump is not available in the sandbox"
refused dofile "dofile\\('.*outside.lua'\\) is refused"
refused loadfile "loadfile\\('.*outside.lua'\\) is refused"
refused os.getenv "os.getenv is not available in the sandbox"
refused os.exit "os.exit is not available in the sandbox"
refused os.remove "os.remove is not available in the sandbox"
refused debug.sethook "debug.sethook is not available in the sandbox"
ok "sandbox: os.execute did not run" test ! -e "$T/pwned"
ok "sandbox: os.remove did not remove" test -e "$T/outside.lua"
is "$(out sandbox '[.case, .result]' | tr -d '\n')" \
    '["collectgarbage_ok","true"]["os.time_ok","true"]["require_ok","42"]["require_init_ok","pkg"]["dofile_inside_ok","from dofile"]' \
    "sandbox: what is allowed works (collectgarbage, os.time, require and dofile from lua_path)"

script unsafe <<EOF
function process(r)
  local f = io.open("$T/outside.lua")
  local text = f:read("a")
  f:close()
  return {home = os.getenv("HOME") ~= nil, text = text, debug = type(debug.sethook)}
end
EOF
pipeline unsafe "$T/two.jsonl" "script: $T/unsafe.lua" "unsafe: true"
ok "unsafe: the run exits 0" run unsafe
is "$(out unsafe | head -1)" '{"debug":"function","home":true,"text":"return \"outside\"\n"}' \
    "unsafe: true allows os.getenv, io.open and debug"

# ---- 8. instruction budget and memory limit -------------------------------------------------
printf '{"ts":1000,"k":"ok1"}\n{"ts":2000,"k":"loop"}\n{"ts":3000,"k":"ok2"}\n{"ts":4000,"k":"pcall_loop"}\n{"ts":5000,"k":"memory"}\n{"ts":6000,"k":"ok3"}\n' >"$T/budget.jsonl"
script budget <<'EOF'
function process(r)
  if r.k == "loop" then while true do end end
  if r.k == "pcall_loop" then
    for _ = 1, 10 do pcall(function() while true do end end) end
  end
  if r.k == "memory" then
    local t = {}
    for i = 1, 1e8 do t[i] = string.rep("x", 100) .. i end
  end
  return r
end
EOF
pipeline budget "$T/budget.jsonl" "script: $T/budget.lua" "max_instructions: 1000000" "memory_limit: 16MiB"
start=${EPOCHREALTIME/./}
ok "budget: an endless loop does not hang the run, which exits 0" run budget
diag "budget run: $(( (${EPOCHREALTIME/./} - start) / 1000 )) ms"
is "$(out budget '.k' | tr -d '"\n' )" "ok1ok2ok3" "budget: the records after the endless loops are processed"
like "$(errors_of budget 'select(.k == "loop") | .error')" 'budget\.lua:2: instruction budget exceeded' \
    "budget: the endless loop's record is in errors: instruction budget exceeded, at its line"
like "$(errors_of budget 'select(.k == "pcall_loop") | .error')" 'instruction budget exceeded' \
    "budget: pcall() cannot catch the budget and go on looping"
like "$(errors_of budget 'select(.k == "memory") | .error')" 'not enough memory.*memory_limit: 16777216' \
    "memory_limit: a script that grows past it fails that record"

# ---- 9. runtime errors --------------------------------------------------------------------
printf '{"ts":1000,"k":"a","v":1}\n{"ts":2000,"k":"b"}\n{"ts":3000,"k":"c","v":3}\n' >"$T/rt.jsonl"
script runtime <<'EOF'
local function helper(v)
  return v * 2
end

function process(r)
  r.double = helper(r.v)
  return r
end
EOF
pipeline runtime "$T/rt.jsonl" "script: $T/runtime.lua"
ok "runtime error: the run exits 0" run runtime
is "$(out runtime '[.k, .double]' | tr -d '\n')" '["a",2]["c",6]' "runtime error: the other records go on"
like "$(errors_of runtime '.error')" \
    "^\"lua_error: $T/runtime\\.lua:2: attempt to perform arithmetic on a nil value \\(local 'v'\\) \\[traceback: .*runtime\\.lua:2 in .*helper.* < .*runtime\\.lua:6 in " \
    "runtime error: the message names script:line, with a traceback through the helper"
is "$(errors_of runtime '[.k, .stage]')" '["b","op"]' "runtime error: the record itself is in errors"

script bad_return <<'EOF'
function process(r) return 42 end
EOF
pipeline bad_return "$T/two.jsonl" "script: $T/bad_return.lua"
ok "bad return: the run exits 0" run bad_return
like "$(errors_of bad_return '.error' | head -1)" 'process returned a number: return a table' \
    "process returning a non-table is an error for that record"

pipeline on_error_fail "$T/rt.jsonl" "script: $T/runtime.lua" "on_error: fail"
status_is 1 "on_error: fail: a runtime error stops the run with status 1" run on_error_fail

# ---- 10. load-time errors: exit status 2 ------------------------------------------------------
script syntax <<'EOF'
function process(r)
  local x = = 1
  return r
end
EOF
pipeline syntax "$T/two.jsonl" "script: $T/syntax.lua"
status_is 2 "syntax error: exit status 2" run syntax
like "$(cat "$T/syntax.log")" "syntax\\.yaml:[0-9]+:[0-9]+: .*script: .*syntax\\.lua:2: unexpected symbol near '='" \
    "syntax error: file:line:col of \`script\`, then script.lua:LINE: message"
status_is 2 "syntax error: sluice validate finds it too" "$SLUICE" validate "$T/syntax.yaml"

pipeline missing "$T/two.jsonl" "script: $T/no-such.lua"
status_is 2 "missing script: exit status 2" run missing
like "$(cat "$T/missing.log")" "script: cannot open .*no-such\\.lua.*No such file or directory" \
    "missing script: the message names the file and the OS error"

pipeline both "$T/two.jsonl" "script: $T/types.lua" "code: 'function process(r) return r end'"
status_is 2 "script and code both: exit status 2" run both
like "$(cat "$T/both.log")" 'either as .script. \(a file\) or as .code. \(inline\), not both' \
    "script and code both: the message says to pick one"
pipeline neither "$T/two.jsonl"
status_is 2 "neither script nor code: exit status 2" run neither

script no_process <<'EOF'
function proces(r) return r end
EOF
pipeline no_process "$T/two.jsonl" "script: $T/no_process.lua"
status_is 2 "a script without process(): exit status 2" run no_process
like "$(cat "$T/no_process.log")" "defines no process\\(record, emit\\) function" "it says process() is missing"

script init_error <<'EOF'
function init(config) if config.threshold < 0 then error("threshold must be >= 0") end end
function process(r) return r end
EOF
pipeline init_error "$T/two.jsonl" "script: $T/init_error.lua" "config: {threshold: -1}"
status_is 2 "an error in init(config): exit status 2" run init_error
like "$(cat "$T/init_error.log")" "config: init\\(config\\) failed: .*init_error\\.lua:1: threshold must be >= 0" \
    "an error in init(config) points at config, with the script's message"

script chunk_error <<'EOF'
local x = nil
x.y = 1
function process(r) return r end
EOF
pipeline chunk_error "$T/two.jsonl" "script: $T/chunk_error.lua"
status_is 2 "an error in the script's main chunk: exit status 2" run chunk_error
like "$(cat "$T/chunk_error.log")" "chunk_error\\.lua:2: attempt to index a nil value" "with its line"

pipeline code "$T/two.jsonl" 'code: |' '  function process(r)' '    r.inline = true' '    return r' '  end'
ok "inline code: the run exits 0" run code
is "$(out code '.inline' | tr -d '\n')" "truetrue" "inline code works"
pipeline code_syntax "$T/two.jsonl" 'code: |' '  function process(r)' '    return r +' '  end'
status_is 2 "inline code with a syntax error: exit status 2" run code_syntax
like "$(cat "$T/code_syntax.log")" 'code: \[code\]:3: unexpected symbol' "inline code errors read [code]:LINE:"

# ---- 11. state and timers through a restart (SIGTERM in follow mode) ---------------------------
script restart <<'EOF'
function process(r, emit)
  local n = (state.get(r.k) or 0) + 1
  state.put(r.k, n)
  timer.at(r.k, r.ts + 1000)
  emit({k = r.k, n = n})
end
function on_timer(key, t, emit)
  emit({timer = key, at = t})
end
EOF
printf '{"ts":1000,"k":"a"}\n{"ts":1500,"k":"b"}\n{"ts":5000,"k":"a"}\n' >"$T/follow.jsonl"
TOP="checkpoint: {dir: $T/chk-restart, interval: 100ms}" SOURCE_EXTRA="    mode: follow" \
    pipeline restart "$T/follow.jsonl" "script: $T/restart.lua"
has_lines() { [ "$(lines_in "$1")" -ge "$2" ]; }
"$SLUICE" run "$T/restart.yaml" >"$T/restart1.log" 2>&1 &
rpid=$!
ok "restart: the first run processes its input (3 records, 2 timers fired)" wait_for 30 has_lines "$T/restart.out" 5
kill -TERM "$rpid"
wait_exit "$rpid"
is "$?" 0 "restart: the first run drains on SIGTERM (a final checkpoint)"
printf '{"ts":9000,"k":"a"}\n' >>"$T/follow.jsonl"
"$SLUICE" run "$T/restart.yaml" >"$T/restart2.log" 2>&1 &
rpid=$!
ok "restart: the second run processes the appended record and the restored timer" \
    wait_for 30 has_lines "$T/restart.out" 7
kill -TERM "$rpid"
wait_exit "$rpid" >/dev/null
like "$(cat "$T/restart2.log")" 'restored checkpoint [0-9]+' "restart: the second run restored a checkpoint"
is "$(out restart | tr -d '\n')" \
    '{"k":"a","n":1}{"k":"b","n":1}{"k":"a","n":2}{"at":2000,"timer":"a"}{"at":2500,"timer":"b"}{"k":"a","n":3}{"at":6000,"timer":"a"}' \
    "restart: the count continues from the restored state, and the timer set before the restart fires after it"

# ---- 12. state through kill -9 (exactly-once output with the running counts) -------------------------
# A reference run without checkpoints times the pipeline; then runs with
# checkpoints every 100 ms are killed with SIGKILL after their first
# checkpoint plus a random part of that time, and restarted, until one ends
# by itself. Every record must come out once with its right running count:
# a restart that lost the state would count from 1 again.
python3 - "$T" <<'PY'
import json, random, sys
t = sys.argv[1]
r = random.Random(7)
counts = {}
with open(t + "/kill.jsonl", "w") as f, open(t + "/kill.want", "w") as w:
    for i in range(40000):
        k = "k%d" % r.randrange(50)
        f.write(json.dumps({"ts": 1700000000000 + i, "k": k, "seq": i}, separators=(",", ":")) + "\n")
        counts[k] = counts.get(k, 0) + 1
        w.write(json.dumps({"k": k, "n": counts[k], "seq": i}, sort_keys=True, separators=(",", ":")) + "\n")
PY
script kill <<'EOF'
function process(r)
  local s = state.get(r.k) or {n = 0}
  s.n = s.n + 1
  state.put(r.k, s)
  return {k = r.k, n = s.n, seq = r.seq}
end
EOF
pipeline kill_ref "$T/kill.jsonl" "script: $T/kill.lua"
start=${EPOCHREALTIME/./}
ok "kill -9: the reference run (no checkpoints) exits 0" run kill_ref
took_ms=$(( (${EPOCHREALTIME/./} - start) / 1000 ))
diag "kill -9: the reference run took $took_ms ms"
jq -cS . "$T/kill_ref.out" >"$T/kill_ref.got" 2>&1
same_lines "kill -9: the reference has every record once with its running count" \
    "$T/kill_ref.got" "$T/kill.want"
TOP="checkpoint: {dir: $T/chk-kill, interval: 100ms}" pipeline kill "$T/kill.jsonl" "script: $T/kill.lua"
RANDOM=$$
killed=0 mid=0
for attempt in 1 2 3; do
    "$SLUICE" run "$T/kill.yaml" >"$T/kill.$attempt.log" 2>&1 &
    kpid=$!
    wait_for 30 grep -Eq 'checkpoint [0-9]+ completed' "$T/kill.$attempt.log" ||
        diag "kill run $attempt: no checkpoint completed within 30 s"
    delay=$(( 20 + RANDOM % (took_ms / 4 + 1) ))
    sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
    lines=$(lines_in "$T/kill.out")
    kill -9 "$kpid" 2>/dev/null
    wait "$kpid" 2>/dev/null
    if [ $? -eq 137 ]; then
        killed=$((killed + 1))
        [ "$lines" -gt 0 ] && [ "$lines" -lt 40000 ] && mid=$((mid + 1))
        diag "kill run $attempt: killed $delay ms after its first checkpoint, $lines output lines"
    else
        diag "kill run $attempt: ended before the kill"
        break
    fi
done
"$SLUICE" run "$T/kill.yaml" >"$T/kill.final.log" 2>&1 &
wait_exit $!
is "$?" 0 "kill -9: the run after the kills ends by itself with status 0"
restored=$(cat "$T"/kill.*.log | grep -c 'restored checkpoint')
_tap_result $(( killed == 0 )) "kill -9: runs were killed mid-run ($killed kills, $mid with partial output)"
_tap_result $(( restored == 0 )) "kill -9: restarts restored checkpoints ($restored)"
jq -cS . "$T/kill.out" >"$T/kill.got" 2>&1
same_lines "kill -9: every record exactly once, each with its right running count per key" \
    "$T/kill.got" "$T/kill.want"

# ---- 13. the examples on their bundled data -----------------------------------------------------
EX=$SRCDIR/etc/examples
export OUT_DIR=$T/examples
mkdir -p "$OUT_DIR"
example() {   # NAME: run it from the repository root (its paths are relative to it)
    (cd "$SRCDIR" && timeout "$RUN_TIMEOUT" "$SLUICE" run --quiet "etc/examples/$1.yaml") \
        >"$T/$1.log" 2>&1
}
validate_example() { (cd "$SRCDIR" && "$SLUICE" validate "etc/examples/$1.yaml"); }
status_is 0 "lua-error-rate example: validates (from the repository root)" validate_example lua-error-rate
status_is 0 "lua-zscore example: validates (from the repository root)" validate_example lua-zscore
ok "lua-error-rate example: runs to its end" example lua-error-rate
is "$(jq -c '[.service, .window_start, .direction, (.error_rate * 10 | round), (.previous_rate * 10 | round)]' \
        "$OUT_DIR/error-rate-spikes.jsonl" 2>&1)" \
    '["checkout","2024-03-15T12:06:00.000Z","up",375,0]
["checkout","2024-03-15T12:08:00.000Z","down",0,455]' \
    "lua-error-rate example: checkout's 5xx burst, up at 12:06 and down at 12:08, nothing else"
is "$(jq -c 'select(.stage == "spikes")' "$OUT_DIR/lua-error-rate-errors.jsonl" 2>&1)" "" \
    "lua-error-rate example: no script errors"
ok "lua-zscore example: runs to its end" example lua-zscore
is "$(jq -c '[.service, .window_start, .history, (.zscore > 10)]' "$OUT_DIR/response-time-anomalies.jsonl" 2>&1)" \
    '["checkout","2024-03-15T12:06:00.000Z",10,true]' \
    "lua-zscore example: only checkout's window at 12:06:00, far above its last 10 windows"
python3 - "$SRCDIR/etc/examples/data/access.jsonl" >"$T/zscore.want" <<'PY'
# The reference: p90 (nearest rank) per service and 30 s window, z against
# the previous (up to) 10 windows' p90, once there are 5.
import json, math, statistics, sys
from datetime import datetime, timezone
wins = {}
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    t = datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    wins.setdefault(r["service"], {}).setdefault(int(t.timestamp()) // 30, []).append(r["response_time"])
for s, ws in sorted(wins.items()):
    past = []
    for w in sorted(ws):
        v = sorted(ws[w])
        p90 = v[max(0, math.ceil(0.9 * len(v)) - 1)]
        if len(past) >= 5:
            m = statistics.mean(past); sd = statistics.pstdev(past)
            if sd > 0 and (p90 - m) / sd > 3:
                print(s, datetime.fromtimestamp(w * 30, timezone.utc).strftime("%H:%M:%S"))
        past = (past + [p90])[-10:]
PY
is "$(cat "$T/zscore.want")" "checkout 12:06:00" "lua-zscore example: a reference computed in Python finds the same window"

done_testing
