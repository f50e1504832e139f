//! One BFD session in asynchronous mode (RFC 5880 §6.8) as a pure state
//! machine: received packets and the time in, packets to send and state
//! changes out. It keeps its own deadlines (next transmission, detection
//! time) and reports the earliest; the I/O layer sleeps until then and
//! calls [`BfdSession::on_timer`]. No sockets, no clocks of its own.
//!
//! ```text
//! Down ─peer Down─► Init ─peer Init/Up─► Up      (three-way handshake)
//! Down ─peer Init─► Up
//! Up/Init ─detection time passes, or peer Down/AdminDown─► Down
//! ```
//!
//! Intervals: while the session is not Up we send at most once a second
//! (§6.8.3); on Up we switch to the configured rate with a Poll Sequence
//! (§6.8.3, §6.5) so the peer learns it. The transmit interval is the
//! larger of ours and the peer's Required Min RX, less 2–25 % jitter
//! (10–25 % with a multiplier of 1; §6.8.7). The detection time is the
//! peer's multiplier times the larger of our Required Min RX and the
//! peer's Desired Min TX (§6.8.4).

use std::time::{Duration, Instant};

use super::packet::{BfdState, ControlPacket, Diagnostic};

/// What we send at most while the session is not Up (§6.8.3: "not less
/// than one second").
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// A session's configured timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    /// bfd.DesiredMinTxInterval once Up.
    pub min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub min_rx: Duration,
    /// bfd.DetectMult.
    pub multiplier: u8,
}

/// What a session asks of the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BfdOutput {
    Send(ControlPacket),
    StateChanged {
        from: BfdState,
        to: BfdState,
        diag: Diagnostic,
    },
}

/// How long a new session waits for the peer's first packet before
/// deciding that the peer does not run BFD (it answers a Down within
/// milliseconds, or at its next idle packet, at most a second later).
pub const FIRST_ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// How long a peer that answered may stay wholly silent before it counts
/// as no longer running BFD (its configuration removed without a word).
pub const SILENT_FOR: Duration = Duration::from_secs(30);

/// What BGP may do with this peer, as BFD sees the path (see
/// [`BfdSession::path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathVerdict {
    /// BFD is Up: the path works.
    Up,
    /// A new session waits for the peer's first answer: keep BGP down,
    /// for at most [`FIRST_ANSWER_WITHIN`].
    Waiting,
    /// The peer answers BFD and the session is not Up: keep BGP down.
    Down,
    /// The peer does not answer BFD (not within [`FIRST_ANSWER_WITHIN`]
    /// of start, or not for [`SILENT_FOR`]), or said AdminDown: BFD tells
    /// nothing, and BGP runs without it.
    Unanswered,
}

pub struct BfdSession {
    timers: BfdTimers,
    local_discr: u32,
    state: BfdState,
    diag: Diagnostic,
    remote_state: BfdState,
    remote_discr: u32,
    /// bfd.RemoteMinRxInterval, µs (1 until the peer says otherwise).
    remote_min_rx_us: u32,
    /// The peer's Desired Min TX and multiplier, from its last packet.
    remote_min_tx_us: u32,
    remote_mult: u8,
    /// The Desired Min TX we advertise and send at, µs.
    desired_min_tx_us: u32,
    /// A Poll Sequence is in progress: our packets carry P until a F
    /// comes back.
    polling: bool,
    /// The peer polled: the next packet goes at once, with F.
    final_owed: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    /// A packet has come from the peer since the session was created.
    heard: bool,
    /// When the peer counts as not answering if nothing comes before.
    silent_at: Option<Instant>,
    /// It did not answer in time: BGP runs without BFD.
    silent: bool,
    /// Why it last left Up.
    down_diag: Diagnostic,
    /// The peer's last word was AdminDown (it stopped running BFD with us).
    remote_admin_down: bool,
    /// Set once shut down: AdminDown is sent, nothing is received.
    admin_down: bool,
    rng: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

impl BfdSession {
    /// A session in Down, sending its first packet at `now`. `local_discr`
    /// must be non-zero and unique among our sessions; `seed` drives the
    /// jitter.
    pub fn new(timers: BfdTimers, local_discr: u32, seed: u64, now: Instant) -> BfdSession {
        BfdSession {
            timers,
            local_discr,
            state: BfdState::Down,
            diag: Diagnostic::None,
            remote_state: BfdState::Down,
            remote_discr: 0,
            remote_min_rx_us: 1,
            remote_min_tx_us: 0,
            remote_mult: 0,
            desired_min_tx_us: micros(timers.min_tx.max(SLOW_TX)),
            polling: false,
            final_owed: false,
            next_tx: Some(now),
            detect_at: None,
            heard: false,
            silent_at: Some(now + FIRST_ANSWER_WITHIN),
            silent: false,
            down_diag: Diagnostic::None,
            remote_admin_down: false,
            admin_down: false,
            rng: seed | 1,
        }
    }

