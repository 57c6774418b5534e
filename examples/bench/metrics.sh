#!/usr/bin/env bash
# examples/bench/metrics.sh: GET /hello/ with metrics on (--metrics-bind, scraped every
# second as Prometheus would) against metrics off, in one run (not a test). Loopback
# only, bounded, stops by itself. Needs wrk, curl and jq.
#
#   examples/bench/metrics.sh                     # ROUNDS=7 DURATION=5s WORKERS=2
#
# Alternating rounds at 64 connections; prints req/s, p99 and CPU per request of each,
# the ratio on/off per round and its median. JSON lines in $OUT/metrics.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-5s}
WORKERS=${WORKERS:-2}
require wrk curl jq
build
J=$OUT/metrics.jsonl; : >"$J"
DATA=$(mktemp -d "$OUT/metrics.XXXXXX")
PIDS=() SCRAPER=""
cleanup() {
  [[ -n $SCRAPER ]] && kill "$SCRAPER" 2>/dev/null || true
  for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
export DATABASE_URL="sqlite://$DATA/bench.db"
(cd "$DATA" && "$CORRAL" migrate apply >/dev/null && printf 'bench-password-1' | "$CORRAL" user create bench --password-stdin >/dev/null)
MPORT=$(free_port)
declare -A PORT CPID EXTRA=([off]="" [on]="--metrics-bind 127.0.0.1:$MPORT")
for v in off on; do
  PORT[$v]=$(free_port)
  # shellcheck disable=SC2086
  (cd "$DATA" && exec "$CORRAL" serve -b 127.0.0.1:${PORT[$v]} -w "$WORKERS" --log-level warning --control-socket none ${EXTRA[$v]}) >"$OUT/metrics-$v.log" 2>&1 &
  CPID[$v]=$!; PIDS+=(${CPID[$v]})
  wait_up ${PORT[$v]} || { echo "bench: corral ($v) did not start" >&2; exit 1; }
done
TOKEN=$(token ${PORT[off]} bench bench-password-1 access); export TOKEN
curl -sf "http://127.0.0.1:$MPORT/metrics" >/dev/null || { echo "bench: no metrics on $MPORT" >&2; exit 1; }
# A scraper, once a second, as Prometheus would.
(while sleep 1; do curl -s "http://127.0.0.1:$MPORT/metrics" >/dev/null; done) & SCRAPER=$!
for v in off on; do wrk -t2 -c16 -d2s -s "$HERE/hello.lua" http://127.0.0.1:${PORT[$v]}/hello/ >/dev/null; done

echo "== GET /hello/, metrics off and on, $ROUNDS alternating rounds of $DURATION ($WORKERS workers, 64 connections)"
for ((r = 1; r <= ROUNDS; r++)); do
  line="   round $r:"; declare -A RPS=()
  for v in off on; do
    j=$(measure "hello_$v" "http://127.0.0.1:${PORT[$v]}/hello/" hello.lua 64 $(tree ${CPID[$v]}))
    echo "$j" >>"$J"; RPS[$v]=$(jq .rps <<<"$j"); line+=" $v $(jq -r '"\(.rps) (p99 \(.p99_ms))"' <<<"$j")"
    [[ $(jq '.non2xx + .connect + .read + .write + .timeout' <<<"$j") == 0 ]] || echo "   WARNING: errors in hello_$v: $j" >&2
  done
  ratio=$(jq -n --argjson a "${RPS[on]}" --argjson b "${RPS[off]}" '$a / $b * 1000 | round / 1000')
  echo "{\"name\":\"ratio\",\"round\":$r,\"ratio\":$ratio}" >>"$J"; echo "$line ratio $ratio"
done
count=$(curl -s "http://127.0.0.1:$MPORT/metrics" | awk '/^http_server_request_duration_seconds_count/ {s += $2} END {print s}')

echo
echo "== Summary ($(nproc) CPUs; medians over $ROUNDS rounds; the ratio per round, then its median)"
med() { jq -r "select(.name == \"$1\") | .$2" "$J" | median; }
printf '| metrics | req/s | p99 | CPU/req |\n|---|---|---|---|\n'
for v in off on; do
  printf '| %s | %s | %s ms | %s us |\n' $v "$(med hello_$v rps)" "$(med hello_$v p99_ms)" "$(med hello_$v cpu_us_per_request | cut -c1-5)"
done
echo "on / off: $(med ratio ratio) (rounds: $(jq -r 'select(.name=="ratio") | .ratio' "$J" | tr '\n' ' '))"
echo "requests counted by the metrics: $count"
