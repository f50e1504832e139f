#!/usr/bin/env python3
"""Measures anycastd's bird backend against real BIRD 2; called by bench/bird.sh.

For each format and size it starts two BIRDs on 127.0.K.1 ("A") and
127.0.K.2 ("B"). anycastd drives A through its include file and A's control
socket; A exports over BGP to B. B runs with `debug { routes }` and
`timeformat log iso long us`, so its log says when each prefix arrived or
left; anycastd runs with `--log-level info`, whose `service is down`/`up`
lines carry the verdict's wall-clock time. Both clocks are the same
CLOCK_REALTIME (BIRD runs with TZ=UTC, anycastd logs UTC).

Subcommands:
  run     every measurement, results as JSON
  report  render that JSON as the table

Only the standard library is used; everything talks to 127.0.0.0/8. Every
child (BIRD, anycastd) is started with PR_SET_PDEATHSIG and stopped in a
`finally`, so none outlives the driver.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from driver import (
    Tail,
    die_with_parent,
    free_port,
    http_get,
    install_signal_exit,
    machine_cpu_ticks,
    prefixes,
    stats,
    to_us,
    wall_us,
)

STATE_WAIT = 60.0  # bound on any wait for routes to appear or leave at B


# `2026-01-02 03:04:05.123456 <TRACE> a.ipv4 > removed [sole] 10.0.0.1/32 ...`
BIRD_TRACE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) <TRACE> \S+ [<>] (\w+)[^/]*? (\d+\.\d+\.\d+\.\d+/\d+) "
)


class PeerLog:
    """B's route trace: which prefixes B holds, and when each changed.

    BIRD stamps a log line with the time its event loop last read the clock
    (once per loop iteration), so routes processed together share one
    timestamp: the start of that iteration.

    Waiting is cheap on purpose: on 2 cores the driver competes with both
    BIRDs, so while routes arrive it only reads the new bytes and counts
    the op it waits for (C speed); lines are parsed once that count is
    reached, or every 0.2 s."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.pending = []
        self.partial = b""
        self.present = set()
        self.last = {}  # prefix -> (us, op) of its latest trace line
        self.ops = {}  # op -> count, all lines so far
        self.lines = 0
        self.last_line_at = time.monotonic()
        self._us = {}  # timestamp text -> us; lines come in same-stamp batches

    def read(self):
        """Appends new bytes to the unparsed backlog; returns them."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return b""
        if data:
            self.pos += len(data)
            self.pending.append(data)
            self.last_line_at = time.monotonic()
        return data

    def parse(self):
        self.read()
        data = self.partial + b"".join(self.pending)
        self.pending = []
        *complete, self.partial = data.split(b"\n")
        for raw in complete:
            self.lines += 1
            m = BIRD_TRACE.match(raw.decode(errors="replace"))
            if not m:
                continue
            ts, op, prefix = m.groups()
            us = self._us.get(ts)
            if us is None:
                us = self._us[ts] = to_us(ts, "%Y-%m-%d %H:%M:%S.%f")
            self.ops[op] = self.ops.get(op, 0) + 1
            self.last[prefix] = (us, op)
            if op == "removed":
                self.present.discard(prefix)
            elif op in ("added", "updated"):
                self.present.add(prefix)
        return len(complete)

    def _wait(self, done, op, count, timeout, what):
        token = f" {op} ".encode()
        seen = 0
        deadline = time.monotonic() + timeout
        next_parse = time.monotonic() + 0.2
        while True:
            seen += self.read().count(token)
            now = time.monotonic()
            if seen >= count or now >= next_parse:
                self.parse()
                next_parse = now + 0.2
                if done():
                    return
            if now > deadline:
                self.parse()
                if done():
                    return
                raise SystemExit(f"bird bench: {what}: not reached within {timeout:g} s "
                                 f"(B holds {len(self.present)} prefixes)")
            time.sleep(0.002)

    def wait_gone(self, prefixes_, timeout, what):
        """Until B holds none of `prefixes_` (a set)."""
        self.parse()
        self._wait(lambda: not (prefixes_ & self.present), "removed",
                   len(prefixes_ & self.present), timeout, what)

    def wait_present(self, prefixes_, timeout, what):
        """Until B holds all of `prefixes_` (a set)."""
        self.parse()
        self._wait(lambda: prefixes_ <= self.present, "added",
                   len(prefixes_ - self.present), timeout, what)

    def wait_quiet(self, quiet, timeout):
        """Until B logged nothing for `quiet` seconds (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        settled = False
        while time.monotonic() < deadline:
            self.read()
            if time.monotonic() - self.last_line_at >= quiet:
                settled = True
                break
            time.sleep(0.01)
        self.parse()
        return settled

    def latest(self, prefixes_, op):
        """Latest time any of `prefixes_` was last seen with `op`."""
        times = [self.last[p][0] for p in prefixes_ if p in self.last and self.last[p][1] == op]
        return max(times) if times else None


# `2026-01-02T03:04:05.123456Z  WARN service is down service=web from=up ...`
ANYCASTD_VERDICT = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})\d*Z\s+\w+\s+service is (up|down)\s+service=\"?([^\s\"]+)"
)


