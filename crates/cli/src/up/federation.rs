//! What `up` adds for a file of several datacenters (`docs/up.md`, "Several datacenters"): a
//! server's federation settings, as `docs/multi-dc.md` asks an operator to write them, and when a
//! secondary has joined the primary.

use std::{ffi::OsString, path::Path};

use anyhow::anyhow;
use serde_json::Value;

use super::{
    calls::Consul,
    run::{PartError, Run, free_port},
};

impl Run {
    /// A federated server's flags and config file (`docs/multi-dc.md`): its datacenter, the
    /// server port, mesh-gateway federation on; a secondary also the primary's mesh gateways
    /// and `ca_file`, the primary's roots as its HTTP API shows them now.
    pub(super) fn federation_args(
        &mut self,
        dc: usize,
        root: &Path,
    ) -> Result<Vec<OsString>, PartError> {
        let d = self.dc(dc).clone();
        std::fs::create_dir_all(root).map_err(anyhow::Error::from)?;
        let port = match d.server.server_port {
            Some(p) => p,
            None => free_port()?,
        };
        let primary = self.t.primary().clone();
        let mut config = format!(
            "datacenter = {:?}\nprimary_datacenter = {:?}\nconnect {{\n  enabled = true\n  enable_mesh_gateway_wan_federation = true\n}}\n",
            d.name, primary.name
        );
        if dc != self.t.primary {
            let roots = self
                .consul(self.t.primary)
                .get_json("/v1/agent/connect/ca/roots")
                .ok_or_else(|| anyhow!("cannot read {}'s CA roots", primary.name))?;
            let pems: String = roots["Roots"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["RootCert"].as_str())
                .map(|pem| format!("{}\n", pem.trim_end()))
                .collect();
            if pems.is_empty() {
                return Err(anyhow!("{} has no CA roots yet", primary.name).into());
            }
            let ca_file = root.join("primary-roots.pem");
            std::fs::write(&ca_file, pems).map_err(anyhow::Error::from)?;
            let gateways: Vec<String> = self
                .t
                .mesh_gateways(self.t.primary)
                .map(|i| format!("\"127.0.0.1:{}\"", primary.gateways[i].port))
                .collect();
            config.push_str(&format!(
                "primary_gateways = [{}]\ntls {{\n  defaults {{\n    ca_file = {:?}\n  }}\n}}\n",
                gateways.join(", "),
                ca_file.display().to_string()
            ));
        }
        let file = root.join("server.hcl");
        std::fs::write(&file, config).map_err(anyhow::Error::from)?;
        let mut args: Vec<OsString> = ["-server-port", &port.to_string(), "-config-file"]
            .into_iter()
            .map(OsString::from)
            .collect();
        args.push(file.into_os_string());
        Ok(args)
    }
}

/// Whether `secondary` has joined `primary`: the primary's active root, with the intermediate
/// the primary signed for it.
pub(super) fn joined(primary: &Consul, secondary: &Consul) -> bool {
    let (Some(p), Some(s)) = (
        primary.get_json("/v1/agent/connect/ca/roots"),
        secondary.get_json("/v1/agent/connect/ca/roots"),
    ) else {
        return false;
    };
    let active = |r: &Value| {
        r["Roots"]
            .as_array()
            .and_then(|roots| roots.iter().find(|root| root["Active"] == true).cloned())
    };
    p["ActiveRootID"].is_string()
        && s["ActiveRootID"] == p["ActiveRootID"]
        && active(&s).is_some_and(|root| root["IntermediateCerts"].is_array())
}
