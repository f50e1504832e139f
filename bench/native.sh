#!/usr/bin/env bash
# anycastd benchmark, native backend (anycastd's own BGP speaker) against BIRD:
# time to announce N prefixes, and verdict -> route gone at the BGP peer, each
# side by side with a BIRD sending the same routes.
# See bench/README.md ("native backend"). Usage: bench/native.sh
#
# Environment (all optional):
#   BENCH_NATIVE_SIZES      prefix counts for part 1                 (default "1 1000 100000")
#   BENCH_NATIVE_REPS       repetitions per size and sender (median) (default 3)
#   BENCH_NATIVE_SENDERS    part 1 senders: anycastd, bird (S kept awake),
#                           bird-idle (S left alone)                 (default "anycastd bird bird-idle")
#   BENCH_NATIVE_POLL_MS    how often R is asked for its route count (default 2)
#   BENCH_NATIVE_FLAPS      withdrawals (down+up cycles) in part 2   (default 50)
#   BENCH_SKIP_BUILD        set to 1 to reuse the existing release build
#
# Needs bird and birdc (BIRD 2), Python 3 and Linux; runs as root (BGP port
# 179). Only 127.0.0.0/8 is used: 127.0.0.1 for the HTTP server and metrics,
# and one 127.0.K.1 (sender) / 127.0.K.2 (receiver R) pair per sender, K from
# 60 to 64. Every process started here is stopped on exit, including on
# Ctrl-C; configs and logs of the last run stay in bench/results/native-last-run/.
set -euo pipefail

# No __pycache__ next to the scripts.
export PYTHONDONTWRITEBYTECODE=1

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench_dir")
cd "$root"
# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"

read -r -a sizes <<<"${BENCH_NATIVE_SIZES:-1 1000 100000}"
read -r -a senders <<<"${BENCH_NATIVE_SENDERS:-anycastd bird bird-idle}"
reps=${BENCH_NATIVE_REPS:-3}
poll_ms=${BENCH_NATIVE_POLL_MS:-2}
flaps=${BENCH_NATIVE_FLAPS:-50}
for value in "${sizes[@]}" "$reps" "$flaps"; do
    [[ $value =~ ^[0-9]+$ && $value -gt 0 ]] || { echo "native.sh: expected a positive integer, got '$value'" >&2; exit 2; }
done
for value in "${sizes[@]}"; do
    ((value <= 16000000)) || { echo "native.sh: at most 16,000,000 prefixes (10.0.0.0/8), got $value" >&2; exit 2; }
done
[[ $poll_ms =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "native.sh: BENCH_NATIVE_POLL_MS: expected a number, got '$poll_ms'" >&2; exit 2; }
for sender in "${senders[@]}"; do
    [[ $sender == anycastd || $sender == bird || $sender == bird-idle ]] ||
        { echo "native.sh: unknown sender '$sender' (anycastd, bird, bird-idle)" >&2; exit 2; }
done
for tool in bird birdc python3; do
    command -v "$tool" >/dev/null || { echo "native.sh: $tool not found" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "native.sh: needs root (BGP sessions on port 179)" >&2; exit 2; }

results="$bench_dir/results"
work="$results/native-last-run"
rm -rf "$work"
mkdir -p "$work"

pids=()
cleanup() {
    # The driver stops anycastd (which withdraws on SIGTERM) and the BIRDs;
    # BIRD and anycastd are its children with PR_SET_PDEATHSIG.
    stop_pids 300
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_release
anycastd="$root/target/release/anycastd"
server_bin="$root/target/release/examples/bench-http-server"

load_before=$(cut -d' ' -f1 /proc/loadavg)

echo "== starting the bench HTTP server"
start_server "$server_bin"

# In the background and waited for, so a signal reaches the trap at once.
run_driver() {
    python3 "$bench_dir/native_driver.py" "$@" &
    local pid=$!
    pids+=("$pid")
    wait "$pid"
}

echo "== part 1: announce ${sizes[*]} prefixes, ${senders[*]} -> R, $reps runs each"
run_driver announce --anycastd "$anycastd" --workdir "$work" --out "$work/announce.json" \
    --first-net 60 --sizes "${sizes[@]}" --reps "$reps" --poll-ms "$poll_ms" --senders "${senders[@]}"

echo "== part 2: verdict -> route gone at R, $flaps flaps, anycastd and BIRD S"
run_driver flap --anycastd "$anycastd" --workdir "$work" --out "$work/flap.json" \
    --first-net 63 --server "$server" --flaps "$flaps"

load_after=$(cut -d' ' -f1 /proc/loadavg)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || revision+="+dirty"
bird_version=$(bird --version 2>&1 | head -n1)

echo
python3 "$bench_dir/native_driver.py" report --announce "$work/announce.json" --flap "$work/flap.json" \
    --revision "$revision" --bird-version "$bird_version" --load "$load_before / $load_after" |
    tee "$results/native-latest.txt"
echo
echo "table written to $results/native-latest.txt; configs, logs and raw JSON in $work/"
