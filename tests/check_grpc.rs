//! `grpc_health` against a real gRPC health server (tonic-health, the
//! `grpc.health.v1.Health` implementation of the tonic project) on loopback:
//! through `anycastd check` for the reasons an operator sees, and in process
//! to count connections.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::stream;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use common::{check_rows, scratch};

/// Every attempt of every check here is bounded by this.
const TIMEOUT: &str = "2s";

/// A tonic health server on 127.0.0.1 with its own runtime; it stops when
/// dropped. `accepted` counts TCP connections.
struct GrpcServer {
    addr: SocketAddr,
    reporter: HealthReporter,
    accepted: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl GrpcServer {
    fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> GrpcServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = accepted.clone();
        runtime.spawn(async move {
            let server = tonic::transport::Server::builder();
            match tls {
                None => {
                    let incoming = stream::unfold(listener, move |listener| {
                        let counter = counter.clone();
                        async move {
                            let next = listener.accept().await.map(|(s, _)| s);
                            counter.fetch_add(1, Ordering::SeqCst);
                            Some((next, listener))
                        }
                    });
                    let _ = server.serve_with_incoming(service, incoming).await;
                }
                Some(acceptor) => {
                    // Handshakes one at a time; a failed one (a client that
                    // refused our certificate) is skipped.
                    let incoming = stream::unfold(listener, move |listener| {
                        let counter = counter.clone();
                        let acceptor = acceptor.clone();
                        async move {
                            loop {
                                let Ok((tcp, _)) = listener.accept().await else {
                                    continue;
                                };
                                counter.fetch_add(1, Ordering::SeqCst);
                                let handshake = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    acceptor.accept(tcp),
                                );
                                if let Ok(Ok(tls)) = handshake.await {
                                    return Some((Ok::<_, std::io::Error>(tls), listener));
                                }
                            }
                        }
                    });
                    let _ = server.serve_with_incoming(service, incoming).await;
                }
            }
        });
        GrpcServer {
            addr,
            reporter,
            accepted,
            runtime: Some(runtime),
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.as_ref().unwrap().block_on(future)
    }

