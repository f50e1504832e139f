//! The bird backend against real BIRD 2: anycastd drives BIRD "A" through
//! its include file(s) and control socket; A exports over BGP to BIRD "B",
//! and B's table is the verdict. Each test uses its own 127.0.N.0 addresses.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Static,
    PrefixSet,
}

struct Lab {
    n: u8,
    format: Format,
    http: HealthServer,
    a: Option<Bird>,
    b: Bird,
    v4: String,
    v6: String,
    /// prefix_set: the sets' exact names (`variable_v4`, `variable_v6`)
    /// instead of the defaults.
    sets: Option<(&'static str, &'static str)>,
    /// Last: dropped after the daemons living in it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// B (the peer) is started; A only when `start_a`.
    fn new(n: u8, format: Format, start_a: bool) -> Lab {
        Lab::build(n, format, start_a, None)
    }

    fn build(
        n: u8,
        format: Format,
        start_a: bool,
        sets: Option<(&'static str, &'static str)>,
    ) -> Lab {
        require(&[("bird", "bird2"), ("birdc", "bird2")]);
        let dir = scratch();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let b = Bird::start(
            &dir.path().join("b"),
            &format!(
                r#"
router id 127.0.{n}.2;
protocol device {{}}
protocol bgp a {{
  local 127.0.{n}.2 as 65002;
  neighbor 127.0.{n}.1 as 65001;
  multihop;
  strict bind yes;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; next hop address 2001:db8:ffff::2; }};
}}
"#
            ),
        );
        let mut lab = Lab {
            n,
            format,
            http: HealthServer::start(),
            a: None,
            b,
            v4: format!("192.0.2.{n}/32"),
            v6: format!("2001:db8::{n}/128"),
            sets,
            dir,
        };
        // What an operator's ExecStartPre does: valid (empty) files before BIRD starts.
        let config = lab.anycastd_config("1s");
        let out = Command::new(anycastd_bin())
            .arg("-c")
            .arg(&config)
            .arg("bird-flush")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "bird-flush: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if start_a {
            lab.start_a();
        }
        lab
    }

    fn a_dir(&self) -> PathBuf {
        self.dir.path().join("a")
    }

    fn a_config(&self) -> String {
        let n = self.n;
        let dir = self.a_dir();
        let dir = dir.display();
        let (top, statics, filter4, filter6) = match self.format {
            Format::Static => (
                String::new(),
                format!(
                    "protocol static anycastd4 {{\n  ipv4;\ninclude \"{dir}/anycastd.conf\";\n}}\n\
                     protocol static anycastd6 {{\n  ipv6;\ninclude \"{dir}/anycastd6.conf\";\n}}\n"
                ),
                "proto = \"anycastd4\"".to_string(),
                "proto = \"anycastd6\"".to_string(),
            ),
            // anycast-healthchecker's layout: every VIP is always in the RIB,
            // and a prefix set in the export filter decides what leaves.
            Format::PrefixSet => (
                format!("include \"{dir}/anycastd.conf\";\n"),
                format!(
                    "protocol static vips4 {{ ipv4; route {} blackhole; }}\n\
                     protocol static vips6 {{ ipv6; route {} blackhole; }}\n",
                    self.v4, self.v6
                ),
                format!("net ~ {}", self.set_names().0),
                format!("net ~ {}", self.set_names().1),
            ),
        };
        format!(
            r#"
router id 127.0.{n}.1;
{top}protocol device {{}}
{statics}
protocol bgp b {{
  local 127.0.{n}.1 as 65001;
  neighbor 127.0.{n}.2 as 65002;
  multihop;
  strict bind yes;
  ipv4 {{ import none; export where {filter4}; }};
  ipv6 {{ import none; export where {filter6}; next hop address 2001:db8:ffff::1; }};
}}
"#
        )
    }

    fn set_names(&self) -> (&str, &str) {
        self.sets
            .unwrap_or(("ANYCASTD_PREFIXES_V4", "ANYCASTD_PREFIXES_V6"))
    }

    fn start_a(&mut self) {
        let config = self.a_config();
        self.a = Some(Bird::start(&self.a_dir(), &config));
    }

    fn socket(&self) -> PathBuf {
        self.a_dir().join("bird.ctl")
    }

    fn anycastd_config(&self, interval: &str) -> PathBuf {
        let path = self.dir.path().join("anycastd.yaml");
        let format = match self.format {
            Format::Static => format!(
                "format: static, include_file6: \"{}\"",
                self.a_dir().join("anycastd6.conf").display()
            ),
            Format::PrefixSet => match self.sets {
                Some((v4, v6)) => {
                    format!("format: prefix_set, variable_v4: {v4}, variable_v6: {v6}")
                }
                None => "format: prefix_set".into(),
            },
        };
        std::fs::write(
            &path,
            format!(
                r#"
announcer:
  backend: bird
  routes: ["{v4}", "{v6}"]
  bird: {{include_file: "{file}", socket: "{socket}", {format}, reconfigure_timeout: 5s}}
services:
  - name: web
    check_interval: {interval}
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}
metrics: {{enabled: true, address: "{metrics}"}}
"#,
                v4 = self.v4,
                v6 = self.v6,
                file = self.a_dir().join("anycastd.conf").display(),
                socket = self.socket().display(),
                url = self.http.url("/"),
                metrics = self.metrics_address(),
            ),
        )
        .unwrap();
        path
    }

    fn anycastd(&self, interval: &str) -> Daemon {
        self.anycastd_with(interval, "")
    }

    /// Like [`Lab::anycastd`], with `bird_extra` added to `announcer.bird`
    /// (e.g. `, route_kind: unreachable`).
    fn anycastd_with(&self, interval: &str, bird_extra: &str) -> Daemon {
        let config = self.anycastd_config(interval);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "reconfigure_timeout: 5s",
            &format!("reconfigure_timeout: 5s{bird_extra}"),
        );
        std::fs::write(&config, text).unwrap();
        spawn_anycastd(&[], &config, "debug", &self.dir.path().join("anycastd.log"))
    }

    /// anycastd's metrics listener: this lab's own address, a port no
    /// other lab uses.
    fn metrics_address(&self) -> String {
        format!("127.0.{}.1:{}", self.n, 19000 + u16::from(self.n))
    }

    fn scrape(&self) -> String {
        http_get(&self.metrics_address(), "/metrics").unwrap_or_else(|| {
            panic!(
                "GET /metrics on {} failed\n{}",
                self.metrics_address(),
                self.log()
            )
        })
    }

    /// One sample of anycastd's metrics (`None` while not exported).
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric_sample(&self.scrape(), name, labels)
    }

    /// Waits until BIRD has accepted a configuration announcing `count`
    /// routes: the reconfigure metrics of that request are then recorded.
    fn wait_announced(&self, count: usize) {
        wait_until(
            WAIT,
            &format!("anycastd_routes_announced{{backend=\"bird\"}} == {count}"),
            || {
                self.metric("anycastd_routes_announced", &[("backend", "bird")])
                    == Some(count as f64)
            },
        );
    }

    fn reconfigures(&self, result: &str) -> f64 {
        self.metric("anycastd_bird_reconfigures_total", &[("result", result)])
            .unwrap_or(0.0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("anycastd.log")).unwrap_or_default()
    }

    fn at_peer(&self) -> (bool, bool) {
        (self.b.has_route(&self.v4), self.b.has_route(&self.v6))
    }

    fn wait_peer(&self, want: (bool, bool), what: &str) {
        wait_until(WAIT, what, || self.at_peer() == want);
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn follows_health(n: u8, format: Format) {
    let lab = Lab::new(n, format, true);
    let _anycastd = lab.anycastd("200ms");
    lab.wait_peer((true, true), "routes at the peer while healthy");
    lab.wait_announced(2);
    let metrics = lab.scrape();
    let accepted = lab.reconfigures("ok");
    assert!(accepted >= 1.0, "a reconfigure was accepted:\n{metrics}");
    let last = metric_sample(
        &metrics,
        "anycastd_bird_last_success_timestamp_seconds",
        &[],
    );
    assert!(
        last.is_some_and(|t| t > 0.0 && (unix_now() - t).abs() < 60.0),
        "the last success is a recent Unix time: {last:?}\n{metrics}"
    );
    let timed = metric_sample(
        &metrics,
        "anycastd_bird_reconfigure_duration_seconds_count",
        &[],
    );
    assert!(
        timed.is_some_and(|c| c >= accepted),
        "every reconfigure is timed: {timed:?}\n{metrics}"
    );
    for kind in ["refused", "timeout", "unreachable", "write"] {
        assert_eq!(
            metric_sample(
                &metrics,
                "anycastd_backend_errors_total",
                &[("backend", "bird"), ("kind", kind)]
            ),
            Some(0.0),
            "no {kind} error, and the counter is exported at zero:\n{metrics}"
        );
    }
    assert_eq!(lab.reconfigures("error"), 0.0, "{metrics}");
    lab.http.set_healthy(false);
    lab.wait_peer((false, false), "routes gone while unhealthy");
    lab.wait_announced(0);
    assert!(
        lab.reconfigures("ok") > accepted,
        "the withdrawal is an accepted reconfigure:\n{}",
        lab.scrape()
    );
    assert!(
        lab.metric("anycastd_bird_last_success_timestamp_seconds", &[])
            .is_some_and(|t| t >= last.unwrap_or_default()),
        "the last success moves forward"
    );
    assert!(lab.b.established("a"), "the session stays up");
    lab.http.set_healthy(true);
    lab.wait_peer((true, true), "routes back after recovery");
}

#[test]
fn static_format_routes_follow_health() {
    follows_health(21, Format::Static);
}

#[test]
fn prefix_set_format_routes_follow_health() {
    follows_health(22, Format::PrefixSet);
}

/// anycast-healthchecker's set names, so its users' filters stay as they are.
#[test]
fn prefix_sets_named_exactly_drive_the_operators_filter() {
    let sets = ("ACAST_PS_ADVERTISE", "ACAST6_PS_ADVERTISE");
    let lab = Lab::build(20, Format::PrefixSet, true, Some(sets));
    let _anycastd = lab.anycastd("200ms");
    lab.wait_peer((true, true), "routes at the peer while healthy");
    let file = std::fs::read_to_string(lab.a_dir().join("anycastd.conf")).unwrap();
    for name in [sets.0, sets.1] {
        assert!(file.contains(&format!("define {name} = [")), "{file}");
    }
    lab.http.set_healthy(false);
    lab.wait_peer((false, false), "routes gone while unhealthy");
    lab.http.set_healthy(true);
    lab.wait_peer((true, true), "routes back after recovery");
}

#[test]
fn bird_down_at_start_then_converges() {
    let mut lab = Lab::new(23, Format::Static, false);
    let mut anycastd = lab.anycastd("200ms");
    wait_until(WAIT, "a logged failure to reach BIRD", || {
        lab.log().contains("cannot reach BIRD")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        anycastd.child.try_wait().unwrap(),
        None,
        "anycastd keeps running"
    );
    lab.start_a();
    lab.wait_peer((true, true), "routes at the peer once BIRD runs");
    // Once BIRD is reachable anycastd reconfigures it (not only BIRD's own
    // reading of the file at start): a health change still reaches the peer.
    lab.http.set_healthy(false);
    lab.wait_peer((false, false), "withdrawal after BIRD came up");
    let log = lab.log();
    let errors = log.lines().filter(|l| l.contains("ERROR")).count();
    let retries = log.matches("BIRD update failed").count();
    assert_eq!(
        errors, 1,
        "a repeating fault is logged once, retries at debug:\n{log}"
    );
    assert!(retries >= 2, "it was retried:\n{log}");
}

#[test]
fn refused_configure_restores_the_file_and_keeps_running() {
    let lab = Lab::new(24, Format::Static, true);
    let mut anycastd = lab.anycastd("200ms");
    lab.wait_peer((true, true), "routes at the peer");
    lab.wait_announced(2);
    let accepted = lab.reconfigures("ok");
    let last_success = lab.metric("anycastd_bird_last_success_timestamp_seconds", &[]);
    assert!(last_success.is_some(), "{}", lab.scrape());
    let include = lab.a_dir().join("anycastd.conf");
    let good = std::fs::read_to_string(&include).unwrap();
    // Break BIRD's main config elsewhere: every `configure` now fails.
    let main = lab.a_dir().join("bird.conf");
    let original = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, format!("{original}\nthis is not bird syntax;\n")).unwrap();
    lab.http.set_healthy(false);
    wait_until(WAIT, "BIRD's refusal in the log", || {
        lab.log().contains("BIRD refused the configuration (8002)")
    });
    let log = lab.log();
    assert!(
        log.contains("bird.conf:"),
        "BIRD's own file:line message is reported:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&include).unwrap(),
        good,
        "previous file restored"
    );
    assert!(
        lab.at_peer().0,
        "BIRD keeps its old config, so the route stays"
    );
    assert_eq!(
        anycastd.child.try_wait().unwrap(),
        None,
        "anycastd keeps running"
    );
    let metrics = lab.scrape();
    assert!(
        lab.reconfigures("error") >= 1.0,
        "the refusal is a failed reconfigure:\n{metrics}"
    );
    let refused = metric_sample(
        &metrics,
        "anycastd_backend_errors_total",
        &[("backend", "bird"), ("kind", "refused")],
    );
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "the refusal is counted as such: {refused:?}\n{metrics}"
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "anycastd_bird_reconfigures_total",
            &[("result", "ok")]
        ),
        Some(accepted),
        "nothing was accepted meanwhile:\n{metrics}"
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "anycastd_bird_last_success_timestamp_seconds",
            &[]
        ),
        last_success,
        "a refusal is no success:\n{metrics}"
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "anycastd_routes_announced",
            &[("backend", "bird")]
        ),
        Some(2.0),
        "BIRD still announces the old routes:\n{metrics}"
    );
    // Fixed: the retry goes through and the route leaves.
    std::fs::write(&main, original).unwrap();
    lab.wait_peer((false, false), "withdrawal once BIRD accepts again");
    lab.wait_announced(0);
    assert!(
        lab.reconfigures("ok") > accepted,
        "the retry is an accepted reconfigure:\n{}",
        lab.scrape()
    );
}

