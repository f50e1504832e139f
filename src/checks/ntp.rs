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
        sntpc::Error::KissOfDeath(code) => {
            format!(
                "{server} sent a kiss-o'-death ({})",
                format!("{code:?}").to_ascii_uppercase()
            )
        }
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
}
