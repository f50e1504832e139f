use super::*;
use crate::backend::native::packet::{Incoming, ReceivedUpdate};

fn config(local_asn: u32, remote_asn: u32) -> SessionConfig {
    SessionConfig {
        local_asn,
        remote_asn,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: 90,
        next_hop: None,
        next_hop6: None,
        shutdown_reason: "anycastd stopping".into(),
    }
}

fn peer_open(asn: u32, hold: u16) -> Incoming {
    Incoming::Open(Open {
        my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
        hold_time: hold,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::FourOctetAs(asn),
        ],
    })
}

fn routes(list: &[&str]) -> BTreeSet<IpNet> {
    list.iter().map(|r| r.parse().unwrap()).collect()
}

fn sent_updates(actions: &[Action]) -> Vec<Update> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(Message::Update(u)) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

/// Drives a session to Established with `desired` already set.
fn established(local: u32, remote: u32, desired: &[&str]) -> (Session, Vec<Action>) {
    let mut s = Session::new(config(local, remote));
    s.handle(Event::Desired(routes(desired)));
    assert!(s.handle(Event::Start).contains(&Action::Connect));
    let a = s.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    });
    assert!(matches!(a[1], Action::Send(Message::Open(_))));
    assert_eq!(s.state(), State::OpenSent);
    let a = s.handle(Event::Received(peer_open(remote, 30)));
    assert!(a.contains(&Action::Send(Message::Keepalive)));
    assert!(a.contains(&Action::SetTimer(Timer::Hold, Duration::from_secs(30))));
    assert!(a.contains(&Action::SetTimer(Timer::Keepalive, Duration::from_secs(10))));
    assert_eq!(s.state(), State::OpenConfirm);
    let a = s.handle(Event::Received(Incoming::Keepalive));
    assert_eq!(s.state(), State::Established);
    assert!(a.contains(&Action::Up));
    (s, a)
}

#[test]
fn established_sends_table_then_end_of_rib() {
    let (s, actions) = established(65001, 65002, &["192.0.2.10/32", "2001:db8::10/128"]);
    let updates = sent_updates(&actions);
    assert_eq!(updates.len(), 4);
    assert_eq!(
        updates[0].announced,
        vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
    );
    let attrs = updates[0].attributes.as_ref().unwrap();
    assert_eq!(attrs.as_path, vec![65001]);
    assert_eq!(attrs.local_pref, None);
    assert_eq!(attrs.next_hop, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(
        updates[1].announced,
        vec!["2001:db8::10/128".parse::<IpNet>().unwrap()]
    );
    assert_eq!(updates[2].end_of_rib, Some(Family::Ipv4Unicast));
    assert_eq!(updates[3].end_of_rib, Some(Family::Ipv6Unicast));
    assert_eq!(s.announced().len(), 2);
}

#[test]
fn ibgp_has_empty_as_path_and_local_pref() {
    let (_, actions) = established(65001, 65001, &["192.0.2.10/32"]);
    let attrs = sent_updates(&actions)[0].attributes.clone().unwrap();
    assert!(attrs.as_path.is_empty());
    assert_eq!(attrs.local_pref, Some(100));
}

#[test]
fn changes_send_only_the_difference() {
    let (mut s, _) = established(65001, 65002, &["192.0.2.10/32", "192.0.2.11/32"]);
    let a = s.handle(Event::Desired(routes(&["192.0.2.11/32", "192.0.2.12/32"])));
    let updates = sent_updates(&a);
    assert_eq!(updates.len(), 2);
    assert_eq!(
        updates[0].withdrawn,
        vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        updates[1].announced,
        vec!["192.0.2.12/32".parse::<IpNet>().unwrap()]
    );
    assert!(
        sent_updates(&s.handle(Event::Desired(routes(&["192.0.2.11/32", "192.0.2.12/32"]))))
            .is_empty()
    );
}

#[test]
fn desired_before_established_is_sent_on_establishment() {
    let mut s = Session::new(config(65001, 65002));
    s.handle(Event::Start);
    assert!(sent_updates(&s.handle(Event::Desired(routes(&["192.0.2.10/32"])))).is_empty());
}

#[test]
fn wrong_peer_as_is_refused_with_bad_peer_as() {
    let mut s = Session::new(config(65001, 65002));
    s.handle(Event::Start);
    s.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    });
    let a = s.handle(Event::Received(peer_open(65099, 90)));
    assert!(
        a.contains(&Action::Send(Message::Notification(Notification::new(
            2,
            2,
            vec![]
        ))))
    );
    assert!(a.contains(&Action::Close));
    assert_eq!(s.state(), State::Idle);
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::SetTimer(Timer::ConnectRetry, _)))
    );
}

