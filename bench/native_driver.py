#!/usr/bin/env python3
"""Measures anycastd's native BGP speaker against BIRD 2; called by bench/native.sh.

Every measurement has a receiver R, a BIRD with `import all` on one eBGP
multihop session, and two senders side by side: anycastd (`backend: native`)
and, as the baseline, a second BIRD S exporting the same routes from a
`protocol static`. R always runs with `timeformat log iso long us` and
`debug { states }` (plus `routes` for the flap part) under TZ=UTC, so its log
says to the microsecond when the session came up and when a prefix arrived or
left. anycastd logs UTC RFC 3339 with microseconds; both clocks are
CLOCK_REALTIME.

Subcommands:
  announce  time from R's "State changed to up" until R holds all N routes
  flap      verdict -> route gone at R (and back), anycastd vs BIRD S
  report    render the JSON results as a table

Only the standard library is used; everything talks to 127.0.0.0/8. Every
child (BIRD, anycastd) is started with PR_SET_PDEATHSIG and stopped in a
`finally`, so none outlives the driver.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

from driver import (
    Tail,
    die_with_parent,
    free_port,
    http_get,
    install_signal_exit,
    prefixes,
    stats,
    to_us,
    wall_us,
)

LOCAL_ASN = 65001  # the sender: anycastd or S
REMOTE_ASN = 65002  # R
FLAP_PREFIX = "10.255.0.1/32"


# BIRD: `2026-01-02 03:04:05.123456 <TRACE> r.ipv4 > removed [sole] 10.0.0.1/32 ...`
BIRD_TS = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6})"
BIRD_ROUTE = re.compile(BIRD_TS + r" <TRACE> \S+ [<>] (added|removed|updated)\S*(?: \[\w+\])? (\S+/\d+) ")
BIRD_UP = re.compile(BIRD_TS + r" <TRACE> (\S+): State changed to up$")
BIRD_TIME = "%Y-%m-%d %H:%M:%S.%f"
# anycastd: `2026-01-02T03:04:05.123456Z  WARN service is down service=flap ...`
ANYCASTD_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+(\w+)\s+(.*)$")


def anycastd_us(ts):
    # tracing prints 6 fractional digits; be lenient about more or fewer.
    whole, frac = ts.split(".")
    return to_us(f"{whole}.{(frac + '000000')[:6]}", "%Y-%m-%dT%H:%M:%S.%f")


class Ctl:
    """A persistent connection to BIRD's control socket (what birdc does,
    without a process per command, so it can be polled every few ms)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.file.readline()  # 0001 BIRD x.y.z ready.

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\n")
        out = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("BIRD closed the control socket")
            line = line.decode(errors="replace")
            out.append(line)
            # Replies end with a line "NNNN " whose code is 0xxx (ok) or 8xxx/9xxx (error).
            if len(line) >= 5 and line[:4].isdigit() and line[4] == " " and line[0] in "089":
                return "".join(out)

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


