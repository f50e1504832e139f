//! End to end: real ExaBGP runs anycastd through its `process` directive and
//! peers with a real BIRD 2 on loopback addresses; a real HTTP server in the
//! test decides the service's health, and BIRD's own table is the verdict.
//!
//! Each test uses its own 127.0.N.0 pair so they can run in parallel.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(30);

struct Lab {
    http: HealthServer,
    bird: Bird,
    exabgp: Daemon,
    v4: String,
    v6: String,
    /// Last: dropped after the daemons living in it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// BIRD on 127.0.N.2 (AS 65001), ExaBGP on 127.0.N.1 (AS 65002).
    fn start(n: u8, respawn: bool) -> Lab {
        require(&[
            ("bird", "bird2"),
            ("birdc", "bird2"),
            ("exabgp", "exabgp (pip)"),
        ]);
        let dir = scratch();
        let http = HealthServer::start();
        let v4 = format!("192.0.2.{n}/32");
        let v6 = format!("2001:db8::{n}/128");
        let config = dir.path().join("anycastd.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
announcer:
  backend: exabgp
  routes: ["{v4}", "{v6}"]
  exabgp: {{next_hop6: "2001:db8::ff"}}
services:
  - name: web
    check_interval: 200ms
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 100ms, timeout: 500ms}}
"#,
                url = http.url("/health")
            ),
        )
        .unwrap();
        let bird = Bird::start(
            dir.path(),
            &format!(
                r#"
router id 127.0.{n}.2;
protocol device {{}}
protocol bgp exa {{
  local 127.0.{n}.2 as 65001;
  neighbor 127.0.{n}.1 as 65002;
  multihop;
  strict bind yes;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; next hop address 127.0.{n}.2; }};
}}
"#
            ),
        );
        let exabgp = start_exabgp(dir.path(), n, &config, respawn);
        Lab {
            http,
            bird,
            exabgp,
            v4,
            v6,
            dir,
        }
    }

    fn config_path(&self) -> String {
        self.dir.path().join("anycastd.yaml").display().to_string()
    }

    fn anycastd_pids(&self) -> Vec<i32> {
        pids_matching(&format!("anycastd -c {}", self.config_path()))
    }

    fn routes_present(&self) -> (bool, bool) {
        (self.bird.has_route(&self.v4), self.bird.has_route(&self.v6))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // ExaBGP stops its helper; make sure no anycastd outlives the test.
        self.exabgp.signal("TERM");
        let _ = self.exabgp.child.wait();
        for pid in self.anycastd_pids() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn start_exabgp(dir: &Path, n: u8, config: &Path, respawn: bool) -> Daemon {
    let conf = dir.join("exabgp.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
process anycastd {{
  run {bin} -c {config} --log-level info;
  encoder text;
  {respawn}
}}
neighbor 127.0.{n}.2 {{
  router-id 127.0.{n}.1;
  local-address 127.0.{n}.1;
  local-as 65002;
  peer-as 65001;
  family {{ ipv4 unicast; ipv6 unicast; }}
  api {{ processes [ anycastd ]; }}
}}
"#,
            bin = anycastd_bin().display(),
            config = config.display(),
            respawn = if respawn { "" } else { "respawn false;" },
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("exabgp.log")).unwrap();
    let child = Command::new("exabgp")
        .arg("server")
        .arg(&conf)
        .env("exabgp_daemon_user", "root")
        .env("exabgp_log_destination", "stdout")
        .env("exabgp_tcp_bind", "")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start exabgp");
    Daemon {
        child,
        name: "exabgp",
    }
}

#[test]
fn routes_follow_http_health() {
    let lab = Lab::start(11, true);
    wait_until(WAIT, "both routes in BIRD while healthy", || {
        lab.routes_present() == (true, true)
    });
    lab.http.set_healthy(false);
    wait_until(WAIT, "both routes gone while unhealthy", || {
        lab.routes_present() == (false, false)
    });
    assert!(
        lab.bird.established("exa"),
        "withdrawal must not drop the session"
    );
    lab.http.set_healthy(true);
    wait_until(WAIT, "both routes back after recovery", || {
        lab.routes_present() == (true, true)
    });
}

#[test]
fn respawned_helper_corrects_what_the_killed_one_left() {
    let lab = Lab::start(12, true);
    wait_until(WAIT, "routes in BIRD", || {
        lab.routes_present() == (true, true)
    });
    let old = lab.anycastd_pids();
    assert_eq!(old.len(), 1, "one anycastd under ExaBGP: {old:?}");
    // The service fails while no helper is watching; ExaBGP keeps the dead
    // helper's routes, so only the respawned helper can withdraw them.
    lab.http.set_healthy(false);
    Command::new("kill")
        .arg("-9")
        .arg(old[0].to_string())
        .status()
        .unwrap();
    wait_until(WAIT, "ExaBGP to respawn anycastd", || {
        let now = lab.anycastd_pids();
        now.len() == 1 && now != old
    });
    wait_until(WAIT, "stale routes withdrawn by the new helper", || {
        lab.routes_present() == (false, false)
    });
    assert!(
        lab.bird.established("exa"),
        "withdrawn by the helper, not by a session reset"
    );
    lab.http.set_healthy(true);
    wait_until(WAIT, "routes back", || lab.routes_present() == (true, true));
}

#[test]
fn sigterm_withdraws_routes_and_exits_cleanly() {
    let lab = Lab::start(13, false);
    wait_until(WAIT, "routes in BIRD", || {
        lab.routes_present() == (true, true)
    });
    let pids = lab.anycastd_pids();
    assert_eq!(pids.len(), 1);
    Command::new("kill")
        .arg("-TERM")
        .arg(pids[0].to_string())
        .status()
        .unwrap();
    wait_until(WAIT, "routes withdrawn after SIGTERM", || {
        lab.routes_present() == (false, false)
    });
    wait_until(WAIT, "anycastd to exit", || lab.anycastd_pids().is_empty());
    assert!(lab.bird.established("exa"), "the BGP session stays up");
    let log = std::fs::read_to_string(lab.dir.path().join("exabgp.log")).unwrap();
    assert!(
        log.contains("withdrew all routes from ExaBGP"),
        "anycastd logs the withdrawal before exiting:\n{log}"
    );
}

/// The lines `birdc show route` prints for `prefix`, with the time BIRD
/// took the route: a withdrawal and re-announcement changes it.
fn route_lines(bird: &Bird, prefix: &str) -> Vec<String> {
    bird.birdc("show route")
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn respawned_helper_does_not_flap_routes_in_bird() {
    let lab = Lab::start(14, true);
    wait_until(WAIT, "routes in BIRD", || {
        lab.routes_present() == (true, true)
    });
    // BIRD prints the route's time to the second: let it tick past.
    std::thread::sleep(Duration::from_millis(1100));
    let before = (
        route_lines(&lab.bird, &lab.v4),
        route_lines(&lab.bird, &lab.v6),
    );
    let old = lab.anycastd_pids();
    assert_eq!(old.len(), 1, "one anycastd under ExaBGP: {old:?}");

    // Poll BIRD every 20 ms through the kill, the respawn and the new
    // helper's first verdicts (200 ms interval).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let samples = std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                samples.push(lab.routes_present());
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        Command::new("kill")
            .arg("-9")
            .arg(old[0].to_string())
            .status()
            .unwrap();
        let killed = std::time::Instant::now();
        wait_until(WAIT, "ExaBGP to respawn anycastd", || {
            let now = lab.anycastd_pids();
            now.len() == 1 && now != old
        });
        eprintln!("helper respawned {:?} after the kill", killed.elapsed());
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        poller.join().unwrap()
    });
    eprintln!("{} samples of BIRD's table", samples.len());
    assert!(samples.len() > 20, "too few samples: {}", samples.len());
    let gaps = samples.iter().filter(|s| **s != (true, true)).count();
    assert_eq!(gaps, 0, "routes missing from BIRD in {gaps} samples");
    let after = (
        route_lines(&lab.bird, &lab.v4),
        route_lines(&lab.bird, &lab.v6),
    );
    assert_eq!(
        before, after,
        "BIRD's routes were replaced: a flap upstream"
    );
    assert!(lab.bird.established("exa"), "the session stayed up");
}
