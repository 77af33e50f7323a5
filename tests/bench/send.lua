-- wrk script: POST /v1/send with a small JSON message (credentials from the environment).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Atmos-DID"] = os.getenv("BENCH_DID")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.body = '{"from":"app@sender.bench","to":"user@rcpt.test","subject":"bench","text":"' .. string.rep("The quick brown fox jumps over the lazy dog. ", 40) .. '"}'

local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("non-200: %d\n", non200))
end
