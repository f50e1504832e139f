//! Faults injected against the real binary on the exabgp backend, with the
//! test playing ExaBGP (or nobody) on anycastd's stdin and stdout. Each test
//! asserts that the route state is right soon after the fault (within
//! max(1 s, one check interval) unless it says otherwise), that nothing
//! crashed, and that the fault was logged once.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(10);
/// max(1 s, one check interval) for the 200 ms intervals used here.
const CONVERGE: Duration = Duration::from_secs(1);

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Log lines that contain every one of `needles`.
fn count_lines(log: &Path, needles: &[&str]) -> usize {
    read_log(log)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

fn wait_for_log(log: &Path, needle: &str) {
    wait_until(WAIT, &format!("`{needle}` in the log"), || {
        read_log(log).contains(needle)
    });
}

/// Writes `text` as the config file in `dir`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let config = dir.join("anycastd.yaml");
    std::fs::write(&config, text).unwrap();
    config
}

/// One service, always up: 127.0.0.1 is assigned (checked every 200 ms).
const LOOPBACK_SERVICE: &str = "services:\n  - name: lo\n    check_interval: 200ms\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n";

fn announce(route: &str) -> String {
    format!("announce route {route} next-hop self")
}

fn withdraw(route: &str) -> String {
    format!("withdraw route {route} next-hop self")
}

/// A service named `name` protecting `route`, checked every 200 ms by an
/// HTTP GET of `url` (one try, `timeout`).
fn http_service(name: &str, route: &str, url: &str, timeout: &str) -> String {
    format!(
        r#"  - name: {name}
    check_interval: 200ms
    routes: ["{route}"]
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: {timeout}}}
"#
    )
}

/// A config with one HTTP service, `web`, protecting `route`; `extra` is
/// inserted before `services:`.
fn web_config(route: &str, http: &HealthServer, extra: &str) -> String {
    format!(
        "announcer: {{backend: exabgp}}\n{extra}services:\n{}",
        http_service("web", route, &http.url("/"), "500ms")
    )
}

/// Fails unless the log shows no panic.
fn assert_no_panic(log: &Path) {
    let text = read_log(log);
    assert!(
        !text.contains("panicked") && !text.contains("internal fault"),
        "something panicked:\n{text}"
    );
}

/// Waits (bounded) for `daemon` to exit; returns its exit code and how long it took.
fn timed_exit(daemon: &mut Daemon, bound: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    let code = daemon.wait_exit(bound);
    (code, start.elapsed())
}

/// Sends SIGTERM and waits (bounded) for the exit: its code and how long
/// it took from the signal.
fn terminate(daemon: &mut Daemon, bound: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    daemon.signal("TERM");
    let code = daemon.wait_exit(bound.saturating_sub(start.elapsed()));
    (code, start.elapsed())
}

/// anycastd with stdout piped (left to the caller), stdin as given and its
/// log in `log`, killed when the guard drops.
fn spawn_anycastd(config: &Path, stdin: Stdio, log: &Path) -> Daemon {
    let child = Command::new(anycastd_bin())
        .arg("-c")
        .arg(config)
        .arg("--log-level")
        .arg("info")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("create log file"))
        .spawn()
        .expect("start anycastd");
    Daemon {
        child,
        name: "anycastd",
    }
}

