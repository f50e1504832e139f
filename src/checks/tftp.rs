//! `tftp_rrq`: downloads a file with a TFTP read request (RFC 1350, octet
//! mode, RFC 2348 block size) and optionally compares its SHA-256.
//!
//! The packet codec and the transfer state machine are pure; the attempt
//! only moves datagrams and retransmits on silence.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;

use super::{AttemptFuture, BuildError, Check};
use crate::config::model::TftpRrqSpec;

const TFTP_PORT: u16 = 69;
/// Block size we ask for (fits a 1500-byte MTU); servers may decline.
const BLOCK_SIZE: u16 = 1428;
/// Files larger than this are refused rather than held in memory.
const MAX_FILE: usize = 256 * 1024 * 1024;
/// Silence after which the last packet is sent again.
const RETRANSMIT_AFTER: Duration = Duration::from_millis(500);

/// TFTP packets (RFC 1350 §5, RFC 2347 OACK).
pub mod codec {
    /// A packet received from the server.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Packet<'a> {
        Data {
            block: u16,
            data: &'a [u8],
        },
        Error {
            code: u16,
            message: String,
        },
        /// Option acknowledgement: the options the server accepted.
        OptionAck(Vec<(String, String)>),
        /// RRQ/WRQ/ACK: never expected by a reading client.
        Other(u16),
    }

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum DecodeError {
        #[error("packet too short ({0} bytes)")]
        TooShort(usize),
        #[error("malformed {0} packet")]
        Malformed(&'static str),
    }

    ///  2 bytes   string   1 byte   string  1 byte  string 1 byte string 1 byte
    /// | 01 | filename | 0 | "octet" | 0 | "blksize" | 0 | size | 0 |
    pub fn read_request(filename: &str, block_size: Option<u16>) -> Vec<u8> {
        let mut out = vec![0, 1];
        out.extend_from_slice(filename.as_bytes());
        out.push(0);
        out.extend_from_slice(b"octet\0");
        if let Some(size) = block_size {
            out.extend_from_slice(b"blksize\0");
            out.extend_from_slice(size.to_string().as_bytes());
            out.push(0);
        }
        out
    }

    /// | 04 | block |
    pub fn ack(block: u16) -> [u8; 4] {
        let b = block.to_be_bytes();
        [0, 4, b[0], b[1]]
    }

    pub fn decode(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
        if bytes.len() < 4 {
            return Err(DecodeError::TooShort(bytes.len()));
        }
        let opcode = u16::from_be_bytes([bytes[0], bytes[1]]);
        let word = u16::from_be_bytes([bytes[2], bytes[3]]);
        match opcode {
            3 => Ok(Packet::Data {
                block: word,
                data: &bytes[4..],
            }),
            5 => {
                let text = &bytes[4..];
                let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
                Ok(Packet::Error {
                    code: word,
                    message: String::from_utf8_lossy(&text[..end]).into_owned(),
                })
            }
            6 => {
                let body = &bytes[2..];
                let strings: Vec<String> = body
                    .split(|b| *b == 0)
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                    .collect();
                // A trailing NUL leaves one empty piece after the last pair.
                if body.last() != Some(&0) || strings.len() % 2 != 1 {
                    return Err(DecodeError::Malformed("OACK"));
                }
                let pairs = strings[..strings.len() - 1]
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                Ok(Packet::OptionAck(pairs))
            }
            other => Ok(Packet::Other(other)),
        }
    }
}

/// What the client should do after a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this ACK (and keep waiting, unless `done`).
    Ack {
        block: u16,
        done: bool,
    },
    /// Nothing to send (duplicate or stray packet).
    Ignore,
    Fail(String),
}

/// A download in progress: which block comes next, and the data so far.
#[derive(Debug)]
pub struct Transfer {
    block_size: usize,
    /// The next block wanted; wraps after 65535 as most servers do.
    expected: u16,
    pub data: Vec<u8>,
    started: bool,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            block_size: 512,
            expected: 1,
            data: Vec::new(),
            started: false,
        }
    }
}

