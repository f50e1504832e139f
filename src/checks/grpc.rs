//! `grpc_health`: one `grpc.health.v1.Health/Check` call per attempt, over a
//! fresh HTTP/2 connection (cleartext with prior knowledge, or TLS with ALPN
//! `h2`). SERVING passes; any other status, a non-zero `grpc-status` or a
//! transport error fails.
//!
//! The gRPC framing and the two protobuf messages are encoded and decoded by
//! hand in [`codec`], which is pure and bounded; the attempt only moves bytes
//! through hyper's HTTP/2 client. See docs/dependencies.md for why this is
//! not tonic.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue, TE, USER_AGENT};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{AttemptFuture, BuildError, Check, error_chain};
use crate::config::model::GrpcHealthSpec;
use crate::config::split_host_port;

/// The standard health method (grpc/grpc doc/health-checking.md).
const PATH: &str = "/grpc.health.v1.Health/Check";
const AGENT: &str = "anycastd (grpc_health checker)";
/// A HealthCheckResponse is a few bytes; anything past this is refused
/// unread. Also bounds the response header block.
pub const MAX_RESPONSE: usize = 16 * 1024;

/// gRPC framing and the health messages (`grpc.health.v1`), pure.
pub mod codec {
    /// `HealthCheckResponse.ServingStatus`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ServingStatus {
        Unknown,
        Serving,
        NotServing,
        /// Only sent by `Watch`, but a server may answer `Check` with it.
        ServiceUnknown,
        Other(u64),
    }

    impl std::fmt::Display for ServingStatus {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                ServingStatus::Unknown => f.write_str("UNKNOWN"),
                ServingStatus::Serving => f.write_str("SERVING"),
                ServingStatus::NotServing => f.write_str("NOT_SERVING"),
                ServingStatus::ServiceUnknown => f.write_str("SERVICE_UNKNOWN"),
                ServingStatus::Other(n) => write!(f, "status {n}"),
            }
        }
    }

    impl From<u64> for ServingStatus {
        fn from(value: u64) -> Self {
            match value {
                0 => ServingStatus::Unknown,
                1 => ServingStatus::Serving,
                2 => ServingStatus::NotServing,
                3 => ServingStatus::ServiceUnknown,
                n => ServingStatus::Other(n),
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum DecodeError {
        #[error("the response has no message")]
        Empty,
        #[error("the message is cut short ({0} bytes)")]
        Truncated(usize),
        #[error("the message is compressed, but none was asked for")]
        Compressed,
        #[error("bad message frame flag {0:#04x}")]
        BadFlag(u8),
        #[error("{0} bytes follow the message")]
        Trailing(usize),
        #[error("bad protobuf: {0}")]
        Protobuf(&'static str),
    }

    /// A gRPC length-prefixed message holding a `HealthCheckRequest`
    /// (`string service = 1;`). An empty name is the server's overall health
    /// and, as proto3 omits default values, encodes as an empty message.
    pub fn encode_request(service: &str) -> Vec<u8> {
        let mut message = Vec::with_capacity(service.len() + 11);
        if !service.is_empty() {
            message.push(0x0a); // field 1, wire type 2 (length-delimited)
            put_varint(&mut message, service.len() as u64);
            message.extend_from_slice(service.as_bytes());
        }
        let mut out = Vec::with_capacity(message.len() + 5);
        out.push(0); // not compressed
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(&message);
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// Reads a varint from the front of `bytes`: (value, bytes used).
    fn varint(bytes: &[u8]) -> Result<(u64, usize), DecodeError> {
        let mut value: u64 = 0;
        for (index, byte) in bytes.iter().enumerate().take(10) {
            let low = u64::from(byte & 0x7f);
            if index == 9 && low > 1 {
                return Err(DecodeError::Protobuf("varint overflows 64 bits"));
            }
            value |= low << (7 * index);
            if byte & 0x80 == 0 {
                return Ok((value, index + 1));
            }
        }
        if bytes.len() >= 10 {
            Err(DecodeError::Protobuf("varint longer than 10 bytes"))
        } else {
            Err(DecodeError::Protobuf("varint cut short"))
        }
    }

    /// The one length-prefixed message of a unary response body.
    pub fn unframe(body: &[u8]) -> Result<&[u8], DecodeError> {
        if body.is_empty() {
            return Err(DecodeError::Empty);
        }
        if body.len() < 5 {
            return Err(DecodeError::Truncated(body.len()));
        }
        match body[0] {
            0 => {}
            1 => return Err(DecodeError::Compressed),
            flag => return Err(DecodeError::BadFlag(flag)),
        }
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let rest = &body[5..];
        if rest.len() < length {
            return Err(DecodeError::Truncated(body.len()));
        }
        if rest.len() > length {
            return Err(DecodeError::Trailing(rest.len() - length));
        }
        Ok(rest)
    }

    /// A `HealthCheckResponse` (`ServingStatus status = 1;`). Unknown fields
    /// are skipped; a missing status is UNKNOWN (proto3's default); a
    /// repeated one counts last, as protobuf says.
    pub fn decode_response_message(mut message: &[u8]) -> Result<ServingStatus, DecodeError> {
        let mut status = 0u64;
        while !message.is_empty() {
            let (key, used) = varint(message)?;
            message = &message[used..];
            let field = key >> 3;
            if field == 0 {
                return Err(DecodeError::Protobuf("field number 0"));
            }
            match key & 7 {
                0 => {
                    let (value, used) = varint(message)?;
                    message = &message[used..];
                    if field == 1 {
                        status = value;
                    }
                }
                1 => message = skip(message, 8)?,
                2 => {
                    let (length, used) = varint(message)?;
                    message = &message[used..];
                    if field == 1 {
                        return Err(DecodeError::Protobuf("status is not a varint"));
                    }
                    let length = usize::try_from(length)
                        .map_err(|_| DecodeError::Protobuf("length out of range"))?;
                    message = skip(message, length)?;
                }
                5 => message = skip(message, 4)?,
                _ => return Err(DecodeError::Protobuf("unsupported wire type")),
            }
        }
        Ok(ServingStatus::from(status))
    }

    fn skip(bytes: &[u8], length: usize) -> Result<&[u8], DecodeError> {
        bytes
            .get(length..)
            .ok_or(DecodeError::Protobuf("field runs past the message"))
    }

    /// A whole unary response body: frame, then message.
    pub fn decode_response(body: &[u8]) -> Result<ServingStatus, DecodeError> {
        decode_response_message(unframe(body)?)
    }

    /// The canonical name of a gRPC status code.
    pub fn status_name(code: u32) -> &'static str {
        match code {
            0 => "OK",
            1 => "CANCELLED",
            2 => "UNKNOWN",
            3 => "INVALID_ARGUMENT",
            4 => "DEADLINE_EXCEEDED",
            5 => "NOT_FOUND",
            6 => "ALREADY_EXISTS",
            7 => "PERMISSION_DENIED",
            8 => "RESOURCE_EXHAUSTED",
            9 => "FAILED_PRECONDITION",
            10 => "ABORTED",
            11 => "OUT_OF_RANGE",
            12 => "UNIMPLEMENTED",
            13 => "INTERNAL",
            14 => "UNAVAILABLE",
            15 => "DATA_LOSS",
            16 => "UNAUTHENTICATED",
            _ => "unknown code",
        }
    }

    /// `grpc-message` is percent-encoded; decoded lossily, on one line, and
    /// at most 200 characters long.
    pub fn message_text(raw: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(raw.len());
        let mut index = 0;
        while index < raw.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if raw[index] == b'%'
                && let (Some(h), Some(l)) = (
                    raw.get(index + 1).and_then(|b| hex(*b)),
                    raw.get(index + 2).and_then(|b| hex(*b)),
                )
            {
                bytes.push((h * 16 + l) as u8);
                index += 3;
                continue;
            }
            bytes.push(raw[index]);
            index += 1;
        }
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        match text.char_indices().nth(200) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.to_string(),
        }
    }

    /// The verdict on a finished call: HTTP status, the response headers'
    /// `content-type`, `grpc-status` and `grpc-message` (a trailers-only
    /// response carries them there), the trailers' and the body.
    pub struct Response<'a> {
        pub http_status: u16,
        pub headers: Status<'a>,
        pub trailers: Status<'a>,
        pub body: &'a [u8],
    }

    /// The gRPC status fields of a header block, as received.
    #[derive(Debug, Default, Clone, Copy)]
    pub struct Status<'a> {
        pub code: Option<&'a [u8]>,
        pub message: Option<&'a [u8]>,
    }

    /// SERVING is `Ok`; anything else is the reason, in one line.
    pub fn judge(response: &Response<'_>) -> Result<(), String> {
        if response.http_status != 200 {
            return Err(format!(
                "HTTP status {} (not a gRPC server?)",
                response.http_status
            ));
        }
        let status = if response.trailers.code.is_some() {
            response.trailers
        } else {
            response.headers
        };
        let Some(code) = status.code else {
            return Err("the response has no grpc-status".into());
        };
        let code: u32 = std::str::from_utf8(code)
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .ok_or_else(|| format!("bad grpc-status \"{}\"", message_text(code)))?;
        if code != 0 {
            let message = status.message.map(message_text).unwrap_or_default();
            let mut reason = format!("grpc-status {code} {}", status_name(code));
            if !message.is_empty() {
                reason.push_str(": ");
                reason.push_str(&message);
            }
            return Err(reason);
        }
        match decode_response(response.body).map_err(|e| e.to_string())? {
            ServingStatus::Serving => Ok(()),
            other => Err(other.to_string()),
        }
    }
}

