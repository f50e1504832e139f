//! `dns_lookup`: asks the configured resolver — and only it, never
//! /etc/hosts or resolv.conf — for the name's A and AAAA records. An error or
//! an empty answer fails; the engine's timeout bounds the whole attempt.

use std::net::SocketAddr;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

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
        // Every attempt must ask the server: no cache, no hosts file, one try
        // (the engine owns retries), both families as the original did.
        options.cache_size = 0;
        options.use_hosts_file = ResolveHosts::Never;
        options.attempts = 1;
        options.timeout = spec.timeout.get();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
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

    fn resolver(&self, server: SocketAddr) -> Result<TokioResolver, String> {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(self.options.clone())
            .build()
            .map_err(|e| format!("cannot set up a resolver for {server}: {e}"))
    }
}

impl Check for DnsLookup {
    fn attempt(&self) -> AttemptFuture<'_> {
        Box::pin(async move {
            let server = self.resolver_address().await?;
            let resolver = self.resolver(server)?;
            let query = self.query.trim_end_matches('.');
            match resolver.lookup_ip(self.query.as_str()).await {
                Ok(answer) if answer.iter().next().is_some() => Ok(()),
                Ok(_) => Err(format!(
                    "{query} via {server}: empty answer, expected A or AAAA records"
                )),
                Err(e) if e.is_nx_domain() => Err(format!("{query} via {server}: NXDOMAIN")),
                Err(e) if e.is_no_records_found() => {
                    Err(format!("{query} via {server}: no A or AAAA records"))
                }
                Err(e) => Err(format!("{query} via {server}: {}", error_chain(&e))),
            }
        })
    }
}
