//! consul-client (being built).
