//! BFD (RFC 5880, 5881 single hop, 5883 multihop) between anycastd's native
//! speaker and real routers: BIRD 2, and FRR (zebra + bfdd + bgpd). The
//! router side is contrib/router/bird-bfd.conf or frr-bfd.conf with its
//! placeholders filled in, so those snippets are what runs here.
//!
//! The verdict is the router's own view: how long after anycastd freezes
//! (SIGSTOP) or its link goes silent the router's BFD session goes Down and
//! the route leaves its table, polled every 5 ms from the moment just
//! before the fault (`birdc`, or FRR's vty sockets spoken to directly: a
//! vtysh process costs 25 ms and more). The measured times are printed
//! (`--nocapture`); the fault's wall-clock time too, to find it in the
//! logs. Each test then ends the fault and waits for the session and the
//! route to come back (and stay, 2 s). anycastd's own view is asserted
//! too, from its metrics and `/status` fetched inside A: BFD Up at the
//! asked-for timers at start and after each fault, the session's Down seen
//! and logged, BGP held down while the link is cut. A flood test sends
//! junk at anycastd's BFD port and checks nothing moves.
//!
//! Each lab is three network namespaces, A (anycastd) ── M ── R (the
//! router), with M a bridge: A(va) ── veth ── M[br0: vma, vmr] ── veth ──
//! R(vr). Detaching vma from the bridge cuts the link without any carrier
//! change at A or R (frames from A reach M's own stack, which has no
//! address, and die there); attaching it again restores it. A bridge
//! forwards without touching the TTL, so single-hop BFD (TTL 255) works
//! across it. Addresses 10.N.1.1 (anycastd) / 10.N.1.2 (router), route
//! 192.0.2.N/32, N in 90..=99 (owned by this file). One lab runs BGP and
//! BFD over IPv6 instead: 2001:db8:N::1 / 2001:db8:N::2 on the same link
//! (`nodad`), route 2001:db8:ffff::N/128.
//!
//! `ANYCASTD_BFD_STANDIN=bird` runs BIRD 2 in A instead of anycastd (same
//! addresses, AS, timers, route), to check the harness and the router
//! snippets without anycastd's BFD. `ANYCASTD_BFD_KEEP=1` keeps each lab's
//! scratch directory (configs, router and speaker logs).
//!
//! Packages: bird2, frr, iproute2 (and root).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);
/// Session Up again and the route back after the fault ends.
const RESTORE: Duration = Duration::from_secs(15);
const LOCAL_AS: u32 = 65001;
const REMOTE_AS: u32 = 65002;
/// How long after a fault the router's BFD session may still be Up (and,
/// with BIRD, the route still there): the detection time (3 × 100 ms) plus
/// 50 ms for the router to act and for the polling. FRR gets 50 ms more for
/// the route ([`Lab::route_budget`]).
const DETECT_BUDGET: Duration = Duration::from_millis(350);
/// How long the route and the BFD session must stay up before a fault.
const SETTLE: Duration = Duration::from_secs(2);
/// How often the router is asked while timing a fault.
const POLL: Duration = Duration::from_millis(5);
/// anycastd's metrics listener (and `/status`), inside namespace A.
const METRICS: &str = "127.0.0.1:9180";
/// The router's name in anycastd's config (`/status` lists peers by it).
const PEER: &str = "r1";
/// How long anycastd's own view (metrics, `/status`) may lag behind what
/// the test waited for.
const ANYCASTD_LAG: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Debug)]
enum RouterKind {
    Bird,
    Frr,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    /// SIGSTOP to the speaker in A (SIGCONT to end it).
    Freeze,
    /// A's bridge port detached (attached again to end it).
    Cut,
}

/// What one test sets up.
#[derive(Clone, Debug)]
struct Setup {
    router: RouterKind,
    n: u8,
    /// BFD on both sides (`bfd:` in anycastd, `bfd on` / `bfd profile` at
    /// the router).
    bfd: bool,
    /// `enable_multihop: true` in anycastd, `multihop;` in BIRD: the BFD
    /// session is then multihop (UDP 4784).
    multihop: bool,
    /// BGP and BFD over IPv6: anycastd 2001:db8:N::1 (its peer's
    /// `local_address`), the router 2001:db8:N::2, route
    /// 2001:db8:ffff::N/128 over the router's `ipv6` channel. The IPv4
    /// addresses stay (anycastd's router id and `announcer.local_address`,
    /// BIRD's router id).
    ipv6: bool,
}

impl Setup {
    fn new(router: RouterKind, n: u8) -> Setup {
        assert!((90..=99).contains(&n), "this file owns 10.90-99.x");
        Setup {
            router,
            n,
            bfd: true,
            multihop: false,
            ipv6: false,
        }
    }
}

/// Now as HH:MM:SS.mmm (UTC), to find a fault in the daemons' logs.
fn wall_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_millis()
    )
}

fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) with a pid this test started and a valid signal.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// `contrib/router/NAME` with its placeholders filled in.
fn router_snippet(name: &str, router: &str, anycastd: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/router")
        .join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = text;
    for (placeholder, value) in [
        ("ROUTER_ADDRESS", router.to_string()),
        ("ROUTER_ASN", REMOTE_AS.to_string()),
        ("ANYCASTD_ADDRESS", anycastd.to_string()),
        ("ANYCASTD_ASN", LOCAL_AS.to_string()),
    ] {
        assert!(
            out.contains(placeholder),
            "{name}: no {placeholder} placeholder"
        );
        out = out.replace(placeholder, &value);
    }
    out
}

