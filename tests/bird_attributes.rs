//! The bird backend carries each route's state and attributes, against real
//! BIRD 2: anycastd drives BIRD "A" through its include file and control
//! socket; A exports over BGP to BIRD "B" on loopback, and B's `show route
//! all` is what a peer sees. Each test uses its own 127.0.N.0 addresses
//! (N = 147..149, used by no other test).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const LOCAL_ASN: u32 = 65001;

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
    /// Last: dropped after the daemons living in it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// B (the peer), then the empty include file (`bird-flush`), then A.
    fn new(n: u8, format: Format) -> Lab {
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
  neighbor 127.0.{n}.1 as {LOCAL_ASN};
  multihop;
  strict bind yes;
  ipv4 {{ import all; export none; }};
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
            dir,
        };
        let config = lab.anycastd_config();
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
        let a_config = lab.a_config();
        lab.a = Some(Bird::start(&lab.a_dir(), &a_config));
        lab
    }

    fn a_dir(&self) -> PathBuf {
        self.dir.path().join("a")
    }

    fn a_config(&self) -> String {
        let n = self.n;
        let dir = self.a_dir();
        let dir = dir.display();
        let (top, statics, export) = match self.format {
            Format::Static => (
                String::new(),
                format!(
                    "protocol static anycastd4 {{\n  ipv4;\ninclude \"{dir}/anycastd.conf\";\n}}\n"
                ),
                // BIRD drops a MED to eBGP peers unless the export filter
                // sets it: the operator's filter refreshes anycastd's.
                "filter {\n    if proto != \"anycastd4\" then reject;\n    \
                 if defined(bgp_med) then bgp_med = bgp_med;\n    accept;\n  }"
                    .to_string(),
            ),
            // The route is always in A's table; the sets decide what leaves
            // and how: a draining one gets GRACEFUL_SHUTDOWN from the filter.
            Format::PrefixSet => (
                format!("include \"{dir}/anycastd.conf\";\n"),
                format!(
                    "protocol static vips4 {{ ipv4; route {} blackhole; }}\n",
                    self.v4
                ),
                "filter {\n    if net !~ ANYCASTD_PREFIXES_V4 then reject;\n    \
                 if net ~ ANYCASTD_PREFIXES_V4_DRAINING then bgp_community.add((65535,0));\n    \
                 if net ~ ANYCASTD_PREFIXES_V4_DEGRADED then bgp_med = 100;\n    accept;\n  }"
                    .to_string(),
            ),
        };
        format!(
            r#"
router id 127.0.{n}.1;
{top}protocol device {{}}
{statics}
protocol bgp b {{
  local 127.0.{n}.1 as {LOCAL_ASN};
  neighbor 127.0.{n}.2 as 65002;
  multihop;
  strict bind yes;
  ipv4 {{ import none; export {export}; }};
}}
"#
        )
    }

    fn socket(&self) -> PathBuf {
        self.a_dir().join("bird.ctl")
    }

    fn control(&self) -> PathBuf {
        self.dir.path().join("ctl.sock")
    }

    fn anycastd_config(&self) -> PathBuf {
        let path = self.dir.path().join("anycastd.yaml");
        let format = match self.format {
            Format::Static => "format: static",
            Format::PrefixSet => "format: prefix_set",
        };
        std::fs::write(
            &path,
            format!(
                r#"
announcer:
  backend: bird
  local_asn: {LOCAL_ASN}
  routes: ["{v4}"]
  bird: {{include_file: "{file}", socket: "{socket}", {format}, reconfigure_timeout: 5s}}
  attributes:
    up: {{med: 10, communities: ["65000:1"]}}
    degraded: {{med: 100}}
    draining: {{as_path_prepend: 2}}
  drain_time: 3s
control: {{socket: "{control}", state_file: "{state}"}}
services:
  - name: web
    check_interval: 200ms
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}
metrics: {{enabled: true, address: "{metrics}"}}
"#,
                v4 = self.v4,
                file = self.a_dir().join("anycastd.conf").display(),
                socket = self.socket().display(),
                control = self.control().display(),
                state = self.dir.path().join("drains.json").display(),
                url = self.http.url("/"),
                metrics = self.metrics_address(),
            ),
        )
        .unwrap();
        path
    }

    fn anycastd(&self) -> Daemon {
        spawn_anycastd(
            &[],
            &self.anycastd_config(),
            "debug",
            &self.dir.path().join("anycastd.log"),
        )
    }

    fn metrics_address(&self) -> String {
        format!("127.0.{}.1:{}", self.n, 19000 + u16::from(self.n))
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        http_get(&self.metrics_address(), "/metrics")
            .and_then(|text| metric_sample(&text, name, labels))
    }

    fn in_state(&self, state: &str) -> bool {
        self.metric(
            "anycastd_service_state",
            &[("service", "web"), ("state", state)],
        ) == Some(1.0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("anycastd.log")).unwrap_or_default()
    }

    /// `anycastd drain|undrain --socket CTL`: the operator's command.
    fn ctl(&self, command: &str) {
        let out = Command::new(anycastd_bin())
            .arg(command)
            .arg("--socket")
            .arg(self.control())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "anycastd {command}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// B's view of the route: `show route P all`, or `None` when absent.
    fn at_peer(&self) -> Option<String> {
        let text = self.b.birdc(&format!("show route {} all", self.v4));
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(self.v4.as_str()))
            .then_some(text)
    }

    /// Waits until B holds the route and `ok` says its attributes are right.
    fn wait_peer(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = self.at_peer();
            if let Some(text) = &seen
                && ok(text)
            {
                return text.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; B has {seen:?}\nB: {}\nA: {}\nA's file:\n{}\nanycastd:\n{}",
                self.b.birdc("show protocols all a"),
                self.a
                    .as_ref()
                    .map(|a| a.birdc("show route all"))
                    .unwrap_or_default(),
                std::fs::read_to_string(self.a_dir().join("anycastd.conf")).unwrap_or_default(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_withdrawn(&self, what: &str) {
        wait_until(WAIT, what, || self.at_peer().is_none());
    }
}

/// The value of one `BGP.x:` line of `show route all`.
fn attribute<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("BGP.{name}:")))
        .map(str::trim)
}

