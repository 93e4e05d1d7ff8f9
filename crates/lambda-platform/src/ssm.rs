//! Parameter Store (being built).

use std::path::Path;

use crate::PlatformError;

/// Parameter store.
pub(crate) struct ParameterStore {}

impl ParameterStore {
    pub(crate) fn open(_dir: &Path, _region: &str, _account: &str) -> Result<Self, PlatformError> {
        Ok(Self {})
    }
}
