-- error_rate.lua — error-rate spikes: a service whose share of 5xx
-- responses moves by more than `threshold` percentage points from its
-- previous window, up (an incident starts) or down (it is over).
--
-- Input: window rows with service, window_start, window_end, requests and
-- errors (etc/examples/lua-error-rate.yaml makes them). Output: one record
-- per spike, with the two rates and the change. State: per service, the
-- error rate of its latest window, checkpointed with the pipeline, so a
-- restart compares with the window before it rather than starting over.
--
-- Metrics (on /metrics when the pipeline has `metrics.listen`):
--   error_rate_percent{service}        gauge, the latest window's rate
--   error_rate_spikes_total{service}   counter, spikes found

local threshold

function init(config)
  threshold = config.threshold or 10
  if type(threshold) ~= "number" or threshold <= 0 then
    error("config.threshold must be a positive number of percentage points, not "
          .. tostring(threshold))
  end
end

function process(w)
  if w.requests == nil or w.requests == 0 then
    return
  end
  local rate = 100 * (w.errors or 0) / w.requests
  local previous = state.get(w.service)
  state.put(w.service, rate)
  metrics.gauge("error_rate_percent", {service = w.service}):set(rate)
  if previous == nil or math.abs(rate - previous) <= threshold then
    return
  end
  local direction = rate > previous and "up" or "down"
  metrics.counter("error_rate_spikes", {service = w.service}):inc()
  log.warn("%s: error rate %s from %.1f%% to %.1f%% in the window from %s",
           w.service, direction, previous, rate, w.window_start)
  return {
    service = w.service,
    window_start = w.window_start,
    window_end = w.window_end,
    requests = w.requests,
    error_rate = rate,
    previous_rate = previous,
    change = rate - previous,
    direction = direction,
  }
end
