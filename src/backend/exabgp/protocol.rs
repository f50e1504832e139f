//! ExaBGP's text process API, without I/O: the lines anycastd writes, the
//! acknowledgements ExaBGP answers with, and the reconciler that decides
//! which lines to write for a desired route set.
//!
//! Lines use the syntax ExaBGP 4.2 and 5.x both accept:
//! `announce route P next-hop N [med M] [local-preference L]
//! [community [C ...]] [large-community [G:L1:L2 ...]] [as-path [A ...]]`
//! and `withdraw route P next-hop N`, with no neighbor selector (all
//! neighbors bound to this process). A route without attributes is
//! `announce route P next-hop N`, nothing more.
//!
//! AS_PATH: ExaBGP sends an `as-path` it is given as it is, and only adds
//! the local AS itself (to eBGP peers) when none is given
//! (`Attributes.pack`). A prepend is therefore spelled with the local AS
//! 1 + prepend times, so an eBGP peer sees it 1 + prepend times, as it
//! would from any other router. The path goes as it is to every neighbor
//! of the process: an iBGP neighbor finds its own AS in it and drops the
//! route as a loop (RFC 4271 9.1.2; BIRD 2 counts it as a withdrawal), so
//! a prepending profile is for eBGP sessions. LOCAL_PREF is the reverse:
//! ExaBGP sends it to iBGP neighbors only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use ipnet::IpNet;

use crate::route::{Announcement, NextHop, RouteAttributes, RouteSet};

/// One command for ExaBGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCommand {
    /// Announce, or announce again with new attributes (ExaBGP replaces
    /// the route it holds: no withdrawal in between).
    Announce(IpNet, Announcement),
    Withdraw(IpNet),
}

impl RouteCommand {
    pub fn prefix(&self) -> IpNet {
        match self {
            RouteCommand::Announce(p, _) | RouteCommand::Withdraw(p) => *p,
        }
    }
}

/// How commands are spelled: the next hop per address family, and the
/// local AS that a prepend repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineFormat {
    pub next_hop: NextHop,
    pub next_hop6: NextHop,
    /// `announcer.local_asn`; configuration validation requires it
    /// whenever a profile prepends.
    pub local_asn: Option<u32>,
}

impl LineFormat {
    /// The command as one line, without the newline.
    pub fn line(&self, command: &RouteCommand) -> String {
        let prefix = command.prefix();
        let next_hop = match prefix {
            IpNet::V4(_) => self.next_hop,
            IpNet::V6(_) => self.next_hop6,
        };
        match command {
            RouteCommand::Announce(p, announcement) => {
                let mut line = format!("announce route {p} next-hop {next_hop}");
                self.push_attributes(&mut line, &announcement.attributes);
                line
            }
            RouteCommand::Withdraw(p) => format!("withdraw route {p} next-hop {next_hop}"),
        }
    }

    /// Appends ` med M local-preference L community [..] large-community
    /// [..] as-path [..]`, each only when set.
    fn push_attributes(&self, line: &mut String, attributes: &RouteAttributes) {
        if let Some(med) = attributes.med {
            let _ = write!(line, " med {med}");
        }
        if let Some(local_pref) = attributes.local_pref {
            let _ = write!(line, " local-preference {local_pref}");
        }
        if !attributes.communities.is_empty() {
            line.push_str(" community [");
            push_joined(line, &attributes.communities);
            line.push(']');
        }
        if !attributes.large_communities.is_empty() {
            line.push_str(" large-community [");
            push_joined(line, &attributes.large_communities);
            line.push(']');
        }
        // Without a local AS (refused by config validation) there is
        // nothing to prepend: ExaBGP's own AS_PATH is left alone.
        if let (true, Some(asn)) = (attributes.prepend > 0, self.local_asn) {
            let path = vec![asn; 1 + usize::from(attributes.prepend)];
            line.push_str(" as-path [");
            push_joined(line, &path);
            line.push(']');
        }
    }
}

fn push_joined<T: std::fmt::Display>(line: &mut String, items: &[T]) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        let _ = write!(line, "{item}");
    }
}

/// A line ExaBGP wrote on our stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The oldest unacknowledged command was accepted.
    Done,
    /// The oldest unacknowledged command was refused.
    Error,
    /// ExaBGP is exiting.
    Shutdown,
}

/// Reads one line from ExaBGP; anything else (e.g. JSON events) is `None`.
///
/// ExaBGP 4.2 and 5 announce their stop as `shutdown <pid> <ppid>`, older
/// ones as the bare word: `shutdown` is recognised by its first word.
pub fn parse_ack(line: &str) -> Option<Ack> {
    match line.trim() {
        "done" => Some(Ack::Done),
        "error" => Some(Ack::Error),
        text if text.split_ascii_whitespace().next() == Some("shutdown") => Some(Ack::Shutdown),
        _ => None,
    }
}

