//! Envoy configuration for lambdamesh proxies.
//!
//! ```text
//!  ProxyInputs (values: the proxy, its upstreams' endpoints, config entries, certificates)
//!        │  compile::compile — pure, deterministic, unit-tested on values
//!        v
//!  Resources (name → packed Any, per xDS type)
//!        │  ads::AdsServer — one watch channel per proxy (newest snapshot wins)
//!        v
//!  Envoy over ADS (state-of-the-world and delta), with per-type versions, nonces, ACK/NACK
//! ```
//!
//! This crate must not depend on the store, the HTTP server or any I/O source of state: the
//! server implements [`ads::SnapshotSource`] and feeds snapshots in. Bootstrap JSON for the
//! launcher is built here too ([`bootstrap`]), so the names it uses match the compiler's.

pub mod ads;
pub mod bootstrap;
pub mod compile;
mod pb;
pub mod resources;

pub use compile::{CertPair, Endpoint, ProxyInputs, ProxyKind, compile};
pub use resources::Resources;
