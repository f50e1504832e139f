#!/usr/bin/env python3
"""No false BFD down under check load; called by bench/bfd.sh.

Two network namespaces joined by a veth pair (set up by bfd.sh): anycastd
(`backend: native`, one peer with BFD) and the bench HTTP server in A, a
BIRD 2 in R with `protocol bfd` (100 ms x 3) and `bfd on` on its BGP
session. This driver runs inside A; BIRD and the optional packet sniffer are
started in R through `ip netns exec`.

Subcommands:
  run     start BIRD (and the sniffer), then anycastd with N services at 1 s;
          once BFD is Up at 100 ms on both sides, watch for BENCH_DURATION
          seconds: BIRD's `show bfd sessions` every second, its log, and
          anycastd's BFD/BGP counters at the start and end of the window
  sniff   (runs in R) an AF_PACKET socket on R's veth end: one line per BFD
          Control packet either way, with the kernel's receive timestamp
  report  render the JSON result as a table; exits 1 on any failure

Only the standard library is used. Every child (anycastd, BIRD, the sniffer)
is started with PR_SET_PDEATHSIG and stopped in a `finally`.
"""

import argparse
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

from driver import (
    CLK_TCK,
    Tail,
    die_with_parent,
    http_get,
    install_signal_exit,
    parse_dump,
    percentile,
    proc_cpu_ticks,
    stats,
    thread_ticks,
)
from native_driver import Bird

LOCAL_ASN = 65001  # anycastd
REMOTE_ASN = 65002  # BIRD R
PEER = "r"  # anycastd's name for the peer
PROTOCOL = "anycastd"  # R's name for the BGP session
BFD_PORT = 3784  # RFC 5881 single hop

# `show bfd sessions`: `10.250.1.1  acd-bfdR  Up  2026-12-06 12:00:00.123  0.100  0.300`
BFD_ROW = re.compile(r"^(\d+\.\d+\.\d+\.\d+)\s+(\S+)\s+(Up|Down|Init|AdminDown)\s+(.*?)\s+([\d.]+)\s+([\d.]+)\s*$")
# R's log: BFD session changes (`debug { events }` on protocol bfd) and BGP ones.
BIRD_BFD_CHANGE = re.compile(r"Session to (\S+) changed state from (\w+) to (\w+)")
BIRD_BGP_CHANGE = re.compile(r"<TRACE> " + PROTOCOL + r": State changed to (\w+)")
BIRD_DOWN_WORDS = re.compile(r"BFD session down|Neighbor graceful restart|Error:|Received: |Hold timer expired", re.I)


# ------------------------------------------------------------------ helpers


def bird_lines(reply):
    """The text of a BIRD control-socket reply, without the reply codes."""
    out = []
    for line in reply.splitlines():
        if len(line) >= 5 and line[:4].isdigit() and line[4] in " -":
            out.append(line[5:])
        elif line.startswith(" "):
            out.append(line[1:])
        else:
            out.append(line)
    return out


def bfd_sessions(ctl):
    """[{address, interface, state, since, interval, timeout}] from R."""
    rows = []
    for line in bird_lines(ctl.cmd("show bfd sessions")):
        m = BFD_ROW.match(line.strip())
        if m:
            rows.append({"address": m.group(1), "interface": m.group(2), "state": m.group(3),
                         "since": m.group(4), "interval": float(m.group(5)), "timeout": float(m.group(6))})
    return rows


def bgp_status(ctl):
    """R's view of the session to anycastd: state, since, routes, withdrawals."""
    text = "\n".join(bird_lines(ctl.cmd(f"show protocols all {PROTOCOL}")))
    status = {"text": text}
    m = re.search(rf"^{PROTOCOL}\s+BGP\s+\S+\s+(\w+)\s+(.*?)\s{{2,}}(\S.*)?$", text, re.M)
    if m:
        status["proto_state"], status["since"], status["info"] = m.group(1), m.group(2), (m.group(3) or "").strip()
    m = re.search(r"BGP state:\s+(\w+)", text)
    status["bgp_state"] = m.group(1) if m else None
    m = re.search(r"Routes:\s+(\d+) imported", text)
    status["imported"] = int(m.group(1)) if m else 0
    # `Import withdraws:  received  rejected  filtered  ignored  accepted`
    m = re.search(r"Import withdraws:\s+(\d+)", text)
    status["withdraws_received"] = int(m.group(1)) if m else None
    return status


