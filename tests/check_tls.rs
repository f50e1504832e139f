//! `tls_certificate` end to end: certificates made here with rcgen, checked
//! by `anycastd check` from PEM files and from a real TLS server, and the
//! expiry gauge on `/metrics` of `anycastd run`.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use common::*;

fn anycastd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(anycastd_bin())
        .args(args)
        .env_remove("CONFIG_PATH")
        .env_remove("LOG_LEVEL")
        .output()
        .expect("run anycastd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(cn: &str) -> Ca {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.not_before = date_time_ymd(2000, 1, 1);
    p.not_after = date_time_ymd(2200, 1, 1);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf valid from 2020 to 2100 unless the caller changes it.
fn leaf_params(cn: &str, sans: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2100, 1, 1);
    p
}

/// A signed leaf: its PEM, DER and key.
struct Leaf {
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

fn sign(params: CertificateParams, issuer: &Ca) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        pem: cert.pem(),
        der: cert.der().clone(),
        key,
    }
}

const SANS: [&str; 3] = ["svc.example", "www.svc.example", "127.0.0.1"];

/// The spec keys every local case shares: all of them must match.
const EXPECT: &str = r#"common_name: svc.example, dns_names: [svc.example, www.svc.example], ip_addresses: [127.0.0.1], issuer: "Test CA""#;

fn config(services: &[(&str, String)], extra: &str) -> String {
    let mut out = String::from("announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n");
    for (name, spec) in services {
        out.push_str(&format!(
            "  - name: {name}\n    check_interval: 1s\n    checks:\n      - {{kind: tls_certificate, name: cert, spec: {{{spec}}}}}\n"
        ));
    }
    out.push_str(extra);
    out
}