class Bird:
    """One BIRD in the foreground (-f) as our child, in its own directory;
    in network namespace `netns` if given (its socket stays reachable)."""

    def __init__(self, workdir, config, netns=None, header=""):
        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        self.conf = os.path.join(workdir, "bird.conf")
        self.socket = os.path.join(workdir, "bird.ctl")
        self.log = os.path.join(workdir, "bird.log")
        with open(self.conf, "w") as f:
            f.write(f'log "{self.log}" all;\ntimeformat log iso long us;\n' + header + config)
        for path in (self.socket, self.log):
            if os.path.exists(path):
                os.unlink(path)
        self.stderr = open(os.path.join(workdir, "bird.stderr"), "wb")
        env = dict(os.environ, TZ="UTC")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen(
            prefix + ["bird", "-f", "-c", self.conf, "-s", self.socket, "-P", os.path.join(workdir, "bird.pid")],
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=self.stderr,
            env=env,
            preexec_fn=die_with_parent,
        )
        self.ctl = None
        deadline = time.monotonic() + 10
        while self.ctl is None:
            if self.proc.poll() is not None:
                raise SystemExit(f"native bench: BIRD in {workdir} exited; see {self.stderr.name}")
            try:
                ctl = Ctl(self.socket)
                if "Daemon is up" in ctl.cmd("show status"):
                    self.ctl = ctl
                else:
                    ctl.close()
            except OSError:
                pass
            if self.ctl is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"native bench: BIRD in {workdir} did not come up within 10 s")
                time.sleep(0.02)

    def cmd(self, text):
        return self.ctl.cmd(text)

    def stop(self):
        if self.ctl:
            self.ctl.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def r_config(k, peer, routes_debug):
    """R: the receiver on 127.0.K.2, one session to the sender on 127.0.K.1."""
    debug = "states, routes" if routes_debug else "states"
    return f"""router id 127.0.{k}.2;
protocol device {{}}
protocol bgp {peer} {{
  local 127.0.{k}.2 as {REMOTE_ASN};
  neighbor 127.0.{k}.1 as {LOCAL_ASN};
  multihop;
  strict bind yes;
  debug {{ {debug} }};
  ipv4 {{ import all; export none; }};
}}
"""


def s_config(k, static_body, connect_delay, routes_debug=False):
    """S: the BIRD sender on 127.0.K.1, exporting protocol static `vips`."""
    debug = "states, routes" if routes_debug else "states"
    return f"""router id 127.0.{k}.1;
protocol device {{}}
protocol static vips {{
  ipv4;
  debug {{ {debug} }};
{static_body}}}
protocol bgp to_r {{
  local 127.0.{k}.1 as {LOCAL_ASN};
  neighbor 127.0.{k}.2 as {REMOTE_ASN};
  multihop;
  strict bind yes;
  connect delay time {connect_delay};
  debug {{ states }};
  ipv4 {{ import none; export all; }};
}}
"""


