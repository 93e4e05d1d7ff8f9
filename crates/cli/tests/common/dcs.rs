//! Two datacenters on loopback: dc1 the primary, secondaries joined through `primary_gateways`
//! (`docs/multi-dc.md`), and their mesh gateways (real Envoy, `-expose-servers`).

use std::path::Path;

use super::Proc;
use super::mesh::{Envoy, free_port, get_json};

pub fn primary(dir: &Path, server_port: u16) -> Proc {
    primary_with(dir, server_port, "")
}

pub fn primary_with(dir: &Path, server_port: u16, extra: &str) -> Proc {
    let cfg = dir.join("dc1.hcl");
    std::fs::write(
        &cfg,
        format!("datacenter = \"dc1\"\nconnect {{\n  enabled = true\n  enable_mesh_gateway_wan_federation = true\n}}\n{extra}"),
    )
    .unwrap();
    Proc::start(&[
        "server",
        "-data-dir",
        dir.join("dc1").to_str().unwrap(),
        "-config-file",
        cfg.to_str().unwrap(),
        "-server-port",
        &server_port.to_string(),
    ])
}

pub fn secondary(dir: &Path, dc: &str, ca_file: &Path, gateways: &[String]) -> Proc {
    secondary_with(dir, dc, ca_file, gateways, "")
}

pub fn secondary_with(
    dir: &Path,
    dc: &str,
    ca_file: &Path,
    gateways: &[String],
    extra: &str,
) -> Proc {
    let cfg = dir.join(format!("{dc}.hcl"));
    let list: Vec<String> = gateways.iter().map(|g| format!("{g:?}")).collect();
    std::fs::write(
        &cfg,
        format!(
            r#"datacenter = "{dc}"
primary_datacenter = "dc1"
primary_gateways = [{}]
primary_gateways_interval = "1s"
connect {{
  enabled = true
  enable_mesh_gateway_wan_federation = true
}}
tls {{ defaults {{ ca_file = {:?} }} }}
{extra}
"#,
            list.join(", "),
            ca_file.to_str().unwrap()
        ),
    )
    .unwrap();
    Proc::start(&[
        "server",
        "-data-dir",
        dir.join(dc).to_str().unwrap(),
        "-config-file",
        cfg.to_str().unwrap(),
        "-server-port",
        &free_port().to_string(),
    ])
}

pub fn roots_file(dir: &Path, http: &str) -> std::path::PathBuf {
    let roots = get_json(http, "/v1/agent/connect/ca/roots");
    let pems: String = roots["Roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["RootCert"].as_str().unwrap().to_owned())
        .collect();
    let path = dir.join("dc1-roots.pem");
    std::fs::write(&path, pems).unwrap();
    path
}

pub fn mesh_gateway(dc: &Proc, port: u16) -> Envoy {
    Envoy::start(
        &dc.http,
        &dc.grpc,
        &[
            "-gateway",
            "mesh",
            "-register",
            "-expose-servers",
            "-service",
            "mgw",
            "-address",
            &format!("127.0.0.1:{port}"),
        ],
    )
}