class VerdictLog:
    """anycastd's `service is up/down` lines, in order."""

    def __init__(self, path):
        self.tail = Tail(path)
        self.verdicts = []  # (us, "up"|"down", service)

    def poll(self):
        for line in self.tail.lines():
            m = ANYCASTD_VERDICT.match(line)
            if m:
                ts, state, service = m.groups()
                self.verdicts.append((to_us(ts, "%Y-%m-%dT%H:%M:%S.%f"), state, service))
        return len(self.verdicts)

    def wait_new(self, start, state, service, timeout=5.0):
        """The first verdict (index >= start) for service/state."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for us, s, svc in self.verdicts[start:]:
                if s == state and svc == service:
                    return us
            if time.monotonic() > deadline:
                return None
            time.sleep(0.005)


def bird_command(sock_path, command, timeout=60.0):
    """One command over BIRD's control socket: (final code, text of all lines)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        f = s.makefile("rb")
        f.readline()  # 0001 BIRD x.y ready.
        s.sendall(command.encode() + b"\n")
        lines = []
        while True:
            raw = f.readline()
            if not raw:
                raise OSError(f"BIRD closed the socket during {command!r}")
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("+"):
                continue
            lines.append(line[5:] if line[:4].isdigit() else line[1:])
            if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                return int(line[:4]), "\n".join(lines)


