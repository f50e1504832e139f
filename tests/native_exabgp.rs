//! The native backend (anycastd's own BGP speaker) announcing to a real
//! ExaBGP 5 as the receiving peer. ExaBGP hands every message it receives,
//! parsed, to a small recorder process (a python3 script written here) that
//! appends ExaBGP's JSON, one message a line, to a file; that file is the
//! verdict: the session's states, each UPDATE's NLRI, next hop and
//! attributes, the End-of-RIB markers, and the NOTIFICATION anycastd closes
//! with.
//!
//! One test per loopback pair, so they can run in parallel:
//! - 127.0.160.1 (anycastd, connecting) / 127.0.160.2 (ExaBGP, passive,
//!   listening on port 179 of its own address only);
//! - 127.0.161.1 (anycastd, passive) / 127.0.161.2 (ExaBGP, connecting).
//!
//! Packages: exabgp (pip), python3 (and root).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::*;

const WAIT: Duration = Duration::from_secs(20);
const LOCAL_AS: u32 = 65001;
const REMOTE_AS: u32 = 65002;
const V4: &str = "ipv4 unicast";
const V6: &str = "ipv6 unicast";

/// Appends each line ExaBGP writes to its processes to the file named by
/// its argument, flushed at once so the test sees it.
const RECORDER: &str = r#"import sys
with open(sys.argv[1], "a", buffering=1) as out:
    for line in sys.stdin:
        out.write(line)
        out.flush()
"#;

/// One thing ExaBGP reported, from its JSON.
#[derive(Clone, Debug, PartialEq)]
enum Event {
    /// `neighbor-changes`: connected, up, down (with the reason).
    State(String, Option<String>),
    EndOfRib(String),
    Announce {
        family: String,
        next_hop: String,
        nlri: String,
        attributes: Value,
    },
    Withdraw {
        family: String,
        nlri: String,
    },
    Notification {
        code: u64,
        subcode: u64,
        message: String,
    },
    /// Anything else, as ExaBGP wrote it.
    Other(String),
}

impl Event {
    fn is_announce(&self, family: &str, nlri: &str) -> bool {
        matches!(self, Event::Announce { family: f, nlri: n, .. } if f == family && n == nlri)
    }

    fn is_withdraw(&self, family: &str, nlri: &str) -> bool {
        matches!(self, Event::Withdraw { family: f, nlri: n } if f == family && n == nlri)
    }
}

/// The events in one line of ExaBGP's JSON (an UPDATE may carry several).
fn parse(line: &str) -> Vec<Event> {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return vec![Event::Other(line.to_string())];
    };
    let neighbor = &value["neighbor"];
    match value["type"].as_str() {
        Some("state") => vec![Event::State(
            neighbor["state"].as_str().unwrap_or_default().to_string(),
            neighbor["reason"].as_str().map(str::to_string),
        )],
        Some("notification") => {
            let n = &neighbor["notification"];
            vec![Event::Notification {
                code: n["code"].as_u64().unwrap_or_default(),
                subcode: n["subcode"].as_u64().unwrap_or_default(),
                message: n["message"].as_str().unwrap_or_default().to_string(),
            }]
        }
        Some("update") => {
            let message = &neighbor["message"];
            if let Some(eor) = message.get("eor") {
                return vec![Event::EndOfRib(format!(
                    "{} {}",
                    eor["afi"].as_str().unwrap_or_default(),
                    eor["safi"].as_str().unwrap_or_default()
                ))];
            }
            let update = &message["update"];
            let mut events = Vec::new();
            if let Some(withdraw) = update["withdraw"].as_object() {
                for (family, routes) in withdraw {
                    for route in routes.as_array().into_iter().flatten() {
                        events.push(Event::Withdraw {
                            family: family.clone(),
                            nlri: route["nlri"].as_str().unwrap_or_default().to_string(),
                        });
                    }
                }
            }
            if let Some(announce) = update["announce"].as_object() {
                for (family, by_next_hop) in announce {
                    for (next_hop, routes) in by_next_hop.as_object().into_iter().flatten() {
                        for route in routes.as_array().into_iter().flatten() {
                            events.push(Event::Announce {
                                family: family.clone(),
                                next_hop: next_hop.clone(),
                                nlri: route["nlri"].as_str().unwrap_or_default().to_string(),
                                attributes: update["attribute"].clone(),
                            });
                        }
                    }
                }
            }
            if events.is_empty() {
                events.push(Event::Other(line.to_string()));
            }
            events
        }
        _ => vec![Event::Other(line.to_string())],
    }
}

