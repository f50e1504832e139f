//! BGP-4 messages on the wire (RFC 4271 §4), pure: no I/O, no tokio.
//!
//! Supported: OPEN with capabilities (RFC 5492) for multiprotocol (RFC 4760),
//! route refresh (RFC 2918) and 4-octet AS numbers (RFC 6793); UPDATE with
//! IPv4 NLRI and IPv6 in MP_REACH/MP_UNREACH, carrying ORIGIN, AS_PATH (with
//! prepends), NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF, COMMUNITIES (RFC 1997)
//! and LARGE_COMMUNITY (RFC 8092) in ascending type order; KEEPALIVE; NOTIFICATION with
//! the RFC 8203 shutdown communication; ROUTE-REFRESH. Decoding validates
//! what it reads and reports errors as the NOTIFICATION they call for;
//! attribute errors RFC 7606 allows to treat as withdraw are reported as such
//! (we keep no RIB, so the peer's routes are ignored either way).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::route::{Community, LargeCommunity};

pub const HEADER_LEN: usize = 19;
pub const MAX_MESSAGE_LEN: usize = 4096;
/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;

/// Address family / subsequent address family pairs we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub fn afi_safi(self) -> (u16, u8) {
        match self {
            Family::Ipv4Unicast => (1, 1),
            Family::Ipv6Unicast => (2, 1),
        }
    }

    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }
}

/// A capability from an OPEN (RFC 5492). Unknown ones are kept by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1 (RFC 4760).
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 65 (RFC 6793).
    FourOctetAs(u32),
    Other {
        code: u8,
        value: Vec<u8>,
    },
}

///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |  Optional Parameters (variable)  ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet field; AS_TRANS when the real AS needs 4 octets.
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The speaker's AS: the 4-octet capability's if present.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    pub fn four_octet_as(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
    }

    /// The unicast families the speaker announced; none listed means IPv4
    /// unicast only (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let mut families: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi: 1, safi: 1 } => Some(Family::Ipv4Unicast),
                Capability::Multiprotocol { afi: 2, safi: 1 } => Some(Family::Ipv6Unicast),
                _ => None,
            })
            .collect();
        let any_mp = self
            .capabilities
            .iter()
            .any(|c| matches!(c, Capability::Multiprotocol { .. }));
        if !any_mp {
            families.push(Family::Ipv4Unicast);
        }
        families.sort();
        families.dedup();
        families
    }
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

/// The path attributes anycastd sends. Received attributes are validated;
/// the few [`ReceivedUpdate`] reports are kept only for tests and logs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub origin: Origin,
    /// AS_SEQUENCE: the local AS (eBGP) and its prepends; empty for iBGP
    /// without prepends. Split into segments of at most 255.
    pub as_path: Vec<u32>,
    /// Whether AS numbers in AS_PATH take 4 octets (RFC 6793 negotiated).
    pub four_octet_as: bool,
    /// NEXT_HOP for IPv4 NLRI.
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC (type 4).
    pub med: Option<u32>,
    /// LOCAL_PREF (iBGP only).
    pub local_pref: Option<u32>,
    /// COMMUNITIES (type 8, RFC 1997); none sends no attribute.
    pub communities: Vec<Community>,
    /// LARGE_COMMUNITY (type 32, RFC 8092); none sends no attribute.
    pub large_communities: Vec<LargeCommunity>,
}

/// An UPDATE, in the terms anycastd uses: prefixes to announce (with one
/// set of attributes) and to withdraw. IPv6 goes in MP_REACH/MP_UNREACH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<IpNet>,
    pub announced: Vec<IpNet>,
    /// Required when `announced` is not empty.
    pub attributes: Option<Attributes>,
    /// Next hop for IPv6 announcements (MP_REACH).
    pub next_hop6: Option<Ipv6Addr>,
    /// End-of-RIB marker for this family (RFC 4724 §2): no routes at all.
    pub end_of_rib: Option<Family>,
}

