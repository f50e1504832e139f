use super::*;

const MS: Duration = Duration::from_millis(1);

fn timers(ms: u64, multiplier: u8) -> BfdTimers {
    BfdTimers {
        min_tx: MS * ms as u32,
        min_rx: MS * ms as u32,
        multiplier,
    }
}

/// The peer's side of the conversation, written by hand.
fn peer(state: BfdState, your: u32) -> ControlPacket {
    ControlPacket {
        diag: Diagnostic::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0xbeef,
        your_discriminator: your,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
}

fn sent(out: &[BfdOutput]) -> Vec<ControlPacket> {
    out.iter()
        .filter_map(|o| match o {
            BfdOutput::Send(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn changes(out: &[BfdOutput]) -> Vec<(BfdState, BfdState, Diagnostic)> {
    out.iter()
        .filter_map(|o| match o {
            BfdOutput::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
            _ => None,
        })
        .collect()
}

/// A session brought Up through the three-way handshake at `t0`, with the
/// peer's Final received (fast rate in effect).
fn up(t0: Instant) -> BfdSession {
    let mut s = BfdSession::new(timers(100, 3), 7, 42, t0);
    s.on_timer(t0);
    s.on_packet(&peer(BfdState::Down, 0), t0);
    s.on_packet(&peer(BfdState::Up, 7), t0);
    s.on_packet(
        &ControlPacket {
            final_: true,
            ..peer(BfdState::Up, 7)
        },
        t0,
    );
    assert_eq!(s.state(), BfdState::Up);
    s
}

#[test]
fn three_way_handshake_then_a_poll_for_the_fast_rate() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 3), 7, 1, t0);
    assert_eq!(s.path(), PathVerdict::Waiting);
    // The first packet goes at once: Down, not knowing the peer, slow.
    let first = sent(&s.on_timer(t0));
    assert_eq!(first.len(), 1);
    assert_eq!(
        (
            first[0].state,
            first[0].your_discriminator,
            first[0].desired_min_tx_us
        ),
        (BfdState::Down, 0, 1_000_000)
    );
    assert_eq!(
        (first[0].my_discriminator, first[0].required_min_rx_us),
        (7, 100_000)
    );

    // The peer's Down: we go Init and say so at once.
    let out = s.on_packet(&peer(BfdState::Down, 0), t0 + 10 * MS);
    assert_eq!(
        changes(&out),
        [(BfdState::Down, BfdState::Init, Diagnostic::None)]
    );
    let init = sent(&out);
    assert_eq!(
        (init[0].state, init[0].your_discriminator),
        (BfdState::Init, 0xbeef)
    );

    // The peer's Up: we are Up, and poll to move to 100 ms.
    let out = s.on_packet(&peer(BfdState::Up, 7), t0 + 20 * MS);
    assert_eq!(
        changes(&out),
        [(BfdState::Init, BfdState::Up, Diagnostic::None)]
    );
    let announce = sent(&out);
    assert!(announce[0].poll && !announce[0].final_);
    assert_eq!(announce[0].desired_min_tx_us, 100_000);
    assert_eq!(s.path(), PathVerdict::Up);

    // Every packet polls until the Final.
    let t = s.next_deadline().unwrap();
    assert!(sent(&s.on_timer(t))[0].poll);
    s.on_packet(
        &ControlPacket {
            final_: true,
            ..peer(BfdState::Up, 7)
        },
        t,
    );
    let t = s.next_deadline().unwrap();
    assert!(!sent(&s.on_timer(t))[0].poll);
}

#[test]
fn the_peers_init_takes_a_down_session_straight_up() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 3), 7, 1, t0);
    let out = s.on_packet(&peer(BfdState::Init, 7), t0);
    assert_eq!(
        changes(&out),
        [(BfdState::Down, BfdState::Up, Diagnostic::None)]
    );
}

#[test]
fn a_stale_up_from_the_peer_does_not_raise_a_down_session() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 3), 7, 1, t0);
    let out = s.on_packet(&peer(BfdState::Up, 7), t0);
    assert!(changes(&out).is_empty());
    assert_eq!(s.state(), BfdState::Down);
}

