//! The status page (`GET /` on the metrics listener) in a real browser:
//! headless Chromium loads it from a running anycastd with a healthy and a
//! failing service (and one whose names are markup), and the rendered DOM
//! (`--dump-dom`) shows both services, the failing reason and the route
//! table, with the markup as text. Screenshots are written as test
//! artefacts (`target/test-artefacts/status-page.png`, and
//! `status-page-phone.png` at 390 × 844); with
//! `ANYCASTD_BLESS=1` it also replaces `docs/status-page.png`, the README's.
//!
//! Packages: chromium-headless-shell (or chromium).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// Debian's headless shell, or the full browser.
fn chromium() -> &'static str {
    for candidate in ["chromium-headless-shell", "chromium"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {candidate}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return candidate;
        }
    }
    panic!(
        "neither chromium-headless-shell nor chromium is installed: \
         apt-get install chromium-headless-shell (`.ci/run` does this)"
    );
}

/// Runs headless Chromium with `args` (then `url`), killed after 90 s;
/// returns its stdout.
fn browse(profile: &Path, args: &[&str], url: &str) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("chromium's output")
}

/// Sends `request` as is and returns the whole response.
fn raw(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn chromium_renders_both_services_the_failing_reason_and_the_routes() {
    let dir = scratch();
    let healthy = HealthServer::start();
    let failing = HealthServer::start();
    failing.set_healthy(false);
    let port = free_tcp_port();
    let config = dir.path().join("anycastd.yaml");
    std::fs::write(
        &config,
        format!(
            r#"announcer: {{backend: exabgp, routes: []}}
services:
  - name: web
    check_interval: 200ms
    routes: [198.51.100.1/32]
    checks:
      - {{kind: http_2xx, name: health, spec: {{url: "{web}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}}}
  - name: api
    check_interval: 200ms
    routes: [198.51.100.2/32]
    checks:
      - {{kind: http_2xx, name: health, spec: {{url: "{api}", method: GET, tries: 1, interval: 50ms, timeout: 500ms}}}}
  - name: "<script>alert(1)</script>"
    check_interval: 200ms
    routes: [198.51.100.3/32]
    checks:
      - {{kind: assigned_address, name: "<script>document.title='x'</script>", spec: {{ipv4: 127.0.0.1}}}}
metrics: {{enabled: true, address: "127.0.0.1:{port}"}}
"#,
            web = healthy.url("/health"),
            api = failing.url("/health"),
        ),
    )
    .unwrap();
    let exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("anycastd.log"));
    exabgp.expect_line("announce route 198.51.100.1/32 next-hop self", WAIT);
    let address = format!("127.0.0.1:{port}");
    // Rounds for the history graphs, every service decided.
    wait_until(WAIT, "every service decided, twenty rounds each", || {
        let Some(body) = http_get(&address, "/status") else {
            return false;
        };
        let report: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        report["services"].as_array().is_some_and(|s| {
            s.len() == 3
                && s.iter()
                    .all(|s| s["state"] != "unknown" && s["rounds"].as_u64() >= Some(20))
        })
    });

    let profile = dir.path().join("chromium");
    std::fs::create_dir_all(&profile).unwrap();
    let url = format!("http://{address}/");
    let dom = browse(&profile, &["--dump-dom"], &url);
    assert!(dom.contains("</html>"), "no document came back: {dom}");
    let section = |id: &str| -> &str {
        let start = dom
            .find(&format!("<section id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no section {id}: {dom}"));
        let end = dom[start..].find("</section>").expect("section end") + start;
        &dom[start..end]
    };

    // Both services, each with its state; the failing one first, with its reason.
    let services = section("services");
    let api = services.find(">api<").expect("the failing service");
    let web = services.find(">web<").expect("the healthy service");
    assert!(api < web, "the failing service comes first");
    assert!(
        services.contains("<span class=\"b down\">down</span> <span class=\"name\">api</span>"),
        "{services}"
    );
    assert!(
        services.contains("<span class=\"b up\">up</span> <span class=\"name\">web</span>"),
        "{services}"
    );
    assert!(
        services.contains("expected status 2xx, got 503"),
        "the failing reason: {services}"
    );
    assert!(services.contains("<svg class=\"h\""), "history graphs");

    // The route table: the healthy route announced, the failing one withdrawn.
    let routes = section("routes");
    assert!(routes.contains("<th>exabgp</th>"), "{routes}");
    let row = |route: &str| -> &str {
        let start = routes
            .find(route)
            .unwrap_or_else(|| panic!("{route}: {routes}"));
        let end = routes[start..].find("</tr>").unwrap() + start;
        &routes[start..end]
    };
    assert!(
        row("198.51.100.1/32").contains("<td>announced</td>"),
        "{routes}"
    );
    assert!(row("198.51.100.2/32").contains("withdrawn"), "{routes}");
    assert!(!row("198.51.100.2/32").contains("<td>announced</td>"));

    // Markup in names is text: no script element ran or exists.
    assert!(
        dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the service name as text: {services}"
    );
    assert!(dom.contains("&lt;script&gt;document.title='x'&lt;/script&gt;"));
    assert!(!dom.to_lowercase().contains("<script"), "{dom}");
    assert!(dom.contains("<title>1 down · anycastd: 3 services</title>"));

    // Recent changes: the failing service went down.
    let changes = section("changes");
    assert!(changes.contains(">api<"), "{changes}");

    // The screenshot, for people and for the README.
    let artefacts = repo("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let shot = artefacts.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1250",
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    // And as a phone shows it (an artefact to look at).
    let phone = artefacts.join("status-page-phone.png");
    browse(
        &profile,
        &[
            &format!("--screenshot={}", phone.display()),
            "--window-size=390,844",
        ],
        &url,
    );
    assert!(phone.exists(), "the phone-sized screenshot");
    if std::env::var_os("ANYCASTD_BLESS").is_some() {
        std::fs::copy(&shot, repo("docs/status-page.png")).expect("update docs/status-page.png");
    }
}

/// `GET /` answers HTML, other methods are refused, and the page is
/// self-contained: nothing in it points anywhere else.
#[test]
fn the_page_is_self_contained_html() {
    let dir = scratch();
    let port = free_tcp_port();
    let config = dir.path().join("anycastd.yaml");
    std::fs::write(
        &config,
        format!(
            "announcer: {{backend: exabgp, routes: [192.0.2.1/32]}}\n\
             services:\n  - name: up\n    check_interval: 1s\n    \
             checks: [{{kind: assigned_address, name: lo, spec: {{ipv4: 127.0.0.1}}}}]\n\
             metrics: {{enabled: true, address: \"127.0.0.1:{port}\"}}\n"
        ),
    )
    .unwrap();
    let _exabgp = FakeExabgp::spawn(&config, &[], &dir.path().join("anycastd.log"));
    let address = format!("127.0.0.1:{port}");
    let mut page = String::new();
    wait_until(WAIT, "the status page", || {
        page = http_get(&address, "/").unwrap_or_default();
        page.contains("</html>")
    });
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // The headers: HTML, and a policy under which no script could run
    // even if something slipped through the escaping.
    let head = raw(&address, "GET / HTTP/1.0\r\n\r\n");
    let head = head
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
        "{head}"
    );
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    // Read-only.
    let post = raw(&address, "POST / HTTP/1.0\r\ncontent-length: 0\r\n\r\n");
    assert!(post.contains(" 405 "), "{post}");
    for outside in ["http://", "https://", "src=", "@import", "url("] {
        assert!(!page.contains(outside), "`{outside}` in the page: {page}");
    }
    assert!(page.contains("<meta http-equiv=\"refresh\""));
    assert!(page.contains("name=\"viewport\""));
}
