use std::path::Path;
use std::time::Duration;

use super::*;

const SEED: &str = include_str!("../../examples/original-readme.yaml");

fn yaml(text: &str) -> Result<Config, ConfigError> {
    load_str(text, Format::Yaml, Path::new("test.yaml"), None)
}

fn yaml_with(text: &str, backend: BackendKind) -> Result<Config, ConfigError> {
    load_str(text, Format::Yaml, Path::new("test.yaml"), Some(backend))
}

/// The first problem's path and message.
fn problem(text: &str) -> (String, String) {
    let err = yaml(text).expect_err("config should be rejected");
    let p = err
        .problems()
        .first()
        .unwrap_or_else(|| panic!("no problem in {err}"));
    (p.path.clone(), p.message.clone())
}

const BASE: &str = r#"
announcer:
  backend: exabgp
  routes: [192.0.2.1/32]
services:
  - name: web
    check_interval: 1s
    checks:
      - kind: http_2xx
        spec: {url: "http://127.0.0.1:8080/", method: GET, tries: 1, interval: 100ms, timeout: 1s}
metrics: {enabled: false}
"#;

#[test]
fn seed_example_loads_as_meant() {
    let config = yaml(SEED).expect("seed example loads");
    assert_eq!(config.backend, BackendKind::Native);
    assert_eq!(config.routes, vec!["10.0.0.128/32".parse().unwrap()]);
    assert_eq!(config.peers.len(), 2);
    // The misspelled key means what its author meant, with a warning.
    assert_eq!(config.peers[1].multihop_ttl, Some(3));
    assert!(config.peers[1].enable_multihop);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("announcer.peers[1].multihope_ttl"))
    );
    let service = &config.services[0];
    assert_eq!(service.check_interval, Duration::from_secs(10));
    assert_eq!(service.strategy, Strategy::AtLeastOne);
    let kinds: Vec<_> = service.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "dns_lookup",
            "http_2xx",
            "tls_certificate",
            "assigned_address",
            "icmp_ping",
            "tftp_rrq",
            "ntpq"
        ]
    );
    match &service.checks[1].spec {
        CheckSpec::Http2xx(http) => {
            assert_eq!(
                http.headers.get("Host").map(String::as_str),
                Some("example.com")
            );
            assert_eq!(http.payload.as_deref(), Some("ping"));
            assert_eq!(http.timeout.get(), Duration::from_secs(2));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(config.metrics, Some("127.0.0.1:9090".parse().unwrap()));
}

#[test]
fn json_loads_like_yaml() {
    let json = r#"{"announcer":{"backend":"exabgp","routes":["192.0.2.1/32"]},
      "services":[{"name":"web","check_interval":"1s","checks":[{"kind":"assigned_address","spec":{"ipv4":"127.0.0.1"}}]}],
      "metrics":{"enabled":true,"address":"127.0.0.1:9100"}}"#;
    let config = load_str(json, Format::Json, Path::new("c.json"), None).unwrap();
    assert_eq!(config.services[0].checks[0].name, "assigned_address");
    assert_eq!(config.metrics, Some("127.0.0.1:9100".parse().unwrap()));
}