class Bird:
    """A BIRD in the foreground (`-f`), child of this driver."""

    def __init__(self, directory, config):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.conf = os.path.join(directory, "bird.conf")
        self.sock = os.path.join(directory, "bird.ctl")
        with open(self.conf, "w") as f:
            f.write(config)
        self.out = open(os.path.join(directory, "bird.out"), "wb")
        env = dict(os.environ, TZ="UTC")
        self.proc = subprocess.Popen(
            ["bird", "-f", "-c", self.conf, "-s", self.sock, "-P", os.path.join(directory, "bird.pid")],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
            env=env, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"bird bench: BIRD in {directory} exited; see bird.out there")
            try:
                if "Daemon is up" in bird_command(self.sock, "show status", 2)[1]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"bird bench: BIRD in {directory} not up within 10 s")
            time.sleep(0.02)

    def cmd(self, command, timeout=60.0):
        return bird_command(self.sock, command, timeout)

    def configure(self):
        """Plain `configure` over the socket, as anycastd does; (code, seconds)."""
        t0 = time.perf_counter()
        code, _ = self.cmd("configure")
        return code, time.perf_counter() - t0

    def import_stats(self, protocol):
        """(import updates received, import withdraws received) of a protocol."""
        _, text = self.cmd(f"show protocols all {protocol}")
        upd = re.search(r"Import updates:\s+(\d+)", text)
        wd = re.search(r"Import withdraws:\s+(\d+)", text)
        if not upd or not wd:
            return (0, 0)  # no channel stats before the session is up
        return int(upd.group(1)), int(wd.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def peer_config(k, log_path):
    return f"""router id 127.0.{k}.2;
timeformat log iso long us;
log "{log_path}" all;
protocol device {{}}
protocol bgp a {{
  local 127.0.{k}.2 as 65002;
  neighbor 127.0.{k}.1 as 65001;
  multihop;
  strict bind yes;
  connect delay time 1;
  debug {{ routes }};
  ipv4 {{ import all; export none; }};
}}
"""


def include_path(ctx, lab):
    """anycastd's include file: in the lab, or in --include-dir (tmpfs, to
    take the disk's fsync out of the figures)."""
    if ctx.include_dir:
        return os.path.join(ctx.include_dir, os.path.basename(lab) + ".conf")
    return os.path.join(lab, "anycastd.conf")


def announcer_config(k, directory, fmt, include):
    if fmt == "static":
        top = ""
        statics = f"protocol static anycastd4 {{\n  ipv4;\ninclude \"{include}\";\n}}\n"
        export = 'proto = "anycastd4"'
    else:
        # anycast-healthchecker's layout: every VIP always in the RIB, the
        # prefix set in the export filter decides what leaves.
        top = f"include \"{include}\";\n"
        statics = (f"protocol static vips4 {{\n  ipv4;\ninclude \"{os.path.join(directory, 'vips.conf')}\";\n}}\n")
        export = "net ~ ANYCASTD_PREFIXES_V4"
    return f"""router id 127.0.{k}.1;
log "{os.path.join(directory, 'bird.log')}" {{ info, remote, warning, error, auth, fatal, bug }};
{top}protocol device {{}}
{statics}protocol bgp b {{
  local 127.0.{k}.1 as 65001;
  neighbor 127.0.{k}.2 as 65002;
  multihop;
  strict bind yes;
  ipv4 {{ import none; export where {export}; }};
}}
"""


def render_include(fmt, routes):
    """What anycastd writes (render.rs), for the bare-BIRD comparison."""
    if fmt == "static":
        return "".join(f"route {r} blackhole;\n" for r in routes)
    body = "define ANYCASTD_PREFIXES_V4 = []" if not routes else (
        "define ANYCASTD_PREFIXES_V4 = [\n" + ",\n".join(f"    {r}" for r in routes) + "\n]")
    return body + ";\ndefine ANYCASTD_PREFIXES_V6 = [];\n"


def write_atomically(path, text):
    tmp = path + ".bench.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def check_block(server, index, interval):
    return (
        f"    check_interval: {interval}\n"
        f"    checks:\n"
        f"      - kind: http_2xx\n"
        f"        spec: {{url: \"http://{server}/svc/{index}\", method: GET, "
        f"tries: 1, interval: 100ms, timeout: 500ms}}\n"
    )


def anycastd_config(path, ctx, lab, fmt, announcer_routes, services, metrics_port):
    """services: (name, http index, interval, own routes or None)."""
    include = include_path(ctx, lab)
    server = ctx.server
    sock = os.path.join(lab, "bird.ctl")
    with open(path, "w") as f:
        f.write("announcer:\n  backend: bird\n")
        f.write(f"  routes: [{', '.join(announcer_routes)}]\n")
        f.write(f"  bird: {{include_file: \"{include}\", socket: \"{sock}\", format: {fmt}, "
                f"reconfigure_timeout: 60s}}\n")
        f.write("services:\n")
        for name, index, interval, routes in services:
            f.write(f"  - name: {name}\n")
            if routes is not None:
                f.write(f"    routes: [{', '.join(routes)}]\n")
            f.write(check_block(server, index, interval))
        f.write(f'metrics: {{enabled: true, address: "127.0.0.1:{metrics_port}"}}\n')


class Anycastd:
    def __init__(self, binary, config, log_path, metrics_port):
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.err = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "-c", config, "--log-level", "info", "run"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err,
            preexec_fn=die_with_parent,
        )

    def metrics(self):
        """{(name, ((label, value), ...)): value}."""
        text = http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
            if not m:
                continue
            name, labels, value = m.groups()
            pairs = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels or "")))
            out[(name, pairs)] = float(value)
        return out

    def stop(self, timeout=60.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


def m_get(samples, name, **labels):
    want = tuple(sorted(labels.items()))
    return samples.get((name, want))


def summary(samples, name, **labels):
    """Quantiles, _sum and _count of a summary metric."""
    out = {}
    for (n, pairs), value in samples.items():
        d = dict(pairs)
        q = d.pop("quantile", None)
        if any(d.get(k) != v for k, v in labels.items()):
            continue
        if n == name and q is not None:
            out[q] = value
        elif n == name + "_sum":
            out["sum"] = value
        elif n == name + "_count":
            out["count"] = value
    return out


LAT = "anycastd_route_change_latency_seconds"
DUR = "anycastd_bird_reconfigure_duration_seconds"
RECONF = "anycastd_bird_reconfigures_total"


def counters(d):
    s = d.metrics()
    lat = summary(s, LAT, backend="bird")
    dur = summary(s, DUR)
    return {
        "lat_sum": lat.get("sum", 0.0), "lat_count": lat.get("count", 0.0),
        "dur_sum": dur.get("sum", 0.0), "dur_count": dur.get("count", 0.0),
        "reconf_ok": m_get(s, RECONF, result="ok") or 0.0,
        "reconf_err": m_get(s, RECONF, result="error") or 0.0,
        "lat_q": {k: v for k, v in lat.items() if k not in ("sum", "count")},
        "dur_q": {k: v for k, v in dur.items() if k not in ("sum", "count")},
    }


# ---------------------------------------------------------------- scenarios


def bare_bird(a, peer, fmt, routes, include, configures, rounds):
    """BIRD alone: unchanged `configure` times (socket and birdc), and what
    a changed file costs from `configure` to B."""
    n = len(routes)
    all_set = set(routes)
    write_atomically(include, render_include(fmt, routes))
    a.configure()
    peer.wait_present(all_set, STATE_WAIT, f"bare: {n} routes at B")
    peer.wait_quiet(0.3, 20)

    socket_s, birdc_s = [], []
    for _ in range(configures):
        code, took = a.configure()
        if code not in (3, 4, 5):
            raise SystemExit(f"bird bench: configure answered {code}")
        socket_s.append(took)
    for _ in range(configures):
        t0 = time.perf_counter()
        out = subprocess.run(["birdc", "-s", a.sock, "configure"], capture_output=True, timeout=60)
        birdc_s.append(time.perf_counter() - t0)
        if b"Reconfigured" not in out.stdout:
            raise SystemExit(f"bird bench: birdc configure: {out.stdout!r}")
    changes_after_unchanged = peer.parse()

    # A changed file: all N out, all N back, a few times.
    withdraw_ms, announce_ms, changed_s = [], [], []
    for _ in range(rounds):
        for target in ([], routes):
            write_atomically(include, render_include(fmt, target))
            t0 = wall_us()
            code, took = a.configure()
            changed_s.append(took)
            if target:
                peer.wait_present(all_set, STATE_WAIT, "bare: routes back")
                announce_ms.append((peer.latest(routes, "added") - t0) / 1e3)
            else:
                peer.wait_gone(all_set, STATE_WAIT, "bare: routes gone")
                withdraw_ms.append((peer.latest(routes, "removed") - t0) / 1e3)
            peer.wait_quiet(0.3, 20)
    write_atomically(include, render_include(fmt, []))
    a.configure()
    peer.wait_gone(all_set, STATE_WAIT, "bare: emptied")
    peer.wait_quiet(0.3, 20)
    return {
        "configure_socket_ms": stats([s * 1e3 for s in socket_s]),
        "configure_birdc_ms": stats([s * 1e3 for s in birdc_s]),
        "configure_changed_ms": stats([s * 1e3 for s in changed_s]),
        "configure_to_peer_withdraw_ms": stats(withdraw_ms),
        "configure_to_peer_announce_ms": stats(announce_ms),
        "trace_lines_after_unchanged_configures": changes_after_unchanged,
    }


def flap_run(ctx, lab, a, peer, fmt, routes, variant, flaps):
    """anycastd with one service flapping: `all` (one service protects all
    N prefixes) or `one` (a flapper with one prefix, a steady service with
    the other N - 1)."""
    n = len(routes)
    work = os.path.join(lab, f"anycastd-{variant}")
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, "anycastd.yaml")
    port = free_port()
    if variant == "all":
        flapper, flapped = "web", routes
        anycastd_config(config, ctx, lab, fmt, routes, [("web", 1, "100ms", None)], port)
    else:
        flapper, flapped = "flap", routes[:1]
        anycastd_config(config, ctx, lab, fmt, [], [("flap", 1, "100ms", routes[:1]),
                                                ("steady", 2, "1s", routes[1:])], port)
    http_get(f"http://{ctx.server}/control/reset")
    all_set, flap_set = set(routes), set(flapped)
    verdicts = VerdictLog(os.path.join(work, "anycastd.log"))
    d = Anycastd(ctx.anycastd, config, verdicts.tail.path, port)
    transitions = []
    try:
        peer.wait_present(all_set, STATE_WAIT, f"{fmt}/{n}/{variant}: all routes at B")
        peer.wait_quiet(0.3, 20)
        time.sleep(0.2)
        verdicts.poll()
        before = counters(d)
        stats0 = ctx.peer_bird.import_stats("a")
        t_flaps = time.monotonic()
        for i in range(2 * flaps):
            down = i % 2 == 0
            start = len(verdicts.verdicts)
            c0, s0 = counters(d), ctx.peer_bird.import_stats("a")
            time.sleep(ctx.rng.uniform(0, 0.1))  # a random phase of the 100 ms tick
            http_get(f"http://{ctx.server}/control/{'fail' if down else 'ok'}/1")
            if down:
                peer.wait_gone(flap_set, ctx.flap_timeout, f"{fmt}/{n}/{variant}: flap {i // 2} withdrawn at B")
                peer_us = peer.latest(flapped, "removed")
            else:
                peer.wait_present(flap_set, ctx.flap_timeout, f"{fmt}/{n}/{variant}: flap {i // 2} back at B")
                peer_us = peer.latest(flapped, "added")
            verdict_us = verdicts.wait_new(start, "down" if down else "up", flapper)
            # Wait for whatever else BIRD sends for this change (the prefix
            # set's re-export) before reading B's counters.
            quiet = peer.wait_quiet(ctx.settle, ctx.settle_max)
            c1, s1 = counters(d), ctx.peer_bird.import_stats("a")
            dc = c1["lat_count"] - c0["lat_count"]
            dd = c1["dur_count"] - c0["dur_count"]
            transitions.append({
                "down": down,
                "verdict_us": verdict_us,
                "peer_us": peer_us,
                "peer_ms": (peer_us - verdict_us) / 1e3 if verdict_us and peer_us else None,
                "metric_ms": (c1["lat_sum"] - c0["lat_sum"]) / dc * 1e3 if dc == 1 else None,
                "metric_samples": dc,
                "reconfigures": c1["reconf_ok"] - c0["reconf_ok"],
                "reconfigure_errors": c1["reconf_err"] - c0["reconf_err"],
                "reconfigure_ms": (c1["dur_sum"] - c0["dur_sum"]) / dd * 1e3 if dd else None,
                "updates": s1[0] - s0[0],
                "withdraws": s1[1] - s0[1],
                "settled": quiet,
            })
            t = transitions[-1]
            if t["metric_ms"] is not None and t["reconfigure_ms"] is not None:
                # anycastd's share: verdict -> `configure` sent; BIRD's:
                # `configure` sent -> the last flapped prefix changed at B.
                t["share_ms"] = t["metric_ms"] - t["reconfigure_ms"]
                if t["peer_ms"] is not None:
                    t["bird_ms"] = t["peer_ms"] - t["share_ms"]
        flap_seconds = time.monotonic() - t_flaps
        # Anything late is still counted in the run's totals: BIRD 2.0.12
        # sends the last partial batch (< 256 routes) of a re-export ~3 s
        # late, so past 256 prefixes wait that out.
        peer.wait_quiet(3.5 if n >= 256 else 0.5, ctx.settle_max)
        after = counters(d)
        stats1 = ctx.peer_bird.import_stats("a")
    finally:
        code = d.stop()
    # SIGTERM withdraws everything.
    peer.wait_gone(all_set, STATE_WAIT, f"{fmt}/{n}/{variant}: withdrawn at SIGTERM")
    peer.wait_quiet(0.3, 20)
    downs = [t for t in transitions if t["down"]]
    ups = [t for t in transitions if not t["down"]]
    return {
        "variant": variant,
        "flaps": flaps,
        "flap_seconds": flap_seconds,
        "exit_code": code,
        "peer_withdraw_ms": stats([t["peer_ms"] for t in downs]),
        "peer_announce_ms": stats([t["peer_ms"] for t in ups]),
        "metric_withdraw_ms": stats([t["metric_ms"] for t in downs]),
        "metric_announce_ms": stats([t["metric_ms"] for t in ups]),
        "metric_quantiles_ms": {k: v * 1e3 for k, v in after["lat_q"].items()},
        "metric_count": after["lat_count"] - before["lat_count"],
        "reconfigure_ms": stats([t["reconfigure_ms"] for t in downs + ups]),
        # anycastd's own share: verdict -> `configure` sent (the engine's
        # route set, rendering, the write and rename of the include file).
        "before_configure_ms": stats([t.get("share_ms") for t in downs + ups]),
        "share_withdraw_ms": stats([t.get("share_ms") for t in downs]),
        "bird_withdraw_ms": stats([t.get("bird_ms") for t in downs]),
        "reconfigure_quantiles_ms": {k: v * 1e3 for k, v in after["dur_q"].items()},
        "reconfigures": after["reconf_ok"] - before["reconf_ok"],
        "reconfigure_errors": after["reconf_err"] - before["reconf_err"],
        "updates_total": stats1[0] - stats0[0],
        "withdraws_total": stats1[1] - stats0[1],
        "down_updates": stats([t["updates"] for t in downs]),
        "down_withdraws": stats([t["withdraws"] for t in downs]),
        "up_updates": stats([t["updates"] for t in ups]),
        "up_withdraws": stats([t["withdraws"] for t in ups]),
        "unsettled": sum(1 for t in transitions if not t["settled"]),
        "transitions": transitions,
    }