/// What ExaBGP shows for a route announced with the Up profile (`med`
/// differs in Degraded): exactly these attributes, nothing more.
fn attributes(med: u32) -> Value {
    json!({
        "origin": "igp",
        "as-path": {"0": {"element": "as-sequence", "value": [LOCAL_AS]}},
        "med": med,
        "community": [[65000, 1]],
        "large-community": [[65000, 1, 2]],
    })
}

struct Lab {
    n: u8,
    /// anycastd waits for ExaBGP to connect; otherwise ExaBGP does.
    anycastd_passive: bool,
    anycastd: Option<Daemon>,
    exabgp: Option<Daemon>,
    /// The service's two checks (strategy `all`): one failing is Degraded,
    /// both Down.
    a: HealthServer,
    b: HealthServer,
    started: Instant,
    /// Last: dropped after the daemons living in it.
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(n: u8, anycastd_passive: bool) -> Lab {
        assert!((160..=161).contains(&n), "this file owns 127.0.160-161.x");
        require(&[("exabgp", "exabgp (pip)"), ("python3", "python3")]);
        Lab {
            n,
            anycastd_passive,
            anycastd: None,
            exabgp: None,
            a: HealthServer::start(),
            b: HealthServer::start(),
            started: Instant::now(),
            dir: scratch(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn local(&self) -> String {
        format!("127.0.{}.1", self.n)
    }

    fn remote(&self) -> String {
        format!("127.0.{}.2", self.n)
    }

    fn v4(&self) -> String {
        format!("192.0.2.{}/32", self.n)
    }

    fn v6(&self) -> String {
        format!("2001:db8::{}/128", self.n)
    }

    fn next_hop6(&self) -> String {
        format!("2001:db8:ffff::{}", self.n)
    }

    fn shutdown_message(&self) -> String {
        format!("anycastd test {} says goodbye", self.n)
    }

    fn note(&self, what: &str) {
        eprintln!(
            "[{:>7.3}s] 127.0.{}.x: {what}",
            self.started.elapsed().as_secs_f64(),
            self.n
        );
    }

    fn start_anycastd(&mut self) {
        let passive = if self.anycastd_passive {
            ", passive: true"
        } else {
            ""
        };
        let config = format!(
            r#"
announcer:
  backend: native
  router_id: "{local}"
  local_address: "{local}"
  local_asn: {LOCAL_AS}
  routes: ["{v4}", "{v6}"]
  native: {{local_address6: "{nh6}", shutdown_message: "{bye}"}}
  attributes:
    up: {{med: 10, communities: ["65000:1"], large_communities: ["65000:1:2"]}}
    degraded: {{med: 100}}
  peers:
    - {{name: exa, remote_address: "{remote}", remote_asn: {REMOTE_AS}{passive}}}
services:
  - name: web
    check_interval: 200ms
    strategy: all
    checks:
      - kind: http_2xx
        spec: {{url: "{url_a}", method: GET, tries: 1, interval: 50ms, timeout: 1s}}
      - kind: http_2xx
        spec: {{url: "{url_b}", method: GET, tries: 1, interval: 50ms, timeout: 1s}}
"#,
            local = self.local(),
            remote = self.remote(),
            v4 = self.v4(),
            v6 = self.v6(),
            nh6 = self.next_hop6(),
            bye = self.shutdown_message(),
            url_a = self.a.url("/a"),
            url_b = self.b.url("/b"),
        );
        let path = self.path("anycastd.yaml");
        std::fs::write(&path, config).unwrap();
        self.anycastd = Some(spawn_anycastd(
            &[],
            &path,
            "debug",
            &self.path("anycastd.log"),
        ));
        self.note("anycastd started");
    }

    /// ExaBGP peering with anycastd, reporting what it receives to the
    /// recorder. When anycastd connects, ExaBGP is passive and listens on
    /// port 179 of its own address only; otherwise it listens nowhere.
    fn start_exabgp(&mut self) {
        let recorder = self.path("recorder.py");
        std::fs::write(&recorder, RECORDER).unwrap();
        let conf = self.path("exabgp.conf");
        std::fs::write(
            &conf,
            format!(
                r#"
process recorder {{
  run /usr/bin/env python3 {recorder} {messages};
  encoder json;
}}
neighbor {local} {{
  router-id {remote};
  local-address {remote};
  local-as {REMOTE_AS};
  peer-as {LOCAL_AS};
  {passive}
  family {{ ipv4 unicast; ipv6 unicast; }}
  api {{
    processes [ recorder ];
    neighbor-changes;
    receive {{ parsed; update; notification; }}
  }}
}}
"#,
                recorder = recorder.display(),
                messages = self.path("messages.jsonl").display(),
                local = self.local(),
                remote = self.remote(),
                passive = if self.anycastd_passive {
                    ""
                } else {
                    "passive true;"
                },
            ),
        )
        .unwrap();
        let bind = if self.anycastd_passive {
            String::new()
        } else {
            self.remote()
        };
        let log = std::fs::File::create(self.path("exabgp.log")).unwrap();
        let child = Command::new("exabgp")
            .arg("server")
            .arg(&conf)
            .env("exabgp_daemon_user", "root")
            .env("exabgp_log_destination", "stdout")
            .env("exabgp_tcp_bind", bind)
            .env("exabgp_tcp_port", "179")
            // No named pipes for exabgpcli: nothing to share with other tests.
            .env("exabgp_api_cli", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start exabgp");
        self.exabgp = Some(Daemon {
            child,
            name: "exabgp",
        });
        self.note("ExaBGP started");
    }

    /// Every event ExaBGP has reported so far (complete lines only).
    fn events(&self) -> Vec<Event> {
        let text = std::fs::read_to_string(self.path("messages.jsonl")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .flat_map(parse)
            .collect()
    }

    /// The logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- ExaBGP's events ---\n{:#?}\n--- ExaBGP's log ---\n{}\n--- anycastd's log ---\n{}",
            self.events(),
            tail(&self.path("exabgp.log"), 40),
            tail(&self.path("anycastd.log"), 40)
        )
    }

    /// Waits until ExaBGP's events from index `from` on satisfy `done`;
    /// returns them (from `from`).
    fn wait_events(&self, what: &str, from: usize, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let begun = Instant::now();
        let deadline = begun + WAIT;
        loop {
            let events = self.events();
            let new = events.get(from..).unwrap_or_default();
            if done(new) {
                self.note(&format!(
                    "{what} (after {:.3}s)",
                    begun.elapsed().as_secs_f64()
                ));
                return new.to_vec();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for ExaBGP to report {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for both routes to be announced with `med` (from index `from`),
    /// and checks their next hops and attributes.
    fn expect_announced(&self, what: &str, from: usize, med: u32) {
        let (v4, v6) = (self.v4(), self.v6());
        let events = self.wait_events(what, from, |new| {
            new.iter()
                .any(|e| e.is_announce(V4, &v4) && has_med(e, med))
                && new
                    .iter()
                    .any(|e| e.is_announce(V6, &v6) && has_med(e, med))
        });
        for (family, nlri, next_hop) in [
            (V4, v4.as_str(), self.local()),
            (V6, v6.as_str(), self.next_hop6()),
        ] {
            let last = events
                .iter()
                .rev()
                .find(|e| e.is_announce(family, nlri))
                .unwrap();
            assert_eq!(
                last,
                &Event::Announce {
                    family: family.to_string(),
                    next_hop: next_hop.clone(),
                    nlri: nlri.to_string(),
                    attributes: attributes(med),
                },
                "{what}: {family} {nlri} as ExaBGP received it\n{}",
                self.logs()
            );
        }
    }

    fn expect_withdrawn(&self, what: &str, from: usize) -> Vec<Event> {
        let (v4, v6) = (self.v4(), self.v6());
        self.wait_events(what, from, |new| {
            new.iter().any(|e| e.is_withdraw(V4, &v4)) && new.iter().any(|e| e.is_withdraw(V6, &v6))
        })
    }

    /// The session came up once and never went down (before `upto`).
    fn assert_session_steady(&self, upto: usize) {
        let events = self.events();
        let states: Vec<&Event> = events[..upto.min(events.len())]
            .iter()
            .filter(|e| matches!(e, Event::State(..)))
            .collect();
        assert_eq!(
            states,
            [
                &Event::State("connected".into(), None),
                &Event::State("up".into(), None)
            ],
            "the session came up once and stayed up\n{}",
            self.logs()
        );
    }

    /// ExaBGP's log names who opened the session's connection: it was
    /// `incoming` when anycastd connected, `outgoing` when ExaBGP did.
    fn assert_connection(&self, direction: &str) {
        let log = std::fs::read_to_string(self.path("exabgp.log")).unwrap_or_default();
        let connected: Vec<&str> = log.lines().filter(|l| l.contains("connected to")).collect();
        assert!(
            connected.len() == 1 && connected[0].contains(&format!(" with {direction}-")),
            "one {direction} connection, by ExaBGP's log: {connected:?}\n{}",
            self.logs()
        );
    }

    /// Neither ExaBGP nor anycastd complained about the other.
    fn assert_no_complaints(&self) {
        let exabgp = std::fs::read_to_string(self.path("exabgp.log")).unwrap_or_default();
        for bad in ["traceback", "error", "invalid", "malformed", "notification"] {
            assert!(
                !exabgp.to_lowercase().contains(bad),
                "ExaBGP's log says `{bad}`:\n{exabgp}"
            );
        }
        let anycastd = std::fs::read_to_string(self.path("anycastd.log")).unwrap_or_default();
        for bad in [" ERROR ", "NOTIFICATION from", "malformed"] {
            assert!(
                !anycastd.contains(bad),
                "anycastd's log says `{bad}`:\n{anycastd}"
            );
        }
        let others: Vec<Event> = self
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Other(_)))
            .collect();
        assert!(
            others.is_empty(),
            "ExaBGP reported what this test does not know: {others:#?}"
        );
    }

    /// SIGTERM to anycastd: ExaBGP sees both routes withdrawn, then a
    /// Cease / Administrative Shutdown with the configured message, and the
    /// session goes down; anycastd exits 0.
    fn expect_clean_shutdown(&mut self) {
        let from = self.events().len();
        let anycastd = self.anycastd.as_mut().expect("anycastd runs");
        anycastd.signal("TERM");
        self.note("SIGTERM sent to anycastd");
        let events = self.wait_events(
            "the withdrawals, NOTIFICATION and session down",
            from,
            |new| {
                new.iter()
                    .any(|e| matches!(e, Event::State(s, _) if s == "down"))
            },
        );
        let position = |what: &str, pred: &dyn Fn(&Event) -> bool| {
            events
                .iter()
                .position(pred)
                .unwrap_or_else(|| panic!("ExaBGP saw no {what} after SIGTERM\n{}", self.logs()))
        };
        let (v4, v6) = (self.v4(), self.v6());
        let w4 = position("IPv4 withdrawal", &|e| e.is_withdraw(V4, &v4));
        let w6 = position("IPv6 withdrawal", &|e| e.is_withdraw(V6, &v6));
        let cease = position("NOTIFICATION", &|e| matches!(e, Event::Notification { .. }));
        let down = position(
            "session down",
            &|e| matches!(e, Event::State(s, _) if s == "down"),
        );
        assert!(
            w4 < cease && w6 < cease && cease < down,
            "withdrawals before the NOTIFICATION, then the session down: {events:#?}"
        );
        assert_eq!(
            events[cease],
            Event::Notification {
                code: 6,
                subcode: 2,
                message: format!("Shutdown Communication: \"{}\"", self.shutdown_message()),
            },
            "Cease / Administrative Shutdown with anycastd's shutdown message (RFC 8203)"
        );
        assert_eq!(
            events[down],
            Event::State("down".into(), Some("notification received (6,2)".into()))
        );
        let code = self
            .anycastd
            .as_mut()
            .unwrap()
            .wait_exit(Duration::from_secs(10));
        assert_eq!(
            code,
            Some(0),
            "anycastd exits 0 after SIGTERM\n{}",
            self.logs()
        );
        self.note("anycastd exited 0");
        self.anycastd = None;
    }
}

fn has_med(event: &Event, med: u32) -> bool {
    matches!(event, Event::Announce { attributes, .. } if attributes["med"] == json!(med))
}

#[test]
fn exabgp_receives_routes_with_attributes_follows_health_and_sees_cease() {
    let mut lab = Lab::new(160, false);
    lab.start_exabgp();
    lab.start_anycastd();
    lab.wait_events("the session up", 0, |new| {
        new.contains(&Event::State("up".into(), None))
    });
    lab.expect_announced("both routes, Up (med 10)", 0, 10);
    let new = lab.wait_events("End-of-RIB for both families", 0, |new| {
        new.contains(&Event::EndOfRib(V4.into())) && new.contains(&Event::EndOfRib(V6.into()))
    });
    assert_eq!(
        new.iter()
            .filter(|e| matches!(e, Event::EndOfRib(_)))
            .count(),
        2,
        "one End-of-RIB per family: {new:#?}"
    );

    // Degraded: a new UPDATE replaces the route, with the Degraded MED and
    // the communities it falls back to from `up`; no withdrawal.
    let from = lab.events().len();
    lab.b.set_healthy(false);
    lab.note("check b failing");
    lab.expect_announced("both routes, Degraded (med 100)", from, 100);

    // Down: both checks fail.
    let from = lab.events().len();
    lab.a.set_healthy(false);
    lab.note("check a failing too");
    lab.expect_withdrawn("both routes withdrawn", from);

    // Up again.
    let from = lab.events().len();
    lab.a.set_healthy(true);
    lab.b.set_healthy(true);
    lab.note("both checks passing");
    lab.expect_announced("both routes again, Up (med 10)", from, 10);
    let events = lab.events();
    assert!(
        !events[from..]
            .iter()
            .any(|e| matches!(e, Event::Withdraw { .. })),
        "recovery announces only: {:#?}",
        &events[from..]
    );

    let before_shutdown = lab.events().len();
    lab.assert_session_steady(before_shutdown);
    // anycastd connected to the passive ExaBGP.
    lab.assert_connection("incoming");
    lab.expect_clean_shutdown();
    lab.assert_no_complaints();
}

#[test]
fn exabgp_connecting_to_passive_anycastd_gets_the_table_before_end_of_rib() {
    let mut lab = Lab::new(161, true);
    lab.start_anycastd();
    // The service is Up before ExaBGP exists: the routes are in the table
    // the session starts with.
    let log = lab.path("anycastd.log");
    wait_until(WAIT, "anycastd to find the service up", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("service is up")
    });
    lab.note("service up");
    lab.start_exabgp();
    let events = lab.wait_events("the session up, the table and both End-of-RIBs", 0, |new| {
        new.contains(&Event::EndOfRib(V4.into())) && new.contains(&Event::EndOfRib(V6.into()))
    });
    let (v4, v6) = (lab.v4(), lab.v6());
    let at = |pred: &dyn Fn(&Event) -> bool| events.iter().position(pred);
    let announce4 = at(&|e| e.is_announce(V4, &v4));
    let announce6 = at(&|e| e.is_announce(V6, &v6));
    let eor4 = at(&|e| *e == Event::EndOfRib(V4.into()));
    let eor6 = at(&|e| *e == Event::EndOfRib(V6.into()));
    assert!(
        announce4.is_some() && announce6.is_some() && announce4 < eor4 && announce6 < eor6,
        "each family's routes before its End-of-RIB: {events:#?}"
    );
    lab.expect_announced("both routes, Up (med 10)", 0, 10);
    // ExaBGP made the connection: anycastd's listener took it.
    lab.assert_connection("outgoing");
    let before_shutdown = lab.events().len();
    lab.assert_session_steady(before_shutdown);
    lab.expect_clean_shutdown();
    lab.assert_no_complaints();
}
