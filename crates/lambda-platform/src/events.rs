//! EventBridge-style events (being built).

use std::path::Path;

use serde_json::Value;

use crate::{Platform, PlatformError, api::Req};

/// The event bus.
pub(crate) struct Bus {}

impl Bus {
    pub(crate) fn open(_dir: &Path) -> Result<Self, PlatformError> {
        Ok(Self {})
    }
    pub(crate) fn close(&self) {}
    pub(crate) fn api_call(&self, _p: &Platform, _name: &str, _req: Value, _resp: Value, _r: &Req) {}
}

pub(crate) fn start(_p: Platform) {}
