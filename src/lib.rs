//! anycastd: announce anycast or service prefixes over BGP only while the
//! services behind them are healthy.
//!
//! Data flows one way: [`config`] → [`engine`] (scheduling, rise/fall, the
//! desired route set) → [`backend`] (reconcile desired against announced).
//! [`checks`] know nothing of routes; backends know nothing of checks; both
//! sides of the engine–backend seam share the leaf [`route`].
//! [`metrics`] and [`status`] report what the engine and the backends did.

pub mod backend;
pub mod checks;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod metrics;
pub mod peers;
pub mod route;
pub mod status;

/// Selects ring as rustls's crypto provider, once per process. Every TLS
/// user (HTTP checks, TLS checks) calls this before building a client.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