#[test]
fn idle_connections_do_not_starve_checks_or_routes() {
    let dir = scratch();
    let http = HealthServer::start();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let route = "10.77.1.1/32";
    let metrics_section = format!("metrics: {{enabled: true, address: \"{metrics}\"}}\n");
    let config = write_config(dir.path(), &web_config(route, &http, &metrics_section));
    let log = dir.path().join("anycastd.log");
    let exabgp = FakeExabgp::spawn(&config, &[], &log);
    // The shipped unit's situation: 1024 open files, soft and hard, so the
    // daemon cannot raise its way out.
    let pid = exabgp.daemon.pid().to_string();
    let status = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=1024:1024"])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");
    exabgp.expect_line(&announce(route), WAIT);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1024", "1024"],
        "{nofile}"
    );

    // 2,000 idle clients: twice the daemon's descriptors. A listener that
    // stops accepting fails the test below, after the route checks.
    let own = rlimit::increase_nofile_limit(8192).expect("raise the test's own limit");
    assert!(
        own >= 2100,
        "the test needs 2,100 open files; its limit is {own}"
    );
    let started = Instant::now();
    let mut idle = Vec::new();
    let mut refused = Vec::new();
    while idle.len() + refused.len() < 2000 && refused.len() < 3 {
        match TcpStream::connect_timeout(&metrics.parse().unwrap(), Duration::from_secs(3)) {
            Ok(stream) => idle.push(stream),
            Err(e) => refused.push(format!("connection {}: {e}", idle.len())),
        }
    }
    eprintln!(
        "opened {} idle connections in {:?}",
        idle.len(),
        started.elapsed()
    );

    http.set_healthy(false);
    let flipped = Instant::now();
    let down = exabgp.next_line(CONVERGE);
    eprintln!("`{down:?}` after the health flip: {:?}", flipped.elapsed());
    http.set_healthy(true);
    let flipped = Instant::now();
    let up = exabgp.next_line(CONVERGE);
    eprintln!("`{up:?}` after the health flip: {:?}", flipped.elapsed());
    let asked = Instant::now();
    let body = http_get(&metrics, "/metrics");
    eprintln!("GET /metrics took {:?}", asked.elapsed());
    drop(idle);

    let text = read_log(&log);
    assert!(
        !text.contains("Too many open files"),
        "the idle clients took the checks' descriptors:\n{text}"
    );
    assert!(
        count_lines(&log, &["accept failed"]) <= 1,
        "accept errors are logged once per episode:\n{text}"
    );
    assert_eq!(down, Some(withdraw(route)), "{text}");
    assert_eq!(up, Some(announce(route)), "{text}");
    let body = body.expect("GET /metrics answers 200");
    assert!(body.contains("anycastd_"), "{body}");
    assert!(
        refused.is_empty(),
        "the listener stopped accepting: {refused:?}"
    );
    assert_no_panic(&log);
}

#[test]
fn sigterm_exits_in_bounded_time_when_exabgp_stops_reading() {
    let dir = scratch();
    // 5,000 announcements (~200 KiB) cannot fit in a 64 KiB pipe nobody reads.
    let routes: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                "\"10.{}.{}.{}/32\"",
                100 + i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let config = write_config(
        dir.path(),
        &format!(
            "announcer: {{backend: exabgp, exabgp: {{shutdown_timeout: 1s}}, routes: [{}]}}\n{LOOPBACK_SERVICE}",
            routes.join(", ")
        ),
    );
    let log = dir.path().join("anycastd.log");
    let mut daemon = spawn_anycastd(&config, Stdio::piped(), &log);
    // Held open and never read or written: ExaBGP is alive but stuck.
    let _stdin = daemon.child.stdin.take();
    let mut stdout = daemon.child.stdout.take().unwrap();
    wait_for_log(&log, "every service has its first verdict");
    thread::sleep(Duration::from_millis(300));
    // shutdown_timeout (1 s) + 1 s, plus 1 s of slack.
    let (code, took) = terminate(&mut daemon, Duration::from_secs(3));
    eprintln!("exit after SIGTERM took {took:?}");
    assert_eq!(code, Some(0), "{}", read_log(&log));

    // The fault really happened: the writer was stuck on a full pipe.
    let mut written = Vec::new();
    stdout.read_to_end(&mut written).unwrap();
    let announced = written
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"announce"))
        .count();
    assert!(
        announced < routes.len(),
        "every announcement fit in the pipe ({announced} lines): no stuck writer"
    );
    assert_eq!(
        count_lines(&log, &["did not finish withdrawing in time"]),
        1,
        "{}",
        read_log(&log)
    );
    assert_no_panic(&log);
}

