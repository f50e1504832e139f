//! The newer check kinds and options end to end through `anycastd check`,
//! loopback only: `tcp_connect` against listeners in the test, `file`,
//! `tls_certificate` on a certificate made by the real `openssl req -x509`
//! (from a file and from a TLS server in the test), and the `dns_lookup`
//! options against a real dnsmasq.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use common::*;

/// A TCP listener on 127.0.0.1 whose connections are each served by
/// `serve` on a thread of their own; it stops accepting when dropped.
struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    fn start(serve: fn(std::net::TcpStream)) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
                        thread::spawn(move || serve(stream));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Listener {
            port,
            stop,
            accepted,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `banner`, then holds the connection open for a while.
fn banner(mut stream: std::net::TcpStream, banner: &[u8]) {
    let _ = stream.write_all(banner);
    let mut sink = [0u8; 64];
    let _ = stream.read(&mut sink);
}

#[test]
fn tcp_connect_against_listeners() {
    let dir = scratch();
    let ssh = Listener::start(|s| banner(s, b"SSH-2.0-OpenSSH_9.6\r\n"));
    let smtp = Listener::start(|s| banner(s, b"220 mail.example ESMTP\r\n\x01"));
    // Answers "+PONG\r\n" to "PING\r\n", anything else with "-ERR".
    let pong = Listener::start(|mut stream| {
        let mut got = [0u8; 64];
        let n = stream.read(&mut got).unwrap_or(0);
        let reply: &[u8] = if &got[..n] == b"PING\r\n" {
            b"+PONG\r\n"
        } else {
            b"-ERR\r\n"
        };
        let _ = stream.write_all(reply);
        let _ = stream.read(&mut got);
    });
    let refused = free_tcp_port();
    let check = |name: &str, port: u16, extra: &str| {
        format!(
            "      - {{kind: tcp_connect, name: {name}, spec: {{host: 127.0.0.1, port: {port}{extra}, tries: 2, interval: 100ms, timeout: 1s}}}}\n"
        )
    };
    let checks = [
        check("connects", ssh.port, ""),
        check("banner", ssh.port, ", expect: SSH-2.0-"),
        check("ping", pong.port, r#", send: "PING\r\n", expect: "+PONG""#),
        check("wrong_banner", smtp.port, ", expect: SSH-"),
        check("refused", refused, ""),
    ]
    .concat();
    let started = Instant::now();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    assert_row(&rows, &text, "connects", "pass", "");
    assert_row(&rows, &text, "banner", "pass", "");
    assert_row(&rows, &text, "ping", "pass", "");
    assert_row(
        &rows,
        &text,
        "wrong_banner",
        "fail",
        &format!(
            r#"127.0.0.1:{}: banner mismatch: expected "SSH-", got "220 mail.example ESMTP\r\n\x01" (25 bytes) (nothing more within 900ms)"#,
            smtp.port
        ),
    );
    assert_row(
        &rows,
        &text,
        "refused",
        "fail",
        &format!("127.0.0.1:{refused}: connection refused"),
    );
    // Two tries a check, each on a new connection: connects and banner
    // passed at the first, wrong_banner made two.
    assert_eq!(ssh.accepted.load(Ordering::Relaxed), 2, "{text}");
    assert_eq!(smtp.accepted.load(Ordering::Relaxed), 2, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn file_exists_contains_and_age() {
    let dir = scratch();
    let healthy = dir.path().join("healthy");
    std::fs::write(&healthy, "state: serving\n").unwrap();
    let stale = dir.path().join("stale");
    std::fs::write(&stale, "serving\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(600))
        .unwrap();
    let missing = dir.path().join("missing");
    let check = |name: &str, path: &std::path::Path, extra: &str| {
        format!(
            "      - {{kind: file, name: {name}, spec: {{path: \"{}\"{extra}}}}}\n",
            path.display()
        )
    };
    let checks = [
        check("exists", &healthy, ""),
        check("contains", &healthy, ", contains: serving, max_age: 1m"),
        check("wrong_word", &healthy, ", contains: draining"),
        check("too_old", &stale, ", max_age: 5m"),
        check("old_enough", &stale, ", max_age: 1h"),
        check("missing", &missing, ""),
    ]
    .concat();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    assert_row(&rows, &text, "exists", "pass", "");
    assert_row(&rows, &text, "contains", "pass", "");
    assert_row(&rows, &text, "old_enough", "pass", "");
    assert_row(
        &rows,
        &text,
        "wrong_word",
        "fail",
        &format!(
            r#"{}: no "draining" in its 15 bytes: "state: serving\n""#,
            healthy.display()
        ),
    );
    assert_row(
        &rows,
        &text,
        "too_old",
        "fail",
        &format!("{} is too old: modified 10m", stale.display()),
    );
    assert_row(&rows, &text, "too_old", "fail", "ago, max_age 5m0s");
    assert_row(
        &rows,
        &text,
        "missing",
        "fail",
        &format!("{} does not exist", missing.display()),
    );

    // The file appearing is all it takes: no restart, the next round sees it.
    std::fs::write(&missing, "").unwrap();
    let (code, rows, text) = run_checks(&dir, &check("missing", &missing, ""));
    assert_eq!(code, 0, "{text}");
    assert_row(&rows, &text, "missing", "pass", "");
}

/// Makes a self-signed certificate the standard way, with the real openssl:
/// returns (certificate path, key path).
fn openssl_self_signed(dir: &std::path::Path) -> (String, String) {
    require(&[("openssl", "openssl")]);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-subj", "/CN=test", "-days", "30"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The point of the test: OpenSSL 3 marks it a CA.
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("run openssl x509");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CA:TRUE"),
        "this openssl does not mark self-signed certificates CA:TRUE:\n{text}"
    );
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// A TLS server on 127.0.0.1 presenting the certificate and key files; it
/// completes handshakes until the test ends.
fn tls_server(cert: &str, key: &str) -> u16 {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    tls_handshake_server(chain, key).port()
}

#[test]
fn tls_certificate_accepts_an_openssl_self_signed_certificate() {
    let dir = scratch();
    let (cert, key) = openssl_self_signed(dir.path());
    let port = tls_server(&cert, &key);
    let check = |name: &str, source: &str, cn: &str| {
        format!(
            "      - {{kind: tls_certificate, name: {name}, spec: {{{source}, common_name: {cn}, issuer: test, min_valid_for: 7d}}}}\n"
        )
    };
    let local = format!("local: {{path: \"{cert}\"}}");
    let remote = format!("remote: {{host: \"127.0.0.1:{port}\", insecure: true}}");
    let checks = [
        check("local", &local, "test"),
        check("remote", &remote, "test"),
        check("local_wrong_cn", &local, "other"),
        check("remote_wrong_cn", &remote, "other"),
    ]
    .concat();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    assert_row(&rows, &text, "local", "pass", "");
    assert_row(&rows, &text, "remote", "pass", "");
    // The certificate is really tested, not waved through.
    for name in ["local_wrong_cn", "remote_wrong_cn"] {
        assert_row(
            &rows,
            &text,
            name,
            "fail",
            r#"expected CN "other", certificate has "test""#,
        );
    }
}

#[test]
fn dns_lookup_options_against_dnsmasq() {
    let dir = scratch();
    let port = free_udp_port();
    let _dnsmasq = spawn_dnsmasq(port, &[]);
    let check = |name: &str, query: &str, extra: &str| {
        format!(
            "      - {{kind: dns_lookup, name: {name}, spec: {{query: {query}, resolver: \"127.0.0.1:{port}\"{extra}, tries: 1, interval: 100ms, timeout: 1s}}}}\n"
        )
    };
    let checks = [
        check("nx_expected", "missing.test", ", expect_rcode: NXDOMAIN"),
        check("nx_but_exists", "name.test", ", expect_rcode: NXDOMAIN"),
        check("nx_default", "missing.test", ""),
        check(
            "present",
            "name.test",
            ", expect_answers: [127.0.0.9, name.test]",
        ),
        check(
            "absent",
            "name.test",
            ", expect_answers: [127.0.0.9, 127.0.0.8]",
        ),
        // Any spelling of the address matches.
        check(
            "v6_present",
            "v6.test",
            ", expect_answers: [\"2001:db8:0::9\"]",
        ),
        check("aaaa_only", "v6.test", ", record_type: AAAA"),
        check("aaaa_of_v4_name", "name.test", ", record_type: AAAA"),
        check("a_only", "name.test", ", record_type: A"),
        check("a_of_v6_name", "v6.test", ", record_type: A"),
    ]
    .concat();
    let started = Instant::now();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    let at = |name: &str| format!("{name} via 127.0.0.1:{port}: ");
    assert_row(&rows, &text, "nx_expected", "pass", "");
    assert_row(
        &rows,
        &text,
        "nx_but_exists",
        "fail",
        &format!("{}NOERROR, expected NXDOMAIN", at("name.test")),
    );
    assert_row(
        &rows,
        &text,
        "nx_default",
        "fail",
        &format!("{}NXDOMAIN", at("missing.test")),
    );
    assert_row(&rows, &text, "present", "pass", "");
    assert_row(
        &rows,
        &text,
        "absent",
        "fail",
        &format!(
            "{}127.0.0.8 not in the answer (answered: 127.0.0.9)",
            at("name.test")
        ),
    );
    assert_row(&rows, &text, "v6_present", "pass", "");
    assert_row(&rows, &text, "aaaa_only", "pass", "");
    assert_row(&rows, &text, "aaaa_of_v4_name", "fail", &at("name.test"));
    assert_row(&rows, &text, "a_only", "pass", "");
    assert_row(&rows, &text, "a_of_v6_name", "fail", &at("v6.test"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
