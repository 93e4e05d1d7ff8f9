//! Connect CA state: roots (active and retired), trust domain, CA configuration.
//! (Placeholder hooks; filled in by the Connect CA work.)

use serde::{Deserialize, Serialize};

use super::{ApplyError, State, WatchKey};

/// The CA's durable state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaState {}

/// CA ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CaOp {}

impl State {
    pub fn ca(&self) -> &CaState {
        &self.ca
    }

    pub(super) fn apply_ca(&mut self, op: &CaOp, _index: u64) -> Result<Vec<WatchKey>, ApplyError> {
        match *op {}
    }
}
