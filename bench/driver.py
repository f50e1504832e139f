#!/usr/bin/env python3
"""Drives anycastd for the benchmark; called by bench/run.sh.

It plays ExaBGP: anycastd runs as a child with its stdin and stdout on pipes
owned here. Every line anycastd writes is timestamped and answered with
`done`, as ExaBGP does with acks enabled. The pipe to anycastd's stdin stays
open for the whole run, because anycastd exits on EOF there (ExaBGP gone).

Subcommands:
  latency  flap one service and read anycastd's route-change latency summary
  scale    1,000 services at 1 s: start-up time, check rate and period, CPU, RSS
  report   render the JSON results of both as a table

Only the standard library is used. Everything talks to 127.0.0.1.
"""

import argparse
import ctypes
import datetime
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: anycastd gets SIGKILL if this driver dies, whatever the
    cause, so no daemon outlives the bench even if cleanup never runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    # Tiny race between close and anycastd's bind; acceptable on loopback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil without floats
    return sorted_values[int(rank) - 1]


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def wall_us():
    return time.time_ns() // 1000


def to_us(text, fmt):
    """Microseconds since the epoch of a UTC timestamp string."""
    dt = datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
    return (dt - EPOCH) // datetime.timedelta(microseconds=1)


def prefixes(n, second_octet=0):
    """n distinct /32s: 10.S.x.y/32 (S + 1 when n > 65535, never needed here)."""
    return [f"10.{second_octet + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32" for i in range(1, n + 1)]


def stats(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": values[-1],
        "min": values[0],
        "mean": statistics.fmean(values),
    }


class Tail:
    """New complete lines of a growing file."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = b""

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return []
        self.pos += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def parse_duration(text):
    """Seconds in a `100ms` / `1s` style duration (the subset used here)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text)
    if not m:
        raise SystemExit(f"unsupported duration {text!r}; use e.g. 100ms or 1s")
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)


def service_block(index, server, interval, route, timeout="500ms"):
    return (
        f"  - name: svc{index:04d}\n"
        f"    check_interval: {interval}\n"
        f"    routes: [{route}]\n"
        f"    checks:\n"
        f"      - kind: http_2xx\n"
        f"        spec: {{url: \"http://{server}/svc/{index}\", method: GET, "
        f"tries: 1, interval: 100ms, timeout: {timeout}}}\n"
    )


def write_config(path, services, metrics_port):
    """services: YAML blocks from service_block(); each lists its own route,
    so `announcer.routes` stays empty."""
    with open(path, "w") as f:
        f.write("announcer:\n  backend: exabgp\n  routes: []\nservices:\n")
        for block in services:
            f.write(block)
        f.write(f'metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}\n')