    fn set(&self, service: &str, status: ServingStatus) {
        self.block_on(self.reporter.set_service_status(service, status));
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A config with one service per (name, spec), each with one grpc_health
/// check named after its service.
fn config(dir: &Path, checks: &[(&str, String)]) -> std::path::PathBuf {
    let mut out = String::from("announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n");
    for (name, spec) in checks {
        out.push_str(&format!(
            "  - name: {name}\n    check_interval: 1s\n    checks:\n      - {{kind: grpc_health, name: {name}, spec: {{{spec}, tries: 1, interval: 100ms, timeout: {TIMEOUT}}}}}\n"
        ));
    }
    let file = dir.join("grpc.yaml");
    std::fs::write(&file, out).unwrap();
    file
}

fn verdict(
    rows: &std::collections::BTreeMap<String, (String, String)>,
    name: &str,
) -> (String, String) {
    rows.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {name} in {rows:?}"))
}

#[test]
fn serving_passes_everything_else_fails_with_a_reason() {
    let dir = scratch();
    let server = GrpcServer::start(None);
    let a = server.addr;
    server.set("db", ServingStatus::Serving);
    server.set("cache", ServingStatus::NotServing);
    let file = config(
        dir.path(),
        &[
            ("overall", format!("address: \"{a}\"")),
            ("overall_empty", format!("address: \"{a}\", service: \"\"")),
            ("db", format!("address: \"{a}\", service: db")),
            ("cache", format!("address: \"{a}\", service: cache")),
            ("unknown", format!("address: \"{a}\", service: nosuch")),
            (
                "byname",
                format!("address: \"localhost:{}\", service: db", a.port()),
            ),
        ],
    );
    let (code, rows, text) = check_rows(&file);
    assert_eq!(code, 1, "{text}");
    for name in ["overall", "overall_empty", "db", "byname"] {
        assert_eq!(
            verdict(&rows, name),
            ("pass".into(), String::new()),
            "{name}: {text}"
        );
    }
    assert_eq!(
        verdict(&rows, "cache"),
        ("fail".into(), format!("{a} service \"cache\": NOT_SERVING")),
        "{text}"
    );
    let (result, reason) = verdict(&rows, "unknown");
    assert_eq!(result, "fail", "{text}");
    assert!(
        reason.starts_with(&format!("{a} service \"nosuch\": grpc-status 5 NOT_FOUND")),
        "{reason}"
    );

    // The server turns: the overall service goes NOT_SERVING, db UNKNOWN,
    // cache SERVING.
    server.set("", ServingStatus::NotServing);
    server.set("db", ServingStatus::Unknown);
    server.set("cache", ServingStatus::Serving);
    let (code, rows, text) = check_rows(&file);
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        verdict(&rows, "overall"),
        ("fail".into(), format!("{a}: NOT_SERVING")),
        "{text}"
    );
    assert_eq!(
        verdict(&rows, "db"),
        ("fail".into(), format!("{a} service \"db\": UNKNOWN")),
        "{text}"
    );
    assert_eq!(
        verdict(&rows, "cache"),
        ("pass".into(), String::new()),
        "{text}"
    );

    // Server gone: nothing listens on its port any more.
    drop(server);
    let (code, rows, text) = check_rows(&file);
    assert_eq!(code, 1, "{text}");
    let (result, reason) = verdict(&rows, "cache");
    assert_eq!(result, "fail", "{text}");
    assert!(
        reason.starts_with(&format!("{a} service \"cache\": cannot connect to {a}: ")),
        "{reason}"
    );
}

#[test]
fn a_server_that_is_not_grpc_fails() {
    let dir = scratch();
    // An HTTP/1 server that answers everything with 404 and closes: HTTP/2
    // prior knowledge gets no SETTINGS back.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let file = config(dir.path(), &[("web", format!("address: \"{a}\""))]);
    let (code, rows, text) = check_rows(&file);
    assert_eq!(code, 1, "{text}");
    let (result, reason) = verdict(&rows, "web");
    assert_eq!(result, "fail", "{text}");
    assert!(reason.starts_with(&format!("{a}: ")), "{reason}");
}

#[test]
fn every_attempt_opens_a_new_connection() {
    let server = GrpcServer::start(None);
    let text = format!(
        "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\nservices:\n  - name: s\n    check_interval: 1s\n    checks:\n      - {{kind: grpc_health, spec: {{address: \"{}\", tries: 1, interval: 100ms, timeout: {TIMEOUT}}}}}\n",
        server.addr
    );
    let config = anycastd::config::load_str(
        &text,
        anycastd::config::Format::Yaml,
        Path::new("grpc.yaml"),
        None,
    )
    .unwrap();
    let check = anycastd::checks::build(&config.services[0].checks[0], "s").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for attempt in 1..=3 {
        let verdict = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), check.attempt()).await })
            .expect("attempt within 5 s");
        assert_eq!(verdict, Ok(()));
        assert_eq!(server.accepted.load(Ordering::SeqCst), attempt);
    }
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca() -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, "gRPC test CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A TLS acceptor for a leaf signed by `issuer` naming grpc.test and
/// 127.0.0.1, offering ALPN h2 as gRPC servers do.
fn acceptor(issuer: &Ca) -> tokio_rustls::TlsAcceptor {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["grpc.test".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf = params.signed_by(&key, issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[test]
fn tls_with_a_ca_file_and_server_name() {
    let dir = scratch();
    let issuer = ca();
    let server = GrpcServer::start(Some(acceptor(&issuer)));
    server.set("db", ServingStatus::NotServing);
    let a = server.addr;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, issuer.pem()).unwrap();
    let ca_file = ca_file.to_str().unwrap();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, ca().pem()).unwrap();
    let other = other.to_str().unwrap();
    let file = config(
        dir.path(),
        &[
            (
                "by_ip",
                format!("address: \"{a}\", tls: true, ca_file: \"{ca_file}\""),
            ),
            (
                "by_name",
                format!(
                    "address: \"{a}\", tls: true, server_name: grpc.test, ca_file: \"{ca_file}\""
                ),
            ),
            (
                "db",
                format!("address: \"{a}\", service: db, tls: true, ca_file: \"{ca_file}\""),
            ),
            (
                "wrong_name",
                format!(
                    "address: \"{a}\", tls: true, server_name: other.test, ca_file: \"{ca_file}\""
                ),
            ),
            (
                "wrong_ca",
                format!("address: \"{a}\", tls: true, ca_file: \"{other}\""),
            ),
            ("system_roots", format!("address: \"{a}\", tls: true")),
            ("cleartext", format!("address: \"{a}\"")),
        ],
    );
    let (code, rows, text) = check_rows(&file);
    assert_eq!(code, 1, "{text}");
    for name in ["by_ip", "by_name"] {
        assert_eq!(
            verdict(&rows, name),
            ("pass".into(), String::new()),
            "{name}: {text}"
        );
    }
    assert_eq!(
        verdict(&rows, "db"),
        ("fail".into(), format!("{a} service \"db\": NOT_SERVING")),
        "{text}"
    );
    for name in ["wrong_name", "wrong_ca", "system_roots"] {
        let (result, reason) = verdict(&rows, name);
        assert_eq!(result, "fail", "{name}: {text}");
        assert!(
            reason.starts_with(&format!(
                "{a}: TLS handshake failed: invalid peer certificate"
            )),
            "{name}: {reason}"
        );
    }
    let (result, reason) = verdict(&rows, "cleartext");
    assert_eq!(result, "fail", "{text}");
    assert!(reason.starts_with(&format!("{a}: ")), "{reason}");
}
