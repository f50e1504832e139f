//! Operator control against the real binary on the exabgp backend, with
//! the test playing ExaBGP: drains over the control socket and by
//! maintenance file (GRACEFUL_SHUTDOWN first, the withdrawal after
//! `drain_time`), a drain kept across a restart, `check-now`, reload diffs
//! and the `max_withdraw` valve, and SIGTERM with `graceful_shutdown`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// The config: `web` (HTTP, route R_WEB) and `lo` (always up, route
/// R_LO), a control socket and a state file in `dir`; `extra` goes under
/// `announcer:`.
fn config(dir: &Path, http: &HealthServer, interval: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"announcer:
  backend: exabgp
  drain_time: 1s
{extra}control:
  socket: {dir}/ctl.sock
  state_file: {dir}/drains.json
services:
  - name: web
    check_interval: {interval}
    routes: ["{R_WEB}"]
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}
  - name: lo
    check_interval: 200ms
    routes: ["{R_LO}"]
    checks: [{{kind: assigned_address, spec: {{ipv4: 127.0.0.1}}}}]
"#,
        dir = dir.display(),
        url = http.url("/"),
    );
    let path = dir.join("anycastd.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

const R_WEB: &str = "198.51.100.1/32";
const R_LO: &str = "198.51.100.2/32";

/// `anycastd --socket DIR/ctl.sock ARGS…`: exit code, stdout, stderr.
fn ctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(anycastd_bin())
        .arg("--socket")
        .arg(dir.join("ctl.sock"))
        .args(args)
        .output()
        .expect("run anycastd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a line starting with `start` (and containing `with`, if
/// given); returns it and when it came. Other lines are skipped.
fn wait_line(exabgp: &FakeExabgp, start: &str, with: Option<&str>) -> (String, Instant) {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match exabgp.next_line(left) {
            Some(line) if line.starts_with(start) && with.is_none_or(|w| line.contains(w)) => {
                return (line, Instant::now());
            }
            Some(line) => seen.push(line),
            None => break,
        }
    }
    panic!(
        "no line `{start}…{}` within {WAIT:?}; got {seen:?}",
        with.unwrap_or("")
    );
}

fn announce(route: &str) -> String {
    format!("announce route {route} ")
}

fn withdraw(route: &str) -> String {
    format!("withdraw route {route} ")
}

fn start(dir: &Path, config: &Path) -> FakeExabgp {
    let exabgp = FakeExabgp::spawn(config, &[], &dir.join("anycastd.log"));
    wait_until(WAIT, "the control socket", || dir.join("ctl.sock").exists());
    exabgp
}

#[test]
fn drain_and_undrain_over_the_socket_announce_gshut_then_withdraw() {
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "200ms", "");
    let exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);

    let (code, out, err) = ctl(dir.path(), &["drain", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web: draining"), "{out}");
    let drained_at = Instant::now();
    // Announced again with GRACEFUL_SHUTDOWN, then withdrawn after drain_time.
    let (line, _) = wait_line(&exabgp, &announce(R_WEB), Some("65535:0"));
    assert!(!line.contains(R_LO), "{line}");
    let (_, withdrawn_at) = wait_line(&exabgp, &withdraw(R_WEB), None);
    let after = withdrawn_at - drained_at;
    assert!(
        after >= Duration::from_millis(900),
        "withdrawn {after:?} after the drain, before drain_time"
    );
    println!("drain: withdrawn {after:?} after the command (drain_time 1s)");

    // Names are checked; a drain is kept in the state file.
    let (code, _, err) = ctl(dir.path(), &["drain", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such service: nosuch"), "{err}");
    let saved = std::fs::read_to_string(dir.path().join("drains.json")).unwrap();
    assert!(saved.contains("\"web\""), "{saved}");

    let (code, out, err) = ctl(dir.path(), &["undrain", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web: up"), "{out}");
    let (line, _) = wait_line(&exabgp, &announce(R_WEB), None);
    assert!(!line.contains("65535:0"), "{line}");
}

#[test]
fn a_drain_set_over_the_socket_survives_a_restart() {
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "200ms", "");
    let mut exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);
    let (code, out, err) = ctl(dir.path(), &["drain", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_line(&exabgp, &withdraw(R_WEB), None);
    exabgp.daemon.signal("TERM");
    assert_eq!(exabgp.daemon.wait_exit(WAIT), Some(0));

    // Started again: lo is announced, web never is.
    let exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_LO), None);
    let lines = exabgp.lines_within(Duration::from_millis(1500));
    assert!(
        !lines.iter().any(|l| l.starts_with(&announce(R_WEB))),
        "a drained service was announced after a restart: {lines:?}"
    );
    let (code, out, err) = ctl(dir.path(), &["undrain", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_line(&exabgp, &announce(R_WEB), None);
}

#[test]
fn a_maintenance_file_drains_the_whole_node() {
    let dir = scratch();
    let http = HealthServer::start();
    let file = dir.path().join("maintenance");
    let extra = format!("  maintenance_file: {}\n", file.display());
    let config = config(dir.path(), &http, "200ms", &extra);
    let exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);
    wait_line(&exabgp, &announce(R_LO), None);

    std::fs::write(&file, "").unwrap();
    let gshut: Vec<String> = (0..2)
        .map(|_| wait_line(&exabgp, "announce route ", Some("65535:0")).0)
        .collect();
    assert!(gshut.iter().any(|l| l.contains(R_WEB)), "{gshut:?}");
    assert!(gshut.iter().any(|l| l.contains(R_LO)), "{gshut:?}");
    let withdrawn: Vec<String> = (0..2)
        .map(|_| wait_line(&exabgp, "withdraw route ", None).0)
        .collect();
    assert!(withdrawn.iter().any(|l| l.contains(R_WEB)), "{withdrawn:?}");
    assert!(withdrawn.iter().any(|l| l.contains(R_LO)), "{withdrawn:?}");
    // `undrain` does not lift a file's drain.
    let (code, out, err) = ctl(dir.path(), &["undrain"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web: drained (drained by file)"), "{out}");

    std::fs::remove_file(&file).unwrap();
    let back: Vec<String> = (0..2)
        .map(|_| wait_line(&exabgp, "announce route ", None).0)
        .collect();
    assert!(back.iter().all(|l| !l.contains("65535:0")), "{back:?}");
}

#[test]
fn check_now_withdraws_a_failing_service_at_once() {
    let dir = scratch();
    let http = HealthServer::start();
    // Rounds every 10 s: only check-now can be quick.
    let config = config(dir.path(), &http, "10s", "");
    let exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);
    http.set_healthy(false);
    let asked = Instant::now();
    let (code, out, err) = ctl(dir.path(), &["check-now", "web"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, withdrawn_at) = wait_line(&exabgp, &withdraw(R_WEB), None);
    let took = withdrawn_at - asked;
    println!("check-now: withdrawn {took:?} after the command");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn reload_shows_its_diff_and_max_withdraw_refuses_large_withdrawals() {
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "200ms", "  max_withdraw: 0\n");
    let exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);
    wait_line(&exabgp, &announce(R_LO), None);

    // A config without the web service: the diff says what would go.
    let original = std::fs::read_to_string(&config).unwrap();
    let web_start = original.find("  - name: web").unwrap();
    let lo_start = original.find("  - name: lo").unwrap();
    let smaller = format!("{}{}", &original[..web_start], &original[lo_start..]);
    let other = dir.path().join("smaller.yaml");
    std::fs::write(&other, &smaller).unwrap();
    let (code, out, err) = ctl(dir.path(), &["routes", "--diff", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("withdraw   {R_WEB}")), "{out}");
    assert!(!out.contains(R_LO), "{out}");

    // Loading it is refused: max_withdraw 0.
    std::fs::write(&config, &smaller).unwrap();
    let (code, out, err) = ctl(dir.path(), &["reload"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("reload refused"), "{err}");
    assert!(err.contains(R_WEB), "{err}");
    exabgp.daemon.signal("HUP");
    let lines = exabgp.lines_within(Duration::from_millis(800));
    assert!(
        !lines.iter().any(|l| l.starts_with("withdraw")),
        "a refused reload withdrew: {lines:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("anycastd.log")).unwrap();
    assert!(log.contains("reload refused"), "{log}");

    let (code, out, err) = ctl(dir.path(), &["reload", "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_line(&exabgp, &withdraw(R_WEB), None);
}

#[test]
fn sigterm_with_graceful_shutdown_announces_gshut_then_withdraws() {
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "200ms", "  graceful_shutdown: true\n");
    let mut exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);
    wait_line(&exabgp, &announce(R_LO), None);
    let signalled = Instant::now();
    exabgp.daemon.signal("TERM");
    wait_line(&exabgp, &announce(R_WEB), Some("65535:0"));
    let (_, withdrawn_at) = wait_line(&exabgp, "withdraw route ", None);
    let after = withdrawn_at - signalled;
    assert!(
        after >= Duration::from_millis(900),
        "withdrawn after {after:?}"
    );
    assert_eq!(exabgp.daemon.wait_exit(WAIT), Some(0));
    println!("graceful shutdown: first withdrawal {after:?} after SIGTERM (drain_time 1s)");
}

#[test]
fn an_unreadable_drain_state_file_keeps_the_node_drained() {
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "200ms", "");
    std::fs::write(dir.path().join("drains.json"), "{not json").unwrap();
    let exabgp = start(dir.path(), &config);
    let lines = exabgp.lines_within(Duration::from_millis(1500));
    assert!(
        !lines.iter().any(|l| l.starts_with("announce")),
        "announced without knowing the operator's drains: {lines:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("anycastd.log")).unwrap();
    assert!(log.contains("not a drain state file"), "{log}");
    let (code, out, err) = ctl(dir.path(), &["undrain"]);
    assert_eq!(code, 0, "{out}{err}");
    wait_line(&exabgp, &announce(R_WEB), None);
    let saved = std::fs::read_to_string(dir.path().join("drains.json")).unwrap();
    assert!(saved.contains("\"node\": false"), "{saved}");
}

#[test]
fn announce_delay_holds_a_recovered_service_and_the_socket_is_owner_and_group_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "200ms", "");
    // web: back from down only after 1 s up.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "    check_interval: 200ms\n    routes: [\"198.51.100.1/32\"]",
        "    check_interval: 200ms\n    announce_delay: 1s\n    routes: [\"198.51.100.1/32\"]",
    );
    assert!(text.contains("announce_delay"), "{text}");
    std::fs::write(&config, text).unwrap();
    let exabgp = start(dir.path(), &config);
    let mode = std::fs::metadata(dir.path().join("ctl.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "control socket mode {mode:o}");
    // Not applied at start.
    wait_line(&exabgp, &announce(R_WEB), None);
    http.set_healthy(false);
    wait_line(&exabgp, &withdraw(R_WEB), None);
    http.set_healthy(true);
    let healthy_at = Instant::now();
    let (_, announced_at) = wait_line(&exabgp, &announce(R_WEB), None);
    let held = announced_at - healthy_at;
    assert!(
        held >= Duration::from_millis(900),
        "announced {held:?} after recovering, before announce_delay"
    );
    println!("announce_delay 1s: announced {held:?} after the service recovered");
}

/// The first request the server sees after `since` requests, and when
/// (polled every 2 ms, for at most WAIT).
fn next_request(http: &HealthServer, since: u64) -> Instant {
    let deadline = Instant::now() + WAIT;
    while http.requests.load(std::sync::atomic::Ordering::SeqCst) <= since {
        assert!(Instant::now() < deadline, "no request within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    Instant::now()
}

/// `fast_interval` against the running daemon: with `check_interval: 2s`
/// and `fall: 3` / `rise: 3`, the second and third rounds of a fall (and
/// of a rise) come `fast_interval` (100 ms) apart instead of 2 s, so the
/// route goes ~0.2 s after the first failing check, not 4 s.
#[test]
fn fast_interval_speeds_up_rise_and_fall() {
    let dir = scratch();
    let http = HealthServer::start();
    let config = config(dir.path(), &http, "2s", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "    check_interval: 2s\n    routes: [\"198.51.100.1/32\"]",
        "    check_interval: 2s\n    fast_interval: 100ms\n    rise: 3\n    fall: 3\n    routes: [\"198.51.100.1/32\"]",
    );
    assert!(text.contains("fast_interval"), "{text}");
    std::fs::write(&config, text).unwrap();
    let exabgp = start(dir.path(), &config);
    wait_line(&exabgp, &announce(R_WEB), None);

    let seen = http.requests.load(std::sync::atomic::Ordering::SeqCst);
    http.set_healthy(false);
    let first_failure = next_request(&http, seen);
    let (_, withdrawn_at) = wait_line(&exabgp, &withdraw(R_WEB), None);
    let fall = withdrawn_at - first_failure;

    let seen = http.requests.load(std::sync::atomic::Ordering::SeqCst);
    http.set_healthy(true);
    let first_success = next_request(&http, seen);
    let (_, announced_at) = wait_line(&exabgp, &announce(R_WEB), None);
    let rise = announced_at - first_success;
    println!("fast_interval 100ms, check_interval 2s: fall 3 took {fall:?}, rise 3 took {rise:?}");
    // Two more rounds at 100 ms: ~0.2 s; at check_interval it would be 4 s.
    for (what, took) in [("fall", fall), ("rise", rise)] {
        assert!(
            took >= Duration::from_millis(150) && took <= Duration::from_millis(1500),
            "{what} of 3 rounds took {took:?} after its first round"
        );
    }
}