#[test]
fn silence_for_the_detection_time_takes_the_session_down() {
    let t0 = Instant::now();
    let mut s = up(t0);
    assert_eq!(s.detection_time(), Some(300 * MS));
    // Packets keep it up…
    let mut t = t0;
    for _ in 0..10 {
        t += 90 * MS;
        s.on_timer(t);
        s.on_packet(&peer(BfdState::Up, 7), t);
    }
    // …then nothing arrives: just before 300 ms still Up, at 300 ms Down.
    let mut outputs = Vec::new();
    while let Some(at) = s.next_deadline() {
        if at >= t + 300 * MS {
            break;
        }
        outputs.extend(s.on_timer(at));
    }
    assert!(changes(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(s.state(), BfdState::Up);
    let out = s.on_timer(t + 300 * MS);
    assert_eq!(
        changes(&out),
        [(
            BfdState::Up,
            BfdState::Down,
            Diagnostic::DetectionTimeExpired
        )]
    );
    let down = sent(&out);
    assert_eq!(
        (down[0].state, down[0].diag, down[0].your_discriminator),
        (BfdState::Down, Diagnostic::DetectionTimeExpired, 0)
    );
    // Back to the slow rate, and BGP is to stay down.
    assert_eq!(down[0].desired_min_tx_us, 1_000_000);
    assert_eq!(s.path(), PathVerdict::Down);
    // The peer's Down starts the handshake over; why it went down stays.
    s.on_packet(&peer(BfdState::Down, 0), t + 400 * MS);
    assert_eq!(
        (s.state(), s.diag(), s.down_diag()),
        (
            BfdState::Init,
            Diagnostic::None,
            Diagnostic::DetectionTimeExpired
        )
    );
}

#[test]
fn detection_uses_the_slower_of_our_rx_and_the_peers_tx() {
    let t0 = Instant::now();
    let mut s = up(t0);
    s.on_packet(
        &ControlPacket {
            desired_min_tx_us: 250_000,
            detect_mult: 4,
            ..peer(BfdState::Up, 7)
        },
        t0,
    );
    assert_eq!(s.detection_time(), Some(MS * 1000));
}

/// Runs `s` from `from` to `until`, the peer sending `packet` every
/// `every`; returns when each of our packets went.
fn simulate(
    s: &mut BfdSession,
    from: Instant,
    until: Instant,
    every: Duration,
    packet: ControlPacket,
) -> Vec<Instant> {
    let mut sends = Vec::new();
    let mut peer_at = from + every;
    let mut now = from;
    for _ in 0..100_000 {
        let timer = s.next_deadline().unwrap_or(until);
        now = timer.min(peer_at).max(now);
        if now >= until {
            break;
        }
        let out = if now == peer_at {
            peer_at += every;
            s.on_packet(&packet, now)
        } else {
            s.on_timer(now)
        };
        sends.extend(sent(&out).iter().map(|_| now));
    }
    sends
}

fn gaps(sends: &[Instant]) -> (Duration, Duration) {
    let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    (*gaps.iter().min().unwrap(), *gaps.iter().max().unwrap())
}

#[test]
fn transmit_interval_follows_the_slower_side_with_jitter() {
    let t0 = Instant::now();
    let mut s = up(t0);
    // The peer wants no more than one packet per 200 ms.
    let slower = ControlPacket {
        required_min_rx_us: 200_000,
        ..peer(BfdState::Up, 7)
    };
    s.on_packet(&slower, t0);
    assert_eq!(s.tx_interval(), Some(200 * MS));
    let sends = simulate(&mut s, t0, t0 + 60_000 * MS, 70 * MS, slower);
    let (min, max) = gaps(&sends);
    assert!(min >= 150 * MS && max <= 196 * MS, "{min:?}..{max:?}");
    assert!(
        max - min > 30 * MS,
        "jitter spreads the gaps: {min:?}..{max:?}"
    );
    assert_eq!(s.state(), BfdState::Up);
}

#[test]
fn a_multiplier_of_one_jitters_to_at_most_ninety_percent() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 1), 7, 9, t0);
    s.on_packet(&peer(BfdState::Init, 7), t0);
    let fin = ControlPacket {
        final_: true,
        ..peer(BfdState::Up, 7)
    };
    s.on_packet(&fin, t0);
    let sends = simulate(&mut s, t0, t0 + 60_000 * MS, 50 * MS, fin);
    let (min, max) = gaps(&sends);
    assert!(min >= 75 * MS && max <= 90 * MS, "{min:?}..{max:?}");
}

#[test]
fn a_down_session_sends_at_most_once_a_second() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 3), 7, 3, t0);
    let sends = simulate(
        &mut s,
        t0,
        t0 + 60_000 * MS,
        100_000 * MS,
        peer(BfdState::Down, 0),
    );
    let (min, max) = gaps(&sends);
    assert!(min >= 750 * MS && max <= 980 * MS, "{min:?}..{max:?}");
}

#[test]
fn a_poll_is_answered_at_once_with_a_final() {
    let t0 = Instant::now();
    let mut s = up(t0);
    s.on_timer(t0 + 80 * MS);
    let out = s.on_packet(
        &ControlPacket {
            poll: true,
            ..peer(BfdState::Up, 7)
        },
        t0 + 81 * MS,
    );
    let answer = sent(&out);
    assert_eq!(answer.len(), 1);
    assert!(answer[0].final_ && !answer[0].poll);
}

