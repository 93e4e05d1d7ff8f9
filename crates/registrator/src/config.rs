//! Configuration compatible with the Go registrator's environment (`environment.go`): every value
//! is parsed into a type and every bad value is reported at once, naming the variable.

use std::{collections::BTreeMap, time::Duration};

/// How functions are listed on a full sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMode {
    /// `tagging:GetResources` filtered by the enabled tag, falling back to `ListFunctions` +
    /// `ListTags` when the tagging API is unavailable.
    Auto,
    /// Only the tagging API.
    Tagging,
    /// Only `ListFunctions` + `ListTags` (the tagging API is never called).
    Functions,
}

/// SSM parameter tier (`CONSUL_EXTENSION_DATA_TIER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Standard,
    Advanced,
    IntelligentTiering,
}

impl Tier {
    /// The spelling of the SSM API.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
            Tier::IntelligentTiering => "Intelligent-Tiering",
        }
    }
}

/// Which markings the `service-defaults` entries carry (`LEGACY_META`: false, true, only).
pub use mesh_model::config_entry::LambdaMarkings as Markings;

/// The registrator's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Consul node all Lambda services are registered on (`NODE_NAME`, default `lambdas`).
    pub node_name: String,
    /// Only functions whose `datacenter` tag equals this are handled (`DATACENTER`).
    pub datacenter: String,
    /// Consul Enterprise mode (`ENTERPRISE`).
    pub enterprise: bool,
    /// Admin partitions managed in enterprise mode (`PARTITIONS`).
    pub partitions: Vec<String>,
    /// Consul HTTP address (`CONSUL_HTTP_ADDR`, default `127.0.0.1:8500`).
    pub consul_addr: String,
    /// Consul token (`CONSUL_HTTP_TOKEN`), possibly read from Parameter Store.
    pub consul_token: Option<String>,
    /// SSM parameter holding the Consul token (`CONSUL_HTTP_TOKEN_PATH`).
    pub consul_token_path: Option<String>,
    /// Consul CA file (`CONSUL_CACERT`).
    pub consul_cacert: Option<String>,
    /// SSM parameter holding the Consul CA certificate (`CONSUL_CACERT_PATH`).
    pub consul_cacert_path: Option<String>,
    /// Use HTTPS towards Consul (`CONSUL_HTTP_SSL`).
    pub consul_ssl: bool,
    /// SSM prefix of extension data; set means "manage mTLS material"
    /// (`CONSUL_EXTENSION_DATA_PREFIX`).
    pub extension_data_prefix: Option<String>,
    /// SSM tier of extension data (`CONSUL_EXTENSION_DATA_TIER`).
    pub extension_data_tier: Option<Tier>,
    /// Page size of `ListFunctions` (`PAGE_SIZE`, default 50, 1..=50 as AWS allows).
    pub page_size: u32,
    /// Log level (`LOG_LEVEL`, default `info`).
    pub log_level: String,
    /// Markings written into service-defaults (`LEGACY_META`: false, true, only).
    pub legacy_meta: Markings,
    /// How functions are listed (`LIST_MODE`: `auto`, `tagging`, `functions`).
    pub list_mode: ListMode,
    /// Concurrency of per-function AWS calls and of writes (`CONCURRENCY`, default 16).
    pub concurrency: usize,
    /// Full-sync period of the daemon (`SYNC_INTERVAL`, default 5m).
    pub sync_interval: Duration,
    /// SQS queue URL the daemon reads events from (`QUEUE_URL`).
    pub queue_url: Option<String>,
    /// AWS region (`AWS_REGION` / `AWS_DEFAULT_REGION`, default `us-east-1`).
    pub region: String,
}

