//! Parameter Store: the SSM JSON protocol operations this story needs, with AWS's limits and
//! exception names. `SecureString` values are encrypted at rest with a local 256-bit key kept in
//! `ssm/key` (mode 0600; see `seal.rs`).
//!
//! Each operation takes its typed request (`operations.rs`, decoded once at the edge) and gives
//! its typed answer. Must not depend on `api` (HTTP).

pub(crate) mod operations;
mod seal;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use self::{
    operations::{
        DeleteParametersResponse, DescribeParametersRequest, Empty, GetParameterHistoryRequest,
        GetParameterRequest, GetParameterResponse, GetParametersByPathRequest,
        GetParametersResponse, MetadataPage, NameRequest, NamesRequest, ParameterMetadata,
        ParameterResponse, ParametersPage, PutParameterRequest, PutParameterResponse, SsmRequest,
        SsmResponse,
    },
    seal::Sealer,
};
use crate::{
    PlatformError,
    decode::Member,
    state::{load_dir, write_atomic, write_json_atomic},
    wire::ApiError,
};

const STANDARD_MAX: usize = 4096;
const ADVANCED_MAX: usize = 8192;
const MAX_DEPTH: usize = 15;
const MAX_VERSIONS: usize = 100;
const NAME_SHARDS: usize = 64;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Param {
    name: String,
    kind: String,
    /// Plaintext, or the sealed blob for `SecureString`.
    value: String,
    version: u64,
    modified: f64,
    tier: String,
    description: String,
    key_id: Option<String>,
    data_type: String,
    /// Earlier versions, oldest first (AWS keeps the last 100 versions of a parameter).
    #[serde(default)]
    history: Vec<Param>,
}

/// The parameter store. Each parameter (with its history) is one file under `ssm/params/`,
/// named by the SHA-256 of its name, so a write costs one small file however many parameters
/// exist (a single `parameters.json` of older data dirs is migrated on open).
pub(crate) struct ParameterStore {
    dir: PathBuf,
    sealer: Sealer,
    region: String,
    account: String,
    params: Mutex<BTreeMap<String, Param>>,
    /// Writers of one name serialize on its shard; the map lock is not held during the fsync,
    /// so writes of different parameters reach the disk concurrently.
    name_locks: Vec<Mutex<()>>,
}

/// Why a parameter name is invalid. Pure validation, fuzzed via [`validate_name`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Bad characters, empty or reserved prefix.
    #[error("invalid parameter name")]
    Invalid,
    /// Contains `/` but does not start with it.
    #[error("parameter name must be a fully qualified name")]
    NotQualified,
    /// More than 15 levels.
    #[error("too many hierarchy levels")]
    TooDeep,
}

/// Validates a parameter name as AWS does.
///
/// # Errors
/// [`NameError`] describing the first problem.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 1011 {
        return Err(NameError::Invalid);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err(NameError::Invalid);
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(NameError::NotQualified);
    }
    let first = name
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(NameError::Invalid);
    }
    if name.ends_with('/') || name.contains("//") {
        return Err(NameError::Invalid);
    }
    if name.matches('/').count() > MAX_DEPTH {
        return Err(NameError::TooDeep);
    }
    Ok(())
}

fn name_error(name: &str, e: NameError) -> ApiError {
    match e {
        NameError::TooDeep => ApiError::new(
            400,
            "HierarchyLevelLimitExceededException",
            "A hierarchy can have a maximum of 15 levels. For more information, see Requirements and Constraints for Parameter Names in the AWS Systems Manager User Guide.",
        ),
        NameError::NotQualified => ApiError::new(
            400,
            "ValidationException",
            "Parameter name must be a fully qualified name.",
        ),
        NameError::Invalid => ApiError::new(
            400,
            "ValidationException",
            format!(
                "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). If formed as a path, it can consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, numbers and the following 3 symbols .-_ (got {name:?})"
            ),
        ),
    }
}

/// The file of one parameter: names may be 2,048 characters, so the file is named by a hash.
fn param_file(dir: &Path, name: &str) -> PathBuf {
    use sha2::Digest;
    dir.join(format!(
        "{}.json",
        hex::encode(Sha256::digest(name.as_bytes()))
    ))
}

