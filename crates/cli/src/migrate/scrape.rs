//! Where `migrate` reads its figures: the Envoys of SERVICE's callers (sidecars with SERVICE
//! among their upstreams) and of the terminating gateways fronting TARGET, each through the
//! metrics listener its proxy `Config` names (`envoy_prometheus_bind_addr`), found in the
//! catalog. A scrape keeps each Envoy's cumulative counters apart, so a window is taken per
//! Envoy and an Envoy that missed one scrape adds nothing rather than a jump.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use mesh_model::migration::prometheus::{ClusterStats, parse};
use serde_json::Value;

/// One Envoy to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The proxy's service ID.
    pub proxy: String,
    /// `http://HOST:PORT/metrics`.
    pub url: String,
}

/// The Envoys that see SERVICE's traffic.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub callers: Vec<Source>,
    pub gateways: Vec<Source>,
}

/// A proxy row's metrics URL, from its `ServiceProxy.Config`.
fn metrics_url(row: &Value) -> Option<String> {
    let config = row.get("ServiceProxy")?.get("Config")?;
    let (host, port) = xds::bootstrap::prometheus_bind_addr(config).ok()??;
    // A wildcard bind is reached on the proxy's own address.
    let host = if host == "0.0.0.0" || host == "::" {
        row.get("ServiceAddress")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .or_else(|| row.get("Address").and_then(Value::as_str))
            .unwrap_or("127.0.0.1")
            .to_owned()
    } else {
        host
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Some(format!(
        "http://{host}:{port}{}",
        xds::bootstrap::PROMETHEUS_PATH
    ))
}

fn rows(client: &consul_client::Client, service: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("/v1/catalog/service/{}", consul_client::encode(service));
    let answer = client
        .get(&path)
        .with_context(|| format!("Error reading the catalog of {service:?}"))?;
    Ok(answer.body.as_array().cloned().unwrap_or_default())
}

/// Finds the callers' sidecars and the gateways fronting `target` that expose metrics.
///
/// # Errors
/// The catalog or the config entries cannot be read.
pub fn discover(
    client: &consul_client::Client,
    service: &str,
    target: &str,
) -> anyhow::Result<Sources> {
    let mut sources = Sources::default();
    let names = client
        .get("/v1/catalog/services")
        .context("Error listing the catalog's services")?;
    for name in names.body.as_object().into_iter().flat_map(|m| m.keys()) {
        for row in rows(client, name)? {
            if row.get("ServiceKind").and_then(Value::as_str) != Some("connect-proxy") {
                continue;
            }
            let calls = row
                .pointer("/ServiceProxy/Upstreams")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|u| u.get("DestinationName").and_then(Value::as_str) == Some(service));
            if let (true, Some(url)) = (calls, metrics_url(&row)) {
                sources.callers.push(Source {
                    proxy: row["ServiceID"].as_str().unwrap_or(name).to_owned(),
                    url,
                });
            }
        }
    }
    let gateways = client
        .get("/v1/config/terminating-gateway")
        .context("Error listing terminating-gateway config entries")?;
    for entry in gateways.body.as_array().into_iter().flatten() {
        let fronts = entry
            .get("Services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| s.get("Name").and_then(Value::as_str) == Some(target));
        let Some(gateway) = entry.get("Name").and_then(Value::as_str) else {
            continue;
        };
        if !fronts {
            continue;
        }
        for row in rows(client, gateway)? {
            if let Some(url) = metrics_url(&row) {
                sources.gateways.push(Source {
                    proxy: row["ServiceID"].as_str().unwrap_or(gateway).to_owned(),
                    url,
                });
            }
        }
    }
    Ok(sources)
}

/// One Envoy's counters for the target's and the rest's clusters.
#[derive(Debug, Clone, Default)]
pub struct EnvoyStats {
    pub target: ClusterStats,
    pub rest: ClusterStats,
}

/// Every Envoy's counters at one moment, by URL.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub callers: BTreeMap<String, EnvoyStats>,
    pub gateways: BTreeMap<String, EnvoyStats>,
    /// Envoys that did not answer, with why.
    pub failed: Vec<String>,
}

/// Scrapes every source once (a failure is noted, not fatal: the others still count).
pub fn scrape(sources: &Sources, service: &str, target: &str) -> Scrape {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(3)))
            .build(),
    );
    let mut out = Scrape::default();
    for (list, into) in [
        (&sources.callers, &mut out.callers),
        (&sources.gateways, &mut out.gateways),
    ] {
        for s in list {
            let text = agent
                .get(&s.url)
                .call()
                .map_err(|e| e.to_string())
                .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()));
            match text.and_then(|t| parse(&t).map_err(|e| e.to_string())) {
                Ok(samples) => {
                    into.insert(
                        s.url.clone(),
                        EnvoyStats {
                            target: ClusterStats::of(&samples, target),
                            rest: ClusterStats::of(&samples, service),
                        },
                    );
                }
                Err(e) => out.failed.push(format!("{} ({}): {e}", s.proxy, s.url)),
            }
        }
    }
    out
}

/// The window between two scrapes, summed over the Envoys present in both.
pub fn window(
    now: &BTreeMap<String, EnvoyStats>,
    then: &BTreeMap<String, EnvoyStats>,
) -> EnvoyStats {
    let mut sum = EnvoyStats::default();
    for (url, n) in now {
        if let Some(t) = then.get(url) {
            sum.target.merge(&n.target.since(&t.target));
            sum.rest.merge(&n.rest.since(&t.rest));
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_metrics_url_comes_from_the_proxy_config() {
        let row = json!({"Address": "10.0.0.5", "ServiceProxy": {"Config": {"envoy_prometheus_bind_addr": "127.0.0.1:9102"}}});
        assert_eq!(
            metrics_url(&row).as_deref(),
            Some("http://127.0.0.1:9102/metrics")
        );
        let row = json!({"Address": "10.0.0.5", "ServiceProxy": {"Config": {"envoy_prometheus_bind_addr": "0.0.0.0:9102"}}});
        assert_eq!(
            metrics_url(&row).as_deref(),
            Some("http://10.0.0.5:9102/metrics")
        );
        assert_eq!(metrics_url(&json!({"ServiceProxy": {}})), None);
    }
}