pub struct GrpcHealth {
    /// As configured, for reasons and `:authority`.
    address: String,
    host: String,
    port: u16,
    service: String,
    /// TLS: the client setup and the name to verify.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The request body, the same for every attempt.
    request: Bytes,
    /// Sent as `grpc-timeout` so the server gives up when we do.
    timeout: Duration,
}

impl GrpcHealth {
    pub fn new(spec: &GrpcHealthSpec) -> Result<GrpcHealth, BuildError> {
        let (host, port) = split_host_port(&spec.address).ok_or_else(|| {
            BuildError::Invalid(format!("address \"{}\": expected host:port", spec.address))
        })?;
        let tls = if spec.tls {
            let name = spec.server_name.clone().unwrap_or_else(|| host.clone());
            let server_name = ServerName::try_from(name.clone())
                .map_err(|e| BuildError::Invalid(format!("server_name \"{name}\": {e}")))?;
            let connector = TlsConnector::from(Arc::new(client_config(spec.ca_file.as_deref())?));
            Some((connector, server_name))
        } else {
            None
        };
        Ok(GrpcHealth {
            address: spec.address.clone(),
            host,
            port,
            service: spec.service.clone().unwrap_or_default(),
            tls,
            request: Bytes::from(codec::encode_request(
                spec.service.as_deref().unwrap_or_default(),
            )),
            timeout: spec.timeout.get(),
        })
    }

