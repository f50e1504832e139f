//! Instant reaction where the kernel tells us: anycastd's native backend in
//! a network namespace of its own, peering with a real BIRD in the same
//! namespace (127.0.0.1 ↔ 127.0.0.2 on its loopback), with
//! `check_interval: 10s`. Removing a checked address, downing its link or
//! killing the server behind a `listening` check must withdraw the route
//! from BIRD's table within 50 ms (asserted with a margin for loaded CI
//! machines; the measured time is printed).
//!
//! Packages: bird2, iproute2, python3 (and root).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The issue's bound is 50 ms; the assertion leaves room for a loaded CI
/// machine (and for the `ip`/`kill` and `birdc` processes the test runs).
const LIMIT: Duration = Duration::from_millis(150);
const ROUTE: &str = "192.0.2.77/32";

/// A network namespace with its loopback up, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let ns = Netns {
            name: format!("acd-nl{}-{tag}", std::process::id()),
        };
        run("ip", &["netns", "add", &ns.name]);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// `ip netns exec NAME program`.
    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// BIRD in the namespace, as anycastd's peer; stopped on drop.
struct NsBird(Bird);

impl NsBird {
    fn start(ns: &Netns, dir: &Path) -> NsBird {
        let config = format!(
            r#"
log "{log}" all;
router id 127.0.0.2;
protocol device {{}}
protocol bgp anycastd {{
  local 127.0.0.2 as 65002;
  neighbor 127.0.0.1 as 65001;
  multihop;
  strict bind yes;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"#,
            log = dir.join("bird.log").display()
        );
        NsBird(Bird::start_in(Some(&ns.name), dir, &config))
    }

    fn birdc(&self, args: &[&str]) -> String {
        self.0.birdc(&args.join(" "))
    }

    fn has_route(&self) -> bool {
        self.birdc(&["show", "route", "for", ROUTE])
            .lines()
            .any(|line| line.split_whitespace().next() == Some(ROUTE))
    }

    /// Calls `act`, then polls BIRD every 5 ms until the route is gone;
    /// the time from just before `act` (an upper bound).
    fn withdrawn_after(&self, act: impl FnOnce()) -> Duration {
        let start = Instant::now();
        act();
        loop {
            if !self.has_route() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the route is still in BIRD 15 s later"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// anycastd, BIRD and (for `listening`) a server, in one namespace. Field
/// order is drop order: the daemons go before their namespace.
struct Lab {
    anycastd: Option<Daemon>,
    bird: NsBird,
    ns: Netns,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start(tag: &str, check: &str, setup: impl FnOnce(&Netns)) -> Lab {
        require(&[("bird", "bird2"), ("birdc", "bird2"), ("ip", "iproute2")]);
        let dir = scratch();
        let ns = Netns::new(tag);
        setup(&ns);
        let bird = NsBird::start(&ns, dir.path());
        let config = format!(
            r#"announcer:
  router_id: "127.0.0.1"
  local_address: "127.0.0.1"
  local_asn: 65001
  routes: ["{ROUTE}"]
  peers:
    - {{name: bird, remote_address: "127.0.0.2", remote_asn: 65002}}
services:
  - name: svc
    check_interval: 10s
    checks:
      - {check}
"#
        );
        let path = dir.path().join("anycastd.yaml");
        std::fs::write(&path, config).unwrap();
        let anycastd = spawn_anycastd(
            &["ip", "netns", "exec", &ns.name],
            &path,
            "debug",
            &dir.path().join("anycastd.log"),
        );
        Lab {
            anycastd: Some(anycastd),
            bird,
            ns,
            dir,
        }
    }

    fn wait_route(&self, present: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.bird.has_route() != present {
            assert!(
                Instant::now() < deadline,
                "route {ROUTE} {} BIRD after {timeout:?}\nBIRD: {}\nanycastd log:\n{}",
                if present {
                    "never reached"
                } else {
                    "never left"
                },
                self.bird.birdc(&["show", "protocols", "all", "anycastd"]),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("anycastd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn report(&self, what: &str, took: Duration) {
        println!("{what}: route gone from BIRD after {took:?} (check_interval 10s)");
        assert!(
            took <= LIMIT,
            "{what}: the route left BIRD only after {took:?} (limit {LIMIT:?}, goal 50 ms)\n{}",
            self.log()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.anycastd.take());
    }
}

/// A veth pair d0 ── d1 inside the namespace, both up (so d0 is running);
/// dummy interfaces need a kernel module a container may not have.
fn veth(ns: &Netns) {
    ns.ip(&["link", "add", "d0", "type", "veth", "peer", "name", "d1"]);
    ns.ip(&["link", "set", "d1", "up"]);
    ns.ip(&["link", "set", "d0", "up"]);
}

#[test]
fn removing_a_checked_address_or_downing_its_link_withdraws_at_once() {
    let lab = Lab::start(
        "addr",
        "{kind: assigned_address, spec: {ipv4: 10.77.0.1, interface: d0}}",
        |ns| {
            veth(ns);
            ns.ip(&["addr", "add", "10.77.0.1/32", "dev", "d0"]);
        },
    );
    lab.wait_route(true, Duration::from_secs(30));
    let took = lab
        .bird
        .withdrawn_after(|| lab.ns.ip(&["addr", "del", "10.77.0.1/32", "dev", "d0"]));
    lab.report("ip addr del", took);

    // Back: the address event runs a round at once as well, well within
    // the 10 s interval.
    lab.ns.ip(&["addr", "add", "10.77.0.1/32", "dev", "d0"]);
    lab.wait_route(true, Duration::from_secs(5));

    let took = lab
        .bird
        .withdrawn_after(|| lab.ns.ip(&["link", "set", "d0", "down"]));
    lab.report("ip link set down", took);
}

#[test]
fn killing_the_server_behind_a_listening_check_withdraws_at_once() {
    require(&[("python3", "python3")]);
    let lab = Lab::start(
        "listen",
        "{kind: listening, spec: {port: 8080, address: 10.78.0.1}}",
        |ns| {
            veth(ns);
            ns.ip(&["addr", "add", "10.78.0.1/32", "dev", "d0"]);
        },
    );
    // No server yet: the check fails and nothing is announced, until one
    // listens, which the poller sees within a poll (the next periodic
    // round is 10 s away).
    wait_until(Duration::from_secs(30), "the first verdict", || {
        lab.log().contains("every service has its first verdict")
    });
    assert!(!lab.bird.has_route());
    let mut server = lab
        .ns
        .exec("python3")
        .args([
            "-c",
            "import socket, time\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('0.0.0.0', 8080))\n\
             s.listen()\n\
             time.sleep(3600)\n",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("start the server");
    lab.wait_route(true, Duration::from_secs(5));
    // A crash: SIGKILL, and the socket goes with the process.
    let took = lab.bird.withdrawn_after(|| {
        let _ = server.kill();
    });
    let _ = server.wait();
    lab.report("server killed", took);
}
