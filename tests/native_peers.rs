//! The native backend (anycastd's own BGP speaker) against three real BGP
//! implementations: BIRD 2, GoBGP and FRR, each over eBGP and iBGP. A real
//! HTTP server decides the service's health; the verdict is the peer's own
//! RIB, read with the peer's own CLI. Every peer also announces a route of
//! its own to anycastd, and BIRD and FRR ask for a ROUTE-REFRESH: anycastd
//! must take both without complaint.
//!
//! BIRD tests use a loopback pair 127.0.N.1 (anycastd) / 127.0.N.2 (BIRD,
//! bound to its own address only), N in 50..=79. FRR and GoBGP refuse a
//! 127.0.0.0/8 NEXT_HOP (FRR with a NOTIFICATION, GoBGP by dropping the
//! route), so their tests run anycastd and the peer in two network
//! namespaces joined by a veth pair (10.N.1.1 / 10.N.1.2, 2001:db8:N::1/2);
//! the multihop test puts a router namespace between them, so that the TTL
//! really is decremented on the way.
//!
//! Packages: bird2, gobgpd, frr, iproute2 (and root).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const LOCAL_AS: u32 = 65001;
const REMOTE_AS: u32 = 65002;
/// What every peer announces to anycastd (which decodes and ignores it).
const PEER_V4: &str = "198.51.100.0/24";
const PEER_V6: &str = "2001:db8:100::/48";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Bird,
    Gobgp,
    Frr,
}

impl Kind {
    fn require(self) {
        match self {
            Kind::Bird => require(&[("bird", "bird2"), ("birdc", "bird2")]),
            Kind::Gobgp => require(&[("gobgpd", "gobgpd"), ("gobgp", "gobgpd")]),
            Kind::Frr => require(&[("/usr/lib/frr/bgpd", "frr"), ("vtysh", "frr")]),
        }
    }
}

/// What one test sets up.
#[derive(Clone, Debug)]
struct Setup {
    kind: Kind,
    n: u8,
    ibgp: bool,
    /// Also announce an IPv6 route (over an IPv4 session unless
    /// `ipv6_session`).
    v6: bool,
    /// TCP-MD5 key on both sides.
    password: Option<&'static str>,
    /// anycastd's `hold_time` for the peer (seconds).
    hold_time: Option<u16>,
    /// anycastd's `multihop_ttl` (with `enable_multihop`); the peer is then
    /// one router away and allows TTL 2 itself.
    multihop_ttl: Option<u8>,
    /// Run anycastd and the peer in their own network namespaces.
    netns: bool,
    /// An IPv6 session (namespaces only): anycastd 2001:db8:N::1, the peer
    /// 2001:db8:N::2.
    ipv6_session: bool,
    /// On an IPv6 session: whether `announcer.local_address` is an IPv4
    /// address (the IPv4 routes' NEXT_HOP), with the session's own address
    /// as the peer's `local_address`.
    ipv4_next_hop: bool,
    /// anycastd waits for the peer to connect (`passive: true`).
    passive: bool,
    /// Lines added under `announcer:` (two-space indent), e.g. attributes.
    announcer_extra: String,
}

impl Setup {
    fn new(kind: Kind, n: u8, ibgp: bool) -> Setup {
        assert!((50..=79).contains(&n), "this file owns 127.0.50-79.x");
        Setup {
            kind,
            n,
            ibgp,
            v6: false,
            password: None,
            hold_time: None,
            multihop_ttl: None,
            netns: false,
            ipv6_session: false,
            ipv4_next_hop: false,
            passive: false,
            announcer_extra: String::new(),
        }
    }

    fn remote_as(&self) -> u32 {
        if self.ibgp { LOCAL_AS } else { REMOTE_AS }
    }
}

// ---- network namespaces -----------------------------------------------------

/// Namespaces A (anycastd) and B (the peer), either on one link
/// (10.N.1.1 ── 10.N.1.2) or with a router R between them
/// (10.N.1.1 ── R ── 10.N.2.2). Deleted on drop, with their links.
struct Netns {
    names: Vec<String>,
    routed: bool,
}

impl Netns {
    fn build(n: u8, routed: bool) -> Netns {
        require(&[("ip", "iproute2")]);
        let pid = std::process::id();
        let mut nets = Netns {
            names: Vec::new(),
            routed,
        };
        let parts: &[&str] = if routed {
            &["a", "b", "r"]
        } else {
            &["a", "b"]
        };
        for part in parts {
            let name = format!("acd-np{pid}-{n}{part}");
            nets.ip(&["netns", "add", &name]);
            // Recorded at once: a later failure still deletes it.
            nets.names.push(name);
        }
        let (a, b) = (nets.a().to_string(), nets.b().to_string());
        // Links are created inside the namespaces: the host's are never touched.
        let mut cmds = vec![
            format!("-n {a} link set lo up"),
            format!("-n {b} link set lo up"),
        ];
        if routed {
            let r = nets.names[2].clone();
            cmds.extend([
                format!("-n {r} link set lo up"),
                format!("-n {a} link add va type veth peer name vra netns {r}"),
                format!("-n {r} link add vrb type veth peer name vb netns {b}"),
                format!("-n {a} addr add 10.{n}.1.1/24 dev va"),
                format!("-n {r} addr add 10.{n}.1.254/24 dev vra"),
                format!("-n {r} addr add 10.{n}.2.254/24 dev vrb"),
                format!("-n {b} addr add 10.{n}.2.2/24 dev vb"),
                format!("-n {a} link set va up"),
                format!("-n {r} link set vra up"),
                format!("-n {r} link set vrb up"),
                format!("-n {b} link set vb up"),
                format!("-n {a} route add default via 10.{n}.1.254"),
                format!("-n {b} route add default via 10.{n}.2.254"),
                format!("netns exec {r} sysctl -qw net.ipv4.ip_forward=1"),
            ]);
        } else {
            cmds.extend([
                format!("-n {a} link add va type veth peer name vb netns {b}"),
                format!("-n {a} addr add 10.{n}.1.1/24 dev va"),
                format!("-n {b} addr add 10.{n}.1.2/24 dev vb"),
                format!("-n {a} addr add 2001:db8:{n}::1/64 dev va nodad"),
                format!("-n {b} addr add 2001:db8:{n}::2/64 dev vb nodad"),
                format!("-n {a} link set va up"),
                format!("-n {b} link set vb up"),
            ]);
        }
        for cmd in cmds {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            nets.ip(&args);
        }
        nets
    }