def scrape_all(url):
    """{(name, labels): value} of every sample on anycastd's /metrics."""
    samples = {}
    for line in http_get(url, timeout=10).splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m:
            samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples


def family(samples, name, contains=""):
    return {labels: v for (n, labels), v in samples.items() if n == name and contains in labels}


def bfd_snapshot(url, remote):
    """What anycastd says about its BFD and BGP session, and its services.
    Its per-peer metrics are labelled with the peer's address."""
    s = scrape_all(url)
    peer = f'peer="{remote}"'
    one = lambda name: next(iter(family(s, name, peer).values()), None)  # noqa: E731
    services_up = family(s, "anycastd_service_up")
    return {
        "bfd_state": one("anycastd_bfd_state"),
        "bfd_changes": {re.search(r'state="(\w+)"', k).group(1): v
                        for k, v in family(s, "anycastd_bfd_state_changes_total", peer).items()},
        "bfd_tx_interval_s": one("anycastd_bfd_tx_interval_seconds"),
        "bfd_detection_time_s": one("anycastd_bfd_detection_time_seconds"),
        "bfd_dropped": sum(family(s, "anycastd_bfd_packets_dropped_total").values()),
        "bgp_state": one("anycastd_bgp_session_state"),
        "bgp_flaps": one("anycastd_bgp_session_flaps_total") or 0.0,
        "bgp_held_by_bfd": one("anycastd_bgp_held_by_bfd_total") or 0.0,
        "prefixes": one("anycastd_bgp_prefixes_announced"),
        "services": len(services_up),
        "services_up": sum(1 for v in services_up.values() if v == 1),
    }


def memory_kib(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def machine_ticks():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


# -------------------------------------------------------------------- run


def bird_config(args):
    ms = args.interval_ms
    return f"""router id {args.remote};
protocol device {{}}
protocol bfd {{
  interface "*" {{ min rx interval {ms} ms; min tx interval {ms} ms; multiplier {args.multiplier}; }};
  debug {{ states, events }};
}}
protocol bgp {PROTOCOL} {{
  local {args.remote} as {REMOTE_ASN};
  neighbor {args.local} as {LOCAL_ASN};
  bfd on;
  debug {{ states, events }};
  ipv4 {{ import all; export none; }};
}}
"""


def anycastd_config(path, args):
    ms = args.interval_ms
    with open(path, "w") as f:
        f.write(
            "announcer:\n"
            "  backend: native\n"
            f"  router_id: {args.local}\n"
            f"  local_address: {args.local}\n"
            f"  local_asn: {LOCAL_ASN}\n"
            "  peers:\n"
            f"    - {{name: {PEER}, remote_address: {args.remote}, remote_asn: {REMOTE_ASN}, "
            f"bfd: {{enabled: true, min_tx: {ms}ms, min_rx: {ms}ms, multiplier: {args.multiplier}}}}}\n"
            "  routes: []\n"
            "services:\n"
        )
        # As bench/run.sh's scale part: one http_2xx check at 1 s per service
        # (a fresh connection each), each service its own /32.
        for i in range(1, args.services + 1):
            f.write(
                f"  - name: svc{i:04d}\n"
                "    check_interval: 1s\n"
                f"    routes: [10.1.{i >> 8}.{i & 255}/32]\n"
                "    checks:\n"
                "      - kind: http_2xx\n"
                f'        spec: {{url: "http://{args.server}/svc/{i}", method: GET, '
                "tries: 1, interval: 100ms, timeout: 500ms}\n"
            )
        f.write(f'metrics: {{enabled: true, address: "{args.local}:{args.metrics_port}"}}\n')


def start_child(cmd, log_path, env=None):
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                            preexec_fn=die_with_parent)
    return proc, log