    /// Who was asked, for reasons: the address, and the service if any.
    fn describe(&self) -> String {
        if self.service.is_empty() {
            self.address.clone()
        } else {
            format!("{} service \"{}\"", self.address, self.service)
        }
    }

    async fn call(&self) -> Result<(), String> {
        let target = super::resolve(&self.host, self.port, None).await?;
        let tcp = TcpStream::connect(target)
            .await
            .map_err(|e| format!("cannot connect to {target}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(Box::new(tcp), "http").await,
            Some((connector, server_name)) => {
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {}", error_chain(&e)))?;
                self.exchange(Box::new(tls), "https").await
            }
        }
    }

    /// One HTTP/2 connection, one request; the connection is driven here,
    /// not spawned, so dropping the attempt closes it. The stream is boxed
    /// so hyper's HTTP/2 client is compiled once, not once per stream type.
    async fn exchange(&self, stream: Box<dyn Stream>, scheme: &str) -> Result<(), String> {
        let (mut sender, connection) =
            hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .max_header_list_size(MAX_RESPONSE as u32)
                .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP/2 handshake failed: {}", error_chain(&e)))?;
        let request = Request::post(format!("{scheme}://{}{PATH}", self.address))
            .header(CONTENT_TYPE, "application/grpc")
            .header(TE, "trailers")
            .header(USER_AGENT, AGENT)
            .header("grpc-timeout", grpc_timeout(self.timeout))
            .body(Full::new(self.request.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let call = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
            let (parts, mut body) = response.into_parts();
            let mut data: Vec<u8> = Vec::new();
            let mut trailers: Option<HeaderMap> = None;
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|e| format!("reading the response: {}", error_chain(&e)))?;
                match frame.into_data() {
                    Ok(chunk) => {
                        if data.len() + chunk.len() > MAX_RESPONSE {
                            return Err(format!(
                                "the response is larger than {MAX_RESPONSE} bytes"
                            ));
                        }
                        data.extend_from_slice(&chunk);
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            trailers = Some(t);
                        }
                    }
                }
            }
            let empty = HeaderMap::new();
            let trailers = trailers.as_ref().unwrap_or(&empty);
            codec::judge(&codec::Response {
                http_status: parts.status.as_u16(),
                headers: status_of(&parts.headers),
                trailers: status_of(trailers),
                body: &data,
            })
        };
        tokio::pin!(connection);
        tokio::select! {
            verdict = call => verdict,
            ended = &mut connection => Err(match ended {
                Ok(()) => "the server closed the connection".to_string(),
                Err(e) => format!("connection failed: {}", error_chain(&e)),
            }),
        }
    }
}

