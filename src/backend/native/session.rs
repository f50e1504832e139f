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
//!
//! A session has up to two TCP connections at once: the one we opened
//! ([`Side::Outgoing`]) and one the peer opened ([`Side::Incoming`]).
//! Inbound connections from the configured peer are always taken (unless a
//! connection is already Established), so a router that comes back can
//! connect at once instead of waiting for our retry. When both get as far
//! as an OPEN, RFC 4271 §6.8 decides which one stays: the one opened by the
//! side with the higher BGP Identifier (RFC 6286 §2.3: the higher AS on a
//! tie); the other is closed with Cease / Connection Collision Resolution.
//!
//! Reconnect waits are capped at [`RETRY_CAP`] and jittered (RFC 4271 §10:
//! a factor between 0.75 and 1) from a seed in the config, so tests see the
//! same waits every run. The peer's own Cease is not a failure of ours and
//! does not lengthen the wait; reaching Established starts it over.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::route::{RouteAttributes, RouteSet};

use super::packet::{
    AS_TRANS, Attributes, Capability, Family, Incoming, Message, Notification, Open, Origin,
    Update, build_updates, ipv4_of,
};

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

/// Who opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// We connected to the peer.
    Outgoing,
    /// The peer connected to us.
    Incoming,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Outgoing => 0,
            Side::Incoming => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Outgoing => Side::Incoming,
            Side::Incoming => Side::Outgoing,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Outgoing => "outgoing",
            Side::Incoming => "incoming",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold(Side),
    Keepalive(Side),
    /// The session has stayed Established long enough to count as stable;
    /// a failure before that still lengthens the reconnect wait.
    Stable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Begin (connect, or wait for the peer when passive).
    Start,
    /// Our connection attempt succeeded; `local` is our end's address.
    Connected {
        local: IpAddr,
    },
    /// The peer connected to us. Answered with [`Action::Accept`] or
    /// [`Action::Refuse`].
    Accepted {
        local: IpAddr,
    },
    /// Our connection attempt failed.
    ConnectFailed(String),
    /// The peer closed, reset, or a read/write failed on this connection.
    Closed(Side, String),
    Received(Side, Incoming),
    /// What the peer sent on this connection is invalid: this NOTIFICATION
    /// is owed.
    Invalid(Side, Notification),
    TimerFired(Timer),
    /// The engine's desired routes changed: each prefix with the
    /// attributes to announce it with (the class is not used).
    Desired(Arc<RouteSet>),
    /// Shut down: withdraw, say goodbye, close.
    Stop,
    /// BFD says the path to the peer is down: close every connection
    /// (Cease, subcode 10 "BFD Down", RFC 9384) and open none until
    /// [`Event::BfdUp`].
    BfdDown(String),
    /// A new BFD session waits for the peer's first answer: keep the
    /// session from coming up as [`Event::BfdDown`] does, quietly (not a
    /// fault); an Established session is left alone.
    BfdWaiting,
    /// BFD is Up again, or no longer has a say (the peer stopped
    /// answering it): connect at once.
    BfdUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open an outgoing TCP connection.
    Connect,
    /// Take the connection just accepted as the incoming one (replacing an
    /// older incoming connection, which the peer has given up on).
    Accept,
    /// Send this NOTIFICATION on the connection just accepted, and close it.
    Refuse(Notification),
    Send(Side, Message),
    /// Close this connection (after writing a NOTIFICATION already queued).
    Close(Side),
    SetTimer(Timer, Duration),
    CancelTimer(Timer),
    StateChanged(State),
    /// The session left Established: why.
    Down(String),
    /// A connection attempt, or a connection not yet Established, failed:
    /// why.
    NotEstablished(String),
    /// The session reached Established.
    Up,
    /// Two connections reached OPEN; this one was closed (RFC 4271 §6.8).
    CollisionResolved {
        closed: Side,
    },
    /// A received UPDATE had an attribute error handled as withdraw (RFC 7606).
    TreatedAsWithdraw(String),
    /// These desired prefixes cannot be announced on this session (each
    /// reported once per session).
    Unannounceable {
        prefixes: Vec<IpNet>,
        why: String,
    },
    /// A connection attempt failed; the first of a run of failures.
    Unreachable(String),
    /// The session came up after [`Action::Unreachable`].
    Reachable,
    /// The peer did not negotiate a family we have `routes` routes of;
    /// reported once until a session negotiates it.
    FamilyMissing {
        family: Family,
        routes: usize,
    },
    /// A session negotiated a family reported missing.
    FamilyCleared(Family),
    /// BFD took the session down or kept it from coming up: why (once
    /// per episode); `fault` unless it only waits for a new BFD session.
    HeldByBfd {
        why: String,
        fault: bool,
    },
    /// BFD no longer holds the session down.
    ReleasedByBfd,
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
    /// Only wait for the peer to connect; never connect to it.
    pub passive: bool,
    /// Seeds the jitter of reconnect waits.
    pub jitter_seed: u64,
}