    pub fn state(&self) -> BfdState {
        self.state
    }

    pub fn remote_state(&self) -> BfdState {
        self.remote_state
    }

    pub fn diag(&self) -> Diagnostic {
        self.diag
    }

    /// Why the session last left Up.
    pub fn down_diag(&self) -> Diagnostic {
        self.down_diag
    }

    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }

    /// The interval packets are sent at (before jitter); `None` while the
    /// peer asks for none (Required Min RX 0).
    pub fn tx_interval(&self) -> Option<Duration> {
        (self.remote_min_rx_us != 0).then(|| {
            Duration::from_micros(u64::from(self.desired_min_tx_us.max(self.remote_min_rx_us)))
        })
    }

    /// How long the peer may stay silent before the session goes down;
    /// `None` until it has sent anything.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_mult != 0).then(|| {
            let interval = micros(self.timers.min_rx).max(self.remote_min_tx_us);
            Duration::from_micros(u64::from(interval) * u64::from(self.remote_mult))
        })
    }

    /// Up: BGP may run. Down or Waiting: BGP is held down. Unanswered:
    /// BGP runs without BFD. See [`PathVerdict`].
    pub fn path(&self) -> PathVerdict {
        if self.state == BfdState::Up {
            PathVerdict::Up
        } else if self.remote_admin_down || self.silent {
            PathVerdict::Unanswered
        } else if self.heard {
            PathVerdict::Down
        } else {
            PathVerdict::Waiting
        }
    }

    /// The earliest time [`BfdSession::on_timer`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.next_tx, self.detect_at, self.silent_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`: detection, then transmission.
    pub fn on_timer(&mut self, now: Instant) -> Vec<BfdOutput> {
        let mut out = Vec::new();
        if self.silent_at.is_some_and(|at| at <= now) {
            self.silent_at = None;
            self.silent = true;
        }
        if self.detect_at.is_some_and(|at| at <= now) {
            self.detect_at = None;
            // §6.8.1: the peer's discriminator is forgotten after a
            // detection time of silence, whatever the state.
            self.remote_discr = 0;
            self.remote_mult = 0;
            if matches!(self.state, BfdState::Init | BfdState::Up) {
                self.change(
                    BfdState::Down,
                    Diagnostic::DetectionTimeExpired,
                    now,
                    &mut out,
                );
            }
        }
        if self.next_tx.is_some_and(|at| at <= now) {
            self.transmit(now, &mut out);
        }
        out
    }

    /// A packet from this session's peer (already decoded and matched to
    /// the session).
    pub fn on_packet(&mut self, packet: &ControlPacket, now: Instant) -> Vec<BfdOutput> {
        let mut out = Vec::new();
        if self.admin_down {
            return out;
        }
        self.heard = true;
        self.silent = false;
        self.silent_at = Some(now + SILENT_FOR);
        self.remote_discr = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_min_rx_us = packet.required_min_rx_us;
        self.remote_min_tx_us = packet.desired_min_tx_us;
        self.remote_mult = packet.detect_mult;
        if self.polling && packet.final_ {
            self.polling = false;
        }
        self.detect_at = self.detection_time().map(|d| now + d);
        if self.remote_min_rx_us == 0 {
            self.next_tx = None;
        } else if self.next_tx.is_none() {
            self.next_tx = Some(now);
        }
        self.remote_admin_down = packet.state == BfdState::AdminDown;
        match (self.state, packet.state) {
            (BfdState::Down | BfdState::AdminDown, BfdState::AdminDown) => {}
            (_, BfdState::AdminDown) => self.change(
                BfdState::Down,
                Diagnostic::NeighborSignaledDown,
                now,
                &mut out,
            ),
            (BfdState::Down, BfdState::Down) => {
                self.change(BfdState::Init, Diagnostic::None, now, &mut out)
            }
            (BfdState::Down, BfdState::Init) | (BfdState::Init, BfdState::Init | BfdState::Up) => {
                self.change(BfdState::Up, Diagnostic::None, now, &mut out)
            }
            (BfdState::Up, BfdState::Down) => self.change(
                BfdState::Down,
                Diagnostic::NeighborSignaledDown,
                now,
                &mut out,
            ),
            _ => {}
        }
        if packet.poll {
            // §6.8.7: answer a Poll with a Final at once, outside the timer.
            self.final_owed = true;
            self.transmit(now, &mut out);
        }
        out
    }

    /// Takes the session down for good (shutdown, peer removed): AdminDown
    /// with diag 7 (§6.8.16). Returns the packet to send; the caller may
    /// send it more than once.
    pub fn shut_down(&mut self, now: Instant) -> (Vec<BfdOutput>, ControlPacket) {
        let mut out = Vec::new();
        if self.state != BfdState::AdminDown {
            self.change(
                BfdState::AdminDown,
                Diagnostic::AdministrativelyDown,
                now,
                &mut out,
            );
        }
        self.admin_down = true;
        self.next_tx = None;
        self.detect_at = None;
        self.silent_at = None;
        // A final packet answering nothing.
        self.polling = false;
        (out, self.packet())
    }

    fn change(&mut self, to: BfdState, diag: Diagnostic, now: Instant, out: &mut Vec<BfdOutput>) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.diag = diag;
        if to == BfdState::Up {
            // From the slow rate to the configured one; the Poll tells the
            // peer, whose detection time depends on it. A decrease takes
            // effect at once (§6.8.3 holds back increases only).
            let fast = micros(self.timers.min_tx);
            if fast != self.desired_min_tx_us {
                self.desired_min_tx_us = fast;
                self.polling = true;
            }
        } else if from == BfdState::Up {
            self.down_diag = diag;
            // Not Up: back to at most one packet a second; no Poll needed
            // outside Up.
            self.desired_min_tx_us = micros(self.timers.min_tx.max(SLOW_TX));
            self.polling = false;
        }
        out.push(BfdOutput::StateChanged { from, to, diag });
        // A state change goes out at once rather than a slow interval
        // later: the peer's side of the handshake depends on it.
        self.transmit(now, out);
    }

    fn packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !self.final_owed,
            final_: self.final_owed,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.timers.multiplier,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: self.desired_min_tx_us,
            required_min_rx_us: micros(self.timers.min_rx),
            required_min_echo_rx_us: 0,
        }
    }

    fn transmit(&mut self, now: Instant, out: &mut Vec<BfdOutput>) {
        if self.admin_down {
            return;
        }
        out.push(BfdOutput::Send(self.packet()));
        self.final_owed = false;
        self.next_tx = self
            .tx_interval()
            .map(|interval| now + self.jitter(interval));
    }

    /// §6.8.7: the interval reduced by up to 25 % (75–90 % with a
    /// multiplier of 1). At least 2 % off: timers fire up to a millisecond
    /// or two late, and a packet must never come later than the interval.
    fn jitter(&mut self, interval: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = if self.timers.multiplier == 1 {
            151
        } else {
            231
        };
        let per_mille = 750 + u32::try_from(self.rng % span).unwrap_or(0);
        interval * per_mille / 1000
    }
}

#[cfg(test)]
mod tests;
