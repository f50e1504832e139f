//! The BFD Control packet (RFC 5880 §4.1) as a pure codec: the 24-byte
//! mandatory section, checked as §6.8.6 asks before any session sees it.
//! Authentication (the A bit) is not supported: such packets are refused,
//! as §6.8.6 requires of a session without authentication.

use std::fmt;

/// The protocol version this codec speaks.
pub const VERSION: u8 = 1;
/// The length of the mandatory section, and of every packet we send.
pub const LENGTH: usize = 24;

/// Session states, with their wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BfdState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl BfdState {
    fn from_wire(bits: u8) -> BfdState {
        match bits & 0b11 {
            0 => BfdState::AdminDown,
            1 => BfdState::Down,
            2 => BfdState::Init,
            _ => BfdState::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BfdState::AdminDown => "admin_down",
            BfdState::Down => "down",
            BfdState::Init => "init",
            BfdState::Up => "up",
        }
    }
}

/// Why the local system last changed state (RFC 5880 §4.1, "Diag").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    None,
    DetectionTimeExpired,
    EchoFailed,
    NeighborSignaledDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    /// 9–31: reserved.
    Other(u8),
}

impl Diagnostic {
    fn from_wire(code: u8) -> Diagnostic {
        match code & 0x1f {
            0 => Diagnostic::None,
            1 => Diagnostic::DetectionTimeExpired,
            2 => Diagnostic::EchoFailed,
            3 => Diagnostic::NeighborSignaledDown,
            4 => Diagnostic::ForwardingPlaneReset,
            5 => Diagnostic::PathDown,
            6 => Diagnostic::ConcatenatedPathDown,
            7 => Diagnostic::AdministrativelyDown,
            8 => Diagnostic::ReverseConcatenatedPathDown,
            other => Diagnostic::Other(other),
        }
    }

    fn code(self) -> u8 {
        match self {
            Diagnostic::None => 0,
            Diagnostic::DetectionTimeExpired => 1,
            Diagnostic::EchoFailed => 2,
            Diagnostic::NeighborSignaledDown => 3,
            Diagnostic::ForwardingPlaneReset => 4,
            Diagnostic::PathDown => 5,
            Diagnostic::ConcatenatedPathDown => 6,
            Diagnostic::AdministrativelyDown => 7,
            Diagnostic::ReverseConcatenatedPathDown => 8,
            Diagnostic::Other(code) => code & 0x1f,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Diagnostic::None => "no diagnostic",
            Diagnostic::DetectionTimeExpired => "control detection time expired",
            Diagnostic::EchoFailed => "echo function failed",
            Diagnostic::NeighborSignaledDown => "neighbor signaled session down",
            Diagnostic::ForwardingPlaneReset => "forwarding plane reset",
            Diagnostic::PathDown => "path down",
            Diagnostic::ConcatenatedPathDown => "concatenated path down",
            Diagnostic::AdministrativelyDown => "administratively down",
            Diagnostic::ReverseConcatenatedPathDown => "reverse concatenated path down",
            Diagnostic::Other(code) => return write!(f, "diagnostic {code}"),
        };
        f.write_str(text)
    }
}

/// The mandatory section of a BFD Control packet. Intervals are in
/// microseconds, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diagnostic,
    pub state: BfdState,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (RFC 5880 §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a BFD Control packet ({0} bytes)")]
    Short(usize),
    #[error("BFD version {0} (only version 1 is spoken)")]
    Version(u8),
    #[error("length field {field} does not fit the {received} bytes received")]
    Length { field: u8, received: usize },
    #[error("detect multiplier 0")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    ZeroMyDiscriminator,
    #[error("your discriminator 0 in state {0:?}")]
    ZeroYourDiscriminator(BfdState),
    #[error("authentication present (not configured here)")]
    Authenticated,
}

const POLL: u8 = 0x20;
const FINAL: u8 = 0x10;
const CPI: u8 = 0x08;
const AUTH: u8 = 0x04;
const DEMAND: u8 = 0x02;
const MULTIPOINT: u8 = 0x01;

impl ControlPacket {
    pub fn encode(&self) -> [u8; LENGTH] {
        let mut out = [0u8; LENGTH];
        out[0] = (VERSION << 5) | self.diag.code();
        let mut flags = (self.state as u8) << 6;
        for (set, bit) in [
            (self.poll, POLL),
            (self.final_, FINAL),
            (self.control_plane_independent, CPI),
            (self.demand, DEMAND),
        ] {
            if set {
                flags |= bit;
            }
        }
        out[1] = flags;
        out[2] = self.detect_mult;
        out[3] = LENGTH as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        out
    }

