//! The command line as an operator meets it: `validate` and `check` output
//! and exit codes.

mod common;

use std::process::Command;

use common::*;

fn anycastd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(anycastd_bin())
        .args(args)
        .env_remove("CONFIG_PATH")
        .env_remove("LOG_LEVEL")
        .output()
        .expect("run anycastd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LOOPBACK: &str = "announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n  - name: lo\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n";

#[test]
fn validate_prints_a_summary_and_exits_zero() {
    let (code, out, _) = anycastd(&["-c", "examples/quickstart.yaml", "validate"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        "examples/quickstart.yaml: ok: 1 service(s), 1 check(s), 1 route(s), backend exabgp, metrics on 127.0.0.1:9180"
    );
}

#[test]
fn validate_reports_file_path_and_expectation_and_exits_two() {
    let dir = scratch();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        LOOPBACK.replace("check_interval: 1s", "check_interval: 5"),
    )
    .unwrap();
    let (code, _, err) = anycastd(&["-c", file.to_str().unwrap(), "validate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: services[0].check_interval: expected a duration with a unit",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn config_path_comes_from_the_environment() {
    let out = Command::new(anycastd_bin())
        .arg("validate")
        .env("CONFIG_PATH", "examples/quickstart.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn bad_log_level_is_a_usage_error() {
    let (code, _, err) = anycastd(&[
        "--log-level",
        "loud",
        "-c",
        "examples/quickstart.yaml",
        "validate",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown log level `loud`"), "{err}");
}

#[test]
fn check_prints_a_table_and_exit_code_follows_health() {
    let dir = scratch();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, LOOPBACK).unwrap();
    let (code, out, _) = anycastd(&["-c", good.to_str().unwrap(), "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("SERVICE"), "{out}");
    assert!(
        out.contains("assigned_address") && out.contains("pass"),
        "{out}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, LOOPBACK.replace("127.0.0.1}", "192.0.2.254}")).unwrap();
    let (code, out, _) = anycastd(&["-c", bad.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("192.0.2.254 is not assigned to any interface"),
        "{out}"
    );
    assert!(out.contains("down"), "{out}");
}

#[test]
fn check_runs_http_against_a_real_server() {
    let http = HealthServer::start();
    let dir = scratch();
    let file = dir.path().join("http.json");
    std::fs::write(
        &file,
        format!(
            r#"{{"announcer": {{"backend": "exabgp", "routes": ["192.0.2.1/32"]}},
               "services": [{{"name": "web", "check_interval": "1s", "checks": [{{"kind": "http_2xx",
               "spec": {{"url": "{}", "method": "POST", "payload": "ping", "headers": {{"Host": "example.org"}},
               "tries": 2, "interval": "50ms", "timeout": "1s"}}}}]}}]}}"#,
            http.url("/health")
        ),
    )
    .unwrap();
    let (code, out, _) = anycastd(&["-c", file.to_str().unwrap(), "check"]);
    assert_eq!(code, 0, "{out}");
    let last = http.last.lock().unwrap().clone();
    assert_eq!(last, ("POST".into(), "example.org".into(), "ping".into()));
    http.set_healthy(false);
    let (code, out, _) = anycastd(&["-c", file.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("2 tries 50ms apart failed, last: expected status 2xx, got 503"),
        "{out}"
    );
}

#[test]
fn backend_flag_decides_which_keys_are_required() {
    let dir = scratch();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, LOOPBACK).unwrap();
    let (code, _, err) = anycastd(&[
        "-c",
        file.to_str().unwrap(),
        "--backend",
        "bird",
        "validate",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("announcer.bird: required by the bird backend"),
        "{err}"
    );
}

#[test]
fn json_log_format_writes_one_object_per_line_on_stderr() {
    let dir = scratch();
    let file = dir.path().join("c.yaml");
    // A route with host bits set loads with a warning, which `check` logs.
    std::fs::write(&file, LOOPBACK.replace("192.0.2.1/32", "192.0.2.1/24")).unwrap();
    let (code, out, err) = anycastd(&[
        "-c",
        file.to_str().unwrap(),
        "--log-format",
        "json",
        "check",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("host bits"))
        .unwrap_or_else(|| panic!("no host-bits warning in {err}"));
    let object: serde_json::Value = serde_json::from_str(warning).expect("a JSON log line");
    assert_eq!(object["level"], "WARN", "{object}");
    assert!(
        out.starts_with("SERVICE"),
        "the table stays on stdout: {out}"
    );
}

#[test]
fn a_missing_file_says_its_cause_once_and_status_says_what_to_pass() {
    let missing = "/nonexistent/anycastd.yaml";
    let (code, _, err) = anycastd(&["-c", missing, "validate"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let (code, _, err) = anycastd(&["-c", missing, "status"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("pass --config"), "{err}");
    assert!(err.contains("--url http://HOST:PORT/status"), "{err}");
    // Nothing listens on this port: the refusal is said once too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/status");
    let (code, _, err) = anycastd(&["status", "--url", &url]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}