/// NOTIFICATION (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease / Administrative Shutdown with an RFC 8203 message (≤ 255 bytes).
    pub fn administrative_shutdown(reason: &str) -> Notification {
        let mut text = reason.as_bytes().to_vec();
        text.truncate(255);
        let mut data = vec![text.len() as u8];
        data.extend(text);
        Notification::new(6, 2, data)
    }

    /// A one-line description for logs: names the error, and includes the
    /// shutdown communication when there is one.
    pub fn describe(&self) -> String {
        let name = match (self.code, self.subcode) {
            (1, 1) => "Message Header Error / Connection Not Synchronized",
            (1, 2) => "Message Header Error / Bad Message Length",
            (1, 3) => "Message Header Error / Bad Message Type",
            (1, _) => "Message Header Error",
            (2, 1) => "OPEN Message Error / Unsupported Version Number",
            (2, 2) => "OPEN Message Error / Bad Peer AS",
            (2, 3) => "OPEN Message Error / Bad BGP Identifier",
            (2, 4) => "OPEN Message Error / Unsupported Optional Parameter",
            (2, 6) => "OPEN Message Error / Unacceptable Hold Time",
            (2, 7) => "OPEN Message Error / Unsupported Capability",
            (2, _) => "OPEN Message Error",
            (3, 1) => "UPDATE Message Error / Malformed Attribute List",
            (3, 2) => "UPDATE Message Error / Unrecognized Well-known Attribute",
            (3, 3) => "UPDATE Message Error / Missing Well-known Attribute",
            (3, 4) => "UPDATE Message Error / Attribute Flags Error",
            (3, 5) => "UPDATE Message Error / Attribute Length Error",
            (3, 6) => "UPDATE Message Error / Invalid ORIGIN Attribute",
            (3, 8) => "UPDATE Message Error / Invalid NEXT_HOP Attribute",
            (3, 9) => "UPDATE Message Error / Optional Attribute Error",
            (3, 10) => "UPDATE Message Error / Invalid Network Field",
            (3, 11) => "UPDATE Message Error / Malformed AS_PATH",
            (3, _) => "UPDATE Message Error",
            (4, _) => "Hold Timer Expired",
            (5, _) => "Finite State Machine Error",
            (6, 1) => "Cease / Maximum Number of Prefixes Reached",
            (6, 2) => "Cease / Administrative Shutdown",
            (6, 3) => "Cease / Peer De-configured",
            (6, 4) => "Cease / Administrative Reset",
            (6, 5) => "Cease / Connection Rejected",
            (6, 6) => "Cease / Other Configuration Change",
            (6, 7) => "Cease / Connection Collision Resolution",
            (6, 8) => "Cease / Out of Resources",
            (6, 9) => "Cease / Hard Reset",
            (6, _) => "Cease",
            _ => "Unknown error code",
        };
        let mut out = format!("{name} ({}/{})", self.code, self.subcode);
        if self.code == 6 && matches!(self.subcode, 2 | 4) {
            if let Some((&len, rest)) = self.data.split_first()
                && usize::from(len) <= rest.len()
                && len > 0
            {
                out.push_str(&format!(
                    ": \"{}\"",
                    String::from_utf8_lossy(&rest[..usize::from(len)])
                ));
            }
        } else if self.code != 6 && !self.data.is_empty() {
            // The data names the culprit (for UPDATE errors, the attribute
            // as received): worth having in the log.
            let shown: Vec<String> = self
                .data
                .iter()
                .take(32)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if self.data.len() > 32 { " …" } else { "" };
            out.push_str(&format!(", data {}{more}", shown.join(" ")));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh { afi: u16, safi: u8 },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "open",
            Message::Update(_) => "update",
            Message::Notification(_) => "notification",
            Message::Keepalive => "keepalive",
            Message::RouteRefresh { .. } => "route_refresh",
        }
    }
}

// ---- encoding ------------------------------------------------------------