fn has_community(text: &str, community: &str) -> bool {
    attribute(text, "community").is_some_and(|c| c.contains(community))
}

/// Up as the up profile says; the drain marks it GRACEFUL_SHUTDOWN with
/// the draining profile's prepends, withdraws it after drain_time, and an
/// undrain brings it back as it was.
#[test]
fn static_format_carries_each_states_attributes() {
    let lab = Lab::new(147, Format::Static);
    let _anycastd = lab.anycastd();
    let up = |t: &str| {
        attribute(t, "med") == Some("10")
            && has_community(t, "(65000,1)")
            && !has_community(t, "(65535,0)")
            && attribute(t, "as_path") == Some("65001")
    };
    let text = lab.wait_peer("the up profile at the peer", up);
    eprintln!("up:\n{text}");
    let file = std::fs::read_to_string(lab.a_dir().join("anycastd.conf")).unwrap();
    assert!(
        file.contains(
            "route 192.0.2.147/32 blackhole { bgp_med = 10; bgp_community.add((65000,1)); };"
        ),
        "{file}"
    );

    lab.ctl("drain");
    let drained_at = Instant::now();
    let text = lab.wait_peer("GRACEFUL_SHUTDOWN and the prepends at the peer", |t| {
        has_community(t, "(65535,0)") && attribute(t, "as_path") == Some("65001 65001 65001")
    });
    eprintln!("draining:\n{text}");
    assert!(
        drained_at.elapsed() < Duration::from_secs(3),
        "seen within drain_time"
    );
    lab.wait_withdrawn("the withdrawal after drain_time");
    let took = drained_at.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "withdrawn only after drain_time (3s), not after {took:?}"
    );

    lab.ctl("undrain");
    lab.wait_peer("the route back with the up profile", up);
}

/// prefix_set: the operator's export filter acts on the _DRAINING set.
#[test]
fn prefix_set_draining_set_drives_the_export_filter() {
    let lab = Lab::new(148, Format::PrefixSet);
    let _anycastd = lab.anycastd();
    let plain = |t: &str| !has_community(t, "(65535,0)") && attribute(t, "med").is_none();
    lab.wait_peer("the route at the peer, unmarked", plain);

    lab.ctl("drain");
    let text = lab.wait_peer("(65535,0) from the export filter", |t| {
        has_community(t, "(65535,0)")
    });
    eprintln!("draining:\n{text}");
    let file = std::fs::read_to_string(lab.a_dir().join("anycastd.conf")).unwrap();
    assert!(
        file.contains("define ANYCASTD_PREFIXES_V4_DRAINING = [\n    192.0.2.148/32\n];"),
        "{file}"
    );
    lab.wait_withdrawn("the withdrawal after drain_time");
    let file = std::fs::read_to_string(lab.a_dir().join("anycastd.conf")).unwrap();
    assert!(file.contains("define ANYCASTD_PREFIXES_V4 = [];"), "{file}");
    assert!(
        file.contains("define ANYCASTD_PREFIXES_V4_DRAINING = [];"),
        "{file}"
    );

    lab.ctl("undrain");
    lab.wait_peer("the route back, unmarked", plain);
}

/// A drain from the CLI is kept in control.state_file: after a restart
/// the route stays withdrawn until `undrain`.
#[test]
fn a_cli_drain_survives_a_restart() {
    let lab = Lab::new(149, Format::Static);
    let mut anycastd = lab.anycastd();
    lab.wait_peer("the route at the peer", |t| has_community(t, "(65000,1)"));
    lab.ctl("drain");
    lab.wait_withdrawn("the withdrawal after drain_time");
    wait_until(WAIT, "state drained", || lab.in_state("drained"));
    assert!(
        Path::new(&lab.dir.path().join("drains.json")).exists(),
        "the drain is in the state file"
    );

    anycastd.signal("TERM");
    assert_eq!(anycastd.wait_exit(Duration::from_secs(15)), Some(0));
    drop(anycastd);
    let _anycastd = lab.anycastd();
    // Until the daemon has decided, and for a while after, B never sees
    // the route again.
    let deadline = Instant::now() + WAIT;
    while !lab.in_state("drained") {
        assert!(
            lab.at_peer().is_none(),
            "the route came back after the restart"
        );
        assert!(
            Instant::now() < deadline,
            "state drained after the restart\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        assert!(lab.at_peer().is_none(), "the route came back while drained");
        std::thread::sleep(Duration::from_millis(100));
    }

    lab.ctl("undrain");
    lab.wait_peer("the route back after undrain", |t| {
        attribute(t, "med") == Some("10") && has_community(t, "(65000,1)")
    });
}