/// A TCP or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

fn status_of(headers: &HeaderMap) -> codec::Status<'_> {
    codec::Status {
        code: headers.get("grpc-status").map(HeaderValue::as_bytes),
        message: headers.get("grpc-message").map(HeaderValue::as_bytes),
    }
}

/// `grpc-timeout`: at most 8 digits and a unit.
fn grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_millis().max(1);
    if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

/// A fresh handshake for every attempt (no resumption), ALPN `h2`, and
/// either the system roots or only the certificates of `ca_file`.
fn client_config(ca_file: Option<&str>) -> Result<ClientConfig, BuildError> {
    crate::install_crypto_provider();
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Invalid(format!("cannot set up TLS: {e}")))?;
    let mut config = match ca_file {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| BuildError::Invalid(format!("ca_file {path}: {e}")))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert =
                    cert.map_err(|e| BuildError::Invalid(format!("ca_file {path}: bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| BuildError::Invalid(format!("ca_file {path}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(BuildError::Invalid(format!(
                    "ca_file {path} has no CERTIFICATE block"
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| {
                BuildError::Invalid(format!("cannot load the system's root certificates: {e}"))
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

impl Check for GrpcHealth {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            self.call()
                .await
                .map_err(|reason| format!("{}: {reason}", self.describe()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::codec::*;
    use super::*;

    #[test]
    fn encodes_requests() {
        assert_eq!(encode_request(""), [0, 0, 0, 0, 0]);
        assert_eq!(encode_request("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        let long = "x".repeat(300);
        let encoded = encode_request(&long);
        // 300 = 0xac 0x02 as a varint
        assert_eq!(&encoded[..8], &[0, 0, 0, 1, 47, 0x0a, 0xac, 0x02]);
        assert_eq!(encoded.len(), 5 + 303);
    }

    #[test]
    fn decodes_statuses() {
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 2, 8, 1]),
            Ok(ServingStatus::Serving)
        );
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 2, 8, 2]),
            Ok(ServingStatus::NotServing)
        );
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 2, 8, 3]),
            Ok(ServingStatus::ServiceUnknown)
        );
        // proto3 leaves the default (UNKNOWN = 0) out
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 0]),
            Ok(ServingStatus::Unknown)
        );
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 3, 8, 0x96, 1]),
            Ok(ServingStatus::Other(150))
        );
        // unknown fields of every wire type are skipped; the last status counts
        let message = [
            8, 2, // status NOT_SERVING
            0x10, 0xff, 0x01, // field 2 varint
            0x19, 1, 2, 3, 4, 5, 6, 7, 8, // field 3 fixed64
            0x22, 2, b'h', b'i', // field 4 bytes
            0x2d, 1, 2, 3, 4, // field 5 fixed32
            8, 1, // status SERVING
        ];
        let mut body = vec![0, 0, 0, 0, message.len() as u8];
        body.extend_from_slice(&message);
        assert_eq!(decode_response(&body), Ok(ServingStatus::Serving));
    }

    #[test]
    fn refuses_malformed_responses() {
        use DecodeError::*;
        assert_eq!(decode_response(&[]), Err(Empty));
        assert_eq!(decode_response(&[0, 0, 0]), Err(Truncated(3)));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 8]), Err(Truncated(6)));
        assert_eq!(decode_response(&[1, 0, 0, 0, 2, 8, 1]), Err(Compressed));
        assert_eq!(decode_response(&[7, 0, 0, 0, 2, 8, 1]), Err(BadFlag(7)));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 8, 1, 0]), Err(Trailing(1)));
        // a length far beyond the body, as a hostile server might claim
        assert_eq!(
            decode_response(&[0, 0xff, 0xff, 0xff, 0xff, 8, 1]),
            Err(Truncated(7))
        );
        let bad = |message: &[u8]| {
            let mut body = vec![0, 0, 0, 0, message.len() as u8];
            body.extend_from_slice(message);
            decode_response(&body)
        };
        assert!(matches!(bad(&[8]), Err(Protobuf(_)))); // value missing
        assert!(matches!(bad(&[8, 0x80]), Err(Protobuf(_)))); // varint cut short
        assert!(matches!(
            bad(&[
                8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]),
            Err(Protobuf(_))
        )); // > 64 bits
        assert!(matches!(
            bad(&[
                8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1
            ]),
            Err(Protobuf(_))
        )); // 11 bytes
        assert!(matches!(bad(&[0, 1]), Err(Protobuf(_)))); // field 0
        assert!(matches!(bad(&[0x0a, 1, 1]), Err(Protobuf(_)))); // status as bytes
        assert!(matches!(bad(&[0x12, 5, 1]), Err(Protobuf(_)))); // bytes past the end
        assert!(matches!(
            bad(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(Protobuf(_))
        ));
        assert!(matches!(bad(&[0x19, 1, 2]), Err(Protobuf(_)))); // fixed64 short
        assert!(matches!(bad(&[0x1b]), Err(Protobuf(_)))); // group start
        assert!(matches!(bad(&[0x1e]), Err(Protobuf(_)))); // wire type 6
        // the largest 64-bit varint is fine
        assert_eq!(
            bad(&[
                8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Ok(ServingStatus::Other(u64::MAX))
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // a cheap stand-in for the fuzz target: every 3-byte message
        for a in 0..=255u8 {
            for b in [0u8, 1, 2, 8, 0x0a, 0x7f, 0x80, 0xff] {
                for c in [0u8, 1, 0x80, 0xff] {
                    let _ = decode_response(&[0, 0, 0, 0, 3, a, b, c]);
                }
            }
        }
    }

    fn response<'a>(
        http_status: u16,
        headers: Status<'a>,
        trailers: Status<'a>,
        body: &'a [u8],
    ) -> Response<'a> {
        Response {
            http_status,
            headers,
            trailers,
            body,
        }
    }

    fn ok() -> Status<'static> {
        Status {
            code: Some(b"0"),
            message: None,
        }
    }

    #[test]
    fn judges_calls() {
        let none = Status::default();
        let serving: &[u8] = &[0, 0, 0, 0, 2, 8, 1];
        let not_serving: &[u8] = &[0, 0, 0, 0, 2, 8, 2];
        assert_eq!(judge(&response(200, none, ok(), serving)), Ok(()));
        assert_eq!(
            judge(&response(200, none, ok(), not_serving)),
            Err("NOT_SERVING".into())
        );
        assert_eq!(
            judge(&response(200, none, ok(), &[0, 0, 0, 0, 0])),
            Err("UNKNOWN".into())
        );
        assert_eq!(
            judge(&response(200, none, ok(), &[])),
            Err("the response has no message".into())
        );
        // trailers-only: the status is in the headers
        let not_found = Status {
            code: Some(b"5"),
            message: Some(b"service%20not%20registered%0A"),
        };
        assert_eq!(
            judge(&response(200, not_found, none, &[])),
            Err("grpc-status 5 NOT_FOUND: service not registered".into())
        );
        assert_eq!(
            judge(&response(
                200,
                none,
                Status {
                    code: Some(b"12"),
                    message: None
                },
                &[]
            )),
            Err("grpc-status 12 UNIMPLEMENTED".into())
        );
        assert_eq!(
            judge(&response(200, none, none, serving)),
            Err("the response has no grpc-status".into())
        );
        assert_eq!(
            judge(&response(
                200,
                none,
                Status {
                    code: Some(b"zero"),
                    message: None
                },
                serving
            )),
            Err("bad grpc-status \"zero\"".into())
        );
        assert_eq!(
            judge(&response(404, none, none, &[])),
            Err("HTTP status 404 (not a gRPC server?)".into())
        );
    }

    #[test]
    fn messages_are_decoded_on_one_short_line() {
        assert_eq!(message_text(b"a%20b%zz%4"), "a b%zz%4");
        assert_eq!(message_text(b"line%0D%0Anext"), "line  next");
        assert_eq!(message_text(b"caf%C3%A9"), "café");
        let long = message_text("x".repeat(500).as_bytes());
        assert_eq!(long.chars().count(), 201);
    }

    #[test]
    fn grpc_timeout_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_secs(2)), "2000m");
        assert_eq!(grpc_timeout(Duration::ZERO), "1m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }
}
