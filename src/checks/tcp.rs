//! `tcp_connect`: opens a fresh TCP connection per attempt, optionally sends
//! bytes and optionally waits for a banner substring in what the server
//! sends, reading at most [`TCP_EXPECT_MAX_BYTES`].
//!
//! The check keeps a deadline of its own just inside the engine's timeout,
//! so a banner that does not come is reported with what did come, not only
//! as a timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{AttemptFuture, Check, error_chain};
use crate::config::model::TcpConnectSpec;

/// What the check reads from the server at most, looking for `expect`.
pub const TCP_EXPECT_MAX_BYTES: usize = 4096;
/// How many characters of what came a reason shows, once escaped.
const SHOWN: usize = 80;

pub struct TcpConnect {
    host: String,
    port: u16,
    /// `host:port` as the reasons say it (IPv6 literals in brackets).
    address: String,
    send: Option<Vec<u8>>,
    expect: Option<Vec<u8>>,
    /// The check's own deadline: slightly shorter than the engine's timeout.
    budget: Duration,
}

impl TcpConnect {
    pub fn new(spec: &TcpConnectSpec) -> TcpConnect {
        let address = if spec.host.contains(':') {
            format!("[{}]:{}", spec.host, spec.port)
        } else {
            format!("{}:{}", spec.host, spec.port)
        };
        TcpConnect {
            host: spec.host.clone(),
            port: spec.port,
            address,
            send: spec.send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect: spec.expect.as_ref().map(|s| s.as_bytes().to_vec()),
            budget: budget(spec.timeout.get()),
        }
    }

    async fn run(&self, deadline: Instant) -> Result<(), String> {
        let address = &self.address;
        let target = super::resolve(&self.host, self.port, None).await?;
        let mut stream = match tokio::time::timeout_at(deadline, TcpStream::connect(target)).await {
            Err(_) => {
                return Err(format!(
                    "{address}: connect timed out after {}",
                    crate::config::format_duration(self.budget)
                ));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(format!("{address}: connection refused"));
            }
            Ok(Err(e)) => return Err(format!("{address}: cannot connect: {}", error_chain(&e))),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        if let Some(bytes) = &self.send {
            match tokio::time::timeout_at(deadline, stream.write_all(bytes)).await {
                Err(_) => return Err(format!("{address}: sending timed out")),
                Ok(Err(e)) => return Err(format!("{address}: cannot send: {}", error_chain(&e))),
                Ok(Ok(())) => {}
            }
        }
        if let Some(expect) = &self.expect {
            self.read_banner(&mut stream, expect, deadline).await?;
        }
        // Best effort: a polite close; the deadline bounds it.
        let _ = tokio::time::timeout_at(deadline, stream.shutdown()).await;
        Ok(())
    }

    /// Reads until `expect` shows up, the server closes, the byte limit is
    /// reached or the deadline passes.
    async fn read_banner(
        &self,
        stream: &mut TcpStream,
        expect: &[u8],
        deadline: Instant,
    ) -> Result<(), String> {
        let address = &self.address;
        let mut got: Vec<u8> = Vec::with_capacity(512);
        let mut buffer = [0u8; 1024];
        let why = loop {
            let room = (TCP_EXPECT_MAX_BYTES - got.len()).min(buffer.len());
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer[..room])).await {
                Err(_) => {
                    break format!(
                        "nothing more within {}",
                        crate::config::format_duration(self.budget)
                    );
                }
                Ok(Err(e)) => break format!("read failed: {}", error_chain(&e)),
                Ok(Ok(0)) => break "the server closed the connection".to_string(),
                Ok(Ok(n)) => {
                    // Search only where a new match can be: the tail of what
                    // was there plus what just came.
                    let from = got.len().saturating_sub(expect.len() - 1);
                    got.extend_from_slice(&buffer[..n]);
                    if contains(&got[from..], expect) {
                        return Ok(());
                    }
                    if got.len() >= TCP_EXPECT_MAX_BYTES {
                        break format!("not in the first {TCP_EXPECT_MAX_BYTES} bytes");
                    }
                }
            }
        };
        Err(format!(
            "{address}: banner mismatch: expected \"{}\", got {} ({why})",
            shown(expect),
            if got.is_empty() {
                "nothing".to_string()
            } else {
                format!("\"{}\" ({} bytes)", shown(&got), got.len())
            }
        ))
    }
}

impl Check for TcpConnect {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move { self.run(Instant::now() + self.budget).await })
    }
}