#[test]
fn extension_decides_the_format() {
    assert_eq!(Format::from_path(Path::new("a.YML")).unwrap(), Format::Yaml);
    assert_eq!(
        Format::from_path(Path::new("a.Json")).unwrap(),
        Format::Json
    );
    let err = Format::from_path(Path::new("/etc/a.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/a.toml: unexpected file format `.toml`: use .yaml, .yml or .json"
    );
}

#[test]
fn wrong_type_names_the_path() {
    let text = BASE.replace("tries: 1", "tries: many");
    let (path, message) = problem(&text);
    assert_eq!(path, "services[0].checks[0].spec.tries");
    assert!(message.contains("expected u8"), "{message}");
}

#[test]
fn missing_field_names_the_path() {
    let text = BASE.replace("method: GET, ", "");
    assert_eq!(
        problem(&text),
        (
            "services[0].checks[0].spec.method".into(),
            "required key is missing".into()
        )
    );
    let text = BASE.replace("    check_interval: 1s\n", "");
    assert_eq!(problem(&text).0, "services[0].check_interval");
}

#[test]
fn unknown_key_is_an_error_with_a_hint() {
    let text = BASE.replace("check_interval", "chek_interval");
    let (path, message) = problem(&text);
    assert_eq!(path, "services[0].chek_interval");
    assert!(
        message.starts_with("unknown key `chek_interval`, did you mean `check_interval`?"),
        "{message}"
    );
    let text = BASE.replace("timeout: 1s", "timeout: 1s, timeuot: 2s");
    let (path, message) = problem(&text);
    assert_eq!(path, "services[0].checks[0].spec.timeuot");
    assert!(message.contains("did you mean `timeout`?"), "{message}");
}

#[test]
fn unknown_kind_and_strategy_suggest_the_nearest() {
    let text = BASE.replace("kind: http_2xx", "kind: http_200");
    let (path, message) = problem(&text);
    assert_eq!(path, "services[0].checks[0].kind");
    assert!(message.contains("did you mean `http_2xx`?"), "{message}");
    let text = BASE.replace("check_interval: 1s", "check_interval: 1s\n    strategy: al");
    let (path, message) = problem(&text);
    assert_eq!(path, "services[0].strategy");
    assert!(message.contains("did you mean `all`?"), "{message}");
}

#[test]
fn bare_number_duration_asks_for_a_unit() {
    let text = BASE.replace("check_interval: 1s", "check_interval: 10");
    let (path, message) = problem(&text);
    assert_eq!(path, "services[0].check_interval");
    assert_eq!(
        message,
        "expected a duration with a unit, such as \"10s\" or \"10ms\", found the bare number 10 \
         (the Go anycastd read bare numbers as nanoseconds)"
    );
}

#[test]
fn error_text_names_file_path_and_expectation() {
    let text = BASE.replace("timeout: 1s", "timeout: soon");
    let err = yaml(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("test.yaml: services[0].checks[0].spec.timeout: invalid duration \"soon\""),
        "{err}"
    );
}

#[test]
fn metrics_can_be_disabled() {
    assert_eq!(yaml(BASE).unwrap().metrics, None);
    let text = BASE.replace("{enabled: false}", "{enabled: true}");
    assert_eq!(problem(&text).0, "metrics.address");
}

#[test]
fn multihope_alias_and_conflict() {
    let peers = "\n  peers: [{name: r, remote_address: 10.0.0.1, remote_asn: 1, multihop_ttl: 2, multihope_ttl: 3}]\n  router_id: 10.0.0.2\n  local_asn: 2\n  local_address: 10.0.0.2";
    let text = BASE.replace("  backend: exabgp", peers);
    assert_eq!(problem(&text).0, "announcer.peers[0].multihope_ttl");
}

#[test]
fn native_backend_requires_bgp_settings() {
    let err = yaml_with(BASE, BackendKind::Native).unwrap_err();
    let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "announcer.router_id",
            "announcer.local_asn",
            "announcer.local_address",
            "announcer.peers"
        ]
    );
    // The same file is fine for the exabgp backend.
    assert!(yaml_with(BASE, BackendKind::Exabgp).is_ok());
}

#[test]
fn ipv6_works_everywhere() {
    let text = BASE
        .replace("[192.0.2.1/32]", "[192.0.2.1/32, \"2001:db8::1/128\"]")
        .replace(
            "kind: http_2xx\n        spec: {url: \"http://127.0.0.1:8080/\", method: GET, tries: 1, interval: 100ms, timeout: 1s}",
            "kind: assigned_address\n        spec: {ipv6: \"::1\"}",
        );
    let config = yaml(&text).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert!(
        matches!(&config.services[0].checks[0].spec, CheckSpec::AssignedAddress(a) if a.ipv6.is_some())
    );
}

