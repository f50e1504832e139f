//! `tls_certificate`: reads a certificate chain from a PEM file (`local`) or
//! from a TLS handshake (`remote`), picks its first end-entity certificate and
//! tests it: valid now and for `min_valid_for` more, with the expected subject
//! CN, SAN DNS names, SAN IP addresses and issuer CN.
//!
//! Reading the chain does I/O; everything after it ([`pick`],
//! [`Expectations::judge`]) is pure and takes "now" as an argument.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;
use x509_parser::x509::X509Name;

use super::{AttemptFuture, BuildError, Check, CheckLabels, error_chain};
use crate::config::model::TlsCertificateSpec;
use crate::config::split_host_port;

pub struct TlsCertificate {
    source: Source,
    expect: Expectations,
    labels: CheckLabels,
}

/// Where the chain comes from. `local` wins when both are configured.
enum Source {
    Local {
        path: String,
    },
    Remote {
        /// `host:port` as configured; the metric's `host` label.
        address: String,
        host: String,
        port: u16,
        server_name: ServerName<'static>,
        insecure: bool,
    },
}

/// What the tested certificate must satisfy, besides being valid now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Expectations {
    common_name: Option<String>,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    issuer: Option<String>,
    min_valid_for: Option<Duration>,
}

impl TlsCertificate {
    pub fn new(
        spec: &TlsCertificateSpec,
        labels: &CheckLabels,
    ) -> Result<TlsCertificate, BuildError> {
        let source = match (&spec.local, &spec.remote) {
            (Some(local), _) => Source::Local {
                path: local.path.clone(),
            },
            (None, Some(remote)) => {
                let (host, port) = split_host_port(&remote.host).ok_or_else(|| {
                    BuildError::Invalid(format!(
                        "remote.host: expected host:port, found \"{}\"",
                        remote.host
                    ))
                })?;
                let server_name = ServerName::try_from(host.as_str())
                    .map_err(|_| {
                        BuildError::Invalid(format!(
                            "remote.host: \"{host}\" is not a DNS name or IP address"
                        ))
                    })?
                    .to_owned();
                Source::Remote {
                    address: remote.host.clone(),
                    host,
                    port,
                    server_name,
                    insecure: remote.insecure,
                }
            }
            (None, None) => {
                return Err(BuildError::Invalid(
                    "needs `local.path` or `remote.host`".into(),
                ));
            }
        };
        Ok(TlsCertificate {
            source,
            expect: Expectations {
                common_name: spec.common_name.clone(),
                dns_names: spec.dns_names.clone(),
                ip_addresses: spec.ip_addresses.clone(),
                issuer: spec.issuer.clone(),
                min_valid_for: spec.min_valid_for.map(|d| d.get()),
            },
            labels: labels.clone(),
        })
    }

    /// The metric label naming the source: `path` or `host`.
    fn source_label(&self) -> (&'static str, &str) {
        match &self.source {
            Source::Local { path } => ("path", path),
            Source::Remote { address, .. } => ("host", address),
        }
    }

    /// Picks the tested certificate, exports its expiry and judges it.
    fn test_chain(&self, chain: &[CertificateDer<'_>], from: &str) -> Result<(), String> {
        let certs = parse_all(chain, from)?;
        let cert = pick(&certs)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.record_expiry(cert, now);
        self.expect.judge(cert, now.as_secs() as i64)
    }

    fn record_expiry(&self, cert: &X509Certificate<'_>, now: Duration) {
        let expires_in = cert.validity().not_after.timestamp() as f64 - now.as_secs_f64();
        let (label, value) = self.source_label();
        crate::metrics::certificate_expires_in(&self.labels, label, value, expires_in);
    }

    /// Exports the expiry of a chain that failed the handshake, if it has an
    /// end-entity certificate; the handshake error is what gets reported.
    fn record_expiry_only(&self, chain: &[CertificateDer<'_>]) {
        if let Ok(certs) = parse_all(chain, "")
            && let Ok(cert) = pick(&certs)
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.record_expiry(cert, now);
        }
    }

    async fn remote_chain(
        &self,
        address: &str,
        host: &str,
        port: u16,
        server_name: &ServerName<'static>,
        insecure: bool,
    ) -> Result<Vec<CertificateDer<'static>>, String> {
        crate::install_crypto_provider();
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let inner = if insecure {
            None
        } else {
            Some(system_verifier(&provider)?)
        };
        let verifier = Arc::new(CapturingVerifier {
            inner,
            provider: provider.clone(),
            seen: Mutex::new(Vec::new()),
        });
        // A fresh config per attempt: no session resumption, so every
        // attempt sees the certificate the server presents now.
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.resumption = Resumption::disabled();

        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        match TlsConnector::from(Arc::new(config))
            .connect(server_name.clone(), tcp)
            .await
        {
            Ok(mut tls) => {
                let chain = match tls.get_ref().1.peer_certificates() {
                    Some(chain) => chain.iter().map(|c| c.clone().into_owned()).collect(),
                    None => verifier.take_seen(),
                };
                // Best effort close_notify; the engine's timeout bounds it.
                let _ = tls.shutdown().await;
                Ok(chain)
            }
            Err(e) => {
                self.record_expiry_only(&verifier.take_seen());
                Err(format!(
                    "TLS handshake with {address} failed: {}",
                    error_chain(&e)
                ))
            }
        }
    }
}