/// The longest line from ExaBGP we keep. Acks are a word; JSON events (if
/// the operator turned them on for this process) are rarely past a few KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// What an acknowledgement meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Accepted(RouteCommand),
    /// Refused; the route's state was rolled back so the next reconcile retries.
    Refused(RouteCommand),
    /// An ack with no command waiting for it (acks were off, or a late one).
    Unmatched,
}

/// Keeps what ExaBGP has been told and turns desired sets into commands.
///
/// ExaBGP keeps the routes a dead helper announced, so a new process cannot
/// know what is announced: its first reconcile announces every desired
/// route (ExaBGP sends nothing for one it already holds) and withdraws
/// every other route the config names.
#[derive(Debug, Clone, Default)]
pub struct Reconciler {
    /// What ExaBGP holds: `Some` with the attributes it was told, `None`
    /// when it may hold the route with attributes we do not know (a
    /// predecessor's, or a refused command's).
    announced: BTreeMap<IpNet, Option<Announcement>>,
    in_flight: VecDeque<RouteCommand>,
    /// No reconcile yet: what ExaBGP holds is unknown.
    unknown: bool,
}

/// Commands waiting for an ack are capped, in case ExaBGP runs with acks off.
const MAX_IN_FLIGHT: usize = 1 << 20;

impl Reconciler {
    /// `possibly_announced`: routes a previous process may have left behind.
    pub fn new(possibly_announced: impl IntoIterator<Item = IpNet>) -> Reconciler {
        Reconciler {
            announced: possibly_announced.into_iter().map(|p| (p, None)).collect(),
            in_flight: VecDeque::new(),
            unknown: true,
        }
    }

    /// The prefixes ExaBGP holds (or may hold, after a refused command).
    pub fn announced(&self) -> BTreeSet<IpNet> {
        self.announced.keys().copied().collect()
    }

    /// How many prefixes ExaBGP holds (or may hold).
    pub fn announced_len(&self) -> usize {
        self.announced.len()
    }

    /// Commands sent and not yet acknowledged.
    pub fn awaiting_ack(&self) -> usize {
        self.in_flight.len()
    }

    /// The commands that turn what is announced into `desired`: withdrawals
    /// first, then announcements, each in prefix order. A route held with
    /// other attributes (or class) is announced again, not withdrawn.
    pub fn reconcile(&mut self, desired: &RouteSet) -> Vec<RouteCommand> {
        let mut commands: Vec<RouteCommand> = self
            .announced
            .keys()
            .filter(|p| !desired.contains_key(p))
            .map(|p| RouteCommand::Withdraw(*p))
            .collect();
        let everything = std::mem::take(&mut self.unknown);
        commands.extend(
            desired
                .iter()
                .filter(|(p, a)| {
                    everything || self.announced.get(p).and_then(Option::as_ref) != Some(*a)
                })
                .map(|(p, a)| RouteCommand::Announce(*p, a.clone())),
        );
        self.announced = desired.iter().map(|(p, a)| (*p, Some(a.clone()))).collect();
        self.in_flight.extend(commands.iter().cloned());
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        commands
    }

