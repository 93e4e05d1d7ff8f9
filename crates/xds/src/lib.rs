//! Envoy configuration for lambdamesh proxies.
//!
//! ```text
//!  borrowed state (the server's store, through deps::MeshState)
//!        │  deps::discover — what the proxy depends on (→ the server's watch keys), the entries
//!        │  and endpoints it reads, its upstreams' discovery chains (compiled once)
//!        v
//!  ProxyInputs (values: the proxy, its upstreams' endpoints, config entries, certificates)
//!        │  compile::compile_with_chains — pure, deterministic, unit-tested on values
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
pub mod deps;
mod pb;
pub mod resources;

pub use compile::{CertPair, Endpoint, ProxyInputs, ProxyKind, compile, compile_with_chains};
pub use resources::Resources;
