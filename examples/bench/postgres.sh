#!/usr/bin/env bash
# examples/bench/postgres.sh: corral on PostgreSQL against corral on SQLite, in one run
# (not a test). Loopback only, bounded, stops by itself. Needs wrk, curl, jq, psql and a
# PostgreSQL server (PG_URL, default postgres://postgres@127.0.0.1:5432); it creates and
# drops a database of its own.
#
#   examples/bench/postgres.sh                    # ROUNDS=5 DURATION=5s WORKERS=2
#
# Measures, in alternating rounds at 64 connections: GET /hello/ with an access token and
# with a sliding token (auth.auth_token_classes = AccessToken, SlidingToken: a sliding
# token also reads the blacklist, as simplejwt's does), POST /api/token/refresh/ (no
# rotation) and /api/token/sliding/refresh/, and POST /api/token/ and /api/token/sliding/
# (argon2id logins, 8 connections), on each database: requests/s, p50, p99, the ratio
# PostgreSQL / SQLite per round and its median. Results: a summary on stdout, JSON lines
# in $OUT/postgres.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
WORKERS=${WORKERS:-2}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
require wrk curl jq psql
build
J=$OUT/postgres.jsonl; : >"$J"
scratch bench
pg_create
declare -A URL=([sqlite]="sqlite://$DATA/bench.db" [postgres]="$PG_URL/$DB")
declare -A PORT TOKEN REFRESH SLIDING CPID
export CORRAL_AUTH_AUTH_TOKEN_CLASSES=AccessToken,SlidingToken
for d in sqlite postgres; do
  export DATABASE_URL=${URL[$d]}
  (cd "$DATA" && "$CORRAL" migrate apply >/dev/null && printf 'bench-password-1' | "$CORRAL" user create bench --password-stdin >/dev/null)
  PORT[$d]=$(free_port)
  (cd "$DATA" && exec "$CORRAL" serve -b 127.0.0.1:${PORT[$d]} -w "$WORKERS" --log-level warning) >"$OUT/postgres-$d.log" 2>&1 &
  CPID[$d]=$!; PIDS+=(${CPID[$d]})
  wait_up ${PORT[$d]} || { echo "bench: corral on $d did not start" >&2; exit 1; }
  TOKEN[$d]=$(token ${PORT[$d]} bench bench-password-1 access)
  REFRESH[$d]=$(token ${PORT[$d]} bench bench-password-1 refresh)
  SLIDING[$d]=$(token ${PORT[$d]} bench bench-password-1 token /api/token/sliding/)
  for t in ${TOKEN[$d]} ${SLIDING[$d]}; do
    [[ $(curl -s -H "Authorization: Bearer $t" http://127.0.0.1:${PORT[$d]}/hello/) == *Hello* ]] || { echo "bench: no token on $d" >&2; exit 1; }
  done
done
unset DATABASE_URL

echo "== /hello/, refresh and login on SQLite and PostgreSQL, $ROUNDS alternating rounds of $DURATION ($WORKERS workers)"
for d in sqlite postgres; do TOKEN=${TOKEN[$d]} wrk -t2 -c16 -d2s -s "$HERE/hello.lua" http://127.0.0.1:${PORT[$d]}/hello/ >/dev/null; done
for ((r = 1; r <= ROUNDS; r++)); do
  line="   round $r:"
  for what in hello hello_sliding refresh refresh_sliding; do
    declare -A RPS=()
    for d in sqlite postgres; do
      tok=${TOKEN[$d]}
      case $what in
        hello) path=/hello/ script=hello.lua ;;
        hello_sliding) path=/hello/ script=hello.lua tok=${SLIDING[$d]} ;;
        refresh) path=/api/token/refresh/ script=refresh.lua ;;
        refresh_sliding) path=/api/token/sliding/refresh/ script=slide.lua tok=${SLIDING[$d]} ;;
      esac
      j=$(TOKEN=$tok REFRESH=${REFRESH[$d]} measure "${what}_$d" "http://127.0.0.1:${PORT[$d]}$path" $script 64 $(tree ${CPID[$d]}))
      echo "$j" >>"$J"; RPS[$d]=$(jq .rps <<<"$j"); line+=" $what/$d $(jq -r '"\(.rps) p99 \(.p99_ms)"' <<<"$j")"
      [[ $(jq '.non2xx + .connect + .read + .write + .timeout' <<<"$j") == 0 ]] || echo "   WARNING: errors in ${what}_$d: $j" >&2
    done
    ratio=$(jq -n --argjson a "${RPS[postgres]}" --argjson b "${RPS[sqlite]}" '$a / $b * 1000 | round / 1000')
    echo "{\"name\":\"ratio_$what\",\"round\":$r,\"ratio\":$ratio}" >>"$J"; line+=" ratio $ratio;"
  done
  echo "$line"
done
echo "== logins (argon2id), 8 connections, $DURATION each"
for d in sqlite postgres; do
  measure "login_$d" "http://127.0.0.1:${PORT[$d]}/api/token/" login.lua 8 $(tree ${CPID[$d]}) >>"$J"
  measure "login_sliding_$d" "http://127.0.0.1:${PORT[$d]}/api/token/sliding/" login.lua 8 $(tree ${CPID[$d]}) >>"$J"
done

echo
echo "== Summary ($(nproc) CPUs, $WORKERS workers, 64 connections; medians over $ROUNDS rounds)"
med() { jq -r "select(.name == \"$1\") | .$2" "$J" | median; }
printf '| measure | SQLite | PostgreSQL | PostgreSQL / SQLite |\n|---|---|---|---|\n'
for what in hello hello_sliding refresh refresh_sliding; do
  printf '| %s | %s req/s, p50 %s ms, p99 %s ms | %s req/s, p50 %s ms, p99 %s ms | %s (rounds: %s); p99 %s |\n' "$what" \
    "$(med ${what}_sqlite rps)" "$(med ${what}_sqlite p50_ms)" "$(med ${what}_sqlite p99_ms)" \
    "$(med ${what}_postgres rps)" "$(med ${what}_postgres p50_ms)" "$(med ${what}_postgres p99_ms)" \
    "$(med ratio_$what ratio)" "$(jq -r "select(.name==\"ratio_$what\") | .ratio" "$J" | tr '\n' ' ')" \
    "$(jq -n --argjson a "$(med ${what}_postgres p99_ms)" --argjson b "$(med ${what}_sqlite p99_ms)" '$a / $b * 100 | round / 100')"
done
for what in login login_sliding; do
  printf '| %s (argon2id, 8 connections) | %s req/s, p99 %s ms | %s req/s, p99 %s ms | |\n' "$what" \
    "$(med ${what}_sqlite rps)" "$(med ${what}_sqlite p99_ms)" "$(med ${what}_postgres rps)" "$(med ${what}_postgres p99_ms)"
done
