#!/usr/bin/env python3
"""CPU of many `listening` checks; called by bench/listening.sh.

Opens LISTENERS TCP listening sockets on 127.0.0.1, writes a config of
SERVICES services (check_interval 1s, exabgp backend) each with one
`listening` check on one of those ports (every tenth service on a port
nobody listens on, so both answers are exercised), starts anycastd with its
stdin and stdout on pipes owned here (answering every line with `done`, as
ExaBGP does), waits WARMUP seconds, then samples utime+stime from
/proc/PID/stat over DURATION seconds and prints the share of one core, and
the RSS. Standard library only; Linux only.
"""

import os
import socket
import subprocess
import sys
import threading
import time

from driver import thread_ticks

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    binary, work = sys.argv[1], sys.argv[2]
    services = int(os.environ.get("BENCH_SERVICES", "1000"))
    duration = float(os.environ.get("BENCH_DURATION", "30"))
    warmup = float(os.environ.get("BENCH_WARMUP", "5"))
    listeners = []
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        listeners.append(s)
    ports = [s.getsockname()[1] for s in listeners]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    lines = ["announcer: {backend: exabgp, routes: [192.0.2.1/32]}", "services:"]
    for i in range(services):
        port = closed if i % 10 == 9 else ports[i % len(ports)]
        lines += [
            f"  - name: s{i}",
            "    check_interval: 1s",
            f"    routes: [\"10.{i // 250}.{i % 250}.1/32\"]",
            f"    checks: [{{kind: listening, spec: {{port: {port}, address: 127.0.0.1}}}}]",
        ]
    config = os.path.join(work, "listening.yaml")
    with open(config, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(work, "anycastd.log"), "w")
    child = subprocess.Popen(
        [binary, "-c", config, "--log-level", "warn"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    announced = [0]

    def ack():
        for line in child.stdout:
            if line.startswith(b"announce"):
                announced[0] += 1
            try:
                child.stdin.write(b"done\n")
                child.stdin.flush()
            except BrokenPipeError:
                return

    threading.Thread(target=ack, daemon=True).start()
    try:
        time.sleep(warmup)
        t0, c0 = time.monotonic(), cpu_ticks(child.pid)
        th0 = thread_ticks(child.pid)
        time.sleep(duration)
        t1, c1 = time.monotonic(), cpu_ticks(child.pid)
        th1 = thread_ticks(child.pid)
        cpu = (c1 - c0) / CLK_TCK / (t1 - t0) * 100
        print(f"services: {services} listening checks at 1 s "
              f"({services - services // 10} passing), poll every 30 ms")
        print(f"announced routes: {announced[0]}")
        print(f"CPU over {t1 - t0:.1f} s: {cpu:.2f} % of one core")
        for name in sorted(th1):
            share = (th1[name] - th0.get(name, 0)) / CLK_TCK / (t1 - t0) * 100
            print(f"  thread {name}: {share:.2f} %")
        print(f"RSS: {rss_kib(child.pid) / 1024:.1f} MiB")
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    main()
