//! SIGHUP reload against the real binary, with the test playing ExaBGP: a
//! good config is applied without touching unchanged routes; a bad one is
//! rejected and the running config keeps working.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

fn service(name: &str, route: &str, url: &str) -> String {
    format!(
        r#"  - name: {name}
    check_interval: 100ms
    routes: ["{route}"]
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}
"#
    )
}

#[test]
fn sighup_applies_good_config_and_keeps_running_on_bad_one() {
    let dir = scratch();
    let http_a = HealthServer::start();
    let http_b = HealthServer::start();
    let config = dir.path().join("anycastd.yaml");
    let log = dir.path().join("anycastd.log");
    let header = "announcer: {backend: exabgp}\nservices:\n";
    let a = service("a", "10.9.0.1/32", &http_a.url("/"));
    std::fs::write(&config, format!("{header}{a}")).unwrap();

    let exabgp = FakeExabgp::spawn(&config, &[], &log);
    // Nothing before the first verdict, then the route: no withdrawal first.
    assert_eq!(
        exabgp.next_line(WAIT).as_deref(),
        Some("announce route 10.9.0.1/32 next-hop self")
    );

    // Good config: a second service and route. Service a is unchanged, so its
    // route must not be withdrawn or re-announced.
    let b = service("b", "10.9.0.2/32", &http_b.url("/"));
    std::fs::write(&config, format!("{header}{a}{b}")).unwrap();
    exabgp.daemon.signal("HUP");
    exabgp.expect_line("announce route 10.9.0.2/32 next-hop self", WAIT);
    let after = exabgp.lines_within(Duration::from_millis(1500));
    assert!(
        after.iter().all(|l| !l.contains("10.9.0.1/32")),
        "unchanged route was touched: {after:?}"
    );

    // Bad config: rejected, logged, and the old one still runs.
    std::fs::write(
        &config,
        format!("{header}{a}{b}  - name: c\n    chek_interval: 1s\n"),
    )
    .unwrap();
    exabgp.daemon.signal("HUP");
    wait_until(WAIT, "the reload error in the log", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("configuration reload failed")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("services[2].chek_interval"), "{text}");
    http_b.set_healthy(false);
    exabgp.expect_line("withdraw route 10.9.0.2/32 next-hop self", WAIT);
    // Several more failing rounds (100 ms apart): the change is logged once,
    // with the failing check's reason.
    std::thread::sleep(Duration::from_millis(600));
    let text = std::fs::read_to_string(&log).unwrap();
    let down: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("service is down") && l.contains("service=b"))
        .collect();
    assert_eq!(down.len(), 1, "one line per change: {down:?}");
    assert!(
        down[0].contains("503"),
        "the reason names the status: {down:?}"
    );
    http_b.set_healthy(true);
    exabgp.expect_line("announce route 10.9.0.2/32 next-hop self", WAIT);

    // Removing a service from the config withdraws the routes only it protected.
    std::fs::write(&config, format!("{header}{a}")).unwrap();
    exabgp.daemon.signal("HUP");
    exabgp.expect_line("withdraw route 10.9.0.2/32 next-hop self", WAIT);
}

#[test]
fn stdin_eof_makes_anycastd_exit_nonzero() {
    let dir = scratch();
    let config = dir.path().join("anycastd.yaml");
    std::fs::write(
        &config,
        "announcer: {backend: exabgp, routes: [10.9.1.1/32]}\nservices:\n  - name: lo\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n",
    )
    .unwrap();
    let mut exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    exabgp.expect_line("announce route 10.9.1.1/32 next-hop self", WAIT);
    exabgp.close_stdin();
    assert_eq!(exabgp.daemon.wait_exit(WAIT), Some(1));
}

#[test]
fn sigterm_withdraws_waits_for_acks_and_exits_zero() {
    let dir = scratch();
    let config = dir.path().join("anycastd.yaml");
    std::fs::write(
        &config,
        "announcer: {backend: exabgp, routes: [10.9.2.1/32, \"2001:db8:9::1/128\"]}\nservices:\n  - name: lo\n    check_interval: 1s\n    checks: [{kind: assigned_address, spec: {ipv4: 127.0.0.1}}]\n",
    )
    .unwrap();
    let mut exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    exabgp.expect_line("announce route 2001:db8:9::1/128 next-hop self", WAIT);
    exabgp.daemon.signal("TERM");
    exabgp.expect_line("withdraw route 10.9.2.1/32 next-hop self", WAIT);
    exabgp.expect_line("withdraw route 2001:db8:9::1/128 next-hop self", WAIT);
    // Acked at once by the fake, so the exit is quick and clean.
    assert_eq!(exabgp.daemon.wait_exit(Duration::from_secs(2)), Some(0));
}