/// `text` with its one line `from` (trimmed) replaced by `to`.
fn edit_line(text: &str, from: &str, to: &str) -> String {
    let hits = text.lines().filter(|l| l.trim() == from).count();
    assert_eq!(
        hits, 1,
        "expected one line `{from}` in the snippet:\n{text}"
    );
    text.lines()
        .map(|l| if l.trim() == from { to } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

// ---- network namespaces -----------------------------------------------------

/// A ── M (bridge) ── R, deleted on drop with their links.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    /// With `ipv6`, 2001:db8:N::1/64 on A and ::2/64 on R too, `nodad`:
    /// usable at once, not tentative for a second of duplicate address
    /// detection.
    fn build(n: u8, ipv6: bool) -> Netns {
        require(&[("ip", "iproute2")]);
        let pid = std::process::id();
        let mut nets = Netns { names: Vec::new() };
        for part in ["a", "m", "r"] {
            let name = format!("acd-bfd{pid}-{n}{part}");
            nets.ip(&["netns", "add", &name]);
            // Recorded at once: a later failure still deletes it.
            nets.names.push(name);
        }
        let (a, m, r) = (nets.a(), nets.m(), nets.r());
        let mut cmds = vec![
            format!("-n {a} link set lo up"),
            format!("-n {m} link set lo up"),
            format!("-n {r} link set lo up"),
            // No STP and no forwarding delay: a port forwards as soon as
            // it is attached and up.
            format!("-n {m} link add br0 type bridge forward_delay 0 stp_state 0"),
            format!("-n {a} link add va type veth peer name vma netns {m}"),
            format!("-n {r} link add vr type veth peer name vmr netns {m}"),
            format!("-n {m} link set vma master br0"),
            format!("-n {m} link set vmr master br0"),
            format!("-n {a} addr add 10.{n}.1.1/24 dev va"),
            format!("-n {r} addr add 10.{n}.1.2/24 dev vr"),
            format!("-n {m} link set br0 up"),
            format!("-n {m} link set vma up"),
            format!("-n {m} link set vmr up"),
            format!("-n {a} link set va up"),
            format!("-n {r} link set vr up"),
        ];
        if ipv6 {
            cmds.push(format!("-n {a} addr add 2001:db8:{n}::1/64 dev va nodad"));
            cmds.push(format!("-n {r} addr add 2001:db8:{n}::2/64 dev vr nodad"));
        }
        for cmd in cmds {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            nets.ip(&args);
        }
        nets
    }

    fn ip(&self, args: &[&str]) {
        let mut c = Command::new("ip");
        c.args(args);
        let (ok, out) = output_within(c, Duration::from_secs(10));
        assert!(ok, "ip {}: {out}", args.join(" "));
    }

    fn a(&self) -> String {
        self.names[0].clone()
    }

    fn m(&self) -> String {
        self.names[1].clone()
    }

    fn r(&self) -> String {
        self.names[2].clone()
    }

    /// Silently cuts A off: no carrier change on either end.
    fn cut(&self) {
        self.ip(&["-n", &self.m(), "link", "set", "vma", "nomaster"]);
    }

    fn restore(&self) {
        self.ip(&["-n", &self.m(), "link", "set", "vma", "master", "br0"]);
    }

    /// `ip netns exec NS PROGRAM`.
    fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `f` on a thread that has entered namespace `ns` (sockets it makes
/// stay there).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on this (short-lived) thread only, with a valid fd
        // to a network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread in the namespace")
}

// ---- the daemons -------------------------------------------------------------

/// BIRD 2 in the foreground in a namespace, stopped on drop.
struct NsBird {
    daemon: Daemon,
    socket: PathBuf,
    log: PathBuf,
}

impl NsBird {
    fn start(ns: &str, dir: &Path, config: &str) -> NsBird {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("bird.conf");
        std::fs::write(&conf, config).unwrap();
        let mut check = Command::new("bird");
        check.arg("-p").arg("-c").arg(&conf);
        let (ok, out) = output_within(check, Duration::from_secs(10));
        assert!(ok, "bird -p refused {}:\n{out}\n{config}", conf.display());
        let socket = dir.join("bird.ctl");
        let out = std::fs::File::create(dir.join("bird.out")).unwrap();
        let child = Netns::exec(ns, "bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start bird");
        let bird = NsBird {
            daemon: Daemon {
                child,
                name: "bird",
            },
            socket,
            log: dir.join("bird.log"),
        };
        wait_until(Duration::from_secs(10), "BIRD's control socket", || {
            bird.birdc("show status").contains("Daemon is up")
        });
        bird
    }

    fn birdc(&self, command: &str) -> String {
        let mut c = Command::new("birdc");
        c.arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace());
        output_within(c, Duration::from_secs(5)).1
    }

    fn has_route(&self, prefix: &str) -> bool {
        self.birdc(&format!("show route {prefix}"))
            .lines()
            .any(|line| line.split_whitespace().next() == Some(prefix))
    }
}

/// zebra, bfdd and bgpd in a namespace, with their own sockets; stopped on
/// drop, bgpd first.
struct Frr {
    daemons: Vec<Daemon>,
    vty: PathBuf,
}

impl Frr {
    fn start(ns: &str, dir: &Path, listen: &str, config: &str) -> Frr {
        require(&[
            ("/usr/lib/frr/zebra", "frr"),
            ("/usr/lib/frr/bfdd", "frr"),
            ("/usr/lib/frr/bgpd", "frr"),
            ("vtysh", "frr"),
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).unwrap();
        // The daemons run as user frr: they need to reach and write here.
        let parent = dir.parent().expect("scratch directory");
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
        let status = Command::new("chown")
            .args(["frr:frr"])
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown frr:frr {}", dir.display());
        let empty = dir.join("empty.conf");
        std::fs::write(&empty, "").unwrap();
        let zserv = dir.join("zserv.api");
        let mut frr = Frr {
            daemons: Vec::new(),
            vty: dir.to_path_buf(),
        };
        let spawn = |name: &'static str, extra: &[String]| -> Daemon {
            let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
            let child = Netns::exec(ns, &format!("/usr/lib/frr/{name}"))
                .args(["-P", "0"])
                .arg("-z")
                .arg(&zserv)
                .arg("--vty_socket")
                .arg(dir)
                .arg("-i")
                .arg(dir.join(format!("{name}.pid")))
                .arg("-f")
                .arg(&empty)
                .arg(format!(
                    "--log=file:{}",
                    dir.join(format!("{name}.log")).display()
                ))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {name}: {e}"));
            Daemon { child, name }
        };
        frr.daemons.push(spawn("zebra", &[]));
        wait_until(Duration::from_secs(10), "zebra's zserv socket", || {
            zserv.exists()
        });
        frr.daemons.push(spawn(
            "bfdd",
            &[format!("--bfdctl={}", dir.join("bfdd.sock").display())],
        ));
        frr.daemons.push(spawn(
            "bgpd",
            &["-p".into(), "179".into(), "-l".into(), listen.into()],
        ));
        for daemon in ["zebra", "bfdd", "bgpd"] {
            wait_until(
                Duration::from_secs(10),
                &format!("FRR {daemon}'s vty"),
                || frr.vtysh(daemon, "show version").0,
            );
        }
        // The snippet as an operator would load it: vtysh hands each
        // command to the daemon it is for.
        let conf = dir.join("frr.conf");
        std::fs::write(&conf, config).unwrap();
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(dir).arg("-f").arg(&conf);
        let (ok, out) = output_within(c, Duration::from_secs(20));
        assert!(ok, "vtysh -f refused the FRR config:\n{out}\n{config}");
        frr
    }

    /// One command straight to `daemon`'s vty socket, as vtysh sends it
    /// (NUL-terminated; the answer ends in three NULs and a status byte):
    /// about a millisecond where a vtysh process takes tens.
    fn vty(&self, daemon: &str, command: &str) -> Option<String> {
        use std::io::{Read, Write};
        let socket = self.vty.join(format!("{daemon}.vty"));
        let mut stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut answer = String::new();
        // A vty starts in view mode; some `show` commands are enable-only.
        for line in ["enable", command] {
            stream.write_all(line.as_bytes()).ok()?;
            stream.write_all(&[0]).ok()?;
            let mut bytes = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                bytes.extend_from_slice(&chunk[..n]);
                let len = bytes.len();
                if len >= 4 && bytes[len - 4..len - 1] == [0, 0, 0] {
                    bytes.truncate(len - 4);
                    break;
                }
            }
            answer = String::from_utf8_lossy(&bytes).into_owned();
        }
        Some(answer)
    }

    fn vtysh(&self, daemon: &str, command: &str) -> (bool, String) {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket")
            .arg(&self.vty)
            .args(["-d", daemon, "-c", command]);
        output_within(c, Duration::from_secs(10))
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        while let Some(daemon) = self.daemons.pop() {
            drop(daemon);
        }
    }
}