class Anycastd:
    def __init__(self, binary, config, stderr_path):
        self.stderr_path = stderr_path
        self.stderr = open(stderr_path, "wb")
        self.started_us = wall_us()
        self.proc = subprocess.Popen(
            [binary, "-c", config, "--log-level", "info", "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            preexec_fn=die_with_parent,
        )

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode

    def lines(self):
        """(µs, level, message) of every log line so far."""
        out = []
        with open(self.stderr_path, errors="replace") as f:
            for line in f:
                m = ANYCASTD_LINE.match(line.rstrip("\n"))
                if m:
                    out.append((anycastd_us(m.group(1)), m.group(2), m.group(3)))
        return out


def anycastd_config(path, k, routes, services_yaml, metrics_port):
    with open(path, "w") as f:
        f.write(
            "announcer:\n"
            "  backend: native\n"
            f"  router_id: 127.0.{k}.1\n"
            f"  local_address: 127.0.{k}.1\n"
            f"  local_asn: {LOCAL_ASN}\n"
            "  peers:\n"
            f"    - {{name: r, remote_address: 127.0.{k}.2, remote_asn: {REMOTE_ASN}, enable_multihop: true}}\n"
        )
        f.write("  routes:\n" if routes else "  routes: []\n")
        f.write("".join(f"    - {r}\n" for r in routes))
        f.write("services:\n" + services_yaml)
        f.write(f'metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}\n')


def scrape(metrics_port, name, label_filter):
    """{quantile or _sum/_count or label text: value} for one metric family."""
    text = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    result = {}
    for line in text.splitlines():
        m = re.match(rf"{name}(_sum|_count)?(?:\{{(.*)\}})? (\S+)$", line)
        if not m or label_filter not in (m.group(2) or ""):
            continue
        suffix, labels, value = m.groups()
        q = re.search(r'quantile="([^"]+)"', labels or "")
        if suffix:
            result[suffix[1:]] = float(value)
        elif q:
            result[q.group(1)] = float(value)
        else:
            result[labels or ""] = float(value)
    return result


def bird_up_us(log_path, protocol):
    for line in Tail(log_path).lines():
        m = BIRD_UP.match(line)
        if m and m.group(2) == protocol:
            return to_us(m.group(1), BIRD_TIME)
    return None


# ---------------------------------------------------------------- announce


def watch_import(r, protocol, n, timeout, poll_s, alive=lambda: True, wake=None):
    """Polls R until `protocol` has imported n routes. Returns wall-clock µs
    of the first reply showing Established, showing > 0 routes, showing n.
    `wake`, when given, is another BIRD's control connection that gets a
    cheap command on every poll, so that BIRD never sits in its idle wait."""
    seen = {"established": None, "first": None, "all": None}
    imported = 0
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        if wake is not None:
            wake.cmd("show status")
        out = r.cmd(f"show protocols all {protocol}")
        now = wall_us()
        polls += 1
        if seen["established"] is None and "BGP state:          Established" in out:
            seen["established"] = now
        m = re.search(r"Routes:\s+(\d+) imported", out)
        imported = int(m.group(1)) if m else 0
        if imported > 0 and seen["first"] is None:
            seen["first"] = now
        if imported >= n:
            seen["all"] = now
            break
        if time.monotonic() > deadline or not alive():
            break
        time.sleep(poll_s)
    seen["imported"] = imported
    seen["polls"] = polls
    return seen


def one_announce(args, sender, n, rep, k):
    work = os.path.join(args.workdir, f"announce-{sender}-{n}-{rep}")
    os.makedirs(work, exist_ok=True)
    routes = prefixes(n)
    timeout = args.timeout + n / 2000  # generous; a miss is reported, not waited for forever
    protocol = "anycastd" if sender == "anycastd" else "bird_s"
    r = Bird(os.path.join(work, "r"), r_config(k, protocol, routes_debug=False))
    daemon = s = None
    result = {"sender": sender, "n": n, "rep": rep}
    try:
        if sender == "anycastd":
            metrics_port = free_port()
            config = os.path.join(work, "anycastd.yaml")
            anycastd_config(
                config,
                k,
                routes,
                "  - name: always\n    check_interval: 1s\n    checks:\n"
                "      - kind: assigned_address\n        spec: {ipv4: 127.0.0.1}\n",
                metrics_port,
            )
            daemon = Anycastd(args.anycastd, config, os.path.join(work, "anycastd.log"))
            result["spawn_us"] = daemon.started_us
            seen = watch_import(r, protocol, n, timeout, args.poll_ms / 1000, daemon.alive)
            try:
                result["updates_sent"] = scrape(metrics_port, "anycastd_bgp_messages_total", 'type="update"')
            except OSError:
                pass
        else:
            body_path = os.path.join(work, "static.conf")
            with open(body_path, "w") as f:
                f.write("".join(f"  route {p} blackhole;\n" for p in routes))
            result["spawn_us"] = wall_us()
            s = Bird(os.path.join(work, "s"), s_config(k, f'include "{body_path}";\n', args.connect_delay))
            wake = s if sender == "bird" else None  # "bird-idle": S is left alone
            seen = watch_import(r, protocol, n, timeout, args.poll_ms / 1000, wake=wake)
        result.update(seen)
        result["up_us"] = bird_up_us(r.log, protocol)
        if seen["all"] is None:
            result["error"] = f"R imported {seen['imported']} of {n} within {timeout:g} s"
        else:
            # Cross-check with the table itself (not timed).
            count = r.cmd("show route count")
            m = re.search(r"(\d+) of (\d+) routes", count)
            result["route_count"] = int(m.group(1)) if m else None
        if result["up_us"] is not None and seen["all"] is not None:
            result["up_to_all_s"] = (seen["all"] - result["up_us"]) / 1e6
        if result["up_us"] is not None and seen["first"] is not None:
            result["up_to_first_s"] = (seen["first"] - result["up_us"]) / 1e6
        if seen["first"] is not None and seen["all"] is not None:
            result["first_to_all_s"] = (seen["all"] - seen["first"]) / 1e6
        if seen["all"] is not None:
            result["spawn_to_all_s"] = (seen["all"] - result["spawn_us"]) / 1e6
        if daemon is not None:
            for us, level, message in daemon.lines():
                if "BGP session established" in message and "established_log_us" not in result:
                    result["established_log_us"] = us
                if message.startswith("service is up") and "verdict_up_us" not in result:
                    result["verdict_up_us"] = us
                if level in ("WARN", "ERROR"):
                    result.setdefault("anycastd_warnings", []).append(message[:300])
            if "verdict_up_us" in result and seen["all"] is not None:
                result["verdict_to_all_s"] = (seen["all"] - result["verdict_up_us"]) / 1e6
    finally:
        if daemon is not None:
            result["exit_code"] = daemon.stop()
        if s is not None:
            s.stop()
        r.stop()
    if "error" in result:
        # What R said about the session, for the report.
        with open(r.log, errors="replace") as f:
            result["r_log_tail"] = f.read().splitlines()[-15:]
    line = f"announce {sender:9} N={n:<6} rep {rep}: "
    if "up_to_all_s" in result:
        line += (
            f"Established -> all {result['up_to_all_s'] * 1e3:9.1f} ms "
            f"(-> first {result.get('up_to_first_s', float('nan')) * 1e3:.1f} ms; "
            f"spawn -> all {result['spawn_to_all_s']:.2f} s)"
        )
    else:
        line += result.get("error", "no Established line in R's log")
    print(line, flush=True)
    return result


def cmd_announce(args):
    results = []
    for n in args.sizes:
        for rep in range(1, args.reps + 1):
            for index, sender in enumerate(args.senders):
                results.append(one_announce(args, sender, n, rep, args.first_net + index))
    with open(args.out, "w") as f:
        json.dump({"sizes": args.sizes, "reps": args.reps, "poll_ms": args.poll_ms,
                   "senders": args.senders, "runs": results}, f, indent=1)


# -------------------------------------------------------------------- flap


class RouteLog:
    """R's route trace for one prefix: (µs, op) in order."""

    def __init__(self, path, prefix):
        self.tail = Tail(path)
        self.prefix = prefix
        self.events = []

    def poll(self):
        for line in self.tail.lines():
            m = BIRD_ROUTE.match(line)
            if m and m.group(3) == self.prefix:
                self.events.append((to_us(m.group(1), BIRD_TIME), m.group(2)))

    def wait_count(self, op, count, timeout):
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            got = [us for us, o in self.events if o == op]
            if len(got) >= count:
                return got[count - 1]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.001)


