//! The session FSM fed whatever a hostile peer could send, after a valid
//! OPEN/KEEPALIVE exchange: arbitrary bytes framed and decoded as the I/O
//! layer does, interleaved with timers and route changes. It must never
//! panic, and every UPDATE it sends must encode within 4096 bytes.
#![no_main]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use anycastd::backend::native::packet::{
    Capability, DecodeError, Frame, Incoming, Message, Open, decode, encode, frame,
};
use anycastd::backend::native::session::{Action, Event, Session, SessionConfig, Side, Timer};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

fn check(actions: Vec<Action>) {
    for action in actions {
        if let Action::Send(_, message) = action {
            assert!(encode(&message).len() <= 4096);
            if let Message::Update(_) = message {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(SessionConfig {
        local_asn: 65001,
        remote_asn: 65002,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: 90,
        next_hop: None,
        next_hop6: None,
        shutdown_reason: "fuzz".into(),
        passive: false,
        jitter_seed: 1,
    });
    let routes: BTreeSet<IpNet> = (0..(data.len() % 64) as u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap())
        .collect();
    check(session.handle(Event::Desired(std::sync::Arc::new(
        anycastd::route::plain_routes(routes),
    ))));
    check(session.handle(Event::Start));
    check(session.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    }));
    check(session.handle(Event::Received(
        Side::Outgoing,
        Incoming::Open(Open {
            my_as: 65002,
            hold_time: 30,
            router_id: Ipv4Addr::new(192, 0, 2, 2),
            capabilities: vec![
                Capability::Multiprotocol { afi: 1, safi: 1 },
                Capability::Multiprotocol { afi: 2, safi: 1 },
                Capability::FourOctetAs(65002),
            ],
        }),
    )));
    check(session.handle(Event::Received(Side::Outgoing, Incoming::Keepalive)));
    let mut rest = data;
    while !rest.is_empty() {
        match frame(rest) {
            Ok(Frame::Incomplete) => break,
            Ok(Frame::Complete(len)) => {
                // The last byte picks the connection, so collisions and
                // the incoming side are exercised too.
                let side = if rest[len - 1] & 0x80 == 0 {
                    Side::Outgoing
                } else {
                    Side::Incoming
                };
                let event = match decode(&rest[..len], session.four_octet_as(side)) {
                    Ok(incoming) => Event::Received(side, incoming),
                    Err(DecodeError::Fatal(n)) => Event::Invalid(side, n),
                };
                check(session.handle(event));
                // Use a byte of the message to drive timers and route changes.
                match rest[len - 1] % 8 {
                    0 => check(session.handle(Event::TimerFired(Timer::Keepalive(side)))),
                    1 => check(session.handle(Event::TimerFired(Timer::Hold(side)))),
                    2 => check(session.handle(Event::TimerFired(Timer::ConnectRetry))),
                    3 => check(session.handle(Event::Connected {
                        local: "::1".parse().unwrap(),
                    })),
                    4 => check(session.handle(Event::Accepted {
                        local: "192.0.2.1".parse().unwrap(),
                    })),
                    5 => check(session.handle(Event::Closed(side, "fuzz".into()))),
                    _ => {}
                }
                rest = &rest[len..];
            }
            Err(DecodeError::Fatal(n)) => {
                check(session.handle(Event::Invalid(Side::Outgoing, n)));
                break;
            }
        }
    }
    check(session.handle(Event::Stop));
});