    /// Matches an ack to the oldest command waiting for one.
    pub fn acknowledge(&mut self, ack: Ack) -> AckOutcome {
        let ok = match ack {
            Ack::Done => true,
            Ack::Error => false,
            Ack::Shutdown => return AckOutcome::Unmatched,
        };
        let Some(command) = self.in_flight.pop_front() else {
            return AckOutcome::Unmatched;
        };
        if ok {
            return AckOutcome::Accepted(command);
        }
        // Roll back what we believed, so the next reconcile sends it again.
        match &command {
            RouteCommand::Announce(p, announcement) => {
                // ExaBGP may still hold an older version: the next
                // reconcile announces it again, or withdraws it.
                if let Some(held) = self.announced.get_mut(p) {
                    if held.as_ref() == Some(announcement) {
                        *held = None;
                    }
                }
            }
            RouteCommand::Withdraw(p) => {
                self.announced.entry(*p).or_insert(None);
            }
        }
        AckOutcome::Refused(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Community, LargeCommunity, RouteClass};

    fn set(routes: &[&str]) -> RouteSet {
        crate::route::plain_routes(routes.iter().map(|r| r.parse().unwrap()))
    }

    fn announce(p: &str) -> RouteCommand {
        RouteCommand::Announce(net(p), Announcement::plain())
    }

    fn net(p: &str) -> IpNet {
        p.parse().unwrap()
    }

    #[test]
    fn lines_for_both_families() {
        let format = LineFormat {
            next_hop: NextHop::SelfAddress,
            next_hop6: NextHop::Address("2001:db8::2".parse().unwrap()),
            local_asn: Some(65001),
        };
        assert_eq!(
            format.line(&announce("192.0.2.1/32")),
            "announce route 192.0.2.1/32 next-hop self"
        );
        assert_eq!(
            format.line(&RouteCommand::Withdraw(net("2001:db8::1/128"))),
            "withdraw route 2001:db8::1/128 next-hop 2001:db8::2"
        );
    }

    fn with(class: RouteClass, attributes: RouteAttributes) -> Announcement {
        Announcement {
            class,
            attributes: std::sync::Arc::new(attributes),
        }
    }

    fn draining() -> Announcement {
        with(
            RouteClass::Draining,
            RouteAttributes {
                med: Some(100),
                local_pref: Some(0),
                communities: vec![Community::new(65000, 1), Community::GRACEFUL_SHUTDOWN],
                large_communities: vec![LargeCommunity(65000, 1, 2)],
                prepend: 2,
            },
        )
    }

    #[test]
    fn lines_carry_every_attribute_in_exabgp_syntax() {
        let format = LineFormat {
            next_hop: NextHop::SelfAddress,
            next_hop6: NextHop::Address("2001:db8::2".parse().unwrap()),
            local_asn: Some(65001),
        };
        assert_eq!(
            format.line(&RouteCommand::Announce(net("192.0.2.1/32"), draining())),
            "announce route 192.0.2.1/32 next-hop self med 100 local-preference 0 \
             community [65000:1 65535:0] large-community [65000:1:2] \
             as-path [65001 65001 65001]"
        );
        // One attribute alone; a single community still in brackets.
        let med = with(
            RouteClass::Degraded,
            RouteAttributes {
                med: Some(0),
                ..RouteAttributes::default()
            },
        );
        assert_eq!(
            format.line(&RouteCommand::Announce(net("2001:db8::1/128"), med)),
            "announce route 2001:db8::1/128 next-hop 2001:db8::2 med 0"
        );
        let gshut = with(
            RouteClass::Draining,
            RouteAttributes {
                communities: vec![Community::GRACEFUL_SHUTDOWN],
                ..RouteAttributes::default()
            },
        );
        assert_eq!(
            format.line(&RouteCommand::Announce(net("192.0.2.1/32"), gshut)),
            "announce route 192.0.2.1/32 next-hop self community [65535:0]"
        );
        // A plain route, whatever its class, is the line it always was.
        assert_eq!(
            format.line(&RouteCommand::Announce(
                net("192.0.2.1/32"),
                with(RouteClass::Draining, RouteAttributes::default())
            )),
            "announce route 192.0.2.1/32 next-hop self"
        );
        // Withdrawals never carry attributes.
        assert_eq!(
            format.line(&RouteCommand::Withdraw(net("192.0.2.1/32"))),
            "withdraw route 192.0.2.1/32 next-hop self"
        );
        // The prepend repeats a 4-byte local AS too.
        let four_byte = LineFormat {
            local_asn: Some(4_200_000_000),
            ..format
        };
        let one = with(
            RouteClass::Up,
            RouteAttributes {
                prepend: 1,
                ..RouteAttributes::default()
            },
        );
        assert_eq!(
            four_byte.line(&RouteCommand::Announce(net("192.0.2.1/32"), one)),
            "announce route 192.0.2.1/32 next-hop self as-path [4200000000 4200000000]"
        );
    }

    #[test]
    fn changed_attributes_are_announced_again_without_a_withdrawal() {
        let mut r = Reconciler::new([]);
        let mut desired = set(&["192.0.2.1/32", "192.0.2.2/32"]);
        assert_eq!(r.reconcile(&desired).len(), 2);
        // Draining one route: one announce with the new attributes.
        desired.insert(net("192.0.2.2/32"), draining());
        assert_eq!(
            r.reconcile(&desired),
            [RouteCommand::Announce(net("192.0.2.2/32"), draining())]
        );
        assert!(r.reconcile(&desired).is_empty());
        // The same attributes in a new Arc are no change.
        desired.insert(net("192.0.2.2/32"), draining());
        assert!(r.reconcile(&desired).is_empty());
        // A class change alone is stated again too.
        let degraded = with(RouteClass::Degraded, RouteAttributes::default());
        desired.insert(net("192.0.2.1/32"), degraded.clone());
        assert_eq!(
            r.reconcile(&desired),
            [RouteCommand::Announce(net("192.0.2.1/32"), degraded)]
        );
        // Back to plain, and a withdrawal: withdraw first, then announce.
        let back = set(&["192.0.2.1/32"]);
        assert_eq!(
            r.reconcile(&back),
            [
                RouteCommand::Withdraw(net("192.0.2.2/32")),
                announce("192.0.2.1/32")
            ]
        );
        assert_eq!(r.announced(), back.keys().copied().collect());
    }

    #[test]
    fn refused_reannouncement_is_retried_or_withdrawn() {
        let mut r = Reconciler::new([]);
        let mut desired = set(&["192.0.2.1/32"]);
        r.reconcile(&desired);
        r.acknowledge(Ack::Done);
        desired.insert(net("192.0.2.1/32"), draining());
        r.reconcile(&desired);
        assert_eq!(
            r.acknowledge(Ack::Error),
            AckOutcome::Refused(RouteCommand::Announce(net("192.0.2.1/32"), draining()))
        );
        // ExaBGP still holds the old version: retried while wanted...
        assert_eq!(
            r.reconcile(&desired),
            [RouteCommand::Announce(net("192.0.2.1/32"), draining())]
        );
        r.acknowledge(Ack::Error);
        assert_eq!(r.announced(), desired.keys().copied().collect());
        // ...and withdrawn once it is not.
        assert_eq!(
            r.reconcile(&RouteSet::new()),
            [RouteCommand::Withdraw(net("192.0.2.1/32"))]
        );
    }

    #[test]
    fn acks_parse() {
        assert_eq!(parse_ack("done\n"), Some(Ack::Done));
        assert_eq!(parse_ack("error"), Some(Ack::Error));
        assert_eq!(parse_ack("shutdown"), Some(Ack::Shutdown));
        // ExaBGP 4.2 and 5: `shutdown <pid> <ppid>`.
        assert_eq!(parse_ack("shutdown 4242 1"), Some(Ack::Shutdown));
        assert_eq!(parse_ack("shutdownx"), None);
        assert_eq!(parse_ack("{\"exabgp\": \"5.0\"}"), None);
    }

    #[test]
    fn startup_withdraws_what_a_predecessor_may_have_left() {
        let mut r = Reconciler::new(set(&["192.0.2.1/32", "192.0.2.2/32"]).into_keys());
        let commands = r.reconcile(&RouteSet::new());
        assert_eq!(
            commands,
            [
                RouteCommand::Withdraw(net("192.0.2.1/32")),
                RouteCommand::Withdraw(net("192.0.2.2/32"))
            ]
        );
        assert!(r.reconcile(&RouteSet::new()).is_empty());
    }

    #[test]
    fn first_reconcile_announces_every_desired_route_and_withdraws_the_rest() {
        // A respawned helper: ExaBGP may hold any configured route.
        let mut r = Reconciler::new(set(&["192.0.2.1/32", "192.0.2.2/32"]).into_keys());
        assert_eq!(
            r.reconcile(&set(&["192.0.2.1/32"])),
            [
                RouteCommand::Withdraw(net("192.0.2.2/32")),
                announce("192.0.2.1/32"),
            ]
        );
        assert!(r.reconcile(&set(&["192.0.2.1/32"])).is_empty());
    }

    #[test]
    fn only_differences_are_sent() {
        let mut r = Reconciler::new([]);
        assert_eq!(
            r.reconcile(&set(&["192.0.2.1/32", "192.0.2.2/32"])).len(),
            2
        );
        assert_eq!(
            r.reconcile(&set(&["192.0.2.2/32", "192.0.2.3/32"])),
            [
                RouteCommand::Withdraw(net("192.0.2.1/32")),
                announce("192.0.2.3/32")
            ]
        );
        assert!(
            r.reconcile(&set(&["192.0.2.2/32", "192.0.2.3/32"]))
                .is_empty()
        );
    }

    #[test]
    fn refused_announce_is_retried_by_the_next_reconcile() {
        let mut r = Reconciler::new([]);
        let desired = set(&["192.0.2.1/32", "2001:db8::1/128"]);
        r.reconcile(&desired);
        assert_eq!(r.awaiting_ack(), 2);
        assert_eq!(
            r.acknowledge(Ack::Done),
            AckOutcome::Accepted(announce("192.0.2.1/32"))
        );
        assert_eq!(
            r.acknowledge(Ack::Error),
            AckOutcome::Refused(announce("2001:db8::1/128"))
        );
        assert_eq!(r.reconcile(&desired), [announce("2001:db8::1/128")]);
        assert_eq!(
            r.acknowledge(Ack::Done),
            AckOutcome::Accepted(announce("2001:db8::1/128"))
        );
        assert_eq!(r.acknowledge(Ack::Done), AckOutcome::Unmatched);
    }

    #[test]
    fn refused_withdraw_is_retried() {
        let mut r = Reconciler::new(set(&["192.0.2.1/32"]).into_keys());
        r.reconcile(&RouteSet::new());
        r.acknowledge(Ack::Error);
        assert_eq!(
            r.reconcile(&RouteSet::new()),
            [RouteCommand::Withdraw(net("192.0.2.1/32"))]
        );
    }
}