#[test]
fn hold_timer_expiry_sends_notification_and_retries_with_backoff() {
    let (mut s, _) = established(65001, 65002, &[]);
    let a = s.handle(Event::TimerFired(Timer::Hold));
    assert_eq!(
        a[0],
        Action::Send(Message::Notification(Notification::new(4, 0, vec![])))
    );
    assert!(a.contains(&Action::Down("hold timer expired".into())));
    let retry = |a: &[Action]| {
        a.iter().find_map(|x| match x {
            Action::SetTimer(Timer::ConnectRetry, d) => Some(*d),
            _ => None,
        })
    };
    // First failure: retry after 1 s, then 2 s.
    assert_eq!(retry(&a), Some(Duration::from_secs(1)));
    s.handle(Event::TimerFired(Timer::ConnectRetry));
    let a = s.handle(Event::ConnectFailed("refused".into()));
    assert_eq!(retry(&a), Some(Duration::from_secs(2)));
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let (mut s, _) = established(65001, 65002, &[]);
    let a = s.handle(Event::TimerFired(Timer::Keepalive));
    assert_eq!(
        a,
        vec![
            Action::Send(Message::Keepalive),
            Action::SetTimer(Timer::Keepalive, Duration::from_secs(10))
        ]
    );
}

#[test]
fn zero_hold_time_disables_timers() {
    let mut s = Session::new(config(65001, 65002));
    s.handle(Event::Start);
    s.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    });
    let a = s.handle(Event::Received(peer_open(65002, 0)));
    assert!(a.contains(&Action::CancelTimer(Timer::Hold)));
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::SetTimer(Timer::Keepalive, _)))
    );
    assert!(s.handle(Event::TimerFired(Timer::Keepalive)).is_empty());
}

#[test]
fn stop_withdraws_then_sends_cease_and_finishes() {
    let (mut s, _) = established(65001, 65002, &["192.0.2.10/32"]);
    let a = s.handle(Event::Stop);
    let updates = sent_updates(&a);
    assert_eq!(
        updates[0].withdrawn,
        vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
    );
    let cease = a.iter().position(
        |x| matches!(x, Action::Send(Message::Notification(n)) if n.code == 6 && n.subcode == 2),
    );
    let withdraw = a
        .iter()
        .position(|x| matches!(x, Action::Send(Message::Update(_))));
    assert!(withdraw < cease, "withdrawals go before the Cease: {a:?}");
    assert_eq!(a.last(), Some(&Action::Finished));
    assert!(
        !a.iter()
            .any(|x| matches!(x, Action::SetTimer(Timer::ConnectRetry, _)))
    );
}

#[test]
fn peer_notification_takes_the_session_down() {
    let (mut s, _) = established(65001, 65002, &[]);
    let a = s.handle(Event::Received(Incoming::Notification(
        Notification::administrative_shutdown("maintenance"),
    )));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Down(w) if w.contains("\"maintenance\"")))
    );
    assert_eq!(s.state(), State::Idle);
}

#[test]
fn update_before_established_is_an_fsm_error() {
    let mut s = Session::new(config(65001, 65002));
    s.handle(Event::Start);
    s.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    });
    let a = s.handle(Event::Received(Incoming::Update(ReceivedUpdate::default())));
    assert!(
        a.contains(&Action::Send(Message::Notification(Notification::new(
            5,
            1,
            vec![]
        ))))
    );
}

#[test]
fn route_refresh_resends_the_family() {
    let (mut s, _) = established(65001, 65002, &["192.0.2.10/32", "2001:db8::10/128"]);
    let updates =
        sent_updates(&s.handle(Event::Received(Incoming::RouteRefresh { afi: 2, safi: 1 })));
    assert_eq!(
        updates[0].announced,
        vec!["2001:db8::10/128".parse::<IpNet>().unwrap()]
    );
    assert_eq!(updates[1].end_of_rib, Some(Family::Ipv6Unicast));
}

#[test]
fn ipv4_only_peer_gets_no_ipv6() {
    let mut s = Session::new(config(65001, 65002));
    s.handle(Event::Desired(routes(&[
        "192.0.2.10/32",
        "2001:db8::10/128",
    ])));
    s.handle(Event::Start);
    s.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    });
    s.handle(Event::Received(Incoming::Open(Open {
        my_as: 65002,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        capabilities: vec![],
    })));
    let updates = sent_updates(&s.handle(Event::Received(Incoming::Keepalive)));
    let announced: Vec<IpNet> = updates.iter().flat_map(|u| u.announced.clone()).collect();
    assert_eq!(announced, vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]);
}

/// The delay of the ConnectRetry timer `actions` arm, if any.
fn retry_delay(actions: &[Action]) -> Option<Duration> {
    actions.iter().find_map(|x| match x {
        Action::SetTimer(Timer::ConnectRetry, d) => Some(*d),
        _ => None,
    })
}

/// Connect, OPEN, KEEPALIVE: from Idle (after ConnectRetry) to Established.
fn reestablish(s: &mut Session, remote: u32) -> Vec<Action> {
    s.handle(Event::TimerFired(Timer::ConnectRetry));
    s.handle(Event::Connected {
        local: "192.0.2.1".parse().unwrap(),
    });
    s.handle(Event::Received(peer_open(remote, 30)));
    let a = s.handle(Event::Received(Incoming::Keepalive));
    assert_eq!(s.state(), State::Established);
    a
}

