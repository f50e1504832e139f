//! `dns_lookup`: asks the configured resolver — and only it, never
//! /etc/hosts or resolv.conf — for the name's A and AAAA records (or one of
//! them, `record_type`). By default an error or an empty answer fails; with
//! `expect_rcode` every answer must carry that response code instead, and
//! `expect_answers` lists addresses or names (owners, CNAME targets) that
//! must all be in the answers. The engine's timeout bounds the attempt.
//!
//! The queries go straight to hickory's name server pool, below its
//! resolver: the resolver answers RFC 6761 names itself (`localhost` is
//! 127.0.0.1 and ::1 without a query; `.invalid` and `.onion` are NXDOMAIN),
//! and a health check must hear the server's answer for every name.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{DnsRequestOptions, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::{AttemptFuture, BuildError, Check, error_chain};
use crate::config::model::{DnsLookupSpec, DnsRecordType};

pub struct DnsLookup {
    /// Absolute (dot-terminated), so no search domain is ever appended.
    query: String,
    resolver_host: String,
    resolver_port: u16,
    options: ResolverOpts,
    /// `expect_rcode` as a code; unset: NOERROR with records.
    expect_rcode: Option<u16>,
    expect_answers: Vec<String>,
    record_type: DnsRecordType,
}

impl DnsLookup {
    pub fn new(spec: &DnsLookupSpec) -> Result<DnsLookup, BuildError> {
        let (host, port) = crate::config::split_host_port(&spec.resolver).ok_or_else(|| {
            BuildError::Invalid(format!("resolver \"{}\" is not host:port", spec.resolver))
        })?;
        let mut options = ResolverOpts::default();
        // Every attempt must ask the server: one try (the engine owns
        // retries) within the check's timeout; no cache or hosts file is
        // involved at the pool level.
        options.attempts = 1;
        options.timeout = spec.timeout.get();
        let query = if spec.query.ends_with('.') {
            spec.query.clone()
        } else {
            format!("{}.", spec.query)
        };
        Ok(DnsLookup {
            query,
            resolver_host: host,
            resolver_port: port,
            options,
            expect_rcode: match &spec.expect_rcode {
                None => None,
                Some(name) => Some(rcode_from_name(name).ok_or_else(|| {
                    BuildError::Invalid(format!("unknown response code \"{name}\""))
                })?),
            },
            expect_answers: spec.expect_answers.clone(),
            record_type: spec.record_type,
        })
    }

    /// The resolver's address; a name is looked up with the system resolver.
    async fn resolver_address(&self) -> Result<SocketAddr, String> {
        super::resolve(&self.resolver_host, self.resolver_port, None)
            .await
            .map_err(|e| format!("resolver: {e}"))
    }

    /// A pool of the one configured server, fresh for each attempt.
    fn pool(&self, server: SocketAddr) -> Result<NameServerPool<TokioRuntimeProvider>, String> {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let tls =
            TlsConfig::new().map_err(|e| format!("cannot set up a resolver for {server}: {e}"))?;
        let context = Arc::new(PoolContext::new(self.options.clone(), tls));
        Ok(NameServerPool::from_config(
            [name_server],
            context,
            TokioRuntimeProvider::default(),
        ))
    }

    /// The server's answer to `name` `record_type`: its response code and
    /// records. A transport failure, or a malformed reply, is an error.
    async fn ask(
        &self,
        pool: &NameServerPool<TokioRuntimeProvider>,
        name: Name,
        record_type: RecordType,
    ) -> Result<Answer, NetError> {
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = self.options.recursion_desired;
        options.use_edns = self.options.edns0;
        let response = match pool
            .lookup(Query::query(name, record_type), options)
            .first_answer()
            .await
        {
            Ok(response) => response,
            Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => {
                return Ok(Answer::empty(no_records.response_code));
            }
            Err(NetError::Dns(DnsError::ResponseCode(code))) => return Ok(Answer::empty(code)),
            Err(e) => return Err(e),
        };
        let mut answer = Answer::empty(response.metadata.response_code);
        for record in &response.answers {
            answer.names.push(normal_name(&record.name));
            match &record.data {
                RData::A(a) => answer.addresses.push(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => answer.addresses.push(IpAddr::V6(aaaa.0)),
                RData::CNAME(cname) => answer.names.push(normal_name(&cname.0)),
                _ => {}
            }
            if record.record_type() == record_type {
                answer.count += 1;
            }
        }
        Ok(answer)
    }

    /// Which record types to ask for.
    fn record_types(&self) -> &'static [RecordType] {
        match self.record_type {
            DnsRecordType::A => &[RecordType::A],
            DnsRecordType::Aaaa => &[RecordType::AAAA],
            DnsRecordType::Both => &[RecordType::A, RecordType::AAAA],
        }
    }

