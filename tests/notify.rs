//! systemd notifications: anycastd run with NOTIFY_SOCKET pointing at a
//! datagram socket this test binds, as systemd would for Type=notify.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One service whose check passes on any host, and metrics for /status.
fn config(dir: &Path, metrics_port: u16) -> std::path::PathBuf {
    let file = dir.join("anycastd.yaml");
    std::fs::write(
        &file,
        format!(
            "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\n\
             services:\n  - name: lo\n    check_interval: 1s\n    \
             checks: [{{kind: assigned_address, spec: {{ipv4: 127.0.0.1}}}}]\n\
             metrics: {{enabled: true, address: \"127.0.0.1:{metrics_port}\"}}\n"
        ),
    )
    .unwrap();
    file
}

/// anycastd under a fake systemd: stdin is a pipe held open (ExaBGP's side),
/// stdout is discarded.
fn start(config: &Path, socket: &Path, watchdog_usec: Option<&str>, log: &Path) -> Daemon {
    let mut command = Command::new(anycastd_bin());
    command
        .arg("-c")
        .arg(config)
        .args(["--log-level", "info"])
        .env("NOTIFY_SOCKET", socket)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(usec) = watchdog_usec {
        command.env("WATCHDOG_USEC", usec);
    }
    Daemon {
        child: command.spawn().expect("start anycastd"),
        name: "anycastd",
    }
}

/// The notification socket systemd would hold.
fn bind(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    (socket, path)
}

/// Every message received within `window`, one string per datagram.
fn messages_within(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

/// Waits (bounded) for a datagram holding `line`; returns what came before it.
fn wait_for(socket: &UnixDatagram, line: &str, timeout: Duration, log: &Path) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if message.lines().any(|l| l == line) {
                return seen;
            }
            seen.push(message);
        }
    }
    panic!(
        "no {line} within {timeout:?}; got {seen:?}\nanycastd's log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn status_json(port: u16) -> serde_json::Value {
    let body = http_get(&format!("127.0.0.1:{port}"), "/status").expect("GET /status");
    serde_json::from_str(&body).expect("status is JSON")
}

#[test]
fn ready_after_first_verdicts_then_reloading_and_stopping() {
    let dir = scratch();
    let port = free_tcp_port();
    let config = config(dir.path(), port);
    let (socket, path) = bind(dir.path());
    let log = dir.path().join("anycastd.log");
    let mut daemon = start(&config, &path, None, &log);

    let before = wait_for(&socket, "READY=1", Duration::from_secs(10), &log);
    assert!(before.is_empty(), "sent before READY=1: {before:?}");
    // READY=1 came after the service's first verdict, not on a guess.
    let status = status_json(port);
    let service = &status["services"][0];
    assert_eq!(service["state"], "up", "{status}");
    assert!(service["rounds"].as_u64() >= Some(1), "{status}");

    // No watchdog configured: no WATCHDOG=1.
    let quiet = messages_within(&socket, Duration::from_millis(500));
    assert!(quiet.is_empty(), "unexpected notifications: {quiet:?}");

    daemon.signal("HUP");
    let before = wait_for(&socket, "READY=1", Duration::from_secs(10), &log);
    assert!(
        before.iter().any(|m| m.lines().any(|l| l == "RELOADING=1")
            && m.lines().any(|l| l.starts_with("MONOTONIC_USEC="))),
        "no RELOADING=1 with MONOTONIC_USEC before READY=1: {before:?}"
    );

    daemon.signal("TERM");
    wait_for(&socket, "STOPPING=1", Duration::from_secs(10), &log);
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn watchdog_pings_at_half_the_interval() {
    let dir = scratch();
    let config = config(dir.path(), free_tcp_port());
    let (socket, path) = bind(dir.path());
    let log = dir.path().join("anycastd.log");
    // 200 ms: systemd expects a ping at least every 200 ms; anycastd sends
    // one every 100 ms from the engine's loop.
    let _daemon = start(&config, &path, Some("200000"), &log);

    wait_for(&socket, "WATCHDOG=1", Duration::from_secs(10), &log);
    let pings = messages_within(&socket, Duration::from_secs(1))
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    // About 10 in a second; allow for a slow machine, not for silence.
    assert!(
        (4..=20).contains(&pings),
        "{pings} WATCHDOG=1 in one second at a 100 ms period"
    );
}
