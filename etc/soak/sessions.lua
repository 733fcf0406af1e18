-- sessions.lua — per-user sessions for the soak pipeline (scripts/soak):
-- keyed state that is created and freed all the time, the pattern most
-- likely to show a slow leak in the Lua host, its state store or timers.
--
-- Input: request records with user_id, status_code and response_time.
-- Output: every input record, with `session_requests` (the user's
-- requests so far in this session) added; and, when a user has been quiet
-- for `gap_ms` of event time, one summary record with `session_end` set.
-- State: per user, {first, last, n, errors, rt}; one timer per user, re-armed
-- when it fires early (cheaper than a timer per record), and the state is
-- deleted when the session ends, so the number of keys stays around
-- (users active within gap_ms) instead of growing with every user seen.
--
-- Metrics: soak_sessions_closed_total (the core's state metrics show the
-- number of keys and their bytes).

local gap_ms

function init(config)
  gap_ms = config.gap_ms or 5000
  if math.type(gap_ms) ~= "integer" or gap_ms <= 0 then
    error("config.gap_ms must be a positive integer, not " .. tostring(gap_ms))
  end
end

function process(r)
  local user = r.user_id
  if user == nil then
    return r
  end
  local now = sluice.time()
  local s = state.get(user)
  if s == nil then
    s = {first = now, last = now, n = 0, errors = 0, rt = 0.0}
    timer.at(user, now + gap_ms)
  end
  s.n = s.n + 1
  s.last = math.max(s.last, now)
  if (r.status_code or 0) >= 500 then
    s.errors = s.errors + 1
  end
  s.rt = s.rt + (r.response_time or 0)
  state.put(user, s)
  r.session_requests = s.n
  return r
end

function on_timer(user, t, emit)
  local s = state.get(user)
  if s == nil then
    return
  end
  if s.last + gap_ms > t then
    -- the user was active since the timer was set: look again later
    timer.at(user, s.last + gap_ms)
    return
  end
  state.put(user, nil)
  metrics.counter("soak_sessions_closed"):inc()
  emit({
    session_end = true,
    user_id = user,
    session_start_ms = s.first,
    session_last_ms = s.last,
    requests = s.n,
    errors = s.errors,
    avg_rt = s.rt / s.n,
  })
end
