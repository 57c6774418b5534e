#!/usr/bin/env bash
# examples/bench/callgrind.sh: instructions per request under `valgrind --tool=callgrind`,
# which counts instructions rather than time, so the figure does not depend on what else
# this shared machine is doing (not a test). Loopback only; stops by itself.
#
#   examples/bench/callgrind.sh                    # corral (and hyper_jwt when present)
#   CORRAL=/path/to/other/corral examples/bench/callgrind.sh   # another build, same method
#   N=2000 PATHS="/hello/ /healthz" examples/bench/callgrind.sh
#   CORRAL_ARGS="--metrics-bind 127.0.0.1:0" examples/bench/callgrind.sh   # with metrics on
#
# Method: each server runs twice under callgrind (one worker for corral), once serving
# WARM keep-alive requests and once WARM + N; the difference of the two runs' total
# instruction counts, divided by N, is the cost of one request, boot and exit cancelled
# out. Prints one line per server and path; JSON lines go to $OUT/callgrind.jsonl.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
N=${N:-2000}
WARM=${WARM:-200}
PATHS=${PATHS:-/hello/}
OUT=${OUT:-$ROOT/target/bench}
PEERS=${PEERS:-$ROOT/../shared/peers}
CORRAL=${CORRAL:-$ROOT/target/release/corral}
export SECRET_KEY=bench-only-secret-key-0123456789abcdef-0123456789abcdef
export PEER_SECRET=$SECRET_KEY
for t in valgrind python3 curl jq; do command -v $t >/dev/null || { echo "callgrind: $t is required" >&2; exit 2; }; done
mkdir -p "$OUT"; : >"$OUT/callgrind.jsonl"
if [[ $CORRAL == "$ROOT/target/release/corral" ]]; then (cd "$ROOT" && cargo build --release --quiet); fi
HYPER=""
if [[ -d $PEERS/hyper_jwt ]]; then
  mkdir -p "$OUT/hyper_jwt"; cp -r --update "$PEERS/hyper_jwt/." "$OUT/hyper_jwt/"; chmod -R u+w "$OUT/hyper_jwt"
  (cd "$OUT/hyper_jwt" && cargo build --release --quiet) && HYPER=$OUT/hyper_jwt/target/release/hyper_jwt
fi
DATA=$(mktemp -d "$OUT/cg.XXXXXX")
trap 'rm -rf "$DATA"' EXIT
export DATABASE_URL="sqlite://$DATA/bench.db"
(cd "$DATA" && "$CORRAL" migrate apply >/dev/null && printf 'bench-password-1' | "$CORRAL" user create bench --password-stdin >/dev/null)

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# hammer PORT PATH COUNT: COUNT keep-alive GETs with the token, each checked for 200.
hammer() {
  python3 - "$@" <<'PY'
import http.client, os, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
h = {"Authorization": "Bearer " + os.environ["TOKEN"]}
for _ in range(n):
    c.request("GET", path, headers=h)
    r = c.getresponse(); r.read()
    assert r.status == 200, (path, r.status)
PY
}
wait_up() { for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0; sleep 0.1; done; return 1; }
# total PREFIX: the sum of the instruction counts of every callgrind file with PREFIX.
total() { local t=0 v; for f in "$1".*; do v=$(awk '/^summary:/{print $2}' "$f"); t=$((t + ${v:-0})); done; echo $t; }

# one_run NAME COUNT PATH: the total instructions of a whole server run serving COUNT requests.
one_run() {
  local name=$1 count=$2 path=$3 port pid prefix
  port=$(free_port); prefix="$DATA/$name.$count.$(echo "$path" | tr -c 'a-z' _)"
  if [[ $name == corral ]]; then
    (cd "$DATA" && exec valgrind -q --tool=callgrind --trace-children=yes --callgrind-out-file="$prefix.%p" \
      "$CORRAL" serve -b 127.0.0.1:$port -w 1 --log-level warning ${CORRAL_ARGS:-}) & pid=$!
  else
    valgrind -q --tool=callgrind --callgrind-out-file="$prefix.%p" "$HYPER" "$port" & pid=$!
  fi
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$port/hello/" && break; sleep 0.1; done
  hammer "$port" "$path" "$count"
  kill -TERM $pid; wait $pid 2>/dev/null || true
  total "$prefix"
}

port=$(free_port)
(cd "$DATA" && exec "$CORRAL" serve -b 127.0.0.1:$port -w 1 --log-level warning) & CPID=$!
wait_up "$port" || { echo "callgrind: corral did not start" >&2; exit 1; }
export TOKEN=$(curl -s -X POST -H 'Content-Type: application/json' -d '{"username":"bench","password":"bench-password-1"}' "http://127.0.0.1:$port/api/token/" | jq -r .access)
kill -TERM $CPID; wait $CPID 2>/dev/null || true
[[ -n $TOKEN && $TOKEN != null ]] || { echo "callgrind: no token" >&2; exit 1; }

servers=(corral); [[ -n $HYPER ]] && servers+=(hyper_jwt)
for name in "${servers[@]}"; do
  for path in $PATHS; do
    [[ $name == hyper_jwt && $path != /hello/ ]] && continue
    a=$(one_run "$name" "$WARM" "$path"); b=$(one_run "$name" $((WARM + N)) "$path")
    per=$(( (b - a) / N ))
    echo "$name $path: $per instructions per request (N=$N, totals $a and $b)"
    echo "{\"name\":\"$name\",\"path\":\"$path\",\"instructions_per_request\":$per,\"n\":$N}" >>"$OUT/callgrind.jsonl"
  done
done
