//! `http_2xx`: one HTTP request per attempt; the final status after following
//! up to 10 redirects must be 200–299 (or one of `expect_status`), and the
//! body may have to contain a substring or match a regular expression.
//!
//! By default every attempt opens a new TCP connection (and makes a full TLS
//! handshake, no session resumption) and asks the server to close it
//! (`Connection: close`, as kubelet's probes do), so a listener that stopped
//! accepting fails the check even while an old connection still works, and
//! no TIME_WAIT sockets pile up on this side. `keepalive: true` reuses pooled
//! connections instead. Clients are shared: one per (keepalive, follow
//! redirects) pair, built once; only a check with its own trust (`ca_file`)
//! or TLS name (`server_name`) gets a client of its own, built with the check.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};
use rustls::client::danger::ServerCertVerifier;

use super::{AttemptFuture, BuildError, Check, error_chain};
use crate::config::model::{HTTP_BODY_LIMIT, Http2xxSpec};

/// The original's User-Agent; a `User-Agent` header in the spec replaces it.
const USER_AGENT: &str = "anycastd/1.0 (http_2xx checker)";
/// Idle connections kept per host by keep-alive clients: each holds ~20 KiB
/// of buffers, and with services spread over schedule slots one slot's
/// worth is enough.
const POOL_IDLE_PER_HOST: usize = 128;
/// Characters of a body quoted in a failure reason.
const QUOTE_CHARS: usize = 60;

/// What a client is built for; all but the shared cases are per check.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Mode {
    keepalive: bool,
    follow_redirects: bool,
}

enum Trust {
    System,
    Roots(Arc<rustls::RootCertStore>),
}