#[test]
fn restart_after_sigkill_withdraws_stale_routes_within_an_interval() {
    let lab = Lab::new(25, Format::Static, true);
    let mut first = lab.anycastd("1s");
    lab.wait_peer((true, true), "routes at the peer");
    first.signal("KILL");
    first.wait_exit(WAIT);
    lab.http.set_healthy(false);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.at_peer().0,
        "a killed anycastd leaves its file, and BIRD its routes"
    );
    let started = Instant::now();
    let _second = lab.anycastd("1s");
    lab.wait_peer((false, false), "stale routes withdrawn by the new process");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "withdrawn within one check interval, took {:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_withdraws_and_exits_zero() {
    let lab = Lab::new(26, Format::PrefixSet, true);
    let mut anycastd = lab.anycastd("200ms");
    lab.wait_peer((true, true), "routes at the peer");
    anycastd.signal("TERM");
    assert_eq!(anycastd.wait_exit(WAIT), Some(0));
    lab.wait_peer((false, false), "routes withdrawn after SIGTERM");
    assert!(lab.log().contains("withdrew all routes from BIRD"));
}

#[test]
fn bird_flush_empties_the_file_and_reconfigures() {
    let lab = Lab::new(27, Format::Static, true);
    let mut anycastd = lab.anycastd("200ms");
    lab.wait_peer((true, true), "routes at the peer");
    anycastd.signal("KILL");
    anycastd.wait_exit(WAIT);
    let config = lab.anycastd_config("200ms");
    let out = Command::new(anycastd_bin())
        .arg("-c")
        .arg(&config)
        .arg("bird-flush")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.wait_peer((false, false), "routes withdrawn by bird-flush");
    let text = std::fs::read_to_string(lab.a_dir().join("anycastd.conf")).unwrap();
    assert!(
        text.starts_with("# Generated by anycastd") && !text.contains("route "),
        "{text}"
    );
}

#[test]
fn reload_command_replaces_the_socket_client() {
    let lab = Lab::new(28, Format::Static, true);
    let _anycastd = lab.anycastd_with(
        "200ms",
        &format!(
            ", reload_command: [birdc, -s, \"{}\", configure]",
            lab.socket().display()
        ),
    );
    lab.wait_peer((true, true), "routes at the peer via birdc");
    lab.http.set_healthy(false);
    lab.wait_peer((false, false), "withdrawn via birdc");
}

#[test]
fn route_kind_sets_the_static_routes_destination() {
    let lab = Lab::new(29, Format::Static, true);
    let _anycastd = lab.anycastd_with("200ms", ", route_kind: prohibit");
    lab.wait_peer((true, true), "routes at the peer");
    let table = lab.a.as_ref().unwrap().birdc("show route");
    let line = table
        .lines()
        .find(|l| l.starts_with(&lab.v4))
        .unwrap_or_default();
    assert!(line.contains("prohibited"), "{table}");
}
