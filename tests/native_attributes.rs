//! The native backend carries each route's attributes to a real BIRD 2:
//! the state profiles (`announcer.attributes`) become MULTI_EXIT_DISC,
//! COMMUNITIES, LARGE_COMMUNITY, AS_PATH prepends and (iBGP only)
//! LOCAL_PREF, read back with `birdc show route all`. The service moves
//! Up → Degraded → Up (two HTTP checks under strategy `all`, one of them
//! made to fail), is drained and undrained over the control socket, and
//! has its Up profile changed by a SIGHUP reload: each change reaches BIRD
//! as a re-announcement with the new attributes, without the session
//! resetting.
//!
//! Loopback only: anycastd 127.0.90.1, BIRD eBGP (AS 65002) 127.0.90.2,
//! BIRD iBGP (AS 65001) 127.0.90.3. Packages: bird2 (and root).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const LOCAL: &str = "127.0.90.1";
const EBGP: &str = "127.0.90.2";
const IBGP: &str = "127.0.90.3";
const LOCAL_AS: u32 = 65001;
const REMOTE_AS: u32 = 65002;
const ROUTE: &str = "192.0.2.90/32";

/// A BIRD peering with anycastd, with its loop detection as shipped: on
/// iBGP anycastd sends no prepends (they would put BIRD's own AS in the
/// path and the route would be dropped rather than drained).
fn start_bird(dir: &Path, address: &str, asn: u32) -> Bird {
    let bird_dir = dir.join(address);
    std::fs::create_dir_all(&bird_dir).unwrap();
    Bird::start(
        &bird_dir,
        &format!(
            r#"
log "{log}" all;
router id {address};
protocol device {{}}
protocol bgp anycastd {{
  local {address} as {asn};
  neighbor {LOCAL} as {LOCAL_AS};
  multihop;
  strict bind yes;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"#,
            log = bird_dir.join("bird.log").display(),
        ),
    )
}

/// anycastd's configuration; `up_med` is the Up profile's MED.
fn config_text(dir: &Path, check_a: &str, check_b: &str, up_med: u32) -> String {
    format!(
        r#"
announcer:
  backend: native
  router_id: "{LOCAL}"
  local_address: "{LOCAL}"
  local_asn: {LOCAL_AS}
  drain_time: 3s
  attributes:
    up: {{med: {up_med}, communities: ["65000:1"], large_communities: ["65000:1:2"]}}
    degraded: {{med: 100}}
    draining: {{as_path_prepend: 2}}
  peers:
    - {{name: ebgp, remote_address: "{EBGP}", remote_asn: {REMOTE_AS}, enable_multihop: true}}
    - {{name: ibgp, remote_address: "{IBGP}", remote_asn: {LOCAL_AS}, enable_multihop: true}}
control:
  socket: "{socket}"
  state_file: "{state}"
services:
  - name: web
    check_interval: 200ms
    # A slow answer on a busy machine must not flip the state (a Down
    # service drains by withdrawing at once).
    fall: 3
    strategy: all
    routes: ["{ROUTE}"]
    checks:
      - kind: http_2xx
        spec: {{url: "{check_a}", method: GET, tries: 1, interval: 50ms, timeout: 1s}}
      - kind: http_2xx
        spec: {{url: "{check_b}", method: GET, tries: 1, interval: 50ms, timeout: 1s}}
"#,
        socket = dir.join("ctl.sock").display(),
        state = dir.join("drains.json").display(),
    )
}

/// BIRD's `show route for ROUTE all`, the attribute lines trimmed; empty
/// when BIRD has no such route.
fn route_all(bird: &Bird) -> Vec<String> {
    let text = bird.birdc(&format!("show route for {ROUTE} all"));
    if !text.lines().any(|l| l.starts_with(ROUTE)) {
        return Vec::new();
    }
    text.lines().map(|l| l.trim().to_string()).collect()
}

/// The value of BIRD's `BGP.NAME:` line, if the route has one.
fn attribute(lines: &[String], name: &str) -> Option<String> {
    let key = format!("BGP.{name}:");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&key).map(|v| v.trim().to_string()))
}

/// What BIRD shows of the route: (as_path, med, local_pref, community,
/// large_community), each None when absent; None when there is no route.
type Seen = Option<[Option<String>; 5]>;

fn seen(bird: &Bird) -> Seen {
    let lines = route_all(bird);
    if lines.is_empty() {
        return None;
    }
    Some(
        [
            "as_path",
            "med",
            "local_pref",
            "community",
            "large_community",
        ]
        .map(|name| attribute(&lines, name)),
    )
}

fn want(
    as_path: &str,
    med: Option<&str>,
    local_pref: Option<&str>,
    community: Option<&str>,
    large: Option<&str>,
) -> Seen {
    Some([
        Some(as_path.to_string()),
        med.map(str::to_string),
        local_pref.map(str::to_string),
        community.map(str::to_string),
        large.map(str::to_string),
    ])
}