def stop_child(proc, log, timeout=15.0):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    return proc.returncode


def cmd_run(args):
    work = args.workdir
    url = f"http://{args.local}:{args.metrics_port}/metrics"
    result = {"services": args.services, "duration_s": args.duration, "interval_ms": args.interval_ms,
              "multiplier": args.multiplier, "failures": []}
    fail = result["failures"].append
    http_get(f"http://{args.server}/control/reset")

    bird = Bird(os.path.join(work, "bird"), bird_config(args), netns=args.ns_r,
                header="timeformat protocol iso long ms;\n")
    sniffer = sniff_log = None
    packets_path = os.path.join(work, "bfd-packets.txt")
    if args.sniff:
        sniffer, sniff_log = start_child(
            ["ip", "netns", "exec", args.ns_r, sys.executable, os.path.abspath(__file__), "sniff",
             "--iface", args.iface_r, "--out", packets_path],
            os.path.join(work, "sniff.log"),
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        time.sleep(0.3)
        if sniffer.poll() is not None:
            raise SystemExit(f"bfd bench: the sniffer exited; see {work}/sniff.log")
    config = os.path.join(work, "anycastd.yaml")
    anycastd_config(config, args)
    daemon, daemon_log = start_child([args.anycastd, "-c", config, "--log-level", "info", "run"],
                                     os.path.join(work, "anycastd.log"))
    spawned = time.monotonic()
    want_interval = args.interval_ms / 1000
    try:
        # Up: BFD Up at the configured rate on both sides, BGP Established,
        # every service's route at R.
        ready = None
        snap = None
        while time.monotonic() < spawned + args.startup_timeout:
            if daemon.poll() is not None:
                raise SystemExit(f"bfd bench: anycastd exited (status {daemon.returncode}); see {work}/anycastd.log")
            try:
                snap = bfd_snapshot(url, args.remote)
            except OSError:
                snap = None
            rows = bfd_sessions(bird.ctl)
            bgp = bgp_status(bird.ctl)
            if (snap and snap["bfd_state"] == 3 and snap["bfd_tx_interval_s"] is not None
                    and abs(snap["bfd_tx_interval_s"] - want_interval) < 1e-6
                    and snap["bgp_state"] == 6 and rows and rows[0]["state"] == "Up"
                    and abs(rows[0]["interval"] - want_interval) < 1e-6
                    and bgp["bgp_state"] == "Established" and bgp["imported"] >= args.services):
                ready = time.monotonic()
                break
            time.sleep(0.5)
        if ready is None:
            raise SystemExit(
                f"bfd bench: not ready within {args.startup_timeout:g} s: anycastd {snap}, "
                f"BIRD bfd {bfd_sessions(bird.ctl)}, BGP {bgp_status(bird.ctl).get('text')}")
        result["startup_s"] = ready - spawned
        print(f"   ready after {result['startup_s']:.1f} s: BFD Up at {args.interval_ms} ms x {args.multiplier}, "
              f"BGP Established, {args.services} routes at R", flush=True)

        # ---- the measured window
        start_snap = bfd_snapshot(url, args.remote)
        bird_log = Tail(bird.log)
        bird_log.lines()  # skip what was logged up to now
        start_rows = bfd_sessions(bird.ctl)
        start_bgp = bgp_status(bird.ctl)
        t0_wall_ns = time.time_ns()
        t0 = time.monotonic()
        cpu0 = proc_cpu_ticks(daemon.pid)
        threads0 = thread_ticks(daemon.pid)
        count0 = int(http_get(f"http://{args.server}/control/count"))
        machine0 = machine_ticks()
        bird_cpu0 = proc_cpu_ticks(bird.proc.pid)

        polls = not_up = 0
        since_seen = {start_rows[0]["since"]}
        bgp_since_seen = {start_bgp.get("since")}
        timeouts = set()
        peak_rss = 0
        log_lines = []
        end = t0 + args.duration
        next_poll = t0
        last_progress = t0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if daemon.poll() is not None:
                fail(f"anycastd exited during the run (status {daemon.returncode})")
                break
            rows = bfd_sessions(bird.ctl)
            polls += 1
            if not rows or rows[0]["state"] != "Up":
                not_up += 1
                print(f"   !! BIRD: BFD session not Up at +{now - t0:.1f} s: {rows}", flush=True)
            else:
                since_seen.add(rows[0]["since"])
                timeouts.add(rows[0]["timeout"])
            if polls % 5 == 0:
                bgp_since_seen.add(bgp_status(bird.ctl).get("since"))
            log_lines += bird_log.lines()
            peak_rss = max(peak_rss, memory_kib(daemon.pid)["VmRSS"])
            if now - last_progress >= 60:
                last_progress = now
                print(f"   +{now - t0:.0f} s: BIRD polls {polls}, not Up {not_up}", flush=True)
            next_poll += args.poll_s
            time.sleep(max(0.0, min(next_poll, end) - time.monotonic()))
        window = time.monotonic() - t0
        cpu1 = proc_cpu_ticks(daemon.pid) if daemon.poll() is None else cpu0
        threads1 = thread_ticks(daemon.pid) if daemon.poll() is None else threads0
        count1 = int(http_get(f"http://{args.server}/control/count"))
        machine1 = machine_ticks()
        bird_cpu1 = proc_cpu_ticks(bird.proc.pid)
        t1_wall_ns = time.time_ns()
        end_rows = bfd_sessions(bird.ctl)
        end_bgp = bgp_status(bird.ctl)
        log_lines += bird_log.lines()
        end_snap = bfd_snapshot(url, args.remote) if daemon.poll() is None else None
        memory = memory_kib(daemon.pid) if daemon.poll() is None else {"VmRSS": 0, "VmHWM": 0}
    finally:
        result["exit_code"] = stop_child(daemon, daemon_log)
        if sniffer is not None:
            stop_child(sniffer, sniff_log, 5)
        bird.stop()

    arrivals = parse_dump(http_get(f"http://{args.server}/control/dump", timeout=60))
    periods = sorted((b - a) / 1e9 for times in arrivals.values() for a, b in zip(times, times[1:]))

    result.update({
        "window_s": window,
        "anycastd_start": start_snap,
        "anycastd_end": end_snap,
        "bird_start": {"bfd": start_rows, "bgp_since": start_bgp.get("since"), "imported": start_bgp["imported"],
                       "withdraws_received": start_bgp["withdraws_received"]},
        "bird_end": {"bfd": end_rows, "bgp_state": end_bgp["bgp_state"], "bgp_since": end_bgp.get("since"),
                     "imported": end_bgp["imported"], "withdraws_received": end_bgp["withdraws_received"]},
        "bird_polls": polls,
        "bird_polls_not_up": not_up,
        "bird_bfd_since_seen": sorted(since_seen),
        "bird_bgp_since_seen": sorted(str(s) for s in bgp_since_seen),
        "bird_bfd_timeouts_seen": sorted(timeouts),
        "bird_bfd_changes": [line for line in log_lines if BIRD_BFD_CHANGE.search(line)],
        "bird_bgp_changes": [line for line in log_lines if BIRD_BGP_CHANGE.search(line)],
        "bird_suspicious": [line for line in log_lines if BIRD_DOWN_WORDS.search(line)][:50],
        "checks": count1 - count0,
        "checks_per_s": (count1 - count0) / window,
        "period_s": {"n": len(periods), "p50": percentile(periods, 50), "p99": percentile(periods, 99),
                     "max": periods[-1] if periods else None},
        "cpu_pct": 100.0 * (cpu1 - cpu0) / CLK_TCK / window,
        "cpu_threads_pct": {name: 100.0 * (threads1.get(name, 0) - t) / CLK_TCK / window
                            for name, t in threads0.items()},
        "bird_cpu_pct": 100.0 * (bird_cpu1 - bird_cpu0) / CLK_TCK / window,
        "machine_busy_cores": os.cpu_count() * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
        "load_avg_end": open("/proc/loadavg").read().split()[0],
        "rss_end_kib": memory["VmRSS"],
        "rss_peak_kib": max(peak_rss, memory["VmRSS"]),
        "hwm_kib": memory["VmHWM"],
        "anycastd_warnings": anycastd_warnings(os.path.join(work, "anycastd.log")),
    })
    if args.sniff:
        result["gaps"] = packet_gaps(packets_path, t0_wall_ns, t1_wall_ns, args)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


def anycastd_warnings(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            if " WARN " in line or " ERROR " in line or "bfd" in line.lower():
                out.append(line.rstrip("\n")[:400])
    return out[:100]


# ------------------------------------------------------------------ sniff


ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


def cmd_sniff(args):
    """One line per BFD Control packet on the interface, flushed at once:
    `ns dir src sport state P F mult my your desired_tx_us required_rx_us`,
    dir `in` (anycastd -> R) or `out` (R -> anycastd)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    sock.settimeout(0.5)
    with open(args.out, "w") as out:
        print("ready", flush=True)
        while not stop:
            try:
                data, ancdata, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            ts = None
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    ts = sec * 1_000_000_000 + nsec
            if ts is None:
                ts = time.time_ns()
            # Ethernet, IPv4, UDP to port 3784.
            if len(data) < 14 + 20 + 8 + 24 or data[12:14] != b"\x08\x00":
                continue
            ip = data[14:]
            ihl = (ip[0] & 0x0F) * 4
            if ip[9] != 17:
                continue
            udp = ip[ihl:]
            sport, dport = struct.unpack("!HH", udp[:4])
            if dport != BFD_PORT:
                continue
            bfd = udp[8:]
            if len(bfd) < 24:
                continue
            state = bfd[1] >> 6
            poll = (bfd[1] >> 5) & 1
            final = (bfd[1] >> 4) & 1
            mult = bfd[2]
            my, your, tx, rx = struct.unpack("!IIII", bfd[4:20])
            direction = "out" if addr[2] == PACKET_OUTGOING else "in"
            src = socket.inet_ntoa(ip[12:16])
            out.write(f"{ts} {direction} {src} {sport} {state} {poll} {final} {mult} {my} {your} {tx} {rx}\n")
            out.flush()


def packet_gaps(path, t0_ns, t1_ns, args):
    """Inter-packet gaps per direction inside the window [t0, t1], plus the
    gap from the last packet before t0 to the first inside it."""
    by_dir = {"in": [], "out": []}
    non_up = {"in": 0, "out": 0}
    polls = {"in": 0, "out": 0}
    try:
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) != 12:
                    continue
                ts, direction = int(fields[0]), fields[1]
                state, poll = int(fields[4]), int(fields[5])
                by_dir[direction].append(ts)
                if t0_ns <= ts <= t1_ns:
                    if state != 3:
                        non_up[direction] += 1
                    polls[direction] += poll
    except FileNotFoundError:
        return {"error": "no packet file"}
    out = {}
    detection_ms = args.interval_ms * args.multiplier
    for direction, times in by_dir.items():
        times.sort()
        inside = [i for i, ts in enumerate(times) if t0_ns <= ts <= t1_ns]
        if len(inside) < 2:
            out[direction] = {"packets": len(inside)}
            continue
        first = max(inside[0] - 1, 0)  # include the gap spanning t0
        gaps = [(b - a) / 1e6 for a, b in zip(times[first:inside[-1]], times[first + 1:inside[-1] + 1])]
        st = stats(gaps)
        out[direction] = {
            "packets": len(inside),
            "per_s": len(inside) / ((t1_ns - t0_ns) / 1e9),
            "gap_ms": st,
            "over_interval": sum(1 for g in gaps if g > args.interval_ms),
            "over_2_intervals": sum(1 for g in gaps if g > 2 * args.interval_ms),
            "over_detection": sum(1 for g in gaps if g >= detection_ms),
            "top5_ms": sorted(gaps)[-5:],
            "non_up_packets": non_up[direction],
            "poll_packets": polls[direction],
        }
    return out


# ----------------------------------------------------------------- report


def cmd_report(args):
    with open(args.result) as f:
        r = json.load(f)
    s0, s1 = r["anycastd_start"], r["anycastd_end"] or {}
    b0, b1 = r["bird_start"], r["bird_end"]
    n = r["services"]
    rows, failed = [], []

    def check(label, value, ok, target=""):
        rows.append((label, value, target, "" if ok is None else ("PASS" if ok else "FAIL")))
        if ok is False:
            failed.append(label)

    changes0 = sum(s0["bfd_changes"].values())
    changes1 = sum(s1.get("bfd_changes", {}).values()) if s1 else None
    changes = None if changes1 is None else changes1 - changes0
    gaps = r.get("gaps") or {}
    gi = gaps.get("in", {})
    go = gaps.get("out", {})
    detection_ms = r["interval_ms"] * r["multiplier"]

    rows.append((f"BFD {r['interval_ms']} ms x {r['multiplier']}, {n} services @ 1s (http_2xx, fresh connection)",
                 "", "", ""))
    check("measured window", f"{r['window_s']:.1f} s (after {r['startup_s']:.1f} s to Up)", None)
    check("checks done / s", f"{r['checks_per_s']:.1f} ({r['checks']:,} checks)", r["checks_per_s"] >= 0.98 * n,
          f">= {0.98 * n:g}")
    p = r["period_s"]
    if p.get("p99") is not None:
        check("check period p50 / p99 / max", f"{p['p50']:.4f} / {p['p99']:.4f} / {p['max']:.4f} s", None)
    threads = ", ".join(f"{k} {v:.2f} %" for k, v in sorted(r["cpu_threads_pct"].items(), key=lambda kv: -kv[1])
                        if v >= 0.01)
    check("anycastd CPU, % of one core", f"{r['cpu_pct']:.1f} % ({threads})", None)
    check("anycastd RSS end / peak sampled / HWM",
          f"{r['rss_end_kib'] / 1024:.1f} / {r['rss_peak_kib'] / 1024:.1f} / {r['hwm_kib'] / 1024:.1f} MiB", None)
    check("BIRD R CPU, % of one core", f"{r['bird_cpu_pct']:.2f} %", None)
    check("anycastd: BFD state changes in window",
          "n/a (anycastd gone)" if changes is None else f"{changes:g} (counter {changes0:g} -> {changes1:g})",
          changes == 0, "0")
    check("anycastd: BFD state start / end (3 = Up)", f"{s0['bfd_state']:g} / {s1.get('bfd_state', float('nan')):g}",
          s0["bfd_state"] == 3 and s1.get("bfd_state") == 3, "3 / 3")
    check("anycastd: tx interval / detection time",
          f"{(s1 or s0)['bfd_tx_interval_s'] * 1e3:g} / {(s1 or s0)['bfd_detection_time_s'] * 1e3:g} ms", None)
    check("anycastd: BGP flaps in window", f"{s1.get('bgp_flaps', float('nan')) - s0['bgp_flaps']:g}",
          s1.get("bgp_flaps") == s0["bgp_flaps"], "0")
    check("anycastd: BGP held by BFD in window", f"{s1.get('bgp_held_by_bfd', float('nan')) - s0['bgp_held_by_bfd']:g}",
          s1.get("bgp_held_by_bfd") == s0["bgp_held_by_bfd"], "0")
    check("anycastd: BFD packets dropped in window", f"{s1.get('bfd_dropped', float('nan')) - s0['bfd_dropped']:g}",
          None)
    check("anycastd: services up start / end", f"{s0['services_up']} / {s1.get('services_up')} of {n}",
          s0["services_up"] == n and s1.get("services_up") == n, f"{n} / {n}")
    check("BIRD: polls of `show bfd sessions`, not Up", f"{r['bird_polls']}, {r['bird_polls_not_up']}",
          r["bird_polls"] > 0 and r["bird_polls_not_up"] == 0, "0 not Up")
    check("BIRD: BFD session 'Since' values seen", " | ".join(r["bird_bfd_since_seen"]),
          len(r["bird_bfd_since_seen"]) == 1 and b1["bfd"] and b1["bfd"][0]["since"] == r["bird_bfd_since_seen"][0]
          and b1["bfd"][0]["state"] == "Up", "one, unchanged")
    check("BIRD: BFD session changes logged in window", str(len(r["bird_bfd_changes"])),
          not r["bird_bfd_changes"], "0")
    check("BIRD: BGP state changes logged in window", str(len(r["bird_bgp_changes"])),
          not r["bird_bgp_changes"] and b1["bgp_state"] == "Established"
          and b1["bgp_since"] == b0["bgp_since"], "0, Established")
    check("BIRD: routes imported start / end", f"{b0['imported']} / {b1['imported']}",
          b0["imported"] == n and b1["imported"] == n, f"{n} / {n}")
    wd = (None if b1["withdraws_received"] is None or b0["withdraws_received"] is None
          else b1["withdraws_received"] - b0["withdraws_received"])
    check("BIRD: withdrawals received in window", "n/a" if wd is None else str(wd), wd == 0, "0")
    if gaps:
        for label, g in (("anycastd -> BIRD", gi), ("BIRD -> anycastd", go)):
            st = g.get("gap_ms")
            if not st:
                check(f"packet gaps {label}", f"{g}", False if label.startswith("anycastd") else None)
                continue
            check(f"packet gaps {label}, p50 / p99 / max",
                  f"{st['p50']:.1f} / {st['p99']:.1f} / {st['max']:.1f} ms ({g['packets']} pkts, {g['per_s']:.2f}/s)",
                  st["max"] < detection_ms if label.startswith("anycastd") else None, f"max < {detection_ms} ms")
            check(f"  gaps > {r['interval_ms']} ms / > {2 * r['interval_ms']} ms / >= detection",
                  f"{g['over_interval']} / {g['over_2_intervals']} / {g['over_detection']}", None)
            check("  packets not Up / with Poll", f"{g['non_up_packets']} / {g['poll_packets']}",
                  g["non_up_packets"] == 0 if label.startswith("anycastd") else None)
    check("anycastd exit code (SIGTERM)", str(r["exit_code"]), r["exit_code"] == 0, "0")
    check("machine: busy cores in window / load avg at end",
          f"{r['machine_busy_cores']:.2f} of {os.cpu_count()} / {r['load_avg_end']}", None)

    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    out = [f"anycastd BFD bench  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  "
           f"({os.cpu_count()} CPUs, {socket.gethostname()}, anycastd {args.revision}, {args.bird_version})"]
    out.append("  ".join(h.ljust(w) for h, w in zip(("MEASURE", "VALUE", "TARGET", ""), widths)).rstrip())
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    for title, lines in (("BIRD BFD changes", r["bird_bfd_changes"]), ("BIRD BGP changes", r["bird_bgp_changes"])):
        if lines:
            out.append(f"{title} in the window:")
            out += [f"  {line}" for line in lines]
    out.append("RESULT: " + ("PASS: no false BFD down" if not failed else "FAIL: " + "; ".join(failed)))
    print("\n".join(out))
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run")
    p.add_argument("--anycastd", required=True)
    p.add_argument("--server", required=True, help="host:port of the bench HTTP server (in A)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--services", type=int, default=1000)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--interval-ms", type=int, default=100)
    p.add_argument("--multiplier", type=int, default=3)
    p.add_argument("--local", required=True, help="anycastd's address (A)")
    p.add_argument("--remote", required=True, help="BIRD's address (R)")
    p.add_argument("--ns-r", required=True)
    p.add_argument("--iface-r", required=True)
    p.add_argument("--metrics-port", type=int, default=9250)
    p.add_argument("--poll-s", type=float, default=1.0)
    p.add_argument("--startup-timeout", type=float, default=60)
    p.add_argument("--sniff", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sniff")
    p.add_argument("--iface", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sniff)

    p = sub.add_parser("report")
    p.add_argument("--result", required=True)
    p.add_argument("--revision", default="unknown")
    p.add_argument("--bird-version", default="BIRD")
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    if args.command != "sniff":
        install_signal_exit()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
