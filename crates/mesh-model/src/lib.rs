//! The pure model of lambdamesh: names and tenancy (`EntMeta`), catalog records, config entries and
//! their validation, intentions and their precedence, ACL rules and authorization decisions.
//!
//! Everything here is a value or a function from values to values: no I/O, no clocks, no async, no
//! global state. The store, the HTTP API and the xDS compiler build on these types; this crate must
//! never depend on any of them (nor on tokio, axum, or the filesystem).

pub mod acl;
pub mod catalog;
pub mod config_entry;
pub mod connect;
pub mod decode;
pub mod federation;
pub mod intentions;
pub mod migration;
pub mod names;

pub use config_entry::bexpr;
pub use names::EntMeta;