/// rustls settings: ring, the system roots (or `ca_file`), h2 and http/1.1,
/// and no session resumption unless connections are kept alive anyway.
fn tls_config(trust: &Trust, mode: Mode) -> Result<rustls::ClientConfig, String> {
    crate::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::System => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| format!("cannot load the system's certificate roots: {e}"))?,
        ),
        Trust::Roots(roots) => rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("cannot use the certificates: {e}"))?,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if !mode.keepalive {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

fn build_client(
    mode: Mode,
    trust: &Trust,
    resolver: Option<Arc<NameOverride>>,
) -> Result<Client, String> {
    let redirect = if mode.follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    let mut builder = Client::builder()
        .use_preconfigured_tls(tls_config(trust, mode)?)
        .redirect(redirect)
        .user_agent(USER_AGENT)
        // A health check must reach the service itself, never a proxy.
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(if mode.keepalive {
            POOL_IDLE_PER_HOST
        } else {
            0
        });
    if !mode.keepalive {
        // A connection lives for one request, bounded by the attempt's
        // timeout: TCP keep-alive probes and a user timeout would only cost
        // five setsockopt calls per attempt.
        builder = builder
            .tcp_keepalive(None)
            .tcp_keepalive_interval(None)
            .tcp_keepalive_retries(None)
            .tcp_user_timeout(None);
    }
    if let Some(resolver) = resolver {
        builder = builder.dns_resolver(resolver);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

/// The clients shared by every check without `ca_file` or `server_name`.
fn shared_client(mode: Mode) -> Result<&'static Client, &'static str> {
    static CLIENTS: [OnceLock<Result<Client, String>>; 4] = [const { OnceLock::new() }; 4];
    let index = usize::from(mode.keepalive) * 2 + usize::from(mode.follow_redirects);
    CLIENTS[index]
        .get_or_init(|| build_client(mode, &Trust::System, None))
        .as_ref()
        .map_err(String::as_str)
}

/// `server_name`: the URL's host is replaced by this name (so SNI,
/// certificate verification and `Host` use it) and the name resolves to
/// the original host.
struct NameOverride {
    name: String,
    target: String,
}

impl Resolve for NameOverride {
    fn resolve(&self, name: Name) -> Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.target.clone()
        } else {
            name.as_str().to_string()
        };
        Box::pin(async move {
            // Port 0: the connector puts in the URL's port.
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(Box::new(std::iter::once(SocketAddr::new(ip, 0))) as Addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

enum ClientRef {
    Shared(Mode),
    Own(Client),
}

pub struct Http2xx {
    method: Method,
    /// The URL requested (its host replaced by `server_name` if set).
    url: Url,
    /// The URL as configured, for reasons.
    shown_url: String,
    headers: HeaderMap,
    payload: Option<String>,
    client: ClientRef,
    /// Accepted statuses, inclusive ranges; `expected` says them in words.
    statuses: Vec<(u16, u16)>,
    expected: String,
    /// `expect_body` (escaped) and `expect_body_regex`, with their text.
    body_substring: Option<(String, regex::bytes::Regex)>,
    body_regex: Option<(String, regex::bytes::Regex)>,
}

impl Http2xx {
    pub fn new(spec: &Http2xxSpec) -> Result<Http2xx, BuildError> {
        let invalid = BuildError::Invalid;
        let mut url =
            Url::parse(&spec.url).map_err(|e| invalid(format!("url \"{}\": {e}", spec.url)))?;
        let method = Method::from_str(&spec.method)
            .map_err(|_| invalid(format!("method \"{}\" is not valid", spec.method)))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let name = HeaderName::from_str(name)
                .map_err(|_| invalid(format!("header name \"{name}\" is not valid")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("header \"{name}\" has an invalid value")))?;
            headers.insert(name, value);
        }
        if !spec.keepalive {
            // The server closes: no TIME_WAIT on our side, and no idle
            // connection left behind on its side.
            headers
                .entry(CONNECTION)
                .or_insert(HeaderValue::from_static("close"));
        }

        let mut statuses = Vec::new();
        for entry in &spec.expect_status {
            statuses.push(entry.range().map_err(invalid)?);
        }
        let expected = if statuses.is_empty() {
            statuses.push((200, 299));
            "2xx".to_string()
        } else {
            statuses
                .iter()
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        // An expected 3xx is only ever seen if redirects are not followed.
        let follow_redirects = !statuses.iter().any(|&(lo, hi)| lo <= 399 && hi >= 300);
        let mode = Mode {
            keepalive: spec.keepalive,
            follow_redirects,
        };

        // A substring is searched as an escaped regex: regex's literal
        // search is the fast one.
        let compile = |key: &str, text: &String, pattern: &str| {
            regex::bytes::Regex::new(pattern)
                .map(|re| (text.clone(), re))
                .map_err(|e| invalid(format!("{key}: {e}")))
        };
        let body_substring = spec
            .expect_body
            .as_ref()
            .map(|text| compile("expect_body", text, &regex::escape(text)))
            .transpose()?;
        let body_regex = spec
            .expect_body_regex
            .as_ref()
            .map(|text| compile("expect_body_regex", text, text))
            .transpose()?;

        let client = if spec.ca_file.is_none() && spec.server_name.is_none() {
            ClientRef::Shared(mode)
        } else {
            let trust = match &spec.ca_file {
                None => Trust::System,
                Some(path) => Trust::Roots(Arc::new(read_roots(path).map_err(invalid)?)),
            };
            let resolver = match &spec.server_name {
                None => None,
                Some(name) => {
                    let target = match url.host_str() {
                        Some(host) => host
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                        None => return Err(invalid(format!("url \"{}\" has no host", spec.url))),
                    };
                    url.set_host(Some(name))
                        .map_err(|e| invalid(format!("server_name \"{name}\": {e}")))?;
                    Some(Arc::new(NameOverride {
                        name: name.trim_end_matches('.').to_string(),
                        target,
                    }))
                }
            };
            ClientRef::Own(build_client(mode, &trust, resolver).map_err(invalid)?)
        };

        Ok(Http2xx {
            method,
            url,
            shown_url: spec.url.clone(),
            headers,
            payload: spec.payload.clone(),
            client,
            statuses,
            expected,
            body_substring,
            body_regex,
        })
    }

    fn status_ok(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }

    /// Why `body` (the first bytes, at most the limit) fails the body
    /// expectations, if it does.
    fn body_problem(&self, body: &[u8], truncated: bool) -> Option<String> {
        let got = || {
            let shown: String = String::from_utf8_lossy(body)
                .chars()
                .take(QUOTE_CHARS)
                .collect();
            let more = if truncated || shown.len() < body.len() {
                "…"
            } else {
                ""
            };
            format!(
                "got {}{} bytes: \"{}\"{more}",
                body.len(),
                if truncated { "+" } else { "" },
                shown.escape_debug()
            )
        };
        let limit = if truncated {
            format!(" in the first {HTTP_BODY_LIMIT} bytes")
        } else {
            String::new()
        };
        if let Some((text, re)) = &self.body_substring {
            if !re.is_match(body) {
                return Some(format!(
                    "expected body containing \"{}\"{limit}, {}",
                    text.escape_debug(),
                    got()
                ));
            }
        }
        if let Some((pattern, re)) = &self.body_regex {
            if !re.is_match(body) {
                return Some(format!(
                    "expected body matching /{}/{limit}, {}",
                    pattern.escape_debug(),
                    got()
                ));
            }
        }
        None
    }
}

/// Reads a PEM bundle into a root store; at least one certificate.
fn read_roots(path: &str) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("ca_file \"{path}\": {e}"))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("ca_file \"{path}\": {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("ca_file \"{path}\": {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("ca_file \"{path}\" holds no PEM certificate"));
    }
    Ok(store)
}

impl Check for Http2xx {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let client = match &self.client {
                ClientRef::Own(client) => client,
                ClientRef::Shared(mode) => shared_client(*mode)?,
            };
            let mut request = client
                .request(self.method.clone(), self.url.clone())
                .headers(self.headers.clone());
            if let Some(payload) = &self.payload {
                request = request.body(payload.clone());
            }
            let mut response = request
                .send()
                .await
                .map_err(|e| format!("{} {}: {}", self.method, self.shown_url, error_chain(&e)))?;
            let status = response.status();
            let status_ok = self.status_ok(status.as_u16());
            // The body is always read (up to the limit, within the timeout):
            // a server that sends its headers and then stalls is not serving,
            // and with keep-alive the connection can then be reused.
            let wants_body =
                status_ok && (self.body_substring.is_some() || self.body_regex.is_some());
            let mut body = Vec::new();
            let truncated = {
                let mut read = 0;
                while read < HTTP_BODY_LIMIT {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            read += chunk.len();
                            if wants_body {
                                let room = HTTP_BODY_LIMIT - body.len();
                                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                            }
                        }
                        Ok(None) => break,
                        Err(e) if wants_body => {
                            return Err(format!(
                                "{} {}: reading the body: {}",
                                self.method,
                                self.shown_url,
                                error_chain(&e)
                            ));
                        }
                        Err(_) => break,
                    }
                }
                // Whether anything follows the limit (one more read only
                // when the body filled the limit exactly).
                wants_body
                    && read >= HTTP_BODY_LIMIT
                    && (read > HTTP_BODY_LIMIT || !matches!(response.chunk().await, Ok(None)))
            };
            if !status_ok {
                let from = if response.url().as_str() == self.url.as_str() {
                    self.shown_url.clone()
                } else {
                    response.url().to_string()
                };
                return Err(format!(
                    "expected status {}, got {status} from {from}",
                    self.expected
                ));
            }
            match self.body_problem(&body, truncated) {
                Some(problem) => Err(format!("{problem} from {}", self.shown_url)),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::StatusMatch;

    fn spec(extra: &str) -> Http2xxSpec {
        let text = format!(
            "{{\"url\": \"http://127.0.0.1:1/\", \"method\": \"GET\", \"tries\": 1, \"interval\": \"1s\", \"timeout\": \"1s\"{extra}}}"
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn status_entries_become_ranges() {
        let cases = [
            (StatusMatch::Code(204), Ok((204, 204))),
            (StatusMatch::Text("300-399".into()), Ok((300, 399))),
            (StatusMatch::Text("2xx".into()), Ok((200, 299))),
            (StatusMatch::Text("404".into()), Ok((404, 404))),
        ];
        for (entry, want) in cases {
            assert_eq!(entry.range(), want, "{entry:?}");
        }
        for bad in [
            StatusMatch::Code(99),
            StatusMatch::Code(600),
            StatusMatch::Text("399-300".into()),
            StatusMatch::Text("abc".into()),
            StatusMatch::Text("2x".into()),
            StatusMatch::Text("200-".into()),
        ] {
            assert!(bad.range().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_is_fresh_with_connection_close() {
        let check = Http2xx::new(&spec("")).unwrap();
        assert_eq!(check.headers.get(CONNECTION).unwrap(), "close");
        assert!(matches!(
            check.client,
            ClientRef::Shared(Mode {
                keepalive: false,
                follow_redirects: true
            })
        ));
        assert_eq!(check.expected, "2xx");
        let check = Http2xx::new(&spec(", \"keepalive\": true")).unwrap();
        assert!(check.headers.get(CONNECTION).is_none());
    }

    #[test]
    fn expected_3xx_stops_following_redirects() {
        let check = Http2xx::new(&spec(", \"expect_status\": [200, \"300-399\"]")).unwrap();
        assert_eq!(check.expected, "200, 300-399");
        assert!(matches!(
            check.client,
            ClientRef::Shared(Mode {
                follow_redirects: false,
                ..
            })
        ));
        assert!(check.status_ok(302) && check.status_ok(200) && !check.status_ok(204));
    }

    #[test]
    fn body_reasons_say_what_was_expected_and_what_came() {
        let check = Http2xx::new(&spec(", \"expect_body\": \"ok\"")).unwrap();
        assert_eq!(check.body_problem(b"all ok here", false), None);
        let reason = check.body_problem(b"bad\nnews", false).unwrap();
        assert_eq!(
            reason,
            "expected body containing \"ok\", got 8 bytes: \"bad\\nnews\""
        );
        let reason = check.body_problem(b"x", true).unwrap();
        assert!(reason.contains("in the first 65536 bytes"), "{reason}");
        assert!(reason.contains("got 1+ bytes"), "{reason}");

        let check = Http2xx::new(&spec(", \"expect_body_regex\": \"^ok\\\\b\"")).unwrap();
        assert_eq!(check.body_problem(b"ok then", false), None);
        let reason = check.body_problem(b"not ok", false).unwrap();
        assert_eq!(
            reason,
            "expected body matching /^ok\\\\b/, got 6 bytes: \"not ok\""
        );

        let both = Http2xx::new(&spec(
            ", \"expect_body\": \"up\", \"expect_body_regex\": \"^status\"",
        ))
        .unwrap();
        assert_eq!(both.body_problem(b"status: up", false), None);
        assert!(both.body_problem(b"status: down", false).is_some());
        assert!(both.body_problem(b"up", false).is_some());
    }
}
