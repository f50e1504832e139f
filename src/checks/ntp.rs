//! `ntpq`: one SNTP query per attempt from `src_addr` to `server`; passes
//! when the clock offset is within `offset_threshold` and the server is
//! synchronised (not leap indicator 3, not stratum 0, not a kiss-o'-death).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sntpc::{NtpContext, NtpUdpSocket, StdTimestampGen};
use tokio::net::UdpSocket;

use super::{AttemptFuture, BuildError, Check, CheckLabels};
use crate::config::format_duration;
use crate::config::model::NtpqSpec;
use crate::metrics;

const NTP_PORT: u16 = 123;

pub struct Ntpq {
    host: String,
    port: u16,
    src_addr: IpAddr,
    threshold: Duration,
    labels: CheckLabels,
}

impl Ntpq {
    pub fn new(spec: &NtpqSpec, labels: &CheckLabels) -> Result<Ntpq, BuildError> {
        let (host, port) = split_server(&spec.server).ok_or_else(|| {
            BuildError::Invalid(format!(
                "server \"{}\" is not host or host:port",
                spec.server
            ))
        })?;
        Ok(Ntpq {
            host,
            port,
            src_addr: spec.src_addr,
            threshold: spec.offset_threshold.get(),
            labels: labels.clone(),
        })
    }

