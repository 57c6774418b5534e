-- wrk: GET with the Bearer token from $TOKEN, then the JSON report.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