def flap_anycastd(args, k):
    work = os.path.join(args.workdir, "flap-anycastd")
    os.makedirs(work, exist_ok=True)
    r = Bird(os.path.join(work, "r"), r_config(k, "anycastd", routes_debug=True))
    metrics_port = free_port()
    config = os.path.join(work, "anycastd.yaml")
    anycastd_config(
        config,
        k,
        [],
        "  - name: flap\n    check_interval: 100ms\n"
        f"    routes: [{FLAP_PREFIX}]\n    checks:\n      - kind: http_2xx\n"
        f'        spec: {{url: "http://{args.server}/svc/1", method: GET, tries: 1, interval: 100ms, timeout: 500ms}}\n',
        metrics_port,
    )
    http_get(f"http://{args.server}/control/ok/1")
    daemon = Anycastd(args.anycastd, config, os.path.join(work, "anycastd.log"))
    log = RouteLog(r.log, FLAP_PREFIX)
    down, up, failures = [], [], []
    summary = {}
    try:
        if log.wait_count("added", 1, 15) is None:
            with open(r.log, errors="replace") as f:
                tail = f.read().splitlines()[-15:]
            raise SystemExit("native bench: flap: R never got the route from anycastd; R's log:\n  " + "\n  ".join(tail))
        for step in range(2 * args.flaps):
            failing = step % 2 == 0
            time.sleep(random.uniform(0, 0.1))  # a random phase of the 100 ms check tick
            op = "removed" if failing else "added"
            want = sum(1 for _, o in log.events if o == op) + 1
            http_get(f"http://{args.server}/control/{'fail' if failing else 'ok'}/1")
            if log.wait_count(op, want, args.flap_timeout) is None:
                failures.append(f"flap {step // 2}: R logged no '{op}' within {args.flap_timeout:g} s")
                break
        time.sleep(0.05)
        summary = scrape(metrics_port, "anycastd_route_change_latency_seconds", 'backend="native"')
    finally:
        code = daemon.stop()
        r.stop()
    log.poll()
    verdicts = [(us, "down" if m.startswith("service is down") else "up")
                for us, _, m in daemon.lines()
                if m.startswith("service is down") or m.startswith("service is up")]
    # Skip the initial "service is up" (and R's initial "added"): pair the
    # i-th down verdict with R's i-th removal, the i-th later up with the
    # i-th later addition.
    downs = [us for us, kind in verdicts if kind == "down"]
    ups = [us for us, kind in verdicts if kind == "up"][1:]
    removed = [us for us, op in log.events if op == "removed"]
    added = [us for us, op in log.events if op == "added"][1:]
    # anycastd withdraws at SIGTERM too: only removals that answer a verdict count.
    for verdict_us, seen_us in zip(downs, removed):
        down.append((seen_us - verdict_us) / 1e3)
    for verdict_us, seen_us in zip(ups, added):
        up.append((seen_us - verdict_us) / 1e3)
    return {
        "flaps": args.flaps,
        "down_ms": stats(down),
        "up_ms": stats(up),
        "down_ms_all": down,
        "metric": summary,
        "failures": failures,
        "exit_code": code,
    }