/// What both sides agreed in OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Negotiated {
    hold_time: u16,
    four_octet_as: bool,
    families: Vec<Family>,
}

/// One TCP connection past the TCP handshake.
#[derive(Debug, Clone)]
struct Conn {
    /// OpenSent, OpenConfirm or Established.
    state: State,
    local: IpAddr,
    negotiated: Option<Negotiated>,
}

/// RFC 9384: Cease subcode "BFD Down".
const BFD_DOWN: u8 = 10;

/// RFC 4271 §10: hold time while waiting for the peer's OPEN.
const LARGE_HOLD: Duration = Duration::from_secs(240);

/// The first reconnect wait.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// The longest reconnect wait: once the peer is back, it has our routes
/// within this (or at once, when it connects to us itself).
pub const RETRY_CAP: Duration = Duration::from_secs(5);

/// How long a session must stay Established before a failure no longer
/// counts against the reconnect wait. A peer that accepts the OPEN and then
/// refuses the first UPDATE (FRR answers a loopback NEXT_HOP with 3/8 at
/// once) is then retried 1, 2, 4, 5, 5 … s apart rather than every second
/// (RFC 4271 §8.1.1 DampPeerOscillations). A Cease from the peer never
/// counts.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Reconnect waits: doubling from [`RETRY_BASE`] up to [`RETRY_CAP`], each
/// scaled by a jitter factor in [0.75, 1].
#[derive(Debug, Clone)]
struct Reconnect {
    failures: u32,
    /// `failures` when the current session reached Established, until it
    /// is stable: a failure before then carries on from there.
    before_established: Option<u32>,
    /// xorshift64 state.
    rng: u64,
}

impl Reconnect {
    fn new(seed: u64) -> Reconnect {
        Reconnect {
            failures: 0,
            before_established: None,
            // xorshift never leaves 0.
            rng: seed | 1,
        }
    }

    /// The next wait; `failure` says whether this retry follows a failure
    /// of ours (which lengthens the next one).
    fn delay(&mut self, failure: bool) -> Duration {
        let doubled = RETRY_BASE.saturating_mul(1u32 << self.failures.min(16));
        if failure {
            self.failures = self.failures.saturating_add(1);
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let per_mille = 750 + u32::try_from(self.rng % 251).unwrap_or(0);
        doubled.min(RETRY_CAP) * per_mille / 1000
    }

    fn established(&mut self) {
        self.before_established = Some(self.failures);
        self.failures = 0;
    }

    fn stable(&mut self) {
        self.before_established = None;
    }

    /// The Established session ended; `failure` as in [`Reconnect::delay`].
    fn session_ended(&mut self, failure: bool) {
        if let Some(before) = self.before_established.take()
            && failure
        {
            self.failures = before;
        }
    }
}

/// Why a connection ends, for the reconnect wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// Our failure or the peer's error: waits lengthen.
    Failure,
    /// The peer's Cease: not our failure.
    PeerCease,
}

