#!/usr/bin/env bash
# anycastd BFD under load: no false BFD down while 1,000 services check at 1 s.
# See bench/README.md ("BFD under load"). Usage: bench/bfd.sh
#
# Environment (all optional):
#   BENCH_DURATION      measured window in seconds, after BFD is Up  (default 600)
#   BENCH_SERVICES      services, one http_2xx check each at 1 s     (default 1000)
#   BENCH_BFD_INTERVAL  BFD min tx = min rx on both sides, in ms     (default 100)
#   BENCH_BFD_MULT      BFD detect multiplier on both sides          (default 3)
#   BENCH_BFD_SNIFF     1: record every BFD packet on R's veth end   (default 1)
#   BENCH_SKIP_BUILD    set to 1 to reuse the existing release build
#
# Needs root, ip (iproute2), bird and birdc (BIRD 2), Python 3 and Linux.
# Two network namespaces joined by a veth pair: acd-bfdA (10.250.1.1/24:
# anycastd, native backend, and the bench HTTP server on 127.0.0.1) and
# acd-bfdR (10.250.1.2/24: BIRD with BFD 100 ms x 3 and `bfd on`). Both
# namespaces and every process started here are removed on exit, including
# on Ctrl-C. Exits 1 on a false BFD down (or any other failed criterion);
# configs, logs and raw JSON of the last run stay in bench/results/bfd-last-run/.
set -euo pipefail

# No __pycache__ next to the scripts.
export PYTHONDONTWRITEBYTECODE=1

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench_dir")
cd "$root"
# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"

duration=${BENCH_DURATION:-600}
services=${BENCH_SERVICES:-1000}
interval_ms=${BENCH_BFD_INTERVAL:-100}
mult=${BENCH_BFD_MULT:-3}
sniff=${BENCH_BFD_SNIFF:-1}
for value in "$duration" "$services" "$interval_ms" "$mult"; do
    [[ $value =~ ^[0-9]+$ && $value -gt 0 ]] || { echo "bfd.sh: expected a positive integer, got '$value'" >&2; exit 2; }
done
((services <= 65000)) || { echo "bfd.sh: at most 65,000 services, got $services" >&2; exit 2; }
((mult <= 255)) || { echo "bfd.sh: BENCH_BFD_MULT is at most 255, got $mult" >&2; exit 2; }
for tool in ip bird birdc python3; do
    command -v "$tool" >/dev/null || { echo "bfd.sh: $tool not found" >&2; exit 2; }
done
[[ $(id -u) == 0 ]] || { echo "bfd.sh: needs root (network namespaces)" >&2; exit 2; }

# Names unique to this bench; the veth ends are named after their namespace.
ns_a=acd-bfdA
ns_r=acd-bfdR
addr_a=10.250.1.1
addr_r=10.250.1.2

results="$bench_dir/results"
work="$results/bfd-last-run"
rm -rf "$work"
mkdir -p "$work"

pids=()
netns_made=0
cleanup() {
    # The driver stops anycastd (which sends BFD AdminDown and withdraws on
    # SIGTERM), the sniffer and BIRD: all its children with PR_SET_PDEATHSIG.
    stop_pids 300
    if ((netns_made)); then
        ip netns del "$ns_a" 2>/dev/null || true
        ip netns del "$ns_r" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

build_release
anycastd="$root/target/release/anycastd"
server_bin="$root/target/release/examples/bench-http-server"

echo "== network: $ns_a ($addr_a) <-veth-> $ns_r ($addr_r)"
for ns in "$ns_a" "$ns_r"; do
    if ip netns list | grep -qx "$ns\( .*\)\?"; then
        echo "   removing a leftover namespace $ns"
        ip netns del "$ns"
    fi
done
netns_made=1
ip netns add "$ns_a"
ip netns add "$ns_r"
ip link add "$ns_a" netns "$ns_a" type veth peer name "$ns_r" netns "$ns_r"
ip -n "$ns_a" addr add "$addr_a/24" dev "$ns_a"
ip -n "$ns_r" addr add "$addr_r/24" dev "$ns_r"
for ns in "$ns_a" "$ns_r"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set "$ns" up
done
# The veth carrier comes up within a few ms; make sure before BIRD starts.
for ((i = 0; i < 50; i++)); do
    ip netns exec "$ns_a" ping -c1 -W1 -q "$addr_r" >/dev/null 2>&1 && break
    sleep 0.1
done

load_before=$(cut -d' ' -f1 /proc/loadavg)

echo "== starting the bench HTTP server in $ns_a"
# start_server runs "$1" --listen 127.0.0.1:0 ... in the background; the exec
# keeps the PID it records the server's own.
server_in_a() { exec ip netns exec "$ns_a" "$server_bin" "$@"; }
start_server server_in_a

run_driver() {
    ip netns exec "$ns_a" python3 "$bench_dir/bfd_driver.py" "$@" &
    local pid=$!
    pids+=("$pid")
    wait "$pid"
}

sniff_flag=()
[[ $sniff == 1 ]] && sniff_flag=(--sniff)
echo "== $services services at 1 s, BFD ${interval_ms} ms x $mult, ${duration} s once Up"
run_driver run --anycastd "$anycastd" --server "$server" --workdir "$work" --out "$work/bfd.json" \
    --services "$services" --duration "$duration" --interval-ms "$interval_ms" --multiplier "$mult" \
    --local "$addr_a" --remote "$addr_r" --ns-r "$ns_r" --iface-r "$ns_r" "${sniff_flag[@]}"

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || revision+="+dirty"
bird_version=$(bird --version 2>&1 | head -n1)
load_after=$(cut -d' ' -f1 /proc/loadavg)

echo
status=0
python3 "$bench_dir/bfd_driver.py" report --result "$work/bfd.json" --revision "$revision" \
    --bird-version "$bird_version" >"$work/report.txt" || status=$?
{ cat "$work/report.txt"; echo "load average (1 min) before / after: $load_before / $load_after"; } |
    tee "$results/bfd.txt"
echo
echo "table written to $results/bfd.txt; configs, logs, BFD packets and raw JSON in $work/"
exit "$status"