def flip_run(ctx, lab, a, peer, fmt, routes):
    """One service per route at 1 s; all fail with one request, right
    after a check round, so the next round fails them all."""
    n = len(routes)
    work = os.path.join(lab, "anycastd-flip")
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, "anycastd.yaml")
    port = free_port()
    anycastd_config(config, ctx, lab, fmt, [], [(f"svc{i:04d}", i, "1s", [r]) for i, r in enumerate(routes, 1)], port)
    http_get(f"http://{ctx.server}/control/reset")
    all_set = set(routes)
    verdicts = VerdictLog(os.path.join(work, "anycastd.log"))
    t_start = wall_us()
    d = Anycastd(ctx.anycastd, config, verdicts.tail.path, port)
    result = {"services": n}
    try:
        peer.wait_present(all_set, STATE_WAIT, f"{fmt} flip: {n} routes at B")
        result["startup_ms"] = (peer.latest(routes, "added") - t_start) / 1e3
        peer.wait_quiet(0.5, 20)
        for down in (True, False):
            aligned = between_rounds(ctx.server)
            verdicts.poll()
            start = len(verdicts.verdicts)
            c0 = counters(d)
            s0 = ctx.peer_bird.import_stats("a")
            http_get(f"http://{ctx.server}/control/{'fail-all' if down else 'ok-all'}")
            if down:
                peer.wait_gone(all_set, STATE_WAIT, f"{fmt} flip: all withdrawn")
                peer_us = peer.latest(routes, "removed")
            else:
                peer.wait_present(all_set, STATE_WAIT, f"{fmt} flip: all back")
                peer_us = peer.latest(routes, "added")
            # Past the next check round, so late verdicts would show.
            peer.wait_quiet(1.5, 20)
            time.sleep(max(0.0, 1.2 - (wall_us() - peer_us) / 1e6))
            verdicts.poll()
            c1 = counters(d)
            s1 = ctx.peer_bird.import_stats("a")
            mine = sorted(us for us, s, _ in verdicts.verdicts[start:] if s == ("down" if down else "up"))
            # Bursts of verdicts more than 20 ms apart (services in different
            # start-up slots): the backend merges only what arrives while a
            # configure is in flight.
            bursts = 1 + sum(1 for x, y in zip(mine, mine[1:]) if y - x > 20_000) if mine else 0
            dd = c1["dur_count"] - c0["dur_count"]
            result["down" if down else "up"] = {
                "aligned": aligned,
                "verdicts": len(mine),
                "verdict_bursts": bursts,
                "verdict_spread_ms": (max(mine) - min(mine)) / 1e3 if mine else None,
                "first_verdict_to_last_peer_ms": (peer_us - min(mine)) / 1e3 if mine else None,
                "last_verdict_to_last_peer_ms": (peer_us - max(mine)) / 1e3 if mine else None,
                "reconfigures": c1["reconf_ok"] - c0["reconf_ok"],
                "reconfigure_errors": c1["reconf_err"] - c0["reconf_err"],
                "reconfigure_mean_ms": (c1["dur_sum"] - c0["dur_sum"]) / dd * 1e3 if dd else None,
                "metric_samples": c1["lat_count"] - c0["lat_count"],
                "updates": s1[0] - s0[0],
                "withdraws": s1[1] - s0[1],
            }
    finally:
        result["exit_code"] = d.stop()
    peer.wait_gone(all_set, STATE_WAIT, f"{fmt} flip: withdrawn at SIGTERM")
    peer.wait_quiet(0.3, 20)
    return result