pub struct Session {
    config: SessionConfig,
    /// The state last reported with [`Action::StateChanged`].
    state: State,
    started: bool,
    desired: Arc<RouteSet>,
    /// What the peer has been sent and not withdrawn, with the attributes
    /// it was last sent with.
    announced: BTreeMap<IpNet, Arc<RouteAttributes>>,
    /// The keys of `announced`, for [`Session::announced`].
    announced_prefixes: BTreeSet<IpNet>,
    /// Desired prefixes left out for want of a next hop, reported once per
    /// session.
    unannounceable: BTreeSet<IpNet>,
    /// Families reported missing ([`Action::FamilyMissing`]).
    missing_families: BTreeSet<Family>,
    /// The connections, by [`Side::index`].
    conns: [Option<Conn>; 2],
    /// An outgoing connection attempt is in flight.
    connecting: bool,
    /// Connection attempts have failed since the session was last up.
    unreachable: bool,
    reconnect: Reconnect,
    stopping: bool,
    /// BFD holds the session down: why.
    held: Option<String>,
}

impl Session {
    pub fn new(config: SessionConfig) -> Session {
        let reconnect = Reconnect::new(config.jitter_seed);
        Session {
            config,
            state: State::Idle,
            started: false,
            desired: Arc::default(),
            announced: BTreeMap::new(),
            announced_prefixes: BTreeSet::new(),
            unannounceable: BTreeSet::new(),
            missing_families: BTreeSet::new(),
            conns: [None, None],
            connecting: false,
            unreachable: false,
            reconnect,
            stopping: false,
            held: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The prefixes the peer has been sent and not withdrawn.
    pub fn announced(&self) -> &BTreeSet<IpNet> {
        &self.announced_prefixes
    }

    /// The attributes `prefix` was last announced with, if it is announced.
    pub fn announced_attributes(&self, prefix: &IpNet) -> Option<&RouteAttributes> {
        self.announced.get(prefix).map(|a| &**a)
    }

    /// Forgets what the peer was sent (the session went down, or is about
    /// to send everything again).
    fn forget_announced(&mut self) {
        self.announced.clear();
        self.announced_prefixes.clear();
    }

    /// Whether AS numbers on this connection take 4 octets (for decoding).
    pub fn four_octet_as(&self, side: Side) -> bool {
        self.conn(side)
            .and_then(|c| c.negotiated.as_ref())
            .is_some_and(|n| n.four_octet_as)
    }

    fn conn(&self, side: Side) -> Option<&Conn> {
        self.conns[side.index()].as_ref()
    }

    fn conn_mut(&mut self, side: Side) -> Option<&mut Conn> {
        self.conns[side.index()].as_mut()
    }

    /// The connection that is Established, if any.
    fn established(&self) -> Option<Side> {
        [Side::Outgoing, Side::Incoming].into_iter().find(|side| {
            self.conn(*side)
                .is_some_and(|c| c.state == State::Established)
        })
    }

    /// The negotiation of the Established connection.
    fn negotiated(&self) -> Option<&Negotiated> {
        self.established()
            .and_then(|side| self.conn(side))
            .and_then(|c| c.negotiated.as_ref())
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        let stop = event == Event::Stop;
        match event {
            Event::Start => {
                if !self.started && !self.stopping {
                    self.started = true;
                    self.connect(&mut out);
                }
            }
            Event::TimerFired(Timer::ConnectRetry) => {
                let idle = self.conns.iter().all(Option::is_none) && !self.connecting;
                if self.started && idle && !self.stopping {
                    self.connect(&mut out);
                }
            }
            Event::Connected { local } => {
                if !self.connecting {
                    return out;
                }
                self.connecting = false;
                if self.stopping
                    || self.established().is_some()
                    || self.conn(Side::Outgoing).is_some()
                {
                    // Not needed any more: the session is up on the other.
                    out.push(Action::Close(Side::Outgoing));
                } else {
                    self.open_connection(Side::Outgoing, local, &mut out);
                }
            }
            Event::Accepted { local } => {
                if self.held.is_some() {
                    out.push(Action::Refuse(Notification::new(6, BFD_DOWN, Vec::new())));
                } else if self.stopping {
                    out.push(Action::Refuse(Notification::new(6, 5, Vec::new())));
                } else if self.established().is_some() {
                    // RFC 4271 §6.8: a connection Established wins over a
                    // new one.
                    out.push(Action::Refuse(Notification::new(6, 7, Vec::new())));
                } else {
                    // An older incoming connection not yet Established is
                    // one the peer has given up on.
                    if self.conns[Side::Incoming.index()].take().is_some() {
                        out.push(Action::CancelTimer(Timer::Hold(Side::Incoming)));
                        out.push(Action::CancelTimer(Timer::Keepalive(Side::Incoming)));
                    }
                    out.push(Action::Accept);
                    self.open_connection(Side::Incoming, local, &mut out);
                }
            }
            Event::ConnectFailed(why) => {
                if self.connecting {
                    self.connecting = false;
                    if !self.unreachable {
                        self.unreachable = true;
                        out.push(Action::Unreachable(why.clone()));
                    }
                    out.push(Action::NotEstablished(format!("connect failed: {why}")));
                    self.retry_if_idle(Cause::Failure, &mut out);
                }
            }
            Event::Closed(side, why) => {
                self.conn_failed(
                    side,
                    format!("connection closed: {why}"),
                    Cause::Failure,
                    &mut out,
                );
            }
            Event::Invalid(side, notification) => {
                if self.conn(side).is_some() {
                    self.handle_invalid(side, notification, &mut out);
                }
            }
            Event::Received(side, message) => self.receive(side, message, &mut out),
            Event::TimerFired(Timer::Hold(side)) => {
                if self.conn(side).is_some() {
                    out.push(Action::Send(
                        side,
                        Message::Notification(Notification::new(4, 0, Vec::new())),
                    ));
                    self.conn_failed(side, "hold timer expired".into(), Cause::Failure, &mut out);
                }
            }
            Event::TimerFired(Timer::Stable) => {
                if self.established().is_some() {
                    self.reconnect.stable();
                }
            }
            Event::TimerFired(Timer::Keepalive(side)) => {
                if let Some(Conn {
                    state: State::OpenConfirm | State::Established,
                    negotiated: Some(n),
                    ..
                }) = self.conn(side)
                    && n.hold_time > 0
                {
                    let every = keepalive_of(n.hold_time);
                    out.push(Action::Send(side, Message::Keepalive));
                    out.push(Action::SetTimer(Timer::Keepalive(side), every));
                }
            }
            Event::Desired(routes) => {
                self.desired = routes;
                if self.established().is_some() {
                    self.sync(&mut out);
                }
            }
            Event::Stop => {
                self.stopping = true;
                if let Some(side) = self.established() {
                    let withdraw: Vec<IpNet> = self.announced.keys().copied().collect();
                    self.send_updates(side, &withdraw, &[], &mut out);
                    self.forget_announced();
                    out.push(Action::Down("shutting down".into()));
                }
                for side in [Side::Outgoing, Side::Incoming] {
                    if self.conns[side.index()].take().is_some() {
                        out.push(Action::Send(
                            side,
                            Message::Notification(Notification::administrative_shutdown(
                                &self.config.shutdown_reason,
                            )),
                        ));
                        out.push(Action::Close(side));
                    }
                    out.push(Action::CancelTimer(Timer::Hold(side)));
                    out.push(Action::CancelTimer(Timer::Keepalive(side)));
                }
                if self.connecting {
                    self.connecting = false;
                    out.push(Action::Close(Side::Outgoing));
                }
                out.push(Action::CancelTimer(Timer::ConnectRetry));
                out.push(Action::CancelTimer(Timer::Stable));
            }
            Event::BfdDown(why) => {
                if self.held.is_none() && !self.stopping {
                    self.hold(why, true, &mut out);
                }
            }
            Event::BfdWaiting => {
                // Waiting keeps new connections from starting; an
                // Established session (the BFD side restarted under it)
                // stays until BFD says the path is down.
                if self.held.is_none() && !self.stopping && self.established().is_none() {
                    self.hold(
                        "waiting for the BFD session to come up".into(),
                        false,
                        &mut out,
                    );
                }
            }
            Event::BfdUp => {
                if self.held.take().is_some() {
                    out.push(Action::ReleasedByBfd);
                    let idle = self.conns.iter().all(Option::is_none) && !self.connecting;
                    if self.started && idle && !self.stopping {
                        out.push(Action::CancelTimer(Timer::ConnectRetry));
                        self.connect(&mut out);
                    }
                }
            }
        }
        self.report_state(&mut out);
        if stop {
            out.push(Action::Finished);
        }
        out
    }

    /// BFD says the path is down: every connection closes with Cease/BFD
    /// Down, an attempt in flight is dropped, and no retry is set.
    fn hold(&mut self, why: String, fault: bool, out: &mut Vec<Action>) {
        out.push(Action::HeldByBfd {
            why: why.clone(),
            fault,
        });
        self.held = Some(why.clone());
        for side in [Side::Outgoing, Side::Incoming] {
            if self.conn(side).is_some() {
                out.push(Action::Send(
                    side,
                    Message::Notification(Notification::new(6, BFD_DOWN, Vec::new())),
                ));
                self.conn_failed(side, format!("BFD down: {why}"), Cause::Failure, out);
            }
        }
        if self.connecting {
            self.connecting = false;
            out.push(Action::Close(Side::Outgoing));
        }
        out.push(Action::CancelTimer(Timer::ConnectRetry));
    }

    /// Starts a connection attempt, unless passive or held by BFD.
    fn connect(&mut self, out: &mut Vec<Action>) {
        if self.held.is_some() {
            return;
        }
        if !self.config.passive {
            self.connecting = true;
            out.push(Action::Connect);
        }
    }

    /// A TCP connection is up on `side`: send our OPEN.
    fn open_connection(&mut self, side: Side, local: IpAddr, out: &mut Vec<Action>) {
        self.conns[side.index()] = Some(Conn {
            state: State::OpenSent,
            local,
            negotiated: None,
        });
        out.push(Action::CancelTimer(Timer::ConnectRetry));
        out.push(Action::Send(side, Message::Open(self.open())));
        out.push(Action::SetTimer(Timer::Hold(side), LARGE_HOLD));
    }

    /// The state to report: the most advanced connection's, else whether a
    /// connection attempt is in flight (Connect) or we wait for the peer
    /// (Active, when passive).
    fn derived_state(&self) -> State {
        let best = self
            .conns
            .iter()
            .flatten()
            .map(|c| c.state)
            .max_by_key(|s| *s as u8);
        match best {
            Some(state) => state,
            None if self.connecting => State::Connect,
            None if self.config.passive && self.started && !self.stopping => State::Active,
            None => State::Idle,
        }
    }

    fn report_state(&mut self, out: &mut Vec<Action>) {
        let state = self.derived_state();
        if state != self.state {
            self.state = state;
            out.push(Action::StateChanged(state));
        }
    }

    fn receive(&mut self, side: Side, message: Incoming, out: &mut Vec<Action>) {
        let Some(state) = self.conn(side).map(|c| c.state) else {
            return;
        };
        match (state, message) {
            (_, Incoming::Notification(n)) => {
                // The peer's Cease (shutdown, reset, collision) is not our
                // failure.
                let cause = if n.code == 6 {
                    Cause::PeerCease
                } else {
                    Cause::Failure
                };
                self.conn_failed(side, format!("peer sent {}", n.describe()), cause, out);
            }
            (State::OpenSent, Incoming::Open(open)) => self.receive_open(side, &open, out),
            (State::OpenConfirm, Incoming::Keepalive) => {
                if let Some(conn) = self.conn_mut(side) {
                    conn.state = State::Established;
                }
                self.restart_hold(side, out);
                self.reconnect.established();
                out.push(Action::CancelTimer(Timer::ConnectRetry));
                out.push(Action::SetTimer(Timer::Stable, STABLE_AFTER));
                out.push(Action::Up);
                if std::mem::take(&mut self.unreachable) {
                    out.push(Action::Reachable);
                }
                self.forget_announced();
                self.sync(out);
                for family in self.families() {
                    out.push(Action::Send(
                        side,
                        Message::Update(Update {
                            end_of_rib: Some(family),
                            ..Update::default()
                        }),
                    ));
                }
            }
            (State::Established, Incoming::Keepalive) => self.restart_hold(side, out),
            (State::Established, Incoming::Update(update)) => {
                self.restart_hold(side, out);
                if let Some(why) = update.treat_as_withdraw {
                    out.push(Action::TreatedAsWithdraw(why));
                }
            }
            (State::Established, Incoming::RouteRefresh { afi, safi }) => {
                self.restart_hold(side, out);
                let family = match (afi, safi) {
                    (1, 1) => Family::Ipv4Unicast,
                    (2, 1) => Family::Ipv6Unicast,
                    _ => return,
                };
                let again: Vec<(IpNet, Arc<RouteAttributes>)> = self
                    .announced
                    .iter()
                    .filter(|(p, _)| Family::of(p) == family)
                    .map(|(p, a)| (*p, a.clone()))
                    .collect();
                self.send_updates(side, &[], &again, out);
                out.push(Action::Send(
                    side,
                    Message::Update(Update {
                        end_of_rib: Some(family),
                        ..Update::default()
                    }),
                ));
            }
            // Anything else in the wrong state is an FSM error (RFC 6608).
            (state, _) => {
                let subcode = match state {
                    State::OpenSent => 1,
                    State::OpenConfirm => 2,
                    _ => 3,
                };
                self.handle_invalid(side, Notification::new(5, subcode, Vec::new()), out);
            }
        }
    }

    fn receive_open(&mut self, side: Side, open: &Open, out: &mut Vec<Action>) {
        if let Err(notification) = self.check_open(open) {
            self.handle_invalid(side, notification, out);
            return;
        }
        // Collision detection (RFC 4271 §6.8) against the other connection
        // once it has an OPEN too (OpenConfirm), or is Established.
        let other = side.other();
        match self.conn(other).map(|c| c.state) {
            Some(State::Established) => {
                self.lose_collision(side, out);
                return;
            }
            Some(State::OpenConfirm) => {
                if self.collision_loser(open) == side {
                    self.lose_collision(side, out);
                    return;
                }
                self.lose_collision(other, out);
            }
            _ => {}
        }
        let hold_time = self.config.hold_time.min(open.hold_time);
        out.push(Action::Send(side, Message::Keepalive));
        if hold_time > 0 {
            out.push(Action::SetTimer(
                Timer::Hold(side),
                Duration::from_secs(u64::from(hold_time)),
            ));
            out.push(Action::SetTimer(
                Timer::Keepalive(side),
                keepalive_of(hold_time),
            ));
        } else {
            out.push(Action::CancelTimer(Timer::Hold(side)));
        }
        if let Some(conn) = self.conn_mut(side) {
            conn.negotiated = Some(Negotiated {
                hold_time,
                four_octet_as: open.four_octet_as(),
                families: open.families(),
            });
            conn.state = State::OpenConfirm;
        }
    }

    /// Of two connections that both reached OPEN, the one to close: the
    /// connection opened by the side with the lower BGP Identifier (RFC
    /// 4271 §6.8), or, with equal identifiers, the lower AS (RFC 6286 §2.3).
    fn collision_loser(&self, open: &Open) -> Side {
        let ours = (u32::from(self.config.router_id), self.config.local_asn);
        let theirs = (u32::from(open.router_id), open.asn());
        if theirs > ours {
            Side::Outgoing
        } else {
            Side::Incoming
        }
    }

    /// Closes the connection that lost a collision with Cease / Connection
    /// Collision Resolution. Not a failure: the other one carries on.
    fn lose_collision(&mut self, side: Side, out: &mut Vec<Action>) {
        if self.conns[side.index()].take().is_none() {
            return;
        }
        out.push(Action::Send(
            side,
            Message::Notification(Notification::new(6, 7, Vec::new())),
        ));
        out.push(Action::Close(side));
        out.push(Action::CancelTimer(Timer::Hold(side)));
        out.push(Action::CancelTimer(Timer::Keepalive(side)));
        out.push(Action::CollisionResolved { closed: side });
    }

    fn handle_invalid(&mut self, side: Side, notification: Notification, out: &mut Vec<Action>) {
        let why = format!("sent {} to the peer", notification.describe());
        out.push(Action::Send(side, Message::Notification(notification)));
        self.conn_failed(side, why, Cause::Failure, out);
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

    /// Families both sides can carry on the Established connection.
    fn families(&self) -> Vec<Family> {
        self.negotiated()
            .map(|n| n.families.clone())
            .unwrap_or_default()
    }

    /// Sends what makes the peer's view match `desired`.
    fn sync(&mut self, out: &mut Vec<Action>) {
        let Some(side) = self.established() else {
            return;
        };
        let families = self.families();
        self.report_families(&families, out);
        let has_next_hop4 = self.next_hop4().is_some();
        // IPv4 NLRI need an IPv4 NEXT_HOP, which an IPv6 session only has
        // when one is configured: without it peers refuse the UPDATE (FRR:
        // "Missing well-known attribute NEXT_HOP").
        let (wanted, unannounceable): (Vec<_>, Vec<_>) = self
            .desired
            .iter()
            .filter(|(p, _)| families.contains(&Family::of(p)))
            .partition(|(p, _)| has_next_hop4 || Family::of(p) != Family::Ipv4Unicast);
        let wanted: BTreeMap<IpNet, Arc<RouteAttributes>> = wanted
            .into_iter()
            .map(|(p, a)| (*p, a.attributes.clone()))
            .collect();
        let unannounceable: BTreeSet<IpNet> = unannounceable.into_iter().map(|(p, _)| *p).collect();
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
        let withdraw: Vec<IpNet> = self
            .announced
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        // New prefixes, and prefixes whose attributes changed: an UPDATE
        // with the new attributes replaces the old route (implicit
        // withdraw, RFC 4271 §3.1), so nothing is withdrawn in between.
        let announce: Vec<(IpNet, Arc<RouteAttributes>)> = wanted
            .iter()
            .filter(|(p, a)| {
                // Shared profiles make the pointer test the usual answer.
                self.announced
                    .get(p)
                    .is_none_or(|old| !Arc::ptr_eq(old, a) && **old != ***a)
            })
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        self.send_updates(side, &withdraw, &announce, out);
        self.announced_prefixes = wanted.keys().copied().collect();
        self.announced = wanted;
    }

    /// Reports each family we have routes of that the peer did not
    /// negotiate (once), and each such family a session negotiates again.
    fn report_families(&mut self, negotiated: &[Family], out: &mut Vec<Action>) {
        for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            if negotiated.contains(&family) {
                if self.missing_families.remove(&family) {
                    out.push(Action::FamilyCleared(family));
                }
                continue;
            }
            let routes = self
                .desired
                .keys()
                .filter(|p| Family::of(p) == family)
                .count();
            if routes > 0 && self.missing_families.insert(family) {
                out.push(Action::FamilyMissing { family, routes });
            }
        }
    }

    /// The NEXT_HOP for IPv4 routes: configured, or the session's own
    /// address when that is IPv4.
    fn next_hop4(&self) -> Option<Ipv4Addr> {
        self.config.next_hop.or_else(|| {
            self.established()
                .and_then(|side| self.conn(side))
                .and_then(|c| ipv4_of(c.local))
        })
    }

    /// Sends UPDATEs withdrawing `withdraw` and announcing `announce`: one
    /// group of UPDATEs per distinct set of attributes.
    fn send_updates(
        &self,
        side: Side,
        withdraw: &[IpNet],
        announce: &[(IpNet, Arc<RouteAttributes>)],
        out: &mut Vec<Action>,
    ) {
        if withdraw.is_empty() && announce.is_empty() {
            return;
        }
        let Some(conn) = self.conn(side) else { return };
        let Some(n) = &conn.negotiated else { return };
        let external = self.config.local_asn != self.config.remote_asn;
        let mut groups: BTreeMap<&RouteAttributes, Vec<IpNet>> = BTreeMap::new();
        for (prefix, attributes) in announce {
            groups.entry(&**attributes).or_default().push(*prefix);
        }
        let next_hop4 = self.next_hop4();
        let groups: Vec<(Attributes, Vec<IpNet>)> = groups
            .into_iter()
            .map(|(route, prefixes)| {
                // The local AS once on eBGP, then the prepends. None on
                // iBGP: a peer of our own AS would find itself in the
                // path and drop the route as a loop, and a path length
                // only matters between ASes anyway.
                let own = if external {
                    1 + usize::from(route.prepend)
                } else {
                    0
                };
                let attributes = Attributes {
                    origin: Origin::Igp,
                    as_path: vec![self.config.local_asn; own],
                    four_octet_as: n.four_octet_as,
                    next_hop: next_hop4,
                    med: route.med,
                    local_pref: (!external).then(|| route.local_pref.unwrap_or(100)),
                    communities: route.communities.clone(),
                    large_communities: route.large_communities.clone(),
                };
                (attributes, prefixes)
            })
            .collect();
        let next_hop6 = self.config.next_hop6.or(match conn.local {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => Some(a),
            IpAddr::V6(a) => a.to_ipv4_mapped().map(|v4| v4.to_ipv6_mapped()),
            IpAddr::V4(a) => Some(a.to_ipv6_mapped()),
        });
        for update in build_updates(withdraw, &groups, next_hop6) {
            out.push(Action::Send(side, Message::Update(update)));
        }
    }

    fn restart_hold(&self, side: Side, out: &mut Vec<Action>) {
        if let Some(n) = self.conn(side).and_then(|c| c.negotiated.as_ref())
            && n.hold_time > 0
        {
            out.push(Action::SetTimer(
                Timer::Hold(side),
                Duration::from_secs(u64::from(n.hold_time)),
            ));
        }
    }

    /// A connection ends on a failure (or the peer's Cease): close it, and
    /// if nothing else is left, retry after the reconnect wait.
    fn conn_failed(&mut self, side: Side, why: String, cause: Cause, out: &mut Vec<Action>) {
        let Some(conn) = self.conns[side.index()].take() else {
            return;
        };
        out.push(Action::Close(side));
        out.push(Action::CancelTimer(Timer::Hold(side)));
        out.push(Action::CancelTimer(Timer::Keepalive(side)));
        if conn.state == State::Established {
            out.push(Action::CancelTimer(Timer::Stable));
            self.forget_announced();
            self.unannounceable.clear();
            self.reconnect.session_ended(cause == Cause::Failure);
            out.push(Action::Down(why));
        } else {
            out.push(Action::NotEstablished(why));
        }
        self.retry_if_idle(cause, out);
    }

    /// With no connection left and none in flight, retry after the wait
    /// (unless BFD holds the session: [`Event::BfdUp`] connects).
    fn retry_if_idle(&mut self, cause: Cause, out: &mut Vec<Action>) {
        let idle = self.conns.iter().all(Option::is_none) && !self.connecting;
        if idle && !self.stopping && !self.config.passive && self.held.is_none() {
            let delay = self.reconnect.delay(cause == Cause::Failure);
            out.push(Action::SetTimer(Timer::ConnectRetry, delay));
        }
    }
}

/// Keepalives at a third of the hold time (RFC 4271 §10), at least 1 s.
fn keepalive_of(hold_time: u16) -> Duration {
    Duration::from_secs(u64::from((hold_time / 3).max(1)))
}

#[cfg(test)]
mod tests;
