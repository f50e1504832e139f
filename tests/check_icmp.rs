//! `icmp_ping` against real targets: loopback, an address in a network
//! namespace of the test's own that answers and then stops answering, the
//! datagram-socket path as an unprivileged user, and the metrics `anycastd
//! run` exports. Traffic goes only to loopback and the test's namespaces.
//! Needs root (namespaces, raw sockets) and `ip` (iproute2).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const HEADER: &str = "announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n  - name: s\n    check_interval: 1s\n    strategy: all\n    checks:\n";

/// One `icmp_ping` check line for the config's check list.
fn ping(name: &str, host: &str, tries: u8, interval: &str, timeout: &str) -> String {
    format!(
        "      - {{kind: icmp_ping, name: {name}, spec: {{static: {{host: \"{host}\"}}, tries: {tries}, interval: {interval}, timeout: {timeout}}}}}\n"
    )
}

fn write_config(dir: &Path, file: &str, checks: &[String]) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, format!("{HEADER}{}", checks.concat())).unwrap();
    path
}

fn run(command: &mut Command) -> Output {
    let out = command.output().expect("run command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// A network namespace joined to the host by a veth pair, with an IPv4 /30
/// and an IPv6 /64 on it; deleted (with the pair) when dropped, even when the
/// test panics.
struct Namespace {
    name: String,
    host_if: String,
    ns_v4: String,
    ns_v6: String,
}

impl Namespace {
    /// `index` keeps the namespaces of one test process apart.
    fn create(index: u32) -> Namespace {
        require(&[("ip", "iproute2")]);
        let pid = std::process::id();
        let name = format!("anycastd-icmp-{pid}-{index}");
        let (host_if, ns_if) = (format!("aci{pid}{index}h"), format!("aci{pid}{index}n"));
        let (third, fourth) = (pid % 250, index * 4);
        let ns = Namespace {
            name: name.clone(),
            host_if: host_if.clone(),
            ns_v4: format!("10.254.{third}.{}", fourth + 2),
            ns_v6: format!("fd61:6e79:{:x}:{}::2", pid % 0x10000, index + 1),
        };
        ip(&["netns", "add", &name]);
        // From here on, Drop cleans up whatever was made.
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &name,
        ]);
        let host_v6 = ns.ns_v6.replace("::2", "::1");
        ip(&[
            "addr",
            "add",
            &format!("10.254.{third}.{}/30", fourth + 1),
            "dev",
            &host_if,
        ]);
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{host_v6}/64"),
            "dev",
            &host_if,
            "nodad",
        ]);
        ip(&["link", "set", &host_if, "up"]);
        ns.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.ns_v4),
            "dev",
            &ns_if,
        ]);
        ns.exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", ns.ns_v6),
            "dev",
            &ns_if,
            "nodad",
        ]);
        ns.exec_ok(&["ip", "link", "set", &ns_if, "up"]);
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        wait_until(Duration::from_secs(5), "the veth pair to come up", || {
            std::fs::read_to_string(format!("/sys/class/net/{host_if}/operstate"))
                .map(|s| s.trim() == "up")
                .unwrap_or(false)
        });
        ns
    }

    /// A namespace with only loopback up.
    fn loopback_only(index: u32) -> Namespace {
        require(&[("ip", "iproute2")]);
        let name = format!("anycastd-icmp-{}-{index}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Namespace {
            name,
            host_if: String::new(),
            ns_v4: String::new(),
            ns_v6: String::new(),
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).args(args);
        command
    }

    fn exec_ok(&self, args: &[&str]) {
        run(&mut self.command(args));
    }

    fn sysctl(&self, setting: &str) {
        self.exec_ok(&["sysctl", "-q", "-w", setting]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !self.host_if.is_empty() {
            // Normally gone with the namespace's end of the pair.
            let _ = Command::new("ip")
                .args(["link", "del", &self.host_if])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn assert_row(
    rows: &std::collections::BTreeMap<String, (String, String)>,
    text: &str,
    check: &str,
    verdict: &str,
    reason: &str,
) {
    let (got_verdict, got_reason) = rows
        .get(check)
        .unwrap_or_else(|| panic!("no row for {check}:\n{text}"));
    assert_eq!(got_verdict, verdict, "{check}:\n{text}");
    assert_eq!(got_reason, reason, "{check}:\n{text}");
}

#[test]
fn loopback_answers_over_ipv4_and_ipv6() {
    require(&[]);
    let dir = scratch();
    let config = write_config(
        dir.path(),
        "lo.yaml",
        &[
            ping("v4", "127.0.0.1", 3, "50ms", "1s"),
            ping("v6", "::1", 3, "50ms", "1s"),
            ping("name", "localhost", 2, "50ms", "1s"),
        ],
    );
    let (code, rows, text) = check_rows(&config);
    assert_eq!(code, 0, "{text}");
    for check in ["v4", "v6", "name"] {
        assert_row(&rows, &text, check, "pass", "");
    }
}

#[test]
fn unresolvable_host_says_so() {
    let dir = scratch();
    let config = write_config(
        dir.path(),
        "dns.yaml",
        &[ping("gone", "nohost.invalid", 1, "50ms", "2s")],
    );
    let (code, rows, text) = check_rows(&config);
    assert_eq!(code, 1, "{text}");
    let (verdict, reason) = &rows["gone"];
    assert_eq!(verdict, "fail", "{text}");
    assert!(
        reason.starts_with("cannot resolve \"nohost.invalid\": "),
        "{text}"
    );
}

#[test]
fn a_namespace_address_passes_then_fails_within_the_timeout_when_it_stops_answering() {
    require(&[("sysctl", "procps")]);
    let ns = Namespace::create(0);
    let dir = scratch();
    let checks = [
        ping("v4", &ns.ns_v4, 3, "100ms", "1s"),
        ping("v6", &ns.ns_v6, 3, "100ms", "1s"),
    ];
    let config = write_config(dir.path(), "ns.yaml", &checks);

    let (code, rows, text) = check_rows(&config);
    assert_eq!(code, 0, "{text}");
    assert_row(&rows, &text, "v4", "pass", "");
    assert_row(&rows, &text, "v6", "pass", "");

    ns.sysctl("net.ipv4.icmp_echo_ignore_all=1");
    ns.sysctl("net.ipv6.icmp.echo_ignore_all=1");
    let started = Instant::now();
    let (code, rows, text) = check_rows(&config);
    let took = started.elapsed();
    assert_eq!(code, 1, "{text}");
    // The run's own deadline ends it, not the engine's timeout.
    let v4 = format!("3 of 3 echo requests to {} got no reply", ns.ns_v4);
    let v6 = format!("3 of 3 echo requests to {} got no reply", ns.ns_v6);
    assert_row(&rows, &text, "v4", "fail", &v4);
    assert_row(&rows, &text, "v6", "fail", &v6);
    assert!(took < Duration::from_secs(3), "took {took:?}:\n{text}");
}

/// As an unprivileged user inside a namespace: raw sockets are refused, so
/// ping works only through datagram sockets that `ping_group_range` admits,
/// and when it admits nobody the reason names the sysctl and the capability.
#[test]
fn datagram_sockets_serve_an_unprivileged_user_and_refusal_is_explained() {
    require(&[("setpriv", "util-linux"), ("sysctl", "procps")]);
    let ns = Namespace::loopback_only(1);
    let dir = scratch();
    // Readable by the unprivileged user.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_config(
        dir.path(),
        "dgram.yaml",
        &[
            ping("v4", "127.0.0.1", 2, "50ms", "1s"),
            ping("v6", "::1", 2, "50ms", "1s"),
        ],
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = anycastd_bin();
    let as_nobody = || {
        let out = ns
            .command(&[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                bin.to_str().unwrap(),
                "-c",
                config.to_str().unwrap(),
                "--log-level",
                "info",
                "check",
            ])
            .output()
            .expect("run anycastd as nobody");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    ns.sysctl("net.ipv4.ping_group_range=0 2147483647");
    let (code, out, err) = as_nobody();
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("socket=\"datagram\""), "{err}");
    assert!(!err.contains("socket=\"raw\""), "{err}");

    ns.sysctl("net.ipv4.ping_group_range=1 0");
    let (code, out, err) = as_nobody();
    assert_eq!(code, 1, "{out}{err}");
    let line = |check: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_else(|| panic!("no row for {check}:\n{out}"))
            .to_string()
    };
    assert!(
        line("v4").ends_with(
            "cannot open an ICMP socket: datagram sockets are not allowed by \
             net.ipv4.ping_group_range (1 0) for gid 65534 and raw sockets need CAP_NET_RAW"
        ),
        "{out}"
    );
    assert!(
        line("v6").ends_with(
            "cannot open an ICMPv6 socket: datagram sockets are not allowed by \
             net.ipv4.ping_group_range (1 0) for gid 65534 and raw sockets need CAP_NET_RAW"
        ),
        "{out}"
    );
}

#[test]
fn run_exports_rtt_and_packet_metrics() {
    require(&[]);
    let dir = scratch();
    let metrics_port = free_tcp_port();
    let config = dir.path().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "{HEADER}{}metrics: {{enabled: true, address: \"127.0.0.1:{metrics_port}\"}}\n",
            ping("lo", "127.0.0.1", 3, "20ms", "1s")
        ),
    )
    .unwrap();
    let _anycastd = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    let address = format!("127.0.0.1:{metrics_port}");
    let labels = "{service=\"s\",check=\"lo\",host=\"127.0.0.1\"}";
    let series = |name: &str| format!("{name}{labels}");
    let mut text = String::new();
    wait_until(Duration::from_secs(10), "icmp metrics", || {
        text = http_get(&address, "/metrics").unwrap_or_default();
        metric_value(&text, &series("anycastd_check_packets_sent_total")).is_some()
    });
    let value = |name: &str| {
        metric_value(&text, &series(name)).unwrap_or_else(|| panic!("no {name}:\n{text}"))
    };
    assert!(value("anycastd_check_packets_sent_total") >= 3.0, "{text}");
    assert!(
        value("anycastd_check_packets_received_total") >= 3.0,
        "{text}"
    );
    let (min, avg, max, std_dev) = (
        value("anycastd_check_min_rtt_seconds"),
        value("anycastd_check_avg_rtt_seconds"),
        value("anycastd_check_max_rtt_seconds"),
        value("anycastd_check_std_dev_rtt_seconds"),
    );
    // Loopback RTTs of one run: positive, under the 1 s timeout, ordered.
    assert!(min > 0.0 && max < 1.0, "{text}");
    // (A mean can miss the extremes by rounding when all RTTs are equal.)
    assert!(min <= avg + 1e-12 && avg <= max + 1e-12, "{text}");
    // The population standard deviation of values in [min, max] is at most
    // half the spread (zero when they are all equal).
    assert!(
        std_dev.is_finite() && (0.0..=(max - min) / 2.0 + 1e-12).contains(&std_dev),
        "std_dev {std_dev} outside [0, (max - min) / 2] for min {min}, max {max}:\n{text}"
    );
    assert_eq!(value("anycastd_check_loss_percent"), 0.0, "{text}");
    assert_eq!(
        value("anycastd_check_packets_received_duplicates_total"),
        0.0,
        "{text}"
    );
}
