//! Scaffolding shared by the tests and benchmarks that run the real binaries: free loopback ports
//! for children that must be told their address up front ([`free_port`]), the addresses a
//! server started on port 0 announces ([`server_addresses`]), and where the real third-party
//! parts are ([`venv_python`], [`envoy_path`]). It depends on nothing; the product uses only
//! [`free_port`], for `lambdamesh up --free-ports`, so a run and parallel tests draw ports from
//! the same locked stretches and never from the kernel's ephemeral range.

mod etcd;
mod ports;
mod real_parts;

pub use etcd::EtcdCluster;
pub use ports::free_port;
pub use real_parts::{envoy_path, parse_prometheus, venv_python};

/// The HTTP API and xDS (gRPC) addresses (`127.0.0.1:PORT` each) from the line a `lambdamesh`
/// server logs once it serves (`lambdamesh server ready: HTTP API at http://ADDR/v1/ , xDS (gRPC) at ADDR ...`): the
/// only place the kernel-chosen ports of a server started on port 0 are told. `None` for any
/// other line; the gRPC address is empty when the line names none.
pub fn server_addresses(line: &str) -> Option<(String, String)> {
    let rest = line.split("HTTP API at http://").nth(1)?;
    let http = rest.split('/').next().unwrap_or("").to_owned();
    let grpc = line
        .split("xDS (gRPC) at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_owned();
    Some((http, grpc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_both_addresses() {
        let line = "INFO lambdamesh server ready: HTTP API at http://127.0.0.1:41234/v1/ , xDS (gRPC) at 127.0.0.1:41235 (try: curl http://127.0.0.1:41234/v1/catalog/services)";
        assert_eq!(
            server_addresses(line),
            Some(("127.0.0.1:41234".to_owned(), "127.0.0.1:41235".to_owned()))
        );
        assert_eq!(
            server_addresses("serving HTTP API at http://127.0.0.1:1/"),
            Some(("127.0.0.1:1".to_owned(), String::new()))
        );
        assert_eq!(server_addresses("store opened"), None);
    }
}
