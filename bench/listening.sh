#!/usr/bin/env bash
# CPU of 1,000 `listening` checks (1,000 services at check_interval 1s, one
# shared sock_diag poller every 30 ms): target ≤ 2 % of one core. Builds the
# release binary unless BENCH_SKIP_BUILD=1; BENCH_SERVICES, BENCH_DURATION
# (default 30 s) and BENCH_WARMUP (5 s) tune it. Linux, Python 3.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    echo "== building (release)"
    cargo build --release --quiet --bin anycastd
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/listening.py "$root/target/release/anycastd" "$work"