/// Encodes one message with its header. UPDATEs must already fit in 4096
/// bytes; [`build_updates`] packs them so.
pub fn encode(message: &Message) -> Vec<u8> {
    let (kind, body) = match message {
        Message::Open(open) => (1, encode_open(open)),
        Message::Update(update) => (2, encode_update(update)),
        Message::Notification(n) => {
            let mut body = vec![n.code, n.subcode];
            body.extend_from_slice(&n.data);
            (3, body)
        }
        Message::Keepalive => (4, Vec::new()),
        Message::RouteRefresh { afi, safi } => {
            let mut body = afi.to_be_bytes().to_vec();
            body.extend([0, *safi]);
            (5, body)
        }
    };
    let mut out = vec![0xff; 16];
    out.extend(((HEADER_LEN + body.len()) as u16).to_be_bytes());
    out.push(kind);
    out.extend(body);
    out
}

fn encode_open(open: &Open) -> Vec<u8> {
    let mut caps = Vec::new();
    for cap in &open.capabilities {
        let (code, value) = match cap {
            Capability::Multiprotocol { afi, safi } => {
                let mut v = afi.to_be_bytes().to_vec();
                v.extend([0, *safi]);
                (1, v)
            }
            Capability::RouteRefresh => (2, Vec::new()),
            Capability::FourOctetAs(asn) => (65, asn.to_be_bytes().to_vec()),
            Capability::Other { code, value } => (*code, value.clone()),
        };
        caps.push(code);
        caps.push(value.len() as u8);
        caps.extend(value);
    }
    let mut body = vec![4];
    body.extend(open.my_as.to_be_bytes());
    body.extend(open.hold_time.to_be_bytes());
    body.extend(open.router_id.octets());
    if caps.is_empty() {
        body.push(0);
    } else {
        // One Capabilities optional parameter (type 2) holding all of them.
        body.push((caps.len() + 2) as u8);
        body.push(2);
        body.push(caps.len() as u8);
        body.extend(caps);
    }
    body
}

fn encode_prefix(out: &mut Vec<u8>, prefix: &IpNet) {
    let len = prefix.prefix_len();
    out.push(len);
    let bytes = usize::from(len).div_ceil(8);
    match prefix {
        IpNet::V4(p) => out.extend(&p.network().octets()[..bytes]),
        IpNet::V6(p) => out.extend(&p.network().octets()[..bytes]),
    }
}

fn prefix_wire_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

fn push_attribute(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | 0x10);
        out.push(code);
        out.extend((value.len() as u16).to_be_bytes());
    } else {
        out.push(flags);
        out.push(code);
        out.push(value.len() as u8);
    }
    out.extend(value);
}

const WELL_KNOWN: u8 = 0x40;
const OPTIONAL_NON_TRANSITIVE: u8 = 0x80;
const OPTIONAL_TRANSITIVE: u8 = 0xc0;

/// AS_SEQUENCE segments of at most 255 ASes each.
fn encode_as_path(path: &[u32], four_octet_as: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for segment in path.chunks(255) {
        out.push(2); // AS_SEQUENCE
        out.push(segment.len() as u8);
        for asn in segment {
            if four_octet_as {
                out.extend(asn.to_be_bytes());
            } else {
                out.extend(u16::try_from(*asn).unwrap_or(AS_TRANS).to_be_bytes());
            }
        }
    }
    out
}

