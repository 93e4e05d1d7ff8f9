//! What `migrate` reads and writes in the control plane, each with check-and-set: SERVICE's
//! `service-splitter` (an edit by anyone else moves its ModifyIndex and stops the migration) and
//! the migration record in the key/value store (`lambdamesh/migrations/<service>`).

use anyhow::{Context, anyhow};
use consul_client::{Client, ClientError, Tenancy};
use mesh_model::migration::record::{self, MigrationRecord};
use serde_json::Value;

/// The splitter as stored: its JSON and ModifyIndex.
#[derive(Debug, Clone)]
pub struct Splitter {
    pub json: Value,
    pub modify_index: u64,
}

pub fn splitter(client: &Client, service: &str) -> anyhow::Result<Option<Splitter>> {
    match client.config_entry("service-splitter", service, &Tenancy::DEFAULT) {
        Ok(e) => Ok(Some(Splitter {
            modify_index: e.json["ModifyIndex"].as_u64().unwrap_or(0),
            json: e.json,
        })),
        Err(ClientError::Http { status: 404, .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("Error reading the service-splitter {service:?}")),
    }
}

/// Writes `entry` if the splitter's ModifyIndex is still `cas` (0: absent). `Ok(None)` when it
/// was not (someone else wrote it); else the new ModifyIndex, read back and checked to be ours.
pub fn put_splitter(
    client: &Client,
    service: &str,
    target: &str,
    entry: &Value,
    cas: u64,
) -> anyhow::Result<Option<u64>> {
    let written = client
        .put_config_entry(entry, &Tenancy::DEFAULT, Some(cas))
        .with_context(|| format!("Error writing the service-splitter {service:?}"))?;
    if !written {
        return Ok(None);
    }
    let now = splitter(client, service)?.ok_or_else(|| {
        anyhow!("the service-splitter {service:?} vanished right after it was written")
    })?;
    let ours = mesh_model::migration::weight_in(entry, target);
    if mesh_model::migration::weight_in(&now.json, target) != ours {
        // Someone wrote between our write and this read: theirs stands.
        return Ok(None);
    }
    Ok(Some(now.modify_index))
}

/// The record and its key's ModifyIndex.
pub fn record(client: &Client, service: &str) -> anyhow::Result<Option<(MigrationRecord, u64)>> {
    let key = record::key(service);
    let Some(pair) = client
        .kv_get(&key)
        .with_context(|| format!("Error reading {key}"))?
    else {
        return Ok(None);
    };
    let rec: MigrationRecord = serde_json::from_slice(&pair.value)
        .with_context(|| format!("{key} does not hold a migration record"))?;
    Ok(Some((rec, pair.modify_index)))
}

/// Writes the record if its key's ModifyIndex is still `cas` (0: absent); the new index, or
/// `None` when someone else wrote it first.
pub fn put_record(client: &Client, rec: &MigrationRecord, cas: u64) -> anyhow::Result<Option<u64>> {
    let key = record::key(&rec.service);
    let text = serde_json::to_string(rec).context("cannot encode the migration record")?;
    if !client
        .kv_put(&key, &text, Some(cas))
        .with_context(|| format!("Error writing {key}"))?
    {
        return Ok(None);
    }
    let pair = client
        .kv_get(&key)
        .with_context(|| format!("Error reading {key}"))?
        .ok_or_else(|| anyhow!("{key} vanished right after it was written"))?;
    Ok(Some(pair.modify_index))
}

/// A service's instances in the catalog (none: it is unknown).
pub fn instances(client: &Client, service: &str) -> anyhow::Result<usize> {
    let answer = client
        .get(&format!(
            "/v1/catalog/service/{}",
            consul_client::encode(service)
        ))
        .with_context(|| format!("Error reading the catalog of {service:?}"))?;
    Ok(answer.body.as_array().map_or(0, Vec::len))
}

/// A service's protocol as the mesh sees it: its service-defaults, else proxy-defaults', else
/// tcp (Consul's default).
pub fn protocol(client: &Client, service: &str) -> anyhow::Result<String> {
    let from = |kind: &str, name: &str, pointer: &str| -> anyhow::Result<Option<String>> {
        match client.config_entry(kind, name, &Tenancy::DEFAULT) {
            Ok(e) => Ok(e
                .json
                .pointer(pointer)
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_ascii_lowercase)),
            Err(ClientError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("Error reading {kind} {name:?}")),
        }
    };
    Ok(match from("service-defaults", service, "/Protocol")? {
        Some(p) => p,
        None => {
            from("proxy-defaults", "global", "/Config/protocol")?.unwrap_or_else(|| "tcp".into())
        }
    })
}
