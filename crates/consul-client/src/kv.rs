//! `/v1/kv`: the key/value store. Values here are UTF-8 text (what `migrate` keeps, JSON);
//! the server stores any bytes.

use base64::Engine as _;
use serde::Deserialize;

use crate::{Client, ClientError, encode};

/// One key as `GET /v1/kv/<key>` answers it, its value decoded from base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPair {
    pub key: String,
    pub flags: u64,
    pub value: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Wire {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
}

/// The path of `key`, each segment encoded, the slashes kept.
fn kv_path(key: &str) -> String {
    let segments: Vec<String> = key.split('/').map(encode).collect();
    format!("/v1/kv/{}", segments.join("/"))
}

fn is_missing(e: &ClientError) -> bool {
    matches!(e, ClientError::Http { status: 404, .. })
}

impl Client {
    fn kv_pairs(&self, path: &str) -> Result<Vec<KvPair>, ClientError> {
        let answer = match self.get(path) {
            Ok(a) => a,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let wire: Option<Vec<Wire>> = self.decode("GET", path, answer.body)?;
        wire.unwrap_or_default()
            .into_iter()
            .map(|w| {
                let value = match w.value {
                    None => Vec::new(),
                    Some(v) => base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|e| ClientError::Decode {
                            method: "GET",
                            path: path.to_owned(),
                            url: format!("{}{path}", self.base_url()),
                            message: format!("Value of {:?} is not base64: {e}", w.key),
                        })?,
                };
                Ok(KvPair {
                    key: w.key,
                    flags: w.flags,
                    value,
                    create_index: w.create_index,
                    modify_index: w.modify_index,
                })
            })
            .collect()
    }

    /// `GET /v1/kv/<key>`; `None` when it does not exist.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn kv_get(&self, key: &str) -> Result<Option<KvPair>, ClientError> {
        Ok(self.kv_pairs(&kv_path(key))?.into_iter().next())
    }

    /// `GET /v1/kv/<prefix>?recurse`: every key under `prefix` (none is an empty list).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<KvPair>, ClientError> {
        self.kv_pairs(&format!("{}?recurse", kv_path(prefix)))
    }

    /// `PUT /v1/kv/<key>[?cas=N]`: whether it was written (a failed check-and-set is `false`).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn kv_put(&self, key: &str, value: &str, cas: Option<u64>) -> Result<bool, ClientError> {
        let path = match cas {
            Some(c) => format!("{}?cas={c}", kv_path(key)),
            None => kv_path(key),
        };
        let answer = self.call("PUT", &path, Some(value.to_owned()))?;
        Ok(answer.body == serde_json::Value::Bool(true))
    }

    /// `DELETE /v1/kv/<key>[?cas=N]`: whether it was deleted.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn kv_delete(&self, key: &str, cas: Option<u64>) -> Result<bool, ClientError> {
        let path = match cas {
            Some(c) => format!("{}?cas={c}", kv_path(key)),
            None => kv_path(key),
        };
        let answer = self.delete(&path)?;
        Ok(answer.body == serde_json::Value::Bool(true))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_keep_their_slashes_and_encode_the_rest() {
        assert_eq!(
            super::kv_path("lambdamesh/migrations/a b"),
            "/v1/kv/lambdamesh/migrations/a%20b"
        );
    }
}