fn encode_update(update: &Update) -> Vec<u8> {
    let v4 = |list: &[IpNet]| -> Vec<IpNet> {
        list.iter()
            .filter(|p| matches!(p, IpNet::V4(_)))
            .copied()
            .collect()
    };
    let v6 = |list: &[IpNet]| -> Vec<IpNet> {
        list.iter()
            .filter(|p| matches!(p, IpNet::V6(_)))
            .copied()
            .collect()
    };
    let mut withdrawn = Vec::new();
    for p in v4(&update.withdrawn) {
        encode_prefix(&mut withdrawn, &p);
    }
    let mut attrs = Vec::new();
    let announced4 = v4(&update.announced);
    let announced6 = v6(&update.announced);
    let withdrawn6 = v6(&update.withdrawn);
    if let Some(a) = &update.attributes
        && !update.announced.is_empty()
    {
        let origin = match a.origin {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        };
        // (type code, flags, value), sent in ascending type order.
        let mut list: Vec<(u8, u8, Vec<u8>)> = vec![
            (1, WELL_KNOWN, vec![origin]),
            (2, WELL_KNOWN, encode_as_path(&a.as_path, a.four_octet_as)),
        ];
        if !announced4.is_empty()
            && let Some(nh) = a.next_hop
        {
            list.push((3, WELL_KNOWN, nh.octets().to_vec()));
        }
        if let Some(med) = a.med {
            list.push((4, OPTIONAL_NON_TRANSITIVE, med.to_be_bytes().to_vec()));
        }
        if let Some(lp) = a.local_pref {
            list.push((5, WELL_KNOWN, lp.to_be_bytes().to_vec()));
        }
        if !a.communities.is_empty() {
            let value = a
                .communities
                .iter()
                .flat_map(|c| c.0.to_be_bytes())
                .collect();
            list.push((8, OPTIONAL_TRANSITIVE, value));
        }
        if !announced6.is_empty() {
            let nh = update.next_hop6.unwrap_or(Ipv6Addr::UNSPECIFIED);
            let mut value = vec![0, 2, 1, 16];
            value.extend(nh.octets());
            value.push(0); // reserved
            for p in &announced6 {
                encode_prefix(&mut value, p);
            }
            list.push((14, OPTIONAL_NON_TRANSITIVE, value));
        }
        // A 4-octet AS spoken to an old speaker travels in AS4_PATH (RFC 6793 §4.2.2).
        if !a.four_octet_as && a.as_path.iter().any(|asn| *asn > u32::from(u16::MAX)) {
            list.push((17, OPTIONAL_TRANSITIVE, encode_as_path(&a.as_path, true)));
        }
        if !a.large_communities.is_empty() {
            let value = a
                .large_communities
                .iter()
                .flat_map(|c| [c.0, c.1, c.2])
                .flat_map(u32::to_be_bytes)
                .collect();
            list.push((32, OPTIONAL_TRANSITIVE, value));
        }
        if !withdrawn6.is_empty() {
            let mut value = vec![0, 2, 1];
            for p in &withdrawn6 {
                encode_prefix(&mut value, p);
            }
            list.push((15, OPTIONAL_NON_TRANSITIVE, value));
        }
        list.sort_by_key(|(code, _, _)| *code);
        for (code, flags, value) in list {
            push_attribute(&mut attrs, flags, code, &value);
        }
    } else if !withdrawn6.is_empty() || update.end_of_rib == Some(Family::Ipv6Unicast) {
        let mut value = vec![0, 2, 1];
        for p in &withdrawn6 {
            encode_prefix(&mut value, p);
        }
        push_attribute(&mut attrs, OPTIONAL_NON_TRANSITIVE, 15, &value);
    }
    let mut body = Vec::new();
    body.extend((withdrawn.len() as u16).to_be_bytes());
    body.extend(withdrawn);
    body.extend((attrs.len() as u16).to_be_bytes());
    body.extend(attrs);
    if update.attributes.is_some() {
        for p in &announced4 {
            encode_prefix(&mut body, p);
        }
    }
    body
}

/// Packs withdrawals and announcements into as few UPDATEs as fit in 4096
/// bytes each: withdrawals first (IPv4 in the withdrawn field, IPv6 in
/// MP_UNREACH), then each group of announcements sharing one set of
/// attributes (an UPDATE carries one set), in the order given.
pub fn build_updates(
    withdrawn: &[IpNet],
    announced: &[(Attributes, Vec<IpNet>)],
    next_hop6: Option<Ipv6Addr>,
) -> Vec<Update> {
    // Room for withdrawn prefixes once the header and length fields are counted.
    const BUDGET: usize = MAX_MESSAGE_LEN - HEADER_LEN - 4 - 8;
    let mut updates = Vec::new();
    for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        let mut batch = Vec::new();
        let mut used = 0;
        for p in withdrawn.iter().filter(|p| Family::of(p) == family) {
            if used + prefix_wire_len(p) > BUDGET {
                updates.push(Update {
                    withdrawn: std::mem::take(&mut batch),
                    ..Update::default()
                });
                used = 0;
            }
            used += prefix_wire_len(p);
            batch.push(*p);
        }
        if !batch.is_empty() {
            updates.push(Update {
                withdrawn: batch,
                ..Update::default()
            });
        }
    }
    for (attributes, prefixes) in announced {
        for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            let Some(first) = prefixes.iter().find(|p| Family::of(p) == family) else {
                continue;
            };
            // What the attributes cost, measured: a one-prefix UPDATE less
            // its prefix, plus a byte for MP_REACH turning extended length.
            let overhead = encode(&Message::Update(Update {
                announced: vec![*first],
                attributes: Some(attributes.clone()),
                next_hop6,
                ..Update::default()
            }))
            .len()
                - prefix_wire_len(first)
                + 1;
            let budget = MAX_MESSAGE_LEN.saturating_sub(overhead);
            let mut batch = Vec::new();
            let mut used = 0;
            let flush = |batch: &mut Vec<IpNet>, updates: &mut Vec<Update>| {
                updates.push(Update {
                    announced: std::mem::take(batch),
                    attributes: Some(attributes.clone()),
                    next_hop6,
                    ..Update::default()
                });
            };
            for p in prefixes.iter().filter(|p| Family::of(p) == family) {
                if !batch.is_empty() && used + prefix_wire_len(p) > budget {
                    flush(&mut batch, &mut updates);
                    used = 0;
                }
                used += prefix_wire_len(p);
                batch.push(*p);
            }
            if !batch.is_empty() {
                flush(&mut batch, &mut updates);
            }
        }
    }
    updates
}