    /// "A", "AAAA" or "A or AAAA", as reasons name the records.
    fn wanted(&self) -> &'static str {
        match self.record_type {
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Both => "A or AAAA",
        }
    }

    /// The verdict on the answers to every asked type (in `record_types`
    /// order).
    fn judge(
        &self,
        query: &str,
        server: SocketAddr,
        answers: Vec<Result<Answer, NetError>>,
    ) -> Result<(), String> {
        let at = format!("{query} via {server}");
        let mut good = Vec::new();
        let mut first_error = None;
        for answer in answers {
            match answer {
                Ok(answer) => good.push(answer),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match self.expect_rcode {
            Some(expected) => {
                // Every question must be answered, each with that code.
                if let Some(e) = first_error {
                    return Err(reason(query, server, &e));
                }
                if let Some(other) = good.iter().find(|a| u16::from(a.rcode) != expected) {
                    return Err(format!(
                        "{at}: {}, expected {}",
                        rcode_name(other.rcode),
                        rcode_label(expected)
                    ));
                }
            }
            None => {
                // As before: one type with records is enough.
                if !good
                    .iter()
                    .any(|a| a.rcode == ResponseCode::NoError && a.count > 0)
                {
                    if let Some(e) = first_error {
                        return Err(reason(query, server, &e));
                    }
                    if let Some(other) = good.iter().find(|a| a.rcode != ResponseCode::NoError) {
                        return Err(format!("{at}: {}", rcode_name(other.rcode)));
                    }
                    return Err(format!("{at}: no {} records", self.wanted()));
                }
            }
        }
        let missing: Vec<&str> = self
            .expect_answers
            .iter()
            .filter(|want| !good.iter().any(|a| a.holds(want)))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let mut present: Vec<String> = good
                .iter()
                .flat_map(|a| a.addresses.iter().map(ToString::to_string))
                .collect();
            for answer in &good {
                for name in &answer.names {
                    if !present.contains(name) && name != query {
                        present.push(name.clone());
                    }
                }
            }
            let shown = if present.is_empty() {
                "none".to_string()
            } else {
                let mut list: Vec<String> = present.into_iter().take(8).collect();
                if list.len() == 8 {
                    list.push("…".into());
                }
                list.join(", ")
            };
            return Err(format!(
                "{at}: {} not in the answer (answered: {shown})",
                missing.join(", ")
            ));
        }
        Ok(())
    }
}

/// What the server said to one question.
struct Answer {
    rcode: ResponseCode,
    /// Records of the asked type.
    count: usize,
    /// Addresses in A and AAAA records.
    addresses: Vec<IpAddr>,
    /// Owner names and CNAME targets, lowercase and without the final dot.
    names: Vec<String>,
}

impl Answer {
    fn empty(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            count: 0,
            addresses: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Whether an `expect_answers` entry (an address or a name) is here.
    fn holds(&self, want: &str) -> bool {
        match want.parse::<IpAddr>() {
            Ok(ip) => self.addresses.contains(&ip),
            Err(_) => {
                let want = want.trim_end_matches('.').to_ascii_lowercase();
                self.names.contains(&want)
            }
        }
    }
}

fn normal_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// The response codes `expect_rcode` accepts, in code order (0 to 5).
pub const RCODE_NAMES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

/// The code of an `expect_rcode` name, case-insensitively.
pub fn rcode_from_name(name: &str) -> Option<u16> {
    RCODE_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| i as u16)
}

fn rcode_label(code: u16) -> String {
    RCODE_NAMES
        .get(usize::from(code))
        .map(|n| n.to_string())
        .unwrap_or_else(|| format!("RCODE{code}"))
}

fn rcode_name(code: ResponseCode) -> String {
    rcode_label(u16::from(code))
}

impl Check for DnsLookup {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let server = self.resolver_address().await?;
            let pool = self.pool(server)?;
            let query = self.query.trim_end_matches('.');
            let name = Name::from_ascii(&self.query)
                .map_err(|e| format!("{query}: not a domain name: {e}"))?;
            let answers = futures_util::future::join_all(
                self.record_types()
                    .iter()
                    .map(|t| self.ask(&pool, name.clone(), *t)),
            )
            .await;
            self.judge(query, server, answers)
        })
    }
}

