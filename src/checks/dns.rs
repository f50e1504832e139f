//! `dns_lookup`: asks the configured resolver — and only it, never
//! /etc/hosts or resolv.conf — for the name's A and AAAA records. An error or
//! an empty answer fails; the engine's timeout bounds the whole attempt.
//!
//! The queries go straight to hickory's name server pool, below its
//! resolver: the resolver answers RFC 6761 names itself (`localhost` is
//! 127.0.0.1 and ::1 without a query; `.invalid` and `.onion` are NXDOMAIN),
//! and a health check must hear the server's answer for every name.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::proto::op::{DnsRequestOptions, Query};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::{AttemptFuture, BuildError, Check, error_chain};
use crate::config::model::DnsLookupSpec;

pub struct DnsLookup {
    /// Absolute (dot-terminated), so no search domain is ever appended.
    query: String,
    resolver_host: String,
    resolver_port: u16,
    options: ResolverOpts,
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

    /// How many records of `record_type` the server answers for `name`.
    async fn ask(
        &self,
        pool: &NameServerPool<TokioRuntimeProvider>,
        name: Name,
        record_type: RecordType,
    ) -> Result<usize, NetError> {
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = self.options.recursion_desired;
        options.use_edns = self.options.edns0;
        let response = pool
            .lookup(Query::query(name, record_type), options)
            .first_answer()
            .await?;
        Ok(response
            .answers
            .iter()
            .filter(|r| r.record_type() == record_type)
            .count())
    }
}

impl Check for DnsLookup {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let server = self.resolver_address().await?;
            let pool = self.pool(server)?;
            let query = self.query.trim_end_matches('.');
            let name = Name::from_ascii(&self.query)
                .map_err(|e| format!("{query}: not a domain name: {e}"))?;
            let (v4, v6) = futures_util::future::join(
                self.ask(&pool, name.clone(), RecordType::A),
                self.ask(&pool, name, RecordType::AAAA),
            )
            .await;
            match (v4, v6) {
                (Ok(a), _) if a > 0 => Ok(()),
                (_, Ok(aaaa)) if aaaa > 0 => Ok(()),
                (Ok(_), Ok(_)) => Err(format!(
                    "{query} via {server}: empty answer, expected A or AAAA records"
                )),
                // Both failed, or one failed and the other was empty: the
                // failure says more (the A query's when both failed).
                (Err(e), _) | (Ok(_), Err(e)) => Err(reason(query, server, &e)),
            }
        })
    }
}

fn reason(query: &str, server: SocketAddr, error: &NetError) -> String {
    if error.is_nx_domain() {
        format!("{query} via {server}: NXDOMAIN")
    } else if error.is_no_records_found() {
        format!("{query} via {server}: no A or AAAA records")
    } else {
        format!("{query} via {server}: {}", error_chain(error))
    }
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
        let check = DnsLookup::new(&DnsLookupSpec {
            query: query.into(),
            resolver: resolver.to_string(),
            tries: 1,
            interval: Duration::from_millis(100).into(),
            timeout: Duration::from_secs(2).into(),
        })
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), check.attempt())
            .await
            .expect("the lookup should end within its own timeout")
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
