//! Durable metadata: functions (with their versions, aliases, tags and reserved concurrency) and
//! layer versions. Each function lives in its own JSON file, written atomically (temp file,
//! fsync, rename, fsync of the directory), so a crash leaves either the old or the new record
//! and a mutation costs one small write even with 10,000 functions.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{PlatformError, wire::ApiError};

/// One function and everything that hangs off it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FunctionRecord {
    pub name: String,
    pub latest: VersionConfig,
    #[serde(default)]
    pub versions: BTreeMap<u64, VersionConfig>,
    #[serde(default)]
    pub last_version: u64,
    #[serde(default)]
    pub aliases: BTreeMap<String, Alias>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// `PutFunctionEventInvokeConfig` per qualifier (`$LATEST`, a version or an alias).
    #[serde(default)]
    pub event_invoke: BTreeMap<String, EventInvokeConfig>,
}

/// How asynchronous invokes of one qualifier are handled (AWS's `FunctionEventInvokeConfig`);
/// a member left out takes AWS's default (2 retries, 6 hours, no destinations).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct EventInvokeConfig {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_secs: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    /// Seconds since the epoch (the API's `LastModified` timestamp).
    pub last_modified: f64,
}

/// The configuration of `$LATEST` or of a published version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct VersionConfig {
    pub version: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub environment: BTreeMap<String, String>,
    pub layers: Vec<LayerUse>,
    pub code_sha256: String,
    pub code_size: u64,
    pub code_key: String,
    pub last_modified: String,
    pub revision_id: String,
    pub architectures: Vec<String>,
    /// `DeadLetterConfig.TargetArn`: where failed asynchronous events go (an SQS queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_arn: Option<String>,
}

/// A layer version used by a function.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LayerUse {
    pub arn: String,
    pub code_size: u64,
    pub code_key: String,
}

/// An alias of a function.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Alias {
    pub name: String,
    pub function_version: String,
    pub description: String,
    pub revision_id: String,
    #[serde(default)]
    pub additional_weights: BTreeMap<String, f64>,
}

/// A published layer version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LayerVersion {
    pub name: String,
    pub version: u64,
    pub description: String,
    pub created: String,
    pub code_sha256: String,
    pub code_size: u64,
    pub code_key: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: Option<String>,
}

/// The metadata store.
pub(crate) struct Store {
    dir: PathBuf,
    functions: RwLock<BTreeMap<String, FunctionRecord>>,
    layers: RwLock<BTreeMap<String, BTreeMap<u64, LayerVersion>>>,
    // Serialises read-modify-write cycles so two writers never persist stale copies.
    writer: Mutex<()>,
}

