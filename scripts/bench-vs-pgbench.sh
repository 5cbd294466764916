#!/usr/bin/env bash
# One side-by-side run on the same PostgreSQL with the same client count: pgbench's TPC-B,
# then paykit's qr-pay, and the ratio of the two rates.
#   scripts/bench-vs-pgbench.sh [clients=32] [seconds=20] [group commit: on|off, default on]
# Needs: a release build (cargo build --release -p paykit-cli), pgbench, and PostgreSQL at
# PGHOST/PGPORT/PGUSER (default 127.0.0.1:5432, postgres). It creates and drops two
# throwaway databases.
set -euo pipefail
cd "$(dirname "$0")/.."
clients="${1:-32}"
seconds="${2:-20}"
group_commit=()
[ -n "${3:-}" ] && group_commit=(--group-commit "$3")
export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
export PGOPTIONS="--client-min-messages=warning"
paykit="${CARGO_TARGET_DIR:-target}/release/paykit"
[ -x "$paykit" ] || { echo "build first: cargo build --release -p paykit-cli" >&2; exit 2; }

for db in bench_pgbench bench_paykit; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
done
trap 'for db in bench_pgbench bench_paykit; do psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done' EXIT

pgbench -q -i -s "$clients" bench_pgbench >/dev/null 2>&1
pg_tps=$(pgbench -c "$clients" -j 2 -T "$seconds" bench_pgbench 2>/dev/null | awk '/^tps = /{print $3}')

out=$("$paykit" --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/bench_paykit" bench --scenario qr-pay \
    --clients "$clients" --duration "${seconds}s" --merchants 1000 --wallets 256 "${group_commit[@]}")
echo "$out"
paykit_rate=$(echo "$out" | awk '/^ops /{print $4}' | tr -d '/s')

echo "pgbench TPC-B      clients $clients: $pg_tps tps"
echo "paykit qr-pay      clients $clients: $paykit_rate payments/s"
awk -v a="$paykit_rate" -v b="$pg_tps" 'BEGIN { printf "ratio qr-pay / TPC-B: %.2f (target 1.00)\n", a / b }'