    /// anycastd's and the peer's addresses.
    fn addresses(&self, n: u8, ipv6: bool) -> (String, String) {
        if ipv6 {
            assert!(!self.routed, "IPv6 sessions are on one link here");
            (format!("2001:db8:{n}::1"), format!("2001:db8:{n}::2"))
        } else if self.routed {
            (format!("10.{n}.1.1"), format!("10.{n}.2.2"))
        } else {
            (format!("10.{n}.1.1"), format!("10.{n}.1.2"))
        }
    }

    fn ip(&self, args: &[&str]) {
        let mut c = Command::new("ip");
        c.args(args);
        let (ok, out) = output_within(c, Duration::from_secs(10));
        assert!(ok, "ip {}: {out}", args.join(" "));
    }

    fn a(&self) -> &str {
        &self.names[0]
    }

    fn b(&self) -> &str {
        &self.names[1]
    }

    /// ICMP Time Exceeded messages the router sent (packets it dropped
    /// because their TTL ran out).
    fn router_time_exceeded(&self) -> u64 {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[2], "cat", "/proc/net/snmp"]);
        let (_, snmp) = output_within(c, Duration::from_secs(5));
        let icmp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Icmp:")).collect();
        let (Some(names), Some(values)) = (icmp.first(), icmp.get(1)) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "OutTimeExcds")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
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

/// A [`HealthServer`] whose listening socket lives in namespace `ns`.
fn health_server_in(ns: &str) -> HealthServer {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on this (short-lived) thread only, with a valid fd
        // to a network namespace; the socket created next stays there.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        HealthServer::start()
    })
    .join()
    .expect("health server thread")
}

// ---- the peers ---------------------------------------------------------------

enum Peer {
    Bird(Bird),
    // The daemons are held for their Drop (stop and wait).
    Gobgp { _daemon: Daemon, api: u16 },
    Frr { _daemon: Daemon, vty: PathBuf },
}

// ---- the lab -------------------------------------------------------------------

struct Lab {
    setup: Setup,
    anycastd: Option<Daemon>,
    peer: Option<Peer>,
    http: HealthServer,
    /// After the daemons living in them.
    nets: Option<Netns>,
    local: String,
    remote: String,
    v4: String,
    v6: String,
    /// Last: dropped after the daemons living in it.
    dir: tempfile::TempDir,
}