/// The check's own time limit: 90 % of the engine's timeout, so its reason
/// (what came, or that the connect hung) wins over a bare "timed out".
fn budget(timeout: Duration) -> Duration {
    timeout * 9 / 10
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `bytes` escaped (`\r`, `\n`, `\xNN`, `\"`) and cut to [`SHOWN`] characters
/// with a trailing `…`, fit for a one-line reason.
pub(crate) fn shown(bytes: &[u8]) -> String {
    let escaped = bytes.escape_ascii().to_string();
    if escaped.chars().count() <= SHOWN {
        return escaped;
    }
    // Do not cut an escape sequence in half.
    let mut out = String::new();
    for byte in bytes {
        let next = std::ascii::escape_default(*byte).to_string();
        if out.len() + next.len() > SHOWN {
            break;
        }
        out.push_str(&next);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    fn spec(port: u16, send: Option<&str>, expect: Option<&str>) -> TcpConnectSpec {
        TcpConnectSpec {
            host: "127.0.0.1".into(),
            port,
            send: send.map(Into::into),
            expect: expect.map(Into::into),
            tries: 1,
            interval: Duration::from_millis(100).into(),
            timeout: Duration::from_millis(500).into(),
        }
    }

    async fn attempt(spec: &TcpConnectSpec) -> Result<(), String> {
        tokio::time::timeout(Duration::from_secs(5), TcpConnect::new(spec).attempt())
            .await
            .expect("the attempt ends within its own deadline")
    }

    /// A listener that answers each connection with `reply`, after reading
    /// one chunk first when `read_first`, and records what it read.
    async fn server(
        reply: &'static [u8],
        read_first: bool,
    ) -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if read_first {
                        let mut buf = [0u8; 256];
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        let _ = tx.send(buf[..n].to_vec());
                    }
                    let _ = stream.write_all(reply).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                });
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn banner_send_and_mismatch() {
        let (port, _) = server(b"SSH-2.0-OpenSSH_9.6\r\n", false).await;
        assert_eq!(attempt(&spec(port, None, None)).await, Ok(()));
        assert_eq!(attempt(&spec(port, None, Some("SSH-2.0"))).await, Ok(()));
        let reason = attempt(&spec(port, None, Some("220 "))).await.unwrap_err();
        assert_eq!(
            reason,
            format!(
                "127.0.0.1:{port}: banner mismatch: expected \"220 \", got \"SSH-2.0-OpenSSH_9.6\\r\\n\" (21 bytes) (nothing more within 450ms)"
            )
        );

        let (port, mut seen) = server(b"+PONG\r\n", true).await;
        assert_eq!(
            attempt(&spec(port, Some("PING\r\n"), Some("+PONG"))).await,
            Ok(())
        );
        assert_eq!(seen.recv().await.unwrap(), b"PING\r\n");
    }

    #[tokio::test]
    async fn refused_and_silent() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(
            attempt(&spec(port, None, None)).await,
            Err(format!("127.0.0.1:{port}: connection refused"))
        );
        let (port, _) = server(b"", false).await;
        assert_eq!(
            attempt(&spec(port, None, Some("hello"))).await,
            Err(format!(
                "127.0.0.1:{port}: banner mismatch: expected \"hello\", got nothing (nothing more within 450ms)"
            ))
        );
    }

    /// A listener whose accept queue is full (it never accepts): the
    /// kernel drops new SYNs, so a new connection hangs, even though the
    /// queued ones were "connected". The check must fail.
    #[tokio::test]
    async fn a_full_accept_queue_fails() {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        socket.listen(0).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        // Fill the queue: connections that complete until one does not.
        let mut held = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(
                Duration::from_millis(200),
                TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                Ok(Ok(stream)) => held.push(stream),
                _ => break,
            }
        }
        assert!(held.len() < 8, "the accept queue never filled");
        assert_eq!(
            attempt(&spec(port, None, None)).await,
            Err(format!("127.0.0.1:{port}: connect timed out after 450ms"))
        );
        drop(socket);
    }

    #[test]
    fn shown_escapes_and_cuts() {
        assert_eq!(shown(b"a\"b\r\n\x00"), "a\\\"b\\r\\n\\x00");
        let long = shown(&[b'\xff'; 100]);
        assert!(long.ends_with("\\xff…"), "{long}");
        assert_eq!(long.chars().count(), 81);
        assert!(contains(b"xxabcx", b"abc"));
        assert!(!contains(b"ab", b"abc"));
    }
}