/// Seen with FRR 8.4: the session comes up, the peer refuses our first
/// UPDATE with a NOTIFICATION (3/8 for a 127.0.0.0/8 NEXT_HOP), and so on.
/// Reaching Established must not reset the backoff, or anycastd reconnects
/// every second forever.
#[test]
fn a_session_refused_right_after_establishing_backs_off() {
    let (mut s, a) = established(65001, 65002, &["192.0.2.10/32"]);
    assert!(a.contains(&Action::SetTimer(Timer::Stable, STABLE_AFTER)));
    let refuse = |s: &mut Session| {
        s.handle(Event::Received(Incoming::Notification(Notification::new(
            3,
            8,
            vec![0x40, 3, 4, 127, 0, 0, 1],
        ))))
    };
    let a = refuse(&mut s);
    assert!(a.contains(&Action::CancelTimer(Timer::Stable)));
    assert_eq!(retry_delay(&a), Some(Duration::from_secs(1)));
    let mut delays = Vec::new();
    for _ in 0..7 {
        reestablish(&mut s, 65002);
        delays.push(retry_delay(&refuse(&mut s)).unwrap().as_secs());
    }
    assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60]);
}

#[test]
fn a_stable_session_starts_the_backoff_over() {
    let (mut s, _) = established(65001, 65002, &[]);
    s.handle(Event::Closed("reset".into()));
    reestablish(&mut s, 65002);
    // Not yet stable: the next failure waits longer.
    let a = s.handle(Event::Closed("reset".into()));
    assert_eq!(retry_delay(&a), Some(Duration::from_secs(2)));
    reestablish(&mut s, 65002);
    assert!(s.handle(Event::TimerFired(Timer::Stable)).is_empty());
    let a = s.handle(Event::Closed("reset".into()));
    assert_eq!(retry_delay(&a), Some(Duration::from_secs(1)));
    // A stale Stable timer outside Established changes nothing.
    s.handle(Event::TimerFired(Timer::Stable));
    s.handle(Event::TimerFired(Timer::ConnectRetry));
    let a = s.handle(Event::ConnectFailed("refused".into()));
    assert_eq!(retry_delay(&a), Some(Duration::from_secs(2)));
}

/// Seen with FRR 8.4 over an IPv6 session: IPv4 NLRI without NEXT_HOP are
/// refused ("Missing well-known attribute NEXT_HOP ... Withdrawing route").
/// Without an IPv4 next hop, IPv4 routes are held back (and reported once).
#[test]
fn ipv4_routes_need_an_ipv4_next_hop_on_an_ipv6_session() {
    let open_ipv6_session = |config: SessionConfig| {
        let mut s = Session::new(config);
        s.handle(Event::Desired(routes(&[
            "192.0.2.10/32",
            "2001:db8::10/128",
        ])));
        s.handle(Event::Start);
        s.handle(Event::Connected {
            local: "2001:db8:1::1".parse().unwrap(),
        });
        s.handle(Event::Received(peer_open(65002, 90)));
        let a = s.handle(Event::Received(Incoming::Keepalive));
        (s, a)
    };
    let (mut s, a) = open_ipv6_session(config(65001, 65002));
    let announced: Vec<IpNet> = sent_updates(&a)
        .iter()
        .flat_map(|u| u.announced.clone())
        .collect();
    assert_eq!(
        announced,
        vec!["2001:db8::10/128".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        sent_updates(&a)[0].next_hop6,
        Some("2001:db8:1::1".parse().unwrap())
    );
    let warned: Vec<&Action> = a
        .iter()
        .filter(|x| matches!(x, Action::Unannounceable { .. }))
        .collect();
    assert!(
        matches!(warned.as_slice(), [Action::Unannounceable { prefixes, why }]
            if prefixes == &vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
                && why.contains("IPv4 next hop")),
        "{a:?}"
    );
    // Reported once per session, not on every change of routes.
    let a = s.handle(Event::Desired(routes(&["192.0.2.10/32"])));
    assert!(!a.iter().any(|x| matches!(x, Action::Unannounceable { .. })));
    assert_eq!(
        sent_updates(&a)[0].withdrawn,
        vec!["2001:db8::10/128".parse::<IpNet>().unwrap()]
    );
    assert!(s.announced().is_empty());
    s.handle(Event::Desired(routes(&[])));
    let a = s.handle(Event::Desired(routes(&["192.0.2.10/32"])));
    assert!(a.is_empty(), "{a:?}");

    // With a configured IPv4 next hop they go out, carrying it.
    let mut with_next_hop = config(65001, 65002);
    with_next_hop.next_hop = Some(Ipv4Addr::new(192, 0, 2, 1));
    let (s, a) = open_ipv6_session(with_next_hop);
    assert_eq!(s.announced().len(), 2);
    assert!(!a.iter().any(|x| matches!(x, Action::Unannounceable { .. })));
    let v4 = &sent_updates(&a)[0];
    assert_eq!(
        v4.announced,
        vec!["192.0.2.10/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        v4.attributes.as_ref().unwrap().next_hop,
        Some(Ipv4Addr::new(192, 0, 2, 1))
    );
}