#[test]
fn per_service_routes_rise_fall_and_check_names() {
    let text = BASE.replace(
        "check_interval: 1s",
        "check_interval: 1s\n    routes: [198.51.100.0/24]\n    rise: 3\n    fall: 2",
    );
    let config = yaml(&text).unwrap();
    let s = &config.services[0];
    assert_eq!((s.rise, s.fall), (3, 2));
    assert_eq!(s.routes, vec!["198.51.100.0/24".parse().unwrap()]);
    assert_eq!(config.all_routes().len(), 2);
}

#[test]
fn zero_tries_and_durations_are_rejected() {
    let text = BASE.replace("tries: 1", "tries: 0");
    assert_eq!(
        problem(&text),
        (
            "services[0].checks[0].spec.tries".into(),
            "must be at least 1".into()
        )
    );
    let text = BASE.replace("check_interval: 1s", "check_interval: 0s");
    assert_eq!(problem(&text).0, "services[0].check_interval");
}

#[test]
fn strategy_options_are_checked() {
    let text = BASE.replace(
        "check_interval: 1s",
        "check_interval: 1s\n    strategy: at_least_n_percentage",
    );
    assert_eq!(problem(&text).0, "services[0].strategy_options.n");
    let text = BASE.replace(
        "check_interval: 1s",
        "check_interval: 1s\n    strategy: at_least_n_percentage\n    strategy_options: {n: 0.5}",
    );
    assert_eq!(
        yaml(&text).unwrap().services[0].strategy,
        Strategy::AtLeastNPercentage(0.5)
    );
}

#[test]
fn repeated_kinds_get_distinct_labels() {
    let check = "      - kind: http_2xx\n        spec: {url: \"http://127.0.0.1:8080/\", method: GET, tries: 1, interval: 100ms, timeout: 1s}\n";
    let text = BASE.replace("metrics:", &format!("{check}metrics:"));
    let config = yaml(&text).unwrap();
    let names: Vec<_> = config.services[0]
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["http_2xx", "http_2xx_2"]);
}

#[test]
fn duplicate_service_names_are_rejected() {
    let service = "  - name: web\n    check_interval: 1s\n    checks:\n      - kind: assigned_address\n        spec: {ipv4: 127.0.0.1}\n";
    let text = BASE.replace("metrics:", &format!("{service}metrics:"));
    assert_eq!(problem(&text).0, "services[1].name");
}

#[test]
fn host_bits_are_masked_with_a_warning() {
    let text = BASE.replace("[192.0.2.1/32]", "[192.0.2.1/24]");
    let config = yaml(&text).unwrap();
    assert_eq!(config.routes, vec!["192.0.2.0/24".parse().unwrap()]);
    assert_eq!(config.warnings.len(), 1);
}

#[test]
fn no_routes_at_all_is_an_error() {
    let text = BASE.replace("  routes: [192.0.2.1/32]\n", "");
    assert_eq!(problem(&text).0, "announcer.routes");
}

fn bird(extra: &str) -> Result<Config, ConfigError> {
    yaml(&BASE.replace(
        "  backend: exabgp\n",
        &format!("  backend: bird\n  bird: {{include_file: /tmp/anycastd.conf{extra}}}\n"),
    ))
}

#[test]
fn bird_defaults() {
    let bird = bird("").unwrap().bird.expect("bird section");
    assert_eq!(bird.socket, std::path::PathBuf::from("/run/bird/bird.ctl"));
    assert_eq!(bird.format, BirdFormat::Static);
    assert_eq!(bird.route_kind, BirdRouteKind::Blackhole);
    assert_eq!(bird.reconfigure_timeout, Duration::from_secs(10));
    assert_eq!(bird.reload_command, None);
    assert_eq!(
        (bird.set_v4.as_str(), bird.set_v6.as_str()),
        ("ANYCASTD_PREFIXES_V4", "ANYCASTD_PREFIXES_V6")
    );
}

