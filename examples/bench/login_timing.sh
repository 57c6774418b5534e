#!/usr/bin/env bash
# examples/bench/login_timing.sh: how long each kind of failed login takes (not a test).
# Loopback only; stops by itself. Needs curl and python3.
#
#   examples/bench/login_timing.sh                  # TRIES=20
#   CORRAL=/path/to/another/corral examples/bench/login_timing.sh
#
# Users: an argon2id user (corral's own hash), a Django PBKDF2 user (600,000 rounds, as
# Django 4.2 makes them), a user with Django's unusable password, and one whose hash
# demands 5,000,000 rounds (above auth.max_pbkdf2_iterations, so refused). Cases: a wrong
# password for each, and an unknown user. Prints the median and spread of TRIES logins
# per case, and each median against the argon2id user's wrong password.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TRIES=${TRIES:-20}
CORRAL=${CORRAL:-$ROOT/target/release/corral}
export SECRET_KEY=bench-only-secret-key-0123456789abcdef-0123456789abcdef
if [[ $CORRAL == "$ROOT/target/release/corral" ]]; then (cd "$ROOT" && cargo build --release --quiet); fi
DATA=$(mktemp -d)
cleanup() { [[ -n ${CPID:-} ]] && kill -TERM "$CPID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT
export DATABASE_URL="sqlite://$DATA/timing.db"
cd "$DATA"
"$CORRAL" migrate apply >/dev/null
printf 'argon-password-1' | "$CORRAL" user create argonuser --password-stdin >/dev/null
python3 - >"$DATA/dump.json" <<'PY'
import base64, hashlib, json
def pbkdf2(pw, rounds, salt="benchsalt"):
    dk = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt.encode(), rounds)
    return f"pbkdf2_sha256${rounds}${salt}${base64.b64encode(dk).decode()}"
def user(pk, name, hash):
    return {"model": "auth.user", "pk": pk, "fields": {"password": hash, "last_login": None,
        "is_superuser": False, "username": name, "first_name": "", "last_name": "", "email": "",
        "is_staff": False, "is_active": True, "date_joined": "2024-01-01T00:00:00Z"}}
print(json.dumps([user(100, "pbkdfuser", pbkdf2("pbkdf-password-1", 600000)),
                  user(101, "unusableuser", "!unusable"),
                  user(102, "costlyuser", pbkdf2("costly-password-1", 5000000))]))
PY
"$CORRAL" user import-django "$DATA/dump.json" >/dev/null
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
# Throttling off: this measures what each failure costs, 20 times per case.
CORRAL_AUTH_LOGIN_THROTTLE_PER_IP=none CORRAL_AUTH_LOGIN_THROTTLE_PER_USER=none \
  "$CORRAL" serve -b 127.0.0.1:$port -w 1 --log-level error >/dev/null 2>&1 & CPID=$!
for _ in $(seq 1 500); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.02; done
login_ms() { curl -s -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
  -d "{\"username\":\"$1\",\"password\":\"not-the-password\"}" "http://127.0.0.1:$port/api/token/" | awk '{printf "%.1f\n", $1 * 1000}'; }
login_ms warmup-nobody >/dev/null
declare -A MED
echo "== failed logins, $TRIES tries each (ms: median, min-max)"
for case in argonuser nobody-here unusableuser costlyuser pbkdfuser; do
  times=$(for _ in $(seq 1 "$TRIES"); do login_ms "$case"; done | sort -n)
  med=$(echo "$times" | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}')
  MED[$case]=$med
  printf '   %-14s %7s  (%s-%s)\n' "$case" "$med" "$(echo "$times" | head -1)" "$(echo "$times" | tail -1)"
done
echo "== each median against the argon2id user's wrong password"
for case in nobody-here unusableuser costlyuser pbkdfuser; do
  printf '   %-14s %s\n' "$case" "$(awk -v a="${MED[$case]}" -v b="${MED[argonuser]}" 'BEGIN{printf "%.3f", a / b}')"
done
