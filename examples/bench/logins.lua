-- wrk: logins of the benchmark user, alternating POST /api/token/ (a pair) and
-- /api/token/sliding/ (a sliding token); each thread stops after $LOGINS_PER_THREAD
-- answers. Then the JSON report.
local body = '{"username":"bench","password":"bench-password-1"}'
local headers = { ["Content-Type"] = "application/json" }
local limit = tonumber(os.getenv("LOGINS_PER_THREAD"))
local sent, answered = 0, 0
request = function()
  sent = sent + 1
  local path = (sent % 2 == 0) and "/api/token/sliding/" or "/api/token/"
  return wrk.format("POST", path, headers, body)
end
response = function(status)
  answered = answered + 1
  if answered >= limit then wrk.thread:stop() end
end
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