#[test]
fn exabgp_shutdown_with_pids_stops_at_once() {
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!(
            "announcer: {{backend: exabgp, routes: [10.77.3.1/32], exabgp: {{shutdown_timeout: 5s}}}}\n{LOOPBACK_SERVICE}"
        ),
    );
    let log = dir.path().join("anycastd.log");
    let mut exabgp = FakeExabgp::spawn(&config, &[], &log);
    exabgp.expect_line(&announce("10.77.3.1/32"), WAIT);
    // What ExaBGP 4.2 and 5 write when they stop.
    exabgp.send_line("shutdown 4242 1");
    let (code, took) = timed_exit(&mut exabgp.daemon, Duration::from_secs(1));
    eprintln!("exit after `shutdown 4242 1` took {took:?}");
    assert_eq!(code, Some(0), "{}", read_log(&log));
    let text = read_log(&log);
    assert!(!text.contains("did not acknowledge"), "{text}");
    assert_eq!(count_lines(&log, &["ExaBGP is shutting down"]), 1, "{text}");
    assert_no_panic(&log);
}

#[test]
fn respawned_helper_does_not_flap() {
    let dir = scratch();
    let up = HealthServer::start();
    let down = HealthServer::start();
    down.set_healthy(false);
    let (kept, dead) = ("10.77.4.1/32", "10.77.4.2/32");
    let config = write_config(
        dir.path(),
        &format!(
            "announcer: {{backend: exabgp}}\nservices:\n{}{}",
            http_service("up", kept, &up.url("/"), "500ms"),
            http_service("down", dead, &down.url("/"), "500ms")
        ),
    );
    let first_log = dir.path().join("first.log");
    let first = FakeExabgp::spawn(&config, &[], &first_log);
    first.expect_line(&announce(kept), WAIT);
    first.daemon.signal("KILL");
    drop(first);

    // ExaBGP still holds `kept`; the new helper must not withdraw it, not
    // even for a moment, and must still correct `dead`.
    let log = dir.path().join("second.log");
    let started = Instant::now();
    let second = FakeExabgp::spawn(&config, &[], &log);
    let first_line = second.next_line(WAIT);
    eprintln!(
        "respawned helper's first line after {:?}",
        started.elapsed()
    );
    let mut lines: Vec<String> = first_line.into_iter().collect();
    lines.extend(second.lines_within(Duration::from_millis(1500)));
    assert!(
        !lines.contains(&withdraw(kept)),
        "the respawned helper flapped a route it keeps: {lines:?}"
    );
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, [announce(kept), withdraw(dead)], "{lines:?}");
    assert_no_panic(&log);
}

#[test]
fn stdin_from_dev_null_keeps_running_and_prints_routes() {
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!("announcer: {{backend: exabgp, routes: [10.77.5.1/32]}}\n{LOOPBACK_SERVICE}"),
    );
    let log = dir.path().join("anycastd.log");
    // No ExaBGP: stdin is /dev/null, as under nohup, cron or CI.
    let mut daemon = spawn_anycastd(&config, Stdio::null(), &log);
    let stdout = daemon.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let first = rx.recv_timeout(WAIT).ok();
    assert_eq!(first, Some(announce("10.77.5.1/32")));
    eprintln!("announce printed {:?} after start", started.elapsed());
    thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    assert!(
        matches!(daemon.child.try_wait(), Ok(None)),
        "anycastd stopped without ExaBGP:\n{}",
        read_log(&log)
    );
    // The default shutdown_timeout (2 s) + 1 s bounds the exit; 1 s of slack.
    let (code, took) = terminate(&mut daemon, Duration::from_secs(4));
    eprintln!("exit after SIGTERM took {took:?}");
    assert_eq!(code, Some(0), "{}", read_log(&log));
    assert_eq!(
        rx.recv_timeout(WAIT).ok(),
        Some(withdraw("10.77.5.1/32")),
        "SIGTERM prints the withdrawal"
    );
    let text = read_log(&log);
    assert!(!text.contains("closed our stdin"), "{text}");
    assert_eq!(
        count_lines(&log, &["standard input is not a pipe"]),
        1,
        "{text}"
    );
    assert_no_panic(&log);
}

