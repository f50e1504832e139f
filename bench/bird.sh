#!/usr/bin/env bash
# anycastd benchmark, bird backend: verdict -> route gone at a BGP peer,
# reconfigure cost, UPDATEs per health change, many services flipping at once.
# See bench/README.md ("bird backend"). Usage: bench/bird.sh
#
# Environment (all optional):
#   BENCH_BIRD_SIZES       prefix counts                          (default "1 100 10000")
#   BENCH_BIRD_FORMATS     include-file formats                   (default "static prefix_set")
#   BENCH_BIRD_FLAPS       down+up cycles per run                 (default 20)
#   BENCH_BIRD_FLAPS_BIG   cycles for sizes >= BENCH_BIRD_BIG     (default 5)
#   BENCH_BIRD_BIG         where "big" starts                     (default 5000)
#   BENCH_BIRD_CONFIGURES  bare `configure`s timed per size       (default 20)
#   BENCH_BIRD_SERVICES    services in the flip test, 0 skips it  (default 1000)
#   BENCH_BIRD_INCLUDE_DIR put anycastd's include files in a fresh directory
#                          under this one (e.g. /dev/shm, to leave the disk's
#                          fsync out); default: next to the logs, on disk
#   BENCH_SKIP_BUILD       set to 1 to reuse the existing release build
#
# Needs bird and birdc (BIRD 2.0.11 or later: empty prefix sets), Python 3 and
# Linux. Only 127.0.0.0/8 is used: 127.0.0.1 for the HTTP server and one
# 127.0.K.1/127.0.K.2 pair per BIRD couple, K from 100 up. Every process
# started here is stopped on exit, including on Ctrl-C; logs of the last run
# stay in bench/results/bird-last-run/.
set -euo pipefail

# No __pycache__ next to the scripts.
export PYTHONDONTWRITEBYTECODE=1

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench_dir")
cd "$root"
# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"

read -r -a sizes <<<"${BENCH_BIRD_SIZES:-1 100 10000}"
read -r -a formats <<<"${BENCH_BIRD_FORMATS:-static prefix_set}"
flaps=${BENCH_BIRD_FLAPS:-20}
flaps_big=${BENCH_BIRD_FLAPS_BIG:-5}
big=${BENCH_BIRD_BIG:-5000}
configures=${BENCH_BIRD_CONFIGURES:-20}
services=${BENCH_BIRD_SERVICES:-1000}
for value in "${sizes[@]}" "$flaps" "$flaps_big" "$big" "$configures"; do
    [[ $value =~ ^[0-9]+$ && $value -gt 0 ]] || { echo "bird.sh: expected a positive integer, got '$value'" >&2; exit 2; }
done
[[ $services =~ ^[0-9]+$ ]] || { echo "bird.sh: BENCH_BIRD_SERVICES: expected an integer, got '$services'" >&2; exit 2; }
for value in "${sizes[@]}" "$services"; do
    ((value <= 65535)) || { echo "bird.sh: at most 65535 prefixes, got $value" >&2; exit 2; }
done
for fmt in "${formats[@]}"; do
    [[ $fmt == static || $fmt == prefix_set ]] || { echo "bird.sh: unknown format '$fmt'" >&2; exit 2; }
done
for tool in bird birdc python3; do
    command -v "$tool" >/dev/null || { echo "bird.sh: $tool not found" >&2; exit 2; }
done

results="$bench_dir/results"
work="$results/bird-last-run"
rm -rf "$work"
mkdir -p "$work"

include_dir=""
pids=()
cleanup() {
    local pid pidfile
    # The driver stops anycastd (which withdraws on SIGTERM) and both BIRDs.
    stop_pids 300
    # Belt and braces: the driver's BIRDs die with it (PR_SET_PDEATHSIG), but
    # stop any that a pid file of this run still names.
    while IFS= read -r -d '' pidfile; do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        [[ $pid =~ ^[0-9]+$ ]] || continue
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == bird ]] &&
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$work/"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done < <(find "$work" -name bird.pid -print0 2>/dev/null)
    if [[ -n $include_dir ]]; then
        rm -rf -- "$include_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_release
# Copies: a rebuild of target/ during the run must not swap the binary
# being measured.
cp "$root/target/release/anycastd" "$root/target/release/examples/bench-http-server" "$work/"
anycastd="$work/anycastd"
server_bin="$work/bench-http-server"
"$anycastd" --version >"$work/anycastd.version"

include_args=()
if [[ -n ${BENCH_BIRD_INCLUDE_DIR:-} ]]; then
    include_dir=$(mktemp -d "${BENCH_BIRD_INCLUDE_DIR%/}/anycastd-bird-bench.XXXXXX")
    include_args=(--include-dir "$include_dir")
fi

echo "== starting the bench HTTP server"
start_server "$server_bin" --dump-file "$work/server.dump"

echo "== bird backend: sizes ${sizes[*]}, formats ${formats[*]}, $flaps flaps ($flaps_big from $big), flip test $services services"
started=$SECONDS
# In the background and waited for, so a signal here is handled at once.
python3 "$bench_dir/bird_driver.py" run --anycastd "$anycastd" --server "$server" --workdir "$work" \
    --out "$work/bird.json" --sizes "${sizes[@]}" --formats "${formats[@]}" --flaps "$flaps" \
    --flaps-big "$flaps_big" --big "$big" --configures "$configures" --services "$services" \
    "${include_args[@]}" &
driver_pid=$!
pids+=("$driver_pid")
wait "$driver_pid"
echo "   done in $((SECONDS - started)) s"

# Which source was measured; "+dirty" when the working tree had changes.
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || revision+="+dirty"

echo
python3 "$bench_dir/bird_driver.py" report --results "$work/bird.json" --revision "$revision" |
    tee "$results/bird-latest.txt"
echo
echo "table written to $results/bird-latest.txt; logs and raw JSON in $work/"
