use proptest::prelude::*;

use super::*;
use crate::route::{Community, LargeCommunity};

fn net(p: &str) -> IpNet {
    p.parse().unwrap()
}

fn attributes(four: bool) -> Attributes {
    Attributes {
        origin: Origin::Igp,
        as_path: vec![65001],
        four_octet_as: four,
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        local_pref: None,
        ..Attributes::default()
    }
}

fn roundtrip_update(update: &Update) -> ReceivedUpdate {
    let bytes = encode(&Message::Update(update.clone()));
    match decode(&bytes, true).expect("decodes") {
        Incoming::Update(u) => u,
        other => panic!("{other:?}"),
    }
}

#[test]
fn keepalive_bytes() {
    let mut want = vec![0xff; 16];
    want.extend([0, 19, 4]);
    assert_eq!(encode(&Message::Keepalive), want);
    assert_eq!(decode(&want, true), Ok(Incoming::Keepalive));
}

#[test]
fn open_bytes_and_back() {
    let open = Open {
        my_as: AS_TRANS,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_000),
        ],
    };
    let bytes = encode(&Message::Open(open.clone()));
    // header, version 4, AS_TRANS, hold 90, id, opt len 22, param 2 len 20,
    // MP(1,1), MP(2,1), RR, 4-octet AS.
    let mut want = vec![0xff; 16];
    want.extend([0, 51, 1, 4, 0x5b, 0xa0, 0, 90, 192, 0, 2, 1, 22, 2, 20]);
    want.extend([1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1, 2, 0, 65, 4]);
    want.extend(4_200_000_000u32.to_be_bytes());
    assert_eq!(bytes, want);
    match decode(&bytes, true).unwrap() {
        Incoming::Open(got) => {
            assert_eq!(got, open);
            assert_eq!(got.asn(), 4_200_000_000);
            assert_eq!(got.families(), [Family::Ipv4Unicast, Family::Ipv6Unicast]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn open_without_mp_capabilities_means_ipv4_only() {
    let open = Open {
        my_as: 65000,
        hold_time: 0,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![],
    };
    assert_eq!(open.families(), [Family::Ipv4Unicast]);
    assert_eq!(open.asn(), 65000);
}

#[test]
fn open_errors_map_to_notifications() {
    let good = encode(&Message::Open(Open {
        my_as: 65000,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![],
    }));
    let with = |i: usize, b: u8| {
        let mut m = good.clone();
        m[i] = b;
        m
    };
    let sub = |bytes: &[u8]| match decode(bytes, true) {
        Err(DecodeError::Fatal(n)) => (n.code, n.subcode),
        other => panic!("{other:?}"),
    };
    assert_eq!(sub(&with(19, 3)), (2, 1)); // version
    assert_eq!(sub(&with(23, 1)), (2, 6)); // hold time 1
    let mut zero_id = good.clone();
    zero_id[24..28].copy_from_slice(&[0, 0, 0, 0]);
    assert_eq!(sub(&zero_id), (2, 3));
}

#[test]
fn update_ipv4_and_ipv6_roundtrip() {
    let update = Update {
        withdrawn: vec![net("198.51.100.0/24"), net("2001:db8:1::/48")],
        announced: vec![net("192.0.2.1/32"), net("2001:db8::1/128")],
        attributes: Some(attributes(true)),
        next_hop6: Some("2001:db8::ff".parse().unwrap()),
        end_of_rib: None,
    };
    let got = roundtrip_update(&update);
    assert_eq!(
        got.withdrawn,
        vec![net("198.51.100.0/24"), net("2001:db8:1::/48")]
    );
    assert_eq!(
        got.announced,
        vec![net("192.0.2.1/32"), net("2001:db8::1/128")]
    );
    assert_eq!(got.treat_as_withdraw, None);
}

#[test]
fn end_of_rib_markers() {
    let v4 = roundtrip_update(&Update {
        end_of_rib: Some(Family::Ipv4Unicast),
        ..Update::default()
    });
    assert_eq!(v4.end_of_rib, Some(Family::Ipv4Unicast));
    let bytes = encode(&Message::Update(Update {
        end_of_rib: Some(Family::Ipv6Unicast),
        ..Update::default()
    }));
    // MP_UNREACH with AFI 2 SAFI 1 and nothing else.
    assert_eq!(&bytes[19..], &[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]);
    assert_eq!(
        roundtrip_update(&Update {
            end_of_rib: Some(Family::Ipv6Unicast),
            ..Update::default()
        })
        .end_of_rib,
        Some(Family::Ipv6Unicast)
    );
}

#[test]
fn two_octet_as_path_uses_as_trans_and_as4_path() {
    let mut a = attributes(false);
    a.as_path = vec![4_200_000_000];
    let bytes = encode(&Message::Update(Update {
        announced: vec![net("192.0.2.1/32")],
        attributes: Some(a),
        ..Update::default()
    }));
    let body = &bytes[19..];
    // AS_PATH: flags 0x40 code 2 len 4: AS_SEQUENCE of one 2-octet AS_TRANS
    assert!(body.windows(7).any(|w| w == [0x40, 2, 4, 2, 1, 0x5b, 0xa0]));
    // AS4_PATH (17) carries the real one.
    assert!(body.windows(3).any(|w| w == [0xc0, 17, 6]));
    let got = match decode(&bytes, false).unwrap() {
        Incoming::Update(u) => u,
        other => panic!("{other:?}"),
    };
    assert_eq!(got.treat_as_withdraw, None);
}

#[test]
fn framing_rejects_bad_headers() {
    let mut bad_marker = encode(&Message::Keepalive);
    bad_marker[3] = 0;
    assert_eq!(
        frame(&bad_marker),
        Err(DecodeError::Fatal(Notification::new(1, 1, vec![])))
    );
    let mut bad_type = encode(&Message::Keepalive);
    bad_type[18] = 9;
    assert_eq!(
        frame(&bad_type),
        Err(DecodeError::Fatal(Notification::new(1, 3, vec![9])))
    );
    let mut short = encode(&Message::Keepalive);
    short[17] = 18;
    assert!(matches!(
        frame(&short),
        Err(DecodeError::Fatal(Notification {
            code: 1,
            subcode: 2,
            ..
        }))
    ));
    let mut long = encode(&Message::Keepalive);
    long[16] = 0x10;
    long[17] = 1; // 4097
    assert!(matches!(
        frame(&long),
        Err(DecodeError::Fatal(Notification {
            code: 1,
            subcode: 2,
            ..
        }))
    ));
    // A keepalive claiming 20 bytes is bad even though 20 >= 19.
    let mut ka = encode(&Message::Keepalive);
    ka[17] = 20;
    ka.push(0);
    assert!(matches!(
        frame(&ka),
        Err(DecodeError::Fatal(Notification {
            code: 1,
            subcode: 2,
            ..
        }))
    ));
    assert_eq!(frame(&ka[..10]), Ok(Frame::Incomplete));
}

#[test]
fn update_structure_errors_reset_attribute_errors_withdraw() {
    // Withdrawn length running past the message.
    let mut m = vec![0xff; 16];
    m.extend([0, 23, 2, 0, 9, 0, 0]);
    assert!(matches!(
        decode(&m, true),
        Err(DecodeError::Fatal(Notification {
            code: 3,
            subcode: 1,
            ..
        }))
    ));
    // NLRI with a /33.
    let mut m = vec![0xff; 16];
    m.extend([0, 25, 2, 0, 0, 0, 0, 33, 1]);
    assert!(matches!(
        decode(&m, true),
        Err(DecodeError::Fatal(Notification {
            code: 3,
            subcode: 10,
            ..
        }))
    ));
    // NLRI without mandatory attributes: treat as withdraw, no reset.
    let mut m = vec![0xff; 16];
    m.extend([0, 28, 2, 0, 0, 0, 0, 32, 192, 0, 2, 1]);
    match decode(&m, true).unwrap() {
        Incoming::Update(u) => assert_eq!(u.treat_as_withdraw.as_deref(), Some("missing ORIGIN")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn notification_describes_shutdown_communication() {
    let n = Notification::administrative_shutdown("anycastd stopping");
    let bytes = encode(&Message::Notification(n.clone()));
    assert_eq!(decode(&bytes, true), Ok(Incoming::Notification(n.clone())));
    assert_eq!(
        n.describe(),
        "Cease / Administrative Shutdown (6/2): \"anycastd stopping\""
    );
    assert_eq!(
        Notification::new(4, 0, vec![]).describe(),
        "Hold Timer Expired (4/0)"
    );
}

/// FRR 8.4 refuses a 127.0.0.0/8 NEXT_HOP with this NOTIFICATION (the data is
/// the attribute as received): the log line must say what was wrong.
#[test]
fn notification_describes_update_errors_with_their_data() {
    let frr = Notification::new(3, 8, vec![0x40, 0x03, 0x04, 127, 0, 60, 1]);
    assert_eq!(
        frr.describe(),
        "UPDATE Message Error / Invalid NEXT_HOP Attribute (3/8), data 40 03 04 7f 00 3c 01"
    );
    let long = Notification::new(3, 1, vec![0xab; 40]);
    assert!(long.describe().ends_with("ab ab …"), "{}", long.describe());
    assert_eq!(
        Notification::new(6, 4, vec![]).describe(),
        "Cease / Administrative Reset (6/4)"
    );
}

#[test]
fn route_refresh_roundtrip() {
    let bytes = encode(&Message::RouteRefresh { afi: 2, safi: 1 });
    assert_eq!(
        decode(&bytes, true),
        Ok(Incoming::RouteRefresh { afi: 2, safi: 1 })
    );
}

#[test]
fn build_updates_packs_within_the_size_limit() {
    let many: Vec<IpNet> = (0..5000u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap()))
        .collect();
    let updates = build_updates(
        &many[..100],
        &[(attributes(true), many[100..].to_vec())],
        None,
    );
    assert!(updates.len() > 1);
    let mut announced = 0;
    let mut withdrawn = 0;
    for u in &updates {
        let bytes = encode(&Message::Update(u.clone()));
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "{}", bytes.len());
        let got = roundtrip_update(u);
        announced += got.announced.len();
        withdrawn += got.withdrawn.len();
    }
    assert_eq!((withdrawn, announced), (100, 4900));
}

fn arb_prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())),
    ]
}

