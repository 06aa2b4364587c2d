-- wrk script: POST a small non-stream chat completion; print a JSON summary line at the end.
-- Env: BENCH_MODEL (default gpt-4o-mini), BENCH_AUTH (bearer token).
local model = os.getenv("BENCH_MODEL") or "gpt-4o-mini"
local auth = os.getenv("BENCH_AUTH") or "sk-bench"
wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"hello"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. auth

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