/// `anycastd drain|undrain` over the control socket; its exit status.
fn control(dir: &Path, config: &Path, command: &str) -> bool {
    let mut child = Command::new(anycastd_bin())
        .arg(command)
        .arg("-c")
        .arg(config)
        .arg("--socket")
        .arg(dir.join("ctl.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run anycastd drain/undrain");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`anycastd {command}` did not finish within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// BIRD's `show protocols anycastd` line (with the time of its last state change).
fn protocol_line(bird: &Bird) -> String {
    bird.birdc("show protocols anycastd")
        .lines()
        .find(|l| l.starts_with("anycastd"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn bird_receives_each_states_attributes() {
    require(&[("bird", "bird2"), ("birdc", "bird2")]);
    let dir = scratch();
    let a = HealthServer::start();
    let b = HealthServer::start();
    let ebgp = start_bird(dir.path(), EBGP, REMOTE_AS);
    let ibgp = start_bird(dir.path(), IBGP, LOCAL_AS);
    let config = dir.path().join("anycastd.yaml");
    let (url_a, url_b) = (a.url("/a"), b.url("/b"));
    std::fs::write(&config, config_text(dir.path(), &url_a, &url_b, 10)).unwrap();
    let log = dir.path().join("anycastd.log");
    let anycastd = spawn_anycastd(&[], &config, "debug", &log);

    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- eBGP BIRD ---\n{}\n--- iBGP BIRD ---\n{}\n\
                 --- anycastd log ---\n{}",
                ebgp.birdc(&format!("show route for {ROUTE} all")),
                ibgp.birdc(&format!("show route for {ROUTE} all")),
                tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Waits until both BIRDs show these; on timeout, says what they showed.
    let both = |what: &str, on_ebgp: Seen, on_ibgp: Seen| {
        let deadline = Instant::now() + WAIT;
        let mut history: Vec<(Seen, Seen)> = Vec::new();
        loop {
            let now = (seen(&ebgp), seen(&ibgp));
            if now == (on_ebgp.clone(), on_ibgp.clone()) {
                return;
            }
            if history.last() != Some(&now) {
                history.push(now);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: want {on_ebgp:?} / {on_ibgp:?}\n\
                 BIRDs showed, in turn: {history:#?}\n--- anycastd log ---\n{}",
                tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    wait("both sessions established", &|| {
        ebgp.established("anycastd") && ibgp.established("anycastd")
    });
    let (ebgp_since, ibgp_since) = (protocol_line(&ebgp), protocol_line(&ibgp));
    let up_med = |med: &str| {
        (
            want(
                "65001",
                Some(med),
                Some("100"),
                Some("(65000,1)"),
                Some("(65000, 1, 2)"),
            ),
            // iBGP: empty AS_PATH, LOCAL_PREF 100 (the default).
            want(
                "",
                Some(med),
                Some("100"),
                Some("(65000,1)"),
                Some("(65000, 1, 2)"),
            ),
        )
    };
    let (e, i) = up_med("10");
    both("Up: med 10, 65000:1, 65000:1:2", e, i);

    // Degraded: one of two checks fails under `all`.
    b.set_healthy(false);
    // Each profile falls back field by field to `up`: the communities stay.
    let (e, i) = up_med("100");
    both("Degraded: med 100", e, i);
    b.set_healthy(true);
    let (e, i) = up_med("10");
    both("Up again: med 10", e, i);

    // Drain over the control socket: GRACEFUL_SHUTDOWN and two prepends,
    // then gone after drain_time.
    assert!(
        control(dir.path(), &config, "drain"),
        "anycastd drain failed"
    );
    let drained_at = Instant::now();
    both(
        "Draining: 65535:0 and AS 65001 three times",
        want(
            "65001 65001 65001",
            Some("10"),
            Some("100"),
            Some("(65000,1) (65535,0)"),
            Some("(65000, 1, 2)"),
        ),
        want(
            "",
            Some("10"),
            Some("100"),
            Some("(65000,1) (65535,0)"),
            Some("(65000, 1, 2)"),
        ),
    );
    both("withdrawn after drain_time", None, None);
    let drained_for = drained_at.elapsed();
    assert!(
        drained_for >= Duration::from_millis(2500),
        "withdrawn after {drained_for:?}, before drain_time (3 s)\n--- anycastd log ---\n{}",
        tail(&log, 40)
    );
    assert!(
        control(dir.path(), &config, "undrain"),
        "anycastd undrain failed"
    );
    let (e, i) = up_med("10");
    both("undrained: back with med 10", e, i);

    // A reload that changes the Up profile re-announces with it.
    std::fs::write(&config, config_text(dir.path(), &url_a, &url_b, 20)).unwrap();
    anycastd.signal("HUP");
    let (e, i) = up_med("20");
    both("reloaded: med 20", e, i);

    // No session was reset along the way: every change was an UPDATE.
    for (bird, since, which) in [(&ebgp, &ebgp_since, "eBGP"), (&ibgp, &ibgp_since, "iBGP")] {
        assert_eq!(
            &protocol_line(bird),
            since,
            "the {which} session reset\n--- anycastd log ---\n{}",
            tail(&log, 40)
        );
    }
    drop(anycastd);
}
