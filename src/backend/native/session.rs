//! One BGP session as a pure state machine (RFC 4271 §8, reduced to what a
//! speaker that only originates routes needs): events in, actions out. No
//! sockets, no clocks: timers are actions the I/O layer carries out and
//! reports back as events.
//!
//! ```text
//! Idle ─Start─► Connect ─Connected/send OPEN─► OpenSent ─OPEN ok/KEEPALIVE─►
//! OpenConfirm ─KEEPALIVE─► Established (send table + End-of-RIB)
//! any error ─► NOTIFICATION, close, Idle, ConnectRetry after backoff
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use super::packet::{
    AS_TRANS, Attributes, Capability, Family, Incoming, Message, Notification, Open, Origin,
    Update, build_updates, ipv4_of,
};
use crate::backend::Backoff;

/// Session states, numbered as the original anycastd's
/// `anycastd_gobgp_peer_session_state` (0 is "unknown").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle = 1,
    Connect = 2,
    Active = 3,
    OpenSent = 4,
    OpenConfirm = 5,
    Established = 6,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "opensent",
            State::OpenConfirm => "openconfirm",
            State::Established => "established",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// The session has stayed Established long enough to count as stable:
    /// only then does the reconnect backoff start over.
    Stable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Begin (connect, or wait for the peer when passive).
    Start,
    /// TCP is up; `local` is our end's address.
    Connected {
        local: IpAddr,
    },
    ConnectFailed(String),
    /// The peer closed, reset, or a read/write failed.
    Closed(String),
    Received(Incoming),
    /// What the peer sent is invalid: this NOTIFICATION is owed.
    Invalid(Notification),
    TimerFired(Timer),
    /// The engine's desired routes changed.
    Desired(BTreeSet<IpNet>),
    /// Shut down: withdraw, say goodbye, close.
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the TCP connection (or, when passive, accept the peer's).
    Connect,
    Send(Message),
    /// Close the TCP connection.
    Close,
    SetTimer(Timer, Duration),
    CancelTimer(Timer),
    StateChanged(State),
    /// The session left Established (or failed to get there): why.
    Down(String),
    /// The session reached Established.
    Up,
    /// A received UPDATE had an attribute error handled as withdraw (RFC 7606).
    TreatedAsWithdraw(String),
    /// These desired prefixes cannot be announced on this session (each
    /// reported once per session).
    Unannounceable {
        prefixes: Vec<IpNet>,
        why: String,
    },
    /// After `Stop`: nothing more will happen.
    Finished,
}

/// Per-session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_asn: u32,
    pub remote_asn: u32,
    pub router_id: Ipv4Addr,
    /// Hold time we offer; 0 disables keepalives (RFC 4271 §4.2).
    pub hold_time: u16,
    /// IPv4 next hop; `None` uses the session's own address.
    pub next_hop: Option<Ipv4Addr>,
    /// IPv6 next hop; `None` uses the session's own address if it is IPv6.
    pub next_hop6: Option<Ipv6Addr>,
    /// RFC 8203 text sent with the Cease at shutdown.
    pub shutdown_reason: String,
}

/// What both sides agreed in OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Negotiated {
    hold_time: u16,
    four_octet_as: bool,
    families: Vec<Family>,
    local: IpAddr,
}

/// RFC 4271 §10: hold time while waiting for the peer's OPEN.
const LARGE_HOLD: Duration = Duration::from_secs(240);

/// How long a session must stay Established before the reconnect backoff
/// starts over. A peer that accepts the OPEN and then refuses the first
/// UPDATE (FRR answers a loopback NEXT_HOP with 3/8 at once) would otherwise
/// be reconnected to every second, forever (RFC 4271 §8.1.1
/// DampPeerOscillations).
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