#[test]
fn bird_prefix_set_names_from_variable_or_given_exactly() {
    let bird_of = |extra: &str| bird(extra).unwrap().bird.unwrap();
    let derived = bird_of(", format: prefix_set, variable: MY_SET");
    assert_eq!(
        (derived.set_v4.as_str(), derived.set_v6.as_str()),
        ("MY_SET_V4", "MY_SET_V6")
    );
    // anycast-healthchecker's names, so its users keep their filters.
    let exact = bird_of(
        ", format: prefix_set, variable_v4: ACAST_PS_ADVERTISE, variable_v6: ACAST6_PS_ADVERTISE",
    );
    assert_eq!(
        (exact.set_v4.as_str(), exact.set_v6.as_str()),
        ("ACAST_PS_ADVERTISE", "ACAST6_PS_ADVERTISE")
    );
}

#[test]
fn bird_prefix_set_names_must_be_symbols_and_differ() {
    let first = |extra: &str| {
        let err = bird(extra).expect_err("config should be rejected");
        let p = &err.problems()[0];
        (p.path.clone(), p.message.clone())
    };
    assert_eq!(
        first(", variable_v4: 4SET"),
        (
            "announcer.bird.variable_v4".into(),
            "expected a BIRD symbol name (letters, digits, _), found \"4SET\"".into()
        )
    );
    assert_eq!(
        first(", variable_v4: SAME, variable_v6: SAME"),
        (
            "announcer.bird.variable_v6".into(),
            "must differ from the IPv4 set's name, both are \"SAME\"".into()
        )
    );
}

#[test]
fn durations_past_a_day_name_their_key() {
    let huge = BASE.replace("interval: 100ms", "interval: 150000000000000d");
    let (path, message) = problem(&huge);
    assert_eq!(path, "services[0].checks[0].spec.interval");
    assert!(
        message.contains("longer than the maximum of 24h0m0s"),
        "{message}"
    );
    let long = BASE.replace("timeout: 1s", "timeout: 25h");
    let (path, message) = problem(&long);
    assert_eq!(path, "services[0].checks[0].spec.timeout");
    assert!(message.contains("maximum of 24h0m0s"), "{message}");
    let shutdown = BASE.replace(
        "  backend: exabgp\n",
        "  backend: exabgp\n  exabgp: {shutdown_timeout: 1000000h}\n",
    );
    let (path, _) = problem(&shutdown);
    assert_eq!(path, "announcer.exabgp.shutdown_timeout");
    assert!(yaml(&BASE.replace("check_interval: 1s", "check_interval: 24h")).is_ok());
}

#[test]
fn a_large_yaml_config_loads() {
    let mut text =
        String::from("announcer: {backend: exabgp, routes: [192.0.2.1/32]}\nservices:\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "  - name: s{i}\n    check_interval: 1s\n    checks:\n      - kind: assigned_address\n        spec: {{ipv4: 127.0.0.1}}\n"
        ));
    }
    assert_eq!(yaml(&text).unwrap().services.len(), 20_000);
}

#[test]
fn yaml_errors_name_the_file_and_say_the_position_once() {
    let err = load_str(
        "a: [1, 2\nb: 3\n",
        Format::Yaml,
        Path::new("/etc/x.yaml"),
        None,
    )
    .unwrap_err()
    .to_string();
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("/etc/x.yaml: invalid YAML at line 2, column 2: "),
        "{err}"
    );
    assert_eq!(first.matches("line 2").count(), 1, "{err}");
    assert!(err.contains("--> /etc/x.yaml:2:2"), "{err}");
    assert!(!err.contains("<input>"), "{err}");
}

#[test]
fn a_tab_in_the_indentation_is_reported_where_it_is() {
    let err = yaml("announcer:\n  backend: exabgp\n\troutes: [192.0.2.1/32]\nservices: []\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "test.yaml: invalid YAML at line 3, column 1: a tab in the indentation (YAML indents with spaces only)"
    );
    // A tab inside a value is not indentation.
    assert!(!BASE.contains('\t'));
    assert!(yaml(&BASE.replace("method: GET", "method: \"GET\"\t")).is_ok());
}