impl Check for TlsCertificate {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            match &self.source {
                Source::Local { path } => {
                    let chain = read_pem(path).await?;
                    self.test_chain(&chain, path)
                }
                Source::Remote {
                    address,
                    host,
                    port,
                    server_name,
                    insecure,
                } => {
                    let chain = self
                        .remote_chain(address, host, *port, server_name, *insecure)
                        .await?;
                    if chain.is_empty() {
                        return Err(format!("{address} presented no certificate"));
                    }
                    self.test_chain(&chain, address)
                }
            }
        })
    }
}

/// Every CERTIFICATE block of a PEM file, in file order.
async fn read_pem(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    // Off the async workers: a file on a hung network mount must not stall them.
    let owned = path.to_string();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(owned))
        .await
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: bad PEM: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{path} has no CERTIFICATE block"));
    }
    Ok(chain)
}

/// Parses every certificate; an unparsable one fails the check, as in the
/// original (Go's parser refuses the whole file).
fn parse_all<'a>(
    chain: &'a [CertificateDer<'_>],
    from: &str,
) -> Result<Vec<X509Certificate<'a>>, String> {
    chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|e| {
                    format!(
                        "cannot parse certificate {} of {} from {from}: {e}",
                        index + 1,
                        chain.len()
                    )
                })
        })
        .collect()
}

/// The tested certificate: the first that is not a CA (basicConstraints
/// CA:TRUE), in file or chain order; or a lone self-issued certificate,
/// CA or not: `openssl req -x509` (OpenSSL 3) marks the self-signed
/// certificates it makes CA:TRUE, and such a certificate is the one served.
fn pick<'b, 'a>(certs: &'b [X509Certificate<'a>]) -> Result<&'b X509Certificate<'a>, String> {
    if let Some(cert) = certs.iter().find(|c| !c.is_ca()) {
        return Ok(cert);
    }
    if let [lone] = certs
        && lone.subject().as_raw() == lone.issuer().as_raw()
    {
        return Ok(lone);
    }
    Err(match certs.len() {
        0 => "no certificate to test".to_string(),
        1 => {
            "no end-entity certificate: the only certificate is a CA, issued by another".to_string()
        }
        n => format!("no end-entity certificate: all {n} certificates are CAs"),
    })
}

