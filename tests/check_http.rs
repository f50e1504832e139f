//! `http_2xx` end to end against HTTP/1.1 servers written here, on
//! loopback: fresh connection per attempt by default (a listener that stops
//! accepting fails the check while an old keep-alive connection still
//! works), `keepalive: true`, `expect_status`, `expect_body(_regex)`,
//! https with `server_name` + `ca_file` (certificates made here with rcgen),
//! and HTTP/2 over TLS against an h2-only hyper server.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anycastd::checks::{self, Check};
use anycastd::config::{self, Format};
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the server answers to every request.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        body: body.as_bytes().to_vec(),
    }
}

/// A threaded HTTP/1.1 server on 127.0.0.1 that counts the connections it
/// accepts, keeps each alive unless the client asks to close, and records
/// every request head and (for TLS) the SNI name and handshake kind.
struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    tls_seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Server {
    fn start(reply: Reply, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let tls_seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let acceptor = {
            let (accepted, heads, tls_seen, stop, open) = (
                accepted.clone(),
                heads.clone(),
                tls_seen.clone(),
                stop.clone(),
                open.clone(),
            );
            thread::spawn(move || {
                // The listener lives in this thread: stopping drops it, so
                // new connections are refused.
                while !stop.load(Ordering::SeqCst) {
                    let stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    open.lock().unwrap().push(stream.try_clone().unwrap());
                    let (reply, heads, tls_seen, tls) =
                        (reply.clone(), heads.clone(), tls_seen.clone(), tls.clone());
                    thread::spawn(move || match tls {
                        None => serve(stream, &reply, &heads),
                        Some(config) => {
                            let conn = rustls::ServerConnection::new(config).unwrap();
                            let mut tls = rustls::StreamOwned::new(conn, stream);
                            serve(&mut tls, &reply, &heads);
                            tls_seen.lock().unwrap().push(format!(
                                "sni={:?} kind={:?}",
                                tls.conn.server_name(),
                                tls.conn.handshake_kind()
                            ));
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                        }
                    });
                }
            })
        };
        Server {
            addr,
            accepted,
            heads,
            tls_seen,
            stop,
            acceptor: Some(acceptor),
            open,
        }
    }

    /// Stops accepting: the listener is closed; open connections go on.
    fn stop_accepting(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
            assert!(Instant::now() < deadline, "listener still accepts");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/health", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // Ends the connection threads' reads at once.
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Answers requests on one connection until the client closes, asks to
/// close, or stays silent for the read timeout.
fn serve(mut stream: impl Read + Write, reply: &Reply, heads: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let close = head.contains("\r\nconnection: close\r\n");
        heads.lock().unwrap().push(head);
        let mut response = format!(
            "HTTP/1.1 {} Whatever\r\ncontent-length: {}\r\n{}\r\n",
            reply.status,
            reply.body.len(),
            if close { "connection: close\r\n" } else { "" }
        )
        .into_bytes();
        response.extend_from_slice(&reply.body);
        if stream.write_all(&response).is_err() || stream.flush().is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

/// Builds the one check a config with `spec` (YAML flow-map body) holds.
fn http_check(spec: &str) -> Box<dyn Check> {
    let text = format!(
        "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\nservices:\n  - name: s\n    check_interval: 1s\n    checks:\n      - kind: http_2xx\n        spec: {{method: GET, tries: 1, interval: 100ms, timeout: 2s, {spec}}}\n"
    );
    let config = config::load_str(&text, Format::Yaml, Path::new("test.yaml"), None)
        .unwrap_or_else(|e| panic!("config rejected: {e}"));
    checks::build(&config.services[0].checks[0], "s").expect("check builds")
}

/// One attempt, bounded.
async fn attempt(check: &dyn Check) -> Result<(), String> {
    tokio::time::timeout(Duration::from_secs(5), check.attempt())
        .await
        .unwrap_or_else(|_| Err("attempt timed out".into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_listener_fails_fresh_check_but_not_keepalive() {
    let mut server = Server::start(reply(200, "ok"), None);
    let url = server.url("http");
    let fresh = http_check(&format!("url: \"{url}\""));
    let pooled = http_check(&format!("url: \"{url}\", keepalive: true"));

    attempt(&*pooled).await.expect("keepalive check passes");
    attempt(&*fresh).await.expect("fresh check passes");
    assert_eq!(server.accepted(), 2);

    // The listener goes away; the pooled connection is still served.
    // (Blocking here is brief and bounded; the runtime has another worker.)
    server.stop_accepting();
    for _ in 0..3 {
        attempt(&*pooled)
            .await
            .expect("keepalive reuses the old connection and passes");
        let reason = attempt(&*fresh).await.expect_err("fresh check must fail");
        assert!(
            reason.starts_with(&format!("GET {url}: ")) && reason.contains("refused"),
            "{reason}"
        );
        assert!(!reason.contains('\n'), "{reason}");
    }
    assert_eq!(server.accepted(), 2, "no connection after stopping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_attempt_fresh_n_keepalive_one() {
    const N: usize = 5;
    let server = Server::start(reply(200, "ok"), None);
    let fresh = http_check(&format!("url: \"{}\"", server.url("http")));
    for _ in 0..N {
        attempt(&*fresh).await.unwrap();
    }
    assert_eq!(
        server.accepted(),
        N,
        "default: one new connection per attempt"
    );
    assert!(
        server
            .heads()
            .iter()
            .all(|h| h.contains("\r\nconnection: close\r\n")),
        "fresh attempts ask the server to close: {:?}",
        server.heads()
    );

    let server = Server::start(reply(200, "ok"), None);
    let pooled = http_check(&format!("url: \"{}\", keepalive: true", server.url("http")));
    for _ in 0..N {
        attempt(&*pooled).await.unwrap();
    }
    assert_eq!(server.accepted(), 1, "keepalive: one connection for all");
    assert_eq!(server.heads().len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_status_codes_and_ranges() {
    let cases: &[(u16, &str, Option<&str>)] = &[
        (200, "", None),
        (204, "", None),
        (
            503,
            "",
            Some("expected status 2xx, got 503 Service Unavailable from "),
        ),
        (204, "expect_status: [200, 204]", None),
        (
            201,
            "expect_status: [200, 204]",
            Some("expected status 200, 204, got 201 Created from "),
        ),
        (301, "expect_status: [\"300-399\"]", None),
        (404, "expect_status: [\"4xx\", 503]", None),
        (
            500,
            "expect_status: [\"4xx\", 503]",
            Some("expected status 400-499, 503, got 500 Internal Server Error from "),
        ),
    ];
    for &(status, option, want) in cases {
        let server = Server::start(reply(status, "x"), None);
        let url = server.url("http");
        let sep = if option.is_empty() { "" } else { ", " };
        let check = http_check(&format!("url: \"{url}\"{sep}{option}"));
        match (attempt(&*check).await, want) {
            (Ok(()), None) => {}
            (Err(reason), Some(want)) => {
                assert_eq!(reason, format!("{want}{url}"), "{status} {option}")
            }
            (got, want) => panic!("{status} with {option:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_body_substring_and_regex() {
    let server = Server::start(reply(200, "status: ok\nversion 3\n"), None);
    let url = server.url("http");
    for (option, passes) in [
        ("expect_body: \"status: ok\"", true),
        ("expect_body: \"status: down\"", false),
        ("expect_body_regex: \"^status: (ok|degraded)$\"", false),
        ("expect_body_regex: \"(?m)^status: (ok|degraded)$\"", true),
        ("expect_body_regex: \"version [0-9]+\"", true),
        ("expect_body: ok, expect_body_regex: \"version 4\"", false),
    ] {
        let check = http_check(&format!("url: \"{url}\", {option}"));
        let result = attempt(&*check).await;
        assert_eq!(result.is_ok(), passes, "{option}: {result:?}");
        if let Err(reason) = result {
            assert!(!reason.contains('\n'), "one line: {reason}");
            assert!(reason.contains("expected body"), "{reason}");
            assert!(
                reason.contains("got 21 bytes: \"status: ok\\nversion 3\\n\""),
                "{reason}"
            );
        }
    }
    let check = http_check(&format!("url: \"{url}\", expect_body: \"status: down\""));
    assert_eq!(
        attempt(&*check).await.unwrap_err(),
        format!(
            "expected body containing \"status: down\", got 21 bytes: \"status: ok\\nversion 3\\n\" from {url}"
        )
    );

    // A body of 100 KiB: only the first 64 KiB are read.
    let mut big = vec![b'a'; 100 * 1024];
    big[1000..1005].copy_from_slice(b"EARLY");
    big[90 * 1024..90 * 1024 + 4].copy_from_slice(b"LATE");
    let server = Server::start(
        Reply {
            status: 200,
            body: big,
        },
        None,
    );
    let url = server.url("http");
    for keepalive in [false, true] {
        let early = http_check(&format!(
            "url: \"{url}\", expect_body: EARLY, keepalive: {keepalive}"
        ));
        attempt(&*early).await.expect("within the limit");
        let late = http_check(&format!(
            "url: \"{url}\", expect_body_regex: \"LATE\", keepalive: {keepalive}"
        ));
        let reason = attempt(&*late).await.expect_err("beyond the limit");
        assert!(
            reason.starts_with(
                "expected body matching /LATE/ in the first 65536 bytes, got 65536+ bytes: \"aaaa"
            ),
            "{reason}"
        );
        assert!(reason.ends_with(&format!("\"… from {url}")), "{reason}");
    }
}

/// A self-signed certificate for `name` and a TLS config serving it.
fn tls_for(name: &str) -> (Arc<rustls::ServerConfig>, String) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], der)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), cert.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_server_name_and_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, pem) = tls_for("health.test");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let ca = ca.display();
    let server = Server::start(reply(200, "ok"), Some(tls));
    let url = server.url("https");
    let port = server.addr.port();

    // Right name, trusted certificate: passes, with SNI and Host the name.
    let good = http_check(&format!(
        "url: \"{url}\", server_name: health.test, ca_file: \"{ca}\""
    ));
    for _ in 0..3 {
        attempt(&*good).await.expect("verified against ca_file");
    }
    assert_eq!(server.accepted(), 3, "a new connection per attempt");
    let heads = server.heads();
    assert!(
        heads
            .iter()
            .all(|h| h.contains(&format!("\r\nhost: health.test:{port}\r\n"))),
        "{heads:?}"
    );
    // Each connection's thread notes its handshake when the client is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.tls_seen.lock().unwrap().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = server.tls_seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![r#"sni=Some("health.test") kind=Some(Full)"#; 3],
        "full handshakes, no resumption"
    );

    // The wrong name fails, saying why, in one line.
    let wrong = http_check(&format!(
        "url: \"{url}\", server_name: other.test, ca_file: \"{ca}\""
    ));
    let reason = attempt(&*wrong).await.expect_err("wrong name");
    assert!(reason.starts_with(&format!("GET {url}: ")), "{reason}");
    assert!(
        reason.contains("certificate not valid for name \"other.test\""),
        "{reason}"
    );
    assert!(!reason.contains('\n'), "{reason}");

    // Without ca_file the system roots do not know the certificate.
    let untrusted = http_check(&format!("url: \"{url}\", server_name: health.test"));
    let reason = attempt(&*untrusted).await.expect_err("untrusted");
    assert!(reason.contains("certificate"), "{reason}");

    // Without server_name the certificate is not valid for 127.0.0.1.
    let by_ip = http_check(&format!("url: \"{url}\", ca_file: \"{ca}\""));
    let reason = attempt(&*by_ip).await.expect_err("wrong name");
    assert!(reason.contains("127.0.0.1"), "{reason}");
}

#[test]
fn bad_ca_file_is_a_build_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let text = format!(
        "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\nservices:\n  - name: s\n    check_interval: 1s\n    checks:\n      - kind: http_2xx\n        spec: {{url: \"https://127.0.0.1:1/\", method: GET, tries: 1, interval: 100ms, timeout: 2s, ca_file: \"{}\"}}\n",
        empty.display()
    );
    let config = config::load_str(&text, Format::Yaml, Path::new("t.yaml"), None).unwrap();
    let err = checks::build(&config.services[0].checks[0], "s")
        .err()
        .expect("no certificate");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

/// An HTTP/2-only TLS server (ALPN `h2` and nothing else) answering
/// `status` to every request; counts connections, and the protocol each
/// negotiated.
struct H2Server {
    addr: SocketAddr,
    status: Arc<std::sync::atomic::AtomicU16>,
    alpn: Arc<Mutex<Vec<Option<Vec<u8>>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl H2Server {
    async fn start(tls: Arc<rustls::ServerConfig>) -> H2Server {
        use http_body_util::Full;
        use hyper::body::Bytes;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let alpn = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (answer, protocols) = (status.clone(), alpn.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, answer, protocols) =
                    (acceptor.clone(), answer.clone(), protocols.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    protocols.lock().unwrap().push(negotiated);
                    let service = hyper::service::service_fn(move |_request| {
                        let code = answer.load(Ordering::SeqCst);
                        async move {
                            hyper::Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from_static(b"ok")))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        H2Server {
            addr,
            status,
            alpn,
            task,
        }
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// HTTP/2 over TLS: a server that speaks only h2 is checked like any
/// other (the check offers h2 and http/1.1 in ALPN), on a fresh connection
/// per attempt, and a 503 over h2 fails with the status in the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_over_http2_only_server() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, pem) = tls_for("health.test");
    let mut tls = Arc::unwrap_or_clone(tls);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let server = H2Server::start(Arc::new(tls)).await;
    let url = format!("https://{}/health", server.addr);
    let check = http_check(&format!(
        "url: \"{url}\", server_name: health.test, ca_file: \"{}\"",
        ca.display()
    ));
    for _ in 0..3 {
        attempt(&*check).await.expect("200 over h2");
    }
    let protocols = server.alpn.lock().unwrap().clone();
    assert_eq!(
        protocols,
        vec![Some(b"h2".to_vec()); 3],
        "three connections, each negotiating h2"
    );
    server.status.store(503, Ordering::SeqCst);
    let reason = attempt(&*check).await.expect_err("503 over h2");
    assert!(reason.contains("expected status 2xx, got 503"), "{reason}");
}