#[test]
fn the_peers_admin_down_is_not_a_path_failure() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let out = s.on_packet(&peer(BfdState::AdminDown, 7), t0 + 10 * MS);
    assert_eq!(
        changes(&out),
        [(
            BfdState::Up,
            BfdState::Down,
            Diagnostic::NeighborSignaledDown
        )]
    );
    // The peer stopped running BFD with us: BGP is not held for it.
    assert_eq!(s.path(), PathVerdict::Unanswered);
    // It comes back: the handshake starts over.
    s.on_packet(&peer(BfdState::Down, 0), t0 + 20 * MS);
    assert_eq!(s.state(), BfdState::Init);
    assert_eq!(s.path(), PathVerdict::Down);
}

#[test]
fn the_peers_down_takes_an_up_session_down() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let out = s.on_packet(&peer(BfdState::Down, 0), t0 + 10 * MS);
    assert_eq!(
        changes(&out),
        [(
            BfdState::Up,
            BfdState::Down,
            Diagnostic::NeighborSignaledDown
        )]
    );
    assert_eq!(s.path(), PathVerdict::Down);
}

#[test]
fn a_peer_asking_for_no_packets_gets_none() {
    let t0 = Instant::now();
    let mut s = up(t0);
    s.on_packet(
        &ControlPacket {
            required_min_rx_us: 0,
            ..peer(BfdState::Up, 7)
        },
        t0,
    );
    assert_eq!(s.tx_interval(), None);
    // Only the detection timer is left.
    assert_eq!(s.next_deadline(), Some(t0 + 300 * MS));
}

#[test]
fn shutting_down_says_admin_down_and_then_nothing() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let (out, last) = s.shut_down(t0);
    assert_eq!(
        changes(&out),
        [(
            BfdState::Up,
            BfdState::AdminDown,
            Diagnostic::AdministrativelyDown
        )]
    );
    assert_eq!(
        (last.state, last.diag),
        (BfdState::AdminDown, Diagnostic::AdministrativelyDown)
    );
    assert_eq!(s.next_deadline(), None);
    assert!(s.on_packet(&peer(BfdState::Up, 7), t0).is_empty());
}

#[test]
fn a_silent_down_session_forgets_the_peers_discriminator() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 3), 7, 1, t0);
    s.on_packet(
        &ControlPacket {
            desired_min_tx_us: 1_000_000,
            ..peer(BfdState::AdminDown, 0)
        },
        t0,
    );
    assert_eq!(s.remote_discriminator(), 0xbeef);
    s.on_timer(t0 + 3 * 1000 * MS);
    assert_eq!(s.remote_discriminator(), 0);
    assert_eq!(s.state(), BfdState::Down);
}

/// How the path verdict that gates BGP is decided: Waiting (held) for at
/// most FIRST_ANSWER_WITHIN after start, then Unanswered (BGP without
/// BFD) if the peer sent nothing; Down (held) while a peer that answers is
/// not Up; Unanswered again after SILENT_FOR of silence.
#[test]
fn a_peer_that_never_answers_does_not_hold_bgp() {
    let t0 = Instant::now();
    let mut s = BfdSession::new(timers(100, 3), 7, 1, t0);
    while let Some(at) = s.next_deadline() {
        if at >= t0 + FIRST_ANSWER_WITHIN {
            break;
        }
        s.on_timer(at);
        assert_eq!(s.path(), PathVerdict::Waiting);
    }
    s.on_timer(t0 + FIRST_ANSWER_WITHIN);
    assert_eq!(s.path(), PathVerdict::Unanswered);
    // It starts answering: held until Up.
    s.on_packet(&peer(BfdState::Down, 0), t0 + 5000 * MS);
    assert_eq!(s.path(), PathVerdict::Down);
    s.on_packet(&peer(BfdState::Up, 7), t0 + 5010 * MS);
    assert_eq!(s.path(), PathVerdict::Up);
}

#[test]
fn a_peer_silent_for_long_no_longer_holds_bgp() {
    let t0 = Instant::now();
    let mut s = up(t0);
    let mut t = t0;
    let mut verdicts = Vec::new();
    while let Some(at) = s.next_deadline() {
        if at > t0 + SILENT_FOR {
            break;
        }
        t = at;
        s.on_timer(t);
        if verdicts.last() != Some(&s.path()) {
            verdicts.push(s.path());
        }
    }
    assert_eq!(t, t0 + SILENT_FOR);
    assert_eq!(
        verdicts,
        [PathVerdict::Up, PathVerdict::Down, PathVerdict::Unanswered],
        "down at the detection time, unanswered after {SILENT_FOR:?}"
    );
}