impl Expectations {
    /// The verdict on `cert` at `now` (Unix seconds). Validity first, then
    /// names, in the original's order; the first failure is the reason.
    fn judge(&self, cert: &X509Certificate<'_>, now: i64) -> Result<(), String> {
        let validity = cert.validity();
        let (not_before, not_after) = (validity.not_before, validity.not_after);
        let expires_in = not_after.timestamp() - now;
        if expires_in < 0 {
            return Err(format!(
                "{} expired {} ({} ago)",
                describe(cert),
                rfc3339(not_after),
                human(expires_in.unsigned_abs())
            ));
        }
        if not_before.timestamp() > now {
            return Err(format!(
                "{} is not valid until {} (in {})",
                describe(cert),
                rfc3339(not_before),
                human((not_before.timestamp() - now).unsigned_abs())
            ));
        }
        if let Some(min) = self.min_valid_for
            && (expires_in as u64) < min.as_secs()
        {
            return Err(format!(
                "{} expires in {} ({}), less than min_valid_for {}",
                describe(cert),
                human(expires_in as u64),
                rfc3339(not_after),
                human(min.as_secs())
            ));
        }
        if let Some(want) = &self.common_name {
            match common_name(cert.subject()) {
                Some(have) if have == want => {}
                Some(have) => {
                    return Err(format!(
                        "expected CN \"{want}\", certificate has \"{have}\""
                    ));
                }
                None => return Err(format!("expected CN \"{want}\", certificate has no CN")),
            }
        }
        if !self.dns_names.is_empty() || !self.ip_addresses.is_empty() {
            let (dns, ips) = subject_alt_names(cert)?;
            if let Some(missing) = self.dns_names.iter().find(|n| !dns.contains(&n.as_str())) {
                return Err(format!(
                    "SAN DNS names [{}] lack \"{missing}\"",
                    dns.join(", ")
                ));
            }
            if let Some(missing) = self
                .ip_addresses
                .iter()
                .find(|ip| !ips.contains(&ip.to_canonical()))
            {
                let seen: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
                return Err(format!(
                    "SAN IP addresses [{}] lack {missing}",
                    seen.join(", ")
                ));
            }
        }
        if let Some(want) = &self.issuer {
            match common_name(cert.issuer()) {
                Some(have) if have == want => {}
                Some(have) => {
                    return Err(format!(
                        "expected issuer CN \"{want}\", certificate's issuer CN is \"{have}\""
                    ));
                }
                None => {
                    return Err(format!(
                        "expected issuer CN \"{want}\", certificate's issuer has no CN"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The name's CN; the last one if there are several, as Go's `pkix.Name`.
fn common_name<'a>(name: &'a X509Name<'_>) -> Option<&'a str> {
    name.iter_common_name()
        .filter_map(|attr| attr.as_str().ok())
        .last()
}

/// The certificate as a reason names it: by CN, else by its whole subject.
fn describe(cert: &X509Certificate<'_>) -> String {
    match common_name(cert.subject()) {
        Some(cn) => format!("certificate CN=\"{cn}\""),
        None if cert.subject().iter().next().is_some() => {
            format!("certificate with subject \"{}\"", cert.subject())
        }
        None => "certificate with an empty subject".to_string(),
    }
}

/// SAN DNS names as written, and SAN IP addresses (IPv4-mapped IPv6 as IPv4).
fn subject_alt_names<'a>(
    cert: &'a X509Certificate<'_>,
) -> Result<(Vec<&'a str>, Vec<IpAddr>), String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("{}: unreadable subjectAltName: {e}", describe(cert)))?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(n) => dns.push(*n),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    ips.push(IpAddr::V4(Ipv4Addr::from(v4)));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    ips.push(IpAddr::V6(Ipv6Addr::from(v6)).to_canonical());
                }
            }
            _ => {}
        }
    }
    Ok((dns, ips))
}

/// `2026-01-01T00:00:00Z`.
fn rfc3339(time: ASN1Time) -> String {
    let t = time.to_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A span in its two largest units: `3d`, `2d 3h`, `5h 12m`, `42s`.
fn human(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let parts: Vec<(u64, &str)> = UNITS
        .iter()
        .scan(seconds, |left, &(size, unit)| {
            let n = *left / size;
            *left %= size;
            Some((n, unit))
        })
        .collect();
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return "0s".into();
    };
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The verifier for the system's roots, built once (loading the roots reads
/// the system's certificate store); a failure is retried on the next attempt.
fn system_verifier(provider: &Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, String> {
    static CACHE: Mutex<Option<Arc<dyn ServerCertVerifier>>> = Mutex::new(None);
    let mut cached = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(verifier) = cached.as_ref() {
        return Ok(verifier.clone());
    }
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(
        rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?,
    );
    *cached = Some(verifier.clone());
    Ok(verifier)
}

/// Keeps the chain the server presented, then verifies it with `inner`
/// (the system roots) or, when `insecure`, accepts any chain and name. The
/// handshake signature is checked either way.
#[derive(Debug)]
struct CapturingVerifier {
    inner: Option<Arc<dyn ServerCertVerifier>>,
    provider: Arc<CryptoProvider>,
    seen: Mutex<Vec<CertificateDer<'static>>>,
}

impl CapturingVerifier {
    fn take_seen(&self) -> Vec<CertificateDer<'static>> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(inner) => inner.verify_tls12_signature(message, cert, dss),
            None => rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match &self.inner {
            Some(inner) => inner.verify_tls13_signature(message, cert, dss),
            None => rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            ),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.inner {
            Some(inner) => inner.supported_verify_schemes(),
            None => self
                .provider
                .signature_verification_algorithms
                .supported_schemes(),
        }
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner
            .as_ref()
            .and_then(|inner| inner.root_hint_subjects())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
        KeyPair, date_time_ymd,
    };

    /// 2025-06-01T00:00:00Z, the "now" of these tests.
    const NOW: i64 = 1_748_736_000;

    fn params(cn: Option<&str>, sans: &[&str]) -> CertificateParams {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2026, 1, 1);
        p
    }

    fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut p = params(Some(cn), &[]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2030, 1, 1);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn signed(
        p: CertificateParams,
        issuer: &CertifiedIssuer<'static, KeyPair>,
    ) -> CertificateDer<'static> {
        p.signed_by(&KeyPair::generate().unwrap(), issuer)
            .unwrap()
            .der()
            .clone()
    }

    fn leaf() -> CertificateParams {
        params(
            Some("a.example"),
            &["a.example", "b.example", "192.0.2.7", "2001:db8::1"],
        )
    }

    fn judge(expect: &Expectations, der: &CertificateDer<'_>, now: i64) -> Result<(), String> {
        let certs = parse_all(std::slice::from_ref(der), "test").unwrap();
        expect.judge(pick(&certs)?, now)
    }

    #[test]
    fn picks_the_first_certificate_that_is_not_a_ca() {
        let root = ca("Root");
        let mut explicit = params(Some("explicit"), &[]);
        explicit.is_ca = IsCa::ExplicitNoCa;
        let chain = vec![
            root.der().clone(),
            signed(params(Some("first"), &[]), &root),
            signed(explicit, &root),
        ];
        let certs = parse_all(&chain, "test").unwrap();
        assert_eq!(common_name(pick(&certs).unwrap().subject()), Some("first"));

        let certs = parse_all(&chain[2..], "test").unwrap();
        assert_eq!(
            common_name(pick(&certs).unwrap().subject()),
            Some("explicit")
        );
    }

    #[test]
    fn all_cas_fail() {
        let chain = vec![ca("One").der().clone(), ca("Two").der().clone()];
        let certs = parse_all(&chain, "test").unwrap();
        assert_eq!(
            pick(&certs).err().unwrap(),
            "no end-entity certificate: all 2 certificates are CAs"
        );
        // A lone intermediate CA is not tested.
        let root = ca("Root");
        let mut intermediate = params(Some("Intermediate"), &[]);
        intermediate.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let chain = vec![signed(intermediate, &root)];
        let certs = parse_all(&chain, "test").unwrap();
        assert_eq!(
            pick(&certs).err().unwrap(),
            "no end-entity certificate: the only certificate is a CA, issued by another"
        );
    }

    /// `openssl req -x509` makes a self-signed CA:TRUE certificate; alone,
    /// it is the certificate to test.
    #[test]
    fn a_lone_self_signed_ca_is_tested() {
        let chain = vec![ca("self.example").der().clone()];
        let certs = parse_all(&chain, "test").unwrap();
        assert_eq!(
            common_name(pick(&certs).unwrap().subject()),
            Some("self.example")
        );
    }

    #[test]
    fn garbage_is_reported_with_its_position() {
        let chain = vec![ca("One").der().clone(), CertificateDer::from(vec![1, 2, 3])];
        let err = parse_all(&chain, "/etc/x.pem").err().unwrap();
        assert!(
            err.starts_with("cannot parse certificate 2 of 2 from /etc/x.pem: "),
            "{err}"
        );
    }

    #[test]
    fn validity_window() {
        let root = ca("Root");
        let der = signed(leaf(), &root);
        let none = Expectations::default();
        assert_eq!(judge(&none, &der, NOW), Ok(()));

        // 2026-01-04T00:00:00Z: three days after NotAfter.
        assert_eq!(
            judge(&none, &der, 1_767_484_800),
            Err(r#"certificate CN="a.example" expired 2026-01-01T00:00:00Z (3d ago)"#.into())
        );
        // 2024-12-30T21:00:00Z: one day three hours before NotBefore.
        assert_eq!(
            judge(&none, &der, 1_735_592_400),
            Err(
                r#"certificate CN="a.example" is not valid until 2025-01-01T00:00:00Z (in 1d 3h)"#
                    .into()
            )
        );
        // The boundaries themselves are inside the window.
        assert_eq!(judge(&none, &der, 1_735_689_600), Ok(()));
        assert_eq!(judge(&none, &der, 1_767_225_600), Ok(()));
    }

    #[test]
    fn min_valid_for() {
        let root = ca("Root");
        let der = signed(leaf(), &root);
        let expect = Expectations {
            min_valid_for: Some(Duration::from_secs(7 * 86_400)),
            ..Default::default()
        };
        assert_eq!(judge(&expect, &der, NOW), Ok(()));
        // 2025-12-29T21:00:00Z: 2d 3h before NotAfter.
        assert_eq!(
            judge(&expect, &der, 1_767_042_000),
            Err(r#"certificate CN="a.example" expires in 2d 3h (2026-01-01T00:00:00Z), less than min_valid_for 7d"#.into())
        );
    }

    #[test]
    fn subject_common_name() {
        let root = ca("Root");
        let der = signed(leaf(), &root);
        let want = |cn: &str| Expectations {
            common_name: Some(cn.into()),
            ..Default::default()
        };
        assert_eq!(judge(&want("a.example"), &der, NOW), Ok(()));
        assert_eq!(
            judge(&want("A.example"), &der, NOW),
            Err(r#"expected CN "A.example", certificate has "a.example""#.into())
        );
        let anonymous = signed(params(None, &["a.example"]), &root);
        assert_eq!(
            judge(&want("a.example"), &anonymous, NOW),
            Err(r#"expected CN "a.example", certificate has no CN"#.into())
        );
    }

    #[test]
    fn san_dns_names_and_ip_addresses() {
        let root = ca("Root");
        let der = signed(leaf(), &root);
        let want = |dns: &[&str], ips: &[&str]| Expectations {
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ..Default::default()
        };
        assert_eq!(
            judge(
                &want(&["b.example", "a.example"], &["2001:db8:0::1", "192.0.2.7"]),
                &der,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            judge(&want(&["a.example", "c.example"], &[]), &der, NOW),
            Err(r#"SAN DNS names [a.example, b.example] lack "c.example""#.into())
        );
        assert_eq!(
            judge(&want(&[], &["192.0.2.8"]), &der, NOW),
            Err("SAN IP addresses [192.0.2.7, 2001:db8::1] lack 192.0.2.8".into())
        );
        let bare = signed(params(Some("bare"), &[]), &root);
        assert_eq!(
            judge(&want(&["a.example"], &[]), &bare, NOW),
            Err(r#"SAN DNS names [] lack "a.example""#.into())
        );
    }

    #[test]
    fn issuer_common_name() {
        let root = ca("Root CA");
        let der = signed(leaf(), &root);
        let want = |cn: &str| Expectations {
            issuer: Some(cn.into()),
            ..Default::default()
        };
        assert_eq!(judge(&want("Root CA"), &der, NOW), Ok(()));
        assert_eq!(
            judge(&want("Other CA"), &der, NOW),
            Err(r#"expected issuer CN "Other CA", certificate's issuer CN is "Root CA""#.into())
        );
    }

    #[test]
    fn checks_run_in_the_original_order() {
        let root = ca("Root");
        let mut p = params(Some("x"), &[]);
        p.not_after = date_time_ymd(2025, 2, 1);
        let der = signed(p, &root);
        let everything = Expectations {
            common_name: Some("y".into()),
            dns_names: vec!["y".into()],
            issuer: Some("Z".into()),
            ..Default::default()
        };
        let err = judge(&everything, &der, NOW).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        let err = judge(&everything, &der, 1_737_000_000).unwrap_err();
        assert!(err.starts_with("expected CN"), "{err}");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(42), "42s");
        assert_eq!(human(90), "1m 30s");
        assert_eq!(human(3 * 86_400), "3d");
        assert_eq!(human(2 * 86_400 + 3 * 3_600 + 59), "2d 3h");
        assert_eq!(human(86_400 + 5 * 60), "1d");
    }

    #[tokio::test]
    async fn local_file_reports_missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let labels = CheckLabels {
            service: "s".into(),
            check: "c".into(),
        };
        let spec = |path: &str| TlsCertificateSpec {
            local: Some(crate::config::model::TlsLocal { path: path.into() }),
            remote: None,
            common_name: None,
            dns_names: vec![],
            ip_addresses: vec![],
            issuer: None,
            min_valid_for: None,
            timeout: None,
        };
        let missing = dir.path().join("missing.pem");
        let missing = missing.to_str().unwrap();
        let err = TlsCertificate::new(&spec(missing), &labels)
            .unwrap()
            .attempt()
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!("cannot read {missing}: ")),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let empty = empty.to_str().unwrap();
        assert_eq!(
            TlsCertificate::new(&spec(empty), &labels)
                .unwrap()
                .attempt()
                .await,
            Err(format!("{empty} has no CERTIFICATE block"))
        );

        let good = dir.path().join("good.pem");
        let root = ca("Root");
        let mut p = params(Some("now"), &[]);
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2100, 1, 1);
        let pem = p
            .signed_by(&KeyPair::generate().unwrap(), &root)
            .unwrap()
            .pem();
        std::fs::write(&good, format!("{}{pem}", root.pem())).unwrap();
        assert_eq!(
            TlsCertificate::new(&spec(good.to_str().unwrap()), &labels)
                .unwrap()
                .attempt()
                .await,
            Ok(())
        );
    }
}