def between_rounds(server, gap=0.1, timeout=3.0):
    """Returns just after a check round: the server's request count rose
    and then stayed still for `gap` seconds (rounds take ~0.1-0.2 s, 1 s
    apart). Returns False if no such gap showed within `timeout`: anycastd
    spreads services' first rounds over slots, so there may be none, and
    the flip then lands wherever it lands."""
    deadline = time.monotonic() + timeout
    last = int(http_get(f"http://{server}/control/count"))
    changed_at, rose = time.monotonic(), False
    while time.monotonic() < deadline:
        time.sleep(0.005)
        now = int(http_get(f"http://{server}/control/count"))
        if now != last:
            last, changed_at, rose = now, time.monotonic(), True
        elif rose and time.monotonic() - changed_at >= gap:
            return True
    return False


class Lab:
    """B, then (after `bird-flush` made valid empty files) A."""

    def __init__(self, ctx, k, fmt, routes, name):
        self.dir = os.path.join(ctx.workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.fmt = fmt
        self.include = include_path(ctx, self.dir)
        self.a = self.b = None
        try:
            self._start(ctx, k, fmt, routes, name)
        except BaseException:
            self.stop()
            raise

    def _start(self, ctx, k, fmt, routes, name):
        peer_log = os.path.join(self.dir, "b", "bird.log")
        self.b = Bird(os.path.join(self.dir, "b"), peer_config(k, peer_log))
        ctx.peer_bird = self.b
        self.peer = PeerLog(peer_log)
        # What an operator's ExecStartPre does: valid (empty) files before
        # BIRD starts.
        flush_cfg = os.path.join(self.dir, "flush.yaml")
        anycastd_config(flush_cfg, ctx, self.dir, fmt, routes[:1], [("web", 1, "1s", None)],
                        free_port())
        out = subprocess.run([ctx.anycastd, "-c", flush_cfg, "bird-flush"], capture_output=True, timeout=30)
        if out.returncode != 0:
            raise SystemExit(f"bird bench: bird-flush: {out.stderr.decode()}")
        if fmt == "prefix_set":
            with open(os.path.join(self.dir, "vips.conf"), "w") as f:
                f.write("".join(f"route {r} blackhole;\n" for r in routes))
        self.a = Bird(self.dir, announcer_config(k, self.dir, fmt, self.include))
        deadline = time.monotonic() + 20
        while "Established" not in self.b.cmd("show protocols a")[1]:
            if time.monotonic() > deadline:
                raise SystemExit(f"bird bench: BGP session A-B ({name}) not up within 20 s")
            time.sleep(0.05)

    def stop(self):
        for bird in (self.a, self.b):
            if bird:
                bird.stop()


def cmd_run(args):
    import random

    ctx = argparse.Namespace(
        anycastd=args.anycastd, server=args.server, workdir=args.workdir, rng=random.Random(1),
        settle=args.settle, settle_max=args.settle_max, flap_timeout=args.flap_timeout, peer_bird=None,
        include_dir=args.include_dir,
    )
    include_dir = args.include_dir or args.workdir
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "bird": bird_version(),
               "sizes": args.sizes, "formats": args.formats, "cases": [], "flips": [],
               "include_dir": include_dir, "include_fs": fs_type(include_dir),
               "durable_write_ms": stats(durable_write_times(include_dir))}
    k = args.first_net
    machine0, t_run = machine_cpu_ticks(), time.monotonic()
    for fmt in args.formats:
        for n in args.sizes:
            flaps = args.flaps if n < args.big else args.flaps_big
            routes = prefixes(n)
            t0 = time.monotonic()
            lab = Lab(ctx, k, fmt, routes, f"{fmt}-{n}")
            k += 1
            case = {"format": fmt, "n": n}
            try:
                case["bare"] = bare_bird(lab.a, lab.peer, fmt, routes, lab.include, args.configures,
                                         3 if n >= args.big else 5)
                case["all"] = flap_run(ctx, lab.dir, lab.a, lab.peer, fmt, routes, "all", flaps)
                if n > 1:
                    case["one"] = flap_run(ctx, lab.dir, lab.a, lab.peer, fmt, routes, "one", flaps)
                case["peer_trace_ops"] = lab.peer.ops
            finally:
                lab.stop()
            case["seconds"] = time.monotonic() - t0
            results["cases"].append(case)
            print(progress(case), flush=True)
        if args.services:
            routes = prefixes(args.services, second_octet=100)
            t0 = time.monotonic()
            lab = Lab(ctx, k, fmt, routes, f"{fmt}-flip{args.services}")
            k += 1
            try:
                flip = flip_run(ctx, lab.dir, lab.a, lab.peer, fmt, routes)
            finally:
                lab.stop()
            flip["format"] = fmt
            flip["seconds"] = time.monotonic() - t0
            results["flips"].append(flip)
            print(f"  {fmt}: {args.services} services failing together -> "
                  f"{flip['down']['reconfigures']:.0f} reconfigures "
                  f"({flip['down']['verdicts']} verdicts over {flip['down']['verdict_spread_ms']:.0f} ms); "
                  f"recovering -> {flip['up']['reconfigures']:.0f}; {flip['seconds']:.0f} s", flush=True)
    machine1 = machine_cpu_ticks()
    results["seconds"] = time.monotonic() - t_run
    # Everything on the box, in cores: BIRD x2, anycastd, the server, this
    # driver, and anything else that competed for the CPUs.
    results["machine_busy_cores"] = os.cpu_count() * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