def flap_bird(args, k):
    work = os.path.join(args.workdir, "flap-bird")
    os.makedirs(work, exist_ok=True)
    r = Bird(os.path.join(work, "r"), r_config(k, "bird_s", routes_debug=True))
    s = Bird(os.path.join(work, "s"), s_config(k, f"  route {FLAP_PREFIX} blackhole;\n", args.connect_delay, routes_debug=True))
    log = RouteLog(r.log, FLAP_PREFIX)
    s_log = Tail(s.log)
    sent = {"removed": [], "added": []}
    down, up, down_s, failures = [], [], [], []
    try:
        if log.wait_count("added", 1, 15) is None:
            raise SystemExit("native bench: flap: R never got the route from BIRD S")
        for step in range(2 * args.flaps):
            failing = step % 2 == 0
            time.sleep(random.uniform(0, 0.1))  # same pacing as the anycastd side
            op = "removed" if failing else "added"
            want = sum(1 for _, o in log.events if o == op) + 1
            t0 = wall_us()
            s.cmd("disable vips" if failing else "enable vips")
            sent[op].append(t0)
            if log.wait_count(op, want, args.flap_timeout) is None:
                failures.append(f"flap {step // 2}: R logged no '{op}' within {args.flap_timeout:g} s")
                break
    finally:
        s.stop()
        r.stop()
    log.poll()
    removed = [us for us, op in log.events if op == "removed"]
    added = [us for us, op in log.events if op == "added"][1:]
    for t0, seen_us in zip(sent["removed"], removed):
        down.append((seen_us - t0) / 1e3)
    for t0, seen_us in zip(sent["added"], added):
        up.append((seen_us - t0) / 1e3)
    # S's own log: "Disabling protocol vips" (command taken) -> R's removal,
    # the part comparable to anycastd's verdict -> R.
    taken = []
    for line in s_log.lines():
        m = re.match(BIRD_TS + r" <INFO> Disabling protocol vips", line)
        if m:
            taken.append(to_us(m.group(1), BIRD_TIME))
    for taken_us, seen_us in zip(taken, removed):
        down_s.append((seen_us - taken_us) / 1e3)
    return {
        "flaps": args.flaps,
        "down_ms": stats(down),
        "up_ms": stats(up),
        "down_from_s_log_ms": stats(down_s),
        "failures": failures,
    }


