#!/usr/bin/env bash
# examples/bench/run.sh: corral's benchmark (not a test). Loopback only, bounded, stops
# by itself. Needs wrk, curl and jq; the hyper_jwt peer (../shared/peers) is optional.
#
#   examples/bench/run.sh                # everything, defaults below
#   ROUNDS=9 DURATION=5s WORKERS=2 examples/bench/run.sh
#
# Measures, on one machine in one run:
#   1. time from exec to the first answered request (median of 7 boots);
#   2. /hello/ (a real token) and /healthz: requests/s, p50, p99 at 64 connections,
#      in rounds alternating with the single-process hyper_jwt peer; the ratio per round
#      and its median; server CPU time per request;
#   3. RSS (and PSS) per worker and of the master after the load;
#   4. /hello/ p99 while logins (argon2id) run at full speed beside it;
#   5. repeated HUPs under load: requests/s, p99 against the steady p99, failures.
# Results: a summary on stdout, JSON lines in $OUT/results.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-5s}
WORKERS=${WORKERS:-2}
require wrk curl jq
: >"$OUT/results.jsonl"
build
DATA=$(mktemp -d "$OUT/data.XXXXXX")
export DATABASE_URL="sqlite://$DATA/bench.db"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

"$CORRAL" migrate apply >/dev/null
printf 'bench-password-1' | "$CORRAL" user create bench --password-stdin >/dev/null

echo "== 1. time from exec to the first answered request ($WORKERS workers, migrations already applied)"
boots=()
for i in 1 2 3 4 5 6 7; do
  port=$(free_port); t0=$(now_ms)
  "$CORRAL" serve -b 127.0.0.1:$port -w "$WORKERS" --log-level warning >/dev/null 2>&1 & pid=$!
  for ((j = 0; j < 5000; j++)); do probe $port && break; sleep 0.001; done
  boots+=($(( $(now_ms) - t0 ))); kill -TERM $pid; wait $pid || true
done
READY_MS=$(printf '%s\n' "${boots[@]}" | median)
echo "   ${boots[*]} ms -> median $READY_MS ms"

port=$(free_port)
"$CORRAL" serve -b 127.0.0.1:$port -w "$WORKERS" --log-level warning >"$OUT/corral.log" 2>&1 & CPID=$!; PIDS+=($CPID)
for ((j = 0; j < 5000; j++)); do probe $port && break; sleep 0.002; done
export TOKEN=$(token $port bench bench-password-1)
[[ $(curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$port/hello/) == *Hello* ]] || { echo "bench: no token" >&2; exit 1; }
if [[ -n $HYPER ]]; then
  hport=$(free_port); "$HYPER" "$hport" >/dev/null 2>&1 & HPID=$!; PIDS+=($HPID)
  # Wait (bounded) until it answers /hello/ with this token; it shares SECRET_KEY.
  for ((j = 0; j < 500; j++)); do
    [[ $(curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:$hport/hello/) == *Hello* ]] && break; sleep 0.01
  done
  ((j < 500)) || { echo "bench: hyper_jwt did not answer /hello/ with the token; skipping it" >&2; HYPER=""; }
fi

