#!/usr/bin/env bash
# examples/bench/token_rows.sh: the token tables stay bounded (not a test). Loopback only,
# bounded, stops by itself. Needs wrk, curl, jq, sqlite3 and psql with a PostgreSQL server
# (PG_URL, default postgres://postgres@127.0.0.1:5432) for the PostgreSQL half; it creates
# and drops a database of its own.
#
#   examples/bench/token_rows.sh          # LOGINS=100000 LIFETIME=30 INTERVAL=30 DBS="sqlite postgres"
#
# On each database: LOGINS argon2id logins as fast as 8 connections go, alternating pairs
# and sliding tokens, with refresh and sliding lifetimes of LIFETIME seconds and the
# master's maintenance (expired tokens flushed) every INTERVAL seconds. The outstanding-
# token rows are counted every 2 s; the summary gives the logins, their rate, the most
# rows seen, the rows left at the end, and the bound the flush should keep them under:
# rate x (refresh lifetime + sliding lifetime + interval + 2 s). Without the flush every
# login's row stays: as many rows as logins. JSON lines in $OUT/token_rows.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LOGINS=${LOGINS:-100000}
LIFETIME=${LIFETIME:-30}
INTERVAL=${INTERVAL:-30}
DBS=${DBS:-sqlite postgres}
WORKERS=${WORKERS:-2}
CHUNK=${CHUNK:-30s}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
require wrk curl jq sqlite3 psql
build
J=$OUT/token_rows.jsonl; : >"$J"
scratch rows
export CORRAL_AUTH_REFRESH_TOKEN_LIFETIME_SECS=$LIFETIME CORRAL_AUTH_SLIDING_TOKEN_LIFETIME_SECS=$LIFETIME \
  CORRAL_AUTH_SLIDING_TOKEN_REFRESH_LIFETIME_SECS=$LIFETIME CORRAL_AUTH_LOGIN_THROTTLE_PER_IP=none \
  CORRAL_AUTH_LOGIN_THROTTLE_PER_USER=none
rows() { # the outstanding-token rows on database $1
  local sql="SELECT COUNT(*) FROM corral_outstanding_token"
  if [[ $1 == sqlite ]]; then sqlite3 "$DATA/rows.db" "$sql"; else psql "$PG_URL/$DB" -Atc "$sql"; fi
}
echo "== $LOGINS logins per database, lifetimes $LIFETIME s, maintenance every $INTERVAL s ($WORKERS workers)"
for d in $DBS; do
  if [[ $d == sqlite ]]; then export DATABASE_URL=sqlite://$DATA/rows.db; else
    pg_create; export DATABASE_URL=$PG_URL/$DB; fi
  (cd "$DATA" && "$CORRAL" migrate apply >/dev/null && printf 'bench-password-1' | "$CORRAL" user create bench --password-stdin >/dev/null)
  port=$(free_port)
  (cd "$DATA" && exec "$CORRAL" serve -b 127.0.0.1:$port -w "$WORKERS" --maintenance-interval "$INTERVAL" --log-level warning) >"$OUT/token_rows-$d.log" 2>&1 &
  cpid=$!; PIDS+=($cpid)
  wait_up $port || { echo "bench: corral on $d did not start" >&2; exit 1; }
  (while sleep 2; do echo "$(rows $d)"; done) >"$DATA/samples-$d" 2>/dev/null &
  sampler=$!
  # wrk runs for a time, not a count: chunks of CHUNK until LOGINS are done.
  t0=$(now_ms) logins=0 bad=0
  while ((logins < LOGINS)); do
    j=$(wrk -t2 -c8 -d"$CHUNK" -s "$HERE/logins.lua" http://127.0.0.1:$port/ | wrk_json)
    logins=$((logins + $(jq .requests <<<"$j"))) bad=$((bad + $(jq '.non2xx + .connect + .read + .write + .timeout' <<<"$j")))
  done
  t1=$(now_ms)
  kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true
  max=$(sort -n "$DATA/samples-$d" | tail -1)
  # After the last login, one more interval (and the lifetime) lets the flush catch up.
  sleep $((LIFETIME + LIFETIME + INTERVAL + 5))
  left=$(rows $d)
  rate=$(jq -n --argjson n "$logins" --argjson ms "$((t1 - t0))" '$n / $ms * 1000 | round')
  bound=$(jq -n --argjson r "$rate" --argjson l "$LIFETIME" --argjson i "$INTERVAL" '$r * ($l + $l + $i + 2) | round')
  jq -nc --arg d "$d" --argjson n "$logins" --argjson bad "$bad" --argjson max "${max:-0}" --argjson left "$left" --argjson rate "$rate" --argjson bound "$bound" \
    '{name: "token_rows", database: $d, logins: $n, errors: $bad, logins_per_s: $rate, max_rows: $max, rows_at_end: $left, bound: $bound}' >>"$J"
  echo "   $d: $logins logins in $(((t1 - t0) / 1000)) s ($rate/s, $bad errors), most rows $max (bound $bound), rows at the end $left"
  kill -TERM $cpid; wait $cpid 2>/dev/null || true
  unset DATABASE_URL
done
echo
echo "== Summary ($(nproc) CPUs)"
printf '| database | logins | logins/s | most outstanding rows | bound | rows at the end |\n|---|---|---|---|---|---|\n'
jq -r '"| \(.database) | \(.logins) | \(.logins_per_s) | \(.max_rows) | \(.bound) | \(.rows_at_end) |"' "$J"