/// `BASE` with its check replaced by `check` (a flow mapping).
fn with_check(check: &str) -> String {
    BASE.replace(
        r#"      - kind: http_2xx
        spec: {url: "http://127.0.0.1:8080/", method: GET, tries: 1, interval: 100ms, timeout: 1s}"#,
        &format!("      - {check}"),
    )
}

#[test]
fn tcp_connect_file_and_dns_options_load_and_are_checked() {
    let config = yaml(&with_check(
        r#"{kind: tcp_connect, spec: {host: 127.0.0.1, port: 22, send: "PING\r\n", expect: "+PONG", tries: 2, interval: 100ms, timeout: 1s}}"#,
    ))
    .unwrap();
    let CheckSpec::TcpConnect(tcp) = &config.services[0].checks[0].spec else {
        panic!("not tcp_connect");
    };
    assert_eq!(tcp.send.as_deref(), Some("PING\r\n"));
    assert_eq!(config.services[0].checks[0].name, "tcp_connect");

    let config = yaml(&with_check(
        "{kind: file, spec: {path: /run/svc/healthy, contains: up, max_age: 2m}}",
    ))
    .unwrap();
    let CheckSpec::File(file) = &config.services[0].checks[0].spec else {
        panic!("not file");
    };
    assert_eq!(
        file.max_age.map(|d| d.get()),
        Some(Duration::from_secs(120))
    );

    let config = yaml(&with_check(
        r#"{kind: dns_lookup, spec: {query: a.test, resolver: "127.0.0.1:53", expect_rcode: nxdomain, record_type: AAAA, tries: 1, interval: 100ms, timeout: 1s}}"#,
    ))
    .unwrap();
    let CheckSpec::DnsLookup(dns) = &config.services[0].checks[0].spec else {
        panic!("not dns_lookup");
    };
    assert_eq!(dns.record_type, model::DnsRecordType::Aaaa);

    let cases = [
        (
            r#"{kind: tcp_connect, spec: {host: 127.0.0.1, port: 0, tries: 1, interval: 100ms, timeout: 1s}}"#,
            "services[0].checks[0].spec.port",
            "must be 1 to 65535",
        ),
        (
            r#"{kind: tcp_connect, spec: {host: 127.0.0.1, port: 1, expect: "", tries: 1, interval: 100ms, timeout: 1s}}"#,
            "services[0].checks[0].spec.expect",
            "must not be empty (leave it out to expect nothing)",
        ),
        (
            "{kind: file, spec: {path: relative/file}}",
            "services[0].checks[0].spec.path",
            "expected an absolute path, found \"relative/file\"",
        ),
        (
            "{kind: file, spec: {path: /x, max_age: 0s}}",
            "services[0].checks[0].spec.max_age",
            "must be longer than zero",
        ),
        (
            r#"{kind: dns_lookup, spec: {query: a.test, resolver: "127.0.0.1:53", expect_rcode: NXDOMIAN, tries: 1, interval: 100ms, timeout: 1s}}"#,
            "services[0].checks[0].spec.expect_rcode",
            "unknown response code `NXDOMIAN`, did you mean `NXDOMAIN`? (expected one of `NOERROR`, `FORMERR`, `SERVFAIL`, `NXDOMAIN`, `NOTIMP`, `REFUSED`)",
        ),
        (
            r#"{kind: dns_lookup, spec: {query: a.test, resolver: "127.0.0.1:53", expect_rcode: NXDOMAIN, expect_answers: [192.0.2.1], tries: 1, interval: 100ms, timeout: 1s}}"#,
            "services[0].checks[0].spec.expect_answers",
            "cannot be met with an error `expect_rcode`: such answers are empty",
        ),
        (
            r#"{kind: dns_lookup, spec: {query: a.test, resolver: "127.0.0.1:53", expect_answers: ["not a name"], tries: 1, interval: 100ms, timeout: 1s}}"#,
            "services[0].checks[0].spec.expect_answers[0]",
            "expected an IP address or a DNS name, found \"not a name\"",
        ),
    ];
    for (check, path, message) in cases {
        assert_eq!(
            problem(&with_check(check)),
            (path.to_string(), message.to_string()),
            "{check}"
        );
    }
    let (path, message) = problem(&with_check(
        r#"{kind: dns_lookup, spec: {query: a.test, resolver: "127.0.0.1:53", record_type: MX, tries: 1, interval: 100ms, timeout: 1s}}"#,
    ));
    assert_eq!(path, "services[0].checks[0].spec.record_type", "{message}");
}

