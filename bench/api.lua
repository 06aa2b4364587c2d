-- wrk script: POST one request of any client API; print a JSON summary line at the end.
-- Env: BENCH_PATH (default /v1/chat/completions), BENCH_BODY (the JSON body),
--      BENCH_AUTH (bearer token), BENCH_ANTHROPIC (non-empty: anthropic-version header).
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_AUTH") or "sk-bench")
if os.getenv("BENCH_ANTHROPIC") and os.getenv("BENCH_ANTHROPIC") ~= "" then
  wrk.headers["anthropic-version"] = "2023-06-01"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
