//! ExaBGP's text process API, without I/O: the lines anycastd writes, the
//! acknowledgements ExaBGP answers with, and the reconciler that decides
//! which lines to write for a desired route set.
//!
//! Lines use the syntax ExaBGP 4.2 and 5.x both accept:
//! `announce route P next-hop N` and `withdraw route P next-hop N`, with no
//! neighbor selector (all neighbors bound to this process).

use std::collections::{BTreeSet, VecDeque};

use ipnet::IpNet;

use crate::route::NextHop;

/// One command for ExaBGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteCommand {
    Announce(IpNet),
    Withdraw(IpNet),
}

impl RouteCommand {
    pub fn prefix(self) -> IpNet {
        match self {
            RouteCommand::Announce(p) | RouteCommand::Withdraw(p) => p,
        }
    }
}

/// How commands are spelled: the next hop per address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineFormat {
    pub next_hop: NextHop,
    pub next_hop6: NextHop,
}

impl LineFormat {
    /// The command as one line, without the newline.
    pub fn line(&self, command: RouteCommand) -> String {
        let prefix = command.prefix();
        let next_hop = match prefix {
            IpNet::V4(_) => self.next_hop,
            IpNet::V6(_) => self.next_hop6,
        };
        match command {
            RouteCommand::Announce(p) => format!("announce route {p} next-hop {next_hop}"),
            RouteCommand::Withdraw(p) => format!("withdraw route {p} next-hop {next_hop}"),
        }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    announced: BTreeSet<IpNet>,
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
            announced: possibly_announced.into_iter().collect(),
            in_flight: VecDeque::new(),
            unknown: true,
        }
    }

    pub fn announced(&self) -> &BTreeSet<IpNet> {
        &self.announced
    }

    /// Commands sent and not yet acknowledged.
    pub fn awaiting_ack(&self) -> usize {
        self.in_flight.len()
    }

    /// The commands that turn what is announced into `desired`: withdrawals
    /// first, then announcements, each in prefix order.
    pub fn reconcile(&mut self, desired: &BTreeSet<IpNet>) -> Vec<RouteCommand> {
        let mut commands: Vec<RouteCommand> = self
            .announced
            .difference(desired)
            .map(|p| RouteCommand::Withdraw(*p))
            .collect();
        if std::mem::take(&mut self.unknown) {
            commands.extend(desired.iter().map(|p| RouteCommand::Announce(*p)));
        } else {
            commands.extend(
                desired
                    .difference(&self.announced)
                    .map(|p| RouteCommand::Announce(*p)),
            );
        }
        self.announced.clone_from(desired);
        self.in_flight.extend(commands.iter().copied());
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
        match command {
            RouteCommand::Announce(p) => {
                self.announced.remove(&p);
            }
            RouteCommand::Withdraw(p) => {
                self.announced.insert(p);
            }
        }
        AckOutcome::Refused(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(routes: &[&str]) -> BTreeSet<IpNet> {
        routes.iter().map(|r| r.parse().unwrap()).collect()
    }

    fn net(p: &str) -> IpNet {
        p.parse().unwrap()
    }

    #[test]
    fn lines_for_both_families() {
        let format = LineFormat {
            next_hop: NextHop::SelfAddress,
            next_hop6: NextHop::Address("2001:db8::2".parse().unwrap()),
        };
        assert_eq!(
            format.line(RouteCommand::Announce(net("192.0.2.1/32"))),
            "announce route 192.0.2.1/32 next-hop self"
        );
        assert_eq!(
            format.line(RouteCommand::Withdraw(net("2001:db8::1/128"))),
            "withdraw route 2001:db8::1/128 next-hop 2001:db8::2"
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
        let mut r = Reconciler::new(set(&["192.0.2.1/32", "192.0.2.2/32"]));
        let commands = r.reconcile(&BTreeSet::new());
        assert_eq!(
            commands,
            [
                RouteCommand::Withdraw(net("192.0.2.1/32")),
                RouteCommand::Withdraw(net("192.0.2.2/32"))
            ]
        );
        assert!(r.reconcile(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn first_reconcile_announces_every_desired_route_and_withdraws_the_rest() {
        // A respawned helper: ExaBGP may hold any configured route.
        let mut r = Reconciler::new(set(&["192.0.2.1/32", "192.0.2.2/32"]));
        assert_eq!(
            r.reconcile(&set(&["192.0.2.1/32"])),
            [
                RouteCommand::Withdraw(net("192.0.2.2/32")),
                RouteCommand::Announce(net("192.0.2.1/32")),
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
                RouteCommand::Announce(net("192.0.2.3/32"))
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
            AckOutcome::Accepted(RouteCommand::Announce(net("192.0.2.1/32")))
        );
        assert_eq!(
            r.acknowledge(Ack::Error),
            AckOutcome::Refused(RouteCommand::Announce(net("2001:db8::1/128")))
        );
        assert_eq!(
            r.reconcile(&desired),
            [RouteCommand::Announce(net("2001:db8::1/128"))]
        );
        assert_eq!(
            r.acknowledge(Ack::Done),
            AckOutcome::Accepted(RouteCommand::Announce(net("2001:db8::1/128")))
        );
        assert_eq!(r.acknowledge(Ack::Done), AckOutcome::Unmatched);
    }

    #[test]
    fn refused_withdraw_is_retried() {
        let mut r = Reconciler::new(set(&["192.0.2.1/32"]));
        r.reconcile(&BTreeSet::new());
        r.acknowledge(Ack::Error);
        assert_eq!(
            r.reconcile(&BTreeSet::new()),
            [RouteCommand::Withdraw(net("192.0.2.1/32"))]
        );
    }
}