// ---- decoding ------------------------------------------------------------

/// What a decode of received bytes found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The message is invalid: send this NOTIFICATION and close.
    Fatal(Notification),
}

/// Framing: how many bytes the next message needs, if a whole one is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet for a header, or for the length it announces.
    Incomplete,
    /// A whole message of this many bytes is at the front of the buffer.
    Complete(usize),
}

/// Looks at the front of `buf`. A header is checked as soon as all 19 bytes
/// are there, so a bad length is caught before waiting for a body that may
/// never come.
pub fn frame(buf: &[u8]) -> Result<Frame, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(Frame::Incomplete);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(DecodeError::Fatal(Notification::new(1, 1, Vec::new())));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    let kind = buf[18];
    let min = match kind {
        1 => 29,
        2 => 23,
        3 => 21,
        4 => 19,
        5 => 23,
        _ => {
            return Err(DecodeError::Fatal(Notification::new(1, 3, vec![kind])));
        }
    };
    if len < min || len > MAX_MESSAGE_LEN || (kind == 4 && len != 19) {
        return Err(DecodeError::Fatal(Notification::new(
            1,
            2,
            (len as u16).to_be_bytes().to_vec(),
        )));
    }
    if buf.len() < len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Complete(len))
}

/// A received UPDATE, summarised: we keep no RIB, only count and validate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedUpdate {
    pub withdrawn: Vec<IpNet>,
    pub announced: Vec<IpNet>,
    /// An attribute error RFC 7606 handles as "treat as withdraw".
    pub treat_as_withdraw: Option<String>,
    pub end_of_rib: Option<Family>,
    /// The AS_PATH's ASes, segment after segment (for tests and logs).
    pub as_path: Vec<u32>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

/// A decoded incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Open(Open),
    Update(ReceivedUpdate),
    Notification(Notification),
    Keepalive,
    RouteRefresh { afi: u16, safi: u8 },
}

/// Decodes one whole message (as delimited by [`frame`]). `four_octet_as`
/// says how AS_PATH is encoded on this session.
pub fn decode(message: &[u8], four_octet_as: bool) -> Result<Incoming, DecodeError> {
    let len = match frame(message)? {
        Frame::Complete(len) if len == message.len() => len,
        _ => {
            return Err(DecodeError::Fatal(Notification::new(
                1,
                2,
                (message.len().min(usize::from(u16::MAX)) as u16)
                    .to_be_bytes()
                    .to_vec(),
            )));
        }
    };
    let body = &message[HEADER_LEN..len];
    match message[18] {
        1 => decode_open(body).map(Incoming::Open),
        2 => decode_update(body, four_octet_as).map(Incoming::Update),
        3 => Ok(Incoming::Notification(Notification::new(
            body[0],
            body[1],
            body[2..].to_vec(),
        ))),
        4 => Ok(Incoming::Keepalive),
        _ => Ok(Incoming::RouteRefresh {
            afi: u16::from_be_bytes([body[0], body[1]]),
            safi: body[3],
        }),
    }
}