enum Router {
    Bird(NsBird),
    Frr(Frr),
}

/// Who speaks BGP and BFD in A.
enum Speaker {
    Anycastd(Daemon),
    /// `ANYCASTD_BFD_STANDIN=bird`: BIRD 2 in anycastd's place.
    Bird(NsBird),
}

impl Speaker {
    fn pid(&self) -> i32 {
        match self {
            Speaker::Anycastd(d) => d.pid(),
            Speaker::Bird(b) => b.daemon.pid(),
        }
    }
}

fn standin() -> bool {
    match std::env::var("ANYCASTD_BFD_STANDIN").as_deref() {
        Ok("bird") => true,
        Ok("") | Err(_) => false,
        Ok(other) => panic!("ANYCASTD_BFD_STANDIN={other}: only `bird` is known"),
    }
}

/// SIGCONT on drop, so a failing test never leaves a stopped process (whose
/// guard would wait for a SIGTERM that cannot act).
struct Frozen(i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a pid this test started.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Attaches A's bridge port again on drop.
struct Cut<'a>(&'a Netns);

impl Drop for Cut<'_> {
    fn drop(&mut self) {
        self.0.restore();
    }
}

/// What the router did after a fault, in time since the fault.
#[derive(Clone, Copy, Debug)]
struct Withdrawal {
    /// First seen BFD Down (with BFD).
    bfd_down: Option<Duration>,
    /// The start of the last poll that still saw the route.
    last_seen: Duration,
    /// The end of the first poll that saw it gone.
    gone: Duration,
}

impl std::fmt::Display for Withdrawal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(down) = self.bfd_down {
            write!(f, "BFD Down after {} ms, ", down.as_millis())?;
        }
        write!(
            f,
            "route gone after {} ms (last seen at {} ms)",
            self.gone.as_millis(),
            self.last_seen.as_millis()
        )
    }
}

// ---- the lab -------------------------------------------------------------------