def cmd_flap(args):
    result = {"anycastd": flap_anycastd(args, args.first_net)}
    a = result["anycastd"]
    print(
        f"flap anycastd: {args.flaps} withdrawals, verdict -> gone at R p50 "
        f"{a['down_ms']['p50']:.3f} ms, p99 {a['down_ms']['p99']:.3f} ms, max {a['down_ms']['max']:.3f} ms"
        if a["down_ms"] else f"flap anycastd: no samples {a['failures']}",
        flush=True,
    )
    result["bird"] = flap_bird(args, args.first_net + 1)
    b = result["bird"]
    print(
        f"flap bird S:   {args.flaps} withdrawals, disable cmd -> gone at R p50 "
        f"{b['down_ms']['p50']:.3f} ms, p99 {b['down_ms']['p99']:.3f} ms, max {b['down_ms']['max']:.3f} ms"
        if b["down_ms"] else f"flap bird S: no samples {b['failures']}",
        flush=True,
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


# ------------------------------------------------------------------ report


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_s(value):
    if value is None:
        return "n/a"
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.3f} s"


def fmt_ms(d, q):
    return f"{d[q]:.3f} ms" if d else "n/a"


SENDER_TITLE = {"anycastd": "anycastd", "bird": "BIRD S", "bird-idle": "BIRD S idle"}