/// One bad configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason} (got {value:?})")]
pub struct ConfigError {
    /// The variable (or flag) name.
    pub name: String,
    /// The offending value.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// Every bad configuration value at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// The Go registrator's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `5m`, `30s`, `1h`, `250ms` or a plain number of seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

impl Config {
    /// Parses the settings from `vars` (the environment, with flags already merged in: a flag
    /// is the variable of the same name). Pure; fuzzed.
    ///
    /// # Errors
    /// Every bad value, each naming its variable.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut bad = |name: &str, value: &str, reason: &str| {
            errors.push(ConfigError {
                name: name.to_owned(),
                value: value.to_owned(),
                reason: reason.to_owned(),
            });
        };
        let boolean = |name: &str, bad: &mut dyn FnMut(&str, &str, &str)| match get(name) {
            None => false,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                bad(name, v, "must be a boolean (true/false/1/0)");
                false
            }),
        };
        let enterprise = boolean("ENTERPRISE", &mut bad);
        let consul_ssl = boolean("CONSUL_HTTP_SSL", &mut bad);
        let legacy_meta = match get("LEGACY_META") {
            Some("only") => Markings::MetaOnly,
            _ if boolean("LEGACY_META", &mut bad) => Markings::Both,
            _ => Markings::Extensions,
        };
        let node_name = get("NODE_NAME").unwrap_or("lambdas").to_owned();
        if node_name.contains('/') {
            bad("NODE_NAME", &node_name, "must not contain '/'");
        }
        let partitions: Vec<String> = get("PARTITIONS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if !partitions.is_empty() && !enterprise {
            bad(
                "PARTITIONS",
                &partitions.join(","),
                "partitions need ENTERPRISE=true",
            );
        }
        let extension_data_tier =
            get("CONSUL_EXTENSION_DATA_TIER").and_then(|v| match v.to_ascii_lowercase().as_str() {
                "standard" => Some(Tier::Standard),
                "advanced" => Some(Tier::Advanced),
                "intelligent-tiering" => Some(Tier::IntelligentTiering),
                _ => {
                    bad(
                        "CONSUL_EXTENSION_DATA_TIER",
                        v,
                        "must be Standard, Advanced or Intelligent-Tiering",
                    );
                    None
                }
            });
        let extension_data_prefix = get("CONSUL_EXTENSION_DATA_PREFIX").map(|p| {
            if !p.starts_with('/') {
                bad(
                    "CONSUL_EXTENSION_DATA_PREFIX",
                    p,
                    "must start with '/' (an SSM path)",
                );
            }
            p.trim_end_matches('/').to_owned()
        });
        let page_size = match get("PAGE_SIZE") {
            None => 50,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=50).contains(&n) => n,
                _ => {
                    bad("PAGE_SIZE", v, "must be a number from 1 to 50");
                    50
                }
            },
        };
        let concurrency = match get("CONCURRENCY") {
            None => 16,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    bad("CONCURRENCY", v, "must be a number from 1 to 256");
                    16
                }
            },
        };
        let log_level = get("LOG_LEVEL").unwrap_or("info").to_ascii_lowercase();
        if !matches!(
            log_level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error" | "off"
        ) {
            bad(
                "LOG_LEVEL",
                &log_level,
                "must be trace, debug, info, warn, error or off",
            );
        }
        let list_mode = match get("LIST_MODE").unwrap_or("auto") {
            "auto" => ListMode::Auto,
            "tagging" => ListMode::Tagging,
            "functions" => ListMode::Functions,
            other => {
                bad("LIST_MODE", other, "must be auto, tagging or functions");
                ListMode::Auto
            }
        };
        let sync_interval = match get("SYNC_INTERVAL") {
            None => Duration::from_secs(300),
            Some(v) => parse_duration(v).unwrap_or_else(|| {
                bad(
                    "SYNC_INTERVAL",
                    v,
                    "must be a positive duration such as 30s, 5m or 1h",
                );
                Duration::from_secs(300)
            }),
        };
        let queue_url = get("QUEUE_URL").map(str::to_owned);
        if let Some(q) = &queue_url
            && !(q.starts_with("http://") || q.starts_with("https://"))
        {
            bad("QUEUE_URL", q, "must be an SQS queue URL (http[s]://...)");
        }
        // As the AWS CLI: the environment, else the profile's `region` in the shared config
        // file. Without either, a registrator with profile credentials would list another
        // region's functions (none) and deregister every service it owns.
        let region = match get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
            Some(r) => r.to_owned(),
            None => match aws_wire::profile::region(vars) {
                Ok(Some(r)) => r,
                Ok(None) => "us-east-1".to_owned(),
                Err(e) => {
                    // The profile decides what is read; the message names the file and line.
                    bad(
                        "AWS_PROFILE",
                        get("AWS_PROFILE").unwrap_or("default"),
                        &e.to_string(),
                    );
                    "us-east-1".to_owned()
                }
            },
        };
        let consul_addr = get("CONSUL_HTTP_ADDR")
            .unwrap_or("127.0.0.1:8500")
            .to_owned();
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            node_name,
            datacenter: get("DATACENTER").unwrap_or_default().to_owned(),
            enterprise,
            partitions,
            consul_addr,
            consul_token: get("CONSUL_HTTP_TOKEN").map(str::to_owned),
            consul_token_path: get("CONSUL_HTTP_TOKEN_PATH").map(str::to_owned),
            consul_cacert: get("CONSUL_CACERT").map(str::to_owned),
            consul_cacert_path: get("CONSUL_CACERT_PATH").map(str::to_owned),
            consul_ssl,
            extension_data_prefix,
            extension_data_tier,
            page_size,
            log_level,
            legacy_meta,
            list_mode,
            concurrency,
            sync_interval,
            queue_url,
            region,
        })
    }

    /// The Consul base URL: `CONSUL_HTTP_SSL` turns a bare `host:port` into `https://`.
    pub fn consul_url(&self) -> String {
        if self.consul_addr.contains("://") {
            self.consul_addr.clone()
        } else if self.consul_ssl {
            format!("https://{}", self.consul_addr)
        } else {
            format!("http://{}", self.consul_addr)
        }
    }

    /// Whether mTLS material is managed (the reference's `IsManagingTLS`).
    pub fn manages_tls(&self) -> bool {
        self.extension_data_prefix.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_match_the_reference() {
        let c = Config::from_vars(&BTreeMap::new()).unwrap();
        assert_eq!(c.node_name, "lambdas");
        assert_eq!(c.page_size, 50);
        assert!(!c.enterprise && !c.manages_tls());
        assert_eq!(c.sync_interval, Duration::from_secs(300));
        assert_eq!(c.consul_url(), "http://127.0.0.1:8500");
    }

    #[test]
    fn region_from_the_environment_else_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "[profile ops]\nregion = eu-central-1\n").unwrap();
        let path = config.display().to_string();
        let mut v = vars(&[("AWS_CONFIG_FILE", &path), ("AWS_PROFILE", "ops")]);
        assert_eq!(Config::from_vars(&v).unwrap().region, "eu-central-1");
        v.insert("AWS_DEFAULT_REGION".into(), "us-west-2".into());
        assert_eq!(Config::from_vars(&v).unwrap().region, "us-west-2");
        v.insert("AWS_REGION".into(), "sa-east-1".into());
        assert_eq!(Config::from_vars(&v).unwrap().region, "sa-east-1");
        std::fs::write(&config, "[profile ops\n").unwrap();
        v.remove("AWS_REGION");
        v.remove("AWS_DEFAULT_REGION");
        let e = Config::from_vars(&v).unwrap_err();
        assert_eq!(
            (e.0[0].name.as_str(), e.0[0].value.as_str()),
            ("AWS_PROFILE", "ops")
        );
        assert!(e.0[0].reason.contains("line 1"), "{}", e.0[0].reason);
    }

    #[test]
    fn every_bad_value_is_reported() {
        let e = Config::from_vars(&vars(&[
            ("ENTERPRISE", "yes"),
            ("PAGE_SIZE", "500"),
            ("CONSUL_EXTENSION_DATA_TIER", "gold"),
            ("CONSUL_EXTENSION_DATA_PREFIX", "no-slash"),
            ("SYNC_INTERVAL", "soon"),
            ("LOG_LEVEL", "loud"),
        ]))
        .unwrap_err();
        let names: Vec<&str> = e.0.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ENTERPRISE",
                "CONSUL_EXTENSION_DATA_TIER",
                "CONSUL_EXTENSION_DATA_PREFIX",
                "PAGE_SIZE",
                "LOG_LEVEL",
                "SYNC_INTERVAL"
            ]
        );
        assert!(
            e.to_string()
                .contains("PAGE_SIZE: must be a number from 1 to 50")
        );
    }

    #[test]
    fn enterprise_settings_and_tier() {
        let c = Config::from_vars(&vars(&[
            ("ENTERPRISE", "true"),
            ("PARTITIONS", "default, team-a"),
            ("CONSUL_EXTENSION_DATA_TIER", "advanced"),
            ("CONSUL_EXTENSION_DATA_PREFIX", "/lambda/"),
            ("CONSUL_HTTP_SSL", "1"),
            ("CONSUL_HTTP_ADDR", "consul:8501"),
        ]))
        .unwrap();
        assert_eq!(c.partitions, ["default", "team-a"]);
        assert_eq!(c.extension_data_tier, Some(Tier::Advanced));
        assert_eq!(c.extension_data_prefix.as_deref(), Some("/lambda"));
        assert_eq!(c.consul_url(), "https://consul:8501");
        assert_eq!(c.legacy_meta, Markings::Extensions);
        for (v, m) in [
            ("true", Markings::Both),
            ("only", Markings::MetaOnly),
            ("0", Markings::Extensions),
        ] {
            let c = Config::from_vars(&vars(&[("LEGACY_META", v)])).unwrap();
            assert_eq!(c.legacy_meta, m, "{v}");
        }
        let e = Config::from_vars(&vars(&[("PARTITIONS", "a")])).unwrap_err();
        assert_eq!(e.0[0].name, "PARTITIONS");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }
}
