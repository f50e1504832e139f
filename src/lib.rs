//! anycastd: announce anycast or service prefixes over BGP only while the
//! services behind them are healthy.
//!
//! Data flows one way: [`config`] → [`engine`] (scheduling, rise/fall, the
//! desired route set) → [`backend`] (reconcile desired against announced).
//! [`checks`] know nothing of routes; backends know nothing of checks.

pub mod config;
