-- wrk: POST /api/token/refresh/ with the refresh token from $REFRESH (no rotation, so it
-- stays valid), then the JSON report.
wrk.method = "POST"
wrk.body = '{"refresh":"' .. os.getenv("REFRESH") .. '"}'
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