#[test]
fn sighup_with_bad_or_huge_config_keeps_running() {
    let dir = scratch();
    let http = HealthServer::start();
    let route = "10.77.6.1/32";
    let good = web_config(route, &http, "");
    let config = write_config(dir.path(), &good);
    let log = dir.path().join("anycastd.log");
    let mut exabgp = FakeExabgp::spawn(&config, &[], &log);
    exabgp.expect_line(&announce(route), WAIT);

    // A duration past every timer's range.
    let huge = good.replace("timeout: 500ms", "timeout: 150000000000000d");
    assert_ne!(huge, good);
    std::fs::write(&config, &huge).unwrap();
    let validate = Command::new(anycastd_bin())
        .arg("-c")
        .arg(&config)
        .arg("validate")
        .output()
        .expect("run anycastd validate");
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert_eq!(validate.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("services[0].checks[0].spec.timeout"),
        "{stderr}"
    );
    exabgp.daemon.signal("HUP");
    wait_for_log(&log, "configuration reload failed");
    let text = read_log(&log);
    assert_eq!(
        count_lines(
            &log,
            &[
                "configuration reload failed",
                "services[0].checks[0].spec.timeout"
            ]
        ),
        1,
        "{text}"
    );

    // A syntax error.
    std::fs::write(&config, good.replace("services:", "services: [")).unwrap();
    exabgp.daemon.signal("HUP");
    wait_until(WAIT, "the second reload failure", || {
        count_lines(&log, &["configuration reload failed"]) == 2
    });

    // Still checking with the running config.
    http.set_healthy(false);
    let flipped = Instant::now();
    exabgp.expect_line(&withdraw(route), CONVERGE);
    eprintln!("withdraw after the health flip: {:?}", flipped.elapsed());
    let (code, took) = terminate(&mut exabgp.daemon, Duration::from_secs(4));
    eprintln!("exit after SIGTERM took {took:?}");
    assert_eq!(code, Some(0), "{}", read_log(&log));
    assert_eq!(
        count_lines(&log, &["configuration reload failed"]),
        2,
        "{}",
        read_log(&log)
    );
    assert_no_panic(&log);
}

/// Servers that never finish answering, stopped when dropped.
struct Hanging {
    stop: Arc<AtomicBool>,
    /// Accepts and never answers.
    silent: u16,
    /// Sends a 200 and its headers, then one body byte every 200 ms.
    trickle: u16,
    /// A UDP socket that reads nothing.
    _dns: UdpSocket,
    dns: u16,
}