pub struct Session {
    config: SessionConfig,
    state: State,
    desired: BTreeSet<IpNet>,
    /// What the peer has been sent and not withdrawn.
    announced: BTreeSet<IpNet>,
    /// Desired prefixes left out for want of a next hop, reported once per
    /// session.
    unannounceable: BTreeSet<IpNet>,
    negotiated: Option<Negotiated>,
    local: Option<IpAddr>,
    backoff: Backoff,
    stopping: bool,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            state: State::Idle,
            desired: BTreeSet::new(),
            announced: BTreeSet::new(),
            unannounceable: BTreeSet::new(),
            negotiated: None,
            local: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            stopping: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn announced(&self) -> &BTreeSet<IpNet> {
        &self.announced
    }

    /// Whether AS numbers on this session take 4 octets (for decoding).
    pub fn four_octet_as(&self) -> bool {
        self.negotiated.as_ref().is_some_and(|n| n.four_octet_as)
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                if self.state == State::Idle && !self.stopping {
                    self.set_state(State::Connect, &mut out);
                    out.push(Action::Connect);
                }
            }
            Event::Connected { local } => {
                if self.state != State::Connect && self.state != State::Active {
                    return out;
                }
                self.local = Some(local);
                out.push(Action::CancelTimer(Timer::ConnectRetry));
                out.push(Action::Send(Message::Open(self.open())));
                out.push(Action::SetTimer(Timer::Hold, LARGE_HOLD));
                self.set_state(State::OpenSent, &mut out);
            }
            Event::ConnectFailed(why) => {
                if matches!(self.state, State::Connect | State::Active) {
                    self.reset(format!("connect failed: {why}"), &mut out);
                }
            }
            Event::Closed(why) => {
                if self.state != State::Idle {
                    self.reset(format!("connection closed: {why}"), &mut out);
                }
            }
            Event::Invalid(notification) => {
                let why = format!("sent {} to the peer", notification.describe());
                out.push(Action::Send(Message::Notification(notification)));
                self.reset(why, &mut out);
            }
            Event::Received(message) => self.receive(message, &mut out),
            Event::TimerFired(Timer::ConnectRetry) => {
                if self.state == State::Idle && !self.stopping {
                    self.set_state(State::Connect, &mut out);
                    out.push(Action::Connect);
                }
            }
            Event::TimerFired(Timer::Hold) => {
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    out.push(Action::Send(Message::Notification(Notification::new(
                        4,
                        0,
                        Vec::new(),
                    ))));
                    self.reset("hold timer expired".into(), &mut out);
                }
            }
            Event::TimerFired(Timer::Stable) => {
                if self.state == State::Established {
                    self.backoff.reset();
                }
            }
            Event::TimerFired(Timer::Keepalive) => {
                if let (State::OpenConfirm | State::Established, Some(n)) =
                    (self.state, &self.negotiated)
                    && n.hold_time > 0
                {
                    out.push(Action::Send(Message::Keepalive));
                    out.push(Action::SetTimer(
                        Timer::Keepalive,
                        keepalive_of(n.hold_time),
                    ));
                }
            }
            Event::Desired(routes) => {
                self.desired = routes;
                if self.state == State::Established {
                    self.sync(&mut out);
                }
            }
            Event::Stop => {
                self.stopping = true;
                if self.state == State::Established {
                    let withdraw: Vec<IpNet> = self.announced.iter().copied().collect();
                    self.send_updates(&withdraw, &[], &mut out);
                    self.announced.clear();
                }
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    out.push(Action::Send(Message::Notification(
                        Notification::administrative_shutdown(&self.config.shutdown_reason),
                    )));
                }
                out.push(Action::Close);
                for timer in [
                    Timer::ConnectRetry,
                    Timer::Hold,
                    Timer::Keepalive,
                    Timer::Stable,
                ] {
                    out.push(Action::CancelTimer(timer));
                }
                if self.state == State::Established {
                    out.push(Action::Down("shutting down".into()));
                }
                self.set_state(State::Idle, &mut out);
                out.push(Action::Finished);
            }
        }
        out
    }

    fn receive(&mut self, message: Incoming, out: &mut Vec<Action>) {
        let in_session = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        if !in_session {
            return;
        }
        match (self.state, message) {
            (_, Incoming::Notification(n)) => {
                self.reset(format!("peer sent {}", n.describe()), out);
            }
            (State::OpenSent, Incoming::Open(open)) => {
                if let Err(notification) = self.check_open(&open) {
                    self.handle_invalid(notification, out);
                    return;
                }
                let hold_time = self.config.hold_time.min(open.hold_time);
                let negotiated = Negotiated {
                    hold_time,
                    four_octet_as: open.four_octet_as(),
                    families: open.families(),
                    local: self.local.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                };
                out.push(Action::Send(Message::Keepalive));
                if hold_time > 0 {
                    out.push(Action::SetTimer(
                        Timer::Hold,
                        Duration::from_secs(u64::from(hold_time)),
                    ));
                    out.push(Action::SetTimer(Timer::Keepalive, keepalive_of(hold_time)));
                } else {
                    out.push(Action::CancelTimer(Timer::Hold));
                }
                self.negotiated = Some(negotiated);
                self.set_state(State::OpenConfirm, out);
            }
            (State::OpenConfirm, Incoming::Keepalive) => {
                self.restart_hold(out);
                self.set_state(State::Established, out);
                out.push(Action::SetTimer(Timer::Stable, STABLE_AFTER));
                out.push(Action::Up);
                self.announced.clear();
                self.sync(out);
                let families = self.families();
                for family in families {
                    out.push(Action::Send(Message::Update(Update {
                        end_of_rib: Some(family),
                        ..Update::default()
                    })));
                }
            }
            (State::Established, Incoming::Keepalive) => self.restart_hold(out),
            (State::Established, Incoming::Update(update)) => {
                self.restart_hold(out);
                if let Some(why) = update.treat_as_withdraw {
                    out.push(Action::TreatedAsWithdraw(why));
                }
            }
            (State::Established, Incoming::RouteRefresh { afi, safi }) => {
                self.restart_hold(out);
                let family = match (afi, safi) {
                    (1, 1) => Family::Ipv4Unicast,
                    (2, 1) => Family::Ipv6Unicast,
                    _ => return,
                };
                let again: Vec<IpNet> = self
                    .announced
                    .iter()
                    .filter(|p| Family::of(p) == family)
                    .copied()
                    .collect();
                self.send_updates(&[], &again, out);
                out.push(Action::Send(Message::Update(Update {
                    end_of_rib: Some(family),
                    ..Update::default()
                })));
            }
            // Anything else in the wrong state is an FSM error (RFC 6608).
            (state, _) => {
                let subcode = match state {
                    State::OpenSent => 1,
                    State::OpenConfirm => 2,
                    _ => 3,
                };
                self.handle_invalid(Notification::new(5, subcode, Vec::new()), out);
            }
        }
    }

    fn handle_invalid(&mut self, notification: Notification, out: &mut Vec<Action>) {
        let why = format!("sent {} to the peer", notification.describe());
        out.push(Action::Send(Message::Notification(notification)));
        self.reset(why, out);
    }

    fn check_open(&self, open: &Open) -> Result<(), Notification> {
        if open.asn() != self.config.remote_asn {
            return Err(Notification::new(2, 2, Vec::new()));
        }
        let internal = self.config.local_asn == self.config.remote_asn;
        if internal && open.router_id == self.config.router_id {
            return Err(Notification::new(2, 3, Vec::new()));
        }
        Ok(())
    }

    fn open(&self) -> Open {
        Open {
            my_as: u16::try_from(self.config.local_asn).unwrap_or(AS_TRANS),
            hold_time: self.config.hold_time,
            router_id: self.config.router_id,
            capabilities: vec![
                Capability::Multiprotocol { afi: 1, safi: 1 },
                Capability::Multiprotocol { afi: 2, safi: 1 },
                Capability::RouteRefresh,
                Capability::FourOctetAs(self.config.local_asn),
            ],
        }
    }

    /// Families both sides can carry.
    fn families(&self) -> Vec<Family> {
        self.negotiated
            .as_ref()
            .map(|n| n.families.clone())
            .unwrap_or_default()
    }

    /// Sends what makes the peer's view match `desired`.
    fn sync(&mut self, out: &mut Vec<Action>) {
        let families = self.families();
        let has_next_hop4 = self.next_hop4().is_some();
        // IPv4 NLRI need an IPv4 NEXT_HOP, which an IPv6 session only has
        // when one is configured: without it peers refuse the UPDATE (FRR:
        // "Missing well-known attribute NEXT_HOP").
        let (wanted, unannounceable): (BTreeSet<IpNet>, BTreeSet<IpNet>) = self
            .desired
            .iter()
            .filter(|p| families.contains(&Family::of(p)))
            .partition(|p| has_next_hop4 || Family::of(p) != Family::Ipv4Unicast);
        let unreported: Vec<IpNet> = unannounceable
            .difference(&self.unannounceable)
            .copied()
            .collect();
        if !unreported.is_empty() {
            out.push(Action::Unannounceable {
                prefixes: unreported,
                why: "no IPv4 next hop on this IPv6 session: set announcer.local_address \
                          to an IPv4 address and the peer's local_address to the IPv6 one"
                    .into(),
            });
            self.unannounceable.extend(unannounceable);
        }
        let withdraw: Vec<IpNet> = self.announced.difference(&wanted).copied().collect();
        let announce: Vec<IpNet> = wanted.difference(&self.announced).copied().collect();
        self.send_updates(&withdraw, &announce, out);
        self.announced = wanted;
    }

    /// The NEXT_HOP for IPv4 routes: configured, or the session's own
    /// address when that is IPv4.
    fn next_hop4(&self) -> Option<Ipv4Addr> {
        self.config
            .next_hop
            .or_else(|| self.negotiated.as_ref().and_then(|n| ipv4_of(n.local)))
    }

    fn send_updates(&self, withdraw: &[IpNet], announce: &[IpNet], out: &mut Vec<Action>) {
        if withdraw.is_empty() && announce.is_empty() {
            return;
        }
        let Some(n) = &self.negotiated else { return };
        let external = self.config.local_asn != self.config.remote_asn;
        let attributes = Attributes {
            origin: Origin::Igp,
            as_path: if external {
                vec![self.config.local_asn]
            } else {
                Vec::new()
            },
            four_octet_as: n.four_octet_as,
            next_hop: self.next_hop4(),
            local_pref: (!external).then_some(100),
        };
        let next_hop6 = self.config.next_hop6.or(match n.local {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped().map(|v4| v4.to_ipv6_mapped()),
            IpAddr::V4(a) => Some(a.to_ipv6_mapped()),
        });
        for update in build_updates(withdraw, announce, &attributes, next_hop6) {
            out.push(Action::Send(Message::Update(update)));
        }
    }

    fn restart_hold(&self, out: &mut Vec<Action>) {
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            out.push(Action::SetTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(n.hold_time)),
            ));
        }
    }

    /// Back to Idle after a failure; retry after a backoff delay.
    fn reset(&mut self, why: String, out: &mut Vec<Action>) {
        let was_established = self.state == State::Established;
        out.push(Action::Close);
        out.push(Action::CancelTimer(Timer::Hold));
        out.push(Action::CancelTimer(Timer::Keepalive));
        out.push(Action::CancelTimer(Timer::Stable));
        self.negotiated = None;
        self.announced.clear();
        self.unannounceable.clear();
        self.set_state(State::Idle, out);
        if was_established || !why.is_empty() {
            out.push(Action::Down(why));
        }
        if !self.stopping {
            out.push(Action::SetTimer(
                Timer::ConnectRetry,
                self.backoff.next_delay(),
            ));
        }
    }

    fn set_state(&mut self, state: State, out: &mut Vec<Action>) {
        if self.state != state {
            self.state = state;
            out.push(Action::StateChanged(state));
        }
    }
}

/// Keepalives at a third of the hold time (RFC 4271 §10), at least 1 s.
fn keepalive_of(hold_time: u16) -> Duration {
    Duration::from_secs(u64::from((hold_time / 3).max(1)))
}

#[cfg(test)]
mod tests;
