//! dns_lookup, tftp_rrq and ntpq against real servers on loopback: dnsmasq,
//! tftpd-hpa and chrony, each started by the test with a config of its own
//! that reaches nothing outside this machine.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn dns_lookup_against_dnsmasq() {
    let dir = scratch();
    let port = free_udp_port();
    let _dnsmasq = spawn_dnsmasq(port, &["--txt-record=empty.test,nothing"]);
    let down = free_udp_port();
    let check = |name: &str, query: &str, port: u16| {
        format!(
            "      - {{kind: dns_lookup, name: {name}, spec: {{query: {query}, resolver: \"127.0.0.1:{port}\", tries: 2, interval: 100ms, timeout: 1s}}}}\n"
        )
    };
    let checks = [
        check("resolves", "name.test", port),
        check("resolves_v6", "v6.test", port),
        check("nxdomain", "missing.test", port),
        check("empty", "empty.test", port),
        check("down", "name.test", down),
        // In /etc/hosts, unknown to dnsmasq (--no-hosts, no upstream).
        check("hosts_file", "localhost", port),
    ]
    .concat();
    let started = std::time::Instant::now();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    assert_row(&rows, &text, "resolves", "pass", "");
    assert_row(&rows, &text, "resolves_v6", "pass", "");
    assert_row(
        &rows,
        &text,
        "nxdomain",
        "fail",
        "missing.test via 127.0.0.1",
    );
    assert_row(&rows, &text, "nxdomain", "fail", "NXDOMAIN");
    assert_row(&rows, &text, "empty", "fail", "no A or AAAA records");
    assert_row(&rows, &text, "down", "fail", "2 tries 100ms apart failed");
    // The system resolver answers for localhost (from /etc/hosts), so only a
    // check that asks the configured server alone can fail here.
    use std::net::ToSocketAddrs;
    assert!(
        ("localhost", 0)
            .to_socket_addrs()
            .is_ok_and(|mut a| a.next().is_some()),
        "this machine does not resolve localhost"
    );
    assert_row(
        &rows,
        &text,
        "hosts_file",
        "fail",
        "localhost via 127.0.0.1",
    );
    // two 1 s tries and a pause, run concurrently with the rest: bounded.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn tftp_rrq_against_tftpd_hpa() {
    require(&[("in.tftpd", "tftpd-hpa")]);
    let dir = scratch();
    let root = dir.path().join("tftp");
    std::fs::create_dir(&root).unwrap();
    // Three and a bit 1428-byte blocks, so the transfer takes several rounds.
    let content: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("boot.bin"), &content).unwrap();
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let port = free_udp_port();
    let address = format!("127.0.0.1:{port}");
    let _tftpd = spawn_server(
        "in.tftpd",
        "in.tftpd",
        &[
            "-L",
            "-u",
            "root",
            "-s",
            root.to_str().unwrap(),
            "--address",
            &address,
        ],
    );
    // An RRQ for a missing file draws an ERROR packet once the server is up.
    wait_for_udp(port, b"\x00\x01/nothing\x00octet\x00");
    let down = free_udp_port();
    let check = |name: &str, url: String, sha: Option<&str>| {
        let sha = sha
            .map(|s| format!(", expected_sha256: \"{s}\""))
            .unwrap_or_default();
        format!(
            "      - {{kind: tftp_rrq, name: {name}, spec: {{url: \"{url}\"{sha}, tries: 1, interval: 100ms, timeout: 1s}}}}\n"
        )
    };
    let wrong = "0".repeat(64);
    let upper = sha.to_ascii_uppercase();
    let checks = [
        check("file", format!("tftp://{address}/boot.bin"), None),
        check(
            "sha_match",
            format!("tftp://{address}/boot.bin"),
            Some(&sha),
        ),
        check(
            "sha_upper",
            format!("tftp://{address}/boot.bin"),
            Some(&upper),
        ),
        check(
            "sha_mismatch",
            format!("tftp://{address}/boot.bin"),
            Some(&wrong),
        ),
        check("missing", format!("tftp://{address}/nope.bin"), None),
        check("down", format!("tftp://127.0.0.1:{down}/boot.bin"), None),
    ]
    .concat();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    assert_row(&rows, &text, "file", "pass", "");
    assert_row(&rows, &text, "sha_match", "pass", "");
    assert_row(&rows, &text, "sha_upper", "pass", "");
    assert_row(
        &rows,
        &text,
        "sha_mismatch",
        "fail",
        &format!("/boot.bin (5000 bytes) has SHA-256 {sha}, expected {wrong}"),
    );
    assert_row(
        &rows,
        &text,
        "missing",
        "fail",
        "server error 1: File not found",
    );
    assert_row(&rows, &text, "down", "fail", "timed out after 1s");
}

