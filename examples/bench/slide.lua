-- wrk: POST /api/token/sliding/refresh/ with the sliding token from $TOKEN (it keeps its
-- jti, so the same body refreshes again), then the JSON report.
wrk.method = "POST"
wrk.body = '{"token":"' .. os.getenv("TOKEN") .. '"}'
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