/// The `check` table's row for `service`'s check: (verdict, reason).
fn row(out: &str, service: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(service) && words.next() == Some("cert")
        })
        .unwrap_or_else(|| panic!("no row for {service} in:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[2].to_string(), words[4..].join(" "))
}

fn write(dir: &Path, name: &str, pems: &[&str]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pems.concat()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn local_files_pass_and_fail_with_reasons() {
    let dir = scratch();
    let test_ca = ca("Test CA");
    let other_ca = ca("Other CA");

    let valid = sign(leaf_params("svc.example", &SANS), &test_ca);
    let mut expired = leaf_params("svc.example", &SANS);
    expired.not_before = date_time_ymd(2000, 1, 1);
    expired.not_after = date_time_ymd(2001, 1, 1);
    let expired = sign(expired, &test_ca);
    let mut not_yet = leaf_params("svc.example", &SANS);
    not_yet.not_before = date_time_ymd(2099, 1, 1);
    let not_yet = sign(not_yet, &test_ca);
    // Valid for about two more years: less than min_valid_for's maximum, 10 years.
    let this_year = 1970
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952;
    let mut short = leaf_params("svc.example", &SANS);
    short.not_after = date_time_ymd(this_year as i32 + 2, 1, 1);
    let short = sign(short, &test_ca);
    let wrong_cn = sign(leaf_params("other.example", &SANS), &test_ca);
    let missing_san = sign(
        leaf_params("svc.example", &["svc.example", "127.0.0.1"]),
        &test_ca,
    );
    let missing_ip = sign(
        leaf_params(
            "svc.example",
            &["svc.example", "www.svc.example", "127.0.0.2"],
        ),
        &test_ca,
    );
    let wrong_issuer = sign(leaf_params("svc.example", &SANS), &other_ca);

    let ca_pem = test_ca.pem();
    let d = dir.path();
    // The CA comes first in the file: the first non-CA certificate is tested.
    let cases: Vec<(&str, String)> = vec![
        ("valid", write(d, "valid.pem", &[&ca_pem, &valid.pem])),
        ("expired", write(d, "expired.pem", &[&expired.pem, &ca_pem])),
        ("notyet", write(d, "notyet.pem", &[&not_yet.pem])),
        ("wrongcn", write(d, "wrongcn.pem", &[&wrong_cn.pem])),
        ("nosan", write(d, "nosan.pem", &[&missing_san.pem])),
        ("noip", write(d, "noip.pem", &[&missing_ip.pem])),
        (
            "wrongissuer",
            write(d, "wrongissuer.pem", &[&wrong_issuer.pem]),
        ),
        ("allca", write(d, "allca.pem", &[&ca_pem, &other_ca.pem()])),
        ("minvalid", write(d, "minvalid.pem", &[&short.pem])),
        (
            "missing",
            d.join("absent.pem").to_str().unwrap().to_string(),
        ),
    ];
    let services: Vec<(&str, String)> = cases
        .iter()
        .map(|(name, path)| {
            let extra = if *name == "minvalid" {
                ", min_valid_for: 3650d"
            } else {
                ""
            };
            (
                *name,
                format!("local: {{path: \"{path}\"}}, {EXPECT}{extra}"),
            )
        })
        .collect();
    let file = d.join("tls.yaml");
    std::fs::write(&file, config(&services, "")).unwrap();
    let (code, out, err) = anycastd(&["-c", file.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}\n{err}");

    assert_eq!(row(&out, "valid"), ("pass".into(), String::new()), "{out}");
    let fails = |service: &str| {
        let (verdict, reason) = row(&out, service);
        assert_eq!(verdict, "fail", "{service}: {out}");
        reason
    };
    let reason = fails("expired");
    assert!(
        reason.starts_with(r#"certificate CN="svc.example" expired 2001-01-01T00:00:00Z ("#)
            && reason.ends_with(" ago)"),
        "{reason}"
    );
    let reason = fails("notyet");
    assert!(
        reason.starts_with(
            r#"certificate CN="svc.example" is not valid until 2099-01-01T00:00:00Z (in "#
        ),
        "{reason}"
    );
    assert_eq!(
        fails("wrongcn"),
        r#"expected CN "svc.example", certificate has "other.example""#
    );
    assert_eq!(
        fails("nosan"),
        r#"SAN DNS names [svc.example] lack "www.svc.example""#
    );
    assert_eq!(fails("noip"), "SAN IP addresses [127.0.0.2] lack 127.0.0.1");
    assert_eq!(
        fails("wrongissuer"),
        r#"expected issuer CN "Test CA", certificate's issuer CN is "Other CA""#
    );
    assert_eq!(
        fails("allca"),
        "no end-entity certificate: all 2 certificates are CAs"
    );
    let reason = fails("minvalid");
    assert!(
        reason.starts_with(r#"certificate CN="svc.example" expires in "#)
            && reason.ends_with(&format!(
                "({}-01-01T00:00:00Z), less than min_valid_for 3650d",
                this_year + 2
            )),
        "{reason}"
    );
    let reason = fails("missing");
    assert!(
        reason.starts_with(&format!("cannot read {}: ", cases[9].1)),
        "{reason}"
    );

    // Only the valid one: every service up, exit 0.
    let only_valid = d.join("valid.yaml");
    std::fs::write(&only_valid, config(&services[..1], "")).unwrap();
    let (code, out, _) = anycastd(&["-c", only_valid.to_str().unwrap(), "check"]);
    assert_eq!(code, 0, "{out}");
}

/// A TLS server on 127.0.0.1 presenting `chain`; it lives as long as the test.
fn tls_server(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> SocketAddr {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    tls_handshake_server(chain, key)
}

#[test]
fn remote_server_insecure_passes_verified_fails() {
    let dir = scratch();
    let test_ca = ca("Test CA");
    let leaf = sign(leaf_params("svc.example", &SANS), &test_ca);
    let addr = tls_server(vec![leaf.der.clone(), test_ca.der().clone()], &leaf.key);
    let port = addr.port();

    let remote = |host: &str, insecure: bool| {
        format!("remote: {{host: \"{host}\", insecure: {insecure}}}, {EXPECT}")
    };
    let services = vec![
        ("insecure", remote(&format!("127.0.0.1:{port}"), true)),
        ("byname", remote(&format!("localhost:{port}"), true)),
        ("verified", remote(&format!("127.0.0.1:{port}"), false)),
    ];
    let file = dir.path().join("remote.yaml");
    std::fs::write(&file, config(&services, "")).unwrap();
    let (code, out, err) = anycastd(&["-c", file.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert_eq!(
        row(&out, "insecure"),
        ("pass".into(), String::new()),
        "{out}"
    );
    assert_eq!(row(&out, "byname"), ("pass".into(), String::new()), "{out}");
    let (verdict, reason) = row(&out, "verified");
    assert_eq!(verdict, "fail", "{out}");
    assert!(
        reason.starts_with(&format!(
            "TLS handshake with 127.0.0.1:{port} failed: invalid peer certificate: "
        )) && reason.contains("UnknownIssuer"),
        "{reason}"
    );

    // The insecure check still tests the certificate it was shown.
    let services = vec![(
        "wrongname",
        format!(
            "remote: {{host: \"127.0.0.1:{port}\", insecure: true}}, common_name: nope.example"
        ),
    )];
    std::fs::write(&file, config(&services, "")).unwrap();
    let (code, out, _) = anycastd(&["-c", file.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        row(&out, "wrongname"),
        (
            "fail".into(),
            r#"expected CN "nope.example", certificate has "svc.example""#.into()
        )
    );
}

#[test]
fn remote_connection_refused_is_a_reason() {
    let dir = scratch();
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let services = vec![(
        "closed",
        format!("remote: {{host: \"127.0.0.1:{port}\", insecure: true}}"),
    )];
    let file = dir.path().join("closed.yaml");
    std::fs::write(&file, config(&services, "")).unwrap();
    let (code, out, _) = anycastd(&["-c", file.to_str().unwrap(), "check"]);
    assert_eq!(code, 1, "{out}");
    let (verdict, reason) = row(&out, "closed");
    assert_eq!(verdict, "fail");
    assert!(
        reason.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
        "{reason}"
    );
}

#[test]
fn run_exports_seconds_until_expiry() {
    let dir = scratch();
    let test_ca = ca("Test CA");
    let leaf = sign(leaf_params("svc.example", &SANS), &test_ca);
    let path = write(dir.path(), "cert.pem", &[&leaf.pem, &test_ca.pem()]);
    let metrics_addr = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let file = dir.path().join("run.yaml");
    std::fs::write(
        &file,
        config(
            &[("web", format!("local: {{path: \"{path}\"}}"))],
            &format!("metrics: {{enabled: true, address: \"{metrics_addr}\"}}\n"),
        ),
    )
    .unwrap();
    let _daemon = FakeExabgp::spawn(&file, &[], &dir.path().join("anycastd.log"));

    let series = "anycastd_certificate_expires_in_seconds{";
    let mut body = String::new();
    wait_until(
        Duration::from_secs(20),
        "the certificate expiry gauge",
        || {
            body = http_get(&metrics_addr, "/metrics").unwrap_or_default();
            metric_value(&body, series).is_some()
        },
    );
    let line = body
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap()
        .to_string();
    assert!(line.contains(&format!("path=\"{path}\"")), "{line}");
    assert!(
        line.contains("service=\"web\"") && line.contains("check=\"cert\""),
        "{line}"
    );
    let seconds = metric_value(&body, series).unwrap();
    // Expires 2100-01-01: positive, and more than 70 years away.
    assert!(seconds > 70.0 * 365.0 * 86_400.0, "{line}");
}