impl Store {
    pub(crate) fn open(data_dir: &Path) -> Result<Self, PlatformError> {
        let fdir = data_dir.join("functions");
        let ldir = data_dir.join("layers");
        let mut functions = BTreeMap::new();
        for rec in load_dir::<FunctionRecord>(&fdir)? {
            functions.insert(rec.name.clone(), rec);
        }
        let mut layers: BTreeMap<String, BTreeMap<u64, LayerVersion>> = BTreeMap::new();
        for lv in load_dir::<LayerVersion>(&ldir)? {
            layers
                .entry(lv.name.clone())
                .or_default()
                .insert(lv.version, lv);
        }
        Ok(Self {
            dir: data_dir.to_owned(),
            functions: RwLock::new(functions),
            layers: RwLock::new(layers),
            writer: Mutex::new(()),
        })
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn get(&self, name: &str) -> Option<FunctionRecord> {
        self.functions.read().get(name).cloned()
    }

    /// Runs `f` on the record of `name` under the read lock, so nothing is copied that `f`
    /// does not copy (the invoke path reads one version this way).
    pub(crate) fn read<T>(&self, name: &str, f: impl FnOnce(&FunctionRecord) -> T) -> Option<T> {
        self.functions.read().get(name).map(f)
    }

    /// Up to `max` functions whose names sort after `after`, and whether more remain.
    pub(crate) fn page<T>(
        &self,
        after: Option<&str>,
        max: usize,
        mut f: impl FnMut(&FunctionRecord) -> T,
    ) -> (Vec<T>, bool) {
        let map = self.functions.read();
        let mut iter: Box<dyn Iterator<Item = &FunctionRecord>> = match after {
            Some(a) => Box::new(
                map.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                    .map(|(_, v)| v),
            ),
            None => Box::new(map.values()),
        };
        let mut out = Vec::new();
        for rec in iter.by_ref().take(max) {
            out.push(f(rec));
        }
        (out, iter.next().is_some())
    }

    /// Every function, for scans (tagging API, events).
    pub(crate) fn all(&self) -> Vec<FunctionRecord> {
        self.functions.read().values().cloned().collect()
    }

    pub(crate) fn insert(&self, rec: FunctionRecord) -> Result<(), ApiError> {
        let _w = self.writer.lock();
        if self.functions.read().contains_key(&rec.name) {
            return Err(ApiError::conflict(format!(
                "Function already exist: {}",
                rec.name
            )));
        }
        self.persist_function(&rec)?;
        self.functions.write().insert(rec.name.clone(), rec);
        Ok(())
    }

    /// Applies `f` to a copy of the record, persists it, then publishes it.
    pub(crate) fn update<T>(
        &self,
        name: &str,
        not_found: impl FnOnce() -> ApiError,
        f: impl FnOnce(&mut FunctionRecord) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _w = self.writer.lock();
        let mut rec = self
            .functions
            .read()
            .get(name)
            .cloned()
            .ok_or_else(not_found)?;
        let out = f(&mut rec)?;
        self.persist_function(&rec)?;
        self.functions.write().insert(name.to_owned(), rec);
        Ok(out)
    }

    pub(crate) fn remove(&self, name: &str) -> Result<Option<FunctionRecord>, ApiError> {
        let _w = self.writer.lock();
        let path = self.dir.join("functions").join(format!("{name}.json"));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "cannot delete function state: {e}"
                )));
            }
        }
        Ok(self.functions.write().remove(name))
    }

    pub(crate) fn layer_versions(&self, name: &str) -> Vec<LayerVersion> {
        self.layers
            .read()
            .get(name)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn layer_names(&self) -> Vec<String> {
        self.layers.read().keys().cloned().collect()
    }

    pub(crate) fn layer_version(&self, name: &str, version: u64) -> Option<LayerVersion> {
        self.layers
            .read()
            .get(name)
            .and_then(|m| m.get(&version))
            .cloned()
    }

    /// Publishes the next version of layer `name`, built by `f` from its number.
    pub(crate) fn publish_layer(
        &self,
        name: &str,
        f: impl FnOnce(u64) -> LayerVersion,
    ) -> Result<LayerVersion, ApiError> {
        let _w = self.writer.lock();
        let next = self
            .layers
            .read()
            .get(name)
            .and_then(|m| m.keys().next_back().copied())
            .unwrap_or(0)
            + 1;
        let lv = f(next);
        let path = self.dir.join("layers").join(format!("{name}.{next}.json"));
        write_json_atomic(&path, &lv)
            .map_err(|e| ApiError::internal(format!("cannot persist layer: {e}")))?;
        self.layers
            .write()
            .entry(name.to_owned())
            .or_default()
            .insert(next, lv.clone());
        Ok(lv)
    }

    pub(crate) fn delete_layer_version(&self, name: &str, version: u64) -> Result<(), ApiError> {
        let _w = self.writer.lock();
        let path = self
            .dir
            .join("layers")
            .join(format!("{name}.{version}.json"));
        let _ = fs::remove_file(path);
        if let Some(m) = self.layers.write().get_mut(name) {
            m.remove(&version);
        }
        Ok(())
    }

    fn persist_function(&self, rec: &FunctionRecord) -> Result<(), ApiError> {
        let path = self
            .dir
            .join("functions")
            .join(format!("{}.json", rec.name));
        write_json_atomic(&path, rec)
            .map_err(|e| ApiError::internal(format!("cannot persist function: {e}")))
    }
}

/// Writes `value` as JSON to `path` atomically and durably.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path`: temp file, fsync, rename, fsync of the parent directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| std::io::Error::other("path has no parent"))?;
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        crate::new_uuid().simple()
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(parent)?.sync_all()
}

/// Loads every `*.json` in `dir` (a missing dir is empty); temp files of interrupted writes are
/// removed.
pub(crate) fn load_dir<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>, PlatformError> {
    let io = |source| PlatformError::DataDir {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(|source| PlatformError::DataDir {
            path: path.clone(),
            source,
        })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| PlatformError::CorruptState {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.push(value);
    }
    Ok(out)
}
