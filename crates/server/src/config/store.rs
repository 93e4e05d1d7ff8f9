//! Which store the server keeps its state in: the embedded log in the data dir (the default), or
//! an etcd cluster shared by several replicas (`docs/ha.md`). From `store { etcd { ... } }` in a
//! config file and the `-store`/`-etcd-*` flags, which override it. etcd's own client
//! conventions: endpoints as URLs, `user:password`, CA/cert/key PEM files.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use store::EtcdOptions;
pub use store::etcd::EncryptionKey;
use store::etcd::EtcdTls;

/// The environment variable that may hold the encryption key (64 hex digits) instead of a file.
pub const KEY_ENV: &str = "LAMBDAMESH_ETCD_ENCRYPTION_KEY";

/// Where the state lives.
#[derive(Debug, Clone, Default)]
pub enum StoreChoice {
    /// The write-ahead log in the data dir (one machine).
    #[default]
    Embedded,
    /// A shared etcd cluster (several replicas).
    Etcd(Box<EtcdOptions>),
}

/// `store { etcd { ... } }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    pub etcd: Option<EtcdFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdFile {
    pub endpoints: Option<Vec<String>>,
    pub prefix: Option<String>,
    /// `user:password`, as `etcdctl --user` takes it.
    pub user: Option<String>,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    /// A file holding the 64-hex-digit key that seals every value in etcd.
    pub encryption_key_file: Option<String>,
    /// Seconds a write waits for etcd before it answers 503.
    pub request_timeout_seconds: Option<u64>,
    /// Log appends this replica keeps in flight at once; writes queued meanwhile join the next
    /// append (fewer means bigger batches: less CPU per write, more waiting).
    pub appends_in_flight: Option<u64>,
}

/// The `-store` and `-etcd-*` flags.
#[derive(Debug, Default, Clone)]
pub struct StoreFlags {
    /// `embedded` or `etcd`.
    pub store: Option<String>,
    /// Comma-separated URLs.
    pub endpoints: Option<String>,
    pub prefix: Option<String>,
    pub user: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub encryption_key_file: Option<PathBuf>,
}

fn check_endpoint(p: &mut Vec<String>, e: &str) {
    let ok = (e.starts_with("http://") || e.starts_with("https://"))
        && e.split("://")
            .nth(1)
            .is_some_and(|h| h.contains(':') && !h.ends_with(':'));
    if !ok {
        p.push(format!(
            "etcd endpoint {e:?}: expected a URL like http://127.0.0.1:2379"
        ));
    }
}