fn open_error(subcode: u8, data: Vec<u8>) -> DecodeError {
    DecodeError::Fatal(Notification::new(2, subcode, data))
}

fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let version = body[0];
    if version != 4 {
        return Err(open_error(1, 4u16.to_be_bytes().to_vec()));
    }
    let my_as = u16::from_be_bytes([body[1], body[2]]);
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    if hold_time == 1 || hold_time == 2 {
        return Err(open_error(6, Vec::new()));
    }
    let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
    if router_id.is_unspecified() {
        return Err(open_error(3, Vec::new()));
    }
    let params_len = usize::from(body[9]);
    let params = body
        .get(10..10 + params_len)
        .ok_or_else(|| open_error(0, Vec::new()))?;
    if 10 + params_len != body.len() {
        return Err(open_error(0, Vec::new()));
    }
    let mut capabilities = Vec::new();
    let mut rest = params;
    while !rest.is_empty() {
        let [kind, len, ..] = rest else {
            return Err(open_error(0, Vec::new()));
        };
        let value = rest
            .get(2..2 + usize::from(*len))
            .ok_or_else(|| open_error(0, Vec::new()))?;
        if *kind != 2 {
            return Err(open_error(4, Vec::new()));
        }
        let mut caps = value;
        while !caps.is_empty() {
            let [code, clen, ..] = caps else {
                return Err(open_error(0, Vec::new()));
            };
            let v = caps
                .get(2..2 + usize::from(*clen))
                .ok_or_else(|| open_error(0, Vec::new()))?;
            capabilities.push(match (code, v.len()) {
                (1, 4) => Capability::Multiprotocol {
                    afi: u16::from_be_bytes([v[0], v[1]]),
                    safi: v[3],
                },
                (2, 0) => Capability::RouteRefresh,
                (65, 4) => Capability::FourOctetAs(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
                (1 | 2 | 65, _) => return Err(open_error(0, Vec::new())),
                _ => Capability::Other {
                    code: *code,
                    value: v.to_vec(),
                },
            });
            caps = &caps[2 + v.len()..];
        }
        rest = &rest[2 + value.len()..];
    }
    Ok(Open {
        my_as,
        hold_time,
        router_id,
        capabilities,
    })
}

/// The first four bytes of `bytes` (which has them), big-endian.
fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn malformed_attributes() -> DecodeError {
    DecodeError::Fatal(Notification::new(3, 1, Vec::new()))
}

/// Reads `<len><prefix bytes>` entries until `data` ends.
fn decode_prefixes(mut data: &[u8], v6: bool) -> Result<Vec<IpNet>, DecodeError> {
    let max = if v6 { 128 } else { 32 };
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        if len > max {
            return Err(DecodeError::Fatal(Notification::new(3, 10, Vec::new())));
        }
        let bytes = usize::from(len).div_ceil(8);
        let addr = rest
            .get(..bytes)
            .ok_or_else(|| DecodeError::Fatal(Notification::new(3, 10, Vec::new())))?;
        let prefix = if v6 {
            let mut octets = [0u8; 16];
            octets[..bytes].copy_from_slice(addr);
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(octets), len)
                    .map_err(|_| malformed_attributes())?
                    .trunc(),
            )
        } else {
            let mut octets = [0u8; 4];
            octets[..bytes].copy_from_slice(addr);
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(octets), len)
                    .map_err(|_| malformed_attributes())?
                    .trunc(),
            )
        };
        out.push(prefix);
        data = &rest[bytes..];
    }
    Ok(out)
}

/// One path attribute's header: flags, type code, value length, and the
/// header's own length (3, or 4 with Extended Length).
struct AttributeHeader {
    flags: u8,
    code: u8,
    len: usize,
    header: usize,
}

