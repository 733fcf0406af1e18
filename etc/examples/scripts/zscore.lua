-- zscore.lua — response-time anomalies: a window whose p90 response time
-- lies more than `threshold` standard deviations above the mean of the
-- same service's previous `history` windows (once it has `min_history`).
--
-- Input: window rows with service, window_start, window_end and p90_rt
-- (etc/examples/lua-zscore.yaml makes them). Output: one record per
-- anomalous window. State: per service, the p90 of its last `history`
-- windows, oldest first, checkpointed with the pipeline. The anomalous
-- window joins the history too, so a lasting change becomes the new
-- normal after a few windows instead of alerting forever.
--
-- Metrics (on /metrics when the pipeline has `metrics.listen`):
--   response_time_zscore{service}            gauge, the latest window's z
--   response_time_anomalies_total{service}   counter, anomalies found

local threshold, history, min_history

function init(config)
  threshold = config.threshold or 3
  history = config.history or 10
  min_history = config.min_history or 5
  if math.type(history) ~= "integer" or history < 2 then
    error("config.history must be an integer >= 2, not " .. tostring(history))
  end
  if math.type(min_history) ~= "integer" or min_history < 2 or min_history > history then
    error("config.min_history must be an integer from 2 to history, not "
          .. tostring(min_history))
  end
end

local function mean_and_stddev(xs)
  local sum = 0
  for _, x in ipairs(xs) do sum = sum + x end
  local mean = sum / #xs
  local squares = 0
  for _, x in ipairs(xs) do squares = squares + (x - mean) ^ 2 end
  return mean, math.sqrt(squares / #xs)
end

function process(w)
  local rt = w.p90_rt
  if type(rt) ~= "number" then
    return -- no response times in this window
  end
  local past = state.get(w.service) or {}
  local anomaly
  if #past >= min_history then
    local mean, stddev = mean_and_stddev(past)
    local z = stddev > 0 and (rt - mean) / stddev or 0
    metrics.gauge("response_time_zscore", {service = w.service}):set(z)
    if z > threshold then
      metrics.counter("response_time_anomalies", {service = w.service}):inc()
      log.warn("%s: p90 response time %.3f s in the window from %s is %.1f standard "
               .. "deviations above its last %d windows (mean %.3f s)",
               w.service, rt, w.window_start, z, #past, mean)
      anomaly = {
        service = w.service,
        window_start = w.window_start,
        window_end = w.window_end,
        p90_rt = rt,
        mean_p90_rt = mean,
        stddev_p90_rt = stddev,
        zscore = z,
        history = #past,
      }
    end
  end
  past[#past + 1] = rt
  if #past > history then
    table.remove(past, 1)
  end
  state.put(w.service, past)
  return anomaly
end