impl Lab {
    /// Starts the peer and waits until it answers its CLI; anycastd is
    /// started separately.
    fn new(setup: Setup) -> Lab {
        setup.kind.require();
        let n = setup.n;
        let dir = scratch();
        let nets = (setup.netns || setup.ipv6_session || setup.multihop_ttl.is_some())
            .then(|| Netns::build(n, setup.multihop_ttl.is_some()));
        let (local, remote) = match &nets {
            Some(nets) => nets.addresses(n, setup.ipv6_session),
            None => (format!("127.0.{n}.1"), format!("127.0.{n}.2")),
        };
        let http = match &nets {
            Some(nets) => health_server_in(nets.a()),
            None => HealthServer::start(),
        };
        let mut lab = Lab {
            setup,
            anycastd: None,
            peer: None,
            http,
            nets,
            local,
            remote,
            v4: format!("192.0.2.{n}/32"),
            v6: format!("2001:db8::{n}/128"),
            dir,
        };
        lab.start_peer();
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ip netns exec NS` when the peer lives in a namespace.
    fn in_peer_ns(&self, program: &str) -> Command {
        match &self.nets {
            Some(nets) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", nets.b(), program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn peer_log(&self) -> PathBuf {
        self.path(match self.setup.kind {
            Kind::Bird => "bird/bird.log",
            Kind::Gobgp => "gobgpd.log",
            Kind::Frr => "frr/bgpd.log",
        })
    }

    fn start_peer(&mut self) {
        let peer = match self.setup.kind {
            Kind::Bird => self.start_bird(),
            Kind::Gobgp => self.start_gobgp(),
            Kind::Frr => self.start_frr(),
        };
        self.peer = Some(peer);
    }

    fn start_bird(&self) -> Peer {
        assert!(self.nets.is_none(), "BIRD runs on loopback here");
        let s = &self.setup;
        let bird_dir = self.path("bird");
        std::fs::create_dir_all(&bird_dir).unwrap();
        let password = s
            .password
            .map(|p| format!("password \"{p}\";"))
            .unwrap_or_default();
        let config = format!(
            r#"
log "{log}" all;
router id {remote};
protocol device {{}}
protocol static own4 {{ ipv4; route {own4} blackhole; }}
protocol static own6 {{ ipv6; route {own6} blackhole; }}
protocol bgp anycastd {{
  debug {{ routes, states }};
  local {remote} as {peer_as};
  neighbor {local} as {local_as};
  multihop;
  strict bind yes;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  {password}
  ipv4 {{ import all; export where proto = "own4"; }};
  ipv6 {{ import all; export where proto = "own6"; next hop address 2001:db8:ffff::2; }};
}}
"#,
            log = bird_dir.join("bird.log").display(),
            own4 = PEER_V4,
            own6 = PEER_V6,
            remote = self.remote,
            local = self.local,
            peer_as = s.remote_as(),
            local_as = LOCAL_AS,
        );
        Peer::Bird(Bird::start(&bird_dir, &config))
    }

    fn start_gobgp(&self) -> Peer {
        let s = &self.setup;
        let api = free_tcp_port();
        let password = s
            .password
            .map(|p| format!("    auth-password = \"{p}\"\n"))
            .unwrap_or_default();
        let multihop = s
            .multihop_ttl
            .map(|_| {
                // One router away: TTL 2 reaches us (whatever anycastd is trying).
                "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n"
                    .to_string()
            })
            .unwrap_or_default();
        let config = format!(
            r#"
[global.config]
  as = {peer_as}
  router-id = "{remote}"
  port = 179
  local-address-list = ["{remote}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{local}"
    peer-as = {local_as}
{password}  [neighbors.transport.config]
    local-address = "{remote}"
{multihop}  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#,
            peer_as = s.remote_as(),
            remote = self.remote,
            local = self.local,
            local_as = LOCAL_AS,
        );
        let conf = self.path("gobgpd.toml");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.peer_log())
            .unwrap();
        let child = self
            .in_peer_ns("gobgpd")
            .arg("-f")
            .arg(&conf)
            .args(["-t", "toml", "-p", "--log-level=debug", "--pprof-disable"])
            .arg(format!("--api-hosts=127.0.0.1:{api}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start gobgpd");
        let peer = Peer::Gobgp {
            _daemon: Daemon {
                child,
                name: "gobgpd",
            },
            api,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let (ok, out) = self.gobgp_with(api, &["neighbor"]);
            if ok && out.contains(&self.local) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gobgpd did not come up: {out}\n{}",
                tail(&self.peer_log(), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        for (family, prefix) in [("ipv4", PEER_V4), ("ipv6", PEER_V6)] {
            let (ok, out) = self.gobgp_with(api, &["global", "rib", "add", "-a", family, prefix]);
            assert!(ok, "gobgp global rib add {prefix}: {out}");
        }
        peer
    }

    fn start_frr(&self) -> Peer {
        let s = &self.setup;
        let vty = self.path("frr");
        std::fs::create_dir_all(&vty).unwrap();
        let local = &self.local;
        let password = s
            .password
            .map(|p| format!(" neighbor {local} password {p}\n"))
            .unwrap_or_default();
        let config = format!(
            r#"hostname peer{n}
log file {log} debugging
debug bgp neighbor-events
debug bgp updates
!
router bgp {peer_as}
 bgp router-id {router_id}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {local} remote-as {local_as}
 neighbor {local} update-source {remote}
{password} network {own4}
 !
 address-family ipv6 unicast
  network {own6}
  neighbor {local} activate
 exit-address-family
!
"#,
            n = s.n,
            log = self.peer_log().display(),
            peer_as = s.remote_as(),
            remote = self.remote,
            local_as = LOCAL_AS,
            own4 = PEER_V4,
            own6 = PEER_V6,
            router_id = if s.ipv6_session {
                format!("10.{}.1.2", s.n)
            } else {
                self.remote.clone()
            },
        );
        let conf = vty.join("bgpd.conf");
        std::fs::write(&conf, config).unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(vty.join("bgpd.out"))
            .unwrap();
        let child = self
            .in_peer_ns("/usr/lib/frr/bgpd")
            .args(["-Z", "-S", "-P", "0", "-p", "179", "-l", &self.remote])
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(vty.join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(&vty)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start bgpd");
        let peer = Peer::Frr {
            _daemon: Daemon {
                child,
                name: "bgpd",
            },
            vty: vty.clone(),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let (ok, out) = self.vtysh_at(&vty, "show bgp summary json");
            if ok && out.contains(local.as_str()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "FRR bgpd did not come up: {out}\n{}",
                tail(&vty.join("bgpd.out"), 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        peer
    }

    fn stop_peer(&mut self) {
        // Each guard stops its daemon and waits for it.
        self.peer = None;
    }

    // ---- peer CLIs -----------------------------------------------------------

    fn gobgp_with(&self, api: u16, args: &[&str]) -> (bool, String) {
        let mut c = self.in_peer_ns("gobgp");
        c.args(["-p", &api.to_string()]).args(args);
        output_within(c, Duration::from_secs(10))
    }

    fn vtysh_at(&self, vty: &Path, command: &str) -> (bool, String) {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket")
            .arg(vty)
            .args(["-d", "bgpd", "-c", command]);
        output_within(c, Duration::from_secs(10))
    }

    /// The peer's own view: its RIB for one family.
    fn rib(&self, v6: bool) -> String {
        match self.peer.as_ref().expect("peer running") {
            Peer::Bird(bird) => bird.birdc(if v6 {
                "show route table master6 all"
            } else {
                "show route table master4 all"
            }),
            Peer::Gobgp { api, .. } => {
                self.gobgp_with(
                    *api,
                    &["global", "rib", "-a", if v6 { "ipv6" } else { "ipv4" }],
                )
                .1
            }
            Peer::Frr { vty, .. } => {
                self.vtysh_at(
                    vty,
                    if v6 {
                        "show bgp ipv6 unicast json"
                    } else {
                        "show bgp ipv4 unicast json"
                    },
                )
                .1
            }
        }
    }

    fn has_route(&self, prefix: &str) -> bool {
        let v6 = prefix.contains(':');
        let rib = self.rib(v6);
        match self.setup.kind {
            Kind::Frr => rib.contains(&format!("\"{prefix}\"")),
            _ => rib
                .split(|c: char| c.is_whitespace() || c == '*' || c == '>')
                .any(|token| token == prefix),
        }
    }

    fn routes(&self) -> (bool, bool) {
        (
            self.has_route(&self.v4),
            self.setup.v6 && self.has_route(&self.v6),
        )
    }

    fn neighbor_status(&self) -> String {
        match self.peer.as_ref().expect("peer running") {
            Peer::Bird(bird) => bird.birdc("show protocols all anycastd"),
            Peer::Gobgp { api, .. } => self.gobgp_with(*api, &["neighbor", &self.local]).1,
            Peer::Frr { vty, .. } => {
                self.vtysh_at(vty, &format!("show bgp neighbors {} json", self.local))
                    .1
            }
        }
    }

    fn established(&self) -> bool {
        let status = self.neighbor_status();
        match self.setup.kind {
            Kind::Bird => status.contains("Established"),
            Kind::Gobgp => status.contains("BGP state = ESTABLISHED"),
            Kind::Frr => status.contains("\"bgpState\":\"Established\""),
        }
    }

    /// FRR's `show bgp neighbors X json`, parsed, for this neighbor.
    fn frr_neighbor(&self) -> serde_json::Value {
        let status = self.neighbor_status();
        let json: serde_json::Value = serde_json::from_str(&status)
            .unwrap_or_else(|e| panic!("FRR's neighbor JSON ({e}): {status}"));
        json[self.local.as_str()].clone()
    }

    /// Whether the peer has sent anycastd its own IPv4 and IPv6 route.
    fn peer_sent_own_routes(&self) -> bool {
        match self.setup.kind {
            Kind::Bird => {
                self.neighbor_status()
                    .lines()
                    .filter(|l| l.trim_start().starts_with("Routes:") && l.contains(" 1 exported"))
                    .count()
                    == 2
            }
            Kind::Gobgp => self.neighbor_status().lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.len() == 2
                    && words[0] == "Advertised:"
                    && words[1].parse::<u32>().is_ok_and(|n| n >= 2)
            }),
            Kind::Frr => {
                let n = self.frr_neighbor();
                let afi = &n["addressFamilyInfo"];
                // eBGP: FRR also sends anycastd's routes back (AS_PATH loop
                // detection is the receiver's job); anycastd ignores them.
                let sent = |family: &str| afi[family]["sentPrefixCounter"].as_u64().unwrap_or(0);
                sent("ipv4Unicast") >= 1 && sent("ipv6Unicast") >= 1
            }
        }
    }

    /// UPDATE messages the peer has received from anycastd (BIRD: IPv4
    /// route updates).
    fn updates_received(&self) -> u64 {
        let status = self.neighbor_status();
        let number_after = |label: &str| {
            status
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| {
                    l.trim_start()[label.len()..]
                        .split_whitespace()
                        .nth(0)?
                        .parse()
                        .ok()
                })
        };
        let found = match self.setup.kind {
            Kind::Bird => number_after("Import updates:"),
            Kind::Gobgp => status
                .lines()
                .find(|l| l.trim_start().starts_with("Updates:"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok()),
            Kind::Frr => self.frr_neighbor()["messageStats"]["updatesRecv"].as_u64(),
        };
        found.unwrap_or_else(|| panic!("no UPDATE count in the peer's status:\n{status}"))
    }

    /// Makes the peer send anycastd a ROUTE-REFRESH (RFC 2918); false for
    /// GoBGP, whose `softresetin` replays its own Adj-RIB-In instead.
    fn request_refresh(&self) -> bool {
        let (ok, out) = match self.peer.as_ref().expect("peer running") {
            Peer::Bird(bird) => {
                let out = bird.birdc("reload in anycastd");
                (out.contains("reload"), out)
            }
            Peer::Gobgp { .. } => return false,
            Peer::Frr { vty, .. } => self.vtysh_at(
                vty,
                &format!("clear bgp ipv4 unicast {} soft in", self.local),
            ),
        };
        assert!(
            ok,
            "{:?} refused to request a route refresh: {out}",
            self.setup.kind
        );
        true
    }

    /// The peer's own routes reach anycastd (decoded, ignored) and a
    /// ROUTE-REFRESH from the peer is answered, without any error.
    fn exchange_is_clean(&self) {
        self.wait(
            "the peer to send anycastd its own routes",
            Lab::peer_sent_own_routes,
        );
        let before = self.updates_received();
        if self.request_refresh() {
            self.wait("anycastd to answer the ROUTE-REFRESH", |lab| {
                lab.updates_received() > before
            });
        }
        assert_eq!(
            self.routes(),
            (true, self.setup.v6),
            "routes kept after the refresh"
        );
        assert!(self.established(), "the session stays up");
        let log = self.anycastd_log();
        for bad in ["treated as withdraw", "to the peer", "BGP session down"] {
            assert!(!log.contains(bad), "anycastd logged `{bad}`:\n{log}");
        }
    }

    // ---- anycastd ------------------------------------------------------------

    fn write_config(&self) -> PathBuf {
        let s = &self.setup;
        let routes = if s.v6 {
            format!("[\"{}\", \"{}\"]", self.v4, self.v6)
        } else {
            format!("[\"{}\"]", self.v4)
        };
        let mut peer = format!(
            "name: {kind:?}, remote_address: \"{remote}\", remote_asn: {asn}",
            kind = s.kind,
            remote = self.remote,
            asn = s.remote_as(),
        )
        .to_lowercase();
        if let Some(p) = s.password {
            peer.push_str(&format!(", password: \"{p}\""));
        }
        if s.passive {
            peer.push_str(", passive: true");
        }
        if let Some(h) = s.hold_time {
            peer.push_str(&format!(", hold_time: {h}s"));
        }
        if let Some(ttl) = s.multihop_ttl {
            peer.push_str(&format!(", enable_multihop: true, multihop_ttl: {ttl}"));
        }
        let router_id = if s.ipv6_session {
            format!("10.{}.1.1", s.n)
        } else {
            self.local.clone()
        };
        let mut local_address = self.local.clone();
        let mut native = format!("local_address6: \"2001:db8:ffff::{}\", ", s.n);
        if s.ipv6_session {
            // The IPv6 next hop is the session's own address.
            native.clear();
            peer.push_str(&format!(", local_address: \"{}\"", self.local));
            if s.ipv4_next_hop {
                local_address = router_id.clone();
            }
        }
        // Scraped from the test process: only where anycastd shares its network.
        let metrics = self
            .metrics_address()
            .map(|a| format!("metrics: {{enabled: true, address: \"{a}\"}}\n"))
            .unwrap_or_default();
        let config = format!(
            r#"
announcer:
  router_id: "{router_id}"
  local_address: "{local_address}"
  local_asn: {local_as}
  routes: {routes}
  native: {{{native}shutdown_message: "anycastd test {n} says goodbye"}}
  peers:
    - {{{peer}}}
{extra}control: {{socket: "{control}"}}
{services}{metrics}"#,
            local_as = LOCAL_AS,
            n = s.n,
            extra = s.announcer_extra,
            control = self.path("ctl.sock").display(),
            services = web_service_yaml(&self.http.url("/health")),
        );
        let path = self.path("anycastd.yaml");
        std::fs::write(&path, config).unwrap();
        path
    }

    fn start_anycastd(&mut self) {
        let config = self.write_config();
        let prefix: Vec<&str> = match &self.nets {
            Some(nets) => vec!["ip", "netns", "exec", nets.a()],
            None => Vec::new(),
        };
        self.anycastd = Some(spawn_anycastd(
            &prefix,
            &config,
            "debug",
            &self.path("anycastd.log"),
        ));
    }

    /// Output of a command run where anycastd runs.
    fn in_anycastd_ns(&self, command: &[&str]) -> String {
        let mut c = match &self.nets {
            Some(nets) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", nets.a(), command[0]]);
                c
            }
            None => Command::new(command[0]),
        };
        c.args(&command[1..]);
        output_within(c, Duration::from_secs(5)).1
    }

    /// anycastd's metrics listener (this test's own loopback address, a
    /// port no other test uses); none when anycastd runs in a namespace.
    fn metrics_address(&self) -> Option<String> {
        self.nets.is_none().then(|| {
            format!(
                "127.0.{}.1:{}",
                self.setup.n,
                19000 + u16::from(self.setup.n)
            )
        })
    }

    fn scrape(&self, path: &str) -> String {
        let address = self
            .metrics_address()
            .expect("metrics are served only outside namespaces");
        http_get(&address, path).unwrap_or_else(|| {
            panic!(
                "GET {path} on {address} failed\n{}",
                tail(&self.path("anycastd.log"), 40)
            )
        })
    }

    /// One sample of this peer's `anycastd_bgp_*` metric (labels `peer` and
    /// `router_id` added), or `None` while it is not exported.
    fn bgp_metric(&self, metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut all = vec![
            ("peer", self.remote.as_str()),
            ("router_id", self.local.as_str()),
        ];
        all.extend_from_slice(labels);
        metric_sample(metrics, name, &all)
    }

    fn bgp_messages(&self, metrics: &str, direction: &str, kind: &str) -> f64 {
        self.bgp_metric(
            metrics,
            "anycastd_bgp_messages_total",
            &[("direction", direction), ("type", kind)],
        )
        .unwrap_or(0.0)
    }

    /// The routes this peer's session announces, from `/status`.
    fn announced_in_status(&self) -> Option<Vec<String>> {
        let status: serde_json::Value = serde_json::from_str(&self.scrape("/status")).ok()?;
        let key = format!("native {:?}", self.setup.kind).to_lowercase();
        status["routes"]["announced"][key.as_str()]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect()
            })
    }

    /// With the session up and the routes at the peer, anycastd's metrics
    /// say so: Established, every route announced, the messages that made
    /// it (the peer's ROUTE-REFRESH of [`Lab::exchange_is_clean`] included),
    /// and `flaps` times the session went down.
    fn assert_bgp_metrics(&self, flaps: f64) {
        let routes = if self.setup.v6 { 2.0 } else { 1.0 };
        self.wait(
            "anycastd_bgp_prefixes_announced to count every route",
            |lab| {
                lab.bgp_metric(
                    &lab.scrape("/metrics"),
                    "anycastd_bgp_prefixes_announced",
                    &[],
                ) == Some(routes)
            },
        );
        let metrics = self.scrape("/metrics");
        assert_eq!(
            self.bgp_metric(&metrics, "anycastd_bgp_session_state", &[]),
            Some(6.0),
            "Established is 6:\n{metrics}"
        );
        let uptime = self.bgp_metric(&metrics, "anycastd_bgp_session_uptime_seconds", &[]);
        assert!(
            uptime.is_some_and(|s| s > 0.0),
            "the session has been up a while: {uptime:?}\n{metrics}"
        );
        for (direction, kind) in [
            ("sent", "open"),
            ("sent", "update"),
            ("sent", "keepalive"),
            ("received", "open"),
            ("received", "update"),
            ("received", "keepalive"),
            ("received", "route_refresh"),
        ] {
            assert!(
                self.bgp_messages(&metrics, direction, kind) >= 1.0,
                "{direction} {kind} messages counted:\n{metrics}"
            );
        }
        let flapped = self
            .bgp_metric(&metrics, "anycastd_bgp_session_flaps_total", &[])
            .unwrap_or(0.0);
        assert_eq!(flapped, flaps, "session flaps:\n{metrics}");
    }

    fn anycastd_log(&self) -> String {
        std::fs::read_to_string(self.path("anycastd.log")).unwrap_or_default()
    }

    // ---- waiting -------------------------------------------------------------

    /// Waits for `condition`, failing with both sides' logs.
    fn wait(&self, what: &str, mut condition: impl FnMut(&Lab) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition(self) {
            if Instant::now() >= deadline {
                panic!(
                    "{:?} n={}: timed out after {WAIT:?} waiting for {what}\n\
                     --- peer status ---\n{}\n--- peer log ---\n{}\n--- anycastd log ---\n{}",
                    self.setup.kind,
                    self.setup.n,
                    self.neighbor_status(),
                    tail(&self.peer_log(), 40),
                    tail(&self.path("anycastd.log"), 40),
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_routes(&self, want: bool, what: &str) {
        let want = (want, want && self.setup.v6);
        self.wait(what, |lab| lab.routes() == want);
    }

    /// Up → healthy routes at the peer → gone when unhealthy → back.
    fn follows_health(&self) {
        self.wait("the session to be established", Lab::established);
        self.wait_routes(true, "routes at the peer while healthy");
        self.http.set_healthy(false);
        self.wait_routes(false, "routes withdrawn while unhealthy");
        assert!(self.established(), "the session stays up while unhealthy");
        self.http.set_healthy(true);
        self.wait_routes(true, "routes back after recovery");
        self.exchange_is_clean();
    }

    /// SIGTERM: anycastd withdraws, sends Cease / Administrative Shutdown
    /// and exits 0; the peer records the Cease and drops the routes.
    /// `anycastd --socket … ARGS` against this lab's daemon; its stdout.
    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(anycastd_bin())
            .arg("--socket")
            .arg(self.path("ctl.sock"))
            .args(args)
            .output()
            .expect("run anycastd");
        assert!(
            out.status.success(),
            "anycastd {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The peer's view of this lab's IPv4 route, one line of text per
    /// attribute (BIRD: `show route all`; GoBGP: `global rib -a ipv4 P`;
    /// FRR: the route's JSON).
    fn route_detail(&self) -> String {
        match self.peer.as_ref().expect("peer running") {
            Peer::Bird(bird) => bird.birdc(&format!("show route {} all", self.v4)),
            Peer::Gobgp { api, .. } => {
                self.gobgp_with(*api, &["global", "rib", "-a", "ipv4", &self.v4, "-j"])
                    .1
            }
            Peer::Frr { vty, .. } => {
                self.vtysh_at(vty, &format!("show bgp ipv4 unicast {} json", self.v4))
                    .1
            }
        }
    }

    fn sigterm(&mut self, peer_shows: &[&str]) {
        let anycastd = self.anycastd.as_mut().expect("anycastd running");
        anycastd.signal("TERM");
        let code = anycastd.wait_exit(Duration::from_secs(10));
        assert_eq!(
            code,
            Some(0),
            "anycastd exits 0 on SIGTERM\n{}",
            tail(&self.path("anycastd.log"), 20)
        );
        self.wait("the peer to record the Cease", |lab| {
            let status = lab.neighbor_status();
            peer_shows.iter().all(|want| status.contains(want))
        });
        self.wait_routes(false, "routes gone after SIGTERM");
    }
}

// ---- BIRD --------------------------------------------------------------------

/// Attribute profiles every attribute test uses.
const PROFILES: &str = "  drain_time: 2s\n  attributes:\n    up: {med: 10, communities: [\"65000:1\"], large_communities: [\"65000:1:2\"]}\n    draining: {as_path_prepend: 2}\n";

/// Whether the peer's view `detail` shows `want` (alternatives split by `|`).
fn shows(detail: &str, want: &str) -> bool {
    want.split('|').any(|alt| detail.contains(alt))
}

/// Waits until the peer's view of the route satisfies `ok`; fails with it.
fn wait_detail(lab: &Lab, what: &str, ok: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let detail = lab.route_detail();
        if ok(&detail) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{:?}: timed out waiting for {what}; the peer shows:\n{detail}\n--- anycastd log ---\n{}",
                lab.setup.kind,
                tail(&lab.path("anycastd.log"), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Up → the up profile at the peer; drain → GRACEFUL_SHUTDOWN and the
/// prepends, then withdrawn after drain_time; undrain → back as Up.
fn drain_cycle(lab: &Lab, up: &[&str], draining: &[&str], not_draining: &[&str]) {
    lab.wait("the session to be established", Lab::established);
    lab.wait_routes(true, "routes announced");
    wait_detail(lab, "the up profile", |d| up.iter().all(|w| shows(d, w)));
    let out = lab.ctl(&["drain"]);
    assert!(out.contains("web: draining"), "{out}");
    wait_detail(lab, "GRACEFUL_SHUTDOWN", |d| {
        draining.iter().all(|w| shows(d, w)) && !not_draining.iter().any(|w| shows(d, w))
    });
    lab.wait_routes(false, "withdrawn after drain_time");
    lab.ctl(&["undrain"]);
    lab.wait_routes(true, "back after undrain");
    wait_detail(lab, "the up profile again", |d| {
        up.iter().all(|w| shows(d, w)) && !draining.iter().any(|w| shows(d, w))
    });
}

#[test]
fn bird_sees_each_states_attributes_and_a_graceful_shutdown() {
    let mut setup = Setup::new(Kind::Bird, 53, false);
    let maintenance =
        std::env::temp_dir().join(format!("anycastd-test-maintenance-{}", std::process::id()));
    let _ = std::fs::remove_file(&maintenance);
    setup.announcer_extra = format!(
        "{PROFILES}  graceful_shutdown: true\n  maintenance_file: \"{}\"\n",
        maintenance.display()
    );
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    let up = ["BGP.med: 10", "(65000,1)", "(65000, 1, 2)"];
    let draining = ["(65535,0)", "BGP.as_path: 65001 65001 65001"];
    drain_cycle(&lab, &up, &draining, &[]);
    // The same by maintenance file.
    std::fs::write(&maintenance, "").unwrap();
    wait_detail(&lab, "GRACEFUL_SHUTDOWN by maintenance file", |d| {
        draining.iter().all(|w| d.contains(w))
    });
    lab.wait_routes(false, "withdrawn after drain_time");
    std::fs::remove_file(&maintenance).unwrap();
    lab.wait_routes(true, "back once the file is gone");
    wait_detail(&lab, "the up profile again", |d| {
        up.iter().all(|w| d.contains(w)) && !d.contains("(65535,0)")
    });
    // SIGTERM: GRACEFUL_SHUTDOWN first, then the withdrawal while the
    // session is still up, then the Cease.
    let anycastd = lab.anycastd.as_mut().expect("anycastd running");
    anycastd.signal("TERM");
    lab.wait("GRACEFUL_SHUTDOWN at the peer after SIGTERM", |lab| {
        lab.route_detail().contains("(65535,0)")
    });
    let anycastd = lab.anycastd.as_mut().expect("anycastd running");
    assert_eq!(anycastd.wait_exit(Duration::from_secs(10)), Some(0));
    lab.wait("the Cease", |lab| {
        lab.neighbor_status()
            .contains("Received: Administrative shutdown")
    });
}

#[test]
fn bird_ebgp_follows_health_and_sigterm_sends_cease() {
    let mut setup = Setup::new(Kind::Bird, 50, false);
    setup.v6 = true;
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    lab.assert_bgp_metrics(0.0);
    let mut want = vec![lab.v4.clone(), lab.v6.clone()];
    let mut announced = lab.announced_in_status();
    if let Some(a) = announced.as_mut() {
        a.sort();
    }
    want.sort();
    assert_eq!(
        announced,
        Some(want),
        "/status: what the session announces\n{}",
        lab.scrape("/status")
    );
    let rib = lab.rib(false);
    for attribute in ["BGP.as_path: 65001\n", "BGP.next_hop: 127.0.50.1\n"] {
        assert!(rib.contains(attribute), "eBGP: {attribute:?} in {rib}");
    }
    let rib = lab.rib(true);
    assert!(
        rib.contains("BGP.next_hop: 2001:db8:ffff::50\n"),
        "the IPv6 next hop is announcer.native.local_address6: {rib}"
    );
    lab.sigterm(&[
        "Received: Administrative shutdown",
        "anycastd test 50 says goodbye",
    ]);
}

#[test]
fn bird_ibgp_with_md5_follows_health() {
    let mut setup = Setup::new(Kind::Bird, 51, true);
    setup.password = Some("bird-md5-secret");
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    lab.assert_bgp_metrics(0.0);
    let rib = lab.rib(false);
    for attribute in ["BGP.as_path: \n", "BGP.local_pref: 100\n"] {
        assert!(rib.contains(attribute), "iBGP: {attribute:?} in {rib}");
    }
    let mut ss = Command::new("ss");
    ss.args(["-tnie", "src", "127.0.51.1", "dst", "127.0.51.2"]);
    let (_, ss) = output_within(ss, Duration::from_secs(5));
    assert!(
        ss.contains("md5keys"),
        "the session is TCP-MD5 signed: {ss}"
    );
}

#[test]
fn bird_ebgp_to_passive_anycastd_survives_peer_restart() {
    let mut setup = Setup::new(Kind::Bird, 52, false);
    setup.passive = true;
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    lab.assert_bgp_metrics(0.0);
    let before = lab.scrape("/metrics");
    let opens_before = lab.bgp_messages(&before, "received", "open");
    lab.stop_peer();
    // The peer is gone: common's wait (Lab::wait would ask the peer's CLI).
    wait_until(
        WAIT,
        "anycastd to count the session's end as a flap",
        || {
            let metrics = lab.scrape("/metrics");
            lab.bgp_metric(&metrics, "anycastd_bgp_session_flaps_total", &[]) == Some(1.0)
                && lab
                    .bgp_metric(&metrics, "anycastd_bgp_session_state", &[])
                    .is_some_and(|s| s < 6.0)
                && lab.bgp_metric(&metrics, "anycastd_bgp_prefixes_announced", &[]) == Some(0.0)
        },
    );
    wait_until(
        WAIT,
        "/status to show nothing announced without a session",
        || lab.announced_in_status() == Some(Vec::new()),
    );
    lab.start_peer();
    lab.wait(
        "BIRD to connect to anycastd again after its restart",
        Lab::established,
    );
    lab.wait_routes(true, "routes re-sent to the restarted BIRD");
    // Established again, the route re-announced, one flap.
    lab.assert_bgp_metrics(1.0);
    let after = lab.scrape("/metrics");
    assert!(
        lab.bgp_messages(&after, "received", "open") > opens_before,
        "the restarted BIRD's OPEN counted:\n{after}"
    );
    // The session's TCP connection is to anycastd's port 179: BIRD made it.
    let mut ss = Command::new("ss");
    ss.args(["-Htn", "state", "established"])
        .args(["src", "127.0.52.1:179", "dst", "127.0.52.2"]);
    let (_, ss) = output_within(ss, Duration::from_secs(5));
    assert!(
        !ss.trim().is_empty(),
        "BIRD connected to anycastd's port 179"
    );
}

/// Two passive peers on the same address and port: both BIRDs connect to
/// anycastd's one listening socket, each session gets its own connection,
/// and both follow health.
#[test]
fn two_birds_to_one_passive_anycastd_port() {
    require(&[("bird", "bird2"), ("birdc", "bird2")]);
    let dir = scratch();
    let http = HealthServer::start();
    let local = "127.0.53.1";
    let route = "192.0.2.53/32";
    let birds: Vec<Bird> = [("127.0.53.2", 65002), ("127.0.53.3", 65003)]
        .into_iter()
        .map(|(remote, asn)| {
            let bird_dir = dir.path().join(remote);
            std::fs::create_dir_all(&bird_dir).unwrap();
            Bird::start(
                &bird_dir,
                &format!(
                    r#"
router id {remote};
protocol device {{}}
protocol bgp anycastd {{
  local {remote} as {asn};
  neighbor {local} as {LOCAL_AS};
  multihop;
  strict bind yes;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 {{ import all; export none; }};
}}
"#
                ),
            )
        })
        .collect();
    let config = dir.path().join("anycastd.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
announcer:
  router_id: "{local}"
  local_address: "{local}"
  local_asn: {LOCAL_AS}
  routes: ["{route}"]
  native: {{passive: true}}
  peers:
    - {{name: b2, remote_address: "127.0.53.2", remote_asn: 65002, enable_multihop: true}}
    - {{name: b3, remote_address: "127.0.53.3", remote_asn: 65003, enable_multihop: true}}
services:
  - name: web
    check_interval: 200ms
    checks:
      - kind: http_2xx
        spec: {{url: "{url}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}
"#,
            url = http.url("/health"),
        ),
    )
    .unwrap();
    let log = dir.path().join("anycastd.log");
    let _anycastd = Daemon {
        child: Command::new(anycastd_bin())
            .arg("-c")
            .arg(&config)
            .args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start anycastd"),
        name: "anycastd",
    };
    let all = |want: bool| birds.iter().all(|b| b.has_route(route) == want);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- anycastd log ---\n{}",
                tail(&log, 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("both sessions established", &|| {
        birds.iter().all(|b| b.established("anycastd"))
    });
    wait("the route at both BIRDs", &|| all(true));
    http.set_healthy(false);
    wait("the route gone from both", &|| all(false));
    http.set_healthy(true);
    wait("the route back at both", &|| all(true));
    // Each BIRD was taken at its first try: no socket of anycastd's found
    // the address in use, and no connection went to the wrong session.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for bad in ["in use", "refused a BGP connection", "cannot listen"] {
        assert!(!text.contains(bad), "anycastd logged `{bad}`:\n{text}");
    }
}

// ---- GoBGP -------------------------------------------------------------------

#[test]
fn gobgp_ebgp_follows_health_and_survives_peer_restart() {
    let mut setup = Setup::new(Kind::Gobgp, 55, false);
    setup.netns = true;
    setup.v6 = true;
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    lab.stop_peer();
    lab.start_peer();
    lab.wait(
        "the session to come back after the peer restarted",
        Lab::established,
    );
    lab.wait_routes(true, "routes re-sent to the restarted peer");
}

#[test]
fn gobgp_ibgp_follows_health_with_short_hold_time() {
    let mut setup = Setup::new(Kind::Gobgp, 56, true);
    setup.netns = true;
    setup.hold_time = Some(3);
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    let status = lab.neighbor_status();
    assert!(
        status.contains("Hold time is 3,"),
        "hold time 3 s: {status}"
    );
    // Negotiated hold time 3 s: without our keepalives GoBGP would drop the
    // session within 3 s.
    std::thread::sleep(Duration::from_secs(4));
    assert!(lab.established(), "keepalives keep the session up");
    assert!(
        !lab.anycastd_log().contains("BGP session down"),
        "no flap:\n{}",
        lab.anycastd_log()
    );
}

#[test]
fn gobgp_sees_each_states_attributes() {
    let mut setup = Setup::new(Kind::Gobgp, 58, false);
    // GoBGP drops routes whose next hop is a loopback address.
    setup.netns = true;
    setup.announcer_extra = PROFILES.to_string();
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    // GoBGP's JSON: med, communities as numbers (65000:1 = 4259840001,
    // 65535:0 = 4294901760), large communities, the AS path.
    drain_cycle(
        &lab,
        &[
            "\"metric\":10",
            "4259840001",
            "{\"ASN\":65000,\"LocalData1\":1,\"LocalData2\":2}",
        ],
        &["4294901760", "\"asns\":[65001,65001,65001]"],
        &[],
    );
}

#[test]
fn gobgp_ebgp_multihop_through_a_router() {
    let mut setup = Setup::new(Kind::Gobgp, 57, false);
    setup.multihop_ttl = Some(1);
    let mut lab = Lab::new(setup);
    // TTL 1 dies at the router: the router reports Time Exceeded and no
    // session comes up.
    let before = lab.nets.as_ref().unwrap().router_time_exceeded();
    lab.start_anycastd();
    lab.wait("the router to drop a TTL-1 packet", |lab| {
        lab.nets.as_ref().unwrap().router_time_exceeded() > before
    });
    assert!(!lab.established(), "no session with TTL 1 across a router");
    lab.anycastd = None;
    // TTL 2 crosses exactly one router.
    lab.setup.multihop_ttl = Some(2);
    lab.start_anycastd();
    lab.follows_health();
}

// ---- FRR ---------------------------------------------------------------------

#[test]
fn frr_ebgp_with_md5_follows_health_and_sigterm_sends_cease() {
    let mut setup = Setup::new(Kind::Frr, 60, false);
    setup.netns = true;
    setup.password = Some("frr-md5-secret");
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    let ss = lab.in_anycastd_ns(&["ss", "-tnie", "dst", "10.60.1.2"]);
    assert!(
        ss.contains("md5keys"),
        "the session is TCP-MD5 signed: {ss}"
    );
    lab.sigterm(&["Administrative Shutdown"]);
}

#[test]
fn frr_ibgp_v6_follows_health_and_survives_peer_restart() {
    let mut setup = Setup::new(Kind::Frr, 61, true);
    setup.netns = true;
    setup.v6 = true;
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.follows_health();
    lab.stop_peer();
    lab.start_peer();
    lab.wait(
        "the session to come back after the peer restarted",
        Lab::established,
    );
    lab.wait_routes(true, "routes re-sent to the restarted peer");
}

/// IPv4 and IPv6 routes over an IPv6 session: with only IPv6 addresses
/// anycastd holds the IPv4 route back (FRR refuses IPv4 NLRI without
/// NEXT_HOP); with an IPv4 `announcer.local_address` both go out.
#[test]
fn frr_sees_each_states_attributes() {
    let mut setup = Setup::new(Kind::Frr, 63, false);
    setup.netns = true;
    setup.announcer_extra = PROFILES.to_string();
    let lab = Lab::new(setup);
    let mut lab = lab;
    lab.start_anycastd();
    drain_cycle(
        &lab,
        &["\"metric\":10", "65000:1", "65000:1:2"],
        &["gshut|graceful-shutdown|65535:0", "65001 65001 65001"],
        &[],
    );
}

#[test]
fn frr_ebgp_over_an_ipv6_session() {
    let mut setup = Setup::new(Kind::Frr, 62, false);
    setup.ipv6_session = true;
    setup.v6 = true;
    let mut lab = Lab::new(setup);
    lab.start_anycastd();
    lab.wait("the session to be established", Lab::established);
    lab.wait("the IPv6 route at the peer", |lab| lab.has_route(&lab.v6));
    lab.wait("anycastd to say why the IPv4 route stays back", |lab| {
        lab.anycastd_log().contains("not announcing these routes")
    });
    assert!(!lab.has_route(&lab.v4), "no IPv4 route without a next hop");
    lab.sigterm(&["Administrative Shutdown"]);

    lab.setup.ipv4_next_hop = true;
    std::fs::remove_file(lab.path("anycastd.log")).unwrap();
    lab.start_anycastd();
    lab.follows_health();
    let rib = lab.rib(false);
    assert!(
        rib.contains("\"ip\":\"10.62.1.1\""),
        "the IPv4 route carries the IPv4 next hop: {rib}"
    );
}