fn not_found() -> ApiError {
    ApiError::new(400, "ParameterNotFound", "")
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

// === impl ParameterStore ===

impl ParameterStore {
    pub(crate) fn open(
        data_dir: &Path,
        region: &str,
        account: &str,
    ) -> Result<Self, PlatformError> {
        let dir = data_dir.join("ssm");
        let io = |source| PlatformError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let key_path = dir.join("key");
        let key: [u8; 32] = match std::fs::read(&key_path) {
            Ok(bytes) => bytes.try_into().map_err(|_| PlatformError::CorruptState {
                path: key_path.clone(),
                message: "key is not 32 bytes".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                write_atomic(&key_path, &key).map_err(io)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
                key
            }
            Err(e) => return Err(io(e)),
        };
        let params_dir = dir.join("params");
        let mut params: BTreeMap<String, Param> = load_dir::<Param>(&params_dir)?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let legacy = dir.join("parameters.json");
        match std::fs::read(&legacy) {
            Ok(b) => {
                let old: BTreeMap<String, Param> =
                    serde_json::from_slice(&b).map_err(|e| PlatformError::CorruptState {
                        path: legacy.clone(),
                        message: e.to_string(),
                    })?;
                for (name, p) in old {
                    write_json_atomic(&param_file(&params_dir, &name), &p).map_err(io)?;
                    params.insert(name, p);
                }
                std::fs::remove_file(&legacy).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        Ok(Self {
            dir: params_dir,
            sealer: Sealer::new(key),
            region: region.into(),
            account: account.into(),
            params: Mutex::new(params),
            name_locks: (0..NAME_SHARDS).map(|_| Mutex::new(())).collect(),
        })
    }

    fn name_lock(&self, name: &str) -> &Mutex<()> {
        use sha2::Digest;
        let h = Sha256::digest(name.as_bytes());
        &self.name_locks[usize::from(h[0]) % self.name_locks.len()]
    }

    /// Durably stores one parameter (`None`: removes it).
    fn persist(&self, name: &str, param: Option<&Param>) -> Result<(), ApiError> {
        let path = param_file(&self.dir, name);
        let result = match param {
            Some(p) => write_json_atomic(&path, p),
            None => match std::fs::remove_file(&path) {
                Ok(()) => std::fs::File::open(&self.dir).and_then(|d| d.sync_all()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
        };
        result.map_err(|e| ApiError::internal(format!("cannot persist parameter: {e}")))
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:aws:ssm:{}:{}:parameter/{}",
            self.region,
            self.account,
            name.trim_start_matches('/')
        )
    }

    fn render(&self, p: &Param, decrypt: bool) -> Result<ParameterResponse, ApiError> {
        let value = if p.kind == "SecureString" && decrypt {
            self.sealer.open(&p.value)?
        } else {
            p.value.clone()
        };
        Ok(ParameterResponse {
            arn: self.arn(&p.name),
            data_type: p.data_type.clone(),
            last_modified_date: p.modified,
            name: p.name.clone(),
            selector: None,
            kind: p.kind.clone(),
            value,
            version: p.version,
        })
    }

    fn metadata(&self, p: &Param) -> ParameterMetadata {
        ParameterMetadata {
            arn: self.arn(&p.name),
            data_type: p.data_type.clone(),
            description: (!p.description.is_empty()).then(|| p.description.clone()),
            key_id: p.key_id.clone(),
            labels: None,
            last_modified_date: p.modified,
            last_modified_user: format!("arn:aws:iam::{}:user/local", self.account),
            name: p.name.clone(),
            policies: Vec::new(),
            tier: p.tier.clone(),
            kind: p.kind.clone(),
            value: None,
            version: p.version,
        }
    }

    /// Runs one `AmazonSSM.*` call.
    pub(crate) fn handle(&self, req: SsmRequest) -> Result<SsmResponse, ApiError> {
        Ok(match req {
            SsmRequest::PutParameter(r) => SsmResponse::Put(self.put(&r)?),
            SsmRequest::GetParameter(r) => SsmResponse::Get(self.get(&r)?),
            SsmRequest::GetParameters(r) => SsmResponse::GetMany(self.get_many(&r)?),
            SsmRequest::GetParametersByPath(r) => SsmResponse::Values(self.by_path(&r)?),
            SsmRequest::DeleteParameter(r) => SsmResponse::Empty(self.delete(&r)?),
            SsmRequest::DeleteParameters(r) => SsmResponse::Deleted(self.delete_many(&r)?),
            SsmRequest::DescribeParameters(r) => SsmResponse::Metadata(self.describe(&r)?),
            SsmRequest::GetParameterHistory(r) => SsmResponse::Metadata(self.history(&r)?),
        })
    }
    fn put(&self, req: &PutParameterRequest) -> Result<PutParameterResponse, ApiError> {
        let name = required_str(&req.name, "name")?;
        validate_name(name).map_err(|e| name_error(name, e))?;
        let value = required_str(&req.value, "value")?;
        if value.is_empty() {
            return Err(ApiError::validation(
                "value",
                "",
                "Member must have length greater than or equal to 1",
            ));
        }
        let kind = req.kind.as_deref();
        if let Some(k) = kind
            && !matches!(k, "String" | "StringList" | "SecureString")
        {
            return Err(ApiError::validation(
                "type",
                k,
                "Member must satisfy enum value set: [SecureString, StringList, String]",
            ));
        }
        let overwrite = req.overwrite.get().copied().unwrap_or(false);
        let requested_tier = req.tier.as_deref().unwrap_or("Standard");
        let chars = value.chars().count();
        let tier = match requested_tier {
            "Standard" if chars > STANDARD_MAX => {
                return Err(ApiError::new(
                    400,
                    "ValidationException",
                    "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier. For more information, see https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html",
                ));
            }
            "Standard" => "Standard",
            "Advanced" => "Advanced",
            "Intelligent-Tiering" => {
                if chars > STANDARD_MAX {
                    "Advanced"
                } else {
                    "Standard"
                }
            }
            other => {
                return Err(ApiError::validation(
                    "tier",
                    other,
                    "Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]",
                ));
            }
        };
        if chars > ADVANCED_MAX {
            return Err(ApiError::validation(
                "value",
                "(omitted)",
                "Member must have length less than or equal to 8192",
            ));
        }
        let description = req.description.as_deref().unwrap_or_default();
        if description.chars().count() > 1024 {
            return Err(ApiError::validation(
                "description",
                description,
                "Member must have length less than or equal to 1024",
            ));
        }
        let _writer = self.name_lock(name).lock();
        let params = self.params.lock();
        let existing = params.get(name).cloned();
        drop(params);
        if existing.is_some() && !overwrite {
            return Err(ApiError::new(
                400,
                "ParameterAlreadyExists",
                "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
            ));
        }
        let kind = match (kind, &existing) {
            (Some(k), _) => k.to_owned(),
            (None, Some(e)) => e.kind.clone(),
            (None, None) => {
                return Err(ApiError::new(
                    400,
                    "ValidationException",
                    "A parameter type is required when you create a parameter.",
                ));
            }
        };
        let version = existing.as_ref().map_or(1, |e| e.version + 1);
        let tier = match &existing {
            Some(e)
                if e.tier == "Advanced" && tier == "Standard" && requested_tier != "Standard" =>
            {
                "Advanced"
            }
            Some(e) if e.tier == "Advanced" && requested_tier == "Standard" => {
                return Err(ApiError::new(
                    400,
                    "ValidationException",
                    "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.",
                ));
            }
            _ => tier,
        };
        let secure = kind == "SecureString";
        let mut param = Param {
            name: name.to_owned(),
            value: if secure {
                self.sealer.seal(value)
            } else {
                value.to_owned()
            },
            kind,
            version,
            modified: now(),
            tier: tier.to_owned(),
            description: description.to_owned(),
            key_id: secure.then(|| req.key_id.as_deref().unwrap_or("alias/aws/ssm").to_owned()),
            data_type: req.data_type.as_deref().unwrap_or("text").to_owned(),
            history: Vec::new(),
        };
        if let Some(mut old) = existing {
            param.history = std::mem::take(&mut old.history);
            param.history.push(old);
            let excess = param.history.len().saturating_sub(MAX_VERSIONS - 1);
            param.history.drain(..excess);
        }
        self.persist(name, Some(&param))?;
        self.params.lock().insert(name.to_owned(), param);
        Ok(PutParameterResponse { tier, version })
    }

    fn get(&self, req: &GetParameterRequest) -> Result<GetParameterResponse, ApiError> {
        let raw = required_str(&req.name, "name")?;
        let decrypt = req.with_decryption.get().copied().unwrap_or(false);
        let (name, selector) = raw
            .rsplit_once(':')
            .map_or((raw, None), |(n, s)| (n, Some(s)));
        let params = self.params.lock();
        let current = params.get(name).ok_or_else(not_found)?;
        let p = match selector {
            None => Some(current),
            Some(sel) => {
                let want = sel.parse::<u64>().ok();
                std::iter::once(current)
                    .chain(current.history.iter())
                    .find(|p| Some(p.version) == want)
            }
        };
        let Some(p) = p else {
            let sel = selector.unwrap_or_default();
            return Err(ApiError::new(
                400,
                "ParameterVersionNotFound",
                format!(
                    "Systems Manager could not find version {sel} of {name}. Verify the version and try again."
                ),
            ));
        };
        let mut parameter = self.render(p, decrypt)?;
        parameter.selector = selector.map(|sel| format!(":{sel}"));
        Ok(GetParameterResponse { parameter })
    }

    fn history(&self, req: &GetParameterHistoryRequest) -> Result<MetadataPage, ApiError> {
        let name = required_str(&req.name, "name")?;
        let decrypt = req.with_decryption.get().copied().unwrap_or(false);
        let max = max_results(&req.max_results, 50)?;
        let after: Option<u64> = token(&req.next_token)?.and_then(|t| t.parse().ok());
        let params = self.params.lock();
        let current = params.get(name).ok_or_else(not_found)?;
        let mut versions = current
            .history
            .iter()
            .chain(std::iter::once(current))
            .filter(|p| after.is_none_or(|a| p.version > a));
        let page: Vec<&Param> = versions.by_ref().take(max).collect();
        let more = versions.next().is_some();
        let mut list = Vec::new();
        for p in &page {
            let mut v = self.metadata(p);
            if let Ok(rendered) = self.render(p, decrypt) {
                v.value = Some(rendered.value);
                v.labels = Some(Vec::new());
            }
            list.push(v);
        }
        Ok(MetadataPage {
            next_token: page
                .last()
                .filter(|_| more)
                .map(|last| encode_token(&last.version.to_string())),
            parameters: list,
        })
    }

    fn names(names: &Member<crate::decode::StrList>) -> Result<&[String], ApiError> {
        let names = names.strings().unwrap_or_default();
        if names.is_empty() || names.len() > 10 {
            return Err(ApiError::validation(
                "names",
                &format!("{names:?}"),
                "Member must have length less than or equal to 10 and greater than or equal to 1",
            ));
        }
        Ok(names)
    }

    fn get_many(&self, req: &NamesRequest) -> Result<GetParametersResponse, ApiError> {
        let names = Self::names(&req.names)?;
        let decrypt = req.with_decryption.get().copied().unwrap_or(false);
        let params = self.params.lock();
        let (mut found, mut invalid) = (Vec::new(), Vec::new());
        for n in names {
            match params.get(n) {
                Some(p) => found.push(self.render(p, decrypt)?),
                None => invalid.push(n.clone()),
            }
        }
        Ok(GetParametersResponse {
            invalid_parameters: invalid,
            parameters: found,
        })
    }

    fn by_path(&self, req: &GetParametersByPathRequest) -> Result<ParametersPage, ApiError> {
        let path = required_str(&req.path, "path")?;
        if !path.starts_with('/')
            || !path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
        {
            return Err(ApiError::new(
                400,
                "ValidationException",
                "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\". It can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_.",
            ));
        }
        let recursive = req.recursive.get().copied().unwrap_or(false);
        let decrypt = req.with_decryption.get().copied().unwrap_or(false);
        let max = max_results(&req.max_results, 10)?;
        let after = token(&req.next_token)?;
        let prefix = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        let params = self.params.lock();
        let mut matching = params.values().filter(|p| {
            p.name.starts_with(&prefix)
                && (recursive || !p.name[prefix.len()..].contains('/'))
                && after.as_deref().is_none_or(|a| p.name.as_str() > a)
        });
        let page: Vec<&Param> = matching.by_ref().take(max).collect();
        let more = matching.next().is_some();
        let parameters: Result<Vec<ParameterResponse>, ApiError> =
            page.iter().map(|p| self.render(p, decrypt)).collect();
        Ok(ParametersPage {
            next_token: page
                .last()
                .filter(|_| more)
                .map(|last| encode_token(&last.name)),
            parameters: parameters?,
        })
    }

    fn delete(&self, req: &NameRequest) -> Result<Empty, ApiError> {
        let name = required_str(&req.name, "name")?;
        let _writer = self.name_lock(name).lock();
        if !self.params.lock().contains_key(name) {
            return Err(not_found());
        }
        self.persist(name, None)?;
        self.params.lock().remove(name);
        Ok(Empty {})
    }

    fn delete_many(&self, req: &NamesRequest) -> Result<DeleteParametersResponse, ApiError> {
        let names = Self::names(&req.names)?;
        let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
        for n in names {
            let _writer = self.name_lock(n).lock();
            if self.params.lock().contains_key(n) {
                self.persist(n, None)?;
                self.params.lock().remove(n);
                deleted.push(n.clone())
            } else {
                invalid.push(n.clone())
            }
        }
        Ok(DeleteParametersResponse {
            deleted_parameters: deleted,
            invalid_parameters: invalid,
        })
    }

    fn describe(&self, req: &DescribeParametersRequest) -> Result<MetadataPage, ApiError> {
        let max = max_results(&req.max_results, 50)?;
        let after = token(&req.next_token)?;
        let filters: Vec<(String, String, Vec<String>)> = req
            .parameter_filters
            .get()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        let empty = Default::default();
                        let f = f.object().unwrap_or(&empty);
                        let s = |m: &Member<String>| m.as_deref().unwrap_or_default().to_owned();
                        let values = f.values.strings().unwrap_or_default().to_vec();
                        let option = s(&f.option);
                        (
                            s(&f.key),
                            if option.is_empty() {
                                "Equals".into()
                            } else {
                                option
                            },
                            values,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (key, _, _) in &filters {
            if !matches!(key.as_str(), "Name" | "Type" | "Path" | "Tier" | "DataType") {
                return Err(ApiError::new(
                    400,
                    "InvalidFilterKey",
                    format!("The following filter key is not valid: {key}."),
                ));
            }
        }
        let keep = |p: &Param| {
            filters.iter().all(|(key, option, values)| {
                let field = match key.as_str() {
                    "Name" => &p.name,
                    "Type" => &p.kind,
                    "Tier" => &p.tier,
                    "DataType" => &p.data_type,
                    _ => &p.name,
                };
                values
                    .iter()
                    .any(|v| match (key.as_str(), option.as_str()) {
                        ("Path", "Recursive") => {
                            p.name.starts_with(&format!("{}/", v.trim_end_matches('/')))
                        }
                        ("Path", _) => {
                            let prefix = format!("{}/", v.trim_end_matches('/'));
                            p.name.starts_with(&prefix) && !p.name[prefix.len()..].contains('/')
                        }
                        (_, "BeginsWith") => field.starts_with(v.as_str()),
                        (_, "Contains") => field.contains(v.as_str()),
                        _ => field == v,
                    })
            })
        };
        let params = self.params.lock();
        let mut matching = params
            .values()
            .filter(|p| keep(p) && after.as_deref().is_none_or(|a| p.name.as_str() > a));
        let page: Vec<&Param> = matching.by_ref().take(max).collect();
        let more = matching.next().is_some();
        Ok(MetadataPage {
            next_token: page
                .last()
                .filter(|_| more)
                .map(|last| encode_token(&last.name)),
            parameters: page.iter().map(|p| self.metadata(p)).collect(),
        })
    }
}

fn required_str<'r>(member: &'r Member<String>, field: &str) -> Result<&'r str, ApiError> {
    member
        .as_deref()
        .ok_or_else(|| ApiError::validation(field, "null", "Member must not be null"))
}

fn max_results(member: &Member<i64>, cap: i64) -> Result<usize, ApiError> {
    match member.get().copied() {
        None => Ok(cap as usize),
        Some(n) if (1..=cap).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::validation(
            "maxResults",
            &n.to_string(),
            &format!("Member must have value less than or equal to {cap}"),
        )),
    }
}

fn encode_token(name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(name)
}

fn token(member: &Member<String>) -> Result<Option<String>, ApiError> {
    let Some(t) = member.as_deref() else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| ApiError::new(400, "InvalidNextToken", "The specified token isn't valid."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("/a/b-c_d.e").is_ok());
        assert!(validate_name("plain").is_ok());
        assert_eq!(validate_name("a/b"), Err(NameError::NotQualified));
        assert_eq!(validate_name("/aws/x"), Err(NameError::Invalid));
        assert_eq!(validate_name("/a b"), Err(NameError::Invalid));
        assert_eq!(validate_name(&"/x".repeat(16)), Err(NameError::TooDeep));
    }
}