proptest! {
    #[test]
    fn updates_roundtrip(
        withdrawn in proptest::collection::vec(arb_prefix(), 0..300),
        announced in proptest::collection::vec(arb_prefix(), 0..300),
        four in any::<bool>(),
        asn in 1u32..,
        local_pref in proptest::option::of(any::<u32>()),
        med in proptest::option::of(any::<u32>()),
        prepend in 0usize..300,
        communities in proptest::collection::vec(any::<u32>(), 0..40),
        large in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..20),
    ) {
        let mut attrs = attributes(four);
        attrs.as_path = vec![asn; 1 + prepend];
        attrs.local_pref = local_pref;
        attrs.med = med;
        attrs.communities = communities.into_iter().map(Community).collect();
        attrs.large_communities = large.into_iter().map(|(a, b, c)| LargeCommunity(a, b, c)).collect();
        let updates = build_updates(&withdrawn, &[(attrs.clone(), announced.clone())], Some("2001:db8::1".parse().unwrap()));
        let mut got_w = Vec::new();
        let mut got_a = Vec::new();
        for u in &updates {
            let bytes = encode(&Message::Update(u.clone()));
            prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
            match decode(&bytes, four).unwrap() {
                Incoming::Update(r) => {
                    prop_assert_eq!(r.treat_as_withdraw, None);
                    if !r.announced.is_empty() {
                        if four {
                            prop_assert_eq!(&r.as_path, &attrs.as_path);
                        }
                        prop_assert_eq!(r.med, attrs.med);
                        prop_assert_eq!(r.local_pref, attrs.local_pref);
                        prop_assert_eq!(&r.communities, &attrs.communities);
                        prop_assert_eq!(&r.large_communities, &attrs.large_communities);
                    }
                    got_w.extend(r.withdrawn);
                    got_a.extend(r.announced);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
        let sorted = |mut v: Vec<IpNet>| { v.sort(); v };
        prop_assert_eq!(sorted(got_w), sorted(withdrawn));
        prop_assert_eq!(sorted(got_a), sorted(announced));
    }

    #[test]
    fn opens_roundtrip(my_as in any::<u16>(), hold in prop_oneof![Just(0u16), 3u16..], id in 1u32.., asn in any::<u32>()) {
        let open = Open {
            my_as,
            hold_time: hold,
            router_id: Ipv4Addr::from(id),
            capabilities: vec![Capability::FourOctetAs(asn), Capability::RouteRefresh, Capability::Other { code: 64, value: vec![1, 2] }],
        };
        prop_assert_eq!(decode(&encode(&Message::Open(open.clone())), true), Ok(Incoming::Open(open)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), four in any::<bool>()) {
        let _ = frame(&bytes);
        let _ = decode(&bytes, four);
        let mut framed = vec![0xff; 16];
        framed.extend(((bytes.len() + 19).min(4096) as u16).to_be_bytes());
        framed.extend(bytes.iter().take(4096 - 18));
        let _ = decode(&framed, four);
    }
}

#[test]
fn martian_next_hops_are_recognised() {
    for bad in [
        "127.0.0.1",
        "127.0.60.1",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "240.0.0.1",
    ] {
        assert!(martian_next_hop(bad.parse().unwrap()), "{bad}");
    }
    for good in ["10.0.0.1", "192.0.2.1", "223.255.255.254", "100.64.0.1"] {
        assert!(!martian_next_hop(good.parse().unwrap()), "{good}");
    }
}

/// An UPDATE with no withdrawn routes: `attrs` as the path attribute block,
/// then `nlri`, with header and lengths filled in.
fn update_bytes(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + 4 + attrs.len() + nlri.len();
    let mut m = vec![0xff; 16];
    m.extend((len as u16).to_be_bytes());
    m.push(2);
    m.extend([0, 0]);
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend(attrs);
    m.extend(nlri);
    m
}

/// ORIGIN IGP, AS_PATH [65002] (4-octet), NEXT_HOP 192.0.2.2.
const GOOD_ATTRS: [u8; 20] = [
    0x40, 1, 1, 0, // ORIGIN
    0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xea, // AS_PATH
    0x40, 3, 4, 192, 0, 2, 2, // NEXT_HOP
];
const NLRI_192_0_2_1: [u8; 5] = [32, 192, 0, 2, 1];

fn decoded_update(bytes: &[u8]) -> ReceivedUpdate {
    match decode(bytes, true) {
        Ok(Incoming::Update(u)) => u,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// Issue 10, item 9: RFC 7606 §4. An attribute whose length overruns the
/// path attribute block, or 1–3 stray bytes too short for an attribute
/// header, is treat-as-withdraw: the session is not reset, and the NLRI is
/// still located by the Total Path Attribute Length.
#[test]
fn malformed_update_attribute_length_is_treat_as_withdraw() {
    let valid = update_bytes(&GOOD_ATTRS, &NLRI_192_0_2_1);
    let u = decoded_update(&valid);
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.announced, vec![net("192.0.2.1/32")]);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        // ORIGIN claiming 5 bytes with 1 in the block.
        ("overrun", vec![0x40, 1, 5, 0]),
        // ORIGIN claiming 255 bytes.
        ("overrun by far", vec![0x40, 1, 0xff, 0]),
        // Extended length 0x0100 with 2 bytes left.
        ("extended overrun", vec![0x50, 2, 1, 0, 2, 1]),
        ("one stray byte", [&GOOD_ATTRS[..], &[0x40]].concat()),
        ("two stray bytes", [&GOOD_ATTRS[..], &[0x40, 1]].concat()),
        // Three bytes with Extended Length set need four for the header.
        (
            "three stray bytes, extended",
            [&GOOD_ATTRS[..], &[0x50, 8, 0]].concat(),
        ),
        (
            "overrun after good ones",
            [&GOOD_ATTRS[..], &[0xc0, 8, 9, 0, 0]].concat(),
        ),
    ];
    for (what, attrs) in cases {
        let bytes = update_bytes(&attrs, &NLRI_192_0_2_1);
        let u = decoded_update(&bytes);
        assert!(
            u.treat_as_withdraw
                .as_deref()
                .is_some_and(|why| why.contains("runs past the attribute block")),
            "{what}: {u:?}"
        );
        assert_eq!(u.announced, vec![net("192.0.2.1/32")], "{what}: NLRI found");
    }
    // The exact bytes of the first case, as a peer would send them.
    let bytes = update_bytes(&[0x40, 1, 5, 0], &NLRI_192_0_2_1);
    assert_eq!(
        bytes[16..],
        [0, 32, 2, 0, 0, 0, 4, 0x40, 1, 5, 0, 32, 192, 0, 2, 1]
    );
}

/// What RFC 7606 still answers with a session reset: the NLRI cannot be
/// located or parsed.
#[test]
fn unparseable_nlri_still_resets() {
    let fatal = |bytes: &[u8]| match decode(bytes, true) {
        Err(DecodeError::Fatal(n)) => (n.code, n.subcode),
        other => panic!("expected a reset, got {other:?}"),
    };
    // Total Path Attribute Length running past the message.
    let mut m = update_bytes(&GOOD_ATTRS, &[]);
    m[21..23].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(fatal(&m), (3, 1));
    // MP_REACH_NLRI whose next hop length runs past the attribute.
    let mp = [0x80, 14, 5, 0, 2, 1, 16, 0];
    assert_eq!(fatal(&update_bytes(&mp, &[])), (3, 1));
    // MP_UNREACH_NLRI twice.
    let unreach = [0x80, 15, 3, 0, 2, 1];
    assert_eq!(
        fatal(&update_bytes(&[unreach, unreach].concat(), &[])),
        (3, 1)
    );
    // A prefix in MP_UNREACH_NLRI cut short.
    assert_eq!(
        fatal(&update_bytes(&[0x80, 15, 5, 0, 2, 1, 64, 0x20], &[])),
        (3, 10)
    );
}

/// Every attribute anycastd sends, in ascending type order with the flags
/// RFC 4271, 1997 and 8092 give them, and back through the decoder.
#[test]
fn route_attributes_are_encoded_in_type_order_and_decode() {
    let attrs = Attributes {
        origin: Origin::Igp,
        as_path: vec![65001; 3],
        four_octet_as: true,
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        med: Some(10),
        local_pref: Some(200),
        communities: vec![Community::new(65000, 1), Community::GRACEFUL_SHUTDOWN],
        large_communities: vec![LargeCommunity(65000, 1, 2)],
    };
    let update = Update {
        announced: vec![net("192.0.2.10/32"), net("2001:db8::10/128")],
        attributes: Some(attrs.clone()),
        next_hop6: Some("2001:db8::1".parse().unwrap()),
        ..Update::default()
    };
    let bytes = encode(&Message::Update(update.clone()));
    // Walk the attribute block: (flags, type) in order.
    let body = &bytes[HEADER_LEN..];
    let attrs_len = usize::from(u16::from_be_bytes([body[2], body[3]]));
    let mut rest = &body[4..4 + attrs_len];
    let mut seen = Vec::new();
    while let Some(h) = attribute_header(rest) {
        seen.push((h.flags & !0x10, h.code));
        if h.code == 4 {
            assert_eq!(&rest[h.header..h.header + h.len], 10u32.to_be_bytes());
        }
        if h.code == 8 {
            assert_eq!(
                &rest[h.header..h.header + h.len],
                [0xfd, 0xe8, 0, 1, 0xff, 0xff, 0, 0]
            );
        }
        rest = &rest[h.header + h.len..];
    }
    assert!(rest.is_empty());
    assert_eq!(
        seen,
        [
            (0x40, 1),
            (0x40, 2),
            (0x40, 3),
            (0x80, 4),
            (0x40, 5),
            (0xc0, 8),
            (0x80, 14),
            (0xc0, 32)
        ]
    );
    let got = roundtrip_update(&update);
    assert_eq!(got.treat_as_withdraw, None);
    assert_eq!(got.announced, update.announced);
    assert_eq!(got.as_path, [65001, 65001, 65001]);
    assert_eq!(got.med, Some(10));
    assert_eq!(got.local_pref, Some(200));
    assert_eq!(got.communities, attrs.communities);
    assert_eq!(got.large_communities, attrs.large_communities);
}

/// No extra attributes send none: the plain UPDATE is as before.
#[test]
fn plain_attributes_send_no_optional_attributes() {
    let update = Update {
        announced: vec![net("192.0.2.10/32")],
        attributes: Some(attributes(true)),
        ..Update::default()
    };
    let got = roundtrip_update(&update);
    assert_eq!(got.med, None);
    assert!(got.communities.is_empty() && got.large_communities.is_empty());
    // ORIGIN 4 + AS_PATH 9 + NEXT_HOP 7 bytes, nothing else.
    let body = &encode(&Message::Update(update))[HEADER_LEN..];
    assert_eq!(u16::from_be_bytes([body[2], body[3]]), 20);
}

/// A path longer than 255 ASes (prepend 255 on eBGP) takes two segments.
#[test]
fn long_as_paths_split_into_segments_of_255() {
    for four in [true, false] {
        let mut attrs = attributes(four);
        attrs.as_path = vec![65001; 256];
        let update = Update {
            announced: vec![net("192.0.2.10/32")],
            attributes: Some(attrs),
            ..Update::default()
        };
        let bytes = encode(&Message::Update(update));
        match decode(&bytes, four).unwrap() {
            Incoming::Update(r) => {
                assert_eq!(r.treat_as_withdraw, None);
                assert_eq!(r.as_path.len(), 256);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Many communities shrink the room for prefixes; every UPDATE still fits.
#[test]
fn build_updates_counts_the_attributes_against_the_size_limit() {
    let mut attrs = attributes(true);
    attrs.communities = (0..400).map(Community).collect();
    attrs.large_communities = (0..50).map(|i| LargeCommunity(i, i, i)).collect();
    let many: Vec<IpNet> = (0..3000u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap()))
        .chain((0..3000u128).map(|i| {
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from((0x2001_0db8u128 << 96) + i), 128).unwrap())
        }))
        .collect();
    let updates = build_updates(&[], &[(attrs, many)], Some("2001:db8::1".parse().unwrap()));
    let mut announced = 0;
    for u in &updates {
        let bytes = encode(&Message::Update(u.clone()));
        assert!(bytes.len() <= MAX_MESSAGE_LEN, "{}", bytes.len());
        let got = roundtrip_update(u);
        assert_eq!(got.treat_as_withdraw, None);
        assert_eq!(got.communities.len(), 400);
        announced += got.announced.len();
    }
    assert_eq!(announced, 6000);
}

/// Malformed MED, COMMUNITIES and LARGE_COMMUNITY are treat-as-withdraw
/// (RFC 7606 §7.4, §7.8, RFC 8092 §6), as are wrong flags on them.
#[test]
fn malformed_optional_attributes_are_treat_as_withdraw() {
    for extra in [
        vec![0x80, 4, 3, 0, 0, 1],     // MED of 3 bytes
        vec![0xc0, 8, 3, 0, 0, 1],     // COMMUNITIES not a multiple of 4
        vec![0xc0, 32, 4, 0, 0, 0, 1], // LARGE_COMMUNITY not of 12
        vec![0x40, 4, 4, 0, 0, 0, 1],  // MED flagged well-known
    ] {
        let mut attrs = GOOD_ATTRS.to_vec();
        attrs.extend(&extra);
        let got = decoded_update(&update_bytes(&attrs, &NLRI_192_0_2_1));
        assert!(got.treat_as_withdraw.is_some(), "{extra:?}");
        assert_eq!(got.announced, [net("192.0.2.1/32")]);
    }
}