def progress(case):
    a = case["all"]
    w = a["peer_withdraw_ms"]
    return (f"  {case['format']} N={case['n']}: verdict->peer withdraw p50 {w['p50']:.2f} ms "
            f"max {w['max']:.2f} ms; bare configure {case['bare']['configure_socket_ms']['p50']:.2f} ms; "
            f"{case['seconds']:.0f} s")


def fs_type(path):
    """Filesystem type of `path`, from the longest matching /proc/mounts entry."""
    path = os.path.realpath(path)
    best = ("", "?")
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mount, kind = fields[1], fields[2]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best[0]):
                best = (mount, kind)
    return best[1]


def durable_write_times(directory, count=20):
    """What anycastd's write_atomically costs there: write, fsync, rename,
    fsync the directory (ms)."""
    times = []
    path = os.path.join(directory, ".bench-fsync.tmp")
    for _ in range(count):
        t0 = time.perf_counter()
        with open(path + ".new", "w") as f:
            f.write("route 10.0.0.1/32 blackhole;\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + ".new", path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        times.append((time.perf_counter() - t0) * 1e3)
    os.remove(path)
    return times


def bird_version():
    out = subprocess.run(["bird", "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout + out.stderr).strip()


# ---------------------------------------------------------------- report


def f_ms(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def triple(s, digits=2):
    if not s:
        return "-"
    return f"{f_ms(s['p50'], digits)} / {f_ms(s['p99'], digits)} / {f_ms(s['max'], digits)}"


def table(header, rows):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for row in rows:
        out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return out


def verdict(ok):
    return "PASS" if ok else "FAIL"


def per(total, count):
    return "-" if not count else f"{total / count:g}"


def cmd_report(args):
    with open(args.results) as f:
        r = json.load(f)
    out = [f"anycastd bird-backend benchmark  {r['started']}  ({os.cpu_count()} CPUs, {args.host}, "
           f"anycastd {args.revision}, {r['bird']})", ""]

    dw = r["durable_write_ms"]
    out.append(f"Run: {r['seconds']:.0f} s; the whole machine was {r['machine_busy_cores']:.2f} of "
               f"{os.cpu_count()} cores busy on average (all processes).")
    out.append(f"anycastd's include files on {r['include_fs']} ({r['include_dir']}); a durable write there")
    out.append(f"(write, fsync, rename, fsync dir; anycastd no longer fsyncs) took p50 {f_ms(dw['p50'])} ms, "
               f"max {f_ms(dw['max'])} ms.")
    out.append("")
    out.append("1. Verdict -> route gone at peer B, ms, p50 / p99 / max over the withdrawals (100 ms checks).")
    out.append("   'all N': one service protects all N prefixes; '1 of N': one prefix's service flaps while a")
    out.append("   steady service keeps the other N - 1. peer = B's log time of the last flapped prefix's")
    out.append("   withdrawal minus anycastd's `service is down` log time. metric = anycastd's own")
    out.append("   route_change_latency (verdict -> BIRD answered `configure`). Per withdrawal, peer splits")
    out.append("   into anycastd's share (verdict -> `configure` sent = metric - reconfigure duration) and")
    out.append("   BIRD's (`configure` sent -> B). Target: peer <= BIRD's own time + 2 ms, i.e. share <= 2 ms.")
    out.append("   bare = BIRD A alone, no anycastd, median: `configure` with the N routes unchanged, over")
    out.append("   the socket / via birdc / with the file changed N <-> 0; cfg->B = `configure` sent -> last")
    out.append("   withdrawal at B, N -> 0 (few samples; BIRD-to-BIRD TCP adds ~40 ms at random at 10,000).")
    rows = []
    for c in r["cases"]:
        b = c["bare"]
        for v in ("all", "one"):
            if v not in c:
                continue
            a = c[v]
            share = a.get("share_withdraw_ms")
            rows.append((
                c["format"], f"{c['n']:,}", "all N" if v == "all" else "1 of N", a["peer_withdraw_ms"]["n"],
                triple(a["peer_withdraw_ms"]), triple(a["metric_withdraw_ms"]),
                triple(share), triple(a.get("bird_withdraw_ms")),
                verdict(share["p50"] <= 2.0) if share else "-",
                f"{f_ms(b['configure_socket_ms']['p50'])} / {f_ms(b['configure_birdc_ms']['p50'])} / "
                f"{f_ms(b['configure_changed_ms']['p50'])}",
                f_ms(b["configure_to_peer_withdraw_ms"]["p50"]) if v == "all" else "",
            ))
    out += ["   " + line for line in table(
        ("format", "N", "flapping", "flaps", "peer p50/p99/max", "metric p50/p99/max",
         "anycastd share p50/p99/max", "BIRD part p50/p99/max", "share p50 <= 2 ms",
         "bare cfg sock/birdc/changed", "bare cfg->B"), rows)]
    out.append("")
    out.append("   Announce direction (verdict up -> last prefix back at B) and the exporter's own quantiles")
    out.append("   (every change of the run, down and up; the summary keeps 60 s):")
    rows = []
    for c in r["cases"]:
        for v in ("all", "one"):
            if v not in c:
                continue
            a = c[v]
            q = a["metric_quantiles_ms"]
            rows.append((
                c["format"], f"{c['n']:,}", "all N" if v == "all" else "1 of N",
                triple(a["peer_announce_ms"]), triple(a["metric_announce_ms"]),
                f_ms(c["bare"]["configure_to_peer_announce_ms"]["p50"]) if v == "all" else "",
                f"{f_ms(q.get('0.5'))} / {f_ms(q.get('0.99'))} / {f_ms(q.get('1'))} (n={a['metric_count']:.0f})",
            ))
    out += ["   " + line for line in table(
        ("format", "N", "flapping", "up: peer p50/p99/max", "up: metric p50/p99/max", "bare cfg->B up",
         "exporter p50/p99/max"), rows)]
    out.append("")

    out.append("2. One reconfigure (anycastd_bird_reconfigure_duration_seconds: `configure` sent -> BIRD's")
    out.append("   answer), ms, p50 / p99 / max over every change (down and up) of the run, and the exporter's")
    out.append("   quantiles. 'before configure' = metric - reconfigure per change: anycastd's own share")
    out.append("   (the engine's route set, rendering, write and rename of the include file).")
    rows = []
    for c in r["cases"]:
        for v in ("all", "one"):
            if v not in c:
                continue
            x = c[v]
            q = x["reconfigure_quantiles_ms"]
            rows.append((
                c["format"], f"{c['n']:,}", "all N" if v == "all" else "1 of N",
                triple(x["reconfigure_ms"]),
                f"{f_ms(q.get('0.5'))} / {f_ms(q.get('0.99'))} / {f_ms(q.get('1'))}",
                triple(x.get("before_configure_ms")),
                f"{x['reconfigures']:.0f} for {2 * x['flaps']} changes",
                f"{x['reconfigure_errors']:.0f}",
            ))
    out += ["   " + line for line in table(
        ("format", "N", "flapping", "reconfigure p50/p99/max", "exporter p50/p99/max",
         "before configure p50/p99/max", "reconfigures",
         "errors"), rows)]
    out.append("")

    out.append("3. UPDATEs B receives per health change (B's `show protocols all a`, import updates /")
    out.append("   withdraws received), mean per change; 'all N' = every prefix changes, '1 of N' = one")
    out.append("   prefix flaps while N - 1 stay announced.")
    rows = []
    for c in r["cases"]:
        for v in ("all", "one"):
            if v not in c:
                continue
            x = c[v]
            changed = c["n"] if v == "all" else 1
            downs = x["flaps"]
            dw = x["down_withdraws"]["mean"] if x["down_withdraws"] else 0
            du = x["down_updates"]["mean"] if x["down_updates"] else 0
            uu = x["up_updates"]["mean"] if x["up_updates"] else 0
            uw = x["up_withdraws"]["mean"] if x["up_withdraws"] else 0
            total = x["updates_total"] + x["withdraws_total"]
            rows.append((
                c["format"], f"{c['n']:,}", "all N" if v == "all" else "1 of N", changed,
                f"{dw:g} / {du:g}", f"{uu:g} / {uw:g}",
                per(total, 2 * downs), f"{per(total, 2 * downs * changed)}",
                x["unsettled"],
            ))
    out.append("   down/up split: means per change, read once B is quiet for the settle time; BIRD 2.0.12")
    out.append("   sends a re-export's last partial batch (< 256 routes) ~3 s late, which can land in the")
    out.append("   next change's count. The run total (after a 3.5 s quiet past 256 prefixes) is exact.")
    out += ["   " + line for line in table(
        ("format", "N", "flapping", "prefixes changed", "down: wd / upd", "up: upd / wd",
         "msgs per change (run total)", "per changed prefix", "unsettled"), rows)]
    out.append("")

    if r["flips"]:
        out.append("4. Many services flipping together: one service per /32 at 1 s, all made to fail with")
        out.append("   one request (and recover the same way); each service sees it at its next round.")
        out.append("   bursts = groups of verdicts separated by more than 20 ms (different start-up slots).")
        rows = []
        for fl in r["flips"]:
            for key in ("down", "up"):
                x = fl[key]
                rows.append((
                    fl["format"], f"{fl['services']:,}", "fail" if key == "down" else "recover",
                    x["verdicts"], f_ms(x["verdict_spread_ms"], 1), x.get("verdict_bursts", "-"),
                    f"{x['reconfigures']:.0f}", f_ms(x["reconfigure_mean_ms"]),
                    f_ms(x["first_verdict_to_last_peer_ms"], 1), f_ms(x["last_verdict_to_last_peer_ms"], 1),
                    f"{x['updates']} / {x['withdraws']}",
                    verdict(x["reconfigures"] == 1) if key == "down" else "",
                ))
        out += ["   " + line for line in table(
            ("format", "services", "", "verdicts", "verdict spread ms", "bursts >20ms apart", "reconfigures",
             "mean reconf ms",
             "1st verdict->last at B ms", "last verdict->last at B ms", "B upd / wd", "1 reconf"), rows)]
        out.append("")

    problems = []
    for c in r["cases"]:
        for v in ("all", "one"):
            if v in c and c[v]["exit_code"] != 0:
                problems.append(f"{c['format']} N={c['n']} {v}: anycastd exit {c[v]['exit_code']}")
            if v in c and c[v]["reconfigure_errors"]:
                problems.append(f"{c['format']} N={c['n']} {v}: {c[v]['reconfigure_errors']:.0f} failed reconfigures")
    for fl in r["flips"]:
        if fl["exit_code"] != 0:
            problems.append(f"{fl['format']} flip: anycastd exit {fl['exit_code']}")
    out.append("Sanity: " + ("every anycastd exited 0 on SIGTERM and withdrew all routes; no failed reconfigure"
                             if not problems else "; ".join(problems)))
    print("\n".join(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run")
    p.add_argument("--anycastd", required=True)
    p.add_argument("--server", required=True, help="bench HTTP server, HOST:PORT")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10000])
    p.add_argument("--formats", nargs="+", default=["static", "prefix_set"],
                   choices=["static", "prefix_set"])
    p.add_argument("--flaps", type=int, default=20)
    p.add_argument("--flaps-big", type=int, default=5)
    p.add_argument("--big", type=int, default=5000, help="sizes from here use --flaps-big")
    p.add_argument("--configures", type=int, default=20, help="bare configures timed per size")
    p.add_argument("--services", type=int, default=1000, help="services in the flip test; 0 skips it")
    p.add_argument("--settle", type=float, default=0.15, help="B quiet this long = a change is complete")
    p.add_argument("--include-dir", default="", help="put anycastd's include files here (e.g. tmpfs)")
    p.add_argument("--settle-max", type=float, default=20.0)
    p.add_argument("--flap-timeout", type=float, default=30.0)
    p.add_argument("--first-net", type=int, default=100, help="first K of the 127.0.K.0 pairs")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--host", default=socket.gethostname())
    p.add_argument("--revision", default="unknown")
    p.set_defaults(func=cmd_report)

    args = parser.parse_args()
    install_signal_exit()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