struct Lab {
    setup: Setup,
    speaker: Option<Speaker>,
    router: Option<Router>,
    http: HealthServer,
    /// After the daemons living in them.
    nets: Netns,
    /// The BGP and BFD session's addresses: anycastd's and the router's.
    local: String,
    remote: String,
    /// The IPv4 addresses on the link (router ids; the session's own
    /// but with [`Setup::ipv6`]).
    local4: String,
    remote4: String,
    prefix: String,
    /// Last: dropped after the daemons writing in it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// Starts the router and waits until it answers its CLI; the speaker in
    /// A is started separately.
    fn new(setup: Setup) -> Lab {
        require(&[("bird", "bird2"), ("birdc", "bird2")]);
        let n = setup.n;
        let nets = Netns::build(n, setup.ipv6);
        let http = in_netns(&nets.a(), HealthServer::start);
        let mut dir = scratch();
        if std::env::var_os("ANYCASTD_BFD_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("n={n}: keeping {}", dir.path().display());
        }
        let (local, remote, prefix) = if setup.ipv6 {
            (
                format!("2001:db8:{n}::1"),
                format!("2001:db8:{n}::2"),
                format!("2001:db8:ffff::{n}/128"),
            )
        } else {
            (
                format!("10.{n}.1.1"),
                format!("10.{n}.1.2"),
                format!("192.0.2.{n}/32"),
            )
        };
        let mut lab = Lab {
            setup,
            speaker: None,
            router: None,
            http,
            nets,
            local,
            remote,
            local4: format!("10.{n}.1.1"),
            remote4: format!("10.{n}.1.2"),
            prefix,
            dir,
        };
        lab.router = Some(match lab.setup.router {
            RouterKind::Bird => Router::Bird(lab.start_bird_router()),
            RouterKind::Frr => Router::Frr(lab.start_frr_router()),
        });
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start_bird_router(&self) -> NsBird {
        let s = &self.setup;
        let mut snippet = router_snippet("bird-bfd.conf", &self.remote, &self.local);
        if !s.bfd {
            snippet = edit_line(&snippet, "bfd on;", "");
        }
        if s.multihop {
            snippet = edit_line(&snippet, "# multihop;", "  multihop;");
        }
        if s.ipv6 {
            // The snippet's one channel, for IPv6 routes: the session's
            // family needs no change (BIRD takes it from the addresses).
            snippet = edit_line(&snippet, "ipv4 {", "  ipv6 {");
            snippet = edit_line(&snippet, "import where net.len = 32;", "    import all;");
        }
        let dir = self.path("router");
        std::fs::create_dir_all(&dir).unwrap();
        let included = dir.join("bird-bfd.conf");
        std::fs::write(&included, snippet).unwrap();
        let config = format!(
            r#"log "{log}" all;
router id {remote};
debug protocols {{ states, events }};
protocol device {{}}
include "{included}";
"#,
            log = dir.join("bird.log").display(),
            remote = self.remote4,
            included = included.display(),
        );
        NsBird::start(&self.nets.r(), &dir, &config)
    }

    fn start_frr_router(&self) -> Frr {
        assert!(
            self.setup.bfd && !self.setup.multihop,
            "the FRR lab is single-hop BFD"
        );
        let snippet = router_snippet("frr-bfd.conf", &self.remote, &self.local);
        let dir = self.path("frr");
        let config = format!(
            "log file {log} debugging\nlog timestamp precision 3\ndebug bfd peer\ndebug bgp neighbor-events\ndebug bgp bfd\n{snippet}",
            log = dir.join("frr.log").display(),
        );
        Frr::start(&self.nets.r(), &dir, &self.remote, &config)
    }

    // ---- the speaker in A ------------------------------------------------------

    fn start_speaker(&mut self) {
        let speaker = if standin() {
            eprintln!(
                "n={}: ANYCASTD_BFD_STANDIN=bird: BIRD speaks for anycastd",
                self.setup.n
            );
            Speaker::Bird(self.start_standin())
        } else {
            Speaker::Anycastd(self.start_anycastd())
        };
        self.speaker = Some(speaker);
    }

    fn write_anycastd_config(&self) -> PathBuf {
        let s = &self.setup;
        let mut peer = format!(
            "name: {PEER}, remote_address: \"{remote}\", remote_asn: {REMOTE_AS}, hold_time: 3s",
            remote = self.remote,
        );
        if s.bfd {
            peer.push_str(", bfd: {enabled: true, min_tx: 100ms, min_rx: 100ms, multiplier: 3}");
        }
        if s.multihop {
            peer.push_str(", enable_multihop: true");
        }
        if s.ipv6 {
            // The session's source; announcer.local_address (IPv4) stays
            // the router id's. An IPv6 route's next hop is then this
            // address.
            peer.push_str(&format!(", local_address: \"{}\"", self.local));
        }
        let config = format!(
            r#"announcer:
  router_id: "{local}"
  local_address: "{local}"
  local_asn: {LOCAL_AS}
  routes: ["{prefix}"]
  peers:
    - {{{peer}}}
{services}metrics: {{enabled: true, address: "{METRICS}"}}
"#,
            local = self.local4,
            prefix = self.prefix,
            services = web_service_yaml(&self.http.url("/health")),
        );
        let path = self.path("anycastd.yaml");
        std::fs::write(&path, config).unwrap();
        path
    }

    fn start_anycastd(&self) -> Daemon {
        let config = self.write_anycastd_config();
        let a = self.nets.a();
        spawn_anycastd(
            &["ip", "netns", "exec", &a],
            &config,
            "debug",
            &self.path("anycastd.log"),
        )
    }

    /// BIRD in A with what anycastd's config says: same address, AS, hold
    /// time, BFD timers and route.
    fn start_standin(&self) -> NsBird {
        let s = &self.setup;
        let dir = self.path("standin");
        let config = format!(
            r#"log "{log}" all;
router id {router_id};
debug protocols {{ states, events }};
protocol device {{}}
protocol static {{ {family}; route {prefix} blackhole; }}
protocol bfd {{
  interface "*" {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
  multihop {{ min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }};
}}
protocol bgp r1 {{
  local {local} as {LOCAL_AS};
  neighbor {remote} as {REMOTE_AS};
  hold time 3;
  {multihop}
  {bfd}
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  {family} {{ import none; export where net = {prefix}; }};
}}
"#,
            log = dir.join("bird.log").display(),
            router_id = self.local4,
            family = if s.ipv6 { "ipv6" } else { "ipv4" },
            local = self.local,
            remote = self.remote,
            prefix = self.prefix,
            multihop = if s.multihop { "multihop;" } else { "" },
            bfd = if s.bfd { "bfd on;" } else { "" },
        );
        NsBird::start(&self.nets.a(), &dir, &config)
    }

    fn speaker_pid(&self) -> i32 {
        self.speaker.as_ref().expect("speaker running").pid()
    }

    /// Whether the speaker in A was started and has exited since (a
    /// zombie counts: its guard reaps it).
    fn speaker_exited(&self) -> bool {
        let Some(speaker) = &self.speaker else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{}/stat", speaker.pid())) {
            // `PID (COMM) STATE ...`; COMM may hold spaces and parentheses.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    fn speaker_log(&self) -> String {
        match self.speaker {
            Some(Speaker::Bird(ref b)) => tail(&b.log, 40),
            _ => tail(&self.path("anycastd.log"), 40),
        }
    }

    /// `anycastd_bfd_state` for this peer from anycastd's metrics (3 = Up,
    /// 1 = Down), scraped inside namespace A; `None` when not exported, not
    /// reachable, or under the stand-in.
    fn anycastd_bfd_state(&self) -> Option<f64> {
        let metrics = self.anycastd_metrics()?;
        metric_sample(&metrics, "anycastd_bfd_state", &[("peer", &self.remote)])
    }

    /// This peer's sample of `name` carrying `labels` too, 0 when not
    /// exported (a counter appears at its first increment).
    fn peer_sample(&self, metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("peer", self.remote.as_str())];
        all.extend_from_slice(labels);
        metric_sample(metrics, name, &all).unwrap_or(0.0)
    }

    /// `anycastd_bfd_state_changes_total` for this peer, all states.
    fn anycastd_bfd_changes(&self, metrics: &str) -> f64 {
        ["admin_down", "down", "init", "up"]
            .iter()
            .map(|state| {
                self.peer_sample(
                    metrics,
                    "anycastd_bfd_state_changes_total",
                    &[("state", state)],
                )
            })
            .sum()
    }

    /// This peer in anycastd's `/status` (`peers.r1`), fetched from
    /// inside namespace A; `None` under the stand-in or when not reachable.
    fn anycastd_peer_status(&self) -> Option<serde_json::Value> {
        if !matches!(self.speaker, Some(Speaker::Anycastd(_))) {
            return None;
        }
        let body = in_netns(&self.nets.a(), || http_get(METRICS, "/status"))?;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        status["peers"].get(PEER).cloned()
    }

    /// How often anycastd's log says `text`.
    fn anycastd_log_count(&self, text: &str) -> usize {
        std::fs::read_to_string(self.path("anycastd.log"))
            .unwrap_or_default()
            .matches(text)
            .count()
    }

    /// Polls anycastd's metrics and `/status` (every 50 ms, at most
    /// [`ANYCASTD_LAG`]) until `condition` holds for them; fails with what
    /// they said last. Nothing under the stand-in.
    fn assert_anycastd(
        &self,
        what: &str,
        condition: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> (String, serde_json::Value) {
        let start = Instant::now();
        loop {
            let metrics = self.anycastd_metrics().unwrap_or_default();
            let peer = self.anycastd_peer_status().unwrap_or_default();
            if condition(&metrics, &peer) {
                return (metrics, peer);
            }
            if start.elapsed() >= ANYCASTD_LAG {
                let bfd_lines: Vec<&str> = metrics
                    .lines()
                    .filter(|l| l.starts_with("anycastd_bfd") || l.starts_with("anycastd_bgp_held"))
                    .collect();
                panic!(
                    "{:?} n={}: anycastd: {what}: not within {ANYCASTD_LAG:?}\n\
                     --- anycastd /status peers.{PEER} ---\n{peer:#}\n\
                     --- anycastd BFD metrics ---\n{}\n{}",
                    self.setup.router,
                    self.setup.n,
                    bfd_lines.join("\n"),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// anycastd's own view once the router's says Up: BFD Up (state 3)
    /// at the asked-for timers (100 ms x 3: tx 0.1 s, detection 0.3 s) in
    /// its metrics, and in `/status` the session and the path Up and BGP
    /// Established. Nothing under the stand-in.
    fn assert_anycastd_up(&self, when: &str) {
        if standin() {
            return;
        }
        let near = |v: f64, want: f64| (v - want).abs() < 1e-9;
        let (metrics, peer) = self.assert_anycastd(
            &format!("BFD Up at 100 ms x 3, path up, BGP established ({when})"),
            |metrics, peer| {
                self.peer_sample(metrics, "anycastd_bfd_state", &[]) == 3.0
                    && near(
                        self.peer_sample(metrics, "anycastd_bfd_tx_interval_seconds", &[]),
                        0.1,
                    )
                    && near(
                        self.peer_sample(metrics, "anycastd_bfd_detection_time_seconds", &[]),
                        0.3,
                    )
                    && peer["bfd"]["state"] == "up"
                    && peer["bfd"]["path"] == "up"
                    && peer["bgp"] == "established"
            },
        );
        eprintln!(
            "{:?} n={}: anycastd ({when}): BFD {} path {} (tx {} ms, detection {} ms, {} changes), BGP {}; {} state changes in metrics",
            self.setup.router,
            self.setup.n,
            peer["bfd"]["state"],
            peer["bfd"]["path"],
            peer["bfd"]["tx_interval_ms"],
            peer["bfd"]["detection_time_ms"],
            peer["bfd"]["changes"],
            peer["bgp"],
            self.anycastd_bfd_changes(&metrics),
        );
        // The status page's peers table says the same (issue 15).
        let page = in_netns(&self.nets.a(), || http_get(METRICS, "/")).unwrap_or_default();
        let peers = page
            .find("<section id=\"peers\">")
            .map(|at| &page[at..])
            .unwrap_or_default();
        assert!(
            peers.contains(&format!("<code>{}</code>", self.remote))
                && peers.contains(">established</span>")
                && peers
                    .contains(">up</span> <span class=\"mute\">tx 100 ms, detection 300 ms</span>")
                && peers.contains("<td>1 route</td>"),
            "the status page's peers table ({when}): {peers}"
        );
        // And `anycastd status`'s PEER table.
        let mut status = Netns::exec(&self.nets.a(), &anycastd_bin().display().to_string());
        status.args(["status", "--url", &format!("http://{METRICS}")]);
        let (_, table) = output_within(status, Duration::from_secs(10));
        let row = table
            .lines()
            .find(|line| line.contains(&self.remote))
            .unwrap_or_default();
        assert!(
            row.contains("established") && row.contains("up (tx 100ms, detection 300ms)"),
            "anycastd status's peer row ({when}): {row:?} in\n{table}"
        );
    }

    /// anycastd's `/metrics`, fetched from inside namespace A; `None` under
    /// the stand-in or when not reachable.
    fn anycastd_metrics(&self) -> Option<String> {
        if !matches!(self.speaker, Some(Speaker::Anycastd(_))) {
            return None;
        }
        in_netns(&self.nets.a(), || http_get(METRICS, "/metrics"))
    }

    /// Something in A (anycastd) receives BFD on UDP `port`: 3784 single
    /// hop (RFC 5881), 4784 multihop (RFC 5883); on an IPv6 socket with
    /// [`Setup::ipv6`].
    fn assert_listening_in_a(&self, port: u16) {
        let mut ss = Netns::exec(&self.nets.a(), "ss");
        let family = if self.setup.ipv6 { "-6" } else { "-4" };
        ss.args(["-Hlunp", family, &format!("sport = :{port}")]);
        let (_, out) = output_within(ss, Duration::from_secs(5));
        assert!(
            !out.trim().is_empty(),
            "nothing in A listens on UDP {port}\n{}",
            self.diagnostics()
        );
        eprintln!("n={}: UDP {port} in A: {}", self.setup.n, out.trim());
    }

    // ---- the router's view -------------------------------------------------------

    fn router(&self) -> &Router {
        self.router.as_ref().expect("router running")
    }

    fn has_route(&self) -> bool {
        match self.router() {
            Router::Bird(bird) => bird.has_route(&self.prefix),
            Router::Frr(frr) => {
                let command = format!("show bgp ipv4 unicast {} json", self.prefix);
                let answer = frr
                    .vty("bgpd", &command)
                    .unwrap_or_else(|| frr.vtysh("bgpd", &command).1);
                answer.contains(&format!("\"prefix\":\"{}\"", self.prefix))
            }
        }
    }

    fn bfd_sessions(&self) -> String {
        match self.router() {
            Router::Bird(bird) => bird.birdc("show bfd sessions"),
            Router::Frr(frr) => {
                let command = "show bfd peers json";
                frr.vty("bfdd", command)
                    .unwrap_or_else(|| frr.vtysh("bfdd", command).1)
            }
        }
    }

    /// Whether the router's BFD session with anycastd is Up.
    fn bfd_up(&self) -> bool {
        let sessions = self.bfd_sessions();
        match self.router() {
            Router::Bird(_) => sessions.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.first() == Some(&self.local.as_str()) && words.get(2) == Some(&"Up")
            }),
            Router::Frr(_) => serde_json::from_str::<serde_json::Value>(&sessions)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .any(|p| p["peer"] == self.local.as_str() && p["status"] == "up"),
        }
    }

    /// BIRD's session line for anycastd (`show bfd sessions`).
    fn bird_bfd_line(&self) -> Option<String> {
        self.bfd_sessions()
            .lines()
            .find(|l| l.split_whitespace().next() == Some(self.local.as_str()))
            .map(String::from)
    }

    /// BIRD's `show route PREFIX all`.
    fn router_route_detail(&self) -> String {
        match self.router() {
            Router::Bird(bird) => bird.birdc(&format!("show route {} all", self.prefix)),
            Router::Frr(frr) => frr.vtysh("bgpd", &format!("show bgp {}", self.prefix)).1,
        }
    }

    fn bgp_status(&self) -> String {
        match self.router() {
            Router::Bird(bird) => bird.birdc("show protocols all anycastd_bfd"),
            Router::Frr(frr) => {
                frr.vtysh("bgpd", &format!("show bgp neighbors {}", self.local))
                    .1
            }
        }
    }

    fn router_log(&self) -> String {
        match self.router() {
            Router::Bird(bird) => tail(&bird.log, 40),
            Router::Frr(frr) => tail(&frr.vty.join("frr.log"), 40),
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- router BFD ---\n{}\n--- router BGP ---\n{}\n--- router log ---\n{}\n--- speaker log ---\n{}",
            self.bfd_sessions(),
            self.bgp_status(),
            self.router_log(),
            self.speaker_log(),
        )
    }

    /// Waits (`timeout`, polling every 50 ms) for `condition`; fails with
    /// both sides' state and logs. Returns how long it took.
    fn wait(&self, timeout: Duration, what: &str, condition: impl Fn(&Lab) -> bool) -> Duration {
        let start = Instant::now();
        for _ in 0..100_000 {
            if condition(self) {
                return start.elapsed();
            }
            if start.elapsed() >= timeout {
                break;
            }
            if self.speaker_exited() {
                panic!(
                    "{:?} n={}: {what}: the speaker in A (anycastd) exited\n{}",
                    self.setup.router,
                    self.setup.n,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{:?} n={}: {what}: not within {timeout:?}\n{}",
            self.setup.router,
            self.setup.n,
            self.diagnostics()
        );
    }

    /// The route at the router and (with BFD) the router's BFD session Up,
    /// both then staying so for [`SETTLE`] (a flap right after coming up
    /// would spoil the next measurement). Returns how long until both were
    /// first up.
    fn wait_up(&self, timeout: Duration, when: &str) -> Duration {
        let start = Instant::now();
        self.wait(
            timeout,
            &format!("the route never appeared at the router ({when})"),
            Lab::has_route,
        );
        if self.setup.bfd {
            self.wait(
                timeout.saturating_sub(start.elapsed()),
                &format!("the BFD session never came Up at the router ({when})"),
                Lab::bfd_up,
            );
        }
        let up = |lab: &Lab| lab.has_route() && (!lab.setup.bfd || lab.bfd_up());
        let first = start.elapsed();
        let mut steady = Instant::now();
        let mut flaps = 0;
        for _ in 0..100_000 {
            if !up(self) {
                flaps += 1;
                self.wait(
                    (timeout + SETTLE).saturating_sub(start.elapsed()),
                    &format!("route and BFD session back after a flap ({when})"),
                    up,
                );
                steady = Instant::now();
            }
            if steady.elapsed() >= SETTLE {
                break;
            }
            assert!(
                start.elapsed() < timeout + SETTLE,
                "{:?} n={}: the route and the BFD session did not stay up for {SETTLE:?} \
                 ({when}, {flaps} flaps)\n{}",
                self.setup.router,
                self.setup.n,
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if flaps > 0 {
            eprintln!(
                "{:?} n={}: {flaps} flap(s) after coming up ({when})",
                self.setup.router, self.setup.n
            );
        }
        first
    }

    /// Polls the router every [`POLL`] from `start` until the route is
    /// gone, at most `limit`, watching the BFD session too (with BFD).
    fn time_until_gone(&self, start: Instant, limit: Duration) -> Option<Withdrawal> {
        let mut last_seen = Duration::ZERO;
        let mut bfd_down = None;
        for _ in 0..100_000 {
            if self.setup.bfd && bfd_down.is_none() && !self.bfd_up() {
                bfd_down = Some(start.elapsed());
            }
            let asked = start.elapsed();
            if !self.has_route() {
                let gone = start.elapsed();
                if self.setup.bfd && bfd_down.is_none() && !self.bfd_up() {
                    bfd_down = Some(start.elapsed());
                }
                return Some(Withdrawal {
                    bfd_down,
                    last_seen,
                    gone,
                });
            }
            last_seen = asked;
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(POLL);
        }
        None
    }

    /// How long after a fault the route may still be at the router: the
    /// detection time and 50 ms for BIRD; FRR itself takes 60 to 70 ms from
    /// BFD Down to the route leaving its BGP table (bgpd's clearing and
    /// route-processing work queues, measured with `log timestamp precision
    /// 3`), so 100 ms there.
    fn route_budget(&self) -> Duration {
        match self.setup.router {
            RouterKind::Bird => DETECT_BUDGET,
            RouterKind::Frr => Duration::from_millis(400),
        }
    }

    /// Applies `fault`, times the router's BFD Down and the route's
    /// withdrawal, asserts them within [`DETECT_BUDGET`] and
    /// [`Lab::route_budget`], ends the fault and waits for BFD and the
    /// route to come back. Returns the withdrawal.
    ///
    /// anycastd's side too (not under the stand-in): its own BFD session
    /// went Down (a change to `down`, "BFD session down" logged) and is Up
    /// again (a new change to `up`, and [`Lab::assert_anycastd_up`]).
    /// It also closed BGP itself (`anycastd_bgp_held_by_bfd_total` up by
    /// one at least), and while the link is cut its `/status` says the
    /// path is down and BGP is not established. After a freeze, the Down
    /// is over within a millisecond of SIGCONT (detection time long passed,
    /// the router's packets already queued): the BGP task still sees it
    /// (`BfdView::downs`) and closes the session.
    fn fault_and_recover(&self, fault: Fault) -> Withdrawal {
        let pid = self.speaker_pid();
        let n = self.setup.n;
        let kind = self.setup.router;
        assert!(self.has_route(), "{fault:?}: the route is there before");
        let before = self.anycastd_metrics();
        let held_by_bfd =
            |metrics: &str| self.peer_sample(metrics, "anycastd_bgp_held_by_bfd_total", &[]);
        let changes_to = |metrics: &str, state: &str| {
            self.peer_sample(
                metrics,
                "anycastd_bfd_state_changes_total",
                &[("state", state)],
            )
        };
        let went_down = "BFD session down";
        let downs_logged = self.anycastd_log_count(went_down);
        let (guard_frozen, guard_cut);
        let wall = wall_clock();
        let start = Instant::now();
        match fault {
            Fault::Freeze => {
                signal(pid, libc::SIGSTOP);
                guard_frozen = Some(Frozen(pid));
                guard_cut = None;
            }
            Fault::Cut => {
                self.nets.cut();
                guard_cut = Some(Cut(&self.nets));
                guard_frozen = None;
            }
        }
        let Some(w) = self.time_until_gone(start, Duration::from_secs(10)) else {
            panic!(
                "{kind:?} n={n}: {fault:?}: the route was still at the router 10 s later\n{}",
                self.diagnostics()
            );
        };
        eprintln!("{kind:?} n={n}: {fault:?} at {wall} UTC: {w}");
        let budget = self.route_budget();
        assert!(
            w.gone <= budget,
            "{kind:?} n={n}: {fault:?}: {w}: the route stayed more than {} ms\n{}",
            budget.as_millis(),
            self.diagnostics()
        );
        let bfd_down = w.bfd_down.unwrap_or(Duration::MAX);
        assert!(
            bfd_down <= DETECT_BUDGET,
            "{kind:?} n={n}: {fault:?}: {w}: the router's BFD session not Down within {} ms\n{}",
            DETECT_BUDGET.as_millis(),
            self.diagnostics()
        );
        if fault == Fault::Cut && !standin() {
            let start = Instant::now();
            let (_, peer) = self.assert_anycastd(
                "BFD path down and BGP not established while the link is cut",
                |_, peer| peer["bfd"]["path"] == "down" && peer["bgp"] != "established",
            );
            eprintln!(
                "{kind:?} n={n}: Cut: anycastd says BFD {} path {} (last down: {}), BGP {} ({} ms after the router's view)",
                peer["bfd"]["state"],
                peer["bfd"]["path"],
                peer["bfd"]["last_down"],
                peer["bgp"],
                start.elapsed().as_millis()
            );
        }
        // End the fault.
        drop(guard_frozen);
        drop(guard_cut);
        let back = self.wait_up(RESTORE, &format!("after the {fault:?} ended"));
        eprintln!(
            "{kind:?} n={n}: {fault:?} ended: BFD Up and the route back after {} ms",
            back.as_millis()
        );
        if let Some(before) = before {
            self.assert_anycastd_up(&format!("after the {fault:?} ended"));
            let held0 = held_by_bfd(&before);
            let (down0, up0) = (changes_to(&before, "down"), changes_to(&before, "up"));
            let held_asserted = true;
            let (after, _) = self.assert_anycastd(
                &format!(
                    "after the {fault:?}: state changes to down above {down0} and to up \
                     above {up0}, \"{went_down}\" logged again{}",
                    if held_asserted {
                        format!(", anycastd_bgp_held_by_bfd_total above {held0}")
                    } else {
                        String::new()
                    }
                ),
                |metrics, _| {
                    changes_to(metrics, "down") > down0
                        && changes_to(metrics, "up") > up0
                        && self.anycastd_log_count(went_down) > downs_logged
                        && (!held_asserted || held_by_bfd(metrics) > held0)
                },
            );
            eprintln!(
                "{kind:?} n={n}: {fault:?}: anycastd's BFD went down {} and up {} time(s), logged \"{went_down}\" {} time(s); it held BGP down for BFD {} time(s){}",
                changes_to(&after, "down") - down0,
                changes_to(&after, "up") - up0,
                self.anycastd_log_count(went_down) - downs_logged,
                held_by_bfd(&after) - held0,
                if held_asserted { "" } else { " (not asserted)" },
            );
        }
        w
    }
}

// ---- the tests -----------------------------------------------------------------

fn bird_lab(n: u8) -> Lab {
    bird_lab_with(Setup::new(RouterKind::Bird, n))
}

/// A single-hop BIRD lab, up: the route at BIRD, BIRD's BFD session Up on
/// R's interface, anycastd's view Up, something in A on UDP 3784.
fn bird_lab_with(setup: Setup) -> Lab {
    let n = setup.n;
    let mut lab = Lab::new(setup);
    lab.start_speaker();
    lab.wait_up(WAIT, "at start");
    let line = lab.bird_bfd_line().unwrap_or_default();
    eprintln!("n={n}: BIRD's BFD session: {line}");
    lab.assert_anycastd_up("at start");
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("vr"),
        "a single-hop session, on R's interface: {line}\n{}",
        lab.diagnostics()
    );
    lab.assert_listening_in_a(3784);
    lab
}

#[test]
fn bird_withdraws_within_detection_time_when_anycastd_freezes() {
    let lab = bird_lab(90);
    lab.fault_and_recover(Fault::Freeze);
}

#[test]
fn bird_withdraws_within_detection_time_when_the_link_goes_silent() {
    let lab = bird_lab(91);
    lab.fault_and_recover(Fault::Cut);
}

/// Without BFD only the hold timer (3 s) notices a frozen anycastd: the
/// route is still at the router 1 s after the freeze, and goes by 3 s
/// (+ 0.5 s). No tighter lower bound: the last KEEPALIVE came up to 1 s
/// (hold/3) before the freeze, and BIRD starts its hold timer at a random
/// 75 to 100 % of the hold time (RFC 4271 section 10 jitter), so the route
/// may go as early as 1.25 s after the freeze.
#[test]
fn without_bfd_bird_waits_for_the_hold_timer() {
    let mut setup = Setup::new(RouterKind::Bird, 92);
    setup.bfd = false;
    let mut lab = Lab::new(setup);
    lab.start_speaker();
    lab.wait_up(WAIT, "at start");
    if !standin() {
        // The scrape `anycastd_bfd_state` relies on works.
        let metrics = lab.anycastd_metrics().unwrap_or_default();
        assert!(
            metric_sample(
                &metrics,
                "anycastd_bgp_session_state",
                &[("peer", &lab.remote)]
            ) == Some(6.0),
            "anycastd's metrics, scraped in A, say Established:\n{metrics}"
        );
    }
    let pid = lab.speaker_pid();
    let start = Instant::now();
    signal(pid, libc::SIGSTOP);
    let _frozen = Frozen(pid);
    std::thread::sleep(Duration::from_secs(1).saturating_sub(start.elapsed()));
    assert!(
        lab.has_route(),
        "without BFD the route is still there 1 s after the freeze\n{}",
        lab.diagnostics()
    );
    let Some(w) = lab.time_until_gone(start, Duration::from_secs(10)) else {
        panic!(
            "the route outlived the hold timer by far (10 s)\n{}",
            lab.diagnostics()
        );
    };
    eprintln!("n=92: no BFD: Freeze: {w}");
    assert!(
        w.gone <= Duration::from_millis(3500),
        "without BFD the route goes with the hold timer (3 s): {w}\n{}",
        lab.diagnostics()
    );
}

#[test]
fn frr_withdraws_within_detection_time_on_freeze_and_on_silent_link() {
    let mut lab = Lab::new(Setup::new(RouterKind::Frr, 93));
    lab.start_speaker();
    lab.wait_up(WAIT, "at start");
    lab.assert_anycastd_up("at start");
    lab.fault_and_recover(Fault::Freeze);
    lab.fault_and_recover(Fault::Cut);
}

#[test]
fn bird_multihop_bfd_session_withdraws_on_freeze() {
    let mut setup = Setup::new(RouterKind::Bird, 94);
    setup.multihop = true;
    let mut lab = Lab::new(setup);
    lab.start_speaker();
    lab.wait_up(WAIT, "at start");
    // BIRD shows no interface for a multihop session.
    let line = lab.bird_bfd_line().unwrap_or_default();
    eprintln!("n=94: BIRD's multihop BFD session: {line}");
    assert_eq!(
        line.split_whitespace().nth(1),
        Some("---"),
        "a multihop session (no interface): {line}\n{}",
        lab.diagnostics()
    );
    lab.assert_listening_in_a(4784);
    lab.assert_anycastd_up("at start");
    lab.fault_and_recover(Fault::Freeze);
}

/// BGP and BFD over IPv6 (RFC 5881 section 5: hop limit 255, checked on
/// receipt): anycastd 2001:db8:96::1 (the peer's `local_address`; its
/// router id and `announcer.local_address` stay 10.96.1.1), BIRD
/// 2001:db8:96::2 with the same contrib/router/bird-bfd.conf, its channel
/// made `ipv6 { import all; export none; }`. The route is IPv6
/// (2001:db8:ffff::96/128, next hop the session's address), so no IPv4
/// next hop question arises. BIRD's BFD session is single hop on R's
/// interface; a freeze takes the route within the detection time, and
/// SIGCONT brings it back.
#[test]
fn bird_ipv6_bfd_session_withdraws_on_freeze() {
    let mut setup = Setup::new(RouterKind::Bird, 96);
    setup.ipv6 = true;
    let lab = bird_lab_with(setup);
    let bgp = lab.bgp_status();
    assert!(
        bgp.contains("Neighbor address: 2001:db8:96::1"),
        "BIRD's BGP session is the IPv6 one:\n{bgp}"
    );
    let route = lab.router_route_detail();
    assert!(
        route.contains("BGP.next_hop: 2001:db8:96::1"),
        "the route's next hop is anycastd's IPv6 address on the link:\n{route}"
    );
    lab.fault_and_recover(Fault::Freeze);
}

/// Sends junk at `DST`:`PORT` for `SECONDS` s, at most `LIMIT` packets,
/// at most `RATE` a second (0: as fast as it goes), cycling through three
/// kinds; prints what it sent as JSON. Nothing it sends can pass for the
/// real peer: random bytes whose version is never 1 (some longer than a
/// receive buffer); well-formed control packets (state Down, random My
/// and Your Discriminator) with the default TTL; the same with TTL 255 but
/// a Your Discriminator never anycastd's (whose low 16 bits are the
/// session's index + 1: here 1). Never Your Discriminator 0 with TTL 255:
/// from R's address that *is* the peer speaking.
const FLOOD: &str = r#"
import json, random, socket, struct, sys, time
dst, port, seconds, limit, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def control():
    your = 0
    while your == 0 or your & 0xffff == 1:
        your = random.getrandbits(32)
    mine = random.getrandbits(32) or 1
    return struct.pack("!BBBBIIIII", 0x20, 0x40, 3, 24, mine, your, 1000000, 1000000, 0)
def junk():
    data = bytearray(random.getrandbits(8) for _ in range(random.randint(1, 200)))
    if data[0] >> 5 == 1:
        data[0] ^= 0x80
    return bytes(data)
ttl64 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ttl255 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ttl255.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
kinds = [
    ("junk_ttl255", ttl255, [junk() for _ in range(1024)]),
    ("control_ttl64", ttl64, [control() for _ in range(1024)]),
    ("control_ttl255_unknown", ttl255, [control() for _ in range(1024)]),
]
sent = {name: 0 for name, _, _ in kinds}
errors = 0
to = (dst, port)
start = time.monotonic()
end = start + seconds
i = 0
while i < limit:
    if i & 255 == 0:
        now = time.monotonic()
        if now >= end:
            break
        if rate and start + i / rate > now:
            time.sleep(start + i / rate - now)
    name, sock, pool = kinds[i % 3]
    try:
        sock.sendto(pool[(i // 3) & 1023], to)
        sent[name] += 1
    except OSError:
        errors += 1
    i += 1
print(json.dumps({"sent": sent, "total": sum(sent.values()), "errors": errors, "seconds": round(time.monotonic() - start, 3)}))
"#;

/// How many packets a second [`FLOOD`] sends at most: more than a python3
/// loop manages (110,000 to 140,000 a second here), so the flood is as
/// fast as the sender. The first version of the BFD thread (a wakeup, a
/// registry lookup and a debug line per packet) did not keep up: A's
/// kernel dropped a third for a full receive buffer, the router's real
/// packets among them, and the session went Down in 4 runs of 7. Reading
/// up to 64 datagrams per wakeup with cached counters and no log line, a
/// debug build keeps up (0 dropped by the kernel, 3 runs of 3).
const FLOOD_RATE: u32 = 200_000;

/// `RcvbufErrors` of UDP in namespace `ns` (`/proc/net/snmp`): datagrams
/// its kernel dropped because a socket's receive buffer was full.
fn udp_receive_buffer_errors(ns: &str) -> i64 {
    let mut cat = Netns::exec(ns, "cat");
    cat.arg("/proc/net/snmp");
    let (_, text) = output_within(cat, Duration::from_secs(5));
    let udp: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("Udp: "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let [names, values] = &udp[..] else {
        return 0;
    };
    names
        .iter()
        .position(|name| *name == "RcvbufErrors")
        .and_then(|i| values.get(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kills a child on drop unless taken (a failing test must not leave a
/// flood running).
struct Killed(Option<std::process::Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Junk at anycastd's single-hop port, from the router's namespace, for
/// 3 s (or 300,000 packets) as fast as python3 sends (see [`FLOOD_RATE`]):
/// random bytes, well-formed packets with TTL 64, well-formed packets with TTL
/// 255 for a discriminator nobody has (see [`FLOOD`]). The BFD session
/// stays Up on both sides throughout and after (BIRD's "Since" unchanged
/// but for its display jitter, no "changed state from Up" in its log, no
/// change in `anycastd_bfd_state_changes_total`), the route stays at
/// the router, and anycastd counts the drops as `malformed`, `ttl` and
/// `unknown_peer`.
#[test]
fn bird_bfd_session_survives_a_flood_of_junk() {
    require(&[("python3", "python3")]);
    let n = 95;
    let lab = bird_lab(n);
    // BIRD's session: state and "Since" (HH:MM:SS.mmm) in ms of the day.
    // BIRD keeps Since on its monotonic clock and prints it on the wall
    // clock, a few ms apart from one `show` to the next: a real flap
    // moves it by a detection time and more.
    let since = |lab: &Lab| {
        let line = lab.bird_bfd_line().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        let ms = words.get(3).and_then(|t| {
            let (hms, ms) = t.split_once('.')?;
            let parts: Vec<u64> = hms
                .split(':')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let [h, m, s] = parts[..] else { return None };
            Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<u64>().ok()?)
        });
        (words.get(2).map(|s| s.to_string()), ms, line)
    };
    let (state, session_since, line) = since(&lab);
    assert!(
        state.as_deref() == Some("Up") && session_since.is_some(),
        "BIRD's session Up before the flood: {line}\n{}",
        lab.diagnostics()
    );
    let session_since = session_since.unwrap_or_default();
    let router_downs = |lab: &Lab| {
        let Some(Router::Bird(bird)) = &lab.router else {
            return 0;
        };
        std::fs::read_to_string(&bird.log)
            .unwrap_or_default()
            .matches("changed state from Up")
            .count()
    };
    let router_downs_before = router_downs(&lab);
    let reasons = ["malformed", "ttl", "unknown_peer"];
    let dropped = |metrics: &str, reason: &str| {
        metric_sample(
            metrics,
            "anycastd_bfd_packets_dropped_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    let overflowed = || udp_receive_buffer_errors(&lab.nets.a());
    let overflowed_before = overflowed();
    let before = lab.anycastd_metrics();
    let changes = before.as_deref().map(|m| lab.anycastd_bfd_changes(m));
    // Everything that must hold during and after the flood.
    let check = |lab: &Lab, when: &str| {
        let (state, now, line) = since(lab);
        assert!(
            state.as_deref() == Some("Up")
                && now.is_some_and(|now| now.abs_diff(session_since) <= 100)
                && router_downs(lab) == router_downs_before,
            "BIRD's BFD session changed ({when}): now {line}, Up since {session_since} ms of the day\n{}",
            lab.diagnostics()
        );
        assert!(
            lab.has_route(),
            "the route left the router ({when})\n{}",
            lab.diagnostics()
        );
        if let Some(changes) = changes {
            let metrics = lab.anycastd_metrics().unwrap_or_default();
            assert_eq!(
                lab.anycastd_bfd_changes(&metrics),
                changes,
                "anycastd's BFD session changed state ({when})\n{}",
                lab.diagnostics()
            );
        }
    };

    let mut flood = Netns::exec(&lab.nets.r(), "python3");
    flood
        .args(["-c", FLOOD, &lab.local, "3784", "3", "300000"])
        .arg(FLOOD_RATE.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut flood = Killed(Some(flood.spawn().expect("start python3")));
    let mut polls = 0;
    while let Some(child) = &mut flood.0
        && child.try_wait().expect("the flood").is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the flood did not end within 15 s"
        );
        check(&lab, "during the flood");
        polls += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    let child = flood.0.take().expect("the flood");
    let out = child.wait_with_output().expect("the flood's output");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the flood failed: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(report.trim())
        .unwrap_or_else(|e| panic!("the flood's report {report:?}: {e}"));
    eprintln!(
        "n={n}: flood from R for {} ms at most {FLOOD_RATE}/s ({polls} polls during it): {report}; \
         A's kernel dropped {} for a full receive buffer",
        took.as_millis(),
        overflowed() - overflowed_before,
    );
    // After: a second more of the same.
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(1) {
        check(&lab, "after the flood");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        report["total"].as_u64().unwrap_or(0) > 0,
        "the flood sent nothing: {report}"
    );
    let Some(before) = before else {
        return;
    };
    assert_eq!(
        lab.anycastd_bfd_state(),
        Some(3.0),
        "anycastd's BFD session Up after the flood\n{}",
        lab.diagnostics()
    );
    let metrics = lab.anycastd_metrics().unwrap_or_default();
    let counts: Vec<(&str, f64)> = reasons
        .iter()
        .map(|r| (*r, dropped(&metrics, r) - dropped(&before, r)))
        .collect();
    eprintln!("n={n}: anycastd dropped during the flood: {counts:?}");
    for (reason, count) in counts {
        assert!(
            count > 0.0,
            "anycastd counted no packet dropped as {reason}: {report}\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("anycastd_bfd_packets_dropped_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