impl Transfer {
    pub fn on_packet(&mut self, packet: codec::Packet<'_>) -> Step {
        use codec::Packet;
        match packet {
            Packet::OptionAck(options) if !self.started => {
                for (name, value) in options {
                    if name == "blksize" {
                        match value.parse::<usize>() {
                            Ok(size) if (8..=65464).contains(&size) => self.block_size = size,
                            _ => {
                                return Step::Fail(format!(
                                    "server sent an invalid blksize \"{value}\""
                                ));
                            }
                        }
                    }
                }
                self.started = true;
                Step::Ack {
                    block: 0,
                    done: false,
                }
            }
            Packet::Data { block, data } if block == self.expected => {
                self.started = true;
                if data.len() > self.block_size {
                    return Step::Fail(format!(
                        "block {block} has {} bytes, more than the block size {}",
                        data.len(),
                        self.block_size
                    ));
                }
                if self.data.len() + data.len() > MAX_FILE {
                    return Step::Fail(format!("file is larger than {} MiB", MAX_FILE >> 20));
                }
                self.data.extend_from_slice(data);
                self.expected = self.expected.wrapping_add(1);
                Step::Ack {
                    block,
                    done: data.len() < self.block_size,
                }
            }
            // Our ACK was lost: acknowledge the repeat again.
            Packet::Data { block, .. }
                if block == self.expected.wrapping_sub(1) && self.started =>
            {
                Step::Ack { block, done: false }
            }
            Packet::Error { code, message } => {
                Step::Fail(format!("server error {code}: {message}"))
            }
            _ => Step::Ignore,
        }
    }
}

pub struct TftpRrq {
    host: String,
    port: u16,
    /// The URL's path with its leading `/` (and query), as the original sent it.
    filename: String,
    expected_sha256: Option<String>,
}

