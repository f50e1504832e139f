#!/usr/bin/env bash
# http_2xx with a fresh connection per check, against nginx, compared with
# the floor: a plain C client making the same GET on a fresh connection
# (bench/http_floor.c) at the same rate. See bench/README.md.
# Usage: bench/http_fresh.sh            (as root or any user; needs nginx, gcc)
#
# Environment (all optional):
#   BENCH_SIZES       services per run, space separated  (default "100 1000 3000")
#   BENCH_DURATION    measured seconds per run           (default 30)
#   BENCH_SKIP_BUILD  1 reuses the existing release build
#
# Only 127.0.0.1 is used; every process started here is stopped on exit.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$bench_dir")
cd "$root"
# shellcheck source=bench/lib.sh
source "$bench_dir/lib.sh"

sizes=${BENCH_SIZES:-"100 1000 3000"}
duration=${BENCH_DURATION:-30}
warmup=3
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx_bin ]] || { echo "http_fresh.sh: needs nginx (apt-get install nginx)" >&2; exit 2; }
command -v gcc >/dev/null || { echo "http_fresh.sh: needs gcc" >&2; exit 2; }

results="$bench_dir/results"
work="$results/last-http-fresh"
rm -rf "$work"
mkdir -p "$work/nginx/logs"
pids=()
trap 'stop_pids 50' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    echo "== building (release)"
    cargo build --release --quiet --bin anycastd
fi
anycastd="$root/target/release/anycastd"
gcc -O2 -o "$work/http_floor" "$bench_dir/http_floor.c"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# One worker, every request logged with its time and how many requests its
# connection carried (1 = a fresh connection).
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    log_format probe '\$msec \$uri \$connection_requests \$http_user_agent';
    access_log $work/nginx/logs/access.log probe buffer=256k flush=1s;
    server {
        listen 127.0.0.1:$port backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
EOF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.1
done
echo "== nginx on 127.0.0.1:$port"

# CPU seconds (user + system) of a process, from /proc.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

table="$results/http_fresh.txt"
{
    echo "http_2xx, fresh connection per check, against nginx  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  ($(nproc) CPUs, anycastd $(git describe --always --dirty 2>/dev/null || echo '?'))"
    printf '%-9s %-11s %-14s %-14s %-7s %-10s %-13s %-12s\n' services "CPU %core" "per check us" "C floor us" ratio "RSS MB" "period p99 s" "reused conns"
} >"$table"

for n in $sizes; do
    config="$work/anycastd-$n.yaml"
    {
        echo "announcer: {backend: exabgp}"
        echo "services:"
        for ((i = 1; i <= n; i++)); do
            printf '  - {name: svc%d, check_interval: 1s, routes: [10.%d.%d.%d/32], checks: [{kind: http_2xx, spec: {url: "http://127.0.0.1:%d/svc/%d", method: GET, tries: 1, interval: 100ms, timeout: 500ms}}]}\n' \
                "$i" $((i / 65536 % 256 + 1)) $((i / 256 % 256)) $((i % 256)) "$port" "$i"
        done
    } >"$config"
    : >"$work/nginx/logs/access.log"
    kill -USR1 "$(cat "$work/nginx/nginx.pid")"
    echo "== $n services, ${duration}s after ${warmup}s"
    # stdin held open (ExaBGP's side) for the whole run; stdout discarded.
    (sleep $((duration + warmup + 5)) | "$anycastd" -c "$config" --log-level error run >/dev/null 2>"$work/anycastd-$n.err") &
    sleep 0.5
    pid=$(pgrep -n -f -- "-c $config")
    pids+=("$pid")
    sleep "$warmup"
    start_cpu=$(cpu_of "$pid")
    start_log=$(wc -l <"$work/nginx/logs/access.log")
    sleep "$duration"
    end_cpu=$(cpu_of "$pid")
    rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid" 2>/dev/null || true
    sleep 2
    floor=$("$work/http_floor" 127.0.0.1 "$port" "$n" "$duration")
    echo "   floor: $floor"
    sleep 1.5
    python3 - "$work/nginx/logs/access.log" "$start_log" "$n" "$duration" "$start_cpu" "$end_cpu" "$rss_kb" "$floor" >>"$table" <<'PY'
import sys, collections
log, start_line, n, duration, c0, c1, rss_kb, floor = sys.argv[1:]
n, duration = int(n), float(duration)
times = collections.defaultdict(list)
reused = checks = 0
for number, line in enumerate(open(log)):
    parts = line.split()
    if len(parts) < 4 or not parts[3].startswith("anycastd"):
        continue
    if number < int(start_line):
        continue
    checks += 1
    if parts[2] != "1":
        reused += 1
    times[parts[1]].append(float(parts[0]))
periods = sorted(b - a for ts in times.values() for a, b in zip(ts, ts[1:]))
p99 = periods[int(len(periods) * 0.99)] if periods else float("nan")
cpu = float(c1) - float(c0)
per_check = cpu / (n * duration) * 1e6
floor_us = float(floor.split("cpu_per_request_us")[1].split()[0])
print(f"{n:<9} {cpu / duration * 100:<11.1f} {per_check:<14.1f} {floor_us:<14.1f} {per_check / floor_us:<7.2f} {int(rss_kb) / 1000:<10.1f} {p99:<13.4f} {reused}/{checks}")
PY
    tail -1 "$table"
done
echo
cat "$table"
