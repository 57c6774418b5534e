-- wrk: POST /api/token/ with the benchmark user's credentials, then the JSON report.
wrk.method = "POST"
wrk.body = '{"username":"bench","password":"bench-password-1"}'
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
