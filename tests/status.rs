//! `GET /status` on the metrics listener and `anycastd status`, against a
//! running daemon (ExaBGP played by the test).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// `up` passes anywhere; `down` checks an address no host has.
fn write_config(file: &Path, port: u16, with_down: bool) {
    std::fs::write(file, config_text(port, with_down, true)).unwrap();
}

fn config_text(port: u16, with_down: bool, metrics: bool) -> String {
    let down = if with_down {
        "  - name: down\n    check_interval: 1s\n    \
         checks: [{kind: assigned_address, name: gone, spec: {ipv4: 192.0.2.254}}]\n"
    } else {
        ""
    };
    format!(
        "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\n\
         services:\n  - name: up\n    check_interval: 1s\n    routes: [198.51.100.1/32]\n    \
         checks: [{{kind: assigned_address, name: lo, spec: {{ipv4: 127.0.0.1}}}}]\n{down}\
         metrics: {{enabled: {metrics}, address: \"127.0.0.1:{port}\"}}\n"
    )
}

fn anycastd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(anycastd_bin())
        .args(args)
        .env_remove("CONFIG_PATH")
        .output()
        .expect("run anycastd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status(port: u16) -> Option<serde_json::Value> {
    let body = http_get(&format!("127.0.0.1:{port}"), "/status")?;
    serde_json::from_str(&body).ok()
}

