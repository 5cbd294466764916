#!/usr/bin/env bash
# Runs schemathesis (from PyPI) against a fresh sandbox gateway's /openapi.json, signing
# every request as its caller would (scripts/schemathesis/hooks.py), and fails on any 5xx
# or any response that breaks the published schema.
#   scripts/schemathesis.sh [max-examples=50]
# Needs a built gateway (cargo build -p paykit-cli) and Python 3; installs schemathesis
# into a virtualenv under ${VENV:-/tmp/paykit-schemathesis}.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${1:-50}"
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$(pwd)/$target_dir"
paykit="$target_dir/debug/paykit"
[ -x "$paykit" ] || { echo "build first: cargo build -p paykit-cli" >&2; exit 2; }
venv="${VENV:-/tmp/paykit-schemathesis}"
[ -x "$venv/bin/schemathesis" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q schemathesis; }

work="$(mktemp -d)"
export DATABASE_URL="sqlite://$work/paykit.db" PAYKIT_LOG=warn
port=$((20000 + RANDOM % 20000))
"$paykit" serve --listen "127.0.0.1:$port" >"$work/serve.log" 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }
m=$("$paykit" merchant create --name "Schemathesis Shop" --json)
b=$("$paykit" biller create --name "Schemathesis Water" --category water --json)
export MERCHANT_ID=$(echo "$m" | json merchant_id) MERCHANT_KEY_ID=$(echo "$m" | json key_id) MERCHANT_SECRET=$(echo "$m" | json api_secret)
export BILLER_ID=$(echo "$b" | json biller_id) BILLER_KEY_ID=$(echo "$b" | json key_id) BILLER_SECRET=$(echo "$b" | json api_secret)
export OPERATOR_TOKEN=$("$paykit" operator create --name schemathesis --json | json token)
curl -sf -H 'content-type: application/json' -d '{"phone":"13900001111","password":"schemathesis-1"}' "$base/wallet/v1/users" >/dev/null
export WALLET_TOKEN=$(curl -sf -H 'content-type: application/json' -d '{"phone":"13900001111","password":"schemathesis-1"}' "$base/wallet/v1/sessions" | json token)
# A wallet that can pay, so the fuzzer reaches the money paths instead of REAL_NAME_REQUIRED.
wallet() { curl -sf -X "$1" -H 'content-type: application/json' -H "authorization: Bearer $WALLET_TOKEN" -H "idempotency-key: setup$RANDOM" -d "$3" "$base/wallet/v1/$2"; }
wallet POST real-name '{"name":"张三","id_number":"440304199003070018"}' >/dev/null
wallet PUT pay-password '{"pay_password":"258369"}' >/dev/null
card=$(wallet POST cards '{"card_number":"6222000000000009","holder_name":"张三"}' | json card_id)
wallet POST top-ups "{\"card_id\":\"$card\",\"amount\":\"1000.00\",\"pay_password\":\"258369\"}" >/dev/null

export PYTHONPATH="$(pwd)/scripts/schemathesis${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=hooks
status=0
"$venv/bin/schemathesis" run "$base/openapi.json" --url "$base" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance \
    --max-examples "$examples" --seed 1 --exclude-path /ops/v1/sandbox/clock \
    --no-color || status=$?
if grep -q 'panicked' "$work/serve.log"; then
    echo "the gateway panicked:" && grep -A5 panicked "$work/serve.log"
    status=1
fi
exit $status
