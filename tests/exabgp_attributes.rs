//! End to end: the attributes of each state's profile reach a real BGP
//! peer through ExaBGP. Real ExaBGP runs anycastd through its `process`
//! directive and peers (eBGP) with a real BIRD 2 on loopback addresses;
//! `birdc show route all` is the verdict, and `anycastd drain` / `undrain`
//! on the control socket move the state.
//!
//! Addresses 127.0.117.0 and 127.0.118.0, one pair per test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);
/// anycastd's AS (ExaBGP's local-as); BIRD is AS 65001.
const LOCAL_AS: &str = "65002";

struct Lab {
    /// Kept alive: the service stays healthy throughout.
    _http: HealthServer,
    bird: Bird,
    exabgp: Daemon,
    v4: String,
    v6: String,
    /// Last: dropped after the daemons living in it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// BIRD on 127.0.N.2 (AS 65001), ExaBGP on 127.0.N.1 (AS 65002).
    fn start(n: u8, extra: &str) -> Lab {
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
  local_asn: {LOCAL_AS}
  routes: ["{v4}", "{v6}"]
  exabgp: {{next_hop6: "2001:db8::ff"}}
  attributes:
    up: {{med: 10, communities: ["65000:1"], large_communities: ["65000:1:2"]}}
    draining: {{as_path_prepend: 2}}
  drain_time: 3s
{extra}
control: {{socket: "{socket}", state_file: "{state}"}}
services:
  - name: web
    check_interval: 200ms
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 100ms, timeout: 500ms}}
"#,
                url = http.url("/health"),
                socket = dir.path().join("ctl.sock").display(),
                state = dir.path().join("state.json").display(),
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
  neighbor 127.0.{n}.1 as {LOCAL_AS};
  multihop;
  strict bind yes;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; next hop address 127.0.{n}.2; }};
}}
"#
            ),
        );
        let exabgp = start_exabgp(dir.path(), n, &config);
        Lab {
            _http: http,
            bird,
            exabgp,
            v4,
            v6,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn anycastd_pids(&self) -> Vec<i32> {
        pids_matching(&format!(
            "anycastd -c {}",
            self.path("anycastd.yaml").display()
        ))
    }

    /// `anycastd COMMAND --socket ctl.sock`, bounded; its stdout.
    fn control(&self, command: &str) -> String {
        let mut child = Command::new(anycastd_bin())
            .arg(command)
            .arg("--socket")
            .arg(self.path("ctl.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run anycastd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("anycastd {command} did not return within 10s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "anycastd {command}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// BIRD's view of `prefix`, or `None` when it has no such route.
    fn route(&self, prefix: &str) -> Option<Route> {
        let text = self.bird.birdc(&format!("show route for {prefix} all"));
        if !text
            .lines()
            .any(|line| line.split_whitespace().next() == Some(prefix))
        {
            return None;
        }
        Some(Route::parse(&text))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("exabgp.log")).unwrap_or_default()
    }

    /// Waits (bounded) for `prefix` to satisfy `want`, with BIRD's view
    /// and the log in the failure.
    fn wait_route(&self, prefix: &str, what: &str, want: impl Fn(Option<&Route>) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let route = self.route(prefix);
            if want(route.as_ref()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {prefix}: {what}\nBIRD: {route:#?}\n\
                     log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // ExaBGP stops its helper; make sure no anycastd outlives the test.
        self.exabgp.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.exabgp.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.exabgp.child.kill();
        let _ = self.exabgp.child.wait();
        for pid in self.anycastd_pids() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// The attributes BIRD shows for a route (`show route for P all`).
#[derive(Debug, Default, PartialEq)]
struct Route {
    med: Option<u32>,
    /// `(65000,1)` as BIRD prints them, spaces removed.
    communities: Vec<String>,
    /// `(65000,1,2)`.
    large_communities: Vec<String>,
    as_path: Vec<String>,
}

impl Route {
    fn parse(text: &str) -> Route {
        let mut route = Route::default();
        for line in text.lines() {
            let Some((name, value)) = line.trim().split_once(':') else {
                continue;
            };
            let value = value.trim();
            let tuples = || -> Vec<String> {
                value
                    .replace(' ', "")
                    .split_inclusive(')')
                    .map(str::to_string)
                    .collect()
            };
            match name {
                "BGP.med" => route.med = value.parse().ok(),
                "BGP.community" => route.communities = tuples(),
                "BGP.large_community" => route.large_communities = tuples(),
                "BGP.as_path" => {
                    route.as_path = value.split_whitespace().map(str::to_string).collect();
                }
                _ => {}
            }
        }
        route
    }

    fn local_as_count(&self) -> usize {
        self.as_path.iter().filter(|a| *a == LOCAL_AS).count()
    }

    fn has_community(&self, c: &str) -> bool {
        self.communities.iter().any(|x| x == c)
    }

    /// The Up profile: med 10, (65000,1), (65000,1,2), the local AS once.
    fn is_up(&self) -> bool {
        self.med == Some(10)
            && self.has_community("(65000,1)")
            && !self.has_community("(65535,0)")
            && self.large_communities == ["(65000,1,2)"]
            && self.as_path == [LOCAL_AS]
    }

    /// Draining: GRACEFUL_SHUTDOWN and the local AS 1 + 2 times.
    fn is_draining(&self) -> bool {
        self.has_community("(65535,0)") && self.local_as_count() == 3
    }
}

fn start_exabgp(dir: &Path, n: u8, config: &Path) -> Daemon {
    let conf = dir.join("exabgp.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
process anycastd {{
  run {bin} -c {config} --log-level debug;
  encoder text;
  respawn false;
}}
neighbor 127.0.{n}.2 {{
  router-id 127.0.{n}.1;
  local-address 127.0.{n}.1;
  local-as {LOCAL_AS};
  peer-as 65001;
  family {{ ipv4 unicast; ipv6 unicast; }}
  api {{ processes [ anycastd ]; }}
}}
"#,
            bin = anycastd_bin().display(),
            config = config.display(),
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
fn profiles_reach_bird_through_up_drain_withdraw_and_undrain() {
    let lab = Lab::start(117, "");
    for prefix in [&lab.v4, &lab.v6] {
        lab.wait_route(prefix, "Up: med 10, 65000:1, 65000:1:2", |r| {
            r.is_some_and(Route::is_up)
        });
    }

    let out = lab.control("drain");
    eprintln!("anycastd drain: {out}");
    let drained_at = Instant::now();
    for prefix in [&lab.v4, &lab.v6] {
        lab.wait_route(prefix, "draining: 65535:0, local AS x3", |r| {
            // Re-announced in place: never withdrawn on the way.
            assert!(
                r.is_some(),
                "{prefix} withdrawn at the drain, not re-announced"
            );
            r.is_some_and(Route::is_draining)
        });
    }
    // Re-announced in place: the session never dropped.
    assert!(lab.bird.established("exa"), "the session stays up");

    for prefix in [&lab.v4, &lab.v6] {
        lab.wait_route(prefix, "withdrawn after drain_time", |r| r.is_none());
    }
    let drained = drained_at.elapsed();
    assert!(
        drained >= Duration::from_millis(2500),
        "withdrawn {drained:?} after the drain, before drain_time (3s)"
    );
    assert!(lab.bird.established("exa"), "the session stays up");

    let out = lab.control("undrain");
    eprintln!("anycastd undrain: {out}");
    for prefix in [&lab.v4, &lab.v6] {
        lab.wait_route(prefix, "back with the Up profile", |r| {
            r.is_some_and(Route::is_up)
        });
    }
}

#[test]
fn sigterm_with_graceful_shutdown_drains_then_withdraws() {
    let lab = Lab::start(118, "  graceful_shutdown: true");
    lab.wait_route(&lab.v4, "Up profile", |r| r.is_some_and(Route::is_up));
    let pids = lab.anycastd_pids();
    assert_eq!(pids.len(), 1, "one anycastd under ExaBGP: {pids:?}");
    Command::new("kill")
        .arg("-TERM")
        .arg(pids[0].to_string())
        .status()
        .unwrap();
    let termed = Instant::now();
    for prefix in [&lab.v4, &lab.v6] {
        lab.wait_route(prefix, "draining at SIGTERM", |r| {
            // Re-announced in place: never withdrawn on the way.
            assert!(
                r.is_some(),
                "{prefix} withdrawn at the drain, not re-announced"
            );
            r.is_some_and(Route::is_draining)
        });
    }
    assert_eq!(
        lab.anycastd_pids(),
        pids,
        "anycastd stays for drain_time, announcing the drain"
    );
    for prefix in [&lab.v4, &lab.v6] {
        lab.wait_route(prefix, "withdrawn after drain_time", |r| r.is_none());
    }
    let drained = termed.elapsed();
    assert!(
        drained >= Duration::from_millis(2500),
        "withdrawn {drained:?} after SIGTERM, before drain_time (3s)"
    );
    wait_until(WAIT, "anycastd to exit", || lab.anycastd_pids().is_empty());
    assert!(lab.bird.established("exa"), "the BGP session stays up");
}
