//! The built-in Connect CA, as pure functions: generate a P-256 root for a trust domain, sign
//! SPIFFE leaf certificates with it, compute Consul's identifiers (root `ID`, `SigningKeyID`,
//! colon-hex serials), and parse/validate the CA configuration body of
//! `PUT /v1/connect/ca/configuration`.
//!
//! ```text
//!  server (HTTP layer) ── generate_root / sign_leaf(now, serial) ──▶ PEM strings ──▶ store op
//! ```
//!
//! Everything that varies is passed in: the current time, serial numbers, existing keys. The only
//! source of entropy is key generation, which the crypto backend (`ring`) needs. This crate must
//! not depend on the store, HTTP, tokio or any clock.

pub mod config;
mod der;
pub mod federation;
mod sign;

pub use config::{CaConfig, ConfigError, ConfigRequest, format_duration, parse_config_request};
pub use der::{DerError, cert_validity, uri_sans};
pub use sign::{
    CaError, GeneratedRoot, IssuedLeaf, LEAF_BACKDATE, ROOT_NAME, SigningRoot, colon_hex,
    generate_root, serial_hex, sign_leaf,
};