fn chrony(dir: &tempfile::TempDir, name: &str, port: u16, synchronised: bool) -> Daemon {
    let conf = dir.path().join(format!("{name}.conf"));
    let base = dir.path().join(name);
    std::fs::write(
        &conf,
        format!(
            "{local}allow 127.0.0.1\nbindaddress 127.0.0.1\nport {port}\ncmdport 0\npidfile {base}.pid\ndriftfile {base}.drift\n",
            local = if synchronised { "local stratum 8\n" } else { "" },
            base = base.display(),
        ),
    )
    .unwrap();
    // -x: never touch the host clock.
    spawn_server(
        "chronyd",
        "chronyd",
        &["-x", "-d", "-u", "root", "-f", conf.to_str().unwrap()],
    )
}

#[test]
fn ntpq_against_chrony() {
    require(&[("chronyd", "chrony")]);
    let dir = scratch();
    let synced = free_udp_port();
    let unsynced = free_udp_port();
    let _a = chrony(&dir, "synced", synced, true);
    let _b = chrony(&dir, "unsynced", unsynced, false);
    let mut request = [0u8; 48];
    request[0] = 0x23; // version 4, client mode
    wait_for_udp(synced, &request);
    wait_for_udp(unsynced, &request);
    let check = |name: &str, server: String| {
        format!(
            "      - {{kind: ntpq, name: {name}, spec: {{server: \"{server}\", src_addr: 127.0.0.1, tries: 1, offset_threshold: 125ms, interval: 100ms, timeout: 1s}}}}\n"
        )
    };
    let down = free_udp_port();
    let checks = [
        check("in_threshold", format!("127.0.0.1:{synced}")),
        check("unsynchronised", format!("127.0.0.1:{unsynced}")),
        check("down", format!("127.0.0.1:{down}")),
    ]
    .concat();
    let (code, rows, text) = run_checks(&dir, &checks);
    assert_eq!(code, 1, "{text}");
    assert_row(&rows, &text, "in_threshold", "pass", "");
    assert_row(&rows, &text, "unsynchronised", "fail", "is unsynchronised");
    assert_row(&rows, &text, "down", "fail", "timed out after 1s");
}

#[test]
fn ntp_metrics_are_exported() {
    require(&[("chronyd", "chrony")]);
    let dir = scratch();
    let port = free_udp_port();
    let _chrony = chrony(&dir, "synced", port, true);
    let mut request = [0u8; 48];
    request[0] = 0x23;
    wait_for_udp(port, &request);
    let metrics_port = free_tcp_port();
    let config = dir.path().join("ntp.yaml");
    std::fs::write(
        &config,
        format!(
            "{CHECKS_HEADER}      - {{kind: ntpq, spec: {{server: \"127.0.0.1:{port}\", src_addr: 127.0.0.1, tries: 1, offset_threshold: 125ms, interval: 100ms, timeout: 1s}}}}\nmetrics: {{enabled: true, address: \"127.0.0.1:{metrics_port}\"}}\n"
        ),
    )
    .unwrap();
    let anycastd = FakeExabgp::spawn(&config, &[], &dir.path().join("log"));
    anycastd.expect_line(
        "announce route 192.0.2.1/32 next-hop self",
        Duration::from_secs(10),
    );
    let address = format!("127.0.0.1:{metrics_port}");
    let labels = r#"{service="s",check="ntpq",host="127.0.0.1"}"#;
    let mut text = String::new();
    wait_until(Duration::from_secs(10), "ntp metrics", || {
        text = http_get(&address, "/metrics").unwrap_or_default();
        metric_value(
            &text,
            &format!("anycastd_check_ntp_packets_sent_total{labels}"),
        )
        .is_some()
    });
    assert!(
        metric_value(&text, &format!("anycastd_check_last_ntp_rtt_ms{labels}")).unwrap() > 0.0,
        "{text}"
    );
    assert!(metric_value(&text, &format!("anycastd_check_last_ntp_offset_ms{labels}")).is_some());
}