impl Hanging {
    fn start() -> Hanging {
        let stop = Arc::new(AtomicBool::new(false));
        let silent = serve_tcp(&stop, |stream, _| {
            let _held = stream;
            thread::sleep(Duration::from_secs(30));
        });
        let trickle = serve_tcp(&stop, |mut stream, stop| {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            while !stop.load(Ordering::SeqCst) && stream.write_all(b"x").is_ok() {
                thread::sleep(Duration::from_millis(200));
            }
        });
        let dns = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let dns_port = dns.local_addr().unwrap().port();
        Hanging {
            stop,
            silent,
            trickle,
            _dns: dns,
            dns: dns_port,
        }
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP server on loopback running `serve` on a thread per connection
/// until `stop`; returns its port.
fn serve_tcp(stop: &Arc<AtomicBool>, serve: fn(TcpStream, &AtomicBool)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = stop.clone();
    thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let stop = stop.clone();
                    thread::spawn(move || serve(stream, &stop));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    port
}

#[test]
fn hanging_checks_fail_at_their_timeout() {
    let dir = scratch();
    let hanging = Hanging::start();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let routes = [
        ("silent", "10.77.7.1/32"),
        ("trickle", "10.77.7.2/32"),
        ("dns", "10.77.7.3/32"),
    ];
    let config = write_config(
        dir.path(),
        &format!(
            r#"announcer: {{backend: exabgp}}
metrics: {{enabled: true, address: "{metrics}"}}
services:
{}{}  - name: dns
    check_interval: 200ms
    routes: ["{}"]
    checks:
      - kind: dns_lookup
        spec: {{query: example.org, resolver: "127.0.0.1:{}", tries: 1, interval: 50ms, timeout: 300ms}}
"#,
            http_service(
                "silent",
                routes[0].1,
                &format!("http://127.0.0.1:{}/", hanging.silent),
                "300ms"
            ),
            http_service(
                "trickle",
                routes[1].1,
                &format!("http://127.0.0.1:{}/", hanging.trickle),
                "300ms"
            ),
            routes[2].1,
            hanging.dns
        ),
    );
    let log = dir.path().join("anycastd.log");
    let exabgp = FakeExabgp::spawn(&config, &[], &log);
    let started = Instant::now();
    let first = exabgp.next_line(WAIT);
    eprintln!("first verdicts after {:?}", started.elapsed());
    let mut lines: Vec<String> = first.into_iter().collect();
    // Several rounds pass: nothing is ever announced.
    lines.extend(exabgp.lines_within(Duration::from_millis(1500)));
    let mut sorted = lines.clone();
    sorted.sort();
    let withdrawn: Vec<String> = routes.iter().map(|(_, r)| withdraw(r)).collect();
    assert_eq!(sorted, withdrawn, "{lines:?}");

    let asked = Instant::now();
    let mut stream = TcpStream::connect(&metrics).expect("connect to the listener");
    stream.set_read_timeout(Some(CONVERGE)).unwrap();
    write!(stream, "GET /status HTTP/1.0\r\nHost: {metrics}\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .expect("GET /status answers within 1 s");
    eprintln!("GET /status took {:?}", asked.elapsed());
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert_eq!(reply.matches("\"state\": \"down\"").count(), 3, "{reply}");

    let text = read_log(&log);
    for (service, _) in routes {
        assert_eq!(
            count_lines(
                &log,
                &[
                    "service is down",
                    &format!("service={service}"),
                    "timed out"
                ]
            ),
            1,
            "{service}: one line naming the timeout:\n{text}"
        );
    }
    assert_no_panic(&log);
}

#[test]
fn sigkill_and_restart_converges() {
    let dir = scratch();
    let http = HealthServer::start();
    let route = "10.77.8.1/32";
    let config = write_config(dir.path(), &web_config(route, &http, ""));
    let mut logs = Vec::new();
    // Healthy, then failed while no anycastd ran, then healthy again.
    for (round, healthy) in [true, false, true].into_iter().enumerate() {
        http.set_healthy(healthy);
        let log = dir.path().join(format!("anycastd-{round}.log"));
        let started = Instant::now();
        let exabgp = FakeExabgp::spawn(&config, &[], &log);
        let want = if healthy {
            announce(route)
        } else {
            withdraw(route)
        };
        let first = exabgp.next_line(CONVERGE);
        assert_eq!(first.as_ref(), Some(&want), "restart {round}");
        eprintln!("restart {round}: `{want}` after {:?}", started.elapsed());
        let after = exabgp.lines_within(Duration::from_millis(500));
        assert!(after.is_empty(), "restart {round}: then {after:?}");
        exabgp.daemon.signal("KILL");
        logs.push(log);
    }
    for log in &logs {
        assert_no_panic(log);
    }
}

// Not tested here: a stale service (verdicts that stop arriving while the
// service task lives). Nothing outside the process can stall one service's
// task without stalling the whole daemon; `engine::core`'s unit tests and
// `tests/replay` cover the stale deadline.