fn reason(query: &str, server: SocketAddr, error: &NetError) -> String {
    format!("{query} via {server}: {}", error_chain(error))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::net::UdpSocket;

    use super::*;

    /// A DNS server on loopback that answers `name.test` A with 127.0.0.9
    /// (any other type: no data), `missing.test` with NXDOMAIN and every
    /// other name with REFUSED, and notes each question (name, type).
    async fn toy_server() -> (SocketAddr, Arc<Mutex<Vec<(String, u16)>>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let noted = asked.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok(Ok((n, client))) =
                tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await
            {
                let request = &buffer[..n];
                // The question's name: labels from offset 12 to a zero byte.
                let mut at = 12;
                let mut labels = Vec::new();
                while at < n && request[at] != 0 {
                    let len = usize::from(request[at]);
                    labels
                        .push(String::from_utf8_lossy(&request[at + 1..at + 1 + len]).to_string());
                    at += 1 + len;
                }
                let question_end = at + 5;
                let name = labels.join(".").to_ascii_lowercase();
                let record_type = u16::from_be_bytes([request[at + 1], request[at + 2]]);
                noted.lock().unwrap().push((name.clone(), record_type));
                let (rcode, answer) = match (name.as_str(), record_type) {
                    ("name.test", 1) => (0u8, true),
                    ("name.test", _) => (0, false),
                    ("missing.test", _) => (3, false),
                    _ => (5, false),
                };
                let mut reply = request[..question_end].to_vec();
                reply[2] = 0x80 | (request[2] & 0x01); // response, RD copied
                reply[3] = 0x80 | rcode; // RA
                reply[4..12].copy_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
                if answer {
                    // name: pointer to the question's; A IN, TTL 60, 127.0.0.9
                    reply.extend_from_slice(&[
                        0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 9,
                    ]);
                }
                let _ = socket.send_to(&reply, client).await;
            }
        });
        (address, asked)
    }

    async fn lookup(query: &str, resolver: SocketAddr) -> Result<(), String> {
        lookup_with(query, resolver, |_| {}).await
    }

    async fn lookup_with(
        query: &str,
        resolver: SocketAddr,
        change: impl FnOnce(&mut DnsLookupSpec),
    ) -> Result<(), String> {
        let mut spec = DnsLookupSpec {
            query: query.into(),
            resolver: resolver.to_string(),
            expect_rcode: None,
            expect_answers: Vec::new(),
            record_type: DnsRecordType::Both,
            tries: 1,
            interval: Duration::from_millis(100).into(),
            timeout: Duration::from_secs(2).into(),
        };
        change(&mut spec);
        let check = DnsLookup::new(&spec).unwrap();
        tokio::time::timeout(Duration::from_secs(5), check.attempt())
            .await
            .expect("the lookup should end within its own timeout")
    }

    #[tokio::test]
    async fn expected_rcode_answers_and_record_type() {
        let (server, asked) = toy_server().await;
        let nxdomain = |s: &mut DnsLookupSpec| s.expect_rcode = Some("NXDOMAIN".into());
        assert_eq!(lookup_with("missing.test", server, nxdomain).await, Ok(()));
        assert_eq!(
            lookup_with("name.test", server, nxdomain).await,
            Err(format!(
                "name.test via {server}: NOERROR, expected NXDOMAIN"
            ))
        );
        assert_eq!(
            lookup_with("other.test", server, nxdomain).await,
            Err(format!(
                "other.test via {server}: REFUSED, expected NXDOMAIN"
            ))
        );
        // NOERROR named explicitly: the code alone decides, even when empty.
        assert_eq!(
            lookup_with("name.test", server, |s| {
                s.expect_rcode = Some("noerror".into());
                s.record_type = DnsRecordType::Aaaa;
            })
            .await,
            Ok(())
        );
        assert_eq!(
            lookup_with("name.test", server, |s| s.expect_answers =
                vec!["127.0.0.9".into(), "NAME.test.".into()])
            .await,
            Ok(())
        );
        assert_eq!(
            lookup_with("name.test", server, |s| s.expect_answers =
                vec!["127.0.0.8".into(), "127.0.0.9".into()])
            .await,
            Err(format!(
                "name.test via {server}: 127.0.0.8 not in the answer (answered: 127.0.0.9)"
            ))
        );
        asked.lock().unwrap().clear();
        assert_eq!(
            lookup_with("name.test", server, |s| s.record_type = DnsRecordType::Aaaa).await,
            Err(format!("name.test via {server}: no AAAA records"))
        );
        assert_eq!(
            asked.lock().unwrap().clone(),
            vec![("name.test".to_string(), 28)],
            "only AAAA is asked"
        );
        assert_eq!(
            lookup_with("name.test", server, |s| s.record_type = DnsRecordType::A).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn answers_and_reasons_come_from_the_server() {
        let (server, asked) = toy_server().await;
        assert_eq!(lookup("name.test", server).await, Ok(()));
        assert_eq!(
            lookup("missing.test", server).await,
            Err(format!("missing.test via {server}: NXDOMAIN"))
        );
        let questions = asked.lock().unwrap().clone();
        for question in [("name.test", 1), ("name.test", 28), ("missing.test", 1)] {
            assert!(
                questions.contains(&(question.0.into(), question.1)),
                "{question:?} not asked: {questions:?}"
            );
        }
    }

    /// hickory's resolver answers `localhost` itself (RFC 6761) and this
    /// machine's /etc/hosts knows it too, but the check asks the server,
    /// which refuses it: the check fails.
    #[tokio::test]
    async fn localhost_is_asked_of_the_server_too() {
        let (server, asked) = toy_server().await;
        let reason = lookup("localhost", server).await.unwrap_err();
        assert!(
            reason.starts_with(&format!("localhost via {server}: ")),
            "{reason}"
        );
        let questions = asked.lock().unwrap().clone();
        assert!(
            questions.contains(&("localhost".into(), 1))
                && questions.contains(&("localhost".into(), 28)),
            "the server was not asked for localhost: {questions:?}"
        );
    }
}
