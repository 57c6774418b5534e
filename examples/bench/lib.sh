# examples/bench/lib.sh: what the benchmark scripts share (sourced, not run).
# Sets HERE, ROOT, OUT, PEERS, CORRAL; builds corral (release) and, when the peers are
# there, hyper_jwt (HYPER, empty without it). Loopback only.
HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench}
PEERS=${PEERS:-$ROOT/../shared/peers}
CORRAL=${CORRAL:-$ROOT/target/release/corral}
export BENCH_DIR=$HERE
export SECRET_KEY=${SECRET_KEY:-bench-only-secret-key-0123456789abcdef-0123456789abcdef}
export PEER_SECRET=$SECRET_KEY
mkdir -p "$OUT"

require() { for t in "$@"; do command -v "$t" >/dev/null || { echo "bench: $t is required" >&2; exit 2; }; done; }
build() {
  if [[ $CORRAL == "$ROOT/target/release/corral" ]]; then (cd "$ROOT" && cargo build --release --quiet); fi
  HYPER=""
  if [[ -d $PEERS/hyper_jwt ]]; then
    # A writable copy (the peers may be read-only); kept between runs so cargo rebuilds only on change.
    mkdir -p "$OUT/hyper_jwt"; cp -r --update "$PEERS/hyper_jwt/." "$OUT/hyper_jwt/"; chmod -R u+w "$OUT/hyper_jwt"
    (cd "$OUT/hyper_jwt" && cargo build --release --quiet) && HYPER=$OUT/hyper_jwt/target/release/hyper_jwt
  fi
}
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
median() { sort -n | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]}'; }
probe() { # 0 once GET /healthz answers (bash /dev/tcp: no fork, tight timing)
  local line; { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; IFS= read -r -t 5 line <&3; exec 3>&- 3<&-
  [[ $line == "HTTP/1.1 200"* ]]
}
wait_up() { local j; for ((j = 0; j < 5000; j++)); do probe "$1" && return 0; sleep 0.002; done; return 1; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $(( 10#$t / 1000 )); }
wrk_json() { sed -n 's/^RESULT //p'; }
ticks() { local t=0 s; for p in "$@"; do s=$(cat /proc/$p/stat 2>/dev/null) || continue; s=${s##*) }; set -- $s; t=$((t + ${12} + ${13})); done; echo $t; }
tree() { echo "$1" $(pgrep -P "$1" | tr '\n' ' '); }
# token PORT USER PASSWORD [FIELD [PATH]]: a field of a login's answer (access by default;
# PATH /api/token/sliding/ with FIELD token for a sliding token).
token() {
  curl -s -X POST -H 'Content-Type: application/json' -d "{\"username\":\"$2\",\"password\":\"$3\"}" \
    "http://127.0.0.1:$1${5:-/api/token/}" | jq -r ".${4:-access}"
}
# measure NAME URL SCRIPT CONNS PIDS...: one wrk run as a JSON line with the servers' CPU time per request.
measure() {
  local name=$1 url=$2 script=$3 conns=$4; shift 4
  local t0 t1 j; t0=$(ticks "$@")
  j=$(wrk -t2 -c"$conns" -d"$DURATION" --latency -s "$HERE/$script" "$url" | wrk_json)
  t1=$(ticks "$@")
  echo "$j" | jq -c --arg n "$name" --argjson cpu "$(( t1 - t0 ))" --argjson hz "$(getconf CLK_TCK)" \
    '. + {name: $n, cpu_us_per_request: (if .requests > 0 then $cpu * 1000000 / $hz / .requests else null end)}'
}
# scratch NAME: a scratch folder DATA under $OUT and a PostgreSQL database name DB (made
# by the caller with pg_create), both removed at exit with every pid in PIDS.
scratch() {
  DB=corral_${1}_$$
  DATA=$(mktemp -d "$OUT/$1.XXXXXX")
  PIDS=()
  trap scratch_cleanup EXIT
}
scratch_cleanup() {
  for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  [[ -z ${PG_URL:-} ]] || psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
pg_create() { psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB" >/dev/null; }
