//! Terminating and mesh gateways.

use super::ProxyInputs;
use crate::resources::Resources;

pub(super) fn terminating(_inputs: &ProxyInputs) -> Resources {
    Resources::default()
}

pub(super) fn mesh(_inputs: &ProxyInputs) -> Resources {
    Resources::default()
}
