//! The configuration snippets in `contrib/` work as written: BIRD and FRR
//! accept them, and each host-side snippet (ExaBGP, BIRD static, BIRD prefix
//! set) really gets anycastd's routes to a router running one of the
//! router-side snippets (BIRD, FRR), whose import filter keeps only the
//! anycast ranges.
//!
//! The snippets use documentation addresses (host 192.0.2.2, router
//! 192.0.2.1 on one link), so each lab builds that link for real between two
//! network namespaces of its own and runs every daemon inside them: nothing
//! but file paths is rewritten. The anycastd config is the one embedded in
//! each snippet's comment, between `# --- anycastd.yaml ---` and
//! `# --- end ---`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(40);
/// The anycast routes every snippet announces.
const V4: &str = "198.51.100.1/32";
const V6: &str = "2001:db8:100::1/128";
/// A route outside the anycast ranges, which the routers must refuse.
const STRAY: &str = "203.0.113.1/32";
const FRR: &str = "frr (apt-get install --no-install-recommends frr)";

fn contrib(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(path)
}

fn read_snippet(path: &str) -> String {
    let file = contrib(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
}

/// The anycastd config a snippet carries in its comment.
fn embedded_yaml(snippet: &str, path: &str) -> String {
    let mut lines = snippet.lines();
    assert!(
        lines.any(|l| l.trim_end() == "# --- anycastd.yaml ---"),
        "{path}: no `# --- anycastd.yaml ---` block"
    );
    let mut yaml = String::new();
    for line in lines {
        if line.trim_end() == "# --- end ---" {
            return yaml;
        }
        let text = line
            .strip_prefix("# ")
            .or_else(|| line.strip_prefix('#'))
            .unwrap_or_else(|| {
                panic!("{path}: unexpected line in the anycastd.yaml block: {line}")
            });
        yaml.push_str(text);
        yaml.push('\n');
    }
    panic!("{path}: the anycastd.yaml block has no `# --- end ---`");
}

/// Replaces every `from` (which must occur) by `to`.
fn rewrite(text: &str, what: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (from, to) in pairs {
        assert!(out.contains(from), "{what} no longer mentions `{from}`");
        out = out.replace(from, to);
    }
    out
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs anycastd with `args` and returns (exit code, stdout + stderr).
fn anycastd(config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(anycastd_bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("run anycastd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `anycastd validate` passes.
fn assert_validates(config: &Path, what: &str) {
    let (code, text) = anycastd(config, &["validate"]);
    assert_eq!(code, Some(0), "{what}: anycastd validate failed:\n{text}");
}

fn bird_parses(conf: &Path) {
    let out = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(conf)
        .output()
        .expect("run bird -p");
    assert!(
        out.status.success(),
        "bird -p -c {} refused it:\n{}{}",
        conf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host-side BIRD snippet with its include files rewritten into `dir`,
/// and the anycastd config from its comment pointing there too.
struct HostBird {
    conf: PathBuf,
    anycastd_yaml: PathBuf,
    socket: PathBuf,
}

fn prepare_host_bird(snippet_path: &str, dir: &Path, extra_route: Option<&str>) -> HostBird {
    let snippet = read_snippet(snippet_path);
    let files = format!("{}/", dir.display());
    let socket = dir.join("bird.ctl");
    let socket_text = socket.display().to_string();
    let mut yaml = rewrite(
        &embedded_yaml(&snippet, snippet_path),
        &format!("{snippet_path}'s anycastd config"),
        &[
            ("/run/anycastd/bird/", &files),
            ("/run/bird/bird.ctl", &socket_text),
        ],
    );
    if let Some(route) = extra_route {
        yaml = rewrite(
            &yaml,
            "the anycastd config",
            &[("  routes:\n", &format!("  routes:\n    - {route}\n"))],
        );
    }
    let anycastd_yaml = dir.join("anycastd.yaml");
    write(&anycastd_yaml, &yaml);
    assert_validates(&anycastd_yaml, snippet_path);
    // What the systemd drop-in's ExecStartPre does: valid, empty include files.
    let (code, text) = anycastd(&anycastd_yaml, &["bird-flush"]);
    assert_eq!(code, Some(0), "anycastd bird-flush:\n{text}");
    let conf = dir.join("bird.conf");
    write(
        &conf,
        &rewrite(&snippet, snippet_path, &[("/run/anycastd/bird/", &files)]),
    );
    HostBird {
        conf,
        anycastd_yaml,
        socket,
    }
}

#[test]
fn bird_snippets_parse() {
    require(&[("bird", "bird2")]);
    for path in ["bird/anycastd-static.conf", "bird/anycastd-prefix-set.conf"] {
        let dir = scratch();
        let host = prepare_host_bird(path, dir.path(), None);
        bird_parses(&host.conf);
    }
    let router = read_snippet("router/bird.conf");
    let dir = scratch();
    let yaml = dir.path().join("anycastd.yaml");
    write(&yaml, &embedded_yaml(&router, "router/bird.conf"));
    assert_validates(&yaml, "router/bird.conf's anycastd config");
    bird_parses(&contrib("router/bird.conf"));
}

#[test]
fn frr_snippet_parses() {
    require(&[("vtysh", FRR)]);
    // `vtysh --dryrun` reads the file through every daemon's command tables
    // and exits non-zero on a line it does not know; no daemon needs to run.
    let out = Command::new("vtysh")
        .arg("--dryrun")
        .arg("--inputfile")
        .arg(contrib("router/frr.conf"))
        .output()
        .expect("run vtysh");
    assert!(
        out.status.success(),
        "vtysh --dryrun refused contrib/router/frr.conf:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check must be able to fail.
    let dir = scratch();
    let bad = dir.path().join("bad.conf");
    write(
        &bad,
        "router bgp 64496\n neighbor 192.0.2.2 remote-ass 64497\n",
    );
    let out = Command::new("vtysh")
        .arg("--dryrun")
        .arg("--inputfile")
        .arg(&bad)
        .output()
        .expect("run vtysh");
    assert!(!out.status.success(), "vtysh --dryrun accepted a typo");
}

// ---- labs: a host namespace and a router namespace on one link -------------

/// Two network namespaces joined by a veth pair: `host` has 192.0.2.2 and
/// 2001:db8::2, `router` 192.0.2.1 and 2001:db8::1. Dropping it kills every
/// process still inside them and deletes them.
struct Link {
    host: String,
    router: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Link {
    fn new(tag: &str) -> Link {
        let base = format!("acd{}{tag}", std::process::id());
        let link = Link {
            host: format!("{base}-h"),
            router: format!("{base}-r"),
        };
        ip(&["netns", "add", &link.host]);
        ip(&["netns", "add", &link.router]);
        ip(&[
            "-n",
            &link.host,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &link.router,
        ]);
        for (ns, v4, v6) in [
            (&link.host, "192.0.2.2/24", "2001:db8::2/64"),
            (&link.router, "192.0.2.1/24", "2001:db8::1/64"),
        ] {
            ip(&["-n", ns, "addr", "add", v4, "dev", "eth0"]);
            ip(&["-n", ns, "-6", "addr", "add", v6, "dev", "eth0", "nodad"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        link
    }

    /// Puts the anycast addresses on the host's `lo` (service healthy) or
    /// takes the IPv4 one away (service down).
    fn set_vip(&self, present: bool) {
        if present {
            ip(&[
                "-n",
                &self.host,
                "addr",
                "add",
                "198.51.100.1/32",
                "dev",
                "lo",
            ]);
        } else {
            ip(&[
                "-n",
                &self.host,
                "addr",
                "del",
                "198.51.100.1/32",
                "dev",
                "lo",
            ]);
        }
    }

    fn add_vip6(&self) {
        ip(&[
            "-n",
            &self.host,
            "-6",
            "addr",
            "add",
            "2001:db8:100::1/128",
            "dev",
            "lo",
            "nodad",
        ]);
    }

    /// `ip netns exec NS program args...` (the program keeps the process id).
    fn command(&self, ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.arg("netns").arg("exec").arg(ns).arg(program);
        command
    }

    fn pids(ns: &str) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.host, &self.router] {
            for pid in Link::pids(ns) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while !Link::pids(ns).is_empty() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            for pid in Link::pids(ns) {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The router, read through its own CLI.
enum Router {
    Bird { socket: PathBuf },
    Frr { vty: PathBuf },
}

impl Router {
    /// Starts `contrib/router/bird.conf` or `contrib/router/frr.conf`, as is,
    /// in the router namespace.
    fn start(kind: &str, link: &Link, dir: &Path) -> Router {
        match kind {
            "bird" => {
                require(&[("bird", "bird2"), ("birdc", "bird2")]);
                let socket = dir.join("router.ctl");
                let status = link
                    .command(&link.router, "bird")
                    .arg("-c")
                    .arg(contrib("router/bird.conf"))
                    .arg("-s")
                    .arg(&socket)
                    .arg("-P")
                    .arg(dir.join("router.pid"))
                    .status()
                    .expect("start bird");
                assert!(status.success(), "BIRD refused contrib/router/bird.conf");
                let router = Router::Bird { socket };
                wait_until(WAIT, "the router's BIRD", || {
                    router.birdc("show status").contains("Daemon is up")
                });
                router
            }
            "frr" => {
                require(&[("/usr/lib/frr/bgpd", FRR), ("vtysh", FRR)]);
                // Without zebra (-Z): bgpd alone holds the RIB we read.
                let status = link
                    .command(&link.router, "/usr/lib/frr/bgpd")
                    .arg("-d")
                    .arg("-Z")
                    .arg("-S")
                    .arg("-P")
                    .arg("0")
                    .arg("-f")
                    .arg(contrib("router/frr.conf"))
                    .arg("-i")
                    .arg(dir.join("bgpd.pid"))
                    .arg("--vty_socket")
                    .arg(dir)
                    .stdout(Stdio::null())
                    .status()
                    .expect("start bgpd");
                assert!(status.success(), "bgpd refused contrib/router/frr.conf");
                let router = Router::Frr {
                    vty: dir.to_path_buf(),
                };
                wait_until(WAIT, "the router's bgpd", || {
                    router.vtysh("show bgp summary json").contains("routerId")
                });
                router
            }
            other => panic!("unknown router {other}"),
        }
    }

    fn birdc(&self, command: &str) -> String {
        let Router::Bird { socket } = self else {
            unreachable!()
        };
        let out = Command::new("birdc")
            .arg("-s")
            .arg(socket)
            .args(command.split_whitespace())
            .output()
            .expect("run birdc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vtysh(&self, command: &str) -> String {
        let Router::Frr { vty } = self else {
            unreachable!()
        };
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(vty)
            .arg("-d")
            .arg("bgpd")
            .arg("-c")
            .arg(command)
            .output()
            .expect("run vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The prefixes the router accepted from the host.
    fn routes(&self) -> Vec<String> {
        match self {
            Router::Bird { .. } => self
                .birdc("show route protocol host1")
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|w| w.contains('/'))
                .map(str::to_string)
                .collect(),
            Router::Frr { .. } => ["ipv4", "ipv6"]
                .iter()
                .flat_map(|family| {
                    let json = self.vtysh(&format!("show bgp {family} unicast json"));
                    serde_json::from_str::<serde_json::Value>(&json)
                        .ok()
                        .and_then(|v| v.get("routes").and_then(|r| r.as_object()).cloned())
                        .map(|r| r.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// BIRD: how many updates from the host its import filter refused.
    fn filtered(&self) -> Option<u64> {
        let Router::Bird { .. } = self else {
            return None;
        };
        let stats = self.birdc("show protocols all host1");
        Some(
            stats
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Import updates:"))
                .filter_map(|cells| cells.split_whitespace().nth(2)?.parse::<u64>().ok())
                .sum(),
        )
    }

    fn has(&self, v4: bool, v6: bool) -> bool {
        let routes = self.routes();
        routes.iter().any(|r| r == V4) == v4 && routes.iter().any(|r| r == V6) == v6
    }
}

/// Waits for the router to hold both anycast routes and never the stray
/// one, then takes the service down and up again through the VIP on `lo`.
fn exercise(link: &Link, router: &Router, log: &Path, stray_sent: bool) {
    let dump = || {
        format!(
            "router has {:?}\nhost log:\n{}",
            router.routes(),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    };
    let deadline = Instant::now() + WAIT;
    while !router.has(true, true) {
        assert!(
            Instant::now() < deadline,
            "the router never got both anycast routes\n{}",
            dump()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !router.routes().iter().any(|r| r == STRAY),
        "the router's filter let {STRAY} through\n{}",
        dump()
    );
    if stray_sent && router.filtered().is_some() {
        wait_until(
            WAIT,
            "BIRD's import filter to refuse the stray route",
            || router.filtered().unwrap_or(0) > 0,
        );
    }
    link.set_vip(false);
    wait_until(
        WAIT,
        "both routes withdrawn once the service is down",
        || router.has(false, false),
    );
    link.set_vip(true);
    wait_until(WAIT, "both routes back once the service is up", || {
        router.has(true, true)
    });
}

/// contrib/exabgp/exabgp.conf on the host, with anycastd as its helper.
fn exabgp_lab(tag: &str, router_kind: &str) {
    require(&[("exabgp", "exabgp (pip)")]);
    let dir = scratch();
    let link = Link::new(tag);
    link.set_vip(true);
    link.add_vip6();
    let router = Router::start(router_kind, &link, dir.path());

    let snippet = read_snippet("exabgp/exabgp.conf");
    let yaml = rewrite(
        &embedded_yaml(&snippet, "exabgp/exabgp.conf"),
        "exabgp.conf's anycastd config",
        &[("  routes:\n", &format!("  routes:\n    - {STRAY}\n"))],
    );
    let anycastd_yaml = dir.path().join("anycastd.yaml");
    write(&anycastd_yaml, &yaml);
    assert_validates(&anycastd_yaml, "exabgp.conf's anycastd config");
    let bin = anycastd_bin().display().to_string();
    let yaml_path = anycastd_yaml.display().to_string();
    let conf = dir.path().join("exabgp.conf");
    write(
        &conf,
        &rewrite(
            &snippet,
            "contrib/exabgp/exabgp.conf",
            &[
                ("/usr/bin/anycastd", &bin),
                ("/etc/anycastd/config.yaml", &yaml_path),
            ],
        ),
    );
    let log = dir.path().join("exabgp.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = link
        .command(&link.host, "exabgp")
        .arg("server")
        .arg(&conf)
        .current_dir(dir.path())
        .env("exabgp_daemon_user", "root")
        .env("exabgp_log_destination", "stdout")
        .env("exabgp_tcp_bind", "")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start exabgp");
    let _exabgp = Daemon {
        child,
        name: "exabgp",
    };
    exercise(&link, &router, &log, true);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.lines()
            .any(|l| l.contains("route added") && l.contains(STRAY)),
        "ExaBGP never announced {STRAY}, so the filter went untested:\n{text}"
    );
    assert!(
        !router.routes().iter().any(|r| r == STRAY),
        "the router's filter let {STRAY} through"
    );
}

/// A host-side BIRD snippet, driven by anycastd's bird backend.
fn bird_host_lab(tag: &str, snippet: &str, router_kind: &str) {
    require(&[("bird", "bird2"), ("birdc", "bird2")]);
    let dir = scratch();
    let link = Link::new(tag);
    link.set_vip(true);
    link.add_vip6();
    let router = Router::start(router_kind, &link, dir.path());

    let host_dir = dir.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    // The static format exports whatever anycastd lists, so a stray route
    // there reaches the router's filter; the prefix-set layout only exports
    // routes of its own static protocol.
    let stray = snippet.contains("static").then_some(STRAY);
    let host = prepare_host_bird(snippet, &host_dir, stray);
    let status = link
        .command(&link.host, "bird")
        .arg("-c")
        .arg(&host.conf)
        .arg("-s")
        .arg(&host.socket)
        .arg("-P")
        .arg(host_dir.join("bird.pid"))
        .status()
        .expect("start bird");
    assert!(status.success(), "BIRD refused {snippet}");

    let log = dir.path().join("anycastd.log");
    let child = link
        .command(&link.host, anycastd_bin())
        .arg("-c")
        .arg(&host.anycastd_yaml)
        .arg("--log-level")
        .arg("info")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start anycastd");
    let _anycastd = Daemon {
        child,
        name: "anycastd",
    };
    exercise(&link, &router, &log, stray.is_some());
    if let Some(stray) = stray {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&host.socket)
            .args(["show", "route", "protocol", "anycastd4"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(stray),
            "the host's BIRD never had {stray}, so the filter went untested"
        );
        assert!(
            !router.routes().iter().any(|r| r == stray),
            "the router's filter let {stray} through"
        );
    }
}

/// anycastd's native backend on the host, with the config from
/// contrib/router/bird.conf's comment (which frr.conf points to).
fn native_lab(tag: &str, router_kind: &str) {
    let dir = scratch();
    let link = Link::new(tag);
    link.set_vip(true);
    link.add_vip6();
    let router = Router::start(router_kind, &link, dir.path());

    let snippet = read_snippet("router/bird.conf");
    let yaml = rewrite(
        &embedded_yaml(&snippet, "router/bird.conf"),
        "router/bird.conf's anycastd config",
        &[("  routes:\n", &format!("  routes:\n    - {STRAY}\n"))],
    );
    let anycastd_yaml = dir.path().join("anycastd.yaml");
    write(&anycastd_yaml, &yaml);
    assert_validates(&anycastd_yaml, "router/bird.conf's anycastd config");
    let log = dir.path().join("anycastd.log");
    let child = link
        .command(&link.host, anycastd_bin())
        .arg("-c")
        .arg(&anycastd_yaml)
        .arg("--log-level")
        .arg("info")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start anycastd");
    let _anycastd = Daemon {
        child,
        name: "anycastd",
    };
    exercise(&link, &router, &log, true);
    assert!(
        !router.routes().iter().any(|r| r == STRAY),
        "the router's filter let {STRAY} through"
    );
}

#[test]
fn native_backend_reaches_bird_router() {
    native_lab("nb", "bird");
}

#[test]
fn native_backend_reaches_frr_router() {
    native_lab("nf", "frr");
}

#[test]
fn exabgp_snippet_reaches_bird_router() {
    exabgp_lab("eb", "bird");
}

#[test]
fn exabgp_snippet_reaches_frr_router() {
    exabgp_lab("ef", "frr");
}

#[test]
fn bird_static_snippet_reaches_bird_router() {
    bird_host_lab("sb", "bird/anycastd-static.conf", "bird");
}

#[test]
fn bird_prefix_set_snippet_reaches_frr_router() {
    bird_host_lab("pf", "bird/anycastd-prefix-set.conf", "frr");
}
