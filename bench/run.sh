#!/usr/bin/env bash
# anycastd benchmark: route-change latency and 1,000-service scale.
# See bench/README.md. Usage: bench/run.sh
#
# Environment (all optional):
#   BENCH_DURATION    scale run length in seconds        (default 60)
#   BENCH_SERVICES    services in the scale run          (default 1000)
#   BENCH_FLAPS       service state changes, latency run (default 200)
#   BENCH_SKIP_BUILD  set to 1 to reuse the existing release build
#
# Only 127.0.0.1 is used. Every process started here is stopped on exit,
# including on Ctrl-C; logs of the last run stay in bench/results/last-run/.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench_dir")
cd "$root"
# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"

duration=${BENCH_DURATION:-60}
services=${BENCH_SERVICES:-1000}
flaps=${BENCH_FLAPS:-200}
for value in "$duration" "$services" "$flaps"; do
    [[ $value =~ ^[0-9]+$ && $value -gt 0 ]] || { echo "run.sh: expected a positive integer, got '$value'" >&2; exit 2; }
done

results="$bench_dir/results"
work="$results/last-run"
rm -rf "$work"
mkdir -p "$work"

pids=()
cleanup() {
    # The driver needs a moment to stop anycastd (it withdraws on SIGTERM).
    stop_pids 200
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_release
anycastd="$root/target/release/anycastd"
server_bin="$root/target/release/examples/bench-http-server"

echo "== starting the bench HTTP server"
start_server "$server_bin" --dump-file "$work/server.dump"

# The driver runs in the background and is waited for, so a signal to this
# script is handled at once rather than after the driver finishes.
run_driver() {
    python3 "$bench_dir/driver.py" "$@" &
    local pid=$!
    pids+=("$pid")
    wait "$pid"
}

common=(--anycastd "$anycastd" --server "$server" --server-pid "$server_pid" --workdir "$work")

echo "== part (a): route-change latency, $flaps flaps at 100ms"
run_driver latency "${common[@]}" --out "$work/latency.json" --flaps "$flaps" --interval 100ms

echo "== part (b): scale, $services services at 1s for $duration s"
run_driver scale "${common[@]}" --out "$work/scale.json" --services "$services" --duration "$duration"

# Which source was measured; "+dirty" when the working tree had changes.
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || revision+="+dirty"

echo
python3 "$bench_dir/driver.py" report --latency "$work/latency.json" --scale "$work/scale.json" \
    --revision "$revision" | tee "$results/latest.txt"
echo
echo "table written to $results/latest.txt; logs and raw JSON in $work/"