    /// The server's address in `src_addr`'s family.
    async fn server_address(&self) -> Result<SocketAddr, String> {
        super::resolve(&self.host, self.port, Some(self.src_addr.is_ipv4())).await
    }
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address; port defaults to 123.
fn split_server(server: &str) -> Option<(String, u16)> {
    if let Ok(ip) = server.parse::<IpAddr>() {
        return Some((ip.to_string(), NTP_PORT));
    }
    if let Some((host, port)) = crate::config::split_host_port(server) {
        return Some((host, port));
    }
    (!server.is_empty() && !server.contains(':')).then(|| (server.to_string(), NTP_PORT))
}

/// sntpc's socket trait over a tokio socket.
struct NtpSocket(UdpSocket);

impl NtpUdpSocket for NtpSocket {
    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> sntpc::Result<usize> {
        self.0
            .send_to(buf, addr)
            .await
            .map_err(|_| sntpc::Error::Network)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> sntpc::Result<(usize, SocketAddr)> {
        self.0
            .recv_from(buf)
            .await
            .map_err(|_| sntpc::Error::Network)
    }
}

/// The verdict on a reply, given the threshold: pure, so it is unit-tested.
fn judge(
    server: SocketAddr,
    offset_us: i64,
    stratum: u8,
    threshold: Duration,
) -> Result<(), String> {
    if stratum == 0 {
        return Err(format!("{server} is unsynchronised (stratum 0)"));
    }
    let offset = Duration::from_micros(offset_us.unsigned_abs());
    if offset > threshold {
        return Err(format!(
            "clock offset to {server} is {}{}, more than offset_threshold {}",
            if offset_us < 0 { "-" } else { "" },
            format_duration(offset),
            format_duration(threshold)
        ));
    }
    Ok(())
}

fn describe(server: SocketAddr, error: sntpc::Error) -> String {
    match error {
        sntpc::Error::UnsynchronizedClock => {
            format!("{server} is unsynchronised (leap indicator 3)")
        }
        // chrony and ntpd answer stratum 0 with an empty code while unsynchronised.
        sntpc::Error::KissOfDeath(sntpc::KissOfDeathCode::Experimental(code))
            if code.iter().all(|b| *b == 0 || *b == b' ') =>
        {
            format!("{server} is unsynchronised (stratum 0)")
        }
        sntpc::Error::KissOfDeath(code) => format!(
            "{server} sent a kiss-o'-death ({})",
            code.as_str().trim_end_matches(['\0', ' '])
        ),
        sntpc::Error::Network => format!("no usable reply from {server} (network error)"),
        other => format!("invalid reply from {server}: {other:?}"),
    }
}

impl Check for Ntpq {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let server = self.server_address().await?;
            if server.is_ipv4() != self.src_addr.is_ipv4() {
                return Err(format!(
                    "src_addr {} and server {server} are of different address families",
                    self.src_addr
                ));
            }
            let socket = UdpSocket::bind(SocketAddr::new(self.src_addr, 0))
                .await
                .map_err(|e| format!("cannot bind to src_addr {}: {e}", self.src_addr))?;
            let socket = NtpSocket(socket);
            metrics::ntp_packet_sent(&self.labels, &self.host);
            let reply =
                sntpc::get_time(server, &socket, NtpContext::new(StdTimestampGen::default()))
                    .await
                    .map_err(|e| describe(server, e))?;
            metrics::ntp_reply(
                &self.labels,
                &self.host,
                reply.offset as f64 / 1000.0,
                reply.roundtrip as f64 / 1000.0,
            );
            judge(server, reply.offset, reply.stratum, self.threshold)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_forms() {
        assert_eq!(
            split_server("ntp.example"),
            Some(("ntp.example".into(), 123))
        );
        assert_eq!(
            split_server("127.0.0.1:1123"),
            Some(("127.0.0.1".into(), 1123))
        );
        assert_eq!(split_server("::1"), Some(("::1".into(), 123)));
        assert_eq!(split_server("[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(split_server(""), None);
    }

    #[test]
    fn offset_threshold_and_stratum() {
        let server: SocketAddr = "127.0.0.1:123".parse().unwrap();
        let limit = Duration::from_millis(125);
        assert_eq!(judge(server, 124_000, 3, limit), Ok(()));
        assert_eq!(judge(server, -125_000, 3, limit), Ok(()));
        assert_eq!(
            judge(server, -126_000, 3, limit),
            Err("clock offset to 127.0.0.1:123 is -126ms, more than offset_threshold 125ms".into())
        );
        assert_eq!(
            judge(server, 0, 0, limit),
            Err("127.0.0.1:123 is unsynchronised (stratum 0)".into())
        );
    }

    #[test]
    fn reasons_for_leap_indicator_3_and_kiss_o_death() {
        use sntpc::{Error, KissOfDeathCode};
        let server: SocketAddr = "127.0.0.1:123".parse().unwrap();
        assert_eq!(
            describe(server, Error::UnsynchronizedClock),
            "127.0.0.1:123 is unsynchronised (leap indicator 3)"
        );
        assert_eq!(
            describe(server, Error::KissOfDeath(KissOfDeathCode::Rate)),
            "127.0.0.1:123 sent a kiss-o'-death (RATE)"
        );
        assert_eq!(
            describe(server, Error::KissOfDeath(KissOfDeathCode::Deny)),
            "127.0.0.1:123 sent a kiss-o'-death (DENY)"
        );
        assert_eq!(
            describe(server, Error::KissOfDeath(KissOfDeathCode::Rstr)),
            "127.0.0.1:123 sent a kiss-o'-death (RSTR)"
        );
        // An empty code (all NUL or blank) is an unsynchronised server, not a kiss.
        for empty in [[0u8; 4], *b"    "] {
            assert_eq!(
                describe(
                    server,
                    Error::KissOfDeath(KissOfDeathCode::Experimental(empty))
                ),
                "127.0.0.1:123 is unsynchronised (stratum 0)"
            );
        }
        assert_eq!(
            describe(
                server,
                Error::KissOfDeath(KissOfDeathCode::Experimental(*b"XFOO"))
            ),
            "127.0.0.1:123 sent a kiss-o'-death (XFOO)"
        );
        let v6: SocketAddr = "[::1]:123".parse().unwrap();
        assert_eq!(
            describe(v6, Error::Network),
            "no usable reply from [::1]:123 (network error)"
        );
        assert_eq!(
            describe(v6, Error::IncorrectOriginTimestamp),
            "invalid reply from [::1]:123: IncorrectOriginTimestamp"
        );
    }

    /// A one-reply NTP server on loopback: answers the first request with a
    /// reply carrying `leap`, `stratum` and `reference_id`, and the request's
    /// transmit time as its origin time (so sntpc accepts it as ours).
    async fn one_reply_server(leap: u8, stratum: u8, reference_id: [u8; 4]) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut request = [0u8; 128];
            let wait = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut request));
            let Ok(Ok((48, client))) = wait.await else {
                return;
            };
            let mut reply = [0u8; 48];
            reply[0] = (leap << 6) | (4 << 3) | 4; // version 4, server mode
            reply[1] = stratum;
            reply[2] = 6; // poll
            reply[3] = 0xec; // precision
            reply[12..16].copy_from_slice(&reference_id);
            // origin = the client's transmit; reference, receive and transmit
            // = the same instant, so the offset is small and sane.
            reply[24..32].copy_from_slice(&request[40..48]);
            for field in [16, 32, 40] {
                reply[field..field + 8].copy_from_slice(&request[40..48]);
            }
            let _ = socket.send_to(&reply, client).await;
        });
        address
    }

    async fn attempt_against(server: SocketAddr) -> Result<(), String> {
        let spec = NtpqSpec {
            server: server.to_string(),
            src_addr: "127.0.0.1".parse().unwrap(),
            tries: 1,
            offset_threshold: Duration::from_secs(1).into(),
            interval: Duration::from_millis(100).into(),
            timeout: Duration::from_secs(2).into(),
        };
        let labels = CheckLabels {
            service: "s".into(),
            check: "ntpq".into(),
        };
        let check = Ntpq::new(&spec, &labels).unwrap();
        tokio::time::timeout(Duration::from_secs(5), check.attempt())
            .await
            .expect("the attempt should end on the server's reply")
    }

    #[tokio::test]
    async fn replies_are_judged_end_to_end() {
        let synced = one_reply_server(0, 2, *b"GPS\0").await;
        assert_eq!(attempt_against(synced).await, Ok(()));

        let leap = one_reply_server(3, 2, *b"GPS\0").await;
        assert_eq!(
            attempt_against(leap).await,
            Err(format!("{leap} is unsynchronised (leap indicator 3)"))
        );

        let rate = one_reply_server(0, 0, *b"RATE").await;
        assert_eq!(
            attempt_against(rate).await,
            Err(format!("{rate} sent a kiss-o'-death (RATE)"))
        );

        let deny = one_reply_server(3, 0, *b"DENY").await;
        assert_eq!(
            attempt_against(deny).await,
            Err(format!("{deny} sent a kiss-o'-death (DENY)"))
        );

        // chrony before it synchronises: leap 3, stratum 0, no reference id.
        let chrony = one_reply_server(3, 0, [0; 4]).await;
        assert_eq!(
            attempt_against(chrony).await,
            Err(format!("{chrony} is unsynchronised (stratum 0)"))
        );
    }
}