    /// Decodes and checks a received packet: every check of §6.8.6 that
    /// needs no session state.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, DecodeError> {
        if bytes.len() < LENGTH {
            return Err(DecodeError::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = bytes[1];
        let length = bytes[3];
        let auth = flags & AUTH != 0;
        let minimum = if auth { LENGTH + 2 } else { LENGTH };
        if usize::from(length) < minimum || usize::from(length) > bytes.len() {
            return Err(DecodeError::Length {
                field: length,
                received: bytes.len(),
            });
        }
        if auth {
            return Err(DecodeError::Authenticated);
        }
        let detect_mult = bytes[2];
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let state = BfdState::from_wire(flags >> 6);
        let my_discriminator = word(4);
        let your_discriminator = word(8);
        if my_discriminator == 0 {
            return Err(DecodeError::ZeroMyDiscriminator);
        }
        if your_discriminator == 0 && !matches!(state, BfdState::Down | BfdState::AdminDown) {
            return Err(DecodeError::ZeroYourDiscriminator(state));
        }
        Ok(ControlPacket {
            diag: Diagnostic::from_wire(bytes[0]),
            state,
            poll: flags & POLL != 0,
            final_: flags & FINAL != 0,
            control_plane_independent: flags & CPI != 0,
            demand: flags & DEMAND != 0,
            detect_mult,
            my_discriminator,
            your_discriminator,
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlPacket {
        ControlPacket {
            diag: Diagnostic::DetectionTimeExpired,
            state: BfdState::Init,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 0x0102_0304,
            your_discriminator: 0x0a0b_0c0d,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 300_000,
            required_min_echo_rx_us: 0,
        }
    }

    /// The bytes of RFC 5880 §4.1's layout, written out by hand.
    #[test]
    fn encodes_the_rfc_layout() {
        let bytes = sample().encode();
        assert_eq!(
            bytes,
            [
                0x21, // version 1, diag 1
                0xa0, // state Init (2 << 6), P
                3, 24, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0, 0x01, 0x86, 0xa0, 0, 0x04, 0x93,
                0xe0, 0, 0, 0, 0,
            ]
        );
        assert_eq!(ControlPacket::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn every_state_and_flag_round_trips() {
        for state in [
            BfdState::AdminDown,
            BfdState::Down,
            BfdState::Init,
            BfdState::Up,
        ] {
            for bits in 0..16u8 {
                let p = ControlPacket {
                    state,
                    poll: bits & 1 != 0,
                    final_: bits & 2 != 0,
                    control_plane_independent: bits & 4 != 0,
                    demand: bits & 8 != 0,
                    your_discriminator: 7,
                    ..sample()
                };
                assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
            }
        }
    }

    #[test]
    fn refuses_what_section_6_8_6_discards() {
        let good = sample().encode();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.to_vec();
            f(&mut b);
            ControlPacket::decode(&b)
        };
        assert_eq!(
            ControlPacket::decode(&good[..23]),
            Err(DecodeError::Short(23))
        );
        assert_eq!(with(&|b| b[0] = 0x41), Err(DecodeError::Version(2)));
        assert_eq!(
            with(&|b| b[3] = 23),
            Err(DecodeError::Length {
                field: 23,
                received: 24
            })
        );
        assert_eq!(
            with(&|b| b[3] = 25),
            Err(DecodeError::Length {
                field: 25,
                received: 24
            })
        );
        assert_eq!(with(&|b| b[2] = 0), Err(DecodeError::ZeroDetectMult));
        assert_eq!(with(&|b| b[1] |= MULTIPOINT), Err(DecodeError::Multipoint));
        assert_eq!(
            with(&|b| b[4..8].fill(0)),
            Err(DecodeError::ZeroMyDiscriminator)
        );
        assert_eq!(
            with(&|b| b[8..12].fill(0)),
            Err(DecodeError::ZeroYourDiscriminator(BfdState::Init))
        );
        // Down and AdminDown may not know the other side's discriminator yet.
        assert!(
            with(&|b| {
                b[8..12].fill(0);
                b[1] = (BfdState::Down as u8) << 6;
            })
            .is_ok()
        );
        // Authentication: refused, whatever its section holds.
        assert_eq!(
            with(&|b| {
                b[1] |= AUTH;
                b[3] = 26;
                b.extend([1, 2]);
            }),
            Err(DecodeError::Authenticated)
        );
        assert_eq!(
            with(&|b| b[1] |= AUTH),
            Err(DecodeError::Length {
                field: 24,
                received: 24
            })
        );
    }

    #[test]
    fn a_longer_packet_is_read_up_to_its_length() {
        let mut bytes = sample().encode().to_vec();
        bytes[3] = 28;
        bytes.extend([9, 9, 9, 9]);
        assert_eq!(ControlPacket::decode(&bytes), Ok(sample()));
    }
}