def table(rows):
    """rows: tuples of cells, or a str: a section heading; columns are
    aligned within each section."""
    out, group = [], []

    def flush():
        if group:
            widths = [max(len(r[i]) if i < len(r) else 0 for r in group) for i in range(max(map(len, group)))]
            out.extend("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in group)
            group.clear()

    for row in rows:
        if isinstance(row, str):
            flush()
            out.append(row)
        else:
            group.append(row)
    flush()
    return out


def cmd_report(args):
    with open(args.announce) as f:
        ann = json.load(f)
    with open(args.flap) as f:
        flap = json.load(f)
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    senders = ann["senders"]
    base = "bird" if "bird" in senders else ("bird-idle" if "bird-idle" in senders else None)

    rows = [f"1. Announce N prefixes: R's log 'State changed to up' -> R's 'Routes: N imported' "
            f"(median of {ann['reps']}; R polled every {ann['poll_ms']:g} ms)"]
    rows.append(("METRIC", *[SENDER_TITLE[x] for x in senders], "ANYCASTD/S", "TARGET"))
    for n in ann["sizes"]:
        per = {}
        for sender in senders:
            runs = [r for r in ann["runs"] if r["n"] == n and r["sender"] == sender]
            per[sender] = runs
        med = lambda sender, key: median([r.get(key) for r in per[sender]])  # noqa: E731
        a_all = med("anycastd", "up_to_all_s") if "anycastd" in senders else None
        b_all = med(base, "up_to_all_s") if base else None
        ratio = a_all / b_all if a_all and b_all else None
        target = mark = ""
        if n >= 100000 and ratio is not None:
            target = "<= 2x"
            mark = verdict(ratio <= 2 and all(r.get("imported") == n for r in per["anycastd"]))
        rows.append((f"N={n:,}: Established -> all N at R", *[fmt_s(med(x, "up_to_all_s")) for x in senders],
                     f"{ratio:.2f}x" if ratio else "n/a", f"{target} {mark}".strip()))
        rows.append(("  each run", *[" ".join(fmt_s(r.get("up_to_all_s")) for r in per[x]) for x in senders], "", ""))
        rows.append(("  Established -> first route", *[fmt_s(med(x, "up_to_first_s")) for x in senders], "", ""))
        rows.append(("  first route -> all", *[fmt_s(med(x, "first_to_all_s")) for x in senders], "", ""))
        if "anycastd" in senders:
            rows.append(("  anycastd 'service is up' -> all",
                         *[fmt_s(med(x, "verdict_to_all_s")) if x == "anycastd" else "" for x in senders], "", ""))
            updates = median([next((v for key, v in r.get("updates_sent", {}).items() if 'direction="sent"' in key), None)
                              for r in per["anycastd"]])
            if updates is not None:
                rows.append(("  UPDATE messages anycastd sent",
                             *[f"{updates:.0f}" if x == "anycastd" else "" for x in senders], "", ""))
        rows.append(("  process start -> all (context)", *[fmt_s(med(x, "spawn_to_all_s")) for x in senders], "", ""))
        for sender in senders:
            for r in per[sender]:
                if "error" in r:
                    rows.append((f"  ERROR {sender} rep {r['rep']}", r["error"]))

    a, b = flap["anycastd"], flap["bird"]
    rows.append(f"2. Withdraw: {a['flaps']} flaps; event -> R's log 'removed' "
                "(anycastd: its 'service is down' log line; S: `disable` written to S's control socket)")
    rows.append(("METRIC", "anycastd", "BIRD S", "TARGET"))
    for q in ("p50", "p99", "max"):
        target = mark = ""
        if q == "p50":
            target = "<= 1 ms"
            mark = verdict(bool(a["down_ms"]) and a["down_ms"]["p50"] <= 1.0)
        rows.append((f"verdict -> gone at R, {q}", fmt_ms(a["down_ms"], q), fmt_ms(b["down_ms"], q),
                     f"{target} {mark}".strip()))
    rows.append(("  S's 'Disabling protocol' log -> gone at R, p50", "", fmt_ms(b.get("down_from_s_log_ms"), "p50"), ""))
    for q in ("p50", "p99", "max"):
        rows.append((f"verdict -> back at R ('up' / `enable`), {q}", fmt_ms(a["up_ms"], q), fmt_ms(b["up_ms"], q), ""))
    m = a.get("metric") or {}
    for key, label in (("0.5", "p50"), ("0.99", "p99"), ("1", "max")):
        if key in m:
            rows.append((f"anycastd_route_change_latency_seconds {label}", f"{m[key] * 1e3:.3f} ms", "", ""))
    if m.get("count"):
        rows.append(("  mean (_sum/_count), samples", f"{m['sum'] / m['count'] * 1e3:.3f} ms, {m['count']:.0f}", "", ""))
    for side in ("anycastd", "bird"):
        for fail in flap[side].get("failures", []):
            rows.append((f"ERROR {side}", fail, "", ""))
    if "exit_code" in a:
        rows.append(("anycastd exit code (SIGTERM)", str(a["exit_code"]), "", f"0 {verdict(a['exit_code'] == 0)}"))

    out = [f"anycastd native-backend benchmark  {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  "
           f"({os.cpu_count()} CPUs, {args.host}, anycastd {args.revision}, {args.bird_version})"]
    out += table(rows)
    if args.load:
        out.append(f"load average (1 min) before / after: {args.load}")
    print("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--anycastd", required=True)
    common.add_argument("--workdir", required=True)
    common.add_argument("--out", required=True)
    common.add_argument("--first-net", type=int, required=True, help="K of the first 127.0.K.0 pair")
    common.add_argument("--connect-delay", type=int, default=1, help="S's `connect delay time`")

    p = sub.add_parser("announce", parents=[common])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 1000, 100000])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--poll-ms", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--senders", nargs="+", default=["anycastd", "bird", "bird-idle"],
                   choices=["anycastd", "bird", "bird-idle"])
    p.set_defaults(func=cmd_announce)

    p = sub.add_parser("flap", parents=[common])
    p.add_argument("--server", required=True)
    p.add_argument("--flaps", type=int, default=50)
    p.add_argument("--flap-timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_flap)

    p = sub.add_parser("report")
    p.add_argument("--announce", required=True)
    p.add_argument("--flap", required=True)
    p.add_argument("--host", default=socket.gethostname())
    p.add_argument("--revision", default="unknown")
    p.add_argument("--bird-version", default="BIRD")
    p.add_argument("--load", default="")
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    install_signal_exit()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