#[test]
fn http_2xx_options_load_and_bad_ones_name_their_key() {
    let spec = "spec: {url: \"http://127.0.0.1:8080/\", method: GET, tries: 1, interval: 100ms, timeout: 1s}";
    let with = |extra: &str| {
        BASE.replace(
            spec,
            &format!("spec: {{url: \"https://127.0.0.1:8443/\", method: GET, tries: 1, interval: 100ms, timeout: 1s, {extra}}}"),
        )
    };
    let config = yaml(&with(
        "keepalive: true, expect_status: [200, 204, \"300-399\", \"4xx\"], expect_body: ok, expect_body_regex: \"^o\", server_name: health.test, ca_file: /etc/ca.pem",
    ))
    .expect("loads");
    let CheckSpec::Http2xx(http) = &config.services[0].checks[0].spec else {
        panic!("not http_2xx");
    };
    assert!(http.keepalive);
    let ranges: Vec<_> = http
        .expect_status
        .iter()
        .map(|s| s.range().unwrap())
        .collect();
    assert_eq!(ranges, [(200, 200), (204, 204), (300, 399), (400, 499)]);
    assert_eq!(http.expect_body.as_deref(), Some("ok"));
    assert_eq!(http.server_name.as_deref(), Some("health.test"));

    // Defaults: fresh connections, 2xx, no body expectation.
    let config = yaml(BASE).unwrap();
    let CheckSpec::Http2xx(http) = &config.services[0].checks[0].spec else {
        panic!("not http_2xx");
    };
    assert!(!http.keepalive && http.expect_status.is_empty() && http.expect_body.is_none());

    let at = "services[0].checks[0].spec";
    for (extra, path, words) in [
        (
            "expect_status: [200, \"399-300\"]",
            "expect_status[1]",
            "is empty",
        ),
        ("expect_status: [200, 700]", "expect_status[1]", "found 700"),
        (
            "expect_status: [\"abc\"]",
            "expect_status[0]",
            "\"300-399\"",
        ),
        (
            "expect_body_regex: \"(\"",
            "expect_body_regex",
            "invalid regular expression",
        ),
        ("expect_body: \"\"", "expect_body", "must not be empty"),
        (
            "server_name: 192.0.2.1",
            "server_name",
            "expected a DNS name",
        ),
        (
            "server_name: \"bad name!\"",
            "server_name",
            "expected a DNS name",
        ),
        ("keepalive: maybe", "keepalive", ""),
        ("expect_bodi: ok", "expect_bodi", "expect_body"),
    ] {
        let (got_path, message) = problem(&with(extra));
        assert_eq!(got_path, format!("{at}.{path}"), "{extra}: {message}");
        assert!(message.contains(words), "{extra}: {message}");
    }
    // TLS options on a plain-HTTP URL mean nothing: say so.
    let text = BASE.replace("method: GET,", "method: GET, ca_file: /x.pem,");
    let (path, message) = problem(&text);
    assert_eq!(path, format!("{at}.ca_file"));
    assert!(message.contains("https://"), "{message}");
}