impl TftpRrq {
    pub fn new(spec: &TftpRrqSpec) -> Result<TftpRrq, BuildError> {
        let url = Url::parse(&spec.url)
            .map_err(|e| BuildError::Invalid(format!("url \"{}\": {e}", spec.url)))?;
        let host = url
            .host_str()
            .ok_or_else(|| BuildError::Invalid(format!("url \"{}\" has no host", spec.url)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut filename = url.path().to_string();
        if let Some(query) = url.query() {
            filename.push('?');
            filename.push_str(query);
        }
        if filename.is_empty() || filename == "/" {
            return Err(BuildError::Invalid(format!(
                "url \"{}\" names no file",
                spec.url
            )));
        }
        Ok(TftpRrq {
            host,
            port: url.port().unwrap_or(TFTP_PORT),
            filename,
            expected_sha256: spec
                .expected_sha256
                .as_ref()
                .map(|s| s.to_ascii_lowercase()),
        })
    }

    async fn server(&self) -> Result<SocketAddr, String> {
        super::resolve(&self.host, self.port, None).await
    }

    async fn download(&self) -> Result<Vec<u8>, String> {
        let server = self.server().await?;
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or_else(|_| unreachable!())
        } else {
            "[::]:0".parse().unwrap_or_else(|_| unreachable!())
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        let request = codec::read_request(&self.filename, Some(BLOCK_SIZE));
        let mut last_sent: Vec<u8> = request.clone();
        let mut destination = server;
        // The server answers from a new port (its transfer ID); lock onto it.
        let mut peer: Option<SocketAddr> = None;
        let mut transfer = Transfer::default();
        let mut buffer = vec![0u8; 65536];
        socket
            .send_to(&request, destination)
            .await
            .map_err(|e| format!("cannot send to {server}: {e}"))?;
        loop {
            let received =
                tokio::time::timeout(RETRANSMIT_AFTER, socket.recv_from(&mut buffer)).await;
            let (length, from) = match received {
                Err(_) => {
                    // Silence: say the last thing again. The engine's
                    // timeout bounds how long this goes on.
                    socket
                        .send_to(&last_sent, destination)
                        .await
                        .map_err(|e| format!("cannot send to {destination}: {e}"))?;
                    continue;
                }
                Ok(Err(e)) => return Err(format!("no reply from {server}: {e}")),
                Ok(Ok(pair)) => pair,
            };
            if from.ip() != server.ip() || peer.is_some_and(|p| p != from) {
                continue;
            }
            peer = Some(from);
            destination = from;
            let packet = match codec::decode(&buffer[..length]) {
                Ok(packet) => packet,
                Err(e) => return Err(format!("bad packet from {from}: {e}")),
            };
            match transfer.on_packet(packet) {
                Step::Ack { block, done } => {
                    let ack = codec::ack(block);
                    socket
                        .send_to(&ack, from)
                        .await
                        .map_err(|e| format!("cannot send to {from}: {e}"))?;
                    if done {
                        return Ok(std::mem::take(&mut transfer.data));
                    }
                    last_sent = ack.to_vec();
                }
                Step::Ignore => {}
                Step::Fail(reason) => return Err(format!("{}: {reason}", self.describe(server))),
            }
        }
    }

    fn describe(&self, server: SocketAddr) -> String {
        format!("tftp://{server}{}", self.filename)
    }
}

/// Lower-case hex, as `expected_sha256` is kept.
fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Check for TftpRrq {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let data = self.download().await?;
            let Some(expected) = &self.expected_sha256 else {
                return Ok(());
            };
            let actual = sha256_hex(&data);
            if &actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "{} ({} bytes) has SHA-256 {actual}, expected {expected}",
                    self.filename,
                    data.len()
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::codec::{Packet, ack, decode, read_request};
    use super::*;

    #[test]
    fn encodes_requests_and_acks() {
        assert_eq!(read_request("/a", None), b"\0\x01/a\0octet\0");
        assert_eq!(
            read_request("/a", Some(1428)),
            b"\0\x01/a\0octet\0blksize\x001428\0"
        );
        assert_eq!(ack(258), [0, 4, 1, 2]);
    }

    #[test]
    fn decodes_server_packets() {
        assert_eq!(
            decode(b"\0\x03\0\x01abc"),
            Ok(Packet::Data {
                block: 1,
                data: b"abc"
            })
        );
        assert_eq!(
            decode(b"\0\x05\0\x01File not found\0"),
            Ok(Packet::Error {
                code: 1,
                message: "File not found".into()
            })
        );
        assert_eq!(
            decode(b"\0\x06blksize\x001428\0"),
            Ok(Packet::OptionAck(vec![("blksize".into(), "1428".into())]))
        );
        assert!(decode(b"\0\x06blksize").is_err());
        assert!(decode(b"\0\x03").is_err());
        assert_eq!(decode(b"\0\x04\0\x01"), Ok(Packet::Other(4)));
    }

    #[test]
    fn transfer_with_option_ack_and_short_last_block() {
        let mut t = Transfer::default();
        assert_eq!(
            t.on_packet(Packet::OptionAck(vec![("blksize".into(), "4".into())])),
            Step::Fail("server sent an invalid blksize \"4\"".into())
        );
        let mut t = Transfer::default();
        assert_eq!(
            t.on_packet(Packet::OptionAck(vec![("blksize".into(), "8".into())])),
            Step::Ack {
                block: 0,
                done: false
            }
        );
        let full = [7u8; 8];
        assert_eq!(
            t.on_packet(Packet::Data {
                block: 1,
                data: &full
            }),
            Step::Ack {
                block: 1,
                done: false
            }
        );
        // a repeat of block 1 (our ACK was lost) is acknowledged again
        assert_eq!(
            t.on_packet(Packet::Data {
                block: 1,
                data: &full
            }),
            Step::Ack {
                block: 1,
                done: false
            }
        );
        assert_eq!(
            t.on_packet(Packet::Data {
                block: 5,
                data: &full
            }),
            Step::Ignore
        );
        assert_eq!(
            t.on_packet(Packet::Data {
                block: 2,
                data: b"xy"
            }),
            Step::Ack {
                block: 2,
                done: true
            }
        );
        assert_eq!(t.data.len(), 10);
    }

    #[test]
    fn server_without_options_and_empty_file() {
        let mut t = Transfer::default();
        assert_eq!(
            t.on_packet(Packet::Data {
                block: 1,
                data: b""
            }),
            Step::Ack {
                block: 1,
                done: true
            }
        );
    }

    #[test]
    fn errors_and_oversized_blocks_fail() {
        let mut t = Transfer::default();
        assert_eq!(
            t.on_packet(Packet::Error {
                code: 1,
                message: "File not found".into()
            }),
            Step::Fail("server error 1: File not found".into())
        );
        let big = [0u8; 600];
        assert!(matches!(
            Transfer::default().on_packet(Packet::Data {
                block: 1,
                data: &big
            }),
            Step::Fail(_)
        ));
    }

    #[test]
    fn url_port_defaults_to_69_and_path_keeps_its_slash() {
        let spec = |url: &str| TftpRrqSpec {
            url: url.into(),
            expected_sha256: Some("AB".repeat(32)),
            tries: 1,
            interval: Duration::from_millis(1).into(),
            timeout: Duration::from_secs(1).into(),
        };
        let t = TftpRrq::new(&spec("tftp://127.0.0.1/pxe/lpxelinux.0")).unwrap();
        assert_eq!((t.port, t.filename.as_str()), (69, "/pxe/lpxelinux.0"));
        assert_eq!(t.expected_sha256, Some("ab".repeat(32)));
        let t = TftpRrq::new(&spec("tftp://[::1]:6969/f")).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 6969));
        assert!(TftpRrq::new(&spec("tftp://127.0.0.1/")).is_err());
    }