/// Merges files (in order) and flags into the store choice, adding every problem to `p`.
pub(crate) fn build(
    files: &[Option<&StoreFile>],
    flags: &StoreFlags,
    replica: &str,
    p: &mut Vec<String>,
) -> StoreChoice {
    let mut etcd = EtcdFile::default();
    let mut configured = false;
    for f in files.iter().flatten() {
        if let Some(e) = &f.etcd {
            configured = true;
            macro_rules! take {
                ($($f:ident),*) => { $( if e.$f.is_some() { etcd.$f = e.$f.clone(); } )* };
            }
            take!(
                endpoints,
                prefix,
                user,
                cacert,
                cert,
                key,
                encryption_key_file,
                request_timeout_seconds,
                appends_in_flight
            );
        }
    }
    let flagged = flags.endpoints.is_some();
    let use_etcd = match flags.store.as_deref() {
        None => configured || flagged,
        Some("etcd") => true,
        Some("embedded") => false,
        Some(other) => {
            p.push(format!(
                "-store: invalid value {other:?}: must be \"embedded\" or \"etcd\""
            ));
            return StoreChoice::Embedded;
        }
    };
    if !use_etcd {
        return StoreChoice::Embedded;
    }
    let endpoints: Vec<String> = match &flags.endpoints {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => etcd.endpoints.clone().unwrap_or_default(),
    };
    if endpoints.is_empty() {
        p.push(
            "the etcd store needs endpoints (-etcd-endpoints URL,URL or store { etcd { endpoints = [...] } })"
                .into(),
        );
    }
    for e in &endpoints {
        check_endpoint(p, e);
    }
    let key_file = flags
        .encryption_key_file
        .clone()
        .or_else(|| etcd.encryption_key_file.clone().map(PathBuf::from));
    let key = match key_file {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => {
                EncryptionKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) => Err(format!("etcd encryption key file {}: {e}", path.display())),
        },
        None => match std::env::var(KEY_ENV) {
            Ok(text) => EncryptionKey::from_hex(&text).map_err(|e| format!("{KEY_ENV}: {e}")),
            Err(_) => Err(format!(
                "the etcd store needs an encryption key: -etcd-encryption-key-file FILE (or encryption_key_file in store {{ etcd {{ }} }}) or {KEY_ENV}, 64 hex digits (openssl rand -hex 32); the CA's keys are never stored in clear"
            )),
        },
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            p.push(e);
            return StoreChoice::Embedded;
        }
    };
    let mut opts = EtcdOptions::new(endpoints, key);
    opts.replica = replica.to_owned();
    if let Some(prefix) = flags.prefix.clone().or(etcd.prefix) {
        if !prefix.starts_with('/') || prefix.len() < 2 {
            p.push(format!(
                "etcd prefix {prefix:?}: must start with '/' and name something, e.g. /lambdamesh"
            ));
        }
        opts.prefix = prefix;
    }
    if let Some(user) = flags.user.clone().or(etcd.user) {
        match user.split_once(':') {
            Some((u, pw)) if !u.is_empty() => opts.user = Some((u.to_owned(), pw.to_owned())),
            _ => p.push("etcd user: expected user:password".into()),
        }
    }
    let cacert = flags.cacert.clone().or(etcd.cacert.map(PathBuf::from));
    let cert = flags.cert.clone().or(etcd.cert.map(PathBuf::from));
    let key = flags.key.clone().or(etcd.key.map(PathBuf::from));
    if cert.is_some() != key.is_some() {
        p.push("etcd TLS: a client certificate needs both -etcd-cert and -etcd-key".into());
    }
    if cacert.is_some() || cert.is_some() {
        opts.tls = Some(EtcdTls {
            ca_file: cacert,
            cert_file: cert,
            key_file: key,
        });
    }
    if let Some(s) = etcd.request_timeout_seconds {
        if s == 0 {
            p.push("store.etcd.request_timeout_seconds: must be at least 1".into());
        }
        opts.request_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(n) = etcd.appends_in_flight {
        match usize::try_from(n) {
            Ok(n) if (1..=store::etcd::MAX_APPENDS_IN_FLIGHT).contains(&n) => {
                opts.appends_in_flight = n;
            }
            _ => p.push(format!(
                "store.etcd.appends_in_flight: {n} is out of range: must be 1 to {}",
                store::etcd::MAX_APPENDS_IN_FLIGHT
            )),
        }
    }
    StoreChoice::Etcd(Box::new(opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), EncryptionKey::generate().unwrap().to_hex()).unwrap();
        f
    }

    #[test]
    fn flags_choose_etcd_with_every_setting() {
        let k = key_file();
        let mut p = Vec::new();
        let flags = StoreFlags {
            endpoints: Some("http://127.0.0.1:2379, http://127.0.0.1:22379".into()),
            user: Some("root:secret".into()),
            encryption_key_file: Some(k.path().to_owned()),
            ..StoreFlags::default()
        };
        let StoreChoice::Etcd(o) = build(&[], &flags, "r1", &mut p) else {
            panic!("{p:?}")
        };
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.endpoints.len(), 2);
        assert_eq!(o.user, Some(("root".into(), "secret".into())));
        assert_eq!(o.prefix, "/lambdamesh");
        assert_eq!(o.replica, "r1");
    }

    #[test]
    fn file_block_and_problems() {
        let k = key_file();
        let text = format!(
            "store {{\n  etcd {{\n    endpoints = [\"http://127.0.0.1:2379\"]\n    prefix = \"/mesh\"\n    encryption_key_file = \"{}\"\n  }}\n}}\n",
            k.path().display()
        );
        let file = crate::config::ConfigFile::parse_str(&text, false).unwrap();
        let mut p = Vec::new();
        let StoreChoice::Etcd(o) =
            build(&[file.store.as_ref()], &StoreFlags::default(), "r", &mut p)
        else {
            panic!("{p:?}")
        };
        assert_eq!(o.prefix, "/mesh");
        // `-store embedded` wins over the file.
        let flags = StoreFlags {
            store: Some("embedded".into()),
            ..StoreFlags::default()
        };
        assert!(matches!(
            build(&[file.store.as_ref()], &flags, "r", &mut p),
            StoreChoice::Embedded
        ));
        let bad = StoreFlags {
            store: Some("etcd".into()),
            endpoints: Some("127.0.0.1:2379".into()),
            encryption_key_file: Some("/nonexistent/key".into()),
            ..StoreFlags::default()
        };
        let mut p = Vec::new();
        build(&[], &bad, "r", &mut p);
        let text = p.join("\n");
        assert!(text.contains("expected a URL"), "{text}");
        assert!(text.contains("/nonexistent/key"), "{text}");
    }

    #[test]
    fn appends_in_flight_is_taken_and_checked() {
        let k = key_file();
        let file_with = |n: &str| {
            let text = format!(
                "store {{ etcd {{\n endpoints = [\"http://127.0.0.1:2379\"]\n encryption_key_file = \"{}\"\n appends_in_flight = {n}\n}} }}\n",
                k.path().display()
            );
            crate::config::ConfigFile::parse_str(&text, false).unwrap()
        };
        let file = file_with("2");
        let mut p = Vec::new();
        let StoreChoice::Etcd(o) =
            build(&[file.store.as_ref()], &StoreFlags::default(), "r", &mut p)
        else {
            panic!("{p:?}")
        };
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(o.appends_in_flight, 2);
        for bad in ["0", "100000"] {
            let file = file_with(bad);
            let mut p = Vec::new();
            build(&[file.store.as_ref()], &StoreFlags::default(), "r", &mut p);
            assert!(
                p.iter()
                    .any(|m| m.contains("appends_in_flight") && m.contains(bad)),
                "{bad}: {p:?}"
            );
        }
    }
}
