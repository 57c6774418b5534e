#!/usr/bin/env bash
# examples/bench/threads.sh: the tail latency of a bare server, corral with and without
# --threads against the one-process hyper_jwt peer, in one run (not a test). Loopback
# only, bounded, stops by itself. Needs wrk, curl, jq and ../shared/peers/hyper_jwt.
#
#   examples/bench/threads.sh                     # ROUNDS=7 DURATION=5s
#
# Each round runs GET /hello/ (a real token, SQLite) at 64 connections against, in turn:
# hyper_jwt (one process, tokio's default of one thread per CPU), corral -w 1 --threads
# N (one process, N = CPUs, the same shape), corral -w N (one single-threaded worker per
# CPU, the default) and corral -w N --threads 2. Reports requests/s and p99 per round and
# their medians, each against hyper_jwt's in the same round.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-7}
DURATION=${DURATION:-5s}
CPUS=$(nproc)
require wrk curl jq
build
[[ -n $HYPER ]] || { echo "bench: needs hyper_jwt in $PEERS" >&2; exit 2; }
J=$OUT/threads.jsonl; : >"$J"
DATA=$(mktemp -d "$OUT/threads.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
export DATABASE_URL="sqlite://$DATA/bench.db"
(cd "$DATA" && "$CORRAL" migrate apply >/dev/null && printf 'bench-password-1' | "$CORRAL" user create bench --password-stdin >/dev/null)

declare -A PORT PID
start() { # NAME ARGS...
  local name=$1; shift
  PORT[$name]=$(free_port)
  (cd "$DATA" && exec "$CORRAL" serve -b 127.0.0.1:${PORT[$name]} --log-level warning "$@") >"$OUT/threads-$name.log" 2>&1 &
  PID[$name]=$!; PIDS+=(${PID[$name]})
  wait_up ${PORT[$name]} || { echo "bench: $name did not start" >&2; exit 1; }
}
start "w1_threads$CPUS" -w 1 --threads "$CPUS"
start "w$CPUS" -w "$CPUS"
start "w${CPUS}_threads2" -w "$CPUS" --threads 2
export TOKEN=$(token ${PORT[w$CPUS]} bench bench-password-1)
PORT[hyper_jwt]=$(free_port); "$HYPER" ${PORT[hyper_jwt]} >/dev/null 2>&1 & PID[hyper_jwt]=$!; PIDS+=(${PID[hyper_jwt]})
for ((j = 0; j < 500; j++)); do
  [[ $(curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:${PORT[hyper_jwt]}/hello/) == *Hello* ]] && break; sleep 0.01
done
((j < 500)) || { echo "bench: hyper_jwt did not answer /hello/" >&2; exit 1; }

NAMES=(hyper_jwt "w1_threads$CPUS" "w$CPUS" "w${CPUS}_threads2")
echo "== GET /hello/ at 64 connections, $ROUNDS rounds of $DURATION ($CPUS CPUs)"
for n in "${NAMES[@]}"; do wrk -t2 -c16 -d2s -s "$HERE/hello.lua" http://127.0.0.1:${PORT[$n]}/hello/ >/dev/null; done
for ((r = 1; r <= ROUNDS; r++)); do
  line="   round $r:"; declare -A RPS=() P99=()
  for n in "${NAMES[@]}"; do
    j=$(measure "$n" "http://127.0.0.1:${PORT[$n]}/hello/" hello.lua 64 $(tree ${PID[$n]}))
    echo "$j" >>"$J"; RPS[$n]=$(jq .rps <<<"$j"); P99[$n]=$(jq .p99_ms <<<"$j")
    line+=" $n ${RPS[$n]} (p99 ${P99[$n]})"
  done
  for n in "${NAMES[@]:1}"; do
    jq -cn --arg n "$n" --argjson r "$r" --argjson a "${RPS[$n]}" --argjson b "${RPS[hyper_jwt]}" \
      --argjson pa "${P99[$n]}" --argjson pb "${P99[hyper_jwt]}" \
      '{name: ("ratio_" + $n), round: $r, rps: ($a / $b * 1000 | round / 1000), p99: ($pa / $pb * 1000 | round / 1000)}' >>"$J"
  done
  echo "$line"
done

echo
echo "== Summary ($CPUS CPUs, 64 connections; medians over $ROUNDS rounds; ratios per round, then their median)"
med() { jq -r "select(.name == \"$1\") | .$2" "$J" | median; }
printf '| server | req/s | p50 | p99 | CPU/req | req/s vs hyper_jwt | p99 vs hyper_jwt |\n|---|---|---|---|---|---|---|\n'
for n in "${NAMES[@]}"; do
  if [[ $n == hyper_jwt ]]; then rr="1" rp="1"; else rr=$(med ratio_$n rps); rp=$(med ratio_$n p99); fi
  printf '| %s | %s | %s ms | %s ms | %s us | %s | %s |\n' "$n" "$(med $n rps)" "$(med $n p50_ms)" "$(med $n p99_ms)" \
    "$(med $n cpu_us_per_request | cut -c1-5)" "$rr" "$rp"
done