    // ---- lost packets, against a scripted server on loopback -------------

    /// How the scripted server misbehaves.
    #[derive(Debug, Clone, Copy, Default)]
    struct Script {
        /// Read requests ignored before one is answered.
        ignore_requests: usize,
        /// The first ACK of this block is ignored, as if it (or the DATA it
        /// asks for) had been lost; the server never retransmits by itself,
        /// so only the client's retransmission can move the transfer on.
        ignore_first_ack_of: Option<u16>,
        /// After sending this block the server answers nothing more.
        silent_after: Option<u16>,
    }

    /// What the scripted server received.
    #[derive(Debug, Default)]
    struct Seen {
        requests: Vec<Vec<u8>>,
        acks: Vec<u16>,
    }

    /// Every wait in the scripted server ends after this much silence.
    const QUIET: Duration = Duration::from_secs(3);

    /// A one-transfer TFTP server on 127.0.0.1: no options (so 512-byte
    /// blocks), answers from a new port as real servers do, follows
    /// `script`, and reports what it received when the transfer ends or
    /// the client has been quiet for [`QUIET`].
    async fn scripted_server(
        content: Vec<u8>,
        script: Script,
    ) -> (SocketAddr, tokio::task::JoinHandle<Seen>) {
        let listener = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut buffer = vec![0u8; 65536];
            let client = loop {
                let Ok(Ok((n, from))) =
                    tokio::time::timeout(QUIET, listener.recv_from(&mut buffer)).await
                else {
                    return seen;
                };
                seen.requests.push(buffer[..n].to_vec());
                if seen.requests.len() > script.ignore_requests {
                    break from;
                }
            };
            let transfer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            // A file of whole blocks ends with an empty one.
            let mut blocks: Vec<&[u8]> = content.chunks(512).collect();
            if content.len() % 512 == 0 {
                blocks.push(&[]);
            }
            let mut ignored = false;
            for (index, chunk) in blocks.iter().enumerate() {
                let block = u16::try_from(index + 1).unwrap();
                let mut data = vec![0, 3];
                data.extend_from_slice(&block.to_be_bytes());
                data.extend_from_slice(chunk);
                transfer.send_to(&data, client).await.unwrap();
                let silent = script.silent_after == Some(block);
                loop {
                    let Ok(Ok((n, from))) =
                        tokio::time::timeout(QUIET, transfer.recv_from(&mut buffer)).await
                    else {
                        return seen;
                    };
                    if from != client {
                        continue;
                    }
                    assert_eq!(decode(&buffer[..n]), Ok(Packet::Other(4)), "not an ACK");
                    let acked = u16::from_be_bytes([buffer[2], buffer[3]]);
                    seen.acks.push(acked);
                    if silent || acked != block {
                        continue;
                    }
                    if script.ignore_first_ack_of == Some(block) && !ignored {
                        ignored = true;
                        continue;
                    }
                    break;
                }
            }
            seen
        });
        (address, task)
    }

    fn check_for(address: SocketAddr, expected_sha256: Option<String>) -> TftpRrq {
        TftpRrq::new(&TftpRrqSpec {
            url: format!("tftp://{address}/boot.bin"),
            expected_sha256,
            tries: 1,
            interval: Duration::from_millis(100).into(),
            timeout: Duration::from_secs(5).into(),
        })
        .unwrap()
    }

    /// 1300 bytes: two full 512-byte blocks and a short third.
    fn content() -> Vec<u8> {
        (0..1300u32).map(|i| (i % 251) as u8).collect()
    }

    /// The ACKs in order without repeats (a slow reply may draw an extra one).
    fn distinct(acks: &[u16]) -> Vec<u16> {
        let mut out = acks.to_vec();
        out.dedup();
        out
    }

    #[tokio::test]
    async fn a_lost_request_is_sent_again() {
        let content = content();
        let script = Script {
            ignore_requests: 1,
            ..Script::default()
        };
        let (address, server) = scripted_server(content.clone(), script).await;
        let check = check_for(address, None);
        let data = tokio::time::timeout(Duration::from_secs(5), check.download())
            .await
            .expect("the download should finish after one retransmission");
        assert_eq!(data.as_deref(), Ok(content.as_slice()));
        let seen = server.await.unwrap();
        assert_eq!(seen.requests.len(), 2, "{seen:?}");
        // The repeat is the very same request, options included.
        let request = read_request("/boot.bin", Some(BLOCK_SIZE));
        assert!(seen.requests.iter().all(|r| *r == request), "{seen:?}");
        assert_eq!(distinct(&seen.acks), [1, 2, 3], "{seen:?}");
    }

    #[tokio::test]
    async fn a_lost_ack_is_sent_again_and_the_whole_file_arrives() {
        let content = content();
        let script = Script {
            ignore_requests: 1,
            ignore_first_ack_of: Some(2),
            ..Script::default()
        };
        let (address, server) = scripted_server(content.clone(), script).await;
        let check = check_for(address, Some(sha256_hex(&content)));
        let started = std::time::Instant::now();
        let verdict = tokio::time::timeout(Duration::from_secs(5), check.attempt())
            .await
            .expect("the attempt should finish after two retransmissions");
        assert_eq!(verdict, Ok(()));
        // Two silences of RETRANSMIT_AFTER, each ended by a retransmission.
        assert!(
            started.elapsed() >= RETRANSMIT_AFTER * 2,
            "{:?}",
            started.elapsed()
        );
        let seen = server.await.unwrap();
        assert_eq!(seen.requests.len(), 2, "{seen:?}");
        assert_eq!(distinct(&seen.acks), [1, 2, 3], "{seen:?}");
        let acks_of_2 = seen.acks.iter().filter(|b| **b == 2).count();
        assert!(acks_of_2 >= 2, "ACK 2 was not sent again: {seen:?}");
    }

    #[tokio::test]
    async fn a_server_that_goes_silent_fails_at_the_timeout() {
        use crate::checks::AttemptPolicy;
        use crate::engine::runner::{PreparedCheck, run_check};
        let script = Script {
            silent_after: Some(1),
            ..Script::default()
        };
        let (address, server) = scripted_server(content(), script).await;
        let prepared = PreparedCheck {
            name: "tftp".into(),
            group: String::new(),
            degrades: false,
            gauges: Default::default(),
            policy: AttemptPolicy {
                tries: 1,
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(2),
            },
            check: Box::new(check_for(address, None)),
        };
        let outcome = run_check(&prepared).await;
        assert!(!outcome.passed, "{outcome:?}");
        assert_eq!(outcome.reason, "timed out after 2s");
        assert!(
            outcome.duration < Duration::from_millis(2500),
            "{outcome:?}"
        );
        let seen = server.await.unwrap();
        assert_eq!(seen.requests.len(), 1, "{seen:?}");
        // Block 1 was acknowledged, and again on each silence until the
        // attempt was dropped; nothing beyond block 1 was ever acknowledged.
        assert!(seen.acks.len() >= 2, "{seen:?}");
        assert!(seen.acks.iter().all(|b| *b == 1), "{seen:?}");
    }
}
