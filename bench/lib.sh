# Shared pieces of the bench scripts (sourced, not run): process bookkeeping,
# the release build, and the bench HTTP server. Expects `root`, `work` and
# the array `pids` to be set by the script.

# Stops every process in `pids`: SIGTERM, then up to `$1` tenths of a second
# each (the drivers stop anycastd, which withdraws on SIGTERM), then SIGKILL.
stop_pids() {
    local grace=${1:-300} pid waited
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for ((waited = 0; waited < grace; waited++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# Builds anycastd and the bench server in release mode unless BENCH_SKIP_BUILD=1.
build_release() {
    if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
        echo "== building (release)"
        cargo build --release --quiet --bin anycastd --example bench-http-server
    fi
}

# Starts the bench HTTP server (`$1`: its binary, further arguments passed
# on) on a free loopback port; sets `server` (host:port) and `server_pid`.
start_server() {
    local bin=$1 i
    shift
    "$bin" --listen 127.0.0.1:0 "$@" >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    pids+=("$server_pid")
    server=""
    for ((i = 0; i < 50; i++)); do
        server=$(sed -n 's/^listening on //p' "$work/server.out")
        [[ -n $server ]] && break
        kill -0 "$server_pid" 2>/dev/null || { echo "the bench server died; see $work/server.err" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n $server ]] || { echo "the bench server did not start within 5 s" >&2; exit 1; }
    echo "   listening on $server"
}
