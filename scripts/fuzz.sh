#!/usr/bin/env bash
# Runs paykit's cargo-fuzz targets (fuzz/fuzz_targets), each for a while, on the corpora
# kept in fuzz/corpus/<target>, then minimises each corpus; prints one line per target.
#   scripts/fuzz.sh [seconds-per-target=60] [target ...]
# A crash stops the script and leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(money_parse auth_header qr_token payment_code bill_csv escpos)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz passes -Z flags (sanitizers); the machine has one stable toolchain.
export RUSTC_BOOTSTRAP=1
printf '%-14s %8s %10s %8s %8s %s\n' target seconds execs cov features corpus
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="$(mktemp)"
    if ! cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "$t: FOUND A CRASH (input saved under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    cargo fuzz cmin -O "$t" "corpus/$t" >/dev/null 2>&1 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    printf '%-14s %8s %10s %8s %8s %s\n' "$t" "$secs" "$execs" "$cov" "$ft" "$(ls "corpus/$t" | wc -l) files"
    rm -f "$log"
done
