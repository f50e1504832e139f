//! The BFD Control packet decoder and session fed arbitrary bytes: decoding
//! never panics, what decodes encodes back to the same packet, and a
//! session fed any mix of decoded packets and timer runs never panics and
//! keeps its invariants (a deadline while it runs, intervals never zero).
#![no_main]

use std::time::{Duration, Instant};

use anycastd::backend::native::bfd::packet::{ControlPacket, LENGTH};
use anycastd::backend::native::bfd::session::{BfdOutput, BfdSession, BfdTimers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(data) {
        assert_eq!(ControlPacket::decode(&packet.encode()), Ok(packet));
        assert!(data.len() >= LENGTH);
    }
    // A conversation: each step is one control byte, then (for a packet)
    // up to 24 bytes.
    let start = Instant::now();
    let mut now = start;
    let timers = BfdTimers {
        min_tx: Duration::from_millis(10),
        min_rx: Duration::from_millis(10),
        multiplier: 3,
    };
    let mut session = BfdSession::new(timers, 7, 1, start);
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        rest = tail;
        let outputs = if control & 1 == 0 {
            now += Duration::from_millis(u64::from(control));
            if session.next_deadline().is_some_and(|at| at <= now) {
                session.on_timer(now)
            } else {
                Vec::new()
            }
        } else {
            let take = rest.len().min(LENGTH);
            let (bytes, tail) = rest.split_at(take);
            rest = tail;
            match ControlPacket::decode(bytes) {
                Ok(packet) => session.on_packet(&packet, now),
                Err(_) => Vec::new(),
            }
        };
        for output in outputs {
            if let BfdOutput::Send(p) = output {
                assert_eq!(p.my_discriminator, 7);
                assert!(p.desired_min_tx_us > 0 && p.required_min_rx_us > 0);
                assert!(!(p.poll && p.final_));
            }
        }
        if session.tx_interval().is_some() {
            assert!(session.next_deadline().is_some());
        }
    }
});