/// The header of the attribute at the front of `rest`, if the header and
/// the value it announces both fit in `rest`.
fn attribute_header(rest: &[u8]) -> Option<AttributeHeader> {
    let (&flags, after) = rest.split_first()?;
    let (&code, after) = after.split_first()?;
    let (len, header) = if flags & 0x10 != 0 {
        let l = after.get(..2)?;
        (usize::from(u16::from_be_bytes([l[0], l[1]])), 4)
    } else {
        (usize::from(*after.first()?), 3)
    };
    (rest.len() >= header + len).then_some(AttributeHeader {
        flags,
        code,
        len,
        header,
    })
}

/// Decodes an UPDATE body. RFC 7606 decides what an error costs. Anything in
/// the path attributes that leaves the NLRI locatable is treat-as-withdraw
/// (we keep no RIB, so that is a log line and nothing else). Only these
/// still reset the session, because the NLRI cannot be parsed at all
/// (RFC 7606 §5.3, and §3 g for repeats):
/// - Withdrawn Routes Length or Total Path Attribute Length running past
///   the message (3/1): the NLRI cannot be located;
/// - a malformed prefix in Withdrawn Routes or NLRI (3/10);
/// - MP_REACH_NLRI / MP_UNREACH_NLRI too short for their fixed fields, with
///   a next hop length running past the attribute, with a malformed prefix,
///   or present twice (3/1, 3/10; RFC 7606 §7.11 also allows "AFI/SAFI
///   disable", which anycastd does not implement).
fn decode_update(body: &[u8], four_octet_as: bool) -> Result<ReceivedUpdate, DecodeError> {
    let withdrawn_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let withdrawn_end = 2 + withdrawn_len;
    let withdrawn = body
        .get(2..withdrawn_end)
        .ok_or_else(malformed_attributes)?;
    let attrs_len_bytes = body
        .get(withdrawn_end..withdrawn_end + 2)
        .ok_or_else(malformed_attributes)?;
    let attrs_len = usize::from(u16::from_be_bytes([attrs_len_bytes[0], attrs_len_bytes[1]]));
    let attrs_start = withdrawn_end + 2;
    let attrs = body
        .get(attrs_start..attrs_start + attrs_len)
        .ok_or_else(malformed_attributes)?;
    let nlri = &body[attrs_start + attrs_len..];
    let mut update = ReceivedUpdate {
        withdrawn: decode_prefixes(withdrawn, false)?,
        announced: decode_prefixes(nlri, false)?,
        ..ReceivedUpdate::default()
    };
    let mut seen = [false; 256];
    let mut rest = attrs;
    let treat_as_withdraw = |why: String, update: &mut ReceivedUpdate| {
        update.treat_as_withdraw.get_or_insert(why);
    };
    while !rest.is_empty() {
        let Some(AttributeHeader {
            flags,
            code,
            len,
            header,
        }) = attribute_header(rest)
        else {
            // RFC 7606 §4: 1–3 stray bytes, too few for an attribute header,
            // or an attribute whose length runs past the Total Path
            // Attribute Length. Treat as withdraw; the NLRI is still found
            // by the total length, so the session stays up.
            treat_as_withdraw(
                format!(
                    "path attribute runs past the attribute block ({} bytes left)",
                    rest.len()
                ),
                &mut update,
            );
            break;
        };
        let value = &rest[header..header + len];
        rest = &rest[header + len..];
        if std::mem::replace(&mut seen[usize::from(code)], true) {
            // Repeated attributes: MP_* repeats reset (RFC 7606 §3 g), others
            // are discarded after the first.
            if code == 14 || code == 15 {
                return Err(malformed_attributes());
            }
            continue;
        }
        let optional = flags & 0x80 != 0;
        let well_known_flags_ok = !optional && flags & 0x40 != 0;
        match code {
            1 | 2 | 3 | 5 if !well_known_flags_ok => {
                treat_as_withdraw(
                    format!("attribute {code} has flags {flags:#04x}"),
                    &mut update,
                );
            }
            1 if len != 1 || value[0] > 2 => {
                treat_as_withdraw("malformed ORIGIN".into(), &mut update);
            }
            2 => {
                let width = if four_octet_as { 4 } else { 2 };
                let mut segments = value;
                while let [kind, count, ..] = segments {
                    let need = 2 + usize::from(*count) * width;
                    if !(1..=4).contains(kind) || *count == 0 || segments.len() < need {
                        treat_as_withdraw("malformed AS_PATH".into(), &mut update);
                        break;
                    }
                    segments = &segments[need..];
                }
                if segments.len() == 1 {
                    treat_as_withdraw("malformed AS_PATH".into(), &mut update);
                } else if segments.is_empty() {
                    let mut segments = value;
                    while let [_, count, rest @ ..] = segments {
                        let need = usize::from(*count) * width;
                        update.as_path.extend(
                            rest[..need]
                                .chunks(width)
                                .map(|c| c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))),
                        );
                        segments = &rest[need..];
                    }
                }
            }
            3 if len != 4 => treat_as_withdraw("malformed NEXT_HOP".into(), &mut update),
            5 if len != 4 => treat_as_withdraw("malformed LOCAL_PREF".into(), &mut update),
            5 => update.local_pref = Some(be_u32(value)),
            4 | 8 | 32 if !optional => {
                treat_as_withdraw(
                    format!("attribute {code} has flags {flags:#04x}"),
                    &mut update,
                );
            }
            // RFC 7606 §7.4, §7.8; RFC 8092 §6.
            4 if len != 4 => treat_as_withdraw("malformed MULTI_EXIT_DISC".into(), &mut update),
            4 => update.med = Some(be_u32(value)),
            8 if len % 4 != 0 => treat_as_withdraw("malformed COMMUNITIES".into(), &mut update),
            8 => update.communities = value.chunks(4).map(|c| Community(be_u32(c))).collect(),
            32 if len % 12 != 0 => {
                treat_as_withdraw("malformed LARGE_COMMUNITY".into(), &mut update);
            }
            32 => {
                update.large_communities = value
                    .chunks(12)
                    .map(|c| LargeCommunity(be_u32(&c[..4]), be_u32(&c[4..8]), be_u32(&c[8..])))
                    .collect();
            }
            14 => {
                // MP_REACH_NLRI: AFI, SAFI, next hop, reserved, NLRI.
                let [a0, a1, safi, nh_len, ..] = value else {
                    return Err(malformed_attributes());
                };
                let afi = u16::from_be_bytes([*a0, *a1]);
                let nlri_start = 4 + usize::from(*nh_len) + 1;
                let nlri = value.get(nlri_start..).ok_or_else(malformed_attributes)?;
                if *safi == 1 && (afi == 1 || afi == 2) {
                    update.announced.extend(decode_prefixes(nlri, afi == 2)?);
                }
            }
            15 => {
                let [a0, a1, safi, ..] = value else {
                    return Err(malformed_attributes());
                };
                let afi = u16::from_be_bytes([*a0, *a1]);
                if *safi == 1 && (afi == 1 || afi == 2) {
                    let prefixes = decode_prefixes(&value[3..], afi == 2)?;
                    if prefixes.is_empty() && attrs.len() == 3 + value.len() {
                        update.end_of_rib = Some(if afi == 1 {
                            Family::Ipv4Unicast
                        } else {
                            Family::Ipv6Unicast
                        });
                    }
                    update.withdrawn.extend(prefixes);
                }
            }
            _ => {}
        }
    }
    let has_nlri = !nlri.is_empty();
    if has_nlri {
        for (code, name) in [(1, "ORIGIN"), (2, "AS_PATH"), (3, "NEXT_HOP")] {
            if !seen[code] {
                treat_as_withdraw(format!("missing {name}"), &mut update);
            }
        }
    }
    if withdrawn.is_empty() && attrs.is_empty() && nlri.is_empty() {
        update.end_of_rib = Some(Family::Ipv4Unicast);
    }
    Ok(update)
}

/// Whether peers are likely to refuse `addr` as a NEXT_HOP: FRR answers
/// 0.0.0.0/8, 127.0.0.0/8 and 224.0.0.0/3 with a NOTIFICATION (3/8) and
/// GoBGP treats the UPDATE as withdraw; BIRD takes them.
pub fn martian_next_hop(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    first == 0 || addr.is_loopback() || first >= 224
}

/// The local address family a session's own address gives us.
pub fn ipv4_of(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    }
}

#[cfg(test)]
mod tests;