#[test]
fn status_reports_services_checks_and_routes() {
    let dir = scratch();
    let port = free_tcp_port();
    let config = dir.path().join("anycastd.yaml");
    write_config(&config, port, true);
    let exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    exabgp.expect_line("announce route 198.51.100.1/32 next-hop self", WAIT);

    let mut report = serde_json::Value::Null;
    // The backend announces after the engine decides: wait for both.
    wait_until(
        WAIT,
        "both services decided and the route announced in /status",
        || {
            report = status(port).unwrap_or_default();
            report["services"]
                .as_array()
                .is_some_and(|s| s.len() == 2 && s.iter().all(|s| s["state"] != "unknown"))
                && report["routes"]["announced"]["exabgp"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        },
    );
    let metrics = http_get(&format!("127.0.0.1:{port}"), "/metrics").expect("GET /metrics");
    for (service, check, want) in [("up", "lo", 1.0), ("down", "gone", 0.0)] {
        assert_eq!(
            metric_sample(
                &metrics,
                "anycastd_check_up",
                &[("service", service), ("check", check)]
            ),
            Some(want),
            "anycastd_check_up of {service}/{check}:\n{metrics}"
        );
    }
    let up = &report["services"][0];
    assert_eq!(up["name"], "up", "{report}");
    assert_eq!(up["state"], "up", "{report}");
    assert_eq!(up["checks"][0]["name"], "lo", "{report}");
    assert_eq!(up["checks"][0]["verdict"], "pass", "{report}");
    assert!(up["checks"][0]["duration_ms"].is_f64(), "{report}");
    let down = &report["services"][1];
    assert_eq!(down["state"], "down", "{report}");
    assert_eq!(down["checks"][0]["verdict"], "fail", "{report}");
    assert!(
        down["checks"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("192.0.2.254 is not assigned"),
        "{report}"
    );
    assert_eq!(
        report["routes"]["desired"],
        serde_json::json!({"198.51.100.1/32": "up"})
    );
    assert_eq!(
        report["routes"]["announced"]["exabgp"],
        serde_json::json!(["198.51.100.1/32"])
    );

    // The same through the command, from the config file and from --url.
    let (code, out, err) = anycastd(&["-c", config.to_str().unwrap(), "status"]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("SERVICE") && lines[0].contains("REASON"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("up ") && l.contains(" lo ") && l.contains("pass")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("down ")
            && l.contains("fail")
            && l.contains("192.0.2.254 is not assigned")),
        "{out}"
    );
    assert!(
        lines.iter().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["198.51.100.1/32", "up", "exabgp"]
        ),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["192.0.2.1/32", "no", "-"]),
        "{out}"
    );
    let url = format!("http://127.0.0.1:{port}");
    let (code, by_url, _) = anycastd(&["status", "--url", &url]);
    assert_eq!((code, by_url.lines().next()), (1, lines.first().copied()));

    // Reload without the failing service: every service is up, exit 0.
    write_config(&config, port, false);
    exabgp.daemon.signal("HUP");
    exabgp.expect_line("announce route 192.0.2.1/32 next-hop self", WAIT);
    let (code, out, _) = anycastd(&["status", "--url", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("down"), "{out}");
}

#[test]
fn status_without_a_daemon_or_metrics_exits_two_and_says_why() {
    let port = free_tcp_port();
    let (code, _, err) = anycastd(&["status", "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );

    let (code, _, err) = anycastd(&["status", "--url", "127.0.0.1:9180"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid status URL"), "{err}");

    let dir = scratch();
    let config = dir.path().join("nometrics.yaml");
    std::fs::write(
        &config,
        "announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n  - name: lo\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n",
    )
    .unwrap();
    let (code, _, err) = anycastd(&["-c", config.to_str().unwrap(), "status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("metrics are disabled"), "{err}");

    let (code, _, err) = anycastd(&["-c", "/nonexistent/anycastd.yaml", "status"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the config file"), "{err}");
}

#[test]
fn metrics_listener_serves_metrics_and_json_status() {
    let dir = scratch();
    let port = free_tcp_port();
    let config = dir.path().join("anycastd.yaml");
    write_config(&config, port, false);
    let exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    exabgp.expect_line("announce route 192.0.2.1/32 next-hop self", WAIT);
    let metrics = http_get(&format!("127.0.0.1:{port}"), "/metrics").expect("GET /metrics");
    assert_eq!(
        metric_value(&metrics, "anycastd_service_up{service=\"up\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "anycastd_up",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0),
        "anycastd_up carries the crate's version:\n{metrics}"
    );
    let lo = [("service", "up"), ("check", "lo")];
    assert_eq!(
        metric_sample(&metrics, "anycastd_check_up", &lo),
        Some(1.0),
        "the passing check is up:\n{metrics}"
    );
    let duration = metric_sample(&metrics, "anycastd_check_duration_seconds", &lo);
    assert!(
        duration.is_some_and(|d| d > 0.0 && d < WAIT.as_secs_f64()),
        "the check's last round took some time: {duration:?}\n{metrics}"
    );
    assert!(http_get(&format!("127.0.0.1:{port}"), "/nothing").is_none());

    let head = |method: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "{method} /status HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split("\r\n\r\n")
            .next()
            .unwrap()
            .to_ascii_lowercase()
    };
    let get = head("GET");
    assert!(get.starts_with("http/1.0 200"), "{get}");
    assert!(get.contains("content-type: application/json"), "{get}");
    let post = head("POST");
    assert!(post.starts_with("http/1.0 405"), "{post}");
}

#[test]
fn disabled_metrics_listen_nowhere() {
    let dir = scratch();
    let port = free_tcp_port();
    let config = dir.path().join("anycastd.yaml");
    std::fs::write(&config, config_text(port, false, false)).unwrap();
    let mut exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    // The first verdict is in: anycastd is past the point where it would listen.
    exabgp.expect_line("announce route 192.0.2.1/32 next-hop self", WAIT);
    assert_eq!(
        exabgp.daemon.child.try_wait().unwrap(),
        None,
        "anycastd runs without metrics"
    );
    match std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), WAIT) {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "nothing listens on 127.0.0.1:{port}: {e}"
        ),
        Ok(_) => panic!("something listens on 127.0.0.1:{port} with metrics disabled"),
    }
    assert!(http_get(&format!("127.0.0.1:{port}"), "/metrics").is_none());
}
