//! Leaves on disk, so a restart of the server reissues none: one file per service under
//! `<data-dir>/leaves/`, written atomically (temp file, fsync, rename, fsync of the directory).
//! The files hold the leaf's private key, so the directory is created mode 0700 and each file
//! is created mode 0600 (before any byte is written), readable by the server's user only; the
//! root's key in the store's log is no less sensitive (see `docs/connect-ca.md`).
//!
//! A file that cannot be read back is skipped with a warning: the service simply gets a fresh
//! leaf, as before persistence. Must not depend on HTTP or the store.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use mesh_model::names::ServiceName;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::Leaf;

/// A leaf as stored (times as RFC 3339, as the API shows them).
#[derive(Serialize, Deserialize)]
struct Stored {
    service: ServiceName,
    cert_pem: String,
    key_pem: String,
    serial: String,
    valid_after: String,
    valid_before: String,
    root_id: String,
    modify_index: u64,
    spiffe_id: String,
}

/// The directory of the leaves of a server whose data dir is `data_dir`.
pub(super) fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("leaves")
}

fn file_of(dir: &Path, service: &ServiceName) -> PathBuf {
    // Names, namespaces and partitions may hold characters a file name should not; a hash of
    // the three names the file, and the file names its service.
    let key = format!(
        "{}\n{}\n{}",
        service.meta.partition, service.meta.namespace, service.name
    );
    let digest = Sha256::digest(key.as_bytes());
    dir.join(format!("{}.json", hex::encode(&digest[..16])))
}

/// Every stored leaf (unreadable files are skipped, temp files of interrupted writes removed).
pub(super) fn load(dir: &Path) -> Vec<Leaf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| decode(&b))
        {
            Ok(leaf) => out.push(leaf),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping a stored leaf"),
        }
    }
    out
}

fn decode(bytes: &[u8]) -> Result<Leaf, String> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let time = |t: &str| OffsetDateTime::parse(t, &Rfc3339).map_err(|e| e.to_string());
    Ok(Leaf {
        not_before: time(&s.valid_after)?,
        not_after: time(&s.valid_before)?,
        service: s.service,
        cert_pem: s.cert_pem,
        key_pem: s.key_pem,
        serial: s.serial,
        valid_after: s.valid_after,
        valid_before: s.valid_before,
        root_id: s.root_id,
        modify_index: s.modify_index,
        spiffe_id: s.spiffe_id,
    })
}

/// Writes `leaf` durably, replacing the service's previous one.
pub(super) fn save(dir: &Path, leaf: &Leaf) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let stored = Stored {
        service: leaf.service.clone(),
        cert_pem: leaf.cert_pem.clone(),
        key_pem: leaf.key_pem.clone(),
        serial: leaf.serial.clone(),
        valid_after: leaf.valid_after.clone(),
        valid_before: leaf.valid_before.clone(),
        root_id: leaf.root_id.clone(),
        modify_index: leaf.modify_index,
        spiffe_id: leaf.spiffe_id.clone(),
    };
    let bytes = serde_json::to_vec(&stored).map_err(io::Error::other)?;
    let path = file_of(dir, &leaf.service);
    let tmp = dir.join(format!(".{}.tmp", leaf.modify_index));
    {
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_saved_leaf_loads_back_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dir(tmp.path());
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let leaf = Leaf {
            service: ServiceName::default_tenancy("web/with:odd chars"),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
            serial: "0a".into(),
            valid_after: now.format(&Rfc3339).unwrap(),
            valid_before: (now + time::Duration::hours(72)).format(&Rfc3339).unwrap(),
            root_id: "root".into(),
            modify_index: 10,
            spiffe_id: "spiffe://x/ns/default/dc/dc1/svc/web".into(),
            not_before: now,
            not_after: now + time::Duration::hours(72),
        };
        save(&dir, &leaf).unwrap();
        let mut newer = leaf.clone();
        newer.modify_index = 11;
        save(&dir, &newer).unwrap();
        fs::write(dir.join("junk.json"), b"{").unwrap();
        let loaded = load(&dir);
        assert_eq!(loaded, vec![newer]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = file_of(&dir, &leaf.service);
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }
}