#[test]
fn grpc_health_spec_is_checked() {
    let grpc = |spec: &str| {
        BASE.replace(
            r#"kind: http_2xx
        spec: {url: "http://127.0.0.1:8080/", method: GET, "#,
            &format!("kind: grpc_health\n        spec: {{{spec}, "),
        )
    };
    let config = yaml(&grpc(r#"address: "127.0.0.1:50051", service: db"#)).unwrap();
    let check = &config.services[0].checks[0];
    assert_eq!(check.name, "grpc_health");
    match &check.spec {
        CheckSpec::GrpcHealth(s) => {
            assert_eq!(s.service.as_deref(), Some("db"));
            assert!(!s.tls);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        yaml(&grpc(
            r#"address: "[::1]:50051", tls: true, server_name: grpc.test"#
        ))
        .is_ok()
    );
    assert_eq!(
        problem(&grpc(r#"address: "127.0.0.1""#)),
        (
            "services[0].checks[0].spec.address".into(),
            "expected host:port such as \"127.0.0.1:50051\", found \"127.0.0.1\"".into()
        )
    );
    assert_eq!(
        problem(&grpc(r#"address: "h:1", ca_file: /etc/ca.pem"#)),
        (
            "services[0].checks[0].spec.ca_file".into(),
            "only applies with `tls: true`".into()
        )
    );
    let (path, message) = problem(&grpc(r#"address: "h:1", servce: db"#));
    assert_eq!(path, "services[0].checks[0].spec.servce");
    assert!(message.contains("did you mean `service`?"), "{message}");
}

#[test]
fn bfd_per_peer_over_native_defaults() {
    let with = |native: &str, peers: &str| {
        let text = BASE.replace(
            "  backend: exabgp",
            &format!(
                "\n  router_id: 10.0.0.2\n  local_asn: 2\n  local_address: 10.0.0.2\n  native: {{{native}}}\n  peers: [{peers}]"
            ),
        );
        yaml_with(&text, BackendKind::Native)
    };
    let bfd = |config: &Config| -> Vec<Option<crate::config::BfdSettings>> {
        config.peers.iter().map(|p| p.bfd).collect()
    };
    let ms = Duration::from_millis;
    // No block anywhere: no BFD.
    let config = with("", "{name: a, remote_address: 10.0.0.1, remote_asn: 1}").unwrap();
    assert_eq!(bfd(&config), [None]);
    // A peer's block enables it; what it leaves out is FRR's default.
    let config = with(
        "",
        "{name: a, remote_address: 10.0.0.1, remote_asn: 1, bfd: {min_tx: 100ms}}",
    )
    .unwrap();
    assert_eq!(
        bfd(&config),
        [Some(crate::config::BfdSettings {
            min_tx: ms(100),
            min_rx: ms(300),
            multiplier: 3
        })]
    );
    // announcer.native.bfd for every peer, field by field under a peer's
    // own, and `enabled: false` opts one out.
    let config = with(
        "bfd: {min_tx: 50ms, min_rx: 50ms, multiplier: 5}",
        "{name: a, remote_address: 10.0.0.1, remote_asn: 1, bfd: {min_rx: 200ms}}, \
         {name: b, remote_address: 10.0.0.3, remote_asn: 1, bfd: {enabled: false}}",
    )
    .unwrap();
    assert_eq!(
        bfd(&config),
        [
            Some(crate::config::BfdSettings {
                min_tx: ms(50),
                min_rx: ms(200),
                multiplier: 5
            }),
            None
        ]
    );
    // Bounds name where the value came from.
    let err = with(
        "bfd: {min_tx: 5ms}",
        "{name: a, remote_address: 10.0.0.1, remote_asn: 1, bfd: {multiplier: 0, min_rx: 2m}}",
    )
    .unwrap_err();
    let found: Vec<(String, String)> = err
        .problems()
        .iter()
        .map(|p| (p.path.clone(), p.message.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "announcer.native.bfd.min_tx".to_string(),
                "expected an interval from 10ms to 60s, found 5ms".to_string()
            ),
            (
                "announcer.peers[0].bfd.min_rx".to_string(),
                "expected an interval from 10ms to 60s, found 2m0s".to_string()
            ),
            (
                "announcer.peers[0].bfd.multiplier".to_string(),
                "expected 1 to 255, found 0".to_string()
            ),
        ]
    );
    // A typo is a config error, not a silent default.
    assert!(
        with(
            "",
            "{name: a, remote_address: 10.0.0.1, remote_asn: 1, bfd: {min_txx: 1s}}"
        )
        .is_err()
    );
}
