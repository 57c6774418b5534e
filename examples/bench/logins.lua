-- wrk: logins of the benchmark user, alternating POST /api/token/ (a pair) and
-- /api/token/sliding/ (a sliding token), then the JSON report.
local body = '{"username":"bench","password":"bench-password-1"}'
local headers = { ["Content-Type"] = "application/json" }
local sent = 0
request = function()
  sent = sent + 1
  local path = (sent % 2 == 0) and "/api/token/sliding/" or "/api/token/"
  return wrk.format("POST", path, headers, body)
end
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
