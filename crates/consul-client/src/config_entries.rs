//! `/v1/config`: reading, writing and deleting config entries. An entry read back is kept as the
//! JSON object the server wrote: a real Consul's entries carry fields no type here knows, and
//! callers print or compare them whole.

use serde_json::Value;

use crate::{Client, ClientError, Tenancy, encode};

/// A config entry as the server answered it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntryJson {
    /// Its `Name` (empty when the answer has none).
    pub name: String,
    /// The whole entry.
    pub json: Value,
}

impl ConfigEntryJson {
    fn new(json: Value) -> Self {
        let name = json
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self { name, json }
    }
}

impl Client {
    /// `GET /v1/config/<kind>`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn config_entries(
        &self,
        kind: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<Vec<ConfigEntryJson>, ClientError> {
        let list: Option<Vec<Value>> =
            self.get_as(&tenancy.on(&format!("/v1/config/{}", encode(kind))))?;
        Ok(list
            .unwrap_or_default()
            .into_iter()
            .map(ConfigEntryJson::new)
            .collect())
    }

    /// `GET /v1/config/<kind>/<name>`; a missing entry is [`ClientError::Http`] with status 404.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn config_entry(
        &self,
        kind: &str,
        name: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<ConfigEntryJson, ClientError> {
        let answer = self.get(&tenancy.on(&entry_path(kind, name)))?;
        Ok(ConfigEntryJson::new(answer.body))
    }

    /// `PUT /v1/config`, with check-and-set when `cas` is given (0: only if absent). Returns
    /// whether the entry was written (a failed check-and-set answers `false`).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn put_config_entry(
        &self,
        entry: &Value,
        tenancy: &Tenancy<'_>,
        cas: Option<u64>,
    ) -> Result<bool, ClientError> {
        let path = match cas {
            Some(index) => format!(
                "/v1/config{}",
                tenancy.query_with(&[("cas", &index.to_string())])
            ),
            None => tenancy.on("/v1/config"),
        };
        let answer = self.put(&path, Some(entry))?;
        Ok(answer.body != Value::Bool(false))
    }

    /// `DELETE /v1/config/<kind>/<name>`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn delete_config_entry(
        &self,
        kind: &str,
        name: &str,
        tenancy: &Tenancy<'_>,
    ) -> Result<(), ClientError> {
        self.delete(&tenancy.on(&entry_path(kind, name))).map(drop)
    }
}

fn entry_path(kind: &str, name: &str) -> String {
    format!("/v1/config/{}/{}", encode(kind), encode(name))
}