echo "== 2. throughput at 64 connections, $ROUNDS alternating rounds of $DURATION"
wrk -t2 -c16 -d2s -s "$HERE/hello.lua" http://127.0.0.1:$port/hello/ >/dev/null
for ((r = 1; r <= ROUNDS; r++)); do
  line="   round $r:"
  if [[ -n $HYPER ]]; then h=$(measure hyper_jwt http://127.0.0.1:$hport/hello/ hello.lua 64 $HPID); echo "$h" >>"$OUT/results.jsonl"; line+=" hyper_jwt $(jq .rps <<<"$h")"; fi
  c=$(measure corral_hello http://127.0.0.1:$port/hello/ hello.lua 64 $(tree $CPID)); echo "$c" >>"$OUT/results.jsonl"; line+=" corral /hello/ $(jq .rps <<<"$c")"
  z=$(measure corral_healthz http://127.0.0.1:$port/healthz hello.lua 64 $(tree $CPID)); echo "$z" >>"$OUT/results.jsonl"; line+=" corral /healthz $(jq .rps <<<"$z")"
  if [[ -n $HYPER ]]; then
    ratio=$(jq -n --argjson a "$(jq .rps <<<"$c")" --argjson b "$(jq .rps <<<"$h")" '$a / $b * 1000 | round / 1000')
    echo "{\"name\":\"ratio_hello\",\"round\":$r,\"ratio\":$ratio}" >>"$OUT/results.jsonl"; line+=" ratio $ratio"
  fi
  echo "$line"
done

echo "== 3. memory after the load"
rss() { awk '/^VmRSS:/{print $2}' /proc/$1/status; }
pss() { awk '/^Pss:/{print $2}' /proc/$1/smaps_rollup 2>/dev/null || echo 0; }
for w in $(pgrep -P $CPID); do echo "{\"name\":\"rss_worker\",\"kib\":$(rss $w),\"pss_kib\":$(pss $w)}" >>"$OUT/results.jsonl"; done
echo "{\"name\":\"rss_master\",\"kib\":$(rss $CPID),\"pss_kib\":$(pss $CPID)}" >>"$OUT/results.jsonl"

echo "== 4. /hello/ while logins run at full speed"
BENCH_DIR=$HERE wrk -t1 -c8 -d"$DURATION" --latency -s "$HERE/login.lua" http://127.0.0.1:$port/api/token/ | wrk_json | jq -c '. + {name: "logins"}' >>"$OUT/results.jsonl" & LOGINS=$!
sleep 0.5
wrk -t1 -c16 -d"$DURATION" --latency -s "$HERE/hello.lua" http://127.0.0.1:$port/hello/ | wrk_json | jq -c '. + {name: "hello_during_logins"}' >>"$OUT/results.jsonl"
wait $LOGINS || true; sleep 1

echo "== 5. reloads under load (wrk -c32 for 10 s; SIGHUP at 2.5, 5 and 7.5 s)"
wrk -t2 -c32 -d10s --latency -s "$HERE/hello.lua" http://127.0.0.1:$port/hello/ | wrk_json | jq -c '. + {name: "steady_32"}' >>"$OUT/results.jsonl"
before=$(pgrep -P $CPID | sort | tr '\n' ' ')
( sleep 2.5; kill -HUP $CPID; sleep 2.5; kill -HUP $CPID; sleep 2.5; kill -HUP $CPID ) & HUPS=$!
wrk -t2 -c32 -d10s --latency -s "$HERE/hello.lua" http://127.0.0.1:$port/hello/ | wrk_json | jq -c '. + {name: "reloads_32"}' >>"$OUT/results.jsonl"
wait $HUPS; sleep 1
after=$(pgrep -P $CPID | sort | tr '\n' ' ')
replaced=$(comm -12 <(tr ' ' '\n' <<<"$before" | sort) <(tr ' ' '\n' <<<"$after" | sort) | grep -c . || true)
echo "{\"name\":\"reload_workers\",\"before\":\"$before\",\"after\":\"$after\",\"survivors\":$replaced,\"master_alive\":$(kill -0 $CPID 2>/dev/null && echo true || echo false)}" >>"$OUT/results.jsonl"

echo
echo "== Summary ($(nproc) CPUs, $WORKERS workers; medians over $ROUNDS rounds)"
J="$OUT/results.jsonl"
med() { jq -r "select(.name == \"$1\") | .$2" "$J" | median; }
printf '| measure | value |\n|---|---|\n'
printf '| time to first answered request | %s ms |\n' "$READY_MS"
[[ -n $HYPER ]] && printf '| hyper_jwt /hello/ (1 process) | %s req/s, p50 %s ms, p99 %s ms, %s us CPU/req |\n' "$(med hyper_jwt rps)" "$(med hyper_jwt p50_ms)" "$(med hyper_jwt p99_ms)" "$(med hyper_jwt cpu_us_per_request | cut -c1-5)"
printf '| corral /hello/ | %s req/s, p50 %s ms, p99 %s ms, %s us CPU/req |\n' "$(med corral_hello rps)" "$(med corral_hello p50_ms)" "$(med corral_hello p99_ms)" "$(med corral_hello cpu_us_per_request | cut -c1-5)"
printf '| corral /healthz | %s req/s, p50 %s ms, p99 %s ms |\n' "$(med corral_healthz rps)" "$(med corral_healthz p50_ms)" "$(med corral_healthz p99_ms)"
[[ -n $HYPER ]] && printf '| /hello/ ratio corral / hyper_jwt | median %s (per round: %s) |\n' "$(med ratio_hello ratio)" "$(jq -r 'select(.name=="ratio_hello") | .ratio' "$J" | tr '\n' ' ')"
printf '| RSS per worker | %s KiB (PSS %s KiB); master %s KiB |\n' "$(med rss_worker kib)" "$(med rss_worker pss_kib)" "$(med rss_master kib)"
printf '| logins (argon2id) at full speed | %s req/s, p99 %s ms |\n' "$(med logins rps)" "$(med logins p99_ms)"
printf '| /hello/ p99 during those logins | %s ms (%s req/s) |\n' "$(med hello_during_logins p99_ms)" "$(med hello_during_logins rps)"
printf '| steady, 32 connections | %s req/s, p99 %s ms |\n' "$(med steady_32 rps)" "$(med steady_32 p99_ms)"
printf '| 3 reloads under load, 32 connections | %s req/s, p99 %s ms, max %s ms, failures %s |\n' "$(med reloads_32 rps)" "$(med reloads_32 p99_ms)" "$(med reloads_32 max_ms)" \
  "$(jq -r 'select(.name=="reloads_32") | .non2xx + .connect + .read + .write + .timeout' "$J")"
printf '| workers surviving the reloads | %s (master alive: %s) |\n' "$(jq -r 'select(.name=="reload_workers") | .survivors' "$J")" "$(jq -r 'select(.name=="reload_workers") | .master_alive' "$J")"