class Anycastd:
    """anycastd as an ExaBGP helper, with every line it printed recorded."""

    def __init__(self, binary, config, stderr_path):
        self.lines = []  # (monotonic ns, text), in arrival order
        self.cond = threading.Condition()
        self.eof = False
        self.stderr = open(stderr_path, "wb")
        self.started_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(
            [binary, "-c", config, "--backend", "exabgp", "run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            bufsize=0,
            preexec_fn=die_with_parent,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        # Unbuffered binary pipe + readline: each line is seen as soon as
        # anycastd flushes it, which is what the latency wait depends on.
        stdout = self.proc.stdout
        while True:
            line = stdout.readline()
            now = time.monotonic_ns()
            if not line:
                break
            try:
                self.proc.stdin.write(b"done\n")
            except (BrokenPipeError, ValueError):
                pass  # anycastd is already exiting; its last lines still count
            with self.cond:
                self.lines.append((now, line.decode().rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def count(self, prefix):
        with self.cond:
            return sum(1 for _, text in self.lines if text.startswith(prefix))

    def wait_lines(self, predicate, timeout):
        """Waits until predicate(lines) is true; returns whether it became so."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return predicate(self.lines)
                self.cond.wait(left)
            return True

    def alive(self):
        return self.proc.poll() is None

    def cpu_ticks(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            # The command name may contain spaces; fields after ')' are fixed.
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def memory_kib(self):
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
        return values

    def stop(self, timeout=15.0):
        """SIGTERM (anycastd withdraws everything and exits 0), bounded."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.stderr.close()
        return self.proc.returncode

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()


def install_signal_exit():
    """run.sh's trap sends SIGTERM; turn it into SystemExit so `finally`
    blocks stop anycastd cleanly."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def scrape_latency(metrics_port):
    text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    name = "anycastd_route_change_latency_seconds"
    result = {}
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(rf'{name}(_sum|_count)?\{{(.*)\}} (\S+)$', line)
        if not m or 'backend="exabgp"' not in m.group(2):
            continue
        suffix, labels, value = m.groups()
        q = re.search(r'quantile="([^"]+)"', labels)
        if suffix:
            result[suffix[1:]] = float(value)
        elif q:
            result[q.group(1)] = float(value)
    return result


def cmd_latency(args):
    server = args.server
    metrics_port = free_port()
    route = "10.0.0.1/32"
    config = os.path.join(args.workdir, "latency.yaml")
    write_config(config, [service_block(1, server, args.interval, route)], metrics_port)

    interval_s = parse_duration(args.interval)
    daemon = Anycastd(args.anycastd, config, os.path.join(args.workdir, "latency.stderr"))
    try:
        announce = f"announce route {route} "
        withdraw = f"withdraw route {route} "
        if not daemon.wait_lines(lambda ls: any(t.startswith(announce) for _, t in ls), 10):
            raise SystemExit(f"latency: no initial announce within 10 s; see {daemon.stderr.name}")

        # End-to-end times (toggle at the server -> line on stdout) are kept
        # as context only: they include waiting for the next check tick
        # (0..interval), which the in-process metric rightly leaves out.
        e2e_ms = []
        flap_started = time.monotonic()
        for i in range(args.flaps):
            failing = i % 2 == 0
            expect = withdraw if failing else announce
            before = daemon.count(expect)
            # The previous line came right after a check tick; toggling at a
            # random phase makes the end-to-end figure span the whole interval.
            time.sleep(random.uniform(0, interval_s))
            t0 = time.monotonic_ns()
            http_get(f"http://{server}/control/{'fail' if failing else 'ok'}/1")
            seen = daemon.wait_lines(
                lambda ls: sum(1 for _, t in ls if t.startswith(expect)) > before,
                args.flap_timeout,
            )
            if not seen:
                raise SystemExit(
                    f"latency: flap {i}: no '{expect.strip()}' within {args.flap_timeout} s"
                )
            with daemon.cond:
                t_line = [ts for ts, t in daemon.lines if t.startswith(expect)][before]
            e2e_ms.append((t_line - t0) / 1e6)
        flap_seconds = time.monotonic() - flap_started
        summary = scrape_latency(metrics_port)
    finally:
        code = daemon.stop()

    e2e_ms.sort()
    result = {
        "flaps": args.flaps,
        "interval": args.interval,
        "flap_seconds": flap_seconds,
        "metric": summary,
        "e2e_ms": {
            "p50": percentile(e2e_ms, 50),
            "p99": percentile(e2e_ms, 99),
            "max": e2e_ms[-1],
        },
        "exit_code": code,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"latency: {args.flaps} flaps in {flap_seconds:.1f} s; metric count "
        f"{summary.get('count')}, p50 {summary.get('0.5', float('nan')) * 1e3:.3f} ms, "
        f"p99 {summary.get('0.99', float('nan')) * 1e3:.3f} ms, "
        f"max {summary.get('1', float('nan')) * 1e3:.3f} ms; anycastd exit {code}"
    )


def parse_dump(text):
    arrivals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        arrivals[int(fields[0])] = [int(x) for x in fields[1:]]
    return arrivals


def cmd_scale(args):
    server = args.server
    n = args.services
    metrics_port = free_port()
    routes = [f"10.1.{i >> 8}.{i & 255}/32" for i in range(1, n + 1)]
    config = os.path.join(args.workdir, "scale.yaml")
    write_config(
        config,
        [service_block(i, server, "1s", routes[i - 1]) for i in range(1, n + 1)],
        metrics_port,
    )
    # The server is shared with nothing else, but start from zero anyway.
    http_get(f"http://{server}/control/reset")

    daemon = Anycastd(args.anycastd, config, os.path.join(args.workdir, "scale.stderr"))
    t_start = daemon.started_ns
    try:
        # anycastd writes nothing until every service has its first verdict,
        # then announces what is up (and withdraws configured routes that
        # are not, none here); only the announces matter here.
        all_up = daemon.wait_lines(
            lambda ls: sum(1 for _, t in ls if t.startswith("announce route ")) >= n,
            args.startup_timeout,
        )
        if not all_up:
            raise SystemExit(
                f"scale: only {daemon.count('announce route ')} of {n} routes announced "
                f"within {args.startup_timeout} s; see {daemon.stderr.name}"
            )
        with daemon.cond:
            announce_times = [ts for ts, t in daemon.lines if t.startswith("announce route ")]
            lines_at_all_up = len(daemon.lines)
        startup_s = (announce_times[n - 1] - t_start) / 1e9

        # Steady-state window: from 2 s after start (start-up excluded: one
        # TCP connection per service, config parsing) to the end.
        time.sleep(max(0.0, t_start / 1e9 + args.warmup - time.monotonic()))
        w0 = time.monotonic()
        cpu0 = daemon.cpu_ticks()
        count0 = int(http_get(f"http://{server}/control/count"))
        server_cpu0 = proc_cpu_ticks(args.server_pid)
        machine0 = machine_cpu_ticks()

        end = t_start / 1e9 + args.duration
        peak_rss = 0
        while time.monotonic() < end:
            if not daemon.alive():
                raise SystemExit(f"scale: anycastd exited early; see {daemon.stderr.name}")
            peak_rss = max(peak_rss, daemon.memory_kib()["VmRSS"])
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

        w1 = time.monotonic()
        cpu1 = daemon.cpu_ticks()
        count1 = int(http_get(f"http://{server}/control/count"))
        server_cpu1 = proc_cpu_ticks(args.server_pid)
        machine1 = machine_cpu_ticks()
        memory = daemon.memory_kib()
        total_cpu_s = cpu1 / CLK_TCK
        total_wall_s = (time.monotonic_ns() - t_start) / 1e9
        with daemon.cond:
            # Any withdraw after all routes were up means a check failed
            # (timeout, refused connection) during the run.
            late_withdraws = sum(
                1 for _, t in daemon.lines[lines_at_all_up:] if t.startswith("withdraw route ")
            )
        withdraws_before_stop = daemon.count("withdraw route ")
    finally:
        code = daemon.stop()
    shutdown_withdraws = daemon.count("withdraw route ") - withdraws_before_stop

    arrivals = parse_dump(http_get(f"http://{server}/control/dump", timeout=30))
    checks_total = sum(len(v) for v in arrivals.values())
    periods = sorted(
        (b - a) / 1e9 for times in arrivals.values() for a, b in zip(times, times[1:])
    )
    per_service = [len(v) for v in arrivals.values()]

    window = w1 - w0
    steady_checks = count1 - count0
    cpu_s = (cpu1 - cpu0) / CLK_TCK
    result = {
        "services": n,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "startup_all_announced_s": startup_s,
        "checks_total": checks_total,
        "checks_services_seen": len(arrivals),
        "checks_per_service_min": min(per_service) if per_service else 0,
        "checks_per_service_max": max(per_service) if per_service else 0,
        "steady_window_s": window,
        "steady_checks": steady_checks,
        "steady_checks_per_s": steady_checks / window,
        "period_s": {
            "n": len(periods),
            "p50": percentile(periods, 50),
            "p99": percentile(periods, 99),
            "max": periods[-1] if periods else float("nan"),
        },
        "cpu_pct_steady": 100.0 * cpu_s / window,
        "cpu_pct_whole_run": 100.0 * total_cpu_s / total_wall_s,
        "cpu_ms_per_check": 1000.0 * cpu_s / steady_checks if steady_checks else float("nan"),
        "server_cpu_pct_steady": (
            100.0 * (server_cpu1 - server_cpu0) / CLK_TCK / window
            if server_cpu0 is not None and server_cpu1 is not None
            else None
        ),
        # Everything running on the box, in cores: shows whether something
        # besides anycastd and the bench competed for the CPUs.
        "machine_busy_cores_steady": (
            os.cpu_count() * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
        ),
        "rss_end_kib": memory["VmRSS"],
        "rss_peak_sampled_kib": max(peak_rss, memory["VmRSS"]),
        "hwm_kib": memory["VmHWM"],
        "late_withdraws": late_withdraws,
        "shutdown_withdraws": shutdown_withdraws,
        "exit_code": code,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"scale: {n} services up in {startup_s:.3f} s; {checks_total} checks; "
        f"period p99 {result['period_s']['p99']:.4f} s; CPU {result['cpu_pct_steady']:.1f}%; "
        f"RSS {memory['VmRSS'] / 1024:.1f} MiB (HWM {memory['VmHWM'] / 1024:.1f}); exit {code}"
    )


def proc_cpu_ticks(pid):
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return None


def thread_ticks(pid):
    """utime+stime per thread name of `pid` (threads of one name summed);
    threads that end meanwhile are skipped."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        ticks = proc_cpu_ticks(f"{pid}/task/{tid}")
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        if ticks is not None:
            out[name] = out.get(name, 0) + ticks
    return out


def machine_cpu_ticks():
    """(busy, total) jiffies over all CPUs, from /proc/stat's first line."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def cmd_report(args):
    with open(args.latency) as f:
        lat = json.load(f)
    with open(args.scale) as f:
        sc = json.load(f)
    m = lat["metric"]
    ms = lambda s: f"{s * 1e3:.3f} ms"  # noqa: E731
    mb = lambda kib: f"{kib * 1024 / 1e6:.1f} MB ({kib / 1024:.1f} MiB)"  # noqa: E731
    rows = [
        ("Part (a): route-change latency", "", "", ""),
        (f"  flaps (service at {lat['interval']})", str(lat["flaps"]), "~200", ""),
        ("  latency samples (metric _count)", f"{m.get('count', 0):.0f}", "", ""),
        ("  latency p50", ms(m["0.5"]), "", ""),
        ("  latency p99", ms(m["0.99"]), "<= 1 ms", verdict(m["0.99"] <= 0.001)),
        ("  latency max", ms(m["1"]), "", ""),
        ("  latency mean (_sum/_count)", ms(m["sum"] / m["count"]), "", ""),
        ("  toggle->line p50 (incl. tick wait)", f"{lat['e2e_ms']['p50']:.1f} ms", "info", ""),
        ("  anycastd exit code (SIGTERM)", str(lat["exit_code"]), "0", verdict(lat["exit_code"] == 0)),
        (f"Part (b): scale, {sc['services']} services @ 1s, {sc['duration_s']:g} s", "", "", ""),
        (
            "  start -> all routes announced",
            f"{sc['startup_all_announced_s']:.3f} s",
            "<= 2 s",
            verdict(sc["startup_all_announced_s"] <= 2.0),
        ),
        (
            "  checks served (whole run)",
            str(sc["checks_total"]),
            f"{sc['services'] * sc['duration_s']:,.0f}",
            verdict(sc["checks_total"] >= 0.99 * sc["services"] * sc["duration_s"]),
        ),
        (
            f"  check rate (steady, after {sc['warmup_s']:g} s)",
            f"{sc['steady_checks_per_s']:.1f}/s",
            f"{sc['services']}/s",
            verdict(sc["steady_checks_per_s"] >= 0.99 * sc["services"]),
        ),
        ("  check period p50", f"{sc['period_s']['p50']:.4f} s", "", ""),
        ("  check period p99", f"{sc['period_s']['p99']:.4f} s", "<= 1.05 s", verdict(sc["period_s"]["p99"] <= 1.05)),
        ("  check period max", f"{sc['period_s']['max']:.4f} s", "", ""),
        (
            f"  CPU, % of one core (after {sc['warmup_s']:g} s)",
            f"{sc['cpu_pct_steady']:.1f} %",
            "<= 15 %",
            verdict(sc["cpu_pct_steady"] <= 15.0),
        ),
        ("  CPU, % of one core (whole run)", f"{sc['cpu_pct_whole_run']:.1f} %", "info", ""),
        ("  CPU per check", f"{sc['cpu_ms_per_check']:.3f} ms", "", ""),
        ("  RSS at end (VmRSS)", mb(sc["rss_end_kib"]), "<= 30 MB", verdict(sc["rss_end_kib"] * 1024 <= 30e6)),
        ("  RSS peak (VmHWM)", mb(sc["hwm_kib"]), "<= 30 MB", verdict(sc["hwm_kib"] * 1024 <= 30e6)),
        ("  withdraws after all up (failed checks)", str(sc["late_withdraws"]), "0", verdict(sc["late_withdraws"] == 0)),
        (
            "  withdraws at shutdown",
            str(sc["shutdown_withdraws"]),
            str(sc["services"]),
            verdict(sc["shutdown_withdraws"] == sc["services"]),
        ),
        ("  anycastd exit code (SIGTERM)", str(sc["exit_code"]), "0", verdict(sc["exit_code"] == 0)),
    ]
    if sc.get("server_cpu_pct_steady") is not None:
        rows.append(("  (bench HTTP server CPU, % of one core)", f"{sc['server_cpu_pct_steady']:.1f} %", "info", ""))
    if sc.get("machine_busy_cores_steady") is not None:
        rows.append((
            "  (whole machine busy, all processes)",
            f"{sc['machine_busy_cores_steady']:.2f} of {os.cpu_count()} cores",
            "info",
            "",
        ))
    header = ("METRIC", "MEASURED", "TARGET", "")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    out = [f"anycastd benchmark  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  "
           f"({os.cpu_count()} CPUs, {args.host}, anycastd {args.revision})"]
    for row in [header] + rows:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--anycastd", required=True, help="path to the anycastd binary")
    common.add_argument("--server", required=True, help="bench HTTP server, HOST:PORT")
    common.add_argument("--server-pid", type=int, default=0)
    common.add_argument("--workdir", required=True)
    common.add_argument("--out", required=True, help="JSON result file")

    p = sub.add_parser("latency", parents=[common])
    p.add_argument("--flaps", type=int, default=200)
    p.add_argument("--interval", default="100ms")
    p.add_argument("--flap-timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("scale", parents=[common])
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--startup-timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("report")
    p.add_argument("--latency", required=True)
    p.add_argument("--scale", required=True)
    p.add_argument("--host", default=socket.gethostname())
    p.add_argument("--revision", default="unknown", help="source revision measured")
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    install_signal_exit()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
