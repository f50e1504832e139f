//! The README's "See it in a router's table" walk-through, step for step,
//! inside a network namespace of its own (so the address it adds to `lo`
//! and BIRD's port 179 never touch the host): contrib/demo/bird.conf as the
//! router, contrib/demo/anycastd.yaml as the daemon.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// A network namespace with `lo` up, deleted on drop.
struct Netns(String);

impl Netns {
    /// `tag` tells apart the namespaces of this process's tests.
    fn new(tag: &str) -> Netns {
        let name = format!("anycastd-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        assert!(
            Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(argv);
        c
    }

    fn run(&self, argv: &[&str]) -> String {
        let out = self.command(argv).output().expect("ip netns exec");
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes inside die with their guards first (declared later).
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn readme_demo_route_follows_the_vip_on_lo() {
    require(&[("bird", "bird2"), ("birdc", "bird2"), ("ip", "iproute2")]);
    let dir = scratch();
    let ns = Netns::new("demo");
    let root = env!("CARGO_MANIFEST_DIR");
    let socket = dir.path().join("demo-bird.ctl");
    let socket = socket.to_str().unwrap();
    let pid_file = dir.path().join("demo-bird.pid");
    ns.run(&[
        "bird",
        "-c",
        &format!("{root}/contrib/demo/bird.conf"),
        "-s",
        socket,
        "-P",
        pid_file.to_str().unwrap(),
    ]);
    // BIRD daemonises; its pid file may come a moment after `bird` returns.
    let mut bird_pid = String::new();
    wait_until(WAIT, "BIRD's pid file", || {
        bird_pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_default()
            .trim()
            .to_string();
        !bird_pid.is_empty()
    });
    let _bird = scopeguard(move || {
        let _ = Command::new("kill").arg(&bird_pid).status();
    });
    let routes = || ns.run(&["birdc", "-s", socket, "show", "route"]);

    let log = std::fs::File::create(dir.path().join("anycastd.log")).unwrap();
    let child = ns
        .command(&[
            anycastd_bin().to_str().unwrap(),
            "-c",
            &format!("{root}/contrib/demo/anycastd.yaml"),
            "--log-level",
            "info",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut anycastd = Daemon {
        child,
        name: "anycastd",
    };

    // No VIP on lo yet: the session comes up, but nothing is announced.
    wait_until(WAIT, "the BGP session", || {
        ns.run(&["birdc", "-s", socket, "show", "protocols", "anycastd"])
            .contains("Established")
    });
    assert!(!routes().contains("192.0.2.1/32"));
    ns.run(&["ip", "addr", "add", "192.0.2.1/32", "dev", "lo"]);
    wait_until(WAIT, "192.0.2.1/32 in the router's table", || {
        routes().contains("192.0.2.1/32")
    });
    assert!(routes().contains("AS65001i"), "{}", routes());
    ns.run(&["ip", "addr", "del", "192.0.2.1/32", "dev", "lo"]);
    wait_until(WAIT, "the route withdrawn", || {
        !routes().contains("192.0.2.1/32")
    });
    ns.run(&["ip", "addr", "add", "192.0.2.1/32", "dev", "lo"]);
    wait_until(WAIT, "the route back", || routes().contains("192.0.2.1/32"));
    anycastd.signal("TERM");
    assert_eq!(anycastd.wait_exit(WAIT), Some(0));
    wait_until(WAIT, "the route withdrawn at shutdown", || {
        !routes().contains("192.0.2.1/32")
    });
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The quick start as a script, nohup or CI runs it: stdin is /dev/null,
/// no ExaBGP anywhere. It keeps running, prints the announce for a person
/// to read (the first line: nothing before the first verdict), and SIGTERM
/// prints the withdraw and exits 0. In a namespace of its own, so its
/// metrics port (9180) cannot clash with anything on the host.
#[test]
fn quick_start_without_exabgp_keeps_running_and_prints_the_announce() {
    use std::io::{BufRead, BufReader};
    let ns = Netns::new("quick");
    let mut command = ns.command(&[anycastd_bin().to_str().unwrap()]);
    let mut child = command
        .args(["-c", "examples/quickstart.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start anycastd");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).ok();
    std::thread::sleep(Duration::from_secs(3));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(
        first.as_deref(),
        Some("announce route 192.0.2.1/32 next-hop self"),
        "{stderr}"
    );
    assert!(still_running, "stopped without ExaBGP:\n{stderr}");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)).ok().as_deref(),
        Some("withdraw route 192.0.2.1/32 next-hop self")
    );
    assert!(!stderr.contains("closed our stdin"), "{stderr}");
}
